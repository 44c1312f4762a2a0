//! The naive method, as people script it by hand: `runc checkpoint` to files, copy the
//! files over the network (`tar | tar`, through the lab's links), `runc restore` on the other host (see [`crate::manual`] for the handover).

use std::path::Path;
use std::time::Instant;

use ferry_lab::{LabHost, LabState};
use ferry_netns::RealRunner;
use ferry_types::NetSpec;

use crate::manual::{copy_dir_over, dir_bytes, ms, runc, Manual};

/// What the naive method measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NaiveTimes {
    pub checkpoint_ms: f64,
    pub copy_ms: f64,
    pub restore_ms: f64,
    pub total_ms: f64,
    pub image_bytes: u64,
}

/// Moves container `name` from `from` to `to` the naive way.
pub async fn migrate(
    lab: &LabState,
    criu: &Path,
    from: &LabHost,
    to: &LabHost,
    name: &str,
    net: &NetSpec,
) -> anyhow::Result<NaiveTimes> {
    let m = Manual::prepare(lab, from, to, name, net).await?;

    let start = Instant::now();
    let img = m.src_img.to_string_lossy().into_owned();
    runc(
        &from.runtime_root,
        criu,
        &[
            "checkpoint",
            "--tcp-established",
            "--image-path",
            &img,
            "--work-path",
            &img,
            name,
        ],
        &m.src_img.join("runc.log"),
    )?;
    let checkpoint_ms = ms(start);
    m.src_link.down(&RealRunner).await?;

    let t = Instant::now();
    copy_dir_over(from, to, &m.src_img, &m.dst_img)?;
    let copy_ms = ms(t);

    let t = Instant::now();
    m.handover().await?;
    m.restore(to, criu, name, &[])?;
    let restore_ms = ms(t);
    let total_ms = ms(start);
    let image_bytes = dir_bytes(&m.src_img);
    let _ = std::fs::remove_dir_all(&m.src_img);
    Ok(NaiveTimes {
        checkpoint_ms,
        copy_ms,
        restore_ms,
        total_ms,
        image_bytes,
    })
}

pub use crate::manual::cleanup;

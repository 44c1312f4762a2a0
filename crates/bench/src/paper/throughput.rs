//! Thesis Figs. 4.4 and 4.5: an iperf3 client's throughput over time while its server's
//! container moves between hosts, once restored as soon as it can be and once two
//! seconds after its checkpoint (the destination holds the restore).

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use ferry_proto::{ControlReply, ControlRequest, RESTORE_READY_PHASE};
use ferry_transport::Endpoint;
use ferry_types::MigrateOptions;

use crate::labctl::BenchLab;

/// How long the client runs, and when the migration starts.
const RUN_S: u32 = 10;
const MOVE_AT: Duration = Duration::from_secs(3);

/// Throughput samples: (seconds since the client started, Gbit/s).
pub type Samples = Vec<(f64, f64)>;

/// Migrates `name` from `from` to `to`; with `hold`, the destination's restore waits
/// that long after the checkpoint arrived.
async fn migrate_held(
    lab: &BenchLab,
    from: &str,
    name: &str,
    to: &str,
    hold: Option<Duration>,
) -> anyhow::Result<()> {
    let src = Endpoint::Unix(lab.lab.host(from)?.control.clone());
    let dest = lab.lab.host(to)?.listen.to_string();
    let mut conn = ferry_controller::client::control(&src, &Default::default()).await?;
    let options = MigrateOptions {
        hold_restore: hold.is_some(),
        ..Default::default()
    };
    conn.send(&ControlRequest::Migrate {
        container: name.to_string(),
        dest,
        options,
    })
    .await?;
    loop {
        match conn.recv_msg::<ControlReply>().await? {
            ControlReply::Progress { phase, .. } if phase == RESTORE_READY_PHASE => {
                tokio::time::sleep(hold.unwrap_or_default()).await;
                conn.send(&ControlRequest::Proceed).await?;
            }
            ControlReply::Progress { .. } => {}
            ControlReply::Report { report } if report.outcome.is_success() => return Ok(()),
            ControlReply::Report { report } => {
                anyhow::bail!(
                    "the migration failed: {}",
                    report.reason.unwrap_or_default()
                )
            }
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
}

/// The client's throughput over time while the server moves from `a` to `b`.
pub async fn through_a_move(
    lab: &mut BenchLab,
    name: &str,
    hold: Option<Duration>,
) -> anyhow::Result<Samples> {
    let c = ferry_lab::run(
        &mut lab.lab,
        "a",
        name,
        None,
        None,
        vec!["/usr/bin/iperf3".into(), "-s".into()],
    )
    .await?;
    let ip = c
        .net
        .context("the container has no address")?
        .address
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let netns = lab.lab.client_netns.clone();
    let client = std::thread::spawn(move || {
        Command::new("ip")
            .args([
                "netns", "exec", &netns, "iperf3", "-c", &ip, "-J", "-i", "0.1",
            ])
            .args(["-t", &RUN_S.to_string()])
            .output()
    });
    tokio::time::sleep(MOVE_AT).await;
    let moved = migrate_held(lab, "a", name, "b", hold).await;
    let out = tokio::task::spawn_blocking(move || client.join())
        .await
        .context("the iperf3 client")?
        .map_err(|_| anyhow::anyhow!("the iperf3 client's thread failed"))?
        .context("running iperf3")?;
    lab.remove("b", name).await;
    lab.remove("a", name).await;
    moved?;
    parse(&out.stdout)
}

/// iperf3's JSON intervals as samples.
pub fn parse(json: &[u8]) -> anyhow::Result<Samples> {
    let v: serde_json::Value = serde_json::from_slice(json).context("iperf3's JSON")?;
    let intervals = v["intervals"]
        .as_array()
        .context("iperf3 reported no intervals")?;
    Ok(intervals
        .iter()
        .filter_map(|i| {
            let s = &i["sum"];
            Some((s["end"].as_f64()?, s["bits_per_second"].as_f64()? / 1e9))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_become_samples() {
        let j = br#"{"intervals":[{"sum":{"start":0,"end":0.1,"bits_per_second":2e9}},{"sum":{"start":0.1,"end":0.2,"bits_per_second":0}}]}"#;
        assert_eq!(parse(j).unwrap(), vec![(0.1, 2.0), (0.2, 0.0)]);
        assert!(parse(b"{}").is_err());
    }
}

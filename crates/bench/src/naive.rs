//! The naive method, as people script it by hand: `runc checkpoint` to files, copy the
//! files, `runc restore` on the other host, with the same network handover ferry does
//! (same address and MAC, CRIU's lock installed on the destination, link up and
//! gratuitous ARP before the restore).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use ferry_lab::{LabHost, LabState};
use ferry_netns::{send_gratuitous_arp, Cmd, ContainerLink, RealRunner, Runner};
use ferry_proto::NetSpec;
use ferry_runtime::bundle::{Bundle, CRIU_CONFIG_ANNOTATION};

/// What the naive method measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NaiveTimes {
    pub checkpoint_ms: f64,
    pub copy_ms: f64,
    pub restore_ms: f64,
    pub total_ms: f64,
    pub image_bytes: u64,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn runc(root: &Path, criu: &Path, args: &[&str], log: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("runc")
        .arg("--root")
        .arg(root)
        .arg("--criu")
        .arg(criu)
        .arg("--log")
        .arg(log)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!(
            "runc {} failed: {}",
            args.join(" "),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    Ok(())
}

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// CRIU's iptables lock, as CRIU itself installs it, in the namespace at `netns`.
fn criu_iptables_lock(netns: &Path) -> Cmd {
    let rules = format!(
        "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark {:#x} -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n",
        ferry_netns::CRIU_MARK
    );
    Cmd::new("iptables-restore", &["-w", "--noflush"])
        .with_stdin(rules)
        .in_netns(netns.to_path_buf())
}

/// Moves container `name` from `from` to `to` the naive way. The container must have
/// been started by `from`'s agent (so its network and bundle are where ferry puts them).
pub async fn migrate(
    lab: &LabState,
    criu: &Path,
    from: &LabHost,
    to: &LabHost,
    name: &str,
    net: &NetSpec,
) -> anyhow::Result<NaiveTimes> {
    let r = RealRunner;
    let src_prefix = format!("ferry-{}-{}", lab.name, from.name);
    let dst_prefix = format!("ferry-{}-{}", lab.name, to.name);
    let src_link = ContainerLink::new(&src_prefix, name, "br0", net.clone())?
        .in_host_netns(ferry_netns::netns_path(&from.netns));
    let dst_link = ContainerLink::new(&dst_prefix, name, "br0", net.clone())?
        .in_host_netns(ferry_netns::netns_path(&to.netns));
    let src_img: PathBuf = from.state_dir.join("images").join(format!("naive-{name}"));
    let dst_img: PathBuf = to.state_dir.join("images").join(format!("naive-{name}"));
    for d in [&src_img, &dst_img] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    // The destination bundle: a copy pointing at the destination's namespace and cgroup,
    // without ferry's CRIU configuration (the naive method uses runc's defaults).
    let dst_bundle = to.state_dir.join("naive-bundles").join(name);
    let _ = std::fs::remove_dir_all(&dst_bundle);
    std::fs::create_dir_all(dst_bundle.parent().context("bundle dir")?)?;
    let src_bundle = from.state_dir.join("bundles").join(name);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src_bundle)
        .arg(&dst_bundle)
        .status()?;
    if !status.success() {
        bail!("copying the bundle failed");
    }
    let mut b = Bundle::load(&dst_bundle)?;
    b.set_netns_path(&dst_link.netns.path().display().to_string());
    b.set_cgroups_path(&format!("/ferry/{dst_prefix}/{name}"));
    b.set_annotation(CRIU_CONFIG_ANNOTATION, "");
    b.save()?;
    let _ = std::fs::remove_file(from.state_dir.join("criu").join(format!("{name}.conf")));
    // Prepared before the freeze, as a careful script would: the destination namespace
    // with its link down.
    dst_link.create(&r).await?;

    let start = Instant::now();
    let t = Instant::now();
    let img = src_img.to_string_lossy().into_owned();
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
        &src_img.join("runc.log"),
    )?;
    let checkpoint_ms = ms(t);
    src_link.down(&r).await?;

    let t = Instant::now();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{img}/."))
        .arg(&dst_img)
        .status()?;
    if !status.success() {
        bail!("copying the images failed");
    }
    let copy_ms = ms(t);

    let t = Instant::now();
    r.run(&criu_iptables_lock(&dst_link.netns.path())).await?;
    dst_link.up(&r).await?;
    let (ip, _) = ferry_netns::parse_cidr(&net.address)?;
    send_gratuitous_arp(
        &dst_link.netns.path(),
        "eth0",
        ferry_netns::parse_mac(&net.mac)?,
        ip,
    )
    .await?;
    let dimg = dst_img.to_string_lossy().into_owned();
    let bundle = dst_bundle.to_string_lossy().into_owned();
    runc(
        &to.runtime_root,
        criu,
        &[
            "restore",
            "-d",
            "--tcp-established",
            "--bundle",
            &bundle,
            "--image-path",
            &dimg,
            "--work-path",
            &dimg,
            name,
        ],
        &dst_img.join("runc.log"),
    )?;
    let restore_ms = ms(t);
    let total_ms = ms(start);
    let image_bytes = dir_bytes(&src_img);
    let _ = std::fs::remove_dir_all(&src_img);
    Ok(NaiveTimes {
        checkpoint_ms,
        copy_ms,
        restore_ms,
        total_ms,
        image_bytes,
    })
}

/// Removes what [`migrate`] left on the destination.
pub async fn cleanup(lab: &LabState, criu: &Path, to: &LabHost, name: &str, net: &NetSpec) {
    let dst_prefix = format!("ferry-{}-{}", lab.name, to.name);
    let log = to.state_dir.join("naive-delete.log");
    let _ = runc(&to.runtime_root, criu, &["delete", "-f", name], &log);
    if let Ok(l) = ContainerLink::new(&dst_prefix, name, "br0", net.clone()) {
        let _ = l
            .in_host_netns(ferry_netns::netns_path(&to.netns))
            .destroy(&RealRunner)
            .await;
    }
    let _ = std::fs::remove_dir_all(to.state_dir.join("images").join(format!("naive-{name}")));
    let _ = std::fs::remove_dir_all(to.state_dir.join("naive-bundles").join(name));
}

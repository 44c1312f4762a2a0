//! What a hand-written runc+CRIU migration script does around the checkpoint, shared by
//! the baselines ([`crate::naive`] and [`crate::criu_lazy`]): the same network handover
//! ferry does (same address and MAC, CRIU's lock on the destination, link up and
//! gratuitous ARP before the restore), and a copy of the bundle for the destination.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use ferry_lab::{LabHost, LabState};
use ferry_netns::{send_gratuitous_arp, Cmd, ContainerLink, RealRunner, Runner};
use ferry_runtime::bundle::{Bundle, CRIU_CONFIG_ANNOTATION};
use ferry_types::NetSpec;

pub fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// A `runc` command line against `root`, logging to `log`, with stdio detached.
pub fn runc_cmd(root: &Path, criu: &Path, args: &[&str], log: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("runc");
    c.arg("--root")
        .arg(root)
        .arg("--criu")
        .arg(criu)
        .arg("--log")
        .arg(log)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Runs `runc ARGS` to completion.
pub fn runc(root: &Path, criu: &Path, args: &[&str], log: &Path) -> anyhow::Result<()> {
    let status = runc_cmd(root, criu, args, log).status()?;
    if !status.success() {
        bail!(
            "runc {} failed: {}",
            args.join(" "),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    Ok(())
}

/// Bytes of the files directly in `d`.
pub fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Copies the files of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()?;
    if !status.success() {
        bail!("copying {} failed", from.display());
    }
    Ok(())
}

/// Runs `f` on a thread inside network namespace `netns`.
fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let path = ferry_netns::netns_path(netns);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        // SAFETY: setns on a valid descriptor; it changes only this thread.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "cannot enter {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        f()
    })
}

/// Copies a directory from one lab host to another over the lab's network, as a script
/// would with `tar | ssh tar`: through the hosts' (possibly shaped) links.
pub fn copy_dir_over(
    from: &ferry_lab::LabHost,
    to: &ferry_lab::LabHost,
    src: &Path,
    dst: &Path,
) -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (addr, dst) = (to.address, dst.to_path_buf());
    let receiver = in_netns(&to.netns, move || {
        let l = std::net::TcpListener::bind((addr, 0))?;
        port_tx.send(l.local_addr()?.port())?;
        let (mut sock, _) = l.accept()?;
        let mut tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&dst)
            .stdin(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = tar.stdin.take() {
            std::io::copy(&mut sock, &mut stdin)?;
        }
        if !tar.wait()?.success() {
            bail!("tar -x failed at the destination");
        }
        Ok(())
    });
    let port = port_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .map_err(|_| anyhow::anyhow!("the copy's receiver did not start"))?;
    let src = src.to_path_buf();
    let sender = in_netns(&from.netns, move || {
        let mut sock = std::net::TcpStream::connect((addr, port))?;
        let mut tar = Command::new("tar")
            .arg("-c")
            .arg("-C")
            .arg(&src)
            .arg(".")
            .stdout(Stdio::piped())
            .spawn()?;
        if let Some(mut out) = tar.stdout.take() {
            std::io::copy(&mut out, &mut sock)?;
        }
        sock.shutdown(std::net::Shutdown::Write)?;
        if !tar.wait()?.success() {
            bail!("tar -c failed at the source");
        }
        Ok(())
    });
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the copy's sender panicked"))?;
    let got = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the copy's receiver panicked"))?;
    // A receiver that failed breaks the sender's pipe: its own error says why.
    match (sent, got) {
        (_, Err(e)) => Err(e.context("the naive method's copy failed at the destination")),
        (Err(e), Ok(())) => Err(e.context("the naive method's copy failed at the source")),
        (Ok(()), Ok(())) => Ok(()),
    }
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

/// One hand-made migration of container `name`, prepared as a careful script would before
/// the freeze: image directories, the destination's bundle, and its network namespace
/// with the link down.
#[derive(Debug)]
pub struct Manual {
    pub src_link: ContainerLink,
    pub dst_link: ContainerLink,
    pub src_img: PathBuf,
    pub dst_img: PathBuf,
    pub dst_bundle: PathBuf,
    net: NetSpec,
}

impl Manual {
    /// The container must have been started by `from`'s agent (so its network and bundle
    /// are where ferry puts them).
    pub async fn prepare(
        lab: &LabState,
        from: &LabHost,
        to: &LabHost,
        name: &str,
        net: &NetSpec,
    ) -> anyhow::Result<Self> {
        let src_prefix = format!("ferry-{}-{}", lab.name, from.name);
        let dst_prefix = format!("ferry-{}-{}", lab.name, to.name);
        let src_link = ContainerLink::new(&src_prefix, name, "br0", net.clone())?
            .in_host_netns(ferry_netns::netns_path(&from.netns));
        let dst_link = ContainerLink::new(&dst_prefix, name, "br0", net.clone())?
            .in_host_netns(ferry_netns::netns_path(&to.netns));
        let src_img = from.state_dir.join("images").join(format!("manual-{name}"));
        let dst_img = to.state_dir.join("images").join(format!("manual-{name}"));
        for d in [&src_img, &dst_img] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d)?;
        }
        // The destination bundle: a copy pointing at the destination's namespace and
        // cgroup, without ferry's CRIU configuration (scripts use runc's defaults).
        let dst_bundle = to.state_dir.join("manual-bundles").join(name);
        let _ = std::fs::remove_dir_all(&dst_bundle);
        std::fs::create_dir_all(&dst_bundle)?;
        copy_dir(&from.state_dir.join("bundles").join(name), &dst_bundle)?;
        let mut b = Bundle::load(&dst_bundle)?;
        b.set_netns_path(&dst_link.netns.path().display().to_string());
        b.set_cgroups_path(&format!("/ferry/{dst_prefix}/{name}"));
        b.set_annotation(CRIU_CONFIG_ANNOTATION, "");
        b.save()?;
        let _ = std::fs::remove_file(from.state_dir.join("criu").join(format!("{name}.conf")));
        dst_link.create(&RealRunner).await?;
        Ok(Self {
            src_link,
            dst_link,
            src_img,
            dst_img,
            dst_bundle,
            net: net.clone(),
        })
    }

    /// The destination takes the address: CRIU's lock, link up, gratuitous ARP.
    pub async fn handover(&self) -> anyhow::Result<()> {
        let r = RealRunner;
        r.run(&criu_iptables_lock(&self.dst_link.netns.path()))
            .await?;
        self.dst_link.up(&r).await?;
        let (ip, _) = ferry_netns::parse_cidr(&self.net.address)?;
        send_gratuitous_arp(
            &self.dst_link.netns.path(),
            "eth0",
            ferry_netns::parse_mac(&self.net.mac)?,
            ip,
        )
        .await
        .context("gratuitous ARP")?;
        Ok(())
    }

    /// `runc restore -d` of the copied images at the destination, with `extra` options.
    pub fn restore(
        &self,
        to: &LabHost,
        criu: &Path,
        name: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let dimg = self.dst_img.to_string_lossy().into_owned();
        let bundle = self.dst_bundle.to_string_lossy().into_owned();
        let mut args = vec!["restore", "-d", "--tcp-established"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--bundle",
            &bundle,
            "--image-path",
            &dimg,
            "--work-path",
            &dimg,
            name,
        ]);
        runc(
            &to.runtime_root,
            criu,
            &args,
            &self.dst_img.join("runc-restore.log"),
        )
    }
}

/// Removes what a hand-made migration left on the destination.
pub async fn cleanup(lab: &LabState, criu: &Path, to: &LabHost, name: &str, net: &NetSpec) {
    let dst_prefix = format!("ferry-{}-{}", lab.name, to.name);
    let log = to.state_dir.join("manual-delete.log");
    let _ = runc(&to.runtime_root, criu, &["delete", "-f", name], &log);
    if let Ok(l) = ContainerLink::new(&dst_prefix, name, "br0", net.clone()) {
        let _ = l
            .in_host_netns(ferry_netns::netns_path(&to.netns))
            .destroy(&RealRunner)
            .await;
    }
    let _ = std::fs::remove_dir_all(to.state_dir.join("images").join(format!("manual-{name}")));
    let _ = std::fs::remove_dir_all(to.state_dir.join("manual-bundles").join(name));
}

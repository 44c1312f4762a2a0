//! The baseline for post-copy: plain runc + CRIU lazy pages, as a script drives them. The
//! source's `runc checkpoint --lazy-pages --page-server` dumps all but the memory and
//! serves pages on a TCP port; the destination runs `criu lazy-pages` against that port
//! and `runc restore --lazy-pages`. The handover is the one in [`crate::manual`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry_lab::{LabHost, LabState};
use ferry_netns::RealRunner;
use ferry_types::NetSpec;

use crate::manual::{copy_dir, dir_bytes, ms, runc_cmd, Manual};

/// How long any one step may take before the baseline is declared hung.
const STEP_LIMIT: Duration = Duration::from_secs(180);

/// What the baseline measured, with the moments the bench needs to window the client's
/// latencies.
#[derive(Debug, Clone, Copy)]
pub struct LazyTimes {
    pub dump_ms: f64,
    pub copy_ms: f64,
    pub restore_ms: f64,
    /// Freeze until the restored container runs.
    pub freeze_to_run_ms: f64,
    /// The container runs until the last page arrived.
    pub postcopy_ms: f64,
    pub total_ms: f64,
    /// Image files plus the lazy pages served.
    pub bytes: u64,
    pub running_at: Instant,
    pub pages_done_at: Instant,
}

/// Makes `cmd` run in the network namespace `netns`, with `status` (if any) as fd 3.
fn in_netns(cmd: &mut Command, netns: &str, status: Option<&OwnedFd>) -> anyhow::Result<OwnedFd> {
    let ns = std::fs::File::open(ferry_netns::netns_path(netns))
        .with_context(|| format!("network namespace {netns}"))?;
    let ns: OwnedFd = ns.into();
    let (nsfd, sfd) = (ns.as_raw_fd(), status.map(AsRawFd::as_raw_fd));
    // SAFETY: only async-signal-safe calls (setns, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = sfd {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(ns)
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for `child` within [`STEP_LIMIT`]; kills it if it hangs.
fn wait(child: &mut Child, what: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                bail!(
                    "{what} failed ({st}); its log {} ends with: {}",
                    log.display(),
                    tail(log)
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} hung for {STEP_LIMIT:?}; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The source's lazy dump, once it serves pages.
async fn lazy_dump(
    m: &Manual,
    criu: &Path,
    from: &LabHost,
    name: &str,
    page_server: &str,
) -> anyhow::Result<std::process::Child> {
    let img = m.src_img.to_string_lossy().into_owned();
    // A lazy dump that reports on fd 3 once it serves pages.
    let (status_r, status_w) = pipe()?;
    let dump_log = m.src_img.join("runc.log");
    let mut cmd = runc_cmd(
        &from.runtime_root,
        criu,
        &[
            "checkpoint",
            "--tcp-established",
            "--lazy-pages",
            "--page-server",
            page_server,
            "--status-fd",
            "3",
            "--image-path",
            &img,
            "--work-path",
            &img,
            name,
        ],
        &dump_log,
    );
    let _ns = in_netns(&mut cmd, &from.netns, Some(&status_w))?;
    let mut dump = cmd.spawn().context("runc checkpoint")?;
    drop(status_w);
    let ready = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::from(status_r);
        let mut b = [0u8; 1];
        std::io::Read::read(&mut f, &mut b).map(|n| n == 1)
    })
    .await??;
    if !ready {
        let _ = wait(&mut dump, "runc checkpoint --lazy-pages", &dump_log);
        bail!(
            "the lazy dump never got ready; {} ends with: {}",
            dump_log.display(),
            tail(&dump_log)
        );
    }
    Ok(dump)
}

/// CRIU's lazy-pages daemon at the destination, listening for the restore.
async fn lazy_daemon(
    m: &Manual,
    criu: &Path,
    to: &LabHost,
    src_ip: &str,
    port: u16,
) -> anyhow::Result<std::process::Child> {
    let dimg = m.dst_img.to_string_lossy().into_owned();
    let lazy_log = m.dst_img.join("lazy-pages.log");
    let mut cmd = Command::new(criu);
    cmd.args([
        "lazy-pages",
        "--page-server",
        "--address",
        src_ip,
        "--port",
        &port.to_string(),
        "--images-dir",
        &dimg,
        "--work-dir",
        &dimg,
        "-o",
        "lazy-pages.log",
        "-v2",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _ns2 = in_netns(&mut cmd, &to.netns, None)?;
    let mut daemon = cmd.spawn().context("criu lazy-pages")?;
    let socket = m.dst_img.join("lazy-pages.socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > deadline || daemon.try_wait()?.is_some() {
            let _ = daemon.kill();
            bail!(
                "criu lazy-pages did not start; {} ends with: {}",
                lazy_log.display(),
                tail(&lazy_log)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(daemon)
}

/// Moves container `name` from `from` to `to` with plain runc + CRIU lazy pages, the
/// page server listening on `port` of the source host.
pub async fn migrate(
    lab: &LabState,
    criu: &Path,
    from: &LabHost,
    to: &LabHost,
    name: &str,
    net: &NetSpec,
    port: u16,
) -> anyhow::Result<LazyTimes> {
    let m = Manual::prepare(lab, from, to, name, net).await?;
    let src_ip = from.listen.ip().to_string();
    let page_server = format!("{src_ip}:{port}");

    let start = Instant::now();
    let mut dump = lazy_dump(&m, criu, from, name, &page_server).await?;
    let dump_ms = ms(start);
    m.src_link.down(&RealRunner).await?;

    let t = Instant::now();
    copy_dir(&m.src_img, &m.dst_img)?;
    let copy_ms = ms(t);
    let bytes_images = dir_bytes(&m.src_img);
    let lazy_pages: u64 = ferry_pages::postcopy::pump::lazy_runs(&m.src_img)
        .map(|r| r.iter().map(|r| r.nr_pages).sum())
        .unwrap_or(0);

    // The destination: the lazy-pages daemon first, then the restore.
    let t = Instant::now();
    m.handover().await?;
    let mut daemon = lazy_daemon(&m, criu, to, &src_ip, port).await?;
    if let Err(e) = m.restore(to, criu, name, &["--lazy-pages"]) {
        let _ = daemon.kill();
        let _ = dump.kill();
        return Err(e);
    }
    let running_at = Instant::now();
    let restore_ms = ms(t);
    let freeze_to_run_ms = ms(start);

    wait(
        &mut daemon,
        "criu lazy-pages",
        &m.dst_img.join("lazy-pages.log"),
    )?;
    let pages_done_at = Instant::now();
    wait(
        &mut dump,
        "runc checkpoint --lazy-pages",
        &m.src_img.join("runc.log"),
    )?;
    let total_ms = ms(start);
    let _ = std::fs::remove_dir_all(&m.src_img);
    Ok(LazyTimes {
        dump_ms,
        copy_ms,
        restore_ms,
        freeze_to_run_ms,
        postcopy_ms: pages_done_at.duration_since(running_at).as_secs_f64() * 1e3,
        total_ms,
        bytes: bytes_images + lazy_pages * 4096,
        running_at,
        pages_done_at,
    })
}

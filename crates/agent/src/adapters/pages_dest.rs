//! The destination's page channels, over ferry's data plane: each arrives as a
//! connection of its own, named by its session, and what runs on it fills the
//! container's page files, page store or memory.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_criu::features::ensure_pipe_max_size;
use ferry_criu::process::{spawn_lazy_pages, LazyPagesDaemon};
use ferry_engine::ports::pages::{
    HeldPages, LazyDaemon, LocalLazy, PageTask, PagesError, SessionPages,
};
use ferry_pages::postcopy::daemon::{self, DaemonError, Prepared};
use ferry_pages::postcopy::Channels;
use ferry_pages::precopy::receive::receive as receive_precopy;
use ferry_pages::precopy::store::{default_limit as store_limit, shared_budget, PageStore};
use ferry_runtime::keeper::Keeper;
use ferry_transport::Stream;
use ferry_types::PostcopyStats;
use tokio::sync::oneshot;

fn failed(e: impl std::fmt::Display) -> PagesError {
    PagesError::Failed(e.to_string())
}

type Channel = oneshot::Receiver<Stream>;

/// Waits for the page channel, then runs `receive` on it, blocking, off the runtime.
/// `what` names the stream in errors.
fn channel_task<T: Send + 'static>(
    rx: Option<Channel>,
    what: &'static str,
    receive: impl FnOnce(OwnedFd) -> std::io::Result<T> + Send + 'static,
) -> PageTask<T> {
    tokio::spawn(async move {
        let rx = rx.ok_or(PagesError::NoChannel)?;
        let stream = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(s)) => s,
            _ => return Err(PagesError::NoChannel),
        };
        let fd = stream.into_blocking_fd().map_err(failed)?;
        tokio::task::spawn_blocking(move || receive(fd))
            .await
            .map_err(failed)?
            .map_err(|source| PagesError::Broken { what, source })
    })
}

/// Waits for a page channel the source opens.
async fn arrival(rx: Option<Channel>) -> Result<Stream, PagesError> {
    let rx = rx.ok_or(PagesError::NoChannel)?;
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(s)) => Ok(s),
        _ => Err(PagesError::NoChannel),
    }
}

/// One incoming session's page channels.
#[derive(Debug)]
pub struct AgentSessionPages {
    pub criu: PathBuf,
    pub pages: Option<Channel>,
    pub urgent: Option<Channel>,
    /// The container's cgroup, for post-copy's keeper; none: no keeper.
    pub cgroup: Option<String>,
}

/// Starts the keeper that stops the container if this agent dies during post-copy
/// (`ferry_runtime::keeper`), and shows it every userfaultfd the daemon holds.
fn with_keeper(
    prepared: Prepared,
    cgroup: Option<&str>,
) -> Result<(Prepared, Option<Arc<Keeper>>), PagesError> {
    let Some(cgroup) = cgroup else {
        return Ok((prepared, None));
    };
    let program = std::env::current_exe().map_err(failed)?;
    let keeper = Arc::new(Keeper::spawn(&program, cgroup).map_err(|e| {
        failed(format!(
            "cannot start the post-copy keeper ({e}): without it, a crash of this agent would leave the container reading missing memory as zeros"
        ))
    })?);
    let k = keeper.clone();
    let prepared = prepared.with_keeper(Arc::new(move |fd| {
        if let Err(e) = k.hold(fd) {
            tracing::error!("the post-copy keeper did not take a userfaultfd: {e}");
        }
    }));
    Ok((prepared, Some(keeper)))
}

/// Starts ferry's lazy-pages daemon on two channels.
fn start_daemon(
    prepared: Prepared,
    bulk: Stream,
    urgent: Stream,
    on_loss: Box<dyn FnOnce() + Send>,
    keeper: Option<Arc<Keeper>>,
) -> Box<dyn LazyDaemon> {
    let pages_total = prepared.pages_total();
    let installed = Arc::new(AtomicU64::new(0));
    let (go, go_rx) = oneshot::channel();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = failed.clone();
    let run = daemon::run(
        prepared,
        Channels { bulk, urgent },
        installed,
        go_rx,
        on_loss,
    );
    let task = tokio::spawn(async move {
        let r = run.await;
        if let Err(e) = &r {
            tracing::warn!("the post-copy page daemon failed: {e}");
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        r
    });
    Box::new(DaemonTask {
        task,
        go: Some(go),
        pages_total,
        failed,
        keeper,
    })
}

#[async_trait]
impl SessionPages for AgentSessionPages {
    fn receive_stream(&mut self, images: &Path) -> PageTask<u64> {
        let img = images.to_path_buf();
        channel_task(self.pages.take(), "page stream", move |fd| {
            ferry_pages::stream::receive(fd, &img)
        })
    }

    fn receive_precopy(&mut self, images: &Path) -> PageTask<u64> {
        let img = images.to_path_buf();
        channel_task(self.pages.take(), "pre-copy stream", move |fd| {
            let file = std::fs::File::from(fd);
            let ack = file.try_clone()?;
            let mut store = PageStore::sharing(store_limit(), shared_budget());
            let got = receive_precopy(&file, ack, &img, &mut store)?;
            tracing::info!(
                rounds = got.rounds,
                stored = store.len(),
                refs = got.final_refs,
                "pre-copy pages received"
            );
            Ok(got.file_bytes)
        })
    }

    fn receive_rounds(&mut self, images: &Path) -> PageTask<Box<dyn HeldPages>> {
        let img = images.to_path_buf();
        let urgent = self.urgent.take();
        let cgroup = self.cgroup.clone();
        let rounds = channel_task(self.pages.take(), "pre-copy stream", move |fd| {
            let file = std::fs::File::from(fd);
            let ack = file.try_clone()?;
            let mut store = PageStore::sharing(store_limit(), shared_budget());
            let got = receive_precopy(&file, ack, &img, &mut store)?;
            if got.final_pages + got.final_refs > 0 {
                return Err(std::io::Error::other(
                    "the source sent page files in a hybrid migration",
                ));
            }
            tracing::info!(
                rounds = got.rounds,
                stored = store.len(),
                "hybrid: pre-copy rounds received"
            );
            Ok((store, OwnedFd::from(file)))
        });
        tokio::spawn(async move {
            let (store, channel) = rounds.await.map_err(failed)??;
            Ok(Box::new(Held {
                store,
                channel,
                urgent,
                cgroup,
            }) as Box<dyn HeldPages>)
        })
    }

    async fn postcopy(
        &mut self,
        images: &Path,
        work: &Path,
        on_loss: Box<dyn FnOnce() + Send>,
    ) -> Result<Box<dyn LazyDaemon>, PagesError> {
        let prepared = daemon::prepare(images, work).map_err(failed)?;
        let (prepared, keeper) = with_keeper(prepared, self.cgroup.as_deref())?;
        let bulk = arrival(self.pages.take()).await?;
        let urgent = arrival(self.urgent.take()).await?;
        Ok(start_daemon(prepared, bulk, urgent, on_loss, keeper))
    }

    async fn lazy_from_images(
        &mut self,
        images: &Path,
        work: &Path,
    ) -> Result<Option<Box<dyn LocalLazy>>, PagesError> {
        if ensure_pipe_max_size().is_err() {
            return Ok(None);
        }
        let d = spawn_lazy_pages(&self.criu, images, work)
            .await
            .map_err(failed)?;
        Ok(Some(Box::new(LocalDaemon(d))))
    }
}

/// What hybrid's rounds left: the store, the channel they came on, and post-copy's
/// second channel, still to arrive.
struct Held {
    store: PageStore,
    channel: OwnedFd,
    urgent: Option<Channel>,
    cgroup: Option<String>,
}

#[async_trait]
impl HeldPages for Held {
    async fn postcopy(
        self: Box<Self>,
        images: &Path,
        work: &Path,
        on_loss: Box<dyn FnOnce() + Send>,
    ) -> Result<Box<dyn LazyDaemon>, PagesError> {
        let prepared = daemon::prepare(images, work)
            .map_err(failed)?
            .with_store(self.store);
        let (prepared, keeper) = with_keeper(prepared, self.cgroup.as_deref())?;
        let bulk = Stream::from_blocking_fd(self.channel).map_err(failed)?;
        let urgent = arrival(self.urgent).await?;
        Ok(start_daemon(prepared, bulk, urgent, on_loss, keeper))
    }
}

/// ferry's lazy-pages daemon, running.
struct DaemonTask {
    task: tokio::task::JoinHandle<Result<PostcopyStats, DaemonError>>,
    /// Fired once the container may talk: the background pages start then.
    go: Option<oneshot::Sender<()>>,
    pages_total: u64,
    /// Set when it ended with an error.
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// Let go of once the daemon ended: this agent is alive to handle what follows.
    keeper: Option<Arc<Keeper>>,
}

#[async_trait]
impl LazyDaemon for DaemonTask {
    fn pages_total(&self) -> u64 {
        self.pages_total
    }

    fn go(&mut self) {
        if let Some(g) = self.go.take() {
            let _ = g.send(());
        }
    }

    fn has_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait(self: Box<Self>) -> Result<PostcopyStats, PagesError> {
        let r = self.task.await.map_err(failed)?.map_err(failed);
        if let Some(k) = &self.keeper {
            k.release();
        }
        r
    }

    fn abort(self: Box<Self>) {
        self.task.abort();
        if let Some(k) = &self.keeper {
            k.release();
        }
    }
}

/// CRIU's lazy-pages daemon on the local images.
struct LocalDaemon(LazyPagesDaemon);

#[async_trait]
impl LocalLazy for LocalDaemon {
    async fn wait(mut self: Box<Self>) -> Result<(), PagesError> {
        match self.0.child.wait().await {
            Ok(s) if s.success() => Ok(()),
            other => Err(failed(format!("{other:?}"))),
        }
    }

    async fn kill(mut self: Box<Self>) {
        let _ = self.0.child.kill().await;
    }
}

//! `deskbus run`: wires sources, use cases, the spool and streams together,
//! and takes them down in order.
//!
//! Shutdown recipe (after mini-redis): on SIGINT/SIGTERM the shutdown signal
//! is broadcast; sources stop accepting (a webhook answers 503) and finish the
//! requests they hold; then dispatchers stop fetching and wait for the
//! batches in flight; then the spool writer commits what it was given and
//! closes. Each phase has a share of `general.shutdown_timeout`; a component
//! still running when it expires is named in the log and abandoned. Nothing
//! is lost by abandoning: the spool still holds every undelivered entry.

mod dispatcher;
mod recorder;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use deskbus_spool::{Spool, SpoolOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::internal_events::{ComponentFailed, SpoolDepth};
use crate::sources::{self, SourceContext};
use crate::streams::{Stream, StreamContext};
use crate::use_cases::Ingest;
use crate::use_cases::format::UseCaseFormat;

/// A receiver of the shutdown broadcast.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx })
    }

    /// Shutdown has begun, or whoever could begin it is gone (`run`
    /// returned early, say a stream's thread could not start): a component
    /// must not run on, nor spin on a [`Shutdown::wait`] that no longer waits.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|triggered| *triggered).await;
    }
}

/// Readiness: every component marks itself ready once it serves.
#[derive(Clone, Default)]
pub struct Ready {
    pending: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
}

impl Ready {
    /// Registers one more component that must report ready.
    pub fn register(&self) -> Ready {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.clone()
    }

    pub fn mark_ready(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0 && !self.stopping.load(Ordering::SeqCst)
    }

    fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the spool")]
    Spool(#[from] deskbus_spool::SpoolError),
    #[error("cannot build stream `{stream}`: {reason}")]
    Stream { stream: String, reason: String },
    #[error("source `{source_id}` failed")]
    Source {
        source_id: String,
        #[source]
        source: sources::SourceError,
    },
    #[error("source `{source_id}` stopped unexpectedly: {message}")]
    SourcePanicked { source_id: String, message: String },
    #[error("admin listener failed")]
    Admin(#[source] std::io::Error),
    #[error("stream `{stream}` stopped")]
    StreamStopped {
        stream: String,
        #[source]
        source: deskbus_spool::SpoolError,
    },
    #[error("stream `{stream}` stopped unexpectedly: {message}")]
    StreamDied { stream: String, message: String },
}

/// Opens the spool of `config`'s data directory.
pub fn open_spool(config: &Config) -> Result<Spool, RunError> {
    let dir = &config.general.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let mut options = SpoolOptions::new(dir.join("spool.db"));
    options.sync = config.general.spool_sync;
    Ok(Spool::open(options)?)
}

/// Runs until SIGINT or SIGTERM (or a fatal component error).
pub async fn run(config: Config) -> Result<(), RunError> {
    let metrics = crate::admin::install_metrics();
    let spool = open_spool(&config)?;
    let origin_uuid = match &config.general.origin_uuid {
        Some(origin) => origin.clone(),
        None => spool.meta_or_insert("origin_uuid", &uuid::Uuid::now_v7().to_string())?,
    };
    let mut streams: HashMap<String, Arc<dyn Stream>> = HashMap::new();
    for (id, settings) in &config.streams {
        let ctx = StreamContext {
            id: id.clone(),
            spool: Some(spool.clone()),
        };
        let stream = settings
            .config
            .build(&ctx)
            .map_err(|reason| RunError::Stream {
                stream: id.clone(),
                reason,
            })?;
        streams.insert(id.clone(), Arc::from(stream));
    }
    let ingest = Ingest::from_config(spool.clone(), &config);
    let (trigger, shutdown) = Shutdown::new();
    let ready = Ready::default();
    // Start-up itself is a component: /ready must not answer 200 in the
    // moment between the admin API's start and the sources' registration.
    let starting = ready.register();
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<RunError>(4);

    let admin = match config.admin.enabled {
        true => {
            let listener = tokio::net::TcpListener::bind(config.admin.address)
                .await
                .map_err(RunError::Admin)?;
            let task = tokio::spawn(crate::admin::serve(
                listener,
                metrics,
                ready.clone(),
                shutdown.clone(),
            ));
            Some(task)
        }
        false => None,
    };

    let mut source_tasks: Vec<(String, JoinHandle<()>)> = Vec::new();
    for (id, source) in &config.sources {
        let ctx = SourceContext {
            id: id.clone(),
            origin_uuid: origin_uuid.clone(),
            helpdesk_code: config.general.helpdesk_code.clone(),
            ingest: ingest.clone(),
            shutdown: shutdown.clone(),
            ready: ready.register(),
        };
        let (source, fatal, id) = (source.clone(), fatal_tx.clone(), id.clone());
        let name = format!("source {id}");
        source_tasks.push((
            name,
            tokio::spawn(async move {
                // A source that panics is as fatal as one that fails: deskbus
                // must not run on without it while /ready says otherwise.
                let outcome = tokio::spawn(sources::run(source, ctx)).await;
                let error = match outcome {
                    Ok(Ok(())) => return,
                    Ok(Err(source)) => RunError::Source {
                        source_id: id.clone(),
                        source,
                    },
                    Err(join) => RunError::SourcePanicked {
                        source_id: id.clone(),
                        message: join.to_string(),
                    },
                };
                ComponentFailed {
                    component: &id,
                    error: &error,
                }
                .emit();
                // The first fatal error stops deskbus; the others are logged
                // above, and must not wait for room in the channel.
                let _ = fatal.try_send(error);
            }),
        ));
    }

    let formats: Arc<HashMap<String, Arc<UseCaseFormat>>> = Arc::new(
        config
            .use_cases
            .iter()
            .map(|(name, u)| (name.clone(), Arc::new(u.format.clone())))
            .collect(),
    );
    let mut stream_tasks: Vec<(String, JoinHandle<()>)> = Vec::new();
    for (id, settings) in &config.streams {
        let dispatcher = dispatcher::Dispatcher {
            stream_id: id.clone(),
            settings: settings.clone(),
            stream: streams[id].clone(),
            spool: spool.clone(),
            formats: formats.clone(),
        };
        let ended =
            spawn_dispatcher(dispatcher, shutdown.clone()).map_err(|error| RunError::Stream {
                stream: id.clone(),
                reason: format!("cannot start its thread: {error}"),
            })?;
        let (fatal, id) = (fatal_tx.clone(), id.clone());
        stream_tasks.push((
            format!("stream {id}"),
            tokio::spawn(async move {
                // Only a spool whose writer stopped ends a stream early: deskbus
                // cannot record anything any more, so it stops too (and a
                // supervisor starts it again). So does a dispatcher that died.
                let error = match ended.await {
                    Ok(Ok(())) => return,
                    Ok(Err(error)) => error,
                    Err(_) => RunError::StreamDied {
                        stream: id.clone(),
                        message: "its thread ended without a word".into(),
                    },
                };
                ComponentFailed {
                    component: &id,
                    error: &error,
                }
                .emit();
                // The first fatal error stops deskbus; the others are logged
                // above, and must not wait for room in the channel.
                let _ = fatal.try_send(error);
            }),
        ));
    }
    starting.mark_ready();
    let gauges = tokio::spawn(report_spool_depth(
        spool.clone(),
        config.streams.keys().cloned().collect(),
        shutdown.clone(),
    ));

    tracing::info!(
        sources = config.sources.len(),
        streams = config.streams.len(),
        use_cases = config.use_cases.len(),
        data_dir = %config.general.data_dir.display(),
        "deskbus running"
    );
    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        error = fatal_rx.recv() => error,
    };
    tracing::info!(
        timeout_ms = config.general.shutdown_timeout.as_millis() as u64,
        "shutting down"
    );
    ready.stopping();
    let _ = trigger.send(true);
    let deadline = tokio::time::Instant::now() + config.general.shutdown_timeout;
    // Sources first, so nothing new arrives; streams then finish what they hold.
    join_until(source_tasks, deadline).await;
    join_until(stream_tasks, deadline).await;
    gauges.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    let close = tokio::task::spawn_blocking(move || spool.close());
    if tokio::time::timeout_at(deadline + Duration::from_secs(5), close)
        .await
        .is_err()
    {
        tracing::warn!(component = "spool", "spool writer did not close in time");
    }
    tracing::info!("deskbus stopped");
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Runs `dispatcher` on a thread of its own (`stream-<id>`), on a
/// single-threaded runtime; the receiver resolves when it ends, with why
/// if that was before shutdown: its spool's writer stopped
/// ([`RunError::StreamStopped`]), or it panicked outside a delivery or
/// its runtime could not be built ([`RunError::StreamDied`]).
///
/// Why a thread per stream, not a task on the shared runtime: the
/// stream's deliveries, its client's connection tasks and its sockets
/// then live on one thread, so a reply from the broker or the spool does
/// not wake another worker (at batch size 1, about a fifth of the CPU per
/// event for NATS). What it costs: one stream shapes and sends on one core
/// at most, and a stream's client must be created on that thread (see
/// [`Stream`]). At shutdown a dispatcher past the deadline is abandoned:
/// its thread ends with the process.
fn spawn_dispatcher(
    dispatcher: dispatcher::Dispatcher,
    shutdown: Shutdown,
) -> std::io::Result<tokio::sync::oneshot::Receiver<Result<(), RunError>>> {
    let stream = dispatcher.stream_id.clone();
    spawn_stream_thread(stream, move || dispatcher.run(shutdown))
}

/// The thread of [`spawn_dispatcher`], for any future `make` builds there
/// (the future need not be `Send`: it never leaves the thread).
fn spawn_stream_thread<F>(
    stream: String,
    make: impl FnOnce() -> F + Send + 'static,
) -> std::io::Result<tokio::sync::oneshot::Receiver<Result<(), RunError>>>
where
    F: std::future::Future<Output = Result<(), deskbus_spool::SpoolError>>,
{
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("stream-{stream}"))
        .spawn(move || {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(make()))
            }));
            let died = |message| {
                Err(RunError::StreamDied {
                    stream: stream.clone(),
                    message,
                })
            };
            let ended = match run {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(source))) => Err(RunError::StreamStopped {
                    stream: stream.clone(),
                    source,
                }),
                Ok(Err(error)) => died(format!("cannot build its runtime: {error}")),
                Err(panic) => died(format!(
                    "it panicked: {}",
                    dispatcher::panic_message(&*panic)
                )),
            };
            let _ = ended_tx.send(ended);
        })?;
    Ok(ended_rx)
}

async fn join_until(tasks: Vec<(String, JoinHandle<()>)>, deadline: tokio::time::Instant) {
    for (name, mut task) in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!(component = %name, "component did not stop before the shutdown deadline; abandoning it");
            task.abort();
        }
    }
}

async fn report_spool_depth(spool: Spool, streams: Vec<String>, mut shutdown: Shutdown) {
    loop {
        let spool2 = spool.clone();
        if let Ok(Ok(stats)) = tokio::task::spawn_blocking(move || spool2.stats()).await {
            let now = deskbus_spool::now_ms();
            for stream in &streams {
                let s = stats.streams.get(stream).cloned().unwrap_or_default();
                let age = s
                    .oldest_enqueued_at
                    .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                SpoolDepth {
                    stream,
                    depth: s.depth,
                    oldest_age_seconds: age,
                }
                .emit();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.wait() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// For the dispatcher's and recorder's tests: a spool at `path` holding
/// one entry for stream `out`, and that entry's seq.
#[cfg(test)]
async fn spool_with_one_entry(path: &std::path::Path) -> (Spool, i64) {
    use deskbus_spool::{AppendBatch, NewEntry};
    let spool = Spool::open(SpoolOptions::new(path)).unwrap();
    spool
        .append(AppendBatch {
            entries: vec![NewEntry::new("out", "u", "q", "k", "e", b"{}".to_vec())],
            ..AppendBatch::default()
        })
        .await
        .unwrap();
    let ready = spool
        .fetch_ready("out", deskbus_spool::now_ms(), 1, &Default::default())
        .unwrap();
    (spool, ready[0].seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose shutdown sender is gone (`run` returned early)
    /// stops instead of running on, or spinning on a `wait` that returns
    /// at once.
    #[tokio::test]
    async fn a_shutdown_whose_trigger_is_gone_counts_as_triggered() {
        let (trigger, mut shutdown) = Shutdown::new();
        assert!(!shutdown.is_triggered());
        drop(trigger);
        assert!(shutdown.is_triggered());
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .expect("wait returns");
    }

    async fn breaks_outside_any_delivery() -> Result<(), deskbus_spool::SpoolError> {
        panic!("the read-ahead broke")
    }

    /// A dispatcher that panics where no delivery guard catches it is not
    /// lost silently: its thread reports `StreamDied`, naming the stream
    /// and the panic, which `run` stops on.
    #[tokio::test]
    async fn a_stream_thread_that_panics_reports_the_stream_as_died() {
        let ended = spawn_stream_thread("out".into(), breaks_outside_any_delivery).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the thread ends")
            .expect("and answers before it does");
        match ended {
            Err(RunError::StreamDied { stream, message }) => {
                assert_eq!(stream, "out");
                assert_eq!(message, "it panicked: the read-ahead broke");
            }
            other => panic!("expected StreamDied, got {other:?}"),
        }
    }
}

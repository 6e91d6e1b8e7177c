//! What every broker stream must do, written once: a stream kind plugs in
//! through [`StreamKind`] (its config, how to read back what it delivered,
//! how to restart its server) and runs the scenarios below against the real
//! binary and a real server on 127.0.0.1.
//!
//! `tests/beanstalk.rs` is the first kind; AMQP and NATS plug in the same way.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Deskbus, counts, free_port, uuid7};

/// A broker stream under test, with the server it delivers to.
pub trait StreamKind {
    /// The stream's `type`.
    fn type_name(&self) -> &'static str;

    /// The keys of a `[streams.X]` table (without its header) that deliver
    /// to this kind's server.
    fn config_snippet(&self) -> String;

    /// Event ids delivered to `queue` since the last call, in the order the
    /// server hands them out; consumes them, so each job is seen once.
    async fn collect_delivered_ids(&mut self, queue: &str) -> Vec<String>;

    /// Stops the server, keeps it down for `down`, and starts it again with
    /// everything it had stored. Kinds on a shared server cannot do this.
    async fn restart_server(&mut self, down: Duration);

    /// How long the restart scenario waits between rounds of requests.
    /// A kind whose server takes a while to stop (a CLI that boots a VM
    /// first) posts more slowly, so that the stop still lands mid-run.
    fn restart_post_pause(&self) -> Duration {
        Duration::ZERO
    }
}

/// A deskbus with a webhook `web` feeding the stream `out` of `kind`,
/// through a use case `tickets` for every `ticket.*` event into `queue`
/// (a template). `stream_extra` adds keys to `[streams.out]`; `extra` adds
/// whole tables.
pub fn start_deskbus(
    dir: &Path,
    kind: &impl StreamKind,
    queue: &str,
    stream_extra: &str,
    extra: &str,
) -> Deskbus {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = config(dir, admin, web, kind, queue, stream_extra, extra);
    Deskbus::start(dir, &config, admin, web)
}

/// The config [`start_deskbus`] runs.
pub fn config(
    dir: &Path,
    admin: SocketAddr,
    web: SocketAddr,
    kind: &impl StreamKind,
    queue: &str,
    stream_extra: &str,
    extra: &str,
) -> String {
    // Retries come quickly, so restarts and outages are felt within a test.
    let stream = format!(
        "{}\n{stream_extra}\n\n[streams.out.retry]\ninitial_backoff = \"100ms\"\nmax_backoff = \"500ms\"",
        kind.config_snippet()
    );
    crate::util::config_with_stream(dir, admin, web, "", &stream, queue, extra)
}

pub use crate::util::{post, post_to};

/// `n` new `ticket.created` events, tickets numbered from `first`.
pub fn events(n: usize, first: u64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": uuid7(), "name": "ticket.created",
                   "data": {"ticket_id": first + i as u64, "subject": "printer"}})
        })
        .collect()
}

pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Collects from `queue` until `want` distinct ids arrived, then a little
/// longer to catch late duplicates. Panics after `timeout`.
pub async fn collect_until(
    kind: &mut impl StreamKind,
    queue: &str,
    want: usize,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        got.extend(kind.collect_delivered_ids(queue).await);
        if counts(&got).len() >= want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {want} events reached {queue} within {timeout:?}",
            counts(&got).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.extend(kind.collect_delivered_ids(queue).await);
    got
}

/// Every posted id was delivered, nothing else was, and `at_most_once`
/// says whether a duplicate (same id twice) is a failure.
pub fn assert_delivered(delivered: &[String], posted: &[String], at_most_once: bool) {
    let seen = counts(delivered);
    let missing: Vec<&String> = posted.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never delivered, e.g. {:?}",
        missing.len(),
        posted.len(),
        &missing[..missing.len().min(3)]
    );
    let posted_set: HashMap<&String, ()> = posted.iter().map(|id| (id, ())).collect();
    let strangers: Vec<&String> = seen
        .keys()
        .filter(|id| !posted_set.contains_key(id))
        .collect();
    assert!(
        strangers.is_empty(),
        "delivered ids never posted: {strangers:?}"
    );
    if at_most_once {
        let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    }
}

/// Scenario: events posted one request after another, then many requests
/// at once, arrive exactly as posted (ids, each once, per-ticket order).
pub async fn sequential_and_parallel_delivery(kind: &mut impl StreamKind, dir: &Path) {
    let queue = format!("conformance.{}", std::process::id());
    let bus = start_deskbus(dir, kind, &queue, "", "");
    let mut posted = Vec::new();
    // One ticket: deskbus promises order per ticket, not across tickets
    // (those are delivered in parallel).
    for i in 0..30 {
        let batch = vec![json!({"id": uuid7(), "name": "ticket.message",
                                "data": {"ticket_id": 7, "n": i}})];
        post(&bus, &batch).await;
        posted.extend(ids(&batch));
    }
    let sequential = collect_until(kind, &queue, 30, Duration::from_secs(20)).await;
    assert_eq!(
        sequential, posted,
        "one ticket, one request after another: delivered in posting order"
    );

    let batches: Vec<Vec<Value>> = (0..20).map(|r| events(25, 1000 + r * 25)).collect();
    let requests = batches
        .iter()
        .map(|batch| post_to(bus.url(), batch.clone()))
        .collect();
    futures_join_all(requests).await;
    let parallel_posted: Vec<String> = batches.iter().flat_map(|b| ids(b)).collect();
    let parallel = collect_until(kind, &queue, 500, Duration::from_secs(30)).await;
    assert_delivered(&parallel, &parallel_posted, true);
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );
}

/// Scenario: the server restarts in the middle of a 10,000-event run.
/// Every event arrives; a duplicate is only ever the same id again.
pub async fn at_least_once_through_a_server_restart(kind: &mut impl StreamKind, dir: &Path) {
    const TOTAL: usize = 10_000;
    const PER_REQUEST: usize = 100;
    let queue = "restart";
    let bus = start_deskbus(dir, kind, queue, "batch_size = 100", "");
    let batches: Vec<Vec<Value>> = (0..TOTAL / PER_REQUEST)
        .map(|r| events(PER_REQUEST, (r * PER_REQUEST) as u64))
        .collect();
    let posted: Vec<String> = batches.iter().flat_map(|b| ids(b)).collect();
    let url = bus.url();
    let accepted = Arc::new(AtomicUsize::new(0));
    let pause = kind.restart_post_pause();
    // Four requests in flight, like a few busy help desks.
    let poster = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            let mut batches = batches.into_iter();
            loop {
                let round: Vec<_> = batches
                    .by_ref()
                    .take(4)
                    .map(|batch| post_to(url.clone(), batch))
                    .collect();
                if round.is_empty() {
                    return;
                }
                let n = round.len() * PER_REQUEST;
                futures_join_all(round).await;
                accepted.fetch_add(n, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
            }
        }
    });

    // Restart once part of the run is in, while the rest is still coming.
    // (Reading the server meanwhile would be too slow a clock: posting is fast.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(Ordering::SeqCst) < TOTAL / 4 {
        assert!(
            Instant::now() < deadline,
            "the first quarter was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_stop = accepted.load(Ordering::SeqCst);
    kind.restart_server(Duration::from_secs(1)).await;
    assert!(
        at_stop < TOTAL,
        "the whole run was posted before the server stopped"
    );
    poster.await.unwrap();

    let delivered = collect_until(kind, queue, TOTAL, Duration::from_secs(40)).await;
    assert_delivered(&delivered, &posted, false);
    assert!(
        bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") > 0.0,
        "the restart was not felt: no delivery was retried"
    );
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );
    let (_, stats, _) = bus.cli(&["spool", "stats"]);
    let depth: Option<u64> = stats
        .lines()
        .find(|l| l.starts_with("out "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    assert_eq!(depth, Some(0), "nothing left in the spool:\n{stats}");
}

/// Waits for every future, concurrently, without pulling in `futures`.
pub async fn futures_join_all<F>(futures: Vec<F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// A test's own server process (beanstalkd, nats-server, moto): started on
/// a port of the test's, killed -9 on `kill` and on drop. Its stderr goes
/// to a file, so that a failing test says whether the server had died under
/// it and what it said; nats-server 2.9's panics, for one, go only there.
pub struct ServerProcess {
    child: Option<std::process::Child>,
    name: &'static str,
    stderr: tempfile::NamedTempFile,
}

impl ServerProcess {
    pub fn new(name: &'static str) -> ServerProcess {
        ServerProcess {
            child: None,
            name,
            stderr: tempfile::NamedTempFile::new().unwrap(),
        }
    }

    /// Starts `command` and waits until it answers on `port`; panics naming
    /// the `scripts/services` entry that installs it.
    pub fn spawn(
        &mut self,
        mut command: std::process::Command,
        service: &str,
        port: u16,
        wait: Duration,
    ) {
        let name = self.name;
        // Appended: a restarted server's stderr follows the first one's.
        let stderr = std::fs::OpenOptions::new()
            .append(true)
            .open(self.stderr.path())
            .unwrap();
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} ({e}); `scripts/services {service}` installs it")
            });
        let deadline = Instant::now() + wait;
        loop {
            // Ours must still run: one that could not bind has exited, and
            // what answers on the port would be somebody else.
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "our {name} exited ({status}) before answering on port {port}; \
                     is the port taken?\n{}",
                    self.stderr_text()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "our {name} never answered on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, if it runs: only what it stored survives.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(child) = &mut self.child
        {
            match child.try_wait() {
                Ok(Some(status)) => eprintln!("--- our {} had died: {status} ---", self.name),
                _ => eprintln!("--- our {} was still running ---", self.name),
            }
            let stderr = self.stderr_text();
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        self.kill();
    }
}

/// The `deskbus dlq list` line of the event `id`; panics, showing the list,
/// when the event is not a dead letter.
pub fn dead_letter_line(list: &str, id: &Value) -> String {
    let id = id.as_str().expect("an event id");
    list.lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("{id} is not a dead letter:\n{list}"))
        .to_owned()
}

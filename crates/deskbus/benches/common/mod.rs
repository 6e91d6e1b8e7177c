//! What the harness-less benches share: the `deskbus` release binary under
//! test, the webhook load it is given (a blast of batched requests, or a
//! steady rate of single events), the numbers read back from it, and the
//! table they are printed in.
//!
//! Each bench includes this file with `#[path = "common/mod.rs"] mod common;`.

#![allow(
    dead_code,
    reason = "each bench compiles this module on its own and uses only part of it"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// The tests' reading of `/proc`: CPU time per process.
#[path = "../../tests/util/proc.rs"]
pub mod proc;

/// The webhook load of the stream benches: concurrent requests (see
/// [`blast`]), each of `REQUEST` events.
pub const POSTERS: usize = 8;
pub const REQUEST: usize = 100;

/// Runs a bench's `main` on two worker threads, unless cargo is only
/// probing it with `--list`.
pub fn run(bench: impl Future<Output = ()>) {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench);
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (30 s at most) until something listens on 127.0.0.1:`port`.
pub fn wait_port(port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process, killed and reaped when dropped.
pub struct Process(pub Child);

impl Process {
    /// Spawns `command` (panicking with `cannot` if that fails) and waits
    /// until it listens on 127.0.0.1:`port`.
    pub fn listening(command: &mut Command, port: u16, cannot: &str) -> Process {
        let process = Process(command.spawn().expect(cannot));
        wait_port(port);
        process
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `i`th webhook event.
pub fn event(i: usize) -> Value {
    json!({"name": "ticket.created", "data": {
        "helpdesk_code": "ACME", "datetime_complete": "2026-11-23 10:00:00",
        "department_id": i % 7, "department_name": "Support", "helptopic_id": 10,
        "helptopic_label": "Report a Problem / Access Issue", "ticket_id": i}})
}

/// The body deskbus delivers for `event(i)`, for the raw-client baselines:
/// the event as the webhook `web` spools it, with an id, a time and an
/// origin uuid of their own (the same lengths as deskbus's), so that a
/// baseline sends as many bytes per event as deskbus does (about 414; the
/// id, name and data alone are 275).
pub fn envelope(i: usize) -> Vec<u8> {
    let origin = "0197a3c0-0000-7000-8000-000000000000";
    let event =
        deskbus_event::Event::new("web", "ticket.created", origin, event(i)["data"].clone());
    serde_json::to_vec(&event).unwrap()
}

/// The envelopes of the first 1,000 events, which the baselines cycle through.
pub fn envelopes() -> Arc<Vec<Vec<u8>>> {
    Arc::new((0..1000).map(envelope).collect())
}

/// Hands out `0..total` in consecutive ranges of `size` to any number of
/// tasks (clones share the position).
#[derive(Clone)]
pub struct Chunks {
    next: Arc<AtomicUsize>,
    total: usize,
    size: usize,
}

impl Chunks {
    pub fn new(total: usize, size: usize) -> Chunks {
        Chunks {
            next: Arc::new(AtomicUsize::new(0)),
            total,
            size,
        }
    }

    /// Every range, in order (for one task alone).
    pub fn ranges(self) -> impl Iterator<Item = Range<usize>> {
        std::iter::from_fn(move || self.next_range())
    }

    /// The next range nobody has taken, if any is left.
    pub fn next_range(&self) -> Option<Range<usize>> {
        let first = self.next.fetch_add(self.size, Ordering::Relaxed);
        (first < self.total).then(|| first..(first + self.size).min(self.total))
    }
}

/// The `q` quantile (0 to 1) of `latencies`, which it sorts.
pub fn quantile(latencies: &mut [Duration], q: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
}

/// Polls `count` every `poll` until it reaches `total`; panics when it has
/// not moved for 30 s ("stuck at n of total `what`").
pub async fn wait_count(
    what: &str,
    total: usize,
    poll: Duration,
    mut count: impl AsyncFnMut() -> usize,
) {
    let mut last = (0, Instant::now());
    loop {
        let n = count().await;
        if n >= total {
            return;
        }
        if n != last.0 {
            last = (n, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "stuck at {n} of {total} {what}"
        );
        tokio::time::sleep(poll).await;
    }
}

/// Awaits `run`; its output, and the CPU time this bench process spent
/// meanwhile (for a baseline: its client's share of the machine).
pub async fn with_own_cpu<T>(run: impl Future<Output = T>) -> (T, Duration) {
    let before = proc::cpu_time("self");
    let output = run.await;
    (output, proc::cpu_time("self") - before)
}

/// Awaits every task, panicking with any that panicked; their outputs.
pub async fn join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::with_capacity(tasks.len());
    for t in tasks {
        outputs.push(t.await.unwrap());
    }
    outputs
}

/// A reqwest client builder, with rustls's ring provider installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// Posts `total` events to `url` over `posters` concurrent connections, in
/// requests of `per_request` events (a bare event when 1, else an array);
/// the time from the first request to the last answer.
pub async fn blast(url: &str, total: usize, posters: usize, per_request: usize) -> Duration {
    let client = client_builder()
        .pool_max_idle_per_host(posters)
        .build()
        .unwrap();
    let chunks = Chunks::new(total, per_request);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..posters {
        let (client, url, chunks) = (client.clone(), url.to_owned(), chunks.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(range) = chunks.next_range() {
                let body = if per_request == 1 {
                    event(range.start)
                } else {
                    Value::Array(range.map(event).collect())
                };
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    join(tasks).await;
    started.elapsed()
}

/// Posts `event(i)` for every `i` below `rate * seconds` to `url`, one
/// request each, at a steady `rate` per second (open loop: on schedule,
/// whether or not earlier requests are answered).
pub async fn steady(url: &str, rate: usize, seconds: usize) {
    steady_with(url, rate, seconds, event).await;
}

/// [`steady`], posting `body(i)` (called just before the request is sent).
pub async fn steady_with(
    url: &str,
    rate: usize,
    seconds: usize,
    body: impl Fn(usize) -> Value + Send + Sync + 'static,
) {
    let client = client();
    let body = Arc::new(body);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut requests = Vec::with_capacity(rate * seconds);
    for i in 0..rate * seconds {
        ticker.tick().await;
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        requests.push(tokio::spawn(async move {
            let r = client.post(&url).json(&body(i)).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }));
    }
    join(requests).await;
}

/// Fills the spool of data directory `dir` with `event(i)` for every `i`
/// below `total`, as the webhook source of [`Deskbus`] would have queued
/// them for stream `out` (use case `t`, `queue`): so that a bench can time
/// the stream alone, draining a backlog, without the webhook's share of
/// the machine.
pub async fn fill_spool(dir: &Path, total: usize, queue: &str) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let spool = deskbus_spool::Spool::open(deskbus_spool::SpoolOptions::new(data.join("spool.db")))
        .unwrap();
    let origin = uuid::Uuid::now_v7().to_string();
    for chunk in Chunks::new(total, 1000).ranges() {
        let entries = chunk
            .map(|i| {
                let event = deskbus_event::Event::new(
                    "web",
                    "ticket.created",
                    &origin,
                    event(i)["data"].clone(),
                );
                deskbus_spool::NewEntry::new(
                    "out",
                    "t",
                    queue,
                    &format!("ticket:{i}"),
                    &event.id.to_string(),
                    serde_json::to_vec(&event).unwrap(),
                )
            })
            .collect();
        spool
            .append(deskbus_spool::AppendBatch {
                entries,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    spool.close();
}

/// The release binary under test: a webhook source on a free port feeding,
/// through the spool, one stream `out` (use case `t`, event
/// `ticket.created`), with the admin API (and `/metrics`) on another port.
pub struct Deskbus {
    process: Process,
    web: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
}

impl Deskbus {
    /// Starts deskbus with `dir` as its data directory, `stream` as the
    /// body of `[streams.out]` (its `type` and options, without
    /// `batch_size`), and queue `tickets`; returns once the webhook listens.
    pub fn start(dir: &Path, stream: &str, batch_size: usize) -> Deskbus {
        Deskbus::start_with_queue(dir, stream, batch_size, "tickets")
    }

    /// [`Deskbus::start`], delivering to `queue`.
    pub fn start_with_queue(dir: &Path, stream: &str, batch_size: usize, queue: &str) -> Deskbus {
        let (admin, web) = (free_port(), free_port());
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.web]\ntype = \"webhook\"\naddress = \"127.0.0.1:{web}\"\n\
             [streams.out]\n{stream}\nbatch_size = {batch_size}\n\
             [use_cases.t]\ninputs = [\"web\"]\nevents = [\"ticket.created\"]\nstream = \"out\"\nqueue = \"{queue}\"\n",
            d = dir.display()
        );
        let path = dir.join("deskbus.toml");
        std::fs::write(&path, config).unwrap();
        let process = Process::listening(
            Command::new(env!("CARGO_BIN_EXE_deskbus"))
                .arg("run")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
            web,
            "cannot run the deskbus binary",
        );
        Deskbus {
            process,
            web: ([127, 0, 0, 1], web).into(),
            admin: ([127, 0, 0, 1], admin).into(),
            client: client(),
        }
    }

    /// Where the webhook source takes events.
    pub fn events_url(&self) -> String {
        format!("http://{}/events", self.web)
    }

    /// The Prometheus text of the admin API's `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// p99 of the `deskbus_stream_delivery_latency_seconds` histogram,
    /// interpolated within a bucket the way Prometheus's
    /// `histogram_quantile` does, read after 300 ms to let the last
    /// deliveries of a run be recorded.
    pub async fn p99_latency(&self) -> Duration {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = self.metrics().await;
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with("deskbus_stream_delivery_latency_seconds_bucket"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        let rank = total * 0.99;
        let mut previous = (0.0, 0.0);
        for &(le, count) in &buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Duration::from_secs_f64(previous.0);
                }
                let share = (rank - previous.1) / (count - previous.1).max(1.0);
                return Duration::from_secs_f64(previous.0 + (le - previous.0) * share);
            }
            previous = (le, count);
        }
        Duration::ZERO
    }

    /// CPU time (user and system) deskbus has used so far.
    pub fn cpu_time(&self) -> Duration {
        proc::cpu_time(&self.process.0.id().to_string())
    }

    /// The peak resident set size of the process so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

/// The results table: a 34-wide label, deskbus's and the baseline's
/// numbers in columns `width` wide, and their ratio.
pub struct Table {
    width: usize,
}

impl Table {
    /// Prints the header, naming the baseline's column `baseline`.
    pub fn new(width: usize, baseline: &str) -> Table {
        println!(
            "{:<34} {:>w$} {:>w$} {:>8}",
            "measure",
            "deskbus",
            baseline,
            "ratio",
            w = width
        );
        Table { width }
    }

    /// A row of events/s.
    pub fn rate(&self, label: &str, ours: f64, base: f64) {
        println!(
            "{:<34} {:>w$.0} {:>w$.0} {:>8.2}",
            label,
            ours,
            base,
            ours / base,
            w = self.width
        );
    }

    /// A row of latencies, in ms.
    pub fn latency(&self, label: &str, ours: Duration, base: Duration) {
        println!(
            "{:<34} {:>w$.2} {:>w$.2} {:>8.1}",
            label,
            ours.as_secs_f64() * 1000.0,
            base.as_secs_f64() * 1000.0,
            ours.as_secs_f64() / base.as_secs_f64(),
            w = self.width
        );
    }

    /// A row of CPU time per event, in µs.
    pub fn cpu_per_event(&self, label: &str, ours: Duration, base: Duration, events: usize) {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / events as f64;
        println!(
            "{:<34} {:>w$.1} {:>w$.1} {:>8.2}",
            label,
            us(ours),
            us(base),
            us(ours) / us(base),
            w = self.width
        );
    }

    /// A row of deskbus's number alone.
    pub fn value(&self, label: &str, value: f64) {
        println!("{:<34} {:>w$.1}", label, value, w = self.width);
    }
}

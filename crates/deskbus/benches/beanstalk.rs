//! webhook → spool → beanstalk, end to end, against the real release binary
//! and a beanstalkd of the bench's own (in memory, on a free port).
//!
//! Prints a table: events/s and p99 spool-to-ack latency with the stream's
//! `batch_size` at 1 and 100. The baseline, measured in the same run against
//! the same server, is our client alone: the same payloads `put` in
//! pipelines of the same size over the same number of connections (2, the
//! stream's default pool), with nothing stored first: the ceiling of
//! beanstalkd on this machine.
//!
//! The CPU row is CPU time per event: deskbus's process while it drains
//! (its start included) against the bench's own process while it runs the
//! baseline (the client alone; the server is a process apart). deskbus
//! spends more by design: it also reads and deletes every event in its
//! spool. The figure moves less with the machine's noise than events/s.
//!
//! deskbus's latency is the `deskbus_stream_delivery_latency_seconds`
//! histogram (spool commit to confirmed put, interpolated within its
//! buckets), once while the whole run is pushed at once (mostly time spent
//! waiting in the spool backlog) and once at a steady 500 events/s; the
//! baseline's is the time from writing a pipeline to reading its last reply.
//!
//! `cargo bench -p deskbus --bench beanstalk` (needs `beanstalkd` on PATH:
//! `scripts/services beanstalkd` installs it).

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Chunks, Deskbus, POSTERS, Process, REQUEST, Table, blast, envelopes, free_port, quantile,
    wait_count,
};
use deskbus_beanstalk::{Connection, Job};

/// Connections of the stream's pool (its default) and of the baseline.
const CONNECTIONS: usize = 2;

struct Beanstalkd {
    _process: Process,
    address: String,
}

impl Beanstalkd {
    fn start() -> Beanstalkd {
        let port = free_port();
        let process = Process::listening(
            Command::new("beanstalkd")
                .args(["-l", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null()),
            port,
            "beanstalkd is not installed; run `scripts/services beanstalkd`",
        );
        Beanstalkd {
            _process: process,
            address: format!("127.0.0.1:{port}"),
        }
    }
}

/// Waits until `tube` has received `total` jobs.
async fn wait_jobs(address: &str, tube: &str, total: usize) {
    let mut c = Connection::connect(address).await.unwrap();
    wait_count("jobs", total, Duration::from_millis(5), async || {
        c.stats_tube(tube)
            .await
            .unwrap()
            .and_then(|s| s.number("total-jobs"))
            .unwrap_or(0) as usize
    })
    .await;
}

/// deskbus putting to `server`, `batch` jobs at a time.
fn start(dir: &Path, server: &Beanstalkd, batch: usize) -> Deskbus {
    let stream = format!("type = \"beanstalk\"\naddress = \"{}\"", server.address);
    Deskbus::start(dir, &stream, batch)
}

/// deskbus: events/s from the first request to the last job on the
/// server, and the p99 spool-to-ack latency of the run.
async fn deskbus(server: &Beanstalkd, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), server, batch);
    let started = Instant::now();
    blast(&bus.events_url(), total, POSTERS, REQUEST).await;
    wait_jobs(&server.address, "tickets", total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, bus.p99_latency().await)
}

/// deskbus draining a backlog of `total` events spooled before it starts:
/// events/s from its start to the last job on the server. The stream
/// alone, where [`deskbus`] also runs the webhook on the same two cores.
/// Also the CPU time deskbus used, its start included.
async fn deskbus_drain(server: &Beanstalkd, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    common::fill_spool(dir.path(), total, "tickets").await;
    let started = Instant::now();
    let bus = start(dir.path(), server, batch);
    wait_jobs(&server.address, "tickets", total).await;
    (
        total as f64 / started.elapsed().as_secs_f64(),
        bus.cpu_time(),
    )
}

/// deskbus at a steady `rate` of single-event requests (open loop, below
/// capacity): the p99 spool-to-ack latency without a backlog.
async fn deskbus_steady(
    server: &Beanstalkd,
    batch: usize,
    rate: usize,
    seconds: usize,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), server, batch);
    common::steady(&bus.events_url(), rate, seconds).await;
    wait_jobs(&server.address, "tickets", rate * seconds).await;
    bus.p99_latency().await
}

/// Our client alone: pipelines of `batch` puts over `CONNECTIONS`
/// connections, the same bodies as deskbus sends.
async fn baseline(server: &Beanstalkd, batch: usize, total: usize) -> (f64, Duration) {
    let tube = format!("baseline{batch}");
    let bodies = envelopes();
    let chunks = Chunks::new(total, batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (address, tube, chunks, bodies) = (
            server.address.clone(),
            tube.clone(),
            chunks.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Connection::connect(address.as_str()).await.unwrap();
            c.use_tube(&tube).await.unwrap();
            let mut latencies = Vec::new();
            while let Some(range) = chunks.next_range() {
                let jobs: Vec<Job<'_>> = range
                    .map(|i| Job {
                        priority: 1024,
                        delay: 0,
                        ttr: 60,
                        body: &bodies[i % bodies.len()],
                    })
                    .collect();
                let sent = Instant::now();
                for result in c.put_many(&jobs).await {
                    result.unwrap();
                }
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = common::join(tasks).await.concat();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, quantile(&mut latencies, 0.99))
}

fn main() {
    common::run(async {
        println!(
            "webhook → spool → beanstalk ({POSTERS} posters × {REQUEST} events per request, \
             {CONNECTIONS} beanstalk connections, spool synchronous=FULL)"
        );
        let table = Table::new(12, "raw client");
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            // A fresh server per measurement: each starts as empty as the
            // baseline's did, with nothing left over from another run.
            let base_server = Beanstalkd::start();
            let ((base_rate, base_p99), base_cpu) =
                common::with_own_cpu(baseline(&base_server, batch, total)).await;
            drop(base_server);
            let (rate, p99) = deskbus(&Beanstalkd::start(), batch, total).await;
            let steady_p99 = deskbus_steady(&Beanstalkd::start(), batch, 500, 5).await;
            let (drain_rate, drain_cpu) = deskbus_drain(&Beanstalkd::start(), batch, total).await;
            table.rate(&format!("events/s, batch {batch}"), rate, base_rate);
            table.rate(
                &format!("drain events/s, batch {batch}"),
                drain_rate,
                base_rate,
            );
            table.cpu_per_event(
                &format!("CPU µs/event, drain b{batch}"),
                drain_cpu,
                base_cpu,
                total,
            );
            table.latency(
                &format!("p99 spool→ack, full load, b{batch} (ms)"),
                p99,
                base_p99,
            );
            table.latency(
                &format!("p99 spool→ack, 500/s, b{batch} (ms)"),
                steady_p99,
                base_p99,
            );
        }
    });
}

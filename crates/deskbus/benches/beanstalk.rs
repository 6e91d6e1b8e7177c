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
//! deskbus's latency is the `deskbus_stream_delivery_latency_seconds`
//! histogram (spool commit to confirmed put, interpolated within its
//! buckets), once while the whole run is pushed at once (mostly time spent
//! waiting in the spool backlog) and once at a steady 500 events/s; the
//! baseline's is the time from writing a pipeline to reading its last reply.
//!
//! `cargo bench -p deskbus --bench beanstalk` (needs `beanstalkd` on PATH:
//! `scripts/services beanstalkd` installs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deskbus_beanstalk::{Connection, Job};
use serde_json::{Value, json};

/// Concurrent webhook requests, each of `REQUEST` events.
const POSTERS: usize = 8;
const REQUEST: usize = 100;
/// Connections of the stream's pool (its default) and of the baseline.
const CONNECTIONS: usize = 2;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn event(i: usize) -> Value {
    json!({"name": "ticket.created", "data": {
        "helpdesk_code": "ACME", "datetime_complete": "2026-11-23 10:00:00",
        "department_id": i % 7, "department_name": "Support", "helptopic_id": 10,
        "helptopic_label": "Report a Problem / Access Issue", "ticket_id": i}})
}

struct Beanstalkd(Child, String);

impl Beanstalkd {
    fn start() -> Beanstalkd {
        let port = free_port();
        let child = Command::new("beanstalkd")
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("beanstalkd is not installed; run `scripts/services beanstalkd`");
        wait_port(([127, 0, 0, 1], port).into());
        Beanstalkd(child, format!("127.0.0.1:{port}"))
    }
}

impl Drop for Beanstalkd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `tube` has received `total` jobs.
async fn wait_jobs(address: &str, tube: &str, total: usize) {
    let mut c = Connection::connect(address).await.unwrap();
    let mut last = (0, Instant::now());
    loop {
        let jobs = c
            .stats_tube(tube)
            .await
            .unwrap()
            .and_then(|s| s.number("total-jobs"))
            .unwrap_or(0) as usize;
        if jobs >= total {
            return;
        }
        if jobs != last.0 {
            last = (jobs, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "stuck at {jobs} of {total} jobs"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Deskbus {
    child: Child,
    web: SocketAddr,
    admin: SocketAddr,
}

impl Deskbus {
    fn start(dir: &Path, beanstalkd: &str, batch: usize) -> Deskbus {
        let (admin, web) = (free_port(), free_port());
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.web]\ntype = \"webhook\"\naddress = \"127.0.0.1:{web}\"\n\
             [streams.out]\ntype = \"beanstalk\"\naddress = \"{beanstalkd}\"\nbatch_size = {batch}\n\
             [use_cases.t]\ninputs = [\"web\"]\nevents = [\"ticket.created\"]\nstream = \"out\"\nqueue = \"tickets\"\n",
            d = dir.display()
        );
        let path = dir.join("deskbus.toml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_deskbus"))
            .arg("run")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let web: SocketAddr = ([127, 0, 0, 1], web).into();
        wait_port(web);
        Deskbus {
            child,
            web,
            admin: ([127, 0, 0, 1], admin).into(),
        }
    }

    /// p99 of the delivery-latency histogram, interpolated within a bucket
    /// the way Prometheus's `histogram_quantile` does.
    async fn p99_latency(&self) -> Duration {
        let text = reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
}

impl Drop for Deskbus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `total` events in requests of `REQUEST` over `POSTERS` connections.
async fn blast(url: &str, total: usize) {
    let client = client_builder().build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..POSTERS {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(REQUEST, Ordering::Relaxed);
                if first >= total {
                    return;
                }
                let body = Value::Array((first..(first + REQUEST).min(total)).map(event).collect());
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// deskbus: events/s from the first request to the last job on the
/// server, and the p99 spool-to-ack latency of the run.
async fn deskbus(server: &Beanstalkd, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path(), &server.1, batch);
    let started = Instant::now();
    blast(&format!("http://{}/events", bus.web), total).await;
    wait_jobs(&server.1, "tickets", total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    // Let the last acks be recorded before reading the histogram.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (rate, bus.p99_latency().await)
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
    let bus = Deskbus::start(dir.path(), &server.1, batch);
    let url = format!("http://{}/events", bus.web);
    let client = client_builder().build().unwrap();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut requests = Vec::new();
    for i in 0..rate * seconds {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        requests.push(tokio::spawn(async move {
            let r = client.post(&url).json(&event(i)).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }));
    }
    for r in requests {
        r.await.unwrap();
    }
    wait_jobs(&server.1, "tickets", rate * seconds).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.p99_latency().await
}

/// Our client alone: pipelines of `batch` puts over `CONNECTIONS`
/// connections, the same bodies as deskbus sends.
async fn baseline(server: &Beanstalkd, batch: usize, total: usize) -> (f64, Duration) {
    let tube = format!("baseline{batch}");
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..1000)
            .map(|i| {
                json!({"id": "0197a3c0-0000-7000-8000-000000000000", "name": "ticket.created",
                "data": event(i)["data"]})
                .to_string()
                .into_bytes()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (address, tube, next, bodies) =
            (server.1.clone(), tube.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Connection::connect(address.as_str()).await.unwrap();
            c.use_tube(&tube).await.unwrap();
            let mut latencies = Vec::new();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return latencies;
                }
                let jobs: Vec<Job<'_>> = (first..(first + batch).min(total))
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
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies[((latencies.len() as f64 * 0.99) as usize).min(latencies.len() - 1)];
    (rate, p99)
}

fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "webhook → spool → beanstalk ({POSTERS} posters × {REQUEST} events per request, \
             {CONNECTIONS} beanstalk connections, spool synchronous=FULL)"
        );
        println!(
            "{:<34} {:>12} {:>12} {:>8}",
            "measure", "deskbus", "raw client", "ratio"
        );
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            // A fresh server per batch size: nothing left over between runs.
            let server = Beanstalkd::start();
            let (base_rate, base_p99) = baseline(&server, batch, total).await;
            let (rate, p99) = deskbus(&server, batch, total).await;
            let steady_server = Beanstalkd::start();
            let steady_p99 = deskbus_steady(&steady_server, batch, 500, 5).await;
            println!(
                "{:<34} {:>12.0} {:>12.0} {:>8.2}",
                format!("events/s, batch {batch}"),
                rate,
                base_rate,
                rate / base_rate
            );
            println!(
                "{:<34} {:>12.2} {:>12.2} {:>8.1}",
                format!("p99 spool→ack, full load, b{batch} (ms)"),
                p99.as_secs_f64() * 1000.0,
                base_p99.as_secs_f64() * 1000.0,
                p99.as_secs_f64() / base_p99.as_secs_f64()
            );
            println!(
                "{:<34} {:>12.2} {:>12.2} {:>8.1}",
                format!("p99 spool→ack, 500/s, b{batch} (ms)"),
                steady_p99.as_secs_f64() * 1000.0,
                base_p99.as_secs_f64() * 1000.0,
                steady_p99.as_secs_f64() / base_p99.as_secs_f64()
            );
        }
    });
}

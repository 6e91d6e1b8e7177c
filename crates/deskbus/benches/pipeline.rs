//! webhook → spool → file, end to end, against the real release binary.
//!
//! Prints a table: events/s at batch sizes 1 and 100 (fsync'd spool commits
//! and fsync'd file batches), p50/p99 ingest-to-delivery latency at 1,000
//! events/s, and deskbus's peak RSS. The baseline, measured in the same run
//! with the same client, is a bare HTTP server that parses the same JSON and
//! answers 202 without storing anything: the ceiling of HTTP on this machine.
//!
//! `cargo bench -p deskbus --bench pipeline`

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CONNECTIONS: usize = 32;

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

/// Posts `total` events in requests of `batch`, over `CONNECTIONS` connections.
async fn blast(url: &str, total: usize, batch: usize) -> Duration {
    let client = client_builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return;
                }
                let body = if batch == 1 {
                    event(first).to_string()
                } else {
                    Value::Array((first..(first + batch).min(total)).map(event).collect())
                        .to_string()
                };
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// Counts lines appended to a file, reading only what is new.
struct LineCounter {
    offset: u64,
    lines: usize,
}

impl LineCounter {
    fn update(&mut self, path: &Path) -> usize {
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.seek(SeekFrom::Start(self.offset));
            let mut chunk = Vec::new();
            let _ = file.read_to_end(&mut chunk);
            self.offset += chunk.len() as u64;
            self.lines += chunk.iter().filter(|&&c| c == b'\n').count();
        }
        self.lines
    }
}

struct Deskbus {
    child: Child,
    web: SocketAddr,
    out: std::path::PathBuf,
}

impl Deskbus {
    fn start(dir: &Path) -> Deskbus {
        let (admin, web) = (free_port(), free_port());
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.web]\ntype = \"webhook\"\naddress = \"127.0.0.1:{web}\"\n\
             [streams.out]\ntype = \"file\"\npath = \"{d}/out/{{queue}}.ndjson\"\nbatch_size = 500\n\
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
            out: dir.join("out/tickets.ndjson"),
        }
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

impl Drop for Deskbus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Throughput: from the first request to the last line on disk.
async fn deskbus_throughput(batch: usize, total: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path());
    let url = format!("http://{}/events", bus.web);
    let started = Instant::now();
    blast(&url, total, batch).await;
    let mut counter = LineCounter {
        offset: 0,
        lines: 0,
    };
    let mut last = (0, Instant::now());
    while counter.update(&bus.out) < total {
        if counter.lines != last.0 {
            last = (counter.lines, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "stuck at {} of {total} lines",
            counter.lines
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (
        total as f64 / started.elapsed().as_secs_f64(),
        bus.peak_rss_mib(),
    )
}

async fn baseline_throughput(batch: usize, total: usize) -> f64 {
    let port = free_port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--baseline-server")
        .arg(port.to_string())
        .spawn()
        .unwrap();
    wait_port(([127, 0, 0, 1], port).into());
    let took = blast(&format!("http://127.0.0.1:{port}/events"), total, batch).await;
    let _ = child.kill();
    let _ = child.wait();
    total as f64 / took.as_secs_f64()
}

/// p50 and p99 from sending an event to seeing its line in the file, at a
/// steady `rate` events/s (open loop: one request per event, on schedule).
async fn latency(rate: usize, seconds: usize) -> (Duration, Duration, f64) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path());
    let url = format!("http://{}/events", bus.web);
    let client = client_builder().build().unwrap();
    let total = rate * seconds;
    let sent: Arc<Vec<std::sync::OnceLock<Instant>>> =
        Arc::new((0..total).map(|_| std::sync::OnceLock::new()).collect());
    let out = bus.out.clone();
    let tail = {
        let sent = sent.clone();
        tokio::task::spawn_blocking(move || {
            let mut latencies = Vec::with_capacity(total);
            let mut offset = 0u64;
            let mut pending = String::new();
            while latencies.len() < total {
                if let Ok(mut file) = std::fs::File::open(&out) {
                    file.seek(SeekFrom::Start(offset)).unwrap();
                    let mut chunk = String::new();
                    offset += file.read_to_string(&mut chunk).unwrap() as u64;
                    let now = Instant::now();
                    pending.push_str(&chunk);
                    while let Some(end) = pending.find('\n') {
                        let line: String = pending.drain(..=end).collect();
                        let v: Value = serde_json::from_str(&line).unwrap();
                        let i = v["data"]["seq"].as_u64().unwrap() as usize;
                        if let Some(at) = sent[i].get() {
                            latencies.push(now - *at);
                        }
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            latencies
        })
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut requests = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        requests.push(tokio::spawn(async move {
            let mut body = event(i);
            body["data"]["seq"] = json!(i);
            let _ = sent[i].set(Instant::now());
            let r = client.post(&url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }));
    }
    for r in requests {
        r.await.unwrap();
    }
    let mut latencies = tail.await.unwrap();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (pick(0.50), pick(0.99), bus.peak_rss_mib())
}

fn baseline_server(port: u16) {
    use axum::routing::post;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/events",
            post(|body: axum::body::Bytes| async move {
                let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = parsed.as_array().map_or(1, Vec::len);
                (
                    axum::http::StatusCode::ACCEPTED,
                    format!("{{\"accepted\":{n}}}"),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        return baseline_server(args[i + 1].parse().unwrap());
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "webhook → spool → file ({} connections, spool synchronous=FULL, file fsync per batch)",
            CONNECTIONS
        );
        println!(
            "{:<34} {:>14} {:>14} {:>8}",
            "measure", "deskbus", "baseline", "ratio"
        );
        let mut peak_rss: f64 = 0.0;
        for (batch, total) in [(1usize, 40_000usize), (100, 200_000)] {
            let base = baseline_throughput(batch, total).await;
            let (ours, rss) = deskbus_throughput(batch, total).await;
            peak_rss = peak_rss.max(rss);
            println!(
                "{:<34} {:>14.0} {:>14.0} {:>8.2}",
                format!("events/s, batch {batch}"),
                ours,
                base,
                ours / base
            );
        }
        let (p50, p99, rss) = latency(1000, 10).await;
        peak_rss = peak_rss.max(rss);
        println!(
            "{:<34} {:>14.1}",
            "p50 ingest→file at 1,000/s (ms)",
            p50.as_secs_f64() * 1000.0
        );
        println!(
            "{:<34} {:>14.1}",
            "p99 ingest→file at 1,000/s (ms)",
            p99.as_secs_f64() * 1000.0
        );
        println!("{:<34} {:>14.1}", "peak RSS of deskbus (MiB)", peak_rss);
    });
}

//! Runs the real `deskbus` binary in a temporary directory, as a user would.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod proc;
#[cfg(feature = "amqp")]
pub mod rabbitmq;

pub const BIN: &str = env!("CARGO_BIN_EXE_deskbus");

/// reqwest is built without a TLS crypto provider (ring is installed by the
/// code that needs it), so test clients install it too.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn http_client() -> reqwest::Client {
    http_client_builder().build().unwrap()
}

/// A loopback port nothing listens on, never handed out twice in this
/// process: tests run in parallel, and two of them must not pick the same
/// port for a server and a webhook between choosing it and binding it.
///
/// Chosen below Linux's ephemeral range (32768-60999), not with `bind(0)`:
/// a port from that range, released for the test to bind, could meanwhile
/// become the local port of some outgoing connection (seen: AddrInUse
/// while other tests made thousands of connections).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Deskbus {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub admin: SocketAddr,
    pub web: SocketAddr,
}

/// A config with a webhook (`web`) feeding a file stream (`out`) through
/// `use_case`; `extra` is appended (more tables, or keys for `[streams.out]`
/// when it starts with a key line).
pub fn webhook_to_file_config(
    dir: &Path,
    admin: SocketAddr,
    web: SocketAddr,
    web_extra: &str,
    stream_extra: &str,
    extra: &str,
) -> String {
    let stream = format!(
        "type = \"file\"\npath = \"{}/{{queue}}.ndjson\"\n{stream_extra}",
        dir.join("out").display()
    );
    config_with_stream(dir, admin, web, web_extra, &stream, "tickets", extra)
}

/// A config whose webhook `web` feeds the stream `out` (`stream` is the body
/// of `[streams.out]`) through the use case `tickets` (every `ticket.*`
/// event, under `queue`); `extra` is appended.
pub fn config_with_stream(
    dir: &Path,
    admin: SocketAddr,
    web: SocketAddr,
    web_extra: &str,
    stream: &str,
    queue: &str,
    extra: &str,
) -> String {
    format!(
        r#"{head}
[sources.web]
type = "webhook"
address = "{web}"
{web_extra}

[streams.out]
{stream}

[use_cases.tickets]
inputs = ["web"]
routing_keys = ["ticket.#"]
stream = "out"
queue = "{queue}"
{extra}
"#,
        head = config_head(dir, admin, "warn"),
    )
}

/// The `[general]`, `[admin]` and `[log]` tables every test config starts with.
fn config_head(dir: &Path, admin: SocketAddr, log_level: &str) -> String {
    format!(
        r#"
[general]
data_dir = "{data}"
shutdown_timeout = "5s"

[admin]
address = "{admin}"

[log]
level = "{log_level}"
"#,
        data = dir.join("data").display(),
    )
}

/// `deskbus check --connect PATH`: exit code, stdout and stderr.
pub fn check_connect(path: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A temporary directory and deskbus running [`webhook_to_file_config`] in it.
pub fn start_webhook_to_file(
    web_extra: &str,
    stream_extra: &str,
    extra: &str,
) -> (tempfile::TempDir, Deskbus) {
    start_webhook_to_file_in(tempfile::tempdir().unwrap(), web_extra, stream_extra, extra)
}

/// [`start_webhook_to_file`] in `dir`, which may hold state already
/// (`data/spool.db`).
pub fn start_webhook_to_file_in(
    dir: tempfile::TempDir,
    web_extra: &str,
    stream_extra: &str,
    extra: &str,
) -> (tempfile::TempDir, Deskbus) {
    let (admin, web) = (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    );
    let config = webhook_to_file_config(dir.path(), admin, web, web_extra, stream_extra, extra);
    let bus = Deskbus::start(dir.path(), &config, admin, web);
    (dir, bus)
}

impl Deskbus {
    /// Writes `config` into `dir` and starts `deskbus run`, waiting for /ready.
    pub fn start(dir: &Path, config: &str, admin: SocketAddr, web: SocketAddr) -> Deskbus {
        let path = dir.join("deskbus.toml");
        std::fs::write(&path, config).unwrap();
        let mut bus = Deskbus {
            child: None,
            dir: dir.to_owned(),
            config: path,
            admin,
            web,
        };
        bus.spawn();
        bus
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("deskbus.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start deskbus");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "deskbus exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if http_get(self.admin, "/ready").map(|(code, _)| code) == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "deskbus not ready after 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("deskbus.log")).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not running");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "deskbus did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.web)
    }

    /// A metric's value summed over its label sets matching `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").expect("metrics");
        body.lines()
            .filter(|l| {
                l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Runs another deskbus command against this config.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Deskbus {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what deskbus said, before its directory goes.
        if std::thread::panicking() {
            let log = self.log();
            // A burst of one warning fills any tail: first, every distinct
            // warning and error (without time and fields), counted.
            let mut seen: Vec<(String, usize)> = Vec::new();
            for line in log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            {
                let what = line.split_once(' ').map_or(line, |(_, rest)| rest);
                let what = what.split(" event_id=").next().unwrap_or(what);
                let what = match line.split_once(" reason=") {
                    Some((_, reason)) => format!("{what} ... reason={reason}"),
                    None => what.to_owned(),
                };
                match seen.iter_mut().find(|(w, _)| *w == what) {
                    Some((_, n)) => *n += 1,
                    None => seen.push((what, 1)),
                }
            }
            eprintln!("--- warnings and errors of deskbus.log, first seen first ---");
            for (what, n) in seen.iter().take(40) {
                eprintln!("{n:>6} x {what}");
            }
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of deskbus.log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A connection of the test's own to the spool of data directory `dir`
/// (to look inside, or to plant a trigger that makes the spool refuse),
/// waiting for deskbus's writer rather than failing when it holds the lock.
pub fn spool_sqlite(dir: &std::path::Path) -> rusqlite::Connection {
    let spool = rusqlite::Connection::open(dir.join("data/spool.db")).unwrap();
    spool.busy_timeout(Duration::from_secs(10)).unwrap();
    spool
}

/// Makes the spool refuse every `operation` (`INSERT`, `DELETE`) on its
/// entries, failing with `message`, until trigger `name` is dropped.
pub fn refuse_in_spool(spool: &rusqlite::Connection, name: &str, operation: &str, message: &str) {
    refuse_in_spool_when(spool, name, operation, "TRUE", message);
}

/// [`refuse_in_spool`] for the rows where `condition` holds (SQL over the
/// row as `old` or `new`, e.g. `old.event_id = 'x'`).
pub fn refuse_in_spool_when(
    spool: &rusqlite::Connection,
    name: &str,
    operation: &str,
    condition: &str,
    message: &str,
) {
    spool
        .execute_batch(&format!(
            "CREATE TRIGGER {name} BEFORE {operation} ON entries WHEN {condition}
             BEGIN SELECT RAISE(ABORT, '{message}'); END;"
        ))
        .unwrap();
}

/// A tiny blocking HTTP/1.1 GET, so readiness polling needs no runtime.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// deskbus with the source `id` (`source`: the body of `[sources.<id>]`,
/// its `type` included) and every event it takes, through the use case
/// `all` (`selection`: its selection keys, `routing_keys = ["#"]` when
/// empty), into `<dir>/out/events.ndjson`; `extra` adds tables. Returns
/// once the admin API answers.
pub fn start_source_to_file(
    dir: &Path,
    id: &str,
    source: &str,
    selection: &str,
    extra: &str,
) -> Deskbus {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let unused: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = source_to_file_config(dir, admin, id, source, selection, extra);
    Deskbus::start(dir, &config, admin, unused)
}

/// The config [`start_source_to_file`] runs.
pub fn source_to_file_config(
    dir: &Path,
    admin: SocketAddr,
    id: &str,
    source: &str,
    selection: &str,
    extra: &str,
) -> String {
    let selection = match selection {
        "" => "routing_keys = [\"#\"]",
        other => other,
    };
    format!(
        r#"{head}
[sources.{id}]
{source}

[streams.out]
type = "file"
path = "{out}/{{queue}}.ndjson"

[use_cases.all]
inputs = ["{id}"]
{selection}
stream = "out"
queue = "events"
{extra}
"#,
        head = config_head(dir, admin, "info"),
        out = dir.join("out").display(),
    )
}

/// The complete lines of `path` (a last line still being written is left
/// for the next read; a missing file has none).
pub fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete.lines().map(String::from).collect()
}

/// The event lines of a file the file stream writes: its complete lines,
/// less any torn by a `kill -9` in the middle of a write. The file stream
/// ends such a line when it starts again, and the event in it, never
/// recorded as delivered, is written again whole further on; so a line
/// that is not JSON is skipped only when a later line starts with it.
/// Any other bad line panics.
pub fn event_lines(path: &Path) -> Vec<String> {
    let lines = complete_lines(path);
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            let written_again = lines[i + 1..]
                .iter()
                .any(|later| later.len() > line.len() && later.starts_with(line.as_str()));
            assert!(written_again, "bad line {line:?}: {e}");
            continue;
        }
        events.push(line.clone());
    }
    events
}

/// The events in `<dir>/out/events.ndjson` (see [`start_source_to_file`]).
pub fn delivered_events(dir: &Path) -> Vec<serde_json::Value> {
    event_lines(&dir.join("out/events.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("checked by event_lines"))
        .collect()
}

/// Waits until `n` events were delivered to `<dir>/out/events.ndjson`;
/// returns them.
pub fn wait_delivered(dir: &Path, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    wait_for(timeout, &format!("{n} delivered events"), || {
        events = delivered_events(dir);
        events.len() >= n
    });
    events
}

/// `deskbus dlq list` until it shows `n` dead letters; the list.
pub fn wait_dead_letters(bus: &Deskbus, n: usize) -> String {
    let want = format!("{n} dead letter{}", if n == 1 { "" } else { "s" });
    let mut list = String::new();
    // The count line itself: "12 dead letters" contains "2 dead letters".
    wait_for(Duration::from_secs(10), &want, || {
        let (code, out, stderr) = bus.cli(&["dlq", "list"]);
        assert_eq!(code, 0, "{stderr}");
        list = out;
        list.lines().any(|line| line == want)
    });
    list
}

/// Event ids per line of an output file (missing file: none).
pub fn delivered_ids(path: &Path) -> Vec<String> {
    event_lines(path)
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("checked by event_lines");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// How often each id occurs.
pub fn counts(ids: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    counts
}

/// Waits until `check` holds, or panics with `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn uuid7() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn event(id: &str, ticket: u64) -> serde_json::Value {
    serde_json::json!({"id": id, "name": "ticket.created", "data": {"ticket_id": ticket, "subject": "printer"}})
}

/// Posts `events` as one request; panics unless they were accepted.
pub async fn post(bus: &Deskbus, events: &[serde_json::Value]) {
    post_to(bus.url(), events.to_vec()).await
}

/// [`post`] with owned arguments, for spawned tasks.
pub async fn post_to(url: String, events: Vec<serde_json::Value>) {
    let response = http_client().post(url).json(&events).send().await.unwrap();
    let status = response.status();
    assert_eq!(status, 202, "{}", response.text().await.unwrap_or_default());
}

//! webhook → nats stream → a real nats-server with JetStream, read back by
//! sequence from the stream itself (so a duplicate stored twice would show).
//!
//! Uses the shared server on 127.0.0.1:4222 (`scripts/services nats`) with
//! a stream and subjects of its own (in memory, deleted at the end), or, to
//! restart the server or set its limits, a nats-server of its own on a free
//! port. Fails, never skips, without one.
#![cfg(feature = "nats")]

mod conformance;
mod util;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use conformance::{StreamKind, collect_until, events, ids, post, start_deskbus};
use serde_json::json;
use util::*;

const SHARED: &str = "nats://127.0.0.1:4222";

/// A nats-server started by the test: on a free port, with its JetStream
/// store in a temporary directory so that messages survive a restart.
/// Killed on drop.
struct OwnServer {
    process: conformance::ServerProcess,
    port: u16,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    args: Vec<String>,
}

impl OwnServer {
    /// `config`: lines of a server config file (options the command line
    /// lacks, such as `max_payload`); `args`: extra flags.
    fn start(config: &str, args: &[&str]) -> OwnServer {
        let dir = tempfile::tempdir().unwrap();
        let config = (!config.is_empty()).then(|| {
            let path = dir.path().join("nats-server.conf");
            std::fs::write(&path, config).unwrap();
            path
        });
        let mut server = OwnServer {
            process: conformance::ServerProcess::new("nats-server"),
            port: free_port(),
            dir,
            config,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .arg("-l")
            .arg(self.dir.path().join("nats-server.log"))
            .args(&self.args);
        self.process
            .spawn(command, "nats", self.port, Duration::from_secs(10));
    }

    /// kill -9: only what the server wrote to its store survives.
    fn kill(&mut self) {
        self.process.kill();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // A failing test says what its server went through (the process
        // reports whether it had died, and its stderr).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("nats-server.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- last lines of our nats-server's log (port {}) ---",
                self.port
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The nats stream kind: a server, a JetStream stream of its own (created
/// by deskbus through `create_stream`) and a read position per queue.
struct Nats {
    url: String,
    own: Option<OwnServer>,
    stream: String,
    prefix: String,
    /// Extra keys of the `create_stream` table.
    stream_extra: String,
    /// The stream's PubAck `timeout`.
    timeout: &'static str,
    /// User and password for the test's own connection.
    user: Option<(String, String)>,
    context: Option<Context>,
    next_seq: HashMap<String, u64>,
}

impl Nats {
    fn new(url: String, own: Option<OwnServer>, stream_extra: &str) -> Nats {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        Nats {
            url,
            own,
            stream: format!("DESKBUS_TEST_{tag}"),
            prefix: format!("deskbus.test{tag}."),
            stream_extra: stream_extra.to_owned(),
            timeout: "2s",
            user: None,
            context: None,
            next_seq: HashMap::new(),
        }
    }

    /// On the shared server: a stream in memory that expires on its own
    /// should a test die before [`Nats::delete_stream`].
    async fn shared() -> Nats {
        if let Err(e) = async_nats::connect(SHARED).await {
            panic!("nats-server is not reachable on {SHARED} ({e}); run `scripts/services nats`");
        }
        Nats::new(
            SHARED.into(),
            None,
            ", storage = \"memory\", max_age = \"1h\"",
        )
    }

    fn own(config: &str, args: &[&str]) -> Nats {
        let server = OwnServer::start(config, args);
        Nats::new(server.url(), Some(server), "")
    }

    async fn context(&mut self) -> Option<Context> {
        if self.context.is_none() {
            let mut options = async_nats::ConnectOptions::new();
            if let Some((user, password)) = &self.user {
                options = options.user_and_password(user.clone(), password.clone());
            }
            let client = options
                .connection_timeout(Duration::from_secs(2))
                .connect(self.url.as_str())
                .await
                .ok()?;
            self.context = Some(jetstream::new(client));
        }
        self.context.clone()
    }

    async fn stream_messages(&mut self) -> u64 {
        let context = self.context().await.expect("the server is up");
        let stream = context.get_stream(&self.stream).await.unwrap();
        stream.cached_info().state.messages
    }

    async fn delete_stream(&mut self) {
        if let Some(context) = self.context().await {
            let _ = context.delete_stream(&self.stream).await;
        }
    }
}

impl StreamKind for Nats {
    fn type_name(&self) -> &'static str {
        "nats"
    }

    fn config_snippet(&self) -> String {
        format!(
            "type = \"nats\"\nurl = \"{}\"\nsubject_prefix = \"{}\"\ntimeout = \"{}\"\n\
             create_stream = {{ name = \"{}\"{} }}",
            self.url, self.prefix, self.timeout, self.stream, self.stream_extra
        )
    }

    async fn collect_delivered_ids(&mut self, queue: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let subject = format!("{}{queue}", self.prefix);
        let Some(context) = self.context().await else {
            return ids; // the server is down (restarting): nothing to read yet
        };
        // STREAM.INFO first, and a MSG.GET only for sequences the stream
        // says it holds: nats-server 2.9.10 (Debian's) died of a nil
        // pointer in `jsMsgGetRequest` on this reader's MSG.GET, sent while
        // deskbus was creating the stream (about one run in four with the
        // tests in parallel).
        let Ok(stream) = context.get_stream(&self.stream).await else {
            return ids;
        };
        let last = stream.cached_info().state.last_sequence;
        let next = self.next_seq.entry(queue.to_owned()).or_insert(1);
        // Each stored message once, in stream order: a duplicate the
        // server failed to drop would be read twice.
        while *next <= last
            && let Ok(message) = stream
                .get_first_raw_message_by_subject(&subject, *next)
                .await
        {
            *next = message.sequence + 1;
            let event: serde_json::Value = serde_json::from_slice(&message.payload)
                .unwrap_or_else(|e| panic!("message {} is not JSON: {e}", message.sequence));
            let id = event["id"].as_str().expect("an event id").to_owned();
            let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
            // One entry per (event, use case): the conformance use case is `tickets`.
            assert_eq!(header("Nats-Msg-Id"), Some(format!("{id}/tickets")));
            assert_eq!(header("Content-Type").as_deref(), Some("application/json"));
            ids.push(id);
        }
        ids
    }

    async fn restart_server(&mut self, down: Duration) {
        let server = self
            .own
            .as_mut()
            .expect("tests restart only a nats-server of their own, never the shared one");
        server.kill();
        tokio::time::sleep(down).await;
        server.spawn();
        self.context = None;
    }
}

fn check_connect(dir: &std::path::Path, kind: &Nats) -> (Option<i32>, String) {
    let admin = ([127, 0, 0, 1], free_port()).into();
    let web = ([127, 0, 0, 1], free_port()).into();
    let path = dir.join("deskbus.toml");
    std::fs::write(
        &path,
        conformance::config(dir, admin, web, kind, "t", "", ""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_server_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let kind = Nats::shared().await;
    let (code, out) = check_connect(dir.path(), &kind);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stream out (nats): ok"), "{out}");

    // A server that was there and is gone; its password is never printed.
    let mut gone = Nats::own("", &[]);
    let port = gone.own.as_ref().unwrap().port;
    gone.own.as_mut().unwrap().kill();
    gone.url = format!("nats://bob:hunter2@127.0.0.1:{port}");
    let (code, out) = check_connect(dir.path(), &gone);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "stream out (nats): FAILED: cannot connect to nats://bob:[redacted]@127.0.0.1:{port}"
        )),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_sequential_and_parallel_posts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Nats::shared().await;
    conformance::sequential_and_parallel_delivery(&mut kind, dir.path()).await;
    kind.delete_stream().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_through_a_server_restart() {
    const TOTAL: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut kind = Nats::own("", &[]);
    // The client queues what is published while it reconnects: with a
    // PubAck timeout longer than the 1 s outage the restart goes unnoticed
    // (every ack arrives late but in time). A shorter one makes the batches
    // caught by the restart fail and be retried, which is the point here.
    kind.timeout = "500ms";
    conformance::at_least_once_through_a_server_restart(&mut kind, dir.path()).await;
    // Retries carried the same Nats-Msg-Id, so the server kept one copy of
    // each event: the stream holds exactly the run (read in full above,
    // each id once or the conformance check would have listed it twice).
    assert_eq!(kind.stream_messages().await, TOTAL);
    let context = kind.context().await.unwrap();
    let stream = context.get_stream_no_info(&kind.stream).await.unwrap();
    let mut seen = HashMap::new();
    for seq in 1..=TOTAL {
        let message = stream.get_raw_message(seq).await.unwrap();
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .to_owned();
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len() as u64, TOTAL, "a stored event has a twin");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_dead_letters_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    // Messages of at most 1 KiB, so one big ticket is a poison event.
    let mut kind = Nats::own("max_payload: 1024\n", &[]);
    let bus = start_deskbus(dir.path(), &kind, "tickets.{dept:-none}", "", "");

    let mut good = events(10, 1);
    post(&bus, &good).await;
    let too_big = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 100, "subject": "x".repeat(2000)}});
    let spaces = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 101, "dept": "sales and support"}});
    let wildcard = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 102, "dept": "*"}});
    let empty_token = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 103, "dept": "sales..support"}});
    post(
        &bus,
        &[
            too_big.clone(),
            spaces.clone(),
            wildcard.clone(),
            empty_token.clone(),
        ],
    )
    .await;
    let more = events(10, 200);
    post(&bus, &more).await;
    good.extend(more);

    let delivered = collect_until(&mut kind, "tickets.none", 20, Duration::from_secs(20)).await;
    conformance::assert_delivered(&delivered, &ids(&good), true);

    let list = wait_dead_letters(&bus, 4);
    let line = conformance::dead_letter_line(&list, &too_big["id"]);
    assert!(line.contains("max_payload"), "{line}");
    let line = conformance::dead_letter_line(&list, &spaces["id"]);
    assert!(line.contains("whitespace"), "{line}");
    let line = conformance::dead_letter_line(&list, &wildcard["id"]);
    assert!(line.contains("wildcards"), "{line}");
    let line = conformance::dead_letter_line(&list, &empty_token["id"]);
    assert!(line.contains("empty token"), "{line}");
}

/// No stream captures the subject: retried (not dead letters) until an
/// operator creates one, then everything flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_missing_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Nats::shared().await;
    let prefix = kind.prefix.clone();
    let admin = ([127, 0, 0, 1], free_port()).into();
    let web = ([127, 0, 0, 1], free_port()).into();
    // The kind's snippet without `create_stream`.
    let config = conformance::config(dir.path(), admin, web, &kind, "waiting", "", "");
    let config = config.replace(
        &format!(
            "\ncreate_stream = {{ name = \"{}\"{} }}",
            kind.stream, kind.stream_extra
        ),
        "",
    );
    assert!(!config.contains("create_stream"), "{config}");
    let bus = Deskbus::start(dir.path(), &config, admin, web);

    let posted = events(5, 1);
    post(&bus, &posted).await;
    wait_for(
        Duration::from_secs(20),
        "retries of the stream-less events",
        || bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") >= 5.0,
    );
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );

    let context = kind.context().await.unwrap();
    context
        .create_stream(jetstream::stream::Config {
            name: kind.stream.clone(),
            subjects: vec![format!("{prefix}>")],
            storage: jetstream::stream::StorageType::Memory,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    let delivered = collect_until(&mut kind, "waiting", 5, Duration::from_secs(20)).await;
    conformance::assert_delivered(&delivered, &ids(&posted), true);
    let (_, list, _) = bus.cli(&["dlq", "list"]);
    assert!(!list.contains(ids(&posted)[0].as_str()), "{list}");
    kind.delete_stream().await;
}

/// `create_stream` names the stream deskbus delivers to: a message whose
/// subject another stream captures is refused (`Nats-Expected-Stream`)
/// and retried, never stored there and counted as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_another_stream_captures_is_refused_not_stored_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Nats::shared().await;
    let context = kind.context().await.unwrap();
    let stream = |name: &str, subject: String| jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![subject],
        storage: jetstream::stream::StorageType::Memory,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    };
    // deskbus's stream exists already (so it is kept as it is), capturing
    // other subjects; another stream captures the use case's.
    let other = format!("{}_OTHER", kind.stream);
    context
        .create_stream(stream(&other, format!("{}captured", kind.prefix)))
        .await
        .unwrap();
    context
        .create_stream(stream(&kind.stream, format!("{}elsewhere", kind.prefix)))
        .await
        .unwrap();
    let admin = ([127, 0, 0, 1], free_port()).into();
    let web = ([127, 0, 0, 1], free_port()).into();
    let config = conformance::config(dir.path(), admin, web, &kind, "captured", "", "");
    let bus = Deskbus::start(dir.path(), &config, admin, web);

    post(&bus, &events(3, 1)).await;
    wait_for(
        Duration::from_secs(20),
        "retries of the refused events",
        || bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") >= 3.0,
    );
    let held = context.get_stream(&other).await.unwrap();
    assert_eq!(held.cached_info().state.messages, 0, "stored in {other}");
    assert_eq!(bus.metric("deskbus_stream_delivered_events_total", ""), 0.0);
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );
    let _ = context.delete_stream(&other).await;
    kind.delete_stream().await;
}

/// A server that wants a user and password: given as `user` and
/// `password_file`, or in the URL, they get in; a wrong one is retried,
/// never dead-lettered, and never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_with_user_and_password() {
    let mut kind = Nats::own("", &["--user", "deskbus", "--pass", "s3cret-pw"]);
    kind.user = Some(("deskbus".into(), "s3cret-pw".into()));
    let plain_url = kind.url.clone();
    let start = |kind: &Nats, dir: &std::path::Path, url: &str, keys: &str| {
        let admin = ([127, 0, 0, 1], free_port()).into();
        let web = ([127, 0, 0, 1], free_port()).into();
        let config = conformance::config(dir, admin, web, kind, "auth", keys, "");
        let config = config.replace(
            &format!("url = \"{plain_url}\""),
            &format!("url = \"{url}\""),
        );
        Deskbus::start(dir, &config, admin, web)
    };

    // `user` and `password_file`.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("nats-password");
    std::fs::write(&secret, "s3cret-pw\n").unwrap();
    let keys = format!(
        "user = \"deskbus\"\npassword_file = \"{}\"",
        secret.display()
    );
    let bus = start(&kind, dir.path(), &plain_url, &keys);
    let mut posted = events(3, 1);
    post(&bus, &posted).await;
    let delivered = collect_until(&mut kind, "auth", 3, Duration::from_secs(20)).await;
    conformance::assert_delivered(&delivered, &ids(&posted), true);
    drop(bus);

    // In the URL, percent-encoded like any URL userinfo.
    let dir = tempfile::tempdir().unwrap();
    let in_url = plain_url.replace("nats://", "nats://deskbus:s3cret%2Dpw@");
    let bus = start(&kind, dir.path(), &in_url, "");
    let more = events(3, 10);
    post(&bus, &more).await;
    posted.extend(more);
    let delivered = collect_until(&mut kind, "auth", 3, Duration::from_secs(20)).await;
    conformance::assert_delivered(&delivered, &ids(&posted[3..]), true);
    drop(bus);

    // The wrong password, in the URL.
    let dir = tempfile::tempdir().unwrap();
    let wrong = plain_url.replace("nats://", "nats://deskbus:not-the-password@");
    let bus = start(&kind, dir.path(), &wrong, "");
    post(&bus, &events(1, 9)).await;
    wait_for(Duration::from_secs(20), "a retry after the refusal", || {
        bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") >= 1.0
    });
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );
    let check = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&bus.config)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(out.contains("authorization violation"), "{out}");
    assert!(out.contains("nats://deskbus:[redacted]@127.0.0.1"), "{out}");
    let log = bus.log();
    assert!(
        !log.contains("not-the-password") && !out.contains("not-the-password"),
        "{log}{out}"
    );
}

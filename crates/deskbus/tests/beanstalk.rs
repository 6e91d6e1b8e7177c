//! webhook → beanstalk stream → a real beanstalkd, read back with our client.
//!
//! Uses the shared server on 127.0.0.1:11300 (`scripts/services beanstalkd`)
//! with tubes of its own, or, to restart the server or set its flags, a
//! beanstalkd of its own on a free port. Fails, never skips, without one.

mod conformance;
mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use conformance::{StreamKind, collect_until, events, ids, post, start_deskbus};
use deskbus_beanstalk::Connection;
use serde_json::json;
use util::*;

const SHARED: &str = "127.0.0.1:11300";

/// Longest the test's own consumer waits for one beanstalkd call.
const CALL: Duration = Duration::from_secs(5);

/// A beanstalkd started by the test: on a free port, with a binlog in a
/// temporary directory so that jobs survive a restart. Killed on drop.
struct OwnServer {
    process: conformance::ServerProcess,
    port: u16,
    binlog: tempfile::TempDir,
    args: Vec<String>,
}

impl OwnServer {
    fn start(args: &[&str]) -> OwnServer {
        let mut server = OwnServer {
            process: conformance::ServerProcess::new("beanstalkd"),
            port: free_port(),
            binlog: tempfile::tempdir().unwrap(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("beanstalkd");
        command
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string(), "-b"])
            .arg(self.binlog.path())
            .args(&self.args);
        self.process
            .spawn(command, "beanstalkd", self.port, Duration::from_secs(10));
        self.wait_answering();
    }

    /// beanstalkd listens before it has replayed its binlog: up is when it
    /// answers a command, not when it accepts.
    fn wait_answering(&self) {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answered = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .and_then(|mut conn| {
                    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
                    conn.write_all(b"list-tubes\r\n")?;
                    let mut reply = [0u8; 3];
                    conn.read_exact(&mut reply)?;
                    Ok(&reply == b"OK ")
                })
                .unwrap_or(false);
            if answered {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "our beanstalkd on port {} never answered `list-tubes`",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: what the server wrote to its binlog is all that survives.
    fn kill(&mut self) {
        self.process.kill();
    }
}

/// The beanstalk stream kind: where its server is, and one consumer
/// connection per tube (a `reserve` does not say which tube a job came from).
struct Beanstalk {
    address: String,
    own: Option<OwnServer>,
    consumers: HashMap<String, Connection>,
}

impl Beanstalk {
    async fn shared() -> Beanstalk {
        if let Err(e) = Connection::connect(SHARED).await {
            panic!(
                "beanstalkd is not reachable on {SHARED} ({e}); run `scripts/services beanstalkd`"
            );
        }
        Beanstalk {
            address: SHARED.into(),
            own: None,
            consumers: HashMap::new(),
        }
    }

    fn own(args: &[&str]) -> Beanstalk {
        let server = OwnServer::start(args);
        Beanstalk {
            address: format!("127.0.0.1:{}", server.port),
            own: Some(server),
            consumers: HashMap::new(),
        }
    }

    async fn connect(&self) -> Connection {
        Connection::connect(self.address.as_str()).await.unwrap()
    }
}

impl StreamKind for Beanstalk {
    fn type_name(&self) -> &'static str {
        "beanstalk"
    }

    fn config_snippet(&self) -> String {
        format!("type = \"beanstalk\"\naddress = \"{}\"", self.address)
    }

    async fn collect_delivered_ids(&mut self, queue: &str) -> Vec<String> {
        let mut ids = Vec::new();
        if !self.consumers.contains_key(queue) {
            let connect = tokio::time::timeout(CALL, Connection::connect(self.address.as_str()));
            let Ok(Ok(mut conn)) = connect.await else {
                return ids; // the server is down (restarting): nothing to read yet
            };
            conn.watch(queue).await.unwrap();
            conn.ignore("default").await.unwrap();
            self.consumers.insert(queue.to_owned(), conn);
        }
        let conn = self.consumers.get_mut(queue).unwrap();
        loop {
            // A server that hangs must not hang the test past its deadline:
            // the consumer is dropped, and a new one made at the next call.
            let Ok(reserved) = tokio::time::timeout(CALL, conn.reserve_with_timeout(0)).await
            else {
                self.consumers.remove(queue);
                return ids;
            };
            match reserved {
                Ok(Some(job)) => {
                    let event: serde_json::Value = serde_json::from_slice(&job.body)
                        .unwrap_or_else(|e| panic!("job {} is not JSON: {e}", job.id));
                    ids.push(event["id"].as_str().expect("an event id").to_owned());
                    // Not deleted (server going down): it is reserved again
                    // later, and counted twice, as a real consumer would.
                    if !matches!(
                        tokio::time::timeout(CALL, conn.delete(job.id)).await,
                        Ok(Ok(()))
                    ) {
                        self.consumers.remove(queue);
                        return ids;
                    }
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        if conn.is_broken() {
            self.consumers.remove(queue);
        }
        ids
    }

    async fn restart_server(&mut self, down: Duration) {
        let server = self
            .own
            .as_mut()
            .expect("tests restart only a beanstalkd of their own, never the shared one");
        server.kill();
        tokio::time::sleep(down).await;
        server.spawn();
    }
}

fn addresses() -> (SocketAddr, SocketAddr) {
    (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    )
}

fn tube(name: &str) -> String {
    format!("deskbus.{name}.{}", uuid7())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_server_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let kind = Beanstalk::shared().await;
    let (admin, web) = addresses();
    let path = dir.path().join("deskbus.toml");
    std::fs::write(
        &path,
        conformance::config(dir.path(), admin, web, &kind, "t", "", ""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stream out (beanstalk): ok"), "{stdout}");

    // A server that was there and is gone.
    let mut gone = Beanstalk::own(&[]);
    let port = gone.own.as_ref().unwrap().port;
    gone.own.as_mut().unwrap().kill();
    std::fs::write(
        &path,
        conformance::config(dir.path(), admin, web, &gone, "t", "", ""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "stream out (beanstalk): FAILED: cannot connect to 127.0.0.1:{port}"
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_sequential_and_parallel_posts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    conformance::sequential_and_parallel_delivery(&mut Beanstalk::shared().await, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_carry_the_configured_priority_delay_and_ttr() {
    let dir = tempfile::tempdir().unwrap();
    let kind = Beanstalk::shared().await;
    let queue = tube("pri");
    // `late` keeps every default but the delay; `out` sets priority and ttr.
    let late = format!(
        "[streams.late]\ntype = \"beanstalk\"\naddress = \"{SHARED}\"\ndelay = \"30s\"\n\
         [use_cases.late]\ninputs = [\"web\"]\nrouting_keys = [\"ticket.created\"]\n\
         stream = \"late\"\nqueue = \"{queue}.late\"\n"
    );
    let bus = start_deskbus(
        dir.path(),
        &kind,
        &queue,
        "priority = 5\nttr = \"17s\"",
        &late,
    );
    let posted = events(1, 1);
    post(&bus, &posted).await;
    let id = ids(&posted).remove(0);

    let mut c = kind.connect().await;
    c.use_tube(&queue).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        if let Some(job) = c.peek_ready().await.unwrap() {
            break job;
        }
        assert!(Instant::now() < deadline, "no ready job in {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["id"], json!(id));
    let stats = c.stats_job(ready.id).await.unwrap().unwrap();
    assert_eq!(stats.get("tube"), Some(queue.as_str()));
    assert_eq!(stats.get("state"), Some("ready"));
    assert_eq!(stats.number("pri"), Some(5));
    assert_eq!(stats.number("ttr"), Some(17));
    assert_eq!(stats.number("delay"), Some(0));

    c.use_tube(&format!("{queue}.late")).await.unwrap();
    let delayed = loop {
        if let Some(job) = c.peek_delayed().await.unwrap() {
            break job;
        }
        assert!(Instant::now() < deadline, "no delayed job in {queue}.late");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stats = c.stats_job(delayed.id).await.unwrap().unwrap();
    assert_eq!(stats.get("state"), Some("delayed"));
    assert_eq!(stats.number("delay"), Some(30));
    assert_eq!(stats.number("pri"), Some(1024), "default priority");
    assert_eq!(stats.number("ttr"), Some(60), "default ttr");
    c.delete(ready.id).await.unwrap();
    c.delete(stats.number("id").unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_through_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    conformance::at_least_once_through_a_server_restart(&mut Beanstalk::own(&[]), dir.path()).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_dead_letters_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    // Jobs of at most 1 KiB, so one big ticket is a poison event.
    let mut kind = Beanstalk::own(&["-z", "1024"]);
    let bus = start_deskbus(dir.path(), &kind, "tickets.{dept:-none}", "", "");

    let mut good = events(10, 1);
    post(&bus, &good).await;
    let too_big = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 100, "subject": "x".repeat(2000)}});
    let bad_tube = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 101, "dept": "sales and support"}});
    post(&bus, &[too_big.clone(), bad_tube.clone()]).await;
    let more = events(10, 200);
    post(&bus, &more).await;
    good.extend(more);

    let delivered = collect_until(&mut kind, "tickets.none", 20, Duration::from_secs(20)).await;
    conformance::assert_delivered(&delivered, &ids(&good), true);

    let list = wait_dead_letters(&bus, 2);
    let line = conformance::dead_letter_line(&list, &too_big["id"]);
    assert!(line.contains("JOB_TOO_BIG"), "{line}");
    let line = conformance::dead_letter_line(&list, &bad_tube["id"]);
    assert!(
        line.contains("tube name \"tickets.sales and support\""),
        "{line}"
    );
}

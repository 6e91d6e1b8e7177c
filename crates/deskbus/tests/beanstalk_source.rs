//! A real beanstalkd → the beanstalk source → a file stream. Jobs are put
//! with our client the way the osTicket streamer (or another deskbus) puts
//! them, and read back from the file; the server's stats say what became
//! of each job (deleted, buried, still reserved).
//!
//! Most tests start a beanstalkd of their own on a free port (`-b`, so
//! jobs survive its restarts); one uses the shared server on
//! 127.0.0.1:11300 with tubes of its own. Fails, never skips, without
//! beanstalkd (`scripts/services beanstalkd` installs it).

#![cfg(feature = "beanstalk")]

mod conformance;
mod util;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deskbus_beanstalk::{Connection, Job};
use serde_json::{Value, json};
use util::*;

const SHARED: &str = "127.0.0.1:11300";

/// A beanstalkd of the test's own, with a binlog so that jobs survive a
/// restart (written at every change, `-f 0`: a delete acknowledged before
/// a kill -9 stays deleted). Killed on drop.
struct OwnServer {
    process: conformance::ServerProcess,
    port: u16,
    binlog: tempfile::TempDir,
}

impl OwnServer {
    fn start() -> OwnServer {
        let mut server = OwnServer {
            process: conformance::ServerProcess::new("beanstalkd"),
            port: free_port(),
            binlog: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("beanstalkd");
        command
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-f",
                "0",
                "-b",
            ])
            .arg(self.binlog.path());
        self.process
            .spawn(command, "beanstalkd", self.port, Duration::from_secs(10));
    }

    fn kill(&mut self) {
        self.process.kill();
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

async fn client(address: &str) -> Connection {
    Connection::connect(address).await.unwrap_or_else(|e| {
        panic!("beanstalkd is not reachable on {address} ({e}); run `scripts/services beanstalkd`")
    })
}

/// Puts `bodies` into `tube` (priority 1024, ttr `ttr` seconds).
async fn put(address: &str, tube: &str, ttr: u32, bodies: &[Vec<u8>]) -> Vec<u64> {
    let mut c = client(address).await;
    c.use_tube(tube).await.unwrap();
    let jobs: Vec<Job<'_>> = bodies
        .iter()
        .map(|body| Job {
            priority: 1024,
            delay: 0,
            ttr,
            body,
        })
        .collect();
    c.put_many(&jobs)
        .await
        .into_iter()
        .map(|r| r.unwrap().id())
        .collect()
}

/// A tube no other test (or earlier run) uses.
fn tube(name: &str) -> String {
    format!("deskbus.src.{name}.{}", uuid7())
}

/// Waits (10 s at most) until `tube`'s counters are `want`: deskbus
/// deletes jobs after their commit, so after they are delivered too.
async fn wait_tube_counts(address: &str, tube: &str, want: (u64, u64, u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = tube_counts(address, tube).await;
        if counts == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tube {tube}: {counts:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `stats-tube` counters of `tube`: (ready, reserved, buried, deletes).
async fn tube_counts(address: &str, tube: &str) -> (u64, u64, u64, u64) {
    let stats = client(address)
        .await
        .stats_tube(tube)
        .await
        .unwrap()
        .unwrap_or_default();
    let n = |key: &str| stats.number(key).unwrap_or(0);
    (
        n("current-jobs-ready"),
        n("current-jobs-reserved"),
        n("current-jobs-buried"),
        n("cmd-delete"),
    )
}

/// deskbus with the beanstalk source `jobs` (`source` holds its keys) and
/// every event it takes into `<dir>/out/events.ndjson`; `extra` adds
/// tables.
fn start(dir: &Path, source: &str, extra: &str) -> Deskbus {
    let source = format!("type = \"beanstalk\"\n{source}");
    start_source_to_file(dir, "jobs", &source, "", extra)
}

/// The complete lines of `<dir>/out/<file>`.
fn lines(dir: &Path, file: &str) -> Vec<String> {
    complete_lines(&dir.join("out").join(file))
}

fn delivered(dir: &Path) -> Vec<Value> {
    delivered_events(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    put(&address, "tickets", 60, &[envelope(1), envelope(2)]).await;
    let admin = ([127, 0, 0, 1], free_port()).into();
    let path = dir.path().join("check.toml");
    for (address, ok) in [
        (address.clone(), true),
        (format!("127.0.0.1:{}", free_port()), false),
    ] {
        let source =
            format!("type = \"beanstalk\"\naddress = \"{address}\"\ntubes = [\"tickets\"]");
        let config = source_to_file_config(dir.path(), admin, "jobs", &source, "", "");
        std::fs::write(&path, config).unwrap();
        let (code, stdout, stderr) = check_connect(&path);
        if ok {
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert!(
                stdout.contains("source jobs (beanstalk): ok (beanstalkd ")
                    && stdout.contains("2 jobs ready in tickets"),
                "{stdout}"
            );
        } else {
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                stdout.contains("source jobs (beanstalk): FAILED"),
                "{stdout}"
            );
        }
    }
}

fn envelope(n: u64) -> Vec<u8> {
    json!({"name": "ticket.created", "data": {"n": n, "ticket_id": n, "subject": "printer"}})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_become_events_and_jobs_are_deleted_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let source = format!("address = \"{address}\"\ntubes = [\"tickets\", \"notes\"]");
    let deskbus = start(dir.path(), &source, "");

    let id = uuid7();
    let with_id = json!({"id": id, "time": "2026-01-02T03:04:05Z", "name": "ticket.note",
                         "routing_key": "ticket.note.sales", "origin_uuid": "o-1",
                         "data": {"ticket_id": 9, "body": "Québec"}});
    put(&address, "notes", 60, &[with_id.to_string().into_bytes()]).await;
    put(
        &address,
        "tickets",
        60,
        &(0..20).map(envelope).collect::<Vec<_>>(),
    )
    .await;
    // Not watched: `default` is ignored unless listed.
    put(&address, "default", 60, &[envelope(99)]).await;

    let events = wait_delivered(dir.path(), 21, Duration::from_secs(20));
    let note = events.iter().find(|e| e["name"] == "ticket.note").unwrap();
    assert_eq!(note["id"], id.as_str());
    assert_eq!(note["time"], "2026-01-02T03:04:05Z");
    assert_eq!(note["routing_key"], "ticket.note.sales");
    assert_eq!(note["origin_uuid"], "o-1");
    assert_eq!(note["source"], "jobs");
    assert_eq!(note["data"]["body"], "Québec");
    // (Each ticket is its own order key: tickets may overtake each other.)
    let mut tickets: Vec<u64> = events
        .iter()
        .filter(|e| e["name"] == "ticket.created")
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    tickets.sort();
    assert_eq!(tickets, (0..20).collect::<Vec<_>>());

    wait_tube_counts(&address, "tickets", (0, 0, 0, 20)).await;
    wait_tube_counts(&address, "notes", (0, 0, 0, 1)).await;
    assert_eq!(
        tube_counts(&address, "default").await.0,
        1,
        "default untouched"
    );
    assert_eq!(delivered(dir.path()).len(), 21);
    drop(deskbus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_the_shared_server_with_tubes_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tube("a"), tube("b"));
    let source = format!("address = \"{SHARED}\"\ntubes = [\"{a}\", \"{b}\"]\nbatch_size = 7");
    client(SHARED).await; // a clear message when the server is missing
    let deskbus = start(dir.path(), &source, "");
    put(SHARED, &a, 60, &(0..50).map(envelope).collect::<Vec<_>>()).await;
    put(SHARED, &b, 60, &(50..100).map(envelope).collect::<Vec<_>>()).await;
    let events = wait_delivered(dir.path(), 100, Duration::from_secs(20));
    let mut seen: Vec<u64> = events
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    wait_tube_counts(SHARED, &a, (0, 0, 0, 50)).await;
    wait_tube_counts(SHARED, &b, (0, 0, 0, 50)).await;
    drop(deskbus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_no_use_case_wants_are_deleted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let source = format!("type = \"beanstalk\"\naddress = \"{address}\"\ntubes = [\"calls\"]");
    let deskbus = start_source_to_file(
        dir.path(),
        "jobs",
        &source,
        "events = [\"ticket.created\"]",
        "",
    );
    let unwanted = json!({"name": "call.ended", "data": {"ticket_id": 5}});
    put(
        &address,
        "calls",
        60,
        &[envelope(1), unwanted.to_string().into_bytes(), envelope(2)],
    )
    .await;
    let events = wait_delivered(dir.path(), 2, Duration::from_secs(20));
    assert!(
        events.iter().all(|e| e["name"] == "ticket.created"),
        "{events:?}"
    );
    // Committed as "nothing to keep", so deleted like the others, and counted.
    wait_tube_counts(&address, "calls", (0, 0, 0, 3)).await;
    let unmatched = tokio::task::block_in_place(|| {
        deskbus.metric(
            "deskbus_source_rejected_events_total",
            "reason=\"unmatched\"",
        )
    });
    assert_eq!(unmatched, 1.0);
    assert_eq!(delivered(dir.path()).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_jobs_go_to_dead_letters_and_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let source = format!("address = \"{address}\"\ntubes = [\"tickets\"]");
    let deskbus = start(dir.path(), &source, "");
    let bad: [(&[u8], &str); 4] = [
        (b"{\"name\": ", "not a JSON event envelope"),
        (br#"{"data": {}}"#, "missing field `name`"),
        (
            br#"{"name": 5}"#,
            "invalid type: integer `5`, expected a string",
        ),
        (
            br#"{"name": "x", "time": "yesterday"}"#,
            "`time` is not an RFC 3339 timestamp",
        ),
    ];
    let bodies: Vec<Vec<u8>> = bad.iter().map(|(b, _)| b.to_vec()).collect();
    let ids = put(&address, "tickets", 60, &bodies).await;
    put(&address, "tickets", 60, &[envelope(1)]).await;

    wait_delivered(dir.path(), 1, Duration::from_secs(20));
    let mut list = String::new();
    wait_for(Duration::from_secs(10), "4 dead letters", || {
        list = deskbus.cli(&["dlq", "list"]).1;
        list.contains("4 dead letters")
    });
    for ((_, reason), id) in bad.iter().zip(&ids) {
        let line = list
            .lines()
            .find(|l| l.contains(&format!("job {id} ")))
            .unwrap_or_else(|| panic!("no dead letter for job {id}:\n{list}"));
        assert!(
            line.contains("(source)") && line.contains(reason),
            "{reason}: {line}"
        );
    }
    wait_tube_counts(&address, "tickets", (0, 0, 0, 5)).await;
    drop(deskbus);
}

/// What `deskbus format` makes of `event` with the use case `seed` of
/// `use_case` (a `[use_cases.seed]` body): the bytes the osTicket
/// streamer would put.
fn format_bytes(dir: &Path, use_case: &str, event: &Value) -> Vec<u8> {
    let config = format!(
        "[sources.web]\ntype = \"webhook\"\n[streams.q]\ntype = \"file\"\npath = \"./x\"\n\
         [use_cases.seed]\ninputs = [\"web\"]\nevents = [\"ticket.created\"]\nstream = \"q\"\nqueue = \"tickets\"\n{use_case}"
    );
    let path = dir.join("producer.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["format", "--use-case", "seed", "--raw"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_records_of_the_osticket_streamer_go_on_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let ticket = |i: u64| {
        json!({"name": "ticket.created", "data": {
            "helpdesk_code": "ACME", "datetime_complete": "2026-01-02 10:00:00",
            "department_id": i, "department_name": "Sales / Québec",
            "helptopic_id": 10, "helptopic_label": "Report a Problem / Access Issue"}})
    };
    // The seed example's record (CSV, base64, `force_object` and
    // `unescaped_unicode`), and the plugin's default one (UTF-8 data; JSON
    // with `numeric_check` and `preserve_zero_fraction` too).
    let seed_stack = "serializer = { type = \"csv\" }\n\
        record = { type = \"kinesis\", stream_name = \"helpdesk\", encoder = { type = \"base64\" }, \
        serializer = { type = \"json\", flags = [\"force_object\", \"unescaped_unicode\"] } }";
    let plugin_default = "serializer = { type = \"json\" }\n\
        record = { type = \"kinesis\", stream_name = \"tickets-raw\" }";
    let a: Vec<Vec<u8>> = (1..=3)
        .map(|i| format_bytes(dir.path(), seed_stack, &ticket(i)))
        .collect();
    let b: Vec<Vec<u8>> = (4..=5)
        .map(|i| format_bytes(dir.path(), plugin_default, &ticket(i)))
        .collect();
    assert!(
        String::from_utf8_lossy(&a[0]).starts_with("{\"Data\":\""),
        "{:?}",
        String::from_utf8_lossy(&a[0])
    );
    assert!(
        String::from_utf8_lossy(&b[0]).contains("\\/"),
        "slashes escaped, as PHP does"
    );

    // Each source re-serializes the record with its producer's flags.
    let extra = |source: &str, flags: &str| {
        format!(
            "[use_cases.{source}_records]\ninputs = [\"{source}\"]\nevents = [\"osticket.record\"]\n\
             stream = \"out\"\nqueue = \"{{StreamName}}\"\nfields = [\"Data\", \"StreamName\", \"PartitionKey\"]\n\
             serializer = {{ type = \"json\"{flags} }}\n"
        )
    };
    let config_extra = format!(
        "{}\n[sources.plugin]\ntype = \"beanstalk\"\naddress = \"{address}\"\ntubes = [\"plugin\"]\n\
         body = \"json\"\nevent_name = \"osticket.record\"\n\n{}",
        extra(
            "jobs",
            ", flags = [\"force_object\", \"unescaped_unicode\"]"
        ),
        extra("plugin", ""),
    );
    let source = format!(
        "address = \"{address}\"\ntubes = [\"seed\"]\nbody = \"json\"\nevent_name = \"osticket.record\""
    );
    let deskbus = start(dir.path(), &source, &config_extra);
    put(&address, "seed", 60, &a).await;
    put(&address, "plugin", 60, &b).await;

    let want = |bodies: &[Vec<u8>]| -> Vec<String> {
        bodies
            .iter()
            .map(|b| String::from_utf8(b.clone()).unwrap())
            .collect()
    };
    wait_for(Duration::from_secs(20), "the records", || {
        lines(dir.path(), "helpdesk.ndjson").len() == 3
            && lines(dir.path(), "tickets-raw.ndjson").len() == 2
    });
    // Three tickets, three order keys: delivered in parallel, in any order.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(lines(dir.path(), "helpdesk.ndjson")),
        sorted(want(&a))
    );
    assert_eq!(
        sorted(lines(dir.path(), "tickets-raw.ndjson")),
        sorted(want(&b))
    );
    drop(deskbus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_become_text_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let source = format!("address = \"{address}\"\ntubes = [\"raw\"]\nbody = \"raw\"");
    let deskbus = start(dir.path(), &source, "");
    let ids = put(
        &address,
        "raw",
        60,
        &[
            b"plain text, Qu\xc3\xa9bec\n".to_vec(),
            b"\xff\xfe".to_vec(),
        ],
    )
    .await;
    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["name"], "beanstalk.job");
    assert_eq!(events[0]["routing_key"], "beanstalk.job");
    assert_eq!(events[0]["data"], json!({"body": "plain text, Québec\n"}));
    let mut list = String::new();
    wait_for(Duration::from_secs(10), "1 dead letter", || {
        list = deskbus.cli(&["dlq", "list"]).1;
        list.contains("1 dead letter")
    });
    assert!(
        list.contains(&format!("job {}", ids[1])) && list.contains("not UTF-8 text"),
        "{list}"
    );
    drop(deskbus);
}

/// Holds the spool's write lock (another SQLite connection in an
/// `IMMEDIATE` transaction) until dropped: deskbus's commits wait.
struct SpoolLock(Child);

impl SpoolLock {
    fn take(spool: &Path) -> SpoolLock {
        let mut child = Command::new("sqlite3")
            .arg(spool)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the sqlite3 command line tool");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b".timeout 10000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        SpoolLock(child)
    }
}

impl Drop for SpoolLock {
    fn drop(&mut self) {
        if let Some(stdin) = self.0.stdin.as_mut() {
            let _ = stdin.write_all(b"COMMIT;\n.quit\n");
        }
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_commit_touches_its_jobs_so_nobody_else_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let source = format!("address = \"{address}\"\ntubes = [\"slow\"]");
    let deskbus = start(dir.path(), &source, "");

    let lock = SpoolLock::take(&dir.path().join("data/spool.db"));
    // A time to run of 2 s, and a commit that takes 5: without touches the
    // job would be ready again, for the competitor, after 2 s.
    put(&address, "slow", 2, &[envelope(1)]).await;
    let mut competitor = client(&address).await;
    competitor.watch("slow").await.unwrap();
    competitor.ignore("default").await.unwrap();
    let held_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < held_until {
        if let Some(job) = competitor.reserve_with_timeout(1).await.unwrap() {
            panic!(
                "job {} was handed to another worker while deskbus held it",
                job.id
            );
        }
    }
    assert_eq!(
        tube_counts(&address, "slow").await,
        (0, 1, 0, 0),
        "still reserved"
    );
    assert!(delivered(dir.path()).is_empty(), "not committed yet");
    drop(lock);

    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["data"]["n"], 1);
    wait_for(Duration::from_secs(5), "the job deleted", || {
        futures_block(tube_counts(&address, "slow")) == (0, 0, 0, 1)
    });
    assert!(competitor.reserve_with_timeout(0).await.unwrap().is_none());
    assert_eq!(delivered(dir.path()).len(), 1);
    drop(deskbus);
}

/// Runs a future to completion from a synchronous closure.
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// A spool that refuses the commit (here a trigger; in life a full disk)
/// leaves the job on the server: released with a delay after each refused
/// commit, buried once reserved more than `max_attempts` times, never
/// deleted or lost; and the source goes on once the spool takes commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_releases_the_job_and_buries_it_at_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let source = format!("address = \"{address}\"\ntubes = [\"t\"]\nmax_attempts = 2");
    let deskbus = start(dir.path(), &source, "");
    let spool = spool_sqlite(dir.path());
    refuse_in_spool(&spool, "full", "INSERT", "the disk is full (test)");
    let job = put(&address, "t", 60, &[envelope(1)]).await[0];
    let state = async || {
        let stats = client(&address)
            .await
            .stats_job(job)
            .await
            .unwrap()
            .unwrap();
        (
            stats.get("state").unwrap_or_default().to_owned(),
            stats.number("reserves"),
            stats.number("releases"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while state().await.0 != "buried" {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            state().await,
            deskbus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reserved three times: released after the first two refusals, buried
    // at the third reserve, past `max_attempts`.
    assert_eq!(state().await, ("buried".to_owned(), Some(3), Some(2)));
    assert!(delivered(dir.path()).is_empty());
    assert!(
        deskbus.log().contains("the disk is full (test)"),
        "{}",
        deskbus.log()
    );

    spool.execute_batch("DROP TRIGGER full").unwrap();
    put(&address, "t", 60, &[envelope(2)]).await;
    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["data"]["n"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reserved_too_often_is_buried() {
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    let poison = put(&address, "t", 60, &[envelope(1)]).await[0];
    // Three workers before deskbus took it and let it go (crashed, say).
    let mut worker = client(&address).await;
    worker.watch("t").await.unwrap();
    for _ in 0..3 {
        let job = worker.reserve_with_timeout(1).await.unwrap().unwrap();
        assert_eq!(job.id, poison);
        worker.release(job.id, 77, 0).await.unwrap();
    }
    drop(worker);
    put(&address, "t", 60, &[envelope(2)]).await;

    let source = format!("address = \"{address}\"\ntubes = [\"t\"]\nmax_attempts = 3");
    let deskbus = start(dir.path(), &source, "");
    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["data"]["n"], 2);
    wait_for(Duration::from_secs(5), "the poison job buried", || {
        deskbus.metric("deskbus_source_buried_jobs_total", "source=\"jobs\"") == 1.0
    });
    let stats = client(&address)
        .await
        .stats_job(poison)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.get("state"), Some("buried"));
    assert_eq!(stats.number("pri"), Some(77), "buried with its priority");
    assert_eq!(stats.number("reserves"), Some(4));
    assert_eq!(delivered(dir.path()).len(), 1);
    drop(deskbus);
}

/// Markers (`data.n`) and the event ids each was delivered with.
fn ids_by_marker(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut by = BTreeMap::<u64, Vec<String>>::new();
    for e in delivered(dir) {
        by.entry(e["data"]["n"].as_u64().unwrap())
            .or_default()
            .push(e["id"].as_str().unwrap().to_owned());
    }
    by
}

/// Every marker below `total` arrived, each under one event id (a second
/// delivery, by the file stream after a crash, repeats that id); returns
/// the number of repeated deliveries.
fn assert_each_once(dir: &Path, total: u64) -> usize {
    let by = ids_by_marker(dir);
    let missing: Vec<u64> = (0..total).filter(|n| !by.contains_key(n)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let mut repeats = 0;
    for (n, ids) in &by {
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "job {n} became several events: {ids:?}"
        );
        repeats += ids.len() - 1;
    }
    repeats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_before_the_delete_commits_nothing_twice() {
    const TOTAL: u64 = 3_000;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = OwnServer::start();
    let address = server.address();
    put(
        &address,
        "t",
        60,
        &(0..TOTAL).map(envelope).collect::<Vec<_>>(),
    )
    .await;
    let source = format!("address = \"{address}\"\ntubes = [\"t\"]\nbatch_size = 50");
    let mut deskbus = start(dir.path(), &source, "");
    // Killed twice mid-consumption; the server releases what it held.
    for share in [TOTAL / 5, TOTAL / 2] {
        wait_for(Duration::from_secs(60), "consumption under way", || {
            ids_by_marker(dir.path()).len() as u64 >= share
        });
        deskbus.kill();
        deskbus.spawn();
    }
    wait_for(Duration::from_secs(60), "every job", || {
        ids_by_marker(dir.path()).len() as u64 >= TOTAL
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repeats = assert_each_once(dir.path(), TOTAL);
    let recognised = deskbus
        .log()
        .matches("acknowledged without committing it twice")
        .count();
    eprintln!(
        "{TOTAL} jobs, 2 kills: {repeats} deliveries repeated by the stream (same id), \
         {recognised} batches of jobs recognised after the kill, in {:?}",
        started.elapsed()
    );
    assert_eq!(tube_counts(&address, "t").await, (0, 0, 0, TOTAL));
    drop(deskbus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_nothing() {
    const BEFORE: u64 = 2_000;
    const AFTER: u64 = 500;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = OwnServer::start();
    let address = server.address();
    put(
        &address,
        "t",
        60,
        &(0..BEFORE).map(envelope).collect::<Vec<_>>(),
    )
    .await;
    // One job per commit, so that the run lasts while the server restarts.
    let source = format!("address = \"{address}\"\ntubes = [\"t\"]\nbatch_size = 1");
    let deskbus = start(dir.path(), &source, "");
    wait_for(Duration::from_secs(30), "consumption under way", || {
        ids_by_marker(dir.path()).len() as u64 >= BEFORE / 10
    });
    server.kill();
    let during = ids_by_marker(dir.path()).len() as u64;
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.spawn();
    put(
        &address,
        "t",
        60,
        &(BEFORE..BEFORE + AFTER).map(envelope).collect::<Vec<_>>(),
    )
    .await;
    wait_for(Duration::from_secs(60), "every job", || {
        ids_by_marker(dir.path()).len() as u64 >= BEFORE + AFTER
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repeats = assert_each_once(dir.path(), BEFORE + AFTER);
    assert!(
        deskbus.metric("deskbus_source_reconnects_total", "source=\"jobs\"") >= 1.0,
        "the restart was not felt"
    );
    assert!(
        during < BEFORE,
        "the server stopped after the whole run was taken"
    );
    eprintln!(
        "{during} of {BEFORE} taken when the server died; {repeats} repeated deliveries; {:?}",
        started.elapsed()
    );
    drop(deskbus);
}

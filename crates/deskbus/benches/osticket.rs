//! osTicket database → osticket source → spool, against the release binary
//! and MariaDB on 127.0.0.1:3306 (root, no password), in a database of the
//! bench's own with the tests' 1.18-style tables.
//!
//! (a) Capture latency: tickets are created one at a time, as osTicket does
//! (autocommitted inserts), at random moments; the latency of each is from
//! the commit of its `created` event to the spool commit of the
//! `ticket.created` event, seen as `deskbus_source_accepted_events_total`
//! going up (read every 2 ms). Measured at the default `poll_interval`
//! (1 s) and at shorter ones.
//!
//! (b) Burst: 1,000 tickets committed in one transaction, timed from the
//! commit until all 1,000 `ticket.created` are in the spool. Baseline, in
//! the same run: a plain SELECT of the same rows (the 1,000 events and
//! 1,000 entries with their ticket) on one connection, which is the least
//! any poller must do.
//!
//! `cargo bench -p deskbus --bench osticket` (needs MariaDB:
//! `scripts/services mariadb`).

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Process, Table, free_port, quantile};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

const BURST: usize = 1000;

struct Db {
    name: String,
    conn: MySqlConnection,
}

impl Db {
    async fn create() -> Db {
        let options = MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(3306)
            .username("root")
            .timezone(None)
            .pipes_as_concat(false)
            .disable_statement_logging();
        let mut root = options.connect().await.expect(
            "MariaDB is not reachable on 127.0.0.1:3306 as root (scripts/services mariadb)",
        );
        let name = format!("deskbus_ost_bench_{}", std::process::id());
        exec(&mut root, &format!("DROP DATABASE IF EXISTS `{name}`")).await;
        exec(
            &mut root,
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb3"),
        )
        .await;
        let mut conn = options.database(&name).connect().await.unwrap();
        exec(&mut conn, "SET SESSION sql_mode = ''").await;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/osticket");
        for file in ["schema-1.18.sql", "seed.sql", "events.sql"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for statement in text.split(";\n") {
                let body: Vec<&str> = statement
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect();
                let body = body.join("\n");
                if !body.trim().is_empty() {
                    exec(&mut conn, &body.replace("PREFIX_", "ost_")).await;
                }
            }
        }
        exec(
            &mut conn,
            "INSERT INTO ost_user (id, name, default_email_id, created, updated) VALUES (1, 'Ada', 1, NOW(), NOW())",
        )
        .await;
        exec(
            &mut conn,
            "INSERT INTO ost_user_email (id, user_id, address) VALUES (1, 1, 'ada@example.com')",
        )
        .await;
        Db { name, conn }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.name)
    }

    /// One ticket, written as osTicket writes it (autocommit per insert).
    async fn ticket(&mut self, i: usize) {
        let c = &mut self.conn;
        let id = exec_id(
            c,
            &format!(
                "INSERT INTO ost_ticket (number, user_id, status_id, dept_id, topic_id, source, created, updated, lastupdate) \
                 VALUES ('{}', 1, 1, 4, 11, 'API', NOW(), NOW(), NOW())",
                100_000 + i
            ),
        )
        .await;
        exec(c, &format!("INSERT INTO ost_ticket__cdata (ticket_id, subject, priority) VALUES ({id}, 'Load {i}', '2')")).await;
        let thread = exec_id(
            c,
            &format!(
                "INSERT INTO ost_thread (object_id, object_type, created) VALUES ({id}, 'T', NOW())"
            ),
        )
        .await;
        exec(
            c,
            &format!(
                "INSERT INTO ost_thread_entry (thread_id, user_id, type, flags, poster, source, body, format, created, updated) \
                 VALUES ({thread}, 1, 'M', 1, 'Ada', 'API', 'It smokes.', 'text', NOW(), '0000-00-00 00:00:00')"
            ),
        )
        .await;
        exec(
            c,
            &format!(
                "INSERT INTO ost_thread_event (thread_id, thread_type, event_id, staff_id, team_id, dept_id, topic_id, username, uid, uid_type, timestamp) \
                 VALUES ({thread}, 'T', 1, 0, 0, 4, 11, 'SYSTEM', 1, 'U', NOW())"
            ),
        )
        .await;
    }

    /// `n` tickets in one transaction; returns once committed.
    async fn burst(&mut self, n: usize) {
        let base_ticket = scalar(
            &mut self.conn,
            "SELECT CAST(COALESCE(MAX(ticket_id), 0) AS SIGNED) FROM ost_ticket",
        )
        .await
            + 1;
        let base_thread = scalar(
            &mut self.conn,
            "SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM ost_thread",
        )
        .await
            + 1;
        let rows = |f: &dyn Fn(i64, i64) -> String| -> String {
            (0..n as i64)
                .map(|i| f(base_ticket + i, base_thread + i))
                .collect::<Vec<_>>()
                .join(",")
        };
        let statements = [
            format!(
                "INSERT INTO ost_ticket (ticket_id, number, user_id, status_id, dept_id, topic_id, source, created, updated, lastupdate) VALUES {}",
                rows(&|t, _| format!(
                    "({t}, '{}', 1, 1, 4, 11, 'API', NOW(), NOW(), NOW())",
                    500_000 + t
                ))
            ),
            format!(
                "INSERT INTO ost_ticket__cdata (ticket_id, subject, priority) VALUES {}",
                rows(&|t, _| format!("({t}, 'Burst {t}', '2')"))
            ),
            format!(
                "INSERT INTO ost_thread (id, object_id, object_type, created) VALUES {}",
                rows(&|t, th| format!("({th}, {t}, 'T', NOW())"))
            ),
            format!(
                "INSERT INTO ost_thread_entry (thread_id, user_id, type, flags, poster, source, body, format, created, updated) VALUES {}",
                rows(&|_, th| format!(
                    "({th}, 1, 'M', 1, 'Ada', 'API', 'It smokes.', 'text', NOW(), '0000-00-00 00:00:00')"
                ))
            ),
            format!(
                "INSERT INTO ost_thread_event (thread_id, thread_type, event_id, staff_id, team_id, dept_id, topic_id, username, uid, uid_type, timestamp) VALUES {}",
                rows(&|_, th| format!("({th}, 'T', 1, 0, 0, 4, 11, 'SYSTEM', 1, 'U', NOW())"))
            ),
        ];
        let mut tx = self.conn.begin().await.unwrap();
        for s in statements {
            sqlx::query(AssertSqlSafe(s))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }

    /// The baseline: what a poller must at least read for `n` new tickets.
    async fn select_burst(&mut self, n: usize) -> Duration {
        let started = Instant::now();
        let events = sqlx::query(AssertSqlSafe(format!(
            "SELECT te.id, te.thread_id, te.dept_id, te.topic_id, te.data, CAST(te.`timestamp` AS CHAR), \
                    t.ticket_id, t.number, c.subject, u.name, ue.address \
             FROM ost_thread_event te JOIN ost_thread th ON th.id = te.thread_id \
             JOIN ost_ticket t ON t.ticket_id = th.object_id \
             LEFT JOIN ost_ticket__cdata c ON c.ticket_id = t.ticket_id \
             LEFT JOIN ost_user u ON u.id = t.user_id LEFT JOIN ost_user_email ue ON ue.id = u.default_email_id \
             ORDER BY te.id DESC LIMIT {n}"
        )))
        .fetch_all(&mut self.conn)
        .await
        .unwrap();
        let entries = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, thread_id, type, flags, poster, body, CAST(created AS CHAR) FROM ost_thread_entry ORDER BY id DESC LIMIT {n}"
        )))
        .fetch_all(&mut self.conn)
        .await
        .unwrap();
        assert_eq!((events.len(), entries.len()), (n, n));
        started.elapsed()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .status();
    }
}

async fn exec(c: &mut MySqlConnection, sql: &str) {
    exec_id(c, sql).await;
}

async fn exec_id(c: &mut MySqlConnection, sql: &str) -> u64 {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .last_insert_id()
}

async fn scalar(c: &mut MySqlConnection, sql: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_one(c)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// The release binary with the osticket source → file stream.
struct Bus {
    _process: Process,
    metrics: String,
    client: reqwest::Client,
}

impl Bus {
    fn start(dir: &Path, db: &Db, poll: &str) -> Bus {
        let admin = free_port();
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.ost]\ntype = \"osticket\"\nurl = \"{url}\"\npoll_interval = \"{poll}\"\n\
             [streams.out]\ntype = \"file\"\npath = \"{d}/out/{{queue}}.ndjson\"\n\
             [use_cases.t]\ninputs = [\"ost\"]\nevents = [\"ticket.created\"]\nstream = \"out\"\nqueue = \"tickets\"\n",
            d = dir.display(),
            url = db.url(),
        );
        let path = dir.join("deskbus.toml");
        std::fs::write(&path, config).unwrap();
        let process = Process::listening(
            Command::new(env!("CARGO_BIN_EXE_deskbus"))
                .arg("run")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
            admin,
            "cannot run the deskbus binary",
        );
        let bus = Bus {
            _process: process,
            metrics: format!("http://127.0.0.1:{admin}/metrics"),
            client: common::client(),
        };
        // The admin port listens before the source has its start position.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_ready(admin) {
            assert!(Instant::now() < deadline, "deskbus not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        bus
    }

    async fn accepted(&self) -> u64 {
        let text = self
            .client
            .get(&self.metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("deskbus_source_accepted_events_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Polls the counter every 2 ms until it reaches `n`.
    async fn wait_accepted(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.accepted().await < n {
            assert!(Instant::now() < deadline, "stuck below {n} accepted events");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A blocking `GET /ready` answered 200.
fn is_ready(admin: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) else {
        return false;
    };
    let _ = write!(
        s,
        "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

/// (a): p50 and p99 from commit to spool, `n` tickets at random moments.
async fn latency(db: &mut Db, poll: &str, n: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path(), db, poll);
    let mut latencies = Vec::with_capacity(n);
    let base = bus.accepted().await;
    for i in 0..n {
        // Random phase against the poll.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(20..400))).await;
        db.ticket(i).await;
        let committed = Instant::now();
        bus.wait_accepted(base + i as u64 + 1).await;
        latencies.push(committed.elapsed());
    }
    (
        quantile(&mut latencies, 0.5),
        quantile(&mut latencies, 0.99),
    )
}

async fn burst(db: &mut Db) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path(), db, "1s");
    let base = bus.accepted().await;
    db.burst(BURST).await;
    let committed = Instant::now();
    bus.wait_accepted(base + BURST as u64).await;
    committed.elapsed()
}

fn main() {
    common::run(async {
        let mut db = Db::create().await;
        println!("osticket source: commit in osTicket's database → event committed in the spool\n");
        let table = Table::new(12, "baseline");
        for (poll, n) in [("1s", 60), ("250ms", 80), ("100ms", 100)] {
            let (p50, p99) = latency(&mut db, poll, n).await;
            // The baseline of a poller's latency is half its interval on
            // average, all of it at worst.
            let interval = common_duration(poll);
            table.latency(&format!("latency p50, poll {poll}"), p50, interval / 2);
            table.latency(&format!("latency p99, poll {poll}"), p99, interval);
        }
        let spooled = burst(&mut db).await;
        let select = db.select_burst(BURST).await;
        table.latency(
            &format!("burst of {BURST} tickets → spooled"),
            spooled,
            select,
        );
        println!(
            "\nlatency baseline: the poll interval's mean (p50) and whole (p99) wait;\n\
             burst baseline: a plain SELECT of the same {BURST} events and entries."
        );
    });
}

fn common_duration(text: &str) -> Duration {
    match text.strip_suffix("ms") {
        Some(ms) => Duration::from_millis(ms.parse().unwrap()),
        None => Duration::from_secs(text.trim_end_matches('s').parse().unwrap()),
    }
}

//! The osticket source against MariaDB on 127.0.0.1:3306 (root, no
//! password; `scripts/services` starts it): each test creates its own
//! database with 1.10- or 1.18-style tables (`tests/osticket/*.sql`,
//! written from the reference's column tables), writes rows the way
//! osTicket does for each operation (reference §4), and reads what the
//! real `deskbus` binary delivered to a file stream.
//!
//! Fails, never skips, when MariaDB is not there.

#![cfg(feature = "osticket")]

mod util;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use util::*;

const PREFIX: &str = "ost_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V110,
    V118,
}

fn root_options() -> MySqlConnectOptions {
    // As osTicket's own sessions: the server's zone, no PIPES_AS_CONCAT.
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(3306)
        .username("root")
        .timezone(None)
        .pipes_as_concat(false)
        .disable_statement_logging()
}

async fn root_connection(database: Option<&str>) -> MySqlConnection {
    let mut options = root_options();
    if let Some(db) = database {
        options = options.database(db);
    }
    let mut conn = options.connect().await.unwrap_or_else(|e| {
        panic!(
            "MariaDB is not reachable on 127.0.0.1:3306 as root (run scripts/services mariadb): {e}"
        )
    });
    // osTicket writes with sql_mode='' (zero dates allowed).
    sqlx::query("SET SESSION sql_mode = ''")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// SQL string literal (test-controlled text only).
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// An osTicket database of the test's own.
struct Ost {
    name: String,
    version: Version,
    /// osTicket's `TABLE_PREFIX`.
    prefix: String,
    conn: MySqlConnection,
    /// Dropped with this value (false for a second connection to it).
    owned: bool,
}

#[derive(Debug, Clone)]
struct Ticket {
    id: u64,
    thread: u64,
    number: String,
    user: u64,
}

impl Ost {
    async fn new(test: &str, version: Version) -> Ost {
        Ost::with_prefix(test, version, PREFIX).await
    }

    async fn with_prefix(test: &str, version: Version, prefix: &str) -> Ost {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "deskbus_ost_{test}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut root = root_connection(None).await;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb3"
        )))
        .execute(&mut root)
        .await
        .unwrap();
        let _ = root.close().await;
        let conn = root_connection(Some(&name)).await;
        let mut ost = Ost {
            name,
            version,
            prefix: prefix.to_owned(),
            conn,
            owned: true,
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/osticket");
        let mut files = vec![
            match version {
                Version::V110 => "schema-1.10.sql",
                Version::V118 => "schema-1.18.sql",
            },
            "seed.sql",
        ];
        if version == Version::V118 {
            files.push("events.sql");
        }
        for file in files {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for statement in text.split(";\n") {
                let body: String = statement
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n");
                if !body.trim().is_empty() {
                    ost.exec(&body.replace("PREFIX_", prefix)).await;
                }
            }
        }
        ost
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.name)
    }

    fn t(&self, table: &str) -> String {
        format!("`{}{table}`", self.prefix)
    }

    /// Cuts every other session that `filter` (a PROCESSLIST condition)
    /// selects, as a network failure or a DBA would; how many there were.
    async fn kill_sessions(&mut self, filter: &str) -> usize {
        let sessions: Vec<u64> = sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
             WHERE {filter} AND ID <> CONNECTION_ID()"
        )))
        .fetch_all(&mut self.conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<i64, _>(0).unwrap() as u64)
        .collect();
        for id in &sessions {
            self.exec(&format!("KILL CONNECTION {id}")).await;
        }
        sessions.len()
    }

    /// Runs `sql`; the id it inserted.
    async fn exec(&mut self, sql: &str) -> u64 {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .last_insert_id()
    }

    async fn scalar(&mut self, sql: &str) -> i64 {
        let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.try_get::<i64, _>(0).unwrap()
    }

    /// A user (found by address, or created with its e-mail row).
    async fn user(&mut self, name: &str, email: &str) -> u64 {
        let found: Option<u64> = sqlx::query(AssertSqlSafe(format!(
            "SELECT user_id FROM {} WHERE address = {}",
            self.t("user_email"),
            lit(email)
        )))
        .fetch_optional(&mut self.conn)
        .await
        .unwrap()
        .map(|r| r.try_get::<u32, _>(0).unwrap() as u64);
        if let Some(id) = found {
            return id;
        }
        let user = self
            .exec(&format!(
                "INSERT INTO {} (name, created, updated) VALUES ({}, NOW(), NOW())",
                self.t("user"),
                lit(name)
            ))
            .await;
        let email_id = self
            .exec(&format!(
                "INSERT INTO {} (user_id, address) VALUES ({user}, {})",
                self.t("user_email"),
                lit(email)
            ))
            .await;
        self.exec(&format!(
            "UPDATE {} SET default_email_id = {email_id} WHERE id = {user}",
            self.t("user")
        ))
        .await;
        user
    }

    /// A `thread_event` row; `when` is an SQL expression.
    #[allow(clippy::too_many_arguments)]
    async fn event(
        &mut self,
        thread: u64,
        name: &str,
        staff: u64,
        dept: u64,
        topic: u64,
        data: Option<&str>,
        actor: (&str, u64, &str),
        when: &str,
    ) -> u64 {
        let data = data.map_or("NULL".to_owned(), lit);
        let (username, uid, uid_type) = actor;
        let (columns, kind) = match self.version {
            Version::V118 => (
                "thread_type, event_id",
                format!(
                    "'T', (SELECT id FROM {} WHERE name = {})",
                    self.t("event"),
                    lit(name)
                ),
            ),
            Version::V110 => ("state", lit(name)),
        };
        self.exec(&format!(
            "INSERT INTO {} (thread_id, {columns}, staff_id, team_id, dept_id, topic_id, data, \
             username, uid, uid_type, annulled, timestamp) \
             VALUES ({thread}, {kind}, {staff}, 0, {dept}, {topic}, {data}, {}, {uid}, {}, 0, {when})",
            self.t("thread_event"),
            lit(username),
            lit(uid_type)
        ))
        .await
    }

    /// API ticket creation (reference §4, first row).
    async fn create_ticket(
        &mut self,
        user: (&str, &str),
        subject: &str,
        dept: u64,
        topic: u64,
        when: &str,
    ) -> Ticket {
        let user_id = self.user(user.0, user.1).await;
        let number = format!("{}", 100_000 + fastrand::u32(..900_000));
        let id = self
            .exec(&format!(
                "INSERT INTO {} (number, user_id, status_id, dept_id, topic_id, source, ip_address, \
                 lastupdate, created, updated) \
                 VALUES ('{number}', {user_id}, 1, {dept}, {topic}, 'API', '127.0.0.1', {when}, {when}, {when})",
                self.t("ticket")
            ))
            .await;
        self.exec(&format!(
            "INSERT INTO {} (ticket_id, subject, priority) VALUES ({id}, {}, '2')",
            self.t("ticket__cdata"),
            lit(subject)
        ))
        .await;
        let thread = self
            .exec(&format!(
                "INSERT INTO {} (object_id, object_type, created) VALUES ({id}, 'T', {when})",
                self.t("thread")
            ))
            .await;
        self.exec(&format!(
            "INSERT INTO {} (thread_id, user_id, type, flags, poster, source, title, body, format, \
             ip_address, created, updated) \
             VALUES ({thread}, {user_id}, 'M', 1, {}, 'API', {}, 'It smokes.', 'text', '127.0.0.1', \
             {when}, '0000-00-00 00:00:00')",
            self.t("thread_entry"),
            lit(user.0),
            lit(subject)
        ))
        .await;
        self.event(
            thread,
            "created",
            0,
            dept,
            topic,
            None,
            ("SYSTEM", user_id, "U"),
            when,
        )
        .await;
        Ticket {
            id,
            thread,
            number,
            user: user_id,
        }
    }

    /// A thread entry; its id.
    /// `author` is (staff id, user id), one of them 0.
    async fn entry(
        &mut self,
        t: &Ticket,
        (kind, flags): (&str, u64),
        (staff, user): (u64, u64),
        body: &str,
        when: &str,
    ) -> u64 {
        let (source, format) = match kind {
            "M" => ("Email", "text"),
            _ => ("", "html"),
        };
        self.exec(&format!(
            "INSERT INTO {} (pid, thread_id, staff_id, user_id, type, flags, poster, source, title, \
             body, format, ip_address, created, updated) \
             VALUES (0, {}, {staff}, {user}, '{kind}', {flags}, 'someone', '{source}', NULL, {}, \
             '{format}', '', {when}, '0000-00-00 00:00:00')",
            self.t("thread_entry"),
            t.thread,
            lit(body)
        ))
        .await
    }

    /// A customer e-mail reply, with attachments (file + attachment rows).
    async fn customer_reply(&mut self, t: &Ticket, files: &[(&str, &str, u64)]) -> u64 {
        let entry = self
            .entry(t, ("M", 512), (0, t.user), "Any news?", "NOW()")
            .await;
        for (name, mime, size) in files {
            let file = self
                .exec(&format!(
                    "INSERT INTO {} (type, size, `key`, signature, name, created) \
                     VALUES ({}, {size}, 'k{entry}{name}', 's', {}, NOW())",
                    self.t("file"),
                    lit(mime),
                    lit(name)
                ))
                .await;
            self.exec(&format!(
                "INSERT INTO {} (object_id, type, file_id, inline) VALUES ({entry}, 'H', {file}, 0)",
                self.t("attachment")
            ))
            .await;
        }
        self.exec(&format!(
            "UPDATE {} SET lastmessage = NOW() WHERE id = {}",
            self.t("thread"),
            t.thread
        ))
        .await;
        self.exec(&format!(
            "UPDATE {} SET lastupdate = NOW(), updated = NOW() WHERE ticket_id = {}",
            self.t("ticket"),
            t.id
        ))
        .await;
        entry
    }

    /// First staff reply: the agent claims the ticket.
    async fn staff_reply(&mut self, t: &Ticket, staff: u64) -> u64 {
        let entry = self
            .entry(t, ("R", 64), (staff, 0), "<p>On it.</p>", "NOW()")
            .await;
        self.exec(&format!(
            "UPDATE {} SET staff_id = {staff}, isanswered = 1, updated = NOW() WHERE ticket_id = {}",
            self.t("ticket"),
            t.id
        ))
        .await;
        entry
    }

    async fn note(&mut self, t: &Ticket, staff: u64, body: &str) -> u64 {
        self.entry(t, ("N", 64), (staff, 0), body, "NOW()").await
    }

    async fn ticket_column(&mut self, t: &Ticket, column: &str) -> i64 {
        self.scalar(&format!(
            "SELECT CAST({column} AS SIGNED) FROM {} WHERE ticket_id = {}",
            self.t("ticket"),
            t.id
        ))
        .await
    }

    /// Sets `set` on the ticket, as osTicket's UPDATE does, then logs
    /// `name` with the ticket's agent, department and topic as they are now.
    async fn update_and_log(
        &mut self,
        t: &Ticket,
        set: &str,
        name: &str,
        data: Option<&str>,
        actor: (&str, u64, &str),
    ) -> u64 {
        self.exec(&format!(
            "UPDATE {} SET {set} WHERE ticket_id = {}",
            self.t("ticket"),
            t.id
        ))
        .await;
        let (staff, dept, topic) = self.ticket_owners(t).await;
        self.event(t.thread, name, staff, dept, topic, data, actor, "NOW()")
            .await
    }

    /// The ticket's (agent, department, topic).
    async fn ticket_owners(&mut self, t: &Ticket) -> (u64, u64, u64) {
        (
            self.ticket_column(t, "staff_id").await as u64,
            self.ticket_column(t, "dept_id").await as u64,
            self.ticket_column(t, "topic_id").await as u64,
        )
    }

    async fn assign(&mut self, t: &Ticket, staff: u64, name: &str) -> u64 {
        let set = format!("staff_id = {staff}, updated = NOW()");
        let data = json!({"staff": [staff, name]}).to_string();
        self.update_and_log(t, &set, "assigned", Some(&data), ("ava", 1, "S"))
            .await
    }

    async fn transfer(&mut self, t: &Ticket, dept: u64, name: &str) -> u64 {
        let set = format!("dept_id = {dept}, updated = NOW()");
        let data = json!({"dept": name}).to_string();
        self.update_and_log(t, &set, "transferred", Some(&data), ("ava", 1, "S"))
            .await
    }

    async fn change_topic(&mut self, t: &Ticket, topic: u64) -> u64 {
        let old = self.ticket_column(t, "topic_id").await;
        let set = format!("topic_id = {topic}, lastupdate = NOW(), updated = NOW()");
        let data = json!({"topic_id": [old, topic]}).to_string();
        self.update_and_log(t, &set, "edited", Some(&data), ("ava", 1, "S"))
            .await
    }

    async fn close(&mut self, t: &Ticket) -> u64 {
        self.update_and_log(
            t,
            "status_id = 3, closed = NOW(), lastupdate = NOW(), updated = NOW()",
            "closed",
            Some(r#"{"status":[3,"Closed"]}"#),
            ("bob", 2, "S"),
        )
        .await
    }

    /// A customer replies to the closed ticket: it reopens.
    async fn reopen_by_reply(&mut self, t: &Ticket) -> (u64, u64) {
        let entry = self.customer_reply(t, &[]).await;
        let event = self
            .update_and_log(
                t,
                "status_id = 1, reopened = NOW(), closed = NULL, isanswered = 0, updated = NOW()",
                "reopened",
                None,
                ("SYSTEM", t.user, "U"),
            )
            .await;
        let closed = match self.version {
            Version::V118 => format!(
                "event_id = (SELECT id FROM {} WHERE name = 'closed')",
                self.t("event")
            ),
            Version::V110 => "state = 'closed'".to_owned(),
        };
        self.exec(&format!(
            "UPDATE {} SET annulled = 1 WHERE thread_id = {} AND {closed}",
            self.t("thread_event"),
            t.thread
        ))
        .await;
        (entry, event)
    }

    /// Delete: hard DELETEs; 1.14+ also zeroes the thread of the older
    /// events and logs `deleted` with the gone thread.
    async fn delete(&mut self, t: &Ticket) -> Option<u64> {
        let (staff, dept, topic) = self.ticket_owners(t).await;
        for (table, column, id) in [
            ("ticket", "ticket_id", t.id),
            ("ticket__cdata", "ticket_id", t.id),
            ("thread", "id", t.thread),
            ("thread_entry", "thread_id", t.thread),
        ] {
            self.exec(&format!(
                "DELETE FROM {} WHERE {column} = {id}",
                self.t(table)
            ))
            .await;
        }
        if self.version == Version::V110 {
            return None;
        }
        self.exec(&format!(
            "UPDATE {} SET thread_id = 0 WHERE thread_id = {}",
            self.t("thread_event"),
            t.thread
        ))
        .await;
        Some(
            self.event(
                t.thread,
                "deleted",
                staff,
                dept,
                topic,
                None,
                ("ava", 1, "S"),
                "NOW()",
            )
            .await,
        )
    }
}

impl Drop for Ost {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = std::process::Command::new("mysql")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .status();
    }
}

/// One source's settings, as TOML lines.
struct Source<'a> {
    id: &'a str,
    url: String,
    extra: &'a str,
}

/// deskbus with the given osticket sources, each to its own file
/// `out/<source>.ndjson` (use case `all`), plus `extra` tables.
fn start(dir: &Path, sources: &[Source<'_>], stream_path: &Path, extra: &str) -> Deskbus {
    let (admin, web) = (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    );
    let config = config(dir, admin, sources, stream_path, extra);
    Deskbus::start(dir, &config, admin, web)
}

fn config(
    dir: &Path,
    admin: std::net::SocketAddr,
    sources: &[Source<'_>],
    stream_path: &Path,
    extra: &str,
) -> String {
    let mut text = format!(
        "[general]\ndata_dir = \"{}\"\nhelpdesk_code = \"ACME\"\nshutdown_timeout = \"5s\"\n\
         [admin]\naddress = \"{admin}\"\n[log]\nlevel = \"info\"\n\
         [streams.out]\ntype = \"file\"\npath = \"{}/{{queue}}.ndjson\"\n\
         retry = {{ initial_backoff = \"100ms\", max_backoff = \"500ms\" }}\n",
        dir.join("data").display(),
        stream_path.display()
    );
    let mut inputs = Vec::new();
    for s in sources {
        text.push_str(&format!(
            "[sources.{}]\ntype = \"osticket\"\nurl = \"{}\"\npoll_interval = \"100ms\"\n{}\n",
            s.id, s.url, s.extra
        ));
        inputs.push(format!("\"{}\"", s.id));
    }
    text.push_str(&format!(
        "[use_cases.all]\ninputs = [{}]\nrouting_keys = [\"ticket.#\"]\nstream = \"out\"\nqueue = \"{{@source}}\"\n{extra}",
        inputs.join(", ")
    ));
    text
}

fn out(dir: &Path, source: &str) -> PathBuf {
    dir.join("out").join(format!("{source}.ndjson"))
}

/// The events in `path` so far (a line still being written is not one).
fn read_events(path: &Path) -> Vec<Value> {
    event_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `path` holds `n` events (distinct ids) and returns them all.
fn wait_events(bus: &Deskbus, path: &Path, n: usize, what: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = read_events(path);
        let distinct: BTreeSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
        if distinct.len() >= n {
            return events;
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
            panic!(
                "timed out waiting for {what}: {} of {n} events: {names:?}\n{}",
                distinct.len(),
                bus.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one event named `name` whose data matches `pick`.
fn the<'a>(events: &'a [Value], name: &str, pick: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = events
        .iter()
        .filter(|e| e["name"] == name && pick(&e["data"]))
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:#?}\nall: {events:#?}");
    found[0]
}

fn cursor_line(bus: &Deskbus, source: &str) -> String {
    let (code, stdout, stderr) = bus.cli(&["spool", "stats"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("cursor {source}:")))
        .unwrap_or_else(|| panic!("no cursor for {source}:\n{stdout}"))
        .to_owned()
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn every_operation(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new(
        match version {
            Version::V110 => "ops110",
            Version::V118 => "ops118",
        },
        version,
    )
    .await;
    let sources = [Source {
        id: "ost",
        url: ost.url(),
        extra: "delete_sweep = \"300ms\"",
    }];
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let path = out(dir.path(), "ost");

    let t = ost
        .create_ticket(
            ("Ada Lovelace", "ada@example.com"),
            "Printer on fire",
            4,
            11,
            "NOW()",
        )
        .await;
    // osTicket keeps no status history: a ticket's status is read with
    // its events, so let the creation be read while the ticket is open.
    block(|| wait_events(&bus, &path, 1, "the creation"));
    let reply = ost
        .customer_reply(
            &t,
            &[
                ("smoke.jpg", "image/jpeg", 2048),
                ("log.txt", "text/plain", 12),
            ],
        )
        .await;
    let response = ost.staff_reply(&t, 2).await;
    let note = ost.note(&t, 1, "Escalating to level 2.").await;
    let assigned = ost.assign(&t, 1, "Ava Admin").await;
    let transferred = ost.transfer(&t, 2, "Sales").await;
    let edited = ost.change_topic(&t, 1).await;
    let closed = ost.close(&t).await;
    let (reopen_entry, reopened) = ost.reopen_by_reply(&t).await;
    let events = block(|| wait_events(&bus, &path, 10, "the ticket's life"));
    assert_eq!(events.len(), 10, "{events:#?}");
    assert_eq!(events[0]["name"], "ticket.created", "created comes first");

    let created = the(&events, "ticket.created", |_| true);
    let keys: Vec<&str> = created["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys[..6],
        [
            "helpdesk_code",
            "datetime_complete",
            "department_id",
            "department_name",
            "helptopic_id",
            "helptopic_label"
        ]
    );
    let d = &created["data"];
    assert_eq!(d["helpdesk_code"], "ACME");
    assert_eq!(d["department_id"], 4);
    assert_eq!(d["department_name"], "Support / Level 2");
    assert_eq!(d["helptopic_id"], 11);
    assert_eq!(d["helptopic_label"], "Report a Problem / Access Issue");
    assert_eq!(d["ticket_id"], t.id);
    assert_eq!(d["ticket_number"], t.number.as_str());
    assert_eq!(d["subject"], "Printer on fire");
    assert_eq!(
        (d["user_name"].as_str(), d["user_email"].as_str()),
        (Some("Ada Lovelace"), Some("ada@example.com"))
    );
    assert_eq!(
        (d["status_name"].as_str(), d["status_state"].as_str()),
        (Some("Open"), Some("open"))
    );
    assert_eq!(d["priority"], "normal");
    assert_eq!(d["channel"], "API");
    assert_eq!(created["routing_key"], "ticket.created");
    assert_eq!(created["source"], "ost");

    let m = &the(&events, "ticket.message", |d| d["entry_id"] == reply)["data"];
    assert_eq!(m["user_email"], "ada@example.com");
    assert_eq!(m["channel"], "Email");
    assert_eq!(m["body"], "Any news?");
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{m:#}");
    assert_eq!(attachments[0]["name"], "smoke.jpg");
    assert_eq!(attachments[0]["mime_type"], "image/jpeg");
    assert_eq!(attachments[0]["size"], 2048);

    let r = &the(&events, "ticket.response", |d| d["entry_id"] == response)["data"];
    assert_eq!(
        (r["staff_id"].as_u64(), r["agent_name"].as_str()),
        (Some(2), Some("Bob Agent"))
    );
    assert_eq!(r["ticket_number"], t.number.as_str());
    let n = &the(&events, "ticket.note", |d| d["entry_id"] == note)["data"];
    assert_eq!(
        (n["agent_name"].as_str(), n["body"].as_str()),
        (Some("Ava Admin"), Some("Escalating to level 2."))
    );
    assert_eq!(n["system_note"], false);

    let a = &the(&events, "ticket.assigned", |d| {
        d["thread_event_id"] == assigned
    })["data"];
    assert_eq!(
        (a["staff_id"].as_u64(), a["agent_name"].as_str()),
        (Some(1), Some("Ava Admin"))
    );
    assert_eq!(a["actor_username"], "ava");
    let x = &the(&events, "ticket.transferred", |d| {
        d["thread_event_id"] == transferred
    })["data"];
    assert_eq!(
        (x["department_id"].as_u64(), x["department_name"].as_str()),
        (Some(2), Some("Sales"))
    );
    assert_eq!(x["previous_department_id"], 4);
    assert_eq!(x["previous_department_name"], "Support / Level 2");
    let e = &the(&events, "ticket.edited", |d| d["thread_event_id"] == edited)["data"];
    assert_eq!(
        (e["helptopic_id"].as_u64(), e["helptopic_label"].as_str()),
        (Some(1), Some("General Inquiry"))
    );
    assert_eq!(
        e["previous_helptopic_label"],
        "Report a Problem / Access Issue"
    );
    assert_eq!(e["changed_fields"], json!(["topic_id"]));
    let c = &the(&events, "ticket.closed", |d| d["thread_event_id"] == closed)["data"];
    assert_eq!(
        (c["status_name"].as_str(), c["status_state"].as_str()),
        (Some("Closed"), Some("closed"))
    );
    assert_eq!(c["department_name"], "Sales");
    the(&events, "ticket.message", |d| d["entry_id"] == reopen_entry);
    let o = &the(&events, "ticket.reopened", |d| {
        d["thread_event_id"] == reopened
    })["data"];
    assert_eq!(
        (o["status_name"].as_str(), o["status_state"].as_str()),
        (Some("Open"), Some("open"))
    );
    assert_eq!(o["actor_type"], "system");
    // Every event is about this ticket and carries the osTicket time.
    for event in &events {
        assert_eq!(event["data"]["ticket_id"], t.id, "{event:#}");
        assert!(event["data"]["datetime_complete"].is_string(), "{event:#}");
    }

    // Delete, once everything before it was read (a delete erases the
    // ticket's entries, so what was not read by then is gone).
    ost.delete(&t).await;
    let events = block(|| wait_events(&bus, &path, 11, "the delete"));
    let gone = &the(&events, "ticket.deleted", |_| true)["data"];
    assert_eq!(gone["ticket_id"], t.id);
    assert_eq!(gone["ticket_number"], t.number.as_str());
    match version {
        Version::V118 => assert_eq!(gone["actor_username"], "ava"),
        Version::V110 => assert_eq!(gone["detected_by"], "sweep"),
    }
    // And nothing twice.
    let counts = counts(
        &events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
    );
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// Every operation of reference §4 on a 1.18-style schema becomes its
/// event, with ids and resolved names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_becomes_its_event_on_1_18() {
    every_operation(Version::V118).await;
}

/// The same on a 1.10-style schema (`thread_event.state`, no `event`
/// table, no `deleted` event: the delete is found by the sweep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_becomes_its_event_on_1_10() {
    every_operation(Version::V110).await;
}

/// osTicket's naive DATETIMEs are converted to UTC: by the server in the
/// session's zone (the machine's default, or one set in the URL), or by
/// deskbus for a configured IANA zone, across daylight saving. A zero
/// date is null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_zones_and_zero_dates() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new("tz", Version::V118).await;
    let winter = ost
        .create_ticket(
            ("Ada", "ada@example.com"),
            "Winter",
            1,
            1,
            "'2026-01-15 10:00:00'",
        )
        .await;
    let summer = ost
        .create_ticket(
            ("Ada", "ada@example.com"),
            "Summer",
            1,
            1,
            "'2026-07-15 10:00:00'",
        )
        .await;
    let zero = ost
        .entry(
            &winter,
            ("N", 0),
            (1, 0),
            "no date",
            "'0000-00-00 00:00:00'",
        )
        .await;
    // What the server's default zone makes of the winter time.
    let server_winter = ost
        .scalar("SELECT CAST(UNIX_TIMESTAMP('2026-01-15 10:00:00') AS SIGNED)")
        .await;
    let sources = [
        Source {
            id: "server",
            url: ost.url(),
            extra: "start = \"beginning\"",
        },
        Source {
            id: "plus5",
            url: format!("{}?timezone=%2B05:00", ost.url()),
            extra: "start = \"beginning\"",
        },
        Source {
            id: "ny",
            url: ost.url(),
            extra: "start = \"beginning\"\ntimezone = \"America/New_York\"",
        },
    ];
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let time_of = |events: &[Value], t: &Ticket| {
        the(events, "ticket.created", |d| d["ticket_id"] == t.id)["time"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let server = block(|| wait_events(&bus, &out(dir.path(), "server"), 3, "server zone"));
    let expected = jiff::Timestamp::from_second(server_winter)
        .unwrap()
        .to_string();
    assert_eq!(time_of(&server, &winter), expected);
    let plus5 = block(|| wait_events(&bus, &out(dir.path(), "plus5"), 3, "+05:00"));
    assert_eq!(time_of(&plus5, &winter), "2026-01-15T05:00:00Z");
    assert_eq!(time_of(&plus5, &summer), "2026-07-15T05:00:00Z");
    let ny = block(|| wait_events(&bus, &out(dir.path(), "ny"), 3, "New York"));
    assert_eq!(time_of(&ny, &winter), "2026-01-15T15:00:00Z", "EST");
    assert_eq!(time_of(&ny, &summer), "2026-07-15T14:00:00Z", "EDT");
    for events in [&server, &plus5, &ny] {
        let created = the(events, "ticket.created", |d| d["ticket_id"] == winter.id);
        assert_eq!(created["data"]["datetime_complete"], "2026-01-15 10:00:00");
        let note = the(events, "ticket.note", |d| d["entry_id"] == zero);
        assert_eq!(note["data"]["datetime_complete"], Value::Null);
        // No date to convert: the time deskbus read it.
        let at: jiff::Timestamp = note["time"].as_str().unwrap().parse().unwrap();
        assert!(
            (jiff::Timestamp::now() - at).as_secs().abs() < 120,
            "{note:#}"
        );
    }
}

/// An id whose transaction commits after a later one's is waited for and
/// emitted once; one that never commits (a rollback) holds the stored
/// position for `gap_grace`, then is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_held_then_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new("gap", Version::V118).await;
    let sources = [Source {
        id: "ost",
        url: ost.url(),
        extra: "gap_grace = \"3s\"",
    }];
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let path = out(dir.path(), "ost");
    let t = ost
        .create_ticket(("Ada", "ada@example.com"), "Gaps", 1, 1, "NOW()")
        .await;
    block(|| wait_events(&bus, &path, 1, "created"));
    let insert = format!(
        "INSERT INTO {} (thread_id, staff_id, type, flags, poster, body, format, created, updated) \
         VALUES ({}, 1, 'N', 64, 'Ava', 'late', 'html', NOW(), '0000-00-00 00:00:00')",
        ost.t("thread_entry"),
        t.thread
    );

    // id X in flight while X+1 commits.
    let mut other = root_connection(Some(&ost.name)).await;
    let mut tx = other.begin().await.unwrap();
    let late = sqlx::query(AssertSqlSafe(insert.clone()))
        .execute(&mut *tx)
        .await
        .unwrap()
        .last_insert_id();
    let early = ost.exec(&insert).await;
    assert_eq!(early, late + 1);
    block(|| wait_events(&bus, &path, 2, "the later id"));
    let line = block(|| cursor_line(&bus, "ost"));
    assert!(
        line.contains(&format!("\"gaps\":[[{late},{late}]]")),
        "{line}"
    );
    tx.commit().await.unwrap();
    let events = block(|| wait_events(&bus, &path, 3, "the late id"));
    the(&events, "ticket.note", |d| d["entry_id"] == late);
    the(&events, "ticket.note", |d| d["entry_id"] == early);

    // A rollback leaves a gap for ever: held, then skipped after the grace.
    let mut tx = other.begin().await.unwrap();
    let lost = sqlx::query(AssertSqlSafe(insert.clone()))
        .execute(&mut *tx)
        .await
        .unwrap()
        .last_insert_id();
    tx.rollback().await.unwrap();
    // The gap cannot be seen before the id after it exists: the grace
    // (3 s) runs from a moment after this one.
    let held_at = Instant::now();
    let after = ost.exec(&insert).await;
    assert_eq!(after, lost + 1);
    block(|| wait_events(&bus, &path, 4, "the id after the rollback"));
    let line = block(|| cursor_line(&bus, "ost"));
    assert!(line.contains(&format!("[[{lost},{lost}]]")), "{line}");
    block(|| {
        wait_for(Duration::from_secs(15), "the gap to be skipped", || {
            !cursor_line(&bus, "ost").contains("gaps")
        })
    });
    // 2.5 s, not 3: deskbus measures the grace on the wall clock, this
    // test on a monotonic one.
    assert!(
        held_at.elapsed() >= Duration::from_millis(2500),
        "skipped before the grace"
    );
    assert_eq!(
        bus.metric("deskbus_source_skipped_ids_total", "table=\"thread_entry\""),
        1.0
    );
    let events = read_events(&path);
    assert_eq!(events.len(), 4, "{events:#?}");
}

/// `start`: "now" (only what comes next), "beginning" (everything, read in
/// batches with progress logged), or a time (what happened from then on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_now_beginning_or_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new("start", Version::V118).await;
    let mut january = Vec::new();
    for i in 0..6 {
        let when = format!("'2026-01-10 10:00:0{i}'");
        january.push(
            ost.create_ticket(("Ada", "ada@example.com"), "Old", 1, 1, &when)
                .await,
        );
    }
    let february = ost
        .create_ticket(
            ("Ada", "ada@example.com"),
            "Newer",
            1,
            1,
            "'2026-02-10 10:00:00'",
        )
        .await;
    let sources = [
        Source {
            id: "now",
            url: ost.url(),
            extra: "",
        },
        Source {
            id: "all",
            url: ost.url(),
            extra: "start = \"beginning\"\nbatch_size = 2",
        },
        Source {
            id: "feb",
            url: ost.url(),
            extra: "start = \"2026-02-01T00:00:00Z\"",
        },
    ];
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let fresh = ost
        .create_ticket(("Ada", "ada@example.com"), "Fresh", 1, 1, "NOW()")
        .await;
    let tickets = |events: &[Value]| -> BTreeSet<u64> {
        events
            .iter()
            .map(|e| e["data"]["ticket_id"].as_u64().unwrap())
            .collect()
    };
    let all = block(|| wait_events(&bus, &out(dir.path(), "all"), 8, "beginning"));
    let mut want: BTreeSet<u64> = january.iter().map(|t| t.id).collect();
    want.extend([february.id, fresh.id]);
    assert_eq!(tickets(&all), want);
    let feb = block(|| wait_events(&bus, &out(dir.path(), "feb"), 2, "a time"));
    assert_eq!(tickets(&feb), BTreeSet::from([february.id, fresh.id]));
    let now = block(|| wait_events(&bus, &out(dir.path(), "now"), 1, "now"));
    assert_eq!(tickets(&now), BTreeSet::from([fresh.id]));
    // The backfill of `all` was reported (stderr is no terminal: log lines).
    block(|| {
        wait_for(Duration::from_secs(10), "backfill log lines", || {
            let log = bus.log();
            log.contains("osticket backfill progress") && log.contains("osticket backfill done")
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    for source in ["all", "feb", "now"] {
        let events = read_events(&out(dir.path(), source));
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            counts(&ids).values().all(|&n| n == 1),
            "{source}: {events:#?}"
        );
    }
}

/// After a stop, capture resumes from the committed position: what
/// happened while deskbus was down arrives, nothing arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_stored_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new("restart", Version::V118).await;
    let sources = [Source {
        id: "ost",
        url: ost.url(),
        extra: "",
    }];
    let mut bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let path = out(dir.path(), "ost");
    for i in 0..3 {
        let t = ost
            .create_ticket(
                ("Ada", "ada@example.com"),
                &format!("Before {i}"),
                1,
                1,
                "NOW()",
            )
            .await;
        ost.staff_reply(&t, 2).await;
    }
    block(|| wait_events(&bus, &path, 6, "before the stop"));
    let status = block(|| bus.terminate());
    assert!(status.success(), "{status}");
    for i in 0..3 {
        let t = ost
            .create_ticket(
                ("Ada", "ada@example.com"),
                &format!("Down {i}"),
                1,
                1,
                "NOW()",
            )
            .await;
        ost.staff_reply(&t, 2).await;
    }
    block(|| bus.spawn());
    let t = ost
        .create_ticket(("Ada", "ada@example.com"), "After", 1, 1, "NOW()")
        .await;
    ost.staff_reply(&t, 2).await;
    block(|| wait_events(&bus, &path, 14, "after the restart"));
    std::thread::sleep(Duration::from_millis(500));
    let events = read_events(&path);
    assert_eq!(events.len(), 14, "{events:#?}");
    let rows: BTreeSet<String> = events.iter().map(row_key).collect();
    assert_eq!(rows.len(), 14);
    assert!(bus.log().contains("resuming from the stored position"));
}

/// `thread_entry:ID` or `thread_event:ID`: the osTicket row an event is from.
fn row_key(event: &Value) -> String {
    let d = &event["data"];
    match (d["entry_id"].as_u64(), d["thread_event_id"].as_u64()) {
        (Some(id), _) => format!("thread_entry:{id}"),
        (None, Some(id)) => format!("thread_event:{id}"),
        _ => panic!("no osTicket row in {event:#}"),
    }
}

/// kill -9 while osTicket writes and deskbus polls, restart, twice: no
/// event is lost, and the spool holds none twice (the position commits
/// with the events). The stream is kept failing until the end, so every
/// event waits in the spool; a last, clean run then delivers each spool
/// entry once, and the file shows exactly what the spool held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_polling_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ost = Ost::new("crash", Version::V118).await;
    // A stream path under a regular file: every delivery fails (even as root).
    std::fs::write(dir.path().join("blocker"), "").unwrap();
    let blocked = dir.path().join("blocker");
    let sources = [Source {
        id: "ost",
        url: ost.url(),
        extra: "batch_size = 50",
    }];
    let bus = std::sync::Arc::new(std::sync::Mutex::new(block(|| {
        start(dir.path(), &sources, &blocked, "")
    })));
    const TICKETS: usize = 150;
    let writer = {
        let name = ost.name.clone();
        tokio::spawn(async move {
            let conn = root_connection(Some(&name)).await;
            let mut w = Ost {
                name,
                version: Version::V118,
                prefix: PREFIX.to_owned(),
                conn,
                owned: false,
            };
            let mut rows = Vec::new();
            for i in 0..TICKETS {
                let t = w
                    .create_ticket(
                        ("Ada", "ada@example.com"),
                        &format!("Load {i}"),
                        1,
                        1,
                        "NOW()",
                    )
                    .await;
                let reply = w.staff_reply(&t, 2).await;
                rows.push((t, reply));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rows
        })
    };
    // kill -9 at random moments while the writer runs (at most 5 times).
    let mut kills = 0;
    while !writer.is_finished() && kills < 5 {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..2000))).await;
        let bus = bus.clone();
        block(move || {
            let mut bus = bus.lock().unwrap();
            bus.kill();
            bus.spawn();
        });
        kills += 1;
    }
    let rows = writer.await.unwrap();
    assert!(
        kills >= 2,
        "the writer finished before deskbus was killed twice"
    );
    // The last run: deliveries work again.
    let path = out(dir.path(), "ost");
    block(|| {
        let mut bus = bus.lock().unwrap();
        bus.kill();
        let text = std::fs::read_to_string(&bus.config).unwrap();
        let fixed = text.replace(
            &format!("path = \"{}/", blocked.display()),
            &format!("path = \"{}/", dir.path().join("out").display()),
        );
        assert_ne!(fixed, text);
        std::fs::write(&bus.config, fixed).unwrap();
        bus.spawn();
    });
    let bus = bus.lock().unwrap();
    // Per ticket: `created` and the staff reply (the first message is the
    // ticket's own and gives no event).
    block(|| wait_events(&bus, &path, TICKETS * 2, "every row"));
    std::thread::sleep(Duration::from_secs(1));
    let events = read_events(&path);
    let mut want: BTreeSet<u64> = rows.iter().map(|(_, reply)| *reply).collect();
    let got_entries: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| e["data"]["entry_id"].as_u64())
        .collect();
    let created: BTreeSet<u64> = events
        .iter()
        .filter(|e| e["name"] == "ticket.created")
        .map(|e| e["data"]["ticket_id"].as_u64().unwrap())
        .collect();
    assert_eq!(got_entries, want, "replies lost or foreign");
    want = rows.iter().map(|(t, _)| t.id).collect();
    assert_eq!(created, want, "creations lost");
    let keys: Vec<String> = events.iter().map(row_key).collect();
    let per_row = counts(&keys);
    let twice: HashMap<&String, &usize> = per_row.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows emitted twice: {twice:?}");
    assert_eq!(events.len(), TICKETS * 2);
}

/// The seed's `tickets_creation` use case, fed by the source alone, gets
/// its six fields as the plugin's CSV: helpdesk code, creation time, the
/// department's id and full name, the topic's id and full label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_tickets_creation_use_case_gets_its_six_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new("seed", Version::V118).await;
    let sources = [Source {
        id: "ost",
        url: ost.url(),
        extra: "",
    }];
    let extra = "\n[use_cases.tickets_creation]\ninputs = [\"ost\"]\nstream = \"out\"\nqueue = \"tickets\"\n\
                 serializer = { type = \"csv\", separator = \",\", enclosure = '\"', escape = \"\\\\\" }\n";
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), extra));
    ost.create_ticket(
        ("Ada", "ada@example.com"),
        "With topic",
        4,
        11,
        "'2026-03-01 12:00:00'",
    )
    .await;
    ost.create_ticket(
        ("Ada", "ada@example.com"),
        "No topic",
        2,
        0,
        "'2026-03-01 12:00:05'",
    )
    .await;
    let csv = dir.path().join("out/tickets.ndjson");
    block(|| {
        wait_for(Duration::from_secs(20), "two CSV records", || {
            std::fs::read_to_string(&csv)
                .unwrap_or_default()
                .lines()
                .count()
                >= 2
        })
    });
    // Two tickets, two order keys: delivered in either order.
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: BTreeSet<&str> = text.lines().collect();
    assert_eq!(
        lines,
        BTreeSet::from([
            "ACME,\"2026-03-01 12:00:00\",4,\"Support / Level 2\",11,\"Report a Problem / Access Issue\"",
            "ACME,\"2026-03-01 12:00:05\",2,Sales,0,",
        ]),
        "{}",
        bus.log()
    );
    assert!(text.ends_with('\n'));
}

/// `deskbus check --connect` reaches the database and finds osTicket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let ost = Ost::new("check", Version::V110).await;
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    for (url, ok) in [
        (ost.url(), true),
        (
            format!("mysql://root@127.0.0.1:3306/{}_missing", ost.name),
            false,
        ),
    ] {
        let sources = [Source {
            id: "ost",
            url,
            extra: "",
        }];
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            config(dir.path(), admin, &sources, &dir.path().join("out"), ""),
        )
        .unwrap();
        let (code, stdout, stderr) = block(|| check_connect(&path));
        if ok {
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert!(
                stdout.contains("source ost (osticket): ok (osTicket schema 1.10"),
                "{stdout}"
            );
        } else {
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                stdout.contains("source ost (osticket): FAILED: cannot connect"),
                "{stdout}"
            );
        }
    }
}

/// A database connection that dies (here killed by the server) is opened
/// again with backoff, reported, and capture goes on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::new("reconnect", Version::V118).await;
    let sources = [Source {
        id: "ost",
        url: ost.url(),
        extra: "",
    }];
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let path = out(dir.path(), "ost");
    ost.create_ticket(("Ada", "ada@example.com"), "Before", 1, 1, "NOW()")
        .await;
    block(|| wait_events(&bus, &path, 1, "before the kill"));
    let filter = format!("DB = '{}'", ost.name);
    assert!(
        ost.kill_sessions(&filter).await > 0,
        "deskbus has no session on the database"
    );
    ost.create_ticket(("Ada", "ada@example.com"), "After", 1, 1, "NOW()")
        .await;
    let events = block(|| wait_events(&bus, &path, 2, "after the kill"));
    assert_eq!(events.len(), 2, "{events:#?}");
    block(|| {
        wait_for(
            Duration::from_secs(10),
            "the reconnect to be counted",
            || bus.metric("deskbus_source_reconnects_total", "source=\"ost\"") >= 1.0,
        )
    });
    assert!(bus.log().contains("source disconnected; connecting again"));
}

/// What the config reference promises an operator who follows it: a user
/// that may only SELECT, tables under another `TABLE_PREFIX`, and a
/// password that never shows in the log, even when it stops working.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_user_with_its_own_table_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut ost = Ost::with_prefix("readonly", Version::V118, "help_").await;
    let user = format!("deskbus_ro_{}", std::process::id());
    let password = "Ro-s3cret-hunter2";
    let _drop_user = DropUser(user.clone());
    ost.exec(&format!("DROP USER IF EXISTS '{user}'@'%'")).await;
    ost.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY {}",
        lit(password)
    ))
    .await;
    ost.exec(&format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", ost.name))
        .await;
    let sources = [Source {
        id: "ost",
        url: format!("mysql://{user}:{password}@127.0.0.1:3306/{}", ost.name),
        extra: "table_prefix = \"help_\"",
    }];
    let bus = block(|| start(dir.path(), &sources, &dir.path().join("out"), ""));
    let path = out(dir.path(), "ost");
    ost.create_ticket(("Ada", "ada@example.com"), "Read only", 1, 1, "NOW()")
        .await;
    let events = block(|| wait_events(&bus, &path, 1, "a ticket read by a SELECT-only user"));
    the(&events, "ticket.created", |d| d["subject"] == "Read only");

    // The password stops working and the session is cut: every attempt
    // to connect again fails, and is logged without the password.
    ost.exec(&format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY 'changed-elsewhere'"
    ))
    .await;
    assert!(
        ost.kill_sessions(&format!("USER = '{user}'")).await > 0,
        "deskbus has no session as {user}"
    );
    block(|| {
        wait_for(
            Duration::from_secs(20),
            "a refused login to be logged",
            || bus.log().contains("Access denied"),
        )
    });
    // The password is restored: the source carries on from its position.
    ost.exec(&format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY {}",
        lit(password)
    ))
    .await;
    ost.create_ticket(("Ada", "ada@example.com"), "Back", 1, 1, "NOW()")
        .await;
    let events = block(|| wait_events(&bus, &path, 2, "a ticket after the login works again"));
    the(&events, "ticket.created", |d| d["subject"] == "Back");
    let log = bus.log();
    assert!(!log.contains("hunter2"), "{log}");
}

/// Drops a MariaDB user of the test's, even when the test fails.
struct DropUser(String);

impl Drop for DropUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mysql")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP USER IF EXISTS '{}'@'%'", self.0))
            .status();
    }
}

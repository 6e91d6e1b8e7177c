//! The spool's own cost per event, beside the least any SQLite row store
//! pays: a bare table (no index, no per-key order, no de-duplication) filled
//! and drained the same way, with the same pragmas, in the same run.
//!
//! `cargo bench -p deskbus-spool` prints events/s and CPU µs per event (all
//! threads of this process, the spool's writer included), and the same for
//! opening a version-1 spool of as many entries, which migrates it.

use std::collections::HashSet;
use std::time::Instant;

use deskbus_spool::{AppendBatch, NewEntry, Outcome, Spool, SpoolOptions, now_ms};
use rusqlite::{Connection, params};

// The tests' reading of `/proc`: CPU time per process.
#[path = "../../deskbus/tests/util/proc.rs"]
mod proc;

const EVENTS: usize = 100_000;
const BATCH: usize = 100;

/// A ticket event's size, as the stream benches send.
fn payload(i: usize) -> Vec<u8> {
    format!(
        r#"{{"name":"ticket.created","id":"0197a3c0-0000-7000-8000-{i:012}","data":{{"ticket_id":{i},"number":"{i:06}","subject":"Printer on floor 3 is out of toner again","dept_id":1,"helptopic_label":"Report a Problem / Access Issue","priority":"normal","status":"open","user_email":"someone@example.com"}}}}"#
    )
    .into_bytes()
}

struct Phase {
    events_per_s: f64,
    cpu_us_per_event: f64,
}

fn measure(run: impl FnOnce()) -> Phase {
    let (wall, cpu) = (Instant::now(), proc::cpu_time("self"));
    run();
    let (wall, cpu) = (wall.elapsed(), proc::cpu_time("self") - cpu);
    Phase {
        events_per_s: EVENTS as f64 / wall.as_secs_f64(),
        cpu_us_per_event: cpu.as_secs_f64() * 1e6 / EVENTS as f64,
    }
}

fn spool(dir: &std::path::Path) -> (Phase, Phase) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let spool = Spool::open(SpoolOptions::new(dir.join("spool.db"))).unwrap();
    let fill = measure(|| {
        for start in (0..EVENTS).step_by(BATCH) {
            let entries = (start..start + BATCH)
                .map(|i| {
                    let id = format!("0197a3c0-0000-7000-8000-{i:012}");
                    NewEntry::new(
                        "out",
                        "t",
                        "tickets",
                        &format!("ticket:{i}"),
                        &id,
                        payload(i),
                    )
                })
                .collect();
            rt.block_on(spool.append(AppendBatch {
                entries,
                ..Default::default()
            }))
            .unwrap();
        }
    });
    let none = HashSet::new();
    let drain = measure(|| {
        let mut left = EVENTS;
        while left > 0 {
            let ready = spool.fetch_ready("out", now_ms(), BATCH, &none).unwrap();
            assert!(!ready.is_empty(), "{left} entries lost");
            left -= ready.len();
            let outcomes = ready.iter().map(|e| (e.seq, Outcome::Delivered)).collect();
            rt.block_on(spool.complete(outcomes)).unwrap();
        }
    });
    assert_eq!(spool.stats().unwrap().streams.len(), 0);
    (fill, drain)
}

/// The floor: one table, rowid order, fsync'd inserts and unsynced
/// deletes, as the spool commits them (invariant 7).
fn bare_table(dir: &std::path::Path) -> (Phase, Phase) {
    let mut conn = Connection::open(dir.join("bare.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE entries (seq INTEGER PRIMARY KEY, queue TEXT, event_id TEXT,
                               payload BLOB, enqueued_at INTEGER)",
    )
    .unwrap();
    let fill = measure(|| {
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        for start in (0..EVENTS).step_by(BATCH) {
            let tx = conn.transaction().unwrap();
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO entries (queue, event_id, payload, enqueued_at)
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .unwrap();
                for i in start..start + BATCH {
                    let id = format!("0197a3c0-0000-7000-8000-{i:012}");
                    insert
                        .execute(params!["tickets", id, payload(i), now_ms()])
                        .unwrap();
                }
            }
            tx.commit().unwrap();
        }
    });
    let drain = measure(|| {
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        loop {
            // `+ 0`, as in the spool's own fetch: a bare LIMIT parameter
            // has SQLite compile the statement again at every run.
            let rows: Vec<(i64, String, Vec<u8>)> = conn
                .prepare_cached(
                    "SELECT seq, event_id, payload FROM entries ORDER BY seq LIMIT ?1 + 0",
                )
                .unwrap()
                .query_map([BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            if rows.is_empty() {
                break;
            }
            let tx = conn.transaction().unwrap();
            for (seq, ..) in &rows {
                tx.prepare_cached("DELETE FROM entries WHERE seq = ?1")
                    .unwrap()
                    .execute([seq])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
    });
    (fill, drain)
}

/// A version-1 spool (the layout of `tests/fixtures/spool-v1.sql`) holding
/// `EVENTS` more entries of one stream, as an older deskbus left it.
fn version_1_spool(path: &std::path::Path) {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(include_str!("../tests/fixtures/spool-v1.sql"))
        .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO entries (stream, use_case, queue, order_key, event_id, payload,
                                      enqueued_at, next_attempt_at)
                 VALUES ('out', 't', 'tickets', ?1, ?2, ?3, ?4, ?4)",
            )
            .unwrap();
        for i in 0..EVENTS {
            let id = format!("0197a3c0-0000-7000-8000-{i:012}");
            insert
                .execute(params![format!("ticket:{i}"), id, payload(i), now_ms()])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Opening a version-1 spool, which migrates it to the current layout
/// (every row rewritten, its indexes built), against the least any
/// rewrite of those rows pays: one `INSERT … SELECT` into a table without
/// indexes, in one transaction.
fn migration(dir: &std::path::Path) -> (Phase, Phase) {
    let (old, copied) = (dir.join("v1.db"), dir.join("v1-copied.db"));
    version_1_spool(&old);
    std::fs::copy(&old, &copied).unwrap();
    let migrate = measure(|| {
        let spool = Spool::open(SpoolOptions::new(&old)).unwrap();
        spool.close();
    });
    let mut conn = Connection::open(&copied).unwrap();
    let copy = measure(|| {
        let tx = conn.transaction().unwrap();
        tx.execute_batch(
            "CREATE TABLE copy AS SELECT seq, use_case, queue, order_key, event_id, payload,
                    enqueued_at, attempts, next_attempt_at, last_error FROM entries",
        )
        .unwrap();
        tx.commit().unwrap();
    });
    (migrate, copy)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    let dir = tempfile::tempdir().unwrap();
    let (bare_fill, bare_drain) = bare_table(dir.path());
    let (fill, drain) = spool(dir.path());
    let (migrate, copy) = migration(dir.path());
    println!(
        "spool: {EVENTS} events, appends and deliveries of {BATCH}, synchronous=FULL (outcomes NORMAL)"
    );
    println!(
        "{:<32} {:>10} {:>12} {:>8}",
        "measure", "spool", "bare table", "ratio"
    );
    let row = |name: &str, spool: f64, bare: f64, ratio: f64| {
        println!("{name:<32} {spool:>10.1} {bare:>12.1} {ratio:>8.2}");
    };
    for (name, spool, bare) in [
        ("fill", &fill, &bare_fill),
        ("drain", &drain, &bare_drain),
        ("migrate v1 (vs copy)", &migrate, &copy),
    ] {
        row(
            &format!("{name} events/s"),
            spool.events_per_s,
            bare.events_per_s,
            spool.events_per_s / bare.events_per_s,
        );
        row(
            &format!("{name} CPU µs/event"),
            spool.cpu_us_per_event,
            bare.cpu_us_per_event,
            spool.cpu_us_per_event / bare.cpu_us_per_event,
        );
    }
}

//! Opening a spool written by an older deskbus: its pending entries, dead
//! letters and cursors carry over, in order, with every promise kept.

use std::collections::HashSet;

use deskbus_spool::*;

/// Version 1's layout, as the deskbus of that version created it, with
/// entries of streams `out` and `two`.
const VERSION_1: &str = include_str!("fixtures/spool-v1.sql");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn ready(spool: &Spool, stream: &str) -> Vec<Entry> {
    spool
        .fetch_ready(stream, now_ms(), 10, &HashSet::new())
        .unwrap()
}

/// A spool file in a new directory (kept alive by the first value),
/// written by `sql` as an older or newer deskbus would have left it.
fn spool_file(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    (dir, path)
}

fn ids(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.event_id.as_str()).collect()
}

#[test]
fn a_version_1_spool_is_migrated_with_order_attempts_and_seqs_kept() {
    let (_dir, path) = spool_file(VERSION_1);

    let spool = Spool::open(SpoolOptions::new(&path)).unwrap();
    // Per key order holds, per stream: e3 waits behind e1, e2 does not.
    let out = ready(&spool, "out");
    assert_eq!(ids(&out), ["e1", "e4"]);
    assert_eq!(ids(&ready(&spool, "two")), ["e2"]);
    let stats = spool.stats().unwrap();
    assert_eq!(stats.streams["out"].depth, 3);
    assert_eq!(stats.streams["out"].dead_letters, 1);
    assert_eq!(stats.streams["two"].depth, 1);
    assert_eq!(stats.cursors["osticket"], "thread_entry:42");
    assert_eq!(spool.meta("origin_uuid").unwrap().as_deref(), Some("u-1"));
    assert_eq!(spool.meta("schema_version").unwrap().as_deref(), Some("2"));

    rt().block_on(spool.complete(vec![(out[0].seq, Outcome::Delivered)]))
        .unwrap();
    let out = ready(&spool, "out");
    assert_eq!(ids(&out), ["e3", "e4"]);
    assert_eq!(out[0].attempts, 2, "attempts carried over");
    let migrated_seqs: Vec<i64> = out.iter().map(|e| e.seq).collect();

    // A resent e4 is still the pending one; a new event comes after every
    // seq version 1 handed out, delivered ones included.
    rt().block_on(spool.append(AppendBatch {
        entries: vec![
            NewEntry::new("out", "uc", "q", "ticket:2", "e4", b"{}".to_vec()),
            NewEntry::new("out", "uc", "q", "ticket:5", "e10", b"{}".to_vec()),
        ],
        ..Default::default()
    }))
    .unwrap();
    let out = ready(&spool, "out");
    assert_eq!(ids(&out), ["e3", "e4", "e10"]);
    assert_eq!(
        spool.stats().unwrap().streams["out"].depth,
        3,
        "e4 queued once"
    );
    assert!(out[2].seq > *migrated_seqs.iter().max().unwrap());
    assert!(out[2].seq & ((1 << 40) - 1) > 9, "seq 9 handed out again");

    // The dead letter replays into its stream, behind what is there.
    let moved = rt()
        .block_on(spool.retry_dead_letters(DeadLetterSelector::Stream("out".into())))
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(ids(&ready(&spool, "out")), ["e3", "e4", "e10", "d1"]);
    spool.close();

    // Nothing of version 1 is left behind.
    let sqlite = rusqlite::Connection::open(&path).unwrap();
    let leftovers: Vec<String> = sqlite
        .prepare(
            "SELECT name FROM sqlite_master WHERE name IN ('entries_v1', 'entries_by_stream')
             UNION ALL SELECT name FROM sqlite_sequence WHERE name LIKE 'entries%'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Opening again finds version 2 and leaves it alone.
    let spool = Spool::open(SpoolOptions::new(&path)).unwrap();
    assert_eq!(ids(&ready(&spool, "out")), ["e3", "e4", "e10", "d1"]);
    assert_eq!(ids(&ready(&spool, "two")), ["e2"]);
}

/// The first version-1 binaries had no `entries_by_stream`, and version 1
/// wrote its version after its tables: a crash in between left none.
#[test]
fn a_version_1_spool_without_its_version_or_an_index_is_migrated() {
    let (_dir, path) = spool_file(&format!(
        "{VERSION_1}
             DELETE FROM meta WHERE key = 'schema_version';
             DROP INDEX entries_by_stream;"
    ));
    let spool = Spool::open(SpoolOptions::new(&path)).unwrap();
    assert_eq!(ids(&ready(&spool, "out")), ["e1", "e4"]);
    assert_eq!(spool.meta("schema_version").unwrap().as_deref(), Some("2"));
}

/// A version-1 seq that does not fit a stream's range (a hand-edited or
/// corrupt file) stops the migration with its value, changing nothing,
/// rather than landing in another stream's range.
#[test]
fn a_version_1_seq_out_of_range_is_refused_and_the_file_left_as_it_was() {
    for seq in ["-5", "1099511627776"] {
        let (_dir, path) = spool_file(&format!(
            "{VERSION_1}
             UPDATE entries SET seq = {seq} WHERE event_id = 'e4';"
        ));
        let error = Spool::open(SpoolOptions::new(&path))
            .err()
            .expect("refused");
        let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        assert!(
            chain.contains(&format!("spool seq {seq} cannot be migrated")),
            "{chain}"
        );
        let version: String = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, "1", "rolled back");
    }
}

#[test]
fn a_spool_of_a_newer_deskbus_is_refused() {
    let (_dir, path) = spool_file(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '99');",
    );
    let error = Spool::open(SpoolOptions::new(&path))
        .err()
        .expect("refused");
    let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(chain.contains("schema version 99 is newer"), "{chain}");
}

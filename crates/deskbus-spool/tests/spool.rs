//! Acknowledgement, ordering and dead-letter behaviour, plus a model-based
//! property test of the invariants stated in the crate docs.

use std::collections::{BTreeMap, HashSet, VecDeque};

use deskbus_spool::*;
use proptest::prelude::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn entry(key: &str, id: &str) -> NewEntry {
    NewEntry::new("out", "uc", "q", key, id, id.as_bytes().to_vec())
}

fn append(spool: &Spool, entries: Vec<NewEntry>) {
    rt().block_on(spool.append(AppendBatch {
        entries,
        ..Default::default()
    }))
    .unwrap();
}

fn complete(spool: &Spool, outcomes: Vec<(i64, Outcome)>) {
    rt().block_on(spool.complete(outcomes)).unwrap();
}

fn ids(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.event_id.as_str()).collect()
}

/// What stream `out` has ready now (up to 10 heads), nothing in flight.
fn heads(spool: &Spool) -> Vec<Entry> {
    spool
        .fetch_ready("out", now_ms(), 10, &HashSet::new())
        .unwrap()
}

fn open(dir: &tempfile::TempDir) -> Spool {
    Spool::open(SpoolOptions::new(dir.path().join("spool.db"))).unwrap()
}

/// Outcomes are committed without an fsync (invariant 7) and synced within
/// about a second, or at once when the spool is closed: a clean stop
/// followed by a power loss does not deliver them again.
#[test]
fn closing_syncs_the_outcomes_committed_without_an_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("k", "e1")]);
    let seq = heads(&spool)[0].seq;
    let before = now_ms();
    complete(&spool, vec![(seq, Outcome::Delivered)]);
    spool.close();
    let synced: i64 = spool
        .meta("outcomes_synced_at")
        .unwrap()
        .expect("a synced commit at close")
        .parse()
        .unwrap();
    assert!(synced >= before);
}

/// A new entry is due at once, even if the wall clock has been stepped
/// back since it was queued (NTP, an operator): it does not wait for the
/// clock to catch up, and neither does its key.
#[test]
fn a_new_entry_is_due_even_after_the_clock_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("k", "e1")]);
    let an_hour_ago = now_ms() - 3_600_000;
    let ready = spool
        .fetch_ready("out", an_hour_ago, 10, &HashSet::new())
        .unwrap();
    assert_eq!(ids(&ready), ["e1"]);
    assert_eq!(spool.next_due("out").unwrap(), Some(0));
}

/// Makes the spool refuse to delete the entry `event_id`, as a damaged row
/// would: a trigger, added from a connection of the test's own.
fn poison(dir: &tempfile::TempDir, event_id: &str) {
    let conn = rusqlite::Connection::open(dir.path().join("spool.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER poison BEFORE DELETE ON entries WHEN old.event_id = '{event_id}'
         BEGIN SELECT RAISE(ABORT, 'poisoned'); END;"
    ))
    .unwrap();
}

#[test]
fn outcomes_sent_alone_are_recorded_around_one_the_spool_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    // First of three: results paired with the wrong outcomes would show.
    append(
        &spool,
        vec![
            entry("a", "bad"),
            entry("b", "good-1"),
            entry("c", "good-2"),
        ],
    );
    poison(&dir, "bad");
    let ready = heads(&spool);
    let outcomes: Vec<(i64, Outcome)> = ready.iter().map(|e| (e.seq, Outcome::Delivered)).collect();
    // Together, the command is refused whole.
    let together = rt().block_on(spool.complete(outcomes.clone()));
    assert!(
        matches!(&together, Err(SpoolError::Commit(reason)) if reason.contains("poisoned")),
        "{together:?}"
    );
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 3);
    // Alone, only the poisoned one is.
    let results = rt().block_on(spool.complete_each(outcomes));
    let refused: Vec<&str> = ready
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_err())
        .map(|(e, _)| e.event_id.as_str())
        .collect();
    assert_eq!(refused, ["bad"]);
    let left = heads(&spool);
    assert_eq!(ids(&left), ["bad"]);
}

#[test]
fn only_the_head_of_each_key_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(
        &spool,
        vec![
            entry("t1", "a"),
            entry("t1", "b"),
            entry("t2", "c"),
            entry("t1", "d"),
        ],
    );
    let ready = heads(&spool);
    assert_eq!(ids(&ready), ["a", "c"]);
    // In flight entries are skipped, and so is everything behind them.
    let in_flight: HashSet<i64> = ready.iter().map(|e| e.seq).collect();
    assert!(
        spool
            .fetch_ready("out", now_ms(), 10, &in_flight)
            .unwrap()
            .is_empty()
    );
    complete(&spool, vec![(ready[0].seq, Outcome::Delivered)]);
    let in_flight: HashSet<i64> = [ready[1].seq].into();
    assert_eq!(
        ids(&spool.fetch_ready("out", now_ms(), 10, &in_flight).unwrap()),
        ["b"]
    );
}

#[test]
fn a_read_stops_at_its_byte_bound_but_returns_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    // Payloads are the ids: 4 bytes each.
    append(
        &spool,
        (0..6)
            .map(|i| entry(&format!("k{i}"), &format!("id-{i}")))
            .collect(),
    );
    let none = HashSet::new();
    let read = |max_bytes| {
        spool
            .fetch_ready_within("out", now_ms(), 10, max_bytes, 0, &none)
            .unwrap()
    };
    assert_eq!(ids(&read(8)), ["id-0", "id-1"]);
    assert_eq!(ids(&read(9)), ["id-0", "id-1", "id-2"]);
    assert_eq!(ids(&read(1)), ["id-0"], "one entry even over the bound");
    assert_eq!(ids(&read(0)), ["id-0"], "even with no bytes allowed");
    assert_eq!(read(usize::MAX).len(), 6);
    // Entries in flight count for nothing.
    let in_flight: HashSet<i64> = read(8).iter().map(|e| e.seq).collect();
    let after = spool
        .fetch_ready_within("out", now_ms(), 10, 8, 0, &in_flight)
        .unwrap();
    assert_eq!(ids(&after), ["id-2", "id-3"]);
    // From a sequence on: what is below is not looked at.
    let from = spool
        .fetch_ready_within("out", now_ms(), 10, usize::MAX, after[1].seq, &none)
        .unwrap();
    assert_eq!(ids(&from), ["id-4", "id-5"]);
}

#[test]
fn a_retry_blocks_its_key_until_due_and_counts_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("t1", "a"), entry("t1", "b")]);
    let a = heads(&spool).remove(0);
    let due = now_ms() + 60_000;
    complete(
        &spool,
        vec![(
            a.seq,
            Outcome::Retry {
                error: "down".into(),
                next_attempt_at: due,
            },
        )],
    );
    assert!(heads(&spool).is_empty());
    assert_eq!(spool.next_due("out").unwrap(), Some(due));
    let again = spool.fetch_ready("out", due, 10, &HashSet::new()).unwrap();
    assert_eq!(ids(&again), ["a"]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(spool.stats().unwrap().streams["out"].retrying, 1);
}

/// A large retry moves its dead letters in transactions of 1,000, so that
/// a running deskbus is not locked out of the spool meanwhile; all of them
/// are moved, in order.
#[test]
fn dead_letters_are_retried_in_chunks_all_of_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let dead_letters = (0..2500)
        .map(|i| NewDeadLetter {
            entry: entry(&format!("k{i}"), &format!("e{i}")),
            reason: "down".into(),
        })
        .collect();
    rt().block_on(spool.append(AppendBatch {
        dead_letters,
        ..Default::default()
    }))
    .unwrap();
    let commits = spool
        .writer_stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let moved = rt()
        .block_on(spool.retry_dead_letters(DeadLetterSelector::All))
        .unwrap();
    assert_eq!(moved, 2500);
    let commits = spool
        .writer_stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - commits;
    assert_eq!(commits, 3, "three transactions of at most 1,000");
    let stats = spool.stats().unwrap();
    assert_eq!(
        (
            stats.streams["out"].depth,
            stats.streams["out"].dead_letters
        ),
        (2500, 0)
    );
    let first = spool
        .fetch_ready("out", now_ms(), 3, &HashSet::new())
        .unwrap();
    assert_eq!(ids(&first), ["e0", "e1", "e2"]);
}

#[test]
fn dead_letters_free_the_key_and_can_be_retried_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("t1", "a"), entry("t1", "b")]);
    let a = heads(&spool).remove(0);
    complete(
        &spool,
        vec![(
            a.seq,
            Outcome::Dead {
                reason: "job too big".into(),
                attempts: 3,
            },
        )],
    );
    assert_eq!(ids(&heads(&spool)), ["b"]);
    let dead = spool.dead_letters(None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].event_id.as_str(),
            dead[0].attempts,
            dead[0].reason.as_str()
        ),
        ("a", 3, "job too big")
    );
    assert_eq!(spool.dead_letter(dead[0].id).unwrap(), dead[0]);
    assert!(matches!(
        spool.dead_letter(999),
        Err(SpoolError::NoSuchDeadLetter(999))
    ));
    let moved = rt()
        .block_on(spool.retry_dead_letters(DeadLetterSelector::One(dead[0].id)))
        .unwrap();
    assert_eq!(moved, 1);
    assert!(spool.dead_letters(None, 10).unwrap().is_empty());
    // Back at the end of its key's queue, with its id and no attempts.
    let b = heads(&spool).remove(0);
    complete(&spool, vec![(b.seq, Outcome::Delivered)]);
    let again = heads(&spool);
    assert_eq!((again[0].event_id.as_str(), again[0].attempts), ("a", 0));
}

#[test]
fn dropping_dead_letters_by_stream() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let batch = AppendBatch {
        dead_letters: vec![
            NewDeadLetter {
                entry: entry("k", "x"),
                reason: "missing field".into(),
            },
            NewDeadLetter {
                entry: NewEntry::new("other", "uc", "q", "k", "y", vec![]),
                reason: "r".into(),
            },
        ],
        ..Default::default()
    };
    rt().block_on(spool.append(batch)).unwrap();
    assert_eq!(spool.stats().unwrap().streams["out"].dead_letters, 1);
    let dropped = rt()
        .block_on(spool.drop_dead_letters(DeadLetterSelector::Stream("out".into())))
        .unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(spool.dead_letters(None, 10).unwrap().len(), 1);
    assert_eq!(
        rt().block_on(spool.drop_dead_letters(DeadLetterSelector::All))
            .unwrap(),
        1
    );
}

#[test]
fn a_source_dead_letter_is_kept_by_retry_and_refused_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let batch = AppendBatch {
        dead_letters: vec![
            NewDeadLetter {
                entry: NewEntry::new("", "bus", "", "", "raw-1", b"not json".to_vec()),
                reason: "malformed body".into(),
            },
            NewDeadLetter {
                entry: entry("k", "x"),
                reason: "missing field".into(),
            },
        ],
        ..Default::default()
    };
    rt().block_on(spool.append(batch)).unwrap();
    let raw = spool
        .dead_letters(None, 10)
        .unwrap()
        .into_iter()
        .find(|d| d.stream.is_empty())
        .unwrap();
    let refused = rt().block_on(spool.retry_dead_letters(DeadLetterSelector::One(raw.id)));
    assert!(
        matches!(refused, Err(SpoolError::NotReplayable(id)) if id == raw.id),
        "{refused:?}"
    );
    // Retrying everything moves the event, and leaves the raw input alone.
    let moved = rt()
        .block_on(spool.retry_dead_letters(DeadLetterSelector::All))
        .unwrap();
    assert_eq!(moved, 1);
    let left = spool.dead_letters(None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].payload, b"not json");
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 1);
}

#[test]
fn a_resent_event_is_not_queued_twice() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("k1", "same")]);
    append(&spool, vec![entry("k1", "same"), entry("k2", "other")]);
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 2);
}

#[test]
fn entries_and_cursor_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(&dir);
        let batch = AppendBatch {
            entries: vec![entry("k", "a")],
            cursor: Some(("osticket".into(), "thread_entry:42".into())),
            ..Default::default()
        };
        rt().block_on(spool.append(batch)).unwrap();
        assert_eq!(
            spool.meta_or_insert("origin_uuid", "first").unwrap(),
            "first"
        );
        spool.close();
    }
    let spool = open(&dir);
    assert_eq!(
        spool.cursor("osticket").unwrap().as_deref(),
        Some("thread_entry:42")
    );
    assert_eq!(
        spool.meta_or_insert("origin_uuid", "second").unwrap(),
        "first"
    );
    let stats = spool.stats().unwrap();
    assert_eq!(stats.streams["out"].depth, 1);
    assert_eq!(stats.cursors["osticket"], "thread_entry:42");
}

/// Invariant 7: outcomes commit without an fsync, and an idle writer
/// syncs them within a second (a synced commit of `outcomes_synced_at`).
#[test]
fn outcomes_committed_unsynced_are_synced_once_idle() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("k", "e1")]);
    assert_eq!(
        spool.meta("outcomes_synced_at").unwrap(),
        None,
        "appends are synced"
    );
    let ready = spool
        .fetch_ready("out", now_ms(), 10, &Default::default())
        .unwrap();
    complete(&spool, vec![(ready[0].seq, Outcome::Delivered)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let synced = loop {
        if let Some(at) = spool.meta("outcomes_synced_at").unwrap() {
            break at;
        }
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Idle and synced: nothing more to do.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(spool.meta("outcomes_synced_at").unwrap(), Some(synced));
}

/// Another process holding the write lock for a while (the `deskbus dlq`
/// CLI) makes an append wait, not fail.
#[test]
fn an_append_waits_for_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let other = rusqlite::Connection::open(dir.path().join("spool.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        other.execute_batch("COMMIT;").unwrap();
    });
    let started = std::time::Instant::now();
    append(&spool, vec![entry("k", "a")]);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "the append waited for the lock"
    );
    releaser.join().unwrap();
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 1);
}

/// A command whose failure rolls back the whole transaction (a trigger's
/// `RAISE(ROLLBACK)` here; SQLite may do the same on a full disk or an I/O
/// error) fails its whole group: the others are refused too and nothing of
/// them is stored, rather than one being committed on its own and answered
/// with an error.
#[test]
fn a_failure_that_rolls_back_the_whole_transaction_refuses_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let other = rusqlite::Connection::open(dir.path().join("spool.db")).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER roll_back BEFORE INSERT ON links WHEN new.local_id = 'bad'
             BEGIN SELECT RAISE(ROLLBACK, 'the whole transaction'); END;
             BEGIN IMMEDIATE;",
        )
        .unwrap();
    let link = |local_id: &'static str| {
        let spool = spool.clone();
        std::thread::spawn(move || rt().block_on(spool.put_link("ns", local_id, "1")))
    };
    // The writer takes this one and waits for the lock with it; the next
    // two queue meanwhile, and are one group once the lock is free. (Were
    // the writer slower than these waits, all three would be one group,
    // and `first` refused with it: `bad` and `good` share a group either way.)
    let first = link("first");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (bad, good) = (link("bad"), link("good"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    other.execute_batch("COMMIT;").unwrap();
    let first = first.join().unwrap();
    let bad = bad.join().unwrap();
    let good = good.join().unwrap();
    assert!(
        bad.is_err_and(|e| e.to_string().contains("whole transaction")
            || format!("{e:?}").contains("whole transaction"))
    );
    assert!(good.is_err(), "refused with its group");
    assert_eq!(spool.link("ns", "good").unwrap(), None, "and not stored");
    let stored = spool.link("ns", "first").unwrap();
    assert_eq!(
        first.is_ok(),
        stored.is_some(),
        "`first` answered as stored"
    );
}

/// Invariant 5: the highest seq, delivered and gone, is not handed out
/// again, not even after a restart.
#[test]
fn a_delivered_seq_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    append(&spool, vec![entry("a", "1"), entry("b", "2")]);
    let ready = heads(&spool);
    let highest = ready.iter().map(|e| e.seq).max().unwrap();
    complete(
        &spool,
        ready.iter().map(|e| (e.seq, Outcome::Delivered)).collect(),
    );
    spool.close();
    let spool = open(&dir);
    append(&spool, vec![entry("c", "3")]);
    let ready = heads(&spool);
    assert_eq!(ids(&ready), ["3"]);
    assert!(ready[0].seq > highest, "{} reused", ready[0].seq);
}

#[test]
fn closed_spool_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    spool.close();
    let err = rt()
        .block_on(spool.append(AppendBatch::default()))
        .unwrap_err();
    assert!(matches!(err, SpoolError::Closed));
}

#[test]
fn concurrent_appends_are_grouped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200 {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                spool
                    .append(AppendBatch {
                        entries: vec![entry(&format!("k{i}"), &format!("e{i}"))],
                        ..Default::default()
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    let stats = spool.writer_stats();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 200);
    assert!(
        commits < 200,
        "200 concurrent appends took {commits} commits: no grouping"
    );
}

/// Operations of the model-based test. Entries go to two streams that use
/// the same order keys: a key orders one stream's entries only.
#[derive(Debug, Clone)]
enum Op {
    /// (stream, key) of each entry.
    Append(Vec<(usize, u8)>),
    Deliver(usize, usize),
    Retry(usize, usize),
    Dead(usize, usize),
    Reopen,
}

const STREAMS: [&str; 2] = ["out", "two"];

fn op() -> impl Strategy<Value = Op> {
    let stream = 0usize..STREAMS.len();
    prop_oneof![
        3 => proptest::collection::vec((0usize..STREAMS.len(), 0u8..4), 1..5).prop_map(Op::Append),
        3 => (stream.clone(), 1usize..6).prop_map(|(s, n)| Op::Deliver(s, n)),
        1 => (stream.clone(), 1usize..3).prop_map(|(s, n)| Op::Retry(s, n)),
        1 => (stream, 1usize..2).prop_map(|(s, n)| Op::Dead(s, n)),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Against a model of per-(stream, key) FIFO queues: nothing is lost,
    /// nothing is handed out twice at once, every key is delivered in append
    /// order, and dead letters hold exactly what was given up.
    #[test]
    fn spool_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(&dir);
        type Queue = (&'static str, String);
        let mut model: BTreeMap<Queue, VecDeque<String>> = BTreeMap::new();
        let mut delivered: BTreeMap<Queue, Vec<String>> = BTreeMap::new();
        let mut appended: BTreeMap<Queue, Vec<String>> = BTreeMap::new();
        let mut dead: Vec<String> = Vec::new();
        let mut next = 0;
        // Retries are due "later"; we fetch with a clock far in the future
        // after every step so retried heads become due again.
        let far = now_ms() + 3_600_000;
        for op in ops {
            match op {
                Op::Append(targets) => {
                    let entries: Vec<NewEntry> = targets.iter().map(|&(s, k)| {
                        next += 1;
                        let (key, id) = (format!("k{k}"), format!("e{next}"));
                        let queue = (STREAMS[s], key.clone());
                        model.entry(queue.clone()).or_default().push_back(id.clone());
                        appended.entry(queue).or_default().push(id.clone());
                        NewEntry::new(STREAMS[s], "uc", "q", &key, &id, id.as_bytes().to_vec())
                    }).collect();
                    append(&spool, entries);
                }
                Op::Deliver(s, n) | Op::Retry(s, n) | Op::Dead(s, n) => {
                    let stream = STREAMS[s];
                    let ready = spool.fetch_ready(stream, far, n, &HashSet::new()).unwrap();
                    // Every ready entry is the head of its key in the model, once.
                    let mut keys = HashSet::new();
                    for e in &ready {
                        prop_assert_eq!(&e.stream, stream);
                        prop_assert!(keys.insert(e.order_key.clone()), "two entries of one key");
                        prop_assert_eq!(model[&(stream, e.order_key.clone())].front(), Some(&e.event_id));
                    }
                    let expected_ready = model
                        .iter()
                        .filter(|((st, _), q)| *st == stream && !q.is_empty())
                        .count()
                        .min(n);
                    prop_assert_eq!(ready.len(), expected_ready);
                    let outcomes = ready.iter().map(|e| {
                        let queue = (stream, e.order_key.clone());
                        let outcome = match op {
                            Op::Deliver(..) => {
                                model.get_mut(&queue).unwrap().pop_front();
                                delivered.entry(queue).or_default().push(e.event_id.clone());
                                Outcome::Delivered
                            }
                            Op::Retry(..) => Outcome::Retry { error: "x".into(), next_attempt_at: far - 1 },
                            _ => {
                                model.get_mut(&queue).unwrap().pop_front();
                                dead.push(e.event_id.clone());
                                Outcome::Dead { reason: "poison".into(), attempts: e.attempts + 1 }
                            }
                        };
                        (e.seq, outcome)
                    }).collect();
                    complete(&spool, outcomes);
                }
                Op::Reopen => {
                    spool.close();
                    spool = open(&dir);
                }
            }
            let stats = spool.stats().unwrap();
            for stream in STREAMS {
                let pending: usize = model
                    .iter()
                    .filter(|((st, _), _)| *st == stream)
                    .map(|(_, q)| q.len())
                    .sum();
                let depth = stats.streams.get(stream).map_or(0, |s| s.depth as usize);
                prop_assert_eq!(depth, pending, "depth of {}", stream);
            }
        }
        // Delivered order per key is a subsequence of append order.
        for (queue, got) in &delivered {
            let order: Vec<&String> = appended[queue].iter().filter(|id| got.contains(id)).collect();
            prop_assert_eq!(order, got.iter().collect::<Vec<_>>());
        }
        let mut dead_ids: Vec<String> = spool.dead_letters(None, 1000).unwrap().into_iter().map(|d| d.event_id).collect();
        dead_ids.sort();
        dead.sort();
        prop_assert_eq!(dead_ids, dead);
    }
}

//! The single writer thread: folds every waiting command into one transaction.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::{
    AppendBatch, DeadLetterSelector, NewEntry, Outcome, SpoolError, SyncMode, now_ms, schema,
};

pub(crate) type Reply = oneshot::Sender<Result<(), SpoolError>>;

pub(crate) enum Command {
    Append {
        batch: AppendBatch,
        reply: Reply,
    },
    Complete {
        outcomes: Vec<(i64, Outcome)>,
        reply: Reply,
    },
    /// Up to [`RETRY_CHUNK`] of the selected dead letters with ids up to
    /// `up_to`, oldest first.
    RetryDead {
        which: DeadLetterSelector,
        up_to: i64,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    DropDead {
        which: DeadLetterSelector,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    PutLink {
        namespace: String,
        local_id: String,
        remote_id: String,
        reply: Reply,
    },
}

/// Counters for the group commit, readable while the writer runs.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub commands: AtomicU64,
}

/// A command's reply, held until the group's transaction has committed.
enum Pending {
    Unit(Reply, Result<(), String>),
    Count(
        oneshot::Sender<Result<u64, SpoolError>>,
        Result<u64, String>,
    ),
}

impl Pending {
    /// Sends the command's own result, or `commit_error` when the group's
    /// commit failed (then nothing of the group is on disk).
    fn answer(self, commit_error: Option<&str>) {
        let fail = |own: String| SpoolError::Commit(commit_error.map_or(own, str::to_owned));
        match self {
            Pending::Unit(reply, result) => {
                let result = match (commit_error, result) {
                    (None, Ok(())) => Ok(()),
                    (_, Err(own)) => Err(fail(own)),
                    (Some(_), Ok(())) => Err(fail(String::new())),
                };
                let _ = reply.send(result);
            }
            Pending::Count(reply, result) => {
                let result = match (commit_error, result) {
                    (None, Ok(n)) => Ok(n),
                    (_, Err(own)) => Err(fail(own)),
                    (Some(_), Ok(_)) => Err(fail(String::new())),
                };
                let _ = reply.send(result);
            }
        }
    }
}

pub(crate) fn run(
    mut conn: Connection,
    commands: mpsc::Receiver<Command>,
    max_group: usize,
    sync: SyncMode,
    stats: Arc<WriterStats>,
    wake: impl Fn(&BTreeSet<String>),
) {
    let mut current = sync;
    // Since when outcomes have been committed without an fsync.
    let mut unsynced_since: Option<std::time::Instant> = None;
    loop {
        // Blocks for the first command of a group; returns when every
        // sender is gone. Invariant 7's window is bounded by IDLE_SYNC:
        // an idle writer then makes one small synced commit, and a busy
        // one syncs its next group.
        let first = if let Some(since) = unsynced_since {
            match commands.recv_timeout(IDLE_SYNC.saturating_sub(since.elapsed())) {
                Ok(command) => command,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // On failure (a full disk), try again a period later
                    // rather than spin; the next synced group covers them too.
                    unsynced_since = match schema::set_sync(&conn, sync) {
                        Ok(()) => {
                            current = sync;
                            mark_synced(&conn).err().map(|_| std::time::Instant::now())
                        }
                        Err(_) => Some(std::time::Instant::now()),
                    };
                    continue;
                }
                // Closing: what was committed without an fsync is synced
                // now, not left to a checkpoint that may never come.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if schema::set_sync(&conn, sync).is_ok() {
                        let _ = mark_synced(&conn);
                    }
                    return;
                }
            }
        } else {
            match commands.recv() {
                Ok(command) => command,
                Err(_) => return,
            }
        };
        let mut group = vec![first];
        while group.len() < max_group {
            match commands.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        stats
            .commands
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        // Invariant 7: a group of delivery outcomes only is not fsync'd.
        let overdue = unsynced_since.is_some_and(|since| since.elapsed() >= IDLE_SYNC);
        let wanted = if !overdue && group.iter().all(|c| matches!(c, Command::Complete { .. })) {
            SyncMode::Normal
        } else {
            sync
        };
        if wanted != current {
            match schema::set_sync(&conn, wanted) {
                Ok(()) => current = wanted,
                // Staying relaxed would commit appends without an fsync, and
                // sources would acknowledge what is not durable: refuse them.
                Err(error) if wanted == sync => {
                    let message =
                        format!("cannot restore synchronous mode: {}", error_chain(&error));
                    for command in group {
                        pending(command, Ok(0)).answer(Some(&message));
                    }
                    continue;
                }
                // Staying strict only costs an fsync.
                Err(_) => {}
            }
        }
        let mut woken = BTreeSet::new();
        let (pending, committed) = apply_group(&mut conn, group, &mut woken);
        match committed {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                // A synced commit syncs the whole WAL before it.
                if current == SyncMode::Normal && sync == SyncMode::Full {
                    unsynced_since.get_or_insert_with(std::time::Instant::now);
                } else {
                    unsynced_since = None;
                }
                wake(&woken);
                for p in pending {
                    p.answer(None);
                }
            }
            Err(error) => {
                // The transaction rolled back: nobody in the group was
                // committed, so everybody hears the failure.
                let message = error_chain(&error);
                for p in pending {
                    p.answer(Some(&message));
                }
            }
        }
    }
}

/// How long outcomes may stay committed without an fsync (invariant 7):
/// about the most a power loss can undo.
pub(crate) const IDLE_SYNC: std::time::Duration = std::time::Duration::from_secs(1);

/// One synced commit (the time of it, in `meta`; the caller has set the
/// synchronous mode): the WAL is written in order, so it makes every
/// earlier commit durable too.
fn mark_synced(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('outcomes_synced_at', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [now_ms().to_string()],
    )?;
    Ok(())
}

fn error_chain(error: &rusqlite::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The work of one command, on whatever transaction or savepoint holds it.
fn apply_one(
    c: &Connection,
    command: &Command,
    now: i64,
    woken: &mut BTreeSet<String>,
) -> rusqlite::Result<u64> {
    match command {
        Command::Append { batch, .. } => append(c, batch, now, woken).map(|()| 0),
        Command::Complete { outcomes, .. } => complete(c, outcomes, now, woken).map(|()| 0),
        Command::RetryDead { which, up_to, .. } => retry_dead(c, which, *up_to, now, woken),
        Command::DropDead { which, .. } => {
            let (clause, arg) = selector(which);
            Ok(c.execute(&format!("DELETE FROM dead_letters WHERE {clause}"), [arg])? as u64)
        }
        Command::PutLink {
            namespace,
            local_id,
            remote_id,
            ..
        } => {
            c.prepare_cached(
                "INSERT INTO links(namespace, local_id, remote_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(namespace, local_id) DO UPDATE
                 SET remote_id = excluded.remote_id, updated_at = excluded.updated_at",
            )?
            .execute(params![namespace, local_id, remote_id, now])?;
            Ok(0)
        }
    }
}

fn pending(command: Command, result: Result<u64, String>) -> Pending {
    match command {
        Command::Append { reply, .. }
        | Command::Complete { reply, .. }
        | Command::PutLink { reply, .. } => Pending::Unit(reply, result.map(drop)),
        Command::RetryDead { reply, .. } | Command::DropDead { reply, .. } => {
            Pending::Count(reply, result)
        }
    }
}

/// A write transaction, the write lock taken at once. A deferred one would
/// start reading (a command's first statement may be a SELECT) and then
/// fail at its first write, without waiting, while another process (the
/// `deskbus dlq` CLI) holds the lock: SQLite only waits for a lock
/// (`busy_timeout`) when a transaction begins.
fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Applies a group in one transaction. The fast path runs every command
/// straight in it. If one fails (say, a payload over SQLite's size limit),
/// the transaction is rolled back and the group is run again with a
/// savepoint per command, so the failing command is answered alone and the
/// rest still commits; unless that failure rolled back the whole
/// transaction (SQLite may, on a full disk or an I/O error), and then the
/// whole group is answered with it. Savepoints cost a few statements per command, which
/// matters at tens of thousands of commands a second, hence the fast path.
///
/// A transaction that cannot begin (another process kept the lock past
/// `busy_timeout`) fails the whole group: nothing was written.
fn apply_group(
    conn: &mut Connection,
    group: Vec<Command>,
    woken: &mut BTreeSet<String>,
) -> (Vec<Pending>, rusqlite::Result<()>) {
    let now = now_ms();
    let not_begun = |group: Vec<Command>, error| {
        let answers = group.into_iter().map(|c| pending(c, Ok(0))).collect();
        (answers, Err(error))
    };
    let tx = match begin(conn) {
        Ok(tx) => tx,
        Err(error) => return not_begun(group, error),
    };
    let mut own_woken = BTreeSet::new();
    let counts: rusqlite::Result<Vec<u64>> = group
        .iter()
        .map(|command| apply_one(&tx, command, now, &mut own_woken))
        .collect();
    if let Ok(counts) = counts {
        let committed = tx.commit();
        woken.extend(own_woken);
        let answers = group
            .into_iter()
            .zip(counts)
            .map(|(command, n)| pending(command, Ok(n)))
            .collect();
        return (answers, committed);
    }
    drop(tx); // rolled back
    let mut tx = match begin(conn) {
        Ok(tx) => tx,
        Err(error) => return not_begun(group, error),
    };
    let mut answers = Vec::with_capacity(group.len());
    let mut group = group.into_iter();
    while let Some(command) = group.next() {
        let mut own_woken = BTreeSet::new();
        let result = tx.savepoint().and_then(|sp| {
            let n = apply_one(&sp, &command, now, &mut own_woken)?;
            sp.commit()?;
            Ok(n)
        });
        if let Err(error) = &result
            && tx.is_autocommit()
        {
            // SQLite rolled the whole transaction back (it may, on a full
            // disk or an I/O error): what the savepoints before released is
            // gone too, and a next savepoint would start a transaction of
            // its own. Nobody in the group is committed.
            // The caller answers everyone with the error returned here.
            let error = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some(format!(
                    "the transaction was rolled back: {}",
                    error_chain(error)
                )),
            );
            answers.extend(
                std::iter::once(command)
                    .chain(group)
                    .map(|c| pending(c, Ok(0))),
            );
            return (answers, Err(error));
        }
        if result.is_ok() {
            woken.extend(own_woken);
        }
        answers.push(pending(command, result.map_err(|e| error_chain(&e))));
    }
    let committed = tx.commit();
    (answers, committed)
}

fn append(
    tx: &Connection,
    batch: &AppendBatch,
    now: i64,
    woken: &mut BTreeSet<String>,
) -> rusqlite::Result<()> {
    let mut seqs = SeqAllocator::default();
    let mut insert = tx.prepare_cached(INSERT_ENTRY)?;
    for e in &batch.entries {
        let seq = seqs.next(tx, &e.stream)?;
        insert_entry(&mut insert, seq, e, now)?;
        if !woken.contains(&e.stream) {
            woken.insert(e.stream.clone());
        }
    }
    seqs.store(tx)?;
    for dead in &batch.dead_letters {
        insert_dead(tx, &dead.entry, now, now, 0, &dead.reason)?;
    }
    if let Some((source, value)) = &batch.cursor {
        tx.prepare_cached(
            "INSERT INTO cursors(source, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )?
        .execute(params![source, value, now])?;
    }
    Ok(())
}

/// Queues an entry, unless its `(use_case, event_id)` is pending already
/// (invariant 5): then the pending copy stays, and its `seq` goes unused.
/// A new entry is due at once (`next_attempt_at` 0), not at its enqueue
/// time: a wall clock stepped back must not hold it (and its key) back.
const INSERT_ENTRY: &str = "INSERT OR IGNORE INTO entries
    (seq, key_hash, use_case, queue, order_key, event_id, payload, enqueued_at, next_attempt_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)";

/// Queues `e` as `seq` with [`INSERT_ENTRY`], prepared once per command:
/// looking a statement up in the cache hashes its text, about 1% of the
/// spool bench's CPU when done per entry.
fn insert_entry(
    insert: &mut rusqlite::CachedStatement<'_>,
    seq: i64,
    e: &NewEntry,
    now: i64,
) -> rusqlite::Result<()> {
    insert.execute(params![
        seq,
        schema::key_hash(&e.order_key),
        e.use_case,
        e.queue,
        e.order_key,
        e.event_id,
        e.payload,
        now
    ])?;
    Ok(())
}

/// Hands out `seq`s within one command's transaction: each stream's next
/// one is read once, counted up in memory, and stored back by
/// [`SeqAllocator::store`] in the same transaction, so a rollback takes
/// the numbers back with the entries.
#[derive(Default)]
struct SeqAllocator {
    /// Stream name → (stream id, next seq).
    streams: HashMap<String, (i64, i64)>,
}

impl SeqAllocator {
    fn next(&mut self, tx: &Connection, stream: &str) -> rusqlite::Result<i64> {
        let (id, next) = match self.streams.get_mut(stream) {
            Some(known) => known,
            None => {
                let known = stream_seq(tx, stream)?;
                self.streams.entry(stream.to_owned()).or_insert(known)
            }
        };
        let seq = *next;
        if seq >= schema::seq_range(*id).1 {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "stream {stream} has used up its sequence numbers"
            )));
        }
        *next += 1;
        Ok(seq)
    }

    fn store(self, tx: &Connection) -> rusqlite::Result<()> {
        let mut update = tx.prepare_cached("UPDATE streams SET next_seq = ?2 WHERE id = ?1")?;
        for (id, next) in self.streams.into_values() {
            update.execute([id, next])?;
        }
        Ok(())
    }
}

/// `stream`'s id and next `seq`, giving it an id if it is new. Ids are
/// never freed, so a stream's `seq`s are never reused.
fn stream_seq(tx: &Connection, stream: &str) -> rusqlite::Result<(i64, i64)> {
    if let Some(known) = tx
        .prepare_cached("SELECT id, next_seq FROM streams WHERE name = ?1")?
        .query_row([stream], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
    {
        return Ok(known);
    }
    let id: i64 = tx
        .prepare_cached("INSERT INTO streams (name, next_seq) VALUES (?1, 0) RETURNING id")?
        .query_row([stream], |r| r.get(0))?;
    if id >= (1 << (63 - schema::STREAM_SHIFT)) - 1 {
        return Err(rusqlite::Error::InvalidParameterName(
            "the spool has run out of stream ids".into(),
        ));
    }
    Ok((id, schema::seq_range(id).0 + 1))
}

fn insert_dead(
    tx: &Connection,
    e: &NewEntry,
    enqueued_at: i64,
    now: i64,
    attempts: u32,
    reason: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO dead_letters
            (stream, use_case, queue, order_key, event_id, payload, enqueued_at, failed_at, attempts, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.stream, e.use_case, e.queue, e.order_key, e.event_id, e.payload, enqueued_at, now, attempts, reason
    ])?;
    Ok(())
}

fn complete(
    tx: &Connection,
    outcomes: &[(i64, Outcome)],
    now: i64,
    woken: &mut BTreeSet<String>,
) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM entries WHERE seq = ?1")?;
    for (seq, outcome) in outcomes {
        match outcome {
            Outcome::Delivered => {
                delete.execute([seq])?;
            }
            Outcome::Retry {
                error,
                next_attempt_at,
            } => {
                tx.prepare_cached(
                    "UPDATE entries SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                     WHERE seq = ?1",
                )?
                .execute(params![seq, next_attempt_at, error])?;
            }
            Outcome::Dead { reason, attempts } => {
                let moved: Option<String> = tx
                    .prepare_cached(
                        "INSERT INTO dead_letters
                            (stream, use_case, queue, order_key, event_id, payload, enqueued_at, failed_at, attempts, reason)
                         SELECT s.name, e.use_case, e.queue, e.order_key, e.event_id, e.payload, e.enqueued_at, ?2, ?3, ?4
                         FROM entries AS e JOIN streams AS s ON s.id = e.seq >> ?5
                         WHERE e.seq = ?1
                         RETURNING stream",
                    )?
                    .query_row(
                        params![seq, now, attempts, reason, schema::STREAM_SHIFT],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(stream) = moved {
                    delete.execute([seq])?;
                    // The entries queued behind it on its key are free now.
                    woken.insert(stream);
                }
            }
        }
    }
    Ok(())
}

fn selector(which: &DeadLetterSelector) -> (&'static str, rusqlite::types::Value) {
    use rusqlite::types::Value;
    match which {
        DeadLetterSelector::One(id) => ("id = ?1", Value::Integer(*id)),
        DeadLetterSelector::Stream(stream) => ("stream = ?1", Value::Text(stream.clone())),
        DeadLetterSelector::All => ("?1 IS NULL", Value::Null),
    }
}

/// Dead letters moved back per transaction: a large `dlq retry` must not
/// hold the write lock for longer than a running deskbus waits for it
/// (`busy_timeout`), which would refuse its appends meanwhile.
pub(crate) const RETRY_CHUNK: usize = 1000;

/// Moves the oldest [`RETRY_CHUNK`] of the dead letters `which` selects
/// with ids up to `up_to` back to the spool (each moved one is deleted, so
/// the next call moves the next ones); how many.
fn retry_dead(
    tx: &Connection,
    which: &DeadLetterSelector,
    up_to: i64,
    now: i64,
    woken: &mut BTreeSet<String>,
) -> rusqlite::Result<u64> {
    let (clause, arg) = selector(which);
    // A source's dead letter (no stream) is raw input that never became an
    // event: there is nothing to replay it into, so it stays until dropped.
    let clause = format!("({clause}) AND stream <> '' AND id <= ?2");
    let mut last = 0;
    // A retried dead letter joins the back of its key's queue; if the same
    // event is still pending (it was re-sent meanwhile), the pending copy wins.
    let mut seqs = SeqAllocator::default();
    {
        let mut insert = tx.prepare_cached(INSERT_ENTRY)?;
        let mut read = tx.prepare(&format!(
            "SELECT stream, use_case, queue, order_key, event_id, payload, id
             FROM dead_letters WHERE {clause} ORDER BY id LIMIT {RETRY_CHUNK}"
        ))?;
        let mut rows = read.query(params![arg, up_to])?;
        while let Some(row) = rows.next()? {
            let entry = NewEntry {
                stream: row.get(0)?,
                use_case: row.get(1)?,
                queue: row.get(2)?,
                order_key: row.get(3)?,
                event_id: row.get(4)?,
                payload: row.get(5)?,
            };
            last = row.get(6)?;
            let seq = seqs.next(tx, &entry.stream)?;
            insert_entry(&mut insert, seq, &entry, now)?;
            woken.insert(entry.stream);
        }
    }
    seqs.store(tx)?;
    let moved = tx.execute(
        &format!("DELETE FROM dead_letters WHERE {clause}"),
        params![arg, last],
    )?;
    Ok(moved as u64)
}

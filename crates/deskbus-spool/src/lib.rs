//! The deskbus spool: durable queues, source cursors and dead letters in one
//! SQLite file.
//!
//! Every event deskbus accepts is written here before anyone upstream is told
//! it was accepted, and leaves only after its stream confirmed delivery (or it
//! was moved to the dead-letter store). The spool is opaque to payloads: it
//! stores bytes and an event id, and knows nothing of sources, streams or formats.
//!
//! # On-disk layout
//!
//! One SQLite database in WAL mode (`spool.db` in the data directory),
//! schema version 2 (`schema.rs` says why this shape; a version 1 file is
//! migrated in place when opened, a newer one refused):
//!
//! | table | row | written by |
//! |---|---|---|
//! | `meta` | `key → value` (schema version, origin uuid, `outcomes_synced_at`) | open, [`Spool::set_meta`], the writer (invariant 7) |
//! | `streams` | `name → id` and the stream's `next_seq` | append, dlq retry |
//! | `entries` | one pending delivery: `seq` (its stream's id in the top bits: a stream's queue is one range of rowids), `key_hash`, `use_case`, `queue`, `order_key`, `event_id`, `payload`, `enqueued_at`, `attempts`, `next_attempt_at`, `last_error` | append, complete |
//! | `dead_letters` | an entry that will not be retried on its own: the entry's columns plus `failed_at` and `reason` | complete, append (rejected at routing), dlq commands |
//! | `cursors` | `source → value` (the position a source has durably consumed up to) | append |
//! | `links` | `(namespace, local_id) → remote_id` (what a remote system called an entry it took, e.g. a ticket number) | [`Spool::put_link`] |
//!
//! # Invariants
//!
//! 1. **Durable before acknowledged.** [`Spool::append`] resolves only after the
//!    transaction holding the entries (and the source cursor, if any) committed
//!    with the configured [`SyncMode`]. A source may acknowledge upstream only then.
//! 2. **Cursor and events commit together.** A batch's entries, its dead letters
//!    and its cursor update are one transaction: after a crash either all are
//!    there or none is.
//! 3. **Removed only on confirmation.** An entry is deleted only by a
//!    [`Outcome::Delivered`] or moved by [`Outcome::Dead`]; nothing expires silently.
//! 4. **Per-key order.** Entries of one `(stream, order_key)` are handed out one
//!    at a time, lowest `seq` first: [`Spool::fetch_ready`] only returns the head
//!    of each key, and a head waiting for a retry blocks the ones behind it.
//!    Different keys flow in parallel. Keys are compared by a 64-bit hash:
//!    two keys that collide are ordered together, never out of order.
//! 5. **Stable identity.** `seq` is never reused (`streams.next_seq` only
//!    grows, and stream ids are never freed) and
//!    `event_id` never changes, across retries, restarts and DLQ round trips.
//!    `(use_case, event_id)` is unique among pending entries, so a producer
//!    that resends an event it got no answer for does not queue it twice.
//! 6. **One writer.** All writes go through one thread, which folds every
//!    command waiting for it into one transaction (group commit). This is what
//!    makes fsync'd commits fast: the cost of a commit is shared by everyone
//!    who queued while the previous one was on disk.
//! 7. **Outcomes are durable lazily.** With [`SyncMode::Full`], a group that
//!    holds only delivery outcomes ([`Spool::complete`]) commits without an
//!    fsync (`synchronous=NORMAL`). The WAL is written in order, so the next
//!    fsync'd commit (any append) makes those outcomes durable with it, and a
//!    process crash loses nothing. A power loss may undo the latest outcomes:
//!    those entries are then delivered again (at least once), never lost;
//!    an entry delivered again this way may reach its stream after later
//!    entries of its key had (per-key order holds up to a power loss).
//!    Such outcomes are synced within about a second: the next group after
//!    that is synced whatever it holds, an idle writer commits one small
//!    synced write (`meta.outcomes_synced_at`), and so does a closing one.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use deskbus_spool::{Spool, SpoolOptions, NewEntry, AppendBatch, Outcome};
//! let dir = tempfile::tempdir().unwrap();
//! let spool = Spool::open(SpoolOptions::new(dir.path().join("spool.db"))).unwrap();
//! spool.append(AppendBatch {
//!     entries: vec![NewEntry::new("out", "tickets", "q", "ticket-7", "id-1", b"{}".to_vec())],
//!     ..AppendBatch::default()
//! }).await.unwrap();
//! let ready = spool.fetch_ready("out", deskbus_spool::now_ms(), 10, &Default::default()).unwrap();
//! assert_eq!(ready.len(), 1);
//! spool.complete(vec![(ready[0].seq, Outcome::Delivered)]).await.unwrap();
//! assert_eq!(spool.stats().unwrap().streams.len(), 0);
//! # });
//! ```

mod schema;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, oneshot};

pub use writer::WriterStats;
use writer::{Command, Reply};

/// How hard a commit pushes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync on every commit (`synchronous=FULL`): survives power loss.
    Full,
    /// WAL `synchronous=NORMAL`: survives a process crash (kill -9), but the
    /// last commits may be lost if the machine loses power.
    Normal,
}

#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub path: PathBuf,
    pub sync: SyncMode,
    /// Most commands folded into one transaction.
    pub max_group: usize,
}

impl SpoolOptions {
    pub fn new(path: impl Into<PathBuf>) -> SpoolOptions {
        SpoolOptions {
            path: path.into(),
            sync: SyncMode::Full,
            max_group: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot open spool {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("spool database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("spool commit failed: {0}")]
    Commit(String),
    #[error("spool writer has stopped")]
    Closed,
    #[error("no dead letter with id {0}")]
    NoSuchDeadLetter(i64),
    #[error(
        "dead letter {0} is input a source could not read, not an event; fix the producer and drop it"
    )]
    NotReplayable(i64),
}

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub stream: String,
    pub use_case: String,
    /// The destination inside the stream (tube, routing key, subject, file name).
    pub queue: String,
    /// Entries with the same key are delivered in order, one at a time.
    pub order_key: String,
    pub event_id: String,
    pub payload: Vec<u8>,
}

impl NewEntry {
    pub fn new(
        stream: &str,
        use_case: &str,
        queue: &str,
        order_key: &str,
        event_id: &str,
        payload: Vec<u8>,
    ) -> NewEntry {
        NewEntry {
            stream: stream.to_owned(),
            use_case: use_case.to_owned(),
            queue: queue.to_owned(),
            order_key: order_key.to_owned(),
            event_id: event_id.to_owned(),
            payload,
        }
    }
}

/// An event refused before it could be queued (e.g. a queue template named a
/// missing field): it goes straight to the dead-letter store.
///
/// A source's dead letter (malformed input that never became an event) has
/// an empty `stream` and `queue`, the source id as `use_case` and the raw
/// input as `payload`. It can be listed and dropped, never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub entry: NewEntry,
    pub reason: String,
}

/// What one transaction appends.
#[derive(Debug, Clone, Default)]
pub struct AppendBatch {
    pub entries: Vec<NewEntry>,
    pub dead_letters: Vec<NewDeadLetter>,
    /// `(source id, position)`: committed with the entries, or not at all.
    pub cursor: Option<(String, String)>,
}

/// A pending delivery, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub stream: String,
    pub use_case: String,
    pub queue: String,
    pub order_key: String,
    pub event_id: String,
    pub payload: Vec<u8>,
    /// Unix milliseconds.
    pub enqueued_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at `next_attempt_at` (unix ms).
    Retry {
        error: String,
        next_attempt_at: i64,
    },
    /// Give up: move to the dead-letter store. `attempts` counts this one.
    Dead {
        reason: String,
        attempts: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub stream: String,
    pub use_case: String,
    pub queue: String,
    pub order_key: String,
    pub event_id: String,
    pub payload: Vec<u8>,
    pub enqueued_at: i64,
    pub failed_at: i64,
    pub attempts: u32,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub depth: u64,
    /// Entries waiting for a retry.
    pub retrying: u64,
    pub oldest_enqueued_at: Option<i64>,
    pub dead_letters: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub streams: BTreeMap<String, StreamStats>,
    pub cursors: BTreeMap<String, String>,
}

/// Which dead letters a DLQ command applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSelector {
    One(i64),
    Stream(String),
    All,
}

/// A handle to the spool. Cheap to clone; the writer thread stops when the
/// last handle is dropped or [`Spool::close`] is called.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
    wakers: Wakers,
    stats: Arc<WriterStats>,
}

type Wakers = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

fn waker_for(wakers: &Wakers, stream: &str) -> Arc<Notify> {
    lock(wakers).entry(stream.to_owned()).or_default().clone()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Spool {
    pub fn open(options: SpoolOptions) -> Result<Spool, SpoolError> {
        let open_err = |source| SpoolError::Open {
            path: options.path.clone(),
            source,
        };
        let writer_conn = schema::open(&options.path, options.sync).map_err(open_err)?;
        let reader = schema::open(&options.path, options.sync).map_err(open_err)?;
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let wakers = Wakers::default();
        let inner = Arc::new(Inner {
            path: options.path.clone(),
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            reader: Mutex::new(reader),
            wakers: wakers.clone(),
            stats: stats.clone(),
        });
        // The writer holds only the wakers, never `Inner`, so the last handle
        // is always dropped (and the writer joined) outside the writer thread.
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                writer::run(
                    writer_conn,
                    rx,
                    options.max_group,
                    options.sync,
                    stats,
                    move |streams| {
                        for stream in streams {
                            waker_for(&wakers, stream).notify_one();
                        }
                    },
                )
            })
            .map_err(|e| SpoolError::Commit(format!("cannot start writer thread: {e}")))?;
        *lock(&inner.writer) = Some(handle);
        Ok(Spool { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Group-commit counters, for metrics and benchmarks.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Commits `batch` durably; see invariants 1 and 2.
    pub async fn append(&self, batch: AppendBatch) -> Result<(), SpoolError> {
        self.call(|reply| Command::Append { batch, reply }).await
    }

    /// Records the outcome of delivery attempts.
    pub async fn complete(&self, outcomes: Vec<(i64, Outcome)>) -> Result<(), SpoolError> {
        self.call(|reply| Command::Complete { outcomes, reply })
            .await
    }

    /// [`Spool::complete`] for each outcome alone, sent together: the writer
    /// folds them into as few transactions as it can and, when one of them
    /// fails, commits the others around it. For a caller whose combined
    /// command failed, to find out which outcome the spool cannot take. One
    /// result per outcome, in order.
    pub async fn complete_each(
        &self,
        outcomes: Vec<(i64, Outcome)>,
    ) -> Vec<Result<(), SpoolError>> {
        let replies: Vec<_> = outcomes
            .into_iter()
            .map(|outcome| {
                let (tx, rx) = oneshot::channel();
                self.send(Command::Complete {
                    outcomes: vec![outcome],
                    reply: tx,
                })
                .map(|()| rx)
            })
            .collect();
        let mut results = Vec::with_capacity(replies.len());
        for reply in replies {
            results.push(match reply {
                Ok(rx) => rx.await.unwrap_or(Err(SpoolError::Closed)),
                Err(error) => Err(error),
            });
        }
        results
    }

    /// Moves dead letters back into their streams' queues, with their attempt
    /// count reset and their event id kept. Returns how many moved.
    pub async fn retry_dead_letters(&self, which: DeadLetterSelector) -> Result<u64, SpoolError> {
        if let DeadLetterSelector::One(id) = which {
            let stream: Option<String> = lock(&self.inner.reader)
                .query_row(
                    "SELECT stream FROM dead_letters WHERE id = ?1",
                    [id],
                    |row| row.get(0),
                )
                .optional()?;
            if stream.as_deref() == Some("") {
                return Err(SpoolError::NotReplayable(id));
            }
        }
        // In chunks (see `RETRY_CHUNK`), up to the newest dead letter now:
        // what dies again meanwhile waits for the next retry.
        let up_to: i64 = lock(&self.inner.reader).query_row(
            "SELECT COALESCE(MAX(id), 0) FROM dead_letters",
            [],
            |row| row.get(0),
        )?;
        let one = single(&which);
        let mut moved = 0;
        loop {
            let (tx, rx) = oneshot::channel();
            self.send(Command::RetryDead {
                which: which.clone(),
                up_to,
                reply: tx,
            })?;
            let chunk = rx.await.map_err(|_| SpoolError::Closed)??;
            moved += chunk;
            if chunk < writer::RETRY_CHUNK as u64 {
                return found(one, moved);
            }
        }
    }

    /// Deletes dead letters. Returns how many were dropped.
    pub async fn drop_dead_letters(&self, which: DeadLetterSelector) -> Result<u64, SpoolError> {
        let (tx, rx) = oneshot::channel();
        let one = single(&which);
        self.send(Command::DropDead { which, reply: tx })?;
        found(one, rx.await.map_err(|_| SpoolError::Closed)??)
    }

    async fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), SpoolError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| SpoolError::Closed)?
    }

    fn send(&self, command: Command) -> Result<(), SpoolError> {
        lock(&self.inner.commands)
            .as_ref()
            .ok_or(SpoolError::Closed)?
            .send(command)
            .map_err(|_| SpoolError::Closed)
    }

    /// A waker notified after each commit that added entries to `stream`
    /// (appends and retries moved back from the DLQ).
    pub fn waker(&self, stream: &str) -> Arc<Notify> {
        waker_for(&self.inner.wakers, stream)
    }

    /// The heads of up to `limit` order keys of `stream` that are due at
    /// `now`, lowest `seq` first, skipping the sequences in `in_flight` (and,
    /// by invariant 4, everything queued behind them). Blocking: a short read.
    pub fn fetch_ready(
        &self,
        stream: &str,
        now: i64,
        limit: usize,
        in_flight: &HashSet<i64>,
    ) -> Result<Vec<Entry>, SpoolError> {
        self.fetch_ready_within(stream, now, limit, usize::MAX, 0, in_flight)
    }

    /// [`Spool::fetch_ready`], stopping once the payloads returned reach
    /// `max_bytes` (at least one entry is returned when one is ready), so
    /// that a reader ahead of its stream holds bounded memory, and looking
    /// only at sequences above `after_seq`.
    ///
    /// `after_seq` is for a reader that has fetched up to there and holds
    /// those entries in flight: it does not scan them again. Heads below it
    /// (a retry come due, an entry whose predecessor was just delivered)
    /// are not seen, so such a reader must also fetch from 0 now and then.
    pub fn fetch_ready_within(
        &self,
        stream: &str,
        now: i64,
        limit: usize,
        max_bytes: usize,
        after_seq: i64,
        in_flight: &HashSet<i64>,
    ) -> Result<Vec<Entry>, SpoolError> {
        let conn = lock(&self.inner.reader);
        let Some((first, end)) = stream_range(&conn, stream)? else {
            return Ok(Vec::new());
        };
        let mut statement = conn.prepare_cached(FETCH_READY)?;
        let want = limit.saturating_add(in_flight.len());
        let mut rows = statement.query(params![
            first,
            now,
            want.min(i64::MAX as usize) as i64,
            after_seq.max(first - 1),
            end
        ])?;
        let mut ready = Vec::with_capacity(limit.min(want).min(1024));
        let mut bytes = 0usize;
        while ready.len() < limit && (ready.is_empty() || bytes < max_bytes) {
            let Some(row) = rows.next()? else { break };
            // SQLite decodes a column when it is read: an entry in flight
            // costs its `seq`, not a copy of its payload.
            let seq: i64 = row.get(0)?;
            if in_flight.contains(&seq) {
                continue;
            }
            let entry = Entry {
                seq,
                stream: stream.to_owned(),
                use_case: row.get(1)?,
                queue: row.get(2)?,
                order_key: row.get(3)?,
                event_id: row.get(4)?,
                payload: row.get(5)?,
                enqueued_at: row.get(6)?,
                attempts: row.get(7)?,
            };
            bytes = bytes.saturating_add(entry.payload.len());
            ready.push(entry);
        }
        Ok(ready)
    }

    /// The earliest `next_attempt_at` among the heads of `stream`'s keys, if
    /// any: when a dispatcher with nothing due should look again. (An entry
    /// behind a head that waits for a retry is not due before its head.)
    pub fn next_due(&self, stream: &str) -> Result<Option<i64>, SpoolError> {
        let conn = lock(&self.inner.reader);
        let Some((first, end)) = stream_range(&conn, stream)? else {
            return Ok(None);
        };
        Ok(conn
            .prepare_cached(
                "SELECT MIN(next_attempt_at) FROM entries AS e
                 WHERE seq >= ?1 AND seq < ?2
                   AND NOT EXISTS (SELECT 1 FROM entries AS p
                                   WHERE p.key_hash = e.key_hash AND p.seq >= ?1 AND p.seq < e.seq)",
            )?
            .query_row([first, end], |row| row.get(0))?)
    }

    pub fn cursor(&self, source: &str) -> Result<Option<String>, SpoolError> {
        let conn = lock(&self.inner.reader);
        Ok(conn
            .query_row(
                "SELECT value FROM cursors WHERE source = ?1",
                [source],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, SpoolError> {
        let conn = lock(&self.inner.reader);
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Sets `key` unless it is set already; returns the value in force.
    pub fn meta_or_insert(&self, key: &str, value: &str) -> Result<String, SpoolError> {
        let conn = lock(&self.inner.reader);
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            [key, value],
        )?;
        Ok(
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })?,
        )
    }

    /// Records that `local_id` is `remote_id` in the system `namespace`
    /// names (e.g. `osticket:helpdesk`, an event id, a ticket number),
    /// replacing an earlier link. Committed (and synced: a link is never
    /// in an outcome-only group) before it returns.
    ///
    /// Written by the writer thread like everything else, so it waits for
    /// no lock and holds none while the group is synced.
    pub async fn put_link(
        &self,
        namespace: &str,
        local_id: &str,
        remote_id: &str,
    ) -> Result<(), SpoolError> {
        self.call(|reply| Command::PutLink {
            namespace: namespace.to_owned(),
            local_id: local_id.to_owned(),
            remote_id: remote_id.to_owned(),
            reply,
        })
        .await
    }

    /// The remote id recorded for `local_id` in `namespace`, if any.
    pub fn link(&self, namespace: &str, local_id: &str) -> Result<Option<String>, SpoolError> {
        let conn = lock(&self.inner.reader);
        Ok(conn
            .query_row(
                "SELECT remote_id FROM links WHERE namespace = ?1 AND local_id = ?2",
                [namespace, local_id],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn stats(&self) -> Result<Stats, SpoolError> {
        let conn = lock(&self.inner.reader);
        let now = now_ms();
        let mut stats = Stats::default();
        let mut statement = conn.prepare_cached(
            "SELECT s.name, COUNT(*), SUM(e.attempts > 0 AND e.next_attempt_at > ?1), MIN(e.enqueued_at)
             FROM entries AS e JOIN streams AS s ON s.id = e.seq >> ?2
             GROUP BY e.seq >> ?2",
        )?;
        let mut rows = statement.query(params![now, schema::STREAM_SHIFT])?;
        while let Some(row) = rows.next()? {
            let s = stats.streams.entry(row.get(0)?).or_default();
            s.depth = row.get::<_, i64>(1)? as u64;
            s.retrying = row.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64;
            s.oldest_enqueued_at = row.get(3)?;
        }
        let mut statement =
            conn.prepare_cached("SELECT stream, COUNT(*) FROM dead_letters GROUP BY stream")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            stats.streams.entry(row.get(0)?).or_default().dead_letters =
                row.get::<_, i64>(1)? as u64;
        }
        let mut statement = conn.prepare_cached("SELECT source, value FROM cursors")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            stats.cursors.insert(row.get(0)?, row.get(1)?);
        }
        Ok(stats)
    }

    /// Dead letters, newest first.
    pub fn dead_letters(
        &self,
        stream: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, SpoolError> {
        let conn = lock(&self.inner.reader);
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
                      WHERE ?1 IS NULL OR stream = ?1 ORDER BY id DESC LIMIT ?2 + 0"
        ))?;
        let rows = statement.query_map(params![stream, limit as i64], dead_letter_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn dead_letter(&self, id: i64) -> Result<DeadLetter, SpoolError> {
        let conn = lock(&self.inner.reader);
        conn.query_row(
            &format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"),
            [id],
            dead_letter_from_row,
        )
        .optional()?
        .ok_or(SpoolError::NoSuchDeadLetter(id))
    }

    /// Stops the writer after it has committed every command already sent.
    pub fn close(&self) {
        lock(&self.inner.commands).take();
        if let Some(handle) = lock(&self.inner.writer).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        lock(&self.commands).take();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

/// The heads of a stream's keys, due at `?2`, above `?4`, in `seq` order.
/// A stream's entries are the rowids in `[?1, ?5)` (see `schema`).
///
/// `LIMIT ?3 + 0`, not `LIMIT ?3`: SQLite's planner uses the value of a
/// bare `LIMIT` parameter, so it compiled the statement again at every
/// fetch (measured: a re-prepare per run, about a fifth of deskbus's
/// CPU at batch 1). An expression is not looked into.
const FETCH_READY: &str = "
    SELECT seq, use_case, queue, order_key, event_id, payload, enqueued_at, attempts
    FROM entries AS e
    WHERE seq > ?4 AND seq < ?5 AND next_attempt_at <= ?2
      AND NOT EXISTS (SELECT 1 FROM entries AS p
                      WHERE p.key_hash = e.key_hash AND p.seq >= ?1 AND p.seq < e.seq)
    ORDER BY seq LIMIT ?3 + 0";

/// The `seq`s of `stream`'s entries: `[first, end)`, or `None` if it never
/// had any.
fn stream_range(conn: &Connection, stream: &str) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached("SELECT id FROM streams WHERE name = ?1")?
        .query_row([stream], |row| row.get(0))
        .optional()
        .map(|id| id.map(schema::seq_range))
}

fn single(which: &DeadLetterSelector) -> Option<i64> {
    match which {
        DeadLetterSelector::One(id) => Some(*id),
        _ => None,
    }
}

/// A command on one named dead letter that touched none names a wrong id.
fn found(one: Option<i64>, count: u64) -> Result<u64, SpoolError> {
    match (one, count) {
        (Some(id), 0) => Err(SpoolError::NoSuchDeadLetter(id)),
        _ => Ok(count),
    }
}

/// The columns [`dead_letter_from_row`] reads, in its order.
const DEAD_LETTER_COLUMNS: &str = "id, stream, use_case, queue, order_key, event_id, payload, enqueued_at, failed_at, attempts, reason";

fn dead_letter_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get(0)?,
        stream: row.get(1)?,
        use_case: row.get(2)?,
        queue: row.get(3)?,
        order_key: row.get(4)?,
        event_id: row.get(5)?,
        payload: row.get(6)?,
        enqueued_at: row.get(7)?,
        failed_at: row.get(8)?,
        attempts: row.get(9)?,
        reason: row.get(10)?,
    })
}

/// A poisoned lock only means another thread panicked while holding it; the
/// SQLite connection inside is still consistent (SQLite rolls back), so carry on.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each fetch runs the statement compiled once (see [`FETCH_READY`]).
    #[test]
    fn fetching_does_not_compile_the_query_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(SpoolOptions::new(dir.path().join("spool.db"))).unwrap();
        let entries = (0..3)
            .map(|i| NewEntry::new("out", "u", "q", &format!("k{i}"), &format!("e{i}"), vec![]))
            .collect();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(spool.append(AppendBatch {
                entries,
                ..AppendBatch::default()
            }))
            .unwrap();
        let none = HashSet::new();
        for (limit, after) in [(1, 0), (2, 0), (3, 1 << 40)] {
            assert!(
                !spool
                    .fetch_ready_within("out", now_ms(), limit, usize::MAX, after, &none)
                    .unwrap()
                    .is_empty()
            );
        }
        let reprepared = lock(&spool.inner.reader)
            .prepare_cached(FETCH_READY)
            .unwrap()
            .get_status(rusqlite::StatementStatus::RePrepare);
        assert_eq!(reprepared, 0);
    }
}

//! `type = "osticket"`: change capture from osTicket's database.
//!
//! Each poll reads the rows above the stored position in the two
//! append-only id streams, `thread_entry` and `thread_event` (see
//! `cursor.rs` for ids that show up out of order), resolves their ticket,
//! user, agent, department and topic, and commits the events together
//! with the new position in one spool transaction: after a crash either
//! both are on disk or neither is, so nothing is lost or emitted twice.
//! A poll that reads a full batch is followed at once by the next; a
//! database error closes the session and connects again with backoff; the
//! position lives in memory across reconnects and in the spool across
//! restarts.
//!
//! Deletes. osTicket deletes a ticket's rows for good, so a delete is seen
//! only by what it leaves. Since 1.11 it logs a `deleted` thread event
//! whose `thread_id` is the gone thread: that is the signal, exact and in
//! order with the rest. The thread no longer leads to the ticket, so the
//! source keeps its own map thread → (ticket id, number), read whole at
//! connect and grown with every ticket it meets; a ticket deleted before
//! deskbus ever knew it (deleted while deskbus was stopped) still gives a
//! `ticket.deleted`, with a null `ticket_id`. Version 1.10 logs nothing,
//! so there (and only there, since a sweep racing the event would announce
//! a delete twice) a periodic sweep checks that the mapped tickets still
//! exist; one missing at two sweeps in a row is deleted. The sweep cannot
//! see deletes made while deskbus was stopped.

mod config;
mod cursor;
mod db;
mod events;
mod progress;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub use config::OsticketSourceConfig;
use deskbus_event::Event;

use self::config::{Start, TimeZoneSetting};
use self::cursor::{Cursor, CursorError, IdCursor};
use self::db::{Db, DbError, EntryRow, EventRow, Lookups};
use self::events::Context;
use self::progress::{Progress, Reporter};
use super::reconnect::{Sessions, run_sessions, sleep_unless_shutdown};
use super::{SourceContext, SourceError};
use crate::internal_events::EventsReceived;
use crate::runtime::{Ready, Shutdown};
use crate::use_cases::{IngestError, Unmatched};

/// How long the small tables (departments, topics, statuses, staff) are
/// trusted before being read again, so renames show up.
const LOOKUPS_TTL: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll (its queries and its commit) may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Ticket threads read per query at connection (an index range scan on
/// the primary key: a few milliseconds each).
const THREAD_PAGE: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("events not committed")]
    Ingest(#[from] IngestError),
    #[error("cannot read the stored position")]
    Spool(#[source] deskbus_spool::SpoolError),
    #[error("the stored position cannot be used")]
    Cursor(#[source] CursorError),
    #[error("the osTicket database did not answer within {0:?}")]
    Timeout(Duration),
}

pub(crate) async fn run(
    config: OsticketSourceConfig,
    ctx: SourceContext,
) -> Result<(), SourceError> {
    Worker::new(config, ctx).run().await
}

/// `deskbus check --connect`: reaches the database and finds osTicket in it.
pub(crate) async fn healthcheck(config: &OsticketSourceConfig) -> Result<String, String> {
    let mut db = Db::connect(config)
        .await
        .map_err(|e| crate::internal_events::error_chain(&e))?;
    let (entry, event) = db
        .max_ids()
        .await
        .map_err(|e| crate::internal_events::error_chain(&e))?;
    let label = db.schema.label();
    db.close().await;
    Ok(format!(
        "osTicket schema {label}, thread_entry up to {entry}, thread_event up to {event}"
    ))
}

/// What one poll read, ready to commit.
struct Read {
    next: Cursor,
    position: String,
    previous: String,
    events: Vec<Event>,
    rows: u64,
    behind: bool,
    deleted_threads: Vec<u64>,
}

struct Backfill {
    progress: Progress,
    started: Instant,
    reporter: Reporter,
}

struct Worker {
    config: OsticketSourceConfig,
    ctx: SourceContext,
    /// The source's monotonic clock, for gap grace.
    clock: Instant,
    /// The committed position; `None` until read from the spool.
    cursor: Option<Cursor>,
    lookups: Lookups,
    lookups_at: Option<Instant>,
    /// thread id → (ticket id, number): what identifies a deleted ticket.
    threads: HashMap<u64, (u64, String)>,
    /// Tickets missing at the last sweep.
    suspected: HashSet<u64>,
    last_sweep: Instant,
    backfill: Option<Backfill>,
    /// The current session got through its setup: the backoff starts over.
    set_up: bool,
}

impl Sessions for Worker {
    type Error = PollError;

    fn source_id(&self) -> &str {
        &self.ctx.id
    }

    /// Connects, then polls until shutdown (`Ok`) or an error.
    async fn session(
        &mut self,
        ready: &mut Option<Ready>,
        shutdown: &mut Shutdown,
    ) -> Result<(), PollError> {
        let connected = tokio::select! {
            db = tokio::time::timeout(CONNECT_TIMEOUT, Db::connect(&self.config)) => db,
            _ = shutdown.wait() => return Ok(()),
        };
        let mut db = match connected {
            Ok(Ok(db)) => db,
            Ok(Err(error)) => return Err(PollError::Db(error)),
            Err(_) => return Err(PollError::Timeout(CONNECT_TIMEOUT)),
        };
        let outcome = tokio::select! {
            outcome = self.poll_session(&mut db, ready) => outcome,
            // A slow query (up to POLL_TIMEOUT) must not hold up shutdown.
            // Dropping the session mid-commit is safe: events and position
            // commit in one transaction, whichever way it ends, and nothing
            // reads after it.
            _ = shutdown.wait() => Ok(()),
        };
        if shutdown.is_triggered() {
            self.end_backfill();
        }
        db.close().await;
        outcome
    }

    fn made_progress(&mut self) -> bool {
        std::mem::take(&mut self.set_up)
    }

    fn fatal(&self, error: PollError) -> Result<PollError, SourceError> {
        match error {
            // Guessing a position would lose or repeat events: stop.
            PollError::Cursor(source) => Err(SourceError::Position {
                source_id: self.ctx.id.clone(),
                source: Box::new(source),
            }),
            other => Ok(other),
        }
    }
}

impl Worker {
    fn new(config: OsticketSourceConfig, ctx: SourceContext) -> Worker {
        Worker {
            config,
            ctx,
            clock: Instant::now(),
            cursor: None,
            lookups: Lookups::default(),
            lookups_at: None,
            threads: HashMap::new(),
            suspected: HashSet::new(),
            last_sweep: Instant::now(),
            backfill: None,
            set_up: false,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    async fn run(mut self) -> Result<(), SourceError> {
        let (ready, shutdown) = (self.ctx.ready.clone(), self.ctx.shutdown.clone());
        run_sessions(&mut self, ready, shutdown).await
    }

    /// One database session: set up, then poll until shutdown (`Ok`) or an
    /// error (the caller connects again).
    async fn poll_session(
        &mut self,
        db: &mut Db,
        ready: &mut Option<Ready>,
    ) -> Result<(), PollError> {
        // A database that stops answering (a network partition) must not
        // hang the source: every read is bounded, then the session is given
        // up and a new one opened.
        let (session_zone, system_zone, offset) = bounded(db.zone_info()).await?;
        let zone = match &self.config.timezone {
            TimeZoneSetting::Server => "server".to_owned(),
            TimeZoneSetting::Fixed { name, .. } => name.clone(),
        };
        tracing::info!(
            source = %self.ctx.id,
            schema = db.schema.label(),
            timezone = %zone,
            session_time_zone = %session_zone,
            system_time_zone = %system_zone,
            utc_offset_seconds = offset,
            "connected to the osTicket database"
        );
        bounded(self.refresh_lookups(db)).await?;
        self.load_thread_map(db).await?;
        self.suspected.clear();
        if self.cursor.is_none() {
            let cursor = self.initial_cursor(db).await?;
            self.cursor = Some(cursor);
        }
        if let Some(ready) = ready.take() {
            ready.mark_ready();
        }
        self.set_up = true;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            if shutdown.is_triggered() {
                self.end_backfill();
                return Ok(());
            }
            let behind = self.poll(db).await?;
            if self.sweeps() && self.last_sweep.elapsed() >= self.config.delete_sweep {
                self.sweep(db).await?;
            }
            if !behind && !sleep_unless_shutdown(self.config.poll_interval, &mut shutdown).await {
                self.end_backfill();
                return Ok(());
            }
        }
    }

    /// Every ticket thread, read in pages of [`THREAD_PAGE`] so that each
    /// read stays well inside [`POLL_TIMEOUT`] on an install with millions
    /// of tickets.
    async fn load_thread_map(&mut self, db: &mut Db) -> Result<(), PollError> {
        self.threads.clear();
        let mut after = 0;
        loop {
            let page = bounded(db.thread_page(after, THREAD_PAGE)).await?;
            let Some(&(last, _, _)) = page.last() else {
                return Ok(());
            };
            let full = page.len() == THREAD_PAGE as usize;
            for (thread, ticket, number) in page {
                self.threads.insert(thread, (ticket, number));
            }
            if !full {
                return Ok(());
            }
            after = last;
        }
    }

    /// The stored position, or the configured start (committed at once, so
    /// a restart before the first event begins at the same place).
    async fn initial_cursor(&mut self, db: &mut Db) -> Result<Cursor, PollError> {
        // One small read on the spool's reader connection.
        let stored = self
            .ctx
            .ingest
            .spool()
            .cursor(&self.ctx.id)
            .map_err(PollError::Spool)?;
        if let Some(text) = stored {
            let cursor = Cursor::decode(&text, self.now_ms()).map_err(PollError::Cursor)?;
            tracing::info!(source = %self.ctx.id, position = %text, "resuming from the stored position");
            // A database restored from a backup older than the position:
            // nothing is read until its ids pass the stored ones, so say so
            // rather than sit silent. (A failed look is not worth stopping for.)
            if let Ok((entries, events)) = db.max_ids().await
                && (cursor.entries.hi > entries || cursor.events.hi > events)
            {
                tracing::warn!(
                    source = %self.ctx.id,
                    position = %text,
                    database_entries = entries,
                    database_events = events,
                    "the stored position is ahead of osTicket's database (restored from an older backup?): \
                     nothing new is read until its ids pass the stored ones"
                );
            }
            return Ok(cursor);
        }
        let (entries, events) = match self.config.start {
            Start::Now => db.max_ids().await?,
            Start::Beginning => (0, 0),
            Start::At(at) => db.ids_before(at, &self.config.timezone).await?,
        };
        let cursor = Cursor {
            entries: IdCursor::at(entries),
            events: IdCursor::at(events),
        };
        tracing::info!(source = %self.ctx.id, start = ?self.config.start, position = %cursor.encode(), "no stored position; starting");
        self.ctx
            .ingest
            .submit(
                &self.ctx.id,
                &[],
                Some((self.ctx.id.clone(), cursor.encode())),
                Unmatched::Drop,
            )
            .await?;
        Ok(cursor)
    }

    async fn refresh_lookups(&mut self, db: &mut Db) -> Result<(), DbError> {
        self.lookups = db.lookups().await?;
        self.lookups_at = Some(Instant::now());
        Ok(())
    }

    /// Whether deletes need the sweep: only when osTicket logs no `deleted` event.
    fn sweeps(&self) -> bool {
        let logs_deletes = self.lookups.events.values().any(|n| n == "deleted");
        !self.config.delete_sweep.is_zero() && !logs_deletes
    }

    /// Reads, converts and commits one batch; true when a table returned a
    /// full batch (more is waiting).
    ///
    /// Only the reading is bounded in time (a database that stops answering
    /// must not hang the source): a commit, once handed to the spool, is
    /// always awaited, since dropping it could let it land unseen and the
    /// same rows be committed again.
    async fn poll(&mut self, db: &mut Db) -> Result<bool, PollError> {
        let read = bounded(self.read(db)).await?;
        let Some(read) = read else {
            return Ok(false);
        };
        if !read.events.is_empty() || read.position != read.previous {
            if !read.events.is_empty() {
                EventsReceived {
                    source: &self.ctx.id,
                    count: read.events.len(),
                }
                .emit();
            }
            self.ctx
                .ingest
                .submit(
                    &self.ctx.id,
                    &read.events,
                    Some((self.ctx.id.clone(), read.position)),
                    Unmatched::Drop,
                )
                .await?;
        }
        self.cursor = Some(read.next);
        for thread in read.deleted_threads {
            self.threads.remove(&thread);
        }
        bounded(self.track_backfill(db, read.behind, read.rows)).await?;
        Ok(read.behind)
    }

    /// The reading half of a poll: rows, the position after them, and
    /// their events. `None` before the position is known.
    async fn read(&mut self, db: &mut Db) -> Result<Option<Read>, PollError> {
        let batch = self.config.batch_size;
        let grace_ms = self.config.gap_grace.as_millis() as u64;
        let Some(current) = self.cursor.clone() else {
            return Ok(None);
        };
        let mut entries_new = db.entries_after(current.entries.hi, batch).await?;
        let mut events_new = db.events_after(current.events.hi, batch).await?;
        let entries_found = db.entries_in(&current.entries.gap_ranges(), batch).await?;
        let events_found = db.events_in(&current.events.gap_ranges(), batch).await?;
        let entries_full = entries_new.len() == batch as usize;
        let events_full = events_new.len() == batch as usize;
        let zone = &self.config.timezone;
        cut_to_horizon(
            &mut entries_new,
            &mut events_new,
            entries_full,
            events_full,
            |e| e.created.to_utc(zone),
            |e| e.timestamp.to_utc(zone),
        );
        // A row written longer ago than the grace cannot have an in-flight
        // insert below it (osTicket autocommits each insert).
        let db_now = match entries_new.is_empty() && events_new.is_empty() {
            true => None,
            false => db.now_time().await?.unix,
        };
        let settled = |at: Option<jiff::Timestamp>| match (db_now, at) {
            (Some(now), Some(at)) => now.saturating_sub(at.as_second()) * 1000 > grace_ms as i64,
            _ => false,
        };
        let now_ms = self.now_ms();
        let mut next = current.clone();
        let entry_ids: Vec<(u64, bool)> = entries_new
            .iter()
            .map(|e| (e.id, settled(e.created.to_utc(zone))))
            .collect();
        let event_ids: Vec<(u64, bool)> = events_new
            .iter()
            .map(|e| (e.id, settled(e.timestamp.to_utc(zone))))
            .collect();
        let found: Vec<u64> = entries_found.iter().map(|e| e.id).collect();
        let entries_seen = next.entries.observe(&entry_ids, &found, now_ms, grace_ms);
        let found: Vec<u64> = events_found.iter().map(|e| e.id).collect();
        let events_seen = next.events.observe(&event_ids, &found, now_ms, grace_ms);
        // A gap is given up only once its query was complete: rows still
        // to drain from it are not skipped.
        let mut skipped = (entries_seen.skipped, events_seen.skipped);
        if entries_found.len() < batch as usize {
            skipped.0 += next.entries.expire(now_ms, grace_ms);
        }
        if events_found.len() < batch as usize {
            skipped.1 += next.events.expire(now_ms, grace_ms);
        }
        for (table, count) in [("thread_entry", skipped.0), ("thread_event", skipped.1)] {
            if count > 0 {
                tracing::info!(source = %self.ctx.id, table, ids = count, "ids never seen within gap_grace; skipped");
                metrics::counter!("deskbus_source_skipped_ids_total", "source" => self.ctx.id.clone(), "table" => table)
                    .increment(count);
            }
        }
        let emit_entries: HashSet<u64> = entries_seen.emit.iter().copied().collect();
        let emit_events: HashSet<u64> = events_seen.emit.iter().copied().collect();
        let entries: Vec<EntryRow> = entries_new
            .into_iter()
            .chain(entries_found)
            .filter(|e| emit_entries.contains(&e.id))
            .collect();
        let events_rows: Vec<EventRow> = events_new
            .into_iter()
            .chain(events_found)
            .filter(|e| emit_events.contains(&e.id))
            .collect();
        let rows = (entries.len() + events_rows.len()) as u64;
        let events = self.build(db, &entries, &events_rows).await?;
        let deleted_threads = events_rows
            .iter()
            .filter(|row| row.name.as_deref() == Some("deleted"))
            .map(|row| row.thread_id)
            .collect();
        Ok(Some(Read {
            position: next.encode(),
            previous: current.encode(),
            next,
            events,
            rows,
            behind: entries_full || events_full,
            deleted_threads,
        }))
    }

    /// Resolves what the rows refer to and builds their events, in the
    /// order they happened (a ticket's creation before its first reply).
    async fn build(
        &mut self,
        db: &mut Db,
        entries: &[EntryRow],
        events_rows: &[EventRow],
    ) -> Result<Vec<Event>, DbError> {
        if entries.is_empty() && events_rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut threads: Vec<u64> = entries
            .iter()
            .map(|e| e.thread_id)
            .chain(events_rows.iter().map(|e| e.thread_id))
            .filter(|&t| t != 0)
            .collect();
        threads.sort_unstable();
        threads.dedup();
        let tickets = db.tickets(&threads).await?;
        for t in tickets.values() {
            self.threads.insert(
                t.thread_id,
                (t.ticket_id, t.number.clone().unwrap_or_default()),
            );
        }
        let mut authors: Vec<u64> = entries
            .iter()
            .filter(|e| e.kind == "M" && e.user_id != 0)
            .map(|e| e.user_id)
            .collect();
        authors.sort_unstable();
        authors.dedup();
        let users = db.users(&authors).await?;
        let entry_ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
        let attachments = db.attachments(&entry_ids).await?;
        let mut previous_depts = HashMap::new();
        for row in events_rows {
            if row.name.as_deref() == Some("transferred")
                && let Some(dept) = db.previous_dept(row.thread_id, row.id).await?
            {
                previous_depts.insert(row.id, dept);
            }
        }
        if self.lookups_stale(&tickets, events_rows, entries) {
            self.refresh_lookups(db).await?;
        }
        let ctx = Context {
            source: &self.ctx.id,
            origin: &self.ctx.origin_uuid,
            helpdesk_code: self.ctx.helpdesk_code.as_deref(),
            zone: &self.config.timezone,
            lookups: &self.lookups,
            tickets: &tickets,
            users: &users,
            attachments: &attachments,
            previous_depts: &previous_depts,
            threads: &self.threads,
        };
        // (time, created first, entries before events, id)
        let mut keyed: Vec<((i64, u8, u8, u64), Event)> = Vec::new();
        for row in entries {
            if let Some(event) = ctx.for_entry(row) {
                keyed.push(((event.time.as_second(), 1, 0, row.id), event));
            }
        }
        for row in events_rows {
            if let Some(event) = ctx.for_event(row) {
                let rank = u8::from(event.name != "ticket.created");
                keyed.push(((event.time.as_second(), rank, 1, row.id), event));
            }
        }
        keyed.sort_by_key(|(key, _)| *key);
        Ok(keyed.into_iter().map(|(_, e)| e).collect())
    }

    /// True when the small tables are old, or a row names an id they lack.
    fn lookups_stale(
        &self,
        tickets: &HashMap<u64, db::TicketRow>,
        events_rows: &[EventRow],
        entries: &[EntryRow],
    ) -> bool {
        let l = &self.lookups;
        let old = self.lookups_at.is_none_or(|at| at.elapsed() > LOOKUPS_TTL);
        let missing = |map_has: bool, id: u64| id != 0 && !map_has;
        old || tickets.values().any(|t| {
            missing(l.departments.contains_key(&t.dept_id), t.dept_id)
                || missing(l.topics.contains_key(&t.topic_id), t.topic_id)
                || missing(l.statuses.contains_key(&t.status_id), t.status_id)
                || missing(l.staff.contains_key(&t.staff_id), t.staff_id)
        }) || events_rows.iter().any(|e| {
            missing(l.departments.contains_key(&e.dept_id), e.dept_id)
                || missing(l.staff.contains_key(&e.staff_id), e.staff_id)
        }) || entries
            .iter()
            .any(|e| missing(l.staff.contains_key(&e.staff_id), e.staff_id))
    }

    /// osTicket 1.10: tickets this source knew that are gone.
    async fn sweep(&mut self, db: &mut Db) -> Result<(), PollError> {
        self.last_sweep = Instant::now();
        let known: Vec<u64> = self.threads.values().map(|(t, _)| *t).collect();
        let existing = bounded(db.existing_tickets(&known)).await?;
        let gone: HashSet<u64> = known
            .into_iter()
            .filter(|t| !existing.contains(t))
            .collect();
        // Missing twice in a row: a delete, not a row caught mid-creation.
        let confirmed: Vec<(u64, (u64, String))> = self
            .threads
            .iter()
            .filter(|(_, (t, _))| gone.contains(t) && self.suspected.contains(t))
            .map(|(th, v)| (*th, v.clone()))
            .collect();
        self.suspected = gone;
        if confirmed.is_empty() {
            return Ok(());
        }
        let now = bounded(db.now_time()).await?;
        let ctx = Context {
            source: &self.ctx.id,
            origin: &self.ctx.origin_uuid,
            helpdesk_code: self.ctx.helpdesk_code.as_deref(),
            zone: &self.config.timezone,
            lookups: &self.lookups,
            tickets: &HashMap::new(),
            users: &HashMap::new(),
            attachments: &HashMap::new(),
            previous_depts: &HashMap::new(),
            threads: &self.threads,
        };
        let events: Vec<Event> = confirmed
            .iter()
            .map(|(thread, (ticket, number))| ctx.swept(*thread, *ticket, number, &now))
            .collect();
        let position = self.cursor.as_ref().map(Cursor::encode);
        self.ctx
            .ingest
            .submit(
                &self.ctx.id,
                &events,
                position.map(|p| (self.ctx.id.clone(), p)),
                Unmatched::Drop,
            )
            .await?;
        for (thread, (ticket, _)) in confirmed {
            self.threads.remove(&thread);
            self.suspected.remove(&ticket);
        }
        Ok(())
    }

    /// Starts, advances or ends the backfill report.
    async fn track_backfill(
        &mut self,
        db: &mut Db,
        behind: bool,
        rows: u64,
    ) -> Result<(), DbError> {
        match (&mut self.backfill, behind) {
            (None, true) => {
                let (entry, event) = self
                    .cursor
                    .as_ref()
                    .map_or((0, 0), |c| (c.entries.hi, c.events.hi));
                // Estimated from the id range, not counted: a COUNT over
                // millions of rows could take longer than the poll bound.
                // Skipped ids make it high; the report ends when caught up.
                let (max_entry, max_event) = db.max_ids().await?;
                let left = max_entry.saturating_sub(entry) + max_event.saturating_sub(event);
                let mut backfill = Backfill {
                    progress: Progress {
                        total: left + rows,
                        done: rows,
                    },
                    started: Instant::now(),
                    reporter: Reporter::new(),
                };
                backfill
                    .reporter
                    .report(&self.ctx.id, &backfill.progress, Duration::ZERO, true);
                metrics::gauge!("deskbus_source_backlog_rows", "source" => self.ctx.id.clone())
                    .set(left as f64);
                self.backfill = Some(backfill);
            }
            (Some(b), true) => {
                b.progress.done += rows;
                b.reporter
                    .report(&self.ctx.id, &b.progress, b.started.elapsed(), false);
                metrics::gauge!("deskbus_source_backlog_rows", "source" => self.ctx.id.clone())
                    .set(b.progress.total.saturating_sub(b.progress.done) as f64);
            }
            (Some(b), false) => {
                b.progress.done += rows;
                b.progress.total = b.progress.total.max(b.progress.done);
                self.end_backfill();
            }
            (None, false) => {}
        }
        Ok(())
    }

    fn end_backfill(&mut self) {
        if let Some(mut b) = self.backfill.take() {
            b.reporter
                .finish(&self.ctx.id, &b.progress, b.started.elapsed());
            metrics::gauge!("deskbus_source_backlog_rows", "source" => self.ctx.id.clone())
                .set(0.0);
        }
    }
}

/// `read`, given up after [`POLL_TIMEOUT`].
async fn bounded<T, E: Into<PollError>>(
    read: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, PollError> {
    match tokio::time::timeout(POLL_TIMEOUT, read).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(PollError::Timeout(POLL_TIMEOUT)),
    }
}

/// When one table returned a full batch and the other did not, the other's
/// rows past the full one's last time are left for the next poll, so that
/// a backfill does not emit one table's later rows before the other's
/// earlier ones. The table that sets the horizon keeps all its rows, so
/// every poll makes progress.
fn cut_to_horizon<A, B>(
    a: &mut Vec<A>,
    b: &mut Vec<B>,
    a_full: bool,
    b_full: bool,
    a_time: impl Fn(&A) -> Option<jiff::Timestamp>,
    b_time: impl Fn(&B) -> Option<jiff::Timestamp>,
) {
    let a_last = a.last().and_then(&a_time);
    let b_last = b.last().and_then(&b_time);
    let a_sets = match (a_full, b_full, a_last, b_last) {
        (true, false, Some(_), _) => true,
        (false, true, _, Some(_)) => false,
        (true, true, Some(x), Some(y)) => x <= y,
        _ => return,
    };
    let cut = |times: Vec<Option<jiff::Timestamp>>, horizon: jiff::Timestamp| {
        times
            .iter()
            .position(|t| t.is_some_and(|t| t > horizon))
            .unwrap_or(times.len())
    };
    if a_sets {
        if let Some(h) = a_last {
            let keep = cut(b.iter().map(&b_time).collect(), h);
            b.truncate(keep);
        }
    } else if let Some(h) = b_last {
        let keep = cut(a.iter().map(&a_time).collect(), h);
        a.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_second(s).ok()
    }

    #[test]
    fn a_full_table_sets_the_horizon_for_the_other() {
        let t = |v: &i64| ts(*v);
        // Entries full up to t=10: events after 10 wait.
        let (mut a, mut b) = (vec![1, 5, 10], vec![2, 9, 10, 11, 30]);
        cut_to_horizon(&mut a, &mut b, true, false, t, t);
        assert_eq!(
            (a.as_slice(), b.as_slice()),
            (&[1, 5, 10][..], &[2, 9, 10][..])
        );
        // Both full: the earlier end wins, the later table is cut.
        let (mut a, mut b) = (vec![1, 50], vec![2, 20]);
        cut_to_horizon(&mut a, &mut b, true, true, t, t);
        assert_eq!((a.as_slice(), b.as_slice()), (&[1][..], &[2, 20][..]));
        // Neither full: nothing waits.
        let (mut a, mut b) = (vec![1, 50], vec![2, 99]);
        cut_to_horizon(&mut a, &mut b, false, false, t, t);
        assert_eq!((a.len(), b.len()), (2, 2));
    }
}

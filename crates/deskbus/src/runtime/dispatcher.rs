//! One dispatcher per stream: moves entries from the spool to the stream and
//! records each outcome. An entry leaves the spool only when the stream
//! confirmed it (or it went to dead letters).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use deskbus_spool::{Entry, Outcome, Spool, SpoolError, now_ms};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;

use super::Shutdown;
use super::recorder::Recorder;
use crate::config::{RetryPolicy, StreamSettings};
use crate::internal_events::{
    ComponentFailed, DeliveriesSucceeded, DeliveryDeadLettered, DeliveryRetried,
};
use crate::streams::{Delivery, DeliveryError, Stream};
use crate::use_cases::format::UseCaseFormat;

/// How often an idle dispatcher looks at the spool even without a wake-up:
/// entries can also arrive from another process (`deskbus dlq retry`).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Bounds of one read from the spool, in entries: enough that batches of
/// one do not cost a query each, few enough that the payloads held in
/// memory stay small (at most `batch_size` when that is larger). The next
/// read starts once half of that is handed out, or less than a batch is
/// left, so less than twice this much is held.
const READ_AHEAD_MIN: usize = 64;
const READ_AHEAD_MAX: usize = 1024;
/// Payload bytes held read ahead, about: a read stops once what is held
/// reaches them (it returns at least one entry when one is ready), so
/// that large payloads in the spool do not fill memory.
const READ_AHEAD_BYTES: usize = 8 * 1024 * 1024;

/// How often a read-ahead scans the whole queue while a backlog keeps the
/// quick scans busy (see [`ScanFrom`]).
const FULL_SCAN_EVERY: Duration = Duration::from_millis(250);

/// Where the next read-ahead starts. Entries below the highest sequence
/// fetched so far are mostly in flight: scanning past them on every read
/// costs as much as the read itself under a backlog. So a read starts
/// above them, except that heads can appear below (a retry come due, an
/// entry whose predecessor on its key was just delivered): a read from the
/// start is made when a quick one finds less than it asked for (caught up:
/// look everywhere once), and at least every [`FULL_SCAN_EVERY`].
struct ScanFrom {
    high_water: i64,
    full_next: bool,
    last_full: std::time::Instant,
}

impl ScanFrom {
    fn new() -> ScanFrom {
        ScanFrom {
            high_water: 0,
            full_next: true,
            last_full: std::time::Instant::now(),
        }
    }

    /// The `after_seq` of the next read.
    fn next_from(&mut self) -> i64 {
        if self.full_next || self.last_full.elapsed() >= FULL_SCAN_EVERY {
            self.full_next = false;
            self.last_full = std::time::Instant::now();
            0
        } else {
            self.high_water
        }
    }

    /// What a read from `from`, asking for `limit`, returned.
    fn saw(&mut self, from: i64, entries: &[Entry], limit: usize) {
        if let Some(max) = entries.iter().map(|e| e.seq).max() {
            self.high_water = self.high_water.max(max);
        }
        if from != 0 && entries.len() < limit {
            self.full_next = true;
        }
    }
}

/// A dispatcher's reads from the spool: at most one under way, on the
/// blocking pool, while the deliveries go on.
#[derive(Default)]
struct Reads {
    under_way: Option<JoinHandle<ReadResult>>,
    /// The last read scanned the queue from its start and came back short
    /// (fewer entries than it asked for, or its byte cap reached), and
    /// nothing that can make more entries ready (an append, a commit, time
    /// passing) has happened since it started. Keeps an idle dispatcher
    /// from spinning. After a read stopped by its byte cap, the next waits
    /// for the commit of what it found: the entries held are the stream's
    /// work until then.
    caught_up: bool,
    /// Something changed since the read under way started.
    changed: bool,
    /// The last read failed: none starts before this.
    retry_at: Option<std::time::Instant>,
    /// A read came back, and none started since: what it found is all
    /// that was ready, so a batch short of `batch_size` goes now rather
    /// than wait for another read (which waits until it has gone).
    fresh: bool,
}

impl Reads {
    /// No read is under way and one may find something.
    fn is_due(&self) -> bool {
        self.under_way.is_none()
            && !self.caught_up
            && self
                .retry_at
                .is_none_or(|at| std::time::Instant::now() >= at)
    }

    /// The read that ended failed: the next starts `after` from now.
    fn failed(&mut self, after: Duration) {
        self.caught_up = false;
        self.retry_at = Some(std::time::Instant::now() + after);
    }

    /// How long until a read may start again, after a failed one.
    fn failed_for(&self) -> Option<Duration> {
        self.retry_at
            .map(|at| at.saturating_duration_since(std::time::Instant::now()))
    }

    fn is_under_way(&self) -> bool {
        self.under_way.is_some()
    }

    /// A batch short of `batch_size` should wait for the read under way.
    fn may_fill_a_short_batch(&self) -> bool {
        self.is_under_way() && !self.fresh
    }

    fn start(&mut self, read: JoinHandle<ReadResult>) {
        self.under_way = Some(read);
        self.changed = false;
        self.fresh = false;
    }

    /// A short batch (or none, nothing being left) went out.
    fn short_batch_sent(&mut self) {
        self.fresh = false;
    }

    /// Something happened that may have made entries ready.
    fn changed(&mut self) {
        self.caught_up = false;
        self.changed = true;
    }

    /// What the read under way found, once it ends (never, if none is):
    /// where it started, and its entries. Cancel safe: the read goes on.
    async fn finished(&mut self) -> ReadResult {
        let Some(read) = self.under_way.as_mut() else {
            return std::future::pending().await;
        };
        let ended = read.await;
        self.under_way = None;
        self.fresh = true;
        // A join error: the read panicked past its own guard, or was cancelled.
        ended.unwrap_or_else(|join| Err(join.into()))
    }

    /// The read that ended was caught up (see `caught_up`) if `short`.
    fn found(&mut self, short: bool) {
        self.caught_up = short && !self.changed;
        self.retry_at = None;
    }
}

/// What a read found: where it started, and its entries.
type ReadResult = Result<(i64, Vec<Entry>), Box<dyn std::error::Error + Send + Sync>>;

pub(super) struct Dispatcher {
    pub stream_id: String,
    pub settings: StreamSettings,
    pub stream: Arc<dyn Stream>,
    pub spool: Spool,
    /// Every use case of the config, with its format. An entry whose use
    /// case is missing here (removed or renamed since it was queued) goes
    /// to dead letters: nothing says any more how it is to be shaped.
    pub formats: Arc<HashMap<String, Arc<UseCaseFormat>>>,
}

/// What a panic carried, when it is text (`panic!` with a message).
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

impl Dispatcher {
    /// Runs until shutdown, or until the spool's writer has stopped
    /// (`Err`): then no outcome can be recorded, and delivering on would
    /// deliver the same entries again and again.
    pub(super) async fn run(self, mut shutdown: Shutdown) -> Result<(), SpoolError> {
        let waker = self.spool.waker(&self.stream_id);
        // Fetched from the spool and not yet handed to a delivery, plus
        // everything handed out whose outcome is not on disk yet. An entry in
        // either is never fetched again.
        let mut read_ahead: VecDeque<Entry> = VecDeque::new();
        let mut in_flight: HashSet<i64> = HashSet::new();
        // Deliveries in progress, polled by this task rather than spawned:
        // no task (and no waker) per batch. The price: one stream's batches
        // are shaped one after another on this task.
        let mut deliveries = FuturesUnordered::new();
        let mut reads = Reads::default();
        // Outcomes on their way to the spool. The loop does not wait for
        // them: entries stay in flight (not fetched again) until their
        // outcome is on disk, while the next batches are already delivered.
        let mut recorder = Recorder::new(self.spool.clone(), self.stream_id.clone());
        let mut scan = ScanFrom::new();
        let delivered = DeliveriesSucceeded::register(&self.stream_id);
        loop {
            let mut idle_for = IDLE_POLL;
            if !shutdown.is_triggered() {
                loop {
                    let needed = read_ahead.len() < self.settings.batch_size;
                    if reads.is_due() && !(needed && reads.fresh) {
                        // Read when a batch cannot be filled, and ahead of
                        // need once half of what was read is handed out
                        // (even while every delivery slot is taken), so
                        // that deliveries need not wait for reads.
                        let early = read_ahead.len() < self.read_ahead_limit() / 2;
                        if needed || early {
                            let held: usize = read_ahead.iter().map(|e| e.payload.len()).sum();
                            if needed || held < READ_AHEAD_BYTES {
                                let max_bytes = READ_AHEAD_BYTES.saturating_sub(held);
                                let from = scan.next_from();
                                reads.start(self.read(from, max_bytes, in_flight.clone()));
                            }
                        }
                    }
                    // While the spool refuses outcomes, stop delivering: what is
                    // delivered then cannot be recorded, only delivered again.
                    if deliveries.len() >= self.settings.concurrency
                        || recorder.waiting() >= self.outcomes_waiting_max()
                    {
                        break;
                    }
                    let take = read_ahead.len().min(self.settings.batch_size);
                    let full = take == self.settings.batch_size;
                    if !full && reads.may_fill_a_short_batch() {
                        break; // the read under way may fill the batch
                    }
                    if take > 0 {
                        let entries: Vec<Entry> = read_ahead.drain(..take).collect();
                        let stream = self.stream.clone();
                        let formats = self.formats.clone();
                        deliveries.push(async move {
                            // A panicking stream must not take the dispatcher down.
                            let results =
                                std::panic::AssertUnwindSafe(deliver(&*stream, &formats, &entries))
                                    .catch_unwind()
                                    .await;
                            (entries, results)
                        });
                    }
                    if !full {
                        reads.short_batch_sent();
                        if reads.is_due() {
                            // Something changed while the last read ran: read
                            // again now, not when a delivery next ends (which
                            // a slow endpoint can put off for a second).
                            continue;
                        }
                        // While outcomes are being committed the heads are still
                        // in flight; the completion wakes the loop, no need to poll.
                        // Nor while refused outcomes wait: their entries are due
                        // already (so `next_due` would say "now" at every pass),
                        // and the recorder's deadline wakes the loop for them.
                        // Nor while a read is under way: it wakes the loop.
                        if deliveries.is_empty()
                            && !recorder.is_committing()
                            && recorder.waiting() == 0
                            && !reads.is_under_way()
                        {
                            idle_for = match reads.failed_for() {
                                Some(wait) => wait.max(Duration::from_millis(1)),
                                None => self.until_next_due().await,
                            };
                        }
                        break;
                    }
                }
            } else if deliveries.is_empty() && recorder.is_drained() {
                // What the spool refused gets one last try before it is
                // left for the next start.
                if !recorder.try_refused_once_more() {
                    recorder.abandon();
                    return Ok(());
                }
            }
            if recorder.is_closed() {
                return match shutdown.is_triggered() {
                    true => Ok(()),
                    false => Err(SpoolError::Closed),
                };
            }
            let record_at = recorder.deadline();
            tokio::select! {
                read = reads.finished() => {
                    match read {
                        Ok((from, entries)) => {
                            let limit = self.read_ahead_limit();
                            scan.saw(from, &entries, limit);
                            reads.found(from == 0 && entries.len() < limit);
                            in_flight.extend(entries.iter().map(|e| e.seq));
                            read_ahead.extend(entries);
                        }
                        Err(error) => {
                            // Not again for `IDLE_POLL`, whatever changes
                            // meanwhile: a spool that cannot be read is not
                            // to be asked at every append.
                            reads.failed(IDLE_POLL);
                            ComponentFailed {
                                component: &self.stream_id,
                                error: &*error,
                            }
                            .emit();
                        }
                    }
                }
                Some((entries, results)) = deliveries.next(), if !deliveries.is_empty() => match results {
                    Ok(results) => recorder.add(self.outcomes(&entries, results, &delivered)),
                    Err(panic) => {
                        // A panicking stream loses nothing: its entries stay in
                        // the spool and count a failed attempt, so a poison
                        // input that panics reaches `max_attempts` (or
                        // `max_age`) and dead letters like any other. Not
                        // retried before `max_backoff`: a panic is a bug, and
                        // hammering it helps nobody.
                        // Reported per entry, with the panic's message, by
                        // the retry or dead letter it leads to.
                        let error = format!("delivery panicked: {}", panic_message(&*panic));
                        let failed = DeliveryError::Retryable {
                            reason: error,
                            retry_after: Some(self.settings.retry.max_backoff),
                        };
                        let results = vec![Err(failed); entries.len()];
                        recorder.add(self.outcomes(&entries, results, &delivered));
                    }
                },
                seqs = recorder.finished(), if recorder.is_committing() => {
                    for seq in seqs {
                        in_flight.remove(&seq);
                    }
                    reads.changed(); // the heads queued behind them are free
                }
                _ = waker.notified() => reads.changed(),
                _ = tokio::time::sleep(idle_for) => reads.changed(), // retries come due
                _ = shutdown.wait(), if !shutdown.is_triggered() => {}
                _ = tokio::time::sleep_until(record_at.unwrap_or_else(tokio::time::Instant::now)),
                    if record_at.is_some() => {}
            }
            // Linger only while it costs nothing: entries waiting for their
            // outcome may hold back the next entry of their order key, so
            // record at once when nothing else is being delivered or ready.
            recorder.start(
                deliveries.is_empty()
                    || read_ahead.is_empty()
                    || shutdown.is_triggered()
                    || recorder.waiting() >= self.read_ahead_limit(),
            );
        }
    }

    /// Starts a read of `batch_size × concurrency` ready heads (within
    /// [`READ_AHEAD_MIN`] and [`READ_AHEAD_MAX`], and `max_bytes` of
    /// payload) above `after_seq`, on the blocking pool, so that a small
    /// `batch_size` does not cost one spool query per batch. Every entry
    /// returned is the head of its order key (nothing of its key is in
    /// flight), so the batches cut from them may be delivered in parallel.
    ///
    /// `in_flight` is a copy: an entry freed while the read runs is only
    /// skipped once more, and nothing is added to the set but by reads,
    /// one at a time. A panic in the read is caught and reported as an
    /// error. Answers `after_seq` with what was read.
    fn read(
        &self,
        after_seq: i64,
        max_bytes: usize,
        in_flight: HashSet<i64>,
    ) -> JoinHandle<ReadResult> {
        let spool = self.spool.clone();
        let stream = self.stream_id.clone();
        let limit = self.read_ahead_limit();
        tokio::task::spawn_blocking(move || {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                spool.fetch_ready_within(&stream, now_ms(), limit, max_bytes, after_seq, &in_flight)
            }));
            match read {
                Ok(fetched) => Ok((after_seq, fetched?)),
                Err(_) => Err("the spool read panicked".into()),
            }
        })
    }

    /// Outcomes finished but not on disk past which no new batch starts:
    /// twice what the deliveries in flight can finish, so reached only
    /// when commits fall behind (a stalled disk, a spool that refuses
    /// outcomes).
    fn outcomes_waiting_max(&self) -> usize {
        2 * (self.settings.batch_size * self.settings.concurrency).max(self.read_ahead_limit())
    }

    fn read_ahead_limit(&self) -> usize {
        (self.settings.batch_size * self.settings.concurrency)
            .clamp(READ_AHEAD_MIN, READ_AHEAD_MAX.max(self.settings.batch_size))
    }

    /// How long to sleep when nothing is due: until the next retry, at most [`IDLE_POLL`].
    async fn until_next_due(&self) -> Duration {
        let spool = self.spool.clone();
        let stream = self.stream_id.clone();
        match tokio::task::spawn_blocking(move || spool.next_due(&stream)).await {
            Ok(Ok(Some(due))) => {
                Duration::from_millis((due - now_ms()).clamp(1, IDLE_POLL.as_millis() as i64) as u64)
            }
            _ => IDLE_POLL,
        }
    }

    /// What to record for each entry of a finished batch.
    fn outcomes(
        &self,
        entries: &[Entry],
        results: Vec<Result<(), DeliveryError>>,
        delivered: &DeliveriesSucceeded,
    ) -> Vec<(i64, Outcome)> {
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut latencies = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            // A stream that returns too few results has not confirmed the rest.
            let result = results.get(i).cloned().unwrap_or_else(|| {
                Err(DeliveryError::retryable(
                    "stream returned no result for this entry",
                ))
            });
            let outcome = match result {
                Ok(()) => {
                    latencies.push((now - entry.enqueued_at).max(0) as f64 / 1000.0);
                    Outcome::Delivered
                }
                Err(error) => self.failure_outcome(entry, error, now),
            };
            outcomes.push((entry.seq, outcome));
        }
        if !latencies.is_empty() {
            delivered.emit(&latencies);
        }
        outcomes
    }

    fn failure_outcome(&self, entry: &Entry, error: DeliveryError, now: i64) -> Outcome {
        let attempts = entry.attempts + 1;
        let policy = &self.settings.retry;
        let (reason, retry_after) = match error {
            DeliveryError::Permanent { reason } => {
                DeliveryDeadLettered {
                    stream: &self.stream_id,
                    event_id: &entry.event_id,
                    attempts,
                    reason: &reason,
                }
                .emit();
                return Outcome::Dead { reason, attempts };
            }
            DeliveryError::Retryable {
                reason,
                retry_after,
            } => (reason, retry_after),
        };
        let age = Duration::from_millis((now - entry.enqueued_at).max(0) as u64);
        let give_up = if policy.max_attempts > 0 && attempts >= policy.max_attempts {
            Some(format!("gave up after {attempts} attempts: {reason}"))
        } else if !policy.max_age.is_zero() && age >= policy.max_age {
            Some(format!(
                "gave up after {:?} ({attempts} attempts): {reason}",
                policy.max_age
            ))
        } else {
            None
        };
        if let Some(reason) = give_up {
            DeliveryDeadLettered {
                stream: &self.stream_id,
                event_id: &entry.event_id,
                attempts,
                reason: &reason,
            }
            .emit();
            return Outcome::Dead { reason, attempts };
        }
        // A server's Retry-After is honoured up to `max_backoff`: a huge one
        // must not park a ticket's whole key for a year.
        let asked = retry_after.unwrap_or_default().min(policy.max_backoff);
        let backoff = backoff(policy, attempts).max(asked);
        let backoff_ms = i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
        DeliveryRetried {
            stream: &self.stream_id,
            event_id: &entry.event_id,
            attempts,
            reason: &reason,
            backoff_ms,
        }
        .emit();
        Outcome::Retry {
            error: reason,
            next_attempt_at: now.saturating_add(backoff_ms),
        }
    }
}

/// Shapes each entry with its use case's format, then hands the ones that
/// could be shaped to the stream. A shaping error is permanent for that entry.
async fn deliver(
    stream: &dyn Stream,
    formats: &HashMap<String, Arc<UseCaseFormat>>,
    entries: &[Entry],
) -> Vec<Result<(), DeliveryError>> {
    let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); entries.len()];
    let mut deliveries = Vec::with_capacity(entries.len());
    let mut positions = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Some(format) = formats.get(&entry.use_case).map(|f| &**f) else {
            results[i] = Err(DeliveryError::permanent(format!(
                "use case `{}` is no longer in the config (removed or renamed): \
                 nothing says how to shape its entries; add it back and retry them, \
                 or drop them",
                entry.use_case
            )));
            continue;
        };
        match shape(format, entry).and_then(|payload| Ok((queue_of(format, entry)?, payload))) {
            Ok((queue, payload)) => {
                deliveries.push(Delivery {
                    event_id: &entry.event_id,
                    use_case: &entry.use_case,
                    order_key: &entry.order_key,
                    queue,
                    payload,
                    content_type: format.content_type(),
                });
                positions.push(i);
            }
            Err(reason) => results[i] = Err(DeliveryError::permanent(reason)),
        }
    }
    if !deliveries.is_empty() {
        let delivered = stream.deliver(&deliveries).await;
        for (n, i) in positions.into_iter().enumerate() {
            results[i] = delivered.get(n).cloned().unwrap_or_else(|| {
                Err(DeliveryError::retryable(
                    "stream returned no result for this entry",
                ))
            });
        }
    }
    results
}

/// The entry's queue; an entry replayed from a routing-time dead letter has
/// none yet, and gets it from the use case's current template.
fn queue_of<'a>(format: &UseCaseFormat, entry: &'a Entry) -> Result<Cow<'a, str>, String> {
    if !entry.queue.is_empty() {
        return Ok(Cow::Borrowed(&entry.queue));
    }
    let template = format
        .queue
        .as_ref()
        .ok_or("the entry has no queue and its use case has no queue template")?;
    let event: deskbus_event::Event = serde_json::from_slice(&entry.payload)
        .map_err(|e| format!("spooled event is not readable: {e}"))?;
    template
        .render(&event)
        .map(Cow::Owned)
        .map_err(|e| format!("queue template {:?}: {e}", template.as_str()))
}

fn shape<'a>(format: &UseCaseFormat, entry: &'a Entry) -> Result<Cow<'a, [u8]>, String> {
    if format.is_passthrough() {
        return Ok(Cow::Borrowed(&entry.payload));
    }
    let event: deskbus_event::Event = serde_json::from_slice(&entry.payload)
        .map_err(|e| format!("spooled event is not readable: {e}"))?;
    format.encode(&event).map(Cow::Owned)
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half
/// random, so retries of many entries spread out but none comes back at once.
pub(crate) fn backoff(policy: &RetryPolicy, attempts: u32) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(policy.max_backoff);
    let half = capped / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(seqs: &[i64]) -> Vec<Entry> {
        seqs.iter()
            .map(|&seq| Entry {
                seq,
                stream: "s".into(),
                use_case: "u".into(),
                queue: "q".into(),
                order_key: format!("k{seq}"),
                event_id: format!("e{seq}"),
                payload: Vec::new(),
                enqueued_at: 0,
                attempts: 0,
            })
            .collect()
    }

    #[test]
    fn reads_start_above_what_was_fetched_until_caught_up() {
        let mut scan = ScanFrom::new();
        assert_eq!(scan.next_from(), 0, "the first read looks everywhere");
        scan.saw(0, &entries(&[1, 2, 3]), 3);
        assert_eq!(scan.next_from(), 3, "a full read: the next starts above it");
        scan.saw(3, &entries(&[4, 5, 6]), 3);
        assert_eq!(scan.next_from(), 6);
        // Fewer than asked: caught up, so heads below may have been missed.
        scan.saw(6, &entries(&[7]), 3);
        assert_eq!(scan.next_from(), 0);
        scan.saw(0, &entries(&[2]), 3);
        assert_eq!(scan.next_from(), 7, "the high water stays");
        scan.last_full -= FULL_SCAN_EVERY;
        assert_eq!(scan.next_from(), 0, "and a full read every FULL_SCAN_EVERY");
    }

    /// A read that finds the queue caught up stops the reading until
    /// something changes; a change while that read ran (a wake-up it may
    /// have missed) does not let it say so.
    #[tokio::test]
    async fn reads_stop_when_caught_up_unless_something_changed_meanwhile() {
        let empty = || tokio::task::spawn_blocking(|| Ok((0, Vec::new())));
        let mut reads = Reads::default();
        assert!(reads.is_due(), "the first read is due");
        reads.start(empty());
        assert!(!reads.is_due() && reads.is_under_way());
        assert!(reads.finished().await.unwrap().1.is_empty());
        reads.found(true);
        assert!(!reads.is_due(), "caught up: nothing to read until a change");
        reads.changed();
        assert!(reads.is_due(), "a change makes a read due");

        reads.start(empty());
        reads.changed(); // an append committed while the read ran
        reads.finished().await.unwrap();
        reads.found(true);
        assert!(reads.is_due(), "the read may have missed the change");

        reads.start(empty());
        reads.finished().await.unwrap();
        reads.found(false);
        assert!(
            reads.is_due(),
            "a read that filled up is followed by another"
        );
    }

    /// A read that failed is not made again before its delay, whatever
    /// changes meanwhile (appends wake the dispatcher at their own rate).
    #[tokio::test]
    async fn a_failed_read_waits_its_delay_whatever_changes() {
        let failing = || tokio::task::spawn_blocking(|| Err("disk I/O error".into()));
        let mut reads = Reads::default();
        reads.start(failing());
        assert!(reads.finished().await.is_err());
        reads.failed(Duration::from_millis(100));
        reads.changed();
        assert!(!reads.is_due(), "changes do not hurry it");
        assert!(
            reads
                .failed_for()
                .is_some_and(|d| d <= Duration::from_millis(100))
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(reads.is_due(), "due once the delay is over");
        reads.start(tokio::task::spawn_blocking(|| Ok((0, Vec::new()))));
        reads.finished().await.unwrap();
        reads.found(true);
        assert_eq!(reads.failed_for(), None, "a read that worked clears it");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = backoff(&policy, 1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = backoff(&policy, 3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let late = backoff(&policy, 40);
            assert!(
                late >= Duration::from_millis(500) && late <= Duration::from_secs(1),
                "{late:?}"
            );
        }
    }

    /// A dispatcher of stream `out` delivering batches of one, four at a time.
    fn one_at_a_time(stream: Arc<dyn Stream>, spool: Spool, retry: RetryPolicy) -> Dispatcher {
        Dispatcher {
            stream_id: "out".into(),
            settings: StreamSettings {
                config: crate::streams::StreamConfig::Stdout(Default::default()),
                concurrency: 4,
                batch_size: 1,
                retry,
            },
            stream,
            spool,
            formats: Arc::new(HashMap::from([(
                "u".to_owned(),
                Arc::new(UseCaseFormat::default()),
            )])),
        }
    }

    /// Takes every batch, noting the thread each was handed over on.
    #[derive(Default)]
    struct TakesAll(std::sync::Mutex<Vec<Option<String>>>);

    impl Stream for TakesAll {
        fn deliver<'a>(
            &'a self,
            batch: &'a [Delivery<'a>],
        ) -> crate::streams::BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
            let name = std::thread::current().name().map(str::to_owned);
            self.0.lock().unwrap().push(name);
            Box::pin(async move { vec![Ok(()); batch.len()] })
        }

        fn healthcheck(&self) -> crate::streams::BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// A dispatcher of `out` (and its stream) over a spool in `dir` that
    /// holds one entry and whose writer has stopped.
    async fn over_a_stopped_spool(dir: &std::path::Path) -> (Arc<TakesAll>, Dispatcher) {
        let (spool, _) = super::super::spool_with_one_entry(&dir.join("spool.db")).await;
        spool.close();
        let stream = Arc::new(TakesAll::default());
        let dispatcher = one_at_a_time(stream.clone(), spool, RetryPolicy::default());
        (stream, dispatcher)
    }

    /// A spool whose writer has stopped cannot record an outcome: the
    /// dispatcher stops with an error (the runtime makes it fatal) after
    /// one delivery, instead of delivering the same entry again and again.
    #[tokio::test]
    async fn a_spool_whose_writer_stopped_stops_the_dispatcher() {
        let dir = tempfile::tempdir().unwrap();
        let (stream, dispatcher) = over_a_stopped_spool(dir.path()).await;
        let (_trigger, shutdown) = Shutdown::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), dispatcher.run(shutdown))
            .await
            .expect("the dispatcher stops on its own");
        assert!(matches!(ended, Err(SpoolError::Closed)), "{ended:?}");
        assert_eq!(stream.0.lock().unwrap().len(), 1, "one delivery");
    }

    /// `deskbus run` starts each dispatcher on a thread of its own, and
    /// hears from it why it ended: here, a spool whose writer stopped, the
    /// fatal `StreamStopped` that `run` stops on.
    #[tokio::test]
    async fn a_dispatcher_runs_on_its_streams_thread_and_reports_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (stream, dispatcher) = over_a_stopped_spool(dir.path()).await;
        let (_trigger, shutdown) = Shutdown::new();
        let ended = super::super::spawn_dispatcher(dispatcher, shutdown).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the dispatcher stops on its own")
            .expect("its thread answers");
        assert!(
            matches!(
                &ended,
                Err(super::super::RunError::StreamStopped { stream, source: SpoolError::Closed })
                    if stream == "out"
            ),
            "the spool's error is passed on, naming the stream: {ended:?}"
        );
        assert_eq!(*stream.0.lock().unwrap(), [Some("stream-out".to_owned())]);
    }

    /// Runs `dispatcher` until stream `out` has a dead letter (10 s at
    /// most), stops it, and returns the dead letters.
    async fn run_until_dead_lettered(
        dispatcher: Dispatcher,
        spool: &Spool,
    ) -> Vec<deskbus_spool::DeadLetter> {
        let (trigger, shutdown) = Shutdown::new();
        let running = tokio::spawn(dispatcher.run(shutdown));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while spool.stats().unwrap().streams["out"].dead_letters == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        trigger.send(true).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the dispatcher stops at shutdown");
        assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
        spool.dead_letters(Some("out"), 10).unwrap()
    }

    /// An entry whose use case left the config while it waited (removed or
    /// renamed) goes to dead letters saying so, rather than to its stream
    /// unshaped.
    #[tokio::test]
    async fn an_entry_whose_use_case_left_the_config_goes_to_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = super::super::spool_with_one_entry(&dir.path().join("spool.db")).await;
        let stream = Arc::new(TakesAll::default());
        let mut dispatcher = one_at_a_time(stream.clone(), spool.clone(), RetryPolicy::default());
        dispatcher.formats = Arc::new(HashMap::new());
        let dead = run_until_dead_lettered(dispatcher, &spool).await;
        assert!(
            dead[0]
                .reason
                .contains("use case `u` is no longer in the config"),
            "{}",
            dead[0].reason
        );
        assert!(stream.0.lock().unwrap().is_empty(), "nothing was sent");
    }

    /// Panics at its first `times` deliveries (with "poison"), then takes
    /// everything; counts its deliveries.
    struct PanicsFirst {
        times: usize,
        deliveries: std::sync::atomic::AtomicUsize,
    }

    impl PanicsFirst {
        fn times(times: usize) -> PanicsFirst {
            PanicsFirst {
                times,
                deliveries: Default::default(),
            }
        }
    }

    impl Stream for PanicsFirst {
        fn deliver<'a>(
            &'a self,
            batch: &'a [Delivery<'a>],
        ) -> crate::streams::BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
            let n = self
                .deliveries
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.times {
                panic!("poison");
            }
            Box::pin(async move { vec![Ok(()); batch.len()] })
        }

        fn healthcheck(&self) -> crate::streams::BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// An entry whose delivery panics every time is a poison entry like
    /// any other: after `max_attempts` it goes to dead letters with the
    /// panic's message, instead of holding back its key for ever.
    #[tokio::test]
    async fn an_entry_whose_delivery_always_panics_goes_to_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = super::super::spool_with_one_entry(&dir.path().join("spool.db")).await;
        let retry = RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let stream = Arc::new(PanicsFirst::times(usize::MAX));
        let dispatcher = one_at_a_time(stream, spool.clone(), retry);
        let dead = run_until_dead_lettered(dispatcher, &spool).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(spool.stats().unwrap().streams["out"].depth, 0);
        assert_eq!(dead[0].attempts, 2);
        assert!(
            dead[0].reason.contains("delivery panicked: poison"),
            "{}",
            dead[0].reason
        );
    }

    /// A stream that panics fails that delivery only: the entry counts a
    /// failed attempt and is delivered again, and the dispatcher goes on.
    #[tokio::test]
    async fn a_panicking_delivery_is_retried_and_the_dispatcher_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = super::super::spool_with_one_entry(&dir.path().join("spool.db")).await;
        let stream = Arc::new(PanicsFirst::times(1));
        let retry = RetryPolicy {
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        let dispatcher = one_at_a_time(stream.clone(), spool.clone(), retry);
        let (trigger, shutdown) = Shutdown::new();
        let running = tokio::spawn(dispatcher.run(shutdown));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while spool.stats().unwrap().streams.contains_key("out") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not delivered again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            stream.deliveries.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        trigger.send(true).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the dispatcher stops at shutdown");
        assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    }
}

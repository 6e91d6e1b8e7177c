//! A dispatcher's outcomes on their way to the spool.
//!
//! One commit is under way at a time. Outcomes that finish meanwhile wait
//! and go together in the next one: at small batch sizes a commit per
//! batch would cost more than the deliveries themselves. While the stream
//! is busy they may also wait up to [`OUTCOME_LINGER`] for company.
//!
//! Invariant: an entry stays in flight (the dispatcher never fetches it
//! again) until its outcome is on disk. The exceptions free entries to be
//! delivered again (at least once), never to be lost: a commit task that
//! dies without answering, and outcomes the spool still refuses when the
//! dispatcher stops, after one last try (they stay pending for the next
//! start). A spool whose writer has stopped frees nothing: the dispatcher
//! stops (see [`Recorder::is_closed`]).
//!
//! A commit the spool refuses is tried again outcome by outcome, so one
//! outcome the spool keeps refusing holds back only its own entry (and its
//! key); the refused ones are tried again with backoff.

use std::time::Duration;

use deskbus_spool::{Outcome, Spool, SpoolError};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::internal_events::ComponentFailed;

/// How long finished outcomes may wait to be committed together while
/// deliveries keep the dispatcher busy.
pub(super) const OUTCOME_LINGER: Duration = Duration::from_millis(1);

/// Backoff for outcomes the spool refused.
const REFUSED_FIRST: Duration = Duration::from_millis(100);
const REFUSED_MAX: Duration = Duration::from_secs(5);

/// What a commit task answers.
struct Recorded {
    /// Seqs whose outcome is on disk.
    recorded: Vec<i64>,
    /// Outcomes the spool refused, even alone.
    refused: Vec<(i64, Outcome)>,
    /// The spool's writer has stopped: nothing can be recorded any more.
    closed: bool,
}

pub(super) struct Recorder {
    spool: Spool,
    stream_id: String,
    /// The commit under way (at most one) and the seqs its outcomes hold.
    under_way: JoinSet<Recorded>,
    under_way_seqs: Vec<i64>,
    /// Finished, waiting for the next commit.
    unrecorded: Vec<(i64, Outcome)>,
    /// When `unrecorded` goes, however busy the stream.
    record_by: Option<Instant>,
    /// Refused by the spool even alone; tried again at `retry_at`.
    refused: Vec<(i64, Outcome)>,
    retry_at: Instant,
    backoff: Duration,
    /// The commit under way holds outcomes refused before.
    retrying: bool,
    /// The spool's writer has stopped (see [`Recorder::is_closed`]).
    closed: bool,
    /// The refused outcomes had their last try, at shutdown.
    last_try_done: bool,
}

impl Recorder {
    pub(super) fn new(spool: Spool, stream_id: String) -> Recorder {
        Recorder {
            spool,
            stream_id,
            under_way: JoinSet::new(),
            under_way_seqs: Vec::new(),
            unrecorded: Vec::new(),
            record_by: None,
            refused: Vec::new(),
            retry_at: Instant::now(),
            backoff: REFUSED_FIRST,
            retrying: false,
            closed: false,
            last_try_done: false,
        }
    }

    /// The outcomes of a finished batch, to be committed within
    /// [`OUTCOME_LINGER`] at the latest.
    pub(super) fn add(&mut self, outcomes: Vec<(i64, Outcome)>) {
        if outcomes.is_empty() {
            return;
        }
        self.unrecorded.extend(outcomes);
        self.record_by
            .get_or_insert_with(|| Instant::now() + OUTCOME_LINGER);
    }

    /// The spool's writer has stopped while the dispatcher runs: no outcome
    /// can be recorded, so delivering more would only deliver it again.
    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(super) fn is_committing(&self) -> bool {
        !self.under_way.is_empty()
    }

    /// Nothing under way and nothing waiting but what the spool refused.
    pub(super) fn is_drained(&self) -> bool {
        !self.is_committing() && self.unrecorded.is_empty()
    }

    /// Outcomes finished and not yet on disk, nor being written.
    pub(super) fn waiting(&self) -> usize {
        self.unrecorded.len() + self.refused.len()
    }

    /// When the dispatcher must wake to start a commit, if ever: never
    /// while one is under way (its end wakes the dispatcher).
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.is_committing() {
            return None;
        }
        let refused = (!self.refused.is_empty()).then_some(self.retry_at);
        match (self.record_by, refused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a commit unless one is under way: of the waiting outcomes
    /// when `now` (or when their time is up), with the refused ones once
    /// their retry is due.
    pub(super) fn start(&mut self, now: bool) {
        if self.is_committing() {
            return;
        }
        let at = Instant::now();
        if !self.refused.is_empty() && self.retry_at <= at {
            self.unrecorded.append(&mut self.refused);
            self.record_by = Some(at);
            self.retrying = true;
        }
        if self.unrecorded.is_empty() {
            // No deadline without something to record: it would fire forever.
            self.record_by = None;
            return;
        }
        if !(now || self.record_by.is_some_and(|by| by <= at)) {
            return;
        }
        let outcomes = std::mem::take(&mut self.unrecorded);
        self.record_by = None;
        self.under_way_seqs = outcomes.iter().map(|(seq, _)| *seq).collect();
        self.under_way
            .spawn(record(self.spool.clone(), self.stream_id.clone(), outcomes));
    }

    /// Waits for the commit under way to end; the seqs it freed. Cancel
    /// safe: nothing happens before the join completes, and nothing awaits
    /// after it.
    pub(super) async fn finished(&mut self) -> Vec<i64> {
        let Some(done) = self.under_way.join_next().await else {
            return Vec::new();
        };
        let seqs = std::mem::take(&mut self.under_way_seqs);
        let retried = std::mem::take(&mut self.retrying);
        match done {
            Ok(Recorded { closed: true, .. }) => {
                // The entries stay in flight: the dispatcher stops.
                self.closed = true;
                Vec::new()
            }
            Ok(Recorded {
                recorded, refused, ..
            }) => {
                if refused.is_empty() {
                    // The spool took back what it refused: start over.
                    if retried {
                        self.backoff = REFUSED_FIRST;
                    }
                } else {
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(REFUSED_MAX);
                    self.refused.extend(refused);
                }
                recorded
            }
            Err(join) => {
                tracing::error!(stream = %self.stream_id, error = %join, "outcome commit task failed; its entries will be delivered again");
                seqs
            }
        }
    }

    /// At shutdown, once everything else is recorded: makes the refused
    /// outcomes due now, once, so that the spool has one last chance to
    /// take them before they are abandoned (whatever was fixed meanwhile
    /// saves a delivery at the next start). False when there is nothing to
    /// try or the last try was made.
    pub(super) fn try_refused_once_more(&mut self) -> bool {
        if self.refused.is_empty() || self.last_try_done {
            return false;
        }
        self.last_try_done = true;
        self.retry_at = Instant::now();
        tracing::warn!(
            stream = %self.stream_id,
            count = self.refused.len(),
            "outcomes the spool refused get a last try before shutdown"
        );
        true
    }

    /// Outcomes still refused when the dispatcher stops: their entries stay
    /// pending in the spool and are delivered again at the next start.
    pub(super) fn abandon(&mut self) {
        if !self.refused.is_empty() {
            tracing::warn!(
                stream = %self.stream_id,
                count = self.refused.len(),
                "outcomes the spool refused are not recorded; those entries will be delivered again"
            );
            self.refused.clear();
        }
    }
}

/// Commits `outcomes` as one command. When the spool refuses it, each is
/// tried alone (all at once: the writer commits the others around one it
/// cannot take), so that an outcome the spool keeps refusing holds back
/// only its own entry.
async fn record(spool: Spool, stream_id: String, outcomes: Vec<(i64, Outcome)>) -> Recorded {
    let closed = Recorded {
        recorded: Vec::new(),
        refused: Vec::new(),
        closed: true,
    };
    let error = match spool.complete(outcomes.clone()).await {
        Ok(()) => {
            return Recorded {
                recorded: outcomes.iter().map(|(seq, _)| *seq).collect(),
                refused: Vec::new(),
                closed: false,
            };
        }
        Err(SpoolError::Closed) => return closed,
        Err(error) => error,
    };
    ComponentFailed {
        component: &stream_id,
        error: &error,
    }
    .emit();
    let results = spool.complete_each(outcomes.clone()).await;
    let mut recorded = Vec::new();
    let mut refused = Vec::new();
    for ((seq, outcome), result) in outcomes.into_iter().zip(results) {
        match result {
            Ok(()) => recorded.push(seq),
            Err(SpoolError::Closed) => return closed,
            Err(_) => refused.push((seq, outcome)),
        }
    }
    Recorded {
        recorded,
        refused,
        closed: false,
    }
}

#[cfg(test)]
mod tests {
    use deskbus_spool::SpoolOptions;

    use super::*;

    #[tokio::test]
    async fn a_closed_spool_is_reported_not_taken_for_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, seq) = super::super::spool_with_one_entry(&dir.path().join("spool.db")).await;
        let mut recorder = Recorder::new(spool.clone(), "out".into());
        recorder.add(vec![(seq, Outcome::Delivered)]);
        spool.close();
        recorder.start(true);
        assert!(recorder.is_committing());
        assert_eq!(
            recorder.finished().await,
            Vec::<i64>::new(),
            "nothing freed"
        );
        assert!(recorder.is_closed());
    }

    #[tokio::test]
    async fn refused_outcomes_get_one_last_try_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let (spool, seq) = super::super::spool_with_one_entry(&path).await;
        let sqlite = rusqlite::Connection::open(&path).unwrap();
        sqlite
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE DELETE ON entries
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let mut recorder = Recorder::new(spool.clone(), "out".into());
        recorder.add(vec![(seq, Outcome::Delivered)]);
        recorder.start(true);
        assert_eq!(recorder.finished().await, Vec::<i64>::new());
        assert_eq!(recorder.waiting(), 1, "refused, kept for later");
        assert!(recorder.is_drained());

        // Fixed meanwhile, long before the backoff runs out.
        sqlite.execute_batch("DROP TRIGGER refuse;").unwrap();
        recorder.retry_at = Instant::now() + Duration::from_secs(3600);
        recorder.start(true);
        assert!(!recorder.is_committing(), "not due before its backoff");
        assert!(recorder.try_refused_once_more());
        recorder.start(true);
        assert!(recorder.is_committing());
        assert_eq!(recorder.finished().await, vec![seq]);
        assert_eq!(recorder.waiting(), 0);
        assert!(!recorder.try_refused_once_more(), "nothing left to try");
        let left: i64 = sqlite
            .query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0, "the outcome is on disk");
    }

    #[tokio::test]
    async fn the_last_try_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(SpoolOptions::new(dir.path().join("spool.db"))).unwrap();
        let mut recorder = Recorder::new(spool, "out".into());
        assert!(!recorder.try_refused_once_more(), "nothing refused");
        recorder.refused.push((1, Outcome::Delivered));
        assert!(recorder.try_refused_once_more());
        assert!(!recorder.try_refused_once_more());
    }
}

//! The session loop of a source that holds one connection at a time
//! (amqp, beanstalk, osticket), and how long it waits before connecting
//! again: doubling from 200 ms to 5 s, with jitter so that several deskbus
//! do not knock on a restarted server in step, and back to the start once
//! a connection has done useful work.

use std::time::Duration;

use super::SourceError;
use crate::internal_events::SourceDisconnected;
use crate::runtime::{Ready, Shutdown};

const FIRST: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(5);

pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST }
    }

    /// The connection worked: the next failure starts from the beginning.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }

    /// The delay before the next attempt (75 to 100 % of the current step).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(MAX);
        step.mul_f64(0.75 + fastrand::f64() * 0.25)
    }
}

/// A source that works one connection at a time.
pub(crate) trait Sessions {
    type Error: std::error::Error + 'static;

    fn source_id(&self) -> &str;

    /// One connection, from connecting to losing it (an error) or to
    /// shutdown (`Ok`). Marks `ready` once connected.
    async fn session(
        &mut self,
        ready: &mut Option<Ready>,
        shutdown: &mut Shutdown,
    ) -> Result<(), Self::Error>;

    /// Whether the last session did useful work (committed input, or got
    /// through its setup), so that the backoff starts over. Asking resets it.
    fn made_progress(&mut self) -> bool;

    /// `Err` for an error no new connection can mend, which stops the
    /// source; `Ok` hands it back to be reported and retried. By default
    /// every error is retried.
    fn fatal(&self, error: Self::Error) -> Result<Self::Error, SourceError> {
        Ok(error)
    }
}

/// Runs sessions until shutdown (`Ok`) or a fatal error: after a lost
/// connection, reports it and connects again after [`Backoff`]'s delay,
/// which starts over once a session has made progress.
pub(crate) async fn run_sessions<S: Sessions>(
    source: &mut S,
    ready: Ready,
    mut shutdown: Shutdown,
) -> Result<(), SourceError> {
    let mut ready = Some(ready);
    let mut backoff = Backoff::new();
    loop {
        if shutdown.is_triggered() {
            return Ok(());
        }
        let outcome = source.session(&mut ready, &mut shutdown).await;
        if source.made_progress() {
            backoff.reset();
        }
        let Err(error) = outcome else {
            return Ok(());
        };
        let error = source.fatal(error)?;
        let delay = backoff.next_delay();
        SourceDisconnected {
            source: source.source_id(),
            error: &error,
            retry_in: delay,
        }
        .emit();
        if !sleep_unless_shutdown(delay, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// Sleeps `delay`; false when shutdown began meanwhile.
pub(crate) async fn sleep_unless_shutdown(delay: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.wait() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= FIRST.mul_f64(0.75) && delays[0] <= FIRST);
        assert!(delays[7] >= MAX.mul_f64(0.75) && delays[7] <= MAX);
        b.reset();
        assert!(b.next_delay() <= FIRST);
    }
}

//! How long a broker source waits before connecting again: doubling from
//! 200 ms to 5 s, with jitter so that several deskbus do not knock on a
//! restarted broker in step, and back to the start once a connection has
//! done useful work.

use std::time::Duration;

use crate::runtime::Shutdown;

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

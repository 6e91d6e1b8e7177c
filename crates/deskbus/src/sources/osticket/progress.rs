//! Backfill progress: when the source starts behind (`start = "beginning"`,
//! or after a long stop) it shows how far it is. On a terminal, one line
//! redrawn in place on stderr; otherwise (a service, a pipe) a log line
//! every few seconds. The arithmetic is pure and tested; the drawing is a
//! carriage return and one line, so it needs no crate.

use std::io::Write;
use std::time::Duration;

/// How far a backfill is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Progress {
    /// Rows to read when the backfill began.
    pub total: u64,
    /// Rows read since.
    pub done: u64,
}

impl Progress {
    /// Done share, 0 to 1 (1 when there was nothing to do).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
    }

    /// Rows per second so far.
    pub fn rate(&self, elapsed: Duration) -> f64 {
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        self.done as f64 / seconds
    }

    /// Time left at the rate so far; `None` before anything is done.
    pub fn eta(&self, elapsed: Duration) -> Option<Duration> {
        let rate = self.rate(elapsed);
        if rate <= 0.0 {
            return None;
        }
        let left = self.total.saturating_sub(self.done) as f64;
        Duration::try_from_secs_f64(left / rate).ok()
    }

    /// `[#########-----------]`, `width` cells inside the brackets.
    pub fn bar(&self, width: usize) -> String {
        let filled = ((self.fraction() * width as f64).floor() as usize).min(width);
        format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
    }

    /// The one-line report.
    pub fn line(&self, source: &str, elapsed: Duration) -> String {
        let eta = self
            .eta(elapsed)
            .map_or_else(|| "?".to_owned(), |d| format!("{}s", d.as_secs()));
        format!(
            "{source}: backfill {} {:>3.0}% {}/{} rows, {:.0} rows/s, eta {eta}",
            self.bar(30),
            self.fraction() * 100.0,
            self.done.min(self.total),
            self.total,
            self.rate(elapsed),
        )
    }
}

/// Where progress goes.
pub(super) enum Reporter {
    /// A line redrawn in place on stderr, at most 5 times a second.
    Terminal { last: Option<std::time::Instant> },
    /// An `info` log line every 5 seconds.
    Log { last: Option<std::time::Instant> },
}

impl Reporter {
    pub fn new() -> Reporter {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Reporter::Terminal { last: None }
        } else {
            Reporter::Log { last: None }
        }
    }

    /// Reports `progress` unless it was reported very recently (`force`
    /// reports anyway).
    pub fn report(&mut self, source: &str, progress: &Progress, elapsed: Duration, force: bool) {
        let (last, every) = match self {
            Reporter::Terminal { last } => (last, Duration::from_millis(200)),
            Reporter::Log { last } => (last, Duration::from_secs(5)),
        };
        if !force && last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        *last = Some(std::time::Instant::now());
        match self {
            Reporter::Terminal { .. } => {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{}", progress.line(source, elapsed));
                let _ = err.flush();
            }
            Reporter::Log { .. } => tracing::info!(
                source,
                done = progress.done.min(progress.total),
                total = progress.total,
                percent = (progress.fraction() * 100.0).round() as u64,
                "osticket backfill progress"
            ),
        }
    }

    /// Ends the backfill's report.
    pub fn finish(&mut self, source: &str, progress: &Progress, elapsed: Duration) {
        self.report(source, progress, elapsed, true);
        if let Reporter::Terminal { .. } = self {
            let _ = writeln!(std::io::stderr());
        }
        tracing::info!(
            source,
            rows = progress.done,
            seconds = elapsed.as_secs_f64(),
            "osticket backfill done"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        let p = Progress {
            total: 1000,
            done: 250,
        };
        assert_eq!(p.fraction(), 0.25);
        assert_eq!(p.rate(Duration::from_secs(5)), 50.0);
        assert_eq!(p.eta(Duration::from_secs(5)), Some(Duration::from_secs(15)));
        assert_eq!(p.bar(8), "[##------]");
        assert_eq!(
            p.line("ost", Duration::from_secs(5)),
            "ost: backfill [#######-----------------------]  25% 250/1000 rows, 50 rows/s, eta 15s"
        );
    }

    #[test]
    fn edges() {
        let nothing = Progress { total: 0, done: 0 };
        assert_eq!(nothing.fraction(), 1.0);
        assert_eq!(nothing.bar(4), "[####]");
        let start = Progress { total: 10, done: 0 };
        assert_eq!(start.eta(Duration::from_secs(1)), None);
        assert_eq!(start.rate(Duration::ZERO), 0.0);
        // More rows than counted (inserted during the backfill): capped.
        let over = Progress {
            total: 10,
            done: 15,
        };
        assert_eq!(over.fraction(), 1.0);
        assert_eq!(over.eta(Duration::from_secs(1)), Some(Duration::ZERO));
        assert!(
            over.line("s", Duration::from_secs(1))
                .contains("10/10 rows")
        );
    }
}

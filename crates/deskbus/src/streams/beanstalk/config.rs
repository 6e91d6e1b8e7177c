use std::time::Duration;

use crate::config::walker::{Table, parse_duration};

/// `[streams.X]` `type = "beanstalk"`
///
/// Puts one job per event into a beanstalkd tube: the use case's queue is
/// the tube name (letters, digits and `-+/;.$_()`, at most 200 bytes, not
/// starting with `-`; any other name sends the event to dead letters). A
/// body larger than the server's max job size (`-z`, default 65535 bytes)
/// also goes to dead letters; a draining or unreachable server is retried.
/// A job is stored at least once: after a connection failure mid-batch the
/// unconfirmed jobs are put again, so a consumer may see an event twice,
/// always with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeanstalkConfig {
    /// The server as `host:port`. Default `"127.0.0.1:11300"`.
    pub address: String,
    /// Job priority, 0 (most urgent) to 4294967295. Default 1024, the
    /// priority of the osTicket streamer plugin and of most clients.
    pub priority: u32,
    /// How long a job waits, delayed, before a worker can reserve it; whole
    /// seconds. Default `"0s"`.
    pub delay: Duration,
    /// Time to run: how long a worker may hold a job before beanstalkd hands
    /// it to another; whole seconds, at least `"1s"`. Default `"60s"`.
    pub ttr: Duration,
    /// Connections kept open to the server; each carries one batch at a
    /// time, so more than the stream's `concurrency` is never used. 1 to 64.
    /// Default 2.
    pub connections: usize,
}

impl Default for BeanstalkConfig {
    fn default() -> Self {
        BeanstalkConfig {
            address: "127.0.0.1:11300".into(),
            priority: 1024,
            delay: Duration::ZERO,
            ttr: Duration::from_secs(60),
            connections: 2,
        }
    }
}

impl BeanstalkConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<BeanstalkConfig> {
        let d = BeanstalkConfig::default();
        let address = t.parsed("address", parse_address).unwrap_or(d.address);
        let priority = t
            .integer("priority", 0..=i64::from(u32::MAX))
            .map_or(d.priority, |p| p as u32);
        let delay = t
            .parsed("delay", |s| whole_seconds(s, 0))
            .unwrap_or(d.delay);
        let ttr = t.parsed("ttr", |s| whole_seconds(s, 1)).unwrap_or(d.ttr);
        let connections = t
            .integer("connections", 1..=64)
            .map_or(d.connections, |n| n as usize);
        Some(BeanstalkConfig {
            address,
            priority,
            delay,
            ttr,
            connections,
        })
    }
}

/// `host:port`, as the stream and the source take it.
pub(crate) fn parse_address(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?} is not an address like 127.0.0.1:11300")),
    }
}

/// The protocol counts delay and ttr in whole seconds, up to 2^32 - 1;
/// refusing fractions beats rounding them silently.
fn whole_seconds(text: &str, min: u64) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{text:?} must be whole seconds"));
    }
    if d.as_secs() < min || d.as_secs() > u64::from(u32::MAX) {
        return Err(format!("{text:?} must be between {min}s and {}s", u32::MAX));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_seconds_in_range() {
        assert_eq!(whole_seconds("0s", 0), Ok(Duration::ZERO));
        assert_eq!(whole_seconds("2m", 1), Ok(Duration::from_secs(120)));
        assert!(whole_seconds("0s", 1).is_err());
        assert!(whole_seconds("1500ms", 0).is_err());
        assert!(whole_seconds("2000000h", 0).is_err());
        assert!(whole_seconds("soon", 0).is_err());
    }

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert!(parse_address("127.0.0.1:11300").is_ok());
        assert!(parse_address("beanstalk.internal:11300").is_ok());
        assert!(parse_address("[::1]:11300").is_ok());
        for bad in ["127.0.0.1", ":11300", "host:0", "host:port", "host:70000"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }
}

use deskbus_event::names::check_beanstalk_tube;

use crate::config::walker::Table;
use crate::streams::beanstalk::parse_address;

/// `[sources.X]` `type = "beanstalk"`
///
/// Takes jobs from beanstalkd tubes and turns each job body into an event.
/// A job is deleted only once its event is committed to the spool; while
/// the commit takes long, deskbus touches the job so that its time to run
/// does not run out. A body that cannot become an event (see `body`) goes
/// to dead letters with the reason (`deskbus dlq list`) and is deleted,
/// so it is not reserved again and again. An event no enabled use case
/// takes is deleted and counted in
/// `deskbus_source_rejected_events_total{reason="unmatched"}`. When the
/// spool refuses a batch, its jobs are released (delayed a little more at
/// each attempt) and reserved again later.
///
/// A job that comes back after deskbus committed it (a crash before the
/// `delete`, a lost connection, a server restart that lost the `delete`)
/// is recognised, by its id and body, among the last `batch_size` jobs
/// committed (remembered in the spool, with them) and deleted without a
/// second commit: when it was reserved before, or when the server keeps a
/// binlog (`-b`; a server without one reuses job ids after a restart, so
/// its jobs are matched only once reserved again). A job reserved more than
/// `max_attempts` times without being deleted (deskbus crashed on it, or
/// the spool refused it again and again) is buried with its priority, and
/// stays there until an operator kicks it, unless it is recognised as
/// committed already: then it is deleted.
///
/// After a server restart or a lost connection, deskbus connects again
/// with a growing delay (up to 5 s) and watches its tubes again; jobs it
/// held are released by the server when the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeanstalkSourceConfig {
    /// The server as `host:port`. Default `"127.0.0.1:11300"`.
    pub address: String,
    /// The tubes to watch (letters, digits and `-+/;.$_()`, at most 200
    /// bytes, not starting with `-`). `default` is watched only when listed.
    /// Default `["default"]`.
    pub tubes: Vec<String>,
    /// What a job body is. `"envelope"`: a JSON event envelope, `{"name",
    /// "data", "origin_uuid"?, "id"?, "time"?, "routing_key"?}` (the XiVO
    /// bus's shape and deskbus's own; what a beanstalk stream of another
    /// deskbus puts). `"json"`: any JSON object, which becomes the event's
    /// `data` as it is, keys in order (the osTicket streamer's Kinesis
    /// records, `{"Data", "StreamName", "PartitionKey"}`, arrive so). `"raw"`:
    /// any UTF-8 text, the event's `data` being `{"body": "<the text>"}`.
    /// Events of `json` and `raw` bodies are named (and routed as)
    /// `event_name`. Default `"envelope"`.
    pub body: Body,
    /// The name and routing key of events made from `json` and `raw`
    /// bodies. Default `"beanstalk.job"`.
    pub event_name: String,
    /// Most jobs reserved before one spool commit, and how many committed
    /// jobs are remembered to recognise one that comes back. 1 to 1000.
    /// Default 100.
    pub batch_size: usize,
    /// Reservations a job may have had before deskbus buries it instead of
    /// taking it again (the server's `reserves` count, which survives a
    /// deskbus crash but not a server restart). 0 never buries. Default 5.
    pub max_attempts: u32,
}

/// The job body formats of [`BeanstalkSourceConfig::body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Envelope,
    Json,
    Raw,
}

impl Default for BeanstalkSourceConfig {
    fn default() -> Self {
        BeanstalkSourceConfig {
            address: "127.0.0.1:11300".into(),
            tubes: vec!["default".into()],
            body: Body::Envelope,
            event_name: "beanstalk.job".into(),
            batch_size: 100,
            max_attempts: 5,
        }
    }
}

impl BeanstalkSourceConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<BeanstalkSourceConfig> {
        let d = BeanstalkSourceConfig::default();
        let address = t.parsed("address", parse_address).unwrap_or(d.address);
        let tubes = match t.string_list("tubes") {
            Some(tubes) => {
                if tubes.is_empty() {
                    t.ctx.error(
                        t.key_span("tubes"),
                        format!("`{}` needs at least one tube", t.path("tubes")),
                    );
                }
                let mut names: Vec<String> = Vec::with_capacity(tubes.len());
                for tube in tubes {
                    if let Err(message) = check_beanstalk_tube(&tube.value) {
                        t.ctx
                            .error(tube.span, format!("`{}`: {message}", t.path("tubes")));
                    } else if !names.contains(&tube.value) {
                        names.push(tube.value);
                    }
                }
                names
            }
            None => d.tubes,
        };
        let body = t
            .parsed("body", |s| match s {
                "envelope" => Ok(Body::Envelope),
                "json" => Ok(Body::Json),
                "raw" => Ok(Body::Raw),
                other => Err(format!(
                    "{other:?} is not \"envelope\", \"json\" or \"raw\""
                )),
            })
            .unwrap_or(d.body);
        let event_name = t
            .parsed("event_name", |s| {
                deskbus_event::check_event_name(s)
                    .map(|()| s.to_owned())
                    .map_err(|e| e.to_string())
            })
            .unwrap_or(d.event_name);
        let batch_size = t
            .integer("batch_size", 1..=1000)
            .map_or(d.batch_size, |n| n as usize);
        let max_attempts = t
            .integer("max_attempts", 0..=i64::from(u32::MAX))
            .map_or(d.max_attempts, |n| n as u32);
        Some(BeanstalkSourceConfig {
            address,
            tubes,
            body,
            event_name,
            batch_size,
            max_attempts,
        })
    }
}

use std::str::FromStr;
use std::time::Duration;

use crate::config::Secret;
use crate::config::walker::Table;

/// `[sources.X]` `type = "osticket"`
///
/// Captures what happens in an osTicket help desk (1.10 to 1.18) by reading
/// its MariaDB/MySQL database — no PHP plugin. It polls the append-only id
/// streams `thread_entry` (messages, replies, notes) and `thread_event`
/// (created, closed, reopened, assigned, transferred, edited, deleted) and
/// emits `ticket.created`, `ticket.message`, `ticket.response`,
/// `ticket.note`, `ticket.closed`, `ticket.reopened`, `ticket.assigned`,
/// `ticket.transferred`, `ticket.edited` and `ticket.deleted`, each with the
/// ticket's ids and resolved names (department, help topic as
/// `Parent / Child`, status name and state, user, agent, number, subject).
/// `ticket.created` starts with the six fields of the osTicket streamer's
/// `tickets_creation` use case. The event `time` is osTicket's timestamp
/// in UTC; `datetime_complete` is osTicket's own text, in the database
/// server's zone, as the plugin sent it.
///
/// The position read so far is committed with the events it produced, so
/// after a crash or restart capture resumes exactly where it stopped. Ids
/// that become visible out of order (concurrent inserts, a rolled-back
/// one) are waited for `gap_grace`, then skipped. The source only reads:
/// a user with `SELECT` on osTicket's tables is enough. To name the ticket
/// of a `ticket.deleted` (osTicket deletes its rows), it keeps a map of
/// every ticket's thread in memory, some 60 bytes per ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct OsticketSourceConfig {
    /// The database, as `mysql://user:password@host:3306/database`
    /// (MariaDB or MySQL; no TLS in this build). A `timezone` query
    /// parameter (e.g. `?timezone=%2B02:00`) sets the session's time zone;
    /// by default none is set, so the session has the server's default, as
    /// osTicket's own connections do. The password is never logged.
    /// Required.
    pub url: Secret,
    /// The prefix of osTicket's tables, chosen at install (`TABLE_PREFIX`
    /// in `include/ost-config.php`). At most 32 letters, digits and `_`.
    /// Default `"ost_"`.
    pub table_prefix: String,
    /// How often the database is asked for new rows. A poll that returns a
    /// full batch is followed at once by the next. 10ms to 1h. Default `"1s"`.
    pub poll_interval: Duration,
    /// Where to begin when this source has no stored position yet:
    /// `"now"` (only what happens from now on), `"beginning"` (every entry
    /// and event still in the database), or an RFC 3339 time such as
    /// `"2026-01-31T00:00:00Z"` (what happened from then on). Ignored once
    /// a position is stored. Default `"now"`.
    pub start: Start,
    /// How long the position waits at a missing id before skipping it. Ids
    /// are assigned when a row is inserted but become visible when its
    /// transaction commits, so id 11 can appear after id 12; a rolled-back
    /// insert or a deleted ticket leaves a gap forever. Rows after a gap
    /// are emitted at once; the gap only holds the stored position. A gap
    /// below a row older than `gap_grace` is skipped at once: osTicket
    /// commits each insert as it goes, so it is a delete or a rollback, not
    /// a commit in flight. At most 24h. Default `"5s"`.
    pub gap_grace: Duration,
    /// Most rows read from each table per poll (and committed per
    /// transaction). 1 to 10000. Default 500.
    pub batch_size: u32,
    /// The zone osTicket's DATETIMEs are written in. `"server"`: the
    /// database session's zone, which the server itself applies
    /// (`UNIX_TIMESTAMP`), so daylight-saving changes are right for old
    /// and new rows alike — osTicket writes with `NOW()` in that zone.
    /// Otherwise an IANA name (`"America/New_York"`) or a fixed offset
    /// (`"+02:00"`, `"UTC"`), applied by deskbus, for a server whose
    /// session zone differs from the one osTicket used. Default `"server"`.
    pub timezone: TimeZoneSetting,
    /// On osTicket versions that log no `deleted` thread event (1.10),
    /// how often the tickets deskbus knows are checked for deletion; a
    /// ticket missing twice in a row gets `ticket.deleted`. `"0s"` turns
    /// the sweep off. Default `"60s"`.
    pub delete_sweep: Duration,
}

/// Where a source without a stored position begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Now,
    Beginning,
    At(jiff::Timestamp),
}

/// The zone osTicket's DATETIME columns are in.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeZoneSetting {
    /// The session's zone, applied by the server.
    Server,
    /// A zone applied by deskbus (`name` as configured, for logs).
    Fixed {
        name: String,
        zone: jiff::tz::TimeZone,
    },
}

impl OsticketSourceConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<OsticketSourceConfig> {
        let url = match t.has("url") {
            true => t.parsed("url", |url| {
                parse_url(url).map(|()| Secret::new(url.to_owned()))
            }),
            false => {
                t.ctx.error(
                    t.span.clone(),
                    format!(
                        "`{}` needs `url` (mysql://user:password@host:3306/database)",
                        t.name
                    ),
                );
                None
            }
        };
        let table_prefix = t
            .parsed("table_prefix", |p| {
                if p.len() > 32 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    Err(format!(
                        "{p:?} must be at most 32 letters, digits or '_' (it names tables)"
                    ))
                } else {
                    Ok(p.to_owned())
                }
            })
            .unwrap_or_else(|| "ost_".into());
        let poll_interval = t.duration_or("poll_interval", Duration::from_secs(1));
        if poll_interval < Duration::from_millis(10) || poll_interval > Duration::from_secs(3600) {
            t.ctx.error(
                t.key_span("poll_interval"),
                format!("`{}` must be between 10ms and 1h", t.path("poll_interval")),
            );
        }
        let start = t.parsed("start", parse_start).unwrap_or(Start::Now);
        let gap_grace = t.duration_or("gap_grace", Duration::from_secs(5));
        if gap_grace > Duration::from_secs(24 * 3600) {
            t.ctx.error(
                t.key_span("gap_grace"),
                format!("`{}` must be at most 24h", t.path("gap_grace")),
            );
        }
        let batch_size = t.integer("batch_size", 1..=10_000).unwrap_or(500) as u32;
        let timezone = t
            .parsed("timezone", parse_timezone)
            .unwrap_or(TimeZoneSetting::Server);
        let delete_sweep = t.duration_or("delete_sweep", Duration::from_secs(60));
        t.finish();
        Some(OsticketSourceConfig {
            url: url?,
            table_prefix,
            poll_interval,
            start,
            gap_grace,
            batch_size,
            timezone,
            delete_sweep,
        })
    }
}

/// Checks the URL without ever echoing it (it holds the password).
fn parse_url(text: &str) -> Result<(), String> {
    if !text.starts_with("mysql://") {
        return Err("must start with mysql://".into());
    }
    sqlx::mysql::MySqlConnectOptions::from_str(text)
        .map(|_| ())
        .map_err(|_| "is not a valid mysql://user:password@host:port/database URL".into())
}

fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "now" => Ok(Start::Now),
        "beginning" => Ok(Start::Beginning),
        other => other.parse::<jiff::Timestamp>().map(Start::At).map_err(|_| {
            format!(
                "{other:?} is not \"now\", \"beginning\" or an RFC 3339 time such as \"2026-01-31T00:00:00Z\""
            )
        }),
    }
}

pub(super) fn parse_timezone(text: &str) -> Result<TimeZoneSetting, String> {
    if text == "server" {
        return Ok(TimeZoneSetting::Server);
    }
    let fixed = |zone| {
        Ok(TimeZoneSetting::Fixed {
            name: text.to_owned(),
            zone,
        })
    };
    if let Some(offset) = parse_offset(text) {
        return fixed(jiff::tz::TimeZone::fixed(offset));
    }
    match jiff::tz::TimeZone::get(text) {
        Ok(zone) => fixed(zone),
        Err(_) => Err(format!(
            "{text:?} is not \"server\", a known IANA time zone (\"Europe/Paris\") or an offset (\"+02:00\")"
        )),
    }
}

/// `+HH:MM`, `-HH:MM`, `+HH`, `Z`, `UTC`.
fn parse_offset(text: &str) -> Option<jiff::tz::Offset> {
    if text == "Z" || text == "UTC" {
        return Some(jiff::tz::Offset::UTC);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    if hours.is_empty() || hours.len() > 2 || minutes.len() > 2 {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 14 || minutes > 59 {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("now"), Ok(Start::Now));
        assert_eq!(parse_start("beginning"), Ok(Start::Beginning));
        assert_eq!(
            parse_start("2026-01-31T10:00:00+01:00"),
            Ok(Start::At("2026-01-31T09:00:00Z".parse().unwrap()))
        );
        assert!(parse_start("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn time_zones() {
        assert_eq!(parse_timezone("server"), Ok(TimeZoneSetting::Server));
        for (text, seconds) in [
            ("+02:00", 7200),
            ("-05:30", -19800),
            ("+3", 10800),
            ("UTC", 0),
        ] {
            match parse_timezone(text).unwrap() {
                TimeZoneSetting::Fixed { zone, .. } => assert_eq!(
                    zone.to_offset(jiff::Timestamp::UNIX_EPOCH).seconds(),
                    seconds,
                    "{text}"
                ),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_timezone("America/New_York"),
            Ok(TimeZoneSetting::Fixed { .. })
        ));
        for bad in ["Mars/Olympus", "+25:00", "+1:99", ""] {
            assert!(parse_timezone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_checked_without_echoing_them() {
        assert!(parse_url("mysql://u:secret@127.0.0.1:3306/osticket").is_ok());
        let error = parse_url("postgres://u:secret@h/db").unwrap_err();
        assert!(!error.contains("secret"));
    }
}

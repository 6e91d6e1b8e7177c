use std::fmt;
use std::time::Duration;

use crate::config::Secret;
use crate::config::walker::{Table, parse_duration};
use crate::url::{percent_decode, userinfo_range};

use super::subject::{check_prefix, check_stream_subject};

/// `[streams.X]` `type = "nats"`
///
/// Publishes one JetStream message per event to the subject
/// `subject_prefix` + the use case's queue (e.g. `deskbus.tickets.sales`),
/// with the headers `Nats-Msg-Id` (`<event id>/<use case>`: the server drops a copy it
/// already stored within the stream's `duplicate_window`, so a retry after a
/// lost acknowledgement stores nothing twice) and `Content-Type`. An event
/// is delivered only once the server's PubAck says it was stored; a batch
/// is sent as one pipeline and its acks awaited together. A retry that
/// comes after the `duplicate_window` (2 minutes by default) may store an
/// event a second time, with the same `Nats-Msg-Id`.
///
/// Retried: an unreachable or restarting server, a PubAck that does not come
/// within `timeout`, a full stream, and no stream capturing the subject
/// ("no responders") — that one is a setup problem an operator fixes by
/// creating the stream (or `create_stream`), after which the spooled events
/// flow without a `deskbus dlq retry`; bound it with the stream's
/// `retry.max_attempts` or `retry.max_age` if it should give up.
/// Dead letters at once: a queue that makes an invalid subject (empty
/// token, whitespace or control characters, the wildcards `*` or `>`, a
/// leading `$` of the system subjects, longer than 1024 bytes) and a message
/// larger than the server's `max_payload` or the stream's `max_msg_size`.
#[derive(Clone)]
pub struct NatsConfig {
    /// The server, `nats://host:port`, or several separated by commas.
    /// Credentials may be written in the URL, percent-encoded
    /// (`nats://user:password@host:4222`, `nats://token@host:4222`; the
    /// first server's are used for all); they are never logged. Default `"nats://127.0.0.1:4222"`.
    pub url: String,
    /// Put before the use case's queue to make the subject; empty, or ending
    /// with `.`. Default `"deskbus."`.
    pub subject_prefix: String,
    /// How long to wait for the server: to connect, and for each batch's
    /// PubAcks. Default `"10s"`.
    pub timeout: Duration,
    /// `token = "…"` (or `token_file`), or `user = "…"` with `password = "…"`
    /// (or `password_file`), as top-level keys of the stream. Optional.
    pub auth: Option<NatsAuth>,
    /// `create_stream = { name = "DESKBUS", … }`: the JetStream stream to
    /// create when it does not exist (an existing stream is never changed).
    /// Messages then carry `Nats-Expected-Stream` with its name: one whose
    /// subject another stream captures is refused and retried, never
    /// stored there. Optional: without it the stream must be set up
    /// beforehand, and whichever stream captures the subject stores it.
    pub create_stream: Option<NatsStreamSpec>,
}

#[derive(Clone)]
pub enum NatsAuth {
    Token(Secret),
    UserPassword { user: String, password: Secret },
}

/// `[streams.X.create_stream]`
///
/// The JetStream stream deskbus creates on connecting if no stream of that
/// name exists, e.g. `create_stream = { name = "DESKBUS", max_age = "7d" }`.
/// It is created with `limits` retention and `old` discard; everything else
/// is the server's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsStreamSpec {
    /// The stream's name (letters, digits, `-` and `_`). Required.
    pub name: String,
    /// Subjects it captures; wildcards allowed. Default: the prefix followed
    /// by `>` (`["deskbus.>"]`); required when `subject_prefix` is empty.
    pub subjects: Vec<String>,
    /// How long messages are kept; `"0s"` keeps them until another limit
    /// removes them. Days and weeks are allowed (`"7d"`). Default `"0s"`.
    pub max_age: Duration,
    /// `"file"` (default) or `"memory"`.
    pub storage: NatsStorage,
    /// How long the server remembers message ids to drop duplicates; no
    /// longer than `max_age` when that is set. Default `"2m"`.
    pub duplicate_window: Duration,
    /// Copies kept in a cluster, 1 to 5. Default 1.
    pub replicas: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsStorage {
    File,
    Memory,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "deskbus.".into(),
            timeout: Duration::from_secs(10),
            auth: None,
            create_stream: None,
        }
    }
}

// By hand: the URL may hold a password.
impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("subject_prefix", &self.subject_prefix)
            .field("timeout", &self.timeout)
            .field("auth", &self.auth)
            .field("create_stream", &self.create_stream)
            .finish()
    }
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::Token(_) => f.write_str("Token([redacted])"),
            NatsAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"[redacted]")
                .finish(),
        }
    }
}

impl NatsConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<NatsConfig> {
        let d = NatsConfig::default();
        let url = t.parsed("url", parse_urls).unwrap_or(d.url);
        let subject_prefix = t
            .parsed("subject_prefix", |s| check_prefix(s).map(|()| s.to_owned()))
            .unwrap_or(d.subject_prefix);
        let timeout = t.duration_or("timeout", d.timeout);
        if timeout.is_zero() {
            t.ctx.error(
                t.key_span("timeout"),
                format!("`{}` must be more than 0s", t.path("timeout")),
            );
        }
        let auth = auth(t);
        if auth.is_some() && url_has_credentials(&url) {
            t.ctx.error(
                t.key_span("url"),
                format!(
                    "[{}]: give credentials in `url` or in `token`/`user`, not both",
                    t.name
                ),
            );
        }
        let create_stream = t
            .table("create_stream")
            .and_then(|s| stream_spec(t, &s, &subject_prefix));
        Some(NatsConfig {
            url,
            subject_prefix,
            timeout,
            auth,
            create_stream,
        })
    }

    /// The URL without its credentials, for messages.
    pub(crate) fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

fn auth(t: &Table<'_, '_, '_>) -> Option<NatsAuth> {
    let token = t.secret("token", "token_file");
    let user = t.string("user");
    let password = t.secret("password", "password_file");
    match (token, user, password) {
        (None, None, None) => None,
        (Some(token), None, None) => Some(NatsAuth::Token(token)),
        (None, Some(user), Some(password)) => Some(NatsAuth::UserPassword {
            user: user.value,
            password,
        }),
        _ => {
            t.ctx.error(
                t.span.clone(),
                format!(
                    "[{}] takes `token` (or `token_file`), or `user` with `password` (or `password_file`)",
                    t.name
                ),
            );
            None
        }
    }
}

fn stream_spec(
    t: &Table<'_, '_, '_>,
    s: &Table<'_, '_, '_>,
    prefix: &str,
) -> Option<NatsStreamSpec> {
    let name = s.parsed("name", |n| check_stream_name(n).map(|()| n.to_owned()));
    if name.is_none() && !s.has("name") {
        t.ctx
            .error(s.span.clone(), format!("[{}] needs `name`", s.name));
    }
    let subjects = match s.string_list("subjects") {
        Some(list) => {
            for subject in &list {
                if let Err(message) = check_stream_subject(&subject.value) {
                    t.ctx.error(
                        subject.span.clone(),
                        format!("`{}`: {message}", s.path("subjects")),
                    );
                }
            }
            if list.is_empty() {
                t.ctx.error(
                    s.key_span("subjects"),
                    format!("`{}` must not be empty", s.path("subjects")),
                );
            }
            list.into_iter().map(|l| l.value).collect()
        }
        None if prefix.is_empty() => {
            t.ctx.error(
                s.span.clone(),
                format!(
                    "[{}] needs `subjects` when `subject_prefix` is empty",
                    s.name
                ),
            );
            Vec::new()
        }
        None => vec![format!("{prefix}>")],
    };
    let max_age = s
        .parsed("max_age", parse_long_duration)
        .unwrap_or(Duration::ZERO);
    let storage = s
        .parsed("storage", |v| match v {
            "file" => Ok(NatsStorage::File),
            "memory" => Ok(NatsStorage::Memory),
            other => Err(format!("{other:?} is not \"file\" or \"memory\"")),
        })
        .unwrap_or(NatsStorage::File);
    let duplicate_window = s.duration_or("duplicate_window", Duration::from_secs(120));
    if !max_age.is_zero() && duplicate_window > max_age {
        t.ctx.error(
            s.key_span("duplicate_window"),
            format!(
                "`{}` must not be longer than `max_age` ({max_age:?})",
                s.path("duplicate_window")
            ),
        );
    }
    let replicas = s.integer("replicas", 1..=5).map_or(1, |n| n as usize);
    s.finish();
    Some(NatsStreamSpec {
        name: name?,
        subjects,
        max_age,
        storage,
        duplicate_window,
        replicas,
    })
}

/// Each comma-separated server must parse as a NATS server address.
fn parse_urls(text: &str) -> Result<String, String> {
    for (n, part) in text.split(',').enumerate() {
        let part = part.trim();
        if part.is_empty() || part.parse::<async_nats::ServerAddr>().is_err() {
            return Err(format!(
                "{} is not a server URL like nats://127.0.0.1:4222",
                server_name(text, n, part)
            ));
        }
    }
    Ok(text.to_owned())
}

/// How a message names server `n` (from 0) of the list `text`: by itself,
/// redacted, unless `text` holds credentials at all. A password with a raw
/// `,` is cut in two by the split, and its first half would print as a
/// server of its own, unredacted (it has no `@`).
fn server_name(text: &str, n: usize, part: &str) -> String {
    match text.contains('@') {
        true => format!(
            "server {} of the list (a `,` in a password must be written %2C)",
            n + 1
        ),
        false => format!("{part:?}"),
    }
}

/// The server addresses of a checked `url`, without their credentials
/// (async-nats ignores them, and logs addresses at debug level), and the
/// credentials as [`NatsAuth`].
pub(super) fn servers(
    url: &str,
) -> Result<(Vec<async_nats::ServerAddr>, Option<NatsAuth>), String> {
    let parse = |n: usize, part: &str| {
        part.parse::<async_nats::ServerAddr>()
            .map_err(|_| format!("{} is not a server URL", server_name(url, n, part)))
    };
    let mut with_credentials = Vec::new();
    let mut addrs = Vec::new();
    for (n, part) in url.split(',').map(str::trim).enumerate() {
        with_credentials.push(parse(n, part)?);
        let bare = match userinfo_range(part) {
            // The userinfo and its `@`.
            Some(range) => format!("{}{}", &part[..range.start], &part[range.end + 1..]),
            None => part.to_owned(),
        };
        addrs.push(parse(n, &bare)?);
    }
    Ok((addrs, url_auth(&with_credentials)))
}

/// Credentials written in the URL (`user:password@` or `token@`), from the
/// first server that has them: async-nats itself ignores them.
fn url_auth(addrs: &[async_nats::ServerAddr]) -> Option<NatsAuth> {
    let addr = addrs.iter().find(|a| a.username().is_some())?;
    let user = decode_userinfo(addr.username()?);
    Some(match addr.password() {
        Some(password) => NatsAuth::UserPassword {
            user,
            password: Secret::new(decode_userinfo(password)),
        },
        None => NatsAuth::Token(Secret::new(user)),
    })
}

/// URL userinfo is percent-encoded (`p%40ss` for `p@ss`).
fn decode_userinfo(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode(text.as_bytes())).into_owned()
}

fn url_has_credentials(url: &str) -> bool {
    url.split(',').any(|part| userinfo_range(part).is_some())
}

/// `url` with the credentials of each of its servers masked.
pub(crate) fn redact_url(url: &str) -> String {
    url.split(',')
        .map(crate::url::redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// Stream names go into API subjects: no `.`, wildcards, whitespace or path separators.
fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{name:?} is not a stream name (letters, digits, `-` and `_`, at most 255)"
        ));
    }
    Ok(())
}

/// A duration that may also be written in days or weeks (`"7d"`, `"2w"`),
/// counted as 24-hour days: a stream's `max_age` is often that long.
fn parse_long_duration(text: &str) -> Result<Duration, String> {
    if let Ok(d) = parse_duration(text) {
        return Ok(d);
    }
    let error = || format!("{text:?} is not a duration (try \"1h\", \"7d\", \"2w\")");
    let span: jiff::Span = text.parse().map_err(|_| error())?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| error())?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("nats://bob:s3cret@nats.internal:4222"),
            "nats://bob:[redacted]@nats.internal:4222"
        );
        assert_eq!(
            redact_url("nats://tok@a:4222, tls://b:4222"),
            "nats://[redacted]@a:4222, tls://b:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:p@host:4222"), "u:[redacted]@host:4222");
        assert_eq!(
            redact_url("nats://a:4222,nats://u:pa/ss@b:4222"),
            "nats://a:4222,nats://u:[redacted]@b:4222"
        );
        assert!(url_has_credentials("nats://a:4222,nats://u:p@b:4222"));
        assert!(!url_has_credentials("nats://a:4222"));
    }

    #[test]
    fn urls_parse_one_or_several_servers() {
        assert!(parse_urls("nats://127.0.0.1:4222").is_ok());
        assert!(parse_urls("nats://a:4222,nats://b:4222").is_ok());
        assert!(parse_urls("127.0.0.1:4222").is_ok());
        let error = parse_urls("nats://u:hunter2@:bad:port").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(parse_urls("nats://a:4222,").is_err());
        // A raw `,` cuts the password in two: neither half is printed.
        let error = parse_urls("nats://u:hun,ter2@b:4222").unwrap_err();
        assert!(!error.contains("hun") && !error.contains("ter2"), "{error}");
        assert!(error.starts_with("server 1 of the list"), "{error}");
        let error = parse_urls("nats://a:4222,nats://b:port").unwrap_err();
        assert!(
            error.starts_with("\"nats://b:port\" is not a server URL"),
            "{error}"
        );
        let (addrs, auth) = servers("nats://a:4222, nats://u:hunter2@b:4222").unwrap();
        assert_eq!(addrs.len(), 2);
        assert!(auth.is_some());
        assert!(!format!("{addrs:?}").contains("hunter2"), "{addrs:?}");
    }

    #[test]
    fn url_credentials_become_auth() {
        match servers("nats://a:4222,nats://bob:p%40ss@b:4222").unwrap().1 {
            Some(NatsAuth::UserPassword { user, password }) => {
                assert_eq!(user, "bob");
                assert_eq!(password.expose(), "p@ss");
            }
            other => panic!("{other:?}"),
        }
        let (_, auth) = servers("nats://s3cr3t@a:4222").unwrap();
        assert!(matches!(auth, Some(NatsAuth::Token(t)) if t.expose() == "s3cr3t"));
        assert!(servers("nats://a:4222").unwrap().1.is_none());
    }

    #[test]
    fn long_durations_take_days_and_weeks() {
        assert_eq!(parse_long_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_long_duration("7d"),
            Ok(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            parse_long_duration("1w 1d"),
            Ok(Duration::from_secs(8 * 86_400))
        );
        assert!(parse_long_duration("1 month").is_err());
        assert!(parse_long_duration("soon").is_err());
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(check_stream_name("DESKBUS").is_ok());
        assert!(check_stream_name("desk-bus_2").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b"] {
            assert!(check_stream_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_credentials() {
        let config = NatsConfig {
            url: "nats://bob:hunter2@host:4222".into(),
            auth: Some(NatsAuth::Token(Secret::new("t0ken".into()))),
            ..NatsConfig::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("t0ken"),
            "{text}"
        );
    }
}

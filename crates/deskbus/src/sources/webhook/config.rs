use std::net::SocketAddr;
use std::time::Duration;

use crate::config::walker::Table;
use crate::config::{Secret, parse_socket_addr};
use crate::use_cases::Unmatched;

/// `[sources.X]` `type = "webhook"`
///
/// Accepts events over HTTP POST.
/// A request holds one envelope (JSON object), a JSON array of envelopes, or
/// NDJSON (one envelope per line, with `Content-Type: application/x-ndjson`).
/// An envelope is `{"name", "data", "origin_uuid"?, "id"?, "time"?, "routing_key"?}`.
/// The answer is `202 {"accepted": [ids]}` only once every event of the
/// request is committed to the spool; any bad event refuses the whole request.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Listen address. Default `127.0.0.1:9681`.
    pub address: SocketAddr,
    /// Path that accepts POSTs. Default `/events`.
    pub path: String,
    /// Largest request body, in bytes (at most 268435456, 256 MiB); larger
    /// ones get 413, and one not sent whole within 30 s gets 408.
    /// Credentials are checked before the body is read, as far as the
    /// headers allow. Default 10485760 (10 MiB).
    pub max_body_bytes: usize,
    /// Most events in one request. 1 to 1000000. Default 10000.
    pub max_events: usize,
    /// Most bytes of request bodies held at once, across requests (read,
    /// or waiting for their commit), from `max_body_bytes` to 4294967295
    /// (about 4 GiB). A request whose body would go past it waits up to 1 s for
    /// room, then gets 503 with `Retry-After: 1`. Counted as bodies arrive,
    /// so clients that send slowly hold only what they sent.
    /// Default 268435456 (256 MiB), or `max_body_bytes` if larger.
    pub max_buffered_bytes: usize,
    /// What to do with an event no enabled use case takes: `"reject"` (default,
    /// 422) or `"drop"` (accept and count it as rejected).
    pub unmatched: Unmatched,
    /// Optional authentication; see [`WebhookAuth`].
    pub auth: Option<WebhookAuth>,
}

/// `[sources.X.auth]` (webhook)
///
/// `auth = { bearer_token = "…" }` or
/// `auth = { hmac_sha256_secret = "…", header = "X-Deskbus-Signature" }`.
/// Each secret also has a `*_file` form (`bearer_token_file`,
/// `hmac_sha256_secret_file`). A request without credentials gets 401, one with
/// wrong credentials 403.
#[derive(Debug, Clone)]
pub enum WebhookAuth {
    /// `Authorization: Bearer <token>`, compared in constant time.
    Bearer(Secret),
    /// The hex HMAC-SHA256 of the body (optionally prefixed `sha256=`) in
    /// `header` (default `X-Deskbus-Signature`). With `timestamp_tolerance`
    /// (e.g. `"5m"`), the request must also carry `timestamp_header` (default
    /// `X-Deskbus-Timestamp`, unix seconds) within that tolerance of now, and
    /// the signature covers `"<timestamp>.<body>"`, which stops replays.
    Hmac {
        secret: Secret,
        header: String,
        timestamp_header: String,
        timestamp_tolerance: Option<Duration>,
    },
}

impl WebhookConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<WebhookConfig> {
        let address = t
            .parsed("address", parse_socket_addr)
            .unwrap_or(([127, 0, 0, 1], 9681).into());
        let path = t.string_or("path", "/events");
        if path.contains([':', '*', '{', '}']) {
            t.ctx.error(
                t.key_span("path"),
                format!(
                    "`{}` must be a plain path: ':', '*', '{{' and '}}' are not allowed",
                    t.path("path")
                ),
            );
        }
        if !path.starts_with('/') {
            t.ctx.error(
                t.key_span("path"),
                format!("`{}.path` must start with '/'", t.name),
            );
        }
        // At most 256 MiB: well under SQLite's largest value (10^9 bytes),
        // so a body taken is a body the spool can hold, not a 503 retried
        // for ever.
        let max_body_bytes = t
            .integer("max_body_bytes", 1..=256 << 20)
            .unwrap_or(10 << 20) as usize;
        let max_events = t.integer("max_events", 1..=1_000_000).unwrap_or(10_000) as usize;
        let max_buffered_bytes = match t.integer("max_buffered_bytes", 1..=u32::MAX as i64) {
            Some(n) if (n as usize) < max_body_bytes => {
                t.ctx.error(
                    t.key_span("max_buffered_bytes"),
                    format!(
                        "`{}` ({n}) must be at least `max_body_bytes` ({max_body_bytes}): \
                         a body that large could never be taken",
                        t.path("max_buffered_bytes")
                    ),
                );
                max_body_bytes
            }
            Some(n) => n as usize,
            None => max_body_bytes.max(256 << 20),
        };
        let unmatched = t
            .parsed("unmatched", |s| match s {
                "reject" => Ok(Unmatched::Reject),
                "drop" => Ok(Unmatched::Drop),
                other => Err(format!("{other:?} is not \"reject\" or \"drop\"")),
            })
            .unwrap_or(Unmatched::Reject);
        let auth = t.table("auth").and_then(|a| {
            let bearer = a.secret("bearer_token", "bearer_token_file");
            let hmac = a.secret("hmac_sha256_secret", "hmac_sha256_secret_file");
            let header = a.string_or("header", "X-Deskbus-Signature");
            let timestamp_header = a.string_or("timestamp_header", "X-Deskbus-Timestamp");
            let timestamp_tolerance = a.duration("timestamp_tolerance");
            a.finish();
            match (bearer, hmac) {
                (Some(token), None) => Some(WebhookAuth::Bearer(token)),
                (None, Some(secret)) => Some(WebhookAuth::Hmac { secret, header, timestamp_header, timestamp_tolerance }),
                (Some(_), Some(_)) => {
                    t.ctx.error(a.span.clone(), "`auth` takes a bearer token or an HMAC secret, not both");
                    None
                }
                (None, None) => {
                    t.ctx.error(a.span.clone(), "`auth` needs `bearer_token` or `hmac_sha256_secret` (or their `_file` forms)");
                    None
                }
            }
        });
        Some(WebhookConfig {
            address,
            path,
            max_body_bytes,
            max_events,
            max_buffered_bytes,
            unmatched,
            auth,
        })
    }
}

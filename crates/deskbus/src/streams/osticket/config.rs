use std::time::Duration;

use crate::config::Secret;
use crate::config::walker::Table;

/// `[streams.X]` `type = "osticket"`
///
/// Creates one osTicket ticket per event through osTicket's HTTP API
/// (`POST /api/tickets.json`, header `X-API-Key`). The ticket is the use
/// case's `ticket` mapping (see `[use_cases.NAME]` `ticket`); the use case
/// needs no `queue`.
///
/// osTicket answers 201 with the ticket's number: deskbus logs it and keeps
/// it in the spool (table `links`, namespace `osticket:<stream id>`, key
/// `<event id>/<use case>`; a 201 without a number is kept as
/// "created, number not given"). If it cannot be kept, the failure is
/// reported and the event still counts as delivered: the ticket exists.
/// Another 2xx (no ticket number: `url` is not osTicket's tickets.json)
/// sends the event to dead letters. A 4xx answer (unreadable request, invalid API
/// key or address not authorised, e-mail banned...) and a refusal on
/// validation ("Unable to create new ticket: validation errors", or 1.18's
/// "Unable to create new ticket :<reason>", whatever its status, unless the
/// reason is "unknown error") send the event to dead letters with
/// osTicket's message; 408, 429, other 5xx answers and connection errors
/// are retried, after `Retry-After` when given. Redirects are not
/// followed. A refused key
/// sends every ticket to dead letters until it is fixed; then
/// `deskbus dlq retry --stream <id>` sends them again, under the same ids.
///
/// At least once, not exactly once: osTicket's API takes no idempotency
/// key. Before sending, deskbus looks for the event's recorded ticket
/// number and, when there is one, counts the event as delivered without
/// sending it again (this covers a crash after the number was recorded).
/// But if deskbus stops, or the request times out, after osTicket created
/// the ticket and before its number is recorded, the retry creates the
/// ticket a second time. Keep `timeout` well above osTicket's answer time.
///
/// `deskbus check --connect` posts an empty JSON object: osTicket checks the
/// key, the address it is bound to and its right to create tickets before it
/// reads the body, then refuses the body (400), so an answer of 400 proves
/// URL, key and address without creating a ticket (osTicket logs one "API
/// Error (400)" in its system logs). A 401 fails the check with osTicket's
/// message.
#[derive(Debug, Clone)]
pub struct OsticketStreamConfig {
    /// osTicket's ticket API, e.g. `"https://help.example.com/api/tickets.json"`
    /// (without osTicket's URL rewriting: `…/api/http.php/tickets.json`). Required.
    pub url: String,
    /// The API key (sent as `X-API-Key`), or `api_key_file`. osTicket binds a
    /// key to one client address, which must be the one deskbus connects
    /// from, and the key needs "Can create tickets". Required; never logged.
    pub api_key: Secret,
    /// How long one request may take. Default `"30s"`.
    pub timeout: Duration,
}

impl OsticketStreamConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<OsticketStreamConfig> {
        let url = t.http_url("url");
        if url.is_none() && !t.has("url") {
            t.ctx.error(
                t.span.clone(),
                format!(
                    "[{}] needs `url`, osTicket's ticket API (…/api/tickets.json)",
                    t.name
                ),
            );
        }
        if let Some(u) = &url
            && !u.value.trim_end_matches('/').ends_with("tickets.json")
        {
            t.ctx.warning(
                u.span.clone(),
                format!(
                    "`{}`: osTicket creates tickets at …/api/tickets.json; this URL ends elsewhere",
                    t.path("url")
                ),
            );
        }
        let api_key = t.secret("api_key", "api_key_file");
        if api_key.is_none() && !t.has("api_key") && !t.has("api_key_file") {
            t.ctx.error(
                t.span.clone(),
                format!(
                    "[{}] needs `api_key` (or `api_key_file`), an osTicket API key",
                    t.name
                ),
            );
        }
        let timeout = t.duration_or("timeout", Duration::from_secs(30));
        Some(OsticketStreamConfig {
            url: url?.value,
            api_key: api_key?,
            timeout,
        })
    }
}

use std::time::Duration;

use crate::config::Secret;
use crate::config::walker::Table;

/// `[streams.X]` `type = "http"`
///
/// POSTs events to an HTTP endpoint. A 2xx answer confirms delivery; 5xx,
/// 408, 429 (honouring `Retry-After` in seconds) and connection errors are
/// retried; any other 4xx sends the events of that request to dead letters
/// with the status and the start of the answer's body.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The endpoint; `{queue}` is replaced by the use case's queue
    /// (percent-encoded), e.g. `"http://127.0.0.1:8080/hook/{queue}"`. Required.
    pub url: String,
    /// `"single"` (default): one request per event, with the use case's
    /// content type and an `Idempotency-Key` header holding the event id.
    /// `"ndjson"`: one request per batch, one payload per line.
    /// `"json_array"`: one request per batch, a JSON array of the payloads
    /// (each payload must be JSON).
    pub mode: HttpMode,
    /// Extra request headers, e.g. `{ "X-Team" = "support" }`.
    pub headers: Vec<(String, String)>,
    /// `auth = { bearer_token = "…" }` (or `bearer_token_file`), or
    /// `auth = { user = "…", password = "…" }` (or `password_file`). Optional.
    pub auth: Option<HttpAuth>,
    /// How long one request may take. Default `"30s"`.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMode {
    Single,
    Ndjson,
    JsonArray,
}

#[derive(Debug, Clone)]
pub enum HttpAuth {
    Bearer(Secret),
    Basic { user: String, password: Secret },
}

impl HttpConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<HttpConfig> {
        let url = t.http_url("url");
        if url.is_none() && !t.has("url") {
            t.ctx
                .error(t.span.clone(), format!("[{}] needs `url`", t.name));
        }
        let mode = t
            .parsed("mode", |s| match s {
                "single" => Ok(HttpMode::Single),
                "ndjson" => Ok(HttpMode::Ndjson),
                "json_array" => Ok(HttpMode::JsonArray),
                other => Err(format!(
                    "{other:?} is not \"single\", \"ndjson\" or \"json_array\""
                )),
            })
            .unwrap_or(HttpMode::Single);
        let headers = t
            .string_map("headers")
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        let auth = t.table("auth").and_then(|a| {
            let bearer = a.secret("bearer_token", "bearer_token_file");
            let user = a.string("user");
            let password = a.secret("password", "password_file");
            a.finish();
            match (bearer, user, password) {
                (Some(token), None, None) => Some(HttpAuth::Bearer(token)),
                (None, Some(user), Some(password)) => Some(HttpAuth::Basic {
                    user: user.value,
                    password,
                }),
                _ => {
                    t.ctx.error(
                        a.span.clone(),
                        "`auth` takes `bearer_token`, or `user` with `password`",
                    );
                    None
                }
            }
        });
        let timeout = t.duration_or("timeout", Duration::from_secs(30));
        Some(HttpConfig {
            url: url?.value,
            mode,
            headers,
            auth,
            timeout,
        })
    }
}

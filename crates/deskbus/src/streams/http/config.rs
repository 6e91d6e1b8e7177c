use std::time::Duration;

use crate::config::Secret;
use crate::config::walker::Table;

/// `[streams.X]` `type = "http"`
///
/// POSTs events to an HTTP endpoint. A 2xx answer confirms delivery; 5xx,
/// 408, 429 (honouring `Retry-After`, in seconds or as a date) and connection errors are
/// retried; any other 4xx sends the events of that request to dead letters
/// with the status and the start of the answer's body (a batch refused so
/// is sent again one event per request, so that only the refused ones go).
/// A request that cannot be built (a header value HTTP cannot carry) goes
/// to dead letters at once. Events sent one per request carry an
/// `Idempotency-Key`, `<event id>/<use case>`.
#[derive(Clone)]
pub struct HttpConfig {
    /// The endpoint; `{queue}` is replaced by the use case's queue
    /// (percent-encoded), e.g. `"http://127.0.0.1:8080/hook/{queue}"`. Required.
    pub url: String,
    /// `"single"` (default): one request per event, with the use case's
    /// content type and an `Idempotency-Key` header, `<event id>/<use case>`
    /// (one event taken by two use cases is two deliveries).
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

/// Hand-written: a header's value may be a credential (`X-Api-Key`), and
/// the URL may hold a user and password.
impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("HttpConfig")
            .field("url", &crate::url::redact_url(&self.url))
            .field("mode", &self.mode)
            .field("headers", &headers)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_header_value_and_no_password() {
        let config = HttpConfig {
            url: "http://bot:hunter2@127.0.0.1:8080/hook/{queue}".into(),
            mode: HttpMode::Single,
            headers: vec![("X-Api-Key".into(), "s3cr3t-key".into())],
            auth: Some(HttpAuth::Bearer(Secret::new("t0ken".into()))),
            timeout: Duration::from_secs(30),
        };
        let shown = format!("{config:?}");
        for secret in ["hunter2", "s3cr3t-key", "t0ken"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("X-Api-Key"), "{shown}");
    }
}

//! What every stream that POSTs to an HTTP API shares (`http`, `osticket`):
//! the client's settings, how an answer's status becomes a delivery outcome,
//! and URLs without credentials for messages.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::DeliveryError;
use crate::internal_events::error_chain;
use crate::url::redact_url;

/// Longest part of an answer's body kept in a reason (reasons reach logs
/// and dead letters; an HTML error page must not fill them).
pub(crate) const BODY_SNIPPET_CHARS: usize = 200;

/// A client that never follows redirects, with deskbus's user agent.
pub(crate) fn build_client(
    timeout: Duration,
    headers: HeaderMap,
) -> Result<reqwest::Client, String> {
    // reqwest is built without a crypto provider so that ring is the only
    // one in the graph; install it (idempotent) before the first client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        // A followed 301/302/303 turns the POST into a bodiless GET whose
        // 200 would count as delivered: never follow, report instead.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("deskbus/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build http client: {e}"))
}

/// Most of a success answer's body that is read only to keep its
/// connection: the client pools a connection again only once the body has
/// been read to its end, and an unread one (beyond what came with the
/// headers) closes it.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Longest wait for the rest of a success answer's body: a body that
/// trickles must not hold the delivery (and its outcome) for the whole
/// request timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the rest of `response` and drops it, so that its connection
/// serves the next request; past [`DRAIN_LIMIT`] or [`DRAIN_TIMEOUT`] it
/// gives up (the connection is closed). Errors are ignored: the answer was
/// a success.
pub(crate) async fn drain(mut response: reqwest::Response) {
    let read_all = async {
        let mut read = 0;
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read > DRAIN_LIMIT {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, read_all).await;
}

/// A request that got no answer (connection refused, timeout...): retried.
/// One that could not even be built (a header value no HTTP request can
/// carry, a URL that is not one) would fail the same way again: permanent.
pub(crate) fn unreachable(url: &str, error: reqwest::Error) -> DeliveryError {
    if error.is_builder() {
        let error = error.without_url();
        return DeliveryError::permanent(format!(
            "cannot build a request to {}: {}",
            redact_url(url),
            error_chain(&error)
        ));
    }
    DeliveryError::retryable(unreachable_reason(url, error))
}

/// Why `url` gave no answer, without credentials (reqwest's own message
/// would quote the URL whole).
pub(crate) fn unreachable_reason(url: &str, error: reqwest::Error) -> String {
    let error = error.without_url();
    format!("{UNREACHABLE} {}: {}", redact_url(url), error_chain(&error))
}

/// How [`unreachable_reason`] begins.
const UNREACHABLE: &str = "cannot reach";

/// Whether `error` is [`unreachable`]'s: the endpoint gave no answer at all
/// (refused, timed out), so the next request of a batch would likely wait
/// for nothing too.
pub(crate) fn is_unreachable(error: &DeliveryError) -> bool {
    matches!(error, DeliveryError::Retryable { reason, .. } if reason.starts_with(UNREACHABLE))
}

/// Delivers `batch` one item after another (order within a key holds; the
/// dispatcher already runs `concurrency` batches at once). Once an endpoint
/// gave no answer, it is not waited for again by every `item` left: they
/// are retried with the one that failed.
pub(crate) async fn one_by_one<'b, T, F, Fut>(
    batch: &'b [T],
    item: &str,
    mut deliver: F,
) -> Vec<Result<(), DeliveryError>>
where
    F: FnMut(&'b T) -> Fut,
    Fut: Future<Output = Result<(), DeliveryError>>,
{
    let mut results = Vec::with_capacity(batch.len());
    let mut unreachable: Option<DeliveryError> = None;
    for one in batch {
        if let Some(error) = &unreachable {
            results.push(Err(error.clone()));
            continue;
        }
        let result = deliver(one).await;
        if let Err(error) = &result
            && is_unreachable(error)
        {
            unreachable = Some(DeliveryError::retryable(format!(
                "not sent: an earlier {item} of the batch failed: {}",
                error.reason()
            )));
        }
        results.push(result);
    }
    results
}

/// An answer that is not a success, read whole: its status, `Retry-After`
/// and the start of its body, trimmed.
pub(crate) struct Failure {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// A `Retry-After` value (RFC 9110): seconds, or an HTTP date, which is
/// read as the wait from `now` until then (none when it has passed).
fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(value).ok()?;
    let wait = now.duration_until(at);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

impl Failure {
    pub(crate) async fn read(response: reqwest::Response) -> Failure {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, jiff::Timestamp::now()));
        let body = response.text().await.unwrap_or_default();
        Failure {
            status,
            retry_after,
            body: snippet(&body),
        }
    }

    /// 408, 429 and 5xx are retried (after `Retry-After` when given); a
    /// redirect or any other status is permanent. `reason` describes it.
    pub(crate) fn into_error(self, reason: String) -> DeliveryError {
        let retry = |reason| DeliveryError::Retryable {
            reason,
            retry_after: self.retry_after,
        };
        match self.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => retry(reason),
            s if s.is_server_error() => retry(reason),
            s if s.is_redirection() => DeliveryError::permanent(format!(
                "http {s}: redirects are not followed; point `url` at the final location"
            )),
            _ => DeliveryError::permanent(reason),
        }
    }
}

/// The start of `body`, trimmed, cut at a character boundary.
pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_url_is_reported_without_its_password() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let url = "http://user:hunter2@127.0.0.1:1/x";
        let client = build_client(Duration::from_secs(5), HeaderMap::new()).unwrap();
        let error = client.post(url).send().await.unwrap_err();
        let reason = unreachable_reason(url, error);
        assert!(
            reason.starts_with("cannot reach http://user:[redacted]@127.0.0.1:1/x: "),
            "{reason}"
        );
        assert!(!reason.contains("hunter2"), "{reason}");
    }

    /// The rule behind every stream that sends one item at a time: after
    /// an item that got no answer at all, the rest are not sent but retried
    /// with it; an answer that refuses (a 503, a 4xx) stops nothing.
    #[tokio::test]
    async fn one_by_one_stops_sending_only_when_the_endpoint_gave_no_answer() {
        let sent = std::cell::Cell::new(0);
        let answers = [
            DeliveryError::retryable("osTicket answered 503: busy"),
            DeliveryError::permanent("osTicket answered 400: bad"),
            DeliveryError::retryable(format!("{UNREACHABLE} http://h/: refused")),
            DeliveryError::permanent("never sent"),
        ];
        let results = one_by_one(&answers, "ticket", |answer| {
            sent.set(sent.get() + 1);
            let answer = answer.clone();
            async move { Err(answer) }
        })
        .await;
        assert_eq!(sent.get(), 3, "nothing is sent after the unreachable one");
        assert_eq!(
            results[..3],
            answers[..3].iter().cloned().map(Err).collect::<Vec<_>>()
        );
        assert!(
            matches!(&results[3], Err(DeliveryError::Retryable { reason, .. })
                if reason == "not sent: an earlier ticket of the batch failed: cannot reach http://h/: refused"),
            "{results:?}"
        );
    }

    /// A header no request can carry fails the same way every time: it
    /// goes to dead letters rather than being retried until `max_age`.
    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_permanent() {
        let client = build_client(Duration::from_secs(1), HeaderMap::new()).unwrap();
        let error = client
            .post("http://127.0.0.1:1/x")
            .header("Idempotency-Key", "two\nlines")
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(unreachable("http://127.0.0.1:1/x", error), DeliveryError::Permanent { reason } if reason.starts_with("cannot build a request")),
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now: jiff::Timestamp = "2026-10-21T07:27:30Z".parse().unwrap();
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date gone by: try again now.
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn snippets_are_cut_at_characters() {
        assert_eq!(snippet("  short \n"), "short");
        let long = "é".repeat(BODY_SNIPPET_CHARS + 5);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), BODY_SNIPPET_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn statuses_become_outcomes() {
        let failure = |status: u16| Failure {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: Some(Duration::from_secs(3)),
            body: String::new(),
        };
        for status in [408, 429, 500, 502, 503] {
            assert_eq!(
                failure(status).into_error("r".into()),
                DeliveryError::Retryable {
                    reason: "r".into(),
                    retry_after: Some(Duration::from_secs(3))
                },
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 415, 422] {
            assert_eq!(
                failure(status).into_error("r".into()),
                DeliveryError::permanent("r"),
                "{status}"
            );
        }
        assert!(matches!(
            failure(302).into_error("r".into()),
            DeliveryError::Permanent { reason } if reason.contains("redirects are not followed")
        ));
    }
}

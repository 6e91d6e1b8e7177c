//! `type = "http"`: POST to an HTTP endpoint.

mod config;

use std::collections::BTreeMap;

pub use config::{HttpAuth, HttpConfig, HttpMode};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::http_client::{
    Failure, build_client, drain, one_by_one, unreachable, unreachable_reason,
};
use super::{BoxFuture, Delivery, DeliveryError, Stream};

pub(crate) struct HttpStream {
    config: HttpConfig,
    client: reqwest::Client,
}

impl HttpStream {
    pub(crate) fn new(config: HttpConfig) -> Result<HttpStream, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header {name:?}: {e}"))?;
            let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
            headers.insert(name, value);
        }
        let client = build_client(config.timeout, headers)?;
        Ok(HttpStream { config, client })
    }

    fn url_for(&self, queue: &str) -> String {
        self.config.url.replace("{queue}", &percent_encode(queue))
    }

    /// One request body for `members` of `batch`, in the configured batch mode.
    fn batch_body(&self, batch: &[Delivery<'_>], members: &[usize]) -> (&'static str, Vec<u8>) {
        let mut body = Vec::new();
        if self.config.mode == HttpMode::Ndjson {
            for &i in members {
                body.extend_from_slice(&batch[i].payload);
                if batch[i].payload.last() != Some(&b'\n') {
                    body.push(b'\n');
                }
            }
            return ("application/x-ndjson", body);
        }
        body.push(b'[');
        for (n, &i) in members.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(batch[i].payload.trim_ascii_end());
        }
        body.push(b']');
        ("application/json", body)
    }

    async fn send(
        &self,
        url: &str,
        content_type: &str,
        idempotency_key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request = match &self.config.auth {
            Some(HttpAuth::Bearer(token)) => request.bearer_auth(token.expose()),
            Some(HttpAuth::Basic { user, password }) => {
                request.basic_auth(user, Some(password.expose()))
            }
            None => request,
        };
        let response = request.send().await.map_err(|e| unreachable(url, e))?;
        // 2xx delivered; 408, 429 and 5xx retried; other statuses are permanent.
        if response.status().is_success() {
            drain(response).await;
            return Ok(());
        }
        let failure = Failure::read(response).await;
        let reason = format!("http {}: {}", failure.status, failure.body);
        Err(failure.into_error(reason))
    }
}

/// The `Idempotency-Key` of a request carrying one entry: per entry, not
/// per event, since one event taken by two use cases is two entries, and a
/// server that honours the key would take the second for a replay of the
/// first. The same key as NATS's `Nats-Msg-Id`.
fn idempotency_key(delivery: &Delivery<'_>) -> String {
    format!("{}/{}", delivery.event_id, delivery.use_case)
}

/// Percent-encodes everything but unreserved characters (RFC 3986), so a
/// queue can never change the URL's structure.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Stream for HttpStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            if self.config.mode == HttpMode::Single {
                return one_by_one(batch, "event", |d| {
                    let url = self.url_for(&d.queue);
                    async move {
                        self.send(
                            &url,
                            d.content_type,
                            Some(&idempotency_key(d)),
                            d.payload.to_vec(),
                        )
                        .await
                    }
                })
                .await;
            }
            let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); batch.len()];
            let mut by_url: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, d) in batch.iter().enumerate() {
                by_url.entry(self.url_for(&d.queue)).or_default().push(i);
            }
            for (url, members) in by_url {
                let (content_type, body) = self.batch_body(batch, &members);
                match self.send(&url, content_type, None, body).await {
                    Ok(()) => {}
                    // A 4xx for a batch does not say which event was refused:
                    // send each one alone, so only the poison ones go to dead
                    // letters and the rest is delivered.
                    Err(DeliveryError::Permanent { .. }) if members.len() > 1 => {
                        let alone = one_by_one(&members, "event", |&i| {
                            let (content_type, body) = self.batch_body(batch, &[i]);
                            let key = idempotency_key(&batch[i]);
                            let url = &url;
                            async move { self.send(url, content_type, Some(&key), body).await }
                        })
                        .await;
                        for (i, result) in members.iter().zip(alone) {
                            results[*i] = result;
                        }
                    }
                    Err(error) => {
                        for i in members {
                            results[i] = Err(error.clone());
                        }
                    }
                }
            }
            results
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            // Any answer means the endpoint is reachable; a HEAD is harmless.
            let url = self.url_for("healthcheck");
            self.client
                .head(&url)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| unreachable_reason(&url, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::http_client::is_unreachable;

    #[test]
    fn queues_cannot_change_the_url() {
        assert_eq!(percent_encode("tickets"), "tickets");
        assert_eq!(percent_encode("a/b?c=d#e f"), "a%2Fb%3Fc%3Dd%23e%20f");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    /// An endpoint that cannot be reached is tried once per batch in
    /// `single` mode: the other events are retried with the first.
    #[tokio::test]
    async fn an_unreachable_endpoint_is_tried_once_per_batch() {
        let stream = HttpStream::new(HttpConfig {
            // Port 1 on loopback: nothing listens, the connection is refused.
            url: "http://127.0.0.1:1/hook/{queue}".into(),
            mode: HttpMode::Single,
            headers: Vec::new(),
            auth: None,
            timeout: std::time::Duration::from_secs(5),
        })
        .unwrap();
        let batch = [
            Delivery::for_test("a", b"1"),
            Delivery::for_test("b", b"2"),
            Delivery::for_test("c", b"3"),
        ];
        let results = stream.deliver(&batch).await;
        assert!(
            matches!(&results[0], Err(e) if is_unreachable(e)),
            "{results:?}"
        );
        for result in &results[1..] {
            assert!(
                matches!(result, Err(DeliveryError::Retryable { reason, .. }) if reason.starts_with("not sent: an earlier event of the batch failed: cannot reach")),
                "{results:?}"
            );
        }
    }
}

//! `type = "webhook"`: HTTP POST of envelopes, answered only after commit.

mod auth;
mod config;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deskbus_event::{EnvelopeInput, Event};
use serde_json::value::RawValue;
use serde_json::{Value, json};

pub use auth::sign;
pub use config::{WebhookAuth, WebhookConfig};

use super::{SourceContext, SourceError, json_type};
use crate::internal_events::{EventsReceived, EventsRejected};
use crate::runtime::Shutdown;
use crate::use_cases::{Ingest, IngestError};

struct WebhookState {
    id: String,
    origin_uuid: String,
    config: WebhookConfig,
    ingest: Ingest,
    shutdown: Shutdown,
    /// One permit per byte of body held (read, or waiting for its commit):
    /// `max_buffered_bytes` in all.
    buffer: Arc<tokio::sync::Semaphore>,
}

pub(crate) async fn run(config: WebhookConfig, ctx: SourceContext) -> Result<(), SourceError> {
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|source| SourceError::Bind {
            address: config.address,
            source,
        })?;
    let path = config.path.clone();
    let state = Arc::new(WebhookState {
        buffer: Arc::new(tokio::sync::Semaphore::new(config.max_buffered_bytes)),
        id: ctx.id.clone(),
        origin_uuid: ctx.origin_uuid,
        config,
        ingest: ctx.ingest,
        shutdown: ctx.shutdown.clone(),
    });
    // The body limit is enforced in the handler, so a 413 carries our reason.
    let app = Router::new()
        .route(&path, post(handle))
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    tracing::info!(source = %ctx.id, address = %listener.local_addr()?, path = %path, "webhook listening");
    ctx.ready.mark_ready();
    let mut shutdown = ctx.shutdown;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

/// Longest a client may take to send a request's body: a client that
/// trickles one must not hold a connection and its buffer for ever.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a body waits for room in `max_buffered_bytes` before its
/// request is refused: a burst is smoothed, an overload is told so.
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a request's body was not taken.
enum BodyRefused {
    TooLarge,
    /// No room in `max_buffered_bytes` within [`ROOM_WAIT`].
    Busy,
    /// The connection failed mid-body.
    Unread(axum::Error),
}

/// Reads a request's body, up to `max_body_bytes`, taking room for each
/// chunk in the source's buffer budget as it arrives (into `held`, which
/// the caller keeps until it answers): a client that sends slowly holds
/// only what it sent, so slow clients cannot lock the others out.
async fn read_body(
    state: &WebhookState,
    body: Body,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Bytes, BodyRefused> {
    use futures_util::StreamExt;
    let limit = state.config.max_body_bytes;
    let mut chunks = body.into_data_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyRefused::Unread)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyRefused::TooLarge);
        }
        // At most `max_body_bytes` (≤ 256 MiB) in all: fits a u32.
        let room = state.buffer.clone().acquire_many_owned(chunk.len() as u32);
        let Ok(Ok(room)) = tokio::time::timeout(ROOM_WAIT, room).await else {
            return Err(BodyRefused::Busy);
        };
        match held {
            Some(held) => held.merge(room),
            None => *held = Some(room),
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// A JSON answer. Every 503 (busy, shutting down, spool unavailable) says
/// when to try again: `Retry-After: 1`.
fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

fn refuse(
    state: &WebhookState,
    status: StatusCode,
    reason: &'static str,
    message: String,
) -> Response {
    EventsRejected {
        source: &state.id,
        count: 1,
        reason,
    }
    .emit();
    reply(status, json!({ "error": message }))
}

/// The refusal of a request whose credentials (see [`auth::check`]) are
/// missing (401) or wrong (403); none when they pass.
fn refuse_credentials(
    state: &WebhookState,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Option<Response> {
    let auth = state.config.auth.as_ref()?;
    let now = jiff::Timestamp::now().as_second();
    match auth::check(auth, headers, body, now) {
        Ok(()) => None,
        Err(auth::AuthError::Missing(why)) => Some(refuse(
            state,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            why.into(),
        )),
        Err(auth::AuthError::Invalid(why)) => Some(refuse(
            state,
            StatusCode::FORBIDDEN,
            "forbidden",
            why.into(),
        )),
    }
}

async fn handle(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if state.shutdown.is_triggered() {
        return refuse(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "deskbus is shutting down; retry later".into(),
        );
    }
    // What can be checked of the credentials is checked before the body is
    // read: an unauthenticated client cannot make deskbus buffer bodies.
    if let Some(refusal) = refuse_credentials(&state, &headers, None) {
        return refusal;
    }
    let limit = state.config.max_body_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return refuse(
            &state,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is larger than {limit} bytes"),
        );
    }
    // Held until the answer: the body stays in memory until its commit.
    let mut held = None;
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, read_body(&state, body, &mut held)).await;
    let body: Bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyRefused::TooLarge)) => {
            return refuse(
                &state,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body is larger than {limit} bytes"),
            );
        }
        Ok(Err(BodyRefused::Unread(error))) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("the request body could not be read: {error}"),
            );
        }
        Ok(Err(BodyRefused::Busy)) => {
            return refuse(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "the bodies of requests in progress fill max_buffered_bytes ({}); retry later",
                    state.config.max_buffered_bytes
                ),
            );
        }
        Err(_) => {
            return refuse(
                &state,
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the request body did not arrive within {BODY_READ_TIMEOUT:?}"),
            );
        }
    };
    if let Some(refusal) = refuse_credentials(&state, &headers, Some(&body)) {
        return refusal;
    }
    let inputs = match parse_body(&headers, &body) {
        Ok(inputs) => inputs,
        Err(message) => return refuse(&state, StatusCode::BAD_REQUEST, "malformed", message),
    };
    if inputs.len() > state.config.max_events {
        let message = format!(
            "{} events in one request; at most {} are accepted",
            inputs.len(),
            state.config.max_events
        );
        return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, "too_large", message);
    }
    if inputs.is_empty() {
        return refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "malformed",
            "the request holds no event".into(),
        );
    }
    let received = inputs.len();
    EventsReceived {
        source: &state.id,
        count: received,
    }
    .emit();
    let mut events: Vec<Event> = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let event = serde_json::from_str::<EnvelopeInput>(input.get())
            .map_err(|e| without_position(&e))
            .and_then(|input| {
                input
                    .into_event(&state.id, &state.origin_uuid)
                    .map_err(|e| e.to_string())
            });
        match event {
            Ok(event) => events.push(event),
            Err(message) => {
                EventsRejected {
                    source: &state.id,
                    count: received,
                    reason: "invalid_envelope",
                }
                .emit();
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("event {i}: {message}") }),
                );
            }
        }
    }
    match state
        .ingest
        .submit(&state.id, &events, None, state.config.unmatched)
        .await
    {
        Ok(()) => {
            let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
            reply(StatusCode::ACCEPTED, json!({ "accepted": ids }))
        }
        Err(error @ IngestError::Unmatched { .. }) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": error.to_string() }),
        ),
        Err(error) => {
            EventsRejected {
                source: &state.id,
                count: events.len(),
                reason: "spool",
            }
            .emit();
            tracing::error!(source = %state.id, error = %crate::internal_events::ErrorChain(&error), "events not committed");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": format!("events not committed: {error}; retry later") }),
            )
        }
    }
}

/// One JSON object, a JSON array of objects, or NDJSON lines: each item's
/// text, checked to be JSON but not parsed into a tree. Each is parsed once,
/// straight into an [`EnvelopeInput`]; a `Value` tree for the whole body,
/// converted item by item and dropped, was an eighth of deskbus's CPU in
/// the webhook → nats bench.
fn parse_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<Vec<&'b RawValue>, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let ndjson = [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
    ]
    .iter()
    .any(|t| content_type.starts_with(t));
    if ndjson {
        let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
        return text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str::<&RawValue>(line)
                    .map_err(|e| format!("line {}: malformed JSON: {e}", n + 1))
            })
            .collect();
    }
    let malformed = |e: serde_json::Error| format!("malformed JSON: {e}");
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body).map_err(malformed),
        Some(b'{') => Ok(vec![
            serde_json::from_slice::<&RawValue>(body).map_err(malformed)?,
        ]),
        // Neither: parsed whole only to say what it is instead.
        _ => {
            let other = serde_json::from_slice::<Value>(body).map_err(malformed)?;
            Err(format!(
                "body must be an event object or an array of them, found {}",
                json_type(&other)
            ))
        }
    }
}

/// serde's message without its "at line 1 column N": counted from the
/// start of one item of the body, the position would mislead.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, value.parse().unwrap());
        h
    }

    /// How many events `body` holds, sent as `content_type`.
    fn count(content_type: &str, body: &[u8]) -> usize {
        parse_body(&ct(content_type), body).unwrap().len()
    }

    /// Why `body`, sent as `content_type`, is refused.
    fn refusal(content_type: &str, body: &[u8]) -> String {
        parse_body(&ct(content_type), body).unwrap_err()
    }

    #[test]
    fn an_item_s_error_names_no_position() {
        let error = serde_json::from_str::<EnvelopeInput>(r#"{"data": {}}"#).unwrap_err();
        assert_eq!(without_position(&error), "missing field `name`");
    }

    #[test]
    fn parses_object_array_and_ndjson() {
        const JSON: &str = "application/json";
        const NDJSON: &str = "application/x-ndjson";
        assert_eq!(count(JSON, br#"{"name":"a"}"#), 1);
        assert_eq!(count(JSON, br#"[{"name":"a"},{"name":"b"}]"#), 2);
        assert_eq!(count(NDJSON, b"{\"name\":\"a\"}\n\n{\"name\":\"b\"}\n"), 2);
        assert!(refusal(JSON, b"{").contains("malformed JSON"));
        assert!(refusal(JSON, b"42").contains("found a number"));
        // Told apart by their first byte, past any whitespace.
        assert_eq!(count(JSON, b" \r\n[{\"name\":\"a\"}]"), 1);
        assert!(refusal(JSON, b" \"x\"").contains("found a string"));
        assert!(refusal(JSON, b"[{\"name\":\"a\"},").contains("malformed JSON"));
        assert!(refusal(NDJSON, b"{}\n{").starts_with("line 2"));
    }
}

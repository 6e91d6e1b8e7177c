//! `type = "nats"`: one JetStream message per event, de-duplicated by id.

mod client;
mod config;
mod subject;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::{HeaderMap, HeaderValue};

use client::{Client, Outgoing};
pub use config::NatsConfig;

use super::{BoxFuture, Delivery, DeliveryError, Stream};

pub(crate) struct NatsStream {
    client: Client,
    prefix: String,
    /// `create_stream`'s name: sent as `Nats-Expected-Stream`, so that a
    /// message another stream captures is refused, not stored there and
    /// counted as delivered.
    expected_stream: Option<String>,
}

/// The subject a queue maps to must be publishable.
pub(crate) fn check_queue(config: &NatsConfig, queue: &str) -> Result<(), String> {
    subject::check_publish_subject(&format!("{}{queue}", config.subject_prefix))
}

impl NatsStream {
    /// Connects nothing yet: the first batch (or a health check) does.
    pub(crate) fn new(config: NatsConfig) -> Result<NatsStream, String> {
        Ok(NatsStream {
            prefix: config.subject_prefix.clone(),
            expected_stream: config.create_stream.as_ref().map(|spec| spec.name.clone()),
            client: Client::new(config),
        })
    }

    /// Built for each message, and again only to name it in a failure or
    /// a debug line: keeping every subject for that cost an allocation per
    /// event.
    fn subject(&self, delivery: &Delivery<'_>) -> String {
        format!("{}{}", self.prefix, delivery.queue)
    }

    /// The message for `delivery`, or why it can never be sent.
    fn outgoing(&self, delivery: &Delivery<'_>) -> Result<Outgoing, DeliveryError> {
        let subject = self.subject(delivery);
        subject::check_publish_subject(&subject).map_err(DeliveryError::permanent)?;
        let mut headers = HeaderMap::new();
        let header = |name: &str, value: &str| {
            value.parse::<HeaderValue>().map_err(|e| {
                DeliveryError::permanent(format!("header {name} {value:?} is not valid: {e}"))
            })
        };
        // Per entry, not per event: JetStream de-duplicates stream-wide, and
        // the same event sent by two use cases must be stored twice.
        let msg_id = format!("{}/{}", delivery.event_id, delivery.use_case);
        headers.insert("Nats-Msg-Id", header("Nats-Msg-Id", &msg_id)?);
        if let Some(stream) = &self.expected_stream {
            headers.insert(
                "Nats-Expected-Stream",
                header("Nats-Expected-Stream", stream)?,
            );
        }
        if !delivery.content_type.is_empty() {
            headers.insert(
                "Content-Type",
                header("Content-Type", delivery.content_type)?,
            );
        }
        Ok(Outgoing {
            subject,
            headers,
            payload: delivery.payload.to_vec(),
        })
    }

    fn outcome(
        &self,
        delivery: &Delivery<'_>,
        result: Result<PublishAck, PublishError>,
    ) -> Result<(), DeliveryError> {
        match result {
            Ok(ack) => {
                if ack.duplicate {
                    // Stored by an earlier attempt whose ack was lost.
                    tracing::debug!(
                        url = %self.client.url(),
                        subject = %self.subject(delivery),
                        stream = %ack.stream,
                        seq = ack.sequence,
                        event_id = %delivery.event_id,
                        "nats already had this event (duplicate id)"
                    );
                }
                Ok(())
            }
            Err(error) => Err(classify(
                &self.subject(delivery),
                delivery.payload.len(),
                &error,
            )),
        }
    }
}

/// Retryable unless sending the same message again can never succeed.
fn classify(subject: &str, size: usize, error: &PublishError) -> DeliveryError {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => DeliveryError::permanent(format!(
            "{size} bytes to {subject:?} is larger than the server's max_payload: {error}"
        )),
        // No stream captures the subject: a setup an operator can fix while
        // the events wait in the spool (see the config's docs).
        PublishErrorKind::StreamNotFound => DeliveryError::retryable(format!(
            "no JetStream stream captures subject {subject:?} (no responders): \
             create one or set `create_stream`"
        )),
        PublishErrorKind::Other => match jetstream_error_code(error) {
            Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => DeliveryError::permanent(format!(
                "{size} bytes to {subject:?} is larger than the stream's max_msg_size: {error}"
            )),
            // Another stream captures the subject: a setup an operator can
            // fix (as with no stream at all) while the events wait.
            Some(ErrorCode::STREAM_NOT_MATCH) => DeliveryError::retryable(format!(
                "subject {subject:?} is captured by another stream than `create_stream`'s: {error}"
            )),
            _ => DeliveryError::retryable(format!("publish to {subject:?} failed: {error}")),
        },
        // Timed out, broken pipe, too many acks pending: "unknown", and sent
        // again with the same Nats-Msg-Id, which the server de-duplicates.
        _ => DeliveryError::retryable(format!("publish to {subject:?} failed: {error}")),
    }
}

fn jetstream_error_code(error: &PublishError) -> Option<ErrorCode> {
    let source = std::error::Error::source(error)?;
    source
        .downcast_ref::<async_nats::jetstream::Error>()
        .map(|e| e.error_code())
}

impl Stream for NatsStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); batch.len()];
            let mut members = Vec::with_capacity(batch.len());
            let mut messages = Vec::with_capacity(batch.len());
            for (i, delivery) in batch.iter().enumerate() {
                match self.outgoing(delivery) {
                    Ok(message) => {
                        members.push(i);
                        messages.push(message);
                    }
                    Err(error) => results[i] = Err(error),
                }
            }
            if messages.is_empty() {
                return results;
            }
            let context = match self.client.context().await {
                Ok(context) => context,
                Err(error) => {
                    let error = DeliveryError::retryable(error.to_string());
                    for &i in &members {
                        results[i] = Err(error.clone());
                    }
                    return results;
                }
            };
            let acks = self.client.publish(&context, messages).await;
            let mut stream_missing = false;
            for (&i, ack) in members.iter().zip(acks) {
                stream_missing |= ack
                    .as_ref()
                    .is_err_and(|e| e.kind() == PublishErrorKind::StreamNotFound);
                results[i] = self.outcome(&batch[i], ack);
            }
            if stream_missing {
                self.client.stream_missing().await;
            }
            results
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.client.healthcheck().await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn delivery<'a>(queue: &'a str, id: &'a str) -> Delivery<'a> {
        Delivery {
            event_id: id,
            ..Delivery::for_test(queue, b"{}")
        }
    }

    #[tokio::test]
    async fn bad_subjects_are_permanent_and_an_unreachable_server_retryable() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let stream = NatsStream::new(NatsConfig {
            url: "nats://bob:hunter2@127.0.0.1:1".into(),
            timeout: std::time::Duration::from_secs(2),
            ..NatsConfig::default()
        })
        .unwrap();
        let results = stream
            .deliver(&[
                delivery("sales and support", "1"),
                delivery("tickets.*", "2"),
                delivery("tickets", "3\r\nX: y"),
                delivery("tickets", "4"),
            ])
            .await;
        for (i, want) in [
            (0, "whitespace"),
            (1, "wildcards"),
            (2, "header Nats-Msg-Id"),
        ] {
            assert!(
                matches!(&results[i], Err(DeliveryError::Permanent { reason }) if reason.contains(want)),
                "{results:?}"
            );
        }
        assert!(
            matches!(&results[3], Err(DeliveryError::Retryable { reason, .. })
                if reason.contains("cannot connect to nats://bob:[redacted]@127.0.0.1:1")
                    && !reason.contains("hunter2")),
            "{results:?}"
        );
        let error = stream.healthcheck().await.unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn publish_errors_are_classified() {
        let too_big = PublishError::new(PublishErrorKind::MaxPayloadExceeded);
        assert!(matches!(
            classify("s", 10, &too_big),
            DeliveryError::Permanent { .. }
        ));
        for kind in [
            PublishErrorKind::StreamNotFound,
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
        ] {
            assert!(matches!(
                classify("s", 10, &PublishError::new(kind)),
                DeliveryError::Retryable { .. }
            ));
        }
    }
}

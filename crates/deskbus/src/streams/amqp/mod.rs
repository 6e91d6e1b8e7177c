//! `type = "amqp"`: one AMQP 0-9-1 message per event, published with
//! confirms to an exchange, the use case's queue as the routing key.

mod broker;
mod config;

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, PublisherConfirm};

use broker::{Broker, Health, Lease};
pub use config::AmqpConfig;

use super::{BoxFuture, Delivery, DeliveryError, Stream};
use crate::internal_events::ErrorChain;

pub(crate) struct AmqpStream {
    config: AmqpConfig,
    broker: Broker,
    headers: FieldTable,
}

impl AmqpStream {
    /// Checks the URL; the connection is made by the first delivery.
    pub(crate) fn new(config: AmqpConfig) -> Result<AmqpStream, String> {
        let broker = Broker::new(&config)?;
        let mut headers = FieldTable::default();
        for (name, value) in &config.headers {
            let name = ShortString::try_new(name.as_str())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            headers.insert(
                name,
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        Ok(AmqpStream {
            config,
            broker,
            headers,
        })
    }

    fn properties(
        &self,
        delivery: &Delivery<'_>,
        timestamp: u64,
    ) -> Result<BasicProperties, String> {
        let message_id = ShortString::try_new(delivery.event_id)
            .map_err(|e| format!("event id as message_id: {e}"))?;
        let content_type = ShortString::try_new(delivery.content_type)
            .map_err(|e| format!("content type {:?}: {e}", delivery.content_type))?;
        let mut properties = BasicProperties::default()
            .with_message_id(message_id)
            .with_content_type(content_type)
            .with_timestamp(timestamp);
        if self.config.persistent {
            properties = properties.with_delivery_mode(2);
        }
        if !self.headers.inner().is_empty() {
            properties = properties.with_headers(self.headers.clone());
        }
        Ok(properties)
    }

    /// Publishes `batch[i]` for each `i` of `todo` on the leased channel,
    /// then waits for every confirm; fills `results` and says how the
    /// channel fared.
    async fn publish(
        &self,
        lease: &Lease,
        batch: &[Delivery<'_>],
        todo: Vec<(usize, ShortString, BasicProperties)>,
        results: &mut [Result<(), DeliveryError>],
    ) -> Health {
        let options = BasicPublishOptions {
            mandatory: self.config.mandatory,
            immediate: false,
        };
        let deadline = tokio::time::Instant::now() + self.config.confirm_timeout;
        let mut health = Health::Fine;
        // A publish or confirm given up on (see the end of this function).
        let mut timed_out = false;
        let mut pending: Vec<(usize, PublisherConfirm)> = Vec::with_capacity(todo.len());
        let mut todo = todo.into_iter();
        for (i, routing_key, properties) in todo.by_ref() {
            let publish = lease.channel.basic_publish(
                self.config.exchange.as_str().into(),
                routing_key,
                options,
                &batch[i].payload,
                properties,
            );
            match tokio::time::timeout_at(deadline, publish).await {
                Ok(Ok(confirm)) => pending.push((i, confirm)),
                Ok(Err(error)) => {
                    results[i] = Err(DeliveryError::retryable(format!(
                        "cannot publish to {}: {}",
                        self.broker.url,
                        ErrorChain(&error)
                    )));
                    health = Health::ChannelBroken;
                    break;
                }
                Err(_) => {
                    results[i] = Err(DeliveryError::retryable(format!(
                        "publishing to {} did not finish within {:?}",
                        self.broker.url, self.config.confirm_timeout
                    )));
                    health = Health::ConnectionSuspect;
                    timed_out = true;
                    break;
                }
            }
        }
        // Not published: an earlier message of the batch failed.
        for (i, _, _) in todo {
            results[i] = Err(DeliveryError::retryable(format!(
                "not published: an earlier message of the batch to {} failed",
                self.broker.url
            )));
        }

        let mut returned = Vec::new();
        let mut unmatched = false;
        for (i, confirm) in pending {
            results[i] = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(message))) => {
                    returned.extend(message);
                    Ok(())
                }
                Ok(Ok(Confirmation::Nack(message))) => {
                    returned.extend(message);
                    Err(DeliveryError::retryable(format!(
                        "{} nacked the message (it could not take responsibility for it)",
                        self.broker.url
                    )))
                }
                Ok(Ok(Confirmation::NotRequested)) => {
                    // Cannot happen on a confirm-mode channel; never count it as delivered.
                    health = health.max_with(Health::ChannelBroken);
                    Err(DeliveryError::retryable(
                        "the channel was not in confirm mode",
                    ))
                }
                Ok(Err(error)) => {
                    health = health.max_with(Health::ChannelBroken);
                    Err(DeliveryError::retryable(format!(
                        "no confirm from {}: {}",
                        self.broker.url,
                        ErrorChain(&error)
                    )))
                }
                Err(_) => {
                    health = Health::ConnectionSuspect;
                    timed_out = true;
                    Err(self.no_confirm())
                }
            };
        }

        // lapin hands a returned message to whichever confirm completes
        // next, which under a `multiple` ack need not be its own: match
        // each one to its delivery by message id and routing key.
        for message in returned {
            let id = message.delivery.properties.message_id().clone();
            let key = message.delivery.routing_key.as_str();
            let owner = batch.iter().enumerate().position(|(i, d)| {
                Some(d.event_id) == id.as_ref().map(|s| s.as_str())
                    && d.queue == key
                    && !matches!(results[i], Err(DeliveryError::Permanent { .. }))
            });
            let reason = format!(
                "unroutable: {} returned it ({} {}): no queue is bound to exchange {:?} for routing key {:?}",
                self.broker.url, message.reply_code, message.reply_text, self.config.exchange, key
            );
            match owner {
                Some(i) => results[i] = Err(DeliveryError::permanent(reason)),
                None => {
                    tracing::warn!(
                        url = %self.broker.url,
                        routing_key = %key,
                        "the broker returned a message of no delivery in this batch"
                    );
                    unmatched = true;
                }
            }
        }
        // A returned message travels with the confirm lapin resolves next.
        // One given up on (timed out) may have carried the return of a
        // message whose own confirm then reads as a plain ack; a return
        // that matches no delivery may belong to any of them. Either way
        // an ack here no longer proves the message was routed: with
        // `mandatory`, put the batch's acked messages again (at least once)
        // rather than count an unroutable one as delivered.
        if self.config.mandatory && (timed_out || unmatched) {
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(DeliveryError::retryable(format!(
                    "acked by {}, but a return in this batch may have been missed (a confirm given up on, or a return matching no message): published again",
                    self.broker.url
                )));
            }
        }
        health
    }

    fn no_confirm(&self) -> DeliveryError {
        DeliveryError::retryable(format!(
            "no publisher confirm from {} within {:?}",
            self.broker.url, self.config.confirm_timeout
        ))
    }
}

impl Health {
    /// The worse of two.
    fn max_with(self, other: Health) -> Health {
        match (self, other) {
            (Health::ConnectionSuspect, _) | (_, Health::ConnectionSuspect) => {
                Health::ConnectionSuspect
            }
            (Health::ChannelBroken, _) | (_, Health::ChannelBroken) => Health::ChannelBroken,
            _ => Health::Fine,
        }
    }
}

impl Stream for AmqpStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); batch.len()];
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut todo = Vec::with_capacity(batch.len());
            for (i, delivery) in batch.iter().enumerate() {
                let routing_key = ShortString::try_new(&*delivery.queue).map_err(|_| {
                    format!(
                        "routing key of {} bytes is longer than AMQP's 255",
                        delivery.queue.len()
                    )
                });
                let routing_key = routing_key.and_then(|key| {
                    if delivery.payload.len() > self.config.max_message_size {
                        return Err(format!(
                            "message of {} bytes is larger than the broker's max_message_size ({} bytes)",
                            delivery.payload.len(),
                            self.config.max_message_size
                        ));
                    }
                    Ok(key)
                });
                match routing_key.and_then(|key| Ok((key, self.properties(delivery, timestamp)?))) {
                    Ok((key, properties)) => todo.push((i, key, properties)),
                    Err(reason) => results[i] = Err(DeliveryError::permanent(reason)),
                }
            }
            if todo.is_empty() {
                return results;
            }
            let lease = match self.broker.checkout().await {
                Ok(lease) => lease,
                Err(error) => {
                    let error = DeliveryError::retryable(ErrorChain(&error).to_string());
                    for (i, _, _) in todo {
                        results[i] = Err(error.clone());
                    }
                    return results;
                }
            };
            let health = self.publish(&lease, batch, todo, &mut results).await;
            self.broker.checkin(lease, health).await;
            results
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let (connection, channel) = self
                .broker
                .connect_bounded()
                .await
                .map_err(|e| ErrorChain(&e).to_string())?;
            // A broker that never answers a close must not hang `check`.
            let closing = async {
                let _ = channel.close(200, "deskbus check".into()).await;
                let _ = connection.close(200, "deskbus check".into()).await;
            };
            let _ = tokio::time::timeout(self.config.confirm_timeout, closing).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn delivery(queue: &str) -> Delivery<'_> {
        Delivery::for_test(queue, b"{}")
    }

    #[tokio::test]
    async fn long_keys_are_permanent_and_an_unreachable_broker_retryable() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let stream = AmqpStream::new(AmqpConfig {
            url: crate::config::Secret::new("amqp://bus:hunter2@127.0.0.1:1/%2f".into()),
            ..AmqpConfig::default()
        })
        .unwrap();
        let mut oversized = delivery("ticket.created");
        oversized.payload = vec![b'x'; stream.config.max_message_size + 1].into();
        let results = stream
            .deliver(&[
                delivery(&"k".repeat(256)),
                delivery("ticket.created"),
                oversized,
            ])
            .await;
        assert!(
            matches!(&results[2], Err(DeliveryError::Permanent { reason }) if reason.contains("max_message_size")),
            "{results:?}"
        );
        assert!(
            matches!(&results[0], Err(DeliveryError::Permanent { reason }) if reason.contains("256 bytes")),
            "{results:?}"
        );
        assert!(
            matches!(&results[1], Err(DeliveryError::Retryable { reason, .. })
                if reason.starts_with("cannot connect to amqp://bus:[redacted]@127.0.0.1:1/%2f")),
            "{results:?}"
        );
        let health = stream.healthcheck().await.unwrap_err();
        assert!(!health.contains("hunter2"), "{health}");
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let error = AmqpStream::new(AmqpConfig {
            url: crate::config::Secret::new("amqp://bus:hunter2@host:port/".into()),
            ..AmqpConfig::default()
        })
        .err()
        .unwrap();
        assert!(
            !error.contains("hunter2") && error.contains("[redacted]"),
            "{error}"
        );
    }
}

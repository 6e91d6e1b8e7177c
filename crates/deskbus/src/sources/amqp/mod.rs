//! `type = "amqp"`: consumes a queue bound to an exchange (the XiVO bus by
//! default), commits each batch of messages to the spool, then acknowledges
//! the batch with one cumulative ack.
//!
//! One task owns everything: the connection, the channel and the window of
//! committed messages. lapin hands deliveries to a delegate, which only
//! forwards them, in order, over a channel to that task. A batch is what
//! the task holds when it gets to it (self-clocking, like the spool's group
//! commit: the longer a commit takes, the more the next one carries), at
//! most half of `prefetch`, so the broker keeps sending the other half
//! while a batch commits.

mod config;
mod xivo;

use std::time::Duration;

use deskbus_event::{EnvelopeInput, Event};
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use config::AmqpSourceConfig;

use super::reconnect::{Sessions, run_sessions};
use super::redelivery::{Fingerprint, Window, fingerprint};
use super::{SourceContext, SourceError};
use crate::amqp::{self, Declare};
use crate::internal_events::{ErrorChain, EventsReceived, RedeliveriesSkipped};
use crate::runtime::{Ready, Shutdown};
use crate::use_cases::{Ingest, IngestError, RejectedInput, Unmatched};

/// How long closing a connection may take on the way out; the broker
/// requeues what was not acknowledged either way.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot {step} at {url}")]
    Broker {
        step: String,
        url: String,
        #[source]
        source: Box<lapin::Error>,
    },
    #[error("no answer from {url} within {timeout:?} while connecting")]
    Timeout { url: String, timeout: Duration },
    #[error("the broker {url} cancelled the consumer (was the queue deleted?)")]
    Cancelled { url: String },
    #[error("events not committed; the batch is left unacknowledged")]
    Ingest(#[source] IngestError),
}

struct AmqpSource {
    config: AmqpSourceConfig,
    uri: AMQPUri,
    /// The URL for messages: password replaced.
    url: String,
    id: String,
    origin_uuid: String,
    ingest: Ingest,
    window: Window,
    /// Deliveries committed in the current session: a session that got
    /// somewhere resets the reconnection backoff.
    committed: usize,
}

pub(crate) async fn run(config: AmqpSourceConfig, ctx: SourceContext) -> Result<(), SourceError> {
    let (uri, url) = amqp::uri(&config.url).map_err(SourceError::Settings)?;
    let window = Window::load(&ctx, usize::from(config.prefetch))?;
    let mut source = AmqpSource {
        uri,
        url,
        id: ctx.id,
        origin_uuid: ctx.origin_uuid,
        ingest: ctx.ingest,
        window,
        committed: 0,
        config,
    };
    run_sessions(&mut source, ctx.ready, ctx.shutdown).await
}

/// What the delegate forwards: a delivery, or the end of the consumer.
type Inbox = mpsc::UnboundedReceiver<DeliveryResult>;

/// `deskbus check --connect`: the broker takes the credentials and opens a
/// channel; with `declare = "passive"`, the exchange exists; a named queue
/// is looked up (passively: the check creates nothing).
pub(crate) async fn healthcheck(config: &AmqpSourceConfig) -> Result<String, String> {
    let (uri, url) = amqp::uri(&config.url)?;
    let broker = |step: &str| {
        let url = url.clone();
        let step = step.to_owned();
        move |e: lapin::Error| format!("cannot {step} at {url}: {}", ErrorChain(&e))
    };
    let timeout = config.connect_timeout;
    let connection = tokio::time::timeout(timeout, amqp::connect(&uri, "deskbus check"))
        .await
        .map_err(|_| format!("{url} did not answer within {timeout:?}"))?
        .map_err(broker("connect"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(broker("open a channel"))?;
    let exchange = &config.exchange;
    if config.declare == Declare::Passive && !exchange.is_empty() {
        amqp::declare_exchange(&channel, exchange, config.exchange_type, Declare::Passive)
            .await
            .map_err(broker(&format!("find exchange {exchange:?}")))?;
    }
    let waiting = match &config.queue {
        Some(name) => {
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            match channel
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(queue) => format!("queue {name:?} holds {} messages", queue.message_count()),
                // A 404 closes the channel: the queue is declared on start.
                Err(_) => format!("queue {name:?} will be declared on start"),
            }
        }
        None => "an exclusive queue will be declared on start".to_owned(),
    };
    let _ = connection.close(200, "deskbus check".into()).await;
    Ok(format!("connected to {url}; {waiting}"))
}

impl Sessions for AmqpSource {
    type Error = SessionError;

    fn source_id(&self) -> &str {
        &self.id
    }

    /// One connection, from connecting to losing it (an error) or to
    /// shutdown (`Ok`).
    async fn session(
        &mut self,
        ready: &mut Option<Ready>,
        shutdown: &mut Shutdown,
    ) -> Result<(), SessionError> {
        let timeout = self.config.connect_timeout;
        let opened = tokio::select! {
            opened = tokio::time::timeout(timeout, self.open()) => opened,
            _ = shutdown.wait() => return Ok(()),
        };
        let (connection, channel, inbox) = opened.unwrap_or_else(|_| {
            Err(SessionError::Timeout {
                url: self.url.clone(),
                timeout,
            })
        })?;
        if let Some(ready) = ready.take() {
            ready.mark_ready();
        }
        tracing::info!(
            source = %self.id,
            url = %self.url,
            exchange = %self.config.exchange,
            queue = self.config.queue.as_deref().unwrap_or("(server-named)"),
            "consuming from the amqp broker"
        );
        self.window.begin_session();
        let result = self.consume(&channel, inbox, shutdown).await;
        // Closing, rather than dropping, makes the broker hand what is
        // unacknowledged to another consumer at once.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "deskbus".into())).await;
        result
    }

    fn made_progress(&mut self) -> bool {
        std::mem::take(&mut self.committed) > 0
    }
}

impl AmqpSource {
    fn broker_error(&self, step: impl Into<String>) -> impl FnOnce(lapin::Error) -> SessionError {
        let (step, url) = (step.into(), self.url.clone());
        move |source| SessionError::Broker {
            step,
            url,
            source: Box::new(source),
        }
    }

    /// Connects, declares the topology, starts consuming.
    async fn open(&self) -> Result<(Connection, Channel, Inbox), SessionError> {
        let connection = amqp::connect(&self.uri, &format!("source {}", self.id))
            .await
            .map_err(self.broker_error("connect"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(self.broker_error("open a channel"))?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(self.broker_error("set the prefetch"))?;
        let exchange = &self.config.exchange;
        let verb = self.config.declare.verb();
        amqp::declare_exchange(
            &channel,
            exchange,
            self.config.exchange_type,
            self.config.declare,
        )
        .await
        .map_err(self.broker_error(format!("{verb} exchange {exchange:?}")))?;
        // A named queue outlives deskbus and the broker; an unnamed one is
        // the broker's `amq.gen-…`, gone with this connection.
        let named = self.config.queue.is_some();
        let options = QueueDeclareOptions {
            durable: named,
            exclusive: !named,
            auto_delete: !named,
            ..QueueDeclareOptions::default()
        };
        let name = self.config.queue.as_deref().unwrap_or("");
        let queue = channel
            .queue_declare(name.into(), options, FieldTable::default())
            .await
            .map_err(self.broker_error(format!("declare queue {name:?}")))?;
        let queue = queue.name().clone();
        for key in &self.config.binding_keys {
            channel
                .queue_bind(
                    queue.clone(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(self.broker_error(format!(
                    "bind queue {:?} to exchange {exchange:?} with {key:?}",
                    queue.as_str()
                )))?;
        }
        let (tx, inbox) = mpsc::unbounded_channel();
        let consumer = channel
            .basic_consume(
                queue.clone(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(self.broker_error(format!("consume queue {:?}", queue.as_str())))?;
        // lapin runs the delegate's future as a task of its own, so the
        // delivery is forwarded in the call itself, in the broker's order.
        // Unbounded, yet never more than `prefetch` deliveries deep: the
        // broker sends no more until some are acknowledged.
        consumer.set_delegate(move |delivery: DeliveryResult| {
            let _ = tx.send(delivery);
            async {}
        });
        Ok((connection, channel, inbox))
    }

    /// Takes batches until the consumer ends (an error) or shutdown.
    async fn consume(
        &mut self,
        channel: &Channel,
        mut inbox: Inbox,
        shutdown: &mut Shutdown,
    ) -> Result<(), SessionError> {
        let most = usize::from(self.config.prefetch).div_ceil(2);
        loop {
            let first = tokio::select! {
                first = inbox.recv() => first,
                _ = shutdown.wait() => return Ok(()),
            };
            let mut batch = Vec::with_capacity(most);
            let mut end = None;
            for delivery in
                std::iter::once(first).chain(std::iter::from_fn(|| inbox.try_recv().ok().map(Some)))
            {
                match delivery {
                    Some(Ok(Some(delivery))) => batch.push(delivery),
                    Some(Ok(None)) => {
                        end = Some(SessionError::Cancelled {
                            url: self.url.clone(),
                        });
                    }
                    Some(Err(error)) => end = Some(self.broker_error("consume")(error)),
                    // The delegate is gone: lapin dropped the consumer.
                    None => {
                        end = Some(SessionError::Cancelled {
                            url: self.url.clone(),
                        });
                    }
                }
                if end.is_some() || batch.len() >= most {
                    break;
                }
            }
            if !batch.is_empty() {
                self.commit_and_ack(channel, batch).await?;
            }
            if let Some(error) = end {
                return Err(error);
            }
        }
    }

    /// Commits a batch (events, dead letters and the window, one
    /// transaction), then acknowledges it up to its last delivery tag.
    async fn commit_and_ack(
        &mut self,
        channel: &Channel,
        batch: Vec<Delivery>,
    ) -> Result<(), SessionError> {
        let Some(last_tag) = batch.last().map(|d| d.delivery_tag) else {
            return Ok(());
        };
        let mut events = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        let mut committing = Vec::with_capacity(batch.len());
        let mut skipped = 0;
        for delivery in &batch {
            let fp = delivery_fingerprint(delivery);
            if delivery.redelivered && fp.is_some_and(|fp| self.window.take(fp)) {
                skipped += 1;
                continue;
            }
            committing.extend(fp);
            match self.decode(delivery) {
                Ok(event) => events.push(event),
                Err(reason) => rejected.push(RejectedInput {
                    input_id: input_id(delivery),
                    raw: delivery.data.clone(),
                    reason,
                }),
            }
        }
        if skipped > 0 {
            RedeliveriesSkipped {
                source: &self.id,
                count: skipped,
            }
            .emit();
        }
        let taken = events.len() + rejected.len();
        if taken > 0 {
            EventsReceived {
                source: &self.id,
                count: taken,
            }
            .emit();
            // The window as it will be once this batch is committed; cloned
            // after the matching above, so that its matches carry over.
            let mut next = self.window.clone();
            for fp in committing {
                next.push(fp);
            }
            self.ingest
                .submit_with_rejects(
                    &self.id,
                    &events,
                    rejected,
                    Some((self.id.clone(), next.to_cursor())),
                    Unmatched::Drop,
                )
                .await
                .map_err(SessionError::Ingest)?;
            self.window = next;
        }
        // Cumulative: one ack covers the whole batch, and everything
        // before it (acknowledged already).
        channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .map_err(self.broker_error("acknowledge"))?;
        self.committed += batch.len();
        Ok(())
    }

    /// The event a message carries, or why it carries none.
    fn decode(&self, delivery: &Delivery) -> Result<Event, String> {
        // Wazo adds keys of its own (`required_acl`, ...): set aside, and
        // neither an error nor worth a log line per message.
        let (mut input, _ignored) =
            EnvelopeInput::from_bus_message(&delivery.data).map_err(|e| {
                format!("not a JSON event envelope ({{\"name\", \"origin_uuid\", \"data\"}}): {e}")
            })?;
        // The broker's routing key is the one bindings and use cases see.
        if !delivery.routing_key.as_str().is_empty() {
            input.routing_key = Some(delivery.routing_key.to_string());
        }
        if input.id.is_none() {
            input.id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| event_id_from_message_id(id.as_str()).to_string());
        }
        if input.time.is_none()
            && let Some(seconds) = *delivery.properties.timestamp()
            && let Ok(time) = jiff::Timestamp::from_second(seconds as i64)
        {
            input.time = Some(time.to_string());
        }
        let event = input
            .into_event(&self.id, &self.origin_uuid)
            .map_err(|e| format!("invalid event envelope: {e}"))?;
        if self.config.validate {
            xivo::validate(&event)?;
        }
        Ok(event)
    }
}

/// What recognises a message when the broker hands it out again: its
/// `message_id` (deskbus's amqp stream sets the event id), with the routing
/// key, under which one event may be published to several queues.
///
/// None without a `message_id`. The body alone is no identity: two
/// identical messages are two inputs, and taking a redelivered one for an
/// earlier twin that was committed *and acknowledged* would lose it. Such
/// a message is committed again when redelivered (at least once).
///
/// The body is part of it, with the id: a producer may reuse an id for
/// another message (a counter reset at its restart; deskbus's own stream
/// publishes one event for two use cases, shaped two ways, under one id),
/// and a redelivered message must not be skipped for a different one.
/// (Fingerprints kept by a deskbus before this rule match nothing: their
/// messages are committed again if redelivered.)
fn delivery_fingerprint(delivery: &Delivery) -> Option<Fingerprint> {
    let id = delivery.properties.message_id().as_ref()?;
    let key = delivery.routing_key.as_str().as_bytes();
    Some(fingerprint(&[
        b"message_id",
        key,
        id.as_str().as_bytes(),
        &delivery.data,
    ]))
}

/// A message id as an event id: the id itself when it is a UUID (deskbus's
/// stream sends the event id), else a UUID (version 8) derived from it, so
/// the same message always becomes the same event.
fn event_id_from_message_id(message_id: &str) -> uuid::Uuid {
    if let Ok(id) = uuid::Uuid::parse_str(message_id) {
        return id;
    }
    let digest = Sha256::new()
        .chain_update(b"deskbus amqp message_id\0")
        .chain_update(message_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// How a dead letter names the message, for the operator.
fn input_id(delivery: &Delivery) -> String {
    match delivery.properties.message_id() {
        Some(id) => format!("{}#{}", delivery.routing_key, id),
        None => format!("{}#{}", delivery.routing_key, delivery.delivery_tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A redelivered message is taken for a committed one only when id,
    /// routing key and body all match: a reused id with another body is
    /// another input.
    #[test]
    fn fingerprints_hold_the_id_the_routing_key_and_the_body() {
        let message = |key: &str, id: Option<&str>, body: &[u8]| {
            let mut delivery = Delivery::mock(1, "x".into(), key.into(), true, body.to_vec());
            if let Some(id) = id {
                delivery.properties = lapin::BasicProperties::default().with_message_id(id.into());
            }
            delivery_fingerprint(&delivery)
        };
        let one = message("t.a", Some("e1"), b"{}");
        assert!(one.is_some());
        assert_eq!(one, message("t.a", Some("e1"), b"{}"));
        assert_ne!(
            one,
            message("t.a", Some("e1"), b"{\"n\":2}"),
            "another body"
        );
        assert_ne!(
            one,
            message("t.b", Some("e1"), b"{}"),
            "another routing key"
        );
        assert_ne!(one, message("t.a", Some("e2"), b"{}"), "another id");
        assert_eq!(message("t.a", None, b"{}"), None, "no id, no identity");
    }

    #[test]
    fn message_ids_become_stable_event_ids() {
        let id = "0197a3c0-0000-7000-8000-000000000000";
        assert_eq!(event_id_from_message_id(id).to_string(), id);
        let derived = event_id_from_message_id("celery-task-42");
        assert_eq!(derived, event_id_from_message_id("celery-task-42"));
        assert_ne!(derived, event_id_from_message_id("celery-task-43"));
        assert_eq!(derived.get_version_num(), 8);
    }
}

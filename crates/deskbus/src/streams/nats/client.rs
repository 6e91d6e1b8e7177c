//! The nats stream's I/O: one client, connected on first use and rebuilt
//! when it closed; the JetStream stream ensured once per connection; a
//! batch published as one pipeline with every PubAck awaited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, Context, stream};
use async_nats::{ConnectOptions, Event, HeaderMap, ServerAddr};
use tokio::sync::Mutex;

use super::config::{NatsAuth, NatsConfig, NatsStorage, NatsStreamSpec, servers};

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    #[error("bad url: {0}")]
    Url(String),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot connect to {url}: no answer within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("cannot create or find JetStream stream {name:?}: {source}")]
    Stream {
        name: String,
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot read JetStream account info from {url}: {reason}")]
    Account { url: String, reason: String },
}

struct Connection {
    context: Context,
    /// Set by the client's event callback once it gave up for good.
    closed: Arc<AtomicBool>,
    /// Whether `create_stream` was checked on this connection.
    stream_ready: bool,
}

pub(super) struct Client {
    config: NatsConfig,
    url: String,
    connection: Mutex<Option<Connection>>,
}

/// One message of a batch, ready to send.
pub(super) struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Vec<u8>,
}

impl Client {
    pub(super) fn new(config: NatsConfig) -> Client {
        Client {
            url: config.redacted_url(),
            config,
            connection: Mutex::new(None),
        }
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The JetStream context of the live connection, connecting (and
    /// creating the stream) first when needed.
    pub(super) async fn context(&self) -> Result<Context, ClientError> {
        // Held while connecting: concurrent batches share one connection
        // instead of each opening their own.
        let mut slot = self.connection.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| c.closed.load(Ordering::Acquire))
        {
            tracing::warn!(url = %self.url, "nats client closed; connecting again");
            *slot = None;
        }
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        if !connection.stream_ready {
            if let Some(spec) = &self.config.create_stream
                && let Err(error) = ensure_stream(&connection.context, spec).await
            {
                *slot = Some(connection);
                return Err(error);
            }
            connection.stream_ready = true;
        }
        let context = connection.context.clone();
        *slot = Some(connection);
        Ok(context)
    }

    /// After "no responders": the stream may have been deleted; check it
    /// (and create it) again before the next batch.
    pub(super) async fn stream_missing(&self) {
        if let Some(connection) = self.connection.lock().await.as_mut() {
            connection.stream_ready = self.config.create_stream.is_none();
        }
    }

    async fn connect(&self) -> Result<Connection, ClientError> {
        let (addrs, url_auth): (Vec<ServerAddr>, _) =
            servers(&self.config.url).map_err(ClientError::Url)?;
        let closed = Arc::new(AtomicBool::new(false));
        let mut options = ConnectOptions::new()
            .name("deskbus")
            .connection_timeout(self.config.timeout)
            .request_timeout(Some(self.config.timeout))
            // Reconnect forever: the spool keeps the events, and a client that
            // gave up would need rebuilding anyway.
            .max_reconnects(None)
            .event_callback({
                let (url, closed) = (self.url.clone(), closed.clone());
                move |event| {
                    let (url, closed) = (url.clone(), closed.clone());
                    async move {
                        match event {
                            Event::Connected => tracing::info!(url = %url, "nats connected"),
                            Event::Disconnected => {
                                tracing::warn!(url = %url, "nats disconnected; reconnecting")
                            }
                            Event::Closed => closed.store(true, Ordering::Release),
                            other => tracing::warn!(url = %url, event = %other, "nats event"),
                        }
                    }
                }
            });
        options = match self.config.auth.as_ref().or(url_auth.as_ref()) {
            Some(NatsAuth::Token(token)) => options.token(token.expose().to_owned()),
            Some(NatsAuth::UserPassword { user, password }) => {
                options.user_and_password(user.clone(), password.expose().to_owned())
            }
            None => options,
        };
        // connection_timeout bounds each attempt; this bounds them all.
        let client = match tokio::time::timeout(self.config.timeout, options.connect(addrs)).await {
            Ok(Ok(client)) => client,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    url: self.url.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(ClientError::ConnectTimeout {
                    url: self.url.clone(),
                    timeout: self.config.timeout,
                });
            }
        };
        // Without backpressure a publish beyond the in-flight limit fails
        // (and is retried) instead of waiting for a slot that this very
        // batch's unawaited acks hold: a large batch could wait forever.
        // The limit itself is the most the dispatcher ever has in flight,
        // so it never fails a publish: async-nats's default (5,000) did
        // the tail of every round of large batches, each time costing the
        // entries an attempt (and, with `retry.max_attempts`, sending to
        // dead letters what the server never saw).
        let context = jetstream::ContextBuilder::new()
            .timeout(self.config.timeout)
            .max_ack_inflight(crate::config::MAX_BATCH_SIZE * crate::config::MAX_CONCURRENCY)
            .backpressure_on_inflight(false)
            .build(client);
        Ok(Connection {
            context,
            closed,
            stream_ready: false,
        })
    }

    /// Asks for the account's JetStream info on a new connection. The answer
    /// is read as plain JSON: async-nats's `Account` type wants fields that
    /// older servers (Debian's 2.9) do not send.
    pub(super) async fn healthcheck(&self) -> Result<(), ClientError> {
        let connection = self.connect().await?;
        let account = |reason: String| ClientError::Account {
            url: self.url.clone(),
            reason,
        };
        let reply = connection
            .context
            .client()
            .request("$JS.API.INFO", Vec::new().into())
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    account(format!("{e} (is JetStream enabled on the server?)"))
                }
                _ => account(e.to_string()),
            })?;
        let info: serde_json::Value = serde_json::from_slice(&reply.payload)
            .map_err(|e| account(format!("the answer is not JSON: {e}")))?;
        if let Some(error) = info.get("error") {
            let description = error["description"].as_str().unwrap_or("no description");
            return Err(account(format!("jetstream: {description}")));
        }
        Ok(())
    }

    /// Sends every message within one `timeout`, then awaits every PubAck
    /// within one `timeout` from the last send. One result per message, in order.
    pub(super) async fn publish(
        &self,
        context: &Context,
        messages: Vec<Outgoing>,
    ) -> Vec<Result<PublishAck, PublishError>> {
        let mut pending: Vec<Result<PublishAckFuture, PublishError>> =
            Vec::with_capacity(messages.len());
        // Sending can block too (a full outgoing buffer while the server is
        // down): one deadline for all sends, and once it passes the rest of
        // the batch fails at once instead of costing `timeout` each.
        let send_deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut timed_out = false;
        for message in messages {
            if timed_out {
                pending.push(Err(PublishError::new(PublishErrorKind::TimedOut)));
                continue;
            }
            let publish = PublishMessage::build()
                .payload(message.payload.into())
                .headers(message.headers);
            match tokio::time::timeout_at(
                send_deadline,
                context.send_publish(message.subject, publish),
            )
            .await
            {
                Ok(sent) => pending.push(sent),
                Err(_) => {
                    timed_out = true;
                    pending.push(Err(PublishError::new(PublishErrorKind::TimedOut)));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut results = Vec::with_capacity(pending.len());
        for ack in pending {
            results.push(match ack {
                // Awaited, never dropped: a dropped ack future hides the
                // failure (nats.rs#1477). A shared deadline keeps a dead
                // server from costing `timeout` per message.
                Ok(ack) => match tokio::time::timeout_at(deadline, ack.into_future()).await {
                    Ok(result) => result,
                    Err(_) => Err(PublishError::new(PublishErrorKind::TimedOut)),
                },
                Err(error) => Err(error),
            });
        }
        results
    }
}

async fn ensure_stream(context: &Context, spec: &NatsStreamSpec) -> Result<(), ClientError> {
    let config = stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        max_age: spec.max_age,
        storage: match spec.storage {
            NatsStorage::File => stream::StorageType::File,
            NatsStorage::Memory => stream::StorageType::Memory,
        },
        duplicate_window: spec.duplicate_window,
        num_replicas: spec.replicas,
        ..Default::default()
    };
    // Gets an existing stream as it is; creates it only when missing.
    context
        .get_or_create_stream(config)
        .await
        .map_err(|source| ClientError::Stream {
            name: spec.name.clone(),
            source,
        })?;
    tracing::debug!(stream = %spec.name, "nats stream ready");
    Ok(())
}

//! The connection supervisor: one AMQP connection, a pool of confirm-mode
//! channels on it, rebuilt from scratch when the broker goes away.
//!
//! lapin's own recovery is young, so it stays off: when the connection is
//! lost, the next [`Broker::checkout`] connects again, opens a channel, puts
//! it in confirm mode and declares the exchange. Nothing loops here: a failed
//! attempt is an error for the batch, and the dispatcher's backoff spaces the
//! next one. Each batch has a channel to itself, so the broker's returns and
//! confirms on it belong to that batch alone.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;

use super::config::{AmqpConfig, Declare, ExchangeType};
use crate::amqp;

/// Channels opened with each connection: the stream's default `concurrency`.
const READY_CHANNELS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub(super) enum BrokerError {
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: Box<lapin::Error>,
    },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("cannot open a channel on {url}")]
    Channel {
        url: String,
        #[source]
        source: Box<lapin::Error>,
    },
    #[error("cannot {verb} exchange {exchange:?} on {url}")]
    Exchange {
        verb: &'static str,
        exchange: String,
        url: String,
        #[source]
        source: Box<lapin::Error>,
    },
}

/// How a leased channel came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// Fit for the next batch.
    Fine,
    /// The channel failed (closed by the broker, a publish error): drop it.
    ChannelBroken,
    /// Confirms went missing: the connection itself may be dead without
    /// knowing it yet; drop it too.
    ConnectionSuspect,
}

/// A channel lent to one batch.
pub(super) struct Lease {
    pub channel: Channel,
    generation: u64,
}

struct State {
    connection: Option<Connection>,
    /// Bumped whenever the connection is dropped or replaced, so that a
    /// batch from an old one can neither tear down its successor nor give
    /// back one of its channels to be lent again.
    generation: u64,
    idle: Vec<Channel>,
}

impl State {
    fn drop_connection(&mut self) {
        self.connection = None;
        self.idle.clear();
        self.generation += 1;
    }
}

pub(super) struct Broker {
    uri: AMQPUri,
    /// The URL for messages: password replaced.
    pub url: String,
    exchange: String,
    exchange_type: ExchangeType,
    declare: Declare,
    timeout: Duration,
    state: Mutex<State>,
}

impl Broker {
    pub fn new(config: &AmqpConfig) -> Result<Broker, String> {
        let (uri, url) = amqp::uri(&config.url)?;
        Ok(Broker {
            uri,
            url,
            exchange: config.exchange.clone(),
            exchange_type: config.exchange_type,
            declare: config.declare,
            timeout: config.confirm_timeout,
            state: Mutex::new(State {
                connection: None,
                generation: 0,
                idle: Vec::new(),
            }),
        })
    }

    /// A connected confirm-mode channel, connecting first when needed.
    pub async fn checkout(&self) -> Result<Lease, BrokerError> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if let Some(connection) = &state.connection {
            if connection.status().connected() {
                while let Some(channel) = state.idle.pop() {
                    if channel.status().connected() {
                        return Ok(Lease {
                            channel,
                            generation: state.generation,
                        });
                    }
                }
                match self.bounded(self.open_channel(connection)).await {
                    Ok(channel) => {
                        return Ok(Lease {
                            channel,
                            generation: state.generation,
                        });
                    }
                    // The connection is fine; the exchange is not (yet) as configured.
                    Err(error @ BrokerError::Exchange { .. }) => return Err(error),
                    Err(error) => {
                        tracing::warn!(
                            url = %self.url,
                            error = %crate::internal_events::ErrorChain(&error),
                            "amqp channel failed; reconnecting"
                        );
                    }
                }
            } else {
                tracing::warn!(url = %self.url, "amqp connection lost; reconnecting");
            }
            state.drop_connection();
        }
        let (connection, channel) = self.bounded(self.connect()).await?;
        // Channels for the batches in flight, opened now, so that the first
        // burst after a (re)connection does not wait for channel set-up
        // (three round trips each) while holding the others back.
        for _ in 1..READY_CHANNELS {
            match self.bounded(self.open_channel(&connection)).await {
                Ok(spare) => state.idle.push(spare),
                Err(_) => break, // the next checkout opens one, or reconnects
            }
        }
        tracing::info!(url = %self.url, exchange = %self.exchange, "connected to the amqp broker");
        state.connection = Some(connection);
        state.generation += 1;
        Ok(Lease {
            channel,
            generation: state.generation,
        })
    }

    /// Gives a channel back after its batch.
    pub async fn checkin(&self, lease: Lease, health: Health) {
        let mut state = self.state.lock().await;
        if lease.generation != state.generation {
            return; // from a connection already replaced: dropping it closes it
        }
        match health {
            Health::Fine if lease.channel.status().connected() => state.idle.push(lease.channel),
            Health::Fine | Health::ChannelBroken => {
                let connected = state
                    .connection
                    .as_ref()
                    .is_some_and(|c| c.status().connected());
                if !connected {
                    state.drop_connection();
                }
            }
            Health::ConnectionSuspect => {
                tracing::warn!(url = %self.url, "amqp confirms went missing; reconnecting");
                state.drop_connection();
            }
        }
    }

    /// A new connection with one channel ready, the exchange declared:
    /// for a reconnection and for `deskbus check --connect`.
    pub async fn connect(&self) -> Result<(Connection, Channel), BrokerError> {
        let connection =
            amqp::connect(&self.uri, "")
                .await
                .map_err(|source| BrokerError::Connect {
                    url: self.url.clone(),
                    source: Box::new(source),
                })?;
        let channel = self.open_channel(&connection).await?;
        Ok((connection, channel))
    }

    /// A confirm-mode channel, the exchange declared on it: a channel is
    /// new after a channel error, which may mean the exchange was deleted.
    async fn open_channel(&self, connection: &Connection) -> Result<Channel, BrokerError> {
        let channel_error = |source| BrokerError::Channel {
            url: self.url.clone(),
            source: Box::new(source),
        };
        let channel = connection.create_channel().await.map_err(channel_error)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(channel_error)?;
        let verb = self.declare.verb();
        amqp::declare_exchange(&channel, &self.exchange, self.exchange_type, self.declare)
            .await
            .map_err(|source| BrokerError::Exchange {
                verb,
                exchange: self.exchange.clone(),
                url: self.url.clone(),
                source: Box::new(source),
            })?;
        Ok(channel)
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(BrokerError::Timeout {
                    url: self.url.clone(),
                    timeout: self.timeout,
                })
            })
    }

    /// [`Broker::connect`] within the timeout.
    pub async fn connect_bounded(&self) -> Result<(Connection, Channel), BrokerError> {
        self.bounded(self.connect()).await
    }
}

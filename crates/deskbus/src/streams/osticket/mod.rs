//! `type = "osticket"`: creates osTicket tickets through its HTTP API, and
//! records each ticket's number in the spool's `links` table.
//!
//! The payload of each delivery is already the ticket's JSON, rendered by
//! the use case's `ticket` mapping (use_cases/ticket.rs) at delivery time;
//! this stream only posts it and reads the answer.

mod client;
mod config;

pub use config::OsticketStreamConfig;
use deskbus_spool::Spool;

use super::http_client::one_by_one;
use super::{BoxFuture, Delivery, DeliveryError, Stream, StreamContext};
use crate::internal_events::{
    ComponentFailed, TicketAlreadyCreated, TicketCreated, TicketRecordRetried,
};

pub(crate) struct OsticketStream {
    id: String,
    client: client::Client,
    /// Where ticket numbers are kept; `None` when only checked.
    spool: Option<Spool>,
    /// `osticket:<stream id>`: the links namespace of this stream.
    namespace: String,
}

impl OsticketStream {
    pub(crate) fn new(
        config: OsticketStreamConfig,
        ctx: &StreamContext,
    ) -> Result<OsticketStream, String> {
        Ok(OsticketStream {
            id: ctx.id.clone(),
            client: client::Client::new(&config)?,
            spool: ctx.spool.clone(),
            namespace: format!("osticket:{}", ctx.id),
        })
    }

    async fn deliver_one(&self, d: &Delivery<'_>) -> Result<(), DeliveryError> {
        /// What is recorded for a ticket osTicket created (201) without
        /// saying its number.
        const UNKNOWN_NUMBER: &str = "created, number not given";
        // One event taken by two use cases is two tickets.
        let local_id = format!("{}/{}", d.event_id, d.use_case);
        if let Some(number) = self.recorded(&local_id).await? {
            TicketAlreadyCreated {
                stream: &self.id,
                use_case: d.use_case,
                event_id: d.event_id,
                number: &number,
            }
            .emit();
            return Ok(());
        }
        let number = self.client.create(d.payload.to_vec()).await?;
        // A 201 whose body held no number still created the ticket: record
        // that much, so that a redelivery does not create it again.
        let remote_id = match number.is_empty() {
            true => UNKNOWN_NUMBER,
            false => number.as_str(),
        };
        let recorded = self.record(&local_id, remote_id).await;
        TicketCreated {
            stream: &self.id,
            use_case: d.use_case,
            event_id: d.event_id,
            number: &number,
            recorded,
        }
        .emit();
        Ok(())
    }

    /// The ticket number recorded for `local_id`. A spool that cannot be
    /// read is a retry: sending without knowing could create a duplicate.
    async fn recorded(&self, local_id: &str) -> Result<Option<String>, DeliveryError> {
        let Some(spool) = self.spool.clone() else {
            return Ok(None);
        };
        let (namespace, local_id) = (self.namespace.clone(), local_id.to_owned());
        match tokio::task::spawn_blocking(move || spool.link(&namespace, &local_id)).await {
            Ok(Ok(number)) => Ok(number),
            Ok(Err(e)) => Err(DeliveryError::retryable(format!(
                "cannot read recorded ticket numbers: {}",
                crate::internal_events::error_chain(&e)
            ))),
            Err(e) => Err(DeliveryError::retryable(format!(
                "cannot read recorded ticket numbers: {e}"
            ))),
        }
    }

    /// Records a created ticket's number; false (reported) if it could not be.
    /// The ticket exists either way, so the delivery counts as done.
    ///
    /// Tried a few times over about two seconds: without the record a
    /// redelivery would create the ticket again, and a spool that refused
    /// once (a lock held by `deskbus dlq`, a moment of full disk) often
    /// takes it a moment later. A stopped spool is not waited for.
    async fn record(&self, local_id: &str, number: &str) -> bool {
        const TRIES: u32 = 4;
        let Some(spool) = &self.spool else {
            return false;
        };
        let mut wait = std::time::Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let error = match spool.put_link(&self.namespace, local_id, number).await {
                Ok(()) => return true,
                Err(error) => error,
            };
            if matches!(error, deskbus_spool::SpoolError::Closed) || attempt == TRIES {
                // Reported once, for the last try.
                ComponentFailed {
                    component: &self.id,
                    error: &error,
                }
                .emit();
                return false;
            }
            TicketRecordRetried {
                stream: &self.id,
                local_id,
                attempt,
                error: &error,
            }
            .emit();
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }
}

impl Stream for OsticketStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            // A ticket's events keep their order.
            one_by_one(batch, "ticket", |d| self.deliver_one(d)).await
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.client.probe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::http_client::is_unreachable;

    /// An osTicket that cannot be reached is tried once per batch: the
    /// other tickets are retried with the first, not each sent to wait.
    #[tokio::test]
    async fn an_unreachable_osticket_is_tried_once_per_batch() {
        let config = OsticketStreamConfig {
            // Port 1 on loopback: nothing listens, the connection is refused.
            url: "http://127.0.0.1:1/api/tickets.json".into(),
            api_key: crate::config::Secret::new("KEY".into()),
            timeout: std::time::Duration::from_secs(5),
        };
        let ctx = StreamContext {
            id: "helpdesk".into(),
            spool: None,
        };
        let stream = OsticketStream::new(config, &ctx).unwrap();
        let batch = [
            Delivery::for_test("", b"{}"),
            Delivery::for_test("", b"{}"),
            Delivery::for_test("", b"{}"),
        ];
        let results = stream.deliver(&batch).await;
        assert!(
            matches!(&results[0], Err(e @ DeliveryError::Retryable { .. }) if is_unreachable(e)),
            "{results:?}"
        );
        for result in &results[1..] {
            assert!(
                matches!(result, Err(DeliveryError::Retryable { reason, .. }) if reason.starts_with("not sent: an earlier ticket of the batch failed: cannot reach")),
                "{results:?}"
            );
        }
    }
}

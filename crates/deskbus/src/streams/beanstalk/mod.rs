//! `type = "beanstalk"`: one beanstalkd job per event, in the use case's tube.

mod config;
mod pool;

use deskbus_beanstalk::{Error, Job, Put};
use indexmap::IndexMap;

pub use config::BeanstalkConfig;
pub(crate) use config::parse_address;
use pool::Pool;

use super::{BoxFuture, Delivery, DeliveryError, Stream};
use crate::internal_events::error_chain;

pub(crate) struct BeanstalkStream {
    config: BeanstalkConfig,
    pool: Pool,
}

impl BeanstalkStream {
    pub(crate) fn new(config: BeanstalkConfig) -> BeanstalkStream {
        BeanstalkStream {
            pool: Pool::new(config.address.clone(), config.connections),
            config,
        }
    }

    fn job<'a>(&self, delivery: &'a Delivery<'a>) -> Job<'a> {
        // In range: the config accepts only whole seconds up to u32::MAX.
        Job {
            priority: self.config.priority,
            delay: self.config.delay.as_secs() as u32,
            ttr: self.config.ttr.as_secs() as u32,
            body: &delivery.payload,
        }
    }

    fn outcome(
        &self,
        delivery: &Delivery<'_>,
        result: Result<Put, Error>,
    ) -> Result<(), DeliveryError> {
        match result {
            Ok(Put::Inserted(_)) => Ok(()),
            Ok(Put::Buried(job_id)) => {
                // Stored, so delivered: putting it again would duplicate it.
                // A worker sees it only once someone kicks it.
                tracing::warn!(
                    address = %self.config.address,
                    tube = %delivery.queue,
                    job_id,
                    event_id = %delivery.event_id,
                    "beanstalkd stored the job buried (out of memory); kick it to make it ready"
                );
                Ok(())
            }
            Err(Error::JobTooBig) => Err(DeliveryError::permanent(format!(
                "{} bytes is larger than beanstalkd's max job size (JOB_TOO_BIG)",
                delivery.payload.len()
            ))),
            // BAD_FORMAT, EXPECTED_CRLF and UNKNOWN_COMMAND to a put this
            // client framed correctly say the connection was out of step (it
            // is replaced), not that the job is bad: retried like the rest.
            Err(error) => Err(DeliveryError::retryable(error_chain(&error))),
        }
    }
}

impl Stream for BeanstalkStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            // Nothing counts as delivered until its reply says so.
            let mut results: Vec<Result<(), DeliveryError>> =
                vec![Err(DeliveryError::retryable("no reply for this job")); batch.len()];
            // One pipeline per tube, in batch order within each tube.
            let mut by_tube: IndexMap<&str, Vec<usize>> = IndexMap::new();
            for (i, delivery) in batch.iter().enumerate() {
                match deskbus_event::names::check_beanstalk_tube(&delivery.queue) {
                    Ok(()) => by_tube.entry(&delivery.queue).or_default().push(i),
                    Err(reason) => results[i] = Err(DeliveryError::permanent(reason)),
                }
            }
            if by_tube.is_empty() {
                return results;
            }
            let mut slot = self.pool.checkout().await;
            let mut unreachable: Option<String> = None;
            for (tube, members) in by_tube {
                // A server that could not be reached (or hung) for one tube
                // is not waited for again, once per tube, in the same batch.
                if let Some(reason) = &unreachable {
                    for &i in &members {
                        results[i] = Err(DeliveryError::retryable(reason.clone()));
                    }
                    continue;
                }
                let jobs: Vec<Job<'_>> = members.iter().map(|&i| self.job(&batch[i])).collect();
                let puts = self.pool.put(&mut slot, tube, &jobs).await;
                for (&i, put) in members.iter().zip(puts) {
                    if let Err(error @ (Error::Connect { .. } | Error::Io(_))) = &put {
                        unreachable.get_or_insert_with(|| {
                            format!(
                                "not sent: an earlier tube of the batch failed: {}",
                                error_chain(error)
                            )
                        });
                    }
                    results[i] = self.outcome(&batch[i], put);
                }
            }
            results
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut conn = self.pool.connect().await.map_err(|e| error_chain(&e))?;
            // A server that accepts but never answers must not hang `check`.
            let stats = tokio::time::timeout(pool::REPLY_TIMEOUT, conn.stats())
                .await
                .map_err(|_| {
                    format!(
                        "beanstalkd at {} did not answer `stats` within {:?}",
                        self.config.address,
                        pool::REPLY_TIMEOUT
                    )
                })?
                .map_err(|e| error_chain(&e))?;
            if stats.get("draining") == Some("true") {
                return Err(format!(
                    "beanstalkd at {} is draining and takes no new jobs",
                    self.config.address
                ));
            }
            let _ = conn.quit().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_tubes_are_permanent_and_an_unreachable_server_retryable() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let stream = BeanstalkStream::new(BeanstalkConfig {
            address: "127.0.0.1:1".into(),
            ..BeanstalkConfig::default()
        });
        let results = stream
            .deliver(&[
                Delivery::for_test("bad tube", b"1"),
                Delivery::for_test("good", b"2"),
            ])
            .await;
        assert!(
            matches!(&results[0], Err(DeliveryError::Permanent { reason }) if reason.contains("bad tube")),
            "{results:?}"
        );
        assert!(
            matches!(&results[1], Err(DeliveryError::Retryable { reason, .. }) if reason.contains("cannot connect to 127.0.0.1:1")),
            "{results:?}"
        );
        assert!(stream.healthcheck().await.is_err());
    }

    /// Once the server could not be reached for one tube, the batch's other
    /// tubes are not tried (each would wait for the connect again).
    #[tokio::test]
    async fn an_unreachable_server_is_tried_once_per_batch_not_per_tube() {
        let stream = BeanstalkStream::new(BeanstalkConfig {
            address: "127.0.0.1:1".into(),
            ..BeanstalkConfig::default()
        });
        let results = stream
            .deliver(&[
                Delivery::for_test("a", b"1"),
                Delivery::for_test("b", b"2"),
                Delivery::for_test("c", b"3"),
            ])
            .await;
        assert!(
            matches!(&results[0], Err(DeliveryError::Retryable { reason, .. }) if reason.starts_with("cannot connect")),
            "{results:?}"
        );
        for result in &results[1..] {
            assert!(
                matches!(result, Err(DeliveryError::Retryable { reason, .. }) if reason.starts_with("not sent: an earlier tube of the batch failed: cannot connect")),
                "{results:?}"
            );
        }
    }
}

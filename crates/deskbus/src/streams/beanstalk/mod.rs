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
            // The server refused what we sent as malformed: sending the same
            // bytes again would be refused again.
            Err(error @ (Error::BadFormat | Error::ExpectedCrlf | Error::UnknownCommand)) => {
                Err(DeliveryError::permanent(error_chain(&error)))
            }
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
            let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); batch.len()];
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
            for (tube, members) in by_tube {
                let jobs: Vec<Job<'_>> = members.iter().map(|&i| self.job(&batch[i])).collect();
                let puts = self.pool.put(&mut slot, tube, &jobs).await;
                for (&i, put) in members.iter().zip(puts) {
                    results[i] = self.outcome(&batch[i], put);
                }
            }
            results
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut conn = self.pool.connect().await.map_err(|e| error_chain(&e))?;
            let stats = conn.stats().await.map_err(|e| error_chain(&e))?;
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
}

//! `type = "stdout"`: one event per line on standard output.

mod config;

use std::io::Write;

pub use config::StdoutConfig;

use super::{BoxFuture, Delivery, DeliveryError, Stream, all_failed};

pub(crate) struct StdoutStream;

impl StdoutStream {
    pub(crate) fn new(_config: StdoutConfig) -> StdoutStream {
        StdoutStream
    }
}

impl Stream for StdoutStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut bytes = Vec::new();
            for d in batch {
                bytes.extend_from_slice(&d.payload);
                bytes.push(b'\n');
            }
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Ok(()) => vec![Ok(()); batch.len()],
                Err(e) => all_failed(
                    batch.len(),
                    DeliveryError::retryable(format!("cannot write to stdout: {e}")),
                ),
            }
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

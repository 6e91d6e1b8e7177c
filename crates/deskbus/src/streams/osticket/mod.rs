//! `type = "osticket"` stream (being written).

mod config;

pub use config::OsticketStreamConfig;

use super::{BoxFuture, Delivery, DeliveryError, Stream};

pub(crate) struct OsticketStream {}

impl OsticketStream {
    pub(crate) fn new(_config: OsticketStreamConfig) -> Result<OsticketStream, String> {
        Err("the osticket stream is being written".into())
    }
}

impl Stream for OsticketStream {
    fn deliver<'a>(
        &'a self,
        _batch: &'a [Delivery],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        unimplemented!()
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        unimplemented!()
    }
}

//! `type = "amqp"` source (being written).

mod config;

pub use config::AmqpSourceConfig;

use super::{SourceContext, SourceError};

pub(crate) async fn run(_config: AmqpSourceConfig, _ctx: SourceContext) -> Result<(), SourceError> {
    unimplemented!("source amqp is being written")
}

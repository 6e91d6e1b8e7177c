//! `type = "osticket"` source (being written).

mod config;

pub use config::OsticketSourceConfig;

use super::{SourceContext, SourceError};

pub(crate) async fn run(_config: OsticketSourceConfig, _ctx: SourceContext) -> Result<(), SourceError> {
    unimplemented!("source osticket is being written")
}

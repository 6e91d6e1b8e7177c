//! `type = "beanstalk"` source (being written).

mod config;

pub use config::BeanstalkSourceConfig;

use super::{SourceContext, SourceError};

pub(crate) async fn run(_config: BeanstalkSourceConfig, _ctx: SourceContext) -> Result<(), SourceError> {
    unimplemented!("source beanstalk is being written")
}

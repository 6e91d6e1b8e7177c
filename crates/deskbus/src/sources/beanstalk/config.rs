use crate::config::walker::Table;

/// `[sources.X]` `type = "beanstalk"` (placeholder; being written).
#[derive(Debug, Clone, PartialEq)]
pub struct BeanstalkSourceConfig {}

impl BeanstalkSourceConfig {
    pub(crate) fn from_table(_t: &Table<'_, '_, '_>) -> Option<BeanstalkSourceConfig> {
        Some(BeanstalkSourceConfig {})
    }
}

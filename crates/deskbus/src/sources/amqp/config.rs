use crate::config::walker::Table;

/// `[sources.X]` `type = "amqp"` (placeholder; being written).
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpSourceConfig {}

impl AmqpSourceConfig {
    pub(crate) fn from_table(_t: &Table<'_, '_, '_>) -> Option<AmqpSourceConfig> {
        Some(AmqpSourceConfig {})
    }
}

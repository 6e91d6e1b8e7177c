use crate::config::walker::Table;

/// `[streams.X]` `type = "stdout"`
///
/// Writes one event per line to standard output. Useful
/// for trying a config; the use case's queue is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StdoutConfig {}

impl StdoutConfig {
    pub(crate) fn from_table(_t: &Table<'_, '_, '_>) -> Option<StdoutConfig> {
        Some(StdoutConfig {})
    }
}

use crate::config::walker::Table;

/// `[streams.X]` `type = "osticket"` (placeholder; being written).
#[derive(Debug, Clone, PartialEq)]
pub struct OsticketStreamConfig {}

impl OsticketStreamConfig {
    pub(crate) fn from_table(_t: &Table<'_, '_, '_>) -> Option<OsticketStreamConfig> {
        Some(OsticketStreamConfig {})
    }
}

use crate::config::walker::Table;

/// `[sources.X]` `type = "osticket"` (placeholder; being written).
#[derive(Debug, Clone, PartialEq)]
pub struct OsticketSourceConfig {}

impl OsticketSourceConfig {
    pub(crate) fn from_table(_t: &Table<'_, '_, '_>) -> Option<OsticketSourceConfig> {
        Some(OsticketSourceConfig {})
    }
}

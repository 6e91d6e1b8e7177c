use crate::config::walker::Table;

/// `[sources.X]` `type = "demo"`
///
/// Generates realistic help-desk events, so a config can be
/// tried with no external system. Tickets are created, replied to, noted,
/// assigned and closed across departments and help topics; `ticket.created`
/// carries the six fields of the osTicket streamer's tickets-creation use case.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Events per second. Default 5.
    pub rate: f64,
    /// Stop after this many events; 0 runs until shutdown. Default 0.
    pub count: u64,
}

impl DemoConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<DemoConfig> {
        let rate = t.number("rate").unwrap_or(5.0);
        if !(0.001..=100_000.0).contains(&rate) {
            t.ctx.error(
                t.key_span("rate"),
                format!("`{}.rate` must be between 0.001 and 100000", t.name),
            );
        }
        let count = t.integer("count", 0..=i64::MAX).unwrap_or(0) as u64;
        Some(DemoConfig { rate, count })
    }
}

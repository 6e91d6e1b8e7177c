//! Typed internal events: each is one log line and one metric, so what an
//! operator reads and what a dashboard counts never disagree. Components
//! report through these and nothing else. No event carries a secret.
//!
//! Metric names (all `deskbus_` prefixed, Prometheus conventions):
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `source_received_events_total` | source | events a source parsed from its input |
//! | `source_accepted_events_total` | source | events committed to the spool |
//! | `source_rejected_events_total` | source, reason | events refused (`malformed`, `invalid_envelope`, `too_large`, `unauthorized`, `forbidden`, `timeout`, `busy`, `shutting_down`, `unmatched`, `spool`) |
//! | `stream_delivered_events_total` | stream | deliveries confirmed by the stream |
//! | `stream_retried_events_total` | stream | attempts that failed and will be retried |
//! | `stream_dead_lettered_events_total` | stream | entries moved to dead letters |
//! | `stream_delivery_latency_seconds` | stream | histogram: spool commit to confirmed delivery |
//! | `spool_depth` | stream | entries waiting in the spool |
//! | `spool_oldest_age_seconds` | stream | age of the oldest waiting entry |
//! | `use_case_dead_lettered_events_total` | use_case | events refused at routing (template) |
//! | `use_case_order_key_fallbacks_total` | use_case | events whose `order_key` template failed, ordered by the default key |
//! | `source_reconnects_total` | source | times a broker source lost its connection and connects again |
//! | `source_skipped_redeliveries_total` | source | input a broker handed out again after it was committed, acknowledged without a second commit |
//! | `source_buried_jobs_total` | source | Beanstalk jobs buried after too many attempts |
//! | `osticket_tickets_created_total` | stream | tickets osTicket created (answered 201) |
//! | `osticket_tickets_already_created_total` | stream | events not sent because their ticket number was already recorded |
//! | `osticket_record_retries_total` | stream | tries to record a created ticket's number that failed and were made again |

use metrics::{counter, gauge, histogram};

pub struct EventsReceived<'a> {
    pub source: &'a str,
    pub count: usize,
}

impl EventsReceived<'_> {
    pub fn emit(self) {
        tracing::trace!(source = self.source, count = self.count, "events received");
        counter!("deskbus_source_received_events_total", "source" => self.source.to_owned())
            .increment(self.count as u64);
    }
}

pub struct EventsAccepted<'a> {
    pub source: &'a str,
    pub count: usize,
}

impl EventsAccepted<'_> {
    pub fn emit(self) {
        tracing::trace!(source = self.source, count = self.count, "events accepted");
        counter!("deskbus_source_accepted_events_total", "source" => self.source.to_owned())
            .increment(self.count as u64);
    }
}

pub struct EventsRejected<'a> {
    pub source: &'a str,
    pub count: usize,
    pub reason: &'static str,
}

impl EventsRejected<'_> {
    pub fn emit(self) {
        tracing::debug!(
            source = self.source,
            count = self.count,
            reason = self.reason,
            "events rejected"
        );
        counter!("deskbus_source_rejected_events_total", "source" => self.source.to_owned(), "reason" => self.reason)
            .increment(self.count as u64);
    }
}

pub struct RoutedToDeadLetters<'a> {
    pub use_case: &'a str,
    pub event_id: &'a str,
    pub reason: &'a str,
}

impl RoutedToDeadLetters<'_> {
    pub fn emit(self) {
        tracing::warn!(
            use_case = self.use_case,
            event_id = self.event_id,
            reason = self.reason,
            "event sent to dead letters at routing"
        );
        counter!("deskbus_use_case_dead_lettered_events_total", "use_case" => self.use_case.to_owned()).increment(1);
    }
}

/// A use case's `order_key` template could not be rendered for an event
/// (it names a missing field): the event is ordered by the default key
/// instead, which the operator should hear about.
pub struct OrderKeyFallback<'a> {
    pub use_case: &'a str,
    pub event_id: &'a str,
    pub reason: &'a str,
    pub fallback: &'a str,
}

impl OrderKeyFallback<'_> {
    pub fn emit(self) {
        tracing::warn!(
            use_case = self.use_case,
            event_id = self.event_id,
            reason = self.reason,
            order_key = self.fallback,
            "order_key template not rendered; default key used"
        );
        counter!("deskbus_use_case_order_key_fallbacks_total", "use_case" => self.use_case.to_owned()).increment(1);
    }
}

/// Deliveries a stream confirmed. Registered once per stream, as Vector
/// registers its hot events: a labelled metric looked up by name costs a
/// label allocation and a registry lookup, which at batch size 1 was paid
/// twice for every event.
pub struct DeliveriesSucceeded {
    stream: String,
    delivered: metrics::Counter,
    latency: metrics::Histogram,
}

impl DeliveriesSucceeded {
    pub fn register(stream: &str) -> DeliveriesSucceeded {
        DeliveriesSucceeded {
            stream: stream.to_owned(),
            delivered: counter!("deskbus_stream_delivered_events_total", "stream" => stream.to_owned()),
            latency: histogram!("deskbus_stream_delivery_latency_seconds", "stream" => stream.to_owned()),
        }
    }

    /// `latencies`: seconds from spool commit to confirmation, one per
    /// delivery.
    pub fn emit(&self, latencies: &[f64]) {
        tracing::trace!(stream = %self.stream, count = latencies.len(), "events delivered");
        self.delivered.increment(latencies.len() as u64);
        for latency in latencies {
            self.latency.record(*latency);
        }
    }
}

pub struct DeliveryRetried<'a> {
    pub stream: &'a str,
    pub event_id: &'a str,
    pub attempts: u32,
    pub reason: &'a str,
    pub backoff_ms: i64,
}

impl DeliveryRetried<'_> {
    pub fn emit(self) {
        tracing::warn!(
            stream = self.stream,
            event_id = self.event_id,
            attempts = self.attempts,
            backoff_ms = self.backoff_ms,
            reason = self.reason,
            "delivery failed; will retry"
        );
        counter!("deskbus_stream_retried_events_total", "stream" => self.stream.to_owned())
            .increment(1);
    }
}

pub struct DeliveryDeadLettered<'a> {
    pub stream: &'a str,
    pub event_id: &'a str,
    pub attempts: u32,
    pub reason: &'a str,
}

impl DeliveryDeadLettered<'_> {
    pub fn emit(self) {
        tracing::error!(
            stream = self.stream,
            event_id = self.event_id,
            attempts = self.attempts,
            reason = self.reason,
            "delivery given up; entry moved to dead letters"
        );
        counter!("deskbus_stream_dead_lettered_events_total", "stream" => self.stream.to_owned())
            .increment(1);
    }
}

pub struct SpoolDepth<'a> {
    pub stream: &'a str,
    pub depth: u64,
    pub oldest_age_seconds: f64,
}

impl SpoolDepth<'_> {
    pub fn emit(self) {
        gauge!("deskbus_spool_depth", "stream" => self.stream.to_owned()).set(self.depth as f64);
        gauge!("deskbus_spool_oldest_age_seconds", "stream" => self.stream.to_owned())
            .set(self.oldest_age_seconds);
    }
}

pub struct ComponentFailed<'a> {
    pub component: &'a str,
    pub error: &'a (dyn std::error::Error + 'static),
}

impl ComponentFailed<'_> {
    pub fn emit(self) {
        tracing::error!(component = self.component, error = %ErrorChain(self.error), "component failed");
        counter!("deskbus_component_errors_total", "component" => self.component.to_owned())
            .increment(1);
    }
}

/// osTicket created a ticket for an event. Its number is not secret.
/// Recording a created ticket's number failed, and will be tried again.
pub struct TicketRecordRetried<'a> {
    pub stream: &'a str,
    pub local_id: &'a str,
    pub attempt: u32,
    pub error: &'a (dyn std::error::Error + 'static),
}

impl TicketRecordRetried<'_> {
    pub fn emit(self) {
        tracing::warn!(
            stream = self.stream,
            local_id = self.local_id,
            attempt = self.attempt,
            error = %ErrorChain(self.error),
            "ticket number not recorded; trying again"
        );
        counter!("deskbus_osticket_record_retries_total", "stream" => self.stream.to_owned())
            .increment(1);
    }
}

pub struct TicketCreated<'a> {
    pub stream: &'a str,
    pub use_case: &'a str,
    pub event_id: &'a str,
    pub number: &'a str,
    /// False when the number could not be recorded in the spool (the error
    /// is reported apart): a redelivery would then create the ticket again.
    pub recorded: bool,
}

impl TicketCreated<'_> {
    pub fn emit(self) {
        if self.recorded {
            tracing::info!(
                stream = self.stream,
                use_case = self.use_case,
                event_id = self.event_id,
                ticket_number = self.number,
                "osTicket ticket created"
            );
        } else {
            tracing::warn!(
                stream = self.stream,
                use_case = self.use_case,
                event_id = self.event_id,
                ticket_number = self.number,
                "osTicket ticket created, but its number was not recorded; a redelivery would create it again"
            );
        }
        counter!("deskbus_osticket_tickets_created_total", "stream" => self.stream.to_owned())
            .increment(1);
    }
}

/// An event whose ticket number is already recorded was handed out again
/// (deskbus stopped before recording its delivery): it is not sent twice.
pub struct TicketAlreadyCreated<'a> {
    pub stream: &'a str,
    pub use_case: &'a str,
    pub event_id: &'a str,
    pub number: &'a str,
}

impl TicketAlreadyCreated<'_> {
    pub fn emit(self) {
        tracing::info!(
            stream = self.stream,
            use_case = self.use_case,
            event_id = self.event_id,
            ticket_number = self.number,
            "osTicket ticket already created for this event; not sent again"
        );
        counter!("deskbus_osticket_tickets_already_created_total", "stream" => self.stream.to_owned())
            .increment(1);
    }
}

/// A broker source lost (or could not make) its connection; it connects
/// again after `retry_in`, and the broker hands out again what was not
/// acknowledged.
pub struct SourceDisconnected<'a> {
    pub source: &'a str,
    pub error: &'a (dyn std::error::Error + 'static),
    pub retry_in: std::time::Duration,
}

impl SourceDisconnected<'_> {
    pub fn emit(self) {
        tracing::warn!(
            source = self.source,
            error = %ErrorChain(self.error),
            retry_ms = self.retry_in.as_millis() as u64,
            "source disconnected; connecting again"
        );
        counter!("deskbus_source_reconnects_total", "source" => self.source.to_owned())
            .increment(1);
    }
}

/// Input a broker handed out again although the source had committed it
/// (its acknowledgement was lost): acknowledged without a second commit.
pub struct RedeliveriesSkipped<'a> {
    pub source: &'a str,
    pub count: usize,
}

impl RedeliveriesSkipped<'_> {
    pub fn emit(self) {
        tracing::info!(
            source = self.source,
            count = self.count,
            "input handed out again after it was committed; acknowledged without committing it twice"
        );
        counter!("deskbus_source_skipped_redeliveries_total", "source" => self.source.to_owned())
            .increment(self.count as u64);
    }
}

/// A Beanstalk job reserved too many times without being deleted, buried
/// so that it stops coming back; `kick` makes it ready again.
pub struct JobBuried<'a> {
    pub source: &'a str,
    pub job_id: u64,
    pub reserves: u64,
}

impl JobBuried<'_> {
    pub fn emit(self) {
        tracing::warn!(
            source = self.source,
            job_id = self.job_id,
            reserves = self.reserves,
            "job reserved too many times without being committed; buried (kick it to retry)"
        );
        counter!("deskbus_source_buried_jobs_total", "source" => self.source.to_owned())
            .increment(1);
    }
}

/// An error with its whole source chain, `a: b: c`, for reasons that end up
/// in logs, retries and dead letters.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    ErrorChain(error).to_string()
}

/// Displays an error with its whole source chain: `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

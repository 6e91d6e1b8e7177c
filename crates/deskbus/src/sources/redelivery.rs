//! Recognising input a broker hands out again after the source already
//! committed it: the AMQP message whose ack was lost in a crash, the
//! Beanstalk job whose `delete` never reached the server.
//!
//! A source acknowledges upstream only after the spool commit, so a crash
//! (or a lost connection) between the two makes the broker deliver the
//! same input again. The spool cannot catch that: its `(use_case,
//! event_id)` index only spans entries still pending, and an entry may be
//! delivered and gone by then.
//!
//! So each commit also stores, as the source's cursor (same transaction as
//! the events, see `Ingest::submit_with_rejects`), the fingerprints of the
//! last `capacity` inputs it committed. What a broker can hand out again is
//! bounded: AMQP holds at most `prefetch` unacknowledged messages per
//! consumer, and acks are cumulative, so the committed-but-unacked ones are
//! always among the last `prefetch` committed; a Beanstalk source holds at
//! most one batch of reserved jobs. When input comes back *marked as seen
//! before* (AMQP `redelivered`, a Beanstalk job reserved more than once) and
//! its fingerprint is in the window, the source acknowledges it without
//! committing it again.
//!
//! A fingerprint must name one input, never its content alone: the AMQP
//! `message_id`, the Beanstalk job id. Two identical messages are two
//! inputs, and if the first was committed and acknowledged, taking the
//! redelivered second for it would lose it. Input with no identity of its
//! own (XiVO's messages carry no `message_id`) is therefore not
//! fingerprinted, and is committed again when it comes back: a duplicate,
//! bounded by what was in flight, rather than a loss.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::{SourceContext, SourceError};

/// 64 bits of SHA-256: among the few hundred fingerprints of a window, a
/// chance match is out of reach.
pub(crate) type Fingerprint = u64;

/// The fingerprint of `parts`, each length-prefixed so that no two
/// different splits of the same bytes collide.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// A prefix for the cursor text: what it is, and its format version.
const PREFIX: &str = "redelivery-window/1:";

/// The fingerprints of the last inputs committed, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    capacity: usize,
    order: VecDeque<Fingerprint>,
    /// How many times each fingerprint is in `order`.
    present: HashMap<Fingerprint, u32>,
    /// How many of those were matched by a redelivery in this session:
    /// each committed input can stand for one redelivery per connection,
    /// so two redelivered identical messages are never both taken for one
    /// that was committed once.
    matched: HashMap<Fingerprint, u32>,
}

impl Window {
    /// The window stored as `cursor` (none, or unreadable: empty), keeping
    /// at least `capacity` fingerprints (more when the stored one held
    /// more: a smaller `prefetch` after a restart must not forget inputs
    /// the larger one may have left unacknowledged).
    pub(crate) fn from_cursor(cursor: Option<&str>, capacity: usize) -> Window {
        let mut window = Window {
            capacity: capacity.max(1),
            ..Window::default()
        };
        let Some(text) = cursor.and_then(|c| c.strip_prefix(PREFIX)) else {
            return window;
        };
        let stored: Vec<Fingerprint> = text
            .split(',')
            .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
            .collect();
        window.capacity = window.capacity.max(stored.len());
        for fp in stored {
            window.push(fp);
        }
        window
    }

    /// The window the source `ctx` stored with its last commit.
    pub(crate) fn load(ctx: &SourceContext, capacity: usize) -> Result<Window, SourceError> {
        let cursor = ctx
            .ingest
            .spool()
            .cursor(&ctx.id)
            .map_err(|source| SourceError::Spool {
                source_id: ctx.id.clone(),
                source: Box::new(source),
            })?;
        Ok(Window::from_cursor(cursor.as_deref(), capacity))
    }

    /// The cursor text: [`PREFIX`], then the fingerprints in hex, oldest first.
    pub(crate) fn to_cursor(&self) -> String {
        let mut text = String::with_capacity(PREFIX.len() + self.order.len() * 17);
        text.push_str(PREFIX);
        for (i, fp) in self.order.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{fp:x}"));
        }
        text
    }

    /// A new connection: the broker hands out again everything still
    /// unacknowledged, so every committed input may be matched once more.
    pub(crate) fn begin_session(&mut self) {
        self.matched.clear();
    }

    /// Records an input as committed, forgetting the oldest beyond capacity.
    pub(crate) fn push(&mut self, fp: Fingerprint) {
        self.order.push_back(fp);
        *self.present.entry(fp).or_default() += 1;
        while self.order.len() > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(n) = self.present.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.present.remove(&old);
                    self.matched.remove(&old);
                }
            }
        }
    }

    /// True (and counted) when a redelivered input with this fingerprint
    /// can stand for a committed one not matched yet in this session.
    pub(crate) fn take(&mut self, fp: Fingerprint) -> bool {
        let present = self.present.get(&fp).copied().unwrap_or(0);
        let matched = self.matched.entry(fp).or_default();
        if *matched < present {
            *matched += 1;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"ab", b"c"]));
    }

    #[test]
    fn keeps_the_last_capacity_inputs() {
        let mut w = Window::from_cursor(None, 3);
        for fp in 1..=5 {
            w.push(fp);
        }
        assert_eq!(w.len(), 3);
        assert!(!w.take(1) && !w.take(2));
        assert!(w.take(3) && w.take(5));
    }

    #[test]
    fn each_committed_input_matches_one_redelivery_per_session() {
        let mut w = Window::from_cursor(None, 10);
        w.push(7);
        assert!(w.take(7));
        assert!(!w.take(7), "a second identical redelivery is new input");
        w.begin_session();
        assert!(w.take(7), "after a reconnection it may come back again");
        w.push(7);
        assert!(w.take(7), "committed twice, matched twice");
    }

    #[test]
    fn round_trips_through_the_cursor() {
        let mut w = Window::from_cursor(None, 4);
        for fp in [u64::MAX, 0, 42, 42] {
            w.push(fp);
        }
        let text = w.to_cursor();
        assert!(text.starts_with("redelivery-window/1:"), "{text}");
        let mut back = Window::from_cursor(Some(&text), 2);
        assert_eq!(back.len(), 4, "a smaller capacity keeps what was stored");
        assert!(back.take(u64::MAX) && back.take(0) && back.take(42) && back.take(42));
        assert!(!back.take(42));
        assert_eq!(Window::from_cursor(Some("garbage"), 5).len(), 0);
    }
}

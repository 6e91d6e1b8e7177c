//! The source's position in osTicket's two id streams, and the rule for
//! ids that become visible out of order.
//!
//! InnoDB hands out an AUTO_INCREMENT id at insert time, but the row is
//! seen only once its transaction commits: id 12 can be read while id 11
//! is still in flight, and a rolled-back insert (or a ticket deleted before
//! it was read) leaves a gap for ever. So a stream's position is not one
//! number but `hi`, the highest id read, plus the *gaps* below it: ranges
//! of ids not seen yet. Rows above a gap are emitted at once (latency does
//! not suffer); the gap is asked for again on every poll until its ids show
//! up (each one emitted then, once) or `gap_grace` has passed since it was
//! noticed, when it is given up. An id is emitted only if it is above `hi`
//! or inside a gap, and both are shrunk as it is: never twice.
//!
//! The cursor is committed with the events it produced, as a small JSON
//! object: `{"v":1,"entries":{"hi":120,"gaps":[[118,118]]},"events":{"hi":45}}`.
//! When a gap was noticed is not stored: after a restart its grace starts
//! again, which only delays the skip.

use serde::{Deserialize, Serialize};

/// Gaps waited on at once per stream; beyond this the oldest is given up,
/// so a pathological table cannot grow the cursor without bound.
pub(super) const MAX_GAPS: usize = 1000;

/// The cursor format's version. Bump it when the format changes, and keep
/// reading the old one.
const VERSION: u32 = 1;

/// A range of ids not seen yet, and when it was first noticed (ms on the
/// source's monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gap {
    pub start: u64,
    pub end: u64,
    pub since_ms: u64,
}

/// One id stream's position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct IdCursor {
    /// The highest id read (emitted, or skipped as part of a gap).
    pub hi: u64,
    /// Ids at or below `hi` not seen yet, ascending, disjoint.
    pub gaps: Vec<Gap>,
}

/// What one poll of a stream decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Observed {
    /// Ids to emit, ascending.
    pub emit: Vec<u64>,
    /// Ids given up at the gap cap.
    pub skipped: u64,
}

impl IdCursor {
    pub fn at(hi: u64) -> IdCursor {
        IdCursor {
            hi,
            gaps: Vec::new(),
        }
    }

    /// The id ranges to ask for again.
    pub fn gap_ranges(&self) -> Vec<(u64, u64)> {
        self.gaps.iter().map(|g| (g.start, g.end)).collect()
    }

    /// Every id at or below this is read or given up.
    #[cfg(test)]
    pub fn low_watermark(&self) -> u64 {
        self.gaps.first().map_or(self.hi, |g| g.start - 1)
    }

    /// Takes in the rows a poll saw: `new` from `id > hi` (ascending, each
    /// with whether it is *settled*: written longer ago than the grace, so
    /// no in-flight insert can still be below it) and `found` from the gap
    /// ranges. Returns the ids to emit.
    pub fn observe(
        &mut self,
        new: &[(u64, bool)],
        found: &[u64],
        now_ms: u64,
        grace_ms: u64,
    ) -> Observed {
        let mut out = Observed::default();
        for &id in found {
            if self.take_from_gaps(id) {
                out.emit.push(id);
            }
        }
        for &(id, settled) in new {
            if id <= self.hi {
                // Not from `id > hi`: a caller bug, never emitted twice.
                continue;
            }
            if id > self.hi + 1 {
                // Below a settled row, a missing id is a delete or a
                // rollback, not a commit to wait for: give it up at once.
                let since_ms = if settled {
                    now_ms.saturating_sub(grace_ms.saturating_add(1))
                } else {
                    now_ms
                };
                self.gaps.push(Gap {
                    start: self.hi + 1,
                    end: id - 1,
                    since_ms,
                });
            }
            self.hi = id;
            out.emit.push(id);
        }
        while self.gaps.len() > MAX_GAPS {
            let gap = self.gaps.remove(0);
            out.skipped += gap.end - gap.start + 1;
        }
        out.emit.sort_unstable();
        out
    }

    /// Gives up the gaps noticed more than `grace_ms` ago; returns how many
    /// ids were skipped.
    pub fn expire(&mut self, now_ms: u64, grace_ms: u64) -> u64 {
        let mut skipped = 0;
        self.gaps.retain(|g| {
            let keep = now_ms.saturating_sub(g.since_ms) <= grace_ms;
            if !keep {
                skipped += g.end - g.start + 1;
            }
            keep
        });
        skipped
    }

    /// Removes `id` from the gap holding it; false if no gap holds it.
    fn take_from_gaps(&mut self, id: u64) -> bool {
        let Some(i) = self.gaps.iter().position(|g| g.start <= id && id <= g.end) else {
            return false;
        };
        let gap = self.gaps[i];
        match (id == gap.start, id == gap.end) {
            (true, true) => {
                self.gaps.remove(i);
            }
            (true, false) => self.gaps[i].start = id + 1,
            (false, true) => self.gaps[i].end = id - 1,
            (false, false) => {
                self.gaps[i].end = id - 1;
                self.gaps.insert(
                    i + 1,
                    Gap {
                        start: id + 1,
                        end: gap.end,
                        since_ms: gap.since_ms,
                    },
                );
            }
        }
        true
    }
}

/// The whole position: one cursor per id stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Cursor {
    pub entries: IdCursor,
    pub events: IdCursor,
}

#[derive(Serialize, Deserialize)]
struct StreamV1 {
    hi: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gaps: Vec<[u64; 2]>,
}

#[derive(Serialize, Deserialize)]
struct CursorV1 {
    v: u32,
    entries: StreamV1,
    events: StreamV1,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CursorError {
    #[error("stored position is not an osticket cursor: {0}")]
    Malformed(String),
    #[error("stored position has version {0}, newer than this deskbus understands ({VERSION})")]
    TooNew(u64),
}

impl Cursor {
    pub fn encode(&self) -> String {
        let stream = |c: &IdCursor| StreamV1 {
            hi: c.hi,
            gaps: c.gaps.iter().map(|g| [g.start, g.end]).collect(),
        };
        let v1 = CursorV1 {
            v: VERSION,
            entries: stream(&self.entries),
            events: stream(&self.events),
        };
        // Plain structs of integers: serialising cannot fail.
        serde_json::to_string(&v1).unwrap_or_default()
    }

    /// Reads a stored cursor; its gaps start their grace at `now_ms`.
    pub fn decode(text: &str, now_ms: u64) -> Result<Cursor, CursorError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CursorError::Malformed(e.to_string()))?;
        match value.get("v").and_then(|v| v.as_u64()) {
            Some(1) => {}
            Some(v) if v > u64::from(VERSION) => return Err(CursorError::TooNew(v)),
            _ => return Err(CursorError::Malformed("no known `v`".into())),
        }
        let v1: CursorV1 =
            serde_json::from_value(value).map_err(|e| CursorError::Malformed(e.to_string()))?;
        let stream = |s: StreamV1| -> Result<IdCursor, CursorError> {
            let mut gaps: Vec<Gap> = Vec::with_capacity(s.gaps.len());
            for [start, end] in s.gaps {
                let after_previous = gaps.last().is_none_or(|g| g.end < start);
                if start == 0 || start > end || end > s.hi || !after_previous {
                    return Err(CursorError::Malformed(format!(
                        "gap [{start}, {end}] is not an ascending range below hi {}",
                        s.hi
                    )));
                }
                gaps.push(Gap {
                    start,
                    end,
                    since_ms: now_ms,
                });
            }
            Ok(IdCursor { hi: s.hi, gaps })
        };
        Ok(Cursor {
            entries: stream(v1.entries)?,
            events: stream(v1.events)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let mut cursor = Cursor::default();
        cursor
            .entries
            .observe(&[(1, false), (4, false), (9, false)], &[], 0, 5000);
        cursor.events = IdCursor::at(45);
        let text = cursor.encode();
        assert_eq!(
            text,
            r#"{"v":1,"entries":{"hi":9,"gaps":[[2,3],[5,8]]},"events":{"hi":45}}"#
        );
        let back = Cursor::decode(&text, 0).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(back.entries.low_watermark(), 1);
        assert_eq!(
            Cursor::decode(r#"{"v":2,"entries":{"hi":1},"events":{"hi":1}}"#, 0),
            Err(CursorError::TooNew(2))
        );
        for bad in [
            "12",
            "{}",
            r#"{"v":1}"#,
            r#"{"v":1,"entries":{"hi":3,"gaps":[[2,5]]},"events":{"hi":1}}"#,
            r#"{"v":1,"entries":{"hi":9,"gaps":[[5,6],[2,3]]},"events":{"hi":1}}"#,
        ] {
            assert!(
                matches!(Cursor::decode(bad, 0), Err(CursorError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_gap_is_held_then_filled_or_skipped() {
        let mut c = IdCursor::at(10);
        let o = c.observe(&[(12, false), (13, false)], &[], 1000, 5000);
        assert_eq!(o.emit, [12, 13]);
        assert_eq!(c.gap_ranges(), [(11, 11)]);
        assert_eq!(c.low_watermark(), 10);
        assert_eq!(c.expire(3000, 5000), 0);
        // 11 commits late: emitted once, the gap closes.
        let o = c.observe(&[], &[11], 4000, 5000);
        assert_eq!(o.emit, [11]);
        assert!(c.gaps.is_empty());
        assert_eq!(c.low_watermark(), 13);
        // A gap that never fills is given up after the grace.
        c.observe(&[(16, false)], &[], 5000, 5000);
        assert_eq!(c.gap_ranges(), [(14, 15)]);
        assert_eq!(c.expire(10_000, 5000), 0);
        assert_eq!(c.expire(10_001, 5000), 2);
        assert_eq!(c.low_watermark(), 16);
        // Found twice (a poll racing another): emitted once.
        c.observe(&[(20, false)], &[], 20_000, 5000);
        assert_eq!(c.observe(&[], &[18], 20_001, 5000).emit, [18]);
        assert_eq!(c.observe(&[], &[18], 20_002, 5000).emit, Vec::<u64>::new());
        assert_eq!(c.gap_ranges(), [(17, 17), (19, 19)]);
    }

    #[test]
    fn a_gap_below_a_settled_row_is_given_up_at_once() {
        let mut c = IdCursor::at(0);
        c.observe(&[(5, true), (6, false), (9, false)], &[], 100_000, 5000);
        assert_eq!(c.gap_ranges(), [(1, 4), (7, 8)]);
        assert_eq!(c.expire(100_000, 5000), 4);
        assert_eq!(c.gap_ranges(), [(7, 8)]);
    }

    #[test]
    fn the_gap_count_is_capped() {
        let mut c = IdCursor::at(0);
        let new: Vec<(u64, bool)> = (1..=MAX_GAPS as u64 + 5).map(|i| (i * 2, false)).collect();
        let o = c.observe(&new, &[], 0, 5000);
        assert_eq!(c.gaps.len(), MAX_GAPS);
        assert_eq!(o.skipped, 5);
        assert_eq!(c.gaps[0].start, 11);
    }

    /// Simulates polls against ids 1..=n inserted one per tick, each
    /// becoming visible `delay[i]` ticks after its insert, read in
    /// batches of `batch`; returns how often each id was emitted.
    fn simulate(delays: &[u64], batch: usize, grace: u64, ticks: u64) -> BTreeMap<u64, u32> {
        let n = delays.len() as u64;
        let visible_at = |id: u64| id + delays[(id - 1) as usize];
        let mut c = IdCursor::at(0);
        let mut emitted: BTreeMap<u64, u32> = BTreeMap::new();
        for now in 0..ticks {
            let visible = |id: &u64| visible_at(*id) <= now;
            let found: Vec<u64> = c
                .gap_ranges()
                .iter()
                .flat_map(|&(a, b)| a..=b)
                .filter(visible)
                .take(batch)
                .collect();
            let new: Vec<(u64, bool)> = (c.hi + 1..=n)
                .filter(visible)
                .take(batch)
                .map(|id| (id, false))
                .collect();
            let complete = found.len() < batch;
            let o = c.observe(&new, &found, now, grace);
            for id in o.emit {
                *emitted.entry(id).or_default() += 1;
            }
            // As the source does: a gap is given up only after a complete read.
            if complete {
                c.expire(now, grace);
            }
        }
        emitted
    }

    proptest! {
        /// For any commit order whose delays stay within the grace, every
        /// id is emitted exactly once.
        #[test]
        fn every_id_exactly_once_when_commits_beat_the_grace(
            delays in proptest::collection::vec(0u64..20, 1..200),
            batch in 1usize..50,
        ) {
            let grace = 25;
            let n = delays.len() as u64;
            let emitted = simulate(&delays, batch, grace, n * 2 + 100);
            prop_assert_eq!(emitted.len() as u64, n, "missing ids: {:?}", emitted);
            prop_assert!(emitted.values().all(|&k| k == 1), "{:?}", emitted);
        }

        /// Whatever the delays and grace, no id is ever emitted twice, and
        /// the position always ends past every id.
        #[test]
        fn never_twice_whatever_the_grace(
            delays in proptest::collection::vec(0u64..200, 1..200),
            batch in 1usize..50,
            grace in 0u64..50,
        ) {
            let n = delays.len() as u64;
            let emitted = simulate(&delays, batch, grace, n * 3 + 300);
            prop_assert!(emitted.values().all(|&k| k == 1), "{:?}", emitted);
            prop_assert!(emitted.keys().all(|&id| (1..=n).contains(&id)));
        }

        #[test]
        fn encode_decode_round_trips(
            ids in proptest::collection::btree_set(1u64..10_000, 0..100),
        ) {
            let mut c = Cursor::default();
            let new: Vec<(u64, bool)> = ids.iter().map(|&i| (i, false)).collect();
            c.entries.observe(&new, &[], 7, 5000);
            let back = Cursor::decode(&c.encode(), 7).unwrap();
            prop_assert_eq!(back, c);
        }
    }
}

//! The list-then-read rule's running counts for one (identity, vault): every SecretList
//! in the window with the number of different secrets read within W after it.
//!
//! Exact whatever order lists and reads arrive in (partitions interleave, records come
//! late): a read of secret s at t is new to exactly the lists l in [t - W, t] whose window
//! holds no other read of s, i.e. those after s's previous read and more than W before
//! its next. So a read costs two neighbour lookups and an increment per such list, not a
//! set of secrets per list.

use std::collections::{BTreeMap, BTreeSet};

use super::event::Name;
use super::state::{Map, WinEvent, WinKind};

/// One key's lists and reads (see the module documentation).
#[derive(Debug, Default)]
pub struct ListReads {
    /// The window length, micros.
    w: i64,
    /// Read times of each secret.
    reads: Map<Name, BTreeSet<i64>>,
    /// Each list's time → different secrets read in [l, l + W].
    lists: BTreeMap<i64, u64>,
}

impl ListReads {
    /// Counts of a key's window events (lists and reads, in any order).
    pub fn from_events<'a>(events: impl Iterator<Item = &'a WinEvent>, w: i64) -> ListReads {
        let mut c = ListReads {
            w,
            ..ListReads::default()
        };
        for e in events {
            match (e.kind, &e.secret) {
                (WinKind::List, _) => c.list(e.t),
                (WinKind::Get, Some(s)) => c.read(s, e.t),
                _ => {}
            }
        }
        c
    }

    /// A SecretList at `l`.
    pub fn list(&mut self, l: i64) {
        if self.lists.contains_key(&l) {
            return;
        }
        let end = l.saturating_add(self.w);
        let n = self
            .reads
            .values()
            .filter(|times| times.range(l..=end).next().is_some())
            .count();
        self.lists.insert(l, n as u64);
    }

    /// A SecretGet of `secret` at `t`.
    pub fn read(&mut self, secret: &Name, t: i64) {
        let times = self.reads.entry(secret.clone()).or_default();
        if !times.insert(t) {
            return; // a read at the same time counted it already
        }
        let mut from = t.saturating_sub(self.w);
        if let Some(prev) = times.range(..t).next_back() {
            from = from.max(prev.saturating_add(1));
        }
        let mut to = t;
        if let Some(next) = times.range(t.saturating_add(1)..).next() {
            to = to.min(next.saturating_sub(self.w).saturating_sub(1));
        }
        if from <= to {
            for n in self.lists.range_mut(from..=to).map(|(_, n)| n) {
                *n += 1;
            }
        }
    }

    /// The lists whose window holds `t` (every list when `None`), with their counts.
    pub fn around(&self, t: Option<i64>) -> impl Iterator<Item = (i64, u64)> + '_ {
        let range = match t {
            Some(t) => self.lists.range(t.saturating_sub(self.w)..=t),
            None => self.lists.range(..),
        };
        range.map(|(l, n)| (*l, *n))
    }

    /// Forgets lists and reads before `floor` (evicted from the window): lists from the
    /// floor on keep every read they count, as those come after them.
    pub fn trim(&mut self, floor: i64) {
        self.lists.retain(|l, _| *l >= floor);
        self.reads.retain(|_, times| {
            times.retain(|t| *t >= floor);
            !times.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn trimmed_counts_equal_counts_of_the_events_left() {
        // Three hours of lists and reads, a little out of order, trimmed as eviction does
        // (everything before the newest time less 70 minutes): what is left counts like a
        // fresh count of the events from the floor on.
        let w = 10 * MIN;
        let mut c = ListReads {
            w,
            ..ListReads::default()
        };
        let mut events = Vec::new();
        let mut seed = 11u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            i64::try_from((seed >> 33) % n).unwrap_or(0)
        };
        let mut newest = 0;
        for i in 0..3_000i64 {
            let t = i * 3_600_000 + next(120) * 1_000_000; // 3.6 s apart, up to 2 min late
            let e = if next(6) == 0 {
                WinEvent {
                    t,
                    kind: WinKind::List,
                    secret: None,
                }
            } else {
                WinEvent {
                    t,
                    kind: WinKind::Get,
                    secret: Some(format!("s{}", next(20)).into()),
                }
            };
            match &e.secret {
                Some(s) => c.read(s, t),
                None => c.list(t),
            }
            events.push(e);
            newest = newest.max(t);
            if i % 97 == 0 {
                let floor = newest - 70 * MIN;
                c.trim(floor);
                events.retain(|e| e.t >= floor);
                let fresh = ListReads::from_events(events.iter(), w);
                assert_eq!(
                    c.around(None).collect::<Vec<_>>(),
                    fresh.around(None).collect::<Vec<_>>()
                );
            }
        }
        assert!(
            c.around(None).any(|(_, n)| n >= 10),
            "the test needs busy lists"
        );
    }
}

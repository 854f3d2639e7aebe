//! The list-then-read rule's running counts for one (identity, vault): every SecretList
//! in the window with the number of different secrets read within W after it.
//!
//! Exact whatever order lists and reads arrive in (partitions interleave, records come
//! late): a read of secret s at t is new to exactly the lists l in [t - W, t] whose window
//! holds no other read of s, i.e. those after s's previous read and more than W before
//! its next. So a read costs two neighbour lookups and an increment per such list, not a
//! set of secrets per list; taking a read out is the same walk with a decrement, which
//! keeps the counts up to date when another instance's contribution changes
//! ([`ListReads::replace`]).
//!
//! Beside them, the key's denials in time order, for the denied-burst rule: kept the
//! same way, so a denial does not sort every window event of its key again.

use std::collections::BTreeMap;

use super::event::Name;
use super::state::{Map, WinEvent, WinKind};

/// One key's lists and reads (see the module documentation).
#[derive(Debug, Default)]
pub struct ListReads {
    /// The window length, micros.
    w: i64,
    /// Read times of each secret, with the number of reads at that time.
    reads: Map<Name, BTreeMap<i64, u32>>,
    /// Each list's time → lists at that time, different secrets read in [l, l + W].
    lists: BTreeMap<i64, (u32, u64)>,
    /// Each denial's time → denials at that time.
    denials: BTreeMap<i64, u32>,
}

impl ListReads {
    /// Counts of a key's window events (lists, reads and denials, in any order).
    pub fn from_events<'a>(events: impl Iterator<Item = &'a WinEvent>, w: i64) -> ListReads {
        let mut c = ListReads {
            w,
            ..ListReads::default()
        };
        for e in events {
            c.add(e);
        }
        c
    }

    /// Takes a partition's events `old` out and puts `new` in (its events of this key
    /// before and after its contribution was replaced). The events of `old` that `new`
    /// starts with, in order, stay (an exchange usually only appends, or drops what left
    /// the window); the rest of `old` goes, the rest of `new` comes. Exact whatever the
    /// two hold: what stays is exactly the start of `new`.
    pub fn replace(&mut self, old: &[WinEvent], new: &[WinEvent]) {
        let mut kept = 0;
        for e in old {
            if new.get(kept) == Some(e) {
                kept += 1;
            } else {
                self.remove(e);
            }
        }
        for e in new.get(kept..).unwrap_or_default() {
            self.add(e);
        }
    }

    /// A window event of the key.
    pub fn add(&mut self, e: &WinEvent) {
        match (e.kind, &e.secret) {
            (WinKind::List, _) => self.list(e.t),
            (WinKind::Get, Some(s)) => self.read(s, e.t),
            (WinKind::Denied, _) => *self.denials.entry(e.t).or_default() += 1,
            (WinKind::Get, None) => {}
        }
    }

    fn remove(&mut self, e: &WinEvent) {
        match (e.kind, &e.secret) {
            (WinKind::List, _) => self.unlist(e.t),
            (WinKind::Get, Some(s)) => self.unread(s, e.t),
            (WinKind::Denied, _) => {
                if let Some(copies) = self.denials.get_mut(&e.t) {
                    *copies -= 1;
                    if *copies == 0 {
                        self.denials.remove(&e.t);
                    }
                }
            }
            (WinKind::Get, None) => {}
        }
    }

    /// A SecretList at `l`.
    pub fn list(&mut self, l: i64) {
        if let Some((copies, _)) = self.lists.get_mut(&l) {
            *copies += 1;
            return;
        }
        let end = l.saturating_add(self.w);
        let n = self
            .reads
            .values()
            .filter(|times| times.range(l..=end).next().is_some())
            .count();
        self.lists.insert(l, (1, n as u64));
    }

    fn unlist(&mut self, l: i64) {
        if let Some((copies, _)) = self.lists.get_mut(&l) {
            *copies -= 1;
            if *copies == 0 {
                self.lists.remove(&l);
            }
        }
    }

    /// A SecretGet of `secret` at `t`.
    pub fn read(&mut self, secret: &Name, t: i64) {
        let times = self.reads.entry(secret.clone()).or_default();
        let copies = times.entry(t).or_default();
        *copies += 1;
        if *copies > 1 {
            return; // a read at the same time counted it already
        }
        if let Some(lists) = self.alone_in(secret, t) {
            for (_, (_, n)) in self.lists.range_mut(lists) {
                *n += 1;
            }
        }
    }

    fn unread(&mut self, secret: &Name, t: i64) {
        let Some(copies) = self
            .reads
            .get_mut(secret)
            .and_then(|times| times.get_mut(&t))
        else {
            return;
        };
        *copies -= 1;
        if *copies > 0 {
            return; // another read at the same time still counts it
        }
        if let Some(lists) = self.alone_in(secret, t) {
            for (_, (_, n)) in self.lists.range_mut(lists) {
                *n -= 1;
            }
        }
        if let Some(times) = self.reads.get_mut(secret) {
            times.remove(&t);
            if times.is_empty() {
                self.reads.remove(secret);
            }
        }
    }

    /// The lists to which the read of `secret` at `t` is the only read of it in their
    /// window: [t - W, t], after its previous read and more than W before its next.
    fn alone_in(&self, secret: &Name, t: i64) -> Option<std::ops::RangeInclusive<i64>> {
        let mut from = t.saturating_sub(self.w);
        let mut to = t;
        if let Some(times) = self.reads.get(secret) {
            if let Some((prev, _)) = times.range(..t).next_back() {
                from = from.max(prev.saturating_add(1));
            }
            if let Some((next, _)) = times.range(t.saturating_add(1)..).next() {
                to = to.min(next.saturating_sub(self.w).saturating_sub(1));
            }
        }
        // `range_mut` panics on from > to.
        (from <= to).then_some(from..=to)
    }

    /// The lists whose window holds `t` (every list when `None`), with their counts.
    pub fn around(&self, t: Option<i64>) -> impl Iterator<Item = (i64, u64)> + '_ {
        let range = match t {
            Some(t) => self.lists.range(t.saturating_sub(self.w)..=t),
            None => self.lists.range(..),
        };
        range.map(|(l, (_, n))| (*l, *n))
    }

    /// The denial times in `[from, to]`, ascending, each as often as it occurred.
    pub fn denials(&self, from: i64, to: i64) -> impl Iterator<Item = i64> + '_ {
        self.denials
            .range(from..=to)
            .flat_map(|(t, copies)| std::iter::repeat_n(*t, *copies as usize))
    }

    /// Forgets lists, reads and denials before `floor` (evicted from the window): lists
    /// from the floor on keep every read they count, as those come after them.
    pub fn trim(&mut self, floor: i64) {
        self.lists.retain(|l, _| *l >= floor);
        self.denials = self.denials.split_off(&floor);
        self.reads.retain(|_, times| {
            times.retain(|t, _| *t >= floor);
            !times.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    /// A SecretList at `t`, or a read of secret `s<secret>`.
    fn event(t: i64, list: bool, secret: u64) -> WinEvent {
        WinEvent {
            t,
            kind: if list { WinKind::List } else { WinKind::Get },
            secret: (!list).then(|| format!("s{secret}").into()),
        }
    }

    #[test]
    fn replaced_events_count_like_a_fresh_count() {
        // One partition's events replaced again and again, as an exchange does: appended
        // to, thinned out, cut before a time, now and then reordered; beside them the
        // events of other partitions, which stay. Many secrets, so a dropped read often
        // was a list's only read of its secret; times on a 30 s grid, so equal events
        // (same time, same secret) come up. After every replacement the counts equal a
        // fresh count of the events there are.
        let w = 10 * MIN;
        let mut seed = 3u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let random_event = |next: &mut dyn FnMut(u64) -> u64| {
            let t = i64::try_from(next(80)).unwrap_or(0) * 30_000_000;
            event(t, next(5) == 0, next(60))
        };
        let others: Vec<WinEvent> = (0..200).map(|_| random_event(&mut next)).collect();
        let mut part: Vec<WinEvent> = Vec::new();
        let mut c = ListReads::from_events(others.iter(), w);
        let (mut removed, mut duplicates) = (0, 0);
        for _ in 0..400 {
            let mut now = part.clone();
            match next(6) {
                0 if !now.is_empty() => {
                    now.remove(usize::try_from(next(now.len() as u64)).unwrap_or(0));
                }
                1 => {
                    let floor = i64::try_from(next(20)).unwrap_or(0) * 30_000_000;
                    now.retain(|e| e.t >= floor);
                }
                2 if now.len() > 2 => {
                    let (a, b) = (next(now.len() as u64), next(now.len() as u64));
                    now.swap(
                        usize::try_from(a).unwrap_or(0),
                        usize::try_from(b).unwrap_or(0),
                    );
                }
                _ => {}
            }
            removed += part.len().saturating_sub(now.len());
            for _ in 0..next(6) {
                let e = random_event(&mut next);
                duplicates += usize::from(others.contains(&e) || now.contains(&e));
                now.push(e);
            }
            c.replace(&part, &now);
            part = now;
            let fresh = ListReads::from_events(others.iter().chain(&part), w);
            assert_eq!(
                c.around(None).collect::<Vec<_>>(),
                fresh.around(None).collect::<Vec<_>>()
            );
        }
        assert!(removed >= 100, "the test needs removals ({removed})");
        assert!(
            duplicates >= 20,
            "the test needs equal events ({duplicates})"
        );
    }

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
            let e = event(t, next(6) == 0, next(20).unsigned_abs());
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

//! The rules' state: per topic partition, its contribution (daily counters and the recent
//! events of the sliding windows) and the sum over every partition this instance knows.
//!
//! Keeping each partition's contribution apart is what makes counts combine: a partition
//! owned here adds its records, a partition owned by another instance arrives as that
//! instance's latest published contribution and replaces the previous one, and a partition
//! handed over is dropped without touching the others. The same form is the checkpoint.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::event::Name;

/// The state's maps: a fast seeded hash (foldhash), not SipHash. The rules look up
/// several keys per record; the seed is random per process, which keeps crafted names
/// from colliding on purpose.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What a daily counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// Calls on a vault.
    Vault(Name),
    /// Calls of an identity on all vaults (records with a vault, as `identity_daily`).
    Identity(Name),
    /// Successful SecretGet/KeyGet/VaultGet of an object id (excluded app ids left out).
    Reads(Name),
    /// Calls of an identity on a vault.
    Pair(Name, Name),
    /// Calls of an identity from an IP.
    Ip(Name, Name),
}

/// What a sliding-window event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WinKind {
    /// A 401/403 answer.
    Denied,
    /// A successful SecretList.
    List,
    /// A successful SecretGet.
    Get,
}

/// One event of a sliding window, kept per (identity, vault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinEvent {
    /// Event time, UTC micros.
    pub t: i64,
    /// What it is.
    pub kind: WinKind,
    /// The secret read (for `Get`).
    pub secret: Option<Name>,
}

/// (identity, vault).
pub type WinKey = (Name, Name);

/// One partition's share of the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Partition.
    pub partition: i32,
    /// Every record of an offset below this is counted.
    pub upto: i64,
    /// Who wrote it (instance id).
    pub writer: String,
    /// Daily counters: (day since epoch, key) → count.
    #[serde(with = "pairs")]
    pub counts: Map<(i32, Key), u64>,
    /// Recent window events.
    #[serde(with = "pairs")]
    pub windows: Map<WinKey, Vec<WinEvent>>,
}

/// JSON maps need string keys: maps travel as lists of pairs.
mod pairs {
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Map;

    pub fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(
        m: &Map<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&K, &V)> = m.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.serialize(s)
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<Map<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Every partition's contribution and their sum.
#[derive(Debug, Default)]
pub struct State {
    parts: Map<i32, Contribution>,
    total: Map<(i32, Key), u64>,
    /// The partitions holding window events of each key: a record's window is read from
    /// those alone, not looked up in every partition.
    win_parts: Map<WinKey, Vec<i32>>,
    /// Days with live counters (not yet evicted).
    days: BTreeSet<i32>,
    /// Days before this one are evicted: their records are left to the cold path.
    pub evicted_before: i32,
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State {
            evicted_before: i32::MIN,
            ..State::default()
        }
    }

    /// The partitions known.
    pub fn partitions(&self) -> impl Iterator<Item = &Contribution> {
        self.parts.values()
    }

    /// One partition's contribution.
    pub fn part(&self, p: i32) -> Option<&Contribution> {
        self.parts.get(&p)
    }

    /// The sum of a counter over every partition.
    pub fn total(&self, day: i32, key: &Key) -> u64 {
        self.total.get(&(day, key.clone())).copied().unwrap_or(0)
    }

    /// Whether any partition counted `key` on `day`.
    pub fn seen(&self, day: i32, key: &Key) -> bool {
        self.total.contains_key(&(day, key.clone()))
    }

    /// Live days, ascending.
    pub fn days(&self) -> impl Iterator<Item = i32> + '_ {
        self.days.iter().copied()
    }

    /// Whether `day` has live counters.
    pub fn is_live(&self, day: i32) -> bool {
        self.days.contains(&day)
    }

    /// Adds `n` to a counter of partition `p` (0 registers the key: the subject was
    /// active) and returns its new total.
    pub fn add(&mut self, p: i32, day: i32, key: &Key, n: u64) -> u64 {
        let part = self.parts.entry(p).or_insert_with(|| Contribution {
            partition: p,
            ..Contribution::default()
        });
        // Nearly every record counts keys already there: look up before cloning.
        let probe = (day, key.clone());
        match part.counts.get_mut(&probe) {
            Some(c) => *c += n,
            None => {
                part.counts.insert(probe.clone(), n);
                self.days.insert(day);
            }
        }
        match self.total.get_mut(&probe) {
            Some(t) => {
                *t += n;
                *t
            }
            None => {
                self.total.insert(probe, n);
                n
            }
        }
    }

    /// Appends a window event of partition `p`.
    pub fn push_window(&mut self, p: i32, key: WinKey, e: WinEvent) {
        let part = self.parts.entry(p).or_insert_with(|| Contribution {
            partition: p,
            ..Contribution::default()
        });
        match part.windows.get_mut(&key) {
            Some(v) => v.push(e),
            None => {
                index(&mut self.win_parts, &key, p);
                part.windows.insert(key, vec![e]);
            }
        }
    }

    /// The window events of `key` over every partition, in no particular order.
    pub fn window_events<'a>(&'a self, key: &WinKey) -> impl Iterator<Item = &'a WinEvent> {
        self.win_parts
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|p| self.parts.get(p)?.windows.get(key))
            .flatten()
    }

    /// Whether any partition holds window events of `key`.
    pub fn has_window(&self, key: &WinKey) -> bool {
        self.win_parts.contains_key(key)
    }

    /// The window events of `key` over every partition, sorted by time.
    pub fn window(&self, key: &WinKey) -> Vec<WinEvent> {
        let mut v: Vec<WinEvent> = self.window_events(key).cloned().collect();
        v.sort_by_key(|e| e.t);
        v
    }

    /// Marks partition `p` counted up to `upto`.
    pub fn set_upto(&mut self, p: i32, upto: i64) {
        if let Some(c) = self.parts.get_mut(&p) {
            c.upto = c.upto.max(upto);
        } else {
            self.parts.insert(
                p,
                Contribution {
                    partition: p,
                    upto,
                    ..Contribution::default()
                },
            );
        }
    }

    /// Replaces partition `p`'s contribution (another instance's latest, or a checkpoint);
    /// returns the counters whose totals changed and the windows that gained events.
    pub fn replace(&mut self, mut c: Contribution) -> (Vec<(i32, Key)>, Vec<WinKey>) {
        c.counts.retain(|(d, _), _| *d >= self.evicted_before);
        let old = self.remove(c.partition);
        let mut changed = Vec::new();
        for (k, n) in &c.counts {
            *self.total.entry(k.clone()).or_default() += n;
            self.days.insert(k.0);
            if old.as_ref().and_then(|o| o.counts.get(k)) != Some(n) {
                changed.push(k.clone());
            }
        }
        let windows = c
            .windows
            .iter()
            .filter(|(k, v)| old.as_ref().and_then(|o| o.windows.get(*k)) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in c.windows.keys() {
            index(&mut self.win_parts, k, c.partition);
        }
        self.parts.insert(c.partition, c);
        (changed, windows)
    }

    /// Drops partition `p`'s contribution (handed to another instance).
    pub fn remove(&mut self, p: i32) -> Option<Contribution> {
        let old = self.parts.remove(&p)?;
        for k in old.windows.keys() {
            unindex(&mut self.win_parts, k, p);
        }
        for (k, n) in &old.counts {
            if let Some(t) = self.total.get_mut(k) {
                *t = t.saturating_sub(*n);
                let empty = *t == 0 && !self.parts.values().any(|c| c.counts.contains_key(k));
                if empty {
                    self.total.remove(k);
                }
            }
        }
        Some(old)
    }

    /// Evicts the days before `day` (returned with their totals, for the history) and the
    /// window events before `before_micros`.
    pub fn evict(&mut self, day: i32, before_micros: i64) -> Vec<((i32, Key), u64)> {
        let mut out = Vec::new();
        if day > self.evicted_before {
            self.evicted_before = day;
            self.total.retain(|k, n| {
                if k.0 < day {
                    out.push((k.clone(), *n));
                    false
                } else {
                    true
                }
            });
            for c in self.parts.values_mut() {
                c.counts.retain(|k, _| k.0 >= day);
            }
            self.days.retain(|d| *d >= day);
        }
        let win_parts = &mut self.win_parts;
        for c in self.parts.values_mut() {
            let p = c.partition;
            c.windows.retain(|k, v| {
                v.retain(|e| e.t >= before_micros);
                if v.is_empty() {
                    unindex(win_parts, k, p);
                }
                !v.is_empty()
            });
        }
        out
    }

    /// Bytes the state holds, roughly (keys, counters and window events), for the docs'
    /// memory figure and a gauge.
    pub fn approx_bytes(&self) -> usize {
        let key = |k: &Key| {
            48 + match k {
                Key::Vault(a) | Key::Identity(a) | Key::Reads(a) => a.len(),
                Key::Pair(a, b) | Key::Ip(a, b) => a.len() + b.len() + 24,
            }
        };
        let counters: usize = self
            .parts
            .values()
            .flat_map(|c| c.counts.keys())
            .chain(self.total.keys())
            .map(|(_, k)| key(k) + 24)
            .sum();
        let windows: usize = self
            .parts
            .values()
            .flat_map(|c| c.windows.iter())
            .map(|((a, b), v)| {
                a.len()
                    + b.len()
                    + 64
                    + v.iter()
                        .map(|e| 48 + e.secret.as_ref().map_or(0, |s| s.len()))
                        .sum::<usize>()
            })
            .sum();
        counters + windows
    }
}

fn index(win_parts: &mut Map<WinKey, Vec<i32>>, key: &WinKey, p: i32) {
    let parts = win_parts.entry(key.clone()).or_default();
    if !parts.contains(&p) {
        parts.push(p);
    }
}

fn unindex(win_parts: &mut Map<WinKey, Vec<i32>>, key: &WinKey, p: i32) {
    if let Some(parts) = win_parts.get_mut(key) {
        parts.retain(|q| *q != p);
        if parts.is_empty() {
            win_parts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_combine_partitions_and_follow_replacements() {
        let mut s = State::new();
        let k = Key::Reads("a".into());
        s.add(0, 1, &k, 3);
        s.add(1, 1, &k, 4);
        assert_eq!(s.total(1, &k), 7);
        // Another instance publishes partition 2, then a newer version of it.
        let mut c = Contribution {
            partition: 2,
            upto: 10,
            ..Contribution::default()
        };
        c.counts.insert((1, k.clone()), 5);
        assert_eq!(s.replace(c.clone()).0, vec![(1, k.clone())]);
        assert_eq!(s.total(1, &k), 12);
        c.counts.insert((1, k.clone()), 6);
        s.replace(c);
        assert_eq!(s.total(1, &k), 13);
        s.remove(0);
        assert_eq!(s.total(1, &k), 10);
        let back: Contribution =
            serde_json::from_str(&serde_json::to_string(s.part(2).unwrap()).unwrap()).unwrap();
        assert_eq!(&back, s.part(2).unwrap());
    }

    #[test]
    fn eviction_returns_closed_days_and_drops_old_window_events() {
        let mut s = State::new();
        let k = Key::Vault("kv".into());
        s.add(0, 1, &k, 2);
        s.add(0, 2, &k, 1);
        let key: WinKey = ("x".into(), "kv".into());
        for t in [10, 20, 30] {
            s.push_window(
                0,
                key.clone(),
                WinEvent {
                    t,
                    kind: WinKind::Denied,
                    secret: None,
                },
            );
        }
        let gone = s.evict(2, 20);
        assert_eq!(gone, vec![((1, k.clone()), 2)]);
        assert_eq!(s.total(2, &k), 1);
        assert_eq!(s.window(&key).len(), 2);
        // A contribution published before the eviction does not bring day 1 back.
        let mut c = Contribution {
            partition: 5,
            ..Contribution::default()
        };
        c.counts.insert((1, k.clone()), 9);
        s.replace(c);
        assert_eq!(s.total(1, &k), 0);
    }
}

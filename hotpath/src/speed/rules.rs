//! The rules, evaluated record by record over the combined state: the seven kinds of the
//! cold path's `anomalies` table, with the same thresholds (`coldpath/sql/defaults.toml`)
//! and the same history conditions, so the two layers agree on what is an anomaly.
//!
//! Pure: no I/O and no clock (the caller passes `now`). Daily rules fire once per key and
//! UTC day, the moment the running count crosses; sliding-window rules once per key and
//! UTC day of the window's start; the id is a hash of (kind, key, day).

use std::collections::BTreeMap;

use kvlake_schemas::time::{civil_from_days, format_date};

use super::alert::{Alert, alert_hash, id_hash, id_text, kind};
use super::event::{Event, Name};
use super::history::{History, Metric, SERIES_DAYS};
use super::list_reads::ListReads;
use super::state::{Contribution, Key, Map, State, WinEvent, WinKey, WinKind};

type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

const DAY: i64 = 86_400_000_000;
const MINUTE: i64 = 60_000_000;

/// The thresholds, one field per key of `coldpath/sql/defaults.toml` with the same
/// meaning; the binary fills it from that file (and its overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// More than this many reads in a day.
    pub mass_retrieval_threshold: u64,
    /// App ids left out of mass retrieval (lower case).
    pub excluded_app_ids: Vec<String>,
    /// Operations reported whenever they succeed.
    pub sensitive_operations: Vec<String>,
    /// At least this many different secrets read after a SecretList.
    pub list_read_min_secrets: u64,
    /// At least this many 401/403 within the window.
    pub denied_burst_min: u64,
    /// Length of the sliding windows, minutes.
    pub window_minutes: u32,
    /// Days of history before a baseline is trusted / before first-seen means new.
    pub warmup_days: u32,
    /// Standard deviations above the 28-day mean.
    pub score_threshold: f64,
    /// Smallest 28-day mean for unusual volume.
    pub volume_min_baseline: f64,
    /// Smallest multiple of the mean for unusual volume.
    pub volume_min_ratio: f64,
    /// Calls in the day before a first-seen subject is reported.
    pub new_subject_min_operations: u64,
}

/// A subject's baseline for one day, as `baselines.sql` computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Lake days in the 28 days before, from the subject's first day.
    pub days: u32,
    /// Mean over those days (0 when none).
    pub mean: f64,
    /// The spread used in scores: the standard deviation, at least sqrt(mean) and 1.
    pub spread: f64,
}

fn day_of(micros: i64) -> i32 {
    i32::try_from(micros.div_euclid(DAY)).unwrap_or(i32::MAX)
}

/// The rules and everything they keep.
#[derive(Debug)]
pub struct Rules {
    t: Thresholds,
    topic: String,
    /// The combined state of every partition.
    pub state: State,
    /// What is known from before the live days.
    pub history: History,
    /// Alerts raised (their id hashes), and by day for eviction.
    fired: Set<u128>,
    fired_days: BTreeMap<i32, Vec<u128>>,
    /// The alerts raised, by (day, rule, counter or window key): "raised already"
    /// without hashing the id's text on every record once a count has crossed.
    raised: Set<(i32, Rule, Key)>,
    /// Highest window count seen per day and (identity, vault), for the peak series.
    peaks: Map<(i32, Metric), u64>,
    stats: Map<(i32, Metric), Stats>,
    ages: Map<i32, u32>,
    /// Per key, the list-then-read counts ([`ListReads`]): kept up to date by the
    /// events `observe` pushes. Derived from the window events: a key's entry follows
    /// another instance's contribution when it changes, is dropped when a partition
    /// leaves, trimmed with the events on eviction, and rebuilt on the next use.
    list_reads: Map<WinKey, ListReads>,
    /// The names of the keys, one allocation each ([`Rules::interned`]); those no key
    /// holds any more are let go when a day closes.
    names: Set<Name>,
    /// Per name field of an event (identity, object id, vault, IP, object name), the
    /// last name received and the one held for it: records come in chunks whose equal
    /// names share one allocation (`events_of`), mostly in runs, so an address compare
    /// most often replaces a lookup by text. Holding the received name keeps its address
    /// from being reused by another.
    recent: [Option<(Name, Name)>; 5],
    /// Newest event time seen (drives eviction).
    pub max_time: i64,
    lateness: i64,
    /// Records older than the allowed lateness, left to the cold path.
    pub late_records: u64,
}

impl Rules {
    /// Rules with `history`, for records of `topic`, keeping a day until `lateness_micros`
    /// after it ends.
    pub fn new(t: Thresholds, topic: &str, history: History, lateness_micros: i64) -> Rules {
        Rules {
            t,
            topic: topic.to_string(),
            state: State::new(),
            history,
            fired: Set::default(),
            fired_days: BTreeMap::new(),
            raised: Set::default(),
            peaks: Map::default(),
            stats: Map::default(),
            ages: Map::default(),
            list_reads: Map::default(),
            names: Set::default(),
            recent: Default::default(),
            max_time: i64::MIN,
            lateness: lateness_micros,
            late_records: 0,
        }
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        &self.t
    }

    /// Replaces the history (a refresh after the cold path ran).
    pub fn set_history(&mut self, h: History) {
        self.history = h;
        self.stats.clear();
        self.ages.clear();
    }

    /// Forgets cached baselines (late records may have changed a past live day).
    pub fn forget_cache(&mut self) {
        self.stats.clear();
        self.ages.clear();
    }

    /// Replaces partition `p`'s contribution ([`State::replace`]); returns what changed,
    /// for [`Rules::reevaluate`].
    pub fn replace(&mut self, c: Contribution) -> (Vec<(i32, Key)>, Vec<WinKey>) {
        // The list-then-read counts follow the partition's events: the ones it dropped
        // go, the new ones come (not a recount of every partition's events of the key).
        let old = self.state.part(c.partition);
        for (k, counts) in &mut self.list_reads {
            let before = old.and_then(|o| o.windows.get(k));
            let after = c.windows.get(k);
            if before != after {
                counts.replace(
                    before.map_or(&[][..], Vec::as_slice),
                    after.map_or(&[][..], Vec::as_slice),
                );
            }
        }
        self.state.replace(c)
    }

    /// Drops partition `p`'s contribution ([`State::remove`]).
    pub fn release(&mut self, p: i32) {
        if let Some(old) = self.state.remove(p) {
            for k in old.windows.keys() {
                self.list_reads.remove(k);
            }
        }
    }

    fn window(&self) -> i64 {
        i64::from(self.t.window_minutes) * MINUTE
    }

    /// Counts one record of partition `p` and returns the alerts it raises.
    pub fn observe(&mut self, ev: &Event, now: i64) -> Vec<Alert> {
        let day = day_of(ev.time);
        if day < self.state.evicted_before {
            self.late_records += 1;
            return Vec::new();
        }
        self.max_time = self.max_time.max(ev.time);
        let ev = &self.interned(ev);
        let p = ev.partition;
        if !self.state.is_live(day) {
            // A new live day: the cached lake ages and baselines of the days after it
            // count it now.
            self.forget_cache();
        }
        // The counters this record adds to, with their new totals.
        let mut changed: Vec<(Key, u64)> = Vec::with_capacity(5);
        let mut count = |state: &mut State, k: Key, n: u64| {
            let total = state.add(p, day, &k, n);
            changed.push((k, total));
        };
        if let Some(v) = &ev.vault {
            count(&mut self.state, Key::Vault(v.clone()), 1);
        }
        if let (Some(id), Some(v)) = (&ev.identity, &ev.vault) {
            count(&mut self.state, Key::Identity(id.clone()), 1);
            count(&mut self.state, Key::Pair(id.clone(), v.clone()), 1);
            if let Some(oid) = &ev.object_id {
                let app = ev.app_id.as_deref().unwrap_or("");
                if !self.t.excluded_app_ids.iter().any(|x| x == app) {
                    let read =
                        ev.success && matches!(&*ev.operation, "SecretGet" | "KeyGet" | "VaultGet");
                    // A 0 registers the subject (it was active); only reads are evaluated.
                    let k = Key::Reads(oid.clone());
                    if read {
                        count(&mut self.state, k, 1);
                    } else {
                        self.state.add(p, day, &k, 0);
                    }
                }
            }
        }
        if let (Some(id), Some(ip)) = (&ev.identity, &ev.ip) {
            count(&mut self.state, Key::Ip(id.clone(), ip.clone()), 1);
        }
        let mut out = Vec::new();
        if let (Some(id), Some(v)) = (&ev.identity, &ev.vault) {
            let wk: WinKey = (id.clone(), v.clone());
            let denied = matches!(ev.http_status, Some(401 | 403));
            let list = ev.success && &*ev.operation == "SecretList";
            let get = ev.success && &*ev.operation == "SecretGet" && ev.object_name.is_some();
            if denied || list || get {
                let kind = if denied {
                    WinKind::Denied
                } else if list {
                    WinKind::List
                } else {
                    WinKind::Get
                };
                self.state.push_window(
                    p,
                    wk.clone(),
                    WinEvent {
                        t: ev.time,
                        kind,
                        secret: if get { ev.object_name.clone() } else { None },
                    },
                );
                if denied {
                    out.extend(self.eval_denied(&wk, Some(ev), now));
                }
                if list || get {
                    out.extend(self.eval_list(&wk, Some((ev, kind)), now));
                }
            }
        }
        if ev.success
            && self
                .t
                .sensitive_operations
                .iter()
                .any(|o| **o == *ev.operation)
        {
            out.extend(self.sensitive(ev, now));
        }
        for (k, total) in changed {
            out.extend(self.eval_daily(day, &k, total, Some(ev), now));
        }
        out
    }

    /// `ev` with the names the rules key on replaced by the ones they hold already: each
    /// chunk of records brings its own copies, and keys whose names are one allocation
    /// compare by address instead of by text in every lookup.
    fn interned(&mut self, ev: &Event) -> Event {
        let (names, recent) = (&mut self.names, &mut self.recent);
        let mut intern = |field: usize, n: &Option<Name>| {
            let n = n.as_ref()?;
            if let Some((received, held)) = &recent[field]
                && std::sync::Arc::ptr_eq(received, n)
            {
                return Some(held.clone());
            }
            let held = match names.get(&**n) {
                Some(held) => held.clone(),
                None => {
                    names.insert(n.clone());
                    n.clone()
                }
            };
            recent[field] = Some((n.clone(), held.clone()));
            Some(held)
        };
        Event {
            partition: ev.partition,
            offset: ev.offset,
            record_index: ev.record_index,
            time: ev.time,
            operation: ev.operation.clone(),
            success: ev.success,
            http_status: ev.http_status,
            identity: intern(0, &ev.identity),
            object_id: intern(1, &ev.object_id),
            app_id: ev.app_id.clone(),
            vault: intern(2, &ev.vault),
            ip: intern(3, &ev.ip),
            object_name: intern(4, &ev.object_name),
        }
    }

    /// Re-evaluates counters and windows that another instance's contribution changed.
    pub fn reevaluate(
        &mut self,
        counts: &[(i32, Key)],
        windows: &[WinKey],
        now: i64,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for (day, k) in counts {
            let total = self.state.total(*day, k);
            out.extend(self.eval_daily(*day, k, total, None, now));
        }
        for w in windows {
            out.extend(self.eval_denied(w, None, now));
            out.extend(self.eval_list(w, None, now));
        }
        out
    }

    /// Evicts days that ended more than the lateness ago (by event time) and old window
    /// events; closed days go into the history.
    pub fn evict(&mut self) {
        if self.max_time == i64::MIN {
            return;
        }
        let horizon = self.max_time - self.lateness;
        let day = day_of(horizon);
        let window_floor = horizon - self.window();
        let closed = self.state.evict(day, window_floor);
        // Lists from the floor on keep every read of their windows (reads come after them).
        self.list_reads.retain(|k, lists| {
            lists.trim(window_floor);
            self.state.has_window(k)
        });
        if closed.is_empty() && day <= self.state.evicted_before.saturating_sub(1) {
            return;
        }
        let keep_from = day - SERIES_DAYS;
        for ((d, k), n) in closed {
            self.history.lake_days.insert(d);
            match k {
                Key::Vault(v) => self.history.put(Metric::Vault(v), d, n, keep_from),
                Key::Identity(i) => self.history.put(Metric::Identity(i), d, n, keep_from),
                Key::Reads(o) => self.history.put(Metric::Reads(o), d, n, keep_from),
                Key::Pair(i, v) => {
                    self.history.pair(i.clone(), v.clone(), d);
                    for m in [
                        Metric::PeakList(i.clone(), v.clone()),
                        Metric::PeakDenied(i.clone(), v.clone()),
                    ] {
                        let peak = self.peaks.remove(&(d, m.clone())).unwrap_or(0);
                        self.history.put(m, d, peak, keep_from);
                    }
                }
                Key::Ip(i, ip) => self.history.ip(i, ip, d),
            }
        }
        self.peaks.retain(|(d, _), _| *d >= day);
        self.raised.retain(|(d, _, _)| *d >= day);
        let old: Vec<i32> = self.fired_days.range(..day).map(|(d, _)| *d).collect();
        for d in old {
            for id in self.fired_days.remove(&d).unwrap_or_default() {
                self.fired.remove(&id);
            }
        }
        self.history.trim(keep_from);
        self.names.retain(|n| std::sync::Arc::strong_count(n) > 1);
        self.forget_cache();
    }

    /// Lake days before `day`.
    pub fn lake_age(&mut self, day: i32) -> u32 {
        if let Some(a) = self.ages.get(&day) {
            return *a;
        }
        let mut n = self.history.lake_days.range(..day).count();
        n += self
            .state
            .days()
            .filter(|d| *d < day && !self.history.lake_days.contains(d))
            .count();
        let a = u32::try_from(n).unwrap_or(u32::MAX);
        self.ages.insert(day, a);
        a
    }

    fn live_key(m: &Metric) -> Key {
        match m {
            Metric::Vault(v) => Key::Vault(v.clone()),
            Metric::Identity(i) => Key::Identity(i.clone()),
            Metric::Reads(o) => Key::Reads(o.clone()),
            Metric::PeakList(i, v) | Metric::PeakDenied(i, v) => Key::Pair(i.clone(), v.clone()),
        }
    }

    fn live_value(&self, m: &Metric, day: i32) -> u64 {
        match m {
            Metric::PeakList(..) | Metric::PeakDenied(..) => {
                self.peaks.get(&(day, m.clone())).copied().unwrap_or(0)
            }
            _ => self.state.total(day, &Self::live_key(m)),
        }
    }

    /// The baseline of `m` for `day`: the 28 lake days before it, from its first day.
    pub fn stats(&mut self, day: i32, m: &Metric) -> Stats {
        if let Some(s) = self.stats.get(&(day, m.clone())) {
            return *s;
        }
        let live = Self::live_key(m);
        let mut first = self.history.first.get(m).copied().unwrap_or(day);
        for d in self.state.days() {
            if d < first && self.state.seen(d, &live) {
                first = d;
            }
        }
        let (mut days, mut sum, mut sq) = (0u32, 0f64, 0f64);
        for d in (day - 28).max(first)..day {
            let lake_day = self.history.lake_days.contains(&d) || self.state.days().any(|x| x == d);
            if !lake_day {
                continue;
            }
            days += 1;
            let v = self
                .history
                .value(m, d)
                .unwrap_or_else(|| self.live_value(m, d)) as f64;
            sum += v;
            sq += v * v;
        }
        let mean = if days > 0 { sum / f64::from(days) } else { 0.0 };
        let sd = if days > 1 {
            ((sq - sum * sum / f64::from(days)) / f64::from(days - 1))
                .max(0.0)
                .sqrt()
        } else {
            0.0
        };
        let s = Stats {
            days,
            mean,
            spread: sd.max(mean.sqrt()).max(1.0),
        };
        self.stats.insert((day, m.clone()), s);
        s
    }

    /// The history condition of the burst rules (`fired` in anomalies.sql). For a given
    /// day and metric it only gets easier as `v` grows (a higher score, or no `v` at all).
    fn history_ok(&mut self, day: i32, m: &Metric, v: u64) -> (bool, Stats) {
        let s = self.stats(day, m);
        let warm = self.t.warmup_days;
        let ok = if s.days >= warm {
            (v as f64 - s.mean) / s.spread >= self.t.score_threshold
        } else {
            self.lake_age(day) >= warm
        };
        (ok, s)
    }

    fn score_floor(&self, s: &Stats) -> f64 {
        if s.days >= self.t.warmup_days {
            (s.mean + self.t.score_threshold * s.spread).ceil()
        } else {
            0.0
        }
    }

    /// Whether `key` (a `Pair` or an `Ip`) was active on a day before `day`.
    fn known_before(&self, key: &Key, first: &Map<(Name, Name), i32>, day: i32) -> bool {
        let (Key::Pair(a, b) | Key::Ip(a, b)) = key else {
            return false;
        };
        first.get(&(a.clone(), b.clone())).is_some_and(|d| *d < day)
            || self
                .state
                .days()
                .any(|d| d < day && self.state.seen(d, key))
    }

    /// Whether the alert of `rule` for `k` on `day` is known to be raised (checked before
    /// its id is hashed; ids read back from the outbox are learnt by
    /// [`Rules::fired_before`]).
    fn is_raised(&self, day: i32, rule: Rule, k: &Key) -> bool {
        !self.raised.is_empty() && self.raised.contains(&(day, rule, k.clone()))
    }

    /// Whether alert `id`, the alert of `rule` for `k` on `day`, was raised before;
    /// remembers it by key when so.
    fn fired_before(&mut self, id: u128, day: i32, rule: Rule, k: &Key) -> bool {
        let fired = self.fired.contains(&id);
        if fired {
            self.raised.insert((day, rule, k.clone()));
        }
        fired
    }

    /// The window counts of `wk`, built from its window events on first use; `ev` is
    /// the event just pushed (of that kind), which a new entry holds already and an old
    /// one learns here.
    fn window_counts(&mut self, wk: &WinKey, ev: Option<(&Event, WinKind)>) -> &ListReads {
        let w = self.window();
        let state = &self.state;
        let mut built = false;
        let counts = self.list_reads.entry(wk.clone()).or_insert_with(|| {
            built = true;
            ListReads::from_events(state.window_events(wk), w)
        });
        if let (false, Some((e, kind))) = (built, ev) {
            counts.add(&WinEvent {
                t: e.time,
                kind,
                secret: (kind == WinKind::Get)
                    .then(|| e.object_name.clone())
                    .flatten(),
            });
        }
        counts
    }

    fn identity_first(&self, id: &Name) -> Option<i32> {
        let key = Key::Identity(id.clone());
        let live = self.state.days().find(|d| self.state.seen(*d, &key));
        match (self.history.identity_first.get(id).copied(), live) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The daily rule of counter `k` on `day`, whose total is `total`.
    fn eval_daily(
        &mut self,
        day: i32,
        k: &Key,
        total: u64,
        ev: Option<&Event>,
        now: i64,
    ) -> Vec<Alert> {
        let out = self.eval_daily_rule(day, k, total, ev, now);
        if !out.is_empty() {
            self.raised.insert((day, Rule::Daily, k.clone()));
        }
        out
    }

    fn eval_daily_rule(
        &mut self,
        day: i32,
        k: &Key,
        total: u64,
        ev: Option<&Event>,
        now: i64,
    ) -> Vec<Alert> {
        // Every record reaches here for up to five counters: the cheap conditions come
        // first (the count, "raised already" by key, the lake's age), the alert id (a
        // hash of text) only when they all hold.
        let date = || day_text(day);
        let (ws, we) = (i64::from(day) * DAY, i64::from(day) * DAY + DAY);
        let warm = self.t.warmup_days;
        match k {
            Key::Reads(oid) => {
                if total <= self.t.mass_retrieval_threshold || self.is_raised(day, Rule::Daily, k) {
                    return Vec::new();
                }
                let (ok, s) = self.history_ok(day, &Metric::Reads(oid.clone()), total);
                if !ok {
                    return Vec::new();
                }
                let id = alert_hash(kind::MASS_SECRET_RETRIEVAL, &[oid], date().as_str());
                if self.fired_before(id, day, Rule::Daily, k) {
                    return Vec::new();
                }
                let t = self.t.mass_retrieval_threshold;
                let tail = if s.days < warm {
                    "; it has less than a week of history.".to_string()
                } else {
                    format!(" and far above its usual {} a day.", s.mean.round() as i64)
                };
                let d = format!(
                    "{oid} read secrets, keys or vaults {total} times today (SecretGet, KeyGet, VaultGet), more than {t}{tail}"
                );
                let threshold = ((t + 1) as f64).max(self.score_floor(&s));
                vec![self.fire(
                    id,
                    kind::MASS_SECRET_RETRIEVAL,
                    Subject::identity(oid, None, Some(oid)),
                    day,
                    (ws, we),
                    total,
                    threshold,
                    d,
                    ev,
                    now,
                )]
            }
            Key::Vault(_) | Key::Identity(_) => {
                let (scope, name, m) = match k {
                    Key::Vault(v) => ("vault", v.clone(), Metric::Vault(v.clone())),
                    Key::Identity(i) => ("identity", i.clone(), Metric::Identity(i.clone())),
                    _ => return Vec::new(),
                };
                let s = self.stats(day, &m);
                let v = total as f64;
                let fires = s.days >= warm
                    && s.mean >= self.t.volume_min_baseline
                    && v >= self.t.volume_min_ratio * s.mean
                    && (v - s.mean) / s.spread >= self.t.score_threshold;
                if !fires || self.is_raised(day, Rule::Daily, k) {
                    return Vec::new();
                }
                let id = alert_hash(kind::UNUSUAL_VOLUME, &[scope, &name], date().as_str());
                if self.fired_before(id, day, Rule::Daily, k) {
                    return Vec::new();
                }
                let who = if scope == "vault" {
                    format!("Vault {name}")
                } else {
                    format!("Identity {name} (all vaults)")
                };
                let d = format!(
                    "{who} has made {total} calls so far today; its usual is {} a day (plus or minus {}) over the last {} days.",
                    s.mean.round() as i64,
                    s.spread.round() as i64,
                    s.days
                );
                let threshold = (self.t.volume_min_ratio * s.mean)
                    .ceil()
                    .max(self.score_floor(&s));
                let subject = if scope == "vault" {
                    Subject::vault(&name)
                } else {
                    Subject::identity(&name, None, ev.and_then(|e| e.object_id.as_deref()))
                };
                vec![self.fire(
                    id,
                    kind::UNUSUAL_VOLUME,
                    subject,
                    day,
                    (ws, we),
                    total,
                    threshold,
                    d,
                    ev,
                    now,
                )]
            }
            Key::Pair(i, v) => {
                if total < self.t.new_subject_min_operations || self.is_raised(day, Rule::Daily, k)
                {
                    return Vec::new();
                }
                let age = self.lake_age(day);
                if age < warm || self.known_before(k, &self.history.pair_first, day) {
                    return Vec::new();
                }
                let id = alert_hash(kind::NEW_IDENTITY_ON_VAULT, &[i, v], date().as_str());
                if self.fired_before(id, day, Rule::Daily, k) {
                    return Vec::new();
                }
                let d = format!(
                    "{i} used vault {v} for the first time ({total} calls so far today); the lake has {age} earlier days."
                );
                let t = self.t.new_subject_min_operations as f64;
                vec![self.fire(
                    id,
                    kind::NEW_IDENTITY_ON_VAULT,
                    Subject::identity(i, Some(v), ev.and_then(|e| e.object_id.as_deref())),
                    day,
                    (ws, we),
                    total,
                    t,
                    d,
                    ev,
                    now,
                )]
            }
            Key::Ip(i, ip) => {
                if total < self.t.new_subject_min_operations
                    || self.is_raised(day, Rule::Daily, k)
                    || self.lake_age(day) < warm
                    || self.known_before(k, &self.history.ip_first, day)
                {
                    return Vec::new();
                }
                let Some(since) = self.identity_first(i).filter(|f| *f < day) else {
                    return Vec::new();
                };
                let id = alert_hash(kind::NEW_IP_FOR_IDENTITY, &[i, ip], date().as_str());
                if self.fired_before(id, day, Rule::Daily, k) {
                    return Vec::new();
                }
                let d = format!(
                    "{i} called from {ip} for the first time ({total} calls so far today); it has been seen since {}.",
                    format_date(i64::from(since))
                );
                let t = self.t.new_subject_min_operations as f64;
                let mut subject =
                    Subject::identity(i, None, ev.and_then(|e| e.object_id.as_deref()));
                subject.subject_type = "ip";
                subject.subject = ip.to_string();
                subject.ip = Some(ip.to_string());
                vec![self.fire(
                    id,
                    kind::NEW_IP_FOR_IDENTITY,
                    subject,
                    day,
                    (ws, we),
                    total,
                    t,
                    d,
                    ev,
                    now,
                )]
            }
        }
    }

    fn sensitive(&mut self, ev: &Event, now: i64) -> Vec<Alert> {
        let day = day_of(ev.time);
        let who = ev.identity.as_deref().unwrap_or("(anonymous)");
        let vault = ev.vault.as_deref().unwrap_or("");
        let id = alert_hash(
            kind::SENSITIVE_OPERATION,
            &[who, vault, &ev.operation],
            day_text(day).as_str(),
        );
        if self.fired.contains(&id) {
            return Vec::new();
        }
        let d = format!(
            "{} ran {} successfully on vault {}, a sensitive operation.",
            ev.identity.as_deref().unwrap_or("an anonymous caller"),
            ev.operation,
            ev.vault.as_deref().unwrap_or("(unknown)")
        );
        let mut subject = Subject::identity(who, ev.vault.as_deref(), ev.object_id.as_deref());
        subject.identity = ev.identity.as_deref().map(str::to_string);
        subject.ip = ev.ip.as_deref().map(str::to_string);
        vec![self.fire(
            id,
            kind::SENSITIVE_OPERATION,
            subject,
            day,
            (ev.time, ev.time),
            1,
            1.0,
            d,
            Some(ev),
            now,
        )]
    }

    /// Denials of `wk`: for each denial d whose window [d, d + W] holds `ev`, its count.
    fn eval_denied(&mut self, wk: &WinKey, ev: Option<&Event>, now: i64) -> Vec<Alert> {
        let w = self.window();
        // The windows holding `ev` start in [t - W, t] and count denials up to t + W:
        // no other denial matters.
        let (from, to) = ev.map_or((i64::MIN, i64::MAX), |e| {
            (e.time.saturating_sub(w), e.time.saturating_add(w))
        });
        let times: Vec<i64> = self
            .window_counts(wk, ev.map(|e| (e, WinKind::Denied)))
            .denials(from, to)
            .collect();
        let mut windows = Vec::new();
        for (i, &d) in times.iter().enumerate() {
            if windows.last().is_some_and(|(last, _)| *last == d)
                || ev.is_some_and(|e| e.time < d || e.time > d + w)
            {
                continue;
            }
            let end = times.partition_point(|t| *t <= d + w);
            windows.push((d, (end - i) as u64));
        }
        self.eval_windows(Rule::DeniedBurst, wk, windows, ev, now)
    }

    /// Lists of `wk`: for each SecretList l whose window [l, l + W] holds `ev`, the
    /// different secrets read in it (every list of the key when `ev` is `None`). `ev`
    /// comes with the kind of window event it was just pushed as.
    fn eval_list(&mut self, wk: &WinKey, ev: Option<(&Event, WinKind)>, now: i64) -> Vec<Alert> {
        // A denial that is also a read was learnt as a denial ([`Rules::eval_denied`]).
        let learn = ev.filter(|(_, kind)| *kind != WinKind::Denied);
        let counted: Vec<(i64, u64)> = self
            .window_counts(wk, learn)
            .around(ev.map(|(e, _)| e.time))
            .collect();
        self.eval_windows(Rule::ListThenRead, wk, counted, ev.map(|(e, _)| e), now)
    }

    /// The sliding-window rule `rule` over the windows of `wk` that hold `ev`: (start,
    /// count) in time order. Their days come in order too: per day, one peak update and
    /// at most one alert (the first window that crosses), however many windows there are.
    fn eval_windows(
        &mut self,
        rule: Rule,
        wk: &WinKey,
        windows: Vec<(i64, u64)>,
        ev: Option<&Event>,
        now: i64,
    ) -> Vec<Alert> {
        let w = self.window();
        let (kind, min, m) = match rule {
            Rule::DeniedBurst => (
                kind::DENIED_BURST,
                self.t.denied_burst_min,
                Metric::PeakDenied(wk.0.clone(), wk.1.clone()),
            ),
            // Only the two window rules come here.
            Rule::ListThenRead | Rule::Daily => (
                kind::LIST_THEN_READ,
                self.t.list_read_min_secrets,
                Metric::PeakList(wk.0.clone(), wk.1.clone()),
            ),
        };
        let rule_key = Key::Pair(wk.0.clone(), wk.1.clone());
        let mut out = Vec::new();
        let mut day_check = DayCheck::new();
        for (start, count) in windows {
            let day = day_of(start);
            if day_check.day != day {
                self.raise_peak(&day_check, &m);
                day_check = DayCheck::at(day);
            }
            day_check.peak = day_check.peak.max(count);
            if count < min || !day_check.may_fire(count, || self.is_raised(day, rule, &rule_key)) {
                continue;
            }
            let (ok, s) = self.history_ok(day, &m, count);
            if !ok {
                day_check.failed_at = Some(count);
                continue;
            }
            let id = alert_hash(kind, &[&wk.0, &wk.1], day_text(day).as_str());
            if self.fired_before(id, day, rule, &rule_key) {
                day_check.done = true;
                continue;
            }
            let d_text = if rule == Rule::DeniedBurst {
                format!(
                    "{} was denied (401/403) {count} times within {} minutes on vault {}.",
                    wk.0, self.t.window_minutes, wk.1
                )
            } else {
                format!(
                    "{} listed the secrets of vault {} and read {count} different secrets within {} minutes.",
                    wk.0, wk.1, self.t.window_minutes
                )
            };
            let threshold = (min as f64).max(self.score_floor(&s));
            out.push(self.fire(
                id,
                kind,
                Subject::identity(&wk.0, Some(&wk.1), ev.and_then(|e| e.object_id.as_deref())),
                day,
                (start, start + w),
                count,
                threshold,
                d_text,
                ev,
                now,
            ));
            self.raised.insert((day, rule, rule_key.clone()));
            day_check.done = true;
        }
        self.raise_peak(&day_check, &m);
        out
    }

    /// Raises the peak of `m` on the checked day to the highest window count seen.
    fn raise_peak(&mut self, c: &DayCheck, m: &Metric) {
        if c.day != i32::MIN {
            let peak = self.peaks.entry((c.day, m.clone())).or_default();
            *peak = (*peak).max(c.peak);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fire(
        &mut self,
        id: u128,
        kind: &str,
        subject: Subject,
        day: i32,
        window: (i64, i64),
        observed: u64,
        threshold: f64,
        description: String,
        ev: Option<&Event>,
        now: i64,
    ) -> Alert {
        self.fired.insert(id);
        self.fired_days.entry(day).or_default().push(id);
        Alert {
            alert_id: id_text(id),
            kind: kind.to_string(),
            subject_type: subject.subject_type.to_string(),
            subject: subject.subject,
            vault_name: subject.vault,
            identity: subject.identity,
            caller_object_id: subject.object_id,
            ip: subject.ip,
            date: format_date(i64::from(day)),
            window_start: window.0,
            window_end: window.1,
            observed: observed as f64,
            threshold,
            description,
            detected_at: now,
            event_time: ev.map(|e| e.time),
            source: ev.map(|_| self.topic.clone()),
            partition: ev.map(|e| e.partition),
            offset: ev.map(|e| e.offset),
            record_index: ev.map(|e| e.record_index),
        }
    }

    /// Marks ids already raised (read back from the outbox at start), so that a restart
    /// does not raise them again.
    pub fn already_fired(&mut self, ids: impl IntoIterator<Item = (i32, String)>) {
        // Every id in the outbox is an `alert_id`; anything else cannot collide with one.
        for (day, id) in ids
            .into_iter()
            .filter_map(|(d, id)| Some((d, id_hash(&id)?)))
        {
            if self.fired.insert(id) {
                self.fired_days.entry(day).or_default().push(id);
            }
        }
    }
}

/// Which rule an alert of a key comes from ([`Rules::is_raised`]): a counter has one
/// daily rule, a window key two rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    Daily,
    ListThenRead,
    DeniedBurst,
}

/// One day's evaluation of a sliding-window rule over the windows an event falls in:
/// their highest count (the peak), and what is known of the day's alert so far.
struct DayCheck {
    day: i32,
    peak: u64,
    /// Whether "raised already" was looked up for the day.
    looked_up: bool,
    /// Raised already, now or before: later windows of the day need no check.
    done: bool,
    /// The highest count whose history condition failed: the condition only gets
    /// easier with the count ([`Rules::history_ok`]), so no count up to it passes.
    failed_at: Option<u64>,
}

impl DayCheck {
    fn new() -> DayCheck {
        DayCheck::at(i32::MIN)
    }

    fn at(day: i32) -> DayCheck {
        DayCheck {
            day,
            peak: 0,
            looked_up: false,
            done: false,
            failed_at: None,
        }
    }

    /// Whether a window of `count` may raise the day's alert; `raised` tells whether it
    /// was raised before, asked once per day.
    fn may_fire(&mut self, count: u64, raised: impl FnOnce() -> bool) -> bool {
        if !self.looked_up {
            self.looked_up = true;
            self.done = raised();
        }
        !self.done && self.failed_at.is_none_or(|f| count > f)
    }
}

/// A day as `YYYY-MM-DD` ([`format_date`]'s text) on the stack for four-digit years:
/// every evaluation whose count condition holds hashes it into an alert id.
enum DayText {
    Short([u8; 10]),
    Long(String),
}

impl DayText {
    fn as_str(&self) -> &str {
        match self {
            DayText::Short(b) => std::str::from_utf8(b).unwrap_or_default(),
            DayText::Long(s) => s,
        }
    }
}

fn day_text(day: i32) -> DayText {
    let (y, m, d) = civil_from_days(i64::from(day));
    let Ok(y @ 0..=9999) = u32::try_from(y) else {
        return DayText::Long(format_date(i64::from(day)));
    };
    let digit = |v: u32| b'0' + (v % 10) as u8;
    DayText::Short([
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(d / 10),
        digit(d),
    ])
}

struct Subject {
    subject_type: &'static str,
    subject: String,
    vault: Option<String>,
    identity: Option<String>,
    object_id: Option<String>,
    ip: Option<String>,
}

impl Subject {
    fn identity(id: &str, vault: Option<&str>, object_id: Option<&str>) -> Subject {
        Subject {
            subject_type: "identity",
            subject: id.to_string(),
            vault: vault.map(str::to_string),
            identity: Some(id.to_string()),
            object_id: object_id.map(str::to_string),
            ip: None,
        }
    }
    fn vault(v: &str) -> Subject {
        Subject {
            subject_type: "vault",
            subject: v.to_string(),
            vault: Some(v.to_string()),
            identity: None,
            object_id: None,
            ip: None,
        }
    }
}

#[cfg(test)]
mod tests;

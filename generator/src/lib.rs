//! Deterministic synthetic Key Vault `AuditEvent` traffic: Event Hubs messages, archive lines,
//! deliberately bad messages and injected attack patterns, all from a seed (no I/O, no clock).

mod attack;
mod record;
mod shape;
mod text;
mod world;

pub use shape::Shape;

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::attack::{Planned, Spike};
use crate::record::{Defect, Event, Status, write_record};
use crate::text::{HOUR, days_from_civil};
use crate::world::{OPS, Target, World, chance, pick_ip, pick_object, pick_vault};

/// The dead-letter reason codes of bad messages, in the order they are generated.
pub const BAD_REASONS: [&str; 5] = [
    "invalid_json",
    "not_utf8",
    "not_an_object",
    "uncoercible_value",
    "missing_field",
];

/// 2026-11-01T00:00:00Z in UTC micros since the epoch.
const DEFAULT_START_MICROS: i64 = days_from_civil(2026, 11, 1) * 24 * HOUR;

/// What to generate. Out-of-range values are corrected by [`Generator::new`]: at least
/// one vault, identity and record per message, a positive rate, a bad rate within 0..=1.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Number of key vaults (default 12).
    pub vaults: usize,
    /// Number of identities: ~40% users, ~35% service principals, ~25% managed identities (default 200).
    pub identities: usize,
    /// Inclusive range of records per good message (default 1..=25).
    pub records_per_message: (usize, usize),
    /// UTC micros since the epoch of the first event (default 2026-11-01T00:00:00Z).
    pub start_time_micros: i64,
    /// Average event-time rate over a day; busier 08:00-18:00 UTC than at night (default 50).
    pub events_per_second: f64,
    /// Fraction of messages replaced by a bad one (default 0).
    pub bad_message_rate: f64,
    /// Attack patterns to inject (default none).
    pub attacks: Vec<Attack>,
    /// The shape records are written in (default the diagnostic-settings record). The
    /// events are the same in every shape: only their encoding differs.
    pub shape: Shape,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 0,
            vaults: 12,
            identities: 200,
            records_per_message: (1, 25),
            start_time_micros: DEFAULT_START_MICROS,
            events_per_second: 50.0,
            bad_message_rate: 0.0,
            attacks: Vec::new(),
            shape: Shape::DiagnosticSettings,
        }
    }
}

/// An attack pattern, injected once when event time reaches `at_micros` after the start.
/// The identity, vault and IP are chosen from the seed and reported as [`InjectedAttack`].
#[derive(Clone, Debug, PartialEq)]
pub enum Attack {
    /// One caller doing `count` `SecretGet` (with some `KeyGet`/`VaultGet`) on one vault within an hour.
    MassSecretRetrieval { at_micros: i64, count: usize },
    /// One `SecretList`, then `gets` `SecretGet` of distinct secrets within 10 minutes, same identity.
    ListThenRead { at_micros: i64, gets: usize },
    /// One successful call of `operation` (e.g. `SecretPurge`, `VaultDelete`, `KeyBackup`).
    SensitiveOperation { at_micros: i64, operation: String },
    /// A never-seen identity does 10 operations on a vault within 5 minutes.
    NewIdentityOnVault { at_micros: i64 },
    /// A vault gets `factor` times its normal volume for one hour.
    VolumeSpike { at_micros: i64, factor: f64 },
    /// `count` calls answered 403 `Forbidden` (`resultType` still `Success`) from one identity within 10 minutes.
    DeniedBurst { at_micros: i64, count: usize },
    /// A busy, known identity makes 5 calls within 2 minutes from an IP it never used (192.0.2.0/24).
    NewIpForIdentity { at_micros: i64 },
}

impl Attack {
    /// The event-time offset from the start at which the attack begins.
    pub fn at_micros(&self) -> i64 {
        match self {
            Attack::MassSecretRetrieval { at_micros, .. }
            | Attack::ListThenRead { at_micros, .. }
            | Attack::SensitiveOperation { at_micros, .. }
            | Attack::NewIdentityOnVault { at_micros }
            | Attack::VolumeSpike { at_micros, .. }
            | Attack::DeniedBurst { at_micros, .. }
            | Attack::NewIpForIdentity { at_micros } => *at_micros,
        }
    }
}

/// What was injected, where and by whom.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectedAttack {
    pub attack: Attack,
    /// Name of the vault, e.g. `kv-payments-prod-01`.
    pub vault: String,
    /// Object id of the caller (`None` for a volume spike, which has many callers).
    pub object_id: Option<String>,
    /// Caller IP (`None` for a volume spike).
    pub ip: Option<String>,
    /// Event time the attack starts: the configured start time plus `at_micros` (UTC micros).
    /// Every injected event lies within `start_micros..=end_micros`.
    pub start_micros: i64,
    /// Event time of the last injected event; start + 1 hour for a volume spike.
    pub end_micros: i64,
}

/// Output format of [`Generator::write_records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One `{"records":[...]}` Event Hubs message per line.
    Envelope,
    /// One bare record per line (the storage-archive `PT1H.json` format).
    Lines,
}

/// What a [`Message`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A valid message with this many records.
    Good { records: usize },
    /// A malformed message; `reason` is one of [`BAD_REASONS`]. It yields exactly one
    /// dead-letter row.
    Bad { reason: &'static str },
}

/// One Event Hubs message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub kind: MessageKind,
    /// Event time of the message's first record (UTC micros), usable as the Kafka timestamp.
    pub event_time_micros: i64,
}

/// The traffic generator. The same configuration always yields the same bytes.
#[derive(Debug)]
pub struct Generator {
    config: GeneratorConfig,
    world: World,
    rng: ChaCha8Rng,
    /// The next event of normal traffic.
    lookahead: Event,
    /// Injected events not yet emitted, latest first.
    pending: Vec<Event>,
    spikes: Vec<Spike>,
    /// Attacks not yet triggered, by trigger time.
    planned: VecDeque<Planned>,
    injected: Vec<InjectedAttack>,
    bad_messages: usize,
    scratch: Vec<u8>,
}

/// Day-time (08:00-18:00 UTC) traffic is three times the night-time traffic; the average
/// over a day is 1.
fn diurnal_factor(time: i64) -> f64 {
    const DAY: f64 = 24.0 / (10.0 + 14.0 / 3.0);
    let hour = time.div_euclid(HOUR).rem_euclid(24);
    if (8..18).contains(&hour) {
        DAY
    } else {
        DAY / 3.0
    }
}

/// An exponential inter-arrival gap in micros for `per_second` average events per second,
/// modulated by the time of day at `time`.
pub(crate) fn exp_gap_micros(rng: &mut ChaCha8Rng, per_second: f64, time: i64) -> i64 {
    let rate = per_second * diurnal_factor(time);
    let exp = -(1.0 - rng.random::<f64>()).ln();
    (exp / rate * 1e6).round() as i64
}

/// A call of normal traffic at `time`, on `vault` if given.
fn normal_event(world: &World, rng: &mut ChaCha8Rng, time: i64, vault: Option<usize>) -> Event {
    let callers = vault
        .and_then(|v| world.vaults.get(v))
        .map_or(&world.callers, |v| &v.callers);
    let identity = callers.sample(rng).unwrap_or(0);
    let caller = &world.identities[identity];
    let vault = vault.unwrap_or_else(|| pick_vault(rng, caller));
    let op = world.ops.sample(rng).unwrap_or(0);
    let (target, list) = OPS
        .get(op)
        .map_or((Target::Vault, false), |op| (op.target, op.list));
    let object = pick_object(
        rng,
        world.vaults.get(vault).map_or(1, |v| v.objects(target)),
    );
    let mut status = Status::draw(rng);
    if status == Status::NotFound && (target == Target::Vault || list) {
        status = Status::Ok;
    }
    let anonymous = status == Status::Unauthorized && chance(rng, 0.7);
    let ip = pick_ip(rng, caller);
    Event {
        time,
        op: record::Op::Known(op),
        vault,
        identity,
        anonymous,
        ip,
        status,
        object,
    }
}

impl Generator {
    /// A generator for `config` (corrected as described on [`GeneratorConfig`]).
    pub fn new(mut config: GeneratorConfig) -> Generator {
        config.vaults = config.vaults.max(1);
        config.identities = config.identities.max(1);
        let low = config.records_per_message.0.max(1);
        config.records_per_message = (low, config.records_per_message.1.max(low));
        if !(config.events_per_second.is_finite() && config.events_per_second > 0.0) {
            config.events_per_second = GeneratorConfig::default().events_per_second;
        }
        config.bad_message_rate = if config.bad_message_rate.is_nan() {
            0.0
        } else {
            config.bad_message_rate.clamp(0.0, 1.0)
        };

        // Independent streams, so that adding attacks does not reshape the estate.
        let mut world_rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut attack_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6a09_e667_f3bc_c908);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xbb67_ae85_84ca_a73b);
        let mut world = World::build(&mut world_rng, config.vaults, config.identities);

        let mut order: Vec<usize> = (0..config.attacks.len()).collect();
        order.sort_by_key(|&i| config.attacks[i].at_micros());
        let planned = order
            .into_iter()
            .enumerate()
            .map(|(index, i)| {
                let attack = &config.attacks[i];
                attack::plan(
                    attack,
                    index,
                    &mut world,
                    &mut attack_rng,
                    config.start_time_micros,
                    config.events_per_second,
                )
            })
            .collect();

        let lookahead = normal_event(&world, &mut rng, config.start_time_micros, None);
        let mut generator = Generator {
            config,
            world,
            rng,
            lookahead,
            pending: Vec::new(),
            spikes: Vec::new(),
            planned,
            injected: Vec::new(),
            bad_messages: 0,
            scratch: Vec::new(),
        };
        generator.trigger_due();
        generator
    }

    /// The next Event Hubs message (`{"records":[...]}`), good or bad.
    pub fn next_message(&mut self) -> Message {
        let estimate = self.config.records_per_message.1.min(64) * 1200;
        let mut bytes = Vec::with_capacity(estimate);
        let (kind, event_time_micros) = self.write_message(true, usize::MAX, &mut bytes);
        Message {
            bytes,
            kind,
            event_time_micros,
        }
    }

    /// The next record, as a JSON value (key order is not kept).
    pub fn next_record(&mut self) -> serde_json::Value {
        let event = self.next_event();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.write_event(&event, Defect::None, &mut scratch);
        let value =
            serde_json::from_slice(&scratch).expect("the record writer always produces valid JSON");
        self.scratch = scratch;
        value
    }

    /// Attacks injected so far (event time has reached them), in injection order.
    pub fn injected(&self) -> &[InjectedAttack] {
        &self.injected
    }

    /// Appends exactly `records` good records, one JSON text per line, and returns the
    /// number of lines written: messages of `records_per_message` records for
    /// [`Format::Envelope`] (the last one possibly shorter), one record per line for
    /// [`Format::Lines`]. Bad messages are never written here, whatever `bad_message_rate`.
    pub fn write_records(&mut self, records: usize, format: Format, out: &mut Vec<u8>) -> usize {
        match format {
            Format::Lines => {
                for _ in 0..records {
                    let event = self.next_event();
                    self.write_event(&event, Defect::None, out);
                    out.push(b'\n');
                }
                records
            }
            Format::Envelope => {
                let mut remaining = records;
                let mut messages = 0;
                while remaining > 0 {
                    if let (MessageKind::Good { records }, _) =
                        self.write_message(false, remaining, out)
                    {
                        remaining = remaining.saturating_sub(records);
                    }
                    out.push(b'\n');
                    messages += 1;
                }
                messages
            }
        }
    }

    /// Appends one message of at most `limit` records; a bad one only if `allow_bad`.
    fn write_message(
        &mut self,
        allow_bad: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> (MessageKind, i64) {
        if allow_bad
            && self.config.bad_message_rate > 0.0
            && chance(&mut self.rng, self.config.bad_message_rate)
        {
            return self.write_bad_message(out);
        }
        let (low, high) = self.config.records_per_message;
        let records = self.rng.random_range(low..=high).min(limit).max(1);
        out.extend_from_slice(b"{\"records\":[");
        let mut first_time = None;
        for i in 0..records {
            if i > 0 {
                out.push(b',');
            }
            let event = self.next_event();
            first_time.get_or_insert(event.time);
            self.write_event(&event, Defect::None, out);
        }
        out.extend_from_slice(b"]}");
        (
            MessageKind::Good { records },
            first_time.unwrap_or(self.lookahead.time),
        )
    }

    /// Appends the next bad message: one record (or blob) with the next defect in turn.
    /// Its record is fresh normal traffic that does not advance time or consume attacks.
    fn write_bad_message(&mut self, out: &mut Vec<u8>) -> (MessageKind, i64) {
        let reason = BAD_REASONS[self.bad_messages % BAD_REASONS.len()];
        self.bad_messages += 1;
        let time = self.peek_time();
        let defect = match reason {
            "not_an_object" => {
                out.extend_from_slice(b"{\"records\":[42]}");
                return (MessageKind::Bad { reason }, time);
            }
            "not_utf8" => Defect::NotUtf8,
            "uncoercible_value" => Defect::UncoercibleDuration,
            "missing_field" => Defect::MissingOperationName,
            _ => Defect::None,
        };
        let event = normal_event(&self.world, &mut self.rng, time, None);
        let start = out.len();
        out.extend_from_slice(b"{\"records\":[");
        self.write_event(&event, defect, out);
        out.extend_from_slice(b"]}");
        if reason == "invalid_json" {
            // Any proper prefix of a JSON object is incomplete.
            out.truncate(start + (out.len() - start) / 2);
        }
        (MessageKind::Bad { reason }, time)
    }

    /// Appends the record of `event` in the configured shape.
    fn write_event(&mut self, event: &Event, defect: Defect, out: &mut Vec<u8>) {
        let start = out.len();
        write_record(&self.world, &mut self.rng, event, defect, out);
        if self.config.shape != Shape::DiagnosticSettings {
            let record = out.split_off(start);
            shape::reshape(&self.world.tenant, self.config.shape, &record, out);
        }
    }

    /// Event time of the next event, without taking it.
    fn peek_time(&self) -> i64 {
        let pending = self.pending.last().map_or(i64::MAX, |e| e.time);
        let spike = self
            .spikes
            .iter()
            .map(|s| s.next_time)
            .min()
            .unwrap_or(i64::MAX);
        self.lookahead.time.min(pending).min(spike)
    }

    /// The next event in time order: injected, spike or normal traffic.
    fn next_event(&mut self) -> Event {
        let normal = self.lookahead.time;
        let pending = self.pending.last().map_or(i64::MAX, |e| e.time);
        let spike = self
            .spikes
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.next_time)
            .map(|(i, s)| (i, s.next_time));
        let spike_time = spike.map_or(i64::MAX, |(_, t)| t);
        if pending <= normal
            && pending <= spike_time
            && let Some(event) = self.pending.pop()
        {
            return event;
        }
        if let Some((index, time)) = spike
            && time <= normal
        {
            return self.spike_event(index);
        }
        self.advance_normal()
    }

    /// Takes the normal-traffic lookahead and draws the one after it.
    fn advance_normal(&mut self) -> Event {
        let now = self.lookahead.time;
        let next_time = now.saturating_add(exp_gap_micros(
            &mut self.rng,
            self.config.events_per_second,
            now,
        ));
        let next = normal_event(&self.world, &mut self.rng, next_time, None);
        let event = std::mem::replace(&mut self.lookahead, next);
        self.trigger_due();
        event
    }

    /// Takes the next event of spike `index` and schedules the one after it.
    fn spike_event(&mut self, index: usize) -> Event {
        let Some(spike) = self.spikes.get_mut(index) else {
            return self.advance_normal();
        };
        let (vault, time) = (spike.vault, spike.next_time);
        let share = self.world.vaults.get(vault).map_or(0.0, |v| v.share);
        let rate = spike.extra * self.config.events_per_second * share;
        spike.next_time = time.saturating_add(exp_gap_micros(&mut self.rng, rate, time).max(1));
        if spike.next_time >= spike.end {
            self.spikes.remove(index);
        }
        normal_event(&self.world, &mut self.rng, time, Some(vault))
    }

    /// Injects every planned attack whose trigger the normal traffic has reached.
    fn trigger_due(&mut self) {
        let mut added = false;
        while self
            .planned
            .front()
            .is_some_and(|p| p.trigger <= self.lookahead.time)
        {
            let Some(planned) = self.planned.pop_front() else {
                break;
            };
            self.injected.push(planned.report);
            self.spikes.extend(planned.spike);
            added |= !planned.events.is_empty();
            self.pending.extend(planned.events);
        }
        if added {
            // Latest first, so that `pop` yields the earliest (and equal times in order).
            self.pending.sort_by_key(|event| event.time);
            self.pending.reverse();
        }
    }
}

impl Iterator for Generator {
    type Item = Message;

    /// Never ends.
    fn next(&mut self) -> Option<Message> {
        Some(self.next_message())
    }
}

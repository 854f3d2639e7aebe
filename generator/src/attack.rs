//! Planning of injected attacks: who, on which vault, from where, and the exact events,
//! decided up front from the seed so that the report and the traffic always agree.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::record::{Event, Op, Status};
use crate::text::{HOUR, MINUTE, SECOND, ip_string};
use crate::world::{Kind, Sampler, Target, World, below, new_identity, pick_ip, pick_object};
use crate::{Attack, InjectedAttack, exp_gap_micros};

/// An attack waiting for event time to reach its trigger.
#[derive(Debug)]
pub(crate) struct Planned {
    pub trigger: i64,
    pub report: InjectedAttack,
    /// Discrete events, in time order.
    pub events: Vec<Event>,
    /// Extra traffic generated lazily (volume spikes can be large).
    pub spike: Option<Spike>,
}

/// Extra traffic on one vault until `end`, a Poisson process `extra` times the vault's
/// normal rate.
#[derive(Clone, Debug)]
pub(crate) struct Spike {
    pub vault: usize,
    pub end: i64,
    pub extra: f64,
    pub next_time: i64,
}

/// Decides the details of `attack`. `index` counts the attacks planned so far.
pub(crate) fn plan(
    attack: &Attack,
    index: usize,
    world: &mut World,
    rng: &mut ChaCha8Rng,
    start: i64,
    events_per_second: f64,
) -> Planned {
    let trigger = start.saturating_add(attack.at_micros().max(0));
    let mut planner = Planner {
        world,
        rng,
        trigger,
        events: Vec::new(),
    };
    let (vault, caller, spike) = match attack {
        Attack::MassSecretRetrieval { count, .. } => planner.mass_retrieval(*count),
        Attack::ListThenRead { gets, .. } => planner.list_then_read(*gets),
        Attack::SensitiveOperation { operation, .. } => planner.sensitive(operation),
        Attack::NewIdentityOnVault { .. } => planner.new_identity(),
        Attack::VolumeSpike { factor, .. } => planner.spike(*factor, events_per_second),
        Attack::DeniedBurst { count, .. } => planner.denied_burst(*count),
        Attack::NewIpForIdentity { .. } => planner.new_ip(index),
    };
    let Planner {
        world, mut events, ..
    } = planner;
    events.sort_by_key(|event| event.time);
    let end = if matches!(attack, Attack::VolumeSpike { .. }) {
        trigger.saturating_add(HOUR)
    } else {
        events.last().map_or(trigger, |last| last.time)
    };
    let report = InjectedAttack {
        attack: attack.clone(),
        vault: world
            .vaults
            .get(vault)
            .map(|v| v.name.clone())
            .unwrap_or_default(),
        object_id: caller
            .and_then(|c| world.identities.get(c.identity))
            .map(|i| i.oid.clone()),
        ip: caller.map(|c| ip_string(c.ip)),
        start_micros: trigger,
        end_micros: end,
    };
    Planned {
        trigger,
        report,
        events,
        spike,
    }
}

/// Who calls which vault from where.
#[derive(Clone, Copy, Debug)]
struct Actor {
    vault: usize,
    identity: usize,
    ip: [u8; 4],
}

/// The vault of a planned attack, its single caller if it has one, and its lazy traffic.
type Choice = (usize, Option<Actor>, Option<Spike>);

struct Planner<'a> {
    world: &'a mut World,
    rng: &'a mut ChaCha8Rng,
    trigger: i64,
    events: Vec<Event>,
}

impl Planner<'_> {
    /// A population identity, weighted by activity (so it has likely been seen).
    fn known_identity(&mut self) -> usize {
        self.world.callers.sample(self.rng).unwrap_or(0)
    }

    /// `identity` calling its main vault from one of its usual addresses.
    fn at_home(&mut self, identity: usize) -> Actor {
        let Some(id) = self.world.identities.get(identity) else {
            return Actor {
                vault: 0,
                identity,
                ip: [10, 0, 0, 1],
            };
        };
        let vault = id.vaults.first().copied().unwrap_or(0);
        Actor {
            vault,
            identity,
            ip: pick_ip(self.rng, id),
        }
    }

    /// `n` sorted times in `[trigger + offset, trigger + offset + window)`.
    fn times(&mut self, n: usize, offset: i64, window: i64) -> Vec<i64> {
        let mut times: Vec<i64> = (0..n)
            .map(|_| self.trigger + offset + (self.rng.random::<f64>() * window as f64) as i64)
            .collect();
        times.sort_unstable();
        times
    }

    /// Number of objects of `target` in the vault of `who`.
    fn objects(&self, who: Actor, target: Target) -> usize {
        self.world
            .vaults
            .get(who.vault)
            .map_or(1, |v| v.objects(target))
    }

    /// Plans one call of `op` by `who` on object index `object`.
    fn call(&mut self, who: Actor, time: i64, op: &str, status: Status, object: usize) {
        let Actor {
            vault,
            identity,
            ip,
        } = who;
        let op = Op::named(op);
        self.events.push(Event {
            time,
            op,
            vault,
            identity,
            anonymous: false,
            ip,
            status,
            object,
        });
    }

    /// A uniformly random object of `target` in the vault of `who`.
    fn any_object(&mut self, who: Actor, target: Target) -> usize {
        let n = self.objects(who, target);
        below(self.rng, n)
    }

    fn mass_retrieval(&mut self, count: usize) -> Choice {
        let identity = self.known_identity();
        let who = self.at_home(identity);
        for time in self.times(count, 0, 55 * MINUTE) {
            let (op, target) = match self.rng.random::<f64>() {
                x if x < 0.8 => ("SecretGet", Target::Secret),
                x if x < 0.9 => ("KeyGet", Target::Key),
                _ => ("VaultGet", Target::Vault),
            };
            let object = self.any_object(who, target);
            self.call(who, time, op, Status::Ok, object);
        }
        (who.vault, Some(who), None)
    }

    fn list_then_read(&mut self, gets: usize) -> Choice {
        let identity = self.known_identity();
        let who = self.at_home(identity);
        self.call(who, self.trigger, "SecretList", Status::Ok, 0);
        // Distinct secrets: a shuffled prefix of the catalogue, extended past its end if needed.
        let mut objects: Vec<usize> = (0..gets.max(self.objects(who, Target::Secret))).collect();
        for i in 0..gets.min(objects.len()) {
            let j = i + below(self.rng, objects.len() - i);
            objects.swap(i, j);
        }
        let times = self.times(gets, SECOND, 9 * MINUTE);
        for (time, object) in times.into_iter().zip(objects) {
            self.call(who, time, "SecretGet", Status::Ok, object);
        }
        (who.vault, Some(who), None)
    }

    fn sensitive(&mut self, operation: &str) -> Choice {
        // Prefer a person: a human purging or deleting is the interesting case.
        let mut identity = self.known_identity();
        for _ in 0..32 {
            if self
                .world
                .identities
                .get(identity)
                .is_some_and(|i| i.kind == Kind::User)
            {
                break;
            }
            identity = self.known_identity();
        }
        let who = self.at_home(identity);
        let n = self.objects(who, Op::named(operation).target());
        let object = pick_object(self.rng, n);
        self.call(who, self.trigger, operation, Status::Ok, object);
        (who.vault, Some(who), None)
    }

    fn new_identity(&mut self) -> Choice {
        let vault = below(self.rng, self.world.vaults.len());
        let kind = match below(self.rng, 3) {
            0 => Kind::User,
            1 => Kind::ServicePrincipal,
            _ => Kind::ManagedIdentity,
        };
        let subscriptions = self.world.subscriptions();
        let identity = self.world.identities.len();
        let newcomer = new_identity(
            self.rng,
            kind,
            identity,
            &subscriptions,
            &Sampler::new([(vault, 1.0)]),
        );
        let ip = newcomer.ips.first().copied().unwrap_or([10, 0, 0, 1]);
        self.world.identities.push(newcomer);
        let who = Actor {
            vault,
            identity,
            ip,
        };
        for (n, time) in self.times(10, 0, 5 * MINUTE).into_iter().enumerate() {
            let (op, target) = match n {
                0 => ("SecretList", Target::Secret),
                n if n % 4 == 3 => ("KeyGet", Target::Key),
                _ => ("SecretGet", Target::Secret),
            };
            let object = self.any_object(who, target);
            self.call(who, time, op, Status::Ok, object);
        }
        (vault, Some(who), None)
    }

    fn spike(&mut self, factor: f64, events_per_second: f64) -> Choice {
        let shares = Sampler::new(self.world.vaults.iter().map(|v| v.share).enumerate());
        let vault = shares.sample(self.rng).unwrap_or(0);
        let extra = if factor.is_finite() {
            (factor - 1.0).max(0.0)
        } else {
            0.0
        };
        let share = self.world.vaults.get(vault).map_or(0.0, |v| v.share);
        let end = self.trigger.saturating_add(HOUR);
        let spike = (extra > 0.0 && share > 0.0)
            .then(|| {
                let gap = exp_gap_micros(self.rng, extra * events_per_second * share, self.trigger);
                Spike {
                    vault,
                    end,
                    extra,
                    next_time: self.trigger.saturating_add(gap),
                }
            })
            .filter(|spike| spike.next_time < end);
        (vault, None, spike)
    }

    fn denied_burst(&mut self, count: usize) -> Choice {
        let identity = self.known_identity();
        // Probing any vault, usually one it has no access to.
        let vault = below(self.rng, self.world.vaults.len());
        let who = Actor {
            vault,
            ..self.at_home(identity)
        };
        for time in self.times(count, 0, 9 * MINUTE + 30 * SECOND) {
            let (op, target) = match below(self.rng, 4) {
                0 => ("SecretList", Target::Secret),
                1 => ("KeyGet", Target::Key),
                2 => ("SecretSet", Target::Secret),
                _ => ("SecretGet", Target::Secret),
            };
            let object = self.any_object(who, target);
            self.call(who, time, op, Status::Forbidden, object);
        }
        (vault, Some(who), None)
    }

    fn new_ip(&mut self, index: usize) -> Choice {
        // One of the busiest identities, so that its usual addresses are well known.
        let weights = &self.world.weights;
        let mut ranked: Vec<usize> = (0..self.world.population).collect();
        ranked.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let top = ranked.len().div_ceil(20).max(1);
        let identity = ranked.get(below(self.rng, top)).copied().unwrap_or(0);
        // 192.0.2.0/24 (TEST-NET-1) is never a usual address; each attack gets its own.
        let who = Actor {
            ip: [192, 0, 2, (1 + index % 254) as u8],
            ..self.at_home(identity)
        };
        for time in self.times(5, 0, 2 * MINUTE) {
            let target = if below(self.rng, 3) == 0 {
                Target::Key
            } else {
                Target::Secret
            };
            let op = if target == Target::Key {
                "KeyGet"
            } else {
                "SecretGet"
            };
            let n = self.objects(who, target);
            let object = pick_object(self.rng, n);
            self.call(who, time, op, Status::Ok, object);
        }
        (who.vault, Some(who), None)
    }
}

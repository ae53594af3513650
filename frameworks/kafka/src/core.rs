//! The scheduler core, pure: the brokers, the broker commands (add,
//! update, start, stop, restart, remove), offers in -> operations out,
//! task status updates in -> kills and revives out, and a tick with the
//! time. No I/O and no clock of its own: `now` (epoch ms) comes in with
//! every call, so tests drive time.
//!
//! Placement: a broker waiting to start takes cpus, mem and its ports
//! (the ones it reserved before, else offered ones within its `port`
//! range) and, the first time, disk for its volume. What it takes
//! unreserved is RESERVEd for the framework's role and principal, labelled
//! with the broker's id; its volume (persistence id `<name>-broker-<id>`)
//! is CREATEd from the reserved disk; and the broker is LAUNCHed — one
//! ACCEPT. Later starts go back to the agent holding its reservation and
//! volume while its stickiness period lasts (or while it never stopped), and
//! reuse both. Reserved resources labelled for a broker that no longer
//! holds them on that agent (removed, or moved after its stickiness
//! expired) are DESTROYed and UNRESERVEd when they are offered; but an
//! agent back under a new AgentID at the same place (hostname, address,
//! API port) still holds its broker's reservation and volume, and the
//! broker takes them over there.
//!
//! Apache Kafka brokers form one KRaft quorum of every active broker: a
//! broker is launched once every active broker holds its reservation (so
//! `controller.quorum.voters` is complete); until then it only reserves.

use std::collections::{BTreeMap, BTreeSet};

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{self, Need, Placement};

use crate::broker::{Broker, BrokerParams, Reservation, Task};
use crate::constraints::compile;
use crate::expr::BrokerExpr;
use crate::launch::{task_info, Engine, Setup, Slot};

/// The label naming the framework on its reservations.
pub const LABEL_FRAMEWORK: &str = "corral.kafka/framework";
/// The label naming the broker on its reservations.
pub const LABEL_BROKER: &str = "corral.kafka/broker";
/// How long a kill may go unanswered before it is sent again, ms.
pub const KILL_RETRY_MS: i64 = 5_000;
/// Offers refused when no broker waits, s.
pub const REFUSE_IDLE: f64 = 5.0;
/// Offers refused while a broker waits elsewhere, s.
pub const REFUSE_BUSY: f64 = 1.0;

/// The framework-wide settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The framework's name: prefix of task ids and persistence ids.
    pub name: String,
    /// The role brokers run and reserve as.
    pub role: String,
    /// The principal reservations and volumes are made with.
    pub principal: Option<String>,
    /// What brokers run.
    pub engine: Engine,
    /// The volume's path in the sandbox.
    pub volume_path: String,
    /// The cluster id.
    pub cluster_id: String,
}

/// What the shell carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// ACCEPT an offer with operations.
    Accept {
        /// The offer.
        offer_id: v1::OfferId,
        /// RESERVE, CREATE, DESTROY, UNRESERVE, LAUNCH.
        operations: Vec<v1::offer::Operation>,
    },
    /// DECLINE offers.
    Decline {
        /// The offers.
        offer_ids: Vec<v1::OfferId>,
        /// For how long.
        refuse_seconds: f64,
    },
    /// KILL a task.
    Kill {
        /// The task.
        task_id: String,
        /// Its agent.
        agent_id: Option<String>,
    },
    /// REVIVE offers (a broker waits to start, or reserved resources wait
    /// to be released).
    Revive,
}

/// A refused command: the message names the parameter or the broker.
pub type Refusal = String;

/// The core.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    brokers: BTreeMap<u32, Broker>,
    changed: BTreeSet<u32>,
    agents: BTreeMap<String, Placement>,
    why: BTreeMap<u32, String>,
    last_tick: i64,
}

fn terminal(s: v1::TaskState) -> bool {
    use v1::TaskState::*;
    !matches!(
        s,
        TaskStaging | TaskStarting | TaskRunning | TaskKilling | TaskUnreachable
    )
}

fn is_volume(r: &v1::Resource) -> bool {
    r.disk.as_ref().is_some_and(|d| d.persistence.is_some())
}

/// The persistence id of broker `id`'s volume.
pub fn persistence_id(name: &str, id: u32) -> String {
    format!("{name}-broker-{id}")
}

/// A disk volume as plain reserved disk again (after DESTROY).
fn plain_disk(volume: &v1::Resource) -> v1::Resource {
    let mut d = volume.clone();
    d.disk = d.disk.take().and_then(|mut info| {
        info.persistence = None;
        info.volume = None;
        info.source.is_some().then_some(info)
    });
    d
}

struct Room {
    offer: v1::Offer,
    left: Resources,
    ops: Vec<v1::offer::Operation>,
    tasks: Vec<v1::TaskInfo>,
    placement: Placement,
    address: String,
    agent_port: Option<i32>,
}

impl Room {
    fn new(offer: v1::Offer) -> Self {
        let placement = Placement::of_offer(&offer);
        let address = offer
            .url
            .as_ref()
            .and_then(|u| u.address.ip.clone())
            .unwrap_or_else(|| offer.hostname.clone());
        let agent_port = offer.url.as_ref().map(|u| u.address.port);
        Self {
            left: Resources::from_vec(&offer.resources),
            offer,
            ops: Vec::new(),
            tasks: Vec::new(),
            placement,
            address,
            agent_port,
        }
    }
    fn agent(&self) -> &str {
        &self.offer.agent_id.value
    }
}

struct Pending {
    room: usize,
    broker: u32,
    task_id: String,
    resources: Vec<v1::Resource>,
    ports: Vec<u64>,
}

impl Core {
    /// A core with no brokers.
    pub fn new(config: CoreConfig) -> Self {
        Self {
            config,
            brokers: BTreeMap::new(),
            changed: BTreeSet::new(),
            agents: BTreeMap::new(),
            why: BTreeMap::new(),
            last_tick: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Takes stored brokers over; returns their tasks to reconcile.
    pub fn import(&mut self, brokers: Vec<Broker>) -> Vec<(String, Option<String>)> {
        let mut tasks = Vec::new();
        for b in brokers {
            if let Some(t) = &b.task {
                tasks.push((t.id.clone(), Some(t.slave_id.clone())));
            }
            self.brokers.insert(b.id, b);
        }
        tasks
    }

    /// Every broker.
    pub fn brokers(&self) -> &BTreeMap<u32, Broker> {
        &self.brokers
    }

    /// Why a waiting broker is not placed yet.
    pub fn why(&self, id: u32) -> Option<&String> {
        self.why.get(&id)
    }

    /// The brokers changed (or removed) since the last call: to store.
    pub fn take_changed(&mut self) -> BTreeSet<u32> {
        std::mem::take(&mut self.changed)
    }

    /// Running brokers' client endpoints.
    pub fn endpoints(&self) -> Vec<(u32, String)> {
        self.brokers
            .values()
            .filter_map(|b| b.endpoint().map(|e| (b.id, e.to_string())))
            .collect()
    }

    /// Whether a broker waits to be started.
    pub fn waiting(&self, now: i64) -> bool {
        self.brokers
            .values()
            .any(|b| b.active && b.task.is_none() && !b.failover.waiting(now))
    }

    fn attrs_of(&self, id: u32) -> Option<BTreeMap<String, String>> {
        let t = self.brokers.get(&id)?.task.as_ref()?;
        let mut a = t.attributes.clone();
        a.insert("hostname".into(), t.hostname.clone());
        Some(a)
    }

    /// The ids `expr` selects; every one must exist.
    pub fn select(&self, expr: &str) -> Result<Vec<u32>, Refusal> {
        let e = BrokerExpr::parse(expr).map_err(|m| format!("broker: {m}"))?;
        let existing: BTreeSet<u32> = self.brokers.keys().copied().collect();
        let ids = e.select(&existing, |id| self.attrs_of(id));
        if let Some(missing) = ids.iter().find(|id| !self.brokers.contains_key(id)) {
            return Err(format!("broker: broker {missing} not found"));
        }
        Ok(ids)
    }

    /// `broker add`: new brokers with `params`.
    pub fn add(&mut self, expr: &str, params: &BrokerParams) -> Result<Vec<u32>, Refusal> {
        let e = BrokerExpr::parse(expr).map_err(|m| format!("broker: {m}"))?;
        if e.any || !e.attributes.is_empty() {
            return Err("broker: add needs ids (0, 0,1, 0..2), not * or a filter".into());
        }
        let mut new = Vec::new();
        for id in &e.ids {
            if self.brokers.contains_key(id) {
                return Err(format!("broker: broker {id} already exists"));
            }
            let mut b = Broker::new(*id);
            params.apply(&mut b)?;
            new.push(b);
        }
        let ids: Vec<u32> = new.iter().map(|b| b.id).collect();
        for b in new {
            self.changed.insert(b.id);
            self.brokers.insert(b.id, b);
        }
        Ok(ids)
    }

    /// `broker update`: changes settings; a broker with a task gets them at
    /// its next start (`needsRestart`).
    pub fn update(&mut self, expr: &str, params: &BrokerParams) -> Result<Vec<u32>, Refusal> {
        let ids = self.select(expr)?;
        let mut updated = Vec::new();
        for id in &ids {
            let mut b = self.brokers[id].clone();
            params.apply(&mut b)?;
            if b.task.is_some() {
                b.needs_restart = true;
            }
            updated.push(b);
        }
        for b in updated {
            self.changed.insert(b.id);
            self.brokers.insert(b.id, b);
        }
        Ok(ids)
    }

    /// `broker start`.
    pub fn start(&mut self, expr: &str) -> Result<(Vec<u32>, Vec<Effect>), Refusal> {
        let ids = self.select(expr)?;
        for id in &ids {
            if let Some(b) = self.brokers.get_mut(id) {
                b.active = true;
                b.failed = false;
                b.failover.reset();
                self.changed.insert(*id);
            }
        }
        Ok((ids, vec![Effect::Revive]))
    }

    fn kill_task(b: &mut Broker, now: i64) -> Option<Effect> {
        let t = b.task.as_mut()?;
        t.state = "stopping".into();
        t.running_since = None;
        t.kill_sent = Some(now);
        Some(Effect::Kill {
            task_id: t.id.clone(),
            agent_id: Some(t.slave_id.clone()),
        })
    }

    /// `broker stop`: the broker stays placed (its reservation and volume
    /// wait for it on its agent).
    pub fn stop(&mut self, expr: &str, now: i64) -> Result<(Vec<u32>, Vec<Effect>), Refusal> {
        let ids = self.select(expr)?;
        let mut effects = Vec::new();
        for id in &ids {
            if let Some(b) = self.brokers.get_mut(id) {
                b.active = false;
                b.failover.reset();
                effects.extend(Self::kill_task(b, now));
                self.changed.insert(*id);
            }
        }
        Ok((ids, effects))
    }

    /// `broker restart`: stopped and started again (on the same agent,
    /// with the same volume).
    pub fn restart(&mut self, expr: &str, now: i64) -> Result<(Vec<u32>, Vec<Effect>), Refusal> {
        let ids = self.select(expr)?;
        let mut effects = vec![Effect::Revive];
        for id in &ids {
            if let Some(b) = self.brokers.get_mut(id) {
                b.active = true;
                b.failed = false;
                b.failover.reset();
                effects.extend(Self::kill_task(b, now));
                self.changed.insert(*id);
            }
        }
        Ok((ids, effects))
    }

    /// `broker remove`: stopped brokers only; their reservations and
    /// volumes are released when their agent offers them.
    pub fn remove(&mut self, expr: &str) -> Result<(Vec<u32>, Vec<Effect>), Refusal> {
        let ids = self.select(expr)?;
        for id in &ids {
            let b = &self.brokers[id];
            if b.active {
                return Err(format!("broker: broker {id} is active; stop it first"));
            }
            if b.task.is_some() {
                return Err(format!(
                    "broker: broker {id} is still stopping; retry shortly"
                ));
            }
        }
        let mut release = false;
        for id in &ids {
            if let Some(b) = self.brokers.remove(id) {
                release |= b.reservation.is_some();
            }
            self.why.remove(id);
            self.changed.insert(*id);
        }
        Ok((
            ids,
            if release {
                vec![Effect::Revive]
            } else {
                vec![]
            },
        ))
    }

    /// The broker a reserved resource is labelled for (by this framework).
    fn label_of(&self, r: &v1::Resource) -> Option<u32> {
        let labels = &r.reservations.last()?.labels.as_ref()?.labels;
        let get = |k: &str| {
            labels
                .iter()
                .find(|l| l.key == k)
                .and_then(|l| l.value.as_deref())
        };
        if get(LABEL_FRAMEWORK)? != self.config.name {
            return None;
        }
        get(LABEL_BROKER)?.parse().ok()
    }

    /// Whether broker `id` holds `r` (labelled for it) on `agent`.
    fn owns(&self, id: u32, agent: &str, r: &v1::Resource) -> bool {
        let Some(res) = self.brokers.get(&id).and_then(|b| b.reservation.as_ref()) else {
            return false;
        };
        if res.agent_id != agent {
            return false;
        }
        match r.disk.as_ref().and_then(|d| d.persistence.as_ref()) {
            Some(p) => p.id == res.persistence_id,
            None => true,
        }
    }

    /// Offers in: releases, placements and launches out (an ACCEPT per
    /// offer used, one DECLINE of the rest).
    pub fn offers(&mut self, now: i64, offers: Vec<v1::Offer>) -> Vec<Effect> {
        let mut rooms: Vec<Room> = offers.into_iter().map(Room::new).collect();
        for r in &rooms {
            self.agents
                .insert(r.agent().to_string(), r.placement.clone());
        }
        let mut effects = self.rehome(now, &rooms);
        self.release(&mut rooms);
        let waiting: Vec<u32> = self
            .brokers
            .values()
            .filter(|b| b.active && b.task.is_none() && !b.failover.waiting(now))
            .map(|b| b.id)
            .collect();
        let mut pending = Vec::new();
        for id in waiting {
            match self.place(id, now, &mut rooms) {
                Ok(p) => {
                    self.why.remove(&id);
                    pending.push(p);
                }
                Err(why) => {
                    self.why.insert(id, why);
                }
            }
        }
        self.launch(pending, &mut rooms);
        let busy = self.waiting(now);
        let mut declined = Vec::new();
        for mut room in rooms {
            if !room.tasks.is_empty() {
                room.ops.push(v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Launch as i32),
                    launch: Some(v1::offer::operation::Launch {
                        task_infos: std::mem::take(&mut room.tasks),
                    }),
                    ..Default::default()
                });
            }
            if room.ops.is_empty() {
                declined.push(room.offer.id);
            } else {
                effects.push(Effect::Accept {
                    offer_id: room.offer.id,
                    operations: room.ops,
                });
            }
        }
        if !declined.is_empty() {
            effects.push(Effect::Decline {
                offer_ids: declined,
                refuse_seconds: if busy { REFUSE_BUSY } else { REFUSE_IDLE },
            });
        }
        effects
    }

    /// An agent back under a new AgentID where it ran before (the same
    /// hostname, address and port: restarted after `--recover=cleanup`, or
    /// with its checkpoint lost) still holds the reservations and volumes
    /// made on it, which are checkpointed apart from its id; its old id is
    /// gone for good, and with it whatever ran there. A broker whose
    /// volume such an agent offers takes the new id for its reservation
    /// (so its data is kept, not released as someone else's), and its task
    /// on the old id has ended: a failure, unless it was being stopped.
    fn rehome(&mut self, now: i64, rooms: &[Room]) -> Vec<Effect> {
        let mut effects = Vec::new();
        for room in rooms {
            let agent = room.agent();
            for r in &room.offer.resources {
                let Some(p) = r.disk.as_ref().and_then(|d| d.persistence.as_ref()) else {
                    continue;
                };
                if offers::reservation_role(r) != Some(self.config.role.as_str()) {
                    continue;
                }
                let Some(id) = self.label_of(r) else { continue };
                let Some(b) = self.brokers.get_mut(&id) else {
                    continue;
                };
                let Some(res) = b.reservation.as_mut() else {
                    continue;
                };
                if res.agent_id == agent
                    || res.persistence_id != p.id
                    || res.hostname != room.offer.hostname
                    || res.address != room.address
                    || res.agent_port.is_none()
                    || res.agent_port != room.agent_port
                {
                    continue;
                }
                let old = std::mem::replace(&mut res.agent_id, agent.to_string());
                tracing::warn!(broker = id, old_agent = %old, agent = %agent, volume = %p.id, "the broker's agent is back under a new id with its volume; the broker's reservation moves to it");
                if b.task.as_ref().is_some_and(|t| t.slave_id == old) {
                    let ended = Self::ended(id, b, now, "its agent came back under a new id");
                    effects.extend(ended);
                }
                self.changed.insert(id);
            }
        }
        effects
    }

    /// Broker `id`'s task ended (`why`): a failure unless it was asked to
    /// stop; REVIVE if it is to start again.
    fn ended(id: u32, b: &mut Broker, now: i64, why: &str) -> Vec<Effect> {
        let Some(t) = b.task.take() else {
            return vec![];
        };
        let expected = t.state == "stopping" || !b.active;
        tracing::info!(broker = id, task_id = %t.id, expected, why, "broker task ended");
        if expected || b.failover.failures == 0 {
            b.stickiness.stop_time = Some(now);
        }
        if expected {
            b.failover.reset();
        } else {
            b.failover.register_failure(now);
            if b.failover.max_tries_exceeded() {
                tracing::warn!(
                    broker = id,
                    failures = b.failover.failures,
                    "the broker failed too often; deactivated"
                );
                b.active = false;
                b.failed = true;
            }
        }
        if b.active {
            vec![Effect::Revive]
        } else {
            vec![]
        }
    }

    /// DESTROY and UNRESERVE what is labelled for a broker that does not
    /// hold it there any more.
    fn release(&self, rooms: &mut [Room]) {
        for room in rooms.iter_mut() {
            let agent = room.agent().to_string();
            let mut destroy = Vec::new();
            let mut unreserve = Vec::new();
            for r in &room.offer.resources {
                if offers::reservation_role(r) != Some(self.config.role.as_str()) {
                    continue;
                }
                let Some(id) = self.label_of(r) else { continue };
                if self.owns(id, &agent, r) {
                    continue;
                }
                if is_volume(r) {
                    destroy.push(r.clone());
                    unreserve.push(plain_disk(r));
                } else {
                    unreserve.push(r.clone());
                }
                room.left.subtract(r);
            }
            if !destroy.is_empty() {
                tracing::info!(agent = %agent, volumes = destroy.len(), "destroying volumes no broker holds");
                room.ops.push(offers::destroy_volumes(&destroy));
            }
            if !unreserve.is_empty() {
                tracing::info!(agent = %agent, resources = unreserve.len(), "unreserving resources no broker holds");
                room.ops.push(offers::unreserve(&unreserve));
            }
        }
    }

    /// Where the other brokers run or are reserved.
    fn placed_except(&self, id: u32) -> Vec<Placement> {
        self.brokers
            .values()
            .filter(|b| b.id != id)
            .filter_map(|b| {
                if let Some(t) = &b.task {
                    return Some(Placement {
                        hostname: t.hostname.clone(),
                        attributes: t.attributes.clone(),
                    });
                }
                let r = b.reservation.as_ref().filter(|_| b.active)?;
                Some(self.agents.get(&r.agent_id).cloned().unwrap_or(Placement {
                    hostname: r.hostname.clone(),
                    attributes: BTreeMap::new(),
                }))
            })
            .collect()
    }

    /// Places broker `id` on one of `rooms`: its RESERVE, CREATE and
    /// UNRESERVE operations join the room; the launch is pending.
    fn place(&mut self, id: u32, now: i64, rooms: &mut [Room]) -> Result<Pending, String> {
        let b = self.brokers[&id].clone();
        let sticky_agent = b
            .reservation
            .as_ref()
            .filter(|_| b.stickiness.hostname.is_none() || b.stickiness.sticky(now))
            .map(|r| r.agent_id.clone());
        let constraints = compile(&b.constraints);
        let placed = self.placed_except(id);
        let known: Vec<Placement> = self.agents.values().cloned().collect();
        let mut order: Vec<usize> = (0..rooms.len()).collect();
        let home = b.reservation.as_ref().map(|r| r.agent_id.clone());
        order.sort_by_key(|i| Some(rooms[*i].agent()) != home.as_deref());
        let mut why = Vec::new();
        for i in order {
            let room = &rooms[i];
            if let Some(a) = &sticky_agent {
                if room.agent() != a {
                    why.push(format!(
                        "{}: broker {id} is sticky to its agent {a} (its volume is there)",
                        room.offer.hostname
                    ));
                    continue;
                }
            }
            if let Some(e) = constraints
                .iter()
                .find_map(|c| c.admits(&room.placement, &placed, &known).err())
            {
                why.push(format!("{}: {e}", room.offer.hostname));
                continue;
            }
            match self.fit(&b, room) {
                Ok(fit) => return Ok(self.commit(b, i, &mut rooms[i], fit)),
                Err(e) => why.push(format!("{}: {e}", room.offer.hostname)),
            }
        }
        if why.is_empty() {
            why.push("no offers".into());
        }
        why.truncate(8);
        Err(why.join("; "))
    }

    fn fit(&self, b: &Broker, room: &Room) -> Result<Fit, String> {
        let agent = room.agent();
        let own = |r: &v1::Resource| self.label_of(r) == Some(b.id) && self.owns(b.id, agent, r);
        let usable: Vec<v1::Resource> = room
            .left
            .as_slice()
            .iter()
            .filter(|r| {
                offers::allocation_role(r) == self.config.role || offers::allocation_role(r) == "*"
            })
            .filter(|r| !is_volume(r) && (r.reservations.is_empty() || own(r)))
            .cloned()
            .collect();
        let own_reserved: Vec<v1::Resource> = usable
            .iter()
            .filter(|r| !r.reservations.is_empty())
            .cloned()
            .collect();
        let avail = Resources::from_vec(&usable);
        let need = Need {
            cpus: b.cpus,
            mem: b.mem as f64,
            disk: 0.0,
            ports: 0,
        };
        let (mut taken, rest) = offers::take(&avail, &need)
            .ok_or_else(|| format!("not enough cpus or mem for {} cpus, {} MB", b.cpus, b.mem))?;
        let mut rest = rest;
        // Ports: the ones it reserved before first, within its range.
        let want = self.config.engine.ports();
        let mut ports: Vec<u64> = Vec::new();
        for reserved_pass in [true, false] {
            let candidates: Vec<v1::Resource> = rest
                .as_slice()
                .iter()
                .filter(|r| r.name == "ports" && r.ranges.is_some())
                .filter(|r| r.reservations.is_empty() != reserved_pass)
                .cloned()
                .collect();
            for r in candidates {
                for range in r
                    .ranges
                    .as_ref()
                    .map(|x| x.range.clone())
                    .unwrap_or_default()
                {
                    let (lo, hi) = match b.port {
                        Some(p) => (range.begin.max(p.start), range.end.min(p.end)),
                        None => (range.begin, range.end),
                    };
                    let mut p = lo;
                    while p <= hi && ports.len() < want {
                        if !ports.contains(&p) {
                            let mut one = r.clone();
                            one.ranges = Some(v1::value::Ranges {
                                range: vec![v1::value::Range { begin: p, end: p }],
                            });
                            rest.subtract(&one);
                            taken.push(one);
                            ports.push(p);
                        }
                        p += 1;
                    }
                }
            }
        }
        if ports.len() < want {
            return Err(match b.port {
                Some(p) => format!("no free port in {p}"),
                None => format!("fewer than {want} free ports"),
            });
        }
        // The volume: the existing one, or disk for a new one.
        let pid = persistence_id(&self.config.name, b.id);
        let here = b.reservation.as_ref().is_some_and(|r| r.agent_id == agent);
        let volume = if here {
            offers::find_volume(room.left.as_slice(), &pid).cloned()
        } else {
            None
        };
        let mut disk = None;
        if volume.is_none() {
            let d = Need {
                cpus: 0.0,
                mem: 0.0,
                disk: b.disk as f64,
                ports: 0,
            };
            let (parts, _) = offers::take(&rest, &d)
                .ok_or_else(|| format!("not enough disk for a {} MB volume", b.disk))?;
            disk = Some(parts);
        }
        Ok(Fit {
            taken,
            ports,
            volume,
            disk,
            own_reserved,
            persistence_id: pid,
        })
    }

    fn commit(&mut self, b: Broker, i: usize, room: &mut Room, fit: Fit) -> Pending {
        let id = b.id;
        let labels_owned = [
            (LABEL_FRAMEWORK, self.config.name.clone()),
            (LABEL_BROKER, id.to_string()),
        ];
        let labels: Vec<(&str, &str)> =
            labels_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let principal = self.config.principal.as_deref();
        let mut launch: Vec<v1::Resource> = Vec::new();
        let mut unreserved: Vec<v1::Resource> = Vec::new();
        let mut used_reserved = Resources::new();
        for r in &fit.taken {
            room.left.subtract(r);
            if r.reservations.is_empty() {
                unreserved.push(r.clone());
            } else {
                used_reserved.add(r);
                launch.push(r.clone());
            }
        }
        let disk_parts = fit.disk.clone().unwrap_or_default();
        for r in &disk_parts {
            room.left.subtract(r);
        }
        let new_disk: Vec<v1::Resource> = disk_parts
            .iter()
            .filter(|r| r.reservations.is_empty())
            .cloned()
            .collect();
        let mut reserved_disk: Vec<v1::Resource> = disk_parts
            .iter()
            .filter(|r| !r.reservations.is_empty())
            .cloned()
            .collect();
        for r in &reserved_disk {
            used_reserved.add(r);
        }
        let to_reserve: Vec<v1::Resource> =
            unreserved.iter().chain(new_disk.iter()).cloned().collect();
        if !to_reserve.is_empty() {
            let (op, reserved) =
                offers::reserve(&to_reserve, &self.config.role, principal, &labels);
            room.ops.push(op);
            for r in reserved {
                if r.name == "disk" {
                    reserved_disk.push(r);
                } else {
                    launch.push(r);
                }
            }
        }
        // What it held reserved here and no longer needs goes back.
        let mut surplus = Resources::from_vec(&fit.own_reserved);
        surplus.subtract_all(&used_reserved);
        if !surplus.is_empty() {
            for r in surplus.as_slice() {
                room.left.subtract(r);
            }
            room.ops.push(offers::unreserve(&surplus.to_vec()));
        }
        match (&fit.volume, reserved_disk.is_empty()) {
            (Some(v), _) => {
                room.left.subtract(v);
                launch.push(v.clone());
            }
            (None, false) => {
                let disk = Resources::from_vec(&reserved_disk);
                if let Some(d) = disk.as_slice().first() {
                    let (op, vol) = offers::create_volume(
                        d,
                        &fit.persistence_id,
                        &self.config.volume_path,
                        principal,
                    );
                    tracing::info!(broker = id, volume = %fit.persistence_id, agent = %room.agent(), "creating the broker's persistent volume");
                    room.ops.push(op);
                    launch.push(vol);
                }
            }
            (None, true) => {}
        }
        let reservation = Reservation {
            agent_id: room.agent().to_string(),
            hostname: room.offer.hostname.clone(),
            address: room.address.clone(),
            persistence_id: fit.persistence_id.clone(),
            ports: fit.ports.clone(),
            agent_port: room.agent_port,
        };
        if let Some(bb) = self.brokers.get_mut(&id) {
            if bb.reservation.as_ref() != Some(&reservation) {
                bb.reservation = Some(reservation);
                self.changed.insert(id);
            }
        }
        Pending {
            room: i,
            broker: id,
            task_id: format!("{}-{id}-{}", self.config.name, uuid::Uuid::new_v4()),
            resources: launch,
            ports: fit.ports,
        }
    }

    /// The KRaft voters: every broker holding a reservation, active or
    /// placed; `None` while an active broker holds none yet.
    fn voters(&self) -> Option<BTreeMap<u32, String>> {
        let mut voters = BTreeMap::new();
        for b in self.brokers.values() {
            match &b.reservation {
                Some(r) => {
                    let port = r.ports.get(1).or(r.ports.first()).copied().unwrap_or(0);
                    voters.insert(b.id, format!("{}:{port}", r.address));
                }
                None if b.active => return None,
                None => {}
            }
        }
        Some(voters)
    }

    fn launch(&mut self, pending: Vec<Pending>, rooms: &mut [Room]) {
        let voters = if self.config.engine.independent_brokers() {
            BTreeMap::new()
        } else {
            match self.voters() {
                Some(v) => v,
                None => {
                    let missing: Vec<String> = self
                        .brokers
                        .values()
                        .filter(|b| b.active && b.reservation.is_none())
                        .map(|b| b.id.to_string())
                        .collect();
                    for p in &pending {
                        self.why.insert(
                            p.broker,
                            format!(
                                "reserved; waiting for brokers {} to be placed (the KRaft controller quorum)",
                                missing.join(",")
                            ),
                        );
                    }
                    return;
                }
            }
        };
        for p in pending {
            let Some(b) = self.brokers.get(&p.broker).cloned() else {
                continue;
            };
            let room = &mut rooms[p.room];
            let agent = room.agent().to_string();
            let setup = Setup {
                engine: &self.config.engine,
                volume_path: &self.config.volume_path,
                cluster_id: &self.config.cluster_id,
                voters: &voters,
            };
            let slot = Slot {
                task_id: &p.task_id,
                agent_id: &agent,
                address: &room.address,
                ports: &p.ports,
                resources: p.resources.clone(),
            };
            room.tasks.push(task_info(&b, &slot, &setup));
            let endpoint = format!("{}:{}", room.address, p.ports.first().copied().unwrap_or(0));
            tracing::info!(broker = b.id, task_id = %p.task_id, agent = %agent, endpoint = %endpoint, "launching a broker");
            if let Some(bb) = self.brokers.get_mut(&p.broker) {
                bb.task = Some(Task {
                    id: p.task_id.clone(),
                    slave_id: agent,
                    executor_id: p.task_id,
                    hostname: room.offer.hostname.clone(),
                    endpoint,
                    state: "starting".into(),
                    attributes: room.placement.attributes.clone(),
                    running_since: None,
                    kill_sent: None,
                });
                bb.needs_restart = false;
                self.changed.insert(p.broker);
            }
        }
    }

    /// A task status update in.
    pub fn status(&mut self, now: i64, status: &v1::TaskStatus) -> Vec<Effect> {
        let task_id = status.task_id.value.clone();
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::TaskUnknown);
        let owner = self
            .brokers
            .values()
            .find(|b| b.task.as_ref().is_some_and(|t| t.id == task_id))
            .map(|b| b.id);
        let Some(id) = owner else {
            if terminal(state) {
                return vec![];
            }
            tracing::info!(task_id = %task_id, "killing a task no broker has");
            return vec![Effect::Kill {
                task_id,
                agent_id: status.agent_id.as_ref().map(|a| a.value.clone()),
            }];
        };
        let Some(b) = self.brokers.get_mut(&id) else {
            return vec![];
        };
        let Some(t) = b.task.as_mut() else {
            return vec![];
        };
        let mut effects = Vec::new();
        match state {
            v1::TaskState::TaskRunning => {
                if t.state != "stopping" {
                    t.state = "running".into();
                }
                if t.running_since.is_none() {
                    t.running_since = Some(now);
                }
                b.stickiness.hostname = Some(t.hostname.clone());
                b.stickiness.stop_time = None;
            }
            v1::TaskState::TaskStaging | v1::TaskState::TaskStarting => {
                if t.state != "stopping" {
                    t.state = "starting".into();
                }
            }
            v1::TaskState::TaskKilling => t.state = "stopping".into(),
            v1::TaskState::TaskUnreachable => {}
            _ => {
                let why = format!(
                    "{}: {}",
                    state.as_str_name(),
                    status.message.as_deref().unwrap_or("")
                );
                effects.extend(Self::ended(id, b, now, &why));
            }
        }
        self.changed.insert(id);
        effects
    }

    /// Time passes: a run of failures ends once a broker has run for its
    /// failover delay; a broker whose failover delay ended is due
    /// (REVIVE); unanswered kills are sent again.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let last = self.last_tick;
        self.last_tick = now;
        let mut effects = Vec::new();
        let mut revive = false;
        for b in self.brokers.values_mut() {
            let delay = b.failover.delay_ms as i64;
            if let Some(t) = b.task.as_mut() {
                if t.state == "running"
                    && b.failover.failures > 0
                    && t.running_since.is_some_and(|s| now - s >= delay)
                {
                    b.failover.reset();
                    self.changed.insert(b.id);
                }
                if t.state == "stopping" && t.kill_sent.is_none_or(|k| now - k >= KILL_RETRY_MS) {
                    t.kill_sent = Some(now);
                    effects.push(Effect::Kill {
                        task_id: t.id.clone(),
                        agent_id: Some(t.slave_id.clone()),
                    });
                }
            } else if b.active && b.failover.failures > 0 {
                let due = b.failover.delay_expires();
                if due > last && due <= now {
                    revive = true;
                }
            }
        }
        if revive {
            effects.push(Effect::Revive);
        }
        effects
    }
}

struct Fit {
    taken: Vec<v1::Resource>,
    ports: Vec<u64>,
    volume: Option<v1::Resource>,
    disk: Option<Vec<v1::Resource>>,
    own_reserved: Vec<v1::Resource>,
    persistence_id: String,
}

#[cfg(test)]
mod tests;

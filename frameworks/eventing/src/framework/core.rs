//! The eventing framework's scheduler core (pure): the two tiers as slots,
//! offers, status updates, scale and upgrade commands and time in; launches,
//! declines, kills and revives out.
//!
//! Each tier has `count` slots `0..count`. A slot holds at most one task,
//! `eventing-<tier>-<slot>-<n>`, which runs `corral eventing <tier>` with the
//! framework's flags and one offered port (`--listen`). A backend's id in
//! the shard ring is `backend-<slot>`, stable across relaunches, so a
//! relaunched backend takes its own shards back.
//!
//! * **Relaunch on failure**: a slot whose task ends waits 1 s, 2 s, 4 s, …
//!   (at most 60 s; reset once a task has run for a minute) and launches
//!   again.
//! * **Scale**: more slots launch; slots at or above the new count are
//!   killed (a backend drains, flushes and spools on SIGTERM; the kill
//!   grace period leaves it the time) and forgotten once their task ended.
//! * **Rolling upgrade**: a new generation (new binary or flags); while every
//!   slot of a tier runs, the lowest slot of an older generation is killed
//!   and relaunched with the new one, one slot per tier at a time.

use std::collections::BTreeMap;

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{take, Need};
use serde::{Deserialize, Serialize};

/// The two tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// `corral eventing api`.
    Api,
    /// `corral eventing backend`.
    Backend,
}

impl Tier {
    /// Its name in task ids, commands and the API.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Api => "api",
            Tier::Backend => "backend",
        }
    }

    /// Both tiers.
    pub const ALL: [Tier; 2] = [Tier::Api, Tier::Backend];
}

/// The most instances of one tier.
pub const MAX_INSTANCES: u32 = 64;

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// No task; launches at `next_launch_ms`.
    Waiting,
    /// Launched, not running yet.
    Starting,
    /// Running.
    Running,
    /// Being killed (scale down or upgrade).
    Killing,
}

/// One instance of a tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// Its tier.
    pub tier: Tier,
    /// Its index in the tier.
    pub index: u32,
    /// Where it stands.
    pub state: SlotState,
    /// Its task, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The task's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The task's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The task's port (`--listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The generation its task runs.
    pub generation: u64,
    /// Failures in a row.
    pub failures: u32,
    /// Not launched before this time (ms since the epoch).
    pub next_launch_ms: i64,
    /// When its task started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since_ms: Option<i64>,
    /// Whether its task's health check (`/health`) passes.
    #[serde(default)]
    pub healthy: bool,
    /// Tasks launched in this slot so far.
    pub launches: u64,
    /// What the last task said when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
}

/// What one tier asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    /// Instances.
    pub count: u32,
    /// CPUs per instance.
    pub cpus: f64,
    /// Memory per instance, MB.
    pub mem: f64,
}

/// What the framework runs: both tiers, and the command of the current
/// generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The API tier.
    pub api: TierSpec,
    /// The backend tier.
    pub backend: TierSpec,
    /// Bumped by every upgrade.
    pub generation: u64,
    /// The `corral` binary the tasks run.
    pub binary: String,
    /// Flags every API task gets (before `--listen`).
    pub api_args: Vec<String>,
    /// Flags every backend task gets (before `--id`, `--spool_dir`,
    /// `--listen`).
    pub backend_args: Vec<String>,
    /// The backends' spool directories are `<spool_root>/backend-<slot>` on
    /// their agent.
    pub spool_root: String,
}

impl Spec {
    /// The spec of a tier.
    pub fn tier(&self, t: Tier) -> &TierSpec {
        match t {
            Tier::Api => &self.api,
            Tier::Backend => &self.backend,
        }
    }

    fn tier_mut(&mut self, t: Tier) -> &mut TierSpec {
        match t {
            Tier::Api => &mut self.api,
            Tier::Backend => &mut self.backend,
        }
    }
}

/// What the shell carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// ACCEPT the offer with these operations.
    Accept {
        /// The offer.
        offer_id: v1::OfferId,
        /// Its operations (one LAUNCH).
        operations: Vec<v1::offer::Operation>,
    },
    /// DECLINE offers.
    Decline {
        /// The offers.
        offer_ids: Vec<v1::OfferId>,
        /// For how long.
        refuse_seconds: f64,
    },
    /// KILL a task, with a grace period.
    Kill {
        /// The task.
        task_id: String,
        /// Its agent.
        agent_id: Option<String>,
        /// Seconds between SIGTERM and SIGKILL.
        grace_seconds: f64,
    },
    /// REVIVE offers.
    Revive,
}

/// How long a task must run before its slot's failures are forgotten.
const STABLE_MS: i64 = 60_000;
/// The longest relaunch delay.
const MAX_BACKOFF_MS: i64 = 60_000;
/// A killed backend's time to drain, flush and spool.
pub const KILL_GRACE_SECONDS: f64 = 20.0;

fn terminal(s: v1::TaskState) -> bool {
    use v1::TaskState::*;
    !matches!(
        s,
        TaskStaging | TaskStarting | TaskRunning | TaskKilling | TaskUnreachable
    )
}

/// The framework's state.
#[derive(Debug, Clone)]
pub struct Core {
    spec: Spec,
    slots: BTreeMap<(Tier, u32), Slot>,
    next_task: u64,
    changed: bool,
}

impl Core {
    /// A core for `spec` with no tasks yet.
    pub fn new(spec: Spec) -> Core {
        let mut c = Core {
            spec,
            slots: BTreeMap::new(),
            next_task: 0,
            changed: true,
        };
        c.fill();
        c
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The slots, by tier and index.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    /// Whether the spec or a slot changed since the last call (to store).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Takes over stored slots (after a failover); answers the tasks to
    /// reconcile.
    pub fn import(&mut self, slots: Vec<Slot>, next_task: u64) -> Vec<(String, Option<String>)> {
        self.next_task = next_task;
        for s in slots {
            self.slots.insert((s.tier, s.index), s);
        }
        self.fill();
        self.slots
            .values()
            .filter_map(|s| s.task_id.clone().map(|t| (t, s.agent_id.clone())))
            .collect()
    }

    /// The task counter (stored with the slots).
    pub fn next_task(&self) -> u64 {
        self.next_task
    }

    fn fill(&mut self) {
        for t in Tier::ALL {
            for index in 0..self.spec.tier(t).count {
                self.slots.entry((t, index)).or_insert_with(|| Slot {
                    tier: t,
                    index,
                    state: SlotState::Waiting,
                    task_id: None,
                    agent_id: None,
                    host: None,
                    port: None,
                    generation: 0,
                    failures: 0,
                    next_launch_ms: 0,
                    running_since_ms: None,
                    healthy: false,
                    launches: 0,
                    last_message: None,
                });
            }
        }
    }

    /// Sets the instance counts (`None`: unchanged).
    pub fn scale(&mut self, api: Option<u32>, backend: Option<u32>) -> Result<Vec<Effect>, String> {
        for (t, n) in [(Tier::Api, api), (Tier::Backend, backend)] {
            if let Some(n) = n {
                if n > MAX_INSTANCES {
                    return Err(format!(
                        "{}={n}: at most {MAX_INSTANCES} instances",
                        t.name()
                    ));
                }
            }
        }
        let mut effects = Vec::new();
        for (t, n) in [(Tier::Api, api), (Tier::Backend, backend)] {
            let Some(n) = n else { continue };
            self.spec.tier_mut(t).count = n;
        }
        self.fill();
        // Slots above the count go.
        let extra: Vec<(Tier, u32)> = self
            .slots
            .keys()
            .filter(|(t, i)| *i >= self.spec.tier(*t).count)
            .copied()
            .collect();
        for key in extra {
            let slot = self.slots.get_mut(&key).expect("listed");
            match slot.state {
                SlotState::Waiting => {
                    self.slots.remove(&key);
                }
                SlotState::Killing => {}
                SlotState::Starting | SlotState::Running => {
                    slot.state = SlotState::Killing;
                    effects.push(Effect::Kill {
                        task_id: slot.task_id.clone().unwrap_or_default(),
                        agent_id: slot.agent_id.clone(),
                        grace_seconds: KILL_GRACE_SECONDS,
                    });
                }
            }
        }
        self.changed = true;
        effects.push(Effect::Revive);
        Ok(effects)
    }

    /// A new generation: every task is replaced, one slot per tier at a
    /// time. `binary` replaces the binary the tasks run.
    pub fn upgrade(&mut self, binary: Option<String>, now: i64) -> Vec<Effect> {
        self.spec.generation += 1;
        if let Some(b) = binary {
            self.spec.binary = b;
        }
        self.changed = true;
        self.tick(now)
    }

    /// Housekeeping: rolling replacement of outdated tasks.
    pub fn tick(&mut self, _now: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        for t in Tier::ALL {
            let count = self.spec.tier(t).count;
            let tier: Vec<&Slot> = self
                .slots
                .values()
                .filter(|s| s.tier == t && s.index < count)
                .collect();
            // One at a time: only while every slot of the tier runs and
            // passes its health check.
            let all_healthy = tier
                .iter()
                .all(|s| s.state == SlotState::Running && s.healthy);
            if !all_healthy {
                continue;
            }
            let outdated = tier
                .iter()
                .find(|s| s.generation < self.spec.generation)
                .map(|s| (s.tier, s.index));
            if let Some(key) = outdated {
                let slot = self.slots.get_mut(&key).expect("found");
                slot.state = SlotState::Killing;
                self.changed = true;
                effects.push(Effect::Kill {
                    task_id: slot.task_id.clone().unwrap_or_default(),
                    agent_id: slot.agent_id.clone(),
                    grace_seconds: KILL_GRACE_SECONDS,
                });
            }
        }
        effects
    }

    /// Whether some slot waits for an offer.
    pub fn wants_offers(&self) -> bool {
        self.slots.values().any(|s| s.state == SlotState::Waiting)
    }

    /// Launches waiting slots on the offers (spreading each tier over the
    /// agents), declines the rest.
    pub fn offers(&mut self, now: i64, offers: Vec<v1::Offer>) -> Vec<Effect> {
        let mut waiting: Vec<(Tier, u32)> = self
            .slots
            .values()
            .filter(|s| s.state == SlotState::Waiting && s.next_launch_ms <= now)
            .map(|s| (s.tier, s.index))
            .collect();
        waiting.sort_by_key(|(t, i)| (*i, *t));
        let mut rooms: Vec<(v1::Offer, Resources, Vec<v1::TaskInfo>)> = offers
            .into_iter()
            .map(|o| {
                let r = Resources::from_vec(&o.resources);
                (o, r, Vec::new())
            })
            .collect();
        for key in waiting {
            let (tier, index) = key;
            let ts = self.spec.tier(tier).clone();
            let need = Need {
                cpus: ts.cpus,
                mem: ts.mem,
                disk: 0.0,
                ports: 1,
            };
            // The agent with the fewest instances of this tier first.
            let on_agent = |agent: &str, slots: &BTreeMap<(Tier, u32), Slot>| {
                slots
                    .values()
                    .filter(|s| s.tier == tier && s.agent_id.as_deref() == Some(agent))
                    .count()
            };
            let mut order: Vec<usize> = (0..rooms.len()).collect();
            order.sort_by_key(|&i| on_agent(&rooms[i].0.agent_id.value, &self.slots));
            let Some((room, taken)) = order
                .into_iter()
                .find_map(|i| take(&rooms[i].1, &need).map(|(taken, left)| (i, (taken, left))))
            else {
                continue;
            };
            let (resources, left) = taken;
            rooms[room].1 = left;
            let port = corral_sdk::offers::ports_of(&resources)
                .first()
                .copied()
                .unwrap_or(0) as u16;
            self.next_task += 1;
            let task_id = format!("eventing-{}-{index}-{}", tier.name(), self.next_task);
            let offer = &rooms[room].0;
            let task = self.task_info(tier, index, &task_id, offer, resources, port);
            let slot = self.slots.get_mut(&key).expect("waiting slot");
            slot.state = SlotState::Starting;
            slot.task_id = Some(task_id.clone());
            slot.agent_id = Some(offer.agent_id.value.clone());
            slot.host = Some(offer.hostname.clone());
            slot.port = Some(port);
            slot.generation = self.spec.generation;
            slot.launches += 1;
            slot.running_since_ms = None;
            slot.healthy = false;
            self.changed = true;
            tracing::info!(tier = tier.name(), slot = index, %task_id, host = %offer.hostname, port, "launching an eventing task");
            rooms[room].2.push(task);
        }
        let mut effects = Vec::new();
        let mut declined = Vec::new();
        for (offer, _, tasks) in rooms {
            if tasks.is_empty() {
                declined.push(offer.id);
            } else {
                effects.push(Effect::Accept {
                    offer_id: offer.id,
                    operations: vec![v1::offer::Operation {
                        r#type: Some(v1::offer::operation::Type::Launch as i32),
                        launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                        ..Default::default()
                    }],
                });
            }
        }
        if !declined.is_empty() {
            effects.push(Effect::Decline {
                offer_ids: declined,
                refuse_seconds: if self.wants_offers() { 1.0 } else { 30.0 },
            });
        }
        effects
    }

    /// The arguments of a slot's task.
    pub fn arguments(&self, tier: Tier, index: u32, port: u16) -> Vec<String> {
        let mut args = vec![
            self.spec.binary.clone(),
            "eventing".to_string(),
            tier.name().to_string(),
        ];
        match tier {
            Tier::Api => {
                args.extend(self.spec.api_args.iter().cloned());
                args.push(format!("--node=api-{index}"));
            }
            Tier::Backend => {
                args.extend(self.spec.backend_args.iter().cloned());
                args.push(format!("--id=backend-{index}"));
                args.push(format!(
                    "--spool_dir={}/backend-{index}",
                    self.spec.spool_root.trim_end_matches('/')
                ));
            }
        }
        args.push(format!("--listen=0.0.0.0:{port}"));
        args
    }

    fn task_info(
        &self,
        tier: Tier,
        index: u32,
        task_id: &str,
        offer: &v1::Offer,
        resources: Vec<v1::Resource>,
        port: u16,
    ) -> v1::TaskInfo {
        let arguments = self.arguments(tier, index, port);
        v1::TaskInfo {
            name: format!("eventing-{}-{index}", tier.name()),
            task_id: v1::TaskId {
                value: task_id.to_owned(),
            },
            agent_id: offer.agent_id.clone(),
            resources,
            command: Some(v1::CommandInfo {
                shell: Some(false),
                value: Some(self.spec.binary.clone()),
                arguments,
                environment: Some(v1::Environment {
                    variables: vec![v1::environment::Variable {
                        name: "CORRAL_LOG".into(),
                        value: Some("info".into()),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            health_check: Some(self.health_check(tier, port)),
            kill_policy: Some(v1::KillPolicy {
                grace_period: Some(v1::DurationInfo {
                    nanoseconds: (KILL_GRACE_SECONDS * 1e9) as i64,
                }),
            }),
            ..Default::default()
        }
    }

    /// A slot's health check: `GET /health` on its port (a TCP connect for
    /// an API tier serving TLS), every second, 3 failures in a row kill it,
    /// failures in its first 30 s do not count.
    fn health_check(&self, tier: Tier, port: u16) -> v1::HealthCheck {
        let tls = tier == Tier::Api
            && self
                .spec
                .api_args
                .iter()
                .any(|a| a.starts_with("--tls_cert"));
        let mut hc = v1::HealthCheck {
            interval_seconds: Some(1.0),
            timeout_seconds: Some(3.0),
            consecutive_failures: Some(3),
            delay_seconds: Some(0.0),
            grace_period_seconds: Some(30.0),
            ..Default::default()
        };
        if tls {
            hc.r#type = Some(v1::health_check::Type::Tcp as i32);
            hc.tcp = Some(v1::health_check::TcpCheckInfo {
                port: u32::from(port),
                ..Default::default()
            });
        } else {
            hc.r#type = Some(v1::health_check::Type::Http as i32);
            hc.http = Some(v1::health_check::HttpCheckInfo {
                port: u32::from(port),
                path: Some("/health".into()),
                ..Default::default()
            });
        }
        hc
    }

    /// A task's status update.
    pub fn status(&mut self, now: i64, status: &v1::TaskStatus) -> Vec<Effect> {
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::TaskUnknown);
        let Some(key) = self
            .slots
            .iter()
            .find(|(_, s)| s.task_id.as_deref() == Some(status.task_id.value.as_str()))
            .map(|(k, _)| *k)
        else {
            // Not ours (any more): make sure it is gone.
            if !terminal(state) && status.task_id.value.starts_with("eventing-") {
                return vec![Effect::Kill {
                    task_id: status.task_id.value.clone(),
                    agent_id: status.agent_id.as_ref().map(|a| a.value.clone()),
                    grace_seconds: KILL_GRACE_SECONDS,
                }];
            }
            return Vec::new();
        };
        let count = self.spec.tier(key.0).count;
        let slot = self.slots.get_mut(&key).expect("found");
        self.changed = true;
        match state {
            v1::TaskState::TaskRunning => {
                if slot.state == SlotState::Starting {
                    slot.state = SlotState::Running;
                }
                slot.running_since_ms.get_or_insert(now);
                if let Some(h) = status.healthy {
                    slot.healthy = h;
                }
                Vec::new()
            }
            s if terminal(s) => {
                let ran = slot.running_since_ms.map_or(0, |t| now - t);
                let was = slot.state;
                slot.task_id = None;
                slot.running_since_ms = None;
                slot.healthy = false;
                slot.last_message = status.message.clone();
                if key.1 >= count {
                    self.slots.remove(&key);
                    return Vec::new();
                }
                slot.state = SlotState::Waiting;
                if was == SlotState::Killing {
                    // Replaced on purpose (upgrade): launch again now.
                    slot.next_launch_ms = now;
                } else {
                    if ran >= STABLE_MS {
                        slot.failures = 0;
                    }
                    slot.failures += 1;
                    let delay = (1000i64 << (slot.failures - 1).min(6)).min(MAX_BACKOFF_MS);
                    slot.next_launch_ms = now + delay;
                    tracing::warn!(
                        tier = key.0.name(),
                        slot = key.1,
                        state = s.as_str_name(),
                        failures = slot.failures,
                        delay_ms = delay,
                        "an eventing task ended; relaunching it after a delay"
                    );
                }
                vec![Effect::Revive]
            }
            _ => Vec::new(),
        }
    }

    /// The running, healthy API endpoints (`host:port`).
    pub fn api_endpoints(&self) -> Vec<String> {
        self.slots
            .values()
            .filter(|s| s.tier == Tier::Api && s.state == SlotState::Running && s.healthy)
            .filter_map(|s| Some(format!("{}:{}", s.host.as_ref()?, s.port?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            api: TierSpec {
                count: 2,
                cpus: 0.1,
                mem: 64.0,
            },
            backend: TierSpec {
                count: 2,
                cpus: 0.1,
                mem: 64.0,
            },
            generation: 1,
            binary: "/usr/bin/corral".into(),
            api_args: vec!["--amqp_url=amqp://x".into()],
            backend_args: vec!["--kafka_brokers=k:9092".into()],
            spool_root: "/var/lib/corral/eventing".into(),
        }
    }

    fn offer(id: &str, agent: &str, cpus: f64) -> v1::Offer {
        let scalar = |name: &str, v: f64| v1::Resource {
            name: name.into(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value: v }),
            ..Default::default()
        };
        v1::Offer {
            id: v1::OfferId { value: id.into() },
            agent_id: v1::AgentId {
                value: agent.into(),
            },
            hostname: format!("{agent}.example"),
            resources: vec![
                scalar("cpus", cpus),
                scalar("mem", 1024.0),
                v1::Resource {
                    name: "ports".into(),
                    r#type: v1::value::Type::Ranges as i32,
                    ranges: Some(v1::value::Ranges {
                        range: vec![v1::value::Range {
                            begin: 31000,
                            end: 31010,
                        }],
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn status(task: &str, state: v1::TaskState) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: v1::TaskId { value: task.into() },
            state: state as i32,
            ..Default::default()
        }
    }

    fn launched(effects: &[Effect]) -> Vec<v1::TaskInfo> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Accept { operations, .. } => Some(operations),
                _ => None,
            })
            .flatten()
            .filter_map(|o| o.launch.as_ref())
            .flat_map(|l| l.task_infos.clone())
            .collect()
    }

    fn run_all(c: &mut Core, now: i64) {
        let ids: Vec<String> = c.slots().filter_map(|s| s.task_id.clone()).collect();
        for id in ids {
            let mut st = status(&id, v1::TaskState::TaskRunning);
            st.healthy = Some(true);
            c.status(now, &st);
        }
    }

    #[test]
    fn launches_both_tiers_spread_over_agents() {
        let mut c = Core::new(spec());
        let effects = c.offers(0, vec![offer("o1", "a1", 4.0), offer("o2", "a2", 4.0)]);
        let tasks = launched(&effects);
        assert_eq!(tasks.len(), 4);
        let per_agent: BTreeMap<String, usize> = tasks.iter().fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t.agent_id.value.clone()).or_default() += 1;
            m
        });
        assert_eq!(per_agent.values().copied().collect::<Vec<_>>(), vec![2, 2]);
        let backend = tasks
            .iter()
            .find(|t| t.name == "eventing-backend-1")
            .expect("backend 1");
        let args = &backend.command.as_ref().unwrap().arguments;
        assert_eq!(&args[..3], &["/usr/bin/corral", "eventing", "backend"]);
        assert!(args.contains(&"--id=backend-1".to_string()), "{args:?}");
        assert!(args.contains(&"--spool_dir=/var/lib/corral/eventing/backend-1".to_string()));
        assert!(args.last().unwrap().starts_with("--listen=0.0.0.0:310"));
        assert!(!c.wants_offers());
    }

    #[test]
    fn a_failed_task_is_relaunched_after_a_backoff() {
        let mut c = Core::new(spec());
        c.offers(0, vec![offer("o1", "a1", 4.0)]);
        run_all(&mut c, 100);
        let id = c
            .slots()
            .find(|s| s.tier == Tier::Backend && s.index == 0)
            .and_then(|s| s.task_id.clone())
            .unwrap();
        assert_eq!(
            c.status(200, &status(&id, v1::TaskState::TaskFailed)),
            vec![Effect::Revive]
        );
        // Not before its delay.
        assert!(launched(&c.offers(500, vec![offer("o2", "a1", 4.0)])).is_empty());
        let again = launched(&c.offers(1200, vec![offer("o3", "a1", 4.0)]));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].name, "eventing-backend-0");
        assert_ne!(again[0].task_id.value, id);
        // A second failure waits twice as long.
        let id2 = again[0].task_id.value.clone();
        c.status(1300, &status(&id2, v1::TaskState::TaskRunning));
        c.status(1400, &status(&id2, v1::TaskState::TaskLost));
        assert!(launched(&c.offers(2500, vec![offer("o4", "a1", 4.0)])).is_empty());
        assert_eq!(
            launched(&c.offers(3500, vec![offer("o5", "a1", 4.0)])).len(),
            1
        );
    }

    #[test]
    fn scale_up_and_down() {
        let mut c = Core::new(spec());
        c.offers(0, vec![offer("o1", "a1", 8.0)]);
        run_all(&mut c, 10);
        let effects = c.scale(Some(1), Some(4)).unwrap();
        let kills: Vec<&Effect> = effects
            .iter()
            .filter(|e| matches!(e, Effect::Kill { .. }))
            .collect();
        assert_eq!(kills.len(), 1, "api-1 goes: {effects:?}");
        assert!(effects.contains(&Effect::Revive));
        let tasks = launched(&c.offers(20, vec![offer("o2", "a1", 8.0)]));
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["eventing-backend-2", "eventing-backend-3"]);
        // The killed api-1 is forgotten once its task ended.
        let api1 = c
            .slots()
            .find(|s| s.tier == Tier::Api && s.index == 1)
            .and_then(|s| s.task_id.clone())
            .unwrap();
        c.status(30, &status(&api1, v1::TaskState::TaskKilled));
        assert!(!c.slots().any(|s| s.tier == Tier::Api && s.index == 1));
        assert!(c.scale(Some(65), None).is_err());
        assert_eq!(c.spec().api.count, 1, "a refused scale changes nothing");
    }

    #[test]
    fn an_upgrade_replaces_one_slot_per_tier_at_a_time() {
        let mut c = Core::new(spec());
        c.offers(0, vec![offer("o1", "a1", 8.0)]);
        run_all(&mut c, 10);
        let effects = c.upgrade(Some("/opt/corral-2".into()), 20);
        let kills: Vec<String> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Kill { task_id, .. } => Some(task_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(kills.len(), 2, "one per tier: {effects:?}");
        // Nothing more until those are replaced, running and healthy.
        assert!(c.tick(30).is_empty());
        for k in &kills {
            c.status(40, &status(k, v1::TaskState::TaskKilled));
        }
        let tasks = launched(&c.offers(50, vec![offer("o2", "a1", 8.0)]));
        assert_eq!(tasks.len(), 2);
        assert!(tasks
            .iter()
            .all(|t| t.command.as_ref().unwrap().arguments[0] == "/opt/corral-2"));
        let new_ids: Vec<String> = tasks.iter().map(|t| t.task_id.value.clone()).collect();
        for id in &new_ids {
            c.status(55, &status(id, v1::TaskState::TaskRunning));
        }
        assert!(c.tick(56).is_empty(), "running but not yet healthy: wait");
        run_all(&mut c, 60);
        let next = c.tick(70);
        assert_eq!(next.len(), 2, "the second slot of each tier: {next:?}");
        assert!(c
            .slots()
            .filter(|s| s.generation == 2)
            .all(|s| s.index == 0));
    }

    #[test]
    fn unknown_running_tasks_are_killed() {
        let mut c = Core::new(spec());
        let e = c.status(0, &status("eventing-api-9-99", v1::TaskState::TaskRunning));
        assert!(matches!(e.as_slice(), [Effect::Kill { .. }]));
        assert!(c
            .status(0, &status("someone-else", v1::TaskState::TaskRunning))
            .is_empty());
    }
}

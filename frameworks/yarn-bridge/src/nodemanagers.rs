//! The pure core of the bridge: NodeManagers flexed up and down, placed on
//! offers, and drained through YARN's graceful decommission before their
//! tasks are killed.
//!
//! [`NodeManagers`] is plain state; its methods take the time and return
//! [`Command`]s for the shell (launch on an offer, decommission a node in
//! YARN, kill a task). A NodeManager waiting for an offer says why
//! ([`NodeManagers::why_pending`]); one whose task fails is launched again;
//! one being flexed down is decommissioned in YARN first and killed once
//! YARN reports it DECOMMISSIONED or the decommission timeout passes.

use std::collections::{BTreeMap, BTreeSet};

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{allocation_role, ports_of, take, Need, Placement};

use crate::myriad::{task_id, Flex, LikeConstraint, State};
use crate::nmconfig::NmPorts;
use crate::profiles::Profiles;

/// Where a NodeManager is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for an offer.
    Pending,
    /// Launched, not running yet.
    Staging,
    /// Running.
    Active,
    /// Being decommissioned in YARN (since the time, in ms).
    Decommissioning {
        /// When the decommission was asked for (ms since the epoch).
        since_ms: i64,
    },
    /// Being killed.
    Killing,
}

/// One NodeManager.
#[derive(Debug, Clone)]
pub struct NodeManager {
    /// Its task id (`nm.<profile>.<id>`).
    pub task_id: String,
    /// Its profile.
    pub profile: String,
    /// Where it may run.
    pub constraints: Vec<LikeConstraint>,
    /// Where it is.
    pub phase: Phase,
    /// Its agent, once placed.
    pub agent_id: Option<String>,
    /// Its agent's hostname, once placed.
    pub hostname: Option<String>,
    /// Its four ports, once placed.
    pub ports: Option<NmPorts>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Launch a NodeManager on an offer with these resources.
    Launch {
        /// The offer.
        offer_id: v1::OfferId,
        /// Its agent.
        agent_id: v1::AgentId,
        /// The NodeManager's task id.
        task_id: String,
        /// Its profile.
        profile: String,
        /// The resources taken (cpus, mem, four ports).
        resources: Vec<v1::Resource>,
        /// The ports among them.
        ports: NmPorts,
    },
    /// Ask YARN to decommission the node gracefully within `timeout_secs`
    /// (exclude file + `yarn rmadmin -refreshNodes -g <secs>`).
    Decommission {
        /// The node's host.
        hostname: String,
        /// The graceful timeout.
        timeout_secs: u64,
    },
    /// Kill a NodeManager's task.
    Kill {
        /// The task.
        task_id: String,
        /// Its agent.
        agent_id: Option<String>,
    },
}

/// A NodeManager as the shell stores it (`nodemanagers/<task id>`), so a
/// restarted bridge or a new leader takes it over.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredNodeManager {
    /// Its task id.
    pub task_id: String,
    /// Its profile.
    pub profile: String,
    /// Its constraints as written.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// `PENDING`, `STAGING`, `ACTIVE`, `DECOMMISSIONING` or `KILLING`.
    pub phase: String,
    /// When a decommission was asked for (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decommission_since_ms: Option<i64>,
    /// Its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Its agent's hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Its ports: rpc, localizer, webapp, shuffle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<[u64; 4]>,
}

impl Phase {
    /// The phase's name in the API.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Staging => "STAGING",
            Phase::Active => "ACTIVE",
            Phase::Decommissioning { .. } => "DECOMMISSIONING",
            Phase::Killing => "KILLING",
        }
    }
}

impl NodeManager {
    /// The stored form.
    pub fn export(&self) -> StoredNodeManager {
        StoredNodeManager {
            task_id: self.task_id.clone(),
            profile: self.profile.clone(),
            constraints: self.constraints.iter().map(LikeConstraint::text).collect(),
            phase: self.phase.name().to_string(),
            decommission_since_ms: match self.phase {
                Phase::Decommissioning { since_ms } => Some(since_ms),
                _ => None,
            },
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            ports: self
                .ports
                .map(|p| [p.rpc, p.localizer, p.webapp, p.shuffle]),
        }
    }

    /// Back from the stored form (an unreadable one is refused).
    pub fn import(s: &StoredNodeManager) -> Result<Self, String> {
        let phase = match (s.phase.as_str(), s.decommission_since_ms) {
            ("PENDING", _) => Phase::Pending,
            ("STAGING", _) => Phase::Staging,
            ("ACTIVE", _) => Phase::Active,
            ("DECOMMISSIONING", Some(since_ms)) => Phase::Decommissioning { since_ms },
            ("KILLING", _) => Phase::Killing,
            (other, _) => return Err(format!("phase {other:?}")),
        };
        let constraints = s
            .constraints
            .iter()
            .map(|c| LikeConstraint::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            task_id: s.task_id.clone(),
            profile: s.profile.clone(),
            constraints,
            phase,
            agent_id: s.agent_id.clone(),
            hostname: s.hostname.clone(),
            ports: s.ports.and_then(|p| NmPorts::from_slice(&p)),
        })
    }
}

/// Every NodeManager of the bridge.
#[derive(Debug, Clone)]
pub struct NodeManagers {
    profiles: Profiles,
    nms: BTreeMap<String, NodeManager>,
    /// At most one NodeManager per host (the default).
    one_per_host: bool,
    /// How long YARN has to drain a node being flexed down.
    decommission_timeout_secs: u64,
    why_pending: BTreeMap<String, String>,
    /// NodeManagers whose task failed: failures in a row, the earliest
    /// relaunch (ms), and when the current attempt started running.
    retries: BTreeMap<String, Retry>,
}

/// A NodeManager's relaunches after failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Retry {
    failures: u32,
    not_before_ms: i64,
    running_since_ms: Option<i64>,
}

/// The first relaunch delay of a failed NodeManager.
pub const RELAUNCH_BACKOFF_START_MS: i64 = 1_000;
/// The longest.
pub const RELAUNCH_BACKOFF_MAX_MS: i64 = 60_000;
/// A NodeManager that ran this long before failing starts its backoff
/// over.
pub const RELAUNCH_RESET_MS: i64 = 300_000;

impl NodeManagers {
    /// None yet.
    pub fn new(profiles: Profiles, one_per_host: bool, decommission_timeout_secs: u64) -> Self {
        Self {
            profiles,
            nms: BTreeMap::new(),
            one_per_host,
            decommission_timeout_secs,
            why_pending: BTreeMap::new(),
            retries: BTreeMap::new(),
        }
    }

    /// The profiles.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Every NodeManager.
    pub fn all(&self) -> impl Iterator<Item = &NodeManager> {
        self.nms.values()
    }

    /// One NodeManager.
    pub fn get(&self, task_id: &str) -> Option<&NodeManager> {
        self.nms.get(task_id)
    }

    /// Takes over a stored NodeManager (a restarted bridge or a new
    /// leader); the shell reconciles its task with the master.
    pub fn adopt(&mut self, nm: NodeManager) {
        self.nms.insert(nm.task_id.clone(), nm);
    }

    /// Adds `flex.instances` pending NodeManagers of its profile, with task
    /// ids made from `unique` (one value each); returns their ids.
    pub fn flex_up(&mut self, flex: &Flex, unique: &mut dyn FnMut() -> String) -> Vec<String> {
        let profile = flex.profile.clone().unwrap_or_else(|| "medium".into());
        (0..flex.instances)
            .map(|_| {
                let id = task_id(&profile, &unique());
                self.nms.insert(
                    id.clone(),
                    NodeManager {
                        task_id: id.clone(),
                        profile: profile.clone(),
                        constraints: flex.constraints.clone(),
                        phase: Phase::Pending,
                        agent_id: None,
                        hostname: None,
                        ports: None,
                    },
                );
                id
            })
            .collect()
    }

    /// Flexes down `flex.instances` NodeManagers (of its profile, on hosts
    /// its constraints match): pending ones first (dropped), then running
    /// ones with the fewest running YARN containers (`containers`, by
    /// host, from the ResourceManager's nodes), which YARN decommissions
    /// gracefully before they are killed. More than there are is refused,
    /// with nothing changed.
    pub fn flex_down(
        &mut self,
        flex: &Flex,
        containers: &BTreeMap<String, u64>,
        now_ms: i64,
    ) -> Result<Vec<Command>, String> {
        let matches = |nm: &NodeManager| {
            flex.profile.as_ref().is_none_or(|p| *p == nm.profile)
                && flex.constraints.iter().all(|c| {
                    nm.hostname.as_ref().is_some_and(|h| {
                        // Attributes are not kept: only hostnames are
                        // matched on flex down.
                        c.field != "hostname" || c.pattern.is_match(h)
                    })
                })
        };
        let mut pending: Vec<String> = self
            .nms
            .values()
            .filter(|nm| nm.phase == Phase::Pending)
            .filter(|nm| flex.profile.as_ref().is_none_or(|p| *p == nm.profile))
            .map(|nm| nm.task_id.clone())
            .collect();
        let mut running: Vec<(u64, String)> = self
            .nms
            .values()
            .filter(|nm| matches!(nm.phase, Phase::Staging | Phase::Active))
            .filter(|nm| matches(nm))
            .map(|nm| {
                let load = nm
                    .hostname
                    .as_ref()
                    .and_then(|h| containers.get(h))
                    .copied()
                    .unwrap_or(0);
                (load, nm.task_id.clone())
            })
            .collect();
        let wanted = flex.instances as usize;
        if wanted > pending.len() + running.len() {
            return Err(format!(
                "instances: {wanted} asked, but only {} NodeManager(s){} can be flexed down",
                pending.len() + running.len(),
                flex.profile
                    .as_ref()
                    .map(|p| format!(" of profile {p}"))
                    .unwrap_or_default()
            ));
        }
        let mut out = Vec::new();
        pending.truncate(wanted);
        for id in &pending {
            self.nms.remove(id);
            self.why_pending.remove(id);
            self.retries.remove(id);
        }
        running.sort();
        for (_, id) in running.into_iter().take(wanted - pending.len()) {
            if let Some(nm) = self.nms.get_mut(&id) {
                match (&nm.hostname, nm.phase) {
                    (Some(host), Phase::Active) => {
                        nm.phase = Phase::Decommissioning { since_ms: now_ms };
                        out.push(Command::Decommission {
                            hostname: host.clone(),
                            timeout_secs: self.decommission_timeout_secs,
                        });
                    }
                    _ => {
                        // Not registered with YARN yet: nothing to drain.
                        nm.phase = Phase::Killing;
                        out.push(Command::Kill {
                            task_id: id.clone(),
                            agent_id: nm.agent_id.clone(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// YARN's state of the node on `hostname` (`DECOMMISSIONED`, ...): a
    /// decommissioned node's NodeManager is killed.
    pub fn node_state(&mut self, hostname: &str, state: &str) -> Vec<Command> {
        let mut out = Vec::new();
        if state != "DECOMMISSIONED" {
            return out;
        }
        for nm in self.nms.values_mut() {
            if nm.hostname.as_deref() == Some(hostname)
                && matches!(nm.phase, Phase::Decommissioning { .. })
            {
                nm.phase = Phase::Killing;
                out.push(Command::Kill {
                    task_id: nm.task_id.clone(),
                    agent_id: nm.agent_id.clone(),
                });
            }
        }
        out
    }

    /// Decommissions that ran past their timeout (with a margin for YARN
    /// to report) end in a kill.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Command> {
        let limit = (self.decommission_timeout_secs as i64 + 5) * 1000;
        let mut out = Vec::new();
        for nm in self.nms.values_mut() {
            if let Phase::Decommissioning { since_ms } = nm.phase {
                if now_ms - since_ms >= limit {
                    nm.phase = Phase::Killing;
                    out.push(Command::Kill {
                        task_id: nm.task_id.clone(),
                        agent_id: nm.agent_id.clone(),
                    });
                }
            }
        }
        out
    }

    /// A NodeManager task's state at `now_ms`: running makes it active; a
    /// task that ends while being flexed down is gone; one that ends
    /// otherwise waits for an offer again, relaunched no sooner than a
    /// backoff of 1 s doubling to 60 s after failures in a row (so a
    /// NodeManager YARN keeps refusing does not crash-loop).
    pub fn update(&mut self, task_id: &str, state: v1::TaskState, now_ms: i64) {
        use v1::TaskState as S;
        let Some(nm) = self.nms.get_mut(task_id) else {
            return;
        };
        match state {
            S::TaskStaging | S::TaskStarting => {}
            S::TaskRunning => {
                if nm.phase == Phase::Staging || nm.phase == Phase::Pending {
                    nm.phase = Phase::Active;
                    self.retries
                        .entry(task_id.to_string())
                        .or_default()
                        .running_since_ms = Some(now_ms);
                }
            }
            S::TaskKilling => {}
            _ => {
                if matches!(nm.phase, Phase::Killing | Phase::Decommissioning { .. }) {
                    self.nms.remove(task_id);
                    self.retries.remove(task_id);
                } else {
                    nm.phase = Phase::Pending;
                    nm.agent_id = None;
                    nm.hostname = None;
                    nm.ports = None;
                    let r = self.retries.entry(task_id.to_string()).or_default();
                    if r.running_since_ms
                        .is_some_and(|t| now_ms - t >= RELAUNCH_RESET_MS)
                    {
                        r.failures = 0;
                    }
                    r.failures += 1;
                    r.running_since_ms = None;
                    let delay = (RELAUNCH_BACKOFF_START_MS << (r.failures - 1).min(16))
                        .min(RELAUNCH_BACKOFF_MAX_MS);
                    r.not_before_ms = now_ms + delay;
                    self.why_pending.insert(
                        task_id.to_string(),
                        format!(
                            "its task ended ({}) {} time(s) in a row; relaunched after a {} s backoff",
                            state.as_str_name(),
                            r.failures,
                            delay / 1000
                        ),
                    );
                }
            }
        }
    }

    /// Why a pending NodeManager has not been placed, if it was offered
    /// anything.
    pub fn why_pending(&self, task_id: &str) -> Option<&str> {
        self.why_pending.get(task_id).map(String::as_str)
    }

    /// Places pending NodeManagers on `offers`: the profile's resources plus
    /// the NodeManager's overhead and four ports, where the constraints
    /// match, one per host unless configured otherwise.
    pub fn offers(&mut self, offers: &[v1::Offer], now_ms: i64) -> Vec<Command> {
        let mut out = Vec::new();
        let mut hosts: BTreeSet<String> = self
            .nms
            .values()
            .filter(|nm| nm.phase != Phase::Pending)
            .filter_map(|nm| nm.hostname.clone())
            .collect();
        let mut left: Vec<Resources> = offers
            .iter()
            .map(|o| {
                let role = o.resources.first().map(allocation_role).unwrap_or("*");
                let r: Vec<v1::Resource> = o
                    .resources
                    .iter()
                    .filter(|r| allocation_role(r) == role && r.disk.is_none())
                    .cloned()
                    .collect();
                Resources::from_vec(&r)
            })
            .collect();
        let pending: Vec<String> = self
            .nms
            .values()
            .filter(|nm| nm.phase == Phase::Pending)
            .filter(|nm| {
                self.retries
                    .get(&nm.task_id)
                    .is_none_or(|r| r.not_before_ms <= now_ms)
            })
            .map(|nm| nm.task_id.clone())
            .collect();
        for id in pending {
            let Some(nm) = self.nms.get(&id).cloned() else {
                continue;
            };
            let Ok((cpus, mem)) = self.profiles.task_resources(&nm.profile) else {
                self.why_pending.insert(
                    id.clone(),
                    format!("profile {} is not configured", nm.profile),
                );
                continue;
            };
            let need = Need {
                cpus,
                mem,
                disk: 0.0,
                ports: 4,
            };
            let mut reasons = Vec::new();
            let mut placed = false;
            for (i, offer) in offers.iter().enumerate() {
                let here = Placement::of_offer(offer);
                if self.one_per_host && hosts.contains(&offer.hostname) {
                    reasons.push(format!(
                        "{}: a NodeManager runs there already",
                        offer.hostname
                    ));
                    continue;
                }
                if let Some(c) = nm
                    .constraints
                    .iter()
                    .find(|c| c.to_sdk().admits(&here, &[], &[]).is_err())
                {
                    reasons.push(format!(
                        "{}: {} does not match {}",
                        offer.hostname,
                        c.field,
                        c.pattern.as_str()
                    ));
                    continue;
                }
                let Some((taken, rest)) = take(&left[i], &need) else {
                    reasons.push(format!(
                        "{}: not enough for profile {} (cpus {cpus}, mem {mem}, 4 ports)",
                        offer.hostname, nm.profile
                    ));
                    continue;
                };
                let Some(ports) = NmPorts::from_slice(&ports_of(&taken)) else {
                    continue;
                };
                left[i] = rest;
                hosts.insert(offer.hostname.clone());
                if let Some(n) = self.nms.get_mut(&id) {
                    n.phase = Phase::Staging;
                    n.agent_id = Some(offer.agent_id.value.clone());
                    n.hostname = Some(offer.hostname.clone());
                    n.ports = Some(ports);
                }
                self.why_pending.remove(&id);
                out.push(Command::Launch {
                    offer_id: offer.id.clone(),
                    agent_id: offer.agent_id.clone(),
                    task_id: id.clone(),
                    profile: nm.profile.clone(),
                    resources: taken,
                    ports,
                });
                placed = true;
                break;
            }
            if !placed && !reasons.is_empty() {
                self.why_pending.insert(id.clone(), reasons.join("; "));
            }
        }
        out
    }

    /// Myriad's `/api/state`.
    pub fn state(&self) -> State {
        let mut s = State::default();
        for nm in self.nms.values() {
            let list = match nm.phase {
                Phase::Pending => &mut s.pending_tasks,
                Phase::Staging => &mut s.staging_tasks,
                Phase::Active => &mut s.active_tasks,
                Phase::Decommissioning { .. } | Phase::Killing => &mut s.killable_tasks,
            };
            list.push(nm.task_id.clone());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::myriad::FlexRequest;

    fn offer(n: usize, host: &str) -> v1::Offer {
        let resources =
            corral_api::resources::parse("cpus:16;mem:32768;ports:[31000-31009]").expect("r");
        v1::Offer {
            id: v1::OfferId {
                value: format!("o{n}"),
            },
            agent_id: v1::AgentId {
                value: format!("a{n}"),
            },
            hostname: host.into(),
            resources,
            ..Default::default()
        }
    }

    fn flex(doc: serde_json::Value, up: bool) -> Flex {
        serde_json::from_value::<FlexRequest>(doc)
            .expect("json")
            .validate(&Profiles::default(), up)
            .expect("valid")
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("u{n}")
        }
    }

    #[test]
    fn flex_up_places_one_per_host_where_the_constraints_match() {
        let mut nms = NodeManagers::new(Profiles::default(), true, 60);
        let mut unique = ids();
        let up = flex(
            serde_json::json!({"instances": 3, "profile": "medium",
                               "constraints": ["hostname LIKE host[12]"]}),
            true,
        );
        let ids = nms.flex_up(&up, &mut unique);
        assert_eq!(ids, ["nm.medium.u1", "nm.medium.u2", "nm.medium.u3"]);
        let launches = nms.offers(
            &[offer(1, "host1"), offer(2, "host2"), offer(3, "host3")],
            0,
        );
        assert_eq!(launches.len(), 2, "host3 does not match; one per host");
        let Command::Launch {
            resources, ports, ..
        } = &launches[0]
        else {
            panic!("a launch");
        };
        assert_eq!(ports.rpc, 31000);
        let cpus: f64 = resources
            .iter()
            .filter(|r| r.name == "cpus")
            .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
            .sum();
        assert!((cpus - 4.2).abs() < 1e-9, "profile + overhead: {cpus}");
        let state = nms.state();
        assert_eq!(state.staging_tasks.len(), 2);
        assert_eq!(state.pending_tasks, ["nm.medium.u3"]);
        let why = nms.why_pending("nm.medium.u3").expect("a reason");
        assert!(why.contains("host3: hostname does not match"), "{why}");
        assert!(why.contains("a NodeManager runs there already"), "{why}");
    }

    #[test]
    fn flex_down_drops_pending_then_decommissions_the_least_busy() {
        let mut nms = NodeManagers::new(Profiles::default(), true, 30);
        let mut unique = ids();
        nms.flex_up(
            &flex(
                serde_json::json!({"instances": 3, "profile": "small"}),
                true,
            ),
            &mut unique,
        );
        nms.offers(&[offer(1, "host1"), offer(2, "host2")], 0);
        for id in ["nm.small.u1", "nm.small.u2"] {
            nms.update(id, v1::TaskState::TaskRunning, 0);
        }
        assert_eq!(nms.state().active_tasks.len(), 2);
        let too_many = flex(serde_json::json!({"instances": 4}), false);
        let e = nms
            .flex_down(&too_many, &BTreeMap::new(), 0)
            .expect_err("only 3");
        assert!(e.starts_with("instances: 4 asked"), "{e}");
        assert_eq!(nms.state().active_tasks.len(), 2, "nothing changed");

        let busy: BTreeMap<String, u64> =
            [("host1".to_string(), 7), ("host2".to_string(), 1)].into();
        let cmds = nms
            .flex_down(
                &flex(serde_json::json!({"instances": 2}), false),
                &busy,
                1_000,
            )
            .expect("flex down");
        // The pending one goes first, then host2 (1 container) is drained.
        assert_eq!(
            cmds,
            vec![Command::Decommission {
                hostname: "host2".into(),
                timeout_secs: 30
            }]
        );
        assert_eq!(nms.state().pending_tasks.len(), 0);
        assert_eq!(nms.state().killable_tasks, ["nm.small.u2"]);
        // Killed once YARN reports the node decommissioned...
        assert!(nms.node_state("host2", "DECOMMISSIONING").is_empty());
        let kills = nms.node_state("host2", "DECOMMISSIONED");
        assert!(matches!(&kills[..], [Command::Kill { task_id, .. }] if task_id == "nm.small.u2"));
        nms.update("nm.small.u2", v1::TaskState::TaskKilled, 0);
        assert_eq!(nms.state().active_tasks, ["nm.small.u1"]);
        assert!(nms.state().killable_tasks.is_empty());
    }

    #[test]
    fn a_decommission_that_times_out_ends_in_a_kill_and_a_failed_nm_is_relaunched() {
        let mut nms = NodeManagers::new(Profiles::default(), true, 10);
        let mut unique = ids();
        nms.flex_up(
            &flex(serde_json::json!({"instances": 2, "profile": "zero"}), true),
            &mut unique,
        );
        nms.offers(&[offer(1, "host1"), offer(2, "host2")], 0);
        nms.update("nm.zero.u1", v1::TaskState::TaskRunning, 0);
        nms.update("nm.zero.u2", v1::TaskState::TaskRunning, 0);
        nms.flex_down(
            &flex(serde_json::json!({"instances": 1}), false),
            &BTreeMap::new(),
            0,
        )
        .expect("flex down");
        assert!(nms.tick(14_000).is_empty());
        assert_eq!(nms.tick(15_000).len(), 1);
        // The other one fails: it waits for an offer again, and is placed
        // after its backoff, which doubles while it keeps failing.
        nms.update("nm.zero.u2", v1::TaskState::TaskFailed, 20_000);
        assert_eq!(nms.state().pending_tasks, ["nm.zero.u2"]);
        assert!(nms.offers(&[offer(3, "host3")], 20_500).is_empty());
        assert!(nms
            .why_pending("nm.zero.u2")
            .is_some_and(|w| w.contains("1 time(s) in a row")));
        assert_eq!(nms.offers(&[offer(3, "host3")], 21_000).len(), 1);
        nms.update("nm.zero.u2", v1::TaskState::TaskRunning, 22_000);
        nms.update("nm.zero.u2", v1::TaskState::TaskFailed, 23_000);
        assert!(
            nms.offers(&[offer(3, "host3")], 24_500).is_empty(),
            "2 s now"
        );
        assert_eq!(nms.offers(&[offer(3, "host3")], 25_000).len(), 1);
        // One that ran five minutes starts over at 1 s.
        nms.update("nm.zero.u2", v1::TaskState::TaskRunning, 26_000);
        nms.update("nm.zero.u2", v1::TaskState::TaskFailed, 326_000);
        assert_eq!(nms.offers(&[offer(3, "host3")], 327_000).len(), 1);
    }
}

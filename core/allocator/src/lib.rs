//! Corral's allocator: Dominant Resource Fairness as a pure state machine.
//!
//! No async, no clock, no I/O. The master feeds it events (agents and
//! frameworks coming and going, resources recovered, filters, suppress and
//! revive) and calls [`Allocator::allocate`] with the current time; it gets
//! back the allocations to turn into offers. Everything is deterministic,
//! so the allocator is tested and benchmarked without sockets.
//!
//! This is plain DRF across frameworks: each free agent goes to the active,
//! unfiltered, unsuppressed framework with the lowest dominant share.
//! Resources reserved for a role are only allocated to frameworks of that
//! role.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use corral_api::resources::{self, Resources};

/// Resources of which dominant shares are computed.
const SHARE_RESOURCES: &[&str] = &["cpus", "mem", "disk", "gpus"];

/// Default `refuse_seconds` of a decline filter.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);
/// Mesos caps filters at 365 days.
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The smallest offer worth making (Mesos' default
/// `--min_allocatable_resources` is `cpus:0.01|mem:32`).
#[derive(Clone, Debug)]
pub struct MinAllocatable {
    /// Alternatives; an offer qualifies when it meets any one of them.
    pub alternatives: Vec<Vec<(String, f64)>>,
}

impl Default for MinAllocatable {
    fn default() -> Self {
        Self {
            alternatives: vec![vec![("cpus".into(), 0.01)], vec![("mem".into(), 32.0)]],
        }
    }
}

impl MinAllocatable {
    fn admits(&self, r: &Resources) -> bool {
        self.alternatives
            .iter()
            .any(|alt| alt.iter().all(|(name, min)| r.scalar(name) >= *min))
    }
}

/// One allocation decision: offer `resources` of `agent` to `framework`,
/// allocated to `role`.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    /// The framework to offer to.
    pub framework: String,
    /// The agent the resources are on.
    pub agent: String,
    /// The role the resources are allocated to.
    pub role: String,
    /// What is offered (without allocation info).
    pub resources: Resources,
}

#[derive(Clone, Debug)]
struct AgentEntry {
    total: Resources,
    allocated: Resources,
    active: bool,
}

#[derive(Clone, Debug)]
struct FrameworkEntry {
    roles: Vec<String>,
    active: bool,
    suppressed: bool,
    /// Allocated resources, per agent.
    allocated: HashMap<String, Resources>,
    /// Agent id -> time the decline filter expires.
    filters: HashMap<String, Duration>,
}

impl FrameworkEntry {
    fn total_allocated(&self) -> Resources {
        let mut all = Resources::new();
        for r in self.allocated.values() {
            all.add_all(r);
        }
        all
    }
}

/// The DRF allocator.
#[derive(Clone, Debug, Default)]
pub struct Allocator {
    agents: BTreeMap<String, AgentEntry>,
    frameworks: BTreeMap<String, FrameworkEntry>,
    min_allocatable: MinAllocatable,
    /// Agents whose free resources changed since the last allocation.
    dirty: BTreeSet<String>,
}

impl Allocator {
    /// A new allocator with the given minimum allocatable resources.
    pub fn new(min_allocatable: MinAllocatable) -> Self {
        Self {
            min_allocatable,
            ..Self::default()
        }
    }

    /// Adds an agent with its total resources and what is already in use
    /// on it (per framework), e.g. on re-registration.
    pub fn add_agent(&mut self, agent: &str, total: Resources, used: &[(String, Resources)]) {
        let mut allocated = Resources::new();
        for (fw, r) in used {
            let r = r.unallocated();
            allocated.add_all(&r);
            if let Some(f) = self.frameworks.get_mut(fw) {
                f.allocated
                    .entry(agent.to_string())
                    .or_default()
                    .add_all(&r);
            }
        }
        self.agents.insert(
            agent.to_string(),
            AgentEntry {
                total: total.unallocated(),
                allocated,
                active: true,
            },
        );
        self.dirty.insert(agent.to_string());
    }

    /// Removes an agent; whatever was allocated on it is forgotten.
    pub fn remove_agent(&mut self, agent: &str) {
        self.agents.remove(agent);
        self.dirty.remove(agent);
        for f in self.frameworks.values_mut() {
            f.allocated.remove(agent);
            f.filters.remove(agent);
        }
    }

    /// Stops (or resumes) offering an agent's resources.
    pub fn set_agent_active(&mut self, agent: &str, active: bool) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.active = active;
            if active {
                self.dirty.insert(agent.to_string());
            }
        }
    }

    /// Whether the agent is known.
    pub fn has_agent(&self, agent: &str) -> bool {
        self.agents.contains_key(agent)
    }

    /// Adds a framework subscribed to `roles`.
    pub fn add_framework(&mut self, framework: &str, roles: Vec<String>, active: bool) {
        let entry = self
            .frameworks
            .entry(framework.to_string())
            .or_insert_with(|| FrameworkEntry {
                roles: roles.clone(),
                active,
                suppressed: false,
                allocated: HashMap::new(),
                filters: HashMap::new(),
            });
        entry.roles = roles;
        entry.active = active;
        self.dirty.extend(self.agents.keys().cloned());
    }

    /// Updates a framework's roles.
    pub fn update_framework(&mut self, framework: &str, roles: Vec<String>) {
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.roles = roles;
            self.dirty.extend(self.agents.keys().cloned());
        }
    }

    /// Removes a framework, recovering everything allocated to it.
    pub fn remove_framework(&mut self, framework: &str) {
        if let Some(f) = self.frameworks.remove(framework) {
            for (agent, r) in f.allocated {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.allocated.subtract_all(&r);
                    self.dirty.insert(agent);
                }
            }
        }
    }

    /// Activates or deactivates a framework (a disconnected framework gets
    /// no offers but keeps its allocation).
    pub fn set_framework_active(&mut self, framework: &str, active: bool) {
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.active = active;
            if active {
                self.dirty.extend(self.agents.keys().cloned());
            }
        }
    }

    /// Stops offers to a framework until it revives.
    pub fn suppress(&mut self, framework: &str) {
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.suppressed = true;
        }
    }

    /// Clears a framework's filters and suppression.
    pub fn revive(&mut self, framework: &str) {
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.suppressed = false;
            f.filters.clear();
            self.dirty.extend(self.agents.keys().cloned());
        }
    }

    /// Records that `framework` uses `resources` on `agent` (used when
    /// agents re-register with running tasks).
    pub fn allocate_used(&mut self, framework: &str, agent: &str, resources: &Resources) {
        let r = resources.unallocated();
        if let Some(a) = self.agents.get_mut(agent) {
            a.allocated.add_all(&r);
        }
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.allocated
                .entry(agent.to_string())
                .or_default()
                .add_all(&r);
        }
    }

    /// Returns resources to the pool: declined, unused or freed by
    /// terminal tasks. `filter` installs a decline filter until `now + d`
    /// (capped at 365 days).
    pub fn recover(
        &mut self,
        framework: &str,
        agent: &str,
        resources: &Resources,
        filter: Option<(Duration, Duration)>,
    ) {
        let r = resources.unallocated();
        if let Some(a) = self.agents.get_mut(agent) {
            a.allocated.subtract_all(&r);
            self.dirty.insert(agent.to_string());
        }
        if let Some(f) = self.frameworks.get_mut(framework) {
            if let Some(alloc) = f.allocated.get_mut(agent) {
                alloc.subtract_all(&r);
                if alloc.is_empty() {
                    f.allocated.remove(agent);
                }
            }
            if let Some((now, refuse)) = filter {
                if !refuse.is_zero() {
                    f.filters
                        .insert(agent.to_string(), now + refuse.min(MAX_REFUSE));
                }
            }
        }
    }

    /// Number of decline filters in force at `now`.
    pub fn active_filters(&self, now: Duration) -> usize {
        self.frameworks
            .values()
            .map(|f| f.filters.values().filter(|t| **t > now).count())
            .sum()
    }

    fn cluster_totals(&self) -> BTreeMap<&'static str, f64> {
        let mut totals = BTreeMap::new();
        for a in self.agents.values() {
            for name in SHARE_RESOURCES {
                *totals.entry(*name).or_insert(0.0) += a.total.scalar(name);
            }
        }
        totals
    }

    /// The dominant share of a framework (0.0 ..= 1.0).
    pub fn dominant_share(&self, framework: &str) -> f64 {
        let totals = self.cluster_totals();
        self.frameworks
            .get(framework)
            .map(|f| share_of(&f.total_allocated(), &totals))
            .unwrap_or(0.0)
    }

    /// Free resources of an agent.
    pub fn available(&self, agent: &str) -> Resources {
        self.agents
            .get(agent)
            .map(|a| {
                let mut free = a.total.clone();
                free.subtract_all(&a.allocated);
                free
            })
            .unwrap_or_default()
    }

    /// Runs an allocation cycle over every agent at time `now`.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        let agents: Vec<String> = self.agents.keys().cloned().collect();
        self.dirty.clear();
        self.allocate_agents(now, &agents)
    }

    /// Allocates only the agents whose free resources changed since the
    /// last cycle (prompt allocation after a recovery or a revive).
    pub fn allocate_changed(&mut self, now: Duration) -> Vec<Allocation> {
        let agents: Vec<String> = std::mem::take(&mut self.dirty).into_iter().collect();
        self.allocate_agents(now, &agents)
    }

    fn allocate_agents(&mut self, now: Duration, agents: &[String]) -> Vec<Allocation> {
        // Expired filters are dropped as time passes.
        for f in self.frameworks.values_mut() {
            f.filters.retain(|_, until| *until > now);
        }
        let totals = self.cluster_totals();
        let mut shares: BTreeMap<String, (f64, Resources)> = self
            .frameworks
            .iter()
            .map(|(id, f)| {
                let all = f.total_allocated();
                (id.clone(), (share_of(&all, &totals), all))
            })
            .collect();
        let mut out = Vec::new();
        for agent_id in agents {
            let Some(agent) = self.agents.get(agent_id) else {
                continue;
            };
            if !agent.active {
                continue;
            }
            let mut free = agent.total.clone();
            free.subtract_all(&agent.allocated);
            if free.is_empty() {
                continue;
            }
            // Candidates in order of dominant share, then id.
            let mut candidates: Vec<(&String, &FrameworkEntry)> = self
                .frameworks
                .iter()
                .filter(|(_, f)| f.active && !f.suppressed && !f.filters.contains_key(agent_id))
                .collect();
            candidates.sort_by(|a, b| {
                let sa = shares.get(a.0).map(|s| s.0).unwrap_or(0.0);
                let sb = shares.get(b.0).map(|s| s.0).unwrap_or(0.0);
                sa.total_cmp(&sb).then_with(|| a.0.cmp(b.0))
            });
            let mut chosen = None;
            for (fw_id, fw) in candidates {
                for role in &fw.roles {
                    let offerable = offerable_to_role(&free, role);
                    if !offerable.is_empty() && self.min_allocatable.admits(&offerable) {
                        chosen = Some((fw_id.clone(), role.clone(), offerable));
                        break;
                    }
                }
                if chosen.is_some() {
                    break;
                }
            }
            let Some((fw_id, role, offered)) = chosen else {
                continue;
            };
            if let Some(a) = self.agents.get_mut(agent_id) {
                a.allocated.add_all(&offered);
            }
            if let Some(f) = self.frameworks.get_mut(&fw_id) {
                f.allocated
                    .entry(agent_id.clone())
                    .or_default()
                    .add_all(&offered);
            }
            if let Some(entry) = shares.get_mut(&fw_id) {
                entry.1.add_all(&offered);
                entry.0 = share_of(&entry.1, &totals);
            }
            out.push(Allocation {
                framework: fw_id,
                agent: agent_id.clone(),
                role,
                resources: offered,
            });
        }
        out
    }
}

/// Resources of `free` a framework in `role` may be offered: unreserved
/// ones, and ones reserved to the role or an ancestor of it.
fn offerable_to_role(free: &Resources, role: &str) -> Resources {
    let picked: Vec<_> = free
        .as_slice()
        .iter()
        .filter(|r| {
            let reserved = resources::reservation_role(r);
            reserved == "*" || reserved == role || role.starts_with(&format!("{reserved}/"))
        })
        .cloned()
        .collect();
    Resources::from_vec(&picked)
}

fn share_of(allocated: &Resources, totals: &BTreeMap<&'static str, f64>) -> f64 {
    SHARE_RESOURCES
        .iter()
        .filter_map(|name| {
            let total = totals.get(name).copied().unwrap_or(0.0);
            (total > 0.0).then(|| allocated.scalar(name) / total)
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests;

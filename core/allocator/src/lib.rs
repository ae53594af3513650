//! Corral's allocator: hierarchical, weighted Dominant Resource Fairness
//! with quota, as a pure state machine.
//!
//! No async, no clock, no I/O. The master feeds it events (agents and
//! frameworks coming and going, resources recovered, decline filters,
//! suppress and revive, weight and quota changes) and calls
//! [`Allocator::allocate`] (a full cycle) or [`Allocator::allocate_changed`]
//! (only the agents whose free resources changed) with the current time; it
//! gets back the [`Allocation`]s to turn into offers.
//!
//! # Model
//!
//! * Roles form a tree (`eng`, `eng/spark`, `eng/spark/etl`). Every node
//!   keeps the quantities allocated in its subtree. At every level the
//!   children — and the node's own frameworks, as a virtual leaf, like
//!   Mesos' sorter — are ordered by weighted dominant share
//!   (`max_r allocated_r / total_r`, divided by the role's weight); within
//!   a role its frameworks are ordered by their dominant share in it.
//! * An agent's free resources are split into pools: unreserved, and one
//!   per reservation role. A reserved pool is offered only within its
//!   role's subtree; the unreserved pool to everyone.
//! * Quota (Mesos 1.9+): a role's *consumption* is what its subtree has
//!   allocated plus its unallocated reservations. Stage 1 of a cycle
//!   offers unreserved resources to roles whose guarantees are not met,
//!   up to the guarantee; stage 2 shares fairly what is left while holding
//!   back the unmet guarantees (headroom). Limits are never exceeded:
//!   offers are cut down to fit.
//! * Decline filters are per framework and agent and expire with time;
//!   REVIVE clears them. SUPPRESS and REVIVE work per role.
//!
//! # Speed
//!
//! The sorted orders are `BTreeSet`s keyed by the share's bits and updated
//! in `O(depth · log n)` per allocation; quantities of scalar resources are
//! fixed arrays; each agent keeps its free resources and their per-pool
//! totals up to date, so an idle cycle only reads a flag per agent; an
//! agent every framework has filtered is skipped in `O(1)`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use corral_api::resources::{self, Resources};
use corral_api::v1;

pub mod bench;

mod agents;
mod cycle;
mod frameworks;
mod quantities;
mod sorter;

use sorter::RoleNode;

use quantities::ScalarNames;
pub use quantities::{Quantities, MAX_SCALARS};

/// Offers made out of one reserved pool of an agent per cycle (more than
/// one only when some frameworks cannot take refined reservations).
const MAX_OFFERS_PER_POOL: usize = 8;

/// Default `refuse_seconds` of a decline filter.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);

/// Mesos caps filters at 365 days.
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The smallest offer worth making (`--min_allocatable_resources`; Mesos'
/// default is `cpus:0.01|mem:32`).
#[derive(Clone, Debug, PartialEq)]
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
    /// Parses Mesos' `--min_allocatable_resources` syntax:
    /// `cpus:0.01|mem:32` (alternatives separated by `|`, each a `;`
    /// separated list of scalar quantities).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut alternatives = Vec::new();
        for alt in text.split('|').map(str::trim).filter(|a| !a.is_empty()) {
            let mut quantities = Vec::new();
            for part in alt.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, value) = part
                    .split_once(':')
                    .ok_or_else(|| format!("'{part}' is not of the form name:quantity"))?;
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{value}' in '{part}' is not a number"))?;
                if !v.is_finite() || v < 0.0 {
                    return Err(format!(
                        "quantity of '{name}' must be a non-negative number"
                    ));
                }
                quantities.push((name.trim().to_string(), v));
            }
            alternatives.push(quantities);
        }
        if alternatives.is_empty() {
            return Err("no quantities given".into());
        }
        Ok(Self { alternatives })
    }

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
    /// What is offered (carrying `allocation_info.role`).
    pub resources: Resources,
}

/// Quota of a role: guarantees and limits per scalar resource name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quota {
    /// Guaranteed quantities.
    pub guarantees: BTreeMap<String, f64>,
    /// Upper bounds on consumption; a name absent here is unlimited.
    pub limits: BTreeMap<String, f64>,
}

/// What the allocator knows of a role, for GET_ROLES and metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleInfo {
    /// Role name.
    pub name: String,
    /// Weight.
    pub weight: f64,
    /// Quota, if any.
    pub quota: Option<Quota>,
    /// Frameworks subscribed to the role itself.
    pub frameworks: Vec<String>,
    /// Scalars allocated (offered or used) in the role's subtree.
    pub allocated: BTreeMap<String, f64>,
    /// Scalars consumed against quota (allocated + unallocated reservations).
    pub consumed: BTreeMap<String, f64>,
    /// Weighted dominant share of the subtree.
    pub share: f64,
}

type RoleId = u32;

type FwIdx = u32;

type AgentIdx = u32;

#[derive(Clone, Debug)]
struct FwRole {
    role: RoleId,
    allocated: Quantities,
    key: u64,
}

#[derive(Clone, Debug)]
struct FrameworkEntry {
    id: String,
    roles: Vec<FwRole>,
    active: bool,
    suppressed: HashSet<RoleId>,
    /// Agent -> time the decline filter expires.
    filters: HashMap<AgentIdx, Duration>,
    /// Allocated resources (with allocation info), per agent.
    allocated: HashMap<AgentIdx, Resources>,
    /// Has the RESERVATION_REFINEMENT capability: may be offered
    /// resources with refined (stacked) reservations.
    refinement: bool,
}

#[derive(Clone, Debug)]
struct AgentEntry {
    id: String,
    total: Resources,
    available: Resources,
    /// Free scalars per pool: `None` is unreserved, `Some(role)` reserved.
    pools: Vec<(Option<RoleId>, Quantities)>,
    /// Reserved totals per role (for quota consumption).
    reserved: Vec<(RoleId, Quantities)>,
    active: bool,
    /// Frameworks with an active decline filter on this agent.
    filtered_by: usize,
}

/// The allocator.
#[derive(Clone, Debug)]
pub struct Allocator {
    min_allocatable: MinAllocatable,
    names: ScalarNames,
    roles: Vec<RoleNode>,
    role_index: HashMap<String, RoleId>,
    frameworks: Vec<Option<FrameworkEntry>>,
    fw_index: HashMap<String, FwIdx>,
    free_fw: Vec<FwIdx>,
    agents: Vec<Option<AgentEntry>>,
    agent_index: HashMap<String, AgentIdx>,
    free_agents: Vec<AgentIdx>,
    totals: Quantities,
    /// Sum of free unreserved scalars on active agents.
    unreserved_free: Quantities,
    active_frameworks: usize,
    filter_heap: BinaryHeap<Reverse<(Duration, FwIdx, AgentIdx)>>,
    dirty: BTreeSet<AgentIdx>,
    orders_stale: bool,
    rotation: usize,
}

impl Default for Allocator {
    fn default() -> Self {
        Self::new(MinAllocatable::default())
    }
}

impl Allocator {
    /// A new allocator with the given minimum allocatable resources.
    pub fn new(min_allocatable: MinAllocatable) -> Self {
        let root = RoleNode::new(String::new(), None);
        Self {
            min_allocatable,
            names: ScalarNames::default(),
            roles: vec![root],
            role_index: HashMap::new(),
            frameworks: Vec::new(),
            fw_index: HashMap::new(),
            free_fw: Vec::new(),
            agents: Vec::new(),
            agent_index: HashMap::new(),
            free_agents: Vec::new(),
            totals: Quantities::ZERO,
            unreserved_free: Quantities::ZERO,
            active_frameworks: 0,
            filter_heap: BinaryHeap::new(),
            dirty: BTreeSet::new(),
            orders_stale: false,
            rotation: 0,
        }
    }

    /// Changes the minimum allocatable resources.
    pub fn set_min_allocatable(&mut self, min: MinAllocatable) {
        self.min_allocatable = min;
    }

    // ------------------------------------------------------------------
    // Roles
    // ------------------------------------------------------------------

    /// Returns resources of `f` on `agent` to the agent's free pool.
    fn release(&mut self, f: FwIdx, agent: AgentIdx, resources: &Resources) {
        // Only what the framework really holds there can be released.
        let held = self
            .fw(f)
            .and_then(|e| e.allocated.get(&agent))
            .cloned()
            .unwrap_or_default();
        let mut actual = Resources::new();
        for r in resources.as_slice() {
            let mut r = r.clone();
            if r.allocation_info.is_none() {
                if let Some(role) = self.fw(f).and_then(|e| e.roles.first()).map(|x| x.role) {
                    r.allocation_info = Some(v1::resource::AllocationInfo {
                        role: Some(self.role_name(role).to_string()),
                    });
                }
            }
            if held.contains_one(&r) {
                actual.add(&r);
            }
        }
        if actual.is_empty() {
            return;
        }
        self.uncharge(f, agent, &actual);
        let unallocated = actual.unallocated();
        if let Some(a) = self.agents[agent as usize].as_mut() {
            for r in unallocated.as_slice() {
                // An allocation can outlive its resources when the agent's
                // total was replaced (`update_agent_total`): those vanish.
                if a.total.contains_one(r) {
                    a.available.add(r);
                }
            }
        }
        self.refresh_pools(agent);
        self.dirty.insert(agent);
    }

    /// Records that `framework` uses `resources` on `agent` (agents
    /// re-registering with running tasks).
    pub fn allocate_used(&mut self, framework: &str, agent: &str, resources: &Resources) {
        let (Some(f), Some(a)) = (
            self.fw_index.get(framework).copied(),
            self.agent_index.get(agent).copied(),
        ) else {
            return;
        };
        self.charge(f, a, resources);
    }

    // ------------------------------------------------------------------
    // Operations: RESERVE, UNRESERVE, CREATE, DESTROY, GROW, SHRINK
    // ------------------------------------------------------------------

    /// Converts part of what `framework` holds on `agent` (an offer it
    /// accepted with operations): `consumed` (with allocation info) becomes
    /// `converted`, in the framework's allocation, the role tree and the
    /// agent's total (Mesos' `updateAllocation`). Refused, changing
    /// nothing, when the framework does not hold `consumed` there.
    pub fn update_allocation(
        &mut self,
        framework: &str,
        agent: &str,
        consumed: &Resources,
        converted: &Resources,
    ) -> Result<(), String> {
        let Some(f) = self.fw_index.get(framework).copied() else {
            return Err(format!("unknown framework {framework}"));
        };
        let Some(a) = self.agent_index.get(agent).copied() else {
            return Err(format!("unknown agent {agent}"));
        };
        let held = self
            .fw(f)
            .and_then(|e| e.allocated.get(&a))
            .cloned()
            .unwrap_or_default();
        if !corral_api::operations::holds(&held, consumed) {
            return Err(format!(
                "framework {framework} does not hold {consumed} on agent {agent}"
            ));
        }
        let Some(total) = self.agents[a as usize].as_ref().map(|e| e.total.clone()) else {
            return Err(format!("unknown agent {agent}"));
        };
        let mut total = total;
        total.subtract_all(&consumed.unallocated());
        total.add_all(&converted.unallocated());
        self.names.intern_all(converted);
        // The new total first: it creates the role nodes of new
        // reservations, which the accounting below looks up.
        self.retotal(a, total);
        self.uncharge(f, a, consumed);
        self.account(f, converted, true);
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            e.allocated.entry(a).or_default().add_all(converted);
        }
        Ok(())
    }

    /// Returns resources to the pool: declined, unused or freed by
    /// terminal tasks. `filter` installs a decline filter `(now, refuse)`:
    /// the agent is not offered to the framework until `now + refuse`
    /// (capped at 365 days).
    pub fn recover(
        &mut self,
        framework: &str,
        agent: &str,
        resources: &Resources,
        filter: Option<(Duration, Duration)>,
    ) {
        let (Some(f), Some(a)) = (
            self.fw_index.get(framework).copied(),
            self.agent_index.get(agent).copied(),
        ) else {
            return;
        };
        self.release(f, a, resources);
        if let Some((now, refuse)) = filter {
            if !refuse.is_zero() {
                self.add_filter(framework, agent, now + refuse.min(MAX_REFUSE));
            }
        }
    }
}

/// The resources of `available` that satisfy `keep` (borrowed when that is
/// all of them, the common case of an agent without reservations).
fn pool_resources(
    available: &Resources,
    keep: impl Fn(&v1::Resource) -> bool,
) -> std::borrow::Cow<'_, Resources> {
    if available.as_slice().iter().all(&keep) {
        return std::borrow::Cow::Borrowed(available);
    }
    std::borrow::Cow::Owned(Resources::from_vec(
        &available
            .as_slice()
            .iter()
            .filter(|r| keep(r))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests;

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
mod quantities;

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

/// Entries of a node's order: a child role, or the node's own frameworks.
const SELF_ENTRY: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct RoleNode {
    name: String,
    parent: Option<RoleId>,
    children: Vec<RoleId>,
    weight: f64,
    guarantee: Quantities,
    has_guarantee: bool,
    limit: Quantities,
    has_limit: bool,
    /// Allocated in the subtree (all pools).
    allocated: Quantities,
    /// Allocated to the role's own frameworks.
    allocated_self: Quantities,
    /// Reserved to the subtree on all agents (totals).
    reserved: Quantities,
    /// Allocated out of reservations of the subtree.
    allocated_reserved: Quantities,
    /// Frameworks subscribed to this role, by their share in it.
    fw_order: BTreeSet<(u64, FwIdx)>,
    /// Children and SELF_ENTRY, by weighted share.
    order: BTreeSet<(u64, u32)>,
    /// The key of this node in its parent's `order`.
    key: u64,
    /// The key of SELF_ENTRY in `order`.
    self_key: u64,
    /// Frameworks subscribed to roles in the subtree.
    subtree_frameworks: usize,
}

impl RoleNode {
    /// A role with nothing allocated, weight 1 and no quota.
    fn new(name: String, parent: Option<RoleId>) -> Self {
        Self {
            name,
            parent,
            children: Vec::new(),
            weight: 1.0,
            guarantee: Quantities::ZERO,
            has_guarantee: false,
            limit: Quantities::INFINITE,
            has_limit: false,
            allocated: Quantities::ZERO,
            allocated_self: Quantities::ZERO,
            reserved: Quantities::ZERO,
            allocated_reserved: Quantities::ZERO,
            fw_order: BTreeSet::new(),
            order: BTreeSet::new(),
            key: 0,
            self_key: 0,
            subtree_frameworks: 0,
        }
    }

    fn consumed(&self) -> Quantities {
        let mut c = self.allocated;
        c.add(&self.reserved);
        c.sub(&self.allocated_reserved);
        c
    }
}

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

fn share_key(share: f64) -> u64 {
    // Non-negative finite floats order like their bit patterns.
    if share.is_finite() && share > 0.0 {
        share.to_bits()
    } else if share.is_infinite() {
        f64::MAX.to_bits()
    } else {
        0
    }
}

fn parent_of(role: &str) -> Option<&str> {
    role.rsplit_once('/').map(|(p, _)| p)
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

    /// The node of `role` ("*" is the root), created with its ancestors.
    fn role(&mut self, role: &str) -> RoleId {
        if role == "*" || role.is_empty() {
            return 0;
        }
        if let Some(id) = self.role_index.get(role) {
            return *id;
        }
        let parent = parent_of(role).map(|p| self.role(p)).unwrap_or(0);
        let id = self.roles.len() as RoleId;
        self.roles
            .push(RoleNode::new(role.to_string(), Some(parent)));
        self.roles[parent as usize].children.push(id);
        self.role_index.insert(role.to_string(), id);
        self.roles[parent as usize].order.insert((0, id));
        id
    }

    fn lookup_role(&self, role: &str) -> Option<RoleId> {
        if role == "*" {
            Some(0)
        } else {
            self.role_index.get(role).copied()
        }
    }

    fn ancestors(&self, role: RoleId) -> impl Iterator<Item = RoleId> + '_ {
        std::iter::successors(Some(role), move |r| self.roles[*r as usize].parent)
    }

    /// Sets role weights (a weight must be finite and positive).
    pub fn update_weights(&mut self, weights: &[(String, f64)]) {
        for (role, w) in weights {
            if !w.is_finite() || *w <= 0.0 {
                continue;
            }
            let id = self.role(role);
            self.roles[id as usize].weight = *w;
        }
        self.orders_stale = true;
        self.mark_all_dirty();
    }

    /// Sets (or with `None` removes) a role's quota.
    pub fn update_quota(&mut self, role: &str, quota: Option<&Quota>) {
        let id = self.role(role);
        let mut guarantee = Quantities::ZERO;
        let mut limit = Quantities::INFINITE;
        let (mut has_g, mut has_l) = (false, false);
        if let Some(q) = quota {
            for (name, v) in &q.guarantees {
                if let Some(i) = self.names.index(name) {
                    guarantee.0[i] = *v;
                    has_g |= *v > 0.0;
                }
            }
            for (name, v) in &q.limits {
                if let Some(i) = self.names.index(name) {
                    limit.0[i] = *v;
                    has_l = true;
                }
            }
        }
        let node = &mut self.roles[id as usize];
        node.guarantee = guarantee;
        node.limit = limit;
        node.has_guarantee = has_g;
        node.has_limit = has_l;
        self.mark_all_dirty();
    }

    // ------------------------------------------------------------------
    // Agents
    // ------------------------------------------------------------------

    /// Adds an agent with its total resources and what is already in use
    /// on it (per framework, with allocation info), e.g. on re-registration.
    pub fn add_agent(&mut self, agent: &str, total: Resources, used: &[(String, Resources)]) {
        if self.agent_index.contains_key(agent) {
            self.remove_agent(agent);
        }
        let total = total.unallocated();
        self.names.intern_all(&total);
        let idx = self
            .free_agents
            .pop()
            .unwrap_or(self.agents.len() as AgentIdx);
        let mut reserved: Vec<(RoleId, Quantities)> = Vec::new();
        for r in total.as_slice() {
            let role = resources::reservation_role(r);
            if role != "*" {
                let rid = self.role(role);
                let q = self.names.of_one(r);
                match reserved.iter_mut().find(|(x, _)| *x == rid) {
                    Some((_, acc)) => acc.add(&q),
                    None => reserved.push((rid, q)),
                }
            }
        }
        for (rid, q) in &reserved {
            for a in self.ancestors(*rid).collect::<Vec<_>>() {
                self.roles[a as usize].reserved.add(q);
            }
        }
        self.totals.add(&self.names.of(&total));
        let entry = AgentEntry {
            id: agent.to_string(),
            available: total.clone(),
            total,
            pools: Vec::new(),
            reserved,
            active: true,
            filtered_by: 0,
        };
        if idx as usize == self.agents.len() {
            self.agents.push(Some(entry));
        } else {
            self.agents[idx as usize] = Some(entry);
        }
        self.agent_index.insert(agent.to_string(), idx);
        self.refresh_pools(idx);
        for (fw, r) in used {
            if let Some(f) = self.fw_index.get(fw).copied() {
                self.charge(f, idx, r);
            }
        }
        self.orders_stale = true;
        self.dirty.insert(idx);
    }

    /// Removes an agent; whatever was allocated on it is forgotten.
    pub fn remove_agent(&mut self, agent: &str) {
        let Some(idx) = self.agent_index.remove(agent) else {
            return;
        };
        // Return the frameworks' allocations on it to the role tree.
        let holders: Vec<(FwIdx, Resources)> = self
            .frameworks
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.as_ref()
                    .and_then(|f| f.allocated.get(&idx).map(|r| (i as FwIdx, r.clone())))
            })
            .collect();
        for (f, r) in holders {
            self.uncharge(f, idx, &r);
        }
        for f in self.frameworks.iter_mut().flatten() {
            f.filters.remove(&idx);
        }
        if let Some(a) = self.agents[idx as usize].take() {
            self.totals.sub(&self.names.of(&a.total));
            if a.active {
                for (pool, q) in &a.pools {
                    if pool.is_none() {
                        self.unreserved_free.sub(q);
                    }
                }
            }
            for (rid, q) in &a.reserved {
                for r in self.ancestors(*rid).collect::<Vec<_>>() {
                    self.roles[r as usize].reserved.sub(q);
                }
            }
        }
        self.free_agents.push(idx);
        self.dirty.remove(&idx);
        self.orders_stale = true;
    }

    /// Stops (or resumes) offering an agent's resources.
    pub fn set_agent_active(&mut self, agent: &str, active: bool) {
        let Some(idx) = self.agent_index.get(agent).copied() else {
            return;
        };
        let Some(a) = self.agents[idx as usize].as_mut() else {
            return;
        };
        if a.active == active {
            return;
        }
        a.active = active;
        let unreserved: Quantities = a
            .pools
            .iter()
            .filter(|(p, _)| p.is_none())
            .map(|(_, q)| *q)
            .next()
            .unwrap_or(Quantities::ZERO);
        if active {
            self.unreserved_free.add(&unreserved);
            self.dirty.insert(idx);
        } else {
            self.unreserved_free.sub(&unreserved);
        }
    }

    /// Whether the agent is known.
    pub fn has_agent(&self, agent: &str) -> bool {
        self.agent_index.contains_key(agent)
    }

    /// Free resources of an agent.
    pub fn available(&self, agent: &str) -> Resources {
        self.agent_index
            .get(agent)
            .and_then(|i| self.agents[*i as usize].as_ref())
            .map(|a| a.available.clone())
            .unwrap_or_default()
    }

    /// Recomputes an agent's per-pool free scalars from its free resources.
    fn refresh_pools(&mut self, idx: AgentIdx) {
        let Some(a) = self.agents[idx as usize].as_ref() else {
            return;
        };
        let mut pools: Vec<(Option<RoleId>, Quantities)> = Vec::with_capacity(2);
        let mut has_unreserved = false;
        for r in a.available.as_slice() {
            let role = resources::reservation_role(r);
            let pool = if role == "*" {
                has_unreserved = true;
                None
            } else {
                self.role_index.get(role).copied()
            };
            let q = self.names.of_one(r);
            match pools.iter_mut().find(|(p, _)| *p == pool) {
                Some((_, acc)) => acc.add(&q),
                None => pools.push((pool, q)),
            }
        }
        if !has_unreserved {
            pools.push((None, Quantities::ZERO));
        }
        let active = a.active;
        let old_unreserved = a
            .pools
            .iter()
            .find(|(p, _)| p.is_none())
            .map(|(_, q)| *q)
            .unwrap_or(Quantities::ZERO);
        let new_unreserved = pools
            .iter()
            .find(|(p, _)| p.is_none())
            .map(|(_, q)| *q)
            .unwrap_or(Quantities::ZERO);
        if active {
            self.unreserved_free.sub(&old_unreserved);
            self.unreserved_free.add(&new_unreserved);
        }
        if let Some(a) = self.agents[idx as usize].as_mut() {
            a.pools = pools;
        }
    }

    // ------------------------------------------------------------------
    // Frameworks
    // ------------------------------------------------------------------

    /// Adds (or updates) a framework subscribed to `roles`.
    pub fn add_framework(&mut self, framework: &str, roles: Vec<String>, active: bool) {
        if self.fw_index.contains_key(framework) {
            self.update_framework(framework, roles);
            self.set_framework_active(framework, active);
            return;
        }
        let idx = self.free_fw.pop().unwrap_or(self.frameworks.len() as FwIdx);
        let entry = FrameworkEntry {
            id: framework.to_string(),
            roles: Vec::new(),
            active,
            suppressed: HashSet::new(),
            filters: HashMap::new(),
            allocated: HashMap::new(),
            refinement: true,
        };
        if idx as usize == self.frameworks.len() {
            self.frameworks.push(Some(entry));
        } else {
            self.frameworks[idx as usize] = Some(entry);
        }
        self.fw_index.insert(framework.to_string(), idx);
        if active {
            self.active_frameworks += 1;
        }
        self.set_roles(idx, &roles);
        self.mark_all_dirty();
    }

    fn set_roles(&mut self, f: FwIdx, roles: &[String]) {
        let wanted: Vec<RoleId> = roles.iter().map(|r| self.role(r)).collect();
        let current: Vec<RoleId> = self
            .fw(f)
            .map(|e| e.roles.iter().map(|r| r.role).collect())
            .unwrap_or_default();
        for r in &current {
            if !wanted.contains(r) {
                self.unsubscribe(f, *r);
            }
        }
        for r in wanted {
            if !current.contains(&r) {
                self.subscribe(f, r);
            }
        }
    }

    fn subscribe(&mut self, f: FwIdx, role: RoleId) {
        let Some(fw) = self.frameworks[f as usize].as_mut() else {
            return;
        };
        fw.roles.push(FwRole {
            role,
            allocated: Quantities::ZERO,
            key: 0,
        });
        self.roles[role as usize].fw_order.insert((0, f));
        for r in self.ancestors(role).collect::<Vec<_>>() {
            self.roles[r as usize].subtree_frameworks += 1;
        }
        self.orders_stale = true;
    }

    fn unsubscribe(&mut self, f: FwIdx, role: RoleId) {
        let Some(fw) = self.frameworks[f as usize].as_mut() else {
            return;
        };
        let Some(pos) = fw.roles.iter().position(|r| r.role == role) else {
            return;
        };
        let entry = fw.roles.remove(pos);
        fw.suppressed.remove(&role);
        self.roles[role as usize].fw_order.remove(&(entry.key, f));
        for r in self.ancestors(role).collect::<Vec<_>>() {
            self.roles[r as usize].subtree_frameworks -= 1;
        }
        self.orders_stale = true;
    }

    fn fw(&self, f: FwIdx) -> Option<&FrameworkEntry> {
        self.frameworks.get(f as usize).and_then(|x| x.as_ref())
    }

    /// Updates a framework's roles.
    pub fn update_framework(&mut self, framework: &str, roles: Vec<String>) {
        if let Some(f) = self.fw_index.get(framework).copied() {
            self.set_roles(f, &roles);
            self.mark_all_dirty();
        }
    }

    /// Removes a framework, recovering everything allocated to it.
    pub fn remove_framework(&mut self, framework: &str) {
        let Some(f) = self.fw_index.get(framework).copied() else {
            return;
        };
        let allocations: Vec<(AgentIdx, Resources)> = self
            .fw(f)
            .map(|e| e.allocated.iter().map(|(a, r)| (*a, r.clone())).collect())
            .unwrap_or_default();
        for (agent, r) in allocations {
            self.release(f, agent, &r);
        }
        let roles: Vec<RoleId> = self
            .fw(f)
            .map(|e| e.roles.iter().map(|r| r.role).collect())
            .unwrap_or_default();
        for r in roles {
            self.unsubscribe(f, r);
        }
        if let Some(e) = self.frameworks[f as usize].take() {
            if e.active {
                self.active_frameworks -= 1;
            }
            for agent in e.filters.keys() {
                if let Some(a) = self
                    .agents
                    .get_mut(*agent as usize)
                    .and_then(|a| a.as_mut())
                {
                    a.filtered_by = a.filtered_by.saturating_sub(1);
                }
            }
        }
        self.fw_index.remove(framework);
        self.free_fw.push(f);
    }

    /// Activates or deactivates a framework (a disconnected framework gets
    /// no offers but keeps its allocation).
    pub fn set_framework_active(&mut self, framework: &str, active: bool) {
        let Some(f) = self.fw_index.get(framework).copied() else {
            return;
        };
        let Some(e) = self.frameworks[f as usize].as_mut() else {
            return;
        };
        if e.active != active {
            e.active = active;
            if active {
                self.active_frameworks += 1;
                self.mark_all_dirty();
            } else {
                self.active_frameworks -= 1;
            }
        }
    }

    /// Whether a framework may be offered resources with refined
    /// reservations (a stack of reservations for nested roles): only
    /// frameworks with the RESERVATION_REFINEMENT capability can read them.
    /// Frameworks are capable until told otherwise.
    pub fn set_reservation_refinement(&mut self, framework: &str, capable: bool) {
        let Some(f) = self.fw_index.get(framework).copied() else {
            return;
        };
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            if e.refinement != capable {
                e.refinement = capable;
                self.mark_all_dirty();
            }
        }
    }

    /// Stops offers to a framework for `roles` (all its roles when empty)
    /// until it revives them.
    pub fn suppress(&mut self, framework: &str, roles: &[String]) {
        let Some(f) = self.fw_index.get(framework).copied() else {
            return;
        };
        let ids: Vec<RoleId> = if roles.is_empty() {
            self.fw(f)
                .map(|e| e.roles.iter().map(|r| r.role).collect())
                .unwrap_or_default()
        } else {
            roles.iter().filter_map(|r| self.lookup_role(r)).collect()
        };
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            e.suppressed.extend(ids);
        }
    }

    /// Revives `roles` (all when empty): clears suppression and the
    /// framework's decline filters.
    pub fn revive(&mut self, framework: &str, roles: &[String]) {
        let Some(f) = self.fw_index.get(framework).copied() else {
            return;
        };
        let ids: Vec<RoleId> = if roles.is_empty() {
            self.fw(f)
                .map(|e| e.roles.iter().map(|r| r.role).collect())
                .unwrap_or_default()
        } else {
            roles.iter().filter_map(|r| self.lookup_role(r)).collect()
        };
        let filters: Vec<AgentIdx> = match self.frameworks[f as usize].as_mut() {
            Some(e) => {
                for r in &ids {
                    e.suppressed.remove(r);
                }
                e.filters.drain().map(|(a, _)| a).collect()
            }
            None => Vec::new(),
        };
        for a in filters {
            if let Some(agent) = self.agents.get_mut(a as usize).and_then(|x| x.as_mut()) {
                agent.filtered_by = agent.filtered_by.saturating_sub(1);
            }
        }
        self.mark_all_dirty();
    }

    /// Whether `framework` has `role` suppressed.
    pub fn is_suppressed(&self, framework: &str, role: &str) -> bool {
        let (Some(f), Some(r)) = (self.fw_index.get(framework), self.lookup_role(role)) else {
            return false;
        };
        self.fw(*f).is_some_and(|e| e.suppressed.contains(&r))
    }

    // ------------------------------------------------------------------
    // Allocation bookkeeping
    // ------------------------------------------------------------------

    fn mark_all_dirty(&mut self) {
        for (i, a) in self.agents.iter().enumerate() {
            if a.is_some() {
                self.dirty.insert(i as AgentIdx);
            }
        }
    }

    fn role_of(&self, f: FwIdx, r: &v1::Resource) -> Option<RoleId> {
        let fw = self.fw(f)?;
        let named = r
            .allocation_info
            .as_ref()
            .and_then(|i| i.role.as_deref())
            .and_then(|name| {
                if name == "*" {
                    Some(0)
                } else {
                    self.role_index.get(name).copied()
                }
            });
        named
            .filter(|id| fw.roles.iter().any(|x| x.role == *id))
            .or_else(|| fw.roles.first().map(|x| x.role))
    }

    /// Adds (or removes) `resources` of framework `f` to the role tree,
    /// per role of their allocation info (reserved ones also as allocated
    /// reservations).
    fn account(&mut self, f: FwIdx, resources: &Resources, add: bool) {
        let mut by_role: Vec<(RoleId, Quantities, Quantities)> = Vec::new();
        for r in resources.as_slice() {
            let Some(role) = self.role_of(f, r) else {
                continue;
            };
            let q = self.names.of_one(r);
            let reserved = resources::reservation_role(r) != "*";
            let rq = if reserved { q } else { Quantities::ZERO };
            match by_role.iter_mut().find(|(x, _, _)| *x == role) {
                Some((_, acc, racc)) => {
                    acc.add(&q);
                    racc.add(&rq);
                }
                None => by_role.push((role, q, rq)),
            }
        }
        for (role, q, rq) in &by_role {
            self.adjust(f, *role, q, rq, add);
        }
    }

    /// Accounts `resources` (with allocation info) as allocated to `f` on
    /// `agent`: role tree, framework and agent.
    fn charge(&mut self, f: FwIdx, agent: AgentIdx, resources: &Resources) {
        self.account(f, resources, true);
        let unallocated = resources.unallocated();
        if let Some(a) = self.agents[agent as usize].as_mut() {
            a.available.subtract_all(&unallocated);
        }
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            e.allocated.entry(agent).or_default().add_all(resources);
        }
        self.refresh_pools(agent);
    }

    /// Undoes `charge` for the role tree and the framework only.
    fn uncharge(&mut self, f: FwIdx, agent: AgentIdx, resources: &Resources) {
        self.account(f, resources, false);
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            if let Some(alloc) = e.allocated.get_mut(&agent) {
                alloc.subtract_all(resources);
                if alloc.is_empty() {
                    e.allocated.remove(&agent);
                }
            }
        }
    }

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

    fn role_name(&self, role: RoleId) -> &str {
        if role == 0 {
            "*"
        } else {
            &self.roles[role as usize].name
        }
    }

    /// Adds (or removes) quantities for framework `f` in `role` and all
    /// ancestors, keeping the sorted orders up to date.
    fn adjust(&mut self, f: FwIdx, role: RoleId, q: &Quantities, reserved: &Quantities, add: bool) {
        let totals = self.totals;
        // Framework's share within the role.
        let mut fw_key_change = None;
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            if let Some(fr) = e.roles.iter_mut().find(|x| x.role == role) {
                if add {
                    fr.allocated.add(q);
                } else {
                    fr.allocated.sub(q);
                }
                let new_key = share_key(fr.allocated.dominant_share(&totals));
                fw_key_change = Some((fr.key, new_key));
                fr.key = new_key;
            }
        }
        if let Some((old, new)) = fw_key_change {
            let order = &mut self.roles[role as usize].fw_order;
            order.remove(&(old, f));
            order.insert((new, f));
        }
        // The role's own allocation (its SELF entry) and every ancestor's.
        {
            let node = &mut self.roles[role as usize];
            if add {
                node.allocated_self.add(q);
            } else {
                node.allocated_self.sub(q);
            }
            let new_self = share_key(node.allocated_self.dominant_share(&totals) / node.weight);
            let old_self = node.self_key;
            node.self_key = new_self;
            if node.order.remove(&(old_self, SELF_ENTRY)) || !node.fw_order.is_empty() {
                node.order.insert((new_self, SELF_ENTRY));
            }
        }
        let mut cur = Some(role);
        while let Some(r) = cur {
            let parent = self.roles[r as usize].parent;
            let node = &mut self.roles[r as usize];
            if add {
                node.allocated.add(q);
                node.allocated_reserved.add(reserved);
            } else {
                node.allocated.sub(q);
                node.allocated_reserved.sub(reserved);
            }
            let new_key = share_key(node.allocated.dominant_share(&totals) / node.weight);
            let old_key = node.key;
            node.key = new_key;
            if let Some(p) = parent {
                let order = &mut self.roles[p as usize].order;
                if order.remove(&(old_key, r)) {
                    order.insert((new_key, r));
                }
            }
            cur = parent;
        }
    }

    /// Rebuilds every sorted order (after totals or weights changed).
    fn rebuild_orders(&mut self) {
        let totals = self.totals;
        for f in 0..self.frameworks.len() {
            let Some(e) = self.frameworks[f].as_mut() else {
                continue;
            };
            for fr in &mut e.roles {
                fr.key = share_key(fr.allocated.dominant_share(&totals));
            }
        }
        for node in &mut self.roles {
            node.fw_order.clear();
            node.order.clear();
        }
        for f in 0..self.frameworks.len() {
            let Some(e) = self.frameworks[f].as_ref() else {
                continue;
            };
            for fr in &e.roles {
                self.roles[fr.role as usize]
                    .fw_order
                    .insert((fr.key, f as FwIdx));
            }
        }
        for r in 0..self.roles.len() {
            let node = &mut self.roles[r];
            node.key = share_key(node.allocated.dominant_share(&totals) / node.weight);
            node.self_key = share_key(node.allocated_self.dominant_share(&totals) / node.weight);
            if !node.fw_order.is_empty() {
                let k = node.self_key;
                node.order.insert((k, SELF_ENTRY));
            }
        }
        for r in 1..self.roles.len() {
            let (key, parent) = (self.roles[r].key, self.roles[r].parent.unwrap_or(0));
            self.roles[parent as usize].order.insert((key, r as u32));
        }
        self.orders_stale = false;
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

    /// Converts unallocated resources of `agent` (an operator's operation):
    /// `consumed` (without allocation info) must be free there and becomes
    /// `converted`, in the free resources and the total (Mesos'
    /// `updateAvailable`). Refused, changing nothing, otherwise.
    pub fn update_available(
        &mut self,
        agent: &str,
        consumed: &Resources,
        converted: &Resources,
    ) -> Result<(), String> {
        let Some(a) = self.agent_index.get(agent).copied() else {
            return Err(format!("unknown agent {agent}"));
        };
        let Some(entry) = self.agents[a as usize].as_ref() else {
            return Err(format!("unknown agent {agent}"));
        };
        if !corral_api::operations::holds(&entry.available, consumed) {
            return Err(format!(
                "the unallocated resources {} of agent {agent} do not contain {}",
                entry.available, consumed
            ));
        }
        let mut available = entry.available.clone();
        available.subtract_all(consumed);
        available.add_all(converted);
        let mut total = entry.total.clone();
        total.subtract_all(consumed);
        total.add_all(converted);
        self.names.intern_all(converted);
        self.retotal(a, total);
        if let Some(e) = self.agents[a as usize].as_mut() {
            e.available = available;
        }
        self.refresh_pools(a);
        self.dirty.insert(a);
        Ok(())
    }

    /// Replaces an agent's total (the agent reported it, e.g. after an
    /// operation failed there): its free resources become the new total
    /// minus what frameworks hold on it.
    pub fn update_agent_total(&mut self, agent: &str, total: Resources) {
        let Some(a) = self.agent_index.get(agent).copied() else {
            return;
        };
        let total = total.unallocated();
        self.names.intern_all(&total);
        let mut available = total.clone();
        for e in self.frameworks.iter().flatten() {
            if let Some(held) = e.allocated.get(&a) {
                available.subtract_all(&held.unallocated());
            }
        }
        self.retotal(a, total);
        if let Some(e) = self.agents[a as usize].as_mut() {
            e.available = available;
        }
        self.refresh_pools(a);
        self.dirty.insert(a);
    }

    /// The agent's total resources.
    pub fn total(&self, agent: &str) -> Resources {
        self.agent_index
            .get(agent)
            .and_then(|i| self.agents[*i as usize].as_ref())
            .map(|a| a.total.clone())
            .unwrap_or_default()
    }

    /// Sets an agent's total: cluster totals, the reservations it holds per
    /// role (creating the roles' nodes) and the sorted orders.
    fn retotal(&mut self, idx: AgentIdx, total: Resources) {
        let Some(old) = self.agents[idx as usize].as_ref() else {
            return;
        };
        let old_total = self.names.of(&old.total);
        let old_reserved = old.reserved.clone();
        for (rid, q) in &old_reserved {
            for r in self.ancestors(*rid).collect::<Vec<_>>() {
                self.roles[r as usize].reserved.sub(q);
            }
        }
        let mut reserved: Vec<(RoleId, Quantities)> = Vec::new();
        for r in total.as_slice() {
            let role = resources::reservation_role(r);
            if role != "*" {
                let rid = self.role(role);
                let q = self.names.of_one(r);
                match reserved.iter_mut().find(|(x, _)| *x == rid) {
                    Some((_, acc)) => acc.add(&q),
                    None => reserved.push((rid, q)),
                }
            }
        }
        for (rid, q) in &reserved {
            for r in self.ancestors(*rid).collect::<Vec<_>>() {
                self.roles[r as usize].reserved.add(q);
            }
        }
        self.totals.sub(&old_total);
        self.totals.add(&self.names.of(&total));
        if let Some(a) = self.agents[idx as usize].as_mut() {
            a.total = total;
            a.reserved = reserved;
        }
        self.orders_stale = true;
        self.dirty.insert(idx);
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

    /// Installs a decline filter directly: `framework` is not offered
    /// `agent` until `until` (the "filter added" event).
    pub fn add_filter(&mut self, framework: &str, agent: &str, until: Duration) {
        let (Some(f), Some(a)) = (
            self.fw_index.get(framework).copied(),
            self.agent_index.get(agent).copied(),
        ) else {
            return;
        };
        let fresh = match self.frameworks[f as usize].as_mut() {
            Some(e) => e.filters.insert(a, until).is_none(),
            None => false,
        };
        if fresh {
            if let Some(agent) = self.agents[a as usize].as_mut() {
                agent.filtered_by += 1;
            }
        }
        self.filter_heap.push(Reverse((until, f, a)));
    }

    /// Decline filters in force at `now`, by the role of the framework
    /// that declined (its first role).
    pub fn active_filters_by_role(&self, now: Duration) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for f in self.frameworks.iter().flatten() {
            let n = f.filters.values().filter(|t| **t > now).count();
            if n == 0 {
                continue;
            }
            let role = f
                .roles
                .first()
                .map(|r| self.role_name(r.role))
                .unwrap_or("*");
            *out.entry(role.to_string()).or_insert(0) += n;
        }
        out
    }

    /// Number of decline filters in force at `now`.
    pub fn active_filters(&self, now: Duration) -> usize {
        self.frameworks
            .iter()
            .flatten()
            .map(|f| f.filters.values().filter(|t| **t > now).count())
            .sum()
    }

    fn expire_filters(&mut self, now: Duration) {
        while let Some(Reverse((until, f, a))) = self.filter_heap.peek().copied() {
            if until > now {
                break;
            }
            self.filter_heap.pop();
            let removed = match self.frameworks.get_mut(f as usize).and_then(|x| x.as_mut()) {
                Some(e) if e.filters.get(&a) == Some(&until) => {
                    e.filters.remove(&a);
                    true
                }
                _ => false,
            };
            if removed {
                if let Some(agent) = self.agents.get_mut(a as usize).and_then(|x| x.as_mut()) {
                    agent.filtered_by = agent.filtered_by.saturating_sub(1);
                }
                self.dirty.insert(a);
            }
        }
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// The dominant share of a framework across its roles (0.0 ..= 1.0).
    pub fn dominant_share(&self, framework: &str) -> f64 {
        let Some(e) = self.fw_index.get(framework).and_then(|f| self.fw(*f)) else {
            return 0.0;
        };
        let mut all = Quantities::ZERO;
        for r in &e.roles {
            all.add(&r.allocated);
        }
        all.dominant_share(&self.totals)
    }

    /// Weighted dominant share of a role's subtree.
    pub fn role_share(&self, role: &str) -> f64 {
        self.role_index
            .get(role)
            .map(|r| {
                let n = &self.roles[*r as usize];
                n.allocated.dominant_share(&self.totals) / n.weight
            })
            .unwrap_or(0.0)
    }

    /// Every known role (except the root), for GET_ROLES and metrics.
    pub fn roles(&self) -> Vec<RoleInfo> {
        let mut out: Vec<RoleInfo> = self
            .roles
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, n)| {
                let frameworks = n
                    .fw_order
                    .iter()
                    .filter_map(|(_, f)| self.fw(*f).map(|e| e.id.clone()))
                    .collect();
                let quota = (n.has_guarantee || n.has_limit).then(|| Quota {
                    guarantees: self.names.to_map(&n.guarantee, |v| v > 0.0),
                    limits: self.names.to_map(&n.limit, |v| v.is_finite()),
                });
                let _ = i;
                RoleInfo {
                    name: n.name.clone(),
                    weight: n.weight,
                    quota,
                    frameworks,
                    allocated: self.names.to_map(&n.allocated, |v| v > 0.0),
                    consumed: self.names.to_map(&n.consumed(), |v| v > 0.0),
                    share: n.allocated.dominant_share(&self.totals) / n.weight,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    // ------------------------------------------------------------------
    // Allocation
    // ------------------------------------------------------------------

    /// Runs an allocation cycle over every agent at time `now`.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        self.expire_filters(now);
        self.dirty.clear();
        let n = self.agents.len();
        if n == 0 {
            return Vec::new();
        }
        self.rotation = (self.rotation + 1) % n;
        let order: Vec<AgentIdx> = (self.rotation..n)
            .chain(0..self.rotation)
            .map(|i| i as AgentIdx)
            .collect();
        self.run(&order)
    }

    /// Allocates only the agents whose free resources changed since the
    /// last cycle (prompt allocation after a recovery or a revive).
    pub fn allocate_changed(&mut self, now: Duration) -> Vec<Allocation> {
        self.expire_filters(now);
        if self.dirty.is_empty() {
            return Vec::new();
        }
        let order: Vec<AgentIdx> = std::mem::take(&mut self.dirty).into_iter().collect();
        self.run(&order)
    }

    fn run(&mut self, agents: &[AgentIdx]) -> Vec<Allocation> {
        if self.orders_stale {
            self.rebuild_orders();
        }
        let mut out = Vec::new();
        if self.active_frameworks == 0 {
            return out;
        }
        // Stage 1: unmet guarantees, in order of how far they are met.
        let mut quota_roles: Vec<(f64, RoleId)> = self
            .roles
            .iter()
            .enumerate()
            .filter(|(_, n)| n.has_guarantee && n.subtree_frameworks > 0)
            .filter_map(|(i, n)| {
                let c = n.consumed();
                let unmet = n.guarantee.exceeds(&c);
                unmet.then(|| (c.fraction_of(&n.guarantee), i as RoleId))
            })
            .collect();
        quota_roles.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut unmet: Vec<RoleId> = quota_roles.into_iter().map(|(_, r)| r).collect();
        for &agent in agents {
            let mut i = 0;
            while i < unmet.len() && self.agent_usable(agent) {
                let q = unmet[i];
                self.allocate_guarantee(agent, q, &mut out);
                if self.unmet_guarantee(q).is_none_or(|u| u.is_zero()) {
                    unmet.remove(i);
                } else {
                    i += 1;
                }
            }
            if unmet.is_empty() {
                break;
            }
        }
        // Stage 2: fair sharing of the rest, holding back headroom.
        let mut headroom = self.required_headroom();
        for &agent in agents {
            self.allocate_fair(agent, &mut headroom, &mut out);
        }
        out
    }

    /// Sum of unmet guarantees of the top-most roles with guarantees.
    fn required_headroom(&self) -> Quantities {
        let mut h = Quantities::ZERO;
        for (i, n) in self.roles.iter().enumerate() {
            if !n.has_guarantee {
                continue;
            }
            let nested = self
                .ancestors(i as RoleId)
                .skip(1)
                .any(|a| self.roles[a as usize].has_guarantee);
            if nested {
                continue;
            }
            let mut unmet = n.guarantee;
            unmet.sub(&n.consumed());
            h.add(&unmet);
        }
        h
    }

    fn agent_usable(&self, agent: AgentIdx) -> bool {
        let Some(a) = self.agents.get(agent as usize).and_then(|a| a.as_ref()) else {
            return false;
        };
        a.active
            && a.pools.iter().any(|(_, q)| !q.is_zero())
            && a.filtered_by < self.active_frameworks
    }

    fn allocate_guarantee(
        &mut self,
        agent: AgentIdx,
        quota_role: RoleId,
        out: &mut Vec<Allocation>,
    ) {
        if !self.agent_usable(agent) {
            return;
        }
        let node = &self.roles[quota_role as usize];
        let mut remaining = node.guarantee;
        remaining.sub(&node.consumed());
        if remaining.is_zero() {
            return;
        }
        // Guaranteed kinds up to the unmet guarantee; others as they are.
        let mut cap = Quantities::INFINITE;
        for i in 0..MAX_SCALARS {
            if node.guarantee.0[i] > 0.0 {
                cap.0[i] = remaining.0[i];
            }
        }
        let Some(a) = self.agents[agent as usize].as_ref() else {
            return;
        };
        let pool = pool_resources(&a.available, |r| resources::reservation_role(r) == "*");
        if pool.is_empty() {
            return;
        }
        let found = self.pick(quota_role, agent, false, &|this: &Self, _, role| {
            this.offer_for(&pool, &cap, role)
        });
        if let Some((f, role, offered)) = found {
            self.grant(f, agent, role, offered, out);
        }
    }

    fn allocate_fair(
        &mut self,
        agent: AgentIdx,
        headroom: &mut Quantities,
        out: &mut Vec<Allocation>,
    ) {
        if !self.agent_usable(agent) {
            return;
        }
        // Reserved pools first, each within its role's subtree.
        let reserved_pools: Vec<RoleId> = self.agents[agent as usize]
            .as_ref()
            .map(|a| {
                a.pools
                    .iter()
                    .filter(|(p, q)| p.is_some() && !q.is_zero())
                    .filter_map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default();
        for pool_role in reserved_pools {
            // Refined reservations go only to frameworks that can read
            // them, so a pool may take more than one framework to offer.
            for _ in 0..MAX_OFFERS_PER_POOL {
                if !self.allocate_reserved_pool(agent, pool_role, out) {
                    break;
                }
            }
        }
        // The unreserved pool, to anyone, leaving the unmet guarantees.
        let Some(a) = self.agents[agent as usize].as_ref() else {
            return;
        };
        let pool = pool_resources(&a.available, |r| resources::reservation_role(r) == "*");
        if pool.is_empty() {
            return;
        }
        let pool = pool.as_ref();
        let mut base = Quantities::INFINITE;
        let mut held_back = false;
        for i in 0..MAX_SCALARS {
            if headroom.0[i] > 0.0 {
                // What may go without eating into the headroom.
                base.0[i] = (self.unreserved_free.0[i] - headroom.0[i]).max(0.0);
                held_back = true;
            }
        }
        let found = self.pick(0, agent, false, &|this: &Self, _, role| {
            let mut cap = base;
            if held_back {
                // A role with an unmet guarantee may use headroom up to it.
                if let Some(unmet) = this.unmet_guarantee(role) {
                    for i in 0..MAX_SCALARS {
                        if cap.0[i].is_finite() {
                            cap.0[i] += unmet.0[i];
                        }
                    }
                }
            }
            this.offer_for(pool, &cap, role)
        });
        let Some((f, role, offered)) = found else {
            return;
        };
        // Headroom shrinks by what a guaranteed role receives of its guarantee.
        if let Some(unmet) = self.unmet_guarantee(role) {
            let mut taken = self.names.of(&offered);
            taken.min_with(&unmet);
            headroom.sub(&taken);
        }
        self.grant(f, agent, role, offered, out);
    }

    /// Offers (part of) the free resources reserved to `pool_role` on
    /// `agent` within the role's subtree; whether an offer was made.
    fn allocate_reserved_pool(
        &mut self,
        agent: AgentIdx,
        pool_role: RoleId,
        out: &mut Vec<Allocation>,
    ) -> bool {
        let Some(a) = self.agents[agent as usize].as_ref() else {
            return false;
        };
        let pool_name = self.role_name(pool_role).to_string();
        let pool = pool_resources(&a.available, |r| {
            resources::reservation_role(r) == pool_name
        });
        if pool.is_empty() {
            return false;
        }
        let refined = pool.as_slice().iter().any(|r| r.reservations.len() > 1);
        let plain =
            refined.then(|| pool_resources(&pool, |r| r.reservations.len() <= 1).into_owned());
        // As in Mesos, reserved resources are worth an offer when they
        // are allocatable together with the unreserved ones the role
        // may get on the agent (a volume alone is only disk).
        let unreserved = pool_resources(&a.available, |r| resources::reservation_role(r) == "*");
        let found = self.pick(pool_role, agent, refined, &|this: &Self, f, role| {
            let capable = this.fw(f).is_none_or(|e| e.refinement);
            let pool = match &plain {
                Some(plain) if !capable => plain,
                _ => &pool,
            };
            let offered = this.fit(pool, &Quantities::INFINITE, role);
            if offered.is_empty() {
                return None;
            }
            let mut with_unreserved = unreserved.clone().into_owned();
            with_unreserved.add_all(&offered);
            this.min_allocatable
                .admits(&with_unreserved)
                .then_some(offered)
        });
        let Some((f, role, offered)) = found else {
            return false;
        };
        self.grant(f, agent, role, offered, out);
        true
    }

    /// The unmet guarantee of the nearest guaranteed role at or above `role`.
    fn unmet_guarantee(&self, role: RoleId) -> Option<Quantities> {
        self.ancestors(role).find_map(|g| {
            let n = &self.roles[g as usize];
            n.has_guarantee.then(|| {
                let mut unmet = n.guarantee;
                unmet.sub(&n.consumed());
                unmet
            })
        })
    }

    /// What of `pool` may be offered to `role` within `cap` and the limits;
    /// `None` when that is not worth an offer.
    fn offer_for(&self, pool: &Resources, cap: &Quantities, role: RoleId) -> Option<Resources> {
        let offered = self.fit(pool, cap, role);
        (!offered.is_empty() && self.min_allocatable.admits(&offered)).then_some(offered)
    }

    /// Cuts `pool` down so that scalars stay within `cap` and the role's
    /// (and its ancestors') limits.
    fn fit(&self, pool: &Resources, cap: &Quantities, role: RoleId) -> Resources {
        let mut cap = *cap;
        for r in self.ancestors(role) {
            let n = &self.roles[r as usize];
            if n.has_limit {
                let mut room = n.limit;
                room.sub(&n.consumed());
                cap.min_with(&room);
            }
        }
        if cap.is_infinite() {
            return pool.clone();
        }
        self.names.chop(pool, &cap)
    }

    fn grant(
        &mut self,
        f: FwIdx,
        agent: AgentIdx,
        role: RoleId,
        offered: Resources,
        out: &mut Vec<Allocation>,
    ) {
        let role_name = self.role_name(role).to_string();
        let allocated = offered.allocated_to(&role_name);
        // The role is known: account without looking it up per resource.
        let q = self.names.of(&offered);
        let mut rq = Quantities::ZERO;
        for r in offered.as_slice() {
            if resources::reservation_role(r) != "*" {
                rq.add(&self.names.of_one(r));
            }
        }
        self.adjust(f, role, &q, &rq, true);
        if let Some(a) = self.agents[agent as usize].as_mut() {
            a.available.subtract_all(&offered);
        }
        if let Some(e) = self.frameworks[f as usize].as_mut() {
            e.allocated.entry(agent).or_default().add_all(&allocated);
        }
        self.refresh_pools(agent);
        let (Some(fw), Some(a)) = (self.fw(f), self.agents[agent as usize].as_ref()) else {
            return;
        };
        match out.last_mut() {
            Some(last)
                if last.framework == fw.id && last.agent == a.id && last.role == role_name =>
            {
                last.resources.add_all(&allocated);
            }
            _ => out.push(Allocation {
                framework: fw.id.clone(),
                agent: a.id.clone(),
                role: role_name,
                resources: allocated,
            }),
        }
    }

    /// Picks the framework and role to offer `agent` to within the subtree
    /// of `start`, by weighted DRF at every level, together with the offer
    /// `make` computes for the framework and role (pairs it gives `None`
    /// are passed over). When the offer does not depend on the framework
    /// (`per_framework` false) only a role's first eligible framework is
    /// asked.
    fn pick(
        &self,
        start: RoleId,
        agent: AgentIdx,
        per_framework: bool,
        make: &dyn Fn(&Self, FwIdx, RoleId) -> Option<Resources>,
    ) -> Option<(FwIdx, RoleId, Resources)> {
        if self.roles[start as usize].subtree_frameworks == 0 {
            return None;
        }
        self.pick_in(start, agent, per_framework, make)
    }

    fn pick_in(
        &self,
        node: RoleId,
        agent: AgentIdx,
        per_framework: bool,
        make: &dyn Fn(&Self, FwIdx, RoleId) -> Option<Resources>,
    ) -> Option<(FwIdx, RoleId, Resources)> {
        let n = &self.roles[node as usize];
        for &(_, entry) in &n.order {
            if entry == SELF_ENTRY {
                for f in self.eligible_frameworks(node, agent) {
                    if let Some(offer) = make(self, f, node) {
                        return Some((f, node, offer));
                    }
                    if !per_framework {
                        break;
                    }
                }
            } else if self.roles[entry as usize].subtree_frameworks > 0 {
                if let Some(found) = self.pick_in(entry, agent, per_framework, make) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// The frameworks of `role` that may be offered `agent` now, lowest
    /// share first.
    fn eligible_frameworks(
        &self,
        role: RoleId,
        agent: AgentIdx,
    ) -> impl Iterator<Item = FwIdx> + '_ {
        let n = &self.roles[role as usize];
        n.fw_order.iter().filter_map(move |&(_, f)| {
            let e = self.fw(f)?;
            (e.active && !e.suppressed.contains(&role) && !e.filters.contains_key(&agent))
                .then_some(f)
        })
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

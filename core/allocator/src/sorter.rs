//! The sorter: the role tree and its orders by weighted dominant share, kept
//! apart from the allocation cycle. Each [`RoleNode`] keeps what its subtree
//! has allocated and reserved; its children (and its own frameworks, as a
//! virtual leaf, like Mesos' sorter) are ordered in a `BTreeSet` by the
//! bits of their weighted share, and frameworks within a role by their
//! share in it. Charging or releasing resources updates the keys along the
//! path to the root (`O(depth · log n)`); picking walks down the orders.

use std::collections::BTreeSet;

use super::*;

/// Entries of a node's order: a child role, or the node's own frameworks.
pub(crate) const SELF_ENTRY: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(crate) struct RoleNode {
    pub(crate) name: String,
    pub(crate) parent: Option<RoleId>,
    pub(crate) children: Vec<RoleId>,
    pub(crate) weight: f64,
    pub(crate) guarantee: Quantities,
    pub(crate) has_guarantee: bool,
    pub(crate) limit: Quantities,
    pub(crate) has_limit: bool,
    /// Allocated in the subtree (all pools).
    pub(crate) allocated: Quantities,
    /// Allocated to the role's own frameworks.
    pub(crate) allocated_self: Quantities,
    /// Reserved to the subtree on all agents (totals).
    pub(crate) reserved: Quantities,
    /// Allocated out of reservations of the subtree.
    pub(crate) allocated_reserved: Quantities,
    /// Frameworks subscribed to this role, by their share in it.
    pub(crate) fw_order: BTreeSet<(u64, FwIdx)>,
    /// Children and SELF_ENTRY, by weighted share.
    pub(crate) order: BTreeSet<(u64, u32)>,
    /// The key of this node in its parent's `order`.
    pub(crate) key: u64,
    /// The key of SELF_ENTRY in `order`.
    pub(crate) self_key: u64,
    /// Frameworks subscribed to roles in the subtree.
    pub(crate) subtree_frameworks: usize,
}

impl RoleNode {
    /// A role with nothing allocated, weight 1 and no quota.
    pub(crate) fn new(name: String, parent: Option<RoleId>) -> Self {
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

    pub(crate) fn consumed(&self) -> Quantities {
        let mut c = self.allocated;
        c.add(&self.reserved);
        c.sub(&self.allocated_reserved);
        c
    }
}

pub(crate) fn share_key(share: f64) -> u64 {
    // Non-negative finite floats order like their bit patterns.
    if share.is_finite() && share > 0.0 {
        share.to_bits()
    } else if share.is_infinite() {
        f64::MAX.to_bits()
    } else {
        0
    }
}

pub(crate) fn parent_of(role: &str) -> Option<&str> {
    role.rsplit_once('/').map(|(p, _)| p)
}

impl Allocator {
    /// The node of `role` ("*" is the root), created with its ancestors.
    pub(crate) fn role(&mut self, role: &str) -> RoleId {
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

    pub(crate) fn lookup_role(&self, role: &str) -> Option<RoleId> {
        if role == "*" {
            Some(0)
        } else {
            self.role_index.get(role).copied()
        }
    }

    pub(crate) fn ancestors(&self, role: RoleId) -> impl Iterator<Item = RoleId> + '_ {
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

    pub(crate) fn role_of(&self, f: FwIdx, r: &v1::Resource) -> Option<RoleId> {
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
    pub(crate) fn account(&mut self, f: FwIdx, resources: &Resources, add: bool) {
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
    pub(crate) fn charge(&mut self, f: FwIdx, agent: AgentIdx, resources: &Resources) {
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
    pub(crate) fn uncharge(&mut self, f: FwIdx, agent: AgentIdx, resources: &Resources) {
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

    pub(crate) fn role_name(&self, role: RoleId) -> &str {
        if role == 0 {
            "*"
        } else {
            &self.roles[role as usize].name
        }
    }

    /// Adds (or removes) quantities for framework `f` in `role` and all
    /// ancestors, keeping the sorted orders up to date.
    pub(crate) fn adjust(
        &mut self,
        f: FwIdx,
        role: RoleId,
        q: &Quantities,
        reserved: &Quantities,
        add: bool,
    ) {
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
    pub(crate) fn rebuild_orders(&mut self) {
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

    /// Picks the framework and role to offer `agent` to within the subtree
    /// of `start`, by weighted DRF at every level, together with the offer
    /// `make` computes for the framework and role (pairs it gives `None`
    /// are passed over). When the offer does not depend on the framework
    /// (`per_framework` false) only a role's first eligible framework is
    /// asked.
    pub(crate) fn pick(
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

    pub(crate) fn pick_in(
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
}

//! The allocation cycle: quota guarantees first (stage 1), then fair
//! sharing with headroom for unmet guarantees (stage 2), reserved pools
//! within their role's subtree, cut down to fit limits.

use super::*;

impl Allocator {
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

    pub(crate) fn run(&mut self, agents: &[AgentIdx]) -> Vec<Allocation> {
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
    pub(crate) fn required_headroom(&self) -> Quantities {
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

    pub(crate) fn agent_usable(&self, agent: AgentIdx) -> bool {
        let Some(a) = self.agents.get(agent as usize).and_then(|a| a.as_ref()) else {
            return false;
        };
        a.active
            && a.pools.iter().any(|(_, q)| !q.is_zero())
            && a.filtered_by < self.active_frameworks
    }

    pub(crate) fn allocate_guarantee(
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

    pub(crate) fn allocate_fair(
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
    pub(crate) fn allocate_reserved_pool(
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
    pub(crate) fn unmet_guarantee(&self, role: RoleId) -> Option<Quantities> {
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
    pub(crate) fn offer_for(
        &self,
        pool: &Resources,
        cap: &Quantities,
        role: RoleId,
    ) -> Option<Resources> {
        let offered = self.fit(pool, cap, role);
        (!offered.is_empty() && self.min_allocatable.admits(&offered)).then_some(offered)
    }

    /// Cuts `pool` down so that scalars stay within `cap` and the role's
    /// (and its ancestors') limits.
    pub(crate) fn fit(&self, pool: &Resources, cap: &Quantities, role: RoleId) -> Resources {
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

    pub(crate) fn grant(
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

    /// The frameworks of `role` that may be offered `agent` now, lowest
    /// share first.
    pub(crate) fn eligible_frameworks(
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

    pub(crate) fn mark_all_dirty(&mut self) {
        for (i, a) in self.agents.iter().enumerate() {
            if a.is_some() {
                self.dirty.insert(i as AgentIdx);
            }
        }
    }
}

//! Agents: added, removed, (de)activated, their free resources split into
//! pools (unreserved and per reservation role), and the cluster totals.

use super::*;

impl Allocator {
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
    pub(crate) fn refresh_pools(&mut self, idx: AgentIdx) {
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
    pub(crate) fn retotal(&mut self, idx: AgentIdx, total: Resources) {
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
}

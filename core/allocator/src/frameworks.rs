//! Frameworks: added, removed, their roles (MULTI_ROLE), activation,
//! SUPPRESS and REVIVE per role, and decline filters.

use super::*;

impl Allocator {
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

    pub(crate) fn set_roles(&mut self, f: FwIdx, roles: &[String]) {
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

    pub(crate) fn subscribe(&mut self, f: FwIdx, role: RoleId) {
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

    pub(crate) fn unsubscribe(&mut self, f: FwIdx, role: RoleId) {
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

    pub(crate) fn fw(&self, f: FwIdx) -> Option<&FrameworkEntry> {
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

    pub(crate) fn expire_filters(&mut self, now: Duration) {
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
}

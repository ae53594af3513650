//! Read-only views of the state for the operator API (GET_FRAMEWORKS,
//! GET_AGENTS, GET_TASKS, GET_EXECUTORS, GET_STATE, GET_ROLES).

use super::*;

impl Master {
    /// GET_FRAMEWORKS entry of a framework.
    pub fn framework_view(
        &self,
        framework_id: &str,
    ) -> Option<op::response::get_frameworks::Framework> {
        self.frameworks
            .get(framework_id)
            .map(|f| self.framework_to_view(f))
    }

    pub(crate) fn framework_to_view(
        &self,
        f: &Framework,
    ) -> op::response::get_frameworks::Framework {
        let time = |t: f64| v1::TimeInfo {
            nanoseconds: (t * 1e9) as i64,
        };
        let mut allocated = Resources::new();
        for a in self.agents.values() {
            if let Some(u) = a.used.get(&f.id) {
                allocated.add_all(u);
            }
        }
        let mut offered = Resources::new();
        for o in &f.offers {
            if let Some(e) = self.offers.get(o) {
                offered.add_all(&e.resources);
            }
        }
        op::response::get_frameworks::Framework {
            framework_info: f.info.clone(),
            active: f.active,
            connected: f.connected,
            recovered: f.recovered,
            registered_time: Some(time(f.registered_time)),
            reregistered_time: f.reregistered_time.map(time),
            unregistered_time: f.unregistered_time.map(time),
            offers: f
                .offers
                .iter()
                .filter_map(|o| self.offers.get(o).map(|e| e.offer.clone()))
                .collect(),
            allocated_resources: allocated.to_vec(),
            offered_resources: offered.to_vec(),
            ..Default::default()
        }
    }

    /// GET_AGENTS entry of an agent.
    pub fn agent_view(&self, agent_id: &str) -> Option<op::response::get_agents::Agent> {
        let a = self.agents.get(agent_id)?;
        let time = |t: f64| v1::TimeInfo {
            nanoseconds: (t * 1e9) as i64,
        };
        Some(op::response::get_agents::Agent {
            agent_info: a.info.clone(),
            active: a.connected,
            deactivated: Some(a.deactivated),
            drain_info: a.drain,
            version: a.version.clone(),
            pid: Some(a.pid()),
            registered_time: Some(time(a.registered_time)),
            reregistered_time: a.reregistered_time.map(time),
            total_resources: a.total.to_vec(),
            allocated_resources: a.used_total().to_vec(),
            offered_resources: a.offered.to_vec(),
            ..Default::default()
        })
    }

    /// GET_FRAMEWORKS.
    pub fn get_frameworks(&self) -> op::response::GetFrameworks {
        op::response::GetFrameworks {
            frameworks: self
                .frameworks
                .values()
                .map(|f| self.framework_to_view(f))
                .collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| self.framework_to_view(f))
                .collect(),
            recovered_frameworks: Vec::new(),
        }
    }

    /// GET_AGENTS.
    pub fn get_agents(&self) -> op::response::GetAgents {
        op::response::GetAgents {
            agents: self
                .agents
                .keys()
                .filter_map(|id| self.agent_view(id))
                .collect(),
            recovered_agents: Vec::new(),
        }
    }

    /// GET_TASKS.
    pub fn get_tasks(&self) -> op::response::GetTasks {
        let mut tasks = Vec::new();
        let mut completed = Vec::new();
        for f in self
            .frameworks
            .values()
            .chain(self.completed_frameworks.iter())
        {
            for t in f.tasks.values() {
                if is_terminal(t.state) {
                    completed.push(t.clone());
                } else {
                    tasks.push(t.clone());
                }
            }
            completed.extend(f.completed_tasks.iter().cloned());
        }
        op::response::GetTasks {
            tasks,
            completed_tasks: completed,
            ..Default::default()
        }
    }

    /// GET_EXECUTORS.
    pub fn get_executors(&self) -> op::response::GetExecutors {
        op::response::GetExecutors {
            executors: self
                .frameworks
                .values()
                .flat_map(|f| {
                    f.executors.iter().map(|((agent, _), info)| {
                        op::response::get_executors::Executor {
                            executor_info: info.clone(),
                            agent_id: v1::AgentId {
                                value: agent.clone(),
                            },
                        }
                    })
                })
                .collect(),
            orphan_executors: Vec::new(),
        }
    }

    /// GET_STATE.
    pub fn get_state(&self) -> op::response::GetState {
        op::response::GetState {
            get_tasks: Some(self.get_tasks()),
            get_executors: Some(self.get_executors()),
            get_frameworks: Some(self.get_frameworks()),
            get_agents: Some(self.get_agents()),
        }
    }

    /// GET_ROLES: every role with frameworks or reservations, and `*`.
    pub fn get_roles(&self) -> op::response::GetRoles {
        op::response::GetRoles {
            roles: self
                .role_views()
                .into_iter()
                .map(|r| v1::Role {
                    name: r.name,
                    weight: r.weight,
                    frameworks: r
                        .frameworks
                        .into_iter()
                        .map(|value| v1::FrameworkId { value })
                        .collect(),
                    resources: r.allocated.to_vec(),
                })
                .collect(),
        }
    }

    /// Every role with frameworks, reservations, allocations, a weight or
    /// quota (and `*`), with what the master and allocator know of it.
    pub fn role_views(&self) -> Vec<RoleView> {
        let mut roles: BTreeMap<String, RoleView> = BTreeMap::new();
        fn entry<'a>(roles: &'a mut BTreeMap<String, RoleView>, name: &str) -> &'a mut RoleView {
            roles.entry(name.to_string()).or_insert_with(|| RoleView {
                name: name.to_string(),
                weight: 1.0,
                ..Default::default()
            })
        }
        entry(&mut roles, "*");
        for info in self.allocator.roles() {
            let v = entry(&mut roles, &info.name);
            v.weight = info.weight;
            v.share = info.share;
            v.consumed = info.consumed;
        }
        for f in self.frameworks.values() {
            for role in f.roles() {
                entry(&mut roles, &role).frameworks.push(f.id.clone());
            }
        }
        let role_of = |r: &v1::Resource| {
            r.allocation_info
                .as_ref()
                .and_then(|i| i.role.clone())
                .unwrap_or_else(|| "*".to_string())
        };
        for a in self.agents.values() {
            for r in a.used.values().flat_map(|u| u.as_slice().iter()) {
                let v = entry(&mut roles, &role_of(r));
                v.allocated.add(r);
            }
            for r in a.total.as_slice() {
                let reserved = resources::reservation_role(r);
                if reserved != "*" {
                    entry(&mut roles, reserved).reserved.add(r);
                }
            }
        }
        for o in self.offers.values() {
            for r in o.resources.as_slice() {
                let v = entry(&mut roles, &role_of(r));
                v.offered.add(r);
                v.allocated.add(r);
            }
        }
        for (role, w) in &self.weights {
            entry(&mut roles, role).weight = *w;
        }
        for (role, q) in &self.quotas {
            entry(&mut roles, role).quota = Some(q.clone());
        }
        roles.into_values().collect()
    }
}

//! Agents: recovery from the registry after a failover, (re-)registration,
//! disconnection, health pings, removal, MARK_AGENT_GONE, and their messages.

use super::*;

impl Master {
    /// Brings weights, quota and maintenance schedules in line with the
    /// registry's state.
    pub fn apply_registry(&mut self, state: &crate::registry::RegistryState) {
        let weights: Vec<(String, f64)> =
            state.weights.iter().map(|(k, v)| (k.clone(), *v)).collect();
        self.set_weights(&weights);
        self.schedules = state.schedules.clone();
        let removed: Vec<String> = self
            .quotas
            .keys()
            .filter(|r| !state.quotas.contains_key(*r))
            .cloned()
            .collect();
        for role in removed {
            self.quotas.remove(&role);
            self.allocator.update_quota(&role, None);
        }
        for (role, config) in &state.quotas {
            self.allocator.update_quota(role, Some(&quota_of(config)));
            self.quotas.insert(role.clone(), config.clone());
        }
    }

    /// Takes the agents of a registry recovered at startup (or on becoming
    /// leader): admitted agents have `--agent_reregister_timeout` to come
    /// back; unreachable and gone agents stay so.
    pub fn recover_agents(&mut self, state: &crate::registry::RegistryState, now: Clock) {
        self.admitted = state.agents.keys().cloned().collect();
        self.unreachable = state
            .unreachable
            .iter()
            .map(|(id, u)| {
                (
                    id.clone(),
                    (u.info.clone(), u.since.nanoseconds as f64 / 1e9),
                )
            })
            .collect();
        self.gone = state.gone.keys().cloned().collect();
        self.recovering = state
            .agents
            .iter()
            .filter(|(id, _)| !self.agents.contains_key(*id))
            .map(|(id, info)| (id.clone(), info.clone()))
            .collect();
        self.reregister_deadline =
            (!self.recovering.is_empty()).then(|| now.mono + self.flags.agent_reregister_timeout);
        tracing::info!(
            admitted = self.admitted.len(),
            unreachable = self.unreachable.len(),
            gone = self.gone.len(),
            "agents recovered from the registry"
        );
    }

    /// Recovered agents that did not re-register in time become
    /// unreachable, unless more of them than `--recovery_agent_removal_limit`
    /// allows would (then none are, and the operator is told).
    pub(crate) fn expire_recovering(&mut self, now: Clock) {
        if self
            .reregister_deadline
            .is_none_or(|deadline| now.mono < deadline)
        {
            return;
        }
        self.reregister_deadline = None;
        let missing: Vec<(String, v1::AgentInfo)> =
            std::mem::take(&mut self.recovering).into_iter().collect();
        if missing.is_empty() {
            return;
        }
        let limit = crate::flags::parse_removal_limit(&self.flags.recovery_agent_removal_limit)
            .unwrap_or(1.0);
        let recovered = self.admitted.len().max(missing.len());
        if missing.len() as f64 > limit * recovered as f64 {
            tracing::error!(
                missing = missing.len(),
                recovered,
                limit = %self.flags.recovery_agent_removal_limit,
                "too many agents did not re-register after failover; none are marked unreachable"
            );
            self.counters.inc("master/recovery_slave_removals_refused");
            return;
        }
        let mut ops = Vec::new();
        for (id, info) in missing {
            tracing::warn!(agent_id = %id, "agent did not re-register after failover; marking it unreachable");
            self.admitted.remove(&id);
            self.unreachable.insert(id.clone(), (info, now.wall));
            ops.push(crate::registry::Operation::MarkUnreachable {
                agent_id: id,
                since: wall_time(now.wall),
            });
            self.counters.inc("master/recovery_slave_removals");
        }
        self.out.push(Effect::Registry(ops));
    }

    /// MARK_AGENT_GONE: the agent never comes back; its tasks are
    /// TASK_GONE_BY_OPERATOR and it is told to shut down.
    pub fn mark_agent_gone(&mut self, agent_id: &str, now: Clock) -> Result<(), String> {
        if self.gone.contains(agent_id) {
            return Ok(());
        }
        let known = self.agents.contains_key(agent_id)
            || self.admitted.contains(agent_id)
            || self.unreachable.contains_key(agent_id)
            || self.recovering.contains_key(agent_id);
        if !known {
            return Err(format!("unknown agent {agent_id}"));
        }
        // Durable first: every effect below (kills, TASK_GONE_BY_OPERATOR,
        // the operator's answer) waits for this write.
        self.out.push(Effect::Registry(vec![
            crate::registry::Operation::MarkGone {
                agent_id: agent_id.to_owned(),
                since: wall_time(now.wall),
            },
        ]));
        // Its tasks are killed if it still runs them; it is refused if it
        // tries to register again.
        let kills: Vec<(String, v1::TaskId)> = self
            .frameworks
            .values()
            .flat_map(|fw| {
                fw.tasks
                    .values()
                    .filter(|t| t.agent_id.value == agent_id && !is_terminal(t.state))
                    .map(|t| (fw.id.clone(), t.task_id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (fid, tid) in kills {
            self.emit_agent(
                agent_id,
                ToAgent::KillTask(internal::KillTask {
                    framework_id: v1::FrameworkId { value: fid },
                    task_id: tid,
                    kill_policy: None,
                }),
            );
        }
        self.rescind_agent_offers(agent_id);
        if self.agents.remove(agent_id).is_some() {
            self.allocator.remove_agent(agent_id);
        }
        let mut updates = Vec::new();
        for fw in self.frameworks.values_mut() {
            fw.executors.retain(|(a, _), _| a != agent_id);
            for t in fw.tasks.values() {
                if t.agent_id.value == agent_id
                    && (!is_terminal(t.state) || t.state == TaskState::TaskUnreachable as i32)
                {
                    updates.push((fw.id.clone(), t.task_id.clone()));
                }
            }
        }
        for (fid, tid) in updates {
            let status = self.master_status(
                &tid,
                Some(agent_id),
                TaskState::TaskGoneByOperator,
                Reason::AgentRemovedByOperator,
                "Agent was marked gone by the operator",
                now,
            );
            self.apply_master_status(&fid, status);
        }
        self.admitted.remove(agent_id);
        self.unreachable.remove(agent_id);
        self.recovering.remove(agent_id);
        self.gone.insert(agent_id.to_owned());
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::AgentRemoved as i32),
            agent_removed: Some(op::event::AgentRemoved {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
            }),
            ..Default::default()
        });
        tracing::info!(agent_id, "agent marked gone");
        Ok(())
    }

    /// An agent (re-)registers. Returns its id and the Registered message.
    pub fn register_agent(
        &mut self,
        reg: internal::RegisterAgent,
        now: Clock,
    ) -> Result<String, String> {
        let mut info = reg.agent_info;
        if info.hostname.is_empty() {
            return Err("AgentInfo.hostname must be set".into());
        }
        let mut upgraded = info.resources.clone();
        for r in &mut upgraded {
            resources::upgrade(r);
        }
        let total = Resources::try_from_vec(&upgraded)?;
        // The agent's checkpointed reservations and volumes: its total is
        // the truth (empty: exactly its static resources).
        let total = if reg.total_resources.is_empty() {
            total
        } else {
            operations::upgraded_total(&reg.total_resources)?
        };
        info.resources = upgraded;
        let id = match info.id.as_ref().map(|i| i.value.clone()) {
            Some(id) if !id.is_empty() => id,
            _ => {
                let id = format!("{}-S{}", self.info.id, self.next_agent);
                self.next_agent += 1;
                id
            }
        };
        info.id = Some(v1::AgentId { value: id.clone() });
        if self.gone.contains(&id) {
            return Err(format!("agent {id} has been marked gone"));
        }
        // Coming back from a partition (or after a failover that outlasted
        // --agent_reregister_timeout): partition-aware frameworks' tasks
        // continue, the others' were reported lost and are killed now.
        let returning = self.unreachable.contains_key(&id);
        let known = self.agents.contains_key(&id);
        // A re-registration: known to this master, back from a partition,
        // or recovered from the registry after a failover.
        let reregistered = known || returning || self.recovering.contains_key(&id);
        if known {
            // Re-registration: outstanding offers on it are stale.
            self.rescind_agent_offers(&id);
        }

        // Frameworks the agent knows about but this master does not.
        for fi in &reg.frameworks {
            let Some(fid) = fi.id.as_ref().map(|i| i.value.clone()) else {
                continue;
            };
            if self.frameworks.contains_key(&fid)
                || self.completed_frameworks.iter().any(|f| f.id == fid)
            {
                continue;
            }
            let timeout = fi.failover_timeout.unwrap_or(0.0).clamp(0.0, 1e9);
            self.allocator
                .add_framework(&fid, framework_roles(fi), false);
            self.allocator
                .set_reservation_refinement(&fid, has_capability(fi, FwCap::ReservationRefinement));
            self.frameworks.insert(
                fid.clone(),
                Framework {
                    id: fid.clone(),
                    info: fi.clone(),
                    connected: false,
                    active: false,
                    recovered: true,
                    stream_id: None,
                    registered_time: now.wall,
                    reregistered_time: None,
                    unregistered_time: None,
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    executors: BTreeMap::new(),
                    offers: BTreeSet::new(),
                    failover_deadline: Some(
                        now.mono + Duration::from_secs_f64(timeout).max(self.agent_timeout()),
                    ),
                },
            );
        }

        // What the agent runs, per framework, becomes its used resources.
        let mut used: BTreeMap<String, Resources> = BTreeMap::new();
        let mut tasks_to_shutdown = BTreeSet::new();
        let mut tasks_to_kill: Vec<(String, v1::TaskId)> = Vec::new();
        let reported: BTreeSet<(String, String)> = reg
            .tasks
            .iter()
            .map(|t| (t.framework_id.value.clone(), t.task_id.value.clone()))
            .collect();
        for t in &reg.tasks {
            let fid = t.framework_id.value.clone();
            let Some(fw) = self.frameworks.get_mut(&fid) else {
                tasks_to_shutdown.insert(fid);
                continue;
            };
            if is_terminal(t.state) && !fw.tasks.contains_key(&t.task_id.value) {
                continue;
            }
            if !is_terminal(t.state) {
                let lost_here = !fw.tasks.contains_key(&t.task_id.value)
                    && fw.completed_tasks.iter().any(|m| {
                        m.task_id == t.task_id
                            && (m.state == TaskState::TaskLost as i32
                                || m.state == TaskState::TaskUnreachable as i32)
                    });
                if lost_here || (returning && !fw.tasks.contains_key(&t.task_id.value)) {
                    if fw.partition_aware() {
                        // The task continues; the master learns its state.
                        fw.completed_tasks.retain(|m| m.task_id != t.task_id);
                        fw.tasks.insert(t.task_id.value.clone(), t.clone());
                    } else {
                        tasks_to_kill.push((fid.clone(), t.task_id.clone()));
                        continue;
                    }
                }
            }
            let entry = fw
                .tasks
                .entry(t.task_id.value.clone())
                .or_insert_with(|| t.clone());
            entry.agent_id = v1::AgentId { value: id.clone() };
            if !is_terminal(t.state) {
                used.entry(fid.clone())
                    .or_default()
                    .add_all(&Resources::from_vec(&t.resources));
            }
        }
        for e in &reg.executors {
            let Some(fid) = e.framework_id.as_ref().map(|f| f.value.clone()) else {
                continue;
            };
            if let Some(fw) = self.frameworks.get_mut(&fid) {
                fw.executors
                    .insert((id.clone(), e.executor_id.value.clone()), e.clone());
                used.entry(fid.clone())
                    .or_default()
                    .add_all(&Resources::from_vec(&e.resources));
            }
        }
        // Tasks the master launched there that the agent never got.
        let mut lost = Vec::new();
        for fw in self.frameworks.values() {
            for t in fw.tasks.values() {
                if t.agent_id.value == id
                    && !is_terminal(t.state)
                    && !reported.contains(&(fw.id.clone(), t.task_id.value.clone()))
                    && known
                {
                    lost.push((fw.id.clone(), t.task_id.clone(), fw.partition_aware()));
                }
            }
        }
        for (fid, tid, pa) in lost {
            let state = if pa {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            let status = self.master_status(
                &tid,
                Some(&id),
                state,
                Reason::AgentReregistered,
                "Task was not received by the agent",
                now,
            );
            self.apply_master_status(&fid, status);
        }
        for fid in tasks_to_shutdown {
            self.emit_agent(
                &id,
                ToAgent::ShutdownFramework(internal::ShutdownFramework {
                    framework_id: v1::FrameworkId { value: fid },
                }),
            );
        }

        let used_list: Vec<(String, Resources)> =
            used.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if self.allocator.has_agent(&id) {
            self.allocator.remove_agent(&id);
        }
        self.allocator.add_agent(&id, total.clone(), &used_list);
        let registered_time = self
            .agents
            .get(&id)
            .map(|a| a.registered_time)
            .unwrap_or(now.wall);
        // The operator's deactivation and draining outlive a reconnection.
        let (deactivated, drain) = self
            .agents
            .get(&id)
            .map(|a| (a.deactivated, a.drain))
            .unwrap_or((false, None));
        if deactivated {
            self.allocator.set_agent_active(&id, false);
        }
        self.agents.insert(
            id.clone(),
            Agent {
                id: id.clone(),
                info: info.clone(),
                endpoint: reg.endpoint,
                version: reg.version,
                registered_time,
                reregistered_time: reregistered.then_some(now.wall),
                connected: true,
                total,
                used,
                offered: Resources::new(),
                disconnected_at: None,
                pings_outstanding: 0,
                deactivated,
                drain,
            },
        );
        self.learn_agent_operations(&id, reg.operations);
        self.counters.inc(if reregistered {
            "master/slave_reregistrations"
        } else {
            "master/slave_registrations"
        });
        self.recovering.remove(&id);
        if returning || !self.admitted.contains(&id) {
            self.unreachable.remove(&id);
            self.admitted.insert(id.clone());
            self.out.push(Effect::Registry(vec![
                crate::registry::Operation::AdmitAgent(info.clone()),
            ]));
        }
        self.emit_agent(
            &id,
            ToAgent::Registered(internal::Registered {
                agent_id: v1::AgentId { value: id.clone() },
                master_info: self.info.clone(),
                ping_interval_seconds: self.flags.agent_ping_timeout.as_secs_f64(),
            }),
        );
        // After Registered, so that the agent's session is there for them.
        for (fid, tid) in tasks_to_kill {
            tracing::info!(agent_id = %id, framework_id = %fid, task_id = %tid.value, "killing a task of a framework that is not partition-aware on a returning agent");
            self.emit_agent(
                &id,
                ToAgent::KillTask(internal::KillTask {
                    framework_id: v1::FrameworkId { value: fid },
                    task_id: tid,
                    kill_policy: None,
                }),
            );
        }
        if let Some(view) = self.agent_view(&id) {
            self.emit_op(op::Event {
                r#type: Some(op::event::Type::AgentAdded as i32),
                agent_added: Some(op::event::AgentAdded { agent: view }),
                ..Default::default()
            });
        }
        tracing::info!(agent_id = %id, hostname = %info.hostname, reregistered, "agent registered");
        Ok(id)
    }

    pub(crate) fn agent_timeout(&self) -> Duration {
        self.flags.agent_ping_timeout * self.flags.max_agent_ping_timeouts.max(1)
    }

    /// An agent's session ended.
    pub fn agent_disconnected(&mut self, agent_id: &str, now: Clock) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if !agent.connected {
            return;
        }
        agent.connected = false;
        agent.disconnected_at = Some(now.mono);
        self.allocator.set_agent_active(agent_id, false);
        self.rescind_agent_offers(agent_id);
        tracing::warn!(agent_id, "agent disconnected");
    }

    /// Removes an agent that did not come back: its tasks are lost
    /// (unreachable for partition-aware frameworks).
    pub fn remove_agent(&mut self, agent_id: &str, now: Clock) {
        self.rescind_agent_offers(agent_id);
        let Some(agent) = self.agents.remove(agent_id) else {
            return;
        };
        self.allocator.remove_agent(agent_id);
        if self.admitted.remove(agent_id) {
            self.out.push(Effect::Registry(vec![
                crate::registry::Operation::MarkUnreachable {
                    agent_id: agent_id.to_owned(),
                    since: wall_time(now.wall),
                },
            ]));
        }
        self.unreachable
            .insert(agent_id.to_owned(), (agent.info.clone(), now.wall));
        let mut updates = Vec::new();
        for fw in self.frameworks.values_mut() {
            fw.executors.retain(|(a, _), _| a != agent_id);
            for t in fw.tasks.values() {
                if t.agent_id.value == agent_id && !is_terminal(t.state) {
                    updates.push((fw.id.clone(), t.task_id.clone(), fw.partition_aware()));
                }
            }
        }
        for (fid, tid, pa) in updates {
            let state = if pa {
                TaskState::TaskUnreachable
            } else {
                TaskState::TaskLost
            };
            let mut status = self.master_status(
                &tid,
                Some(agent_id),
                state,
                Reason::AgentRemoved,
                "Agent was removed after it stopped answering pings",
                now,
            );
            if pa {
                status.unreachable_time = Some(wall_time(now.wall));
            }
            self.apply_master_status(&fid, status);
        }
        self.counters.inc("master/slave_removals");
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::AgentRemoved as i32),
            agent_removed: Some(op::event::AgentRemoved {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
            }),
            ..Default::default()
        });
        tracing::warn!(agent_id, "agent removed");
    }

    /// A message from a registered agent's session. (`_now`: every input
    /// of the core takes the time; no agent message needs it yet.)
    pub fn agent_message(
        &mut self,
        agent_id: &str,
        msg: internal::agent_message::Message,
        _now: Clock,
    ) {
        use internal::agent_message::Message as FromAgent;
        match msg {
            FromAgent::Register(_) => {
                tracing::warn!(agent_id, "duplicate register on a live session ignored");
            }
            FromAgent::Pong(_) => {
                if let Some(a) = self.agents.get_mut(agent_id) {
                    a.pings_outstanding = 0;
                }
            }
            FromAgent::StatusUpdate(u) => self.status_update(agent_id, u),
            FromAgent::ExecutorExited(e) => self.executor_exited(agent_id, e),
            FromAgent::OperationUpdate(u) => self.operation_update(agent_id, u),
            FromAgent::ExecutorToFramework(m) => {
                self.counters.inc("master/messages_executor_to_framework");
                self.emit_fw(
                    &m.framework_id.value,
                    scheduler::Event {
                        r#type: Some(scheduler::event::Type::Message as i32),
                        message: Some(scheduler::event::Message {
                            agent_id: v1::AgentId {
                                value: agent_id.to_string(),
                            },
                            executor_id: m.executor_id,
                            data: m.data,
                        }),
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// Sends a ping to every connected agent; an agent with too many
    /// unanswered pings is disconnected.
    pub fn ping_agents(&mut self, now: Clock, seq: u64) {
        let max = self.flags.max_agent_ping_timeouts.max(1);
        let ids: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.connected)
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            let outstanding = self
                .agents
                .get(&id)
                .map(|a| a.pings_outstanding)
                .unwrap_or(0);
            if outstanding >= max {
                tracing::warn!(agent_id = %id, pings = outstanding, "agent missed pings");
                self.out.push(Effect::CloseAgent {
                    agent_id: id.clone(),
                });
                self.agent_disconnected(&id, now);
                continue;
            }
            if let Some(a) = self.agents.get_mut(&id) {
                a.pings_outstanding += 1;
            }
            self.emit_agent(&id, ToAgent::Ping(internal::Ping { seq }));
        }
    }

    // ---------------------------------------------------------------
    // Views (operator API)
    // ---------------------------------------------------------------
}

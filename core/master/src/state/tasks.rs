//! Tasks after launch: KILL, ACKNOWLEDGE, reconciliation (explicit and
//! implicit, by agent state), status updates and executor exits from agents.

use super::*;

impl Master {
    pub(crate) fn master_status(
        &self,
        task_id: &v1::TaskId,
        agent_id: Option<&str>,
        state: TaskState,
        reason: Reason,
        message: impl Into<String>,
        now: Clock,
    ) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task_id.clone(),
            state: state as i32,
            message: Some(message.into()),
            source: Some(Source::Master as i32),
            reason: Some(reason as i32),
            agent_id: agent_id.map(|a| v1::AgentId {
                value: a.to_string(),
            }),
            timestamp: Some(now.wall),
            ..Default::default()
        }
    }

    pub(crate) fn send_update(&mut self, framework_id: &str, status: v1::TaskStatus) {
        self.emit_fw(framework_id, update_event(status));
    }

    pub(crate) fn kill(&mut self, framework_id: &str, kill: scheduler::call::Kill, now: Clock) {
        self.counters.inc("master/messages_kill_task");
        let task = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.tasks.get(&kill.task_id.value))
            .cloned();
        match task {
            Some(t) if !is_terminal(t.state) => {
                self.emit_agent(
                    &t.agent_id.value,
                    ToAgent::KillTask(internal::KillTask {
                        framework_id: v1::FrameworkId {
                            value: framework_id.to_string(),
                        },
                        task_id: kill.task_id,
                        kill_policy: kill.kill_policy.or(t.kill_policy),
                    }),
                );
            }
            Some(_) => {}
            None => {
                let pa = self
                    .frameworks
                    .get(framework_id)
                    .is_some_and(|f| f.partition_aware());
                let state = if pa {
                    TaskState::TaskUnknown
                } else {
                    TaskState::TaskLost
                };
                let status = self.master_status(
                    &kill.task_id,
                    kill.agent_id.as_ref().map(|a| a.value.as_str()),
                    state,
                    Reason::Reconciliation,
                    "Attempted to kill an unknown task",
                    now,
                );
                self.send_update(framework_id, status);
            }
        }
    }

    pub(crate) fn acknowledge(
        &mut self,
        framework_id: &str,
        ack: scheduler::call::Acknowledge,
    ) -> Result<(), CallError> {
        if ack.uuid.len() != 16 {
            return Err(CallError::BadRequest(
                "'acknowledge.uuid' must be a 16-byte UUID".into(),
            ));
        }
        self.counters
            .inc("master/messages_status_update_acknowledgement");
        let agent_id = ack.agent_id.value.clone();
        if let Some(fw) = self.frameworks.get_mut(framework_id) {
            let done = fw.tasks.get(&ack.task_id.value).is_some_and(|t| {
                // Complete only when the acknowledged update itself is
                // terminal: a RUNNING update may arrive with a terminal
                // `latest_state`, and its FINISHED is still to come.
                t.status_update_state.is_some_and(is_terminal)
                    && t.status_update_uuid.as_deref() == Some(&ack.uuid[..])
            });
            if done {
                if let Some(t) = fw.tasks.remove(&ack.task_id.value) {
                    fw.completed_tasks.push_back(t);
                    while fw.completed_tasks.len() > self.flags.max_completed_tasks_per_framework {
                        fw.completed_tasks.pop_front();
                    }
                }
            }
        }
        if self.agents.contains_key(&agent_id) {
            self.emit_agent(
                &agent_id,
                ToAgent::Acknowledge(internal::AcknowledgeUpdate {
                    framework_id: v1::FrameworkId {
                        value: framework_id.to_string(),
                    },
                    task_id: ack.task_id,
                    uuid: ack.uuid,
                }),
            );
        }
        Ok(())
    }

    pub(crate) fn reconcile(
        &mut self,
        framework_id: &str,
        r: scheduler::call::Reconcile,
        now: Clock,
    ) {
        self.counters.inc("master/messages_reconcile_tasks");
        let Some(fw) = self.frameworks.get(framework_id) else {
            return;
        };
        let pa = fw.partition_aware();
        let mut statuses = Vec::new();
        let mut held = 0usize;
        if r.tasks.is_empty() {
            // Implicit: every task the master knows, by its latest state,
            // and the tasks of agents that are unreachable now; never for
            // an agent still transitioning (recovered, not re-registered).
            for t in fw.tasks.values() {
                if !self.recovering.contains_key(&t.agent_id.value) {
                    statuses.push(reconcile_status(t, now));
                }
            }
            let mut seen = BTreeSet::new();
            for t in fw.completed_tasks.iter().rev() {
                let unreachable_state = t.state == TaskState::TaskUnreachable as i32
                    || t.state == TaskState::TaskLost as i32;
                if unreachable_state
                    && self.unreachable.contains_key(&t.agent_id.value)
                    && !fw.tasks.contains_key(&t.task_id.value)
                    && seen.insert(t.task_id.value.as_str())
                {
                    statuses.push(reconcile_status(t, now));
                }
            }
        } else {
            for rt in &r.tasks {
                // Known: running, or the latest completed run of that id.
                let known = fw.tasks.get(&rt.task_id.value).or_else(|| {
                    fw.completed_tasks
                        .iter()
                        .rev()
                        .find(|t| t.task_id == rt.task_id)
                });
                let agent_id = rt.agent_id.as_ref().map(|a| a.value.as_str());
                match known {
                    Some(t) => statuses.push(reconcile_status(t, now)),
                    None => match self.reconcile_unknown(&rt.task_id, agent_id, pa, now) {
                        Some(s) => statuses.push(s),
                        None => held += 1,
                    },
                }
            }
        }
        if held > 0 {
            // One line per call, however many tasks it names.
            tracing::info!(
                framework_id,
                tasks = held,
                transitioning_agents = self.recovering.len(),
                "no answer to reconciliation of unknown tasks while agents have not re-registered since the failover"
            );
        }
        for s in statuses {
            self.send_update(framework_id, s);
        }
    }

    /// The answer to explicit reconciliation of a task the master does not
    /// know, by the state of the agent it names (Mesos' cases): registered ->
    /// TASK_GONE / TASK_LOST; recovered from the registry and not yet
    /// re-registered -> no answer (the framework retries, and is answered
    /// once the agent re-registers or is marked unreachable); unreachable ->
    /// TASK_UNREACHABLE / TASK_LOST; gone -> TASK_GONE_BY_OPERATOR /
    /// TASK_LOST; unknown -> TASK_UNKNOWN / TASK_LOST. Without an agent id
    /// there is no answer while any agent is still transitioning.
    pub(crate) fn reconcile_unknown(
        &self,
        task_id: &v1::TaskId,
        agent_id: Option<&str>,
        partition_aware: bool,
        now: Clock,
    ) -> Option<v1::TaskStatus> {
        let lost_unless = |state: TaskState| {
            if partition_aware {
                state
            } else {
                TaskState::TaskLost
            }
        };
        let (state, message) = match agent_id {
            Some(a) if self.agents.contains_key(a) => (
                lost_unless(TaskState::TaskGone),
                "Reconciliation: Task is unknown to the agent",
            ),
            Some(a) if self.recovering.contains_key(a) => return None,
            Some(a) if self.unreachable.contains_key(a) => (
                lost_unless(TaskState::TaskUnreachable),
                "Reconciliation: Task is unreachable",
            ),
            Some(a) if self.gone.contains(a) => (
                lost_unless(TaskState::TaskGoneByOperator),
                "Reconciliation: Task is gone",
            ),
            None if !self.recovering.is_empty() => return None,
            _ => (
                lost_unless(TaskState::TaskUnknown),
                "Reconciliation: Task is unknown",
            ),
        };
        let mut status = self.master_status(
            task_id,
            agent_id,
            state,
            Reason::Reconciliation,
            message,
            now,
        );
        if state == TaskState::TaskUnreachable {
            status.unreachable_time = agent_id
                .and_then(|a| self.unreachable.get(a))
                .map(|(_, since)| wall_time(*since));
        }
        Some(status)
    }

    /// Applies a master-generated terminal status to a task and tells the
    /// framework (no acknowledgement expected).
    pub(crate) fn apply_master_status(&mut self, framework_id: &str, status: v1::TaskStatus) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        let Some(mut t) = fw.tasks.remove(&status.task_id.value) else {
            return;
        };
        t.state = status.state;
        t.statuses.push(status.clone());
        let agent = t.agent_id.value.clone();
        let res = Resources::from_vec(&t.resources);
        fw.completed_tasks.push_back(t);
        while fw.completed_tasks.len() > self.flags.max_completed_tasks_per_framework {
            fw.completed_tasks.pop_front();
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            if let Some(u) = a.used.get_mut(framework_id) {
                u.subtract_all(&res);
            }
            self.allocator.recover(framework_id, &agent, &res, None);
        }
        if let Some(m) = task_metric(status.state) {
            self.counters.inc(m);
        }
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::TaskUpdated as i32),
            task_updated: Some(op::event::TaskUpdated {
                framework_id: v1::FrameworkId {
                    value: framework_id.to_string(),
                },
                status: status.clone(),
                state: status.state,
            }),
            ..Default::default()
        });
        self.send_update(framework_id, status);
    }

    pub(crate) fn status_update(&mut self, agent_id: &str, u: internal::StatusUpdate) {
        let fid = u.framework_id.value.clone();
        let mut status = u.status;
        status.agent_id = Some(v1::AgentId {
            value: agent_id.to_string(),
        });
        let latest = u.latest_state.unwrap_or(status.state);
        let Some(fw) = self.frameworks.get_mut(&fid) else {
            // The framework is gone: acknowledge so the agent stops retrying.
            self.counters.inc("master/invalid_status_updates");
            if let Some(uuid) = status.uuid.clone() {
                self.emit_agent(
                    agent_id,
                    ToAgent::Acknowledge(internal::AcknowledgeUpdate {
                        framework_id: u.framework_id,
                        task_id: status.task_id.clone(),
                        uuid,
                    }),
                );
            }
            return;
        };
        self.counters.inc("master/valid_status_updates");
        let connected = fw.connected;
        let mut freed = None;
        if let Some(t) = fw.tasks.get_mut(&status.task_id.value) {
            let was_terminal = is_terminal(t.state);
            t.state = latest;
            t.status_update_state = Some(status.state);
            t.status_update_uuid = status.uuid.clone();
            // Keep the history bounded: the first and the latest few.
            t.statuses.push(status.clone());
            if t.statuses.len() > 16 {
                t.statuses.remove(1);
            }
            if !was_terminal && is_terminal(latest) {
                freed = Some(Resources::from_vec(&t.resources));
                if let Some(m) = task_metric(latest) {
                    self.counters.inc(m);
                }
            }
        } else if fw
            .completed_tasks
            .iter()
            .any(|t| t.task_id == status.task_id)
        {
            // A retried update of a task already completed here: forward it
            // again so the framework acknowledges it, but keep one record.
        } else {
            // Unknown task (e.g. from before a master restart): adopt it.
            fw.tasks.insert(
                status.task_id.value.clone(),
                v1::Task {
                    name: String::new(),
                    task_id: status.task_id.clone(),
                    framework_id: u.framework_id.clone(),
                    executor_id: u.executor_id.clone(),
                    agent_id: v1::AgentId {
                        value: agent_id.to_string(),
                    },
                    state: latest,
                    statuses: vec![status.clone()],
                    status_update_state: Some(status.state),
                    status_update_uuid: status.uuid.clone(),
                    ..Default::default()
                },
            );
        }
        if let Some(res) = freed {
            if let Some(a) = self.agents.get_mut(agent_id) {
                if let Some(used) = a.used.get_mut(&fid) {
                    used.subtract_all(&res);
                }
            }
            self.allocator.recover(&fid, agent_id, &res, None);
        }
        if matches!(TaskState::try_from(latest), Ok(TaskState::TaskRunning)) {
            // Counted once per task through its first RUNNING update.
        }
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::TaskUpdated as i32),
            task_updated: Some(op::event::TaskUpdated {
                framework_id: u.framework_id.clone(),
                status: status.clone(),
                state: latest,
            }),
            ..Default::default()
        });
        if connected {
            self.send_update(&fid, status);
        }
    }

    pub(crate) fn executor_exited(&mut self, agent_id: &str, e: internal::ExecutorExited) {
        let fid = e.framework_id.value.clone();
        let key = (agent_id.to_string(), e.executor_id.value.clone());
        let mut freed = None;
        if let Some(fw) = self.frameworks.get_mut(&fid) {
            if let Some(info) = fw.executors.remove(&key) {
                freed = Some(Resources::from_vec(&info.resources));
            }
        }
        if let Some(res) = freed {
            if let Some(a) = self.agents.get_mut(agent_id) {
                if let Some(used) = a.used.get_mut(&fid) {
                    used.subtract_all(&res);
                }
            }
            self.allocator.recover(&fid, agent_id, &res, None);
        }
        self.emit_fw(
            &fid,
            scheduler::Event {
                r#type: Some(scheduler::event::Type::Failure as i32),
                failure: Some(scheduler::event::Failure {
                    agent_id: Some(v1::AgentId {
                        value: agent_id.to_string(),
                    }),
                    executor_id: Some(e.executor_id),
                    // Mesos always sets it: the wait status, or -1 when the
                    // agent does not know it (an executor it recovered after
                    // a restart is not its child); clients read it.
                    status: Some(e.status.unwrap_or(-1)),
                }),
                ..Default::default()
            },
        );
    }

    // ---------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------
}

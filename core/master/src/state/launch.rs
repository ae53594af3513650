//! ACCEPT: offer operations, LAUNCH and LAUNCH_GROUP with their task
//! validation, and recording what was launched.

use super::*;

impl Master {
    /// ACCEPT: validate the offers and every operation, launch what is valid.
    pub(crate) fn accept(
        &mut self,
        framework_id: &str,
        accept: scheduler::call::Accept,
        now: Clock,
    ) {
        self.counters.inc("master/messages_accept_offers");
        let refuse = refuse_duration(accept.filters.as_ref());
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        let refinement = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.has_capability(FwCap::ReservationRefinement));

        // Validate the offers: known, ours, one agent, no duplicates.
        let mut offer_error = None;
        let mut seen = BTreeSet::new();
        let mut agent_id: Option<String> = None;
        if accept.offer_ids.is_empty() {
            offer_error = Some("No offers specified".to_string());
        }
        for oid in &accept.offer_ids {
            if !seen.insert(oid.value.clone()) {
                offer_error = Some(format!("Duplicate offer {} in ACCEPT", oid.value));
                break;
            }
            match self.offers.get(&oid.value) {
                None => {
                    offer_error = Some(format!("Offer {} is no longer valid", oid.value));
                    break;
                }
                Some(o) if o.offer.framework_id.value != framework_id => {
                    offer_error = Some(format!(
                        "Offer {} has invalid framework {} while framework {} is expected",
                        oid.value, o.offer.framework_id.value, framework_id
                    ));
                    break;
                }
                Some(o) => match &agent_id {
                    Some(a) if *a != o.offer.agent_id.value => {
                        offer_error =
                            Some("Aggregated offers must belong to one single agent".into());
                        break;
                    }
                    _ => agent_id = Some(o.offer.agent_id.value.clone()),
                },
            }
        }

        if let Some(err) = offer_error {
            // Every offer that is valid and ours is returned; every task is
            // reported lost (dropped for partition-aware frameworks).
            for oid in &accept.offer_ids {
                if self
                    .offers
                    .get(&oid.value)
                    .is_some_and(|o| o.offer.framework_id.value == framework_id)
                {
                    self.remove_offer(&oid.value, None);
                }
            }
            let state = if partition_aware {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            for task in operation_tasks(&accept.operations) {
                let status = self.master_status(
                    &task.task_id,
                    None,
                    state,
                    Reason::InvalidOffers,
                    err.clone(),
                    now,
                );
                self.send_update(framework_id, status);
            }
            self.refuse_accept_operations(framework_id, &accept.operations, &err);
            self.counters.inc("master/invalid_operations");
            tracing::info!(framework_id, error = %err, "refused accept");
            return;
        }
        let Some(agent_id) = agent_id else { return };

        // Pool the offered resources.
        let mut offered = Resources::new();
        let mut role = "*".to_string();
        for oid in &accept.offer_ids {
            if let Some(o) = self.remove_offer_keep_allocation(&oid.value) {
                offered.add_all(&o.resources);
                role = o.role;
            }
        }
        let mut remaining = offered.clone();

        for operation in accept.operations {
            let ty = operation
                .r#type
                .and_then(|t| OpType::try_from(t).ok())
                .unwrap_or(OpType::Unknown);
            match ty {
                OpType::Launch => {
                    let Some(launch) = operation.launch else {
                        continue;
                    };
                    for task in launch.task_infos {
                        self.launch_one(
                            framework_id,
                            &agent_id,
                            &role,
                            task,
                            None,
                            &mut remaining,
                            now,
                        );
                    }
                }
                OpType::LaunchGroup => {
                    let Some(group) = operation.launch_group else {
                        continue;
                    };
                    self.launch_group(framework_id, &agent_id, &role, group, &mut remaining, now);
                }
                OpType::Reserve
                | OpType::Unreserve
                | OpType::Create
                | OpType::Destroy
                | OpType::GrowVolume
                | OpType::ShrinkVolume => {
                    self.accept_operation(
                        framework_id,
                        &agent_id,
                        &role,
                        refinement,
                        operation,
                        &mut remaining,
                    );
                }
                other => {
                    tracing::info!(framework_id, operation = ?other, "unsupported offer operation dropped");
                    self.counters.inc("master/invalid_operations");
                }
            }
        }
        // Unused resources count as declined.
        self.allocator.recover(
            framework_id,
            &agent_id,
            &remaining,
            Some((now.mono, refuse)),
        );
    }

    /// Converts resources a framework sent to the master's internal form.
    pub(crate) fn normalize_resources(
        rs: &[v1::Resource],
        role: &str,
    ) -> Result<Resources, String> {
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            let mut r = r.clone();
            resources::upgrade(&mut r);
            resources::validate(&r)?;
            r.allocation_info = Some(v1::resource::AllocationInfo {
                role: Some(role.to_string()),
            });
            out.push(r);
        }
        Ok(Resources::from_vec(&out))
    }

    pub(crate) fn task_error(
        &mut self,
        framework_id: &str,
        task_id: &v1::TaskId,
        reason: Reason,
        msg: String,
        now: Clock,
    ) {
        let status = self.master_status(task_id, None, TaskState::TaskError, reason, msg, now);
        self.counters.inc("master/tasks_error");
        self.send_update(framework_id, status);
    }

    pub(crate) fn validate_task_basics(
        &self,
        framework_id: &str,
        task: &v1::TaskInfo,
    ) -> Result<(), String> {
        if task.task_id.value.is_empty() {
            return Err("Task ID must not be empty".into());
        }
        if task.task_id.value.contains('/') || task.task_id.value.contains('\0') {
            return Err(format!(
                "Task ID '{}' contains invalid characters",
                task.task_id.value
            ));
        }
        if let Some(fw) = self.frameworks.get(framework_id) {
            if fw.tasks.contains_key(&task.task_id.value) {
                return Err(format!("Task has duplicate ID: {}", task.task_id.value));
            }
        }
        if task.resources.is_empty() {
            return Err("Task uses no resources".into());
        }
        Ok(())
    }

    pub(crate) fn launch_one(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        mut task: v1::TaskInfo,
        group_executor: Option<&v1::ExecutorInfo>,
        remaining: &mut Resources,
        now: Clock,
    ) {
        let task_id = task.task_id.clone();
        if let Err(e) = self.validate_task_basics(framework_id, &task) {
            self.task_error(framework_id, &task_id, Reason::TaskInvalid, e, now);
            return;
        }
        if group_executor.is_none() && (task.executor.is_some() == task.command.is_some()) {
            let msg = if task.executor.is_some() {
                "Task should have at most one of CommandInfo or ExecutorInfo present"
            } else {
                "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
            };
            self.task_error(framework_id, &task_id, Reason::TaskInvalid, msg.into(), now);
            return;
        }
        let task_resources = match Self::normalize_resources(&task.resources, role) {
            Ok(r) => r,
            Err(e) => {
                self.task_error(
                    framework_id,
                    &task_id,
                    Reason::TaskInvalid,
                    format!("Task uses invalid resources: {e}"),
                    now,
                );
                return;
            }
        };
        let mut needed = task_resources.clone();
        // A custom executor that is not running yet needs its resources too.
        let mut new_executor = None;
        if let Some(exec) = task.executor.as_mut() {
            exec.framework_id = Some(v1::FrameworkId {
                value: framework_id.to_string(),
            });
            if exec.executor_id.value.is_empty() {
                self.task_error(
                    framework_id,
                    &task_id,
                    Reason::TaskInvalid,
                    "ExecutorInfo has an empty executor_id".into(),
                    now,
                );
                return;
            }
            let key = (agent_id.to_string(), exec.executor_id.value.clone());
            let running = self
                .frameworks
                .get(framework_id)
                .is_some_and(|f| f.executors.contains_key(&key));
            if !running {
                match Self::normalize_resources(&exec.resources, role) {
                    Ok(r) => {
                        needed.add_all(&r);
                        let mut e = exec.clone();
                        e.resources = r.to_vec();
                        new_executor = Some(e);
                    }
                    Err(e) => {
                        self.task_error(
                            framework_id,
                            &task_id,
                            Reason::TaskInvalid,
                            format!("Executor uses invalid resources: {e}"),
                            now,
                        );
                        return;
                    }
                }
            }
        }
        if !remaining.contains(&needed) {
            self.task_error(
                framework_id,
                &task_id,
                Reason::TaskInvalid,
                format!(
                    "Task {} attempted to use resources {} which exceeds the available resources {} in the offer",
                    task_id.value, needed, remaining
                ),
                now,
            );
            return;
        }
        remaining.subtract_all(&needed);
        task.agent_id = v1::AgentId {
            value: agent_id.to_string(),
        };
        task.resources = task_resources.to_vec();
        if let Some(exec) = &new_executor {
            task.executor = Some(exec.clone());
        }
        self.record_launch(
            framework_id,
            agent_id,
            &task,
            group_executor,
            new_executor,
            &needed,
        );
        if group_executor.is_none() {
            let framework_info = self
                .frameworks
                .get(framework_id)
                .map(|f| f.info.clone())
                .unwrap_or_default();
            let executor_info = task.executor.take();
            self.emit_agent(
                agent_id,
                ToAgent::RunTask(internal::RunTask {
                    framework_info,
                    executor_info,
                    task: Some(task),
                    task_group: None,
                }),
            );
        }
    }

    pub(crate) fn record_launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        task: &v1::TaskInfo,
        group_executor: Option<&v1::ExecutorInfo>,
        new_executor: Option<v1::ExecutorInfo>,
        used: &Resources,
    ) {
        let executor_id = group_executor
            .map(|e| e.executor_id.clone())
            .or_else(|| task.executor.as_ref().map(|e| e.executor_id.clone()));
        let record = v1::Task {
            name: task.name.clone(),
            task_id: task.task_id.clone(),
            framework_id: v1::FrameworkId {
                value: framework_id.to_string(),
            },
            executor_id,
            agent_id: v1::AgentId {
                value: agent_id.to_string(),
            },
            state: TaskState::TaskStaging as i32,
            resources: task.resources.clone(),
            labels: task.labels.clone(),
            discovery: task.discovery.clone(),
            container: task.container.clone(),
            health_check: task.health_check.clone(),
            kill_policy: task.kill_policy,
            user: self
                .frameworks
                .get(framework_id)
                .map(|f| f.info.user.clone()),
            ..Default::default()
        };
        if let Some(fw) = self.frameworks.get_mut(framework_id) {
            fw.tasks.insert(task.task_id.value.clone(), record.clone());
            if let Some(e) = new_executor {
                fw.executors
                    .insert((agent_id.to_string(), e.executor_id.value.clone()), e);
            }
        }
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent
                .used
                .entry(framework_id.to_string())
                .or_default()
                .add_all(used);
        }
        self.counters.inc("master/tasks_launched");
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::TaskAdded as i32),
            task_added: Some(op::event::TaskAdded { task: record }),
            ..Default::default()
        });
    }

    pub(crate) fn launch_group(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        group: v1::offer::operation::LaunchGroup,
        remaining: &mut Resources,
        now: Clock,
    ) {
        let mut executor = group.executor;
        let tasks = group.task_group.tasks;
        let fail_all = |this: &mut Self, msg: String| {
            for t in &tasks {
                this.task_error(
                    framework_id,
                    &t.task_id,
                    Reason::TaskGroupInvalid,
                    msg.clone(),
                    now,
                );
            }
        };
        if tasks.is_empty() {
            return;
        }
        if executor.executor_id.value.is_empty() {
            fail_all(self, "Task group executor has an empty executor_id".into());
            return;
        }
        if executor.r#type != Some(v1::executor_info::Type::Default as i32) {
            fail_all(self, "Task group executor must be of type DEFAULT".into());
            return;
        }
        let mut ids = BTreeSet::new();
        for t in &tasks {
            if let Err(e) = self.validate_task_basics(framework_id, t) {
                fail_all(self, format!("Task group is invalid: {e}"));
                return;
            }
            if t.executor.is_some() {
                fail_all(
                    self,
                    format!(
                        "Task {} of a task group must not have an executor",
                        t.task_id.value
                    ),
                );
                return;
            }
            if t.command.is_none() {
                fail_all(
                    self,
                    format!(
                        "Task {} of a task group must have a command",
                        t.task_id.value
                    ),
                );
                return;
            }
            if !ids.insert(t.task_id.value.clone()) {
                fail_all(
                    self,
                    format!("Task group has duplicate task ID: {}", t.task_id.value),
                );
                return;
            }
        }
        executor.framework_id = Some(v1::FrameworkId {
            value: framework_id.to_string(),
        });
        let key = (agent_id.to_string(), executor.executor_id.value.clone());
        let running = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.executors.contains_key(&key));
        let mut needed = Resources::new();
        let mut new_executor = None;
        if !running {
            match Self::normalize_resources(&executor.resources, role) {
                Ok(r) => {
                    needed.add_all(&r);
                    executor.resources = r.to_vec();
                    new_executor = Some(executor.clone());
                }
                Err(e) => {
                    fail_all(self, format!("Executor uses invalid resources: {e}"));
                    return;
                }
            }
        }
        let mut per_task = Vec::new();
        for t in &tasks {
            match Self::normalize_resources(&t.resources, role) {
                Ok(r) => {
                    needed.add_all(&r);
                    per_task.push(r);
                }
                Err(e) => {
                    fail_all(self, format!("Task uses invalid resources: {e}"));
                    return;
                }
            }
        }
        if !remaining.contains(&needed) {
            fail_all(
                self,
                format!(
                    "Task group attempted to use resources {needed} which exceeds the available resources {remaining} in the offer"
                ),
            );
            return;
        }
        remaining.subtract_all(&needed);
        let mut launched = Vec::new();
        for (i, (mut t, r)) in tasks.clone().into_iter().zip(per_task).enumerate() {
            t.agent_id = v1::AgentId {
                value: agent_id.to_string(),
            };
            t.resources = r.to_vec();
            let exec_used = if i == 0 { new_executor.clone() } else { None };
            let mut used = r.clone();
            if let Some(e) = &exec_used {
                used.add_all(&Resources::from_vec(&e.resources));
            }
            self.record_launch(
                framework_id,
                agent_id,
                &t,
                Some(&executor),
                exec_used,
                &used,
            );
            launched.push(t);
        }
        let framework_info = self
            .frameworks
            .get(framework_id)
            .map(|f| f.info.clone())
            .unwrap_or_default();
        self.emit_agent(
            agent_id,
            ToAgent::RunTask(internal::RunTask {
                framework_info,
                executor_info: Some(executor),
                task: None,
                task_group: Some(v1::TaskGroupInfo { tasks: launched }),
            }),
        );
    }
}

//! The executor API side: SUBSCRIBE of executors, their UPDATE and MESSAGE
//! calls, and executor exits.

use super::*;

impl Agent {
    pub(crate) fn lookup<'a>(
        st: &'a mut State,
        call: &exec::Call,
    ) -> Result<(&'a FrameworkInfo, &'a mut Executor), CallError> {
        let fw_id = &call.framework_id.value;
        let ex_id = &call.executor_id.value;
        if fw_id.is_empty() || ex_id.is_empty() {
            return Err(CallError::BadRequest(
                "Expecting 'framework_id' and 'executor_id' to be present".into(),
            ));
        }
        let fw = st.frameworks.get_mut(fw_id).ok_or_else(|| {
            CallError::BadRequest(format!("Framework '{fw_id}' is not known to this agent"))
        })?;
        let ex = fw.executors.get_mut(ex_id).ok_or_else(|| {
            CallError::BadRequest(format!(
                "Executor '{ex_id}' of framework '{fw_id}' is not known to this agent"
            ))
        })?;
        Ok((&fw.info, ex))
    }

    /// SUBSCRIBE: the event stream's receiving end, with SUBSCRIBED and the
    /// queued launches already in it.
    pub fn executor_subscribe(
        &self,
        call: exec::Call,
    ) -> Result<mpsc::UnboundedReceiver<exec::Event>, CallError> {
        let subscribe = call.subscribe.clone().unwrap_or_default();
        let mut st = lock(&self.state);
        let agent_info = self.agent_info(&st);
        let (fw_info, ex) = Self::lookup(&mut st, &call)?;
        if ex.phase == ExecutorPhase::Terminated {
            return Err(CallError::BadRequest(format!(
                "Executor '{}' has terminated",
                call.executor_id.value
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ev = event(event::Type::Subscribed);
        ev.subscribed = Some(event::Subscribed {
            executor_info: ex.info.clone(),
            framework_info: fw_info.clone(),
            agent_info,
            container_id: Some(v1::ContainerId {
                value: ex.container_id.clone(),
                parent: None,
            }),
        });
        let _ = tx.send(ev);
        let resubscribe = ex.events.is_some();
        // The new connection replaces any previous one.
        ex.events = Some(tx);
        if ex.phase == ExecutorPhase::Registering {
            ex.phase = ExecutorPhase::Running;
        }
        // Tasks the executor already has are not launched again.
        let known: Vec<&str> = subscribe
            .unacknowledged_tasks
            .iter()
            .map(|t| t.task_id.value.as_str())
            .collect();
        let queued = std::mem::take(&mut ex.queued);
        for q in queued {
            if q.task_ids().iter().all(|t| known.contains(t)) {
                continue;
            }
            ex.send(launch_event(q));
        }
        if ex.phase == ExecutorPhase::Terminating {
            ex.send(event(event::Type::Shutdown));
        }
        tracing::info!(
            framework_id = %call.framework_id.value,
            executor_id = %call.executor_id.value,
            resubscribe,
            unacknowledged_updates = subscribe.unacknowledged_updates.len(),
            "executor subscribed"
        );
        drop(st);
        for update in subscribe.unacknowledged_updates {
            let c = exec::Call {
                executor_id: call.executor_id.clone(),
                framework_id: call.framework_id.clone(),
                r#type: Some(exec::call::Type::Update as i32),
                update: Some(update),
                ..Default::default()
            };
            if let Err(e) = self.executor_update(c) {
                tracing::warn!(error = %e, "unacknowledged update from re-subscribing executor refused");
            }
        }
        Ok(rx)
    }

    /// UPDATE: validate, record, forward; ACKNOWLEDGED to the executor.
    pub fn executor_update(&self, call: exec::Call) -> Result<(), CallError> {
        let result = self.executor_update_inner(call);
        let mut st = lock(&self.state);
        if result.is_ok() {
            st.counters.valid_status_updates += 1;
        } else {
            st.counters.invalid_status_updates += 1;
        }
        result
    }

    pub(crate) fn executor_update_inner(&self, call: exec::Call) -> Result<(), CallError> {
        let bad = |m: &str| Err(CallError::BadRequest(m.to_string()));
        let Some(update) = call.update.clone() else {
            return bad("Expecting 'update' to be present");
        };
        let mut status = update.status;
        let Some(uuid) = status.uuid.clone() else {
            return bad("Expecting 'uuid' to be present");
        };
        if uuid.len() != 16 {
            return bad("'uuid' is not a valid 16-byte UUID");
        }
        if status
            .source
            .is_some_and(|s| s != task_status::Source::Executor as i32)
        {
            return bad("Received status update with a 'source' other than SOURCE_EXECUTOR");
        }
        if status
            .executor_id
            .as_ref()
            .is_some_and(|e| *e != call.executor_id)
        {
            return bad("ExecutorID in the status does not match the call's executor_id");
        }
        if status.state == TaskState::TaskStaging as i32 {
            return bad("Received TASK_STAGING from the executor");
        }
        if TaskState::try_from(status.state).is_err() {
            return bad("Received an unknown task state");
        }
        let mut st = lock(&self.state);
        let agent_id = st.agent_id.clone();
        let (_, ex) = Self::lookup(&mut st, &call)?;
        let task_id = status.task_id.value.clone();
        let Some(task) = ex.tasks.get(&task_id) else {
            return Err(CallError::BadRequest(format!(
                "Task '{task_id}' is not known to executor '{}'",
                call.executor_id.value
            )));
        };
        let duplicate = task
            .statuses
            .iter()
            .any(|s| s.uuid.as_deref() == Some(&uuid[..]));
        let mut ack = event(event::Type::Acknowledged);
        ack.acknowledged = Some(event::Acknowledged {
            task_id: status.task_id.clone(),
            uuid: uuid.clone(),
        });
        if duplicate {
            ex.send(ack);
            return Ok(());
        }
        if is_terminal(status.state) && status.state != TaskState::TaskFinished as i32 {
            // A task the kernel killed for its container's memory limit (or
            // that the agent killed for a limitation) carries the limitation.
            if ex.termination.is_none() {
                if let Some(cg) = ex.cgroup.as_ref().filter(|c| c.mem_limit_bytes.is_some()) {
                    if cg.oom_kills() > 0 {
                        ex.termination = Some(memory_limitation(
                            cg.mem_limit_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0),
                            cg.usage().mem_max_bytes,
                        ));
                    }
                }
            }
            if let Some(t) = ex.termination.as_ref().filter(|t| t.limitation.is_some()) {
                status.state = t.state as i32;
                status.reason = Some(t.reason as i32);
                status.message = Some(t.message.clone());
                status.limitation = t.limitation.clone();
            }
        }
        status.source = Some(task_status::Source::Executor as i32);
        status.executor_id = Some(call.executor_id.clone());
        if status.agent_id.is_none() {
            status.agent_id = agent_id;
        }
        if status.timestamp.is_none() {
            status.timestamp = Some(ids::now_secs());
        }
        self.emit(&mut st, &call.framework_id.value, status);
        if let Some(ex) = st
            .frameworks
            .get(&call.framework_id.value)
            .and_then(|f| f.executors.get(&call.executor_id.value))
        {
            ex.send(ack);
        }
        Ok(())
    }

    /// MESSAGE: ExecutorToFramework to the master.
    pub fn executor_message(&self, call: exec::Call) -> Result<(), CallError> {
        let Some(message) = call.message.clone() else {
            return Err(CallError::BadRequest(
                "Expecting 'message' to be present".into(),
            ));
        };
        let mut st = lock(&self.state);
        Self::lookup(&mut st, &call)?;
        drop(st);
        self.send_to_master(agent_message::Message::ExecutorToFramework(
            internal::ExecutorToFramework {
                framework_id: call.framework_id,
                executor_id: call.executor_id,
                data: message.data,
            },
        ));
        Ok(())
    }

    // ----- shutdown ----------------------------------------------------

    /// The executor process was reaped.
    pub fn executor_exited(
        &self,
        fw_id: &str,
        ex_id: &str,
        container_id: &str,
        status: Option<i32>,
    ) {
        let mut st = lock(&self.state);
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            return;
        };
        let Some(ex) = fw
            .executors
            .get_mut(ex_id)
            .filter(|e| e.container_id == container_id)
        else {
            return;
        };
        tracing::info!(framework_id = fw_id, executor_id = ex_id, status = ?status, "executor exited");
        let never_subscribed = ex.phase == ExecutorPhase::Registering && !ex.recovered;
        ex.phase = ExecutorPhase::Terminated;
        ex.exit_status = status;
        ex.events = None;
        ex.queued.clear();
        if ex.termination.is_none() {
            if let Some(cg) = ex.cgroup.as_ref().filter(|c| c.mem_limit_bytes.is_some()) {
                if cg.oom_kills() > 0 {
                    let max = cg.usage().mem_max_bytes;
                    ex.termination = Some(memory_limitation(
                        cg.mem_limit_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0),
                        max,
                    ));
                }
            }
        }
        let termination = ex.termination.clone().unwrap_or_else(|| Termination {
            state: TaskState::TaskFailed,
            reason: task_status::Reason::ExecutorTerminated,
            message: if never_subscribed {
                match last_line(&ex.directory.join("stderr")) {
                    Some(line) => format!("executor terminated before subscribing: {line}"),
                    None => "executor terminated before subscribing".into(),
                }
            } else {
                "executor terminated".into()
            },
            limitation: None,
        });
        // What is left of the container goes: its volumes' mounts (the data
        // stays where it lives), its cgroups, its Docker container.
        let mounts = std::mem::take(&mut ex.volume_mounts);
        self.unmount_volumes(&mounts);
        // Its logs go to the archive once its loggers have flushed.
        let loggers = std::mem::take(&mut ex.loggers);
        if let Some(archive) = self.config.task_log_archive.clone() {
            let job = crate::task_logs::ArchiveJob {
                framework_id: fw_id.to_string(),
                executor_id: ex_id.to_string(),
                container_id: container_id.to_string(),
                sandbox: ex.directory.clone(),
                loggers,
            };
            let mut archiving = lock(&self.archiving);
            // Forget the archivings that are done.
            while archiving.try_join_next().is_some() {}
            archiving.spawn(crate::task_logs::archive_run(archive, job));
        }
        if let Some(cg) = ex.cgroup.clone() {
            tokio::task::spawn_blocking(move || cg.destroy());
        }
        if let (Some(name), Some(socket)) = (
            ex.docker_container.clone(),
            self.config.docker_socket.clone(),
        ) {
            tokio::spawn(async move { crate::docker::remove(&socket, &name).await });
        }
        let executor_id = ex.info.executor_id.clone();
        let framework_id = fw
            .info
            .id
            .clone()
            .unwrap_or_else(|| ids::framework_id(fw_id));
        let open: Vec<v1::TaskId> = ex
            .tasks
            .values()
            .filter(|t| !is_terminal(t.state))
            .map(|t| t.task_id.clone())
            .collect();
        let terminating = fw.terminating;
        st.counters.executors_terminated += 1;
        if !terminating {
            for task_id in &open {
                let mut status = Self::agent_status(
                    &st,
                    task_id,
                    Some(&executor_id),
                    termination.state,
                    termination.reason,
                    termination.message.clone(),
                );
                status.limitation = termination.limitation.clone();
                self.emit(&mut st, fw_id, status);
            }
        }
        self.send_to_master(agent_message::Message::ExecutorExited(
            internal::ExecutorExited {
                framework_id,
                executor_id,
                status,
            },
        ));
        let task_ids: Vec<String> = st
            .frameworks
            .get(fw_id)
            .and_then(|f| f.executors.get(ex_id))
            .map(|e| e.tasks.keys().cloned().collect())
            .unwrap_or_default();
        for t in &task_ids {
            self.maybe_complete(&mut st, fw_id, Some(t));
        }
        self.maybe_complete(&mut st, fw_id, None);
    }

    /// Waits (bounded) for the archiving of finished runs' logs, at
    /// shutdown: first for the exits of reaped executors to be handled,
    /// then for their archivings.
    pub async fn finish_archiving(&self) {
        if self.config.task_log_archive.is_none() {
            return;
        }
        let exits_pending = || {
            lock(&self.state)
                .frameworks
                .values()
                .flat_map(|f| f.executors.values())
                .any(|e| {
                    e.phase != ExecutorPhase::Terminated
                        && e.process.as_ref().is_some_and(|p| p.has_exited())
                })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while exits_pending() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut set = std::mem::take(&mut *lock(&self.archiving));
        if set.is_empty() {
            return;
        }
        tracing::info!(runs = set.len(), "waiting for task logs to be archived");
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                runs = set.len(),
                "gave up waiting for task logs to be archived"
            );
        }
    }
}

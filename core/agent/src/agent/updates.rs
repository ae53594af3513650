//! Status updates: emitting and checkpointing them, acknowledgements from
//! the master, completing tasks, executors and frameworks, and sandbox GC.

use super::*;

impl Agent {
    pub(crate) fn agent_status(
        st: &State,
        task_id: &v1::TaskId,
        executor_id: Option<&ExecutorId>,
        state: TaskState,
        reason: task_status::Reason,
        message: impl Into<String>,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task_id.clone(),
            state: state as i32,
            message: Some(message.into()),
            source: Some(task_status::Source::Agent as i32),
            reason: Some(reason as i32),
            agent_id: st.agent_id.clone(),
            executor_id: executor_id.cloned(),
            timestamp: Some(ids::now_secs()),
            uuid: Some(ids::new_uuid_bytes()),
            ..Default::default()
        }
    }

    /// Records a status on its task and hands it to the status update
    /// manager (forwarding it when it is the head of its stream).
    pub(crate) fn emit(&self, st: &mut State, fw_id: &str, status: TaskStatus) {
        let task_id = status.task_id.value.clone();
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            tracing::warn!(framework_id = fw_id, task_id = %task_id, "status update for unknown framework dropped");
            return;
        };
        if fw.terminating {
            return;
        }
        let framework_id = fw
            .info
            .id
            .clone()
            .unwrap_or_else(|| ids::framework_id(fw_id));
        let mut executor_id = status.executor_id.clone();
        if let Some(ex_id) = fw.executor_of_task(&task_id) {
            if let Some(task) = fw
                .executors
                .get_mut(&ex_id)
                .and_then(|e| e.tasks.get_mut(&task_id))
            {
                task.state = status.state;
                let mut recorded = status.clone();
                recorded.data = None;
                task.statuses.push(recorded);
                if task.statuses.len() > MAX_STATUSES {
                    task.statuses.remove(0);
                }
            }
            executor_id.get_or_insert_with(|| ids::executor_id(ex_id));
        }
        if is_terminal(status.state) {
            *st.counters
                .terminal
                .entry(task_state_name(status.state))
                .or_default() += 1;
            // A task that used HDFS-backed volumes ended: write them back.
            let hdfs: Vec<VolumeUse> = fw
                .executors
                .values()
                .find_map(|e| e.tasks.get(&task_id))
                .map(|t| volumes::volumes_of(&t.resources))
                .unwrap_or_default()
                .into_iter()
                .filter(|v| v.hdfs)
                .collect();
            if !hdfs.is_empty() {
                self.hdfs.write_back_later(hdfs);
            }
        }
        tracing::info!(
            framework_id = fw_id,
            task_id = %task_id,
            state = task_state_name(status.state),
            "status update"
        );
        let forward = lock(&self.sum).update(&framework_id, executor_id, status, Instant::now());
        // Checkpointed before it is forwarded (and acknowledged to the executor).
        self.checkpoint_task(st, fw_id, &task_id);
        match forward {
            Ok(Some(msg)) => self.send_to_master(agent_message::Message::StatusUpdate(msg)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "status update dropped"),
        }
        self.sum_wake.notify_one();
    }

    /// Writes a checkpointing framework's task record and its
    /// unacknowledged updates.
    pub(crate) fn checkpoint_task(&self, st: &State, fw_id: &str, task_id: &str) {
        let Some(agent_id) = st.agent_id.as_ref().map(|a| a.value.as_str()) else {
            return;
        };
        let Some(fw) = st.frameworks.get(fw_id) else {
            return;
        };
        let Some(ex) = fw
            .executors
            .values()
            .find(|e| e.checkpoint && e.tasks.contains_key(task_id))
        else {
            return;
        };
        let Some(task) = ex.tasks.get(task_id) else {
            return;
        };
        let pending = lock(&self.sum).pending_updates(fw_id, task_id);
        let cp = &self.config.checkpoint;
        let ex_id = &ex.info.executor_id.value;
        let result = cp
            .write_task(agent_id, ex_id, &ex.container_id, task)
            .and_then(|_| {
                cp.write_updates(agent_id, fw_id, ex_id, &ex.container_id, task_id, &pending)
            });
        if let Err(e) = result {
            tracing::error!(framework_id = fw_id, task_id, error = %e, "checkpoint failed");
        }
    }

    /// Writes a checkpointing framework's framework, executor and container
    /// records.
    pub(crate) fn checkpoint_executor(&self, agent_id: &str, fw: &FrameworkInfo, ex: &Executor) {
        if !ex.checkpoint {
            return;
        }
        let fw_id = fw.id.as_ref().map(|i| i.value.as_str()).unwrap_or("");
        let cp = &self.config.checkpoint;
        let pid = ex.process.as_ref().map(|p| p.pid());
        let record = ContainerRecord {
            container_id: ex.container_id.clone(),
            kind: match ex.kind {
                ExecutorKind::Command => RunKind::Command,
                ExecutorKind::Default => RunKind::Default,
                ExecutorKind::Custom => RunKind::Custom,
            },
            pid,
            pid_start_time: pid.and_then(containerizer::start_time),
            directory: ex.directory.clone(),
            cgroup: ex.cgroup.clone(),
            docker_container: ex.docker_container.clone(),
            cpus: ex.limits.cpus,
            mem_mb: ex.limits.mem_mb,
            disk_mb: ex.limits.disk_mb,
            volume_mounts: ex.volume_mounts.clone(),
            loggers: ex
                .loggers
                .iter()
                .filter(|l| !l.has_exited())
                .map(|l| crate::checkpoint::LoggerRecord {
                    pid: l.pid(),
                    start_time: containerizer::start_time(l.pid()),
                })
                .collect(),
        };
        let result = cp
            .write_framework(agent_id, fw)
            .and_then(|_| cp.write_executor(agent_id, fw_id, &ex.info))
            .and_then(|_| cp.write_container(agent_id, fw_id, &ex.info.executor_id.value, &record));
        if let Err(e) = result {
            tracing::error!(framework_id = fw_id, executor_id = %ex.info.executor_id.value, error = %e, "checkpoint failed");
        }
    }

    /// Moves a terminal task without pending updates to completed, then the
    /// executor and framework when nothing of them remains.
    pub(crate) fn maybe_complete(&self, st: &mut State, fw_id: &str, task_id: Option<&str>) {
        let sum = lock(&self.sum);
        let agent_id = st
            .agent_id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            return;
        };
        if let Some(task_id) = task_id {
            if let Some(ex_id) = fw.executor_of_task(task_id) {
                if let Some(ex) = fw.executors.get_mut(&ex_id) {
                    let done = ex.tasks.get(task_id).is_some_and(|t| {
                        (is_terminal(t.state) || fw.terminating) && !sum.has_pending(fw_id, task_id)
                    });
                    if done {
                        if let Some(task) = ex.tasks.remove(task_id) {
                            ex.completed_tasks.push_back(task);
                            if ex.completed_tasks.len() > MAX_COMPLETED_TASKS {
                                ex.completed_tasks.pop_front();
                            }
                        }
                    }
                }
            }
        }
        let finished: Vec<String> = fw
            .executors
            .iter()
            .filter(|(_, e)| {
                e.phase == ExecutorPhase::Terminated && e.tasks.is_empty() && e.queued.is_empty()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            if let Some(ex) = fw.executors.remove(&id) {
                if ex.checkpoint {
                    self.config
                        .checkpoint
                        .remove_run(&agent_id, fw_id, &id, &ex.container_id);
                }
                self.schedule_gc(ex.directory.clone());
                fw.completed_executors.push_back(ex);
                if fw.completed_executors.len() > MAX_COMPLETED_EXECUTORS {
                    fw.completed_executors.pop_front();
                }
            }
        }
        if fw.executors.is_empty() {
            if let Some(fw) = st.frameworks.remove(fw_id) {
                if fw.info.checkpoint.unwrap_or(false) {
                    self.config.checkpoint.remove_framework(&agent_id, fw_id);
                }
                tracing::info!(framework_id = fw_id, "framework has no executors left");
                st.completed_frameworks.push_back(fw);
                if st.completed_frameworks.len() > MAX_COMPLETED_FRAMEWORKS {
                    st.completed_frameworks.pop_front();
                }
            }
        }
    }

    /// Removes a finished run's sandbox after `--gc_delay`; whatever is
    /// mounted in it (a persistent volume) is unmounted first and its data
    /// is never touched.
    pub(crate) fn schedule_gc(&self, sandbox: PathBuf) {
        let delay = self.config.gc_delay;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let dir = sandbox.clone();
            match tokio::task::spawn_blocking(move || volumes::remove_sandbox(&dir)).await {
                Ok(Ok(())) => tracing::info!(sandbox = %sandbox.display(), "garbage-collected sandbox"),
                Ok(Err(e)) => tracing::warn!(sandbox = %sandbox.display(), error = %e, "cannot garbage-collect sandbox"),
                Err(e) => tracing::warn!(error = %e, "sandbox garbage collection panicked"),
            }
        });
    }

    /// The master acknowledged a status update.
    pub fn acknowledge(&self, ack: &internal::AcknowledgeUpdate) {
        let fw_id = ack.framework_id.value.as_str();
        let task_id = ack.task_id.value.as_str();
        let mut st = lock(&self.state);
        let outcome = lock(&self.sum).acknowledge(fw_id, task_id, &ack.uuid, Instant::now());
        match outcome {
            Acked::Ignored => {
                tracing::debug!(
                    framework_id = fw_id,
                    task_id,
                    "ignoring acknowledgement of unknown update"
                );
            }
            Acked::Done { next, empty, .. } => {
                self.checkpoint_task(&st, fw_id, task_id);
                if let Some(next) = next {
                    self.send_to_master(agent_message::Message::StatusUpdate(next));
                }
                if empty {
                    self.maybe_complete(&mut st, fw_id, Some(task_id));
                }
                self.sum_wake.notify_one();
            }
        }
    }

    // ----- master commands ---------------------------------------------
}

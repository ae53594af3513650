//! Killing tasks and shutting down executors and frameworks.

use super::*;

impl Agent {
    /// KillTask from the master.
    pub fn kill_task(self: &Arc<Self>, msg: &internal::KillTask) {
        let fw_id = msg.framework_id.value.as_str();
        let task_id = msg.task_id.value.as_str();
        let mut st = lock(&self.state);
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            tracing::warn!(
                framework_id = fw_id,
                task_id,
                "kill for a task of an unknown framework ignored"
            );
            return;
        };
        let Some(ex_id) = fw.executor_of_task(task_id) else {
            let known = fw
                .completed_executors
                .iter()
                .chain(fw.executors.values())
                .any(|e| e.completed_tasks.iter().any(|t| t.task_id.value == task_id));
            if known {
                tracing::info!(
                    framework_id = fw_id,
                    task_id,
                    "kill for an already completed task ignored"
                );
                return;
            }
            let state = if fw.partition_aware() {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            tracing::warn!(
                framework_id = fw_id,
                task_id,
                "kill for a task unknown to this agent"
            );
            let status = Self::agent_status(
                &st,
                &msg.task_id,
                None,
                state,
                task_status::Reason::TaskUnknown,
                "task is unknown to the agent",
            );
            let forward = lock(&self.sum).update(&msg.framework_id, None, status, Instant::now());
            if let Ok(Some(m)) = forward {
                self.send_to_master(agent_message::Message::StatusUpdate(m));
            }
            self.sum_wake.notify_one();
            return;
        };
        let Some(ex) = fw.executors.get_mut(&ex_id) else {
            return;
        };
        if ex.is_queued(task_id) {
            // Never launched: kill it (and its whole group) right here.
            let pos = ex
                .queued
                .iter()
                .position(|q| q.task_ids().contains(&task_id));
            let removed = pos.map(|p| ex.queued.remove(p));
            let executor_id = ex.info.executor_id.clone();
            let idle = ex.queued.is_empty()
                && ex.phase == ExecutorPhase::Registering
                && ex.tasks.values().all(|t| {
                    is_terminal(t.state)
                        || removed
                            .as_ref()
                            .is_some_and(|r| r.task_ids().contains(&t.task_id.value.as_str()))
                });
            let process = ex.process.clone();
            let grace = ex.grace_period(self.config.executor_shutdown_grace_period);
            if idle {
                ex.phase = ExecutorPhase::Terminating;
            }
            if let Some(removed) = removed {
                for t in removed.task_ids() {
                    let status = Self::agent_status(
                        &st,
                        &ids::task_id(t),
                        Some(&executor_id),
                        TaskState::TaskKilled,
                        task_status::Reason::TaskKilledDuringLaunch,
                        "killed before delivery to the executor",
                    );
                    self.emit(&mut st, fw_id, status);
                }
            }
            if idle {
                // An executor with nothing to run is not kept around.
                if let Some(p) = process {
                    tokio::spawn(async move { p.terminate(grace).await });
                }
            }
            return;
        }
        if is_terminal(ex.tasks.get(task_id).map_or(0, |t| t.state)) {
            tracing::info!(
                framework_id = fw_id,
                task_id,
                "kill for a terminal task ignored"
            );
            return;
        }
        let kill_policy = msg
            .kill_policy
            .or_else(|| ex.tasks.get(task_id).and_then(|t| t.kill_policy));
        let mut ev = event(event::Type::Kill);
        ev.kill = Some(event::Kill {
            task_id: msg.task_id.clone(),
            kill_policy,
        });
        if ex.send(ev) {
            tracing::info!(framework_id = fw_id, executor_id = %ex_id, task_id, "asked executor to kill task");
        } else {
            // No subscription to deliver the kill: the executor goes, and
            // its tasks fail when it exits.
            tracing::warn!(framework_id = fw_id, executor_id = %ex_id, task_id, "executor not subscribed, killing it to kill the task");
            ex.phase = ExecutorPhase::Terminating;
            let grace = ex.grace_period(self.config.executor_shutdown_grace_period);
            if let Some(p) = ex.process.clone() {
                tokio::spawn(async move { p.terminate(grace).await });
            }
        }
    }

    /// ShutdownExecutor: SHUTDOWN, then SIGTERM after the grace period,
    /// SIGKILL after a further grace period.
    pub fn shutdown_executor(self: &Arc<Self>, fw_id: &str, ex_id: &str) {
        let mut st = lock(&self.state);
        let Some(ex) = st
            .frameworks
            .get_mut(fw_id)
            .and_then(|f| f.executors.get_mut(ex_id))
        else {
            tracing::warn!(
                framework_id = fw_id,
                executor_id = ex_id,
                "shutdown of an unknown executor ignored"
            );
            return;
        };
        self.begin_shutdown(fw_id, ex);
    }

    pub(crate) fn begin_shutdown(&self, fw_id: &str, ex: &mut Executor) {
        if matches!(
            ex.phase,
            ExecutorPhase::Terminated | ExecutorPhase::Terminating
        ) {
            return;
        }
        tracing::info!(framework_id = fw_id, executor_id = %ex.info.executor_id.value, "shutting down executor");
        let subscribed = ex.send(event(event::Type::Shutdown));
        ex.phase = ExecutorPhase::Terminating;
        let grace = ex.grace_period(self.config.executor_shutdown_grace_period);
        if let Some(p) = ex.process.clone() {
            tokio::spawn(async move {
                if subscribed && tokio::time::timeout(grace, p.wait()).await.is_ok() {
                    return;
                }
                p.terminate(grace).await;
            });
        }
    }

    /// ShutdownFramework: every executor of the framework is shut down and
    /// its updates are no longer forwarded.
    pub fn shutdown_framework(self: &Arc<Self>, fw_id: &str) {
        let mut st = lock(&self.state);
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            tracing::info!(
                framework_id = fw_id,
                "shutdown of an unknown framework ignored"
            );
            return;
        };
        tracing::info!(framework_id = fw_id, "shutting down framework");
        fw.terminating = true;
        lock(&self.sum).remove_framework(fw_id);
        let ids: Vec<String> = fw.executors.keys().cloned().collect();
        for id in ids {
            if let Some(ex) = fw.executors.get_mut(&id) {
                ex.queued.clear();
                self.begin_shutdown(fw_id, ex);
            }
        }
        self.maybe_complete(&mut st, fw_id, None);
    }

    /// Kills every executor this agent started (SIGTERM to the process
    /// group, SIGKILL after the grace period) and waits for them.
    pub async fn kill_all_executors(&self) {
        let procs: Vec<(ProcessHandle, Duration)> = {
            let st = lock(&self.state);
            st.frameworks
                .values()
                .flat_map(|f| f.executors.values())
                .filter_map(|e| {
                    e.process.clone().map(|p| {
                        (
                            p,
                            e.grace_period(self.config.executor_shutdown_grace_period),
                        )
                    })
                })
                .filter(|(p, _)| !p.has_exited())
                .collect()
        };
        if !procs.is_empty() {
            tracing::info!(count = procs.len(), "killing executors");
        }
        futures::future::join_all(procs.iter().map(|(p, grace)| p.terminate(*grace))).await;
    }
}

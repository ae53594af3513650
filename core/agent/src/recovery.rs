//! Agent recovery after a restart: rebuild the checkpointed frameworks,
//! executors, tasks and unacknowledged updates; reattach to executors that
//! still run (same pid, watched through a pidfd) and give them
//! `--executor_reregistration_timeout` to re-subscribe; fail the tasks of
//! executors that died meanwhile; report tasks whose checkpoint is
//! unreadable as lost; destroy containers nobody owns any more.
//! `--recover=cleanup` kills everything recovered and forgets the
//! checkpoint instead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use corral_api::ids;
use corral_api::v1::{task_status, TaskState};
use tokio::time::Instant;

use crate::agent::{
    lock, Agent, Executor, ExecutorKind, ExecutorPhase, Framework, Limits, Termination,
};
use crate::checkpoint::{CheckpointError, ContainerRecord, RunKind};
use crate::containerizer;

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// No checkpoint: a new agent.
    Fresh,
    /// Recovered the previous run's agent id and state.
    Recovered {
        /// Executors still running, waiting to re-subscribe.
        live_executors: usize,
        /// Tasks recovered.
        tasks: usize,
        /// Tasks reported lost (unreadable checkpoints).
        lost_tasks: usize,
    },
    /// `--recover=cleanup`: everything was killed and the checkpoint removed.
    CleanedUp,
}

fn alive(record: &ContainerRecord, rebooted: bool) -> Option<i32> {
    let pid = record.pid?;
    if rebooted || !containerizer::is_alive(pid) {
        return None;
    }
    match (record.pid_start_time, containerizer::start_time(pid)) {
        (Some(a), Some(b)) if a != b => None,
        _ => Some(pid),
    }
}

impl Agent {
    /// Kills whatever is left of a container from a previous run.
    async fn destroy_record(&self, record: &ContainerRecord, rebooted: bool) {
        if let Some(pid) = alive(record, rebooted) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.unmount_volumes(&record.volume_mounts);
        if let Some(cg) = record.cgroup.clone() {
            let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
        }
        if let (Some(name), Some(socket)) = (&record.docker_container, &self.config.docker_socket) {
            crate::docker::remove(socket, name).await;
        }
    }

    /// Recovers from the checkpoint in the work dir (before the agent
    /// serves or registers). With `strict`, an unreadable checkpoint is an
    /// error naming the file.
    pub async fn recover(
        self: &Arc<Self>,
        strict: bool,
        cleanup: bool,
    ) -> Result<RecoveryOutcome, CheckpointError> {
        let Some(rec) = self.config.checkpoint.recover(strict)? else {
            return Ok(RecoveryOutcome::Fresh);
        };
        tracing::info!(
            agent_id = %rec.agent_id,
            frameworks = rec.frameworks.len(),
            rebooted = rec.rebooted,
            unreadable = rec.errors.len(),
            "recovering from the checkpoint"
        );
        if cleanup {
            for fw in &rec.frameworks {
                for ex in &fw.executors {
                    self.destroy_record(&ex.container, rec.rebooted).await;
                }
            }
            for lc in &rec.lost_containers {
                if let Some(r) = &lc.record {
                    self.destroy_record(r, rec.rebooted).await;
                }
            }
            if let Some(socket) = &self.config.docker_socket {
                if let Ok(names) = crate::docker::list(socket, &rec.agent_id).await {
                    for n in names {
                        crate::docker::remove(socket, &n).await;
                    }
                }
            }
            self.sweep_volume_mounts(false);
            self.config.checkpoint.clear();
            tracing::info!(agent_id = %rec.agent_id, "cleanup done: killed the recovered executors and removed the checkpoint");
            return Ok(RecoveryOutcome::CleanedUp);
        }

        for lc in &rec.lost_containers {
            tracing::warn!(container_id = %lc.container_id, "destroying a container whose checkpoint is unreadable");
            if let Some(r) = &lc.record {
                self.destroy_record(r, rec.rebooted).await;
            } else {
                // Only its id is known: its cgroups, if any, are named by it.
                let iso = &self.config.isolation;
                if let Some(spec) =
                    iso.cgroup_spec(&self.config.cgroups_root, &lc.container_id, 1.0, 64.0)
                {
                    let _ = tokio::task::spawn_blocking(move || spec.destroy()).await;
                }
            }
        }

        let mut live = 0;
        let mut tasks = 0;
        let mut dead: Vec<(String, String, String)> = Vec::new();
        let mut docker_owned = BTreeSet::new();
        {
            let mut st = lock(&self.state);
            st.agent_id = Some(ids::agent_id(&rec.agent_id));
            for fw in &rec.frameworks {
                let fw_id = fw
                    .info
                    .id
                    .as_ref()
                    .map(|i| i.value.clone())
                    .unwrap_or_default();
                let mut executors = BTreeMap::new();
                for rex in &fw.executors {
                    let ex_id = rex.info.executor_id.value.clone();
                    let c = &rex.container;
                    let pid = alive(c, rec.rebooted);
                    let mut ex = Executor {
                        info: rex.info.clone(),
                        kind: match c.kind {
                            RunKind::Command => ExecutorKind::Command,
                            RunKind::Default => ExecutorKind::Default,
                            RunKind::Custom => ExecutorKind::Custom,
                        },
                        phase: ExecutorPhase::Registering,
                        container_id: c.container_id.clone(),
                        directory: c.directory.clone(),
                        queued: Vec::new(),
                        tasks: BTreeMap::new(),
                        completed_tasks: VecDeque::new(),
                        events: None,
                        process: None,
                        exit_status: None,
                        checkpoint: true,
                        limits: Limits {
                            cpus: c.cpus,
                            mem_mb: c.mem_mb,
                            disk_mb: c.disk_mb,
                        },
                        cgroup: c.cgroup.clone(),
                        docker_container: c.docker_container.clone(),
                        docker_cgroup: None,
                        termination: None,
                        recovered: true,
                        disk_used: None,
                        volume_mounts: c.volume_mounts.clone(),
                        loggers: c
                            .loggers
                            .iter()
                            .filter(|l| {
                                !rec.rebooted
                                    && containerizer::is_alive(l.pid)
                                    && (l.start_time.is_none()
                                        || l.start_time == containerizer::start_time(l.pid))
                            })
                            .filter_map(|l| containerizer::watch(l.pid).ok())
                            .collect(),
                    };
                    for t in &rex.tasks {
                        tasks += 1;
                        ex.tasks
                            .insert(t.task.task_id.value.clone(), t.task.clone());
                        let mut sum = lock(&self.sum);
                        for u in &t.pending {
                            if let Err(e) = sum.update(
                                &u.framework_id,
                                u.executor_id.clone(),
                                u.status.clone(),
                                Instant::now(),
                            ) {
                                tracing::warn!(error = %e, "unrecoverable status update dropped");
                            }
                        }
                    }
                    match pid {
                        Some(pid) => {
                            let weak: Weak<Agent> = Arc::downgrade(self);
                            let (f, e, cid) =
                                (fw_id.clone(), ex_id.clone(), c.container_id.clone());
                            match containerizer::adopt(pid, move |status| {
                                if let Some(agent) = weak.upgrade() {
                                    agent.executor_exited(&f, &e, &cid, status);
                                }
                            }) {
                                Ok(handle) => {
                                    live += 1;
                                    if let Some(n) = &c.docker_container {
                                        docker_owned.insert(n.clone());
                                    }
                                    tracing::info!(framework_id = %fw_id, executor_id = %ex_id, pid, "reattached to a live executor");
                                    ex.process = Some(handle);
                                }
                                Err(err) => {
                                    tracing::warn!(framework_id = %fw_id, executor_id = %ex_id, pid, error = %err, "cannot watch the executor");
                                    dead.push((
                                        fw_id.clone(),
                                        ex_id.clone(),
                                        c.container_id.clone(),
                                    ));
                                }
                            }
                        }
                        None => dead.push((fw_id.clone(), ex_id.clone(), c.container_id.clone())),
                    }
                    executors.insert(ex_id, ex);
                }
                st.frameworks.insert(
                    fw_id,
                    Framework {
                        info: fw.info.clone(),
                        terminating: false,
                        executors,
                        completed_executors: VecDeque::new(),
                    },
                );
            }
        }
        // Executors that died while the agent was down: their open tasks fail.
        for (fw_id, ex_id, cid) in &dead {
            if let Some(ex) = lock(&self.state)
                .frameworks
                .get_mut(fw_id)
                .and_then(|f| f.executors.get_mut(ex_id))
            {
                ex.termination = Some(Termination {
                    state: TaskState::TaskFailed,
                    reason: task_status::Reason::ExecutorTerminated,
                    message: "executor terminated while the agent was down".into(),
                    limitation: None,
                });
            }
            tracing::warn!(framework_id = %fw_id, executor_id = %ex_id, "executor is gone after the agent restart");
            self.executor_exited(fw_id, ex_id, cid, None);
        }
        // Tasks whose checkpoint could not be read are reported lost.
        for lost in &rec.lost_tasks {
            tracing::warn!(framework_id = %lost.framework_id, task_id = %lost.task_id, reason = %lost.reason, "reporting a task lost");
            let st = lock(&self.state);
            let status = corral_api::v1::TaskStatus {
                task_id: ids::task_id(&lost.task_id),
                state: TaskState::TaskLost as i32,
                message: Some(format!(
                    "the agent restarted and could not recover the task: {}",
                    lost.reason
                )),
                source: Some(task_status::Source::Agent as i32),
                reason: Some(task_status::Reason::AgentRestarted as i32),
                agent_id: st.agent_id.clone(),
                executor_id: lost.executor_id.as_ref().map(ids::executor_id),
                timestamp: Some(ids::now_secs()),
                uuid: Some(ids::new_uuid_bytes()),
                ..Default::default()
            };
            let mut st = st;
            st.lost_tasks.push(corral_api::v1::Task {
                name: lost.task_id.clone(),
                task_id: ids::task_id(&lost.task_id),
                framework_id: ids::framework_id(&lost.framework_id),
                executor_id: lost.executor_id.as_ref().map(ids::executor_id),
                agent_id: ids::agent_id(&rec.agent_id),
                state: TaskState::TaskLost as i32,
                statuses: vec![status.clone()],
                ..Default::default()
            });
            drop(st);
            let _ = lock(&self.sum).update(
                &ids::framework_id(&lost.framework_id),
                lost.executor_id.as_ref().map(ids::executor_id),
                status,
                Instant::now(),
            );
        }
        // Empty cgroups left by containers of an earlier run (for example
        // of non-checkpointing frameworks, killed while the agent was down).
        let keep: BTreeSet<String> = rec
            .frameworks
            .iter()
            .flat_map(|f| f.executors.iter())
            .map(|e| e.container.container_id.clone())
            .collect();
        let (version, root) = (
            self.config.isolation.version,
            self.config.cgroups_root.clone(),
        );
        if let Ok(n) = tokio::task::spawn_blocking(move || {
            crate::isolation::remove_stale_cgroups(version, &root, &keep, Duration::from_secs(60))
        })
        .await
        {
            if n > 0 {
                tracing::info!(count = n, "removed stale container cgroups");
            }
        }
        // Docker containers of this agent that no live executor owns.
        if let (Some(socket), true) = (&self.config.docker_socket, self.config.docker_kill_orphans)
        {
            match crate::docker::list(socket, &rec.agent_id).await {
                Ok(names) => {
                    for n in names.into_iter().filter(|n| !docker_owned.contains(n)) {
                        tracing::info!(container = %n, "removing an orphan docker container");
                        crate::docker::remove(socket, &n).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list docker containers to recover"),
            }
        }
        {
            let mut st = lock(&self.state);
            for op in &rec.operations {
                st.operations.insert(op.uuid.value.clone(), op.clone());
            }
        }
        Ok(RecoveryOutcome::Recovered {
            live_executors: live,
            tasks,
            lost_tasks: rec.lost_tasks.len(),
        })
    }

    /// Detaches every volume mount under the sandboxes that no live
    /// container holds (with `keep_live`; otherwise every one): left by
    /// containers that ended while the agent was down (non-checkpointing
    /// frameworks' included), or at shutdown once every executor was killed
    /// (their exits may not have been processed yet).
    pub fn sweep_volume_mounts(&self, keep_live: bool) -> usize {
        let keep: BTreeSet<std::path::PathBuf> = if keep_live {
            lock(&self.state)
                .frameworks
                .values()
                .flat_map(|f| f.executors.values())
                .filter(|e| e.phase != ExecutorPhase::Terminated)
                .flat_map(|e| e.volume_mounts.iter().cloned())
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut n = 0;
        for m in crate::volumes::mounts_under(&self.config.work_dir.join("slaves")) {
            if keep.contains(&m) {
                continue;
            }
            match crate::volumes::unmount(&m) {
                Ok(()) => {
                    n += 1;
                    tracing::info!(target = %m.display(), "unmounted a persistent volume no live container holds");
                }
                Err(e) => tracing::warn!(target = %m.display(), error = %e, "cannot unmount"),
            }
        }
        n
    }

    /// Kills recovered executors that did not re-subscribe within
    /// `--executor_reregistration_timeout`; their open tasks fail with
    /// REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
    pub fn reregistration_timed_out(&self) {
        let mut st = lock(&self.state);
        let grace = self.config.executor_shutdown_grace_period;
        for (fw_id, fw) in st.frameworks.iter_mut() {
            for (ex_id, ex) in fw.executors.iter_mut() {
                if !(ex.recovered && ex.phase == ExecutorPhase::Registering) {
                    continue;
                }
                tracing::warn!(framework_id = %fw_id, executor_id = %ex_id, "recovered executor did not re-subscribe in time, killing it");
                ex.termination = Some(Termination {
                    state: TaskState::TaskFailed,
                    reason: task_status::Reason::ExecutorReregistrationTimeout,
                    message: "executor did not re-register within the re-registration timeout"
                        .into(),
                    limitation: None,
                });
                ex.phase = ExecutorPhase::Terminating;
                if let Some(cg) = ex.cgroup.clone() {
                    tokio::task::spawn_blocking(move || cg.kill_all());
                }
                if let Some(p) = ex.process.clone() {
                    tokio::spawn(async move { p.terminate(grace).await });
                }
            }
        }
    }

    /// Waits `--executor_reregistration_timeout`, then kills recovered
    /// executors that are still not subscribed.
    pub async fn reregistration_timer(self: Arc<Self>) {
        let timeout = self.config.executor_reregistration_timeout;
        tokio::time::sleep(timeout.max(Duration::from_millis(10))).await;
        self.reregistration_timed_out();
    }
}

//! The resource monitor: per-container usage (cgroup accounting, or /proc
//! for the posix isolators, plus disk/du) for GET_CONTAINERS and
//! `/monitor/statistics`, and the watch that destroys containers past their
//! memory (OOM kills in the cgroup) or disk quota.

use std::sync::Arc;
use std::time::Duration;

use corral_api::v1::{self, ResourceStatistics};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::agent::{disk_limitation, lock, memory_limitation, Agent, ExecutorPhase, Limits};
use crate::isolation::{disk_usage, CgroupSpec, ProcSnapshot, Usage};

/// How often containers are checked for OOM kills.
pub const OOM_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// One live container and its usage.
#[derive(Debug, Clone)]
pub struct ContainerStats {
    /// Framework.
    pub framework_id: v1::FrameworkId,
    /// Executor.
    pub executor_id: v1::ExecutorId,
    /// Executor name.
    pub executor_name: Option<String>,
    /// ExecutorInfo.source.
    pub source: Option<String>,
    /// Container id.
    pub container_id: String,
    /// Executor pid.
    pub pid: Option<i32>,
    /// Usage and limits.
    pub statistics: ResourceStatistics,
    /// The cgroup, if any.
    pub cgroup: Option<CgroupSpec>,
}

struct Probe {
    fw: String,
    ex: String,
    container_id: String,
    cgroup: Option<CgroupSpec>,
    directory: std::path::PathBuf,
    limits: Limits,
    volume_mounts: Vec<std::path::PathBuf>,
}

fn to_statistics(u: &Usage, limits: &Limits, cgroup: Option<&CgroupSpec>) -> ResourceStatistics {
    ResourceStatistics {
        timestamp: corral_api::ids::now_secs(),
        processes: u.processes.and_then(|n| u32::try_from(n).ok()),
        cpus_user_time_secs: u.cpus_user_time_secs,
        cpus_system_time_secs: u.cpus_system_time_secs,
        cpus_limit: u.cpus_limit.or(Some(limits.cpus)),
        cpus_nr_periods: u.cpus_nr_periods.and_then(|n| u32::try_from(n).ok()),
        cpus_nr_throttled: u.cpus_nr_throttled.and_then(|n| u32::try_from(n).ok()),
        cpus_throttled_time_secs: u.cpus_throttled_time_secs,
        mem_rss_bytes: u.mem_rss_bytes,
        mem_total_bytes: u.mem_total_bytes,
        mem_cache_bytes: u.mem_cache_bytes,
        mem_limit_bytes: cgroup
            .and_then(|c| c.mem_limit_bytes)
            .or(Some((limits.mem_mb * 1024.0 * 1024.0) as u64)),
        disk_limit_bytes: (limits.disk_mb > 0.0)
            .then_some((limits.disk_mb * 1024.0 * 1024.0) as u64),
        disk_used_bytes: u.disk_used_bytes,
        ..Default::default()
    }
}

impl Agent {
    /// Finds the cgroups of running Docker tasks' containers (once each).
    pub async fn resolve_docker_cgroups(&self, socket: &std::path::Path) {
        let pending: Vec<(String, String, String)> = {
            let st = lock(&self.state);
            st.frameworks
                .iter()
                .flat_map(|(fw_id, fw)| {
                    fw.executors.values().filter_map(move |ex| {
                        match (&ex.docker_container, &ex.docker_cgroup, ex.phase) {
                            (Some(name), None, ExecutorPhase::Running) => Some((
                                fw_id.clone(),
                                ex.info.executor_id.value.clone(),
                                name.clone(),
                            )),
                            _ => None,
                        }
                    })
                })
                .collect()
        };
        for (fw, ex, name) in pending {
            match crate::docker::container_cgroup(socket, &name).await {
                Ok(Some(cg)) => {
                    if let Some(e) = lock(&self.state)
                        .frameworks
                        .get_mut(&fw)
                        .and_then(|f| f.executors.get_mut(&ex))
                    {
                        tracing::debug!(container = %name, cgroup = %cg.path, "docker container cgroup");
                        e.docker_cgroup = Some(cg);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(container = %name, error = %e, "cannot resolve the docker container's cgroup")
                }
            }
        }
    }

    /// Usage of every live container. Reads happen outside the state lock.
    pub fn container_stats(&self) -> Vec<ContainerStats> {
        let mut out = Vec::new();
        {
            let st = lock(&self.state);
            for fw in st.frameworks.values() {
                for ex in fw
                    .executors
                    .values()
                    .filter(|e| e.phase != ExecutorPhase::Terminated)
                {
                    let mut usage = Usage {
                        disk_used_bytes: ex.disk_used,
                        ..Default::default()
                    };
                    usage.mem_limit_bytes = ex.cgroup.as_ref().and_then(|c| c.mem_limit_bytes);
                    out.push((
                        ContainerStats {
                            framework_id: fw.info.id.clone().unwrap_or_default(),
                            executor_id: ex.info.executor_id.clone(),
                            executor_name: ex.info.name.clone(),
                            source: ex.info.source.clone(),
                            container_id: ex.container_id.clone(),
                            pid: ex.process.as_ref().map(|p| p.pid()),
                            statistics: ResourceStatistics::default(),
                            // A Docker task's usage is its container's.
                            cgroup: ex.docker_cgroup.clone().or_else(|| ex.cgroup.clone()),
                        },
                        ex.limits,
                        usage,
                    ));
                }
            }
        }
        let snapshot = out
            .iter()
            .any(|(c, _, _)| c.cgroup.is_none())
            .then(ProcSnapshot::take);
        out.into_iter()
            .map(|(mut c, limits, known)| {
                let mut u = match (&c.cgroup, &snapshot, c.pid) {
                    (Some(cg), _, _) => cg.usage(),
                    (None, Some(snap), Some(pid)) => snap.tree_usage(pid),
                    _ => Usage::default(),
                };
                u.disk_used_bytes = known.disk_used_bytes;
                c.statistics = to_statistics(&u, &limits, c.cgroup.as_ref());
                c
            })
            .collect()
    }

    /// One pass of the limitation watch. Containers with OOM kills in their
    /// cgroup, or (when `measure_disk`) a sandbox past its disk quota under
    /// `--enforce_container_disk_quota`, are destroyed with the limitation
    /// recorded; their open tasks then fail with it.
    pub fn monitor_pass(self: &Arc<Self>, measure_disk: bool) {
        let iso = &self.config.isolation;
        let measure_disk = measure_disk && iso.disk_du;
        let probes: Vec<Probe> = {
            let st = lock(&self.state);
            st.frameworks
                .iter()
                .flat_map(|(fw_id, fw)| {
                    fw.executors
                        .values()
                        .filter(|ex| {
                            ex.phase != ExecutorPhase::Terminated && ex.termination.is_none()
                        })
                        .map(move |ex| Probe {
                            fw: fw_id.clone(),
                            ex: ex.info.executor_id.value.clone(),
                            container_id: ex.container_id.clone(),
                            cgroup: ex.cgroup.clone(),
                            directory: ex.directory.clone(),
                            limits: ex.limits,
                            volume_mounts: ex.volume_mounts.clone(),
                        })
                })
                .collect()
        };
        for p in probes {
            let mut limitation = None;
            if let Some(cg) = p.cgroup.as_ref().filter(|c| c.mem_limit_bytes.is_some()) {
                if cg.oom_kills() > 0 {
                    limitation = Some(memory_limitation(
                        cg.mem_limit_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0),
                        cg.usage().mem_max_bytes,
                    ));
                }
            }
            let mut used = None;
            if measure_disk {
                // Persistent volumes are not the sandbox's: not counted.
                let u = disk_usage(&p.directory, &p.volume_mounts);
                used = Some(u);
                let quota = (p.limits.disk_mb * 1024.0 * 1024.0) as u64;
                if limitation.is_none() && iso.enforce_disk && p.limits.disk_mb > 0.0 && u > quota {
                    limitation = Some(disk_limitation(p.limits.disk_mb, u));
                }
            }
            let mut st = lock(&self.state);
            let Some(ex) = st
                .frameworks
                .get_mut(&p.fw)
                .and_then(|f| f.executors.get_mut(&p.ex))
                .filter(|e| e.container_id == p.container_id)
            else {
                continue;
            };
            if used.is_some() {
                ex.disk_used = used;
            }
            let Some(limitation) = limitation else {
                continue;
            };
            if ex.termination.is_some() || ex.phase == ExecutorPhase::Terminated {
                continue;
            }
            tracing::warn!(
                framework_id = %p.fw,
                executor_id = %p.ex,
                container_id = %p.container_id,
                message = %limitation.message,
                "container limitation, destroying the container"
            );
            ex.termination = Some(limitation);
            ex.phase = ExecutorPhase::Terminating;
            match (&ex.cgroup, &ex.process) {
                (Some(cg), _) => {
                    let cg = cg.clone();
                    tokio::task::spawn_blocking(move || cg.kill_all());
                }
                (None, Some(process)) => {
                    // The executor kills its tasks on SIGTERM.
                    let process = process.clone();
                    tokio::spawn(async move {
                        process.signal(Signal::SIGTERM);
                        process.terminate(Duration::from_secs(3)).await;
                    });
                }
                (None, None) => {}
            }
        }
    }
}

/// Runs the limitation watch until `stop`: OOM checks every
/// [`OOM_CHECK_INTERVAL`], disk/du every `--container_disk_watch_interval`.
pub async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let iso = agent.config.isolation.clone();
    let docker = agent.config.docker_socket.clone();
    if !iso.cgroups_mem && !iso.disk_du && docker.is_none() {
        return;
    }
    let disk_every = agent
        .config
        .disk_watch_interval
        .max(Duration::from_millis(100));
    let mut next_disk = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(OOM_CHECK_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let measure_disk = Instant::now() >= next_disk;
        if measure_disk {
            next_disk = Instant::now() + disk_every;
        }
        if let Some(socket) = &docker {
            agent.resolve_docker_cgroups(socket).await;
        }
        let a = agent.clone();
        if tokio::task::spawn_blocking(move || a.monitor_pass(measure_disk))
            .await
            .is_err()
        {
            tracing::error!("resource monitor pass panicked");
        }
    }
}

//! The Corral agent: registers with the master over gRPC, runs executors
//! in sandboxes, serves the Mesos executor API, the agent operator API, the
//! legacy JSON endpoints and the sandbox files.
//!
//! Module layout (dependencies point downward):
//!
//! * [`flags`] – [`AgentFlags`], Mesos flag names with `MESOS_*` env fallbacks.
//! * [`resources`] – cpus/mem/disk/ports detection and `--resources` /
//!   `--attributes` handling.
//! * [`paths`] – the work dir layout
//!   (`slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>`) and id
//!   checks.
//! * [`isolation`] – `--isolation` (cgroups/cpu, cgroups/mem, disk/du,
//!   posix/cpu, posix/mem), the cgroups of a container (v1 and v2, through
//!   cgroups-rs) and reading usage back.
//! * [`launcher`] – `corral launcher`: enters the cgroups, sets rlimits, cwd
//!   and user, then execs the executor.
//! * [`logrotate`] – the logrotate container logger: its settings, the
//!   rotating writer `corral logger` runs, and starting a logger per stream.
//! * [`containerizer`] – starting an executor process through the launcher
//!   (own session, cwd = sandbox, stdout/stderr files or logger pipes),
//!   reaping it, signalling its group, adopting a recovered one through a
//!   pidfd.
//! * [`task_logs`] – archiving finished runs' `stdout*`/`stderr*` to
//!   `--task_log_archive`.
//! * [`fetcher`] – `CommandInfo.uris` into the sandbox, with the LRU cache.
//! * [`docker`] – the agent's side of the Docker containerizer (bollard).
//! * [`checkpoint`] – atomic checkpoints of checkpointing frameworks, the
//!   agent's checkpointed resources and unacknowledged operations.
//! * [`volumes`] – persistent volumes' directories, and bind-mounting them
//!   into sandboxes.
//! * [`hdfs_volumes`] – HDFS-backed volumes: leases, restore, write-back
//!   (cargo feature `hdfs`).
//! * [`operations`] – the agent's total resources (`--resources` plus the
//!   checkpointed reservations and volumes) and ApplyOperation.
//! * [`monitor`] – per-container usage, and the memory/disk limitation watch.
//! * [`recovery`] – rebuilding state from the checkpoint after a restart.
//! * [`status_updates`] – the status update manager (per-task FIFO, retries
//!   with backoff until the master acknowledges) as a pure state machine plus
//!   its timer loop.
//! * [`agent`] – the bookkeeping of frameworks, executors and tasks, and what
//!   the agent does on each master command, executor call and process exit.
//! * [`master`] – the gRPC session with the master: register, ping/pong,
//!   dispatch to [`agent`], reconnect with backoff.
//! * [`api`] – the HTTP server: `api::executor` (`/api/v1/executor`),
//!   `api::operator` (`/api/v1`), `api::legacy` (`/state`,
//!   `/metrics/snapshot`, `/health`, `/version`), `api::files` (`/files/*`).
//!
//! [`run`] wires them together; the CLI calls it from `corral agent`.

use std::future::Future;
use std::net::SocketAddr;

pub mod agent;
pub mod api;
pub mod checkpoint;
pub mod containerizer;
pub mod docker;
pub mod fetcher;
pub mod flags;
pub mod hdfs_volumes;
pub mod isolation;
pub mod launcher;
pub mod logrotate;
pub mod master;
pub mod monitor;
pub mod operations;
pub mod paths;
pub mod recovery;
pub mod resources;
pub mod status_updates;
mod sync;
pub mod task_logs;
pub mod volumes;

#[cfg(test)]
mod operations_tests;
#[cfg(test)]
mod session_tests;

pub use flags::AgentFlags;

use agent::{Agent, Config};
use corral_api::internal::agent_message;

/// Why the agent could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag has an invalid or unsupported value.
    #[error("invalid flag: {0}")]
    InvalidFlag(String),
    /// A filesystem or system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint of a previous run cannot be recovered.
    #[error("cannot recover: {0}")]
    Recovery(String),
    /// `--resources` no longer holds the checkpointed reservations and
    /// volumes.
    #[error("incompatible --resources: {0}")]
    IncompatibleResources(String),
    /// The Docker engine is not usable.
    #[error("--containerizers includes docker, but {0}")]
    Docker(String),
    /// The HTTP server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Builds the agent's configuration from its flags (validating them and
/// detecting resources) for an HTTP server bound at `address`.
pub fn build_config(flags: &AgentFlags, address: SocketAddr) -> Result<Config, AgentError> {
    let master = flags.master_address()?;
    std::fs::create_dir_all(&flags.work_dir).map_err(|source| AgentError::Io {
        context: format!("cannot create --work_dir {}", flags.work_dir.display()),
        source,
    })?;
    let work_dir = std::fs::canonicalize(&flags.work_dir).map_err(|source| AgentError::Io {
        context: format!("cannot resolve --work_dir {}", flags.work_dir.display()),
        source,
    })?;
    let resources = resources::agent_resources(flags.resources.as_deref(), &work_dir)
        .map_err(AgentError::InvalidFlag)?;
    let attributes = resources::agent_attributes(flags.attributes.as_deref())
        .map_err(AgentError::InvalidFlag)?;
    let isolation = isolation::Isolation::from_flags(
        &flags.isolation,
        flags.cgroups_enable_cfs,
        flags.enforce_container_disk_quota,
    )
    .map_err(|e| AgentError::InvalidFlag(e.to_string()))?;
    let mut docker = false;
    for c in flags
        .containerizers
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        match c {
            "mesos" => {}
            "docker" => docker = true,
            other => {
                return Err(AgentError::InvalidFlag(format!(
                    "--containerizers: unknown containerizer '{other}' (mesos, docker)"
                )))
            }
        }
    }
    if flags.cgroups_root.trim_matches('/').is_empty()
        || flags.cgroups_root.split('/').any(|c| c == "..")
    {
        return Err(AgentError::InvalidFlag(format!(
            "--cgroups_root={} must be a relative cgroup name",
            flags.cgroups_root
        )));
    }
    let cache_dir = flags
        .fetcher_cache_dir
        .clone()
        .unwrap_or_else(|| work_dir.join("fetch"));
    let fetcher =
        fetcher::Fetcher::new(cache_dir.clone(), flags.fetcher_cache_size).map_err(|source| {
            AgentError::Io {
                context: format!("cannot create --fetcher_cache_dir {}", cache_dir.display()),
                source,
            }
        })?;
    let launcher = flags.launcher_path()?;
    let container_launcher = launcher
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("corral"))
        .then(|| launcher.clone());
    if container_launcher.is_none() {
        if isolation.uses_cgroups() {
            return Err(AgentError::InvalidFlag(format!(
                "--isolation={} needs --launcher to be a corral binary (it sets up the cgroups)",
                flags.isolation
            )));
        }
        tracing::warn!(launcher = %launcher.display(), "--launcher is not a corral binary: executors start without the container launcher");
    }
    let container_logger = match flags.container_logger.as_str() {
        "logrotate" => {
            let Some(corral) = container_launcher.clone() else {
                return Err(AgentError::InvalidFlag(format!(
                    "--container_logger=logrotate needs --launcher to be a corral binary (it \
                     runs `{} logger`)",
                    launcher.display()
                )));
            };
            let keep = |o: &Option<logrotate::LogrotateOptions>| {
                o.as_ref()
                    .and_then(|o| o.rotate)
                    .unwrap_or(logrotate::DEFAULT_KEEP)
            };
            containerizer::ContainerLogger::Logrotate {
                corral,
                settings: logrotate::LogrotateSettings {
                    stdout: logrotate::StreamSettings {
                        max_size: flags.logrotate_max_stdout_size,
                        keep: keep(&flags.logrotate_stdout_options),
                    },
                    stderr: logrotate::StreamSettings {
                        max_size: flags.logrotate_max_stderr_size,
                        keep: keep(&flags.logrotate_stderr_options),
                    },
                },
            }
        }
        _ => containerizer::ContainerLogger::Sandbox,
    };
    let task_log_archive = match flags
        .task_log_archive
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        Some(uri) => Some(
            task_logs::TaskLogArchive::open(uri)
                .map_err(|e| AgentError::InvalidFlag(format!("--task_log_archive={uri}: {e}")))?,
        ),
        None => None,
    };
    let hostname = match &flags.hostname {
        Some(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => system_hostname().unwrap_or_else(|| flags.ip.to_string()),
    };
    Ok(Config {
        address,
        hostname,
        resources,
        attributes,
        launcher,
        container_launcher,
        executor_registration_timeout: flags.executor_registration_timeout,
        executor_shutdown_grace_period: flags.executor_shutdown_grace_period,
        registration_backoff_factor: flags.registration_backoff_factor,
        master,
        flags: flags.to_pairs(),
        start_time: corral_api::ids::now_secs(),
        isolation,
        cgroups_root: flags.cgroups_root.trim_matches('/').to_string(),
        docker_socket: docker.then(|| flags.docker_socket.clone()),
        docker_kill_orphans: flags.docker_kill_orphans,
        fetcher: std::sync::Arc::new(fetcher),
        checkpoint: checkpoint::Checkpoint::new(&work_dir),
        recovery_timeout: flags.recovery_timeout,
        executor_reregistration_timeout: flags.executor_reregistration_timeout,
        disk_watch_interval: flags.container_disk_watch_interval,
        switch_user: flags.switch_user,
        hdfs_volume_root: flags
            .hdfs_volume_root
            .clone()
            .filter(|r| !r.trim().is_empty()),
        hdfs_lease_timeout: flags.hdfs_lease_timeout,
        hdfs_writeback_interval: flags.hdfs_writeback_interval,
        gc_delay: flags.gc_delay,
        container_logger,
        task_log_archive,
        work_dir,
    })
}

fn system_hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// Runs the agent until `shutdown` resolves, then kills every executor it
/// started (SIGTERM to the process group, SIGKILL after the grace period)
/// and returns.
pub async fn run(flags: AgentFlags, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    // Validate before binding, so flag errors come first.
    flags.master_address()?;
    let bind = SocketAddr::new(flags.ip, flags.port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| AgentError::Bind { addr: bind, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| AgentError::Bind { addr: bind, source })?;
    let config = build_config(&flags, address)?;
    tracing::info!(
        address = %address,
        hostname = %config.hostname,
        master = %config.master,
        work_dir = %config.work_dir.display(),
        resources = %corral_api::resources::Resources::from_vec(&config.resources),
        "agent starting"
    );
    if let Some(socket) = &config.docker_socket {
        docker::check(socket)
            .await
            .map_err(|e| AgentError::Docker(e.to_string()))?;
    }
    let agent = Agent::new(config);
    agent.hdfs.connect().await?;
    agent.load_checkpointed_resources()?;
    let outcome = agent
        .recover(flags.strict, flags.recover == "cleanup")
        .await
        .map_err(|e| {
            AgentError::Recovery(format!(
                "{e} (start with --strict=false to recover what can be read and report the \
                 rest lost, or remove the work dir's meta directory to start afresh)"
            ))
        })?;
    match &outcome {
        recovery::RecoveryOutcome::CleanedUp => {
            tracing::info!("--recover=cleanup finished, exiting");
            return Ok(());
        }
        recovery::RecoveryOutcome::Recovered {
            live_executors,
            tasks,
            lost_tasks,
        } => tracing::info!(
            live_executors,
            tasks,
            lost_tasks,
            "recovered the previous run"
        ),
        recovery::RecoveryOutcome::Fresh => {}
    }
    agent.sweep_volume_mounts(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let server = {
        let app = api::router(agent.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let graceful = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        })
    };
    if matches!(outcome, recovery::RecoveryOutcome::Recovered { .. }) {
        tokio::spawn(agent.clone().reregistration_timer());
    }
    let monitor = tokio::spawn(monitor::run(agent.clone(), stop_rx.clone()));
    let hdfs = {
        let weak = std::sync::Arc::downgrade(&agent);
        tokio::spawn(hdfs_volumes::maintain(
            agent.hdfs.clone(),
            move || {
                weak.upgrade().and_then(|a| {
                    agent::lock(&a.state)
                        .agent_id
                        .as_ref()
                        .map(|i| i.value.clone())
                })
            },
            stop_rx.clone(),
        ))
    };
    let master = tokio::spawn(master::run(agent.clone(), stop_rx.clone()));
    let retries = {
        let a = agent.clone();
        tokio::spawn(status_updates::drive_retries(
            agent.sum.clone(),
            agent.sum_wake.clone(),
            move |u| a.send_to_master(agent_message::Message::StatusUpdate(u)),
            stop_rx.clone(),
        ))
    };

    shutdown.await;
    tracing::info!("agent shutting down");
    agent.kill_all_executors().await;
    // Their logs go to the archive before the agent exits (bounded).
    agent.finish_archiving().await;
    // Every executor is gone (their exits may still be on their way).
    agent.sweep_volume_mounts(false);
    let _ = stop_tx.send(true);
    let _ = hdfs.await;
    // What the tasks wrote last goes to HDFS before the agent exits.
    agent.hdfs.write_back_all().await;
    let _ = master.await;
    let _ = retries.await;
    let _ = monitor.await;
    // The executors' cgroups go with them (asynchronously); the root goes
    // when nothing else uses it.
    let (version, root) = (
        agent.config.isolation.version,
        agent.config.cgroups_root.clone(),
    );
    let _ = tokio::task::spawn_blocking(move || {
        isolation::retry_until(std::time::Duration::from_millis(250), || {
            isolation::remove_root_if_empty(version, &root);
            !std::path::Path::new(isolation::CGROUP_ROOT)
                .join("memory")
                .join(&root)
                .exists()
        });
    })
    .await;
    // Executor event streams end with the executors; bound the wait anyway.
    let mut server = server;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut server)
        .await
        .is_err()
    {
        tracing::warn!("http server did not stop in time, closing its connections");
        server.abort();
    }
    tracing::info!("agent stopped");
    Ok(())
}

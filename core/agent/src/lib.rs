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
//! * [`containerizer`] – starting an executor process (own session, cwd =
//!   sandbox, stdout/stderr files), reaping it, signalling its group.
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
pub mod containerizer;
pub mod flags;
pub mod master;
pub mod paths;
pub mod resources;
pub mod status_updates;

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
    let hostname = match &flags.hostname {
        Some(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => system_hostname().unwrap_or_else(|| flags.ip.to_string()),
    };
    Ok(Config {
        work_dir,
        address,
        hostname,
        resources,
        attributes,
        launcher: flags.launcher_path()?,
        executor_registration_timeout: flags.executor_registration_timeout,
        executor_shutdown_grace_period: flags.executor_shutdown_grace_period,
        registration_backoff_factor: flags.registration_backoff_factor,
        master,
        flags: flags.to_pairs(),
        start_time: corral_api::ids::now_secs(),
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
    let agent = Agent::new(config);
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
    let _ = stop_tx.send(true);
    let _ = master.await;
    let _ = retries.await;
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

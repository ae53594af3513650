//! Corral's default executor: a client of the Mesos v1 executor API
//! (`POST http://$MESOS_AGENT_ENDPOINT/api/v1/executor`, protobuf) that runs
//! `CommandInfo` tasks as local processes.
//!
//! It plays both Mesos built-in roles: the *command executor* (one task per
//! LAUNCH) and the *default executor* (LAUNCH_GROUP; a failed or killed task
//! takes the rest of its group down). The CLI exposes [`run`] as the hidden
//! `corral executor` subcommand; the agent starts it with the Mesos executor
//! environment and the sandbox as working directory.
//!
//! Module layout:
//!
//! * [`config`] – [`Config`], read from the `MESOS_*` environment variables.
//! * [`error`] – [`ExecutorError`].
//! * `agent` – the HTTP client: SUBSCRIBE (a streamed RecordIO response
//!   decoded by a bounded reader task into a channel) and UPDATE calls.
//! * `process` – building a task's command, spawning it in its own session
//!   and process group, signalling the group, wording exit statuses.
//! * `health` – health checks (HTTP, TCP, COMMAND; delay, interval,
//!   timeout, grace period, consecutive failures) and checks (CheckInfo).
//! * `docker` – Docker mode for tasks with a DOCKER ContainerInfo (bollard):
//!   image, networking and port mappings, volumes, parameters, the sandbox
//!   at /mnt/mesos/sandbox, output into the sandbox, stop with a grace period.
//! * `executor` – the state machine: a single `select!` loop that owns all
//!   state and reacts to agent events, task exits, kill-escalation timers
//!   and (re-)subscription attempts.
//!
//! Lifecycle: SUBSCRIBE -> SUBSCRIBED -> LAUNCH / LAUNCH_GROUP; each task
//! gets TASK_STARTING, TASK_RUNNING, then one terminal update (FINISHED,
//! FAILED, KILLED or ERROR). Every update is kept until the agent's
//! ACKNOWLEDGED echoes its uuid and is re-sent inside the next SUBSCRIBE.
//! The executor exits `Ok` once every task is terminal and acknowledged
//! (or after [`Config::ack_wait`]).

pub mod config;
pub mod error;

mod agent;
mod docker;
mod executor;
mod health;
mod process;

pub use config::Config;
pub use error::ExecutorError;

/// Runs the executor as started by an agent: installs a stderr `tracing`
/// subscriber (unless the caller already installed one), reads the
/// environment, treats SIGTERM like a SHUTDOWN event, and runs until done.
pub async fn run() -> Result<(), ExecutorError> {
    init_logging();
    let config = Config::from_env()?;
    let terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGTERM; it will not kill the tasks");
            None
        }
    };
    let result = executor::Executor::new(config)?.run(terminate).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "executor failed");
    }
    result
}

/// Runs the executor with an explicit configuration (no environment, no
/// signal handling, no logging setup) — for embedding and tests.
pub async fn run_with_config(config: Config) -> Result<(), ExecutorError> {
    executor::Executor::new(config)?.run(None).await
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only when a global subscriber exists already (e.g. the CLI's).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

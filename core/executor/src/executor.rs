//! The executor's state machine: one loop that reacts to agent events,
//! task exits and kill-escalation timers, and owns every piece of state
//! (tasks, unacknowledged updates, the connection).

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::Duration;

use corral_api::ids;
use corral_api::v1::executor::{call, event, Event};
use corral_api::v1::{
    container_info, framework_info, task_status, CheckStatusInfo, KillPolicy, TaskInfo, TaskState,
    TaskStatus,
};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::{AgentClient, StreamMsg, SubscribeError, Subscription};
use crate::{docker, health, process};
use crate::{Config, ExecutorError};

/// First delay between SUBSCRIBE attempts (doubled up to the configured max).
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Messages from the executor's own helper tasks.
#[derive(Debug)]
enum Internal {
    /// A task's main process exited (and was reaped).
    Exited {
        task_id: String,
        status: std::io::Result<ExitStatus>,
    },
    /// A kill grace period expired: SIGKILL the task if it is still alive.
    Escalate { task_id: String },
    /// A Docker task's container ended.
    ContainerExited { task_id: String, exit: docker::Exit },
    /// A health check result to report.
    Health {
        task_id: String,
        event: health::HealthEvent,
    },
    /// A changed check result to report.
    Check {
        task_id: String,
        status: CheckStatusInfo,
    },
}

/// Optional fields of a status update.
#[derive(Default)]
struct Extra {
    healthy: Option<bool>,
    check_status: Option<CheckStatusInfo>,
    limitation: Option<corral_api::v1::TaskResourceLimitation>,
}

/// The connection to the agent.
enum Conn {
    /// SUBSCRIBE was answered `200`; events flow through the subscription.
    /// `subscribed` turns true once the SUBSCRIBED event arrived.
    Connected { sub: Subscription, subscribed: bool },
    /// Not connected; the next SUBSCRIBE attempt is due at `next_attempt`.
    Disconnected {
        since: Instant,
        next_attempt: Instant,
        backoff: Duration,
    },
    /// Gave up on the agent (fatal error); no more attempts.
    Gone,
}

/// One task this executor runs.
struct Task {
    info: TaskInfo,
    /// Index into `Executor::groups` for tasks launched by LAUNCH_GROUP.
    group: Option<usize>,
    /// Pid (= process group id) once spawned.
    pgid: Option<i32>,
    /// A kill was requested (the exit is then reported as TASK_KILLED).
    killing: bool,
    /// Set once a terminal update was generated.
    terminal: Option<TaskState>,
    /// The agent acknowledged at least one update of this task.
    acked_any: bool,
    /// The Docker client and container name of a Docker task.
    docker: Option<(bollard::Docker, String)>,
    /// Health check and check runners.
    checkers: Vec<tokio::task::JoinHandle<()>>,
    /// Killed because its health checks failed.
    killed_unhealthy: Option<u32>,
}

/// A status update kept until the agent acknowledges its uuid.
struct Pending {
    update: call::Update,
    /// Delivered on the current connection (as UPDATE or inside SUBSCRIBE).
    delivered: bool,
}

pub(crate) struct Executor {
    cfg: Config,
    agent: AgentClient,
    conn: Conn,
    tasks: BTreeMap<String, Task>,
    groups: Vec<Vec<String>>,
    unacked: Vec<Pending>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// A LAUNCH or LAUNCH_GROUP arrived (the executor exits when its tasks are done).
    launched_any: bool,
    shutting_down: bool,
    ever_subscribed: bool,
    /// The framework understands TASK_KILLING.
    task_killing_state: bool,
    /// Fatal error: once every task is terminal, `run` returns it.
    abort: Option<ExecutorError>,
    /// Set when every task is terminal but updates are unacknowledged.
    ack_deadline: Option<Instant>,
}

impl Executor {
    pub fn new(cfg: Config) -> Result<Self, ExecutorError> {
        let agent = AgentClient::new(&cfg.agent_endpoint, &cfg.framework_id, &cfg.executor_id)?;
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        Ok(Executor {
            cfg,
            agent,
            conn: Conn::Disconnected {
                since: now,
                next_attempt: now,
                backoff: INITIAL_BACKOFF,
            },
            tasks: BTreeMap::new(),
            groups: Vec::new(),
            unacked: Vec::new(),
            internal_tx,
            internal_rx,
            launched_any: false,
            shutting_down: false,
            ever_subscribed: false,
            task_killing_state: false,
            abort: None,
            ack_deadline: None,
        })
    }

    /// Runs until every task is terminal (and its terminal update
    /// acknowledged, within a bound) or a fatal error. `terminate`, when
    /// given, is treated like a SHUTDOWN event when it fires (SIGTERM).
    pub async fn run(
        mut self,
        mut terminate: Option<tokio::signal::unix::Signal>,
    ) -> Result<(), ExecutorError> {
        tracing::info!(
            framework_id = %self.cfg.framework_id,
            executor_id = %self.cfg.executor_id,
            agent = %self.cfg.agent_endpoint,
            sandbox = %self.cfg.sandbox.display(),
            checkpoint = self.cfg.checkpoint,
            "executor starting"
        );
        loop {
            if let Some(outcome) = self.check_done() {
                return outcome;
            }
            let next_attempt = match &self.conn {
                Conn::Disconnected { next_attempt, .. } => Some(*next_attempt),
                _ => None,
            };
            tokio::select! {
                msg = next_stream_msg(&mut self.conn) => match msg {
                    StreamMsg::Event(event) => self.on_event(*event).await,
                    StreamMsg::Closed(reason) => self.on_disconnected(reason).await,
                },
                Some(msg) = self.internal_rx.recv() => match msg {
                    Internal::Exited { task_id, status } => self.on_exit(&task_id, status).await,
                    Internal::Escalate { task_id } => self.on_escalate(&task_id),
                    Internal::ContainerExited { task_id, exit } => {
                        self.on_container_exit(&task_id, exit).await
                    }
                    Internal::Health { task_id, event } => self.on_health(&task_id, event).await,
                    Internal::Check { task_id, status } => self.on_check(&task_id, status).await,
                },
                _ = sleep_until_opt(next_attempt) => self.try_subscribe().await,
                _ = sleep_until_opt(self.ack_deadline) => {
                    tracing::warn!(
                        unacknowledged = self.unacked.len(),
                        wait = ?self.cfg.ack_wait,
                        "terminal updates still unacknowledged; exiting anyway"
                    );
                    return match self.abort.take() {
                        Some(err) => Err(err),
                        None => Ok(()),
                    };
                }
                Some(()) = next_signal(&mut terminate) => {
                    tracing::info!("received SIGTERM; shutting down");
                    self.on_shutdown(self.cfg.shutdown_grace_period).await;
                }
            }
        }
    }

    /// `Some(outcome)` when the executor is done.
    fn check_done(&mut self) -> Option<Result<(), ExecutorError>> {
        if self.tasks.values().any(|t| t.terminal.is_none()) {
            return None;
        }
        if let Some(err) = self.abort.take() {
            if !self.unacked.is_empty() {
                tracing::warn!(
                    unacknowledged = self.unacked.len(),
                    "exiting with unacknowledged updates"
                );
            }
            return Some(Err(err));
        }
        if !(self.launched_any || self.shutting_down) {
            return None;
        }
        if self.unacked.is_empty() {
            tracing::info!("all tasks are terminal and acknowledged; exiting");
            return Some(Ok(()));
        }
        if self.ack_deadline.is_none() {
            tracing::info!(
                unacknowledged = self.unacked.len(),
                "all tasks are terminal; waiting for acknowledgements"
            );
            self.ack_deadline = Some(Instant::now() + self.cfg.ack_wait);
        }
        None
    }

    // ----- connection -------------------------------------------------------

    async fn try_subscribe(&mut self) {
        let Conn::Disconnected { since, backoff, .. } = self.conn else {
            return;
        };
        if since.elapsed() > self.cfg.recovery_timeout {
            tracing::error!(timeout = ?self.cfg.recovery_timeout, "could not reach the agent within the recovery timeout");
            self.abort(ExecutorError::RecoveryTimeout(self.cfg.recovery_timeout))
                .await;
            return;
        }
        let subscribe = call::Subscribe {
            unacknowledged_tasks: self
                .tasks
                .values()
                .filter(|t| !t.acked_any)
                .map(|t| t.info.clone())
                .collect(),
            unacknowledged_updates: self.unacked.iter().map(|p| p.update.clone()).collect(),
        };
        tracing::info!(
            unacknowledged_tasks = subscribe.unacknowledged_tasks.len(),
            unacknowledged_updates = subscribe.unacknowledged_updates.len(),
            "subscribing with the agent"
        );
        match self.agent.subscribe(subscribe).await {
            Ok(sub) => {
                for pending in &mut self.unacked {
                    pending.delivered = true;
                }
                self.conn = Conn::Connected {
                    sub,
                    subscribed: false,
                };
            }
            Err(SubscribeError::Retryable(reason)) => {
                let max = self
                    .cfg
                    .subscription_backoff_max
                    .max(Duration::from_millis(1));
                let delay = backoff.min(max);
                tracing::warn!(error = %reason, retry_in = ?delay, "subscribe failed");
                self.conn = Conn::Disconnected {
                    since,
                    next_attempt: Instant::now() + delay,
                    backoff: (delay * 2).min(max),
                };
            }
            Err(SubscribeError::Fatal(err)) => {
                tracing::error!(error = %err, "the agent rejected the subscription");
                self.abort(err).await;
            }
        }
    }

    async fn on_disconnected(&mut self, reason: String) {
        tracing::warn!(reason = %reason, "disconnected from the agent");
        if self.ever_subscribed && !self.cfg.checkpoint {
            self.abort(ExecutorError::Disconnected(reason)).await;
            return;
        }
        for pending in &mut self.unacked {
            pending.delivered = false;
        }
        let now = Instant::now();
        self.conn = Conn::Disconnected {
            since: now,
            next_attempt: now + INITIAL_BACKOFF.min(self.cfg.subscription_backoff_max),
            backoff: INITIAL_BACKOFF,
        };
    }

    /// Gives up: kills every task and makes `run` return `err` once they are gone.
    async fn abort(&mut self, err: ExecutorError) {
        self.conn = Conn::Gone;
        self.abort.get_or_insert(err);
        let grace = self.cfg.shutdown_grace_period;
        for id in self.live_task_ids() {
            self.kill_task(&id, grace).await;
        }
    }

    // ----- events -----------------------------------------------------------

    async fn on_event(&mut self, event: Event) {
        match event.r#type() {
            event::Type::Subscribed => match event.subscribed {
                Some(s) => self.on_subscribed(s).await,
                None => tracing::warn!("SUBSCRIBED event without payload"),
            },
            event::Type::Launch => match event.launch {
                Some(launch) => self.on_launch(launch.task).await,
                None => tracing::warn!("LAUNCH event without payload"),
            },
            event::Type::LaunchGroup => match event.launch_group {
                Some(group) => self.on_launch_group(group.task_group.tasks).await,
                None => tracing::warn!("LAUNCH_GROUP event without payload"),
            },
            event::Type::Kill => match event.kill {
                Some(kill) => self.on_kill(kill).await,
                None => tracing::warn!("KILL event without payload"),
            },
            event::Type::Acknowledged => match event.acknowledged {
                Some(ack) => self.on_acknowledged(ack),
                None => tracing::warn!("ACKNOWLEDGED event without payload"),
            },
            event::Type::Message => {
                let data = event.message.map(|m| m.data).unwrap_or_default();
                tracing::info!(
                    bytes = data.len(),
                    data = %String::from_utf8_lossy(&data),
                    "message from the framework"
                );
            }
            event::Type::Error => {
                let message = event.error.map(|e| e.message).unwrap_or_default();
                tracing::error!(message = %message, "error event from the agent");
            }
            event::Type::Shutdown => {
                tracing::info!("shutdown requested by the agent");
                self.on_shutdown(self.cfg.shutdown_grace_period).await;
            }
            event::Type::Unknown => {
                tracing::warn!(r#type = ?event.r#type, "ignoring unknown event")
            }
        }
    }

    async fn on_subscribed(&mut self, s: event::Subscribed) {
        tracing::info!(
            agent_id = %s.agent_info.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
            agent_host = %s.agent_info.hostname,
            framework = %s.framework_info.name,
            container_id = %s.container_id.as_ref().map(|c| c.value.as_str()).unwrap_or(""),
            "subscribed with the agent"
        );
        self.ever_subscribed = true;
        self.task_killing_state = s
            .framework_info
            .capabilities
            .iter()
            .any(|c| c.r#type() == framework_info::capability::Type::TaskKillingState);
        if let Conn::Connected { subscribed, .. } = &mut self.conn {
            *subscribed = true;
        }
        // Updates generated between the SUBSCRIBE call and this event.
        let undelivered: Vec<call::Update> = self
            .unacked
            .iter()
            .filter(|p| !p.delivered)
            .map(|p| p.update.clone())
            .collect();
        for update in undelivered {
            self.deliver(update).await;
        }
    }

    async fn on_launch(&mut self, task: TaskInfo) {
        if !self.tasks.is_empty() && !self.tasks.contains_key(&task.task_id.value) {
            // Mesos' command executor runs exactly one task.
            let id = task.task_id.value.clone();
            tracing::warn!(task_id = %id, "rejecting a second LAUNCH");
            self.register(task, None);
            self.send_status(
                &id,
                TaskState::TaskFailed,
                Some("Attempted to run multiple tasks using a \"command\" executor".into()),
                None,
            )
            .await;
            return;
        }
        self.launch(vec![task], None).await;
    }

    async fn on_launch_group(&mut self, tasks: Vec<TaskInfo>) {
        let group = self.groups.len();
        self.groups.push(Vec::new());
        self.launch(tasks, Some(group)).await;
    }

    async fn launch(&mut self, tasks: Vec<TaskInfo>, group: Option<usize>) {
        if self.shutting_down || self.abort.is_some() {
            tracing::warn!(
                tasks = tasks.len(),
                "ignoring launch: the executor is shutting down"
            );
            return;
        }
        let mut ids = Vec::new();
        for task in tasks {
            let id = task.task_id.value.clone();
            if self.tasks.contains_key(&id) {
                tracing::warn!(task_id = %id, "ignoring launch of a task id that is already in use");
                continue;
            }
            self.register(task, group);
            ids.push(id);
        }
        if ids.is_empty() {
            return;
        }
        self.launched_any = true;

        // Validate the whole group before starting any of it.
        let invalid: Vec<String> = ids
            .iter()
            .filter(|id| {
                self.tasks[id.as_str()]
                    .info
                    .command
                    .as_ref()
                    .and_then(|c| c.value.as_deref())
                    .is_none_or(str::is_empty)
            })
            .cloned()
            .collect();
        for id in &invalid {
            tracing::warn!(task_id = %id, "task has no command");
            self.send_status(
                id,
                TaskState::TaskError,
                Some("Task has no command: the Corral executor runs CommandInfo tasks only".into()),
                Some(task_status::Reason::TaskInvalid),
            )
            .await;
            self.after_terminal(id, TaskState::TaskError).await;
        }

        for id in ids {
            if self.tasks[&id].terminal.is_some() {
                continue;
            }
            self.start_task(&id).await;
        }
    }

    fn register(&mut self, info: TaskInfo, group: Option<usize>) {
        let id = info.task_id.value.clone();
        if let Some(g) = group {
            self.groups[g].push(id.clone());
        }
        self.tasks.insert(
            id,
            Task {
                info,
                group,
                pgid: None,
                killing: false,
                terminal: None,
                acked_any: false,
                docker: None,
                checkers: Vec::new(),
                killed_unhealthy: None,
            },
        );
    }

    async fn start_task(&mut self, id: &str) {
        self.send_status(id, TaskState::TaskStarting, None, None)
            .await;
        let is_docker = self.tasks[id]
            .info
            .container
            .as_ref()
            .is_some_and(|c| c.r#type == container_info::Type::Docker as i32);
        if is_docker {
            if let Err(e) = self.start_container(id).await {
                tracing::error!(task_id = %id, error = %e, "failed to launch the docker container");
                self.send_status(
                    id,
                    TaskState::TaskFailed,
                    Some(format!("Failed to launch the container: {e}")),
                    Some(task_status::Reason::ContainerLaunchFailed),
                )
                .await;
                self.after_terminal(id, TaskState::TaskFailed).await;
                return;
            }
        } else {
            let task = &self.tasks[id];
            let spawned = task
                .info
                .command
                .as_ref()
                .ok_or_else(|| "task has no command".to_string())
                .and_then(|c| process::build_command(c, &self.cfg.sandbox))
                .and_then(process::spawn);
            let (mut child, pgid) = match spawned {
                Ok(spawned) => spawned,
                Err(e) => {
                    tracing::error!(task_id = %id, error = %e, "failed to launch task");
                    self.send_status(
                        id,
                        TaskState::TaskFailed,
                        Some(format!("Failed to launch the command: {e}")),
                        None,
                    )
                    .await;
                    self.after_terminal(id, TaskState::TaskFailed).await;
                    return;
                }
            };
            tracing::info!(task_id = %id, pid = pgid, "task launched");
            if let Some(task) = self.tasks.get_mut(id) {
                task.pgid = Some(pgid);
            }
            let tx = self.internal_tx.clone();
            let task_id = id.to_string();
            tokio::spawn(async move {
                let status = child.wait().await;
                let _ = tx.send(Internal::Exited { task_id, status });
            });
        }
        self.send_status(id, TaskState::TaskRunning, None, None)
            .await;
        self.start_checkers(id);
    }

    /// Runs a DOCKER task's container: create, start, copy its output into
    /// the sandbox, wait for it.
    async fn start_container(&mut self, id: &str) -> Result<(), String> {
        let socket =
            self.cfg.docker_socket.clone().ok_or(
                "the agent did not enable the docker containerizer (no CORRAL_DOCKER_SOCKET)",
            )?;
        let name = self
            .cfg
            .container_name
            .clone()
            .unwrap_or_else(|| format!("mesos-{}-{id}", self.cfg.executor_id));
        let info = self.tasks[id].info.clone();
        let env = vec![
            (
                "MESOS_SANDBOX".to_string(),
                docker::SANDBOX_IN_CONTAINER.to_string(),
            ),
            ("MESOS_TASK_ID".to_string(), id.to_string()),
            (
                "MESOS_FRAMEWORK_ID".to_string(),
                self.cfg.framework_id.clone(),
            ),
            (
                "MESOS_EXECUTOR_ID".to_string(),
                self.cfg.executor_id.clone(),
            ),
            ("MESOS_CONTAINER_NAME".to_string(), name.clone()),
        ];
        let mut labels = vec![("corral.task_id".to_string(), id.to_string())];
        if let Some(a) = &self.cfg.agent_id {
            labels.push(("corral.agent_id".to_string(), a.clone()));
        }
        if let Some(c) = &self.cfg.container_id {
            labels.push(("corral.container_id".to_string(), c.clone()));
        }
        let body = docker::create_body(&info, &self.cfg.sandbox, &env, &labels)?;
        let client = docker::connect(&socket).await?;
        docker::start(&client, &name, &info, body).await?;
        tracing::info!(task_id = %id, container = %name, "docker container started");
        tokio::spawn(docker::follow_logs(client.clone(), name.clone()));
        let tx = self.internal_tx.clone();
        let (c, n, task_id) = (client.clone(), name.clone(), id.to_string());
        tokio::spawn(async move {
            let exit = docker::wait(c, n).await;
            let _ = tx.send(Internal::ContainerExited { task_id, exit });
        });
        if let Some(task) = self.tasks.get_mut(id) {
            task.docker = Some((client, name));
        }
        Ok(())
    }

    /// Starts the task's health check and check, if any.
    fn start_checkers(&mut self, id: &str) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        // BRIDGE Docker tasks: checks name container ports.
        let mappings: Vec<(u32, u32)> = task
            .info
            .container
            .as_ref()
            .filter(|_| task.docker.is_some())
            .and_then(|c| c.docker.as_ref())
            .filter(|d| d.network == Some(container_info::docker_info::Network::Bridge as i32))
            .map(|d| {
                d.port_mappings
                    .iter()
                    .map(|m| (m.host_port, m.container_port))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(hc) = &task.info.health_check {
            match health::from_health_check(hc) {
                Ok((probe, schedule)) => {
                    let probe = probe.map_ports(&mappings);
                    let tx = self.internal_tx.clone();
                    let task_id = id.to_string();
                    task.checkers.push(health::spawn_health(
                        probe,
                        schedule,
                        self.cfg.sandbox.clone(),
                        move |event| {
                            let _ = tx.send(Internal::Health {
                                task_id: task_id.clone(),
                                event,
                            });
                        },
                    ));
                }
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "ignoring an invalid health check")
                }
            }
        }
        if let Some(c) = &task.info.check {
            match health::from_check(c) {
                Ok((probe, schedule)) => {
                    let probe = probe.map_ports(&mappings);
                    let tx = self.internal_tx.clone();
                    let task_id = id.to_string();
                    task.checkers.push(health::spawn_check(
                        probe,
                        schedule,
                        self.cfg.sandbox.clone(),
                        move |status| {
                            let _ = tx.send(Internal::Check {
                                task_id: task_id.clone(),
                                status,
                            });
                        },
                    ));
                }
                Err(e) => tracing::warn!(task_id = %id, error = %e, "ignoring an invalid check"),
            }
        }
    }

    async fn on_health(&mut self, id: &str, event: health::HealthEvent) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.terminal.is_some() || task.killing {
            return;
        }
        self.send_status_ext(
            id,
            TaskState::TaskRunning,
            Some(event.message.clone()),
            Some(task_status::Reason::TaskHealthCheckStatusUpdated),
            Extra {
                healthy: Some(event.healthy),
                ..Default::default()
            },
        )
        .await;
        if event.kill {
            tracing::warn!(task_id = %id, failures = event.consecutive_failures, "killing the task after consecutive failed health checks");
            let grace = grace_period(self.tasks[id].info.kill_policy.as_ref())
                .unwrap_or(self.cfg.default_kill_grace_period);
            if let Some(task) = self.tasks.get_mut(id) {
                task.killed_unhealthy = Some(event.consecutive_failures);
            }
            self.kill_task(id, grace).await;
        }
    }

    async fn on_check(&mut self, id: &str, status: CheckStatusInfo) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.terminal.is_some() {
            return;
        }
        self.send_status_ext(
            id,
            TaskState::TaskRunning,
            None,
            Some(task_status::Reason::TaskCheckStatusUpdated),
            Extra {
                check_status: Some(status),
                ..Default::default()
            },
        )
        .await;
    }

    async fn on_container_exit(&mut self, id: &str, exit: docker::Exit) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.terminal.is_some() {
            return;
        }
        let mem = corral_api::resources::Resources::from_vec(&task.info.resources).scalar("mem");
        if exit.oom_killed && exit.error.is_none() && task.killed_unhealthy.is_none() {
            tracing::info!(task_id = %id, "container was killed for its memory limit");
            self.send_status_ext(
                id,
                TaskState::TaskFailed,
                Some(format!("Memory limit exceeded: Requested: {mem}MB")),
                Some(task_status::Reason::ContainerLimitationMemory),
                Extra {
                    limitation: Some(corral_api::v1::TaskResourceLimitation {
                        resources: vec![corral_api::resources::scalar("mem", mem)],
                    }),
                    ..Default::default()
                },
            )
            .await;
            self.after_terminal(id, TaskState::TaskFailed).await;
            return;
        }
        let (state, message, reason) = if let Some(e) = exit.error {
            (TaskState::TaskFailed, e, None)
        } else if exit.oom_killed {
            (
                TaskState::TaskFailed,
                format!("Memory limit exceeded: Requested: {mem}MB"),
                Some(task_status::Reason::ContainerLimitationMemory),
            )
        } else {
            let code = exit.code.unwrap_or(-1);
            let message = format!("Container exited with status {code}");
            if task.killing {
                (TaskState::TaskKilled, message, None)
            } else if code == 0 {
                (TaskState::TaskFinished, message, None)
            } else {
                (TaskState::TaskFailed, message, None)
            }
        };
        tracing::info!(task_id = %id, state = state.as_str_name(), message = %message, "container ended");
        self.finish(id, state, message, reason).await;
    }

    /// Sends a task's terminal update (health-killed tasks say so) and
    /// applies group semantics.
    async fn finish(
        &mut self,
        id: &str,
        state: TaskState,
        message: String,
        reason: Option<task_status::Reason>,
    ) {
        let unhealthy = self.tasks.get(id).and_then(|t| t.killed_unhealthy);
        let (state, message, extra) = match unhealthy {
            Some(n) => (
                TaskState::TaskKilled,
                format!("Task killed after {n} consecutive failed health checks ({message})"),
                Extra {
                    healthy: Some(false),
                    ..Default::default()
                },
            ),
            None => (state, message, Extra::default()),
        };
        self.send_status_ext(id, state, Some(message), reason, extra)
            .await;
        self.after_terminal(id, state).await;
    }

    async fn on_kill(&mut self, kill: event::Kill) {
        let id = kill.task_id.value;
        let Some(task) = self.tasks.get(&id) else {
            tracing::warn!(task_id = %id, "ignoring kill of an unknown task");
            return;
        };
        if task.terminal.is_some() {
            tracing::info!(task_id = %id, "ignoring kill of a terminal task");
            return;
        }
        let grace = grace_period(kill.kill_policy.as_ref())
            .or_else(|| grace_period(task.info.kill_policy.as_ref()))
            .unwrap_or(self.cfg.default_kill_grace_period);
        let group = task.group;
        tracing::info!(task_id = %id, grace = ?grace, "kill requested");
        self.kill_task(&id, grace).await;
        if let Some(group) = group {
            // Mesos' default executor kills a task group as a whole.
            self.kill_group(group).await;
        }
    }

    fn on_acknowledged(&mut self, ack: event::Acknowledged) {
        let before = self.unacked.len();
        self.unacked
            .retain(|p| p.update.status.uuid.as_deref() != Some(ack.uuid.as_slice()));
        if self.unacked.len() == before {
            tracing::warn!(task_id = %ack.task_id.value, "acknowledgement of an unknown update");
            return;
        }
        tracing::debug!(task_id = %ack.task_id.value, "update acknowledged");
        if let Some(task) = self.tasks.get_mut(&ack.task_id.value) {
            task.acked_any = true;
        }
    }

    async fn on_shutdown(&mut self, grace: Duration) {
        self.shutting_down = true;
        for id in self.live_task_ids() {
            self.kill_task(&id, grace).await;
        }
    }

    // ----- processes --------------------------------------------------------

    async fn on_exit(&mut self, id: &str, status: std::io::Result<ExitStatus>) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        if task.terminal.is_some() {
            return;
        }
        // The main process is gone: take any stragglers of its group with it.
        if let Some(pgid) = task.pgid {
            process::signal_group(pgid, Signal::SIGKILL);
        }
        let (state, message) = match status {
            Err(e) => (
                TaskState::TaskFailed,
                format!("Failed to wait for the command: {e}"),
            ),
            Ok(status) => {
                let message = format!("Command {}", process::describe_exit(&status));
                if task.killing {
                    (TaskState::TaskKilled, message)
                } else if status.success() {
                    (TaskState::TaskFinished, message)
                } else {
                    (TaskState::TaskFailed, message)
                }
            }
        };
        tracing::info!(task_id = %id, state = state.as_str_name(), message = %message, "task ended");
        self.finish(id, state, message, None).await;
    }

    /// Default-executor group semantics: a failed or killed task takes the
    /// rest of its group down.
    async fn after_terminal(&mut self, id: &str, state: TaskState) {
        if matches!(state, TaskState::TaskFinished) {
            return;
        }
        if let Some(group) = self.tasks.get(id).and_then(|t| t.group) {
            self.kill_group(group).await;
        }
    }

    async fn kill_group(&mut self, group: usize) {
        let members: Vec<String> = self.groups[group]
            .iter()
            .filter(|m| {
                let t = &self.tasks[m.as_str()];
                t.terminal.is_none() && !t.killing
            })
            .cloned()
            .collect();
        for member in members {
            let grace = grace_period(self.tasks[&member].info.kill_policy.as_ref())
                .unwrap_or(self.cfg.default_kill_grace_period);
            tracing::info!(task_id = %member, "killing the rest of the task group");
            self.kill_task(&member, grace).await;
        }
    }

    /// SIGTERM to the task's process group now, SIGKILL after `grace`.
    async fn kill_task(&mut self, id: &str, grace: Duration) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.terminal.is_some() {
            return;
        }
        if let Some((client, name)) = task.docker.clone() {
            let first = !task.killing;
            task.killing = true;
            if first {
                let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
                tracing::info!(task_id = %id, container = %name, grace = ?grace, "stopping the container");
                tokio::spawn(docker::stop(client, name, secs));
                if self.task_killing_state {
                    self.send_status(id, TaskState::TaskKilling, None, None)
                        .await;
                }
            }
            return;
        }
        let Some(pgid) = task.pgid else {
            // Never started (e.g. a later member of a failing group).
            self.send_status(
                id,
                TaskState::TaskKilled,
                Some("Task killed before it was launched".into()),
                None,
            )
            .await;
            return;
        };
        let first = !task.killing;
        task.killing = true;
        if first {
            let signal = if grace.is_zero() {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            tracing::info!(task_id = %id, pgid, signal = %signal, grace = ?grace, "killing task");
            process::signal_group(pgid, signal);
            if self.task_killing_state {
                self.send_status(id, TaskState::TaskKilling, None, None)
                    .await;
            }
            if grace.is_zero() {
                return;
            }
        }
        // A later kill with a shorter grace period escalates earlier; the
        // first timer to fire wins, the others find the task terminal.
        let tx = self.internal_tx.clone();
        let task_id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Internal::Escalate { task_id });
        });
    }

    fn on_escalate(&mut self, id: &str) {
        if let Some(Task {
            pgid: Some(pgid),
            terminal: None,
            ..
        }) = self.tasks.get(id)
        {
            tracing::warn!(task_id = %id, pgid, "kill grace period expired; sending SIGKILL");
            process::signal_group(*pgid, Signal::SIGKILL);
        }
    }

    fn live_task_ids(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.terminal.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    // ----- status updates ---------------------------------------------------

    /// Builds a status update, keeps it until acknowledged, and sends it if
    /// the executor is subscribed.
    async fn send_status(
        &mut self,
        id: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<task_status::Reason>,
    ) {
        self.send_status_ext(id, state, message, reason, Extra::default())
            .await;
    }

    async fn send_status_ext(
        &mut self,
        id: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<task_status::Reason>,
        extra: Extra,
    ) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if is_terminal(state) {
            task.terminal = Some(state);
            for c in task.checkers.drain(..) {
                c.abort();
            }
        }
        let status = TaskStatus {
            task_id: task.info.task_id.clone(),
            state: state as i32,
            message,
            source: Some(task_status::Source::Executor as i32),
            reason: reason.map(|r| r as i32),
            executor_id: Some(ids::executor_id(&self.cfg.executor_id)),
            timestamp: Some(ids::now_secs()),
            uuid: Some(ids::new_uuid_bytes()),
            healthy: extra.healthy,
            check_status: extra.check_status,
            limitation: extra.limitation,
            ..Default::default()
        };
        tracing::info!(
            task_id = %id,
            state = state.as_str_name(),
            message = status.message.as_deref().unwrap_or(""),
            "status update"
        );
        let update = call::Update { status };
        self.unacked.push(Pending {
            update: update.clone(),
            delivered: false,
        });
        self.deliver(update).await;
    }

    /// Sends an UPDATE call when subscribed; otherwise the update waits for
    /// the next SUBSCRIBE (or SUBSCRIBED event).
    async fn deliver(&mut self, update: call::Update) {
        if !matches!(
            self.conn,
            Conn::Connected {
                subscribed: true,
                ..
            }
        ) {
            return;
        }
        let uuid = update.status.uuid.clone();
        match self.agent.update(update).await {
            Ok(()) => {
                if let Some(p) = self
                    .unacked
                    .iter_mut()
                    .find(|p| p.update.status.uuid == uuid)
                {
                    p.delivered = true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to send a status update; it is resent on re-subscription")
            }
        }
    }
}

fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskLost
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
    )
}

fn grace_period(policy: Option<&KillPolicy>) -> Option<Duration> {
    let nanos = policy?.grace_period.as_ref()?.nanoseconds;
    Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

async fn next_stream_msg(conn: &mut Conn) -> StreamMsg {
    match conn {
        Conn::Connected { sub, .. } => sub
            .events
            .recv()
            .await
            .unwrap_or_else(|| StreamMsg::Closed("event reader stopped".into())),
        _ => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

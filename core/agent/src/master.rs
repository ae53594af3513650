//! The session with the master over gRPC: register, answer pings, apply
//! the master's commands; on loss (stream end, error, missed pings)
//! reconnect with backoff and re-register.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use corral_api::internal::agent_service_client::AgentServiceClient;
use corral_api::internal::{agent_message, master_message, AgentMessage, MasterMessage, Pong};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::agent::Agent;

mod detector;

/// Longest delay between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Shortest delay, whatever `--registration_backoff_factor` says.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// How long to wait for `Registered` after opening a session.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pings missed before the master is considered lost.
const MISSED_PINGS: f64 = 5.0;
/// Timeout of the TCP/HTTP2 connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The master's address is not a valid URI.
    #[error("invalid master endpoint: {0}")]
    Endpoint(String),
    /// Could not connect.
    #[error("cannot connect to the master: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The rpc failed.
    #[error("master session failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// The master closed the stream.
    #[error("master closed the session")]
    Closed,
    /// No `Registered` in time.
    #[error("master did not answer the registration in time")]
    RegistrationTimeout,
    /// No `Ping` in time.
    #[error("no ping from the master for {0:?}")]
    PingTimeout(Duration),
}

/// The delay before attempt `n + 1` after `n` failures: `factor * 2^(n-1)`,
/// capped at [`MAX_BACKOFF`].
pub fn backoff_delay(factor: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    factor
        .saturating_mul(1 << exp)
        .clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// Runs sessions with the master until `stop` turns true.
pub async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let configured = agent.config.master.clone();
    let mut failures: u32 = 0;
    loop {
        // With `zk://`, find the leader anew before every session.
        let master = if configured.starts_with("zk://") {
            match detector::detect(&configured).await {
                Ok(leader) => {
                    tracing::info!(zk = %configured, leader = %leader, "detected the leading master");
                    leader
                }
                Err(e) => {
                    tracing::warn!(zk = %configured, error = %e, "no leading master detected");
                    String::new()
                }
            }
        } else {
            configured.clone()
        };
        tracing::info!(master = %master, attempt = failures + 1, "connecting to master");
        let mut registered = false;
        let outcome = if master.is_empty() {
            Err(SessionError::Endpoint("no leading master detected".into()))
        } else {
            session(&agent, &master, &mut stop, &mut registered).await
        };
        agent.master_lost();
        match outcome {
            Ok(()) => return,
            Err(e) => {
                if registered {
                    tracing::warn!(master = %master, error = %e, "lost the master");
                    failures = 0;
                } else {
                    tracing::warn!(master = %master, error = %e, "master registration failed");
                }
            }
        }
        failures += 1;
        let delay = backoff_delay(agent.config.registration_backoff_factor, failures);
        tracing::info!(master = %master, delay_ms = delay.as_millis() as u64, attempt = failures + 1, "reconnecting to master after backoff");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One session. `Ok(())` only when stopped.
async fn session(
    agent: &Arc<Agent>,
    master: &str,
    stop: &mut watch::Receiver<bool>,
    registered: &mut bool,
) -> Result<(), SessionError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{master}"))
        .map_err(|e| SessionError::Endpoint(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = tokio::select! {
        c = endpoint.connect() => c?,
        _ = stop.changed() => return Ok(()),
    };
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::unbounded_channel::<AgentMessage>();
    let register = agent.register_message();
    tracing::info!(
        master = %master,
        agent_id = register.agent_info.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
        frameworks = register.frameworks.len(),
        tasks = register.tasks.len(),
        "registering with master"
    );
    let _ = tx.send(AgentMessage {
        message: Some(agent_message::Message::Register(register)),
    });
    let response = tokio::select! {
        r = tokio::time::timeout(REGISTRATION_TIMEOUT, client.session(UnboundedReceiverStream::new(rx))) => {
            r.map_err(|_| SessionError::RegistrationTimeout)??
        }
        _ = stop.changed() => return Ok(()),
    };
    let mut inbound = response.into_inner();
    let mut deadline = Instant::now() + REGISTRATION_TIMEOUT;
    let mut ping_timeout = REGISTRATION_TIMEOUT;
    loop {
        let msg: MasterMessage = tokio::select! {
            m = inbound.message() => match m? {
                Some(m) => m,
                None => return Err(SessionError::Closed),
            },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(if *registered {
                    SessionError::PingTimeout(ping_timeout)
                } else {
                    SessionError::RegistrationTimeout
                });
            }
            _ = stop.changed() => return Ok(()),
        };
        if !agent.accept_epoch(msg.epoch) {
            tracing::warn!(epoch = ?msg.epoch, "dropping message from an older master epoch");
            continue;
        }
        let Some(message) = msg.message else {
            continue;
        };
        match message {
            master_message::Message::Registered(reg) => {
                let interval =
                    if reg.ping_interval_seconds.is_finite() && reg.ping_interval_seconds > 0.0 {
                        reg.ping_interval_seconds.min(3600.0)
                    } else {
                        15.0
                    };
                ping_timeout = Duration::from_secs_f64(interval * MISSED_PINGS);
                deadline = Instant::now() + ping_timeout;
                agent.registered(&reg, tx.clone());
                *registered = true;
            }
            master_message::Message::Ping(ping) => {
                if *registered {
                    deadline = Instant::now() + ping_timeout;
                }
                let _ = tx.send(AgentMessage {
                    message: Some(agent_message::Message::Pong(Pong { seq: ping.seq })),
                });
            }
            other if !*registered => {
                tracing::warn!(
                    message = message_name(&other),
                    "message before registration dropped"
                );
            }
            other => dispatch(agent, other),
        }
    }
}

/// Applies a master command. An operation (which may take a while: HDFS)
/// runs on a worker task, and every command after it waits in the same
/// queue until it is done, so commands take effect in the master's order (a
/// launch after the CREATE of its volume finds the volume) while pings are
/// still answered.
pub(crate) fn dispatch(agent: &Arc<Agent>, message: master_message::Message) {
    let is_operation = matches!(message, master_message::Message::ApplyOperation(_));
    if !is_operation && agent.work_pending.load(Ordering::SeqCst) == 0 {
        handle(agent, message);
        return;
    }
    agent.work_pending.fetch_add(1, Ordering::SeqCst);
    let mut work = crate::agent::lock(&agent.work);
    let tx = work.get_or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(work_loop(Arc::downgrade(agent), rx));
        tx
    });
    if tx.send(message).is_err() {
        agent.work_pending.fetch_sub(1, Ordering::SeqCst);
        tracing::error!("the operation worker is gone, message dropped");
    }
}

async fn work_loop(agent: Weak<Agent>, mut rx: mpsc::UnboundedReceiver<master_message::Message>) {
    while let Some(message) = rx.recv().await {
        let Some(agent) = agent.upgrade() else {
            return;
        };
        match message {
            master_message::Message::ApplyOperation(op) => agent.apply_operation(op).await,
            other => handle(&agent, other),
        }
        agent.work_pending.fetch_sub(1, Ordering::SeqCst);
    }
}

fn handle(agent: &Arc<Agent>, message: master_message::Message) {
    match message {
        master_message::Message::RunTask(m) => agent.run_task(m),
        master_message::Message::KillTask(m) => agent.kill_task(&m),
        master_message::Message::ShutdownFramework(m) => {
            agent.shutdown_framework(&m.framework_id.value)
        }
        master_message::Message::ShutdownExecutor(m) => {
            agent.shutdown_executor(&m.framework_id.value, &m.executor_id.value)
        }
        master_message::Message::Acknowledge(m) => agent.acknowledge(&m),
        master_message::Message::FrameworkToExecutor(m) => agent.framework_message(m),
        master_message::Message::UpdateFramework(m) => agent.update_framework(m.framework_info),
        master_message::Message::Reconcile(m) => {
            // The master answers reconciliation from its own state.
            tracing::debug!(framework_id = %m.framework_id.value, "reconcile request ignored");
        }
        master_message::Message::AcknowledgeOperation(m) => agent.acknowledge_operation(&m),
        master_message::Message::ApplyOperation(_) => {
            tracing::error!("operation outside the operation worker dropped");
        }
        other @ (master_message::Message::Registered(_) | master_message::Message::Ping(_)) => {
            tracing::debug!(message = message_name(&other), "session message ignored");
        }
    }
}

fn message_name(m: &master_message::Message) -> &'static str {
    match m {
        master_message::Message::Registered(_) => "registered",
        master_message::Message::RunTask(_) => "run_task",
        master_message::Message::KillTask(_) => "kill_task",
        master_message::Message::ShutdownFramework(_) => "shutdown_framework",
        master_message::Message::Acknowledge(_) => "acknowledge",
        master_message::Message::FrameworkToExecutor(_) => "framework_to_executor",
        master_message::Message::Ping(_) => "ping",
        master_message::Message::UpdateFramework(_) => "update_framework",
        master_message::Message::Reconcile(_) => "reconcile",
        master_message::Message::ShutdownExecutor(_) => "shutdown_executor",
        master_message::Message::ApplyOperation(_) => "apply_operation",
        master_message::Message::AcknowledgeOperation(_) => "acknowledge_operation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let f = Duration::from_secs(1);
        let delays: Vec<u64> = (1..=7).map(|n| backoff_delay(f, n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff_delay(f, 1000), MAX_BACKOFF);
        assert_eq!(backoff_delay(Duration::ZERO, 3), MIN_BACKOFF);
    }
}

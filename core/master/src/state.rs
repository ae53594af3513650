//! The master's state and its transitions.
//!
//! [`Master`] is plain data plus methods that apply one input (a scheduler
//! call, an agent message, a tick) and push [`Effect`]s: events for
//! framework streams, messages for agents, operator events. It does no I/O
//! and reads no clock: the actor in `actor.rs` owns the connections, passes
//! the time in and delivers the effects. That keeps every rule here
//! testable without sockets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use corral_allocator::{Allocator, MinAllocatable};
use corral_api::internal::{self, master_message::Message as ToAgent};
use corral_api::resources::{self, Resources};
use corral_api::v1::{
    self, framework_info::capability::Type as FwCap, master as op,
    offer::operation::Type as OpType, scheduler, task_status::Reason, task_status::Source,
    TaskState,
};

use crate::flags::MasterFlags;

/// Heartbeat interval announced to schedulers.
pub const HEARTBEAT_SECS: f64 = 15.0;

/// Something the shell must do after a transition.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send an event down a framework's subscription stream.
    Framework {
        /// Target framework.
        framework_id: String,
        /// The event.
        event: scheduler::Event,
    },
    /// Close a framework's subscription stream (after the events before it).
    CloseFramework {
        /// Target framework.
        framework_id: String,
        /// Only close this stream (a newer one may have replaced it).
        stream_id: String,
        /// An ERROR event to send before closing.
        error: Option<String>,
    },
    /// Send a message to an agent.
    Agent {
        /// Target agent.
        agent_id: String,
        /// The message.
        message: ToAgent,
    },
    /// Drop an agent's connection (it missed too many pings).
    CloseAgent {
        /// Target agent.
        agent_id: String,
    },
    /// Publish an event to operator API subscribers.
    Operator(op::Event),
    /// Write these operations to the registry (in order, after the ones
    /// before).
    Registry(Vec<crate::registry::Operation>),
}

/// Wall-clock and monotonic time of an input.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Monotonic time since the master started.
    pub mono: Duration,
    /// Seconds since the Unix epoch.
    pub wall: f64,
}

/// Why a scheduler call is refused (mapped to HTTP status in `http.rs`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// The call is malformed or refers to unknown things: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The framework is not subscribed: 403.
    #[error("{0}")]
    Forbidden(String),
}

/// A framework known to the master.
#[derive(Debug, Clone)]
pub struct Framework {
    /// FrameworkID value.
    pub id: String,
    /// The latest FrameworkInfo (with `id` set).
    pub info: v1::FrameworkInfo,
    /// Has a live subscription stream.
    pub connected: bool,
    /// Receives offers.
    pub active: bool,
    /// Learned from an agent, not (yet) subscribed to this master.
    pub recovered: bool,
    /// Current subscription stream id.
    pub stream_id: Option<String>,
    /// Registration times (wall seconds).
    pub registered_time: f64,
    /// Last re-registration (wall seconds).
    pub reregistered_time: Option<f64>,
    /// When the framework was removed or disconnected.
    pub unregistered_time: Option<f64>,
    /// Live tasks (and terminal ones whose update is not yet acknowledged).
    pub tasks: BTreeMap<String, v1::Task>,
    /// Completed tasks, newest last.
    pub completed_tasks: VecDeque<v1::Task>,
    /// Executors by (agent, executor id).
    pub executors: BTreeMap<(String, String), v1::ExecutorInfo>,
    /// Outstanding offers.
    pub offers: BTreeSet<String>,
    /// When the failover timeout of a disconnected framework runs out.
    pub failover_deadline: Option<Duration>,
}

impl Framework {
    /// The roles the framework subscribes to.
    pub fn roles(&self) -> Vec<String> {
        framework_roles(&self.info)
    }

    fn has_capability(&self, cap: FwCap) -> bool {
        has_capability(&self.info, cap)
    }

    /// Whether the framework is PARTITION_AWARE.
    pub fn partition_aware(&self) -> bool {
        self.has_capability(FwCap::PartitionAware)
    }
}

/// The roles of a FrameworkInfo (`roles` for MULTI_ROLE, else `role`).
pub fn framework_roles(info: &v1::FrameworkInfo) -> Vec<String> {
    if has_capability(info, FwCap::MultiRole) {
        info.roles.clone()
    } else {
        vec![info.role.clone().unwrap_or_else(|| "*".to_string())]
    }
}

fn has_capability(info: &v1::FrameworkInfo, cap: FwCap) -> bool {
    info.capabilities
        .iter()
        .any(|c| c.r#type == Some(cap as i32))
}

/// An agent known to the master.
#[derive(Debug, Clone)]
pub struct Agent {
    /// AgentID value.
    pub id: String,
    /// AgentInfo with `id` set.
    pub info: v1::AgentInfo,
    /// `ip:port` of the agent's HTTP server.
    pub endpoint: String,
    /// Agent software version.
    pub version: String,
    /// Registration time (wall seconds).
    pub registered_time: f64,
    /// Last re-registration (wall seconds).
    pub reregistered_time: Option<f64>,
    /// Has a live session.
    pub connected: bool,
    /// Total resources.
    pub total: Resources,
    /// Resources used by tasks and executors, per framework.
    pub used: BTreeMap<String, Resources>,
    /// Resources in outstanding offers.
    pub offered: Resources,
    /// When the session was lost (monotonic).
    pub disconnected_at: Option<Duration>,
    /// Pings sent without a pong.
    pub pings_outstanding: u32,
    /// Deactivated by the operator (DEACTIVATE_AGENT, DRAIN_AGENT): its
    /// resources are not offered until REACTIVATE_AGENT.
    pub deactivated: bool,
    /// Draining (DRAIN_AGENT): its state and configuration.
    pub drain: Option<v1::DrainInfo>,
}

impl Agent {
    /// The `pid` string tools expect: `slave(1)@ip:port`.
    pub fn pid(&self) -> String {
        format!("slave(1)@{}", self.endpoint)
    }

    /// All used resources.
    pub fn used_total(&self) -> Resources {
        let mut all = Resources::new();
        for r in self.used.values() {
            all.add_all(r);
        }
        all
    }
}

/// An outstanding offer.
#[derive(Debug, Clone)]
pub struct OfferEntry {
    /// The offer as the master holds it (post-refinement resources with
    /// allocation info).
    pub offer: v1::Offer,
    /// The offered resources.
    pub resources: Resources,
    /// The role the resources are allocated to.
    pub role: String,
    /// When the offer was made (monotonic).
    pub created: Duration,
}

/// Monotonic counters exposed as metrics.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// By Mesos metric name.
    pub values: BTreeMap<&'static str, u64>,
}

impl Counters {
    fn inc(&mut self, name: &'static str) {
        *self.values.entry(name).or_insert(0) += 1;
    }

    /// A counter's value.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }
}

/// The master's state.
#[derive(Debug)]
pub struct Master {
    /// This master's MasterInfo.
    pub info: v1::MasterInfo,
    /// Flags it runs with.
    pub flags: MasterFlags,
    /// Wall time the master started.
    pub start_time: f64,
    /// Active and disconnected frameworks.
    pub frameworks: BTreeMap<String, Framework>,
    /// Removed frameworks, newest last.
    pub completed_frameworks: VecDeque<Framework>,
    /// Registered agents.
    pub agents: BTreeMap<String, Agent>,
    /// Outstanding offers.
    pub offers: BTreeMap<String, OfferEntry>,
    /// The allocator.
    pub allocator: Allocator,
    /// Counters.
    pub counters: Counters,
    /// Allocation cycle durations in milliseconds (bounded window).
    pub allocation_run_ms: VecDeque<f64>,
    /// Role weights in force (from --weights and the registry).
    pub weights: BTreeMap<String, f64>,
    /// Quota configurations in force, by role.
    pub quotas: BTreeMap<String, v1::quota::QuotaConfig>,
    /// Maintenance schedules in force (from the registry).
    pub schedules: Vec<v1::maintenance::Schedule>,
    /// `--roles`: when set, the only roles frameworks may use besides `*`.
    pub roles_whitelist: Option<BTreeSet<String>>,
    /// Agents the registry holds as admitted.
    pub admitted: BTreeSet<String>,
    /// Agents the registry holds as unreachable, with the wall time they
    /// became so.
    pub unreachable: BTreeMap<String, (v1::AgentInfo, f64)>,
    /// Agents marked gone: they never come back.
    pub gone: BTreeSet<String>,
    /// Admitted agents recovered from the registry that have not
    /// re-registered with this master yet, and when their time is up.
    pub recovering: BTreeMap<String, v1::AgentInfo>,
    /// When recovering agents that did not come back become unreachable.
    pub reregister_deadline: Option<Duration>,
    /// Offer operations (RESERVE, CREATE, ...) pending on agents or with
    /// statuses frameworks have not acknowledged.
    pub operations: Operations,
    /// Agents in DRAINING, watched until they have no tasks left.
    pub(crate) draining: BTreeSet<String>,
    next_framework: u64,
    next_agent: u64,
    next_offer: u64,
    out: Vec<Effect>,
}

fn wall_time(wall: f64) -> v1::TimeInfo {
    v1::TimeInfo {
        nanoseconds: (wall * 1e9) as i64,
    }
}

/// Whether a task state is terminal.
pub fn is_terminal(state: i32) -> bool {
    matches!(
        TaskState::try_from(state),
        Ok(TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskLost
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator)
    )
}

fn task_metric(state: i32) -> Option<&'static str> {
    Some(match TaskState::try_from(state).ok()? {
        TaskState::TaskFinished => "master/tasks_finished",
        TaskState::TaskFailed => "master/tasks_failed",
        TaskState::TaskKilled => "master/tasks_killed",
        TaskState::TaskError => "master/tasks_error",
        TaskState::TaskLost => "master/tasks_lost",
        TaskState::TaskDropped => "master/tasks_dropped",
        TaskState::TaskGone => "master/tasks_gone",
        TaskState::TaskGoneByOperator => "master/tasks_gone_by_operator",
        TaskState::TaskUnreachable => "master/tasks_unreachable",
        _ => return None,
    })
}

/// Validates a role name as Mesos does (in `corral-api`, which the flags
/// and the registry use too).
pub use corral_api::roles::validate_role;

impl Master {
    /// A fresh master.
    pub fn new(info: v1::MasterInfo, flags: MasterFlags, start_time: f64) -> Self {
        Self {
            info,
            flags,
            start_time,
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            agents: BTreeMap::new(),
            offers: BTreeMap::new(),
            allocator: Allocator::new(MinAllocatable::default()),
            counters: Counters::default(),
            allocation_run_ms: VecDeque::new(),
            weights: BTreeMap::new(),
            quotas: BTreeMap::new(),
            roles_whitelist: None,
            admitted: BTreeSet::new(),
            unreachable: BTreeMap::new(),
            gone: BTreeSet::new(),
            recovering: BTreeMap::new(),
            reregister_deadline: None,
            operations: Operations::default(),
            draining: BTreeSet::new(),
            schedules: Vec::new(),
            next_framework: 0,
            next_agent: 0,
            next_offer: 0,
            out: Vec::new(),
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    fn check_whitelist(&self, role: &str) -> Result<(), String> {
        match &self.roles_whitelist {
            Some(allowed) if role != "*" && !allowed.contains(role) => Err(format!(
                "role '{role}' is not one of the roles this master allows (--roles)"
            )),
            _ => Ok(()),
        }
    }

    /// Sets role weights (from `--weights` or the registry).
    pub fn set_weights(&mut self, weights: &[(String, f64)]) {
        for (role, w) in weights {
            self.weights.insert(role.clone(), *w);
        }
        self.allocator.update_weights(weights);
    }

    fn emit_fw(&mut self, framework_id: &str, event: scheduler::Event) {
        self.out.push(Effect::Framework {
            framework_id: framework_id.to_string(),
            event,
        });
    }

    fn emit_agent(&mut self, agent_id: &str, message: ToAgent) {
        self.out.push(Effect::Agent {
            agent_id: agent_id.to_string(),
            message,
        });
    }

    fn emit_op(&mut self, event: op::Event) {
        self.out.push(Effect::Operator(event));
    }

    // ---------------------------------------------------------------
    // Scheduler API
    // ---------------------------------------------------------------

    /// Applies an authorized non-SUBSCRIBE call.
    pub fn scheduler_call(
        &mut self,
        framework_id: &str,
        call: scheduler::Call,
        now: Clock,
    ) -> Result<(), CallError> {
        use scheduler::call::Type;
        let ty = call
            .r#type
            .and_then(|t| Type::try_from(t).ok())
            .unwrap_or(Type::Unknown);
        let missing =
            |what: &str| CallError::BadRequest(format!("Expecting '{what}' to be present"));
        match ty {
            Type::Teardown => {
                self.remove_framework(framework_id, now);
            }
            Type::Accept => {
                let accept = call.accept.ok_or_else(|| missing("accept"))?;
                self.accept(framework_id, accept, now);
            }
            Type::Decline => {
                let decline = call.decline.ok_or_else(|| missing("decline"))?;
                self.decline(
                    framework_id,
                    &decline.offer_ids,
                    decline.filters.as_ref(),
                    now,
                );
            }
            Type::Revive => {
                let roles = call.revive.map(|r| r.roles).unwrap_or_default();
                self.allocator.revive(framework_id, &roles);
                self.counters.inc("master/messages_revive_offers");
            }
            Type::Suppress => {
                let roles = call.suppress.map(|r| r.roles).unwrap_or_default();
                self.allocator.suppress(framework_id, &roles);
                self.counters.inc("master/messages_suppress_offers");
            }
            Type::Kill => {
                let kill = call.kill.ok_or_else(|| missing("kill"))?;
                self.kill(framework_id, kill, now);
            }
            Type::Shutdown => {
                let s = call.shutdown.ok_or_else(|| missing("shutdown"))?;
                self.emit_agent(
                    &s.agent_id.value,
                    ToAgent::ShutdownExecutor(internal::ShutdownExecutor {
                        framework_id: v1::FrameworkId {
                            value: framework_id.to_string(),
                        },
                        executor_id: s.executor_id,
                    }),
                );
            }
            Type::Acknowledge => {
                let ack = call.acknowledge.ok_or_else(|| missing("acknowledge"))?;
                self.acknowledge(framework_id, ack)?;
            }
            Type::Reconcile => {
                let r = call.reconcile.ok_or_else(|| missing("reconcile"))?;
                self.reconcile(framework_id, r, now);
            }
            Type::Message => {
                let m = call.message.ok_or_else(|| missing("message"))?;
                if !self.agents.contains_key(&m.agent_id.value) {
                    return Err(CallError::BadRequest(format!(
                        "Agent {} is not registered",
                        m.agent_id.value
                    )));
                }
                self.counters.inc("master/messages_framework_to_executor");
                self.emit_agent(
                    &m.agent_id.value,
                    ToAgent::FrameworkToExecutor(internal::FrameworkToExecutor {
                        framework_id: v1::FrameworkId {
                            value: framework_id.to_string(),
                        },
                        executor_id: m.executor_id,
                        data: m.data,
                    }),
                );
            }
            Type::Request => {
                // Mesos ignores resource requests with the default allocator.
            }
            Type::AcceptInverseOffers | Type::DeclineInverseOffers => {
                // No inverse offers are made without maintenance schedules.
            }
            Type::AcknowledgeOperationStatus => {
                let ack = call
                    .acknowledge_operation_status
                    .ok_or_else(|| missing("acknowledge_operation_status"))?;
                self.acknowledge_operation(framework_id, ack)?;
            }
            Type::ReconcileOperations => {
                let r = call
                    .reconcile_operations
                    .ok_or_else(|| missing("reconcile_operations"))?;
                self.reconcile_operations(framework_id, r);
            }
            Type::UpdateFramework => {
                let u = call
                    .update_framework
                    .ok_or_else(|| missing("update_framework"))?;
                self.update_framework(framework_id, u.framework_info)?;
            }
            Type::Subscribe => {
                return Err(CallError::BadRequest(
                    "SUBSCRIBE must not carry a 'Mesos-Stream-Id'".into(),
                ))
            }
            Type::Unknown => {
                return Err(CallError::BadRequest(
                    "Expecting 'type' to be present".into(),
                ))
            }
        }
        Ok(())
    }
}

/// A role as GET_ROLES and `/roles` report it.
#[derive(Debug, Clone, Default)]
pub struct RoleView {
    /// Role name.
    pub name: String,
    /// Weight.
    pub weight: f64,
    /// Subscribed frameworks.
    pub frameworks: Vec<String>,
    /// Allocated (offered or used) resources.
    pub allocated: Resources,
    /// Offered resources.
    pub offered: Resources,
    /// Reserved resources (on all agents).
    pub reserved: Resources,
    /// Quota configuration.
    pub quota: Option<v1::quota::QuotaConfig>,
    /// Scalars consumed against quota.
    pub consumed: BTreeMap<String, f64>,
    /// Weighted dominant share.
    pub share: f64,
}

fn agent_url(agent: &Agent) -> v1::Url {
    let (ip, port) = agent
        .endpoint
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse().unwrap_or(5051)))
        .unwrap_or((agent.endpoint.clone(), 5051));
    v1::Url {
        scheme: "http".into(),
        address: v1::Address {
            hostname: Some(agent.info.hostname.clone()),
            ip: Some(ip),
            port,
        },
        path: Some("/slave(1)".into()),
        ..Default::default()
    }
}

fn refuse_duration(filters: Option<&v1::Filters>) -> Duration {
    let secs = filters.and_then(|f| f.refuse_seconds).unwrap_or(5.0);
    if !secs.is_finite() || secs < 0.0 {
        return corral_allocator::DEFAULT_REFUSE;
    }
    Duration::from_secs_f64(secs.min(corral_allocator::MAX_REFUSE.as_secs_f64()))
}

fn operation_tasks(ops: &[v1::offer::Operation]) -> Vec<v1::TaskInfo> {
    let mut out = Vec::new();
    for op in ops {
        if let Some(l) = &op.launch {
            out.extend(l.task_infos.iter().cloned());
        }
        if let Some(g) = &op.launch_group {
            out.extend(g.task_group.tasks.iter().cloned());
        }
    }
    out
}

fn reconcile_status(t: &v1::Task, now: Clock) -> v1::TaskStatus {
    let latest = t.statuses.last();
    v1::TaskStatus {
        task_id: t.task_id.clone(),
        state: t.state,
        message: Some("Reconciliation: Latest task state".into()),
        source: Some(Source::Master as i32),
        reason: Some(Reason::Reconciliation as i32),
        agent_id: Some(t.agent_id.clone()),
        executor_id: t.executor_id.clone(),
        timestamp: Some(now.wall),
        healthy: latest.and_then(|s| s.healthy),
        labels: latest.and_then(|s| s.labels.clone()),
        container_status: latest.and_then(|s| s.container_status.clone()),
        data: None,
        uuid: None,
        ..Default::default()
    }
}

/// An UPDATE event for a status.
pub fn update_event(status: v1::TaskStatus) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Update as i32),
        update: Some(scheduler::event::Update { status }),
        ..Default::default()
    }
}

/// An ERROR event.
pub fn error_event(message: &str) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Error as i32),
        error: Some(scheduler::event::Error {
            message: message.to_string(),
        }),
        ..Default::default()
    }
}

/// A HEARTBEAT event.
pub fn heartbeat_event() -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Heartbeat as i32),
        ..Default::default()
    }
}

fn op_event_framework_added(framework: op::response::get_frameworks::Framework) -> op::Event {
    op::Event {
        r#type: Some(op::event::Type::FrameworkAdded as i32),
        framework_added: Some(op::event::FrameworkAdded { framework }),
        ..Default::default()
    }
}

fn op_event_framework_updated(framework: op::response::get_frameworks::Framework) -> op::Event {
    op::Event {
        r#type: Some(op::event::Type::FrameworkUpdated as i32),
        framework_updated: Some(op::event::FrameworkUpdated { framework }),
        ..Default::default()
    }
}

/// The allocator's view of a Mesos QuotaConfig.
pub fn quota_of(config: &v1::quota::QuotaConfig) -> corral_allocator::Quota {
    corral_allocator::Quota {
        guarantees: config
            .guarantees
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect(),
        limits: config
            .limits
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect(),
    }
}

mod agents;
mod drain;
pub mod maintenance;
pub use drain::AgentCallError;
mod frameworks;
mod launch;
mod offers;
mod operations;
mod tasks;
mod views;

pub use operations::{is_terminal_operation, Operations, OperatorError, TrackedOperation};

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod operation_tests;

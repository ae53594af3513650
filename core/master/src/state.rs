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

    /// Brings weights and quota in line with the registry's state.
    pub fn apply_registry(&mut self, state: &crate::registry::RegistryState) {
        let weights: Vec<(String, f64)> =
            state.weights.iter().map(|(k, v)| (k.clone(), *v)).collect();
        self.set_weights(&weights);
        let removed: Vec<String> = self
            .quotas
            .keys()
            .filter(|r| !state.quotas.contains_key(*r))
            .cloned()
            .collect();
        for role in removed {
            self.quotas.remove(&role);
            self.allocator.update_quota(&role, None);
        }
        for (role, config) in &state.quotas {
            self.allocator.update_quota(role, Some(&quota_of(config)));
            self.quotas.insert(role.clone(), config.clone());
        }
    }

    /// Takes the agents of a registry recovered at startup (or on becoming
    /// leader): admitted agents have `--agent_reregister_timeout` to come
    /// back; unreachable and gone agents stay so.
    pub fn recover_agents(&mut self, state: &crate::registry::RegistryState, now: Clock) {
        self.admitted = state.agents.keys().cloned().collect();
        self.unreachable = state
            .unreachable
            .iter()
            .map(|(id, u)| {
                (
                    id.clone(),
                    (u.info.clone(), u.since.nanoseconds as f64 / 1e9),
                )
            })
            .collect();
        self.gone = state.gone.keys().cloned().collect();
        self.recovering = state
            .agents
            .iter()
            .filter(|(id, _)| !self.agents.contains_key(*id))
            .map(|(id, info)| (id.clone(), info.clone()))
            .collect();
        self.reregister_deadline =
            (!self.recovering.is_empty()).then(|| now.mono + self.flags.agent_reregister_timeout);
        tracing::info!(
            admitted = self.admitted.len(),
            unreachable = self.unreachable.len(),
            gone = self.gone.len(),
            "agents recovered from the registry"
        );
    }

    /// Recovered agents that did not re-register in time become
    /// unreachable, unless more of them than `--recovery_agent_removal_limit`
    /// allows would (then none are, and the operator is told).
    fn expire_recovering(&mut self, now: Clock) {
        if self
            .reregister_deadline
            .is_none_or(|deadline| now.mono < deadline)
        {
            return;
        }
        self.reregister_deadline = None;
        let missing: Vec<(String, v1::AgentInfo)> =
            std::mem::take(&mut self.recovering).into_iter().collect();
        if missing.is_empty() {
            return;
        }
        let limit = crate::flags::parse_removal_limit(&self.flags.recovery_agent_removal_limit)
            .unwrap_or(1.0);
        let recovered = self.admitted.len().max(missing.len());
        if missing.len() as f64 > limit * recovered as f64 {
            tracing::error!(
                missing = missing.len(),
                recovered,
                limit = %self.flags.recovery_agent_removal_limit,
                "too many agents did not re-register after failover; none are marked unreachable"
            );
            self.counters.inc("master/recovery_slave_removals_refused");
            return;
        }
        let mut ops = Vec::new();
        for (id, info) in missing {
            tracing::warn!(agent_id = %id, "agent did not re-register after failover; marking it unreachable");
            self.admitted.remove(&id);
            self.unreachable.insert(id.clone(), (info, now.wall));
            ops.push(crate::registry::Operation::MarkUnreachable {
                agent_id: id,
                since: wall_time(now.wall),
            });
            self.counters.inc("master/recovery_slave_removals");
        }
        self.out.push(Effect::Registry(ops));
    }

    /// MARK_AGENT_GONE: the agent never comes back; its tasks are
    /// TASK_GONE_BY_OPERATOR and it is told to shut down.
    pub fn mark_agent_gone(&mut self, agent_id: &str, now: Clock) -> Result<(), String> {
        if self.gone.contains(agent_id) {
            return Ok(());
        }
        let known = self.agents.contains_key(agent_id)
            || self.admitted.contains(agent_id)
            || self.unreachable.contains_key(agent_id)
            || self.recovering.contains_key(agent_id);
        if !known {
            return Err(format!("unknown agent {agent_id}"));
        }
        // Durable first: every effect below (kills, TASK_GONE_BY_OPERATOR,
        // the operator's answer) waits for this write.
        self.out.push(Effect::Registry(vec![
            crate::registry::Operation::MarkGone {
                agent_id: agent_id.to_owned(),
                since: wall_time(now.wall),
            },
        ]));
        // Its tasks are killed if it still runs them; it is refused if it
        // tries to register again.
        let kills: Vec<(String, v1::TaskId)> = self
            .frameworks
            .values()
            .flat_map(|fw| {
                fw.tasks
                    .values()
                    .filter(|t| t.agent_id.value == agent_id && !is_terminal(t.state))
                    .map(|t| (fw.id.clone(), t.task_id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (fid, tid) in kills {
            self.emit_agent(
                agent_id,
                ToAgent::KillTask(internal::KillTask {
                    framework_id: v1::FrameworkId { value: fid },
                    task_id: tid,
                    kill_policy: None,
                }),
            );
        }
        self.rescind_agent_offers(agent_id);
        if self.agents.remove(agent_id).is_some() {
            self.allocator.remove_agent(agent_id);
        }
        let mut updates = Vec::new();
        for fw in self.frameworks.values_mut() {
            fw.executors.retain(|(a, _), _| a != agent_id);
            for t in fw.tasks.values() {
                if t.agent_id.value == agent_id
                    && (!is_terminal(t.state) || t.state == TaskState::TaskUnreachable as i32)
                {
                    updates.push((fw.id.clone(), t.task_id.clone()));
                }
            }
        }
        for (fid, tid) in updates {
            let status = self.master_status(
                &tid,
                Some(agent_id),
                TaskState::TaskGoneByOperator,
                Reason::AgentRemovedByOperator,
                "Agent was marked gone by the operator",
                now,
            );
            self.apply_master_status(&fid, status);
        }
        self.admitted.remove(agent_id);
        self.unreachable.remove(agent_id);
        self.recovering.remove(agent_id);
        self.gone.insert(agent_id.to_owned());
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::AgentRemoved as i32),
            agent_removed: Some(op::event::AgentRemoved {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
            }),
            ..Default::default()
        });
        tracing::info!(agent_id, "agent marked gone");
        Ok(())
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

    /// SUBSCRIBE. Returns the framework id, or an error message for an
    /// ERROR event.
    pub fn subscribe(
        &mut self,
        call: &scheduler::Call,
        stream_id: &str,
        now: Clock,
    ) -> Result<String, String> {
        let Some(sub) = &call.subscribe else {
            return Err("Expecting 'subscribe' to be present".into());
        };
        let mut info = sub.framework_info.clone();
        if info.name.is_empty() {
            return Err("FrameworkInfo.name must be set".into());
        }
        let multi_role = has_capability(&info, FwCap::MultiRole);
        if multi_role && info.role.is_some() && info.role.as_deref() != Some("*") {
            return Err(
                "'FrameworkInfo.role' must not be set with the MULTI_ROLE capability; use 'roles'"
                    .into(),
            );
        }
        if !multi_role && !info.roles.is_empty() {
            return Err("'FrameworkInfo.roles' requires the MULTI_ROLE capability".into());
        }
        for role in framework_roles(&info) {
            validate_role(&role)?;
            self.check_whitelist(&role)?;
        }
        if let Some(t) = info.failover_timeout {
            if !t.is_finite() || t < 0.0 {
                return Err(format!("invalid failover_timeout {t}"));
            }
        }
        let call_id = call.framework_id.as_ref().map(|f| f.value.clone());
        let info_id = info.id.as_ref().map(|f| f.value.clone());
        if call_id != info_id {
            return Err("'framework_id' of the call and 'framework_info.id' must match".into());
        }
        let id = match info_id {
            Some(id) => {
                if id.is_empty() {
                    return Err("'framework_info.id' must not be empty".into());
                }
                if self.completed_frameworks.iter().any(|f| f.id == id) {
                    return Err(format!("Framework {id} has been removed"));
                }
                match self.frameworks.get(&id) {
                    // Another principal's framework.
                    Some(fw)
                        if fw.info.principal.is_some() && fw.info.principal != info.principal =>
                    {
                        return Err(format!(
                            "Framework {id} is registered with another principal"
                        ));
                    }
                    Some(_) => {}
                    // Unknown: only while agents may still re-register after a
                    // failover (they bring back the frameworks they run) is an
                    // unknown FrameworkID taken as one this master will learn.
                    None if self.reregister_deadline.is_none() => {
                        return Err(format!("Framework {id} is not known to this master"));
                    }
                    None => {}
                }
                id
            }
            None => {
                let id = format!("{}-{:04}", self.info.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        info.id = Some(v1::FrameworkId { value: id.clone() });
        let roles = framework_roles(&info);
        let existing = self.frameworks.contains_key(&id);
        if let Some(fw) = self.frameworks.get_mut(&id) {
            // Failover of a known framework: the new stream replaces the old.
            if let Some(old) = fw.stream_id.take() {
                if old != stream_id {
                    self.out.push(Effect::CloseFramework {
                        framework_id: id.clone(),
                        stream_id: old,
                        error: Some("Framework failed over".into()),
                    });
                }
            }
            fw.info = info.clone();
            fw.connected = true;
            fw.active = true;
            fw.recovered = false;
            fw.stream_id = Some(stream_id.to_string());
            fw.reregistered_time = Some(now.wall);
            fw.unregistered_time = None;
            fw.failover_deadline = None;
            self.allocator.update_framework(&id, roles.clone());
            self.allocator.set_framework_active(&id, true);
        } else {
            self.frameworks.insert(
                id.clone(),
                Framework {
                    id: id.clone(),
                    info: info.clone(),
                    connected: true,
                    active: true,
                    recovered: false,
                    stream_id: Some(stream_id.to_string()),
                    registered_time: now.wall,
                    reregistered_time: None,
                    unregistered_time: None,
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    executors: BTreeMap::new(),
                    offers: BTreeSet::new(),
                    failover_deadline: None,
                },
            );
            self.allocator.add_framework(&id, roles.clone(), true);
        }
        self.allocator
            .set_reservation_refinement(&id, has_capability(&info, FwCap::ReservationRefinement));
        // Offers made to the previous connection are rescinded.
        self.rescind_framework_offers(&id, false);
        self.allocator.revive(&id, &[]);
        if !sub.suppressed_roles.is_empty() {
            self.allocator.suppress(&id, &sub.suppressed_roles);
        }
        self.counters.inc("master/messages_register_framework");
        self.emit_fw(
            &id,
            scheduler::Event {
                r#type: Some(scheduler::event::Type::Subscribed as i32),
                subscribed: Some(scheduler::event::Subscribed {
                    framework_id: v1::FrameworkId { value: id.clone() },
                    heartbeat_interval_seconds: Some(self.flags.heartbeat_interval.as_secs_f64()),
                    master_info: Some(self.info.clone()),
                }),
                ..Default::default()
            },
        );
        let framework = self.framework_view(&id);
        if let Some(framework) = framework {
            let ev = if existing {
                op_event_framework_updated(framework)
            } else {
                op_event_framework_added(framework)
            };
            self.emit_op(ev);
        }
        // Tell agents running its tasks about the (possibly new) info.
        self.broadcast_framework_info(&id);
        self.resend_operation_updates(&id);
        tracing::info!(framework_id = %id, name = %info.name, failover = existing, "framework subscribed");
        Ok(id)
    }

    fn broadcast_framework_info(&mut self, framework_id: &str) {
        let Some(fw) = self.frameworks.get(framework_id) else {
            return;
        };
        let agents: BTreeSet<String> = fw
            .tasks
            .values()
            .map(|t| t.agent_id.value.clone())
            .chain(fw.executors.keys().map(|(a, _)| a.clone()))
            .collect();
        let info = fw.info.clone();
        for agent in agents {
            self.emit_agent(
                &agent,
                ToAgent::UpdateFramework(internal::UpdateFramework {
                    framework_info: info.clone(),
                }),
            );
        }
    }

    /// Checks a non-SUBSCRIBE call's framework and stream id.
    pub fn authorize_call(
        &self,
        call: &scheduler::Call,
        stream_id: Option<&str>,
    ) -> Result<String, CallError> {
        let Some(fid) = call.framework_id.as_ref().map(|f| f.value.clone()) else {
            return Err(CallError::BadRequest(
                "Expecting 'framework_id' to be present".into(),
            ));
        };
        let Some(fw) = self.frameworks.get(&fid) else {
            return Err(CallError::BadRequest(format!(
                "Framework {fid} is not registered with this master"
            )));
        };
        let Some(stream_id) = stream_id else {
            return Err(CallError::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            ));
        };
        if !fw.connected {
            return Err(CallError::Forbidden(format!(
                "Framework {fid} is not subscribed"
            )));
        }
        if fw.stream_id.as_deref() != Some(stream_id) {
            return Err(CallError::BadRequest(format!(
                "The stream ID '{stream_id}' included in this request didn't match the stream ID currently associated with framework ID {fid}"
            )));
        }
        Ok(fid)
    }

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

    /// UPDATE_FRAMEWORK.
    pub fn update_framework(
        &mut self,
        framework_id: &str,
        mut info: v1::FrameworkInfo,
    ) -> Result<(), CallError> {
        if info.id.as_ref().map(|i| i.value.as_str()) != Some(framework_id) {
            return Err(CallError::BadRequest(
                "'framework_info.id' must match the framework's id".into(),
            ));
        }
        if info.name.is_empty() {
            return Err(CallError::BadRequest(
                "FrameworkInfo.name must be set".into(),
            ));
        }
        for role in framework_roles(&info) {
            validate_role(&role).map_err(CallError::BadRequest)?;
            self.check_whitelist(&role).map_err(CallError::BadRequest)?;
        }
        info.id = Some(v1::FrameworkId {
            value: framework_id.to_string(),
        });
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return Err(CallError::BadRequest("unknown framework".into()));
        };
        if fw.info.user != info.user && !info.user.is_empty() {
            return Err(CallError::BadRequest(
                "'FrameworkInfo.user' cannot be changed".into(),
            ));
        }
        fw.info = info;
        let roles = fw.roles();
        let refinement = fw.has_capability(FwCap::ReservationRefinement);
        self.allocator.update_framework(framework_id, roles);
        self.allocator
            .set_reservation_refinement(framework_id, refinement);
        if let Some(view) = self.framework_view(framework_id) {
            self.emit_op(op_event_framework_updated(view));
        }
        self.broadcast_framework_info(framework_id);
        Ok(())
    }

    fn decline(
        &mut self,
        framework_id: &str,
        offer_ids: &[v1::OfferId],
        filters: Option<&v1::Filters>,
        now: Clock,
    ) {
        let refuse = refuse_duration(filters);
        for oid in offer_ids {
            let belongs = self
                .offers
                .get(&oid.value)
                .is_some_and(|o| o.offer.framework_id.value == framework_id);
            if belongs {
                self.remove_offer(&oid.value, Some((now.mono, refuse)));
            }
        }
        self.counters.inc("master/messages_decline_offers");
    }

    /// Removes an offer and returns its resources to the allocator.
    fn remove_offer(
        &mut self,
        offer_id: &str,
        filter: Option<(Duration, Duration)>,
    ) -> Option<OfferEntry> {
        let entry = self.offers.remove(offer_id)?;
        let fid = entry.offer.framework_id.value.clone();
        let aid = entry.offer.agent_id.value.clone();
        if let Some(fw) = self.frameworks.get_mut(&fid) {
            fw.offers.remove(offer_id);
        }
        if let Some(agent) = self.agents.get_mut(&aid) {
            agent.offered.subtract_all(&entry.resources);
        }
        self.allocator.recover(&fid, &aid, &entry.resources, filter);
        Some(entry)
    }

    fn rescind_offer(&mut self, offer_id: &str) {
        if let Some(entry) = self.remove_offer(offer_id, None) {
            let fid = entry.offer.framework_id.value.clone();
            self.emit_fw(
                &fid,
                scheduler::Event {
                    r#type: Some(scheduler::event::Type::Rescind as i32),
                    rescind: Some(scheduler::event::Rescind {
                        offer_id: entry.offer.id.clone(),
                    }),
                    ..Default::default()
                },
            );
        }
    }

    fn rescind_framework_offers(&mut self, framework_id: &str, notify: bool) {
        let ids: Vec<String> = self
            .frameworks
            .get(framework_id)
            .map(|f| f.offers.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            if notify {
                self.rescind_offer(&id);
            } else {
                self.remove_offer(&id, None);
            }
        }
    }

    fn rescind_agent_offers(&mut self, agent_id: &str) {
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.offer.agent_id.value == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
    }

    fn master_status(
        &self,
        task_id: &v1::TaskId,
        agent_id: Option<&str>,
        state: TaskState,
        reason: Reason,
        message: impl Into<String>,
        now: Clock,
    ) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task_id.clone(),
            state: state as i32,
            message: Some(message.into()),
            source: Some(Source::Master as i32),
            reason: Some(reason as i32),
            agent_id: agent_id.map(|a| v1::AgentId {
                value: a.to_string(),
            }),
            timestamp: Some(now.wall),
            ..Default::default()
        }
    }

    fn send_update(&mut self, framework_id: &str, status: v1::TaskStatus) {
        self.emit_fw(framework_id, update_event(status));
    }

    /// ACCEPT: validate the offers and every operation, launch what is valid.
    fn accept(&mut self, framework_id: &str, accept: scheduler::call::Accept, now: Clock) {
        self.counters.inc("master/messages_accept_offers");
        let refuse = refuse_duration(accept.filters.as_ref());
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        let refinement = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.has_capability(FwCap::ReservationRefinement));

        // Validate the offers: known, ours, one agent, no duplicates.
        let mut offer_error = None;
        let mut seen = BTreeSet::new();
        let mut agent_id: Option<String> = None;
        if accept.offer_ids.is_empty() {
            offer_error = Some("No offers specified".to_string());
        }
        for oid in &accept.offer_ids {
            if !seen.insert(oid.value.clone()) {
                offer_error = Some(format!("Duplicate offer {} in ACCEPT", oid.value));
                break;
            }
            match self.offers.get(&oid.value) {
                None => {
                    offer_error = Some(format!("Offer {} is no longer valid", oid.value));
                    break;
                }
                Some(o) if o.offer.framework_id.value != framework_id => {
                    offer_error = Some(format!(
                        "Offer {} has invalid framework {} while framework {} is expected",
                        oid.value, o.offer.framework_id.value, framework_id
                    ));
                    break;
                }
                Some(o) => match &agent_id {
                    Some(a) if *a != o.offer.agent_id.value => {
                        offer_error =
                            Some("Aggregated offers must belong to one single agent".into());
                        break;
                    }
                    _ => agent_id = Some(o.offer.agent_id.value.clone()),
                },
            }
        }

        if let Some(err) = offer_error {
            // Every offer that is valid and ours is returned; every task is
            // reported lost (dropped for partition-aware frameworks).
            for oid in &accept.offer_ids {
                if self
                    .offers
                    .get(&oid.value)
                    .is_some_and(|o| o.offer.framework_id.value == framework_id)
                {
                    self.remove_offer(&oid.value, None);
                }
            }
            let state = if partition_aware {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            for task in operation_tasks(&accept.operations) {
                let status = self.master_status(
                    &task.task_id,
                    None,
                    state,
                    Reason::InvalidOffers,
                    err.clone(),
                    now,
                );
                self.send_update(framework_id, status);
            }
            self.refuse_accept_operations(framework_id, &accept.operations, &err);
            self.counters.inc("master/invalid_operations");
            tracing::info!(framework_id, error = %err, "refused accept");
            return;
        }
        let Some(agent_id) = agent_id else { return };

        // Pool the offered resources.
        let mut offered = Resources::new();
        let mut role = "*".to_string();
        for oid in &accept.offer_ids {
            if let Some(o) = self.remove_offer_keep_allocation(&oid.value) {
                offered.add_all(&o.resources);
                role = o.role;
            }
        }
        let mut remaining = offered.clone();

        for operation in accept.operations {
            let ty = operation
                .r#type
                .and_then(|t| OpType::try_from(t).ok())
                .unwrap_or(OpType::Unknown);
            match ty {
                OpType::Launch => {
                    let Some(launch) = operation.launch else {
                        continue;
                    };
                    for task in launch.task_infos {
                        self.launch_one(
                            framework_id,
                            &agent_id,
                            &role,
                            refinement,
                            task,
                            None,
                            &mut remaining,
                            now,
                        );
                    }
                }
                OpType::LaunchGroup => {
                    let Some(group) = operation.launch_group else {
                        continue;
                    };
                    self.launch_group(
                        framework_id,
                        &agent_id,
                        &role,
                        refinement,
                        group,
                        &mut remaining,
                        now,
                    );
                }
                OpType::Reserve
                | OpType::Unreserve
                | OpType::Create
                | OpType::Destroy
                | OpType::GrowVolume
                | OpType::ShrinkVolume => {
                    self.accept_operation(
                        framework_id,
                        &agent_id,
                        &role,
                        refinement,
                        operation,
                        &mut remaining,
                    );
                }
                other => {
                    tracing::info!(framework_id, operation = ?other, "unsupported offer operation dropped");
                    self.counters.inc("master/invalid_operations");
                }
            }
        }
        // Unused resources count as declined.
        self.allocator.recover(
            framework_id,
            &agent_id,
            &remaining,
            Some((now.mono, refuse)),
        );
    }

    /// Removes an offer without recovering its resources in the allocator
    /// (they stay allocated to the framework while being launched on).
    fn remove_offer_keep_allocation(&mut self, offer_id: &str) -> Option<OfferEntry> {
        let entry = self.offers.remove(offer_id)?;
        if let Some(fw) = self.frameworks.get_mut(&entry.offer.framework_id.value) {
            fw.offers.remove(offer_id);
        }
        if let Some(agent) = self.agents.get_mut(&entry.offer.agent_id.value) {
            agent.offered.subtract_all(&entry.resources);
        }
        Some(entry)
    }

    /// Converts resources a framework sent to the master's internal form.
    fn normalize_resources(rs: &[v1::Resource], role: &str) -> Result<Resources, String> {
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            let mut r = r.clone();
            resources::upgrade(&mut r);
            resources::validate(&r)?;
            r.allocation_info = Some(v1::resource::AllocationInfo {
                role: Some(role.to_string()),
            });
            out.push(r);
        }
        Ok(Resources::from_vec(&out))
    }

    fn task_error(
        &mut self,
        framework_id: &str,
        task_id: &v1::TaskId,
        reason: Reason,
        msg: String,
        now: Clock,
    ) {
        let status = self.master_status(task_id, None, TaskState::TaskError, reason, msg, now);
        self.counters.inc("master/tasks_error");
        self.send_update(framework_id, status);
    }

    fn validate_task_basics(&self, framework_id: &str, task: &v1::TaskInfo) -> Result<(), String> {
        if task.task_id.value.is_empty() {
            return Err("Task ID must not be empty".into());
        }
        if task.task_id.value.contains('/') || task.task_id.value.contains('\0') {
            return Err(format!(
                "Task ID '{}' contains invalid characters",
                task.task_id.value
            ));
        }
        if let Some(fw) = self.frameworks.get(framework_id) {
            if fw.tasks.contains_key(&task.task_id.value) {
                return Err(format!("Task has duplicate ID: {}", task.task_id.value));
            }
        }
        if task.resources.is_empty() {
            return Err("Task uses no resources".into());
        }
        Ok(())
    }

    fn launch_one(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        refinement: bool,
        mut task: v1::TaskInfo,
        group_executor: Option<&v1::ExecutorInfo>,
        remaining: &mut Resources,
        now: Clock,
    ) {
        let _ = refinement;
        let task_id = task.task_id.clone();
        if let Err(e) = self.validate_task_basics(framework_id, &task) {
            self.task_error(framework_id, &task_id, Reason::TaskInvalid, e, now);
            return;
        }
        if group_executor.is_none() && (task.executor.is_some() == task.command.is_some()) {
            let msg = if task.executor.is_some() {
                "Task should have at most one of CommandInfo or ExecutorInfo present"
            } else {
                "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
            };
            self.task_error(framework_id, &task_id, Reason::TaskInvalid, msg.into(), now);
            return;
        }
        let task_resources = match Self::normalize_resources(&task.resources, role) {
            Ok(r) => r,
            Err(e) => {
                self.task_error(
                    framework_id,
                    &task_id,
                    Reason::TaskInvalid,
                    format!("Task uses invalid resources: {e}"),
                    now,
                );
                return;
            }
        };
        let mut needed = task_resources.clone();
        // A custom executor that is not running yet needs its resources too.
        let mut new_executor = None;
        if let Some(exec) = task.executor.as_mut() {
            exec.framework_id = Some(v1::FrameworkId {
                value: framework_id.to_string(),
            });
            if exec.executor_id.value.is_empty() {
                self.task_error(
                    framework_id,
                    &task_id,
                    Reason::TaskInvalid,
                    "ExecutorInfo has an empty executor_id".into(),
                    now,
                );
                return;
            }
            let key = (agent_id.to_string(), exec.executor_id.value.clone());
            let running = self
                .frameworks
                .get(framework_id)
                .is_some_and(|f| f.executors.contains_key(&key));
            if !running {
                match Self::normalize_resources(&exec.resources, role) {
                    Ok(r) => {
                        needed.add_all(&r);
                        let mut e = exec.clone();
                        e.resources = r.to_vec();
                        new_executor = Some(e);
                    }
                    Err(e) => {
                        self.task_error(
                            framework_id,
                            &task_id,
                            Reason::TaskInvalid,
                            format!("Executor uses invalid resources: {e}"),
                            now,
                        );
                        return;
                    }
                }
            }
        }
        if !remaining.contains(&needed) {
            self.task_error(
                framework_id,
                &task_id,
                Reason::TaskInvalid,
                format!(
                    "Task {} attempted to use resources {} which exceeds the available resources {} in the offer",
                    task_id.value, needed, remaining
                ),
                now,
            );
            return;
        }
        remaining.subtract_all(&needed);
        task.agent_id = v1::AgentId {
            value: agent_id.to_string(),
        };
        task.resources = task_resources.to_vec();
        if let Some(exec) = &new_executor {
            task.executor = Some(exec.clone());
        }
        self.record_launch(
            framework_id,
            agent_id,
            &task,
            group_executor,
            new_executor,
            &needed,
            now,
        );
        if group_executor.is_none() {
            let framework_info = self
                .frameworks
                .get(framework_id)
                .map(|f| f.info.clone())
                .unwrap_or_default();
            let executor_info = task.executor.take();
            self.emit_agent(
                agent_id,
                ToAgent::RunTask(internal::RunTask {
                    framework_info,
                    executor_info,
                    task: Some(task),
                    task_group: None,
                }),
            );
        }
    }

    fn record_launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        task: &v1::TaskInfo,
        group_executor: Option<&v1::ExecutorInfo>,
        new_executor: Option<v1::ExecutorInfo>,
        used: &Resources,
        now: Clock,
    ) {
        let _ = now;
        let executor_id = group_executor
            .map(|e| e.executor_id.clone())
            .or_else(|| task.executor.as_ref().map(|e| e.executor_id.clone()));
        let record = v1::Task {
            name: task.name.clone(),
            task_id: task.task_id.clone(),
            framework_id: v1::FrameworkId {
                value: framework_id.to_string(),
            },
            executor_id,
            agent_id: v1::AgentId {
                value: agent_id.to_string(),
            },
            state: TaskState::TaskStaging as i32,
            resources: task.resources.clone(),
            labels: task.labels.clone(),
            discovery: task.discovery.clone(),
            container: task.container.clone(),
            health_check: task.health_check.clone(),
            kill_policy: task.kill_policy,
            user: self
                .frameworks
                .get(framework_id)
                .map(|f| f.info.user.clone()),
            ..Default::default()
        };
        if let Some(fw) = self.frameworks.get_mut(framework_id) {
            fw.tasks.insert(task.task_id.value.clone(), record.clone());
            if let Some(e) = new_executor {
                fw.executors
                    .insert((agent_id.to_string(), e.executor_id.value.clone()), e);
            }
        }
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent
                .used
                .entry(framework_id.to_string())
                .or_default()
                .add_all(used);
        }
        self.counters.inc("master/tasks_launched");
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::TaskAdded as i32),
            task_added: Some(op::event::TaskAdded { task: record }),
            ..Default::default()
        });
    }

    fn launch_group(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        refinement: bool,
        group: v1::offer::operation::LaunchGroup,
        remaining: &mut Resources,
        now: Clock,
    ) {
        let mut executor = group.executor;
        let tasks = group.task_group.tasks;
        let fail_all = |this: &mut Self, msg: String| {
            for t in &tasks {
                this.task_error(
                    framework_id,
                    &t.task_id,
                    Reason::TaskGroupInvalid,
                    msg.clone(),
                    now,
                );
            }
        };
        if tasks.is_empty() {
            return;
        }
        if executor.executor_id.value.is_empty() {
            fail_all(self, "Task group executor has an empty executor_id".into());
            return;
        }
        if executor.r#type != Some(v1::executor_info::Type::Default as i32) {
            fail_all(self, "Task group executor must be of type DEFAULT".into());
            return;
        }
        let mut ids = BTreeSet::new();
        for t in &tasks {
            if let Err(e) = self.validate_task_basics(framework_id, t) {
                fail_all(self, format!("Task group is invalid: {e}"));
                return;
            }
            if t.executor.is_some() {
                fail_all(
                    self,
                    format!(
                        "Task {} of a task group must not have an executor",
                        t.task_id.value
                    ),
                );
                return;
            }
            if t.command.is_none() {
                fail_all(
                    self,
                    format!(
                        "Task {} of a task group must have a command",
                        t.task_id.value
                    ),
                );
                return;
            }
            if !ids.insert(t.task_id.value.clone()) {
                fail_all(
                    self,
                    format!("Task group has duplicate task ID: {}", t.task_id.value),
                );
                return;
            }
        }
        executor.framework_id = Some(v1::FrameworkId {
            value: framework_id.to_string(),
        });
        let key = (agent_id.to_string(), executor.executor_id.value.clone());
        let running = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.executors.contains_key(&key));
        let mut needed = Resources::new();
        let mut new_executor = None;
        if !running {
            match Self::normalize_resources(&executor.resources, role) {
                Ok(r) => {
                    needed.add_all(&r);
                    executor.resources = r.to_vec();
                    new_executor = Some(executor.clone());
                }
                Err(e) => {
                    fail_all(self, format!("Executor uses invalid resources: {e}"));
                    return;
                }
            }
        }
        let mut per_task = Vec::new();
        for t in &tasks {
            match Self::normalize_resources(&t.resources, role) {
                Ok(r) => {
                    needed.add_all(&r);
                    per_task.push(r);
                }
                Err(e) => {
                    fail_all(self, format!("Task uses invalid resources: {e}"));
                    return;
                }
            }
        }
        if !remaining.contains(&needed) {
            fail_all(
                self,
                format!(
                    "Task group attempted to use resources {needed} which exceeds the available resources {remaining} in the offer"
                ),
            );
            return;
        }
        remaining.subtract_all(&needed);
        let _ = refinement;
        let mut launched = Vec::new();
        for (i, (mut t, r)) in tasks.clone().into_iter().zip(per_task).enumerate() {
            t.agent_id = v1::AgentId {
                value: agent_id.to_string(),
            };
            t.resources = r.to_vec();
            let exec_used = if i == 0 { new_executor.clone() } else { None };
            let mut used = r.clone();
            if let Some(e) = &exec_used {
                used.add_all(&Resources::from_vec(&e.resources));
            }
            self.record_launch(
                framework_id,
                agent_id,
                &t,
                Some(&executor),
                exec_used,
                &used,
                now,
            );
            launched.push(t);
        }
        let framework_info = self
            .frameworks
            .get(framework_id)
            .map(|f| f.info.clone())
            .unwrap_or_default();
        self.emit_agent(
            agent_id,
            ToAgent::RunTask(internal::RunTask {
                framework_info,
                executor_info: Some(executor),
                task: None,
                task_group: Some(v1::TaskGroupInfo { tasks: launched }),
            }),
        );
    }

    fn kill(&mut self, framework_id: &str, kill: scheduler::call::Kill, now: Clock) {
        self.counters.inc("master/messages_kill_task");
        let task = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.tasks.get(&kill.task_id.value))
            .cloned();
        match task {
            Some(t) if !is_terminal(t.state) => {
                self.emit_agent(
                    &t.agent_id.value,
                    ToAgent::KillTask(internal::KillTask {
                        framework_id: v1::FrameworkId {
                            value: framework_id.to_string(),
                        },
                        task_id: kill.task_id,
                        kill_policy: kill.kill_policy.or(t.kill_policy),
                    }),
                );
            }
            Some(_) => {}
            None => {
                let pa = self
                    .frameworks
                    .get(framework_id)
                    .is_some_and(|f| f.partition_aware());
                let state = if pa {
                    TaskState::TaskUnknown
                } else {
                    TaskState::TaskLost
                };
                let status = self.master_status(
                    &kill.task_id,
                    kill.agent_id.as_ref().map(|a| a.value.as_str()),
                    state,
                    Reason::Reconciliation,
                    "Attempted to kill an unknown task",
                    now,
                );
                self.send_update(framework_id, status);
            }
        }
    }

    fn acknowledge(
        &mut self,
        framework_id: &str,
        ack: scheduler::call::Acknowledge,
    ) -> Result<(), CallError> {
        if ack.uuid.len() != 16 {
            return Err(CallError::BadRequest(
                "'acknowledge.uuid' must be a 16-byte UUID".into(),
            ));
        }
        self.counters
            .inc("master/messages_status_update_acknowledgement");
        let agent_id = ack.agent_id.value.clone();
        if let Some(fw) = self.frameworks.get_mut(framework_id) {
            let done = fw.tasks.get(&ack.task_id.value).is_some_and(|t| {
                // Complete only when the acknowledged update itself is
                // terminal: a RUNNING update may arrive with a terminal
                // `latest_state`, and its FINISHED is still to come.
                t.status_update_state.is_some_and(is_terminal)
                    && t.status_update_uuid.as_deref() == Some(&ack.uuid[..])
            });
            if done {
                if let Some(t) = fw.tasks.remove(&ack.task_id.value) {
                    fw.completed_tasks.push_back(t);
                    while fw.completed_tasks.len() > self.flags.max_completed_tasks_per_framework {
                        fw.completed_tasks.pop_front();
                    }
                }
            }
        }
        if self.agents.contains_key(&agent_id) {
            self.emit_agent(
                &agent_id,
                ToAgent::Acknowledge(internal::AcknowledgeUpdate {
                    framework_id: v1::FrameworkId {
                        value: framework_id.to_string(),
                    },
                    task_id: ack.task_id,
                    uuid: ack.uuid,
                }),
            );
        }
        Ok(())
    }

    fn reconcile(&mut self, framework_id: &str, r: scheduler::call::Reconcile, now: Clock) {
        self.counters.inc("master/messages_reconcile_tasks");
        let Some(fw) = self.frameworks.get(framework_id) else {
            return;
        };
        let pa = fw.partition_aware();
        let mut statuses = Vec::new();
        let mut held = 0usize;
        if r.tasks.is_empty() {
            // Implicit: every task the master knows, by its latest state,
            // and the tasks of agents that are unreachable now; never for
            // an agent still transitioning (recovered, not re-registered).
            for t in fw.tasks.values() {
                if !self.recovering.contains_key(&t.agent_id.value) {
                    statuses.push(reconcile_status(t, now));
                }
            }
            let mut seen = BTreeSet::new();
            for t in fw.completed_tasks.iter().rev() {
                let unreachable_state = t.state == TaskState::TaskUnreachable as i32
                    || t.state == TaskState::TaskLost as i32;
                if unreachable_state
                    && self.unreachable.contains_key(&t.agent_id.value)
                    && !fw.tasks.contains_key(&t.task_id.value)
                    && seen.insert(t.task_id.value.as_str())
                {
                    statuses.push(reconcile_status(t, now));
                }
            }
        } else {
            for rt in &r.tasks {
                // Known: running, or the latest completed run of that id.
                let known = fw.tasks.get(&rt.task_id.value).or_else(|| {
                    fw.completed_tasks
                        .iter()
                        .rev()
                        .find(|t| t.task_id == rt.task_id)
                });
                let agent_id = rt.agent_id.as_ref().map(|a| a.value.as_str());
                match known {
                    Some(t) => statuses.push(reconcile_status(t, now)),
                    None => match self.reconcile_unknown(&rt.task_id, agent_id, pa, now) {
                        Some(s) => statuses.push(s),
                        None => held += 1,
                    },
                }
            }
        }
        if held > 0 {
            // One line per call, however many tasks it names.
            tracing::info!(
                framework_id,
                tasks = held,
                transitioning_agents = self.recovering.len(),
                "no answer to reconciliation of unknown tasks while agents have not re-registered since the failover"
            );
        }
        for s in statuses {
            self.send_update(framework_id, s);
        }
    }

    /// The answer to explicit reconciliation of a task the master does not
    /// know, by the state of the agent it names (Mesos' cases): registered ->
    /// TASK_GONE / TASK_LOST; recovered from the registry and not yet
    /// re-registered -> no answer (the framework retries, and is answered
    /// once the agent re-registers or is marked unreachable); unreachable ->
    /// TASK_UNREACHABLE / TASK_LOST; gone -> TASK_GONE_BY_OPERATOR /
    /// TASK_LOST; unknown -> TASK_UNKNOWN / TASK_LOST. Without an agent id
    /// there is no answer while any agent is still transitioning.
    fn reconcile_unknown(
        &self,
        task_id: &v1::TaskId,
        agent_id: Option<&str>,
        partition_aware: bool,
        now: Clock,
    ) -> Option<v1::TaskStatus> {
        let lost_unless = |state: TaskState| {
            if partition_aware {
                state
            } else {
                TaskState::TaskLost
            }
        };
        let (state, message) = match agent_id {
            Some(a) if self.agents.contains_key(a) => (
                lost_unless(TaskState::TaskGone),
                "Reconciliation: Task is unknown to the agent",
            ),
            Some(a) if self.recovering.contains_key(a) => return None,
            Some(a) if self.unreachable.contains_key(a) => (
                lost_unless(TaskState::TaskUnreachable),
                "Reconciliation: Task is unreachable",
            ),
            Some(a) if self.gone.contains(a) => (
                lost_unless(TaskState::TaskGoneByOperator),
                "Reconciliation: Task is gone",
            ),
            None if !self.recovering.is_empty() => return None,
            _ => (
                lost_unless(TaskState::TaskUnknown),
                "Reconciliation: Task is unknown",
            ),
        };
        let mut status = self.master_status(
            task_id,
            agent_id,
            state,
            Reason::Reconciliation,
            message,
            now,
        );
        if state == TaskState::TaskUnreachable {
            status.unreachable_time = agent_id
                .and_then(|a| self.unreachable.get(a))
                .map(|(_, since)| wall_time(*since));
        }
        Some(status)
    }

    /// Removes a framework: its tasks are killed, offers and resources
    /// returned, and it moves to the completed frameworks.
    pub fn remove_framework(&mut self, framework_id: &str, now: Clock) {
        self.rescind_framework_offers(framework_id, false);
        let Some(mut fw) = self.frameworks.remove(framework_id) else {
            return;
        };
        let agents: BTreeSet<String> = fw
            .tasks
            .values()
            .map(|t| t.agent_id.value.clone())
            .chain(fw.executors.keys().map(|(a, _)| a.clone()))
            .collect();
        for a in &agents {
            self.emit_agent(
                a,
                ToAgent::ShutdownFramework(internal::ShutdownFramework {
                    framework_id: v1::FrameworkId {
                        value: framework_id.to_string(),
                    },
                }),
            );
            if let Some(agent) = self.agents.get_mut(a) {
                agent.used.remove(framework_id);
            }
        }
        for (_, mut t) in std::mem::take(&mut fw.tasks) {
            if !is_terminal(t.state) {
                t.state = TaskState::TaskKilled as i32;
                self.counters.inc("master/tasks_killed");
            }
            fw.completed_tasks.push_back(t);
        }
        while fw.completed_tasks.len() > self.flags.max_completed_tasks_per_framework {
            fw.completed_tasks.pop_front();
        }
        fw.executors.clear();
        self.allocator.remove_framework(framework_id);
        self.operations.forget_framework(framework_id);
        fw.connected = false;
        fw.active = false;
        fw.unregistered_time = Some(now.wall);
        if let Some(stream) = fw.stream_id.take() {
            self.out.push(Effect::CloseFramework {
                framework_id: framework_id.to_string(),
                stream_id: stream,
                error: None,
            });
        }
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::FrameworkRemoved as i32),
            framework_removed: Some(op::event::FrameworkRemoved {
                framework_info: fw.info.clone(),
            }),
            ..Default::default()
        });
        tracing::info!(framework_id, "framework removed");
        self.completed_frameworks.push_back(fw);
        while self.completed_frameworks.len() > self.flags.max_completed_frameworks {
            self.completed_frameworks.pop_front();
        }
    }

    /// A framework's subscription stream broke.
    pub fn framework_disconnected(&mut self, framework_id: &str, stream_id: &str, now: Clock) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.stream_id.as_deref() != Some(stream_id) {
            return;
        }
        fw.stream_id = None;
        fw.connected = false;
        fw.active = false;
        let timeout = fw.info.failover_timeout.unwrap_or(0.0).clamp(0.0, 1e9);
        fw.failover_deadline = Some(now.mono + Duration::from_secs_f64(timeout));
        self.allocator.set_framework_active(framework_id, false);
        self.rescind_framework_offers(framework_id, false);
        if let Some(view) = self.framework_view(framework_id) {
            self.emit_op(op_event_framework_updated(view));
        }
        tracing::info!(
            framework_id,
            failover_timeout_secs = timeout,
            "framework disconnected"
        );
    }

    // ---------------------------------------------------------------
    // Agents
    // ---------------------------------------------------------------

    /// An agent (re-)registers. Returns its id and the Registered message.
    pub fn register_agent(
        &mut self,
        reg: internal::RegisterAgent,
        now: Clock,
    ) -> Result<String, String> {
        let mut info = reg.agent_info;
        if info.hostname.is_empty() {
            return Err("AgentInfo.hostname must be set".into());
        }
        let mut upgraded = info.resources.clone();
        for r in &mut upgraded {
            resources::upgrade(r);
        }
        let total = Resources::try_from_vec(&upgraded)?;
        // The agent's checkpointed reservations and volumes: its total is
        // the truth (empty: exactly its static resources).
        let total = if reg.total_resources.is_empty() {
            total
        } else {
            operations::upgraded_total(&reg.total_resources)?
        };
        info.resources = upgraded;
        let id = match info.id.as_ref().map(|i| i.value.clone()) {
            Some(id) if !id.is_empty() => id,
            _ => {
                let id = format!("{}-S{}", self.info.id, self.next_agent);
                self.next_agent += 1;
                id
            }
        };
        info.id = Some(v1::AgentId { value: id.clone() });
        if self.gone.contains(&id) {
            return Err(format!("agent {id} has been marked gone"));
        }
        // Coming back from a partition (or after a failover that outlasted
        // --agent_reregister_timeout): partition-aware frameworks' tasks
        // continue, the others' were reported lost and are killed now.
        let returning = self.unreachable.contains_key(&id);
        let known = self.agents.contains_key(&id);
        // A re-registration: known to this master, back from a partition,
        // or recovered from the registry after a failover.
        let reregistered = known || returning || self.recovering.contains_key(&id);
        if known {
            // Re-registration: outstanding offers on it are stale.
            self.rescind_agent_offers(&id);
        }

        // Frameworks the agent knows about but this master does not.
        for fi in &reg.frameworks {
            let Some(fid) = fi.id.as_ref().map(|i| i.value.clone()) else {
                continue;
            };
            if self.frameworks.contains_key(&fid)
                || self.completed_frameworks.iter().any(|f| f.id == fid)
            {
                continue;
            }
            let timeout = fi.failover_timeout.unwrap_or(0.0).clamp(0.0, 1e9);
            self.allocator
                .add_framework(&fid, framework_roles(fi), false);
            self.allocator
                .set_reservation_refinement(&fid, has_capability(fi, FwCap::ReservationRefinement));
            self.frameworks.insert(
                fid.clone(),
                Framework {
                    id: fid.clone(),
                    info: fi.clone(),
                    connected: false,
                    active: false,
                    recovered: true,
                    stream_id: None,
                    registered_time: now.wall,
                    reregistered_time: None,
                    unregistered_time: None,
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    executors: BTreeMap::new(),
                    offers: BTreeSet::new(),
                    failover_deadline: Some(
                        now.mono + Duration::from_secs_f64(timeout).max(self.agent_timeout()),
                    ),
                },
            );
        }

        // What the agent runs, per framework, becomes its used resources.
        let mut used: BTreeMap<String, Resources> = BTreeMap::new();
        let mut tasks_to_shutdown = BTreeSet::new();
        let mut tasks_to_kill: Vec<(String, v1::TaskId)> = Vec::new();
        let reported: BTreeSet<(String, String)> = reg
            .tasks
            .iter()
            .map(|t| (t.framework_id.value.clone(), t.task_id.value.clone()))
            .collect();
        for t in &reg.tasks {
            let fid = t.framework_id.value.clone();
            let Some(fw) = self.frameworks.get_mut(&fid) else {
                tasks_to_shutdown.insert(fid);
                continue;
            };
            if is_terminal(t.state) && !fw.tasks.contains_key(&t.task_id.value) {
                continue;
            }
            if !is_terminal(t.state) {
                let lost_here = !fw.tasks.contains_key(&t.task_id.value)
                    && fw.completed_tasks.iter().any(|m| {
                        m.task_id == t.task_id
                            && (m.state == TaskState::TaskLost as i32
                                || m.state == TaskState::TaskUnreachable as i32)
                    });
                if lost_here || (returning && !fw.tasks.contains_key(&t.task_id.value)) {
                    if fw.partition_aware() {
                        // The task continues; the master learns its state.
                        fw.completed_tasks.retain(|m| m.task_id != t.task_id);
                        fw.tasks.insert(t.task_id.value.clone(), t.clone());
                    } else {
                        tasks_to_kill.push((fid.clone(), t.task_id.clone()));
                        continue;
                    }
                }
            }
            let entry = fw
                .tasks
                .entry(t.task_id.value.clone())
                .or_insert_with(|| t.clone());
            entry.agent_id = v1::AgentId { value: id.clone() };
            if !is_terminal(t.state) {
                used.entry(fid.clone())
                    .or_default()
                    .add_all(&Resources::from_vec(&t.resources));
            }
        }
        for e in &reg.executors {
            let Some(fid) = e.framework_id.as_ref().map(|f| f.value.clone()) else {
                continue;
            };
            if let Some(fw) = self.frameworks.get_mut(&fid) {
                fw.executors
                    .insert((id.clone(), e.executor_id.value.clone()), e.clone());
                used.entry(fid.clone())
                    .or_default()
                    .add_all(&Resources::from_vec(&e.resources));
            }
        }
        // Tasks the master launched there that the agent never got.
        let mut lost = Vec::new();
        for fw in self.frameworks.values() {
            for t in fw.tasks.values() {
                if t.agent_id.value == id
                    && !is_terminal(t.state)
                    && !reported.contains(&(fw.id.clone(), t.task_id.value.clone()))
                    && known
                {
                    lost.push((fw.id.clone(), t.task_id.clone(), fw.partition_aware()));
                }
            }
        }
        for (fid, tid, pa) in lost {
            let state = if pa {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            let status = self.master_status(
                &tid,
                Some(&id),
                state,
                Reason::AgentReregistered,
                "Task was not received by the agent",
                now,
            );
            self.apply_master_status(&fid, status);
        }
        for fid in tasks_to_shutdown {
            self.emit_agent(
                &id,
                ToAgent::ShutdownFramework(internal::ShutdownFramework {
                    framework_id: v1::FrameworkId { value: fid },
                }),
            );
        }

        let used_list: Vec<(String, Resources)> =
            used.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if self.allocator.has_agent(&id) {
            self.allocator.remove_agent(&id);
        }
        self.allocator.add_agent(&id, total.clone(), &used_list);
        let registered_time = self
            .agents
            .get(&id)
            .map(|a| a.registered_time)
            .unwrap_or(now.wall);
        self.agents.insert(
            id.clone(),
            Agent {
                id: id.clone(),
                info: info.clone(),
                endpoint: reg.endpoint,
                version: reg.version,
                registered_time,
                reregistered_time: reregistered.then_some(now.wall),
                connected: true,
                total,
                used,
                offered: Resources::new(),
                disconnected_at: None,
                pings_outstanding: 0,
            },
        );
        self.learn_agent_operations(&id, reg.operations);
        self.counters.inc(if reregistered {
            "master/slave_reregistrations"
        } else {
            "master/slave_registrations"
        });
        self.recovering.remove(&id);
        if returning || !self.admitted.contains(&id) {
            self.unreachable.remove(&id);
            self.admitted.insert(id.clone());
            self.out.push(Effect::Registry(vec![
                crate::registry::Operation::AdmitAgent(info.clone()),
            ]));
        }
        self.emit_agent(
            &id,
            ToAgent::Registered(internal::Registered {
                agent_id: v1::AgentId { value: id.clone() },
                master_info: self.info.clone(),
                ping_interval_seconds: self.flags.agent_ping_timeout.as_secs_f64(),
            }),
        );
        // After Registered, so that the agent's session is there for them.
        for (fid, tid) in tasks_to_kill {
            tracing::info!(agent_id = %id, framework_id = %fid, task_id = %tid.value, "killing a task of a framework that is not partition-aware on a returning agent");
            self.emit_agent(
                &id,
                ToAgent::KillTask(internal::KillTask {
                    framework_id: v1::FrameworkId { value: fid },
                    task_id: tid,
                    kill_policy: None,
                }),
            );
        }
        if let Some(view) = self.agent_view(&id) {
            self.emit_op(op::Event {
                r#type: Some(op::event::Type::AgentAdded as i32),
                agent_added: Some(op::event::AgentAdded { agent: view }),
                ..Default::default()
            });
        }
        tracing::info!(agent_id = %id, hostname = %info.hostname, reregistered, "agent registered");
        Ok(id)
    }

    fn agent_timeout(&self) -> Duration {
        self.flags.agent_ping_timeout * self.flags.max_agent_ping_timeouts.max(1)
    }

    /// An agent's session ended.
    pub fn agent_disconnected(&mut self, agent_id: &str, now: Clock) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if !agent.connected {
            return;
        }
        agent.connected = false;
        agent.disconnected_at = Some(now.mono);
        self.allocator.set_agent_active(agent_id, false);
        self.rescind_agent_offers(agent_id);
        tracing::warn!(agent_id, "agent disconnected");
    }

    /// Removes an agent that did not come back: its tasks are lost
    /// (unreachable for partition-aware frameworks).
    pub fn remove_agent(&mut self, agent_id: &str, now: Clock) {
        self.rescind_agent_offers(agent_id);
        let Some(agent) = self.agents.remove(agent_id) else {
            return;
        };
        self.allocator.remove_agent(agent_id);
        if self.admitted.remove(agent_id) {
            self.out.push(Effect::Registry(vec![
                crate::registry::Operation::MarkUnreachable {
                    agent_id: agent_id.to_owned(),
                    since: wall_time(now.wall),
                },
            ]));
        }
        self.unreachable
            .insert(agent_id.to_owned(), (agent.info.clone(), now.wall));
        let mut updates = Vec::new();
        for fw in self.frameworks.values_mut() {
            fw.executors.retain(|(a, _), _| a != agent_id);
            for t in fw.tasks.values() {
                if t.agent_id.value == agent_id && !is_terminal(t.state) {
                    updates.push((fw.id.clone(), t.task_id.clone(), fw.partition_aware()));
                }
            }
        }
        for (fid, tid, pa) in updates {
            let state = if pa {
                TaskState::TaskUnreachable
            } else {
                TaskState::TaskLost
            };
            let mut status = self.master_status(
                &tid,
                Some(agent_id),
                state,
                Reason::AgentRemoved,
                "Agent was removed after it stopped answering pings",
                now,
            );
            if pa {
                status.unreachable_time = Some(wall_time(now.wall));
            }
            self.apply_master_status(&fid, status);
        }
        self.counters.inc("master/slave_removals");
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::AgentRemoved as i32),
            agent_removed: Some(op::event::AgentRemoved {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
            }),
            ..Default::default()
        });
        tracing::warn!(agent_id, "agent removed");
    }

    /// Applies a master-generated terminal status to a task and tells the
    /// framework (no acknowledgement expected).
    fn apply_master_status(&mut self, framework_id: &str, status: v1::TaskStatus) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        let Some(mut t) = fw.tasks.remove(&status.task_id.value) else {
            return;
        };
        t.state = status.state;
        t.statuses.push(status.clone());
        let agent = t.agent_id.value.clone();
        let res = Resources::from_vec(&t.resources);
        fw.completed_tasks.push_back(t);
        while fw.completed_tasks.len() > self.flags.max_completed_tasks_per_framework {
            fw.completed_tasks.pop_front();
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            if let Some(u) = a.used.get_mut(framework_id) {
                u.subtract_all(&res);
            }
            self.allocator.recover(framework_id, &agent, &res, None);
        }
        if let Some(m) = task_metric(status.state) {
            self.counters.inc(m);
        }
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::TaskUpdated as i32),
            task_updated: Some(op::event::TaskUpdated {
                framework_id: v1::FrameworkId {
                    value: framework_id.to_string(),
                },
                status: status.clone(),
                state: status.state,
            }),
            ..Default::default()
        });
        self.send_update(framework_id, status);
    }

    /// A message from a registered agent's session.
    pub fn agent_message(
        &mut self,
        agent_id: &str,
        msg: internal::agent_message::Message,
        now: Clock,
    ) {
        use internal::agent_message::Message as FromAgent;
        match msg {
            FromAgent::Register(_) => {
                tracing::warn!(agent_id, "duplicate register on a live session ignored");
            }
            FromAgent::Pong(_) => {
                if let Some(a) = self.agents.get_mut(agent_id) {
                    a.pings_outstanding = 0;
                }
            }
            FromAgent::StatusUpdate(u) => self.status_update(agent_id, u, now),
            FromAgent::ExecutorExited(e) => self.executor_exited(agent_id, e),
            FromAgent::OperationUpdate(u) => self.operation_update(agent_id, u),
            FromAgent::ExecutorToFramework(m) => {
                self.counters.inc("master/messages_executor_to_framework");
                self.emit_fw(
                    &m.framework_id.value,
                    scheduler::Event {
                        r#type: Some(scheduler::event::Type::Message as i32),
                        message: Some(scheduler::event::Message {
                            agent_id: v1::AgentId {
                                value: agent_id.to_string(),
                            },
                            executor_id: m.executor_id,
                            data: m.data,
                        }),
                        ..Default::default()
                    },
                );
            }
        }
    }

    fn status_update(&mut self, agent_id: &str, u: internal::StatusUpdate, now: Clock) {
        let _ = now;
        let fid = u.framework_id.value.clone();
        let mut status = u.status;
        status.agent_id = Some(v1::AgentId {
            value: agent_id.to_string(),
        });
        let latest = u.latest_state.unwrap_or(status.state);
        let Some(fw) = self.frameworks.get_mut(&fid) else {
            // The framework is gone: acknowledge so the agent stops retrying.
            self.counters.inc("master/invalid_status_updates");
            if let Some(uuid) = status.uuid.clone() {
                self.emit_agent(
                    agent_id,
                    ToAgent::Acknowledge(internal::AcknowledgeUpdate {
                        framework_id: u.framework_id,
                        task_id: status.task_id.clone(),
                        uuid,
                    }),
                );
            }
            return;
        };
        self.counters.inc("master/valid_status_updates");
        let connected = fw.connected;
        let mut freed = None;
        if let Some(t) = fw.tasks.get_mut(&status.task_id.value) {
            let was_terminal = is_terminal(t.state);
            t.state = latest;
            t.status_update_state = Some(status.state);
            t.status_update_uuid = status.uuid.clone();
            // Keep the history bounded: the first and the latest few.
            t.statuses.push(status.clone());
            if t.statuses.len() > 16 {
                t.statuses.remove(1);
            }
            if !was_terminal && is_terminal(latest) {
                freed = Some(Resources::from_vec(&t.resources));
                if let Some(m) = task_metric(latest) {
                    self.counters.inc(m);
                }
            }
        } else if fw
            .completed_tasks
            .iter()
            .any(|t| t.task_id == status.task_id)
        {
            // A retried update of a task already completed here: forward it
            // again so the framework acknowledges it, but keep one record.
        } else {
            // Unknown task (e.g. from before a master restart): adopt it.
            fw.tasks.insert(
                status.task_id.value.clone(),
                v1::Task {
                    name: String::new(),
                    task_id: status.task_id.clone(),
                    framework_id: u.framework_id.clone(),
                    executor_id: u.executor_id.clone(),
                    agent_id: v1::AgentId {
                        value: agent_id.to_string(),
                    },
                    state: latest,
                    statuses: vec![status.clone()],
                    status_update_state: Some(status.state),
                    status_update_uuid: status.uuid.clone(),
                    ..Default::default()
                },
            );
        }
        if let Some(res) = freed {
            if let Some(a) = self.agents.get_mut(agent_id) {
                if let Some(used) = a.used.get_mut(&fid) {
                    used.subtract_all(&res);
                }
            }
            self.allocator.recover(&fid, agent_id, &res, None);
        }
        if matches!(TaskState::try_from(latest), Ok(TaskState::TaskRunning)) {
            // Counted once per task through its first RUNNING update.
        }
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::TaskUpdated as i32),
            task_updated: Some(op::event::TaskUpdated {
                framework_id: u.framework_id.clone(),
                status: status.clone(),
                state: latest,
            }),
            ..Default::default()
        });
        if connected {
            self.send_update(&fid, status);
        }
    }

    fn executor_exited(&mut self, agent_id: &str, e: internal::ExecutorExited) {
        let fid = e.framework_id.value.clone();
        let key = (agent_id.to_string(), e.executor_id.value.clone());
        let mut freed = None;
        if let Some(fw) = self.frameworks.get_mut(&fid) {
            if let Some(info) = fw.executors.remove(&key) {
                freed = Some(Resources::from_vec(&info.resources));
            }
        }
        if let Some(res) = freed {
            if let Some(a) = self.agents.get_mut(agent_id) {
                if let Some(used) = a.used.get_mut(&fid) {
                    used.subtract_all(&res);
                }
            }
            self.allocator.recover(&fid, agent_id, &res, None);
        }
        self.emit_fw(
            &fid,
            scheduler::Event {
                r#type: Some(scheduler::event::Type::Failure as i32),
                failure: Some(scheduler::event::Failure {
                    agent_id: Some(v1::AgentId {
                        value: agent_id.to_string(),
                    }),
                    executor_id: Some(e.executor_id),
                    // Mesos always sets it: the wait status, or -1 when the
                    // agent does not know it (an executor it recovered after
                    // a restart is not its child); clients read it.
                    status: Some(e.status.unwrap_or(-1)),
                }),
                ..Default::default()
            },
        );
    }

    // ---------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------

    /// Runs an allocation cycle (all agents, or only changed ones) and
    /// turns the allocator's decisions into offers.
    pub fn allocate(&mut self, now: Clock, full: bool) {
        let started = std::time::Instant::now();
        let allocations = if full {
            self.allocator.allocate(now.mono)
        } else {
            self.allocator.allocate_changed(now.mono)
        };
        if full {
            self.counters.inc("allocator/mesos/allocation_runs");
            self.allocation_run_ms
                .push_back(started.elapsed().as_secs_f64() * 1000.0);
            if self.allocation_run_ms.len() > 1000 {
                self.allocation_run_ms.pop_front();
            }
        }
        let mut by_framework: BTreeMap<String, Vec<v1::Offer>> = BTreeMap::new();
        for a in allocations {
            let Some(agent) = self.agents.get_mut(&a.agent) else {
                continue;
            };
            let resources = a.resources.allocated_to(&a.role);
            agent.offered.add_all(&resources);
            let offer_id = format!("{}-O{}", self.info.id, self.next_offer);
            self.next_offer += 1;
            let executor_ids = self
                .frameworks
                .get(&a.framework)
                .map(|f| {
                    f.executors
                        .keys()
                        .filter(|(ag, _)| *ag == a.agent)
                        .map(|(_, e)| v1::ExecutorId { value: e.clone() })
                        .collect()
                })
                .unwrap_or_default();
            let offer = v1::Offer {
                id: v1::OfferId {
                    value: offer_id.clone(),
                },
                framework_id: v1::FrameworkId {
                    value: a.framework.clone(),
                },
                agent_id: v1::AgentId {
                    value: a.agent.clone(),
                },
                hostname: agent.info.hostname.clone(),
                url: Some(agent_url(agent)),
                resources: resources.to_vec(),
                attributes: agent.info.attributes.clone(),
                executor_ids,
                allocation_info: Some(v1::resource::AllocationInfo {
                    role: Some(a.role.clone()),
                }),
                ..Default::default()
            };
            if let Some(fw) = self.frameworks.get_mut(&a.framework) {
                fw.offers.insert(offer_id.clone());
            }
            self.offers.insert(
                offer_id,
                OfferEntry {
                    offer: offer.clone(),
                    resources,
                    role: a.role,
                    created: now.mono,
                },
            );
            by_framework.entry(a.framework).or_default().push(offer);
        }
        for (fid, offers) in by_framework {
            let refinement = self
                .frameworks
                .get(&fid)
                .is_some_and(|f| f.has_capability(FwCap::ReservationRefinement));
            let offers = offers
                .into_iter()
                .map(|mut o| {
                    if !refinement {
                        for r in &mut o.resources {
                            resources::downgrade(r);
                        }
                    }
                    o
                })
                .collect::<Vec<_>>();
            self.counters
                .values
                .entry("master/offers_sent")
                .and_modify(|c| *c += offers.len() as u64)
                .or_insert(offers.len() as u64);
            self.emit_fw(
                &fid,
                scheduler::Event {
                    r#type: Some(scheduler::event::Type::Offers as i32),
                    offers: Some(scheduler::event::Offers { offers }),
                    ..Default::default()
                },
            );
        }
    }

    /// Periodic housekeeping: failover timeouts of disconnected frameworks
    /// and removal of agents disconnected for too long.
    pub fn expire(&mut self, now: Clock) {
        if let Some(timeout) = self.flags.offer_timeout {
            let stale: Vec<String> = self
                .offers
                .iter()
                .filter(|(_, o)| now.mono >= o.created + timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                self.counters.inc("master/offers_rescinded");
                self.rescind_offer(&id);
            }
        }
        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| !f.connected && f.failover_deadline.is_some_and(|d| d <= now.mono))
            .map(|f| f.id.clone())
            .collect();
        for fid in expired {
            tracing::info!(framework_id = %fid, "framework failover timeout expired");
            self.remove_framework(&fid, now);
        }
        let timeout = self.agent_timeout();
        let gone: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.disconnected_at.is_some_and(|t| now.mono >= t + timeout))
            .map(|a| a.id.clone())
            .collect();
        for aid in gone {
            self.remove_agent(&aid, now);
        }
        self.expire_recovering(now);
    }

    /// Sends a ping to every connected agent; an agent with too many
    /// unanswered pings is disconnected.
    pub fn ping_agents(&mut self, now: Clock, seq: u64) {
        let max = self.flags.max_agent_ping_timeouts.max(1);
        let ids: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.connected)
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            let outstanding = self
                .agents
                .get(&id)
                .map(|a| a.pings_outstanding)
                .unwrap_or(0);
            if outstanding >= max {
                tracing::warn!(agent_id = %id, pings = outstanding, "agent missed pings");
                self.out.push(Effect::CloseAgent {
                    agent_id: id.clone(),
                });
                self.agent_disconnected(&id, now);
                continue;
            }
            if let Some(a) = self.agents.get_mut(&id) {
                a.pings_outstanding += 1;
            }
            self.emit_agent(&id, ToAgent::Ping(internal::Ping { seq }));
        }
    }

    // ---------------------------------------------------------------
    // Views (operator API)
    // ---------------------------------------------------------------

    /// GET_FRAMEWORKS entry of a framework.
    pub fn framework_view(
        &self,
        framework_id: &str,
    ) -> Option<op::response::get_frameworks::Framework> {
        self.frameworks
            .get(framework_id)
            .map(|f| self.framework_to_view(f))
    }

    fn framework_to_view(&self, f: &Framework) -> op::response::get_frameworks::Framework {
        let time = |t: f64| v1::TimeInfo {
            nanoseconds: (t * 1e9) as i64,
        };
        let mut allocated = Resources::new();
        for a in self.agents.values() {
            if let Some(u) = a.used.get(&f.id) {
                allocated.add_all(u);
            }
        }
        let mut offered = Resources::new();
        for o in &f.offers {
            if let Some(e) = self.offers.get(o) {
                offered.add_all(&e.resources);
            }
        }
        op::response::get_frameworks::Framework {
            framework_info: f.info.clone(),
            active: f.active,
            connected: f.connected,
            recovered: f.recovered,
            registered_time: Some(time(f.registered_time)),
            reregistered_time: f.reregistered_time.map(time),
            unregistered_time: f.unregistered_time.map(time),
            offers: f
                .offers
                .iter()
                .filter_map(|o| self.offers.get(o).map(|e| e.offer.clone()))
                .collect(),
            allocated_resources: allocated.to_vec(),
            offered_resources: offered.to_vec(),
            ..Default::default()
        }
    }

    /// GET_AGENTS entry of an agent.
    pub fn agent_view(&self, agent_id: &str) -> Option<op::response::get_agents::Agent> {
        let a = self.agents.get(agent_id)?;
        let time = |t: f64| v1::TimeInfo {
            nanoseconds: (t * 1e9) as i64,
        };
        Some(op::response::get_agents::Agent {
            agent_info: a.info.clone(),
            active: a.connected,
            deactivated: Some(false),
            version: a.version.clone(),
            pid: Some(a.pid()),
            registered_time: Some(time(a.registered_time)),
            reregistered_time: a.reregistered_time.map(time),
            total_resources: a.total.to_vec(),
            allocated_resources: a.used_total().to_vec(),
            offered_resources: a.offered.to_vec(),
            ..Default::default()
        })
    }

    /// GET_FRAMEWORKS.
    pub fn get_frameworks(&self) -> op::response::GetFrameworks {
        op::response::GetFrameworks {
            frameworks: self
                .frameworks
                .values()
                .map(|f| self.framework_to_view(f))
                .collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| self.framework_to_view(f))
                .collect(),
            recovered_frameworks: Vec::new(),
        }
    }

    /// GET_AGENTS.
    pub fn get_agents(&self) -> op::response::GetAgents {
        op::response::GetAgents {
            agents: self
                .agents
                .keys()
                .filter_map(|id| self.agent_view(id))
                .collect(),
            recovered_agents: Vec::new(),
        }
    }

    /// GET_TASKS.
    pub fn get_tasks(&self) -> op::response::GetTasks {
        let mut tasks = Vec::new();
        let mut completed = Vec::new();
        for f in self
            .frameworks
            .values()
            .chain(self.completed_frameworks.iter())
        {
            for t in f.tasks.values() {
                if is_terminal(t.state) {
                    completed.push(t.clone());
                } else {
                    tasks.push(t.clone());
                }
            }
            completed.extend(f.completed_tasks.iter().cloned());
        }
        op::response::GetTasks {
            tasks,
            completed_tasks: completed,
            ..Default::default()
        }
    }

    /// GET_EXECUTORS.
    pub fn get_executors(&self) -> op::response::GetExecutors {
        op::response::GetExecutors {
            executors: self
                .frameworks
                .values()
                .flat_map(|f| {
                    f.executors.iter().map(|((agent, _), info)| {
                        op::response::get_executors::Executor {
                            executor_info: info.clone(),
                            agent_id: v1::AgentId {
                                value: agent.clone(),
                            },
                        }
                    })
                })
                .collect(),
            orphan_executors: Vec::new(),
        }
    }

    /// GET_STATE.
    pub fn get_state(&self) -> op::response::GetState {
        op::response::GetState {
            get_tasks: Some(self.get_tasks()),
            get_executors: Some(self.get_executors()),
            get_frameworks: Some(self.get_frameworks()),
            get_agents: Some(self.get_agents()),
        }
    }

    /// GET_ROLES: every role with frameworks or reservations, and `*`.
    pub fn get_roles(&self) -> op::response::GetRoles {
        op::response::GetRoles {
            roles: self
                .role_views()
                .into_iter()
                .map(|r| v1::Role {
                    name: r.name,
                    weight: r.weight,
                    frameworks: r
                        .frameworks
                        .into_iter()
                        .map(|value| v1::FrameworkId { value })
                        .collect(),
                    resources: r.allocated.to_vec(),
                })
                .collect(),
        }
    }

    /// Every role with frameworks, reservations, allocations, a weight or
    /// quota (and `*`), with what the master and allocator know of it.
    pub fn role_views(&self) -> Vec<RoleView> {
        let mut roles: BTreeMap<String, RoleView> = BTreeMap::new();
        fn entry<'a>(roles: &'a mut BTreeMap<String, RoleView>, name: &str) -> &'a mut RoleView {
            roles.entry(name.to_string()).or_insert_with(|| RoleView {
                name: name.to_string(),
                weight: 1.0,
                ..Default::default()
            })
        }
        entry(&mut roles, "*");
        for info in self.allocator.roles() {
            let v = entry(&mut roles, &info.name);
            v.weight = info.weight;
            v.share = info.share;
            v.consumed = info.consumed;
        }
        for f in self.frameworks.values() {
            for role in f.roles() {
                entry(&mut roles, &role).frameworks.push(f.id.clone());
            }
        }
        let role_of = |r: &v1::Resource| {
            r.allocation_info
                .as_ref()
                .and_then(|i| i.role.clone())
                .unwrap_or_else(|| "*".to_string())
        };
        for a in self.agents.values() {
            for r in a.used.values().flat_map(|u| u.as_slice().iter()) {
                let v = entry(&mut roles, &role_of(r));
                v.allocated.add(r);
            }
            for r in a.total.as_slice() {
                let reserved = resources::reservation_role(r);
                if reserved != "*" {
                    entry(&mut roles, reserved).reserved.add(r);
                }
            }
        }
        for o in self.offers.values() {
            for r in o.resources.as_slice() {
                let v = entry(&mut roles, &role_of(r));
                v.offered.add(r);
                v.allocated.add(r);
            }
        }
        for (role, w) in &self.weights {
            entry(&mut roles, role).weight = *w;
        }
        for (role, q) in &self.quotas {
            entry(&mut roles, role).quota = Some(q.clone());
        }
        roles.into_values().collect()
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

mod operations;
pub use operations::{is_terminal_operation, Operations, OperatorError, TrackedOperation};

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod operation_tests;

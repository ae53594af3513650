//! Offer operations that change resources in place — RESERVE, UNRESERVE,
//! CREATE, DESTROY, GROW_VOLUME, SHRINK_VOLUME — from frameworks (ACCEPT)
//! and from the operator (RESERVE_RESOURCES, CREATE_VOLUMES, ...), and the
//! feedback about them (UPDATE_OPERATION_STATUS, ACKNOWLEDGE_OPERATION_STATUS,
//! RECONCILE_OPERATIONS).
//!
//! The agent is the source of truth for its reservations and volumes, as in
//! Mesos. The master validates an operation against what it knows (the
//! offer, the agent's total, the tasks using a volume), applies it to its
//! own view speculatively (the agent's total, the allocator) and sends
//! `ApplyOperation` to the agent, which does the work and answers with an
//! `OperationStatusUpdate`. A failed operation resyncs the master's view
//! from the total the agent reports; a (re-)registering agent's total
//! replaces the master's view outright, so a new leader learns
//! reservations and volumes from the agents, not from the registry.
//!
//! The resource arithmetic is `corral_api::operations`', shared with the
//! agent; the rules that need context (roles, principals, volumes in use,
//! persistence ids on the agent) are here.

use std::collections::{BTreeMap, BTreeSet};

use corral_api::internal::{self, master_message::Message as ToAgent};
use corral_api::operations::{self as ops, Conversion};
use corral_api::resources::{self, Resources};
use corral_api::v1::{self, offer::operation::Type as OpType, scheduler, OperationState};

use super::{has_capability, CallError, FwCap, Master};

/// Statuses kept per operation (the first and the latest ones).
const MAX_STATUSES: usize = 8;

/// An operation the master applied (or learned from an agent) whose
/// outcome is not yet settled: pending on the agent, or a status the
/// framework has not acknowledged.
#[derive(Debug, Clone)]
pub struct TrackedOperation {
    /// The framework that asked for it; `None` for the operator's.
    pub framework_id: Option<String>,
    /// The agent it applies to.
    pub agent_id: String,
    /// Mesos' record: info, latest status, statuses, uuid.
    pub operation: v1::Operation,
    /// Order in which the master applied operations.
    pub seq: u64,
}

impl TrackedOperation {
    /// The latest state.
    pub fn state(&self) -> OperationState {
        OperationState::try_from(self.operation.latest_status.state)
            .unwrap_or(OperationState::OperationUnknown)
    }

    /// The framework's id for it, when it gave one.
    pub fn operation_id(&self) -> Option<&str> {
        self.operation.info.id.as_ref().map(|i| i.value.as_str())
    }
}

/// The operations the master tracks, by uuid and by (framework, id).
#[derive(Debug, Default, Clone)]
pub struct Operations {
    by_uuid: BTreeMap<Vec<u8>, TrackedOperation>,
    by_id: BTreeMap<(String, String), Vec<u8>>,
    next_seq: u64,
    /// Operations whose terminal status a framework acknowledged, newest
    /// last (bounded): a retried update of one of them from its agent,
    /// crossing the acknowledgement, must not bring it back.
    acknowledged: std::collections::VecDeque<Vec<u8>>,
    acknowledged_set: std::collections::BTreeSet<Vec<u8>>,
}

/// Acknowledged operations remembered.
const REMEMBERED_ACKNOWLEDGEMENTS: usize = 10_000;

impl Operations {
    /// Every tracked operation.
    pub fn iter(&self) -> impl Iterator<Item = &TrackedOperation> {
        self.by_uuid.values()
    }

    /// Number of tracked operations.
    pub fn len(&self) -> usize {
        self.by_uuid.len()
    }

    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// The operation with this uuid.
    pub fn get(&self, uuid: &[u8]) -> Option<&TrackedOperation> {
        self.by_uuid.get(uuid)
    }

    /// The framework's operation with this id.
    pub fn find(&self, framework_id: &str, operation_id: &str) -> Option<&TrackedOperation> {
        self.by_id
            .get(&(framework_id.to_string(), operation_id.to_string()))
            .and_then(|u| self.by_uuid.get(u))
    }

    fn insert(&mut self, mut op: TrackedOperation) {
        op.seq = self.next_seq;
        self.next_seq += 1;
        let uuid = op.operation.uuid.value.clone();
        if let (Some(fid), Some(id)) = (op.framework_id.clone(), op.operation_id()) {
            self.by_id.insert((fid, id.to_string()), uuid.clone());
        }
        self.by_uuid.insert(uuid, op);
    }

    fn remove(&mut self, uuid: &[u8]) -> Option<TrackedOperation> {
        let op = self.by_uuid.remove(uuid)?;
        if let (Some(fid), Some(id)) = (op.framework_id.clone(), op.operation_id()) {
            let key = (fid, id.to_string());
            if self.by_id.get(&key).is_some_and(|u| u == uuid) {
                self.by_id.remove(&key);
            }
        }
        Some(op)
    }

    fn remember_acknowledged(&mut self, uuid: Vec<u8>) {
        if self.acknowledged_set.insert(uuid.clone()) {
            self.acknowledged.push_back(uuid);
            while self.acknowledged.len() > REMEMBERED_ACKNOWLEDGEMENTS {
                if let Some(old) = self.acknowledged.pop_front() {
                    self.acknowledged_set.remove(&old);
                }
            }
        }
    }

    /// Whether a framework acknowledged this operation's terminal status.
    pub fn was_acknowledged(&self, uuid: &[u8]) -> bool {
        self.acknowledged_set.contains(uuid)
    }

    /// Forgets a removed framework's operations.
    pub fn forget_framework(&mut self, framework_id: &str) {
        let uuids: Vec<Vec<u8>> = self
            .by_uuid
            .iter()
            .filter(|(_, o)| o.framework_id.as_deref() == Some(framework_id))
            .map(|(u, _)| u.clone())
            .collect();
        for u in uuids {
            self.remove(&u);
        }
    }

    /// Operations on `agent_id` still pending there, in the order the
    /// master applied them.
    fn pending_on(&self, agent_id: &str) -> Vec<&TrackedOperation> {
        let mut out: Vec<&TrackedOperation> = self
            .by_uuid
            .values()
            .filter(|o| o.agent_id == agent_id && o.state() == OperationState::OperationPending)
            .collect();
        out.sort_by_key(|o| o.seq);
        out
    }
}

/// Why an operator's operation is refused (mapped to HTTP status in
/// `http.rs` and `legacy.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// Malformed, or about an unknown agent: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Valid but not possible in the current state (not enough free
    /// resources, a volume in use or unknown): 409.
    #[error("{0}")]
    Conflict(String),
}

/// Whether an operation state is terminal.
pub fn is_terminal_operation(state: OperationState) -> bool {
    matches!(
        state,
        OperationState::OperationFinished
            | OperationState::OperationFailed
            | OperationState::OperationError
            | OperationState::OperationDropped
            | OperationState::OperationGoneByOperator
    )
}

/// The name of an operation type in metrics (`reserve`, `grow_volume`).
fn type_metric(ty: OpType, state: OperationState) -> Option<&'static str> {
    use OpType as T;
    use OperationState as S;
    Some(match (ty, state) {
        (T::Reserve, S::OperationFinished) => "master/operations/reserve/finished",
        (T::Reserve, S::OperationFailed) => "master/operations/reserve/failed",
        (T::Reserve, S::OperationError) => "master/operations/reserve/error",
        (T::Unreserve, S::OperationFinished) => "master/operations/unreserve/finished",
        (T::Unreserve, S::OperationFailed) => "master/operations/unreserve/failed",
        (T::Unreserve, S::OperationError) => "master/operations/unreserve/error",
        (T::Create, S::OperationFinished) => "master/operations/create/finished",
        (T::Create, S::OperationFailed) => "master/operations/create/failed",
        (T::Create, S::OperationError) => "master/operations/create/error",
        (T::Destroy, S::OperationFinished) => "master/operations/destroy/finished",
        (T::Destroy, S::OperationFailed) => "master/operations/destroy/failed",
        (T::Destroy, S::OperationError) => "master/operations/destroy/error",
        (T::GrowVolume, S::OperationFinished) => "master/operations/grow_volume/finished",
        (T::GrowVolume, S::OperationFailed) => "master/operations/grow_volume/failed",
        (T::GrowVolume, S::OperationError) => "master/operations/grow_volume/error",
        (T::ShrinkVolume, S::OperationFinished) => "master/operations/shrink_volume/finished",
        (T::ShrinkVolume, S::OperationFailed) => "master/operations/shrink_volume/failed",
        (T::ShrinkVolume, S::OperationError) => "master/operations/shrink_volume/error",
        _ => return None,
    })
}

fn state_metric(state: OperationState) -> Option<&'static str> {
    use OperationState as S;
    Some(match state {
        S::OperationFinished => "master/operations/finished",
        S::OperationFailed => "master/operations/failed",
        S::OperationError => "master/operations/error",
        S::OperationDropped => "master/operations/dropped",
        S::OperationGoneByOperator => "master/operations/gone_by_operator",
        _ => return None,
    })
}

/// The operation's type as Mesos names it (`RESERVE`).
fn type_name(op: &v1::offer::Operation) -> &'static str {
    ops::op_type(op).as_str_name()
}

/// Every resource an operation names (for format checks).
fn operation_resources(op: &v1::offer::Operation) -> Vec<&v1::Resource> {
    let mut out: Vec<&v1::Resource> = Vec::new();
    if let Some(r) = &op.reserve {
        out.extend(r.resources.iter());
        out.extend(r.source.iter());
    }
    if let Some(u) = &op.unreserve {
        out.extend(u.resources.iter());
    }
    if let Some(c) = &op.create {
        out.extend(c.volumes.iter());
    }
    if let Some(d) = &op.destroy {
        out.extend(d.volumes.iter());
    }
    if let Some(g) = &op.grow_volume {
        out.push(&g.volume);
        out.push(&g.addition);
    }
    if let Some(s) = &op.shrink_volume {
        out.push(&s.volume);
    }
    out
}

/// The volumes an operation consumes that must not be in use.
fn consumed_volumes(c: &Conversion) -> Vec<v1::Resource> {
    c.consumed
        .unallocated()
        .as_slice()
        .iter()
        .filter(|r| ops::is_persistent_volume(r))
        .cloned()
        .collect()
}

/// A resource in the format a framework without RESERVATION_REFINEMENT
/// reads.
fn for_framework(rs: &[v1::Resource], refinement: bool) -> Vec<v1::Resource> {
    let mut out = rs.to_vec();
    if !refinement {
        for r in &mut out {
            resources::downgrade(r);
        }
    }
    out
}

fn operation_status(
    state: OperationState,
    operation_id: Option<v1::OperationId>,
    agent_id: &str,
    message: Option<String>,
) -> v1::OperationStatus {
    v1::OperationStatus {
        operation_id,
        state: state as i32,
        message,
        agent_id: Some(v1::AgentId {
            value: agent_id.to_string(),
        }),
        ..Default::default()
    }
}

fn update_operation_event(status: v1::OperationStatus) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::UpdateOperationStatus as i32),
        update_operation_status: Some(scheduler::event::UpdateOperationStatus { status }),
        ..Default::default()
    }
}

/// The principal checks of Mesos for what a framework reserves or
/// creates: a principal set in the operation must be the framework's, and
/// a framework with a principal must put it there.
fn check_principal(
    what: &str,
    framework_principal: Option<&str>,
    given: Option<&str>,
) -> Result<(), String> {
    match (framework_principal, given) {
        (Some(fp), None) => Err(format!(
            "{what} was attempted by principal '{fp}', but there is a resource in the \
             request with no principal set"
        )),
        (fp, Some(p)) if fp != Some(p) => Err(format!(
            "{what} was attempted by {}, which does not match the principal '{p}' \
             of a resource in the request",
            fp.map(|fp| format!("principal '{fp}'"))
                .unwrap_or_else(|| "a framework without a principal".into())
        )),
        _ => Ok(()),
    }
}

impl Master {
    /// An operation of an ACCEPT that converts resources: validated against
    /// the offer and the agent, applied to `remaining` (the pooled offered
    /// resources, so later operations of the same ACCEPT see it), the
    /// agent's total and the allocator, and sent to the agent. An invalid
    /// operation changes nothing; the framework hears of it through
    /// OPERATION_ERROR when the operation has an `id`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept_operation(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        refinement: bool,
        operation: v1::offer::Operation,
        remaining: &mut Resources,
    ) {
        match self.apply_framework_operation(
            framework_id,
            agent_id,
            role,
            refinement,
            &operation,
            remaining,
        ) {
            Ok(uuid) => {
                tracing::info!(
                    framework_id,
                    agent_id,
                    operation = type_name(&operation),
                    id = operation.id.as_ref().map(|i| i.value.as_str()),
                    uuid = %uuid::Uuid::from_slice(&uuid).unwrap_or_default(),
                    "offer operation applied"
                );
            }
            Err(message) => {
                self.counters.inc("master/invalid_operations");
                self.counters.inc("master/operations/error");
                if let Some(m) =
                    type_metric(ops::op_type(&operation), OperationState::OperationError)
                {
                    self.counters.inc(m);
                }
                tracing::info!(
                    framework_id,
                    agent_id,
                    operation = type_name(&operation),
                    error = %message,
                    "invalid offer operation refused"
                );
                if let Some(id) = operation.id.clone() {
                    let status = operation_status(
                        OperationState::OperationError,
                        Some(id),
                        agent_id,
                        Some(message),
                    );
                    self.emit_fw(framework_id, update_operation_event(status));
                }
            }
        }
    }

    /// The conversion operations with an `id` of an ACCEPT refused as a
    /// whole (invalid offers): OPERATION_ERROR each.
    pub(super) fn refuse_accept_operations(
        &mut self,
        framework_id: &str,
        operations: &[v1::offer::Operation],
        message: &str,
    ) {
        for op in operations.iter().filter(|o| ops::is_conversion(o)) {
            if let Some(id) = op.id.clone() {
                self.counters.inc("master/operations/error");
                let mut status = operation_status(
                    OperationState::OperationError,
                    Some(id),
                    "",
                    Some(message.to_string()),
                );
                status.agent_id = None;
                self.emit_fw(framework_id, update_operation_event(status));
            }
        }
    }

    fn apply_framework_operation(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        refinement: bool,
        operation: &v1::offer::Operation,
        remaining: &mut Resources,
    ) -> Result<Vec<u8>, String> {
        let what = type_name(operation);
        let ty = ops::op_type(operation);
        let Some(fw) = self.frameworks.get(framework_id) else {
            return Err("unknown framework".into());
        };
        let principal = fw.info.principal.clone();
        if !refinement
            && operation_resources(operation)
                .iter()
                .any(|r| r.reservations.len() > 1)
        {
            return Err(format!(
                "Invalid {what}: resources with refined reservations require the \
                 RESERVATION_REFINEMENT capability"
            ));
        }
        let c = ops::conversion(operation)?;
        // The framework's view: everything allocated to the offer's role.
        let consumed = c.consumed.unallocated();
        let converted = c.converted.unallocated();
        match ty {
            OpType::Reserve => {
                for r in converted.as_slice() {
                    let reserved_to = resources::reservation_role(r);
                    if reserved_to != role {
                        return Err(format!(
                            "Invalid RESERVE: a reserve operation was attempted for a resource \
                             with role '{reserved_to}', but the resource was allocated to \
                             role '{role}'"
                        ));
                    }
                    let given = r.reservations.last().and_then(|x| x.principal.as_deref());
                    check_principal(
                        "Invalid RESERVE: a reserve operation",
                        principal.as_deref(),
                        given,
                    )?;
                }
            }
            OpType::Create => {
                for v in converted.as_slice() {
                    let given = v
                        .disk
                        .as_ref()
                        .and_then(|d| d.persistence.as_ref())
                        .and_then(|p| p.principal.as_deref());
                    check_principal(
                        "Invalid CREATE: a create volume operation",
                        principal.as_deref(),
                        given,
                    )?;
                }
            }
            _ => {}
        }
        self.check_against_agent(agent_id, ty, &c)?;
        let allocated = Conversion {
            consumed: consumed.allocated_to(role),
            converted: converted.allocated_to(role),
        };
        let new_remaining = ops::apply_conversion(remaining, &allocated, "offered")
            .map_err(|e| format!("Invalid {what}: {e}"))?;
        let agent_total = self
            .agents
            .get(agent_id)
            .map(|a| a.total.clone())
            .unwrap_or_default();
        let unallocated = Conversion {
            consumed: consumed.clone(),
            converted: converted.clone(),
        };
        let new_total = ops::apply_conversion(&agent_total, &unallocated, "agent's")
            .map_err(|e| format!("Invalid {what}: {e}"))?;
        self.allocator
            .update_allocation(
                framework_id,
                agent_id,
                &allocated.consumed,
                &allocated.converted,
            )
            .map_err(|e| format!("Invalid {what}: {e}"))?;
        *remaining = new_remaining;
        Ok(self.commit_operation(Some(framework_id), agent_id, operation, new_total))
    }

    /// Checks that need the agent: unique persistence ids for CREATE,
    /// volumes known and not in use for DESTROY, GROW and SHRINK.
    fn check_against_agent(
        &self,
        agent_id: &str,
        ty: OpType,
        c: &Conversion,
    ) -> Result<(), String> {
        let Some(agent) = self.agents.get(agent_id) else {
            return Err(format!("agent {agent_id} is not registered"));
        };
        match ty {
            OpType::Create => {
                ops::check_new_volumes(&agent.total, &c.converted.unallocated())?;
            }
            OpType::Destroy | OpType::GrowVolume | OpType::ShrinkVolume => {
                let what = OpType::as_str_name(&ty);
                let used = agent.used_total().unallocated();
                for v in consumed_volumes(c) {
                    let id = ops::persistence_id(&v).unwrap_or_default();
                    if !agent.total.contains_one(&v) {
                        return Err(format!(
                            "Invalid {what}: persistent volume '{id}' not found on agent {agent_id}"
                        ));
                    }
                    if used.contains_one(&v) {
                        return Err(format!(
                            "Invalid {what}: persistent volume '{id}' is in use by a task"
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Records an applied operation, sets the agent's new total and sends
    /// the operation to the agent. Returns its uuid.
    fn commit_operation(
        &mut self,
        framework_id: Option<&str>,
        agent_id: &str,
        operation: &v1::offer::Operation,
        new_total: Resources,
    ) -> Vec<u8> {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.total = new_total;
        }
        let uuid = corral_api::ids::new_uuid_bytes();
        let framework = framework_id.map(|f| v1::FrameworkId {
            value: f.to_string(),
        });
        let status = operation_status(
            OperationState::OperationPending,
            operation.id.clone(),
            agent_id,
            None,
        );
        self.operations.insert(TrackedOperation {
            framework_id: framework_id.map(str::to_string),
            agent_id: agent_id.to_string(),
            operation: v1::Operation {
                framework_id: framework.clone(),
                agent_id: Some(v1::AgentId {
                    value: agent_id.to_string(),
                }),
                info: operation.clone(),
                latest_status: status.clone(),
                statuses: vec![status],
                uuid: v1::Uuid {
                    value: uuid.clone(),
                },
            },
            seq: 0,
        });
        self.counters.inc("master/operations/total");
        self.emit_agent(
            agent_id,
            ToAgent::ApplyOperation(internal::ApplyOperation {
                framework_id: framework,
                info: operation.clone(),
                operation_uuid: uuid.clone(),
            }),
        );
        if let Some(view) = self.agent_view(agent_id) {
            // Mesos has no AGENT_UPDATED; subscribers see the new total in
            // an AGENT_ADDED for the same agent, as on re-registration.
            self.emit_op(v1::master::Event {
                r#type: Some(v1::master::event::Type::AgentAdded as i32),
                agent_added: Some(v1::master::event::AgentAdded { agent: view }),
                ..Default::default()
            });
        }
        uuid
    }

    /// An operator's RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES,
    /// DESTROY_VOLUMES, GROW_VOLUME or SHRINK_VOLUME (and the legacy
    /// endpoints): the resources must be unallocated on the agent;
    /// outstanding offers on the agent are rescinded when that frees them,
    /// as Mesos does. Nothing changes when it is refused.
    ///
    /// No authentication is configured, so a principal the operator puts
    /// in a reservation or a volume is taken as given.
    pub fn operator_operation(
        &mut self,
        agent_id: &str,
        operation: v1::offer::Operation,
    ) -> Result<(), OperatorError> {
        let what = type_name(&operation);
        let Some(agent) = self.agents.get(agent_id) else {
            return Err(OperatorError::BadRequest(format!(
                "No agent found with specified ID '{agent_id}'"
            )));
        };
        if !agent.connected {
            return Err(OperatorError::Conflict(format!(
                "Agent {agent_id} is disconnected; try again once it is back"
            )));
        }
        if operation_resources(&operation)
            .iter()
            .any(|r| r.allocation_info.is_some())
        {
            return Err(OperatorError::BadRequest(format!(
                "Invalid {what}: the operator API only applies operations to unallocated \
                 resources; remove 'allocation_info'"
            )));
        }
        let ty = ops::op_type(&operation);
        let c = ops::conversion(&operation).map_err(OperatorError::BadRequest)?;
        let c = Conversion {
            consumed: c.consumed.unallocated(),
            converted: c.converted.unallocated(),
        };
        self.check_against_agent(agent_id, ty, &c)
            .map_err(OperatorError::Conflict)?;
        let total = agent.total.clone();
        let new_total = ops::apply_conversion(&total, &c, "agent's")
            .map_err(|e| OperatorError::Conflict(format!("Invalid {what}: {e}")))?;
        let free = self.allocator.available(agent_id);
        if !ops::holds(&free, &c.consumed) {
            let mut with_offers = free.clone();
            with_offers.add_all(&agent.offered.unallocated());
            if !ops::holds(&with_offers, &c.consumed) {
                return Err(OperatorError::Conflict(format!(
                    "Invalid {what}: the unallocated resources {} of agent {agent_id} do not \
                     contain {} (the rest is in use by tasks)",
                    ops::describe(&with_offers),
                    ops::describe(&c.consumed)
                )));
            }
            // What is needed is offered: the offers go first.
            self.rescind_agent_offers(agent_id);
        }
        self.allocator
            .update_available(agent_id, &c.consumed, &c.converted)
            .map_err(|e| OperatorError::Conflict(format!("Invalid {what}: {e}")))?;
        let uuid = self.commit_operation(None, agent_id, &operation, new_total);
        tracing::info!(
            agent_id,
            operation = what,
            uuid = %uuid::Uuid::from_slice(&uuid).unwrap_or_default(),
            "operator operation applied"
        );
        Ok(())
    }

    /// An agent's OperationStatusUpdate: the status is recorded and
    /// forwarded to the framework (for operations with an `id`); a failed
    /// operation resyncs the master's view of the agent from the total it
    /// reports.
    pub(super) fn operation_update(&mut self, agent_id: &str, u: internal::OperationStatusUpdate) {
        let mut status = u.status;
        status.agent_id = Some(v1::AgentId {
            value: agent_id.to_string(),
        });
        let state =
            OperationState::try_from(status.state).unwrap_or(OperationState::OperationUnknown);
        let uuid = u.operation_uuid;
        let framework_id = u.framework_id.map(|f| f.value);
        if self.operations.was_acknowledged(&uuid) {
            // The agent retried this update before our acknowledgement
            // reached it: acknowledge again instead of tracking it anew.
            if let Some(status_uuid) = status.uuid.as_ref().map(|u| u.value.clone()) {
                self.emit_agent(
                    agent_id,
                    ToAgent::AcknowledgeOperation(internal::AcknowledgeOperationStatus {
                        framework_id: framework_id.clone().map(|value| v1::FrameworkId { value }),
                        operation_uuid: uuid.clone(),
                        status_uuid,
                    }),
                );
            }
            return;
        }
        if self.operations.get(&uuid).is_none() {
            // Not applied by this master (e.g. before a failover, with the
            // agent not listing it when it registered): learned now.
            self.operations.insert(TrackedOperation {
                framework_id: framework_id.clone(),
                agent_id: agent_id.to_string(),
                operation: v1::Operation {
                    framework_id: framework_id.clone().map(|value| v1::FrameworkId { value }),
                    agent_id: status.agent_id.clone(),
                    info: v1::offer::Operation {
                        id: status.operation_id.clone(),
                        ..Default::default()
                    },
                    latest_status: status.clone(),
                    statuses: Vec::new(),
                    uuid: v1::Uuid {
                        value: uuid.clone(),
                    },
                },
                seq: 0,
            });
        }
        let Some(tracked) = self.operations.by_uuid.get_mut(&uuid) else {
            return;
        };
        let was_terminal = is_terminal_operation(tracked.state());
        if status.operation_id.is_none() {
            status.operation_id = tracked.operation.info.id.clone();
        }
        tracked.operation.latest_status = status.clone();
        tracked.operation.statuses.push(status.clone());
        if tracked.operation.statuses.len() > MAX_STATUSES {
            tracked.operation.statuses.remove(1);
        }
        let tracked = tracked.clone();
        if !was_terminal {
            if let Some(m) = state_metric(state) {
                self.counters.inc(m);
            }
            if let Some(m) = type_metric(ops::op_type(&tracked.operation.info), state) {
                self.counters.inc(m);
            }
        }
        tracing::info!(
            agent_id,
            uuid = %uuid::Uuid::from_slice(&uuid).unwrap_or_default(),
            state = state.as_str_name(),
            message = status.message.as_deref().unwrap_or(""),
            "operation status update"
        );
        match state {
            OperationState::OperationFailed
            | OperationState::OperationError
            | OperationState::OperationDropped => {
                self.resync_agent(agent_id, &u.total_resources);
            }
            // Nothing else in flight: the agent's total must be ours.
            OperationState::OperationFinished
                if self.operations.pending_on(agent_id).is_empty() =>
            {
                self.resync_if_different(agent_id, &u.total_resources);
            }
            _ => {}
        }
        let terminal = is_terminal_operation(state);
        let feedback = tracked.framework_id.is_some() && tracked.operation_id().is_some();
        if !feedback {
            if terminal {
                self.operations.remove(&uuid);
            }
            return;
        }
        let fid = tracked.framework_id.clone().unwrap_or_default();
        let Some(fw) = self.frameworks.get(&fid) else {
            if !self.completed_frameworks.iter().any(|f| f.id == fid) {
                // Not (yet) known here, e.g. after a failover before it
                // re-subscribes: kept, and sent when it subscribes.
                return;
            }
            // The framework was removed: acknowledge so the agent forgets it.
            if let Some(status_uuid) = status.uuid.as_ref().map(|u| u.value.clone()) {
                self.emit_agent(
                    agent_id,
                    ToAgent::AcknowledgeOperation(internal::AcknowledgeOperationStatus {
                        framework_id: Some(v1::FrameworkId { value: fid }),
                        operation_uuid: uuid.clone(),
                        status_uuid,
                    }),
                );
            }
            self.operations.remove(&uuid);
            return;
        };
        let refinement = has_capability(&fw.info, FwCap::ReservationRefinement);
        let mut forwarded = status;
        forwarded.converted_resources = for_framework(&forwarded.converted_resources, refinement);
        self.emit_fw(&fid, update_operation_event(forwarded));
    }

    /// Sends a (re-)subscribed framework the agents' statuses of its
    /// operations it has not acknowledged: those sent while it was away
    /// were lost with its stream.
    pub(super) fn resend_operation_updates(&mut self, framework_id: &str) {
        let refinement = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| has_capability(&f.info, FwCap::ReservationRefinement));
        let mut unacknowledged: Vec<&TrackedOperation> = self
            .operations
            .iter()
            .filter(|o| {
                o.framework_id.as_deref() == Some(framework_id)
                    && o.operation_id().is_some()
                    && o.operation.latest_status.uuid.is_some()
            })
            .collect();
        unacknowledged.sort_by_key(|o| o.seq);
        let statuses: Vec<v1::OperationStatus> = unacknowledged
            .into_iter()
            .map(|o| {
                let mut s = o.operation.latest_status.clone();
                if s.operation_id.is_none() {
                    s.operation_id = o.operation.info.id.clone();
                }
                s.converted_resources = for_framework(&s.converted_resources, refinement);
                s
            })
            .collect();
        for s in statuses {
            self.emit_fw(framework_id, update_operation_event(s));
        }
    }

    /// Replaces the master's view of an agent's total with what the agent
    /// reports, keeping the operations still in flight to it applied
    /// speculatively; outstanding offers on it are rescinded.
    fn resync_agent(&mut self, agent_id: &str, reported: &[v1::Resource]) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let reported = if reported.is_empty() {
            agent.info.resources.clone()
        } else {
            reported.to_vec()
        };
        let mut total = match upgraded_total(&reported) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(agent_id, error = %e, "agent reported an invalid total; keeping the master's view");
                return;
            }
        };
        let pending: Vec<v1::offer::Operation> = self
            .operations
            .pending_on(agent_id)
            .into_iter()
            .map(|o| o.operation.info.clone())
            .collect();
        for op in pending {
            match ops::apply(&total, &op) {
                Ok(t) => total = t,
                Err(e) => {
                    tracing::warn!(agent_id, error = %e, "an operation in flight no longer applies to the agent's total")
                }
            }
        }
        self.rescind_agent_offers(agent_id);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.total = total.clone();
        }
        self.allocator.update_agent_total(agent_id, total);
        tracing::info!(agent_id, "agent's total resynced from the agent");
    }

    fn resync_if_different(&mut self, agent_id: &str, reported: &[v1::Resource]) {
        if reported.is_empty() {
            return;
        }
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let Ok(total) = upgraded_total(reported) else {
            return;
        };
        if total.contains(&agent.total) && agent.total.contains(&total) {
            return;
        }
        tracing::warn!(
            agent_id,
            master = %ops::describe(&agent.total),
            agent = %ops::describe(&total),
            "the master's view of the agent's total drifted; taking the agent's"
        );
        self.resync_agent(agent_id, reported);
    }

    /// Operations a (re-)registering agent reports (their updates are not
    /// yet acknowledged): learned, so a new leader can forward their
    /// updates, answer reconciliation and pass acknowledgements on.
    /// Operations this master sent the agent that it does not report were
    /// lost with its previous session: OPERATION_DROPPED.
    pub(super) fn learn_agent_operations(&mut self, agent_id: &str, reported: Vec<v1::Operation>) {
        let reported_uuids: BTreeSet<Vec<u8>> =
            reported.iter().map(|o| o.uuid.value.clone()).collect();
        let dropped: Vec<Vec<u8>> = self
            .operations
            .by_uuid
            .iter()
            .filter(|(u, o)| {
                o.agent_id == agent_id
                    && o.state() == OperationState::OperationPending
                    && !reported_uuids.contains(*u)
            })
            .map(|(u, _)| u.clone())
            .collect();
        for uuid in dropped {
            let Some(o) = self.operations.remove(&uuid) else {
                continue;
            };
            self.counters.inc("master/operations/dropped");
            if let (Some(fid), Some(id)) = (o.framework_id.clone(), o.operation.info.id.clone()) {
                if self.frameworks.contains_key(&fid) {
                    let status = operation_status(
                        OperationState::OperationDropped,
                        Some(id),
                        agent_id,
                        Some("The agent re-registered without the operation".into()),
                    );
                    self.emit_fw(&fid, update_operation_event(status));
                }
            }
        }
        for mut op in reported {
            let uuid = op.uuid.value.clone();
            if uuid.is_empty() || self.operations.get(&uuid).is_some() {
                continue;
            }
            op.agent_id = Some(v1::AgentId {
                value: agent_id.to_string(),
            });
            self.operations.insert(TrackedOperation {
                framework_id: op.framework_id.as_ref().map(|f| f.value.clone()),
                agent_id: agent_id.to_string(),
                operation: op,
                seq: 0,
            });
        }
    }

    /// ACKNOWLEDGE_OPERATION_STATUS: passed on to the agent; a terminal
    /// status acknowledged ends the master's tracking of the operation.
    pub(super) fn acknowledge_operation(
        &mut self,
        framework_id: &str,
        ack: scheduler::call::AcknowledgeOperationStatus,
    ) -> Result<(), CallError> {
        if ack.uuid.len() != 16 {
            return Err(CallError::BadRequest(
                "'acknowledge_operation_status.uuid' must be a 16-byte UUID".into(),
            ));
        }
        self.counters
            .inc("master/messages_operation_status_update_acknowledgement");
        let Some(tracked) = self
            .operations
            .find(framework_id, &ack.operation_id.value)
            .cloned()
        else {
            tracing::info!(framework_id, operation_id = %ack.operation_id.value, "acknowledgement of an unknown operation ignored");
            return Ok(());
        };
        let uuid = tracked.operation.uuid.value.clone();
        if self.agents.contains_key(&tracked.agent_id) {
            self.emit_agent(
                &tracked.agent_id,
                ToAgent::AcknowledgeOperation(internal::AcknowledgeOperationStatus {
                    framework_id: Some(v1::FrameworkId {
                        value: framework_id.to_string(),
                    }),
                    operation_uuid: uuid.clone(),
                    status_uuid: ack.uuid.clone(),
                }),
            );
        }
        let latest = &tracked.operation.latest_status;
        if is_terminal_operation(tracked.state())
            && latest.uuid.as_ref().is_some_and(|u| u.value == ack.uuid)
        {
            self.operations.remove(&uuid);
            self.operations.remember_acknowledged(uuid);
        }
        Ok(())
    }

    /// RECONCILE_OPERATIONS: an UPDATE_OPERATION_STATUS for each listed
    /// operation (all the framework's known ones when the list is empty),
    /// its latest known state, or what the agent's state implies.
    pub(super) fn reconcile_operations(
        &mut self,
        framework_id: &str,
        r: scheduler::call::ReconcileOperations,
    ) {
        self.counters.inc("master/messages_reconcile_operations");
        let refinement = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| has_capability(&f.info, FwCap::ReservationRefinement));
        let mut statuses = Vec::new();
        if r.operations.is_empty() {
            let mut known: Vec<&TrackedOperation> = self
                .operations
                .iter()
                .filter(|o| {
                    o.framework_id.as_deref() == Some(framework_id) && o.operation_id().is_some()
                })
                .collect();
            known.sort_by_key(|o| o.seq);
            for o in known {
                statuses.push(self.reconciled(o));
            }
        } else {
            for wanted in &r.operations {
                let status = match self
                    .operations
                    .find(framework_id, &wanted.operation_id.value)
                {
                    Some(o) => self.reconciled(o),
                    None => {
                        let agent = wanted.agent_id.as_ref().map(|a| a.value.as_str());
                        let state = agent
                            .and_then(|a| self.agent_operation_state(a))
                            .unwrap_or(OperationState::OperationUnknown);
                        operation_status(
                            state,
                            Some(wanted.operation_id.clone()),
                            agent.unwrap_or(""),
                            Some("Reconciliation: the operation is unknown".into()),
                        )
                    }
                };
                statuses.push(status);
            }
        }
        for mut s in statuses {
            if s.agent_id.as_ref().is_some_and(|a| a.value.is_empty()) {
                s.agent_id = None;
            }
            s.converted_resources = for_framework(&s.converted_resources, refinement);
            self.emit_fw(framework_id, update_operation_event(s));
        }
    }

    /// The state an operation on `agent_id` is in by the agent's state
    /// alone: unreachable, gone or recovering after a failover; `None` for
    /// a registered (or unknown) agent.
    fn agent_operation_state(&self, agent_id: &str) -> Option<OperationState> {
        if self.gone.contains(agent_id) {
            Some(OperationState::OperationGoneByOperator)
        } else if self.unreachable.contains_key(agent_id) {
            Some(OperationState::OperationUnreachable)
        } else if self.recovering.contains_key(agent_id) {
            Some(OperationState::OperationRecovering)
        } else {
            None
        }
    }

    fn reconciled(&self, o: &TrackedOperation) -> v1::OperationStatus {
        let mut s = o.operation.latest_status.clone();
        // Reconciliation answers need no acknowledgement.
        s.uuid = None;
        if s.operation_id.is_none() {
            s.operation_id = o.operation.info.id.clone();
        }
        s.agent_id = Some(v1::AgentId {
            value: o.agent_id.clone(),
        });
        if let Some(state) = self.agent_operation_state(&o.agent_id) {
            if !is_terminal_operation(o.state()) {
                s.state = state as i32;
                s.message = Some("Reconciliation: the agent is not registered".into());
            }
        }
        s
    }

    /// GET_OPERATIONS: the operations the master tracks.
    pub fn get_operations(&self) -> v1::master::response::GetOperations {
        let mut all: Vec<&TrackedOperation> = self.operations.iter().collect();
        all.sort_by_key(|o| o.seq);
        v1::master::response::GetOperations {
            operations: all.into_iter().map(|o| o.operation.clone()).collect(),
        }
    }

    /// Number of operations pending on agents (a gauge for metrics).
    pub fn pending_operations(&self) -> usize {
        self.operations
            .iter()
            .filter(|o| o.state() == OperationState::OperationPending)
            .count()
    }
}

/// An agent's total in the post-refinement format, validated.
pub(super) fn upgraded_total(rs: &[v1::Resource]) -> Result<Resources, String> {
    let mut upgraded = rs.to_vec();
    for r in &mut upgraded {
        resources::upgrade(r);
        r.allocation_info = None;
    }
    Resources::try_from_vec(&upgraded)
}

//! The registry's contents and the typed operations on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use corral_api::v1;
use corral_api::v1::maintenance::Schedule;
use corral_api::v1::quota::QuotaConfig;

use super::RegistryError;

/// An agent that became unreachable, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreachableAgent {
    /// The agent as it was last admitted.
    pub info: v1::AgentInfo,
    /// When it became unreachable.
    pub since: v1::TimeInfo,
}

/// Everything that must outlive a master process.
///
/// Invariants (kept by [`RegistryState::apply`], checked when a stored state
/// is loaded): an agent id is in at most one of `agents`, `unreachable` and
/// `gone`; map keys equal the ids/roles of their values; every weight and
/// quota is valid; no quota entry is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryState {
    /// Admitted agents by agent id.
    pub agents: BTreeMap<String, v1::AgentInfo>,
    /// Unreachable agents by agent id.
    pub unreachable: BTreeMap<String, UnreachableAgent>,
    /// Agents marked gone by agent id, with the time they were marked.
    pub gone: BTreeMap<String, v1::TimeInfo>,
    /// Role weights (roles without an entry weigh 1.0).
    pub weights: BTreeMap<String, f64>,
    /// Quota configurations by role (roles without an entry have no quota).
    pub quotas: BTreeMap<String, QuotaConfig>,
    /// The maintenance schedules, stored as given.
    pub schedules: Vec<Schedule>,
}

/// One mutation of the [`RegistryState`].
///
/// Agent operations are idempotent where that is safe, so a write whose
/// outcome was unknown can be retried after a recovery.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Admits an agent, or updates an admitted agent's info, or brings an
    /// unreachable agent back (it is no longer unreachable). Refused for a
    /// gone agent ([`RegistryError::AgentGone`]) and for an info without an
    /// agent id or hostname.
    AdmitAgent(v1::AgentInfo),
    /// Moves an admitted agent to the unreachable agents. A no-op for an
    /// agent already unreachable (the first time is kept); refused for an
    /// unknown or gone agent.
    MarkUnreachable {
        /// The agent's id.
        agent_id: String,
        /// When it became unreachable.
        since: v1::TimeInfo,
    },
    /// Marks an admitted or unreachable agent gone; it never comes back.
    /// A no-op for an agent already gone; refused for an unknown agent.
    MarkGone {
        /// The agent's id.
        agent_id: String,
        /// When it was marked gone.
        since: v1::TimeInfo,
    },
    /// Forgets an agent wherever it is (admitted, unreachable or gone), e.g.
    /// an agent that shut down cleanly or an old entry being pruned. A no-op
    /// for an unknown agent.
    RemoveAgent {
        /// The agent's id.
        agent_id: String,
    },
    /// Sets role weights. Each weight must be finite and positive, each role
    /// valid, no role twice in one operation.
    UpdateWeights(Vec<(String, f64)>),
    /// Sets quota per role (Mesos' `UPDATE_QUOTA`). A config with empty
    /// guarantees and limits removes the role's quota. Roles must be valid,
    /// not `*`, not repeated; scalars finite and non-negative; each
    /// guarantee at most its limit.
    UpdateQuota(Vec<QuotaConfig>),
    /// Replaces the maintenance schedules (stored as given).
    UpdateSchedule(Vec<Schedule>),
}

impl Operation {
    /// The operation's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AdmitAgent(_) => "admit_agent",
            Self::MarkUnreachable { .. } => "mark_unreachable",
            Self::MarkGone { .. } => "mark_gone",
            Self::RemoveAgent { .. } => "remove_agent",
            Self::UpdateWeights(_) => "update_weights",
            Self::UpdateQuota(_) => "update_quota",
            Self::UpdateSchedule(_) => "update_schedule",
        }
    }
}

fn invalid(op: &'static str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        op,
        reason: reason.into(),
    }
}

impl RegistryState {
    /// Applies one operation, or refuses it without changing anything.
    pub fn apply(&mut self, op: &Operation) -> Result<(), RegistryError> {
        let name = op.name();
        match op {
            Operation::AdmitAgent(info) => {
                let id = agent_info_id(info).map_err(|reason| invalid(name, reason))?;
                if self.gone.contains_key(id) {
                    return Err(RegistryError::AgentGone {
                        agent_id: id.to_owned(),
                    });
                }
                let id = id.to_owned();
                self.unreachable.remove(&id);
                self.agents.insert(id, info.clone());
            }
            Operation::MarkUnreachable { agent_id, since } => {
                if self.unreachable.contains_key(agent_id) {
                    return Ok(());
                }
                if self.gone.contains_key(agent_id) {
                    return Err(RegistryError::AgentGone {
                        agent_id: agent_id.clone(),
                    });
                }
                let info =
                    self.agents
                        .remove(agent_id)
                        .ok_or_else(|| RegistryError::UnknownAgent {
                            agent_id: agent_id.clone(),
                        })?;
                self.unreachable.insert(
                    agent_id.clone(),
                    UnreachableAgent {
                        info,
                        since: *since,
                    },
                );
            }
            Operation::MarkGone { agent_id, since } => {
                if self.gone.contains_key(agent_id) {
                    return Ok(());
                }
                let admitted = self.agents.remove(agent_id).is_some();
                let unreachable = self.unreachable.remove(agent_id).is_some();
                if !admitted && !unreachable {
                    return Err(RegistryError::UnknownAgent {
                        agent_id: agent_id.clone(),
                    });
                }
                self.gone.insert(agent_id.clone(), *since);
            }
            Operation::RemoveAgent { agent_id } => {
                self.agents.remove(agent_id);
                self.unreachable.remove(agent_id);
                self.gone.remove(agent_id);
            }
            Operation::UpdateWeights(weights) => {
                let mut seen = BTreeSet::new();
                for (role, weight) in weights {
                    validate_weight(role, *weight).map_err(|reason| invalid(name, reason))?;
                    if !seen.insert(role.as_str()) {
                        return Err(invalid(name, format!("role '{role}' appears twice")));
                    }
                }
                for (role, weight) in weights {
                    self.weights.insert(role.clone(), *weight);
                }
            }
            Operation::UpdateQuota(configs) => {
                let mut seen = BTreeSet::new();
                for config in configs {
                    validate_quota(config).map_err(|reason| invalid(name, reason))?;
                    if !seen.insert(config.role.as_str()) {
                        return Err(invalid(
                            name,
                            format!("role '{}' appears twice", config.role),
                        ));
                    }
                }
                for config in configs {
                    if config.guarantees.is_empty() && config.limits.is_empty() {
                        self.quotas.remove(&config.role);
                    } else {
                        self.quotas.insert(config.role.clone(), config.clone());
                    }
                }
            }
            Operation::UpdateSchedule(schedules) => {
                self.schedules = schedules.clone();
            }
        }
        Ok(())
    }

    /// Applies `ops` in order, all or nothing: on the first refusal the state
    /// is left as it was and the error returned.
    pub fn apply_all(&mut self, ops: &[Operation]) -> Result<(), RegistryError> {
        let mut next = self.clone();
        for (index, op) in ops.iter().enumerate() {
            if let Err(error) = next.apply(op) {
                tracing::debug!(index, op = op.name(), %error, "registry operation refused");
                return Err(error);
            }
        }
        *self = next;
        Ok(())
    }

    /// Checks the invariants of a state read from storage.
    pub fn validate(&self) -> Result<(), String> {
        for (id, info) in &self.agents {
            let found = agent_info_id(info).map_err(|e| format!("admitted agent {id}: {e}"))?;
            if found != id {
                return Err(format!("admitted agent {id} carries id {found}"));
            }
        }
        for (id, agent) in &self.unreachable {
            let found =
                agent_info_id(&agent.info).map_err(|e| format!("unreachable agent {id}: {e}"))?;
            if found != id {
                return Err(format!("unreachable agent {id} carries id {found}"));
            }
            if self.agents.contains_key(id) {
                return Err(format!("agent {id} is both admitted and unreachable"));
            }
        }
        for id in self.gone.keys() {
            if id.is_empty() {
                return Err("a gone agent has an empty id".into());
            }
            if self.agents.contains_key(id) || self.unreachable.contains_key(id) {
                return Err(format!(
                    "agent {id} is gone but also admitted or unreachable"
                ));
            }
        }
        for (role, weight) in &self.weights {
            validate_weight(role, *weight)?;
        }
        for (role, config) in &self.quotas {
            if &config.role != role {
                return Err(format!("quota of role {role} names role {}", config.role));
            }
            if config.guarantees.is_empty() && config.limits.is_empty() {
                return Err(format!("quota of role {role} is empty"));
            }
            validate_quota(config)?;
        }
        Ok(())
    }
}

/// The agent id of an admitted agent's info, which must have an id and a
/// hostname.
fn agent_info_id(info: &v1::AgentInfo) -> Result<&str, String> {
    let id = info.id.as_ref().map(|id| id.value.as_str()).unwrap_or("");
    if id.is_empty() {
        return Err("agent info has no agent id".into());
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(format!("agent id {id:?} contains control characters"));
    }
    if info.hostname.is_empty() {
        return Err(format!("agent {id} has no hostname"));
    }
    Ok(id)
}

fn validate_weight(role: &str, weight: f64) -> Result<(), String> {
    corral_api::roles::validate_role(role)?;
    if !weight.is_finite() || weight <= 0.0 {
        return Err(format!(
            "weight of role '{role}' must be finite and positive, got {weight}"
        ));
    }
    Ok(())
}

fn validate_quota(config: &QuotaConfig) -> Result<(), String> {
    let role = &config.role;
    corral_api::roles::validate_role(role)?;
    if role == "*" {
        return Err("quota cannot be set for role '*'".into());
    }
    validate_scalars(role, "guarantee", &config.guarantees)?;
    validate_scalars(role, "limit", &config.limits)?;
    for (name, guarantee) in &config.guarantees {
        if let Some(limit) = config.limits.get(name) {
            if guarantee.value > limit.value {
                return Err(format!(
                    "role '{role}': guarantee {} of '{name}' exceeds its limit {}",
                    guarantee.value, limit.value
                ));
            }
        }
    }
    Ok(())
}

fn validate_scalars(
    role: &str,
    kind: &str,
    scalars: &HashMap<String, v1::value::Scalar>,
) -> Result<(), String> {
    for (name, scalar) in scalars {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("role '{role}': invalid resource name {name:?}"));
        }
        if !scalar.value.is_finite() || scalar.value < 0.0 {
            return Err(format!(
                "role '{role}': {kind} of '{name}' must be finite and non-negative, got {}",
                scalar.value
            ));
        }
    }
    Ok(())
}

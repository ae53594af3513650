//! The operator's agent calls of Mesos 1.9: DEACTIVATE_AGENT (stop offering
//! an agent's resources), REACTIVATE_AGENT, and DRAIN_AGENT (deactivate,
//! then kill every task on it with at most `max_grace_period` of grace;
//! the agent is DRAINED once no task of it is left — terminal updates
//! acknowledged — and, with `mark_gone`, then marked gone).
//!
//! Not yet kept in the registry: a master that fails over forgets both
//! (the agent is offered again by the new leader).

use super::*;

/// Why an agent call is refused (HTTP status in `http/operator.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentCallError {
    /// No such registered agent.
    #[error("Agent {0} is not registered")]
    UnknownAgent(String),
    /// The call does not fit the agent's state.
    #[error("{0}")]
    Conflict(String),
}

impl Master {
    fn registered_agent(&mut self, agent_id: &str) -> Result<&mut Agent, AgentCallError> {
        self.agents
            .get_mut(agent_id)
            .ok_or_else(|| AgentCallError::UnknownAgent(agent_id.to_string()))
    }

    /// DEACTIVATE_AGENT: no more offers of the agent; outstanding ones are
    /// rescinded. Its tasks keep running. Idempotent.
    pub fn deactivate_agent(&mut self, agent_id: &str) -> Result<(), AgentCallError> {
        let agent = self.registered_agent(agent_id)?;
        if !agent.deactivated {
            agent.deactivated = true;
            self.allocator.set_agent_active(agent_id, false);
            self.rescind_agent_offers(agent_id);
            tracing::info!(agent_id, "agent deactivated by the operator");
        }
        Ok(())
    }

    /// REACTIVATE_AGENT: offers of the agent resume. Refused while it is
    /// still DRAINING (its tasks are being killed); a DRAINED agent's drain
    /// is over once it is reactivated.
    pub fn reactivate_agent(&mut self, agent_id: &str) -> Result<(), AgentCallError> {
        let agent = self.registered_agent(agent_id)?;
        if !agent.deactivated {
            return Err(AgentCallError::Conflict(format!(
                "Agent {agent_id} is not deactivated"
            )));
        }
        if agent
            .drain
            .as_ref()
            .is_some_and(|d| d.state == v1::DrainState::Draining as i32)
        {
            return Err(AgentCallError::Conflict(format!(
                "Agent {agent_id} is still draining; it can be reactivated once DRAINED"
            )));
        }
        agent.deactivated = false;
        agent.drain = None;
        let connected = agent.connected;
        if connected {
            self.allocator.set_agent_active(agent_id, true);
        }
        tracing::info!(agent_id, "agent reactivated by the operator");
        Ok(())
    }

    /// DRAIN_AGENT: deactivates the agent and kills every task on it, each
    /// with its own kill policy's grace period cut down to
    /// `max_grace_period` (when given). Draining a draining agent again
    /// takes the new configuration and sends the kills again.
    pub fn drain_agent(
        &mut self,
        agent_id: &str,
        max_grace_period: Option<Duration>,
        mark_gone: bool,
        now: Clock,
    ) -> Result<(), AgentCallError> {
        self.deactivate_agent(agent_id)?;
        let config = v1::DrainConfig {
            max_grace_period: max_grace_period.map(|d| v1::DurationInfo {
                nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            }),
            mark_gone: Some(mark_gone),
        };
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.drain = Some(v1::DrainInfo {
                state: v1::DrainState::Draining as i32,
                config,
            });
        }
        self.draining.insert(agent_id.to_string());
        let mut kills = Vec::new();
        for f in self.frameworks.values() {
            for t in f.tasks.values() {
                if t.agent_id.value == agent_id && !is_terminal(t.state) {
                    kills.push((f.id.clone(), t.task_id.clone(), t.kill_policy));
                }
            }
        }
        tracing::info!(agent_id, tasks = kills.len(), mark_gone, "draining agent");
        for (framework_id, task_id, policy) in kills {
            let kill_policy = capped_kill_policy(policy, max_grace_period);
            self.emit_agent(
                agent_id,
                ToAgent::KillTask(internal::KillTask {
                    framework_id: v1::FrameworkId {
                        value: framework_id,
                    },
                    task_id,
                    kill_policy,
                }),
            );
        }
        self.drain_progress(now);
        Ok(())
    }

    /// Moves draining agents with no task left (their terminal updates
    /// acknowledged) to DRAINED, marking them gone when asked. Called by
    /// the actor on its 500 ms expiry tick (and by DRAIN_AGENT itself), so
    /// the walk over the tasks stays off the per-input path.
    pub fn drain_progress(&mut self, now: Clock) {
        if self.draining.is_empty() {
            return;
        }
        let mut busy: BTreeSet<&str> = BTreeSet::new();
        for f in self.frameworks.values() {
            for t in f.tasks.values() {
                if self.draining.contains(&t.agent_id.value) {
                    busy.insert(t.agent_id.value.as_str());
                }
            }
        }
        let drained: Vec<String> = self
            .draining
            .iter()
            .filter(|a| !busy.contains(a.as_str()))
            .cloned()
            .collect();
        for agent_id in drained {
            self.draining.remove(&agent_id);
            let mut mark_gone = false;
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                if let Some(drain) = agent.drain.as_mut() {
                    drain.state = v1::DrainState::Drained as i32;
                    mark_gone = drain.config.mark_gone.unwrap_or(false);
                }
            }
            tracing::info!(agent_id = %agent_id, mark_gone, "agent drained");
            if mark_gone {
                if let Err(e) = self.mark_agent_gone(&agent_id, now) {
                    tracing::warn!(agent_id = %agent_id, error = %e, "a drained agent could not be marked gone");
                }
            }
        }
    }
}

/// A task's kill policy with its grace period at most `max` (Mesos: the
/// drain's `max_grace_period` caps each task's own).
pub(crate) fn capped_kill_policy(
    policy: Option<v1::KillPolicy>,
    max: Option<Duration>,
) -> Option<v1::KillPolicy> {
    let Some(max) = max else {
        return policy;
    };
    let cap = i64::try_from(max.as_nanos()).unwrap_or(i64::MAX);
    let mut policy = policy.unwrap_or_default();
    let grace = policy
        .grace_period
        .as_ref()
        .map_or(cap, |g| g.nanoseconds.min(cap));
    policy.grace_period = Some(v1::DurationInfo { nanoseconds: grace });
    Some(policy)
}

//! The stored form of the registry: JSON, with Mesos messages in Mesos' own
//! JSON shape (`corral_api::codec`), a format number and a version.
//!
//! ```json
//! {"format": 1, "version": 7, "state": {
//!   "agents": [AgentInfo, ...],
//!   "unreachable": [{"info": AgentInfo, "since": TimeInfo}, ...],
//!   "gone": [{"agent_id": "...", "since": TimeInfo}, ...],
//!   "weights": {"role": 2.0},
//!   "quotas": [QuotaConfig, ...],
//!   "schedules": [Schedule, ...]}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use corral_api::codec::{from_json_value, to_json_value};
use corral_api::v1;
use prost::{Message, Name};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RegistryError, RegistryState, UnreachableAgent};

/// The format this version reads and writes.
pub(crate) const FORMAT: u64 = 1;

#[derive(Serialize, Deserialize)]
struct StoredFile {
    format: u64,
    version: u64,
    state: Option<StoredState>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct StoredState {
    agents: Vec<Value>,
    unreachable: Vec<StoredUnreachable>,
    gone: Vec<StoredGone>,
    weights: BTreeMap<String, f64>,
    quotas: Vec<Value>,
    schedules: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
struct StoredUnreachable {
    info: Value,
    since: Value,
}

#[derive(Serialize, Deserialize)]
struct StoredGone {
    agent_id: String,
    since: Value,
}

fn encode_message<M: Message + Name>(msg: &M) -> Result<Value, RegistryError> {
    match to_json_value(msg) {
        Value::Null => Err(RegistryError::Encode(format!(
            "cannot encode a {} as JSON",
            M::full_name()
        ))),
        value => Ok(value),
    }
}

/// Encodes a state and its version as the stored file's bytes.
pub(crate) fn encode(version: u64, state: &RegistryState) -> Result<Vec<u8>, RegistryError> {
    let stored = StoredState {
        agents: state
            .agents
            .values()
            .map(encode_message)
            .collect::<Result<_, _>>()?,
        unreachable: state
            .unreachable
            .values()
            .map(|agent| {
                Ok(StoredUnreachable {
                    info: encode_message(&agent.info)?,
                    since: encode_message(&agent.since)?,
                })
            })
            .collect::<Result<_, RegistryError>>()?,
        gone: state
            .gone
            .iter()
            .map(|(agent_id, since)| {
                Ok(StoredGone {
                    agent_id: agent_id.clone(),
                    since: encode_message(since)?,
                })
            })
            .collect::<Result<_, RegistryError>>()?,
        weights: state.weights.clone(),
        quotas: state
            .quotas
            .values()
            .map(encode_message)
            .collect::<Result<_, _>>()?,
        schedules: state
            .schedules
            .iter()
            .map(encode_message)
            .collect::<Result<_, _>>()?,
    };
    let file = StoredFile {
        format: FORMAT,
        version,
        state: Some(stored),
    };
    serde_json::to_vec(&file).map_err(|e| RegistryError::Encode(e.to_string()))
}

/// Decodes a stored file into its version and state, checking the state's
/// invariants. `path` names the file in errors.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<(u64, RegistryState), RegistryError> {
    let corrupt = |reason: String| RegistryError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    // Check the format first, so that a newer format is reported as such
    // rather than as whatever its contents fail to parse as.
    let header: Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
    let format = header
        .get("format")
        .and_then(Value::as_u64)
        .ok_or_else(|| corrupt("no format number".into()))?;
    if format != FORMAT {
        return Err(RegistryError::UnsupportedFormat {
            path: path.to_owned(),
            format,
            supported: FORMAT,
        });
    }
    let file: StoredFile = serde_json::from_value(header).map_err(|e| corrupt(e.to_string()))?;
    let stored = file.state.ok_or_else(|| corrupt("no state".into()))?;

    let mut state = RegistryState::default();
    for value in stored.agents {
        let info: v1::AgentInfo = decode_message(value, "agent", &corrupt)?;
        let id = info
            .id
            .as_ref()
            .map(|id| id.value.clone())
            .unwrap_or_default();
        if state.agents.insert(id.clone(), info).is_some() {
            return Err(corrupt(format!("admitted agent {id} appears twice")));
        }
    }
    for entry in stored.unreachable {
        let info: v1::AgentInfo = decode_message(entry.info, "unreachable agent", &corrupt)?;
        let since: v1::TimeInfo = decode_message(entry.since, "unreachable time", &corrupt)?;
        let id = info
            .id
            .as_ref()
            .map(|id| id.value.clone())
            .unwrap_or_default();
        if state
            .unreachable
            .insert(id.clone(), UnreachableAgent { info, since })
            .is_some()
        {
            return Err(corrupt(format!("unreachable agent {id} appears twice")));
        }
    }
    for entry in stored.gone {
        let since: v1::TimeInfo = decode_message(entry.since, "gone time", &corrupt)?;
        if state.gone.insert(entry.agent_id.clone(), since).is_some() {
            return Err(corrupt(format!(
                "gone agent {} appears twice",
                entry.agent_id
            )));
        }
    }
    state.weights = stored.weights;
    for value in stored.quotas {
        let config: v1::quota::QuotaConfig = decode_message(value, "quota", &corrupt)?;
        let role = config.role.clone();
        if state.quotas.insert(role.clone(), config).is_some() {
            return Err(corrupt(format!("quota of role {role} appears twice")));
        }
    }
    for value in stored.schedules {
        state
            .schedules
            .push(decode_message(value, "maintenance schedule", &corrupt)?);
    }
    state.validate().map_err(corrupt)?;
    Ok((file.version, state))
}

fn decode_message<M: Message + Name + Default>(
    value: Value,
    what: &str,
    corrupt: &impl Fn(String) -> RegistryError,
) -> Result<M, RegistryError> {
    from_json_value(value).map_err(|e| corrupt(format!("invalid {what}: {e}")))
}

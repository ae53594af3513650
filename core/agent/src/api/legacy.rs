//! Legacy JSON endpoints tools still read: `/state` (agent state in Mesos'
//! shape), `/metrics/snapshot`, `/health`, `/version`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_api::codec::to_json_value;
use corral_api::resources::{reservation_role, Resources};
use corral_api::v1::{self, Task, TaskInfo, TaskState};
use serde_json::{json, Map, Value};

use super::json_response;
use super::operator::{metrics as metric_list, version_info};
use crate::agent::{lock, Agent, Executor, Framework, Queued};
use crate::resources::attributes_json;

/// `GET /health`.
pub async fn health() -> Response {
    StatusCode::OK.into_response()
}

/// `GET /version`.
pub async fn version() -> Response {
    let v = version_info();
    json_response(&json!({
        "version": v.version,
        "git_tag": v.git_tag,
        "build_date": "",
        "build_time": 0,
        "build_user": "",
    }))
}

/// `GET /metrics/snapshot`: a flat name -> number map.
pub async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let map: Map<String, Value> = metric_list(&agent)
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    json_response(&Value::Object(map))
}

/// `GET /monitor/statistics`: per live container, as Mesos serves it.
pub async fn monitor_statistics(State(agent): State<Arc<Agent>>) -> Response {
    let a = agent.clone();
    let stats = tokio::task::spawn_blocking(move || a.container_stats())
        .await
        .unwrap_or_default();
    let list: Vec<Value> = stats
        .into_iter()
        .map(|c| {
            json!({
                "executor_id": c.executor_id.value,
                "executor_name": c.executor_name.unwrap_or_default(),
                "framework_id": c.framework_id.value,
                "source": c.source.unwrap_or_default(),
                "container_id": c.container_id,
                "statistics": to_json_value(&c.statistics),
            })
        })
        .collect();
    json_response(&Value::Array(list))
}

/// `GET /state` (and `/state.json`, `/slave(1)/state`).
pub async fn state(State(agent): State<Arc<Agent>>) -> Response {
    json_response(&state_json(&agent))
}

fn optional(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() && value != json!({}) {
        map.insert(key.into(), value);
    }
}

fn role_of(resources: &[v1::Resource]) -> String {
    resources
        .iter()
        .map(reservation_role)
        .find(|r| *r != "*")
        .unwrap_or("*")
        .to_string()
}

fn status_json(s: &v1::TaskStatus) -> Value {
    let mut m = Map::new();
    m.insert(
        "state".into(),
        json!(TaskState::try_from(s.state).map_or("TASK_UNKNOWN", |x| x.as_str_name())),
    );
    m.insert("timestamp".into(), json!(s.timestamp.unwrap_or(0.0)));
    if let Some(h) = s.healthy {
        m.insert("healthy".into(), json!(h));
    }
    if let Some(c) = &s.container_status {
        optional(&mut m, "container_status", to_json_value(c));
    }
    if let Some(l) = &s.labels {
        optional(&mut m, "labels", to_json_value(l)["labels"].clone());
    }
    Value::Object(m)
}

/// A launched task in Mesos' agent-state shape.
pub fn task_json(t: &Task, fallback_executor: &str) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.task_id.value));
    m.insert("name".into(), json!(t.name));
    m.insert("framework_id".into(), json!(t.framework_id.value));
    m.insert(
        "executor_id".into(),
        json!(t
            .executor_id
            .as_ref()
            .map_or(fallback_executor, |e| e.value.as_str())),
    );
    m.insert("slave_id".into(), json!(t.agent_id.value));
    m.insert(
        "state".into(),
        json!(TaskState::try_from(t.state).map_or("TASK_UNKNOWN", |x| x.as_str_name())),
    );
    m.insert(
        "resources".into(),
        Resources::from_vec(&t.resources).to_legacy_json(),
    );
    m.insert("role".into(), json!(role_of(&t.resources)));
    m.insert(
        "statuses".into(),
        Value::Array(t.statuses.iter().map(status_json).collect()),
    );
    if let Some(l) = &t.labels {
        optional(&mut m, "labels", to_json_value(l)["labels"].clone());
    }
    if let Some(d) = &t.discovery {
        optional(&mut m, "discovery", to_json_value(d));
    }
    if let Some(c) = &t.container {
        optional(&mut m, "container", to_json_value(c));
    }
    if let Some(u) = &t.user {
        m.insert("user".into(), json!(u));
    }
    Value::Object(m)
}

fn queued_task_json(t: &TaskInfo, fw_id: &str, ex_id: &str, agent_id: &str) -> Value {
    json!({
        "id": t.task_id.value,
        "name": t.name,
        "framework_id": fw_id,
        "executor_id": ex_id,
        "slave_id": agent_id,
        "resources": Resources::from_vec(&t.resources).to_legacy_json(),
        "role": role_of(&t.resources),
    })
}

fn executor_json(ex: &Executor, fw_id: &str, agent_id: &str) -> Value {
    let ex_id = ex.info.executor_id.value.as_str();
    let queued: Vec<Value> = ex
        .queued
        .iter()
        .flat_map(|q| match q {
            Queued::Task(t) => vec![t.clone()],
            Queued::Group(g) => g.tasks.clone(),
        })
        .map(|t| queued_task_json(&t, fw_id, ex_id, agent_id))
        .collect();
    let is_queued = |t: &Task| {
        ex.queued.iter().any(|q| match q {
            Queued::Task(x) => x.task_id == t.task_id,
            Queued::Group(g) => g.tasks.iter().any(|x| x.task_id == t.task_id),
        })
    };
    let tasks: Vec<Value> = ex
        .tasks
        .values()
        .filter(|t| !is_queued(t))
        .map(|t| task_json(t, ex_id))
        .collect();
    let completed: Vec<Value> = ex
        .completed_tasks
        .iter()
        .map(|t| task_json(t, ex_id))
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(ex_id));
    m.insert(
        "name".into(),
        json!(ex.info.name.clone().unwrap_or_default()),
    );
    m.insert(
        "source".into(),
        json!(ex.info.source.clone().unwrap_or_default()),
    );
    m.insert("container".into(), json!(ex.container_id));
    m.insert(
        "directory".into(),
        json!(ex.directory.display().to_string()),
    );
    m.insert(
        "resources".into(),
        Resources::from_vec(&ex.info.resources).to_legacy_json(),
    );
    m.insert("role".into(), json!(role_of(&ex.info.resources)));
    m.insert("framework_id".into(), json!(fw_id));
    if let Some(ty) = ex
        .info
        .r#type
        .and_then(|t| v1::executor_info::Type::try_from(t).ok())
    {
        m.insert("type".into(), json!(ty.as_str_name()));
    }
    if let Some(l) = &ex.info.labels {
        optional(&mut m, "labels", to_json_value(l)["labels"].clone());
    }
    m.insert("tasks".into(), Value::Array(tasks));
    m.insert("queued_tasks".into(), Value::Array(queued));
    m.insert("completed_tasks".into(), Value::Array(completed));
    Value::Object(m)
}

fn framework_json(fw: &Framework, agent_id: &str) -> Value {
    let fw_id = fw
        .info
        .id
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let info = &fw.info;
    let role = info
        .roles
        .first()
        .cloned()
        .or_else(|| info.role.clone())
        .unwrap_or_else(|| "*".into());
    let mut m = Map::new();
    m.insert("id".into(), json!(fw_id));
    m.insert("name".into(), json!(info.name));
    m.insert("user".into(), json!(info.user));
    m.insert(
        "failover_timeout".into(),
        json!(info.failover_timeout.unwrap_or(0.0)),
    );
    m.insert("checkpoint".into(), json!(info.checkpoint.unwrap_or(false)));
    m.insert(
        "hostname".into(),
        json!(info.hostname.clone().unwrap_or_default()),
    );
    m.insert("role".into(), json!(role));
    if !info.roles.is_empty() {
        m.insert("roles".into(), json!(info.roles));
    }
    if let Some(p) = &info.principal {
        m.insert("principal".into(), json!(p));
    }
    m.insert(
        "capabilities".into(),
        Value::Array(
            info.capabilities
                .iter()
                .filter_map(|c| c.r#type)
                .filter_map(|t| v1::framework_info::capability::Type::try_from(t).ok())
                .map(|t| json!(t.as_str_name()))
                .collect(),
        ),
    );
    m.insert(
        "executors".into(),
        Value::Array(
            fw.executors
                .values()
                .map(|e| executor_json(e, &fw_id, agent_id))
                .collect(),
        ),
    );
    m.insert(
        "completed_executors".into(),
        Value::Array(
            fw.completed_executors
                .iter()
                .map(|e| executor_json(e, &fw_id, agent_id))
                .collect(),
        ),
    );
    Value::Object(m)
}

/// The agent's state in the shape of Mesos' `/state`.
pub fn state_json(agent: &Agent) -> Value {
    let st = lock(&agent.state);
    let cfg = &agent.config;
    let agent_id = st
        .agent_id
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_default();
    // The total with the checkpointed reservations and volumes.
    let total = st.total.clone();
    let flags: Map<String, Value> = cfg
        .flags
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let unreserved: Vec<v1::Resource> = total
        .as_slice()
        .iter()
        .filter(|r| reservation_role(r) == "*")
        .cloned()
        .collect();
    let mut reserved: Map<String, Value> = Map::new();
    let mut reserved_full: Map<String, Value> = Map::new();
    for r in total
        .as_slice()
        .iter()
        .filter(|r| reservation_role(r) != "*")
    {
        let role = reservation_role(r).to_string();
        let bag = Resources::from_vec(std::slice::from_ref(r));
        let entry = reserved.entry(role.clone()).or_insert_with(|| json!({}));
        if let (Value::Object(e), Value::Object(n)) = (entry, bag.to_legacy_json()) {
            for (k, v) in n {
                let sum =
                    e.get(&k).and_then(Value::as_f64).unwrap_or(0.0) + v.as_f64().unwrap_or(0.0);
                e.insert(k, if v.is_number() { json!(sum) } else { v });
            }
        }
        if let Value::Array(a) = reserved_full.entry(role).or_insert_with(|| json!([])) {
            a.push(to_json_value(r));
        }
    }
    let master_hostname = st
        .master_info
        .as_ref()
        .and_then(|m| {
            m.hostname
                .clone()
                .or_else(|| m.address.as_ref().and_then(|a| a.hostname.clone()))
        })
        .unwrap_or_default();
    let mut m = Map::new();
    m.insert("version".into(), json!(corral_api::MESOS_VERSION));
    m.insert(
        "git_tag".into(),
        json!(format!("corral-{}", corral_api::VERSION)),
    );
    m.insert("start_time".into(), json!(cfg.start_time));
    m.insert("id".into(), json!(agent_id));
    m.insert("pid".into(), json!(cfg.pid()));
    m.insert("hostname".into(), json!(cfg.hostname));
    m.insert(
        "capabilities".into(),
        json!([
            "MULTI_ROLE",
            "HIERARCHICAL_ROLE",
            "RESERVATION_REFINEMENT",
            "TASK_GROUPS"
        ]),
    );
    m.insert("resources".into(), total.to_legacy_json());
    m.insert("reserved_resources".into(), Value::Object(reserved));
    m.insert(
        "unreserved_resources".into(),
        Resources::from_vec(&unreserved).to_legacy_json(),
    );
    m.insert(
        "reserved_resources_full".into(),
        Value::Object(reserved_full),
    );
    m.insert(
        "unreserved_resources_full".into(),
        Value::Array(unreserved.iter().map(to_json_value).collect()),
    );
    m.insert("attributes".into(), attributes_json(&cfg.attributes));
    m.insert("master_hostname".into(), json!(master_hostname));
    m.insert("flags".into(), Value::Object(flags));
    m.insert(
        "frameworks".into(),
        Value::Array(
            st.frameworks
                .values()
                .map(|f| framework_json(f, &agent_id))
                .collect(),
        ),
    );
    m.insert(
        "completed_frameworks".into(),
        Value::Array(
            st.completed_frameworks
                .iter()
                .map(|f| framework_json(f, &agent_id))
                .collect(),
        ),
    );
    Value::Object(m)
}

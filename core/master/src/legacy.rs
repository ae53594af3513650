//! The legacy (v0) JSON views tools still read, built from the master's
//! state (no HTTP here: `http/legacy.rs` serves them): `/master/state`,
//! `/master/state-summary`, `/slaves`, `/frameworks`, `/tasks`,
//! `/metrics/snapshot`. Shapes follow
//! Apache Mesos' state JSON (resources as `{"cpus": 1, "ports": "[..]"}`,
//! agents with `pid: slave(1)@ip:port`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use corral_api::codec;
use corral_api::resources::{self, Resources};
use corral_api::v1::{self, TaskState};

use crate::state::{is_terminal, Clock, Framework, Master};

fn state_name(state: i32) -> &'static str {
    TaskState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("TASK_UNKNOWN")
}

fn resources_of(rs: &[v1::Resource]) -> Value {
    Resources::from_vec(rs).to_legacy_json()
}

/// A task in v0 JSON.
pub fn task_json(t: &v1::Task) -> Value {
    let statuses: Vec<Value> = t
        .statuses
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("state".into(), json!(state_name(s.state)));
            m.insert("timestamp".into(), json!(s.timestamp.unwrap_or(0.0)));
            if let Some(h) = s.healthy {
                m.insert("healthy".into(), json!(h));
            }
            // Not in Mesos' state JSON, which clients tolerate: the web
            // UI shows why a task ended.
            if let Some(reason) = s
                .reason
                .and_then(|r| v1::task_status::Reason::try_from(r).ok())
            {
                m.insert("reason".into(), json!(reason.as_str_name()));
            }
            if let Some(message) = s.message.as_ref().filter(|m| !m.is_empty()) {
                m.insert("message".into(), json!(message));
            }
            if let Some(cs) = &s.container_status {
                m.insert("container_status".into(), codec::to_json_value(cs));
            }
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(t.task_id.value));
    m.insert("name".into(), json!(t.name));
    m.insert("framework_id".into(), json!(t.framework_id.value));
    m.insert(
        "executor_id".into(),
        json!(t
            .executor_id
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default()),
    );
    m.insert("slave_id".into(), json!(t.agent_id.value));
    m.insert("state".into(), json!(state_name(t.state)));
    m.insert("resources".into(), resources_of(&t.resources));
    m.insert("statuses".into(), Value::Array(statuses));
    if let Some(user) = &t.user {
        m.insert("user".into(), json!(user));
    }
    if let Some(l) = &t.labels {
        m.insert("labels".into(), codec::to_json_value(l)["labels"].clone());
    }
    if let Some(d) = &t.discovery {
        m.insert("discovery".into(), codec::to_json_value(d));
    }
    if let Some(c) = &t.container {
        m.insert("container".into(), codec::to_json_value(c));
    }
    Value::Object(m)
}

fn framework_json(m: &Master, f: &Framework) -> Value {
    let mut used = Resources::new();
    for a in m.agents.values() {
        if let Some(u) = a.used.get(&f.id) {
            used.add_all(u);
        }
    }
    let mut offered = Resources::new();
    let offers: Vec<Value> = f
        .offers
        .iter()
        .filter_map(|o| m.offers.get(o))
        .map(|o| {
            offered.add_all(&o.resources);
            json!({
                "id": o.offer.id.value,
                "framework_id": o.offer.framework_id.value,
                "slave_id": o.offer.agent_id.value,
                "resources": resources_of(&o.offer.resources),
            })
        })
        .collect();
    let (tasks, unacked_terminal): (Vec<&v1::Task>, Vec<&v1::Task>) =
        f.tasks.values().partition(|t| !is_terminal(t.state));
    let completed: Vec<Value> = unacked_terminal
        .into_iter()
        .chain(f.completed_tasks.iter())
        .map(task_json)
        .collect();
    let executors: Vec<Value> = f
        .executors
        .iter()
        .map(|((agent, _), e)| {
            json!({
                "executor_id": e.executor_id.value,
                "name": e.name.clone().unwrap_or_default(),
                "framework_id": f.id,
                "command": e.command.as_ref().map(codec::to_json_value).unwrap_or(Value::Null),
                "resources": resources_of(&e.resources),
                "slave_id": agent,
            })
        })
        .collect();
    let caps: Vec<Value> = f
        .info
        .capabilities
        .iter()
        .filter_map(|c| c.r#type)
        .filter_map(|t| v1::framework_info::capability::Type::try_from(t).ok())
        .map(|t| json!(t.as_str_name()))
        .collect();
    let roles = f.roles();
    json!({
        "id": f.id,
        "name": f.info.name,
        "pid": Value::Null,
        "user": f.info.user,
        "hostname": f.info.hostname.clone().unwrap_or_default(),
        "webui_url": f.info.webui_url.clone().unwrap_or_default(),
        "principal": f.info.principal.clone(),
        "role": roles.first().cloned().unwrap_or_else(|| "*".into()),
        "roles": roles,
        "capabilities": caps,
        "active": f.active,
        "connected": f.connected,
        "recovered": f.recovered,
        "checkpoint": f.info.checkpoint.unwrap_or(false),
        "failover_timeout": f.info.failover_timeout.unwrap_or(0.0),
        "registered_time": f.registered_time,
        "reregistered_time": f.reregistered_time.unwrap_or(f.registered_time),
        "unregistered_time": f.unregistered_time.unwrap_or(0.0),
        "resources": resources_of(&used.to_vec()),
        "used_resources": resources_of(&used.to_vec()),
        "offered_resources": resources_of(&offered.to_vec()),
        "tasks": tasks.into_iter().map(task_json).collect::<Vec<_>>(),
        "completed_tasks": completed,
        "unreachable_tasks": [],
        "offers": offers,
        "executors": executors,
    })
}

/// A resource as Mesos' state JSON writes the `*_full` lists: the
/// post-refinement `reservations` and, where it can be expressed, the
/// pre-refinement `role` and `reservation` too.
fn resource_full_json(r: &v1::Resource) -> Value {
    let mut both = r.clone();
    let mut old = r.clone();
    if resources::downgrade(&mut old) {
        both.role = old.role;
        both.reservation = old.reservation;
    }
    codec::to_json_value(&both)
}

fn resources_full_json(rs: &Resources) -> Value {
    Value::Array(rs.as_slice().iter().map(resource_full_json).collect())
}

fn agent_json(a: &crate::state::Agent) -> Value {
    let used = a.used_total();
    let mut unreserved = Vec::new();
    let mut reserved: std::collections::BTreeMap<String, Vec<v1::Resource>> = Default::default();
    for r in a.total.as_slice() {
        let role = corral_api::resources::reservation_role(r).to_string();
        if role == "*" {
            unreserved.push(r.clone());
        } else {
            reserved.entry(role).or_default().push(r.clone());
        }
    }
    let reserved_json: Map<String, Value> = reserved
        .iter()
        .map(|(k, v)| (k.clone(), resources_of(v)))
        .collect();
    let reserved_full: Map<String, Value> = reserved
        .iter()
        .map(|(k, v)| (k.clone(), resources_full_json(&Resources::from_vec(v))))
        .collect();
    let attributes: Map<String, Value> = a
        .info
        .attributes
        .iter()
        .map(|at| {
            let v = if let Some(s) = &at.scalar {
                json!(s.value)
            } else if let Some(t) = &at.text {
                json!(t.value)
            } else if let Some(r) = &at.ranges {
                let parts: Vec<String> = r
                    .range
                    .iter()
                    .map(|x| format!("{}-{}", x.begin, x.end))
                    .collect();
                json!(format!("[{}]", parts.join(", ")))
            } else {
                Value::Null
            };
            (at.name.clone(), v)
        })
        .collect();
    json!({
        "id": a.id,
        "pid": a.pid(),
        "hostname": a.info.hostname,
        "port": a.info.port.unwrap_or(5051),
        "registered_time": a.registered_time,
        "reregistered_time": a.reregistered_time,
        "resources": a.total.to_legacy_json(),
        "used_resources": used.to_legacy_json(),
        "offered_resources": a.offered.to_legacy_json(),
        "reserved_resources": reserved_json,
        "unreserved_resources": resources_of(&unreserved),
        "reserved_resources_full": reserved_full,
        "unreserved_resources_full": resources_full_json(&Resources::from_vec(&unreserved)),
        "used_resources_full": resources_full_json(&used),
        "offered_resources_full": resources_full_json(&a.offered),
        "attributes": attributes,
        "active": a.connected,
        "deactivated": a.deactivated,
        "drain_info": a.drain.as_ref().map(codec::to_json_value).unwrap_or(Value::Null),
        "version": a.version,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
    })
}

/// `/master/state`. (`_now`: the views share one signature; this one
/// needs no time.)
pub fn state(m: &Master, _now: Clock) -> Value {
    let address = m.info.address.clone().unwrap_or_default();
    let leader = format!(
        "master@{}:{}",
        address.ip.clone().unwrap_or_default(),
        m.info.port
    );
    let flags: Map<String, Value> = m
        .flags
        .pairs()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let (active, inactive): (Vec<_>, Vec<_>) = m.agents.values().partition(|a| a.connected);
    json!({
        "version": corral_api::MESOS_VERSION,
        "git_sha": format!("corral-{}", corral_api::VERSION),
        "build_date": "",
        "build_time": 0,
        "build_user": "",
        "start_time": m.start_time,
        "elected_time": m.start_time,
        "id": m.info.id,
        "pid": leader,
        "hostname": m.info.hostname.clone().unwrap_or_default(),
        "cluster": m.flags.cluster.clone(),
        "activated_slaves": active.len(),
        "deactivated_slaves": inactive.len(),
        "unreachable_slaves": 0,
        "leader": leader,
        "leader_info": codec::to_json_value(&m.info),
        "log_dir": Value::Null,
        "flags": flags,
        "slaves": m.agents.values().map(agent_json).collect::<Vec<_>>(),
        "recovered_slaves": [],
        "frameworks": m.frameworks.values().map(|f| framework_json(m, f)).collect::<Vec<_>>(),
        "completed_frameworks": m.completed_frameworks.iter().map(|f| framework_json(m, f)).collect::<Vec<_>>(),
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    })
}

/// `/slaves`.
pub fn slaves(m: &Master, slave_id: Option<&str>) -> Value {
    json!({
        "slaves": m
            .agents
            .values()
            .filter(|a| slave_id.is_none_or(|id| a.id == id))
            .map(agent_json)
            .collect::<Vec<_>>(),
        "recovered_slaves": [],
    })
}

/// `/frameworks?framework_id=`.
pub fn frameworks(m: &Master, framework_id: Option<&str>) -> Value {
    let wanted = |id: &str| framework_id.is_none_or(|f| f == id);
    json!({
        "frameworks": m
            .frameworks
            .values()
            .filter(|f| wanted(&f.id))
            .map(|f| framework_json(m, f))
            .collect::<Vec<_>>(),
        "completed_frameworks": m
            .completed_frameworks
            .iter()
            .filter(|f| wanted(&f.id))
            .map(|f| framework_json(m, f))
            .collect::<Vec<_>>(),
        "unregistered_frameworks": [],
    })
}

/// Task counts by state, as `/state-summary` reports them per agent and
/// per framework.
const SUMMARY_STATES: [TaskState; 9] = [
    TaskState::TaskStaging,
    TaskState::TaskStarting,
    TaskState::TaskRunning,
    TaskState::TaskKilling,
    TaskState::TaskFinished,
    TaskState::TaskKilled,
    TaskState::TaskFailed,
    TaskState::TaskLost,
    TaskState::TaskError,
];

#[derive(Default)]
struct Tally {
    counts: BTreeMap<i32, u64>,
    peers: BTreeSet<String>,
}

impl Tally {
    fn write_into(self, object: &mut Value, peers_key: &str) {
        if let Value::Object(o) = object {
            for state in SUMMARY_STATES {
                let n = self.counts.get(&(state as i32)).copied().unwrap_or(0);
                o.insert(state.as_str_name().to_string(), json!(n));
            }
            o.insert(peers_key.to_string(), json!(self.peers));
        }
    }
}

/// `/state-summary`: the agents and registered frameworks without their
/// task lists, each with its task counts by state and the ids of the
/// frameworks (agents) it runs tasks of (on).
pub fn state_summary(m: &Master) -> Value {
    let mut by_agent: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_framework: BTreeMap<&str, Tally> = BTreeMap::new();
    for f in m.frameworks.values() {
        let framework = by_framework.entry(f.id.as_str()).or_default();
        for t in f.tasks.values().chain(f.completed_tasks.iter()) {
            let agent_id = t.agent_id.value.as_str();
            *framework.counts.entry(t.state).or_default() += 1;
            framework.peers.insert(agent_id.to_string());
            let agent = by_agent.entry(agent_id).or_default();
            *agent.counts.entry(t.state).or_default() += 1;
            agent.peers.insert(f.id.clone());
        }
    }
    let slaves: Vec<Value> = m
        .agents
        .values()
        .map(|a| {
            let mut v = agent_json(a);
            by_agent
                .remove(a.id.as_str())
                .unwrap_or_default()
                .write_into(&mut v, "framework_ids");
            v
        })
        .collect();
    let frameworks: Vec<Value> = m
        .frameworks
        .values()
        .map(|f| {
            let mut v = framework_json(m, f);
            if let Value::Object(o) = &mut v {
                for heavy in [
                    "tasks",
                    "completed_tasks",
                    "unreachable_tasks",
                    "offers",
                    "executors",
                ] {
                    o.remove(heavy);
                }
            }
            by_framework
                .remove(f.id.as_str())
                .unwrap_or_default()
                .write_into(&mut v, "slave_ids");
            v
        })
        .collect();
    json!({
        "hostname": m.info.hostname.clone().unwrap_or_default(),
        "cluster": m.flags.cluster.clone(),
        "slaves": slaves,
        "frameworks": frameworks,
    })
}

/// `/tasks?limit=&offset=&order=&task_id=&framework_id=`.
pub fn tasks(
    m: &Master,
    limit: usize,
    offset: usize,
    asc: bool,
    task_id: Option<&str>,
    framework_id: Option<&str>,
) -> Value {
    let mut all: Vec<&v1::Task> = m
        .frameworks
        .values()
        .chain(m.completed_frameworks.iter())
        .filter(|f| framework_id.is_none_or(|id| f.id == id))
        .flat_map(|f| f.tasks.values().chain(f.completed_tasks.iter()))
        .filter(|t| task_id.is_none_or(|id| t.task_id.value == id))
        .collect();
    let started = |t: &v1::Task| t.statuses.first().and_then(|s| s.timestamp).unwrap_or(0.0);
    all.sort_by(|a, b| started(a).total_cmp(&started(b)));
    if !asc {
        all.reverse();
    }
    let page: Vec<Value> = all
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(task_json)
        .collect();
    json!({ "tasks": page })
}

/// Metrics by Mesos name.
pub fn metrics(m: &Master, now: Clock) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let mut push = |k: &str, v: f64| out.push((k.to_string(), v));
    push("master/uptime_secs", now.wall - m.start_time);
    push("master/elected", 1.0);
    let connected = m.agents.values().filter(|a| a.connected).count() as f64;
    push("master/slaves_active", connected);
    push("master/slaves_connected", connected);
    push(
        "master/slaves_disconnected",
        m.agents.len() as f64 - connected,
    );
    push("master/slaves_inactive", 0.0);
    push(
        "master/frameworks_active",
        m.frameworks.values().filter(|f| f.active).count() as f64,
    );
    push(
        "master/frameworks_connected",
        m.frameworks.values().filter(|f| f.connected).count() as f64,
    );
    push(
        "master/frameworks_disconnected",
        m.frameworks.values().filter(|f| !f.connected).count() as f64,
    );
    push(
        "master/frameworks_inactive",
        m.frameworks.values().filter(|f| !f.active).count() as f64,
    );
    push("master/outstanding_offers", m.offers.len() as f64);
    let mut by_state = std::collections::BTreeMap::new();
    for f in m.frameworks.values() {
        for t in f.tasks.values() {
            *by_state.entry(t.state).or_insert(0.0) += 1.0;
        }
    }
    for (state, name) in [
        (TaskState::TaskStaging, "master/tasks_staging"),
        (TaskState::TaskStarting, "master/tasks_starting"),
        (TaskState::TaskRunning, "master/tasks_running"),
        (TaskState::TaskKilling, "master/tasks_killing"),
    ] {
        push(name, by_state.get(&(state as i32)).copied().unwrap_or(0.0));
    }
    let mut total = Resources::new();
    let mut used = Resources::new();
    let mut offered = Resources::new();
    for a in m.agents.values() {
        total.add_all(&a.total);
        used.add_all(&a.used_total());
        offered.add_all(&a.offered);
    }
    for name in ["cpus", "mem", "disk", "gpus"] {
        let t = total.scalar(name);
        let u = used.scalar(name);
        push(&format!("master/{name}_total"), t);
        push(&format!("master/{name}_used"), u);
        push(&format!("master/{name}_offered"), offered.scalar(name));
        push(
            &format!("master/{name}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        );
    }
    for (name, value) in &m.counters.values {
        push(name, *value as f64);
    }
    push("master/operations/pending", m.pending_operations() as f64);
    for name in [
        "master/invalid_operations",
        "master/operations/total",
        "master/operations/finished",
        "master/operations/failed",
        "master/operations/error",
        "master/operations/dropped",
        "master/tasks_finished",
        "master/tasks_failed",
        "master/tasks_killed",
        "master/tasks_lost",
        "master/tasks_error",
        "master/tasks_dropped",
        "master/tasks_unreachable",
        "allocator/mesos/allocation_runs",
    ] {
        if !m.counters.values.contains_key(name) {
            push(name, 0.0);
        }
    }
    push("allocator/mesos/event_queue_dispatches", 0.0);
    let mut runs: Vec<f64> = m.allocation_run_ms.iter().copied().collect();
    runs.sort_by(f64::total_cmp);
    if !runs.is_empty() {
        let pct = |p: f64| runs[((runs.len() - 1) as f64 * p).round() as usize];
        push("allocator/mesos/allocation_run_ms", runs[runs.len() - 1]);
        push("allocator/mesos/allocation_run_ms/count", runs.len() as f64);
        push("allocator/mesos/allocation_run_ms/p50", pct(0.5));
        push("allocator/mesos/allocation_run_ms/p90", pct(0.9));
        push("allocator/mesos/allocation_run_ms/p99", pct(0.99));
        push(
            "allocator/mesos/allocation_run_ms/max",
            runs[runs.len() - 1],
        );
    }
    push(
        "allocator/mesos/offer_filters/active",
        m.allocator.active_filters(now.mono) as f64,
    );
    for (role, n) in m.allocator.active_filters_by_role(now.mono) {
        push(
            &format!("allocator/mesos/offer_filters/roles/{role}/active"),
            n as f64,
        );
    }
    for r in m.role_views() {
        push(
            &format!("allocator/mesos/roles/{}/shares/dominant", r.name),
            r.share,
        );
        if let Some(q) = &r.quota {
            for (res, s) in &q.guarantees {
                push(
                    &format!(
                        "allocator/mesos/quota/roles/{}/resources/{res}/guarantee",
                        r.name
                    ),
                    s.value,
                );
            }
            for (res, s) in &q.limits {
                push(
                    &format!(
                        "allocator/mesos/quota/roles/{}/resources/{res}/limit",
                        r.name
                    ),
                    s.value,
                );
            }
            for (res, v) in &r.consumed {
                push(
                    &format!(
                        "allocator/mesos/quota/roles/{}/resources/{res}/consumed",
                        r.name
                    ),
                    *v,
                );
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// `/roles` (= `/master/roles`): weight, quota, allocated, offered,
/// reserved and frameworks per role, in Mesos' JSON shape.
pub fn roles(m: &Master) -> Value {
    let roles: Vec<Value> = m
        .role_views()
        .into_iter()
        .map(|r| {
            let mut v = json!({
                "name": r.name,
                "weight": r.weight,
                "frameworks": r.frameworks,
                "resources": r.allocated.to_legacy_json(),
                "allocated": r.allocated.to_legacy_json(),
                "offered": r.offered.to_legacy_json(),
                "reserved": r.reserved.to_legacy_json(),
            });
            if let Some(q) = &r.quota {
                let map = |m: &std::collections::HashMap<String, v1::value::Scalar>| {
                    m.iter()
                        .map(|(k, s)| (k.clone(), json!(s.value)))
                        .collect::<Map<String, Value>>()
                };
                v["quota"] = json!({
                    "role": r.name,
                    "guarantee": map(&q.guarantees),
                    "limit": map(&q.limits),
                    "consumed": r.consumed,
                });
            }
            v
        })
        .collect();
    json!({ "roles": roles })
}

//! `POST /api/v1`: the agent operator API (`mesos.v1.agent.Call`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_api::resources::Resources;
use corral_api::v1::agent::{call, response, Call, Response as AgentResponse};
use corral_api::v1::{self, Task, TaskState};

use super::{files, request_encoding, response_encoding, ApiError};
use crate::agent::{lock, Agent, ExecutorPhase, State as AgentState};
use crate::status_updates::is_terminal;

/// Handles one operator call.
pub async fn handle(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle_inner(&agent, &headers, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn handle_inner(agent: &Agent, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let encoding = request_encoding(headers)?;
    let call: Call = encoding
        .decode_request(body)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse body into Call: {e}")))?;
    let accept = response_encoding(headers, encoding)?;
    let ty = call
        .r#type
        .and_then(|t| call::Type::try_from(t).ok())
        .unwrap_or(call::Type::Unknown);
    let response = answer(agent, ty, &call)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, accept.content_type())],
        accept.encode(&response),
    )
        .into_response())
}

fn typed(ty: response::Type) -> AgentResponse {
    AgentResponse {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

/// Answers a synchronous call.
pub fn answer(agent: &Agent, ty: call::Type, call: &Call) -> Result<AgentResponse, ApiError> {
    let mut r;
    match ty {
        call::Type::GetHealth => {
            r = typed(response::Type::GetHealth);
            r.get_health = Some(response::GetHealth { healthy: true });
        }
        call::Type::GetFlags => {
            r = typed(response::Type::GetFlags);
            r.get_flags = Some(response::GetFlags {
                flags: agent
                    .config
                    .flags
                    .iter()
                    .map(|(k, v)| v1::Flag {
                        name: k.clone(),
                        value: Some(v.clone()),
                    })
                    .collect(),
            });
        }
        call::Type::GetVersion => {
            r = typed(response::Type::GetVersion);
            r.get_version = Some(response::GetVersion {
                version_info: version_info(),
            });
        }
        call::Type::GetMetrics => {
            r = typed(response::Type::GetMetrics);
            r.get_metrics = Some(response::GetMetrics {
                metrics: metrics(agent)
                    .into_iter()
                    .map(|(name, value)| v1::Metric {
                        name,
                        value: Some(value),
                    })
                    .collect(),
            });
        }
        call::Type::GetState => {
            let st = lock(&agent.state);
            r = typed(response::Type::GetState);
            r.get_state = Some(response::GetState {
                get_tasks: Some(get_tasks(&st)),
                get_executors: Some(get_executors(&st)),
                get_frameworks: Some(get_frameworks(&st)),
            });
        }
        call::Type::GetContainers => {
            r = typed(response::Type::GetContainers);
            r.get_containers = Some(get_containers(agent));
        }
        call::Type::GetFrameworks => {
            r = typed(response::Type::GetFrameworks);
            r.get_frameworks = Some(get_frameworks(&lock(&agent.state)));
        }
        call::Type::GetExecutors => {
            r = typed(response::Type::GetExecutors);
            r.get_executors = Some(get_executors(&lock(&agent.state)));
        }
        call::Type::GetTasks => {
            r = typed(response::Type::GetTasks);
            r.get_tasks = Some(get_tasks(&lock(&agent.state)));
        }
        call::Type::GetAgent => {
            r = typed(response::Type::GetAgent);
            let st = lock(&agent.state);
            // The agent's total, with its reservations and volumes.
            let mut info = agent.agent_info(&st);
            info.resources = st.total.to_vec();
            r.get_agent = Some(response::GetAgent {
                agent_info: Some(info),
                ..Default::default()
            });
        }
        call::Type::ListFiles => {
            let path = call
                .list_files
                .as_ref()
                .map(|l| l.path.as_str())
                .ok_or_else(|| ApiError::bad_request("Expecting 'list_files' to be present"))?;
            let entries = files::list(agent, path)?;
            r = typed(response::Type::ListFiles);
            r.list_files = Some(response::ListFiles {
                file_infos: entries.iter().map(|(p, m)| file_info(p, m)).collect(),
            });
        }
        call::Type::ReadFile => {
            let rf = call
                .read_file
                .as_ref()
                .ok_or_else(|| ApiError::bad_request("Expecting 'read_file' to be present"))?;
            let (_, data, size) = files::read_range(agent, &rf.path, Some(rf.offset), rf.length)?;
            r = typed(response::Type::ReadFile);
            r.read_file = Some(response::ReadFile { size, data });
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "call {} is not supported by this agent",
                other.as_str_name()
            )))
        }
    }
    Ok(r)
}

fn file_info(path: &str, meta: &std::fs::Metadata) -> v1::FileInfo {
    use std::os::unix::fs::MetadataExt;
    let j = files::file_json(path, meta);
    v1::FileInfo {
        path: path.to_string(),
        nlink: i32::try_from(meta.nlink()).ok(),
        size: Some(meta.len()),
        mtime: Some(v1::TimeInfo {
            nanoseconds: meta.mtime().saturating_mul(1_000_000_000),
        }),
        mode: Some(meta.mode()),
        uid: j["uid"].as_str().map(String::from),
        gid: j["gid"].as_str().map(String::from),
    }
}

/// VersionInfo with the Mesos API version Corral speaks.
pub fn version_info() -> v1::VersionInfo {
    v1::VersionInfo {
        version: corral_api::MESOS_VERSION.to_string(),
        git_tag: Some(format!("corral-{}", corral_api::VERSION)),
        ..Default::default()
    }
}

/// GET_TASKS: queued (waiting for the executor), launched (non-terminal),
/// terminated (terminal, updates unacknowledged) and completed.
pub fn get_tasks(st: &AgentState) -> response::GetTasks {
    let mut out = response::GetTasks::default();
    for fw in st.frameworks.values() {
        for ex in fw.executors.values() {
            for task in ex.tasks.values() {
                let queued = ex.queued.iter().any(|q| match q {
                    crate::agent::Queued::Task(t) => t.task_id == task.task_id,
                    crate::agent::Queued::Group(g) => {
                        g.tasks.iter().any(|t| t.task_id == task.task_id)
                    }
                });
                if queued {
                    out.queued_tasks.push(task.clone());
                } else if is_terminal(task.state) {
                    out.terminated_tasks.push(task.clone());
                } else {
                    out.launched_tasks.push(task.clone());
                }
            }
            out.completed_tasks
                .extend(ex.completed_tasks.iter().cloned());
        }
        for ex in &fw.completed_executors {
            out.completed_tasks
                .extend(ex.completed_tasks.iter().cloned());
            out.completed_tasks.extend(ex.tasks.values().cloned());
        }
    }
    for fw in &st.completed_frameworks {
        for ex in fw.executors.values().chain(fw.completed_executors.iter()) {
            out.completed_tasks
                .extend(ex.completed_tasks.iter().cloned());
            out.completed_tasks.extend(ex.tasks.values().cloned());
        }
    }
    out
}

/// GET_EXECUTORS.
pub fn get_executors(st: &AgentState) -> response::GetExecutors {
    let mut out = response::GetExecutors::default();
    for fw in st.frameworks.values() {
        for ex in fw.executors.values() {
            let e = response::get_executors::Executor {
                executor_info: ex.info.clone(),
            };
            if ex.phase == ExecutorPhase::Terminated {
                out.completed_executors.push(e);
            } else {
                out.executors.push(e);
            }
        }
        for ex in &fw.completed_executors {
            out.completed_executors
                .push(response::get_executors::Executor {
                    executor_info: ex.info.clone(),
                });
        }
    }
    for fw in &st.completed_frameworks {
        for ex in fw.executors.values().chain(fw.completed_executors.iter()) {
            out.completed_executors
                .push(response::get_executors::Executor {
                    executor_info: ex.info.clone(),
                });
        }
    }
    out
}

/// GET_FRAMEWORKS.
pub fn get_frameworks(st: &AgentState) -> response::GetFrameworks {
    response::GetFrameworks {
        frameworks: st
            .frameworks
            .values()
            .map(|f| response::get_frameworks::Framework {
                framework_info: f.info.clone(),
            })
            .collect(),
        completed_frameworks: st
            .completed_frameworks
            .iter()
            .map(|f| response::get_frameworks::Framework {
                framework_info: f.info.clone(),
            })
            .collect(),
    }
}

/// GET_CONTAINERS: one container per live executor, with its usage and
/// limits (ResourceStatistics) and its cgroup.
pub fn get_containers(agent: &Agent) -> response::GetContainers {
    let mut out = response::GetContainers::default();
    for c in agent.container_stats() {
        let container_id = v1::ContainerId {
            value: c.container_id.clone(),
            parent: None,
        };
        out.containers.push(response::get_containers::Container {
            framework_id: Some(c.framework_id),
            executor_id: Some(c.executor_id),
            executor_name: c.executor_name,
            container_id: container_id.clone(),
            container_status: Some(v1::ContainerStatus {
                container_id: Some(container_id),
                executor_pid: c.pid.and_then(|p| u32::try_from(p).ok()),
                ..Default::default()
            }),
            resource_statistics: Some(c.statistics),
        });
    }
    out
}

/// Resources in use: non-terminal tasks plus live executors' own.
pub fn used_resources(st: &AgentState) -> Resources {
    let mut used = Resources::new();
    for fw in st.frameworks.values() {
        for ex in fw
            .executors
            .values()
            .filter(|e| e.phase != ExecutorPhase::Terminated)
        {
            used.add_all(&Resources::from_vec(&ex.info.resources));
            for t in ex.tasks.values().filter(|t| !is_terminal(t.state)) {
                used.add_all(&Resources::from_vec(&t.resources));
            }
        }
    }
    used
}

fn count_tasks(st: &AgentState, state: TaskState) -> f64 {
    st.frameworks
        .values()
        .flat_map(|f| f.executors.values())
        .flat_map(|e| e.tasks.values())
        .filter(|t: &&Task| t.state == state as i32)
        .count() as f64
}

fn count_executors(st: &AgentState, phase: ExecutorPhase) -> f64 {
    st.frameworks
        .values()
        .flat_map(|f| f.executors.values())
        .filter(|e| e.phase == phase)
        .count() as f64
}

/// The agent's metrics, with Mesos' names.
pub fn metrics(agent: &Agent) -> Vec<(String, f64)> {
    let st = lock(&agent.state);
    let total = st.total.clone();
    let used = used_resources(&st);
    let mut m: Vec<(String, f64)> = vec![
        (
            "slave/uptime_secs".into(),
            (corral_api::ids::now_secs() - agent.config.start_time).max(0.0),
        ),
        (
            "slave/registered".into(),
            if st.registered { 1.0 } else { 0.0 },
        ),
        (
            "slave/frameworks_active".into(),
            st.frameworks.values().filter(|f| !f.terminating).count() as f64,
        ),
        (
            "slave/tasks_staging".into(),
            count_tasks(&st, TaskState::TaskStaging),
        ),
        (
            "slave/tasks_starting".into(),
            count_tasks(&st, TaskState::TaskStarting),
        ),
        (
            "slave/tasks_running".into(),
            count_tasks(&st, TaskState::TaskRunning),
        ),
        (
            "slave/tasks_killing".into(),
            count_tasks(&st, TaskState::TaskKilling),
        ),
        (
            "slave/executors_registering".into(),
            count_executors(&st, ExecutorPhase::Registering),
        ),
        (
            "slave/executors_running".into(),
            count_executors(&st, ExecutorPhase::Running),
        ),
        (
            "slave/executors_terminating".into(),
            count_executors(&st, ExecutorPhase::Terminating),
        ),
        (
            "slave/executors_terminated".into(),
            st.counters.executors_terminated as f64,
        ),
        ("slave/executors_preempted".into(), 0.0),
        (
            "slave/valid_status_updates".into(),
            st.counters.valid_status_updates as f64,
        ),
        (
            "slave/invalid_status_updates".into(),
            st.counters.invalid_status_updates as f64,
        ),
        (
            "slave/valid_framework_messages".into(),
            st.counters.valid_framework_messages as f64,
        ),
        (
            "slave/invalid_framework_messages".into(),
            st.counters.invalid_framework_messages as f64,
        ),
        ("slave/recovery_errors".into(), 0.0),
        ("system/cpus_total".into(), crate::resources::detect_cpus()),
    ];
    let f = agent.config.fetcher.stats();
    m.extend([
        (
            "containerizer/fetcher/cache_size_total_bytes".to_string(),
            f.cache_size_bytes as f64,
        ),
        (
            "containerizer/fetcher/cache_size_used_bytes".to_string(),
            f.cache_used_bytes as f64,
        ),
        (
            "containerizer/fetcher/cache_hits".to_string(),
            f.cache_hits as f64,
        ),
        (
            "containerizer/fetcher/cache_misses".to_string(),
            f.cache_misses as f64,
        ),
        (
            "containerizer/fetcher/task_fetches_failed".to_string(),
            f.failures as f64,
        ),
    ]);
    for (name, state) in [
        ("finished", "TASK_FINISHED"),
        ("failed", "TASK_FAILED"),
        ("killed", "TASK_KILLED"),
        ("lost", "TASK_LOST"),
        ("gone", "TASK_GONE"),
        ("dropped", "TASK_DROPPED"),
        ("error", "TASK_ERROR"),
    ] {
        let n = st.counters.terminal.get(state).copied().unwrap_or(0);
        m.push((format!("slave/tasks_{name}"), n as f64));
    }
    for name in ["cpus", "mem", "disk", "gpus"] {
        let t = total.scalar(name);
        let u = used.scalar(name);
        m.push((format!("slave/{name}_total"), t));
        m.push((format!("slave/{name}_used"), u));
        m.push((
            format!("slave/{name}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        ));
    }
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

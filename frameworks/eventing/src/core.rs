//! The publisher's pure core: operator events and SUBSCRIBED snapshots in,
//! CloudEvents out, and the state of what was last published per task,
//! agent and framework. No I/O, no clock (the caller passes `now`).
//!
//! The operator stream carries no sequence numbers, so after every
//! (re)subscription [`Core::on_subscribed`] compares the snapshot with what
//! was last published and emits the transitions that were missed. Ids are
//! derived from what an event says (kind, object, state, the status
//! update's uuid), so a transition emitted twice (live, then again by a
//! diff; or replayed after a restart) has one id.
//!
//! Per task, events go out in the task's lifecycle order: an update whose
//! state is behind the last published one (a RUNNING retried by an agent
//! after FINISHED was published) is dropped, never reordered; a terminal
//! state is final.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use corral_api::codec;
use corral_api::v1::{self, master as op};
use serde::{Deserialize, Serialize};

use crate::event::{event_id, hex, rfc3339, Change, CloudEvent, Kind};

/// Default bound of terminal tasks remembered.
pub const DEFAULT_MAX_TERMINAL_TASKS: usize = 100_000;

/// What was last published about a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its framework.
    pub framework_id: String,
    /// Its id.
    pub task_id: String,
    /// Its role.
    pub role: String,
    /// Its state after the last published event (TaskState number).
    pub state: i32,
    /// The id of the last published event.
    pub last_id: String,
}

/// What was last published about an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The id of the last published event.
    pub last_id: String,
}

/// What was last published about a framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// Its role.
    pub role: String,
    /// Its fingerprint (activity, connection and registration times).
    pub fingerprint: String,
    /// The id of the last published event.
    pub last_id: String,
}

/// The publisher's memory: what it last published per object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The master (MasterInfo.id) of the last SUBSCRIBED snapshot.
    pub master_id: Option<String>,
    /// Tasks by [`task_key`].
    pub tasks: BTreeMap<String, TaskRecord>,
    /// Agents by id.
    pub agents: BTreeMap<String, AgentRecord>,
    /// Frameworks by id.
    pub frameworks: BTreeMap<String, FrameworkRecord>,
    /// Terminal tasks, oldest first (bounds the memory of finished tasks).
    #[serde(default)]
    pub terminal: VecDeque<String>,
}

/// The key of a task: its framework and id.
pub fn task_key(framework_id: &str, task_id: &str) -> String {
    format!("{framework_id}/{task_id}")
}

/// The publisher's core.
#[derive(Clone, Debug)]
pub struct Core {
    source: String,
    max_terminal: usize,
    state: Published,
}

/// A task state's place in the lifecycle: 0 staging, 1 starting, 2 running
/// (and the other non-terminal states), 3 terminal.
pub fn rank(state: i32) -> u8 {
    use v1::TaskState as S;
    match S::try_from(state) {
        Ok(S::TaskStaging) => 0,
        Ok(S::TaskStarting) => 1,
        Ok(S::TaskRunning | S::TaskKilling | S::TaskUnreachable | S::TaskUnknown) => 2,
        Ok(_) => 3,
        Err(_) => 2,
    }
}

/// Whether a state is terminal.
pub fn is_terminal(state: i32) -> bool {
    rank(state) == 3
}

/// Whether an update to `new_state` (event id `new_id`) follows a task
/// whose last published state is `state` (event `last_id`): not the same
/// event, not behind in the lifecycle, nothing after a terminal state.
pub fn admits(state: i32, last_id: &str, new_state: i32, new_id: &str) -> bool {
    if new_id == last_id {
        return false;
    }
    let (a, b) = (rank(state), rank(new_state));
    b > a || (b == a && a < 3)
}

/// `TASK_RUNNING` for a TaskState number (`UNKNOWN_<n>` for others).
pub fn state_name(state: i32) -> String {
    v1::TaskState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("UNKNOWN_{state}"))
}

/// The id of a task update: the framework, task, state and the status
/// update's uuid (its timestamp when it has none), so an agent's retry of
/// one update keeps one id.
pub fn update_id(framework_id: &str, status: &v1::TaskStatus) -> String {
    let discriminator = match (&status.uuid, status.timestamp) {
        (Some(u), _) if !u.is_empty() => format!("u{}", hex(u)),
        (_, Some(t)) => format!("t{t}"),
        _ => String::new(),
    };
    event_id(&[
        "task.updated",
        framework_id,
        &status.task_id.value,
        &state_name(status.state),
        &discriminator,
    ])
}

fn task_added_id(framework_id: &str, task_id: &str) -> String {
    event_id(&["task.added", framework_id, task_id])
}

fn time_nanos(t: &Option<v1::TimeInfo>) -> String {
    t.as_ref()
        .map(|t| t.nanoseconds.to_string())
        .unwrap_or_default()
}

/// A framework's first role (`*` when it has none).
pub fn framework_role(info: &v1::FrameworkInfo) -> String {
    info.roles
        .first()
        .cloned()
        .or_else(|| info.role.clone())
        .unwrap_or_else(|| "*".to_string())
}

fn framework_fingerprint(f: &op::response::get_frameworks::Framework) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        f.active,
        f.connected,
        time_nanos(&f.registered_time),
        time_nanos(&f.reregistered_time),
        time_nanos(&f.unregistered_time)
    )
}

fn task_role(task: &v1::Task) -> Option<String> {
    task.resources.iter().find_map(|r| {
        r.allocation_info
            .as_ref()
            .and_then(|a| a.role.clone())
            .or_else(|| r.role.clone().filter(|role| role != "*"))
    })
}

impl Core {
    /// A core with nothing published yet.
    pub fn new(source: impl Into<String>, max_terminal: usize) -> Self {
        Self::with_state(source, max_terminal, Published::default())
    }

    /// A core that remembers `state`.
    pub fn with_state(source: impl Into<String>, max_terminal: usize, state: Published) -> Self {
        Self {
            source: source.into(),
            max_terminal: max_terminal.max(1),
            state,
        }
    }

    /// What was last published.
    pub fn state(&self) -> &Published {
        &self.state
    }

    /// Records that `event` was published (spooled): the only way the
    /// state changes, so replaying the spool rebuilds it.
    pub fn apply(&mut self, event: &CloudEvent) {
        let s = &mut self.state;
        match event.kind {
            Kind::Task => {
                let key = task_key(&event.framework_id, &event.object_id);
                let state = match event.change {
                    Change::Added => v1::TaskState::TaskStaging as i32,
                    _ => event
                        .state
                        .as_deref()
                        .and_then(v1::TaskState::from_str_name)
                        .map(|s| s as i32)
                        .unwrap_or(v1::TaskState::TaskUnknown as i32),
                };
                let rec = s.tasks.entry(key.clone()).or_insert_with(|| TaskRecord {
                    framework_id: event.framework_id.clone(),
                    task_id: event.object_id.clone(),
                    role: event.role.clone(),
                    state,
                    last_id: String::new(),
                });
                let was_terminal = is_terminal(rec.state) && !rec.last_id.is_empty();
                rec.state = state;
                rec.last_id = event.id.clone();
                if !event.role.is_empty() {
                    rec.role = event.role.clone();
                }
                if is_terminal(state) && !was_terminal {
                    s.terminal.push_back(key);
                }
                while s.terminal.len() > self.max_terminal {
                    if let Some(old) = s.terminal.pop_front() {
                        if s.tasks.get(&old).is_some_and(|t| is_terminal(t.state)) {
                            s.tasks.remove(&old);
                        }
                    }
                }
            }
            Kind::Agent => match event.change {
                Change::Removed => {
                    s.agents.remove(&event.object_id);
                }
                _ => {
                    s.agents.insert(
                        event.object_id.clone(),
                        AgentRecord {
                            last_id: event.id.clone(),
                        },
                    );
                }
            },
            Kind::Framework => match event.change {
                Change::Removed => {
                    s.frameworks.remove(&event.object_id);
                }
                _ => {
                    s.frameworks.insert(
                        event.object_id.clone(),
                        FrameworkRecord {
                            role: event.role.clone(),
                            fingerprint: event.fingerprint.clone(),
                            last_id: event.id.clone(),
                        },
                    );
                }
            },
        }
    }

    fn emit(&mut self, event: CloudEvent, out: &mut Vec<CloudEvent>) {
        self.apply(&event);
        out.push(event);
    }

    fn role_of(&self, framework_id: &str) -> String {
        self.state
            .frameworks
            .get(framework_id)
            .map(|f| f.role.clone())
            .unwrap_or_default()
    }

    fn task_added(&self, task: &v1::Task, now: f64) -> CloudEvent {
        let fid = &task.framework_id.value;
        let tid = &task.task_id.value;
        let time = task
            .statuses
            .first()
            .and_then(|s| s.timestamp)
            .unwrap_or(now);
        CloudEvent {
            id: task_added_id(fid, tid),
            kind: Kind::Task,
            change: Change::Added,
            source: self.source.clone(),
            time: rfc3339(time),
            subject: format!("tasks/{fid}/{tid}"),
            role: task_role(task).unwrap_or_else(|| self.role_of(fid)),
            framework_id: fid.clone(),
            object_id: tid.clone(),
            state: Some(state_name(task.state)),
            fingerprint: String::new(),
            data: codec::to_json_value(&op::event::TaskAdded { task: task.clone() }),
        }
    }

    /// The update of a task to `status` (with `latest` as the task's
    /// current state in the data), if it follows what was published.
    fn task_updated(
        &mut self,
        framework_id: &str,
        status: &v1::TaskStatus,
        latest: i32,
        now: f64,
        out: &mut Vec<CloudEvent>,
    ) {
        let tid = &status.task_id.value;
        let key = task_key(framework_id, tid);
        if !self.state.tasks.contains_key(&key) {
            // A task never seen added (adopted by a new master, or
            // forgotten): announce it first, so each task starts with
            // `added`.
            let task = v1::Task {
                task_id: status.task_id.clone(),
                framework_id: v1::FrameworkId {
                    value: framework_id.to_string(),
                },
                agent_id: status.agent_id.clone().unwrap_or_default(),
                executor_id: status.executor_id.clone(),
                state: latest,
                ..Default::default()
            };
            let mut added = self.task_added(&task, status.timestamp.unwrap_or(now));
            added.state = Some(state_name(v1::TaskState::TaskStaging as i32));
            self.emit(added, out);
        }
        let id = update_id(framework_id, status);
        let Some(rec) = self.state.tasks.get(&key) else {
            return;
        };
        if !admits(rec.state, &rec.last_id, status.state, &id) {
            return;
        }
        let role = rec.role.clone();
        let event = CloudEvent {
            id,
            kind: Kind::Task,
            change: Change::Updated,
            source: self.source.clone(),
            time: rfc3339(status.timestamp.unwrap_or(now)),
            subject: format!("tasks/{framework_id}/{tid}"),
            role,
            framework_id: framework_id.to_string(),
            object_id: tid.clone(),
            state: Some(state_name(status.state)),
            fingerprint: String::new(),
            data: codec::to_json_value(&op::event::TaskUpdated {
                framework_id: v1::FrameworkId {
                    value: framework_id.to_string(),
                },
                status: status.clone(),
                state: latest,
            }),
        };
        self.emit(event, out);
    }

    fn agent_added(&self, agent: &op::response::get_agents::Agent, now: f64) -> CloudEvent {
        let aid = agent
            .agent_info
            .id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let registered = agent
            .reregistered_time
            .as_ref()
            .or(agent.registered_time.as_ref())
            .map(|t| t.nanoseconds);
        CloudEvent {
            id: event_id(&[
                "agent.added",
                &aid,
                &registered.map(|n| n.to_string()).unwrap_or_default(),
            ]),
            kind: Kind::Agent,
            change: Change::Added,
            source: self.source.clone(),
            time: rfc3339(registered.map(|n| n as f64 / 1e9).unwrap_or(now)),
            subject: format!("agents/{aid}"),
            role: String::new(),
            framework_id: String::new(),
            object_id: aid,
            state: None,
            fingerprint: String::new(),
            data: codec::to_json_value(&op::event::AgentAdded {
                agent: agent.clone(),
            }),
        }
    }

    fn agent_removed(&self, agent_id: &str, now: f64) -> CloudEvent {
        let last = self
            .state
            .agents
            .get(agent_id)
            .map(|a| a.last_id.clone())
            .unwrap_or_default();
        CloudEvent {
            id: event_id(&["agent.removed", agent_id, &last]),
            kind: Kind::Agent,
            change: Change::Removed,
            source: self.source.clone(),
            time: rfc3339(now),
            subject: format!("agents/{agent_id}"),
            role: String::new(),
            framework_id: String::new(),
            object_id: agent_id.to_string(),
            state: None,
            fingerprint: String::new(),
            data: codec::to_json_value(&op::event::AgentRemoved {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
            }),
        }
    }

    fn framework_event(
        &self,
        change: Change,
        f: &op::response::get_frameworks::Framework,
        now: f64,
    ) -> CloudEvent {
        let fid = f
            .framework_info
            .id
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_default();
        let fingerprint = framework_fingerprint(f);
        let data = match change {
            Change::Added => codec::to_json_value(&op::event::FrameworkAdded {
                framework: f.clone(),
            }),
            _ => codec::to_json_value(&op::event::FrameworkUpdated {
                framework: f.clone(),
            }),
        };
        let time = f
            .reregistered_time
            .as_ref()
            .or(f.registered_time.as_ref())
            .map(|t| t.nanoseconds as f64 / 1e9)
            .unwrap_or(now);
        CloudEvent {
            id: event_id(&[&format!("framework.{change}"), &fid, &fingerprint]),
            kind: Kind::Framework,
            change,
            source: self.source.clone(),
            time: rfc3339(time),
            subject: format!("frameworks/{fid}"),
            role: framework_role(&f.framework_info),
            framework_id: fid.clone(),
            object_id: fid,
            state: None,
            fingerprint,
            data,
        }
    }

    fn framework_removed(&self, info: &v1::FrameworkInfo, now: f64) -> CloudEvent {
        let fid = info
            .id
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_default();
        let role = self
            .state
            .frameworks
            .get(&fid)
            .map(|f| f.role.clone())
            .unwrap_or_else(|| framework_role(info));
        CloudEvent {
            id: event_id(&["framework.removed", &fid]),
            kind: Kind::Framework,
            change: Change::Removed,
            source: self.source.clone(),
            time: rfc3339(now),
            subject: format!("frameworks/{fid}"),
            role,
            framework_id: fid.clone(),
            object_id: fid,
            state: None,
            fingerprint: String::new(),
            data: codec::to_json_value(&op::event::FrameworkRemoved {
                framework_info: info.clone(),
            }),
        }
    }

    /// The events one operator event stands for (none for HEARTBEAT, for a
    /// duplicate, or for an update behind what was published).
    pub fn on_event(&mut self, event: &op::Event, now: f64) -> Vec<CloudEvent> {
        use op::event::Type as T;
        let mut out = Vec::new();
        let ty = event
            .r#type
            .and_then(|t| T::try_from(t).ok())
            .unwrap_or(T::Unknown);
        match ty {
            T::TaskAdded => {
                if let Some(a) = &event.task_added {
                    let key = task_key(&a.task.framework_id.value, &a.task.task_id.value);
                    if !self.state.tasks.contains_key(&key) {
                        let ev = self.task_added(&a.task, now);
                        self.emit(ev, &mut out);
                    }
                }
            }
            T::TaskUpdated => {
                if let Some(u) = &event.task_updated {
                    self.task_updated(&u.framework_id.value, &u.status, u.state, now, &mut out);
                }
            }
            T::AgentAdded => {
                if let Some(a) = &event.agent_added {
                    let ev = self.agent_added(&a.agent, now);
                    let same = self
                        .state
                        .agents
                        .get(&ev.object_id)
                        .is_some_and(|r| r.last_id == ev.id);
                    if !same {
                        self.emit(ev, &mut out);
                    }
                }
            }
            T::AgentRemoved => {
                if let Some(r) = &event.agent_removed {
                    let ev = self.agent_removed(&r.agent_id.value, now);
                    self.emit(ev, &mut out);
                }
            }
            T::FrameworkAdded | T::FrameworkUpdated => {
                let (change, f) = match ty {
                    T::FrameworkAdded => (
                        Change::Added,
                        event.framework_added.as_ref().map(|a| &a.framework),
                    ),
                    _ => (
                        Change::Updated,
                        event.framework_updated.as_ref().map(|u| &u.framework),
                    ),
                };
                if let Some(f) = f {
                    let ev = self.framework_event(change, f, now);
                    let same = self
                        .state
                        .frameworks
                        .get(&ev.object_id)
                        .is_some_and(|r| r.last_id == ev.id);
                    if !same {
                        self.emit(ev, &mut out);
                    }
                }
            }
            T::FrameworkRemoved => {
                if let Some(r) = &event.framework_removed {
                    let ev = self.framework_removed(&r.framework_info, now);
                    self.emit(ev, &mut out);
                }
            }
            T::Subscribed | T::Heartbeat | T::Unknown => {}
        }
        out
    }

    /// The transitions a SUBSCRIBED snapshot shows that were not published:
    /// frameworks, agents and tasks never seen, task updates missed (from
    /// each task's status history), frameworks changed; and, when the
    /// snapshot comes from the same master as the last one (`master_id`),
    /// agents and frameworks that vanished. After a failover (another
    /// master) an absent agent or framework may still re-register, so
    /// nothing is said about it then; terminal tasks the new master does
    /// not know are forgotten.
    pub fn on_subscribed(
        &mut self,
        master_id: Option<&str>,
        snapshot: &op::response::GetState,
        now: f64,
    ) -> Vec<CloudEvent> {
        let mut out = Vec::new();
        let same_master = master_id.is_some() && self.state.master_id.as_deref() == master_id;

        // Frameworks.
        let empty_fw = op::response::GetFrameworks::default();
        let fws = snapshot.get_frameworks.as_ref().unwrap_or(&empty_fw);
        let mut seen_fw = BTreeSet::new();
        for f in &fws.frameworks {
            let ev = self.framework_event(Change::Added, f, now);
            seen_fw.insert(ev.object_id.clone());
            match self.state.frameworks.get(&ev.object_id) {
                None => self.emit(ev, &mut out),
                Some(rec) if rec.fingerprint != ev.fingerprint => {
                    let upd = self.framework_event(Change::Updated, f, now);
                    self.emit(upd, &mut out);
                }
                Some(_) => {}
            }
        }

        // Agents.
        let empty_ag = op::response::GetAgents::default();
        let agents = snapshot.get_agents.as_ref().unwrap_or(&empty_ag);
        let mut seen_agents = BTreeSet::new();
        for a in &agents.agents {
            let ev = self.agent_added(a, now);
            seen_agents.insert(ev.object_id.clone());
            if !self.state.agents.contains_key(&ev.object_id) {
                self.emit(ev, &mut out);
            }
        }
        for info in &agents.recovered_agents {
            if let Some(id) = &info.id {
                seen_agents.insert(id.value.clone());
            }
        }

        // Tasks, each with the updates it went through since the last one
        // published.
        let empty_tasks = op::response::GetTasks::default();
        let tasks = snapshot.get_tasks.as_ref().unwrap_or(&empty_tasks);
        let mut seen_tasks = BTreeSet::new();
        for task in tasks
            .pending_tasks
            .iter()
            .chain(&tasks.tasks)
            .chain(&tasks.unreachable_tasks)
            .chain(&tasks.completed_tasks)
        {
            let fid = task.framework_id.value.clone();
            let key = task_key(&fid, &task.task_id.value);
            if !seen_tasks.insert(key.clone()) {
                continue;
            }
            if !self.state.tasks.contains_key(&key) {
                let ev = self.task_added(task, now);
                self.emit(ev, &mut out);
            }
            let statuses: Vec<v1::TaskStatus> = if task.statuses.is_empty() {
                if task.state == v1::TaskState::TaskStaging as i32 {
                    Vec::new()
                } else {
                    vec![v1::TaskStatus {
                        task_id: task.task_id.clone(),
                        state: task.state,
                        agent_id: Some(task.agent_id.clone()),
                        executor_id: task.executor_id.clone(),
                        uuid: task.status_update_uuid.clone(),
                        ..Default::default()
                    }]
                }
            } else {
                task.statuses.clone()
            };
            let last_id = self
                .state
                .tasks
                .get(&key)
                .map(|r| r.last_id.clone())
                .unwrap_or_default();
            let start = statuses
                .iter()
                .position(|s| update_id(&fid, s) == last_id)
                .map(|p| p + 1)
                .unwrap_or(0);
            for s in &statuses[start..] {
                self.task_updated(&fid, s, task.state, now, &mut out);
            }
        }

        // What vanished.
        let vanished_tasks: Vec<String> = self
            .state
            .tasks
            .iter()
            .filter(|(k, t)| !seen_tasks.contains(*k) && (same_master || is_terminal(t.state)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in vanished_tasks {
            self.state.tasks.remove(&k);
        }
        self.state
            .terminal
            .retain(|k| self.state.tasks.contains_key(k));
        if same_master {
            let gone: Vec<String> = self
                .state
                .agents
                .keys()
                .filter(|a| !seen_agents.contains(*a))
                .cloned()
                .collect();
            for a in gone {
                let ev = self.agent_removed(&a, now);
                self.emit(ev, &mut out);
            }
        }
        let mut removed_fw = BTreeSet::new();
        for f in &fws.completed_frameworks {
            let Some(fid) = f.framework_info.id.as_ref().map(|i| i.value.clone()) else {
                continue;
            };
            if !seen_fw.contains(&fid) && self.state.frameworks.contains_key(&fid) {
                let ev = self.framework_removed(&f.framework_info, now);
                removed_fw.insert(fid);
                self.emit(ev, &mut out);
            }
        }
        if same_master {
            let gone: Vec<(String, String)> = self
                .state
                .frameworks
                .iter()
                .filter(|(id, _)| !seen_fw.contains(*id) && !removed_fw.contains(*id))
                .map(|(id, r)| (id.clone(), r.role.clone()))
                .collect();
            for (fid, role) in gone {
                let info = v1::FrameworkInfo {
                    id: Some(v1::FrameworkId { value: fid }),
                    roles: vec![role],
                    ..Default::default()
                };
                let ev = self.framework_removed(&info, now);
                self.emit(ev, &mut out);
            }
        }
        if let Some(m) = master_id {
            self.state.master_id = Some(m.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! The agent's bookkeeping (frameworks, executors, tasks) and everything it
//! does in answer to the master, to executors and to process exits.
//!
//! One `Mutex<State>` guards the bookkeeping and a second one the status
//! update manager; whenever both are held, `state` is locked first. Neither
//! is held across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use corral_api::internal::{self, agent_message, master_message, AgentMessage};
use corral_api::resources::Resources;
use corral_api::v1::executor::{self as exec, event};
use corral_api::v1::{
    self, executor_info, framework_info, task_status, AgentId, AgentInfo, ExecutorId, ExecutorInfo,
    FrameworkId, FrameworkInfo, Task, TaskGroupInfo, TaskInfo, TaskState, TaskStatus,
};
use corral_api::{ids, stout};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::checkpoint::{Checkpoint, ContainerRecord, RunKind};
use crate::containerizer::{self, LaunchSpec, ProcessHandle};
use crate::fetcher::Fetcher;
use crate::isolation::{CgroupSpec, Isolation};
use crate::launcher::RLimit;
use crate::paths;
use crate::status_updates::{is_terminal, Acked, StatusUpdateManager};
use crate::volumes::{self, VolumeUse};

/// Completed tasks kept per executor (Mesos keeps 200).
const MAX_COMPLETED_TASKS: usize = 200;
/// Completed executors kept per framework (Mesos keeps 150).
const MAX_COMPLETED_EXECUTORS: usize = 150;
/// Completed frameworks kept (Mesos keeps 50).
const MAX_COMPLETED_FRAMEWORKS: usize = 50;
/// Statuses kept per task.
const MAX_STATUSES: usize = 50;
/// CPU allowance Mesos adds to a command executor's container.
pub const COMMAND_EXECUTOR_CPUS: f64 = 0.1;
/// Memory allowance (MB) Mesos adds to a command executor's container.
pub const COMMAND_EXECUTOR_MEM_MB: f64 = 32.0;

/// Locks a mutex, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The agent's settings, fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--work_dir`.
    pub work_dir: PathBuf,
    /// The bound HTTP address (ip:port) advertised to master and executors.
    pub address: SocketAddr,
    /// Advertised hostname.
    pub hostname: String,
    /// Total resources.
    pub resources: Vec<v1::Resource>,
    /// Attributes.
    pub attributes: Vec<v1::Attribute>,
    /// Program run as `<launcher> executor`.
    pub launcher: PathBuf,
    /// Program run as `<launcher> launcher --config ...` to set up each
    /// container (a corral binary); `None` starts executors directly.
    pub container_launcher: Option<PathBuf>,
    /// `--executor_registration_timeout`.
    pub executor_registration_timeout: Duration,
    /// `--executor_shutdown_grace_period`.
    pub executor_shutdown_grace_period: Duration,
    /// `--registration_backoff_factor`.
    pub registration_backoff_factor: Duration,
    /// The master as host:port.
    pub master: String,
    /// Flags as reported by GET_FLAGS and /state.
    pub flags: Vec<(String, String)>,
    /// Seconds since the epoch when the agent started.
    pub start_time: f64,
    /// The Mesos containerizer's isolators.
    pub isolation: Isolation,
    /// `--cgroups_root`.
    pub cgroups_root: String,
    /// The Docker engine's socket when the docker containerizer is on.
    pub docker_socket: Option<PathBuf>,
    /// `--docker_kill_orphans`.
    pub docker_kill_orphans: bool,
    /// The fetcher and its cache.
    pub fetcher: Arc<Fetcher>,
    /// Where checkpoints go.
    pub checkpoint: Checkpoint,
    /// `--recovery_timeout` (MESOS_RECOVERY_TIMEOUT of executors).
    pub recovery_timeout: Duration,
    /// `--executor_reregistration_timeout`.
    pub executor_reregistration_timeout: Duration,
    /// `--container_disk_watch_interval`.
    pub disk_watch_interval: Duration,
    /// `--switch_user`.
    pub switch_user: bool,
    /// `--hdfs_volume_root`.
    pub hdfs_volume_root: Option<String>,
    /// `--hdfs_lease_timeout`.
    pub hdfs_lease_timeout: Duration,
    /// `--hdfs_writeback_interval`.
    pub hdfs_writeback_interval: Duration,
    /// `--gc_delay`.
    pub gc_delay: Duration,
}

impl Config {
    /// `ip:port`.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }

    /// The libprocess-style pid `slave(1)@ip:port`.
    pub fn pid(&self) -> String {
        format!("slave(1)@{}", self.address)
    }
}

/// How an executor is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Corral's command executor for a task without an executor.
    Command,
    /// Corral's default executor for task groups.
    Default,
    /// The framework's own executor command.
    Custom,
}

/// Lifecycle of an executor run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorPhase {
    /// Started, not subscribed yet.
    Registering,
    /// Subscribed.
    Running,
    /// Being shut down.
    Terminating,
    /// The process exited.
    Terminated,
}

/// Something waiting for the executor to subscribe.
#[derive(Debug, Clone)]
pub enum Queued {
    /// A single task (LAUNCH).
    Task(TaskInfo),
    /// A task group (LAUNCH_GROUP).
    Group(TaskGroupInfo),
}

impl Queued {
    fn task_ids(&self) -> Vec<&str> {
        match self {
            Queued::Task(t) => vec![t.task_id.value.as_str()],
            Queued::Group(g) => g.tasks.iter().map(|t| t.task_id.value.as_str()).collect(),
        }
    }
}

/// One executor run.
#[derive(Debug)]
pub struct Executor {
    /// Its ExecutorInfo (synthesised for command tasks).
    pub info: ExecutorInfo,
    /// How it is run.
    pub kind: ExecutorKind,
    /// Where it is in its life.
    pub phase: ExecutorPhase,
    /// The container id (a UUID), also the run directory's name.
    pub container_id: String,
    /// The sandbox.
    pub directory: PathBuf,
    /// Launches waiting for SUBSCRIBE.
    pub queued: Vec<Queued>,
    /// Tasks not yet completed (queued ones are TASK_STAGING).
    pub tasks: BTreeMap<String, Task>,
    /// Terminal tasks whose updates were all acknowledged.
    pub completed_tasks: VecDeque<Task>,
    /// The subscription stream, when subscribed.
    pub events: Option<mpsc::UnboundedSender<exec::Event>>,
    /// The process.
    pub process: Option<ProcessHandle>,
    /// Raw wait status once it exited.
    pub exit_status: Option<i32>,
    /// The framework checkpoints: this executor's state is on disk.
    pub checkpoint: bool,
    /// Limits of the container (executor + tasks).
    pub limits: Limits,
    /// The container's cgroups.
    pub cgroup: Option<CgroupSpec>,
    /// The Docker container of a Docker task.
    pub docker_container: Option<String>,
    /// That container's own cgroup (for its usage), once resolved.
    pub docker_cgroup: Option<CgroupSpec>,
    /// Why the container was (or is being) destroyed by the agent.
    pub termination: Option<Termination>,
    /// Recovered from a checkpoint after an agent restart.
    pub recovered: bool,
    /// Sandbox usage measured by disk/du.
    pub disk_used: Option<u64>,
    /// Persistent volumes bind-mounted into the sandbox (mount points).
    pub volume_mounts: Vec<PathBuf>,
}

/// Resources a container is limited to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// cpus.
    pub cpus: f64,
    /// mem in MB.
    pub mem_mb: f64,
    /// disk in MB.
    pub disk_mb: f64,
}

impl Limits {
    /// The limits of a container's resources. Persistent volumes do not
    /// count against the sandbox's disk: their data lives outside it.
    pub fn of(resources: &[v1::Resource]) -> Self {
        let r = Resources::from_vec(resources);
        let volumes: f64 = resources
            .iter()
            .filter(|r| r.name == "disk" && corral_api::operations::is_persistent_volume(r))
            .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
            .sum();
        Limits {
            cpus: r.scalar("cpus"),
            mem_mb: r.scalar("mem"),
            disk_mb: corral_api::resources::round_scalar((r.scalar("disk") - volumes).max(0.0)),
        }
    }

    fn add(&mut self, other: Limits) {
        self.cpus += other.cpus;
        self.mem_mb += other.mem_mb;
        self.disk_mb += other.disk_mb;
    }
}

/// Why the agent ended a container; open tasks get this status.
#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    /// Terminal state for its open tasks.
    pub state: TaskState,
    /// The reason.
    pub reason: task_status::Reason,
    /// The message.
    pub message: String,
    /// For container limitations: the resource that was exceeded.
    pub limitation: Option<v1::TaskResourceLimitation>,
}

/// Formats MB the way Mesos' Bytes does (`64MB`, `1GB`).
pub fn format_mb(mb: f64) -> String {
    if mb >= 1024.0 && (mb / 1024.0).fract() == 0.0 {
        format!("{}GB", mb / 1024.0)
    } else if mb.fract() == 0.0 {
        format!("{mb}MB")
    } else {
        format!("{mb:.2}MB")
    }
}

/// The memory limitation of a container: TASK_FAILED with
/// REASON_CONTAINER_LIMITATION_MEMORY.
pub fn memory_limitation(limit_mb: f64, max_used_bytes: Option<u64>) -> Termination {
    let used = max_used_bytes
        .map(|b| format_mb((b as f64 / (1024.0 * 1024.0)).round()))
        .unwrap_or_else(|| format_mb(limit_mb));
    Termination {
        state: TaskState::TaskFailed,
        reason: task_status::Reason::ContainerLimitationMemory,
        message: format!(
            "Memory limit exceeded: Requested: {} Maximum Used: {used}",
            format_mb(limit_mb)
        ),
        limitation: Some(v1::TaskResourceLimitation {
            resources: vec![corral_api::resources::scalar("mem", limit_mb)],
        }),
    }
}

/// The disk limitation of a container: TASK_FAILED with
/// REASON_CONTAINER_LIMITATION_DISK.
pub fn disk_limitation(limit_mb: f64, used_bytes: u64) -> Termination {
    Termination {
        state: TaskState::TaskFailed,
        reason: task_status::Reason::ContainerLimitationDisk,
        message: format!(
            "Disk usage ({}) exceeds quota ({})",
            format_mb((used_bytes as f64 / (1024.0 * 1024.0)).ceil()),
            format_mb(limit_mb)
        ),
        limitation: Some(v1::TaskResourceLimitation {
            resources: vec![corral_api::resources::scalar("disk", limit_mb)],
        }),
    }
}

impl Executor {
    fn send(&self, event: exec::Event) -> bool {
        self.events
            .as_ref()
            .is_some_and(|tx| tx.send(event).is_ok())
    }

    fn is_queued(&self, task_id: &str) -> bool {
        self.queued.iter().any(|q| q.task_ids().contains(&task_id))
    }

    fn grace_period(&self, default: Duration) -> Duration {
        self.info
            .shutdown_grace_period
            .as_ref()
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
            .unwrap_or(default)
    }
}

/// A framework with executors on this agent.
#[derive(Debug)]
pub struct Framework {
    /// Latest FrameworkInfo.
    pub info: FrameworkInfo,
    /// Shut down by the master: its updates are no longer forwarded.
    pub terminating: bool,
    /// Current executors by id.
    pub executors: BTreeMap<String, Executor>,
    /// Finished executor runs.
    pub completed_executors: VecDeque<Executor>,
}

impl Framework {
    fn executor_of_task(&self, task_id: &str) -> Option<String> {
        self.executors
            .iter()
            .find(|(_, e)| e.tasks.contains_key(task_id))
            .map(|(id, _)| id.clone())
    }

    fn partition_aware(&self) -> bool {
        self.info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(framework_info::capability::Type::PartitionAware as i32))
    }

    fn has_task(&self, task_id: &str) -> bool {
        self.executors
            .values()
            .any(|e| e.tasks.contains_key(task_id))
    }
}

/// Cumulative counters for `/metrics/snapshot`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Terminal task counts by state name.
    pub terminal: BTreeMap<&'static str, u64>,
    /// Executor UPDATE calls accepted.
    pub valid_status_updates: u64,
    /// Executor UPDATE calls refused.
    pub invalid_status_updates: u64,
    /// Framework messages delivered.
    pub valid_framework_messages: u64,
    /// Framework messages dropped.
    pub invalid_framework_messages: u64,
    /// Executors that exited.
    pub executors_terminated: u64,
}

/// All bookkeeping.
#[derive(Debug, Default)]
pub struct State {
    /// Assigned by the master on first registration, kept for life.
    pub agent_id: Option<AgentId>,
    /// The master we are registered with.
    pub master_info: Option<v1::MasterInfo>,
    /// Whether a master session is registered now.
    pub registered: bool,
    /// Highest master epoch seen.
    pub highest_epoch: u64,
    /// Frameworks with executors here.
    pub frameworks: BTreeMap<String, Framework>,
    /// Frameworks whose executors all finished.
    pub completed_frameworks: VecDeque<Framework>,
    /// Metrics counters.
    pub counters: Counters,
    /// Tasks whose checkpoint could not be recovered, reported lost; kept
    /// in re-registrations until their TASK_LOST is acknowledged.
    pub lost_tasks: Vec<Task>,
    /// The agent's total: `--resources` with the checkpointed dynamic
    /// reservations and persistent volumes applied.
    pub total: Resources,
    /// Operations (with a framework and an id) whose latest status the
    /// master has not acknowledged yet, by operation uuid.
    pub operations: BTreeMap<Vec<u8>, v1::Operation>,
    /// The latest updates of recently applied operations, to answer a
    /// repeated ApplyOperation without applying it twice.
    pub recent_operations: VecDeque<(Vec<u8>, internal::OperationStatusUpdate)>,
}

/// An error answered to an executor or operator call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// 400 with the message.
    #[error("{0}")]
    BadRequest(String),
}

/// The agent.
pub struct Agent {
    /// Settings.
    pub config: Config,
    /// Bookkeeping.
    pub state: Mutex<State>,
    /// Unacknowledged status updates.
    pub sum: Arc<Mutex<StatusUpdateManager>>,
    /// Wakes the retry loop when deadlines move.
    pub sum_wake: Arc<Notify>,
    master: Mutex<Option<mpsc::UnboundedSender<AgentMessage>>>,
    /// Master messages queued behind an operation in progress (applied in
    /// order by one worker; see `master::dispatch`).
    pub(crate) work: Mutex<Option<mpsc::UnboundedSender<master_message::Message>>>,
    /// Messages handed to that worker and not finished yet.
    pub(crate) work_pending: AtomicUsize,
    /// HDFS-backed volumes (leases, write-back).
    pub hdfs: crate::hdfs_volumes::HdfsVolumes,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn event(ty: event::Type) -> exec::Event {
    exec::Event {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

fn task_state_name(state: i32) -> &'static str {
    TaskState::try_from(state).map_or("TASK_UNKNOWN", |s| s.as_str_name())
}

impl Agent {
    /// A fresh agent with no master session.
    pub fn new(config: Config) -> Arc<Self> {
        let state = State {
            total: Resources::from_vec(&config.resources),
            ..State::default()
        };
        Arc::new(Self {
            hdfs: crate::hdfs_volumes::HdfsVolumes::new(&config),
            config,
            state: Mutex::new(state),
            sum: Arc::new(Mutex::new(StatusUpdateManager::new())),
            sum_wake: Arc::new(Notify::new()),
            master: Mutex::new(None),
            work: Mutex::new(None),
            work_pending: AtomicUsize::new(0),
        })
    }

    // ----- master link -------------------------------------------------

    /// Sends to the master when a session is registered; dropped otherwise
    /// (status updates are resent after re-registration).
    pub fn send_to_master(&self, message: agent_message::Message) {
        let link = lock(&self.master);
        match link.as_ref() {
            Some(tx) => {
                let _ = tx.send(AgentMessage {
                    message: Some(message),
                });
            }
            None => tracing::debug!("no registered master, dropping message"),
        }
    }

    /// The RegisterAgent message for the current state.
    pub fn register_message(&self) -> internal::RegisterAgent {
        let st = lock(&self.state);
        let sum = lock(&self.sum);
        let mut frameworks = Vec::new();
        let mut executors = Vec::new();
        let mut tasks = Vec::new();
        for (fw_id, fw) in &st.frameworks {
            if fw.terminating {
                continue;
            }
            frameworks.push(fw.info.clone());
            for ex in fw.executors.values() {
                // Mesos does not report executors generated for command tasks.
                if ex.kind != ExecutorKind::Command && ex.phase != ExecutorPhase::Terminated {
                    executors.push(ex.info.clone());
                }
                for task in ex.tasks.values() {
                    let mut t = task.clone();
                    if let Some(head) = sum.head(fw_id, &t.task_id.value) {
                        t.status_update_state = Some(head.state);
                        t.status_update_uuid = head.uuid.clone();
                    }
                    tasks.push(t);
                }
            }
        }
        for t in &st.lost_tasks {
            if let Some(head) = sum.head(&t.framework_id.value, &t.task_id.value) {
                let mut t = t.clone();
                t.status_update_state = Some(head.state);
                t.status_update_uuid = head.uuid.clone();
                tasks.push(t);
            }
        }
        internal::RegisterAgent {
            agent_info: self.agent_info(&st),
            version: corral_api::VERSION.to_string(),
            endpoint: self.config.endpoint(),
            frameworks,
            executors,
            tasks,
            total_resources: st.total.to_vec(),
            operations: st.operations.values().cloned().collect(),
        }
    }

    /// This agent's AgentInfo.
    pub fn agent_info(&self, st: &State) -> AgentInfo {
        AgentInfo {
            hostname: self.config.hostname.clone(),
            port: Some(i32::from(self.config.address.port())),
            resources: self.config.resources.clone(),
            attributes: self.config.attributes.clone(),
            id: st.agent_id.clone(),
            domain: None,
        }
    }

    /// Checks a master message's epoch; false when it is older than the
    /// highest seen (the message must be dropped).
    pub fn accept_epoch(&self, epoch: Option<u64>) -> bool {
        let mut st = lock(&self.state);
        match epoch {
            Some(e) if e < st.highest_epoch => false,
            Some(e) => {
                st.highest_epoch = e;
                true
            }
            None => true,
        }
    }

    /// Applies `Registered` and makes `link` the channel to the master.
    /// Unacknowledged status updates are resent.
    pub fn registered(
        &self,
        reg: &internal::Registered,
        link: mpsc::UnboundedSender<AgentMessage>,
    ) {
        {
            let mut st = lock(&self.state);
            match &st.agent_id {
                None => {
                    tracing::info!(agent_id = %reg.agent_id.value, "registered with master");
                    st.agent_id = Some(reg.agent_id.clone());
                }
                Some(id) if *id == reg.agent_id => {
                    tracing::info!(agent_id = %id.value, "re-registered with master");
                }
                Some(id) => {
                    tracing::error!(
                        agent_id = %id.value,
                        assigned = %reg.agent_id.value,
                        "master assigned a different agent id on re-registration, keeping ours"
                    );
                }
            }
            st.master_info = Some(reg.master_info.clone());
            st.registered = true;
            // Mesos always checkpoints the agent's info: a restart keeps the id.
            if let Err(e) = self.config.checkpoint.write_agent(&self.agent_info(&st)) {
                tracing::error!(error = %e, "cannot checkpoint the agent info");
            }
        }
        *lock(&self.master) = Some(link);
        let resend = lock(&self.sum).resend_all(Instant::now());
        if !resend.is_empty() {
            tracing::info!(
                count = resend.len(),
                "resending unacknowledged status updates"
            );
        }
        for update in resend {
            self.send_to_master(agent_message::Message::StatusUpdate(update));
        }
        self.sum_wake.notify_one();
        self.resend_operation_updates();
    }

    /// The master session ended.
    pub fn master_lost(&self) {
        *lock(&self.master) = None;
        lock(&self.state).registered = false;
    }

    // ----- status updates ----------------------------------------------

    fn agent_status(
        st: &State,
        task_id: &v1::TaskId,
        executor_id: Option<&ExecutorId>,
        state: TaskState,
        reason: task_status::Reason,
        message: impl Into<String>,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task_id.clone(),
            state: state as i32,
            message: Some(message.into()),
            source: Some(task_status::Source::Agent as i32),
            reason: Some(reason as i32),
            agent_id: st.agent_id.clone(),
            executor_id: executor_id.cloned(),
            timestamp: Some(ids::now_secs()),
            uuid: Some(ids::new_uuid_bytes()),
            ..Default::default()
        }
    }

    /// Records a status on its task and hands it to the status update
    /// manager (forwarding it when it is the head of its stream).
    fn emit(&self, st: &mut State, fw_id: &str, status: TaskStatus) {
        let task_id = status.task_id.value.clone();
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            tracing::warn!(framework_id = fw_id, task_id = %task_id, "status update for unknown framework dropped");
            return;
        };
        if fw.terminating {
            return;
        }
        let framework_id = fw
            .info
            .id
            .clone()
            .unwrap_or_else(|| ids::framework_id(fw_id));
        let mut executor_id = status.executor_id.clone();
        if let Some(ex_id) = fw.executor_of_task(&task_id) {
            if let Some(task) = fw
                .executors
                .get_mut(&ex_id)
                .and_then(|e| e.tasks.get_mut(&task_id))
            {
                task.state = status.state;
                let mut recorded = status.clone();
                recorded.data = None;
                task.statuses.push(recorded);
                if task.statuses.len() > MAX_STATUSES {
                    task.statuses.remove(0);
                }
            }
            executor_id.get_or_insert_with(|| ids::executor_id(ex_id));
        }
        if is_terminal(status.state) {
            *st.counters
                .terminal
                .entry(task_state_name(status.state))
                .or_default() += 1;
            // A task that used HDFS-backed volumes ended: write them back.
            let hdfs: Vec<VolumeUse> = fw
                .executors
                .values()
                .find_map(|e| e.tasks.get(&task_id))
                .map(|t| volumes::volumes_of(&t.resources))
                .unwrap_or_default()
                .into_iter()
                .filter(|v| v.hdfs)
                .collect();
            if !hdfs.is_empty() {
                self.hdfs.write_back_later(hdfs);
            }
        }
        tracing::info!(
            framework_id = fw_id,
            task_id = %task_id,
            state = task_state_name(status.state),
            "status update"
        );
        let forward = lock(&self.sum).update(&framework_id, executor_id, status, Instant::now());
        // Checkpointed before it is forwarded (and acknowledged to the executor).
        self.checkpoint_task(st, fw_id, &task_id);
        match forward {
            Ok(Some(msg)) => self.send_to_master(agent_message::Message::StatusUpdate(msg)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "status update dropped"),
        }
        self.sum_wake.notify_one();
    }

    /// Writes a checkpointing framework's task record and its
    /// unacknowledged updates.
    fn checkpoint_task(&self, st: &State, fw_id: &str, task_id: &str) {
        let Some(agent_id) = st.agent_id.as_ref().map(|a| a.value.as_str()) else {
            return;
        };
        let Some(fw) = st.frameworks.get(fw_id) else {
            return;
        };
        let Some(ex) = fw
            .executors
            .values()
            .find(|e| e.checkpoint && e.tasks.contains_key(task_id))
        else {
            return;
        };
        let Some(task) = ex.tasks.get(task_id) else {
            return;
        };
        let pending = lock(&self.sum).pending_updates(fw_id, task_id);
        let cp = &self.config.checkpoint;
        let ex_id = &ex.info.executor_id.value;
        let result = cp
            .write_task(agent_id, ex_id, &ex.container_id, task)
            .and_then(|_| {
                cp.write_updates(agent_id, fw_id, ex_id, &ex.container_id, task_id, &pending)
            });
        if let Err(e) = result {
            tracing::error!(framework_id = fw_id, task_id, error = %e, "checkpoint failed");
        }
    }

    /// Writes a checkpointing framework's framework, executor and container
    /// records.
    fn checkpoint_executor(&self, agent_id: &str, fw: &FrameworkInfo, ex: &Executor) {
        if !ex.checkpoint {
            return;
        }
        let fw_id = fw.id.as_ref().map(|i| i.value.as_str()).unwrap_or("");
        let cp = &self.config.checkpoint;
        let pid = ex.process.as_ref().map(|p| p.pid());
        let record = ContainerRecord {
            container_id: ex.container_id.clone(),
            kind: match ex.kind {
                ExecutorKind::Command => RunKind::Command,
                ExecutorKind::Default => RunKind::Default,
                ExecutorKind::Custom => RunKind::Custom,
            },
            pid,
            pid_start_time: pid.and_then(containerizer::start_time),
            directory: ex.directory.clone(),
            cgroup: ex.cgroup.clone(),
            docker_container: ex.docker_container.clone(),
            cpus: ex.limits.cpus,
            mem_mb: ex.limits.mem_mb,
            disk_mb: ex.limits.disk_mb,
            volume_mounts: ex.volume_mounts.clone(),
        };
        let result = cp
            .write_framework(agent_id, fw)
            .and_then(|_| cp.write_executor(agent_id, fw_id, &ex.info))
            .and_then(|_| cp.write_container(agent_id, fw_id, &ex.info.executor_id.value, &record));
        if let Err(e) = result {
            tracing::error!(framework_id = fw_id, executor_id = %ex.info.executor_id.value, error = %e, "checkpoint failed");
        }
    }

    /// Moves a terminal task without pending updates to completed, then the
    /// executor and framework when nothing of them remains.
    fn maybe_complete(&self, st: &mut State, fw_id: &str, task_id: Option<&str>) {
        let sum = lock(&self.sum);
        let agent_id = st
            .agent_id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            return;
        };
        if let Some(task_id) = task_id {
            if let Some(ex_id) = fw.executor_of_task(task_id) {
                if let Some(ex) = fw.executors.get_mut(&ex_id) {
                    let done = ex.tasks.get(task_id).is_some_and(|t| {
                        (is_terminal(t.state) || fw.terminating) && !sum.has_pending(fw_id, task_id)
                    });
                    if done {
                        if let Some(task) = ex.tasks.remove(task_id) {
                            ex.completed_tasks.push_back(task);
                            if ex.completed_tasks.len() > MAX_COMPLETED_TASKS {
                                ex.completed_tasks.pop_front();
                            }
                        }
                    }
                }
            }
        }
        let finished: Vec<String> = fw
            .executors
            .iter()
            .filter(|(_, e)| {
                e.phase == ExecutorPhase::Terminated && e.tasks.is_empty() && e.queued.is_empty()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            if let Some(ex) = fw.executors.remove(&id) {
                if ex.checkpoint {
                    self.config
                        .checkpoint
                        .remove_run(&agent_id, fw_id, &id, &ex.container_id);
                }
                self.schedule_gc(ex.directory.clone());
                fw.completed_executors.push_back(ex);
                if fw.completed_executors.len() > MAX_COMPLETED_EXECUTORS {
                    fw.completed_executors.pop_front();
                }
            }
        }
        if fw.executors.is_empty() {
            if let Some(fw) = st.frameworks.remove(fw_id) {
                if fw.info.checkpoint.unwrap_or(false) {
                    self.config.checkpoint.remove_framework(&agent_id, fw_id);
                }
                tracing::info!(framework_id = fw_id, "framework has no executors left");
                st.completed_frameworks.push_back(fw);
                if st.completed_frameworks.len() > MAX_COMPLETED_FRAMEWORKS {
                    st.completed_frameworks.pop_front();
                }
            }
        }
    }

    /// Removes a finished run's sandbox after `--gc_delay`; whatever is
    /// mounted in it (a persistent volume) is unmounted first and its data
    /// is never touched.
    fn schedule_gc(&self, sandbox: PathBuf) {
        let delay = self.config.gc_delay;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let dir = sandbox.clone();
            match tokio::task::spawn_blocking(move || volumes::remove_sandbox(&dir)).await {
                Ok(Ok(())) => tracing::info!(sandbox = %sandbox.display(), "garbage-collected sandbox"),
                Ok(Err(e)) => tracing::warn!(sandbox = %sandbox.display(), error = %e, "cannot garbage-collect sandbox"),
                Err(e) => tracing::warn!(error = %e, "sandbox garbage collection panicked"),
            }
        });
    }

    /// The master acknowledged a status update.
    pub fn acknowledge(&self, ack: &internal::AcknowledgeUpdate) {
        let fw_id = ack.framework_id.value.as_str();
        let task_id = ack.task_id.value.as_str();
        let mut st = lock(&self.state);
        let outcome = lock(&self.sum).acknowledge(fw_id, task_id, &ack.uuid, Instant::now());
        match outcome {
            Acked::Ignored => {
                tracing::debug!(
                    framework_id = fw_id,
                    task_id,
                    "ignoring acknowledgement of unknown update"
                );
            }
            Acked::Done { next, empty, .. } => {
                self.checkpoint_task(&st, fw_id, task_id);
                if let Some(next) = next {
                    self.send_to_master(agent_message::Message::StatusUpdate(next));
                }
                if empty {
                    self.maybe_complete(&mut st, fw_id, Some(task_id));
                }
                self.sum_wake.notify_one();
            }
        }
    }

    // ----- master commands ---------------------------------------------

    /// RunTask: book the task(s), start the executor if needed, queue or
    /// send the launch.
    pub fn run_task(self: &Arc<Self>, msg: internal::RunTask) {
        let fw_info = msg.framework_info;
        let Some(fw_id) = fw_info.id.as_ref().map(|i| i.value.clone()) else {
            tracing::warn!("run task without a framework id dropped");
            return;
        };
        let (queued, tasks): (Queued, Vec<TaskInfo>) = match (msg.task, msg.task_group) {
            (_, Some(group)) => {
                let tasks = group.tasks.clone();
                (Queued::Group(group), tasks)
            }
            (Some(task), None) => (Queued::Task(task.clone()), vec![task]),
            (None, None) => {
                tracing::warn!(framework_id = %fw_id, "run task without task or task group dropped");
                return;
            }
        };
        if tasks.is_empty() {
            tracing::warn!(framework_id = %fw_id, "run task with an empty task group dropped");
            return;
        }
        let is_group = matches!(queued, Queued::Group(_));
        let queued = self.with_docker_volume_binds(queued);
        let mut st = lock(&self.state);
        let Some(agent_id) = st.agent_id.clone() else {
            tracing::warn!(framework_id = %fw_id, "run task before registration dropped");
            return;
        };

        // Which executor, and how it runs.
        let (info, kind) = match msg.executor_info {
            Some(mut e) => {
                e.framework_id
                    .get_or_insert_with(|| ids::framework_id(fw_id.clone()));
                let kind = if e.r#type == Some(executor_info::Type::Default as i32)
                    || (is_group && e.command.is_none())
                {
                    ExecutorKind::Default
                } else {
                    ExecutorKind::Custom
                };
                (e, kind)
            }
            None if is_group => {
                drop(st);
                self.fail_unlaunched(&fw_info, &tasks, None, "task group without an executor");
                return;
            }
            None => (
                self.command_executor_info(&fw_id, &tasks[0]),
                ExecutorKind::Command,
            ),
        };
        let ex_id = info.executor_id.value.clone();

        let invalid = paths::validate_id("framework", &fw_id)
            .and_then(|_| paths::validate_id("executor", &ex_id))
            .and_then(|_| {
                tasks
                    .iter()
                    .try_for_each(|t| paths::validate_id("task", &t.task_id.value))
            });
        let invalid = invalid
            .and_then(|_| self.check_containers(&info, kind, &tasks))
            .and_then(|_| self.check_volumes(&st, &info, &tasks));
        if let Err(reason) = invalid {
            drop(st);
            self.fail_unlaunched(&fw_info, &tasks, Some(&info.executor_id), &reason);
            return;
        }

        let fw = st
            .frameworks
            .entry(fw_id.clone())
            .or_insert_with(|| Framework {
                info: fw_info.clone(),
                terminating: false,
                executors: BTreeMap::new(),
                completed_executors: VecDeque::new(),
            });
        if fw.terminating {
            tracing::warn!(framework_id = %fw_id, "framework is shutting down, dropping tasks");
            return;
        }
        fw.info = fw_info.clone();
        if let Some(dup) = tasks.iter().find(|t| fw.has_task(&t.task_id.value)) {
            tracing::warn!(framework_id = %fw_id, task_id = %dup.task_id.value, "task id already in use, dropping launch");
            return;
        }

        // A finished run with the same executor id makes way for a new one.
        if fw
            .executors
            .get(&ex_id)
            .is_some_and(|e| e.phase == ExecutorPhase::Terminated)
        {
            if let Some(mut old) = fw.executors.remove(&ex_id) {
                let leftovers: Vec<Task> = std::mem::take(&mut old.tasks).into_values().collect();
                old.completed_tasks.extend(leftovers);
                fw.completed_executors.push_back(old);
            }
        }
        if fw
            .executors
            .get(&ex_id)
            .is_some_and(|e| e.phase == ExecutorPhase::Terminating)
        {
            let lost = if fw.partition_aware() {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            // Book the tasks so their updates are recorded, then fail them.
            for t in &tasks {
                let status = Self::agent_status(
                    &st,
                    &t.task_id,
                    Some(&info.executor_id),
                    lost,
                    task_status::Reason::ExecutorTerminated,
                    "executor is shutting down",
                );
                self.emit(&mut st, &fw_id, status);
            }
            return;
        }

        let started_now = !fw.executors.contains_key(&ex_id);
        if started_now {
            match self.start_executor(&agent_id.value, &fw_info, info.clone(), kind, &tasks) {
                Ok(ex) => {
                    fw.executors.insert(ex_id.clone(), ex);
                }
                Err(reason) => {
                    tracing::error!(framework_id = %fw_id, executor_id = %ex_id, error = %reason, "failed to launch executor");
                    if fw.executors.is_empty() {
                        st.frameworks.remove(&fw_id);
                    }
                    drop(st);
                    self.fail_unlaunched(&fw_info, &tasks, Some(&info.executor_id), &reason);
                    return;
                }
            }
        }
        let Some(ex) = fw.executors.get_mut(&ex_id) else {
            return;
        };
        if !started_now && ex.docker_container.is_none() {
            // Volumes of the new tasks go into the running container's sandbox.
            let wanted = volumes::volumes_of(tasks.iter().flat_map(|t| t.resources.iter()));
            match self.mount_volumes(&ex.directory, &wanted, &ex.volume_mounts) {
                Ok(mut mounted) => ex.volume_mounts.append(&mut mounted),
                Err(reason) => {
                    let executor_id = ex.info.executor_id.clone();
                    drop(st);
                    self.fail_unlaunched(&fw_info, &tasks, Some(&executor_id), &reason);
                    return;
                }
            }
        }
        if !started_now {
            // More tasks in a running container: it grows by their resources.
            for t in &tasks {
                ex.limits.add(Limits::of(&t.resources));
            }
            if let Some(cg) = ex.cgroup.as_mut() {
                if let Some(grown) = self.config.isolation.cgroup_spec(
                    &self.config.cgroups_root,
                    &ex.container_id,
                    ex.limits.cpus,
                    ex.limits.mem_mb,
                ) {
                    *cg = grown.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = grown.update_limits() {
                            tracing::warn!(error = %e, "cannot update the container's limits");
                        }
                    });
                }
            }
        }
        let task_executor = (kind != ExecutorKind::Command).then(|| info.executor_id.clone());
        for t in &tasks {
            ex.tasks.insert(
                t.task_id.value.clone(),
                make_task(t, &fw_id, task_executor.clone(), &agent_id),
            );
        }
        if ex.checkpoint {
            if !started_now {
                // The container record holds its mounts.
                let ex = &*ex;
                self.checkpoint_executor(&agent_id.value, &fw_info, ex);
            }
            for t in &tasks {
                self.checkpoint_task(&st, &fw_id, &t.task_id.value);
            }
        }
        let Some(ex) = st
            .frameworks
            .get_mut(&fw_id)
            .and_then(|f| f.executors.get_mut(&ex_id))
        else {
            return;
        };
        if ex.phase == ExecutorPhase::Running && ex.events.is_some() {
            let sent = ex.send(launch_event(queued.clone()));
            if sent {
                tracing::info!(framework_id = %fw_id, executor_id = %ex_id, tasks = tasks.len(), "launching on subscribed executor");
                return;
            }
            ex.events = None;
        }
        tracing::info!(framework_id = %fw_id, executor_id = %ex_id, tasks = tasks.len(), "queued until the executor subscribes");
        ex.queued.push(queued);
    }

    /// TASK_FAILED (container launch failed) for tasks that never got an
    /// executor; they are not booked.
    fn fail_unlaunched(
        &self,
        fw_info: &FrameworkInfo,
        tasks: &[TaskInfo],
        ex: Option<&ExecutorId>,
        reason: &str,
    ) {
        let Some(fw_id) = fw_info.id.clone() else {
            return;
        };
        let st = lock(&self.state);
        for t in tasks {
            let status = Self::agent_status(
                &st,
                &t.task_id,
                ex,
                TaskState::TaskFailed,
                task_status::Reason::ContainerLaunchFailed,
                reason,
            );
            tracing::warn!(framework_id = %fw_id.value, task_id = %t.task_id.value, reason, "task failed to launch");
            let forward = lock(&self.sum).update(&fw_id, ex.cloned(), status, Instant::now());
            if let Ok(Some(msg)) = forward {
                self.send_to_master(agent_message::Message::StatusUpdate(msg));
            }
        }
        self.sum_wake.notify_one();
    }

    fn command_executor_info(&self, fw_id: &str, task: &TaskInfo) -> ExecutorInfo {
        let command = task.command.as_ref();
        let shown = command.and_then(|c| c.value.clone()).unwrap_or_default();
        let launcher = self.config.launcher.display().to_string();
        ExecutorInfo {
            executor_id: ids::executor_id(task.task_id.value.clone()),
            framework_id: Some(ids::framework_id(fw_id)),
            command: Some(v1::CommandInfo {
                value: Some(launcher.clone()),
                arguments: vec![launcher, "executor".into()],
                shell: Some(false),
                user: command.and_then(|c| c.user.clone()),
                ..Default::default()
            }),
            name: Some(format!(
                "Command Executor (Task: {}) (Command: sh -c '{}')",
                task.task_id.value, shown
            )),
            source: Some(task.task_id.value.clone()),
            labels: task.labels.clone(),
            ..Default::default()
        }
    }

    fn executor_env(
        &self,
        agent_id: &str,
        fw: &FrameworkInfo,
        ex: &Executor,
    ) -> Vec<(String, String)> {
        let checkpoint = fw.checkpoint.unwrap_or(false);
        let dir = ex.directory.display().to_string();
        let mut env = vec![
            (
                "MESOS_FRAMEWORK_ID".into(),
                fw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
            ),
            (
                "MESOS_EXECUTOR_ID".into(),
                ex.info.executor_id.value.clone(),
            ),
            ("MESOS_DIRECTORY".into(), dir.clone()),
            ("MESOS_SANDBOX".into(), dir),
            ("MESOS_AGENT_ENDPOINT".into(), self.config.endpoint()),
            (
                "MESOS_CHECKPOINT".into(),
                if checkpoint { "1" } else { "0" }.into(),
            ),
            (
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
                stout::format_duration(ex.grace_period(self.config.executor_shutdown_grace_period)),
            ),
            ("MESOS_SLAVE_ID".into(), agent_id.into()),
            ("MESOS_AGENT_ID".into(), agent_id.into()),
            (
                "MESOS_HTTP_COMMAND_EXECUTOR".into(),
                if ex.kind == ExecutorKind::Command {
                    "1"
                } else {
                    "0"
                }
                .into(),
            ),
            (
                "CORRAL_EXECUTOR_KIND".into(),
                match ex.kind {
                    ExecutorKind::Command => "command",
                    ExecutorKind::Default => "default",
                    ExecutorKind::Custom => "custom",
                }
                .into(),
            ),
        ];
        if checkpoint {
            env.push((
                "MESOS_RECOVERY_TIMEOUT".into(),
                stout::format_duration(self.config.recovery_timeout),
            ));
            // Mesos: half the re-registration timeout, so a recovered agent
            // sees its executors again in time.
            let backoff =
                (self.config.executor_reregistration_timeout / 2).max(Duration::from_millis(10));
            env.push((
                "MESOS_SUBSCRIPTION_BACKOFF_MAX".into(),
                stout::format_duration(backoff),
            ));
        }
        env.push(("MESOS_CONTAINER_ID".into(), ex.container_id.clone()));
        if let (Some(name), Some(socket)) = (&ex.docker_container, &self.config.docker_socket) {
            env.push(("MESOS_CONTAINER_NAME".into(), name.clone()));
            env.push(("CORRAL_DOCKER_SOCKET".into(), socket.display().to_string()));
            env.push(("CORRAL_AGENT_ID".into(), agent_id.into()));
        }
        env
    }

    /// Refuses containers this agent cannot run.
    fn check_containers(
        &self,
        info: &ExecutorInfo,
        kind: ExecutorKind,
        tasks: &[TaskInfo],
    ) -> Result<(), String> {
        use v1::container_info::Type as CType;
        if info
            .container
            .as_ref()
            .is_some_and(|c| c.r#type == CType::Docker as i32)
        {
            return Err(
                "executors in Docker containers are not supported; give the task a DOCKER \
                 ContainerInfo and no executor"
                    .into(),
            );
        }
        for t in tasks {
            let Some(c) = &t.container else {
                continue;
            };
            if c.r#type == CType::Docker as i32 {
                if kind != ExecutorKind::Command {
                    return Err(format!(
                        "task '{}' has a DOCKER ContainerInfo; only command tasks (no executor) \
                         run in Docker",
                        t.task_id.value
                    ));
                }
                if self.config.docker_socket.is_none() {
                    return Err(format!(
                        "task '{}' needs the docker containerizer, which is not enabled \
                         (--containerizers=docker,mesos)",
                        t.task_id.value
                    ));
                }
                if c.docker.as_ref().is_none_or(|d| d.image.trim().is_empty()) {
                    return Err(format!(
                        "task '{}' has a DOCKER ContainerInfo without an image",
                        t.task_id.value
                    ));
                }
            }
            if let Some(r) = &c.rlimit_info {
                crate::launcher::validate_rlimits(&rlimits_of(r))
                    .map_err(|e| format!("task '{}': {e}", t.task_id.value))?;
            }
        }
        Ok(())
    }

    /// Refuses tasks whose persistent volumes this agent does not have, and
    /// volumes that cannot be placed in the container.
    fn check_volumes(
        &self,
        st: &State,
        info: &ExecutorInfo,
        tasks: &[TaskInfo],
    ) -> Result<(), String> {
        let docker = tasks.iter().any(|t| {
            t.container
                .as_ref()
                .is_some_and(|c| c.r#type == v1::container_info::Type::Docker as i32)
        });
        let wanted = volumes::volumes_of(
            info.resources
                .iter()
                .chain(tasks.iter().flat_map(|t| t.resources.iter())),
        );
        for v in &wanted {
            volumes::validate(v)?;
            let known = st.total.as_slice().iter().any(|r| {
                corral_api::operations::persistence_id(r) == Some(v.persistence_id.as_str())
                    && corral_api::resources::reservation_role(r) == v.role
            });
            if !known {
                return Err(format!(
                    "persistent volume '{}' of role '{}' does not exist on this agent (CREATE it \
                     first, and launch on an offer that holds it)",
                    v.persistence_id, v.role
                ));
            }
            if !docker {
                volumes::mount_point(Path::new("/"), v).map_err(|e| e.to_string())?;
            }
            if v.hdfs {
                self.hdfs.check_usable(v)?;
            }
        }
        Ok(())
    }

    /// A Docker task's persistent volumes become binds of its container
    /// (`<volume dir>:<container_path>[:ro]`; a relative container_path is
    /// under the sandbox's mount point in the container).
    fn with_docker_volume_binds(&self, queued: Queued) -> Queued {
        let Queued::Task(mut task) = queued else {
            return queued;
        };
        let wanted = volumes::volumes_of(&task.resources);
        if let Some(c) = task
            .container
            .as_mut()
            .filter(|c| c.r#type == v1::container_info::Type::Docker as i32)
        {
            for v in wanted {
                c.volumes.push(v1::Volume {
                    mode: if v.read_only {
                        v1::volume::Mode::Ro
                    } else {
                        v1::volume::Mode::Rw
                    } as i32,
                    container_path: v.container_path.clone(),
                    host_path: Some(
                        volumes::volume_dir(&self.config.work_dir, &v.role, &v.persistence_id)
                            .display()
                            .to_string(),
                    ),
                    ..Default::default()
                });
            }
        }
        Queued::Task(task)
    }

    /// Bind-mounts the volumes not yet mounted (`already`) into a sandbox;
    /// on failure nothing new stays mounted.
    fn mount_volumes(
        &self,
        sandbox: &Path,
        wanted: &[VolumeUse],
        already: &[PathBuf],
    ) -> Result<Vec<PathBuf>, String> {
        let mut mounted = Vec::new();
        for v in wanted {
            let result = volumes::mount_point(sandbox, v).and_then(|target| {
                if already.contains(&target) || mounted.contains(&target) {
                    return Ok(None);
                }
                let source = volumes::volume_dir(&self.config.work_dir, &v.role, &v.persistence_id);
                volumes::bind_mount(&source, sandbox, &target, v.read_only)?;
                tracing::info!(
                    role = %v.role,
                    persistence_id = %v.persistence_id,
                    target = %target.display(),
                    read_only = v.read_only,
                    "mounted persistent volume"
                );
                Ok(Some(target))
            });
            match result {
                Ok(Some(t)) => mounted.push(t),
                Ok(None) => {}
                Err(e) => {
                    self.unmount_volumes(&mounted);
                    return Err(format!(
                        "cannot mount persistent volume '{}': {e}",
                        v.persistence_id
                    ));
                }
            }
        }
        Ok(mounted)
    }

    /// Detaches volume mounts (most recent first); the data stays.
    pub(crate) fn unmount_volumes(&self, mounts: &[PathBuf]) {
        for m in mounts.iter().rev() {
            match volumes::unmount(m) {
                Ok(()) => tracing::info!(target = %m.display(), "unmounted persistent volume"),
                Err(e) => {
                    tracing::error!(target = %m.display(), error = %e, "cannot unmount persistent volume")
                }
            }
        }
    }

    fn start_executor(
        self: &Arc<Self>,
        agent_id: &str,
        fw: &FrameworkInfo,
        info: ExecutorInfo,
        kind: ExecutorKind,
        tasks: &[TaskInfo],
    ) -> Result<Executor, String> {
        let fw_id = fw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default();
        let ex_id = info.executor_id.value.clone();
        let container_id = uuid::Uuid::new_v4().to_string();
        let directory = paths::create_sandbox(
            &self.config.work_dir,
            agent_id,
            &fw_id,
            &ex_id,
            &container_id,
        )
        .map_err(|e| format!("failed to create the sandbox: {e}"))?;

        // The container's limits: the executor's resources, its tasks', and
        // Mesos' allowance for the command executor.
        let mut limits = Limits::of(&info.resources);
        for t in tasks {
            limits.add(Limits::of(&t.resources));
        }
        let docker_task = tasks.iter().find(|t| {
            t.container
                .as_ref()
                .is_some_and(|c| c.r#type == v1::container_info::Type::Docker as i32)
        });
        let docker_container = docker_task.map(|_| format!("mesos-{container_id}"));
        // A Docker task's resources limit its Docker container; the executor
        // that runs it gets the allowance.
        let mut cgroup_limits = if docker_task.is_some() {
            Limits::default()
        } else {
            limits
        };
        if kind == ExecutorKind::Command {
            cgroup_limits.cpus += COMMAND_EXECUTOR_CPUS;
            cgroup_limits.mem_mb += COMMAND_EXECUTOR_MEM_MB;
        }
        let cgroup = self.config.isolation.cgroup_spec(
            &self.config.cgroups_root,
            &container_id,
            cgroup_limits.cpus,
            cgroup_limits.mem_mb,
        );
        let command = match kind {
            ExecutorKind::Command => tasks.first().and_then(|t| t.command.as_ref()),
            _ => info.command.as_ref(),
        };
        let mut uris = command.map(|c| c.uris.clone()).unwrap_or_default();
        if kind == ExecutorKind::Default {
            // The default executor's tasks share its sandbox: their URIs
            // are fetched into it before it starts.
            uris.extend(
                tasks
                    .iter()
                    .filter_map(|t| t.command.as_ref())
                    .flat_map(|c| c.uris.iter().cloned()),
            );
        }
        let user = command
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| {
                self.config
                    .switch_user
                    .then(|| fw.user.clone())
                    .filter(|u| !u.is_empty())
            });
        let container_info = match kind {
            ExecutorKind::Command => tasks.first().and_then(|t| t.container.as_ref()),
            _ => info.container.as_ref(),
        };
        let rlimits = container_info
            .and_then(|c| c.rlimit_info.as_ref())
            .map(rlimits_of)
            .unwrap_or_default();

        let mut ex = Executor {
            info,
            kind,
            phase: ExecutorPhase::Registering,
            container_id: container_id.clone(),
            directory: directory.clone(),
            queued: Vec::new(),
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            events: None,
            process: None,
            exit_status: None,
            checkpoint: fw.checkpoint.unwrap_or(false),
            limits,
            cgroup: cgroup.clone(),
            docker_container,
            docker_cgroup: None,
            termination: None,
            recovered: false,
            disk_used: None,
            volume_mounts: Vec::new(),
        };
        let mut spec = match kind {
            ExecutorKind::Command | ExecutorKind::Default => LaunchSpec {
                program: self.config.launcher.clone().into_os_string(),
                arg0: None,
                args: vec!["executor".into()],
                env: Vec::new(),
                sandbox: directory.clone(),
                launcher: None,
                user: None,
                rlimits: Vec::new(),
                cgroup: None,
            },
            ExecutorKind::Custom => {
                let cmd = ex
                    .info
                    .command
                    .as_ref()
                    .ok_or_else(|| "the executor has no command".to_string())?;
                let value = cmd.value.clone().unwrap_or_default();
                if cmd.shell.unwrap_or(true) {
                    if value.is_empty() {
                        return Err("the executor's shell command is empty".into());
                    }
                    LaunchSpec::shell(&value, &directory)
                } else {
                    if value.is_empty() {
                        return Err("the executor's command has no value".into());
                    }
                    let mut args = cmd.arguments.iter().map(Into::into);
                    let arg0 = args.next();
                    LaunchSpec {
                        program: value.into(),
                        arg0,
                        args: args.collect(),
                        env: Vec::new(),
                        sandbox: directory.clone(),
                        launcher: None,
                        user: None,
                        rlimits: Vec::new(),
                        cgroup: None,
                    }
                }
            }
        };
        spec.launcher = self.config.container_launcher.clone();
        spec.user = user;
        spec.rlimits = rlimits;
        spec.cgroup = cgroup;
        spec.env = self.executor_env(agent_id, fw, &ex);
        if kind == ExecutorKind::Custom {
            if let Some(env) = ex
                .info
                .command
                .as_ref()
                .and_then(|c| c.environment.as_ref())
            {
                for var in &env.variables {
                    if let Some(v) = &var.value {
                        spec.env.push((var.name.clone(), v.clone()));
                    }
                }
            }
        }
        if ex.docker_container.is_none() {
            // A Docker task's volumes are binds of its Docker container.
            let wanted = volumes::volumes_of(
                ex.info
                    .resources
                    .iter()
                    .chain(tasks.iter().flat_map(|t| t.resources.iter())),
            );
            ex.volume_mounts = self.mount_volumes(&directory, &wanted, &[])?;
        }
        if uris.is_empty() {
            if let Err(e) = self.launch_process(&mut ex, &spec, &fw_id) {
                self.unmount_volumes(&ex.volume_mounts);
                return Err(e);
            }
            self.checkpoint_executor(agent_id, fw, &ex);
            return Ok(ex);
        }
        // Fetch first; the executor starts once the URIs are in the sandbox.
        tracing::info!(framework_id = %fw_id, executor_id = %ex_id, uris = uris.len(), "fetching");
        let agent = self.clone();
        let (fw_info, agent_id) = (fw.clone(), agent_id.to_string());
        tokio::spawn(async move {
            let fetched = agent.config.fetcher.fetch_all(&uris, &directory).await;
            agent.fetched(&agent_id, &fw_info, &ex_id, &container_id, fetched, spec);
        });
        Ok(ex)
    }

    /// The fetcher finished for a container: start its executor, or fail
    /// its tasks naming the URI.
    fn fetched(
        self: &Arc<Self>,
        agent_id: &str,
        fw: &FrameworkInfo,
        ex_id: &str,
        container_id: &str,
        fetched: Result<(), crate::fetcher::FetchError>,
        spec: LaunchSpec,
    ) {
        let fw_id = fw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default();
        let mut st = lock(&self.state);
        let Some(ex) = st
            .frameworks
            .get_mut(&fw_id)
            .and_then(|f| f.executors.get_mut(ex_id))
            .filter(|e| e.container_id == container_id)
        else {
            return;
        };
        let failure = match fetched {
            _ if ex.phase != ExecutorPhase::Registering => Some(None),
            Ok(()) => match self.launch_process(ex, &spec, &fw_id) {
                Ok(()) => {
                    let ex = &*ex;
                    self.checkpoint_executor(agent_id, fw, ex);
                    None
                }
                Err(e) => Some(Some(Termination {
                    state: TaskState::TaskFailed,
                    reason: task_status::Reason::ContainerLaunchFailed,
                    message: e,
                    limitation: None,
                })),
            },
            Err(e) => Some(Some(Termination {
                state: TaskState::TaskFailed,
                reason: task_status::Reason::ContainerLaunchFailed,
                message: e.to_string(),
                limitation: None,
            })),
        };
        if let Some(termination) = failure {
            // Killed or shut down while fetching, or the fetch failed: the
            // container never ran.
            if termination.is_some() {
                ex.termination = termination;
            }
            drop(st);
            self.executor_exited(&fw_id, ex_id, container_id, None);
        }
    }

    fn launch_process(
        self: &Arc<Self>,
        ex: &mut Executor,
        spec: &LaunchSpec,
        fw_id: &str,
    ) -> Result<(), String> {
        let ex_id = ex.info.executor_id.value.clone();
        let container_id = ex.container_id.clone();
        let weak: Weak<Agent> = Arc::downgrade(self);
        let (f, e, c) = (fw_id.to_string(), ex_id.clone(), container_id.clone());
        let process = containerizer::launch(spec, move |status| {
            if let Some(agent) = weak.upgrade() {
                agent.executor_exited(&f, &e, &c, status);
            }
        })
        .map_err(|err| {
            format!(
                "failed to start executor '{}': {err}",
                spec.program.to_string_lossy()
            )
        })?;
        tracing::info!(
            framework_id = %fw_id,
            executor_id = %ex_id,
            container_id = %container_id,
            pid = process.pid(),
            cgroup = ex.cgroup.as_ref().map(|c| c.path.as_str()).unwrap_or(""),
            "executor started"
        );
        ex.process = Some(process);

        let weak: Weak<Agent> = Arc::downgrade(self);
        let timeout = self.config.executor_registration_timeout;
        let fw_id = fw_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(agent) = weak.upgrade() {
                agent.registration_timed_out(&fw_id, &ex_id, &container_id);
            }
        });
        Ok(())
    }

    fn registration_timed_out(&self, fw_id: &str, ex_id: &str, container_id: &str) {
        let mut st = lock(&self.state);
        let Some(ex) = st
            .frameworks
            .get_mut(fw_id)
            .and_then(|f| f.executors.get_mut(ex_id))
            .filter(|e| e.container_id == container_id && e.phase == ExecutorPhase::Registering)
        else {
            return;
        };
        tracing::warn!(
            framework_id = fw_id,
            executor_id = ex_id,
            "executor did not subscribe in time, killing it"
        );
        let queued = std::mem::take(&mut ex.queued);
        ex.phase = ExecutorPhase::Terminating;
        if let Some(p) = &ex.process {
            p.signal(Signal::SIGKILL);
        }
        let executor_id = ex.info.executor_id.clone();
        for q in queued {
            for task_id in q.task_ids() {
                let status = Self::agent_status(
                    &st,
                    &ids::task_id(task_id),
                    Some(&executor_id),
                    TaskState::TaskFailed,
                    task_status::Reason::ExecutorRegistrationTimeout,
                    "executor did not register within the executor registration timeout",
                );
                self.emit(&mut st, fw_id, status);
            }
        }
    }

    /// The executor process was reaped.
    pub fn executor_exited(
        &self,
        fw_id: &str,
        ex_id: &str,
        container_id: &str,
        status: Option<i32>,
    ) {
        let mut st = lock(&self.state);
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            return;
        };
        let Some(ex) = fw
            .executors
            .get_mut(ex_id)
            .filter(|e| e.container_id == container_id)
        else {
            return;
        };
        tracing::info!(framework_id = fw_id, executor_id = ex_id, status = ?status, "executor exited");
        let never_subscribed = ex.phase == ExecutorPhase::Registering && !ex.recovered;
        ex.phase = ExecutorPhase::Terminated;
        ex.exit_status = status;
        ex.events = None;
        ex.queued.clear();
        if ex.termination.is_none() {
            if let Some(cg) = ex.cgroup.as_ref().filter(|c| c.mem_limit_bytes.is_some()) {
                if cg.oom_kills() > 0 {
                    let max = cg.usage().mem_max_bytes;
                    ex.termination = Some(memory_limitation(
                        cg.mem_limit_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0),
                        max,
                    ));
                }
            }
        }
        let termination = ex.termination.clone().unwrap_or_else(|| Termination {
            state: TaskState::TaskFailed,
            reason: task_status::Reason::ExecutorTerminated,
            message: if never_subscribed {
                match last_line(&ex.directory.join("stderr")) {
                    Some(line) => format!("executor terminated before subscribing: {line}"),
                    None => "executor terminated before subscribing".into(),
                }
            } else {
                "executor terminated".into()
            },
            limitation: None,
        });
        // What is left of the container goes: its volumes' mounts (the data
        // stays where it lives), its cgroups, its Docker container.
        let mounts = std::mem::take(&mut ex.volume_mounts);
        self.unmount_volumes(&mounts);
        if let Some(cg) = ex.cgroup.clone() {
            tokio::task::spawn_blocking(move || cg.destroy());
        }
        if let (Some(name), Some(socket)) = (
            ex.docker_container.clone(),
            self.config.docker_socket.clone(),
        ) {
            tokio::spawn(async move { crate::docker::remove(&socket, &name).await });
        }
        let executor_id = ex.info.executor_id.clone();
        let framework_id = fw
            .info
            .id
            .clone()
            .unwrap_or_else(|| ids::framework_id(fw_id));
        let open: Vec<v1::TaskId> = ex
            .tasks
            .values()
            .filter(|t| !is_terminal(t.state))
            .map(|t| t.task_id.clone())
            .collect();
        let terminating = fw.terminating;
        st.counters.executors_terminated += 1;
        if !terminating {
            for task_id in &open {
                let mut status = Self::agent_status(
                    &st,
                    task_id,
                    Some(&executor_id),
                    termination.state,
                    termination.reason,
                    termination.message.clone(),
                );
                status.limitation = termination.limitation.clone();
                self.emit(&mut st, fw_id, status);
            }
        }
        self.send_to_master(agent_message::Message::ExecutorExited(
            internal::ExecutorExited {
                framework_id,
                executor_id,
                status,
            },
        ));
        let task_ids: Vec<String> = st
            .frameworks
            .get(fw_id)
            .and_then(|f| f.executors.get(ex_id))
            .map(|e| e.tasks.keys().cloned().collect())
            .unwrap_or_default();
        for t in &task_ids {
            self.maybe_complete(&mut st, fw_id, Some(t));
        }
        self.maybe_complete(&mut st, fw_id, None);
    }

    /// KillTask from the master.
    pub fn kill_task(self: &Arc<Self>, msg: &internal::KillTask) {
        let fw_id = msg.framework_id.value.as_str();
        let task_id = msg.task_id.value.as_str();
        let mut st = lock(&self.state);
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            tracing::warn!(
                framework_id = fw_id,
                task_id,
                "kill for a task of an unknown framework ignored"
            );
            return;
        };
        let Some(ex_id) = fw.executor_of_task(task_id) else {
            let known = fw
                .completed_executors
                .iter()
                .chain(fw.executors.values())
                .any(|e| e.completed_tasks.iter().any(|t| t.task_id.value == task_id));
            if known {
                tracing::info!(
                    framework_id = fw_id,
                    task_id,
                    "kill for an already completed task ignored"
                );
                return;
            }
            let state = if fw.partition_aware() {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            tracing::warn!(
                framework_id = fw_id,
                task_id,
                "kill for a task unknown to this agent"
            );
            let status = Self::agent_status(
                &st,
                &msg.task_id,
                None,
                state,
                task_status::Reason::TaskUnknown,
                "task is unknown to the agent",
            );
            let forward = lock(&self.sum).update(&msg.framework_id, None, status, Instant::now());
            if let Ok(Some(m)) = forward {
                self.send_to_master(agent_message::Message::StatusUpdate(m));
            }
            self.sum_wake.notify_one();
            return;
        };
        let Some(ex) = fw.executors.get_mut(&ex_id) else {
            return;
        };
        if ex.is_queued(task_id) {
            // Never launched: kill it (and its whole group) right here.
            let pos = ex
                .queued
                .iter()
                .position(|q| q.task_ids().contains(&task_id));
            let removed = pos.map(|p| ex.queued.remove(p));
            let executor_id = ex.info.executor_id.clone();
            let idle = ex.queued.is_empty()
                && ex.phase == ExecutorPhase::Registering
                && ex.tasks.values().all(|t| {
                    is_terminal(t.state)
                        || removed
                            .as_ref()
                            .is_some_and(|r| r.task_ids().contains(&t.task_id.value.as_str()))
                });
            let process = ex.process.clone();
            let grace = ex.grace_period(self.config.executor_shutdown_grace_period);
            if idle {
                ex.phase = ExecutorPhase::Terminating;
            }
            if let Some(removed) = removed {
                for t in removed.task_ids() {
                    let status = Self::agent_status(
                        &st,
                        &ids::task_id(t),
                        Some(&executor_id),
                        TaskState::TaskKilled,
                        task_status::Reason::TaskKilledDuringLaunch,
                        "killed before delivery to the executor",
                    );
                    self.emit(&mut st, fw_id, status);
                }
            }
            if idle {
                // An executor with nothing to run is not kept around.
                if let Some(p) = process {
                    tokio::spawn(async move { p.terminate(grace).await });
                }
            }
            return;
        }
        if is_terminal(ex.tasks.get(task_id).map_or(0, |t| t.state)) {
            tracing::info!(
                framework_id = fw_id,
                task_id,
                "kill for a terminal task ignored"
            );
            return;
        }
        let kill_policy = msg
            .kill_policy
            .or_else(|| ex.tasks.get(task_id).and_then(|t| t.kill_policy));
        let mut ev = event(event::Type::Kill);
        ev.kill = Some(event::Kill {
            task_id: msg.task_id.clone(),
            kill_policy,
        });
        if ex.send(ev) {
            tracing::info!(framework_id = fw_id, executor_id = %ex_id, task_id, "asked executor to kill task");
        } else {
            // No subscription to deliver the kill: the executor goes, and
            // its tasks fail when it exits.
            tracing::warn!(framework_id = fw_id, executor_id = %ex_id, task_id, "executor not subscribed, killing it to kill the task");
            ex.phase = ExecutorPhase::Terminating;
            let grace = ex.grace_period(self.config.executor_shutdown_grace_period);
            if let Some(p) = ex.process.clone() {
                tokio::spawn(async move { p.terminate(grace).await });
            }
        }
    }

    /// ShutdownExecutor: SHUTDOWN, then SIGTERM after the grace period,
    /// SIGKILL after a further grace period.
    pub fn shutdown_executor(self: &Arc<Self>, fw_id: &str, ex_id: &str) {
        let mut st = lock(&self.state);
        let Some(ex) = st
            .frameworks
            .get_mut(fw_id)
            .and_then(|f| f.executors.get_mut(ex_id))
        else {
            tracing::warn!(
                framework_id = fw_id,
                executor_id = ex_id,
                "shutdown of an unknown executor ignored"
            );
            return;
        };
        self.begin_shutdown(fw_id, ex);
    }

    fn begin_shutdown(&self, fw_id: &str, ex: &mut Executor) {
        if matches!(
            ex.phase,
            ExecutorPhase::Terminated | ExecutorPhase::Terminating
        ) {
            return;
        }
        tracing::info!(framework_id = fw_id, executor_id = %ex.info.executor_id.value, "shutting down executor");
        let subscribed = ex.send(event(event::Type::Shutdown));
        ex.phase = ExecutorPhase::Terminating;
        let grace = ex.grace_period(self.config.executor_shutdown_grace_period);
        if let Some(p) = ex.process.clone() {
            tokio::spawn(async move {
                if subscribed && tokio::time::timeout(grace, p.wait()).await.is_ok() {
                    return;
                }
                p.terminate(grace).await;
            });
        }
    }

    /// ShutdownFramework: every executor of the framework is shut down and
    /// its updates are no longer forwarded.
    pub fn shutdown_framework(self: &Arc<Self>, fw_id: &str) {
        let mut st = lock(&self.state);
        let Some(fw) = st.frameworks.get_mut(fw_id) else {
            tracing::info!(
                framework_id = fw_id,
                "shutdown of an unknown framework ignored"
            );
            return;
        };
        tracing::info!(framework_id = fw_id, "shutting down framework");
        fw.terminating = true;
        lock(&self.sum).remove_framework(fw_id);
        let ids: Vec<String> = fw.executors.keys().cloned().collect();
        for id in ids {
            if let Some(ex) = fw.executors.get_mut(&id) {
                ex.queued.clear();
                self.begin_shutdown(fw_id, ex);
            }
        }
        self.maybe_complete(&mut st, fw_id, None);
    }

    /// FrameworkToExecutor: a MESSAGE event.
    pub fn framework_message(&self, msg: internal::FrameworkToExecutor) {
        let mut st = lock(&self.state);
        let delivered = st
            .frameworks
            .get(&msg.framework_id.value)
            .and_then(|f| f.executors.get(&msg.executor_id.value))
            .is_some_and(|ex| {
                let mut ev = event(event::Type::Message);
                ev.message = Some(event::Message { data: msg.data });
                ex.send(ev)
            });
        if delivered {
            st.counters.valid_framework_messages += 1;
        } else {
            st.counters.invalid_framework_messages += 1;
            tracing::warn!(
                framework_id = %msg.framework_id.value,
                executor_id = %msg.executor_id.value,
                "framework message for an executor that is not subscribed dropped"
            );
        }
    }

    /// UpdateFramework: the stored FrameworkInfo is replaced.
    pub fn update_framework(&self, info: FrameworkInfo) {
        let Some(id) = info.id.as_ref().map(|i| i.value.clone()) else {
            return;
        };
        if let Some(fw) = lock(&self.state).frameworks.get_mut(&id) {
            fw.info = info;
        }
    }

    // ----- executor API ------------------------------------------------

    fn lookup<'a>(
        st: &'a mut State,
        call: &exec::Call,
    ) -> Result<(&'a FrameworkInfo, &'a mut Executor), CallError> {
        let fw_id = &call.framework_id.value;
        let ex_id = &call.executor_id.value;
        if fw_id.is_empty() || ex_id.is_empty() {
            return Err(CallError::BadRequest(
                "Expecting 'framework_id' and 'executor_id' to be present".into(),
            ));
        }
        let fw = st.frameworks.get_mut(fw_id).ok_or_else(|| {
            CallError::BadRequest(format!("Framework '{fw_id}' is not known to this agent"))
        })?;
        let ex = fw.executors.get_mut(ex_id).ok_or_else(|| {
            CallError::BadRequest(format!(
                "Executor '{ex_id}' of framework '{fw_id}' is not known to this agent"
            ))
        })?;
        Ok((&fw.info, ex))
    }

    /// SUBSCRIBE: the event stream's receiving end, with SUBSCRIBED and the
    /// queued launches already in it.
    pub fn executor_subscribe(
        &self,
        call: exec::Call,
    ) -> Result<mpsc::UnboundedReceiver<exec::Event>, CallError> {
        let subscribe = call.subscribe.clone().unwrap_or_default();
        let mut st = lock(&self.state);
        let agent_info = self.agent_info(&st);
        let (fw_info, ex) = Self::lookup(&mut st, &call)?;
        if ex.phase == ExecutorPhase::Terminated {
            return Err(CallError::BadRequest(format!(
                "Executor '{}' has terminated",
                call.executor_id.value
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ev = event(event::Type::Subscribed);
        ev.subscribed = Some(event::Subscribed {
            executor_info: ex.info.clone(),
            framework_info: fw_info.clone(),
            agent_info,
            container_id: Some(v1::ContainerId {
                value: ex.container_id.clone(),
                parent: None,
            }),
        });
        let _ = tx.send(ev);
        let resubscribe = ex.events.is_some();
        // The new connection replaces any previous one.
        ex.events = Some(tx);
        if ex.phase == ExecutorPhase::Registering {
            ex.phase = ExecutorPhase::Running;
        }
        // Tasks the executor already has are not launched again.
        let known: Vec<&str> = subscribe
            .unacknowledged_tasks
            .iter()
            .map(|t| t.task_id.value.as_str())
            .collect();
        let queued = std::mem::take(&mut ex.queued);
        for q in queued {
            if q.task_ids().iter().all(|t| known.contains(t)) {
                continue;
            }
            ex.send(launch_event(q));
        }
        if ex.phase == ExecutorPhase::Terminating {
            ex.send(event(event::Type::Shutdown));
        }
        tracing::info!(
            framework_id = %call.framework_id.value,
            executor_id = %call.executor_id.value,
            resubscribe,
            unacknowledged_updates = subscribe.unacknowledged_updates.len(),
            "executor subscribed"
        );
        drop(st);
        for update in subscribe.unacknowledged_updates {
            let c = exec::Call {
                executor_id: call.executor_id.clone(),
                framework_id: call.framework_id.clone(),
                r#type: Some(exec::call::Type::Update as i32),
                update: Some(update),
                ..Default::default()
            };
            if let Err(e) = self.executor_update(c) {
                tracing::warn!(error = %e, "unacknowledged update from re-subscribing executor refused");
            }
        }
        Ok(rx)
    }

    /// UPDATE: validate, record, forward; ACKNOWLEDGED to the executor.
    pub fn executor_update(&self, call: exec::Call) -> Result<(), CallError> {
        let result = self.executor_update_inner(call);
        let mut st = lock(&self.state);
        if result.is_ok() {
            st.counters.valid_status_updates += 1;
        } else {
            st.counters.invalid_status_updates += 1;
        }
        result
    }

    fn executor_update_inner(&self, call: exec::Call) -> Result<(), CallError> {
        let bad = |m: &str| Err(CallError::BadRequest(m.to_string()));
        let Some(update) = call.update.clone() else {
            return bad("Expecting 'update' to be present");
        };
        let mut status = update.status;
        let Some(uuid) = status.uuid.clone() else {
            return bad("Expecting 'uuid' to be present");
        };
        if uuid.len() != 16 {
            return bad("'uuid' is not a valid 16-byte UUID");
        }
        if status
            .source
            .is_some_and(|s| s != task_status::Source::Executor as i32)
        {
            return bad("Received status update with a 'source' other than SOURCE_EXECUTOR");
        }
        if status
            .executor_id
            .as_ref()
            .is_some_and(|e| *e != call.executor_id)
        {
            return bad("ExecutorID in the status does not match the call's executor_id");
        }
        if status.state == TaskState::TaskStaging as i32 {
            return bad("Received TASK_STAGING from the executor");
        }
        if TaskState::try_from(status.state).is_err() {
            return bad("Received an unknown task state");
        }
        let mut st = lock(&self.state);
        let agent_id = st.agent_id.clone();
        let (_, ex) = Self::lookup(&mut st, &call)?;
        let task_id = status.task_id.value.clone();
        let Some(task) = ex.tasks.get(&task_id) else {
            return Err(CallError::BadRequest(format!(
                "Task '{task_id}' is not known to executor '{}'",
                call.executor_id.value
            )));
        };
        let duplicate = task
            .statuses
            .iter()
            .any(|s| s.uuid.as_deref() == Some(&uuid[..]));
        let mut ack = event(event::Type::Acknowledged);
        ack.acknowledged = Some(event::Acknowledged {
            task_id: status.task_id.clone(),
            uuid: uuid.clone(),
        });
        if duplicate {
            ex.send(ack);
            return Ok(());
        }
        if is_terminal(status.state) && status.state != TaskState::TaskFinished as i32 {
            // A task the kernel killed for its container's memory limit (or
            // that the agent killed for a limitation) carries the limitation.
            if ex.termination.is_none() {
                if let Some(cg) = ex.cgroup.as_ref().filter(|c| c.mem_limit_bytes.is_some()) {
                    if cg.oom_kills() > 0 {
                        ex.termination = Some(memory_limitation(
                            cg.mem_limit_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0),
                            cg.usage().mem_max_bytes,
                        ));
                    }
                }
            }
            if let Some(t) = ex.termination.as_ref().filter(|t| t.limitation.is_some()) {
                status.state = t.state as i32;
                status.reason = Some(t.reason as i32);
                status.message = Some(t.message.clone());
                status.limitation = t.limitation.clone();
            }
        }
        status.source = Some(task_status::Source::Executor as i32);
        status.executor_id = Some(call.executor_id.clone());
        if status.agent_id.is_none() {
            status.agent_id = agent_id;
        }
        if status.timestamp.is_none() {
            status.timestamp = Some(ids::now_secs());
        }
        self.emit(&mut st, &call.framework_id.value, status);
        if let Some(ex) = st
            .frameworks
            .get(&call.framework_id.value)
            .and_then(|f| f.executors.get(&call.executor_id.value))
        {
            ex.send(ack);
        }
        Ok(())
    }

    /// MESSAGE: ExecutorToFramework to the master.
    pub fn executor_message(&self, call: exec::Call) -> Result<(), CallError> {
        let Some(message) = call.message.clone() else {
            return Err(CallError::BadRequest(
                "Expecting 'message' to be present".into(),
            ));
        };
        let mut st = lock(&self.state);
        Self::lookup(&mut st, &call)?;
        drop(st);
        self.send_to_master(agent_message::Message::ExecutorToFramework(
            internal::ExecutorToFramework {
                framework_id: call.framework_id,
                executor_id: call.executor_id,
                data: message.data,
            },
        ));
        Ok(())
    }

    // ----- shutdown ----------------------------------------------------

    /// Kills every executor this agent started (SIGTERM to the process
    /// group, SIGKILL after the grace period) and waits for them.
    pub async fn kill_all_executors(&self) {
        let procs: Vec<(ProcessHandle, Duration)> = {
            let st = lock(&self.state);
            st.frameworks
                .values()
                .flat_map(|f| f.executors.values())
                .filter_map(|e| {
                    e.process.clone().map(|p| {
                        (
                            p,
                            e.grace_period(self.config.executor_shutdown_grace_period),
                        )
                    })
                })
                .filter(|(p, _)| !p.has_exited())
                .collect()
        };
        if !procs.is_empty() {
            tracing::info!(count = procs.len(), "killing executors");
        }
        futures::future::join_all(procs.iter().map(|(p, grace)| p.terminate(*grace))).await;
    }
}

fn launch_event(q: Queued) -> exec::Event {
    match q {
        Queued::Task(task) => {
            let mut ev = event(event::Type::Launch);
            ev.launch = Some(event::Launch { task });
            ev
        }
        Queued::Group(task_group) => {
            let mut ev = event(event::Type::LaunchGroup);
            ev.launch_group = Some(event::LaunchGroup { task_group });
            ev
        }
    }
}

/// The Task record of a TaskInfo, as Mesos' `createTask`.
pub fn make_task(
    t: &TaskInfo,
    fw_id: &str,
    executor_id: Option<ExecutorId>,
    agent_id: &AgentId,
) -> Task {
    Task {
        name: t.name.clone(),
        task_id: t.task_id.clone(),
        framework_id: FrameworkId {
            value: fw_id.into(),
        },
        executor_id,
        agent_id: agent_id.clone(),
        state: TaskState::TaskStaging as i32,
        resources: t.resources.clone(),
        labels: t.labels.clone(),
        discovery: t.discovery.clone(),
        container: t.container.clone(),
        health_check: t.health_check.clone(),
        kill_policy: t.kill_policy,
        user: t.command.as_ref().and_then(|c| c.user.clone()),
        ..Default::default()
    }
}

/// The rlimits of an RLimitInfo, by Mesos name.
pub fn rlimits_of(info: &v1::RLimitInfo) -> Vec<RLimit> {
    info.rlimits
        .iter()
        .map(|r| RLimit {
            resource: v1::r_limit_info::r_limit::Type::try_from(r.r#type.unwrap_or(0))
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| format!("type {}", r.r#type.unwrap_or(0))),
            soft: r.soft,
            hard: r.hard,
        })
        .collect()
}

/// The last non-empty line of a (small tail of a) file.
fn last_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(1000).collect())
}

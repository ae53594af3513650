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
use std::sync::{Arc, Mutex, Weak};
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
use crate::containerizer::{self, ContainerLogger, LaunchSpec, ProcessHandle};
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

pub(crate) use crate::sync::lock;

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
    /// `--container_logger` with its `--logrotate_*` settings.
    pub container_logger: containerizer::ContainerLogger,
    /// `--task_log_archive`, opened.
    pub task_log_archive: Option<crate::task_logs::TaskLogArchive>,
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
    /// The `corral logger` processes of its stdout and stderr (logrotate
    /// container logger).
    pub loggers: Vec<ProcessHandle>,
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
    /// Archivings of finished runs' logs in progress.
    pub(crate) archiving: Mutex<tokio::task::JoinSet<()>>,
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
            hdfs: crate::hdfs_volumes::HdfsVolumes::with_settings(
                config.hdfs_volume_root.clone(),
                config.work_dir.clone(),
                config.hdfs_lease_timeout,
                config.hdfs_writeback_interval,
            ),
            config,
            state: Mutex::new(state),
            sum: Arc::new(Mutex::new(StatusUpdateManager::new())),
            sum_wake: Arc::new(Notify::new()),
            master: Mutex::new(None),
            work: Mutex::new(None),
            work_pending: AtomicUsize::new(0),
            archiving: Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    // ----- master link -------------------------------------------------
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

mod executors;
mod launch;
mod registration;
mod shutdown;
mod updates;

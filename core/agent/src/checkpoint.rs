//! Checkpoints of checkpointing frameworks (`FrameworkInfo.checkpoint`), so
//! a restarted agent recovers its executors and tasks.
//!
//! Layout, as Mesos lays out its meta dir:
//!
//! ```text
//! <work_dir>/meta/slaves/latest                       this agent's id
//! <work_dir>/meta/boot_id                             boot id of the writer
//! <work_dir>/meta/slaves/<agent>/slave.info           AgentInfo
//!   frameworks/<fw>/framework.info                    FrameworkInfo
//!   frameworks/<fw>/executors/<ex>/executor.info      ExecutorInfo
//!   .../executors/<ex>/runs/<container>/container.json  pid, cgroups, docker, kind
//!   .../runs/<container>/tasks/<task>/task.info       Task (state and statuses)
//!   .../runs/<container>/tasks/<task>/task.updates    unacknowledged StatusUpdates
//! <work_dir>/meta/slaves/<agent>/operations.info      operations awaiting acknowledgement
//! <work_dir>/meta/resources/resources.info            dynamic reservations and volumes
//! ```
//!
//! `resources.info` holds the resources that operations made (dynamically
//! reserved resources and persistent volumes, the ones Mesos calls
//! "checkpointed resources"); it is kept apart from the agent id, as in
//! Mesos, so reservations and volumes outlive a new agent id. The agent's
//! total is `--resources` with those carved out of it.
//!
//! Every file is written atomically (temp file, fsync, rename, fsync of the
//! directory) and framed (`CORRAL1`, length, payload, FNV-1a checksum), so a
//! torn or tampered file is detected as corrupt rather than half-read.

use std::io::Write;
use std::path::{Path, PathBuf};

use corral_api::internal::StatusUpdate;
use corral_api::v1::{AgentInfo, ExecutorInfo, FrameworkInfo, Operation, Resource, Task};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::isolation::CgroupSpec;

const MAGIC: &[u8; 7] = b"CORRAL1";
/// Largest checkpoint file read back.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest number of pending updates in one `task.updates`.
const MAX_UPDATES: usize = 10_000;

/// A checkpoint that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but is not a valid checkpoint.
    #[error("corrupt checkpoint {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file could not be read or written.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// How a container's executor runs (mirrors `agent::ExecutorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Corral's command executor.
    Command,
    /// Corral's default executor.
    Default,
    /// The framework's executor.
    Custom,
}

/// What the agent needs to find a container again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container id (the run directory's name).
    pub container_id: String,
    /// How the executor runs.
    pub kind: RunKind,
    /// Executor pid (the launcher's, which execs the executor).
    pub pid: Option<i32>,
    /// Its start time in clock ticks since boot (tells a reused pid apart).
    pub pid_start_time: Option<u64>,
    /// The sandbox.
    pub directory: PathBuf,
    /// The container's cgroups.
    pub cgroup: Option<CgroupSpec>,
    /// Docker container name, for Docker tasks.
    pub docker_container: Option<String>,
    /// Limits the container was given.
    pub cpus: f64,
    /// Memory limit in MB.
    pub mem_mb: f64,
    /// Disk quota in MB.
    pub disk_mb: f64,
    /// Persistent volumes bind-mounted into the sandbox (mount points).
    #[serde(default)]
    pub volume_mounts: Vec<PathBuf>,
    /// The `corral logger` processes of its stdout and stderr (logrotate
    /// container logger), to wait for before archiving its logs.
    #[serde(default)]
    pub loggers: Vec<LoggerRecord>,
}

/// A logger process of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggerRecord {
    /// Its pid.
    pub pid: i32,
    /// Its start time in clock ticks since boot.
    pub start_time: Option<u64>,
}

/// A task recovered from its checkpoint.
#[derive(Debug, Clone)]
pub struct RecoveredTask {
    /// Its Task record.
    pub task: Task,
    /// Its unacknowledged updates, oldest first.
    pub pending: Vec<StatusUpdate>,
}

/// An executor's run recovered from its checkpoint.
#[derive(Debug, Clone)]
pub struct RecoveredExecutor {
    /// ExecutorInfo.
    pub info: ExecutorInfo,
    /// The container.
    pub container: ContainerRecord,
    /// Its tasks.
    pub tasks: Vec<RecoveredTask>,
}

/// A framework recovered from its checkpoint.
#[derive(Debug, Clone)]
pub struct RecoveredFramework {
    /// FrameworkInfo.
    pub info: FrameworkInfo,
    /// Its executors.
    pub executors: Vec<RecoveredExecutor>,
}

/// A task whose checkpoint could not be read (reported lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostTask {
    /// Framework id (from the directory name).
    pub framework_id: String,
    /// Executor id, when known.
    pub executor_id: Option<String>,
    /// Task id (from the directory name).
    pub task_id: String,
    /// Why it is lost.
    pub reason: String,
}

/// A container whose checkpoint could not be read; it is destroyed.
#[derive(Debug, Clone, PartialEq)]
pub struct LostContainer {
    /// Container id.
    pub container_id: String,
    /// What is known of it.
    pub record: Option<ContainerRecord>,
}

/// Everything recovered from the meta dir.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The previous run's agent id.
    pub agent_id: String,
    /// Its AgentInfo.
    pub agent_info: Option<AgentInfo>,
    /// Whether the machine rebooted since (executors are then gone).
    pub rebooted: bool,
    /// Frameworks with their executors.
    pub frameworks: Vec<RecoveredFramework>,
    /// Unreadable checkpoints, as messages naming the file.
    pub errors: Vec<String>,
    /// Tasks to report lost.
    pub lost_tasks: Vec<LostTask>,
    /// Containers to destroy.
    pub lost_containers: Vec<LostContainer>,
    /// Operations whose latest status was not yet acknowledged.
    pub operations: Vec<Operation>,
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Frames a payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 23);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&fnv1a(payload).to_le_bytes());
    out
}

/// Checks a frame and returns its payload.
pub fn unframe(data: &[u8]) -> Result<&[u8], String> {
    if data.len() < MAGIC.len() + 16 || &data[..MAGIC.len()] != MAGIC {
        return Err("not a Corral checkpoint (bad header)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[MAGIC.len()..MAGIC.len() + 8]);
    let start = MAGIC.len() + 8;
    let promised = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|l| l.checked_add(start + 8));
    let Some(total) = promised.filter(|t| *t == data.len()) else {
        return Err(format!(
            "truncated or extended: {} bytes, the header promises {}",
            data.len(),
            u64::from_le_bytes(len).saturating_add((start + 8) as u64)
        ));
    };
    let len = total - start - 8;
    let payload = &data[start..start + len];
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&data[start + len..]);
    if u64::from_le_bytes(sum) != fnv1a(payload) {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Writes `data` to `path` atomically: a temp file beside it, fsync,
/// rename over the target, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("checkpoint path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("checkpoint path has no file name"))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn read_framed(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{len} bytes is larger than any checkpoint"),
        });
    }
    let data = std::fs::read(path).map_err(io)?;
    unframe(&data)
        .map(<[u8]>::to_vec)
        .map_err(|reason| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
}

fn read_proto<M: Message + Default>(path: &Path) -> Result<M, CheckpointError> {
    let payload = read_framed(path)?;
    M::decode(&payload[..]).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("not a valid protobuf: {e}"),
    })
}

fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The machine's boot id.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The checkpoint store of one work dir.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    meta: PathBuf,
}

impl Checkpoint {
    /// The store under `<work_dir>/meta`.
    pub fn new(work_dir: &Path) -> Self {
        Self {
            meta: work_dir.join("meta"),
        }
    }

    fn agent_dir(&self, agent: &str) -> PathBuf {
        self.meta.join("slaves").join(agent)
    }

    fn framework_dir(&self, agent: &str, fw: &str) -> PathBuf {
        self.agent_dir(agent).join("frameworks").join(fw)
    }

    fn executor_dir(&self, agent: &str, fw: &str, ex: &str) -> PathBuf {
        self.framework_dir(agent, fw).join("executors").join(ex)
    }

    fn run_dir(&self, agent: &str, fw: &str, ex: &str, container: &str) -> PathBuf {
        self.executor_dir(agent, fw, ex)
            .join("runs")
            .join(container)
    }

    fn task_dir(&self, agent: &str, fw: &str, ex: &str, container: &str, task: &str) -> PathBuf {
        self.run_dir(agent, fw, ex, container)
            .join("tasks")
            .join(task)
    }

    fn write(&self, path: &Path, payload: &[u8]) -> Result<(), CheckpointError> {
        write_atomic(path, &frame(payload)).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checkpoints the agent (its info, boot id and the `latest` pointer).
    pub fn write_agent(&self, info: &AgentInfo) -> Result<(), CheckpointError> {
        let id = info
            .id
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_default();
        self.write(
            &self.agent_dir(&id).join("slave.info"),
            &info.encode_to_vec(),
        )?;
        self.write(&self.meta.join("boot_id"), boot_id().as_bytes())?;
        self.write(&self.meta.join("slaves").join("latest"), id.as_bytes())
    }

    /// Checkpoints a framework.
    pub fn write_framework(
        &self,
        agent: &str,
        info: &FrameworkInfo,
    ) -> Result<(), CheckpointError> {
        let fw = info.id.as_ref().map(|i| i.value.as_str()).unwrap_or("");
        self.write(
            &self.framework_dir(agent, fw).join("framework.info"),
            &info.encode_to_vec(),
        )
    }

    /// Checkpoints an executor.
    pub fn write_executor(
        &self,
        agent: &str,
        fw: &str,
        info: &ExecutorInfo,
    ) -> Result<(), CheckpointError> {
        self.write(
            &self
                .executor_dir(agent, fw, &info.executor_id.value)
                .join("executor.info"),
            &info.encode_to_vec(),
        )
    }

    /// Checkpoints a container (its pid, cgroups, docker name).
    pub fn write_container(
        &self,
        agent: &str,
        fw: &str,
        ex: &str,
        record: &ContainerRecord,
    ) -> Result<(), CheckpointError> {
        let json = serde_json::to_vec(record).map_err(|e| CheckpointError::Corrupt {
            path: PathBuf::from("container.json"),
            reason: e.to_string(),
        })?;
        self.write(
            &self
                .run_dir(agent, fw, ex, &record.container_id)
                .join("container.json"),
            &json,
        )
    }

    /// Checkpoints a task.
    pub fn write_task(
        &self,
        agent: &str,
        ex: &str,
        container: &str,
        task: &Task,
    ) -> Result<(), CheckpointError> {
        let dir = self.task_dir(
            agent,
            &task.framework_id.value,
            ex,
            container,
            &task.task_id.value,
        );
        self.write(&dir.join("task.info"), &task.encode_to_vec())
    }

    /// Checkpoints a task's unacknowledged updates (the whole list).
    pub fn write_updates(
        &self,
        agent: &str,
        fw: &str,
        ex: &str,
        container: &str,
        task: &str,
        pending: &[StatusUpdate],
    ) -> Result<(), CheckpointError> {
        let mut buf = Vec::new();
        for u in pending.iter().take(MAX_UPDATES) {
            u.encode_length_delimited(&mut buf)
                .map_err(|e| CheckpointError::Corrupt {
                    path: PathBuf::from("task.updates"),
                    reason: e.to_string(),
                })?;
        }
        let dir = self.task_dir(agent, fw, ex, container, task);
        self.write(&dir.join("task.updates"), &buf)
    }

    /// `<work_dir>/meta/resources/resources.info`.
    pub fn resources_path(&self) -> PathBuf {
        self.meta.join("resources").join("resources.info")
    }

    /// Checkpoints the resources operations made (the whole list).
    pub fn write_resources(&self, resources: &[Resource]) -> Result<(), CheckpointError> {
        let path = self.resources_path();
        self.write(&path, &encode_list(resources, &path)?)
    }

    /// The checkpointed resources; `Ok(None)` when there are none.
    pub fn read_resources(&self) -> Result<Option<Vec<Resource>>, CheckpointError> {
        let path = self.resources_path();
        if !path.exists() {
            return Ok(None);
        }
        let payload = read_framed(&path)?;
        decode_list(&path, &payload).map(Some)
    }

    /// Checkpoints the operations awaiting acknowledgement (the whole list).
    pub fn write_operations(
        &self,
        agent: &str,
        operations: &[Operation],
    ) -> Result<(), CheckpointError> {
        let path = self.agent_dir(agent).join("operations.info");
        if operations.is_empty() {
            return match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(CheckpointError::Io { path, source }),
            };
        }
        self.write(&path, &encode_list(operations, &path)?)
    }

    /// Removes an executor run's checkpoint (it terminated and its tasks
    /// completed).
    pub fn remove_run(&self, agent: &str, fw: &str, ex: &str, container: &str) {
        let run = self.run_dir(agent, fw, ex, container);
        let _ = std::fs::remove_dir_all(&run);
        let runs = self.executor_dir(agent, fw, ex).join("runs");
        if subdirs(&runs).is_empty() {
            let _ = std::fs::remove_dir_all(self.executor_dir(agent, fw, ex));
        }
    }

    /// Removes a framework's checkpoint.
    pub fn remove_framework(&self, agent: &str, fw: &str) {
        let _ = std::fs::remove_dir_all(self.framework_dir(agent, fw));
    }

    /// Removes the `latest` pointer (and the agent's checkpoint): the next
    /// start is a new agent.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.meta.join("slaves").join("latest"));
        let _ = std::fs::remove_dir_all(self.meta.join("slaves"));
    }

    /// Reads the previous run's checkpoint. `Ok(None)`: there is none.
    /// With `strict`, the first unreadable file is an error; otherwise it
    /// is noted in `errors` and what depends on it is reported lost.
    pub fn recover(&self, strict: bool) -> Result<Option<Recovered>, CheckpointError> {
        let latest = self.meta.join("slaves").join("latest");
        if !latest.exists() {
            return Ok(None);
        }
        let agent_id =
            match read_framed(&latest).map(|b| String::from_utf8_lossy(&b).trim().to_string()) {
                Ok(id) if !id.is_empty() => id,
                Ok(_) => {
                    return Err(CheckpointError::Corrupt {
                        path: latest,
                        reason: "empty agent id".into(),
                    })
                }
                // Without an agent id nothing else can be found.
                Err(e) => return Err(e),
            };
        let mut rec = Recovered {
            agent_id: agent_id.clone(),
            ..Default::default()
        };
        let fail = |e: CheckpointError, rec: &mut Recovered| -> Result<(), CheckpointError> {
            if strict {
                return Err(e);
            }
            tracing::error!(error = %e, "unreadable checkpoint, recovering the rest");
            rec.errors.push(e.to_string());
            Ok(())
        };
        let boot = self.meta.join("boot_id");
        match read_framed(&boot) {
            Ok(b) => rec.rebooted = String::from_utf8_lossy(&b).trim() != boot_id(),
            Err(e) => {
                fail(e, &mut rec)?;
                rec.rebooted = false;
            }
        }
        let agent_dir = self.agent_dir(&agent_id);
        match read_proto::<AgentInfo>(&agent_dir.join("slave.info")) {
            Ok(info) => rec.agent_info = Some(info),
            Err(e) => fail(e, &mut rec)?,
        }
        let ops = agent_dir.join("operations.info");
        if ops.exists() {
            match read_framed(&ops).and_then(|b| decode_list::<Operation>(&ops, &b)) {
                Ok(list) => rec.operations = list,
                Err(e) => fail(e, &mut rec)?,
            }
        }
        for (fw_id, fw_dir) in subdirs(&agent_dir.join("frameworks")) {
            let fw_info = match read_proto::<FrameworkInfo>(&fw_dir.join("framework.info")) {
                Ok(i) => Some(i),
                Err(e) => {
                    fail(e, &mut rec)?;
                    None
                }
            };
            let mut executors = Vec::new();
            for (ex_id, ex_dir) in subdirs(&fw_dir.join("executors")) {
                let ex_info = match read_proto::<ExecutorInfo>(&ex_dir.join("executor.info")) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        fail(e, &mut rec)?;
                        None
                    }
                };
                // The newest run is the live one; older runs are gone.
                let mut runs = subdirs(&ex_dir.join("runs"));
                runs.sort_by_key(|(_, p)| {
                    std::fs::metadata(p.join("container.json"))
                        .and_then(|m| m.modified())
                        .ok()
                });
                let Some((container_id, run_dir)) = runs.pop() else {
                    continue;
                };
                let container = match read_framed(&run_dir.join("container.json")).and_then(|b| {
                    serde_json::from_slice::<ContainerRecord>(&b).map_err(|e| {
                        CheckpointError::Corrupt {
                            path: run_dir.join("container.json"),
                            reason: e.to_string(),
                        }
                    })
                }) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        fail(e, &mut rec)?;
                        None
                    }
                };
                let mut tasks = Vec::new();
                let mut run_ok = fw_info.is_some() && ex_info.is_some() && container.is_some();
                let mut lost_here = Vec::new();
                for (task_id, task_dir) in subdirs(&run_dir.join("tasks")) {
                    let task = read_proto::<Task>(&task_dir.join("task.info"));
                    let pending = if task_dir.join("task.updates").exists() {
                        read_framed(&task_dir.join("task.updates"))
                            .and_then(|b| decode_updates(&task_dir.join("task.updates"), &b))
                    } else {
                        Ok(Vec::new())
                    };
                    match (task, pending) {
                        (Ok(task), Ok(pending)) => tasks.push(RecoveredTask { task, pending }),
                        (Err(e), _) | (_, Err(e)) => {
                            let reason = e.to_string();
                            fail(e, &mut rec)?;
                            run_ok = false;
                            lost_here.push(LostTask {
                                framework_id: fw_id.clone(),
                                executor_id: Some(ex_id.clone()),
                                task_id,
                                reason,
                            });
                        }
                    }
                }
                match (run_ok, &fw_info, ex_info, container) {
                    (true, Some(_), Some(info), Some(container)) => {
                        executors.push(RecoveredExecutor {
                            info,
                            container,
                            tasks,
                        })
                    }
                    (_, _, _, container) => {
                        // The run cannot be trusted: its container goes and
                        // every task of it is reported lost.
                        for t in tasks {
                            lost_here.push(LostTask {
                                framework_id: fw_id.clone(),
                                executor_id: Some(ex_id.clone()),
                                task_id: t.task.task_id.value.clone(),
                                reason: "a checkpoint of its executor could not be read".into(),
                            });
                        }
                        rec.lost_tasks.append(&mut lost_here);
                        rec.lost_containers.push(LostContainer {
                            container_id,
                            record: container,
                        });
                    }
                }
                rec.lost_tasks.extend(lost_here);
            }
            if let Some(info) = fw_info {
                rec.frameworks.push(RecoveredFramework { info, executors });
            } else {
                for ex in executors {
                    for t in ex.tasks {
                        rec.lost_tasks.push(LostTask {
                            framework_id: fw_id.clone(),
                            executor_id: Some(ex.info.executor_id.value.clone()),
                            task_id: t.task.task_id.value.clone(),
                            reason: "the framework's checkpoint could not be read".into(),
                        });
                    }
                    rec.lost_containers.push(LostContainer {
                        container_id: ex.container.container_id.clone(),
                        record: Some(ex.container),
                    });
                }
            }
        }
        Ok(Some(rec))
    }
}

fn encode_list<M: Message>(items: &[M], path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let mut buf = Vec::new();
    for m in items {
        m.encode_length_delimited(&mut buf)
            .map_err(|e| CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    }
    Ok(buf)
}

fn decode_list<M: Message + Default>(
    path: &Path,
    mut buf: &[u8],
) -> Result<Vec<M>, CheckpointError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if out.len() >= MAX_UPDATES {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("more than {MAX_UPDATES} records"),
            });
        }
        let m = M::decode_length_delimited(&mut buf).map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not a valid record: {e}"),
        })?;
        out.push(m);
    }
    Ok(out)
}

fn decode_updates(path: &Path, mut buf: &[u8]) -> Result<Vec<StatusUpdate>, CheckpointError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if out.len() >= MAX_UPDATES {
            break;
        }
        let u = StatusUpdate::decode_length_delimited(&mut buf).map_err(|e| {
            CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("not a valid update record: {e}"),
            }
        })?;
        out.push(u);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::ids;
    use corral_api::v1::{TaskState, TaskStatus};

    fn agent_info(id: &str) -> AgentInfo {
        AgentInfo {
            hostname: "h".into(),
            id: Some(ids::agent_id(id)),
            ..Default::default()
        }
    }

    fn fw_info(id: &str) -> FrameworkInfo {
        FrameworkInfo {
            name: "f".into(),
            id: Some(ids::framework_id(id)),
            checkpoint: Some(true),
            ..Default::default()
        }
    }

    fn record(cid: &str) -> ContainerRecord {
        ContainerRecord {
            container_id: cid.into(),
            kind: RunKind::Command,
            pid: Some(42),
            pid_start_time: Some(7),
            directory: "/sandbox".into(),
            cgroup: None,
            docker_container: None,
            cpus: 1.0,
            mem_mb: 64.0,
            disk_mb: 0.0,
            volume_mounts: vec!["/sandbox/data".into()],
            loggers: vec![LoggerRecord {
                pid: 43,
                start_time: Some(8),
            }],
        }
    }

    fn task(fw: &str, id: &str) -> Task {
        Task {
            name: id.into(),
            task_id: ids::task_id(id),
            framework_id: ids::framework_id(fw),
            agent_id: ids::agent_id("A"),
            state: TaskState::TaskRunning as i32,
            ..Default::default()
        }
    }

    fn update(fw: &str, id: &str) -> StatusUpdate {
        StatusUpdate {
            framework_id: ids::framework_id(fw),
            status: TaskStatus {
                task_id: ids::task_id(id),
                state: TaskState::TaskFinished as i32,
                uuid: Some(ids::new_uuid_bytes()),
                ..Default::default()
            },
            executor_id: None,
            latest_state: None,
        }
    }

    fn populated(dir: &Path) -> Checkpoint {
        let c = Checkpoint::new(dir);
        c.write_agent(&agent_info("A")).unwrap();
        c.write_framework("A", &fw_info("F")).unwrap();
        let ex = ExecutorInfo {
            executor_id: ids::executor_id("E"),
            ..Default::default()
        };
        c.write_executor("A", "F", &ex).unwrap();
        c.write_container("A", "F", "E", &record("C")).unwrap();
        c.write_task("A", "E", "C", &task("F", "t1")).unwrap();
        c.write_task("A", "E", "C", &task("F", "t2")).unwrap();
        c.write_updates("A", "F", "E", "C", "t1", &[update("F", "t1")])
            .unwrap();
        c
    }

    #[test]
    fn frames_detect_corruption() {
        let f = frame(b"hello");
        assert_eq!(unframe(&f).unwrap(), b"hello");
        assert!(unframe(&f[..f.len() - 1]).is_err());
        let mut bad = f.clone();
        bad[10] ^= 1;
        assert!(unframe(&bad).is_err());
        assert!(unframe(b"garbage").is_err());
        // A length that cannot be: no overflow, an error.
        let mut huge = f.clone();
        huge[7..15].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(unframe(&huge).is_err());
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = populated(dir.path());
        let r = c.recover(true).unwrap().unwrap();
        assert_eq!(r.agent_id, "A");
        assert!(!r.rebooted);
        assert_eq!(r.frameworks.len(), 1);
        let ex = &r.frameworks[0].executors[0];
        assert_eq!(ex.container, record("C"));
        assert_eq!(ex.tasks.len(), 2);
        let t1 = ex
            .tasks
            .iter()
            .find(|t| t.task.task_id.value == "t1")
            .unwrap();
        assert_eq!(t1.pending.len(), 1);
        assert!(r.errors.is_empty() && r.lost_tasks.is_empty());
        // No temp files are left behind.
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                assert!(!e.file_name().to_string_lossy().ends_with(".tmp"));
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        c.clear();
        assert!(c.recover(true).unwrap().is_none());
    }

    #[test]
    fn corrupt_task_strict_names_the_file_lenient_reports_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let c = populated(dir.path());
        let file = c.task_dir("A", "F", "E", "C", "t2").join("task.info");
        // A half-written file: the first bytes of a valid one.
        let whole = std::fs::read(&file).unwrap();
        std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
        let err = c.recover(true).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");

        let r = c.recover(false).unwrap().unwrap();
        assert_eq!(r.errors.len(), 1);
        let lost: Vec<&str> = r.lost_tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert!(lost.contains(&"t2") && lost.contains(&"t1"), "{lost:?}");
        assert_eq!(r.lost_containers.len(), 1);
        assert!(r.frameworks[0].executors.is_empty());
    }

    #[test]
    fn stray_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let c = populated(dir.path());
        let tmp = c.task_dir("A", "F", "E", "C", "t1").join(".task.info.tmp");
        std::fs::write(&tmp, b"half").unwrap();
        let r = c.recover(true).unwrap().unwrap();
        assert_eq!(r.frameworks[0].executors[0].tasks.len(), 2);
    }

    #[test]
    fn resources_and_operations_round_trip() {
        use corral_api::v1::{self, offer::operation::Type as OpType};
        let dir = tempfile::tempdir().unwrap();
        let c = populated(dir.path());
        assert!(c.read_resources().unwrap().is_none());
        let mut disk = corral_api::resources::scalar("disk", 128.0);
        disk.reservations.push(v1::resource::ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some("db".into()),
            principal: Some("ops".into()),
            labels: None,
        });
        let cpus = corral_api::resources::scalar("cpus", 1.5);
        c.write_resources(&[disk.clone(), cpus.clone()]).unwrap();
        assert_eq!(c.read_resources().unwrap().unwrap(), vec![disk, cpus]);
        // Resources are kept apart from the agent id: clearing the agent's
        // checkpoint keeps them.
        c.clear();
        assert_eq!(c.read_resources().unwrap().unwrap().len(), 2);

        let c = populated(dir.path());
        let op = Operation {
            framework_id: Some(ids::framework_id("F")),
            agent_id: Some(ids::agent_id("A")),
            info: v1::offer::Operation {
                r#type: Some(OpType::Reserve as i32),
                id: Some(v1::OperationId {
                    value: "op1".into(),
                }),
                ..Default::default()
            },
            latest_status: v1::OperationStatus {
                state: v1::OperationState::OperationFinished as i32,
                ..Default::default()
            },
            statuses: vec![],
            uuid: v1::Uuid {
                value: ids::new_uuid_bytes(),
            },
        };
        c.write_operations("A", std::slice::from_ref(&op)).unwrap();
        let r = c.recover(true).unwrap().unwrap();
        assert_eq!(r.operations, vec![op]);
        c.write_operations("A", &[]).unwrap();
        assert!(c.recover(true).unwrap().unwrap().operations.is_empty());

        // A torn resources file is an error naming it.
        let path = c.resources_path();
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let err = c.read_resources().unwrap_err().to_string();
        assert!(err.contains("resources.info"), "{err}");
    }
}

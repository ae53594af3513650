//! A task's log files, live or archived, for the API
//! (`GET /api/sandbox/{taskId}/read`, Singularity's path) and
//! `corral workloads logs [-f]`.
//!
//! The task is looked up in the master (`/master/tasks?task_id=`), its
//! agent in `/master/slaves`, and the file read through the agent's
//! `/files/read` on the virtual sandbox path
//! `/frameworks/<framework>/executors/<executor>/runs/latest/<file>`. When
//! the master or the agent no longer has it (the agent is gone, the sandbox
//! was garbage-collected), the file is read from the task log archive the
//! agents copy finished runs to (`--task_log_archive`, the same URI given to
//! the framework), under `<framework>/<executor>/<container>/<file>`.
//! Reading never touches the actor.

use std::sync::Arc;
use std::time::Duration;

use corral_storage::archive::LogArchive;
use serde::Serialize;

use crate::cluster::ClusterSource;
use crate::server::ApiError;

/// Largest chunk one read returns.
pub const MAX_CHUNK: u64 = 1 << 20;

/// A piece of a log file (Mesos' `/files/read` answer, plus where it came
/// from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    /// The bytes, as text (invalid UTF-8 replaced).
    pub data: String,
    /// Where they start.
    pub offset: u64,
    /// Where the next read starts.
    pub next_offset: u64,
    /// `agent` (the live sandbox) or `archive`.
    pub source: &'static str,
    /// The task's last state the master knows (`TASK_RUNNING`, ...), when
    /// it knows the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_state: Option<String>,
}

/// Which file of the sandbox: `stdout`, `stderr`, or a rotated one
/// (`stdout.1`).
pub fn valid_file(path: &str) -> bool {
    let base = path.split('.').next().unwrap_or("");
    let rest = &path[base.len()..];
    (base == "stdout" || base == "stderr")
        && (rest.is_empty()
            || rest
                .strip_prefix('.')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// Where logs are read from.
#[derive(Clone)]
pub(crate) struct LogSource {
    pub cluster: ClusterSource,
    pub archive: Option<Arc<dyn LogArchive>>,
    http: reqwest::Client,
}

impl LogSource {
    pub fn new(cluster: ClusterSource, archive: Option<Arc<dyn LogArchive>>) -> Self {
        Self {
            cluster,
            archive,
            http: reqwest::Client::new(),
        }
    }

    async fn get_json(&self, url: &str) -> Option<serde_json::Value> {
        self.http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())?
            .json()
            .await
            .ok()
    }

    /// Reads `length` bytes of `file` of `task_id` from `offset`.
    pub async fn read(
        &self,
        task_id: &str,
        file: &str,
        offset: u64,
        length: u64,
    ) -> Result<Chunk, ApiError> {
        if !valid_file(file) {
            return Err(ApiError::bad(format!(
                "path: {file:?} is not a log file; use stdout, stderr or a rotated one (stdout.1)"
            )));
        }
        let plausible = !task_id.is_empty()
            && task_id.len() <= 400
            && task_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plausible {
            return Err(ApiError::bad(format!(
                "taskId: {task_id:?} is not a task id of this framework"
            )));
        }
        let length = length.min(MAX_CHUNK);
        let (master, framework) = (self.cluster.master(), self.cluster.framework_id());
        let Some(framework) = framework else {
            return Err(ApiError::unavailable(
                "the framework is not subscribed yet; retry shortly",
            ));
        };
        let mut executor = task_id.to_string();
        let mut task_state = None;
        if let Some(master) = master {
            let tasks = self
                .get_json(&format!(
                    "http://{master}/master/tasks?task_id={task_id}&framework_id={framework}&limit=-1"
                ))
                .await;
            let task = tasks
                .as_ref()
                .and_then(|t| t["tasks"].as_array())
                .and_then(|t| t.iter().find(|t| t["id"] == task_id))
                .cloned();
            if let Some(task) = task {
                task_state = task["state"].as_str().map(str::to_string);
                if let Some(e) = task["executor_id"].as_str().filter(|e| !e.is_empty()) {
                    executor = e.to_string();
                }
                let agent = task["slave_id"].as_str().unwrap_or_default().to_string();
                if let Some(endpoint) = self.agent_endpoint(&master, &agent).await {
                    let path =
                        format!("/frameworks/{framework}/executors/{executor}/runs/latest/{file}");
                    // Every part of the path is `[A-Za-z0-9._-]` or `/`.
                    let url = format!(
                        "http://{endpoint}/files/read?path={path}&offset={offset}&length={length}"
                    );
                    let answer = self
                        .http
                        .get(&url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    if let Ok(r) = answer {
                        if r.status().is_success() {
                            let mut v: serde_json::Value = r.json().await.unwrap_or_default();
                            // Asked past the end of a smaller file: it was
                            // rotated (stdout -> stdout.1); the new one is
                            // read from its start.
                            let shrunk = v["data"].as_str().is_some_and(str::is_empty)
                                && v["offset"].as_u64().is_some_and(|at| at < offset);
                            if shrunk {
                                let again = format!(
                                    "http://{endpoint}/files/read?path={path}&offset=0&length={length}"
                                );
                                if let Some(w) = self.get_json(&again).await {
                                    v = w;
                                }
                            }
                            let data = v["data"].as_str().unwrap_or_default().to_string();
                            let at = v["offset"].as_u64().unwrap_or(offset);
                            return Ok(Chunk {
                                next_offset: at + data.len() as u64,
                                data,
                                offset: at,
                                source: "agent",
                                task_state,
                            });
                        }
                    }
                }
            }
        }
        self.read_archived(&framework, &executor, file, offset, length, task_state)
            .await
    }

    async fn agent_endpoint(&self, master: &str, agent: &str) -> Option<String> {
        let slaves = self
            .get_json(&format!("http://{master}/master/slaves"))
            .await?;
        let slave = slaves["slaves"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == agent)?
            .clone();
        // `slave(1)@host:port`.
        let pid = slave["pid"].as_str()?;
        pid.split_once('@').map(|(_, addr)| addr.to_string())
    }

    async fn read_archived(
        &self,
        framework: &str,
        executor: &str,
        file: &str,
        offset: u64,
        length: u64,
        task_state: Option<String>,
    ) -> Result<Chunk, ApiError> {
        let Some(archive) = self.archive.clone() else {
            return Err(ApiError::not_found(format!(
                "no {file} of task {executor}: neither the master nor an agent has it, and no \
                 --task_log_archive is configured"
            )));
        };
        let (framework, executor, file) = (
            framework.to_string(),
            executor.to_string(),
            file.to_string(),
        );
        let missing = format!("no {file} of task {executor} in the task log archive either");
        tokio::task::spawn_blocking(move || {
            let keys = archive.list(&format!("{framework}/{executor}")).ok()?;
            // `<fw>/<ex>/<container>/<file>`, not a task group's task file.
            let key = keys
                .into_iter()
                .rfind(|k| k.split('/').count() == 4 && k.ends_with(&format!("/{file}")))?;
            let bytes = archive.read(&key, offset, length).ok()?;
            Some(Chunk {
                data: String::from_utf8_lossy(&bytes).into_owned(),
                offset,
                next_offset: offset + bytes.len() as u64,
                source: "archive",
                task_state,
            })
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_log_files_are_read() {
        for ok in ["stdout", "stderr", "stdout.1", "stderr.12"] {
            assert!(valid_file(ok), "{ok}");
        }
        for bad in [
            "stdout.",
            "stdout.x",
            "../stdout",
            "stdin",
            "stdout/..",
            "",
            "std",
        ] {
            assert!(!valid_file(bad), "{bad}");
        }
    }
}

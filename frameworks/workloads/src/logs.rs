//! A task's log files, live or archived, for the API
//! (`GET /api/sandbox/{taskId}/read`, Singularity's path) and
//! `corral workloads logs [-f]`.
//!
//! The live sandbox is read through the master and the task's agent
//! ([`corral_sdk::sandbox`]). When
//! the master or the agent no longer has it (the agent is gone, the sandbox
//! was garbage-collected), the file is read from the task log archive the
//! agents copy finished runs to (`--task_log_archive`, the same URI given to
//! the framework), under `<framework>/<executor>/<container>/<file>`.
//! Reading never touches the actor.

use std::sync::Arc;

use corral_sdk::sandbox::{plausible_task_id, read_live, valid_file};
pub use corral_sdk::sandbox::{Chunk, MAX_CHUNK};
use corral_storage::archive::LogArchive;

use crate::cluster::ClusterSource;
use crate::server::ApiError;

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
        if !plausible_task_id(task_id) {
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
        let (executor, task_state) = match master {
            Some(master) => {
                let live = read_live(
                    &self.http, &master, &framework, task_id, file, offset, length,
                )
                .await;
                if let Some(chunk) = live.chunk {
                    return Ok(chunk);
                }
                (live.executor, live.task_state)
            }
            None => (task_id.to_string(), None),
        };
        self.read_archived(&framework, &executor, file, offset, length, task_state)
            .await
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

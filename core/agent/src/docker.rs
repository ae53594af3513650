//! The agent's side of the Docker containerizer (bollard): checking the
//! engine at start, removing a Docker task's container after its executor
//! is gone, and finding the containers this agent launched when it
//! recovers (orphans are stopped and removed). The container itself is run
//! by Corral's executor (`core/executor`, Docker mode), as Mesos' docker
//! executor does.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

/// Label with the agent id on every container the agent launches.
pub const AGENT_LABEL: &str = "corral.agent_id";
/// Label with the container id.
pub const CONTAINER_LABEL: &str = "corral.container_id";
/// Request timeout of the Docker client, in seconds.
const TIMEOUT_SECS: u64 = 120;

/// A Docker engine error.
#[derive(Debug, thiserror::Error)]
#[error("docker engine at {socket}: {message}")]
pub struct DockerError {
    /// The socket.
    pub socket: String,
    /// What failed.
    pub message: String,
}

/// Connects to the engine and negotiates the API version.
pub async fn connect(socket: &Path) -> Result<Docker, DockerError> {
    let s = socket.display().to_string();
    let fail = |m: String| DockerError {
        socket: s.clone(),
        message: m,
    };
    let docker = Docker::connect_with_unix(&s, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .map_err(|e| fail(e.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| fail(format!("cannot reach it: {e}")))
}

/// Checks the engine answers (the agent refuses to start otherwise).
pub async fn check(socket: &Path) -> Result<(), DockerError> {
    let d = connect(socket).await?;
    d.ping().await.map(|_| ()).map_err(|e| DockerError {
        socket: socket.display().to_string(),
        message: format!("ping failed: {e}"),
    })
}

/// Force-removes a container (it may be gone already).
pub async fn remove(socket: &Path, name: &str) {
    let d = match connect(socket).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(container = name, error = %e, "cannot remove docker container");
            return;
        }
    };
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match d.remove_container(name, Some(opts)).await {
        Ok(()) => tracing::info!(container = name, "docker container removed"),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => tracing::warn!(container = name, error = %e, "cannot remove docker container"),
    }
}

/// Names of the containers (running or not) labelled with this agent id.
pub async fn list(socket: &Path, agent_id: &str) -> Result<Vec<String>, DockerError> {
    let d = connect(socket).await?;
    let mut filters = HashMap::new();
    filters.insert(
        "label".to_string(),
        vec![format!("{AGENT_LABEL}={agent_id}")],
    );
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let list = d
        .list_containers(Some(opts))
        .await
        .map_err(|e| DockerError {
            socket: socket.display().to_string(),
            message: format!("cannot list containers: {e}"),
        })?;
    Ok(list
        .into_iter()
        .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

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

/// The cgroup of a running container (cgroupfs or systemd driver), with
/// its cpu shares and memory limit, for its usage statistics.
pub async fn container_cgroup(
    socket: &Path,
    name: &str,
) -> Result<Option<crate::isolation::CgroupSpec>, DockerError> {
    use bollard::query_parameters::InspectContainerOptions;
    let d = connect(socket).await?;
    let info = match d
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(e) => {
            return Err(DockerError {
                socket: socket.display().to_string(),
                message: format!("cannot inspect {name}: {e}"),
            })
        }
    };
    let Some(id) = info.id.filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
        return Ok(None);
    }
    let Some(version) = crate::isolation::detect_version() else {
        return Ok(None);
    };
    let host = info.host_config.unwrap_or_default();
    let parent = host.cgroup_parent.filter(|p| !p.is_empty());
    let systemd = crate::isolation::v1_mount("memory")
        .map(|m| m.join("system.slice").join(format!("docker-{id}.scope")))
        .is_some_and(|p| p.is_dir())
        || std::path::Path::new(crate::isolation::CGROUP_ROOT)
            .join("system.slice")
            .join(format!("docker-{id}.scope"))
            .is_dir();
    let path = match (parent, systemd) {
        (Some(p), _) => format!("{}/{id}", p.trim_matches('/')),
        (None, true) => format!("system.slice/docker-{id}.scope"),
        (None, false) => format!("docker/{id}"),
    };
    Ok(Some(crate::isolation::CgroupSpec {
        path,
        version,
        cpu_shares: Some(host.cpu_shares.filter(|s| *s > 0).unwrap_or(1024) as u64),
        cfs_quota_us: host.cpu_quota.filter(|q| *q > 0),
        cfs_period_us: host
            .cpu_quota
            .filter(|q| *q > 0)
            .map(|_| host.cpu_period.filter(|p| *p > 0).unwrap_or(100_000) as u64),
        mem_limit_bytes: host.memory.filter(|m| *m > 0).map(|m| m as u64),
    }))
}

//! Docker mode: a command task whose `ContainerInfo` is DOCKER runs in a
//! Docker container (bollard), as Mesos' docker executor runs it: the image,
//! HOST/BRIDGE/NONE/USER networking with port mappings, volumes, parameters,
//! `force_pull_image`, the sandbox mounted at `/mnt/mesos/sandbox`, the
//! task's cpus/mem as the container's limits, and the container's
//! stdout/stderr copied into the sandbox files.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use corral_api::resources::Resources;
use corral_api::v1::{container_info, volume, TaskInfo};
use futures::StreamExt;

/// Where the sandbox appears inside the container.
pub(crate) const SANDBOX_IN_CONTAINER: &str = "/mnt/mesos/sandbox";
const TIMEOUT_SECS: u64 = 300;

/// How a Docker task ended.
#[derive(Debug)]
pub(crate) struct Exit {
    /// The container's exit code.
    pub code: Option<i64>,
    /// Docker's OOMKilled.
    pub oom_killed: bool,
    /// A failure to run or wait for it.
    pub error: Option<String>,
}

/// Connects to the engine at `socket` and negotiates the API version.
pub(crate) async fn connect(socket: &str) -> Result<Docker, String> {
    let d = Docker::connect_with_unix(socket, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .map_err(|e| format!("cannot connect to the docker engine at {socket}: {e}"))?;
    d.negotiate_version()
        .await
        .map_err(|e| format!("cannot reach the docker engine at {socket}: {e}"))
}

/// What `parameters` may set (docker run's long options).
fn apply_parameter(
    key: &str,
    value: &str,
    body: &mut ContainerCreateBody,
    host: &mut HostConfig,
) -> Result<(), String> {
    fn push(v: &mut Option<Vec<String>>, s: &str) {
        v.get_or_insert_with(Vec::new).push(s.to_string());
    }
    match key.trim_start_matches('-') {
        "env" | "e" => push(&mut body.env, value),
        "label" | "l" => {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            body.labels
                .get_or_insert_with(HashMap::new)
                .insert(k.to_string(), v.to_string());
        }
        "hostname" | "h" => body.hostname = Some(value.to_string()),
        "user" | "u" => body.user = Some(value.to_string()),
        "workdir" | "w" => body.working_dir = Some(value.to_string()),
        "entrypoint" => body.entrypoint = Some(vec![value.to_string()]),
        "add-host" => push(&mut host.extra_hosts, value),
        "dns" => push(&mut host.dns, value),
        "cap-add" => push(&mut host.cap_add, value),
        "cap-drop" => push(&mut host.cap_drop, value),
        "volume" | "v" => push(&mut host.binds, value),
        "privileged" => host.privileged = Some(value != "false"),
        "init" => host.init = Some(value != "false"),
        "memory-swap" => {
            host.memory_swap = Some(value.parse().map_err(|_| {
                format!("docker parameter memory-swap={value} is not a number of bytes")
            })?)
        }
        "stop-signal" => body.stop_signal = Some(value.to_string()),
        other => {
            return Err(format!(
                "unsupported docker parameter '{other}' (env, label, hostname, user, workdir, \
                 entrypoint, add-host, dns, cap-add, cap-drop, volume, privileged, init, \
                 memory-swap, stop-signal)"
            ))
        }
    }
    Ok(())
}

/// Builds the container's create body from the task.
pub(crate) fn create_body(
    task: &TaskInfo,
    sandbox: &Path,
    env: &[(String, String)],
    labels: &[(String, String)],
) -> Result<ContainerCreateBody, String> {
    let ci = task
        .container
        .as_ref()
        .ok_or("the task has no ContainerInfo")?;
    let di = ci
        .docker
        .as_ref()
        .ok_or("the DOCKER ContainerInfo has no docker section")?;
    if di.image.trim().is_empty() {
        return Err("the DOCKER ContainerInfo has no image".into());
    }
    let mut body = ContainerCreateBody {
        image: Some(di.image.clone()),
        hostname: ci.hostname.clone(),
        ..Default::default()
    };
    let mut host = HostConfig::default();

    // Command: shell form through /bin/sh -c, else value + arguments
    // appended to the image's entrypoint.
    if let Some(cmd) = &task.command {
        let value = cmd.value.clone().filter(|v| !v.is_empty());
        if cmd.shell.unwrap_or(true) {
            if let Some(v) = value {
                body.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
                body.cmd = Some(vec![v]);
            }
        } else {
            let mut argv: Vec<String> = value.into_iter().collect();
            argv.extend(cmd.arguments.iter().cloned());
            if !argv.is_empty() {
                body.cmd = Some(argv);
            }
        }
        if let Some(e) = &cmd.environment {
            for v in &e.variables {
                if let Some(val) = &v.value {
                    body.env
                        .get_or_insert_with(Vec::new)
                        .push(format!("{}={val}", v.name));
                }
            }
        }
    }
    for (k, v) in env {
        body.env
            .get_or_insert_with(Vec::new)
            .push(format!("{k}={v}"));
    }
    let mut all_labels: HashMap<String, String> = labels.iter().cloned().collect();
    if let Some(l) = &task.labels {
        for label in &l.labels {
            all_labels
                .entry(label.key.clone())
                .or_insert_with(|| label.value.clone().unwrap_or_default());
        }
    }
    body.labels = Some(all_labels);

    // The sandbox, then the volumes.
    let mut binds = vec![format!("{}:{SANDBOX_IN_CONTAINER}:rw", sandbox.display())];
    for v in &ci.volumes {
        let mode = if v.mode == volume::Mode::Ro as i32 {
            "ro"
        } else {
            "rw"
        };
        let host_path = match v.host_path.as_deref().filter(|h| !h.is_empty()) {
            Some(h) if h.starts_with('/') => h.to_string(),
            Some(h) => sandbox.join(h).display().to_string(),
            None => {
                return Err(format!(
                    "volume {} has no host_path (image and source volumes are not supported)",
                    v.container_path
                ))
            }
        };
        let container_path = if v.container_path.starts_with('/') {
            v.container_path.clone()
        } else {
            format!("{SANDBOX_IN_CONTAINER}/{}", v.container_path)
        };
        binds.push(format!("{host_path}:{container_path}:{mode}"));
    }
    host.binds = Some(binds);

    // Networking.
    let network = container_info::docker_info::Network::try_from(di.network.unwrap_or(1))
        .unwrap_or(container_info::docker_info::Network::Host);
    host.network_mode = Some(match network {
        container_info::docker_info::Network::Host => "host".to_string(),
        container_info::docker_info::Network::Bridge => "bridge".to_string(),
        container_info::docker_info::Network::None => "none".to_string(),
        container_info::docker_info::Network::User => ci
            .network_infos
            .first()
            .and_then(|n| n.name.clone())
            .ok_or("USER networking needs network_infos[0].name")?,
    });
    if !di.port_mappings.is_empty() {
        if network != container_info::docker_info::Network::Bridge
            && network != container_info::docker_info::Network::User
        {
            return Err("port mappings need BRIDGE or USER networking".into());
        }
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for pm in &di.port_mappings {
            if !has_port(task, u64::from(pm.host_port)) {
                return Err(format!(
                    "port mapping {}->{}: host port {} is not among the task's ports resources",
                    pm.host_port, pm.container_port, pm.host_port
                ));
            }
            let proto = pm.protocol.clone().unwrap_or_else(|| "tcp".into());
            let key = format!("{}/{proto}", pm.container_port);
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: None,
                    host_port: Some(pm.host_port.to_string()),
                });
        }
        body.exposed_ports = Some(exposed);
        host.port_bindings = Some(bindings);
    }
    host.privileged = Some(di.privileged.unwrap_or(false));

    // Limits from the task's resources, as Mesos' docker containerizer sets them.
    let r = Resources::from_vec(&task.resources);
    let cpus = r.scalar("cpus");
    if cpus > 0.0 {
        host.cpu_shares = Some(((cpus * 1024.0) as i64).max(2));
    }
    let mem = r.scalar("mem");
    if mem > 0.0 {
        host.memory = Some(((mem * 1024.0 * 1024.0) as i64).max(4 << 20));
    }
    for p in &di.parameters {
        apply_parameter(&p.key, &p.value, &mut body, &mut host)?;
    }
    body.host_config = Some(host);
    Ok(body)
}

/// Whether the task's `ports` resources include `port`.
fn has_port(task: &TaskInfo, port: u64) -> bool {
    task.resources
        .iter()
        .filter(|r| r.name == "ports")
        .filter_map(|r| r.ranges.as_ref())
        .flat_map(|rs| rs.range.iter())
        .any(|r| r.begin <= port && port <= r.end)
}

/// Pulls the image when asked to or when it is not present.
async fn ensure_image(docker: &Docker, image: &str, force: bool) -> Result<(), String> {
    if !force && docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    tracing::info!(image, force, "pulling image");
    let opts = CreateImageOptions {
        from_image: Some(image.to_string()),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(opts), None, None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| format!("cannot pull image '{image}': {e}"))?;
    }
    Ok(())
}

/// Creates and starts the container `name` for the task.
pub(crate) async fn start(
    docker: &Docker,
    name: &str,
    task: &TaskInfo,
    body: ContainerCreateBody,
) -> Result<(), String> {
    let image = body.image.clone().unwrap_or_default();
    let force = task
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .and_then(|d| d.force_pull_image)
        .unwrap_or(false);
    ensure_image(docker, &image, force).await?;
    // A leftover with the same name (a previous attempt) goes first.
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let opts = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("cannot create container from '{image}': {e}"))?;
    docker
        .start_container(name, None)
        .await
        .map_err(|e| format!("cannot start container from '{image}': {e}"))?;
    Ok(())
}

/// Copies the container's output into our stdout/stderr (the sandbox
/// files) until it ends.
pub(crate) async fn follow_logs(docker: Docker, name: String) {
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut logs = docker.logs(&name, Some(opts));
    while let Some(item) = logs.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                let _ = std::io::stderr().write_all(&message);
            }
            Ok(out) => {
                let _ = std::io::stdout().write_all(&out.into_bytes());
                let _ = std::io::stdout().flush();
            }
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "container log stream broke");
                break;
            }
        }
    }
}

/// Waits for the container to end, reads whether it was OOM-killed and
/// removes it.
pub(crate) async fn wait(docker: Docker, name: String) -> Exit {
    let mut stream = docker.wait_container(&name, None);
    let (code, error) = match stream.next().await {
        Some(Ok(r)) => (Some(r.status_code), None),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            (Some(code), None)
        }
        Some(Err(e)) => (None, Some(format!("cannot wait for the container: {e}"))),
        None => (None, Some("the wait stream ended".to_string())),
    };
    let oom_killed = docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.oom_killed)
        .unwrap_or(false);
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
    Exit {
        code,
        oom_killed,
        error,
    }
}

/// `docker stop -t <grace>`: SIGTERM, SIGKILL after the grace period.
pub(crate) async fn stop(docker: Docker, name: String, grace_secs: i32) {
    let opts = StopContainerOptions {
        t: Some(grace_secs),
        ..Default::default()
    };
    if let Err(e) = docker.stop_container(&name, Some(opts)).await {
        tracing::warn!(container = %name, error = %e, "docker stop failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::v1::{self, container_info::docker_info, ContainerInfo, Parameter};

    fn task(network: docker_info::Network, mappings: Vec<(u32, u32)>) -> TaskInfo {
        TaskInfo {
            name: "t".into(),
            task_id: corral_api::ids::task_id("t"),
            agent_id: corral_api::ids::agent_id("a"),
            resources: corral_api::resources::parse("cpus:0.5;mem:64;ports:[31000-31001]").unwrap(),
            command: Some(v1::CommandInfo {
                value: Some("echo hi".into()),
                ..Default::default()
            }),
            container: Some(ContainerInfo {
                r#type: v1::container_info::Type::Docker as i32,
                volumes: vec![v1::Volume {
                    mode: volume::Mode::Ro as i32,
                    container_path: "/data".into(),
                    host_path: Some("/srv/data".into()),
                    ..Default::default()
                }],
                docker: Some(v1::container_info::DockerInfo {
                    image: "corral/test".into(),
                    network: Some(network as i32),
                    port_mappings: mappings
                        .into_iter()
                        .map(|(h, c)| docker_info::PortMapping {
                            host_port: h,
                            container_port: c,
                            protocol: None,
                        })
                        .collect(),
                    parameters: vec![Parameter {
                        key: "label".into(),
                        value: "a=b".into(),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn builds_the_container() {
        let t = task(docker_info::Network::Bridge, vec![(31000, 80)]);
        let b = create_body(&t, Path::new("/sb"), &[("K".into(), "V".into())], &[]).unwrap();
        assert_eq!(b.image.as_deref(), Some("corral/test"));
        assert_eq!(b.cmd, Some(vec!["echo hi".to_string()]));
        assert!(b.env.as_ref().unwrap().contains(&"K=V".to_string()));
        assert_eq!(b.labels.as_ref().unwrap()["a"], "b");
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        let binds = h.binds.unwrap();
        assert_eq!(binds[0], "/sb:/mnt/mesos/sandbox:rw");
        assert_eq!(binds[1], "/srv/data:/data:ro");
        assert_eq!(
            h.port_bindings.unwrap()["80/tcp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("31000")
        );
        assert_eq!(h.cpu_shares, Some(512));
        assert_eq!(h.memory, Some(64 << 20));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        // A host port that was not offered.
        let t = task(docker_info::Network::Bridge, vec![(40000, 80)]);
        assert!(create_body(&t, Path::new("/sb"), &[], &[])
            .unwrap_err()
            .contains("40000"));
        // Port mappings on HOST networking.
        let t = task(docker_info::Network::Host, vec![(31000, 80)]);
        assert!(create_body(&t, Path::new("/sb"), &[], &[]).is_err());
        // Unknown parameter.
        let mut t = task(docker_info::Network::Host, vec![]);
        if let Some(d) = t.container.as_mut().and_then(|c| c.docker.as_mut()) {
            d.parameters.push(Parameter {
                key: "blkio-weight".into(),
                value: "10".into(),
            });
        }
        let e = create_body(&t, Path::new("/sb"), &[], &[]).unwrap_err();
        assert!(e.contains("blkio-weight"), "{e}");
    }
}

//! A deploy's instance as a Mesos TaskInfo: command or Docker image,
//! arguments, environment, URIs, resources, HTTP health check on an
//! allocated port, labels.

use corral_api::v1;

use crate::model::Deploy;

/// The TaskInfo of `task_id` running `deploy` on `agent_id` with
/// `resources` (taken from the offer) and the allocated `ports` among
/// them; `extra_env` is added to the deploy's environment.
pub fn task_info(
    task_id: &str,
    name: &str,
    deploy: &Deploy,
    agent_id: &v1::AgentId,
    resources: Vec<v1::Resource>,
    ports: &[u64],
    extra_env: &[(String, String)],
) -> v1::TaskInfo {
    let mut variables: Vec<v1::environment::Variable> = deploy
        .env
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(extra_env.iter().cloned())
        .chain(
            ports
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("PORT{i}"), p.to_string())),
        )
        .map(|(name, value)| v1::environment::Variable {
            name,
            value: Some(value),
            ..Default::default()
        })
        .collect();
    if let Some(first) = ports.first() {
        variables.push(v1::environment::Variable {
            name: "PORT".into(),
            value: Some(first.to_string()),
            ..Default::default()
        });
    }
    let docker = deploy
        .container_info
        .as_ref()
        .filter(|c| c.kind.eq_ignore_ascii_case("DOCKER"))
        .and_then(|c| c.docker.as_ref());
    let (shell, value, arguments) = match (&deploy.command, &deploy.arguments) {
        (Some(cmd), Some(args)) => (
            false,
            Some(cmd.clone()),
            std::iter::once(cmd.clone())
                .chain(args.iter().cloned())
                .collect(),
        ),
        (Some(cmd), None) => (true, Some(cmd.clone()), Vec::new()),
        (None, args) => (false, None, args.clone().unwrap_or_default()),
    };
    let command = v1::CommandInfo {
        shell: Some(shell),
        value,
        arguments,
        environment: Some(v1::Environment { variables }),
        uris: deploy
            .uris
            .iter()
            .flatten()
            .map(|u| v1::command_info::Uri {
                value: u.clone(),
                extract: Some(true),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let container = docker.map(|d| {
        let network = match d.network.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("BRIDGE") => v1::container_info::docker_info::Network::Bridge,
            Some("NONE") => v1::container_info::docker_info::Network::None,
            _ => v1::container_info::docker_info::Network::Host,
        };
        let from_offer = |kind: &Option<String>, value: u32| -> u32 {
            if kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("FROM_OFFER"))
            {
                ports.get(value as usize).copied().unwrap_or(0) as u32
            } else {
                value
            }
        };
        v1::ContainerInfo {
            r#type: v1::container_info::Type::Docker as i32,
            docker: Some(v1::container_info::DockerInfo {
                image: d.image.clone(),
                network: Some(network as i32),
                port_mappings: d
                    .port_mappings
                    .iter()
                    .flatten()
                    .map(|m| v1::container_info::docker_info::PortMapping {
                        host_port: from_offer(&m.host_port_type, m.host_port),
                        container_port: from_offer(&m.container_port_type, m.container_port),
                        protocol: m.protocol.clone(),
                    })
                    .collect(),
                privileged: d.privileged,
                force_pull_image: d.force_pull_image,
                parameters: d
                    .parameters
                    .iter()
                    .flatten()
                    .map(|(k, v)| v1::Parameter {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    });
    let health_check = deploy.healthcheck_uri.as_ref().and_then(|path| {
        let port = *ports.get(deploy.healthcheck_port_index.unwrap_or(0) as usize)?;
        Some(v1::HealthCheck {
            r#type: Some(v1::health_check::Type::Http as i32),
            http: Some(v1::health_check::HttpCheckInfo {
                port: port as u32,
                path: Some(path.clone()),
                scheme: deploy
                    .healthcheck_protocol
                    .as_ref()
                    .map(|p| p.to_ascii_lowercase()),
                ..Default::default()
            }),
            interval_seconds: Some(deploy.healthcheck_interval_seconds.unwrap_or(2) as f64),
            timeout_seconds: Some(deploy.healthcheck_timeout_seconds.unwrap_or(5) as f64),
            consecutive_failures: Some(deploy.healthcheck_max_retries.unwrap_or(3)),
            delay_seconds: Some(0.0),
            grace_period_seconds: Some(
                deploy
                    .deploy_health_timeout_seconds
                    .unwrap_or(crate::services::DEFAULT_DEPLOY_HEALTH_TIMEOUT_SECS)
                    as f64,
            ),
            ..Default::default()
        })
    });
    let labels = deploy.labels.as_ref().map(|l| v1::Labels {
        labels: l
            .iter()
            .map(|(k, v)| v1::Label {
                key: k.clone(),
                value: Some(v.clone()),
            })
            .collect(),
    });
    v1::TaskInfo {
        name: name.to_string(),
        task_id: v1::TaskId {
            value: task_id.to_string(),
        },
        agent_id: agent_id.clone(),
        resources,
        command: Some(command),
        container,
        health_check,
        labels,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_env_ports_health_and_docker() {
        let deploy: Deploy = serde_json::from_value(json!({
            "requestId": "web", "id": "1", "command": "python3 -m http.server $PORT0",
            "env": {"MODE": "prod"}, "uris": ["http://example.com/app.tgz"],
            "resources": {"cpus": 1, "memoryMb": 64, "numPorts": 2},
            "healthcheckUri": "/health", "healthcheckPortIndex": 1,
            "labels": {"team": "data"},
        }))
        .expect("deploy");
        let agent = v1::AgentId { value: "a".into() };
        let t = task_info(
            "web-1-1",
            "web",
            &deploy,
            &agent,
            vec![],
            &[31000, 31001],
            &[],
        );
        let cmd = t.command.expect("command");
        assert_eq!(cmd.shell, Some(true));
        let vars: Vec<(String, String)> = cmd
            .environment
            .expect("env")
            .variables
            .into_iter()
            .map(|v| (v.name, v.value.unwrap_or_default()))
            .collect();
        for want in [
            ("MODE", "prod"),
            ("PORT0", "31000"),
            ("PORT1", "31001"),
            ("PORT", "31000"),
        ] {
            assert!(
                vars.contains(&(want.0.to_string(), want.1.to_string())),
                "{vars:?}"
            );
        }
        assert_eq!(cmd.uris[0].value, "http://example.com/app.tgz");
        let hc = t.health_check.expect("health check");
        assert_eq!(hc.http.expect("http").port, 31001);
        assert_eq!(t.labels.expect("labels").labels[0].key, "team");

        let docker: Deploy = serde_json::from_value(json!({
            "requestId": "web", "id": "2",
            "containerInfo": {"type": "DOCKER", "docker": {"image": "corral/busybox:test", "network": "BRIDGE",
              "portMappings": [{"containerPortType": "LITERAL", "containerPort": 8080,
                                "hostPortType": "FROM_OFFER", "hostPort": 0}]}},
            "arguments": ["httpd", "-f"],
        }))
        .expect("deploy");
        let t = task_info("web-2-1", "web", &docker, &agent, vec![], &[31005], &[]);
        let c = t.container.expect("container");
        let d = c.docker.expect("docker");
        assert_eq!(d.image, "corral/busybox:test");
        assert_eq!(d.port_mappings[0].host_port, 31005);
        assert_eq!(d.port_mappings[0].container_port, 8080);
        let cmd = t.command.expect("command");
        assert_eq!(cmd.shell, Some(false));
        assert_eq!(cmd.arguments, ["httpd", "-f"]);
    }
}

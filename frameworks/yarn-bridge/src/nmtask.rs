//! A NodeManager as a Mesos TaskInfo: the command `$YARN_HOME/bin/yarn
//! nodemanager`, its configuration in `YARN_NODEMANAGER_OPTS` and in a
//! `yarn-site.xml` written into the sandbox (`HADOOP_CONF_DIR`), and Hadoop
//! from a `YARN_HOME` on the agents, a tarball the agent fetches, or a
//! Docker image. Also the placeholder task that mirrors a YARN container
//! under fine-grained scaling.

use std::collections::BTreeMap;

use corral_api::v1;

use crate::nmconfig::{java_options, merged_site, properties, NmPorts, Property};
use crate::profiles::Profile;

/// Where Hadoop comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hadoop {
    /// Installed on every agent at this `YARN_HOME`.
    Home(String),
    /// A tarball the agent fetches and extracts into the sandbox; `home` is
    /// the directory in it (`hadoop-3.4.1`).
    Tarball {
        /// Its URI (http, hdfs, file).
        uri: String,
        /// The directory the tarball holds.
        home: String,
    },
    /// A Docker image (`apache/hadoop:3`), its Hadoop at `home`.
    Docker {
        /// The image.
        image: String,
        /// `YARN_HOME` in the image (`/opt/hadoop`).
        home: String,
    },
}

impl Hadoop {
    /// The `YARN_HOME` the command uses (a shell word).
    fn yarn_home(&self) -> String {
        match self {
            Hadoop::Home(home) | Hadoop::Docker { home, .. } => home.clone(),
            Hadoop::Tarball { home, .. } => format!("$MESOS_SANDBOX/{home}"),
        }
    }
}

/// What every NodeManager's configuration is made from.
#[derive(Debug, Clone)]
pub struct NmSetup {
    /// Where Hadoop comes from.
    pub hadoop: Hadoop,
    /// `yarn.resourcemanager.hostname`.
    pub rm_host: String,
    /// `yarn.resourcemanager.webapp.address`, when not the default port.
    pub rm_webapp: Option<String>,
    /// The user's `yarn-site.xml` properties, kept under the bridge's.
    pub user_site: Vec<Property>,
    /// Extra environment of the NodeManager (`JAVA_HOME`, ...).
    pub env: Vec<(String, String)>,
}

/// The NodeManager's command: write the merged `yarn-site.xml` (passed in
/// `CORRAL_YARN_SITE`) into `$MESOS_SANDBOX/conf`, then run YARN.
fn command_line(hadoop: &Hadoop) -> String {
    format!(
        "export YARN_HOME=\"{}\" HADOOP_CONF_DIR=\"$MESOS_SANDBOX/conf\" && \
         mkdir -p \"$HADOOP_CONF_DIR\" && \
         printf '%s' \"$CORRAL_YARN_SITE\" > \"$HADOOP_CONF_DIR/yarn-site.xml\" && \
         exec \"$YARN_HOME/bin/yarn\" nodemanager",
        hadoop.yarn_home()
    )
}

fn variable(name: &str, value: String) -> v1::environment::Variable {
    v1::environment::Variable {
        name: name.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

/// The properties the bridge gives the NodeManager on `hostname`.
pub fn nm_properties(
    setup: &NmSetup,
    hostname: &str,
    profile: Profile,
    ports: NmPorts,
) -> BTreeMap<String, String> {
    let mut props = properties(&setup.rm_host, profile, ports);
    props.insert("yarn.nodemanager.hostname".into(), hostname.to_string());
    if let Some(addr) = &setup.rm_webapp {
        props.insert("yarn.resourcemanager.webapp.address".into(), addr.clone());
    }
    props
}

/// The TaskInfo of NodeManager `task_id` of `profile` on `agent_id`
/// (`hostname`), with `resources` from the offer and its four `ports`.
pub fn nm_task(
    setup: &NmSetup,
    task_id: &str,
    agent_id: &v1::AgentId,
    hostname: &str,
    profile_name: &str,
    profile: Profile,
    ports: NmPorts,
    resources: Vec<v1::Resource>,
) -> v1::TaskInfo {
    let props = nm_properties(setup, hostname, profile, ports);
    let (site, replaced) = merged_site(&setup.user_site, &props);
    if !replaced.is_empty() {
        tracing::debug!(task = %task_id, ?replaced, "the bridge's values replace the user's");
    }
    let mut variables = vec![
        variable("YARN_NODEMANAGER_OPTS", java_options(&props)),
        variable("CORRAL_YARN_SITE", site),
        variable("CORRAL_YARN_PROFILE", profile_name.to_string()),
    ];
    variables.extend(setup.env.iter().map(|(k, v)| variable(k, v.clone())));
    let uris = match &setup.hadoop {
        Hadoop::Tarball { uri, .. } => vec![v1::command_info::Uri {
            value: uri.clone(),
            extract: Some(true),
            cache: Some(true),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    let container = match &setup.hadoop {
        Hadoop::Docker { image, .. } => Some(v1::ContainerInfo {
            r#type: v1::container_info::Type::Docker as i32,
            docker: Some(v1::container_info::DockerInfo {
                image: image.clone(),
                network: Some(v1::container_info::docker_info::Network::Host as i32),
                ..Default::default()
            }),
            ..Default::default()
        }),
        _ => None,
    };
    v1::TaskInfo {
        name: format!("yarn nodemanager {profile_name} on {hostname}"),
        task_id: v1::TaskId {
            value: task_id.to_string(),
        },
        agent_id: agent_id.clone(),
        resources,
        command: Some(v1::CommandInfo {
            shell: Some(true),
            value: Some(command_line(&setup.hadoop)),
            environment: Some(v1::Environment { variables }),
            uris,
            ..Default::default()
        }),
        container,
        ..Default::default()
    }
}

/// The placeholder task of a YARN container under fine-grained scaling:
/// it holds the container's resources in the master's accounting and does
/// nothing else.
pub fn placeholder_task(
    task_id: &str,
    agent_id: &v1::AgentId,
    resources: Vec<v1::Resource>,
) -> v1::TaskInfo {
    v1::TaskInfo {
        name: format!("yarn container placeholder {task_id}"),
        task_id: v1::TaskId {
            value: task_id.to_string(),
        },
        agent_id: agent_id.clone(),
        resources,
        command: Some(v1::CommandInfo {
            shell: Some(true),
            value: Some("exec sleep 2147483647".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(hadoop: Hadoop) -> NmSetup {
        NmSetup {
            hadoop,
            rm_host: "rm.example".into(),
            rm_webapp: Some("rm.example:18088".into()),
            user_site: vec![Property {
                name: "yarn.nodemanager.local-dirs".into(),
                value: "/data/yarn".into(),
                is_final: false,
            }],
            env: vec![("JAVA_HOME".into(), "/usr/lib/jvm/java-17".into())],
        }
    }

    fn env_of(t: &v1::TaskInfo, name: &str) -> Option<String> {
        t.command
            .as_ref()?
            .environment
            .as_ref()?
            .variables
            .iter()
            .find(|v| v.name == name)?
            .value
            .clone()
    }

    fn task(hadoop: Hadoop) -> v1::TaskInfo {
        nm_task(
            &setup(hadoop),
            "nm.small.1",
            &v1::AgentId { value: "a1".into() },
            "node-1",
            "small",
            Profile {
                cpu: 2.0,
                mem: 2048.0,
            },
            NmPorts::from_slice(&[31000, 31001, 31002, 31003]).expect("ports"),
            Vec::new(),
        )
    }

    #[test]
    fn a_nodemanager_gets_its_configuration_both_ways() {
        let t = task(Hadoop::Home("/opt/hadoop".into()));
        let opts = env_of(&t, "YARN_NODEMANAGER_OPTS").expect("opts");
        assert!(opts.contains("-Dyarn.nodemanager.hostname=node-1"));
        assert!(opts.contains("-Dyarn.resourcemanager.webapp.address=rm.example:18088"));
        assert!(opts.contains("-Dyarn.nodemanager.resource.cpu-vcores=2"));
        let site = env_of(&t, "CORRAL_YARN_SITE").expect("site");
        assert!(site.contains("<name>yarn.nodemanager.local-dirs</name><value>/data/yarn</value>"));
        assert!(site.contains("<name>yarn.nodemanager.address</name><value>0.0.0.0:31000</value>"));
        assert_eq!(
            env_of(&t, "JAVA_HOME").as_deref(),
            Some("/usr/lib/jvm/java-17")
        );
        let cmd = t
            .command
            .as_ref()
            .and_then(|c| c.value.clone())
            .expect("cmd");
        assert!(cmd.contains("YARN_HOME=\"/opt/hadoop\""));
        assert!(cmd.ends_with("exec \"$YARN_HOME/bin/yarn\" nodemanager"));
        assert!(t.container.is_none());
    }

    #[test]
    fn hadoop_comes_from_a_tarball_or_an_image() {
        let t = task(Hadoop::Tarball {
            uri: "hdfs://nn/dist/hadoop-3.4.1.tar.gz".into(),
            home: "hadoop-3.4.1".into(),
        });
        let c = t.command.as_ref().expect("command");
        assert_eq!(c.uris.len(), 1);
        assert_eq!(c.uris[0].extract, Some(true));
        assert!(c
            .value
            .as_deref()
            .is_some_and(|v| v.contains("YARN_HOME=\"$MESOS_SANDBOX/hadoop-3.4.1\"")));
        let t = task(Hadoop::Docker {
            image: "apache/hadoop:3".into(),
            home: "/opt/hadoop".into(),
        });
        let d = t.container.and_then(|c| c.docker).expect("docker");
        assert_eq!(d.image, "apache/hadoop:3");
    }
}

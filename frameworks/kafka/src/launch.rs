//! What a broker runs: tansu (a Kafka-protocol broker written in Rust,
//! its data in one SQLite file on the broker's volume), or Apache Kafka in
//! KRaft mode (from a tarball the agent fetches, or a Docker image) with a
//! generated `server.properties`: `node.id` = the broker id, combined
//! broker and controller roles, the controller quorum built from the
//! brokers' reserved endpoints, `log.dirs` on the volume, listeners on the
//! offered ports. Pure: a broker and its placement in, a TaskInfo out.

use std::collections::BTreeMap;

use corral_api::v1;

use crate::broker::Broker;

/// What the brokers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// tansu at this path on every agent (`scripts/tansu.sh` builds the
    /// durable one, with the `sqlite://` storage engine).
    Tansu {
        /// The binary.
        binary: String,
    },
    /// Apache Kafka from a tarball URI, extracted to `home` in the
    /// sandbox (`kafka_2.13-4.1.0`).
    KafkaTarball {
        /// The URI the agent fetches.
        uri: String,
        /// The directory it extracts to.
        home: String,
    },
    /// Apache Kafka in a Docker image, installed at `home` in it
    /// (`/opt/kafka` in the apache/kafka image).
    KafkaDocker {
        /// The image.
        image: String,
        /// KAFKA_HOME in the image.
        home: String,
    },
}

impl Engine {
    /// Ports a broker takes: the client listener, and for Apache Kafka
    /// the controller listener.
    pub fn ports(&self) -> usize {
        match self {
            Engine::Tansu { .. } => 1,
            _ => 2,
        }
    }

    /// Whether every broker is a cluster of its own (tansu: a broker keeps
    /// its data in its own storage and replicates nothing to the others;
    /// brokers form one cluster only by sharing a storage engine, which
    /// the SQLite file on a volume is not). Apache Kafka's brokers form one
    /// KRaft cluster.
    pub fn independent_brokers(&self) -> bool {
        matches!(self, Engine::Tansu { .. })
    }

    /// `tansu` or `kafka`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Tansu { .. } => "tansu",
            _ => "kafka",
        }
    }
}

/// Where a broker is placed for one launch.
#[derive(Debug, Clone)]
pub struct Slot<'a> {
    /// The TaskID.
    pub task_id: &'a str,
    /// The agent.
    pub agent_id: &'a str,
    /// The address clients reach the agent at.
    pub address: &'a str,
    /// Client port, then controller port (Kafka).
    pub ports: &'a [u64],
    /// The task's resources (reserved cpus, mem, ports, and the volume).
    pub resources: Vec<v1::Resource>,
}

/// The framework-wide settings of a launch.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// The volume's path in the sandbox.
    pub volume_path: &'a str,
    /// The cluster id (tansu's `--cluster-id`, KRaft's cluster id).
    pub cluster_id: &'a str,
    /// KRaft controller quorum: broker id -> `host:controller port`.
    pub voters: &'a BTreeMap<u32, String>,
}

/// The `server.properties` of Apache Kafka broker `b` in KRaft combined
/// mode, its options last (they cannot override the generated keys: those
/// are refused when given).
pub fn server_properties(
    b: &Broker,
    address: &str,
    ports: &[u64],
    volume_path: &str,
    voters: &BTreeMap<u32, String>,
) -> String {
    let client = ports.first().copied().unwrap_or(9092);
    let controller = ports.get(1).copied().unwrap_or(9093);
    let voters: Vec<String> = voters.iter().map(|(id, at)| format!("{id}@{at}")).collect();
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        out.push_str(k);
        out.push('=');
        out.push_str(&v.replace('\\', "\\\\").replace('\n', "\\n"));
        out.push('\n');
    };
    line("node.id", &b.id.to_string());
    line("process.roles", "broker,controller");
    line(
        "listeners",
        &format!("PLAINTEXT://0.0.0.0:{client},CONTROLLER://0.0.0.0:{controller}"),
    );
    line(
        "advertised.listeners",
        &format!("PLAINTEXT://{address}:{client}"),
    );
    line(
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    );
    line("controller.listener.names", "CONTROLLER");
    line("inter.broker.listener.name", "PLAINTEXT");
    line("controller.quorum.voters", &voters.join(","));
    line("log.dirs", &format!("{volume_path}/kafka-logs"));
    for (k, v) in &b.options {
        line(k, v);
    }
    out
}

fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&x))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The shell script broker `b` runs in its sandbox.
pub fn script(b: &Broker, slot: &Slot<'_>, setup: &Setup<'_>) -> String {
    let client = slot.ports.first().copied().unwrap_or(9092);
    match setup.engine {
        Engine::Tansu { binary } => {
            let mut s = format!(
                "mkdir -p {vol}\nexec {bin} broker --listener-url tcp://0.0.0.0:{client} \
                 --advertised-listener-url tcp://{addr}:{client} \
                 --storage-engine sqlite://{vol}/tansu.db --cluster-id {cluster}",
                vol = quote(setup.volume_path),
                bin = quote(binary),
                addr = slot.address,
                cluster = quote(setup.cluster_id),
            );
            for (k, v) in &b.options {
                s.push_str(&format!(" --{}", quote(k)));
                if !v.is_empty() {
                    s.push(' ');
                    s.push_str(&quote(v));
                }
            }
            s.push('\n');
            s
        }
        Engine::KafkaTarball { home, .. } | Engine::KafkaDocker { home, .. } => {
            let props =
                server_properties(b, slot.address, slot.ports, setup.volume_path, setup.voters);
            let home = match setup.engine {
                Engine::KafkaTarball { .. } => format!("\"$PWD\"/{}", quote(home)),
                _ => quote(home),
            };
            format!(
                "set -e\nKAFKA_HOME={home}\n\
                 cat > server.properties <<'CORRAL_KAFKA_EOF'\n{props}CORRAL_KAFKA_EOF\n\
                 mkdir -p {vol}/kafka-logs\n\
                 [ -f {vol}/kafka-logs/meta.properties ] || \
                 \"$KAFKA_HOME/bin/kafka-storage.sh\" format --ignore-formatted -t {cluster} -c server.properties\n\
                 export KAFKA_HEAP_OPTS=\"-Xmx{heap}M -Xms{heap}M\"\n\
                 exec \"$KAFKA_HOME/bin/kafka-server-start.sh\" server.properties\n",
                vol = quote(setup.volume_path),
                cluster = quote(setup.cluster_id),
                heap = b.heap,
            )
        }
    }
}

/// The TaskInfo of broker `b` at `slot`.
pub fn task_info(b: &Broker, slot: &Slot<'_>, setup: &Setup<'_>) -> v1::TaskInfo {
    let mut uris = Vec::new();
    if let Engine::KafkaTarball { uri, .. } = setup.engine {
        uris.push(v1::command_info::Uri {
            value: uri.clone(),
            extract: Some(true),
            cache: Some(true),
            ..Default::default()
        });
    }
    let container = match setup.engine {
        Engine::KafkaDocker { image, .. } => Some(v1::ContainerInfo {
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
        name: format!("broker-{}", b.id),
        task_id: v1::TaskId {
            value: slot.task_id.to_string(),
        },
        agent_id: v1::AgentId {
            value: slot.agent_id.to_string(),
        },
        resources: slot.resources.clone(),
        command: Some(v1::CommandInfo {
            shell: Some(true),
            value: Some(script(b, slot, setup)),
            uris,
            ..Default::default()
        }),
        container,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kraft_server_properties() {
        let mut b = Broker::new(2);
        b.options.insert("num.io.threads".into(), "16".into());
        let voters: BTreeMap<u32, String> = [
            (0, "h0:31001".to_string()),
            (1, "h1:31011".to_string()),
            (2, "h2:31021".to_string()),
        ]
        .into();
        let p = props(&server_properties(
            &b,
            "10.0.0.2",
            &[31020, 31021],
            "data",
            &voters,
        ));
        assert_eq!(p["node.id"], "2");
        assert_eq!(p["process.roles"], "broker,controller");
        assert_eq!(
            p["listeners"],
            "PLAINTEXT://0.0.0.0:31020,CONTROLLER://0.0.0.0:31021"
        );
        assert_eq!(p["advertised.listeners"], "PLAINTEXT://10.0.0.2:31020");
        assert_eq!(p["controller.listener.names"], "CONTROLLER");
        assert_eq!(
            p["controller.quorum.voters"],
            "0@h0:31001,1@h1:31011,2@h2:31021"
        );
        assert_eq!(p["log.dirs"], "data/kafka-logs");
        assert_eq!(p["num.io.threads"], "16");
    }

    #[test]
    fn tansu_keeps_its_data_in_sqlite_on_the_volume() {
        let mut b = Broker::new(0);
        b.options
            .insert("schema-registry".into(), "file://./schemas".into());
        let engine = Engine::Tansu {
            binary: "/opt/tansu/bin/tansu".into(),
        };
        let voters = BTreeMap::new();
        let setup = Setup {
            engine: &engine,
            volume_path: "data",
            cluster_id: "kafka",
            voters: &voters,
        };
        let slot = Slot {
            task_id: "kafka-0-x",
            agent_id: "a1",
            address: "127.0.0.1",
            ports: &[31005],
            resources: vec![],
        };
        let t = task_info(&b, &slot, &setup);
        let cmd = t.command.and_then(|c| c.value).unwrap_or_default();
        assert!(cmd.contains("exec /opt/tansu/bin/tansu broker"), "{cmd}");
        assert!(cmd.contains("--listener-url tcp://0.0.0.0:31005"), "{cmd}");
        assert!(
            cmd.contains("--advertised-listener-url tcp://127.0.0.1:31005"),
            "{cmd}"
        );
        assert!(
            cmd.contains("--storage-engine sqlite://data/tansu.db"),
            "{cmd}"
        );
        assert!(cmd.contains("--schema-registry file://./schemas"), "{cmd}");
        assert_eq!(t.name, "broker-0");
        assert!(t.container.is_none());
        assert_eq!(engine.ports(), 1);
        assert!(engine.independent_brokers());
    }

    #[test]
    fn kafka_from_a_tarball_or_an_image() {
        let b = Broker::new(1);
        let voters: BTreeMap<u32, String> = [(1, "h:2".to_string())].into();
        let slot = Slot {
            task_id: "t",
            agent_id: "a",
            address: "h",
            ports: &[1, 2],
            resources: vec![],
        };
        let tar = Engine::KafkaTarball {
            uri: "http://x/kafka.tgz".into(),
            home: "kafka_2.13-4.1.0".into(),
        };
        let setup = Setup {
            engine: &tar,
            volume_path: "data",
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk",
            voters: &voters,
        };
        let t = task_info(&b, &slot, &setup);
        let c = t.command.expect("command");
        assert_eq!(c.uris[0].value, "http://x/kafka.tgz");
        let s = c.value.unwrap_or_default();
        assert!(
            s.contains("kafka-storage.sh\" format --ignore-formatted -t MkU3OEVBNTcwNTJENDM2Qk"),
            "{s}"
        );
        assert!(s.contains("-Xmx1024M"), "{s}");
        assert!(s.contains("controller.quorum.voters=1@h:2"), "{s}");
        let img = Engine::KafkaDocker {
            image: "apache/kafka:4.1.0".into(),
            home: "/opt/kafka".into(),
        };
        let setup = Setup {
            engine: &img,
            ..setup
        };
        let t = task_info(&b, &slot, &setup);
        let docker = t.container.and_then(|c| c.docker).expect("docker");
        assert_eq!(docker.image, "apache/kafka:4.1.0");
        assert_eq!(img.ports(), 2);
    }
}

//! `corral kafka scheduler` runs the Kafka framework; `corral kafka broker
//! ...` and `corral kafka topic ...` are its clients (mesos/kafka's
//! commands, over its REST API: tables, or the JSON answers with
//! `--json`).

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::table::print_table;
use crate::workloads::{call_api, print_json, text};

/// `corral kafka ...`.
#[derive(clap::Subcommand)]
pub enum KafkaCommand {
    /// Run the scheduler (serves until stopped).
    Scheduler(SchedulerArgs),
    /// Brokers: add, update, start, stop, restart, remove, list.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Topics: add, list, update (Kafka's admin protocol).
    #[command(subcommand)]
    Topic(TopicCommand),
}

/// `corral kafka scheduler`.
#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// The master: host:port[,host:port...] or zk://host:port/path.
    #[arg(long, env = "MESOS_MASTER")]
    master: String,
    /// Where the REST API listens.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: std::net::SocketAddr,
    /// zk://host:port/path: keep the state in ZooKeeper and elect a leader
    /// among instances started with the same value.
    #[arg(long)]
    zk: Option<String>,
    /// Directory of the embedded state store (brokers, FrameworkID); in
    /// memory when absent. Ignored with --zk.
    #[arg(long = "state_dir")]
    state_dir: Option<std::path::PathBuf>,
    /// The framework's name (prefix of task ids and volumes).
    #[arg(long, default_value = "kafka")]
    name: String,
    /// The role brokers run and reserve as.
    #[arg(long, default_value = "kafka")]
    role: String,
    /// The principal it registers and reserves with.
    #[arg(long, default_value = "kafka")]
    principal: String,
    /// tansu's binary on every agent (scripts/tansu.sh builds the durable
    /// one).
    #[arg(long = "broker_binary", conflicts_with_all = ["kafka_tarball", "kafka_docker_image"])]
    broker_binary: Option<String>,
    /// Apache Kafka as a tarball URI the agents fetch (KRaft mode).
    #[arg(
        long = "kafka_tarball",
        requires = "kafka_home",
        conflicts_with = "kafka_docker_image"
    )]
    kafka_tarball: Option<String>,
    /// The directory the tarball extracts to (kafka_2.13-4.1.0).
    #[arg(long = "kafka_home")]
    kafka_home: Option<String>,
    /// Apache Kafka as a Docker image (KRaft mode).
    #[arg(long = "kafka_docker_image")]
    kafka_docker_image: Option<String>,
    /// KAFKA_HOME inside the image.
    #[arg(long = "kafka_docker_home", default_value = "/opt/kafka")]
    kafka_docker_home: String,
    /// The broker volume's path in its sandbox.
    #[arg(long = "volume_path", default_value = "data")]
    volume_path: String,
}

/// Where the scheduler is, and how to print.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The scheduler's API.
    #[arg(
        long,
        env = "CORRAL_KAFKA_API",
        default_value = "http://127.0.0.1:7000"
    )]
    api: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Settings of `broker add` and `broker update` (mesos/kafka's options).
#[derive(clap::Args)]
pub struct BrokerSettings {
    /// CPUs (0.5, 1, 2).
    #[arg(long)]
    cpus: Option<String>,
    /// Memory, MB.
    #[arg(long)]
    mem: Option<String>,
    /// JVM heap, MB (Apache Kafka).
    #[arg(long)]
    heap: Option<String>,
    /// The persistent volume's size, MB (fixed once created).
    #[arg(long)]
    disk: Option<String>,
    /// Client port or range (31092, 31090..31100); "" for auto.
    #[arg(long)]
    port: Option<String>,
    /// Constraints (hostname=like:master,rack=like:1.*).
    #[arg(long)]
    constraints: Option<String>,
    /// Broker options (num.io.threads=16,log.retention.hours=1).
    #[arg(long)]
    options: Option<String>,
    /// Failover delay (10s, 5m, 3h).
    #[arg(long = "failover-delay")]
    failover_delay: Option<String>,
    /// Max failover delay.
    #[arg(long = "failover-max-delay")]
    failover_max_delay: Option<String>,
    /// Max failover tries before the broker is deactivated; "" for none.
    #[arg(long = "failover-max-tries")]
    failover_max_tries: Option<String>,
    /// Stickiness period to keep a broker on its node (5m, 10m, 1h).
    #[arg(long = "stickiness-period")]
    stickiness_period: Option<String>,
}

impl BrokerSettings {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("cpus", &self.cpus),
            ("mem", &self.mem),
            ("heap", &self.heap),
            ("disk", &self.disk),
            ("port", &self.port),
            ("constraints", &self.constraints),
            ("options", &self.options),
            ("failoverDelay", &self.failover_delay),
            ("failoverMaxDelay", &self.failover_max_delay),
            ("failoverMaxTries", &self.failover_max_tries),
            ("stickinessPeriod", &self.stickiness_period),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// `broker add|update`.
#[derive(clap::Args)]
pub struct BrokerSetArgs {
    /// Broker expression (0, 0,1, 0..2, *, *[rack=r1]).
    expr: String,
    #[command(flatten)]
    settings: BrokerSettings,
    #[command(flatten)]
    client: ClientArgs,
}

/// `broker start|stop|restart`.
#[derive(clap::Args)]
pub struct BrokerWaitArgs {
    /// Broker expression.
    expr: String,
    /// How long to wait (30s, 1m; 0 - do not wait).
    #[arg(long)]
    timeout: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `broker remove|list`.
#[derive(clap::Args)]
pub struct BrokerExprArgs {
    /// Broker expression (list: default *).
    expr: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `corral kafka broker ...`.
#[derive(clap::Subcommand)]
pub enum BrokerCommand {
    /// Add brokers (stopped).
    Add(BrokerSetArgs),
    /// Change brokers' settings (running ones: at their next start).
    Update(BrokerSetArgs),
    /// Start brokers and wait until they run.
    Start(BrokerWaitArgs),
    /// Stop brokers (their reservations and volumes stay).
    Stop(BrokerWaitArgs),
    /// Stop and start brokers again (on the same agent and volume).
    Restart(BrokerWaitArgs),
    /// Remove stopped brokers (their volumes are destroyed).
    Remove(BrokerExprArgs),
    /// List brokers.
    List(BrokerExprArgs),
}

/// `topic add|update|list`.
#[derive(clap::Args)]
pub struct TopicArgs {
    /// Topic expression (t0, t0,t1, t*, *; list: default *).
    expr: Option<String>,
    /// Brokers to create on / read from (broker expression, default *).
    #[arg(long)]
    broker: Option<String>,
    /// Partitions (add; default 1).
    #[arg(long)]
    partitions: Option<String>,
    /// Replication factor (add; default 1).
    #[arg(long)]
    replicas: Option<String>,
    /// Topic options (flush.ms=60000,retention.ms=6000000).
    #[arg(long)]
    options: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `corral kafka topic ...`.
#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create topics.
    Add(TopicArgs),
    /// List topics with their partitions' replicas.
    List(TopicArgs),
    /// Change topics' options.
    Update(TopicArgs),
}

/// Runs one `corral kafka` command.
pub async fn run(cmd: KafkaCommand) -> Result<()> {
    match cmd {
        KafkaCommand::Scheduler(a) => serve(a).await,
        KafkaCommand::Broker(b) => broker(b).await,
        KafkaCommand::Topic(t) => topic(t).await,
    }
}

async fn serve(a: SchedulerArgs) -> Result<()> {
    use corral_kafka::launch::Engine;
    let engine = match (&a.broker_binary, &a.kafka_tarball, &a.kafka_docker_image) {
        (Some(bin), _, _) => Engine::Tansu {
            binary: bin.clone(),
        },
        (None, Some(uri), _) => Engine::KafkaTarball {
            uri: uri.clone(),
            home: a
                .kafka_home
                .clone()
                .context("--kafka_home: required with --kafka_tarball")?,
        },
        (None, None, Some(image)) => Engine::KafkaDocker {
            image: image.clone(),
            home: a.kafka_docker_home.clone(),
        },
        (None, None, None) => bail!(
            "--broker_binary: the tansu binary on the agents (or --kafka_tarball with --kafka_home, or --kafka_docker_image)"
        ),
    };
    for (flag, v) in [
        ("name", &a.name),
        ("role", &a.role),
        ("principal", &a.principal),
    ] {
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            bail!("--{flag}: {v:?} must be non-empty, of A-Z, a-z, 0-9, '.', '_', '-'");
        }
    }
    let config = corral_kafka::server::Config {
        master: a.master,
        listen: a.listen,
        zk: a.zk,
        state_dir: a.state_dir,
        name: a.name,
        role: a.role,
        principal: Some(a.principal),
        engine,
        volume_path: a.volume_path,
    };
    corral_kafka::server::run(config)
        .await
        .context("the kafka scheduler failed")
}

async fn post(client: &ClientArgs, path: &str, pairs: &[(&str, String)]) -> Result<Value> {
    let http = reqwest::Client::new();
    let mut url = reqwest::Url::parse(&format!("{}{path}", client.api.trim_end_matches('/')))
        .with_context(|| format!("--api: {} is not a URL", client.api))?;
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    let path_and_query = format!(
        "{}{}",
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    call_api(
        &http,
        &client.api,
        "the kafka scheduler",
        reqwest::Method::POST,
        &path_and_query,
        None,
    )
    .await
}

fn print_brokers(client: &ClientArgs, v: &Value) -> Result<()> {
    if client.json {
        return print_json(v);
    }
    if let Some(status) = v.get("status") {
        println!(
            "brokers {}{}",
            text(status),
            v.get("message")
                .map(|m| format!(": {}", text(m)))
                .unwrap_or_default()
        );
    }
    let rows: Vec<Vec<String>> = v["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            vec![
                text(&b["id"]),
                text(&b["active"]),
                text(&b["state"]),
                format!(
                    "{}/{}/{}",
                    text(&b["cpus"]),
                    text(&b["mem"]),
                    text(&b["heap"])
                ),
                text(&b["task"]["endpoint"]),
                text(&b["stickiness"]["hostname"]),
                text(&b["volume"]),
                text(&b["task"]["id"]),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "ACTIVE",
            "STATE",
            "CPUS/MEM/HEAP",
            "ENDPOINT",
            "HOST",
            "VOLUME",
            "TASK",
        ],
        &rows,
    );
    Ok(())
}

async fn broker(cmd: BrokerCommand) -> Result<()> {
    match cmd {
        BrokerCommand::Add(a) => set("add", a).await,
        BrokerCommand::Update(a) => set("update", a).await,
        BrokerCommand::Start(a) => wait_cmd("start", a).await,
        BrokerCommand::Stop(a) => wait_cmd("stop", a).await,
        BrokerCommand::Restart(a) => wait_cmd("restart", a).await,
        BrokerCommand::Remove(a) => {
            let expr = a.expr.clone().context("a broker expression (0, 0..2, *)")?;
            let v = post(&a.client, "/api/broker/remove", &[("broker", expr)]).await?;
            if a.client.json {
                return print_json(&v);
            }
            let ids: Vec<String> = v["ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            println!("brokers removed: {}", ids.join(","));
            Ok(())
        }
        BrokerCommand::List(a) => {
            let expr = a.expr.clone().unwrap_or_else(|| "*".into());
            let v = post(&a.client, "/api/broker/list", &[("broker", expr)]).await?;
            print_brokers(&a.client, &v)
        }
    }
}

async fn set(cmd: &str, a: BrokerSetArgs) -> Result<()> {
    let mut pairs = vec![("broker", a.expr.clone())];
    pairs.extend(a.settings.pairs());
    let v = post(&a.client, &format!("/api/broker/{cmd}"), &pairs).await?;
    print_brokers(&a.client, &v)
}

async fn wait_cmd(cmd: &str, a: BrokerWaitArgs) -> Result<()> {
    let mut pairs = vec![("broker", a.expr.clone())];
    if let Some(t) = &a.timeout {
        pairs.push(("timeout", t.clone()));
    }
    let v = post(&a.client, &format!("/api/broker/{cmd}"), &pairs).await?;
    print_brokers(&a.client, &v)?;
    if v["status"] == "timeout" {
        bail!("{}", text(&v["message"]));
    }
    Ok(())
}

async fn topic(cmd: TopicCommand) -> Result<()> {
    let (name, a) = match cmd {
        TopicCommand::Add(a) => ("add", a),
        TopicCommand::List(a) => ("list", a),
        TopicCommand::Update(a) => ("update", a),
    };
    let mut pairs: Vec<(&str, String)> = Vec::new();
    match (&a.expr, name) {
        (Some(e), _) => pairs.push(("topic", e.clone())),
        (None, "list") => {}
        (None, _) => bail!("a topic expression (t0, t0,t1)"),
    }
    for (k, v) in [
        ("broker", &a.broker),
        ("partitions", &a.partitions),
        ("replicas", &a.replicas),
        ("options", &a.options),
    ] {
        if let Some(v) = v {
            pairs.push((k, v.clone()));
        }
    }
    let v = post(&a.client, &format!("/api/topic/{name}"), &pairs).await?;
    if a.client.json {
        return print_json(&v);
    }
    let rows: Vec<Vec<String>> = v["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let parts = t["partitions"].as_object();
            let replicas = parts
                .map(|p| {
                    p.iter()
                        .map(|(k, v)| format!("{k}:[{}]", text(v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let options = t["options"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![text(&t["name"]), text(&t["broker"]), replicas, options]
        })
        .collect();
    print_table(
        &["TOPIC", "BROKER", "PARTITIONS:[REPLICAS]", "OPTIONS"],
        &rows,
    );
    Ok(())
}

//! `corral eventing publisher` publishes the cluster's events to Kafka and
//! RabbitMQ; `corral events tail` prints them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use corral_eventing::publisher::{self, AmqpConfig, Config, KafkaConfig, DEFAULT_TOPIC};
use corral_eventing::tail::{self, Filter, TailEvent, TailSource};

/// `corral eventing ...`.
#[derive(clap::Subcommand)]
pub enum EventingCommand {
    /// Publish the master's operator events (tasks, agents, frameworks) to
    /// Kafka and/or RabbitMQ as CloudEvents, at least once.
    Publisher(PublisherArgs),
    /// The eventing service's API tier: HTTP/JSON sessions on Kafka topics,
    /// routed through RabbitMQ to the backends.
    Api(crate::eventing_service::ApiArgs),
    /// The eventing service's backend tier: Kafka producers and consumers
    /// for the sessions of the shards it owns.
    Backend(crate::eventing_service::BackendArgs),
    /// The eventing framework: runs the API and backend tiers as tasks,
    /// scales them, relaunches them, upgrades them one at a time.
    Serve(crate::eventing_service::ServeArgs),
    /// Set the number of API and/or backend instances (api=N backend=M).
    Scale(crate::eventing_service::ScaleArgs),
    /// Replace every task of both tiers, one per tier at a time.
    Upgrade(crate::eventing_service::UpgradeArgs),
    /// The tiers' instances.
    Status(crate::eventing_service::SchedulerArgs),
}

impl EventingCommand {
    /// Whether the command runs to its own end rather than being cut short
    /// by SIGTERM: the backend drains, flushes and spools on SIGTERM itself,
    /// and the client commands are short.
    pub fn drains_on_sigterm(&self) -> bool {
        matches!(
            self,
            EventingCommand::Backend(_)
                | EventingCommand::Scale(_)
                | EventingCommand::Upgrade(_)
                | EventingCommand::Status(_)
        )
    }
}

/// `corral eventing publisher`.
#[derive(clap::Args)]
pub struct PublisherArgs {
    /// The master: host:port[,host:port...] or zk://host:port/path.
    #[arg(long, env = "MESOS_MASTER")]
    master: String,
    /// Kafka's bootstrap servers (host:port,...).
    #[arg(long = "kafka_brokers")]
    kafka_brokers: Option<String>,
    /// The Kafka topic.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    topic: String,
    /// Create the topic when it is missing (Kafka's admin protocol); off:
    /// a missing topic is reported in /health until someone creates it.
    #[arg(long = "kafka_create_topic", default_value_t = true, action = clap::ArgAction::Set)]
    kafka_create_topic: bool,
    /// Partitions of a topic the publisher creates.
    #[arg(long = "kafka_partitions", default_value_t = 3)]
    kafka_partitions: i32,
    /// Replication factor of a topic the publisher creates.
    #[arg(long = "kafka_replication", default_value_t = 1)]
    kafka_replication: i32,
    /// An extra librdkafka producer property, KEY=VALUE (repeated), e.g.
    /// security.protocol=SASL_SSL.
    #[arg(long = "kafka_property")]
    kafka_property: Vec<String>,
    /// RabbitMQ: amqp://user:password@host:port/vhost.
    #[arg(long = "amqp_url", env = "CORRAL_AMQP_URL")]
    amqp_url: Option<String>,
    /// The durable topic exchange.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    exchange: String,
    /// The spool's directory (events on disk until every sink has them,
    /// the sinks' cursors, the state checkpoint).
    #[arg(long = "spool_dir")]
    spool_dir: PathBuf,
    /// The spool's bound in bytes; when full, the master's stream is paused
    /// (and its snapshot diff recovers what it said meanwhile).
    #[arg(long = "spool_max_bytes", default_value_t = 1 << 30)]
    spool_max_bytes: u64,
    /// Where /health and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: std::net::SocketAddr,
    /// The events' CloudEvents `source`.
    #[arg(long, default_value = "/corral")]
    source: String,
    /// zk://host:port/path: publish only while leading the publishers
    /// started with the same value; the others wait as standbys.
    #[arg(long)]
    zk: Option<String>,
    /// The ZooKeeper session timeout of the election (a dead leader is
    /// replaced after it), e.g. 10secs.
    #[arg(long = "zk_session_timeout", default_value = "10secs", value_parser = corral_api::stout::parse_duration)]
    zk_session_timeout: std::time::Duration,
    /// Terminal tasks remembered (for de-duplication across snapshots).
    #[arg(long = "max_terminal_tasks", default_value_t = corral_eventing::core::DEFAULT_MAX_TERMINAL_TASKS)]
    max_terminal_tasks: usize,
}

/// `corral events ...`.
#[derive(clap::Subcommand)]
pub enum EventsCommand {
    /// Print the cluster's events live, one line each (or JSON).
    Tail(TailArgs),
    /// Read a topic through the eventing service (acking as it prints).
    Read(crate::eventing_service::ReadArgs),
    /// Write standard input's lines to a topic through the eventing service.
    Write(crate::eventing_service::WriteArgs),
}

/// `corral events tail`.
#[derive(clap::Args)]
pub struct TailArgs {
    /// Only this role's events.
    #[arg(long)]
    role: Option<String>,
    /// Only this framework's events.
    #[arg(long)]
    framework: Option<String>,
    /// Read from Kafka (bootstrap servers).
    #[arg(long = "kafka_brokers", conflicts_with = "amqp_url")]
    kafka_brokers: Option<String>,
    /// The Kafka topic.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    topic: String,
    /// Read from RabbitMQ, through a private queue bound to the role's
    /// and framework's routing keys.
    #[arg(long = "amqp_url", env = "CORRAL_AMQP_URL")]
    amqp_url: Option<String>,
    /// The exchange.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    exchange: String,
    /// Kafka only: start from the oldest retained event instead of now.
    #[arg(long = "from_beginning")]
    from_beginning: bool,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object per event.
    #[arg(long)]
    json: bool,
}

fn key_value(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("--kafka_property {s:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Runs a daemon of `corral eventing`.
pub async fn serve(cmd: EventingCommand) -> Result<()> {
    match cmd {
        EventingCommand::Api(a) => crate::eventing_service::serve_api(a).await,
        EventingCommand::Backend(a) => crate::eventing_service::serve_backend(a).await,
        EventingCommand::Serve(a) => crate::eventing_service::serve_framework(a).await,
        EventingCommand::Scale(a) => crate::eventing_service::scale(a).await,
        EventingCommand::Upgrade(a) => crate::eventing_service::upgrade(a).await,
        EventingCommand::Status(a) => crate::eventing_service::status(a).await,
        EventingCommand::Publisher(a) => {
            let kafka = match a.kafka_brokers {
                Some(brokers) => Some(KafkaConfig {
                    brokers,
                    topic: a.topic,
                    create_topic: a.kafka_create_topic,
                    partitions: a.kafka_partitions,
                    replication: a.kafka_replication,
                    properties: a
                        .kafka_property
                        .iter()
                        .map(|p| key_value(p))
                        .collect::<Result<_>>()?,
                }),
                None => None,
            };
            let amqp = a.amqp_url.map(|url| AmqpConfig {
                url,
                exchange: a.exchange,
            });
            publisher::run(Config {
                master: a.master,
                kafka,
                amqp,
                spool_dir: a.spool_dir,
                spool_max_bytes: a.spool_max_bytes,
                listen: a.listen,
                source: a.source,
                max_terminal_tasks: a.max_terminal_tasks,
                zk: a.zk,
                zk_session_timeout: a.zk_session_timeout,
            })
            .await
            .context("eventing publisher")
        }
    }
}

/// One event as a line: time, type, role, framework, subject, state.
pub fn line(e: &TailEvent) -> String {
    let kind = e.ce_type.strip_prefix("io.corral.").unwrap_or(&e.ce_type);
    format!(
        "{:<27} {:<18} {:<12} {:<38} {:<24} {}",
        e.time,
        kind,
        if e.role.is_empty() { "-" } else { &e.role },
        if e.framework_id.is_empty() {
            "-"
        } else {
            &e.framework_id
        },
        e.subject
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("-"),
        e.state.as_deref().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

/// Runs one `corral events` command.
pub async fn run(cmd: EventsCommand) -> Result<()> {
    match cmd {
        EventsCommand::Read(a) => crate::eventing_service::read(a).await,
        EventsCommand::Write(a) => crate::eventing_service::write(a).await,
        EventsCommand::Tail(a) => {
            let source = match (a.kafka_brokers, a.amqp_url) {
                (Some(brokers), None) => TailSource::Kafka {
                    brokers,
                    topic: a.topic,
                    from_beginning: a.from_beginning,
                },
                (None, Some(url)) => TailSource::Amqp {
                    url,
                    exchange: a.exchange,
                },
                _ => bail!("give --kafka_brokers or --amqp_url"),
            };
            let filter = Filter {
                role: a.role,
                framework: a.framework,
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let reader = tokio::spawn(tail::tail(source, filter, tx, Some(ready_tx)));
            let ready = tokio::spawn(async move {
                if ready_rx.await.is_ok() {
                    eprintln!("tailing events");
                }
            });
            let mut out = std::io::stdout().lock();
            if !a.json {
                writeln!(
                    out,
                    "{:<27} {:<18} {:<12} {:<38} {:<24} STATE",
                    "TIME", "EVENT", "ROLE", "FRAMEWORK", "ID"
                )?;
                out.flush()?;
            }
            let mut n = 0u64;
            while let Some(e) = rx.recv().await {
                if a.json {
                    writeln!(out, "{}", serde_json::to_string(&e)?)?;
                } else {
                    writeln!(out, "{}", line(&e))?;
                }
                out.flush()?;
                n += 1;
                if a.limit.is_some_and(|l| n >= l) {
                    break;
                }
            }
            drop(rx);
            ready.abort();
            match reader.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(e) if e.is_cancelled() => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

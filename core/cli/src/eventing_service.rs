//! The eventing service's daemons (`corral eventing api`, `corral eventing
//! backend`) and its command-line client (`corral events read|write`).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corral_eventing::service::amqp::Topology;
use corral_eventing::service::api::{self, ApiConfig};
use corral_eventing::service::backend::{self, BackendConfig};
use corral_eventing::service::client::{Client, ResumingReader, ResumingWriter};
use corral_eventing::service::crypto::Keyring;
use corral_eventing::service::offset_token::OffsetTokenCodec;
use corral_eventing::service::ring::DEFAULT_SHARDS;
use corral_eventing::service::session::SessionConfig;
use corral_eventing::service::token::Authenticator;
use corral_eventing::service::wire::{AllocateRequest, EventIn, WireMode, WireStart};

/// The default service name (the prefix of its RabbitMQ names).
pub const DEFAULT_SERVICE: &str = "corral.eventing";

/// What both tiers need to agree on.
#[derive(clap::Args, Clone)]
pub struct TierArgs {
    /// RabbitMQ: amqp://user:password@host:port/vhost.
    #[arg(long = "amqp_url", env = "CORRAL_AMQP_URL")]
    amqp_url: String,
    /// The service name: the prefix of the RabbitMQ exchanges and queues.
    #[arg(long, default_value = DEFAULT_SERVICE)]
    service: String,
    /// The number of shards (the same on every node of the service).
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: u32,
}

impl TierArgs {
    fn topology(&self) -> Result<Topology> {
        if self.shards == 0 || self.shards > corral_eventing::service::ring::MAX_SHARDS {
            bail!(
                "--shards {}: give 1 to {}",
                self.shards,
                corral_eventing::service::ring::MAX_SHARDS
            );
        }
        Ok(Topology {
            service: self.service.clone(),
            shards: self.shards,
        })
    }
}

/// `corral eventing api`.
#[derive(clap::Args)]
pub struct ApiArgs {
    #[command(flatten)]
    tier: TierArgs,
    /// Where the HTTP API listens.
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: std::net::SocketAddr,
    /// This node's name (defaults to the task id, or host and pid).
    #[arg(long, env = "MESOS_TASK_ID")]
    node: Option<String>,
    /// The bearer tokens and their topic permissions (JSON); without it
    /// every client may read and write every topic.
    #[arg(long = "tokens_file")]
    tokens_file: Option<PathBuf>,
    /// How long a request waits for its backend (a read adds its waitMs).
    #[arg(long = "request_timeout", default_value = "15secs", value_parser = corral_api::stout::parse_duration)]
    request_timeout: Duration,
    /// The largest request body, in bytes.
    #[arg(long = "max_body_bytes", default_value_t = corral_eventing::service::wire::MAX_REQUEST_BYTES)]
    max_body_bytes: usize,
    /// Serve HTTPS (and gRPC over TLS): the certificate chain (PEM).
    #[arg(long = "tls_cert", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long = "tls_key", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// `corral eventing backend`.
#[derive(clap::Args)]
pub struct BackendArgs {
    #[command(flatten)]
    tier: TierArgs,
    /// This backend's id, unique in the service (defaults to the task id,
    /// or host and pid).
    #[arg(long, env = "MESOS_TASK_ID")]
    id: Option<String>,
    /// Kafka's bootstrap servers (host:port,...).
    #[arg(long = "kafka_brokers")]
    kafka_brokers: String,
    /// An extra librdkafka property, KEY=VALUE (repeated).
    #[arg(long = "kafka_property")]
    kafka_property: Vec<String>,
    /// Create a topic a session asks for when Kafka does not have it.
    #[arg(long = "create_topics", default_value_t = true, action = clap::ArgAction::Set)]
    create_topics: bool,
    /// Partitions of a topic the backend creates.
    #[arg(long = "topic_partitions", default_value_t = 3)]
    topic_partitions: i32,
    /// A key file for per-topic encryption (repeated; see docs/eventing-service.md).
    #[arg(long = "key_file")]
    key_file: Vec<PathBuf>,
    /// The file holding the offset tokens' secret (at least 32 bytes; the
    /// same on every backend).
    #[arg(long = "secret_file")]
    secret_file: PathBuf,
    /// Where writes Kafka has not acknowledged at shutdown are spooled (and
    /// replayed from at the next start).
    #[arg(long = "spool_dir")]
    spool_dir: PathBuf,
    /// Where /health and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:7081")]
    listen: std::net::SocketAddr,
    /// Sessions idle this long expire.
    #[arg(long = "session_idle_timeout", default_value = "5mins", value_parser = corral_api::stout::parse_duration)]
    session_idle_timeout: Duration,
    /// The most sessions this backend holds.
    #[arg(long = "max_sessions", default_value_t = 10_000)]
    max_sessions: usize,
    /// The most unacked events a session holds (read-ahead).
    #[arg(long = "read_ahead_events", default_value_t = 1_000)]
    read_ahead_events: usize,
    /// How often the backend announces itself to the others.
    #[arg(long = "heartbeat_interval", default_value = "500ms", value_parser = corral_api::stout::parse_duration)]
    heartbeat_interval: Duration,
    /// A backend not heard from for this long is gone (its shards move).
    #[arg(long = "member_timeout", default_value = "2secs", value_parser = corral_api::stout::parse_duration)]
    member_timeout: Duration,
    /// How long a graceful shutdown waits for Kafka before spooling.
    #[arg(long = "flush_timeout", default_value = "10secs", value_parser = corral_api::stout::parse_duration)]
    flush_timeout: Duration,
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
}

fn key_value(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("--kafka_property {s:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Runs `corral eventing api`.
pub async fn serve_api(a: ApiArgs) -> Result<()> {
    let auth = match &a.tokens_file {
        Some(p) => {
            Authenticator::load(p).with_context(|| format!("--tokens_file {}", p.display()))?
        }
        None => {
            tracing::warn!("no --tokens_file: every client may read and write every topic");
            Authenticator::open()
        }
    };
    api::run(ApiConfig {
        node: a.node.unwrap_or_else(default_name),
        amqp_url: a.tier.amqp_url.clone(),
        topology: a.tier.topology()?,
        listen: a.listen,
        auth: Arc::new(auth),
        request_timeout: a.request_timeout,
        max_body: a.max_body_bytes,
        tls: match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => Some(corral_eventing::service::api::TlsFiles { cert, key }),
            _ => None,
        },
    })
    .await
    .context("eventing api")
}

/// Runs `corral eventing backend`.
pub async fn serve_backend(a: BackendArgs) -> Result<()> {
    let secret = std::fs::read(&a.secret_file)
        .with_context(|| format!("--secret_file {}", a.secret_file.display()))?;
    let codec = OffsetTokenCodec::new(&secret).map_err(|e| {
        anyhow::anyhow!(
            "--secret_file {}: {e}; write at least 32 random bytes (head -c 48 /dev/urandom > FILE)",
            a.secret_file.display()
        )
    })?;
    let keyring = if a.key_file.is_empty() {
        Keyring::empty()
    } else {
        Keyring::load(&a.key_file).context("--key_file")?
    };
    let sessions = SessionConfig {
        idle_timeout_ms: a.session_idle_timeout.as_millis() as u64,
        max_sessions: a.max_sessions,
        read_ahead_events: a.read_ahead_events,
        ..SessionConfig::default()
    };
    sessions
        .validate()
        .map_err(|e| anyhow::anyhow!("{e} (check --max_sessions, --read_ahead_events)"))?;
    backend::run(BackendConfig {
        id: a.id.unwrap_or_else(default_name),
        amqp_url: a.tier.amqp_url.clone(),
        topology: a.tier.topology()?,
        kafka_brokers: a.kafka_brokers,
        kafka_properties: a
            .kafka_property
            .iter()
            .map(|p| key_value(p))
            .collect::<Result<_>>()?,
        create_topics: a.create_topics,
        topic_partitions: a.topic_partitions,
        keyring: Arc::new(keyring),
        codec,
        sessions,
        spool_dir: a.spool_dir,
        listen: a.listen,
        heartbeat: a.heartbeat_interval,
        member_timeout: a.member_timeout,
        write_wait: Duration::from_secs(10),
        flush_timeout: a.flush_timeout,
    })
    .await
    .context("eventing backend")
}

/// What `corral events read` and `write` share.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// The eventing API: http://host:port (comma-separated for several).
    #[arg(long, env = "CORRAL_EVENTING_API")]
    api: String,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// One partition (reads: only it; writes: all events to it).
    #[arg(long)]
    partition: Option<i32>,
    /// The bearer token.
    #[arg(long, env = "CORRAL_EVENTING_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long = "token_file")]
    token_file: Option<PathBuf>,
    /// For https:// API nodes: the CA certificate(s) (PEM) that signed
    /// theirs, besides the system's.
    #[arg(long = "ca_file")]
    ca_file: Option<PathBuf>,
}

impl ClientArgs {
    fn client(&self) -> Result<Client> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("--token_file {}", p.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let bases: Vec<String> = self
            .api
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if bases.is_empty() {
            bail!("--api: give http://host:port");
        }
        match &self.ca_file {
            Some(p) => {
                let pem = std::fs::read(p).with_context(|| format!("--ca_file {}", p.display()))?;
                Client::with_ca(bases, token, &pem)
                    .map_err(|e| anyhow::anyhow!("--ca_file {}: {e}", p.display()))
            }
            None => Ok(Client::new(bases, token)),
        }
    }
}

/// `corral events read`.
#[derive(clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Resume from this offset token (printed by an earlier read).
    #[arg(long = "offset_token")]
    offset_token: Option<String>,
    /// Where partitions without a position start.
    #[arg(long, default_value = "earliest", value_parser = ["earliest", "latest"])]
    start: String,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Stop when no event came for this long (default: keep waiting).
    #[arg(long = "idle_exit", value_parser = corral_api::stout::parse_duration)]
    idle_exit: Option<Duration>,
    /// One JSON object per event.
    #[arg(long)]
    json: bool,
}

/// `corral events write`.
#[derive(clap::Args)]
pub struct WriteArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Write ids are <prefix>-<line number>; a rerun with the same prefix
    /// and input writes nothing twice for readers that drop copies by id.
    #[arg(long = "id_prefix")]
    id_prefix: Option<String>,
    /// Events per request.
    #[arg(long = "batch", default_value_t = 500)]
    batch: usize,
}

/// `corral events read`: prints events and acks them; the last offset token
/// goes to stderr (resume with --offset_token).
pub async fn read(a: ReadArgs) -> Result<()> {
    let client = a.client.client()?;
    let spec = AllocateRequest {
        topic: a.client.topic.clone(),
        partition: a.client.partition,
        group: None,
        mode: WireMode::Read,
        start: Some(if a.start == "latest" {
            WireStart::Latest
        } else {
            WireStart::Earliest
        }),
        offset_token: a.offset_token.clone(),
    };
    let mut reader = ResumingReader::new(&client, spec);
    let mut out = std::io::stdout().lock();
    if !a.json {
        writeln!(
            out,
            "{:<10} {:<12} {:<24} VALUE",
            "PARTITION", "OFFSET", "ID"
        )?;
    }
    let mut n = 0u64;
    let mut idle_since = std::time::Instant::now();
    loop {
        let events = reader
            .read(500, 1000, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if events.is_empty() {
            if a.idle_exit.is_some_and(|d| idle_since.elapsed() >= d) {
                break;
            }
            continue;
        }
        idle_since = std::time::Instant::now();
        let mut last = 0;
        for e in &events {
            if a.json {
                writeln!(out, "{}", serde_json::to_string(e)?)?;
            } else {
                let value = e
                    .value
                    .clone()
                    .or_else(|| e.value_base64.as_ref().map(|b| format!("base64:{b}")))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<10} {:<12} {:<24} {}",
                    e.partition,
                    e.kafka_offset,
                    e.id.as_deref().unwrap_or("-"),
                    value
                )?;
            }
            last = e.offset;
            n += 1;
            if a.limit.is_some_and(|l| n >= l) {
                break;
            }
        }
        out.flush()?;
        reader.ack(last).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if a.limit.is_some_and(|l| n >= l) {
            break;
        }
    }
    reader.close().await;
    eprintln!(
        "read {n} events; resume with --offset_token {}",
        reader.offset_token().unwrap_or("")
    );
    Ok(())
}

/// `corral events write`: one event per line of standard input; returns
/// once Kafka has every one.
pub async fn write(a: WriteArgs) -> Result<()> {
    if a.batch == 0 || a.batch > 1000 {
        bail!("--batch {}: give 1 to 1000", a.batch);
    }
    let client = a.client.client()?;
    let spec = AllocateRequest {
        topic: a.client.topic.clone(),
        partition: a.client.partition,
        group: None,
        mode: WireMode::Write,
        start: None,
        offset_token: None,
    };
    let prefix = a.id_prefix.unwrap_or_else(|| {
        format!(
            "cli-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        )
    });
    let mut writer = ResumingWriter::new(&client, spec);
    let stdin = std::io::stdin();
    let mut batch = Vec::new();
    let (mut written, mut line_no) = (0usize, 0usize);
    for line in stdin.lock().lines() {
        let line = line.context("reading standard input")?;
        line_no += 1;
        let mut e = EventIn::text(format!("{prefix}-{line_no}"), line);
        e.partition = a.client.partition;
        batch.push(e);
        if batch.len() >= a.batch {
            written += writer
                .write_all(std::mem::take(&mut batch), Duration::from_secs(120))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .len();
            eprintln!("{written} events in kafka");
        }
    }
    if !batch.is_empty() {
        written += writer
            .write_all(batch, Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len();
    }
    writer.close().await;
    println!(
        "wrote {written} events to {} (ids {prefix}-N)",
        a.client.topic
    );
    Ok(())
}

/// `corral eventing serve`: the framework that runs both tiers as tasks.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The master: host:port[,host:port...] or zk://host:port/path.
    #[arg(long, env = "MESOS_MASTER")]
    master: String,
    /// Where the framework's REST API listens.
    #[arg(long, default_value = "127.0.0.1:7090")]
    listen: std::net::SocketAddr,
    /// zk://host:port/path: state in ZooKeeper and leader election among
    /// instances of the framework.
    #[arg(long)]
    zk: Option<String>,
    /// Keep the state in this directory (without --zk).
    #[arg(long = "state_dir")]
    state_dir: Option<PathBuf>,
    /// The framework's name.
    #[arg(long, default_value = "corral-eventing")]
    name: String,
    /// The framework's role.
    #[arg(long, default_value = "eventing")]
    role: String,
    /// The framework's principal.
    #[arg(long)]
    principal: Option<String>,
    /// API instances (first start; later `corral eventing scale`).
    #[arg(long = "api_instances", default_value_t = 2)]
    api_instances: u32,
    /// Backend instances (first start; later `corral eventing scale`).
    #[arg(long = "backend_instances", default_value_t = 2)]
    backend_instances: u32,
    /// CPUs per API instance.
    #[arg(long = "api_cpus", default_value_t = 0.2)]
    api_cpus: f64,
    /// Memory per API instance, MB.
    #[arg(long = "api_mem", default_value_t = 128.0)]
    api_mem: f64,
    /// CPUs per backend instance.
    #[arg(long = "backend_cpus", default_value_t = 0.5)]
    backend_cpus: f64,
    /// Memory per backend instance, MB.
    #[arg(long = "backend_mem", default_value_t = 256.0)]
    backend_mem: f64,
    /// The corral binary the tasks run, on every agent (default: this one).
    #[arg(long)]
    binary: Option<String>,
    #[command(flatten)]
    tier: TierArgs,
    /// Kafka's bootstrap servers (for the backends).
    #[arg(long = "kafka_brokers")]
    kafka_brokers: String,
    /// An extra librdkafka property for the backends, KEY=VALUE (repeated).
    #[arg(long = "kafka_property")]
    kafka_property: Vec<String>,
    /// The offset tokens' secret file (on every agent).
    #[arg(long = "secret_file")]
    secret_file: PathBuf,
    /// Encryption key files (on every agent; repeated).
    #[arg(long = "key_file")]
    key_file: Vec<PathBuf>,
    /// The bearer tokens file for the API tier (on every agent).
    #[arg(long = "tokens_file")]
    tokens_file: Option<PathBuf>,
    /// The API tier's TLS certificate (PEM, on every agent).
    #[arg(long = "tls_cert", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The API tier's TLS key (PEM, on every agent).
    #[arg(long = "tls_key", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The backends' spool directories: <spool_root>/backend-<slot> on
    /// their agents.
    #[arg(long = "spool_root", default_value = "/var/lib/corral/eventing")]
    spool_root: String,
}

fn absolute(p: &std::path::Path, flag: &str) -> Result<String> {
    let abs = std::path::absolute(p).with_context(|| format!("--{flag} {}", p.display()))?;
    Ok(abs.display().to_string())
}

/// Runs `corral eventing serve`.
pub async fn serve_framework(a: ServeArgs) -> Result<()> {
    use corral_eventing::framework::core::{Spec, TierSpec};
    let topology = a.tier.topology()?;
    if !a.secret_file.is_file() {
        bail!(
            "--secret_file {}: no such file; write at least 32 random bytes (head -c 48 /dev/urandom > FILE)",
            a.secret_file.display()
        );
    }
    for (n, flag) in [
        (a.api_instances, "api_instances"),
        (a.backend_instances, "backend_instances"),
    ] {
        if n > corral_eventing::framework::core::MAX_INSTANCES {
            bail!(
                "--{flag} {n}: at most {}",
                corral_eventing::framework::core::MAX_INSTANCES
            );
        }
    }
    let binary = match a.binary {
        Some(b) => b,
        None => std::env::current_exe()
            .context("cannot find this binary; give --binary")?
            .display()
            .to_string(),
    };
    let common = vec![
        format!("--amqp_url={}", a.tier.amqp_url),
        format!("--service={}", topology.service),
        format!("--shards={}", topology.shards),
    ];
    let mut api_args = common.clone();
    if let Some(t) = &a.tokens_file {
        api_args.push(format!("--tokens_file={}", absolute(t, "tokens_file")?));
    }
    if let (Some(c), Some(k)) = (&a.tls_cert, &a.tls_key) {
        api_args.push(format!("--tls_cert={}", absolute(c, "tls_cert")?));
        api_args.push(format!("--tls_key={}", absolute(k, "tls_key")?));
    }
    let mut backend_args = common;
    backend_args.push(format!("--kafka_brokers={}", a.kafka_brokers));
    backend_args.push(format!(
        "--secret_file={}",
        absolute(&a.secret_file, "secret_file")?
    ));
    for k in &a.key_file {
        backend_args.push(format!("--key_file={}", absolute(k, "key_file")?));
    }
    for p in &a.kafka_property {
        key_value(p)?;
        backend_args.push(format!("--kafka_property={p}"));
    }
    let spec = Spec {
        api: TierSpec {
            count: a.api_instances,
            cpus: a.api_cpus,
            mem: a.api_mem,
        },
        backend: TierSpec {
            count: a.backend_instances,
            cpus: a.backend_cpus,
            mem: a.backend_mem,
        },
        generation: 1,
        binary,
        api_args,
        backend_args,
        spool_root: a.spool_root,
    };
    corral_eventing::framework::server::run(corral_eventing::framework::server::Config {
        master: a.master,
        listen: a.listen,
        zk: a.zk,
        state_dir: a.state_dir,
        name: a.name,
        role: a.role,
        principal: a.principal,
        spec,
    })
    .await
    .context("eventing framework")
}

/// What the framework's client commands share.
#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// The eventing framework's API: http://host:port.
    #[arg(
        long,
        env = "CORRAL_EVENTING_SCHEDULER",
        default_value = "http://127.0.0.1:7090"
    )]
    scheduler: String,
}

/// `corral eventing scale api=N backend=M`.
#[derive(clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    s: SchedulerArgs,
    /// `api=N` and/or `backend=M`.
    #[arg(required = true)]
    counts: Vec<String>,
}

/// `corral eventing upgrade`.
#[derive(clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    s: SchedulerArgs,
    /// A new corral binary for the tasks (absolute path on every agent).
    #[arg(long)]
    binary: Option<String>,
}

async fn scheduler_call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the eventing framework at {base} (--scheduler)"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            v["message"].as_str().unwrap_or("(no message)")
        );
    }
    Ok(v)
}

/// `corral eventing scale`.
pub async fn scale(a: ScaleArgs) -> Result<()> {
    let mut body = serde_json::Map::new();
    for c in &a.counts {
        let (tier, n) = c
            .split_once('=')
            .with_context(|| format!("{c:?}: give api=N or backend=M"))?;
        if tier != "api" && tier != "backend" {
            bail!("{c:?}: the tiers are api and backend");
        }
        let n: u32 = n
            .parse()
            .with_context(|| format!("{c:?}: {n:?} is not a number of instances"))?;
        body.insert(tier.to_owned(), n.into());
    }
    let v = scheduler_call(
        &a.s.scheduler,
        reqwest::Method::POST,
        "/v1/scale",
        Some(serde_json::Value::Object(body)),
    )
    .await?;
    println!("{:<8} INSTANCES", "TIER");
    println!("{:<8} {}", "api", v["api"]);
    println!("{:<8} {}", "backend", v["backend"]);
    Ok(())
}

/// `corral eventing upgrade`.
pub async fn upgrade(a: UpgradeArgs) -> Result<()> {
    let body = match a.binary {
        Some(b) => serde_json::json!({"binary": b}),
        None => serde_json::json!({}),
    };
    let v = scheduler_call(
        &a.s.scheduler,
        reqwest::Method::POST,
        "/v1/upgrade",
        Some(body),
    )
    .await?;
    println!(
        "rolling upgrade to generation {} started; follow it with corral eventing status",
        v["generation"]
    );
    Ok(())
}

/// `corral eventing status`: the tiers' instances as a table.
pub async fn status(a: SchedulerArgs) -> Result<()> {
    let v = scheduler_call(&a.scheduler, reqwest::Method::GET, "/v1/tiers", None).await?;
    println!(
        "{:<8} {:<5} {:<9} {:<28} {:<22} {:<4} TASK",
        "TIER", "SLOT", "STATE", "HOST", "PORT", "GEN"
    );
    for tier in ["api", "backend"] {
        for i in v["tiers"][tier]["instances"]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "{:<8} {:<5} {:<9} {:<28} {:<22} {:<4} {}",
                tier,
                i["index"],
                i["state"].as_str().unwrap_or("-"),
                i["host"].as_str().unwrap_or("-"),
                i["port"],
                i["generation"],
                i["taskId"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(())
}

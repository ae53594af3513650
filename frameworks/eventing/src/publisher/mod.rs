//! The publisher's shell: the master's operator stream in, the core, the
//! spool, a Kafka sink and a RabbitMQ sink out, and `/health`,
//! `/metrics` and a web page (`/ui`: the sinks with their cursor and lag,
//! [`webui`]).
//!
//! ```text
//!  master (SUBSCRIBE) --> reader --[bounded channel]--> writer thread
//!                                                        core + spool (fsync)
//!                                                          |  appended seq
//!                                     +--------------------+-------------------+
//!                                     v                                        v
//!                              Kafka sink (cursor)                   RabbitMQ sink (cursor)
//! ```
//!
//! Nothing is lost: an event is on disk before a sink sees it; each sink
//! publishes from its persisted cursor and advances it only on the
//! broker's acknowledgement; when the spool is full the writer stops
//! taking events, the reader stops reading the master, and the snapshot
//! diff of the next subscription recovers what the master said meanwhile.

pub mod amqp;
pub mod kafka;
pub mod master;
pub mod webui;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use corral_api::v1::master as op;
use tokio::sync::{mpsc, watch};

use crate::core::Core;
use crate::spool::{Checkpoint, Reader, Record, Spool, SpoolError};

/// The smallest spool bound accepted.
pub const MIN_SPOOL_BYTES: u64 = 64 << 10;

/// Default Kafka topic and RabbitMQ exchange.
pub const DEFAULT_TOPIC: &str = "corral.events";

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The spool cannot be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// This instance lost its leadership (its ZooKeeper session expired);
    /// it stops so that only the new leader publishes.
    #[error("lost the leadership: another instance publishes now")]
    LostLeadership,
    /// The HTTP endpoint cannot listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where and how to publish to Kafka.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Create the topic (admin protocol) when it is missing.
    pub create_topic: bool,
    /// Partitions of a created topic.
    pub partitions: i32,
    /// Replication factor of a created topic.
    pub replication: i32,
    /// Extra librdkafka properties (`key=value`).
    pub properties: Vec<(String, String)>,
}

/// Where to publish to RabbitMQ.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// The durable topic exchange.
    pub exchange: String,
}

/// The publisher's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port[,host:port]` or `zk://host:port/path`.
    pub master: String,
    /// The Kafka sink.
    pub kafka: Option<KafkaConfig>,
    /// The RabbitMQ sink.
    pub amqp: Option<AmqpConfig>,
    /// The spool's directory.
    pub spool_dir: PathBuf,
    /// The spool's bound.
    pub spool_max_bytes: u64,
    /// `/health` and `/metrics`.
    pub listen: SocketAddr,
    /// The events' `source`.
    pub source: String,
    /// How many terminal tasks the publisher remembers.
    pub max_terminal_tasks: usize,
    /// `zk://host:port/path`: publish only while leading the instances
    /// started with the same value (the others wait as standbys).
    pub zk: Option<String>,
    /// The ZooKeeper session timeout of the election (how long a dead
    /// leader keeps its place).
    pub zk_session_timeout: Duration,
}

/// A sink's counters and health.
pub struct SinkStat {
    /// `kafka` or `amqp`.
    pub name: &'static str,
    /// Events acknowledged by the broker.
    pub published: AtomicU64,
    /// Failed publish attempts.
    pub errors: AtomicU64,
    /// The last sequence number published.
    pub cursor: AtomicU64,
    /// What is wrong, when something is.
    problem: Mutex<Option<String>>,
    /// Whether the last probe or publish succeeded.
    up: AtomicBool,
}

impl SinkStat {
    fn new(name: &'static str, cursor: u64) -> Self {
        Self {
            name,
            published: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cursor: AtomicU64::new(cursor),
            problem: Mutex::new(Some("not connected yet".into())),
            up: AtomicBool::new(false),
        }
    }

    /// Marks the sink down with `problem` (logged when it changes).
    pub fn down(&self, problem: String) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut p) = self.problem.lock() {
            if p.as_deref() != Some(problem.as_str()) {
                tracing::warn!(sink = self.name, problem = %problem, "sink down");
                *p = Some(problem);
            }
        }
    }

    /// Marks the sink up.
    pub fn ok(&self) {
        let was = !self.up.swap(true, Ordering::SeqCst);
        if let Ok(mut p) = self.problem.lock() {
            if was && p.is_some() {
                tracing::info!(sink = self.name, "sink up");
            }
            *p = None;
        }
    }

    /// The current problem.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    /// Whether it is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

/// What every part of the publisher reports to.
pub struct Shared {
    /// Operator events received from the master (heartbeats excluded).
    pub received: AtomicU64,
    /// Events written to the spool.
    pub emitted: AtomicU64,
    /// Of those, emitted by snapshot diffs.
    pub diff_emitted: AtomicU64,
    /// Subscriptions to a master.
    pub subscriptions: AtomicU64,
    /// Bytes in the spool.
    pub spool_bytes: AtomicU64,
    /// The spool's bound.
    pub spool_max_bytes: u64,
    /// The last spooled sequence number.
    pub appended: AtomicU64,
    /// Whether a master stream is open.
    pub master_connected: AtomicBool,
    /// The master's problem, when there is one.
    pub master_problem: Mutex<Option<String>>,
    /// The spool's problem (full, or failing writes).
    pub spool_problem: Mutex<Option<String>>,
    /// The leader being read.
    pub leader: Mutex<Option<String>>,
    /// The sinks.
    pub sinks: Vec<Arc<SinkStat>>,
    /// Waiting to lead (with `--zk`).
    pub standby: AtomicBool,
    /// The election's problem, when there is one.
    pub election_problem: Mutex<Option<String>>,
}

impl Shared {
    fn set(slot: &Mutex<Option<String>>, value: Option<String>) {
        if let Ok(mut s) = slot.lock() {
            *s = value;
        }
    }

    fn get(slot: &Mutex<Option<String>>) -> Option<String> {
        slot.lock().ok().and_then(|s| s.clone())
    }

    /// Events spooled and not yet published by `sink`.
    pub fn backlog(&self, sink: &SinkStat) -> u64 {
        self.appended
            .load(Ordering::SeqCst)
            .saturating_sub(sink.cursor.load(Ordering::SeqCst))
    }

    /// The problems that make the publisher unhealthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = Self::get(&self.election_problem) {
            out.push(format!("zookeeper: {p}"));
        }
        if self.standby.load(Ordering::SeqCst) {
            return out;
        }
        if let Some(p) = Self::get(&self.master_problem) {
            out.push(format!("master: {p}"));
        }
        if let Some(p) = Self::get(&self.spool_problem) {
            out.push(format!("spool: {p}"));
        }
        for s in &self.sinks {
            if let Some(p) = s.problem() {
                out.push(format!("{}: {p}", s.name));
            }
        }
        out
    }

    /// `/health`'s body.
    pub fn health_json(&self) -> serde_json::Value {
        let problems = self.problems();
        let standby = self.standby.load(Ordering::SeqCst);
        let status = match (standby, problems.is_empty()) {
            (_, false) => "unhealthy",
            (true, true) => "standby",
            (false, true) => "ok",
        };
        let sinks: serde_json::Map<String, serde_json::Value> = self
            .sinks
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    serde_json::json!({
                        "up": s.is_up(),
                        "problem": s.problem(),
                        "published": s.published.load(Ordering::SeqCst),
                        "spooled": self.backlog(s),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "status": status,
            "problems": problems,
            "master": {
                "connected": self.master_connected.load(Ordering::SeqCst),
                "leader": Self::get(&self.leader),
                "problem": Self::get(&self.master_problem),
            },
            "spool": {
                "bytes": self.spool_bytes.load(Ordering::SeqCst),
                "max_bytes": self.spool_max_bytes,
                "problem": Self::get(&self.spool_problem),
            },
            "sinks": sinks,
        })
    }

    /// `/metrics` in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let mut o = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in samples {
                o.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        let per_sink = |f: &dyn Fn(&SinkStat) -> u64| -> Vec<(String, u64)> {
            self.sinks
                .iter()
                .map(|s| (format!("{{sink=\"{}\"}}", s.name), f(s)))
                .collect()
        };
        metric(
            "corral_eventing_events_received_total",
            "counter",
            "Operator events received from the master (heartbeats excluded).",
            one(self.received.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_events_emitted_total",
            "counter",
            "CloudEvents written to the spool.",
            one(self.emitted.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_diff_events_total",
            "counter",
            "CloudEvents emitted by snapshot diffs after a (re)subscription.",
            one(self.diff_emitted.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_subscriptions_total",
            "counter",
            "Subscriptions to a master's operator stream.",
            one(self.subscriptions.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_master_connected",
            "gauge",
            "1 while a master's operator stream is open.",
            one(u64::from(self.master_connected.load(Ordering::SeqCst))),
        );
        metric(
            "corral_eventing_events_published_total",
            "counter",
            "Events acknowledged by the sink's broker.",
            per_sink(&|s| s.published.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_publish_errors_total",
            "counter",
            "Failed publish attempts (retried).",
            per_sink(&|s| s.errors.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_spooled_events",
            "gauge",
            "Events in the spool not yet acknowledged by the sink.",
            per_sink(&|s| self.backlog(s)),
        );
        metric(
            "corral_eventing_sink_up",
            "gauge",
            "1 while the sink's broker is reachable and publishing.",
            per_sink(&|s| u64::from(s.is_up())),
        );
        metric(
            "corral_eventing_spool_bytes",
            "gauge",
            "Bytes of the spool's segments on disk.",
            one(self.spool_bytes.load(Ordering::SeqCst)),
        );
        metric(
            "corral_eventing_spool_max_bytes",
            "gauge",
            "The spool's bound (--spool_max_bytes).",
            one(self.spool_max_bytes),
        );
        o
    }
}

/// What the reader hands the writer.
pub enum Input {
    /// A SUBSCRIBED snapshot from the master `master_id`.
    Subscribed {
        /// MasterInfo.id, when known.
        master_id: Option<String>,
        /// The snapshot.
        state: Box<op::response::GetState>,
    },
    /// A later operator event.
    Event(Box<op::Event>),
    /// Nothing to publish; time for housekeeping (a sink advanced, or a
    /// heartbeat came).
    Tick,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A publisher's running parts, for the caller to await.
pub struct Running {
    /// The HTTP endpoint's address.
    pub addr: SocketAddr,
    /// Counters and health.
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    election: Option<corral_sdk::leader::Election>,
}

impl Running {
    /// Runs until the process is stopped, or until this instance loses
    /// its leadership (`Err`).
    pub async fn wait(self) -> Result<(), PublisherError> {
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        match &self.election {
            Some(e) => {
                tokio::select! {
                    _ = all => Ok(()),
                    _ = e.lost() => Err(PublisherError::LostLeadership),
                }
            }
            None => {
                all.await;
                Ok(())
            }
        }
    }
}

/// Enters the election and waits to lead, retrying (with `/health`
/// saying why) while ZooKeeper cannot be used.
async fn lead(
    zk: &str,
    session_timeout: Duration,
    addr: SocketAddr,
    shared: &Shared,
) -> corral_sdk::leader::Election {
    use corral_sdk::leader::{Election, Instance};
    let me = Instance::new(addr.ip().to_string(), addr.port());
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = async {
            let e = Election::enter(zk, &me, session_timeout).await?;
            Shared::set(&shared.election_problem, None);
            tracing::info!(zk, "waiting to lead the eventing publishers");
            e.lead().await?;
            Ok::<_, corral_sdk::leader::LeaderError>(e)
        };
        match attempt.await {
            Ok(e) => return e,
            Err(err) => {
                tracing::warn!(zk, error = %err, "leader election failed; retrying");
                Shared::set(&shared.election_problem, Some(err.to_string()));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Starts the publisher (spool opened, core rebuilt, HTTP bound) and
/// returns its running parts. Fails only for what retrying cannot fix: no
/// sink configured, an unusable spool directory, a taken address.
pub async fn start(config: Config) -> Result<Running, PublisherError> {
    if config.kafka.is_none() && config.amqp.is_none() {
        return Err(PublisherError::Config(
            "no sink: give --kafka_brokers, --amqp_url or both".into(),
        ));
    }
    let source = corral_sdk::detector::MasterSource::parse(&config.master)
        .map_err(|e| PublisherError::Config(e.to_string()))?;
    if let Some(a) = &config.amqp {
        if !(a.url.starts_with("amqp://") || a.url.starts_with("amqps://")) {
            return Err(PublisherError::Config(format!(
                "--amqp_url {:?} is not an amqp:// URL",
                a.url
            )));
        }
    }
    if config.spool_max_bytes < MIN_SPOOL_BYTES {
        return Err(PublisherError::Config(format!(
            "--spool_max_bytes must be at least {MIN_SPOOL_BYTES}"
        )));
    }
    let segment_bytes = (config.spool_max_bytes / 16).clamp(16 << 10, 64 << 20);
    let opened = {
        let dir = config.spool_dir.clone();
        tokio::task::spawn_blocking(move || Spool::open(&dir, segment_bytes))
            .await
            .map_err(|e| PublisherError::Config(format!("spool: {e}")))??
    };
    let mut core = Core::with_state(
        config.source.clone(),
        config.max_terminal_tasks,
        opened.checkpoint.published.clone(),
    );
    for r in &opened.replay {
        core.apply(&r.event);
    }
    let last = opened.spool.last_seq();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| PublisherError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| PublisherError::Listen {
            addr: config.listen,
            source,
        })?;

    // A sink starts after the records it published; a sink new to this
    // spool from the oldest record still on disk.
    let first_kept = opened.spool.first_seq();
    let start_of = |name: &str| -> u64 {
        opened
            .cursors
            .get(name)
            .copied()
            .unwrap_or(first_kept.saturating_sub(1))
    };
    let mut sinks = Vec::new();
    if config.kafka.is_some() {
        sinks.push(Arc::new(SinkStat::new("kafka", start_of("kafka"))));
    }
    if config.amqp.is_some() {
        sinks.push(Arc::new(SinkStat::new("amqp", start_of("amqp"))));
    }
    let shared = Arc::new(Shared {
        received: AtomicU64::new(0),
        emitted: AtomicU64::new(0),
        diff_emitted: AtomicU64::new(0),
        subscriptions: AtomicU64::new(0),
        spool_bytes: AtomicU64::new(opened.spool.bytes()),
        spool_max_bytes: config.spool_max_bytes,
        appended: AtomicU64::new(last),
        master_connected: AtomicBool::new(false),
        master_problem: Mutex::new(Some("not connected yet".into())),
        spool_problem: Mutex::new(None),
        leader: Mutex::new(None),
        sinks: sinks.clone(),
        standby: AtomicBool::new(config.zk.is_some()),
        election_problem: Mutex::new(None),
    });
    let mut tasks = Vec::new();

    // /health and /metrics first: a standby answers them too.
    {
        let app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/ui", get(ui))
            .merge(webui::SITE.common_routes(true))
            .with_state(Arc::clone(&shared));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the http endpoint failed");
            }
        }));
    }
    let election = match &config.zk {
        Some(zk) => {
            let e = lead(zk, config.zk_session_timeout, addr, &shared).await;
            shared.standby.store(false, Ordering::SeqCst);
            Some(e)
        }
        None => None,
    };
    tracing::info!(
        spool = %config.spool_dir.display(),
        last_seq = last,
        replayed = opened.replay.len(),
        tasks = core.state().tasks.len(),
        "publisher state recovered"
    );

    let (appended_tx, appended_rx) = watch::channel(last);
    let (input_tx, input_rx) = mpsc::channel::<Input>(1024);
    // A sink that moved its cursor wakes a writer waiting for spool room.
    let (wake_tx, wake_rx) = mpsc::channel::<()>(1);

    // The writer: a thread of its own (fsync blocks).
    {
        let shared = Arc::clone(&shared);
        let checkpoint_seq = opened.checkpoint.seq;
        let spool = opened.spool;
        let max = config.spool_max_bytes;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("eventing-writer".into())
            .spawn(move || {
                writer_loop(
                    input_rx,
                    wake_rx,
                    spool,
                    core,
                    checkpoint_seq,
                    shared,
                    max,
                    appended_tx,
                );
                let _ = done_tx.send(());
            })
            .map_err(|e| PublisherError::Config(format!("cannot start the writer: {e}")))?;
        tasks.push(tokio::spawn(async move {
            let _ = done_rx.await;
        }));
    }

    // The master reader.
    {
        let shared = Arc::clone(&shared);
        let detector = corral_sdk::detector::Detector::new(source);
        tasks.push(tokio::spawn(master::run(
            detector,
            input_tx.clone(),
            shared,
        )));
    }

    // The sinks.
    let sink_io = |stat: &Arc<SinkStat>| SinkIo {
        reader: Reader::new(&config.spool_dir, stat.cursor.load(Ordering::SeqCst) + 1),
        appended: appended_rx.clone(),
        stat: Arc::clone(stat),
        ticks: input_tx.clone(),
        wake: wake_tx.clone(),
    };
    if let Some(k) = config.kafka.clone() {
        let stat = &sinks[0];
        let sink = kafka::KafkaSink::new(k, Arc::clone(stat));
        tasks.push(tokio::spawn(run_sink(sink, sink_io(stat))));
    }
    if let Some(a) = config.amqp.clone() {
        let stat = sinks.last().unwrap_or(&sinks[0]);
        let sink = amqp::AmqpSink::new(a, Arc::clone(stat));
        tasks.push(tokio::spawn(run_sink(sink, sink_io(stat))));
    }
    drop(wake_tx);

    tracing::info!(%addr, master = %config.master, "eventing publisher started");
    Ok(Running {
        addr,
        shared,
        tasks,
        election,
    })
}

/// Runs the publisher until the process stops.
pub async fn run(config: Config) -> Result<(), PublisherError> {
    start(config).await?.wait().await
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.health_json();
    let status = if body["status"] == "ok" || body["status"] == "standby" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn ui(State(shared): State<Arc<Shared>>) -> Response {
    corral_sdk::webui::html(200, webui::page(&webui::document(&shared)))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics_text(),
    )
        .into_response()
}

#[allow(clippy::too_many_arguments)]
fn writer_loop(
    mut rx: mpsc::Receiver<Input>,
    mut wake: mpsc::Receiver<()>,
    mut spool: Spool,
    mut core: Core,
    mut checkpoint_seq: u64,
    shared: Arc<Shared>,
    max_bytes: u64,
    appended: watch::Sender<u64>,
) {
    const BATCH: usize = 512;
    let mut persisted: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_cursor_write = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut uncheckpointed: u64 = spool.last_seq().saturating_sub(checkpoint_seq);
    let mut full_logged = false;
    loop {
        // Housekeeping: cursors, checkpoint, segments no longer needed.
        let cursors: BTreeMap<String, u64> = shared
            .sinks
            .iter()
            .map(|s| (s.name.to_string(), s.cursor.load(Ordering::SeqCst)))
            .collect();
        let full = spool.bytes() >= max_bytes;
        if cursors != persisted
            && (last_cursor_write.elapsed() >= Duration::from_millis(200) || full)
        {
            match spool.write_cursors(&cursors) {
                Ok(()) => persisted = cursors,
                Err(e) => tracing::error!(error = %e, "cannot persist the sinks' cursors"),
            }
            last_cursor_write = Instant::now();
        }
        if uncheckpointed > 0
            && (last_checkpoint.elapsed() >= Duration::from_secs(5)
                || uncheckpointed >= 50_000
                || full)
        {
            let cp = Checkpoint {
                seq: spool.last_seq(),
                published: core.state().clone(),
            };
            match spool.write_checkpoint(&cp) {
                Ok(()) => {
                    checkpoint_seq = cp.seq;
                    uncheckpointed = 0;
                }
                Err(e) => tracing::error!(error = %e, "cannot write the state checkpoint"),
            }
            last_checkpoint = Instant::now();
        }
        let published_everywhere = persisted.values().copied().min().unwrap_or(0);
        spool.gc(published_everywhere.min(checkpoint_seq));
        shared.spool_bytes.store(spool.bytes(), Ordering::SeqCst);

        if spool.bytes() >= max_bytes {
            if !full_logged {
                tracing::warn!(
                    bytes = spool.bytes(),
                    max_bytes,
                    "spool full; not reading the master until the sinks drain it"
                );
                full_logged = true;
            }
            Shared::set(
                &shared.spool_problem,
                Some(format!(
                    "full ({} of {max_bytes} bytes); the master stream is paused until the sinks catch up",
                    spool.bytes()
                )),
            );
            // Wait until a sink moves its cursor (then the loop persists the
            // cursors and frees segments), or until every sink is gone.
            if wake.blocking_recv().is_none() {
                return;
            }
            continue;
        }
        if full_logged {
            full_logged = false;
            Shared::set(&shared.spool_problem, None);
            tracing::info!("spool has room again");
        }

        let mut inputs = match rx.blocking_recv() {
            Some(i) => vec![i],
            None => return,
        };
        while inputs.len() < BATCH {
            match rx.try_recv() {
                Ok(i) => inputs.push(i),
                Err(_) => break,
            }
        }
        let now = unix_now();
        let mut events = Vec::new();
        for input in inputs {
            match input {
                Input::Subscribed { master_id, state } => {
                    let diff = core.on_subscribed(master_id.as_deref(), &state, now);
                    if !diff.is_empty() {
                        tracing::info!(
                            events = diff.len(),
                            master_id = master_id.as_deref().unwrap_or("unknown"),
                            "snapshot diff emitted missed transitions"
                        );
                    }
                    shared
                        .diff_emitted
                        .fetch_add(diff.len() as u64, Ordering::SeqCst);
                    events.extend(diff);
                }
                Input::Event(e) => events.extend(core.on_event(&e, now)),
                Input::Tick => {}
            }
        }
        if events.is_empty() {
            continue;
        }
        // The core has moved on: keep trying until the events are on disk
        // (the master stream waits meanwhile).
        let mut delay = Duration::from_millis(100);
        let last = loop {
            match spool.append(&events) {
                Ok(last) => break last,
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the spool; retrying");
                    Shared::set(&shared.spool_problem, Some(format!("cannot write: {e}")));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        if delay > Duration::from_millis(100) {
            Shared::set(&shared.spool_problem, None);
        }
        uncheckpointed += events.len() as u64;
        shared
            .emitted
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        shared.appended.store(last, Ordering::SeqCst);
        shared.spool_bytes.store(spool.bytes(), Ordering::SeqCst);
        let _ = appended.send(last);
    }
}

/// A broker the spooled events go to.
pub trait Sink: Send + 'static {
    /// Publishes `batch` in order; `Ok` once the broker acknowledged all.
    fn publish(
        &mut self,
        batch: &[Record],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// Checks the broker (connection, topic or exchange); `Err` says what
    /// is wrong.
    fn probe(&mut self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

const SINK_BATCH: usize = 1000;
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What a sink task reads from and reports to.
struct SinkIo {
    /// The spool, from the sink's cursor on.
    reader: Reader,
    /// The last sequence number in the spool.
    appended: watch::Receiver<u64>,
    /// The sink's cursor and health.
    stat: Arc<SinkStat>,
    /// The writer's input: a tick persists the moved cursor.
    ticks: mpsc::Sender<Input>,
    /// Wakes a writer waiting for spool room.
    wake: mpsc::Sender<()>,
}

async fn run_sink<S: Sink>(mut sink: S, io: SinkIo) {
    let SinkIo {
        reader,
        mut appended,
        stat,
        ticks,
        wake,
    } = io;
    let mut reader = Some(reader);
    let mut batch: Vec<Record> = Vec::new();
    let mut backoff = Duration::from_millis(200);
    let mut last_probe: Option<Instant> = None;
    loop {
        if batch.is_empty() {
            let upto = *appended.borrow_and_update();
            let cursor = stat.cursor.load(Ordering::SeqCst);
            if upto > cursor {
                let Some(mut r) = reader.take() else { return };
                let read = tokio::task::spawn_blocking(move || {
                    let out = r.read(upto, SINK_BATCH);
                    (r, out)
                })
                .await;
                match read {
                    Ok((r, Ok(records))) => {
                        reader = Some(r);
                        batch = records;
                    }
                    Ok((r, Err(e))) => {
                        reader = Some(r);
                        stat.down(format!("cannot read the spool: {e}"));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(_) => return,
                }
            } else {
                // Idle: probe the broker now and then, wait for events.
                if last_probe.is_none_or(|t| t.elapsed() >= PROBE_EVERY) {
                    match sink.probe().await {
                        Ok(()) => stat.ok(),
                        Err(p) => stat.down(p),
                    }
                    last_probe = Some(Instant::now());
                }
                tokio::select! {
                    r = appended.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(PROBE_EVERY) => {},
                }
                continue;
            }
        }
        if batch.is_empty() {
            continue;
        }
        match sink.publish(&batch).await {
            Ok(()) => {
                let last = batch.last().map(|r| r.seq).unwrap_or(0);
                stat.published
                    .fetch_add(batch.len() as u64, Ordering::SeqCst);
                stat.cursor.store(last, Ordering::SeqCst);
                stat.ok();
                batch.clear();
                backoff = Duration::from_millis(200);
                // The writer persists the cursor and frees segments.
                let _ = ticks.try_send(Input::Tick);
                let _ = wake.try_send(());
            }
            Err(problem) => {
                stat.errors.fetch_add(1, Ordering::SeqCst);
                stat.down(problem);
                // The same batch again, after a pause; the probe keeps
                // /health current meanwhile.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if let Err(p) = sink.probe().await {
                    stat.down(p);
                }
                last_probe = Some(Instant::now());
            }
        }
    }
}

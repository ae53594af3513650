//! The backend tier's shell: long-lived Kafka producers and consumers for the
//! sessions of the shards this backend owns.
//!
//! One actor ([`Backend`]) owns the [`Sessions`] core and the [`Ring`]; every
//! input reaches it as an [`Ev`] over one bounded channel:
//!
//! * requests from the shard queues it consumes (RabbitMQ, single active
//!   consumer per queue), answered on the requester's reply queue;
//! * heartbeats of the backends on `S.members`: the ring is recomputed when
//!   the set changes, and the shards this backend gains or loses are
//!   consumed or released (a released shard's sessions are closed; their
//!   clients allocate again from their offset tokens on the new owner);
//! * records fetched by a session's reader task, offered one at a time to
//!   the core, whose verdict the reader follows (go on, wait for an ack, or
//!   hold the refused record until there is room: read-ahead is bounded and
//!   no record is skipped);
//! * Kafka's delivery reports of the shared idempotent producer
//!   (`acks=all`), which resolve pending writes; a write's answer waits until
//!   every event of the batch is in Kafka (or `write_wait` has passed).
//!
//! Graceful shutdown (SIGTERM): announce leaving, stop taking requests,
//! close every session, flush the producer for `flush_timeout`, and spool
//! what Kafka still has not acknowledged to `spool_dir`; the next start
//! produces the spool before it takes any shard.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::amqp::{Heartbeat, Topology};
use super::crypto::Keyring;
use super::offset_token::{OffsetTokenCodec, Selector};
use super::ring::{BackendId, Ring, ShardId};
use super::session::{
    Offer, ProduceRequest, Record, SessionConfig, SessionError, SessionId, Sessions, StartFrom,
    WriteStatus,
};
use super::wire::{
    AckResponse, AllocateRequest, AllocateResponse, DisposeResponse, Envelope, ErrorBody,
    ErrorDetail, ReadResponse, Reply, Request, WriteResponse, WriteResultOut,
};
use super::{ClientError, Millis};

/// The Kafka header carrying a client's write id.
pub const WRITE_ID_HEADER: &str = "corral-write-id";

/// How the backend is set up.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// This backend's id (unique among the service's backends).
    pub id: String,
    /// RabbitMQ.
    pub amqp_url: String,
    /// The service's RabbitMQ names and shard count.
    pub topology: Topology,
    /// Kafka's bootstrap servers.
    pub kafka_brokers: String,
    /// Extra librdkafka properties for producers and consumers.
    pub kafka_properties: Vec<(String, String)>,
    /// Create a topic a session asks for when it does not exist.
    pub create_topics: bool,
    /// Partitions of a topic the backend creates.
    pub topic_partitions: i32,
    /// The payload keys (encrypted topics).
    pub keyring: Arc<Keyring>,
    /// The offset token codec (its secret is shared by every backend).
    pub codec: OffsetTokenCodec,
    /// The session limits.
    pub sessions: SessionConfig,
    /// Where writes Kafka had not acknowledged at shutdown are kept.
    pub spool_dir: PathBuf,
    /// Where /health and /metrics listen.
    pub listen: SocketAddr,
    /// How often the backend announces itself.
    pub heartbeat: Duration,
    /// A backend not heard from for this long is gone.
    pub member_timeout: Duration,
    /// The longest a write's answer waits for Kafka.
    pub write_wait: Duration,
    /// How long shutdown waits for Kafka before spooling.
    pub flush_timeout: Duration,
}

/// Why the backend cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// RabbitMQ refused or went away.
    #[error("rabbitmq: {0}")]
    Amqp(String),
    /// Kafka's client could not be made.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The spool could not be read or written.
    #[error("spool {path}: {message}")]
    Spool {
        /// The file or directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// The HTTP endpoint.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
}

/// Counters and state for /health and /metrics.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    bad_envelopes: AtomicU64,
    sessions: AtomicU64,
    fetched: AtomicU64,
    undecryptable: AtomicU64,
    produced: AtomicU64,
    produce_failed: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    shards_moved: AtomicU64,
    draining: AtomicBool,
    ready: AtomicBool,
    view: Mutex<(Vec<u32>, Vec<String>)>,
}

/// What reaches the actor.
enum Ev {
    /// A request from a shard queue (raw, parsed by the actor).
    Delivery(Vec<u8>),
    /// A backend's heartbeat.
    Heartbeat(Heartbeat),
    /// A topic's partition count (or why there is none) for waiting
    /// allocations.
    TopicInfo {
        topic: String,
        result: Result<i32, ErrorBody>,
    },
    /// A reader asks where to start its partitions: `(partition, low,
    /// high, the group's committed offset)` in, `(partition, offset)` out.
    Assign {
        session: SessionId,
        parts: Vec<(i32, i64, i64, Option<i64>)>,
        reply: oneshot::Sender<Vec<(i32, i64)>>,
    },
    /// A group session's consumer lost partitions (a rebalance).
    Revoke {
        session: SessionId,
        partitions: Vec<i32>,
    },
    /// A reader fetched records (in partition order).
    Fetched {
        session: SessionId,
        records: Vec<Record>,
        reply: oneshot::Sender<Verdict>,
    },
    /// A reader's consumer failed.
    ReaderFailed { session: SessionId, error: String },
    /// Kafka's answer for one write.
    Produced {
        session: SessionId,
        write_id: String,
        result: Result<(i32, i64), String>,
    },
    /// SIGTERM or a test asks the backend to stop.
    Shutdown,
}

/// What a reader does after offering the records it fetched.
enum Verdict {
    /// All taken; go on fetching.
    Next,
    /// All taken (or copies); wait for the go-ahead before fetching more.
    Wait,
    /// No room for these: keep them, wait for the go-ahead, offer them
    /// again (nothing behind them is offered before).
    Hold(Vec<Record>),
    /// The session is gone: stop.
    Stop,
}

struct ReaderHandle {
    go: mpsc::Sender<()>,
    waiting: bool,
    /// A group session's consumer (acks are committed to the group).
    group: Option<Arc<ReaderConsumer>>,
}

/// What a session's reader reads.
enum Reading {
    /// These partitions, assigned by the session (offsets from its token).
    Partitions(Vec<i32>),
    /// The partitions a consumer group gives it (subscribe; offsets
    /// committed to the group on ack).
    Group(String),
}

/// A group's rebalance, as the reader hears of it.
enum GroupChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// The context of a reader's consumer: forwards a group's rebalances to
/// the reader (partition sessions never rebalance).
struct ReaderContext {
    changes: mpsc::UnboundedSender<GroupChange>,
}

type ReaderConsumer = StreamConsumer<ReaderContext>;

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl rdkafka::client::ClientContext for ReaderContext {}

impl rdkafka::consumer::ConsumerContext for ReaderContext {
    fn pre_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Revoke(tpl) = rebalance {
            let _ = self.changes.send(GroupChange::Revoked(partitions_of(tpl)));
        }
    }

    fn post_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(tpl) = rebalance {
            let _ = self.changes.send(GroupChange::Assigned(partitions_of(tpl)));
        }
    }
}

struct ParkedRead {
    request_id: String,
    reply_to: String,
    principal: String,
    params: super::session::ReadParams,
    deadline: Instant,
}

struct ParkedWrite {
    request_id: String,
    reply_to: String,
    principal: String,
    results: Vec<WriteResultOut>,
    deadline: Instant,
}

/// A write handed to the producer and not yet acknowledged (spooled at
/// shutdown if it stays so).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpooledWrite {
    topic: String,
    write_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    /// The bytes as stored in Kafka (sealed for an encrypted topic).
    value_base64: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn kafka_config(cfg: &BackendConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka_brokers)
        .set("client.id", format!("corral-eventing-{}", cfg.id))
        .set("log_level", "3")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    for (k, v) in &cfg.kafka_properties {
        c.set(k, v);
    }
    c
}

fn producer_config(cfg: &BackendConfig) -> ClientConfig {
    let mut c = kafka_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("allow.auto.create.topics", "false");
    c
}

fn consumer_config(cfg: &BackendConfig) -> ClientConfig {
    let mut c = kafka_config(cfg);
    // No group: the session assigns its partitions and keeps its own
    // positions. A small local queue keeps each session's memory bounded.
    c.set("group.id", format!("corral-eventing-{}", cfg.id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "2048")
        .set("queued.min.messages", "1000")
        .set("fetch.wait.max.ms", "50");
    c
}

fn now_ms(origin: Instant) -> Millis {
    origin.elapsed().as_millis() as Millis
}

fn error_reply(request_id: &str, e: &dyn ClientError) -> Reply {
    Reply::error(request_id, ErrorBody::new(e))
}

fn session_error_reply(request_id: &str, e: &SessionError) -> Reply {
    Reply::error(request_id, ErrorBody::from_session_error(e))
}

fn custom_error(status: u16, code: &str, message: String) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            status,
            code: code.to_owned(),
            message,
            offset_token: None,
        },
    }
}

/// A running backend.
pub struct RunningBackend {
    /// Where /health and /metrics listen.
    pub addr: SocketAddr,
    tx: mpsc::Sender<Ev>,
    done: tokio::task::JoinHandle<Result<(), BackendError>>,
}

impl RunningBackend {
    /// Stops gracefully (as on SIGTERM) and waits.
    pub async fn shutdown(self) -> Result<(), BackendError> {
        let _ = self.tx.send(Ev::Shutdown).await;
        self.wait().await
    }

    /// Waits until the backend stops.
    pub async fn wait(self) -> Result<(), BackendError> {
        match self.done.await {
            Ok(r) => r,
            Err(e) => Err(BackendError::Config(format!(
                "the backend task failed: {e}"
            ))),
        }
    }
}

/// Starts a backend: replays the spool, connects, and serves until
/// [`RunningBackend::shutdown`] (or SIGTERM, see [`run`]).
pub async fn start(cfg: BackendConfig) -> Result<RunningBackend, BackendError> {
    let me = BackendId::new(cfg.id.clone()).map_err(|e| BackendError::Config(e.to_string()))?;
    let ring = Ring::new(cfg.topology.shards).map_err(|e| BackendError::Config(e.to_string()))?;
    let sessions = Sessions::new(cfg.sessions.clone(), cfg.codec.clone())
        .map_err(|e| BackendError::Config(e.to_string()))?;
    std::fs::create_dir_all(&cfg.spool_dir).map_err(|e| BackendError::Spool {
        path: cfg.spool_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let producer: FutureProducer = producer_config(&cfg)
        .create()
        .map_err(|e| BackendError::Kafka(format!("invalid configuration: {e}")))?;
    let stats = Arc::new(Stats::default());
    replay_spool(&cfg.spool_dir, &producer, &stats).await?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| BackendError::Listen {
            addr: cfg.listen,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| BackendError::Listen {
        addr: cfg.listen,
        message: e.to_string(),
    })?;
    let conn = Connection::connect(&cfg.amqp_url, ConnectionProperties::default())
        .await
        .map_err(|e| BackendError::Amqp(format!("{}: {e}", redact(&cfg.amqp_url))))?;
    let amqp = |e: lapin::Error| BackendError::Amqp(e.to_string());
    let ch = conn.create_channel().await.map_err(amqp)?;
    cfg.topology.declare(&ch).await.map_err(amqp)?;
    ch.basic_qos(256, BasicQosOptions::default())
        .await
        .map_err(amqp)?;
    let reply_ch = conn.create_channel().await.map_err(amqp)?;

    let (tx, rx) = mpsc::channel::<Ev>(4096);
    // Heartbeats: listen, then announce.
    let hb_ch = conn.create_channel().await.map_err(amqp)?;
    let (_, mut hb_consumer) =
        Topology::private_consumer(&hb_ch, Some(&cfg.topology.members_exchange()), "members")
            .await
            .map_err(amqp)?;
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = hb_consumer.next().await {
                if let Ok(hb) = serde_json::from_slice::<Heartbeat>(&d.data) {
                    if tx.send(Ev::Heartbeat(hb)).await.is_err() {
                        return;
                    }
                }
            }
            tracing::error!("the heartbeat consumer ended (rabbitmq connection lost)");
            let _ = tx.send(Ev::Shutdown).await;
        });
    }
    let leaving = Arc::new(AtomicBool::new(false));
    {
        let hb_ch = hb_ch.clone();
        let exchange = cfg.topology.members_exchange();
        let id = cfg.id.clone();
        let every = cfg.heartbeat;
        let first = cfg.member_timeout;
        let leaving = Arc::clone(&leaving);
        tokio::spawn(async move {
            // Listen for a member timeout first: the others give this
            // backend shards only once it knows the membership too.
            tokio::time::sleep(first).await;
            loop {
                let hb = Heartbeat {
                    backend: id.clone(),
                    leaving: leaving.load(Ordering::SeqCst),
                };
                let body = serde_json::to_vec(&hb).unwrap_or_default();
                let sent = hb_ch
                    .basic_publish(
                        ShortString::from(exchange.clone()),
                        ShortString::from(""),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default(),
                    )
                    .await;
                if sent.is_err() || hb.leaving {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    {
        let app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(&stats));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the backend's http endpoint failed");
            }
        });
    }

    let origin = Instant::now();
    let backend = Backend {
        me,
        ring,
        sessions,
        members: HashMap::new(),
        consuming: HashMap::new(),
        readers: HashMap::new(),
        parked_reads: HashMap::new(),
        parked_writes: HashMap::new(),
        inflight: HashMap::new(),
        acked_sessions: HashSet::new(),
        topics: HashMap::new(),
        waiting_topic: HashMap::new(),
        producer,
        ch,
        reply_ch,
        tx: tx.clone(),
        origin,
        started: Instant::now(),
        stats: Arc::clone(&stats),
        leaving,
        conn,
        cfg,
    };
    tracing::info!(backend = %backend.me, %addr, shards = backend.cfg.topology.shards, "eventing backend started");
    let done = tokio::spawn(backend.run(rx));
    Ok(RunningBackend { addr, tx, done })
}

/// Runs a backend until SIGTERM or SIGINT, then shuts it down gracefully.
pub async fn run(cfg: BackendConfig) -> Result<(), BackendError> {
    let running = start(cfg).await?;
    let tx = running.tx.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("signal received; shutting down gracefully");
        let _ = tx.send(Ev::Shutdown).await;
    });
    running.wait().await
}

struct Backend {
    cfg: BackendConfig,
    me: BackendId,
    ring: Ring,
    sessions: Sessions,
    members: HashMap<String, Instant>,
    /// Shards whose queue this backend consumes, with the consumer tag.
    consuming: HashMap<ShardId, ShortString>,
    readers: HashMap<SessionId, ReaderHandle>,
    parked_reads: HashMap<SessionId, ParkedRead>,
    parked_writes: HashMap<SessionId, Vec<ParkedWrite>>,
    inflight: HashMap<(SessionId, String), SpooledWrite>,
    /// Sessions with parked writes that Kafka acknowledged some of since
    /// the last answer.
    acked_sessions: HashSet<SessionId>,
    topics: HashMap<String, (i32, Instant)>,
    waiting_topic: HashMap<String, Vec<Envelope>>,
    producer: FutureProducer,
    ch: Channel,
    reply_ch: Channel,
    conn: Connection,
    tx: mpsc::Sender<Ev>,
    origin: Instant,
    started: Instant,
    stats: Arc<Stats>,
    leaving: Arc<AtomicBool>,
}

const TICK: Duration = Duration::from_millis(200);
/// Events handled in a row before parked writes are answered.
const DRAIN: usize = 512;
const TOPIC_CACHE: Duration = Duration::from_secs(10);
/// The most allocations waiting for topic metadata (more are refused with
/// 503 and retried by their clients).
const MAX_WAITING_ALLOCATIONS: usize = 10_000;

impl Backend {
    async fn run(mut self, mut rx: mpsc::Receiver<Ev>) -> Result<(), BackendError> {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let deadline = self.next_deadline().min(next_tick);
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = tokio::time::sleep_until(deadline.into()) => None,
            };
            match ev {
                Some(Ev::Shutdown) => break,
                Some(ev) => self.on_event(ev).await,
                None if rx.is_closed() => break,
                None => {}
            }
            // What else is waiting, before answering writes: one answer
            // per batch of Kafka acknowledgements, not one per event.
            let mut stop = false;
            for _ in 0..DRAIN {
                match rx.try_recv() {
                    Ok(Ev::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Ok(ev) => self.on_event(ev).await,
                    Err(_) => break,
                }
            }
            for session in std::mem::take(&mut self.acked_sessions) {
                self.answer_writes(session, false);
            }
            if stop {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick().await;
                next_tick = now + TICK;
            }
            self.expire_parked(now);
        }
        self.shutdown(rx).await
    }

    fn next_deadline(&self) -> Instant {
        let reads = self.parked_reads.values().map(|p| p.deadline);
        let writes = self.parked_writes.values().flatten().map(|p| p.deadline);
        reads
            .chain(writes)
            .min()
            .unwrap_or_else(|| Instant::now() + TICK)
    }

    fn reply(&self, reply_to: &str, reply: Reply) {
        let bytes = match reply.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                match error_reply(&reply.request_id, &e).to_bytes() {
                    Ok(b) => b,
                    Err(_) => return,
                }
            }
        };
        let ch = self.reply_ch.clone();
        let to = reply_to.to_owned();
        tokio::spawn(async move {
            let r = ch
                .basic_publish(
                    ShortString::from(""),
                    ShortString::from(to),
                    BasicPublishOptions::default(),
                    &bytes,
                    BasicProperties::default(),
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot send a reply");
            }
        });
    }

    async fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::Delivery(bytes) => self.on_delivery(&bytes),
            Ev::Heartbeat(hb) => {
                if hb.leaving {
                    self.members.remove(&hb.backend);
                    self.rebalance().await;
                } else {
                    let new = self
                        .members
                        .insert(hb.backend.clone(), Instant::now())
                        .is_none();
                    if new {
                        self.rebalance().await;
                    }
                }
            }
            Ev::TopicInfo { topic, result } => {
                let waiting = self.waiting_topic.remove(&topic).unwrap_or_default();
                match result {
                    Ok(n) => {
                        self.topics.insert(topic, (n, Instant::now()));
                        for env in waiting {
                            self.allocate(env, n);
                        }
                    }
                    Err(body) => {
                        for env in waiting {
                            self.reply(&env.reply_to, Reply::error(&env.request_id, body.clone()));
                        }
                    }
                }
            }
            Ev::Assign {
                session,
                parts,
                reply,
            } => {
                let start = self.sessions.get(&session).map(|s| s.start());
                let mut out = Vec::new();
                for (p, low, high, committed) in parts {
                    let default = committed.unwrap_or(match start {
                        Some(StartFrom::Latest) => high,
                        _ => low,
                    });
                    match self.sessions.assign_partition(session, p, default) {
                        Ok(at) => out.push((p, at.clamp(low, high.max(low)))),
                        Err(e) => tracing::debug!(error = %e, "partition not assigned"),
                    }
                }
                let _ = reply.send(out);
            }
            Ev::Fetched {
                session,
                records,
                reply,
            } => {
                self.stats
                    .fetched
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                let mut verdict = Verdict::Next;
                let mut accepted = false;
                let mut records = records.into_iter();
                while let Some(r) = records.next() {
                    match self.sessions.offer(session, r) {
                        Ok(Offer::Accepted(flow)) => {
                            accepted = true;
                            if !flow.can_fetch() {
                                let rest: Vec<Record> = records.by_ref().collect();
                                verdict = if rest.is_empty() {
                                    Verdict::Wait
                                } else {
                                    Verdict::Hold(rest)
                                };
                                break;
                            }
                        }
                        Ok(Offer::Duplicate) => {}
                        Ok(Offer::Full(r)) => {
                            let mut rest = vec![r];
                            rest.extend(records.by_ref());
                            verdict = Verdict::Hold(rest);
                            break;
                        }
                        Err(_) => {
                            verdict = Verdict::Stop;
                            break;
                        }
                    }
                }
                if accepted {
                    self.wake_read(session);
                }
                if matches!(verdict, Verdict::Wait | Verdict::Hold(_)) {
                    if let Some(h) = self.readers.get_mut(&session) {
                        h.waiting = true;
                    }
                }
                let _ = reply.send(verdict);
            }
            Ev::Revoke {
                session,
                partitions,
            } => {
                if self
                    .sessions
                    .revoke_partitions(session, &partitions)
                    .is_ok()
                {
                    tracing::info!(%session, ?partitions, "a group rebalance took partitions");
                }
            }
            Ev::ReaderFailed { session, error } => {
                tracing::warn!(%session, %error, "a session's kafka consumer failed");
                self.readers.remove(&session);
            }
            Ev::Produced {
                session,
                write_id,
                result,
            } => {
                self.inflight.remove(&(session, write_id.clone()));
                let r = match result {
                    Ok((p, o)) => {
                        self.stats.produced.fetch_add(1, Ordering::Relaxed);
                        self.sessions.write_acked(session, &write_id, p, o)
                    }
                    Err(e) => {
                        self.stats.produce_failed.fetch_add(1, Ordering::Relaxed);
                        self.sessions.write_failed(session, &write_id, &e)
                    }
                };
                if r.is_ok() && self.parked_writes.contains_key(&session) {
                    self.acked_sessions.insert(session);
                }
            }
            Ev::Shutdown => {}
        }
    }

    fn on_delivery(&mut self, bytes: &[u8]) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let env = match Envelope::from_bytes(bytes) {
            Ok(env) => env,
            Err(e) => {
                self.stats.bad_envelopes.fetch_add(1, Ordering::Relaxed);
                // Answer when the envelope says where.
                let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
                match (v["replyTo"].as_str(), v["requestId"].as_str()) {
                    (Some(to), Some(id)) if !to.is_empty() && to.len() <= 255 => {
                        self.reply(to, error_reply(id, &e));
                    }
                    _ => tracing::warn!(error = %e, "dropped a malformed request"),
                }
                return;
            }
        };
        if let Err(e) = env.check_shard(self.cfg.topology.shards) {
            self.reply(&env.reply_to, error_reply(&env.request_id, &e));
            return;
        }
        let now = now_ms(self.origin);
        let id = env.session_id;
        match &env.request {
            Request::Allocate(r) => {
                if self.sessions.is_draining() {
                    let e = SessionError::Draining;
                    self.reply(&env.reply_to, session_error_reply(&env.request_id, &e));
                    return;
                }
                let topic = r.topic.clone();
                match self.topics.get(&topic) {
                    Some((n, at)) if at.elapsed() < TOPIC_CACHE => {
                        let n = *n;
                        self.allocate(env, n);
                    }
                    _ => {
                        let queued: usize = self.waiting_topic.values().map(Vec::len).sum();
                        if queued >= MAX_WAITING_ALLOCATIONS {
                            let body = custom_error(
                                503,
                                "overloaded",
                                format!("{queued} allocations already wait for Kafka's metadata; retry later"),
                            );
                            self.reply(&env.reply_to, Reply::error(&env.request_id, body));
                            return;
                        }
                        let waiting = self.waiting_topic.entry(topic.clone()).or_default();
                        waiting.push(env);
                        if waiting.len() == 1 {
                            self.look_up_topic(topic);
                        }
                    }
                }
            }
            Request::Read(r) => {
                let params = r.to_params();
                let wait = Duration::from_millis(u64::from(r.wait_ms.unwrap_or(0)));
                match self.sessions.read(id, &env.principal, params, now) {
                    Ok(batch) if batch.events.is_empty() && !wait.is_zero() => {
                        if let Some(old) = self.parked_reads.insert(
                            id,
                            ParkedRead {
                                request_id: env.request_id.clone(),
                                reply_to: env.reply_to.clone(),
                                principal: env.principal.clone(),
                                params: super::session::ReadParams {
                                    after: None,
                                    ..params
                                },
                                deadline: Instant::now() + wait,
                            },
                        ) {
                            // A newer read replaces a parked one: answer it
                            // empty.
                            self.answer_read(id, old);
                        }
                    }
                    Ok(batch) => self.reply(
                        &env.reply_to,
                        Reply::ok(&env.request_id, &ReadResponse::from_batch(id, &batch)),
                    ),
                    Err(e) => self.reply(&env.reply_to, session_error_reply(&env.request_id, &e)),
                }
            }
            Request::Ack(r) => match self.sessions.ack(id, &env.principal, r.up_to, now) {
                Ok(out) => {
                    if out.flow.can_fetch() {
                        self.go_on(id);
                    }
                    self.commit_to_group(id, &out.positions);
                    self.reply(
                        &env.reply_to,
                        Reply::ok(&env.request_id, &AckResponse::from_outcome(id, &out)),
                    );
                }
                Err(e) => self.reply(&env.reply_to, session_error_reply(&env.request_id, &e)),
            },
            Request::Write(r) => {
                let events = match r.to_events() {
                    Ok(ev) => ev,
                    Err(e) => {
                        self.reply(&env.reply_to, error_reply(&env.request_id, &e));
                        return;
                    }
                };
                match self.sessions.write(id, &env.principal, events, now) {
                    Ok(out) => {
                        for p in out.produce {
                            self.produce(id, p);
                        }
                        let results = out
                            .results
                            .iter()
                            .map(WriteResultOut::from_result)
                            .collect();
                        self.parked_writes.entry(id).or_default().push(ParkedWrite {
                            request_id: env.request_id.clone(),
                            reply_to: env.reply_to.clone(),
                            principal: env.principal.clone(),
                            results,
                            deadline: Instant::now() + self.cfg.write_wait,
                        });
                        self.answer_writes(id, false);
                    }
                    Err(e) => self.reply(&env.reply_to, session_error_reply(&env.request_id, &e)),
                }
            }
            Request::WriteStatus(r) => {
                match self.sessions.write_status(id, &env.principal, &r.ids, now) {
                    Ok(st) => self.reply(
                        &env.reply_to,
                        Reply::ok(
                            &env.request_id,
                            &WriteResponse::from_statuses(id, &r.ids, &st),
                        ),
                    ),
                    Err(e) => self.reply(&env.reply_to, session_error_reply(&env.request_id, &e)),
                }
            }
            Request::Dispose(_) => match self.sessions.dispose(id, &env.principal, now) {
                Ok(closed) => {
                    self.forget(id);
                    self.reply(
                        &env.reply_to,
                        Reply::ok(&env.request_id, &DisposeResponse::from_closed(&closed)),
                    );
                }
                Err(e) => self.reply(&env.reply_to, session_error_reply(&env.request_id, &e)),
            },
        }
    }

    fn allocate(&mut self, env: Envelope, partitions: i32) {
        let Request::Allocate(r) = &env.request else {
            return;
        };
        let r: AllocateRequest = r.clone();
        let spec = r.to_spec();
        match &spec.selector {
            Selector::Partition(p) if *p >= partitions => {
                let body = custom_error(
                    404,
                    "partition_not_found",
                    format!(
                        "field \"partition\": topic {} has {partitions} partitions (0 to {}); {p} does not exist",
                        r.topic,
                        partitions - 1
                    ),
                );
                self.reply(&env.reply_to, Reply::error(&env.request_id, body));
                return;
            }
            _ => {}
        }
        let now = now_ms(self.origin);
        let mode = spec.mode;
        let selector = spec.selector.clone();
        let spec_start_latest = spec.start == StartFrom::Latest;
        match self
            .sessions
            .allocate(env.session_id, &env.principal, spec, now)
        {
            Ok(a) => {
                self.stats
                    .sessions
                    .store(self.sessions.len() as u64, Ordering::Relaxed);
                if mode.can_read() {
                    let reading = match selector {
                        Selector::Partition(p) => Reading::Partitions(vec![p]),
                        Selector::AllPartitions => Reading::Partitions((0..partitions).collect()),
                        Selector::Group(g) => Reading::Group(g),
                    };
                    let latest = spec_start_latest;
                    self.spawn_reader(a.id, r.topic.clone(), reading, latest);
                }
                let resp = AllocateResponse::new(&r, &a, self.cfg.sessions.idle_timeout_ms);
                self.reply(&env.reply_to, Reply::ok(&env.request_id, &resp));
            }
            Err(e) => self.reply(&env.reply_to, session_error_reply(&env.request_id, &e)),
        }
    }

    fn look_up_topic(&self, topic: String) {
        let producer = self.producer.clone();
        let tx = self.tx.clone();
        let create = self.cfg.create_topics;
        let partitions = self.cfg.topic_partitions;
        let admin_cfg = kafka_config(&self.cfg);
        let brokers = self.cfg.kafka_brokers.clone();
        tokio::spawn(async move {
            let result = topic_partitions(&producer, &topic, &brokers).await;
            let result = match result {
                Ok(Some(n)) => Ok(n),
                Ok(None) if create => {
                    match create_topic(&admin_cfg, &topic, partitions).await {
                        Ok(()) => {
                            // Wait for the metadata to show it.
                            let mut n = Ok(partitions);
                            for _ in 0..50 {
                                match topic_partitions(&producer, &topic, &brokers).await {
                                    Ok(Some(k)) => {
                                        n = Ok(k);
                                        break;
                                    }
                                    Ok(None) => {
                                        tokio::time::sleep(Duration::from_millis(100)).await
                                    }
                                    Err(e) => {
                                        n = Err(e);
                                        break;
                                    }
                                }
                            }
                            n
                        }
                        Err(e) => Err(e),
                    }
                }
                Ok(None) => Err(custom_error(
                    404,
                    "topic_not_found",
                    format!("field \"topic\": topic {topic} does not exist in Kafka"),
                )),
                Err(e) => Err(e),
            };
            let _ = tx.send(Ev::TopicInfo { topic, result }).await;
        });
    }

    fn spawn_reader(&mut self, session: SessionId, topic: String, reading: Reading, latest: bool) {
        let mut config = consumer_config(&self.cfg);
        if let Reading::Group(g) = &reading {
            config.set("group.id", g).set(
                "auto.offset.reset",
                if latest { "latest" } else { "earliest" },
            );
        }
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let consumer: ReaderConsumer = match config.create_with_context(ReaderContext {
            changes: changes_tx,
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a kafka consumer");
                return;
            }
        };
        let consumer = Arc::new(consumer);
        let (go_tx, go_rx) = mpsc::channel(1);
        self.readers.insert(
            session,
            ReaderHandle {
                go: go_tx,
                waiting: false,
                group: matches!(reading, Reading::Group(_)).then(|| Arc::clone(&consumer)),
            },
        );
        let io = ReaderIo {
            session,
            topic,
            keyring: Arc::clone(&self.cfg.keyring),
            tx: self.tx.clone(),
            stats: Arc::clone(&self.stats),
        };
        tokio::spawn(async move {
            let tx = io.tx.clone();
            if let Err(error) = reader(io, consumer, reading, go_rx, changes_rx).await {
                let _ = tx.send(Ev::ReaderFailed { session, error }).await;
            }
        });
    }

    /// Commits a group session's acked positions to its consumer group.
    fn commit_to_group(&self, session: SessionId, positions: &super::offset_token::Positions) {
        let Some(consumer) = self.readers.get(&session).and_then(|h| h.group.clone()) else {
            return;
        };
        let Some(topic) = self.sessions.get(&session).map(|s| s.topic().to_owned()) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (p, at) in positions {
            let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(*at));
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async) {
                tracing::debug!(%session, error = %e, "commit to the group failed");
            }
        }
    }

    /// The session's reader waited for room; there is room again.
    fn go_on(&mut self, session: SessionId) {
        if let Some(h) = self.readers.get_mut(&session) {
            if h.waiting {
                h.waiting = false;
                let _ = h.go.try_send(());
            }
        }
    }

    fn produce(&mut self, session: SessionId, p: ProduceRequest) {
        let value = if self.cfg.keyring.is_encrypted(&p.topic) {
            match self.cfg.keyring.seal(&p.topic, &p.value) {
                Ok(v) => v,
                Err(e) => {
                    let _ = self
                        .sessions
                        .write_failed(session, &p.write_id, &e.to_string());
                    return;
                }
            }
        } else {
            p.value
        };
        let spooled = SpooledWrite {
            topic: p.topic.clone(),
            write_id: p.write_id.clone(),
            partition: p.partition,
            key_base64: p.key.as_ref().map(|k| b64().encode(k)),
            value_base64: b64().encode(&value),
        };
        match send(
            &self.producer,
            &p.topic,
            &p.write_id,
            p.partition,
            p.key.as_deref(),
            &value,
        ) {
            Ok(fut) => {
                self.inflight.insert((session, p.write_id.clone()), spooled);
                let tx = self.tx.clone();
                let write_id = p.write_id;
                tokio::spawn(async move {
                    let result = match fut.await {
                        Ok(Ok(d)) => Ok((d.partition, d.offset)),
                        Ok(Err((e, _))) => Err(format!("kafka refused it: {e}")),
                        Err(_) => Err("the producer went away".to_owned()),
                    };
                    let _ = tx
                        .send(Ev::Produced {
                            session,
                            write_id,
                            result,
                        })
                        .await;
                });
            }
            Err(e) => {
                self.stats.produce_failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.sessions.write_failed(session, &p.write_id, &e);
            }
        }
    }

    /// Answers the session's parked writes whose events are all resolved
    /// (or all of them, `force`).
    fn answer_writes(&mut self, session: SessionId, force: bool) {
        let Some(parked) = self.parked_writes.remove(&session) else {
            return;
        };
        let now = now_ms(self.origin);
        let mut keep = Vec::new();
        let expired_now = Instant::now();
        for mut w in parked {
            let ids: Vec<String> = w.results.iter().map(|r| r.id.clone()).collect();
            let statuses = match self.sessions.write_status(session, &w.principal, &ids, now) {
                Ok(s) => s,
                Err(e) => {
                    self.reply(&w.reply_to, session_error_reply(&w.request_id, &e));
                    continue;
                }
            };
            let done = statuses.iter().all(|s| !matches!(s, WriteStatus::Pending));
            if done || force || expired_now >= w.deadline {
                for (r, s) in w.results.iter_mut().zip(&statuses) {
                    let dup = r.duplicate;
                    *r = WriteResultOut::new(&r.id, s, dup);
                }
                let resp = WriteResponse {
                    session_id: session.to_string(),
                    results: w.results,
                };
                self.reply(&w.reply_to, Reply::ok(&w.request_id, &resp));
            } else {
                keep.push(w);
            }
        }
        if !keep.is_empty() {
            self.parked_writes.insert(session, keep);
        }
    }

    fn wake_read(&mut self, session: SessionId) {
        if let Some(p) = self.parked_reads.remove(&session) {
            self.answer_read(session, p);
        }
    }

    fn answer_read(&mut self, session: SessionId, p: ParkedRead) {
        let now = now_ms(self.origin);
        match self.sessions.read(session, &p.principal, p.params, now) {
            Ok(batch) => self.reply(
                &p.reply_to,
                Reply::ok(&p.request_id, &ReadResponse::from_batch(session, &batch)),
            ),
            Err(e) => self.reply(&p.reply_to, session_error_reply(&p.request_id, &e)),
        }
    }

    fn expire_parked(&mut self, now: Instant) {
        let due: Vec<SessionId> = self
            .parked_reads
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.parked_reads.remove(&id) {
                self.answer_read(id, p);
            }
        }
        let due: Vec<SessionId> = self
            .parked_writes
            .iter()
            .filter(|(_, ws)| ws.iter().any(|w| w.deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.answer_writes(id, false);
        }
    }

    /// Drops what the shell holds for a closed session.
    fn forget(&mut self, id: SessionId) {
        self.readers.remove(&id);
        if let Some(p) = self.parked_reads.remove(&id) {
            let e = SessionError::UnknownSession { id };
            self.reply(&p.reply_to, session_error_reply(&p.request_id, &e));
        }
        if self.parked_writes.contains_key(&id) {
            // Answer with what is known; the writes go on in the producer.
            let parked = self.parked_writes.remove(&id).unwrap_or_default();
            for w in parked {
                let resp = WriteResponse {
                    session_id: id.to_string(),
                    results: w.results,
                };
                self.reply(&w.reply_to, Reply::ok(&w.request_id, &resp));
            }
        }
        self.stats
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    async fn tick(&mut self) {
        let now = now_ms(self.origin);
        for closed in self.sessions.expire_idle(now) {
            tracing::info!(session = %closed.id, "session expired");
            self.forget(closed.id);
        }
        let timeout = self.cfg.member_timeout;
        let before = self.members.len();
        self.members.retain(|_, seen| seen.elapsed() < timeout);
        if self.members.len() != before {
            self.rebalance().await;
        }
        if !self.stats.ready.load(Ordering::SeqCst) && self.started.elapsed() >= timeout {
            // The membership is known now: take shards.
            self.stats.ready.store(true, Ordering::SeqCst);
            self.rebalance().await;
        }
        if !self.conn.status().connected() {
            tracing::error!(
                "lost the rabbitmq connection; stopping (the framework relaunches the backend)"
            );
            let _ = self.tx.try_send(Ev::Shutdown);
        }
    }

    /// Recomputes the ring from the live members and consumes exactly this
    /// backend's shards.
    async fn rebalance(&mut self) {
        if !self.stats.ready.load(Ordering::SeqCst) {
            return;
        }
        let mut set: BTreeSet<BackendId> = self
            .members
            .keys()
            .filter_map(|m| BackendId::new(m.clone()).ok())
            .collect();
        if !self.leaving.load(Ordering::SeqCst) {
            set.insert(self.me.clone());
        } else {
            set.remove(&self.me);
        }
        let moved = self.ring.set_backends(set);
        if !moved.is_empty() {
            self.stats
                .shards_moved
                .fetch_add(moved.len() as u64, Ordering::Relaxed);
        }
        let want: HashSet<ShardId> = self.ring.shards_of(&self.me).into_iter().collect();
        let release: HashSet<ShardId> = self
            .consuming
            .keys()
            .filter(|s| !want.contains(s))
            .copied()
            .collect();
        for s in &release {
            if let Some(tag) = self.consuming.remove(s) {
                let _ = self
                    .ch
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await;
            }
        }
        if !release.is_empty() {
            let closed = self
                .sessions
                .close_shards(&release, self.cfg.topology.shards);
            for c in &closed {
                self.forget(c.id);
            }
            tracing::info!(
                released = release.len(),
                sessions_closed = closed.len(),
                "released shards"
            );
        }
        let mut acquired = 0;
        for s in want {
            if self.consuming.contains_key(&s) {
                continue;
            }
            match self.consume_shard(s).await {
                Ok(tag) => {
                    self.consuming.insert(s, tag);
                    acquired += 1;
                }
                Err(e) => {
                    tracing::error!(shard = %s, error = %e, "cannot consume the shard's queue")
                }
            }
        }
        if acquired > 0 || !release.is_empty() {
            tracing::info!(
                acquired,
                owned = self.consuming.len(),
                members = self.ring.backends().count(),
                "shards rebalanced"
            );
        }
        let mut shards: Vec<u32> = self.consuming.keys().map(|s| s.0).collect();
        shards.sort_unstable();
        let members: Vec<String> = self.ring.backends().map(|b| b.to_string()).collect();
        if let Ok(mut v) = self.stats.view.lock() {
            *v = (shards, members);
        }
    }

    async fn consume_shard(&self, s: ShardId) -> Result<ShortString, lapin::Error> {
        let queue = self.cfg.topology.shard_queue(s);
        let tag = format!("{}-{}", self.me, s.0);
        let mut consumer = self
            .ch
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(tag.clone()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let data = d.data.clone();
                let _ = d.ack(BasicAckOptions::default()).await;
                if tx.send(Ev::Delivery(data)).await.is_err() {
                    return;
                }
            }
        });
        Ok(ShortString::from(tag))
    }

    async fn shutdown(mut self, mut rx: mpsc::Receiver<Ev>) -> Result<(), BackendError> {
        tracing::info!("draining: leaving the ring, closing sessions, flushing writes");
        self.stats.draining.store(true, Ordering::SeqCst);
        self.sessions.drain();
        self.leaving.store(true, Ordering::SeqCst);
        // Announce leaving now (the heartbeat task also does on its next beat).
        let hb = Heartbeat {
            backend: self.cfg.id.clone(),
            leaving: true,
        };
        let _ = self
            .reply_ch
            .basic_publish(
                ShortString::from(self.cfg.topology.members_exchange()),
                ShortString::from(""),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&hb).unwrap_or_default(),
                BasicProperties::default(),
            )
            .await;
        for (_, tag) in std::mem::take(&mut self.consuming) {
            let _ = self
                .ch
                .basic_cancel(tag, BasicCancelOptions::default())
                .await;
        }
        let closed = self.sessions.close_all();
        for c in &closed {
            self.forget(c.id);
        }
        // Wait for Kafka's answers to what is in flight.
        let deadline = Instant::now() + self.cfg.flush_timeout;
        while !self.inflight.is_empty() && Instant::now() < deadline {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(Ev::Produced {
                    session,
                    write_id,
                    result,
                })) => {
                    if result.is_ok() {
                        self.inflight.remove(&(session, write_id));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let left: Vec<SpooledWrite> = self.inflight.drain().map(|(_, w)| w).collect();
        if !left.is_empty() {
            let path = self.cfg.spool_dir.join(format!(
                "pending-{}.jsonl",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
            ));
            write_spool(&path, &left)?;
            self.stats
                .spooled
                .fetch_add(left.len() as u64, Ordering::Relaxed);
            tracing::warn!(writes = left.len(), path = %path.display(), "kafka did not take every write in time; spooled them for the next start");
        }
        let _ = self.conn.close(200, "shutdown".into()).await;
        tracing::info!(sessions_closed = closed.len(), "backend stopped");
        Ok(())
    }
}

/// What a reader reports to.
struct ReaderIo {
    session: SessionId,
    topic: String,
    keyring: Arc<Keyring>,
    tx: mpsc::Sender<Ev>,
    stats: Arc<Stats>,
}

impl ReaderIo {
    /// Asks the actor where partitions start (`(p, low, high, committed)`
    /// in); `None` when the actor is gone.
    async fn starts(&self, parts: Vec<(i32, i64, i64, Option<i64>)>) -> Option<Vec<(i32, i64)>> {
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Ev::Assign {
                session: self.session,
                parts,
                reply: rtx,
            })
            .await
            .ok()?;
        rrx.await.ok()
    }
}

/// Low and high watermarks (and, for a group, the committed offset) of
/// `parts`.
async fn positions_of(
    consumer: &Arc<ReaderConsumer>,
    topic: &str,
    parts: Vec<i32>,
    group: bool,
) -> Result<Vec<(i32, i64, i64, Option<i64>)>, String> {
    let c = Arc::clone(consumer);
    let t = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let committed: std::collections::BTreeMap<i32, i64> = if group {
            let mut tpl = TopicPartitionList::new();
            for p in &parts {
                tpl.add_partition(&t, *p);
            }
            c.committed_offsets(tpl, Duration::from_secs(10))
                .map_err(|e| format!("committed offsets of {t}: {e}"))?
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        } else {
            Default::default()
        };
        parts
            .iter()
            .map(|&p| {
                c.fetch_watermarks(&t, p, Duration::from_secs(10))
                    .map(|(lo, hi)| (p, lo, hi, committed.get(&p).copied()))
                    .map_err(|e| format!("watermarks of {t}/{p}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn reader(
    io: ReaderIo,
    consumer: Arc<ReaderConsumer>,
    reading: Reading,
    mut go: mpsc::Receiver<()>,
    mut changes: mpsc::UnboundedReceiver<GroupChange>,
) -> Result<(), String> {
    let (session, topic) = (io.session, io.topic.clone());
    let group = match reading {
        Reading::Partitions(parts) => {
            // Watermarks, then where to start, then assign.
            let parts = positions_of(&consumer, &topic, parts, false).await?;
            let Some(starts) = io.starts(parts).await else {
                return Ok(());
            };
            let mut tpl = TopicPartitionList::new();
            for (p, at) in &starts {
                tpl.add_partition_offset(&topic, *p, Offset::Offset(*at))
                    .map_err(|e| e.to_string())?;
            }
            consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
            false
        }
        Reading::Group(_) => {
            consumer
                .subscribe(&[&topic])
                .map_err(|e| format!("subscribe: {e}"))?;
            true
        }
    };
    let mut held: Vec<Record> = Vec::new();
    loop {
        let records = if held.is_empty() {
            let msg = tokio::select! {
                m = consumer.recv() => m,
                g = go.recv() => match g {
                    // A stale go-ahead: keep fetching.
                    Some(()) => continue,
                    None => return Ok(()),
                },
                c = changes.recv(), if group => {
                    match c {
                        Some(GroupChange::Assigned(ps)) => {
                            // Start where the session's token says, else
                            // where the group committed.
                            let parts = positions_of(&consumer, &topic, ps, true).await?;
                            let committed: std::collections::BTreeMap<i32, Option<i64>> =
                                parts.iter().map(|(p, _, _, c)| (*p, *c)).collect();
                            let Some(starts) = io.starts(parts).await else {
                                return Ok(());
                            };
                            let seeks: Vec<(i32, i64)> = starts
                                .into_iter()
                                .filter(|(p, at)| committed.get(p).copied().flatten() != Some(*at))
                                .collect();
                            if !seeks.is_empty() {
                                let (c, t) = (Arc::clone(&consumer), topic.clone());
                                let _ = tokio::task::spawn_blocking(move || {
                                    for (p, at) in seeks {
                                        if let Err(e) = c.seek(&t, p, Offset::Offset(at), Duration::from_secs(5)) {
                                            tracing::warn!(partition = p, error = %e, "seek failed");
                                        }
                                    }
                                })
                                .await;
                            }
                        }
                        Some(GroupChange::Revoked(ps)) => {
                            let _ = io
                                .tx
                                .send(Ev::Revoke {
                                    session,
                                    partitions: ps,
                                })
                                .await;
                        }
                        None => return Ok(()),
                    }
                    continue;
                },
            };
            let mut batch = Vec::new();
            match msg {
                Ok(m) => batch.extend(to_record(&m, &topic, &io.keyring, &io.stats)),
                Err(e) => {
                    tracing::debug!(%session, error = %e, "kafka consumer error");
                    continue;
                }
            }
            // And what else is already fetched, without waiting.
            while batch.len() < READ_BATCH {
                match futures::FutureExt::now_or_never(consumer.recv()) {
                    Some(Ok(m)) => batch.extend(to_record(&m, &topic, &io.keyring, &io.stats)),
                    _ => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            batch
        } else {
            std::mem::take(&mut held)
        };
        let (vtx, vrx) = oneshot::channel();
        if io
            .tx
            .send(Ev::Fetched {
                session,
                records,
                reply: vtx,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
        match vrx.await {
            Ok(Verdict::Next) => {}
            Ok(Verdict::Wait) => {
                if go.recv().await.is_none() {
                    return Ok(());
                }
            }
            Ok(Verdict::Hold(rest)) => {
                held = rest;
                if go.recv().await.is_none() {
                    return Ok(());
                }
            }
            Ok(Verdict::Stop) | Err(_) => return Ok(()),
        }
    }
}

/// The most records a reader offers at once.
const READ_BATCH: usize = 500;

/// A fetched message as a record: its write id from the header, its value
/// decrypted for an encrypted topic (`None`, counted and logged, when it
/// cannot be).
fn to_record(
    msg: &rdkafka::message::BorrowedMessage<'_>,
    topic: &str,
    keyring: &Keyring,
    stats: &Stats,
) -> Option<Record> {
    let write_id = msg.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == WRITE_ID_HEADER)
            .and_then(|x| x.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    });
    let raw = msg.payload().unwrap_or_default();
    let value = if keyring.is_encrypted(topic) {
        match keyring.open(topic, raw) {
            Ok(v) => v,
            Err(e) => {
                stats.undecryptable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%topic, partition = msg.partition(), offset = msg.offset(), error = %e, "cannot decrypt an event; skipped");
                return None;
            }
        }
    } else {
        raw.to_vec()
    };
    Some(Record {
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp_ms: msg.timestamp().to_millis(),
        key: msg.key().map(<[u8]>::to_vec),
        value,
        write_id,
    })
}

/// Hands one write to the producer; `Err` when it cannot even be queued.
fn send(
    producer: &FutureProducer,
    topic: &str,
    write_id: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<rdkafka::producer::DeliveryFuture, String> {
    let headers = OwnedHeaders::new().insert(Header {
        key: WRITE_ID_HEADER,
        value: Some(write_id.as_bytes()),
    });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(value)
        .headers(headers);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer
        .send_result(record)
        .map_err(|(e, _)| format!("cannot queue the write: {e}; write the id again"))
}

/// The partition count of `topic`, `None` when it does not exist.
async fn topic_partitions(
    producer: &FutureProducer,
    topic: &str,
    brokers: &str,
) -> Result<Option<i32>, ErrorBody> {
    let p = producer.clone();
    let t = topic.to_owned();
    let md = tokio::task::spawn_blocking(move || {
        p.client()
            .fetch_metadata(Some(&t), Duration::from_secs(5))
            .map(|md| {
                md.topics()
                    .iter()
                    .find(|x| x.name() == t)
                    .map(|x| (x.error(), x.partitions().len() as i32))
            })
    })
    .await
    .map_err(|e| custom_error(503, "kafka_unavailable", e.to_string()))?;
    match md {
        Ok(Some((None, n))) if n > 0 => Ok(Some(n)),
        Ok(Some((None, _))) | Ok(None) => Ok(None),
        Ok(Some((Some(code), _))) => {
            let code = RDKafkaErrorCode::from(code);
            if matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            ) {
                Ok(None)
            } else {
                Err(custom_error(
                    503,
                    "kafka_unavailable",
                    format!("topic {topic}: {code}"),
                ))
            }
        }
        Err(e) => Err(custom_error(
            503,
            "kafka_unavailable",
            format!("kafka brokers {brokers} do not answer: {e}; retry"),
        )),
    }
}

async fn create_topic(cfg: &ClientConfig, topic: &str, partitions: i32) -> Result<(), ErrorBody> {
    let admin: AdminClient<DefaultClientContext> = cfg
        .create()
        .map_err(|e| custom_error(503, "kafka_unavailable", e.to_string()))?;
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&[new], &opts)
        .await
        .map_err(|e| custom_error(503, "kafka_unavailable", format!("create {topic}: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(custom_error(
                    503,
                    "kafka_unavailable",
                    format!("cannot create topic {t}: {code}"),
                ))
            }
        }
    }
    tracing::info!(%topic, partitions, "created a kafka topic");
    Ok(())
}

fn write_spool(path: &Path, writes: &[SpooledWrite]) -> Result<(), BackendError> {
    use std::io::Write as _;
    let err = |e: std::io::Error| BackendError::Spool {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    for w in writes {
        let line = serde_json::to_string(w).unwrap_or_default();
        writeln!(f, "{line}").map_err(err)?;
    }
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

/// Produces every spooled write (in file order) and removes the files once
/// Kafka has all of them.
async fn replay_spool(
    dir: &Path,
    producer: &FutureProducer,
    stats: &Stats,
) -> Result<(), BackendError> {
    let err = |p: &Path, e: String| BackendError::Spool {
        path: p.display().to_string(),
        message: e,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pending-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| err(&file, e.to_string()))?;
        let mut futures = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let w: SpooledWrite = serde_json::from_str(line)
                .map_err(|e| err(&file, format!("line {}: {e}", i + 1)))?;
            let key = match &w.key_base64 {
                Some(k) => Some(b64().decode(k).map_err(|e| err(&file, e.to_string()))?),
                None => None,
            };
            let value = b64()
                .decode(&w.value_base64)
                .map_err(|e| err(&file, e.to_string()))?;
            let fut = send(
                producer,
                &w.topic,
                &w.write_id,
                w.partition,
                key.as_deref(),
                &value,
            )
            .map_err(|e| err(&file, e))?;
            futures.push(fut);
        }
        let n = futures.len();
        for r in futures::future::join_all(futures).await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(err(&file, format!("kafka refused a spooled write: {e}")))
                }
                Err(_) => return Err(err(&file, "the producer went away".into())),
            }
        }
        std::fs::remove_file(&file).map_err(|e| err(&file, e.to_string()))?;
        stats.replayed.fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(writes = n, file = %file.display(), "replayed spooled writes into kafka");
    }
    Ok(())
}

fn redact(url: &str) -> String {
    crate::publisher::amqp::redact(url)
}

async fn health(State(stats): State<Arc<Stats>>) -> Response {
    let (shards, members) = stats.view.lock().map(|v| v.clone()).unwrap_or_default();
    let status = if stats.draining.load(Ordering::SeqCst) {
        "draining"
    } else if !stats.ready.load(Ordering::SeqCst) {
        "starting"
    } else {
        "ok"
    };
    let body = serde_json::json!({
        "status": status,
        "shards": shards,
        "members": members,
        "sessions": stats.sessions.load(Ordering::Relaxed),
        "pid": std::process::id(),
    });
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<Stats>>) -> Response {
    let shards = s.view.lock().map(|v| v.0.len()).unwrap_or(0);
    let lines = [
        (
            "corral_eventing_backend_requests_total",
            s.requests.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_bad_requests_total",
            s.bad_envelopes.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_sessions",
            s.sessions.load(Ordering::Relaxed),
        ),
        ("corral_eventing_backend_shards", shards as u64),
        (
            "corral_eventing_backend_fetched_total",
            s.fetched.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_undecryptable_total",
            s.undecryptable.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_produced_total",
            s.produced.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_produce_failed_total",
            s.produce_failed.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_spooled_total",
            s.spooled.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_replayed_total",
            s.replayed.load(Ordering::Relaxed),
        ),
        (
            "corral_eventing_backend_shards_moved_total",
            s.shards_moved.load(Ordering::Relaxed),
        ),
    ];
    let mut text = String::new();
    for (name, v) in lines {
        text.push_str(&format!("{name} {v}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

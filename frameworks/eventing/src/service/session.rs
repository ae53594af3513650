//! The session protocol: one state machine per API session, and the
//! bounded [`Sessions`] table a backend keeps.
//!
//! # The protocol
//!
//! * **allocate** a session on a topic — one partition, a consumer group, or
//!   all partitions ([`Selector`]) — for reading, writing or both ([`Mode`]),
//!   optionally from an offset token a previous session handed out.
//! * **read** a batch: buffered events are delivered and numbered with
//!   *delivery offsets* `1, 2, 3, …` (per session, across partitions). A read
//!   may pass `after` (the last delivery offset the client has seen) to get
//!   delivered-but-unacked events again, so retrying a read whose answer was
//!   lost is safe.
//! * **ack** up to a delivery offset: everything delivered up to it is done.
//!   Acking an offset that was never delivered is an error and changes
//!   nothing; acking an already-acked offset again is a no-op (retry-safe).
//!   The committed Kafka positions advance **only** here, and come back as
//!   an opaque, HMAC-protected [offset token](super::offset_token).
//! * **write** a batch of events, each with a client write id. Ids seen in a
//!   bounded window of recent writes are not written again: the answer
//!   reports the first write's status. A write is `pending` until the shell
//!   reports that Kafka has it ([`Sessions::write_acked`]), then `acked` with
//!   its partition and offset.
//! * **dispose** the session; its final token is returned (again, if the
//!   dispose is retried).
//!
//! Sessions idle for longer than [`SessionConfig::idle_timeout_ms`] expire
//! ([`Sessions::expire_idle`], time passed in). Requests to a disposed or
//! expired session are answered 410 with its last offset token.
//!
//! # Backpressure
//!
//! Read-ahead is bounded: a session holds at most
//! [`SessionConfig::read_ahead_events`] undelivered-or-unacked events (and
//! [`SessionConfig::read_ahead_bytes`]). The shell feeds fetched records with
//! [`Sessions::offer`] and follows the returned [`Flow`]: `Pause` means stop
//! fetching (pause the Kafka partitions) until an ack returns `Fetch` again.
//! Writes are bounded by the write buffer; a batch that does not fit is
//! refused whole with 429 ([`SessionError::WriteBufferFull`]).
//!
//! Every [`SessionError`] is a client error with a 4xx status; the errors the
//! shell itself can cause when feeding Kafka results are [`FeedError`]s.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use super::offset_token::{
    OffsetState, OffsetTokenCodec, OffsetTokenError, Positions, Selector, MAX_GROUP_LEN,
    MAX_TOKEN_PARTITIONS,
};
use super::ring::{shard_for, ShardId};
use super::{validate_topic, ClientError, Millis};

/// The longest client write id, in bytes.
pub const MAX_WRITE_ID_LEN: usize = 128;

/// Limits of the session table and of each session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The most sessions one table (one backend) holds.
    pub max_sessions: usize,
    /// A session with no client request for this long expires.
    pub idle_timeout_ms: Millis,
    /// The most events a session holds that are not yet acked (undelivered
    /// plus delivered-unacked).
    pub read_ahead_events: usize,
    /// The most bytes (keys plus values) those events may take.
    pub read_ahead_bytes: usize,
    /// The most events one read returns (and may ask for).
    pub max_read_events: usize,
    /// The most bytes one read returns (and may ask for); a single larger
    /// event is still returned alone.
    pub max_read_bytes: usize,
    /// The most events in one write batch.
    pub max_write_events: usize,
    /// The most bytes (keys plus values) in one write batch.
    pub max_write_bytes: usize,
    /// The most bytes (key plus value) of one event.
    pub max_event_bytes: usize,
    /// The most writes pending (not yet in Kafka) per session.
    pub write_buffer_events: usize,
    /// The most bytes of writes pending per session.
    pub write_buffer_bytes: usize,
    /// How many resolved write ids per session are remembered for
    /// de-duplication (pending ones always are).
    pub dedup_window: usize,
    /// How many closed (disposed or expired) session ids are remembered to
    /// answer 410 rather than 404.
    pub closed_memory: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_sessions: 10_000,
            idle_timeout_ms: 5 * 60 * 1000,
            read_ahead_events: 1_000,
            read_ahead_bytes: 16 << 20,
            max_read_events: 1_000,
            max_read_bytes: 4 << 20,
            max_write_events: 1_000,
            max_write_bytes: 4 << 20,
            max_event_bytes: 1 << 20,
            write_buffer_events: 10_000,
            write_buffer_bytes: 32 << 20,
            dedup_window: 10_000,
            closed_memory: 10_000,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session config: {0}")]
pub struct ConfigError(pub String);

impl SessionConfig {
    /// Checks that every limit is positive and that they fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_sessions", self.max_sessions),
            ("idle_timeout_ms", self.idle_timeout_ms as usize),
            ("read_ahead_events", self.read_ahead_events),
            ("read_ahead_bytes", self.read_ahead_bytes),
            ("max_read_events", self.max_read_events),
            ("max_read_bytes", self.max_read_bytes),
            ("max_write_events", self.max_write_events),
            ("max_write_bytes", self.max_write_bytes),
            ("max_event_bytes", self.max_event_bytes),
            ("write_buffer_events", self.write_buffer_events),
            ("write_buffer_bytes", self.write_buffer_bytes),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("{name} must be positive")));
        }
        if self.max_write_events > self.write_buffer_events
            || self.max_write_bytes > self.write_buffer_bytes
        {
            return Err(ConfigError(
                "a full write batch (max_write_events, max_write_bytes) must fit in the write buffer (write_buffer_events, write_buffer_bytes)".into(),
            ));
        }
        if self.max_event_bytes > self.max_write_bytes {
            return Err(ConfigError(
                "max_event_bytes must not exceed max_write_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// A session id: 128 bits, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Wraps 16 bytes (take them from a CSPRNG; see [`SessionId::random`]).
    pub fn from_bytes(bytes: [u8; 16]) -> SessionId {
        SessionId(bytes)
    }

    /// A fresh id from the operating system's random number generator.
    pub fn random() -> SessionId {
        use aes_gcm::aead::rand_core::RngCore as _;
        let mut b = [0u8; 16];
        aes_gcm::aead::OsRng.fill_bytes(&mut b);
        SessionId(b)
    }

    /// Parses 32 hex digits (either case); the error names `sessionId`.
    pub fn parse(text: &str) -> Result<SessionId, SessionError> {
        let bad = || SessionError::InvalidSessionId {
            value: text.chars().take(64).collect(),
        };
        if text.len() != 32 {
            return Err(bad());
        }
        let mut b = [0u8; 16];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).map_err(|_| bad())?;
            b[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(SessionId(b))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The shard the session belongs to: [`shard_for`] over the raw bytes.
    pub fn shard(&self, shards: u32) -> ShardId {
        shard_for(&self.0, shards)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// Deterministic session ids from a seed (SplitMix64), for tests and
/// simulations. Production ids come from [`SessionId::random`].
#[derive(Debug, Clone)]
pub struct SessionIdGen(u64);

impl SessionIdGen {
    /// A generator seeded with `seed`.
    pub fn from_seed(seed: u64) -> SessionIdGen {
        SessionIdGen(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next id.
    pub fn next_id(&mut self) -> SessionId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        SessionId(b)
    }
}

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Read and ack.
    Read,
    /// Write.
    Write,
    /// Both.
    ReadWrite,
}

impl Mode {
    /// Whether reads and acks are allowed.
    pub fn can_read(self) -> bool {
        matches!(self, Mode::Read | Mode::ReadWrite)
    }
    /// Whether writes are allowed.
    pub fn can_write(self) -> bool {
        matches!(self, Mode::Write | Mode::ReadWrite)
    }
}

/// Where a partition without a committed position starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartFrom {
    /// The oldest retained event (nothing is missed).
    #[default]
    Earliest,
    /// Only events written after the partition is assigned.
    Latest,
}

/// What a client asks for when allocating (validated by the wire layer,
/// checked again here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The topic.
    pub topic: String,
    /// Which partitions.
    pub selector: Selector,
    /// Read, write or both.
    pub mode: Mode,
    /// Where partitions the token does not cover start.
    pub start: StartFrom,
    /// A token from an earlier session on the same topic and selector.
    pub offset_token: Option<String>,
}

/// A record the shell fetched from Kafka (already decrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its Kafka offset.
    pub offset: i64,
    /// Its timestamp, ms since the Unix epoch, when Kafka has one.
    pub timestamp_ms: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Vec<u8>,
    /// The client write id it was written with through the service (the
    /// `corral-write-id` header), for readers to drop copies by.
    pub write_id: Option<String>,
}

impl Record {
    /// Bytes counted against limits: key plus value.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.len()
    }
}

/// A record delivered to the client with its delivery offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The delivery offset: what the client acks.
    pub seq: u64,
    /// The record.
    pub record: Record,
}

/// What the shell should do about fetching for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep fetching: there is room for this many more events and bytes.
    Fetch {
        /// Events that still fit.
        events: usize,
        /// Bytes that still fit.
        bytes: usize,
    },
    /// Stop fetching (pause the partitions) until an ack answers `Fetch`.
    Pause,
}

impl Flow {
    /// Whether the shell should fetch.
    pub fn can_fetch(self) -> bool {
        matches!(self, Flow::Fetch { .. })
    }
}

/// The answer to [`Sessions::offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Taken into the read-ahead buffer.
    Accepted(Flow),
    /// Already fetched or already acked (after a seek or a rebalance);
    /// ignored.
    Duplicate,
    /// No room: the record is handed back. Seek its partition back to its
    /// offset and pause fetching until an ack answers `Fetch`.
    Full(Record),
}

/// One event a client writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEvent {
    /// The client's write id, for de-duplication.
    pub id: String,
    /// The partition, or `None` to let the producer choose (the session's
    /// partition for a single-partition session).
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
}

impl WriteEvent {
    /// Bytes counted against limits: key plus value.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.len()
    }
}

/// A write the shell must hand to the Kafka producer (encrypting the value
/// first where the topic is encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// The session's topic.
    pub topic: String,
    /// The client's write id: report the result with it.
    pub write_id: String,
    /// The partition, or `None` for the producer's partitioner.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value (plaintext).
    pub value: Vec<u8>,
}

/// Where one write stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteStatus {
    /// Handed to the producer; Kafka has not confirmed it yet.
    Pending,
    /// In Kafka.
    Acked {
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// Kafka refused it; writing the same id again retries it.
    Failed {
        /// Why.
        reason: String,
    },
    /// Not known: never written in this session, or forgotten (outside the
    /// de-duplication window).
    Unknown,
}

/// The result of one event of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The write id.
    pub id: String,
    /// Its status after this request.
    pub status: WriteStatus,
    /// Whether the id was already known, so nothing new was written.
    pub duplicate: bool,
}

/// The answer to a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// One result per event, in request order.
    pub results: Vec<WriteResult>,
    /// What the shell must produce, in request order.
    pub produce: Vec<ProduceRequest>,
}

/// A pending write (for spooling on shutdown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    /// The write id.
    pub id: String,
    /// The partition asked for.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
}

/// The answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    /// The session id.
    pub id: SessionId,
    /// The committed positions the session starts from (from the token).
    /// The shell asks [`Sessions::assign_partition`] where to seek.
    pub positions: Positions,
    /// The session's current offset token.
    pub offset_token: String,
}

/// A batch delivered by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// The events, in delivery order.
    pub events: Vec<Delivered>,
    /// The highest delivery offset acked so far.
    pub acked: u64,
    /// The highest delivery offset delivered so far.
    pub last_delivered: u64,
    /// Whether more undelivered events are buffered.
    pub more: bool,
}

/// Read parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadParams {
    /// Deliver from after this delivery offset (re-delivering unacked
    /// events); `None` for new events only.
    pub after: Option<u64>,
    /// The most events; `None` for [`SessionConfig::max_read_events`].
    pub max_events: Option<usize>,
    /// The most bytes; `None` for [`SessionConfig::max_read_bytes`].
    pub max_bytes: Option<usize>,
}

/// The answer to an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOutcome {
    /// The highest delivery offset acked.
    pub acked: u64,
    /// The committed positions (commit them to the consumer group, if any).
    pub positions: Positions,
    /// The offset token for them.
    pub offset_token: String,
    /// Fetching may resume when this is `Fetch`.
    pub flow: Flow,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client disposed it.
    Disposed,
    /// It was idle too long.
    Expired,
    /// The backend is shutting down.
    Shutdown,
}

/// A session that ended: the shell closes its consumer, lets its producer
/// flush `pending_writes` (or spools them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The session.
    pub id: SessionId,
    /// Why it ended.
    pub reason: CloseReason,
    /// Its final offset token.
    pub offset_token: String,
    /// Writes still pending, in write order.
    pub pending_writes: Vec<PendingWrite>,
}

/// A request a client caused to fail. Every variant is a 4xx; see
/// [`ClientError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session id is not 32 hex digits.
    #[error("field \"sessionId\": {value:?} is not a session id (32 hex digits)")]
    InvalidSessionId {
        /// The value given (first 64 characters).
        value: String,
    },
    /// No such session here (never allocated, or forgotten long ago).
    #[error("session {id} does not exist")]
    UnknownSession {
        /// The session.
        id: SessionId,
    },
    /// The session expired after being idle.
    #[error("session {id} expired after being idle; allocate a new session from its offset token")]
    SessionExpired {
        /// The session.
        id: SessionId,
        /// Its last offset token.
        offset_token: String,
    },
    /// The session was disposed.
    #[error("session {id} was disposed")]
    SessionDisposed {
        /// The session.
        id: SessionId,
        /// Its final offset token.
        offset_token: String,
    },
    /// The session belongs to another principal.
    #[error("session {id} belongs to another principal")]
    NotOwner {
        /// The session.
        id: SessionId,
    },
    /// The session was not allocated for this operation.
    #[error("session {id} was allocated with mode {mode:?}, which does not allow {operation}")]
    WrongMode {
        /// The session.
        id: SessionId,
        /// Its mode.
        mode: Mode,
        /// `"read"`, `"ack"` or `"write"`.
        operation: &'static str,
    },
    /// This backend is shutting down and takes no new sessions.
    #[error("this backend is shutting down and takes no new sessions; retry the allocation")]
    Draining,
    /// The session table is full.
    #[error("too many sessions (at most {limit}); dispose unused sessions or retry later")]
    TooManySessions {
        /// The limit.
        limit: usize,
    },
    /// The id is already taken.
    #[error("session {id} already exists")]
    SessionIdInUse {
        /// The session.
        id: SessionId,
    },
    /// A field has an invalid value.
    #[error("field {field:?}: {message}")]
    InvalidField {
        /// The field, as named on the wire (`topic`, `events[2].id`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The offset token cannot be used.
    #[error("{0}")]
    InvalidOffsetToken(OffsetTokenError),
    /// The offset token is for another topic or selector.
    #[error("field \"offsetToken\" is for {field} {token}, but the request asks for {request}")]
    TokenMismatch {
        /// `topic` or `selector`.
        field: &'static str,
        /// What the token says.
        token: String,
        /// What the request says.
        request: String,
    },
    /// An ack of a delivery offset that was never delivered.
    #[error("field \"upTo\": delivery offset {up_to} was never delivered (last delivered: {last_delivered})")]
    AckBeyondDelivered {
        /// The offset asked.
        up_to: u64,
        /// The last delivered.
        last_delivered: u64,
    },
    /// A read `after` a delivery offset that was never delivered.
    #[error("field \"after\": delivery offset {after} was never delivered (last delivered: {last_delivered})")]
    ReadAfterUndelivered {
        /// The offset asked.
        after: u64,
        /// The last delivered.
        last_delivered: u64,
    },
    /// A read asks for more than allowed, or for nothing.
    #[error("field {field:?}: {value} is out of range 1..={limit}")]
    ReadLimitOutOfRange {
        /// `maxEvents` or `maxBytes`.
        field: &'static str,
        /// The value asked.
        value: usize,
        /// The limit.
        limit: usize,
    },
    /// A write batch, or one event of it, is too large.
    #[error("field {field:?}: {value} exceeds the limit of {limit}")]
    TooLarge {
        /// `events` (count), `events (bytes)`, or `events[i]` (bytes).
        field: String,
        /// The size.
        value: usize,
        /// The limit.
        limit: usize,
    },
    /// Two events of one batch share a write id.
    #[error("field \"events[{index}].id\": write id {id:?} is also used by events[{first}]")]
    DuplicateWriteId {
        /// The second use.
        index: usize,
        /// The first use.
        first: usize,
        /// The id.
        id: String,
    },
    /// The write buffer cannot take the batch now.
    #[error("the session's write buffer is full ({pending_events} writes, {pending_bytes} bytes pending; limits {limit_events} and {limit_bytes}); retry once pending writes are acked")]
    WriteBufferFull {
        /// Writes pending.
        pending_events: usize,
        /// Bytes pending.
        pending_bytes: usize,
        /// The events limit.
        limit_events: usize,
        /// The bytes limit.
        limit_bytes: usize,
    },
}

impl ClientError for SessionError {
    fn status(&self) -> u16 {
        use SessionError::*;
        match self {
            InvalidSessionId { .. }
            | InvalidField { .. }
            | InvalidOffsetToken(_)
            | TokenMismatch { .. }
            | AckBeyondDelivered { .. }
            | ReadAfterUndelivered { .. }
            | ReadLimitOutOfRange { .. }
            | DuplicateWriteId { .. } => 400,
            NotOwner { .. } => 403,
            UnknownSession { .. } => 404,
            WrongMode { .. } | SessionIdInUse { .. } => 409,
            SessionExpired { .. } | SessionDisposed { .. } => 410,
            TooLarge { .. } => 413,
            Draining => 421,
            TooManySessions { .. } | WriteBufferFull { .. } => 429,
        }
    }

    fn code(&self) -> &'static str {
        use SessionError::*;
        match self {
            InvalidSessionId { .. } => "invalid_session_id",
            UnknownSession { .. } => "unknown_session",
            SessionExpired { .. } => "session_expired",
            SessionDisposed { .. } => "session_disposed",
            NotOwner { .. } => "not_session_owner",
            WrongMode { .. } => "wrong_session_mode",
            Draining => "backend_draining",
            TooManySessions { .. } => "too_many_sessions",
            SessionIdInUse { .. } => "session_id_in_use",
            InvalidField { .. } => "invalid_field",
            InvalidOffsetToken(_) => "invalid_offset_token",
            TokenMismatch { .. } => "offset_token_mismatch",
            AckBeyondDelivered { .. } => "ack_beyond_delivered",
            ReadAfterUndelivered { .. } => "read_after_undelivered",
            ReadLimitOutOfRange { .. } => "read_limit_out_of_range",
            TooLarge { .. } => "too_large",
            DuplicateWriteId { .. } => "duplicate_write_id",
            WriteBufferFull { .. } => "write_buffer_full",
        }
    }
}

/// A mistake of the shell's when feeding Kafka results (never the client's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The session is gone (disposed or expired meanwhile): drop the result.
    #[error("session {0} does not exist")]
    UnknownSession(SessionId),
    /// The partition is not one the session reads.
    #[error("session {id} does not read partition {partition}")]
    WrongPartition {
        /// The session.
        id: SessionId,
        /// The partition.
        partition: i32,
    },
    /// The write id is not pending in the session.
    #[error("session {id} has no pending write {write_id:?}")]
    UnknownWrite {
        /// The session.
        id: SessionId,
        /// The write id.
        write_id: String,
    },
}

#[derive(Debug, Clone)]
enum IdState {
    Pending(u64),
    Acked { partition: i32, offset: i64 },
    Failed { reason: String },
}

/// One session's state.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    owner: String,
    topic: String,
    selector: Selector,
    mode: Mode,
    start: StartFrom,
    last_active: Millis,
    // Reading.
    positions: Positions,
    fetched: BTreeMap<i32, i64>,
    undelivered: VecDeque<Record>,
    delivered: VecDeque<Delivered>,
    next_seq: u64,
    acked_seq: u64,
    held_bytes: usize,
    // Writing.
    pending: BTreeMap<u64, PendingWrite>,
    pending_bytes: usize,
    next_write: u64,
    ids: HashMap<String, IdState>,
    resolved: VecDeque<String>,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }
    /// The principal that allocated it.
    pub fn owner(&self) -> &str {
        &self.owner
    }
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Which partitions it reads.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }
    /// Its mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Where partitions without a position start.
    pub fn start(&self) -> StartFrom {
        self.start
    }
    /// When a client last used it.
    pub fn last_active(&self) -> Millis {
        self.last_active
    }
    /// The committed positions.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }
    /// The highest delivery offset acked.
    pub fn acked(&self) -> u64 {
        self.acked_seq
    }
    /// The highest delivery offset delivered.
    pub fn last_delivered(&self) -> u64 {
        self.next_seq - 1
    }
    /// Events held (undelivered plus delivered-unacked).
    pub fn held_events(&self) -> usize {
        self.undelivered.len() + self.delivered.len()
    }
    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
    /// Writes pending.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }
    /// Pending writes, in write order.
    pub fn pending(&self) -> impl Iterator<Item = &PendingWrite> {
        self.pending.values()
    }

    fn reads_partition(&self, p: i32) -> bool {
        p >= 0
            && match self.selector {
                Selector::Partition(q) => p == q,
                _ => true,
            }
    }

    fn flow(&self, cfg: &SessionConfig) -> Flow {
        let events = cfg.read_ahead_events.saturating_sub(self.held_events());
        let bytes = cfg.read_ahead_bytes.saturating_sub(self.held_bytes);
        if events == 0 || bytes == 0 {
            Flow::Pause
        } else {
            Flow::Fetch { events, bytes }
        }
    }

    fn state(&self) -> OffsetState {
        OffsetState {
            topic: self.topic.clone(),
            selector: self.selector.clone(),
            positions: self.positions.clone(),
        }
    }

    fn status_of(&self, id: &str) -> WriteStatus {
        match self.ids.get(id) {
            None => WriteStatus::Unknown,
            Some(IdState::Pending(_)) => WriteStatus::Pending,
            Some(IdState::Acked { partition, offset }) => WriteStatus::Acked {
                partition: *partition,
                offset: *offset,
            },
            Some(IdState::Failed { reason }) => WriteStatus::Failed {
                reason: reason.clone(),
            },
        }
    }

    fn resolve(&mut self, write_id: &str, state: IdState, window: usize) -> Option<PendingWrite> {
        let Some(IdState::Pending(n)) = self.ids.get(write_id) else {
            return None;
        };
        let n = *n;
        let w = self.pending.remove(&n).expect("pending id has an entry");
        self.pending_bytes -= w.key.as_ref().map_or(0, Vec::len) + w.value.len();
        self.ids.insert(write_id.to_owned(), state);
        self.resolved.push_back(write_id.to_owned());
        while self.resolved.len() > window {
            if let Some(old) = self.resolved.pop_front() {
                // Only forget it if it is still resolved (a failed id may have
                // been written again and be pending now).
                if !matches!(self.ids.get(&old), Some(IdState::Pending(_))) {
                    self.ids.remove(&old);
                }
            }
        }
        Some(w)
    }
}

#[derive(Debug, Clone)]
struct Tombstone {
    owner: String,
    reason: CloseReason,
    offset_token: String,
}

/// The sessions of one backend: bounded, with idle expiry.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    codec: OffsetTokenCodec,
    sessions: HashMap<SessionId, Session>,
    closed: HashMap<SessionId, Tombstone>,
    closed_order: VecDeque<SessionId>,
    draining: bool,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SessionError {
    SessionError::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks a client write id: 1 to [`MAX_WRITE_ID_LEN`] bytes without control
/// characters. The error message does not name the field.
pub fn check_write_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("write id must not be empty".into());
    }
    if id.len() > MAX_WRITE_ID_LEN {
        return Err(format!(
            "write id is {} bytes long, at most {MAX_WRITE_ID_LEN} are allowed",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("write id must not contain control characters".into());
    }
    Ok(())
}

/// Checks a consumer group name: 1 to 255 bytes without control characters.
pub fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > MAX_GROUP_LEN || group.chars().any(char::is_control) {
        return Err(format!(
            "consumer group must be 1 to {MAX_GROUP_LEN} bytes without control characters"
        ));
    }
    Ok(())
}

impl Sessions {
    /// An empty table.
    pub fn new(config: SessionConfig, codec: OffsetTokenCodec) -> Result<Sessions, ConfigError> {
        config.validate()?;
        Ok(Sessions {
            config,
            codec,
            sessions: HashMap::new(),
            closed: HashMap::new(),
            closed_order: VecDeque::new(),
            draining: false,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The token codec.
    pub fn codec(&self) -> &OffsetTokenCodec {
        &self.codec
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A session, for inspection.
    pub fn get(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// The open sessions' ids.
    pub fn ids(&self) -> impl Iterator<Item = &SessionId> {
        self.sessions.keys()
    }

    /// Stops taking new sessions (graceful shutdown); existing sessions go on.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether [`Sessions::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// All pending writes of all sessions (to flush or spool on shutdown).
    pub fn pending_writes(&self) -> impl Iterator<Item = (SessionId, &PendingWrite)> {
        self.sessions
            .values()
            .flat_map(|s| s.pending.values().map(move |w| (s.id, w)))
    }

    /// How many writes are pending across all sessions.
    pub fn pending_write_count(&self) -> usize {
        self.sessions.values().map(|s| s.pending.len()).sum()
    }

    fn gone(&self, id: SessionId) -> SessionError {
        match self.closed.get(&id) {
            Some(t) if t.reason == CloseReason::Disposed => SessionError::SessionDisposed {
                id,
                offset_token: t.offset_token.clone(),
            },
            Some(t) => SessionError::SessionExpired {
                id,
                offset_token: t.offset_token.clone(),
            },
            None => SessionError::UnknownSession { id },
        }
    }

    /// Looks a session up for a client request: it must exist and belong to
    /// `owner`; the request counts as activity.
    fn client(
        &mut self,
        id: SessionId,
        owner: &str,
        now: Millis,
    ) -> Result<&mut Session, SessionError> {
        if !self.sessions.contains_key(&id) {
            return Err(match self.closed.get(&id) {
                Some(t) if t.owner != owner => SessionError::NotOwner { id },
                _ => self.gone(id),
            });
        }
        let s = self.sessions.get_mut(&id).expect("checked");
        if s.owner != owner {
            return Err(SessionError::NotOwner { id });
        }
        s.last_active = s.last_active.max(now);
        Ok(s)
    }

    /// Allocates a session `id` for `owner` (the authenticated principal's
    /// name; the API tier has already authorized the mode on the topic).
    pub fn allocate(
        &mut self,
        id: SessionId,
        owner: &str,
        spec: SessionSpec,
        now: Millis,
    ) -> Result<Allocated, SessionError> {
        if self.draining {
            return Err(SessionError::Draining);
        }
        validate_topic(&spec.topic).map_err(|e| invalid("topic", e.to_string()))?;
        match &spec.selector {
            Selector::Partition(p) if *p < 0 => {
                return Err(invalid("partition", format!("{p} is negative")))
            }
            Selector::Group(g) => check_group(g).map_err(|m| invalid("group", m))?,
            _ => {}
        }
        let mut positions = Positions::new();
        if let Some(token) = &spec.offset_token {
            let state = self
                .codec
                .decode(token)
                .map_err(SessionError::InvalidOffsetToken)?;
            if state.topic != spec.topic {
                return Err(SessionError::TokenMismatch {
                    field: "topic",
                    token: format!("{:?}", state.topic),
                    request: format!("topic {:?}", spec.topic),
                });
            }
            if state.selector != spec.selector {
                return Err(SessionError::TokenMismatch {
                    field: "selector",
                    token: state.selector.to_string(),
                    request: spec.selector.to_string(),
                });
            }
            positions = state.positions;
        }
        if self.sessions.contains_key(&id) || self.closed.contains_key(&id) {
            return Err(SessionError::SessionIdInUse { id });
        }
        if self.sessions.len() >= self.config.max_sessions {
            return Err(SessionError::TooManySessions {
                limit: self.config.max_sessions,
            });
        }
        let session = Session {
            id,
            owner: owner.to_owned(),
            topic: spec.topic,
            selector: spec.selector,
            mode: spec.mode,
            start: spec.start,
            last_active: now,
            positions: positions.clone(),
            fetched: BTreeMap::new(),
            undelivered: VecDeque::new(),
            delivered: VecDeque::new(),
            next_seq: 1,
            acked_seq: 0,
            held_bytes: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            next_write: 0,
            ids: HashMap::new(),
            resolved: VecDeque::new(),
        };
        let offset_token = self.codec.encode(&session.state());
        self.sessions.insert(id, session);
        Ok(Allocated {
            id,
            positions,
            offset_token,
        })
    }

    /// Reads a batch (see the module docs for `after`).
    pub fn read(
        &mut self,
        id: SessionId,
        owner: &str,
        params: ReadParams,
        now: Millis,
    ) -> Result<ReadBatch, SessionError> {
        let (max_read_events, max_read_bytes) =
            (self.config.max_read_events, self.config.max_read_bytes);
        let s = self.client(id, owner, now)?;
        if !s.mode.can_read() {
            return Err(SessionError::WrongMode {
                id,
                mode: s.mode,
                operation: "read",
            });
        }
        let max_events = params.max_events.unwrap_or(max_read_events);
        if max_events == 0 || max_events > max_read_events {
            return Err(SessionError::ReadLimitOutOfRange {
                field: "maxEvents",
                value: max_events,
                limit: max_read_events,
            });
        }
        let max_bytes = params.max_bytes.unwrap_or(max_read_bytes);
        if max_bytes == 0 || max_bytes > max_read_bytes {
            return Err(SessionError::ReadLimitOutOfRange {
                field: "maxBytes",
                value: max_bytes,
                limit: max_read_bytes,
            });
        }
        let last_delivered = s.last_delivered();
        let from = match params.after {
            Some(a) if a > last_delivered => {
                return Err(SessionError::ReadAfterUndelivered {
                    after: a,
                    last_delivered,
                })
            }
            Some(a) => a.max(s.acked_seq) + 1,
            None => s.next_seq,
        };
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let fits = |events: &Vec<Delivered>, bytes: usize, size: usize| {
            events.is_empty() || (events.len() < max_events && bytes + size <= max_bytes)
        };
        for d in s.delivered.iter().filter(|d| d.seq >= from) {
            if !fits(&events, bytes, d.record.size()) {
                break;
            }
            bytes += d.record.size();
            events.push(d.clone());
        }
        let redelivered_all = events.len() == s.delivered.iter().filter(|d| d.seq >= from).count();
        if redelivered_all {
            while let Some(r) = s.undelivered.front() {
                if !fits(&events, bytes, r.size()) {
                    break;
                }
                let r = s.undelivered.pop_front().expect("front exists");
                bytes += r.size();
                let d = Delivered {
                    seq: s.next_seq,
                    record: r,
                };
                s.next_seq += 1;
                s.delivered.push_back(d.clone());
                events.push(d);
            }
        }
        Ok(ReadBatch {
            events,
            acked: s.acked_seq,
            last_delivered: s.last_delivered(),
            more: !s.undelivered.is_empty(),
        })
    }

    /// Acks everything delivered up to delivery offset `up_to`.
    pub fn ack(
        &mut self,
        id: SessionId,
        owner: &str,
        up_to: u64,
        now: Millis,
    ) -> Result<AckOutcome, SessionError> {
        let cfg = self.config.clone();
        let s = self.client(id, owner, now)?;
        if !s.mode.can_read() {
            return Err(SessionError::WrongMode {
                id,
                mode: s.mode,
                operation: "ack",
            });
        }
        if up_to > s.last_delivered() {
            return Err(SessionError::AckBeyondDelivered {
                up_to,
                last_delivered: s.last_delivered(),
            });
        }
        while s.delivered.front().is_some_and(|d| d.seq <= up_to) {
            let d = s.delivered.pop_front().expect("front exists");
            s.held_bytes -= d.record.size();
            s.positions
                .insert(d.record.partition, d.record.offset.saturating_add(1));
        }
        s.acked_seq = s.acked_seq.max(up_to);
        let flow = s.flow(&cfg);
        let state = s.state();
        let positions = state.positions.clone();
        let acked = s.acked_seq;
        Ok(AckOutcome {
            acked,
            positions,
            offset_token: self.codec.encode(&state),
            flow,
        })
    }

    /// Writes a batch: refused whole if any event is invalid or the buffer
    /// cannot take the new ones; otherwise each new id becomes pending and is
    /// returned in `produce`, each known id is reported with its status.
    pub fn write(
        &mut self,
        id: SessionId,
        owner: &str,
        events: Vec<WriteEvent>,
        now: Millis,
    ) -> Result<WriteOutcome, SessionError> {
        let cfg = self.config.clone();
        let s = self.client(id, owner, now)?;
        if !s.mode.can_write() {
            return Err(SessionError::WrongMode {
                id,
                mode: s.mode,
                operation: "write",
            });
        }
        if events.is_empty() {
            return Err(invalid("events", "must not be empty"));
        }
        if events.len() > cfg.max_write_events {
            return Err(SessionError::TooLarge {
                field: "events".into(),
                value: events.len(),
                limit: cfg.max_write_events,
            });
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(events.len());
        let mut total = 0usize;
        let (mut new_events, mut new_bytes) = (0usize, 0usize);
        for (i, e) in events.iter().enumerate() {
            check_write_id(&e.id).map_err(|m| invalid(format!("events[{i}].id"), m))?;
            if let Some(&first) = seen.get(e.id.as_str()) {
                return Err(SessionError::DuplicateWriteId {
                    index: i,
                    first,
                    id: e.id.clone(),
                });
            }
            seen.insert(&e.id, i);
            if let Some(p) = e.partition {
                if p < 0 {
                    return Err(invalid(
                        format!("events[{i}].partition"),
                        format!("{p} is negative"),
                    ));
                }
            }
            if e.size() > cfg.max_event_bytes {
                return Err(SessionError::TooLarge {
                    field: format!("events[{i}]"),
                    value: e.size(),
                    limit: cfg.max_event_bytes,
                });
            }
            total += e.size();
            if matches!(s.ids.get(&e.id), None | Some(IdState::Failed { .. })) {
                new_events += 1;
                new_bytes += e.size();
            }
        }
        if total > cfg.max_write_bytes {
            return Err(SessionError::TooLarge {
                field: "events (bytes)".into(),
                value: total,
                limit: cfg.max_write_bytes,
            });
        }
        if s.pending.len() + new_events > cfg.write_buffer_events
            || s.pending_bytes + new_bytes > cfg.write_buffer_bytes
        {
            return Err(SessionError::WriteBufferFull {
                pending_events: s.pending.len(),
                pending_bytes: s.pending_bytes,
                limit_events: cfg.write_buffer_events,
                limit_bytes: cfg.write_buffer_bytes,
            });
        }
        let default_partition = match s.selector {
            Selector::Partition(p) => Some(p),
            _ => None,
        };
        let mut results = Vec::with_capacity(events.len());
        let mut produce = Vec::with_capacity(new_events);
        for e in events {
            let known = matches!(
                s.ids.get(&e.id),
                Some(IdState::Pending(_) | IdState::Acked { .. })
            );
            if known {
                results.push(WriteResult {
                    status: s.status_of(&e.id),
                    id: e.id,
                    duplicate: true,
                });
                continue;
            }
            let n = s.next_write;
            s.next_write += 1;
            let partition = e.partition.or(default_partition);
            s.pending_bytes += e.size();
            s.ids.insert(e.id.clone(), IdState::Pending(n));
            s.pending.insert(
                n,
                PendingWrite {
                    id: e.id.clone(),
                    partition,
                    key: e.key.clone(),
                    value: e.value.clone(),
                },
            );
            produce.push(ProduceRequest {
                topic: s.topic.clone(),
                write_id: e.id.clone(),
                partition,
                key: e.key,
                value: e.value,
            });
            results.push(WriteResult {
                id: e.id,
                status: WriteStatus::Pending,
                duplicate: false,
            });
        }
        Ok(WriteOutcome { results, produce })
    }

    /// The status of write ids (for a client polling, or the shell holding a
    /// write's response until every id is resolved).
    pub fn write_status(
        &mut self,
        id: SessionId,
        owner: &str,
        write_ids: &[String],
        now: Millis,
    ) -> Result<Vec<WriteStatus>, SessionError> {
        let s = self.client(id, owner, now)?;
        Ok(write_ids.iter().map(|w| s.status_of(w)).collect())
    }

    /// Disposes a session; a retried dispose answers the same final token.
    pub fn dispose(
        &mut self,
        id: SessionId,
        owner: &str,
        now: Millis,
    ) -> Result<Closed, SessionError> {
        match self.client(id, owner, now) {
            Ok(_) => {}
            Err(SessionError::SessionDisposed { offset_token, .. }) => {
                return Ok(Closed {
                    id,
                    reason: CloseReason::Disposed,
                    offset_token,
                    pending_writes: Vec::new(),
                })
            }
            Err(e) => return Err(e),
        }
        Ok(self.close(id, CloseReason::Disposed))
    }

    fn close(&mut self, id: SessionId, reason: CloseReason) -> Closed {
        let s = self.sessions.remove(&id).expect("caller checked");
        let offset_token = self.codec.encode(&s.state());
        if self.config.closed_memory > 0 {
            self.closed.insert(
                id,
                Tombstone {
                    owner: s.owner.clone(),
                    reason,
                    offset_token: offset_token.clone(),
                },
            );
            self.closed_order.push_back(id);
            while self.closed_order.len() > self.config.closed_memory {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed.remove(&old);
                }
            }
        }
        Closed {
            id,
            reason,
            offset_token,
            pending_writes: s.pending.into_values().collect(),
        }
    }

    /// Expires sessions idle for at least the idle timeout at `now`.
    pub fn expire_idle(&mut self, now: Millis) -> Vec<Closed> {
        let timeout = self.config.idle_timeout_ms;
        let mut idle: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| now.saturating_sub(s.last_active) >= timeout)
            .map(|s| s.id)
            .collect();
        idle.sort();
        idle.into_iter()
            .map(|id| self.close(id, CloseReason::Expired))
            .collect()
    }

    /// When the next session would expire, if no request comes (a timer
    /// for the shell).
    pub fn next_expiry(&self) -> Option<Millis> {
        self.sessions
            .values()
            .map(|s| s.last_active.saturating_add(self.config.idle_timeout_ms))
            .min()
    }

    /// Closes the sessions whose shard (of `shards`) is in `released`, in id
    /// order: the backend gave those shards up (their new owner answers
    /// "unknown session" and clients allocate again from their tokens).
    pub fn close_shards(&mut self, released: &HashSet<ShardId>, shards: u32) -> Vec<Closed> {
        let mut ids: Vec<SessionId> = self
            .sessions
            .keys()
            .filter(|id| released.contains(&id.shard(shards)))
            .copied()
            .collect();
        ids.sort();
        ids.into_iter()
            .map(|id| self.close(id, CloseReason::Shutdown))
            .collect()
    }

    /// Closes every session (shutdown, after draining), in id order.
    pub fn close_all(&mut self) -> Vec<Closed> {
        let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| self.close(id, CloseReason::Shutdown))
            .collect()
    }

    // ---- the shell's side: Kafka results ----

    fn feed(&mut self, id: SessionId) -> Result<&mut Session, FeedError> {
        self.sessions
            .get_mut(&id)
            .ok_or(FeedError::UnknownSession(id))
    }

    /// The consumer was assigned `partition`: answers the offset to seek to.
    /// `default_start` is the shell's resolution of the session's
    /// [`StartFrom`] (the earliest or latest offset); it becomes the
    /// committed position when the session has none for the partition.
    pub fn assign_partition(
        &mut self,
        id: SessionId,
        partition: i32,
        default_start: i64,
    ) -> Result<i64, FeedError> {
        let s = self.feed(id)?;
        if !s.reads_partition(partition) {
            return Err(FeedError::WrongPartition { id, partition });
        }
        if s.positions.len() >= MAX_TOKEN_PARTITIONS && !s.positions.contains_key(&partition) {
            return Err(FeedError::WrongPartition { id, partition });
        }
        if let Some(&f) = s.fetched.get(&partition) {
            return Ok(f);
        }
        let at = *s.positions.entry(partition).or_insert(default_start.max(0));
        Ok(at)
    }

    /// The consumer lost `partitions` (a group rebalance): their undelivered
    /// events are dropped (a later assignment fetches them again);
    /// delivered-unacked ones stay ackable.
    pub fn revoke_partitions(
        &mut self,
        id: SessionId,
        partitions: &[i32],
    ) -> Result<Flow, FeedError> {
        let cfg = self.config.clone();
        let s = self.feed(id)?;
        let revoked: HashSet<i32> = partitions.iter().copied().collect();
        let mut dropped = 0usize;
        s.undelivered.retain(|r| {
            let keep = !revoked.contains(&r.partition);
            if !keep {
                dropped += r.size();
            }
            keep
        });
        s.held_bytes -= dropped;
        for p in &revoked {
            // Resume after what was delivered, or from the committed position.
            let resume = s
                .delivered
                .iter()
                .rev()
                .find(|d| d.record.partition == *p)
                .map(|d| d.record.offset.saturating_add(1));
            match resume {
                Some(r) => {
                    s.fetched.insert(*p, r);
                }
                None => {
                    s.fetched.remove(p);
                }
            }
        }
        Ok(s.flow(&cfg))
    }

    /// Offers a record the shell fetched for the session.
    pub fn offer(&mut self, id: SessionId, record: Record) -> Result<Offer, FeedError> {
        let cfg = self.config.clone();
        let s = self.feed(id)?;
        let p = record.partition;
        if !s.reads_partition(p) {
            return Err(FeedError::WrongPartition { id, partition: p });
        }
        let floor = s
            .fetched
            .get(&p)
            .or_else(|| s.positions.get(&p))
            .copied()
            .unwrap_or(0);
        if record.offset < floor {
            return Ok(Offer::Duplicate);
        }
        let held = s.held_events();
        if held > 0
            && (held >= cfg.read_ahead_events
                || s.held_bytes + record.size() > cfg.read_ahead_bytes)
        {
            return Ok(Offer::Full(record));
        }
        if !s.positions.contains_key(&p) && s.positions.len() >= MAX_TOKEN_PARTITIONS {
            return Err(FeedError::WrongPartition { id, partition: p });
        }
        s.positions.entry(p).or_insert(record.offset);
        s.fetched.insert(p, record.offset.saturating_add(1));
        s.held_bytes += record.size();
        s.undelivered.push_back(record);
        Ok(Offer::Accepted(s.flow(&cfg)))
    }

    /// The fetch flow of a session right now.
    pub fn flow(&self, id: SessionId) -> Result<Flow, FeedError> {
        self.sessions
            .get(&id)
            .map(|s| s.flow(&self.config))
            .ok_or(FeedError::UnknownSession(id))
    }

    /// Kafka has write `write_id` at `partition`/`offset`.
    pub fn write_acked(
        &mut self,
        id: SessionId,
        write_id: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), FeedError> {
        let window = self.config.dedup_window;
        let s = self.feed(id)?;
        s.resolve(write_id, IdState::Acked { partition, offset }, window)
            .map(|_| ())
            .ok_or_else(|| FeedError::UnknownWrite {
                id,
                write_id: write_id.to_owned(),
            })
    }

    /// Kafka refused write `write_id`; the client sees `failed` and may
    /// write the id again.
    pub fn write_failed(
        &mut self,
        id: SessionId,
        write_id: &str,
        reason: &str,
    ) -> Result<(), FeedError> {
        let window = self.config.dedup_window;
        let s = self.feed(id)?;
        s.resolve(
            write_id,
            IdState::Failed {
                reason: reason.to_owned(),
            },
            window,
        )
        .map(|_| ())
        .ok_or_else(|| FeedError::UnknownWrite {
            id,
            write_id: write_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;

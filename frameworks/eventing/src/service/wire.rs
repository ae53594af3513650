//! The JSON of the HTTP API, and the envelope the API tier publishes to
//! RabbitMQ for a backend.
//!
//! Field names are camelCase throughout. Requests refuse unknown fields (a
//! typo is a 400 naming it, not a silently ignored option). Bytes travel as
//! text: an event's `value` is UTF-8 text, or `valueBase64` holds standard
//! base64 of arbitrary bytes (exactly one of the two); likewise `key` /
//! `keyBase64` (at most one). Reads answer `value` when the bytes are UTF-8
//! and `valueBase64` otherwise.
//!
//! | operation | request | response |
//! | --- | --- | --- |
//! | allocate | [`AllocateRequest`] | [`AllocateResponse`] |
//! | read | [`ReadRequest`] | [`ReadResponse`] |
//! | ack | [`AckRequest`] | [`AckResponse`] |
//! | write | [`WriteRequest`] | [`WriteResponse`] |
//! | write status | [`WriteStatusRequest`] | [`WriteResponse`] |
//! | dispose | [`DisposeRequest`] | [`DisposeResponse`] |
//! | any error | | [`ErrorBody`] |
//!
//! Parse request bodies with [`parse_json`] (size limit, then JSON, then the
//! type's `validate`); every failure is a [`WireError`] with a 4xx status
//! naming the field.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::offset_token::{Selector, MAX_TOKEN_CHARS};
use super::session::{
    check_group, check_write_id, AckOutcome, Allocated, Closed, Delivered, Mode, ReadBatch,
    ReadParams, SessionError, SessionId, SessionSpec, StartFrom, WriteEvent, WriteOutcome,
    WriteResult, WriteStatus,
};
use super::{validate_topic, ClientError};

/// The default limit on an HTTP request body.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;
/// The limit on an envelope (RabbitMQ message) in either direction.
pub const MAX_ENVELOPE_BYTES: usize = 12 << 20;
/// The longest long-poll wait a read may ask for.
pub const MAX_WAIT_MS: u32 = 30_000;
/// The most write ids one status request may ask about.
pub const MAX_STATUS_IDS: usize = 1_000;
/// The longest request id.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// A request body, envelope or field that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is larger than allowed.
    #[error("request body is {size} bytes, at most {limit} are allowed")]
    BodyTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON of the expected shape (serde's message names the field and
    /// the position).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A field has an invalid value.
    #[error("field {field:?}: {message}")]
    InvalidField {
        /// The field (`topic`, `events[2].valueBase64`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ClientError for WireError {
    fn status(&self) -> u16 {
        match self {
            WireError::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            WireError::BodyTooLarge { .. } => "body_too_large",
            WireError::Malformed(_) => "malformed_json",
            WireError::InvalidField { .. } => "invalid_field",
        }
    }
}

fn field(field: impl Into<String>, message: impl Into<String>) -> WireError {
    WireError::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// A request type that can check its own fields.
pub trait Validate {
    /// Checks every field; the error names the first bad one.
    fn validate(&self) -> Result<(), WireError>;
}

/// Parses and validates a request body of at most `limit` bytes.
pub fn parse_json<T: DeserializeOwned + Validate>(
    body: &[u8],
    limit: usize,
) -> Result<T, WireError> {
    if body.len() > limit {
        return Err(WireError::BodyTooLarge {
            size: body.len(),
            limit,
        });
    }
    let value: T = serde_json::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    value.validate()?;
    Ok(value)
}

fn check_session_id(text: &str) -> Result<SessionId, WireError> {
    SessionId::parse(text).map_err(|_| {
        field(
            "sessionId",
            format!(
                "{:?} is not a session id (32 hex digits)",
                text.chars().take(64).collect::<String>()
            ),
        )
    })
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// What a session may do, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WireMode {
    /// Read and ack (the default).
    #[default]
    Read,
    /// Write.
    Write,
    /// Both.
    ReadWrite,
}

impl From<WireMode> for Mode {
    fn from(m: WireMode) -> Mode {
        match m {
            WireMode::Read => Mode::Read,
            WireMode::Write => Mode::Write,
            WireMode::ReadWrite => Mode::ReadWrite,
        }
    }
}

impl From<Mode> for WireMode {
    fn from(m: Mode) -> WireMode {
        match m {
            Mode::Read => WireMode::Read,
            Mode::Write => WireMode::Write,
            Mode::ReadWrite => WireMode::ReadWrite,
        }
    }
}

/// Where partitions without a committed position start, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WireStart {
    /// The oldest retained event (the default).
    #[default]
    Earliest,
    /// Only events written from now on.
    Latest,
}

/// `POST /v1/sessions`: allocate a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocateRequest {
    /// The topic.
    pub topic: String,
    /// Read only this partition (not with `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Read the partitions this consumer group assigns (not with `partition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `read` (default), `write` or `readWrite`.
    #[serde(default)]
    pub mode: WireMode,
    /// `earliest` (default) or `latest`, for partitions the token does not
    /// cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<WireStart>,
    /// Resume from a previous session's offset token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_token: Option<String>,
}

impl Validate for AllocateRequest {
    fn validate(&self) -> Result<(), WireError> {
        validate_topic(&self.topic).map_err(|e| field("topic", e.to_string()))?;
        if self.partition.is_some() && self.group.is_some() {
            return Err(field(
                "group",
                "give either \"partition\" or \"group\", not both",
            ));
        }
        if let Some(p) = self.partition {
            if p < 0 {
                return Err(field("partition", format!("{p} is negative")));
            }
        }
        if let Some(g) = &self.group {
            check_group(g).map_err(|m| field("group", m))?;
        }
        if let Some(t) = &self.offset_token {
            if t.is_empty() || t.len() > MAX_TOKEN_CHARS {
                return Err(field(
                    "offsetToken",
                    format!("must be 1 to {MAX_TOKEN_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }
}

impl AllocateRequest {
    /// The session spec this request asks for.
    pub fn to_spec(&self) -> SessionSpec {
        let selector = match (&self.partition, &self.group) {
            (Some(p), _) => Selector::Partition(*p),
            (None, Some(g)) => Selector::Group(g.clone()),
            (None, None) => Selector::AllPartitions,
        };
        SessionSpec {
            topic: self.topic.clone(),
            selector,
            mode: self.mode.into(),
            start: match self.start.unwrap_or_default() {
                WireStart::Earliest => StartFrom::Earliest,
                WireStart::Latest => StartFrom::Latest,
            },
            offset_token: self.offset_token.clone(),
        }
    }
}

/// The answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocateResponse {
    /// The session id (32 hex digits).
    pub session_id: String,
    /// The topic.
    pub topic: String,
    /// The partition, for a single-partition session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The consumer group, for a group session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The mode.
    pub mode: WireMode,
    /// The session's offset token now.
    pub offset_token: String,
    /// The session expires after this long without a request.
    pub idle_timeout_ms: u64,
}

impl AllocateResponse {
    /// The wire form of an allocation of `request`.
    pub fn new(request: &AllocateRequest, allocated: &Allocated, idle_timeout_ms: u64) -> Self {
        AllocateResponse {
            session_id: allocated.id.to_string(),
            topic: request.topic.clone(),
            partition: request.partition,
            group: if request.partition.is_some() {
                None
            } else {
                request.group.clone()
            },
            mode: request.mode,
            offset_token: allocated.offset_token.clone(),
            idle_timeout_ms,
        }
    }
}

/// `POST /v1/sessions/{id}/read`: read a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadRequest {
    /// The session.
    pub session_id: String,
    /// Re-deliver from after this delivery offset (the last one seen);
    /// omit for new events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The most events to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u32>,
    /// The most bytes (keys and values) to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Wait up to this long for events when none are buffered (long poll,
    /// at most [`MAX_WAIT_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u32>,
}

impl Validate for ReadRequest {
    fn validate(&self) -> Result<(), WireError> {
        check_session_id(&self.session_id)?;
        if self.max_events == Some(0) {
            return Err(field("maxEvents", "must be at least 1"));
        }
        if self.max_bytes == Some(0) {
            return Err(field("maxBytes", "must be at least 1"));
        }
        if let Some(w) = self.wait_ms {
            if w > MAX_WAIT_MS {
                return Err(field(
                    "waitMs",
                    format!("{w} is more than the most, {MAX_WAIT_MS}"),
                ));
            }
        }
        Ok(())
    }
}

impl ReadRequest {
    /// The session id (call after `validate`).
    pub fn id(&self) -> Result<SessionId, WireError> {
        check_session_id(&self.session_id)
    }

    /// The core's read parameters.
    pub fn to_params(&self) -> ReadParams {
        ReadParams {
            after: self.after,
            max_events: self.max_events.map(|n| n as usize),
            max_bytes: self
                .max_bytes
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }
}

/// One event delivered by a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventOut {
    /// The delivery offset: ack up to it.
    pub offset: u64,
    /// The client write id the event was written with through the service
    /// (absent for events other producers wrote); readers drop copies by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The Kafka partition.
    pub partition: i32,
    /// The Kafka offset.
    pub kafka_offset: i64,
    /// Kafka's timestamp, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    /// The key, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key as base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The value, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

fn text_or_base64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(b64().encode(bytes))),
    }
}

impl EventOut {
    /// The wire form of a delivered record.
    pub fn from_delivered(d: &Delivered) -> EventOut {
        let (key, key_base64) = match &d.record.key {
            Some(k) => text_or_base64(k),
            None => (None, None),
        };
        let (value, value_base64) = text_or_base64(&d.record.value);
        EventOut {
            offset: d.seq,
            id: d.record.write_id.clone(),
            partition: d.record.partition,
            kafka_offset: d.record.offset,
            timestamp_ms: d.record.timestamp_ms,
            key,
            key_base64,
            value,
            value_base64,
        }
    }

    /// The value's bytes, from whichever field carries them.
    pub fn value_bytes(&self) -> Option<Vec<u8>> {
        match (&self.value, &self.value_base64) {
            (Some(v), _) => Some(v.as_bytes().to_vec()),
            (None, Some(b)) => b64().decode(b).ok(),
            (None, None) => None,
        }
    }
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadResponse {
    /// The session.
    pub session_id: String,
    /// The events, in delivery order.
    pub events: Vec<EventOut>,
    /// The highest delivery offset acked.
    pub acked: u64,
    /// The highest delivery offset delivered.
    pub last_delivered: u64,
    /// Whether more events are already buffered.
    pub more: bool,
}

impl ReadResponse {
    /// The wire form of a read batch.
    pub fn from_batch(id: SessionId, batch: &ReadBatch) -> ReadResponse {
        ReadResponse {
            session_id: id.to_string(),
            events: batch.events.iter().map(EventOut::from_delivered).collect(),
            acked: batch.acked,
            last_delivered: batch.last_delivered,
            more: batch.more,
        }
    }
}

/// `POST /v1/sessions/{id}/ack`: ack up to a delivery offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AckRequest {
    /// The session.
    pub session_id: String,
    /// Ack every delivered event up to this delivery offset.
    pub up_to: u64,
}

impl Validate for AckRequest {
    fn validate(&self) -> Result<(), WireError> {
        check_session_id(&self.session_id).map(|_| ())
    }
}

/// The answer to an ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AckResponse {
    /// The session.
    pub session_id: String,
    /// The highest delivery offset acked.
    pub acked: u64,
    /// The offset token for everything acked; keep it to resume.
    pub offset_token: String,
}

impl AckResponse {
    /// The wire form of an ack.
    pub fn from_outcome(id: SessionId, outcome: &AckOutcome) -> AckResponse {
        AckResponse {
            session_id: id.to_string(),
            acked: outcome.acked,
            offset_token: outcome.offset_token.clone(),
        }
    }
}

/// One event to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventIn {
    /// The client's write id (unique per event; a retry reuses it).
    pub id: String,
    /// The partition; omit to let the producer choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The key as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The value as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl EventIn {
    /// An event with a UTF-8 value and no key.
    pub fn text(id: impl Into<String>, value: impl Into<String>) -> EventIn {
        EventIn {
            id: id.into(),
            partition: None,
            key: None,
            key_base64: None,
            value: Some(value.into()),
            value_base64: None,
        }
    }

    /// Checks and decodes the event; `i` is its index, for field names.
    pub fn to_core(&self, i: usize) -> Result<WriteEvent, WireError> {
        check_write_id(&self.id).map_err(|m| field(format!("events[{i}].id"), m))?;
        if let Some(p) = self.partition {
            if p < 0 {
                return Err(field(
                    format!("events[{i}].partition"),
                    format!("{p} is negative"),
                ));
            }
        }
        let key = match (&self.key, &self.key_base64) {
            (Some(_), Some(_)) => {
                return Err(field(
                    format!("events[{i}].keyBase64"),
                    "give either \"key\" or \"keyBase64\", not both",
                ))
            }
            (Some(k), None) => Some(k.as_bytes().to_vec()),
            (None, Some(b)) => Some(b64().decode(b).map_err(|e| {
                field(
                    format!("events[{i}].keyBase64"),
                    format!("not valid base64: {e}"),
                )
            })?),
            (None, None) => None,
        };
        let value = match (&self.value, &self.value_base64) {
            (Some(_), Some(_)) => {
                return Err(field(
                    format!("events[{i}].valueBase64"),
                    "give either \"value\" or \"valueBase64\", not both",
                ))
            }
            (Some(v), None) => v.as_bytes().to_vec(),
            (None, Some(b)) => b64().decode(b).map_err(|e| {
                field(
                    format!("events[{i}].valueBase64"),
                    format!("not valid base64: {e}"),
                )
            })?,
            (None, None) => {
                return Err(field(
                    format!("events[{i}].value"),
                    "missing: give \"value\" or \"valueBase64\"",
                ))
            }
        };
        Ok(WriteEvent {
            id: self.id.clone(),
            partition: self.partition,
            key,
            value,
        })
    }
}

/// `POST /v1/sessions/{id}/write`: write a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteRequest {
    /// The session.
    pub session_id: String,
    /// The events, in order.
    pub events: Vec<EventIn>,
}

impl Validate for WriteRequest {
    fn validate(&self) -> Result<(), WireError> {
        check_session_id(&self.session_id)?;
        if self.events.is_empty() {
            return Err(field("events", "must not be empty"));
        }
        for (i, e) in self.events.iter().enumerate() {
            e.to_core(i)?;
        }
        Ok(())
    }
}

impl WriteRequest {
    /// The decoded events.
    pub fn to_events(&self) -> Result<Vec<WriteEvent>, WireError> {
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| e.to_core(i))
            .collect()
    }
}

/// `POST /v1/sessions/{id}/write-status`: where earlier writes stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteStatusRequest {
    /// The session.
    pub session_id: String,
    /// The write ids.
    pub ids: Vec<String>,
}

impl Validate for WriteStatusRequest {
    fn validate(&self) -> Result<(), WireError> {
        check_session_id(&self.session_id)?;
        if self.ids.is_empty() || self.ids.len() > MAX_STATUS_IDS {
            return Err(field(
                "ids",
                format!("must list 1 to {MAX_STATUS_IDS} write ids"),
            ));
        }
        for (i, id) in self.ids.iter().enumerate() {
            check_write_id(id).map_err(|m| field(format!("ids[{i}]"), m))?;
        }
        Ok(())
    }
}

/// The status of one write, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WireWriteStatus {
    /// Not in Kafka yet.
    Pending,
    /// In Kafka.
    Acked,
    /// Refused by Kafka; write the id again to retry.
    Failed,
    /// Not known (never written, or outside the de-duplication window).
    Unknown,
}

/// One write's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteResultOut {
    /// The write id.
    pub id: String,
    /// Its status.
    pub status: WireWriteStatus,
    /// Whether this request wrote nothing new for it.
    #[serde(default)]
    pub duplicate: bool,
    /// Its partition, once acked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Its Kafka offset, once acked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WriteResultOut {
    /// The wire form of a write's id, status and duplicate flag.
    pub fn new(id: &str, status: &WriteStatus, duplicate: bool) -> WriteResultOut {
        let (s, partition, offset, error) = match status {
            WriteStatus::Pending => (WireWriteStatus::Pending, None, None, None),
            WriteStatus::Acked { partition, offset } => (
                WireWriteStatus::Acked,
                Some(*partition),
                Some(*offset),
                None,
            ),
            WriteStatus::Failed { reason } => {
                (WireWriteStatus::Failed, None, None, Some(reason.clone()))
            }
            WriteStatus::Unknown => (WireWriteStatus::Unknown, None, None, None),
        };
        WriteResultOut {
            id: id.to_owned(),
            status: s,
            duplicate,
            partition,
            offset,
            error,
        }
    }

    /// The wire form of a core write result.
    pub fn from_result(r: &WriteResult) -> WriteResultOut {
        WriteResultOut::new(&r.id, &r.status, r.duplicate)
    }
}

/// The answer to a write or a write-status request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteResponse {
    /// The session.
    pub session_id: String,
    /// One result per event or id, in request order.
    pub results: Vec<WriteResultOut>,
}

impl WriteResponse {
    /// The wire form of a write's outcome.
    pub fn from_outcome(id: SessionId, outcome: &WriteOutcome) -> WriteResponse {
        WriteResponse {
            session_id: id.to_string(),
            results: outcome
                .results
                .iter()
                .map(WriteResultOut::from_result)
                .collect(),
        }
    }

    /// The wire form of a write-status answer (`ids` and `statuses` in the
    /// same order; nothing is a duplicate).
    pub fn from_statuses(id: SessionId, ids: &[String], statuses: &[WriteStatus]) -> WriteResponse {
        WriteResponse {
            session_id: id.to_string(),
            results: ids
                .iter()
                .zip(statuses)
                .map(|(i, s)| WriteResultOut::new(i, s, false))
                .collect(),
        }
    }
}

/// `POST /v1/sessions/{id}/dispose` (or `DELETE /v1/sessions/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisposeRequest {
    /// The session.
    pub session_id: String,
}

impl Validate for DisposeRequest {
    fn validate(&self) -> Result<(), WireError> {
        check_session_id(&self.session_id).map(|_| ())
    }
}

/// The answer to a dispose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisposeResponse {
    /// The session.
    pub session_id: String,
    /// The final offset token.
    pub offset_token: String,
    /// Writes still pending at dispose; they are still delivered to Kafka.
    pub pending_writes: usize,
}

impl DisposeResponse {
    /// The wire form of a closed session.
    pub fn from_closed(c: &Closed) -> DisposeResponse {
        DisposeResponse {
            session_id: c.id.to_string(),
            offset_token: c.offset_token.clone(),
            pending_writes: c.pending_writes.len(),
        }
    }
}

/// The body of every 4xx answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// A stable machine-readable code.
    pub code: String,
    /// A message naming the field or object.
    pub message: String,
    /// For an expired or disposed session: its last offset token, to
    /// allocate a new session from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_token: Option<String>,
}

impl ErrorBody {
    /// The body for any client error.
    pub fn new(e: &dyn ClientError) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                status: e.status(),
                code: e.code().to_owned(),
                message: e.to_string(),
                offset_token: None,
            },
        }
    }

    /// The body for a session error, carrying the last offset token of an
    /// expired or disposed session.
    pub fn from_session_error(e: &SessionError) -> ErrorBody {
        let mut body = ErrorBody::new(e);
        if let SessionError::SessionExpired { offset_token, .. }
        | SessionError::SessionDisposed { offset_token, .. } = e
        {
            body.error.offset_token = Some(offset_token.clone());
        }
        body
    }
}

/// The operation an envelope carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Allocate (the session id is the envelope's).
    Allocate(AllocateRequest),
    /// Read.
    Read(ReadRequest),
    /// Ack.
    Ack(AckRequest),
    /// Write.
    Write(WriteRequest),
    /// Write status.
    WriteStatus(WriteStatusRequest),
    /// Dispose.
    Dispose(DisposeRequest),
}

impl Request {
    /// The operation's name on the wire.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::Allocate(_) => "allocate",
            Request::Read(_) => "read",
            Request::Ack(_) => "ack",
            Request::Write(_) => "write",
            Request::WriteStatus(_) => "writeStatus",
            Request::Dispose(_) => "dispose",
        }
    }

    fn body_session_id(&self) -> Option<&str> {
        match self {
            Request::Allocate(_) => None,
            Request::Read(r) => Some(&r.session_id),
            Request::Ack(r) => Some(&r.session_id),
            Request::Write(r) => Some(&r.session_id),
            Request::WriteStatus(r) => Some(&r.session_id),
            Request::Dispose(r) => Some(&r.session_id),
        }
    }

    fn validate(&self) -> Result<(), WireError> {
        match self {
            Request::Allocate(r) => r.validate(),
            Request::Read(r) => r.validate(),
            Request::Ack(r) => r.validate(),
            Request::Write(r) => r.validate(),
            Request::WriteStatus(r) => r.validate(),
            Request::Dispose(r) => r.validate(),
        }
    }
}

/// What the API tier publishes to RabbitMQ (routing key: the shard's
/// [`routing_key`](super::ring::ShardId::routing_key)) for the backend
/// owning the session's shard.
///
/// ```json
/// {"version":1,"requestId":"…","sessionId":"<32 hex>","shard":17,
///  "principal":"team-a","replyTo":"eventing.api.node-1",
///  "operation":"read","body":{"sessionId":"<32 hex>","maxEvents":100}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Correlates the reply; unique per request (1 to 128 visible ASCII).
    pub request_id: String,
    /// The session.
    pub session_id: SessionId,
    /// The session's shard.
    pub shard: u32,
    /// The authenticated principal.
    pub principal: String,
    /// The queue the backend sends the [`Reply`] to.
    pub reply_to: String,
    /// The operation and its body.
    pub request: Request,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvelopeRepr {
    version: u8,
    request_id: String,
    session_id: String,
    shard: u32,
    principal: String,
    reply_to: String,
    operation: String,
    body: serde_json::Value,
}

fn check_token_text(name: &str, value: &str) -> Result<(), WireError> {
    if value.is_empty()
        || value.len() > MAX_REQUEST_ID_LEN
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(field(
            name,
            format!("must be 1 to {MAX_REQUEST_ID_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

impl Envelope {
    /// Serialises the envelope, refusing one over [`MAX_ENVELOPE_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let body = match &self.request {
            Request::Allocate(r) => serde_json::to_value(r),
            Request::Read(r) => serde_json::to_value(r),
            Request::Ack(r) => serde_json::to_value(r),
            Request::Write(r) => serde_json::to_value(r),
            Request::WriteStatus(r) => serde_json::to_value(r),
            Request::Dispose(r) => serde_json::to_value(r),
        }
        .map_err(|e| WireError::Malformed(e.to_string()))?;
        let repr = EnvelopeRepr {
            version: ENVELOPE_VERSION,
            request_id: self.request_id.clone(),
            session_id: self.session_id.to_string(),
            shard: self.shard,
            principal: self.principal.clone(),
            reply_to: self.reply_to.clone(),
            operation: self.request.operation().to_owned(),
            body,
        };
        to_bounded_json(&repr)
    }

    /// Parses and validates an envelope: size, JSON, version, operation,
    /// body, and that the body's session id is the envelope's.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, WireError> {
        let repr: EnvelopeRepr = from_bounded_json(bytes)?;
        check_version(repr.version)?;
        check_token_text("requestId", &repr.request_id)?;
        check_token_text("replyTo", &repr.reply_to)?;
        if repr.principal.is_empty() || repr.principal.len() > 128 {
            return Err(field("principal", "must be 1 to 128 characters"));
        }
        let session_id = check_session_id(&repr.session_id)?;
        fn body<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, WireError> {
            serde_json::from_value(v).map_err(|e| WireError::Malformed(format!("body: {e}")))
        }
        let request = match repr.operation.as_str() {
            "allocate" => Request::Allocate(body(repr.body)?),
            "read" => Request::Read(body(repr.body)?),
            "ack" => Request::Ack(body(repr.body)?),
            "write" => Request::Write(body(repr.body)?),
            "writeStatus" => Request::WriteStatus(body(repr.body)?),
            "dispose" => Request::Dispose(body(repr.body)?),
            other => {
                return Err(field(
                    "operation",
                    format!(
                        "unknown operation {:?}",
                        other.chars().take(32).collect::<String>()
                    ),
                ))
            }
        };
        request.validate()?;
        if let Some(id) = request.body_session_id() {
            if !id.eq_ignore_ascii_case(&repr.session_id) {
                return Err(field(
                    "body.sessionId",
                    "differs from the envelope's sessionId",
                ));
            }
        }
        Ok(Envelope {
            request_id: repr.request_id,
            session_id,
            shard: repr.shard,
            principal: repr.principal,
            reply_to: repr.reply_to,
            request,
        })
    }

    /// Checks that the envelope's shard is its session's shard under
    /// `shards` shards (a backend refuses misrouted envelopes).
    pub fn check_shard(&self, shards: u32) -> Result<(), WireError> {
        let want = self.session_id.shard(shards).0;
        if self.shard != want {
            return Err(field(
                "shard",
                format!(
                    "is {}, but session {} belongs to shard {want}",
                    self.shard, self.session_id
                ),
            ));
        }
        Ok(())
    }
}

/// What a backend sends back to the API node's `replyTo` queue: the HTTP
/// status and body to answer the client with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reply {
    /// The envelope version.
    pub version: u8,
    /// The request this answers.
    pub request_id: String,
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (a response type or an [`ErrorBody`]).
    pub body: serde_json::Value,
}

impl Reply {
    /// A 200 reply with a response body.
    pub fn ok<T: Serialize>(request_id: &str, body: &T) -> Reply {
        Reply {
            version: ENVELOPE_VERSION,
            request_id: request_id.to_owned(),
            status: 200,
            body: serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
        }
    }

    /// An error reply.
    pub fn error(request_id: &str, body: ErrorBody) -> Reply {
        Reply {
            version: ENVELOPE_VERSION,
            request_id: request_id.to_owned(),
            status: body.error.status,
            body: serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
        }
    }

    /// Serialises the reply, refusing one over [`MAX_ENVELOPE_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        to_bounded_json(self)
    }

    /// Parses a reply.
    pub fn from_bytes(bytes: &[u8]) -> Result<Reply, WireError> {
        let r: Reply = from_bounded_json(bytes)?;
        check_version(r.version)?;
        Ok(r)
    }
}

/// JSON of at most [`MAX_ENVELOPE_BYTES`].
fn to_bounded_json<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let bytes = serde_json::to_vec(value).map_err(|e| WireError::Malformed(e.to_string()))?;
    check_envelope_size(bytes.len())?;
    Ok(bytes)
}

/// Parses JSON of at most [`MAX_ENVELOPE_BYTES`] (checked before parsing).
fn from_bounded_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    check_envelope_size(bytes.len())?;
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

fn check_envelope_size(size: usize) -> Result<(), WireError> {
    if size > MAX_ENVELOPE_BYTES {
        return Err(WireError::BodyTooLarge {
            size,
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    Ok(())
}

fn check_version(version: u8) -> Result<(), WireError> {
    if version != ENVELOPE_VERSION {
        return Err(field(
            "version",
            format!("unsupported envelope version {version}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

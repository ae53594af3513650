//! Encoding and decoding of API messages as Mesos does: protobuf, or JSON
//! with the original snake_case field names, enums by name, bytes in base64,
//! 64-bit integers as numbers, and ASCII-only output.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{
    Cardinality, DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind,
    MessageDescriptor, SerializeOptions,
};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The descriptor set is produced by our own build script from our own
    // protos; failing to decode it is a build defect, not an input error.
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"))[..])
        .expect("embedded descriptor set is valid")
});

/// The descriptor pool of every message Corral speaks.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// Errors decoding a request body.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The body is not valid JSON for the message.
    #[error("failed to parse JSON into {message}: {reason}")]
    Json {
        /// Full name of the expected message.
        message: String,
        /// What is wrong.
        reason: String,
    },
    /// The body is not valid protobuf for the message.
    #[error("failed to parse protobuf into {message}: {reason}")]
    Protobuf {
        /// Full name of the expected message.
        message: String,
        /// What is wrong.
        reason: String,
    },
    /// The message lacks fields its proto marks `required` (Mesos refuses
    /// such a call, in either encoding).
    #[error("missing required fields in {message}: {}", .fields.join(", "))]
    MissingRequired {
        /// Full name of the message.
        message: String,
        /// The paths of the missing fields, protobuf style
        /// (`subscribe.framework_info.user`, `accept.operations[0].type`).
        fields: Vec<String>,
    },
    /// The message type is missing from the descriptor pool.
    #[error("no descriptor for message {0}")]
    NoDescriptor(String),
}

/// The two encodings of the Mesos HTTP APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `application/json`
    Json,
    /// `application/x-protobuf`
    Protobuf,
}

impl Encoding {
    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => crate::APPLICATION_JSON,
            Encoding::Protobuf => crate::APPLICATION_PROTOBUF,
        }
    }

    /// Parses a `Content-Type` header value (parameters are ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(crate::APPLICATION_JSON) {
            Some(Encoding::Json)
        } else if media.eq_ignore_ascii_case(crate::APPLICATION_PROTOBUF) {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }

    /// Negotiates a response encoding from an `Accept` header. `None` when
    /// nothing acceptable is offered; a missing header means `default`.
    pub fn negotiate(accept: Option<&str>, default: Encoding) -> Option<Self> {
        let Some(accept) = accept else {
            return Some(default);
        };
        let mut best: Option<(f32, Encoding)> = None;
        for part in accept.split(',') {
            let mut pieces = part.split(';');
            let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            let enc = match media.as_str() {
                crate::APPLICATION_JSON => Encoding::Json,
                crate::APPLICATION_PROTOBUF => Encoding::Protobuf,
                "*/*" | "application/*" => default,
                _ => continue,
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, enc));
            }
        }
        best.map(|(_, e)| e)
    }

    /// Encodes a message.
    pub fn encode<M: Message + Name>(self, msg: &M) -> Vec<u8> {
        match self {
            Encoding::Json => to_json(msg),
            Encoding::Protobuf => msg.encode_to_vec(),
        }
    }

    /// Decodes a request as Mesos' HTTP handlers do: besides being well
    /// formed, every field its proto marks `required` must be present, at
    /// any depth (unknown fields are still ignored). `decode` fills missing
    /// required fields with defaults instead.
    pub fn decode_request<M: Message + Name + Default>(
        self,
        bytes: &[u8],
    ) -> Result<M, CodecError> {
        match self {
            Encoding::Json => from_json_checked(bytes),
            Encoding::Protobuf => {
                let name = M::full_name();
                let desc = POOL
                    .get_message_by_name(&name)
                    .ok_or_else(|| CodecError::NoDescriptor(name.clone()))?;
                let dynamic =
                    DynamicMessage::decode(desc, bytes).map_err(|e| CodecError::Protobuf {
                        message: name.clone(),
                        reason: e.to_string(),
                    })?;
                check_required(&dynamic)?;
                self.decode(bytes)
            }
        }
    }

    /// Decodes a message.
    pub fn decode<M: Message + Name + Default>(self, bytes: &[u8]) -> Result<M, CodecError> {
        match self {
            Encoding::Json => from_json(bytes),
            Encoding::Protobuf => M::decode(bytes).map_err(|e| CodecError::Protobuf {
                message: M::full_name(),
                reason: e.to_string(),
            }),
        }
    }
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true)
        .use_enum_numbers(false)
}

/// Converts a message to a `serde_json::Value` in Mesos' JSON shape.
pub fn to_json_value<M: Message + Name>(msg: &M) -> serde_json::Value {
    let Some(desc) = POOL.get_message_by_name(&M::full_name()) else {
        return serde_json::Value::Null;
    };
    let mut dynamic = DynamicMessage::new(desc.clone());
    if dynamic.transcode_from(msg).is_err() {
        return serde_json::Value::Null;
    }
    let mut value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .unwrap_or(serde_json::Value::Null);
    mesos_durations_out(&mut value, &desc);
    value
}

/// Encodes a message as compact, ASCII-only JSON in Mesos' shape.
pub fn to_json<M: Message + Name>(msg: &M) -> Vec<u8> {
    json_bytes(&to_json_value(msg))
}

/// Serialises any JSON value compactly with every non-ASCII character
/// escaped (some clients slice decoded stream text by byte counts).
pub fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Serialising a Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(value, &mut ser);
    out
}

/// Decodes Mesos-shaped JSON into a message. Unknown fields are ignored, as
/// Mesos' parser does.
pub fn from_json<M: Message + Name + Default>(bytes: &[u8]) -> Result<M, CodecError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| CodecError::Json {
        message: M::full_name(),
        reason: e.to_string(),
    })?;
    from_json_value(value)
}

/// Decodes Mesos-shaped JSON into a message, refusing it when a field its
/// proto marks `required` is missing (see [`Encoding::decode_request`]).
pub fn from_json_checked<M: Message + Name + Default>(bytes: &[u8]) -> Result<M, CodecError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| CodecError::Json {
        message: M::full_name(),
        reason: e.to_string(),
    })?;
    from_json_value_checked(value)
}

/// [`from_json_value`], refusing a message that lacks a required field.
pub fn from_json_value_checked<M: Message + Name + Default>(
    value: serde_json::Value,
) -> Result<M, CodecError> {
    json_value_to::<M>(value, true)
}

/// Decodes a `serde_json::Value` into a message.
pub fn from_json_value<M: Message + Name + Default>(
    value: serde_json::Value,
) -> Result<M, CodecError> {
    json_value_to::<M>(value, false)
}

fn json_value_to<M: Message + Name + Default>(
    value: serde_json::Value,
    check: bool,
) -> Result<M, CodecError> {
    let name = M::full_name();
    let desc = POOL
        .get_message_by_name(&name)
        .ok_or_else(|| CodecError::NoDescriptor(name.clone()))?;
    let mut value = normalize_numbers(value);
    mesos_json_in(&mut value, &desc).map_err(|reason| CodecError::Json {
        message: name.clone(),
        reason,
    })?;
    let dynamic = DynamicMessage::deserialize_with_options(
        desc,
        value,
        &DeserializeOptions::new().deny_unknown_fields(false),
    )
    .map_err(|e| CodecError::Json {
        message: name.clone(),
        reason: e.to_string(),
    })?;
    if check {
        check_required(&dynamic)?;
    }
    dynamic.transcode_to::<M>().map_err(|e| CodecError::Json {
        message: name,
        reason: e.to_string(),
    })
}

/// At most this many missing fields are named in one error.
const MAX_MISSING_REPORTED: usize = 16;

/// Refuses a message (decoded with presence, as proto2 keeps it) that lacks
/// a `required` field anywhere in it, naming the fields as protobuf's
/// `InitializationErrorString` does.
fn check_required(msg: &DynamicMessage) -> Result<(), CodecError> {
    use prost_reflect::ReflectMessage;
    let mut fields = Vec::new();
    missing_required(msg, &mut String::new(), &mut fields);
    if fields.is_empty() {
        return Ok(());
    }
    Err(CodecError::MissingRequired {
        message: msg.descriptor().full_name().to_string(),
        fields,
    })
}

/// Walks `msg`, appending the path of every missing required field to
/// `out`. `path` is the prefix of `msg` (`accept.operations[0].`), one
/// buffer grown and cut back on the way, so a well-formed call costs no
/// allocation per nested message.
fn missing_required(msg: &DynamicMessage, path: &mut String, out: &mut Vec<String>) {
    use prost_reflect::{ReflectMessage, Value};
    use std::fmt::Write as _;
    for field in msg.descriptor().fields() {
        if out.len() >= MAX_MISSING_REPORTED {
            return;
        }
        let present = msg.has_field(&field);
        if !present {
            if field.cardinality() == Cardinality::Required {
                out.push(format!("{path}{}", field.name()));
            }
            continue;
        }
        if !matches!(field.kind(), Kind::Message(_)) {
            continue;
        }
        let len = path.len();
        match msg.get_field(&field).as_ref() {
            Value::Message(m) => {
                let _ = write!(path, "{}.", field.name());
                missing_required(m, path, out);
            }
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        let _ = write!(path, "{}[{i}].", field.name());
                        missing_required(m, path, out);
                        path.truncate(len);
                    }
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries {
                    if let Value::Message(m) = item {
                        let _ = match key {
                            prost_reflect::MapKey::String(k) => {
                                write!(path, "{}[{k}].", field.name())
                            }
                            other => write!(path, "{}[{other:?}].", field.name()),
                        };
                        missing_required(m, path, out);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
        path.truncate(len);
    }
}

/// Mesos' JSON parser accepts integral floats (`5.0`) for integer fields;
/// the protobuf JSON mapping does not. Integral floats become integers
/// (float fields accept integers, so nothing is lost).
fn normalize_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Value::Number(serde_json::Number::from(f as i64))
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

const DURATION: &str = "google.protobuf.Duration";

/// The message fields of a JSON object that `desc` describes, with their
/// values. Keys are matched as the deserializer matches them.
fn message_fields<'a>(
    map: &'a mut serde_json::Map<String, serde_json::Value>,
    desc: &'a MessageDescriptor,
) -> impl Iterator<Item = (FieldDescriptor, &'a mut serde_json::Value)> + 'a {
    map.iter_mut().filter_map(move |(key, v)| {
        desc.get_field_by_name(key)
            .or_else(|| desc.get_field_by_json_name(key))
            .map(|f| (f, v))
    })
}

/// The values a field's JSON holds: each element of a list, each value of a
/// map, or the value itself; with the descriptor of those values' kind.
fn field_values<'v>(
    field: &FieldDescriptor,
    v: &'v mut serde_json::Value,
) -> (Kind, Vec<&'v mut serde_json::Value>) {
    use serde_json::Value;
    if field.is_map() {
        let kind = match field.kind() {
            Kind::Message(entry) => entry.map_entry_value_field().kind(),
            other => other,
        };
        let values = match v {
            Value::Object(m) => m.values_mut().collect(),
            _ => Vec::new(),
        };
        (kind, values)
    } else if field.is_list() {
        let values = match v {
            Value::Array(items) => items.iter_mut().collect(),
            other => vec![other],
        };
        (field.kind(), values)
    } else {
        (field.kind(), vec![v])
    }
}

/// Adapts Mesos-shaped JSON input to the deserializer and rejects what
/// Mesos' parser rejects but the protobuf JSON mapping lets through:
///
/// * `google.protobuf.Duration` is an ordinary message to Mesos
///   (`{"seconds": 10, "nanos": 5}`), not the proto3 string `"10.000000005s"`.
/// * An unknown name for a *required* enum field is an error (Mesos: "Failed
///   to find enum for ..."), where the deserializer would silently leave the
///   field at its first value (`"type": "SCALER"` would become `SCALAR`).
///   Unknown names in optional/repeated enum fields are dropped, as in Mesos.
fn mesos_json_in(value: &mut serde_json::Value, desc: &MessageDescriptor) -> Result<(), String> {
    let serde_json::Value::Object(map) = value else {
        return Ok(());
    };
    for (field, v) in message_fields(map, desc) {
        let required = field.cardinality() == Cardinality::Required;
        let (kind, values) = field_values(&field, v);
        for v in values {
            match &kind {
                Kind::Message(m) if m.full_name() == DURATION => duration_in(v),
                Kind::Message(m) => mesos_json_in(v, m)?,
                Kind::Enum(e) if required => {
                    if let serde_json::Value::String(s) = v {
                        if e.get_value_by_name(s).is_none() {
                            return Err(format!(
                                "invalid value {s:?} for enum field {}",
                                field.full_name()
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `{"seconds": s, "nanos": n}` -> `"s.nnnnnnnnns"`. Anything else is left
/// for the deserializer to accept (a proto3 duration string) or reject.
fn duration_in(v: &mut serde_json::Value) {
    let serde_json::Value::Object(m) = v else {
        return;
    };
    if m.keys().any(|k| k != "seconds" && k != "nanos") {
        return;
    }
    let int = |k: &str| match m.get(k) {
        None | Some(serde_json::Value::Null) => Some(0i64),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    let (Some(seconds), Some(nanos)) = (int("seconds"), int("nanos")) else {
        return;
    };
    if nanos.abs() >= 1_000_000_000 || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
        return;
    }
    let sign = if seconds < 0 || nanos < 0 { "-" } else { "" };
    *v = serde_json::Value::String(format!(
        "{sign}{}.{:09}s",
        seconds.unsigned_abs(),
        nanos.unsigned_abs()
    ));
}

/// Writes `google.protobuf.Duration` values as Mesos does: an ordinary
/// message `{"seconds": s, "nanos": n}` with zero fields left out.
fn mesos_durations_out(value: &mut serde_json::Value, desc: &MessageDescriptor) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (field, v) in message_fields(map, desc) {
        let (kind, values) = field_values(&field, v);
        let Kind::Message(m) = kind else {
            continue;
        };
        if !reaches_duration(&m) {
            continue;
        }
        for v in values {
            if m.full_name() == DURATION {
                duration_out(v);
            } else {
                mesos_durations_out(v, &m);
            }
        }
    }
}

/// `"-1.500s"` -> `{"seconds": -1, "nanos": -500000000}`.
fn duration_out(v: &mut serde_json::Value) {
    let serde_json::Value::String(s) = v else {
        return;
    };
    let Some(body) = s.strip_suffix('s') else {
        return;
    };
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let (Ok(seconds), true) = (whole.parse::<i64>(), frac.len() <= 9) else {
        return;
    };
    let Ok(nanos) = format!("{frac:0<9}").parse::<i64>() else {
        return;
    };
    let sign = if negative { -1 } else { 1 };
    let mut out = serde_json::Map::new();
    if seconds != 0 {
        out.insert("seconds".into(), (sign * seconds).into());
    }
    if nanos != 0 {
        out.insert("nanos".into(), (sign * nanos).into());
    }
    *v = serde_json::Value::Object(out);
}

/// Whether a message is, or (transitively) contains, a Duration.
fn reaches_duration(desc: &MessageDescriptor) -> bool {
    static REACHES: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
        let mut set = std::collections::HashSet::from([DURATION.to_string()]);
        loop {
            let before = set.len();
            for m in POOL.all_messages() {
                let hit = m.fields().any(|f| match f.kind() {
                    Kind::Message(t) => set.contains(t.full_name()),
                    _ => false,
                });
                if hit {
                    set.insert(m.full_name().to_string());
                }
            }
            if set.len() == before {
                return set;
            }
        }
    });
    REACHES.contains(desc.full_name())
}

/// A compact JSON formatter that escapes every non-ASCII character as
/// `\uXXXX` (with surrogate pairs).
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_accept() {
        use Encoding::*;
        assert_eq!(Encoding::negotiate(None, Json), Some(Json));
        assert_eq!(
            Encoding::negotiate(Some("application/x-protobuf"), Json),
            Some(Protobuf)
        );
        assert_eq!(Encoding::negotiate(Some("*/*"), Json), Some(Json));
        assert_eq!(Encoding::negotiate(Some("text/html"), Json), None);
        assert_eq!(
            Encoding::negotiate(Some("application/json;q=0.5, application/x-protobuf"), Json),
            Some(Protobuf)
        );
    }

    #[test]
    fn ascii_escaping() {
        let v = serde_json::json!({"name": "café ☕ 𝄞"});
        let s = String::from_utf8(json_bytes(&v)).unwrap();
        assert!(s.is_ascii());
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn requests_missing_required_fields_are_refused_in_both_encodings() {
        use crate::v1::scheduler::Call;
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        // SUBSCRIBE without framework_info.user (name is there).
        let no_user = json(serde_json::json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": {"name": "fw"}}
        }));
        let err = Encoding::Json.decode_request::<Call>(&no_user).unwrap_err();
        let CodecError::MissingRequired { message, fields } = &err else {
            panic!("{err}");
        };
        assert_eq!(message, "mesos.v1.scheduler.Call");
        assert_eq!(fields, &["subscribe.framework_info.user"]);
        assert!(err.to_string().contains("subscribe.framework_info.user"));
        // The lenient decoder still takes it (internal use).
        assert!(Encoding::Json.decode::<Call>(&no_user).is_ok());
        // The same call in protobuf: the field is absent from the wire.
        let call: Call = Encoding::Json.decode(&no_user).unwrap();
        let mut dynamic =
            DynamicMessage::new(POOL.get_message_by_name("mesos.v1.scheduler.Call").unwrap());
        dynamic.transcode_from(&call).unwrap();
        // prost writes required strings even when empty; clear it so the
        // bytes are what a client that never set it sends.
        let sub = dynamic.get_field_by_name_mut("subscribe").unwrap();
        let prost_reflect::Value::Message(sub) = sub else {
            panic!()
        };
        let fi = sub.get_field_by_name_mut("framework_info").unwrap();
        let prost_reflect::Value::Message(fi) = fi else {
            panic!()
        };
        fi.clear_field_by_name("user");
        let bytes = dynamic.encode_to_vec();
        let err = Encoding::Protobuf
            .decode_request::<Call>(&bytes)
            .unwrap_err();
        assert!(
            matches!(&err, CodecError::MissingRequired { fields, .. }
            if fields == &["subscribe.framework_info.user"]),
            "{err}"
        );
        // Present (even empty) is enough, and unknown fields are ignored.
        let ok = json(serde_json::json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": {"user": "", "name": "fw", "no_such": 1}},
            "no_such_field": {"x": 1}
        }));
        let call: Call = Encoding::Json.decode_request(&ok).unwrap();
        assert_eq!(call.subscribe.unwrap().framework_info.name, "fw");
        // Paths into repeated messages carry their index.
        let accept = json(serde_json::json!({
            "type": "ACCEPT",
            "framework_id": {"value": "f"},
            "accept": {
                "offer_ids": [{"value": "o"}, {}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
                    {"name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a"},
                     "resources": [{"name": "cpus", "scalar": {"value": 1}}]}
                ]}}]
            }
        }));
        let err = Encoding::Json.decode_request::<Call>(&accept).unwrap_err();
        let CodecError::MissingRequired { fields, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(
            fields,
            &[
                "accept.offer_ids[1].value",
                "accept.operations[0].launch.task_infos[0].resources[0].type"
            ]
        );
    }
}

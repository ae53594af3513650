//! The events the publisher emits: CloudEvents 1.0 about tasks, agents and
//! frameworks, with the attributes the Kafka and AMQP bindings carry, the
//! deterministic ids that let consumers de-duplicate, and the RabbitMQ
//! routing key `<role>.<framework_id>.<kind>`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The CloudEvents version of every event.
pub const SPEC_VERSION: &str = "1.0";
/// The data content type of every event.
pub const CONTENT_TYPE: &str = "application/json";
/// The routing-key word for a missing role or framework (agent events).
pub const NONE_WORD: &str = "_";
/// The longest AMQP routing key (a short string).
pub const MAX_ROUTING_KEY: usize = 255;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A task.
    Task,
    /// An agent.
    Agent,
    /// A framework.
    Framework,
}

impl Kind {
    /// Lowercase name, as in the event type and the routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Agent => "agent",
            Kind::Framework => "framework",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It appeared (TASK_ADDED, AGENT_ADDED, FRAMEWORK_ADDED).
    Added,
    /// It changed (TASK_UPDATED, FRAMEWORK_UPDATED).
    Updated,
    /// It went away (AGENT_REMOVED, FRAMEWORK_REMOVED).
    Removed,
}

impl Change {
    /// Lowercase name, as in the event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Updated => "updated",
            Change::Removed => "removed",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as spooled and as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// `id`: deterministic (a hash of what the event says), so that an event
    /// published twice (a retry, a replay after a restart, a snapshot diff)
    /// carries the same id and consumers can drop the copy.
    pub id: String,
    /// What it is about.
    pub kind: Kind,
    /// What happened.
    pub change: Change,
    /// `source`: the publisher's `--source`.
    pub source: String,
    /// `time`: RFC 3339 (the status update's timestamp for task updates).
    pub time: String,
    /// `subject`: `tasks/<framework>/<task>`, `agents/<agent>` or
    /// `frameworks/<framework>`; also the Kafka message key, so that each
    /// object's events land in one partition, in order.
    pub subject: String,
    /// The role (a task's allocation role, a framework's first role);
    /// empty for agents.
    #[serde(default)]
    pub role: String,
    /// The framework; empty for agents.
    #[serde(default)]
    pub framework_id: String,
    /// The task, agent or framework id.
    pub object_id: String,
    /// A task's state after this event (`TASK_RUNNING`); `None` for others.
    #[serde(default)]
    pub state: Option<String>,
    /// What the publisher compares to notice a framework's change (not
    /// published).
    #[serde(default)]
    pub fingerprint: String,
    /// `data`: the operator event's payload in Mesos' JSON.
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// `type`: `io.corral.<kind>.<change>`.
    pub fn ce_type(&self) -> String {
        format!("io.corral.{}.{}", self.kind, self.change)
    }

    /// The Kafka message key.
    pub fn key(&self) -> &str {
        &self.subject
    }

    /// The RabbitMQ routing key: `<role>.<framework_id>.<kind>`, each word
    /// escaped by [`routing_word`].
    pub fn routing_key(&self) -> String {
        routing_key(&self.role, &self.framework_id, self.kind)
    }

    /// The CloudEvents context attributes, as (name, value) pairs, without
    /// `datacontenttype` (a binding maps that to its own content type).
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("specversion", SPEC_VERSION.to_string()),
            ("id", self.id.clone()),
            ("source", self.source.clone()),
            ("type", self.ce_type()),
            ("time", self.time.clone()),
            ("subject", self.subject.clone()),
        ];
        if !self.role.is_empty() {
            out.push(("corralrole", self.role.clone()));
        }
        if !self.framework_id.is_empty() {
            out.push(("corralframework", self.framework_id.clone()));
        }
        if let Some(state) = &self.state {
            out.push(("corralstate", state.clone()));
        }
        out
    }

    /// The payload bytes (`data` as compact JSON).
    pub fn data_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.data).unwrap_or_default()
    }
}

/// The routing key of an event about `kind` in `role` and `framework_id`.
pub fn routing_key(role: &str, framework_id: &str, kind: Kind) -> String {
    let role = routing_word(role);
    let framework = routing_word(framework_id);
    let key = format!("{role}.{framework}.{kind}");
    if key.len() <= MAX_ROUTING_KEY {
        return key;
    }
    // Over-long values (never in practice): a stable digest in their place.
    let short = |w: String| {
        if w.len() > 100 {
            format!("~{}", &hex_digest(&[w.as_str()])[..32])
        } else {
            w
        }
    };
    format!("{}.{}.{kind}", short(role), short(framework))
}

/// One word of a routing key (or of a binding pattern that must match it
/// literally): `%` `.` `*` `#` and whitespace percent-escaped, so that a
/// role with dots stays one word and the default role `*` can be bound to
/// literally (`%2A.#`); an empty value is `_`.
pub fn routing_word(value: &str) -> String {
    if value.is_empty() {
        return NONE_WORD.to_string();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' | '.' | '*' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_whitespace() || c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Hex SHA-256 of the parts (separated by NUL, so `("ab","c")` and
/// `("a","bc")` differ).
pub fn hex_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A deterministic event id: 128 bits of SHA-256 over the parts, as 32 hex
/// digits.
pub fn event_id(parts: &[&str]) -> String {
    hex_digest(parts)[..32].to_string()
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// RFC 3339 UTC time (`2026-01-02T03:04:05.678901Z`) of seconds since the
/// Unix epoch; out-of-range values are clamped to the epoch.
pub fn rfc3339(unix_seconds: f64) -> String {
    let secs = if unix_seconds.is_finite() && (0.0..253_402_300_800.0).contains(&unix_seconds) {
        unix_seconds
    } else {
        0.0
    };
    let whole = secs.floor() as i64;
    let micros = ((secs - whole as f64) * 1_000_000.0).round().min(999_999.0) as i64;
    let days = whole.div_euclid(86_400);
    let rem = whole.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_escape_their_words() {
        assert_eq!(
            routing_key("analytics", "fw-1", Kind::Task),
            "analytics.fw-1.task"
        );
        assert_eq!(routing_key("a.b", "f", Kind::Task), "a%2Eb.f.task");
        assert_eq!(routing_key("*", "f", Kind::Framework), "%2A.f.framework");
        assert_eq!(routing_key("", "", Kind::Agent), "_._.agent");
        assert_eq!(routing_word("50%#x y"), "50%25%23x%20y");
        assert_eq!(routing_word("eng/analytics"), "eng/analytics");
        let long = "r".repeat(300);
        let k = routing_key(&long, "f", Kind::Task);
        assert!(k.len() <= MAX_ROUTING_KEY, "{k}");
        assert_eq!(k.split('.').count(), 3);
    }

    #[test]
    fn ids_are_deterministic_and_separated() {
        assert_eq!(event_id(&["a", "b"]), event_id(&["a", "b"]));
        assert_ne!(event_id(&["ab", "c"]), event_id(&["a", "bc"]));
        assert_eq!(event_id(&["x"]).len(), 32);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500000Z");
        assert_eq!(rfc3339(1_767_225_599.0), "2025-12-31T23:59:59.000000Z");
        assert_eq!(rfc3339(f64::NAN), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(-5.0), "1970-01-01T00:00:00.000000Z");
    }
}

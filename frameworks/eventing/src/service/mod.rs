//! The eventing service's pure cores.
//!
//! The eventing service has an API tier (HTTP/JSON for clients) and a backend
//! tier (long-lived Kafka producers and consumers), with RabbitMQ routing each
//! request to the backend that owns the session's shard. Everything here is a
//! *pure core* in the sense of `DESIGN.md` ("Bundled frameworks"): no sockets,
//! no async, no clock of its own (time is passed in as milliseconds from an
//! origin the shell picks), no randomness it does not get from the caller
//! (except the convenience `*_random` constructors that read the OS RNG). The
//! shells feed the cores and carry out what they return.
//!
//! | module | what it decides |
//! | --- | --- |
//! | [`ring`] | session key -> shard (stable hash), shard -> backend (rendezvous hashing), and the [`ring::Assignment`] diff when backends come and go |
//! | [`crypto`] | per-topic AES-256-GCM sealing of payloads before Kafka, keys from key files, rotation by key id |
//! | [`token`] | bearer-token authentication and per-topic read/write authorization |
//! | [`session`] | the session protocol: allocate, read (bounded read-ahead), ack, write (de-duplicated, acked when Kafka has it), dispose, idle expiry |
//! | [`offset_token`] | the opaque, HMAC-protected offset token handed to clients |
//! | [`wire`] | the JSON request/response types of the HTTP API and the RabbitMQ envelope |
//!
//! The shells around them: [`api`] (the API tier: HTTP in, RabbitMQ out),
//! [`backend`] (the backend tier: RabbitMQ in, Kafka out and in), [`amqp`]
//! (the RabbitMQ topology both share) and [`client`] (a Rust client that
//! resumes from offset tokens).
//!
//! Every error a client can cause implements [`ClientError`]: a 4xx status, a
//! stable machine-readable code and a message (its `Display`) that names the
//! offending field or object.

#[cfg(feature = "server")]
pub mod amqp;
#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod backend;
pub mod client;
pub mod crypto;
#[cfg(feature = "server")]
pub mod grpc;
pub mod offset_token;
pub mod ring;
pub mod session;
pub mod token;
pub mod wire;

use std::fmt;

use serde::{Deserialize, Serialize};

/// Monotonic time in milliseconds, from an origin chosen by the shell (for
/// example the process start). The cores only compare and subtract these.
pub type Millis = u64;

/// An error a client caused, answered with a 4xx.
///
/// The message to show is the error's `Display`; it names the field or the
/// object the problem is about.
pub trait ClientError: std::error::Error {
    /// The HTTP status the shell answers with; always in `400..=499`.
    fn status(&self) -> u16;
    /// A stable, machine-readable code (snake_case) for the error body.
    fn code(&self) -> &'static str;
}

/// The longest Kafka topic name (Kafka's own limit).
pub const MAX_TOPIC_LEN: usize = 249;

/// Why a topic name or topic pattern is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_LEN`].
    #[error("topic name is {len} characters long, at most {MAX_TOPIC_LEN} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name is `.` or `..`, which Kafka refuses.
    #[error("topic name {0:?} is not allowed")]
    Reserved(String),
    /// The name has a character outside `[A-Za-z0-9._-]`.
    #[error("topic name {name:?} has the character {ch:?}; only letters, digits, '.', '_' and '-' are allowed")]
    BadChar {
        /// The whole name.
        name: String,
        /// The first offending character.
        ch: char,
    },
    /// A pattern has a `*` somewhere other than at its end.
    #[error("topic pattern {0:?} may only have '*' at its end")]
    StarNotAtEnd(String),
}

/// Checks a Kafka topic name: 1 to 249 characters from `[A-Za-z0-9._-]`,
/// neither `.` nor `..`.
pub fn validate_topic(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(TopicError::Reserved(name.to_owned()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicError::BadChar {
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// A topic pattern: an exact topic name (`orders`), a prefix ending in `*`
/// (`orders*`, `orders.*`), or `*` for every topic.
///
/// Serialised as its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicPattern {
    text: String,
}

impl TopicPattern {
    /// Parses a pattern; the part before a trailing `*` must be a valid topic
    /// prefix (allowed characters only; may be empty for `*`).
    pub fn parse(text: &str) -> Result<TopicPattern, TopicError> {
        match text.strip_suffix('*') {
            Some(prefix) => {
                if prefix.contains('*') {
                    return Err(TopicError::StarNotAtEnd(text.to_owned()));
                }
                if prefix.len() > MAX_TOPIC_LEN {
                    return Err(TopicError::TooLong { len: prefix.len() });
                }
                if let Some(ch) = prefix
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                {
                    return Err(TopicError::BadChar {
                        name: text.to_owned(),
                        ch,
                    });
                }
            }
            None => {
                if text.contains('*') {
                    return Err(TopicError::StarNotAtEnd(text.to_owned()));
                }
                validate_topic(text)?;
            }
        }
        Ok(TopicPattern {
            text: text.to_owned(),
        })
    }

    /// The pattern's text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern is a prefix pattern (ends in `*`).
    pub fn is_prefix(&self) -> bool {
        self.text.ends_with('*')
    }

    /// Whether `topic` matches: equal to an exact pattern, or starting with a
    /// prefix pattern's prefix.
    pub fn matches(&self, topic: &str) -> bool {
        match self.text.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => topic == self.text,
        }
    }

    /// How specific the pattern is: exact patterns beat every prefix pattern,
    /// longer prefixes beat shorter ones. Larger is more specific.
    pub fn specificity(&self) -> usize {
        match self.text.strip_suffix('*') {
            Some(prefix) => prefix.len(),
            None => usize::MAX,
        }
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicPattern({:?})", self.text)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for TopicPattern {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TopicPattern::parse(&s)
    }
}

impl From<TopicPattern> for String {
    fn from(p: TopicPattern) -> String {
        p.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic("orders").is_ok());
        assert!(validate_topic("corral.events_v1-x").is_ok());
        assert_eq!(validate_topic(""), Err(TopicError::Empty));
        assert!(matches!(validate_topic(".."), Err(TopicError::Reserved(_))));
        assert!(matches!(
            validate_topic("a b"),
            Err(TopicError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            validate_topic(&"x".repeat(250)),
            Err(TopicError::TooLong { len: 250 })
        ));
    }

    #[test]
    fn patterns() {
        let all = TopicPattern::parse("*").unwrap();
        assert!(all.matches("anything") && all.is_prefix());
        let p = TopicPattern::parse("orders.*").unwrap();
        assert!(p.matches("orders.eu") && !p.matches("orders") && !p.matches("ordersx"));
        let q = TopicPattern::parse("orders*").unwrap();
        assert!(q.matches("orders") && q.matches("orders.eu"));
        let e = TopicPattern::parse("orders").unwrap();
        assert!(e.matches("orders") && !e.matches("orders.eu"));
        assert!(e.specificity() > p.specificity() && p.specificity() > q.specificity());
        assert!(q.specificity() > all.specificity());
        assert!(matches!(
            TopicPattern::parse("or*ders"),
            Err(TopicError::StarNotAtEnd(_))
        ));
        assert!(matches!(
            TopicPattern::parse("**"),
            Err(TopicError::StarNotAtEnd(_))
        ));
        assert!(TopicPattern::parse("a b*").is_err());
        let json: TopicPattern = serde_json::from_str("\"orders.*\"").unwrap();
        assert_eq!(json, p);
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"orders.*\"");
        assert!(serde_json::from_str::<TopicPattern>("\"a*b\"").is_err());
    }
}

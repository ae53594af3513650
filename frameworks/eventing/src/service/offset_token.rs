//! The opaque offset token handed to clients.
//!
//! A session's committed offsets (per partition, the next offset to read)
//! travel to the client as a token; a client whose backend died allocates a
//! new session from it and loses nothing. The token is opaque to the client
//! but must not be forgeable (a client could otherwise skip or replay other
//! data than it acked), so it carries an HMAC-SHA-256 tag under a service
//! secret that every backend shares.
//!
//! ```text
//! token   = base64url-no-pad(payload || tag)
//! payload = version (1)
//!           topic length u8 || topic
//!           selector: 0 (all partitions) | 1 || partition i32 | 2 || group length u8 || group
//!           count u16 || count x (partition i32 || next offset i64)       (big-endian)
//! tag     = first 16 bytes of HMAC-SHA-256(secret, "corral-eventing/offset-token/v1" || payload)
//! ```
//!
//! Secrets rotate: [`OffsetTokenCodec::accept_also`] adds an older secret
//! that still verifies tokens while only the current one signs.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ClientError;

/// The version byte of tokens this build writes.
pub const TOKEN_VERSION: u8 = 1;
/// The shortest service secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// The most partitions one token can carry.
pub const MAX_TOKEN_PARTITIONS: usize = 2048;
/// The longest token text accepted, in characters.
pub const MAX_TOKEN_CHARS: usize = 40_000;
/// The longest consumer group name.
pub const MAX_GROUP_LEN: usize = 255;

const TAG_LEN: usize = 16;
const LABEL: &[u8] = b"corral-eventing/offset-token/v1";

/// Which partitions of the topic a session reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Every partition of the topic, offsets held by the client.
    AllPartitions,
    /// One partition.
    Partition(i32),
    /// The partitions a Kafka consumer group assigns to the session.
    Group(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::AllPartitions => f.write_str("all partitions"),
            Selector::Partition(p) => write!(f, "partition {p}"),
            Selector::Group(g) => write!(f, "consumer group {g:?}"),
        }
    }
}

/// Per partition, the next offset to read (one past the last acked event).
pub type Positions = BTreeMap<i32, i64>;

/// What an offset token says: a topic, a selector and committed positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetState {
    /// The topic.
    pub topic: String,
    /// Which partitions.
    pub selector: Selector,
    /// The committed positions.
    pub positions: Positions,
}

/// Why a token could not be decoded. Every variant is a 400 naming the
/// field `offsetToken`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetTokenError {
    /// Longer than [`MAX_TOKEN_CHARS`].
    #[error("field \"offsetToken\" is {0} characters long, at most {MAX_TOKEN_CHARS} are allowed")]
    TooLong(usize),
    /// Not base64url without padding.
    #[error("field \"offsetToken\" is not valid base64url")]
    NotBase64,
    /// Too short or its fields run past its end.
    #[error("field \"offsetToken\" is truncated")]
    Truncated,
    /// A version this build does not read.
    #[error("field \"offsetToken\" has unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The tag does not verify: forged, altered or from another service.
    #[error("field \"offsetToken\" failed verification (altered, or issued by another service)")]
    BadSignature,
    /// Verified, but its content is impossible (a bug or an old format).
    #[error("field \"offsetToken\" is malformed: {0}")]
    Malformed(&'static str),
}

impl ClientError for OffsetTokenError {
    fn status(&self) -> u16 {
        400
    }
    fn code(&self) -> &'static str {
        "invalid_offset_token"
    }
}

/// The service secret is too short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset token secret is {0} bytes long, at least {MIN_SECRET_LEN} are required")]
pub struct SecretTooShort(pub usize);

/// Signs and verifies offset tokens. `Debug` never shows the secrets.
#[derive(Clone)]
pub struct OffsetTokenCodec {
    current: Hmac<Sha256>,
    previous: Vec<Hmac<Sha256>>,
}

impl fmt::Debug for OffsetTokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffsetTokenCodec")
            .field("previous_secrets", &self.previous.len())
            .finish_non_exhaustive()
    }
}

fn mac(secret: &[u8]) -> Result<Hmac<Sha256>, SecretTooShort> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretTooShort(secret.len()));
    }
    Ok(Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length"))
}

impl OffsetTokenCodec {
    /// A codec signing with `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &[u8]) -> Result<OffsetTokenCodec, SecretTooShort> {
        Ok(OffsetTokenCodec {
            current: mac(secret)?,
            previous: Vec::new(),
        })
    }

    /// Also verifies tokens signed with an older `secret`.
    pub fn accept_also(mut self, secret: &[u8]) -> Result<OffsetTokenCodec, SecretTooShort> {
        self.previous.push(mac(secret)?);
        Ok(self)
    }

    /// Encodes and signs a state.
    ///
    /// # Panics
    /// If the topic is longer than 255 bytes, the group longer than
    /// [`MAX_GROUP_LEN`] or there are more than [`MAX_TOKEN_PARTITIONS`]
    /// positions; sessions validate these at allocation.
    pub fn encode(&self, state: &OffsetState) -> String {
        assert!(state.topic.len() <= 255, "topic too long for a token");
        assert!(state.positions.len() <= MAX_TOKEN_PARTITIONS);
        let mut p = Vec::with_capacity(8 + state.topic.len() + 12 * state.positions.len());
        p.push(TOKEN_VERSION);
        p.push(state.topic.len() as u8);
        p.extend_from_slice(state.topic.as_bytes());
        match &state.selector {
            Selector::AllPartitions => p.push(0),
            Selector::Partition(n) => {
                p.push(1);
                p.extend_from_slice(&n.to_be_bytes());
            }
            Selector::Group(g) => {
                assert!(g.len() <= MAX_GROUP_LEN, "group too long for a token");
                p.push(2);
                p.push(g.len() as u8);
                p.extend_from_slice(g.as_bytes());
            }
        }
        p.extend_from_slice(&(state.positions.len() as u16).to_be_bytes());
        for (part, off) in &state.positions {
            p.extend_from_slice(&part.to_be_bytes());
            p.extend_from_slice(&off.to_be_bytes());
        }
        let tag = tag(&self.current, &p);
        p.extend_from_slice(&tag[..TAG_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(p)
    }

    /// Verifies and decodes a token. Never panics, whatever the input.
    pub fn decode(&self, token: &str) -> Result<OffsetState, OffsetTokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(OffsetTokenError::TooLong(token.len()));
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| OffsetTokenError::NotBase64)?;
        if raw.len() < 1 + TAG_LEN {
            return Err(OffsetTokenError::Truncated);
        }
        if raw[0] != TOKEN_VERSION {
            return Err(OffsetTokenError::UnsupportedVersion(raw[0]));
        }
        let (payload, tag) = raw.split_at(raw.len() - TAG_LEN);
        let ok = std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|m| {
                let mut m = m.clone();
                m.update(LABEL);
                m.update(payload);
                m.verify_truncated_left(tag).is_ok()
            });
        if !ok {
            return Err(OffsetTokenError::BadSignature);
        }
        parse_payload(&payload[1..])
    }
}

fn tag(mac: &Hmac<Sha256>, payload: &[u8]) -> [u8; 32] {
    let mut m = mac.clone();
    m.update(LABEL);
    m.update(payload);
    m.finalize().into_bytes().into()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OffsetTokenError> {
        if self.0.len() < n {
            return Err(OffsetTokenError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, OffsetTokenError> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, OffsetTokenError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, OffsetTokenError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self, n: usize) -> Result<String, OffsetTokenError> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| OffsetTokenError::Malformed("text is not UTF-8"))
    }
}

fn parse_payload(body: &[u8]) -> Result<OffsetState, OffsetTokenError> {
    let mut r = Reader(body);
    let n = r.u8()? as usize;
    let topic = r.str(n)?;
    let selector = match r.u8()? {
        0 => Selector::AllPartitions,
        1 => Selector::Partition(r.i32()?),
        2 => {
            let n = r.u8()? as usize;
            Selector::Group(r.str(n)?)
        }
        _ => return Err(OffsetTokenError::Malformed("unknown selector")),
    };
    let count = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes")) as usize;
    if count > MAX_TOKEN_PARTITIONS {
        return Err(OffsetTokenError::Malformed("too many partitions"));
    }
    let mut positions = Positions::new();
    for _ in 0..count {
        let part = r.i32()?;
        let off = r.i64()?;
        if part < 0 || off < 0 {
            return Err(OffsetTokenError::Malformed("negative partition or offset"));
        }
        if positions.insert(part, off).is_some() {
            return Err(OffsetTokenError::Malformed("partition listed twice"));
        }
    }
    if !r.0.is_empty() {
        return Err(OffsetTokenError::Malformed("trailing bytes"));
    }
    Ok(OffsetState {
        topic,
        selector,
        positions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> OffsetTokenCodec {
        OffsetTokenCodec::new(&[42u8; 32]).unwrap()
    }

    fn state() -> OffsetState {
        OffsetState {
            topic: "orders".into(),
            selector: Selector::Group("billing".into()),
            positions: [(0, 10), (3, 7)].into_iter().collect(),
        }
    }

    #[test]
    fn round_trip() {
        let c = codec();
        let t = c.encode(&state());
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(c.decode(&t).unwrap(), state());
    }

    #[test]
    fn secrets() {
        assert_eq!(
            OffsetTokenCodec::new(b"short").unwrap_err(),
            SecretTooShort(5)
        );
        let old = OffsetTokenCodec::new(&[1u8; 32]).unwrap();
        let t = old.encode(&state());
        assert_eq!(codec().decode(&t), Err(OffsetTokenError::BadSignature));
        let rotated = codec().accept_also(&[1u8; 32]).unwrap();
        assert_eq!(rotated.decode(&t).unwrap(), state());
        // New tokens are signed with the current secret only.
        assert!(old.decode(&rotated.encode(&state())).is_err());
        assert!(!format!("{rotated:?}").contains("42"));
    }

    #[test]
    fn bad_tokens_are_clean_errors() {
        let c = codec();
        assert_eq!(c.decode(""), Err(OffsetTokenError::Truncated));
        assert_eq!(c.decode("!!!"), Err(OffsetTokenError::NotBase64));
        assert_eq!(c.decode("AAAA="), Err(OffsetTokenError::NotBase64));
        assert!(matches!(
            c.decode(&"A".repeat(MAX_TOKEN_CHARS + 1)),
            Err(OffsetTokenError::TooLong(_))
        ));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 40]);
        assert_eq!(c.decode(&raw), Err(OffsetTokenError::UnsupportedVersion(9)));
        let e = c.decode("!!!").unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "invalid_offset_token"));
        assert!(e.to_string().contains("offsetToken"));
    }

    fn arb_state() -> impl Strategy<Value = OffsetState> {
        (
            "[a-z._-]{1,40}",
            prop_oneof![
                Just(Selector::AllPartitions),
                (0i32..1000).prop_map(Selector::Partition),
                "[a-z0-9-]{1,30}".prop_map(Selector::Group),
            ],
            prop::collection::btree_map(0i32..i32::MAX, 0i64..i64::MAX, 0..40),
        )
            .prop_map(|(topic, selector, positions)| OffsetState {
                topic,
                selector,
                positions,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(s in arb_state()) {
            let c = codec();
            prop_assert_eq!(c.decode(&c.encode(&s)).unwrap(), s);
        }

        #[test]
        fn any_change_is_rejected(s in arb_state(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let c = codec();
            let t = c.encode(&s);
            let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&t).unwrap();
            let i = pos.index(raw.len());
            raw[i] ^= 1 << bit;
            let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(c.decode(&forged).is_err());
        }

        #[test]
        fn garbage_never_panics(t in "[A-Za-z0-9_-]{0,200}") {
            let _ = codec().decode(&t);
        }
    }
}

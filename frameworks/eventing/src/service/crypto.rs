//! Per-topic AES-256-GCM payload encryption before Kafka.
//!
//! # Key files
//!
//! The framework is given one or more key files (the producers and the
//! consumers of the backend tier share them). Each is JSON:
//!
//! ```json
//! {"keys": [
//!   {"topic": "orders",   "id": "orders-2024", "key": "<base64 of 32 bytes>"},
//!   {"topic": "orders",   "id": "orders-2025", "key": "<base64 of 32 bytes>"},
//!   {"topic": "audit.*",  "id": "audit-1",     "key": "<base64 of 32 bytes>"}
//! ]}
//! ```
//!
//! `topic` is a [`TopicPattern`]: an exact topic, a
//! prefix ending in `*`, or `*`. `id` names the key (1 to 64 characters from
//! `[A-Za-z0-9._-]`, unique across all files). `key` is standard base64 (with
//! padding) of exactly 32 random bytes, e.g. `head -c32 /dev/urandom | base64`.
//! Unknown fields are refused, so a typo is an error rather than a silently
//! unencrypted topic.
//!
//! A topic is encrypted when some pattern matches it; the most specific
//! matching pattern (exact, then the longest prefix) decides which keys
//! apply. Entries for the same pattern are listed oldest first (files in the
//! order given, entries in file order): the **newest encrypts**, and every
//! key decrypts what it sealed, found by the key id the sealed value carries.
//! To rotate, append a new entry and roll the backends; remove an old key
//! only once nothing sealed with it is left in Kafka.
//!
//! # Sealed values
//!
//! ```text
//! [0]        version (1)
//! [1]        key id length L (1..=64)
//! [2..2+L]   key id (ASCII)
//! [..+12]    nonce: 96 random bits
//! [..]       AES-256-GCM ciphertext followed by its 16-byte tag
//! ```
//!
//! The associated data binds the header and the topic name, so a sealed value
//! copied to another topic or with an edited header fails to open. With
//! random nonces one key should seal at most 2^32 values (NIST SP 800-38D);
//! rotate well before that.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::Deserialize;

use super::{TopicError, TopicPattern};

/// The version byte of sealed values this module writes.
pub const SEAL_VERSION: u8 = 1;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes in the GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;

const AAD_LABEL: &[u8] = b"corral-eventing/seal/v1";

/// What is wrong with one key entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// `topic` is not a valid topic pattern.
    #[error("field \"topic\": {0}")]
    Topic(TopicError),
    /// `id` is empty, too long or has a character outside `[A-Za-z0-9._-]`.
    #[error("field \"id\": {0}")]
    Id(String),
    /// `key` is not standard base64.
    #[error("field \"key\": not valid base64 ({0})")]
    KeyNotBase64(String),
    /// `key` decodes to the wrong number of bytes.
    #[error("field \"key\": must decode to {KEY_LEN} bytes, got {0}")]
    KeyLength(usize),
}

/// A key file that cannot be used; the message names the file and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("key file {file}: cannot read: {message}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        message: String,
    },
    /// The file is not the expected JSON (message has line and column).
    #[error("key file {file}: {message}")]
    Json {
        /// The file.
        file: String,
        /// serde_json's message.
        message: String,
    },
    /// One entry is invalid.
    #[error("key file {file}: entry keys[{entry}]{}: {problem}", id_suffix(.id))]
    Entry {
        /// The file.
        file: String,
        /// The entry's index in `keys`.
        entry: usize,
        /// The entry's id, when it has a usable one.
        id: Option<String>,
        /// What is wrong.
        problem: KeyProblem,
    },
    /// Two entries use the same key id.
    #[error("key file {file}: entry keys[{entry}]: key id {id:?} is already used by keys[{first_entry}] in {first_file}")]
    DuplicateId {
        /// The file of the second use.
        file: String,
        /// The index of the second use.
        entry: usize,
        /// The id.
        id: String,
        /// The file of the first use.
        first_file: String,
        /// The index of the first use.
        first_entry: usize,
    },
}

fn id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!(" (id {i:?})"))
        .unwrap_or_default()
}

/// Why sealing or opening failed. Opening never panics, whatever the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// No key pattern matches the topic.
    #[error("no encryption key matches topic {topic:?}")]
    NoKeyForTopic {
        /// The topic.
        topic: String,
    },
    /// The value is shorter than a sealed value can be.
    #[error("sealed value for topic {topic:?} is truncated ({len} bytes)")]
    Truncated {
        /// The topic.
        topic: String,
        /// Its length.
        len: usize,
    },
    /// The version byte is not one this build reads.
    #[error("sealed value for topic {topic:?} has unsupported version {version}")]
    UnsupportedVersion {
        /// The topic.
        topic: String,
        /// The version byte.
        version: u8,
    },
    /// The key id is not in the keyring (or is not a valid id).
    #[error("sealed value for topic {topic:?} uses unknown key id {key_id:?}")]
    UnknownKeyId {
        /// The topic.
        topic: String,
        /// The key id, lossily decoded.
        key_id: String,
    },
    /// The key exists but its pattern does not cover the topic.
    #[error("key {key_id:?} is not a key for topic {topic:?}")]
    KeyNotForTopic {
        /// The topic.
        topic: String,
        /// The key id.
        key_id: String,
    },
    /// Authentication failed: the value, its header or its topic was changed,
    /// or it was sealed under another key with the same id.
    #[error("sealed value for topic {topic:?} (key {key_id:?}) failed authentication")]
    Tampered {
        /// The topic.
        topic: String,
        /// The key id.
        key_id: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    keys: Vec<KeyEntryJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntryJson {
    topic: String,
    id: String,
    key: String,
}

struct LoadedKey {
    pattern: TopicPattern,
    cipher: Aes256Gcm,
    file: String,
    entry: usize,
}

/// The keys of all key files, ready to seal and open.
///
/// `Debug` shows patterns and key ids, never key material.
pub struct Keyring {
    keys: HashMap<String, LoadedKey>,
    /// Per pattern, key ids oldest first.
    by_pattern: Vec<(TopicPattern, Vec<String>)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (p, ids) in &self.by_pattern {
            m.entry(&p.as_str(), ids);
        }
        m.finish()
    }
}

fn check_key_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_KEY_ID_LEN {
        return Err(format!(
            "is {} characters long, at most {MAX_KEY_ID_LEN} are allowed",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "has the character {c:?}; only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

impl Keyring {
    /// A keyring with no keys: no topic is encrypted.
    pub fn empty() -> Keyring {
        Keyring {
            keys: HashMap::new(),
            by_pattern: Vec::new(),
        }
    }

    /// Builds a keyring from key files' contents, `(file name, contents)`,
    /// oldest first. The name is only used in error messages.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Keyring, KeyFileError> {
        let mut ring = Keyring::empty();
        for (file, contents) in sources {
            ring.add_source(file, contents)?;
        }
        Ok(ring)
    }

    /// Reads and parses key files, oldest first.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Keyring, KeyFileError> {
        let mut ring = Keyring::empty();
        for path in paths {
            let file = path.as_ref().display().to_string();
            let contents = std::fs::read_to_string(path).map_err(|e| KeyFileError::Read {
                file: file.clone(),
                message: e.to_string(),
            })?;
            ring.add_source(&file, &contents)?;
        }
        Ok(ring)
    }

    fn add_source(&mut self, file: &str, contents: &str) -> Result<(), KeyFileError> {
        let parsed: KeyFileJson =
            serde_json::from_str(contents).map_err(|e| KeyFileError::Json {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
        // Validate the whole file before adding anything from it.
        let mut staged: Vec<(String, LoadedKey)> = Vec::with_capacity(parsed.keys.len());
        for (entry, k) in parsed.keys.into_iter().enumerate() {
            let err = |id: Option<String>, problem| KeyFileError::Entry {
                file: file.to_owned(),
                entry,
                id,
                problem,
            };
            check_key_id(&k.id).map_err(|m| err(None, KeyProblem::Id(m)))?;
            let id = Some(k.id.clone());
            let pattern =
                TopicPattern::parse(&k.topic).map_err(|e| err(id.clone(), KeyProblem::Topic(e)))?;
            let mut bytes = base64::engine::general_purpose::STANDARD
                .decode(k.key.trim())
                .map_err(|e| err(id.clone(), KeyProblem::KeyNotBase64(e.to_string())))?;
            if bytes.len() != KEY_LEN {
                let n = bytes.len();
                bytes.fill(0);
                return Err(err(id, KeyProblem::KeyLength(n)));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).expect("32-byte key");
            bytes.fill(0);
            let first = self
                .keys
                .get(&k.id)
                .map(|f| (f.file.clone(), f.entry))
                .or_else(|| {
                    staged
                        .iter()
                        .find(|(i, _)| *i == k.id)
                        .map(|(_, f)| (f.file.clone(), f.entry))
                });
            if let Some((first_file, first_entry)) = first {
                return Err(KeyFileError::DuplicateId {
                    file: file.to_owned(),
                    entry,
                    id: k.id,
                    first_file,
                    first_entry,
                });
            }
            staged.push((
                k.id,
                LoadedKey {
                    pattern,
                    cipher,
                    file: file.to_owned(),
                    entry,
                },
            ));
        }
        for (id, key) in staged {
            match self.by_pattern.iter_mut().find(|(p, _)| *p == key.pattern) {
                Some((_, ids)) => ids.push(id.clone()),
                None => self
                    .by_pattern
                    .push((key.pattern.clone(), vec![id.clone()])),
            }
            self.keys.insert(id, key);
        }
        Ok(())
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether values written to `topic` are sealed.
    pub fn is_encrypted(&self, topic: &str) -> bool {
        self.sealing_key_id(topic).is_some()
    }

    /// The id of the key that seals new values on `topic`: the newest key of
    /// the most specific matching pattern.
    pub fn sealing_key_id(&self, topic: &str) -> Option<&str> {
        self.by_pattern
            .iter()
            .filter(|(p, _)| p.matches(topic))
            .max_by_key(|(p, _)| p.specificity())
            .and_then(|(_, ids)| ids.last())
            .map(String::as_str)
    }

    /// Seals `plaintext` for `topic` with a fresh random nonce from the OS.
    pub fn seal(&self, topic: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use aes_gcm::aead::rand_core::RngCore as _;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        self.seal_with_nonce(topic, plaintext, nonce)
    }

    /// Seals `plaintext` for `topic` with the given nonce. The nonce must
    /// never repeat under one key: pass 96 random bits (tests pass fixed ones).
    pub fn seal_with_nonce(
        &self,
        topic: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        let key_id = self
            .sealing_key_id(topic)
            .ok_or_else(|| CryptoError::NoKeyForTopic {
                topic: topic.to_owned(),
            })?;
        let key = &self.keys[key_id];
        let mut out = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(SEAL_VERSION);
        out.push(key_id.len() as u8);
        out.extend_from_slice(key_id.as_bytes());
        let aad = aad(&out, topic);
        let ct = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Tampered {
                topic: topic.to_owned(),
                key_id: key_id.to_owned(),
            })?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// The key id a sealed value names, without opening it.
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let len = *sealed.get(1)? as usize;
        std::str::from_utf8(sealed.get(2..2 + len)?).ok()
    }

    /// Opens a value sealed for `topic`. Fails cleanly on truncation, an
    /// unknown version or key id, a key of another topic, or any change.
    pub fn open(&self, topic: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let truncated = || CryptoError::Truncated {
            topic: topic.to_owned(),
            len: sealed.len(),
        };
        let version = *sealed.first().ok_or_else(truncated)?;
        if version != SEAL_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                topic: topic.to_owned(),
                version,
            });
        }
        let id_len = *sealed.get(1).ok_or_else(truncated)? as usize;
        let header_len = 2 + id_len;
        if sealed.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(truncated());
        }
        let id_bytes = &sealed[2..header_len];
        let key_id = String::from_utf8_lossy(id_bytes).into_owned();
        let key = self
            .keys
            .get(&key_id)
            .filter(|_| id_len > 0)
            .ok_or_else(|| CryptoError::UnknownKeyId {
                topic: topic.to_owned(),
                key_id: key_id.clone(),
            })?;
        if !key.pattern.matches(topic) {
            return Err(CryptoError::KeyNotForTopic {
                topic: topic.to_owned(),
                key_id,
            });
        }
        let nonce = &sealed[header_len..header_len + NONCE_LEN];
        let aad = aad(&sealed[..header_len], topic);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &sealed[header_len + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Tampered {
                topic: topic.to_owned(),
                key_id,
            })
    }
}

fn aad(header: &[u8], topic: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + header.len() + 2 + topic.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    aad.extend_from_slice(topic.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key_b64(fill: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([fill; 32])
    }

    fn ring() -> Keyring {
        let a = format!(
            r#"{{"keys":[
                {{"topic":"orders","id":"o1","key":"{}"}},
                {{"topic":"orders","id":"o2","key":"{}"}},
                {{"topic":"orders.*","id":"op","key":"{}"}},
                {{"topic":"*","id":"all","key":"{}"}}
            ]}}"#,
            key_b64(1),
            key_b64(2),
            key_b64(3),
            key_b64(4)
        );
        Keyring::from_sources([("a.json", a.as_str())]).unwrap()
    }

    #[test]
    fn newest_most_specific_key_seals() {
        let r = ring();
        assert_eq!(r.sealing_key_id("orders"), Some("o2"));
        assert_eq!(r.sealing_key_id("orders.eu"), Some("op"));
        assert_eq!(r.sealing_key_id("other"), Some("all"));
        assert_eq!(r.len(), 4);
        let e = Keyring::empty();
        assert!(!e.is_encrypted("orders") && e.is_empty());
        assert_eq!(
            e.seal("orders", b"x"),
            Err(CryptoError::NoKeyForTopic {
                topic: "orders".into()
            })
        );
    }

    #[test]
    fn round_trip_and_format() {
        let r = ring();
        let sealed = r.seal_with_nonce("orders", b"hello", [7; 12]).unwrap();
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(Keyring::key_id_of(&sealed), Some("o2"));
        assert_eq!(sealed.len(), 2 + 2 + 12 + 5 + 16);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(r.open("orders", &sealed).unwrap(), b"hello");
        // Random nonces differ.
        let a = r.seal("orders", b"hello").unwrap();
        let b = r.seal("orders", b"hello").unwrap();
        assert_ne!(a, b);
        assert_eq!(r.open("orders", &a).unwrap(), b"hello");
    }

    #[test]
    fn rotation_old_keys_still_open() {
        let old = format!(
            r#"{{"keys":[{{"topic":"orders","id":"o1","key":"{}"}}]}}"#,
            key_b64(1)
        );
        let before = Keyring::from_sources([("old.json", old.as_str())]).unwrap();
        let sealed_old = before.seal("orders", b"v1").unwrap();
        let new = format!(
            r#"{{"keys":[{{"topic":"orders","id":"o9","key":"{}"}}]}}"#,
            key_b64(9)
        );
        let after = Keyring::from_sources([("old.json", old.as_str()), ("new.json", new.as_str())])
            .unwrap();
        assert_eq!(after.sealing_key_id("orders"), Some("o9"));
        assert_eq!(after.open("orders", &sealed_old).unwrap(), b"v1");
        let sealed_new = after.seal("orders", b"v2").unwrap();
        assert!(matches!(
            before.open("orders", &sealed_new),
            Err(CryptoError::UnknownKeyId { .. })
        ));
    }

    #[test]
    fn clean_failures() {
        let r = ring();
        let sealed = r.seal_with_nonce("orders", b"payload", [1; 12]).unwrap();
        // Another topic: the key does not cover it.
        assert!(matches!(
            r.open("other", &sealed),
            Err(CryptoError::KeyNotForTopic { .. })
        ));
        // A topic the key covers but the value was not sealed for.
        let s2 = r.seal_with_nonce("orders.eu", b"p", [1; 12]).unwrap();
        assert!(matches!(
            r.open("orders.us", &s2),
            Err(CryptoError::Tampered { .. })
        ));
        assert!(matches!(
            r.open("orders", &[]),
            Err(CryptoError::Truncated { len: 0, .. })
        ));
        assert!(matches!(
            r.open("orders", &[1]),
            Err(CryptoError::Truncated { .. })
        ));
        assert!(matches!(
            r.open("orders", &sealed[..sealed.len() - 1]),
            Err(CryptoError::Tampered { .. })
        ));
        assert!(matches!(
            r.open("orders", &sealed[..20]),
            Err(CryptoError::Truncated { .. })
        ));
        let mut v = sealed.clone();
        v[0] = 2;
        assert!(matches!(
            r.open("orders", &v),
            Err(CryptoError::UnsupportedVersion { version: 2, .. })
        ));
        let mut v = sealed.clone();
        v[3] = b'9';
        assert!(matches!(
            r.open("orders", &v),
            Err(CryptoError::UnknownKeyId { key_id, .. }) if key_id == "o9"
        ));
        // Re-labelling with another valid key id of the topic.
        let mut v = sealed.clone();
        v[3] = b'1';
        assert!(matches!(
            r.open("orders", &v),
            Err(CryptoError::Tampered { .. })
        ));
        let mut v = sealed.clone();
        v[1] = 0;
        assert!(r.open("orders", &v).is_err());
    }

    proptest! {
        #[test]
        fn any_bit_flip_is_detected(msg in prop::collection::vec(any::<u8>(), 0..200), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let r = ring();
            let sealed = r.seal_with_nonce("orders", &msg, [3; 12]).unwrap();
            let mut t = sealed.clone();
            let i = pos.index(t.len());
            t[i] ^= 1 << bit;
            prop_assert!(r.open("orders", &t).is_err());
            prop_assert_eq!(r.open("orders", &sealed).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80), topic in "[a-z.]{1,12}") {
            let r = ring();
            let _ = r.open(&topic, &bytes);
            let _ = Keyring::key_id_of(&bytes);
        }

        #[test]
        fn truncation_is_detected(msg in prop::collection::vec(any::<u8>(), 0..64), cut in any::<prop::sample::Index>()) {
            let r = ring();
            let sealed = r.seal("orders.x", &msg).unwrap();
            let n = cut.index(sealed.len());
            prop_assert!(r.open("orders.x", &sealed[..n]).is_err());
        }
    }

    fn err_of(json: &str) -> String {
        Keyring::from_sources([("/etc/corral/keys.json", json)])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_key_files_name_file_and_entry() {
        let good = key_b64(5);
        let e = err_of("{");
        assert!(e.starts_with("key file /etc/corral/keys.json: "), "{e}");
        let e = err_of(r#"{"keys":[{"topic":"a","id":"x","key":"AA==","extra":1}]}"#);
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = err_of(r#"{"keys":[{"topic":"a","id":"x","key":"AA=="}]}"#);
        assert_eq!(
            e,
            "key file /etc/corral/keys.json: entry keys[0] (id \"x\"): field \"key\": must decode to 32 bytes, got 1"
        );
        let e = err_of(&format!(
            r#"{{"keys":[{{"topic":"a","id":"ok","key":"{good}"}},{{"topic":"a","id":"y","key":"!!"}}]}}"#
        ));
        assert!(
            e.starts_with("key file /etc/corral/keys.json: entry keys[1] (id \"y\"): field \"key\": not valid base64"),
            "{e}"
        );
        let e = err_of(&format!(
            r#"{{"keys":[{{"topic":"a b","id":"x","key":"{good}"}}]}}"#
        ));
        assert!(e.contains("keys[0] (id \"x\"): field \"topic\""), "{e}");
        let e = err_of(&format!(
            r#"{{"keys":[{{"topic":"a","id":"","key":"{good}"}}]}}"#
        ));
        assert!(
            e.contains("keys[0]: field \"id\": must not be empty"),
            "{e}"
        );
        let e = err_of(&format!(
            r#"{{"keys":[{{"topic":"a","id":"k","key":"{good}"}},{{"topic":"b","id":"k","key":"{good}"}}]}}"#
        ));
        assert_eq!(e, "key file /etc/corral/keys.json: entry keys[1]: key id \"k\" is already used by keys[0] in /etc/corral/keys.json");
        // A duplicate across files names both.
        let f1 = format!(r#"{{"keys":[{{"topic":"a","id":"k","key":"{good}"}}]}}"#);
        let e = Keyring::from_sources([("one.json", f1.as_str()), ("two.json", f1.as_str())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("two.json") && e.contains("in one.json"), "{e}");
    }

    #[test]
    fn load_from_files_and_debug_hides_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.json");
        let k = key_b64(6);
        std::fs::write(
            &p,
            format!(r#"{{"keys":[{{"topic":"t","id":"t1","key":"{k}"}}]}}"#),
        )
        .unwrap();
        let r = Keyring::load(&[&p]).unwrap();
        assert!(r.is_encrypted("t"));
        let dbg = format!("{r:?}");
        assert!(dbg.contains("t1") && !dbg.contains(&k), "{dbg}");
        let missing = dir.path().join("nope.json");
        let e = Keyring::load(&[&missing]).unwrap_err().to_string();
        assert!(e.contains("nope.json") && e.contains("cannot read"), "{e}");
    }
}

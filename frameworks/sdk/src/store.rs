//! The frameworks' state store: a small versioned key-value store.
//!
//! A framework keeps its requests, deploys and run history here, so that a
//! restarted or failed-over instance loses nothing. Three implementations
//! pass one [`conformance`] suite:
//!
//! * [`MemoryStore`] — in the process (tests, throw-away runs);
//! * [`LocalStore`] — embedded and durable: a directory, one file per key,
//!   written atomically; one process at a time (`flock`). The store of a
//!   single instance without `--zk`;
//! * [`ZkStore`] — in ZooKeeper under a root znode: the store of 2+
//!   instances with `--zk` (only the leader writes; a standby taking over
//!   reads what the old leader committed).
//!
//! Keys are `/`-separated paths (`requests/web`, `history/cron-a/0042`):
//! 1 to 16 segments of 1 to 128 characters from `[A-Za-z0-9._-]`, not `.`
//! or `..`. Values are at most [`MAX_VALUE_BYTES`]. Every write returns the
//! key's new version (1 for a new key, +1 per write); [`StateStore::put`]
//! is a compare-and-set on it, so two writers racing from the same version
//! cannot both win. A deleted and re-created key starts again at version 1.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub mod conformance;
mod local;
mod memory;
mod zk;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use zk::ZkStore;

/// Largest value (ZooKeeper's own limit is about 1 MiB per znode).
pub const MAX_VALUE_BYTES: usize = 512 * 1024;
/// Most keys one [`StateStore::list`] returns.
pub const MAX_LIST: usize = 100_000;
/// Most segments in a key.
pub const MAX_SEGMENTS: usize = 16;
/// Longest segment.
pub const MAX_SEGMENT_LEN: usize = 128;

/// A value and the version it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes.
    pub value: Vec<u8>,
    /// 1 for the first write of the key, +1 per write.
    pub version: u64,
}

/// A boxed future of a store call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A versioned key-value store for framework state.
pub trait StateStore: Send + Sync + 'static {
    /// The value of `key`, if it exists.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>>;

    /// Compare-and-set: writes `value` if the key's current version is
    /// `expected` (`None`: the key must not exist) and returns the new
    /// version. A mismatch is [`StoreError::Conflict`] and changes nothing.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> StoreFuture<'a, u64>;

    /// Writes `value` whatever the key's version; returns the new version.
    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, u64>;

    /// Deletes `key` if its version is `expected` (`None`: whatever it is).
    /// `Ok(false)` when the key did not exist.
    fn delete<'a>(&'a self, key: &'a str, expected: Option<u64>) -> StoreFuture<'a, bool>;

    /// The keys under `prefix` (a key path; `""` for all), at any depth,
    /// sorted, each in full. More than [`MAX_LIST`] is an error.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>>;
}

/// Why a store call failed. Nothing changed when a call fails.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key's version is not the one expected.
    #[error(
        "{key}: expected {}, found {}; read it again and retry the change",
        version_text(*expected),
        version_text(*actual)
    )]
    Conflict {
        /// The key.
        key: String,
        /// The version the caller expected.
        expected: Option<u64>,
        /// The version found.
        actual: Option<u64>,
    },
    /// The key breaks the key rules.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Which rule.
        reason: &'static str,
    },
    /// The value is too large.
    #[error("{key}: a value of {bytes} bytes is larger than the {max} allowed; split it over several keys")]
    TooLarge {
        /// The key.
        key: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The backing service cannot be used now.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// A local file system error.
    #[error("state store I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Stored data this code cannot read.
    #[error("corrupt state store entry {path}: {reason}")]
    Corrupt {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// More keys than [`MAX_LIST`] under a prefix.
    #[error("more than {max} keys under {prefix:?}; list a narrower prefix")]
    TooMany {
        /// The prefix.
        prefix: String,
        /// The limit.
        max: usize,
    },
}

fn version_text(v: Option<u64>) -> String {
    match v {
        Some(v) => format!("version {v}"),
        None => "no value".to_string(),
    }
}

/// Checks `key` against the key rules.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.chars().take(300).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    let segments: Vec<&str> = key.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return bad("more than 16 segments");
    }
    for s in segments {
        if s.is_empty() {
            return bad("an empty segment (leading, trailing or double '/')");
        }
        if s.len() > MAX_SEGMENT_LEN {
            return bad("a segment longer than 128 characters");
        }
        if s == "." || s == ".." {
            return bad("'.' or '..' as a segment");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return bad("characters other than A-Z, a-z, 0-9, '.', '_' and '-'");
        }
    }
    Ok(())
}

/// Checks a list prefix: `""` or a valid key.
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        Ok(())
    } else {
        validate_key(prefix)
    }
}

fn validate_value(key: &str, value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::TooLarge {
            key: key.to_string(),
            bytes: value.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Whether `key` is `prefix` itself or under it.
fn under(key: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || key == prefix
        || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for ok in ["a", "requests/web", "history/cron-a/00000042", "A.b_c-d"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(129);
        let deep = vec!["a"; 17].join("/");
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "a/..",
            "a b",
            "a:b",
            "ü",
            long.as_str(),
            deep.as_str(),
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_prefix("").is_ok());
        assert!(under("req/a", "req") && !under("requests/a", "req") && under("x", ""));
    }
}

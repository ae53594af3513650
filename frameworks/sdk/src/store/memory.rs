//! [`MemoryStore`]: the state store in the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{
    under, validate_key, validate_prefix, validate_value, StateStore, StoreError, StoreFuture,
    Versioned, MAX_LIST,
};

/// A state store in memory: lost with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<String, Versioned>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Versioned>) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut entries)
    }
}

impl StateStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            validate_key(key)?;
            Ok(self.with(|e| e.get(key).cloned()))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_key(key)?;
            validate_value(key, &value)?;
            self.with(|e| {
                let actual = e.get(key).map(|v| v.version);
                if actual != expected {
                    return Err(StoreError::Conflict {
                        key: key.to_string(),
                        expected,
                        actual,
                    });
                }
                let version = actual.unwrap_or(0) + 1;
                e.insert(key.to_string(), Versioned { value, version });
                Ok(version)
            })
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_key(key)?;
            validate_value(key, &value)?;
            Ok(self.with(|e| {
                let version = e.get(key).map_or(0, |v| v.version) + 1;
                e.insert(key.to_string(), Versioned { value, version });
                version
            }))
        })
    }

    fn delete<'a>(&'a self, key: &'a str, expected: Option<u64>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_key(key)?;
            self.with(|e| {
                let actual = e.get(key).map(|v| v.version);
                match (actual, expected) {
                    (None, _) => Ok(false),
                    (Some(a), Some(x)) if a != x => Err(StoreError::Conflict {
                        key: key.to_string(),
                        expected,
                        actual,
                    }),
                    _ => Ok(e.remove(key).is_some()),
                }
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            let keys: Vec<String> = self.with(|e| {
                e.range(prefix.to_string()..)
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(prefix))
                    .filter(|k| under(k, prefix))
                    .take(MAX_LIST + 1)
                    .cloned()
                    .collect()
            });
            if keys.len() > MAX_LIST {
                return Err(StoreError::TooMany {
                    prefix: prefix.to_string(),
                    max: MAX_LIST,
                });
            }
            Ok(keys)
        })
    }
}

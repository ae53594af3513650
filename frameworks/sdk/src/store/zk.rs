//! [`ZkStore`]: the state store in ZooKeeper.
//!
//! Key `a/b` is the znode `<root>/a/b`. A znode that holds a value starts
//! with a marker byte and the key's version (8 bytes, big endian), then
//! the value; znodes created only as parents of deeper keys hold nothing
//! and are not keys. Every change is conditional on the znode's own
//! version as it was read, so of two writers racing from the same read
//! exactly one succeeds; the other sees a [`StoreError::Conflict`] (for
//! `put`) or reads again (for `set` and `delete`).

use std::sync::Arc;

use corral_zk::Session;
use zookeeper_async::{Acl, CreateMode, ZkError};

use super::{
    under, validate_key, validate_prefix, validate_value, StateStore, StoreError, StoreFuture,
    Versioned, MAX_LIST,
};

const MARKER: u8 = 0xC5;
/// Attempts of a `set` or `delete` that keeps losing races.
const ATTEMPTS: usize = 16;

/// A state store under a root znode.
#[derive(Clone)]
pub struct ZkStore {
    session: Arc<Session>,
    root: String,
}

impl std::fmt::Debug for ZkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkStore").field("root", &self.root).finish()
    }
}

fn unavailable(what: &str, e: ZkError) -> StoreError {
    StoreError::Unavailable(match e {
        ZkError::SessionExpired => format!(
            "{what}: the ZooKeeper session expired; this instance must stop writing (another \
             may lead now) and start again"
        ),
        ZkError::ConnectionLoss | ZkError::OperationTimeout => {
            format!("{what}: ZooKeeper did not answer ({e:?}); retry once it is reachable")
        }
        e => format!("{what}: ZooKeeper error {e:?}"),
    })
}

/// A znode's content decoded: `None` for a parent-only znode.
fn decode(path: &str, data: &[u8]) -> Result<Option<Versioned>, StoreError> {
    match data.first() {
        None => Ok(None),
        Some(&MARKER) if data.len() >= 9 => {
            let mut v = [0u8; 8];
            v.copy_from_slice(&data[1..9]);
            Ok(Some(Versioned {
                version: u64::from_be_bytes(v),
                value: data[9..].to_vec(),
            }))
        }
        Some(_) => Err(StoreError::Corrupt {
            path: path.to_string(),
            reason: "not written by the state store".into(),
        }),
    }
}

fn encode(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.len());
    out.push(MARKER);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

impl ZkStore {
    /// A store under `root` (created if missing) on `session`.
    pub async fn open(session: Arc<Session>, root: &str) -> Result<Self, StoreError> {
        let root = root.trim_end_matches('/').to_string();
        if !root.starts_with('/') {
            return Err(StoreError::InvalidKey {
                key: root,
                reason: "the root znode must be an absolute path",
            });
        }
        session
            .ensure_path(&root)
            .await
            .map_err(|e| unavailable(&format!("create {root}"), e))?;
        Ok(Self { session, root })
    }

    fn path(&self, key: &str) -> String {
        format!("{}/{key}", self.root)
    }

    /// The key's value and the znode's own version, `None` if no znode.
    async fn read(&self, key: &str) -> Result<Option<(Option<Versioned>, i32)>, StoreError> {
        let path = self.path(key);
        match self.session.zk.get_data(&path, false).await {
            Ok((data, stat)) => Ok(Some((decode(&path, &data)?, stat.version))),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(unavailable(&format!("read {path}"), e)),
        }
    }

    /// Creates the key's znode (and its parents) holding `data`; `false`
    /// when it already exists.
    async fn create(&self, key: &str, data: Vec<u8>) -> Result<bool, StoreError> {
        let path = self.path(key);
        if let Some((parent, _)) = path.rsplit_once('/') {
            if parent != self.root {
                self.session
                    .ensure_path(parent)
                    .await
                    .map_err(|e| unavailable(&format!("create {parent}"), e))?;
            }
        }
        match self
            .session
            .zk
            .create(
                &path,
                data,
                Acl::open_unsafe().clone(),
                CreateMode::Persistent,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(ZkError::NodeExists) => Ok(false),
            Err(e) => Err(unavailable(&format!("create {path}"), e)),
        }
    }

    /// Writes `data` if the znode is still at `znode_version`; `false`
    /// when another writer got there first.
    async fn replace(
        &self,
        key: &str,
        data: Vec<u8>,
        znode_version: i32,
    ) -> Result<bool, StoreError> {
        let path = self.path(key);
        match self
            .session
            .zk
            .set_data(&path, data, Some(znode_version))
            .await
        {
            Ok(_) => Ok(true),
            Err(ZkError::BadVersion) | Err(ZkError::NoNode) => Ok(false),
            Err(e) => Err(unavailable(&format!("write {path}"), e)),
        }
    }

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Option<u64>>,
    ) -> Result<u64, StoreError> {
        for _ in 0..ATTEMPTS {
            let current = self.read(key).await?;
            let actual = current
                .as_ref()
                .and_then(|(v, _)| v.as_ref().map(|v| v.version));
            if let Some(expected) = expected {
                if actual != expected {
                    return Err(StoreError::Conflict {
                        key: key.to_string(),
                        expected,
                        actual,
                    });
                }
            }
            let version = actual.unwrap_or(0) + 1;
            let done = match current {
                None => self.create(key, encode(version, value)).await?,
                Some((_, znode_version)) => {
                    self.replace(key, encode(version, value), znode_version)
                        .await?
                }
            };
            if done {
                return Ok(version);
            }
            // Lost a race: read again (a `put` then sees the conflict).
        }
        Err(StoreError::Unavailable(format!(
            "{key}: other writers kept changing it; retry later"
        )))
    }

    fn collect<'a>(
        &'a self,
        key: String,
        out: &'a mut Vec<String>,
        prefix: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let path = if key.is_empty() {
                self.root.clone()
            } else {
                self.path(&key)
            };
            let children = match self.session.zk.get_children(&path, false).await {
                Ok(c) => c,
                Err(ZkError::NoNode) => return Ok(()),
                Err(e) => return Err(unavailable(&format!("list {path}"), e)),
            };
            let mut children: Vec<String> = children
                .into_iter()
                .filter(|c| validate_key(c).is_ok())
                .collect();
            children.sort();
            for child in children {
                let child_key = if key.is_empty() {
                    child
                } else {
                    format!("{key}/{child}")
                };
                if let Some((Some(_), _)) = self.read(&child_key).await? {
                    out.push(child_key.clone());
                    if out.len() > MAX_LIST {
                        return Err(StoreError::TooMany {
                            prefix: prefix.to_string(),
                            max: MAX_LIST,
                        });
                    }
                }
                self.collect(child_key, out, prefix).await?;
            }
            Ok(())
        })
    }
}

impl StateStore for ZkStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            validate_key(key)?;
            Ok(self.read(key).await?.and_then(|(v, _)| v))
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
            self.write(key, &value, Some(expected)).await
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_key(key)?;
            validate_value(key, &value)?;
            self.write(key, &value, None).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str, expected: Option<u64>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_key(key)?;
            let path = self.path(key);
            for _ in 0..ATTEMPTS {
                let Some((Some(current), znode_version)) = self.read(key).await? else {
                    return Ok(false);
                };
                if let Some(x) = expected {
                    if x != current.version {
                        return Err(StoreError::Conflict {
                            key: key.to_string(),
                            expected,
                            actual: Some(current.version),
                        });
                    }
                }
                match self.session.zk.delete(&path, Some(znode_version)).await {
                    Ok(()) => return Ok(true),
                    // Keys live under it: keep the znode, drop the value.
                    Err(ZkError::NotEmpty) => {
                        if self.replace(key, Vec::new(), znode_version).await? {
                            return Ok(true);
                        }
                    }
                    Err(ZkError::BadVersion) | Err(ZkError::NoNode) => {}
                    Err(e) => return Err(unavailable(&format!("delete {path}"), e)),
                }
            }
            Err(StoreError::Unavailable(format!(
                "{key}: other writers kept changing it; retry later"
            )))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            let mut out = Vec::new();
            if !prefix.is_empty() {
                if let Some((Some(_), _)) = self.read(prefix).await? {
                    out.push(prefix.to_string());
                }
            }
            self.collect(prefix.to_string(), &mut out, prefix).await?;
            out.retain(|k| under(k, prefix));
            out.sort();
            Ok(out)
        })
    }
}

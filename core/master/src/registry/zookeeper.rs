//! The registry in ZooKeeper, for masters in HA.
//!
//! Layout under the store's root (e.g. `/corral/registry`):
//!
//! * `head` – `{"format":1,"version":N,"snapshot":"s-...","chunks":k,"bytes":b}`:
//!   which snapshot is current. It is only ever replaced with a
//!   compare-and-set on its znode version, so a master whose view is stale
//!   (another master wrote since it read) gets [`RegistryError::Conflict`]
//!   and stops leading.
//! * `snapshots/s-.../c-00000 ...` – one snapshot: the registry's JSON (the
//!   local store's format), gzipped and split into chunks of at most
//!   [`CHUNK_BYTES`], since one znode holds at most 1 MiB and the state of
//!   10k agents is larger than that.
//!
//! A write creates a new snapshot's chunks, then swings `head` to it
//! (durable on a ZooKeeper quorum before `apply` returns), then deletes the
//! previous snapshot. A crash before the swing leaves an orphan snapshot
//! that the next writer deletes; a reader only ever follows `head`, so it
//! sees the old state or the new one, never a mix.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use zookeeper_async::{Acl, CreateMode, ZkError, ZooKeeper};

use super::codec;
use super::{Operation, Registry, RegistryError, RegistryState};

/// The largest chunk written to one znode (ZooKeeper's limit is 1 MiB).
pub const CHUNK_BYTES: usize = 512 * 1024;
const HEAD_FORMAT: u64 = 1;
/// How long one ZooKeeper request may take before the store reports the
/// backend unavailable.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct Head {
    format: u64,
    version: u64,
    snapshot: String,
    chunks: usize,
    bytes: usize,
}

struct Cached {
    /// The znode version of `head` this state was read or written at;
    /// `None` when `head` does not exist yet.
    head_version: Option<i32>,
    version: u64,
    snapshot: Option<String>,
    state: RegistryState,
}

/// The ZooKeeper registry.
pub struct ZooKeeperRegistry {
    zk: Arc<ZooKeeper>,
    root: String,
    chunk_bytes: usize,
    cache: Mutex<Option<Cached>>,
}

fn zk_error(what: &str, e: ZkError) -> RegistryError {
    match e {
        ZkError::SessionExpired => RegistryError::LostLeadership {
            reason: format!("zookeeper session expired during {what}"),
        },
        e => RegistryError::Unavailable {
            reason: format!("zookeeper {what}: {e:?}"),
        },
    }
}

async fn timed<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, ZkError>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(result) => result.map_err(|e| zk_error(what, e)),
        Err(_) => Err(RegistryError::Unavailable {
            reason: format!("zookeeper {what} timed out"),
        }),
    }
}

impl ZooKeeperRegistry {
    /// A store rooted at `root` (created if missing) on an open session.
    pub async fn open(zk: Arc<ZooKeeper>, root: &str) -> Result<Self, RegistryError> {
        let root = root.trim_end_matches('/').to_owned();
        let store = Self {
            zk,
            root,
            chunk_bytes: CHUNK_BYTES,
            cache: Mutex::new(None),
        };
        for path in [store.root.clone(), format!("{}/snapshots", store.root)] {
            store.ensure(&path).await?;
        }
        Ok(store)
    }

    /// Splits snapshots into chunks of at most `bytes` (clamped to
    /// 1..=[`CHUNK_BYTES`]); tests use small chunks.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.clamp(1, CHUNK_BYTES);
        self
    }

    async fn ensure(&self, path: &str) -> Result<(), RegistryError> {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            let created = tokio::time::timeout(
                OP_TIMEOUT,
                self.zk.create(
                    &at,
                    Vec::new(),
                    Acl::open_unsafe().clone(),
                    CreateMode::Persistent,
                ),
            )
            .await;
            match created {
                Ok(Ok(_)) | Ok(Err(ZkError::NodeExists)) => {}
                Ok(Err(e)) => return Err(zk_error("create", e)),
                Err(_) => {
                    return Err(RegistryError::Unavailable {
                        reason: "zookeeper create timed out".into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The store's root znode.
    pub fn root(&self) -> &str {
        &self.root
    }

    fn head_path(&self) -> String {
        format!("{}/head", self.root)
    }

    fn corrupt(&self, reason: String) -> RegistryError {
        RegistryError::Corrupt {
            path: self.head_path().into(),
            reason,
        }
    }

    async fn load(&self) -> Result<Cached, RegistryError> {
        let head_path = self.head_path();
        let (data, stat) = match self.zk.get_data(&head_path, false).await {
            Ok(found) => found,
            Err(ZkError::NoNode) => {
                return Ok(Cached {
                    head_version: None,
                    version: 0,
                    snapshot: None,
                    state: RegistryState::default(),
                })
            }
            Err(e) => return Err(zk_error("read head", e)),
        };
        let head: Head = serde_json::from_slice(&data)
            .map_err(|e| self.corrupt(format!("invalid head: {e}")))?;
        if head.format != HEAD_FORMAT {
            return Err(RegistryError::UnsupportedFormat {
                path: head_path.into(),
                format: head.format,
                supported: HEAD_FORMAT,
            });
        }
        let dir = format!("{}/snapshots/{}", self.root, head.snapshot);
        let mut gz = Vec::with_capacity(head.bytes);
        for i in 0..head.chunks {
            let (chunk, _) = timed(
                "read snapshot",
                self.zk.get_data(&format!("{dir}/c-{i:05}"), false),
            )
            .await?;
            gz.extend_from_slice(&chunk);
        }
        if gz.len() != head.bytes {
            return Err(self.corrupt(format!(
                "snapshot {} has {} bytes, head says {}",
                head.snapshot,
                gz.len(),
                head.bytes
            )));
        }
        let mut json = Vec::new();
        GzDecoder::new(gz.as_slice())
            .read_to_end(&mut json)
            .map_err(|e| self.corrupt(format!("snapshot {}: {e}", head.snapshot)))?;
        let (version, state) = codec::decode(Path::new(&dir), &json)?;
        Ok(Cached {
            head_version: Some(stat.version),
            version,
            snapshot: Some(head.snapshot),
            state,
        })
    }

    async fn write(&self, current: &Cached, next: &RegistryState) -> Result<Cached, RegistryError> {
        let version = current.version + 1;
        let json = codec::encode(version, next)?;
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&json)
            .map_err(|e| RegistryError::Encode(e.to_string()))?;
        let gz = encoder
            .finish()
            .map_err(|e| RegistryError::Encode(e.to_string()))?;
        let snapshot = format!("s-{version:010}-{}", uuid::Uuid::new_v4().simple());
        let dir = format!("{}/snapshots/{snapshot}", self.root);
        let acl = Acl::open_unsafe().clone();
        timed(
            "create snapshot",
            self.zk
                .create(&dir, Vec::new(), acl.clone(), CreateMode::Persistent),
        )
        .await?;
        let chunks: Vec<&[u8]> = gz.chunks(self.chunk_bytes).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            timed(
                "write snapshot",
                self.zk.create(
                    &format!("{dir}/c-{i:05}"),
                    chunk.to_vec(),
                    acl.clone(),
                    CreateMode::Persistent,
                ),
            )
            .await?;
        }
        let head = serde_json::to_vec(&Head {
            format: HEAD_FORMAT,
            version,
            snapshot: snapshot.clone(),
            chunks: chunks.len(),
            bytes: gz.len(),
        })
        .map_err(|e| RegistryError::Encode(e.to_string()))?;
        let head_path = self.head_path();
        let head_version = match current.head_version {
            Some(expected) => match self.zk.set_data(&head_path, head, Some(expected)).await {
                Ok(stat) => stat.version,
                Err(ZkError::BadVersion) => {
                    self.delete_snapshot(&snapshot).await;
                    return Err(RegistryError::Conflict {
                        expected: current.version,
                        found: current.version + 1,
                    });
                }
                Err(e) => return Err(zk_error("swing head", e)),
            },
            None => match self
                .zk
                .create(&head_path, head, acl, CreateMode::Persistent)
                .await
            {
                Ok(_) => 0,
                Err(ZkError::NodeExists) => {
                    self.delete_snapshot(&snapshot).await;
                    return Err(RegistryError::Conflict {
                        expected: 0,
                        found: 1,
                    });
                }
                Err(e) => return Err(zk_error("create head", e)),
            },
        };
        // Old and orphaned snapshots go (best effort: a leftover is only
        // garbage, deleted by a later write).
        if let Ok(names) = self
            .zk
            .get_children(&format!("{}/snapshots", self.root), false)
            .await
        {
            for name in names.into_iter().filter(|n| *n != snapshot) {
                self.delete_snapshot(&name).await;
            }
        }
        Ok(Cached {
            head_version: Some(head_version),
            version,
            snapshot: Some(snapshot),
            state: next.clone(),
        })
    }

    async fn delete_snapshot(&self, name: &str) {
        let dir = format!("{}/snapshots/{name}", self.root);
        if let Ok(children) = self.zk.get_children(&dir, false).await {
            for child in children {
                let _ = self.zk.delete(&format!("{dir}/{child}"), None).await;
            }
        }
        let _ = self.zk.delete(&dir, None).await;
    }
}

impl Registry for ZooKeeperRegistry {
    fn recover(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            *cache = None;
            let loaded = self.load().await?;
            let state = loaded.state.clone();
            *cache = Some(loaded);
            Ok(state)
        })
    }

    fn apply(&self, ops: Vec<Operation>) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            let current = match cache.take() {
                Some(current) => current,
                None => self.load().await?,
            };
            let mut next = current.state.clone();
            if let Err(error) = next.apply_all(&ops) {
                *cache = Some(current);
                return Err(error);
            }
            if next == current.state {
                *cache = Some(current);
                return Ok(next);
            }
            let started = Instant::now();
            // The cache stays empty until the write is known to be durable.
            let written = self.write(&current, &next).await?;
            tracing::debug!(
                version = written.version,
                ops = ops.len(),
                snapshot = written.snapshot.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "zookeeper registry updated"
            );
            *cache = Some(written);
            Ok(next)
        })
    }
}

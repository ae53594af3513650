//! Persistent volume backends for Corral's agent.
//!
//! A Mesos persistent volume is identified by its role and
//! `DiskInfo.Persistence.id` ([`VolumeId`]). A [`VolumeBackend`] keeps a
//! copy of a volume's data away from the agent's disk, so that the volume can
//! come back on another agent when the first one is lost for good:
//!
//! * [`LocalBackend`]: a directory on a local (or network-mounted) file
//!   system. Always compiled.
//! * `HdfsBackend` (cargo feature `hdfs`): HDFS, through Hadoop's own client
//!   (libhdfs over JNI, via the `hdrs` crate). The default build needs no JVM.
//!
//! With the `hdfs` feature, `copy_to_local` also copies one file out of any
//! file system Hadoop's client knows: the agent's fetcher uses it for
//! `hdfs://` URIs.
//!
//! # Leases and generations
//!
//! Two agents must never write one volume at once. Each volume has one
//! record, replaced atomically, that holds the current [`Lease`] (holder,
//! generation, expiry), the highest generation ever issued and the last
//! committed snapshot. [`VolumeBackend::acquire`] issues a new generation;
//! every later call made with a lease is checked against the record, and a
//! lease whose generation is no longer current is refused with
//! [`StorageError::Fenced`]. In particular a holder that was taken over
//! after its lease expired can never commit a snapshot again
//! ([`VolumeBackend::write_back`] is fenced at the moment it commits, not
//! only when it starts).
//!
//! Time is read from a [`Clock`] the backend is built with ([`SystemClock`]
//! unless a test injects a [`ManualClock`]). Leases are compared with the
//! clock of whoever reads them, so the agents sharing a backend need roughly
//! synchronised clocks; keep TTLs far above the clock skew (tens of seconds
//! or more).
//!
//! # Snapshots
//!
//! [`VolumeBackend::write_back`] uploads a local directory (regular files,
//! directories, symbolic links and permission bits; not owners or
//! timestamps) into a staging area named by the writer's generation and makes
//! it current by replacing the volume record, so a writer that dies half-way
//! never exposes a half snapshot. [`VolumeBackend::restore`] replaces the
//! contents of a local directory with the last committed snapshot.
//!
//! All calls block; the agent runs them on `tokio::task::spawn_blocking`.
//! Every backend passes the same [`conformance`] suite.
//!
//! # Log archive
//!
//! [`archive`] keeps finished tasks' log files by key ([`archive::LogArchive`]:
//! put, list, read, size) in a local directory or in HDFS; its module docs
//! describe the layout the agent writes.

pub mod archive;
mod backend;
mod clock;
pub mod conformance;
#[cfg(feature = "hdfs")]
mod hadoop_copy;
#[cfg(feature = "hdfs")]
mod hdfs;
mod id;
mod local;
mod store;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "hdfs")]
pub use hadoop_copy::copy_to_local;
#[cfg(feature = "hdfs")]
pub use hdfs::{HdfsBackend, HdfsConfig};
pub use local::LocalBackend;

/// Largest volume record a backend reads (records are a few hundred bytes).
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Largest snapshot manifest a backend reads (about half a million entries).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// A persistent volume: Mesos identifies one by the role its disk is
/// reserved for and `DiskInfo.Persistence.id`.
///
/// Valid ids: the persistence id is 1..=200 bytes, not `.` or `..`, without
/// `/`, `\`, NUL or other control characters. The role follows Mesos' role
/// rules: 1..=200 bytes, `/` separates the levels of a hierarchical role
/// (`eng/spark`), no level is empty, `.` or `..` or starts with `-`, and no
/// `\`, whitespace or control characters. Anything else is refused with
/// [`StorageError::InvalidId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeId {
    pub role: String,
    pub persistence_id: String,
}

impl VolumeId {
    pub fn new(role: impl Into<String>, persistence_id: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            persistence_id: persistence_id.into(),
        }
    }

    /// Checks the id against the rules above.
    pub fn validate(&self) -> Result<(), StorageError> {
        id::validate_role(&self.role)?;
        id::validate_persistence_id(&self.persistence_id)
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "volume {:?} of role {:?}",
            self.persistence_id, self.role
        )
    }
}

/// The right to write a volume, held by one agent (`holder`, its agent id)
/// until `expires_at_unix_ms` unless renewed. `generation` increases with
/// every acquisition of the volume; only the current generation may renew,
/// release or write back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub volume: VolumeId,
    pub holder: String,
    pub generation: u64,
    pub expires_at_unix_ms: u64,
}

/// What a restore or write-back moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStats {
    /// Regular files (empty ones included).
    pub files: u64,
    /// Directories below the volume's root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Why a backend call failed. Every message says what happened and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Another holder's lease on the volume is live.
    #[error(
        "{volume} is leased to {holder:?} (generation {generation}) until {expires_at_unix_ms} \
         (unix ms); it can be acquired once that holder releases it or its lease expires"
    )]
    LeaseHeld {
        volume: VolumeId,
        holder: String,
        generation: u64,
        expires_at_unix_ms: u64,
    },
    /// The lease used is no longer the volume's current one (it was taken
    /// over, re-acquired, released or the volume destroyed and re-created).
    #[error(
        "lease generation {generation} of {volume} is fenced off: the volume's current generation \
         is {current}{}; stop writing to it and acquire it again",
        match current_holder {
            Some(h) => format!(", held by {h:?}"),
            None => ", not leased".to_string(),
        }
    )]
    Fenced {
        volume: VolumeId,
        generation: u64,
        current: u64,
        current_holder: Option<String>,
    },
    /// The volume does not exist in the backend.
    #[error("{0} does not exist in this backend (never acquired, or destroyed); acquire it to create it")]
    NotFound(VolumeId),
    /// A role, persistence id or holder that the rules refuse.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidId {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// Local file system error.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Error reported by Hadoop's client (with its exception's root cause).
    #[error("HDFS error on {path}: {message}")]
    Hdfs { path: String, message: String },
    /// Metadata in the backend that this code cannot accept (too large,
    /// unparsable, or unsafe paths in a manifest).
    #[error("corrupt volume metadata at {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// The volume's record kept changing under this call.
    #[error(
        "{volume}: gave up after {attempts} attempts because other writers kept replacing its \
         record; retry later"
    )]
    Contended { volume: VolumeId, attempts: u32 },
    /// A log archive key the rules refuse (see [`archive`]).
    #[error("invalid archive key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// Nothing is stored in the log archive under this key.
    #[error("no archived file under key {0:?}")]
    NoSuchKey(String),
    /// Something this backend does not store (e.g. a file name that is not
    /// UTF-8).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// A place that keeps persistent volumes' data and leases. Blocking: call it
/// from `tokio::task::spawn_blocking` in async code.
pub trait VolumeBackend: Send + Sync {
    /// Short name for logs and metrics: `"local"`, `"hdfs"`.
    fn name(&self) -> &'static str;

    /// Takes the volume's lease for `holder` until now + `ttl`, creating the
    /// volume if it does not exist (or was destroyed). Refused with
    /// [`StorageError::LeaseHeld`] while another holder's lease is live. The
    /// same holder acquiring again, or anyone acquiring after the lease
    /// expired or was released, gets a new generation; every older lease is
    /// fenced from then on.
    fn acquire(&self, id: &VolumeId, holder: &str, ttl: Duration) -> Result<Lease, StorageError>;

    /// Extends a lease to now + `ttl`. [`StorageError::Fenced`] if its
    /// generation is no longer current. An expired lease that nobody took
    /// over is still current and can be renewed.
    fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StorageError>;

    /// Gives the lease up so that another holder can acquire the volume at
    /// once. Releasing twice is fine; a fenced lease gets
    /// [`StorageError::Fenced`].
    fn release(&self, lease: &Lease) -> Result<(), StorageError>;

    /// Replaces the contents of `local_dir` (created if missing) with the
    /// volume's last committed snapshot; a volume never written back leaves
    /// it empty. Needs no lease. [`StorageError::NotFound`] for a volume
    /// that does not exist.
    fn restore(&self, id: &VolumeId, local_dir: &Path) -> Result<TransferStats, StorageError>;

    /// Uploads `local_dir` and commits it as the volume's snapshot, replacing
    /// the previous one. Fenced by generation: a stale lease gets
    /// [`StorageError::Fenced`] and commits nothing, even if it was
    /// taken over while uploading. Until the commit the previous snapshot
    /// stays current, so a writer that dies half-way exposes nothing.
    fn write_back(&self, lease: &Lease, local_dir: &Path) -> Result<TransferStats, StorageError>;

    /// Whether the volume exists (acquired at least once and not destroyed).
    fn exists(&self, id: &VolumeId) -> Result<bool, StorageError>;

    /// Removes the volume's data and lease; a live lease is fenced. Only a
    /// small tombstone keeping the generation counter remains, so that a
    /// lease from before the destroy can never write into a volume created
    /// again with the same id. Destroying a volume that does not exist is
    /// not an error.
    fn destroy(&self, id: &VolumeId) -> Result<(), StorageError>;
}

impl<B: VolumeBackend + ?Sized> VolumeBackend for Box<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn acquire(&self, id: &VolumeId, holder: &str, ttl: Duration) -> Result<Lease, StorageError> {
        (**self).acquire(id, holder, ttl)
    }
    fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StorageError> {
        (**self).renew(lease, ttl)
    }
    fn release(&self, lease: &Lease) -> Result<(), StorageError> {
        (**self).release(lease)
    }
    fn restore(&self, id: &VolumeId, local_dir: &Path) -> Result<TransferStats, StorageError> {
        (**self).restore(id, local_dir)
    }
    fn write_back(&self, lease: &Lease, local_dir: &Path) -> Result<TransferStats, StorageError> {
        (**self).write_back(lease, local_dir)
    }
    fn exists(&self, id: &VolumeId) -> Result<bool, StorageError> {
        (**self).exists(id)
    }
    fn destroy(&self, id: &VolumeId) -> Result<(), StorageError> {
        (**self).destroy(id)
    }
}

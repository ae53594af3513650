//! The master's registry: what must outlive a master process.
//!
//! The master keeps soft state in memory and rebuilds most of it from
//! re-registering agents and re-subscribing frameworks. What it cannot
//! rebuild lives here: admitted agents, unreachable agents with the time they
//! became so, gone agents, role weights, quota and maintenance schedules.
//!
//! * [`RegistryState`] – the durable contents, and [`Operation`], the small
//!   typed mutations applied to it. [`RegistryState::apply`] is pure: it
//!   validates an operation and either applies it or refuses it without
//!   changing anything.
//! * [`Registry`] – the storage trait. A write is durable before
//!   [`Registry::apply`] returns, and a batch of operations is atomic: either
//!   every operation is applied and persisted or none is.
//! * [`MemoryRegistry`] – in memory, for tests and simulations.
//! * [`ZooKeeperRegistry`] – the store of masters in HA, in ZooKeeper
//!   (chunked snapshots swung in with a compare-and-set on a head znode).
//! * [`LocalRegistry`] – an embedded on-disk store for a single master
//!   (a JSON file replaced atomically: temp file, fsync, rename, fsync of the
//!   directory).
//!
//! The trait is shaped for a ZooKeeper store as well: its methods are async
//! and return boxed `Send` futures (so `Arc<dyn Registry>` works), a store
//! keeps the version it last read and is expected to write with
//! compare-and-set, and [`RegistryError::Conflict`] /
//! [`RegistryError::LostLeadership`] tell the master that it must stop
//! acting as leader. Operations are typed mutations rather than whole-state
//! replacements so a store may persist them piecewise (one znode per agent in
//! a ZooKeeper `multi` transaction, for instance) when the state outgrows a
//! single node.

mod codec;
mod local;
mod memory;
mod model;
mod zookeeper;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use futures::future::BoxFuture;

pub use local::LocalRegistry;
pub use memory::MemoryRegistry;
pub use model::{Operation, RegistryState, UnreachableAgent};
pub use zookeeper::{ZooKeeperRegistry, CHUNK_BYTES};

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An operation is invalid; nothing was applied.
    #[error("invalid {op}: {reason}")]
    Invalid {
        /// The operation's name.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The operation names an agent the registry does not know; nothing was
    /// applied.
    #[error("agent {agent_id} is not in the registry")]
    UnknownAgent {
        /// The agent's id.
        agent_id: String,
    },
    /// The operation would bring back an agent marked gone; nothing was
    /// applied. Gone agents never come back.
    #[error("agent {agent_id} has been marked gone")]
    AgentGone {
        /// The agent's id.
        agent_id: String,
    },
    /// Reading or writing the durable store failed. The outcome of a write
    /// that fails this way is unknown until the next [`Registry::recover`].
    #[error("registry i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored registry cannot be decoded.
    #[error("registry file {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The stored registry was written in a format this version cannot read.
    #[error("registry file {} has unsupported format {format} (this version reads {supported})", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The format found.
        format: u64,
        /// The format this version reads and writes.
        supported: u64,
    },
    /// Another process holds the store (e.g. a second master on the same
    /// work directory).
    #[error("registry {} is locked by another process", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The state could not be encoded for storage; nothing was written.
    #[error("cannot encode the registry: {0}")]
    Encode(String),
    /// A compare-and-set write found a newer version than the one this
    /// store last read: another master wrote the registry. The caller must
    /// stop acting as leader.
    #[error("registry version conflict: expected {expected}, found {found}")]
    Conflict {
        /// The version this store expected.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// This master lost leadership (e.g. its ZooKeeper session expired); it
    /// must stop acting as leader.
    #[error("lost leadership: {reason}")]
    LostLeadership {
        /// Why.
        reason: String,
    },
    /// The backend is unreachable; the outcome of an in-flight write is
    /// unknown until the next [`Registry::recover`].
    #[error("registry unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl RegistryError {
    /// Whether the error is a refusal of the operations themselves (the
    /// caller's fault, a 4xx): nothing was applied or written and the store
    /// is healthy.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::Invalid { .. } | Self::UnknownAgent { .. } | Self::AgentGone { .. }
        )
    }

    /// Whether the master must stop acting as leader after this error.
    pub fn is_fatal_for_leader(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::LostLeadership { .. })
    }
}

/// Durable storage of the [`RegistryState`].
///
/// Implementations serialise writes: concurrent [`Registry::apply`] calls
/// are applied one after the other, each to the result of the previous one.
pub trait Registry: Send + Sync + 'static {
    /// Reads the durable state (not a cache), e.g. when a master starts or
    /// becomes leader. An empty store recovers [`RegistryState::default`].
    fn recover(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>>;

    /// Applies `ops` in order, atomically, and returns the new state once it
    /// is durable. If any operation is refused, nothing is applied and the
    /// error is returned ([`RegistryError::is_rejection`]). A batch that
    /// changes nothing writes nothing.
    fn apply(&self, ops: Vec<Operation>) -> BoxFuture<'_, Result<RegistryState, RegistryError>>;
}

impl<R: Registry + ?Sized> Registry for std::sync::Arc<R> {
    fn recover(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        (**self).recover()
    }

    fn apply(&self, ops: Vec<Operation>) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        (**self).apply(ops)
    }
}

impl<R: Registry + ?Sized> Registry for Box<R> {
    fn recover(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        (**self).recover()
    }

    fn apply(&self, ops: Vec<Operation>) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        (**self).apply(ops)
    }
}

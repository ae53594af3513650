//! A registry held in memory, for tests and simulations: "durable" for the
//! life of the value (share it with `Arc` to survive a simulated master
//! restart).

use std::sync::{Mutex, MutexGuard};

use futures::future::BoxFuture;

use super::{Operation, Registry, RegistryError, RegistryState};

/// A registry held in memory.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    version: u64,
    state: RegistryState,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding `state` (e.g. to start a simulation from a given
    /// registry). The state is not validated.
    pub fn with_state(state: RegistryState) -> Self {
        Self {
            inner: Mutex::new(Inner { version: 0, state }),
        }
    }

    /// The number of writes committed so far.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code path panics while holding the lock, and the state is only
        // replaced whole, so a poisoned lock still guards a consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Registry for MemoryRegistry {
    fn recover(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move { Ok(self.lock().state.clone()) })
    }

    fn apply(&self, ops: Vec<Operation>) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let mut next = inner.state.clone();
            next.apply_all(&ops)?;
            if next != inner.state {
                inner.version += 1;
                inner.state = next;
                tracing::debug!(
                    version = inner.version,
                    ops = ops.len(),
                    "memory registry updated"
                );
            }
            Ok(inner.state.clone())
        })
    }
}

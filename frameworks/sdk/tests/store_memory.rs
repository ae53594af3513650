//! The state store conformance suite for `MemoryStore`.

use std::sync::Arc;

use corral_sdk::store::{MemoryStore, StateStore};

async fn make() -> (Arc<dyn StateStore>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

corral_sdk::store_conformance_tests!(make);

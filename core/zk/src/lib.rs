//! ZooKeeper as Corral uses it, shared by the master (leader election, the
//! registry) and the frameworks SDK (leader election among framework
//! instances, finding the leading master, the state store):
//!
//! * [`ZkUrl`], [`Session`], [`SessionState`] (`session.rs`): `zk://` URLs
//!   and sessions whose expiry is watched;
//! * [`election`]: Mesos' election over ephemeral sequential `json.info_`
//!   znodes, and reading who leads;
//! * [`testing`]: a real ZooKeeper server (Debian's, through
//!   `scripts/zookeeper.sh`) for tests, benchmarks and `corral dev`.

pub mod election;
mod session;
pub mod testing;

pub use session::{Session, SessionState, ZkUrl, ZkUrlError};

//! Corral's Spark dispatcher (`corral spark-dispatcher`, in progress):
//! Spark 4 applications submitted with `spark-submit`'s REST submission
//! protocol run their drivers and executors as Corral tasks.
//!
//! Built so far, all pure:
//!
//! * [`protocol`] — the REST submission protocol's messages (create, status,
//!   kill, killall, clear, readyz, and the error response) in Spark's JSON,
//!   validated as Spark's own server validates them;
//! * [`queue`] — the dispatcher's submissions: a bounded queue with
//!   priorities per role, driver states, supervision with backoff, and the
//!   retained history of finished drivers.

pub mod protocol;
pub mod queue;

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
//!   retained history of finished drivers;
//! * [`plan`] — what an application takes: its driver task and a Spark
//!   standalone cluster of its own (a master and one worker per executor)
//!   sized from its properties; the dispatcher's driver defaults; placement
//!   constraints on agent attributes;
//! * [`calls`] — each REST call answered from the dispatcher's state as
//!   Spark's server would answer it;
//! * [`api`] — the submission server over HTTP, which unmodified
//!   `spark-submit` talks to (checked in `tests/spark_submit.rs` with the
//!   `spark-submit` of pyspark 4.3).

pub mod api;
pub mod calls;
pub mod plan;
pub mod protocol;
pub mod queue;

//! Corral's Spark dispatcher (`corral spark-dispatcher`): Spark 4
//! applications submitted with `spark-submit`'s REST submission protocol
//! run their drivers and executors as Corral tasks, each application on a
//! Spark standalone cluster of its own (a master and one worker per
//! executor) launched and released with it.
//!
//! Pure cores:
//!
//! * [`protocol`] — the REST submission protocol's messages (create, status,
//!   kill, killall, clear, readyz, and the error response) in Spark's JSON,
//!   validated as Spark's own server validates them;
//! * [`queue`] — the dispatcher's submissions: a bounded queue with
//!   priorities per role, driver states, supervision with backoff, and the
//!   retained history of finished drivers;
//! * [`plan`] — what an application takes, sized from its properties; the
//!   dispatcher's driver defaults; placement constraints;
//! * [`gang`] — an application placed on offers all or nothing;
//! * [`tasks`] — its master, workers and driver as TaskInfos;
//! * [`calls`] — each REST call answered from the dispatcher's state as
//!   Spark's server would answer it.
//!
//! Shell: [`api`] (the submission server, which unmodified `spark-submit`
//! talks to, and the dispatcher's JSON API), [`webui`] (its web pages:
//! queued, running and finished drivers) and [`server`] (the actor:
//! offers, launches, task states, the store, failover).

pub mod api;
pub mod calls;
pub mod gang;
pub mod plan;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod tasks;
pub mod webui;

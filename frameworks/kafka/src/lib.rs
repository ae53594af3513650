//! Corral's Kafka framework (`corral kafka scheduler`): Kafka-protocol
//! brokers as Corral tasks, each on reserved resources with a persistent
//! volume for its log directories, managed with mesos/kafka's broker and
//! topic commands.
//!
//! Pure cores:
//!
//! * [`expr`] — mesos/kafka's broker expressions (`0`, `0,1`, `0..2`, `*`,
//!   `*[rack=r1]`), periods, option maps, port ranges, topic expressions;
//! * [`constraints`] — its placement constraints (`like:`, `unlike:`,
//!   `unique`, `cluster`, `groupBy`) over the SDK's placement rules;
//! * [`broker`] — a broker, its failover backoff and stickiness, the
//!   parameters of `add` and `update`, and its JSON;
//! * [`launch`] — what a broker runs: tansu on `sqlite://` storage on its
//!   volume, or Apache Kafka in KRaft mode with a generated
//!   `server.properties` (tarball or Docker image);
//! * [`core`] — the scheduler: commands, offers, status updates and time
//!   in; RESERVE/CREATE/LAUNCH, DESTROY/UNRESERVE, kills and revives out.
//!
//! Shell: [`topics`] (Kafka's admin protocol through rdkafka), [`api`]
//! (mesos/kafka's REST API, `/health`, `/metrics`), [`webui`] (its web
//! pages: brokers and topics) and [`server`] (the actor: the SDK's
//! scheduler driver, the store, failover).

pub mod api;
pub mod broker;
pub mod constraints;
pub mod core;
pub mod expr;
pub mod launch;
pub mod server;
pub mod topics;
pub mod webui;

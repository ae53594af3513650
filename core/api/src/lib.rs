//! Corral's wire contracts.
//!
//! * [`v1`] – the Mesos v1 messages (generated from our own `.proto` files whose
//!   names and numbers match Apache Mesos), plus the scheduler, executor,
//!   master (operator) and agent API packages.
//! * [`internal`] – the master <-> agent gRPC protocol.
//! * [`codec`] – JSON exactly as Mesos emits/accepts it, and protobuf.
//! * [`recordio`] – the `<length>\n<record>` stream framing.
//! * [`resources`] – resource arithmetic and `--resources` parsing.

#[allow(clippy::all, missing_docs, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

/// Corral's internal master <-> agent protocol.
pub use generated::corral::internal;
/// Mesos v1 messages and API packages.
pub use generated::mesos::v1;

pub mod codec;
pub mod ids;
pub mod operations;
pub mod recordio;
pub mod resources;
pub mod roles;
pub mod stout;

/// The Corral version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Mesos API version Corral speaks, reported where tools expect a Mesos
/// version (purely numeric, dotted).
pub const MESOS_VERSION: &str = "1.11.0";

/// Content types of the Mesos HTTP APIs.
pub const APPLICATION_JSON: &str = "application/json";
/// Protobuf content type.
pub const APPLICATION_PROTOBUF: &str = "application/x-protobuf";
/// Header carrying the scheduler stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

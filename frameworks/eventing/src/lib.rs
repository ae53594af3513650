//! Corral's eventing: the cluster's own events, read from the master's
//! operator event stream, published to Kafka and RabbitMQ as CloudEvents
//! (the publisher), and the eventing service (Kafka topics over HTTP/gRPC
//! sessions) with its framework and its client.
//!
//! With `default-features = false` only the service's client, its wire
//! types and the pure cores are built (no librdkafka, lapin, axum or tonic).
#[cfg(feature = "server")]
pub mod framework;
pub mod service;

// The publisher (issue 15, part 1): the master's operator events to Kafka
// and RabbitMQ. See docs/eventing.md.
#[cfg(feature = "server")]
pub mod core;
#[cfg(feature = "server")]
pub mod event;
#[cfg(feature = "server")]
pub mod publisher;
#[cfg(feature = "server")]
pub mod spool;
#[cfg(feature = "server")]
pub mod tail;

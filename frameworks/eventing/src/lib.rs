//! Corral's eventing: the cluster's own events, read from the master's
//! operator event stream, published to Kafka and RabbitMQ as CloudEvents.
pub mod framework;
pub mod service;

// The publisher (issue 15, part 1): the master's operator events to Kafka
// and RabbitMQ. See docs/eventing.md.
pub mod core;
pub mod event;
pub mod publisher;
pub mod spool;
pub mod tail;

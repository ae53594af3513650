//! The RabbitMQ topology the two tiers share (the "telephone exchange").
//!
//! For a service named `S` with `N` shards:
//!
//! | object | kind | what it carries |
//! | --- | --- | --- |
//! | `S.requests` | direct exchange | API nodes publish each [`Envelope`](super::wire::Envelope) with its shard's routing key `shard.<n>` (mandatory, publisher confirms) |
//! | `S.shard.<n>` (`n < N`) | queue bound to `S.requests` with `shard.<n>` | single active consumer: the backend owning shard `n`; at most [`SHARD_QUEUE_MAX`] requests (more are refused, the client gets 503) and none older than [`REQUEST_TTL_MS`] |
//! | `S.members` | fanout exchange | backends' heartbeats ([`Heartbeat`]) |
//! | server-named exclusive queues | | each API node's replies; each backend's view of the heartbeats |
//!
//! Everything is transient and declared by every node when it connects
//! (declarations are idempotent); requests are retry-safe, so nothing needs
//! to survive a broker restart.

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use serde::{Deserialize, Serialize};

use super::ring::ShardId;

/// The most requests waiting in one shard queue.
pub const SHARD_QUEUE_MAX: i32 = 10_000;
/// Requests older than this are dropped from a shard queue (their API node
/// has answered 504 long before).
pub const REQUEST_TTL_MS: i32 = 60_000;

/// A backend's heartbeat on `S.members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The backend's id.
    pub backend: String,
    /// The backend is shutting down: give its shards to the others now.
    #[serde(default)]
    pub leaving: bool,
}

/// Names and declarations of one service's topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The service name (the prefix of every name).
    pub service: String,
    /// The number of shards.
    pub shards: u32,
}

impl Topology {
    /// The requests exchange.
    pub fn requests_exchange(&self) -> String {
        format!("{}.requests", self.service)
    }

    /// The heartbeats exchange.
    pub fn members_exchange(&self) -> String {
        format!("{}.members", self.service)
    }

    /// The queue of a shard.
    pub fn shard_queue(&self, shard: ShardId) -> String {
        shard.queue_name(&self.service)
    }

    /// Declares the exchanges and every shard queue with its binding.
    pub async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        ch.exchange_declare(
            ShortString::from(self.requests_exchange()),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            ShortString::from(self.members_exchange()),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for n in 0..self.shards {
            let shard = ShardId(n);
            let mut args = FieldTable::default();
            args.insert(
                ShortString::from("x-single-active-consumer"),
                AMQPValue::Boolean(true),
            );
            args.insert(
                ShortString::from("x-max-length"),
                AMQPValue::LongInt(SHARD_QUEUE_MAX),
            );
            args.insert(
                ShortString::from("x-overflow"),
                AMQPValue::LongString("reject-publish".into()),
            );
            args.insert(
                ShortString::from("x-message-ttl"),
                AMQPValue::LongInt(REQUEST_TTL_MS),
            );
            ch.queue_declare(
                ShortString::from(self.shard_queue(shard)),
                QueueDeclareOptions::default(),
                args,
            )
            .await?;
            ch.queue_bind(
                ShortString::from(self.shard_queue(shard)),
                ShortString::from(self.requests_exchange()),
                ShortString::from(shard.routing_key()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// A private queue (see [`Topology::private_queue`]) consumed without
    /// acks under `tag`.
    pub async fn private_consumer(
        ch: &Channel,
        exchange: Option<&str>,
        tag: &str,
    ) -> Result<(ShortString, lapin::Consumer), lapin::Error> {
        let queue = Topology::private_queue(ch, exchange).await?;
        let consumer = ch
            .basic_consume(
                queue.clone(),
                ShortString::from(tag),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((queue, consumer))
    }

    /// Declares a private (exclusive, server-named) queue, optionally bound
    /// to `exchange`; answers its name.
    pub async fn private_queue(
        ch: &Channel,
        exchange: Option<&str>,
    ) -> Result<ShortString, lapin::Error> {
        let q = ch
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let name = q.name().clone();
        if let Some(x) = exchange {
            ch.queue_bind(
                name.clone(),
                ShortString::from(x),
                ShortString::from(""),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = Topology {
            service: "corral.eventing".into(),
            shards: 4,
        };
        assert_eq!(t.requests_exchange(), "corral.eventing.requests");
        assert_eq!(t.members_exchange(), "corral.eventing.members");
        assert_eq!(t.shard_queue(ShardId(3)), "corral.eventing.shard.3");
        let hb: Heartbeat = serde_json::from_str(r#"{"backend":"b-1"}"#).unwrap();
        assert!(!hb.leaving);
    }
}

//! Reading the published events back: a Kafka consumer of the topic, or a
//! private RabbitMQ queue bound to the exchange with a pattern for one
//! role and/or framework. Used by `corral events tail` and the benchmark.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::event::routing_word;
use crate::publisher::amqp::{redact, HEADER_PREFIX};

/// Why the tail stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// RabbitMQ failed.
    #[error("rabbitmq: {0}")]
    Amqp(String),
}

/// Where to read events from.
#[derive(Clone, Debug)]
pub enum TailSource {
    /// The Kafka topic.
    Kafka {
        /// `bootstrap.servers`.
        brokers: String,
        /// The topic.
        topic: String,
        /// Read from the oldest retained event, not from now.
        from_beginning: bool,
    },
    /// A private queue bound to the exchange.
    Amqp {
        /// The broker.
        url: String,
        /// The exchange.
        exchange: String,
    },
}

/// Which events to keep.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this role's.
    pub role: Option<String>,
    /// Only this framework's.
    pub framework: Option<String>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn keeps(&self, e: &TailEvent) -> bool {
        self.role.as_ref().is_none_or(|r| *r == e.role)
            && self.framework.as_ref().is_none_or(|f| *f == e.framework_id)
    }

    /// The AMQP binding pattern that selects the same events.
    pub fn binding(&self) -> String {
        let word =
            |v: &Option<String>| v.as_deref().map(routing_word).unwrap_or_else(|| "*".into());
        format!("{}.{}.*", word(&self.role), word(&self.framework))
    }
}

/// One event read back.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TailEvent {
    /// `ce_id`.
    pub id: String,
    /// `ce_type`.
    #[serde(rename = "type")]
    pub ce_type: String,
    /// `ce_source`.
    pub source: String,
    /// `ce_time`.
    pub time: String,
    /// `ce_subject`.
    pub subject: String,
    /// The role (extension `corralrole`).
    pub role: String,
    /// The framework (extension `corralframework`).
    pub framework_id: String,
    /// A task's state (extension `corralstate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Where it was read: `kafka` or `amqp`.
    pub via: String,
    /// The Kafka partition and offset, or the AMQP routing key.
    pub position: String,
    /// The data.
    pub data: serde_json::Value,
    /// When it was read (seconds since the epoch).
    #[serde(skip)]
    pub received_at: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn from_attributes(attrs: &BTreeMap<String, String>, data: &[u8]) -> TailEvent {
    let get = |k: &str| attrs.get(k).cloned().unwrap_or_default();
    TailEvent {
        id: get("id"),
        ce_type: get("type"),
        source: get("source"),
        time: get("time"),
        subject: get("subject"),
        role: get("corralrole"),
        framework_id: get("corralframework"),
        state: attrs.get("corralstate").cloned(),
        via: String::new(),
        position: String::new(),
        data: serde_json::from_slice(data).unwrap_or(serde_json::Value::Null),
        received_at: now(),
    }
}

/// Reads events into `tx` until `tx` closes or the source fails. `ready`
/// is told once the consumer is in place (partitions assigned, or the
/// queue bound).
pub async fn tail(
    source: TailSource,
    filter: Filter,
    tx: mpsc::Sender<TailEvent>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), TailError> {
    match source {
        TailSource::Kafka {
            brokers,
            topic,
            from_beginning,
        } => tail_kafka(&brokers, &topic, from_beginning, filter, tx, ready).await,
        TailSource::Amqp { url, exchange } => tail_amqp(&url, &exchange, filter, tx, ready).await,
    }
}

async fn tail_kafka(
    brokers: &str,
    topic: &str,
    from_beginning: bool,
    filter: Filter,
    tx: mpsc::Sender<TailEvent>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), TailError> {
    let group = format!(
        "corral-events-tail-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if from_beginning { "earliest" } else { "latest" },
        )
        .set("fetch.wait.max.ms", "10")
        .set("log_level", "3")
        .create()
        .map_err(|e| TailError::Kafka(e.to_string()))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| TailError::Kafka(e.to_string()))?;
    let mut ready = ready;
    let mut stream = consumer.stream();
    loop {
        if ready.is_some() {
            // Readiness: partitions assigned (a message may come first).
            let assigned = consumer
                .assignment()
                .map(|a| a.count() > 0)
                .unwrap_or(false);
            if assigned {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
        }
        let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        let msg = match next {
            Err(_) => {
                if tx.is_closed() {
                    return Ok(());
                }
                continue;
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "kafka consumer error");
                continue;
            }
            Ok(Some(Ok(m))) => m,
        };
        let mut attrs = BTreeMap::new();
        if let Some(h) = msg.headers() {
            for header in h.iter() {
                if let (Some(name), Some(v)) = (header.key.strip_prefix("ce_"), header.value) {
                    attrs.insert(name.to_string(), String::from_utf8_lossy(v).into_owned());
                }
            }
        }
        let mut e = from_attributes(&attrs, msg.payload().unwrap_or_default());
        e.via = "kafka".into();
        e.position = format!("{}@{}", msg.partition(), msg.offset());
        if filter.keeps(&e) && tx.send(e).await.is_err() {
            return Ok(());
        }
    }
}

fn amqp_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

async fn tail_amqp(
    url: &str,
    exchange: &str,
    filter: Filter,
    tx: mpsc::Sender<TailEvent>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), TailError> {
    let err = |e: lapin::Error| TailError::Amqp(format!("{}: {e}", redact(url)));
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(err)?;
    let ch = conn.create_channel().await.map_err(err)?;
    ch.exchange_declare(
        ShortString::from(exchange),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(err)?;
    let queue = ch
        .queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    let name = queue.name().clone();
    ch.queue_bind(
        name.clone(),
        ShortString::from(exchange),
        ShortString::from(filter.binding()),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(err)?;
    let mut consumer = ch
        .basic_consume(
            name,
            ShortString::from("corral-events-tail"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    if let Some(r) = ready {
        let _ = r.send(());
    }
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
        let delivery = match next {
            Err(_) => {
                if tx.is_closed() {
                    return Ok(());
                }
                continue;
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(err(e)),
            Ok(Some(Ok(d))) => d,
        };
        let mut attrs = BTreeMap::new();
        if let Some(h) = delivery.properties.headers() {
            for (k, v) in h.inner() {
                if let Some(name) = k.as_str().strip_prefix(HEADER_PREFIX) {
                    attrs.insert(name.to_string(), amqp_text(v));
                }
            }
        }
        let mut e = from_attributes(&attrs, &delivery.data);
        e.via = "amqp".into();
        e.position = delivery.routing_key.as_str().to_string();
        let _ = delivery.ack(BasicAckOptions::default()).await;
        if filter.keeps(&e) && tx.send(e).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_match_the_routing_keys() {
        let f = Filter {
            role: Some("a.b".into()),
            framework: None,
        };
        assert_eq!(f.binding(), "a%2Eb.*.*");
        assert_eq!(Filter::default().binding(), "*.*.*");
        let f = Filter {
            role: None,
            framework: Some("fw-1".into()),
        };
        assert_eq!(f.binding(), "*.fw-1.*");
    }
}

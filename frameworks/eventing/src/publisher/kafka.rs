//! The Kafka sink: rdkafka's idempotent producer (`acks=all`), each event a
//! CloudEvent in Kafka's binary content mode: `ce_*` headers, the
//! `content-type` header, the subject as the key (one partition per task,
//! agent or framework, so their events stay in order), the data as the
//! value.
//!
//! librdkafka retries sends by itself without a deadline
//! (`message.timeout.ms=0`): during an outage a batch waits (and `/health`
//! says so), and after it the same producer goes on in order. A failed
//! batch is sent again whole (at least once; consumers drop copies by
//! `ce_id`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::{KafkaConfig, Sink, SinkStat};
use crate::event::CONTENT_TYPE;
use crate::spool::Record;

/// How long a batch may wait for acknowledgements before `/health` calls
/// the sink down (it keeps waiting).
const STALL: Duration = Duration::from_secs(5);

/// The Kafka sink.
pub struct KafkaSink {
    cfg: KafkaConfig,
    stat: Arc<SinkStat>,
    producer: Option<FutureProducer>,
    topic_ok: bool,
}

/// The Kafka headers of an event in binary content mode.
pub fn headers_of(event: &crate::event::CloudEvent) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(10);
    for (name, value) in event.attributes() {
        h = h.insert(Header {
            key: &format!("ce_{name}"),
            value: Some(value.as_bytes()),
        });
    }
    h.insert(Header {
        key: "content-type",
        value: Some(CONTENT_TYPE.as_bytes()),
    })
}

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "corral-eventing")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("linger.ms", "2")
        .set("allow.auto.create.topics", "false")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

impl KafkaSink {
    /// A sink for `cfg`, reporting to `stat`.
    pub fn new(cfg: KafkaConfig, stat: Arc<SinkStat>) -> Self {
        Self {
            cfg,
            stat,
            producer: None,
            topic_ok: false,
        }
    }

    fn producer(&mut self) -> Result<FutureProducer, String> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        let p: FutureProducer = client_config(&self.cfg)
            .create()
            .map_err(|e| format!("invalid kafka configuration: {e}"))?;
        self.producer = Some(p.clone());
        Ok(p)
    }

    async fn create_topic(&self) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.cfg)
            .create()
            .map_err(|e| format!("invalid kafka configuration: {e}"))?;
        let topic = NewTopic::new(
            &self.cfg.topic,
            self.cfg.partitions.max(1),
            TopicReplication::Fixed(self.cfg.replication.max(1)),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&[topic], &opts)
            .await
            .map_err(|e| format!("cannot create topic {}: {e}", self.cfg.topic))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(format!("cannot create topic {t}: {code}")),
            }
        }
        tracing::info!(topic = %self.cfg.topic, "created the kafka topic");
        Ok(())
    }
}

/// Checks that the brokers answer and hold the topic.
fn check_metadata(producer: &FutureProducer, brokers: &str, topic: &str) -> Result<(), Missing> {
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .map_err(|e| Missing::Other(format!("kafka brokers {brokers} unreachable: {e}")))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(Missing::Topic);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(()),
        None => Err(Missing::Topic),
        Some(e) => {
            let code = RDKafkaErrorCode::from(e);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition
                || code == RDKafkaErrorCode::UnknownTopic
            {
                Err(Missing::Topic)
            } else {
                Err(Missing::Other(format!("topic {topic}: {code}")))
            }
        }
    }
}

enum Missing {
    Topic,
    Other(String),
}

impl Sink for KafkaSink {
    async fn probe(&mut self) -> Result<(), String> {
        let producer = self.producer()?;
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.producer = None;
            return Err(format!("producer failed ({code}): {reason}; recreating it"));
        }
        let brokers = self.cfg.brokers.clone();
        let topic = self.cfg.topic.clone();
        let p = producer.clone();
        let checked = tokio::task::spawn_blocking(move || check_metadata(&p, &brokers, &topic))
            .await
            .map_err(|e| format!("probe: {e}"))?;
        match checked {
            Ok(()) => {
                self.topic_ok = true;
                Ok(())
            }
            Err(Missing::Other(reason)) => Err(reason),
            Err(Missing::Topic) if self.cfg.create_topic => {
                self.create_topic().await?;
                Ok(())
            }
            Err(Missing::Topic) => Err(format!(
                "topic {} does not exist and --kafka_create_topic is off (create it, or let the publisher)",
                self.cfg.topic
            )),
        }
    }

    async fn publish(&mut self, batch: &[Record]) -> Result<(), String> {
        if !self.topic_ok {
            // Sending to a missing topic would only wait: say why first.
            self.probe().await?;
        }
        let producer = self.producer()?;
        let mut pending = Vec::with_capacity(batch.len());
        for r in batch {
            let payload = r.event.data_bytes();
            let mut record = FutureRecord::to(&self.cfg.topic)
                .key(r.event.key())
                .payload(&payload)
                .headers(headers_of(&r.event));
            let fut = loop {
                match producer.send_result(record) {
                    Ok(f) => break f,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => return Err(format!("cannot queue an event: {e}")),
                }
            };
            pending.push(fut);
        }
        let started = Instant::now();
        let n = pending.len();
        let mut all = Box::pin(futures::future::join_all(pending));
        let results = loop {
            tokio::select! {
                r = &mut all => break r,
                _ = tokio::time::sleep(STALL) => {
                    let waited = started.elapsed().as_secs();
                    let mut reason = format!(
                        "kafka brokers {} have not acknowledged {n} events for {waited}s (librdkafka keeps retrying)",
                        self.cfg.brokers
                    );
                    if let Err(Missing::Other(r)) = {
                        let p = producer.clone();
                        let (b, t) = (self.cfg.brokers.clone(), self.cfg.topic.clone());
                        tokio::task::spawn_blocking(move || check_metadata(&p, &b, &t))
                            .await
                            .unwrap_or(Err(Missing::Other("probe failed".into())))
                    } {
                        reason = format!("{reason}: {r}");
                    }
                    self.stat.down(reason);
                }
            }
        };
        for r in results {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if producer.client().fatal_error().is_some() {
                        self.producer = None;
                    }
                    if matches!(
                        e,
                        KafkaError::MessageProduction(
                            RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::UnknownTopic
                        )
                    ) {
                        self.topic_ok = false;
                    }
                    return Err(format!("kafka refused an event: {e}"));
                }
                Err(_) => {
                    self.producer = None;
                    return Err("the kafka producer went away".into());
                }
            }
        }
        Ok(())
    }
}

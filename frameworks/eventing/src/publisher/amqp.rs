//! The RabbitMQ sink (lapin, AMQP 0-9-1): a durable topic exchange, routing
//! key `<role>.<framework_id>.<kind>`, persistent messages, publisher
//! confirms. Each message is a CloudEvent in binary content mode after the
//! CloudEvents AMQP binding: the attributes as `cloudEvents:<name>` headers,
//! `datacontenttype` as the `content-type` property, the data as the body
//! (and the id and type also as `message-id` and `type` properties).

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::{AmqpConfig, Sink, SinkStat};
use crate::event::{CloudEvent, CONTENT_TYPE};
use crate::spool::Record;

/// The header prefix of the CloudEvents AMQP binding.
pub const HEADER_PREFIX: &str = "cloudEvents:";

/// The RabbitMQ sink.
pub struct AmqpSink {
    cfg: AmqpConfig,
    _stat: Arc<SinkStat>,
    conn: Option<(Connection, Channel)>,
}

/// The AMQP properties of an event.
pub fn properties_of(event: &CloudEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in event.attributes() {
        headers.insert(
            ShortString::from(format!("{HEADER_PREFIX}{name}")),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(event.id.clone()))
        .with_type(ShortString::from(event.ce_type()))
        .with_app_id(ShortString::from("corral-eventing"))
        .with_headers(headers)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl AmqpSink {
    /// A sink for `cfg`, reporting to `stat`.
    pub fn new(cfg: AmqpConfig, stat: Arc<SinkStat>) -> Self {
        Self {
            cfg,
            _stat: stat,
            conn: None,
        }
    }

    async fn channel(&mut self) -> Result<Channel, String> {
        if let Some((c, ch)) = &self.conn {
            if c.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        if let Some((c, _)) = self.conn.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), c.close(200, "reconnecting".into()))
                    .await;
        }
        let where_ = redact(&self.cfg.url);
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(&self.cfg.url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| format!("rabbitmq {where_}: no answer within 10s"))?
        .map_err(|e| format!("rabbitmq {where_}: {e}"))?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("rabbitmq {where_}: cannot open a channel: {e}"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("rabbitmq {where_}: cannot enable publisher confirms: {e}"))?;
        ch.exchange_declare(
            ShortString::from(self.cfg.exchange.clone()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            format!(
                "rabbitmq {where_}: cannot declare the durable topic exchange {}: {e}",
                self.cfg.exchange
            )
        })?;
        tracing::info!(url = %where_, exchange = %self.cfg.exchange, "connected to rabbitmq");
        self.conn = Some((conn, ch.clone()));
        Ok(ch)
    }
}

impl Sink for AmqpSink {
    async fn probe(&mut self) -> Result<(), String> {
        self.channel().await.map(|_| ())
    }

    async fn publish(&mut self, batch: &[Record]) -> Result<(), String> {
        let ch = self.channel().await?;
        let mut confirms = Vec::with_capacity(batch.len());
        for r in batch {
            let payload = r.event.data_bytes();
            let confirm = ch
                .basic_publish(
                    ShortString::from(self.cfg.exchange.clone()),
                    ShortString::from(r.event.routing_key()),
                    BasicPublishOptions::default(),
                    &payload,
                    properties_of(&r.event),
                )
                .await;
            match confirm {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    self.conn = None;
                    return Err(format!("rabbitmq: cannot publish: {e}"));
                }
            }
        }
        for c in confirms {
            match c.await {
                Ok(conf) if conf.is_ack() => {}
                Ok(_) => return Err("rabbitmq refused (nack) an event".into()),
                Err(e) => {
                    self.conn = None;
                    return Err(format!("rabbitmq: no confirm: {e}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://h:1/"), "amqp://h:1/");
    }
}

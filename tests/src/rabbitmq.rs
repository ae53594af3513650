//! A real RabbitMQ server (Debian's rabbitmq-server through scripts/rabbitmq.sh) started and stopped by a test.
//!
//! Each [`RabbitMq`] is a private node (its own node name, ports, Mnesia
//! and logs under its directory) stopped when dropped. [`Queue`] is a real
//! AMQP client's queue bound to an exchange, collecting what it receives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::{free_port, workspace_dir};

/// A private RabbitMQ node.
pub struct RabbitMq {
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    /// Its directory.
    pub dir: PathBuf,
    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub url: String,
}

fn script(args: &[&str]) -> (bool, String) {
    let out = Command::new(workspace_dir().join("scripts/rabbitmq.sh"))
        .args(args)
        .output()
        .expect("run scripts/rabbitmq.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl RabbitMq {
    /// Starts a node in `dir` on a free port; returns once it accepts AMQP.
    pub fn start(dir: &Path) -> RabbitMq {
        let port = loop {
            // The distribution port is port + 10000: both must be free.
            let p = free_port();
            if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
                break p;
            }
        };
        let r = RabbitMq {
            port,
            dir: dir.to_path_buf(),
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        };
        r.run_start();
        r
    }

    fn run_start(&self) {
        let (ok, text) = script(&["start", &self.dir.to_string_lossy(), &self.port.to_string()]);
        assert!(ok, "rabbitmq did not start:\n{text}\nlog:\n{}", self.log());
    }

    /// The node's log.
    pub fn log(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("log")) {
            for e in entries.flatten() {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// This node's URL with other credentials.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the node.
    pub fn stop(&self) {
        let (ok, text) = script(&["stop", &self.dir.to_string_lossy()]);
        assert!(ok, "rabbitmq did not stop:\n{text}");
    }

    /// Stops and starts the node (same port, same data).
    pub fn restart(&self) {
        self.stop();
        self.run_start();
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        let _ = script(&["stop", &self.dir.to_string_lossy()]);
    }
}

/// One message a [`Queue`] received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its routing key.
    pub routing_key: String,
    /// Its `cloudEvents:*` headers, without the prefix.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// Its delivery mode (2: persistent).
    pub delivery_mode: Option<u8>,
    /// The body as JSON.
    pub data: serde_json::Value,
}

/// A durable queue bound to an exchange, consumed in the background.
pub struct Queue {
    /// What it received so far.
    pub received: Arc<Mutex<Vec<Received>>>,
    _conn: Connection,
}

impl Queue {
    /// Declares the durable topic `exchange` (as the publisher does) and a
    /// durable queue `name` bound to it with `pattern`, and consumes it.
    pub async fn bind(url: &str, exchange: &str, name: &str, pattern: &str) -> Queue {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("amqp connect");
        let ch = conn.create_channel().await.expect("channel");
        ch.exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
        ch.queue_bind(
            name.into(),
            exchange.into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        let mut consumer = ch
            .basic_consume(
                name.into(),
                format!("test-{name}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let mut attributes = std::collections::BTreeMap::new();
                if let Some(h) = d.properties.headers() {
                    for (k, v) in h.inner() {
                        if let Some(n) = k.as_str().strip_prefix("cloudEvents:") {
                            let text = match v {
                                AMQPValue::LongString(s) => {
                                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                                }
                                other => format!("{other:?}"),
                            };
                            attributes.insert(n.to_string(), text);
                        }
                    }
                }
                let r = Received {
                    routing_key: d.routing_key.as_str().to_string(),
                    attributes,
                    content_type: d
                        .properties
                        .content_type()
                        .as_ref()
                        .map(|c| c.as_str().to_string()),
                    delivery_mode: *d.properties.delivery_mode(),
                    data: serde_json::from_slice(&d.data).unwrap_or(serde_json::Value::Null),
                };
                let _ = d.ack(BasicAckOptions::default()).await;
                if let Ok(mut v) = sink.lock() {
                    v.push(r);
                }
            }
        });
        Queue {
            received,
            _conn: conn,
        }
    }

    /// A copy of what it received.
    pub fn snapshot(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

//! The Kafka framework driven by the tests: its scheduler process
//! (`corral kafka scheduler` with the durable tansu from
//! `scripts/tansu.sh`), its REST API, and a real Kafka client (rdkafka)
//! producing to and consuming from the brokers it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::{corral_bin, free_port, processes_in, wait_for, TIMEOUT};

/// The durable tansu (`sqlite://` storage): `CORRAL_TANSU`, or where
/// `scripts/tansu.sh` caches it.
pub fn tansu_bin() -> PathBuf {
    crate::tansu::bin()
}

/// A running `corral kafka scheduler`.
pub struct KafkaScheduler {
    /// The process.
    pub child: tokio::process::Child,
    /// Its API port.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its log.
    pub log: PathBuf,
    http: reqwest::Client,
}

impl KafkaScheduler {
    /// Starts a scheduler for `master` running tansu brokers, its state in
    /// `<dir>/state`, on `port` (0: a free one), plus `extra` flags.
    pub fn spawn(master: &str, dir: &Path, port: u16, extra: &[String]) -> KafkaScheduler {
        let port = if port == 0 { free_port() } else { port };
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("kafka-scheduler-{n}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = tokio::process::Command::new(corral_bin())
            .args(["kafka", "scheduler", "--master", master])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg(format!("--broker_binary={}", tansu_bin().display()))
            .arg(format!("--state_dir={}", dir.join("state").display()))
            .args(extra)
            .env("CORRAL_LOG", "info")
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the kafka scheduler");
        KafkaScheduler {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Starts it and waits until it has subscribed.
    pub async fn start(master: &str, dir: &Path, port: u16, extra: &[String]) -> KafkaScheduler {
        let s = Self::spawn(master, dir, port, extra);
        s.wait_subscribed().await;
        s
    }

    /// Waits until `/health` says it leads and is subscribed.
    pub async fn wait_subscribed(&self) {
        assert!(
            wait_for(TIMEOUT * 2, || async {
                let h = self.get("/health").await.1;
                h["leader"] == true && h["subscribed"] == true
            })
            .await,
            "the kafka scheduler did not subscribe:\n{}",
            self.log_text()
        );
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET: status and JSON (or the text as a JSON string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        match self.http.get(format!("{}{path}", self.url)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// POST `/api/<path>` with `params` in the query string: status and
    /// JSON (or text).
    pub async fn call(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let mut url = reqwest::Url::parse(&format!("{}/api/{path}", self.url)).expect("url");
        url.query_pairs_mut().extend_pairs(params.iter().copied());
        let r = self.http.post(url).send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every broker (`/api/broker/list`).
    pub async fn brokers(&self) -> Vec<Value> {
        self.get("/api/broker/list").await.1["brokers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// One broker.
    pub async fn broker(&self, id: u32) -> Value {
        let id = id.to_string();
        self.brokers()
            .await
            .into_iter()
            .find(|b| b["id"].as_str() == Some(id.as_str()))
            .unwrap_or(Value::Null)
    }

    /// Kills it with SIGKILL and waits for it to exit.
    pub async fn kill_9(&mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }
}

/// The pid of the tansu process running in a broker's sandbox (its
/// executor's cwd is the sandbox too; tansu is told apart by its command
/// line).
pub fn broker_pid(sandbox: &Path) -> Option<i32> {
    processes_in(sandbox).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("--listener-url"))
    })
}

/// Whether process `pid` lives (a zombie does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

/// Produces `messages` to `topic`'s `partition` through `bootstrap`,
/// waiting for every acknowledgement.
pub async fn produce(bootstrap: &str, topic: &str, partition: i32, messages: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "15000")
        .set("acks", "all")
        .create()
        .expect("producer");
    for m in messages {
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(m.as_str())
            .payload(m.as_str());
        producer
            .send(record, Duration::from_secs(15))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing {m:?} to {bootstrap}: {e}"));
    }
}

/// Reads `topic`'s `partition` through `bootstrap` from the beginning
/// until `at_least` messages arrived or `timeout` passed; their payloads.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    at_least: usize,
    timeout: Duration,
) -> Vec<String> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("corral-test-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Beginning)
            .expect("partition");
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < at_least && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(
                    m.payload()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default(),
                ),
                Some(Err(e)) => eprintln!("[kafka test] consume from {bootstrap}: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .expect("join")
}

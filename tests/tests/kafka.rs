//! The Kafka framework (`corral kafka scheduler`) end to end: a real
//! master and three agents, the scheduler process, real tansu brokers (the
//! durable build, `sqlite://` storage on each broker's persistent volume),
//! the `corral kafka` CLI and its REST API, and a real Kafka client
//! (rdkafka) producing and consuming.
//!
//! What tansu is, precisely: every tansu broker keeps its data in its own
//! storage engine and reports itself as node 111 in every metadata answer;
//! it accepts a replication factor and reports that many replicas, all of
//! them itself, and replicates nothing to other brokers. Three brokers on
//! three volumes are three independent single-broker clusters; the test
//! asserts exactly that, and that each broker's data survives its restart
//! on the same volume.

use std::collections::BTreeSet;
use std::path::PathBuf;

use corral_tests::kafka::{consume, produce, KafkaScheduler};
use corral_tests::{corral_bin, wait_for, Cluster, ClusterOptions, TIMEOUT};
use serde_json::Value;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three agents, each with its own port range below the ephemeral range
/// (they share one address)
/// and a `node` attribute the brokers spread over.
async fn cluster(first_port: u32) -> Cluster {
    let per_agent_flags = (0..3u32)
        .map(|i| {
            let lo = first_port + i * 20;
            vec![
                format!(
                    "--resources=cpus:2;mem:1024;disk:1024;ports:[{lo}-{}]",
                    lo + 19
                ),
                format!("--attributes=node:n{i}"),
            ]
        })
        .collect();
    Cluster::start(ClusterOptions {
        agents: 3,
        per_agent_flags,
        ..Default::default()
    })
    .await
}

/// `corral kafka <args>` against the scheduler: exit status and output.
async fn cli(s: &KafkaScheduler, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(corral_bin())
        .arg("kafka")
        .args(args)
        .args(["--api", &s.url])
        .output()
        .await
        .expect("corral kafka runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn task_id(b: &Value) -> String {
    b["task"]["id"].as_str().unwrap_or_default().to_string()
}

fn endpoint(b: &Value) -> String {
    b["task"]["endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The volume's directory on its agent (Mesos' layout).
fn volume_dir(c: &Cluster, b: &Value) -> PathBuf {
    let agent = b["reservation"]["agentId"].as_str().unwrap_or_default();
    c.agent(agent)
        .work_dir
        .join("volumes/roles/kafka")
        .join(b["volume"].as_str().unwrap_or_default())
}

/// The framework's tasks the master knows: (id, state).
async fn master_tasks(c: &Cluster) -> BTreeSet<(String, String)> {
    let state = c.get_json("/master/state").await;
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == "kafka")
        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn messages(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tansu_brokers_on_volumes_survive_restarts_and_a_scheduler_failover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster(24_100).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut s = KafkaScheduler::start(&c.master, dir.path(), 0, &[]).await;

    // Three brokers through the CLI, one per agent (node=unique).
    let (ok, out) = cli(
        &s,
        &[
            "broker",
            "add",
            "0..2",
            "--cpus",
            "0.2",
            "--mem",
            "128",
            "--heap",
            "64",
            "--disk",
            "32",
            "--constraints",
            "node=unique",
            "--failover-delay",
            "1s",
            "--failover-max-delay",
            "10s",
            "--stickiness-period",
            "10m",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("stopped"), "{out}");
    let (status, started) = s
        .call("broker/start", &[("broker", "0..2"), ("timeout", "60s")])
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "started", "{started}\n{}", s.log_text());
    let brokers = s.brokers().await;
    assert_eq!(brokers.len(), 3);
    let agents: BTreeSet<&str> = brokers
        .iter()
        .filter_map(|b| b["task"]["slaveId"].as_str())
        .collect();
    assert_eq!(agents.len(), 3, "one broker per agent: {brokers:?}");
    for b in &brokers {
        let id = b["id"].as_str().unwrap_or_default();
        assert_eq!(b["state"], "running", "{b}");
        assert_eq!(b["volume"], format!("kafka-broker-{id}"));
        assert_eq!(b["reservation"]["agentId"], b["task"]["slaveId"]);
        // The broker's SQLite file is in its volume on its agent.
        let db = volume_dir(&c, b).join("tansu.db");
        assert!(
            wait_for(TIMEOUT, || async { db.is_file() }).await,
            "no {}",
            db.display()
        );
    }

    // A topic with three partitions and replication factor 3, through
    // Kafka's admin protocol, on every broker (each is its own cluster).
    let (status, added) = s
        .call(
            "topic/add",
            &[("topic", "events"), ("partitions", "3"), ("replicas", "3")],
        )
        .await;
    assert_eq!(status, 200, "{added}\n{}", s.log_text());
    let topics = added["topics"].as_array().cloned().unwrap_or_default();
    assert_eq!(topics.len(), 3, "{added}");
    for t in &topics {
        assert_eq!(t["name"], "events");
        let parts = t["partitions"].as_object().cloned().unwrap_or_default();
        assert_eq!(parts.len(), 3, "{t}");
        for replicas in parts.values() {
            // Three replicas reported, all of them the broker itself
            // (tansu's node 111): nothing is replicated to other brokers.
            assert_eq!(replicas, "111, 111, 111", "{t}");
        }
    }
    let (ok, out) = cli(&s, &["topic", "list", "events", "--json"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["topics"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    let (status, updated) = s
        .call(
            "topic/update",
            &[("topic", "events"), ("options", "retention.ms=3600000")],
        )
        .await;
    // tansu does not implement the AlterConfigs rdkafka sends: the
    // broker's refusal is passed on (502), not taken for bad input.
    assert_eq!(status, 502, "{updated}");
    assert!(
        updated
            .as_str()
            .unwrap_or_default()
            .contains("UnsupportedFeature"),
        "{updated}"
    );
    // Produce to each broker; each one serves exactly its own messages.
    for b in &brokers {
        let id = b["id"].as_str().unwrap_or_default();
        produce(&endpoint(b), "events", 0, &messages(&format!("b{id}"), 10)).await;
    }
    for b in &brokers {
        let id = b["id"].as_str().unwrap_or_default();
        let got = consume(&endpoint(b), "events", 0, 10, TIMEOUT).await;
        assert_eq!(got, messages(&format!("b{id}"), 10), "broker {id}");
    }

    // Restart broker 1: a new task on the same agent, the same volume and
    // endpoint, and its data read back.
    let before = s.broker(1).await;
    let (status, restarted) = s
        .call("broker/restart", &[("broker", "1"), ("timeout", "60s")])
        .await;
    assert_eq!(status, 200, "{restarted}");
    assert_eq!(
        restarted["status"],
        "restarted",
        "{restarted}\n{}",
        s.log_text()
    );
    let after = s.broker(1).await;
    assert_ne!(task_id(&after), task_id(&before));
    assert_eq!(after["task"]["slaveId"], before["task"]["slaveId"]);
    assert_eq!(after["volume"], before["volume"]);
    assert_eq!(after["reservation"], before["reservation"]);
    assert_eq!(endpoint(&after), endpoint(&before));
    let got = consume(&endpoint(&after), "events", 0, 10, TIMEOUT).await;
    assert_eq!(got, messages("b1", 10), "broker 1's data after its restart");
    produce(&endpoint(&after), "events", 0, &messages("b1-again", 2)).await;

    // Bad input: 400 naming the parameter, nothing changes.
    let listed = s.brokers().await;
    for (path, params, names) in [
        ("broker/start", vec![("broker", "9")], "broker 9 not found"),
        ("broker/stop", vec![("broker", "x..y")], "broker:"),
        (
            "broker/update",
            vec![("broker", "0"), ("cpus", "abc")],
            "cpus",
        ),
        (
            "broker/update",
            vec![("broker", "0"), ("options", "node.id=7")],
            "options",
        ),
        (
            "broker/update",
            vec![("broker", "0"), ("bogus", "1")],
            "bogus",
        ),
        (
            "broker/add",
            vec![("broker", "1")],
            "broker 1 already exists",
        ),
        ("broker/remove", vec![("broker", "0")], "active"),
        ("broker/add", vec![], "broker: required"),
        ("topic/add", vec![("topic", "a b")], "topic"),
        (
            "topic/add",
            vec![("topic", "t"), ("partitions", "0")],
            "partitions",
        ),
    ] {
        let (status, answer) = s.call(path, &params).await;
        assert_eq!(status, 400, "{path} {params:?}: {answer}");
        assert!(
            answer.as_str().unwrap_or_default().contains(names),
            "{path} {params:?}: {answer}"
        );
    }
    let (status, _) = s.call("broker/bogus", &[("broker", "0")]).await;
    assert_eq!(status, 404);
    let (ok, out) = cli(&s, &["broker", "update", "7", "--mem", "64"]).await;
    assert!(!ok && out.contains("broker 7 not found"), "{out}");
    let unchanged = s.brokers().await;
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|b| {
                let mut b = b.clone();
                b["state"] = Value::Null;
                b
            })
            .collect()
    };
    assert_eq!(
        strip(&unchanged),
        strip(&listed),
        "bad input changed nothing"
    );

    // Framework failover: kill -9 the scheduler, start it again on the
    // same state. The brokers keep running (same task ids) and the new
    // scheduler adopts them.
    let tasks_before = master_tasks(&c).await;
    assert_eq!(tasks_before.len(), 3, "{tasks_before:?}");
    let ids_before: BTreeSet<String> = s.brokers().await.iter().map(task_id).collect();
    s.kill_9().await;
    assert_eq!(master_tasks(&c).await, tasks_before, "brokers run on");
    let s2 = KafkaScheduler::start(&c.master, dir.path(), 0, &[]).await;
    assert!(
        wait_for(TIMEOUT, || async {
            let b = s2.brokers().await;
            b.len() == 3 && b.iter().all(|b| b["state"] == "running")
        })
        .await,
        "{:?}\n{}",
        s2.brokers().await,
        s2.log_text()
    );
    let ids_after: BTreeSet<String> = s2.brokers().await.iter().map(task_id).collect();
    assert_eq!(ids_after, ids_before, "the same tasks, adopted");
    assert_eq!(master_tasks(&c).await, tasks_before);
    let b1 = s2.broker(1).await;
    let got = consume(&endpoint(&b1), "events", 0, 12, TIMEOUT).await;
    assert_eq!(got.len(), 12, "{got:?}");

    // The adopted brokers obey the new scheduler: stop and remove broker
    // 2; its volume is destroyed and its resources unreserved.
    let b2 = s2.broker(2).await;
    let vol = volume_dir(&c, &b2);
    assert!(vol.is_dir());
    let (status, stopped) = s2
        .call("broker/stop", &[("broker", "2"), ("timeout", "30s")])
        .await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert!(vol.is_dir(), "a stopped broker keeps its volume");
    let (status, removed) = s2.call("broker/remove", &[("broker", "2")]).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["ids"], serde_json::json!(["2"]));
    assert!(
        wait_for(TIMEOUT, || async { !vol.exists() }).await,
        "the removed broker's volume {} was not destroyed:\n{}",
        vol.display(),
        s2.log_text()
    );
    let metrics = s2.get("/metrics").await.1;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains("corral_kafka_brokers{state=\"running\"} 2"),
        "{text}"
    );
    assert!(text.contains("corral_kafka_leader 1"), "{text}");
    drop(s2);
    drop(dir);
}

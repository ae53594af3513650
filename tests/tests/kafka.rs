//! The Kafka framework (`corral kafka scheduler`) end to end: a real
//! master and agents, the scheduler process, real tansu brokers (the
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
//!
//! Also: a broker's reservation and volume across `kill -9` and restarts of
//! its agent (the broker running on, and the broker dying while the agent
//! is down), and two schedulers electing a leader through a real ZooKeeper
//! with the standby taking the running brokers over after `kill -9` of the
//! leader.

use std::collections::BTreeSet;
use std::path::PathBuf;

use corral_tests::browser::{Browser, DESKTOP, PHONE};
use corral_tests::kafka::{alive, broker_pid, consume, produce, KafkaScheduler};
use corral_tests::{corral_bin, redirects_to, wait_for, Cluster, ClusterOptions, TIMEOUT};
use serde_json::{json, Value};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `agents` agents, each with its own port range below the ephemeral range
/// (they share one address) and a `node` attribute the brokers spread
/// over, plus `flags` on every agent.
async fn cluster_of(agents: usize, first_port: u32, flags: &[&str]) -> Cluster {
    let per_agent_flags = (0..agents as u32)
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
        agents,
        agent_flags: flags.iter().map(|f| f.to_string()).collect(),
        per_agent_flags,
        ..Default::default()
    })
    .await
}

/// Three agents.
async fn cluster(first_port: u32) -> Cluster {
    cluster_of(3, first_port, &[]).await
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

/// The frameworks named `kafka` the master knows (`/master/frameworks`).
async fn kafka_frameworks(c: &Cluster) -> Vec<Value> {
    c.get_json("/master/frameworks").await["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == "kafka")
        .cloned()
        .collect()
}

/// How the framework registered: one framework, with the role, the
/// principal, checkpointing and `webui_url` pointing at `s`'s pages.
async fn assert_registered(c: &Cluster, s: &KafkaScheduler) -> Value {
    let fws = kafka_frameworks(c).await;
    assert_eq!(fws.len(), 1, "{fws:?}");
    let fw = fws[0].clone();
    assert_eq!(fw["webui_url"], format!("{}/ui", s.url), "{fw}");
    assert_eq!(fw["principal"], "kafka", "{fw}");
    assert_eq!(fw["roles"], json!(["kafka"]), "{fw}");
    assert_eq!(fw["checkpoint"], true, "{fw}");
    assert_eq!(fw["active"], true, "{fw}");
    // The webui_url answers: it is the brokers page.
    let url = fw["webui_url"].as_str().unwrap_or_default().to_string();
    let page = c
        .http
        .get(&url)
        .send()
        .await
        .expect("webui_url answers")
        .text()
        .await
        .expect("html");
    assert!(page.contains("<h1>Brokers</h1>"), "{page}");
    fw
}

/// Every agent's resources reserved for the role `kafka` (`/state`'s
/// `reserved_resources_full`), by agent id, each agent's sorted.
async fn kafka_reservations(c: &Cluster) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for a in &c.agents {
        let state: Value = match c.http.get(a.url("/state")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let mut rs: Vec<String> = state["reserved_resources_full"]["kafka"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect();
        rs.sort();
        out.push((a.id.clone(), rs));
    }
    out
}

/// Waits until broker `id` runs with no failures in a row.
async fn settled(s: &KafkaScheduler, id: u32) {
    assert!(
        wait_for(TIMEOUT, || async {
            let b = s.broker(id).await;
            b["state"] == "running" && b["failover"]["failures"].as_u64().unwrap_or(0) == 0
        })
        .await,
        "broker {id} runs on: {}\n{}",
        s.broker(id).await,
        s.log_text()
    );
}

/// The agent's executors: (registering, running), from its metrics.
async fn executors(c: &Cluster, i: usize) -> (f64, f64) {
    let v: Value = match c
        .http
        .get(c.agents[i].url("/metrics/snapshot"))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    (
        v["slave/executors_registering"].as_f64().unwrap_or(-1.0),
        v["slave/executors_running"].as_f64().unwrap_or(-1.0),
    )
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

    // The scheduler's own pages in a real browser: the brokers with their
    // endpoints, broker 1's page; the master links to the pages
    // (webui_url).
    let web = Browser::start().await.expect("browser");
    web.open(&format!("{}/ui", s.url))
        .await
        .expect("brokers page");
    let text = web.main_text().await.expect("text");
    for b in &brokers {
        assert!(
            text.contains(&endpoint(b))
                && text.contains(b["task"]["slaveId"].as_str().unwrap_or("?")),
            "{text}"
        );
    }
    assert!(text.contains("running"), "{text}");
    web.screenshot("kafka-brokers", DESKTOP)
        .await
        .expect("shot");
    web.screenshot("kafka-brokers", PHONE).await.expect("shot");
    let fws = kafka_frameworks(&c).await;
    assert_eq!(fws[0]["webui_url"], format!("{}/ui", s.url), "{fws:?}");
    let first = s.broker(1).await;
    web.open(&format!("{}/ui/brokers/1", s.url))
        .await
        .expect("broker page");
    let text = web.main_text().await.expect("text");
    assert!(
        text.contains("Broker 1")
            && text.contains(&task_id(&first))
            && text.contains("kafka-broker-1"),
        "{text}"
    );
    web.screenshot("kafka-broker", DESKTOP).await.expect("shot");
    web.screenshot("kafka-broker", PHONE).await.expect("shot");
    web.mark_page().await.expect("mark the page");

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
    // Broker 1's open page shows its new task without a reload.
    web.wait_for_text(&task_id(&after), TIMEOUT)
        .await
        .expect("the new task on the open page");
    web.assert_not_reloaded().await.expect("updated in place");
    web.open(&format!("{}/ui/topics", s.url))
        .await
        .expect("topics page");
    web.wait_for_text("events", TIMEOUT)
        .await
        .expect("the topic on the topics page");
    web.screenshot("kafka-topics", DESKTOP).await.expect("shot");
    web.screenshot("kafka-topics", PHONE).await.expect("shot");
    web.quit().await.expect("quit the browser");
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

/// `kill -9` of agent `i` and of the processes `pids` (broker 0's), then the
/// agent again with `--recover=reconnect`; waits until broker 0 runs again
/// as a new task (not `before`'s) and returns it.
async fn kill_agent_and_broker(
    c: &mut Cluster,
    s: &KafkaScheduler,
    i: usize,
    pids: &[i32],
    before: &Value,
) -> Value {
    c.kill_agent(i);
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        wait_for(TIMEOUT, || async { pids.iter().all(|p| !alive(*p)) }).await,
        "the broker's processes died: {pids:?}"
    );
    c.restart_agent(i, &["--recover=reconnect".into()]).await;
    assert!(
        wait_for(TIMEOUT, || async {
            let b = s.broker(0).await;
            b["state"] == "running" && task_id(&b) != task_id(before)
        })
        .await,
        "the broker starts again: {}\n{}\n{}",
        s.broker(0).await,
        s.log_text(),
        c.agent_log(i)
    );
    s.broker(0).await
}

/// A broker across restarts of its agent (`kill -9`, then the agent again
/// on the same work dir with `--recover=reconnect`, the default):
///
/// * the agent down and back: the broker's task runs on (the same process,
///   the same task id), its executor re-subscribes, and the scheduler does
///   nothing;
/// * the broker's process killed while its agent is down: when the agent
///   is back the executor reports the task failed, and the broker starts
///   again after its failover delay on the same agent, on the same
///   reservation and volume, with the same endpoint and its data;
/// * the broker's whole container (executor and broker) killed while its
///   agent is down, as a reboot leaves it: the recovering agent finds the
///   executor gone and reports the task failed, and the broker starts
///   again there just the same;
/// * the agent restarted with `--recover=cleanup` and then again, as a new
///   agent (a new AgentID) at the same address holding the same
///   checkpointed reservation and volume: the broker moves its reservation
///   to the new id and starts there with its data.
///
/// Throughout, the agents hold exactly the reservation and volume the
/// broker's first start made, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_keeps_its_reservation_volume_and_data_across_agent_restarts() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Brokers in cgroups, as in production: the agent finds a container's
    // every process by its cgroup (a task runs in a session of its own, so
    // `--recover=cleanup` without cgroups kills its executor but not the
    // broker). A recovered executor re-subscribes with a backoff capped at
    // 2 s, the agent's default --executor_reregistration_timeout: give it
    // room on a busy machine (as the recovery tests do).
    corral_tests::require_cgroups();
    let cgroups_root = format!("--cgroups_root={}", corral_tests::unique_cgroups_root());
    let mut c = cluster_of(
        2,
        24_200,
        &[
            "--isolation=cgroups/cpu,cgroups/mem",
            &cgroups_root,
            "--executor_reregistration_timeout=10secs",
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let s = KafkaScheduler::start(&c.master, dir.path(), 0, &[]).await;
    assert_registered(&c, &s).await;

    let (status, added) = s
        .call(
            "broker/add",
            &[
                ("broker", "0"),
                ("cpus", "0.2"),
                ("mem", "128"),
                ("heap", "64"),
                ("disk", "32"),
                ("failoverDelay", "1s"),
                ("failoverMaxDelay", "10s"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{added}");
    let (status, started) = s
        .call("broker/start", &[("broker", "0"), ("timeout", "60s")])
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "started", "{started}\n{}", s.log_text());
    let first = s.broker(0).await;
    let agent_id = first["reservation"]["agentId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let i = c
        .agents
        .iter()
        .position(|a| a.id == agent_id)
        .expect("the broker's agent");
    let fid = s.get("/health").await.1["frameworkId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sandbox = c.agents[i].sandbox(
        &fid,
        first["task"]["executorId"].as_str().unwrap_or_default(),
    );
    assert!(
        wait_for(TIMEOUT, || async { broker_pid(&sandbox).is_some() }).await,
        "no tansu in {}",
        sandbox.display()
    );
    let pid = broker_pid(&sandbox).expect("tansu's pid");
    let (status, added) = s.call("topic/add", &[("topic", "events")]).await;
    assert_eq!(status, 200, "{added}");
    produce(&endpoint(&first), "events", 0, &messages("m", 10)).await;
    let reserved = kafka_reservations(&c).await;
    let holding: Vec<&(String, Vec<String>)> =
        reserved.iter().filter(|(_, rs)| !rs.is_empty()).collect();
    assert_eq!(
        holding.len(),
        1,
        "one agent holds the broker's resources: {reserved:?}"
    );
    assert_eq!(holding[0].0, agent_id);
    assert!(
        holding[0]
            .1
            .iter()
            .any(|r| r.contains("\"kafka-broker-0\"")),
        "its volume: {reserved:?}"
    );
    let launches = |m: &Value| -> f64 {
        m.as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("corral_kafka_launches_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(launches(&s.get("/metrics").await.1), 1.0);

    // 1. kill -9 of the agent and a restart: the broker runs on.
    c.kill_agent(i);
    assert!(alive(pid), "the broker outlives its agent");
    c.restart_agent(i, &["--recover=reconnect".into()]).await;
    assert!(
        wait_for(TIMEOUT, || async { executors(&c, i).await == (0.0, 1.0) }).await,
        "the broker's executor re-subscribed: {:?}\n{}",
        executors(&c, i).await,
        c.agent_log(i)
    );
    assert!(alive(pid), "the same broker process runs");
    assert_eq!(broker_pid(&sandbox), Some(pid));
    let tasks = master_tasks(&c).await;
    assert_eq!(
        tasks,
        BTreeSet::from([(task_id(&first), "TASK_RUNNING".to_string())])
    );
    let now = s.broker(0).await;
    assert_eq!(task_id(&now), task_id(&first));
    assert_eq!(now["state"], "running", "{now}");
    assert_eq!(kafka_reservations(&c).await, reserved);
    assert_eq!(
        launches(&s.get("/metrics").await.1),
        1.0,
        "nothing launched"
    );
    let got = consume(&endpoint(&now), "events", 0, 10, TIMEOUT).await;
    assert_eq!(got, messages("m", 10));
    produce(&endpoint(&now), "events", 0, &messages("n", 2)).await;

    // 2. kill -9 of the agent, and of the broker while its agent is down:
    // the broker starts again on the same agent, reservation and volume.
    let again = kill_agent_and_broker(&mut c, &s, i, &[pid], &first).await;
    assert_eq!(
        again["task"]["slaveId"], first["task"]["slaveId"],
        "{again}"
    );
    assert_eq!(again["reservation"], first["reservation"]);
    assert_eq!(again["volume"], "kafka-broker-0");
    assert_eq!(endpoint(&again), endpoint(&first));
    assert_eq!(launches(&s.get("/metrics").await.1), 2.0);
    let got = consume(&endpoint(&again), "events", 0, 12, TIMEOUT).await;
    let mut want = messages("m", 10);
    want.extend(messages("n", 2));
    assert_eq!(got, want, "the broker's data, read from its volume");
    // The old task ended (the master knows only the new one running), and
    // no new reservation or volume was made anywhere.
    assert_eq!(
        master_tasks(&c).await,
        BTreeSet::from([(task_id(&again), "TASK_RUNNING".to_string())])
    );
    assert_eq!(kafka_reservations(&c).await, reserved);
    assert!(volume_dir(&c, &again).join("tansu.db").is_file());
    produce(&endpoint(&again), "events", 0, &messages("o", 2)).await;

    // Once it has run for its failover delay its run of failures ends,
    // and the next failure waits the first delay again.
    settled(&s, 0).await;

    // 3. kill -9 of the agent and of the broker's whole container (its
    // executor too, as a reboot would leave it): the agent cannot reattach
    // to the executor and reports the task failed; the broker starts again
    // on the same agent, reservation and volume.
    let sandbox = c.agents[i].sandbox(
        &fid,
        again["task"]["executorId"].as_str().unwrap_or_default(),
    );
    let container = corral_tests::processes_in(&sandbox);
    assert!(container.len() >= 2, "executor and broker: {container:?}");
    let third = kill_agent_and_broker(&mut c, &s, i, &container, &again).await;
    assert_eq!(
        third["task"]["slaveId"], first["task"]["slaveId"],
        "{third}"
    );
    assert_eq!(third["reservation"], first["reservation"]);
    assert_eq!(endpoint(&third), endpoint(&first));
    assert_eq!(launches(&s.get("/metrics").await.1), 3.0);
    want.extend(messages("o", 2));
    let got = consume(&endpoint(&third), "events", 0, 14, TIMEOUT).await;
    assert_eq!(got, want, "the broker's data, read from its volume");
    assert_eq!(
        master_tasks(&c).await,
        BTreeSet::from([(task_id(&third), "TASK_RUNNING".to_string())])
    );
    assert_eq!(kafka_reservations(&c).await, reserved);
    let data = volume_dir(&c, &third);
    produce(&endpoint(&third), "events", 0, &messages("p", 2)).await;
    want.extend(messages("p", 2));

    // Once it has run for its failover delay its run of failures ends,
    // and the next failure waits the first delay again.
    settled(&s, 0).await;

    // 4. The agent back under a new AgentID: `--recover=cleanup` kills the
    // broker and forgets the agent's checkpoint (not its checkpointed
    // reservations and volumes, as in Mesos), so the next start is a new
    // agent at the same address. The broker's reservation and volume move
    // to the new id, its data is kept, and it starts there again.
    let pid = broker_pid(&c.agents[i].sandbox(
        &fid,
        third["task"]["executorId"].as_str().unwrap_or_default(),
    ))
    .expect("tansu's pid");
    c.kill_agent(i);
    let (exit, log) = c
        .restart_agent_expect_exit(i, &["--recover=cleanup".into()], TIMEOUT)
        .await;
    assert!(exit.success(), "{log}");
    assert!(
        wait_for(TIMEOUT, || async { !alive(pid) }).await,
        "cleanup killed the broker\n{log}"
    );
    c.restart_agent(i, &[]).await;
    assert!(
        wait_for(TIMEOUT, || async {
            let b = s.broker(0).await;
            b["state"] == "running" && b["task"]["slaveId"] != first["task"]["slaveId"]
        })
        .await,
        "the broker starts again on the new agent: {}\n{}\n{}",
        s.broker(0).await,
        s.log_text(),
        c.agent_log(i)
    );
    let fourth = s.broker(0).await;
    assert_eq!(fourth["reservation"]["agentId"], fourth["task"]["slaveId"]);
    for field in ["hostname", "address", "persistenceId", "ports", "agentPort"] {
        assert_eq!(
            fourth["reservation"][field], first["reservation"][field],
            "{fourth}"
        );
    }
    assert_eq!(endpoint(&fourth), endpoint(&first));
    let got = consume(&endpoint(&fourth), "events", 0, want.len(), TIMEOUT).await;
    assert_eq!(got, want, "the broker's data, kept on its volume");
    assert!(data.join("tansu.db").is_file());
    let now_reserved = kafka_reservations(&c).await;
    assert_eq!(
        now_reserved[i].1, reserved[i].1,
        "the same reservation and volume"
    );
    assert!(
        master_tasks(&c)
            .await
            .contains(&(task_id(&fourth), "TASK_RUNNING".to_string())),
        "{:?}",
        master_tasks(&c).await
    );
    assert!(
        !s.log_text().contains("destroying volumes"),
        "{}",
        s.log_text()
    );
}

/// Two schedulers with `--zk` on a real ZooKeeper: one leads; the other
/// answers `/api/...` with a `307` to it (the CLI follows it). After
/// `kill -9` of the leader the standby takes over as the same framework
/// (its `webui_url` now its own): the brokers keep running with the same
/// task ids, none is launched twice, and the new leader lists and commands
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_with_zk_elect_a_leader_and_the_standby_takes_the_brokers_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster_of(2, 24_300, &[]).await;
    let dir = tempfile::tempdir().expect("dir");
    let zk_dir = tempfile::tempdir().expect("dir");
    let zk = corral_master::testing::ZooKeeperServer::start(zk_dir.path(), 1).expect("zookeeper");
    let flag = format!("--zk=zk://{}/corral/kafka", zk.connect);
    let mut a = KafkaScheduler::start(&c.master, dir.path(), 0, std::slice::from_ref(&flag)).await;
    let b = KafkaScheduler::spawn(&c.master, dir.path(), 0, std::slice::from_ref(&flag));
    let (standby, leader) = (
        format!("{}/api/broker/list?broker=*", b.url),
        format!("{}/api/broker/list?broker=*", a.url),
    );
    assert!(
        wait_for(TIMEOUT, || redirects_to(&standby, &leader)).await,
        "the standby redirects to the leader\n{}",
        b.log_text()
    );
    let health = b.get("/health").await.1;
    assert_eq!(health["leader"], false, "{health}");
    assert_eq!(health["subscribed"], false, "{health}");
    let fw = assert_registered(&c, &a).await;
    let fid = fw["id"].as_str().unwrap_or_default().to_string();

    // Two brokers, through the standby: the CLI follows its redirect.
    let (ok, out) = cli(
        &b,
        &[
            "broker",
            "add",
            "0..1",
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
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = cli(&b, &["broker", "start", "0..1", "--timeout", "60s"]).await;
    assert!(ok, "{out}\n{}", a.log_text());
    let brokers = a.brokers().await;
    assert!(
        brokers.len() == 2 && brokers.iter().all(|b| b["state"] == "running"),
        "{brokers:?}"
    );
    let ids_before: BTreeSet<String> = brokers.iter().map(task_id).collect();
    let tasks_before = master_tasks(&c).await;
    assert_eq!(tasks_before.len(), 2, "{tasks_before:?}");
    let (ok, out) = cli(&b, &["topic", "add", "events", "--broker", "0"]).await;
    assert!(ok, "{out}");
    produce(&endpoint(&brokers[0]), "events", 0, &messages("m", 5)).await;

    // kill -9 of the leader: the brokers run on; the standby takes over.
    a.kill_9().await;
    assert_eq!(master_tasks(&c).await, tasks_before, "the brokers run on");
    b.wait_subscribed().await;
    assert!(
        wait_for(TIMEOUT, || async {
            let now = b.brokers().await;
            now.len() == 2
                && now.iter().all(|b| b["state"] == "running")
                && now.iter().map(task_id).collect::<BTreeSet<_>>() == ids_before
        })
        .await,
        "the new leader adopts the running brokers: {:?}\n{}",
        b.brokers().await,
        b.log_text()
    );
    let fw = assert_registered(&c, &b).await;
    assert_eq!(fw["id"], fid.as_str(), "the same framework");
    // It had offers to place brokers with, and launched none: no
    // duplicate broker tasks.
    let counter = |m: &Value, name: &str| -> f64 {
        m.as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(
        wait_for(TIMEOUT, || async {
            counter(&b.get("/metrics").await.1, "corral_kafka_offers_total") > 0.0
        })
        .await,
        "the new leader gets offers\n{}",
        b.log_text()
    );
    let m = b.get("/metrics").await.1;
    assert_eq!(counter(&m, "corral_kafka_launches_total"), 0.0, "{m}");
    assert_eq!(counter(&m, "corral_kafka_leader"), 1.0, "{m}");
    assert_eq!(master_tasks(&c).await, tasks_before, "no duplicate broker");
    let (ok, out) = cli(&b, &["broker", "list", "--json"]).await;
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed["frameworkId"], fid.as_str());
    let listed_ids: BTreeSet<String> = listed["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(task_id)
        .collect();
    assert_eq!(listed_ids, ids_before);
    let got = consume(&endpoint(&brokers[0]), "events", 0, 5, TIMEOUT).await;
    assert_eq!(got, messages("m", 5), "the same broker serves its data");

    // The new leader commands the adopted brokers.
    let before = b.broker(1).await;
    let (ok, out) = cli(&b, &["broker", "restart", "1", "--timeout", "60s"]).await;
    assert!(ok, "{out}\n{}", b.log_text());
    let after = b.broker(1).await;
    assert_ne!(task_id(&after), task_id(&before));
    assert_eq!(after["reservation"], before["reservation"]);
    assert_eq!(master_tasks(&c).await.len(), 2);
    drop(b);
    drop(zk);
}

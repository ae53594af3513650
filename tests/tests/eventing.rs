//! The eventing publisher end to end (`corral eventing publisher`): real
//! masters and agents (and a real ZooKeeper for HA), a real tansu (the
//! durable `sqlite://` build) as the Kafka broker, a real RabbitMQ node, and
//! real Kafka and AMQP clients reading what it published.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_api::codec::Encoding;
use corral_master::testing::ZooKeeperServer;
use corral_tests::rabbitmq::{Queue, RabbitMq};
use corral_tests::tansu::Tansu;
use corral_tests::{
    command_task, corral_bin, default_framework_info, free_port, wait_for, Cluster, ClusterOptions,
    Scheduler,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const TOPIC: &str = "corral.events";

// ---------------------------------------------------------------------------
// The publisher process
// ---------------------------------------------------------------------------

struct Publisher {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    starts: usize,
    http: reqwest::Client,
}

impl Publisher {
    /// `corral eventing publisher --master <master> <args>` with its spool
    /// in `<dir>/spool`.
    fn start(dir: &Path, master: &str, args: &[String]) -> Publisher {
        let port = free_port();
        let mut all = vec![
            "eventing".to_string(),
            "publisher".to_string(),
            format!("--master={master}"),
            format!("--spool_dir={}", dir.join("spool").display()),
            format!("--listen=127.0.0.1:{port}"),
        ];
        all.extend(args.iter().cloned());
        let mut p = Publisher {
            child: None,
            port,
            dir: dir.to_path_buf(),
            args: all,
            starts: 0,
            http: reqwest::Client::new(),
        };
        p.spawn();
        p
    }

    /// [`Publisher::start`], then waits until `/health` answers 200.
    async fn start_healthy(dir: &Path, master: &str, args: &[String]) -> Publisher {
        let p = Publisher::start(dir, master, args);
        p.wait_healthy().await;
        p
    }

    /// Waits up to 60 s until `/health` answers 200; fails with the log
    /// otherwise.
    async fn wait_healthy(&self) {
        assert!(
            wait_for(Duration::from_secs(60), || self.healthy()).await,
            "publisher never healthy: {:?}\nlog:\n{}",
            self.health().await,
            self.log()
        );
    }

    fn spawn(&mut self) {
        let log = self.dir.join(format!("publisher-{}.log", self.starts));
        self.starts += 1;
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(corral_bin())
            .args(&self.args)
            .env("CORRAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the publisher");
        self.child = Some(child);
    }

    fn log(&self) -> String {
        (0..self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("publisher-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---- restarted ----\n")
    }

    /// `kill -9`.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    async fn health(&self) -> (u16, Value) {
        match self
            .http
            .get(format!("http://127.0.0.1:{}/health", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn healthy(&self) -> bool {
        self.health().await.0 == 200
    }

    /// The value of a metric line `name` (with its labels, e.g.
    /// `corral_eventing_spooled_events{sink="kafka"}`).
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

// ---------------------------------------------------------------------------
// A Kafka consumer (rdkafka) of the topic, from the beginning
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Seen {
    id: String,
    ty: String,
    source: String,
    subject: String,
    role: String,
    framework: String,
    state: Option<String>,
    key: String,
    content_type: Option<String>,
    specversion: String,
    data: Value,
}

struct KafkaEvents {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for KafkaEvents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl KafkaEvents {
    fn start(brokers: &str) -> KafkaEvents {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("eventing-test-{}", free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("fetch.wait.max.ms", "50")
            .set("log_level", "2")
            .create()
            .expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let mut h = BTreeMap::new();
                if let Some(headers) = m.headers() {
                    for x in headers.iter() {
                        if let Some(v) = x.value {
                            h.insert(x.key.to_string(), String::from_utf8_lossy(v).into_owned());
                        }
                    }
                }
                let get = |k: &str| h.get(k).cloned().unwrap_or_default();
                let seen = Seen {
                    id: get("ce_id"),
                    ty: get("ce_type"),
                    source: get("ce_source"),
                    subject: get("ce_subject"),
                    role: get("ce_corralrole"),
                    framework: get("ce_corralframework"),
                    state: h.get("ce_corralstate").cloned(),
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    content_type: h.get("content-type").cloned(),
                    specversion: get("ce_specversion"),
                    data: m
                        .payload()
                        .and_then(|p| serde_json::from_slice(p).ok())
                        .unwrap_or(Value::Null),
                };
                if let Ok(mut v) = s.lock() {
                    v.push(seen);
                }
            }
        });
        KafkaEvents { seen, stop }
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits up to `timeout` until [`KafkaEvents::all_finished`].
    async fn wait_all_finished(&self, fid: &str, tasks: &[String], timeout: Duration) -> bool {
        wait_for(timeout, || async { self.all_finished(fid, tasks) }).await
    }

    /// Whether every task in `tasks` of framework `fid` has reached
    /// TASK_FINISHED in what was consumed.
    fn all_finished(&self, fid: &str, tasks: &[String]) -> bool {
        let seen = self.snapshot();
        let done: BTreeSet<&str> = seen
            .iter()
            .filter(|s| s.state.as_deref() == Some("TASK_FINISHED"))
            .map(|s| s.subject.as_str())
            .collect();
        tasks
            .iter()
            .all(|t| done.contains(format!("tasks/{fid}/{t}").as_str()))
    }
}

fn rank(state: &str) -> u8 {
    match state {
        "TASK_STAGING" => 0,
        "TASK_STARTING" => 1,
        "TASK_RUNNING" | "TASK_KILLING" | "TASK_UNREACHABLE" | "TASK_UNKNOWN" => 2,
        _ => 3,
    }
}

/// Each task's events (copies dropped by `ce_id`): `added` first, then
/// updates in lifecycle order including RUNNING and FINISHED, nothing after
/// FINISHED. Returns the problems found.
fn check_sequences(seen: &[Seen], fid: &str, tasks: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_subject: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for s in seen {
        if ids.insert(s.id.as_str()) {
            by_subject.entry(s.subject.as_str()).or_default().push(s);
        }
    }
    for t in tasks {
        let subject = format!("tasks/{fid}/{t}");
        let Some(events) = by_subject.get(subject.as_str()) else {
            problems.push(format!("{t}: no events"));
            continue;
        };
        let kinds: Vec<String> = events
            .iter()
            .map(|e| format!("{}:{}", e.ty, e.state.clone().unwrap_or_default()))
            .collect();
        if events[0].ty != "io.corral.task.added" {
            problems.push(format!("{t}: first event {kinds:?}"));
            continue;
        }
        let states: Vec<&str> = events[1..]
            .iter()
            .filter_map(|e| e.state.as_deref())
            .collect();
        if states.windows(2).any(|w| rank(w[1]) < rank(w[0])) {
            problems.push(format!("{t}: out of order {kinds:?}"));
        }
        if !states.contains(&"TASK_RUNNING") || states.last() != Some(&"TASK_FINISHED") {
            problems.push(format!("{t}: transitions {kinds:?}"));
        }
        if events.iter().any(|e| e.key != subject) {
            problems.push(format!("{t}: a message not keyed by its subject"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// A test framework running short command tasks
// ---------------------------------------------------------------------------

struct Driver {
    s: Scheduler,
    base: String,
    info: Value,
    role: String,
    prefix: String,
    cmd: String,
    total: usize,
    launched: usize,
    /// Launched tasks not yet RUNNING or terminal.
    pending: BTreeSet<String>,
    finished: BTreeSet<String>,
    paused: bool,
}

impl Driver {
    /// Runs `total` tasks of `cmd` for a new framework `name` in `role` to
    /// completion and returns the framework id and the task ids.
    async fn run_all(
        base: &str,
        name: &str,
        role: &str,
        total: usize,
        cmd: &str,
    ) -> (String, Vec<String>) {
        let mut d = Driver::subscribe(base, name, role, total, cmd).await;
        d.pump(|d| d.finished.len() == d.total)
            .await
            .unwrap_or_else(|e| panic!("framework {name}: {e}"));
        (d.fid(), d.task_ids())
    }

    async fn subscribe(base: &str, name: &str, role: &str, total: usize, cmd: &str) -> Driver {
        let mut info = default_framework_info(name);
        info["roles"] = json!([role]);
        info["checkpoint"] = json!(true);
        info["failover_timeout"] = json!(600.0);
        info["capabilities"] = json!([{"type": "MULTI_ROLE"}]);
        let s = Scheduler::subscribe_to(base, Encoding::Json, info.clone())
            .await
            .expect("subscribe");
        info["id"] = json!({"value": s.framework_id});
        Driver {
            s,
            base: base.to_string(),
            info,
            role: role.to_string(),
            prefix: name.to_string(),
            cmd: cmd.to_string(),
            total,
            launched: 0,
            pending: BTreeSet::new(),
            finished: BTreeSet::new(),
            paused: false,
        }
    }

    fn fid(&self) -> String {
        self.s.framework_id.clone()
    }

    fn task_ids(&self) -> Vec<String> {
        (0..self.total)
            .map(|i| format!("{}-{i}", self.prefix))
            .collect()
    }

    async fn resubscribe(&mut self, base: &str) {
        self.base = base.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Scheduler::subscribe_to(base, Encoding::Json, self.info.clone()).await {
                Ok(s) => {
                    self.s = s;
                    return;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "re-subscription failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Handles events until `done` holds; a broken subscription is
    /// renewed (up to 3 times; the agent resends what was not
    /// acknowledged).
    async fn pump(&mut self, done: impl Fn(&Driver) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut renewals = 0;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out: launched {} finished {} pending {:?}",
                    self.launched,
                    self.finished.len(),
                    self.pending
                ));
            }
            let ev = match self.s.events.next(left).await {
                Ok(ev) => ev,
                Err(e) if renewals < 3 && Instant::now() < deadline => {
                    eprintln!(
                        "[driver {}] subscription broken ({e}); renewing it",
                        self.prefix
                    );
                    renewals += 1;
                    let base = self.base.clone();
                    self.resubscribe(&base).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match ev["type"].as_str() {
                Some("OFFERS") => {
                    for offer in ev["offers"]["offers"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        self.offer(&offer).await;
                    }
                }
                Some("UPDATE") => {
                    let status = ev["update"]["status"].clone();
                    if status.get("uuid").is_some() {
                        let (code, body) = self
                            .s
                            .call(json!({
                                "type": "ACKNOWLEDGE",
                                "acknowledge": {
                                    "agent_id": status["agent_id"].clone(),
                                    "task_id": status["task_id"].clone(),
                                    "uuid": status["uuid"].clone(),
                                }
                            }))
                            .await;
                        if code.as_u16() >= 300 {
                            return Err(format!("ACKNOWLEDGE answered {code}: {body}"));
                        }
                    }
                    let id = status["task_id"]["value"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let state = status["state"].as_str().unwrap_or("");
                    if state != "TASK_STAGING" && state != "TASK_STARTING" {
                        self.pending.remove(&id);
                    }
                    if rank(state) == 3 {
                        assert_eq!(state, "TASK_FINISHED", "{id}: {status}");
                        self.finished.insert(id);
                    }
                }
                Some("ERROR") => return Err(format!("ERROR: {ev}")),
                _ => {}
            }
        }
        Ok(())
    }

    async fn offer(&mut self, offer: &Value) {
        let scalar = |name: &str| -> f64 {
            offer["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["name"] == name)
                .filter_map(|r| r["scalar"]["value"].as_f64())
                .sum()
        };
        let fit = ((scalar("cpus") / 0.1 + 1e-6).floor() as usize)
            .min((scalar("mem") / 16.0).floor() as usize)
            .min(self.total - self.launched)
            .min(25);
        if self.paused || fit == 0 {
            let _ = self
                .s
                .call(json!({"type": "DECLINE", "decline": {
                    "offer_ids": [offer["id"].clone()],
                    "filters": {"refuse_seconds": 0.2}}}))
                .await;
            return;
        }
        let agent_id = offer["agent_id"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut tasks = Vec::new();
        for _ in 0..fit {
            let id = format!("{}-{}", self.prefix, self.launched);
            self.launched += 1;
            let mut t = command_task(&id, &agent_id, &self.cmd, 0.1, 16.0);
            for r in t["resources"].as_array_mut().into_iter().flatten() {
                r["allocation_info"] = json!({"role": self.role});
            }
            self.pending.insert(id);
            tasks.push(t);
        }
        let (code, body) = self
            .s
            .call(json!({"type": "ACCEPT", "accept": {
                "offer_ids": [offer["id"].clone()],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                "filters": {"refuse_seconds": 0.0}}}))
            .await;
        assert!(code.as_u16() < 300, "ACCEPT answered {code}: {body}");
    }
}

// ---------------------------------------------------------------------------
// HA masters with ZooKeeper
// ---------------------------------------------------------------------------

struct Proc {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Proc {
    let port = free_port();
    let log = dir.join(format!("{name}-{port}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(corral_bin())
        .args(args)
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .env("CORRAL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    Proc { child, port, log }
}

async fn redirect_of(port: u16) -> Option<String> {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?
        .get(format!("http://127.0.0.1:{port}/master/redirect"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
}

/// The port of the master all live `ports` name as the leader.
async fn agreed_leader(ports: &[u16]) -> Option<u16> {
    let mut agreed = None;
    for p in ports {
        let loc = redirect_of(*p).await?;
        let leader = loc.rsplit(':').next().and_then(|x| x.parse::<u16>().ok());
        if agreed.is_some() && agreed != leader {
            return None;
        }
        agreed = leader;
    }
    agreed.filter(|l| ports.contains(l))
}

async fn leader_of(ports: &[u16]) -> u16 {
    assert!(
        wait_for(Duration::from_secs(30), || async {
            agreed_leader(ports).await.is_some()
        })
        .await,
        "no agreed leader among {ports:?}"
    );
    agreed_leader(ports).await.expect("leader")
}

async fn agents_of(port: u16) -> usize {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/master/slaves")).await else {
        return 0;
    };
    r.json::<Value>()
        .await
        .ok()
        .and_then(|v| v["slaves"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// 200 tasks run while the leading master is killed with `kill -9`: a Kafka
/// consumer sees every task's transitions at least once and in order, and a
/// RabbitMQ queue bound to one role's routing keys sees exactly that role's
/// events. `corral events tail --role` prints that role's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_tasks_across_a_master_failover() {
    let dir = tempfile::Builder::new()
        .prefix("corral-eventing-ha-")
        .tempdir()
        .expect("tmp");
    let zk = ZooKeeperServer::start(&dir.path().join("zk"), 1).expect("zookeeper");
    let zk_url = format!("zk://{}/corral", zk.connect);
    let rabbit = RabbitMq::start(&dir.path().join("rabbitmq"));
    let tansu = Tansu::start(&dir.path().join("tansu"));
    let master_args = |_: usize| -> Vec<String> {
        [
            "master",
            "--zk",
            &zk_url,
            "--quorum",
            "1",
            "--zk_session_timeout",
            "1secs",
            "--agent_ping_timeout",
            "500ms",
            "--max_agent_ping_timeouts",
            "4",
            "--allocation_interval",
            "100ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!(
            "--work_dir={}",
            dir.path().join(format!("m{}", free_port())).display()
        )])
        .collect()
    };
    let mut masters: Vec<Proc> = (0..2)
        .map(|i| spawn(dir.path(), "master", &master_args(i)))
        .collect();
    let ports: Vec<u16> = masters.iter().map(|m| m.port).collect();
    let leader = leader_of(&ports).await;
    let agents: Vec<Proc> = (0..2)
        .map(|i| {
            spawn(
                dir.path(),
                "agent",
                &[
                    "agent".to_string(),
                    format!("--master={zk_url}"),
                    "--resources=cpus:2;mem:1024;ports:[31000-31010]".to_string(),
                    "--registration_backoff_factor=100ms".to_string(),
                    format!(
                        "--work_dir={}",
                        dir.path().join(format!("agent-{i}")).display()
                    ),
                ],
            )
        })
        .collect();
    assert!(
        wait_for(Duration::from_secs(30), || async {
            agents_of(leader).await == 2
        })
        .await,
        "agents did not register; logs:\n{}",
        agents.iter().map(Proc::log).collect::<Vec<_>>().join("\n")
    );

    // Queues bound before anything is published: one role each.
    let analytics_q = Queue::bind(&rabbit.url, TOPIC, "analytics-events", "analytics.#").await;
    let ops_q = Queue::bind(&rabbit.url, TOPIC, "ops-events", "ops.#").await;

    let publisher = Publisher::start_healthy(
        dir.path(),
        &zk_url,
        &[
            format!("--kafka_brokers={}", tansu.brokers()),
            format!("--amqp_url={}", rabbit.url),
        ],
    )
    .await;
    let consumer = KafkaEvents::start(&tansu.brokers());

    // The ops role: a few tasks.
    let base = |p: u16| format!("http://127.0.0.1:{p}");
    let mut ops = Driver::subscribe(&base(leader), "ops", "ops", 10, "true").await;
    ops.pump(|d| d.finished.len() == d.total)
        .await
        .expect("ops tasks");
    // The analytics role: 200 tasks; the leader dies after 100.
    let mut an = Driver::subscribe(&base(leader), "analytics", "analytics", 200, "sleep 0.3").await;
    an.pump(|d| d.launched >= 100)
        .await
        .expect("first 100 launched");
    an.paused = true;
    // No launch in flight when the leader dies (a launch the dying master
    // accepted but never forwarded would be lost with it, whatever the
    // publisher does).
    an.pump(|d| d.pending.is_empty())
        .await
        .expect("launched tasks running");
    let li = ports
        .iter()
        .position(|p| *p == leader)
        .expect("leader index");
    let mut dead = masters.remove(li);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dead.child.id().expect("pid") as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the leader");
    let _ = dead.child.wait().await;
    let rest: Vec<u16> = masters.iter().map(|m| m.port).collect();
    let new_leader = leader_of(&rest).await;
    an.resubscribe(&base(new_leader)).await;
    an.paused = false;
    let result = an.pump(|d| d.finished.len() == d.total).await;
    assert!(
        result.is_ok(),
        "{result:?}\nnew leader log:\n{}",
        masters[0].log()
    );

    // Kafka: every task of both frameworks, in order.
    let (an_fid, ops_fid) = (an.fid(), ops.fid());
    let (an_tasks, ops_tasks) = (an.task_ids(), ops.task_ids());
    let complete = wait_for(Duration::from_secs(60), || async {
        consumer.all_finished(&an_fid, &an_tasks) && consumer.all_finished(&ops_fid, &ops_tasks)
    })
    .await;
    let seen = consumer.snapshot();
    assert!(
        complete,
        "not every FINISHED reached Kafka ({} events); health {:?}\npublisher log:\n{}",
        seen.len(),
        publisher.health().await,
        publisher.log()
    );
    eprintln!(
        "[eventing] {} kafka events; {} subscriptions; {} diff events; {} received",
        seen.len(),
        publisher
            .metric("corral_eventing_subscriptions_total")
            .await
            .unwrap_or(0.0),
        publisher
            .metric("corral_eventing_diff_events_total")
            .await
            .unwrap_or(0.0),
        publisher
            .metric("corral_eventing_events_received_total")
            .await
            .unwrap_or(0.0),
    );
    let mut problems = check_sequences(&seen, &an_fid, &an_tasks);
    problems.extend(check_sequences(&seen, &ops_fid, &ops_tasks));
    assert!(
        problems.is_empty(),
        "{} problems: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    assert!(
        publisher
            .metric("corral_eventing_subscriptions_total")
            .await
            .unwrap_or(0.0)
            >= 2.0,
        "the publisher re-subscribed after the failover"
    );
    // CloudEvents binary mode on every message.
    for s in &seen {
        assert_eq!(s.specversion, "1.0", "{s:?}");
        assert_eq!(s.content_type.as_deref(), Some("application/json"), "{s:?}");
        assert!(s.ty.starts_with("io.corral.") && !s.id.is_empty(), "{s:?}");
        assert!(!s.data.is_null(), "{s:?}");
    }
    let role_of: BTreeMap<String, String> =
        [(an_fid.clone(), "analytics"), (ops_fid.clone(), "ops")]
            .into_iter()
            .map(|(f, r)| (f, r.to_string()))
            .collect();
    for s in seen.iter().filter(|s| s.ty.starts_with("io.corral.task.")) {
        assert_eq!(Some(&s.role), role_of.get(&s.framework), "{s:?}");
    }

    // RabbitMQ: the analytics queue has every analytics task's FINISHED
    // and nothing of ops; the ops queue the reverse.
    let finished_in = |q: &Queue, fid: &str, tasks: &[String]| {
        let got: BTreeSet<String> = q
            .snapshot()
            .iter()
            .filter(|r| {
                r.attributes.get("corralstate").map(String::as_str) == Some("TASK_FINISHED")
            })
            .filter_map(|r| r.attributes.get("subject").cloned())
            .collect();
        tasks
            .iter()
            .all(|t| got.contains(&format!("tasks/{fid}/{t}")))
    };
    assert!(
        wait_for(Duration::from_secs(30), || async {
            finished_in(&analytics_q, &an_fid, &an_tasks)
                && finished_in(&ops_q, &ops_fid, &ops_tasks)
        })
        .await,
        "not every FINISHED reached RabbitMQ: {} analytics, {} ops messages",
        analytics_q.snapshot().len(),
        ops_q.snapshot().len()
    );
    for r in analytics_q.snapshot() {
        assert!(r.routing_key.starts_with("analytics."), "{r:?}");
        assert_eq!(
            r.attributes.get("corralrole").map(String::as_str),
            Some("analytics"),
            "{r:?}"
        );
        assert_eq!(r.delivery_mode, Some(2), "persistent: {r:?}");
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert!(
            r.attributes.contains_key("id") && r.attributes.contains_key("type"),
            "{r:?}"
        );
    }
    for r in ops_q.snapshot() {
        assert!(r.routing_key.starts_with("ops."), "{r:?}");
        assert_ne!(r.attributes.get("corralframework"), Some(&an_fid), "{r:?}");
    }

    // `corral events tail --role ops` prints ops' events and no others.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(corral_bin())
            .args([
                "events",
                "tail",
                "--role",
                "ops",
                "--from_beginning",
                "--json",
            ])
            .arg(format!("--kafka_brokers={}", tansu.brokers()))
            .arg(format!("--limit={}", ops_tasks.len() * 3 + 1))
            .env("CORRAL_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("events tail did not print the ops events within 60s")
    .expect("events tail");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > ops_tasks.len(), "{text}");
    for l in &lines {
        assert_eq!(l["role"], "ops", "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "io.corral.task.updated" && l["state"] == "TASK_FINISHED"),
        "{text}"
    );
    // The table form.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(corral_bin())
            .args([
                "events",
                "tail",
                "--role",
                "ops",
                "--from_beginning",
                "--limit=3",
            ])
            .arg(format!("--kafka_brokers={}", tansu.brokers()))
            .env("CORRAL_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("events tail (table)")
    .expect("events tail");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows[0].starts_with("TIME") && rows[0].contains("ROLE"),
        "{text}"
    );
    assert!(rows[1..].iter().all(|r| r.contains(" ops ")), "{text}");
    drop(agents);
    drop(masters);
}

/// Kafka (tansu) stopped for 30 s and restarted while tasks change state:
/// nothing is lost, the spool fills and drains, /health says why meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_outage_is_spooled_and_drained() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let dir = tempfile::Builder::new()
        .prefix("corral-eventing-outage-")
        .tempdir()
        .expect("tmp");
    let mut tansu = Tansu::start(&dir.path().join("tansu"));
    let publisher = Publisher::start_healthy(
        dir.path(),
        &cluster.master,
        &[format!("--kafka_brokers={}", tansu.brokers())],
    )
    .await;
    let mut d = Driver::subscribe(&cluster.url(""), "outage", "batch", 60, "true").await;
    d.pump(|d| d.finished.len() >= 10)
        .await
        .expect("first tasks");

    tansu.stop();
    let down_at = Instant::now();
    // Tasks keep changing state during the outage.
    d.pump(|d| d.finished.len() >= 30)
        .await
        .expect("tasks during the outage");
    assert!(
        wait_for(Duration::from_secs(30), || async {
            publisher
                .metric("corral_eventing_spooled_events{sink=\"kafka\"}")
                .await
                .unwrap_or(0.0)
                > 0.0
                && publisher.health().await.0 == 503
        })
        .await,
        "no spooled events or healthy during the outage: {:?}",
        publisher.health().await
    );
    let (_, health) = publisher.health().await;
    let problem = health["sinks"]["kafka"]["problem"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(problem.contains(&tansu.brokers()), "{health}");
    // The rest of the tasks, then the outage lasts its 30 s.
    d.pump(|d| d.finished.len() == d.total)
        .await
        .expect("all tasks");
    let left = Duration::from_secs(30).saturating_sub(down_at.elapsed());
    tokio::time::sleep(left).await;
    assert!(
        publisher
            .metric("corral_eventing_spooled_events{sink=\"kafka\"}")
            .await
            .unwrap_or(0.0)
            > 0.0
    );

    tansu.restart();
    assert!(
        wait_for(Duration::from_secs(60), || async {
            publisher
                .metric("corral_eventing_spooled_events{sink=\"kafka\"}")
                .await
                == Some(0.0)
                && publisher.healthy().await
        })
        .await,
        "the spool did not drain: {:?}\n{}",
        publisher.health().await,
        publisher.log()
    );
    let consumer = KafkaEvents::start(&tansu.brokers());
    let (fid, tasks) = (d.fid(), d.task_ids());
    let complete = consumer
        .wait_all_finished(&fid, &tasks, Duration::from_secs(60))
        .await;
    assert!(
        complete,
        "events lost: {} consumed",
        consumer.snapshot().len()
    );
    let problems = check_sequences(&consumer.snapshot(), &fid, &tasks);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A publisher killed and restarted: what it published before is kept,
/// and the transitions made while it was down are emitted by the diff of
/// the snapshot against its spool, with stable ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publisher_restart_emits_the_missed_transitions() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let dir = tempfile::Builder::new()
        .prefix("corral-eventing-restart-")
        .tempdir()
        .expect("tmp");
    let tansu = Tansu::start(&dir.path().join("tansu"));
    let mut publisher = Publisher::start_healthy(
        dir.path(),
        &cluster.master,
        &[format!("--kafka_brokers={}", tansu.brokers())],
    )
    .await;
    let consumer = KafkaEvents::start(&tansu.brokers());
    let (fid, before_tasks) = Driver::run_all(&cluster.url(""), "before", "web", 5, "true").await;
    assert!(
        consumer
            .wait_all_finished(&fid, &before_tasks, Duration::from_secs(30))
            .await,
        "{} events",
        consumer.snapshot().len()
    );
    let published_before = consumer.snapshot().len();

    publisher.kill().await;
    // While it is down: another framework's tasks run to completion.
    let (dfid, during_tasks) = Driver::run_all(&cluster.url(""), "during", "web", 5, "true").await;

    publisher.spawn();
    publisher.wait_healthy().await;
    assert!(
        consumer
            .wait_all_finished(&dfid, &during_tasks, Duration::from_secs(30))
            .await,
        "the missed transitions were not published: {} events\n{}",
        consumer.snapshot().len(),
        publisher.log()
    );
    let seen = consumer.snapshot();
    assert!(
        publisher
            .metric("corral_eventing_diff_events_total")
            .await
            .unwrap_or(0.0)
            >= 15.0
    );
    let problems = check_sequences(&seen, &dfid, &during_tasks);
    assert!(problems.is_empty(), "{problems:#?}");
    // No task event of before was emitted anew by the restarted publisher
    // (copies could come only from a replayed spool and carry the same id;
    // the framework itself did change meanwhile: it disconnected).
    let ids_before: BTreeSet<&str> = seen[..published_before]
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    for s in &seen[published_before..] {
        if s.framework == fid && s.ty.starts_with("io.corral.task.") {
            assert!(
                ids_before.contains(s.id.as_str()),
                "a new event about the old tasks: {s:?}"
            );
        }
    }
    assert!(check_sequences(&seen, &fid, &before_tasks).is_empty());
}

/// Unreachable brokers, a missing topic (auto-create off) and wrong AMQP
/// credentials: the publisher keeps running, retries, and /health says
/// what is wrong until it is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_configuration_is_named_in_health() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let dir = tempfile::Builder::new()
        .prefix("corral-eventing-bad-")
        .tempdir()
        .expect("tmp");
    let rabbit = RabbitMq::start(&dir.path().join("rabbitmq"));
    let kafka_port = free_port();
    let mut publisher = Publisher::start(
        dir.path(),
        &cluster.master,
        &[
            format!("--kafka_brokers=127.0.0.1:{kafka_port}"),
            "--kafka_create_topic=false".to_string(),
            format!("--amqp_url={}", rabbit.url_as("guest", "wrong-password")),
        ],
    );
    let problems = |h: &Value| -> String {
        h["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    assert!(
        wait_for(Duration::from_secs(30), || async {
            let (status, h) = publisher.health().await;
            let p = problems(&h);
            status == 503
                && p.contains(&format!(
                    "kafka: kafka brokers 127.0.0.1:{kafka_port} unreachable"
                ))
                && p.contains("amqp: rabbitmq amqp://guest:***@")
        })
        .await,
        "{:?}\n{}",
        publisher.health().await,
        publisher.log()
    );
    let (_, h) = publisher.health().await;
    assert!(
        !problems(&h).contains("wrong-password"),
        "the password is not shown: {h}"
    );
    assert!(
        problems(&h).to_lowercase().contains("access_refused") || problems(&h).contains("refused"),
        "{h}"
    );

    // The broker appears, without the topic: now the topic is the problem.
    let tansu = Tansu::start_on(&dir.path().join("tansu"), kafka_port);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            problems(&publisher.health().await.1).contains(&format!("topic {TOPIC} does not exist"))
        })
        .await,
        "{:?}",
        publisher.health().await
    );
    // Someone creates it: Kafka is fine; RabbitMQ still is not.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", tansu.brokers())
            .create()
            .expect("admin");
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                TOPIC,
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("create topic");
    assert!(
        wait_for(Duration::from_secs(30), || async {
            let h = publisher.health().await.1;
            h["sinks"]["kafka"]["up"] == true
                && !problems(&h).contains("kafka:")
                && problems(&h).contains("amqp:")
        })
        .await,
        "{:?}",
        publisher.health().await
    );
    assert!(publisher.running(), "the publisher kept running");
    // Events spooled meanwhile reached Kafka once it could take them.
    let consumer = KafkaEvents::start(&tansu.brokers());
    assert!(
        wait_for(Duration::from_secs(30), || async {
            consumer
                .snapshot()
                .iter()
                .any(|s| s.ty == "io.corral.agent.added")
        })
        .await
    );
}

/// A spool that fills while Kafka is down pauses the master's stream
/// instead of dropping events; once Kafka is back the spool drains, the
/// stream resumes (or the snapshot diff recovers it) and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_spool_pauses_the_stream_and_loses_nothing() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let dir = tempfile::Builder::new()
        .prefix("corral-eventing-full-")
        .tempdir()
        .expect("tmp");
    let mut tansu = Tansu::start(&dir.path().join("tansu"));
    let publisher = Publisher::start_healthy(
        dir.path(),
        &cluster.master,
        &[
            format!("--kafka_brokers={}", tansu.brokers()),
            "--spool_max_bytes=131072".to_string(),
        ],
    )
    .await;
    tansu.stop();
    let mut d = Driver::subscribe(&cluster.url(""), "full", "batch", 120, "true").await;
    d.pump(|d| d.finished.len() == d.total)
        .await
        .expect("tasks");
    assert!(
        wait_for(Duration::from_secs(30), || async {
            let h = publisher.health().await.1;
            h["spool"]["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("full"))
        })
        .await,
        "the spool never filled: {:?}",
        publisher.health().await
    );
    let bytes = publisher
        .metric("corral_eventing_spool_bytes")
        .await
        .unwrap_or(0.0);
    assert!(
        bytes < 131072.0 + 65536.0,
        "the spool stays near its bound: {bytes}"
    );
    tansu.restart();
    let consumer = KafkaEvents::start(&tansu.brokers());
    let (fid, tasks) = (d.fid(), d.task_ids());
    let complete = consumer
        .wait_all_finished(&fid, &tasks, Duration::from_secs(90))
        .await;
    assert!(
        complete,
        "events lost after a full spool: {} consumed; health {:?}\n{}",
        consumer.snapshot().len(),
        publisher.health().await,
        publisher.log()
    );
    let problems = check_sequences(&consumer.snapshot(), &fid, &tasks);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        wait_for(Duration::from_secs(30), || publisher.healthy()).await,
        "{:?}\n{}",
        publisher.health().await,
        publisher.log()
    );
}

/// Two publishers with `--zk`: one publishes, the other waits as a standby
/// (200, "standby"); when the leader is killed with `kill -9` the standby
/// leads, and its snapshot diff publishes what it never saw (the ids of
/// what the old leader published are the same, so consumers drop copies).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishers_elect_a_leader_and_take_over() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let dir = tempfile::Builder::new()
        .prefix("corral-eventing-election-")
        .tempdir()
        .expect("tmp");
    let zk = ZooKeeperServer::start(&dir.path().join("zk"), 1).expect("zookeeper");
    let tansu = Tansu::start(&dir.path().join("tansu"));
    let args = |name: &str| -> Vec<String> {
        vec![
            format!("--kafka_brokers={}", tansu.brokers()),
            format!("--zk=zk://{}/eventing", zk.connect),
            "--zk_session_timeout=2secs".to_string(),
            format!("--source=/corral/{name}"),
        ]
    };
    std::fs::create_dir_all(dir.path().join("a")).expect("dir");
    std::fs::create_dir_all(dir.path().join("b")).expect("dir");
    let mut a = Publisher::start_healthy(&dir.path().join("a"), &cluster.master, &args("a")).await;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            a.health().await.1["status"] == "ok"
        })
        .await,
        "{:?}",
        a.health().await
    );
    let b = Publisher::start(&dir.path().join("b"), &cluster.master, &args("b"));
    assert!(
        wait_for(Duration::from_secs(30), || async {
            b.health().await.1["status"] == "standby"
        })
        .await,
        "{:?}\n{}",
        b.health().await,
        b.log()
    );
    let consumer = KafkaEvents::start(&tansu.brokers());
    let (f1, t1) = Driver::run_all(&cluster.url(""), "first", "web", 5, "true").await;
    assert!(
        consumer
            .wait_all_finished(&f1, &t1, Duration::from_secs(30))
            .await
    );
    // Only the leader publishes.
    let before = consumer.snapshot();
    assert!(before.iter().all(|s| s.source == "/corral/a"), "{before:?}");
    a.kill().await;
    let (f2, t2) = Driver::run_all(&cluster.url(""), "second", "web", 5, "true").await;
    assert!(
        consumer
            .wait_all_finished(&f2, &t2, Duration::from_secs(60))
            .await,
        "the standby did not take over: {:?}\n{}",
        b.health().await,
        b.log()
    );
    assert_eq!(b.health().await.1["status"], "ok");
    let seen = consumer.snapshot();
    assert!(check_sequences(&seen, &f1, &t1).is_empty());
    assert!(check_sequences(&seen, &f2, &t2).is_empty());
    // The second framework's tasks were published by b, the new leader.
    assert!(seen
        .iter()
        .filter(|s| s.framework == f2)
        .all(|s| s.source == "/corral/b"));
}

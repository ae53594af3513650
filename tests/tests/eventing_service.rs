//! The eventing service's tiers end to end: `corral eventing api` and
//! `corral eventing backend` processes, a real RabbitMQ node between them, a
//! real tansu (durable build) as Kafka, and the service's Rust client
//! (`corral_eventing::service::client`), plus a raw rdkafka consumer where a
//! test looks at the bytes Kafka stores.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use corral_eventing::service::client::{CallError, Client, ResumingReader, ResumingWriter};
use corral_eventing::service::wire::{AllocateRequest, EventIn, EventOut, WireMode, WireStart};
use corral_tests::browser::{Browser, DESKTOP, PHONE};
use corral_tests::rabbitmq::RabbitMq;
use corral_tests::tansu::Tansu;
use corral_tests::{corral_bin, free_port, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const WRITER_TOKEN: &str = "writer-token-0123456789";
const OUTSIDER_TOKEN: &str = "outsider-token-0123456789";

struct Node {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

struct Service {
    dir: tempfile::TempDir,
    tansu: Tansu,
    rabbit: RabbitMq,
    backends: Vec<Node>,
    apis: Vec<Node>,
    backend_args: Vec<String>,
    http: reqwest::Client,
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Node {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let mut all = args.to_vec();
    all.push(format!("--listen=127.0.0.1:{port}"));
    let child = Command::new(corral_bin())
        .args(&all)
        .env("CORRAL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start a corral eventing node");
    Node {
        child: Some(child),
        port,
        log,
    }
}

impl Service {
    async fn start(backends: usize, apis: usize, extra_backend_args: &[&str]) -> Service {
        let dir = tempfile::Builder::new()
            .prefix("corral-eventing-service-")
            .tempdir()
            .expect("tmp");
        let tansu = Tansu::start(&dir.path().join("tansu"));
        let rabbit = RabbitMq::start(&dir.path().join("rabbitmq"));
        std::fs::write(dir.path().join("secret"), [7u8; 48]).expect("secret");
        std::fs::write(
            dir.path().join("tokens.json"),
            json!({"tokens": [
                {"principal": "writer", "token": WRITER_TOKEN,
                 "read": ["orders", "secure", "audit*", "corral.events"], "write": ["orders", "secure", "audit*"]},
                {"principal": "outsider", "token": OUTSIDER_TOKEN, "read": ["public"]}
            ]})
            .to_string(),
        )
        .expect("tokens");
        let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
        std::fs::write(
            dir.path().join("keys.json"),
            json!({"keys": [{"topic": "secure", "id": "secure-1", "key": key}]}).to_string(),
        )
        .expect("keys");
        let mut backend_args = vec![
            "eventing".to_string(),
            "backend".to_string(),
            format!("--amqp_url={}", rabbit.url),
            format!("--kafka_brokers={}", tansu.brokers()),
            format!("--secret_file={}", dir.path().join("secret").display()),
            format!("--key_file={}", dir.path().join("keys.json").display()),
            "--shards=16".to_string(),
        ];
        backend_args.extend(extra_backend_args.iter().map(|s| s.to_string()));
        let mut s = Service {
            dir,
            tansu,
            rabbit,
            backends: Vec::new(),
            apis: Vec::new(),
            backend_args,
            http: reqwest::Client::new(),
        };
        for _ in 0..backends {
            s.add_backend();
        }
        for i in 0..apis {
            let args = vec![
                "eventing".to_string(),
                "api".to_string(),
                format!("--amqp_url={}", s.rabbit.url),
                format!("--node=api-{i}"),
                format!(
                    "--tokens_file={}",
                    s.dir.path().join("tokens.json").display()
                ),
                "--shards=16".to_string(),
            ];
            s.apis.push(spawn(s.dir.path(), &format!("api-{i}"), &args));
        }
        s.wait_ready().await;
        s
    }

    /// Starts backend `backend-<n>` (n = how many were started before).
    fn add_backend(&mut self) -> usize {
        let i = self.backends.len();
        let node = self.spawn_backend(i);
        self.backends.push(node);
        i
    }

    fn spawn_backend(&self, i: usize) -> Node {
        let mut args = self.backend_args.clone();
        args.push(format!("--id=backend-{i}"));
        args.push(format!(
            "--spool_dir={}",
            self.dir.path().join(format!("spool-{i}")).display()
        ));
        spawn(self.dir.path(), &format!("backend-{i}"), &args)
    }

    /// `kill -9` of backend `i`.
    async fn kill_backend(&mut self, i: usize) {
        if let Some(mut c) = self.backends[i].child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Starts backend `i` again (as the framework relaunches a task).
    fn relaunch_backend(&mut self, i: usize) {
        self.backends[i] = self.spawn_backend(i);
    }

    fn live_backends(&self) -> Vec<&Node> {
        self.backends.iter().filter(|b| b.child.is_some()).collect()
    }

    async fn get_json(&self, port: u16, path: &str) -> (u16, Value) {
        match self
            .http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Every live backend is ready and sees the same members, their shards
    /// cover all 16 once, and every API node answers.
    async fn ready(&self) -> bool {
        let live = self.live_backends();
        let mut shards = Vec::new();
        for b in &live {
            let (code, h) = self.get_json(b.port, "/health").await;
            if code != 200 || h["members"].as_array().map(Vec::len) != Some(live.len()) {
                return false;
            }
            shards.extend(
                h["shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64),
            );
        }
        shards.sort_unstable();
        if !live.is_empty() && shards != (0..16).collect::<Vec<u64>>() {
            return false;
        }
        for a in &self.apis {
            if self.get_json(a.port, "/health").await.0 != 200 {
                return false;
            }
        }
        true
    }

    async fn wait_ready(&self) {
        assert!(
            wait_for(Duration::from_secs(60), || self.ready()).await,
            "the service never became ready\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for n in self.backends.iter().chain(&self.apis) {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            // librdkafka's connection noise hides the service's own lines.
            let tail: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("rdkafka"))
                .rev()
                .take(40)
                .collect();
            out.push_str(&format!("---- {} ----\n", n.log.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn logs_of(&self, n: &Node) -> String {
        std::fs::read_to_string(&n.log).unwrap_or_default()
    }

    fn api_urls(&self) -> Vec<String> {
        self.apis
            .iter()
            .map(|a| format!("http://127.0.0.1:{}", a.port))
            .collect()
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client::new(self.api_urls(), token.map(str::to_owned))
    }

    async fn metric(&self, port: u16, name: &str) -> f64 {
        let text = match self
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn spec(topic: &str, partition: Option<i32>, mode: WireMode) -> AllocateRequest {
    AllocateRequest {
        topic: topic.to_owned(),
        partition,
        group: None,
        mode,
        start: Some(WireStart::Earliest),
        offset_token: None,
    }
}

/// What the readers saw: per partition, the events in delivery order.
#[derive(Default)]
struct Seen {
    by_partition: BTreeMap<i32, Vec<EventOut>>,
}

impl Seen {
    /// Distinct write ids seen.
    fn ids(&self) -> BTreeSet<String> {
        self.by_partition
            .values()
            .flatten()
            .filter_map(|e| e.id.clone())
            .collect()
    }

    /// Order problems after dropping copies by id: within a partition Kafka
    /// offsets increase, and each writer's sequence numbers increase.
    fn order_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (p, events) in &self.by_partition {
            let mut seen = BTreeSet::new();
            let mut last_offset = -1;
            let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
            for e in events {
                let Some(id) = &e.id else { continue };
                if !seen.insert(id.clone()) {
                    continue;
                }
                if e.kafka_offset <= last_offset {
                    problems.push(format!(
                        "partition {p}: offset {} after {last_offset}",
                        e.kafka_offset
                    ));
                }
                last_offset = e.kafka_offset;
                let (writer, seq) = id.rsplit_once('-').expect("writer-seq");
                let seq: u64 = seq.parse().expect("seq");
                if let Some(prev) = last_seq.insert(writer.to_owned(), seq) {
                    if seq <= prev {
                        problems.push(format!("partition {p}: {writer} seq {seq} after {prev}"));
                    }
                }
            }
        }
        problems
    }
}

/// Reads partition `p` of `topic` until `want` distinct ids were seen in
/// `seen` overall (or the deadline), acking every batch.
async fn read_partition(
    client: Arc<Client>,
    topic: String,
    p: i32,
    seen: Arc<Mutex<Seen>>,
    want: usize,
    deadline: Duration,
) -> u32 {
    let mut reader = ResumingReader::new(&client, spec(&topic, Some(p), WireMode::Read));
    let until = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < until {
        if seen.lock().expect("seen").ids().len() >= want {
            break;
        }
        let events = match reader.read(500, 500, Duration::from_secs(60)).await {
            Ok(e) => e,
            Err(e) => panic!("reader of partition {p}: {e}"),
        };
        let Some(last) = events.last().map(|e| e.offset) else {
            continue;
        };
        seen.lock()
            .expect("seen")
            .by_partition
            .entry(p)
            .or_default()
            .extend(events);
        reader.ack(last).await.expect("ack");
    }
    reader.close().await;
    reader.sessions_allocated
}

/// Writes `n` events of writer `name` (key = name, so one partition) in
/// batches, each batch acked by Kafka before the next; returns the acked ids.
async fn write_events(
    client: Arc<Client>,
    topic: String,
    name: String,
    n: usize,
    batch: usize,
) -> (Vec<String>, u32) {
    let mut writer = ResumingWriter::new(&client, spec(&topic, None, WireMode::Write));
    let mut acked = Vec::new();
    let mut seq = 0;
    while seq < n {
        let events: Vec<EventIn> = (seq..(seq + batch).min(n))
            .map(|i| {
                let mut e = EventIn::text(format!("{name}-{i}"), format!("{name} event {i}"));
                e.key = Some(name.clone());
                e
            })
            .collect();
        seq += events.len();
        let results = writer
            .write_all(events, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("writer {name}: {e}"));
        acked.extend(results.into_iter().map(|r| r.id));
    }
    writer.close().await;
    (acked, writer.sessions_allocated)
}

/// The framework (`corral eventing serve`) on a real master and two agents
/// runs two API and two backend tasks; 10,000 events written by four
/// writers through sessions while three readers (one per partition) read
/// them back, and in the middle of it a backend task's process is `kill
/// -9`ed and the backends are scaled 2 -> 4 (`corral eventing scale`): each
/// id read exactly once after dropping copies, in order per partition,
/// nothing acked lost. Then a rolling upgrade, and the service still
/// answers; the cluster's own events are read through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_framework_runs_both_tiers_and_ten_thousand_events_go_through() {
    let per_agent_flags = (0..2u32)
        .map(|i| {
            let lo = 27_500 + i * 20;
            vec![format!(
                "--resources=cpus:2;mem:2048;disk:1024;ports:[{lo}-{}]",
                lo + 19
            )]
        })
        .collect();
    let cluster = Cluster::start(ClusterOptions {
        agents: 2,
        per_agent_flags,
        ..Default::default()
    })
    .await;
    let s = Service::start(0, 0, &[]).await;
    let args = vec![
        "eventing".to_string(),
        "serve".to_string(),
        format!("--master={}", cluster.master),
        format!("--state_dir={}", s.dir.path().join("framework").display()),
        format!("--amqp_url={}", s.rabbit.url),
        format!("--kafka_brokers={}", s.tansu.brokers()),
        format!("--secret_file={}", s.dir.path().join("secret").display()),
        format!("--key_file={}", s.dir.path().join("keys.json").display()),
        format!(
            "--tokens_file={}",
            s.dir.path().join("tokens.json").display()
        ),
        format!("--spool_root={}", s.dir.path().join("spool").display()),
        "--shards=16".to_string(),
        "--api_cpus=0.2".to_string(),
        "--backend_cpus=0.2".to_string(),
        format!("--binary={}", corral_bin().display()),
    ];
    // spawn() adds --listen=127.0.0.1:<a free port>.
    let mut framework = spawn(s.dir.path(), "framework", &args);
    let scheduler = format!("http://127.0.0.1:{}", framework.port);
    // The cluster's own events (part 1's publisher) go to the same Kafka,
    // to be read through the service like any topic.
    let mut publisher = spawn(
        s.dir.path(),
        "publisher",
        &[
            "eventing".to_string(),
            "publisher".to_string(),
            format!("--master={}", cluster.master),
            format!("--kafka_brokers={}", s.tansu.brokers()),
            format!("--spool_dir={}", s.dir.path().join("publisher").display()),
        ],
    );
    let tiers = |v: &Value, tier: &str, state: &str, generation: u64| -> usize {
        v["tiers"][tier]["instances"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|i| i["state"] == state && i["generation"].as_u64() >= Some(generation))
                .count()
        })
    };
    let get = |path: &'static str| {
        let http = s.http.clone();
        let url = format!("{scheduler}{path}");
        async move {
            match http.get(url).send().await {
                Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        }
    };
    let backends_agree = |n: usize| {
        let http = s.http.clone();
        async move {
            let v = get("/v1/tiers").await;
            let backends: Vec<(String, u64)> = v["tiers"]["backend"]["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["state"] == "running")
                .filter_map(|i| Some((i["host"].as_str()?.to_owned(), i["port"].as_u64()?)))
                .collect();
            if backends.len() != n {
                return false;
            }
            let mut shards = 0;
            for (host, port) in backends {
                let h: Value = match http
                    .get(format!("http://{host}:{port}/health"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.json().await.unwrap_or(Value::Null),
                    _ => return false,
                };
                if h["members"].as_array().map(Vec::len) != Some(n) {
                    return false;
                }
                shards += h["shards"].as_array().map_or(0, Vec::len);
            }
            shards == 16
        }
    };
    assert!(
        wait_for(Duration::from_secs(120), || async {
            let v = get("/v1/tiers").await;
            tiers(&v, "api", "running", 1) == 2 && tiers(&v, "backend", "running", 1) == 2
        })
        .await
            && wait_for(Duration::from_secs(60), || backends_agree(2)).await,
        "the tiers never ran: {}\n{}",
        get("/v1/tiers").await,
        s.logs_of(&framework)
    );
    let endpoints = || async {
        get("/v1/endpoints").await["api"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some(format!("http://{}", e.as_str()?)))
            .collect::<Vec<String>>()
    };
    assert!(
        wait_for(Duration::from_secs(60), || async {
            endpoints().await.len() == 2
        })
        .await,
        "the API tasks never passed their health checks: {}",
        get("/v1/tiers").await
    );
    // The framework's own pages in a real browser: both tiers with their
    // slots, the backend tier's page; the master links to the pages
    // (webui_url).
    let web = Browser::start().await.expect("browser");
    web.open(&format!("{scheduler}/ui"))
        .await
        .expect("tiers page");
    web.wait_for_text("HEALTHY", Duration::from_secs(20))
        .await
        .expect("healthy slots");
    let text = web.main_text().await.expect("text");
    for want in [
        "API tier",
        "Backend tier",
        "api-1",
        "backend-1",
        "running",
        "generation 1",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    web.screenshot("eventing-tiers", DESKTOP)
        .await
        .expect("shot");
    web.screenshot("eventing-tiers", PHONE).await.expect("shot");
    web.open(&format!("{scheduler}/ui/tiers/backend"))
        .await
        .expect("backend tier page");
    let text = web.main_text().await.expect("text");
    assert!(
        text.contains("Backend tier") && text.contains("2 of 2 slots run it"),
        "{text}"
    );
    web.screenshot("eventing-backend", DESKTOP)
        .await
        .expect("shot");
    web.screenshot("eventing-backend", PHONE)
        .await
        .expect("shot");
    let webui = format!("{scheduler}/ui");
    assert!(
        cluster.has_framework_webui(&webui).await,
        "no framework with webui_url {webui}"
    );
    web.mark_page().await.expect("mark the page");
    let endpoints_now = endpoints().await;
    let client = Arc::new(Client::new(endpoints_now, Some(WRITER_TOKEN.into())));
    // 10,000 events (small batches, so that the stream lasts a while)...
    let stream = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            write_and_read_back(&client, "orders", &["w0", "w1", "w2", "w3"], 2500, 20).await
        })
    };
    let backend_ports = || async {
        let v = get("/v1/tiers").await;
        v["tiers"]["backend"]["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| Some((i["host"].as_str()?.to_owned(), i["port"].as_u64()?)))
            .collect::<Vec<_>>()
    };
    let produced = || async {
        let mut total = 0.0;
        for (host, port) in backend_ports().await {
            let text = match s
                .http
                .get(format!("http://{host}:{port}/metrics"))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => continue,
            };
            total += text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("corral_eventing_backend_produced_total ")?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0);
        }
        total
    };
    assert!(
        wait_for(Duration::from_secs(60), || async {
            produced().await >= 1500.0
        })
        .await,
        "the stream did not start"
    );
    assert!(
        !stream.is_finished(),
        "the stream must still run when a backend dies"
    );
    // ...a backend task's process kill -9ed in the middle of them...
    let v = get("/v1/tiers").await;
    let b0 = v["tiers"]["backend"]["instances"][0].clone();
    let (host, bport) = (
        b0["host"].as_str().expect("host").to_owned(),
        b0["port"].as_u64().expect("port"),
    );
    let health: Value = s
        .http
        .get(format!("http://{host}:{bport}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    let pid = health["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let old_task = b0["taskId"].as_str().expect("task").to_owned();
    // ...and the backends scaled 2 -> 4 with the CLI, under that load.
    let out = Command::new(corral_bin())
        .args(["eventing", "scale", "backend=4", "--scheduler", &scheduler])
        .output()
        .await
        .expect("corral eventing scale");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("backend  4"), "{text}");
    // Nothing acked is lost, nothing skipped, each id once, in order.
    let written = stream.await.expect("the stream");
    assert_eq!(written, 10_000);
    assert!(
        wait_for(Duration::from_secs(90), || async {
            let v = get("/v1/tiers").await;
            let b = &v["tiers"]["backend"]["instances"][0];
            b["state"] == "running" && b["taskId"].as_str() != Some(old_task.as_str())
        })
        .await
            && wait_for(Duration::from_secs(90), || backends_agree(4)).await,
        "backend 0 was not relaunched or four backends never shared the shards: {}",
        get("/v1/tiers").await
    );
    // The backend tier's open page shows the new slots without a reload.
    web.wait_for_text("backend-3", Duration::from_secs(20))
        .await
        .expect("the new backend on the open page");
    web.assert_not_reloaded().await.expect("updated in place");

    // A rolling upgrade replaces every task; the service keeps answering.
    let out = Command::new(corral_bin())
        .args(["eventing", "upgrade", "--scheduler", &scheduler])
        .output()
        .await
        .expect("corral eventing upgrade");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(180), || async {
            let v = get("/v1/tiers").await;
            tiers(&v, "api", "running", 2) == 2 && tiers(&v, "backend", "running", 2) == 4
        })
        .await
            && wait_for(Duration::from_secs(60), || backends_agree(4)).await,
        "the upgrade did not finish: {}",
        get("/v1/tiers").await
    );
    assert!(
        wait_for(Duration::from_secs(60), || async {
            endpoints().await.len() == 2
        })
        .await,
        "{}",
        get("/v1/tiers").await
    );
    let client = Arc::new(Client::new(endpoints().await, Some(WRITER_TOKEN.into())));
    assert_eq!(
        write_and_read_back(&client, "audit.upgrade", &["u0"], 500, 250).await,
        500
    );
    // The cluster's events through the same API: the eventing tasks' own
    // launches are there.
    let mut reader = ResumingReader::new(
        &client,
        AllocateRequest {
            topic: "corral.events".into(),
            partition: None,
            group: None,
            mode: WireMode::Read,
            start: Some(WireStart::Earliest),
            offset_token: None,
        },
    );
    let mut found = false;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !found && std::time::Instant::now() < until {
        let events = reader
            .read(500, 500, Duration::from_secs(30))
            .await
            .expect("read corral.events");
        found = events.iter().any(|e| {
            e.value
                .as_deref()
                .is_some_and(|v| v.contains("eventing-backend-0") && v.contains("TASK_RUNNING"))
        });
        if let Some(last) = events.last() {
            reader.ack(last.offset).await.expect("ack");
        }
    }
    reader.close().await;
    assert!(
        found,
        "no cluster event of the backend tasks read through the service\n{}",
        s.logs_of(&publisher)
    );
    // The publisher's page: its Kafka sink with its cursor and lag.
    web.open(&format!("http://127.0.0.1:{}/ui", publisher.port))
        .await
        .expect("publisher page");
    web.wait_for_text("kafka", Duration::from_secs(20))
        .await
        .expect("the kafka sink");
    web.screenshot("eventing-publisher", DESKTOP)
        .await
        .expect("shot");
    web.screenshot("eventing-publisher", PHONE)
        .await
        .expect("shot");
    web.quit().await.expect("quit the browser");
    publisher.child.take();

    let out = Command::new(corral_bin())
        .args(["eventing", "status", "--scheduler", &scheduler])
        .output()
        .await
        .expect("corral eventing status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("TIER"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" running ")).count(),
        6,
        "{table}"
    );
    framework.child.take();
}

/// Writers `names` write `each` events to `topic` while one reader per
/// partition reads them back; checks exactly-once (after dropping copies by
/// id) and order per partition; answers how many distinct events were read.
async fn write_and_read_back(
    client: &Arc<Client>,
    topic: &str,
    names: &[&str],
    each: usize,
    batch: usize,
) -> usize {
    let total = names.len() * each;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut writers = Vec::new();
    for w in names {
        writers.push(tokio::spawn(write_events(
            Arc::clone(client),
            topic.into(),
            w.to_string(),
            each,
            batch,
        )));
    }
    let mut readers = Vec::new();
    for p in 0..3 {
        readers.push(tokio::spawn(read_partition(
            Arc::clone(client),
            topic.into(),
            p,
            Arc::clone(&seen),
            total,
            Duration::from_secs(180),
        )));
    }
    let mut written = BTreeSet::new();
    for w in writers {
        let (ids, _) = w.await.expect("writer");
        written.extend(ids);
    }
    assert_eq!(written.len(), total);
    for r in readers {
        r.await.expect("reader");
    }
    let seen = seen.lock().expect("seen");
    let ids = seen.ids();
    let missing: Vec<&String> = written.difference(&ids).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} never read, e.g. {missing:?}",
        written.difference(&ids).count()
    );
    assert_eq!(ids, written, "exactly the written ids");
    let problems = seen.order_problems();
    assert!(problems.is_empty(), "{problems:#?}");
    ids.len()
}

/// `kill -9` of a backend in the middle of the stream, then the backend
/// tier scaled from 2 to 4 under load: writers and readers resume from their
/// tokens in new sessions; no acked write is lost and no event is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_backend_and_scaling_lose_nothing() {
    let mut s = Service::start(2, 2, &[]).await;
    let client = Arc::new(s.client(Some(WRITER_TOKEN)));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let total = 6000;
    let mut writers = Vec::new();
    for w in 0..3 {
        writers.push(tokio::spawn(write_events(
            Arc::clone(&client),
            "orders".into(),
            format!("k{w}"),
            total / 3,
            20,
        )));
    }
    let mut readers = Vec::new();
    for p in 0..3 {
        readers.push(tokio::spawn(read_partition(
            Arc::clone(&client),
            "orders".into(),
            p,
            Arc::clone(&seen),
            total,
            Duration::from_secs(240),
        )));
    }
    // Mid-stream: kill -9 one backend.
    assert!(
        wait_for(Duration::from_secs(60), || async {
            seen.lock().expect("seen").ids().len() >= total / 4
        })
        .await,
        "the stream did not start\n{}",
        s.logs()
    );
    // The backend holding the most sessions dies, while writers still write.
    let mut held = Vec::new();
    for b in &s.backends {
        held.push(s.metric(b.port, "corral_eventing_backend_sessions").await);
    }
    let victim = if held[0] >= held[1] { 0 } else { 1 };
    assert!(held[victim] >= 1.0, "sessions per backend: {held:?}");
    assert!(
        writers.iter().any(|w| !w.is_finished()),
        "the stream must still run when the backend dies"
    );
    s.kill_backend(victim).await;
    // The survivor takes every shard.
    s.wait_ready().await;
    let moved_before = s
        .metric(
            s.backends[1 - victim].port,
            "corral_eventing_backend_shards_moved_total",
        )
        .await;
    assert!(moved_before > 0.0, "{}", s.logs());
    // Relaunch it and add two more: 2 -> 4 under load.
    s.relaunch_backend(victim);
    s.add_backend();
    s.add_backend();
    s.wait_ready().await;
    let mut written = BTreeSet::new();
    let mut writer_sessions = 0;
    for w in writers {
        let (ids, sessions) = w.await.expect("writer");
        writer_sessions += sessions;
        written.extend(ids);
    }
    assert_eq!(written.len(), total, "every write was acked in the end");
    let mut reader_sessions = 0;
    for r in readers {
        reader_sessions += r.await.expect("reader");
    }
    let (ids, problems) = {
        let seen = seen.lock().expect("seen");
        (seen.ids(), seen.order_problems())
    };
    let missing: Vec<&String> = written.difference(&ids).take(10).collect();
    assert!(
        missing.is_empty(),
        "acked writes never read: {} (e.g. {missing:?})\n{}",
        written.difference(&ids).count(),
        s.logs()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    // Sessions really moved: clients allocated again.
    assert!(
        writer_sessions + reader_sessions > 6,
        "writers {writer_sessions}, readers {reader_sessions} sessions"
    );
    // The new backends own shards now.
    for b in &s.backends[2..] {
        let (_, h) = s.get_json(b.port, "/health").await;
        assert!(h["shards"].as_array().is_some_and(|a| !a.is_empty()), "{h}");
    }
}

async fn raw(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut r = http.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST /v1/sessions` with `body` as the writer; the session id.
async fn allocate_raw(http: &reqwest::Client, api: &str, body: &str) -> String {
    let (code, a) = raw(
        http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions"),
        Some(WRITER_TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    a["sessionId"].as_str().expect("id").to_owned()
}

/// Encryption, permissions, bad input and the Python example: Kafka holds
/// no plaintext of an encrypted topic; a reader without permission gets 403;
/// every bad request is a 4xx with a message and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encryption_permissions_and_bad_input() {
    let s = Service::start(1, 1, &["--session_idle_timeout=3secs"]).await;
    let api = s.api_urls()[0].clone();
    let client = s.client(Some(WRITER_TOKEN));

    // Encrypted topic: the API returns plaintext, Kafka holds none of it.
    let mut w = ResumingWriter::new(&client, spec("secure", Some(0), WireMode::Write));
    let secret_text = "the launch codes are 0000";
    w.write_all(
        vec![EventIn::text("secret-1", secret_text)],
        Duration::from_secs(60),
    )
    .await
    .expect("write");
    let mut r = ResumingReader::new(&client, spec("secure", Some(0), WireMode::Read));
    let mut got = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while got.is_empty() && std::time::Instant::now() < until {
        got = r
            .read(10, 500, Duration::from_secs(10))
            .await
            .expect("read");
    }
    assert!(
        !got.is_empty(),
        "the encrypted event was never read\n{}",
        s.logs()
    );
    assert_eq!(got[0].value.as_deref(), Some(secret_text));
    assert_eq!(got[0].id.as_deref(), Some("secret-1"));
    let stored = kafka_records(&s.tansu.brokers(), "secure", 1, 1)
        .pop()
        .map(|(_, _, value)| value)
        .expect("a message in kafka");
    assert_ne!(stored, secret_text.as_bytes());
    assert!(
        !stored
            .windows(secret_text.len())
            .any(|w| w == secret_text.as_bytes()),
        "the plaintext is in kafka"
    );

    let http = reqwest::Client::new();
    let sessions = format!("{api}/v1/sessions");
    // Permissions: 403 for a principal without read on the topic, 401 for
    // no token or a wrong one.
    let body = r#"{"topic":"orders","partition":0}"#;
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        sessions.clone(),
        Some(OUTSIDER_TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(e["error"]["code"], "forbidden");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("orders"),
        "{e}"
    );
    let (code, _) = raw(
        &http,
        reqwest::Method::POST,
        sessions.clone(),
        None,
        Some(body),
    )
    .await;
    assert_eq!(code, 401);
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        sessions.clone(),
        Some("not-a-real-token-123"),
        Some(body),
    )
    .await;
    assert_eq!(code, 401, "{e}");
    assert_eq!(e["error"]["code"], "invalid_token");

    // Bad input, each a 4xx naming the problem.
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        sessions.clone(),
        Some(WRITER_TOKEN),
        Some("{\"topic\": "),
    )
    .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{e}"
    );
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        sessions.clone(),
        Some(WRITER_TOKEN),
        Some(r#"{"topic":"orders","bogus":1}"#),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("bogus"),
        "{e}"
    );
    let unknown = "0123456789abcdef0123456789abcdef";
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{unknown}/read"),
        Some(WRITER_TOKEN),
        Some("{}"),
    )
    .await;
    assert_eq!(code, 404, "{e}");
    assert_eq!(e["error"]["code"], "unknown_session");

    // A session with two events delivered: an ack beyond them is refused and
    // changes nothing (the events come again).
    let sid = allocate_raw(
        &http,
        &api,
        r#"{"topic":"secure","partition":0,"mode":"readWrite"}"#,
    )
    .await;
    let (code, wr) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/write"),
        Some(WRITER_TOKEN),
        Some(r#"{"events":[{"id":"b-1","value":"one"}]}"#),
    )
    .await;
    assert_eq!(code, 200, "{wr}");
    assert_eq!(wr["results"][0]["status"], "acked", "{wr}");
    // The session reads partition 0 of "secure": the secret and b-1.
    let mut delivered = 0;
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while delivered < 2 && std::time::Instant::now() < until {
        let (_, rr) = raw(
            &http,
            reqwest::Method::POST,
            format!("{api}/v1/sessions/{sid}/read"),
            Some(WRITER_TOKEN),
            Some(r#"{"waitMs":200}"#),
        )
        .await;
        delivered = rr["lastDelivered"].as_u64().unwrap_or(0);
    }
    assert_eq!(delivered, 2, "{}", s.logs());
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/ack"),
        Some(WRITER_TOKEN),
        Some(&format!("{{\"upTo\":{}}}", delivered + 5)),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["error"]["code"], "ack_beyond_delivered");
    let (code, again) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/read"),
        Some(WRITER_TOKEN),
        Some(r#"{"after":0}"#),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(again["acked"], 0, "nothing was acked: {again}");
    assert_eq!(
        again["events"].as_array().map(Vec::len),
        Some(delivered as usize),
        "{again}"
    );
    // Oversized batch: more events than a write may carry.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"id": format!("x-{i}"), "value": "v"}))
        .collect();
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/write"),
        Some(WRITER_TOKEN),
        Some(&json!({"events": many}).to_string()),
    )
    .await;
    assert!((400..500).contains(&code), "{code} {e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{e}"
    );
    let (code, st) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/write-status"),
        Some(WRITER_TOKEN),
        Some(r#"{"ids":["x-0"]}"#),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        st["results"][0]["status"], "unknown",
        "the refused batch wrote nothing: {st}"
    );
    // Idle expiry: with no request for 3 s the session expires (the
    // backend's session gauge drops to 0), then it answers 410 with its
    // last offset token.
    w.close().await;
    r.close().await;
    let backend = s.backends[0].port;
    assert!(
        wait_for(Duration::from_secs(20), || async {
            s.metric(backend, "corral_eventing_backend_sessions").await == 0.0
        })
        .await,
        "the idle session never expired\n{}",
        s.logs()
    );
    let (code, e) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/write-status"),
        Some(WRITER_TOKEN),
        Some(r#"{"ids":["b-1"]}"#),
    )
    .await;
    assert_eq!(code, 410, "{e}");
    assert!(e["error"]["offsetToken"].is_string(), "{e}");
    match client.dispose(&sid).await {
        Err(CallError::Service { status, .. }) => assert_eq!(status, 410),
        other => panic!("dispose of an expired session: {other:?}"),
    }

    // The same API over gRPC, on the same port.
    {
        use corral_eventing::service::grpc::pb;
        let mut g = pb::eventing_client::EventingClient::connect(api.clone())
            .await
            .expect("grpc connect");
        fn auth<T>(m: T) -> tonic::Request<T> {
            let mut r = tonic::Request::new(m);
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {WRITER_TOKEN}").parse().expect("header"),
            );
            r
        }
        let a = g
            .allocate(auth(pb::AllocateRequest {
                topic: "audit.grpc".into(),
                partition: Some(0),
                mode: pb::Mode::ReadWrite as i32,
                start: pb::Start::Earliest as i32,
                ..Default::default()
            }))
            .await
            .expect("grpc allocate")
            .into_inner();
        let w = g
            .write(auth(pb::WriteRequest {
                session_id: a.session_id.clone(),
                events: vec![pb::EventIn {
                    id: "g-1".into(),
                    value: vec![0xff, 0x00, 0x01],
                    ..Default::default()
                }],
            }))
            .await
            .expect("grpc write")
            .into_inner();
        assert_eq!(w.results[0].status, pb::WriteStatus::Acked as i32, "{w:?}");
        let mut events = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while events.is_empty() && std::time::Instant::now() < until {
            events = g
                .read(auth(pb::ReadRequest {
                    session_id: a.session_id.clone(),
                    wait_ms: Some(500),
                    ..Default::default()
                }))
                .await
                .expect("grpc read")
                .into_inner()
                .events;
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].value, vec![0xff, 0x00, 0x01], "bytes round-trip");
        assert_eq!(events[0].id.as_deref(), Some("g-1"));
        let e = g
            .read(auth(pb::ReadRequest {
                session_id: unknown.into(),
                ..Default::default()
            }))
            .await
            .expect_err("unknown session");
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert_eq!(
            e.metadata()
                .get("corral-error-code")
                .map(|v| v.to_str().unwrap_or("")),
            Some("unknown_session")
        );
        let e = g
            .allocate(tonic::Request::new(pb::AllocateRequest {
                topic: "orders".into(),
                ..Default::default()
            }))
            .await
            .expect_err("no token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    }

    // TLS: an API node with a certificate serves HTTPS and gRPC over TLS;
    // a client trusting the CA gets through, plain HTTP and a client that
    // does not trust it do not.
    // A test CA and a server certificate it signed (for 127.0.0.1).
    let tls_dir = s.dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    std::fs::write(
        tls_dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=corral-test-ca -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out req.csr",
        "x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out cert.pem -extfile ext.cnf",
    ] {
        let made = std::process::Command::new("openssl")
            .args(args.split(' '))
            .current_dir(&tls_dir)
            .output()
            .expect("openssl");
        assert!(made.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let (cert, key) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
    let tls_api = spawn(
        s.dir.path(),
        "api-tls",
        &[
            "eventing".to_string(),
            "api".to_string(),
            format!("--amqp_url={}", s.rabbit.url),
            "--node=api-tls".to_string(),
            format!(
                "--tokens_file={}",
                s.dir.path().join("tokens.json").display()
            ),
            "--shards=16".to_string(),
            format!("--tls_cert={}", cert.display()),
            format!("--tls_key={}", key.display()),
        ],
    );
    let https = format!("https://127.0.0.1:{}", tls_api.port);
    let pem = std::fs::read(tls_dir.join("ca.pem")).expect("ca");
    let tls_client =
        Client::with_ca(vec![https.clone()], Some(WRITER_TOKEN.into()), &pem).expect("ca");
    let mut allocated = Err(CallError::Transport("not tried".into()));
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while allocated.is_err() && std::time::Instant::now() < until {
        allocated = tls_client
            .allocate(&spec("audit.tls", Some(0), WireMode::ReadWrite))
            .await;
    }
    let a =
        allocated.unwrap_or_else(|e| panic!("no session over https: {e}\n{}", s.logs_of(&tls_api)));
    let w = tls_client
        .write(&a.session_id, vec![EventIn::text("tls-1", "over tls")])
        .await
        .expect("write over https");
    assert_eq!(
        w.results[0].status,
        corral_eventing::service::wire::WireWriteStatus::Acked
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", tls_api.port))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.as_ref().is_ok_and(|r| r.status().is_success()),
        "plain http answered: {plain:?}"
    );
    let untrusted = Client::new(vec![https.clone()], Some(WRITER_TOKEN.into()))
        .allocate(&spec("audit.tls", Some(0), WireMode::Read))
        .await;
    assert!(
        matches!(untrusted, Err(CallError::Transport(_))),
        "{untrusted:?}"
    );
    {
        use corral_eventing::service::grpc::pb;
        let channel = tonic::transport::Channel::from_shared(https.clone())
            .expect("uri")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&pem))
                    .domain_name("127.0.0.1"),
            )
            .expect("tls config")
            .connect()
            .await
            .expect("grpc over tls");
        let mut g = pb::eventing_client::EventingClient::new(channel);
        let mut r = tonic::Request::new(pb::ReadRequest {
            session_id: a.session_id.clone(),
            wait_ms: Some(2000),
            ..Default::default()
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {WRITER_TOKEN}").parse().expect("header"),
        );
        let events = g
            .read(r)
            .await
            .expect("grpc read over tls")
            .into_inner()
            .events;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].value, b"over tls");
    }

    // The OpenAPI document is served.
    let text = http
        .get(format!("{api}/v1/openapi.yaml"))
        .send()
        .await
        .expect("openapi")
        .text()
        .await
        .expect("text");
    assert!(text.contains("/v1/sessions/{sessionId}/read"), "{text}");

    // The Python example (standard library only) against the real service.
    let python = corral_tests::pymesos_python();
    let example = corral_tests::workspace_dir().join("examples/eventing/python_client.py");
    let out = Command::new(python)
        .arg(&example)
        .args([
            "--api",
            &api,
            "--token",
            WRITER_TOKEN,
            "--topic",
            "audit.python",
            "--count",
            "25",
        ])
        .output()
        .await
        .expect("run the python example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok: wrote 25, read 25"),
        "{}\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        s.logs()
    );

    // The CLI: `corral events write` (stdin lines) and `corral events read`
    // (a table, acking; the resume token on stderr), then a read resumed
    // from that token sees nothing again.
    let mut write = Command::new(corral_bin())
        .args([
            "events",
            "write",
            "--api",
            &api,
            "--topic",
            "audit.cli",
            "--partition",
            "1",
        ])
        .args([
            "--token",
            WRITER_TOKEN,
            "--id_prefix",
            "cli",
            "--batch",
            "4",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral events write");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = write.stdin.take().expect("stdin");
        for i in 0..10 {
            stdin
                .write_all(format!("line {i}\n").as_bytes())
                .await
                .expect("write stdin");
        }
    }
    let out = write.wait_with_output().await.expect("events write");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("wrote 10 events to audit.cli"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |token: Option<String>| {
        let api = api.clone();
        async move {
            let mut cmd = Command::new(corral_bin());
            cmd.args([
                "events",
                "read",
                "--api",
                &api,
                "--topic",
                "audit.cli",
                "--partition",
                "1",
            ])
            .args(["--token", WRITER_TOKEN]);
            match token {
                // The first read stops on a condition (10 events); the idle
                // exit is only a bound so that a failure cannot hang.
                None => cmd.args(["--limit", "10", "--idle_exit", "60secs"]),
                // A resumed read must see nothing: it watches for 3 s.
                Some(t) => cmd.args(["--offset_token", &t, "--idle_exit", "3secs"]),
            };
            cmd.output().await.expect("corral events read")
        }
    };
    let out = read(None).await;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{table}{err}");
    assert!(table.starts_with("PARTITION"), "{table}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 10, "{table}");
    assert!(
        rows[0].contains("cli-1") && rows[0].ends_with("line 0"),
        "{table}"
    );
    assert!(
        rows[9].contains("cli-10") && rows[9].ends_with("line 9"),
        "{table}"
    );
    let token = err
        .split("--offset_token ")
        .nth(1)
        .map(|t| t.trim().to_owned())
        .expect("a resume token on stderr");
    let again = read(Some(token)).await;
    let table = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{table}");
    assert_eq!(table.lines().count(), 1, "only the header: {table}");
}

/// Every record of `topic` in Kafka, from the beginning: (partition, write
/// id header, value), read with a plain rdkafka consumer.
fn kafka_records(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
) -> Vec<(i32, String, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "raw-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < want && std::time::Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let id = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.key == "corral-write-id")
                        .and_then(|x| x.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default();
            out.push((m.partition(), id, m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

/// Graceful shutdown with Kafka down: the backend stops taking sessions,
/// waits for Kafka as long as its flush timeout, spools what is still
/// pending to disk, and its next start writes the spool into Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_shutdown_spools_pending_writes_and_the_next_start_replays_them() {
    let mut s = Service::start(1, 1, &["--flush_timeout=2secs"]).await;
    let api = s.api_urls()[0].clone();
    let http = reqwest::Client::new();
    let sid = allocate_raw(
        &http,
        &api,
        r#"{"topic":"orders","partition":1,"mode":"write"}"#,
    )
    .await;
    let (code, wr) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/write"),
        Some(WRITER_TOKEN),
        Some(r#"{"events":[{"id":"before-1","value":"in kafka"}]}"#),
    )
    .await;
    assert_eq!(
        (code, wr["results"][0]["status"].as_str()),
        (200, Some("acked")),
        "{wr}"
    );

    // Kafka goes away; three writes stay pending (answered after the
    // backend's write wait with status pending).
    s.tansu.stop();
    let events: Vec<Value> = (1..=3)
        .map(|i| json!({"id": format!("spooled-{i}"), "value": format!("kept {i}")}))
        .collect();
    let (code, wr) = raw(
        &http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{sid}/write"),
        Some(WRITER_TOKEN),
        Some(&json!({"events": events}).to_string()),
    )
    .await;
    assert_eq!(code, 200, "{wr}");
    assert!(
        wr["results"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| x["status"] == "pending")),
        "{wr}"
    );

    // SIGTERM: drain, wait 2 s for Kafka, spool, exit 0.
    let pid = s.backends[0]
        .child
        .as_ref()
        .and_then(|c| c.id())
        .expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("sigterm");
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        s.backends[0].child.as_mut().expect("child").wait(),
    )
    .await
    .expect("the backend stops within 30 s")
    .expect("wait");
    assert!(status.success(), "{status}\n{}", s.logs());
    s.backends[0].child = None;
    let spool = s.dir.path().join("spool-0");
    let files: Vec<PathBuf> = std::fs::read_dir(&spool)
        .expect("spool dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}\n{}", s.logs());
    let lines = std::fs::read_to_string(&files[0]).expect("spool");
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(
        !lines.contains("kept 1"),
        "values are stored as base64: {lines}"
    );

    // Kafka is back; the backend starts again, replays, removes the file.
    s.tansu.restart();
    s.relaunch_backend(0);
    s.wait_ready().await;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(1) == 0
        })
        .await,
        "the spool was not replayed\n{}",
        s.logs()
    );
    let records = kafka_records(&s.tansu.brokers(), "orders", 3, 4);
    let ids: BTreeSet<&str> = records.iter().map(|(_, id, _)| id.as_str()).collect();
    for want in ["before-1", "spooled-1", "spooled-2", "spooled-3"] {
        assert!(ids.contains(want), "{want} not in kafka: {ids:?}");
    }
    assert!(
        records.iter().all(|(p, _, _)| *p == 1),
        "the session's partition: {records:?}"
    );
    assert!(
        s.metric(s.backends[0].port, "corral_eventing_backend_replayed_total")
            .await
            >= 3.0
    );
}

/// Consumer-group sessions: two sessions of one group share the topic's
/// partitions and together read every event; acks are committed to the
/// group, so a later session of the group starts after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_sessions_share_partitions_and_commit_on_ack() {
    let s = Service::start(1, 1, &[]).await;
    let client = Arc::new(s.client(Some(WRITER_TOKEN)));
    let topic = "audit.group";
    let mut writer = ResumingWriter::new(&client, spec(topic, None, WireMode::Write));
    let events: Vec<EventIn> = (0..300)
        .map(|i| {
            let mut e = EventIn::text(format!("g-{i}"), format!("event {i}"));
            e.partition = Some(i % 3);
            e
        })
        .collect();
    let written: BTreeSet<String> = writer
        .write_all(events, Duration::from_secs(60))
        .await
        .expect("write")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(written.len(), 300);
    writer.close().await;
    let group_spec = AllocateRequest {
        topic: topic.into(),
        partition: None,
        group: Some("g1".into()),
        mode: WireMode::Read,
        start: Some(WireStart::Earliest),
        offset_token: None,
    };
    let seen = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let mut members = Vec::new();
    for m in 0..2usize {
        let (client, seen, spec) = (Arc::clone(&client), Arc::clone(&seen), group_spec.clone());
        members.push(tokio::spawn(async move {
            let mut r = ResumingReader::new(&client, spec);
            let until = std::time::Instant::now() + Duration::from_secs(90);
            let done =
                |seen: &Mutex<BTreeMap<String, usize>>| seen.lock().expect("seen").len() >= 300;
            while !done(&seen) && std::time::Instant::now() < until {
                let events = r
                    .read(100, 500, Duration::from_secs(30))
                    .await
                    .expect("group read");
                if let Some(last) = events.last().map(|e| e.offset) {
                    {
                        let mut sn = seen.lock().expect("seen");
                        for e in &events {
                            if let Some(id) = &e.id {
                                sn.entry(id.clone()).or_insert(m);
                            }
                        }
                    }
                    r.ack(last).await.expect("ack");
                }
            }
            r.close().await;
        }));
    }
    for m in members {
        m.await.expect("member");
    }
    let seen = seen.lock().expect("seen").clone();
    let ids: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(ids, written, "the group read every event\n{}", s.logs());
    // A new session of the group starts after what was acked: nothing of
    // the 300 comes again (reads wait up to 1 s each).
    let mut r = ResumingReader::new(&client, group_spec);
    for _ in 0..3 {
        let again = r
            .read(100, 1000, Duration::from_secs(30))
            .await
            .expect("read");
        assert!(
            again
                .iter()
                .all(|e| !e.id.as_ref().is_some_and(|i| written.contains(i))),
            "acked events came again: {:?}",
            again.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
        );
    }
    r.close().await;
}

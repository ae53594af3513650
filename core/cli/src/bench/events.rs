//! `corral bench events`: the eventing publisher end to end: sustained
//! events/s from the master's operator stream to Kafka, and the latency
//! from a task's state change to a Kafka consumer (p50/p99).
//!
//! It starts a real `corral master`, a real tansu broker (the durable
//! `sqlite://` build from scripts/tansu.sh) and a real `corral eventing
//! publisher` (Kafka sink; spool fsync'd as in production), registers N
//! simulated agents (gRPC sessions from this process that answer every
//! launch at once with TASK_RUNNING then TASK_FINISHED, each stamped with
//! the time it is sent), and one framework that launches short tasks on
//! every offer. A Kafka consumer (rdkafka, through the publisher's own
//! tail) counts the events it receives and, for each task update, the time
//! since the status' timestamp.
//!
//! Two phases: saturated (as many tasks as offers allow) for the sustained
//! rate, then paced (a fixed number of tasks per second) for the latency
//! of a cluster that is not saturated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use corral_api::internal::agent_service_client::AgentServiceClient;
use corral_api::internal::{
    agent_message, master_message, AgentMessage, ExecutorExited, Pong, RegisterAgent, StatusUpdate,
};
use corral_api::v1;
use corral_eventing::tail::{Filter, TailEvent, TailSource};
use futures::StreamExt;
use serde_json::{json, Value};

use super::containers::{spawn, Daemon};

/// Flags of `corral bench events`.
#[derive(clap::Args)]
pub struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Tasks per second of the paced phase (3 events each).
    #[arg(long = "paced_tasks_per_s", default_value_t = 100)]
    pub paced_tasks_per_s: u64,
    /// The tansu binary (default: $CORRAL_TANSU, else scripts/tansu.sh's
    /// cache).
    #[arg(long)]
    pub tansu: Option<PathBuf>,
    /// Print one JSON object per phase instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn tansu_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    let bin = given
        .or_else(|| std::env::var_os("CORRAL_TANSU").map(PathBuf::from))
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".cache/corral/tansu-0.6.0-libsql/bin/tansu")
        });
    if !bin.is_file() {
        bail!(
            "no tansu at {}: run scripts/tansu.sh or pass --tansu",
            bin.display()
        );
    }
    Ok(bin)
}

pub(crate) async fn wait_port(port: u16, what: &str) -> Result<()> {
    super::wait_until(what, Duration::from_secs(60), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
    .map(|_| ())
}

/// A durable tansu (`sqlite://` in `<dir>/tansu`) on 127.0.0.1:`port`;
/// answers the child and its bootstrap address once it accepts
/// connections.
pub(crate) async fn start_tansu(
    tansu: &Path,
    dir: &Path,
    port: u16,
) -> Result<(tokio::process::Child, String)> {
    std::fs::create_dir_all(dir.join("tansu"))?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("tansu.log"))?;
    let child = tokio::process::Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir.join("tansu"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("start tansu")?;
    wait_port(port, "tansu").await?;
    Ok((child, format!("127.0.0.1:{port}")))
}

/// A simulated agent: registers, answers pings, and runs every task at
/// once (RUNNING, FINISHED, executor exited).
async fn agent(i: usize, master: String) {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{master}"))
        .map(|e| e.connect_lazy())
    else {
        return;
    };
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<AgentMessage>();
    let info = v1::AgentInfo {
        hostname: format!("sim-{i}"),
        port: Some(5051),
        resources: corral_api::resources::parse("cpus:64;mem:262144;disk:100000")
            .unwrap_or_default(),
        ..Default::default()
    };
    let _ = tx.send(AgentMessage {
        message: Some(agent_message::Message::Register(RegisterAgent {
            agent_info: info,
            version: corral_api::MESOS_VERSION.to_string(),
            endpoint: format!("127.0.0.1:{}", 20000 + i),
            ..Default::default()
        })),
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let Ok(resp) = client.session(stream).await else {
        return;
    };
    let mut inbound = resp.into_inner();
    let mut agent_id = String::new();
    let mut seq: u64 = 0;
    while let Ok(Some(msg)) = inbound.message().await {
        match msg.message {
            Some(master_message::Message::Registered(r)) => agent_id = r.agent_id.value,
            Some(master_message::Message::Ping(p)) => {
                let _ = tx.send(AgentMessage {
                    message: Some(agent_message::Message::Pong(Pong { seq: p.seq })),
                });
            }
            Some(master_message::Message::RunTask(run)) => {
                let Some(task) = run.task else { continue };
                let framework_id = run.framework_info.id.clone().unwrap_or_default();
                for state in [v1::TaskState::TaskRunning, v1::TaskState::TaskFinished] {
                    seq += 1;
                    let mut uuid = (i as u64).to_le_bytes().to_vec();
                    uuid.extend_from_slice(&seq.to_le_bytes());
                    let status = v1::TaskStatus {
                        task_id: task.task_id.clone(),
                        state: state as i32,
                        source: Some(v1::task_status::Source::Executor as i32),
                        agent_id: Some(v1::AgentId {
                            value: agent_id.clone(),
                        }),
                        executor_id: Some(v1::ExecutorId {
                            value: task.task_id.value.clone(),
                        }),
                        timestamp: Some(now()),
                        uuid: Some(uuid),
                        ..Default::default()
                    };
                    let _ = tx.send(AgentMessage {
                        message: Some(agent_message::Message::StatusUpdate(StatusUpdate {
                            framework_id: framework_id.clone(),
                            status,
                            executor_id: Some(v1::ExecutorId {
                                value: task.task_id.value.clone(),
                            }),
                            latest_state: Some(state as i32),
                        })),
                    });
                }
                let _ = tx.send(AgentMessage {
                    message: Some(agent_message::Message::ExecutorExited(ExecutorExited {
                        framework_id,
                        executor_id: v1::ExecutorId {
                            value: task.task_id.value.clone(),
                        },
                        status: Some(0),
                    })),
                });
            }
            _ => {}
        }
    }
}

/// Tasks the framework may launch: a token bucket (`per_s`), or, when
/// saturating, as many as keep at most `WINDOW` events between the master
/// and the consumer (a closed loop: the rate is what the pipeline
/// sustains, and the master never drops the publisher's stream for being
/// slow).
struct Pace {
    per_s: Option<f64>,
    tokens: f64,
    last: Instant,
}

/// Events in flight when saturating.
const WINDOW: u64 = 3000;

/// Events the consumer received.
static CONSUMED: AtomicU64 = AtomicU64::new(0);
/// Events the launched tasks will produce (3 each).
static EXPECTED: AtomicU64 = AtomicU64::new(0);

impl Pace {
    fn take(&mut self, want: usize) -> usize {
        let Some(rate) = self.per_s else {
            let in_flight = EXPECTED
                .load(Ordering::SeqCst)
                .saturating_sub(CONSUMED.load(Ordering::SeqCst));
            let n = (WINDOW.saturating_sub(in_flight) / 3) as usize;
            let n = n.min(want);
            EXPECTED.fetch_add(3 * n as u64, Ordering::SeqCst);
            return n;
        };
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate.max(1.0));
        self.last = now;
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        EXPECTED.fetch_add(3 * n as u64, Ordering::SeqCst);
        n
    }
}

/// The framework: subscribes, and launches tasks on every offer until
/// `stop`, at the pace it is given.
async fn framework(
    master: String,
    pace: Arc<tokio::sync::Mutex<Pace>>,
    launched: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let http = reqwest::Client::new();
    let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
        "user": "bench", "name": "events-bench", "roles": ["bench"],
        "capabilities": [{"type": "MULTI_ROLE"}]}}});
    let (stream_id, resp) = super::subscribe_scheduler(&http, &master, &call).await?;
    // The stream is read by a task of its own that keeps only the offers,
    // so that the (unacknowledged) updates never back it up.
    let (offers_tx, mut offers_rx) = tokio::sync::mpsc::unbounded_channel::<(Value, Value)>();
    let mut body = resp.bytes_stream();
    let reader = tokio::spawn(async move {
        let mut decoder = corral_api::recordio::Decoder::new(64 << 20);
        let mut framework_id = Value::Null;
        while let Some(Ok(chunk)) = body.next().await {
            decoder.feed(&chunk);
            while let Ok(Some(record)) = decoder.next_record() {
                // Only SUBSCRIBED and OFFERS are decoded (the type is
                // the first or the last field, depending on the encoder).
                let ends = [
                    &record[..record.len().min(48)],
                    &record[record.len().saturating_sub(48)..],
                ];
                let is = |t: &str| {
                    ends.iter()
                        .any(|e| e.windows(t.len()).any(|w| w == t.as_bytes()))
                };
                if !(is("SUBSCRIBED") || is("OFFERS")) {
                    continue;
                }
                let Ok(ev) = serde_json::from_slice::<Value>(&record) else {
                    continue;
                };
                match ev["type"].as_str() {
                    Some("SUBSCRIBED") => framework_id = ev["subscribed"]["framework_id"].clone(),
                    Some("OFFERS") => {
                        for offer in ev["offers"]["offers"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                        {
                            if offers_tx.send((framework_id.clone(), offer)).is_err() {
                                return;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    let mut n: u64 = 0;
    while let Some((framework_id, offer)) = offers_rx.recv().await {
        let fit = if *stop.borrow() {
            0
        } else {
            pace.lock().await.take(200)
        };
        let tasks: Vec<Value> = (0..fit)
            .map(|_| {
                n += 1;
                json!({
                    "name": "t",
                    "task_id": {"value": format!("t{n}")},
                    "agent_id": offer["agent_id"].clone(),
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01},
                         "allocation_info": {"role": "bench"}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": 1.0},
                         "allocation_info": {"role": "bench"}}],
                    "command": {"shell": true, "value": "true"},
                })
            })
            .collect();
        launched.fetch_add(tasks.len() as u64, Ordering::SeqCst);
        let call = if tasks.is_empty() {
            json!({"type": "DECLINE", "framework_id": framework_id,
                   "decline": {"offer_ids": [offer["id"].clone()],
                               "filters": {"refuse_seconds": 0.0}}})
        } else {
            json!({"type": "ACCEPT", "framework_id": framework_id,
                   "accept": {"offer_ids": [offer["id"].clone()],
                              "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                              "filters": {"refuse_seconds": 0.0}}})
        };
        let r = http
            .post(format!("http://{master}/api/v1/scheduler"))
            .header("content-type", "application/json")
            .header("mesos-stream-id", &stream_id)
            .body(call.to_string())
            .send()
            .await?;
        if r.status().as_u16() >= 300 {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            reader.abort();
            bail!("ACCEPT answered {status}: {text}");
        }
    }
    reader.abort();
    bail!("the framework's subscription ended")
}

struct Phase {
    name: &'static str,
    tasks: u64,
    events: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    name: &'static str,
    per_s: Option<f64>,
    seconds: u64,
    pace: &Arc<tokio::sync::Mutex<Pace>>,
    launched: &Arc<AtomicU64>,
    events: &mut tokio::sync::mpsc::Receiver<TailEvent>,
    publisher_port: u16,
) -> Result<Phase> {
    *pace.lock().await = Pace {
        per_s,
        tokens: 0.0,
        last: Instant::now(),
    };
    let tasks_before = launched.load(Ordering::SeqCst);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut count = 0u64;
    let mut latencies = Vec::new();
    // Events of the window; what was produced before it and arrives late
    // is counted too (steady state).
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(e)) => {
                count += 1;
                if e.ce_type.starts_with("io.corral.task.") {
                    CONSUMED.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(ts) = e.data["status"]["timestamp"].as_f64() {
                    latencies.push((e.received_at - ts) * 1000.0);
                }
            }
            Ok(None) => bail!("the consumer stopped"),
            Err(_) => break,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tasks = launched.load(Ordering::SeqCst) - tasks_before;
    // Stop launching and let the pipeline drain before the next phase.
    *pace.lock().await = Pace {
        per_s: Some(0.0),
        tokens: 0.0,
        last: Instant::now(),
    };
    let drained = super::wait_until(
        "the publisher's backlog",
        Duration::from_secs(120),
        || async {
            metric(
                publisher_port,
                "corral_eventing_spooled_events{sink=\"kafka\"}",
            )
            .await
                == Some(0.0)
        },
    )
    .await;
    if drained.is_err() {
        eprintln!("[bench events] {name}: the backlog did not drain within 120 s");
    }
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if e.ce_type.starts_with("io.corral.task.") {
            CONSUMED.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Whatever never arrived (nothing should be lost) must not hold the
    // next phase back.
    CONSUMED.store(EXPECTED.load(Ordering::SeqCst), Ordering::SeqCst);
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Phase {
        name,
        tasks,
        events: count,
        seconds: elapsed,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    })
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    let tansu = tansu_bin(args.tansu.clone())?;
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("corral-bench-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tansu"))?;
    let result = bench(&args_inner(&args), &exe, &tansu, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let phases = result?;
    if args.json {
        for p in &phases {
            println!(
                "{}",
                json!({"phase": p.name, "tasks": p.tasks, "events": p.events,
                       "seconds": p.seconds, "events_per_s": p.events as f64 / p.seconds,
                       "latency_p50_ms": p.p50_ms, "latency_p99_ms": p.p99_ms,
                       "latency_max_ms": p.max_ms})
            );
        }
    } else {
        println!(
            "{:<10} {:>8} {:>9} {:>12} {:>10} {:>10} {:>10}",
            "phase", "tasks", "events", "events/s", "p50 (ms)", "p99 (ms)", "max (ms)"
        );
        for p in &phases {
            println!(
                "{:<10} {:>8} {:>9} {:>12.0} {:>10.1} {:>10.1} {:>10.1}",
                p.name,
                p.tasks,
                p.events,
                p.events as f64 / p.seconds,
                p.p50_ms,
                p.p99_ms,
                p.max_ms
            );
        }
    }
    Ok(())
}

struct Inner {
    agents: usize,
    seconds: u64,
    paced: u64,
}

fn args_inner(a: &Args) -> Inner {
    Inner {
        agents: a.agents.max(1),
        seconds: a.seconds.max(1),
        paced: a.paced_tasks_per_s,
    }
}

async fn bench(a: &Inner, exe: &Path, tansu: &Path, dir: &Path) -> Result<Vec<Phase>> {
    let master_port = free_port()?;
    let kafka_port = free_port()?;
    let publisher_port = free_port()?;
    let master = format!("127.0.0.1:{master_port}");
    let master_d: Daemon = spawn(
        exe,
        &[
            "master".into(),
            "--ip=127.0.0.1".into(),
            format!("--port={master_port}"),
            "--allocation_interval=50ms".into(),
            format!("--work_dir={}", dir.join("master").display()),
        ],
        &dir.join("master.log"),
    )?;
    wait_port(master_port, "the master").await?;
    let (mut tansu_child, brokers) = start_tansu(tansu, dir, kafka_port).await?;
    let publisher = spawn(
        exe,
        &[
            "eventing".into(),
            "publisher".into(),
            format!("--master={master}"),
            format!("--kafka_brokers={brokers}"),
            "--kafka_partitions=3".into(),
            format!("--spool_dir={}", dir.join("spool").display()),
            format!("--listen=127.0.0.1:{publisher_port}"),
        ],
        &dir.join("publisher.log"),
    )?;
    super::wait_until("the publisher healthy", Duration::from_secs(60), || async {
        reqwest::get(format!("http://127.0.0.1:{publisher_port}/health"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<TailEvent>(100_000);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let consumer = tokio::spawn(corral_eventing::tail::tail(
        TailSource::Kafka {
            brokers,
            topic: corral_eventing::publisher::DEFAULT_TOPIC.into(),
            from_beginning: false,
        },
        Filter::default(),
        tx,
        Some(ready_tx),
    ));
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .context("the consumer was not assigned partitions within 60s")??;

    let mut agents = Vec::new();
    for i in 0..a.agents {
        agents.push(tokio::spawn(agent(i, master.clone())));
    }
    let pace = Arc::new(tokio::sync::Mutex::new(Pace {
        per_s: Some(0.0),
        tokens: 0.0,
        last: Instant::now(),
    }));
    let launched = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fw = tokio::spawn(framework(
        master.clone(),
        Arc::clone(&pace),
        Arc::clone(&launched),
        stop_rx,
    ));
    // Warm up: the first events through the whole pipeline.
    *pace.lock().await = Pace {
        per_s: Some(50.0),
        tokens: 0.0,
        last: Instant::now(),
    };
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .context("no task event reached the consumer within 60s")?
            .context("the consumer stopped")?;
        if e.ce_type.starts_with("io.corral.task.") {
            CONSUMED.fetch_add(1, Ordering::SeqCst);
            break;
        }
    }
    eprintln!(
        "[bench events] pipeline up; saturated phase ({} s)",
        a.seconds
    );
    let mut phases = Vec::new();
    for (name, rate) in [("saturated", None), ("paced", Some(a.paced as f64))] {
        if let Some(rate) = rate {
            eprintln!(
                "[bench events] paced phase ({rate} tasks/s, {} s)",
                a.seconds
            );
        }
        phases.push(
            phase(
                name,
                rate,
                a.seconds,
                &pace,
                &launched,
                &mut rx,
                publisher_port,
            )
            .await?,
        );
        if fw.is_finished() {
            bail!("the framework stopped: {:?}", fw.await);
        }
    }
    let _ = stop_tx.send(true);
    fw.abort();
    consumer.abort();
    for t in agents {
        t.abort();
    }
    publisher.stop().await;
    let _ = tansu_child.kill().await;
    master_d.stop().await;
    Ok(phases)
}

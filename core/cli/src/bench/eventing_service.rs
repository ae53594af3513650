//! `corral bench eventing-service`: the eventing service end to end, beside
//! the same load written straight to Kafka (the cost of the tiers).
//!
//! It starts a real tansu (the durable build), two `corral eventing backend`
//! and two `corral eventing api` processes on a RabbitMQ node given with
//! `--amqp_url` (`scripts/rabbitmq.sh start DIR PORT` starts one), then:
//!
//! * **service**: `--writers` writers, each a session on one of the topic's
//!   three partitions, write batches of `--batch` events through the API
//!   tier for `--seconds` (a request is timed from sent to answered with
//!   every event acked by Kafka), while three readers (one session per
//!   partition) read and ack (each read that returns events is timed, and
//!   each event's end-to-end latency from its write request to its read);
//! * **kafka**: the same writers and batches with rdkafka's idempotent
//!   producer (`acks=all`) straight to tansu, each batch timed until Kafka
//!   acknowledged all of it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use corral_eventing::service::client::Client;
use corral_eventing::service::wire::{
    AllocateRequest, EventIn, ReadRequest, WireMode, WireStart, WireWriteStatus,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use super::containers::{spawn, Daemon};
use super::events::{free_port, percentile, start_tansu, tansu_bin};

/// Flags of `corral bench eventing-service`.
#[derive(clap::Args)]
pub struct Args {
    /// RabbitMQ for the tiers (amqp://user:password@host:port/vhost).
    #[arg(long = "amqp_url", env = "CORRAL_AMQP_URL")]
    pub amqp_url: String,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 6)]
    pub writers: usize,
    /// Events per write request (or per Kafka batch).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Bytes per event value.
    #[arg(long = "value_bytes", default_value_t = 200)]
    pub value_bytes: usize,
    /// The tansu binary (default: $CORRAL_TANSU, else scripts/tansu.sh's
    /// cache).
    #[arg(long)]
    pub tansu: Option<PathBuf>,
    /// One JSON object per phase.
    #[arg(long)]
    pub json: bool,
}

struct Phase {
    name: &'static str,
    events: u64,
    seconds: f64,
    write_ms: Vec<f64>,
    read_ms: Vec<f64>,
    e2e_ms: Vec<f64>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A value of `n` bytes starting with the send time (ms since the epoch).
fn value(n: usize, sent_ms: f64) -> String {
    let mut v = format!("{sent_ms:.3} ");
    while v.len() < n {
        v.push('x');
    }
    v
}

/// Runs the benchmark.
pub async fn run(a: Args) -> Result<()> {
    if a.writers == 0 || a.batch == 0 || a.batch > 1000 {
        bail!("--writers must be at least 1 and --batch 1 to 1000");
    }
    let tansu = tansu_bin(a.tansu.clone())?;
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("corral-bench-evsvc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = bench(&a, &exe, &tansu, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let phases = result?;
    let ms = |v: &[f64], p: f64| percentile(v, p);
    if a.json {
        for p in &phases {
            println!(
                "{}",
                json!({"phase": p.name, "events": p.events, "seconds": p.seconds,
                       "events_per_s": p.events as f64 / p.seconds,
                       "write_ack_p50_ms": ms(&p.write_ms, 0.5), "write_ack_p99_ms": ms(&p.write_ms, 0.99),
                       "read_p50_ms": ms(&p.read_ms, 0.5), "read_p99_ms": ms(&p.read_ms, 0.99),
                       "end_to_end_p99_ms": ms(&p.e2e_ms, 0.99)})
            );
        }
    } else {
        println!(
            "{:<8} {:>9} {:>10} {:>14} {:>14} {:>11} {:>11} {:>12}",
            "phase",
            "events",
            "events/s",
            "write p50 ms",
            "write p99 ms",
            "read p50",
            "read p99",
            "e2e p99 ms"
        );
        for p in &phases {
            println!(
                "{:<8} {:>9} {:>10.0} {:>14.1} {:>14.1} {:>11.1} {:>11.1} {:>12.1}",
                p.name,
                p.events,
                p.events as f64 / p.seconds,
                ms(&p.write_ms, 0.5),
                ms(&p.write_ms, 0.99),
                ms(&p.read_ms, 0.5),
                ms(&p.read_ms, 0.99),
                ms(&p.e2e_ms, 0.99)
            );
        }
    }
    Ok(())
}

async fn bench(a: &Args, exe: &Path, tansu: &Path, dir: &Path) -> Result<Vec<Phase>> {
    let (mut tansu_child, brokers) = start_tansu(tansu, dir, free_port()?).await?;
    std::fs::write(dir.join("secret"), [9u8; 48])?;
    let service_name = format!("bench-{}", std::process::id());
    let common = [
        format!("--amqp_url={}", a.amqp_url),
        format!("--service={service_name}"),
    ];
    let mut daemons: Vec<Daemon> = Vec::new();
    let mut backend_ports = Vec::new();
    for i in 0..2 {
        let port = free_port()?;
        backend_ports.push(port);
        let mut args = vec!["eventing".to_string(), "backend".to_string()];
        args.extend(common.iter().cloned());
        args.extend([
            format!("--id=bench-backend-{i}"),
            format!("--kafka_brokers={brokers}"),
            format!("--secret_file={}", dir.join("secret").display()),
            format!("--spool_dir={}", dir.join(format!("spool-{i}")).display()),
            format!("--listen=127.0.0.1:{port}"),
        ]);
        daemons.push(spawn(exe, &args, &dir.join(format!("backend-{i}.log")))?);
    }
    let mut apis = Vec::new();
    for i in 0..2 {
        let port = free_port()?;
        apis.push(format!("http://127.0.0.1:{port}"));
        let mut args = vec!["eventing".to_string(), "api".to_string()];
        args.extend(common.iter().cloned());
        args.extend([
            format!("--node=bench-api-{i}"),
            format!("--listen=127.0.0.1:{port}"),
        ]);
        daemons.push(spawn(exe, &args, &dir.join(format!("api-{i}.log")))?);
    }
    super::wait_until("the tiers ready", Duration::from_secs(60), || {
        let (ports, apis) = (backend_ports.clone(), apis.clone());
        async move {
            for p in ports {
                let ok = reqwest::get(format!("http://127.0.0.1:{p}/health"))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success());
                let Some(r) = ok else { return false };
                let h: serde_json::Value = r.json().await.unwrap_or_default();
                if h["members"].as_array().map(Vec::len) != Some(2) {
                    return false;
                }
            }
            for a in apis {
                if !reqwest::get(format!("{a}/health"))
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return false;
                }
            }
            true
        }
    })
    .await?;
    eprintln!(
        "[bench eventing-service] 2 api + 2 backend nodes up; service phase ({} s, {} writers x {} events)",
        a.seconds, a.writers, a.batch
    );
    let client = Arc::new(Client::new(apis, None));
    let service_phase = service(a, &client).await;
    eprintln!("[bench eventing-service] kafka phase ({} s)", a.seconds);
    let kafka_phase = kafka(a, &brokers).await;
    for d in daemons {
        d.stop().await;
    }
    let _ = tansu_child.kill().await;
    Ok(vec![service_phase?, kafka_phase?])
}

fn spec(topic: &str, partition: i32, mode: WireMode) -> AllocateRequest {
    AllocateRequest {
        topic: topic.into(),
        partition: Some(partition),
        group: None,
        mode,
        start: Some(WireStart::Latest),
        offset_token: None,
    }
}

async fn service(a: &Args, client: &Arc<Client>) -> Result<Phase> {
    let topic = "bench.service";
    // Readers first (from the latest offset), so that every written event
    // is read.
    let stop = Arc::new(AtomicBool::new(false));
    let read_ms = Arc::new(Mutex::new(Vec::new()));
    let e2e_ms = Arc::new(Mutex::new(Vec::new()));
    let read_events = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for p in 0..3 {
        let s = client
            .allocate(&spec(topic, p, WireMode::Read))
            .await
            .map_err(|e| anyhow::anyhow!("allocate a reader: {e}"))?;
        let (client, stop, read_ms, e2e_ms, read_events) = (
            Arc::clone(client),
            Arc::clone(&stop),
            Arc::clone(&read_ms),
            Arc::clone(&e2e_ms),
            Arc::clone(&read_events),
        );
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = client
                    .read(&ReadRequest {
                        session_id: s.session_id.clone(),
                        after: None,
                        max_events: Some(1000),
                        max_bytes: None,
                        wait_ms: Some(200),
                    })
                    .await;
                let Ok(batch) = r else { continue };
                let Some(last) = batch.events.last().map(|e| e.offset) else {
                    continue;
                };
                let took = started.elapsed().as_secs_f64() * 1000.0;
                let now = now_ms();
                let mut e2e = Vec::with_capacity(batch.events.len());
                for e in &batch.events {
                    if let Some(sent) = e
                        .value
                        .as_deref()
                        .and_then(|v| v.split(' ').next())
                        .and_then(|t| t.parse::<f64>().ok())
                    {
                        e2e.push(now - sent);
                    }
                }
                read_events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                if let Ok(mut v) = read_ms.lock() {
                    v.push(took);
                }
                if let Ok(mut v) = e2e_ms.lock() {
                    v.extend(e2e);
                }
                let _ = client.ack(&s.session_id, last).await;
            }
        }));
    }
    let write_ms = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let mut writers = Vec::new();
    for w in 0..a.writers {
        let s = client
            .allocate(&spec(topic, (w % 3) as i32, WireMode::Write))
            .await
            .map_err(|e| anyhow::anyhow!("allocate a writer: {e}"))?;
        let (client, write_ms, acked) = (
            Arc::clone(client),
            Arc::clone(&write_ms),
            Arc::clone(&acked),
        );
        let (batch, bytes) = (a.batch, a.value_bytes);
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let sent = now_ms();
                let events: Vec<EventIn> = (0..batch)
                    .map(|i| {
                        n += 1;
                        EventIn::text(format!("w{w}-{n}-{i}"), value(bytes, sent))
                    })
                    .collect();
                let t = Instant::now();
                let Ok(r) = client.write(&s.session_id, events).await else {
                    continue;
                };
                let ok = r
                    .results
                    .iter()
                    .filter(|x| x.status == WireWriteStatus::Acked)
                    .count();
                if ok == r.results.len() {
                    if let Ok(mut v) = write_ms.lock() {
                        v.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                acked.fetch_add(ok as u64, Ordering::Relaxed);
            }
        }));
    }
    for w in writers {
        w.await.context("a writer failed")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let written = acked.load(Ordering::Relaxed);
    // Let the readers catch up (bounded), then stop them.
    let _ = super::wait_until("the readers caught up", Duration::from_secs(30), || {
        let r = Arc::clone(&read_events);
        async move { r.load(Ordering::Relaxed) >= written }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    let sorted = |m: &Arc<Mutex<Vec<f64>>>| {
        let mut v = m.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by(f64::total_cmp);
        v
    };
    eprintln!(
        "[bench eventing-service] service: {written} events acked, {} read",
        read_events.load(Ordering::Relaxed)
    );
    Ok(Phase {
        name: "service",
        events: written,
        seconds,
        write_ms: sorted(&write_ms),
        read_ms: sorted(&read_ms),
        e2e_ms: sorted(&e2e_ms),
    })
}

async fn kafka(a: &Args, brokers: &str) -> Result<Phase> {
    let producer: FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("log_level", "3")
        .create()
        .context("a kafka producer")?;
    let topic = "bench.service";
    let write_ms = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let mut writers = Vec::new();
    for w in 0..a.writers {
        let (producer, write_ms, acked) =
            (producer.clone(), Arc::clone(&write_ms), Arc::clone(&acked));
        let (batch, bytes) = (a.batch, a.value_bytes);
        writers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let v = value(bytes, now_ms());
                let t = Instant::now();
                let mut futures = Vec::with_capacity(batch);
                for i in 0..batch {
                    let id = format!("k{w}-{i}");
                    let record = FutureRecord::<str, str>::to(topic)
                        .partition((w % 3) as i32)
                        .key(&id)
                        .payload(&v);
                    if let Ok(f) = producer.send_result(record) {
                        futures.push(f);
                    }
                }
                let ok = futures::future::join_all(futures)
                    .await
                    .into_iter()
                    .filter(|r| matches!(r, Ok(Ok(_))))
                    .count();
                if ok == batch {
                    if let Ok(mut m) = write_ms.lock() {
                        m.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                acked.fetch_add(ok as u64, Ordering::Relaxed);
            }
        }));
    }
    for w in writers {
        w.await.context("a kafka writer failed")?;
    }
    let mut write = write_ms.lock().map(|v| v.clone()).unwrap_or_default();
    write.sort_by(f64::total_cmp);
    Ok(Phase {
        name: "kafka",
        events: acked.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        write_ms: write,
        read_ms: Vec::new(),
        e2e_ms: Vec::new(),
    })
}

//! `corral bench workloads`: the workloads framework end to end on real
//! processes — a `corral master`, `--agents` real `corral agent`s and
//! `corral workloads serve`, all children of this binary on loopback.
//!
//! * **deploy**: one WORKER request of `--instances` instances
//!   (`sleep`, 0.01 cpus and 8 MB each) is deployed through the REST API;
//!   timed until the framework reports every instance healthy (running;
//!   a WORKER without a health check is healthy once running), then the
//!   request is deleted and its tasks are killed.
//! * **jobs**: `--jobs` SCHEDULED requests, each `* * * * *` (every
//!   minute) running `true`, for `--minutes` minute marks; the lateness of
//!   each run is measured from its scheduled time to (a) the framework's
//!   decision to launch it and (b) its task reported running; p50, p99 and
//!   max, and the count of runs missed or failed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::containers::{spawn, spawn_master, Daemon};
use super::wait_until;

/// Options of `corral bench workloads`.
#[derive(clap::Args)]
pub struct Args {
    /// Instances of the deployed WORKER (0 skips the deploy).
    #[arg(long, default_value_t = 1000)]
    pub instances: usize,
    /// Real agents the instances are spread over.
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    /// SCHEDULED requests running every minute (0 skips them).
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Minute marks the jobs are measured over.
    #[arg(long, default_value_t = 2)]
    pub minutes: usize,
    /// The agents' --isolation.
    #[arg(long, default_value = "posix/cpu,posix/mem")]
    pub isolation: String,
    /// First loopback port used (master; agents and the framework follow).
    #[arg(long, default_value_t = 16050)]
    pub port: u16,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        Ok(r.json().await?)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The `q` quantile (0..=1) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

pub async fn run(args: Args) -> Result<()> {
    if args.instances == 0 && args.jobs == 0 {
        bail!("nothing to do: --instances and --jobs are both 0");
    }
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the corral binary")?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("corral-bench-workloads-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let master_addr = format!("127.0.0.1:{}", args.port);
    let mut daemons: Vec<Daemon> = Vec::new();
    daemons.push(spawn_master(&exe, args.port, &dir)?);
    let per_agent = (args.instances.max(args.jobs) as f64 / args.agents as f64).ceil();
    for i in 0..args.agents {
        let port = args.port + 1 + i as u16;
        daemons.push(spawn(
            &exe,
            &[
                "agent".to_string(),
                format!("--master={master_addr}"),
                "--ip=127.0.0.1".into(),
                format!("--port={port}"),
                "--hostname=127.0.0.1".into(),
                format!("--work_dir={}", dir.join(format!("agent-{i}")).display()),
                format!(
                    "--resources=cpus:{};mem:{};disk:100000;ports:[{}-{}]",
                    (per_agent * 0.01).ceil() + 1.0,
                    per_agent * 8.0 + 1024.0,
                    31000 + i * 1000,
                    31999 + i * 1000
                ),
                format!("--isolation={}", args.isolation),
                "--executor_registration_timeout=10mins".into(),
                "--executor_shutdown_grace_period=5secs".into(),
            ],
            &dir.join(format!("agent-{i}.log")),
        )?);
    }
    let api_port = args.port + 1 + args.agents as u16;
    daemons.push(spawn(
        &exe,
        &[
            "workloads".into(),
            "serve".into(),
            format!("--master={master_addr}"),
            format!("--listen=127.0.0.1:{api_port}"),
        ],
        &dir.join("workloads.log"),
    )?);
    let api = Api {
        http: reqwest::Client::builder().no_proxy().build()?,
        url: format!("http://127.0.0.1:{api_port}"),
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let result = async {
        wait_until(
            "the framework subscribes",
            Duration::from_secs(60),
            || async {
                api.get("/api/state")
                    .await
                    .is_ok_and(|s| s["subscribed"] == true)
            },
        )
        .await?;
        let agents_up = || async {
            let v: Option<Value> = match api
                .http
                .get(format!("http://{master_addr}/metrics/snapshot"))
                .send()
                .await
            {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            v.is_some_and(|v| v["master/slaves_active"].as_f64() >= Some(args.agents as f64))
        };
        wait_until("the agents register", Duration::from_secs(60), agents_up).await?;
        let mut lines = Vec::new();
        if args.instances > 0 {
            lines.push(deploy(&api, &master_addr, args.instances, args.agents, timeout).await?);
        }
        if args.jobs > 0 {
            lines.push(jobs(&api, args.jobs, args.minutes, timeout).await?);
        }
        Ok::<_, anyhow::Error>(lines)
    }
    .await;
    for d in daemons.into_iter().rev() {
        d.stop().await;
    }
    let lines = result.with_context(|| format!("logs in {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        for l in &lines {
            println!("{l}");
        }
    } else {
        for l in &lines {
            print_line(l);
        }
    }
    Ok(())
}

fn print_line(l: &Value) {
    match l["phase"].as_str() {
        Some("deploy") => println!(
            "deploy   {} instances on {} agents: all healthy in {:.1} s (first healthy {:.1} s); deleted (all killed) in {:.1} s",
            l["instances"], l["agents"], l["all_healthy_s"].as_f64().unwrap_or(0.0),
            l["first_healthy_s"].as_f64().unwrap_or(0.0), l["deleted_s"].as_f64().unwrap_or(0.0)
        ),
        _ => println!(
            "jobs     {} jobs x {} minute marks = {} runs: decided p50 {:.0} ms p99 {:.0} ms max {:.0} ms; running p50 {:.0} ms p99 {:.0} ms max {:.0} ms; missed {} failed {}",
            l["jobs"], l["minutes"], l["runs"],
            l["decided_p50_ms"].as_f64().unwrap_or(0.0), l["decided_p99_ms"].as_f64().unwrap_or(0.0),
            l["decided_max_ms"].as_f64().unwrap_or(0.0), l["running_p50_ms"].as_f64().unwrap_or(0.0),
            l["running_p99_ms"].as_f64().unwrap_or(0.0), l["running_max_ms"].as_f64().unwrap_or(0.0),
            l["missed"], l["failed"]
        ),
    }
}

async fn deploy(
    api: &Api,
    master: &str,
    instances: usize,
    agents: usize,
    timeout: Duration,
) -> Result<Value> {
    eprintln!("[bench] deploying {instances} instances");
    api.send(
        reqwest::Method::POST,
        "/api/requests",
        json!({"id": "bench", "requestType": "WORKER", "instances": instances}),
    )
    .await?;
    let start = Instant::now();
    api.send(
        reqwest::Method::POST,
        "/api/deploys",
        json!({"deploy": {"requestId": "bench", "id": "1", "command": "exec sleep 3600",
                          "resources": {"cpus": 0.01, "memoryMb": 8}}}),
    )
    .await?;
    let mut first = None;
    let mut last_report = Instant::now();
    loop {
        let tasks = api.get("/api/tasks/active").await?;
        let healthy = tasks
            .as_array()
            .map(|t| t.iter().filter(|t| t["healthy"] == true).count())
            .unwrap_or(0);
        if healthy > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        if healthy >= instances {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "[bench] {healthy}/{instances} healthy after {:.0?}",
                start.elapsed()
            );
            last_report = Instant::now();
        }
        if start.elapsed() > timeout {
            bail!("only {healthy} of {instances} instances healthy within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = start.elapsed();
    eprintln!("[bench] all healthy in {all:.1?}; deleting");
    let deleted_start = Instant::now();
    api.send(
        reqwest::Method::DELETE,
        "/api/requests/request/bench",
        json!({}),
    )
    .await?;
    // Until the master counts no running task.
    wait_until("the instances are killed", timeout, || async {
        let metrics: Option<Value> = match api
            .http
            .get(format!("http://{master}/metrics/snapshot"))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        metrics.is_some_and(|m| m["master/tasks_running"].as_f64() == Some(0.0))
    })
    .await?;
    Ok(json!({
        "phase": "deploy",
        "instances": instances,
        "agents": agents,
        "first_healthy_s": first.unwrap_or(all).as_secs_f64(),
        "all_healthy_s": all.as_secs_f64(),
        "deleted_s": deleted_start.elapsed().as_secs_f64(),
    }))
}

async fn jobs(api: &Api, jobs: usize, minutes: usize, timeout: Duration) -> Result<Value> {
    eprintln!("[bench] creating {jobs} jobs running every minute");
    for i in 0..jobs {
        let id = format!("job-{i}");
        api.send(
            reqwest::Method::POST,
            "/api/requests",
            json!({"id": id, "requestType": "SCHEDULED", "schedule": "* * * * *"}),
        )
        .await?;
        api.send(
            reqwest::Method::POST,
            "/api/deploys",
            json!({"deploy": {"requestId": id, "id": "1", "command": "true",
                              "resources": {"cpus": 0.01, "memoryMb": 8}}}),
        )
        .await?;
    }
    // Runs for the next `minutes` marks after the jobs exist.
    let created = jiff::Timestamp::now().as_millisecond();
    let first_mark = (created / 60_000 + 1) * 60_000;
    let last_mark = first_mark + (minutes as i64 - 1) * 60_000;
    eprintln!(
        "[bench] measuring the marks {} to {}",
        jiff::Timestamp::from_millisecond(first_mark).unwrap_or_default(),
        jiff::Timestamp::from_millisecond(last_mark).unwrap_or_default()
    );
    let counted = |runs: &Value| -> usize {
        runs.as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                let at = r["scheduledFor"].as_i64().unwrap_or(0);
                at >= first_mark
                    && at <= last_mark
                    && r["outcome"] != "LAUNCHING"
                    && r["outcome"] != "RUNNING"
            })
            .count()
    };
    // Every run of the last mark has ended well within a minute of it;
    // the histories are read once that much time has passed (and again
    // every 10 s while some run is still going).
    let settle = last_mark + 60_000 - jiff::Timestamp::now().as_millisecond();
    tokio::time::sleep(Duration::from_millis(u64::try_from(settle).unwrap_or(0))).await;
    let start = Instant::now();
    loop {
        let mut done = 0;
        for i in 0..jobs {
            let runs = api
                .get(&format!("/api/history/request/job-{i}/runs"))
                .await?;
            if counted(&runs) >= minutes {
                done += 1;
            }
        }
        if done == jobs {
            break;
        }
        if start.elapsed() > timeout {
            bail!("only {done} of {jobs} jobs finished their runs");
        }
        eprintln!("[bench] {done}/{jobs} jobs have ended a run for every mark");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let (mut decided, mut running) = (Vec::new(), Vec::new());
    let (mut missed, mut failed, mut runs_n) = (0, 0, 0);
    for i in 0..jobs {
        let runs = api
            .get(&format!("/api/history/request/job-{i}/runs"))
            .await?;
        for r in runs.as_array().into_iter().flatten() {
            let at = r["scheduledFor"].as_i64().unwrap_or(0);
            if at < first_mark || at > last_mark || r["attempt"] != 0 {
                continue;
            }
            runs_n += 1;
            match r["outcome"].as_str() {
                Some("MISSED") => missed += 1,
                Some("FAILED") | Some("TIMED_OUT") => failed += 1,
                _ => {}
            }
            if let Some(s) = r["startedAt"].as_i64() {
                decided.push((s - at) as f64);
            }
            if let Some(s) = r["runningAt"].as_i64() {
                running.push((s - at) as f64);
            }
        }
    }
    decided.sort_by(f64::total_cmp);
    running.sort_by(f64::total_cmp);
    for i in 0..jobs {
        let _ = api
            .send(
                reqwest::Method::DELETE,
                &format!("/api/requests/request/job-{i}"),
                json!({}),
            )
            .await;
    }
    Ok(json!({
        "phase": "jobs",
        "jobs": jobs,
        "minutes": minutes,
        "runs": runs_n,
        "decided_p50_ms": quantile(&decided, 0.5),
        "decided_p99_ms": quantile(&decided, 0.99),
        "decided_max_ms": decided.last().copied().unwrap_or(f64::NAN),
        "running_p50_ms": quantile(&running, 0.5),
        "running_p99_ms": quantile(&running, 0.99),
        "running_max_ms": running.last().copied().unwrap_or(f64::NAN),
        "missed": missed,
        "failed": failed,
    }))
}

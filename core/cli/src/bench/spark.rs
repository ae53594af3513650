//! `corral bench spark`: the Spark dispatcher end to end on real processes
//! — a `corral master`, a real `corral agent` and `corral spark-dispatcher`
//! running real Spark 4 jobs — beside Spark's own standalone master (its
//! REST submission server and one worker) running the same jobs, submitted
//! the same way (Spark's REST protocol, cluster mode).
//!
//! * **latency**: `--submissions` Pi jobs (a jar compiled from
//!   `tests/spark/CorralPi.java`, or `--jar`), `--concurrency` at a time;
//!   for each, the time from the create request to the driver RUNNING (as
//!   the status call reports it), to its first executor registered (the
//!   driver's own REST API, `/api/v1/applications/<app>/executors`), and
//!   to FINISHED; p50 and p99.
//! * **queue**: `--queued` submissions that cannot be placed (more
//!   executors, or a bigger driver, than the cluster has), sent one after
//!   another; creates per second, then a status of each per second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::containers::{spawn, spawn_master, Daemon};
use super::wait_until;

/// Options of `corral bench spark`.
#[derive(clap::Args)]
pub struct Args {
    /// Spark (a SPARK_HOME; `scripts/spark-env.sh` prints pyspark's).
    #[arg(long = "spark_home", env = "SPARK_HOME")]
    pub spark_home: PathBuf,
    /// JAVA_HOME for Spark (and javac).
    #[arg(
        long = "java_home",
        env = "JAVA_HOME",
        default_value = "/usr/lib/jvm/java-17-openjdk-amd64"
    )]
    pub java_home: PathBuf,
    /// The Pi jar (class corral.CorralPi); compiled from
    /// tests/spark/CorralPi.java when absent.
    #[arg(long)]
    pub jar: Option<PathBuf>,
    /// Jobs of the latency phase.
    #[arg(long, default_value_t = 50)]
    pub submissions: usize,
    /// Jobs running at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Submissions of the queue phase.
    #[arg(long, default_value_t = 200)]
    pub queued: usize,
    /// Which: corral, standalone or both.
    #[arg(long, default_value = "both")]
    pub target: String,
    /// First loopback port used.
    #[arg(long, default_value_t = 17250)]
    pub port: u16,
    /// Give up on a job after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[(((s.len() - 1) as f64) * q).round() as usize]
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    match http.get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value> {
    let r = http
        .post(url)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    Ok(r.json().await.unwrap_or(Value::Null))
}

/// Compiles the Pi job into `dir`.
fn compile_pi(java_home: &Path, spark_home: &Path, dir: &Path) -> Result<PathBuf> {
    let source = Path::new("tests/spark/CorralPi.java");
    if !source.is_file() {
        bail!("--jar: not given, and tests/spark/CorralPi.java is not here (run from the source tree)");
    }
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes)?;
    let ok = std::process::Command::new(java_home.join("bin/javac"))
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(format!("{}/jars/*", spark_home.display()))
        .arg(source)
        .status()
        .context("javac")?
        .success();
    let jar = dir.join("corral-pi.jar");
    let packed = ok
        && std::process::Command::new(java_home.join("bin/jar"))
            .arg("cf")
            .arg(&jar)
            .arg("-C")
            .arg(&classes)
            .arg(".")
            .status()
            .context("jar")?
            .success();
    if !packed {
        bail!("compiling tests/spark/CorralPi.java failed");
    }
    Ok(jar)
}

/// Where jobs are submitted.
struct Target {
    name: &'static str,
    /// `http://host:port` of the REST submission server.
    rest: String,
    /// `spark.master` of a submission.
    spark_master: String,
}

fn create(target: &Target, jar: &Path, props: &[(&str, String)], args: &[&str]) -> Value {
    let mut p = serde_json::Map::new();
    p.insert("spark.app.name".into(), json!("corral-bench-pi"));
    p.insert("spark.master".into(), json!(target.spark_master));
    p.insert("spark.submit.deployMode".into(), json!("cluster"));
    p.insert(
        "spark.jars".into(),
        json!(format!("file://{}", jar.display())),
    );
    p.insert("spark.driver.memory".into(), json!("512m"));
    p.insert("spark.executor.memory".into(), json!("512m"));
    p.insert("spark.executor.instances".into(), json!("1"));
    p.insert("spark.cores.max".into(), json!("1"));
    for (k, v) in props {
        p.insert((*k).into(), json!(v));
    }
    json!({
        "action": "CreateSubmissionRequest",
        "appResource": format!("file://{}", jar.display()),
        "mainClass": "corral.CorralPi",
        "appArgs": args,
        "clientSparkVersion": "4.3.0",
        "environmentVariables": {"SPARK_ENV_LOADED": "1"},
        "sparkProperties": p,
    })
}

/// One job's times, seconds from its create: RUNNING, first executor,
/// FINISHED.
async fn one_job(
    http: &reqwest::Client,
    target: &Target,
    jar: &Path,
    ui_port: u16,
    timeout: Duration,
) -> Result<(f64, f64, f64)> {
    let start = Instant::now();
    let v = post(
        http,
        &format!("{}/v1/submissions/create", target.rest),
        &create(
            target,
            jar,
            &[("spark.ui.port", ui_port.to_string())],
            &["2"],
        ),
    )
    .await?;
    if v["success"] != true {
        bail!("{}: submission refused: {v}", target.name);
    }
    let id = v["submissionId"].as_str().unwrap_or_default().to_string();
    let status = format!("{}/v1/submissions/status/{id}", target.rest);
    let mut running = None;
    let mut executor = None;
    let mut ui: Option<String> = None;
    loop {
        if start.elapsed() > timeout {
            bail!("{}: {id} did not finish in {timeout:?}", target.name);
        }
        let s = get(http, &status).await;
        let state = s["driverState"].as_str().unwrap_or("");
        if running.is_none() && (state == "RUNNING" || state == "FINISHED") {
            running = Some(start.elapsed().as_secs_f64());
        }
        if ui.is_none() && running.is_some() {
            // Corral links the driver's UI from the status (the port it
            // was offered); the standalone driver has the port we set.
            ui = Some(
                s["message"]
                    .as_str()
                    .and_then(|m| m.strip_prefix("Spark UI: "))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("http://127.0.0.1:{ui_port}")),
            );
        }
        if executor.is_none() {
            if let Some(ui) = &ui {
                let apps = get(http, &format!("{ui}/api/v1/applications")).await;
                if let Some(app) = apps[0]["id"].as_str() {
                    let ex = get(http, &format!("{ui}/api/v1/applications/{app}/executors")).await;
                    if ex
                        .as_array()
                        .is_some_and(|e| e.iter().any(|x| x["id"] != "driver"))
                    {
                        executor = Some(start.elapsed().as_secs_f64());
                    }
                }
            }
        }
        match state {
            "FINISHED" => {
                let done = start.elapsed().as_secs_f64();
                let r = running.unwrap_or(done);
                return Ok((r, executor.unwrap_or(f64::NAN), done));
            }
            "FAILED" | "ERROR" | "KILLED" => bail!("{}: {id} ended {state}: {s}", target.name),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn latency(
    http: &reqwest::Client,
    target: &Target,
    jar: &Path,
    args: &Args,
    ui_base: u16,
) -> Result<Value> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut results = Vec::new();
    let mut next = 0usize;
    while next < args.submissions {
        let batch: Vec<usize> = (next..(next + args.concurrency).min(args.submissions)).collect();
        next += batch.len();
        let runs = batch.iter().map(|i| {
            one_job(
                http,
                target,
                jar,
                ui_base + (*i % args.concurrency) as u16,
                timeout,
            )
        });
        for r in futures::future::join_all(runs).await {
            results.push(r?);
        }
        eprintln!(
            "[bench] {}: {} of {} jobs done",
            target.name,
            results.len(),
            args.submissions
        );
    }
    let running: Vec<f64> = results.iter().map(|r| r.0).collect();
    let executor: Vec<f64> = results
        .iter()
        .map(|r| r.1)
        .filter(|x| x.is_finite())
        .collect();
    let finished: Vec<f64> = results.iter().map(|r| r.2).collect();
    Ok(json!({
        "phase": "latency", "target": target.name, "jobs": results.len(), "concurrency": args.concurrency,
        "running_p50_s": quantile(&running, 0.5), "running_p99_s": quantile(&running, 0.99),
        "executor_p50_s": quantile(&executor, 0.5), "executor_p99_s": quantile(&executor, 0.99),
        "executors_seen": executor.len(),
        "finished_p50_s": quantile(&finished, 0.5), "finished_p99_s": quantile(&finished, 0.99),
    }))
}

async fn queue(http: &reqwest::Client, target: &Target, jar: &Path, n: usize) -> Result<Value> {
    // Nothing can run: a driver bigger than the cluster.
    let body = create(
        target,
        jar,
        &[
            ("spark.driver.memory", "512g".into()),
            ("spark.executor.instances", "400".into()),
        ],
        &["2"],
    );
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let v = post(
            http,
            &format!("{}/v1/submissions/create", target.rest),
            &body,
        )
        .await?;
        if v["success"] != true {
            bail!("{}: queued submission refused: {v}", target.name);
        }
        ids.push(v["submissionId"].as_str().unwrap_or_default().to_string());
    }
    let creates = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for id in &ids {
        let s = get(http, &format!("{}/v1/submissions/status/{id}", target.rest)).await;
        if s["success"] != true {
            bail!("{}: status of {id}: {s}", target.name);
        }
    }
    let statuses = start.elapsed().as_secs_f64();
    let _ = post(
        http,
        &format!("{}/v1/submissions/killall", target.rest),
        &json!({}),
    )
    .await;
    Ok(json!({
        "phase": "queue", "target": target.name, "submissions": n,
        "creates_per_s": n as f64 / creates, "statuses_per_s": n as f64 / statuses,
    }))
}

fn spark_daemon(
    args: &Args,
    class: &str,
    flags: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> Result<tokio::process::Child> {
    let out = std::fs::File::create(log)?;
    let mut cmd = tokio::process::Command::new(args.spark_home.join("bin/spark-class"));
    cmd.arg(class)
        .args(flags)
        .env("SPARK_HOME", &args.spark_home)
        .env("JAVA_HOME", &args.java_home)
        .env("SPARK_NO_DAEMONIZE", "1")
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().with_context(|| format!("start {class}"))
}

pub async fn run(args: Args) -> Result<()> {
    if args.submissions == 0 || args.concurrency == 0 {
        bail!("--submissions and --concurrency must be at least 1");
    }
    let targets: Vec<&str> = match args.target.as_str() {
        "both" => vec!["corral", "standalone"],
        "corral" => vec!["corral"],
        "standalone" => vec!["standalone"],
        other => bail!("--target: {other:?} is not corral, standalone or both"),
    };
    let dir = std::env::temp_dir().join(format!("corral-bench-spark-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let jar = match &args.jar {
        Some(j) => std::fs::canonicalize(j).with_context(|| format!("--jar {}", j.display()))?,
        None => compile_pi(&args.java_home, &args.spark_home, &dir)?,
    };
    let http = reqwest::Client::builder().no_proxy().build()?;
    let exe = std::env::current_exe().context("cannot find the corral binary")?;
    let mut lines = Vec::new();
    for t in targets {
        let result = if t == "corral" {
            let port = args.port;
            let master = format!("127.0.0.1:{port}");
            let mut daemons: Vec<Daemon> = vec![spawn_master(&exe, port, &dir)?];
            daemons.push(spawn(
                &exe,
                &[
                    "agent".into(),
                    format!("--master={master}"),
                    "--ip=127.0.0.1".into(),
                    format!("--port={}", port + 1),
                    format!("--work_dir={}", dir.join("agent").display()),
                    "--resources=cpus:16;mem:65536;disk:4096;ports:[21000-21999]".into(),
                ],
                &dir.join("agent.log"),
            )?);
            let rest_port = port + 2;
            daemons.push(spawn(
                &exe,
                &[
                    "spark-dispatcher".into(),
                    format!("--master={master}"),
                    format!("--listen=127.0.0.1:{rest_port}"),
                    format!("--spark_home={}", args.spark_home.display()),
                    format!("--task_env=JAVA_HOME={}", args.java_home.display()),
                    format!("--max_drivers={}", args.queued.max(200)),
                    "--offer_hold=1secs".into(),
                ],
                &dir.join("dispatcher.log"),
            )?);
            let target = Target {
                name: "corral",
                rest: format!("http://127.0.0.1:{rest_port}"),
                spark_master: format!("spark://127.0.0.1:{rest_port}"),
            };
            let r = async {
                wait_until(
                    "the dispatcher subscribes",
                    Duration::from_secs(60),
                    || async {
                        get(&http, &format!("{}/api/drivers", target.rest)).await["frameworkId"]
                            .is_string()
                    },
                )
                .await?;
                let a = latency(&http, &target, &jar, &args, 0).await?;
                let q = queue(&http, &target, &jar, args.queued).await?;
                Ok::<_, anyhow::Error>(vec![a, q])
            }
            .await;
            for d in daemons.into_iter().rev() {
                d.stop().await;
            }
            r
        } else {
            let port = args.port + 10;
            let (rpc, ui, rest) = (port, port + 1, port + 2);
            let master = spark_daemon(
                &args,
                "org.apache.spark.deploy.master.Master",
                &[
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    rpc.to_string(),
                    "--webui-port".into(),
                    ui.to_string(),
                ],
                &[(
                    "SPARK_MASTER_OPTS",
                    format!("-Dspark.master.rest.enabled=true -Dspark.master.rest.port={rest}"),
                )],
                &dir.join("standalone-master.log"),
            )?;
            let worker = spark_daemon(
                &args,
                "org.apache.spark.deploy.worker.Worker",
                &[
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--cores".into(),
                    "16".into(),
                    "--memory".into(),
                    "60g".into(),
                    "--work-dir".into(),
                    dir.join("worker").display().to_string(),
                    format!("spark://127.0.0.1:{rpc}"),
                ],
                &[],
                &dir.join("standalone-worker.log"),
            )?;
            let target = Target {
                name: "standalone",
                rest: format!("http://127.0.0.1:{rest}"),
                spark_master: format!("spark://127.0.0.1:{rpc}"),
            };
            let r = async {
                wait_until(
                    "the standalone worker registers",
                    Duration::from_secs(120),
                    || async {
                        get(&http, &format!("http://127.0.0.1:{ui}/json/")).await["aliveworkers"]
                            .as_u64()
                            >= Some(1)
                    },
                )
                .await?;
                let a = latency(&http, &target, &jar, &args, 21500).await?;
                let q = queue(&http, &target, &jar, args.queued).await?;
                Ok::<_, anyhow::Error>(vec![a, q])
            }
            .await;
            drop(worker);
            drop(master);
            r
        };
        lines.extend(result.with_context(|| format!("{t}: logs in {}", dir.display()))?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    for l in &lines {
        if args.json {
            println!("{l}");
        } else if l["phase"] == "latency" {
            println!(
                "{:<10} {} Pi jobs, {} at a time: driver RUNNING p50 {:.2} s p99 {:.2} s; first executor p50 {:.2} s p99 {:.2} s; FINISHED p50 {:.2} s p99 {:.2} s",
                l["target"].as_str().unwrap_or(""), l["jobs"], l["concurrency"],
                l["running_p50_s"].as_f64().unwrap_or(f64::NAN), l["running_p99_s"].as_f64().unwrap_or(f64::NAN),
                l["executor_p50_s"].as_f64().unwrap_or(f64::NAN), l["executor_p99_s"].as_f64().unwrap_or(f64::NAN),
                l["finished_p50_s"].as_f64().unwrap_or(f64::NAN), l["finished_p99_s"].as_f64().unwrap_or(f64::NAN),
            );
        } else {
            println!(
                "{:<10} queue of {} submissions: {:.0} creates/s, {:.0} status calls/s",
                l["target"].as_str().unwrap_or(""),
                l["submissions"],
                l["creates_per_s"].as_f64().unwrap_or(0.0),
                l["statuses_per_s"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

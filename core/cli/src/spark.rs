//! `corral spark-dispatcher` runs the Spark dispatcher; `corral spark ...`
//! are its clients: `submit` (Spark's REST submission protocol, for what
//! `spark-submit` refuses in cluster mode on a `spark://` master: Python
//! applications), `status`, `kill`, `list` and `logs` (tables, or the JSON
//! answers with `--json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::table::print_table;
use crate::workloads::{call_api, duration, millis, print_json, text};

/// The Spark version the dispatcher reports (`serverSparkVersion`) and the
/// CLI sends (`clientSparkVersion`).
const SPARK_VERSION: &str = "4.3.0";

/// `corral spark-dispatcher`.
#[derive(clap::Args)]
pub struct DispatcherArgs {
    /// The master: host:port[,host:port...] or zk://host:port/path.
    #[arg(long, env = "MESOS_MASTER")]
    master: String,
    /// Where the submission server (Spark's REST protocol, and the
    /// dispatcher's JSON API under /api) listens.
    #[arg(long, default_value = "127.0.0.1:6066")]
    listen: std::net::SocketAddr,
    /// Directory of the embedded state store (the drivers, the
    /// FrameworkID); in memory when absent. Ignored with --zk.
    #[arg(long = "state_dir")]
    state_dir: Option<PathBuf>,
    /// zk://host:port/path: keep the state in ZooKeeper and elect a leader
    /// among instances started with the same value.
    #[arg(long)]
    zk: Option<String>,
    /// The roles drivers and executors may run as (comma-separated); a
    /// submission names one with spark.corral.role, else the first.
    #[arg(long, default_value = "spark", value_delimiter = ',')]
    roles: Vec<String>,
    /// The principal the dispatcher registers with.
    #[arg(long)]
    principal: Option<String>,
    /// The framework's name.
    #[arg(long, default_value = "corral-spark-dispatcher")]
    name: String,
    /// Spark installed on every agent: its SPARK_HOME.
    #[arg(long = "spark_home", env = "SPARK_HOME")]
    spark_home: Option<String>,
    /// Spark as a tarball the agents fetch (http, hdfs or file URI);
    /// --spark_tarball_home names the directory it holds.
    #[arg(long = "spark_tarball", conflicts_with = "spark_docker_image")]
    spark_tarball: Option<String>,
    /// The directory the tarball extracts to (spark-4.0.1-bin-hadoop3).
    #[arg(long = "spark_tarball_home", requires = "spark_tarball")]
    spark_tarball_home: Option<String>,
    /// Spark as a Docker image (jobs may name their own with
    /// spark.corral.docker.image).
    #[arg(long = "spark_docker_image")]
    spark_docker_image: Option<String>,
    /// SPARK_HOME inside the image.
    #[arg(long = "spark_docker_home", default_value = "/opt/spark")]
    spark_docker_home: String,
    /// Drivers queued at most (MesosClusterDispatcher's
    /// spark.mesos.maxDrivers); a full queue refuses submissions.
    #[arg(long = "max_drivers", default_value_t = corral_spark::queue::DEFAULT_MAX_QUEUED)]
    max_drivers: usize,
    /// Finished drivers retained with their final state
    /// (spark.mesos.retainedDrivers).
    #[arg(long = "retained_drivers", default_value_t = corral_spark::queue::DEFAULT_RETAINED)]
    retained_drivers: usize,
    /// A queue's priority, NAME=PRIORITY (repeated; higher first; jobs pick
    /// a queue with spark.corral.dispatcher.queue).
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Dispatcher configuration, KEY=VALUE (repeated), e.g.
    /// spark.corral.dispatcher.driverDefault.spark.executor.memory=2g.
    #[arg(long = "conf")]
    conf: Vec<String>,
    /// Executors of an application that says nothing about them.
    #[arg(long = "default_executors", default_value_t = 2)]
    default_executors: u32,
    /// Most executors of one application.
    #[arg(long = "max_executors", default_value_t = 500)]
    max_executors: u32,
    /// The heap of each application's master and workers' own JVMs, MB.
    #[arg(long = "daemon_memory_mb", default_value_t = 256)]
    daemon_memory_mb: u64,
    /// How long offers are held for a waiting application (Mesos
    /// duration).
    #[arg(long = "offer_hold", default_value = "2secs", value_parser = duration)]
    offer_hold: Duration,
    /// Extra environment of every Spark task (NAME=value, repeated), e.g.
    /// JAVA_HOME.
    #[arg(long = "task_env")]
    task_env: Vec<String>,
}

fn pair(flag: &str, item: &str) -> Result<(String, String)> {
    match item.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("--{flag}: expected NAME=VALUE, got {item:?}"),
    }
}

/// Runs the dispatcher.
pub async fn serve(a: DispatcherArgs) -> Result<()> {
    use corral_spark::{plan::PlanDefaults, queue::Limits, server, tasks};
    let spark = match (&a.spark_tarball, &a.spark_docker_image, &a.spark_home) {
        (Some(uri), _, _) => tasks::Spark::Tarball {
            uri: uri.clone(),
            home: a.spark_tarball_home.clone().with_context(|| {
                "--spark_tarball_home: required with --spark_tarball (the directory it holds)"
            })?,
        },
        (None, Some(image), _) => tasks::Spark::Docker {
            image: image.clone(),
            home: a.spark_docker_home.clone(),
        },
        (None, None, Some(home)) => tasks::Spark::Home(home.clone()),
        (None, None, None) => bail!(
            "--spark_home: where Spark is on the agents (or --spark_tarball, or --spark_docker_image)"
        ),
    };
    if a.roles.is_empty() || a.roles.iter().any(|r| r.is_empty()) {
        bail!("--roles: at least one role, no empty names");
    }
    let mut queue_priorities = BTreeMap::new();
    for q in &a.queues {
        let (name, p) = pair("queue", q)?;
        let p: i64 = p
            .parse()
            .with_context(|| format!("--queue {q}: the priority must be a whole number"))?;
        queue_priorities.insert(name, p);
    }
    let mut conf = BTreeMap::new();
    for c in &a.conf {
        let (k, v) = pair("conf", c)?;
        conf.insert(k, v);
    }
    let env = a
        .task_env
        .iter()
        .map(|e| pair("task_env", e))
        .collect::<Result<Vec<_>>>()?;
    let sizing = PlanDefaults {
        executors: a.default_executors,
        max_executors: a.max_executors,
        ..PlanDefaults::default()
    };
    let config = server::Config {
        master: a.master,
        listen: a.listen,
        state_dir: a.state_dir,
        zk: a.zk,
        roles: a.roles,
        principal: a.principal,
        name: a.name,
        server_version: SPARK_VERSION.to_string(),
        limits: Limits {
            max_queued: a.max_drivers,
            retained: a.retained_drivers,
            queue_priorities,
        },
        sizing,
        setup: tasks::Setup {
            spark,
            env,
            daemon_memory_mib: a.daemon_memory_mb,
            master_wait_secs: 120,
        },
        conf,
        hold: a.offer_hold,
    };
    server::run(config)
        .await
        .context("the spark dispatcher failed")
}

/// `corral spark ...`: clients of the dispatcher.
#[derive(clap::Subcommand)]
pub enum SparkCommand {
    /// Submit an application (JVM or Python) in cluster mode.
    Submit(SubmitArgs),
    /// A driver's state, where it runs and its Spark UI.
    Status(IdArgs),
    /// Kill a driver (queued or running).
    Kill(IdArgs),
    /// Every driver: queued, running and finished.
    List(ClientArgs),
    /// A driver's output (stdout; --stderr for Spark's log).
    Logs(LogsArgs),
}

/// Where the dispatcher is, and how to print.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// The dispatcher (its submission server).
    #[arg(
        long,
        env = "CORRAL_SPARK_DISPATCHER",
        default_value = "http://127.0.0.1:6066"
    )]
    dispatcher: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A command on one driver.
#[derive(clap::Args)]
pub struct IdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The submission id (driver-...).
    submission_id: String,
}

/// `corral spark logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The submission id.
    submission_id: String,
    /// Spark's own log (stderr) instead of the application's output.
    #[arg(long)]
    stderr: bool,
    /// Keep printing until the driver ends.
    #[arg(short, long)]
    follow: bool,
}

/// `corral spark submit`: spark-submit's options, Spark's names.
#[derive(clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The main class of a JVM application.
    #[arg(long)]
    class: Option<String>,
    /// The application's name.
    #[arg(long)]
    name: Option<String>,
    /// The role it runs as (spark.corral.role).
    #[arg(long)]
    role: Option<String>,
    /// A Spark property, KEY=VALUE (repeated).
    #[arg(long = "conf", short = 'c')]
    conf: Vec<String>,
    /// Relaunch the driver when it fails (with backoff).
    #[arg(long)]
    supervise: bool,
    /// The driver's memory (1g).
    #[arg(long = "driver-memory")]
    driver_memory: Option<String>,
    /// The driver's cores.
    #[arg(long = "driver-cores")]
    driver_cores: Option<String>,
    /// Each executor's memory.
    #[arg(long = "executor-memory")]
    executor_memory: Option<String>,
    /// Each executor's cores.
    #[arg(long = "executor-cores")]
    executor_cores: Option<String>,
    /// Executors.
    #[arg(long = "num-executors")]
    num_executors: Option<String>,
    /// Cores of all executors together (spark.cores.max).
    #[arg(long = "total-executor-cores")]
    total_executor_cores: Option<String>,
    /// Python files for the PYTHONPATH (comma-separated paths or URIs).
    #[arg(long = "py-files")]
    py_files: Option<String>,
    /// The driver's and executors' environment, NAME=value (repeated).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Wait until the driver ends; exit non-zero unless it FINISHED.
    #[arg(long)]
    wait: bool,
    /// The application: a jar or a .py file, as a path the agents can read
    /// or a URI they fetch (http, https, hdfs).
    app_resource: String,
    /// The application's arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    app_args: Vec<String>,
}

async fn call(
    http: &reqwest::Client,
    client: &ClientArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    call_api(
        http,
        &client.dispatcher,
        "the spark dispatcher (is `corral spark-dispatcher` running? set --dispatcher or CORRAL_SPARK_DISPATCHER)",
        method,
        path,
        body,
    )
    .await
}

/// A local path made absolute (agents on this host read it); URIs as
/// they are.
fn resource(given: &str) -> Result<String> {
    if given.contains("://") {
        return Ok(given.to_string());
    }
    let path = std::path::Path::new(given);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    if !abs.exists() {
        bail!(
            "app resource {given}: no such file (give a path the agents can read, or an http/hdfs URI)"
        );
    }
    Ok(format!("file://{}", abs.display()))
}

/// The CreateSubmissionRequest of `a`.
fn create_request(a: &SubmitArgs) -> Result<Value> {
    let resource = resource(&a.app_resource)?;
    let python = resource.ends_with(".py");
    let main_class = match (&a.class, python) {
        (Some(c), _) => c.clone(),
        (None, true) => "org.apache.spark.deploy.PythonRunner".to_string(),
        (None, false) => bail!("--class: required for a JVM application (a jar)"),
    };
    let mut props: BTreeMap<String, String> = BTreeMap::new();
    for c in &a.conf {
        let (k, v) = pair("conf", c)?;
        props.insert(k, v);
    }
    let name = a.name.clone().unwrap_or_else(|| {
        resource
            .rsplit('/')
            .next()
            .unwrap_or("app")
            .trim_end_matches(".py")
            .trim_end_matches(".jar")
            .to_string()
    });
    props.insert("spark.app.name".into(), name);
    props.insert("spark.submit.deployMode".into(), "cluster".into());
    props.insert(
        "spark.master".into(),
        format!(
            "spark://{}",
            a.client
                .dispatcher
                .trim_start_matches("http://")
                .trim_end_matches('/')
        ),
    );
    let flags = [
        ("spark.corral.role", &a.role),
        ("spark.driver.memory", &a.driver_memory),
        ("spark.driver.cores", &a.driver_cores),
        ("spark.executor.memory", &a.executor_memory),
        ("spark.executor.cores", &a.executor_cores),
        ("spark.executor.instances", &a.num_executors),
        ("spark.cores.max", &a.total_executor_cores),
        ("spark.submit.pyFiles", &a.py_files),
    ];
    for (k, v) in flags {
        if let Some(v) = v {
            props.insert(k.into(), v.clone());
        }
    }
    if a.supervise {
        props.insert("spark.driver.supervise".into(), "true".into());
    }
    let mut env = BTreeMap::new();
    for e in &a.env {
        let (k, v) = pair("env", e)?;
        env.insert(k, v);
    }
    Ok(json!({
        "action": "CreateSubmissionRequest",
        "appResource": resource,
        "mainClass": main_class,
        "appArgs": a.app_args,
        "sparkProperties": props,
        "environmentVariables": env,
        "clientSparkVersion": SPARK_VERSION,
    }))
}

fn driver_row(d: &Value) -> Vec<String> {
    let why = d["message"]
        .as_str()
        .or(d["whyPending"].as_str())
        .unwrap_or("");
    vec![
        text(&d["submissionId"]),
        text(&d["name"]),
        text(&d["role"]),
        text(&d["state"]),
        text(&d["attempts"]),
        text(&d["hostname"]),
        text(&d["uiUrl"]),
        millis(&d["submittedMs"]),
        why.to_string(),
    ]
}

const DRIVER_HEADERS: [&str; 9] = [
    "SUBMISSION",
    "NAME",
    "ROLE",
    "STATE",
    "ATTEMPTS",
    "HOST",
    "SPARK UI",
    "SUBMITTED",
    "MESSAGE",
];

/// Runs a client command.
pub async fn run(cmd: SparkCommand) -> Result<()> {
    let http = reqwest::Client::new();
    match cmd {
        SparkCommand::Submit(a) => {
            let body = create_request(&a)?;
            let v = call(
                &http,
                &a.client,
                reqwest::Method::POST,
                "/v1/submissions/create",
                Some(body),
            )
            .await?;
            if a.client.json {
                print_json(&v)?;
            }
            if v["success"] != true {
                bail!(
                    "the dispatcher refused the submission: {}",
                    v["message"].as_str().unwrap_or("no reason given")
                );
            }
            let id = text(&v["submissionId"]);
            if !a.client.json {
                println!("Submission successfully created as {id}");
            }
            if !a.wait {
                return Ok(());
            }
            let mut last = String::new();
            loop {
                let s = call(
                    &http,
                    &a.client,
                    reqwest::Method::GET,
                    &format!("/v1/submissions/status/{id}"),
                    None,
                )
                .await?;
                let state = text(&s["driverState"]);
                if state != last {
                    eprintln!(
                        "{id}: {state}{}",
                        s["message"]
                            .as_str()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    );
                    last = state.clone();
                }
                match state.as_str() {
                    "FINISHED" => return Ok(()),
                    "KILLED" | "FAILED" | "ERROR" | "UNKNOWN" => {
                        bail!("driver {id} ended {state}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        SparkCommand::Status(a) => {
            let v = call(
                &http,
                &a.client,
                reqwest::Method::GET,
                &format!("/api/drivers/{}", a.submission_id),
                None,
            )
            .await?;
            if a.client.json {
                return print_json(&v);
            }
            print_table(&DRIVER_HEADERS, &[driver_row(&v)]);
            Ok(())
        }
        SparkCommand::Kill(a) => {
            let v = call(
                &http,
                &a.client,
                reqwest::Method::POST,
                &format!("/v1/submissions/kill/{}", a.submission_id),
                None,
            )
            .await?;
            if a.client.json {
                print_json(&v)?;
            } else {
                println!("{}", v["message"].as_str().unwrap_or_default());
            }
            if v["success"] != true {
                bail!(
                    "driver {} was not killed (unknown, or already finished)",
                    a.submission_id
                );
            }
            Ok(())
        }
        SparkCommand::List(c) => {
            let v = call(&http, &c, reqwest::Method::GET, "/api/drivers", None).await?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["drivers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(v["finished"].as_array().into_iter().flatten())
                .map(driver_row)
                .collect();
            print_table(&DRIVER_HEADERS, &rows);
            println!(
                "\nqueued {} of {}",
                text(&v["queue"]["queued"]),
                text(&v["queue"]["capacity"])
            );
            Ok(())
        }
        SparkCommand::Logs(a) => {
            use std::io::Write;
            let file = if a.stderr { "stderr" } else { "stdout" };
            let mut offset = 0u64;
            let mut out = std::io::stdout().lock();
            loop {
                let path = format!(
                    "/api/drivers/{}/logs?path={file}&offset={offset}",
                    a.submission_id
                );
                let chunk = call(&http, &a.client, reqwest::Method::GET, &path, None).await?;
                let data = chunk["data"].as_str().unwrap_or_default();
                if a.client.json {
                    writeln!(out, "{chunk}")?;
                } else {
                    out.write_all(data.as_bytes())?;
                }
                out.flush()?;
                offset = chunk["nextOffset"].as_u64().unwrap_or(offset);
                if !data.is_empty() {
                    continue;
                }
                let running = chunk["taskState"].as_str().is_some_and(|s| {
                    matches!(
                        s,
                        "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING"
                    )
                });
                if !a.follow || !running {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

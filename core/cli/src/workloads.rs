//! `corral workloads ...`: the services-and-jobs framework — `serve` runs
//! it; the other commands are clients of its REST API (tables, or the
//! JSON answers with `--json`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::table::print_table;

/// The framework's commands.
#[derive(clap::Subcommand)]
pub enum WorkloadsCommand {
    /// Run the framework: subscribe to the master and serve the REST API.
    Serve(ServeArgs),
    /// Create or update a request from a JSON or YAML file.
    Create(FileArgs),
    /// Deploy: a deploy document (`{"deploy": {...}}` or the deploy itself)
    /// from a JSON or YAML file.
    Deploy(FileArgs),
    /// List the requests.
    List(ClientArgs),
    /// The active tasks.
    Tasks(ClientArgs),
    /// Scale a SERVICE or WORKER request.
    Scale {
        #[command(flatten)]
        client: ClientArgs,
        /// The request.
        id: String,
        /// Instances.
        instances: u32,
    },
    /// Run a job now.
    Run(IdArgs),
    /// Pause a request.
    Pause(IdArgs),
    /// Unpause a request.
    Unpause(IdArgs),
    /// Delete a request (its tasks are killed).
    Delete(IdArgs),
    /// A job's runs, or a service's ended tasks.
    History(IdArgs),
    /// A task's log, live from its agent or from the task log archive.
    Logs(LogsArgs),
}

/// `corral workloads logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The task (its id, as `corral workloads tasks` shows).
    task_id: String,
    /// Read stderr instead of stdout.
    #[arg(long)]
    stderr: bool,
    /// The file to read: stdout, stderr, or a rotated one (stdout.1).
    #[arg(long, conflicts_with = "stderr")]
    path: Option<String>,
    /// Start at this byte (default: the start of the file).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Keep printing what the task writes until it has ended.
    #[arg(short = 'f', long)]
    follow: bool,
}

/// `corral workloads serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The master: host:port[,host:port...] or zk://host:port/path.
    #[arg(long, env = "MESOS_MASTER")]
    master: String,
    /// Where the REST API listens.
    #[arg(long, default_value = "127.0.0.1:7099")]
    listen: std::net::SocketAddr,
    /// Directory of the embedded state store (requests, deploys, the
    /// FrameworkID); in memory when absent. Ignored with --zk.
    #[arg(long = "state_dir")]
    state_dir: Option<PathBuf>,
    /// The role the framework's tasks run as.
    #[arg(long, default_value = "*")]
    role: String,
    /// The principal the framework registers with.
    #[arg(long)]
    principal: Option<String>,
    /// The framework's name.
    #[arg(long, default_value = "corral-workloads")]
    name: String,
    /// zk://host:port/path: keep the state in ZooKeeper and elect a leader
    /// among instances started with the same value (the others redirect
    /// API calls to it and take over when it dies).
    #[arg(long)]
    zk: Option<String>,
    /// Failures of a service within --cooldown_window that put it in
    /// cooldown.
    #[arg(long = "cooldown_after_failures", default_value_t = 3)]
    cooldown_after_failures: usize,
    /// The window failures are counted in (Mesos duration: 10mins).
    #[arg(long = "cooldown_window", default_value = "10mins", value_parser = duration)]
    cooldown_window: std::time::Duration,
    /// Wait between replacements of a service in cooldown, and the
    /// largest backoff.
    #[arg(long = "cooldown_delay", default_value = "1mins", value_parser = duration)]
    cooldown_delay: std::time::Duration,
    /// Failures in cooldown after which the service is paused.
    #[arg(long = "pause_after_cooldown_failures", default_value_t = 3)]
    pause_after_cooldown_failures: u32,
    /// Run HAProxy (this binary, e.g. /usr/sbin/haproxy) and route
    /// load-balanced SERVICE requests through it by serviceBasePath; the
    /// framework writes its configuration and reloads it.
    #[arg(long)]
    haproxy: Option<PathBuf>,
    /// Where HAProxy's configuration, pid file and sockets go.
    #[arg(long = "haproxy_dir", default_value = "/var/lib/corral/haproxy")]
    haproxy_dir: PathBuf,
    /// The address HAProxy's HTTP frontend binds.
    #[arg(long = "haproxy_bind", default_value = "0.0.0.0:8080")]
    haproxy_bind: String,
    /// How long a load-balanced instance stays out of rotation before it is
    /// killed, for its connections to finish (Mesos duration).
    #[arg(long = "load_balancer_drain", default_value = "2secs", value_parser = duration)]
    load_balancer_drain: std::time::Duration,
    /// The agents' --task_log_archive (file:///dir, /dir, or hdfs://...):
    /// finished tasks' logs are read from it once their agent no longer
    /// has them.
    #[arg(long = "task_log_archive")]
    task_log_archive: Option<String>,
}

/// A Mesos duration flag (`5secs`, `2mins`).
pub(crate) fn duration(text: &str) -> Result<std::time::Duration, String> {
    corral_api::stout::parse_duration(text).map_err(|e| e.to_string())
}

/// Where the framework's API is, and how to print.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// The framework's API.
    #[arg(
        long,
        env = "CORRAL_WORKLOADS",
        default_value = "http://127.0.0.1:7099"
    )]
    api: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A command on one request.
#[derive(clap::Args)]
pub struct IdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The request.
    id: String,
}

/// A command reading a document.
#[derive(clap::Args)]
pub struct FileArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The document: JSON, or YAML (by its `.yaml`/`.yml` name); `-` for
    /// standard input (JSON).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
}

/// Runs a client command (`serve` is run by main).
pub async fn run(cmd: WorkloadsCommand) -> Result<()> {
    let http = reqwest::Client::new();
    match cmd {
        WorkloadsCommand::Serve(args) => {
            let config = corral_workloads::server::Config {
                master: args.master,
                listen: args.listen,
                state_dir: args.state_dir,
                role: args.role,
                principal: args.principal,
                name: args.name,
                zk: args.zk,
                failures: corral_workloads::services::FailurePolicy {
                    cooldown_after: args.cooldown_after_failures.max(1),
                    window: jiff::SignedDuration::try_from(args.cooldown_window)
                        .context("--cooldown_window is too long")?,
                    cooldown_delay: jiff::SignedDuration::try_from(args.cooldown_delay)
                        .context("--cooldown_delay is too long")?,
                    pause_after: args.pause_after_cooldown_failures.max(1),
                },
                load_balancer: args
                    .haproxy
                    .map(|bin| corral_workloads::server::LoadBalancer {
                        haproxy: corral_workloads::lb::LbConfig {
                            bin,
                            dir: args.haproxy_dir,
                            bind: args.haproxy_bind,
                        },
                        drain: args.load_balancer_drain,
                    }),
                task_log_archive: args.task_log_archive,
            };
            corral_workloads::server::run(config)
                .await
                .context("the workloads framework failed")
        }
        WorkloadsCommand::Create(a) => {
            let doc = read_document(&a.file)?;
            let v = call(
                &http,
                &a.client,
                reqwest::Method::POST,
                "/api/requests",
                Some(doc),
            )
            .await?;
            print_requests(&a.client, &Value::Array(vec![v]))
        }
        WorkloadsCommand::Deploy(a) => {
            let mut doc = read_document(&a.file)?;
            if doc.get("deploy").is_none() {
                doc = serde_json::json!({ "deploy": doc });
            }
            let v = call(
                &http,
                &a.client,
                reqwest::Method::POST,
                "/api/deploys",
                Some(doc),
            )
            .await?;
            print_requests(&a.client, &Value::Array(vec![v]))
        }
        WorkloadsCommand::List(c) => {
            let v = call(&http, &c, reqwest::Method::GET, "/api/requests", None).await?;
            print_requests(&c, &v)
        }
        WorkloadsCommand::Tasks(c) => {
            let v = call(&http, &c, reqwest::Method::GET, "/api/tasks/active", None).await?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    vec![
                        text(&t["taskId"]["id"]),
                        text(&t["taskId"]["requestId"]),
                        text(&t["taskId"]["deployId"]),
                        text(&t["taskId"]["host"]),
                        t["ports"]
                            .as_array()
                            .map(|p| p.iter().map(text).collect::<Vec<_>>().join(","))
                            .unwrap_or_default(),
                        match &t["healthy"] {
                            Value::Bool(true) => "yes".into(),
                            Value::Bool(false) => "no".into(),
                            _ => "-".into(),
                        },
                    ]
                })
                .collect();
            print_table(
                &["TASK", "REQUEST", "DEPLOY", "HOST", "PORTS", "HEALTHY"],
                &rows,
            );
            Ok(())
        }
        WorkloadsCommand::Scale {
            client,
            id,
            instances,
        } => {
            let v = call(
                &http,
                &client,
                reqwest::Method::PUT,
                &format!("/api/requests/request/{id}/scale"),
                Some(serde_json::json!({ "instances": instances })),
            )
            .await?;
            print_requests(&client, &Value::Array(vec![v]))
        }
        WorkloadsCommand::Run(a) => {
            let v = call(
                &http,
                &a.client,
                reqwest::Method::POST,
                &format!("/api/requests/request/{}/run", a.id),
                Some(serde_json::json!({})),
            )
            .await?;
            if a.client.json {
                return print_json(&v);
            }
            println!("started run {} of {}", text(&v["runId"]), a.id);
            Ok(())
        }
        WorkloadsCommand::Pause(a) => {
            let path = format!("/api/requests/request/{}/pause", a.id);
            let v = call(&http, &a.client, reqwest::Method::POST, &path, None).await?;
            print_requests(&a.client, &Value::Array(vec![v]))
        }
        WorkloadsCommand::Unpause(a) => {
            let path = format!("/api/requests/request/{}/unpause", a.id);
            let v = call(&http, &a.client, reqwest::Method::POST, &path, None).await?;
            print_requests(&a.client, &Value::Array(vec![v]))
        }
        WorkloadsCommand::Delete(a) => {
            let path = format!("/api/requests/request/{}", a.id);
            let v = call(&http, &a.client, reqwest::Method::DELETE, &path, None).await?;
            if a.client.json {
                return print_json(&v);
            }
            println!("deleted {}", a.id);
            Ok(())
        }
        WorkloadsCommand::Logs(a) => logs(&http, a).await,
        WorkloadsCommand::History(a) => {
            let parent = call(
                &http,
                &a.client,
                reqwest::Method::GET,
                &format!("/api/requests/request/{}", a.id),
                None,
            )
            .await?;
            let long_running = matches!(
                parent["request"]["requestType"].as_str(),
                Some("SERVICE" | "WORKER")
            );
            if long_running {
                let path = format!("/api/history/request/{}/tasks", a.id);
                let v = call(&http, &a.client, reqwest::Method::GET, &path, None).await?;
                if a.client.json {
                    return print_json(&v);
                }
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            text(&t["taskId"]),
                            text(&t["deployId"]),
                            text(&t["host"]),
                            text(&t["lastTaskState"]),
                            millis(&t["launchedAt"]),
                            millis(&t["updatedAt"]),
                            if t["killedByFramework"] == true {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "TASK",
                        "DEPLOY",
                        "HOST",
                        "STATE",
                        "LAUNCHED",
                        "ENDED",
                        "KILLED BY US",
                    ],
                    &rows,
                );
                return Ok(());
            }
            let path = format!("/api/history/request/{}/runs", a.id);
            let v = call(&http, &a.client, reqwest::Method::GET, &path, None).await?;
            if a.client.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        text(&r["runId"]),
                        millis(&r["scheduledFor"]),
                        text(&r["attempt"]),
                        text(&r["outcome"]),
                        r["durationMillis"]
                            .as_i64()
                            .map(|d| format!("{:.1}s", d as f64 / 1000.0))
                            .unwrap_or_else(|| "-".into()),
                        text(&r["reason"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "RUN",
                    "SCHEDULED FOR",
                    "ATTEMPT",
                    "OUTCOME",
                    "DURATION",
                    "REASON",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

fn read_document(path: &PathBuf) -> Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("--file {}: cannot read it", path.display()))?
    };
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    if yaml {
        serde_yaml::from_str(&text)
            .with_context(|| format!("--file {}: not a YAML document", path.display()))
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("--file {}: not a JSON document", path.display()))
    }
}

/// Prints a task's log; with `--follow`, keeps reading until the task has
/// ended and nothing more comes.
async fn logs(http: &reqwest::Client, a: LogsArgs) -> Result<()> {
    use std::io::Write;
    let file = match (&a.path, a.stderr) {
        (Some(p), _) => p.clone(),
        (None, true) => "stderr".into(),
        (None, false) => "stdout".into(),
    };
    let mut offset = a.offset;
    let mut out = std::io::stdout().lock();
    loop {
        let path = format!(
            "/api/sandbox/{}/read?path={file}&offset={offset}&length=1048576",
            a.task_id
        );
        let chunk = call(http, &a.client, reqwest::Method::GET, &path, None).await?;
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
        let ended = chunk["source"] == "archive"
            || chunk["taskState"].as_str().is_some_and(|s| {
                !matches!(
                    s,
                    "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING"
                )
            });
        if !a.follow || ended {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
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
        &client.api,
        "the workloads framework (is `corral workloads serve` running? set --api or CORRAL_WORKLOADS)",
        method,
        path,
        body,
    )
    .await
}

/// Calls a framework's API at `base`: the answer's JSON (or its text), or
/// an error with the status and message; `what` says what to check when it
/// cannot be reached.
pub(crate) async fn call_api(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut request = http.request(method, &url);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {what} at {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {}", text.trim());
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn millis(v: &Value) -> String {
    v.as_i64()
        .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| text(v))
}

pub(crate) fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_requests(client: &ClientArgs, v: &Value) -> Result<()> {
    if client.json {
        return print_json(v);
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["request"]["id"]),
                text(&r["request"]["requestType"]),
                text(&r["state"]),
                text(&r["request"]["instances"]),
                text(&r["activeDeploy"]["id"]),
                text(&r["pendingDeployState"]["deployMarker"]["deployId"]),
                millis(&r["nextRunAt"]),
                text(
                    r.get("stateReason")
                        .or_else(|| r.get("pendingReason"))
                        .unwrap_or(&Value::Null),
                ),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "TYPE",
            "STATE",
            "INSTANCES",
            "DEPLOY",
            "PENDING",
            "NEXT RUN",
            "REASON",
        ],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::millis;

    #[test]
    fn epoch_milliseconds_print_as_utc_times() {
        assert_eq!(millis(&serde_json::json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(millis(&serde_json::json!(null)), "-");
    }
}

//! `corral yarn-bridge` runs the YARN bridge; `corral yarn ...` are clients
//! of its REST API (Myriad's): `flexup`, `flexdown`, `status`, `profiles`,
//! `autoscaler` (tables, or the JSON answers with `--json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::table::print_table;
use crate::workloads::{call_api, duration, print_json, text};

/// `corral yarn-bridge`.
#[derive(clap::Args)]
pub struct BridgeArgs {
    /// The master: host:port[,host:port...] or zk://host:port/path.
    #[arg(long, env = "MESOS_MASTER")]
    master: String,
    /// Where the REST API (Myriad's) listens.
    #[arg(long, default_value = "127.0.0.1:8192")]
    listen: std::net::SocketAddr,
    /// Directory of the embedded state store (the NodeManagers, the
    /// FrameworkID); in memory when absent. Ignored with --zk.
    #[arg(long = "state_dir")]
    state_dir: Option<PathBuf>,
    /// zk://host:port/path: keep the state in ZooKeeper and elect a leader
    /// among instances started with the same value.
    #[arg(long)]
    zk: Option<String>,
    /// The role NodeManagers run as (give it a quota or a reservation).
    #[arg(long, default_value = "yarn")]
    role: String,
    /// The principal the bridge registers with.
    #[arg(long)]
    principal: Option<String>,
    /// The framework's name.
    #[arg(long, default_value = "corral-yarn-bridge")]
    name: String,
    /// The ResourceManager's web address.
    #[arg(
        long,
        env = "YARN_RESOURCEMANAGER",
        default_value = "http://127.0.0.1:8088"
    )]
    resourcemanager: String,
    /// Hadoop installed on every agent: its YARN_HOME.
    #[arg(long = "yarn_home", env = "YARN_HOME")]
    yarn_home: Option<String>,
    /// Hadoop as a tarball the agents fetch (http, hdfs or file URI);
    /// --yarn_tarball_home names the directory it holds.
    #[arg(long = "yarn_tarball", conflicts_with = "yarn_docker_image")]
    yarn_tarball: Option<String>,
    /// The directory the tarball extracts to (hadoop-3.4.1).
    #[arg(long = "yarn_tarball_home", requires = "yarn_tarball")]
    yarn_tarball_home: Option<String>,
    /// Hadoop as a Docker image (apache/hadoop:3).
    #[arg(long = "yarn_docker_image")]
    yarn_docker_image: Option<String>,
    /// YARN_HOME inside the image.
    #[arg(long = "yarn_docker_home", default_value = "/opt/hadoop")]
    yarn_docker_home: String,
    /// The user's yarn-site.xml: kept under the bridge's own properties in
    /// every NodeManager's configuration.
    #[arg(long = "yarn_site")]
    yarn_site: Option<PathBuf>,
    /// The `yarn` command on this host, for `yarn rmadmin` (default:
    /// $YARN_HOME/bin/yarn, else `yarn` on the PATH).
    #[arg(long = "yarn_admin_command")]
    yarn_admin_command: Option<PathBuf>,
    /// The ResourceManager's exclude file
    /// (yarn.resourcemanager.nodes.exclude-path): the bridge writes the
    /// hosts it decommissions there.
    #[arg(long = "exclude_file")]
    exclude_file: Option<PathBuf>,
    /// Where the bridge writes its own files (rmadmin's configuration, and
    /// the exclude file unless --exclude_file is given).
    #[arg(long = "work_dir", default_value = "/var/lib/corral/yarn-bridge")]
    work_dir: PathBuf,
    /// Profiles replacing or adding to Myriad's defaults, as JSON (or a
    /// file of it): {"huge": {"cpu": 16, "mem": 65536}}.
    #[arg(long)]
    profiles: Option<String>,
    /// The NodeManager JVM's heap, MB, added to every profile's task.
    #[arg(long = "nodemanager_jvm_max_memory_mb", default_value_t = 1024.0)]
    nodemanager_jvm_max_memory_mb: f64,
    /// The NodeManager's own CPU, added to every profile's task.
    #[arg(long = "nodemanager_cpus", default_value_t = 0.2)]
    nodemanager_cpus: f64,
    /// Allow several NodeManagers on one host (each on its own ports).
    #[arg(long = "multiple_nodemanagers_per_host")]
    multiple_nodemanagers_per_host: bool,
    /// How long YARN has to drain a node being flexed down (Mesos
    /// duration).
    #[arg(long = "decommission_timeout", default_value = "5mins", value_parser = duration)]
    decommission_timeout: std::time::Duration,
    /// Autoscaling policies as JSON (or a file of it): [{"profile":
    /// "medium", "min": 1, "max": 20, "scaleUpFactor": 1.0,
    /// "scaleDownFactor": 1.0, "scaleUpCooldownSecs": 60,
    /// "scaleDownCooldownSecs": 300, "idleBeforeScaleDownSecs": 600}].
    #[arg(long)]
    autoscale: Option<String>,
    /// How often the ResourceManager is read.
    #[arg(long = "rm_poll_interval", default_value = "2secs", value_parser = duration)]
    rm_poll_interval: std::time::Duration,
    /// How long offers are held for fine-grained scaling (zero-profile
    /// NodeManagers) before they go back.
    #[arg(long = "fgs_hold", default_value = "30secs", value_parser = duration)]
    fgs_hold: std::time::Duration,
    /// Extra environment of every NodeManager (NAME=value, repeated).
    #[arg(long = "nodemanager_env")]
    nodemanager_env: Vec<String>,
}

/// Inline JSON, or the name of a file holding it.
fn json_or_file(flag: &str, value: &str) -> Result<Value> {
    let text = if value.trim_start().starts_with(['{', '[']) {
        value.to_string()
    } else {
        std::fs::read_to_string(value).with_context(|| format!("--{flag}: cannot read {value}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("--{flag}: not JSON"))
}

/// Runs the bridge.
pub async fn serve(a: BridgeArgs) -> Result<()> {
    use corral_yarn_bridge::{autoscaler::Policy, nmconfig, nmtask, profiles, rm, server};
    let profiles_given: BTreeMap<String, profiles::Profile> = match &a.profiles {
        Some(v) => serde_json::from_value(json_or_file("profiles", v)?)
            .context("--profiles: expected {\"name\": {\"cpu\": n, \"mem\": mb}}")?,
        None => BTreeMap::new(),
    };
    let profiles = profiles::Profiles::new(
        profiles_given,
        profiles::Overhead {
            jvm_max_memory_mb: a.nodemanager_jvm_max_memory_mb,
            cpus: a.nodemanager_cpus,
        },
    )
    .context("--profiles")?;
    let autoscale: Vec<Policy> = match &a.autoscale {
        Some(v) => serde_json::from_value(json_or_file("autoscale", v)?)
            .context("--autoscale: expected a list of policies")?,
        None => Vec::new(),
    };
    for p in &autoscale {
        p.validate()
            .map_err(|e| anyhow::anyhow!("--autoscale: {}: {e}", p.profile))?;
        profiles
            .get(&p.profile)
            .map_err(|e| anyhow::anyhow!("--autoscale: {e}"))?;
    }
    let hadoop = match (&a.yarn_tarball, &a.yarn_docker_image, &a.yarn_home) {
        (Some(uri), _, _) => nmtask::Hadoop::Tarball {
            uri: uri.clone(),
            home: a.yarn_tarball_home.clone().context(
                "--yarn_tarball_home: required with --yarn_tarball (the directory the tarball holds)",
            )?,
        },
        (None, Some(image), _) => nmtask::Hadoop::Docker {
            image: image.clone(),
            home: a.yarn_docker_home.clone(),
        },
        (None, None, Some(home)) => nmtask::Hadoop::Home(home.clone()),
        (None, None, None) => bail!(
            "--yarn_home, --yarn_tarball or --yarn_docker_image: say where Hadoop comes from"
        ),
    };
    let user_site = match &a.yarn_site {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--yarn_site: cannot read {}", path.display()))?;
            nmconfig::parse_site(&text)
                .with_context(|| format!("--yarn_site {}", path.display()))?
        }
        None => Vec::new(),
    };
    let rm_url = reqwest::Url::parse(&a.resourcemanager)
        .with_context(|| format!("--resourcemanager: not a URL: {}", a.resourcemanager))?;
    let rm_host = rm_url
        .host_str()
        .context("--resourcemanager: the URL has no host")?
        .to_string();
    let rm_port = rm_url.port_or_known_default().unwrap_or(8088);
    let rm_webapp = format!("{rm_host}:{rm_port}");
    let mut env = Vec::new();
    for e in &a.nodemanager_env {
        let (k, v) = e
            .split_once('=')
            .with_context(|| format!("--nodemanager_env: {e:?} is not NAME=value"))?;
        env.push((k.to_string(), v.to_string()));
    }
    // rmadmin's configuration: the user's site with the RM's address.
    let conf_dir = a.work_dir.join("rmadmin-conf");
    std::fs::create_dir_all(&conf_dir)
        .with_context(|| format!("--work_dir: cannot create {}", conf_dir.display()))?;
    let admin_props: BTreeMap<String, String> = [
        ("yarn.resourcemanager.hostname".to_string(), rm_host.clone()),
        (
            "yarn.resourcemanager.webapp.address".to_string(),
            rm_webapp.clone(),
        ),
    ]
    .into();
    let (site, _) = nmconfig::merged_site(&user_site, &admin_props);
    std::fs::write(conf_dir.join("yarn-site.xml"), site)
        .with_context(|| format!("--work_dir: cannot write {}", conf_dir.display()))?;
    let yarn_cmd = a
        .yarn_admin_command
        .clone()
        .unwrap_or_else(|| match &a.yarn_home {
            Some(home) => PathBuf::from(home).join("bin/yarn"),
            None => PathBuf::from("yarn"),
        });
    let config = server::Config {
        master: a.master,
        listen: a.listen,
        state_dir: a.state_dir,
        zk: a.zk,
        role: a.role,
        principal: a.principal,
        name: a.name,
        rm: a.resourcemanager.trim_end_matches('/').to_string(),
        admin: rm::Admin {
            yarn: yarn_cmd,
            conf_dir,
            exclude_file: a
                .exclude_file
                .unwrap_or_else(|| a.work_dir.join("yarn.exclude")),
        },
        setup: nmtask::NmSetup {
            hadoop,
            rm_host,
            rm_webapp: (rm_port != 8088).then_some(rm_webapp),
            user_site,
            env,
        },
        profiles,
        one_per_host: !a.multiple_nodemanagers_per_host,
        decommission_timeout_secs: a.decommission_timeout.as_secs(),
        autoscale,
        rm_poll: a
            .rm_poll_interval
            .max(std::time::Duration::from_millis(100)),
        fgs_hold: a.fgs_hold,
    };
    server::run(config).await.context("the yarn bridge failed")
}

/// `corral yarn ...`: clients of the bridge's API.
#[derive(clap::Subcommand)]
pub enum YarnCommand {
    /// Add NodeManagers (Myriad's flexup).
    Flexup(FlexArgs),
    /// Remove NodeManagers gracefully (Myriad's flexdown): YARN drains
    /// them before their tasks are killed.
    Flexdown(FlexArgs),
    /// The NodeManagers: phase, host, YARN's view, why pending.
    Status(ClientArgs),
    /// The profiles and what a NodeManager of each takes.
    Profiles(ClientArgs),
    /// The autoscaler's policies and its latest decisions.
    Autoscaler(ClientArgs),
}

/// Where the bridge's API is, and how to print.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// The bridge's API.
    #[arg(
        long,
        env = "CORRAL_YARN_BRIDGE",
        default_value = "http://127.0.0.1:8192"
    )]
    api: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `corral yarn flexup|flexdown`.
#[derive(clap::Args)]
pub struct FlexArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// How many NodeManagers.
    #[arg(short = 'n', long)]
    instances: i64,
    /// Their profile (required for flexup).
    #[arg(short = 'p', long)]
    profile: Option<String>,
    /// `hostname LIKE <regex>` (or an attribute), repeated.
    #[arg(short = 'c', long = "constraint")]
    constraints: Vec<String>,
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
        "the yarn bridge (is `corral yarn-bridge` running? set --api or CORRAL_YARN_BRIDGE)",
        method,
        path,
        body,
    )
    .await
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => text(v),
    }
}

/// Runs a client command.
pub async fn run(cmd: YarnCommand) -> Result<()> {
    let http = reqwest::Client::new();
    match cmd {
        YarnCommand::Flexup(a) | YarnCommand::Flexdown(a) if a.instances <= 0 => {
            bail!("--instances: must be 1 or more, not {}", a.instances)
        }
        YarnCommand::Flexup(a) => {
            let Some(profile) = a.profile.clone() else {
                bail!("--profile: required for flexup (see `corral yarn profiles`)");
            };
            let body =
                json!({"instances": a.instances, "profile": profile, "constraints": a.constraints});
            let v = call(
                &http,
                &a.client,
                reqwest::Method::PUT,
                "/api/cluster/flexup",
                Some(body),
            )
            .await?;
            if a.client.json {
                return print_json(&v);
            }
            println!(
                "flex up accepted: {} NodeManager(s) of profile {profile}",
                a.instances
            );
            let rows: Vec<Vec<String>> = v["taskIds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| vec![text(id)])
                .collect();
            print_table(&["TASK"], &rows);
            Ok(())
        }
        YarnCommand::Flexdown(a) => {
            let mut body = json!({"instances": a.instances, "constraints": a.constraints});
            if let Some(p) = &a.profile {
                body["profile"] = json!(p);
            }
            let v = call(
                &http,
                &a.client,
                reqwest::Method::PUT,
                "/api/cluster/flexdown",
                Some(body),
            )
            .await?;
            if a.client.json {
                return print_json(&v);
            }
            println!(
                "flex down accepted: {} NodeManager(s); YARN decommissions these gracefully first:",
                a.instances
            );
            let rows: Vec<Vec<String>> = v["decommissioning"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| vec![text(h)])
                .collect();
            print_table(&["HOST"], &rows);
            Ok(())
        }
        YarnCommand::Status(c) => {
            let v = call(&http, &c, reqwest::Method::GET, "/api/nodemanagers", None).await?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["nodemanagers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    vec![
                        text(&n["taskId"]),
                        text(&n["profile"]),
                        text(&n["phase"]),
                        text(&n["hostname"]),
                        text(&n["ports"]["rpc"]),
                        text(&n["yarnState"]),
                        text(&n["yarnContainers"]),
                        text(&n["whyPending"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TASK",
                    "PROFILE",
                    "PHASE",
                    "HOST",
                    "RPC PORT",
                    "YARN STATE",
                    "CONTAINERS",
                    "WHY PENDING",
                ],
                &rows,
            );
            let m = &v["yarn"]["metrics"];
            if !m.is_null() {
                println!();
                print_table(
                    &[
                        "ACTIVE NODES",
                        "PENDING MB",
                        "PENDING CONTAINERS",
                        "AVAILABLE MB",
                        "ALLOCATED MB",
                    ],
                    &[vec![
                        num(&m["activeNodes"]),
                        num(&m["pendingMB"]),
                        num(&m["containersPending"]),
                        num(&m["availableMB"]),
                        num(&m["allocatedMB"]),
                    ]],
                );
            }
            for e in v["yarn"]["errors"].as_array().into_iter().flatten() {
                eprintln!("warning: yarn not read: {}", text(e));
            }
            Ok(())
        }
        YarnCommand::Profiles(c) => {
            let v = call(&http, &c, reqwest::Method::GET, "/api/profiles", None).await?;
            if c.json {
                return print_json(&v);
            }
            let oc = v["nodemanager"]["cpus"].as_f64().unwrap_or(0.0);
            let om = v["nodemanager"]["jvmMaxMemoryMB"].as_f64().unwrap_or(0.0);
            let rows: Vec<Vec<String>> = v["profiles"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, p)| {
                    let cpu = p["cpu"].as_f64().unwrap_or(0.0);
                    let mem = p["mem"].as_f64().unwrap_or(0.0);
                    vec![
                        name.clone(),
                        num(&json!(cpu)),
                        num(&json!(mem)),
                        num(&json!(((cpu + oc) * 100.0).round() / 100.0)),
                        num(&json!(mem + om)),
                    ]
                })
                .collect();
            print_table(
                &["PROFILE", "VCORES", "MEMORY MB", "TASK CPUS", "TASK MEM MB"],
                &rows,
            );
            Ok(())
        }
        YarnCommand::Autoscaler(c) => {
            let v = call(&http, &c, reqwest::Method::GET, "/api/autoscaler", None).await?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["decisions"]
                .as_array()
                .into_iter()
                .flatten()
                .take(20)
                .map(|d| {
                    vec![
                        crate::workloads::millis(&d["atMs"]),
                        text(&d["profile"]),
                        text(&d["action"]),
                        text(&d["instances"]),
                        text(&d["reason"]),
                    ]
                })
                .collect();
            print_table(&["AT", "PROFILE", "ACTION", "INSTANCES", "REASON"], &rows);
            Ok(())
        }
    }
}

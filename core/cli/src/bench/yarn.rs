//! `corral bench yarn`: the YARN bridge end to end on real processes — a
//! `corral master`, `--agents` real `corral agent`s and `corral
//! yarn-bridge` — with YARN played by the project's test doubles (the
//! ResourceManager stand-in and the `yarn` command stand-in of
//! `tests/yarn`; no Hadoop distribution can be downloaded here).
//!
//! * **flexup**: one Myriad flex up of `--nodemanagers` NodeManagers
//!   (profile `bench`: 1 vcore, 512 MB, several per agent); timed until
//!   the bridge reports every one active (task RUNNING) and until the
//!   ResourceManager has every one registered.
//! * **autoscale**: an application with `--containers` pending containers
//!   of 1 GB is submitted to the ResourceManager; the autoscaler (profile
//!   `auto`: 2 vcores, 2 GB, no cooldown) flexes up. Timed from the
//!   submission to the autoscaler's decision, to the first new NodeManager
//!   registered in the RM (its reaction time), and to no memory pending.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::containers::{spawn, spawn_master, Daemon};
use super::wait_until;

/// Options of `corral bench yarn`.
#[derive(clap::Args)]
pub struct Args {
    /// NodeManagers of the flex up.
    #[arg(long, default_value_t = 100)]
    pub nodemanagers: usize,
    /// Real agents they are spread over.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Pending 1 GB containers of the autoscaling phase (0 skips it).
    #[arg(long, default_value_t = 8)]
    pub containers: usize,
    /// The stand-ins' directory (`tests/yarn` of the source tree).
    #[arg(long = "standin_dir", default_value = "tests/yarn")]
    pub standin_dir: PathBuf,
    /// First loopback port used (master; agents, RM and bridge follow).
    #[arg(long, default_value_t = 17050)]
    pub port: u16,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    match http.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn count(v: &Value, list: &str) -> usize {
    v[list].as_array().map(Vec::len).unwrap_or(0)
}

async fn rm_nodes_running(http: &reqwest::Client, rm: &str, profile_mb: u64) -> usize {
    get(http, &format!("{rm}/ws/v1/cluster/nodes")).await["nodes"]["node"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["state"] == "RUNNING" && n["totalResource"]["memory"] == profile_mb)
        .count()
}

pub async fn run(args: Args) -> Result<()> {
    if args.agents == 0 || args.nodemanagers == 0 {
        bail!("--agents and --nodemanagers must be at least 1");
    }
    let standin = std::fs::canonicalize(&args.standin_dir).with_context(|| {
        format!(
            "--standin_dir: {} not found (run from the source tree, or give tests/yarn's path)",
            args.standin_dir.display()
        )
    })?;
    let exe = std::env::current_exe().context("cannot find the corral binary")?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("corral-bench-yarn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let master_addr = format!("127.0.0.1:{}", args.port);
    let mut daemons: Vec<Daemon> = vec![spawn_master(&exe, args.port, &dir)?];
    let per_agent = args.nodemanagers.div_ceil(args.agents) + args.containers;
    for i in 0..args.agents {
        let port = args.port + 1 + i as u16;
        let lo = 20000 + i * 1000;
        daemons.push(spawn(
            &exe,
            &[
                "agent".to_string(),
                format!("--master={master_addr}"),
                "--ip=127.0.0.1".into(),
                format!("--port={port}"),
                format!("--hostname=bench-node-{i}"),
                format!("--work_dir={}", dir.join(format!("agent-{i}")).display()),
                format!(
                    "--resources=cpus:{};mem:{};disk:1000;ports:[{lo}-{}]",
                    per_agent * 3,
                    per_agent * 3000,
                    lo + 4 * per_agent + 50
                ),
                "--executor_shutdown_grace_period=2secs".into(),
            ],
            &dir.join(format!("agent-{i}.log")),
        )?);
    }
    let rm_port = args.port + 1 + args.agents as u16;
    let rm = format!("http://127.0.0.1:{rm_port}");
    let rm_log = std::fs::File::create(dir.join("rm-standin.log"))?;
    let rm_child = tokio::process::Command::new("python3")
        .arg(standin.join("rm_standin.py"))
        .args(["--port", &rm_port.to_string()])
        .arg("--exclude-file")
        .arg(dir.join("yarn.exclude"))
        .stdout(rm_log.try_clone()?)
        .stderr(rm_log)
        .kill_on_drop(true)
        .spawn()
        .context("python3 runs the ResourceManager stand-in")?;
    let api_port = rm_port + 1;
    let api = format!("http://127.0.0.1:{api_port}");
    let policy = json!([{"profile": "auto", "min": 0, "max": args.containers.max(1),
        "scaleUpFactor": 1.0, "scaleDownFactor": 0.0, "scaleUpCooldownSecs": 0,
        "scaleDownCooldownSecs": 3600, "idleBeforeScaleDownSecs": 3600}]);
    daemons.push(spawn(
        &exe,
        &[
            "yarn-bridge".into(),
            format!("--master={master_addr}"),
            format!("--listen=127.0.0.1:{api_port}"),
            format!("--resourcemanager={rm}"),
            format!("--yarn_home={}", standin.join("home").display()),
            format!("--work_dir={}", dir.join("bridge").display()),
            format!("--exclude_file={}", dir.join("yarn.exclude").display()),
            r#"--profiles={"bench": {"cpu": 1, "mem": 512}, "auto": {"cpu": 2, "mem": 2048}}"#
                .into(),
            "--nodemanager_cpus=0.05".into(),
            "--nodemanager_jvm_max_memory_mb=64".into(),
            "--multiple_nodemanagers_per_host".into(),
            "--rm_poll_interval=200ms".into(),
            format!("--autoscale={policy}"),
        ],
        &dir.join("yarn-bridge.log"),
    )?);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let result = async {
        wait_until("the bridge subscribes", Duration::from_secs(60), || async {
            get(&http, &format!("{api}/api/nodemanagers")).await["subscribed"] == true
        })
        .await?;
        wait_until("the agents register", Duration::from_secs(60), || async {
            get(&http, &format!("http://{master_addr}/metrics/snapshot")).await
                ["master/slaves_active"]
                .as_f64()
                >= Some(args.agents as f64)
        })
        .await?;
        let mut lines = Vec::new();
        // Flex up.
        let n = args.nodemanagers;
        eprintln!("[bench] flexing up {n} NodeManagers");
        let r = http
            .put(format!("{api}/api/cluster/flexup"))
            .json(&json!({"instances": n, "profile": "bench"}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("flexup: {}: {}", r.status(), r.text().await.unwrap_or_default());
        }
        let last = std::sync::Mutex::new(Instant::now());
        let active = wait_until("every NodeManager active", timeout, || async {
            let s = get(&http, &format!("{api}/api/state")).await;
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "[bench] pending {} staging {} active {}",
                    count(&s, "pendingTasks"),
                    count(&s, "stagingTasks"),
                    count(&s, "activeTasks")
                );
                *last = Instant::now();
            }
            count(&s, "activeTasks") == n
        })
        .await?;
        let registered = wait_until("every NodeManager registered", timeout, || async {
            rm_nodes_running(&http, &rm, 512).await == n
        })
        .await?;
        lines.push(json!({
            "phase": "flexup", "nodemanagers": n, "agents": args.agents,
            "all_running_s": active.as_secs_f64(),
            "all_registered_s": (active + registered).as_secs_f64(),
        }));
        // Autoscaling.
        if args.containers > 0 {
            eprintln!("[bench] submitting {} pending containers", args.containers);
            let start = Instant::now();
            let r = http
                .post(format!("{rm}/standin/apps"))
                .json(&json!({"name": "bench", "containers": args.containers, "memoryMB": 1024, "vcores": 1}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("submit: {}", r.status());
            }
            let submitted_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let decided = wait_until("the autoscaler decides", timeout, || async {
                get(&http, &format!("{api}/api/autoscaler")).await["decisions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d["action"] == "FLEX_UP" && d["atMs"].as_i64() >= Some(submitted_ms))
            })
            .await?;
            let first = wait_until("a new NodeManager registered", timeout, || async {
                rm_nodes_running(&http, &rm, 2048).await >= 1
            })
            .await?
                + decided;
            wait_until("no memory pending", timeout, || async {
                let m = get(&http, &format!("{rm}/ws/v1/cluster/metrics")).await;
                m["clusterMetrics"]["pendingMB"] == 0
                    && m["clusterMetrics"]["containersAllocated"].as_u64()
                        == Some(args.containers as u64)
            })
            .await?;
            let met = start.elapsed();
            lines.push(json!({
                "phase": "autoscale", "containers": args.containers,
                "decided_s": decided.as_secs_f64(),
                "first_registered_s": first.as_secs_f64(),
                "demand_met_s": met.as_secs_f64(),
                "nodemanagers_added": rm_nodes_running(&http, &rm, 2048).await,
            }));
        }
        // Tear the framework down: every task is killed.
        let _ = http
            .post(format!("{api}/api/framework/shutdown/framework"))
            .send()
            .await;
        let _ = wait_until("the tasks are killed", Duration::from_secs(120), || async {
            get(&http, &format!("http://{master_addr}/master/state")).await["frameworks"]
                .as_array()
                .is_some_and(|f| f.iter().all(|f| f["tasks"].as_array().is_none_or(Vec::is_empty)))
        })
        .await;
        Ok::<_, anyhow::Error>(lines)
    }
    .await;
    for d in daemons.into_iter().rev() {
        d.stop().await;
    }
    drop(rm_child);
    let lines = result.with_context(|| format!("logs in {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    for l in &lines {
        if args.json {
            println!("{l}");
        } else if l["phase"] == "flexup" {
            println!(
                "flexup    {} NodeManagers on {} agents: all RUNNING in {:.1} s, all registered in the RM in {:.1} s",
                l["nodemanagers"], l["agents"],
                l["all_running_s"].as_f64().unwrap_or(0.0),
                l["all_registered_s"].as_f64().unwrap_or(0.0)
            );
        } else {
            println!(
                "autoscale {} pending containers: decision in {:.2} s, first new NodeManager registered in {:.2} s, demand met in {:.2} s ({} NodeManagers added)",
                l["containers"],
                l["decided_s"].as_f64().unwrap_or(0.0),
                l["first_registered_s"].as_f64().unwrap_or(0.0),
                l["demand_met_s"].as_f64().unwrap_or(0.0),
                l["nodemanagers_added"]
            );
        }
    }
    Ok(())
}

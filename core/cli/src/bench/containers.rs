//! `corral bench containers`: container launch and destroy throughput on
//! one agent, the way Mesos measured its containerizer (1,000 launches in
//! about 30 s, 1,000 destroys in about 20 s).
//!
//! It starts a real master and one real agent (child processes of this
//! binary, in a temp work dir), subscribes a framework over the v1
//! scheduler API, launches N command tasks in one ACCEPT and times until
//! all are TASK_RUNNING (launch), then KILLs them all and times until all
//! are TASK_KILLED (destroy); then the same with M Docker tasks from the
//! local test image. Every update is acknowledged as it arrives.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_api::recordio;
use serde_json::{json, Value};

/// Options of `corral bench containers`.
#[derive(clap::Args)]
pub struct Args {
    /// Command tasks to launch and destroy (0 skips them).
    #[arg(long, default_value_t = 1000)]
    pub tasks: usize,
    /// Docker tasks to launch and destroy (0 skips them).
    #[arg(long, default_value_t = 100)]
    pub docker_tasks: usize,
    /// Docker image of the Docker tasks (built by
    /// scripts/docker-test-image.sh).
    #[arg(long, default_value = "corral/busybox:test")]
    pub image: String,
    /// The agent's --isolation (default: cgroups/cpu,cgroups/mem as root,
    /// else posix/cpu,posix/mem).
    #[arg(long)]
    pub isolation: Option<String>,
    /// First of the two loopback ports used (master, agent).
    #[arg(long, default_value_t = 15050)]
    pub port: u16,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) struct Daemon {
    child: tokio::process::Child,
}

impl Daemon {
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

pub(crate) fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<Daemon> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    let child = tokio::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .env("CORRAL_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", exe.display()))?;
    Ok(Daemon { child })
}

/// A `corral master` on 127.0.0.1:`port` with a short allocation
/// interval, logging to `<dir>/master.log`.
pub(crate) fn spawn_master(exe: &Path, port: u16, dir: &Path) -> Result<Daemon> {
    spawn(
        exe,
        &[
            "master".into(),
            "--ip=127.0.0.1".into(),
            format!("--port={port}"),
            "--hostname=127.0.0.1".into(),
            "--allocation_interval=100ms".into(),
        ],
        &dir.join("master.log"),
    )
}

/// A minimal v1 scheduler client (JSON).
struct Framework {
    http: reqwest::Client,
    url: String,
    stream_id: String,
    framework_id: Value,
    events: tokio::sync::mpsc::UnboundedReceiver<Value>,
    acks: tokio::sync::mpsc::UnboundedSender<Value>,
}

impl Framework {
    async fn subscribe(master: &str) -> Result<Framework> {
        let http = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("http://{master}/api/v1/scheduler");
        let call = json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": {"user": "root", "name": "bench-containers"}},
        });
        let resp = http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(call.to_string())
            .send()
            .await
            .context("SUBSCRIBE")?;
        if !resp.status().is_success() {
            bail!("SUBSCRIBE answered {}", resp.status());
        }
        let stream_id = resp
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .context("no Mesos-Stream-Id")?
            .to_string();
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut resp = resp;
            let mut dec = recordio::Decoder::new(64 << 20);
            while let Ok(Some(chunk)) = resp.chunk().await {
                dec.feed(&chunk);
                while let Ok(Some(rec)) = dec.next_record() {
                    if let Ok(v) = serde_json::from_slice::<Value>(&rec) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .context("no SUBSCRIBED")?
            .context("stream ended")?;
        let framework_id = first["subscribed"]["framework_id"].clone();
        // Acknowledgements go out from their own task, a few at a time.
        let (acks, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let (h, u, s) = (http.clone(), url.clone(), stream_id.clone());
        tokio::spawn(async move {
            let mut pending = tokio::task::JoinSet::new();
            while let Some(call) = ack_rx.recv().await {
                while pending.len() >= 64 {
                    let _ = pending.join_next().await;
                }
                let req = h
                    .post(&u)
                    .header("Content-Type", "application/json")
                    .header("Mesos-Stream-Id", &s)
                    .body(call.to_string())
                    .send();
                pending.spawn(async move {
                    let _ = req.await;
                });
            }
        });
        Ok(Framework {
            http,
            url,
            stream_id,
            framework_id,
            events,
            acks,
        })
    }

    async fn call(&self, mut call: Value) -> Result<()> {
        call["framework_id"] = self.framework_id.clone();
        let r = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Mesos-Stream-Id", &self.stream_id)
            .body(call.to_string())
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::ACCEPTED {
            bail!("{} answered {}", call["type"], r.status());
        }
        Ok(())
    }

    /// The next event; UPDATEs with a uuid are acknowledged on the way.
    async fn next(&mut self, deadline: Instant) -> Result<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, self.events.recv())
            .await
            .context("timed out")?
            .context("the event stream ended")?;
        if ev["type"] == "UPDATE" {
            let st = &ev["update"]["status"];
            if st.get("uuid").is_some() {
                let mut ack = json!({
                    "type": "ACKNOWLEDGE",
                    "acknowledge": {
                        "agent_id": st["agent_id"].clone(),
                        "task_id": st["task_id"].clone(),
                        "uuid": st["uuid"].clone(),
                    },
                });
                ack["framework_id"] = self.framework_id.clone();
                let _ = self.acks.send(ack);
            }
        }
        Ok(ev)
    }
}

fn task(id: &str, agent_id: &Value, docker_image: Option<&str>) -> Value {
    let mut t = json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": agent_id,
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 8.0}},
        ],
        "command": {"shell": true, "value": "exec sleep 3600"},
        "kill_policy": {"grace_period": {"nanoseconds": 2_000_000_000u64}},
    });
    if let Some(image) = docker_image {
        t["container"] = json!({
            "type": "DOCKER",
            // docker-init as PID 1 passes SIGTERM on to `sleep`.
            "docker": {"image": image, "network": "HOST",
                       "parameters": [{"key": "init", "value": "true"}]},
        });
    }
    t
}

/// Result of one phase pair.
struct Figures {
    kind: &'static str,
    tasks: usize,
    launch: Duration,
    destroy: Duration,
}

async fn run_phase(
    fw: &mut Framework,
    kind: &'static str,
    n: usize,
    docker_image: Option<&str>,
    timeout: Duration,
) -> Result<Figures> {
    // One offer with the whole agent.
    let deadline = Instant::now() + Duration::from_secs(60);
    let offer = loop {
        let ev = fw.next(deadline).await.context("waiting for an offer")?;
        if ev["type"] == "OFFERS" {
            if let Some(o) = ev["offers"]["offers"].get(0) {
                break o.clone();
            }
        }
    };
    let agent_id = offer["agent_id"].clone();
    let ids: Vec<String> = (0..n).map(|i| format!("{kind}-{i}")).collect();
    let tasks: Vec<Value> = ids
        .iter()
        .map(|id| task(id, &agent_id, docker_image))
        .collect();
    eprintln!("launching {n} {kind} tasks");
    let start = Instant::now();
    fw.call(json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer["id"].clone()],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
            "filters": {"refuse_seconds": 3600.0},
        }
    }))
    .await?;
    let deadline = Instant::now() + timeout;
    let mut running = HashSet::new();
    while running.len() < n {
        let ev = fw
            .next(deadline)
            .await
            .with_context(|| format!("{} of {n} {kind} tasks running", running.len()))?;
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = &ev["update"]["status"];
        let id = st["task_id"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match st["state"].as_str() {
            Some("TASK_RUNNING") => {
                running.insert(id);
            }
            Some("TASK_STARTING") => {}
            other => bail!("{kind} task {id} went to {other:?}: {}", st["message"]),
        }
    }
    let launch = start.elapsed();
    eprintln!(
        "{n} {kind} tasks running after {:.2}s; killing them",
        launch.as_secs_f64()
    );

    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for id in &ids {
        while calls.len() >= 32 {
            if let Some(r) = calls.join_next().await {
                r??;
            }
        }
        let req = fw
            .http
            .post(&fw.url)
            .header("Content-Type", "application/json")
            .header("Mesos-Stream-Id", &fw.stream_id)
            .body(
                json!({
                    "type": "KILL",
                    "framework_id": fw.framework_id.clone(),
                    "kill": {"task_id": {"value": id}},
                })
                .to_string(),
            )
            .send();
        calls.spawn(async move {
            let r = req.await?;
            if r.status() != reqwest::StatusCode::ACCEPTED {
                bail!("KILL answered {}", r.status());
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = calls.join_next().await {
        r??;
    }
    let mut killed = HashSet::new();
    while killed.len() < n {
        let ev = fw
            .next(deadline.max(Instant::now() + timeout))
            .await
            .with_context(|| format!("{} of {n} {kind} tasks killed", killed.len()))?;
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = &ev["update"]["status"];
        if matches!(
            st["state"].as_str(),
            Some("TASK_KILLED" | "TASK_FAILED" | "TASK_FINISHED")
        ) {
            killed.insert(
                st["task_id"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    let destroy = start.elapsed();
    eprintln!(
        "{n} {kind} tasks destroyed after {:.2}s",
        destroy.as_secs_f64()
    );
    // Let the freed resources come back for the next phase.
    fw.call(json!({"type": "REVIVE"})).await?;
    Ok(Figures {
        kind,
        tasks: n,
        launch,
        destroy,
    })
}

/// Removes the benchmark's (by now empty) container cgroups and its root.
fn remove_cgroups_root(root: &str) {
    for h in ["cpu", "cpuacct", "memory", ""] {
        let dir = Path::new("/sys/fs/cgroup").join(h).join(root);
        if !dir.is_dir() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

fn per_1000(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / n.max(1) as f64
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    if args.tasks == 0 && args.docker_tasks == 0 {
        bail!("nothing to do: --tasks and --docker-tasks are both 0");
    }
    let exe = std::env::current_exe().context("cannot find the corral binary")?;
    let root = nix::unistd::geteuid().is_root();
    let isolation = args.isolation.clone().unwrap_or_else(|| {
        if root {
            "cgroups/cpu,cgroups/mem".into()
        } else {
            "posix/cpu,posix/mem".into()
        }
    });
    let dir: PathBuf =
        std::env::temp_dir().join(format!("corral-bench-containers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let master_addr = format!("127.0.0.1:{}", args.port);
    let cgroups_root = format!("corral-bench-{}", std::process::id());
    let master = spawn_master(&exe, args.port, &dir)?;
    let total = args.tasks.max(args.docker_tasks) as f64;
    let mut agent_args = vec![
        "agent".to_string(),
        format!("--master={master_addr}"),
        "--ip=127.0.0.1".into(),
        format!("--port={}", args.port + 1),
        "--hostname=127.0.0.1".into(),
        format!("--work_dir={}", dir.join("agent").display()),
        format!(
            "--resources=cpus:{};mem:{};disk:100000;ports:[31000-32000]",
            (total * 0.01).ceil() + 1.0,
            total * 8.0 + 1024.0
        ),
        format!("--isolation={isolation}"),
        format!("--cgroups_root={cgroups_root}"),
        "--executor_registration_timeout=10mins".into(),
        "--executor_shutdown_grace_period=5secs".into(),
    ];
    if args.docker_tasks > 0 {
        agent_args.push("--containerizers=docker,mesos".into());
    }
    let agent = spawn(&exe, &agent_args, &dir.join("agent.log"))?;

    let result = async {
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Option<Value> = match http
                .get(format!("http://{master_addr}/metrics/snapshot"))
                .send()
                .await
            {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            if v.is_some_and(|v| v["master/slaves_active"].as_f64() >= Some(1.0)) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent did not register within 60s; see {}",
                    dir.join("agent.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut fw = Framework::subscribe(&master_addr).await?;
        let timeout = Duration::from_secs(args.timeout_secs);
        let mut figures = Vec::new();
        if args.tasks > 0 {
            figures.push(run_phase(&mut fw, "command", args.tasks, None, timeout).await?);
        }
        if args.docker_tasks > 0 {
            figures.push(
                run_phase(
                    &mut fw,
                    "docker",
                    args.docker_tasks,
                    Some(&args.image),
                    timeout,
                )
                .await?,
            );
        }
        Ok::<_, anyhow::Error>(figures)
    }
    .await;
    agent.stop().await;
    master.stop().await;
    remove_cgroups_root(&cgroups_root);
    let figures = match result {
        Ok(f) => {
            let _ = std::fs::remove_dir_all(&dir);
            f
        }
        Err(e) => bail!("{e:#} (logs in {})", dir.display()),
    };
    if !args.json {
        println!(
            "{:<8} {:>6} {:>10} {:>12} {:>11} {:>12} {:>13} {:>14}",
            "KIND",
            "TASKS",
            "LAUNCH_S",
            "LAUNCH_PER_S",
            "DESTROY_S",
            "DESTROY_PER_S",
            "S_PER_1000_L",
            "S_PER_1000_D"
        );
    }
    for f in &figures {
        let (l, d) = (f.launch.as_secs_f64(), f.destroy.as_secs_f64());
        if args.json {
            println!(
                "{}",
                json!({
                    "kind": f.kind, "tasks": f.tasks, "isolation": isolation,
                    "launch_secs": l, "destroy_secs": d,
                    "launches_per_sec": f.tasks as f64 / l, "destroys_per_sec": f.tasks as f64 / d,
                })
            );
        } else {
            println!(
                "{:<8} {:>6} {:>10.2} {:>12.1} {:>11.2} {:>12.1} {:>13.2} {:>14.2}",
                f.kind,
                f.tasks,
                l,
                f.tasks as f64 / l,
                d,
                f.tasks as f64 / d,
                per_1000(f.launch, f.tasks),
                per_1000(f.destroy, f.tasks)
            );
        }
    }
    if !args.json {
        println!(
            "isolation: {isolation}; Mesos (published): 1000 launches ~30 s, 1000 destroys ~20 s"
        );
    }
    Ok(())
}

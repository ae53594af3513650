//! End-to-end harness: real `corral master` and `corral agent` processes on
//! loopback ports, and a small Mesos v1 client (scheduler and operator API)
//! to drive them.
//!
//! * [`corral_bin`] finds the binary (`CORRAL_BIN`, else
//!   `<workspace>/target/debug/corral`, rebuilt once per test process when it
//!   is missing or older than the sources).
//! * [`Cluster::start`] starts a master and N agents, each with its own work
//!   dir and log file, and waits (by polling conditions, never by sleeping
//!   blindly) until the master is healthy and every agent is registered.
//!   Dropping the cluster stops everything: SIGTERM, then SIGKILL after a
//!   bound, and finally SIGKILL to the process group of anything still
//!   running inside the cluster's directory (executors and their tasks).
//!   When the test is failing, the logs are printed.
//! * [`Scheduler`] is a v1 scheduler client in JSON or protobuf. Events are
//!   presented as Mesos-shaped JSON ([`serde_json::Value`]) in both
//!   encodings (protobuf events are decoded, then rendered with
//!   [`codec::to_json_value`]), so tests read them the same way.
//! * [`EventStream`] reads a RecordIO stream with a bounded
//!   [`recordio::Decoder`]: a malformed or oversized frame ends the stream
//!   with an error instead of buffering without limit.

pub mod browser;
pub mod kafka;
pub mod rabbitmq;
pub mod spark;
pub mod tansu;
pub mod workloads;
pub mod yarn;

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use corral_api::codec::{self, Encoding};
use corral_api::recordio;
use corral_api::v1::{master as op, scheduler};
use futures::StreamExt;
use prost::Message as _;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use corral_api;

/// Default timeout of event waits and cluster conditions.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Largest stream record the harness accepts.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// Default resources of each agent.
pub const DEFAULT_AGENT_RESOURCES: &str = "cpus:2;mem:1024;disk:1024;ports:[31000-31099]";

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// The workspace's root directory.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn newest_mtime(path: &Path, newest: &mut SystemTime) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "target" || name.starts_with('.') {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                newest_mtime(&e.path(), newest);
            }
        }
    } else if let Ok(m) = meta.modified() {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if (ext == "rs" || ext == "proto" || name == "Cargo.toml") && m > *newest {
            *newest = m;
        }
    }
}

/// The `corral` binary the tests run.
///
/// `CORRAL_BIN` wins. Otherwise `<target>/debug/corral` (`CARGO_TARGET_DIR`
/// or `<workspace>/target`); when it is missing or older than any source of
/// the crates it is built from, `cargo build -p corral-cli --bin corral` runs
/// once per test process. If that build fails but a binary exists, the
/// existing binary is used (with a warning), so a colleague's broken
/// work-in-progress does not hide the e2e results of the last good build.
pub fn corral_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CORRAL_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "CORRAL_BIN={} does not exist", p.display());
            return p;
        }
        let ws = workspace_dir();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { ws.join(t) })
            .unwrap_or_else(|| ws.join("target"));
        let bin = target.join("debug").join("corral");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let mut newest = SystemTime::UNIX_EPOCH;
        newest_mtime(&ws.join("core"), &mut newest);
        newest_mtime(&ws.join("frameworks"), &mut newest);
        newest_mtime(&ws.join("storage"), &mut newest);
        newest_mtime(&ws.join("Cargo.toml"), &mut newest);
        let stale = built.is_none_or(|b| b < newest);
        if stale {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            eprintln!("[harness] building the corral binary (missing or older than the sources)");
            let status = Command::new(cargo)
                .args(["build", "-p", "corral-cli", "--bin", "corral"])
                .current_dir(&ws)
                .status();
            let ok = status.as_ref().is_ok_and(|s| s.success());
            if !ok {
                assert!(
                    bin.is_file(),
                    "cargo build -p corral-cli failed ({status:?}) and there is no {}",
                    bin.display()
                );
                eprintln!(
                    "[harness] WARNING: cargo build failed ({status:?}); using the existing {}",
                    bin.display()
                );
            }
        }
        assert!(bin.is_file(), "no corral binary at {}", bin.display());
        bin
    })
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
/// Returns whether it held.
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a GET of `url` answers `307` to a location starting with
/// `location` (a standby redirecting to its leader).
pub async fn redirects_to(url: &str, location: &str) -> bool {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    client.get(url).send().await.is_ok_and(|r| {
        r.status() == 307
            && r.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .is_some_and(|l| l.starts_with(location))
    })
}

/// A loopback port nobody in this process was given before and that was
/// free a moment ago.
/// Every file below `dir`, recursively (nothing when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        drop(l);
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A fresh 16-byte UUID, base64 (as Mesos' JSON writes `bytes`).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64.
pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("{s:?} is not standard base64: {e}"))
}

/// A TaskInfo (JSON) running `cmd` with the shell.
pub fn command_task(id: &str, agent_id: &str, cmd: &str, cpus: f64, mem: f64) -> Value {
    json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": {"value": agent_id},
        "resources": scalars(cpus, mem),
        "command": {"shell": true, "value": cmd},
    })
}

/// A gzipped tarball holding one file `name` with `content` and `mode`.
pub fn tar_gz(name: &str, content: &[u8], mode: u32) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(mode);
    h.set_cksum();
    b.append_data(&mut h, name, content).expect("tar entry");
    b.into_inner().expect("tar").finish().expect("gzip")
}

/// `cpus` and `mem` scalar resources (JSON), without role or allocation info.
pub fn scalars(cpus: f64, mem: f64) -> Value {
    json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ])
}

/// The scalar value of resource `name` in a JSON resource list.
pub fn scalar_of(resources: &Value, name: &str) -> f64 {
    resources
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| r["name"] == name)
                .filter_map(|r| r["scalar"]["value"].as_f64())
                .sum()
        })
        .unwrap_or(0.0)
}

fn tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn files_named(dir: &Path, names: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            files_named(&p, names, out);
        } else if meta.is_file()
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| names.contains(&n))
        {
            out.push(p);
        }
    }
}

/// Pids of live processes whose working directory is inside `dir`.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // Zombies keep no cwd; they are not "running".
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir)) {
            out.push(pid);
        }
    }
    out
}

fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp ...; comm may contain spaces and parens.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

fn signal_group(pgid: i32, sig: nix::sys::signal::Signal) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &str, args: &[String], log: PathBuf) -> Daemon {
        Self::spawn_with_env(name, args, log, &[])
    }

    fn spawn_with_env(
        name: &str,
        args: &[String],
        log: PathBuf,
        env: &[(String, String)],
    ) -> Daemon {
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("dup log file");
        let mut cmd = Command::new(corral_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .env(
                "CORRAL_LOG",
                std::env::var("CORRAL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("RUST_LOG");
        // The outer environment must not configure the daemons.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MESOS_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // daemon gets its own process group (so a test's signal never
        // reaches the test runner) and dies with the thread that started it
        // if the test process is killed without unwinding.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// Blocking twin of [`wait_for`] for teardown (Drop cannot await):
/// retries `attempt` every 10 ms until it holds or `timeout` passes.
fn retry_until(timeout: Duration, mut attempt: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if attempt() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops daemons: SIGTERM to all, wait up to `grace`, then SIGKILL.
fn stop_all(daemons: &mut [&mut Daemon], grace: Duration) {
    use nix::sys::signal::Signal;
    for d in daemons.iter_mut() {
        if d.exited().is_none() {
            signal(d.pid(), Signal::SIGTERM);
        }
    }
    retry_until(grace, || daemons.iter_mut().all(|d| d.exited().is_some()));
    for d in daemons.iter_mut() {
        if d.exited().is_none() {
            eprintln!(
                "[harness] {} did not stop within {grace:?}; SIGKILL",
                d.name
            );
            signal_group(d.pid(), Signal::SIGKILL);
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of agents.
    pub agents: usize,
    /// `--resources` of every agent (`None`: detected).
    pub agent_resources: Option<String>,
    /// Extra master flags (`--name=value`); they override the harness'
    /// defaults of the same name.
    pub master_flags: Vec<String>,
    /// Extra agent flags, likewise.
    pub agent_flags: Vec<String>,
    /// Environment variables set for every agent process, on top of the
    /// test's own (e.g. `CLASSPATH` with a Hadoop configuration directory).
    pub agent_env: Vec<(String, String)>,
    /// Flags of agent `i` only (`per_agent_flags[i]`), overriding the
    /// others of the same name (e.g. its own `--resources` port range, or
    /// `--attributes`).
    pub per_agent_flags: Vec<Vec<String>>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            agents: 1,
            agent_resources: Some(DEFAULT_AGENT_RESOURCES.to_string()),
            master_flags: Vec::new(),
            agent_flags: Vec::new(),
            agent_env: Vec::new(),
            per_agent_flags: Vec::new(),
        }
    }
}

fn flag_name(flag: &str) -> &str {
    flag.trim_start_matches('-')
        .split(['=', ' '])
        .next()
        .unwrap_or("")
}

fn with_defaults(defaults: &[&str], extra: &[String]) -> Vec<String> {
    let given: BTreeSet<&str> = extra.iter().map(|f| flag_name(f)).collect();
    defaults
        .iter()
        .filter(|d| !given.contains(flag_name(d)))
        .map(|d| d.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

/// A registered agent.
#[derive(Clone, Debug)]
pub struct AgentHandle {
    /// Its AgentID.
    pub id: String,
    /// `ip:port` of its HTTP API.
    pub endpoint: String,
    /// Its `--work_dir`.
    pub work_dir: PathBuf,
}

impl AgentHandle {
    /// The sandbox `runs/latest` of an executor, in Mesos' layout.
    pub fn sandbox(&self, framework_id: &str, executor_id: &str) -> PathBuf {
        self.work_dir
            .join("slaves")
            .join(&self.id)
            .join("frameworks")
            .join(framework_id)
            .join("executors")
            .join(executor_id)
            .join("runs")
            .join("latest")
    }

    /// `http://<endpoint><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.endpoint)
    }
}

/// A running master with its agents. Dropping it stops every process.
pub struct Cluster {
    /// `127.0.0.1:<port>` of the master.
    pub master: String,
    /// The registered agents, in start order.
    pub agents: Vec<AgentHandle>,
    /// HTTP client (no timeout of its own; streams stay open).
    pub http: reqwest::Client,
    dir: tempfile::TempDir,
    master_proc: Daemon,
    master_args: Vec<String>,
    agent_procs: Vec<Daemon>,
    opts: ClusterOptions,
    spawns: usize,
}

impl Cluster {
    /// Starts a master and `opts.agents` agents and waits until they are
    /// registered.
    pub async fn start(opts: ClusterOptions) -> Cluster {
        let bin = corral_bin().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("corral-e2e-")
            .tempdir()
            .expect("temp dir");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()
            .expect("http client");

        // The master: retry on another port if the picked one was taken.
        let mut attempt = 0;
        let (master, master_proc, master_args) = loop {
            attempt += 1;
            let port = free_port();
            let args: Vec<String> = ["master".to_string()]
                .into_iter()
                .chain(with_defaults(
                    &[
                        "--ip=127.0.0.1",
                        &format!("--port={port}"),
                        "--allocation_interval=100ms",
                        "--hostname=127.0.0.1",
                    ],
                    &opts.master_flags,
                ))
                .collect();
            let log = dir.path().join(format!("master-{attempt}.log"));
            let mut d = Daemon::spawn("master", &args, log);
            let addr = format!("127.0.0.1:{port}");
            let health = format!("http://{addr}/health");
            let deadline = Instant::now() + TIMEOUT;
            let mut up = false;
            while Instant::now() < deadline {
                if d.exited().is_some() {
                    break;
                }
                if http
                    .get(&health)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if up {
                break (addr, d, args);
            }
            let log = tail(&d.log, 8000);
            stop_all(&mut [&mut d], Duration::from_secs(2));
            if attempt >= 3 || !log.contains("listen") {
                panic!("the master did not become healthy ({bin:?}); log:\n{log}");
            }
        };

        let mut cluster = Cluster {
            master,
            agents: Vec::new(),
            http,
            dir,
            master_proc,
            master_args,
            agent_procs: Vec::new(),
            opts: opts.clone(),
            spawns: 0,
        };

        // The agents: each with its own port and work dir.
        let mut ports = Vec::new();
        let mut work_dirs = Vec::new();
        for i in 0..opts.agents {
            let work_dir = cluster.dir.path().join(format!("agent-{i}"));
            std::fs::create_dir_all(&work_dir).expect("agent work dir");
            let (port, d) = cluster.spawn_agent(i, free_port(), &work_dir, &opts, &[], 1);
            cluster.agent_procs.push(d);
            ports.push(port);
            work_dirs.push(work_dir);
        }
        let want = opts.agents;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut respawns = 0;
        loop {
            // An agent that died early (port taken) gets another port.
            for i in 0..cluster.agent_procs.len() {
                if cluster.agent_procs[i].exited().is_some() {
                    let log = tail(&cluster.agent_procs[i].log, 8000);
                    respawns += 1;
                    if respawns > 3 || !log.contains("listen") {
                        panic!("agent {i} exited during start; log:\n{log}");
                    }
                    let (port, d) = cluster.spawn_agent(
                        i,
                        free_port(),
                        &work_dirs[i].clone(),
                        &opts,
                        &[],
                        respawns + 1,
                    );
                    cluster.agent_procs[i] = d;
                    ports[i] = port;
                }
            }
            let active = cluster.metric("master/slaves_active").await.unwrap_or(0.0);
            if active >= want as f64 {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "only {active} of {want} agents registered within 30s\n{}",
                    cluster.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Map agent ids to the processes by port.
        let agents = cluster.get_state().await;
        let agents = agents
            .get_state
            .and_then(|s| s.get_agents)
            .map(|a| a.agents)
            .unwrap_or_default();
        for (i, port) in ports.iter().enumerate() {
            let a = agents
                .iter()
                .find(|a| a.agent_info.port == Some(i32::from(*port)))
                .unwrap_or_else(|| panic!("agent on port {port} is not in GET_AGENTS: {agents:?}"));
            let id = a
                .agent_info
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .expect("agent id");
            cluster.agents.push(AgentHandle {
                id,
                endpoint: format!("127.0.0.1:{port}"),
                work_dir: work_dirs[i].clone(),
            });
        }
        cluster
    }

    fn spawn_agent(
        &self,
        i: usize,
        port: u16,
        work_dir: &Path,
        opts: &ClusterOptions,
        extra: &[String],
        attempt: usize,
    ) -> (u16, Daemon) {
        let mut defaults = vec![
            format!("--master={}", self.master),
            "--ip=127.0.0.1".to_string(),
            format!("--port={port}"),
            format!("--work_dir={}", work_dir.display()),
            "--hostname=127.0.0.1".to_string(),
            "--registration_backoff_factor=100ms".to_string(),
            "--executor_shutdown_grace_period=2secs".to_string(),
        ];
        if let Some(r) = &opts.agent_resources {
            defaults.push(format!("--resources={r}"));
        }
        let defaults: Vec<&str> = defaults.iter().map(String::as_str).collect();
        // `extra` overrides this agent's own flags, which override the
        // cluster's agent flags of the same name.
        let own = opts.per_agent_flags.get(i).cloned().unwrap_or_default();
        let extra_names: BTreeSet<&str> = extra.iter().map(|f| flag_name(f)).collect();
        let extra: Vec<String> = own
            .iter()
            .filter(|f| !extra_names.contains(flag_name(f)))
            .chain(extra)
            .cloned()
            .collect();
        let extra = extra.as_slice();
        let overridden: BTreeSet<&str> = extra.iter().map(|f| flag_name(f)).collect();
        let flags: Vec<String> = opts
            .agent_flags
            .iter()
            .filter(|f| !overridden.contains(flag_name(f)))
            .chain(extra)
            .cloned()
            .collect();
        let args: Vec<String> = ["agent".to_string()]
            .into_iter()
            .chain(with_defaults(&defaults, &flags))
            .collect();
        let log = self.dir.path().join(format!("agent-{i}-{attempt}.log"));
        (
            port,
            Daemon::spawn_with_env(&format!("agent {i}"), &args, log, &opts.agent_env),
        )
    }

    /// SIGKILLs agent `i` (as `kill -9` would; its executors keep running)
    /// and reaps it.
    pub fn kill_agent(&mut self, i: usize) {
        let d = &mut self.agent_procs[i];
        signal(d.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = d.child.wait();
    }

    /// The pid of agent `i`'s process.
    pub fn agent_pid(&self, i: usize) -> i32 {
        self.agent_procs[i].pid()
    }

    /// Starts agent `i` again on its port and work dir (the cluster's agent
    /// flags plus `extra`), and waits until it has registered with the
    /// master again (its `slave/registered` metric).
    pub async fn restart_agent(&mut self, i: usize, extra: &[String]) {
        self.respawn_agent(i, extra);
        let url = self.agents[i].url("/metrics/snapshot");
        let http = self.http.clone();
        let registered = wait_for(Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await else {
                    return false;
                };
                r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["slave/registered"].as_f64() == Some(1.0))
            }
        })
        .await;
        if !registered {
            panic!(
                "agent {i} did not re-register within 30s after its restart\n{}",
                self.logs()
            );
        }
    }

    /// Starts agent `i` again and expects it to exit by itself within
    /// `timeout`; returns its exit status and log.
    pub async fn restart_agent_expect_exit(
        &mut self,
        i: usize,
        extra: &[String],
        timeout: Duration,
    ) -> (std::process::ExitStatus, String) {
        self.respawn_agent(i, extra);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.agent_procs[i].exited() {
                return (status, tail(&self.agent_procs[i].log, u64::MAX));
            }
            if Instant::now() > deadline {
                panic!(
                    "agent {i} was expected to exit within {timeout:?} but runs on\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn respawn_agent(&mut self, i: usize, extra: &[String]) {
        let port: u16 = self.agents[i]
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("agent endpoint has a port");
        self.spawns += 1;
        let work_dir = self.agents[i].work_dir.clone();
        let opts = self.opts.clone();
        let (_, d) = self.spawn_agent(i, port, &work_dir, &opts, extra, 100 + self.spawns);
        self.agent_procs[i] = d;
    }

    /// Agent `i`'s log (its current process).
    pub fn agent_log(&self, i: usize) -> String {
        tail(&self.agent_procs[i].log, u64::MAX)
    }

    /// The cluster's temp directory (logs, agent work dirs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://<master><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.master)
    }

    /// The agent with this id.
    pub fn agent(&self, id: &str) -> &AgentHandle {
        self.agents
            .iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("no agent {id}"))
    }

    /// Every daemon's log and every sandbox's stdout/stderr, for failures.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|e| e.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for p in logs {
            out.push_str(&format!("===== {} (tail) =====\n", p.display()));
            out.push_str(&tail(&p, 24_000));
            out.push('\n');
        }
        let mut sandbox_files = Vec::new();
        files_named(self.dir.path(), &["stdout", "stderr"], &mut sandbox_files);
        sandbox_files.sort();
        for p in sandbox_files {
            out.push_str(&format!("===== {} (tail) =====\n", p.display()));
            out.push_str(&tail(&p, 4_000));
            out.push('\n');
        }
        out
    }

    /// The pid of the master process.
    pub fn master_pid(&self) -> i32 {
        self.master_proc.pid()
    }

    /// The master's log so far.
    pub fn master_log(&self) -> String {
        tail(&self.master_proc.log, u64::MAX)
    }

    /// `kill -9` of the master, then the same master again (same port and
    /// flags, so the same `--work_dir` and registry): waits until it serves
    /// the operator API and every agent has re-registered with it.
    pub async fn restart_master(&mut self) {
        signal(self.master_proc.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = self.master_proc.child.wait();
        self.spawns += 1;
        let log = self
            .dir
            .path()
            .join(format!("master-restart-{}.log", self.spawns));
        self.master_proc = Daemon::spawn("master", &self.master_args, log);
        let http = self.http.clone();
        let url = self.url("/api/v1");
        let serving = wait_for(TIMEOUT, || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(r#"{"type":"GET_HEALTH"}"#)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(
            serving,
            "the restarted master never served the operator API\n{}",
            self.logs()
        );
        let n = self.agents.len();
        assert!(
            self.wait_agents_active(n).await,
            "the agents did not re-register with the restarted master\n{}",
            self.logs()
        );
    }

    /// POSTs an `application/x-www-form-urlencoded` body (the legacy
    /// endpoints' format) to a master path: (status, body text).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let (status, _, body) = self
            .post_raw(
                path,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body.into_bytes(),
            )
            .await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Whether the master process is still running.
    pub fn master_running(&mut self) -> bool {
        self.master_proc.exited().is_none()
    }

    /// GET a master path; (status, body text).
    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, String) {
        let r = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap_or_default())
    }

    /// GET a master path that must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, _, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// One master metric from `/metrics/snapshot`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let r = self
            .http
            .get(self.url("/metrics/snapshot"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v[name].as_f64()
    }

    /// POST raw bytes to a master path with optional headers.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = self
            .http
            .post(self.url(path))
            .timeout(Duration::from_secs(10))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        (
            status,
            headers,
            r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        )
    }

    /// An operator call (`POST /api/v1`, JSON, no Accept header):
    /// (status, body as JSON, or as a string when it is not JSON).
    pub async fn operator(&self, call: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .post_raw(
                "/api/v1",
                &[("Content-Type", "application/json")],
                serde_json::to_vec(&call).expect("json"),
            )
            .await;
        let v = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, v)
    }

    /// GET_STATE, decoded from protobuf.
    pub async fn get_state(&self) -> op::Response {
        let (status, _, body) = self
            .post_raw(
                "/api/v1",
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "application/x-protobuf"),
                ],
                br#"{"type":"GET_STATE"}"#.to_vec(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "GET_STATE: {}",
            String::from_utf8_lossy(&body)
        );
        op::Response::decode(&body[..]).expect("GET_STATE response is valid protobuf")
    }

    /// POSTs a call (Mesos JSON) to an agent's operator API at `endpoint`;
    /// returns the status and the JSON body (`Null` when not JSON).
    pub async fn agent_operator(&self, endpoint: &str, call: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("http://{endpoint}/api/v1"))
            .header(CONTENT_TYPE, "application/json")
            .header("Accept", "application/json")
            .body(call.to_string())
            .send()
            .await
            .expect("agent /api/v1");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// Whether a framework in `/master/state` links to `url` as its web UI.
    pub async fn has_framework_webui(&self, url: &str) -> bool {
        self.get_json("/master/state").await["frameworks"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["webui_url"] == url))
    }

    /// GET_STATE's `get_state`, rendered as Mesos JSON (easy to compare).
    pub async fn state_json(&self) -> Value {
        let r = self.get_state().await;
        codec::to_json_value(&r.get_state.unwrap_or_default())
    }

    /// Subscribes a scheduler with a default FrameworkInfo.
    pub async fn subscribe(&self, encoding: Encoding) -> Scheduler {
        self.subscribe_with(encoding, default_framework_info("e2e"))
            .await
    }

    /// Subscribes with this FrameworkInfo (JSON). When it has an `id`, the
    /// call's `framework_id` is set to it too (a re-subscription). Panics
    /// unless the answer is 200 with SUBSCRIBED first.
    pub async fn subscribe_with(&self, encoding: Encoding, framework_info: Value) -> Scheduler {
        let mut call = json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": framework_info},
        });
        if let Some(id) = framework_info.get("id") {
            call["framework_id"] = id.clone();
        }
        let (status, headers, mut events) = self.subscribe_raw(encoding, &call, &[]).await;
        assert_eq!(status, StatusCode::OK, "SUBSCRIBE answered {status}");
        let stream_id = headers
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .expect("SUBSCRIBE response carries Mesos-Stream-Id")
            .to_string();
        let first = events
            .next(TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("no first event on the subscription: {e}\n{}", self.logs()));
        assert_eq!(first["type"], "SUBSCRIBED", "first event: {first}");
        let framework_id = first["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("SUBSCRIBED.framework_id")
            .to_string();
        Scheduler {
            http: self.http.clone(),
            url: self.url("/api/v1/scheduler"),
            encoding,
            stream_id,
            framework_id,
            headers,
            subscribed: first,
            events,
        }
    }

    /// Posts a SUBSCRIBE body (JSON, converted to protobuf when asked)
    /// with extra headers; returns the status, headers and event stream
    /// (empty unless 200).
    pub async fn subscribe_raw(
        &self,
        encoding: Encoding,
        call: &Value,
        extra_headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, EventStream) {
        let body = encode_call(encoding, call);
        let mut req = self
            .http
            .post(self.url("/api/v1/scheduler"))
            .header(CONTENT_TYPE, encoding.content_type())
            .header("Accept", encoding.content_type())
            .body(body);
        for (k, v) in extra_headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .expect("SUBSCRIBE headers within 10s")
            .expect("SUBSCRIBE request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let events = if status == StatusCode::OK {
            EventStream::spawn_scheduler(resp, encoding)
        } else {
            let text = resp.text().await.unwrap_or_default();
            EventStream::failed(format!("SUBSCRIBE answered {status}: {text}"))
        };
        (status, headers, events)
    }

    /// Operator SUBSCRIBE (`POST /api/v1`): the status and event stream.
    pub async fn operator_subscribe(&self, encoding: Encoding) -> EventStream {
        let body = match encoding {
            Encoding::Json => br#"{"type":"SUBSCRIBE"}"#.to_vec(),
            Encoding::Protobuf => op::Call {
                r#type: Some(op::call::Type::Subscribe as i32),
                ..Default::default()
            }
            .encode_to_vec(),
        };
        let resp = self
            .http
            .post(self.url("/api/v1"))
            .header(CONTENT_TYPE, encoding.content_type())
            .header("Accept", encoding.content_type())
            .body(body)
            .send()
            .await
            .expect("operator SUBSCRIBE");
        assert_eq!(resp.status(), StatusCode::OK, "operator SUBSCRIBE");
        EventStream::spawn_operator(resp, encoding)
    }

    /// Waits until every agent is registered and active again.
    pub async fn wait_agents_active(&self, n: usize) -> bool {
        wait_for(TIMEOUT, || async {
            self.metric("master/slaves_active").await == Some(n as f64)
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!(
                "[harness] test failed; cluster dir {}\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
        // Agents first (they stop their executors on SIGTERM), then the master.
        {
            let mut agents: Vec<&mut Daemon> = self.agent_procs.iter_mut().collect();
            stop_all(&mut agents, Duration::from_secs(10));
        }
        stop_all(&mut [&mut self.master_proc], Duration::from_secs(5));
        // Anything still running in the cluster's directory (executors and
        // tasks, each in its own session) goes with its process group.
        retry_until(Duration::from_millis(500), || {
            let left = processes_in(self.dir.path());
            for &pid in &left {
                if let Some(pgid) = pgid_of(pid) {
                    signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
                }
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            left.is_empty()
        });
        for flag in &self.opts.agent_flags {
            if let Some(root) = flag.strip_prefix("--cgroups_root=") {
                remove_cgroups_root(root);
            }
        }
        if failing && std::env::var_os("CORRAL_KEEP_TEST_DIRS").is_some() {
            let path =
                std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!("[harness] kept {}", path.display());
        }
    }
}

/// A FrameworkInfo (JSON) with a name, user and a failover timeout.
pub fn default_framework_info(name: &str) -> Value {
    json!({
        "user": whoami(),
        "name": name,
        "failover_timeout": 60.0,
    })
}

fn whoami() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

/// Encodes a scheduler Call given as Mesos JSON in `encoding`.
pub fn encode_call(encoding: Encoding, call: &Value) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::to_vec(call).expect("json"),
        Encoding::Protobuf => {
            let c: scheduler::Call = codec::from_json_value(call.clone())
                .unwrap_or_else(|e| panic!("test call is not a valid Call: {e}: {call}"));
            c.encode_to_vec()
        }
    }
}

// ---------------------------------------------------------------------------
// Event streams
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum StreamKind {
    Scheduler,
    Operator,
}

/// Decoded events of a RecordIO stream, as Mesos-shaped JSON. Events that
/// a wait skips are kept, in order, for later waits.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Result<Value, String>>,
    pending: VecDeque<Value>,
    ended: Option<String>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

impl EventStream {
    fn failed(reason: String) -> EventStream {
        let (_tx, rx) = mpsc::unbounded_channel();
        EventStream {
            rx,
            pending: VecDeque::new(),
            ended: Some(reason),
            reader: None,
        }
    }

    fn spawn_scheduler(resp: reqwest::Response, encoding: Encoding) -> EventStream {
        Self::spawn(
            resp.bytes_stream(),
            encoding,
            StreamKind::Scheduler,
            MAX_RECORD_BYTES,
        )
    }

    fn spawn_operator(resp: reqwest::Response, encoding: Encoding) -> EventStream {
        Self::spawn(
            resp.bytes_stream(),
            encoding,
            StreamKind::Operator,
            MAX_RECORD_BYTES,
        )
    }

    /// Reads scheduler events in `encoding` from any byte stream, accepting
    /// records of at most `max_record` bytes.
    pub fn from_bytes<S, E>(bytes: S, encoding: Encoding, max_record: usize) -> EventStream
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display,
    {
        Self::spawn(bytes, encoding, StreamKind::Scheduler, max_record)
    }

    fn spawn<S, E>(
        mut bytes: S,
        encoding: Encoding,
        kind: StreamKind,
        max_record: usize,
    ) -> EventStream
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut decoder = recordio::Decoder::new(max_record);
            loop {
                let chunk = match bytes.next().await {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(format!("stream error: {e}")));
                        return;
                    }
                    None => {
                        let why = match decoder.finish() {
                            Ok(()) => "stream ended".to_string(),
                            Err(e) => format!("stream ended: {e}"),
                        };
                        let _ = tx.send(Err(why));
                        return;
                    }
                };
                decoder.feed(&chunk);
                loop {
                    match decoder.next_record() {
                        Ok(Some(record)) => {
                            let v = decode_event(kind, encoding, &record);
                            let stop = v.is_err();
                            if tx.send(v).is_err() || stop {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // Dropping the body closes the connection.
                            let _ = tx.send(Err(format!("bad RecordIO: {e}")));
                            return;
                        }
                    }
                }
            }
        });
        EventStream {
            rx,
            pending: VecDeque::new(),
            ended: None,
            reader: Some(reader),
        }
    }

    async fn recv(&mut self, deadline: Instant) -> Result<Value, String> {
        if let Some(why) = &self.ended {
            return Err(why.clone());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx.recv()).await {
            Err(_) => Err("timed out".into()),
            Ok(None) => {
                self.ended = Some("stream reader stopped".into());
                Err("stream reader stopped".into())
            }
            Ok(Some(Err(e))) => {
                self.ended = Some(e.clone());
                Err(e)
            }
            Ok(Some(Ok(v))) => Ok(v),
        }
    }

    /// The next event (kept events first), HEARTBEATs included.
    pub async fn next(&mut self, timeout: Duration) -> Result<Value, String> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(v);
        }
        self.recv(Instant::now() + timeout).await
    }

    /// The first event (kept or new) that matches; the others are kept.
    pub async fn wait(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&Value) -> bool,
    ) -> Result<Value, String> {
        if let Some(i) = self.pending.iter().position(&mut matches) {
            return Ok(self.pending.remove(i).expect("index in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.recv(deadline).await.map_err(|e| {
                let seen: Vec<String> = self.pending.iter().map(|v| v.to_string()).collect();
                format!("{e}; events seen meanwhile: [{}]", seen.join(", "))
            })?;
            if matches(&v) {
                return Ok(v);
            }
            self.pending.push_back(v);
        }
    }

    /// The first event of this `type`.
    pub async fn wait_type(&mut self, ty: &str, timeout: Duration) -> Result<Value, String> {
        self.wait(timeout, |e| e["type"] == ty).await
    }

    /// Events kept so far and everything that arrives within `window`,
    /// without waiting for anything in particular. Used to check that
    /// something did *not* happen (together with a positive check).
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.pending.drain(..).collect();
        let deadline = Instant::now() + window;
        while let Ok(v) = self.recv(deadline).await {
            out.push(v);
        }
        if self.ended.as_deref() == Some("timed out") {
            self.ended = None;
        }
        out
    }

    /// Whether the stream has ended (EOF or error) within `timeout`,
    /// skipping events.
    pub async fn ended_within(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline).await {
                Ok(v) => self.pending.push_back(v),
                Err(e) if e == "timed out" => return None,
                Err(e) => return Some(e),
            }
        }
    }
}

fn decode_event(kind: StreamKind, encoding: Encoding, record: &[u8]) -> Result<Value, String> {
    match (encoding, kind) {
        (Encoding::Json, _) => serde_json::from_slice(record).map_err(|e| {
            format!(
                "event is not JSON ({e}): {}",
                String::from_utf8_lossy(record)
            )
        }),
        (Encoding::Protobuf, StreamKind::Scheduler) => scheduler::Event::decode(record)
            .map(|e| codec::to_json_value(&e))
            .map_err(|e| format!("event is not a protobuf scheduler Event: {e}")),
        (Encoding::Protobuf, StreamKind::Operator) => op::Event::decode(record)
            .map(|e| codec::to_json_value(&e))
            .map_err(|e| format!("event is not a protobuf operator Event: {e}")),
    }
}

// ---------------------------------------------------------------------------
// Scheduler client
// ---------------------------------------------------------------------------

/// A subscribed scheduler.
pub struct Scheduler {
    http: reqwest::Client,
    url: String,
    /// Encoding of calls and events.
    pub encoding: Encoding,
    /// `Mesos-Stream-Id` of the subscription.
    pub stream_id: String,
    /// The FrameworkID from SUBSCRIBED.
    pub framework_id: String,
    /// Headers of the SUBSCRIBE response.
    pub headers: HeaderMap,
    /// The SUBSCRIBED event.
    pub subscribed: Value,
    /// Later events.
    pub events: EventStream,
}

impl Scheduler {
    /// Subscribes to the master at `base` (`http://host:port`), following
    /// no redirect: for masters outside a [`Cluster`] (HA tests). When
    /// `framework_info` has an `id` it is a re-subscription. `Err` carries
    /// the status and body of a refusal.
    pub async fn subscribe_to(
        base: &str,
        encoding: Encoding,
        framework_info: Value,
    ) -> Result<Scheduler, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut call = json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": framework_info},
        });
        if let Some(id) = framework_info.get("id") {
            call["framework_id"] = id.clone();
        }
        let url = format!("{base}/api/v1/scheduler");
        let resp = http
            .post(&url)
            .header(CONTENT_TYPE, encoding.content_type())
            .header("Accept", encoding.content_type())
            .body(encode_call(encoding, &call))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status != StatusCode::OK {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("SUBSCRIBE answered {status}: {text}"));
        }
        let stream_id = headers
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Mesos-Stream-Id")?
            .to_string();
        let mut events = EventStream::spawn_scheduler(resp, encoding);
        let first = events.next(TIMEOUT).await?;
        if first["type"] != "SUBSCRIBED" {
            return Err(format!("first event: {first}"));
        }
        let framework_id = first["subscribed"]["framework_id"]["value"]
            .as_str()
            .ok_or("SUBSCRIBED without framework_id")?
            .to_string();
        Ok(Scheduler {
            http,
            url,
            encoding,
            stream_id,
            framework_id,
            headers,
            subscribed: first,
            events,
        })
    }

    /// `{"value": framework id}`.
    pub fn fid(&self) -> Value {
        json!({"value": self.framework_id})
    }

    /// Sends a call (Mesos JSON; `framework_id` is filled in) with this
    /// subscription's stream id. Returns the status and body.
    pub async fn call(&self, mut call: Value) -> (StatusCode, String) {
        if call.get("framework_id").is_none() {
            call["framework_id"] = self.fid();
        }
        self.call_with_stream_id(&call, Some(&self.stream_id)).await
    }

    /// Sends a call as is, with the given stream id header (if any).
    pub async fn call_with_stream_id(
        &self,
        call: &Value,
        stream_id: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = self
            .http
            .post(&self.url)
            .timeout(Duration::from_secs(10))
            .header(CONTENT_TYPE, self.encoding.content_type())
            .body(encode_call(self.encoding, call));
        if let Some(s) = stream_id {
            req = req.header("Mesos-Stream-Id", s);
        }
        let r = req.send().await.expect("scheduler call");
        let status = r.status();
        (status, r.text().await.unwrap_or_default())
    }

    /// Sends a call that must be answered `202 Accepted`.
    pub async fn call_ok(&self, call: Value) {
        let ty = call["type"].clone();
        let (status, body) = self.call(call).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{ty} answered {status}: {body}"
        );
    }

    /// Waits for an OFFERS event and returns its offers.
    pub async fn offers(&mut self) -> Vec<Value> {
        let ev = self
            .events
            .wait_type("OFFERS", TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("no OFFERS: {e}"));
        ev["offers"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// ACCEPTs one offer with these operations.
    pub async fn accept(&self, offer: &Value, operations: Value) {
        self.call_ok(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"].clone()],
                "operations": operations,
                "filters": {"refuse_seconds": 0.0},
            }
        }))
        .await;
    }

    /// ACCEPTs one offer with a LAUNCH of these tasks.
    pub async fn launch(&self, offer: &Value, tasks: Vec<Value>) {
        self.accept(
            offer,
            json!([{"type": "LAUNCH", "launch": {"task_infos": tasks}}]),
        )
        .await;
    }

    /// DECLINEs offers with `refuse_seconds`.
    /// Waits (up to 60 s) for an offer satisfying `pick`, declining the
    /// others with a zero filter so that they come back; `what` names the
    /// wanted offer in the failure message.
    pub async fn offer_where(&mut self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no offer with {what} within 60s"
            );
            let offers = self.offers().await;
            let (wanted, others): (Vec<Value>, Vec<Value>) = offers.into_iter().partition(&pick);
            if !others.is_empty() {
                self.decline(&others, 0.0).await;
            }
            if let Some(o) = wanted.into_iter().next() {
                return o;
            }
        }
    }

    pub async fn decline(&self, offers: &[Value], refuse_seconds: f64) {
        let ids: Vec<Value> = offers.iter().map(|o| o["id"].clone()).collect();
        self.call_ok(json!({
            "type": "DECLINE",
            "decline": {"offer_ids": ids, "filters": {"refuse_seconds": refuse_seconds}},
        }))
        .await;
    }

    /// Waits for the UPDATE of `task_id` to `state` and returns its status.
    /// Other updates stay queued.
    pub async fn update(&mut self, task_id: &str, state: &str) -> Value {
        let ev = self
            .events
            .wait(TIMEOUT, |e| {
                e["type"] == "UPDATE"
                    && e["update"]["status"]["task_id"]["value"] == task_id
                    && e["update"]["status"]["state"] == state
            })
            .await
            .unwrap_or_else(|e| panic!("no UPDATE {task_id} -> {state}: {e}"));
        ev["update"]["status"].clone()
    }

    /// The next UPDATE of `task_id`, whatever its state.
    pub async fn next_update(&mut self, task_id: &str) -> Value {
        let ev = self
            .events
            .wait(TIMEOUT, |e| {
                e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == task_id
            })
            .await
            .unwrap_or_else(|e| panic!("no UPDATE of {task_id}: {e}"));
        ev["update"]["status"].clone()
    }

    /// ACKNOWLEDGEs a status that carries a uuid (echoing it, as pymesos).
    pub async fn acknowledge(&self, status: &Value) {
        assert!(status.get("uuid").is_some(), "status has no uuid: {status}");
        self.call_ok(json!({
            "type": "ACKNOWLEDGE",
            "acknowledge": {
                "agent_id": status["agent_id"].clone(),
                "task_id": status["task_id"].clone(),
                "uuid": status["uuid"].clone(),
            }
        }))
        .await;
    }

    /// Waits for the next UPDATE_OPERATION_STATUS of the operation with
    /// this `id` and returns its status.
    pub async fn operation_update(&mut self, operation_id: &str) -> Value {
        let ev = self
            .events
            .wait(TIMEOUT, |e| {
                e["type"] == "UPDATE_OPERATION_STATUS"
                    && e["update_operation_status"]["status"]["operation_id"]["value"]
                        == operation_id
            })
            .await
            .unwrap_or_else(|e| panic!("no UPDATE_OPERATION_STATUS of {operation_id}: {e}"));
        ev["update_operation_status"]["status"].clone()
    }

    /// ACKNOWLEDGE_OPERATION_STATUS of a status that carries a uuid.
    pub async fn acknowledge_operation(&self, status: &Value) {
        assert!(
            status.get("uuid").is_some(),
            "operation status has no uuid: {status}"
        );
        self.call_ok(json!({
            "type": "ACKNOWLEDGE_OPERATION_STATUS",
            "acknowledge_operation_status": {
                "agent_id": status["agent_id"].clone(),
                "uuid": status["uuid"]["value"].clone(),
                "operation_id": status["operation_id"].clone(),
            }
        }))
        .await;
    }

    /// RECONCILE_OPERATIONS of these operation ids (all known ones when
    /// empty).
    pub async fn reconcile_operations(&self, operation_ids: &[&str]) {
        let ops: Vec<Value> = operation_ids
            .iter()
            .map(|id| json!({"operation_id": {"value": id}}))
            .collect();
        self.call_ok(json!({
            "type": "RECONCILE_OPERATIONS",
            "reconcile_operations": {"operations": ops},
        }))
        .await;
    }

    /// Waits for `task_id` to reach `state`, acknowledging every update of
    /// it on the way (each must carry a uuid and an agent_id). Returns the
    /// statuses seen, the last one being `state`.
    pub async fn follow(&mut self, task_id: &str, state: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let s = self.next_update(task_id).await;
            assert!(
                s.get("uuid").is_some() && s.get("agent_id").is_some(),
                "an agent update must carry uuid and agent_id: {s}"
            );
            self.acknowledge(&s).await;
            let done = s["state"] == state;
            seen.push(s);
            if done {
                return seen;
            }
            let last = &seen[seen.len() - 1];
            let terminal = matches!(
                last["state"].as_str(),
                Some(
                    "TASK_FINISHED"
                        | "TASK_FAILED"
                        | "TASK_KILLED"
                        | "TASK_LOST"
                        | "TASK_ERROR"
                        | "TASK_DROPPED"
                        | "TASK_GONE"
                )
            );
            assert!(
                !terminal,
                "{task_id} ended in {last} while waiting for {state}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Prerequisites of the container tests (never skipped: missing ones fail)
// ---------------------------------------------------------------------------

/// Fails the test unless this process is root and cgroups are mounted
/// (cgroups/cpu and cgroups/mem need both).
pub fn require_cgroups() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to create cgroups (run the suite as root, as CI does)"
    );
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").is_file()
        && Path::new("/sys/fs/cgroup/cpu/cpu.shares").is_file();
    assert!(
        v1 || v2,
        "this test needs cgroups mounted at /sys/fs/cgroup (v1 cpu+memory hierarchies or v2)"
    );
}

/// A `--cgroups_root` of its own for one cluster (removed with it).
pub fn unique_cgroups_root() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("corral-test-{}-{n}", std::process::id())
}

/// Removes a test cluster's cgroups root and the container cgroups left in
/// it (their processes are gone by then; any left are killed first).
fn remove_cgroups_root(root: &str) {
    if root.is_empty() || root.contains("..") || root.starts_with('/') {
        return;
    }
    let mut dirs: Vec<PathBuf> = ["cpu", "cpuacct", "memory", "pids", ""]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join(root))
        .filter(|d| d.is_dir())
        .collect();
    dirs.dedup();
    for d in dirs {
        let children: Vec<PathBuf> = std::fs::read_dir(&d)
            .map(|it| {
                it.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        for c in children.iter().chain(std::iter::once(&d)) {
            retry_until(Duration::from_millis(500), || {
                let procs = std::fs::read_to_string(c.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
                for &pid in &pids {
                    signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
                pids.is_empty()
            });
            let _ = std::fs::remove_dir(c);
        }
    }
}

/// The directory of cgroup controller `controller` holding `path`
/// (`<root>/<container>`): v1 `/sys/fs/cgroup/<controller>/<path>`, v2
/// `/sys/fs/cgroup/<path>`.
pub fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").is_file() {
        Path::new("/sys/fs/cgroup").join(path)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(path)
    }
}

/// Fails the test unless the Docker engine answers; builds the local test
/// image (scripts/docker-test-image.sh, idempotent) and returns its name.
pub fn require_docker_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_docker_image("docker-test-image.sh"))
        .clone()
}

/// Fails the test unless the Docker engine answers; runs `scripts/<script>`
/// (which builds an image idempotently and prints its name last) and
/// returns the name.
pub fn build_docker_image(script: &str) -> String {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match &info {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs a running Docker engine: `docker info` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("this test needs the docker CLI and engine: {e}"),
    }
    let script = workspace_dir().join("scripts").join(script);
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// pymesos peers
// ---------------------------------------------------------------------------

/// The venv's python with the unmodified pymesos (`CORRAL_PYTHON`, set by
/// scripts/test.sh, or `target/pyenv` made by scripts/test-deps.sh).
pub fn pymesos_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CORRAL_PYTHON") {
        return PathBuf::from(p);
    }
    let p = workspace_dir().join("target/pyenv/bin/python");
    assert!(
        p.exists(),
        "pymesos venv missing at {}: run scripts/test-deps.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A pymesos peer script (`tests/pymesos/<script>`) running in the
/// background: its stdout is read line by line (JSON lines are its events
/// and its summary), its stderr goes to a file shown on failure.
pub struct PymesosPeer {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: PathBuf,
    seen: Vec<String>,
}

impl PymesosPeer {
    /// Starts `script` with `--master <master> --timeout <secs>` and `args`;
    /// its stderr goes to `<dir>/<script>.log`.
    pub fn start(dir: &Path, script: &str, master: &str, timeout_secs: u64, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let stderr = dir.join(format!("{script}.log"));
        let mut child = tokio::process::Command::new(pymesos_python())
            .arg(workspace_dir().join("tests/pymesos").join(script))
            .args(["--master", master, "--timeout", &timeout_secs.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("peer log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start the pymesos peer");
        let stdout = child.stdout.take().expect("peer stdout");
        PymesosPeer {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            stderr,
            seen: Vec::new(),
        }
    }

    /// What the peer printed so far, and its stderr.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.seen.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The next JSON line whose `"event"` is `event`, within `timeout`.
    /// Panics (with the peer's output) when it exits or times out first.
    pub async fn event(&mut self, event: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Err(_) => panic!(
                    "pymesos peer: no {event:?} within {timeout:?}\n{}",
                    self.output()
                ),
                Ok(Ok(Some(line))) => line,
                Ok(_) => panic!("pymesos peer exited before {event:?}\n{}", self.output()),
            };
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["event"] == event {
                    return v;
                }
            }
        }
    }

    /// Waits for the peer to exit successfully within `timeout` and returns
    /// its last JSON line without an `"event"` (its summary) and its whole
    /// output (for assertion messages).
    pub async fn finish(mut self, timeout: Duration) -> (Value, String) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Err(_) => panic!(
                    "pymesos peer did not finish within {timeout:?}\n{}",
                    self.output()
                ),
                Ok(Ok(Some(line))) => self.seen.push(line),
                Ok(_) => break,
            }
        }
        let status = tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("pymesos peer did not exit\n{}", self.output()))
            .expect("wait for the peer");
        assert!(
            status.success(),
            "pymesos peer failed ({status})\n{}",
            self.output()
        );
        let summary = self
            .seen
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("event").is_none())
            .unwrap_or_else(|| panic!("the peer printed no summary\n{}", self.output()));
        (summary, self.output())
    }
}

/// `text` without ANSI escape sequences (coloured log lines).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

//! `corral`: the one binary of Corral.
//!
//! * `corral dev` – a local cluster (master + agents) with embedded defaults.
//! * `corral master` / `corral agent` – the daemons, with Mesos flag names.
//! * `corral executor` – Corral's command/default executor (started by agents).
//! * `corral launcher` – sets up a container (cgroups, rlimits, user) and
//!   execs the executor (started by agents).
//! * `corral logger` – copies an executor's stdout or stderr into a sandbox
//!   file rotated by size (started by agents with the logrotate logger).
//! * `corral agents|frameworks|tasks|...` – the operator commands
//!   ([`operator`]): read and change a running cluster through the
//!   master's operator API; `corral completions` and `corral man`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

mod bench;
mod eventing_service;
mod events;
mod kafka;
mod operator;
mod spark;
mod table;
mod workloads;
mod yarn;

#[derive(Parser)]
#[command(
    name = "corral",
    version,
    about = "Corral: a Mesos-compatible cluster resource manager",
    long_about = "Corral pools the CPU, memory, disk and ports of agents and offers them to \
                  frameworks with Dominant Resource Fairness. Every flag of `master` and `agent` \
                  can also be set through the environment as MESOS_<FLAG>."
)]
struct Cli {
    /// Log format: `text` (human-readable; coloured only when stderr is a
    /// terminal) or `json` (one JSON object per line, for log shippers).
    #[arg(
        long = "log_format",
        global = true,
        env = "MESOS_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log_format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a local cluster: a master on 127.0.0.1:5050 and agents from :5051.
    Dev(DevArgs),
    /// Run a master.
    Master(corral_master::MasterFlags),
    /// Run an agent.
    Agent(corral_agent::AgentFlags),
    /// Run a benchmark and print its table.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The services-and-jobs framework (Singularity's API).
    #[command(subcommand)]
    Workloads(workloads::WorkloadsCommand),
    /// Run the YARN bridge: YARN NodeManagers as Corral tasks, with
    /// Myriad's REST API (port 8192), graceful flex down and autoscaling.
    YarnBridge(yarn::BridgeArgs),
    /// Talk to the YARN bridge: flexup, flexdown, status, profiles.
    #[command(subcommand)]
    Yarn(yarn::YarnCommand),
    /// Run the Spark dispatcher: Spark 4 jobs submitted with spark-submit
    /// (its REST protocol, port 6066) run as Corral tasks.
    SparkDispatcher(spark::DispatcherArgs),
    /// Talk to the Spark dispatcher: submit, status, kill, list, logs.
    #[command(subcommand)]
    Spark(spark::SparkCommand),
    /// The Kafka framework: run its scheduler (`corral kafka scheduler`),
    /// manage brokers and topics (mesos/kafka's commands).
    #[command(subcommand)]
    Kafka(kafka::KafkaCommand),
    /// Run the eventing publisher: the cluster's events to Kafka and
    /// RabbitMQ.
    #[command(subcommand)]
    Eventing(events::EventingCommand),
    /// Read the cluster's events: `corral events tail`.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// List the agents: address, state, resources used/total, attributes
    /// (GET_AGENTS).
    Agents(operator::agents::AgentsArgs),
    /// List the frameworks: roles, state, tasks, allocation, offers
    /// (GET_STATE).
    Frameworks(operator::frameworks::FrameworksArgs),
    /// List the tasks, by framework, state or agent (GET_STATE).
    Tasks(operator::tasks::TasksArgs),
    /// List the roles: weight, frameworks, allocation, quota (GET_ROLES,
    /// GET_QUOTA).
    Roles(operator::roles::RolesArgs),
    /// List the roles' weights (GET_WEIGHTS); `corral weights set` changes
    /// them.
    Weights(operator::roles::WeightsArgs),
    /// List the roles' quota (GET_QUOTA); `corral quota set` changes one.
    Quota(operator::quota::QuotaArgs),
    /// List the reserved resources of the agents (GET_AGENTS).
    Reservations(operator::reservations::ReservationsArgs),
    /// List the persistent volumes of the agents (GET_AGENTS).
    Volumes(operator::volumes::VolumesArgs),
    /// List the outstanding offers (GET_FRAMEWORKS).
    Offers(operator::offers::OffersArgs),
    /// Show the maintenance schedule and status (GET_MAINTENANCE_SCHEDULE,
    /// GET_MAINTENANCE_STATUS).
    Maintenance(operator::maintenance::MaintenanceArgs),
    /// Print a task's stdout or stderr from its sandbox; -f follows it
    /// until the task ends.
    Logs(operator::logs::LogsArgs),
    /// Live usage of the agents and their containers.
    Top(operator::top::TopArgs),
    /// Reserve an agent's resources for a role (RESERVE_RESOURCES).
    Reserve(operator::reservations::ReserveArgs),
    /// Give reserved resources back to every role (UNRESERVE_RESOURCES).
    Unreserve(operator::reservations::ReserveArgs),
    /// Create a persistent volume on reserved disk (CREATE_VOLUMES).
    CreateVolume(operator::volumes::CreateVolumeArgs),
    /// Destroy a persistent volume and its data (DESTROY_VOLUMES).
    DestroyVolume(operator::volumes::DestroyVolumeArgs),
    /// Tear a framework down: its tasks are killed (TEARDOWN).
    Teardown(operator::frameworks::TeardownArgs),
    /// Drain an agent: its tasks are killed and it gets no more
    /// (DRAIN_AGENT).
    Drain(operator::maintenance::DrainArgs),
    /// Print a shell completion script.
    Completions(operator::docs::CompletionsArgs),
    /// Write the man pages, one per command.
    Man(operator::docs::ManArgs),
    /// Run Corral's command/default executor (started by agents, not by hand).
    #[command(hide = true)]
    Executor,
    /// Set up a container and exec its executor (started by agents).
    #[command(hide = true)]
    Launcher {
        /// The launch configuration (JSON), written by the agent.
        #[arg(long)]
        config: String,
    },
    /// Copy stdin into a log file rotated by size, until EOF (started by
    /// agents with --container_logger=logrotate, one per stream, like
    /// Mesos' mesos-logrotate-logger).
    #[command(hide = true)]
    Logger {
        /// The file written (`<sandbox>/stdout`); rotated files are
        /// `<file>.1` (newest) to `<file>.<keep>`.
        #[arg(long = "log_filename")]
        log_filename: PathBuf,
        /// Largest size of the file before it is rotated (Mesos byte size).
        #[arg(long = "max_size", value_parser = corral_agent::logrotate::parse_max_size)]
        max_size: u64,
        /// Rotated files kept.
        #[arg(long = "keep", default_value_t = corral_agent::logrotate::DEFAULT_KEEP)]
        keep: u32,
    },
}

#[derive(clap::Args)]
struct DevArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 1)]
    agents: u16,
    /// Number of masters. More than one runs them in HA with leader
    /// election through a ZooKeeper that `corral dev` starts (Debian's
    /// ZooKeeper 3.8 via scripts/zookeeper.sh) and stops.
    #[arg(long, default_value_t = 1)]
    masters: u16,
    /// First master port; further masters and then agents take the
    /// following ports.
    #[arg(long, default_value_t = 5050)]
    port: u16,
    /// IP address every daemon listens on.
    #[arg(long, default_value = "127.0.0.1")]
    ip: String,
    /// Directory for the agents' work dirs (default: a fresh temp dir).
    #[arg(long = "work_dir")]
    work_dir: Option<PathBuf>,
    /// Resources of each agent (Mesos syntax); detected when absent.
    #[arg(long)]
    resources: Option<String>,
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only for a terminal, never into a file or a pipe.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Launcher { config } = &cli.command {
        // Single-threaded, no runtime: it only sets up and execs.
        let e = corral_agent::launcher::run(config);
        eprintln!("corral launcher: {e}");
        return std::process::ExitCode::from(corral_agent::launcher::LAUNCH_FAILED_STATUS as u8);
    }
    if let Command::Logger {
        log_filename,
        max_size,
        keep,
    } = &cli.command
    {
        // No runtime and no logging of its own: it copies until EOF.
        return match corral_agent::logrotate::run_logger(
            log_filename,
            *max_size,
            *keep,
            std::io::stdin().lock(),
        ) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corral logger: {}: {e}", log_filename.display());
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // The operator commands' exit codes: 1 refused, 2 usage, 3
            // no master reachable.
            match e.downcast_ref::<operator::Failure>() {
                Some(f) => std::process::ExitCode::from(f.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if cli.command.is_operator() {
        return run_operator(cli);
    }
    init_tracing(cli.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    match cli.command {
        Command::Master(flags) => rt.block_on(async {
            corral_master::run(flags, terminated())
                .await
                .context("master failed")
        }),
        Command::Agent(flags) => rt.block_on(async {
            corral_agent::run(flags, terminated())
                .await
                .context("agent failed")
        }),
        Command::Executor => {
            rt.block_on(async { corral_executor::run().await.context("executor failed") })
        }
        Command::Dev(args) => rt.block_on(dev(args, cli.log_format)),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Workloads(cmd) => rt.block_on(async {
            tokio::select! {
                r = workloads::run(cmd) => r,
                _ = terminated() => Ok(()),
            }
        }),
        Command::YarnBridge(args) => rt.block_on(async {
            tokio::select! {
                r = yarn::serve(args) => r,
                _ = terminated() => Ok(()),
            }
        }),
        Command::Yarn(cmd) => rt.block_on(yarn::run(cmd)),
        Command::SparkDispatcher(args) => rt.block_on(async {
            tokio::select! {
                r = spark::serve(args) => r,
                _ = terminated() => Ok(()),
            }
        }),
        Command::Spark(cmd) => rt.block_on(spark::run(cmd)),
        Command::Kafka(cmd) => rt.block_on(async {
            tokio::select! {
                r = kafka::run(cmd) => r,
                _ = terminated() => Ok(()),
            }
        }),
        Command::Eventing(cmd) => rt.block_on(async {
            if cmd.drains_on_sigterm() {
                // It drains, flushes and spools on SIGTERM itself.
                return events::serve(cmd).await;
            }
            tokio::select! {
                r = events::serve(cmd) => r,
                _ = terminated() => Ok(()),
            }
        }),
        Command::Events(cmd) => rt.block_on(events::run(cmd)),
        Command::Launcher { .. } | Command::Logger { .. } => Ok(()),
        // Handled by run_operator.
        _ => Ok(()),
    }
}

impl Command {
    /// The operator commands (clients of a running cluster).
    fn is_operator(&self) -> bool {
        matches!(
            self,
            Command::Agents(_)
                | Command::Frameworks(_)
                | Command::Tasks(_)
                | Command::Roles(_)
                | Command::Weights(_)
                | Command::Quota(_)
                | Command::Reservations(_)
                | Command::Volumes(_)
                | Command::Offers(_)
                | Command::Maintenance(_)
                | Command::Logs(_)
                | Command::Top(_)
                | Command::Reserve(_)
                | Command::Unreserve(_)
                | Command::CreateVolume(_)
                | Command::DestroyVolume(_)
                | Command::Teardown(_)
                | Command::Drain(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }
}

/// Runs an operator command. Libraries log nothing unless `CORRAL_LOG`
/// asks (the command prints its own errors), and the runtime is shut down
/// without waiting for stragglers (a ZooKeeper client still reconnecting).
fn run_operator(cli: Cli) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Agents(a) => operator::agents::run(a).await,
            Command::Frameworks(a) => operator::frameworks::run(a).await,
            Command::Tasks(a) => operator::tasks::run(a).await,
            Command::Roles(a) => operator::roles::run_roles(a).await,
            Command::Weights(a) => operator::roles::run_weights(a).await,
            Command::Quota(a) => operator::quota::run(a).await,
            Command::Reservations(a) => operator::reservations::run(a).await,
            Command::Volumes(a) => operator::volumes::run(a).await,
            Command::Offers(a) => operator::offers::run(a).await,
            Command::Maintenance(a) => operator::maintenance::run(a).await,
            Command::Logs(a) => operator::logs::run(a).await,
            Command::Top(a) => operator::top::run(a).await,
            Command::Reserve(a) => operator::reservations::reserve(a).await,
            Command::Unreserve(a) => operator::reservations::unreserve(a).await,
            Command::CreateVolume(a) => operator::volumes::create(a).await,
            Command::DestroyVolume(a) => operator::volumes::destroy(a).await,
            Command::Teardown(a) => operator::frameworks::teardown(a).await,
            Command::Drain(a) => operator::maintenance::drain(a).await,
            Command::Completions(a) => {
                operator::docs::completions(a, Cli::command());
                Ok(())
            }
            Command::Man(a) => operator::docs::man(a, Cli::command()),
            _ => Ok(()),
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Children(Vec<(String, tokio::process::Child)>);

impl Children {
    async fn stop(&mut self) {
        for (name, child) in self.0.iter_mut().rev() {
            if let Some(pid) = child.id() {
                // SIGTERM lets the daemon stop its executors first.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(_) => eprintln!("stopped {name}"),
                Err(_) => {
                    let _ = child.kill().await;
                    eprintln!("killed {name} (it did not stop within 15s)");
                }
            }
        }
    }
}

async fn dev(args: DevArgs, log_format: LogFormat) -> Result<()> {
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the corral binary")?;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("corral-dev-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create --work_dir {}", work.display()))?;
    if args.masters == 0 {
        bail!("--masters must be at least 1");
    }
    // Handlers first: a SIGTERM during start-up stops the cluster once up
    // instead of killing this process and orphaning its daemons.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let master_addr = format!("{}:{}", args.ip, args.port);
    let client = reqwest::Client::new();
    let mut children = Children(Vec::new());

    // With several masters: our own ZooKeeper, stopped when we return.
    let zookeeper = if args.masters > 1 {
        let dir = work.join("zookeeper");
        let server = tokio::task::spawn_blocking(move || {
            corral_master::testing::ZooKeeperServer::start(&dir, 1)
        })
        .await
        .context("zookeeper start")?
        .context("cannot start ZooKeeper (scripts/zookeeper.sh)")?;
        Some(server)
    } else {
        None
    };
    let zk_url = zookeeper
        .as_ref()
        .map(|z| format!("zk://{}/corral", z.connect));
    let mut masters = Vec::new();
    for m in 0..args.masters {
        let port = args.port + m;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["master", "--ip", &args.ip, "--port", &port.to_string()])
            .env("MESOS_LOG_FORMAT", log_format.as_str())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(zk) = &zk_url {
            cmd.args(["--zk", zk])
                .args(["--quorum", &(args.masters / 2 + 1).to_string()])
                .args(["--zk_session_timeout", "5secs"]);
        }
        let master = cmd.spawn().context("cannot start a master")?;
        children.0.push((format!("master {m} (:{port})"), master));
        masters.push(format!("{}:{port}", args.ip));
    }
    for addr in &masters {
        let health = format!("http://{addr}/health");
        let up = wait_until("the masters", Duration::from_secs(30), || {
            let c = client.clone();
            let url = health.clone();
            async move {
                c.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        if let Err(e) = up {
            children.stop().await;
            return Err(e);
        }
    }
    let agent_master = zk_url.clone().unwrap_or_else(|| master_addr.clone());
    let first_agent_port = args.port + args.masters;

    for i in 0..args.agents {
        let port = first_agent_port + i;
        let dir = work.join(format!("agent-{i}"));
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["agent", "--master", &agent_master, "--ip", &args.ip])
            .env("MESOS_LOG_FORMAT", log_format.as_str())
            .args(["--port", &port.to_string()])
            .arg("--work_dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(r) = &args.resources {
            cmd.args(["--resources", r]);
        }
        let child = cmd.spawn().context("cannot start an agent")?;
        children.0.push((format!("agent {i} (:{port})"), child));
    }
    let metrics = format!("http://{master_addr}/metrics/snapshot");
    let want = f64::from(args.agents);
    let registered = wait_until("the agents to register", Duration::from_secs(30), || {
        let c = client.clone();
        let url = metrics.clone();
        async move {
            let Ok(r) = c.get(&url).send().await else {
                return false;
            };
            let Ok(v) = r.json::<serde_json::Value>().await else {
                return false;
            };
            v["master/slaves_active"].as_f64() >= Some(want)
        }
    })
    .await;
    if let Err(e) = registered {
        children.stop().await;
        return Err(e);
    }

    println!();
    println!(
        "Corral dev cluster is up ({} agent(s), work dir {})",
        args.agents,
        work.display()
    );
    let row = |component: &str, url: &str, notes: &str| {
        println!("{component:<14} {url:<34} {notes}");
    };
    row("COMPONENT", "URL", "NOTES");
    for (m, addr) in masters.iter().enumerate() {
        row(
            &format!("master {m}"),
            &format!("http://{addr}"),
            if masters.len() > 1 {
                "leader or standby (standbys redirect to the leader)"
            } else {
                "scheduler API /api/v1/scheduler, state /master/state"
            },
        );
    }
    if let Some(first) = masters.first() {
        row(
            "web UI",
            &format!("http://{first}/"),
            "overview, agents, frameworks, tasks, sandboxes (live)",
        );
    }
    if let (Some(z), Some(url)) = (&zookeeper, &zk_url) {
        row(
            "zookeeper",
            &z.connect,
            &format!("masters elect a leader under {url}"),
        );
    }
    for i in 0..args.agents {
        row(
            &format!("agent {i}"),
            &format!("http://{}:{}", args.ip, first_agent_port + i),
            "executor API /api/v1/executor, files /files/browse",
        );
    }
    println!();
    match &zk_url {
        Some(url) => {
            println!("Point a Mesos framework at {url} (or any master). Press Ctrl-C to stop.")
        }
        None => println!("Point a Mesos framework at {master_addr}. Press Ctrl-C to stop."),
    }

    tokio::select! {
        _ = sigterm.recv() => eprintln!("stopping the dev cluster"),
        _ = sigint.recv() => eprintln!("stopping the dev cluster"),
        exited = async {
            // Report the first daemon that dies on its own.
            loop {
                for (name, child) in children.0.iter_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return (name.clone(), status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        } => eprintln!("{} exited unexpectedly ({}); stopping the dev cluster", exited.0, exited.1),
    }
    children.stop().await;
    drop(zookeeper);
    Ok(())
}

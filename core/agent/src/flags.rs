//! The agent's command-line flags, named as Mesos names them and each also
//! readable from the environment as `MESOS_<FLAG>`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use corral_api::stout;

use crate::AgentError;

/// Default master port when `--master` names only a host.
pub const DEFAULT_MASTER_PORT: u16 = 5050;

/// Flags of `corral agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentFlags {
    /// The master to register with, as host:port (a bare host means port
    /// 5050), or `zk://host:port[,host:port]/path` to follow the leading
    /// master published in ZooKeeper.
    #[arg(
        long = "master",
        env = "MESOS_MASTER",
        default_value = "127.0.0.1:5050"
    )]
    pub master: String,

    /// IP address to listen on for HTTP requests (the executor, operator
    /// and files APIs) and to advertise to the master and executors.
    #[arg(long = "ip", env = "MESOS_IP", default_value = "127.0.0.1")]
    pub ip: IpAddr,

    /// Port to listen on (0 picks a free port).
    #[arg(long = "port", env = "MESOS_PORT", default_value_t = 5051)]
    pub port: u16,

    /// Hostname the agent advertises (default: the system's hostname).
    #[arg(long = "hostname", env = "MESOS_HOSTNAME")]
    pub hostname: Option<String>,

    /// Directory for sandboxes and agent metadata
    /// (`<work_dir>/slaves/<agent_id>/frameworks/...`).
    #[arg(long = "work_dir", env = "MESOS_WORK_DIR")]
    pub work_dir: PathBuf,

    /// Total consumable resources, as `cpus:4;mem:8192;ports:[31000-32000]`
    /// (with optional `name(role):value`) or as a JSON array of Resource
    /// objects. cpus, mem, disk and ports not given are detected.
    #[arg(long = "resources", env = "MESOS_RESOURCES")]
    pub resources: Option<String>,

    /// Attributes of the machine, as `rack:a;zone:2`.
    #[arg(long = "attributes", env = "MESOS_ATTRIBUTES")]
    pub attributes: Option<String>,

    /// How long an executor may take to subscribe before it is killed and
    /// its tasks fail (stout duration, e.g. `1mins`).
    #[arg(
        long = "executor_registration_timeout",
        env = "MESOS_EXECUTOR_REGISTRATION_TIMEOUT",
        default_value = "1mins",
        value_parser = parse_duration
    )]
    pub executor_registration_timeout: Duration,

    /// How long an executor is given to shut down after SHUTDOWN (and again
    /// after SIGTERM, before SIGKILL).
    #[arg(
        long = "executor_shutdown_grace_period",
        env = "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
        default_value = "5secs",
        value_parser = parse_duration
    )]
    pub executor_shutdown_grace_period: Duration,

    /// First delay before reconnecting to a lost master; it doubles on each
    /// failed attempt, up to 30 seconds.
    #[arg(
        long = "registration_backoff_factor",
        env = "MESOS_REGISTRATION_BACKOFF_FACTOR",
        default_value = "1secs",
        value_parser = parse_duration
    )]
    pub registration_backoff_factor: Duration,

    /// Program that runs Corral's command and default executors, started as
    /// `<launcher> executor` (default: the current executable).
    #[arg(long = "launcher", env = "MESOS_LAUNCHER")]
    pub launcher: Option<PathBuf>,

    /// Containerizers, in order of preference: `mesos` (processes in
    /// cgroups) and `docker` (tasks whose ContainerInfo is DOCKER).
    #[arg(
        long = "containerizers",
        env = "MESOS_CONTAINERIZERS",
        default_value = "mesos"
    )]
    pub containerizers: String,

    /// Isolators of the Mesos containerizer, comma separated:
    /// `cgroups/cpu` (cpu.shares, and CFS quota with
    /// --cgroups_enable_cfs), `cgroups/mem` (hard memory limit), `disk/du`
    /// (sandbox usage), `posix/cpu`, `posix/mem` (usage only, where cgroups
    /// are unavailable).
    #[arg(
        long = "isolation",
        env = "MESOS_ISOLATION",
        default_value = "posix/cpu,posix/mem"
    )]
    pub isolation: String,

    /// Name of the cgroup (under each hierarchy) that holds the containers'
    /// cgroups.
    #[arg(
        long = "cgroups_root",
        env = "MESOS_CGROUPS_ROOT",
        default_value = "corral"
    )]
    pub cgroups_root: String,

    /// Cap each container's CPU time with a CFS quota of its cpus
    /// (cgroups/cpu); without it cpus only set cpu.shares.
    #[arg(
        long = "cgroups_enable_cfs",
        env = "MESOS_CGROUPS_ENABLE_CFS",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub cgroups_enable_cfs: bool,

    /// Kill a container whose sandbox grows past its disk resource
    /// (disk/du), with REASON_CONTAINER_LIMITATION_DISK.
    #[arg(
        long = "enforce_container_disk_quota",
        env = "MESOS_ENFORCE_CONTAINER_DISK_QUOTA",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enforce_container_disk_quota: bool,

    /// How often disk/du measures each sandbox.
    #[arg(
        long = "container_disk_watch_interval",
        env = "MESOS_CONTAINER_DISK_WATCH_INTERVAL",
        default_value = "15secs",
        value_parser = parse_duration
    )]
    pub container_disk_watch_interval: Duration,

    /// The Docker engine's socket (docker containerizer).
    #[arg(
        long = "docker_socket",
        env = "MESOS_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: PathBuf,

    /// On start, stop and remove Docker containers this agent launched that
    /// no recovered executor owns.
    #[arg(
        long = "docker_kill_orphans",
        env = "MESOS_DOCKER_KILL_ORPHANS",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub docker_kill_orphans: bool,

    /// Size of the fetcher cache (`2GB`, `512MB`, bytes); least recently
    /// used entries are evicted past it.
    #[arg(
        long = "fetcher_cache_size",
        env = "MESOS_FETCHER_CACHE_SIZE",
        default_value = "2GB",
        value_parser = parse_bytes
    )]
    pub fetcher_cache_size: u64,

    /// Directory of the fetcher cache (default `<work_dir>/fetch`). It is
    /// emptied when the agent starts.
    #[arg(long = "fetcher_cache_dir", env = "MESOS_FETCHER_CACHE_DIR")]
    pub fetcher_cache_dir: Option<PathBuf>,

    /// What to do with a checkpointed previous run: `reconnect` to its live
    /// executors, or `cleanup` (kill them, remove the checkpoint and exit).
    #[arg(long = "recover", env = "MESOS_RECOVER", default_value = "reconnect", value_parser = ["reconnect", "cleanup"])]
    pub recover: String,

    /// Refuse to start when a checkpoint cannot be read (naming the file);
    /// with `--strict=false` recover what can be and report the rest lost.
    #[arg(
        long = "strict",
        env = "MESOS_STRICT",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub strict: bool,

    /// How long checkpointing executors keep trying to reconnect to a
    /// restarting agent (MESOS_RECOVERY_TIMEOUT) before they give up.
    #[arg(
        long = "recovery_timeout",
        env = "MESOS_RECOVERY_TIMEOUT",
        default_value = "15mins",
        value_parser = parse_duration
    )]
    pub recovery_timeout: Duration,

    /// Run each container as its task's user: `CommandInfo.user`, else
    /// `FrameworkInfo.user` (with `--switch_user=false` only
    /// `CommandInfo.user` switches).
    #[arg(
        long = "switch_user",
        env = "MESOS_SWITCH_USER",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub switch_user: bool,

    /// How long a recovered executor has to re-subscribe after the agent
    /// restarted before it is killed.
    #[arg(
        long = "executor_reregistration_timeout",
        env = "MESOS_EXECUTOR_REREGISTRATION_TIMEOUT",
        default_value = "2secs",
        value_parser = parse_duration
    )]
    pub executor_reregistration_timeout: Duration,

    /// Where HDFS-backed persistent volumes are kept (volumes whose
    /// reservation has the label `corral.storage/backend=hdfs`): a Hadoop
    /// file system URI such as `hdfs://namenode:8020/corral/volumes`, or
    /// `file:///var/lib/corral/volumes` for a local `fs.defaultFS`, or an
    /// absolute path in the `fs.defaultFS` of the Hadoop configuration on
    /// CLASSPATH. Needs an agent built with the cargo feature `hdfs`.
    #[arg(long = "hdfs_volume_root", env = "MESOS_HDFS_VOLUME_ROOT")]
    pub hdfs_volume_root: Option<String>,

    /// How often the agent writes its HDFS-backed volumes back (besides
    /// when a task using one ends, and on `POST /volumes/writeback`).
    #[arg(
        long = "hdfs_writeback_interval",
        env = "MESOS_HDFS_WRITEBACK_INTERVAL",
        default_value = "5mins",
        value_parser = parse_positive_duration
    )]
    pub hdfs_writeback_interval: Duration,

    /// How long an HDFS-backed volume's lease lasts unless renewed (the
    /// agent renews it every third of this). Another agent can open the
    /// volume this long after its holder was lost.
    #[arg(
        long = "hdfs_lease_timeout",
        env = "MESOS_HDFS_LEASE_TIMEOUT",
        default_value = "2mins",
        value_parser = parse_positive_duration
    )]
    pub hdfs_lease_timeout: Duration,

    /// Where executors' stdout and stderr go: `sandbox` (the files
    /// `stdout` and `stderr` in the sandbox, unbounded) or `logrotate`
    /// (pipes read by a `corral logger` process per stream, which rotates
    /// the sandbox files by size: `stdout` -> `stdout.1` -> ...). Mesos'
    /// module name `org_apache_mesos_LogrotateContainerLogger` is accepted
    /// for `logrotate`.
    #[arg(
        long = "container_logger",
        env = "MESOS_CONTAINER_LOGGER",
        default_value = "sandbox",
        value_parser = parse_container_logger
    )]
    pub container_logger: String,

    /// With `--container_logger=logrotate`: largest size of `stdout` before
    /// it is rotated (Mesos byte size: `10MB`, `512KB`, `2097152B`). A task
    /// may set its own in CONTAINER_LOGGER_MAX_STDOUT_SIZE.
    #[arg(
        long = "logrotate_max_stdout_size",
        env = "MESOS_LOGROTATE_MAX_STDOUT_SIZE",
        default_value = "10MB",
        value_parser = crate::logrotate::parse_max_size
    )]
    pub logrotate_max_stdout_size: u64,

    /// Likewise for `stderr` (CONTAINER_LOGGER_MAX_STDERR_SIZE).
    #[arg(
        long = "logrotate_max_stderr_size",
        env = "MESOS_LOGROTATE_MAX_STDERR_SIZE",
        default_value = "10MB",
        value_parser = crate::logrotate::parse_max_size
    )]
    pub logrotate_max_stderr_size: u64,

    /// logrotate-style options for `stdout`: `rotate N` (rotated files
    /// kept, default 9) is understood; any other option is refused at
    /// start. A task may set its own in
    /// CONTAINER_LOGGER_LOGROTATE_STDOUT_OPTIONS.
    #[arg(
        long = "logrotate_stdout_options",
        env = "MESOS_LOGROTATE_STDOUT_OPTIONS",
        value_parser = crate::logrotate::LogrotateOptions::parse
    )]
    pub logrotate_stdout_options: Option<crate::logrotate::LogrotateOptions>,

    /// Likewise for `stderr` (CONTAINER_LOGGER_LOGROTATE_STDERR_OPTIONS).
    #[arg(
        long = "logrotate_stderr_options",
        env = "MESOS_LOGROTATE_STDERR_OPTIONS",
        value_parser = crate::logrotate::LogrotateOptions::parse
    )]
    pub logrotate_stderr_options: Option<crate::logrotate::LogrotateOptions>,

    /// Where the logs of finished executor runs are archived: `file:///dir`
    /// or an absolute path (a local directory), or `hdfs://namenode:port/dir`
    /// (needs an agent built with the cargo feature `hdfs`). When a run
    /// ends, its sandbox's `stdout*` and `stderr*` (and those of its task
    /// sandboxes under `tasks/<task_id>/`) are copied to
    /// `<archive>/<framework_id>/<executor_id>/<container_id>/`.
    #[arg(long = "task_log_archive", env = "MESOS_TASK_LOG_ARCHIVE")]
    pub task_log_archive: Option<String>,

    /// How long the sandbox of a finished executor run is kept before it is
    /// removed (volumes mounted in it are unmounted first; their data
    /// stays).
    #[arg(
        long = "gc_delay",
        env = "MESOS_GC_DELAY",
        default_value = "1weeks",
        value_parser = parse_duration
    )]
    pub gc_delay: Duration,
}

/// Parses a Mesos byte size: `1024`, `1024B`, `512KB`, `64MB`, `2GB`, `1TB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a byte size such as 512MB or 2GB"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        other => {
            return Err(format!(
                "'{s}': unknown byte unit '{other}' (B, KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_container_logger(s: &str) -> Result<String, String> {
    match s.trim() {
        "" | "sandbox" => Ok("sandbox".into()),
        "logrotate" | "org_apache_mesos_LogrotateContainerLogger" => Ok("logrotate".into()),
        other => Err(format!(
            "unknown container logger '{other}' (sandbox, logrotate)"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    stout::parse_duration(s)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = stout::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("'{s}' must be longer than zero"));
    }
    Ok(d)
}

impl AgentFlags {
    /// The master's `host:port`, or an error for forms that are not
    /// supported (ZooKeeper, files) or malformed.
    pub fn master_address(&self) -> Result<String, AgentError> {
        parse_master(&self.master)
    }

    /// The launcher program: the flag, or the current executable. Mesos'
    /// own launcher type names (`posix`, `linux`) are ignored.
    pub fn launcher_path(&self) -> Result<PathBuf, AgentError> {
        match &self.launcher {
            Some(p) if !matches!(p.to_str(), Some("posix" | "linux" | "windows")) => Ok(p.clone()),
            _ => std::env::current_exe().map_err(|source| AgentError::Io {
                context: "cannot determine the current executable for --launcher".into(),
                source,
            }),
        }
    }

    /// The flags as Mesos reports them (`name` -> textual value).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("master".to_string(), self.master.clone()),
            ("ip".to_string(), self.ip.to_string()),
            ("port".to_string(), self.port.to_string()),
            ("work_dir".to_string(), self.work_dir.display().to_string()),
            (
                "executor_registration_timeout".to_string(),
                stout::format_duration(self.executor_registration_timeout),
            ),
            (
                "executor_shutdown_grace_period".to_string(),
                stout::format_duration(self.executor_shutdown_grace_period),
            ),
            (
                "registration_backoff_factor".to_string(),
                stout::format_duration(self.registration_backoff_factor),
            ),
        ];
        if let Some(h) = &self.hostname {
            v.push(("hostname".into(), h.clone()));
        }
        if let Some(r) = &self.resources {
            v.push(("resources".into(), r.clone()));
        }
        if let Some(a) = &self.attributes {
            v.push(("attributes".into(), a.clone()));
        }
        if let Some(l) = &self.launcher {
            v.push(("launcher".into(), l.display().to_string()));
        }
        v.extend([
            ("containerizers".to_string(), self.containerizers.clone()),
            ("isolation".to_string(), self.isolation.clone()),
            ("cgroups_root".to_string(), self.cgroups_root.clone()),
            (
                "cgroups_enable_cfs".to_string(),
                self.cgroups_enable_cfs.to_string(),
            ),
            (
                "enforce_container_disk_quota".to_string(),
                self.enforce_container_disk_quota.to_string(),
            ),
            (
                "container_disk_watch_interval".to_string(),
                stout::format_duration(self.container_disk_watch_interval),
            ),
            (
                "docker_socket".to_string(),
                self.docker_socket.display().to_string(),
            ),
            (
                "fetcher_cache_size".to_string(),
                self.fetcher_cache_size.to_string(),
            ),
            ("recover".to_string(), self.recover.clone()),
            ("strict".to_string(), self.strict.to_string()),
            ("switch_user".to_string(), self.switch_user.to_string()),
            (
                "recovery_timeout".to_string(),
                stout::format_duration(self.recovery_timeout),
            ),
            (
                "executor_reregistration_timeout".to_string(),
                stout::format_duration(self.executor_reregistration_timeout),
            ),
            (
                "hdfs_writeback_interval".to_string(),
                stout::format_duration(self.hdfs_writeback_interval),
            ),
            (
                "hdfs_lease_timeout".to_string(),
                stout::format_duration(self.hdfs_lease_timeout),
            ),
            (
                "gc_delay".to_string(),
                stout::format_duration(self.gc_delay),
            ),
        ]);
        if let Some(r) = &self.hdfs_volume_root {
            v.push(("hdfs_volume_root".into(), r.clone()));
        }
        v.extend([
            (
                "container_logger".to_string(),
                self.container_logger.clone(),
            ),
            (
                "logrotate_max_stdout_size".to_string(),
                self.logrotate_max_stdout_size.to_string(),
            ),
            (
                "logrotate_max_stderr_size".to_string(),
                self.logrotate_max_stderr_size.to_string(),
            ),
        ]);
        if let Some(o) = &self.logrotate_stdout_options {
            v.push(("logrotate_stdout_options".into(), o.text.clone()));
        }
        if let Some(o) = &self.logrotate_stderr_options {
            v.push(("logrotate_stderr_options".into(), o.text.clone()));
        }
        if let Some(a) = &self.task_log_archive {
            v.push(("task_log_archive".into(), a.clone()));
        }
        v.sort();
        v
    }
}

/// Parses `--master`: `host:port`, `host`, optionally with an `http://`
/// prefix, or a `zk://` URL (kept as is). `file://` gives a clear error.
pub fn parse_master(value: &str) -> Result<String, AgentError> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix("zk://") {
        // Detected through ZooKeeper before every session (master.rs).
        return match rest.split_once('/') {
            Some((servers, path)) if !servers.is_empty() && !path.trim_matches('/').is_empty() => {
                Ok(value.to_owned())
            }
            _ => Err(AgentError::InvalidFlag(format!(
                "--master={value} is not of the form zk://host:port[,host:port]/path"
            ))),
        };
    }
    if value.starts_with("file://") {
        return Err(AgentError::InvalidFlag(format!(
            "--master={value}: reading the master from a file is not supported; pass host:port"
        )));
    }
    let rest = value
        .strip_prefix("http://")
        .unwrap_or(value)
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err(AgentError::InvalidFlag(format!(
            "--master={value} is not of the form host:port"
        )));
    }
    // `[v6]:port`, `host:port`, or a bare host.
    let has_port = if rest.starts_with('[') {
        rest.contains("]:")
    } else {
        rest.matches(':').count() == 1
    };
    if has_port {
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(AgentError::InvalidFlag(format!(
                "--master={value} is not of the form host:port"
            )));
        }
        Ok(rest.to_string())
    } else if rest.contains(':') {
        // A bare IPv6 address.
        Ok(format!("[{rest}]:{DEFAULT_MASTER_PORT}"))
    } else {
        Ok(format!("{rest}:{DEFAULT_MASTER_PORT}"))
    }
}

/// Default flags (as clap fills them) for tests that build flags by hand.
#[cfg(test)]
pub(crate) fn test_defaults() -> AgentFlags {
    use clap::Parser;
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        flags: AgentFlags,
    }
    Cli::try_parse_from(["agent", "--work_dir=/nonexistent"])
        .map(|c| c.flags)
        .unwrap_or_else(|e| panic!("default flags: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        flags: AgentFlags,
    }

    fn parse(args: &[&str]) -> Result<AgentFlags, clap::Error> {
        let mut v = vec!["agent"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.flags)
    }

    #[test]
    fn defaults_and_mesos_names() {
        let f = parse(&["--work_dir", "/tmp/w"]).unwrap();
        assert_eq!(f.master, "127.0.0.1:5050");
        assert_eq!(f.port, 5051);
        assert_eq!(f.ip.to_string(), "127.0.0.1");
        assert_eq!(f.executor_registration_timeout, Duration::from_secs(60));
        assert_eq!(f.executor_shutdown_grace_period, Duration::from_secs(5));
        assert_eq!(f.registration_backoff_factor, Duration::from_secs(1));

        let f = parse(&[
            "--work_dir=/w",
            "--master=m1:6060",
            "--port=0",
            "--resources=cpus:2",
            "--attributes=rack:a",
            "--executor_registration_timeout=250ms",
            "--launcher=/bin/corral",
        ])
        .unwrap();
        assert_eq!(f.master_address().unwrap(), "m1:6060");
        assert_eq!(f.executor_registration_timeout, Duration::from_millis(250));
        assert_eq!(f.launcher_path().unwrap(), PathBuf::from("/bin/corral"));
        assert!(parse(&["--work_dir=/w", "--executor_shutdown_grace_period=5"]).is_err());
        assert!(parse(&["--work_dir=/w", "--ip=not-an-ip"]).is_err());
    }

    #[test]
    fn container_flags() {
        let f = parse(&["--work_dir=/w"]).unwrap();
        assert_eq!(f.isolation, "posix/cpu,posix/mem");
        assert!(!f.cgroups_enable_cfs);
        assert!(f.strict);
        assert_eq!(f.recover, "reconnect");
        assert_eq!(f.fetcher_cache_size, 2 << 30);
        let f = parse(&[
            "--work_dir=/w",
            "--cgroups_enable_cfs",
            "--strict=false",
            "--recover=cleanup",
            "--fetcher_cache_size=64MB",
            "--isolation=cgroups/cpu,cgroups/mem",
        ])
        .unwrap();
        assert!(f.cgroups_enable_cfs);
        assert!(!f.strict);
        assert_eq!(f.recover, "cleanup");
        assert_eq!(f.fetcher_cache_size, 64 << 20);
        assert!(parse(&["--work_dir=/w", "--recover=maybe"]).is_err());
        assert!(parse(&["--work_dir=/w", "--fetcher_cache_size=lots"]).is_err());
        assert_eq!(f.hdfs_lease_timeout, Duration::from_secs(120));
        assert_eq!(f.gc_delay, Duration::from_secs(7 * 24 * 3600));
        let f = parse(&[
            "--work_dir=/w",
            "--hdfs_volume_root=hdfs://nn:8020/corral/volumes",
            "--hdfs_writeback_interval=30secs",
            "--hdfs_lease_timeout=1mins",
            "--gc_delay=1hrs",
        ])
        .unwrap();
        assert_eq!(
            f.hdfs_volume_root.as_deref(),
            Some("hdfs://nn:8020/corral/volumes")
        );
        assert_eq!(f.hdfs_writeback_interval, Duration::from_secs(30));
        assert_eq!(f.hdfs_lease_timeout, Duration::from_secs(60));
        assert_eq!(f.gc_delay, Duration::from_secs(3600));
        assert!(parse(&["--work_dir=/w", "--hdfs_lease_timeout=0secs"]).is_err());
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("3KB").unwrap(), 3072);
        assert!(parse_bytes("5PB").is_err());
    }

    #[test]
    fn container_logger_flags() {
        let f = parse(&["--work_dir=/w"]).unwrap();
        assert_eq!(f.container_logger, "sandbox");
        assert_eq!(f.logrotate_max_stdout_size, 10 << 20);
        assert_eq!(f.logrotate_max_stderr_size, 10 << 20);
        assert!(f.logrotate_stdout_options.is_none());
        assert!(f.task_log_archive.is_none());
        let f = parse(&[
            "--work_dir=/w",
            "--container_logger=logrotate",
            "--logrotate_max_stdout_size=64KB",
            "--logrotate_max_stderr_size=2097152B",
            "--logrotate_stdout_options=rotate 3",
            "--logrotate_stderr_options=rotate 0",
            "--task_log_archive=file:///tmp/archive",
        ])
        .unwrap();
        assert_eq!(f.container_logger, "logrotate");
        assert_eq!(f.logrotate_max_stdout_size, 64 << 10);
        assert_eq!(f.logrotate_max_stderr_size, 2_097_152);
        assert_eq!(f.logrotate_stdout_options.as_ref().unwrap().rotate, Some(3));
        assert_eq!(f.logrotate_stderr_options.as_ref().unwrap().rotate, Some(0));
        assert_eq!(f.task_log_archive.as_deref(), Some("file:///tmp/archive"));
        let f = parse(&[
            "--work_dir=/w",
            "--container_logger=org_apache_mesos_LogrotateContainerLogger",
        ])
        .unwrap();
        assert_eq!(f.container_logger, "logrotate");
        for (bad, flag) in [
            ("--container_logger=journald", "--container_logger"),
            (
                "--logrotate_max_stdout_size=lots",
                "--logrotate_max_stdout_size",
            ),
            (
                "--logrotate_max_stderr_size=0",
                "--logrotate_max_stderr_size",
            ),
            (
                "--logrotate_stdout_options=compress",
                "--logrotate_stdout_options",
            ),
            (
                "--logrotate_stderr_options=rotate many",
                "--logrotate_stderr_options",
            ),
        ] {
            let e = parse(&["--work_dir=/w", bad]).unwrap_err().to_string();
            assert!(e.contains(flag), "{bad}: {e}");
        }
    }

    #[test]
    fn env_fallback() {
        // The only test that touches MESOS_* variables.
        assert!(parse(&[]).is_err(), "work_dir is required");
        std::env::set_var("MESOS_WORK_DIR", "/from/env");
        std::env::set_var("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "2mins");
        let f = parse(&[]);
        std::env::remove_var("MESOS_WORK_DIR");
        std::env::remove_var("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD");
        let f = f.unwrap();
        assert_eq!(f.work_dir, PathBuf::from("/from/env"));
        assert_eq!(f.executor_shutdown_grace_period, Duration::from_secs(120));
    }

    #[test]
    fn master_forms() {
        assert_eq!(parse_master("10.0.0.1:5050").unwrap(), "10.0.0.1:5050");
        assert_eq!(parse_master("master").unwrap(), "master:5050");
        assert_eq!(parse_master("http://m:1/").unwrap(), "m:1");
        assert_eq!(parse_master("[::1]:7").unwrap(), "[::1]:7");
        assert_eq!(parse_master("::1").unwrap(), "[::1]:5050");
        assert_eq!(
            parse_master("zk://zk1:2181,zk2:2181/mesos").unwrap(),
            "zk://zk1:2181,zk2:2181/mesos"
        );
        assert!(parse_master("zk://zk1:2181").is_err());
        assert!(parse_master("m:notaport").is_err());
        assert!(parse_master("").is_err());
        assert!(parse_master("file:///etc/master").is_err());
    }
}

//! `corral master` flags: Mesos names, `MESOS_<FLAG>` environment fallbacks.

use std::time::Duration;

use corral_api::stout;

fn duration(s: &str) -> Result<Duration, String> {
    stout::parse_duration(s)
}

/// Flags of the master daemon.
#[derive(Clone, Debug, clap::Args)]
pub struct MasterFlags {
    /// IP address to listen on.
    #[arg(long = "ip", env = "MESOS_IP", default_value = "127.0.0.1")]
    pub ip: String,
    /// Port to listen on (HTTP APIs and the agent gRPC service share it).
    #[arg(long = "port", env = "MESOS_PORT", default_value_t = 5050)]
    pub port: u16,
    /// Hostname to advertise (defaults to the IP).
    #[arg(long = "hostname", env = "MESOS_HOSTNAME")]
    pub hostname: Option<String>,
    /// Directory for the registry (unused by the in-memory single master).
    #[arg(long = "work_dir", env = "MESOS_WORK_DIR")]
    pub work_dir: Option<String>,
    /// Human readable cluster name, shown in state.
    #[arg(long = "cluster", env = "MESOS_CLUSTER")]
    pub cluster: Option<String>,
    /// ZooKeeper URL for leader election (`zk://host:port/path`).
    #[arg(long = "zk", env = "MESOS_ZK")]
    pub zk: Option<String>,
    /// Batch allocation interval (stout duration, e.g. `1secs`).
    #[arg(long = "allocation_interval", env = "MESOS_ALLOCATION_INTERVAL", default_value = "1secs", value_parser = duration)]
    pub allocation_interval: Duration,
    /// Time between pings to an agent; also the unit of the agent timeout.
    #[arg(long = "agent_ping_timeout", env = "MESOS_AGENT_PING_TIMEOUT", default_value = "15secs", value_parser = duration)]
    pub agent_ping_timeout: Duration,
    /// Unanswered pings (or ping periods disconnected) before an agent is
    /// removed and its tasks reported lost.
    #[arg(
        long = "max_agent_ping_timeouts",
        env = "MESOS_MAX_AGENT_PING_TIMEOUTS",
        default_value_t = 5
    )]
    pub max_agent_ping_timeouts: u32,
    /// Interval of HEARTBEAT events on scheduler and operator streams.
    #[arg(long = "heartbeat_interval", env = "MESOS_HEARTBEAT_INTERVAL", default_value = "15secs", value_parser = duration)]
    pub heartbeat_interval: Duration,
    /// Completed frameworks kept for state endpoints.
    #[arg(
        long = "max_completed_frameworks",
        env = "MESOS_MAX_COMPLETED_FRAMEWORKS",
        default_value_t = 50
    )]
    pub max_completed_frameworks: usize,
    /// Completed tasks kept per framework.
    #[arg(
        long = "max_completed_tasks_per_framework",
        env = "MESOS_MAX_COMPLETED_TASKS_PER_FRAMEWORK",
        default_value_t = 1000
    )]
    pub max_completed_tasks_per_framework: usize,
    /// Largest request body accepted on the HTTP APIs, in bytes.
    #[arg(long = "max_request_body_bytes", env = "MESOS_MAX_REQUEST_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_request_body_bytes: usize,
}

impl MasterFlags {
    /// Flags as (name, value) pairs, for GET_FLAGS and /master/state.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let d = |d: Duration| stout::format_duration(d);
        let mut v = vec![
            ("ip".to_string(), self.ip.clone()),
            ("port".to_string(), self.port.to_string()),
            (
                "allocation_interval".to_string(),
                d(self.allocation_interval),
            ),
            ("agent_ping_timeout".to_string(), d(self.agent_ping_timeout)),
            (
                "max_agent_ping_timeouts".to_string(),
                self.max_agent_ping_timeouts.to_string(),
            ),
            ("heartbeat_interval".to_string(), d(self.heartbeat_interval)),
            (
                "max_completed_frameworks".to_string(),
                self.max_completed_frameworks.to_string(),
            ),
            (
                "max_completed_tasks_per_framework".to_string(),
                self.max_completed_tasks_per_framework.to_string(),
            ),
            (
                "max_request_body_bytes".to_string(),
                self.max_request_body_bytes.to_string(),
            ),
        ];
        for (k, val) in [
            ("hostname", &self.hostname),
            ("work_dir", &self.work_dir),
            ("cluster", &self.cluster),
            ("zk", &self.zk),
        ] {
            if let Some(val) = val {
                v.push((k.to_string(), val.clone()));
            }
        }
        v.sort();
        v
    }
}

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
    /// Size of the master quorum (with --zk, e.g. 2 of 3 masters): the
    /// elected master leads only once this many masters contend in
    /// ZooKeeper, as a Mesos master waits for a quorum of its replicated
    /// log. Durability of the registry itself is ZooKeeper's own quorum.
    #[arg(long = "quorum", env = "MESOS_QUORUM")]
    pub quorum: Option<u32>,
    /// ZooKeeper session timeout: a leader cut off from ZooKeeper this long
    /// stops leading and exits.
    #[arg(long = "zk_session_timeout", env = "MESOS_ZK_SESSION_TIMEOUT", default_value = "10secs", value_parser = duration)]
    pub zk_session_timeout: Duration,
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
    /// After a failover, how long admitted agents have to re-register
    /// before they are marked unreachable.
    #[arg(long = "agent_reregister_timeout", env = "MESOS_AGENT_REREGISTER_TIMEOUT", default_value = "10mins", value_parser = duration)]
    pub agent_reregister_timeout: Duration,
    /// The most agents (a percentage of those recovered, e.g. `100%`) the
    /// master marks unreachable after `--agent_reregister_timeout`; past it
    /// none are (a safety net against a mass outage after failover).
    #[arg(
        long = "recovery_agent_removal_limit",
        env = "MESOS_RECOVERY_AGENT_REMOVAL_LIMIT",
        default_value = "100%"
    )]
    pub recovery_agent_removal_limit: String,
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
    /// Initial role weights, `role=weight,...` (UPDATE_WEIGHTS changes them;
    /// weights stored in the registry take precedence).
    #[arg(long = "weights", env = "MESOS_WEIGHTS")]
    pub weights: Option<String>,
    /// If set, the only roles frameworks may subscribe to (comma-separated);
    /// `*` is always allowed.
    #[arg(long = "roles", env = "MESOS_ROLES")]
    pub roles: Option<String>,
    /// Smallest offer worth making: alternatives separated by `|`, each a
    /// `;`-separated list of quantities.
    #[arg(
        long = "min_allocatable_resources",
        env = "MESOS_MIN_ALLOCATABLE_RESOURCES",
        default_value = "cpus:0.01|mem:32"
    )]
    pub min_allocatable_resources: String,
    /// Offers outstanding longer than this are rescinded (none by default).
    #[arg(long = "offer_timeout", env = "MESOS_OFFER_TIMEOUT", value_parser = duration)]
    pub offer_timeout: Option<Duration>,
    /// Where the registry (weights, quota, agents) lives: `local` (a file
    /// under --work_dir; the default when --work_dir is set) or `in_memory`
    /// (lost when the master stops; the default without --work_dir).
    #[arg(long = "registry", env = "MESOS_REGISTRY")]
    pub registry: Option<String>,
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
            ("zk_session_timeout".to_string(), d(self.zk_session_timeout)),
            (
                "agent_reregister_timeout".to_string(),
                d(self.agent_reregister_timeout),
            ),
            (
                "recovery_agent_removal_limit".to_string(),
                self.recovery_agent_removal_limit.clone(),
            ),
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
        v.push((
            "min_allocatable_resources".to_string(),
            self.min_allocatable_resources.clone(),
        ));
        if let Some(t) = self.offer_timeout {
            v.push(("offer_timeout".to_string(), d(t)));
        }
        for (k, val) in [
            ("hostname", &self.hostname),
            ("work_dir", &self.work_dir),
            ("cluster", &self.cluster),
            ("zk", &self.zk),
            ("quorum", &self.quorum.map(|q| q.to_string())),
            ("weights", &self.weights),
            ("roles", &self.roles),
            ("registry", &self.registry),
        ] {
            if let Some(val) = val {
                v.push((k.to_string(), val.clone()));
            }
        }
        v.sort();
        v
    }
}

/// Parses `--weights`: `role=weight,role=weight`.
pub fn parse_weights(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (role, w) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not of the form role=weight"))?;
        let role = role.trim();
        corral_api::roles::validate_role(role)?;
        let w: f64 = w
            .trim()
            .parse()
            .map_err(|_| format!("weight '{w}' of role '{role}' is not a number"))?;
        if !w.is_finite() || w <= 0.0 {
            return Err(format!("weight of role '{role}' must be positive, got {w}"));
        }
        out.push((role.to_string(), w));
    }
    Ok(out)
}

/// Parses `--roles`: a comma-separated whitelist.
pub fn parse_roles(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for role in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        corral_api::roles::validate_role(role)?;
        out.push(role.to_string());
    }
    Ok(out)
}

/// Parses `--recovery_agent_removal_limit` (`50%`, `100%`, or a fraction
/// `0.5`) into a fraction in [0, 1].
pub fn parse_removal_limit(value: &str) -> Result<f64, String> {
    let v = value.trim();
    let fraction = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => v.parse::<f64>(),
    }
    .map_err(|_| format!("'{value}' is not a percentage"))?;
    if (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err(format!("'{value}' is not between 0% and 100%"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_and_roles() {
        assert_eq!(
            parse_weights("eng=2, ops=0.5").unwrap(),
            vec![("eng".to_string(), 2.0), ("ops".to_string(), 0.5)]
        );
        assert!(parse_weights("eng").is_err());
        assert!(parse_weights("eng=0").is_err());
        assert!(parse_weights("eng=x").is_err());
        assert!(parse_weights("/bad=1").is_err());
        assert_eq!(parse_roles("a,b/c").unwrap(), vec!["a", "b/c"]);
        assert!(parse_roles("a,..").is_err());
    }

    #[test]
    fn removal_limit_forms() {
        assert_eq!(super::parse_removal_limit("100%"), Ok(1.0));
        assert_eq!(super::parse_removal_limit("50%"), Ok(0.5));
        assert_eq!(super::parse_removal_limit("0.25"), Ok(0.25));
        assert!(super::parse_removal_limit("150%").is_err());
        assert!(super::parse_removal_limit("lots").is_err());
    }
}

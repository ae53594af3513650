//! The executor's configuration, read from the Mesos executor environment.

use std::path::PathBuf;
use std::time::Duration;

use corral_api::stout;

use crate::ExecutorError;

/// Mesos' default `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// Mesos' default agent `--recovery_timeout`.
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default cap of the re-subscription backoff.
pub const DEFAULT_SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Grace period between SIGTERM and SIGKILL when neither the KILL event nor
/// the task carries a kill policy.
pub const DEFAULT_KILL_GRACE_PERIOD: Duration = Duration::from_secs(3);
/// How long the executor waits for the agent to acknowledge the terminal
/// updates once every task is terminal.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(10);

/// Everything the executor needs to know about its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `MESOS_FRAMEWORK_ID`.
    pub framework_id: String,
    /// `MESOS_EXECUTOR_ID`.
    pub executor_id: String,
    /// `MESOS_AGENT_ENDPOINT`: `ip:port` of the agent's HTTP API.
    pub agent_endpoint: String,
    /// `MESOS_SANDBOX` (or `MESOS_DIRECTORY`): the tasks' working directory.
    pub sandbox: PathBuf,
    /// `MESOS_CHECKPOINT=1`: survive agent restarts by re-subscribing.
    pub checkpoint: bool,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`: SIGTERM -> SIGKILL delay on SHUTDOWN.
    pub shutdown_grace_period: Duration,
    /// `MESOS_RECOVERY_TIMEOUT`: how long to keep trying to re-subscribe.
    pub recovery_timeout: Duration,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX`: cap of the re-subscription backoff.
    pub subscription_backoff_max: Duration,
    /// Kill grace period when no kill policy says otherwise.
    pub default_kill_grace_period: Duration,
    /// Bounded wait for the acknowledgements of terminal updates before exit.
    pub ack_wait: Duration,
    /// `CORRAL_DOCKER_SOCKET`: the Docker engine, for DOCKER tasks.
    pub docker_socket: Option<String>,
    /// `MESOS_CONTAINER_NAME`: the Docker container's name.
    pub container_name: Option<String>,
    /// `MESOS_AGENT_ID` (or `MESOS_SLAVE_ID`).
    pub agent_id: Option<String>,
    /// `MESOS_CONTAINER_ID`.
    pub container_id: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ExecutorError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (name -> value), so callers
    /// and tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ExecutorError> {
        let required = |name: &'static str| -> Result<String, ExecutorError> {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ExecutorError::MissingEnv(name))
        };
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ExecutorError> {
            match lookup(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(value) => {
                    stout::parse_duration(&value).map_err(|reason| ExecutorError::InvalidEnv {
                        name,
                        value,
                        reason,
                    })
                }
            }
        };

        let framework_id = required("MESOS_FRAMEWORK_ID")?;
        let executor_id = required("MESOS_EXECUTOR_ID")?;
        let agent_endpoint = required("MESOS_AGENT_ENDPOINT")?;
        let sandbox = match required("MESOS_SANDBOX") {
            Ok(dir) => dir,
            Err(_) => required("MESOS_DIRECTORY")
                .map_err(|_| ExecutorError::MissingEnv("MESOS_SANDBOX"))?,
        };
        let checkpoint = match lookup("MESOS_CHECKPOINT").as_deref().map(str::trim) {
            None | Some("") | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(ExecutorError::InvalidEnv {
                    name: "MESOS_CHECKPOINT",
                    value: other.to_string(),
                    reason: "expected 1 or 0".to_string(),
                })
            }
        };

        Ok(Config {
            framework_id,
            executor_id,
            agent_endpoint,
            sandbox: PathBuf::from(sandbox),
            checkpoint,
            shutdown_grace_period: duration(
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
                DEFAULT_SHUTDOWN_GRACE_PERIOD,
            )?,
            recovery_timeout: duration("MESOS_RECOVERY_TIMEOUT", DEFAULT_RECOVERY_TIMEOUT)?,
            subscription_backoff_max: duration(
                "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                DEFAULT_SUBSCRIPTION_BACKOFF_MAX,
            )?,
            default_kill_grace_period: DEFAULT_KILL_GRACE_PERIOD,
            ack_wait: DEFAULT_ACK_WAIT,
            docker_socket: lookup("CORRAL_DOCKER_SOCKET").filter(|v| !v.is_empty()),
            container_name: lookup("MESOS_CONTAINER_NAME").filter(|v| !v.is_empty()),
            agent_id: lookup("MESOS_AGENT_ID")
                .or_else(|| lookup("MESOS_SLAVE_ID"))
                .filter(|v| !v.is_empty()),
            container_id: lookup("MESOS_CONTAINER_ID").filter(|v| !v.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("MESOS_FRAMEWORK_ID", "fw-1"),
        ("MESOS_EXECUTOR_ID", "ex-1"),
        ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
        ("MESOS_DIRECTORY", "/tmp/sandbox"),
    ];

    #[test]
    fn reads_required_and_defaults() {
        let cfg = Config::from_lookup(env(BASE)).unwrap();
        assert_eq!(cfg.framework_id, "fw-1");
        assert_eq!(cfg.executor_id, "ex-1");
        assert_eq!(cfg.agent_endpoint, "127.0.0.1:5051");
        assert_eq!(cfg.sandbox, PathBuf::from("/tmp/sandbox"));
        assert!(!cfg.checkpoint);
        assert_eq!(cfg.shutdown_grace_period, DEFAULT_SHUTDOWN_GRACE_PERIOD);
        assert_eq!(cfg.recovery_timeout, DEFAULT_RECOVERY_TIMEOUT);
    }

    #[test]
    fn reads_optional_durations_and_checkpoint() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("MESOS_SANDBOX", "/mnt/mesos/sandbox"),
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "7secs"),
            ("MESOS_RECOVERY_TIMEOUT", "1mins"),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "500ms"),
        ]);
        let cfg = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(cfg.sandbox, PathBuf::from("/mnt/mesos/sandbox"));
        assert!(cfg.checkpoint);
        assert_eq!(cfg.shutdown_grace_period, Duration::from_secs(7));
        assert_eq!(cfg.recovery_timeout, Duration::from_secs(60));
        assert_eq!(cfg.subscription_backoff_max, Duration::from_millis(500));
    }

    #[test]
    fn missing_variable_is_named() {
        for missing in [
            "MESOS_FRAMEWORK_ID",
            "MESOS_EXECUTOR_ID",
            "MESOS_AGENT_ENDPOINT",
        ] {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = Config::from_lookup(env(&pairs)).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
        let pairs: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "MESOS_DIRECTORY")
            .collect();
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(err.to_string().contains("MESOS_SANDBOX"), "{err}");
    }

    #[test]
    fn invalid_values_are_errors() {
        let mut pairs = BASE.to_vec();
        pairs.push(("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5"));
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(
            err.to_string()
                .contains("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"),
            "{err}"
        );
        let mut pairs = BASE.to_vec();
        pairs.push(("MESOS_CHECKPOINT", "yes"));
        assert!(Config::from_lookup(env(&pairs)).is_err());
    }
}

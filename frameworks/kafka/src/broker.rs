//! A broker as the framework keeps it (stored as JSON in the state store)
//! and as its API shows it (mesos/kafka's field names), its failover
//! backoff and placement stickiness, and the parameters of `broker add`
//! and `broker update`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::constraints::{format_constraints, parse_constraints};
use crate::expr::{format_map, format_period, parse_map, parse_period, PortRange};

/// Options a broker may not be given: the framework generates them.
pub const RESERVED_OPTIONS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "log.dirs",
    "log.dir",
    "listener-url",
    "advertised-listener-url",
    "storage-engine",
];

/// Failover: how long to wait before starting a failed broker again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// The first wait, ms.
    pub delay_ms: u64,
    /// The longest wait, ms.
    pub max_delay_ms: u64,
    /// Consecutive failures after which the broker is deactivated.
    pub max_tries: Option<u32>,
    /// Consecutive failures so far.
    pub failures: u32,
    /// When the last one happened (epoch ms).
    pub failure_time: Option<i64>,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            delay_ms: 60_000,
            max_delay_ms: 600_000,
            max_tries: None,
            failures: 0,
            failure_time: None,
        }
    }
}

impl Failover {
    /// The wait after the current run of failures: the delay, doubled per
    /// failure after the first, at most the max delay.
    pub fn current_delay_ms(&self) -> u64 {
        if self.failures == 0 {
            return 0;
        }
        let shift = (self.failures - 1).min(30);
        self.delay_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_delay_ms.max(self.delay_ms))
    }

    /// When the broker may be started again (epoch ms).
    pub fn delay_expires(&self) -> i64 {
        match self.failure_time {
            Some(t) if self.failures > 0 => t.saturating_add(self.current_delay_ms() as i64),
            _ => 0,
        }
    }

    /// Whether the broker waits out its failover delay at `now`.
    pub fn waiting(&self, now: i64) -> bool {
        self.delay_expires() > now
    }

    /// Whether `max_tries` failures have happened in a row.
    pub fn max_tries_exceeded(&self) -> bool {
        self.max_tries.is_some_and(|m| self.failures >= m)
    }

    /// One more failure at `now`.
    pub fn register_failure(&mut self, now: i64) {
        self.failures = self.failures.saturating_add(1);
        self.failure_time = Some(now);
    }

    /// The run of failures ended.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.failure_time = None;
    }
}

/// Stickiness: a broker stopped less than `period` ago starts again on the
/// host it last ran on (where its reserved resources and volume are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stickiness {
    /// The period, ms.
    pub period_ms: u64,
    /// The host of the last start.
    pub hostname: Option<String>,
    /// When it last stopped (epoch ms); `None` while running or never run.
    pub stop_time: Option<i64>,
}

impl Default for Stickiness {
    fn default() -> Self {
        Self {
            period_ms: 600_000,
            hostname: None,
            stop_time: None,
        }
    }
}

impl Stickiness {
    /// When stickiness ends (epoch ms), if the broker is stopped.
    pub fn expires(&self) -> Option<i64> {
        self.stop_time
            .map(|t| t.saturating_add(self.period_ms as i64))
    }

    /// Whether the broker must go back to its last host at `now`.
    pub fn sticky(&self, now: i64) -> bool {
        match (&self.hostname, self.stop_time) {
            (None, _) => false,
            // Never stopped since its start (a scheduler that lost its
            // task): back where it ran.
            (Some(_), None) => true,
            (Some(_), Some(_)) => self.expires().is_some_and(|e| now < e),
        }
    }
}

/// A broker's running (or starting, or stopping) task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// TaskID.
    pub id: String,
    /// The agent.
    pub slave_id: String,
    /// The executor (the task id: a command task).
    pub executor_id: String,
    /// The agent's hostname.
    pub hostname: String,
    /// `host:port` clients connect to.
    pub endpoint: String,
    /// `pending`, `starting`, `running`, `stopping`, `reconciling`.
    pub state: String,
    /// The agent's attributes.
    pub attributes: BTreeMap<String, String>,
    /// When it was reported running (epoch ms).
    #[serde(default)]
    pub running_since: Option<i64>,
    /// When it was last asked to stop (epoch ms).
    #[serde(default)]
    pub kill_sent: Option<i64>,
}

/// Where a broker's reserved resources and persistent volume are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The agent holding them.
    pub agent_id: String,
    /// Its hostname.
    pub hostname: String,
    /// The address brokers are reached at on it.
    pub address: String,
    /// The volume's persistence id.
    pub persistence_id: String,
    /// The reserved ports (client, then controller for Apache Kafka).
    pub ports: Vec<u64>,
    /// The port of the agent's own API: with `hostname` and `address` it
    /// tells where the agent runs, so that an agent back there under a new
    /// AgentID (its checkpointed reservations and volumes kept) is known
    /// for the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_port: Option<i32>,
}

/// One broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    /// Its id (Kafka's `node.id`).
    pub id: u32,
    /// Whether it should run.
    pub active: bool,
    /// CPUs.
    pub cpus: f64,
    /// Memory, MB.
    pub mem: u64,
    /// JVM heap, MB (Apache Kafka).
    pub heap: u64,
    /// Persistent volume size, MB.
    pub disk: u64,
    /// The client port or range (`None`: any offered port).
    pub port: Option<PortRange>,
    /// Constraints, field -> op (`hostname` -> `like:a`).
    pub constraints: BTreeMap<String, String>,
    /// Broker options (`server.properties` entries; tansu: flags).
    pub options: BTreeMap<String, String>,
    /// Placement stickiness.
    pub stickiness: Stickiness,
    /// Failover backoff.
    pub failover: Failover,
    /// Its task, while one exists.
    pub task: Option<Task>,
    /// Its reserved resources and volume, once placed.
    pub reservation: Option<Reservation>,
    /// Updated while running: the change applies at the next start.
    pub needs_restart: bool,
    /// Deactivated after `failover.max_tries` failures in a row.
    pub failed: bool,
}

impl Broker {
    /// A new broker with mesos/kafka's defaults.
    pub fn new(id: u32) -> Self {
        Self {
            id,
            active: false,
            cpus: 1.0,
            mem: 2048,
            heap: 1024,
            disk: 1024,
            port: None,
            constraints: BTreeMap::new(),
            options: BTreeMap::new(),
            stickiness: Stickiness::default(),
            failover: Failover::default(),
            task: None,
            reservation: None,
            needs_restart: false,
            failed: false,
        }
    }

    /// mesos/kafka's state text: the task's state, else `starting` (with
    /// the failures so far), `failed ... next start ...` while waiting out
    /// the failover delay, `failed` once deactivated, or `stopped`.
    pub fn state(&self, now: i64) -> String {
        if let Some(t) = &self.task {
            let mut s = t.state.clone();
            if self.needs_restart {
                s.push_str(" (modified, needs restart)");
            }
            return s;
        }
        let tries = |s: &mut String| {
            if let Some(m) = self.failover.max_tries {
                s.push_str(&format!("/{m}"));
            }
        };
        if self.active {
            if self.failover.waiting(now) {
                let mut s = format!("failed {}", self.failover.failures);
                tries(&mut s);
                s.push_str(&format!(
                    ", next start in {}",
                    format_period((self.failover.delay_expires() - now).max(0) as u64)
                ));
                return s;
            }
            if self.failover.failures > 0 {
                let mut s = format!("starting {}", self.failover.failures + 1);
                tries(&mut s);
                return s;
            }
            return "starting".into();
        }
        if self.failed {
            let mut s = format!("failed {}", self.failover.failures);
            tries(&mut s);
            return s;
        }
        "stopped".into()
    }

    /// The client endpoint while a task runs.
    pub fn endpoint(&self) -> Option<&str> {
        self.task
            .as_ref()
            .filter(|t| t.state == "running")
            .map(|t| t.endpoint.as_str())
    }

    /// The broker as the API shows it (mesos/kafka's fields, plus
    /// `state`, `disk` and `reservation`).
    pub fn to_json(&self, now: i64) -> Value {
        let task = self.task.as_ref().map(|t| {
            json!({
                "id": t.id,
                "slaveId": t.slave_id,
                "executorId": t.executor_id,
                "hostname": t.hostname,
                "endpoint": t.endpoint,
                "state": t.state,
                "attributes": t.attributes,
            })
        });
        let mut stickiness = json!({"period": format_period(self.stickiness.period_ms)});
        if let Some(h) = &self.stickiness.hostname {
            stickiness["hostname"] = json!(h);
        }
        if let Some(t) = self.stickiness.stop_time {
            stickiness["stopTime"] = json!(t);
            stickiness["expires"] = json!(self.stickiness.expires());
        }
        let mut failover = json!({
            "delay": format_period(self.failover.delay_ms),
            "maxDelay": format_period(self.failover.max_delay_ms),
        });
        if let Some(m) = self.failover.max_tries {
            failover["maxTries"] = json!(m);
        }
        if self.failover.failures > 0 {
            failover["failures"] = json!(self.failover.failures);
            failover["failureTime"] = json!(self.failover.failure_time);
        }
        json!({
            "id": self.id.to_string(),
            "active": self.active,
            "state": self.state(now),
            "cpus": self.cpus,
            "mem": self.mem,
            "heap": self.heap,
            "disk": self.disk,
            "port": self.port.map(|p| p.to_string()),
            "volume": self.reservation.as_ref().map(|r| r.persistence_id.clone()),
            "constraints": format_constraints(&self.constraints),
            "options": format_map(&self.options),
            "stickiness": stickiness,
            "failover": failover,
            "task": task,
            "reservation": self.reservation,
            "needsRestart": self.needs_restart,
        })
    }
}

/// The settings `broker add` and `broker update` may change; `None`
/// leaves one as it is. An empty text unsets an optional setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerParams {
    /// `cpus`.
    pub cpus: Option<f64>,
    /// `mem` (MB).
    pub mem: Option<u64>,
    /// `heap` (MB).
    pub heap: Option<u64>,
    /// `disk` (MB, the volume's size; fixed once the volume exists).
    pub disk: Option<u64>,
    /// `port` (`Some(None)`: auto).
    pub port: Option<Option<PortRange>>,
    /// `constraints`.
    pub constraints: Option<BTreeMap<String, String>>,
    /// `options`.
    pub options: Option<BTreeMap<String, String>>,
    /// `stickinessPeriod` (ms).
    pub stickiness_period: Option<u64>,
    /// `failoverDelay` (ms).
    pub failover_delay: Option<u64>,
    /// `failoverMaxDelay` (ms).
    pub failover_max_delay: Option<u64>,
    /// `failoverMaxTries` (`Some(None)`: none).
    pub failover_max_tries: Option<Option<u32>>,
}

/// The parameters `add` and `update` accept (mesos/kafka's names, and
/// their CLI spellings).
pub const PARAMS: &[&str] = &[
    "cpus",
    "mem",
    "heap",
    "disk",
    "port",
    "constraints",
    "options",
    "stickinessPeriod",
    "failoverDelay",
    "failoverMaxDelay",
    "failoverMaxTries",
];

impl BrokerParams {
    /// Parses the query parameters (besides `broker`); a refusal names the
    /// parameter.
    pub fn parse(query: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut p = Self::default();
        for (k, v) in query {
            let bad = |why: String| format!("{k}: {why}");
            match k.as_str() {
                "broker" | "timeout" => {}
                "cpus" => {
                    let c: f64 = v
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{v:?} is not a number")))?;
                    if !c.is_finite() || c <= 0.0 || c > 1024.0 {
                        return Err(bad(format!("{v} must be more than 0 and at most 1024")));
                    }
                    p.cpus = Some(c);
                }
                "mem" | "heap" | "disk" => {
                    let n: u64 = v
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{v:?} is not a whole number of MB")))?;
                    if n == 0 || n > 16 * 1024 * 1024 {
                        return Err(bad(format!("{n} must be between 1 and 16777216 MB")));
                    }
                    match k.as_str() {
                        "mem" => p.mem = Some(n),
                        "heap" => p.heap = Some(n),
                        _ => p.disk = Some(n),
                    }
                }
                "port" => {
                    p.port = Some(if v.trim().is_empty() || v.trim() == "auto" {
                        None
                    } else {
                        Some(PortRange::parse(v).map_err(bad)?)
                    });
                }
                "constraints" => {
                    p.constraints = Some(parse_constraints(v).map_err(bad)?);
                }
                "options" => {
                    let map: BTreeMap<String, String> =
                        parse_map(v).map_err(bad)?.into_iter().collect();
                    if let Some(r) = map.keys().find(|k| RESERVED_OPTIONS.contains(&k.as_str())) {
                        return Err(bad(format!(
                            "{r} is set by the framework and cannot be given"
                        )));
                    }
                    p.options = Some(map);
                }
                "stickinessPeriod" => {
                    p.stickiness_period = Some(parse_period(v).map_err(bad)?);
                }
                "failoverDelay" => p.failover_delay = Some(parse_period(v).map_err(bad)?),
                "failoverMaxDelay" => p.failover_max_delay = Some(parse_period(v).map_err(bad)?),
                "failoverMaxTries" => {
                    p.failover_max_tries =
                        Some(if v.trim().is_empty() {
                            None
                        } else {
                            Some(
                                v.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(
                                    || bad(format!("{v:?} is not a positive number")),
                                )?,
                            )
                        });
                }
                other => {
                    return Err(format!(
                        "{other}: unknown parameter (known: broker, {})",
                        PARAMS.join(", ")
                    ))
                }
            }
        }
        Ok(p)
    }

    /// Applies the parameters to `b`; refuses (naming the parameter) what
    /// would leave it inconsistent.
    pub fn apply(&self, b: &mut Broker) -> Result<(), String> {
        let mut n = b.clone();
        if let Some(v) = self.cpus {
            n.cpus = v;
        }
        if let Some(v) = self.mem {
            n.mem = v;
        }
        if let Some(v) = self.heap {
            n.heap = v;
        }
        if let Some(v) = self.disk {
            if b.reservation.is_some() && v != b.disk {
                return Err(format!(
                    "disk: broker {}'s volume exists with {} MB; remove the broker to change its size",
                    b.id, b.disk
                ));
            }
            n.disk = v;
        }
        if let Some(v) = self.port {
            n.port = v;
        }
        if let Some(v) = &self.constraints {
            n.constraints = v.clone();
        }
        if let Some(v) = &self.options {
            n.options = v.clone();
        }
        if let Some(v) = self.stickiness_period {
            n.stickiness.period_ms = v;
        }
        if let Some(v) = self.failover_delay {
            n.failover.delay_ms = v;
        }
        if let Some(v) = self.failover_max_delay {
            n.failover.max_delay_ms = v;
        }
        if let Some(v) = self.failover_max_tries {
            n.failover.max_tries = v;
        }
        if n.heap > n.mem {
            return Err(format!(
                "heap: {} MB is more than the broker's mem ({} MB)",
                n.heap, n.mem
            ));
        }
        if n.failover.max_delay_ms < n.failover.delay_ms {
            return Err(format!(
                "failoverMaxDelay: {} is shorter than failoverDelay {}",
                format_period(n.failover.max_delay_ms),
                format_period(n.failover.delay_ms)
            ));
        }
        *b = n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn failover_backs_off_exponentially_up_to_the_max() {
        let mut f = Failover {
            delay_ms: 1000,
            max_delay_ms: 5000,
            max_tries: Some(4),
            ..Default::default()
        };
        assert_eq!(f.current_delay_ms(), 0);
        assert!(!f.waiting(0));
        f.register_failure(100);
        assert_eq!(f.current_delay_ms(), 1000);
        assert!(f.waiting(1099) && !f.waiting(1100));
        f.register_failure(2000);
        assert_eq!(f.current_delay_ms(), 2000);
        f.register_failure(5000);
        assert_eq!(f.current_delay_ms(), 4000);
        assert!(!f.max_tries_exceeded());
        f.register_failure(9000);
        assert_eq!(f.current_delay_ms(), 5000, "capped at the max delay");
        assert!(f.max_tries_exceeded());
        for _ in 0..100 {
            f.register_failure(9000);
        }
        assert_eq!(f.current_delay_ms(), 5000, "no overflow");
        f.reset();
        assert_eq!(f.delay_expires(), 0);
    }

    #[test]
    fn stickiness_lasts_its_period_after_a_stop() {
        let mut s = Stickiness {
            period_ms: 1000,
            ..Default::default()
        };
        assert!(!s.sticky(0), "never placed");
        s.hostname = Some("a".into());
        assert!(
            s.sticky(0),
            "running (or lost) without a stop: back to its host"
        );
        s.stop_time = Some(500);
        assert!(s.sticky(1499));
        assert!(!s.sticky(1500));
    }

    #[test]
    fn parameters_are_validated_and_named() {
        let p = BrokerParams::parse(&q(&[
            ("cpus", "0.5"),
            ("mem", "256"),
            ("heap", "128"),
            ("port", "31000..31010"),
            ("constraints", "hostname=unique"),
            ("options", "num.io.threads=16,log.retention.hours=1"),
            ("failoverDelay", "5s"),
            ("failoverMaxDelay", "1m"),
            ("failoverMaxTries", "3"),
            ("stickinessPeriod", "30m"),
        ]))
        .expect("parses");
        let mut b = Broker::new(0);
        p.apply(&mut b).expect("applies");
        assert_eq!((b.cpus, b.mem, b.heap), (0.5, 256, 128));
        assert_eq!(b.failover.max_tries, Some(3));
        assert_eq!(b.stickiness.period_ms, 1_800_000);
        let j = b.to_json(0);
        assert_eq!(j["id"], "0");
        assert_eq!(j["port"], "31000..31010");
        assert_eq!(j["failover"]["delay"], "5s");
        assert_eq!(j["failover"]["maxDelay"], "1m");
        assert_eq!(j["stickiness"]["period"], "30m");
        assert_eq!(j["options"], "log.retention.hours=1,num.io.threads=16");
        assert_eq!(j["state"], "stopped");
        for (k, v) in [
            ("cpus", "x"),
            ("cpus", "-1"),
            ("cpus", "NaN"),
            ("mem", "0"),
            ("mem", "1.5"),
            ("port", "99999"),
            ("constraints", "hostname=near:x"),
            ("options", "node.id=3"),
            ("failoverDelay", "10"),
            ("failoverMaxTries", "0"),
            ("bogus", "1"),
        ] {
            let e = BrokerParams::parse(&q(&[(k, v)])).expect_err(k);
            assert!(e.starts_with(k), "{e}");
        }
        let heap = BrokerParams::parse(&q(&[("heap", "4096")])).expect("parses");
        let e = heap.apply(&mut b).expect_err("heap > mem");
        assert!(e.starts_with("heap"), "{e}");
        assert_eq!(b.heap, 128, "a refused update changes nothing");
        let delays = BrokerParams::parse(&q(&[("failoverMaxDelay", "1s")])).expect("parses");
        assert!(delays.apply(&mut b).is_err());
    }

    #[test]
    fn state_text() {
        let mut b = Broker::new(1);
        b.active = true;
        b.failover.max_tries = Some(3);
        assert_eq!(b.state(0), "starting");
        b.failover.register_failure(0);
        assert!(
            b.state(10).starts_with("failed 1/3, next start in"),
            "{}",
            b.state(10)
        );
        assert_eq!(b.state(60_000), "starting 2/3");
        b.active = false;
        b.failed = true;
        assert_eq!(b.state(60_000), "failed 1/3");
    }
}

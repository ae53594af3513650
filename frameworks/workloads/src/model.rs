//! Requests and deploys, in Singularity's JSON.
//!
//! A **request** is a workload's identity: its type, instances, owners,
//! schedule and placement. A **deploy** is how it runs: command or Docker
//! image, arguments, environment, URIs, resources, health check, and how a
//! new deploy replaces the old one. Field names and enum values are
//! Singularity's (`requestType`, `instances`, `scheduleTimeZone`,
//! `deployHealthTimeoutSeconds`, `resources.memoryMb`, ...), so a team's
//! existing request and deploy documents are accepted as they are; fields
//! this framework does not use are accepted and ignored. Corral's own
//! additions are marked as such.
//!
//! [`Request::validate`] and [`Deploy::validate`] refuse what cannot run,
//! naming the field (`schedule`, `resources.cpus`, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schedule::{Schedule, ScheduleError};

/// Longest request or deploy id.
pub const MAX_ID_LEN: usize = 100;
/// Most instances of one request.
pub const MAX_INSTANCES: u32 = 10_000;

/// What kind of workload a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestType {
    /// Long-running, with ports, load-balanced when asked.
    Service,
    /// Long-running, no ports.
    Worker,
    /// Runs on a schedule.
    Scheduled,
    /// Runs when asked.
    OnDemand,
    /// Runs once per deploy.
    RunOnce,
}

impl RequestType {
    /// Whether its tasks are meant to keep running.
    pub fn long_running(self) -> bool {
        matches!(self, RequestType::Service | RequestType::Worker)
    }
}

/// The form of `schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScheduleType {
    /// A cron expression (5 or 6 fields), or an ISO 8601 repeating interval.
    Cron,
    /// Quartz's 6/7-field form (seconds first); read as cron with seconds.
    Quartz,
}

/// How instances spread over agents (Singularity's `slavePlacement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlavePlacement {
    /// At most one instance of the request per agent.
    Separate,
    /// At most one per agent for the same deploy.
    SeparateByDeploy,
    /// At most one per agent for the same request.
    SeparateByRequest,
    /// Prefer spreading, allow sharing.
    Optimistic,
    /// Pack onto agents as offers allow.
    Greedy,
    /// One instance on every agent.
    SpreadAllSlaves,
}

/// Corral addition: what a scheduled run does when the previous one is
/// still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyPolicy {
    /// Skip the new run (recorded as skipped).
    #[default]
    Skip,
    /// Run both.
    Allow,
    /// Kill the running one, start the new one.
    Replace,
}

/// A request (Singularity's `SingularityRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Unique id.
    pub id: String,
    /// The kind of workload.
    pub request_type: RequestType,
    /// Instances (long-running types; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Owners (e-mail addresses or names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<String>>,
    /// SCHEDULED: cron expression or ISO 8601 repeating interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// SCHEDULED: Quartz form (used when `schedule` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quartz_schedule: Option<String>,
    /// The form of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_type: Option<ScheduleType>,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_time_zone: Option<String>,
    /// Retries of a failed run (scheduled and on-demand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries_on_failure: Option<u32>,
    /// Kill runs of non-long-running requests after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_old_non_long_running_tasks_after_millis: Option<u64>,
    /// How long a scheduled run is expected to take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_expected_runtime_millis: Option<u64>,
    /// Wait at least this long after a task finishes before rescheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_at_least_millis_after_task_finishes_for_reschedule: Option<u64>,
    /// Spread instances evenly over the agents' `rack` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_sensitive: Option<bool>,
    /// Only these racks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_affinity: Option<Vec<String>>,
    /// How instances spread over agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_placement: Option<SlavePlacement>,
    /// Agents must have these attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_slave_attributes: Option<BTreeMap<String, String>>,
    /// Agents with reserved attributes are used only if allowed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_slave_attributes: Option<BTreeMap<String, String>>,
    /// SERVICE: join the load balancer once healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balanced: Option<bool>,
    /// Skip health checks for this request's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_healthchecks: Option<bool>,
    /// A group the request belongs to (access control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Corral addition: Marathon-style constraints, `[field, OPERATOR, value?]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<Vec<String>>>,
    /// Corral addition: SCHEDULED runs start only once every parent
    /// request's latest run has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// Corral addition: what to do when a run is due while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// Corral addition: a due run not started within this long is recorded
    /// as missed (default 60 000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness_allowance_millis: Option<u64>,
}

/// Resources of each instance (Singularity's `resources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPUs.
    pub cpus: f64,
    /// Memory, MB.
    pub memory_mb: f64,
    /// Ports to allocate.
    #[serde(default)]
    pub num_ports: u32,
    /// Disk, MB.
    #[serde(default)]
    pub disk_mb: f64,
}

/// A volume in the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Path in the container.
    pub container_path: String,
    /// Path on the agent, for host volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RO` or `RW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A Docker port mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// `LITERAL` or `FROM_OFFER` (the index of an allocated port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port_type: Option<String>,
    /// The port, or the index of an allocated one.
    pub container_port: u32,
    /// `LITERAL` or `FROM_OFFER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_type: Option<String>,
    /// The port, or the index of an allocated one.
    pub host_port: u32,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// Docker settings of a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    /// The image.
    pub image: String,
    /// `BRIDGE`, `HOST` or `NONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Port mappings (BRIDGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Privileged container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Pull the image before every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_pull_image: Option<bool>,
    /// `docker run` parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
}

/// Container settings of a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    /// `MESOS` or `DOCKER`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    /// Docker settings (`DOCKER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
}

/// A deploy (Singularity's `SingularityDeploy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deploy {
    /// The request it deploys.
    pub request_id: String,
    /// Unique within the request.
    pub id: String,
    /// The command (run by a shell unless `arguments` are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments: `command` is then run directly with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// URIs fetched into the sandbox first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// Container settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_info: Option<ContainerInfo>,
    /// Resources of each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Labels of the tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// A version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// HTTP health check path, called once the task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_uri: Option<String>,
    /// Which allocated port the health check uses (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_port_index: Option<u32>,
    /// `HTTP` or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_protocol: Option<String>,
    /// Seconds between failed checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_interval_seconds: Option<u64>,
    /// Timeout of one check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_timeout_seconds: Option<u64>,
    /// Retries of one check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_max_retries: Option<u32>,
    /// Longest time for health checks to pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_max_total_timeout_seconds: Option<u64>,
    /// Without a health check: running this long counts as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consider_healthy_after_running_for_seconds: Option<u64>,
    /// How long new instances have to become healthy before the deploy
    /// fails (and is rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_health_timeout_seconds: Option<u64>,
    /// Skip health checks during this deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_healthchecks_on_deploy: Option<bool>,
    /// Instances replaced per step (default: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_instance_count_per_step: Option<u32>,
    /// Wait between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_step_wait_time_ms: Option<u64>,
    /// Advance steps automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_advance_deploy_steps: Option<bool>,
    /// Failed new tasks retried before the deploy fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retries: Option<u32>,
    /// The allocated port the load balancer sends traffic to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_port_index: Option<u32>,
    /// The path the service serves under the load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_base_path: Option<String>,
    /// Load balancer groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_groups: Option<Vec<String>>,
    /// Corral: each instance of a SERVICE or WORKER keeps its data in a
    /// persistent volume on reserved resources, and comes back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<PersistentVolume>,
}

/// A stateful instance's volume (Corral's addition to the deploy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolume {
    /// Where it is mounted, relative to the sandbox (`data`).
    pub container_path: String,
    /// Its size.
    pub size_mb: f64,
    /// `local` (the agent's disk, the default) or `hdfs` (kept in HDFS by
    /// the agent's storage backend, so it can come back elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl PersistentVolume {
    /// The persistence id of `instance` of `request`: stable across
    /// deploys, so every deploy finds the instance's data.
    pub fn persistence_id(request_id: &str, instance: u32) -> String {
        format!("wl-{request_id}-{instance}")
    }

    /// Whether it is kept in HDFS.
    pub fn hdfs(&self) -> bool {
        self.backend
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case("hdfs"))
    }
}

/// `POST /api/deploys` (Singularity's `SingularityDeployRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployRequest {
    /// The deploy.
    pub deploy: Deploy,
    /// Unpause the request once the deploy succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpause_on_successful_deploy: Option<bool>,
    /// A message about the deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a document was refused: the field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The field (`schedule`, `resources.cpus`, `deploy.id`, ...).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Ids: 1-100 characters of `[A-Za-z0-9_-]` (they become parts of Mesos
/// task ids and store keys).
pub fn validate_id(field: &str, id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            field,
            "only letters, digits, '_' and '-' are allowed",
        ));
    }
    Ok(())
}

impl Request {
    /// The schedule of a SCHEDULED request, parsed.
    pub fn parsed_schedule(&self) -> Result<Option<Schedule>, Invalid> {
        let (text, field) = match (&self.schedule, &self.quartz_schedule) {
            (Some(s), _) => (s, "schedule"),
            (None, Some(q)) => (q, "quartzSchedule"),
            (None, None) => return Ok(None),
        };
        Schedule::parse(text, self.schedule_time_zone.as_deref())
            .map(Some)
            .map_err(|e| match e {
                ScheduleError::TimeZone(_) => invalid("scheduleTimeZone", e.to_string()),
                e => invalid(field, e.to_string()),
            })
    }

    /// Refuses what cannot run, naming the field.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_id("id", &self.id)?;
        match self.instances {
            Some(0) if self.request_type.long_running() => {
                return Err(invalid("instances", "must be at least 1"))
            }
            Some(n) if n > MAX_INSTANCES => {
                return Err(invalid("instances", format!("at most {MAX_INSTANCES}")))
            }
            Some(n) if n > 1 && !self.request_type.long_running() => {
                return Err(invalid(
                    "instances",
                    "only SERVICE and WORKER requests run several instances",
                ))
            }
            _ => {}
        }
        let schedule = self.parsed_schedule()?;
        let has_parents = self.depends_on.as_ref().is_some_and(|p| !p.is_empty());
        match (self.request_type, schedule) {
            (RequestType::Scheduled, None) if !has_parents => {
                return Err(invalid(
                    "schedule",
                    "a SCHEDULED request needs a schedule (or dependsOn: it then runs after its parents)",
                ))
            }
            (t, Some(_)) if t != RequestType::Scheduled => {
                return Err(invalid(
                    "schedule",
                    "only SCHEDULED requests have a schedule",
                ))
            }
            _ => {}
        }
        if self.load_balanced == Some(true) && self.request_type != RequestType::Service {
            return Err(invalid(
                "loadBalanced",
                "only SERVICE requests are load balanced",
            ));
        }
        if let Some(constraints) = &self.constraints {
            for (i, c) in constraints.iter().enumerate() {
                corral_sdk::offers::Constraint::parse(c)
                    .map_err(|e| invalid(format!("constraints[{i}]"), e.reason))?;
            }
        }
        if let Some(parents) = &self.depends_on {
            if self.request_type != RequestType::Scheduled {
                return Err(invalid(
                    "dependsOn",
                    "only SCHEDULED requests depend on others",
                ));
            }
            for (i, p) in parents.iter().enumerate() {
                validate_id(&format!("dependsOn[{i}]"), p)?;
                if *p == self.id {
                    return Err(invalid(
                        format!("dependsOn[{i}]"),
                        "a request cannot depend on itself",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Deploy {
    /// Refuses what cannot run for `request`, naming the field: a deploy
    /// of a load-balanced request needs a `serviceBasePath` and a port.
    pub fn validate_for(&self, request: &Request) -> Result<(), Invalid> {
        if self.persistent_volume.is_some() && !request.request_type.long_running() {
            return Err(invalid(
                "persistentVolume",
                "only SERVICE and WORKER requests keep data in a persistent volume",
            ));
        }
        if request.load_balanced == Some(true) {
            match self.service_base_path.as_deref() {
                None => {
                    return Err(invalid(
                        "serviceBasePath",
                        "a deploy of a load-balanced request needs the path it is routed by",
                    ))
                }
                // It is written into HAProxy's configuration: a character
                // HAProxy would read otherwise ('#', spaces, quotes) would
                // stop every service's routing from being reloaded.
                Some(p)
                    if !p.starts_with('/')
                        || p.len() > 200
                        || !p.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
                        }) =>
                {
                    return Err(invalid(
                        "serviceBasePath",
                        "must be a path starting with '/' of letters, digits and / - _ . ~ (at most 200)",
                    ))
                }
                Some(_) => {}
            }
            if self.resources.as_ref().is_none_or(|r| r.num_ports == 0) {
                return Err(invalid(
                    "resources.numPorts",
                    "a load-balanced request needs at least one port",
                ));
            }
        }
        Ok(())
    }

    /// Refuses what cannot run, naming the field.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_id("requestId", &self.request_id)?;
        validate_id("id", &self.id)?;
        let docker = self
            .container_info
            .as_ref()
            .filter(|c| c.kind.eq_ignore_ascii_case("DOCKER"));
        if let Some(c) = &self.container_info {
            if !c.kind.eq_ignore_ascii_case("DOCKER") && !c.kind.eq_ignore_ascii_case("MESOS") {
                return Err(invalid("containerInfo.type", "must be MESOS or DOCKER"));
            }
            if docker.is_some() && c.docker.as_ref().is_none_or(|d| d.image.trim().is_empty()) {
                return Err(invalid(
                    "containerInfo.docker.image",
                    "a DOCKER container needs an image",
                ));
            }
        }
        if docker.is_none() && self.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(invalid(
                "command",
                "a deploy without a Docker image needs a command",
            ));
        }
        if let Some(r) = &self.resources {
            for (field, v) in [
                ("resources.cpus", r.cpus),
                ("resources.memoryMb", r.memory_mb),
                ("resources.diskMb", r.disk_mb),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(field, "must be a non-negative number"));
                }
            }
            if r.cpus <= 0.0 {
                return Err(invalid("resources.cpus", "must be more than 0"));
            }
            if r.memory_mb <= 0.0 {
                return Err(invalid("resources.memoryMb", "must be more than 0"));
            }
            if r.num_ports > 1000 {
                return Err(invalid("resources.numPorts", "at most 1000"));
            }
        }
        if let Some(v) = &self.persistent_volume {
            let path = v.container_path.as_str();
            if path.is_empty()
                || path.starts_with('/')
                || path.split('/').any(|part| part == ".." || part.is_empty())
            {
                return Err(invalid(
                    "persistentVolume.containerPath",
                    "must be a relative path inside the sandbox, without '..'",
                ));
            }
            if !v.size_mb.is_finite() || v.size_mb <= 0.0 {
                return Err(invalid("persistentVolume.sizeMb", "must be more than 0"));
            }
            match v.backend.as_deref() {
                None => {}
                Some(b) if b.eq_ignore_ascii_case("local") || b.eq_ignore_ascii_case("hdfs") => {}
                Some(_) => {
                    return Err(invalid("persistentVolume.backend", "must be local or hdfs"))
                }
            }
        }
        let ports = self.resources.as_ref().map_or(0, |r| r.num_ports);
        for (field, index) in [
            ("healthcheckPortIndex", self.healthcheck_port_index),
            ("loadBalancerPortIndex", self.load_balancer_port_index),
        ] {
            if let Some(i) = index {
                if i >= ports {
                    return Err(invalid(
                        field,
                        format!("port index {i}, but the deploy asks for {ports} port(s) (resources.numPorts)"),
                    ));
                }
            }
        }
        if let Some(uri) = &self.healthcheck_uri {
            if ports == 0 {
                return Err(invalid(
                    "healthcheckUri",
                    "an HTTP health check needs a port: set resources.numPorts",
                ));
            }
            if !uri.starts_with('/') {
                return Err(invalid(
                    "healthcheckUri",
                    "must be a path starting with '/'",
                ));
            }
        }
        if let Some(p) = &self.healthcheck_protocol {
            if !p.eq_ignore_ascii_case("HTTP") && !p.eq_ignore_ascii_case("HTTPS") {
                return Err(invalid("healthcheckProtocol", "must be HTTP or HTTPS"));
            }
        }
        if self.deploy_instance_count_per_step == Some(0) {
            return Err(invalid("deployInstanceCountPerStep", "must be at least 1"));
        }
        if let Some(env) = &self.env {
            if let Some(k) = env
                .keys()
                .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
            {
                return Err(invalid(format!("env.{k}"), "not a valid variable name"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singularity_documents_are_accepted_as_they_are() {
        // Shaped like the examples in Singularity's documentation, with a
        // field this framework does not use (`emailConfigurationOverrides`).
        let request: Request = serde_json::from_str(
            r#"{"id":"TestService","owners":["feature_owner@example.com"],"daemon":true,
                "instances":2,"rackSensitive":false,"loadBalanced":true,
                "requestType":"SERVICE","emailConfigurationOverrides":{}}"#,
        )
        .expect("request");
        assert_eq!(request.request_type, RequestType::Service);
        assert_eq!(request.instances, Some(2));
        request.validate().expect("valid");
        let deploy: DeployRequest = serde_json::from_str(
            r#"{"deploy":{"requestId":"TestService","id":"5","command":"java -jar app.jar",
                "resources":{"cpus":0.1,"memoryMb":128,"numPorts":2},
                "uris":["http://example.com/app.jar"],"healthcheckUri":"/health",
                "deployHealthTimeoutSeconds":120,"customExecutorCmd":"/usr/bin/executor"},
                "unpauseOnSuccessfulDeploy":false}"#,
        )
        .expect("deploy");
        deploy.deploy.validate().expect("valid");
        let back = serde_json::to_value(&deploy.deploy).expect("json");
        assert_eq!(back["resources"]["memoryMb"], 128.0);
        assert_eq!(back["deployHealthTimeoutSeconds"], 120);
        let scheduled: Request = serde_json::from_str(
            r#"{"id":"nightly","requestType":"SCHEDULED","schedule":"0 2 * * *",
                "scheduleTimeZone":"Europe/Berlin","numRetriesOnFailure":2}"#,
        )
        .expect("scheduled");
        scheduled.validate().expect("valid");
        assert!(scheduled.parsed_schedule().expect("ok").is_some());
    }

    fn request(json: serde_json::Value) -> Request {
        serde_json::from_value(json).expect("request")
    }

    #[test]
    fn refusals_name_the_field() {
        use serde_json::json;
        let cases = [
            (json!({"id": "a b", "requestType": "WORKER"}), "id"),
            (
                json!({"id": "w", "requestType": "WORKER", "instances": 0}),
                "instances",
            ),
            (json!({"id": "s", "requestType": "SCHEDULED"}), "schedule"),
            (
                json!({"id": "s", "requestType": "SCHEDULED", "schedule": "61 * * * *"}),
                "schedule",
            ),
            (
                json!({"id": "s", "requestType": "SCHEDULED", "schedule": "0 * * * *", "scheduleTimeZone": "Nowhere/City"}),
                "scheduleTimeZone",
            ),
            (
                json!({"id": "w", "requestType": "WORKER", "schedule": "0 * * * *"}),
                "schedule",
            ),
            (
                json!({"id": "w", "requestType": "WORKER", "loadBalanced": true}),
                "loadBalanced",
            ),
            (
                json!({"id": "w", "requestType": "WORKER", "constraints": [["rack", "NEAR"]]}),
                "constraints[0]",
            ),
            (
                json!({"id": "s", "requestType": "SCHEDULED", "schedule": "@daily", "dependsOn": ["s"]}),
                "dependsOn[0]",
            ),
            (
                json!({"id": "o", "requestType": "ON_DEMAND", "instances": 3}),
                "instances",
            ),
        ];
        for (doc, field) in cases {
            let e = request(doc.clone()).validate().expect_err("refused");
            assert_eq!(e.field, field, "{doc}: {e}");
        }
        assert!(
            serde_json::from_value::<Request>(json!({"id": "x", "requestType": "DAEMON"})).is_err()
        );

        let deploy =
            |doc: serde_json::Value| -> Deploy { serde_json::from_value(doc).expect("deploy") };
        let cases = [
            (json!({"requestId": "r", "id": "1"}), "command"),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "resources": {"cpus": 0, "memoryMb": 1}}),
                "resources.cpus",
            ),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "resources": {"cpus": 1, "memoryMb": -1}}),
                "resources.memoryMb",
            ),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "healthcheckUri": "/h"}),
                "healthcheckUri",
            ),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "resources": {"cpus": 1, "memoryMb": 1, "numPorts": 1}, "healthcheckPortIndex": 1}),
                "healthcheckPortIndex",
            ),
            (
                json!({"requestId": "r", "id": "1", "containerInfo": {"type": "DOCKER"}}),
                "containerInfo.docker.image",
            ),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "containerInfo": {"type": "RKT"}}),
                "containerInfo.type",
            ),
            (json!({"requestId": "r", "id": "1.0", "command": "x"}), "id"),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "deployInstanceCountPerStep": 0}),
                "deployInstanceCountPerStep",
            ),
            (
                json!({"requestId": "r", "id": "1", "command": "x", "env": {"A=B": "c"}}),
                "env.A=B",
            ),
        ];
        for (doc, field) in cases {
            let e = deploy(doc.clone()).validate().expect_err("refused");
            assert_eq!(e.field, field, "{doc}: {e}");
        }
        let docker = deploy(json!({"requestId": "r", "id": "1",
            "containerInfo": {"type": "DOCKER", "docker": {"image": "corral/busybox:test", "network": "BRIDGE",
                "portMappings": [{"containerPortType": "LITERAL", "containerPort": 8080, "hostPortType": "FROM_OFFER", "hostPort": 0}]}},
            "resources": {"cpus": 0.5, "memoryMb": 64, "numPorts": 1}}));
        docker.validate().expect("a Docker deploy needs no command");
    }
}

#[cfg(test)]
mod load_balanced_tests {
    use super::*;

    #[test]
    fn a_service_base_path_haproxy_could_misread_is_refused() {
        let request: Request = serde_json::from_value(serde_json::json!(
            {"id": "web", "requestType": "SERVICE", "loadBalanced": true}))
        .expect("request");
        let deploy = |path: &str| -> Deploy {
            serde_json::from_value(serde_json::json!({"requestId": "web", "id": "1",
                "command": "serve", "resources": {"cpus": 1, "memoryMb": 64, "numPorts": 1},
                "serviceBasePath": path}))
            .expect("deploy")
        };
        assert!(deploy("/web/v1.2_x-y~z").validate_for(&request).is_ok());
        for bad in ["web", "/a b", "/a#b", "/a\"b", "/a\\b"] {
            let e = deploy(bad).validate_for(&request).expect_err(bad);
            assert_eq!(e.field, "serviceBasePath", "{bad}");
        }
    }
}

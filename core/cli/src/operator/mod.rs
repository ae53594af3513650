//! The operator commands: `corral agents|frameworks|tasks|roles|weights|
//! quota|reservations|volumes|offers|maintenance|logs|top` read the
//! cluster, `corral reserve|unreserve|create-volume|destroy-volume|quota
//! set|weights set|teardown|drain` change it, all through the leading
//! master's operator API (`POST /api/v1`, Mesos v1 `Call`/`Response` in
//! JSON) and, for sandboxes and usage, the agents' `/files` and
//! `/monitor/statistics`. `corral completions` and `corral man` are
//! generated from the clap definitions.
//!
//! Output: aligned tables for people, `--json` for scripts (the operator
//! API's own objects, in Mesos' JSON shapes); colour only when stdout is a
//! terminal and `NO_COLOR` is unset. Exit codes: 0 done, 1 the master (or
//! an agent) refused or the object does not exist, 2 usage, 3 no master
//! reachable.
//!
//! One file per group: `agents`, `frameworks` (also `teardown`), `tasks`,
//! `roles` (also `weights`), `quota`, `reservations` (also `reserve`,
//! `unreserve`), `volumes` (also `create-volume`, `destroy-volume`),
//! `offers`, `maintenance` (also `drain`), `logs`, `top`, `docs`
//! (completions and man pages).

use std::fmt;
use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use corral_api::codec;
use corral_api::resources::Resources;
use corral_api::v1::{self, master as op};
use serde_json::Value;

pub mod agents;
pub mod docs;
pub mod frameworks;
pub mod logs;
pub mod maintenance;
pub mod offers;
pub mod quota;
pub mod reservations;
pub mod roles;
pub mod tasks;
pub mod top;
pub mod volumes;

/// Exit code: the master (or an agent) refused, or the object named does
/// not exist.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: the command line is wrong (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no master could be reached, or none leads.
pub const EXIT_UNREACHABLE: u8 = 3;

/// An error with its exit code; `main` prints the message and exits with
/// the code.
#[derive(Debug)]
pub struct Failure {
    /// [`EXIT_REFUSED`], [`EXIT_USAGE`] or [`EXIT_UNREACHABLE`].
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The master refused, or the object does not exist (exit 1).
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: EXIT_REFUSED,
        message: message.into(),
    }
    .into()
}

/// A usage error found after parsing (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
    .into()
}

/// No master reachable (exit 3).
pub fn unreachable(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: EXIT_UNREACHABLE,
        message: message.into(),
    }
    .into()
}

/// How long finding the leader may take (ZooKeeper included).
const DETECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the master is and how to print; every operator command takes it.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The master: host:port, http://host:port, a comma-separated list of
    /// masters (the leader is found through them), or
    /// zk://host:port[,host:port...]/path (the leader elected there).
    #[arg(
        long,
        env = "MESOS_MASTER",
        default_value = "127.0.0.1:5050",
        global = true,
        value_name = "MASTER"
    )]
    pub master: String,
    /// Print JSON (the operator API's objects, Mesos shapes) instead of a
    /// table; never coloured.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The leading master, found through `--master`.
pub struct Master {
    /// HTTP client for the master and the agents.
    pub http: reqwest::Client,
    /// The leader's `host:port`.
    pub address: String,
    /// `--master` as given.
    pub given: String,
}

/// What went wrong at the bottom of an error's chain ("Connection refused
/// (os error 111)"), after the top-level message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut root = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        root = s.to_string();
        source = s.source();
    }
    root
}

/// The name of a call or response type, as Mesos writes it.
fn call_name(call: &op::Call) -> &'static str {
    call.r#type
        .and_then(|t| op::call::Type::try_from(t).ok())
        .unwrap_or(op::call::Type::Unknown)
        .as_str_name()
}

/// A call of `ty` with nothing else set.
pub fn call(ty: op::call::Type) -> op::Call {
    op::Call {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

impl Master {
    /// Parses `--master` and finds the leader (exit 2 for a malformed
    /// value, 3 when no leader is found).
    pub async fn connect(target: &Target) -> Result<Master> {
        use corral_sdk::detector::{Detector, DetectorError, MasterSource};
        let given = target.master.trim().to_string();
        let source = MasterSource::parse(&given).map_err(|e| usage(format!("--master: {e}")))?;
        let detector = Detector::new(source);
        let leader = tokio::time::timeout(DETECT_TIMEOUT, detector.leader())
            .await
            .unwrap_or_else(|_| {
                Err(DetectorError::NoLeader(format!(
                    "no answer within {}s",
                    DETECT_TIMEOUT.as_secs()
                )))
            })
            .map_err(|e| match e {
                DetectorError::Invalid { .. } => usage(format!("--master: {e}")),
                DetectorError::NoLeader(reason) => unreachable(format!(
                    "no leading master found through --master {given}: {reason}; start one \
                     (corral master, corral dev) or point --master (or MESOS_MASTER) at a running \
                     master"
                )),
            })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build an HTTP client: {e}"))?;
        Ok(Master {
            http,
            address: leader,
            given,
        })
    }

    fn unreachable_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let via = if self.given == self.address {
            String::new()
        } else {
            format!(" (the leader found through --master {})", self.given)
        };
        unreachable(format!(
            "cannot reach the master at {}{via}: {}; is it running? Point --master (or \
             MESOS_MASTER) at a running master",
            self.address,
            error_chain(e)
        ))
    }

    /// Sends an operator call; the body of a 2xx answer (empty for calls
    /// that answer nothing). Non-2xx: exit 1 with the master's message (3
    /// for 503: no leader or shutting down).
    pub async fn send(&self, call: &op::Call) -> Result<Vec<u8>> {
        let name = call_name(call);
        let resp = self
            .http
            .post(format!("http://{}/api/v1", self.address))
            .header(reqwest::header::CONTENT_TYPE, corral_api::APPLICATION_JSON)
            .header(reqwest::header::ACCEPT, corral_api::APPLICATION_JSON)
            .body(codec::to_json(call))
            .send()
            .await
            .map_err(|e| self.unreachable_error(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable_error(&e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let message = if text.is_empty() {
            status.to_string()
        } else {
            text
        };
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(unreachable(format!(
                "the master at {} cannot answer {name} now ({status}): {message}",
                self.address
            )));
        }
        Err(refused(format!(
            "the master at {} refused {name} ({status}): {message}",
            self.address
        )))
    }

    /// Sends a call and decodes the master's answer.
    pub async fn query(&self, call: op::Call) -> Result<op::Response> {
        let name = call_name(&call);
        let body = self.send(&call).await?;
        codec::from_json::<op::Response>(&body).map_err(|e| {
            refused(format!(
                "the master at {} answered {name} with something that is not a Response: {e}",
                self.address
            ))
        })
    }

    /// Sends a call of `ty` alone and decodes the answer.
    pub async fn get(&self, ty: op::call::Type) -> Result<op::Response> {
        self.query(call(ty)).await
    }

    /// GET_STATE.
    pub async fn state(&self) -> Result<op::response::GetState> {
        Ok(self
            .get(op::call::Type::GetState)
            .await?
            .get_state
            .unwrap_or_default())
    }

    /// GET_AGENTS' agents.
    pub async fn agents(&self) -> Result<Vec<op::response::get_agents::Agent>> {
        Ok(self
            .get(op::call::Type::GetAgents)
            .await?
            .get_agents
            .unwrap_or_default()
            .agents)
    }

    /// The agent with this id, or exit 1 naming it.
    /// GET_AGENTS, failing with [`no_agent`] when `wanted` (an agent id
    /// given with `--agent`) is not among them.
    pub async fn agents_with(
        &self,
        wanted: Option<&str>,
    ) -> Result<Vec<op::response::get_agents::Agent>> {
        let agents = self.agents().await?;
        if let Some(a) = wanted {
            if !agents.iter().any(|x| agent_id(x) == a) {
                return Err(no_agent(a));
            }
        }
        Ok(agents)
    }

    pub async fn agent(&self, id: &str) -> Result<op::response::get_agents::Agent> {
        self.agents()
            .await?
            .into_iter()
            .find(|a| agent_id(a) == id)
            .ok_or_else(|| no_agent(id))
    }

    /// GETs a JSON document from an agent (`host:port`): exit 1 when it
    /// refuses, 3 when it cannot be reached.
    pub async fn agent_json(&self, endpoint: &str, path_and_query: &str) -> Result<Value> {
        let url = format!("http://{endpoint}{path_and_query}");
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, corral_api::APPLICATION_JSON)
            .send()
            .await
            .map_err(|e| {
                unreachable(format!(
                    "cannot reach the agent at {endpoint}: {}",
                    error_chain(&e)
                ))
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(refused(format!(
                "the agent at {endpoint} refused {path_and_query} ({status}): {}",
                text.trim()
            )));
        }
        serde_json::from_str(&text).map_err(|e| {
            refused(format!(
                "the agent at {endpoint} answered {path_and_query} with something that is not \
                 JSON: {e}"
            ))
        })
    }
}

/// The "no such agent" error.
pub fn no_agent(id: &str) -> anyhow::Error {
    refused(format!("no agent '{id}' (corral agents lists them)"))
}

/// An agent's id.
pub fn agent_id(a: &op::response::get_agents::Agent) -> &str {
    a.agent_info
        .id
        .as_ref()
        .map(|i| i.value.as_str())
        .unwrap_or("")
}

/// `host:port` of an agent's HTTP API: from its pid (`slave(1)@ip:port`),
/// else its hostname and port.
pub fn agent_endpoint(a: &op::response::get_agents::Agent) -> String {
    if let Some((_, addr)) = a.pid.as_deref().and_then(|p| p.split_once('@')) {
        return addr.to_string();
    }
    format!(
        "{}:{}",
        a.agent_info.hostname,
        a.agent_info.port.unwrap_or(5051)
    )
}

/// The sum of scalar resource `name`.
pub fn scalar(resources: &[v1::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
        .sum()
}

/// A number without noise: `1`, `0.5`, `1024`, `0.33`.
pub fn num(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// `used/total` of a scalar.
pub fn used_of(used: &[v1::Resource], total: &[v1::Resource], name: &str) -> String {
    format!("{}/{}", num(scalar(used, name)), num(scalar(total, name)))
}

/// Resources in Mesos' text form (`cpus(db):1;mem(db):128`), `-` when none.
pub fn resources_text(rs: &[v1::Resource]) -> String {
    if rs.is_empty() {
        return "-".into();
    }
    let mut plain: Vec<v1::Resource> = rs.to_vec();
    for r in &mut plain {
        // Where it is allocated is not what the text form says.
        r.allocation_info = None;
        corral_api::resources::upgrade(r);
    }
    Resources::from_vec(&plain).to_string()
}

/// A task state's name (`TASK_RUNNING`).
pub fn task_state(state: i32) -> &'static str {
    v1::TaskState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

/// Whether a task state is terminal.
pub fn is_terminal(state: i32) -> bool {
    use v1::TaskState as S;
    matches!(
        v1::TaskState::try_from(state),
        Ok(S::TaskFinished
            | S::TaskFailed
            | S::TaskKilled
            | S::TaskError
            | S::TaskLost
            | S::TaskDropped
            | S::TaskGone
            | S::TaskGoneByOperator)
    )
}

/// How long ago a time (nanoseconds since the epoch) was: `12s`, `5m`, `3h`,
/// `2d`.
pub fn ago(nanos: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let secs = (now - nanos as f64 / 1e9).max(0.0);
    if secs < 60.0 {
        format!("{}s", secs as u64)
    } else if secs < 3600.0 {
        format!("{}m", (secs / 60.0) as u64)
    } else if secs < 86_400.0 {
        format!("{}h", (secs / 3600.0) as u64)
    } else {
        format!("{}d", (secs / 86_400.0) as u64)
    }
}

/// Bytes for people: `512B`, `1.5KB`, `128MB`, `2GB`.
pub fn bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = v as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v}B")
    } else {
        format!("{}{}", num((value * 10.0).round() / 10.0), UNITS[unit])
    }
}

/// Writes text to stdout; a closed pipe (`corral tasks | head`) ends the
/// output quietly instead of panicking.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Prints JSON for scripts: pretty, one document, newline-terminated.
pub fn print_json(v: &Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ));
}

/// A list of messages as a JSON array in Mesos' shapes.
pub fn json_list<M: prost::Message + prost::Name>(items: &[M]) -> Value {
    Value::Array(items.iter().map(codec::to_json_value).collect())
}

/// Prints a table, coloured when stdout is a terminal (`paint` picks the
/// colour of a cell by column and text).
pub fn print_rows(headers: &[&str], rows: &[Vec<String>], paint: Option<crate::table::Paint>) {
    let colour = crate::table::colour_stdout();
    out(&crate::table::render_table(
        headers,
        rows,
        if colour { paint } else { None },
    ));
}

/// The colour of a task state: green running, yellow on the way, red
/// failed, plain otherwise.
pub fn state_colour(state: &str) -> Option<&'static str> {
    match state {
        "TASK_RUNNING" => Some("32"),
        "TASK_STAGING" | "TASK_STARTING" | "TASK_KILLING" => Some("33"),
        "TASK_FAILED"
        | "TASK_ERROR"
        | "TASK_LOST"
        | "TASK_DROPPED"
        | "TASK_GONE"
        | "TASK_GONE_BY_OPERATOR"
        | "TASK_UNREACHABLE" => Some("31"),
        _ => None,
    }
}

/// Parses `--resources` (Mesos text form or a JSON array), naming the flag
/// in the error (exit 2).
pub fn parse_resources(flag: &str, text: &str) -> Result<Vec<v1::Resource>> {
    if text.trim().is_empty() {
        return Err(usage(format!("{flag} is empty")));
    }
    let rs = corral_api::resources::parse(text).map_err(|e| {
        usage(format!(
            "{flag} '{text}': {e} (write it as 'cpus(ROLE):1;mem(ROLE):128' or as a JSON array \
             of Resource objects)"
        ))
    })?;
    if rs.is_empty() {
        return Err(usage(format!("{flag} '{text}' names no resource")));
    }
    Ok(rs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_sizes_read_well() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(1.0 / 3.0), "0.33");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KB");
        assert_eq!(bytes(128 * 1024 * 1024), "128MB");
    }

    #[test]
    fn agent_endpoints_come_from_the_pid() {
        let mut a = op::response::get_agents::Agent {
            pid: Some("slave(1)@10.0.0.3:5051".into()),
            ..Default::default()
        };
        assert_eq!(agent_endpoint(&a), "10.0.0.3:5051");
        a.pid = None;
        a.agent_info.hostname = "h".into();
        a.agent_info.port = Some(5052);
        assert_eq!(agent_endpoint(&a), "h:5052");
    }

    #[test]
    fn resources_print_in_the_text_form() {
        let rs = corral_api::resources::parse("cpus(db):1;mem:128").unwrap();
        assert_eq!(resources_text(&rs), "cpus(db):1;mem:128");
        assert_eq!(resources_text(&[]), "-");
    }

    #[test]
    fn bad_resources_name_the_flag() {
        let e = parse_resources("--resources", "cpus:x").unwrap_err();
        let f = e.downcast_ref::<Failure>().unwrap();
        assert_eq!(f.code, EXIT_USAGE);
        assert!(f.message.contains("--resources 'cpus:x'"), "{}", f.message);
    }
}

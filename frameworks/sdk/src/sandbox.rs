//! Reading a task's log files from its sandbox, as the master and agents
//! serve them: the task is looked up in the master
//! (`/master/tasks?task_id=`), its agent in `/master/slaves`, and the file
//! read through the agent's `/files/read` on the virtual sandbox path
//! `/frameworks/<framework>/executors/<executor>/runs/latest/<file>`.
//! A framework's API answers `corral ... logs` with it.

use std::time::Duration;

use serde::Serialize;

/// Largest chunk one read returns.
pub const MAX_CHUNK: u64 = 1 << 20;

/// A piece of a log file (Mesos' `/files/read` answer, plus where it came
/// from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    /// The bytes, as text (invalid UTF-8 replaced).
    pub data: String,
    /// Where they start.
    pub offset: u64,
    /// Where the next read starts.
    pub next_offset: u64,
    /// `agent` (the live sandbox) or `archive`.
    pub source: &'static str,
    /// The task's last state the master knows (`TASK_RUNNING`, ...), when
    /// it knows the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_state: Option<String>,
}

/// Which file of the sandbox: `stdout`, `stderr`, or a rotated one
/// (`stdout.1`).
pub fn valid_file(path: &str) -> bool {
    let base = path.split('.').next().unwrap_or("");
    let rest = &path[base.len()..];
    (base == "stdout" || base == "stderr")
        && (rest.is_empty()
            || rest
                .strip_prefix('.')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// Whether `task_id` can be put in a URL as it is (`[A-Za-z0-9._-]`).
pub fn plausible_task_id(task_id: &str) -> bool {
    !task_id.is_empty()
        && task_id.len() <= 400
        && task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What reading a live sandbox found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRead {
    /// The chunk, when the agent had it.
    pub chunk: Option<Chunk>,
    /// The task's executor (the task id for command tasks).
    pub executor: String,
    /// The task's last state the master knows.
    pub task_state: Option<String>,
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())?
        .json()
        .await
        .ok()
}

async fn agent_endpoint(http: &reqwest::Client, master: &str, agent: &str) -> Option<String> {
    let slaves = get_json(http, &format!("http://{master}/master/slaves")).await?;
    let slave = slaves["slaves"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == agent)?
        .clone();
    // `slave(1)@host:port`.
    let pid = slave["pid"].as_str()?;
    pid.split_once('@').map(|(_, addr)| addr.to_string())
}

/// Reads `length` bytes (at most [`MAX_CHUNK`]) of `file` of `task_id` of
/// `framework` from `offset`, through the master at `master` (`host:port`)
/// and the task's agent. `file` must be [`valid_file`] and `task_id`
/// [`plausible_task_id`] (the caller refuses others).
pub async fn read_live(
    http: &reqwest::Client,
    master: &str,
    framework: &str,
    task_id: &str,
    file: &str,
    offset: u64,
    length: u64,
) -> LiveRead {
    let length = length.min(MAX_CHUNK);
    let mut found = LiveRead {
        chunk: None,
        executor: task_id.to_string(),
        task_state: None,
    };
    let tasks = get_json(
        http,
        &format!(
            "http://{master}/master/tasks?task_id={task_id}&framework_id={framework}&limit=-1"
        ),
    )
    .await;
    let Some(task) = tasks
        .as_ref()
        .and_then(|t| t["tasks"].as_array())
        .and_then(|t| t.iter().find(|t| t["id"] == task_id))
        .cloned()
    else {
        return found;
    };
    found.task_state = task["state"].as_str().map(str::to_string);
    if let Some(e) = task["executor_id"].as_str().filter(|e| !e.is_empty()) {
        found.executor = e.to_string();
    }
    let agent = task["slave_id"].as_str().unwrap_or_default().to_string();
    let Some(endpoint) = agent_endpoint(http, master, &agent).await else {
        return found;
    };
    let path = format!(
        "/frameworks/{framework}/executors/{}/runs/latest/{file}",
        found.executor
    );
    // Every part of the path is `[A-Za-z0-9._-]` or `/`.
    let url =
        |at: u64| format!("http://{endpoint}/files/read?path={path}&offset={at}&length={length}");
    let Some(mut v) = get_json(http, &url(offset)).await else {
        return found;
    };
    // Asked past the end of a smaller file: it was rotated (stdout ->
    // stdout.1); the new one is read from its start.
    let shrunk = v["data"].as_str().is_some_and(str::is_empty)
        && v["offset"].as_u64().is_some_and(|at| at < offset);
    if shrunk {
        if let Some(w) = get_json(http, &url(0)).await {
            v = w;
        }
    }
    let data = v["data"].as_str().unwrap_or_default().to_string();
    let at = v["offset"].as_u64().unwrap_or(offset);
    found.chunk = Some(Chunk {
        next_offset: at + data.len() as u64,
        data,
        offset: at,
        source: "agent",
        task_state: found.task_state.clone(),
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_log_files_are_read() {
        for ok in ["stdout", "stderr", "stdout.1", "stderr.12"] {
            assert!(valid_file(ok), "{ok}");
        }
        for bad in [
            "stdout.",
            "stdout.x",
            "../stdout",
            "stdin",
            "stdout/..",
            "",
            "std",
        ] {
            assert!(!valid_file(bad), "{bad}");
        }
    }

    #[test]
    fn task_ids_that_would_change_the_url_are_not_plausible() {
        assert!(plausible_task_id("driver-20261204120000-0000.worker-1"));
        for bad in ["", "a/b", "a&b", "a b", "x?y"] {
            assert!(!plausible_task_id(bad), "{bad}");
        }
    }
}

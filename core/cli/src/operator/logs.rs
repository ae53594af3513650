//! `corral logs TASK_ID [-f] [--stderr] [--lines N]`: a task's stdout or
//! stderr, read from its agent's `/files/read` on the sandbox path
//! `/frameworks/<framework>/executors/<executor>/runs/latest/[tasks/<task>/]<file>`
//! (the task and its agent from GET_STATE; the agent's address from its
//! pid). `-f` keeps reading, polling at most every second, until the task
//! is terminal and its output read to the end.

use std::time::Duration;

use anyhow::Result;
use corral_api::v1::{self, master as op};
use serde_json::json;

use super::{
    agent_endpoint, agent_id, is_terminal, out, refused, task_state, usage, Master, Target,
};

/// Largest read the agent answers (Mesos: 16 pages).
const CHUNK: u64 = 64 * 1024;
/// The shortest and longest wait between polls with `-f`.
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(1);

/// `corral logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: Target,
    /// The task (`corral tasks --all` lists them).
    pub task_id: String,
    /// Keep printing what the task writes until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Read stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Start with the last N lines instead of the whole file.
    #[arg(long, value_name = "N")]
    pub lines: Option<usize>,
    /// The task's framework, when several frameworks have a task with this
    /// id.
    #[arg(long, value_name = "FRAMEWORK_ID")]
    pub framework: Option<String>,
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
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

/// The file of a task on its agent.
struct Sandbox<'a> {
    master: &'a Master,
    endpoint: String,
    path: String,
}

impl Sandbox<'_> {
    /// `/files/read` at `offset` (`None`: the size): (offset, data).
    async fn read(&self, offset: Option<u64>, length: u64) -> Result<(u64, String)> {
        let at = offset.map_or(-1, |o| o as i64);
        let v = self
            .master
            .agent_json(
                &self.endpoint,
                &format!(
                    "/files/read?path={}&offset={at}&length={length}",
                    encode(&self.path)
                ),
            )
            .await?;
        Ok((
            v["offset"].as_u64().unwrap_or(0),
            v["data"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// The file's size now.
    async fn size(&self) -> Result<u64> {
        Ok(self.read(None, 0).await?.0)
    }
}

/// Bytes a read advanced: the text's length, but never more than asked
/// (a character cut at the chunk's end comes back as one U+FFFD, which is
/// longer than the bytes it replaces).
fn advanced(data: &str, asked: u64) -> u64 {
    (data.len() as u64).min(asked)
}

/// Where the last `n` lines start: reads back from the end in chunks.
async fn last_lines_start(file: &Sandbox<'_>, size: u64, n: usize) -> Result<u64> {
    if n == 0 {
        return Ok(size);
    }
    let mut end = size;
    let mut newlines = 0usize;
    // A final newline ends the last line; it does not start one.
    let mut skip_final = true;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let (_, data) = file.read(Some(start), end - start).await?;
        let bytes = data.as_bytes();
        for (i, b) in bytes.iter().enumerate().rev() {
            if *b != b'\n' {
                skip_final = false;
                continue;
            }
            if skip_final {
                skip_final = false;
                continue;
            }
            newlines += 1;
            if newlines == n {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// Prints a chunk: the text itself, or a JSON line with `--json`.
fn emit(json_out: bool, offset: u64, data: &str) {
    if json_out {
        out(&format!(
            "{}\n",
            serde_json::to_string(&json!({"offset": offset, "data": data})).unwrap_or_default()
        ));
    } else {
        out(data);
    }
}

/// Reads from `offset` until a read comes back empty; the new offset. A
/// file that shrank (rotated) is read again from its start.
async fn read_on(file: &Sandbox<'_>, mut offset: u64, json_out: bool) -> Result<(u64, bool)> {
    let mut any = false;
    loop {
        let (at, data) = file.read(Some(offset), CHUNK).await?;
        if data.is_empty() {
            if at < offset {
                // Rotated: the new file is shorter than where we were.
                offset = 0;
                continue;
            }
            return Ok((offset, any));
        }
        emit(json_out, at, &data);
        any = true;
        offset = at + advanced(&data, CHUNK);
    }
}

fn find_task(
    state: &op::response::GetState,
    id: &str,
    framework: Option<&str>,
) -> Result<v1::Task> {
    let tasks = state.get_tasks.clone().unwrap_or_default();
    let found: Vec<v1::Task> = tasks
        .tasks
        .into_iter()
        .chain(tasks.completed_tasks)
        .filter(|t| t.task_id.value == id)
        .filter(|t| framework.is_none_or(|f| t.framework_id.value == f))
        .collect();
    let mut frameworks: Vec<&str> = found
        .iter()
        .map(|t| t.framework_id.value.as_str())
        .collect();
    frameworks.sort();
    frameworks.dedup();
    match frameworks.len() {
        0 => Err(refused(match framework {
            Some(f) => format!(
                "no task '{id}' in framework '{f}' (corral tasks --all --framework {f} lists them)"
            ),
            None => format!("no task '{id}' (corral tasks --all lists them)"),
        })),
        1 => {
            // The newest run of the id (a task id can be reused).
            let active = found.iter().find(|t| !is_terminal(t.state));
            Ok(active.or(found.last()).cloned().unwrap_or_default())
        }
        _ => Err(usage(format!(
            "task '{id}' exists in several frameworks ({}); pick one with --framework",
            frameworks.join(", ")
        ))),
    }
}

async fn task_now(master: &Master, task: &v1::Task) -> Result<Option<i32>> {
    let state = op::response::GetState {
        get_tasks: master.get(op::call::Type::GetTasks).await?.get_tasks,
        ..Default::default()
    };
    Ok(
        find_task(&state, &task.task_id.value, Some(&task.framework_id.value))
            .ok()
            .map(|t| t.state),
    )
}

pub async fn run(args: LogsArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let state = master.state().await?;
    let task = find_task(&state, args.task_id.trim(), args.framework.as_deref())?;
    let task_id = task.task_id.value.clone();
    let agent = state
        .get_agents
        .iter()
        .flat_map(|a| &a.agents)
        .find(|a| agent_id(a) == task.agent_id.value)
        .ok_or_else(|| {
            refused(format!(
                "task '{task_id}' ran on agent {}, which the master no longer knows; its sandbox \
                 cannot be read",
                task.agent_id.value
            ))
        })?;
    let endpoint = agent_endpoint(agent);
    let file = if args.stderr { "stderr" } else { "stdout" };
    let executor = task
        .executor_id
        .as_ref()
        .map(|e| e.value.clone())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| task_id.clone());
    let run = format!(
        "/frameworks/{}/executors/{executor}/runs/latest",
        task.framework_id.value
    );
    // A task of a task group has its own sandbox inside its executor's.
    let mut candidates = Vec::new();
    if executor != task_id {
        candidates.push(format!("{run}/tasks/{task_id}/{file}"));
    }
    candidates.push(format!("{run}/{file}"));
    let mut chosen = None;
    let mut last_error = None;
    for path in candidates {
        let sandbox = Sandbox {
            master: &master,
            endpoint: endpoint.clone(),
            path,
        };
        match sandbox.size().await {
            Ok(size) => {
                chosen = Some((sandbox, size));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some((sandbox, size)) = chosen else {
        let e = last_error.map(|e| e.to_string()).unwrap_or_default();
        return Err(refused(format!(
            "cannot read the {file} of task '{task_id}' on agent {} ({endpoint}): {e}",
            task.agent_id.value
        )));
    };
    let json_out = args.target.json;
    let start = match args.lines {
        Some(n) => last_lines_start(&sandbox, size, n).await?,
        None => 0,
    };
    let (mut offset, _) = read_on(&sandbox, start, json_out).await?;
    if !args.follow {
        return Ok(());
    }
    let mut wait = POLL_MIN;
    let mut terminal_seen = false;
    loop {
        let (next, any) = read_on(&sandbox, offset, json_out).await?;
        offset = next;
        if any {
            wait = POLL_MIN;
            continue;
        }
        if terminal_seen {
            // Terminal, and a whole poll interval later nothing more came:
            // the logger has written everything.
            return Ok(());
        }
        match task_now(&master, &task).await? {
            Some(s) if !is_terminal(s) => {}
            Some(s) => {
                terminal_seen = true;
                if !json_out {
                    eprintln!("task {task_id} is {}", task_state(s));
                }
                wait = POLL_MIN;
            }
            None => terminal_seen = true,
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(POLL_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_for_the_query() {
        assert_eq!(encode("/frameworks/a b/x&y"), "/frameworks/a%20b/x%26y");
    }

    #[test]
    fn a_replaced_character_does_not_skip_bytes() {
        assert_eq!(advanced("abc", 10), 3);
        assert_eq!(advanced("ab\u{fffd}", 3), 3);
    }

    #[test]
    fn several_frameworks_with_the_task_need_framework() {
        let task = |fw: &str| v1::Task {
            task_id: v1::TaskId { value: "t".into() },
            framework_id: v1::FrameworkId { value: fw.into() },
            state: v1::TaskState::TaskRunning as i32,
            ..Default::default()
        };
        let state = op::response::GetState {
            get_tasks: Some(op::response::GetTasks {
                tasks: vec![task("a"), task("b")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = find_task(&state, "t", None).unwrap_err().to_string();
        assert!(e.contains("--framework"), "{e}");
        assert_eq!(
            find_task(&state, "t", Some("b"))
                .unwrap()
                .framework_id
                .value,
            "b"
        );
        let e = find_task(&state, "x", None).unwrap_err().to_string();
        assert!(e.contains("no task 'x'"), "{e}");
    }
}

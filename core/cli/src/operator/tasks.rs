//! `corral tasks`: GET_STATE's tasks (active, and completed with `--all`),
//! filtered by framework, state and agent.

use anyhow::Result;
use corral_api::v1;

use super::{
    ago, is_terminal, json_list, num, print_json, print_rows, scalar, state_colour, task_state,
    usage, Master, Target,
};

/// `corral tasks`.
#[derive(clap::Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only the tasks of this framework (its id).
    #[arg(long, value_name = "FRAMEWORK_ID")]
    pub framework: Option<String>,
    /// Only tasks in this state (TASK_RUNNING, TASK_FINISHED, ...; `running`
    /// works too). A terminal state searches the completed tasks as well.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only the tasks on this agent (its id).
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: Option<String>,
    /// Also list completed tasks.
    #[arg(long)]
    pub all: bool,
}

/// `TASK_RUNNING` from `TASK_RUNNING`, `running` or `task_running`.
pub fn parse_state(given: &str) -> Result<v1::TaskState> {
    let upper = given.trim().to_ascii_uppercase();
    let name = if upper.starts_with("TASK_") {
        upper
    } else {
        format!("TASK_{upper}")
    };
    v1::TaskState::from_str_name(&name).ok_or_else(|| {
        usage(format!(
            "--state '{given}' is not a task state (TASK_STAGING, TASK_STARTING, TASK_RUNNING, \
             TASK_KILLING, TASK_FINISHED, TASK_FAILED, TASK_KILLED, TASK_ERROR, TASK_LOST, \
             TASK_DROPPED, TASK_UNREACHABLE, TASK_GONE, TASK_GONE_BY_OPERATOR, TASK_UNKNOWN)"
        ))
    })
}

/// When the task last changed state (its newest status' timestamp).
fn updated(t: &v1::Task) -> String {
    t.statuses
        .iter()
        .filter_map(|s| s.timestamp)
        .fold(None, |m: Option<f64>, ts| Some(m.map_or(ts, |m| m.max(ts))))
        .map(|ts| ago((ts * 1e9) as i64))
        .unwrap_or_else(|| "-".into())
}

pub async fn run(args: TasksArgs) -> Result<()> {
    let state_filter = args.state.as_deref().map(parse_state).transpose()?;
    let master = Master::connect(&args.target).await?;
    let state = master.state().await?;
    let tasks = state.get_tasks.clone().unwrap_or_default();
    let with_completed = args.all || state_filter.is_some_and(|s| is_terminal(s as i32));
    let mut list: Vec<v1::Task> = tasks.tasks;
    if with_completed {
        list.extend(tasks.completed_tasks);
    }
    list.retain(|t| {
        args.framework
            .as_deref()
            .is_none_or(|f| t.framework_id.value == f.trim())
            && args
                .agent
                .as_deref()
                .is_none_or(|a| t.agent_id.value == a.trim())
            && state_filter.is_none_or(|s| t.state == s as i32)
    });
    list.sort_by(|a, b| {
        (&a.framework_id.value, &a.task_id.value).cmp(&(&b.framework_id.value, &b.task_id.value))
    });
    if args.target.json {
        print_json(&json_list(&list));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.task_id.value.clone(),
                t.name.clone(),
                task_state(t.state).to_string(),
                t.framework_id.value.clone(),
                t.agent_id.value.clone(),
                num(scalar(&t.resources, "cpus")),
                num(scalar(&t.resources, "mem")),
                updated(t),
            ]
        })
        .collect();
    let paint = |col: usize, text: &str| if col == 2 { state_colour(text) } else { None };
    print_rows(
        &[
            "ID",
            "NAME",
            "STATE",
            "FRAMEWORK",
            "AGENT",
            "CPUS",
            "MEM MB",
            "UPDATED",
        ],
        &rows,
        Some(&paint),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_taken_in_several_spellings() {
        for given in ["TASK_RUNNING", "running", "task_running"] {
            assert_eq!(parse_state(given).unwrap(), v1::TaskState::TaskRunning);
        }
        let e = parse_state("sleeping").unwrap_err().to_string();
        assert!(e.contains("--state 'sleeping'"), "{e}");
    }
}

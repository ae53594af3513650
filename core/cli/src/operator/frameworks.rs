//! `corral frameworks` (GET_STATE's frameworks, with their task counts)
//! and `corral teardown FRAMEWORK_ID` (TEARDOWN).

use std::collections::BTreeMap;

use anyhow::Result;
use corral_api::codec;
use corral_api::v1::master as op;
use serde_json::json;

use super::{
    call, is_terminal, json_list, num, out, print_json, print_rows, refused, scalar, Master, Target,
};

type Framework = op::response::get_frameworks::Framework;

/// `corral frameworks`.
#[derive(clap::Args)]
pub struct FrameworksArgs {
    #[command(flatten)]
    pub target: Target,
    /// Also list completed (torn down or failed over past their timeout)
    /// frameworks.
    #[arg(long)]
    pub all: bool,
}

/// `corral teardown`.
#[derive(clap::Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub target: Target,
    /// The framework to tear down (its tasks are killed); `corral
    /// frameworks` lists them.
    pub framework_id: String,
}

pub fn framework_id(f: &Framework) -> &str {
    f.framework_info
        .id
        .as_ref()
        .map(|i| i.value.as_str())
        .unwrap_or("")
}

/// The framework's roles (`roles`, or the old single `role`).
pub fn roles(f: &Framework) -> String {
    let info = &f.framework_info;
    if !info.roles.is_empty() {
        return info.roles.join(",");
    }
    info.role.clone().unwrap_or_else(|| "*".into())
}

fn state(f: &Framework, completed: bool) -> &'static str {
    if completed {
        "completed"
    } else if !f.connected {
        "disconnected"
    } else if f.active {
        "active"
    } else {
        "inactive"
    }
}

fn row(f: &Framework, completed: bool, tasks: &BTreeMap<String, (usize, usize)>) -> Vec<String> {
    let id = framework_id(f);
    let (running, done) = tasks.get(id).copied().unwrap_or((0, 0));
    vec![
        id.to_string(),
        f.framework_info.name.clone(),
        roles(f),
        f.framework_info
            .principal
            .clone()
            .unwrap_or_else(|| "-".into()),
        state(f, completed).to_string(),
        running.to_string(),
        done.to_string(),
        num(scalar(&f.allocated_resources, "cpus")),
        num(scalar(&f.allocated_resources, "mem")),
        f.offers.len().to_string(),
    ]
}

const HEADERS: [&str; 10] = [
    "ID",
    "NAME",
    "ROLES",
    "PRINCIPAL",
    "STATE",
    "TASKS",
    "DONE",
    "CPUS",
    "MEM MB",
    "OFFERS",
];

fn print(frameworks: &[(Framework, bool)], state: &op::response::GetState) {
    // Tasks by framework: (active, completed).
    let mut tasks: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    if let Some(t) = &state.get_tasks {
        for task in t.tasks.iter().chain(&t.completed_tasks) {
            let e = tasks.entry(task.framework_id.value.clone()).or_default();
            if is_terminal(task.state) {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
    }
    let rows: Vec<Vec<String>> = frameworks
        .iter()
        .map(|(f, completed)| row(f, *completed, &tasks))
        .collect();
    let paint = |col: usize, text: &str| match (col, text) {
        (4, "active") => Some("32"),
        (4, "completed") => None,
        (4, _) => Some("33"),
        _ => None,
    };
    print_rows(&HEADERS, &rows, Some(&paint));
}

pub async fn run(args: FrameworksArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let state = master.state().await?;
    let all = state.get_frameworks.clone().unwrap_or_default();
    let mut list: Vec<(Framework, bool)> = all.frameworks.into_iter().map(|f| (f, false)).collect();
    if args.all {
        list.extend(all.completed_frameworks.into_iter().map(|f| (f, true)));
    }
    if args.target.json {
        let items: Vec<Framework> = list.into_iter().map(|(f, _)| f).collect();
        print_json(&json_list(&items));
        return Ok(());
    }
    print(&list, &state);
    Ok(())
}

pub async fn teardown(args: TeardownArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let id = args.framework_id.trim().to_string();
    let before = master.state().await?;
    let frameworks = before.get_frameworks.clone().unwrap_or_default();
    let Some(framework) = frameworks
        .frameworks
        .iter()
        .find(|f| framework_id(f) == id)
        .cloned()
    else {
        let completed = frameworks
            .completed_frameworks
            .iter()
            .any(|f| framework_id(f) == id);
        return Err(refused(if completed {
            format!("framework '{id}' has already completed; nothing to tear down")
        } else {
            format!("no framework '{id}' (corral frameworks lists them)")
        }));
    };
    let mut c = call(op::call::Type::Teardown);
    c.teardown = Some(op::call::Teardown {
        framework_id: corral_api::v1::FrameworkId { value: id.clone() },
    });
    master.send(&c).await?;
    // Read back: the framework must be gone from the active ones.
    let after = master.state().await?;
    let still = after
        .get_frameworks
        .as_ref()
        .is_some_and(|f| f.frameworks.iter().any(|f| framework_id(f) == id));
    if still {
        return Err(refused(format!(
            "the master accepted TEARDOWN of '{id}' but still lists it as active"
        )));
    }
    let completed = after
        .get_frameworks
        .as_ref()
        .and_then(|f| {
            f.completed_frameworks
                .iter()
                .find(|f| framework_id(f) == id)
                .cloned()
        })
        .unwrap_or(framework);
    if args.target.json {
        print_json(&json!({
            "torn_down": codec::to_json_value(&completed),
        }));
        return Ok(());
    }
    out(&format!(
        "tore down framework {id} ({}); it is no longer active:\n",
        completed.framework_info.name
    ));
    print(&[(completed, true)], &after);
    Ok(())
}

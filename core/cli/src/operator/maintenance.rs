//! `corral maintenance` (GET_MAINTENANCE_SCHEDULE and
//! GET_MAINTENANCE_STATUS) and `corral drain AGENT_ID` (DRAIN_AGENT; with
//! `--wait`, the tasks left on the agent until it is drained).

use std::time::Duration;

use anyhow::Result;
use corral_api::codec;
use corral_api::v1::{self, master as op};
use serde_json::json;

use super::{agent_id, call, is_terminal, out, print_json, print_rows, usage, Master, Target};

/// `corral maintenance`.
#[derive(clap::Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub target: Target,
}

/// `corral drain`.
#[derive(clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub target: Target,
    /// The agent to drain (its id; `corral agents` lists them).
    pub agent_id: String,
    /// The longest a task is given to end after it is asked to (stout
    /// duration: 30secs, 5mins); default: each task's own kill grace
    /// period.
    #[arg(long = "max_grace_period", value_name = "DURATION")]
    pub max_grace_period: Option<String>,
    /// Mark the agent gone once drained (it may never come back).
    #[arg(long = "mark_gone")]
    pub mark_gone: bool,
    /// Show the tasks left on the agent until it is drained.
    #[arg(long)]
    pub wait: bool,
}

fn machine(m: &v1::MachineId) -> String {
    match (m.hostname.as_deref(), m.ip.as_deref()) {
        (Some(h), Some(ip)) => format!("{h} ({ip})"),
        (Some(h), None) => h.to_string(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "-".into(),
    }
}

fn time(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| nanos.to_string())
}

pub async fn run(args: MaintenanceArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let schedule = master
        .get(op::call::Type::GetMaintenanceSchedule)
        .await?
        .get_maintenance_schedule
        .map(|s| s.schedule)
        .unwrap_or_default();
    let status = master
        .get(op::call::Type::GetMaintenanceStatus)
        .await?
        .get_maintenance_status
        .map(|s| s.status)
        .unwrap_or_default();
    if args.target.json {
        print_json(&json!({
            "schedule": codec::to_json_value(&schedule),
            "status": codec::to_json_value(&status),
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = schedule
        .windows
        .iter()
        .map(|w| {
            let u = &w.unavailability;
            vec![
                w.machine_ids
                    .iter()
                    .map(machine)
                    .collect::<Vec<_>>()
                    .join(", "),
                time(u.start.nanoseconds),
                u.duration
                    .as_ref()
                    .map(|d| {
                        corral_api::stout::format_duration(Duration::from_nanos(
                            d.nanoseconds.max(0) as u64,
                        ))
                    })
                    .unwrap_or_else(|| "forever".into()),
            ]
        })
        .collect();
    out("Schedule:\n");
    print_rows(&["MACHINES", "START", "DURATION"], &rows, None);
    let mut rows: Vec<Vec<String>> = status
        .draining_machines
        .iter()
        .map(|d| vec![machine(&d.id), "DRAINING".into()])
        .collect();
    rows.extend(
        status
            .down_machines
            .iter()
            .map(|m| vec![machine(m), "DOWN".into()]),
    );
    out("\nStatus:\n");
    print_rows(&["MACHINE", "MODE"], &rows, None);
    Ok(())
}

/// Tasks not yet terminal on the agent.
async fn remaining(master: &Master, agent: &str) -> Result<usize> {
    let tasks = master
        .get(op::call::Type::GetTasks)
        .await?
        .get_tasks
        .unwrap_or_default();
    Ok(tasks
        .tasks
        .iter()
        .filter(|t| t.agent_id.value == agent && !is_terminal(t.state))
        .count())
}

pub async fn drain(args: DrainArgs) -> Result<()> {
    let grace = args
        .max_grace_period
        .as_deref()
        .map(|g| {
            corral_api::stout::parse_duration(g)
                .map_err(|e| usage(format!("--max_grace_period '{g}': {e}")))
        })
        .transpose()?;
    let master = Master::connect(&args.target).await?;
    let id = args.agent_id.trim().to_string();
    master.agent(&id).await?;
    let mut c = call(op::call::Type::DrainAgent);
    c.drain_agent = Some(op::call::DrainAgent {
        agent_id: v1::AgentId { value: id.clone() },
        max_grace_period: grace.map(|g| prost_types::Duration {
            seconds: g.as_secs() as i64,
            nanos: g.subsec_nanos() as i32,
        }),
        mark_gone: args.mark_gone.then_some(true),
    });
    master.send(&c).await?;
    let json_out = args.target.json;
    if !args.wait {
        let left = remaining(&master, &id).await?;
        if json_out {
            print_json(&json!({"agent_id": id, "draining": true, "tasks_remaining": left}));
        } else {
            out(&format!(
                "agent {id} is draining: {left} task(s) remaining (corral drain --wait follows \
                 it; corral agents shows its state)\n"
            ));
        }
        return Ok(());
    }
    let mut last: Option<usize> = None;
    loop {
        let agents = master.agents().await?;
        let agent = agents.iter().find(|a| agent_id(a) == id);
        let drained = match agent {
            // Marked gone once drained: it left the agent list.
            None => true,
            Some(a) => a
                .drain_info
                .as_ref()
                .is_some_and(|d| d.state == v1::DrainState::Drained as i32),
        };
        let left = remaining(&master, &id).await?;
        if last != Some(left) {
            if json_out {
                print_json(&json!({"agent_id": id, "tasks_remaining": left}));
            } else {
                out(&format!("draining agent {id}: {left} task(s) remaining\n"));
            }
            last = Some(left);
        }
        if drained {
            if json_out {
                print_json(&json!({"agent_id": id, "drained": true}));
            } else {
                out(&format!("agent {id} is drained\n"));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

//! `corral top`: live usage. Every `--interval`, the agents from
//! GET_AGENTS (allocated and total) and each agent's containers from its
//! `/monitor/statistics` (CPU time and memory as the agent measures them;
//! CPU use is the CPU time between two samples over the time between
//! them). On a terminal the screen is redrawn; `--once` prints one sample
//! and exits.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::{agent_endpoint, agent_id, bytes, num, out, print_json, used_of, Master, Target};

/// `corral top`.
#[derive(clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: Target,
    /// Time between refreshes (2s, 500ms, 1min; a bare number is seconds).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Print one sample and exit (for scripts and tests).
    #[arg(long)]
    pub once: bool,
}

/// `--interval`: a stout duration or seconds; at least 100ms.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("'{s}' is not a duration")),
        Err(_) => corral_api::stout::parse_duration(s)?,
    };
    if d < Duration::from_millis(100) {
        return Err(format!("'{s}' is shorter than 100ms"));
    }
    Ok(d)
}

/// One container's sample.
#[derive(Clone)]
struct Sample {
    agent: String,
    framework: String,
    executor: String,
    container: String,
    timestamp: f64,
    cpu_secs: f64,
    cpus_limit: Option<f64>,
    mem_rss: Option<u64>,
    mem_limit: Option<u64>,
    /// CPUs used since the previous sample of this container.
    cpus_used: Option<f64>,
}

/// One agent's line.
struct AgentLine {
    id: String,
    address: String,
    cpus: String,
    mem: String,
    reachable: bool,
}

struct Snapshot {
    agents: Vec<AgentLine>,
    containers: Vec<Sample>,
}

async fn sample(master: &Master, previous: &HashMap<(String, String), Sample>) -> Result<Snapshot> {
    let agents = master.agents().await?;
    let mut lines = Vec::new();
    let mut containers = Vec::new();
    for a in &agents {
        let endpoint = agent_endpoint(a);
        let stats = master.agent_json(&endpoint, "/monitor/statistics").await;
        lines.push(AgentLine {
            id: agent_id(a).to_string(),
            address: endpoint.clone(),
            cpus: used_of(&a.allocated_resources, &a.total_resources, "cpus"),
            mem: used_of(&a.allocated_resources, &a.total_resources, "mem"),
            reachable: stats.is_ok(),
        });
        let Ok(Value::Array(list)) = stats else {
            continue;
        };
        for c in list {
            let s = &c["statistics"];
            let cpu_secs = s["cpus_user_time_secs"].as_f64().unwrap_or(0.0)
                + s["cpus_system_time_secs"].as_f64().unwrap_or(0.0);
            let mut sample = Sample {
                agent: agent_id(a).to_string(),
                framework: c["framework_id"].as_str().unwrap_or_default().to_string(),
                executor: c["executor_id"].as_str().unwrap_or_default().to_string(),
                container: c["container_id"].as_str().unwrap_or_default().to_string(),
                timestamp: s["timestamp"].as_f64().unwrap_or(0.0),
                cpu_secs,
                cpus_limit: s["cpus_limit"].as_f64(),
                mem_rss: s["mem_rss_bytes"].as_u64(),
                mem_limit: s["mem_limit_bytes"].as_u64(),
                cpus_used: None,
            };
            if let Some(p) = previous.get(&(sample.agent.clone(), sample.container.clone())) {
                let dt = sample.timestamp - p.timestamp;
                if dt > 0.0 {
                    sample.cpus_used = Some(((sample.cpu_secs - p.cpu_secs) / dt).max(0.0));
                }
            }
            containers.push(sample);
        }
    }
    containers.sort_by(|a, b| (&a.agent, &a.executor).cmp(&(&b.agent, &b.executor)));
    Ok(Snapshot {
        agents: lines,
        containers,
    })
}

fn keyed(s: &Snapshot) -> HashMap<(String, String), Sample> {
    s.containers
        .iter()
        .map(|c| ((c.agent.clone(), c.container.clone()), c.clone()))
        .collect()
}

/// CPUs in use, to a thousandth (`0.003`, `1.25`).
fn cpus(v: f64) -> String {
    let t = format!("{v:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(bytes).unwrap_or_else(|| "-".into())
}

fn render(s: &Snapshot, colour: bool) -> String {
    let paint = |col: usize, text: &str| (col == 2 && text == "unreachable").then_some("31");
    let plain = |_: usize, _: &str| None;
    let agents: Vec<Vec<String>> = s
        .agents
        .iter()
        .map(|a| {
            let mine: Vec<&Sample> = s.containers.iter().filter(|c| c.agent == a.id).collect();
            let used: Option<f64> = mine
                .iter()
                .map(|c| c.cpus_used)
                .try_fold(0.0, |acc, u| u.map(|u| acc + u));
            let rss: u64 = mine.iter().filter_map(|c| c.mem_rss).sum();
            vec![
                a.id.clone(),
                a.address.clone(),
                if a.reachable {
                    "up".into()
                } else {
                    "unreachable".into()
                },
                mine.len().to_string(),
                match used {
                    Some(u) if !mine.is_empty() => cpus(u),
                    _ => "-".into(),
                },
                a.cpus.clone(),
                bytes(rss),
                a.mem.clone(),
            ]
        })
        .collect();
    let containers: Vec<Vec<String>> = s
        .containers
        .iter()
        .map(|c| {
            vec![
                c.agent.clone(),
                c.framework.clone(),
                c.executor.clone(),
                c.cpus_used.map(cpus).unwrap_or_else(|| "-".into()),
                c.cpus_limit.map(num).unwrap_or_else(|| "-".into()),
                opt_bytes(c.mem_rss),
                opt_bytes(c.mem_limit),
            ]
        })
        .collect();
    let mut text = crate::table::render_table(
        &[
            "AGENT",
            "ADDRESS",
            "STATE",
            "CONTAINERS",
            "CPUS USED",
            "CPUS ALLOC/TOTAL",
            "MEM RSS",
            "MEM MB ALLOC/TOTAL",
        ],
        &agents,
        colour.then_some(&paint as crate::table::Paint),
    );
    text.push('\n');
    text.push_str(&crate::table::render_table(
        &[
            "AGENT",
            "FRAMEWORK",
            "EXECUTOR",
            "CPUS USED",
            "CPUS LIMIT",
            "MEM RSS",
            "MEM LIMIT",
        ],
        &containers,
        colour.then_some(&plain as crate::table::Paint),
    ));
    text
}

fn to_json(s: &Snapshot) -> Value {
    json!({
        "agents": s.agents.iter().map(|a| json!({
            "agent_id": a.id,
            "address": a.address,
            "reachable": a.reachable,
            "cpus_allocated_total": a.cpus,
            "mem_allocated_total": a.mem,
        })).collect::<Vec<_>>(),
        "containers": s.containers.iter().map(|c| json!({
            "agent_id": c.agent,
            "framework_id": c.framework,
            "executor_id": c.executor,
            "timestamp": c.timestamp,
            "cpus_time_secs": c.cpu_secs,
            "cpus_used": c.cpus_used,
            "cpus_limit": c.cpus_limit,
            "mem_rss_bytes": c.mem_rss,
            "mem_limit_bytes": c.mem_limit,
        })).collect::<Vec<_>>(),
    })
}

pub async fn run(args: TopArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let json_out = args.target.json;
    let terminal = std::io::stdout().is_terminal() && !json_out;
    let colour = !json_out && crate::table::colour_stdout();
    // CPU use needs two samples: the first is taken a moment before the
    // first table.
    let first = sample(&master, &HashMap::new()).await?;
    let mut previous = keyed(&first);
    tokio::time::sleep(args.interval.min(Duration::from_secs(1))).await;
    loop {
        let now = sample(&master, &previous).await?;
        if json_out {
            print_json(&to_json(&now));
        } else if terminal && !args.once {
            // Home, clear, redraw.
            out(&format!(
                "\x1b[H\x1b[2Jcorral top: master {} every {}, Ctrl-C quits\n\n{}",
                master.address,
                corral_api::stout::format_duration(args.interval),
                render(&now, colour)
            ));
        } else {
            out(&render(&now, colour));
        }
        if args.once {
            return Ok(());
        }
        if !terminal && !json_out {
            out("\n");
        }
        previous = keyed(&now);
        tokio::time::sleep(args.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_durations_or_seconds() {
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn cpu_use_reads_to_a_thousandth() {
        assert_eq!(cpus(0.0031), "0.003");
        assert_eq!(cpus(1.25), "1.25");
        assert_eq!(cpus(0.0), "0");
        assert_eq!(cpus(2.0), "2");
    }
}

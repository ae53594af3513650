//! `corral bench allocator`: the Mesos allocator benchmark grid.

use std::time::Duration;

use anyhow::{bail, Result};
use corral_allocator::bench::{self, Scenario};

/// Options of `corral bench allocator`.
#[derive(clap::Args)]
pub struct Args {
    /// Measured cycles per grid cell.
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only cells with at most this many agents (to run a quick subset).
    #[arg(long)]
    pub max_agents: Option<usize>,
    /// Only these scenarios (full, full-one-role, all-filtered, quota, idle).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the grid.
pub fn run(args: Args) -> Result<()> {
    if args.cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let known = ["full", "full-one-role", "all-filtered", "quota", "idle"];
    for s in &args.scenarios {
        if !known.contains(&s.as_str()) {
            bail!(
                "--scenarios: unknown scenario '{s}' (known: {})",
                known.join(", ")
            );
        }
    }
    let cells: Vec<Scenario> = bench::grid()
        .into_iter()
        .filter(|s| args.max_agents.is_none_or(|m| s.agents <= m))
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == s.kind.name()))
        .collect();
    if !args.json {
        println!(
            "{:<14} {:>7} {:>10} {:>6} {:>11} {:>11} {:>8} {:>10}",
            "SCENARIO",
            "AGENTS",
            "FRAMEWORKS",
            "ROLES",
            "MEDIAN_MS",
            "P99_MS",
            "OFFERS",
            "PEAK_RSS"
        );
    }
    for scenario in cells {
        super::reset_peak_rss();
        eprintln!(
            "preparing {} with {} agents and {} frameworks",
            scenario.kind.name(),
            scenario.agents,
            scenario.frameworks
        );
        let mut prepared = bench::prepare(scenario);
        // One unmeasured warm-up cycle.
        let (_, offers) = prepared.cycle();
        let mut samples = Vec::with_capacity(args.cycles);
        for _ in 0..args.cycles {
            samples.push(prepared.cycle().0);
        }
        let (median, p99) = bench::percentiles(&mut samples);
        let rss = super::peak_rss_bytes();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "scenario": scenario.kind.name(),
                    "agents": scenario.agents,
                    "frameworks": scenario.frameworks,
                    "roles": scenario.roles(),
                    "median_ms": ms(median),
                    "p99_ms": ms(p99),
                    "offers": offers,
                    "peak_rss_bytes": rss,
                })
            );
        } else {
            println!(
                "{:<14} {:>7} {:>10} {:>6} {:>11.3} {:>11.3} {:>8} {:>9}M",
                scenario.kind.name(),
                scenario.agents,
                scenario.frameworks,
                scenario.roles(),
                ms(median),
                ms(p99),
                offers,
                rss / (1024 * 1024)
            );
        }
        drop(prepared);
    }
    Ok(())
}

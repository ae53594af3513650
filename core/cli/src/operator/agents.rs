//! `corral agents`: GET_AGENTS as a table (or its agents as JSON).

use anyhow::Result;
use corral_api::v1;
use corral_api::v1::master as op;

use super::{
    agent_endpoint, agent_id, json_list, print_json, print_rows, usage, used_of, Master, Target,
};

/// `corral agents`.
#[derive(clap::Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only agents with this attribute (`name:value`, as the agent's
    /// --attributes); repeat for agents that have all of them.
    #[arg(long = "attribute", value_name = "NAME:VALUE")]
    pub attributes: Vec<String>,
}

/// An attribute's value as text (`r1`, `3`, `[1-4]`, `{a,b}`).
pub fn attribute_value(a: &v1::Attribute) -> String {
    if let Some(t) = &a.text {
        return t.value.clone();
    }
    if let Some(s) = &a.scalar {
        return super::num(s.value);
    }
    if let Some(r) = &a.ranges {
        let parts: Vec<String> = r
            .range
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        return format!("[{}]", parts.join(","));
    }
    if let Some(s) = &a.set {
        return format!("{{{}}}", s.item.join(","));
    }
    String::new()
}

/// `name:value;...` of an agent's attributes, `-` when none.
pub fn attributes_text(attrs: &[v1::Attribute]) -> String {
    if attrs.is_empty() {
        return "-".into();
    }
    attrs
        .iter()
        .map(|a| format!("{}:{}", a.name, attribute_value(a)))
        .collect::<Vec<_>>()
        .join(";")
}

/// Whether an agent has attribute `name` with `value` (compared as text,
/// numerically for scalars).
fn has_attribute(attrs: &[v1::Attribute], name: &str, value: &str) -> bool {
    attrs.iter().any(|a| {
        a.name == name
            && match (&a.scalar, value.parse::<f64>()) {
                (Some(s), Ok(v)) => (s.value - v).abs() < 1e-9,
                _ => attribute_value(a) == value,
            }
    })
}

/// The agent's state for people: `active`, `inactive`, `draining`,
/// `drained`, `deactivated`.
pub fn agent_state(a: &op::response::get_agents::Agent) -> &'static str {
    if let Some(d) = &a.drain_info {
        return match v1::DrainState::try_from(d.state) {
            Ok(v1::DrainState::Drained) => "drained",
            _ => "draining",
        };
    }
    if a.deactivated == Some(true) {
        return "deactivated";
    }
    if a.active {
        "active"
    } else {
        "inactive"
    }
}

pub async fn run(args: AgentsArgs) -> Result<()> {
    let mut filters = Vec::new();
    for f in &args.attributes {
        let Some((name, value)) = f.split_once(':') else {
            return Err(usage(format!(
                "--attribute '{f}' is not NAME:VALUE (for example --attribute rack:r1)"
            )));
        };
        filters.push((name.trim().to_string(), value.trim().to_string()));
    }
    let master = Master::connect(&args.target).await?;
    let mut agents = master.agents().await?;
    agents.retain(|a| {
        filters
            .iter()
            .all(|(n, v)| has_attribute(&a.agent_info.attributes, n, v))
    });
    agents.sort_by(|a, b| a.agent_info.hostname.cmp(&b.agent_info.hostname));
    if args.target.json {
        print_json(&json_list(&agents));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let used = &a.allocated_resources;
            let total = &a.total_resources;
            vec![
                agent_id(a).to_string(),
                agent_endpoint(a),
                agent_state(a).to_string(),
                used_of(used, total, "cpus"),
                used_of(used, total, "mem"),
                used_of(used, total, "disk"),
                attributes_text(&a.agent_info.attributes),
                a.registered_time
                    .as_ref()
                    .map(|t| super::ago(t.nanoseconds))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let paint = |col: usize, text: &str| match (col, text) {
        (2, "active") => Some("32"),
        (2, _) => Some("33"),
        _ => None,
    };
    print_rows(
        &[
            "ID",
            "ADDRESS",
            "STATE",
            "CPUS (USED/TOTAL)",
            "MEM MB",
            "DISK MB",
            "ATTRIBUTES",
            "REGISTERED",
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
    fn attributes_match_as_written() {
        let attrs = corral_api::resources::parse_attributes("rack:r1;zone:2").unwrap();
        assert!(has_attribute(&attrs, "rack", "r1"));
        assert!(has_attribute(&attrs, "zone", "2.0"));
        assert!(!has_attribute(&attrs, "rack", "r2"));
        assert!(!has_attribute(&attrs, "row", "r1"));
        assert_eq!(attributes_text(&attrs), "rack:r1;zone:2");
    }
}

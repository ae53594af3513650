//! `corral reservations` (the reserved resources in GET_AGENTS' totals),
//! `corral reserve` (RESERVE_RESOURCES) and `corral unreserve`
//! (UNRESERVE_RESOURCES), each confirmed by reading the agent back.

use std::collections::BTreeMap;

use anyhow::Result;
use corral_api::resources::{reservation_role, upgrade, Resources};
use corral_api::v1::{self, master as op};
use serde_json::{json, Value};

use super::{
    agent_id, call, out, parse_resources, print_json, print_rows, refused, resources_text, usage,
    Master, Target,
};

type Agent = op::response::get_agents::Agent;
type ReservationInfo = v1::resource::ReservationInfo;

/// `corral reservations`.
#[derive(clap::Args)]
pub struct ReservationsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only this agent's reservations.
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: Option<String>,
    /// Only this role's reservations.
    #[arg(long)]
    pub role: Option<String>,
}

/// `corral reserve` / `corral unreserve`.
#[derive(clap::Args)]
pub struct ReserveArgs {
    #[command(flatten)]
    pub target: Target,
    /// The agent (its id; `corral agents` lists them).
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: String,
    /// What to (un)reserve: `cpus(ROLE):1;mem(ROLE):128` (every resource
    /// names its role), or a JSON array of Resource objects with their
    /// `reservations`, taken as given.
    #[arg(long, value_name = "RESOURCES")]
    pub resources: String,
    /// The principal recorded in the reservation (text form only). For
    /// unreserve it is found on the agent when the role has one.
    #[arg(long)]
    pub principal: Option<String>,
}

/// A resource in the post-refinement form, without allocation info.
pub fn plain(r: &v1::Resource) -> v1::Resource {
    let mut r = r.clone();
    r.allocation_info = None;
    upgrade(&mut r);
    r
}

/// Whether a resource is reserved (to a role other than `*`).
pub fn is_reserved(r: &v1::Resource) -> bool {
    reservation_role(r) != "*"
}

/// Whether a resource is a persistent volume.
pub fn is_volume(r: &v1::Resource) -> bool {
    r.disk.as_ref().is_some_and(|d| d.persistence.is_some())
}

fn reservation_type(info: &ReservationInfo) -> &'static str {
    match info
        .r#type
        .and_then(|t| v1::resource::reservation_info::Type::try_from(t).ok())
    {
        Some(v1::resource::reservation_info::Type::Static) => "STATIC",
        Some(v1::resource::reservation_info::Type::Dynamic) => "DYNAMIC",
        _ => "-",
    }
}

/// One row: an agent's resources reserved to one role by one principal.
struct Group {
    agent: String,
    role: String,
    kind: &'static str,
    principal: String,
    resources: Vec<v1::Resource>,
}

fn groups(agents: &[Agent], agent: Option<&str>, role: Option<&str>) -> Vec<Group> {
    let mut by_key: BTreeMap<(String, String, &'static str, String), Vec<v1::Resource>> =
        BTreeMap::new();
    for a in agents {
        let id = agent_id(a);
        if agent.is_some_and(|x| x != id) {
            continue;
        }
        for r in a.total_resources.iter().map(plain).filter(is_reserved) {
            let r_role = reservation_role(&r).to_string();
            if role.is_some_and(|x| x != r_role) {
                continue;
            }
            let last = r.reservations.last().cloned().unwrap_or_default();
            let key = (
                id.to_string(),
                r_role,
                reservation_type(&last),
                last.principal.clone().unwrap_or_else(|| "-".into()),
            );
            by_key.entry(key).or_default().push(r);
        }
    }
    by_key
        .into_iter()
        .map(|((agent, role, kind, principal), resources)| Group {
            agent,
            role,
            kind,
            principal,
            resources,
        })
        .collect()
}

fn groups_json(groups: &[Group]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                json!({
                    "agent_id": g.agent,
                    "role": g.role,
                    "type": g.kind,
                    "principal": if g.principal == "-" { Value::Null } else { json!(g.principal) },
                    "resources": super::json_list(&g.resources),
                })
            })
            .collect(),
    )
}

fn print_groups(groups: &[Group]) {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let (volumes, rest): (Vec<v1::Resource>, Vec<v1::Resource>) =
                g.resources.iter().cloned().partition(is_volume);
            let ids: Vec<String> = volumes
                .iter()
                .filter_map(|v| v.disk.as_ref()?.persistence.as_ref().map(|p| p.id.clone()))
                .collect();
            vec![
                g.agent.clone(),
                g.role.clone(),
                g.kind.to_string(),
                g.principal.clone(),
                resources_text(&rest),
                if ids.is_empty() {
                    "-".into()
                } else {
                    ids.join(",")
                },
            ]
        })
        .collect();
    print_rows(
        &["AGENT", "ROLE", "TYPE", "PRINCIPAL", "RESOURCES", "VOLUMES"],
        &rows,
        None,
    );
}

pub async fn run(args: ReservationsArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let agents = master.agents_with(args.agent.as_deref()).await?;
    let list = groups(&agents, args.agent.as_deref(), args.role.as_deref());
    if args.target.json {
        print_json(&groups_json(&list));
    } else {
        print_groups(&list);
    }
    Ok(())
}

/// Whether the text is the JSON form of `--resources`.
pub fn is_json(text: &str) -> bool {
    text.trim_start().starts_with('[')
}

/// The reservation stacks (`reservations` of a resource) the agent holds
/// for `role` on resources named `name`, distinct.
pub fn stacks_on(agent: &Agent, name: &str, role: &str) -> Vec<Vec<ReservationInfo>> {
    let mut out: Vec<Vec<ReservationInfo>> = Vec::new();
    for r in agent.total_resources.iter().map(plain) {
        if r.name == name && reservation_role(&r) == role && !out.contains(&r.reservations) {
            out.push(r.reservations.clone());
        }
    }
    out
}

/// `--resources` for reserve/unreserve: the text form gets a DYNAMIC
/// reservation to its role (with `--principal`; for `find_on`, the
/// reservation the agent has for that role when there is exactly one).
fn requested(args: &ReserveArgs, find_on: Option<&Agent>) -> Result<Vec<v1::Resource>> {
    let mut rs = parse_resources("--resources", &args.resources)?;
    if is_json(&args.resources) {
        if let Some(r) = rs.iter().find(|r| !is_reserved(r)) {
            return Err(usage(format!(
                "--resources: '{}' has no reservation; give each resource its \"reservations\"",
                r.name
            )));
        }
        return Ok(rs);
    }
    for r in &mut rs {
        let Some(info) = r.reservations.last().cloned() else {
            return Err(usage(format!(
                "--resources: '{}' names no role; write {}(ROLE):VALUE",
                r.name, r.name
            )));
        };
        let role = info.role.clone().unwrap_or_default();
        if let Some(agent) = find_on {
            let mut stacks = stacks_on(agent, &r.name, &role);
            if let Some(p) = &args.principal {
                stacks.retain(|s| s.last().and_then(|i| i.principal.as_ref()) == Some(p));
            }
            if stacks.len() == 1 {
                r.reservations = stacks.remove(0);
                continue;
            }
            if stacks.len() > 1 && args.principal.is_none() {
                let principals: Vec<String> = stacks
                    .iter()
                    .map(|s| {
                        s.last()
                            .and_then(|i| i.principal.clone())
                            .unwrap_or_else(|| "(none)".into())
                    })
                    .collect();
                return Err(usage(format!(
                    "--resources: {} of role {role} on agent {} is reserved by several \
                     principals ({}); pick one with --principal",
                    r.name,
                    agent_id(agent),
                    principals.join(", ")
                )));
            }
        }
        r.reservations = vec![ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some(role),
            principal: args.principal.clone(),
            ..Default::default()
        }];
    }
    Ok(rs)
}

/// Prints what the agent now has reserved to the roles of `rs`.
fn confirm(agent: &Agent, rs: &[v1::Resource], json_out: bool, what: &str) {
    let roles: Vec<String> = {
        let mut r: Vec<String> = rs.iter().map(|r| reservation_role(r).to_string()).collect();
        r.sort();
        r.dedup();
        r
    };
    let mut list = Vec::new();
    for role in &roles {
        list.extend(groups(
            std::slice::from_ref(agent),
            Some(agent_id(agent)),
            Some(role),
        ));
    }
    if json_out {
        print_json(&json!({
            what: super::json_list(rs),
            "reservations": groups_json(&list),
        }));
        return;
    }
    out(&format!(
        "{what} {} on agent {}\n",
        resources_text(rs),
        agent_id(agent)
    ));
    if list.is_empty() {
        out(&format!(
            "agent {} has no reservations left for role {}\n",
            agent_id(agent),
            roles.join(", ")
        ));
    } else {
        print_groups(&list);
    }
}

pub async fn reserve(args: ReserveArgs) -> Result<()> {
    // Usage errors before anything is asked of the master.
    let rs = requested(&args, None)?;
    let master = Master::connect(&args.target).await?;
    master.agent(&args.agent).await?;
    let mut c = call(op::call::Type::ReserveResources);
    c.reserve_resources = Some(op::call::ReserveResources {
        agent_id: v1::AgentId {
            value: args.agent.clone(),
        },
        source: Vec::new(),
        resources: rs.clone(),
    });
    master.send(&c).await?;
    let agent = master.agent(&args.agent).await?;
    let total = Resources::from_vec(&agent.total_resources.iter().map(plain).collect::<Vec<_>>());
    if !total.contains(&Resources::from_vec(&rs)) {
        return Err(refused(format!(
            "the master accepted RESERVE_RESOURCES but agent {} does not show {}",
            args.agent,
            resources_text(&rs)
        )));
    }
    confirm(&agent, &rs, args.target.json, "reserved");
    Ok(())
}

pub async fn unreserve(args: ReserveArgs) -> Result<()> {
    // Usage errors before anything is asked of the master.
    requested(&args, None)?;
    let master = Master::connect(&args.target).await?;
    let agent = master.agent(&args.agent).await?;
    let rs = requested(&args, Some(&agent))?;
    let mut c = call(op::call::Type::UnreserveResources);
    c.unreserve_resources = Some(op::call::UnreserveResources {
        agent_id: v1::AgentId {
            value: args.agent.clone(),
        },
        resources: rs.clone(),
    });
    master.send(&c).await?;
    let agent = master.agent(&args.agent).await?;
    confirm(&agent, &rs, args.target.json, "unreserved");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(resources: &str, principal: Option<&str>) -> ReserveArgs {
        ReserveArgs {
            target: Target {
                master: "127.0.0.1:5050".into(),
                json: false,
            },
            agent: "a".into(),
            resources: resources.into(),
            principal: principal.map(str::to_string),
        }
    }

    #[test]
    fn text_resources_become_dynamic_reservations() {
        let rs = requested(&args("cpus(db):1;mem(db):128", Some("ops")), None).unwrap();
        assert_eq!(rs.len(), 2);
        for r in &rs {
            let info = &r.reservations[0];
            assert_eq!(info.role.as_deref(), Some("db"));
            assert_eq!(info.principal.as_deref(), Some("ops"));
            assert_eq!(reservation_type(info), "DYNAMIC");
        }
        let e = requested(&args("cpus:1", None), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no role"), "{e}");
    }

    #[test]
    fn unreserve_takes_the_agents_reservation_of_the_role() {
        let mut agent = Agent::default();
        let mut held = corral_api::resources::scalar("cpus", 2.0);
        held.reservations = vec![ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some("db".into()),
            principal: Some("ops".into()),
            ..Default::default()
        }];
        agent.total_resources = vec![held.clone()];
        let rs = requested(&args("cpus(db):1", None), Some(&agent)).unwrap();
        assert_eq!(rs[0].reservations, held.reservations);
    }
}

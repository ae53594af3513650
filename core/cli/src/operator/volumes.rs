//! `corral volumes` (the persistent volumes in GET_AGENTS' totals),
//! `corral create-volume` (CREATE_VOLUMES) and `corral destroy-volume`
//! (DESTROY_VOLUMES), each confirmed by reading the agent back.

use anyhow::Result;
use corral_api::resources::reservation_role;
use corral_api::v1::{self, master as op};
use serde_json::{json, Value};

use super::reservations::{is_json, is_volume, plain, stacks_on};
use super::{
    agent_id, call, num, out, parse_resources, print_json, print_rows, refused, resources_text,
    scalar, usage, Master, Target,
};

type Agent = op::response::get_agents::Agent;

/// `corral volumes`.
#[derive(clap::Args)]
pub struct VolumesArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only this agent's volumes.
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: Option<String>,
    /// Only this role's volumes.
    #[arg(long)]
    pub role: Option<String>,
}

/// `--mode` of a new volume.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Read-write.
    Rw,
    /// Read-only.
    Ro,
}

/// `corral create-volume`.
#[derive(clap::Args)]
pub struct CreateVolumeArgs {
    #[command(flatten)]
    pub target: Target,
    /// The agent (its id; `corral agents` lists them).
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: String,
    /// The reserved disk the volume takes: `disk(ROLE):SIZE_MB` (reserve
    /// it first with `corral reserve`), or a JSON array of Resource objects
    /// with `disk.persistence` and `disk.volume`, taken as given.
    #[arg(long, value_name = "RESOURCES")]
    pub resources: String,
    /// The volume's persistence id, unique per role on the agent (text
    /// form).
    #[arg(long = "id", value_name = "PERSISTENCE_ID")]
    pub id: Option<String>,
    /// Where tasks see it, relative to their sandbox (text form; default:
    /// the persistence id).
    #[arg(long = "container-path", value_name = "PATH")]
    pub container_path: Option<String>,
    /// Read-write or read-only for the tasks that use it.
    #[arg(long, value_enum, default_value_t = Mode::Rw)]
    pub mode: Mode,
    /// The principal of the volume (and of the reservation it is made from,
    /// when the agent holds several for the role).
    #[arg(long)]
    pub principal: Option<String>,
}

/// `corral destroy-volume`.
#[derive(clap::Args)]
pub struct DestroyVolumeArgs {
    #[command(flatten)]
    pub target: Target,
    /// The agent (its id; `corral agents` lists them).
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: String,
    /// The volume's persistence id (`corral volumes` lists them).
    #[arg(
        long = "id",
        value_name = "PERSISTENCE_ID",
        required_unless_present = "resources"
    )]
    pub id: Option<String>,
    /// The volume's role, when several roles have a volume with that id.
    #[arg(long)]
    pub role: Option<String>,
    /// Instead of --id: the volume as a JSON array of Resource objects,
    /// taken as given.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["id", "role"])]
    pub resources: Option<String>,
}

/// A volume of an agent.
pub struct Volume {
    pub agent: String,
    pub resource: v1::Resource,
    pub in_use: bool,
}

impl Volume {
    pub fn id(&self) -> &str {
        self.resource
            .disk
            .as_ref()
            .and_then(|d| d.persistence.as_ref())
            .map(|p| p.id.as_str())
            .unwrap_or("")
    }

    fn role(&self) -> &str {
        reservation_role(&self.resource)
    }

    fn to_json(&self) -> Value {
        json!({
            "agent_id": self.agent,
            "role": self.role(),
            "persistence_id": self.id(),
            "in_use": self.in_use,
            "resource": corral_api::codec::to_json_value(&self.resource),
        })
    }
}

/// The volumes of the agents (filtered).
pub fn volumes(agents: &[Agent], agent: Option<&str>, role: Option<&str>) -> Vec<Volume> {
    let mut out = Vec::new();
    for a in agents {
        let id = agent_id(a);
        if agent.is_some_and(|x| x != id) {
            continue;
        }
        let used: Vec<v1::Resource> = a.allocated_resources.iter().map(plain).collect();
        for r in a.total_resources.iter().map(plain).filter(is_volume) {
            if role.is_some_and(|x| x != reservation_role(&r)) {
                continue;
            }
            let in_use = used.iter().any(|u| u.disk == r.disk && u.name == r.name);
            out.push(Volume {
                agent: id.to_string(),
                resource: r,
                in_use,
            });
        }
    }
    out.sort_by(|a, b| (&a.agent, a.id()).cmp(&(&b.agent, b.id())));
    out
}

fn print_volumes(list: &[Volume]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            let disk = v.resource.disk.as_deref();
            let volume = disk.and_then(|d| d.volume.as_ref());
            vec![
                v.agent.clone(),
                v.role().to_string(),
                v.id().to_string(),
                num(scalar(std::slice::from_ref(&v.resource), "disk")),
                volume
                    .map(|x| x.container_path.clone())
                    .unwrap_or_else(|| "-".into()),
                volume
                    .and_then(|x| v1::volume::Mode::try_from(x.mode).ok())
                    .map(|m| m.as_str_name().to_string())
                    .unwrap_or_else(|| "-".into()),
                disk.and_then(|d| d.persistence.as_ref())
                    .and_then(|p| p.principal.clone())
                    .unwrap_or_else(|| "-".into()),
                if v.in_use { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    print_rows(
        &[
            "AGENT",
            "ROLE",
            "ID",
            "SIZE MB",
            "CONTAINER PATH",
            "MODE",
            "PRINCIPAL",
            "IN USE",
        ],
        &rows,
        None,
    );
}

pub async fn run(args: VolumesArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let agents = master.agents_with(args.agent.as_deref()).await?;
    let list = volumes(&agents, args.agent.as_deref(), args.role.as_deref());
    if args.target.json {
        print_json(&Value::Array(list.iter().map(Volume::to_json).collect()));
    } else {
        print_volumes(&list);
    }
    Ok(())
}

/// The volume to create from the text form: one reserved disk resource,
/// its reservation taken from the agent when it holds one for the role.
fn volume_of(args: &CreateVolumeArgs, agent: Option<&Agent>) -> Result<Vec<v1::Resource>> {
    let mut rs = parse_resources("--resources", &args.resources)?;
    if is_json(&args.resources) {
        if let Some(r) = rs.iter().find(|r| !is_volume(r)) {
            return Err(usage(format!(
                "--resources: '{}' has no disk.persistence; a volume needs its persistence id \
                 and volume (container_path, mode)",
                r.name
            )));
        }
        return Ok(rs);
    }
    let [r] = rs.as_mut_slice() else {
        return Err(usage(format!(
            "--resources '{}': give one disk resource, disk(ROLE):SIZE_MB",
            args.resources
        )));
    };
    if r.name != "disk" || r.scalar.is_none() {
        return Err(usage(format!(
            "--resources '{}': a volume is made of disk, disk(ROLE):SIZE_MB",
            args.resources
        )));
    }
    let Some(role) = r.reservations.last().and_then(|i| i.role.clone()) else {
        return Err(usage(format!(
            "--resources '{}' names no role; a volume is made of reserved disk: disk(ROLE):SIZE_MB",
            args.resources
        )));
    };
    let Some(id) = args.id.clone().filter(|i| !i.trim().is_empty()) else {
        return Err(usage(
            "--id is needed: the volume's persistence id (for example --id pgdata)",
        ));
    };
    let mut stack = vec![v1::resource::ReservationInfo {
        r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
        role: Some(role.clone()),
        principal: args.principal.clone(),
        ..Default::default()
    }];
    if let Some(agent) = agent {
        let mut stacks = stacks_on(agent, "disk", &role);
        if args.principal.is_some() && stacks.len() > 1 {
            stacks
                .retain(|s| s.last().and_then(|i| i.principal.as_ref()) == args.principal.as_ref());
        }
        if stacks.len() == 1 {
            stack = stacks.remove(0);
        }
    }
    let principal = args
        .principal
        .clone()
        .or_else(|| stack.last().and_then(|i| i.principal.clone()));
    r.reservations = stack;
    r.disk = Some(Box::new(v1::resource::DiskInfo {
        persistence: Some(v1::resource::disk_info::Persistence {
            id: id.clone(),
            principal,
        }),
        volume: Some(v1::Volume {
            container_path: args.container_path.clone().unwrap_or(id),
            mode: match args.mode {
                Mode::Rw => v1::volume::Mode::Rw as i32,
                Mode::Ro => v1::volume::Mode::Ro as i32,
            },
            ..Default::default()
        }),
        ..Default::default()
    }));
    Ok(rs)
}

pub async fn create(args: CreateVolumeArgs) -> Result<()> {
    // Usage errors before anything is asked of the master.
    volume_of(&args, None)?;
    let master = Master::connect(&args.target).await?;
    let agent = master.agent(&args.agent).await?;
    let rs = volume_of(&args, Some(&agent))?;
    let mut c = call(op::call::Type::CreateVolumes);
    c.create_volumes = Some(op::call::CreateVolumes {
        agent_id: v1::AgentId {
            value: args.agent.clone(),
        },
        volumes: rs.clone(),
    });
    master.send(&c).await?;
    let agents = vec![master.agent(&args.agent).await?];
    let now: Vec<Volume> = volumes(&agents, None, None)
        .into_iter()
        .filter(|v| rs.iter().any(|r| r.disk == v.resource.disk))
        .collect();
    if now.len() != rs.len() {
        return Err(refused(format!(
            "the master accepted CREATE_VOLUMES but agent {} does not show {}",
            args.agent,
            resources_text(&rs)
        )));
    }
    if args.target.json {
        print_json(&Value::Array(now.iter().map(Volume::to_json).collect()));
        return Ok(());
    }
    out(&format!("created on agent {}:\n", args.agent));
    print_volumes(&now);
    Ok(())
}

pub async fn destroy(args: DestroyVolumeArgs) -> Result<()> {
    let given = match &args.resources {
        Some(text) => {
            let rs = parse_resources("--resources", text)?;
            if let Some(r) = rs.iter().find(|r| !is_volume(r)) {
                return Err(usage(format!(
                    "--resources: '{}' is not a volume (it has no disk.persistence)",
                    r.name
                )));
            }
            Some(rs)
        }
        None => None,
    };
    let master = Master::connect(&args.target).await?;
    let agent = master.agent(&args.agent).await?;
    let list = volumes(std::slice::from_ref(&agent), None, args.role.as_deref());
    let rs: Vec<v1::Resource> = match given {
        Some(rs) => rs,
        None => {
            let id = args.id.clone().unwrap_or_default();
            let found: Vec<&Volume> = list.iter().filter(|v| v.id() == id).collect();
            match found.as_slice() {
                [] => {
                    return Err(refused(format!(
                        "no volume '{id}' on agent {} (corral volumes --agent {} lists them)",
                        args.agent, args.agent
                    )))
                }
                [v] => vec![v.resource.clone()],
                several => {
                    let roles: Vec<&str> = several.iter().map(|v| v.role()).collect();
                    return Err(usage(format!(
                        "volume '{id}' exists for several roles on agent {} ({}); pick one \
                         with --role",
                        args.agent,
                        roles.join(", ")
                    )));
                }
            }
        }
    };
    let mut c = call(op::call::Type::DestroyVolumes);
    c.destroy_volumes = Some(op::call::DestroyVolumes {
        agent_id: v1::AgentId {
            value: args.agent.clone(),
        },
        volumes: rs.clone(),
    });
    master.send(&c).await?;
    let agents = vec![master.agent(&args.agent).await?];
    let left: Vec<Volume> = volumes(&agents, None, None)
        .into_iter()
        .filter(|v| {
            rs.iter()
                .any(|r| r.disk == v.resource.disk && reservation_role(r) == v.role())
        })
        .collect();
    if !left.is_empty() {
        return Err(refused(format!(
            "the master accepted DESTROY_VOLUMES but agent {} still shows the volume",
            args.agent
        )));
    }
    let ids: Vec<String> = rs
        .iter()
        .filter_map(|r| r.disk.as_ref()?.persistence.as_ref().map(|p| p.id.clone()))
        .collect();
    if args.target.json {
        print_json(&json!({
            "agent_id": args.agent,
            "destroyed": super::json_list(&rs),
        }));
        return Ok(());
    }
    let roles: Vec<&str> = rs.iter().map(reservation_role).collect();
    out(&format!(
        "destroyed volume {} on agent {}; its disk ({}) stays reserved to {} (corral unreserve \
         frees it)\n",
        ids.join(","),
        args.agent,
        resources_text(&rs),
        roles.join(",")
    ));
    Ok(())
}

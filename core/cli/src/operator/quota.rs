//! `corral quota` (GET_QUOTA, with what each role consumes from GET_ROLES)
//! and `corral quota set ROLE --guarantee ... --limit ...` (UPDATE_QUOTA
//! with a QuotaConfig, then the quota read back).

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use corral_api::v1::{self, master as op};

use super::{
    call, json_list, num, out, print_json, print_rows, refused, resources_text, usage, Master,
    Target,
};

type QuotaConfig = v1::quota::QuotaConfig;

/// `corral quota [set ...]`.
#[derive(clap::Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Option<QuotaCommand>,
}

/// `corral quota` subcommands.
#[derive(clap::Subcommand)]
pub enum QuotaCommand {
    /// Set a role's quota (UPDATE_QUOTA): what it is guaranteed and the
    /// most it may have.
    Set(QuotaSetArgs),
}

/// `corral quota set`.
#[derive(clap::Args)]
pub struct QuotaSetArgs {
    /// The role.
    pub role: String,
    /// Resources the role is guaranteed: scalars in the --resources form,
    /// `cpus:1;mem:256`.
    #[arg(long, value_name = "RESOURCES")]
    pub guarantee: Option<String>,
    /// The most the role may be allocated, same form; at least the
    /// guarantee.
    #[arg(long, value_name = "RESOURCES")]
    pub limit: Option<String>,
    /// Let the master accept a guarantee the cluster cannot satisfy now.
    #[arg(long)]
    pub force: bool,
}

/// `name:value;...` of a quota map, `-` when empty.
pub fn scalars_text(map: &HashMap<String, v1::value::Scalar>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    let sorted: BTreeMap<&String, f64> = map.iter().map(|(k, v)| (k, v.value)).collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}:{}", num(*v)))
        .collect::<Vec<_>>()
        .join(";")
}

/// Parses `cpus:1;mem:256` into a quota map: scalars only, no roles.
pub fn parse_scalars(flag: &str, text: &str) -> Result<HashMap<String, v1::value::Scalar>> {
    let mut out = HashMap::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let rs = corral_api::resources::parse(text).map_err(|e| {
        usage(format!(
            "{flag} '{text}': {e} (write it as 'cpus:1;mem:256')"
        ))
    })?;
    for r in rs {
        if !r.reservations.is_empty() || r.role.as_deref().is_some_and(|x| x != "*") {
            return Err(usage(format!(
                "{flag} '{text}': '{}' has a role; quota is per role already (write cpus:1)",
                r.name
            )));
        }
        let Some(s) = r.scalar else {
            return Err(usage(format!(
                "{flag} '{text}': '{}' is not a scalar; quota holds scalars (cpus, mem, disk, \
                 gpus)",
                r.name
            )));
        };
        out.entry(r.name.clone())
            .or_insert(v1::value::Scalar { value: 0.0 })
            .value += s.value;
    }
    Ok(out)
}

/// GET_QUOTA's configs, by role.
pub async fn configs(master: &Master) -> Result<Vec<QuotaConfig>> {
    let mut list = master
        .get(op::call::Type::GetQuota)
        .await?
        .get_quota
        .unwrap_or_default()
        .status
        .configs;
    list.sort_by(|a, b| a.role.cmp(&b.role));
    Ok(list)
}

fn print_configs(list: &[QuotaConfig], consumed: &BTreeMap<String, Vec<v1::Resource>>) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|q| {
            vec![
                q.role.clone(),
                scalars_text(&q.guarantees),
                scalars_text(&q.limits),
                consumed
                    .get(&q.role)
                    .map(|r| resources_text(r))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_rows(&["ROLE", "GUARANTEE", "LIMIT", "ALLOCATED"], &rows, None);
}

async fn allocated(master: &Master) -> Result<BTreeMap<String, Vec<v1::Resource>>> {
    Ok(master
        .get(op::call::Type::GetRoles)
        .await?
        .get_roles
        .unwrap_or_default()
        .roles
        .into_iter()
        .map(|r| (r.name, r.resources))
        .collect())
}

pub async fn run(args: QuotaArgs) -> Result<()> {
    let Some(QuotaCommand::Set(set)) = args.command else {
        let master = Master::connect(&args.target).await?;
        let list = configs(&master).await?;
        if args.target.json {
            print_json(&json_list(&list));
        } else {
            print_configs(&list, &allocated(&master).await?);
        }
        return Ok(());
    };
    let role = set.role.trim().to_string();
    corral_api::roles::validate_role(&role)
        .map_err(|e| usage(format!("ROLE '{role}' is not valid: {e}")))?;
    if role == "*" {
        return Err(usage("ROLE '*' cannot have a quota; name a role"));
    }
    if set.guarantee.is_none() && set.limit.is_none() {
        return Err(usage(
            "give --guarantee and/or --limit (for example --guarantee 'cpus:1;mem:256'); both \
             empty ('') remove the role's quota",
        ));
    }
    let guarantees = parse_scalars("--guarantee", set.guarantee.as_deref().unwrap_or(""))?;
    let limits = parse_scalars("--limit", set.limit.as_deref().unwrap_or(""))?;
    for (name, g) in &guarantees {
        if let Some(l) = limits.get(name) {
            if l.value < g.value {
                return Err(usage(format!(
                    "--limit of {name} ({}) is below its --guarantee ({})",
                    num(l.value),
                    num(g.value)
                )));
            }
        }
    }
    let master = Master::connect(&args.target).await?;
    let config = QuotaConfig {
        role: role.clone(),
        guarantees,
        limits,
    };
    let mut c = call(op::call::Type::UpdateQuota);
    c.update_quota = Some(op::call::UpdateQuota {
        force: set.force.then_some(true),
        quota_configs: vec![config.clone()],
    });
    master.send(&c).await?;
    let now: Vec<QuotaConfig> = configs(&master)
        .await?
        .into_iter()
        .filter(|q| q.role == role)
        .collect();
    let cleared = config.guarantees.is_empty() && config.limits.is_empty();
    let matches = match now.first() {
        None => cleared,
        Some(q) => {
            scalars_text(&q.guarantees) == scalars_text(&config.guarantees)
                && scalars_text(&q.limits) == scalars_text(&config.limits)
        }
    };
    if !matches {
        return Err(refused(format!(
            "the master accepted UPDATE_QUOTA for '{role}' but reports {}",
            now.first()
                .map(|q| format!(
                    "guarantee {} limit {}",
                    scalars_text(&q.guarantees),
                    scalars_text(&q.limits)
                ))
                .unwrap_or_else(|| "no quota".into())
        )));
    }
    if args.target.json {
        print_json(&json_list(&now));
        return Ok(());
    }
    if now.is_empty() {
        out(&format!("quota of role {role} removed\n"));
        return Ok(());
    }
    out(&format!("quota of role {role} set; the master now has:\n"));
    print_configs(&now, &allocated(&master).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_takes_scalars_without_roles() {
        let m = parse_scalars("--guarantee", "cpus:1;mem:256").unwrap();
        assert_eq!(scalars_text(&m), "cpus:1;mem:256");
        assert!(parse_scalars("--guarantee", "").unwrap().is_empty());
        let e = parse_scalars("--limit", "cpus(web):1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--limit") && e.contains("role"), "{e}");
        let e = parse_scalars("--limit", "ports:[1-2]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a scalar"), "{e}");
    }
}

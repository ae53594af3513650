//! `corral roles` (GET_ROLES with each role's quota from GET_QUOTA),
//! `corral weights` (GET_WEIGHTS) and `corral weights set ROLE=WEIGHT...`
//! (UPDATE_WEIGHTS, then the weights read back).

use std::collections::BTreeMap;

use anyhow::Result;
use corral_api::v1::{self, master as op};

use super::quota::scalars_text;
use super::{
    call, json_list, num, out, print_json, print_rows, resources_text, usage, Master, Target,
};

/// `corral roles`.
#[derive(clap::Args)]
pub struct RolesArgs {
    #[command(flatten)]
    pub target: Target,
}

/// `corral weights [set ...]`.
#[derive(clap::Args)]
pub struct WeightsArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Option<WeightsCommand>,
}

/// `corral weights` subcommands.
#[derive(clap::Subcommand)]
pub enum WeightsCommand {
    /// Set roles' weights (UPDATE_WEIGHTS): `corral weights set web=2 batch=0.5`.
    Set(WeightsSetArgs),
}

/// `corral weights set`.
#[derive(clap::Args)]
pub struct WeightsSetArgs {
    /// ROLE=WEIGHT pairs; a weight is a positive number (the default of
    /// every role is 1).
    #[arg(required = true, value_name = "ROLE=WEIGHT")]
    pub weights: Vec<String>,
}

/// Parses `ROLE=WEIGHT` (exit 2 naming the pair).
pub fn parse_weight(pair: &str) -> Result<(String, f64)> {
    let Some((role, weight)) = pair.split_once('=') else {
        return Err(usage(format!(
            "'{pair}' is not ROLE=WEIGHT (for example: corral weights set web=2)"
        )));
    };
    let role = role.trim();
    corral_api::roles::validate_role(role)
        .map_err(|e| usage(format!("'{pair}': role '{role}' is not valid: {e}")))?;
    let w: f64 = weight
        .trim()
        .parse()
        .map_err(|_| usage(format!("'{pair}': weight '{weight}' is not a number")))?;
    if !w.is_finite() || w <= 0.0 {
        return Err(usage(format!("'{pair}': a weight must be above 0")));
    }
    Ok((role.to_string(), w))
}

async fn weights(master: &Master) -> Result<Vec<v1::WeightInfo>> {
    let mut w = master
        .get(op::call::Type::GetWeights)
        .await?
        .get_weights
        .unwrap_or_default()
        .weight_infos;
    w.sort_by(|a, b| a.role.cmp(&b.role));
    Ok(w)
}

fn print_weights(list: &[v1::WeightInfo]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| vec![w.role.clone().unwrap_or_default(), num(w.weight)])
        .collect();
    print_rows(&["ROLE", "WEIGHT"], &rows, None);
}

pub async fn run_weights(args: WeightsArgs) -> Result<()> {
    let Some(WeightsCommand::Set(set)) = args.command else {
        let master = Master::connect(&args.target).await?;
        let list = weights(&master).await?;
        if args.target.json {
            print_json(&json_list(&list));
        } else {
            print_weights(&list);
        }
        return Ok(());
    };
    let mut wanted: BTreeMap<String, f64> = BTreeMap::new();
    for pair in &set.weights {
        let (role, w) = parse_weight(pair)?;
        wanted.insert(role, w);
    }
    let master = Master::connect(&args.target).await?;
    let mut c = call(op::call::Type::UpdateWeights);
    c.update_weights = Some(op::call::UpdateWeights {
        weight_infos: wanted
            .iter()
            .map(|(role, weight)| v1::WeightInfo {
                weight: *weight,
                role: Some(role.clone()),
            })
            .collect(),
    });
    master.send(&c).await?;
    let now: Vec<v1::WeightInfo> = weights(&master)
        .await?
        .into_iter()
        .filter(|w| w.role.as_ref().is_some_and(|r| wanted.contains_key(r)))
        .collect();
    for (role, w) in &wanted {
        let read = now.iter().find(|x| x.role.as_ref() == Some(role));
        if read.is_none_or(|x| (x.weight - w).abs() > 1e-9) {
            return Err(super::refused(format!(
                "the master accepted UPDATE_WEIGHTS but reports {role}'s weight as {}",
                read.map(|x| num(x.weight))
                    .unwrap_or_else(|| "unset".into())
            )));
        }
    }
    if args.target.json {
        print_json(&json_list(&now));
        return Ok(());
    }
    out("weights set; the master now has:\n");
    print_weights(&now);
    Ok(())
}

pub async fn run_roles(args: RolesArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let mut roles = master
        .get(op::call::Type::GetRoles)
        .await?
        .get_roles
        .unwrap_or_default()
        .roles;
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    if args.target.json {
        print_json(&json_list(&roles));
        return Ok(());
    }
    let quotas: BTreeMap<String, v1::quota::QuotaConfig> = super::quota::configs(&master)
        .await?
        .into_iter()
        .map(|q| (q.role.clone(), q))
        .collect();
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            let q = quotas.get(&r.name);
            vec![
                r.name.clone(),
                num(r.weight),
                r.frameworks.len().to_string(),
                resources_text(&r.resources),
                q.map(|q| scalars_text(&q.guarantees))
                    .unwrap_or_else(|| "-".into()),
                q.map(|q| scalars_text(&q.limits))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_rows(
        &[
            "ROLE",
            "WEIGHT",
            "FRAMEWORKS",
            "ALLOCATED",
            "QUOTA GUARANTEE",
            "QUOTA LIMIT",
        ],
        &rows,
        None,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_role_equals_number() {
        assert_eq!(parse_weight("web=2").unwrap(), ("web".to_string(), 2.0));
        for bad in ["web", "web=x", "web=0", "=1", "a/../b=1"] {
            assert!(parse_weight(bad).is_err(), "{bad}");
        }
    }
}

//! `corral offers`: the outstanding offers, from GET_FRAMEWORKS (each
//! framework's `offers`).

use anyhow::Result;
use corral_api::v1::{self, master as op};

use super::{json_list, print_json, print_rows, resources_text, Master, Target};

/// `corral offers`.
#[derive(clap::Args)]
pub struct OffersArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only the offers made to this framework.
    #[arg(long, value_name = "FRAMEWORK_ID")]
    pub framework: Option<String>,
    /// Only the offers of this agent's resources.
    #[arg(long, value_name = "AGENT_ID")]
    pub agent: Option<String>,
}

pub async fn run(args: OffersArgs) -> Result<()> {
    let master = Master::connect(&args.target).await?;
    let frameworks = master
        .get(op::call::Type::GetFrameworks)
        .await?
        .get_frameworks
        .unwrap_or_default()
        .frameworks;
    let mut offers: Vec<v1::Offer> = frameworks.into_iter().flat_map(|f| f.offers).collect();
    offers.retain(|o| {
        args.framework
            .as_deref()
            .is_none_or(|f| o.framework_id.value == f)
            && args.agent.as_deref().is_none_or(|a| o.agent_id.value == a)
    });
    offers.sort_by(|a, b| a.id.value.cmp(&b.id.value));
    if args.target.json {
        print_json(&json_list(&offers));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = offers
        .iter()
        .map(|o| {
            vec![
                o.id.value.clone(),
                o.framework_id.value.clone(),
                o.agent_id.value.clone(),
                o.hostname.clone(),
                o.allocation_info
                    .as_ref()
                    .and_then(|i| i.role.clone())
                    .unwrap_or_else(|| "*".into()),
                resources_text(&o.resources),
            ]
        })
        .collect();
    print_rows(
        &["ID", "FRAMEWORK", "AGENT", "HOSTNAME", "ROLE", "RESOURCES"],
        &rows,
        None,
    );
    Ok(())
}

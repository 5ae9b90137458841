//! `rustle-cross detect`: works out every inventory host's target (explicit
//! triple, cached facts, or an SSH probe), grouped by triple, and lists the
//! hosts it could not resolve with the reason.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rustle_cross::detect::{DetectOptions, ParsedInventory, TargetPlan};
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};

/// Where targets come from: shared by `detect` and `build --inventory`.
#[derive(Args, Clone)]
pub struct InventoryArgs {
    /// Fact cache directory (Ansible's jsonfile cache plugin).
    #[arg(long)]
    facts: Option<PathBuf>,
    /// Probe hosts without an explicit triple or cached facts over SSH.
    #[arg(long)]
    probe: bool,
    /// Only hosts matching this Ansible pattern (`web:db`, `all:!old`).
    #[arg(long)]
    limit: Option<String>,
    /// Stop at the first host that cannot be resolved.
    #[arg(long)]
    strict: bool,
    /// Exit 0 even when some hosts have no target.
    #[arg(long)]
    allow_unresolved: bool,
    /// Exit 0 when the inventory has no hosts (an empty inventory is
    /// almost always the wrong file or a group without hosts).
    #[arg(long)]
    allow_empty: bool,
}

/// Arguments of `rustle-cross detect`.
#[derive(Args)]
pub struct DetectArgs {
    /// The inventory: an INI, YAML or JSON file, or a directory of them.
    #[arg(long, short = 'i')]
    inventory: PathBuf,
    #[command(flatten)]
    options: InventoryArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

/// Detects the plan for an inventory loaded from `inventory` (`--limit` applies here).
pub async fn plan(
    manager: &CrossCompilationManager,
    inventory: &Path,
    parsed: ParsedInventory,
    args: &InventoryArgs,
) -> anyhow::Result<TargetPlan> {
    let parsed = match &args.limit {
        Some(pattern) => parsed.limit(pattern)?,
        None => parsed,
    };
    let options = DetectOptions {
        fact_cache_dir: args.facts.clone(),
        probe: args.probe,
        strict: args.strict,
        ..DetectOptions::default()
    };
    manager
        .detect_target_plan(&parsed, &options)
        .await
        .with_context(|| format!("cannot detect targets for {}", inventory.display()))
}

/// Why a plan without any host is refused (unless `--allow-empty`).
pub fn refuse_empty(plan: &TargetPlan, inventory: &Path, args: &InventoryArgs) -> Option<String> {
    let empty = plan.evidence.is_empty() && plan.unresolved.is_empty();
    (empty && !args.allow_empty).then(|| {
        format!(
            "inventory {} has no hosts; check that it is the right file and that its groups list hosts \
             (`rustle-cross detect -i {}` shows what it holds), or pass --allow-empty if none are expected",
            inventory.display(),
            inventory.display()
        )
    })
}

/// Whether an incomplete plan is acceptable.
pub fn accept(plan: &TargetPlan, args: &InventoryArgs) -> bool {
    plan.is_complete() || args.allow_unresolved
}

/// Runs the command: exits 1 when a host is unresolved or there is no host
/// (unless allowed).
pub async fn run(config: CrossCompilationConfig, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let manager = CrossCompilationManager::new(config)?;
    let parsed = ParsedInventory::load(&args.inventory)?;
    let plan = plan(&manager, &args.inventory, parsed, &args.options).await?;
    if let Some(refusal) = refuse_empty(&plan, &args.inventory, &args.options) {
        eprintln!("error: {refusal}");
        return Ok(ExitCode::from(1));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        println!("{}", plan.render_table());
    }
    Ok(if accept(&plan, &args.options) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

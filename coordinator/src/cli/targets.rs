//! `rustle-cross targets`: every supported target, whether this machine can
//! build it (toolchain, std source, linker, runner) and, when not, what to
//! install.

use std::process::ExitCode;

use clap::Args;
use rustle_cross::build::{StdSource, TargetAvailability};
use rustle_cross::manager::describe_missing;
use rustle_cross::{CompatibilityReport, CrossCompilationConfig, CrossCompilationManager};

use super::table::Table;

/// Arguments of `rustle-cross targets`.
#[derive(Args)]
pub struct TargetsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only these targets (default: every supported target).
    #[arg(long = "target", short = 't')]
    targets: Vec<String>,
    /// Print the Debian packages each target needs (from the rules table),
    /// in the format of `scripts/packages/debian.txt`, and exit.
    #[arg(long, conflicts_with_all = ["json", "targets"])]
    packages: bool,
}

/// Every report for the supported targets (or the named ones).
pub async fn reports(manager: &CrossCompilationManager, names: &[String]) -> anyhow::Result<Vec<CompatibilityReport>> {
    let targets = if names.is_empty() {
        manager.get_supported_targets().to_vec()
    } else {
        names.iter().map(|n| manager.config().target(n)).collect::<Result<Vec<_>, _>>()?
    };
    let mut reports = Vec::new();
    for target in &targets {
        reports.push(manager.validate_target_compatibility(target).await?);
    }
    Ok(reports)
}

/// Runs the command.
pub async fn run(config: CrossCompilationConfig, args: TargetsArgs) -> anyhow::Result<ExitCode> {
    if args.packages {
        // Pure: the table, not this machine (setup.sh and the Ansible role read it).
        print!("{}", rustle_cross::targets::debian_packages_file());
        return Ok(ExitCode::SUCCESS);
    }
    let manager = CrossCompilationManager::new(config)?;
    manager.setup_environment().await?;
    let reports = reports(&manager, &args.targets).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["TARGET", "STATUS", "TOOLCHAIN", "STD", "LINKER", "RUNNER", "NOTES"]);
    for r in &reports {
        let runner = r.runner.as_ref().map_or_else(|_| "-".to_owned(), |p| p.description.clone());
        let row = match &r.availability {
            TargetAvailability::Available(plan) => vec![
                r.target.to_string(),
                "available".into(),
                format!("{} ({})", plan.toolchain.name, plan.toolchain.release),
                match plan.std {
                    StdSource::Prebuilt => "prebuilt".into(),
                    StdSource::BuildStd => "build-std".into(),
                },
                plan.linker.describe(),
                runner,
                r.runner.as_ref().err().cloned().unwrap_or_default(),
            ],
            TargetAvailability::RequiresInstallation { missing, .. } => vec![
                r.target.to_string(),
                "missing".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                runner,
                describe_missing(missing),
            ],
            TargetAvailability::NotSupported { reason, .. } => vec![
                r.target.to_string(),
                "unsupported".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                reason.clone(),
            ],
        };
        table.row(row);
    }
    println!("{}", table.render());
    let available = reports.iter().filter(|r| r.is_buildable()).count();
    println!("\n{available} of {} targets can be built here.", reports.len());
    Ok(ExitCode::SUCCESS)
}

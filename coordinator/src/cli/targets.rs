//! `rustle-cross targets`: every supported target, whether this machine can
//! build it (toolchain, std source, linker, runner) and, when not, what to
//! install.

use std::process::ExitCode;

use clap::Args;
use rustle_cross::build::{StdSource, TargetAvailability, TemplateSource};
use rustle_cross::c_dependencies::{self, CDependency, CSupply};
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
    /// Also say, per target, what this template's C dependencies (its
    /// `-sys` crates, as cargo resolves them for the target) need and
    /// whether this machine has it, before anything is compiled.
    #[arg(long, conflicts_with = "packages")]
    template: Option<std::path::PathBuf>,
}

/// What a template's C dependencies need for one target, or why that
/// could not be found out.
#[derive(serde::Serialize)]
pub struct TemplateNeeds {
    /// The target.
    pub target: String,
    /// Each crate that needs something from the target's C side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_dependencies: Option<Vec<CDependency>>,
    /// Why the graph could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The C needs of `template` for each report's target, resolved with the
/// toolchain that would build it (else this machine's first).
/// The C dependencies of `template` per target, as lines: one per crate
/// that needs something, with whether it is present, built here, or
/// missing and the way out.
pub fn render_needs(template: &std::path::Path, needs: &[TemplateNeeds]) -> String {
    let mut text = format!("C dependencies of {}:\n", template.display());
    for need in needs {
        match (&need.c_dependencies, &need.error) {
            (Some(deps), _) if deps.is_empty() => text.push_str(&format!("  {}: none\n", need.target)),
            (Some(deps), _) => {
                for dep in deps {
                    let state = match &dep.supply {
                        CSupply::Present { from } => format!("present ({from})"),
                        CSupply::Buildable { how } => format!("built here ({how})"),
                        CSupply::Missing { way_out } => format!("MISSING: {way_out}"),
                    };
                    text.push_str(&format!("  {}: {} needs {}: {state}\n", need.target, dep.crate_name, dep.needs));
                }
            }
            (None, error) => {
                text.push_str(&format!("  {}: unknown: {}\n", need.target, error.as_deref().unwrap_or_default()))
            }
        }
    }
    text
}

pub async fn template_needs(
    reports: &[CompatibilityReport],
    toolchains: &[rustle_cross::build::Toolchain],
    template: &std::path::Path,
) -> anyhow::Result<Vec<TemplateNeeds>> {
    let prepared = TemplateSource::Dir(template.to_owned()).prepare(&std::env::temp_dir())?;
    let sdkroot = std::env::var_os("SDKROOT").map(std::path::PathBuf::from);
    let mut needs = Vec::new();
    for report in reports {
        let toolchain = match &report.availability {
            TargetAvailability::Available(plan) => Some(&plan.toolchain),
            _ => toolchains.first(),
        };
        let target = report.target.target();
        let resolved = match toolchain {
            Some(toolchain) => c_dependencies::resolved_packages(toolchain, &prepared, &target.triple).await,
            None => Err("no Rust toolchain to resolve the dependency graph with".to_owned()),
        };
        needs.push(match resolved {
            Ok(packages) => TemplateNeeds {
                target: report.target.to_string(),
                c_dependencies: Some(c_dependencies::supply(
                    &packages,
                    &target,
                    std::path::Path::new("/usr/lib"),
                    sdkroot.as_deref(),
                )),
                error: None,
            },
            Err(error) => TemplateNeeds { target: report.target.to_string(), c_dependencies: None, error: Some(error) },
        });
    }
    Ok(needs)
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
    let toolchains = manager.setup_environment().await?;
    let reports = reports(&manager, &args.targets).await?;
    let needs = match &args.template {
        Some(template) => Some(template_needs(&reports, &toolchains, template).await?),
        None => None,
    };
    if args.json {
        let mut value = serde_json::to_value(&reports)?;
        if let (Some(needs), Some(list)) = (&needs, value.as_array_mut()) {
            for (report, need) in list.iter_mut().zip(needs) {
                report["template"] = serde_json::to_value(need)?;
            }
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
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
    if let (Some(needs), Some(template)) = (&needs, &args.template) {
        print!("\n{}", render_needs(template, needs));
    }
    Ok(ExitCode::SUCCESS)
}

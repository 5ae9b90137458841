//! `rustle-cross fleet status`: connects to the configured agents and shows each one's capabilities, load and running jobs.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rustle_cross::CrossCompilationConfig;
use rustle_cross::fleet::{AgentView, ConnectionState, Fleet, FleetOptions};

use super::table::Table;

/// Arguments of `rustle-cross fleet`.
#[derive(Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Connect to every configured agent and show its capabilities, load and running jobs.
    Status {
        /// Machine-readable output on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command. Exit code 1 when an agent is not connected (unreachable,
/// or it refused the handshake: the STATE column says which).
pub async fn run(config: CrossCompilationConfig, args: FleetArgs) -> anyhow::Result<ExitCode> {
    let FleetCommand::Status { json } = args.command;
    anyhow::ensure!(
        config.fleet.is_enabled(),
        "no agents configured: add `[cross_compilation.fleet]` with `agents = [{{ name = \"...\", address = \"host:port\" }}]` to the config file"
    );
    let options = FleetOptions::from_config(&config.fleet)?;
    let fleet = Fleet::start(options, None).await.context("failed to start the fleet")?;
    let views = fleet.status().await;
    fleet.shutdown().await;
    let views = views?;
    let unreachable = views.iter().filter(|v| v.connection != ConnectionState::Connected).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "agents": views }))?);
    } else {
        print_table(&views);
    }
    Ok(if unreachable == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_table(views: &[AgentView]) {
    let mut table = Table::new(&["AGENT", "ADDRESS", "STATE", "HOST", "CORES", "LOAD", "SLOTS", "RUNNING", "TARGETS"]);
    let mut errors = Vec::new();
    for view in views {
        if let ConnectionState::Failed { reason } = &view.connection {
            // Most reasons name the agent already.
            let named = reason.contains(&format!("agent {} ", view.name));
            errors.push(if named { reason.clone() } else { format!("agent {}: {reason}", view.name) });
        }
        let mut row = vec![view.name.clone(), view.address.clone(), view.connection.label().to_owned()];
        match (&view.capabilities, &view.status) {
            (Some(report), status) => {
                row.push(format!("{}-{} {}", report.arch, report.os, report.os_version));
                row.push(report.cores.to_string());
                let load = status.as_ref().map_or(report.load, |s| s.load);
                row.push(format!("{:.2}", load.one));
                row.push(report.max_concurrent_jobs.to_string());
                row.push(status.as_ref().map_or(0, |s| s.running.len()).to_string());
                let targets =
                    status.as_ref().map_or_else(|| rustle_scheduler_targets(report), |s| s.buildable.join(","));
                row.push(targets);
            }
            (None, _) => row.extend(["-", "-", "-", "-", "-", "-"].map(str::to_owned)),
        }
        table.row(row);
    }
    println!("{}", table.render());
    for error in errors {
        eprintln!("error: {error}");
    }
}

fn rustle_scheduler_targets(report: &rustle_cross::fleet::CapabilityReport) -> String {
    let mut triples: Vec<&str> =
        report.toolchains.iter().flat_map(|t| t.targets.iter().map(|b| b.triple.as_str())).collect();
    triples.sort_unstable();
    triples.dedup();
    triples.join(",")
}

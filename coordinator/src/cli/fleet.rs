//! `rustle-cross fleet status`: connects to the configured agents and shows each one's capabilities, load and running jobs, once or (`--watch`) until interrupted.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use rustle_cross::CrossCompilationConfig;
use rustle_cross::detect::ParsedInventory;
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
        /// Also dial the hosts of this inventory's `build_agents` group
        /// (fleet.inventory_group), at `ansible_host` and `rustle_agent_port`.
        #[arg(long, short = 'i')]
        inventory: Option<PathBuf>,
        /// Keep the connections and redraw every `--interval` seconds until
        /// interrupted (Ctrl-C). Not on a terminal, each view is printed in
        /// turn under a time line; with --json, one JSON object per line.
        #[arg(long)]
        watch: bool,
        /// Seconds between two views with --watch.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "watch")]
        interval: u64,
    },
}

/// Adds the agents of `parsed`'s build-agent group to the fleet; once any
/// agent is configured, the coordinator's certificate must be too.
pub fn add_inventory_agents(
    config: &mut CrossCompilationConfig,
    path: &Path,
    parsed: &ParsedInventory,
) -> anyhow::Result<()> {
    let added = config
        .fleet
        .add_inventory_agents(parsed)
        .with_context(|| format!("failed to read the build agents of {}", path.display()))?;
    if added > 0 {
        config.fleet.validate().with_context(|| {
            format!(
                "{} lists {added} build agent(s) in its `{}` group; set fleet.ca, fleet.cert and fleet.key in the \
                 config file (--config) to dial them (the provision playbook writes such a file)",
                path.display(),
                config.fleet.inventory_group
            )
        })?;
    }
    Ok(())
}

/// Runs the command. Exit code 1 when an agent is not connected (unreachable,
/// or it refused the handshake: the STATE column says which).
pub async fn run(mut config: CrossCompilationConfig, args: FleetArgs) -> anyhow::Result<ExitCode> {
    let FleetCommand::Status { json, inventory, watch, interval } = args.command;
    if let Some(path) = &inventory {
        let parsed = ParsedInventory::load(path)?;
        add_inventory_agents(&mut config, path, &parsed)?;
    }
    anyhow::ensure!(
        config.fleet.is_enabled(),
        "no agents configured: add `[cross_compilation.fleet]` with `agents = [{{ name = \"...\", address = \"host:port\" }}]` to the config file, or pass --inventory with a `build_agents` group"
    );
    let options = FleetOptions::from_config(&config.fleet)?;
    let fleet = Fleet::start(options, None).await.context("failed to start the fleet")?;
    if watch {
        let watched = watch_views(&fleet, json, Duration::from_secs(interval)).await;
        fleet.shutdown().await;
        watched?;
        return Ok(ExitCode::SUCCESS);
    }
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

/// Shows the fleet's view every `interval` until Ctrl-C: redrawn in place
/// on a terminal, printed in turn (under a time line) otherwise, one JSON
/// line per view with `json`. The fleet redials agents that drop meanwhile.
async fn watch_views(fleet: &Fleet, json: bool, interval: Duration) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal() && !json;
    let started = Instant::now();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut interrupted => return Ok(()),
        }
        let views = fleet.status().await?;
        if json {
            println!("{}", serde_json::json!({ "seconds": started.elapsed().as_secs(), "agents": views }));
        } else {
            if terminal {
                // Clear the screen and go home, then draw.
                print!("\x1b[2J\x1b[H");
            }
            println!("fleet status, {}s (Ctrl-C to stop)", started.elapsed().as_secs());
            print_table(&views);
        }
        std::io::Write::flush(&mut std::io::stdout())?;
    }
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
        let draining = view.status.as_ref().is_some_and(|s| s.draining);
        let state = if draining { "draining".to_owned() } else { view.connection.label().to_owned() };
        let mut row = vec![view.name.clone(), view.address.clone(), state];
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

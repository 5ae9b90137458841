//! `rustle-cross`: cross-compile a Rust template for many targets, list what
//! this machine can build, and check its set-up.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rustle_cross::CrossCompilationConfig;
use rustle_process::report::{colour_on_stderr, render_error};

/// Distributed cross-compilation for Rust templates.
#[derive(Parser)]
#[command(name = "rustle-cross", version, about)]
struct Cli {
    /// Config file (TOML, section [cross_compilation]).
    #[arg(long, global = true, env = "RUSTLE_CROSS_CONFIG")]
    config: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every target this machine can build, and what the others need.
    Targets(cli::targets::TargetsArgs),
    /// Build a template for one or more targets.
    Build(cli::build::BuildArgs),
    /// Work out each inventory host's target, grouped by triple.
    Detect(cli::detect::DetectArgs),
    /// Check toolchains, linkers, runners, Docker and disk, with fixes.
    Doctor(cli::doctor::DoctorArgs),
    /// Create the fleet CA and issue agent and coordinator certificates.
    Ca(cli::ca::CaArgs),
    /// Show the configured build agents: capabilities, load, running jobs.
    Fleet(cli::fleet::FleetArgs),
    /// The binary cache: a build's key, and the entries (stats, list, prune, clear).
    Cache(cli::cache::CacheArgs),
    /// Docker build images: list them with their targets, build them ahead
    /// of a deploy, prune old ones.
    Images(cli::images::ImagesArgs),
}

/// Exit codes: 0 success, 1 a target failed, 2 bad usage or configuration.
#[expect(unsafe_code, reason = "the orphan reaper forks, which is sound only before any thread starts")]
fn main() -> ExitCode {
    // Inside a build container: the builder, not the CLI.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(rustle_docker::in_container::SUBCOMMAND) {
        return container_builder(&args[2..]);
    }
    let cli = Cli::parse();
    // Before any thread: local builds must not outlive a run killed outright.
    // SAFETY: nothing has started a thread yet (argument parsing does not).
    let reaper = unsafe { rustle_process::start_orphan_reaper() };
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUSTLE_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    if let Err(error) = reaper {
        tracing::info!("{error}");
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}", render_error(e.as_ref()));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Targets(args) => cli::targets::run(config, args).await,
            Command::Build(args) => cli::build::run(config, args, cli.verbose > 0).await,
            Command::Detect(args) => cli::detect::run(config, args).await,
            Command::Doctor(args) => cli::doctor::run(config, args).await,
            Command::Ca(args) => cli::ca::run(args),
            Command::Fleet(args) => cli::fleet::run(config, args).await,
            Command::Cache(args) => cli::cache::run(config, args).await,
            Command::Images(args) => cli::images::run(config, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

/// `rustle-cross __docker-build fetch|build JOBDIR`, run by rustle-cross
/// itself inside its build containers.
fn container_builder(args: &[String]) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUSTLE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(rustle_docker::in_container::main(args));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<CrossCompilationConfig> {
    let config = match path {
        Some(path) => CrossCompilationConfig::load(path)?,
        None => CrossCompilationConfig::default(),
    };
    Ok(config.apply_env(|k| std::env::var(k).ok())?)
}

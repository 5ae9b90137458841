//! `rustle-cross`: cross-compile a Rust template for many targets, list what
//! this machine can build, and check its set-up.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rustle_cross::CrossCompilationConfig;

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
}

/// Exit codes: 0 success, 1 a target failed, 2 bad usage or configuration.
fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let config = match load_config(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
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
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(2)
        }
    }
}

/// ANSI colours in log lines only on a terminal, and not with `NO_COLOR`
/// set (<https://no-color.org>): redirected logs stay plain text.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// the message before it already carries (many errors name their source).
fn render_error(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<CrossCompilationConfig> {
    let config = match path {
        Some(path) => CrossCompilationConfig::load(path)?,
        None => CrossCompilationConfig::default(),
    };
    Ok(config.apply_env(|k| std::env::var(k).ok())?)
}

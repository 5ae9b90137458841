//! `rustle-cross ca`: creates the fleet CA and issues agent and coordinator certificates (PEM, keys mode 0600).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rustle_transport::FleetCa;

/// Arguments of `rustle-cross ca`.
#[derive(Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a fleet CA (`ca.pem`, `ca-key.pem`) in --dir.
    Init {
        /// Where the CA lives.
        #[arg(long, default_value_os_t = default_dir())]
        dir: PathBuf,
    },
    /// Issue a certificate for an agent or a coordinator, signed by the CA in --dir.
    Issue(IssueArgs),
}

/// Arguments of `rustle-cross ca issue`.
#[derive(Args)]
struct IssueArgs {
    /// Issue an agent certificate with this name (the name coordinators dial it by).
    #[arg(long, conflicts_with = "coordinator", required_unless_present = "coordinator")]
    agent: Option<String>,
    /// Issue a coordinator certificate with this name.
    #[arg(long)]
    coordinator: Option<String>,
    /// Extra DNS names or IP addresses for an agent certificate (repeatable).
    #[arg(long = "san", requires = "agent")]
    sans: Vec<String>,
    /// Where the CA lives.
    #[arg(long, default_value_os_t = default_dir())]
    dir: PathBuf,
    /// Where to write `NAME.pem`, `NAME-key.pem` and `ca.pem` (default: --dir).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `~/.config/rustle-cross/ca` (or under `$XDG_CONFIG_HOME`).
fn default_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("rustle-cross")
        .join("ca")
}

/// Runs the command.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init { dir } => {
            FleetCa::init(&dir).with_context(|| format!("failed to create a fleet CA in {}", dir.display()))?;
            println!("created fleet CA in {}", dir.display());
            println!("  certificate: {}", dir.join("ca.pem").display());
            println!("  key (0600):  {}", dir.join("ca-key.pem").display());
        }
        CaCommand::Issue(issue) => {
            let ca = FleetCa::load(&issue.dir)
                .with_context(|| format!("failed to load the fleet CA from {}", issue.dir.display()))?;
            let (role, name, bundle) = match (&issue.agent, &issue.coordinator) {
                (Some(name), _) => ("agent", name, ca.issue_agent(name, &issue.sans)?),
                (None, Some(name)) => ("coordinator", name, ca.issue_coordinator(name)?),
                (None, None) => anyhow::bail!("pass --agent NAME or --coordinator NAME"),
            };
            let out = issue.out.unwrap_or(issue.dir);
            let files = bundle.write_to(&out, name)?;
            println!("issued {role} certificate for {name}");
            println!("  certificate: {}", files.cert.display());
            println!("  key (0600):  {}", files.key.display());
            println!("  fleet CA:    {}", files.ca.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

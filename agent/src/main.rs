//! `rustle-agent`: the build-host daemon of rustle-cross. For now it reports
//! what this host can build (`--print-capabilities`); serving builds to a
//! coordinator over QUIC comes with the fleet.

mod capabilities;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rustle_build::toolchain::{ToolchainConfig, ToolchainManager};

/// The rustle-cross build-host daemon.
#[derive(Parser)]
#[command(name = "rustle-agent", version, about)]
struct Args {
    /// Print this host's capability report as JSON and exit.
    #[arg(long)]
    print_capabilities: bool,
    /// The agent's id in reports (default: the host name).
    #[arg(long)]
    agent_id: Option<String>,
    /// Work and cache directory.
    #[arg(long, env = "RUSTLE_AGENT_WORK_DIR", default_value = "/var/lib/rustle-agent")]
    work_dir: PathBuf,
    /// Builds run at once.
    #[arg(long, default_value_t = 2)]
    max_concurrent_jobs: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let toolchains =
        ToolchainManager::new(ToolchainConfig { cache_dir: args.work_dir.join("cache"), ..ToolchainConfig::default() });
    let agent_id =
        args.agent_id.or_else(|| sysinfo::System::host_name().ok()).unwrap_or_else(|| "rustle-agent".to_owned());
    let report = capabilities::report(&agent_id, &toolchains, args.max_concurrent_jobs).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !args.print_capabilities {
        eprintln!(
            "rustle-agent: serving builds over QUIC is not implemented yet; this build only reports capabilities"
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

//! The coordinator side of `scripts/bench-fleet-scale.sh`: one coordinator
//! process running the real fleet (the `rustle_cross::fleet` library the
//! manager uses: sessions, scheduler and job actors over QUIC with mutual
//! TLS) against the agents listed in a `[cross_compilation.fleet]` config
//! (simulated ones, `rustle-agent simulate`). It measures its own CPU and
//! RSS from /proc while idle (heartbeats only), then while JOBS builds of
//! one template flow through the agents, and prints the figures.
//!
//! `cargo bench -p rustle-cross --bench fleet_scale -- --config FILE
//! --binary CANNED --template DIR [--jobs N] [--idle-secs S] [--target T]`

#[path = "../tests/fleet_scale_support/mod.rs"]
mod fleet_scale_support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use fleet_scale_support::{Usage, connected_agents, flow, measure};
use rustle_cross::CrossCompilationConfig;
use rustle_cross::fleet::{BuildSource, Fleet, FleetOptions};
use rustle_cross::targets::TemplateId;

/// Measures one coordinator against a fleet of (simulated) agents.
#[derive(Parser)]
struct Args {
    /// A config whose `[cross_compilation.fleet]` lists the agents and this coordinator's certificate.
    #[arg(long)]
    config: PathBuf,
    /// The canned binary the simulated agents deliver (its SHA-256 is checked on every job).
    #[arg(long)]
    binary: PathBuf,
    /// The template sent to the agents as the source bundle.
    #[arg(long)]
    template: PathBuf,
    /// Jobs to run.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Seconds measured while idle.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// The target every job builds.
    #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
    target: String,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_usage(phase: &str, usage: &Usage) {
    println!(
        "fleet-scale: {phase}: {:.3} cores ({:.2} s CPU in {:.1} s), RSS {:.0} MiB (peak {:.0} MiB)",
        usage.cores(),
        usage.cpu.as_secs_f64(),
        usage.wall.as_secs_f64(),
        mib(usage.end_rss),
        mib(usage.peak_rss)
    );
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let config = CrossCompilationConfig::load(&args.config)?;
    let options = FleetOptions::from_config(&config.fleet)?;
    let configured = options.agents.len();
    let canned = std::fs::read(&args.binary).with_context(|| format!("failed to read {}", args.binary.display()))?;
    let expected = rustle_protocol::Sha256Digest::of(&canned).to_string();
    let bundle = rustle_engine::bundle::pack_dir(&args.template, &rustle_engine::bundle::BundleLimits::default())?;
    let source = BuildSource::new(&TemplateId("fleet-scale-template".into()), bundle.bytes);
    println!(
        "fleet-scale: {configured} agents configured, {} jobs of {}, canned binary {} bytes (sha256 {expected}), bundle {} bytes",
        args.jobs,
        args.target,
        canned.len(),
        source.bundle.len()
    );

    let started = Instant::now();
    let fleet = Fleet::start(options, None).await?;
    let (connected, simulated) = connected_agents(&fleet).await;
    println!(
        "fleet-scale: {connected} of {configured} agents connected ({simulated} simulated) in {:.1} s, RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        mib(fleet_scale_support::rss_bytes())
    );
    // Let the connection storm settle before measuring the idle fleet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ((), idle) = measure(tokio::time::sleep(Duration::from_secs(args.idle_secs))).await;
    print_usage("idle (heartbeats only)", &idle);
    let (connected_idle, _) = connected_agents(&fleet).await;

    let (result, flowing) = measure(flow(&fleet, source, &args.target, args.jobs, &expected)).await;
    print_usage("jobs flowing", &flowing);
    let jobs_per_second = result.verified as f64 / flowing.wall.as_secs_f64();
    println!(
        "fleet-scale: {} of {} jobs verified (the canned binary's sha256, from a simulated agent) on {} agents: {jobs_per_second:.0} jobs/s",
        result.verified, args.jobs, result.agents_used
    );
    for failure in &result.failures {
        println!("fleet-scale: failure: {failure}");
    }
    let (connected_after, _) = connected_agents(&fleet).await;
    println!(
        "fleet-scale: agents connected: {connected} at start, {connected_idle} after idle, {connected_after} after the jobs; peak RSS of the run {:.0} MiB",
        mib(fleet_scale_support::status_bytes("VmHWM"))
    );
    println!(
        "| {connected} | {} | {:.3} | {:.0} | {:.3} | {:.0} | {jobs_per_second:.0} |",
        result.verified,
        idle.cores(),
        mib(idle.end_rss),
        flowing.cores(),
        mib(flowing.peak_rss)
    );
    fleet.shutdown().await;
    Ok(result.failed == 0 && connected == configured)
}

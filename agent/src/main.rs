//! `rustle-agent`: the build-host daemon of rustle-cross. `--config FILE`
//! serves builds to coordinators over QUIC with mutual TLS;
//! `--print-capabilities` prints what this host can build and exits;
//! `simulate` hosts many simulated agents for fleet benchmarks. A
//! configured `crl` is re-read when the file changes, or on SIGHUP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use rustle_agent::{AgentConfig, capabilities, revocation_watch};
use rustle_engine::toolchain::ToolchainManager;
use rustle_process::report::{colour_on_stderr, render_error};
use rustle_transport::{AgentListener, CertBundle, CertFiles, RevocationList, TransportOptions};

/// The rustle-cross build-host daemon.
#[derive(Parser)]
#[command(name = "rustle-agent", version, about)]
struct Args {
    /// The agent config file (TOML); without it the defaults apply.
    #[arg(long, env = "RUSTLE_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Print this host's capability report as JSON and exit.
    #[arg(long)]
    print_capabilities: bool,
    /// The agent's id in reports (overrides `agent_id`).
    #[arg(long)]
    agent_id: Option<String>,
    /// Work and cache directory (overrides `work_dir`).
    #[arg(long, env = "RUSTLE_AGENT_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Builds run at once (overrides `max_concurrent_jobs`).
    #[arg(long)]
    max_concurrent_jobs: Option<u32>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What else the binary does.
#[derive(clap::Subcommand)]
enum Command {
    /// Benchmarks only: host COUNT simulated agents in this process, each on
    /// its own UDP port with its own certificate, answering every build with
    /// a canned binary (no cargo runs; they report themselves as simulated).
    Simulate(SimulateArgs),
}

/// `rustle-agent simulate`.
#[derive(clap::Args)]
struct SimulateArgs {
    /// How many agents.
    #[arg(long, default_value_t = 1000)]
    count: u16,
    /// Agent i listens on UDP port BASE_PORT + i.
    #[arg(long, default_value_t = 20000)]
    base_port: u16,
    /// The address they listen on.
    #[arg(long, default_value = "127.0.0.1")]
    ip: std::net::IpAddr,
    /// Agent i is named NAME_PREFIX{i}.
    #[arg(long, default_value = "sim-agent-")]
    name_prefix: String,
    /// Holds NAME.pem and NAME-key.pem for every agent (`rustle-cross ca issue --agent NAME --out CERTS`).
    #[arg(long)]
    certs: PathBuf,
    /// The fleet CA certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Agent i works in WORK_DIR/NAME.
    #[arg(long)]
    work_dir: PathBuf,
    /// The canned binary every build delivers.
    #[arg(long)]
    binary: PathBuf,
    /// A target the agents answer (repeat for more).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// How long each simulated build takes.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Each agent's slots.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Each agent's heartbeat interval.
    #[arg(long, default_value_t = 1000)]
    heartbeat_interval_ms: u64,
}

#[expect(unsafe_code, reason = "the orphan reaper forks, which is sound only before any thread starts")]
fn main() -> ExitCode {
    let args = Args::parse();
    // Before any thread: builds must not outlive an agent killed outright.
    // SAFETY: nothing has started a thread yet (argument parsing does not).
    let reaper = unsafe { rustle_process::start_orphan_reaper() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    if let Err(error) = reaper {
        tracing::warn!("{error}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render_error(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Simulate(simulate)) = args.command {
        return simulate_fleet(simulate).await;
    }
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(id) = args.agent_id {
        config.agent_id = Some(id);
    }
    if let Some(dir) = args.work_dir {
        config.work_dir = dir;
    }
    if let Some(jobs) = args.max_concurrent_jobs {
        config.max_concurrent_jobs = jobs;
    }
    config.validate().map_err(|reason| anyhow::anyhow!("invalid agent config: {reason}"))?;
    // Builds take every core they can; the agent's own work comes first.
    rustle_process::set_child_niceness(config.build_niceness);

    if args.print_capabilities {
        let toolchains = ToolchainManager::new(config.toolchain_config());
        let warm = rustle_agent::warm::scan(&rustle_agent::warm::WorkLayout::new(&config.work_dir))
            .iter()
            .flat_map(|(id, record)| record.caches(id).collect::<Vec<_>>())
            .collect();
        let host = capabilities::HostLoad::measure(&config.work_dir);
        let report = capabilities::report(&config, &toolchains, warm, host).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    let files = CertFiles { cert: config.cert.clone(), key: config.key.clone(), ca: config.ca.clone() };
    let mut bundle = CertBundle::load(&files).context("failed to load the agent's certificates (ca, cert, key)")?;
    let mut crl_loaded = None;
    if let Some(path) = &config.crl {
        // Configured explicitly, so never skipped: a list that cannot be read stops the agent.
        let stamp = revocation_watch::FileStamp::of(path);
        let crl = RevocationList::load(path).context("failed to load the certificate revocation list (crl)")?;
        bundle = bundle.with_crl(crl);
        crl_loaded = Some((path.clone(), stamp));
    }
    let socket = std::net::UdpSocket::bind(config.listen)
        .with_context(|| format!("failed to bind UDP {} (listen)", config.listen))?;
    let (listener, addr) = AgentListener::from_socket(socket, &bundle, config.allowed(), TransportOptions::default())
        .context("failed to start the QUIC listener")?;
    eprintln!("rustle-agent: listening on {addr}");
    // A new crl.pem (or SIGHUP) takes effect without a restart.
    let _watch = crl_loaded.map(|(path, stamp)| {
        AbortOnDrop(tokio::spawn(revocation_watch::watch(path, stamp, listener.revocation_reloader())))
    });
    rustle_agent::serve(listener, config, shutdown_signal()).await?;
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `rustle-agent simulate`: many simulated agents until Ctrl-C or SIGTERM.
async fn simulate_fleet(args: SimulateArgs) -> anyhow::Result<()> {
    let fleet = rustle_agent::simulated_fleet::SimulatedFleet {
        count: args.count,
        ip: args.ip,
        base_port: args.base_port,
        name_prefix: args.name_prefix,
        certs: args.certs,
        ca: args.ca,
        work_dir: args.work_dir,
        max_concurrent_jobs: args.slots,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        simulate: rustle_agent::simulate::SimulateSettings {
            binary: args.binary,
            targets: args.targets,
            delay_ms: args.delay_ms,
        },
    };
    let (count, ip, first) = (fleet.count, fleet.ip, fleet.base_port);
    let ready = move || {
        let last = first + (count - 1);
        eprintln!("rustle-agent simulate: {count} SIMULATED agents listening on {ip} ports {first}..={last}");
    };
    rustle_agent::simulated_fleet::serve_simulated_fleet(fleet, ready, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

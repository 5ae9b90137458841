//! Many simulated agents in one process (`rustle-agent simulate`), so a
//! fleet of a thousand fits on one small machine for a benchmark. Each is
//! its own agent in every way a coordinator can see: its own QUIC endpoint
//! on its own UDP port, its own certificate from the fleet CA, its own
//! listener, sessions, jobs, slots, warm dir and heartbeats. What they share
//! is what one process has once: the async runtime, the build runtime and
//! the host sampler ([`AgentHost`]). Their builds are simulated
//! ([`crate::simulate`]).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rustle_transport::{AgentListener, AllowedCoordinators, CertBundle, CertFiles, TransportOptions};
use tokio::task::JoinSet;

use crate::simulate::SimulateSettings;
use crate::{AgentConfig, AgentError, AgentHost};

/// What `rustle-agent simulate` hosts.
#[derive(Debug, Clone)]
pub struct SimulatedFleet {
    /// How many agents.
    pub count: u16,
    /// The address they listen on.
    pub ip: IpAddr,
    /// Agent `i` listens on UDP port `base_port + i`.
    pub base_port: u16,
    /// Agent `i` is named `{name_prefix}{i}` and presents
    /// `certs/{name}.pem` with `certs/{name}-key.pem` (as `rustle-cross ca
    /// issue --agent NAME --out certs` writes them).
    pub name_prefix: String,
    /// Where the certificates are.
    pub certs: PathBuf,
    /// The fleet CA certificate.
    pub ca: PathBuf,
    /// Agent `i` works in `work_dir/{name}`.
    pub work_dir: PathBuf,
    /// Each agent's slots.
    pub max_concurrent_jobs: u32,
    /// Each agent's heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// What the builds answer.
    pub simulate: SimulateSettings,
}

impl SimulatedFleet {
    /// The name of agent `index`.
    pub fn name(&self, index: u16) -> String {
        format!("{}{index}", self.name_prefix)
    }
}

/// Starts every agent of `fleet`, calls `ready` once all listen, and serves
/// until `shutdown` resolves; then every agent drains and stops.
pub async fn serve_simulated_fleet(
    fleet: SimulatedFleet,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let last = u32::from(fleet.base_port) + u32::from(fleet.count).saturating_sub(1);
    if fleet.count == 0 || last > u32::from(u16::MAX) {
        return Err(AgentError::ConfigInvalid {
            reason: format!(
                "{} agents from port {} do not fit below port 65536; lower --base-port or --count",
                fleet.count, fleet.base_port
            ),
        });
    }
    std::fs::create_dir_all(&fleet.work_dir)
        .map_err(|source| AgentError::WorkDir { path: fleet.work_dir.clone(), source })?;
    let host = Arc::new(
        AgentHost::start(&fleet.work_dir, std::time::Duration::from_millis(fleet.heartbeat_interval_ms)).await?,
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut agents = JoinSet::new();
    for index in 0..fleet.count {
        let name = fleet.name(index);
        let files = CertFiles {
            cert: fleet.certs.join(format!("{name}.pem")),
            key: fleet.certs.join(format!("{name}-key.pem")),
            ca: fleet.ca.clone(),
        };
        let bundle = CertBundle::load(&files)?;
        let addr = SocketAddr::new(fleet.ip, fleet.base_port + index);
        let socket = std::net::UdpSocket::bind(addr).map_err(|source| AgentError::ConfigInvalid {
            reason: format!(
                "failed to bind UDP {addr} for agent {name}: {source}{}",
                if source.raw_os_error() == Some(24) { " (too many open files: raise `ulimit -n`)" } else { "" }
            ),
        })?;
        let (listener, _) = AgentListener::from_socket(
            socket,
            &bundle,
            AllowedCoordinators::AnyFromFleetCa,
            TransportOptions::default(),
        )?;
        let config = AgentConfig {
            listen: addr,
            agent_id: Some(name.clone()),
            work_dir: fleet.work_dir.join(&name),
            max_concurrent_jobs: fleet.max_concurrent_jobs,
            heartbeat_interval_ms: fleet.heartbeat_interval_ms,
            shutdown_drain_secs: 5,
            simulate: Some(fleet.simulate.clone()),
            ..AgentConfig::default()
        };
        let (host, mut stopped) = (host.clone(), stopped.clone());
        agents.spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            crate::serve_on(&host, listener, config, shutdown).await
        });
    }
    ready();
    shutdown.await;
    let _ = stop.send(true);
    let mut first_error = None;
    while let Some(ended) = agents.join_next().await {
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(error) => {
                first_error.get_or_insert(AgentError::Actor { actor: "simulated agent", reason: error.to_string() });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

//! `rustle-agent` as a library: serve build jobs to coordinators over an
//! injected [`AgentListener`] until a shutdown future resolves.
//!
//! The session flow (the coordinator dials):
//!
//! 1. The coordinator opens the control stream; both sides exchange `Hello`.
//! 2. The agent sends `Capabilities` (honouring `allowed_targets`, listing
//!    warm caches), then a `Load` heartbeat every `heartbeat_interval_ms`.
//! 3. To an `Offer` the agent answers `Accept` (a free slot and a toolchain
//!    for the target) or `Reject`.
//! 4. The coordinator sends the source bundle on a bulk stream; the agent
//!    answers `BulkAck` and syncs it into `work_dir/warm/<template_id>/src`.
//! 5. The agent builds, streaming `Event`s (queued, started, progress).
//! 6. On success it sends the binary on a bulk stream, then `Finished`
//!    with `Success`; otherwise `Finished` with `CompileFailed` or
//!    `InfrastructureFailure`.
//! 7. `Cancel`, or the connection dropping, kills the build's process group
//!    and removes its scratch state (`Finished{Cancelled}` if still connected).
//!
//! The work is done by ractor actors, one per file in `actors/`: a listener,
//! a session per connection and a job per accepted job.

mod actors;
pub mod capabilities;
pub mod config;
mod error;
pub mod heartbeat;
pub mod revocation_watch;
pub mod simulate;
pub mod simulated_fleet;
pub mod warm;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use rustle_engine::toolchain::ToolchainManager;
use rustle_transport::AgentListener;

pub use config::AgentConfig;
pub use error::AgentError;

use crate::actors::listener::{self, ListenerActor};
use crate::actors::{Context, Shared};
use crate::capabilities::HostLoad;
use crate::heartbeat::{HostSampler, LoadGauge};
use crate::simulate::Simulation;
use crate::warm::WorkLayout;

/// How long the actors may take to wind down after the drain.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping agent waits for its coordinators to close their connections.
const PEER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agents of one process share: the runtime their builds run on
/// and the host sampler whose measurements every heartbeat carries. One
/// daemon has one agent; a simulation ([`simulate`]) hosts many in one
/// process, and they share one of these instead of a runtime and a sampler
/// thread each.
#[derive(Debug)]
pub struct AgentHost {
    builds: Option<tokio::runtime::Runtime>,
    gauge: Arc<LoadGauge>,
    _sampler: HostSampler,
}

impl AgentHost {
    /// Measures the host once (the disk of `work_dir`), starts the sampler
    /// (every `sample_period`) and the build runtime.
    pub async fn start(work_dir: &std::path::Path, sample_period: Duration) -> Result<Self, AgentError> {
        let dir = work_dir.to_owned();
        let first_sample = tokio::task::spawn_blocking(move || HostLoad::measure(&dir)).await.unwrap_or_default();
        let gauge = Arc::new(LoadGauge::new(first_sample));
        let sampler = HostSampler::start(gauge.clone(), work_dir.to_owned(), sample_period)
            .map_err(|error| AgentError::Actor { actor: "host sampler", reason: error.to_string() })?;
        let builds = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rustle-build")
            .enable_all()
            .build()
            .map_err(|error| AgentError::Actor { actor: "build runtime", reason: error.to_string() })?;
        Ok(Self { builds: Some(builds), gauge, _sampler: sampler })
    }

    fn builds(&self) -> tokio::runtime::Handle {
        match &self.builds {
            Some(builds) => builds.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for AgentHost {
    fn drop(&mut self) {
        // Builds still running were cancelled with their jobs; a runtime may
        // not be dropped inside another, so it is let go without waiting.
        if let Some(builds) = self.builds.take() {
            builds.shutdown_background();
        }
    }
}

/// Serves coordinators on `listener` until `shutdown` resolves, then shuts
/// down gracefully: stops accepting connections and jobs, lets running jobs
/// finish for up to `shutdown_drain_secs`, ends the rest as retryable
/// failures (killing their builds), and closes every connection.
///
/// The listener's certificates and allowed coordinators are the caller's
/// business (see [`AgentConfig::allowed`]); `config.listen`, `ca`, `cert`
/// and `key` are not used here.
pub async fn serve(
    listener: AgentListener,
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate().map_err(|reason| AgentError::ConfigInvalid { reason })?;
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|source| AgentError::WorkDir { path: config.work_dir.clone(), source })?;
    let host = AgentHost::start(&config.work_dir, config.heartbeat_interval()).await?;
    serve_on(&host, listener, config, shutdown).await
}

/// [`serve`] as one of the agents of `host`'s process.
pub async fn serve_on(
    host: &AgentHost,
    listener: AgentListener,
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate().map_err(|reason| AgentError::ConfigInvalid { reason })?;
    for dir in [config.work_dir.clone(), config.cache_dir()] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::WorkDir { path: dir.clone(), source })?;
    }
    let simulation = match &config.simulate {
        Some(settings) => {
            let simulation = Simulation::load(settings)?;
            tracing::warn!(
                "SIMULATED agent {}: answers every build offer for {} with the canned binary {} \
                 (sha256 {}); no cargo runs. Never use it to build.",
                config.resolved_agent_id(),
                settings.targets.join(", "),
                settings.binary.display(),
                simulation.checksum(),
            );
            Some(Arc::new(simulation))
        }
        None => None,
    };
    let drain = Duration::from_secs(config.shutdown_drain_secs);
    let context: Context = Arc::new(Shared {
        layout: WorkLayout::new(&config.work_dir),
        toolchains: ToolchainManager::new(config.toolchain_config()),
        gauge: Arc::new(host.gauge.sharing_host()),
        builds: host.builds(),
        simulation,
        config,
    });
    let listener = Arc::new(listener);
    let args = listener::Arguments { context, listener: listener.clone() };
    let (actor, handle) = Actor::spawn(None, ListenerActor, args)
        .await
        .map_err(|error| AgentError::Actor { actor: "listener", reason: error.to_string() })?;
    tracing::info!("rustle-agent listening on {}", listener.local_addr());

    shutdown.await;
    tracing::info!("rustle-agent shutting down: draining running jobs for up to {}s", drain.as_secs());
    if !matches!(actor.call(listener::Msg::Drain, Some(drain)).await, Ok(ractor::rpc::CallResult::Success(()))) {
        tracing::warn!("jobs still running after {}s; ending them", drain.as_secs());
    }
    let _ = actor.stop_and_wait(Some("shutdown".into()), Some(STOP_TIMEOUT)).await;
    let _ = tokio::time::timeout(STOP_TIMEOUT, handle).await;
    // Closing from here would drop what is still in flight (the last job's
    // report): the coordinators close once they have it.
    if !listener.wait_for_peers_to_close(PEER_CLOSE_TIMEOUT).await {
        tracing::info!("coordinators still connected after {}s; closing", PEER_CLOSE_TIMEOUT.as_secs());
    }
    listener.shutdown("the agent is shutting down").await;
    Ok(())
}

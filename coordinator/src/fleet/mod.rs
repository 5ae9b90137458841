//! The build fleet: dials `rustle-agent`s over QUIC with mutual TLS, schedules each target on an agent or the local fallback, and brings back validated binaries.
//!
//! # Shape
//!
//! Four kinds of actor, one per file, each with its `Msg` enum, `State` and
//! `Arguments`, talking only through their mailboxes (no shared mutable
//! state):
//!
//! - [`fleet`](self::fleet): owns the agent registry (configured address,
//!   connection state, last capability report) and starts one session per agent;
//! - [`session`]: one per agent connection; reads the control stream,
//!   forwards what the agent says to the scheduler, sends offers and source
//!   bundles, receives and verifies artifacts;
//! - [`scheduler`]: wraps the pure [`rustle_scheduler::Scheduler`], feeds it
//!   events with `now` from a monotonic clock, carries out its actions and
//!   wakes it at `poll_timeout()`;
//! - [`job`]: one per build; collects progress, the artifact and the final
//!   report, and runs the local-fallback build when the scheduler sends the
//!   job there.
//!
//! They are ractor actors (spawned unlinked: a session or job ending is
//! normal, not a failure to propagate). Long work (dialling, reading and
//! writing streams, local builds) runs in spawned tasks that report back as
//! messages, so no mailbox waits on the network; every request/reply
//! ([`Fleet::status`], the readiness wait) has a timeout.

pub mod config;
#[expect(clippy::module_inception, reason = "the fleet actor lives in the fleet module, as the other actors do")]
mod fleet;
mod job;
mod scheduler;
mod session;
#[cfg(test)]
mod tests;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use rustle_engine::engine::{CompilationError, CompiledBinary};
pub use rustle_protocol::CapabilityReport;
use rustle_protocol::{Hello, Role, Sha256Digest, TemplateId};
use rustle_scheduler::FallbackExecutor;
pub use rustle_scheduler::{AgentStatus, Decision, Executor, FallbackId, SchedulerConfig};
use rustle_targets::BuildRequest;
use rustle_transport::{CertBundle, CertFiles, CoordinatorDialer, RevocationList, TransportError, TransportOptions};
use serde::Serialize;
use tokio::sync::oneshot;

use self::config::{AgentEndpoint, FleetConfig};
use crate::outcome::{ProgressSink, TargetOutcome};

/// How long a request to an actor waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the fleet as a whole (one target's failure is a [`TargetOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The coordinator's certificate files cannot be used.
    #[error(
        "failed to load the coordinator certificate ({}, {}, {}): {source}; \
         issue one with `rustle-cross ca issue --coordinator NAME`",
        .files.cert.display(), .files.key.display(), .files.ca.display()
    )]
    Certificate {
        /// The files.
        files: Box<CertFiles>,
        /// Why.
        #[source]
        source: Box<rustle_transport::CaError>,
    },
    /// `fleet.crl` names a revocation list that cannot be used.
    #[error("failed to load the fleet's certificate revocation list (fleet.crl): {0}")]
    RevocationList(Box<rustle_transport::CaError>),
    /// `[cross_compilation.fleet]` lacks a certificate path.
    #[error("failed to set up the fleet: `fleet.{key}` is not set; point it at a PEM file")]
    MissingPath {
        /// The key.
        key: &'static str,
    },
    /// The QUIC endpoint could not be created.
    #[error("failed to open the coordinator's QUIC endpoint: {0}")]
    Transport(Box<TransportError>),
    /// The agents' inventory cannot be read or names a bad port.
    #[error("failed to read the build agents from the inventory: {0}")]
    Inventory(String),
    /// The scheduler's settings are invalid.
    #[error(transparent)]
    Scheduler(#[from] rustle_scheduler::ConfigError),
    /// An actor could not be started.
    #[error("failed to start the fleet's {actor} actor: {reason}")]
    Spawn {
        /// Which actor.
        actor: &'static str,
        /// ractor's reason.
        reason: String,
    },
    /// An actor stopped or did not answer in time.
    #[error("failed to reach the fleet's {actor} actor: it stopped or did not answer within {}s", REPLY_TIMEOUT.as_secs())]
    ActorGone {
        /// Which actor.
        actor: &'static str,
    },
}

/// What the fleet needs to start.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Agents to dial.
    pub agents: Vec<AgentEndpoint>,
    /// This coordinator's certificate, key and the fleet CA.
    pub certificate: CertBundle,
    /// Heartbeat bound, offer timeout, attempts (the fallback chain is set by [`Fleet::start`]).
    pub scheduler: SchedulerConfig,
    /// QUIC timeouts.
    pub transport: TransportOptions,
    /// How long [`Fleet::start`] waits for every agent to connect and report its capabilities.
    pub connect_timeout: Duration,
    /// Where measured build speeds per (executor, template, target) are
    /// kept between runs, so the next placement starts from them.
    pub speeds_file: Option<std::path::PathBuf>,
}

impl FleetOptions {
    /// Options from `[cross_compilation.fleet]`, reading the certificate files.
    pub fn from_config(config: &FleetConfig) -> Result<Self, FleetError> {
        let path = |value: &Option<std::path::PathBuf>, key| value.clone().ok_or(FleetError::MissingPath { key });
        let files = CertFiles {
            cert: path(&config.cert, "cert")?,
            key: path(&config.key, "key")?,
            ca: path(&config.ca, "ca")?,
        };
        let mut certificate = CertBundle::load(&files)
            .map_err(|source| FleetError::Certificate { files: Box::new(files), source: Box::new(source) })?;
        if let Some(path) = &config.crl {
            let crl = RevocationList::load(path).map_err(|source| FleetError::RevocationList(Box::new(source)))?;
            certificate = certificate.with_crl(crl);
        }
        let mut agents = config.agents.clone();
        if let Some(path) = &config.inventory {
            // The inventory's errors name the file (and line) themselves.
            let inventory =
                rustle_detect::ParsedInventory::load(path).map_err(|e| FleetError::Inventory(e.to_string()))?;
            let listed = config.agents_from_inventory(&inventory).map_err(|e| FleetError::Inventory(e.to_string()))?;
            // An agent listed in the config wins over the inventory's entry of the same name.
            agents.extend(listed.into_iter().filter(|a| !config.agents.iter().any(|c| c.name == a.name)));
        }
        let scheduler = SchedulerConfig {
            heartbeat_timeout: Duration::from_secs(config.heartbeat_timeout_secs),
            ..SchedulerConfig::default()
        };
        Ok(Self {
            agents,
            certificate,
            scheduler,
            transport: TransportOptions::default(),
            connect_timeout: Duration::from_secs(config.connect_timeout_secs),
            speeds_file: None,
        })
    }
}

/// Builds one request on this machine (as the scheduler dispatched it,
/// its deadline the time the job has left): the local engine path of
/// [`CrossCompilationManager`](crate::CrossCompilationManager).
pub type LocalBuilder = Arc<
    dyn Fn(BuildRequest, ProgressSink) -> BoxFuture<'static, Result<CompiledBinary, CompilationError>> + Send + Sync,
>;

/// The local fallback: this machine takes the builds no agent can,
/// `slots` at a time. Which builds it can take, and how, each build says
/// itself ([`FleetBuild::local`]): the coordinator planned it on its own
/// toolchains with that build's settings, and the fleet outlives any one
/// template.
#[derive(Debug, Clone, Copy)]
pub struct LocalFallback {
    /// Builds at once.
    pub slots: u32,
}

/// One target to build on the fleet.
#[derive(Clone)]
pub struct FleetBuild {
    /// The build, whole.
    pub request: BuildRequest,
    /// Where its progress goes.
    pub progress: ProgressSink,
    /// How this machine builds it, when it can (`None`: only an agent can).
    pub local: Option<LocalBuilder>,
}

impl std::fmt::Debug for FleetBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBuild")
            .field("request", &self.request)
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

/// The source of one build, shared by all its targets.
#[derive(Debug, Clone)]
pub struct BuildSource {
    /// Names the template (keys the agents' warm caches).
    pub template_id: TemplateId,
    /// The packed template (`tar.zst`, from `rustle_engine::bundle::pack_template`).
    pub bundle: Arc<Vec<u8>>,
    /// Its SHA-256.
    pub bundle_sha256: Sha256Digest,
}

impl BuildSource {
    /// A source from packed bundle bytes of the template `template`.
    pub fn new(template: &rustle_targets::TemplateId, bundle: Vec<u8>) -> Self {
        let bundle_sha256 = Sha256Digest::of(&bundle);
        Self { template_id: wire::template_id_to_wire(template), bundle: Arc::new(bundle), bundle_sha256 }
    }
}

/// How an agent's connection stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// Dialling, or waiting for its capability report.
    Connecting,
    /// Connected; it reported its capabilities.
    Connected,
    /// The connection failed or ended.
    Failed {
        /// Why, naming the agent.
        reason: String,
    },
}

impl ConnectionState {
    /// How the state reads in a table: `connecting`, `connected`, or what
    /// kind of failure it was (`refused our certificate`, `certificate not
    /// from the fleet CA`, `unreachable`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            // Nothing came back in time (the session's own wording).
            Self::Failed { reason }
                if ["no answer within", "sent no capability report within", "failed to resolve agent"]
                    .iter()
                    .any(|phrase| reason.contains(phrase)) =>
            {
                rustle_transport::ConnectionFailure::Unreachable.label()
            }
            // The session keeps the transport error as text (with context).
            Self::Failed { reason } => rustle_transport::ConnectionFailure::of_message(reason).label(),
        }
    }
}

/// One configured agent as `rustle-cross fleet status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    /// Its name.
    pub name: String,
    /// Where it was dialled.
    pub address: String,
    /// The connection.
    pub connection: ConnectionState,
    /// Its last capability report.
    pub capabilities: Option<CapabilityReport>,
    /// Handshakes completed with it since the fleet started: 1 for a
    /// connection kept all along, more when it was dialled again.
    pub connects: u32,
    /// The scheduler's view: load, slots, running jobs.
    pub status: Option<AgentStatus>,
}

/// A running fleet: the handle to its actors. Dropping it stops them;
/// [`shutdown`](Self::shutdown) also lets the agents hear the connections close.
#[derive(Debug)]
pub struct Fleet {
    fleet: ActorRef<fleet::Msg>,
    scheduler: ActorRef<scheduler::Msg>,
    dialer: Arc<CoordinatorDialer>,
    connect_timeout: Duration,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.fleet.stop(None);
        self.scheduler.stop(None);
    }
}

impl Fleet {
    /// Starts the actors, dials every agent, and waits (up to the connect
    /// timeout) until each has reported its capabilities or failed.
    pub async fn start(options: FleetOptions, local: Option<LocalFallback>) -> Result<Self, FleetError> {
        let socket = std::net::UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, 0))
            .or_else(|_| std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)))
            .map_err(|source| {
                FleetError::Transport(Box::new(TransportError::Bind {
                    addr: std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
                    source,
                }))
            })?;
        let dialer = Arc::new(
            CoordinatorDialer::from_socket(socket, &options.certificate, options.transport.clone())
                .map_err(|e| FleetError::Transport(Box::new(e)))?,
        );
        let mut config = options.scheduler.clone();
        // No declared targets: each build says whether it can be built here.
        config.fallbacks =
            local.map(|l| vec![FallbackExecutor::local(Vec::<String>::new(), l.slots.max(1))]).unwrap_or_default();
        let core = rustle_scheduler::Scheduler::new(config)?;
        let spawn_error = |actor| move |error: ractor::SpawnErr| FleetError::Spawn { actor, reason: error.to_string() };
        let (scheduler, _) = Actor::spawn(
            None,
            scheduler::SchedulerActor,
            scheduler::Arguments { core, speeds_file: options.speeds_file.clone() },
        )
        .await
        .map_err(spawn_error("scheduler"))?;
        let fleet_args = fleet::Arguments {
            agents: options.agents.clone(),
            dialer: dialer.clone(),
            scheduler: scheduler.clone(),
            hello: Hello::new(Role::Coordinator, env!("CARGO_PKG_VERSION")),
            connect_timeout: options.connect_timeout,
        };
        let fleet = match Actor::spawn(None, fleet::FleetActor, fleet_args).await {
            Ok((fleet, _)) => fleet,
            Err(error) => {
                scheduler.stop(None);
                return Err(spawn_error("fleet")(error));
            }
        };
        let handle = Self { fleet, scheduler, dialer, connect_timeout: options.connect_timeout };
        // Agents still connecting after the bound are used once they do.
        let _ = handle.fleet.call(fleet::Msg::WaitReady, Some(handle.ready_bound())).await;
        Ok(handle)
    }

    /// Dials every agent whose connection ended (now, not at its backoff's
    /// next try) and waits, up to the connect timeout, until each has
    /// reported its capabilities or failed. Call it before a build on a
    /// fleet that has been running: an agent that restarted is used again.
    pub async fn refresh(&self) {
        let _ = self.fleet.call(fleet::Msg::Refresh, Some(self.ready_bound())).await;
    }

    fn ready_bound(&self) -> Duration {
        self.connect_timeout + Duration::from_secs(1)
    }

    /// Every configured agent with its connection, capabilities and load.
    pub async fn status(&self) -> Result<Vec<AgentView>, FleetError> {
        let mut views = call(&self.fleet, fleet::Msg::Registry, "fleet").await?;
        let statuses = call(&self.scheduler, scheduler::Msg::Status, "scheduler").await?;
        for view in &mut views {
            view.status = statuses.iter().find(|s| s.agent.0 == view.name).cloned();
        }
        Ok(views)
    }

    /// Submits builds of one template from `source`, placed together as one
    /// batch (the scarcest target first); each request's deadline bounds its
    /// whole job (queueing, transfers and retries included). The receivers,
    /// in order, resolve to the outcomes, which say where each was built and why.
    pub fn submit(
        &self,
        builds: Vec<FleetBuild>,
        source: BuildSource,
    ) -> Result<Vec<oneshot::Receiver<TargetOutcome>>, FleetError> {
        let (submissions, outcomes): (Vec<_>, Vec<_>) = builds
            .into_iter()
            .map(|build| {
                let (reply, outcome) = oneshot::channel();
                (scheduler::Submission { build, source: source.clone(), reply }, outcome)
            })
            .unzip();
        self.scheduler
            .send_message(scheduler::Msg::Submit(submissions))
            .map_err(|_| FleetError::ActorGone { actor: "scheduler" })?;
        Ok(outcomes)
    }

    /// Closes every agent connection and stops the actors.
    pub async fn shutdown(self) {
        let bound = Some(REPLY_TIMEOUT);
        let _ = self.fleet.stop_and_wait(None, bound).await;
        let _ = self.scheduler.stop_and_wait(None, bound).await;
        self.dialer.shutdown("the coordinator is done").await;
    }
}

/// A request/reply to an actor, bounded by [`REPLY_TIMEOUT`].
async fn call<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    request: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
    name: &'static str,
) -> Result<T, FleetError> {
    match actor.call(request, Some(REPLY_TIMEOUT)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        _ => Err(FleetError::ActorGone { actor: name }),
    }
}

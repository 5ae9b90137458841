//! An in-test build agent: the agent side of the session flow over the real transport, building with the real `rustle_engine` engine, with fault injection (dying mid-build, cutting an artifact short).

#![allow(dead_code, reason = "each test uses a different subset")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustle_engine::bundle::{BundleLimits, unpack_bundle};
use rustle_engine::engine;
use rustle_engine::template::TemplateSource;
use rustle_engine::toolchain::ToolchainManager;
use rustle_protocol::{
    AgentId, AgentToCoordinator, BuildEvent, BuildOutcome, BuildRoute, BuildableTarget, BulkAck, BulkHeader, BulkKind,
    CapabilityReport, CoordinatorToAgent, Hello, JobId, JobOffer, LibcReport, LoadAverage, LoadUpdate, RejectReason,
    Role, Sha256Digest, ToolchainReport,
};
use rustle_transport::{AgentListener, AllowedCoordinators, CertBundle, Connection, IncomingConnection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Heartbeat interval of test agents.
pub const HEARTBEAT: Duration = Duration::from_millis(300);

/// What goes wrong on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// Once a build has started, go silent like a SIGKILLed process: no
    /// heartbeats, no answers, no artifact (the connection is not closed).
    DieWhenBuilding,
    /// Send only half of the first artifact, reset the stream, and still report success.
    CutFirstArtifact,
}

/// A test agent's identity and abilities.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Its name (on its certificate).
    pub name: String,
    /// The arch it reports.
    pub arch: String,
    /// The host triple of the toolchain it reports.
    pub host_triple: String,
    /// Triples it reports it can build (and accepts).
    pub triples: Vec<String>,
    /// Jobs at once.
    pub slots: u32,
    /// Its fault.
    pub fault: Fault,
}

/// A running test agent.
pub struct TestAgent {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it has "died".
    pub dead: Arc<AtomicBool>,
    /// Jobs it accepted.
    pub accepted: Arc<Mutex<Vec<JobId>>>,
    task: JoinHandle<()>,
    /// Connections of a dead agent, kept open and silent.
    zombies: Arc<Mutex<Vec<Connection>>>,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Shared by all of one agent's connections.
#[derive(Clone)]
struct AgentContext {
    spec: Arc<AgentSpec>,
    toolchains: Arc<ToolchainManager>,
    work: PathBuf,
    cache: PathBuf,
    dead: Arc<AtomicBool>,
    cut_done: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<JobId>>>,
    zombies: Arc<Mutex<Vec<Connection>>>,
}

/// Starts an agent on 127.0.0.1, port 0.
pub fn start_agent(
    spec: AgentSpec,
    bundle: &CertBundle,
    toolchains: Arc<ToolchainManager>,
    work: PathBuf,
    cache: PathBuf,
) -> TestAgent {
    let (listener, addr) =
        AgentListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), bundle, AllowedCoordinators::AnyFromFleetCa)
            .expect("bind the test agent");
    let context = AgentContext {
        spec: Arc::new(spec),
        toolchains,
        work,
        cache,
        dead: Arc::new(AtomicBool::new(false)),
        cut_done: Arc::new(AtomicBool::new(false)),
        accepted: Arc::new(Mutex::new(Vec::new())),
        zombies: Arc::new(Mutex::new(Vec::new())),
    };
    let (dead, accepted, zombies) = (context.dead.clone(), context.accepted.clone(), context.zombies.clone());
    let task = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Some(incoming) = listener.accept().await {
            connections.push(tokio::spawn(serve(incoming, context.clone())));
        }
    });
    TestAgent { addr, dead, accepted, task, zombies }
}

/// What the connection's main loop hears from its helper tasks.
enum Internal {
    Bundle(JobId, Result<Vec<u8>, String>),
}

async fn serve(incoming: IncomingConnection, context: AgentContext) {
    let Ok(connection) = incoming.authenticate().await else { return };
    let Ok(control) = connection.accept_control(Hello::new(Role::Agent, "0.1.0")).await else { return };
    let (mut sender, mut receiver) = control.into_split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<AgentToCoordinator>();
    let dead = context.dead.clone();
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if dead.load(Ordering::SeqCst) || sender.send(&message).await.is_err() {
                break;
            }
        }
        // Keep the stream open while "dead": a killed process sends nothing, not even a close.
        std::future::pending::<()>().await;
        drop(sender);
    });
    let _ = out.send(AgentToCoordinator::Capabilities(report(&context.spec)));
    let heartbeat_out = out.clone();
    let heartbeat_dead = context.dead.clone();
    let heartbeat = tokio::spawn(async move {
        let sequence = AtomicU64::new(0);
        let mut ticks = tokio::time::interval(HEARTBEAT);
        loop {
            ticks.tick().await;
            if heartbeat_dead.load(Ordering::SeqCst) {
                break;
            }
            let update = LoadUpdate {
                sequence: sequence.fetch_add(1, Ordering::SeqCst),
                running_jobs: 0,
                memory_available_bytes: 1 << 30,
                load: LoadAverage::default(),
                disk_free_bytes: 1 << 34,
            };
            if heartbeat_out.send(AgentToCoordinator::Load(update)).is_err() {
                break;
            }
        }
    });
    let (internal, mut internals) = mpsc::unbounded_channel();
    let bulk_connection = connection.clone();
    let bundles = tokio::spawn(async move {
        while let Ok(incoming) = bulk_connection.accept_bulk().await {
            let job = incoming.header().job;
            let result = incoming.read_to_vec().await.map_err(|e| e.to_string());
            if internal.send(Internal::Bundle(job, result)).is_err() {
                break;
            }
        }
    });
    let mut offers: HashMap<JobId, JobOffer> = HashMap::new();
    let mut jobs: HashMap<JobId, JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            message = receiver.recv::<CoordinatorToAgent>() => {
                let Ok(Some(message)) = message else { break };
                if context.dead.load(Ordering::SeqCst) {
                    continue;
                }
                match message {
                    CoordinatorToAgent::Offer(offer) => {
                        if context.spec.triples.contains(&offer.target.name) {
                            let _ = out.send(AgentToCoordinator::Accept { job: offer.job });
                            if let Ok(mut accepted) = context.accepted.lock() {
                                accepted.push(offer.job);
                            }
                            offers.insert(offer.job, offer);
                        } else {
                            let reason = RejectReason::UnsupportedTarget { triple: offer.target.name.clone() };
                            let _ = out.send(AgentToCoordinator::Reject { job: offer.job, reason });
                        }
                    }
                    CoordinatorToAgent::Cancel { job } => {
                        offers.remove(&job);
                        if let Some(task) = jobs.remove(&job) {
                            task.abort();
                            let _ = out.send(AgentToCoordinator::Finished { job, outcome: BuildOutcome::Cancelled });
                        }
                    }
                    CoordinatorToAgent::BulkAck(_) => {}
                }
            }
            Some(Internal::Bundle(job, result)) = internals.recv() => {
                let Some(offer) = offers.remove(&job) else { continue };
                match result {
                    Ok(bytes) => {
                        let _ = out.send(AgentToCoordinator::BulkAck(BulkAck::Verified { job, kind: BulkKind::SourceBundle }));
                        let task = tokio::spawn(run_job(offer, bytes, connection.clone(), out.clone(), context.clone()));
                        jobs.insert(job, task);
                    }
                    Err(reason) => {
                        let _ = out.send(AgentToCoordinator::BulkAck(BulkAck::Rejected { job, kind: BulkKind::SourceBundle, reason }));
                    }
                }
            }
        }
    }
    if context.dead.load(Ordering::SeqCst) {
        if let Ok(mut zombies) = context.zombies.lock() {
            zombies.push(connection.clone());
        }
        return;
    }
    for task in jobs.values() {
        task.abort();
    }
    heartbeat.abort();
    bundles.abort();
    writer.abort();
}

fn report(spec: &AgentSpec) -> CapabilityReport {
    CapabilityReport {
        agent_id: AgentId(spec.name.clone()),
        agent_version: "0.1.0".into(),
        arch: spec.arch.clone(),
        os: "linux".into(),
        os_version: "test".into(),
        libc: Some(LibcReport { name: "glibc".into(), version: "2.36".into() }),
        cores: 2,
        memory_total_bytes: 1 << 32,
        memory_available_bytes: 1 << 31,
        load: LoadAverage::default(),
        disk_free_bytes: 1 << 34,
        toolchains: vec![ToolchainReport {
            name: "stable".into(),
            version: "1.95.0".into(),
            host_triple: spec.host_triple.clone(),
            targets: spec
                .triples
                .iter()
                .map(|t| BuildableTarget { triple: t.clone(), route: BuildRoute::PrebuiltStd })
                .collect(),
        }],
        docker_available: false,
        max_concurrent_jobs: spec.slots,
        warm_caches: Vec::new(),
    }
}

async fn run_job(
    offer: JobOffer,
    bundle: Vec<u8>,
    connection: Connection,
    out: mpsc::UnboundedSender<AgentToCoordinator>,
    context: AgentContext,
) {
    let job = offer.job;
    let outcome = match build(&offer, &bundle, &connection, &out, &context).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return,
        Err(reason) => BuildOutcome::InfrastructureFailure { reason, retryable: true },
    };
    let _ = out.send(AgentToCoordinator::Finished { job, outcome });
}

/// Builds the job; `Ok(None)` when the agent "died".
async fn build(
    offer: &JobOffer,
    bundle: &[u8],
    connection: &Connection,
    out: &mpsc::UnboundedSender<AgentToCoordinator>,
    context: &AgentContext,
) -> Result<Option<BuildOutcome>, String> {
    let job = offer.job;
    let dir = context.work.join(format!("job-{}-{}", std::process::id(), job.0));
    let _ = std::fs::remove_dir_all(&dir);
    unpack_bundle(bundle, &dir, &BundleLimits::default()).map_err(|e| e.to_string())?;
    let template =
        TemplateSource::Dir(dir.clone()).prepare(&context.work.join("templates")).map_err(|e| e.to_string())?;
    // The same wire conversion and engine entry point as the real agent:
    // the offer's target and overrides, whole.
    let request = rustle_agent::wire::request_from_offer(offer, template.id.clone(), Duration::from_secs(600), 1 << 30)
        .map_err(|e| e.to_string())?;
    let _ = out.send(AgentToCoordinator::Event { job, event: BuildEvent::Started });
    if context.spec.fault == Fault::DieWhenBuilding {
        context.dead.store(true, Ordering::SeqCst);
        return Ok(None);
    }
    let progress_out = out.clone();
    let progress = move |event: engine::BuildEvent| {
        if let engine::BuildEvent::Progress { done, total, .. } = event {
            let event = BuildEvent::Progress {
                done: u32::try_from(done).unwrap_or(u32::MAX),
                total: u32::try_from(total).unwrap_or(u32::MAX),
            };
            let _ = progress_out.send(AgentToCoordinator::Event { job, event });
        }
    };
    let binary = match engine::run(&request, &template, &context.toolchains, &context.cache, None, &progress).await {
        Ok(binary) => binary,
        Err(error) if error.is_compile_failure() => {
            return Ok(Some(BuildOutcome::CompileFailed { diagnostics: error.to_string() }));
        }
        Err(error) => return Err(error.to_string()),
    };
    let checksum = Sha256Digest::of(&binary.binary_data);
    let header = BulkHeader {
        kind: BulkKind::Artifact,
        job,
        file_name: binary.file_name.clone(),
        total_len: binary.binary_data.len() as u64,
        sha256: checksum,
    };
    let mut sender = connection.open_bulk(header).await.map_err(|e| e.to_string())?;
    if context.spec.fault == Fault::CutFirstArtifact && !context.cut_done.swap(true, Ordering::SeqCst) {
        let half = binary.binary_data.len() / 2;
        sender.write_all(&binary.binary_data[..half]).await.map_err(|e| e.to_string())?;
        sender.abort();
    } else {
        sender.write_all(&binary.binary_data).await.map_err(|e| e.to_string())?;
        sender.finish().await.map_err(|e| e.to_string())?;
    }
    Ok(Some(rustle_agent::wire::success_of(&binary)))
}

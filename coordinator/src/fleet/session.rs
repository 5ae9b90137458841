//! The session actor: one per agent connection; reads the control stream, forwards what the agent says to the scheduler, sends offers and source bundles, receives and verifies artifacts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rustle_engine::cache::CacheHit;
use rustle_engine::engine::{CompilationMetadata, CompiledBinary};
use rustle_engine::validate::validate_binary;
use rustle_protocol::{
    AgentId, AgentToCoordinator, BuildOutcome, BulkAck, BulkHeader, BulkKind, CoordinatorToAgent, Hello, JobId,
    JobOffer,
};
use rustle_scheduler::Executor;
use rustle_targets::BuildRequest;
use rustle_transport::{Connection, ControlStream, CoordinatorDialer, PeerFailure, TransportError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BuildSource, fleet, scheduler};

/// File name of every source bundle.
const BUNDLE_FILE: &str = "source.tar.zst";
/// How long one control-stream write may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after a success report the artifact may still be arriving.
const ARTIFACT_GRACE: Duration = Duration::from_secs(120);

/// What a session is told.
pub(crate) enum Msg {
    /// Dialling and the version handshake ended (from the connect task).
    Connected(Box<Result<(Connection, ControlStream), String>>),
    /// The bound on connecting and reporting capabilities has passed.
    ReportOverdue,
    /// Offer the agent a job (from the scheduler).
    Offer {
        /// The offer.
        offer: Box<JobOffer>,
        /// The build, to validate the binary against and report.
        request: Box<BuildRequest>,
        /// The bundle to send once accepted.
        source: BuildSource,
    },
    /// Tell the agent to stop a job.
    Cancel {
        /// The job.
        job: JobId,
    },
    /// Close the connection and stop.
    Close {
        /// Told to the agent.
        reason: String,
    },
    /// A control message from the agent (from the reader task).
    FromAgent(Box<AgentToCoordinator>),
    /// The control stream ended or a write failed (from the reader and writer tasks).
    ControlClosed {
        /// Why.
        reason: String,
    },
    /// A source-bundle upload failed (from its task).
    BundleFailed {
        /// The job.
        job: JobId,
        /// Why.
        reason: String,
    },
    /// An artifact stream ended (from its task); `Ok` only when complete and matching its checksum.
    ArtifactArrived {
        /// Its header.
        header: BulkHeader,
        /// The bytes, or why there are none.
        result: Result<Vec<u8>, String>,
    },
    /// The grace period for a reported success's artifact is over.
    ArtifactOverdue {
        /// The job.
        job: JobId,
    },
}

/// What a session starts with.
pub(crate) struct Arguments {
    /// The agent's name (its certificate must carry it).
    pub(crate) name: String,
    /// `host:port`.
    pub(crate) address: String,
    /// The QUIC endpoint.
    pub(crate) dialer: Arc<CoordinatorDialer>,
    /// Our hello.
    pub(crate) hello: Hello,
    /// The scheduler actor.
    pub(crate) scheduler: ActorRef<scheduler::Msg>,
    /// The fleet actor.
    pub(crate) fleet: ActorRef<fleet::Msg>,
    /// Bound on dialling, the handshake and the capability report, counted
    /// from when the dial may start (it holds one of `dials`).
    pub(crate) connect_timeout: Duration,
    /// Handshakes in flight across the fleet: a dial waits for a permit, so
    /// a thousand agents dialled at once do not all run out of time sharing
    /// the CPU, and the handshakes that run finish at their own speed.
    pub(crate) dials: Arc<tokio::sync::Semaphore>,
}

/// A job offered to this agent.
struct OfferedJob {
    request: BuildRequest,
    source: BuildSource,
}

/// The session actor.
pub(crate) struct SessionActor;

/// The connection, once up.
struct Live {
    connection: Connection,
    /// Frames for the writer task, so a slow peer never blocks the mailbox.
    outbound: mpsc::UnboundedSender<CoordinatorToAgent>,
}

/// A session's state.
pub(crate) struct State {
    agent: AgentId,
    args: Arguments,
    live: Option<Live>,
    offered: HashMap<JobId, OfferedJob>,
    /// Success reports waiting for their artifact.
    reported: HashMap<JobId, BuildOutcome>,
    /// Verified artifacts waiting for their success report.
    arrived: HashMap<JobId, (BulkHeader, Vec<u8>)>,
    /// Jobs already failed here: later messages about them are dropped.
    failed: HashSet<JobId>,
    announced: bool,
    /// The agent said it is shutting down: once nothing of ours runs there,
    /// this side closes the connection (the agent waits for that, so its
    /// last report is never cut off).
    draining: bool,
    /// The agent ended the control stream while a reported success's
    /// binary was still arriving: the session ends once it has (or failed).
    control_closed: Option<String>,
    tasks: Vec<JoinHandle<()>>,
    end_reason: Option<String>,
}

async fn connect(args: &Arguments) -> Result<(Connection, ControlStream), String> {
    let addr = tokio::net::lookup_host(&args.address)
        .await
        .map_err(|e| format!("failed to resolve agent {} at {}: {e}", args.name, args.address))?
        .next()
        .ok_or_else(|| format!("failed to resolve agent {} at {}: no address", args.name, args.address))?;
    let connection = args.dialer.connect(addr, &args.name).await.map_err(|e| e.to_string())?;
    let control = connection.open_control(args.hello.clone()).await.map_err(|e| e.to_string())?;
    Ok((connection, control))
}

impl Actor for SessionActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    /// Dials in a spawned task; the result comes back as [`Msg::Connected`].
    async fn pre_start(&self, myself: ActorRef<Msg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        let dial = Arguments {
            name: args.name.clone(),
            address: args.address.clone(),
            dialer: args.dialer.clone(),
            hello: args.hello.clone(),
            scheduler: args.scheduler.clone(),
            fleet: args.fleet.clone(),
            connect_timeout: args.connect_timeout,
            dials: args.dials.clone(),
        };
        let me = myself.clone();
        let connecting = tokio::spawn(async move {
            // Closed only if the fleet is gone, and then nothing waits for the result.
            let Ok(_permit) = dial.dials.clone().acquire_owned().await else { return };
            me.send_after(dial.connect_timeout, || Msg::ReportOverdue);
            let result = match tokio::time::timeout(dial.connect_timeout, connect(&dial)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "failed to connect to agent {} at {}: no answer within {}s",
                    dial.name,
                    dial.address,
                    dial.connect_timeout.as_secs()
                )),
            };
            let _ = me.send_message(Msg::Connected(Box::new(result)));
        });
        Ok(State {
            agent: AgentId(args.name.clone()),
            args,
            live: None,
            offered: HashMap::new(),
            reported: HashMap::new(),
            arrived: HashMap::new(),
            failed: HashSet::new(),
            announced: false,
            draining: false,
            control_closed: None,
            tasks: vec![connecting],
            end_reason: None,
        })
    }

    async fn handle(&self, myself: ActorRef<Msg>, msg: Msg, state: &mut State) -> Result<(), ActorProcessingErr> {
        if let Some(reason) = state.handle(&myself, msg) {
            state.end_reason = Some(reason);
            myself.stop(None);
        }
        Ok(())
    }

    /// Closes the connection and tells the scheduler and the fleet why.
    async fn post_stop(&self, _myself: ActorRef<Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        let reason =
            state.end_reason.take().unwrap_or_else(|| format!("the session with agent {} stopped", state.agent));
        if let Some(live) = state.live.take() {
            live.connection.close(&reason);
        }
        for task in &state.tasks {
            task.abort();
        }
        if state.announced {
            let _ = state.args.scheduler.send_message(scheduler::Msg::AgentDisconnected { agent: state.agent.clone() });
        }
        if state.announced {
            tracing::info!("session with agent {} ended: {reason}", state.agent);
        } else {
            tracing::warn!("agent {} is not used: {reason}", state.agent);
        }
        let _ = state.args.fleet.send_message(fleet::Msg::SessionDown { name: state.args.name.clone(), reason });
        Ok(())
    }
}

/// Writes the outbound frames in order; a failure ends the session.
async fn write_control(
    mut control: rustle_transport::ControlSender,
    mut outbound: mpsc::UnboundedReceiver<CoordinatorToAgent>,
    session: ActorRef<Msg>,
    agent: AgentId,
) {
    while let Some(message) = outbound.recv().await {
        let reason = match tokio::time::timeout(SEND_TIMEOUT, control.send(&message)).await {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => format!("failed to write to agent {agent}: {error}"),
            Err(_) => format!("agent {agent} did not read the control stream within {}s", SEND_TIMEOUT.as_secs()),
        };
        let _ = session.send_message(Msg::ControlClosed { reason });
        break;
    }
}

/// Reads the agent's control frames into the session's mailbox.
async fn read_control(mut receiver: rustle_transport::ControlReceiver, session: ActorRef<Msg>) {
    loop {
        match receiver.recv::<AgentToCoordinator>().await {
            Ok(Some(message)) => {
                if session.send_message(Msg::FromAgent(Box::new(message))).is_err() {
                    break;
                }
            }
            Ok(None) => {
                let reason = "the agent ended the control stream".to_owned();
                let _ = session.send_message(Msg::ControlClosed { reason });
                break;
            }
            Err(error) => {
                let _ = session.send_message(Msg::ControlClosed { reason: error.to_string() });
                break;
            }
        }
    }
}

/// Accepts the agent's artifact streams, each read in its own task.
async fn accept_artifacts(connection: Connection, mailbox: ActorRef<Msg>) {
    loop {
        match connection.accept_bulk().await {
            Ok(incoming) => {
                let mailbox = mailbox.clone();
                tokio::spawn(async move {
                    let header = incoming.header().clone();
                    let result = incoming.read_to_vec().await.map_err(|e| e.to_string());
                    let _ = mailbox.send_message(Msg::ArtifactArrived { header, result });
                });
            }
            Err(
                TransportError::Peer { kind: PeerFailure::ClosedByPeer { .. }, .. }
                | TransportError::Peer { kind: PeerFailure::ConnectionLost { .. }, .. }
                | TransportError::Peer { kind: PeerFailure::LocallyClosed, .. },
            ) => break,
            Err(error) => {
                // Whatever the error says, a closed connection yields no more streams.
                if futures_util::FutureExt::now_or_never(connection.closed()).is_some() {
                    break;
                }
                tracing::warn!("refused a bulk stream: {error}");
            }
        }
    }
}

impl State {
    /// Handles one message; `Some(reason)` ends the session, as does a
    /// draining agent that holds nothing of ours any more.
    fn handle(&mut self, myself: &ActorRef<Msg>, msg: Msg) -> Option<String> {
        self.handle_one(myself, msg).or_else(|| self.settled_end())
    }

    /// Why the session ends now that nothing is in flight: the agent ended
    /// the control stream and no reported binary is still arriving, or it
    /// is draining and holds no job of ours any more.
    fn settled_end(&mut self) -> Option<String> {
        if !self.reported.is_empty() {
            return None;
        }
        if let Some(reason) = self.control_closed.take() {
            return Some(reason);
        }
        let idle = self.offered.is_empty() && self.arrived.is_empty();
        (self.draining && idle).then(|| format!("agent {} is shutting down and has no job of ours left", self.agent))
    }

    fn handle_one(&mut self, myself: &ActorRef<Msg>, msg: Msg) -> Option<String> {
        match msg {
            Msg::Connected(result) => match *result {
                Ok((connection, control)) => {
                    let (sender, receiver) = control.into_split();
                    let (outbound, frames) = mpsc::unbounded_channel();
                    self.tasks.push(tokio::spawn(write_control(sender, frames, myself.clone(), self.agent.clone())));
                    self.tasks.push(tokio::spawn(read_control(receiver, myself.clone())));
                    self.tasks.push(tokio::spawn(accept_artifacts(connection.clone(), myself.clone())));
                    self.live = Some(Live { connection, outbound });
                    None
                }
                Err(reason) => Some(reason),
            },
            Msg::ReportOverdue => (!self.announced).then(|| {
                format!(
                    "agent {} at {} sent no capability report within {}s",
                    self.agent,
                    self.args.address,
                    self.args.connect_timeout.as_secs()
                )
            }),
            Msg::Offer { offer, request, source } => {
                let job = offer.job;
                self.failed.remove(&job);
                self.offered.insert(job, OfferedJob { request: *request, source });
                self.send(CoordinatorToAgent::Offer(*offer))
            }
            Msg::Cancel { job } => {
                self.offered.remove(&job);
                self.reported.remove(&job);
                self.arrived.remove(&job);
                self.send(CoordinatorToAgent::Cancel { job })
            }
            Msg::Close { reason } => Some(reason),
            Msg::ControlClosed { reason } => {
                // The last report can overtake its binary (the stream ends
                // before the binary's checks do): wait for the binary.
                self.control_closed = Some(format!("agent {}: {reason}", self.agent));
                None
            }
            Msg::FromAgent(message) => self.handle_agent_message(myself, *message),
            Msg::BundleFailed { job, reason } => {
                self.fail(job, format!("failed to send the source bundle to agent {}: {reason}", self.agent));
                self.send(CoordinatorToAgent::Cancel { job })
            }
            Msg::ArtifactArrived { header, result } => {
                let job = header.job;
                if header.kind != BulkKind::Artifact || self.failed.contains(&job) || !self.offered.contains_key(&job) {
                    return None;
                }
                match result {
                    Ok(bytes) => {
                        self.arrived.insert(job, (header, bytes));
                        self.try_complete(job)
                    }
                    Err(reason) => {
                        let reason = format!("the binary from agent {} did not arrive whole: {reason}", self.agent);
                        self.fail(job, reason.clone());
                        self.send(CoordinatorToAgent::BulkAck(BulkAck::Rejected {
                            job,
                            kind: BulkKind::Artifact,
                            reason,
                        }))
                    }
                }
            }
            Msg::ArtifactOverdue { job } => {
                if self.reported.contains_key(&job) && !self.arrived.contains_key(&job) {
                    let reason = format!(
                        "agent {} reported success but its binary did not arrive within {}s",
                        self.agent,
                        ARTIFACT_GRACE.as_secs()
                    );
                    self.fail(job, reason);
                }
                None
            }
        }
    }

    fn handle_agent_message(&mut self, myself: &ActorRef<Msg>, message: AgentToCoordinator) -> Option<String> {
        let agent = self.agent.clone();
        let scheduler = &self.args.scheduler;
        match message {
            AgentToCoordinator::Capabilities(mut report) => {
                // The authenticated name is the agent's identity, whatever the report says.
                report.agent_id = agent.clone();
                self.announced = true;
                // The scheduler hears first: once the fleet reports the agent
                // ready, jobs submitted afterwards queue behind its registration.
                let _ = scheduler.send_message(scheduler::Msg::AgentConnected {
                    report: Box::new(report.clone()),
                    session: myself.clone(),
                });
                let _ = self
                    .args
                    .fleet
                    .send_message(fleet::Msg::SessionUp { name: self.args.name.clone(), report: Box::new(report) });
            }
            AgentToCoordinator::Load(update) => {
                let _ = scheduler.send_message(scheduler::Msg::Load { agent, update });
            }
            AgentToCoordinator::Draining { drain_secs } => {
                tracing::info!("agent {agent} is shutting down: no new jobs; its running jobs have {drain_secs}s");
                let _ = scheduler.send_message(scheduler::Msg::Draining { agent });
                self.draining = true;
            }
            AgentToCoordinator::Accept { job } => {
                let _ = scheduler.send_message(scheduler::Msg::Accepted { agent, job });
                if let Some(offered) = self.offered.get(&job) {
                    self.upload(myself, job, offered.source.clone());
                }
            }
            AgentToCoordinator::Reject { job, reason } => {
                self.offered.remove(&job);
                let _ = scheduler.send_message(scheduler::Msg::Rejected { agent, job, reason });
            }
            AgentToCoordinator::Event { job, event } => {
                if !self.failed.contains(&job) {
                    let _ = scheduler.send_message(scheduler::Msg::Progress { agent, job, event });
                }
            }
            AgentToCoordinator::Finished { job, outcome } => {
                if self.failed.contains(&job) {
                    return None;
                }
                if let BuildOutcome::Success { .. } = outcome {
                    self.reported.insert(job, outcome);
                    myself.send_after(ARTIFACT_GRACE, move || Msg::ArtifactOverdue { job });
                    return self.try_complete(job);
                }
                self.offered.remove(&job);
                let executor = Executor::Agent(agent);
                let _ = scheduler.send_message(scheduler::Msg::Finished { executor, job, outcome, artifact: None });
            }
            AgentToCoordinator::BulkAck(BulkAck::Verified { .. }) => {}
            AgentToCoordinator::BulkAck(BulkAck::Rejected { job, kind, reason }) => {
                if kind == BulkKind::SourceBundle {
                    self.fail(job, format!("agent {} refused the source bundle: {reason}", self.agent));
                    return self.send(CoordinatorToAgent::Cancel { job });
                }
            }
        }
        None
    }

    /// Sends the job's source bundle on its own stream.
    fn upload(&mut self, myself: &ActorRef<Msg>, job: JobId, source: BuildSource) {
        let Some(connection) = self.live.as_ref().map(|live| live.connection.clone()) else { return };
        let mailbox = myself.clone();
        self.tasks.push(tokio::spawn(async move {
            let header = BulkHeader {
                kind: BulkKind::SourceBundle,
                job,
                file_name: BUNDLE_FILE.into(),
                total_len: source.bundle.len() as u64,
                sha256: source.bundle_sha256,
            };
            let sent = async {
                let mut sender = connection.open_bulk(header).await?;
                sender.write_all(&source.bundle).await?;
                sender.finish().await
            }
            .await;
            if let Err(error) = sent {
                let _ = mailbox.send_message(Msg::BundleFailed { job, reason: error.to_string() });
            }
        }));
    }

    /// Once both the success report and the verified bytes are here: check
    /// they agree and that the binary is what the target needs, then report.
    fn try_complete(&mut self, job: JobId) -> Option<String> {
        if !(self.reported.contains_key(&job) && self.arrived.contains_key(&job)) {
            return None;
        }
        let (Some(outcome), Some((header, bytes)), Some(offered)) =
            (self.reported.remove(&job), self.arrived.remove(&job), self.offered.remove(&job))
        else {
            return None;
        };
        let BuildOutcome::Success {
            checksum,
            size,
            compile_time_ms,
            toolchain,
            rustc_version,
            cargo_version,
            compilation_flags,
            from_cache,
        } = outcome.clone()
        else {
            return None;
        };
        let checked = if header.sha256 != checksum || header.total_len != size {
            Err(format!(
                "its stream (sha256 {}, {} bytes) does not match the reported result (sha256 {checksum}, {size} bytes)",
                header.sha256, header.total_len
            ))
        } else {
            validate_binary(&bytes, &offered.request.target).map_err(|e| e.to_string())
        };
        match checked {
            Ok(validation) => {
                let binary = CompiledBinary {
                    target: offered.request.target_specification(),
                    file_name: header.file_name.clone(),
                    size: bytes.len() as u64,
                    checksum: checksum.to_string(),
                    binary_data: bytes,
                    compilation_time: Duration::from_millis(compile_time_ms),
                    metadata: CompilationMetadata {
                        toolchain,
                        rustc_version,
                        cargo_version,
                        compilation_flags,
                        dependencies: Vec::new(),
                        features_used: offered.request.settings.features.clone(),
                        c_libraries: Vec::new(),
                    },
                    validation,
                    // The agent's own cache answered: say so, and whose.
                    cached: from_cache.then(|| CacheHit {
                        store: format!("agent {}", self.agent),
                        key: None,
                        built_at: None,
                        built_by: format!("agent {}", self.agent),
                    }),
                };
                let closing =
                    self.send(CoordinatorToAgent::BulkAck(BulkAck::Verified { job, kind: BulkKind::Artifact }));
                let _ = self.args.scheduler.send_message(scheduler::Msg::Finished {
                    executor: Executor::Agent(self.agent.clone()),
                    job,
                    outcome,
                    artifact: Some(Box::new(binary)),
                });
                closing
            }
            Err(reason) => {
                let reason = format!("the binary from agent {} was refused: {reason}", self.agent);
                self.fail(job, reason.clone());
                self.send(CoordinatorToAgent::BulkAck(BulkAck::Rejected { job, kind: BulkKind::Artifact, reason }))
            }
        }
    }

    /// This attempt failed for a reason another machine may not have: report a retryable infrastructure failure.
    fn fail(&mut self, job: JobId, reason: String) {
        self.offered.remove(&job);
        self.reported.remove(&job);
        self.arrived.remove(&job);
        self.failed.insert(job);
        let _ = self.args.scheduler.send_message(scheduler::Msg::Finished {
            executor: Executor::Agent(self.agent.clone()),
            job,
            outcome: BuildOutcome::InfrastructureFailure { reason, retryable: true },
            artifact: None,
        });
    }

    /// Sends a control message; a failure ends the session.
    /// Queues a control message for the writer task; its failures come back as [`Msg::ControlClosed`].
    fn send(&mut self, message: CoordinatorToAgent) -> Option<String> {
        match &self.live {
            Some(live) if live.outbound.send(message).is_ok() => None,
            Some(_) => Some(format!("the writer to agent {} stopped", self.agent)),
            None => Some(format!("agent {} is not connected", self.agent)),
        }
    }
}

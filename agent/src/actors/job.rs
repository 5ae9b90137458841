//! The job actor: one accepted job. Receives and syncs its source bundle,
//! runs cargo through the build engine in a spawned task, streams events,
//! sends the artifact and the outcome; on cancel (or when its session ends)
//! drops the build, which kills cargo's process group, and removes its
//! scratch dirs.

use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustle_engine::bundle::{BundleLimits, sync_bundle};
use rustle_engine::engine::{self, CompilationError, CompiledBinary, TargetFailure};
use rustle_engine::template::TemplateSource;
use rustle_protocol::{
    AgentToCoordinator, BuildEvent, BuildOutcome, BulkAck, BulkHeader, BulkKind, JobOffer, LogStream,
};
use rustle_transport::{BulkIncoming, Connection};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::listener::{self, SourceClaim};
use super::{Context, JobKey, Placement};
use crate::{warm, wire};

/// How long the job waits for its source bundle after accepting.
const BUNDLE_WAIT: Duration = Duration::from_secs(120);
/// Bound on receiving a bundle once its stream has started.
const BUNDLE_RECEIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on waiting for a killed build task to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on sending the artifact.
const ARTIFACT_TIMEOUT: Duration = Duration::from_secs(600);
/// Build deadline when the offer gives none.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);

/// The job actor.
pub(crate) struct JobActor;

/// What a job is started with.
pub(crate) struct Arguments {
    /// Configuration and toolchains.
    pub context: Context,
    /// The job.
    pub key: JobKey,
    /// What to build.
    pub offer: JobOffer,
    /// Where to build.
    pub placement: Placement,
    /// For the artifact stream.
    pub connection: Connection,
    /// The session's frame queue.
    pub outbound: UnboundedSender<AgentToCoordinator>,
    /// Told when the job ends.
    pub listener: ActorRef<listener::Msg>,
}

/// Why a bundle could not be synced.
pub(crate) enum SyncFailure {
    /// The bundle is hostile, corrupt or over the limits: never retry it.
    Invalid(String),
    /// This machine failed (disk, permissions): another agent may succeed.
    Local(String),
}

/// The job's messages.
pub(crate) enum Msg {
    /// The coordinator opened the source bundle stream.
    Bundle(Box<BulkIncoming>),
    /// The bundle's bytes arrived and were verified (or not).
    BundleReceived(Result<Vec<u8>, String>),
    /// The listener said where the bundle goes (`None`: it did not answer).
    SourceClaimed(Option<SourceClaim>, Vec<u8>),
    /// The bundle was synced into the source dir (or refused).
    BundleSynced(Result<(), SyncFailure>),
    /// cargo finished.
    BuildDone(Box<Result<CompiledBinary, CompilationError>>),
    /// The artifact's bytes were written to its stream (or not).
    ArtifactWritten(Result<(), String>),
    /// The coordinator has the whole artifact (or the transfer failed).
    ArtifactDelivered(Result<(), String>),
    /// No bundle arrived in time.
    BundleTimeout,
    /// The coordinator cancelled the job.
    Cancel,
    /// The agent is shutting down: end the job as a retryable failure.
    Abandon(String, RpcReplyPort<()>),
}

/// Where the job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitingBundle,
    ReceivingBundle,
    Syncing,
    Building,
    SendingArtifact,
}

/// The job's state.
pub(crate) struct State {
    context: Context,
    key: JobKey,
    offer: JobOffer,
    placement: Placement,
    connection: Connection,
    outbound: UnboundedSender<AgentToCoordinator>,
    listener: ActorRef<listener::Msg>,
    stage: Stage,
    task: Option<JoinHandle<()>>,
    outcome_sent: bool,
    released: bool,
    built: Option<(String, String)>,
    /// Whether this job syncs the template's shared warm source tree (and
    /// must tell the listener when it is done).
    syncs_shared_source: bool,
    pending_success: Option<BuildOutcome>,
}

impl State {
    fn push(&self, message: AgentToCoordinator) {
        let _ = self.outbound.send(message);
    }

    /// Frees the slot (and scratch dirs), then reports the outcome, so the
    /// slot is free before the coordinator can hear that the job ended.
    async fn finish(&mut self, outcome: BuildOutcome) {
        if !self.outcome_sent {
            self.outcome_sent = true;
            self.release().await;
            self.push(AgentToCoordinator::Finished { job: self.offer.job, outcome });
        }
    }

    /// Removes scratch dirs and tells the listener the slot is free; once.
    /// The build task must have ended.
    async fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if self.placement == Placement::Scratch {
            let base = self.base_dir();
            let _ = tokio::task::spawn_blocking(move || warm::remove_tree(&base)).await;
        }
        let _ = self.listener.send_message(listener::Msg::JobEnded { key: self.key, built: self.built.take() });
    }

    /// Tells the listener how the sync of the shared source tree ended.
    fn source_synced(&mut self, ok: bool) {
        if std::mem::take(&mut self.syncs_shared_source) {
            let _ = self.listener.send_message(listener::Msg::SourceSynced { key: self.key, ok });
        }
    }

    fn ack(&self, ack: BulkAck) {
        self.push(AgentToCoordinator::BulkAck(ack));
    }

    /// The job's base dir: the template's warm dir, or its scratch dir.
    fn base_dir(&self) -> PathBuf {
        match self.placement {
            Placement::Warm => self.context.layout.warm_dir(&self.offer.template_id.0),
            Placement::Scratch => self.context.layout.jobs_root().join(self.key.to_string()),
        }
    }

    /// Stops the running task and waits (bounded) until it is gone: a
    /// dropped build future kills cargo's process group.
    async fn kill_task(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = tokio::time::timeout(KILL_TIMEOUT, task).await;
        }
    }
}

impl Actor for JobActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_after(BUNDLE_WAIT, || Msg::BundleTimeout);
        Ok(State {
            context: args.context,
            key: args.key,
            offer: args.offer,
            placement: args.placement,
            connection: args.connection,
            outbound: args.outbound,
            listener: args.listener,
            stage: Stage::AwaitingBundle,
            task: None,
            outcome_sent: false,
            released: false,
            syncs_shared_source: false,
            built: None,
            pending_success: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let job = state.offer.job;
        match message {
            Msg::Bundle(incoming) => {
                if state.stage != Stage::AwaitingBundle {
                    incoming.refuse();
                    return Ok(());
                }
                state.stage = Stage::ReceivingBundle;
                let me = myself.clone();
                state.task = Some(tokio::spawn(async move {
                    let received = match tokio::time::timeout(BUNDLE_RECEIVE_TIMEOUT, incoming.read_to_vec()).await {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => {
                            Err(format!("the bundle did not arrive within {}s", BUNDLE_RECEIVE_TIMEOUT.as_secs()))
                        }
                    };
                    let _ = me.send_message(Msg::BundleReceived(received));
                }));
            }
            Msg::BundleReceived(Err(reason)) => {
                // A truncated or corrupt transfer: the coordinator may send it again.
                state.ack(BulkAck::Rejected { job, kind: BulkKind::SourceBundle, reason });
                state.stage = Stage::AwaitingBundle;
                state.task = None;
            }
            Msg::BundleReceived(Ok(bytes)) => {
                let template_id = &state.offer.template_id.0;
                if !warm::is_safe_template_id(template_id) {
                    let reason = format!(
                        "template id {template_id:?} cannot name a directory (use letters, digits, '-', '_' and '.')"
                    );
                    refuse_bundle(&myself, state, reason).await;
                    return Ok(());
                }
                state.stage = Stage::Syncing;
                if state.placement == Placement::Scratch {
                    start_sync(&myself, state, bytes);
                    return Ok(());
                }
                // Jobs of the template with this same bundle share its warm source tree.
                let (listener, key, me) = (state.listener.clone(), state.key, myself.clone());
                state.task = Some(tokio::spawn(async move {
                    let bundle = hex_digest(&bytes);
                    let claim = listener
                        .call(|reply| listener::Msg::ClaimSource { key, bundle, reply }, Some(BUNDLE_RECEIVE_TIMEOUT))
                        .await;
                    let claim = match claim {
                        Ok(ractor::rpc::CallResult::Success(claim)) => Some(claim),
                        _ => None,
                    };
                    let _ = me.send_message(Msg::SourceClaimed(claim, bytes));
                }));
            }
            Msg::SourceClaimed(claim, bytes) => match claim {
                Some(SourceClaim::Ready) => {
                    state.ack(BulkAck::Verified { job, kind: BulkKind::SourceBundle });
                    state.stage = Stage::Building;
                    start_build(&myself, state);
                }
                Some(SourceClaim::Sync) => {
                    state.syncs_shared_source = true;
                    start_sync(&myself, state, bytes);
                }
                Some(SourceClaim::Scratch) => {
                    state.placement = Placement::Scratch;
                    start_sync(&myself, state, bytes);
                }
                None => {
                    // Unanswered in time: build apart, and say so, so the
                    // shared tree neither waits for this job nor counts it.
                    let _ = state.listener.send_message(listener::Msg::SourceDeclined { key: state.key });
                    state.placement = Placement::Scratch;
                    start_sync(&myself, state, bytes);
                }
            },
            Msg::BundleSynced(Err(SyncFailure::Invalid(reason))) => {
                state.source_synced(false);
                refuse_bundle(&myself, state, reason).await;
            }
            Msg::BundleSynced(Err(SyncFailure::Local(reason))) => {
                state.source_synced(false);
                state.ack(BulkAck::Verified { job, kind: BulkKind::SourceBundle });
                let reason = format!("failed to write the source tree on agent: {reason}");
                state.finish(BuildOutcome::InfrastructureFailure { reason, retryable: true }).await;
                myself.stop(None);
            }
            Msg::BundleSynced(Ok(())) => {
                state.source_synced(true);
                state.ack(BulkAck::Verified { job, kind: BulkKind::SourceBundle });
                state.stage = Stage::Building;
                start_build(&myself, state);
            }
            Msg::BuildDone(result) => match *result {
                Ok(binary) => {
                    state.stage = Stage::SendingArtifact;
                    state.built = Some((binary.target.triple.clone(), binary.metadata.toolchain.clone()));
                    send_artifact(&myself, state, binary);
                }
                Err(error) => {
                    state.task = None;
                    state.finish(wire::outcome_of_failure(error)).await;
                    myself.stop(None);
                }
            },
            Msg::ArtifactWritten(Ok(())) => {
                if let Some(outcome) = state.pending_success.take() {
                    state.finish(outcome).await;
                }
            }
            Msg::ArtifactWritten(Err(reason)) | Msg::ArtifactDelivered(Err(reason)) => {
                let reason = format!("failed to send the artifact: {reason}");
                state.finish(BuildOutcome::InfrastructureFailure { reason, retryable: true }).await;
                state.task = None;
                myself.stop(None);
            }
            Msg::ArtifactDelivered(Ok(())) => {
                state.task = None;
                myself.stop(None);
            }
            Msg::BundleTimeout => {
                if state.stage == Stage::AwaitingBundle {
                    let reason = format!("no source bundle arrived within {}s of accepting", BUNDLE_WAIT.as_secs());
                    state.finish(BuildOutcome::InfrastructureFailure { reason, retryable: true }).await;
                    myself.stop(None);
                }
            }
            Msg::Cancel => {
                state.kill_task().await;
                state.finish(BuildOutcome::Cancelled).await;
                myself.stop(None);
            }
            Msg::Abandon(reason, reply) => {
                state.kill_task().await;
                state.finish(BuildOutcome::InfrastructureFailure { reason, retryable: true }).await;
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.kill_task().await;
        state.release().await;
        let _ = state.listener.send_message(listener::Msg::JobGone { key: state.key });
        Ok(())
    }
}

/// A hostile or unusable bundle: refused, and the job fails for good.
async fn refuse_bundle(myself: &ActorRef<Msg>, state: &mut State, reason: String) {
    let job = state.offer.job;
    tracing::warn!("job {}: refused its source bundle: {reason}", state.key);
    state.ack(BulkAck::Rejected { job, kind: BulkKind::SourceBundle, reason: reason.clone() });
    let reason = format!("the source bundle was refused: {reason}");
    state.finish(BuildOutcome::InfrastructureFailure { reason, retryable: false }).await;
    state.task = None;
    myself.stop(None);
}

/// Syncs `bytes` into the job's source dir in a blocking task.
fn start_sync(myself: &ActorRef<Msg>, state: &mut State, bytes: Vec<u8>) {
    let src = state.base_dir().join("src");
    let me = myself.clone();
    state.task = Some(tokio::spawn(async move {
        let synced = tokio::task::spawn_blocking(move || {
            sync_bundle(&bytes, &src, &BundleLimits::default()).map(|_| ()).map_err(|error| {
                if error.is_invalid_bundle() {
                    SyncFailure::Invalid(error.to_string())
                } else {
                    SyncFailure::Local(error.to_string())
                }
            })
        })
        .await
        .unwrap_or_else(|error| Err(SyncFailure::Local(format!("the unpacking task failed: {error}"))));
        let _ = me.send_message(Msg::BundleSynced(synced));
    }));
}

/// The SHA-256 of `bytes`, as text.
fn hex_digest(bytes: &[u8]) -> String {
    rustle_protocol::Sha256Digest::of(bytes).to_string()
}

/// Runs cargo in a task; events go straight to the session's frame queue.
fn start_build(myself: &ActorRef<Msg>, state: &mut State) {
    let context = state.context.clone();
    let base = state.base_dir();
    let offer = state.offer.clone();
    let outbound = state.outbound.clone();
    let me = myself.clone();
    let builds = context.builds.clone();
    let triple = offer.target.name.clone();
    state.task = Some(tokio::spawn(async move {
        // On the build runtime; aborting this task (a cancel) aborts it too.
        let mut build = AbortOnDrop(builds.spawn(async move {
            match context.simulation.clone() {
                Some(simulation) => {
                    let job = offer.job;
                    let on_event = |event| {
                        let _ = outbound.send(AgentToCoordinator::Event { job, event });
                    };
                    simulation.build(&offer, on_event).await
                }
                None => run_build(&context, &base, &offer, outbound).await,
            }
        }));
        let result = (&mut build.0).await.unwrap_or_else(|error| {
            Err(CompilationError::unavailable(triple, format!("the build task failed: {error}")))
        });
        let _ = me.send_message(Msg::BuildDone(Box::new(result)));
    }));
}

/// A task on another runtime, aborted when this handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_build(
    context: &Context,
    base: &std::path::Path,
    offer: &JobOffer,
    outbound: UnboundedSender<AgentToCoordinator>,
) -> Result<CompiledBinary, CompilationError> {
    let triple = offer.target.name.clone();
    let src = base.join("src");
    // The engine's cache is the agent's: target dirs keyed by the
    // dependencies, so a new template finds them compiled; std and C
    // libraries built once per target.
    let cache_dir = context.config.cache_dir();
    // Reading and hashing the template's files is blocking work.
    let template = tokio::task::spawn_blocking(move || TemplateSource::Dir(src.clone()).prepare(&src)).await.map_err(
        |error| {
            CompilationError::target(
                triple.clone(),
                TargetFailure::Unavailable { reason: format!("the task preparing the template failed: {error}") },
            )
        },
    )??;
    // The binary cache is bounded by the same cap as the warm dirs.
    let cache_cap = context.config.warm_cache_max_bytes;
    let request = wire::request_from_offer(offer, template.id.clone(), DEFAULT_DEADLINE, cache_cap)
        .map_err(|e| CompilationError::unavailable(triple.clone(), e.to_string()))?;
    let job = offer.job;
    let on_event = move |event: engine::BuildEvent| {
        let event = match event {
            engine::BuildEvent::Started { .. } => BuildEvent::Started,
            engine::BuildEvent::Progress { done, total, .. } => BuildEvent::Progress {
                done: u32::try_from(done).unwrap_or(u32::MAX),
                total: u32::try_from(total).unwrap_or(u32::MAX),
            },
            // cargo's stderr: status lines, warnings, errors.
            engine::BuildEvent::Log { line, .. } | engine::BuildEvent::Note { line, .. } => {
                BuildEvent::Log { stream: LogStream::Stderr, line }
            }
            // Only the coordinator's façade sends it; the outcome says how a job ended.
            engine::BuildEvent::Finished { .. } => return,
        };
        let _ = outbound.send(AgentToCoordinator::Event { job, event });
    };
    // An agent keeps its own cache only; the coordinator owns the shared one.
    engine::run(&request, &template, &context.toolchains, &cache_dir, None, &on_event).await
}

/// Sends the artifact on its own stream; the outcome goes out once its
/// bytes are written, and the job ends once the coordinator has them all.
fn send_artifact(myself: &ActorRef<Msg>, state: &mut State, binary: CompiledBinary) {
    let job = state.offer.job;
    let sha256 = wire::digest_of(&binary);
    state.pending_success = Some(wire::success_of(&binary));
    let header = BulkHeader {
        kind: BulkKind::Artifact,
        job,
        file_name: binary.file_name.clone(),
        total_len: binary.size,
        sha256,
    };
    let connection = state.connection.clone();
    let me = myself.clone();
    state.task = Some(tokio::spawn(async move {
        let transfer = async {
            let mut sender = connection.open_bulk(header).await.map_err(|e| e.to_string())?;
            let written = sender.write_all(&binary.binary_data).await.map_err(|e| e.to_string());
            let _ = me.send_message(Msg::ArtifactWritten(written.clone()));
            written?;
            sender.finish().await.map_err(|e| e.to_string())
        };
        let delivered = tokio::time::timeout(ARTIFACT_TIMEOUT, transfer)
            .await
            .unwrap_or_else(|_| Err(format!("the transfer took longer than {}s", ARTIFACT_TIMEOUT.as_secs())));
        let _ = me.send_message(Msg::ArtifactDelivered(delivered));
    }));
}

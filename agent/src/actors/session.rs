//! The session actor: one coordinator connection. Runs the hello exchange,
//! sends the capability report and heartbeats, answers offers (spawning a
//! job actor per accepted job), routes cancels and source bundles to jobs,
//! and cancels its jobs when the connection drops.
//!
//! Network I/O happens in tasks owned by the session: a writer that sends
//! every outgoing frame in order (jobs send through it too), a reader that
//! turns incoming frames into messages, a bulk acceptor, and the heartbeat
//! task ([`crate::heartbeat`]), which queues a `Load` frame on every beat
//! from the load gauge without passing through this actor's mailbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rustle_engine::toolchain::TargetAvailability;
use rustle_protocol::{
    AgentToCoordinator, BuildEvent, BuildOutcome, BulkKind, CapabilityReport, CoordinatorToAgent, Hello, JobId,
    JobOffer, RejectReason, Role,
};
use rustle_transport::{BulkIncoming, Connection, ControlSender, ControlStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use super::job::{self, JobActor};
use super::listener;
use super::{CALL_TIMEOUT, Context, JobKey};
use crate::{capabilities, heartbeat};

/// Largest source bundle accepted (matches `BundleLimits::default().max_compressed`).
const MAX_BUNDLE_LEN: u64 = 64 << 20;
/// How long jobs may take to stop when the session ends.
const JOB_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the writer may take to flush when the session ends.
const WRITER_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a draining session waits for its coordinator to close the connection.
const PEER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The session actor.
pub(crate) struct SessionActor;

/// What a session is started with.
pub(crate) struct Arguments {
    /// Configuration and toolchains.
    pub context: Context,
    /// The listener, for slots and the running-job count.
    pub listener: ActorRef<listener::Msg>,
    /// The authenticated connection.
    pub connection: Connection,
    /// This session's number.
    pub session: u64,
}

/// The session's messages.
pub(crate) enum Msg {
    /// The hello exchange and the capability report are done (or failed).
    Ready(Result<(ControlStream, Box<CapabilityReport>), String>),
    /// A frame from the coordinator.
    FromCoordinator(CoordinatorToAgent),
    /// A bulk stream from the coordinator.
    Bulk(Box<BulkIncoming>),
    /// The control stream or connection ended.
    ConnectionLost(String),
    /// The availability check of an offer is done.
    OfferChecked {
        /// The offer.
        offer: JobOffer,
        /// Whether this agent can build it.
        verdict: Result<(), RejectReason>,
    },
    /// The agent is shutting down: tell the coordinator (no new offers; the
    /// running jobs go on for up to `drain_secs`).
    Draining {
        /// The drain time.
        drain_secs: u64,
    },
    /// The agent is shutting down: end every job (telling the coordinator), then stop.
    Shutdown(RpcReplyPort<()>),
}

/// The session's state.
pub(crate) struct State {
    context: Context,
    listener: ActorRef<listener::Msg>,
    connection: Connection,
    session: u64,
    outbound: Option<UnboundedSender<AgentToCoordinator>>,
    writer: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    jobs: BTreeMap<JobId, ActorRef<job::Msg>>,
    job_actors: HashMap<ActorId, JobId>,
    pending_offers: BTreeSet<JobId>,
    ending: bool,
    /// The coordinator was told the agent is draining: it closes the
    /// connection itself once it has every result it waits for.
    draining: bool,
}

impl State {
    fn push(&self, message: AgentToCoordinator) {
        if let Some(outbound) = &self.outbound {
            let _ = outbound.send(message);
        }
    }

    fn reject(&self, job: JobId, reason: RejectReason) {
        tracing::info!("session {}: rejected job {job}: {reason}", self.session);
        self.push(AgentToCoordinator::Reject { job, reason });
    }
}

impl Actor for SessionActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(State {
            context: args.context,
            listener: args.listener,
            connection: args.connection,
            session: args.session,
            outbound: None,
            writer: None,
            tasks: Vec::new(),
            heartbeat: None,
            jobs: BTreeMap::new(),
            job_actors: HashMap::new(),
            pending_offers: BTreeSet::new(),
            ending: false,
            draining: false,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let connection = state.connection.clone();
        let context = state.context.clone();
        let listener = state.listener.clone();
        state.tasks.push(tokio::spawn(async move {
            let ready = async {
                let hello = Hello::new(Role::Agent, env!("CARGO_PKG_VERSION"));
                let control = connection.accept_control(hello).await.map_err(|e| e.to_string())?;
                let warm = listener::warm_caches(&listener).await;
                let report = match &context.simulation {
                    Some(simulation) => simulation.report(&context.config, warm, context.gauge.host()),
                    None => capabilities::report(&context.config, &context.toolchains, warm, context.gauge.host())
                        .await
                        .map_err(|e| e.to_string())?,
                };
                Ok((control, Box::new(report)))
            };
            let _ = myself.send_message(Msg::Ready(ready.await));
        }));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Msg::Ready(Ok((control, report))) => start_streams(&myself, state, control, *report),
            Msg::Ready(Err(reason)) => {
                tracing::warn!("session {} with {}: {reason}", state.session, state.connection.peer());
                myself.stop(None);
            }
            Msg::FromCoordinator(message) => from_coordinator(&myself, state, message),
            Msg::Bulk(incoming) => {
                let header = incoming.header().clone();
                match state.jobs.get(&header.job) {
                    Some(job) if header.kind == BulkKind::SourceBundle => {
                        if let Err(error) = job.send_message(job::Msg::Bundle(incoming)) {
                            tracing::warn!("job {} is gone; its bundle is refused ({error})", header.job);
                        }
                    }
                    _ => {
                        tracing::warn!(
                            "refused a {} for job {}, which is not waiting for one",
                            header.kind,
                            header.job
                        );
                        incoming.refuse();
                    }
                }
            }
            Msg::ConnectionLost(reason) => {
                if !state.ending {
                    state.ending = true;
                    tracing::info!("session {} ended: {reason}; cancelling its jobs", state.session);
                    myself.stop(None);
                }
            }
            Msg::OfferChecked { offer, verdict } => offer_checked(&myself, state, offer, verdict).await,
            Msg::Draining { drain_secs } => {
                state.draining = true;
                state.push(AgentToCoordinator::Draining { drain_secs });
            }
            Msg::Shutdown(reply) => {
                state.ending = true;
                for job in state.jobs.values() {
                    let _ = job
                        .call(
                            |port| job::Msg::Abandon("the agent is shutting down".into(), port),
                            Some(JOB_STOP_TIMEOUT),
                        )
                        .await;
                }
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(job) = state.job_actors.remove(&cell.get_id()) {
                    state.jobs.remove(&job);
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(job) = state.job_actors.remove(&cell.get_id()) {
                    tracing::error!("job {job} failed: {error}");
                    state.jobs.remove(&job);
                    let reason = format!("the agent's job actor failed: {error}");
                    state.push(AgentToCoordinator::Finished {
                        job,
                        outcome: BuildOutcome::InfrastructureFailure { reason, retryable: true },
                    });
                    let key = JobKey { session: state.session, job };
                    let _ = state.listener.send_message(listener::Msg::JobEnded { key, built: None });
                    let _ = state.listener.send_message(listener::Msg::JobGone { key });
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(heartbeat) = state.heartbeat.take() {
            heartbeat.abort();
        }
        for task in state.tasks.drain(..) {
            task.abort();
        }
        // Jobs still running are cancelled: their builds are killed and scratch removed.
        myself.stop_children_and_wait(None, Some(JOB_STOP_TIMEOUT)).await;
        // With every sender gone the writer flushes what is queued and ends.
        state.outbound = None;
        if let Some(writer) = state.writer.take() {
            let _ = tokio::time::timeout(WRITER_FLUSH_TIMEOUT, writer).await;
        }
        // Closing now would drop what the writer just handed to QUIC (the
        // last job's report): a drained coordinator closes when it has it.
        if state.draining {
            let _ = tokio::time::timeout(PEER_CLOSE_TIMEOUT, state.connection.closed()).await;
        }
        state.connection.close("the session ended");
        Ok(())
    }
}

/// After the hello: starts the writer, reader and bulk tasks, sends the
/// capability report and starts heartbeats.
fn start_streams(myself: &ActorRef<Msg>, state: &mut State, control: ControlStream, report: CapabilityReport) {
    let (sender, mut receiver) = control.into_split();
    let (outbound, queue) = unbounded_channel();
    state.writer = Some(tokio::spawn(write_frames(sender, queue, myself.clone())));
    let me = myself.clone();
    state.tasks.push(tokio::spawn(async move {
        let reason = loop {
            match receiver.recv::<CoordinatorToAgent>().await {
                Ok(Some(message)) => {
                    if me.send_message(Msg::FromCoordinator(message)).is_err() {
                        return;
                    }
                }
                Ok(None) => break "the coordinator closed the control stream".to_owned(),
                Err(error) => break error.to_string(),
            }
        };
        let _ = me.send_message(Msg::ConnectionLost(reason));
    }));
    let me = myself.clone();
    let connection = state.connection.clone();
    state.tasks.push(tokio::spawn(async move {
        loop {
            match connection.accept_bulk_with_limit(MAX_BUNDLE_LEN).await {
                Ok(incoming) => {
                    if me.send_message(Msg::Bulk(Box::new(incoming))).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let closed = tokio::time::timeout(Duration::ZERO, connection.closed()).await.is_ok();
                    if closed {
                        let _ = me.send_message(Msg::ConnectionLost(error.to_string()));
                        return;
                    }
                    tracing::warn!("refused a bulk stream: {error}");
                }
            }
        }
    }));
    let _ = outbound.send(AgentToCoordinator::Capabilities(report));
    let interval = state.context.config.heartbeat_interval();
    state.heartbeat = Some(heartbeat::spawn_beats(state.context.gauge.clone(), interval, outbound.clone()));
    state.outbound = Some(outbound);
}

/// Sends queued frames in order until every sender is dropped, then ends the stream.
async fn write_frames(
    mut sender: ControlSender,
    mut queue: UnboundedReceiver<AgentToCoordinator>,
    session: ActorRef<Msg>,
) {
    while let Some(message) = queue.recv().await {
        if let Err(error) = sender.send(&message).await {
            let _ = session.send_message(Msg::ConnectionLost(error.to_string()));
            return;
        }
    }
    let _ = tokio::time::timeout(WRITER_FLUSH_TIMEOUT, sender.finish()).await;
}

fn from_coordinator(myself: &ActorRef<Msg>, state: &mut State, message: CoordinatorToAgent) {
    match message {
        CoordinatorToAgent::Offer(offer) => {
            if state.ending {
                return state.reject(offer.job, RejectReason::ShuttingDown);
            }
            if state.jobs.contains_key(&offer.job) || state.pending_offers.contains(&offer.job) {
                tracing::warn!("session {}: ignored a second offer of job {}", state.session, offer.job);
                return;
            }
            if !state.context.config.target_allowed(&offer.target.name) {
                let triple = offer.target.name.clone();
                return state.reject(offer.job, RejectReason::UnsupportedTarget { triple });
            }
            state.pending_offers.insert(offer.job);
            state.tasks.retain(|task| !task.is_finished());
            let context = state.context.clone();
            let me = myself.clone();
            // Toolchain discovery may run processes: not in the mailbox.
            state.tasks.push(tokio::spawn(async move {
                let verdict = check_offer(&context, &offer).await;
                let _ = me.send_message(Msg::OfferChecked { offer, verdict });
            }));
        }
        CoordinatorToAgent::Cancel { job } => match state.jobs.get(&job) {
            Some(actor) => {
                let _ = actor.send_message(job::Msg::Cancel);
            }
            None => tracing::info!("session {}: cancel for job {job}, which is not running", state.session),
        },
        CoordinatorToAgent::BulkAck(ack) => {
            tracing::debug!("session {}: coordinator acknowledged {ack:?}", state.session)
        }
    }
}

/// Whether a toolchain here builds the offer's target (and, if the offer
/// names a toolchain, whether it is installed).
async fn check_offer(context: &Context, offer: &JobOffer) -> Result<(), RejectReason> {
    let unsupported = || RejectReason::UnsupportedTarget { triple: offer.target.name.clone() };
    if let Some(simulation) = &context.simulation {
        return if simulation.answers(&offer.target.name) { Ok(()) } else { Err(unsupported()) };
    }
    // The whole target: a glibc floor needs zig here, not just the triple's std.
    let (target, settings) = crate::wire::target_from_wire(&offer.target).map_err(|_| unsupported())?;
    match context.toolchains.availability(&target, &settings).await {
        Ok(TargetAvailability::Available(_)) => {}
        Ok(_) | Err(_) => return Err(unsupported()),
    }
    if !offer.toolchain.is_empty() {
        let installed = context.toolchains.toolchains().await.map_err(|_| unsupported())?;
        let known =
            installed.iter().any(|t| t.name == offer.toolchain || t.name.starts_with(&format!("{}-", offer.toolchain)));
        if !known {
            return Err(RejectReason::ToolchainMissing { toolchain: offer.toolchain.clone() });
        }
    }
    Ok(())
}

/// Reserves a slot for a checked offer, accepts it and starts its job actor.
async fn offer_checked(myself: &ActorRef<Msg>, state: &mut State, offer: JobOffer, verdict: Result<(), RejectReason>) {
    state.pending_offers.remove(&offer.job);
    if let Err(reason) = verdict {
        return state.reject(offer.job, reason);
    }
    if state.ending {
        return state.reject(offer.job, RejectReason::ShuttingDown);
    }
    let key = JobKey { session: state.session, job: offer.job };
    let template_id = offer.template_id.0.clone();
    let placement =
        match state.listener.call(|reply| listener::Msg::Reserve { key, template_id, reply }, Some(CALL_TIMEOUT)).await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(placement))) => placement,
            Ok(ractor::rpc::CallResult::Success(Err(reason))) => return state.reject(offer.job, reason),
            _ => return state.reject(offer.job, RejectReason::ShuttingDown),
        };
    let Some(outbound) = state.outbound.clone() else {
        let _ = state.listener.send_message(listener::Msg::JobEnded { key, built: None });
        let _ = state.listener.send_message(listener::Msg::JobGone { key });
        return;
    };
    // Accept goes out before the job actor can send anything about the job.
    state.push(AgentToCoordinator::Accept { job: offer.job });
    state.push(AgentToCoordinator::Event { job: offer.job, event: BuildEvent::Queued { position: 0 } });
    let job = offer.job;
    let args = job::Arguments {
        context: state.context.clone(),
        key,
        offer,
        placement,
        connection: state.connection.clone(),
        outbound,
        listener: state.listener.clone(),
    };
    match Actor::spawn_linked(None, JobActor, args, myself.get_cell()).await {
        Ok((actor, _)) => {
            tracing::info!("session {}: accepted job {job} (in a {placement:?} dir)", state.session);
            state.job_actors.insert(actor.get_id(), job);
            state.jobs.insert(job, actor);
        }
        Err(error) => {
            let _ = state.listener.send_message(listener::Msg::JobEnded { key, built: None });
            let _ = state.listener.send_message(listener::Msg::JobGone { key });
            let reason = format!("the agent could not start the job: {error}");
            state.push(AgentToCoordinator::Finished {
                job,
                outcome: BuildOutcome::InfrastructureFailure { reason, retryable: true },
            });
        }
    }
}

//! The scheduler actor: wraps the pure `rustle_scheduler::Scheduler`, feeds it events with `now` from a monotonic clock, carries out its actions and wakes it at `poll_timeout()`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustle_engine::engine::CompiledBinary;
use rustle_protocol::{AgentId, BuildEvent, BuildOutcome, CapabilityReport, JobId, LoadUpdate, RejectReason};
use rustle_scheduler::{
    Action, AgentStatus, EventOutcome, Executor, FallbackId, JobSubmission, MeasuredSpeed, Scheduler, Timestamp,
};
use rustle_targets::BuildRequest;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{BuildSource, FleetBuild, job, session};
use crate::outcome::TargetOutcome;

/// What the scheduler actor is told.
pub(crate) enum Msg {
    /// Builds submitted together, placed as one batch (from
    /// [`Fleet::submit`](super::Fleet::submit)).
    Submit(Vec<Submission>),
    /// An agent reported its capabilities (first, or again).
    AgentConnected {
        /// Its report, `agent_id` set to the authenticated name.
        report: Box<CapabilityReport>,
        /// Its session.
        session: ActorRef<session::Msg>,
    },
    /// An agent's connection ended.
    AgentDisconnected {
        /// The agent.
        agent: AgentId,
    },
    /// An agent is shutting down: no new jobs for it.
    Draining {
        /// The agent.
        agent: AgentId,
    },
    /// A heartbeat.
    Load {
        /// The agent.
        agent: AgentId,
        /// Its load.
        update: LoadUpdate,
    },
    /// An agent took a job.
    Accepted {
        /// The agent.
        agent: AgentId,
        /// The job.
        job: JobId,
    },
    /// An agent turned a job down.
    Rejected {
        /// The agent.
        agent: AgentId,
        /// The job.
        job: JobId,
        /// Why.
        reason: RejectReason,
    },
    /// Progress of a job on an agent.
    Progress {
        /// The agent.
        agent: AgentId,
        /// The job.
        job: JobId,
        /// What happened.
        event: BuildEvent,
    },
    /// A job ended on an executor. `Success` only with a verified, validated artifact.
    Finished {
        /// Where.
        executor: Executor,
        /// The job.
        job: JobId,
        /// How.
        outcome: BuildOutcome,
        /// The binary, for agent successes (local ones keep theirs in the job actor).
        artifact: Option<Box<CompiledBinary>>,
    },
    /// Reply with every agent's status.
    Status(RpcReplyPort<Vec<AgentStatus>>),
    /// The time the core asked to be woken at may have come.
    Tick,
}

/// A build of one target.
pub(crate) struct Submission {
    /// The build, its progress sink and its local builder.
    pub(crate) build: FleetBuild,
    /// The template's bundle.
    pub(crate) source: BuildSource,
    /// Where the outcome goes.
    pub(crate) reply: oneshot::Sender<TargetOutcome>,
}

/// What the scheduler actor starts with.
pub(crate) struct Arguments {
    /// The pure core, configured (fallback chain included).
    pub(crate) core: Scheduler,
    /// Where measured build speeds are kept between runs (read at start,
    /// written at stop).
    pub(crate) speeds_file: Option<PathBuf>,
}

/// A job's actor and what its offers need.
struct JobEntry {
    actor: ActorRef<job::Msg>,
    source: BuildSource,
}

/// The scheduler actor.
pub(crate) struct SchedulerActor;

/// The core, the clock, and who to tell what.
pub(crate) struct State {
    core: Scheduler,
    epoch: Instant,
    sessions: HashMap<AgentId, ActorRef<session::Msg>>,
    jobs: HashMap<JobId, JobEntry>,
    /// The pending wake-up for `poll_timeout()`.
    timer: Option<JoinHandle<Result<(), ractor::MessagingErr<Msg>>>>,
    speeds_file: Option<PathBuf>,
}

impl Actor for SchedulerActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(&self, _myself: ActorRef<Msg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        let mut core = args.core;
        if let Some(path) = &args.speeds_file {
            core.handle_speeds_restored(read_speeds(path));
        }
        Ok(State {
            core,
            epoch: Instant::now(),
            sessions: HashMap::new(),
            jobs: HashMap::new(),
            timer: None,
            speeds_file: args.speeds_file,
        })
    }

    async fn handle(&self, myself: ActorRef<Msg>, msg: Msg, state: &mut State) -> Result<(), ActorProcessingErr> {
        state.handle(&myself, msg).await;
        state.run_actions();
        state.arm_timer(&myself);
        Ok(())
    }

    /// Stops the jobs still running (their callers hear that the fleet stopped) and closes the sessions.
    async fn post_stop(&self, _myself: ActorRef<Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        for entry in state.jobs.values() {
            entry.actor.stop(None);
        }
        for session in state.sessions.values() {
            let _ = session.send_message(session::Msg::Close { reason: "the coordinator is done".into() });
        }
        state.keep_speeds();
        Ok(())
    }
}

/// The speeds kept in `path`; none when it is missing, and none (with a
/// warning) when it is not readable: they only steer placement.
fn read_speeds(path: &Path) -> Vec<MeasuredSpeed> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!("measured build speeds in {} not read: {error}", path.display());
            return Vec::new();
        }
    };
    serde_json::from_slice(&text).unwrap_or_else(|error| {
        tracing::warn!(
            "measured build speeds in {} ignored (not readable: {error}); they are measured again",
            path.display()
        );
        Vec::new()
    })
}

/// Writes `speeds` to `path` through a temporary file renamed into place.
fn write_speeds(path: &Path, speeds: &[MeasuredSpeed]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(speeds).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

impl State {
    /// Writes the measured build speeds to the speeds file, if there is one.
    fn keep_speeds(&self) {
        if let Some(path) = &self.speeds_file
            && let Err(error) = write_speeds(path, &self.core.measured_speeds())
        {
            tracing::warn!("measured build speeds not kept in {}: {error}", path.display());
        }
    }

    /// Monotonic time since the actor started, as the core's virtual time.
    fn now(&self) -> Timestamp {
        Timestamp::since_epoch(self.epoch.elapsed())
    }

    /// Re-arms the wake-up at the core's next deadline.
    fn arm_timer(&mut self, myself: &ActorRef<Msg>) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        if let Some(at) = self.core.poll_timeout() {
            let delay = at.saturating_duration_since(self.now());
            self.timer = Some(myself.send_after(delay, || Msg::Tick));
        }
    }

    async fn handle(&mut self, myself: &ActorRef<Msg>, msg: Msg) {
        let now = self.now();
        match msg {
            Msg::Submit(submissions) => {
                let local = FallbackId::local();
                let jobs = submissions
                    .iter()
                    .map(|s| JobSubmission {
                        request: s.build.request.clone(),
                        fallbacks: [(local.clone(), s.build.local.is_some())].into(),
                    })
                    .collect();
                let ids = self.core.handle_jobs_submitted(jobs, now);
                for (id, Submission { build, source, reply }) in ids.into_iter().zip(submissions) {
                    let name = build.request.target_name();
                    let args = job::Arguments {
                        job: id,
                        request: build.request,
                        progress: build.progress,
                        local: build.local,
                        scheduler: myself.clone(),
                        reply,
                    };
                    match Actor::spawn(None, job::JobActor, args).await {
                        Ok((actor, _)) => {
                            self.jobs.insert(id, JobEntry { actor, source });
                        }
                        Err(error) => {
                            // Its caller hears that the fleet stopped (the reply port is gone);
                            // the core times the job out at its deadline.
                            tracing::error!("failed to start the actor of job {id} ({name}): {error}");
                        }
                    }
                }
            }
            Msg::AgentConnected { report, session } => {
                self.sessions.insert(report.agent_id.clone(), session);
                self.core.handle_agent_connected(*report, now);
            }
            Msg::AgentDisconnected { agent } => {
                self.sessions.remove(&agent);
                self.core.handle_agent_disconnected(&agent, now);
            }
            Msg::Load { agent, update } => {
                self.core.handle_load_update(&agent, &update, now);
            }
            Msg::Draining { agent } => {
                self.core.handle_agent_draining(&agent, now);
            }
            Msg::Accepted { agent, job } => {
                self.core.handle_job_accepted(&Executor::Agent(agent), job, now);
            }
            Msg::Rejected { agent, job, reason } => {
                self.core.handle_job_rejected(&Executor::Agent(agent), job, &reason, now);
            }
            Msg::Progress { agent, job, event } => {
                if self.core.handle_job_progress(&Executor::Agent(agent), job, now) == EventOutcome::Applied
                    && let Some(entry) = self.jobs.get(&job)
                {
                    let _ = entry.actor.send_message(job::Msg::Progress(event));
                }
            }
            Msg::Finished { executor, job, outcome, artifact } => {
                // The artifact goes to the job before the core's report can.
                let actor = self.jobs.get(&job).map(|e| e.actor.clone());
                if self.core.handle_job_finished(&executor, job, outcome, now) == EventOutcome::Applied
                    && let (Some(actor), Some(artifact)) = (actor, artifact)
                {
                    let _ = actor.send_message(job::Msg::Artifact(artifact));
                }
            }
            Msg::Status(reply) => {
                let _ = reply.send(self.core.agents());
            }
            Msg::Tick => self.core.handle_timeout(now),
        }
    }

    /// Carries out everything the core asks for, in order.
    fn run_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Dispatch(dispatch) => {
                    let Some(entry) = self.jobs.get(&dispatch.job) else { continue };
                    let now = self.now();
                    // Every executor gets the request whole, its deadline
                    // what is left of the job's.
                    let left = dispatch.deadline.saturating_duration_since(now).max(Duration::from_secs(1));
                    let request = Box::new(BuildRequest { deadline: left, ..dispatch.request.clone() });
                    match &dispatch.executor {
                        Executor::Agent(agent) => {
                            let offer = super::wire::offer_of(
                                dispatch.job,
                                &request,
                                dispatch.toolchain.as_deref(),
                                left.as_secs(),
                            );
                            let msg =
                                session::Msg::Offer { offer: Box::new(offer), request, source: entry.source.clone() };
                            let sent = self.sessions.get(agent).is_some_and(|s| s.send_message(msg).is_ok());
                            if !sent {
                                let agent = agent.clone();
                                self.sessions.remove(&agent);
                                self.core.handle_agent_disconnected(&agent, now);
                            }
                        }
                        Executor::Fallback(_) => {
                            let _ = entry
                                .actor
                                .send_message(job::Msg::RunLocally { executor: dispatch.executor.clone(), request });
                        }
                    }
                }
                Action::Cancel(cancel) => match &cancel.executor {
                    Executor::Agent(agent) => {
                        if let Some(session) = self.sessions.get(agent) {
                            let _ = session.send_message(session::Msg::Cancel { job: cancel.job });
                        }
                    }
                    Executor::Fallback(_) => {
                        if let Some(entry) = self.jobs.get(&cancel.job) {
                            let _ = entry.actor.send_message(job::Msg::CancelLocal);
                        }
                    }
                },
                Action::Report(report) => {
                    let entry = self.jobs.remove(&report.job);
                    // The fleet may live long (a manager keeps it): what a
                    // finished batch measured is kept at once, before its
                    // last caller hears the outcome.
                    if self.jobs.is_empty() {
                        self.keep_speeds();
                    }
                    if let Some(entry) = entry {
                        let _ = entry.actor.send_message(job::Msg::Report(Box::new(report)));
                    }
                }
                Action::AgentLost(loss) => {
                    if let Some(session) = self.sessions.remove(&loss.agent) {
                        let reason = format!("agent {} missed its heartbeats since {}", loss.agent, loss.last_heard);
                        let _ = session.send_message(session::Msg::Close { reason });
                    }
                }
            }
        }
    }
}

//! The job actor: one per build of one target; collects progress, the artifact and the final report, and runs the local-fallback build when the scheduler sends the job there.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rustle_engine::engine::{self, CompilationError, CompiledBinary, TargetFailure};
use rustle_protocol::{BuildEvent, BuildOutcome, JobId};
use rustle_scheduler::{Executor, JobReport, JobResult};
use rustle_targets::BuildRequest;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{LocalBuilder, scheduler};
use crate::outcome::{ProgressSink, TargetOutcome};

/// What a job actor is told.
pub(crate) enum Msg {
    /// Progress from the agent running the job.
    Progress(BuildEvent),
    /// The agent's verified, validated binary (its success report follows).
    Artifact(Box<CompiledBinary>),
    /// The scheduler placed the job on the local fallback.
    RunLocally {
        /// The fallback executor.
        executor: Executor,
        /// The build as dispatched.
        request: Box<BuildRequest>,
    },
    /// Stop the local build.
    CancelLocal,
    /// The local build ended (from the spawned build task).
    LocalDone {
        /// The fallback executor.
        executor: Executor,
        /// What it produced.
        result: Box<Result<CompiledBinary, CompilationError>>,
    },
    /// The scheduler's final word.
    Report(Box<JobReport>),
}

/// What a job actor starts with.
pub(crate) struct Arguments {
    /// The job.
    pub(crate) job: JobId,
    /// The build, whole.
    pub(crate) request: BuildRequest,
    /// Where progress goes.
    pub(crate) progress: ProgressSink,
    /// Runs local-fallback builds.
    pub(crate) local: Option<LocalBuilder>,
    /// The scheduler actor.
    pub(crate) scheduler: ActorRef<scheduler::Msg>,
    /// Where the outcome goes.
    pub(crate) reply: oneshot::Sender<TargetOutcome>,
}

/// The job actor.
pub(crate) struct JobActor;

/// A job actor's state.
pub(crate) struct State {
    job: JobId,
    request: BuildRequest,
    progress: ProgressSink,
    local: Option<LocalBuilder>,
    scheduler: ActorRef<scheduler::Msg>,
    reply: Option<oneshot::Sender<TargetOutcome>>,
    artifact: Option<CompiledBinary>,
    local_error: Option<CompilationError>,
    local_task: Option<JoinHandle<()>>,
    /// Units an agent reported, for the progress sink's `Started`.
    started: bool,
}

impl Actor for JobActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(&self, _myself: ActorRef<Msg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        Ok(State {
            job: args.job,
            request: args.request,
            progress: args.progress,
            local: args.local,
            scheduler: args.scheduler,
            reply: Some(args.reply),
            artifact: None,
            local_error: None,
            local_task: None,
            started: false,
        })
    }

    async fn handle(&self, myself: ActorRef<Msg>, msg: Msg, state: &mut State) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Progress(event) => state.progress(event),
            Msg::Artifact(binary) => state.artifact = Some(*binary),
            Msg::RunLocally { executor, request } => state.run_locally(&myself, executor, *request),
            Msg::CancelLocal => {
                if let Some(task) = state.local_task.take() {
                    task.abort();
                }
            }
            Msg::LocalDone { executor, result } => state.local_done(executor, *result),
            Msg::Report(report) => {
                let outcome = state.outcome(*report);
                if let Some(reply) = state.reply.take() {
                    let _ = reply.send(outcome);
                }
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        if let Some(task) = state.local_task.take() {
            task.abort();
        }
        Ok(())
    }
}

impl State {
    /// Agent progress, in the local engine's terms.
    fn progress(&mut self, event: BuildEvent) {
        let triple = self.request.target_name();
        match event {
            BuildEvent::Started => {
                self.started = true;
                (self.progress)(engine::BuildEvent::Started { triple, expected_units: 0 });
            }
            BuildEvent::Progress { done, total } => {
                if !self.started {
                    self.started = true;
                    (self.progress)(engine::BuildEvent::Started {
                        triple: triple.clone(),
                        expected_units: u64::from(total),
                    });
                }
                (self.progress)(engine::BuildEvent::Progress {
                    triple,
                    done: u64::from(done),
                    total: u64::from(total),
                    unit: String::new(),
                });
            }
            BuildEvent::Log { line, .. } => (self.progress)(engine::BuildEvent::Log { triple, line }),
            BuildEvent::Queued { .. } => {}
        }
    }

    fn run_locally(&mut self, myself: &ActorRef<Msg>, executor: Executor, request: BuildRequest) {
        let Some(builder) = self.local.clone() else {
            let reason = "no local fallback is configured".to_owned();
            let _ = self.scheduler.send_message(scheduler::Msg::Finished {
                executor,
                job: self.job,
                outcome: BuildOutcome::InfrastructureFailure { reason, retryable: false },
                artifact: None,
            });
            return;
        };
        let mailbox = myself.clone();
        let progress = self.progress.clone();
        self.local_task = Some(tokio::spawn(async move {
            let result = builder(request, progress).await;
            let _ = mailbox.send_message(Msg::LocalDone { executor, result: Box::new(result) });
        }));
    }

    fn local_done(&mut self, executor: Executor, result: Result<CompiledBinary, CompilationError>) {
        self.local_task = None;
        let outcome = match result {
            Ok(binary) => {
                let outcome = super::wire::success_of(&binary);
                self.artifact = Some(binary);
                outcome
            }
            Err(error) => {
                let outcome = if error.is_compile_failure() {
                    BuildOutcome::CompileFailed { diagnostics: error.to_string() }
                } else {
                    // This machine's toolchain will fail the same way again.
                    BuildOutcome::InfrastructureFailure { reason: error.to_string(), retryable: false }
                };
                self.local_error = Some(error);
                outcome
            }
        };
        let _ =
            self.scheduler.send_message(scheduler::Msg::Finished { executor, job: self.job, outcome, artifact: None });
    }

    /// The outcome the caller sees: the binary or the most precise error, where and why.
    fn outcome(&mut self, report: JobReport) -> TargetOutcome {
        let triple = self.request.target_name();
        let local = |executor: &Executor| matches!(executor, Executor::Fallback(_));
        let result = match &report.result {
            JobResult::Succeeded { .. } => self.artifact.take().ok_or_else(|| {
                CompilationError::unavailable(triple.clone(), "the build succeeded but its binary was not kept")
            }),
            JobResult::CompileFailed { executor, diagnostics } => Err(match self.local_error.take() {
                Some(error) if local(executor) => error,
                _ => CompilationError::target(
                    triple.clone(),
                    TargetFailure::CompileFailed { diagnostics: diagnostics.clone() },
                ),
            }),
            JobResult::InfrastructureFailed { executor, .. } => Err(match self.local_error.take() {
                Some(error) if local(executor) => error,
                _ => CompilationError::unavailable(triple.clone(), report.result.to_string()),
            }),
            JobResult::TimedOut { .. } | JobResult::NoExecutor { .. } => {
                Err(CompilationError::unavailable(triple.clone(), report.result.to_string()))
            }
        };
        let executor = match &report.result {
            JobResult::Succeeded { executor, .. }
            | JobResult::CompileFailed { executor, .. }
            | JobResult::InfrastructureFailed { executor, .. } => Some(executor.clone()),
            JobResult::TimedOut { executor, .. } => executor.clone(),
            JobResult::NoExecutor { .. } => None,
        };
        TargetOutcome {
            target: self.request.target_specification(),
            result,
            executor,
            decisions: report.decisions,
            passed_over: Vec::new(),
            substitute_for: None,
        }
    }
}

//! What the scheduler asks of its caller ([`Action`]) and what it reports about a job when it ends ([`JobReport`]).

use std::fmt;

use rustle_protocol::{AgentId, JobId, Sha256Digest};
use rustle_targets::BuildRequest;
use serde::{Serialize, Serializer};

use crate::executor::Executor;
use crate::placement::Decision;
use crate::time::Timestamp;

/// Something the caller must do, polled with [`Scheduler::poll_action`](crate::Scheduler::poll_action).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the job to an agent (as a `JobOffer`) or start it on a fallback.
    Dispatch(Box<Dispatch>),
    /// Tell an executor to stop a job and discard its results.
    Cancel(Cancel),
    /// The job is over; hand its result to whoever submitted it.
    Report(JobReport),
    /// An agent missed its heartbeats: close its connection. Its jobs are
    /// already being placed elsewhere; the agent cancels them when the
    /// connection drops, and anything it still sends about them is ignored.
    AgentLost(AgentLoss),
}

/// Run a job on an executor.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The job.
    pub job: JobId,
    /// Where it runs.
    pub executor: Executor,
    /// What to build, whole, as it was submitted.
    pub request: BuildRequest,
    /// The toolchain the agent should use (for `JobOffer::toolchain`); `None` for fallbacks.
    pub toolchain: Option<String>,
    /// Which dispatch of the job this is, from 1.
    pub attempt: u32,
    /// When the job's deadline passes; an offer's `deadline_secs` is the time left until then.
    pub deadline: Timestamp,
    /// Why the job goes there.
    pub decision: Decision,
}

/// Stop a job on an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The job.
    pub job: JobId,
    /// Where it runs (or where something still claims to run it).
    pub executor: Executor,
    /// Why.
    pub reason: CancelReason,
}

/// Why a job is cancelled on an executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The job's deadline passed.
    DeadlineExpired,
    /// The agent did not answer the offer in time; the job goes elsewhere.
    OfferUnanswered,
    /// The executor accepted or reported progress on a job that is not (or no
    /// longer) dispatched to it.
    NotAssigned,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DeadlineExpired => "the job's deadline passed",
            Self::OfferUnanswered => "the offer was not answered in time",
            Self::NotAssigned => "the job is not dispatched to this executor",
        })
    }
}

/// An agent declared lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentLoss {
    /// The agent.
    pub agent: AgentId,
    /// When it was last heard from.
    pub last_heard: Timestamp,
    /// Jobs it held, now placed elsewhere or reported as failed.
    pub jobs: Vec<JobId>,
}

/// The single final word on a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    /// The job.
    pub job: JobId,
    /// Its target triple.
    pub target: String,
    /// How it ended.
    pub result: JobResult,
    /// When it was submitted.
    pub submitted_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// Every placement decision made for it, in order.
    pub decisions: Vec<Decision>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum JobResult {
    /// Built. The caller has already verified the artifact (an artifact that
    /// fails verification is reported to the scheduler as a retryable
    /// infrastructure failure, not as a success).
    Succeeded {
        /// Where it was built.
        executor: Executor,
        /// SHA-256 of the artifact.
        #[serde(serialize_with = "as_display")]
        checksum: Sha256Digest,
        /// Artifact size in bytes.
        size: u64,
        /// Time cargo took, as the executor measured it.
        compile_time_ms: u64,
        /// `rustc --version` output.
        rustc_version: String,
        /// `cargo --version` output.
        cargo_version: String,
    },
    /// The compiler rejected the project. Never retried: it would fail the same way anywhere.
    CompileFailed {
        /// Where it was compiled.
        executor: Executor,
        /// Compiler diagnostics.
        diagnostics: String,
    },
    /// The build could not run to a verdict: a non-retryable failure, or the
    /// attempts ran out.
    InfrastructureFailed {
        /// Where the last attempt ran.
        executor: Executor,
        /// What went wrong last.
        reason: String,
        /// Dispatches that ended in an infrastructure failure.
        failures: u32,
    },
    /// The deadline passed first.
    TimedOut {
        /// Where it was running, if anywhere.
        executor: Option<Executor>,
        /// The deadline.
        deadline: Timestamp,
    },
    /// No connected agent or fallback can build the target (any more).
    NoExecutor {
        /// Why, naming the target.
        reason: String,
    },
}

impl JobResult {
    /// Whether the job produced an artifact.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded { .. })
    }
}

impl fmt::Display for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeded { executor, checksum, size, .. } => {
                write!(f, "built on {executor}: {size} bytes, sha256 {checksum}")
            }
            Self::CompileFailed { executor, .. } => write!(f, "failed to compile on {executor}"),
            Self::InfrastructureFailed { executor, reason, failures } => {
                write!(f, "failed after {failures} infrastructure failure(s), last on {executor}: {reason}")
            }
            Self::TimedOut { executor: Some(executor), deadline } => {
                write!(f, "timed out at {deadline} while running on {executor}")
            }
            Self::TimedOut { executor: None, deadline } => {
                write!(f, "timed out at {deadline} while waiting for a slot")
            }
            Self::NoExecutor { reason } => f.write_str(reason),
        }
    }
}

/// Whether an event was about a current dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// The event was about the job's current dispatch (or a connected agent) and was applied.
    Applied,
    /// The event was about a job that is finished, unknown, or dispatched
    /// elsewhere now, or came from an agent that is not connected. Nothing
    /// changed, except that a [`Cancel`] may have been queued for the sender.
    Ignored,
}

fn as_display<T: fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

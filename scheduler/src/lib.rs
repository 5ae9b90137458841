//! The pure scheduling core of rustle-cross: which executor builds which job, retries, deadlines and agent liveness.
//!
//! [`Scheduler`] is a state machine in the style of quinn-proto's
//! `Connection`: the coordinator's scheduler actor feeds it events with
//! `handle_*(…, now)` (agents connecting, heartbeats, jobs submitted,
//! accepted, rejected, finished) and carries out the [`Action`]s it polls
//! (dispatch a job, cancel one, report a result, drop a lost agent). It asks
//! to be woken at [`Scheduler::poll_timeout`] and is told the time with
//! [`Scheduler::handle_timeout`].
//!
//! **Architecture invariant:** this crate does no I/O, spawns nothing and
//! reads no clock. Time is a [`Timestamp`] the caller passes in, so every
//! behaviour, deadlines and heartbeat loss included, is unit-tested with
//! virtual time and no sleeps.
//!
//! # Where a job goes
//! The order of preference, most important first:
//! 1. [`Tier`]: an agent native to the target (a toolchain hosted on the
//!    target, or the agent's own arch/OS/libc is the target's, see
//!    [`is_native`]), then an agent that cross-builds it, then the fallback
//!    chain ([`FallbackExecutor`]: the local toolchains now, Docker later) in
//!    its configured order;
//! 2. fewer jobs already running there (of two that fit alike, the idle
//!    one finishes a new job first), then more free slots
//!    (`max_concurrent_jobs` minus jobs dispatched there and not finished);
//! 3. lower one-minute load per core, in steps of
//!    [`SchedulerConfig::load_resolution`];
//! 4. faster measured builds of this template's target there (a moving
//!    average of successful builds, kept across runs by the coordinator with
//!    [`Scheduler::measured_speeds`] and [`Scheduler::handle_speeds_restored`];
//!    an executor not measured yet ranks first, so each one gets measured once);
//! 5. the executor's name, so equal candidates are picked the same way every time.
//!
//! Jobs submitted together ([`Scheduler::handle_jobs_submitted`], one call
//! of the façade) are placed as a batch, the scarcest first: the one fewest
//! executors could ever take, so a target only one agent builds gets it and
//! the others go to the agents left free.
//!
//! Never chosen: an executor that cannot build the target, a lost or
//! disconnected agent, one that rejected the job, was lost while holding it
//! or left its offer unanswered, and one without a free slot (the job waits
//! for a slot instead). An executor where the job already failed for
//! infrastructure reasons is chosen only when no other has a free slot.
//!
//! Each dispatch carries a [`Decision`] naming every candidate with its
//! [`Score`] and [`Verdict`]; it is `Serialize` for JSON output and `Display`
//! for `rustle-cross build -v`. Every job ends in exactly one
//! [`JobReport`], which carries all the decisions made for it.

mod actions;
mod agents;
mod config;
mod core;
mod executor;
mod index;
mod placement;
mod queue;
mod time;

#[cfg(test)]
mod tests;

pub use actions::{Action, AgentLoss, Cancel, CancelReason, Dispatch, EventOutcome, JobReport, JobResult};
pub use agents::{AgentState, AgentStatus, buildable_triples, is_native, toolchain_for};
pub use config::{ConfigError, SchedulerConfig};
pub use core::{JobState, JobSubmission, Scheduler};
pub use executor::{Executor, FallbackExecutor, FallbackId};
pub use placement::{CandidateAssessment, Candidates, Decision, Exclusion, MeasuredSpeed, Score, Tier, Verdict};
pub use time::Timestamp;

//! The two directions of the control stream: [`CoordinatorToAgent`] and [`AgentToCoordinator`].

use serde::{Deserialize, Serialize};

use crate::bulk::BulkAck;
use crate::capability::{CapabilityReport, LoadUpdate};
use crate::job::{BuildEvent, BuildOutcome, JobId, JobOffer, RejectReason};

/// What the coordinator sends an agent after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorToAgent {
    /// Asks the agent to run a job.
    Offer(JobOffer),
    /// Asks the agent to stop a job; it answers with [`BuildOutcome::Cancelled`]
    /// unless the job had already ended.
    Cancel {
        /// The job.
        job: JobId,
    },
    /// Answers an artifact transfer.
    BulkAck(BulkAck),
}

/// What an agent sends the coordinator after the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentToCoordinator {
    /// The agent's host and toolchains; first after the handshake, repeated on change.
    Capabilities(CapabilityReport),
    /// Periodic load report and heartbeat.
    Load(LoadUpdate),
    /// The agent takes the offered job and waits for its source bundle.
    Accept {
        /// The job.
        job: JobId,
    },
    /// The agent turns the offered job down.
    Reject {
        /// The job.
        job: JobId,
        /// Why.
        reason: RejectReason,
    },
    /// Progress of a running job.
    Event {
        /// The job.
        job: JobId,
        /// What happened.
        event: BuildEvent,
    },
    /// A job has ended; on success its artifact follows on its own stream.
    Finished {
        /// The job.
        job: JobId,
        /// How it ended.
        outcome: BuildOutcome,
    },
    /// Answers a source-bundle transfer.
    BulkAck(BulkAck),
    /// The agent is shutting down: it takes no new offers, and the jobs it
    /// runs still finish and report (for up to its drain time).
    Draining {
        /// How long the running jobs have, in seconds.
        drain_secs: u64,
    },
}

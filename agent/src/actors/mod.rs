//! The agent's actors, one per file: [`listener`] (accepts coordinators,
//! owns job slots and the warm-dir registry), [`session`] (one per
//! coordinator connection) and [`job`] (one per accepted job).
//!
//! No state is shared between them but the load gauge: a session asks the
//! listener for a slot by request/reply with a timeout, and a job tells the
//! listener when it ends. The listener writes the running-job count into
//! the gauge, which the session's heartbeat task only reads
//! ([`crate::heartbeat`]), so a beat never waits on a mailbox. Long work
//! (handshakes, receiving bundles, unpacking, cargo, hashing, sending
//! artifacts) runs in spawned or blocking tasks that report back as
//! messages, so no mailbox and no async worker waits on the network, the
//! disk or cargo; the builds themselves run on a runtime of their own
//! ([`Shared::builds`]).

pub(crate) mod job;
pub(crate) mod listener;
pub(crate) mod session;

use std::sync::Arc;
use std::time::Duration;

use rustle_engine::toolchain::ToolchainManager;
use rustle_protocol::JobId;

use crate::config::AgentConfig;
use crate::heartbeat::LoadGauge;
use crate::simulate::Simulation;
use crate::warm::WorkLayout;

/// Bound on every request/reply between actors.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What every actor may read: the configuration, the toolchain manager
/// (whose discovery cache is its own business) and the load gauge (written
/// only by the listener and the host sampler). Otherwise immutable.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration.
    pub config: AgentConfig,
    /// Paths in the work directory.
    pub layout: WorkLayout,
    /// Finds toolchains and plans builds.
    pub toolchains: ToolchainManager,
    /// Running jobs and the latest host sample, for heartbeats.
    pub gauge: Arc<LoadGauge>,
    /// The runtime builds run on (cargo's output, validation, hashing):
    /// not the one driving connections and heartbeats, so a build's work
    /// never delays a beat, however long its polls take (under emulation,
    /// a poll of a few milliseconds natively takes hundreds).
    pub builds: tokio::runtime::Handle,
    /// Set in simulation mode: builds are answered with its canned binary.
    pub simulation: Option<Arc<Simulation>>,
}

/// Shared, immutable context.
pub(crate) type Context = Arc<Shared>;

/// A job, unique across the agent: the coordinator's job id is only unique
/// per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct JobKey {
    /// The session (connection) number.
    pub session: u64,
    /// The coordinator's job id.
    pub job: JobId,
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.session, self.job)
    }
}

/// Where a job builds: in its template's warm dir (shared with the jobs of
/// the same bundle), or (when another bundle of the template is in use
/// there) in scratch dirs removed afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// `warm/<template_id>`.
    Warm,
    /// `jobs/<job-key>`.
    Scratch,
}

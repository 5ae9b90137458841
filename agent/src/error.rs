//! [`AgentError`]: why the agent could not start, serve or report.

use std::path::PathBuf;

/// Why the agent failed. Failures of a single job are not errors of the
/// agent: they travel to the coordinator as a `BuildOutcome`.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config file could not be read.
    #[error("failed to read the agent config {}: {source}; pass an existing file with --config", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("failed to parse the agent config {}: {reason}", path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        reason: String,
    },
    /// A config value is unusable.
    #[error("invalid agent config: {reason}")]
    ConfigInvalid {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The certificate bundle could not be loaded.
    #[error("failed to load the agent's certificates: {0}")]
    Certificates(#[from] rustle_transport::CaError),
    /// The listener could not be set up.
    #[error("failed to listen for coordinators: {0}")]
    Transport(#[from] rustle_transport::TransportError),
    /// The work directory could not be prepared.
    #[error("failed to prepare the work directory {}: {source}; check that it is writable", path.display())]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The capability report could not be made.
    #[error("failed to make the capability report: {reason}")]
    Capabilities {
        /// What failed.
        reason: String,
    },
    /// The simulation's canned binary cannot answer its targets.
    #[error("failed to set up the simulation (simulate.binary {}): {reason}", binary.display())]
    Simulation {
        /// The canned binary.
        binary: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An actor could not be started.
    #[error("failed to start the {actor} actor: {reason}")]
    Actor {
        /// Which actor.
        actor: &'static str,
        /// ractor's reason.
        reason: String,
    },
}

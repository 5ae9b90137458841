//! One build job on the wire: the [`JobOffer`], its [`BuildEvent`]s and its [`BuildOutcome`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bulk::Sha256Digest;

/// Coordinator-assigned job number, unique for the coordinator's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Names the project template (the source tree) a job builds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TemplateId(pub String);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A build the coordinator asks an agent to run. The agent answers with
/// [`Accept`](crate::AgentToCoordinator::Accept) (then receives the source
/// bundle) or [`Reject`](crate::AgentToCoordinator::Reject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOffer {
    /// The job.
    pub job: JobId,
    /// Template to build.
    pub template_id: TemplateId,
    /// What to build for: the target and its per-target settings.
    pub target: BuildTarget,
    /// Toolchain name to build with, one the agent reported.
    pub toolchain: String,
    /// Profile settings.
    pub optimization: OptimizationSettings,
    /// Seconds the agent has, from accepting, to report an outcome.
    pub deadline_secs: u64,
    /// Whether the agent may answer from its binary cache and keep the
    /// binary there (`false`: the coordinator was told `--no-cache`).
    pub use_cache: bool,
}

/// The target of a job, whole: its identity and how the coordinator's
/// configuration says to build it. An agent builds exactly this or rejects
/// the offer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuildTarget {
    /// The target's full name: a rustc triple, with its glibc floor when it
    /// has one (`x86_64-unknown-linux-gnu.2.17`).
    pub name: String,
    /// Cargo features to enable for this target.
    pub features: Vec<String>,
    /// Extra rustc flags for this target.
    pub rustflags: Vec<String>,
    /// A linker to use instead of the one the agent's rules pick.
    pub linker: Option<String>,
    /// How the `-sys` crates' C libraries are linked.
    pub c_libraries: CLinking,
}

/// How a build links the C libraries its `-sys` crates need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CLinking {
    /// From static archives: the binary needs nothing more on its host.
    #[default]
    Static,
    /// As the `-sys` crate links by itself.
    Dynamic,
}

/// Overrides of the template's release profile for a job; a `None` field
/// (and no target features) leaves the template's own setting alone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OptimizationSettings {
    /// `opt-level`.
    pub opt_level: Option<OptLevel>,
    /// `lto`.
    pub lto: Option<Lto>,
    /// `codegen-units`; `None` keeps cargo's default.
    pub codegen_units: Option<u32>,
    /// `-C target-cpu`, e.g. `"neoverse-n1"`; `None` keeps the target's default.
    pub target_cpu: Option<String>,
    /// `-C target-feature` entries, e.g. `"+crt-static"`.
    pub target_features: Vec<String>,
    /// `strip`.
    pub strip: Option<Strip>,
    /// `panic`.
    pub panic: Option<PanicStrategy>,
}

/// Cargo `opt-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum OptLevel {
    /// `0`.
    O0,
    /// `1`.
    O1,
    /// `2`.
    O2,
    /// `3`.
    #[default]
    O3,
    /// `"s"`: small.
    S,
    /// `"z"`: smallest.
    Z,
}

/// Cargo `lto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Lto {
    /// `"off"`.
    Off,
    /// `false`: thin LTO within the crate (cargo's default).
    #[default]
    ThinLocal,
    /// `"thin"`.
    Thin,
    /// `"fat"` / `true`.
    Fat,
}

/// Cargo `strip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Strip {
    /// `"none"`.
    #[default]
    None,
    /// `"debuginfo"`.
    Debuginfo,
    /// `"symbols"`.
    Symbols,
}

/// Cargo `panic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PanicStrategy {
    /// `"unwind"`.
    #[default]
    Unwind,
    /// `"abort"`.
    Abort,
}

/// Why an agent turned a [`JobOffer`] down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// All job slots are taken.
    AtCapacity {
        /// Jobs running.
        running: u32,
        /// The agent's `max_concurrent_jobs`.
        max: u32,
    },
    /// No toolchain here builds this target.
    UnsupportedTarget {
        /// The offered triple.
        triple: String,
    },
    /// The offered toolchain is not installed.
    ToolchainMissing {
        /// The offered toolchain name.
        toolchain: String,
    },
    /// The agent is shutting down and takes no new work.
    ShuttingDown,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtCapacity { running, max } => {
                write!(f, "agent is at capacity ({running} of {max} jobs running)")
            }
            Self::UnsupportedTarget { triple } => {
                write!(f, "no toolchain on the agent builds {triple}")
            }
            Self::ToolchainMissing { toolchain } => {
                write!(f, "toolchain {toolchain} is not installed on the agent")
            }
            Self::ShuttingDown => f.write_str("agent is shutting down"),
        }
    }
}

/// Progress of an accepted job, streamed while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildEvent {
    /// Waiting for a job slot.
    Queued {
        /// Jobs ahead of this one.
        position: u32,
    },
    /// Cargo has started.
    Started,
    /// Cargo's progress through the crate graph.
    Progress {
        /// Units finished.
        done: u32,
        /// Units in total.
        total: u32,
    },
    /// A line of cargo's output.
    Log {
        /// Where it was printed.
        stream: LogStream,
        /// The line, without its newline.
        line: String,
    },
}

/// An output stream of a build process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a job ended. A compile failure is the project's fault and the same on
/// every machine, so it is reported, never retried; an infrastructure failure
/// is the machine's and may be retried elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildOutcome {
    /// The artifact was built; it follows on its own stream with this checksum and size.
    Success {
        /// SHA-256 of the artifact.
        checksum: Sha256Digest,
        /// Artifact size.
        size: u64,
        /// Wall-clock time cargo took.
        compile_time_ms: u64,
        /// The name of the toolchain that built it.
        toolchain: String,
        /// `rustc --version` output.
        rustc_version: String,
        /// `cargo --version` output.
        cargo_version: String,
        /// The cargo arguments and `*_RUSTFLAGS` the build ran with.
        compilation_flags: Vec<String>,
        /// The agent's binary cache answered (the build it reports ran
        /// earlier, with these flags and toolchain).
        from_cache: bool,
    },
    /// The compiler rejected the project.
    CompileFailed {
        /// Compiler diagnostics, as rendered by cargo.
        diagnostics: String,
    },
    /// The build could not run to a verdict: disk full, toolchain broken, deadline passed.
    InfrastructureFailure {
        /// What went wrong, naming the thing that did.
        reason: String,
        /// Whether another agent may succeed where this one failed.
        retryable: bool,
    },
    /// The job was cancelled at the coordinator's request.
    Cancelled,
}

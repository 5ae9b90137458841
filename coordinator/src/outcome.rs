//! What one build run reports per target, and the progress callback: a leaf
//! module both the façade (`manager.rs`) and the fleet use, so the fleet
//! never imports the façade above it.

use std::sync::Arc;

use rustle_engine::engine::{BuildEnd, BuildEvent, CompilationError, CompiledBinary};
use rustle_scheduler::{Decision, Executor, FallbackId};
use rustle_targets::TargetSpecification;

/// One target's result in a multi-target build: a failure never discards
/// the other targets' binaries.
#[derive(Debug)]
pub struct TargetOutcome {
    /// The target.
    pub target: TargetSpecification,
    /// Its binary, or why there is none.
    pub result: Result<CompiledBinary, CompilationError>,
    /// Where it was built (an agent, or the `local` fallback); `None` when
    /// nothing could take it.
    pub executor: Option<Executor>,
    /// Why it went there: every placement decision the scheduler made for
    /// it, in order (empty without a fleet: everything builds locally).
    pub decisions: Vec<Decision>,
    /// The executors of the chain that were passed over before the one
    /// that built it, each with why (`docker: no Docker daemon answers ...`).
    pub passed_over: Vec<String>,
    /// Set when `target` was built instead of the target asked for, which
    /// no executor could build (`[cross_compilation.substitutes]`).
    pub substitute_for: Option<Substitution>,
}

/// A target asked for that no executor could build, replaced by the
/// compatible target the configuration names for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Substitution {
    /// The target asked for (e.g. a Windows host's `x86_64-pc-windows-msvc`).
    pub requested: String,
    /// Why nothing could build it.
    pub reason: String,
}

impl TargetOutcome {
    /// The progress event that says how this target ended and where it was
    /// built (`local` for this machine's toolchains, `agent NAME`).
    pub fn finished_event(&self) -> BuildEvent {
        let end = match &self.result {
            Ok(CompiledBinary { cached: Some(hit), .. }) => BuildEnd::Cached { store: hit.store.clone() },
            Ok(_) => BuildEnd::Validated,
            Err(error) => BuildEnd::Failed { reason: error.to_string() },
        };
        let built_on = match (&self.executor, &end) {
            (_, BuildEnd::Cached { .. }) | (None, _) => None,
            (Some(executor), _) if *executor == local_executor() => Some("local".to_owned()),
            (Some(executor), _) if *executor == docker_executor() => Some("docker".to_owned()),
            (Some(executor), _) => Some(executor.to_string()),
        };
        BuildEvent::Finished { triple: self.target.to_string(), built_on, end }
    }
}

/// A progress callback shared by the builds of one run.
pub type ProgressSink = Arc<dyn Fn(BuildEvent) + Send + Sync>;

/// The executor of builds made with this machine's toolchains.
pub fn local_executor() -> Executor {
    Executor::Fallback(FallbackId::local())
}

/// The executor of builds made in Docker on this machine.
pub fn docker_executor() -> Executor {
    Executor::Fallback(FallbackId("docker".into()))
}

//! [`BuildRequest`]: one build of one template for one target, whole. The
//! façade makes it, and the scheduler, the wire, the agent, the local
//! fallback and the engine are each given it as it is.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::optimization::CompilationOptimization;
use crate::spec::Target;
use crate::specification::{TargetSettings, TargetSpecification};

/// Which template a build is of: the package name plus a hash that tells
/// templates of the same name apart (see `rustle_engine::template`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TemplateId(pub String);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One build: the template, what the target is, how the user wants it built,
/// the overrides of the template's release profile, and how long it may
/// take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The template being built.
    pub template: TemplateId,
    /// What the target is (triple, glibc floor, custom spec).
    pub target: Target,
    /// Per-target features, rustflags and linker.
    pub settings: TargetSettings,
    /// Overrides of the template's release profile; unset fields keep it.
    pub optimization: CompilationOptimization,
    /// The longest the whole build may take, queueing included on a fleet.
    pub deadline: Duration,
    /// rustc incremental compilation for the template's own crates.
    pub incremental: bool,
    /// Whether the binary cache may answer it and keeps its binary.
    pub cache: CachePolicy,
}

/// Whether a build uses the binary cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Build, and store nothing (`--no-cache`, `cache_enabled = false`).
    Off,
    /// Answer from the cache when it has the binary; store what is built,
    /// keeping the store under `max_bytes`.
    Use {
        /// The store's size cap.
        max_bytes: u64,
    },
}

impl BuildRequest {
    /// The target's full name (with its glibc floor), which names the job,
    /// its output file and its row in every report.
    pub fn target_name(&self) -> String {
        self.target.triple_with_floor()
    }

    /// The target with its settings in the façade's form, as a finished
    /// binary or an outcome reports it.
    pub fn target_specification(&self) -> TargetSpecification {
        TargetSpecification::from_parts(self.target.clone(), self.settings.clone())
    }
}

//! The rustle-cross coordinator: the library rustle-deploy embeds to turn a
//! template into one verified binary per target, and the engine behind the
//! `rustle-cross` CLI.
//!
//! Start at [`CrossCompilationManager`]. The target model is re-exported as
//! [`targets`], the build engine as [`build`].

pub mod config;
pub mod fleet;
pub mod manager;
mod outcome;
pub mod progress_log;
pub mod shared_cache;

pub use config::{AgentEndpoint, ConfigError, CrossCompilationConfig, FleetConfig, TargetOverrides};
pub use manager::{CompatibilityReport, CrossCompilationError, CrossCompilationManager, ProgressSink, TargetOutcome};

/// The target model (`TargetSpecification`, `CompilationOptimization`, ...).
pub mod targets {
    pub use rustle_targets::*;
}

/// Target detection from inventories, facts and SSH probes.
pub mod detect {
    pub use rustle_detect::*;
}

/// The build engine (`CompiledBinary`, `GeneratedTemplate`, `ToolchainManager`, ...).
pub mod build {
    pub use rustle_engine::engine::{
        BuildEnd, BuildEvent, CompilationError, CompilationMetadata, CompiledBinary, TargetFailure,
    };
    pub use rustle_engine::runner::{RunnerError, RunnerPlan, run_binary};
    pub use rustle_engine::template::{GeneratedTemplate, TemplateSource};
    pub use rustle_engine::toolchain::{
        BuildPlan, LinkerPlan, MissingRequirement, RequirementKind, StdSource, TargetAvailability, Toolchain,
        ToolchainConfig, ToolchainError, ToolchainManager,
    };
    pub use rustle_engine::validate::{BinaryReport, ValidationError};
}

/// A template's C dependencies per target, before compiling (`CDependency`, `CSupply`).
pub mod c_dependencies {
    pub use rustle_engine::c_dependencies::*;
}

//! The coordinator's edge of the wire: domain types to the protocol's, and
//! nowhere else (the local fallback reports in the protocol's terms too, so
//! the scheduler hears every executor alike). The agent's inverse lives in `rustle_agent::wire`; the two
//! together are lossless (tested in `coordinator/tests/wire_round_trip.rs`).

use rustle_engine::engine::CompiledBinary;
use rustle_protocol::{
    BuildOutcome, BuildTarget, CLinking, JobId, JobOffer, Lto, OptLevel, OptimizationSettings,
    PanicStrategy as WirePanic, Sha256Digest, Strip, TemplateId as WireTemplateId,
};
use rustle_targets::{
    BuildRequest, CLibraryLinking, CachePolicy, CompilationOptimization, LtoMode, OptimizationLevel, PanicStrategy,
    StripMode, TemplateId,
};

/// The protocol's form of the optimization overrides: every field as set,
/// `None` where the template's profile is to be kept.
pub fn optimization_to_wire(optimization: &CompilationOptimization) -> OptimizationSettings {
    OptimizationSettings {
        opt_level: optimization.level.map(|level| match level {
            OptimizationLevel::Debug => OptLevel::O0,
            OptimizationLevel::O1 => OptLevel::O1,
            OptimizationLevel::O2 => OptLevel::O2,
            OptimizationLevel::Release => OptLevel::O3,
            OptimizationLevel::Size => OptLevel::S,
            OptimizationLevel::MinSize => OptLevel::Z,
        }),
        lto: optimization.lto.map(|lto| match lto {
            LtoMode::Off => Lto::Off,
            LtoMode::ThinLocal => Lto::ThinLocal,
            LtoMode::Thin => Lto::Thin,
            LtoMode::Fat => Lto::Fat,
        }),
        codegen_units: optimization.codegen_units,
        target_cpu: optimization.target_cpu.clone(),
        target_features: optimization.target_features.clone(),
        strip: optimization.strip.map(|strip| match strip {
            StripMode::None => Strip::None,
            StripMode::Debuginfo => Strip::Debuginfo,
            StripMode::Symbols => Strip::Symbols,
        }),
        panic: optimization.panic_strategy.map(|panic| match panic {
            PanicStrategy::Unwind => WirePanic::Unwind,
            PanicStrategy::Abort => WirePanic::Abort,
        }),
    }
}

/// The protocol's form of a target: its full name (with the glibc floor)
/// and its per-target settings. Custom target-spec files are never offered
/// to agents (no agent reports them), so their path does not travel.
/// The Docker image is this machine's executor's business and stays here.
pub fn target_to_wire(request: &BuildRequest) -> BuildTarget {
    BuildTarget {
        name: request.target_name(),
        features: request.settings.features.clone(),
        rustflags: request.settings.rustflags.clone(),
        linker: request.settings.linker.clone(),
        c_libraries: match request.settings.c_libraries {
            CLibraryLinking::Static => CLinking::Static,
            CLibraryLinking::Dynamic => CLinking::Dynamic,
        },
    }
}

/// The protocol's name of a template.
pub fn template_id_to_wire(template: &TemplateId) -> WireTemplateId {
    WireTemplateId(template.0.clone())
}

/// The offer of `request` to an agent as job `job`, with `toolchain` (empty:
/// the agent's choice) and `deadline_secs` left of the job's deadline.
pub fn offer_of(job: JobId, request: &BuildRequest, toolchain: Option<&str>, deadline_secs: u64) -> JobOffer {
    JobOffer {
        job,
        template_id: template_id_to_wire(&request.template),
        target: target_to_wire(request),
        toolchain: toolchain.unwrap_or_default().to_owned(),
        optimization: optimization_to_wire(&request.optimization),
        deadline_secs,
        use_cache: matches!(request.cache, CachePolicy::Use { .. }),
    }
}

/// A successful local build in the scheduler's (the protocol's) terms. The engine already hashed the binary; its checksum is reused.
pub fn success_of(binary: &CompiledBinary) -> BuildOutcome {
    BuildOutcome::Success {
        checksum: Sha256Digest::from_hex(&binary.checksum).unwrap_or_else(|| Sha256Digest::of(&binary.binary_data)),
        size: binary.size,
        compile_time_ms: u64::try_from(binary.compilation_time.as_millis()).unwrap_or(u64::MAX),
        toolchain: binary.metadata.toolchain.clone(),
        rustc_version: binary.metadata.rustc_version.clone(),
        cargo_version: binary.metadata.cargo_version.clone(),
        compilation_flags: binary.metadata.compilation_flags.clone(),
        from_cache: binary.cached.is_some(),
    }
}

//! The agent's edge of the wire: the protocol's types to the domain's (and
//! a build's result back), and nowhere else. The coordinator's inverse
//! lives in `rustle_cross::fleet::wire`.

use std::time::Duration;

use rustle_engine::engine::{BuildRequest, CompilationError, CompiledBinary, TargetFailure};
use rustle_protocol::{
    BuildOutcome, BuildTarget, CLinking, JobOffer, Lto, OptLevel, OptimizationSettings, PanicStrategy as WirePanic,
    Sha256Digest, Strip,
};
use rustle_targets::{
    CLibraryLinking, CachePolicy, CompilationOptimization, LtoMode, OptimizationLevel, PanicStrategy, StripMode,
    Target, TargetError, TargetSettings, TemplateId,
};

/// The optimization overrides an offer carries, unchanged.
pub fn optimization_from_wire(settings: &OptimizationSettings) -> CompilationOptimization {
    CompilationOptimization {
        level: settings.opt_level.map(|level| match level {
            OptLevel::O0 => OptimizationLevel::Debug,
            OptLevel::O1 => OptimizationLevel::O1,
            OptLevel::O2 => OptimizationLevel::O2,
            OptLevel::O3 => OptimizationLevel::Release,
            OptLevel::S => OptimizationLevel::Size,
            OptLevel::Z => OptimizationLevel::MinSize,
        }),
        lto: settings.lto.map(|lto| match lto {
            Lto::Off => LtoMode::Off,
            Lto::ThinLocal => LtoMode::ThinLocal,
            Lto::Thin => LtoMode::Thin,
            Lto::Fat => LtoMode::Fat,
        }),
        codegen_units: settings.codegen_units,
        target_cpu: settings.target_cpu.clone(),
        target_features: settings.target_features.clone(),
        strip: settings.strip.map(|strip| match strip {
            Strip::None => StripMode::None,
            Strip::Debuginfo => StripMode::Debuginfo,
            Strip::Symbols => StripMode::Symbols,
        }),
        panic_strategy: settings.panic.map(|panic| match panic {
            WirePanic::Unwind => PanicStrategy::Unwind,
            WirePanic::Abort => PanicStrategy::Abort,
        }),
    }
}

/// The target an offer names, with its settings: parsed exactly as the
/// coordinator's was (so a glibc floor is kept), or why it cannot be.
pub fn target_from_wire(target: &BuildTarget) -> Result<(Target, TargetSettings), TargetError> {
    let settings = TargetSettings {
        features: target.features.clone(),
        rustflags: target.rustflags.clone(),
        linker: target.linker.clone(),
        // Docker images are the coordinator's own executor; agents build natively.
        docker_image: None,
        c_libraries: match target.c_libraries {
            CLinking::Static => CLibraryLinking::Static,
            CLinking::Dynamic => CLibraryLinking::Dynamic,
        },
    };
    Ok((Target::from_triple(&target.name)?, settings))
}

/// What the engine is asked by an offer, for the template the offer's
/// source unpacked to here: its whole target, its overrides, its deadline
/// (`default_deadline` when it gives none), and whether this agent's binary
/// cache (capped at `cache_max_bytes`) may answer.
pub fn request_from_offer(
    offer: &JobOffer,
    template: TemplateId,
    default_deadline: Duration,
    cache_max_bytes: u64,
) -> Result<BuildRequest, TargetError> {
    let deadline = if offer.deadline_secs == 0 { default_deadline } else { Duration::from_secs(offer.deadline_secs) };
    let (target, settings) = target_from_wire(&offer.target)?;
    Ok(BuildRequest {
        template,
        target,
        settings,
        optimization: optimization_from_wire(&offer.optimization),
        deadline,
        incremental: true,
        cache: if offer.use_cache { CachePolicy::Use { max_bytes: cache_max_bytes } } else { CachePolicy::Off },
    })
}

/// A failed build as the coordinator sees it: the template's fault (never
/// retried elsewhere), or the machine's (retried elsewhere when it may
/// succeed there).
pub fn outcome_of_failure(error: CompilationError) -> BuildOutcome {
    match error {
        CompilationError::Target { kind: TargetFailure::CompileFailed { diagnostics }, .. } => {
            BuildOutcome::CompileFailed { diagnostics }
        }
        error @ CompilationError::Template(_) => BuildOutcome::CompileFailed { diagnostics: error.to_string() },
        error @ CompilationError::Target { kind: TargetFailure::Optimization(_), .. } => {
            BuildOutcome::InfrastructureFailure { reason: error.to_string(), retryable: false }
        }
        error => BuildOutcome::InfrastructureFailure { reason: error.to_string(), retryable: true },
    }
}

/// The binary's SHA-256 in the protocol's form. The engine hashed it off
/// the async workers; hashing it again here would block a worker for
/// seconds under emulation, so its checksum is reused.
pub fn digest_of(binary: &CompiledBinary) -> Sha256Digest {
    Sha256Digest::from_hex(&binary.checksum).unwrap_or_else(|| Sha256Digest::of(&binary.binary_data))
}

/// A successful build as the coordinator hears of it (the binary itself
/// follows on its own stream, under the same [`digest_of`]).
pub fn success_of(binary: &CompiledBinary) -> BuildOutcome {
    BuildOutcome::Success {
        checksum: digest_of(binary),
        size: binary.size,
        compile_time_ms: u64::try_from(binary.compilation_time.as_millis()).unwrap_or(u64::MAX),
        toolchain: binary.metadata.toolchain.clone(),
        rustc_version: binary.metadata.rustc_version.clone(),
        cargo_version: binary.metadata.cargo_version.clone(),
        compilation_flags: binary.metadata.compilation_flags.clone(),
        from_cache: binary.cached.is_some(),
    }
}

//! The target model of rustle-cross: what a target triple means, what it takes
//! to build for it here, and how optimization settings become cargo settings.
//!
//! This crate is pure: no processes, no file system beyond reading a custom
//! target-spec JSON file, no network. Everything that runs programs lives in
//! `rustle-engine`.

mod arch;
mod base_system;
mod c_libraries;
mod optimization;
mod packages;
mod request;
mod rules;
mod spec;
mod specification;

pub use arch::{ARCHITECTURE_NAMES, ArchitectureNames};
pub use base_system::{BASE_SYSTEMS, BaseSystem, NameCase, base_system_of};
pub use c_libraries::{
    C_COMPILER_ONLY, CLibrary, CLibraryPlan, CNeed, DEBIAN_MULTIARCH, LibraryEnv, OPENSSL, PLATFORM_SDK_CRATES,
    ResolvedPackage, SETUP_C_LIBRARIES, SYS_CRATES, SourceRecipe, SysCrate, ZLIB, c_needs, multiarch_gnu_prefix,
    multiarch_library_env,
};
pub use optimization::{
    CompilationOptimization, LtoMode, OptimizationError, OptimizationLevel, PanicStrategy, StripMode,
};
pub use packages::{
    BUILD_HOST_LINE, BUILD_HOST_PACKAGES, C_LIBRARIES_LINE, MULTIARCH_STD_PACKAGE, debian_packages,
    debian_packages_file,
};
pub use request::{BuildRequest, CachePolicy, TemplateId};
pub use rules::{LinkerRoute, RULES, RunnerRoute, TargetRule, rule_for, rule_for_build};
pub use spec::{Architecture, Endianness, GlibcVersion, LibcType, OsFamily, Target, TargetError, known_triples};
pub use specification::{CLibraryLinking, TargetSettings, TargetSpecification};

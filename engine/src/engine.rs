//! The local build engine: runs cargo for one (template, target) with the
//! toolchain plan, follows its JSON messages for progress and diagnostics,
//! and returns a validated `CompiledBinary` or a typed failure.
//!
//! Each (template, target, toolchain) has its own persistent target
//! directory under the cache, so a rebuild only recompiles what changed and
//! parallel builds of different targets never wait on each other's lock.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use rustle_targets::BuildRequest;
use rustle_targets::{
    CLibraryLinking, CLibraryPlan, CachePolicy, OptimizationError, OsFamily, StripMode, Target, TargetSettings,
    TargetSpecification, rule_for,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::c_library_source::{SourcePrefix, TargetCCompiler, ensure_built};
use crate::cache::{CacheHit, CacheKeyInputs, CompilationCache};
use crate::shared_cache::SharedTier;
use crate::std_sysroot::{StdSysroot, SysrootBuild};
use crate::template::{CargoLock, PreparedTemplate, hex};
use crate::toolchain::{BuildPlan, LinkerPlan, StdSource, ToolchainError, ToolchainManager, cargo_home, last_lines};
use crate::validate::{BinaryReport, ValidationError, validate_binary};
use rustle_process::{ProcessError, ProcessSpec};

/// What a finished binary was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompilationMetadata {
    /// The name of the toolchain that built it (`stable`, `system-rustc-web`, ...).
    pub toolchain: String,
    /// `rustc -V` of the toolchain actually used.
    pub rustc_version: String,
    /// `cargo -V` of the toolchain actually used.
    pub cargo_version: String,
    /// The cargo arguments and rustc flags of the build.
    pub compilation_flags: Vec<String>,
    /// `name@version` of every dependency in Cargo.lock.
    pub dependencies: Vec<String>,
    /// Cargo features enabled.
    pub features_used: Vec<String>,
    /// What each C library of the template's `-sys` crates was linked from,
    /// and how (`OpenSSL (openssl-sys) linked statically from ...`).
    #[serde(default)]
    pub c_libraries: Vec<String>,
}

/// A built, validated binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledBinary {
    /// The target it was built for.
    pub target: TargetSpecification,
    /// The binary's file name (`NAME` or `NAME.exe`).
    pub file_name: String,
    /// The binary.
    #[serde(skip)]
    pub binary_data: Vec<u8>,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the binary, lower-case hex.
    pub checksum: String,
    /// Wall time of the build.
    pub compilation_time: Duration,
    /// What it was built with.
    pub metadata: CompilationMetadata,
    /// What its header says (format, machine, glibc needed).
    pub validation: BinaryReport,
    /// Where the binary cache had it from, when it was not built now.
    pub cached: Option<CacheHit>,
}

/// Progress of one build, for progress bars and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// cargo started.
    Started {
        /// The target.
        triple: String,
        /// Units expected (from the previous build of this target dir, or
        /// the lock file when there is none).
        expected_units: u64,
    },
    /// cargo finished a unit (a crate or build script).
    Progress {
        /// The target.
        triple: String,
        /// Units done.
        done: u64,
        /// Units expected; grows if cargo does more than expected.
        total: u64,
        /// The crate just finished.
        unit: String,
    },
    /// A line cargo wrote to stderr (status lines, warnings, errors).
    Log {
        /// The target.
        triple: String,
        /// The line, without its newline.
        line: String,
    },
    /// What the user should hear about where and how the target is built,
    /// apart from cargo's own lines: an image being built, an executor
    /// passed over and why. Every progress view shows it.
    Note {
        /// The target.
        triple: String,
        /// The line.
        line: String,
    },
    /// The target's build is over: sent once per target by the façade
    /// (`rustle-cross`'s manager), which alone knows every way a target
    /// ends (built here, by an agent, from a cache, or not at all); the
    /// engine itself never sends it.
    Finished {
        /// The target.
        triple: String,
        /// Where it was built (`local`, `agent NAME`); `None` when it was
        /// not built (a cache hit, or nothing could take it).
        built_on: Option<String>,
        /// How it ended.
        end: BuildEnd,
    },
}

/// How one target's build ended, as progress reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEnd {
    /// Built, and its header checked against the target.
    Validated,
    /// Served by the binary cache (`local` or `shared`).
    Cached {
        /// Which store had it.
        store: String,
    },
    /// No binary, and why (the error's message).
    Failed {
        /// The error's message.
        reason: String,
    },
}

/// Why a build did not produce a binary: one target's failure (the target
/// named once, then what went wrong), or a failure of the whole run. A
/// compile error in the template is data about the template
/// (`CompileFailed`), never retried elsewhere; everything else is about the
/// build environment.
#[derive(Debug, thiserror::Error)]
pub enum CompilationError {
    /// One target failed.
    #[error("{triple}: {kind}")]
    Target {
        /// The target's full name (with its glibc floor).
        triple: String,
        /// What went wrong.
        #[source]
        kind: TargetFailure,
    },
    /// The build fleet could not be used at all (its configuration, its
    /// certificates, packing the template for it): about the whole run,
    /// not about any one target.
    #[error(
        "failed to use the build fleet: {reason}; fix [cross_compilation.fleet] (agents, ca, cert, key), or remove it to build on this machine only"
    )]
    Fleet {
        /// What went wrong.
        reason: String,
    },
    /// The template itself is unusable.
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
}

/// What went wrong building one target (its name is in
/// [`CompilationError::Target`]).
#[derive(Debug, thiserror::Error)]
pub enum TargetFailure {
    /// The compiler rejected the code.
    #[error("the template does not compile:\n{diagnostics}")]
    CompileFailed {
        /// The compiler's rendered error messages.
        diagnostics: String,
    },
    /// The linker failed (missing libraries or a broken cross toolchain).
    #[error("linking failed (check the cross toolchain: `rustle-cross doctor`):\n{diagnostics}")]
    LinkFailed {
        /// The linker's messages as rustc rendered them.
        diagnostics: String,
    },
    /// cargo failed before or around compiling (resolution, network, a
    /// build script, a missing tool).
    #[error("cargo failed ({status}): {stderr}")]
    CargoFailed {
        /// How cargo exited.
        status: String,
        /// The end of cargo's error output.
        stderr: String,
    },
    /// The build ran past its deadline and was killed.
    #[error("the build did not finish within {}s and was killed (raise compilation_timeout_secs or RUSTLE_CROSS_COMPILE_TIMEOUT; in Docker, container_timeout_secs bounds it too)", .timeout.as_secs())]
    Timeout {
        /// The deadline.
        timeout: Duration,
    },
    /// cargo could not be run at all.
    #[error(transparent)]
    Process(ProcessError),
    /// cargo reported success but no binary for the template.
    #[error("cargo finished but produced no binary named `{bin}`")]
    NoArtifact {
        /// The binary expected.
        bin: String,
    },
    /// The binary is not what the target needs.
    #[error(transparent)]
    Invalid(ValidationError),
    /// An optimization setting does not apply to the target.
    #[error(transparent)]
    Optimization(OptimizationError),
    /// Reading or writing build files failed.
    #[error("failed to access {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The target cannot be built here (or by any executor that was tried).
    #[error("{reason}")]
    Unavailable {
        /// What is missing, with the way to install it.
        reason: String,
    },
}

impl CompilationError {
    /// `triple` failed with `kind`.
    pub fn target(triple: impl Into<String>, kind: TargetFailure) -> Self {
        Self::Target { triple: triple.into(), kind }
    }

    /// `triple` cannot be built, for `reason`.
    pub fn unavailable(triple: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::target(triple, TargetFailure::Unavailable { reason: reason.into() })
    }

    /// What went wrong for the target, when one target failed.
    pub fn failure(&self) -> Option<&TargetFailure> {
        match self {
            Self::Target { kind, .. } => Some(kind),
            Self::Fleet { .. } | Self::Template(_) => None,
        }
    }

    /// A failure of the template's code: retrying elsewhere cannot help.
    pub fn is_compile_failure(&self) -> bool {
        matches!(self, Self::Target { kind: TargetFailure::CompileFailed { .. }, .. } | Self::Template(_))
    }
}

/// Builds `request` for `template`: plans it with `toolchains`, runs cargo
/// in its persistent target dir under `cache_dir`, and validates the
/// binary; with the request's cache policy, answers it from the binary
/// cache under `cache_dir` (and `shared` behind it) and stores what it
/// built. The one entry point every executor calls.
pub async fn run(
    request: &BuildRequest,
    template: &PreparedTemplate,
    toolchains: &ToolchainManager,
    cache_dir: &Path,
    shared: Option<&SharedTier>,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<CompiledBinary, CompilationError> {
    if request.template != template.id {
        return Err(CompilationError::Template(crate::template::TemplateError::NotThisRequest {
            requested: request.template.clone(),
            prepared: template.id.clone(),
        }));
    }
    let plan = plan(toolchains, &request.target, &request.settings).await?;
    let job = BuildJob::new(template, &plan, request, cache_dir);
    let CachePolicy::Use { max_bytes } = request.cache else { return build(&job, on_event).await };
    let store = CompilationCache::open(cache_dir, max_bytes).with_shared(shared.cloned());
    let inputs = match cache_lookup(&job, &store, on_event).await {
        Ok(found) => found,
        Err(hit) => return Ok(*hit),
    };
    let binary = build(&job, on_event).await?;
    if let Some(inputs) = inputs {
        cache_store(&store, inputs, &binary, "local", on_event).await;
    }
    Ok(binary)
}

/// Looks `job` up in `store`: `Err(binary)` on a verified hit, else the key
/// inputs to store the build under (`None` when they cannot be computed:
/// the build then runs uncached, with a warning). Whatever goes wrong in
/// the cache is a warning (logged and sent as the target's log line) and a
/// miss.
pub async fn cache_lookup(
    job: &BuildJob<'_>,
    store: &CompilationCache,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<Option<CacheKeyInputs>, Box<CompiledBinary>> {
    let warn = warn_for(job.triple(), on_event);
    let inputs = match job.cargo_command() {
        Ok(command) => CacheKeyInputs::of(job, &command).await,
        Err(error) => Err(std::io::Error::other(error.to_string())),
    };
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(error) => {
            warn(format!("binary cache skipped: its key cannot be computed: {error}"));
            return Ok(None);
        }
    };
    match store.lookup(&inputs.key(), job.request, &warn).await {
        Some(binary) => Err(Box::new(binary)),
        None => Ok(Some(inputs)),
    }
}

/// Stores `binary` under `inputs`' key in `store`, built by `built_by`; a
/// failure to store is a warning, never a failed build.
pub async fn cache_store(
    store: &CompilationCache,
    inputs: CacheKeyInputs,
    binary: &CompiledBinary,
    built_by: &str,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) {
    let warn = warn_for(binary.target.to_string(), on_event);
    store.store(&inputs, binary, built_by, &warn).await;
}

/// A warning about `triple`'s build: logged, and sent as its log line.
fn warn_for(triple: String, on_event: &(dyn Fn(BuildEvent) + Send + Sync)) -> impl Fn(String) + Send + Sync + '_ {
    move |line: String| {
        tracing::warn!("{triple}: {line}");
        on_event(BuildEvent::Log { triple: triple.clone(), line });
    }
}

/// The plan for `target`, or why this machine cannot build it (the one
/// place a toolchain error becomes a build error).
pub async fn plan(
    toolchains: &ToolchainManager,
    target: &Target,
    settings: &TargetSettings,
) -> Result<BuildPlan, CompilationError> {
    toolchains.plan(target, settings).await.map_err(|error| {
        let reason = match error {
            ToolchainError::Unavailable { reason, .. } => reason,
            other => other.to_string(),
        };
        CompilationError::unavailable(target.to_string(), reason)
    })
}

/// One planned build: which template, with which toolchain plan, for which
/// request, in which cache.
#[derive(Debug, Clone)]
pub struct BuildJob<'a> {
    /// The template.
    template: &'a PreparedTemplate,
    /// The toolchain plan for the target.
    plan: &'a BuildPlan,
    /// What is asked for.
    request: &'a BuildRequest,
    /// The cache root: target dirs live under `cache_dir/targets`.
    cache_dir: &'a Path,
    /// `cache_dir/targets/<dependency key>/<triple>/<toolchain id>`, or
    /// the member of its pool [`build`] took ([`TARGET_DIR_POOL`]).
    target_dir: PathBuf,
}

/// How many target dirs one (dependency set, target, toolchain) may have:
/// builds of it that run at once take one each (member 0 is
/// `<toolchain id>`, member k `<toolchain id>.k`), so two plans of
/// rustle-deploy or two jobs on an agent never wait for each other's cargo
/// while their dirs are cold.
pub const TARGET_DIR_POOL: usize = 4;

/// How long a build waits for a warm member of its pool that another build
/// holds before it takes a cold member of its own: a warm dir rebuilds
/// only the template's own crate, a cold one everything.
const WARM_TARGET_DIR_WAIT: Duration = Duration::from_secs(60);

impl<'a> BuildJob<'a> {
    /// The build of `request` for `template` with `plan`, in `cache_dir`.
    pub fn new(
        template: &'a PreparedTemplate,
        plan: &'a BuildPlan,
        request: &'a BuildRequest,
        cache_dir: &'a Path,
    ) -> Self {
        let target_dir = cache_dir
            .join("targets")
            .join(template.dependency_key())
            .join(plan.target.triple_with_floor())
            .join(plan.toolchain.id());
        Self { template, plan, request, cache_dir, target_dir }
    }

    fn triple(&self) -> String {
        self.plan.target.to_string()
    }

    /// What is asked for.
    pub fn request(&self) -> &BuildRequest {
        self.request
    }

    /// The persistent target directory of this (dependency set, target,
    /// toolchain), shared by every template with the same dependencies
    /// ([`PreparedTemplate::dependency_key`]); [`build`] holds its lock
    /// while it runs.
    pub fn target_dir(&self) -> PathBuf {
        self.target_dir.clone()
    }

    /// Member `k` of this job's target-dir pool ([`TARGET_DIR_POOL`]).
    fn pool_member(&self, k: usize) -> PathBuf {
        let first = &self.target_dir;
        if k == 0 {
            return first.clone();
        }
        let mut name = first.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{k}"));
        first.with_file_name(name)
    }

    /// This job building in `target_dir` (a member of its pool).
    fn in_target_dir(&self, target_dir: PathBuf) -> Self {
        Self { target_dir, ..self.clone() }
    }

    /// The exact cargo invocation this build runs (what `--print-command`
    /// shows and what the benchmark times as "plain cargo").
    pub fn cargo_command(&self) -> Result<ProcessSpec, CompilationError> {
        let plan = self.plan;
        let target = &plan.target;
        let settings = &self.request.settings;
        let rule = rule_for(target);
        let toolchain = &plan.toolchain;
        let shim = self.toolchain_shim()?;
        let asked_strip = self.asked_strip();
        let no_objcopy = self.lacks_rust_objcopy();
        let strip_after = self.strip_after();
        if no_objcopy && asked_strip.is_some_and(|s| s != StripMode::None) && strip_after.is_none() {
            return Err(CompilationError::target(
                self.triple(),
                TargetFailure::Unavailable {
                    reason: format!(
                        "stripping a macOS binary needs rust-objcopy, which toolchain `{}` lacks, or llvm-strip, which is not on PATH either: apt-get install llvm (scripts/setup.sh does), build without --strip, or use a toolchain that ships llvm-tools",
                        toolchain.name,
                    ),
                },
            ));
        }

        let (program, mut args): (PathBuf, Vec<String>) = match &plan.linker {
            LinkerPlan::Zig { cargo_zigbuild, .. } => {
                (cargo_zigbuild.clone(), vec!["rustc".into(), "--target".into(), target.triple_with_floor()])
            }
            _ => (toolchain.cargo.clone(), vec!["rustc".into(), "--target".into(), target.cargo_target()]),
        };
        args.extend(
            [
                "--release",
                "--message-format=json-render-diagnostics",
                "--manifest-path",
                &self.template.manifest.display().to_string(),
                "--bin",
                &self.template.bin_name,
            ]
            .map(str::to_owned),
        );
        if !settings.features.is_empty() {
            args.push("--features".into());
            args.push(settings.features.join(","));
        }
        args.extend(self.template.cargo_args.iter().cloned());
        // `cargo rustc`: what follows `--` is given to the template's own
        // crate only. Its directory's name goes there, not into the
        // target's RUSTFLAGS, which every dependency is fingerprinted by:
        // templates in other directories then share the compiled dependencies.
        let template_remap = self.path_remaps().into_iter().find(|remap| remap.from == self.template.dir);
        if let Some(remap) = template_remap {
            if !args.iter().any(|a| a == "--") {
                args.push("--".into());
            }
            args.push(remap.flag());
        }

        let mut rustflags = self.target_rustflags()?;

        // Reproducible builds. First, so that a caller's own
        // `--remap-path-prefix` or `-Cdlltool` (later) wins.
        // cargo splits `<T>_RUSTFLAGS` at whitespace: a flag naming such a
        // path cannot be given, and binaries built from it keep the path.
        let passable = |path: &Path| {
            let ok = !path.to_string_lossy().contains(char::is_whitespace);
            if !ok {
                tracing::warn!(
                    "{}: {} contains whitespace and cannot be given to rustc; binaries built from it are not reproducible",
                    self.triple(),
                    path.display()
                );
            }
            ok
        };
        #[cfg_attr(not(unix), expect(unused_mut, reason = "only the Unix dlltool wrapper adds to it"))]
        let mut reproducible: Vec<String> = self
            .path_remaps()
            .iter()
            .filter(|remap| remap.from != self.template.dir && passable(&remap.from))
            .map(PathRemap::flag)
            .collect();
        // The wrapper is a shell script: on a host without one, dlltool runs as it is.
        #[cfg(unix)]
        if let Some(dlltool) = rule.linker.dlltool() {
            let wrapper = self.dlltool_wrapper(&dlltool)?;
            if passable(&wrapper) {
                reproducible.push(format!("-Cdlltool={}", wrapper.display()));
            }
        }
        // std from the sysroot built once for the target, not from source
        // in every target dir.
        if let Some(sysroot) = self.std_sysroot()? {
            reproducible.push(sysroot.flag());
        }
        rustflags.splice(0..0, reproducible);

        let prefix = target.cargo_env_prefix();
        let mut path = OsString::from(&shim);
        path.push(if cfg!(windows) { ";" } else { ":" });
        path.push(std::env::var_os("PATH").unwrap_or_default());
        let mut spec = ProcessSpec::new(program)
            .args(args)
            .current_dir(&self.template.dir)
            .timeout(self.request.deadline)
            // The build is defined by the plan, not by whatever the caller's
            // shell happens to export.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env("PATH", path)
            .env("RUSTC", &toolchain.rustc)
            .env("CARGO_TARGET_DIR", self.target_dir())
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_PROFILE_RELEASE_INCREMENTAL", self.request.incremental.to_string())
            .env("SOURCE_DATE_EPOCH", source_date_epoch())
            .env(format!("{prefix}_RUSTFLAGS"), rustflags.join(" "));
        for (key, value) in self.request.optimization.profile_env() {
            spec = spec.env(key, value);
        }
        if no_objcopy && asked_strip.is_none() {
            // Nobody asked for stripping, but cargo's implicit release
            // default (`strip = "debuginfo"`) runs rust-objcopy on Apple
            // targets, which this toolchain lacks: keep the debug info.
            spec = spec.env("CARGO_PROFILE_RELEASE_STRIP", "none");
        }
        if let Some((mode, _)) = &strip_after {
            // rustc cannot strip here: it links unstripped and the engine
            // strips the binary after (`strip_macho`). The variable is
            // not cargo's business, but it keeps this build's cache key
            // apart from the unstripped one's.
            spec = spec.env("CARGO_PROFILE_RELEASE_STRIP", "none").env("RUSTLE_STRIP_AFTER_LINK", mode.as_str());
        }
        for (key, value) in rule.env {
            spec = spec.env(key, value);
        }
        if let LinkerPlan::Cross { linker, cc, ar } = &plan.linker {
            let suffix = target.cc_env_suffix();
            spec = spec.env(format!("{prefix}_LINKER"), linker).env(format!("CC_{suffix}"), cc);
            if let Some(ar) = ar {
                spec = spec.env(format!("AR_{suffix}"), ar);
            }
        }
        for (key, value) in self.c_library_plan().env {
            spec = spec.env(key, value);
        }
        Ok(spec)
    }

    /// The target's rustflags from the rules table, the settings and the
    /// optimization overrides (`-Ctarget-cpu`): what its std is built with
    /// too. Without the ones that only name directories.
    fn target_rustflags(&self) -> Result<Vec<String>, CompilationError> {
        let target = &self.plan.target;
        let mut rustflags: Vec<String> = rule_for(target).rustflags.iter().map(|s| (*s).to_owned()).collect();
        rustflags.extend(self.request.settings.rustflags.iter().cloned());
        rustflags.extend(
            self.request
                .optimization
                .rustflags(target, &self.plan.toolchain.host)
                .map_err(|source| CompilationError::target(self.triple(), TargetFailure::Optimization(source)))?,
        );
        Ok(rustflags)
    }

    /// The rules table's variables for the target.
    fn target_env(&self) -> Vec<(String, String)> {
        rule_for(&self.plan.target).env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The sysroot this build takes std from, when the target has no
    /// prebuilt std: built once per (toolchain, target, rustflags) by
    /// [`build`] before cargo runs, shared by every template.
    pub fn std_sysroot(&self) -> Result<Option<StdSysroot>, CompilationError> {
        if self.plan.std != StdSource::BuildStd {
            return Ok(None);
        }
        let plan = self.plan;
        StdSysroot::new(self.cache_dir, &plan.toolchain, &plan.target, &self.target_rustflags()?, &self.target_env())
            .map(Some)
            .map_err(|source| {
                let path = plan.target.custom_spec.clone().unwrap_or_default();
                CompilationError::target(self.triple(), TargetFailure::Io { path, source })
            })
    }

    /// The variables that point the template's `-sys` crates at their C
    /// library for the target, and a line per library saying what is linked
    /// how: this machine's multiarch copy (Debian's `libssl-dev:arm64` under
    /// `/usr/lib/aarch64-linux-gnu`), else a prefix built here from source
    /// ([`source_prefixes`](Self::source_prefixes), which [`build`] makes
    /// sure of first). Static unless the settings say `dynamic`, so the
    /// binary needs nothing more on its host; a library built here has only
    /// static archives. Part of the command, so of the binary cache key too:
    /// the variables follow the Cargo.lock, which lists every platform's
    /// crates, so the key needs no resolved graph (a variable for a crate the
    /// target's graph lacks is read by nothing). The lines name their crate,
    /// for [`c_library_lines`](Self::c_library_lines).
    pub fn c_library_plan(&self) -> CLibraryPlan {
        let target = &self.plan.target;
        let link_static = self.request.settings.c_libraries == CLibraryLinking::Static;
        let names = self.lock_package_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let CLibraryPlan { mut env, linked: mut said } = match rustle_targets::multiarch_gnu_prefix(target) {
            Some(gnu_prefix) => {
                rustle_targets::multiarch_library_env(&names, target, gnu_prefix, Path::new("/usr/lib"), link_static)
            }
            None => CLibraryPlan::default(),
        };
        for (crate_name, prefix) in self.source_prefixes() {
            // Only static archives are built: static whatever the settings say.
            env.extend(prefix.library.env.for_target(target, &prefix.lib_dir(), &prefix.include_dir(), true));
            said.push((
                crate_name,
                format!(
                    "{} ({crate_name}) linked statically from {} {}, built here for {} ({})",
                    prefix.library.name,
                    prefix.recipe.crate_name,
                    prefix.recipe.version,
                    target.triple,
                    prefix.dir.display()
                ),
            ));
        }
        CLibraryPlan { env, linked: said }
    }

    /// What was linked how, for the crates of `graph` (the target's
    /// resolved graph; `None`: every crate of the Cargo.lock).
    pub fn c_library_lines(&self, graph: Option<&[String]>) -> Vec<String> {
        let in_graph = |name: &str| graph.is_none_or(|graph| graph.iter().any(|g| g == name));
        self.c_library_plan().linked.into_iter().filter(|(name, _)| in_graph(name)).map(|(_, line)| line).collect()
    }

    /// The C libraries of the template's `-sys` crates that no package on
    /// this machine supplies for the target and that rustle-cross builds
    /// from source instead (OpenSSL for musl): one prefix each under the
    /// cache dir, shared by every template built for the target; each with
    /// the `-sys` crate of the Cargo.lock that links it.
    pub fn source_prefixes(&self) -> Vec<(&'static str, SourcePrefix)> {
        let target = &self.plan.target;
        if !matches!(target.os_family, OsFamily::Linux | OsFamily::Windows) || target.triple.ends_with("-msvc") {
            return Vec::new();
        }
        let names = self.lock_package_names();
        let multiarch_dir = rustle_targets::multiarch_gnu_prefix(target)
            .and_then(|p| rustle_targets::DEBIAN_MULTIARCH.iter().find(|(prefix, _, _)| *prefix == p))
            .map(|(_, _, dir)| Path::new("/usr/lib").join(dir));
        rustle_targets::SYS_CRATES
            .iter()
            .filter(|row| names.iter().any(|name| name == row.crate_name))
            .filter(|row| {
                // A multiarch copy wins.
                !multiarch_dir.as_ref().is_some_and(|dir| row.library.has_static_archives_in(dir))
            })
            .filter_map(|row| Some((row.crate_name, SourcePrefix::new(self.cache_dir, target, row.library)?)))
            .collect()
    }

    /// The strip mode asked for: the override, else the template's own
    /// profile; `None` when neither says (cargo's own default then applies).
    fn asked_strip(&self) -> Option<StripMode> {
        self.request.optimization.strip.or(self.template.release_strip)
    }

    /// A macOS target whose toolchain has no rust-objcopy, which rustc
    /// strips Mach-O binaries with (Debian's rustc ships none).
    fn lacks_rust_objcopy(&self) -> bool {
        let toolchain = &self.plan.toolchain;
        let objcopy = toolchain.sysroot.join("lib/rustlib").join(&toolchain.host).join("bin/rust-objcopy");
        self.plan.target.os_family == OsFamily::MacOS && !objcopy.is_file()
    }

    /// When rustc cannot strip a macOS binary that is asked to be
    /// stripped: the mode, and the llvm-strip (Debian's LLVM) that strips it
    /// after the link instead.
    pub fn strip_after(&self) -> Option<(StripMode, PathBuf)> {
        let mode = self.asked_strip().filter(|s| *s != StripMode::None)?;
        if !self.lacks_rust_objcopy() {
            return None;
        }
        let tool = which::which("llvm-strip")
            .ok()
            .or_else(|| (11..=30).rev().find_map(|version| which::which(format!("llvm-strip-{version}")).ok()))?;
        Some((mode, tool))
    }

    /// The package names of the template's Cargo.lock.
    fn lock_package_names(&self) -> Vec<String> {
        lock_packages(self.template.lock_file().as_deref())
            .into_iter()
            .filter_map(|p| p.split_once('@').map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// The directories of this machine whose paths a build can write into
    /// a binary (panic locations, `file!()`, debug info, code generated in
    /// `OUT_DIR`), each with the fixed name it gets instead: CARGO_HOME
    /// (registry and git sources), the target dir, when std is built from
    /// source the toolchain's rust-src, and the template. rustc applies the
    /// last `--remap-path-prefix` that matches, so a directory inside
    /// another comes after it. The template's is given to its own crate
    /// only, in `cargo rustc`'s trailing arguments, which rustc reads
    /// before the target's RUSTFLAGS: so the template may lie inside none of
    /// the others (a generated one lies in the cache, not in a target dir).
    /// The cache key writes these directories, and the cache dir, as
    /// placeholders ([`key_placeholders`](Self::key_placeholders)).
    pub fn path_remaps(&self) -> Vec<PathRemap> {
        let mut remaps = vec![
            PathRemap { from: cargo_home(), to: "/rustle/cargo".into(), placeholder: "<cargo-home>" },
            PathRemap { from: self.target_dir.clone(), to: "/rustle/target".into(), placeholder: "<target-dir>" },
        ];
        let toolchain = &self.plan.toolchain;
        // A prebuilt std says `/rustc/<commit>/library/...`; a std built
        // from rust-src says the same. A toolchain whose commit is not known
        // (`unknown`) has no such name: its rust-src path is left as it is
        // (the same on every machine with that toolchain package).
        let commit_known =
            toolchain.commit_hash.len() >= 7 && toolchain.commit_hash.chars().all(|c| c.is_ascii_hexdigit());
        if self.plan.std == StdSource::BuildStd
            && commit_known
            && let Some(src) = &toolchain.rust_src
        {
            let to = format!("/rustc/{}/library", toolchain.commit_hash);
            // cargo may name it through the sysroot's symlinks or not.
            let canonical = src.library.canonicalize().ok().filter(|c| c != &src.library);
            for from in std::iter::once(src.library.clone()).chain(canonical) {
                remaps.push(PathRemap { from, to: to.clone(), placeholder: "<rust-src>" });
            }
        }
        remaps.push(PathRemap {
            from: self.template.dir.clone(),
            to: "/rustle/template".into(),
            placeholder: "<template>",
        });
        // One remap per directory: the later (more specific) name wins.
        let mut seen = BTreeSet::new();
        remaps.reverse();
        remaps.retain(|r| seen.insert(r.from.clone()));
        remaps.reverse();
        // The order above puts a directory after the ones that usually hold
        // it (a generated template is inside the cache). Where this machine
        // nests them otherwise, an outer one goes first: each time, the
        // first remaining directory inside none of the others. The order
        // thus depends only on how the directories nest, never on their
        // names, and so does the cache key (which writes them as placeholders).
        let mut ordered = Vec::with_capacity(remaps.len());
        while !remaps.is_empty() {
            let outermost = (0..remaps.len())
                .find(|&i| !remaps.iter().any(|o| o.from != remaps[i].from && remaps[i].from.starts_with(&o.from)))
                .unwrap_or(0);
            ordered.push(remaps.remove(outermost));
        }
        ordered
    }

    /// The directories the cache key names by placeholder: those of
    /// [`path_remaps`](Self::path_remaps) and the cache dir (which the
    /// dlltool wrapper's path in the flags lies in).
    pub fn key_placeholders(&self) -> Vec<PathRemap> {
        let mut remaps = self.path_remaps();
        remaps.push(PathRemap {
            from: self.cache_dir.to_path_buf(),
            to: "/rustle/cache".into(),
            placeholder: "<cache>",
        });
        remaps
    }

    /// The template being built.
    pub fn template(&self) -> &PreparedTemplate {
        self.template
    }

    /// The toolchain plan.
    pub fn plan(&self) -> &BuildPlan {
        self.plan
    }

    /// `<cache>/dlltool/<dlltool>`: runs `dlltool` (found on PATH) in the
    /// directory of the import library it is asked to write, with the paths
    /// in that directory given relative to it. dlltool names the library's
    /// symbols (`_head_<path>`, `<path>_iname`) after its path as given, and
    /// rustc writes it into a temporary directory of a new name for every
    /// link, inside the target dir: without the wrapper, every Windows
    /// binary's symbol table says where and when it was linked.
    #[cfg(unix)]
    fn dlltool_wrapper(&self, dlltool: &str) -> Result<PathBuf, CompilationError> {
        let dir = self.cache_dir.join("dlltool");
        let path = dir.join(dlltool);
        let io = |path: &Path, source| {
            CompilationError::target(self.triple(), TargetFailure::Io { path: path.to_path_buf(), source })
        };
        if !dlltool.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(io(&path, std::io::Error::other("not a program name")));
        }
        let script = DLLTOOL_WRAPPER.replace("@DLLTOOL@", dlltool);
        if std::fs::read_to_string(&path).is_ok_and(|current| current == script) {
            return Ok(path);
        }
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let tmp = dir.join(format!(".{dlltool}.{}", unique_suffix()));
        std::fs::write(&tmp, &script).map_err(|e| io(&tmp, e))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        Ok(path)
    }

    /// A directory whose `cargo` and `rustc` are the plan's toolchain, put
    /// first on PATH: cargo-zigbuild and build scripts that call `cargo` or
    /// `rustc` by name then get the same toolchain as the build.
    #[cfg(unix)]
    fn toolchain_shim(&self) -> Result<PathBuf, CompilationError> {
        let toolchain = &self.plan.toolchain;
        let dir = self.cache_dir.join("toolchains").join(toolchain.id()).join("bin");
        let io = |path: &Path, source| {
            CompilationError::target(self.triple(), TargetFailure::Io { path: path.to_path_buf(), source })
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        for (name, real) in [("cargo", &toolchain.cargo), ("rustc", &toolchain.rustc)] {
            let link = dir.join(name);
            if std::fs::read_link(&link).is_ok_and(|current| &current == real) {
                continue;
            }
            let tmp = dir.join(format!(".{name}.{}", unique_suffix()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(real, &tmp).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &link).map_err(|e| io(&link, e))?;
        }
        Ok(dir)
    }

    /// Where no links can stand in for the toolchain (a symlink needs a
    /// privilege on Windows, and a linked rustc looks for its sysroot next
    /// to the link), the toolchain's own `bin` directory goes first on PATH.
    #[cfg(not(unix))]
    fn toolchain_shim(&self) -> Result<PathBuf, CompilationError> {
        Ok(self.plan.toolchain.rustc.parent().map(Path::to_path_buf).unwrap_or_default())
    }
}

/// A name part no other writer uses at the same time: the process id and a
/// per-process count. Builds of one process share the cache dir (several
/// targets at once, or an agent's jobs of one template), so the process id
/// alone is not enough for a temporary file.
pub(crate) fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}.{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The dlltool wrapper ([`BuildJob::dlltool_wrapper`]), `@DLLTOOL@` being
/// the program it runs. An output library given relative, or none, runs
/// dlltool as it is.
#[cfg(unix)]
const DLLTOOL_WRAPPER: &str = r#"#!/bin/sh
# Written by rustle-cross. Runs @DLLTOOL@ in the directory of the import
# library it writes, naming the files there relative to it: dlltool names
# the library's symbols after its path as given, and rustc puts it in a new
# temporary directory for every link.
real=@DLLTOOL@
out= prev=
for arg in "$@"; do
  case $prev in -l|--output-lib) out=$arg ;; esac
  case $arg in --output-lib=*) out=${arg#--output-lib=} ;; esac
  prev=$arg
done
case $out in /*/*) ;; *) exec "$real" "$@" ;; esac
dir=${out%/*}
n=$#
while [ "$n" -gt 0 ]; do
  arg=$1
  shift
  n=$((n - 1))
  case $arg in
    "$dir"/*) arg=${arg#"$dir"/} ;;
    --output-lib="$dir"/*) arg=--output-lib=${arg#--output-lib="$dir"/} ;;
  esac
  set -- "$@" "$arg"
done
cd "$dir" && exec "$real" "$@"
"#;

/// A directory of this machine as builds see it, and what binaries and the
/// cache key call it instead (see [`BuildJob::path_remaps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRemap {
    /// The directory here.
    pub from: PathBuf,
    /// Its name in binaries (`/rustle/template`).
    pub to: String,
    /// Its name in the cache key (`<template>`).
    pub placeholder: &'static str,
}

impl PathRemap {
    /// The rustc flag: `--remap-path-prefix=FROM=TO` (rustc splits at the
    /// last `=`, so FROM may contain one).
    pub fn flag(&self) -> String {
        format!("--remap-path-prefix={}={}", self.from.display(), self.to)
    }
}

/// `SOURCE_DATE_EPOCH` for every build, so tools that stamp a time into
/// their output (binutils' PE linker writes it as the COFF TimeDateStamp;
/// gcc's `__DATE__`) stamp the same one: the caller's, when it sets a valid
/// one (it is then part of the cache key, as every variable the plan sets),
/// else [`DEFAULT_SOURCE_DATE_EPOCH`].
fn source_date_epoch() -> String {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => value,
        Ok(value) if !value.is_empty() => {
            tracing::warn!(
                "SOURCE_DATE_EPOCH={value:?} is not a number of seconds; building with {DEFAULT_SOURCE_DATE_EPOCH}"
            );
            DEFAULT_SOURCE_DATE_EPOCH.to_owned()
        }
        _ => DEFAULT_SOURCE_DATE_EPOCH.to_owned(),
    }
}

/// The build time stamped into binaries when the caller sets none:
/// 1980-01-01T00:00:00Z, the earliest time a ZIP or DOS timestamp can hold,
/// so a build script that packs an archive accepts it too.
pub const DEFAULT_SOURCE_DATE_EPOCH: &str = "315532800";

/// Builds one target: cargo, then the binary's header is checked against
/// the target before it is returned.
pub async fn build(
    job: &BuildJob<'_>,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<CompiledBinary, CompilationError> {
    let triple = job.triple();
    let start = Instant::now();
    let (_turn, target_dir) = take_target_dir(job, on_event).await?;
    let job = &job.in_target_dir(target_dir.clone());
    let command = job.cargo_command()?;
    let graph = check_c_dependencies(job).await?;
    supply_source_built_libraries(job, graph.as_deref(), on_event).await?;
    supply_std_sysroot(job, on_event).await?;
    let units_file = target_dir.join(".rustle-units");
    let expected = std::fs::read_to_string(&units_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| lock_packages(job.template.lock_file().as_deref()).len() as u64 + 1);
    on_event(BuildEvent::Started { triple: triple.clone(), expected_units: expected });

    let mut messages = CargoMessages::new(&job.template.bin_name);
    let output = command
        .run_streaming(
            |line| {
                if let Some(unit) = messages.observe(line) {
                    on_event(BuildEvent::Progress {
                        triple: triple.clone(),
                        done: messages.units,
                        total: expected.max(messages.units),
                        unit,
                    });
                }
            },
            |line| on_event(BuildEvent::Log { triple: triple.clone(), line: line.to_owned() }),
        )
        .await
        .map_err(|e| match e {
            ProcessError::TimedOut { timeout, .. } => {
                CompilationError::target(triple.clone(), TargetFailure::Timeout { timeout })
            }
            source => CompilationError::target(triple.clone(), TargetFailure::Process(source)),
        })?;

    if !output.status.success() || !messages.errors.is_empty() {
        let package = &job.template.package;
        return Err(classify_failure(&triple, package, &messages, &output.status.to_string(), &output.stderr_text()));
    }
    let executable = messages.executable.ok_or_else(|| {
        CompilationError::target(triple.clone(), TargetFailure::NoArtifact { bin: job.template.bin_name.clone() })
    })?;
    if let Some((mode, tool)) = job.strip_after() {
        strip_macho(&tool, mode, &executable)
            .await
            .map_err(|reason| CompilationError::unavailable(triple.clone(), reason))?;
    }
    // Reading, parsing and hashing a binary of many MiB is blocking work:
    // never on an async worker, where it would hold back every other task
    // of the process (an agent's heartbeats among them).
    let target = job.plan.target.clone();
    let units = messages.units;
    let (binary_data, validation, checksum) = tokio::task::spawn_blocking(move || {
        let _ = std::fs::write(&units_file, units.to_string());
        let binary_data = std::fs::read(&executable).map_err(|source| {
            CompilationError::target(target.triple_with_floor(), TargetFailure::Io { path: executable.clone(), source })
        })?;
        let validation = validate_binary(&binary_data, &target)
            .map_err(|source| CompilationError::target(target.triple_with_floor(), TargetFailure::Invalid(source)))?;
        let checksum = hex(&Sha256::digest(&binary_data));
        Ok::<_, CompilationError>((binary_data, validation, checksum))
    })
    .await
    .map_err(|error| {
        CompilationError::target(
            triple.clone(),
            TargetFailure::Io {
                path: target_dir.clone(),
                source: std::io::Error::other(format!("the task reading the binary failed: {error}")),
            },
        )
    })??;
    let mut flags: Vec<String> = command.get_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
    flags.extend(
        command
            .get_envs()
            .iter()
            .filter(|(k, _)| k.to_string_lossy().ends_with("_RUSTFLAGS"))
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())),
    );
    let target = &job.plan.target;
    Ok(CompiledBinary {
        target: job.request.target_specification(),
        file_name: format!("{}{}", job.template.bin_name, target.exe_suffix()),
        size: binary_data.len() as u64,
        checksum,
        binary_data,
        compilation_time: start.elapsed(),
        metadata: CompilationMetadata {
            toolchain: job.plan.toolchain.name.clone(),
            rustc_version: job.plan.toolchain.rustc_version.clone(),
            cargo_version: job.plan.toolchain.cargo_version.clone(),
            compilation_flags: flags,
            dependencies: lock_packages(job.template.lock_file().as_deref())
                .into_iter()
                .filter(|dep| !dep.starts_with(&format!("{}@", job.template.package)))
                .collect(),
            features_used: job.request.settings.features.clone(),
            c_libraries: job.c_library_lines(graph.as_deref()),
        },
        validation,
        cached: None,
    })
}

/// Takes a target dir of this job's pool ([`TARGET_DIR_POOL`]), which
/// templates with the same dependencies share, and holds it until the
/// returned file is dropped (cargo would make a second build wait too, but
/// the binary is read after cargo exits, and the next template's build must
/// not overwrite it before). A free warm member (one a build finished in)
/// comes first; when every warm one is busy the build waits for one, for
/// [`WARM_TARGET_DIR_WAIT`] at most, saying so; then a free cold member or a
/// new one; with the pool full of busy members, whichever is freed first.
/// When the dir's last build was of another template, the fingerprints of
/// the path packages are removed first: cargo knows a path package by its
/// path within its workspace, the same for two templates, and would take
/// the other template's files as up to date when they are older than its
/// build.
async fn take_target_dir(
    job: &BuildJob<'_>,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<(std::fs::File, PathBuf), CompilationError> {
    let io = |path: &Path, source| {
        CompilationError::target(job.triple(), TargetFailure::Io { path: path.to_path_buf(), source })
    };
    let members: Vec<PathBuf> = (0..TARGET_DIR_POOL).map(|k| job.pool_member(k)).collect();
    let is_warm = |dir: &Path| dir.join(".rustle-units").is_file();
    // One try at each of `dirs` that exists (or, with `create`, every one):
    // the first whose lock is free.
    let try_take = |dirs: &[&PathBuf], create: bool| -> Result<Option<(std::fs::File, PathBuf)>, CompilationError> {
        for dir in dirs {
            if !dir.is_dir() && !create {
                continue;
            }
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            let lock_path = dir.join(".rustle-lock");
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| io(&lock_path, e))?;
            match file.try_lock() {
                Ok(()) => return Ok(Some((file, (*dir).clone()))),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
            }
        }
        Ok(None)
    };
    let poll = Duration::from_millis(100);
    let warm: Vec<&PathBuf> = members.iter().filter(|dir| is_warm(dir)).collect();
    let mut taken = try_take(&warm, false)?;
    if taken.is_none() && !warm.is_empty() {
        on_event(BuildEvent::Log {
            triple: job.triple(),
            line: format!(
                "waiting for another build of the same dependencies in {} (for {}s at most, then a cold dir)",
                warm[0].display(),
                WARM_TARGET_DIR_WAIT.as_secs()
            ),
        });
        let until = Instant::now() + WARM_TARGET_DIR_WAIT.min(job.request.deadline);
        while taken.is_none() && Instant::now() < until {
            tokio::time::sleep(poll).await;
            taken = try_take(&warm, false)?;
        }
    }
    let all: Vec<&PathBuf> = members.iter().collect();
    if taken.is_none() {
        taken = try_take(&all, true)?;
    }
    if taken.is_none() {
        on_event(BuildEvent::Log {
            triple: job.triple(),
            line: format!(
                "waiting for one of {TARGET_DIR_POOL} builds of the same dependencies in {}",
                members[0].parent().unwrap_or(&members[0]).display()
            ),
        });
    }
    let until = Instant::now() + job.request.deadline;
    let (turn, target_dir) = loop {
        if let Some(taken) = taken.take() {
            break taken;
        }
        if Instant::now() >= until {
            return Err(CompilationError::target(
                job.triple(),
                TargetFailure::Timeout { timeout: job.request.deadline },
            ));
        }
        tokio::time::sleep(poll).await;
        taken = try_take(&all, false)?;
    };
    let last_path = target_dir.join(".rustle-last-template");
    let this = job.template.dir.display().to_string();
    if std::fs::read_to_string(&last_path).is_ok_and(|last| last != this) {
        forget_path_packages(&target_dir, &job.template.path_packages());
    }
    std::fs::write(&last_path, &this).map_err(|e| io(&last_path, e))?;
    Ok((turn, target_dir))
}

/// Removes the fingerprints (`.fingerprint/<package>-<hash>`) of
/// `packages` from every profile dir of `target_dir` (the host's and each
/// target's), so cargo builds their units again.
fn forget_path_packages(target_dir: &Path, packages: &[String]) {
    let profile_dirs = std::fs::read_dir(target_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("release"))
        .chain(std::iter::once(target_dir.join("release")));
    for fingerprints in profile_dirs.map(|dir| dir.join(".fingerprint")) {
        let Ok(entries) = std::fs::read_dir(&fingerprints) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let of_package = name.rsplit_once('-').is_some_and(|(package, hash)| {
                packages.iter().any(|p| p == package) && hash.chars().all(|c| c.is_ascii_hexdigit())
            });
            if of_package {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Refuses the job before cargo runs when a C dependency of the template
/// cannot be had for its target ([`crate::c_dependencies::check_before_building`]).
/// Returns the crates of the tables in the target's graph (`None`: not
/// resolved). A target dir remembers the Cargo.lock it last passed with and
/// that graph, so a rebuild with the same lock (a one-line change, a no-op)
/// resolves nothing again.
async fn check_c_dependencies(job: &BuildJob<'_>) -> Result<Option<Vec<String>>, CompilationError> {
    let passed = job.target_dir().join(".rustle-c-dependencies-ok");
    let lock = job.template.lock_file().and_then(|path| std::fs::read(path).ok()).unwrap_or_default();
    let key = hex(&Sha256::digest(&lock));
    if let Ok(seen) = std::fs::read_to_string(&passed)
        && let Some((seen_key, graph)) = seen.split_once('\n')
        && seen_key == key
    {
        return Ok(Some(graph.lines().map(str::to_owned).collect()));
    }
    let graph = crate::c_dependencies::check_before_building(
        &job.plan.toolchain,
        job.template,
        &job.plan.target,
        &job.lock_package_names(),
    )
    .await
    .map_err(|reason| CompilationError::unavailable(job.triple(), reason))?;
    if let Some(graph) = &graph
        && std::fs::create_dir_all(job.target_dir()).is_ok()
    {
        let _ = std::fs::write(&passed, format!("{key}\n{}", graph.join("\n")));
    }
    Ok(graph)
}

/// Strips a Mach-O binary as rustc would have with rust-objcopy
/// (`--strip-debug` for debug info, `--strip-all` for symbols), with
/// Debian's llvm-strip. In place: stripping again changes nothing.
async fn strip_macho(tool: &Path, mode: StripMode, binary: &Path) -> Result<(), String> {
    let flag = match mode {
        StripMode::Debuginfo => "--strip-debug",
        StripMode::Symbols | StripMode::None => "--strip-all",
    };
    let output = ProcessSpec::new(tool)
        .arg(flag)
        .arg(binary)
        .timeout(Duration::from_secs(120))
        .output()
        .await
        .map_err(|error| format!("{} could not run: {error}", tool.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{} {flag} {} failed: {}", tool.display(), binary.display(), output.stderr_text().trim()))
    }
}

/// Builds the job's std sysroot ([`BuildJob::std_sysroot`]) unless it is
/// built; a std that cannot be built fails the target.
async fn supply_std_sysroot(
    job: &BuildJob<'_>,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<(), CompilationError> {
    let Some(sysroot) = job.std_sysroot()? else { return Ok(()) };
    let triple = job.triple();
    let remaps: Vec<PathRemap> = job
        .path_remaps()
        .into_iter()
        .filter(|remap| matches!(remap.placeholder, "<cargo-home>" | "<rust-src>"))
        .collect();
    let build = SysrootBuild {
        sysroot: &sysroot,
        toolchain: &job.plan.toolchain,
        target: &job.plan.target,
        rustflags: &job.target_rustflags()?,
        env: &job.target_env(),
        remaps: &remaps,
        timeout: job.request.deadline,
    };
    let note = |line: String| on_event(BuildEvent::Note { triple: triple.clone(), line });
    crate::std_sysroot::ensure_built(&build, &note).await.map(drop).map_err(|reason| {
        CompilationError::unavailable(
            triple.clone(),
            format!("{reason}. The toolchain's rust-src must match its rustc (rustup component add rust-src, or Debian's rust-src package)"),
        )
    })
}

/// Builds, before cargo runs, each C library the job takes from a prefix
/// built here ([`BuildJob::source_prefixes`]) that is not built yet and
/// whose crate is in the target's `graph` (`None`: not resolved, every
/// crate of the lock), and says what is linked how. A library that cannot
/// be built fails the target (the others of a multi-target build go on),
/// naming the crate, the library, the target and the way out.
async fn supply_source_built_libraries(
    job: &BuildJob<'_>,
    graph: Option<&[String]>,
    on_event: &(dyn Fn(BuildEvent) + Send + Sync),
) -> Result<(), CompilationError> {
    let triple = job.triple();
    let note = |line: String| on_event(BuildEvent::Note { triple: triple.clone(), line });
    let in_graph = |name: &str| graph.is_none_or(|graph| graph.iter().any(|g| g == name));
    for (_, prefix) in job.source_prefixes().into_iter().filter(|(name, _)| in_graph(name)) {
        let wrappers = prefix.dir.parent().unwrap_or(&prefix.dir).join("compiler");
        let built = match TargetCCompiler::of_route(&job.plan.linker, &job.plan.target, &wrappers) {
            Ok(compiler) => ensure_built(&prefix, &job.plan.toolchain, &compiler, &note).await,
            Err(reason) => Err(reason),
        };
        if let Err(reason) = built {
            let crates: Vec<&str> = rustle_targets::SYS_CRATES
                .iter()
                .filter(|row| std::ptr::eq(row.library, prefix.library))
                .map(|row| row.crate_name)
                .collect();
            return Err(CompilationError::unavailable(
                triple.clone(),
                format!(
                    "{} needs {} for {}, which no package here supplies and which could not be built from source: {reason}. \
                     Install {}'s development files for the target, or build on an agent that has them",
                    crates.join(", "),
                    prefix.library.name,
                    job.plan.target.triple,
                    prefix.library.name
                ),
            ));
        }
    }
    for line in job.c_library_lines(graph) {
        note(line);
    }
    Ok(())
}

/// Sorts a failed cargo run. With `json-render-diagnostics` cargo renders
/// rustc's diagnostics to stderr and says `could not compile` for each crate
/// rustc rejected; JSON `compiler-message`s count too when present.
///
/// The template's own build script failing (a panic in its `build.rs`) is
/// the template's error, like a compiler error: reported once, never
/// retried. A dependency's build script failing stays an environment
/// failure (a missing C library or tool may be present elsewhere).
fn classify_failure(
    triple: &str,
    package: &str,
    messages: &CargoMessages,
    status: &str,
    stderr: &str,
) -> CompilationError {
    let own_build_script = format!("failed to run custom build command for `{package} v");
    if stderr.contains(&own_build_script) {
        let diagnostics = rendered_errors(stderr)
            .into_iter()
            .filter(|block| block.contains(&own_build_script))
            .collect::<Vec<_>>()
            .join("\n");
        return CompilationError::target(triple.to_owned(), TargetFailure::CompileFailed { diagnostics });
    }
    let rendered = if stderr.contains("could not compile") { rendered_errors(stderr) } else { Vec::new() };
    let errors: Vec<&str> = messages.errors.iter().chain(&rendered).map(String::as_str).collect();
    if errors.is_empty() {
        return CompilationError::target(
            triple.to_owned(),
            TargetFailure::CargoFailed { status: status.to_owned(), stderr: last_lines(stderr, 12) },
        );
    }
    let is_link_error = |d: &str| d.contains("linking with") || d.contains("linker `");
    let diagnostics = errors.join("\n");
    if errors.iter().filter(|e| !e.starts_with("error: could not compile")).all(|e| is_link_error(e)) {
        CompilationError::target(triple.to_owned(), TargetFailure::LinkFailed { diagnostics })
    } else {
        CompilationError::target(triple.to_owned(), TargetFailure::CompileFailed { diagnostics })
    }
}

/// The error diagnostics cargo rendered to stderr: each block from a line
/// starting with `error` up to the next diagnostic or cargo status line.
fn rendered_errors(stderr: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in stderr.lines() {
        let starts_diagnostic = line.starts_with("error") || line.starts_with("warning");
        // cargo's status lines: a right-aligned capitalised verb ("   Compiling").
        let is_status = line.starts_with("   ") && line.trim_start().starts_with(|c: char| c.is_ascii_uppercase());
        if starts_diagnostic || is_status {
            blocks.extend(current.take());
            if line.starts_with("error") {
                current = Some(line.to_owned());
            }
        } else if let Some(block) = &mut current {
            block.push('\n');
            block.push_str(line);
        }
    }
    blocks.extend(current);
    blocks.into_iter().filter(|b| !b.starts_with("error: aborting due to")).map(|b| b.trim_end().to_owned()).collect()
}

/// Follows cargo's `--message-format=json` stream.
struct CargoMessages<'a> {
    bin_name: &'a str,
    units: u64,
    executable: Option<PathBuf>,
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    message: Option<CompilerMessage>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    #[serde(default)]
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct CompilerMessage {
    level: String,
    #[serde(default)]
    rendered: Option<String>,
    #[serde(default)]
    message: String,
}

impl<'a> CargoMessages<'a> {
    fn new(bin_name: &'a str) -> Self {
        Self { bin_name, units: 0, executable: None, errors: Vec::new() }
    }

    /// Takes one stdout line; returns the unit's name when a unit finished.
    fn observe(&mut self, line: &str) -> Option<String> {
        let msg: CargoMessage = serde_json::from_str(line).ok()?;
        match msg.reason.as_str() {
            "compiler-artifact" => {
                self.units += 1;
                let target = msg.target?;
                if target.kind.iter().any(|k| k == "bin") && target.name == self.bin_name {
                    self.executable = msg.executable;
                }
                Some(target.name)
            }
            "build-script-executed" => {
                self.units += 1;
                None
            }
            "compiler-message" => {
                let m = msg.message?;
                if m.level == "error" || m.level == "error: internal compiler error" {
                    self.errors.push(m.rendered.unwrap_or(m.message));
                }
                None
            }
            _ => None,
        }
    }
}

/// `name@version` of every package in the template's Cargo.lock (its
/// workspace's, for a workspace member).
fn lock_packages(lock_file: Option<&Path>) -> Vec<String> {
    lock_file.and_then(CargoLock::read).map(CargoLock::package_ids).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_failure_names_its_target_once() {
        let e = CompilationError::target(
            "x86_64-unknown-linux-gnu.2.17",
            TargetFailure::Timeout { timeout: Duration::from_secs(9) },
        );
        let text = e.to_string();
        assert!(text.starts_with("x86_64-unknown-linux-gnu.2.17: the build did not finish within 9s"), "{text}");
        assert_eq!(text.matches("x86_64-unknown-linux-gnu").count(), 1, "{text}");
        assert!(matches!(e.failure(), Some(TargetFailure::Timeout { .. })));
        assert!(!e.is_compile_failure());
        let fleet = CompilationError::Fleet { reason: "no certificate".into() };
        assert!(fleet.failure().is_none() && !fleet.to_string().contains(": :"), "{fleet}");
    }

    /// A build-std plan for windows-gnu with a made-up toolchain whose
    /// rust-src is at `rust_src` and whose commit is `commit`.
    fn build_std_plan(rust_src: &Path, commit: &str) -> BuildPlan {
        BuildPlan {
            target: Target::from_triple("x86_64-pc-windows-gnu").unwrap(),
            toolchain: crate::toolchain::Toolchain {
                name: "made-up".into(),
                kind: crate::toolchain::ToolchainKind::Custom,
                rustc: "/opt/made-up/bin/rustc".into(),
                cargo: "/opt/made-up/bin/cargo".into(),
                rustc_version: "rustc 1.96.0".into(),
                cargo_version: "cargo 1.96.0".into(),
                release: "1.96.0".into(),
                commit_hash: commit.into(),
                host: "x86_64-unknown-linux-gnu".into(),
                sysroot: "/opt/made-up".into(),
                std_targets: BTreeSet::new(),
                rust_src: Some(crate::toolchain::RustSource {
                    library: rust_src.to_path_buf(),
                    version: Some("1.96.0".into()),
                    matches_compiler: true,
                }),
            },
            std: StdSource::BuildStd,
            linker: LinkerPlan::Host,
        }
    }

    fn template_at(dir: &Path) -> PreparedTemplate {
        PreparedTemplate {
            id: rustle_targets::TemplateId("app-000000000000".into()),
            dir: dir.to_path_buf(),
            manifest: dir.join("Cargo.toml"),
            package: "app".into(),
            bin_name: "app".into(),
            cargo_args: Vec::new(),
            release_strip: None,
        }
    }

    fn request_for(template: &PreparedTemplate, plan: &BuildPlan, rustflags: &[&str]) -> BuildRequest {
        BuildRequest {
            template: template.id.clone(),
            target: plan.target.clone(),
            settings: TargetSettings {
                rustflags: rustflags.iter().map(|f| (*f).to_owned()).collect(),
                ..TargetSettings::default()
            },
            optimization: rustle_targets::CompilationOptimization::default(),
            deadline: Duration::from_secs(60),
            incremental: false,
            cache: CachePolicy::Off,
        }
    }

    fn env_of(command: &ProcessSpec, key: &str) -> Option<String> {
        command
            .get_envs()
            .iter()
            .rev()
            .find(|(k, _)| k.to_string_lossy() == key)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }

    #[test]
    fn every_build_remaps_its_directories_the_most_specific_last() {
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().join("cache");
        // A generated template lives inside the cache.
        let template = template_at(&cache.join("templates/app"));
        let rust_src = scratch.path().join("sysroot/lib/rustlib/src/rust/library");
        std::fs::create_dir_all(&rust_src).unwrap();
        let plan = build_std_plan(&rust_src, "ac68faa20c58cbccd01ee7208bf3b6e93a7d7f96");
        let request = request_for(&template, &plan, &["--remap-path-prefix=/mine=/theirs"]);
        let job = BuildJob::new(&template, &plan, &request, &cache);
        let command = job.cargo_command().unwrap();
        let flags = env_of(&command, "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS").expect("rustflags");
        let flags: Vec<&str> = flags.split_whitespace().collect();
        let remap = |from: &Path, to: &str| format!("--remap-path-prefix={}={to}", from.display());
        let position =
            |flag: &str| flags.iter().position(|f| *f == flag).unwrap_or_else(|| panic!("{flag}: {flags:?}"));
        let target_at = position(&remap(&job.target_dir(), "/rustle/target"));
        let cargo_at = position(&remap(&crate::toolchain::cargo_home(), "/rustle/cargo"));
        let src_at = position(&remap(&rust_src, "/rustc/ac68faa20c58cbccd01ee7208bf3b6e93a7d7f96/library"));
        // rustc applies the last match: the target dir inside the cache is
        // named as the target dir, rust-src inside the scratch dir as rust-src.
        assert!(cargo_at < 3 && src_at < 3 && target_at < 3, "{flags:?}");
        assert!(!flags.iter().any(|f| f.contains("/rustle/cache")), "the cache dir is no name of its own: {flags:?}");
        // The template's name goes to its own crate only, after `--`: the
        // dependencies' flags are the same for every template.
        assert!(!flags.iter().any(|f| f.contains("/rustle/template")), "{flags:?}");
        let args: Vec<String> = command.get_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[0], "rustc", "{args:?}");
        let dashes = args.iter().position(|a| a == "--").expect("`--` before the template's flags");
        assert_eq!(args[dashes + 1..], [remap(&template.dir, "/rustle/template")], "{args:?}");
        // MinGW's dlltool runs through the wrapper; the caller's own flags
        // come after ours, so they win.
        let wrapper = cache.join("dlltool/x86_64-w64-mingw32-dlltool");
        assert_eq!(flags[3], format!("-Cdlltool={}", wrapper.display()), "{flags:?}");
        // std from the sysroot built once for the target.
        let sysroot = job.std_sysroot().unwrap().expect("build-std: a sysroot");
        assert_eq!(flags[4], sysroot.flag(), "{flags:?}");
        assert_eq!(flags[5..], ["--remap-path-prefix=/mine=/theirs"], "{flags:?}");
        let epoch = env_of(&command, "SOURCE_DATE_EPOCH").expect("SOURCE_DATE_EPOCH is set");
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(caller) if !caller.is_empty() && caller.bytes().all(|b| b.is_ascii_digit()) => assert_eq!(epoch, caller),
            _ => assert_eq!(epoch, DEFAULT_SOURCE_DATE_EPOCH),
        }

        // A cache inside the template: then the template goes first.
        let template = template_at(&scratch.path().join("t"));
        let inner_cache = template.dir.join(".cache");
        let job = BuildJob::new(&template, &plan, &request, &inner_cache);
        let order: Vec<&str> = job.path_remaps().iter().map(|r| r.placeholder).collect();
        assert_eq!(order, ["<cargo-home>", "<rust-src>", "<template>", "<target-dir>"]);

        // Without a known commit there is no `/rustc/<commit>` to name rust-src.
        let plan = build_std_plan(&rust_src, "unknown");
        let job = BuildJob::new(&template, &plan, &request, &cache);
        assert!(job.path_remaps().iter().all(|r| r.placeholder != "<rust-src>"), "{:?}", job.path_remaps());
        // A prebuilt std needs no rust-src remap.
        let mut plan = build_std_plan(&rust_src, "ac68faa20c58cbccd01ee7208bf3b6e93a7d7f96");
        plan.std = StdSource::Prebuilt;
        let job = BuildJob::new(&template, &plan, &request, &cache);
        assert_eq!(job.path_remaps().len(), 3, "{:?}", job.path_remaps());
    }

    #[test]
    fn std_is_built_once_per_toolchain_rust_src_target_and_flags() {
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().join("cache");
        let (first, second) = (template_at(&scratch.path().join("a")), template_at(&scratch.path().join("b")));
        let plan = build_std_plan(&scratch.path().join("src"), "ac68faa20c58cbccd01ee7208bf3b6e93a7d7f96");
        let request = request_for(&first, &plan, &[]);
        let sysroot_of = |template: &PreparedTemplate, plan: &BuildPlan, request: &BuildRequest| {
            BuildJob::new(template, plan, request, &cache).std_sysroot().unwrap().expect("build-std: a sysroot")
        };
        let base = sysroot_of(&first, &plan, &request);
        assert_eq!(sysroot_of(&second, &plan, &request_for(&second, &plan, &[])), base, "any template");
        assert!(base.dir.starts_with(cache.join("sysroots").join(plan.toolchain.id())), "{}", base.dir.display());
        let command = BuildJob::new(&first, &plan, &request, &cache).cargo_command().unwrap();
        let flags = env_of(&command, "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS").unwrap();
        assert!(flags.split_whitespace().any(|f| f == base.flag()), "{flags}");
        let args: Vec<String> = command.get_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(!args.iter().any(|a| a.starts_with("-Zbuild-std")), "no std compiled per build: {args:?}");
        assert!(env_of(&command, "RUSTC_BOOTSTRAP").is_none());

        let mut other_commit = plan.clone();
        other_commit.toolchain.commit_hash = "0123456789abcdef0123456789abcdef01234567".into();
        let mut other_src = plan.clone();
        other_src.toolchain.rust_src.as_mut().unwrap().version = Some("1.97.0".into());
        for (changed, what) in [(&other_commit, "the toolchain's commit"), (&other_src, "rust-src's version")] {
            assert_ne!(sysroot_of(&first, changed, &request), base, "{what}");
        }
        let flagged = request_for(&first, &plan, &["-Ctarget-cpu=znver3"]);
        assert_ne!(sysroot_of(&first, &plan, &flagged), base, "the target's rustflags");
        // A target with a prebuilt std has none.
        let mut prebuilt = plan.clone();
        prebuilt.std = StdSource::Prebuilt;
        assert_eq!(BuildJob::new(&first, &prebuilt, &request, &cache).std_sysroot().unwrap(), None);
    }

    #[tokio::test]
    async fn a_shared_target_dir_pool_gives_cold_builds_a_dir_each_waits_for_a_warm_one_and_forgets_another_templates_units()
     {
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().join("cache");
        let (first, second) = (template_at(&scratch.path().join("a")), template_at(&scratch.path().join("b")));
        let plan = build_std_plan(&scratch.path().join("no-src"), "unknown");
        let request = request_for(&first, &plan, &[]);
        let job_a = BuildJob::new(&first, &plan, &request, &cache);
        let job_b = BuildJob::new(&second, &plan, &request, &cache);
        assert_eq!(job_a.target_dir(), job_b.target_dir(), "the same dependencies (none), one pool");
        let lines = std::sync::Mutex::new(Vec::new());
        let on_event = |event: BuildEvent| {
            if let BuildEvent::Log { line, .. } = event {
                lines.lock().unwrap().push(line);
            }
        };
        // Two builds at once on a cold pool: a member each, no waiting.
        let (turn, dir) = take_target_dir(&job_a, &on_event).await.unwrap();
        assert_eq!(dir, job_a.target_dir());
        let (other_turn, other_dir) = take_target_dir(&job_b, &on_event).await.unwrap();
        assert_eq!(other_dir, job_a.pool_member(1), "a cold busy member: the next build takes its own");
        assert!(lines.lock().unwrap().is_empty(), "{lines:?}");
        drop(other_turn);

        // Member 0 finished a build (warm) with the first template's units
        // and a dependency's; while it is busy, the second template waits
        // for it rather than building cold, and says so.
        std::fs::write(dir.join(".rustle-units"), "4").unwrap();
        let fingerprints = |profile: &Path| profile.join("release/.fingerprint");
        for profile in [dir.clone(), dir.join("x86_64-pc-windows-gnu")] {
            for unit in ["app-0123abcd", "app-4567ef01", "serde-89abcdef", "app-helper-0123abcd"] {
                std::fs::create_dir_all(fingerprints(&profile).join(unit)).unwrap();
            }
        }
        let (second_turn, ()) = tokio::join!(take_target_dir(&job_b, &on_event), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(turn);
        });
        let (_second_turn, second_dir) = second_turn.unwrap();
        assert_eq!(second_dir, dir, "the warm member, once free");
        assert!(lines.lock().unwrap().iter().any(|l| l.starts_with("waiting for another build")), "{lines:?}");
        for profile in [dir.clone(), dir.join("x86_64-pc-windows-gnu")] {
            let mut left: Vec<String> = std::fs::read_dir(fingerprints(&profile))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(left, ["app-helper-0123abcd", "serde-89abcdef"], "only the template's own units go");
        }
        assert_eq!(
            std::fs::read_to_string(dir.join(".rustle-last-template")).unwrap(),
            second.dir.display().to_string()
        );
    }

    #[tokio::test]
    async fn a_full_pool_makes_the_next_build_wait_for_whichever_member_is_freed_first() {
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().join("cache");
        let template = template_at(&scratch.path().join("a"));
        let plan = build_std_plan(&scratch.path().join("no-src"), "unknown");
        let request = request_for(&template, &plan, &[]);
        let job = BuildJob::new(&template, &plan, &request, &cache);
        let lines = std::sync::Mutex::new(Vec::new());
        let on_event = |event: BuildEvent| {
            if let BuildEvent::Log { line, .. } = event {
                lines.lock().unwrap().push(line);
            }
        };
        let mut held = Vec::new();
        for k in 0..TARGET_DIR_POOL {
            let (turn, dir) = take_target_dir(&job, &on_event).await.unwrap();
            assert_eq!(dir, job.pool_member(k), "cold builds at once take the members in order");
            held.push(turn);
        }
        let freed = held.remove(2);
        let (next, ()) = tokio::join!(take_target_dir(&job, &on_event), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(freed);
        });
        let (_next_turn, dir) = next.unwrap();
        assert_eq!(dir, job.pool_member(2), "the member freed");
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(&format!("waiting for one of {TARGET_DIR_POOL} builds"))),
            "{lines:?}"
        );
        assert!(!job.pool_member(TARGET_DIR_POOL).exists(), "never more than the pool's members");
    }

    #[test]
    fn the_dlltool_wrapper_names_the_library_relative_to_its_directory() {
        let scratch = tempfile::tempdir().unwrap();
        let template = template_at(&scratch.path().join("t"));
        let plan = build_std_plan(&scratch.path().join("no-src"), "unknown");
        let request = request_for(&template, &plan, &[]);
        let job = BuildJob::new(&template, &plan, &request, scratch.path());
        let wrapper = job.dlltool_wrapper("x86_64-w64-mingw32-dlltool").unwrap();
        // A dlltool that says where it ran and with what.
        let bin = scratch.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join("x86_64-w64-mingw32-dlltool");
        std::fs::write(&fake, "#!/bin/sh\npwd\nfor a in \"$@\"; do echo \"[$a]\"; done\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = scratch.path().join("deps/rustcAbC123");
        std::fs::create_dir_all(&out).unwrap();
        let run = |args: &[String]| {
            let output = std::process::Command::new(&wrapper)
                .args(args)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        let at = |name: &str| out.join(name).display().to_string();
        let args = [
            "-d".into(),
            at("foo.dll_imports.def"),
            "-D".into(),
            "foo.dll".into(),
            "-l".into(),
            at("foo.dll_imports.lib"),
            "--no-leading-underscore".into(),
            "--temp-prefix".into(),
            at("foo.dll"),
        ];
        assert_eq!(
            run(&args),
            format!(
                "{}\n[-d]\n[foo.dll_imports.def]\n[-D]\n[foo.dll]\n[-l]\n[foo.dll_imports.lib]\n[--no-leading-underscore]\n[--temp-prefix]\n[foo.dll]\n",
                out.display()
            )
        );
        // Without an absolute output library, dlltool runs as asked.
        let here = std::env::current_dir().unwrap();
        let plain = ["-l".to_owned(), "foo.lib".to_owned(), "-d".to_owned(), at("x.def")];
        assert_eq!(run(&plain), format!("{}\n[-l]\n[foo.lib]\n[-d]\n[{}]\n", here.display(), at("x.def")));
        // Written once: a second job finds it as it is.
        assert_eq!(job.dlltool_wrapper("x86_64-w64-mingw32-dlltool").unwrap(), wrapper);
        assert!(job.dlltool_wrapper("evil; rm -rf /").is_err());
    }

    #[test]
    fn follows_cargo_messages() {
        let mut m = CargoMessages::new("app");
        let artifact = |name: &str, kind: &str, exe: &str| {
            format!(
                r#"{{"reason":"compiler-artifact","target":{{"name":"{name}","kind":["{kind}"]}},"executable":{exe}}}"#
            )
        };
        assert_eq!(m.observe(&artifact("serde", "lib", "null")).as_deref(), Some("serde"));
        assert_eq!(m.observe(r#"{"reason":"build-script-executed"}"#), None);
        assert_eq!(m.observe(&artifact("app", "bin", r#""/t/app""#)).as_deref(), Some("app"));
        assert_eq!(m.observe("not json"), None);
        m.observe(
            r#"{"reason":"compiler-message","message":{"level":"warning","rendered":"warning: x","message":"x"}}"#,
        );
        m.observe(
            r#"{"reason":"compiler-message","message":{"level":"error","rendered":"error[E0425]: y","message":"y"}}"#,
        );
        assert_eq!(m.units, 3);
        assert_eq!(m.executable.as_deref(), Some(Path::new("/t/app")));
        assert_eq!(m.errors, ["error[E0425]: y"]);
    }

    #[test]
    fn rendered_compile_errors_are_found_in_stderr() {
        let stderr = "   Compiling small v0.1.0 (/t)\nerror[E0308]: mismatched types\n --> src/main.rs:2:26\n  |\n2 | let x: u32 = \"a\";\n  |              ^^^ expected `u32`\n\nFor more information about this error, try `rustc --explain E0308`.\nerror: could not compile `small` (bin \"small\") due to 1 previous error\n";
        let e = classify_failure("t", "app", &CargoMessages::new("small"), "exit status: 101", stderr);
        let CompilationError::Target { kind: TargetFailure::CompileFailed { diagnostics }, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(diagnostics.starts_with("error[E0308]: mismatched types\n --> src/main.rs:2:26"), "{diagnostics}");
        assert!(!diagnostics.contains("Compiling"), "{diagnostics}");

        let link = "   Compiling app v0.1.0\nerror: linking with `aarch64-linux-gnu-gcc` failed: exit status: 1\n  |\n  = note: ld: cannot find -lfoo\n\nerror: could not compile `app` (bin \"app\") due to 1 previous error\n";
        let e = classify_failure("t", "app", &CargoMessages::new("app"), "exit status: 101", link);
        assert!(matches!(e, CompilationError::Target { kind: TargetFailure::LinkFailed { .. }, .. }), "{e:?}");

        let infra = "error: failed to run custom build command for `zstd-sys v2.0.0`\n\nCaused by:\n  process didn't exit successfully\n";
        let e = classify_failure("t", "app", &CargoMessages::new("app"), "exit status: 101", infra);
        assert!(matches!(e, CompilationError::Target { kind: TargetFailure::CargoFailed { .. }, .. }), "{e:?}");

        let own = "   Compiling app v0.1.0 (/t)\nerror: failed to run custom build command for `app v0.1.0 (/t)`\n\nCaused by:\n  process didn't exit successfully: `/t/build-script-build` (exit status: 101)\n  --- stderr\n  thread 'main' panicked at build.rs:1:13:\n  boom\n";
        let e = classify_failure("t", "app", &CargoMessages::new("app"), "exit status: 101", own);
        let CompilationError::Target { kind: TargetFailure::CompileFailed { diagnostics }, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(diagnostics.starts_with("error: failed to run custom build command for `app"), "{diagnostics}");
        assert!(diagnostics.contains("panicked at build.rs:1:13:\n  boom"), "{diagnostics}");
        assert!(!diagnostics.contains("Compiling"), "{diagnostics}");
    }

    #[test]
    fn failures_are_classified() {
        let mut m = CargoMessages::new("app");
        m.errors.push("error: linking with `cc` failed: exit status: 1".into());
        assert!(matches!(
            classify_failure("t", "app", &m, "1", ""),
            CompilationError::Target { kind: TargetFailure::LinkFailed { .. }, .. }
        ));
        m.errors.push("error[E0308]: mismatched types".into());
        let e = classify_failure("t", "app", &m, "1", "");
        assert!(e.is_compile_failure(), "{e}");
        let e = classify_failure(
            "t",
            "app",
            &CargoMessages::new("app"),
            "exit status: 101",
            "error: failed to parse\nmore",
        );
        assert!(
            matches!(e, CompilationError::Target { kind: TargetFailure::CargoFailed { .. }, .. })
                && !e.is_compile_failure()
        );
        assert!(e.to_string().contains("failed to parse"), "{e}");
    }
}

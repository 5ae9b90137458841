//! `CrossCompilationManager`: the façade rustle-deploy embeds. It owns the
//! configuration, the toolchain manager and the cache, and builds templates
//! for targets, one or many at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use rustle_detect::{DetectOptions, ParsedInventory, TargetDetectionError, TargetDetector, TargetPlan};
use rustle_engine::cache::{CacheKeyInputs, CompilationCache};
use rustle_engine::engine::{self, BuildJob, BuildRequest, CompilationError, CompiledBinary, TargetFailure};
use rustle_engine::runner::{RunnerPlan, plan_runner};
use rustle_engine::shared_cache::SharedTier;
use rustle_engine::template::{GeneratedTemplate, PreparedTemplate, TemplateSource};
use rustle_engine::toolchain::{
    BuildPlan, MissingRequirement, RequirementKind, TargetAvailability, Toolchain, ToolchainError, ToolchainKind,
    ToolchainManager,
};
use rustle_engine::validate::require_base_system_only;
use rustle_process::ProcessSpec;
use rustle_targets::{CachePolicy, CompilationOptimization, TargetError, TargetSpecification};
use serde::Serialize;

use crate::config::{ConfigError, CrossCompilationConfig, ExecutorChoice};
use crate::fleet::{BuildSource, Executor, Fleet, FleetBuild, FleetOptions, LocalBuilder, LocalFallback};
use rustle_docker::DockerCompilationManager;

/// Errors of the façade that are not about one target's build.
#[derive(Debug, thiserror::Error)]
pub enum CrossCompilationError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A target is not a target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Toolchain discovery or installation failed.
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
    /// The cache directory cannot be used.
    #[error("cache directory {} is not usable: {source}; set RUSTLE_TARGET_CACHE_DIR to a writable directory", .path.display())]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

pub use crate::outcome::{ProgressSink, Substitution, TargetOutcome, docker_executor, local_executor};

/// What can build a target here, by which route, and what is missing.
#[derive(Debug, Clone, Serialize)]
pub struct CompatibilityReport {
    /// The target.
    pub target: TargetSpecification,
    /// Whether it builds here, with the plan or what to install.
    pub availability: TargetAvailability,
    /// How its binaries can be run here for a smoke test, or why not.
    pub runner: Result<RunnerPlan, String>,
}

impl CompatibilityReport {
    /// Whether the target builds here as things are.
    pub fn is_buildable(&self) -> bool {
        self.availability.plan().is_some()
    }
}

/// Builds Rust templates for many targets.
///
/// ```no_run
/// use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
/// use rustle_cross::build::GeneratedTemplate;
/// use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
/// manager.setup_environment().await?;
/// let template = GeneratedTemplate {
///     cargo_toml: "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n".into(),
///     source_files: [("src/main.rs".into(), "fn main() { println!(\"hi\"); }".into())].into(),
///     ..Default::default()
/// };
/// let targets = [
///     TargetSpecification::from_triple("x86_64-unknown-linux-gnu")?,
///     TargetSpecification::from_triple("aarch64-unknown-linux-gnu")?,
/// ];
/// for outcome in manager.cross_compile_parallel(&template, &targets).await {
///     match outcome.result {
///         Ok(binary) => println!("{}: {} bytes, sha256 {}", outcome.target, binary.size, binary.checksum),
///         Err(e) => eprintln!("{e}"),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct CrossCompilationManager {
    config: CrossCompilationConfig,
    toolchains: Arc<ToolchainManager>,
    supported: Vec<TargetSpecification>,
    cache_dir: PathBuf,
    /// The binary cache shared with other machines (`binary_cache_shared`).
    shared_cache: Option<SharedTier>,
    /// The fleet, started by the first build that needs it and kept while
    /// the manager lives: its agent connections serve every later call.
    fleet: tokio::sync::Mutex<Option<Arc<Fleet>>>,
    /// The Docker connection, made by the first build that uses Docker (or
    /// why there is none), kept while the manager lives.
    docker: Arc<DockerCell>,
    /// Holds the throw-away cache when `cache_enabled` is off.
    _scratch_cache: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for CrossCompilationManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossCompilationManager").field("cache_dir", &self.cache_dir).finish_non_exhaustive()
    }
}

impl CrossCompilationManager {
    /// A manager for this configuration. Nothing is discovered or built yet.
    pub fn new(config: CrossCompilationConfig) -> Result<Self, CrossCompilationError> {
        let (cache_dir, scratch) = if config.cache_enabled {
            (config.cache_dir(), None)
        } else {
            let dir = tempfile::Builder::new()
                .prefix("rustle-cross-nocache-")
                .tempdir()
                .map_err(|source| CrossCompilationError::Cache { path: std::env::temp_dir(), source })?;
            (dir.path().to_path_buf(), Some(dir))
        };
        let supported =
            config.supported_target_names().iter().map(|t| config.target(t)).collect::<Result<Vec<_>, _>>()?;
        let toolchains = Arc::new(ToolchainManager::new(config.toolchain_config(&cache_dir)));
        let shared_cache = crate::shared_cache::shared_tier(&config).map_err(ConfigError::from)?;
        Ok(Self {
            config,
            toolchains,
            supported,
            cache_dir,
            shared_cache,
            fleet: tokio::sync::Mutex::new(None),
            docker: Arc::new(DockerCell::default()),
            _scratch_cache: scratch,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CrossCompilationConfig {
        &self.config
    }

    /// The toolchain manager.
    pub fn toolchain_manager(&self) -> &ToolchainManager {
        &self.toolchains
    }

    /// The cache root in use.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Prepares the machine: creates the cache and discovers toolchains.
    /// ```no_run
    /// # use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
    /// # use rustle_cross::targets::*;
    /// # use rustle_cross::build::*;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
    /// for toolchain in manager.setup_environment().await?.iter() {
    ///     println!("{} {}", toolchain.name, toolchain.rustc_version);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn setup_environment(&self) -> Result<Arc<[Toolchain]>, CrossCompilationError> {
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|source| CrossCompilationError::Cache { path: self.cache_dir.clone(), source })?;
        Ok(self.toolchains.toolchains().await?)
    }

    /// Installs what the targets need where rustup can provide it (their std
    /// for the default toolchain), then checks again. Errors list what is
    /// still missing and how to install it.
    /// ```no_run
    /// # use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
    /// # use rustle_cross::targets::*;
    /// # use rustle_cross::build::*;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
    /// let targets = [TargetSpecification::from_triple("aarch64-unknown-linux-gnu")?];
    /// manager.install_required_toolchains(&targets).await?;
    /// # Ok(()) }
    /// ```
    pub async fn install_required_toolchains(&self, targets: &[TargetSpecification]) -> Result<(), ToolchainError> {
        let has_rustup = self.toolchains.toolchains().await?.iter().any(|t| t.kind == ToolchainKind::Rustup);
        let mut installed_any = false;
        for target in targets {
            let (identity, settings) = target.clone().into_parts();
            if let TargetAvailability::RequiresInstallation { missing, .. } =
                self.toolchains.availability(&identity, &settings).await?
            {
                let needs_std = missing.iter().any(|m| m.kind == RequirementKind::Std);
                if needs_std && has_rustup && target.custom_spec.is_none() {
                    self.toolchains.add_target(&self.config.default_toolchain, &target.triple).await?;
                    installed_any = true;
                }
            }
        }
        if installed_any {
            self.toolchains.refresh().await;
        }
        for target in targets {
            let (identity, settings) = target.clone().into_parts();
            self.toolchains.plan(&identity, &settings).await?;
        }
        Ok(())
    }

    /// The targets this configuration supports (`supported_targets`, or the
    /// whole rules table), whether or not they build here.
    /// ```no_run
    /// # use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
    /// # use rustle_cross::targets::*;
    /// # use rustle_cross::build::*;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
    /// let triples: Vec<&str> = manager.get_supported_targets().iter().map(|t| t.triple.as_str()).collect();
    /// assert!(triples.contains(&"aarch64-unknown-linux-gnu"));
    /// # Ok(()) }
    /// ```
    pub fn get_supported_targets(&self) -> &[TargetSpecification] {
        &self.supported
    }

    /// Whether a target builds here, by which route, and what is missing.
    /// ```no_run
    /// # use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
    /// # use rustle_cross::targets::*;
    /// # use rustle_cross::build::*;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
    /// let target = TargetSpecification::from_triple("x86_64-pc-windows-gnu")?;
    /// let report = manager.validate_target_compatibility(&target).await?;
    /// match &report.availability {
    ///     TargetAvailability::Available(plan) => println!("builds with {} via {}", plan.toolchain.name, plan.linker.describe()),
    ///     TargetAvailability::RequiresInstallation { missing, .. } => println!("missing: {missing:?}"),
    ///     TargetAvailability::NotSupported { reason, .. } => println!("unsupported: {reason}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn validate_target_compatibility(
        &self,
        target: &TargetSpecification,
    ) -> Result<CompatibilityReport, CrossCompilationError> {
        let (identity, settings) = target.clone().into_parts();
        Ok(CompatibilityReport {
            target: target.clone(),
            availability: self.toolchains.availability(&identity, &settings).await?,
            runner: plan_runner(&identity).map_err(|e| e.to_string()),
        })
    }

    /// The distinct targets of an inventory's hosts, from explicit triples
    /// and cached facts (no SSH probing; use [`Self::detect_target_plan`]
    /// for that and for the host grouping). Fails when any host has no
    /// target, naming the host and the way out.
    pub async fn detect_targets_from_inventory(
        &self,
        inventory: &ParsedInventory,
    ) -> Result<Vec<TargetSpecification>, TargetDetectionError> {
        let plan = self.detect_target_plan(inventory, &DetectOptions { strict: true, ..Default::default() }).await?;
        Ok(plan.targets)
    }

    /// The full detection result: every host's target with its evidence,
    /// hosts grouped by triple, glibc floors, unresolved hosts and
    /// conflicts. Targets carry this configuration's per-target settings.
    pub async fn detect_target_plan(
        &self,
        inventory: &ParsedInventory,
        options: &DetectOptions,
    ) -> Result<TargetPlan, TargetDetectionError> {
        let mut plan = TargetDetector::new().detect_from_inventory(inventory, options).await?;
        plan.targets = plan.targets.into_iter().map(|t| self.config.configure(t)).collect();
        Ok(plan)
    }

    /// Builds an in-memory template for one target.
    /// ```no_run
    /// # use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
    /// # use rustle_cross::targets::*;
    /// # use rustle_cross::build::*;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
    /// let template = GeneratedTemplate {
    ///     cargo_toml: "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n".into(),
    ///     source_files: [("src/main.rs".into(), "fn main() {}".into())].into(),
    ///     ..Default::default()
    /// };
    /// let target = TargetSpecification::from_triple("aarch64-unknown-linux-gnu")?;
    /// // Overrides of the template's release profile; unset fields keep it.
    /// let optimization = CompilationOptimization {
    ///     level: Some(OptimizationLevel::Size),
    ///     strip: Some(StripMode::Symbols),
    ///     ..Default::default()
    /// };
    /// let binary = manager.cross_compile_binary(&template, &target, optimization).await?;
    /// std::fs::write(&binary.file_name, &binary.binary_data)?;
    /// # Ok(()) }
    /// ```
    pub async fn cross_compile_binary(
        &self,
        template: &GeneratedTemplate,
        target: &TargetSpecification,
        optimization: CompilationOptimization,
    ) -> Result<CompiledBinary, CompilationError> {
        let source = TemplateSource::Generated(template.clone());
        let mut outcomes = self.build(&source, std::slice::from_ref(target), &optimization, None).await?;
        outcomes.pop().map_or_else(|| Err(CompilationError::unavailable(target.to_string(), "no result")), |o| o.result)
    }

    /// Builds an in-memory template for many targets, up to
    /// `max_parallel_jobs` at once, with default optimization. Returns one
    /// outcome per target, in the order given.
    /// ```no_run
    /// # use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
    /// # use rustle_cross::targets::*;
    /// # use rustle_cross::build::*;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = CrossCompilationManager::new(CrossCompilationConfig::default())?;
    /// # let template = GeneratedTemplate::default();
    /// let targets = [
    ///     TargetSpecification::from_triple("x86_64-unknown-linux-gnu")?,
    ///     TargetSpecification::from_triple("armv7-unknown-linux-gnueabihf")?,
    /// ];
    /// for outcome in manager.cross_compile_parallel(&template, &targets).await {
    ///     match outcome.result {
    ///         Ok(binary) => println!("{}: {}", outcome.target, binary.checksum),
    ///         Err(e) if e.is_compile_failure() => eprintln!("template error: {e}"),
    ///         Err(e) => eprintln!("build environment error: {e}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cross_compile_parallel(
        &self,
        template: &GeneratedTemplate,
        targets: &[TargetSpecification],
    ) -> Vec<TargetOutcome> {
        let source = TemplateSource::Generated(template.clone());
        match self.build(&source, targets, &CompilationOptimization::default(), None).await {
            Ok(outcomes) => outcomes,
            Err(e) => failed_all(targets, &e),
        }
    }

    /// Builds a template (directory or in-memory) for many targets, reporting
    /// progress. Fails as a whole only when the template itself is unusable.
    pub async fn build(
        &self,
        source: &TemplateSource,
        targets: &[TargetSpecification],
        optimization: &CompilationOptimization,
        progress: Option<ProgressSink>,
    ) -> Result<Vec<TargetOutcome>, CompilationError> {
        let template = source.prepare(&self.cache_dir.join("templates"))?;
        let progress = progress.unwrap_or_else(|| Arc::new(|_| {}));
        let mut outcomes = self.dispatch(&template, targets, optimization, progress.clone()).await?;
        // What nothing could build, and the configuration names a
        // compatible target for: that target, in a second round.
        let swaps: Vec<(usize, TargetSpecification, Substitution)> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(index, outcome)| {
                let (substitute, reason) = self.substitute_for(outcome)?;
                let spec = self.config.target(substitute).ok()?;
                Some((index, spec, Substitution { requested: outcome.target.to_string(), reason }))
            })
            .collect();
        if swaps.is_empty() {
            return Ok(outcomes);
        }
        let substitutes: Vec<TargetSpecification> = swaps.iter().map(|(_, spec, _)| spec.clone()).collect();
        let built = self.dispatch(&template, &substitutes, optimization, progress).await?;
        for ((index, _, substitution), mut outcome) in swaps.into_iter().zip(built) {
            outcome.substitute_for = Some(substitution);
            outcomes[index] = outcome;
        }
        Ok(outcomes)
    }

    /// One round of [`build`](Self::build): plans `targets` and hands them
    /// to the executors the configuration chose.
    async fn dispatch(
        &self,
        template: &PreparedTemplate,
        targets: &[TargetSpecification],
        optimization: &CompilationOptimization,
        progress: ProgressSink,
    ) -> Result<Vec<TargetOutcome>, CompilationError> {
        // The edge: from here on every layer is given the request whole.
        let requests: Vec<BuildRequest> = targets.iter().map(|t| self.request(template, t, optimization)).collect();
        let plans: Vec<Result<BuildPlan, CompilationError>> =
            futures_util::future::join_all(requests.iter().map(|r| self.plan(r))).await;
        if let Some(plan) = plans.iter().find_map(|p| p.as_ref().ok()) {
            self.ensure_lockfile(template, plan).await?;
        }
        match self.config.executor {
            ExecutorChoice::Fleet if !self.config.fleet.is_enabled() => Err(CompilationError::Fleet {
                reason: "--executor fleet needs build agents: list them in [cross_compilation.fleet] agents".into(),
            }),
            ExecutorChoice::Fleet => self.build_on_fleet(template, requests, plans, progress).await,
            ExecutorChoice::Auto if self.config.fleet.is_enabled() => {
                self.build_on_fleet(template, requests, plans, progress).await
            }
            ExecutorChoice::Docker => Ok(self.build_here(template, requests, plans, progress, Chain::DockerOnly).await),
            ExecutorChoice::Auto if self.config.use_docker => {
                Ok(self.build_here(template, requests, plans, progress, Chain::DockerThenLocal).await)
            }
            ExecutorChoice::Auto | ExecutorChoice::Local => {
                Ok(self.build_here(template, requests, plans, progress, Chain::LocalOnly).await)
            }
        }
    }

    /// The Docker connection this manager keeps (made on first use), or why
    /// there is none.
    pub async fn docker(&self) -> Result<Arc<DockerCompilationManager>, String> {
        connect_docker(&self.docker, &self.config.docker_settings(&self.cache_dir)).await
    }

    /// A target's outcome as the caller gets it: judged by
    /// [`self_contained_only`](Self::self_contained_only), then announced
    /// on `progress` as the target's [`BuildEvent::Finished`], as soon as
    /// it is known (not when the whole run is).
    fn finish(&self, outcome: TargetOutcome, progress: &ProgressSink) -> TargetOutcome {
        let outcome = self.self_contained_only(outcome);
        match self.substitute_for(&outcome) {
            // Not the end of it: `build` builds the substitute next.
            Some((substitute, reason)) => progress(engine::BuildEvent::Note {
                triple: outcome.target.to_string(),
                line: format!("no executor can build it ({reason}); building the configured substitute {substitute}"),
            }),
            None => progress(outcome.finished_event()),
        }
        outcome
    }

    /// The substitute `[cross_compilation.substitutes]` names for the
    /// outcome's target, with why nothing built that target, when nothing
    /// could (a failure of the template's own code is never substituted).
    fn substitute_for<'a>(&'a self, outcome: &TargetOutcome) -> Option<(&'a str, String)> {
        let Err(CompilationError::Target { kind: TargetFailure::Unavailable { reason }, .. }) = &outcome.result else {
            return None;
        };
        let substitute = self
            .config
            .substitutes
            .get(&outcome.target.to_string())
            .or_else(|| self.config.substitutes.get(&outcome.target.triple))?;
        Some((substitute.as_str(), reason.clone()))
    }

    /// The path of [`build`](Self::build) without a fleet: every target
    /// through `chain` (Docker, this machine's toolchains, or Docker first),
    /// up to `max_parallel_jobs` at once.
    async fn build_here(
        &self,
        template: &PreparedTemplate,
        requests: Vec<BuildRequest>,
        plans: Vec<Result<BuildPlan, CompilationError>>,
        progress: ProgressSink,
        chain: Chain,
    ) -> Vec<TargetOutcome> {
        let builds = requests.into_iter().zip(plans).map(|(request, plan)| {
            let progress = progress.clone();
            async move {
                let outcome = self.build_one(template, request, plan, &progress, chain).await;
                self.finish(outcome, &progress)
            }
        });
        futures_util::stream::iter(builds).buffered(self.config.max_parallel_jobs).collect().await
    }

    /// One target through `chain`: Docker first when the chain has it (a
    /// failure of the template's own code ends there; any other failure
    /// passes on, and says why), then this machine's toolchains.
    async fn build_one(
        &self,
        template: &PreparedTemplate,
        request: BuildRequest,
        plan: Result<BuildPlan, CompilationError>,
        progress: &ProgressSink,
        chain: Chain,
    ) -> TargetOutcome {
        let name = request.target_name();
        let mut passed_over = Vec::new();
        let outcome = |result, executor, passed_over| TargetOutcome {
            target: request.target_specification(),
            result,
            executor,
            decisions: Vec::new(),
            passed_over,
            substitute_for: None,
        };
        if chain != Chain::LocalOnly {
            let docker = self.docker().await;
            let result = match &docker {
                Ok(docker) if docker.supports(&request.target.triple) => {
                    Ok(docker.build(template, &request, &**progress).await)
                }
                Ok(_) => Err(format!("no Docker build image supports {name}")),
                Err(reason) => Err(reason.clone()),
            };
            match result {
                Ok(Ok(binary)) => return outcome(Ok(binary), Some(docker_executor()), passed_over),
                Ok(Err(error)) if error.is_compile_failure() || chain == Chain::DockerOnly => {
                    return outcome(Err(error), Some(docker_executor()), passed_over);
                }
                Ok(Err(error)) => passed_over.push(format!("docker: {error}")),
                Err(reason) if chain == Chain::DockerOnly => {
                    let error = CompilationError::unavailable(name.clone(), format!("--executor docker: {reason}"));
                    return outcome(Err(error), None, passed_over);
                }
                Err(reason) => passed_over.push(format!("docker: {reason}")),
            }
            if let Some(reason) = passed_over.last() {
                progress(engine::BuildEvent::Note {
                    triple: name.clone(),
                    line: format!("passed over {reason}; building with this machine's toolchains"),
                });
            }
        }
        let result = match plan {
            Ok(_) => {
                let shared = self.shared_cache.as_ref();
                engine::run(&request, template, &self.toolchains, &self.cache_dir, shared, &**progress).await
            }
            Err(e) => Err(e),
        };
        outcome(result, Some(local_executor()), passed_over)
    }

    /// With `self_contained`, fails a binary that needs a library outside
    /// its target's base system (each target judged on its own: the others
    /// keep their binaries). Judged here, on the validation report every
    /// binary arrives with — built here, by an agent, or from a cache — so
    /// it holds whichever executor built it, and a binary that fails it is
    /// still cached: the same build without `self_contained` gets it.
    fn self_contained_only(&self, mut outcome: TargetOutcome) -> TargetOutcome {
        if !self.config.self_contained {
            return outcome;
        }
        if let Ok(binary) = &outcome.result
            && let Err(error) = require_base_system_only(&binary.validation, &outcome.target.target())
        {
            outcome.result = Err(CompilationError::target(outcome.target.to_string(), TargetFailure::Invalid(error)));
        }
        outcome
    }

    /// The fleet path of [`build`](Self::build): each target goes to the
    /// scheduler, which places it on an agent or the local fallback (the
    /// targets this machine can plan), and comes back with the decisions.
    async fn build_on_fleet(
        &self,
        template: &PreparedTemplate,
        requests: Vec<BuildRequest>,
        plans: Vec<Result<BuildPlan, CompilationError>>,
        progress: ProgressSink,
    ) -> Result<Vec<TargetOutcome>, CompilationError> {
        let fleet_error = |reason: String| CompilationError::Fleet { reason };
        // A broken fleet configuration is an error even when the cache
        // answers every target: it would break the next build.
        let options = FleetOptions::from_config(&self.config.fleet).map_err(|e| fleet_error(e.to_string()))?;
        // The binary cache first, every target at once: a hit never reaches an agent.
        let store = match self.config.cache_policy() {
            CachePolicy::Use { max_bytes } => {
                Some(CompilationCache::open(&self.cache_dir, max_bytes).with_shared(self.shared_cache.clone()))
            }
            CachePolicy::Off => None,
        };
        let (store, sink) = (&store, &*progress);
        let lookups = futures_util::future::join_all(requests.iter().zip(&plans).map(|(request, plan)| async move {
            match (plan, store) {
                (Ok(plan), Some(store)) => {
                    let job = BuildJob::new(template, plan, request, &self.cache_dir);
                    engine::cache_lookup(&job, store, sink).await
                }
                _ => Ok(None),
            }
        }))
        .await;
        let mut local_targets = std::collections::BTreeSet::new();
        let mut slots = Vec::new();
        for ((request, plan), found) in requests.iter().zip(plans).zip(lookups) {
            let slot = match (plan, found) {
                (Ok(_), found) => {
                    // By the full name: `T` and `T.2.17` are two plans.
                    local_targets.insert(request.target_name());
                    match found {
                        Err(hit) => FleetSlot::Cached(hit),
                        Ok(inputs) => FleetSlot::Submit { local_error: None, inputs },
                    }
                }
                (Err(error), _) => FleetSlot::Submit { local_error: Some(error), inputs: None },
            };
            slots.push(slot);
        }
        if slots.iter().all(|slot| matches!(slot, FleetSlot::Cached(_))) {
            return Ok(requests
                .iter()
                .zip(slots)
                .map(|(request, slot)| {
                    let FleetSlot::Cached(binary) = slot else { unreachable!("all slots are cached") };
                    let outcome = TargetOutcome {
                        target: request.target_specification(),
                        result: Ok(*binary),
                        executor: None,
                        decisions: Vec::new(),
                        passed_over: Vec::new(),
                        substitute_for: None,
                    };
                    self.finish(outcome, &progress)
                })
                .collect());
        }
        let bundle = rustle_engine::bundle::pack_template(template)
            .map_err(|e| fleet_error(format!("failed to pack the template for the build agents: {e}")))?;
        let fleet = self.fleet(options).await.map_err(|e| fleet_error(e.to_string()))?;
        let source = BuildSource::new(&template.id, bundle.bytes);
        // Room for the build, the transfers and a retry elsewhere.
        let deadline = self.config.compilation_timeout().saturating_mul(2) + std::time::Duration::from_secs(60);
        // Every target the cache did not answer, submitted as one batch;
        // the ones this machine planned may fall back to it.
        let builder = self.local_builder(template);
        let batch: Vec<FleetBuild> = requests
            .iter()
            .zip(&slots)
            .filter(|(_, slot)| matches!(slot, FleetSlot::Submit { .. }))
            .map(|(request, _)| FleetBuild {
                request: BuildRequest { deadline, ..request.clone() },
                progress: progress.clone(),
                local: local_targets.contains(&request.target_name()).then(|| builder.clone()),
            })
            .collect();
        let mut receivers = match fleet.submit(batch, source) {
            Ok(receivers) => receivers.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => slots.iter().map(|_| Err(error.to_string())).collect(),
        }
        .into_iter();
        let pending: Vec<_> = slots
            .iter()
            .map(|slot| match slot {
                FleetSlot::Cached(_) => None,
                FleetSlot::Submit { .. } => receivers.next(),
            })
            .collect();
        // Each target finishes (and says so on `progress`) when its own
        // result is in, not in the order the targets were given.
        let progress = &progress;
        let finishing = requests.iter().zip(pending).zip(slots).map(|((request, receiver), slot)| async move {
            let target = request.target_specification();
            let (local_error, inputs) = match slot {
                FleetSlot::Cached(binary) => {
                    let outcome = TargetOutcome {
                        target,
                        result: Ok(*binary),
                        executor: None,
                        decisions: Vec::new(),
                        passed_over: Vec::new(),
                        substitute_for: None,
                    };
                    return self.finish(outcome, progress);
                }
                FleetSlot::Submit { local_error, inputs } => (local_error, inputs),
            };
            let result = match receiver {
                Some(Ok(receiver)) => receiver.await.map_err(|_| "the fleet stopped before reporting".to_owned()),
                Some(Err(e)) => Err(e),
                None => Err("the job was never submitted".to_owned()),
            };
            let mut outcome = result.unwrap_or_else(|reason| TargetOutcome {
                target: target.clone(),
                result: Err(CompilationError::unavailable(target.to_string(), reason)),
                executor: None,
                decisions: Vec::new(),
                passed_over: Vec::new(),
                substitute_for: None,
            });
            // Nothing took it: add what this machine lacks, with the way to install it.
            if let (
                None,
                Err(CompilationError::Target { kind: TargetFailure::Unavailable { reason: fleet }, .. }),
                Some(local),
            ) = (&outcome.executor, &outcome.result, local_error)
            {
                let local = match local {
                    CompilationError::Target { kind: TargetFailure::Unavailable { reason }, .. } => reason,
                    other => other.to_string(),
                };
                let reason = format!("{fleet}; not buildable here either: {local}");
                outcome.result = Err(CompilationError::unavailable(target.to_string(), reason));
            }
            // An agent's binary is kept under this machine's key (the local
            // fallback's own build stored itself already).
            if let (Some(store), Some(inputs), Ok(binary), Some(Executor::Agent(agent))) =
                (&store, inputs, &outcome.result, &outcome.executor)
            {
                engine::cache_store(store, inputs, binary, &format!("agent {agent}"), &**progress).await;
            }
            self.finish(outcome, progress)
        });
        Ok(futures_util::future::join_all(finishing).await)
    }

    /// The fleet this manager keeps, started on first use and refreshed on
    /// every later one (agents whose connection ended are dialled again at
    /// once, so an agent that restarted is used again).
    async fn fleet(&self, mut options: FleetOptions) -> Result<Arc<Fleet>, crate::fleet::FleetError> {
        let mut kept = self.fleet.lock().await;
        if let Some(fleet) = kept.as_ref() {
            let fleet = fleet.clone();
            drop(kept);
            fleet.refresh().await;
            return Ok(fleet);
        }
        // Measured build speeds steer the next run's placement too.
        options.speeds_file = Some(self.cache_dir.join("fleet-speeds.json"));
        let slots = u32::try_from(self.config.max_parallel_jobs).unwrap_or(u32::MAX);
        let fleet = Arc::new(Fleet::start(options, Some(LocalFallback { slots })).await?);
        *kept = Some(fleet.clone());
        Ok(fleet)
    }

    /// Every agent of the fleet this manager keeps, as `rustle-cross fleet
    /// status` shows it; empty before the first fleet build.
    pub async fn fleet_status(&self) -> Vec<crate::fleet::AgentView> {
        let fleet = self.fleet.lock().await.clone();
        match fleet {
            Some(fleet) => fleet.status().await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Closes the agent connections this manager keeps (agents hear why at
    /// once) and keeps the measured build speeds. Dropping the manager also
    /// stops the fleet, without telling the agents.
    pub async fn shutdown(&self) {
        if let Some(Ok(docker)) = self.docker.get() {
            for name in docker.release_environments().await {
                tracing::warn!(
                    "kept build container {name} (cleanup_containers = false): docker -H {} exec -it {name} bash",
                    docker.host()
                );
            }
        }
        let fleet = self.fleet.lock().await.take();
        if let Some(fleet) = fleet {
            match Arc::try_unwrap(fleet) {
                Ok(fleet) => fleet.shutdown().await,
                // A build still holds it; it stops when that build ends.
                Err(fleet) => drop(fleet),
            }
        }
    }

    /// What every layer is asked for `target` of `template`: the target
    /// apart from its settings, the overrides, and this configuration's
    /// bounds. The façade's one conversion from its public types.
    fn request(
        &self,
        template: &PreparedTemplate,
        target: &TargetSpecification,
        optimization: &CompilationOptimization,
    ) -> BuildRequest {
        let (target, settings) = target.clone().into_parts();
        BuildRequest {
            template: template.id.clone(),
            target,
            settings,
            optimization: optimization.clone(),
            deadline: self.config.compilation_timeout(),
            incremental: self.config.enable_incremental,
            cache: self.config.cache_policy(),
        }
    }

    /// The local engine path as a fallback executor the fleet can run on
    /// its own. The scheduler gives it only the targets its `triples` name;
    /// `engine::run` plans each again and says why if it cannot.
    fn local_builder(&self, template: &PreparedTemplate) -> LocalBuilder {
        let template = Arc::new(template.clone());
        let toolchains = self.toolchains.clone();
        let cache_dir = Arc::new(self.cache_dir.clone());
        let shared = self.shared_cache.clone();
        // Docker before this machine's toolchains, as without a fleet.
        let docker = (self.config.use_docker && self.config.executor == ExecutorChoice::Auto)
            .then(|| (self.docker.clone(), Arc::new(self.config.docker_settings(&self.cache_dir))));
        Arc::new(move |request: BuildRequest, progress: ProgressSink| {
            let (template, toolchains, cache_dir) = (template.clone(), toolchains.clone(), cache_dir.clone());
            let (shared, docker) = (shared.clone(), docker.clone());
            Box::pin(async move {
                if let Some((cell, settings)) = docker {
                    let name = request.target_name();
                    let reason = match connect_docker(&cell, &settings).await {
                        Ok(docker) if docker.supports(&request.target.triple) => {
                            match docker.build(&template, &request, &*progress).await {
                                Ok(binary) => return Ok(binary),
                                Err(error) if error.is_compile_failure() => return Err(error),
                                Err(error) => error.to_string(),
                            }
                        }
                        Ok(_) => format!("no Docker build image supports {name}"),
                        Err(reason) => reason,
                    };
                    progress(engine::BuildEvent::Note {
                        triple: name,
                        line: format!("passed over docker: {reason}; building with this machine's toolchains"),
                    });
                }
                engine::run(&request, &template, &toolchains, &cache_dir, shared.as_ref(), &*progress).await
            })
        })
    }

    /// The cargo command a build of `target` would run (for `--print-command`
    /// and the benchmark's plain-cargo baseline).
    pub async fn cargo_command(
        &self,
        source: &TemplateSource,
        target: &TargetSpecification,
        optimization: &CompilationOptimization,
    ) -> Result<ProcessSpec, CompilationError> {
        let template = source.prepare(&self.cache_dir.join("templates"))?;
        let request = self.request(&template, target, optimization);
        let plan = self.plan(&request).await?;
        BuildJob::new(&template, &plan, &request, &self.cache_dir).cargo_command()
    }

    /// The binary cache key a build of `target` would be stored under, and
    /// what it is computed from (for `rustle-cross cache key`).
    pub async fn cache_key(
        &self,
        source: &TemplateSource,
        target: &TargetSpecification,
        optimization: &CompilationOptimization,
    ) -> Result<CacheKeyInputs, CompilationError> {
        let template = source.prepare(&self.cache_dir.join("templates"))?;
        let request = self.request(&template, target, optimization);
        let plan = self.plan(&request).await?;
        let job = BuildJob::new(&template, &plan, &request, &self.cache_dir);
        let command = job.cargo_command()?;
        CacheKeyInputs::of(&job, &command).await.map_err(|error| {
            CompilationError::target(
                request.target_name(),
                TargetFailure::Io { path: template.dir.clone(), source: error },
            )
        })
    }

    /// The binary cache this configuration uses (whether or not builds use
    /// it), with the shared tier behind it when one is configured.
    pub fn binary_cache(&self) -> CompilationCache {
        CompilationCache::open(&self.cache_dir, self.config.binary_cache_max_bytes())
            .with_shared(self.shared_cache.clone())
    }

    /// The shared binary cache (`binary_cache_shared`), when configured.
    pub fn shared_cache(&self) -> Option<&SharedTier> {
        self.shared_cache.as_ref()
    }

    async fn plan(&self, request: &BuildRequest) -> Result<BuildPlan, CompilationError> {
        engine::plan(&self.toolchains, &request.target, &request.settings).await
    }

    /// Parallel cargo runs must not race to write the template's Cargo.lock:
    /// resolve it once first.
    async fn ensure_lockfile(&self, template: &PreparedTemplate, plan: &BuildPlan) -> Result<(), CompilationError> {
        // A workspace member uses its workspace's lock file: never
        // re-resolve (and so rewrite) that one.
        if template.lock_file().is_some() {
            return Ok(());
        }
        let triple = plan.target.to_string();
        let out = ProcessSpec::new(&plan.toolchain.cargo)
            .args(["generate-lockfile", "--manifest-path"])
            .arg(&template.manifest)
            .env("RUSTC", &plan.toolchain.rustc)
            .timeout(self.config.compilation_timeout())
            .output()
            .await
            .map_err(|source| CompilationError::target(triple.clone(), TargetFailure::Process(source)))?;
        if !out.status.success() {
            return Err(CompilationError::target(
                triple,
                TargetFailure::CargoFailed {
                    status: out.status.to_string(),
                    stderr: out.stderr_text().trim().to_owned(),
                },
            ));
        }
        Ok(())
    }
}

/// The Docker connection of a manager, made once.
type DockerCell = tokio::sync::OnceCell<Result<Arc<DockerCompilationManager>, String>>;

/// The manager's Docker connection: made on first use with `settings`, then kept.
async fn connect_docker(
    cell: &DockerCell,
    settings: &rustle_docker::DockerSettings,
) -> Result<Arc<DockerCompilationManager>, String> {
    cell.get_or_init(|| async {
        DockerCompilationManager::connect(settings.clone()).await.map(Arc::new).map_err(|e| e.to_string())
    })
    .await
    .clone()
}

/// The executors a build without a fleet goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// Docker on this machine, then its toolchains (`use_docker`).
    DockerThenLocal,
    /// Docker only (`--executor docker`).
    DockerOnly,
    /// This machine's toolchains only.
    LocalOnly,
}

/// One target of a fleet build before it is submitted.
#[allow(clippy::large_enum_variant, reason = "one per target of a run, moved a few times")]
enum FleetSlot {
    /// Answered by the binary cache.
    Cached(Box<CompiledBinary>),
    /// For the scheduler: why this machine cannot build it (when it
    /// cannot), and the key to store an agent's binary under (when it can).
    Submit {
        /// Why the local plan failed.
        local_error: Option<CompilationError>,
        /// The binary cache key inputs of the local plan.
        inputs: Option<CacheKeyInputs>,
    },
}

fn failed_all(targets: &[TargetSpecification], error: &CompilationError) -> Vec<TargetOutcome> {
    targets
        .iter()
        .map(|t| TargetOutcome {
            target: t.clone(),
            result: Err(CompilationError::unavailable(t.to_string(), error.to_string())),
            executor: None,
            decisions: Vec::new(),
            passed_over: Vec::new(),
            substitute_for: None,
        })
        .collect()
}

/// Renders a missing requirement as one line.
pub fn describe_missing(missing: &[MissingRequirement]) -> String {
    missing.iter().map(|m| format!("{}: {}", m.what, m.install.join(" | "))).collect::<Vec<_>>().join("; ")
}

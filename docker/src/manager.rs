//! `DockerCompilationManager`: a template built for a target in a Docker
//! build environment — the image found, pulled or built, the environment's
//! container kept warm, dependencies fetched on the network, the compile
//! run without one, the binary validated on the host like any other.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use rustle_engine::engine::{BuildEvent, CompilationError, CompilationMetadata, CompiledBinary, TargetFailure};
use rustle_engine::template::{PreparedTemplate, hex};
use rustle_engine::validate::validate_binary;
use rustle_targets::{BuildRequest, TargetSpecification};
use sha2::{Digest, Sha256};

use crate::container::{self, CompilationEnvironment, ContainerLimits, WORK_DIR};
use crate::error::DockerError;
use crate::images::{DockerImage, FAMILIES, ImageRegistry, ImageSource, families_for, family_tag};
use crate::in_container::{JOB_FILE, RESULT_FILE, SOURCE_FILE, SUBCOMMAND};
use crate::wire::{ContainerJob, ContainerResult, ProgressLine};

/// The default Docker address when neither the settings nor `DOCKER_HOST` name one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How Docker builds are set up (`[cross_compilation]`'s Docker keys).
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// The daemon (`docker_host`, else `DOCKER_HOST`, else the default socket).
    pub host: Option<String>,
    /// A registry to pull rustle-cross's images from before building them
    /// here (`docker_registry` when set explicitly, `RUSTLE_DOCKER_REGISTRY`).
    pub registry: Option<String>,
    /// Images named per target (`docker_images`), tried first.
    pub images: BTreeMap<String, String>,
    /// Remove build containers when done (`cleanup_containers`).
    pub cleanup_containers: bool,
    /// The longest a container may run (`container_timeout_secs`).
    pub container_timeout: Duration,
    /// How long a build environment stays warm after its last build
    /// (`container_idle_secs`); zero: each run removes its own when done.
    pub idle_timeout: Duration,
    /// The cache root (rootfs tarball, fetch records).
    pub cache_dir: PathBuf,
    /// The rustle-cross executable mounted into containers as the builder
    /// (`RUSTLE_CONTAINER_BUILDER`); found next to this program when unset.
    pub builder: Option<PathBuf>,
    /// Memory and CPU limits of build containers.
    pub limits: ContainerLimits,
    /// The Debian mirror images are made from.
    pub mirror: String,
    /// How long connecting to the daemon may take.
    pub connect_timeout: Duration,
}

impl DockerSettings {
    /// Defaults, with the cache at `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: None,
            registry: std::env::var("RUSTLE_DOCKER_REGISTRY").ok().filter(|r| !r.is_empty()),
            images: BTreeMap::new(),
            cleanup_containers: true,
            container_timeout: Duration::from_secs(1800),
            idle_timeout: Duration::from_secs(300),
            cache_dir: cache_dir.into(),
            builder: std::env::var_os("RUSTLE_CONTAINER_BUILDER").map(PathBuf::from),
            limits: ContainerLimits::default(),
            mirror: std::env::var("RUSTLE_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into()),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The daemon address these settings use.
    pub fn resolved_host(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned())
    }
}

/// Builds in Docker build environments.
pub struct DockerCompilationManager {
    docker: Docker,
    host: String,
    settings: DockerSettings,
    images: ImageSource,
    /// Images resolved per family, so a run asks the daemon once.
    resolved: tokio::sync::Mutex<HashMap<String, DockerImage>>,
    /// Environments per key, created once per run.
    environments: tokio::sync::Mutex<HashMap<String, CompilationEnvironment>>,
    jobs: AtomicU64,
}

impl std::fmt::Debug for DockerCompilationManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerCompilationManager").field("host", &self.host).finish_non_exhaustive()
    }
}

impl DockerCompilationManager {
    /// A manager for the daemon at `DOCKER_HOST` (or the default socket),
    /// with the default cache (`~/.cache/rustle-cross`).
    pub async fn new() -> Result<Self, DockerError> {
        let cache = std::env::var_os("RUSTLE_TARGET_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            std::env::home_dir().unwrap_or_else(std::env::temp_dir).join(".cache").join("rustle-cross")
        });
        Self::connect(DockerSettings::new(cache)).await
    }

    /// Connects to the daemon `settings` name and agrees on an API version;
    /// an error says why no daemon answers and how to get one.
    pub async fn connect(settings: DockerSettings) -> Result<Self, DockerError> {
        let host = settings.resolved_host();
        let unavailable = |reason: String| DockerError::DaemonUnavailable { host: host.clone(), reason };
        if let Some(path) = host.strip_prefix("unix://") {
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(unavailable(format!("the socket {path} does not exist (the daemon is not running)")));
                }
                Err(e) => return Err(unavailable(format!("the socket {path} cannot be read: {e}"))),
                Ok(_) => {}
            }
        }
        let docker = Docker::connect_with_host(&host).map_err(|e| unavailable(e.to_string()))?;
        let connecting = async {
            let docker = docker.negotiate_version().await.map_err(|e| unavailable(e.to_string()))?;
            docker.ping().await.map_err(|e| unavailable(e.to_string()))?;
            Ok::<_, DockerError>(docker)
        };
        let docker = tokio::time::timeout(settings.connect_timeout, connecting).await.unwrap_or_else(|_| {
            Err(unavailable(format!("no answer within {}s", settings.connect_timeout.as_secs())))
        })?;
        let images = ImageSource {
            cache_dir: settings.cache_dir.clone(),
            mirror: settings.mirror.clone(),
            registry: settings.registry.clone(),
            pull_timeout: Duration::from_secs(120),
        };
        let manager = Self {
            docker,
            host,
            settings,
            images,
            resolved: Default::default(),
            environments: Default::default(),
            jobs: AtomicU64::new(0),
        };
        manager.remove_strays().await;
        Ok(manager)
    }

    /// The daemon's address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The Docker client (for `doctor` and the tests).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The settings.
    pub fn settings(&self) -> &DockerSettings {
        &self.settings
    }

    /// The daemon's version and storage driver, for `doctor`.
    pub async fn daemon_summary(&self) -> Result<String, DockerError> {
        let version = self.docker.version().await.map_err(|e| DockerError::api("version", e))?;
        let info = self.docker.info().await.map_err(|e| DockerError::api("info", e))?;
        Ok(format!(
            "Docker {} (API {}), storage driver {}",
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default(),
            info.driver.unwrap_or_default()
        ))
    }

    /// The build images the daemon has, from their labels.
    pub async fn image_registry(&self) -> Result<ImageRegistry, DockerError> {
        ImageRegistry::read(&self.docker).await
    }

    /// Whether Docker can build `triple` at all (an image is configured or
    /// a family supports it).
    pub fn supports(&self, triple: &str) -> bool {
        self.settings.images.contains_key(triple) || families_for(triple).next().is_some()
    }

    /// The image a build of `target` uses first: the one `docker_images`
    /// names, else rustle-cross's image of the first family that supports it.
    pub fn get_image_for_target(&self, target: &TargetSpecification) -> Result<String, DockerError> {
        self.candidates(&target.to_string(), target.docker_image.as_deref())
            .into_iter()
            .next()
            .ok_or_else(|| DockerError::NoImageForTarget { target: target.to_string(), known: known_targets() })
    }

    /// The image named for `name` (`T` or `T.2.17`): the target's own
    /// setting, else `docker_images` by full name, then by triple.
    fn configured_image(&self, name: &str, configured: Option<&str>) -> Option<String> {
        let triple = name.split('.').next().unwrap_or(name);
        configured
            .map(str::to_owned)
            .or_else(|| self.settings.images.get(name).or_else(|| self.settings.images.get(triple)).cloned())
    }

    fn candidates(&self, name: &str, configured: Option<&str>) -> Vec<String> {
        let triple = name.split('.').next().unwrap_or(name);
        self.configured_image(name, configured)
            .into_iter()
            .chain(families_for(triple).map(|f| self.family_reference(f)))
            .collect()
    }

    /// `rustle-cross/<family>:<tag>` as the current recipes make it.
    fn family_reference(&self, family: &crate::images::ImageFamily) -> String {
        let base = crate::images::base_tag(&self.settings.mirror);
        format!("rustle-cross/{}:{}", family.name, family_tag(family, &base))
    }

    /// Makes sure every image `targets` need is here: pulled, or built
    /// without a registry (base rootfs first). `log` hears what happens.
    pub async fn pull_required_images(&self, targets: &[TargetSpecification]) -> Result<(), DockerError> {
        for target in targets {
            self.image_for(&target.to_string(), target.docker_image.as_deref(), &|line| tracing::info!("{line}"))
                .await?;
        }
        Ok(())
    }

    /// The references of the images the current recipes make (one per family).
    pub fn current_references(&self) -> Vec<String> {
        FAMILIES.iter().map(|f| self.family_reference(f)).collect()
    }

    /// Removes the build images no current recipe makes, and every stopped
    /// rustle-cross container; returns what it removed.
    pub async fn prune(&self) -> Result<Vec<String>, DockerError> {
        let mut removed = Vec::new();
        for (name, id, _) in container::labelled_containers(&self.docker).await? {
            let running = self
                .docker
                .inspect_container(&id, None)
                .await
                .ok()
                .and_then(|c| c.state.and_then(|s| s.running))
                .unwrap_or(false);
            if !running {
                container::remove(&self.docker, &id).await;
                removed.push(format!("container {name}"));
            }
        }
        let current = self.current_references();
        for image in self.image_registry().await?.images {
            let reference = image.reference();
            if !current.contains(&reference) && image.name.starts_with("rustle-cross/") {
                self.docker
                    .remove_image(&reference, None::<bollard::query_parameters::RemoveImageOptions>, None)
                    .await
                    .map_err(|e| DockerError::api(format!("remove image {reference}"), e))?;
                removed.push(format!("image {reference}"));
            }
        }
        Ok(removed)
    }

    /// Builds (or finds) every family image; returns them.
    pub async fn build_images(&self, log: &(dyn Fn(String) + Send + Sync)) -> Result<Vec<DockerImage>, DockerError> {
        let mut built = Vec::new();
        for family in FAMILIES {
            built.push(self.images.ensure_family(&self.docker, family, log).await?);
        }
        Ok(built)
    }

    /// The image to build `name` in: each candidate in turn (a configured
    /// image is pulled if it is not here), the first that can be had.
    async fn image_for(
        &self,
        name: &str,
        configured: Option<&str>,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<DockerImage, DockerError> {
        let triple = name.split('.').next().unwrap_or(name);
        let mut failures = Vec::new();
        if let Some(reference) = self.configured_image(name, configured) {
            if self.docker.inspect_image(&reference).await.is_err()
                && let Err(e) = crate::images::pull(&self.docker, &reference, Duration::from_secs(120)).await
            {
                log(format!("{e}; trying rustle-cross's own images"));
                failures.push(e.to_string());
            }
            if self.docker.inspect_image(&reference).await.is_ok() {
                let (image_name, tag) = reference.rsplit_once(':').unwrap_or((&reference, "latest"));
                return Ok(DockerImage {
                    name: image_name.to_owned(),
                    tag: tag.to_owned(),
                    supported_targets: vec![triple.to_owned()],
                    toolchain_version: "as the image has it".into(),
                });
            }
        }
        for family in families_for(triple) {
            let mut resolved = self.resolved.lock().await;
            if let Some(image) = resolved.get(family.name) {
                return Ok(image.clone());
            }
            match self.images.ensure_family(&self.docker, family, log).await {
                Ok(image) => {
                    resolved.insert(family.name.to_owned(), image.clone());
                    return Ok(image);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            return Err(DockerError::NoImageForTarget { target: name.to_owned(), known: known_targets() });
        }
        Err(DockerError::ImageBuild { image: format!("an image for {name}"), reason: failures.join("; ") })
    }

    /// The environment (image and warm container) that builds `target`.
    pub async fn setup_compilation_environment(
        &self,
        target: &TargetSpecification,
    ) -> Result<CompilationEnvironment, DockerError> {
        let name = target.to_string();
        let image = self.image_for(&name, target.docker_image.as_deref(), &|line| tracing::info!("{line}")).await?;
        self.environment(&name, &image).await
    }

    async fn environment(&self, target: &str, image: &DockerImage) -> Result<CompilationEnvironment, DockerError> {
        let reference = image.reference();
        let key = format!(
            "{}-{}-u{}",
            target.replace(['.', '_'], "-"),
            &hex(&Sha256::digest(reference.as_bytes()))[..12],
            container::caller_uid()
        );
        let mut environments = self.environments.lock().await;
        if let Some(env) = environments.get(&key) {
            return Ok(env.clone());
        }
        let builder = self.builder()?;
        // Warm for later runs: an environment ends itself after
        // `idle_timeout` without a build (kept for good with cleanup off).
        // With no idle time, each run has its own and removes it.
        let (name, idle) = match (self.settings.cleanup_containers, self.settings.idle_timeout) {
            (false, _) => (format!("{key}-kept"), None),
            (true, idle) if idle.is_zero() => {
                (format!("{key}-p{}", std::process::id()), Some(Duration::from_secs(3600)))
            }
            (true, idle) => (key.clone(), Some(idle)),
        };
        let env = container::ensure_environment(
            &self.docker,
            &name,
            idle,
            &key,
            &reference,
            target,
            &builder,
            self.settings.limits,
        )
        .await?;
        environments.insert(key, env.clone());
        Ok(env)
    }

    /// The rustle-cross executable that runs inside containers.
    fn builder(&self) -> Result<PathBuf, DockerError> {
        if let Some(path) = &self.settings.builder {
            return path.canonicalize().map_err(|e| DockerError::NoBuilder(format!("{}: {e}", path.display())));
        }
        let exe = std::env::current_exe().map_err(|e| DockerError::NoBuilder(e.to_string()))?;
        if exe.file_stem().is_some_and(|s| s == "rustle-cross") {
            return Ok(exe);
        }
        // A program embedding the library (rustle-deploy, a test) next to
        // the CLI, or one directory below it (cargo's deps/).
        let dir = exe.parent().unwrap_or(Path::new("."));
        [dir.join("rustle-cross"), dir.join("../rustle-cross")]
            .into_iter()
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
            .ok_or_else(|| DockerError::NoBuilder(format!("none next to {}", exe.display())))
    }

    /// Builds `request` for `template` in Docker: the environment of the
    /// first image that can be had and started for the target (the next
    /// one when an image fails to start), then [`compile_in_docker`](Self::compile_in_docker).
    pub async fn build(
        &self,
        template: &PreparedTemplate,
        request: &BuildRequest,
        on_event: &(dyn Fn(BuildEvent) + Send + Sync),
    ) -> Result<CompiledBinary, CompilationError> {
        let name = request.target_name();
        let unavailable = |e: DockerError| CompilationError::unavailable(name.clone(), e.to_string());
        let log = |line: String| on_event(BuildEvent::Note { triple: name.clone(), line });
        let image = self.image_for(&name, request.settings.docker_image.as_deref(), &log).await.map_err(unavailable)?;
        let env = match self.environment(&name, &image).await {
            Ok(env) => env,
            Err(first) => {
                // The spec's "retry with different Docker images".
                let mut env = Err(first);
                for family in families_for(&request.target.triple).filter(|f| !image.name.ends_with(f.name)) {
                    log(format!("image {} failed to start; trying the {} image", image.reference(), family.name));
                    if let Ok(other) = self.images.ensure_family(&self.docker, family, &log).await {
                        env = self.environment(&name, &other).await;
                        if env.is_ok() {
                            break;
                        }
                    }
                }
                env.map_err(unavailable)?
            }
        };
        let result = self.compile_in_docker(template, request, &env, on_event).await;
        // An environment that ended itself (idle) just as this build began:
        // once more in a new one. Not after a deadline (it removed the
        // container on purpose) or a failure of the template's code.
        let timed_out = |e: &CompilationError| matches!(e.failure(), Some(TargetFailure::Timeout { .. }));
        if let Err(error) = &result
            && !error.is_compile_failure()
            && !timed_out(error)
            && !container::is_running(&self.docker, &env.container_id).await
        {
            log(format!("build environment {} ended; starting a new one", env.container_name));
            self.forget(&env);
            let env = self.environment(&name, &image).await.map_err(unavailable)?;
            return self.compile_in_docker(template, request, &env, on_event).await;
        }
        result
    }

    /// Builds `request` in `environment`: the template goes in as a source
    /// bundle (the host's directory is never mounted), dependencies are
    /// fetched in a networked one-off container when the lock file or
    /// target changed, the compile runs offline in the environment, and
    /// the binary comes back through the archive API and is validated here.
    pub async fn compile_in_docker(
        &self,
        template: &PreparedTemplate,
        request: &BuildRequest,
        environment: &CompilationEnvironment,
        on_event: &(dyn Fn(BuildEvent) + Send + Sync),
    ) -> Result<CompiledBinary, CompilationError> {
        match self.compile_once(template, request, environment, on_event, false).await {
            // The record said the dependencies were fetched, but the volume
            // lost them (pruned, recreated): fetch again, once.
            Err(error) if !error.is_compile_failure() && error.to_string().contains("offline") => {
                on_event(BuildEvent::Note {
                    triple: request.target_name(),
                    line: "the offline build lacked dependencies; fetching them again".into(),
                });
                self.compile_once(template, request, environment, on_event, true).await
            }
            other => other,
        }
    }

    async fn compile_once(
        &self,
        template: &PreparedTemplate,
        request: &BuildRequest,
        environment: &CompilationEnvironment,
        on_event: &(dyn Fn(BuildEvent) + Send + Sync),
        force_fetch: bool,
    ) -> Result<CompiledBinary, CompilationError> {
        let start = Instant::now();
        let name = request.target_name();
        let fail = |kind: TargetFailure| CompilationError::target(name.clone(), kind);
        let infra = |e: DockerError| match e {
            DockerError::Timeout(timeout) => fail(TargetFailure::Timeout { timeout }),
            other => CompilationError::unavailable(name.clone(), other.to_string()),
        };
        let bundle = rustle_engine::bundle::pack_template(template).map_err(|e| {
            CompilationError::unavailable(name.clone(), format!("packing the template for Docker: {e}"))
        })?;
        let job_id = format!("{}-{}", std::process::id(), self.jobs.fetch_add(1, Ordering::Relaxed));
        let job = ContainerJob {
            template_key: template.id.0.clone(),
            target: request.target_specification(),
            optimization: request.optimization.clone(),
            incremental: request.incremental,
            deadline_secs: request.deadline.as_secs().max(1),
        };
        let job_json =
            serde_json::to_vec(&job).map_err(|e| CompilationError::unavailable(name.clone(), e.to_string()))?;
        let job_dir = format!("{WORK_DIR}/jobs/{job_id}");
        container::upload(
            &self.docker,
            &environment.container_id,
            WORK_DIR,
            &[
                (&format!("jobs/{job_id}/{JOB_FILE}"), &job_json),
                (&format!("jobs/{job_id}/{SOURCE_FILE}"), &bundle.bytes),
            ],
        )
        .await
        .map_err(infra)?;
        let deadline = self.settings.container_timeout.min(request.deadline + Duration::from_secs(30));
        let builder = container::BUILDER_PATH.to_owned();

        let fetch_key = fetch_key(template, &name, &environment.image);
        let record =
            self.settings.cache_dir.join("docker").join("fetched").join(&environment.work_volume).join(&template.id.0);
        if force_fetch || std::fs::read_to_string(&record).ok().as_deref() != Some(fetch_key.as_str()) {
            on_event(BuildEvent::Note {
                triple: name.clone(),
                line: format!("fetching dependencies in {}", environment.image),
            });
            let cmd = vec![builder.clone(), SUBCOMMAND.into(), "fetch".into(), job_dir.clone()];
            let out = container::run_networked(&self.docker, environment, &job_id, cmd, deadline, self.settings.limits)
                .await
                .map_err(infra)?;
            if out.exit_code != 0 {
                return Err(fail(TargetFailure::CargoFailed {
                    status: format!("exit {}", out.exit_code),
                    stderr: out.stderr_tail.trim().to_owned(),
                }));
            }
            if let Some(dir) = record.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(&record, &fetch_key);
        }

        let triple = name.clone();
        let on_line = move |line: &str| match serde_json::from_str::<ProgressLine>(line) {
            Ok(progress) => on_event(progress.into_event(&triple)),
            Err(_) => on_event(BuildEvent::Log { triple: triple.clone(), line: line.to_owned() }),
        };
        let cmd = vec![builder, SUBCOMMAND.into(), "build".into(), job_dir.clone()];
        let out = container::exec(&self.docker, environment, cmd, deadline, &on_line).await.map_err(|e| {
            // A killed environment is recreated by the next build.
            if matches!(e, DockerError::Timeout(_)) {
                self.forget(environment);
            }
            infra(e)
        })?;
        let files = container::download(&self.docker, &environment.container_id, &format!("{job_dir}/out")).await;
        let files = match files {
            Ok(files) => files,
            Err(e) => {
                return Err(fail(TargetFailure::CargoFailed {
                    status: format!("exit {}", out.exit_code),
                    stderr: format!("{}\n(no result: {e})", out.stderr_tail.trim()),
                }));
            }
        };
        let result = files
            .iter()
            .find(|(n, _)| n == RESULT_FILE)
            .and_then(|(_, bytes)| serde_json::from_slice::<ContainerResult>(bytes).ok());
        let (file_name, checksum, metadata) = match result {
            Some(ContainerResult::Built { file_name, checksum, metadata }) => (file_name, checksum, metadata),
            Some(ContainerResult::Failed { compile_failure: true, message }) => {
                return Err(fail(TargetFailure::CompileFailed { diagnostics: message }));
            }
            Some(ContainerResult::Failed { message, .. }) => {
                return Err(fail(TargetFailure::CargoFailed { status: "in the container".into(), stderr: message }));
            }
            None => {
                return Err(fail(TargetFailure::CargoFailed {
                    status: format!("exit {}", out.exit_code),
                    stderr: out.stderr_tail.trim().to_owned(),
                }));
            }
        };
        let binary_data = files
            .into_iter()
            .find(|(n, _)| *n == file_name)
            .map(|(_, b)| b)
            .ok_or_else(|| fail(TargetFailure::NoArtifact { bin: file_name.clone() }))?;
        let target = request.target.clone();
        let (binary_data, validation, actual) = tokio::task::spawn_blocking(move || {
            let validation = validate_binary(&binary_data, &target);
            let actual = hex(&Sha256::digest(&binary_data));
            (binary_data, validation, actual)
        })
        .await
        .map_err(|e| CompilationError::unavailable(name.clone(), e.to_string()))?;
        let validation = validation.map_err(|e| fail(TargetFailure::Invalid(e)))?;
        if actual != checksum {
            return Err(CompilationError::unavailable(
                name.clone(),
                format!("the binary from the container has checksum {actual}, not the {checksum} the builder reported"),
            ));
        }
        Ok(CompiledBinary {
            target: request.target_specification(),
            file_name,
            size: binary_data.len() as u64,
            checksum: actual,
            binary_data,
            compilation_time: start.elapsed(),
            metadata: CompilationMetadata {
                toolchain: format!("{} in {}", metadata.toolchain, environment.image),
                ..metadata
            },
            validation,
            cached: None,
        })
    }

    fn forget(&self, environment: &CompilationEnvironment) {
        if let Ok(mut environments) = self.environments.try_lock() {
            environments.retain(|_, env| env.container_id != environment.container_id);
        }
    }

    /// Removes every rustle-cross container of this daemon (build
    /// environments and one-off runs, this run's and any other's); returns
    /// their names. For operators (`rustle-cross images prune` removes the
    /// stopped ones only).
    pub async fn cleanup_build_containers(&self) -> Result<Vec<String>, DockerError> {
        let containers = container::labelled_containers(&self.docker).await?;
        for (_, id, _) in &containers {
            container::remove(&self.docker, id).await;
        }
        self.environments.lock().await.clear();
        Ok(containers.into_iter().map(|(name, _, _)| name).collect())
    }

    /// The end of a run: with `cleanup_containers`, the build environments
    /// this manager used stay warm until they have been idle for
    /// `idle_timeout` (then they remove themselves), or are removed now when
    /// that is zero; without, they are kept and their names returned (to say
    /// where they are).
    pub async fn release_environments(&self) -> Vec<String> {
        let environments: Vec<CompilationEnvironment> =
            self.environments.lock().await.drain().map(|(_, env)| env).collect();
        if !self.settings.cleanup_containers {
            return environments.into_iter().map(|env| env.container_name).collect();
        }
        // Warm ones end themselves when idle; per-run ones go now.
        if self.settings.idle_timeout.is_zero() {
            for env in environments {
                container::remove(&self.docker, &env.container_id).await;
            }
        }
        Vec::new()
    }

    /// At start: containers a crashed run left behind are removed — every
    /// stopped one, and fetch containers older than `container_timeout`
    /// (build environments end themselves when idle).
    async fn remove_strays(&self) {
        let Ok(containers) = container::labelled_containers(&self.docker).await else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for (name, id, purpose) in containers {
            let Ok(inspect) = self.docker.inspect_container(&id, None).await else { continue };
            let running = inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            let started: u64 = inspect
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(container::LABEL_STARTED_AT))
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let overdue = purpose == "fetch" && started + self.settings.container_timeout.as_secs() < now;
            if !running || overdue {
                tracing::info!("removing container {name} left by an earlier run");
                container::remove(&self.docker, &id).await;
            }
        }
    }
}

/// What decides whether the dependencies must be fetched again: the
/// manifest, the lock file, the target and the image.
fn fetch_key(template: &PreparedTemplate, target: &str, image: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        std::fs::read(&template.manifest).unwrap_or_default(),
        template.lock_file().and_then(|l| std::fs::read(l).ok()).unwrap_or_default(),
        target.as_bytes().to_vec(),
        image.as_bytes().to_vec(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(&part);
    }
    hex(&hasher.finalize())
}

fn known_targets() -> String {
    FAMILIES.iter().flat_map(|f| f.targets.iter().copied()).collect::<Vec<_>>().join(", ")
}

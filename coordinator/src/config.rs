//! Configuration: the `[cross_compilation]` section of a TOML file,
//! overridden by `RUSTLE_*` environment variables, overridden by flags.
//! Unknown keys are errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_engine::toolchain::ToolchainConfig;
use rustle_targets::{CLibraryLinking, CachePolicy, RULES, TargetError, TargetSpecification};
use serde::{Deserialize, Serialize};

/// Per-target settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetOverrides {
    /// Linker to use instead of the rules table's.
    pub linker: Option<String>,
    /// Extra rustc flags.
    pub rustflags: Vec<String>,
    /// Cargo features to enable.
    pub features: Vec<String>,
}

/// The `[cross_compilation]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossCompilationConfig {
    /// Build in Docker when no agent can take a target (when Docker builds
    /// are available).
    pub use_docker: bool,
    /// Registry for build images (`RUSTLE_DOCKER_REGISTRY`): rustle-cross's
    /// images are pulled from it before being built here. The default,
    /// `docker.io`, does not serve them: with it nothing is pulled.
    pub docker_registry: String,
    /// The Docker daemon (`unix:///path`, `tcp://host:port`); empty:
    /// `DOCKER_HOST`, else `/var/run/docker.sock`.
    pub docker_host: String,
    /// Which executor builds (`RUSTLE_EXECUTOR`, `--executor`): `auto` (the
    /// fleet, then Docker when `use_docker`, then this machine), or only
    /// `fleet`, `docker` or `local`.
    pub executor: ExecutorChoice,
    /// Remove build containers when done.
    pub cleanup_containers: bool,
    /// Deadline for one container.
    pub container_timeout_secs: u64,
    /// How long a Docker build environment stays warm after its last build
    /// before it removes itself; 0: each run removes its own when done.
    pub container_idle_secs: u64,
    /// Install missing rustup targets automatically.
    pub auto_install_toolchains: bool,
    /// The rustup program (`RUSTLE_RUSTUP_PATH`).
    pub rustup_path: PathBuf,
    /// How often `rustup update` runs at most.
    pub toolchain_update_interval_days: u64,
    /// Targets built at once.
    pub max_parallel_jobs: usize,
    /// Deadline for one target's build (`RUSTLE_CROSS_COMPILE_TIMEOUT`).
    pub compilation_timeout_secs: u64,
    /// rustc incremental compilation for the template's own crate.
    pub enable_incremental: bool,
    /// Keep target directories between runs and finished binaries in the
    /// binary cache (off: every build is cold and nothing is stored).
    pub cache_enabled: bool,
    /// Answer builds from the binary cache (`--no-cache` turns it off for
    /// one run; target directories stay warm).
    pub binary_cache: bool,
    /// Size cap of the binary cache, in MiB; least recently used binaries
    /// go first.
    pub binary_cache_max_mb: u64,
    /// A binary cache shared with other machines, behind this machine's own
    /// (`RUSTLE_BINARY_CACHE_SHARED`): `redis://HOST[:PORT][/DB]` or
    /// `webdav+http(s)://HOST[:PORT]/PATH/`; empty for none. Its password
    /// may come from `RUSTLE_BINARY_CACHE_SHARED_PASSWORD` instead.
    pub binary_cache_shared: String,
    /// How long one operation on the shared cache may take before the store
    /// counts as down for the run (a warning, and local builds).
    pub binary_cache_shared_timeout_ms: u64,
    /// Targets `--all-available` considers; empty means every target in
    /// the rules table.
    pub supported_targets: Vec<String>,
    /// Build image per target.
    pub docker_images: BTreeMap<String, String>,
    /// Cache root (`RUSTLE_TARGET_CACHE_DIR`); default `~/.cache/rustle-cross`.
    pub target_cache_dir: Option<PathBuf>,
    /// Preferred toolchain when several can build a target.
    pub default_toolchain: String,
    /// Extra toolchains: name -> directory with `rustc` and `cargo`.
    pub custom_toolchains: BTreeMap<String, PathBuf>,
    /// Per-target settings, by triple.
    pub targets: BTreeMap<String, TargetOverrides>,
    /// Build agents to dial (`[cross_compilation.fleet]`); none configured
    /// means every target builds with the local engine.
    pub fleet: FleetConfig,
    /// Fail a target whose binary needs a shared library outside its base
    /// system (`--self-contained`, `RUSTLE_SELF_CONTAINED`); off, such
    /// libraries are only reported.
    pub self_contained: bool,
    /// How the C libraries of the templates' `-sys` crates are linked
    /// (`c_libraries = "static" | "dynamic"`, `--c-libraries`,
    /// `RUSTLE_C_LIBRARIES`): static by default, so a binary runs on a host
    /// without the library's package.
    pub c_libraries: CLibraryLinking,
    /// Compatible targets to build instead of one no executor can build
    /// (`[cross_compilation.substitutes]`, `--substitute FROM=TO`), e.g.
    /// `"x86_64-pc-windows-msvc" = "x86_64-pc-windows-gnu"`. None unless
    /// set; a substitution is said in the progress, the summary, `--json`
    /// and the inventory manifest.
    pub substitutes: BTreeMap<String, String>,
}

/// The registry `docker_registry` names by default; it serves none of
/// rustle-cross's images, so nothing is pulled from it.
pub const DEFAULT_DOCKER_REGISTRY: &str = "docker.io";

/// Which executor builds a run's targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorChoice {
    /// The fleet's agents, then Docker (with `use_docker`), then this machine.
    #[default]
    Auto,
    /// Only the fleet's agents.
    Fleet,
    /// Only Docker on this machine.
    Docker,
    /// Only this machine's toolchains.
    Local,
}

impl std::str::FromStr for ExecutorChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "fleet" => Ok(Self::Fleet),
            "docker" => Ok(Self::Docker),
            "local" => Ok(Self::Local),
            other => Err(format!("unknown executor `{other}`: one of auto, fleet, docker, local")),
        }
    }
}

use crate::shared_cache::{PASSWORD_ENV, SharedStoreAddress, SharedStoreAddressError};

pub use crate::fleet::config::{AgentEndpoint, DEFAULT_AGENT_PORT, FleetConfig, FleetConfigError};

impl Default for CrossCompilationConfig {
    fn default() -> Self {
        Self {
            use_docker: false,
            docker_registry: DEFAULT_DOCKER_REGISTRY.into(),
            docker_host: String::new(),
            executor: ExecutorChoice::Auto,
            cleanup_containers: true,
            container_timeout_secs: 1800,
            container_idle_secs: 300,
            auto_install_toolchains: true,
            rustup_path: "rustup".into(),
            toolchain_update_interval_days: 7,
            max_parallel_jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            compilation_timeout_secs: 1800,
            enable_incremental: true,
            cache_enabled: true,
            binary_cache: true,
            binary_cache_max_mb: 4096,
            binary_cache_shared: String::new(),
            binary_cache_shared_timeout_ms: 3000,
            supported_targets: Vec::new(),
            docker_images: BTreeMap::new(),
            target_cache_dir: None,
            default_toolchain: "stable".into(),
            custom_toolchains: BTreeMap::new(),
            targets: BTreeMap::new(),
            fleet: FleetConfig::default(),
            self_contained: false,
            c_libraries: CLibraryLinking::Static,
            substitutes: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    cross_compilation: CrossCompilationConfig,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("failed to read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown key, wrong type).
    #[error("invalid config file {}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// An environment variable has an unusable value.
    #[error("invalid {name}={value:?}: {expected}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A value is out of range.
    #[error("invalid `{key}` = {value}: {expected}")]
    Value {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// `binary_cache_shared` is not a store address.
    #[error(transparent)]
    SharedCache(#[from] SharedStoreAddressError),
    /// The `[cross_compilation.fleet]` section is unusable.
    #[error(transparent)]
    Fleet(#[from] FleetConfigError),
    /// A target named in the configuration is not a target.
    #[error("invalid target in `{key}`: {source}")]
    Target {
        /// The key that named it.
        key: String,
        /// Why.
        #[source]
        source: TargetError,
    },
}

/// A `1`/`true` or `0`/`false` variable.
fn env_flag(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ConfigError::Env { name, value: value.to_owned(), expected: "1 or true, 0 or false" }),
    }
}

impl CrossCompilationConfig {
    /// Parses a config file's text.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        file.cross_compilation.validate()?;
        Ok(file.cross_compilation)
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(path, &text)
    }

    /// Applies the `RUSTLE_*` variables found by `lookup` (pass
    /// `|k| std::env::var(k).ok()` for the process environment).
    pub fn apply_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if let Some(v) = lookup("RUSTLE_DOCKER_REGISTRY") {
            self.docker_registry = v;
        }
        if let Some(v) = lookup("RUSTLE_EXECUTOR") {
            self.executor = v.parse().map_err(|_| ConfigError::Env {
                name: "RUSTLE_EXECUTOR",
                value: v.clone(),
                expected: "auto, fleet, docker or local",
            })?;
        }
        if let Some(v) = lookup("RUSTLE_USE_DOCKER") {
            self.use_docker = env_flag("RUSTLE_USE_DOCKER", &v)?;
        }
        if let Some(v) = lookup("RUSTLE_RUSTUP_PATH") {
            self.rustup_path = v.into();
        }
        if let Some(v) = lookup("RUSTLE_CROSS_COMPILE_TIMEOUT") {
            self.compilation_timeout_secs = v.trim().parse().ok().filter(|s| *s > 0).ok_or(ConfigError::Env {
                name: "RUSTLE_CROSS_COMPILE_TIMEOUT",
                value: v.clone(),
                expected: "a whole number of seconds greater than 0",
            })?;
        }
        if let Some(v) = lookup("RUSTLE_TARGET_CACHE_DIR") {
            self.target_cache_dir = Some(v.into());
        }
        if let Some(v) = lookup("RUSTLE_BINARY_CACHE_SHARED") {
            self.binary_cache_shared = v;
        }
        if let Some(v) = lookup("RUSTLE_SELF_CONTAINED") {
            self.self_contained = env_flag("RUSTLE_SELF_CONTAINED", &v)?;
        }
        if let Some(v) = lookup("RUSTLE_C_LIBRARIES") {
            self.c_libraries = v.trim().parse().map_err(|_| ConfigError::Env {
                name: "RUSTLE_C_LIBRARIES",
                value: v.clone(),
                expected: "static or dynamic",
            })?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks the values the file and the environment cannot check alone
    /// (run by [`from_toml`](Self::from_toml) and [`apply_env`](Self::apply_env);
    /// again after command-line overrides).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.fleet.validate()?;
        if self.max_parallel_jobs == 0 {
            return Err(ConfigError::Value { key: "max_parallel_jobs", value: "0".into(), expected: "at least 1" });
        }
        if self.binary_cache_max_mb == 0 {
            return Err(ConfigError::Value {
                key: "binary_cache_max_mb",
                value: "0".into(),
                expected: "at least 1 (turn the cache off with binary_cache = false)",
            });
        }
        if self.binary_cache_shared_timeout_ms == 0 {
            return Err(ConfigError::Value {
                key: "binary_cache_shared_timeout_ms",
                value: "0".into(),
                expected: "at least 1 millisecond",
            });
        }
        self.shared_store_address()?;
        if self.compilation_timeout_secs == 0 {
            return Err(ConfigError::Value {
                key: "compilation_timeout_secs",
                value: "0".into(),
                expected: "at least 1 second",
            });
        }
        for t in &self.supported_targets {
            TargetSpecification::from_triple(t)
                .map_err(|source| ConfigError::Target { key: "supported_targets".into(), source })?;
        }
        for t in self.targets.keys().chain(self.docker_images.keys()) {
            TargetSpecification::from_triple(t).map_err(|source| ConfigError::Target { key: t.clone(), source })?;
        }
        for (from, to) in &self.substitutes {
            for t in [from, to] {
                TargetSpecification::from_triple(t)
                    .map_err(|source| ConfigError::Target { key: format!("substitutes.\"{from}\""), source })?;
            }
            if from == to {
                return Err(ConfigError::Value {
                    key: "substitutes",
                    value: format!("{from} = {to}"),
                    expected: "a different target to build instead",
                });
            }
            if self.substitutes.contains_key(to) {
                return Err(ConfigError::Value {
                    key: "substitutes",
                    value: format!("{from} = {to}, {to} = {}", self.substitutes[to]),
                    expected: "a substitute that is not itself substituted (one step only)",
                });
            }
        }
        Ok(())
    }

    /// The binary cache's size cap in bytes (`binary_cache_max_mb`).
    pub fn binary_cache_max_bytes(&self) -> u64 {
        self.binary_cache_max_mb.saturating_mul(1024 * 1024)
    }

    /// The shared binary cache's address (`binary_cache_shared`), if any.
    pub fn shared_store_address(&self) -> Result<Option<SharedStoreAddress>, SharedStoreAddressError> {
        if self.binary_cache_shared.trim().is_empty() {
            return Ok(None);
        }
        SharedStoreAddress::parse(&self.binary_cache_shared, std::env::var(PASSWORD_ENV).ok()).map(Some)
    }

    /// The bound of one shared-cache operation.
    pub fn binary_cache_shared_timeout(&self) -> Duration {
        Duration::from_millis(self.binary_cache_shared_timeout_ms)
    }

    /// How builds use the binary cache.
    pub fn cache_policy(&self) -> CachePolicy {
        if self.cache_enabled && self.binary_cache {
            CachePolicy::Use { max_bytes: self.binary_cache_max_bytes() }
        } else {
            CachePolicy::Off
        }
    }

    /// The cache root.
    pub fn cache_dir(&self) -> PathBuf {
        self.target_cache_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::home_dir().map(|h| h.join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("rustle-cross")
        })
    }

    /// The per-target deadline.
    pub fn compilation_timeout(&self) -> Duration {
        Duration::from_secs(self.compilation_timeout_secs)
    }

    /// The targets `--all-available` considers.
    pub fn supported_target_names(&self) -> Vec<String> {
        if self.supported_targets.is_empty() {
            RULES.iter().map(|r| r.triple.to_owned()).collect()
        } else {
            self.supported_targets.clone()
        }
    }

    /// A target with this configuration's per-target settings applied.
    pub fn target(&self, name: &str) -> Result<TargetSpecification, TargetError> {
        Ok(self.configure(TargetSpecification::from_triple(name)?))
    }

    /// Applies the per-target settings (`[cross_compilation.targets.T]`,
    /// `docker_images`) to a target, keyed by its full name (with a glibc
    /// floor) first, then by its triple.
    pub fn configure(&self, mut spec: TargetSpecification) -> TargetSpecification {
        let name = spec.to_string();
        if let Some(o) = self.targets.get(&name).or_else(|| self.targets.get(&spec.triple)) {
            spec.linker = o.linker.clone().or(spec.linker);
            spec.rustflags.extend(o.rustflags.iter().cloned());
            spec.features.extend(o.features.iter().cloned());
        }
        spec.docker_image = self.docker_images.get(&name).or_else(|| self.docker_images.get(&spec.triple)).cloned();
        spec.c_libraries = self.c_libraries;
        spec
    }

    /// The Docker settings, with the cache at `cache_dir`.
    pub fn docker_settings(&self, cache_dir: &Path) -> rustle_docker::DockerSettings {
        let mut settings = rustle_docker::DockerSettings::new(cache_dir);
        if !self.docker_host.trim().is_empty() {
            settings.host = Some(self.docker_host.trim().to_owned());
        }
        if self.docker_registry != DEFAULT_DOCKER_REGISTRY && !self.docker_registry.trim().is_empty() {
            settings.registry = Some(self.docker_registry.trim().trim_end_matches('/').to_owned());
        }
        settings.images = self.docker_images.clone();
        settings.cleanup_containers = self.cleanup_containers;
        settings.container_timeout = Duration::from_secs(self.container_timeout_secs);
        settings.idle_timeout = Duration::from_secs(self.container_idle_secs);
        settings
    }

    /// The toolchain manager's settings, with the cache at `cache_dir`.
    pub fn toolchain_config(&self, cache_dir: &Path) -> ToolchainConfig {
        ToolchainConfig {
            auto_install: self.auto_install_toolchains,
            update_interval: Duration::from_secs(self.toolchain_update_interval_days * 24 * 3600),
            default_toolchain: self.default_toolchain.clone(),
            custom_toolchains: self.custom_toolchains.clone(),
            rustup_path: self.rustup_path.clone(),
            cache_dir: cache_dir.to_path_buf(),
            ..ToolchainConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
[cross_compilation]
use_docker = true
docker_registry = "docker.io"
cleanup_containers = true
container_timeout_secs = 1800
auto_install_toolchains = true
rustup_path = "rustup"
toolchain_update_interval_days = 7
max_parallel_jobs = 8
compilation_timeout_secs = 600
enable_incremental = true
cache_enabled = true
supported_targets = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-apple-darwin", "aarch64-apple-darwin", "x86_64-pc-windows-gnu"]

[cross_compilation.docker_images]
"x86_64-unknown-linux-gnu" = "rustembedded/cross:x86_64-unknown-linux-gnu"
"aarch64-unknown-linux-gnu" = "rustembedded/cross:aarch64-unknown-linux-gnu"
"#;

    #[test]
    fn the_specs_example_config_loads() {
        let c = CrossCompilationConfig::from_toml(Path::new("c.toml"), SPEC_EXAMPLE).unwrap();
        assert_eq!(c.max_parallel_jobs, 8);
        assert_eq!(c.compilation_timeout_secs, 600);
        assert_eq!(c.supported_targets.len(), 5);
        assert_eq!(c.docker_images.len(), 2);
        let t = c.target("aarch64-unknown-linux-gnu").unwrap();
        assert_eq!(t.docker_image.as_deref(), Some("rustembedded/cross:aarch64-unknown-linux-gnu"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\nmax_paralel_jobs = 3\n")
            .unwrap_err();
        assert!(err.to_string().contains("max_paralel_jobs"), "{err}");
        let err = CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compile]\n").unwrap_err();
        assert!(err.to_string().contains("cross_compile"), "{err}");
        let err = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation.targets.aarch64-unknown-linux-gnu]\nlinkr = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("linkr"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err =
            CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\nmax_parallel_jobs = 0\n")
                .unwrap_err();
        assert!(err.to_string().contains("max_parallel_jobs"), "{err}");
        let err = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation]\nsupported_targets = [\"arm64-linux\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("arm64-linux"), "{err}");
    }

    #[test]
    fn a_shared_cache_that_is_not_a_store_address_is_an_error_naming_the_key() {
        let err = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation]\nbinary_cache_shared = \"memcached://cache.lan\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("binary_cache_shared") && err.to_string().contains("memcached"), "{err}");
        let err = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation]\nbinary_cache_shared = \"redis://h\"\nbinary_cache_shared_timeout_ms = 0\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("binary_cache_shared_timeout_ms"), "{err}");
        let none = CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\n").unwrap();
        assert!(none.shared_store_address().unwrap().is_none(), "no shared store unless one is named");
    }

    #[test]
    fn env_overrides_file() {
        let c = CrossCompilationConfig::from_toml(Path::new("c.toml"), SPEC_EXAMPLE).unwrap();
        let env: BTreeMap<&str, &str> = [
            ("RUSTLE_DOCKER_REGISTRY", "registry.local:5000"),
            ("RUSTLE_RUSTUP_PATH", "/opt/rustup"),
            ("RUSTLE_CROSS_COMPILE_TIMEOUT", "42"),
            ("RUSTLE_TARGET_CACHE_DIR", "/var/cache/rc"),
            ("RUSTLE_BINARY_CACHE_SHARED", "redis://cache.lan/2"),
        ]
        .into();
        let c = c.apply_env(|k| env.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(c.shared_store_address().unwrap().map(|a| a.name()).as_deref(), Some("redis://cache.lan:6379/2"));
        assert_eq!(c.docker_registry, "registry.local:5000");
        assert_eq!(c.rustup_path, PathBuf::from("/opt/rustup"));
        assert_eq!(c.compilation_timeout(), Duration::from_secs(42));
        assert_eq!(c.cache_dir(), PathBuf::from("/var/cache/rc"));
        let err = CrossCompilationConfig::default()
            .apply_env(|k| (k == "RUSTLE_CROSS_COMPILE_TIMEOUT").then(|| "ten".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("RUSTLE_CROSS_COMPILE_TIMEOUT"), "{err}");
    }

    #[test]
    fn substitutes_name_known_targets_one_step_only() {
        let parse = |text: &str| CrossCompilationConfig::from_toml(Path::new("c.toml"), text);
        let ok = parse("[cross_compilation.substitutes]\n\"x86_64-pc-windows-msvc\" = \"x86_64-pc-windows-gnu\"\n")
            .expect("parses");
        assert_eq!(ok.substitutes.get("x86_64-pc-windows-msvc").map(String::as_str), Some("x86_64-pc-windows-gnu"));
        assert!(CrossCompilationConfig::default().substitutes.is_empty(), "none unless set");
        let unknown = parse("[cross_compilation.substitutes]\n\"x86_64-pc-windows-msvc\" = \"nonsense-triple\"\n")
            .expect_err("unknown target");
        assert!(unknown.to_string().contains("substitutes.\"x86_64-pc-windows-msvc\""), "{unknown}");
        let same = parse("[cross_compilation.substitutes]\n\"x86_64-pc-windows-gnu\" = \"x86_64-pc-windows-gnu\"\n")
            .expect_err("itself");
        assert!(same.to_string().contains("a different target"), "{same}");
        let chained = parse(
            "[cross_compilation.substitutes]\n\"x86_64-pc-windows-msvc\" = \"x86_64-pc-windows-gnu\"\n\
             \"x86_64-pc-windows-gnu\" = \"i686-pc-windows-gnu\"\n",
        )
        .expect_err("chained");
        assert!(chained.to_string().contains("one step only"), "{chained}");
    }

    #[test]
    fn c_libraries_are_static_unless_the_file_or_the_environment_says_dynamic() {
        assert_eq!(CrossCompilationConfig::default().c_libraries, CLibraryLinking::Static);
        let dynamic =
            CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\nc_libraries = \"dynamic\"\n")
                .unwrap();
        assert_eq!(dynamic.c_libraries, CLibraryLinking::Dynamic);
        assert_eq!(dynamic.target("x86_64-unknown-linux-gnu").unwrap().c_libraries, CLibraryLinking::Dynamic);
        let env = |v: &'static str| move |k: &str| (k == "RUSTLE_C_LIBRARIES").then(|| v.to_owned());
        assert_eq!(dynamic.apply_env(env("static")).unwrap().c_libraries, CLibraryLinking::Static);
        let err = CrossCompilationConfig::default().apply_env(env("shared")).unwrap_err();
        assert!(
            err.to_string().contains("RUSTLE_C_LIBRARIES") && err.to_string().contains("static or dynamic"),
            "{err}"
        );
        let err =
            CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\nc_libraries = \"shared\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("c_libraries"), "{err}");
    }

    #[test]
    fn self_contained_is_off_unless_the_file_or_the_environment_says_so() {
        assert!(!CrossCompilationConfig::default().self_contained);
        let on = CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\nself_contained = true\n")
            .unwrap();
        assert!(on.self_contained);
        let env = |value: &'static str| move |k: &str| (k == "RUSTLE_SELF_CONTAINED").then(|| value.to_owned());
        assert!(!on.clone().apply_env(env("0")).unwrap().self_contained);
        assert!(CrossCompilationConfig::default().apply_env(env("true")).unwrap().self_contained);
        let err = CrossCompilationConfig::default().apply_env(env("yes please")).unwrap_err();
        assert!(err.to_string().contains("RUSTLE_SELF_CONTAINED"), "{err}");
        let err = CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation]\nself_contained = 1\n")
            .unwrap_err();
        assert!(err.to_string().contains("self_contained"), "{err}");
    }

    #[test]
    fn fleet_section_loads_and_needs_certificates() {
        let c = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation.fleet]\nagents = [{ name = \"arm\", address = \"10.0.0.5:7878\" }]\n\
             ca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c-key.pem\"\ncrl = \"crl.pem\"\nheartbeat_timeout_secs = 9\n",
        )
        .unwrap();
        assert!(c.fleet.is_enabled());
        assert_eq!(c.fleet.crl.as_deref(), Some(Path::new("crl.pem")));
        assert_eq!(c.fleet.agents[0].name, "arm");
        assert_eq!(c.fleet.heartbeat_timeout_secs, 9);
        let err = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation.fleet]\nagents = [{ name = \"arm\", address = \"10.0.0.5:7878\" }]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("fleet.ca"), "{err}");
        let err = CrossCompilationConfig::from_toml(Path::new("c.toml"), "[cross_compilation.fleet]\nagent = []\n")
            .unwrap_err();
        assert!(err.to_string().contains("agent"), "{err}");
    }

    #[test]
    fn per_target_overrides_apply() {
        let c = CrossCompilationConfig::from_toml(
            Path::new("c.toml"),
            "[cross_compilation.targets.\"aarch64-unknown-linux-gnu\"]\nlinker = \"my-ld\"\nfeatures = [\"arm\"]\n",
        )
        .unwrap();
        let t = c.target("aarch64-unknown-linux-gnu").unwrap();
        assert_eq!(t.linker.as_deref(), Some("my-ld"));
        assert_eq!(t.features, ["arm"]);
        assert!(c.target("x86_64-unknown-linux-gnu").unwrap().linker.is_none());
    }
}

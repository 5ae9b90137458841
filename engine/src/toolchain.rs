//! `ToolchainManager`: finds every Rust toolchain on this machine (rustup's,
//! a system rustc such as Debian's rustc-web, ones configured by path), what
//! each can build (prebuilt std per target, rust-src for build-std), which
//! cross linkers are installed, and answers "can this machine build T, and
//! how" from that plus the rules table.
//!
//! Discovery runs `rustc -vV`, `rustc --print sysroot` and `cargo -V` once
//! per toolchain and caches the answers on disk, keyed by a fingerprint of
//! the binaries and sysroots that needs no process to compute, so a no-op
//! build does not pay for it again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustle_targets::{GlibcVersion, LinkerRoute, Target, TargetError, TargetSettings, rule_for_build};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

use rustle_process::{ProcessError, ProcessSpec};

/// Where a toolchain came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolchainKind {
    /// A rustup toolchain (`~/.rustup/toolchains/NAME`).
    Rustup,
    /// A rustc on PATH that is not rustup's proxy (e.g. Debian's rustc-web).
    System,
    /// Configured by path in `custom_toolchains`.
    Custom,
}

/// rust-src found in a toolchain's sysroot: lets it build std for targets
/// that ship no prebuilt std (`-Zbuild-std`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RustSource {
    /// `<sysroot>/lib/rustlib/src/rust/library`.
    pub library: PathBuf,
    /// The release the source is of, when it can be read.
    pub version: Option<String>,
    /// Whether it matches the compiler (a mismatched std does not build).
    pub matches_compiler: bool,
}

/// One installed toolchain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// Its name: the rustup toolchain name, `system`, or the configured name.
    pub name: String,
    /// Where it came from.
    pub kind: ToolchainKind,
    /// The rustc binary.
    pub rustc: PathBuf,
    /// The cargo binary beside it.
    pub cargo: PathBuf,
    /// `rustc -V`, e.g. `rustc 1.96.0 (ac68faa20 2026-05-25)`.
    pub rustc_version: String,
    /// `cargo -V`.
    pub cargo_version: String,
    /// The release, e.g. `1.96.0` or `1.97.0-nightly`.
    pub release: String,
    /// The commit hash rustc was built from (may be `unknown`).
    pub commit_hash: String,
    /// The host triple it runs on.
    pub host: String,
    /// Its sysroot.
    pub sysroot: PathBuf,
    /// Targets with a prebuilt std in the sysroot.
    pub std_targets: BTreeSet<String>,
    /// rust-src, when installed.
    pub rust_src: Option<RustSource>,
}

impl Toolchain {
    /// A short id that changes when the toolchain is upgraded: used to key
    /// target directories.
    pub fn id(&self) -> String {
        let commit: String = self.commit_hash.chars().take(9).collect();
        let safe_name: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .collect();
        format!("{safe_name}-{}-{commit}", self.release)
    }

    /// Whether it is a nightly (accepts `-Z` flags without RUSTC_BOOTSTRAP).
    pub fn is_nightly(&self) -> bool {
        self.release.contains("nightly")
    }

    /// Whether it can build std from source for targets without a prebuilt std.
    pub fn can_build_std(&self) -> bool {
        self.rust_src.as_ref().is_some_and(|s| s.matches_compiler)
    }
}

/// Where the std for a target comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StdSource {
    /// A prebuilt std in the toolchain's sysroot.
    Prebuilt,
    /// Built from the toolchain's rust-src with `-Zbuild-std`.
    BuildStd,
}

/// How a target is linked, resolved to installed programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LinkerPlan {
    /// cargo's default (`cc`), for the host target.
    Host,
    /// A named linker and C toolchain (GNU cross gcc, MinGW, or configured).
    Cross {
        /// The linker (`aarch64-linux-gnu-gcc`).
        linker: PathBuf,
        /// The C compiler for `CC_<triple>`.
        cc: PathBuf,
        /// The archiver for `AR_<triple>`, when found.
        ar: Option<PathBuf>,
    },
    /// zig through cargo-zigbuild.
    Zig {
        /// The cargo-zigbuild program.
        cargo_zigbuild: PathBuf,
        /// The zig program.
        zig: PathBuf,
    },
}

impl LinkerPlan {
    /// A short description for tables (`aarch64-linux-gnu-gcc`, `zig`).
    pub fn describe(&self) -> String {
        match self {
            LinkerPlan::Host => "cc (host)".into(),
            LinkerPlan::Cross { linker, .. } => {
                linker.file_name().map_or_else(|| linker.display().to_string(), |n| n.to_string_lossy().into())
            }
            LinkerPlan::Zig { .. } => "zig (cargo-zigbuild)".into(),
        }
    }
}

/// Everything needed to build one target here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPlan {
    /// The target.
    pub target: Target,
    /// The toolchain to build with.
    pub toolchain: Toolchain,
    /// Where its std comes from.
    pub std: StdSource,
    /// How it links.
    pub linker: LinkerPlan,
}

/// Which kind of thing a target lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequirementKind {
    /// The target's standard library (prebuilt, or the source to build it).
    Std,
    /// A linker (cross gcc, mingw, or one the configuration names).
    Linker,
    /// zig and cargo-zigbuild.
    Zig,
}

/// One thing missing for a target, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRequirement {
    /// Which kind of thing it is.
    pub kind: RequirementKind,
    /// What is missing ("a std for aarch64-unknown-linux-gnu").
    pub what: String,
    /// How to install it: commands or Debian packages, in order of preference.
    pub install: Vec<String>,
}

/// Whether this machine can build a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TargetAvailability {
    /// It can, with this plan.
    Available(Box<BuildPlan>),
    /// It could, after installing these.
    RequiresInstallation {
        /// The target.
        target: Target,
        /// What is missing.
        missing: Vec<MissingRequirement>,
    },
    /// No installation here would make it buildable.
    NotSupported {
        /// The target.
        target: Target,
        /// Why.
        reason: String,
    },
}

impl TargetAvailability {
    /// The plan, when available.
    pub fn plan(&self) -> Option<&BuildPlan> {
        match self {
            TargetAvailability::Available(plan) => Some(plan),
            _ => None,
        }
    }
}

/// What went wrong finding or installing toolchains.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// The target string is not a target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A toolchain's rustc or cargo did not answer as expected.
    #[error("failed to query toolchain `{toolchain}` ({}): {reason}", .program.display())]
    Query {
        /// The toolchain.
        toolchain: String,
        /// The program run.
        program: PathBuf,
        /// What happened.
        reason: String,
    },
    /// No toolchain at all.
    #[error(
        "no Rust toolchain found (looked in {rustup_home} and on PATH); install rustup, or Debian's rustc-web (scripts/setup.sh)"
    )]
    NoToolchain {
        /// Where rustup toolchains were looked for.
        rustup_home: String,
    },
    /// The target cannot be built here.
    #[error("cannot build {target} here: {reason}")]
    Unavailable {
        /// The target.
        target: String,
        /// What is missing or why it is unsupported, with the way out.
        reason: String,
    },
    /// rustup failed (for example offline).
    #[error("`rustup {action}` failed: {reason}")]
    Rustup {
        /// What was asked of rustup.
        action: String,
        /// Its error.
        reason: String,
    },
    /// Automatic installation is turned off.
    #[error("{what} is not installed and auto_install_toolchains is off; run: {command}")]
    AutoInstallDisabled {
        /// What is missing.
        what: String,
        /// The command that installs it.
        command: String,
    },
    /// A configured toolchain path is wrong.
    #[error("custom toolchain `{name}`: {reason}")]
    BadCustomToolchain {
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// How the toolchain manager is set up.
#[derive(Debug, Clone)]
pub struct ToolchainConfig {
    /// Install missing rustup targets automatically (`rustup target add`).
    pub auto_install: bool,
    /// How often `update_toolchains` actually updates.
    pub update_interval: Duration,
    /// The toolchain preferred when several can build a target.
    pub default_toolchain: String,
    /// Extra toolchains: name -> directory holding `rustc` and `cargo` (or
    /// the rustc binary itself).
    pub custom_toolchains: BTreeMap<String, PathBuf>,
    /// The rustup program.
    pub rustup_path: PathBuf,
    /// Where discovery results are cached.
    pub cache_dir: PathBuf,
    /// Deadline for rustup operations.
    pub rustup_timeout: Duration,
}

impl Default for ToolchainConfig {
    fn default() -> Self {
        Self {
            auto_install: true,
            update_interval: Duration::from_secs(7 * 24 * 3600),
            default_toolchain: "stable".into(),
            custom_toolchains: BTreeMap::new(),
            rustup_path: "rustup".into(),
            cache_dir: std::env::temp_dir().join("rustle-cross"),
            rustup_timeout: Duration::from_secs(120),
        }
    }
}

/// A rustc found on disk, before it is queried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Candidate {
    name: String,
    kind: ToolchainKind,
    rustc: PathBuf,
    cargo: PathBuf,
}

/// The on-disk discovery cache.
#[derive(Debug, Serialize, Deserialize)]
struct DiscoveryCache {
    fingerprint: String,
    toolchains: Vec<Toolchain>,
}

/// Finds toolchains and answers what they can build.
#[derive(Debug)]
pub struct ToolchainManager {
    config: ToolchainConfig,
    discovered: Mutex<Option<Arc<[Toolchain]>>>,
    build_glibc: OnceCell<Option<GlibcVersion>>,
}

impl ToolchainManager {
    /// A manager; nothing is discovered until first asked.
    pub fn new(config: ToolchainConfig) -> Self {
        Self { config, discovered: Mutex::new(None), build_glibc: OnceCell::new() }
    }

    /// Its configuration.
    pub fn config(&self) -> &ToolchainConfig {
        &self.config
    }

    /// Every toolchain on this machine (discovered once, then cached).
    pub async fn toolchains(&self) -> Result<Arc<[Toolchain]>, ToolchainError> {
        let mut discovered = self.discovered.lock().await;
        if let Some(toolchains) = &*discovered {
            return Ok(toolchains.clone());
        }
        let toolchains: Arc<[Toolchain]> = self.discover().await?.into();
        *discovered = Some(toolchains.clone());
        Ok(toolchains)
    }

    /// Forgets what was discovered (after installing something), so the
    /// next question looks again.
    pub async fn refresh(&self) {
        *self.discovered.lock().await = None;
    }

    /// The names of the installed toolchains.
    pub async fn list_installed_toolchains(&self) -> Result<Vec<String>, ToolchainError> {
        Ok(self.toolchains().await?.iter().map(|t| t.name.clone()).collect())
    }

    async fn discover(&self) -> Result<Vec<Toolchain>, ToolchainError> {
        let candidates = self.candidates()?;
        if candidates.is_empty() {
            return Err(ToolchainError::NoToolchain { rustup_home: rustup_home().display().to_string() });
        }
        let cache_file = self.config.cache_dir.join("toolchains.json");
        if let Some(cache) = read_cache(&cache_file)
            && cache.fingerprint == fingerprint(&candidates, &cache.toolchains)
        {
            return Ok(cache.toolchains);
        }
        let mut toolchains = Vec::new();
        for candidate in &candidates {
            match query(candidate).await {
                Ok(t) => toolchains.push(t),
                // A broken custom toolchain is the user's to fix; a broken
                // system or rustup one is skipped with a log line.
                Err(e) if candidate.kind == ToolchainKind::Custom => return Err(e),
                Err(e) => tracing::warn!("skipping toolchain: {e}"),
            }
        }
        write_cache(
            &cache_file,
            &DiscoveryCache { fingerprint: fingerprint(&candidates, &toolchains), toolchains: toolchains.clone() },
        );
        Ok(toolchains)
    }

    /// Lists rustc binaries without running them.
    fn candidates(&self) -> Result<Vec<Candidate>, ToolchainError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut push = |c: Candidate, seen: &mut BTreeSet<PathBuf>| {
            if c.rustc.is_file() && c.cargo.is_file() && seen.insert(c.rustc.canonicalize().unwrap_or(c.rustc.clone()))
            {
                out.push(c);
            }
        };
        for (name, path) in &self.config.custom_toolchains {
            let dir =
                if path.is_dir() { path.clone() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
            let c = Candidate {
                name: name.clone(),
                kind: ToolchainKind::Custom,
                rustc: dir.join(exe("rustc")),
                cargo: dir.join(exe("cargo")),
            };
            if !c.rustc.is_file() || !c.cargo.is_file() {
                return Err(ToolchainError::BadCustomToolchain {
                    name: name.clone(),
                    reason: format!("{} must hold both `rustc` and `cargo`", dir.display()),
                });
            }
            push(c, &mut seen);
        }
        if let Ok(entries) = std::fs::read_dir(rustup_home().join("toolchains")) {
            // Real toolchain directories before aliases (rustup links
            // `1.95.0-<host>` to `stable-<host>`), so a toolchain found twice
            // keeps its real name.
            let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            dirs.sort_by_key(|d| (d.is_symlink(), d.clone()));
            for dir in dirs {
                let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
                let bin = dir.join("bin");
                push(
                    Candidate {
                        name,
                        kind: ToolchainKind::Rustup,
                        rustc: bin.join(exe("rustc")),
                        cargo: bin.join(exe("cargo")),
                    },
                    &mut seen,
                );
            }
        }
        let cargo_home_bin = cargo_home().join("bin");
        for rustc in which::which_all("rustc").into_iter().flatten() {
            if rustc.starts_with(&cargo_home_bin) || is_rustup_proxy(&rustc) {
                continue;
            }
            let cargo = rustc.with_file_name(exe("cargo"));
            push(Candidate { name: "system".into(), kind: ToolchainKind::System, rustc, cargo }, &mut seen);
        }
        Ok(out)
    }

    /// The glibc this machine's C toolchains link against (`getconf
    /// GNU_LIBC_VERSION`; Debian's cross libcs are of the same release), or
    /// `None` when it has none.
    pub async fn build_glibc(&self) -> Option<GlibcVersion> {
        *self
            .build_glibc
            .get_or_init(|| async {
                let out = ProcessSpec::new("getconf")
                    .arg("GNU_LIBC_VERSION")
                    .timeout(Duration::from_secs(5))
                    .output()
                    .await
                    .ok()?;
                out.stdout_text().trim().strip_prefix("glibc ")?.parse().ok()
            })
            .await
    }

    /// Whether this machine can build `target`, and how; or what is missing.
    pub async fn get_target_availability(&self, target: &str) -> Result<TargetAvailability, ToolchainError> {
        self.availability(&Target::from_triple(target)?, &TargetSettings::default()).await
    }

    /// [`Self::get_target_availability`] for an already parsed target, with
    /// its settings (a linker they name replaces the rules table's).
    pub async fn availability(
        &self,
        target: &Target,
        settings: &TargetSettings,
    ) -> Result<TargetAvailability, ToolchainError> {
        let toolchains = self.toolchains().await?;
        let rule = rule_for_build(target, self.build_glibc().await);
        let mut missing = Vec::new();

        let linker = match (rule.linker, &settings.linker) {
            (LinkerRoute::Unavailable { reason }, None) => {
                return Ok(TargetAvailability::NotSupported { target: target.clone(), reason: reason.into() });
            }
            (_, Some(custom)) if rule.linker != LinkerRoute::Zig => match which::which(custom) {
                Ok(path) => Some(LinkerPlan::Cross { linker: path.clone(), cc: path, ar: None }),
                Err(_) => {
                    missing.push(MissingRequirement {
                        kind: RequirementKind::Linker,
                        what: format!("the configured linker `{custom}`"),
                        install: vec![format!("install `{custom}` or fix `linker` for {}", target.triple)],
                    });
                    None
                }
            },
            (LinkerRoute::Host | LinkerRoute::Unavailable { .. }, _) => Some(LinkerPlan::Host),
            (LinkerRoute::GnuCross { prefix, packages } | LinkerRoute::Mingw { prefix, packages }, _) => {
                match which::which(format!("{prefix}-gcc")) {
                    Ok(gcc) => Some(LinkerPlan::Cross {
                        linker: gcc.clone(),
                        cc: gcc,
                        ar: which::which(format!("{prefix}-ar")).ok(),
                    }),
                    Err(_) => {
                        missing.push(MissingRequirement {
                            kind: RequirementKind::Linker,
                            what: format!("the {prefix}-gcc cross linker"),
                            install: vec![format!("apt-get install {}", packages.join(" "))],
                        });
                        None
                    }
                }
            }
            (LinkerRoute::Zig, _) => match (which::which("cargo-zigbuild"), which::which("zig")) {
                (Ok(cargo_zigbuild), Ok(zig)) => Some(LinkerPlan::Zig { cargo_zigbuild, zig }),
                _ => {
                    missing.push(MissingRequirement {
                        kind: RequirementKind::Zig,
                        what: "zig and cargo-zigbuild".into(),
                        install: vec![
                            "pip install ziglang cargo-zigbuild (scripts/setup.sh does this)".into(),
                            "cargo install cargo-zigbuild".into(),
                        ],
                    });
                    None
                }
            },
        };

        let chosen = self.choose_toolchain(&toolchains, target);
        if chosen.is_none() {
            missing.push(std_requirement(target, rule.debian_std_arch, &toolchains));
        }
        match (chosen, linker) {
            (Some((toolchain, std)), Some(linker)) if missing.is_empty() => {
                Ok(TargetAvailability::Available(Box::new(BuildPlan {
                    target: target.clone(),
                    toolchain: toolchain.clone(),
                    std,
                    linker,
                })))
            }
            _ => Ok(TargetAvailability::RequiresInstallation { target: target.clone(), missing }),
        }
    }

    /// Picks the toolchain for a target: a prebuilt std first (the default
    /// toolchain, then rustup's, then others), else one that can build std.
    fn choose_toolchain<'a>(&self, toolchains: &'a [Toolchain], target: &Target) -> Option<(&'a Toolchain, StdSource)> {
        let preference = |t: &Toolchain| {
            let is_default = t.name == self.config.default_toolchain
                || t.name.starts_with(&format!("{}-", self.config.default_toolchain));
            (!is_default, t.kind, t.is_nightly())
        };
        let mut ordered: Vec<&Toolchain> = toolchains.iter().collect();
        ordered.sort_by_key(|t| preference(t));
        if target.custom_spec.is_none()
            && let Some(t) = ordered.iter().find(|t| t.std_targets.contains(&target.triple))
        {
            return Some((t, StdSource::Prebuilt));
        }
        ordered.iter().find(|t| t.can_build_std()).map(|t| (*t, StdSource::BuildStd))
    }

    /// The plan for a target, or an error saying what is missing.
    pub async fn plan(&self, target: &Target, settings: &TargetSettings) -> Result<BuildPlan, ToolchainError> {
        match self.availability(target, settings).await? {
            TargetAvailability::Available(plan) => Ok(*plan),
            TargetAvailability::RequiresInstallation { missing, .. } => Err(ToolchainError::Unavailable {
                target: target.to_string(),
                reason: missing
                    .iter()
                    .map(|m| format!("missing {} (install: {})", m.what, m.install.join(", or ")))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            TargetAvailability::NotSupported { reason, .. } => {
                Err(ToolchainError::Unavailable { target: target.to_string(), reason })
            }
        }
    }

    /// The rustc that would build `target`.
    pub async fn get_rustc_path(&self, target: &str) -> Result<PathBuf, ToolchainError> {
        Ok(self.plan(&Target::from_triple(target)?, &TargetSettings::default()).await?.toolchain.rustc)
    }

    /// The cargo that would build `target`.
    pub async fn get_cargo_path(&self, target: &str) -> Result<PathBuf, ToolchainError> {
        Ok(self.plan(&Target::from_triple(target)?, &TargetSettings::default()).await?.toolchain.cargo)
    }

    /// `rustup target add TARGET --toolchain TOOLCHAIN`, when auto-install
    /// is on. Offline, rustup's failure (or its deadline) is an error that
    /// names the other ways to get a std.
    pub async fn add_target(&self, toolchain: &str, target: &str) -> Result<(), ToolchainError> {
        let spec = Target::from_triple(target)?;
        let command = format!("rustup target add {} --toolchain {toolchain}", spec.triple);
        if !self.config.auto_install {
            return Err(ToolchainError::AutoInstallDisabled { what: format!("std for {}", spec.triple), command });
        }
        self.rustup(["target", "add", &spec.triple, "--toolchain", toolchain], &command).await
    }

    /// `rustup toolchain install NAME`, when auto-install is on.
    pub async fn install_toolchain(&self, name: &str) -> Result<(), ToolchainError> {
        let command = format!("rustup toolchain install {name} --profile minimal");
        if !self.config.auto_install {
            return Err(ToolchainError::AutoInstallDisabled { what: format!("toolchain {name}"), command });
        }
        self.rustup(["toolchain", "install", name, "--profile", "minimal"], &command).await
    }

    /// `rustup update`, at most once per `update_interval`.
    pub async fn update_toolchains(&self) -> Result<(), ToolchainError> {
        let stamp = self.config.cache_dir.join("last-rustup-update");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < self.config.update_interval);
        if fresh {
            return Ok(());
        }
        self.rustup(["update", "--no-self-update"], "rustup update").await?;
        let _ = std::fs::create_dir_all(&self.config.cache_dir);
        let _ = std::fs::write(&stamp, b"");
        Ok(())
    }

    async fn rustup<const N: usize>(&self, args: [&str; N], action: &str) -> Result<(), ToolchainError> {
        let fail = |reason: String| ToolchainError::Rustup { action: action.to_owned(), reason };
        let out = ProcessSpec::new(&self.config.rustup_path)
            .args(args)
            .timeout(self.config.rustup_timeout)
            .output()
            .await
            .map_err(|e| match e {
                ProcessError::TimedOut { .. } => fail(format!(
                    "no answer within {}s (offline?); install the std another way: see `rustle-cross targets`",
                    self.config.rustup_timeout.as_secs()
                )),
                other => fail(other.to_string()),
            })?;
        if !out.status.success() {
            return Err(fail(format!(
                "{}; install the std another way: see `rustle-cross targets`",
                last_lines(&out.stderr_text(), 3)
            )));
        }
        Ok(())
    }
}

fn std_requirement(target: &Target, debian_arch: Option<&str>, toolchains: &[Toolchain]) -> MissingRequirement {
    let mut install = Vec::new();
    if target.custom_spec.is_none() && toolchains.iter().any(|t| t.kind == ToolchainKind::Rustup) {
        install.push(format!("rustup target add {}", target.triple));
    }
    if let Some(arch) = debian_arch {
        install.push(format!("apt-get install libstd-rust-web-dev:{arch} (after dpkg --add-architecture {arch})"));
    }
    install.push("apt-get install rustc-web cargo-web rust-web-src (builds std from source)".into());
    MissingRequirement { kind: RequirementKind::Std, what: format!("a std for {}", target.triple), install }
}

/// Queries one toolchain: three quick processes.
async fn query(c: &Candidate) -> Result<Toolchain, ToolchainError> {
    let run = |program: &Path, args: &'static [&'static str]| {
        let program = program.to_path_buf();
        let name = c.name.clone();
        async move {
            let out = ProcessSpec::new(&program)
                .args(args)
                .env_remove("RUSTUP_TOOLCHAIN")
                .timeout(Duration::from_secs(30))
                .output()
                .await
                .map_err(|e| ToolchainError::Query {
                    toolchain: name.clone(),
                    program: program.clone(),
                    reason: e.to_string(),
                })?;
            if !out.status.success() {
                return Err(ToolchainError::Query {
                    toolchain: name,
                    program,
                    reason: last_lines(&out.stderr_text(), 3),
                });
            }
            Ok(out.stdout_text())
        }
    };
    let (vv, sysroot, cargo_v) =
        tokio::try_join!(run(&c.rustc, &["-vV"]), run(&c.rustc, &["--print", "sysroot"]), run(&c.cargo, &["-V"]),)?;
    let field = |key: &str| {
        vv.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned()).unwrap_or_else(|| "unknown".into())
    };
    let sysroot = PathBuf::from(sysroot.trim());
    let release = field("release:");
    let rust_src = find_rust_src(&sysroot, &release, c.kind);
    Ok(Toolchain {
        name: c.name.clone(),
        kind: c.kind,
        rustc: c.rustc.clone(),
        cargo: c.cargo.clone(),
        rustc_version: vv.lines().next().unwrap_or_default().trim().to_owned(),
        cargo_version: cargo_v.trim().to_owned(),
        commit_hash: field("commit-hash:"),
        host: field("host:"),
        std_targets: std_targets(&sysroot),
        rust_src,
        release,
        sysroot,
    })
}

/// Targets with a prebuilt std: `<sysroot>/lib/rustlib/<T>/lib/libstd-*.rlib`.
fn std_targets(sysroot: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(sysroot.join("lib/rustlib")) else { return BTreeSet::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_dir(e.path().join("lib")).is_ok_and(|mut libs| {
                libs.any(|l| l.is_ok_and(|l| l.file_name().to_string_lossy().starts_with("libstd-")))
            })
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect()
}

/// rust-src in the sysroot, and whether its version matches the compiler:
/// rustup's rust-src component is of its toolchain by construction; any
/// other source says its version in the first line of RELEASES.md.
fn find_rust_src(sysroot: &Path, release: &str, kind: ToolchainKind) -> Option<RustSource> {
    let root = sysroot.join("lib/rustlib/src/rust");
    let library = root.join("library");
    if !library.join("std/Cargo.toml").is_file() {
        return None;
    }
    let from_component = kind == ToolchainKind::Rustup && sysroot.join("lib/rustlib/manifest-rust-src").is_file();
    let version = std::fs::read_to_string(root.join("RELEASES.md")).ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("Version "))
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned)
    });
    let compiler_version = release.split('-').next().unwrap_or(release);
    let matches_compiler = from_component || version.as_deref() == Some(compiler_version);
    Some(RustSource { library, version, matches_compiler })
}

/// A fingerprint of everything discovery depends on that can be read
/// without running anything: each candidate's binaries, and each discovered
/// sysroot's rustlib directory (its mtime changes when a target is added).
fn fingerprint(candidates: &[Candidate], toolchains: &[Toolchain]) -> String {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| {
                let mtime = m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
                format!("{}:{}:{}", p.display(), m.len(), mtime.as_nanos())
            })
            .unwrap_or_else(|_| format!("{}:absent", p.display()))
    };
    let mut parts = Vec::new();
    for c in candidates {
        parts.push(format!("{}|{:?}", c.name, c.kind));
        parts.push(stamp(&c.rustc));
        parts.push(stamp(&c.cargo));
    }
    for t in toolchains {
        parts.push(stamp(&t.sysroot.join("lib/rustlib")));
        parts.push(stamp(&t.sysroot.join("lib/rustlib/src/rust/library")));
    }
    parts.join("\n")
}

fn read_cache(path: &Path) -> Option<DiscoveryCache> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_cache(path: &Path, cache: &DiscoveryCache) {
    // The cache is an optimisation: failing to write it only costs time.
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(
        ".toolchains.{}.{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    if let Ok(bytes) = serde_json::to_vec_pretty(cache)
        && std::fs::write(&tmp, bytes).is_ok()
    {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// A program's file name on this OS (`rustc`, `rustc.exe`).
fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

fn rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME").map(PathBuf::from).unwrap_or_else(|| home().join(".rustup"))
}

/// CARGO_HOME as cargo sees it: registry and git sources live under it.
pub(crate) fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home().join(".cargo"))
}

fn home() -> PathBuf {
    std::env::home_dir().unwrap_or_else(|| PathBuf::from("/root"))
}

fn is_rustup_proxy(path: &Path) -> bool {
    path.canonicalize().ok().and_then(|p| p.file_name().map(|n| n == exe("rustup").as_str())).unwrap_or(false)
}

/// The last `n` non-empty lines of a program's output.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(dir: &Path) -> ToolchainManager {
        ToolchainManager::new(ToolchainConfig { cache_dir: dir.to_path_buf(), ..Default::default() })
    }

    #[tokio::test]
    async fn discovers_this_machines_toolchains() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let toolchains = m.toolchains().await.unwrap();
        let rustup = toolchains.iter().find(|t| t.kind == ToolchainKind::Rustup).expect("rustup toolchain");
        assert!(rustup.std_targets.contains("x86_64-unknown-linux-gnu"), "{rustup:?}");
        assert!(rustup.rustc_version.starts_with("rustc 1."), "{}", rustup.rustc_version);
        assert!(rustup.cargo_version.starts_with("cargo 1."), "{}", rustup.cargo_version);
        assert_eq!(rustup.host, "x86_64-unknown-linux-gnu");
        // The cache is written and a second manager reads it back unchanged.
        assert!(dir.path().join("toolchains.json").is_file());
        let again = manager(dir.path());
        assert_eq!(again.toolchains().await.unwrap(), toolchains);
        again.refresh().await;
        assert_eq!(again.toolchains().await.unwrap(), toolchains);
    }

    #[tokio::test]
    async fn stale_cache_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(
            &dir.path().join("toolchains.json"),
            &DiscoveryCache { fingerprint: "something else".into(), toolchains: vec![] },
        );
        assert!(!manager(dir.path()).toolchains().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn host_target_is_available_with_a_prebuilt_std() {
        let dir = tempfile::tempdir().unwrap();
        let a = manager(dir.path()).get_target_availability("x86_64-unknown-linux-gnu").await.unwrap();
        let plan = a.plan().expect("host target available");
        assert_eq!(plan.std, StdSource::Prebuilt);
        assert_eq!(plan.linker, LinkerPlan::Host);
    }

    #[tokio::test]
    async fn build_glibc_is_read_and_decides_the_floor_route() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let glibc = m.build_glibc().await.expect("this Debian machine has glibc");
        assert_eq!(glibc.major, 2);
        let at_build = format!("x86_64-unknown-linux-gnu.{glibc}");
        let plan = m.get_target_availability(&at_build).await.unwrap();
        assert_eq!(plan.plan().map(|p| &p.linker), Some(&LinkerPlan::Host), "{plan:?}");
    }

    #[tokio::test]
    async fn msvc_is_not_supported_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let a = manager(dir.path()).get_target_availability("x86_64-pc-windows-msvc").await.unwrap();
        let TargetAvailability::NotSupported { reason, .. } = a else { panic!("{a:?}") };
        assert!(reason.contains("Windows agent"), "{reason}");
    }

    #[tokio::test]
    async fn missing_linker_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::from_triple("aarch64-unknown-linux-gnu").unwrap();
        let settings = TargetSettings { linker: Some("no-such-linker-gcc".into()), ..TargetSettings::default() };
        let a = manager(dir.path()).availability(&t, &settings).await.unwrap();
        let TargetAvailability::RequiresInstallation { missing, .. } = a else { panic!("{a:?}") };
        assert!(missing.iter().any(|m| m.what.contains("no-such-linker-gcc")), "{missing:?}");
    }

    #[tokio::test]
    async fn a_linker_in_the_settings_makes_an_unlisted_target_buildable() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::from_triple("x86_64-unknown-linux-gnux32").unwrap();
        let m = manager(dir.path());
        let a = m.availability(&t, &TargetSettings::default()).await.unwrap();
        assert!(matches!(a, TargetAvailability::NotSupported { .. }), "{a:?}");
        let settings = TargetSettings { linker: Some("cc".into()), ..TargetSettings::default() };
        let a = m.availability(&t, &settings).await.unwrap();
        assert!(!matches!(a, TargetAvailability::NotSupported { .. }), "{a:?}");
    }

    #[tokio::test]
    async fn add_target_respects_auto_install_off() {
        let dir = tempfile::tempdir().unwrap();
        let m = ToolchainManager::new(ToolchainConfig {
            auto_install: false,
            cache_dir: dir.path().to_path_buf(),
            ..Default::default()
        });
        let err = m.add_target("stable", "aarch64-unknown-linux-gnu").await.unwrap_err();
        assert!(err.to_string().contains("rustup target add aarch64-unknown-linux-gnu"), "{err}");
    }

    #[tokio::test]
    async fn add_target_offline_fails_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // The real rustup, pointed at a dist server nobody listens on: the
        // way rustup behaves on a machine with no route to its server.
        let rustup = dir.path().join("offline-rustup");
        std::fs::write(&rustup, "#!/bin/sh\nRUSTUP_DIST_SERVER=http://127.0.0.1:9 exec rustup \"$@\"\n").unwrap();
        std::fs::set_permissions(&rustup, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let m = ToolchainManager::new(ToolchainConfig {
            cache_dir: dir.path().to_path_buf(),
            rustup_path: rustup,
            rustup_timeout: Duration::from_secs(60),
            ..Default::default()
        });
        let err = m.add_target("stable", "s390x-unknown-linux-gnu").await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ToolchainError::Rustup { .. }), "{text}");
        assert!(text.contains("rustup target add s390x-unknown-linux-gnu"), "{text}");
        assert!(text.contains("rustle-cross targets"), "the error must name the way out: {text}");
    }

    #[tokio::test]
    async fn bad_custom_toolchain_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let m = ToolchainManager::new(ToolchainConfig {
            cache_dir: dir.path().to_path_buf(),
            custom_toolchains: [("mine".to_owned(), dir.path().join("nowhere"))].into(),
            ..Default::default()
        });
        let err = m.toolchains().await.unwrap_err();
        assert!(err.to_string().contains("custom toolchain `mine`"), "{err}");
    }

    #[test]
    fn rust_src_version_from_releases_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib/rustlib/src/rust");
        std::fs::create_dir_all(root.join("library/std")).unwrap();
        std::fs::write(root.join("library/std/Cargo.toml"), "").unwrap();
        std::fs::write(root.join("RELEASES.md"), "Version 1.96.0 (2026-05-28)\n==\n").unwrap();
        let src = find_rust_src(dir.path(), "1.96.0", ToolchainKind::System).unwrap();
        assert!(src.matches_compiler);
        let src = find_rust_src(dir.path(), "1.95.0", ToolchainKind::System).unwrap();
        assert!(!src.matches_compiler, "a 1.96 source must not be used by a 1.95 compiler");
    }
}

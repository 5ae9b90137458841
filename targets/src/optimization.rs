//! `CompilationOptimization`: optimization settings, mapped to cargo's
//! release-profile environment and rustc flags. The template's Cargo.toml is
//! never edited.

use serde::{Deserialize, Serialize};

use crate::spec::Target;

/// How hard the compiler optimizes (cargo's `opt-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizationLevel {
    /// opt-level 0, debug assertions on: fastest to build.
    Debug,
    /// opt-level 1.
    O1,
    /// opt-level 2.
    O2,
    /// opt-level 3.
    Release,
    /// opt-level "s": small.
    Size,
    /// opt-level "z": smallest.
    MinSize,
}

/// Link-time optimization (cargo's `lto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LtoMode {
    /// `lto = "off"`: none at all.
    Off,
    /// `lto = false`: thin LTO within each crate (cargo's default).
    ThinLocal,
    /// `lto = "thin"`.
    Thin,
    /// `lto = "fat"` (`true`).
    Fat,
}

/// What is stripped from the binary (cargo's `strip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StripMode {
    /// `strip = "none"`.
    None,
    /// `strip = "debuginfo"`.
    Debuginfo,
    /// `strip = "symbols"` (`true`).
    Symbols,
}

impl StripMode {
    /// cargo's name of it (`none`, `debuginfo`, `symbols`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Debuginfo => "debuginfo",
            Self::Symbols => "symbols",
        }
    }
}

/// What a panic does (cargo's `panic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PanicStrategy {
    /// Unwind the stack (Rust's default).
    Unwind,
    /// Abort the process.
    Abort,
}

/// Overrides of the template's release profile for one build.
///
/// Every field left unset (`None`, or no target features) leaves the
/// template's own `[profile.release]` alone: a template that says
/// `lto = true, strip = true, panic = "abort"` is built with exactly that
/// unless the caller asks otherwise. `Default` overrides nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompilationOptimization {
    /// Optimization level.
    pub level: Option<OptimizationLevel>,
    /// Link-time optimization.
    pub lto: Option<LtoMode>,
    /// Codegen units (fewer: slower build, faster code).
    pub codegen_units: Option<u32>,
    /// `-C target-cpu`; `native` only when the target is the host.
    pub target_cpu: Option<String>,
    /// `-C target-feature`, each with or without its leading `+`/`-`.
    pub target_features: Vec<String>,
    /// What to strip from the binary.
    pub strip: Option<StripMode>,
    /// Panic strategy.
    pub panic_strategy: Option<PanicStrategy>,
}

/// An optimization setting that cannot apply to a target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptimizationError {
    /// `target-cpu=native` asked for a target that is not the build host.
    #[error(
        "target-cpu=native is only valid when building for the build host ({host}), not for {target}; name a CPU (e.g. `generic`, `cortex-a72`) instead"
    )]
    NativeCpuForForeignTarget {
        /// The target asked for.
        target: String,
        /// The build host's triple.
        host: String,
    },
    /// A target feature that is not `+name`, `-name` or `name`.
    #[error("invalid target feature `{0}`: expected `+name`, `-name` or `name`")]
    InvalidTargetFeature(String),
}

impl CompilationOptimization {
    /// The overrides as `CARGO_PROFILE_RELEASE_*` variables: one per set
    /// field, nothing for an unset one. Builds always use `--release`.
    pub fn profile_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(&str, String)> = Vec::new();
        if let Some(level) = self.level {
            let opt_level = match level {
                OptimizationLevel::Debug => "0",
                OptimizationLevel::O1 => "1",
                OptimizationLevel::O2 => "2",
                OptimizationLevel::Release => "3",
                OptimizationLevel::Size => "s",
                OptimizationLevel::MinSize => "z",
            };
            env.push(("CARGO_PROFILE_RELEASE_OPT_LEVEL", opt_level.to_owned()));
            if level == OptimizationLevel::Debug {
                env.push(("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "true".to_owned()));
            }
        }
        if let Some(lto) = self.lto {
            let lto = match lto {
                LtoMode::Off => "off",
                LtoMode::ThinLocal => "false",
                LtoMode::Thin => "thin",
                LtoMode::Fat => "fat",
            };
            env.push(("CARGO_PROFILE_RELEASE_LTO", lto.to_owned()));
        }
        if let Some(units) = self.codegen_units {
            env.push(("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", units.to_string()));
        }
        if let Some(strip) = self.strip {
            env.push(("CARGO_PROFILE_RELEASE_STRIP", strip.as_str().to_owned()));
        }
        if let Some(panic) = self.panic_strategy {
            let panic = match panic {
                PanicStrategy::Unwind => "unwind",
                PanicStrategy::Abort => "abort",
            };
            env.push(("CARGO_PROFILE_RELEASE_PANIC", panic.to_owned()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// rustc flags for the target CPU and features. `host` is the build
    /// host's triple: `target-cpu=native` is refused for any other target.
    pub fn rustflags(&self, target: &Target, host: &str) -> Result<Vec<String>, OptimizationError> {
        let mut flags = Vec::new();
        if let Some(cpu) = &self.target_cpu {
            if cpu == "native" && target.triple != host {
                return Err(OptimizationError::NativeCpuForForeignTarget {
                    target: target.triple.clone(),
                    host: host.to_owned(),
                });
            }
            flags.push(format!("-Ctarget-cpu={cpu}"));
        }
        if !self.target_features.is_empty() {
            let mut features = Vec::new();
            for f in &self.target_features {
                let name = f.trim_start_matches(['+', '-']);
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    return Err(OptimizationError::InvalidTargetFeature(f.clone()));
                }
                features.push(if f.starts_with(['+', '-']) { f.clone() } else { format!("+{f}") });
            }
            flags.push(format!("-Ctarget-feature={}", features.join(",")));
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(o: &CompilationOptimization) -> std::collections::BTreeMap<String, String> {
        o.profile_env().into_iter().collect()
    }

    #[test]
    fn defaults_override_nothing_so_the_template_profile_wins() {
        assert!(env_of(&CompilationOptimization::default()).is_empty());
    }

    #[test]
    fn every_setting_maps() {
        let o = CompilationOptimization {
            level: Some(OptimizationLevel::MinSize),
            lto: Some(LtoMode::Fat),
            codegen_units: Some(1),
            strip: Some(StripMode::Symbols),
            panic_strategy: Some(PanicStrategy::Abort),
            ..Default::default()
        };
        let env = env_of(&o);
        assert_eq!(env["CARGO_PROFILE_RELEASE_OPT_LEVEL"], "z");
        assert_eq!(env["CARGO_PROFILE_RELEASE_LTO"], "fat");
        assert_eq!(env["CARGO_PROFILE_RELEASE_CODEGEN_UNITS"], "1");
        assert_eq!(env["CARGO_PROFILE_RELEASE_STRIP"], "symbols");
        assert_eq!(env["CARGO_PROFILE_RELEASE_PANIC"], "abort");
        assert!(!env.contains_key("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS"));
        for (level, expected) in [
            (OptimizationLevel::O1, "1"),
            (OptimizationLevel::O2, "2"),
            (OptimizationLevel::Release, "3"),
            (OptimizationLevel::Size, "s"),
        ] {
            let o = CompilationOptimization { level: Some(level), ..Default::default() };
            assert_eq!(env_of(&o)["CARGO_PROFILE_RELEASE_OPT_LEVEL"], expected, "{level:?}");
        }
        for (lto, expected) in [(LtoMode::Off, "off"), (LtoMode::ThinLocal, "false"), (LtoMode::Thin, "thin")] {
            let o = CompilationOptimization { lto: Some(lto), ..Default::default() };
            assert_eq!(env_of(&o)["CARGO_PROFILE_RELEASE_LTO"], expected, "{lto:?}");
        }
        let debuginfo = CompilationOptimization { strip: Some(StripMode::Debuginfo), ..Default::default() };
        assert_eq!(env_of(&debuginfo)["CARGO_PROFILE_RELEASE_STRIP"], "debuginfo");
        let unwind = CompilationOptimization { panic_strategy: Some(PanicStrategy::Unwind), ..Default::default() };
        assert_eq!(env_of(&unwind)["CARGO_PROFILE_RELEASE_PANIC"], "unwind");
        let debug = CompilationOptimization { level: Some(OptimizationLevel::Debug), ..Default::default() };
        assert_eq!(env_of(&debug)["CARGO_PROFILE_RELEASE_OPT_LEVEL"], "0");
        assert_eq!(env_of(&debug)["CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS"], "true");
        assert_eq!(env_of(&debug).len(), 2, "only what was asked for");
    }

    #[test]
    fn target_cpu_and_features() {
        let arm = Target::from_triple("aarch64-unknown-linux-gnu").unwrap();
        let o = CompilationOptimization {
            target_cpu: Some("cortex-a72".into()),
            target_features: vec!["neon".into(), "-crc".into()],
            ..Default::default()
        };
        assert_eq!(
            o.rustflags(&arm, "x86_64-unknown-linux-gnu").unwrap(),
            vec!["-Ctarget-cpu=cortex-a72", "-Ctarget-feature=+neon,-crc"]
        );
        let bad = CompilationOptimization { target_features: vec!["+a b".into()], ..Default::default() };
        assert!(matches!(
            bad.rustflags(&arm, "x86_64-unknown-linux-gnu"),
            Err(OptimizationError::InvalidTargetFeature(_))
        ));
    }

    #[test]
    fn native_cpu_only_for_the_host() {
        let native = CompilationOptimization { target_cpu: Some("native".into()), ..Default::default() };
        let arm = Target::from_triple("aarch64-unknown-linux-gnu").unwrap();
        let err = native.rustflags(&arm, "x86_64-unknown-linux-gnu").unwrap_err();
        assert!(err.to_string().contains("aarch64-unknown-linux-gnu"), "{err}");
        let host = Target::from_triple("x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(native.rustflags(&host, "x86_64-unknown-linux-gnu").unwrap(), vec!["-Ctarget-cpu=native"]);
    }
}

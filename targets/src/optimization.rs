//! `CompilationOptimization`: optimization settings, mapped to cargo's
//! release-profile environment and rustc flags. The template's Cargo.toml is
//! never edited.

use serde::{Deserialize, Serialize};

use crate::spec::TargetSpecification;

/// How hard the compiler optimizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizationLevel {
    /// opt-level 0, debug assertions on: fastest to build.
    Debug,
    /// opt-level 3.
    #[default]
    Release,
    /// opt-level "s": small.
    Size,
    /// opt-level "z": smallest.
    MinSize,
}

/// What a panic does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PanicStrategy {
    /// Unwind the stack (Rust's default).
    #[default]
    Unwind,
    /// Abort the process.
    Abort,
}

/// Optimization settings for one build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompilationOptimization {
    /// Optimization level.
    pub level: OptimizationLevel,
    /// Fat link-time optimization.
    pub lto: bool,
    /// Codegen units (fewer: slower build, faster code).
    pub codegen_units: Option<u16>,
    /// `-C target-cpu`; `native` only when the target is the host.
    pub target_cpu: Option<String>,
    /// `-C target-feature`, each with or without its leading `+`/`-`.
    pub target_features: Vec<String>,
    /// Strip symbols from the binary.
    pub strip: bool,
    /// Panic strategy.
    pub panic_strategy: PanicStrategy,
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
    /// The release profile as `CARGO_PROFILE_RELEASE_*` variables. Builds
    /// always use `--release`; the level picks its opt-level.
    pub fn profile_env(&self) -> Vec<(String, String)> {
        let opt_level = match self.level {
            OptimizationLevel::Debug => "0",
            OptimizationLevel::Release => "3",
            OptimizationLevel::Size => "s",
            OptimizationLevel::MinSize => "z",
        };
        let mut env = vec![
            ("CARGO_PROFILE_RELEASE_OPT_LEVEL", opt_level.to_owned()),
            ("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", (self.level == OptimizationLevel::Debug).to_string()),
            ("CARGO_PROFILE_RELEASE_LTO", if self.lto { "fat" } else { "false" }.to_owned()),
            ("CARGO_PROFILE_RELEASE_STRIP", if self.strip { "symbols" } else { "none" }.to_owned()),
            (
                "CARGO_PROFILE_RELEASE_PANIC",
                match self.panic_strategy {
                    PanicStrategy::Unwind => "unwind",
                    PanicStrategy::Abort => "abort",
                }
                .to_owned(),
            ),
        ];
        if let Some(units) = self.codegen_units {
            env.push(("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", units.to_string()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// rustc flags for the target CPU and features. `host` is the build
    /// host's triple: `target-cpu=native` is refused for any other target.
    pub fn rustflags(&self, target: &TargetSpecification, host: &str) -> Result<Vec<String>, OptimizationError> {
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
    fn defaults_map_to_a_plain_release_profile() {
        let env = env_of(&CompilationOptimization::default());
        assert_eq!(env["CARGO_PROFILE_RELEASE_OPT_LEVEL"], "3");
        assert_eq!(env["CARGO_PROFILE_RELEASE_LTO"], "false");
        assert_eq!(env["CARGO_PROFILE_RELEASE_STRIP"], "none");
        assert_eq!(env["CARGO_PROFILE_RELEASE_PANIC"], "unwind");
        assert_eq!(env["CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS"], "false");
        assert!(!env.contains_key("CARGO_PROFILE_RELEASE_CODEGEN_UNITS"));
    }

    #[test]
    fn every_setting_maps() {
        let o = CompilationOptimization {
            level: OptimizationLevel::MinSize,
            lto: true,
            codegen_units: Some(1),
            strip: true,
            panic_strategy: PanicStrategy::Abort,
            ..Default::default()
        };
        let env = env_of(&o);
        assert_eq!(env["CARGO_PROFILE_RELEASE_OPT_LEVEL"], "z");
        assert_eq!(env["CARGO_PROFILE_RELEASE_LTO"], "fat");
        assert_eq!(env["CARGO_PROFILE_RELEASE_CODEGEN_UNITS"], "1");
        assert_eq!(env["CARGO_PROFILE_RELEASE_STRIP"], "symbols");
        assert_eq!(env["CARGO_PROFILE_RELEASE_PANIC"], "abort");
        assert_eq!(
            env_of(&CompilationOptimization { level: OptimizationLevel::Size, ..o })["CARGO_PROFILE_RELEASE_OPT_LEVEL"],
            "s"
        );
        let debug = CompilationOptimization { level: OptimizationLevel::Debug, ..Default::default() };
        assert_eq!(env_of(&debug)["CARGO_PROFILE_RELEASE_OPT_LEVEL"], "0");
        assert_eq!(env_of(&debug)["CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS"], "true");
    }

    #[test]
    fn target_cpu_and_features() {
        let arm = TargetSpecification::from_triple("aarch64-unknown-linux-gnu").unwrap();
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
        let arm = TargetSpecification::from_triple("aarch64-unknown-linux-gnu").unwrap();
        let err = native.rustflags(&arm, "x86_64-unknown-linux-gnu").unwrap_err();
        assert!(err.to_string().contains("aarch64-unknown-linux-gnu"), "{err}");
        let host = TargetSpecification::from_triple("x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(native.rustflags(&host, "x86_64-unknown-linux-gnu").unwrap(), vec!["-Ctarget-cpu=native"]);
    }
}

//! Simulation mode, for fleet benchmarks and tests at scale: an agent that
//! answers every build offer with a canned binary instead of running cargo.
//!
//! Only the build is simulated. The QUIC listener, mutual TLS, the hello,
//! the capability report, heartbeats, the source bundle (received, verified
//! and synced into the warm dir), progress events, and the binary's bulk
//! transfer under its SHA-256 are the real agent's. A simulated agent says
//! what it is wherever it is seen: its capability report's version ends in
//! `(simulated)` and its only toolchain is named [`SIMULATED_TOOLCHAIN`]
//! (so every binary it delivers says `toolchain = "simulated"`), and it logs
//! a warning when it starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustle_engine::engine::{CompilationError, CompilationMetadata, CompiledBinary};
use rustle_engine::validate::{BinaryReport, validate_binary};
use rustle_protocol::{
    BuildEvent, BuildRoute, BuildableTarget, CapabilityReport, JobOffer, Sha256Digest, ToolchainReport, WarmCache,
};
use rustle_targets::{Target, TargetSpecification};
use serde::Deserialize;

use crate::AgentError;
use crate::capabilities::{self, HostLoad};
use crate::config::AgentConfig;

/// The name of a simulated agent's only toolchain, and of the toolchain
/// every binary it delivers was "built" with.
pub const SIMULATED_TOOLCHAIN: &str = "simulated";

/// The `simulate` key of the agent config:
/// `simulate = { binary = "/bin/true", targets = ["x86_64-unknown-linux-gnu"], delay_ms = 50 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSettings {
    /// The canned binary every build of a target delivers.
    pub binary: PathBuf,
    /// The targets (full names, a glibc floor included) the agent reports
    /// and accepts; the canned binary must pass validation for each.
    pub targets: Vec<String>,
    /// How long each simulated build takes.
    #[serde(default)]
    pub delay_ms: u64,
}

/// A loaded simulation: the canned binary, its checksum and its validation
/// against each target.
#[derive(Debug)]
pub struct Simulation {
    settings: SimulateSettings,
    bytes: Vec<u8>,
    checksum: Sha256Digest,
    file_name: String,
    reports: BTreeMap<String, BinaryReport>,
}

impl Simulation {
    /// Reads the canned binary and checks it against every target, so the
    /// coordinator never refuses what a simulated agent delivers.
    pub fn load(settings: &SimulateSettings) -> Result<Self, AgentError> {
        let failed = |reason: String| AgentError::Simulation { binary: settings.binary.clone(), reason };
        if settings.targets.is_empty() {
            return Err(failed("simulate.targets is empty; name the targets it answers".into()));
        }
        let bytes = std::fs::read(&settings.binary).map_err(|e| failed(e.to_string()))?;
        let mut reports = BTreeMap::new();
        for name in &settings.targets {
            let target = Target::from_triple(name).map_err(|e| failed(e.to_string()))?;
            let report =
                validate_binary(&bytes, &target).map_err(|e| failed(format!("not a binary for {name}: {e}")))?;
            reports.insert(name.clone(), report);
        }
        let file_name = settings
            .binary
            .file_name()
            .map_or_else(|| "simulated".to_owned(), |name| name.to_string_lossy().into_owned());
        Ok(Self { settings: settings.clone(), checksum: Sha256Digest::of(&bytes), bytes, file_name, reports })
    }

    /// The canned binary's SHA-256.
    pub fn checksum(&self) -> Sha256Digest {
        self.checksum
    }

    /// Whether the simulation answers `target` (its full name).
    pub fn answers(&self, target: &str) -> bool {
        self.reports.contains_key(target)
    }

    /// The capability report of a simulated agent: this host's facts, one
    /// toolchain named [`SIMULATED_TOOLCHAIN`] "building" the simulated
    /// targets, and a version that says `(simulated)`.
    pub fn report(&self, config: &AgentConfig, warm_caches: Vec<WarmCache>, host: HostLoad) -> CapabilityReport {
        let targets = self
            .settings
            .targets
            .iter()
            .map(|triple| BuildableTarget { triple: triple.clone(), route: BuildRoute::PrebuiltStd })
            .collect();
        let toolchain = ToolchainReport {
            name: SIMULATED_TOOLCHAIN.to_owned(),
            version: format!("canned binary {} (sha256 {}); no cargo runs", self.file_name, self.checksum),
            host_triple: self.settings.targets[0].clone(),
            targets,
        };
        let mut report = capabilities::host_report(config, vec![toolchain], warm_caches, host);
        report.agent_version = format!("{} (simulated)", report.agent_version);
        report.docker_available = false;
        report
    }

    /// The simulated build of `offer`: `Started`, a first progress event,
    /// `delay_ms` of waiting, the last progress event, and the canned binary.
    pub async fn build(
        &self,
        offer: &JobOffer,
        on_event: impl Fn(BuildEvent),
    ) -> Result<CompiledBinary, CompilationError> {
        let name = &offer.target.name;
        let Some(validation) = self.reports.get(name) else {
            return Err(CompilationError::unavailable(name.clone(), "the simulation does not answer this target"));
        };
        let (target, settings) = crate::wire::target_from_wire(&offer.target)
            .map_err(|e| CompilationError::unavailable(name.clone(), e.to_string()))?;
        let started = Instant::now();
        on_event(BuildEvent::Started);
        on_event(BuildEvent::Progress { done: 0, total: 1 });
        tokio::time::sleep(Duration::from_millis(self.settings.delay_ms)).await;
        on_event(BuildEvent::Progress { done: 1, total: 1 });
        Ok(CompiledBinary {
            target: TargetSpecification::from_parts(target, settings),
            file_name: self.file_name.clone(),
            binary_data: self.bytes.clone(),
            size: self.bytes.len() as u64,
            checksum: self.checksum.to_string(),
            compilation_time: started.elapsed(),
            metadata: CompilationMetadata {
                toolchain: SIMULATED_TOOLCHAIN.to_owned(),
                rustc_version: "simulated: no rustc ran".to_owned(),
                cargo_version: "simulated: no cargo ran".to_owned(),
                compilation_flags: Vec::new(),
                dependencies: Vec::new(),
                features_used: offer.target.features.clone(),
                c_libraries: Vec::new(),
            },
            validation: validation.clone(),
            cached: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(binary: PathBuf, targets: &[&str]) -> SimulateSettings {
        SimulateSettings { binary, targets: targets.iter().map(|t| (*t).to_owned()).collect(), delay_ms: 0 }
    }

    #[test]
    fn a_canned_binary_must_be_one_for_its_targets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = dir.path().join("not-a-binary");
        std::fs::write(&text, "hello").expect("write");
        let error = Simulation::load(&settings(text, &["x86_64-unknown-linux-gnu"])).expect_err("not a binary");
        assert!(error.to_string().contains("not a binary for x86_64-unknown-linux-gnu"), "{error}");
        let error = Simulation::load(&settings(dir.path().join("missing"), &["x86_64-unknown-linux-gnu"]))
            .expect_err("missing file");
        assert!(error.to_string().contains("simulate.binary"), "{error}");
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
    #[tokio::test(flavor = "current_thread")]
    async fn the_report_and_the_binary_say_they_are_simulated() {
        let exe = std::env::current_exe().expect("this test's binary");
        let simulation = Simulation::load(&settings(exe, &["x86_64-unknown-linux-gnu"])).expect("loads");
        let report = simulation.report(&AgentConfig::default(), Vec::new(), HostLoad::default());
        assert!(report.agent_version.ends_with("(simulated)"), "{}", report.agent_version);
        assert_eq!(report.toolchains.len(), 1);
        assert_eq!(report.toolchains[0].name, SIMULATED_TOOLCHAIN);
        assert!(simulation.answers("x86_64-unknown-linux-gnu") && !simulation.answers("aarch64-unknown-linux-gnu"));
    }
}

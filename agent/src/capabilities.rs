//! The agent's capability report: this host (sysinfo) plus what its
//! toolchains can build (the build engine's toolchain manager).

use std::collections::BTreeMap;
use std::sync::Arc;

use rustle_engine::toolchain::{LinkerPlan, StdSource, TargetAvailability, ToolchainError, ToolchainManager};
use rustle_protocol::{
    AgentId, BuildRoute, BuildableTarget, CapabilityReport, LibcReport, LoadAverage, LoadUpdate, ToolchainReport,
    WarmCache,
};
use rustle_targets::{RULES, Target, TargetSettings};

use crate::AgentError;
use crate::config::AgentConfig;

/// Builds the report for this host: every target of the rules table a
/// toolchain here can build and `config.allowed_targets` permits, the warm
/// caches held, and `host` (a recent [`HostLoad::measure`]).
pub async fn report(
    config: &AgentConfig,
    toolchains: &ToolchainManager,
    warm_caches: Vec<WarmCache>,
    host: HostLoad,
) -> Result<CapabilityReport, AgentError> {
    let failed = |reason: String| AgentError::Capabilities { reason };
    // A host without any Rust toolchain (a Windows host under Wine, a new
    // build host) reports none: it builds nothing and is offered nothing.
    let installed = match toolchains.toolchains().await {
        Ok(installed) => installed,
        Err(error @ ToolchainError::NoToolchain { .. }) => {
            tracing::warn!("{error}; this agent can build no target");
            Arc::from([])
        }
        Err(error) => return Err(failed(error.to_string())),
    };
    let rules = if installed.is_empty() { &[][..] } else { RULES };
    let mut by_toolchain: BTreeMap<String, Vec<BuildableTarget>> = BTreeMap::new();
    for rule in rules {
        if !config.target_allowed(rule.triple) {
            continue;
        }
        let target = Target::from_triple(rule.triple).map_err(|e| failed(e.to_string()))?;
        let availability =
            toolchains.availability(&target, &TargetSettings::default()).await.map_err(|e| failed(e.to_string()))?;
        if let TargetAvailability::Available(plan) = availability {
            let route = match (&plan.linker, plan.std) {
                (LinkerPlan::Zig { .. }, _) => BuildRoute::Zig,
                (_, StdSource::BuildStd) => BuildRoute::BuildStd,
                (_, StdSource::Prebuilt) => BuildRoute::PrebuiltStd,
            };
            by_toolchain
                .entry(plan.toolchain.name.clone())
                .or_default()
                .push(BuildableTarget { triple: target.triple.clone(), route });
        }
    }
    let toolchain_reports = installed
        .iter()
        .map(|t| ToolchainReport {
            name: t.name.clone(),
            version: t.release.clone(),
            host_triple: t.host.clone(),
            targets: by_toolchain.remove(&t.name).unwrap_or_default(),
        })
        .collect();

    Ok(host_report(config, toolchain_reports, warm_caches, host))
}

/// The report of this host with `toolchains`: the agent's name, version and
/// slots, this host's system, memory, load and disk (`host`), and `warm_caches`.
pub(crate) fn host_report(
    config: &AgentConfig,
    toolchains: Vec<ToolchainReport>,
    warm_caches: Vec<WarmCache>,
    host: HostLoad,
) -> CapabilityReport {
    CapabilityReport {
        agent_id: AgentId(config.resolved_agent_id()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        os: std::env::consts::OS.to_owned(),
        os_version: sysinfo::System::long_os_version().unwrap_or_default(),
        libc: libc_report(),
        cores: u32::try_from(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap_or(u32::MAX),
        memory_total_bytes: host.memory_total_bytes,
        memory_available_bytes: host.memory_available_bytes,
        load: host.load,
        disk_free_bytes: host.disk_free_bytes,
        toolchains,
        docker_available: which::which("docker").is_ok() && std::path::Path::new("/var/run/docker.sock").exists(),
        max_concurrent_jobs: config.max_concurrent_jobs,
        warm_caches,
    }
}

/// Memory, load and disk of this host at one moment. Values that cannot be
/// read are reported as zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLoad {
    /// Installed memory.
    pub memory_total_bytes: u64,
    /// Memory available now.
    pub memory_available_bytes: u64,
    /// Load average now.
    pub load: LoadAverage,
    /// Free space on the file system holding `work_dir`.
    pub disk_free_bytes: u64,
}

impl HostLoad {
    /// Reads the host's state now; `work_dir` picks the disk. Blocking (it
    /// reads /proc and `statvfs`es every mount): call it off the async
    /// workers.
    pub fn measure(work_dir: &std::path::Path) -> Self {
        let mut out = Self::default();
        if let Ok(mut system) = sysinfo::System::new() {
            system.refresh_memory();
            out.memory_total_bytes = system.total_memory();
            out.memory_available_bytes = system.available_memory();
        }
        if let Ok(load) = sysinfo::System::load_average() {
            out.load = LoadAverage { one: load.one, five: load.five, fifteen: load.fifteen };
        }
        // Windows' canonical form (`\\?\C:\…`) starts with no mount point (`C:\`).
        let work_dir = if cfg!(windows) { std::path::absolute(work_dir) } else { work_dir.canonicalize() }
            .unwrap_or_else(|_| work_dir.to_owned());
        if let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() {
            out.disk_free_bytes = disks
                .iter()
                .filter(|d| work_dir.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
                .map_or(0, |d| d.available_space());
        }
        out
    }

    /// The heartbeat carrying this measurement.
    pub fn update(&self, sequence: u64, running_jobs: u32) -> LoadUpdate {
        LoadUpdate {
            sequence,
            running_jobs,
            memory_available_bytes: self.memory_available_bytes,
            load: self.load,
            disk_free_bytes: self.disk_free_bytes,
        }
    }
}

/// The C library this agent binary was built against.
fn libc_report() -> Option<LibcReport> {
    if cfg!(target_env = "musl") {
        Some(LibcReport { name: "musl".into(), version: String::new() })
    } else if cfg!(target_env = "gnu") && cfg!(target_os = "linux") {
        Some(LibcReport { name: "glibc".into(), version: glibc_version().unwrap_or_default() })
    } else {
        None
    }
}

/// The host's glibc version (`2.36`), from `getconf GNU_LIBC_VERSION`, which
/// glibc itself answers; `None` when it cannot say. Asked once per process:
/// every capability report carries it, and a simulation's thousand agents
/// would otherwise start a thousand `getconf`s.
fn glibc_version() -> Option<String> {
    static VERSION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    VERSION.get_or_init(ask_glibc_version).clone()
}

fn ask_glibc_version() -> Option<String> {
    let out = std::process::Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    out.status.success().then(|| parse_glibc_version(&String::from_utf8_lossy(&out.stdout)))?
}

/// `2.36` from `glibc 2.36`.
fn parse_glibc_version(text: &str) -> Option<String> {
    let version = text.trim().strip_prefix("glibc ")?.trim();
    let numeric =
        !version.is_empty() && version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric.then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_glibc_version_is_read_from_getconf() {
        assert_eq!(parse_glibc_version("glibc 2.36\n").as_deref(), Some("2.36"));
        assert_eq!(parse_glibc_version("musl 1.2"), None);
        assert_eq!(parse_glibc_version("glibc "), None);
        if cfg!(all(target_env = "gnu", target_os = "linux")) {
            let version = libc_report().expect("a glibc host").version;
            assert!(parse_glibc_version(&format!("glibc {version}")).is_some(), "this host's: {version:?}");
        }
    }
}

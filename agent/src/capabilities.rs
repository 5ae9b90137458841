//! The agent's capability report: this host (sysinfo) plus what its
//! toolchains can build (the build engine's toolchain manager).

use std::collections::BTreeMap;

use rustle_build::toolchain::{LinkerPlan, StdSource, TargetAvailability, ToolchainManager};
use rustle_protocol::{
    AgentId, BuildRoute, BuildableTarget, CapabilityReport, LibcReport, LoadAverage, ToolchainReport,
};
use rustle_targets::{RULES, TargetSpecification};

/// Builds the report for this host.
pub async fn report(
    agent_id: &str,
    toolchains: &ToolchainManager,
    max_concurrent_jobs: u32,
) -> anyhow::Result<CapabilityReport> {
    let mut by_toolchain: BTreeMap<String, Vec<BuildableTarget>> = BTreeMap::new();
    for rule in RULES {
        let target = TargetSpecification::from_triple(rule.triple)?;
        if let TargetAvailability::Available(plan) = toolchains.availability(&target).await? {
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
    let installed = toolchains.toolchains().await?;
    let toolchain_reports = installed
        .iter()
        .map(|t| ToolchainReport {
            name: t.name.clone(),
            version: t.release.clone(),
            host_triple: t.host.clone(),
            targets: by_toolchain.remove(&t.name).unwrap_or_default(),
        })
        .collect();

    let mut system = sysinfo::System::new()?;
    system.refresh_memory();
    let load = sysinfo::System::load_average()?;
    let work_dir = toolchains.config().cache_dir.clone();
    let disks = sysinfo::Disks::new_with_refreshed_list()?;
    let disk_free_bytes = disks
        .iter()
        .filter(|d| work_dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or(0, |d| d.available_space());
    Ok(CapabilityReport {
        agent_id: AgentId(agent_id.to_owned()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        os: std::env::consts::OS.to_owned(),
        os_version: sysinfo::System::long_os_version().unwrap_or_default(),
        libc: libc_report(),
        cores: u32::try_from(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap_or(u32::MAX),
        memory_total_bytes: system.total_memory(),
        memory_available_bytes: system.available_memory(),
        load: LoadAverage { one: load.one, five: load.five, fifteen: load.fifteen },
        disk_free_bytes,
        toolchains: toolchain_reports,
        docker_available: which::which("docker").is_ok() && std::path::Path::new("/var/run/docker.sock").exists(),
        max_concurrent_jobs,
        warm_caches: Vec::new(),
    })
}

/// The C library this agent binary was built against.
fn libc_report() -> Option<LibcReport> {
    if cfg!(target_env = "musl") {
        Some(LibcReport { name: "musl".into(), version: String::new() })
    } else if cfg!(target_env = "gnu") && cfg!(target_os = "linux") {
        Some(LibcReport { name: "glibc".into(), version: String::new() })
    } else {
        None
    }
}

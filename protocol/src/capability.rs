//! What an agent reports about its host: the [`CapabilityReport`] after the handshake, then [`LoadUpdate`]s.
//!
//! Target triples are plain strings here; parsing and judging them is the
//! target model's business, not the wire's.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::TemplateId;

/// Stable name of an agent, chosen by its operator (e.g. `"arm64-builder-1"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything the coordinator needs to plan for an agent. Sent once after
/// the handshake, and again whenever toolchains or caches change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityReport {
    /// The agent's name.
    pub agent_id: AgentId,
    /// The agent's release, e.g. `"0.1.0"`.
    pub agent_version: String,
    /// CPU architecture, e.g. `"aarch64"`.
    pub arch: String,
    /// Operating system, e.g. `"linux"`, `"macos"`, `"windows"`.
    pub os: String,
    /// Operating system release, e.g. `"Debian 12"`.
    pub os_version: String,
    /// The host's C library, if it has one worth naming.
    pub libc: Option<LibcReport>,
    /// Logical CPU cores.
    pub cores: u32,
    /// Installed memory.
    pub memory_total_bytes: u64,
    /// Memory available when the report was made.
    pub memory_available_bytes: u64,
    /// Load average when the report was made.
    pub load: LoadAverage,
    /// Free space where builds run.
    pub disk_free_bytes: u64,
    /// Installed Rust toolchains and what each can build.
    pub toolchains: Vec<ToolchainReport>,
    /// Whether a usable Docker daemon is reachable.
    pub docker_available: bool,
    /// Jobs the agent runs at once at most.
    pub max_concurrent_jobs: u32,
    /// Build caches already warm on this host.
    pub warm_caches: Vec<WarmCache>,
}

/// A C library and its version, e.g. glibc 2.36.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibcReport {
    /// Family, e.g. `"glibc"` or `"musl"`.
    pub name: String,
    /// Version, e.g. `"2.36"`.
    pub version: String,
}

/// Run-queue load averaged over one, five and fifteen minutes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Last minute.
    pub one: f64,
    /// Last five minutes.
    pub five: f64,
    /// Last fifteen minutes.
    pub fifteen: f64,
}

/// One installed toolchain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainReport {
    /// rustup name, e.g. `"stable"` or `"1.95.0"`.
    pub name: String,
    /// `rustc --version` number, e.g. `"1.95.0"`.
    pub version: String,
    /// The toolchain's host triple.
    pub host_triple: String,
    /// Targets this toolchain can build here, and how.
    pub targets: Vec<BuildableTarget>,
}

/// A target a toolchain can build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildableTarget {
    /// Target triple, e.g. `"aarch64-unknown-linux-gnu"`.
    pub triple: String,
    /// How the standard library and linker are provided.
    pub route: BuildRoute,
}

/// How a target gets its standard library and linker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BuildRoute {
    /// A rustup-installed std, linked with a native or cross linker.
    PrebuiltStd,
    /// std compiled from source with nightly `-Zbuild-std`.
    BuildStd,
    /// Linked through zig (`cargo zigbuild`).
    Zig,
}

/// A build cache an agent holds, making it cheaper to build there again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WarmCache {
    /// Project template the cache was built from.
    pub template_id: TemplateId,
    /// Target triple it was built for.
    pub triple: String,
    /// Toolchain name it was built with.
    pub toolchain: String,
}

/// Periodic load report; doubles as the agent's heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadUpdate {
    /// Increases by one with every update on a connection, so gaps and reorders show.
    pub sequence: u64,
    /// Jobs running now.
    pub running_jobs: u32,
    /// Memory available now.
    pub memory_available_bytes: u64,
    /// Load average now.
    pub load: LoadAverage,
    /// Free space where builds run.
    pub disk_free_bytes: u64,
}

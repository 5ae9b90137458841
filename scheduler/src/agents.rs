//! The scheduler's view of the fleet: one [`AgentRecord`] per agent ever seen, and what its capability report says it can build.

use std::collections::BTreeSet;

use rustle_protocol::{AgentId, BuildRoute, CapabilityReport, JobId, LoadAverage, LoadUpdate};
use rustle_targets::{LibcType, OsFamily, Target};
use serde::Serialize;

use crate::time::Timestamp;

/// Whether an agent can be given work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    /// Connected and heard from recently enough.
    Connected,
    /// Missed heartbeats for longer than the bound; declared lost at `since`.
    Lost {
        /// When it was declared lost.
        since: Timestamp,
    },
    /// Its connection closed at `since`.
    Disconnected {
        /// When the connection closed.
        since: Timestamp,
    },
}

/// One agent as `rustle-cross fleet status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatus {
    /// The agent.
    pub agent: AgentId,
    /// Whether it takes work.
    pub state: AgentState,
    /// CPU architecture it reported.
    pub arch: String,
    /// Operating system it reported.
    pub os: String,
    /// Logical cores.
    pub cores: u32,
    /// Its `max_concurrent_jobs`.
    pub slots: u32,
    /// Jobs dispatched to it and not finished, in id order.
    pub running: Vec<JobId>,
    /// It said it is shutting down: it takes no new jobs.
    pub draining: bool,
    /// Its latest load average.
    pub load: LoadAverage,
    /// When it was last heard from.
    pub last_heard: Timestamp,
    /// Triples its toolchains can build, sorted.
    pub buildable: Vec<String>,
}

/// What the scheduler keeps about an agent.
#[derive(Debug, Clone)]
pub(crate) struct AgentRecord {
    pub(crate) report: CapabilityReport,
    pub(crate) state: AgentState,
    pub(crate) load: LoadAverage,
    pub(crate) last_load_sequence: Option<u64>,
    pub(crate) last_heard: Timestamp,
    /// Jobs dispatched here (offered or running) and not finished.
    pub(crate) assigned: BTreeSet<JobId>,
    /// It is shutting down: no new jobs, its running ones still count.
    pub(crate) draining: bool,
    /// Its place among the agents in name order, as the fleet index last
    /// handed it out (see [`FleetIndex`](crate::index::FleetIndex)).
    pub(crate) position: usize,
}

impl AgentRecord {
    pub(crate) fn new(report: CapabilityReport, now: Timestamp) -> Self {
        Self {
            load: report.load,
            report,
            state: AgentState::Connected,
            last_load_sequence: None,
            last_heard: now,
            assigned: BTreeSet::new(),
            draining: false,
            position: 0,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.state == AgentState::Connected
    }

    pub(crate) fn slots(&self) -> u32 {
        self.report.max_concurrent_jobs
    }

    pub(crate) fn running(&self) -> u32 {
        u32::try_from(self.assigned.len()).unwrap_or(u32::MAX)
    }

    /// One-minute load per core; the report's cores, at least one.
    pub(crate) fn load_per_core(&self) -> f64 {
        let load = if self.load.one.is_finite() { self.load.one.max(0.0) } else { 0.0 };
        load / f64::from(self.report.cores.max(1))
    }

    /// Records a load update; an update older than one already seen changes nothing but liveness.
    pub(crate) fn apply_load(&mut self, update: &LoadUpdate, now: Timestamp) {
        self.last_heard = self.last_heard.max(now);
        if self.last_load_sequence.is_some_and(|seen| update.sequence <= seen) {
            return;
        }
        self.last_load_sequence = Some(update.sequence);
        self.load = update.load;
    }

    pub(crate) fn status(&self) -> AgentStatus {
        AgentStatus {
            agent: self.report.agent_id.clone(),
            state: self.state,
            arch: self.report.arch.clone(),
            os: self.report.os.clone(),
            cores: self.report.cores,
            slots: self.slots(),
            running: self.assigned.iter().copied().collect(),
            draining: self.draining,
            load: self.load,
            last_heard: self.last_heard,
            buildable: buildable_triples(&self.report).into_iter().collect(),
        }
    }
}

/// Every triple any of the agent's toolchains can build.
pub fn buildable_triples(report: &CapabilityReport) -> BTreeSet<String> {
    report.toolchains.iter().flat_map(|t| t.targets.iter().map(|b| b.triple.clone())).collect()
}

/// The toolchain an agent should build `triple` with, or `None` if none of
/// its toolchains lists it. Prefers a prebuilt std over build-std over zig,
/// then a toolchain hosted on the target itself, then the first reported.
pub fn toolchain_for<'a>(report: &'a CapabilityReport, triple: &str) -> Option<&'a str> {
    toolchain_index_for(report, triple).map(|index| report.toolchains[index].name.as_str())
}

/// The index in `report.toolchains` of the toolchain [`toolchain_for`] names.
pub(crate) fn toolchain_index_for(report: &CapabilityReport, triple: &str) -> Option<usize> {
    let route_rank = |route: BuildRoute| match route {
        BuildRoute::PrebuiltStd => 0,
        BuildRoute::BuildStd => 1,
        BuildRoute::Zig => 2,
    };
    report
        .toolchains
        .iter()
        .enumerate()
        .flat_map(|(index, toolchain)| {
            toolchain.targets.iter().filter(|b| b.triple == triple).map(move |b| {
                let hosted_elsewhere = toolchain.host_triple != triple;
                (route_rank(b.route), hosted_elsewhere, index)
            })
        })
        .min()
        .map(|(_, _, index)| index)
}

/// Whether `target` is the agent's own platform, so its binaries build and
/// run there natively. True when some toolchain is hosted on the target
/// triple, or when the agent's reported arch, OS and libc are the target's
/// (an agent binary built for aarch64 and run under emulation reports
/// aarch64 even though its toolchains are hosted elsewhere).
///
/// Whether the agent can *build* the target is a separate question
/// ([`toolchain_for`]).
pub fn is_native(report: &CapabilityReport, target: &Target) -> bool {
    report.toolchains.iter().any(|t| t.host_triple == target.triple) || platform_matches(report, target)
}

/// Compares the agent's `std::env::consts`-style arch and OS names and its
/// libc family with the target's classification.
fn platform_matches(report: &CapabilityReport, target: &Target) -> bool {
    let arch = target.architecture.names().is_some_and(|names| names.rust_arch.contains(&report.arch.as_str()));
    let os = match report.os.as_str() {
        "linux" => target.os_family == OsFamily::Linux,
        "macos" => target.os_family == OsFamily::MacOS,
        "windows" => target.os_family == OsFamily::Windows,
        "freebsd" => target.os_family == OsFamily::FreeBSD,
        "netbsd" => target.os_family == OsFamily::NetBSD,
        "openbsd" => target.os_family == OsFamily::OpenBSD,
        _ => false,
    };
    let libc = match (&target.libc, report.libc.as_ref().map(|l| l.name.as_str())) {
        (Some(LibcType::Glibc), reported) => reported == Some("glibc"),
        (Some(LibcType::Musl), reported) => reported == Some("musl"),
        (Some(LibcType::Msvcrt) | None, _) => true,
    };
    arch && os && libc
}

#[cfg(test)]
mod tests {
    use rustle_protocol::{BuildableTarget, LibcReport, ToolchainReport};

    use super::*;

    fn report(arch: &str, libc: Option<&str>, toolchains: Vec<ToolchainReport>) -> CapabilityReport {
        CapabilityReport {
            agent_id: AgentId("a".into()),
            agent_version: "0.1.0".into(),
            arch: arch.into(),
            os: "linux".into(),
            os_version: String::new(),
            libc: libc.map(|name| LibcReport { name: name.into(), version: String::new() }),
            cores: 4,
            memory_total_bytes: 0,
            memory_available_bytes: 0,
            load: LoadAverage::default(),
            disk_free_bytes: 0,
            toolchains,
            docker_available: false,
            max_concurrent_jobs: 1,
            warm_caches: Vec::new(),
        }
    }

    fn toolchain(name: &str, host: &str, targets: &[(&str, BuildRoute)]) -> ToolchainReport {
        ToolchainReport {
            name: name.into(),
            version: "1.95.0".into(),
            host_triple: host.into(),
            targets: targets.iter().map(|(t, route)| BuildableTarget { triple: (*t).into(), route: *route }).collect(),
        }
    }

    fn spec(triple: &str) -> Target {
        Target::from_triple(triple).unwrap()
    }

    #[test]
    fn native_by_toolchain_host_or_by_reported_platform() {
        const ARM: &str = "aarch64-unknown-linux-gnu";
        const X86: &str = "x86_64-unknown-linux-gnu";
        let hosted = report("x86_64", Some("glibc"), vec![toolchain("stable", ARM, &[(ARM, BuildRoute::PrebuiltStd)])]);
        assert!(is_native(&hosted, &spec(ARM)));

        // An aarch64 agent under qemu: toolchains hosted on x86_64, platform aarch64.
        let emulated =
            report("aarch64", Some("glibc"), vec![toolchain("stable", X86, &[(ARM, BuildRoute::PrebuiltStd)])]);
        assert!(is_native(&emulated, &spec(ARM)));
        assert!(!is_native(&emulated, &spec("aarch64-unknown-linux-musl")));
        assert!(!is_native(&emulated, &spec("armv7-unknown-linux-gnueabihf")));

        let cross = report("x86_64", Some("glibc"), vec![toolchain("stable", X86, &[(ARM, BuildRoute::PrebuiltStd)])]);
        assert!(!is_native(&cross, &spec(ARM)));
        assert!(is_native(&cross, &spec(X86)));
    }

    #[test]
    fn toolchain_choice_prefers_prebuilt_std_then_native_host() {
        const T: &str = "aarch64-unknown-linux-musl";
        let r = report(
            "x86_64",
            None,
            vec![
                toolchain("zig", "x86_64-unknown-linux-gnu", &[(T, BuildRoute::Zig)]),
                toolchain("stable", "x86_64-unknown-linux-gnu", &[(T, BuildRoute::PrebuiltStd)]),
                toolchain("native", T, &[(T, BuildRoute::PrebuiltStd)]),
            ],
        );
        assert_eq!(toolchain_for(&r, T), Some("native"));
        assert_eq!(toolchain_for(&r, "x86_64-unknown-linux-gnu"), None);
        assert_eq!(buildable_triples(&r).into_iter().collect::<Vec<_>>(), vec![T.to_owned()]);
    }
}

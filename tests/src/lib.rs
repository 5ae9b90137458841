//! Test support shared by the workspace's test suites, so no crate copies
//! it: a fleet CA with an agent and a coordinator certificate (or with the
//! coordinator's certificate files, [`CoordinatorPki`]), bounds on
//! async work, process checks, and the one rule for suites that need tools
//! the project's scripts install (fail naming the script, or skip when a
//! variable says so, and print the skip).

#![allow(clippy::unwrap_used, reason = "test support fails the test on purpose")]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustle_transport::{CertBundle, FleetCa};

/// The agent certificate name the fixtures issue.
pub const AGENT: &str = "builder-1";
/// The coordinator certificate name the fixtures issue.
pub const COORDINATOR: &str = "deploy-1";
/// Set to `1` to skip (rather than fail) tests whose cross tools are missing.
pub const SKIP_CROSS_TOOLS: &str = "RUSTLE_SKIP_CROSS_TOOLS";

/// A fleet CA with one agent ([`AGENT`], with 127.0.0.1 as a SAN) and one
/// coordinator ([`COORDINATOR`]) certificate.
pub struct TestFleet {
    /// The CA.
    pub ca: FleetCa,
    /// Issued for [`AGENT`].
    pub agent: CertBundle,
    /// Issued for [`COORDINATOR`].
    pub coordinator: CertBundle,
}

impl TestFleet {
    /// A new CA and its two certificates.
    pub fn new() -> Self {
        let ca = FleetCa::generate().expect("fleet CA");
        let agent = ca.issue_agent(AGENT, &["127.0.0.1".into()]).expect("agent certificate");
        let coordinator = ca.issue_coordinator(COORDINATOR).expect("coordinator certificate");
        Self { ca, agent, coordinator }
    }
}

impl Default for TestFleet {
    fn default() -> Self {
        Self::new()
    }
}

/// A fleet CA whose coordinator certificate ([`COORDINATOR`]) is written to
/// files, as a coordinator's `[cross_compilation.fleet]` names them, and
/// which issues agent certificates by name.
pub struct CoordinatorPki {
    /// The CA.
    pub ca: FleetCa,
    /// Holds `ca.pem`, `coordinator.pem` and `coordinator-key.pem`.
    pub dir: tempfile::TempDir,
}

impl CoordinatorPki {
    /// A new CA with the coordinator's files written.
    pub fn new() -> Self {
        let ca = FleetCa::generate().expect("fleet CA");
        let dir = tempfile::tempdir().expect("tempdir");
        ca.issue_coordinator(COORDINATOR).expect("issue").write_to(dir.path(), "coordinator").expect("write");
        Self { ca, dir }
    }

    /// An agent certificate for `name` (its name is its only SAN).
    pub fn issue_agent(&self, name: &str) -> CertBundle {
        self.ca.issue_agent(name, &[]).expect("agent certificate")
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The coordinator's certificate file.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("coordinator.pem")
    }

    /// The coordinator's private key file.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("coordinator-key.pem")
    }

    /// The directory the files are in (for other scratch files of a test).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for CoordinatorPki {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `work`, failing the test if it takes longer than `limit`.
pub async fn bounded<T>(limit: Duration, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"))
}

/// Whether a process is alive (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the command name in parentheses.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// Live processes whose command line names something under `dir`, as
/// `PID: COMMAND LINE`: what a killed program or its builds left running.
pub fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_alive(*pid))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// Busy loops at normal priority, one per core, until dropped: the load of
/// a parallel build, without its minutes.
#[derive(Debug)]
pub struct CpuLoad(Vec<std::process::Child>);

impl CpuLoad {
    /// Starts one busy loop per core.
    pub fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let spawn = || std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("busy loop");
        Self((0..cores).map(|_| spawn()).collect())
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// Polls until process `pid` is gone, failing the test after `limit`.
pub fn wait_until_gone(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `variable=1` asks to skip the `suite` tests (an environment the
/// project's scripts start); prints the skip so it is never silent.
pub fn skip_requested(variable: &str, suite: &str) -> bool {
    let skip = std::env::var(variable).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("SKIPPED: {suite} tests skipped because {variable}=1");
    }
    skip
}

/// Whether `RUSTLE_SKIP_CROSS_TOOLS=1` asks to skip tests whose tools are missing.
pub fn skipping_missing_cross_tools() -> bool {
    std::env::var(SKIP_CROSS_TOOLS).is_ok_and(|v| v == "1")
}

/// Finds `tool` on PATH. When it is missing: fails the test with a pointer
/// to `scripts/setup.sh`, or returns `None` (after printing the skip) when
/// `RUSTLE_SKIP_CROSS_TOOLS=1`.
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    match which::which(tool) {
        Ok(path) => Some(path),
        Err(_) => {
            require_present(false, &format!("`{tool}`"));
            None
        }
    }
}

/// Whether every tool in `tools` is on PATH; fails or skips (as
/// [`require_tool`]) naming all the missing ones.
pub fn require_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| which::which(t).is_err()).collect();
    missing.is_empty() || require_present(false, &missing.join(", "))
}

/// Goes on when `present`; otherwise fails the test naming `what` and
/// `scripts/setup.sh`, or prints the skip and returns `false` when
/// `RUSTLE_SKIP_CROSS_TOOLS=1`.
pub fn require_present(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if skipping_missing_cross_tools() {
        eprintln!("SKIPPED: {what} missing and {SKIP_CROSS_TOOLS}=1; run scripts/setup.sh (as root) to test this");
        return false;
    }
    panic!(
        "{what} missing: run scripts/setup.sh (as root) to install the cross tools, or set {SKIP_CROSS_TOOLS}=1 to skip the tests that need them"
    );
}

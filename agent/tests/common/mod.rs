//! Shared set-up for the agent tests: a fleet CA, an agent served on loopback
//! port 0, a minimal coordinator-side driver, and small templates written
//! outside the repository.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustle_agent::{AgentConfig, AgentError};
use rustle_engine::bundle::{BundleLimits, pack_dir};
use rustle_protocol::{
    AgentToCoordinator, BuildTarget, BulkAck, BulkHeader, BulkKind, CoordinatorToAgent, Hello, JobId, JobOffer,
    OptimizationSettings, Role, Sha256Digest, TemplateId,
};
use rustle_transport::{AgentListener, AllowedCoordinators, Connection, ControlStream, CoordinatorDialer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[allow(unused_imports, reason = "each test binary uses a different part of this module")]
pub use rustle_test_support::{AGENT, COORDINATOR, TestFleet as Fleet, bounded, process_alive};
/// The target every test host can build.
pub const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// Bound on waiting for any one message.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(240);

/// A fleet CA with an agent and a coordinator certificate.
pub fn fleet() -> Fleet {
    Fleet::new()
}

/// An agent serving on 127.0.0.1 port 0 in this process.
pub struct RunningAgent {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its work dir (`scratch/work`).
    pub work_dir: PathBuf,
    /// Parent of the work dir, to check nothing is written beside it.
    pub scratch: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), AgentError>>>,
}

impl RunningAgent {
    /// Starts an agent; `tweak` adjusts its config.
    pub fn start(fleet: &Fleet, tweak: impl FnOnce(&mut AgentConfig)) -> Self {
        let scratch = tempfile::Builder::new().prefix("rustle-agent-test").tempdir().expect("scratch dir");
        let work_dir = scratch.path().join("work");
        let mut config = AgentConfig {
            work_dir: work_dir.clone(),
            agent_id: Some(AGENT.into()),
            heartbeat_interval_ms: 2000,
            ..AgentConfig::default()
        };
        tweak(&mut config);
        let (listener, addr) = AgentListener::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &fleet.agent,
            AllowedCoordinators::AnyFromFleetCa,
        )
        .expect("listener binds");
        let (shutdown, signal) = oneshot::channel();
        let task = tokio::spawn(rustle_agent::serve(listener, config, async move {
            let _ = signal.await;
        }));
        Self { addr, work_dir, scratch, shutdown: Some(shutdown), task: Some(task) }
    }

    /// Asks the agent to shut down, without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Asks the agent to shut down and waits (bounded) for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let result = bounded(Duration::from_secs(90), task).await.expect("serve task");
            result.expect("serve ends cleanly");
        }
    }
}

/// A minimal coordinator: one connection, its control stream, bulk streams.
pub struct Driver {
    /// The connection.
    pub connection: Connection,
    /// The control stream.
    pub control: ControlStream,
    _dialer: CoordinatorDialer,
}

impl Driver {
    /// Dials the agent and exchanges hellos.
    pub async fn connect(fleet: &Fleet, addr: SocketAddr) -> Self {
        let dialer = CoordinatorDialer::new(&fleet.coordinator).expect("dialer");
        let connection = dialer.connect(addr, AGENT).await.expect("connects");
        let control = connection.open_control(Hello::new(Role::Coordinator, "0.1.0")).await.expect("hello exchange");
        Self { connection, control, _dialer: dialer }
    }

    /// Sends one frame.
    pub async fn send(&mut self, message: CoordinatorToAgent) {
        self.control.send(&message).await.expect("control frame sent");
    }

    /// The next frame, whatever it is.
    pub async fn recv_any(&mut self) -> AgentToCoordinator {
        bounded(MESSAGE_TIMEOUT, self.control.recv::<AgentToCoordinator>())
            .await
            .expect("control stream readable")
            .expect("the agent did not end the control stream")
    }

    /// The next frame that is not a heartbeat or capability report.
    pub async fn recv(&mut self) -> AgentToCoordinator {
        loop {
            match self.recv_any().await {
                AgentToCoordinator::Load(_) | AgentToCoordinator::Capabilities(_) => {}
                other => return other,
            }
        }
    }

    /// The next frame about `job` (frames about other jobs are skipped).
    pub async fn recv_for(&mut self, job: JobId) -> AgentToCoordinator {
        loop {
            let message = self.recv().await;
            if job_of(&message) == Some(job) {
                return message;
            }
        }
    }

    /// Frames about `job` up to and including its `Finished`.
    pub async fn recv_until_finished(&mut self, job: JobId) -> Vec<AgentToCoordinator> {
        let mut seen = Vec::new();
        loop {
            let message = self.recv_for(job).await;
            let done = matches!(&message, AgentToCoordinator::Finished { job: j, .. } if *j == job);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Sends `bytes` as the job's source bundle.
    pub async fn send_bundle(&self, job: JobId, bytes: &[u8]) {
        let header = BulkHeader {
            kind: BulkKind::SourceBundle,
            job,
            file_name: "source.tar.zst".into(),
            total_len: bytes.len() as u64,
            sha256: Sha256Digest::of(bytes),
        };
        let mut sender = self.connection.open_bulk(header).await.expect("bulk stream opens");
        sender.write_all(bytes).await.expect("bundle written");
        sender.finish().await.expect("bundle delivered");
    }

    /// Starts receiving the next artifact in the background.
    pub fn expect_artifact(&self) -> JoinHandle<(BulkHeader, Vec<u8>)> {
        let connection = self.connection.clone();
        tokio::spawn(async move {
            let incoming = connection.accept_bulk().await.expect("artifact stream");
            let header = incoming.header().clone();
            let body = incoming.read_to_vec().await.expect("artifact verified by the transport");
            (header, body)
        })
    }
}

/// The job a frame is about, if any.
pub fn job_of(message: &AgentToCoordinator) -> Option<JobId> {
    match message {
        AgentToCoordinator::Accept { job }
        | AgentToCoordinator::Reject { job, .. }
        | AgentToCoordinator::Event { job, .. }
        | AgentToCoordinator::Finished { job, .. }
        | AgentToCoordinator::BulkAck(BulkAck::Verified { job, .. } | BulkAck::Rejected { job, .. }) => Some(*job),
        AgentToCoordinator::Capabilities(_) | AgentToCoordinator::Load(_) | AgentToCoordinator::Draining { .. } => None,
    }
}

/// An offer of `template_id` for `triple`.
pub fn offer(job: u64, template_id: &str, triple: &str) -> JobOffer {
    JobOffer {
        job: JobId(job),
        template_id: TemplateId(template_id.into()),
        target: BuildTarget { name: triple.into(), ..BuildTarget::default() },
        toolchain: String::new(),
        optimization: OptimizationSettings::default(),
        deadline_secs: 600,
        // These tests are about building; the agent's binary cache has its own.
        use_cache: false,
    }
}

/// A template directory outside any cargo workspace (cargo refuses a
/// package inside another workspace's tree).
pub struct Template {
    /// Holds the files.
    pub dir: tempfile::TempDir,
}

impl Template {
    /// A package `name` with `main_rs` and, if given, `build_rs`.
    pub fn new(name: &str, main_rs: &str, build_rs: Option<&str>) -> Self {
        Self::with_dependencies(name, main_rs, build_rs, "")
    }

    /// As [`new`](Self::new), with `dependencies` as the manifest's
    /// `[dependencies]` lines (cargo adds them to the Cargo.lock).
    pub fn with_dependencies(name: &str, main_rs: &str, build_rs: Option<&str>, dependencies: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("rustle-agent-template").tempdir().expect("template dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).expect("src dir");
        std::fs::write(
            root.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\n{dependencies}"
            ),
        )
        .expect("Cargo.toml");
        std::fs::write(
            root.join("Cargo.lock"),
            format!("# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n\n[[package]]\nname = \"{name}\"\nversion = \"0.1.0\"\n"),
        )
        .expect("Cargo.lock");
        std::fs::write(root.join("src/main.rs"), main_rs).expect("main.rs");
        if let Some(build_rs) = build_rs {
            std::fs::write(root.join("build.rs"), build_rs).expect("build.rs");
        }
        Self { dir }
    }

    /// The packed source bundle.
    pub fn bundle(&self) -> Vec<u8> {
        pack_dir(self.dir.path(), &BundleLimits::default()).expect("template packs").bytes
    }
}

/// A template whose build script writes its pid to `pid_file` and then sleeps.
pub fn slow_template(pid_file: &Path) -> Template {
    let build_rs = format!(
        "fn main() {{\n    std::fs::write({:?}, std::process::id().to_string()).unwrap();\n    std::thread::sleep(std::time::Duration::from_secs(600));\n}}\n",
        pid_file.display().to_string()
    );
    Template::new("slow-agent", "fn main() {}\n", Some(&build_rs))
}

/// Polls `condition` every 50 ms until it holds, failing after `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Live processes whose command line mentions `path` (cargo, rustc and build scripts of a job).
pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.display().to_string();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(&needle) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Every file under `dir` named `name`.
pub fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if entry.file_name() == name {
                found.push(path);
            }
        }
    }
    found
}

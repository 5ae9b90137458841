//! Process level: the real `rustle-agent`, cross-compiled for aarch64 by
//! rustle-cross itself and run under qemu-aarch64, reports aarch64 as its
//! native arch; the real `rustle-cross` routes aarch64 jobs to it first; and
//! when the agent is SIGKILLed in the middle of a build, the job completes
//! on the local fallback with a correct binary and the agent's build dies
//! with it. With the default heartbeat bound (1 s beats, lost after 3 s) and
//! the machine loaded, the emulated agent is never declared lost.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cache_dir, json, require_cross_tools, rustle_cross, scratch_template, stderr, work_root};
use rustle_test_support::{CpuLoad, process_alive, processes_mentioning};

const AGENT: &str = "qemu-arm64";
const TRIPLE: &str = "aarch64-unknown-linux-gnu";

/// Kills the agent when the test ends, however it ends.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The agent binary for aarch64, built by the CLI under test. Never from
/// the binary cache: its key covers the template's own directory, and the
/// agent's workspace dependencies (transport, engine) live outside it.
fn build_aarch64_agent() -> PathBuf {
    let agent_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent");
    let out = work_root().join("qemu-agent/bin");
    let args = ["build", s(&agent_dir), "-t", TRIPLE, "--opt-level", "debug", "--no-cache", "--json", "--out", s(&out)];
    let build = rustle_cross(&args);
    let report = json(&build);
    assert!(build.status.success(), "cross-compiling rustle-agent failed: {report:#}");
    let result = &report["results"][0];
    assert_eq!(result["validation"]["machine"], "aarch64", "{result:#}");
    PathBuf::from(result["file"].as_str().expect("file"))
}

/// A fleet CA, an agent certificate and a coordinator certificate, made
/// with the CLI.
fn certificates(dir: &Path) {
    let ca = dir.join("ca");
    for args in [
        vec!["ca", "init", "--dir", s(&ca)],
        vec!["ca", "issue", "--agent", AGENT, "--san", "127.0.0.1", "--dir", s(&ca), "--out", s(dir)],
        vec!["ca", "issue", "--coordinator", "ci", "--dir", s(&ca), "--out", s(dir)],
    ] {
        let out = rustle_cross(&args);
        assert!(out.status.success(), "rustle-cross {}: {}", args.join(" "), stderr(&out));
    }
    let key_mode = std::fs::metadata(dir.join(format!("{AGENT}-key.pem"))).expect("agent key").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777, 0o600);
}

/// Starts the aarch64 agent under qemu and returns it with its address.
fn start_agent(binary: &Path, dir: &Path) -> (AgentProcess, String) {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\nwork_dir = \"{work}\"\n\
             agent_id = \"{AGENT}\"\nmax_concurrent_jobs = 1\nheartbeat_interval_ms = 1000\n\
             allowed_targets = [\"{TRIPLE}\", \"{TRIPLE}.2.17\"]\n",
            ca = s(&dir.join("ca.pem")),
            cert = s(&dir.join(format!("{AGENT}.pem"))),
            key = s(&dir.join(format!("{AGENT}-key.pem"))),
            work = s(&dir.join("agent-work")),
        ),
    )
    .expect("agent config");
    let mut child = Command::new("qemu-aarch64")
        .args(["-L", "/"])
        .arg(binary)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent under qemu-aarch64");
    let stderr = child.stderr.take().expect("stderr");
    let agent = AgentProcess(child);
    // Read its announcement on a thread so a silent agent cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[agent] {line}");
            if let Some(addr) = line.strip_prefix("rustle-agent: listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(120)).expect("the agent announced its address");
    (agent, addr)
}

fn coordinator_config(dir: &Path, agent_addr: &str) -> PathBuf {
    let path = dir.join("coordinator.toml");
    std::fs::write(
        &path,
        format!(
            "[cross_compilation]\nbinary_cache = false\n\n\
             [cross_compilation.fleet]\nagents = [{{ name = \"{AGENT}\", address = \"{agent_addr}\" }}]\n\
             ca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\nheartbeat_timeout_secs = 3\nconnect_timeout_secs = 30\n",
            ca = s(&dir.join("ca.pem")),
            cert = s(&dir.join("ci.pem")),
            key = s(&dir.join("ci-key.pem")),
        ),
    )
    .expect("coordinator config");
    path
}

const MANIFEST: &str = "[package]\nname = \"fleet-hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n";

fn run_aarch64(binary: &Path) -> String {
    let out = Command::new("qemu-aarch64").args(["-L", "/"]).arg(binary).output().expect("run under qemu");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn qemu_aarch64_agent_is_native_gets_aarch64_jobs_and_survives_sigkill() {
    if !require_cross_tools(&["qemu-aarch64", "aarch64-linux-gnu-gcc", "zig", "cargo-zigbuild"]) {
        return;
    }
    let binary = build_aarch64_agent();
    let dir = tempfile::tempdir().expect("tmp");
    certificates(dir.path());
    let (mut agent, addr) = start_agent(&binary, dir.path());
    let config = coordinator_config(dir.path(), &addr);
    let config = s(&config);

    // The agent, an aarch64 binary under emulation, reports aarch64.
    let status = rustle_cross(&["--config", config, "fleet", "status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status = json(&status);
    let text = status.to_string();
    assert!(text.contains(AGENT), "{status:#}");
    assert!(text.contains("\"arch\":\"aarch64\""), "the agent must report aarch64: {status:#}");

    // An aarch64 job goes to the native agent, not to this machine, which
    // could also build it.
    let template = scratch_template(
        "fleet-process-hello",
        &[
            ("Cargo.toml", MANIFEST),
            ("src/main.rs", "fn main() { println!(\"fleet-hello {}\", std::env::consts::ARCH); }\n"),
        ],
    );
    let out_dir = tempfile::tempdir().expect("tmp");
    // Every core busy at the agent's own priority while it builds: its
    // heartbeats still arrive, so it is never lost and the job never moves.
    let load = CpuLoad::start();
    let build =
        rustle_cross(&["--config", config, "build", s(&template), "-t", TRIPLE, "--json", "--out", s(out_dir.path())]);
    drop(load);
    let report = json(&build);
    assert!(build.status.success(), "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["status"], "ok", "{result:#}");
    assert!(result["executor"].to_string().contains(AGENT), "built on the native agent: {result:#}");
    assert_eq!(result["decisions"].as_array().map(Vec::len), Some(1), "placed once, never lost: {result:#}");
    let decision = result["decisions"].to_string();
    assert!(decision.contains("ative"), "the decision names the native tier: {decision}");
    let file = PathBuf::from(result["file"].as_str().expect("file"));
    assert_eq!(run_aarch64(&file).trim(), "fleet-hello aarch64");

    // The whole target reaches the agent: its glibc floor is built there
    // (through zig), not refused and rebuilt by the local fallback, and the
    // file is named by the full target.
    let floor = format!("{TRIPLE}.2.17");
    let build =
        rustle_cross(&["--config", config, "build", s(&template), "-t", &floor, "--json", "--out", s(out_dir.path())]);
    let report = json(&build);
    assert!(build.status.success(), "{report:#}");
    let result = &report["results"][0];
    assert!(result["executor"].to_string().contains(AGENT), "the floor built on the agent: {result:#}");
    let glibc = &result["validation"]["max_glibc"];
    assert!(
        (glibc["major"].as_u64(), glibc["minor"].as_u64()) <= (Some(2), Some(17)),
        "newest GLIBC symbol above the floor: {result:#}"
    );
    let floor_file = PathBuf::from(result["file"].as_str().expect("file"));
    assert_eq!(floor_file, out_dir.path().join(format!("fleet-hello-{floor}")));
    assert_ne!(floor_file, file, "two targets, two files");
    assert_eq!(run_aarch64(&floor_file).trim(), "fleet-hello aarch64");

    // SIGKILL the agent while its cargo runs a build script that, on the
    // agent only (its sources live under `agent-work`), waits until the test
    // removes its pid file: the job must complete on the local fallback,
    // correctly. The build cannot finish before the kill, however slow the
    // machine.
    let pid_file = work_root().join("fleet-slow.started");
    let _ = std::fs::remove_file(&pid_file);
    let build_rs = format!(
        "fn main() {{\n    let dir = std::env::var(\"CARGO_MANIFEST_DIR\").unwrap_or_default();\n    \
         if dir.contains(\"agent-work\") {{\n        \
         std::fs::write({:?}, std::process::id().to_string()).unwrap();\n        \
         let start = std::time::Instant::now();\n        \
         while std::path::Path::new({:?}).exists() && start.elapsed().as_secs() < 600 {{\n            \
         std::thread::sleep(std::time::Duration::from_millis(100));\n        }}\n    }}\n}}\n",
        s(&pid_file),
        s(&pid_file)
    );
    let slow = scratch_template(
        "fleet-slow",
        &[
            ("Cargo.toml", &MANIFEST.replace("fleet-hello", "fleet-slow")),
            ("build.rs", &build_rs),
            ("src/main.rs", "fn main() { println!(\"fleet-slow {}\", std::env::consts::ARCH); }\n"),
        ],
    );
    std::fs::write(slow.join("build.rs"), &build_rs).expect("touch build.rs");
    let out_dir = tempfile::tempdir().expect("tmp");
    let coordinator = Command::new(env!("CARGO_BIN_EXE_rustle-cross"))
        .args(["--config", config, "build", s(&slow), "-t", TRIPLE, "--json", "--out", s(out_dir.path())])
        .env("RUSTLE_TARGET_CACHE_DIR", cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rustle-cross");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the agent never started the slow build");
        std::thread::sleep(Duration::from_millis(50));
    }
    let build_script: u32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("a pid");
    agent.0.kill().expect("SIGKILL the agent");
    let _ = agent.0.wait();
    // The killed agent cannot stop its build; its orphan reaper does: the
    // build script and every process working in the agent's dir go too.
    let agent_work = dir.path().join("agent-work");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = processes_mentioning(&agent_work);
        if !process_alive(build_script) && left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the killed agent's build lives on: script {build_script}, {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(&pid_file).expect("remove the pid file");
    let out = coordinator.wait_with_output().expect("rustle-cross finished");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert!(out.status.success(), "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["status"], "ok", "{result:#}");
    assert!(!result["executor"].to_string().contains(AGENT), "must not come from the killed agent: {result:#}");
    assert!(result["decisions"].as_array().is_some_and(|d| d.len() >= 2), "re-dispatched: {result:#}");
    let file = PathBuf::from(result["file"].as_str().expect("file"));
    assert_eq!(run_aarch64(&file).trim(), "fleet-slow aarch64");
}

//! Process level: the real `rustle-agent`, cross-built for
//! x86_64-pc-windows-gnu by rustle-cross itself and run under Wine through
//! the engine's runner (its prefix and ProcessPrng shim), handshakes with
//! the real `rustle-cross` over QUIC with mutual TLS and reports os
//! windows. It has no Rust toolchain under Wine, so it reports none: a
//! build for x86_64-unknown-linux-gnu with it in the fleet is not placed
//! there, the decision says why, and the target is built on this machine.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{cache_dir, example_template, json, require_cross_tools, rustle_cross, stderr, work_root};
use rustle_engine::runner::{RunnerPlan, plan_runner, runner_spec};
use rustle_targets::Target;
use rustle_test_support::{processes_mentioning, require_present, wait_until_gone};

const AGENT: &str = "wine-win64";
const WINDOWS: &str = "x86_64-pc-windows-gnu";
const LINUX: &str = "x86_64-unknown-linux-gnu";

/// The agent under Wine, in its own process group. Dropped (the test
/// ended, however it ended), it kills that group. The wineserver and Wine's
/// services belong to the shared prefix (other tests' Windows binaries run
/// in it too, so no `wineserver -k` here): they end on their own a few
/// seconds after their last client.
struct WineAgent(Child);

impl Drop for WineAgent {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `path` as the Windows program sees it: Wine maps `/` to drive Z:.
fn on_z(path: &Path) -> String {
    format!("Z:{}", s(path))
}

/// How this machine runs Windows binaries, or `None` (after failing or
/// printing the skip, by the shared rule) when Wine is missing.
fn wine_plan() -> Option<RunnerPlan> {
    let target = Target::from_triple(WINDOWS).expect("target");
    match plan_runner(&target) {
        Ok(plan) => Some(plan),
        Err(error) => {
            require_present(false, &format!("wine ({error})"));
            None
        }
    }
}

/// The agent binary for Windows, built by the CLI under test in the shared
/// cache (its target dir persists, so a rebuild is incremental). Never
/// from the binary cache: its key covers the template's own directory, and
/// the agent's workspace dependencies (transport, engine) live outside it.
fn build_windows_agent() -> PathBuf {
    let agent_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent");
    let out = work_root().join("windows-agent/bin");
    let args =
        ["build", s(&agent_dir), "-t", WINDOWS, "--opt-level", "debug", "--no-cache", "--json", "--out", s(&out)];
    let build = rustle_cross(&args);
    let report = json(&build);
    assert!(build.status.success(), "cross-compiling rustle-agent for Windows failed: {report:#}");
    let result = &report["results"][0];
    assert_eq!(result["validation"]["format"], "Pe", "{result:#}");
    assert_eq!(result["validation"]["machine"], "x86_64", "{result:#}");
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
}

/// Starts the Windows agent under Wine, as the engine runs any Windows
/// binary, and returns it with its address.
fn start_agent(plan: &RunnerPlan, binary: &Path, dir: &Path) -> (WineAgent, String) {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\nwork_dir = \"{work}\"\n\
             agent_id = \"{AGENT}\"\nmax_concurrent_jobs = 1\nheartbeat_interval_ms = 1000\n",
            ca = on_z(&dir.join("ca.pem")),
            cert = on_z(&dir.join(format!("{AGENT}.pem"))),
            key = on_z(&dir.join(format!("{AGENT}-key.pem"))),
            work = on_z(&dir.join("agent-work")),
        ),
    )
    .expect("agent config");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let spec = runtime
        .block_on(runner_spec(plan, binary, &cache_dir()))
        .unwrap_or_else(|error| panic!("preparing wine: {error}"))
        .arg("--config")
        .arg(on_z(&config))
        // Under Wine the agent would look for rustc.exe in this machine's
        // (Linux) rustup home: it looks in the prefix's empty profile instead.
        .env_remove("RUSTUP_HOME")
        .env_remove("CARGO_HOME")
        .env_remove("RUSTUP_TOOLCHAIN");
    let mut command = spec.std_command();
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the agent under wine");
    let stderr = child.stderr.take().expect("stderr");
    let agent = WineAgent(child);
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
             ca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\nconnect_timeout_secs = 30\n",
            ca = s(&dir.join("ca.pem")),
            cert = s(&dir.join("ci.pem")),
            key = s(&dir.join("ci-key.pem")),
        ),
    )
    .expect("coordinator config");
    path
}

#[test]
fn windows_agent_under_wine_handshakes_reports_windows_and_takes_no_job_without_a_toolchain() {
    let Some(plan) = wine_plan() else { return };
    // MinGW links the agent and builds the ProcessPrng shim.
    if !require_cross_tools(&["x86_64-w64-mingw32-gcc"]) {
        return;
    }
    let binary = build_windows_agent();
    let dir = tempfile::tempdir().expect("tmp");
    certificates(dir.path());
    let (agent, addr) = start_agent(&plan, &binary, dir.path());
    let config = coordinator_config(dir.path(), &addr);
    let config = s(&config);

    // The handshake (QUIC, mutual TLS, hello) and the capability report.
    let status = rustle_cross(&["--config", config, "fleet", "status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status = json(&status);
    let agents = status["agents"].as_array().expect("agents");
    let view = agents.iter().find(|a| a["name"] == AGENT).unwrap_or_else(|| panic!("{AGENT} missing: {status:#}"));
    assert_eq!(view["connection"]["state"], "connected", "{view:#}");
    let report = &view["capabilities"];
    assert_eq!(report["agent_id"], AGENT, "{view:#}");
    assert_eq!(report["os"], "windows", "the agent must report windows: {view:#}");
    assert_eq!(report["arch"], "x86_64", "{view:#}");
    assert_eq!(report["toolchains"], serde_json::json!([]), "no Rust toolchain under wine: {view:#}");
    assert_eq!(view["status"]["buildable"], serde_json::json!([]), "{view:#}");

    // A Linux build with the Windows agent in the fleet: never placed
    // there (it can build nothing), built here instead.
    let out_dir = tempfile::tempdir().expect("tmp");
    let template = example_template();
    let build_args = ["--config", config, "build", s(&template), "-t", LINUX, "--out", s(out_dir.path())];
    let build = rustle_cross(&[&build_args[..], &["--json"]].concat());
    let report = json(&build);
    assert!(build.status.success(), "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["status"], "ok", "{result:#}");
    assert_eq!(result["executor"], serde_json::json!({ "kind": "fallback", "name": "local" }), "{result:#}");
    let decisions = result["decisions"].as_array().expect("decisions");
    assert!(!decisions.is_empty(), "placed by the scheduler: {result:#}");
    for decision in decisions {
        assert_ne!(decision["chosen"]["name"], AGENT, "placed on the Windows agent: {decision:#}");
        let candidate = decision["candidates"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["executor"]["name"] == AGENT))
            .unwrap_or_else(|| panic!("the agent is a candidate: {decision:#}"));
        assert_eq!(candidate["verdict"], "not_buildable", "{decision:#}");
    }
    assert_eq!(result["validation"]["format"], "Elf", "{result:#}");
    let file = PathBuf::from(result["file"].as_str().expect("file"));
    let ran = Command::new(&file).output().expect("run the Linux binary");
    assert!(String::from_utf8_lossy(&ran.stdout).contains("\"os\":\"linux\""), "{ran:?}");
    // The decision as the user reads it (`-v`).
    let verbose = rustle_cross(&[&build_args[..], &["-v"]].concat());
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    let text = String::from_utf8_lossy(&verbose.stdout);
    let why = format!("agent {AGENT}: cannot build the target: no toolchain for it");
    assert!(text.contains(&why) && text.contains("fallback local: chosen"), "the decision names why ({why}):\n{text}");

    // Ended, the agent leaves no process behind.
    let pid = agent.0.id();
    drop(agent);
    wait_until_gone(pid, Duration::from_secs(30));
    let left = processes_mentioning(dir.path());
    assert!(left.is_empty(), "the agent's processes live on: {left:?}");
}

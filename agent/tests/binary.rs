//! The real `rustle-agent` binary: config errors, `--print-capabilities`,
//! and serving a coordinator until SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Driver, HOST_TRIPLE, bounded, fleet};
use rustle_protocol::{AgentToCoordinator, CapabilityReport};

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_rustle-agent");

#[test]
fn unknown_config_keys_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "max_jobs = 3\n").expect("config");
    let output = Command::new(AGENT_BIN).arg("--config").arg(&config).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_jobs"), "{stderr}");
}

#[test]
fn print_capabilities_honours_allowed_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "work_dir = {:?}\nagent_id = \"probe\"\nallowed_targets = [\"{HOST_TRIPLE}\"]\n",
            dir.path().join("work").display().to_string()
        ),
    )
    .expect("config");
    let output =
        Command::new(AGENT_BIN).arg("--config").arg(&config).arg("--print-capabilities").output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: CapabilityReport = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report.agent_id.0, "probe");
    assert_eq!(report.arch, std::env::consts::ARCH);
    let triples: Vec<&str> =
        report.toolchains.iter().flat_map(|t| t.targets.iter().map(|x| x.triple.as_str())).collect();
    assert!(!triples.is_empty() && triples.iter().all(|t| *t == HOST_TRIPLE), "{triples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_coordinator_until_sigterm() {
    let fleet = fleet();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = fleet.agent.write_to(&dir.path().join("certs"), "agent").expect("certificates");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nca = {:?}\ncert = {:?}\nkey = {:?}\nwork_dir = {:?}\nagent_id = \"{}\"\n\
             heartbeat_interval_ms = 200\nallowed_coordinators = [\"{}\"]\n",
            files.ca.display().to_string(),
            files.cert.display().to_string(),
            files.key.display().to_string(),
            dir.path().join("work").display().to_string(),
            common::AGENT,
            common::COORDINATOR,
        ),
    )
    .expect("config");
    let mut child = Command::new(AGENT_BIN)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("agent starts");
    let stderr = child.stderr.take().expect("stderr");
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("agent: {line}");
            if let Some(addr) = line.strip_prefix("rustle-agent: listening on ").and_then(|a| a.trim().parse().ok())
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = bounded(Duration::from_secs(60), addr_rx).await.expect("the agent prints its address");

    let mut driver = Driver::connect(&fleet, addr).await;
    assert!(matches!(driver.recv_any().await, AgentToCoordinator::Capabilities(_)));
    assert!(matches!(driver.recv_any().await, AgentToCoordinator::Load(_)));

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "the agent did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}

//! The short mode of the fleet-scale benchmark (`scripts/bench-fleet-scale.sh`),
//! run in CI so the benchmark keeps working: 20 simulated agents (one
//! process, each its own QUIC endpoint with its own certificate from the
//! fleet CA) and 200 jobs through the real fleet; every job must come back
//! from an agent with the canned binary's checksum. No timing assertions.
//! `RUSTLE_FLEET_SCALE_AGENTS` and `RUSTLE_FLEET_SCALE_JOBS` change the sizes.

mod fleet_scale_support;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_agent::simulate::SimulateSettings;
use rustle_agent::simulated_fleet::{SimulatedFleet, serve_simulated_fleet};
use rustle_cross::fleet::config::{AgentEndpoint, FleetConfig};
use rustle_cross::fleet::{BuildSource, Fleet, FleetOptions};
use rustle_cross::targets::TemplateId;
use rustle_test_support::CoordinatorPki;

/// Agents and jobs unless the environment says otherwise.
const AGENTS: u16 = 20;
const JOBS: usize = 200;

fn size<T: std::str::FromStr>(variable: &str, default: T) -> T {
    std::env::var(variable).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// A base port from which `count` UDP ports on loopback are free now.
fn free_port_run(count: u16) -> u16 {
    for attempt in 0..280u32 {
        let slot = (std::process::id() + attempt * 7) % 280;
        let base = u16::try_from(20_000 + slot * 150).expect("below 62,000");
        let sockets: Vec<_> = (0..count).map_while(|i| UdpSocket::bind((Ipv4Addr::LOCALHOST, base + i)).ok()).collect();
        if sockets.len() == usize::from(count) {
            return base;
        }
    }
    panic!("no run of {count} free UDP ports on loopback");
}

/// The canned binary: a small real binary of this host's target.
fn canned_binary() -> Option<PathBuf> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")) {
        return None;
    }
    ["/bin/true", "/usr/bin/true"].into_iter().map(PathBuf::from).find(|path| path.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_through_twenty_simulated_agents_all_come_back_verified() {
    let (agents_count, jobs) = (size("RUSTLE_FLEET_SCALE_AGENTS", AGENTS), size("RUSTLE_FLEET_SCALE_JOBS", JOBS));
    let Some(binary) = canned_binary() else {
        eprintln!("skipped: the canned binary (/bin/true of an x86_64 GNU/Linux host) is not here");
        return;
    };
    let pki = CoordinatorPki::new();
    let certs = pki.path().join("agents");
    let prefix = "sim-agent-";
    for index in 0..agents_count {
        let name = format!("{prefix}{index}");
        pki.issue_agent(&name).write_to(&certs, &name).expect("agent certificate written");
    }
    let base_port = free_port_run(agents_count);
    let simulated = SimulatedFleet {
        count: agents_count,
        ip: Ipv4Addr::LOCALHOST.into(),
        base_port,
        name_prefix: prefix.into(),
        certs,
        ca: pki.ca_file(),
        work_dir: pki.path().join("work"),
        max_concurrent_jobs: 2,
        heartbeat_interval_ms: 1000,
        simulate: SimulateSettings { binary: binary.clone(), targets: vec![TARGET.into()], delay_ms: 5 },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agents = tokio::spawn(serve_simulated_fleet(simulated, || {}, async move {
        let _ = stopped.await;
    }));

    let fleet_config = FleetConfig {
        agents: (0..agents_count)
            .map(|i| AgentEndpoint { name: format!("{prefix}{i}"), address: format!("127.0.0.1:{}", base_port + i) })
            .collect(),
        ca: Some(pki.ca_file()),
        cert: Some(pki.cert_file()),
        key: Some(pki.key_file()),
        ..FleetConfig::default()
    };
    let fleet = Fleet::start(FleetOptions::from_config(&fleet_config).expect("options"), None).await.expect("fleet");
    let (connected, simulated) = fleet_scale_support::connected_agents(&fleet).await;
    assert_eq!(
        (connected, simulated),
        (usize::from(agents_count), usize::from(agents_count)),
        "every agent up and simulated; not up: {:?}",
        fleet_scale_support::not_connected(&fleet).await
    );

    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-template");
    let bundle = rustle_engine::bundle::pack_dir(&template, &rustle_engine::bundle::BundleLimits::default())
        .expect("template packed");
    let source = BuildSource::new(&TemplateId("fleet-scale-template".into()), bundle.bytes);
    let expected = rustle_protocol::Sha256Digest::of(&std::fs::read(&binary).expect("canned binary")).to_string();
    let flow = tokio::time::timeout(
        Duration::from_secs(300),
        fleet_scale_support::flow(&fleet, source, TARGET, jobs, &expected),
    )
    .await
    .expect("the jobs end in time");
    assert_eq!((flow.verified, flow.failed), (jobs, 0), "failures: {:?}", flow.failures);
    assert!(flow.agents_used > 1, "the jobs were spread over agents ({} used)", flow.agents_used);

    fleet.shutdown().await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), agents)
        .await
        .expect("the agents stop in time")
        .expect("no panic")
        .expect("the agents served without error");
}

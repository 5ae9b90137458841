//! The coordinator's façade against the real agent (`rustle_agent::serve`) on loopback: two agents limited by config to different targets, each target routed to the one that can build it, binaries validated and equal to a local build's.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustle_agent::AgentConfig;
use rustle_cross::build::{BuildEvent, TemplateSource};
use rustle_cross::fleet::Executor;
use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
use rustle_cross::{AgentEndpoint, CrossCompilationConfig, CrossCompilationManager, ProgressSink};
use rustle_protocol::AgentId;
use rustle_transport::{AgentListener, AllowedCoordinators, FleetCa};
use tokio::sync::oneshot;

const X86: &str = "x86_64-unknown-linux-gnu";
const ARM: &str = "aarch64-unknown-linux-gnu";
const TEST_BOUND: Duration = Duration::from_secs(900);

/// A real agent serving on 127.0.0.1:0 until the returned sender is dropped.
fn real_agent(ca: &FleetCa, name: &str, allowed: &[&str]) -> (SocketAddr, oneshot::Sender<()>) {
    let bundle = ca.issue_agent(name, &[]).expect("issue agent");
    let (listener, addr) =
        AgentListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &bundle, AllowedCoordinators::AnyFromFleetCa)
            .expect("bind");
    let config = AgentConfig {
        work_dir: common::work_root().join("real-agents").join(name),
        agent_id: Some(name.into()),
        allowed_targets: Some(allowed.iter().map(|t| (*t).to_owned()).collect()),
        max_concurrent_jobs: 1,
        heartbeat_interval_ms: 500,
        shutdown_drain_secs: 1,
        ..AgentConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(error) = rustle_agent::serve(listener, config, async {
            let _ = stopped.await;
        })
        .await
        {
            eprintln!("agent failed: {error}");
        }
    });
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_get_the_targets_they_can_build() {
    let ca = FleetCa::generate().expect("CA");
    let certs = tempfile::tempdir().expect("tempdir");
    ca.issue_coordinator("coordinator").expect("issue").write_to(certs.path(), "coordinator").expect("write");
    let (x86_addr, _x86) = real_agent(&ca, "x86-only", &[X86]);
    let (arm_addr, _arm) = real_agent(&ca, "arm-capable", &[ARM]);

    let mut config = CrossCompilationConfig {
        target_cache_dir: Some(common::work_root().join("cache")),
        ..CrossCompilationConfig::default()
    };
    config.fleet.agents = vec![
        AgentEndpoint { name: "x86-only".into(), address: x86_addr.to_string() },
        AgentEndpoint { name: "arm-capable".into(), address: arm_addr.to_string() },
    ];
    config.fleet.ca = Some(certs.path().join("ca.pem"));
    config.fleet.cert = Some(certs.path().join("coordinator.pem"));
    config.fleet.key = Some(certs.path().join("coordinator-key.pem"));
    config.fleet.connect_timeout_secs = 60;

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    let progress: ProgressSink = Arc::new(move |event| sink_events.lock().expect("lock").push(event));
    let targets =
        [TargetSpecification::from_triple(X86).expect("x86"), TargetSpecification::from_triple(ARM).expect("arm")];
    let source = TemplateSource::Dir(common::fleet_hello_template());
    let manager = CrossCompilationManager::new(config.clone()).expect("manager");
    manager.setup_environment().await.expect("toolchains");
    let outcomes = tokio::time::timeout(
        TEST_BOUND,
        manager.build(&source, &targets, &CompilationOptimization::default(), Some(progress)),
    )
    .await
    .expect("bounded")
    .expect("template usable");

    config.fleet = Default::default();
    let local = CrossCompilationManager::new(config).expect("manager");
    let here = local.build(&source, &targets, &CompilationOptimization::default(), None).await.expect("local");

    for ((outcome, here), (agent, machine)) in
        outcomes.iter().zip(&here).zip([("x86-only", "x86_64"), ("arm-capable", "aarch64")])
    {
        let decisions: Vec<String> = outcome.decisions.iter().map(ToString::to_string).collect();
        let report = format!("{}: {:?}\n{}", outcome.target, outcome.executor, decisions.join("\n"));
        assert_eq!(outcome.executor, Some(Executor::Agent(AgentId(agent.into()))), "{report}");
        let binary = outcome.result.as_ref().unwrap_or_else(|e| panic!("{report}: {e}"));
        assert_eq!(binary.validation.machine.to_string(), machine, "{report}");
        let here = here.result.as_ref().expect("local build");
        assert_eq!(binary.checksum, here.checksum, "{report}: the agent's binary differs from a local build");
    }
    let events = events.lock().expect("lock").clone();
    for triple in [X86, ARM] {
        let started = events.iter().position(|e| matches!(e, BuildEvent::Started { triple: t, .. } if t == triple));
        let first_progress =
            events.iter().position(|e| matches!(e, BuildEvent::Progress { triple: t, .. } if t == triple));
        assert!(started.is_some(), "{triple}: no Started in {events:?}");
        if let (Some(started), Some(progress)) = (started, first_progress) {
            assert!(started < progress, "{triple}: progress before Started: {events:?}");
        }
    }
}

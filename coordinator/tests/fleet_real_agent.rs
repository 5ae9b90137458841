//! The coordinator's façade against the real agent (`rustle_agent::serve`) on loopback: two agents limited by config to different targets, each target routed to the one that can build it, binaries validated and equal to a local build's.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustle_agent::AgentConfig;
use rustle_cross::build::{BuildEvent, GeneratedTemplate, TemplateSource};
use rustle_cross::fleet::Executor;
use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
use rustle_cross::{AgentEndpoint, CrossCompilationConfig, CrossCompilationManager, ProgressSink, TargetOverrides};
use rustle_protocol::AgentId;
use rustle_test_support::{CoordinatorPki, CpuLoad};
use rustle_transport::{AgentListener, AllowedCoordinators};
use tokio::sync::oneshot;

const X86: &str = "x86_64-unknown-linux-gnu";
const ARM: &str = "aarch64-unknown-linux-gnu";
const TEST_BOUND: Duration = Duration::from_secs(900);

/// A real agent serving on 127.0.0.1:0 until the returned sender is dropped.
fn real_agent(pki: &CoordinatorPki, name: &str, allowed: &[&str], slots: u32) -> (SocketAddr, oneshot::Sender<()>) {
    let (addr, stop, _served) = real_agent_at(pki, name, allowed, slots, SocketAddr::from(([127, 0, 0, 1], 0)), |_| {});
    (addr, stop)
}

/// A real agent serving on `at` until the sender is dropped; the handle
/// ends when it has stopped (and released its port).
fn real_agent_at(
    pki: &CoordinatorPki,
    name: &str,
    allowed: &[&str],
    slots: u32,
    at: SocketAddr,
    configure: impl FnOnce(&mut AgentConfig),
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let bundle = pki.issue_agent(name);
    // A port just given up by a stopped agent is free once its last
    // connections have finished closing: a restarted agent tries again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (listener, addr) = loop {
        match AgentListener::bind(at, &bundle, AllowedCoordinators::AnyFromFleetCa) {
            Ok(bound) => break bound,
            Err(error) if at.port() != 0 && std::time::Instant::now() < deadline => {
                eprintln!("{name}: {error}; trying again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => panic!("{name}: {error}"),
        }
    };
    let mut config = AgentConfig {
        work_dir: common::work_root().join("real-agents").join(name),
        agent_id: Some(name.into()),
        allowed_targets: Some(allowed.iter().map(|t| (*t).to_owned()).collect()),
        max_concurrent_jobs: slots,
        heartbeat_interval_ms: 500,
        shutdown_drain_secs: 1,
        ..AgentConfig::default()
    };
    configure(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        if let Err(error) = rustle_agent::serve(listener, config, async {
            let _ = stopped.await;
        })
        .await
        {
            eprintln!("agent failed: {error}");
        }
    });
    (addr, stop, served)
}

/// Builds the template in `template` for `targets` with default
/// optimization, within the test's bound.
async fn build_dir(
    manager: &CrossCompilationManager,
    template: std::path::PathBuf,
    targets: &[TargetSpecification],
) -> Vec<rustle_cross::TargetOutcome> {
    let source = TemplateSource::Dir(template);
    tokio::time::timeout(TEST_BOUND, manager.build(&source, targets, &CompilationOptimization::default(), None))
        .await
        .expect("bounded")
        .expect("template usable")
}

/// A coordinator configuration dialling `agents` with the certificates of `pki`.
fn fleet_config(pki: &CoordinatorPki, agents: &[(&str, SocketAddr)]) -> CrossCompilationConfig {
    let mut config = CrossCompilationConfig {
        target_cache_dir: Some(common::work_root().join("cache")),
        ..CrossCompilationConfig::default()
    };
    config.fleet.agents = agents
        .iter()
        .map(|(name, address)| AgentEndpoint { name: (*name).into(), address: address.to_string() })
        .collect();
    config.fleet.ca = Some(pki.ca_file());
    config.fleet.cert = Some(pki.cert_file());
    config.fleet.key = Some(pki.key_file());
    config.fleet.connect_timeout_secs = 60;
    // About where builds run: no binary cached by an earlier test answers.
    config.binary_cache = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_get_the_targets_they_can_build() {
    let pki = CoordinatorPki::new();
    let (x86_addr, _x86) = real_agent(&pki, "x86-only", &[X86], 1);
    let (arm_addr, _arm) = real_agent(&pki, "arm-capable", &[ARM], 1);

    let mut config = fleet_config(&pki, &[("x86-only", x86_addr), ("arm-capable", arm_addr)]);

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
        let report = common::describe(outcome);
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

/// The whole target reaches the agent: a glibc floor (built by the agent
/// through zig, not by the local fallback), and the per-target features
/// and rustflags of the coordinator's configuration (seen in the agent's
/// cargo command and in what the program prints). The target and its
/// floor variant are two builds with two binaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_target_reaches_a_real_agent() {
    if !common::require_cross_tools(&["zig", "cargo-zigbuild"]) {
        return;
    }
    let floor = format!("{X86}.2.17");
    let pki = CoordinatorPki::new();
    let (addr, _agent) = real_agent(&pki, "x86-floors", &[X86, &floor], 2);
    let mut config = fleet_config(&pki, &[("x86-floors", addr)]);
    config.targets.insert(
        X86.into(),
        TargetOverrides { features: vec!["loud".into()], rustflags: vec!["--cfg=from_config".into()], linker: None },
    );
    let template = common::scratch_template(
        "fleet-features",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"fleet-features\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [features]\nloud = []\n\n[lints.rust]\nunexpected_cfgs = \"allow\"\n",
            ),
            (
                "src/main.rs",
                "fn main() {\n    let loud = if cfg!(feature = \"loud\") { \"loud\" } else { \"quiet\" };\n    \
                 println!(\"{loud} from_config={}\", cfg!(from_config));\n}\n",
            ),
        ],
    );
    let targets = [config.target(X86).expect("x86"), config.target(&floor).expect("floor")];
    let manager = CrossCompilationManager::new(config).expect("manager");
    manager.setup_environment().await.expect("toolchains");
    let outcomes = build_dir(&manager, template, &targets).await;

    let mut checksums = Vec::new();
    for (outcome, name) in outcomes.iter().zip([X86, floor.as_str()]) {
        let report = common::describe(outcome);
        assert_eq!(outcome.target.triple_with_floor(), name, "{report}");
        assert_eq!(outcome.executor, Some(Executor::Agent(AgentId("x86-floors".into()))), "{report}");
        let binary = outcome.result.as_ref().unwrap_or_else(|e| panic!("{report}: {e}"));
        let glibc = binary.validation.max_glibc.expect("a glibc binary");
        if name == floor {
            assert!((glibc.major, glibc.minor) <= (2, 17), "{report}: needs glibc {glibc}");
        } else {
            assert!((glibc.major, glibc.minor) > (2, 17), "{report}: the plain build uses the agent's glibc");
        }
        let flags = binary.metadata.compilation_flags.join(" ");
        assert!(flags.contains("--features loud"), "{report}: the agent's cargo command was {flags}");
        assert!(flags.contains("--cfg=from_config"), "{report}: the agent's cargo command was {flags}");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(&binary.file_name);
        std::fs::write(&path, &binary.binary_data).expect("write binary");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let ran = std::process::Command::new(&path).output().expect("run");
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "loud from_config=true", "{report}");
        checksums.push(binary.checksum.clone());
    }
    assert_eq!(outcomes.len(), 2);
    assert_ne!(checksums[0], checksums[1], "two targets, two binaries");
}

/// rustle-deploy calls one manager many times: the fleet lives as long as
/// the manager, so two calls use one connection per agent (one handshake),
/// and an agent restarted between calls is dialled again and used, without
/// a new manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_keeps_its_agent_connections_and_finds_a_restarted_agent() {
    let pki = CoordinatorPki::new();
    let name = "kept-connection";
    let (addr, stop, served) = real_agent_at(&pki, name, &[X86], 1, SocketAddr::from(([127, 0, 0, 1], 0)), |_| {});
    let config = fleet_config(&pki, &[(name, addr)]);
    let manager = CrossCompilationManager::new(config).expect("manager");
    manager.setup_environment().await.expect("toolchains");
    let template = GeneratedTemplate {
        cargo_toml: "[package]\nname = \"kept-connection\"\nversion = \"0.1.0\"\nedition = \"2021\"\n".into(),
        source_files: [("src/main.rs".into(), "fn main() { println!(\"kept\"); }\n".into())].into(),
        ..GeneratedTemplate::default()
    };
    let targets = [TargetSpecification::from_triple(X86).expect("x86")];
    let on_the_agent = |outcomes: &[rustle_cross::TargetOutcome], call: &str| {
        let outcome = &outcomes[0];
        let report = format!("call {call}: {}", common::describe(outcome));
        assert_eq!(outcome.executor, Some(Executor::Agent(AgentId(name.into()))), "{report}");
        assert!(outcome.result.is_ok(), "{report}");
    };
    let connects = |views: Vec<rustle_cross::fleet::AgentView>| {
        let view = views.into_iter().find(|v| v.name == name).expect("the agent is in the registry");
        (view.connects, view.connection.label())
    };

    for call in ["1", "2"] {
        let outcomes = tokio::time::timeout(TEST_BOUND, manager.cross_compile_parallel(&template, &targets))
            .await
            .expect("bounded");
        on_the_agent(&outcomes, call);
    }
    assert_eq!(connects(manager.fleet_status().await), (1, "connected"), "two calls, one handshake");

    // The agent stops (its connection closes) and comes back on its address.
    drop(stop);
    tokio::time::timeout(Duration::from_secs(60), served).await.expect("the agent stops").expect("agent task");
    let (_, _restarted, _served) = real_agent_at(&pki, name, &[X86], 1, addr, |_| {});
    let outcomes =
        tokio::time::timeout(TEST_BOUND, manager.cross_compile_parallel(&template, &targets)).await.expect("bounded");
    on_the_agent(&outcomes, "3, after the restart");
    assert_eq!(connects(manager.fleet_status().await), (2, "connected"), "dialled again once");
    manager.shutdown().await;
}

/// Differs on every run of the suite (the clock's nanoseconds).
fn run_nonce() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// A slow but alive agent is not lost: with the default bound (lost after
/// 3 s of silence), every core busy and the agent's build itself burning
/// two cores in its build script, the agent's heartbeats still arrive (its
/// builds run on a runtime of their own), so the job is placed once and
/// built there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_agent_on_a_loaded_machine_is_never_lost() {
    let pki = CoordinatorPki::new();
    let name = "busy-agent";
    let (addr, _agent) = real_agent(&pki, name, &[X86], 1);
    let config = fleet_config(&pki, &[(name, addr)]);
    assert_eq!(config.fleet.heartbeat_timeout_secs, 3, "the default bound");
    // New content every run: the agent's synced copy changes, so cargo runs it again.
    let burn = format!(
        "// run {}\nfn main() {{\n    println!(\"cargo:rerun-if-changed=build.rs\");\n    \
         let burn = || {{ let start = std::time::Instant::now(); let mut x = 0u64; \
         while start.elapsed().as_secs() < 6 {{ x = x.wrapping_mul(31).wrapping_add(1); }} x }};\n    \
         let other = std::thread::spawn(burn);\n    let _ = burn() ^ other.join().unwrap();\n}}\n",
        run_nonce()
    );
    let burn = burn.as_str();
    let template = common::scratch_template(
        "busy-agent",
        &[
            ("Cargo.toml", "[package]\nname = \"busy-agent\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("build.rs", burn),
            ("src/main.rs", "fn main() { println!(\"busy\"); }\n"),
        ],
    );
    // A fresh run of the build script every time.
    std::fs::write(template.join("build.rs"), burn).expect("touch build.rs");
    let manager = CrossCompilationManager::new(config).expect("manager");
    manager.setup_environment().await.expect("toolchains");
    let targets = [TargetSpecification::from_triple(X86).expect("x86")];
    let load = CpuLoad::start();
    let outcomes = build_dir(&manager, template, &targets).await;
    drop(load);
    let outcome = &outcomes[0];
    let report = common::describe(outcome);
    assert_eq!(outcome.executor, Some(Executor::Agent(AgentId(name.into()))), "{report}");
    assert!(outcome.result.is_ok(), "{report}");
    assert_eq!(outcome.decisions.len(), 1, "placed once, never lost: {report}");
    manager.shutdown().await;
}

/// An agent told to stop mid-build (what SIGTERM does to `rustle-agent`)
/// drains: the coordinator hears it, sends it nothing new, and takes the
/// running job's binary from it; nothing starts the job a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_agent_finishes_its_job_and_nothing_builds_it_again() {
    let pki = CoordinatorPki::new();
    let name = "draining-agent";
    let (addr, stop, served) = real_agent_at(&pki, name, &[X86], 1, SocketAddr::from(([127, 0, 0, 1], 0)), |config| {
        config.shutdown_drain_secs = 300;
    });
    let config = fleet_config(&pki, &[(name, addr)]);
    let started = common::work_root().join("draining-agent.started");
    let _ = std::fs::remove_file(&started);
    // New content every run: the agent's synced copy changes, so cargo runs it again.
    let build_rs = format!(
        "// run {}\nfn main() {{\n    println!(\"cargo:rerun-if-changed=build.rs\");\n    \
         std::fs::write({:?}, std::process::id().to_string()).unwrap();\n    \
         std::thread::sleep(std::time::Duration::from_secs(5));\n}}\n",
        run_nonce(),
        started.display().to_string()
    );
    let template = common::scratch_template(
        "draining-agent",
        &[
            ("Cargo.toml", "[package]\nname = \"draining-agent\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("build.rs", &build_rs),
            ("src/main.rs", "fn main() { println!(\"drained\"); }\n"),
        ],
    );
    std::fs::write(template.join("build.rs"), &build_rs).expect("touch build.rs");
    let manager = Arc::new(CrossCompilationManager::new(config).expect("manager"));
    manager.setup_environment().await.expect("toolchains");
    let building = {
        let manager = manager.clone();
        tokio::spawn(async move {
            let targets = [TargetSpecification::from_triple(X86).expect("x86")];
            let source = TemplateSource::Dir(template);
            manager.build(&source, &targets, &CompilationOptimization::default(), None).await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the agent never started the build");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stop);
    let outcomes = tokio::time::timeout(TEST_BOUND, building).await.expect("bounded").expect("task").expect("usable");
    let outcome = &outcomes[0];
    let report = common::describe(outcome);
    assert_eq!(outcome.executor, Some(Executor::Agent(AgentId(name.into()))), "{report}");
    assert!(outcome.result.is_ok(), "{report}");
    assert_eq!(outcome.decisions.len(), 1, "built once, by the draining agent: {report}");
    tokio::time::timeout(Duration::from_secs(60), served).await.expect("the agent ends its drain").expect("task");
    let status = manager.fleet_status().await;
    assert!(status.iter().any(|v| v.name == name && v.connection.label() != "connected"), "{status:?}");
    manager.shutdown().await;
}

//! The fleet in process: the coordinator's façade dialling real agents over loopback QUIC with real certificates (port 0), routing by capability, streaming validated binaries back, and surviving agents that die or cut transfers.

mod common;
mod fleet_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_support::{AgentSpec, Fault, HEARTBEAT, TestAgent, start_agent};
use rustle_cross::build::{BuildEvent, TemplateSource};
use rustle_cross::fleet::{ConnectionState, Executor, Fleet, FleetOptions};
use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
use rustle_cross::{AgentEndpoint, CrossCompilationConfig, CrossCompilationManager, ProgressSink, TargetOutcome};
use rustle_engine::toolchain::ToolchainManager;
use rustle_protocol::{AgentId, Role};
use rustle_test_support::CoordinatorPki;
use rustle_transport::revocation::record_issued;
use rustle_transport::{CertBundle, ConnectionFailure, FleetCa, RevocationList};

const X86: &str = "x86_64-unknown-linux-gnu";
const ARM: &str = "aarch64-unknown-linux-gnu";
/// Bound on a whole test: cold builds of a dependency-free template.
const TEST_BOUND: Duration = Duration::from_secs(600);

/// The shared fleet CA fixture, with this suite's agents and configuration.
struct Pki {
    fixture: CoordinatorPki,
}

impl Pki {
    fn new() -> Self {
        Self { fixture: CoordinatorPki::new() }
    }

    fn agent(&self, spec: AgentSpec, toolchains: &Arc<ToolchainManager>) -> TestAgent {
        let bundle = self.fixture.issue_agent(&spec.name);
        let work = tempfile::tempdir().expect("tempdir").keep();
        let cache = common::work_root().join("fleet-agents").join(&spec.name);
        start_agent(spec, &bundle, toolchains.clone(), work, cache)
    }

    fn config(&self, agents: &[(&str, &TestAgent)]) -> CrossCompilationConfig {
        let mut config = CrossCompilationConfig {
            target_cache_dir: Some(common::work_root().join("cache")),
            ..CrossCompilationConfig::default()
        };
        config.fleet.agents = agents
            .iter()
            .map(|(name, agent)| AgentEndpoint { name: (*name).into(), address: agent.addr.to_string() })
            .collect();
        config.fleet.ca = Some(self.fixture.ca_file());
        config.fleet.cert = Some(self.fixture.cert_file());
        config.fleet.key = Some(self.fixture.key_file());
        config.fleet.heartbeat_timeout_secs = 3;
        // These tests are about where builds run: a binary cached by an
        // earlier test must not answer for the agents.
        config.binary_cache = false;
        config
    }
}

fn toolchains() -> Arc<ToolchainManager> {
    let config =
        CrossCompilationConfig { target_cache_dir: Some(common::work_root().join("cache")), ..Default::default() };
    Arc::new(ToolchainManager::new(config.toolchain_config(&common::work_root().join("cache"))))
}

fn spec(name: &str, arch: &str, triples: &[&str], fault: Fault) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        arch: arch.into(),
        host_triple: format!("{arch}-unknown-linux-gnu"),
        triples: triples.iter().map(|t| (*t).to_owned()).collect(),
        slots: 1,
        fault,
    }
}

fn target(triple: &str) -> TargetSpecification {
    TargetSpecification::from_triple(triple).expect("target")
}

/// Every progress event, in arrival order.
fn recorder() -> (ProgressSink, Arc<Mutex<Vec<BuildEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    (Arc::new(move |event| sink_events.lock().expect("lock").push(event)), events)
}

/// `config`'s fleet written as a config file for the CLI (`--config`).
fn config_file(pki: &Pki, config: &CrossCompilationConfig) -> std::path::PathBuf {
    let path = pki.fixture.path().join("rustle.toml");
    let fleet = &config.fleet;
    let text = format!(
        "[cross_compilation]\nbinary_cache = false\n\n[cross_compilation.fleet]\nagents = [{}]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        fleet
            .agents
            .iter()
            .map(|a| format!("{{ name = {:?}, address = {:?} }}", a.name, a.address))
            .collect::<Vec<_>>()
            .join(", "),
        fleet.ca.as_ref().expect("ca"),
        fleet.cert.as_ref().expect("cert"),
        fleet.key.as_ref().expect("key"),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

async fn build(config: CrossCompilationConfig, triples: &[&str], progress: Option<ProgressSink>) -> Vec<TargetOutcome> {
    let manager = CrossCompilationManager::new(config).expect("manager");
    manager.setup_environment().await.expect("toolchains");
    let targets: Vec<_> = triples.iter().map(|t| target(t)).collect();
    let source = TemplateSource::Dir(common::fleet_hello_template());
    tokio::time::timeout(TEST_BOUND, manager.build(&source, &targets, &CompilationOptimization::default(), progress))
        .await
        .expect("the build finishes in bounded time")
        .expect("the template is usable")
}

fn agent(name: &str) -> Executor {
    Executor::Agent(AgentId(name.into()))
}

fn assert_progress_in_order(events: &[BuildEvent], triple: &str) {
    let mine: Vec<&BuildEvent> = events
        .iter()
        .filter(|e| match e {
            BuildEvent::Started { triple: t, .. } | BuildEvent::Progress { triple: t, .. } => t == triple,
            BuildEvent::Log { .. } | BuildEvent::Note { .. } | BuildEvent::Finished { .. } => false,
        })
        .collect();
    assert!(
        matches!(mine.first(), Some(BuildEvent::Started { .. })),
        "{triple}: progress starts with Started: {mine:?}"
    );
    let mut last = 0;
    for event in &mine[1..] {
        match event {
            BuildEvent::Progress { done, total, .. } => {
                assert!(*done >= last && done <= total, "{triple}: progress out of order: {mine:?}");
                last = *done;
            }
            BuildEvent::Started { .. } => panic!("{triple}: a second Started: {mine:?}"),
            BuildEvent::Log { .. } | BuildEvent::Note { .. } | BuildEvent::Finished { .. } => {
                unreachable!("filtered out above")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_goes_to_the_agent_that_can_build_it_and_comes_back_validated() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let x86 = pki.agent(spec("x86-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let arm = pki.agent(spec("arm-builder", "aarch64", &[ARM], Fault::None), &toolchains);
    let config = pki.config(&[("x86-builder", &x86), ("arm-builder", &arm)]);

    // fleet status sees both, with their capabilities.
    let fleet = Fleet::start(FleetOptions::from_config(&config.fleet).expect("options"), None).await.expect("fleet");
    let views = fleet.status().await.expect("status");
    fleet.shutdown().await;
    assert_eq!(views.len(), 2, "{views:?}");
    for view in &views {
        assert_eq!(view.connection, ConnectionState::Connected, "{view:?}");
        let status = view.status.as_ref().expect("scheduler status");
        assert!(status.running.is_empty());
    }
    let arm_view = views.iter().find(|v| v.name == "arm-builder").expect("arm-builder");
    assert_eq!(arm_view.capabilities.as_ref().map(|c| c.arch.as_str()), Some("aarch64"));

    let (progress, events) = recorder();
    let outcomes = build(config.clone(), &[X86, ARM], Some(progress)).await;
    assert_eq!(outcomes.len(), 2);
    for (outcome, (builder, other, machine)) in
        outcomes.iter().zip([("x86-builder", "arm-builder", "x86_64"), ("arm-builder", "x86-builder", "aarch64")])
    {
        let report = common::describe(outcome);
        assert_eq!(outcome.executor, Some(agent(builder)), "{report}");
        let binary = outcome.result.as_ref().unwrap_or_else(|e| panic!("{report}: {e}"));
        assert_eq!(binary.validation.machine.to_string(), machine, "{report}");
        assert_eq!(binary.checksum, rustle_protocol::Sha256Digest::of(&binary.binary_data).to_string());
        // The decision names both agents: the chosen one, and why the other was not.
        let decision = outcome.decisions.first().expect("a decision");
        assert_eq!(decision.chosen, Some(agent(builder)), "{report}");
        let rejected = decision.candidates.iter().find(|c| c.executor == agent(other)).expect("other agent considered");
        assert_eq!(rejected.verdict.to_string(), "cannot build the target: no toolchain for it", "{report}");
        assert_eq!(outcome.decisions.len(), 1, "{report}");
    }
    let events = events.lock().expect("lock").clone();
    assert_progress_in_order(&events, X86);
    assert_progress_in_order(&events, ARM);
    assert_eq!(x86.accepted.lock().expect("lock").len(), 1);
    assert_eq!(arm.accepted.lock().expect("lock").len(), 1);

    // The same build run here gives the same bytes (the build is reproducible).
    let mut local = config.clone();
    local.fleet = Default::default();
    let here = build(local, &[X86, ARM], None).await;
    for (remote, here) in outcomes.iter().zip(&here) {
        let (remote, here) = (remote.result.as_ref().expect("remote"), here.result.as_ref().expect("local"));
        assert_eq!(remote.checksum, here.checksum, "{}: agent and local builds differ", remote.target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_dying_mid_build_does_not_lose_the_job() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let doomed = pki.agent(spec("doomed", "x86_64", &[X86], Fault::DieWhenBuilding), &toolchains);
    let config = pki.config(&[("doomed", &doomed)]);
    let outcomes = build(config, &[X86], None).await;
    let outcome = &outcomes[0];
    let report = common::describe(outcome);
    eprintln!("{report}");
    assert!(doomed.dead.load(std::sync::atomic::Ordering::SeqCst), "the agent died: {report}");
    let binary = outcome.result.as_ref().unwrap_or_else(|e| panic!("{report}: {e}"));
    assert_eq!(binary.validation.machine.to_string(), "x86_64");
    assert_eq!(outcome.executor, Some(rustle_cross::manager::local_executor()), "{report}");
    assert_eq!(outcome.decisions.len(), 2, "first the agent, then the fallback: {report}");
    assert_eq!(outcome.decisions[0].chosen, Some(agent("doomed")), "{report}");
    // Lost by its heartbeats (the default bound, 3 s after the last beat),
    // not by the connection's 30 s idle timeout, and not before it fell
    // silent (it beat every 0.3 s until it had the job).
    let detected = outcome.decisions[1].at.saturating_duration_since(outcome.decisions[0].at);
    let bound = Duration::from_secs(rustle_cross::FleetConfig::default().heartbeat_timeout_secs);
    assert!(detected >= bound - HEARTBEAT, "lost {detected:?} after the dispatch, before the bound: {report}");
    assert!(detected < bound + Duration::from_secs(10), "lost {detected:?} after the dispatch: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_cut_short_is_retried_and_never_returned_partial() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let flaky = pki.agent(spec("flaky", "x86_64", &[X86], Fault::CutFirstArtifact), &toolchains);
    let config = pki.config(&[("flaky", &flaky)]);
    let outcomes = build(config, &[X86], None).await;
    let outcome = &outcomes[0];
    let report = common::describe(outcome);
    eprintln!("{report}");
    let binary = outcome.result.as_ref().unwrap_or_else(|e| panic!("{report}: {e}"));
    assert_eq!(binary.size, binary.binary_data.len() as u64);
    assert_eq!(binary.checksum, rustle_protocol::Sha256Digest::of(&binary.binary_data).to_string());
    assert_eq!(binary.validation.machine.to_string(), "x86_64");
    assert_eq!(outcome.decisions.first().and_then(|d| d.chosen.clone()), Some(agent("flaky")), "{report}");
    assert!(outcome.decisions.len() >= 2, "retried after the cut: {report}");
    let retried_on = outcome.executor.clone().expect("an executor");
    assert_ne!(retried_on, agent("flaky"), "the retry avoids the agent that failed while others can build: {report}");
}

#[test]
fn ca_init_and_issue_write_pem_files_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let run = |args: &[&str]| {
        let out = common::rustle_cross(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ca = ca_dir.to_str().expect("utf-8");
    run(&["ca", "init", "--dir", ca]);
    run(&["ca", "issue", "--agent", "arm-builder", "--san", "arm1.example", "--dir", ca]);
    run(&["ca", "issue", "--coordinator", "deploy", "--dir", ca]);
    let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    for key in ["ca-key.pem", "arm-builder-key.pem", "deploy-key.pem"] {
        assert_eq!(mode(&ca_dir.join(key)), 0o600, "{key}");
        assert!(std::fs::read_to_string(ca_dir.join(key)).expect("key").contains("PRIVATE KEY"));
    }
    for cert in ["ca.pem", "arm-builder.pem", "deploy.pem"] {
        assert!(std::fs::read_to_string(ca_dir.join(cert)).expect("cert").contains("BEGIN CERTIFICATE"), "{cert}");
    }
    // A second init refuses to replace the CA.
    let again = common::rustle_cross(&["ca", "init", "--dir", ca]);
    assert!(!again.status.success());
}

/// `ca revoke NAME` revokes every certificate `ca issue` recorded for the
/// name into `crl.pem` and says which file to distribute; `ca issue
/// --keep-valid` re-issues a revoked certificate instead of keeping it; a
/// name nothing was issued to is an error pointing at --serial.
#[test]
fn ca_revoke_writes_a_crl_and_keep_valid_never_keeps_a_revoked_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let ca = ca_dir.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let out = common::rustle_cross(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let ok = |args: &[&str]| {
        let (success, text) = run(args);
        assert!(success, "{args:?}: {text}");
        text
    };
    ok(&["ca", "init", "--dir", ca]);
    ok(&["ca", "issue", "--agent", "arm-builder", "--dir", ca]);
    let first = std::fs::read_to_string(ca_dir.join("arm-builder.pem")).expect("cert");
    ok(&["ca", "issue", "--agent", "arm-builder", "--dir", ca]);
    let second = std::fs::read_to_string(ca_dir.join("arm-builder.pem")).expect("cert");
    let kept = ok(&["ca", "issue", "--agent", "arm-builder", "--dir", ca, "--keep-valid"]);
    assert!(kept.contains("kept valid certificate"), "{kept}");

    let revoked = ok(&["ca", "revoke", "arm-builder", "--dir", ca]);
    eprintln!("{revoked}");
    let crl_file = ca_dir.join("crl.pem");
    assert_eq!(revoked.matches("revoked agent certificate for arm-builder").count(), 2, "{revoked}");
    assert!(revoked.contains(&format!("wrote {}", crl_file.display())), "{revoked}");
    assert!(revoked.contains("fleet.crl"), "says where the file goes: {revoked}");
    let crl = RevocationList::load(&crl_file).expect("CRL");
    assert!(crl.revokes(&first) && crl.revokes(&second));

    let reissued = ok(&["ca", "issue", "--agent", "arm-builder", "--dir", ca, "--keep-valid"]);
    assert!(reissued.contains("it is revoked by"), "{reissued}");
    let third = std::fs::read_to_string(ca_dir.join("arm-builder.pem")).expect("cert");
    assert!(!RevocationList::load(&crl_file).expect("CRL").revokes(&third), "a new certificate is not revoked");

    let (success, text) = run(&["ca", "revoke", "nobody", "--dir", ca]);
    assert!(!success, "{text}");
    assert!(text.contains("--serial"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_failure_on_an_agent_is_reported_and_never_retried_elsewhere() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let builder = pki.agent(spec("x86-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let config = pki.config(&[("x86-builder", &builder)]);
    let dir = common::work_root().join("templates/fleet-broken");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"fleet-broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    )
    .expect("write");
    std::fs::write(dir.join("src/main.rs"), "fn main() {\n    let x: u32 = \"not a number\";\n}\n").expect("write");
    let manager = CrossCompilationManager::new(config).expect("manager");
    let outcomes = tokio::time::timeout(
        TEST_BOUND,
        manager.build(&TemplateSource::Dir(dir), &[target(X86)], &CompilationOptimization::default(), None),
    )
    .await
    .expect("bounded")
    .expect("template usable");
    let outcome = &outcomes[0];
    let report = common::describe(outcome);
    let error = outcome.result.as_ref().expect_err("does not compile");
    assert!(error.is_compile_failure(), "{report}");
    assert!(error.to_string().contains("mismatched types"), "{report}");
    assert_eq!(outcome.executor, Some(agent("x86-builder")), "{report}");
    assert_eq!(outcome.decisions.len(), 1, "not retried on the local fallback: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_where_each_target_was_built_and_shows_the_fleet() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let x86 = pki.agent(spec("x86-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let arm = pki.agent(spec("arm-builder", "aarch64", &[ARM], Fault::None), &toolchains);
    let config = pki.config(&[("x86-builder", &x86), ("arm-builder", &arm)]);
    let config_file = config_file(&pki, &config);
    let out_dir = pki.fixture.path().join("out");
    let cli = |args: Vec<String>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rustle-cross"));
        command
            .args(args)
            .arg("--config")
            .arg(&config_file)
            .env("RUSTLE_TARGET_CACHE_DIR", common::work_root().join("cache"));
        async move {
            let out = tokio::time::timeout(TEST_BOUND, command.output()).await.expect("bounded").expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
            String::from_utf8(out.stdout).expect("utf-8")
        }
    };

    let status = cli(vec!["fleet".into(), "status".into(), "--json".into()]).await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    let agents = status["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 2, "{status}");
    for view in agents {
        assert_eq!(view["connection"]["state"], "connected", "{status}");
    }
    let arm_view = agents.iter().find(|a| a["name"] == "arm-builder").expect("arm-builder");
    assert_eq!(arm_view["capabilities"]["arch"], "aarch64", "{status}");

    let template = common::fleet_hello_template();
    let json = cli(vec![
        "build".into(),
        template.to_string_lossy().into_owned(),
        "-t".into(),
        X86.into(),
        "-t".into(),
        ARM.into(),
        "--json".into(),
        "--out".into(),
        out_dir.to_string_lossy().into_owned(),
    ])
    .await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    let results = json["results"].as_array().expect("results");
    for (result, builder) in results.iter().zip(["x86-builder", "arm-builder"]) {
        assert_eq!(result["status"], "ok", "{json}");
        assert_eq!(result["executor"]["kind"], "agent", "{json}");
        assert_eq!(result["executor"]["name"], builder, "{json}");
        assert!(!result["decisions"].as_array().expect("decisions").is_empty(), "{json}");
    }

    let verbose = cli(vec![
        "build".into(),
        template.to_string_lossy().into_owned(),
        "-t".into(),
        ARM.into(),
        "-v".into(),
        "--out".into(),
        out_dir.to_string_lossy().into_owned(),
    ])
    .await;
    assert!(verbose.contains("agent arm-builder"), "{verbose}");
    assert!(verbose.contains("agent x86-builder: cannot build the target"), "{verbose}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_no_agent_and_not_this_machine_can_build_says_what_is_missing() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let x86 = pki.agent(spec("x86-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let config = pki.config(&[("x86-builder", &x86)]);
    let outcomes = build(config, &["x86_64-pc-windows-msvc"], None).await;
    let outcome = &outcomes[0];
    let error = outcome.result.as_ref().expect_err("nothing builds it");
    let text = error.to_string();
    assert!(text.contains("x86_64-pc-windows-msvc"), "{text}");
    assert!(text.contains("not buildable here either"), "{text}");
    assert!(text.contains("MSVC"), "the local reason with its way out: {text}");
    assert_eq!(outcome.executor, None);
    let decision = outcome.decisions.first().expect("a decision");
    assert_eq!(decision.chosen, None);
    let x86_verdict = decision.candidates.iter().find(|c| c.executor == agent("x86-builder")).expect("considered");
    assert_eq!(x86_verdict.verdict.to_string(), "cannot build the target: no toolchain for it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_a_wrong_name_or_another_ca_are_refused_and_the_build_falls_back() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let work = || tempfile::tempdir().expect("tempdir").keep();
    let cache = common::work_root().join("fleet-agents").join("refused");
    // Dialled as "builder-a", but its certificate says "impostor".
    let impostor = pki.fixture.issue_agent("impostor");
    let wrong_name = start_agent(
        spec("builder-a", "x86_64", &[X86], Fault::None),
        &impostor,
        toolchains.clone(),
        work(),
        cache.clone(),
    );
    // The right name, from another fleet's CA.
    let stranger = FleetCa::generate().expect("CA").issue_agent("builder-b", &[]).expect("issue");
    let other_ca =
        start_agent(spec("builder-b", "x86_64", &[X86], Fault::None), &stranger, toolchains.clone(), work(), cache);
    let config = pki.config(&[("builder-a", &wrong_name), ("builder-b", &other_ca)]);

    let fleet = Fleet::start(FleetOptions::from_config(&config.fleet).expect("options"), None).await.expect("fleet");
    let views = fleet.status().await.expect("status");
    fleet.shutdown().await;
    for view in &views {
        let ConnectionState::Failed { reason } = &view.connection else {
            panic!("{} was accepted: {view:?}", view.name)
        };
        assert!(reason.contains(&view.name), "the refusal names the agent: {reason}");
        assert!(reason.contains("certificate"), "the refusal says what is wrong: {reason}");
        eprintln!("{}: {reason}", view.name);
    }
    assert!(wrong_name.accepted.lock().expect("lock").is_empty());
    assert!(other_ca.accepted.lock().expect("lock").is_empty());

    let outcomes = build(config, &[X86], None).await;
    let outcome = &outcomes[0];
    assert!(outcome.result.is_ok(), "{}", common::describe(outcome));
    assert_eq!(outcome.executor, Some(rustle_cross::manager::local_executor()), "{}", common::describe(outcome));
}

/// Revocation end to end, with real certificates and QUIC handshakes: the
/// fleet CA revokes the agent `revoked-builder` and the coordinator
/// `deploy-revoked` (`FleetCa::revoke`, as `rustle-cross ca revoke` does).
/// A coordinator with `fleet.crl` refuses the revoked agent, saying it was
/// revoked and naming the CRL; an agent with the CRL refuses the revoked
/// coordinator, which hears it was revoked, and keeps serving a coordinator
/// that is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_and_a_revoked_coordinator_are_each_refused_saying_so() {
    let pki = Pki::new();
    let ca_dir = pki.fixture.path();
    let toolchains = toolchains();
    let revoked_agent = pki.fixture.issue_agent("revoked-builder");
    record_issued(ca_dir, Role::Agent, "revoked-builder", &revoked_agent).expect("recorded");
    let revoked_coordinator = pki.fixture.ca.issue_coordinator("deploy-revoked").expect("issued");
    revoked_coordinator.write_to(ca_dir, "deploy-revoked").expect("written");
    record_issued(ca_dir, Role::Coordinator, "deploy-revoked", &revoked_coordinator).expect("recorded");
    pki.fixture.ca.revoke(ca_dir, "revoked-builder", None).expect("agent revoked");
    let crl_file = pki.fixture.ca.revoke(ca_dir, "deploy-revoked", None).expect("coordinator revoked").crl;
    let crl = RevocationList::load(&crl_file).expect("CRL");

    let agent = |name: &str, bundle: CertBundle| {
        let work = tempfile::tempdir().expect("tempdir").keep();
        let cache = common::work_root().join("fleet-agents").join("revocation");
        start_agent(
            spec(name, "x86_64", &[X86], Fault::None),
            &bundle.with_crl(crl.clone()),
            toolchains.clone(),
            work,
            cache,
        )
    };
    let revoked = agent("revoked-builder", revoked_agent);
    let good = agent("good-builder", pki.fixture.issue_agent("good-builder"));

    // The revoked coordinator is refused by the agent, and hears why.
    let mut config = pki.config(&[("good-builder", &good)]);
    config.fleet.crl = Some(crl_file.clone());
    config.fleet.cert = Some(ca_dir.join("deploy-revoked.pem"));
    config.fleet.key = Some(ca_dir.join("deploy-revoked-key.pem"));
    let fleet = Fleet::start(FleetOptions::from_config(&config.fleet).expect("options"), None).await.expect("fleet");
    let views = fleet.status().await.expect("status");
    fleet.shutdown().await;
    let ConnectionState::Failed { reason } = &views[0].connection else {
        panic!("the revoked coordinator was accepted: {views:?}")
    };
    eprintln!("revoked coordinator: {reason}");
    assert!(reason.contains("good-builder") && reason.contains("rejected our certificate: it is revoked"), "{reason}");
    assert!(reason.contains("`rustle-cross ca issue --coordinator NAME`"), "{reason}");
    assert_eq!(ConnectionFailure::of_message(reason), ConnectionFailure::OurCertificateRevoked);
    assert!(good.accepted.lock().expect("lock").is_empty());

    // A coordinator that is not revoked: the revoked agent is refused, the
    // agent that refused the revoked coordinator serves this one.
    let mut config = pki.config(&[("revoked-builder", &revoked), ("good-builder", &good)]);
    config.fleet.crl = Some(crl_file.clone());
    let fleet = Fleet::start(FleetOptions::from_config(&config.fleet).expect("options"), None).await.expect("fleet");
    let views = fleet.status().await.expect("status");
    fleet.shutdown().await;
    let view = |name: &str| views.iter().find(|view| view.name == name).expect("listed");
    let ConnectionState::Failed { reason } = &view("revoked-builder").connection else {
        panic!("the revoked agent was accepted: {views:?}")
    };
    eprintln!("revoked agent: {reason}");
    assert!(reason.contains("refused the certificate of agent revoked-builder at "), "{reason}");
    assert!(
        reason.contains(&format!("it is revoked (the certificate revocation list {} names it", crl_file.display())),
        "{reason}"
    );
    assert!(reason.contains("`rustle-cross ca issue --agent revoked-builder`"), "{reason}");
    assert_eq!(ConnectionFailure::of_message(reason), ConnectionFailure::CertificateRevoked);
    assert_eq!(view("good-builder").connection, ConnectionState::Connected, "{views:?}");
    assert!(revoked.accepted.lock().expect("lock").is_empty());

    // A configured CRL that is not there stops the fleet, naming it.
    config.fleet.crl = Some(ca_dir.join("missing-crl.pem"));
    let error = FleetOptions::from_config(&config.fleet).expect_err("a configured CRL is never skipped");
    let message = error.to_string();
    assert!(message.contains("fleet.crl") && message.contains("missing-crl.pem"), "{message}");
}

/// A fleet that cannot start (here: its certificate files are missing) is
/// an error of the whole run that names the file and the way out, not a
/// target named "fleet".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_cannot_start_is_a_run_error_that_names_the_way_out() {
    let missing = tempfile::tempdir().expect("tmp");
    let mut config = CrossCompilationConfig {
        target_cache_dir: Some(common::work_root().join("cache")),
        ..CrossCompilationConfig::default()
    };
    config.fleet.agents = vec![AgentEndpoint { name: "nowhere".into(), address: "127.0.0.1:9".into() }];
    config.fleet.ca = Some(missing.path().join("ca.pem"));
    config.fleet.cert = Some(missing.path().join("coordinator.pem"));
    config.fleet.key = Some(missing.path().join("coordinator-key.pem"));
    let manager = CrossCompilationManager::new(config).expect("manager");
    let source = TemplateSource::Dir(common::fleet_hello_template());
    let result = tokio::time::timeout(
        TEST_BOUND,
        manager.build(&source, &[target(X86)], &CompilationOptimization::default(), None),
    )
    .await
    .expect("bounded");
    let error = result.expect_err("the fleet cannot start without its certificates");
    assert!(matches!(error, rustle_cross::build::CompilationError::Fleet { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("failed to use the build fleet: "), "{message}");
    assert!(message.contains("remove it to build on this machine only"), "{message}");
    assert!(!message.starts_with("fleet:"), "{message}");
    assert!(message.contains(&missing.path().display().to_string()), "names the missing file: {message}");
}

/// Two agents, one of which alone builds aarch64 (and sorts first, so a
/// placement one job at a time would give it x86_64 too): the batch places
/// aarch64 first, and x86_64 goes to the other agent at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_builds_in_parallel_one_target_on_each_agent() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let all = pki.agent(spec("all-builder", "x86_64", &[X86, ARM], Fault::None), &toolchains);
    let x86 = pki.agent(spec("x86-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let config = pki.config(&[("all-builder", &all), ("x86-builder", &x86)]);

    let outcomes = build(config, &[X86, ARM], None).await;
    for (outcome, builder) in outcomes.iter().zip(["x86-builder", "all-builder"]) {
        let report = common::describe(outcome);
        assert_eq!(outcome.executor, Some(agent(builder)), "{report}");
        assert!(outcome.result.is_ok(), "{report}");
        assert_eq!(outcome.decisions.len(), 1, "placed at once, never re-placed: {report}");
    }
    // When x86_64 was placed, aarch64 already held the all-builder's one
    // slot: both ran at once.
    let x86_decision = &outcomes[0].decisions[0];
    let busy = x86_decision.candidates.iter().find(|c| c.executor == agent("all-builder")).expect("considered");
    assert_eq!(busy.verdict.to_string(), "no free slot (1 of 1 taken)", "{x86_decision}");
    assert_eq!(all.accepted.lock().expect("lock").len(), 1);
    assert_eq!(x86.accepted.lock().expect("lock").len(), 1);
}

/// A build's measured speed is kept in the cache dir: the next run's first
/// placement already knows how fast that agent built that template's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_speeds_are_kept_for_the_next_run() {
    let pki = Pki::new();
    let toolchains = toolchains();
    let x86 = pki.agent(spec("speed-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let mut config = pki.config(&[("speed-builder", &x86)]);
    let cache = tempfile::tempdir().expect("tempdir");
    config.target_cache_dir = Some(cache.path().to_path_buf());

    let first = build(config.clone(), &[X86], None).await;
    let report = common::describe(&first[0]);
    let score = |outcome: &TargetOutcome| {
        let decision = outcome.decisions.first().expect("a decision");
        let candidate = decision.candidates.iter().find(|c| c.executor == agent("speed-builder")).expect("considered");
        candidate.score.and_then(|s| s.measured_build_ms)
    };
    assert_eq!(score(&first[0]), None, "nothing measured before the first run: {report}");
    let kept = std::fs::read_to_string(cache.path().join("fleet-speeds.json")).expect("speeds kept");
    let kept: serde_json::Value = serde_json::from_str(&kept).expect("JSON");
    assert_eq!(kept[0]["target"], X86, "{kept:#}");
    assert_eq!(kept[0]["executor"]["name"], "speed-builder", "{kept:#}");

    let second = build(config, &[X86], None).await;
    assert!(score(&second[0]).is_some(), "the second run's first placement uses it: {}", common::describe(&second[0]));
}

/// With the binary cache on, an agent's binary is kept under this
/// machine's key, and the repeat is answered from the cache: it never
/// reaches the agent (its job count stays where it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_target_never_reaches_an_agent() {
    let pki = Pki::new();
    let toolchains = toolchains();
    // An agent of its own: the other tests' agents keep binaries in their
    // own caches (they store even when an offer forbids reading), and one
    // of those must not answer this test's first build.
    let name = "cache-x86-builder";
    let _ = std::fs::remove_dir_all(common::work_root().join("fleet-agents").join(name));
    let x86 = pki.agent(spec(name, "x86_64", &[X86], Fault::None), &toolchains);
    let mut config = pki.config(&[(name, &x86)]);
    config.binary_cache = true;
    // Only this test of the suite uses the coordinator's cache: start it empty.
    CrossCompilationManager::new(config.clone()).expect("manager").binary_cache().clear().expect("clear");

    let first = build(config.clone(), &[X86], None).await;
    let report = common::describe(&first[0]);
    assert_eq!(first[0].executor, Some(agent(name)), "{report}");
    let built = first[0].result.as_ref().expect("built");
    assert!(built.cached.is_none(), "{report}");
    assert_eq!(x86.accepted.lock().expect("lock").len(), 1);

    let again = build(config, &[X86], None).await;
    let report = common::describe(&again[0]);
    let cached = again[0].result.as_ref().expect("cached");
    let hit = cached.cached.as_ref().unwrap_or_else(|| panic!("not from the cache: {report}"));
    assert_eq!((hit.store.as_str(), hit.built_by.as_str()), ("local", format!("agent {name}").as_str()), "{report}");
    assert_eq!(cached.checksum, built.checksum);
    assert_eq!(cached.binary_data, built.binary_data);
    assert!(again[0].decisions.is_empty(), "nothing was scheduled: {report}");
    assert_eq!(x86.accepted.lock().expect("lock").len(), 1, "the agent got no second job");
}

/// `fleet status --watch` keeps its connections and prints a view every
/// interval (here one JSON line each) until interrupted, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_watch_shows_the_fleet_until_interrupted() {
    use tokio::io::AsyncBufReadExt;
    let pki = Pki::new();
    let toolchains = toolchains();
    let agent = pki.agent(spec("watched-builder", "x86_64", &[X86], Fault::None), &toolchains);
    let config = pki.config(&[("watched-builder", &agent)]);
    let config_file = config_file(&pki, &config);
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_rustle-cross"))
        .arg("--config")
        .arg(&config_file)
        .args(["fleet", "status", "--watch", "--interval", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start rustle-cross");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut seconds = Vec::new();
    while seconds.len() < 3 {
        let line = tokio::time::timeout(TEST_BOUND, lines.next_line()).await.expect("bounded").expect("read");
        let line = line.expect("a view before the end of the output");
        let view: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(view["agents"][0]["name"], "watched-builder", "{view}");
        assert_eq!(view["agents"][0]["connection"]["state"], "connected", "{view}");
        assert_eq!(view["agents"][0]["connects"], 1, "one connection, kept: {view}");
        seconds.push(view["seconds"].as_u64().expect("seconds"));
    }
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]), "views in order: {seconds:?}");
    let pid = watch.id().expect("running").to_string();
    let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(TEST_BOUND, watch.wait()).await.expect("it stops").expect("wait");
    assert!(status.success(), "interrupted watch exits 0: {status:?}");
}

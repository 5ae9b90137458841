//! Actor tests without the network: the scheduler and job actors with a local fallback and no agents, fed real messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustle_engine::engine::{self, CompilationError, TargetFailure};
use rustle_targets::{BuildRequest, CachePolicy, CompilationOptimization, Target, TargetSettings, TemplateId};
use rustle_transport::FleetCa;

use super::*;

fn options() -> FleetOptions {
    let ca = FleetCa::generate().expect("CA");
    FleetOptions {
        agents: Vec::new(),
        certificate: ca.issue_coordinator("coordinator").expect("certificate"),
        scheduler: SchedulerConfig::default(),
        transport: TransportOptions::default(),
        connect_timeout: Duration::from_secs(5),
        speeds_file: None,
    }
}

fn source() -> BuildSource {
    BuildSource::new(&TemplateId("t-1".into()), b"not a real bundle".to_vec())
}

/// A local builder whose builds report progress, then fail with `error`.
fn failing_local(error: fn(&BuildRequest) -> CompilationError) -> LocalBuilder {
    Arc::new(move |request: BuildRequest, progress: ProgressSink| {
        Box::pin(async move {
            let triple = request.target_name();
            progress(engine::BuildEvent::Started { triple: triple.clone(), expected_units: 2 });
            progress(engine::BuildEvent::Progress { triple, done: 1, total: 2, unit: "a".into() });
            Err(error(&request))
        })
    })
}

/// Builds `triple` on a fleet with no agents; `local` is how this machine
/// builds it (`None`: it cannot).
async fn run_one(local: Option<LocalBuilder>, triple: &str) -> (TargetOutcome, Vec<engine::BuildEvent>) {
    let fleet = Fleet::start(options(), Some(LocalFallback { slots: 1 })).await.expect("fleet");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    let progress: ProgressSink = Arc::new(move |event| sink_events.lock().expect("lock").push(event));
    let request = BuildRequest {
        template: TemplateId("t-1".into()),
        target: Target::from_triple(triple).expect("target"),
        settings: TargetSettings::default(),
        optimization: CompilationOptimization::default(),
        deadline: Duration::from_secs(60),
        incremental: false,
        cache: CachePolicy::Off,
    };
    let outcome = fleet.submit(vec![FleetBuild { request, progress, local }], source()).expect("submit").remove(0);
    let outcome = tokio::time::timeout(Duration::from_secs(30), outcome).await.expect("bounded").expect("reported");
    fleet.shutdown().await;
    let events = events.lock().expect("lock").clone();
    (outcome, events)
}

#[tokio::test]
async fn a_local_compile_failure_is_reported_once_with_the_compilers_words() {
    let local = failing_local(|t| {
        CompilationError::target(
            t.target_name(),
            TargetFailure::CompileFailed { diagnostics: "error[E0308]: mismatched types".into() },
        )
    });
    let (outcome, events) = run_one(Some(local), "x86_64-unknown-linux-gnu").await;
    let error = outcome.result.expect_err("compile failure");
    assert!(error.is_compile_failure(), "{error}");
    assert!(error.to_string().contains("E0308"), "{error}");
    assert_eq!(outcome.executor, Some(crate::outcome::local_executor()));
    assert_eq!(outcome.decisions.len(), 1, "never retried");
    assert_eq!(events.len(), 2, "progress reaches the caller: {events:?}");
}

#[tokio::test]
async fn a_local_environment_failure_keeps_its_typed_error() {
    let local = failing_local(|t| CompilationError::unavailable(t.target_name(), "linker gone"));
    let (outcome, _) = run_one(Some(local), "x86_64-unknown-linux-gnu").await;
    let error = outcome.result.expect_err("failure");
    assert!(
        matches!(&error, CompilationError::Target { kind: TargetFailure::Unavailable { reason }, .. } if reason == "linker gone"),
        "{error}"
    );
    assert_eq!(outcome.decisions.len(), 1);
}

#[tokio::test]
async fn a_target_nothing_can_build_says_so_and_names_it() {
    let (outcome, events) = run_one(None, "aarch64-unknown-linux-gnu").await;
    let error = outcome.result.expect_err("no executor");
    assert!(error.to_string().contains("aarch64-unknown-linux-gnu"), "{error}");
    assert_eq!(outcome.executor, None);
    assert_eq!(outcome.decisions.len(), 1);
    assert_eq!(outcome.decisions[0].chosen, None);
    assert!(events.is_empty());
}

#[tokio::test]
async fn status_lists_no_agents_when_none_are_configured() {
    let fleet = Fleet::start(options(), None).await.expect("fleet");
    assert!(fleet.status().await.expect("status").is_empty());
    fleet.shutdown().await;
}

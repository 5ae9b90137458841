//! Scenario tests of the scheduler with virtual time: placement, slots, ties, liveness, retries, deadlines, delivery.

mod properties;

use std::time::Duration;

use rustle_protocol::{
    AgentId, BuildOutcome, BuildRoute, BuildableTarget, CapabilityReport, JobId, LibcReport, LoadAverage, LoadUpdate,
    RejectReason, Sha256Digest, ToolchainReport,
};
use rustle_targets::{BuildRequest, CachePolicy, CompilationOptimization, Target, TargetSettings, TemplateId};

use crate::{
    Action, CancelReason, ConfigError, Dispatch, EventOutcome, Exclusion, Executor, FallbackExecutor, FallbackId,
    JobReport, JobResult, JobState, JobSubmission, Scheduler, SchedulerConfig, Tier, Timestamp, Verdict,
};

pub(crate) const ARM: &str = "aarch64-unknown-linux-gnu";
pub(crate) const X86: &str = "x86_64-unknown-linux-gnu";
pub(crate) const ARMV7: &str = "armv7-unknown-linux-gnueabihf";
pub(crate) const RISCV: &str = "riscv64gc-unknown-linux-gnu";

/// A capability report for an agent on `arch` (an arch name as `std::env::consts::ARCH` spells
/// it) whose single toolchain is hosted on `host` and builds `targets`.
pub(crate) fn report(name: &str, arch: &str, host: &str, targets: &[&str], slots: u32) -> CapabilityReport {
    CapabilityReport {
        agent_id: AgentId(name.into()),
        agent_version: "0.1.0".into(),
        arch: arch.into(),
        os: "linux".into(),
        os_version: "Debian 12".into(),
        libc: Some(LibcReport { name: "glibc".into(), version: "2.36".into() }),
        cores: 4,
        memory_total_bytes: 8 << 30,
        memory_available_bytes: 4 << 30,
        load: LoadAverage::default(),
        disk_free_bytes: 100 << 30,
        toolchains: vec![ToolchainReport {
            name: "stable".into(),
            version: "1.95.0".into(),
            host_triple: host.into(),
            targets: targets
                .iter()
                .map(|t| BuildableTarget { triple: (*t).into(), route: BuildRoute::PrebuiltStd })
                .collect(),
        }],
        docker_available: false,
        max_concurrent_jobs: slots,
        warm_caches: Vec::new(),
    }
}

/// An arm64 build host: native for aarch64.
fn arm_host(name: &str, slots: u32) -> CapabilityReport {
    report(name, "aarch64", ARM, &[ARM], slots)
}

/// An x86_64 build host that also cross-builds aarch64.
fn x86_host(name: &str, slots: u32) -> CapabilityReport {
    report(name, "x86_64", X86, &[X86, ARM], slots)
}

pub(crate) fn agent(name: &str) -> Executor {
    Executor::Agent(AgentId(name.into()))
}

fn local() -> Executor {
    Executor::Fallback(FallbackId("local".into()))
}

pub(crate) fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// The template every test job builds.
pub(crate) fn template() -> TemplateId {
    TemplateId("runner-0123456789ab".into())
}

pub(crate) fn request(triple: &str) -> BuildRequest {
    BuildRequest {
        template: template(),
        target: Target::from_triple(triple).unwrap(),
        settings: TargetSettings::default(),
        optimization: CompilationOptimization::default(),
        deadline: Duration::from_secs(600),
        incremental: false,
        cache: CachePolicy::Off,
    }
}

/// [`request`] with its own deadline.
pub(crate) fn request_within(triple: &str, deadline: Duration) -> BuildRequest {
    BuildRequest { deadline, ..request(triple) }
}

pub(crate) fn success() -> BuildOutcome {
    BuildOutcome::Success {
        checksum: Sha256Digest::of(b"binary"),
        size: 6,
        compile_time_ms: 1000,
        toolchain: "stable".into(),
        rustc_version: "rustc 1.95.0".into(),
        cargo_version: "cargo 1.95.0".into(),
        compilation_flags: vec!["--release".into()],
        from_cache: false,
    }
}

fn retryable(reason: &str) -> BuildOutcome {
    BuildOutcome::InfrastructureFailure { reason: reason.into(), retryable: true }
}

fn heartbeat(sequence: u64, load_one: f64) -> LoadUpdate {
    LoadUpdate {
        sequence,
        running_jobs: 0,
        memory_available_bytes: 4 << 30,
        load: LoadAverage { one: load_one, five: load_one, fifteen: load_one },
        disk_free_bytes: 100 << 30,
    }
}

fn config(fallbacks: Vec<FallbackExecutor>) -> SchedulerConfig {
    SchedulerConfig {
        heartbeat_timeout: Duration::from_secs(15),
        offer_timeout: Duration::from_secs(30),
        fallbacks,
        ..SchedulerConfig::default()
    }
}

fn scheduler(fallbacks: Vec<FallbackExecutor>) -> Scheduler {
    Scheduler::new(config(fallbacks)).unwrap()
}

fn drain(s: &mut Scheduler) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn dispatches(actions: &[Action]) -> Vec<&Dispatch> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch(d) => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

fn reports(actions: &[Action]) -> Vec<&JobReport> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Submits a job and returns where it was dispatched, expecting exactly one dispatch.
fn submit(s: &mut Scheduler, triple: &str, now: Timestamp) -> (JobId, Dispatch) {
    let job = s.handle_job_submitted(request(triple), now);
    let actions = drain(s);
    match actions.as_slice() {
        [Action::Dispatch(d)] if d.job == job => (job, Dispatch::clone(d)),
        other => panic!("expected one dispatch of {job}, got {other:?}"),
    }
}

fn verdict_of<'a>(dispatch: &'a Dispatch, executor: &Executor) -> &'a Verdict {
    &dispatch.decision.candidates.iter().find(|c| &c.executor == executor).unwrap().verdict
}

#[test]
fn placement_prefers_native_then_cross_then_local_fallback() {
    let fallback = || vec![FallbackExecutor::local([X86, ARM], 4)];

    // All three can build aarch64: the native agent wins.
    let mut s = scheduler(fallback());
    s.handle_agent_connected(x86_host("x86-cross", 4), at(0));
    s.handle_agent_connected(arm_host("arm-native", 4), at(0));
    let (_, d) = submit(&mut s, ARM, at(1));
    assert_eq!(d.executor, agent("arm-native"));
    assert_eq!(d.toolchain.as_deref(), Some("stable"));
    assert_eq!(d.attempt, 1);
    let tiers: Vec<_> = d.decision.candidates.iter().map(|c| c.score.map(|s| s.tier)).collect();
    assert_eq!(tiers, vec![Some(Tier::Native), Some(Tier::Cross), Some(Tier::Fallback { rank: 0 })]);
    assert_eq!(verdict_of(&d, &agent("x86-cross")), &Verdict::LowerScore);
    assert_eq!(verdict_of(&d, &local()), &Verdict::LowerScore);

    // The decision is printable for `-v` and serializable for JSON output.
    let text = d.decision.to_string();
    assert!(text.contains("agent arm-native with toolchain stable"), "{text}");
    assert!(text.contains("agent x86-cross: lower score [cross"), "{text}");
    let json = serde_json::to_value(&d.decision).unwrap();
    assert_eq!(json["chosen"], serde_json::json!({"kind": "agent", "name": "arm-native"}));
    assert_eq!(json["candidates"][0]["verdict"], "chosen");
    assert_eq!(json["candidates"][0]["score"]["tier"]["tier"], "native");

    // Without the native agent: the cross agent.
    let mut s = scheduler(fallback());
    s.handle_agent_connected(x86_host("x86-cross", 4), at(0));
    s.handle_agent_connected(arm_host("arm-native", 4), at(0));
    s.handle_agent_disconnected(&AgentId("arm-native".into()), at(0));
    let (_, d) = submit(&mut s, ARM, at(1));
    assert_eq!(d.executor, agent("x86-cross"));
    assert!(matches!(verdict_of(&d, &agent("arm-native")), Verdict::Unavailable { .. }));

    // Only an agent that cannot build it: the local fallback.
    let mut s = scheduler(fallback());
    s.handle_agent_connected(report("x86-only", "x86_64", X86, &[X86], 4), at(0));
    let (_, d) = submit(&mut s, ARM, at(1));
    assert_eq!(d.executor, local());
    assert_eq!(d.toolchain, None);
    assert_eq!(verdict_of(&d, &agent("x86-only")), &Verdict::NotBuildable);
    assert_eq!(s.job_state(d.job), Some(&JobState::Running { executor: local(), since: at(1) }));
}

#[test]
fn an_agent_under_emulation_is_native_for_its_reported_arch() {
    // Its toolchains are hosted on x86_64, but the agent binary is aarch64.
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(x86_host("x86-cross", 4), at(0));
    s.handle_agent_connected(report("qemu-arm", "aarch64", X86, &[ARM], 1), at(0));
    let (_, d) = submit(&mut s, ARM, at(1));
    assert_eq!(d.executor, agent("qemu-arm"));
}

#[test]
fn a_full_agent_is_skipped_and_queued_jobs_start_when_a_slot_frees() {
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(arm_host("arm", 1), at(0));
    s.handle_agent_connected(x86_host("x86", 1), at(0));

    let (j1, d1) = submit(&mut s, ARM, at(1));
    assert_eq!(d1.executor, agent("arm"));
    let (_, d2) = submit(&mut s, ARM, at(1));
    assert_eq!(d2.executor, agent("x86"));
    assert_eq!(verdict_of(&d2, &agent("arm")), &Verdict::NoFreeSlot { running: 1, slots: 1 });

    // Both full: the third waits, without a decision or a report.
    let j3 = s.handle_job_submitted(request(ARM), at(2));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.job_state(j3), Some(&JobState::Queued));

    assert_eq!(s.handle_job_accepted(&agent("arm"), j1, at(3)), EventOutcome::Applied);
    assert_eq!(s.handle_job_finished(&agent("arm"), j1, success(), at(50)), EventOutcome::Applied);
    let actions = drain(&mut s);
    assert!(matches!(&actions[0], Action::Report(r) if r.job == j1 && r.result.is_success()));
    let started = dispatches(&actions);
    assert_eq!(started.len(), 1);
    assert_eq!((started[0].job, &started[0].executor), (j3, &agent("arm")));
    for status in s.agents() {
        assert!(status.running.len() <= status.slots as usize, "{status:?}");
    }
}

#[test]
fn free_slots_then_load_break_ties() {
    let mut s = scheduler(Vec::new());
    let mut busy = x86_host("busy", 4);
    busy.load = LoadAverage { one: 3.0, five: 3.0, fifteen: 3.0 };
    let mut idle = x86_host("idle", 1);
    idle.load = LoadAverage { one: 0.2, five: 0.2, fifteen: 0.2 };
    s.handle_agent_connected(busy, at(0));
    s.handle_agent_connected(idle, at(0));

    // More free slots beat lower load.
    let (_, d) = submit(&mut s, X86, at(1));
    assert_eq!(d.executor, agent("busy"));

    // Equal free slots: the lower load per core wins.
    let mut s = scheduler(Vec::new());
    let mut loaded = x86_host("a-loaded", 2);
    loaded.load = LoadAverage { one: 3.0, five: 3.0, fifteen: 3.0 };
    s.handle_agent_connected(loaded, at(0));
    s.handle_agent_connected(x86_host("b-idle", 2), at(0));
    let (_, d) = submit(&mut s, X86, at(1));
    assert_eq!(d.executor, agent("b-idle"));
    let score = d.decision.candidates[0].score.unwrap();
    assert_eq!(score.load_per_core, Some(0.75));

    // A heartbeat reverses the loads; the next tie goes the other way. (b-idle now
    // has one free slot, a-loaded two: free slots decide first, so even the loads out.)
    let a = AgentId("a-loaded".into());
    let b = AgentId("b-idle".into());
    assert_eq!(s.handle_load_update(&a, &heartbeat(1, 0.1), at(2)), EventOutcome::Applied);
    assert_eq!(s.handle_load_update(&b, &heartbeat(1, 3.9), at(2)), EventOutcome::Applied);
    let (_, d) = submit(&mut s, X86, at(3));
    assert_eq!(d.executor, agent("a-loaded"));
    // Now one free slot each: the lower load wins.
    let (_, d) = submit(&mut s, X86, at(4));
    assert_eq!(d.executor, agent("a-loaded"));
    let (_, d) = submit(&mut s, X86, at(5));
    assert_eq!(d.executor, agent("b-idle"));
    assert_eq!(verdict_of(&d, &agent("a-loaded")), &Verdict::NoFreeSlot { running: 2, slots: 2 });

    // A stale (reordered) load update changes nothing.
    assert_eq!(s.handle_load_update(&a, &heartbeat(0, 9.0), at(6)), EventOutcome::Applied);
    let status = s.agent(&a).unwrap();
    assert_eq!(status.load.one, 0.1);
    assert_eq!(status.last_heard, at(6));
}

#[test]
fn measured_speed_breaks_remaining_ties() {
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(x86_host("a", 1), at(0));
    s.handle_agent_connected(x86_host("b", 1), at(0));

    // Nothing measured: name order.
    let (j1, d1) = submit(&mut s, X86, at(0));
    assert_eq!(d1.executor, agent("a"));
    s.handle_job_accepted(&agent("a"), j1, at(0));
    s.handle_job_finished(&agent("a"), j1, success(), at(100));
    assert_eq!(s.measured_build_time(&agent("a"), &template(), X86), Some(Duration::from_secs(100)));
    drain(&mut s);

    // An unmeasured agent is tried before a measured one, so it gets measured.
    let (j2, d2) = submit(&mut s, X86, at(100));
    assert_eq!(d2.executor, agent("b"));
    s.handle_job_accepted(&agent("b"), j2, at(100));
    s.handle_job_finished(&agent("b"), j2, success(), at(140));
    drain(&mut s);

    // Both measured, equal slots and load: the faster one.
    let (j3, d3) = submit(&mut s, X86, at(140));
    assert_eq!(d3.executor, agent("b"));
    assert_eq!(d3.decision.candidates[1].score.unwrap().measured_build_ms, Some(40_000));
    assert_eq!(d3.decision.candidates[0].score.unwrap().measured_build_ms, Some(100_000));

    // A slow build on b moves its average (weight 0.3): 40 + 0.3 * (240 - 40) = 100 s... then a is
    // no slower, and the name decides; a slower one makes a the faster.
    s.handle_job_accepted(&agent("b"), j3, at(140));
    s.handle_job_finished(&agent("b"), j3, success(), at(140 + 300));
    assert_eq!(s.measured_build_time(&agent("b"), &template(), X86), Some(Duration::from_secs(118)));
    drain(&mut s);
    let (_, d4) = submit(&mut s, X86, at(500));
    assert_eq!(d4.executor, agent("a"));

    // Speed is per target: b has never built aarch64.
    assert_eq!(s.measured_build_time(&agent("b"), &template(), ARM), None);
}

#[test]
fn a_silent_agent_is_lost_and_its_jobs_go_elsewhere_never_back() {
    let mut s = scheduler(vec![FallbackExecutor::local([ARM], 1)]);
    let arm = AgentId("arm".into());
    let x86 = AgentId("x86".into());
    s.handle_agent_connected(arm_host("arm", 1), at(0));
    s.handle_agent_connected(x86_host("x86", 1), at(0));
    let (j1, d1) = submit(&mut s, ARM, at(0));
    assert_eq!(d1.executor, agent("arm"));
    s.handle_job_accepted(&agent("arm"), j1, at(1));
    assert_eq!(s.poll_timeout(), Some(at(15)), "x86's heartbeat bound comes first");

    // x86 keeps reporting; arm falls silent after its acceptance at t=1.
    for (seq, secs) in [(1, 5), (2, 10), (3, 15)] {
        s.handle_load_update(&x86, &heartbeat(seq, 0.0), at(secs));
        s.handle_timeout(at(secs));
        assert!(drain(&mut s).is_empty(), "nothing is due at {secs} s");
    }
    assert_eq!(s.poll_timeout(), Some(at(16)));
    s.handle_timeout(at(16));
    let actions = drain(&mut s);
    assert!(
        matches!(&actions[0], Action::AgentLost(loss) if loss.agent == arm && loss.jobs == vec![j1] && loss.last_heard == at(1)),
        "{actions:?}"
    );
    let moved = dispatches(&actions);
    assert_eq!(moved.len(), 1);
    assert_eq!((moved[0].job, &moved[0].executor, moved[0].attempt), (j1, &agent("x86"), 2));
    assert!(matches!(verdict_of(moved[0], &agent("arm")), Verdict::Unavailable { .. }));
    assert!(s.agent(&arm).unwrap().running.is_empty());

    // The lost agent's late messages are ignored; its acceptance gets a cancel.
    assert_eq!(s.handle_job_finished(&agent("arm"), j1, success(), at(17)), EventOutcome::Ignored);
    assert_eq!(s.handle_job_accepted(&agent("arm"), j1, at(17)), EventOutcome::Ignored);
    assert!(matches!(
        drain(&mut s).as_slice(),
        [Action::Cancel(c)] if c.job == j1 && c.executor == agent("arm") && c.reason == CancelReason::NotAssigned
    ));
    assert_eq!(s.handle_load_update(&arm, &heartbeat(9, 0.0), at(17)), EventOutcome::Ignored);

    // It comes back, but the job never returns to it: after x86 fails, the fallback takes it.
    s.handle_agent_connected(arm_host("arm", 1), at(20));
    s.handle_job_accepted(&agent("x86"), j1, at(20));
    s.handle_job_finished(&agent("x86"), j1, retryable("disk full"), at(21));
    let actions = drain(&mut s);
    let moved = dispatches(&actions);
    assert_eq!((moved[0].job, &moved[0].executor, moved[0].attempt), (j1, &local(), 3));
    assert_eq!(verdict_of(moved[0], &agent("arm")), &Verdict::Excluded { exclusion: Exclusion::Lost });
    assert!(matches!(verdict_of(moved[0], &agent("x86")), Verdict::NoFreeSlot { .. } | Verdict::FailedHere { .. }));

    // New jobs may go to the reconnected agent.
    let (_, d2) = submit(&mut s, ARM, at(22));
    assert_eq!(d2.executor, agent("arm"));
}

#[test]
fn an_infrastructure_failure_is_retried_on_another_agent_then_given_up() {
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(x86_host("a", 1), at(0));
    s.handle_agent_connected(x86_host("b", 1), at(0));
    let (j1, d1) = submit(&mut s, X86, at(0));
    assert_eq!(d1.executor, agent("a"));
    s.handle_job_accepted(&agent("a"), j1, at(1));
    s.handle_job_finished(&agent("a"), j1, retryable("linker crashed"), at(2));
    let actions = drain(&mut s);
    let retry = dispatches(&actions);
    assert_eq!((&retry[0].executor, retry[0].attempt), (&agent("b"), 2));
    assert_eq!(verdict_of(retry[0], &agent("a")), &Verdict::FailedHere { reason: "linker crashed".into() });

    // It failed on both: the least bad one is used again as a last resort.
    s.handle_job_finished(&agent("b"), j1, retryable("out of memory"), at(3));
    let actions = drain(&mut s);
    let retry = dispatches(&actions);
    assert_eq!((&retry[0].executor, retry[0].attempt), (&agent("a"), 3));
    assert_eq!(verdict_of(retry[0], &agent("a")), &Verdict::ChosenAsLastResort { reason: "linker crashed".into() });

    // The third failure uses up max_attempts (3).
    s.handle_job_finished(&agent("a"), j1, retryable("linker crashed again"), at(4));
    let actions = drain(&mut s);
    assert!(dispatches(&actions).is_empty());
    let report = reports(&actions)[0];
    assert_eq!(report.decisions.len(), 3);
    assert!(matches!(
        &report.result,
        JobResult::InfrastructureFailed { failures: 3, executor, .. } if *executor == agent("a")
    ));
    assert!(s.agents().iter().all(|a| a.running.is_empty()));
}

#[test]
fn a_non_retryable_infrastructure_failure_is_reported_at_once() {
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(x86_host("a", 1), at(0));
    s.handle_agent_connected(x86_host("b", 1), at(0));
    let (j1, _) = submit(&mut s, X86, at(0));
    let outcome = BuildOutcome::InfrastructureFailure { reason: "bad template".into(), retryable: false };
    s.handle_job_finished(&agent("a"), j1, outcome, at(1));
    let actions = drain(&mut s);
    assert!(
        matches!(actions.as_slice(), [Action::Report(r)] if matches!(r.result, JobResult::InfrastructureFailed { failures: 1, .. }))
    );
}

#[test]
fn a_compile_failure_is_reported_and_never_redispatched() {
    let mut s = scheduler(vec![FallbackExecutor::local([X86], 1)]);
    s.handle_agent_connected(x86_host("a", 1), at(0));
    s.handle_agent_connected(x86_host("b", 1), at(0));
    let (j1, _) = submit(&mut s, X86, at(0));
    s.handle_job_accepted(&agent("a"), j1, at(1));
    let failed = BuildOutcome::CompileFailed { diagnostics: "error[E0308]: mismatched types".into() };
    assert_eq!(s.handle_job_finished(&agent("a"), j1, failed.clone(), at(5)), EventOutcome::Applied);
    let actions = drain(&mut s);
    assert_eq!(actions.len(), 1, "{actions:?}");
    let Action::Report(report) = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(
        report.result,
        JobResult::CompileFailed { executor: agent("a"), diagnostics: "error[E0308]: mismatched types".into() }
    );
    assert_eq!(s.job_state(j1), None);
    assert!(s.assigned_to(&agent("a")).is_empty());
    // A repeated result changes nothing and reports nothing.
    assert_eq!(s.handle_job_finished(&agent("a"), j1, failed, at(6)), EventOutcome::Ignored);
    assert!(drain(&mut s).is_empty());
    // The compile failure says nothing about a's speed.
    assert_eq!(s.measured_build_time(&agent("a"), &template(), X86), None);
}

#[test]
fn a_job_past_its_deadline_is_cancelled_and_reported_as_timed_out() {
    let mut s = scheduler(Vec::new());
    let a = AgentId("a".into());
    s.handle_agent_connected(x86_host("a", 1), at(0));
    let j1 = s.handle_job_submitted(request_within(X86, Duration::from_secs(60)), at(0));
    let j2 = s.handle_job_submitted(request_within(X86, Duration::from_secs(30)), at(0));
    assert_eq!(dispatches(&drain(&mut s)).len(), 1);
    s.handle_job_accepted(&agent("a"), j1, at(1));
    assert_eq!(s.job_state(j2), Some(&JobState::Queued));

    let mut now = at(1);
    let mut seq = 0;
    let mut reported = Vec::new();
    while reported.len() < 2 {
        // The agent stays alive; time advances to each deadline the scheduler names.
        seq += 1;
        s.handle_load_update(&a, &heartbeat(seq, 0.0), now);
        now = s.poll_timeout().unwrap().min(now + Duration::from_secs(10));
        s.handle_timeout(now);
        for action in drain(&mut s) {
            match action {
                Action::Cancel(c) => {
                    assert_eq!((c.job, &c.executor, c.reason), (j1, &agent("a"), CancelReason::DeadlineExpired));
                    assert_eq!(now, at(60));
                }
                Action::Report(r) => reported.push((now, r)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let (when, waiting) = &reported[0];
    assert_eq!((*when, waiting.job), (at(30), j2));
    assert_eq!(waiting.result, JobResult::TimedOut { executor: None, deadline: at(30) });
    let (when, running) = &reported[1];
    assert_eq!((*when, running.job), (at(60), j1));
    assert_eq!(running.result, JobResult::TimedOut { executor: Some(agent("a")), deadline: at(60) });

    // The result arriving after the deadline is ignored, and the slot is free again.
    assert_eq!(s.handle_job_finished(&agent("a"), j1, success(), at(61)), EventOutcome::Ignored);
    assert!(drain(&mut s).is_empty());
    assert!(s.assigned_to(&agent("a")).is_empty());
}

#[test]
fn a_rejected_job_is_placed_elsewhere_and_never_offered_there_again() {
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(arm_host("arm", 2), at(0));
    s.handle_agent_connected(x86_host("x86", 2), at(0));
    let (j1, d1) = submit(&mut s, ARM, at(0));
    assert_eq!(d1.executor, agent("arm"));
    let reason = RejectReason::ToolchainMissing { toolchain: "stable".into() };
    assert_eq!(s.handle_job_rejected(&agent("arm"), j1, &reason, at(1)), EventOutcome::Applied);
    let actions = drain(&mut s);
    let again = dispatches(&actions);
    assert_eq!((&again[0].executor, again[0].attempt), (&agent("x86"), 2));
    assert_eq!(
        verdict_of(again[0], &agent("arm")),
        &Verdict::Excluded { exclusion: Exclusion::Rejected { reason: reason.to_string() } }
    );

    // Rejected everywhere: nothing is left to build it.
    s.handle_job_rejected(&agent("x86"), j1, &RejectReason::ShuttingDown, at(2));
    let actions = drain(&mut s);
    let report = reports(&actions)[0];
    assert!(matches!(&report.result, JobResult::NoExecutor { reason } if reason.contains(ARM)));
    assert_eq!(report.decisions.len(), 3);
    assert_eq!(report.decisions[2].chosen, None);
    // A rejection from somewhere the job is not is ignored.
    assert_eq!(s.handle_job_rejected(&agent("arm"), j1, &reason, at(3)), EventOutcome::Ignored);
}

#[test]
fn a_target_nothing_can_build_is_reported_at_once() {
    let mut s = scheduler(vec![FallbackExecutor::local([X86], 1)]);
    s.handle_agent_connected(x86_host("x86", 1), at(0));
    let job = s.handle_job_submitted(request(RISCV), at(0));
    let actions = drain(&mut s);
    let [Action::Report(report)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!(report.job, job);
    assert_eq!(
        report.result,
        JobResult::NoExecutor { reason: format!("no connected agent or configured fallback can build {RISCV}") }
    );
    assert!(report.decisions[0].candidates.iter().all(|c| c.verdict == Verdict::NotBuildable));
    let json = serde_json::to_value(report).unwrap();
    assert_eq!(json["result"]["result"], "no_executor");
}

/// A fallback that plans `T` cannot build `T.2.17`, and one that plans
/// both builds each as itself: the full target name decides, never the
/// bare triple.
#[test]
fn a_glibc_floor_target_goes_only_to_a_fallback_that_planned_it() {
    let floor = format!("{X86}.2.17");
    let mut s = scheduler(vec![FallbackExecutor::local([X86], 2)]);
    let job = s.handle_job_submitted(request(&floor), at(0));
    let actions = drain(&mut s);
    let [Action::Report(report)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!(report.job, job);
    assert!(matches!(&report.result, JobResult::NoExecutor { reason } if reason.contains(&floor)), "{report:?}");

    let mut s = scheduler(vec![FallbackExecutor::local([X86.to_owned(), floor.clone()], 2)]);
    let (_, plain) = submit(&mut s, X86, at(0));
    let (_, floored) = submit(&mut s, &floor, at(0));
    assert_eq!((plain.executor.clone(), floored.executor.clone()), (local(), local()));
    assert_eq!(plain.request.target_name(), X86);
    assert_eq!(floored.request.target_name(), floor);
    assert_eq!(floored.decision.target, floor, "the decision names the whole target");
}

/// The submitter planned each job on the fallback's own toolchains: its
/// word for one job wins over the targets the fallback was declared with.
#[test]
fn a_submission_says_which_fallbacks_can_build_it() {
    let local_id = FallbackId("local".into());
    let mut s = scheduler(vec![FallbackExecutor::local(Vec::<String>::new(), 2)]);
    let said = |can: bool| JobSubmission { request: request(X86), fallbacks: [(local_id.clone(), can)].into() };
    let jobs = s.handle_jobs_submitted(vec![said(true)], at(0));
    let actions = drain(&mut s);
    let [Action::Dispatch(dispatch)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!((dispatch.job, &dispatch.executor), (jobs[0], &local()));

    let mut s = scheduler(vec![FallbackExecutor::local([X86], 2)]);
    let jobs = s.handle_jobs_submitted(vec![said(false)], at(0));
    let actions = drain(&mut s);
    let [Action::Report(report)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!(report.job, jobs[0]);
    assert!(matches!(report.result, JobResult::NoExecutor { .. }), "{report:?}");
    assert_eq!(report.decisions[0].candidates[0].verdict, Verdict::NotBuildable);
}

#[test]
fn no_job_is_delivered_twice_even_when_results_arrive_late() {
    let mut s = scheduler(Vec::new());
    let a = AgentId("a".into());
    let b = AgentId("b".into());
    s.handle_agent_connected(x86_host("a", 1), at(0));
    s.handle_agent_connected(x86_host("b", 1), at(0));
    let (j1, d1) = submit(&mut s, X86, at(0));
    assert_eq!(d1.executor, agent("a"));
    assert_eq!(s.poll_timeout(), Some(at(15)));

    // a stays alive but never answers the offer.
    for (seq, secs) in [(1, 10), (2, 20), (3, 30)] {
        s.handle_load_update(&a, &heartbeat(seq, 0.0), at(secs));
        s.handle_load_update(&b, &heartbeat(seq, 0.0), at(secs));
    }
    s.handle_timeout(at(30));
    let actions = drain(&mut s);
    assert!(matches!(
        &actions[0],
        Action::Cancel(c) if c.job == j1 && c.executor == agent("a") && c.reason == CancelReason::OfferUnanswered
    ));
    let moved = dispatches(&actions);
    assert_eq!((moved.len(), &moved[0].executor), (1, &agent("b")));
    assert_eq!(verdict_of(moved[0], &agent("a")), &Verdict::Excluded { exclusion: Exclusion::OfferUnanswered });

    // a's late acceptance, progress and result: cancelled, ignored.
    assert_eq!(s.handle_job_accepted(&agent("a"), j1, at(31)), EventOutcome::Ignored);
    assert_eq!(s.handle_job_progress(&agent("a"), j1, at(31)), EventOutcome::Ignored);
    assert_eq!(s.handle_job_finished(&agent("a"), j1, success(), at(32)), EventOutcome::Ignored);
    let actions = drain(&mut s);
    assert_eq!(actions.len(), 2);
    assert!(actions.iter().all(|a| matches!(a, Action::Cancel(c) if c.reason == CancelReason::NotAssigned)));
    assert_eq!(s.job_state(j1).and_then(JobState::executor), Some(&agent("b")));

    // b's result is the one delivered, once.
    assert_eq!(s.handle_job_progress(&agent("b"), j1, at(33)), EventOutcome::Applied);
    assert_eq!(s.handle_job_finished(&agent("b"), j1, success(), at(40)), EventOutcome::Applied);
    assert_eq!(s.handle_job_finished(&agent("b"), j1, success(), at(41)), EventOutcome::Ignored);
    let actions = drain(&mut s);
    assert!(matches!(actions.as_slice(), [Action::Report(r)] if r.job == j1 && r.result == JobResult::Succeeded {
        executor: agent("b"),
        checksum: Sha256Digest::of(b"binary"),
        size: 6,
        compile_time_ms: 1000,
        rustc_version: "rustc 1.95.0".into(),
        cargo_version: "cargo 1.95.0".into(),
    }));
    // Measured from b's acceptance (its first progress report) to its result.
    assert_eq!(s.measured_build_time(&agent("b"), &template(), X86), Some(Duration::from_secs(7)));
}

#[test]
fn a_disconnect_requeues_the_agents_jobs_and_a_refresh_keeps_them() {
    let mut s = scheduler(Vec::new());
    let a = AgentId("a".into());
    s.handle_agent_connected(x86_host("a", 1), at(0));
    let (j1, _) = submit(&mut s, X86, at(0));
    assert_eq!(s.handle_agent_disconnected(&a, at(1)), EventOutcome::Applied);
    assert_eq!(s.handle_agent_disconnected(&a, at(1)), EventOutcome::Ignored);
    // Nothing else can build it while a is gone.
    let actions = drain(&mut s);
    assert!(
        matches!(actions.as_slice(), [Action::Report(r)] if r.job == j1 && matches!(r.result, JobResult::NoExecutor { .. }))
    );

    // A refresh of a connected agent's capabilities keeps its jobs.
    s.handle_agent_connected(x86_host("a", 1), at(2));
    let (j2, _) = submit(&mut s, X86, at(2));
    s.handle_agent_connected(x86_host("a", 2), at(3));
    assert_eq!(s.assigned_to(&agent("a")), vec![j2]);
    assert_eq!(s.agent(&a).unwrap().slots, 2);
}

#[test]
fn poll_timeout_names_the_earliest_deadline() {
    let mut s = scheduler(Vec::new());
    assert_eq!(s.poll_timeout(), None);
    s.handle_agent_connected(x86_host("a", 1), at(0));
    assert_eq!(s.poll_timeout(), Some(at(15)), "the heartbeat bound");
    let j1 = s.handle_job_submitted(request_within(X86, Duration::from_secs(5)), at(0));
    let j2 = s.handle_job_submitted(request(X86), at(0));
    assert_eq!(s.poll_timeout(), Some(at(5)), "j1's deadline");
    assert_eq!(dispatches(&drain(&mut s))[0].job, j1);
    s.handle_timeout(at(5));
    let actions = drain(&mut s);
    assert!(matches!(reports(&actions)[0].result, JobResult::TimedOut { .. }));
    assert_eq!(reports(&actions)[0].job, j1);
    assert_eq!(dispatches(&actions)[0].job, j2);
    // j2 offered at 5 s: offer timeout 35 s, deadline 605 s, heartbeat bound 15 s.
    assert_eq!(s.poll_timeout(), Some(at(15)));
}

#[test]
fn invalid_configurations_are_refused() {
    let zero_attempts = SchedulerConfig { max_attempts: 0, ..SchedulerConfig::default() };
    assert_eq!(Scheduler::new(zero_attempts).unwrap_err(), ConfigError::NoAttempts);
    let twice = SchedulerConfig {
        fallbacks: vec![FallbackExecutor::local([X86], 1), FallbackExecutor::local([ARM], 1)],
        ..SchedulerConfig::default()
    };
    let error = Scheduler::new(twice).unwrap_err();
    assert!(error.to_string().contains("two fallbacks are named `local`"), "{error}");
    let smoothing = SchedulerConfig { speed_smoothing: f64::NAN, ..SchedulerConfig::default() };
    assert!(matches!(Scheduler::new(smoothing), Err(ConfigError::SpeedSmoothing { .. })));
    assert!(Scheduler::new(SchedulerConfig::default()).is_ok());
}

/// Two agents, one of which alone builds aarch64: submitted together, the
/// two targets build at once, one on each, whatever the submission order.
#[test]
fn a_batch_places_its_scarcest_target_first_and_uses_every_agent() {
    for order in [[X86, ARM], [ARM, X86]] {
        let mut s = scheduler(Vec::new());
        s.handle_agent_connected(x86_host("all", 1), at(0));
        s.handle_agent_connected(report("x86-only", "x86_64", X86, &[X86], 1), at(0));
        let jobs = s.handle_jobs_submitted(order.iter().map(|t| request(t)).collect(), at(0));
        let actions = drain(&mut s);
        let placed: Vec<(JobId, Executor)> = dispatches(&actions).iter().map(|d| (d.job, d.executor.clone())).collect();
        let at_of = |triple: &str| {
            let job = jobs[order.iter().position(|t| *t == triple).unwrap()];
            placed.iter().find(|(j, _)| *j == job).map(|(_, e)| e.clone())
        };
        assert_eq!(at_of(ARM), Some(agent("all")), "{order:?}: {placed:?}");
        assert_eq!(at_of(X86), Some(agent("x86-only")), "{order:?}: {placed:?}");
    }
}

/// Of two agents with a free slot, the idle one gets the job, even when the
/// busy one has more slots left.
#[test]
fn an_idle_agent_wins_over_a_busy_one_with_more_free_slots() {
    let mut s = scheduler(Vec::new());
    s.handle_agent_connected(report("big", "x86_64", X86, &[X86], 4), at(0));
    s.handle_agent_connected(report("small", "x86_64", X86, &[X86], 1), at(0));
    let (_, first) = submit(&mut s, X86, at(0));
    assert_eq!(first.executor, agent("big"), "most free slots while both are idle");
    let (_, second) = submit(&mut s, X86, at(1));
    assert_eq!(second.executor, agent("small"), "{}", second.decision);
    assert!(second.decision.to_string().contains("1 running"), "{}", second.decision);
}

/// Speeds kept from an earlier run are used by the first placement of the
/// next: the agent measured fast for this template wins over an unmeasured
/// one, and another template's speed does not count.
#[test]
fn speeds_restored_from_an_earlier_run_steer_the_first_placement() {
    let mut earlier = scheduler(Vec::new());
    earlier.handle_agent_connected(report("a", "x86_64", X86, &[X86], 1), at(0));
    let (job, dispatch) = submit(&mut earlier, X86, at(0));
    assert_eq!(dispatch.executor, agent("a"));
    earlier.handle_job_accepted(&agent("a"), job, at(0));
    earlier.handle_job_finished(&agent("a"), job, success(), at(40));
    let kept = earlier.measured_speeds();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let json = serde_json::to_string(&kept).unwrap();
    let restored: Vec<crate::MeasuredSpeed> = serde_json::from_str(&json).unwrap();

    let mut s = scheduler(Vec::new());
    s.handle_speeds_restored(restored);
    assert_eq!(s.measured_build_time(&agent("a"), &template(), X86), Some(Duration::from_secs(40)));
    assert_eq!(s.measured_build_time(&agent("a"), &TemplateId("other".into()), X86), None);
    // "a" sorts first, so only its measurement can make "b" lose to it:
    // b is unmeasured and ranks first.
    s.handle_agent_connected(report("a", "x86_64", X86, &[X86], 1), at(0));
    s.handle_agent_connected(report("b", "x86_64", X86, &[X86], 1), at(0));
    let (_, dispatch) = submit(&mut s, X86, at(0));
    let scored = dispatch.decision.candidates.iter().find(|c| c.executor == agent("a")).unwrap();
    assert_eq!(scored.score.and_then(|s| s.measured_build_ms), Some(40_000), "{}", dispatch.decision);
}

/// A draining agent keeps and finishes the job it runs (its result is taken),
/// gets no new one, and a job only it could build is reported as having no
/// executor instead of waiting for it.
#[test]
fn a_draining_agent_finishes_its_job_and_gets_no_new_one() {
    let mut s = scheduler(vec![FallbackExecutor::local([X86], 1)]);
    s.handle_agent_connected(x86_host("a", 2), at(0));
    let (running, dispatch) = submit(&mut s, X86, at(0));
    assert_eq!(dispatch.executor, agent("a"));
    s.handle_job_accepted(&agent("a"), running, at(0));

    assert_eq!(s.handle_agent_draining(&AgentId("a".into()), at(1)), EventOutcome::Applied);
    assert!(s.agent(&AgentId("a".into())).is_some_and(|status| status.draining));
    let (_, elsewhere) = submit(&mut s, X86, at(2));
    assert_eq!(elsewhere.executor, local(), "{}", elsewhere.decision);
    let verdict = elsewhere.decision.candidates.iter().find(|c| c.executor == agent("a")).unwrap();
    assert_eq!(verdict.verdict, Verdict::Draining, "{}", elsewhere.decision);
    let only_there = s.handle_job_submitted(request(ARM), at(3));
    let reported =
        reports(&drain(&mut s)).iter().any(|r| r.job == only_there && matches!(r.result, JobResult::NoExecutor { .. }));
    assert!(reported, "aarch64 has nowhere to go once its only agent drains");

    s.handle_job_finished(&agent("a"), running, success(), at(10));
    let actions = drain(&mut s);
    let done = reports(&actions).into_iter().find(|r| r.job == running).expect("the running job is reported");
    assert!(matches!(&done.result, JobResult::Succeeded { executor, .. } if *executor == agent("a")), "{done:?}");
}

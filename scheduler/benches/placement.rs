//! Criterion benchmark of the scheduling core at fleet scale: placement decisions per second, 1,000 agents x 10,000 jobs and 100 x 1,000.
//!
//! Each iteration registers a fleet with a realistic mix of capabilities
//! (several host platforms and target triples, 1-8 slots, varied load; not
//! timed), then times one batch of jobs submitted at once and driven to the
//! end: every dispatch is accepted at once, and while jobs wait the oldest
//! running one finishes successfully, freeing its slot for the next
//! placement, until every job has been dispatched. Throughput is in
//! dispatches, so criterion's `elem/s` is placement decisions per second.
//!
//! `cargo bench -p rustle-scheduler -j 1` measures it;
//! `cargo test -p rustle-scheduler --benches` runs each size once as a check.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustle_protocol::{
    AgentId, BuildOutcome, BuildRoute, BuildableTarget, CapabilityReport, LibcReport, LoadAverage, Sha256Digest,
    ToolchainReport,
};
use rustle_scheduler::{Action, Executor, FallbackExecutor, Scheduler, SchedulerConfig, Timestamp};
use rustle_targets::{BuildRequest, CachePolicy, CompilationOptimization, Target, TargetSettings, TemplateId};

const X86_GNU: &str = "x86_64-unknown-linux-gnu";
const X86_MUSL: &str = "x86_64-unknown-linux-musl";
const ARM_GNU: &str = "aarch64-unknown-linux-gnu";
const ARM_MUSL: &str = "aarch64-unknown-linux-musl";
const ARMV7: &str = "armv7-unknown-linux-gnueabihf";
const RISCV: &str = "riscv64gc-unknown-linux-gnu";
const WINDOWS: &str = "x86_64-pc-windows-gnu";

/// The targets jobs ask for, with how many of every 20 jobs ask for each.
const JOB_MIX: [(&str, usize); 7] =
    [(X86_GNU, 6), (ARM_GNU, 5), (X86_MUSL, 3), (ARM_MUSL, 2), (ARMV7, 2), (WINDOWS, 1), (RISCV, 1)];

/// A small deterministic generator (xorshift64*), so every run sees the same fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn toolchain(name: &str, host: &str, targets: &[(&str, BuildRoute)]) -> ToolchainReport {
    ToolchainReport {
        name: name.into(),
        version: "1.95.0".into(),
        host_triple: host.into(),
        targets: targets
            .iter()
            .map(|(triple, route)| BuildableTarget { triple: (*triple).into(), route: *route })
            .collect(),
    }
}

/// Agent number `index`: one of five kinds of build host, with 1-8 slots,
/// 2-64 cores and a one-minute load between idle and twice its cores.
fn agent_report(index: usize, rng: &mut Rng) -> CapabilityReport {
    use BuildRoute::{BuildStd, PrebuiltStd, Zig};
    let (arch, libc, toolchains) = match rng.below(10) {
        // x86_64 glibc hosts that also cross-build aarch64 and musl.
        0..=3 => (
            "x86_64",
            "glibc",
            vec![toolchain(
                "stable",
                X86_GNU,
                &[(X86_GNU, PrebuiltStd), (X86_MUSL, PrebuiltStd), (ARM_GNU, PrebuiltStd)],
            )],
        ),
        // Native aarch64 hosts.
        4..=6 => (
            "aarch64",
            "glibc",
            vec![toolchain(
                "stable",
                ARM_GNU,
                &[(ARM_GNU, PrebuiltStd), (ARM_MUSL, PrebuiltStd), (ARMV7, PrebuiltStd)],
            )],
        ),
        // x86_64 hosts with MinGW and a zig toolchain for the rest.
        7 => (
            "x86_64",
            "glibc",
            vec![
                toolchain("stable", X86_GNU, &[(X86_GNU, PrebuiltStd), (WINDOWS, PrebuiltStd)]),
                toolchain("zig", X86_GNU, &[(ARM_MUSL, Zig), (RISCV, Zig), (ARMV7, Zig)]),
            ],
        ),
        // Alpine x86_64 hosts: native musl.
        8 => {
            ("x86_64", "musl", vec![toolchain("stable", X86_MUSL, &[(X86_MUSL, PrebuiltStd), (X86_GNU, PrebuiltStd)])])
        }
        // riscv64 boards building themselves with build-std.
        _ => ("riscv64", "glibc", vec![toolchain("nightly", RISCV, &[(RISCV, BuildStd)])]),
    };
    let cores = [2, 4, 8, 16, 32, 64][rng.below(6) as usize];
    let one = rng.below(200) as f64 / 100.0 * f64::from(cores);
    CapabilityReport {
        agent_id: AgentId(format!("agent-{index:04}")),
        agent_version: "0.1.0".into(),
        arch: arch.into(),
        os: "linux".into(),
        os_version: "Debian 12".into(),
        libc: Some(LibcReport { name: libc.into(), version: "2.36".into() }),
        cores,
        memory_total_bytes: 32 << 30,
        memory_available_bytes: 16 << 30,
        load: LoadAverage { one, five: one, fifteen: one },
        disk_free_bytes: 500 << 30,
        toolchains,
        docker_available: false,
        max_concurrent_jobs: 1 + rng.below(8) as u32,
        warm_caches: Vec::new(),
    }
}

/// `jobs` requests over four templates, targets in the proportions of [`JOB_MIX`].
fn job_requests(jobs: usize) -> Vec<BuildRequest> {
    let targets: Vec<Target> = JOB_MIX
        .iter()
        .flat_map(|(triple, weight)| std::iter::repeat_n(*triple, *weight))
        .map(|triple| Target::from_triple(triple).expect("a known triple"))
        .collect();
    (0..jobs)
        .map(|n| BuildRequest {
            template: TemplateId(format!("template-{:012x}", n % 4)),
            target: targets[n % targets.len()].clone(),
            settings: TargetSettings::default(),
            optimization: CompilationOptimization::default(),
            deadline: Duration::from_secs(3600),
            incremental: false,
            cache: CachePolicy::Off,
        })
        .collect()
}

/// A scheduler with `agents` connected agents and a two-slot local fallback for x86_64.
fn fleet(agents: usize) -> Scheduler {
    let config = SchedulerConfig {
        heartbeat_timeout: Duration::from_secs(600),
        fallbacks: vec![FallbackExecutor::local([X86_GNU], 2)],
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(config).expect("a valid configuration");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for index in 0..agents {
        scheduler.handle_agent_connected(agent_report(index, &mut rng), Timestamp::ZERO);
    }
    scheduler
}

/// A successful build's outcome, made once and copied for every finish: the
/// driver's own work stays small (no hashing, no strings to copy), so that
/// the time is the scheduler's.
fn success() -> BuildOutcome {
    BuildOutcome::Success {
        checksum: Sha256Digest::of(b"binary"),
        size: 6,
        compile_time_ms: 1000,
        toolchain: String::new(),
        rustc_version: String::new(),
        cargo_version: String::new(),
        compilation_flags: Vec::new(),
        from_cache: false,
    }
}

/// Submits `requests` as one batch and drives the scheduler until every job
/// has been dispatched: accepts each dispatch, and while jobs wait finishes
/// the oldest running one (1 ms later each time). Returns the dispatches.
fn dispatch_all(scheduler: &mut Scheduler, requests: Vec<BuildRequest>) -> usize {
    let jobs = requests.len();
    let mut now = Timestamp::from_secs(1);
    scheduler.handle_jobs_submitted(requests, now);
    let success = success();
    let mut running: VecDeque<(Executor, rustle_protocol::JobId)> = VecDeque::new();
    let mut dispatched = 0;
    loop {
        while let Some(action) = scheduler.poll_action() {
            match action {
                Action::Dispatch(dispatch) => {
                    dispatched += 1;
                    scheduler.handle_job_accepted(&dispatch.executor, dispatch.job, now);
                    running.push_back((dispatch.executor, dispatch.job));
                }
                Action::Report(report) => assert!(report.result.is_success(), "{}", report.result),
                other => panic!("unexpected {other:?}"),
            }
        }
        if dispatched == jobs {
            return dispatched;
        }
        let (executor, job) = running.pop_front().expect("jobs wait, so some job runs");
        now = now + Duration::from_millis(1);
        scheduler.handle_job_finished(&executor, job, success.clone(), now);
    }
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    // An iteration at 1,000 x 10,000 takes about a tenth of a second.
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (agents, jobs) in [(100, 1_000), (1_000, 10_000)] {
        group.throughput(Throughput::Elements(jobs as u64));
        group.bench_function(format!("{agents}_agents_{jobs}_jobs"), |b| {
            b.iter_batched(
                || (fleet(agents), job_requests(jobs)),
                |(mut scheduler, requests)| {
                    let dispatched = dispatch_all(&mut scheduler, requests);
                    assert_eq!(dispatched, jobs);
                    black_box(scheduler)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);

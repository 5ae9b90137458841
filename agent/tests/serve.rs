//! The agent end to end in one process: `rustle_agent::serve` on loopback
//! port 0 with real certificates, driven by a minimal coordinator written
//! here, building real templates with cargo.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{
    Driver, Fleet, HOST_TRIPLE, RunningAgent, Template, bounded, find_files, fleet, offer, process_alive,
    processes_mentioning, slow_template, wait_for,
};
use rustle_protocol::{
    AgentToCoordinator, BuildEvent, BuildOutcome, BulkAck, BulkKind, CoordinatorToAgent, JobId, JobOffer, LogStream,
    RejectReason,
};
use sha2::{Digest, Sha256};

const HELLO_MAIN: &str = "fn main() {\n    println!(\"hello from the agent\");\n}\n";

fn started(fleet: &Fleet) -> RunningAgent {
    RunningAgent::start(fleet, |config| {
        config.allowed_targets = Some(vec![HOST_TRIPLE.into()]);
        config.heartbeat_interval_ms = 200;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_come_first_honour_allowed_targets_and_heartbeats_follow() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;

    let AgentToCoordinator::Capabilities(report) = driver.recv_any().await else {
        panic!("the first message after the hello must be the capability report");
    };
    assert_eq!(report.arch, std::env::consts::ARCH);
    assert_eq!(report.agent_id.0, common::AGENT);
    let triples: Vec<&str> =
        report.toolchains.iter().flat_map(|t| t.targets.iter().map(|target| target.triple.as_str())).collect();
    assert!(triples.contains(&HOST_TRIPLE), "{triples:?}");
    assert!(triples.iter().all(|t| *t == HOST_TRIPLE), "allowed_targets not honoured: {triples:?}");

    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        match driver.recv_any().await {
            AgentToCoordinator::Load(load) => sequences.push(load.sequence),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(sequences.windows(2).all(|pair| pair[1] == pair[0] + 1), "{sequences:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_outside_allowed_targets_are_rejected() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    driver.send(CoordinatorToAgent::Offer(offer(7, "hello", "aarch64-unknown-linux-gnu"))).await;
    match driver.recv().await {
        AgentToCoordinator::Reject { job, reason: RejectReason::UnsupportedTarget { triple } } => {
            assert_eq!(job, JobId(7));
            assert_eq!(triple, "aarch64-unknown-linux-gnu");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // `allowed_targets` names whole targets: the host triple does not admit
    // its glibc-floor variant.
    let floor = format!("{HOST_TRIPLE}.2.17");
    driver.send(CoordinatorToAgent::Offer(offer(9, "hello", &floor))).await;
    match driver.recv().await {
        AgentToCoordinator::Reject { job, reason: RejectReason::UnsupportedTarget { triple } } => {
            assert_eq!(job, JobId(9));
            assert_eq!(triple, floor);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let mut missing = offer(8, "hello", HOST_TRIPLE);
    missing.toolchain = "no-such-toolchain".into();
    driver.send(CoordinatorToAgent::Offer(missing)).await;
    match driver.recv().await {
        AgentToCoordinator::Reject { job, reason: RejectReason::ToolchainMissing { toolchain } } => {
            assert_eq!(job, JobId(8));
            assert_eq!(toolchain, "no-such-toolchain");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    agent.stop().await;
}

/// Runs one job of `template` to its end; returns the frames and the artifact.
async fn run_job(
    driver: &mut Driver,
    job: u64,
    template_id: &str,
    bundle: &[u8],
) -> (Vec<AgentToCoordinator>, Option<(rustle_protocol::BulkHeader, Vec<u8>)>) {
    run_offer(driver, offer(job, template_id, HOST_TRIPLE), bundle).await
}

/// Offers `offer`, sends the bundle, and collects the frames and the artifact.
async fn run_offer(
    driver: &mut Driver,
    offer: JobOffer,
    bundle: &[u8],
) -> (Vec<AgentToCoordinator>, Option<(rustle_protocol::BulkHeader, Vec<u8>)>) {
    let job = offer.job.0;
    let artifact = driver.expect_artifact();
    driver.send(CoordinatorToAgent::Offer(offer)).await;
    assert_eq!(driver.recv_for(JobId(job)).await, AgentToCoordinator::Accept { job: JobId(job) });
    driver.send_bundle(JobId(job), bundle).await;
    let frames = driver.recv_until_finished(JobId(job)).await;
    let success =
        matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. }));
    let artifact = if success {
        Some(bounded(Duration::from_secs(60), artifact).await.expect("artifact task"))
    } else {
        artifact.abort();
        None
    };
    (frames, artifact)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_builds_streams_progress_and_the_binary_and_a_repeat_is_incremental() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let template = Template::new("hello-agent", HELLO_MAIN, None);
    let bundle = template.bundle();

    let (frames, artifact) = run_job(&mut driver, 1, "hello-agent", &bundle).await;
    let events: Vec<&BuildEvent> = frames
        .iter()
        .filter_map(|frame| match frame {
            AgentToCoordinator::Event { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert!(matches!(events.first(), Some(BuildEvent::Queued { .. })), "{events:?}");
    let started_at = events.iter().position(|e| **e == BuildEvent::Started).expect("a Started event");
    let progress: Vec<(u32, u32)> = events[started_at..]
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Progress { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "{events:?}");
    assert!(progress.windows(2).all(|p| p[1].0 > p[0].0), "progress out of order: {progress:?}");
    assert!(progress.iter().all(|(done, total)| done <= total), "{progress:?}");
    // cargo's own lines come through as log events, in order.
    let logs: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Log { stream: LogStream::Stderr, line } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    let compiling = logs.iter().position(|l| l.contains("Compiling hello-agent"));
    let finished = logs.iter().position(|l| l.contains("Finished"));
    assert!(matches!((compiling, finished), (Some(c), Some(f)) if c < f), "{logs:?}");
    assert!(
        frames
            .contains(&AgentToCoordinator::BulkAck(BulkAck::Verified { job: JobId(1), kind: BulkKind::SourceBundle })),
        "{frames:?}"
    );
    let Some(AgentToCoordinator::Finished {
        outcome: BuildOutcome::Success { checksum, size, compile_time_ms: first_ms, .. },
        ..
    }) = frames.last().cloned()
    else {
        panic!("the job did not succeed: {frames:?}");
    };
    let (header, body) = artifact.expect("an artifact");
    assert_eq!(header.kind, BulkKind::Artifact);
    assert_eq!(header.file_name, "hello-agent");
    assert_eq!(body.len() as u64, size);
    let digest: [u8; 32] = Sha256::digest(&body).into();
    assert_eq!(digest, checksum.0);
    assert_eq!(header.sha256, checksum);

    // The binary runs and prints.
    let exe = template.dir.path().join("downloaded-hello");
    {
        let mut file = std::fs::File::create(&exe).expect("create");
        file.write_all(&body).expect("write");
    }
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let output = std::process::Command::new(&exe).output().expect("the binary runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from the agent\n");

    // The sources landed in the warm dir, inside the work dir; the build in
    // the target dirs the engine shares by dependencies.
    let warm = agent.work_dir.join("warm/hello-agent");
    assert!(warm.join("src/src/main.rs").is_file());
    let built: Vec<_> = find_files(&agent.work_dir.join("cache/targets"), "hello-agent")
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("release")))
        .collect();
    assert_eq!(built.len(), 1, "{built:?}");
    let mtime = std::fs::metadata(&built[0]).and_then(|m| m.modified()).expect("mtime");

    // The same template again: cargo finds everything fresh.
    let (frames, artifact) = run_job(&mut driver, 2, "hello-agent", &bundle).await;
    let Some(AgentToCoordinator::Finished {
        outcome: BuildOutcome::Success { checksum: second, compile_time_ms: second_ms, .. },
        ..
    }) = frames.last().cloned()
    else {
        panic!("the repeat did not succeed: {frames:?}");
    };
    assert_eq!(second, checksum, "same sources, same binary");
    assert_eq!(artifact.expect("artifact").1, body);
    let again = std::fs::metadata(&built[0]).and_then(|m| m.modified()).expect("mtime");
    assert_eq!(again, mtime, "the warm build relinked the binary instead of finding it fresh");
    eprintln!("cold build {first_ms} ms, warm build {second_ms} ms");

    // The warm cache is reported to the next coordinator.
    let mut other = Driver::connect(&fleet, agent.addr).await;
    let AgentToCoordinator::Capabilities(report) = other.recv_any().await else { panic!("capabilities first") };
    assert!(
        report.warm_caches.iter().any(|w| w.template_id.0 == "hello-agent" && w.triple == HOST_TRIPLE),
        "{:?}",
        report.warm_caches
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_error_is_reported_as_data() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let template = Template::new("broken-agent", "fn main() {\n    let x: u32 = \"nope\";\n}\n", None);
    let (frames, artifact) = run_job(&mut driver, 3, "broken-agent", &template.bundle()).await;
    assert!(artifact.is_none());
    match frames.last() {
        Some(AgentToCoordinator::Finished { outcome: BuildOutcome::CompileFailed { diagnostics }, .. }) => {
            assert!(diagnostics.contains("mismatched types"), "{diagnostics}");
        }
        other => panic!("expected CompileFailed, got {other:?}"),
    }
    agent.stop().await;
}

/// A tar whose one entry climbs out of the destination, written with raw
/// headers (the tar crate's builder would refuse the path).
fn traversal_bundle() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [(&b"Cargo.toml"[..], &b"[package]\n"[..]), (b"../escape.txt", b"pwned")] {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    zstd::stream::encode_all(&builder.into_inner().expect("tar")[..], 3).expect("compress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_bundle_is_refused_and_nothing_is_written_outside() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    driver.send(CoordinatorToAgent::Offer(offer(4, "hostile", HOST_TRIPLE))).await;
    assert_eq!(driver.recv().await, AgentToCoordinator::Accept { job: JobId(4) });
    driver.send_bundle(JobId(4), &traversal_bundle()).await;
    let frames = driver.recv_until_finished(JobId(4)).await;
    assert!(
        frames.iter().any(|f| matches!(
            f,
            AgentToCoordinator::BulkAck(BulkAck::Rejected { job: JobId(4), kind: BulkKind::SourceBundle, .. })
        )),
        "{frames:?}"
    );
    match frames.last() {
        Some(AgentToCoordinator::Finished {
            outcome: BuildOutcome::InfrastructureFailure { retryable: false, reason },
            ..
        }) => assert!(reason.contains("escape") || reason.contains(".."), "{reason}"),
        other => panic!("expected a non-retryable infrastructure failure, got {other:?}"),
    }
    assert!(find_files(agent.scratch.path(), "escape.txt").is_empty());
    assert!(!agent.work_dir.join("warm/hostile/src/Cargo.toml").exists(), "nothing of the bundle is written");
    agent.stop().await;
}

/// Offers the slow template and waits until its build script runs; returns its pid.
async fn start_slow_build(driver: &mut Driver, job: u64, template: &Template, pid_file: &std::path::Path) -> u32 {
    driver.send(CoordinatorToAgent::Offer(offer(job, "slow-agent", HOST_TRIPLE))).await;
    assert_eq!(driver.recv_for(JobId(job)).await, AgentToCoordinator::Accept { job: JobId(job) });
    driver.send_bundle(JobId(job), &template.bundle()).await;
    wait_for(Duration::from_secs(180), "the build script to start", || {
        std::fs::read_to_string(pid_file).is_ok_and(|pid| pid.trim().parse::<u32>().is_ok())
    })
    .await;
    let pid: u32 = std::fs::read_to_string(pid_file).expect("pid file").trim().parse().expect("a pid");
    assert!(process_alive(pid), "the build script should be sleeping");
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_build_and_reports_cancelled() {
    let fleet = fleet();
    let agent = RunningAgent::start(&fleet, |config| config.max_concurrent_jobs = 1);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let pid_file = agent.scratch.path().join("build-script.pid");
    let template = slow_template(&pid_file);
    let pid = start_slow_build(&mut driver, 5, &template, &pid_file).await;

    // The one slot is taken.
    driver.send(CoordinatorToAgent::Offer(offer(50, "hello-agent", HOST_TRIPLE))).await;
    assert_eq!(
        driver.recv_for(JobId(50)).await,
        AgentToCoordinator::Reject { job: JobId(50), reason: RejectReason::AtCapacity { running: 1, max: 1 } }
    );

    driver.send(CoordinatorToAgent::Cancel { job: JobId(5) }).await;
    let frames = driver.recv_until_finished(JobId(5)).await;
    assert!(
        matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Cancelled, .. })),
        "{frames:?}"
    );
    wait_for(Duration::from_secs(20), "the build script to be killed", || !process_alive(pid)).await;
    wait_for(Duration::from_secs(20), "cargo to be gone", || processes_mentioning(&agent.work_dir).is_empty()).await;

    // The slot is free by the time Finished arrives: the next offer is accepted.
    let template = Template::new("hello-agent", HELLO_MAIN, None);
    let (frames, _) = run_job(&mut driver, 6, "hello-agent", &template.bundle()).await;
    assert!(
        matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
        "{frames:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_kills_the_build() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let pid_file = agent.scratch.path().join("build-script.pid");
    let template = slow_template(&pid_file);
    let pid = start_slow_build(&mut driver, 8, &template, &pid_file).await;

    driver.connection.close("coordinator gone");
    drop(driver);
    wait_for(Duration::from_secs(60), "the build script to be killed", || !process_alive(pid)).await;
    wait_for(Duration::from_secs(20), "cargo to be gone", || processes_mentioning(&agent.work_dir).is_empty()).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_ends_running_jobs_as_retryable() {
    let fleet = fleet();
    let agent = RunningAgent::start(&fleet, |config| {
        config.allowed_targets = Some(vec![HOST_TRIPLE.into()]);
        config.shutdown_drain_secs = 1;
    });
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let pid_file = agent.scratch.path().join("build-script.pid");
    let template = slow_template(&pid_file);
    let pid = start_slow_build(&mut driver, 9, &template, &pid_file).await;

    let work_dir = agent.work_dir.clone();
    let stopping = tokio::spawn(agent.stop());
    let frames = driver.recv_until_finished(JobId(9)).await;
    match frames.last() {
        Some(AgentToCoordinator::Finished {
            outcome: BuildOutcome::InfrastructureFailure { retryable: true, reason },
            ..
        }) => assert!(reason.contains("shutting down"), "{reason}"),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
    bounded(Duration::from_secs(90), stopping).await.expect("serve returned");
    wait_for(Duration::from_secs(20), "the build script to be killed", || !process_alive(pid)).await;
    wait_for(Duration::from_secs(20), "cargo to be gone", || processes_mentioning(&work_dir).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_of_a_busy_template_builds_in_scratch_dirs_that_are_removed() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let pid_file = agent.scratch.path().join("build-script.pid");
    let slow = slow_template(&pid_file);
    let pid = start_slow_build(&mut driver, 10, &slow, &pid_file).await;

    // Same template id, while job 10 holds its warm dir.
    let quick = Template::new("hello-agent", HELLO_MAIN, None);
    let (frames, artifact) = run_job(&mut driver, 11, "slow-agent", &quick.bundle()).await;
    assert!(
        matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
        "{frames:?}"
    );
    assert!(artifact.is_some());
    let jobs = agent.work_dir.join("jobs");
    wait_for(Duration::from_secs(10), "scratch dirs to be removed", || {
        std::fs::read_dir(&jobs).map_or(true, |mut entries| entries.next().is_none())
    })
    .await;
    assert!(process_alive(pid), "job 10 is untouched");
    driver.send(CoordinatorToAgent::Cancel { job: JobId(10) }).await;
    let frames = driver.recv_until_finished(JobId(10)).await;
    assert!(matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Cancelled, .. })));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_dirs_over_the_cap_are_evicted() {
    let fleet = fleet();
    let agent = RunningAgent::start(&fleet, |config| config.warm_cache_max_bytes = 1);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let template = Template::new("hello-agent", HELLO_MAIN, None);
    let (frames, _) = run_job(&mut driver, 12, "hello-agent", &template.bundle()).await;
    assert!(
        matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
        "{frames:?}"
    );
    let warm = agent.work_dir.join("warm/hello-agent");
    wait_for(Duration::from_secs(20), "the warm dir to be evicted", || !warm.exists()).await;
    // The template's target dir (shared by its dependencies) went with it.
    let cache = agent.work_dir.join("cache");
    wait_for(Duration::from_secs(20), "the target dir to be evicted", || {
        rustle_agent::warm::target_dirs(&cache).is_empty()
    })
    .await;
    agent.stop().await;
}

/// With the coordinator's leave (`use_cache`), a repeated job is answered
/// from the agent's binary cache: no cargo run, the same binary, and the
/// outcome says so. Without it (`--no-cache` on the coordinator), the agent
/// builds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_job_comes_from_the_agents_binary_cache_when_allowed() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let template = Template::new("hello-cached", HELLO_MAIN, None);
    let bundle = template.bundle();
    let cached = |job| JobOffer { use_cache: true, ..offer(job, "hello-cached", HOST_TRIPLE) };
    let success = |frames: &[AgentToCoordinator]| match frames.last() {
        Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { checksum, from_cache, .. }, .. }) => {
            (*checksum, *from_cache)
        }
        other => panic!("the job did not succeed: {other:?}"),
    };
    let cargo_ran = |frames: &[AgentToCoordinator]| {
        frames.iter().any(|frame| {
            matches!(frame, AgentToCoordinator::Event { event: BuildEvent::Log { line, .. }, .. } if line.contains("Finished"))
        })
    };

    let (first, first_artifact) = run_offer(&mut driver, cached(1), &bundle).await;
    let (checksum, from_cache) = success(&first);
    assert!(!from_cache && cargo_ran(&first), "the first build runs cargo: {first:?}");

    let (second, second_artifact) = run_offer(&mut driver, cached(2), &bundle).await;
    assert_eq!(success(&second), (checksum, true), "{second:?}");
    assert!(!cargo_ran(&second), "a cached answer runs no cargo: {second:?}");
    assert_eq!(second_artifact.expect("artifact").1, first_artifact.expect("artifact").1);

    let (third, _) = run_offer(&mut driver, offer(3, "hello-cached", HOST_TRIPLE), &bundle).await;
    assert_eq!(success(&third), (checksum, false), "without leave the agent builds: {third:?}");
    assert!(cargo_ran(&third));
}

const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Offers the jobs (`(job, triple)`) of one template at once, sends each
/// the same bundle, and collects every job's frames until all finished.
async fn run_together(
    driver: &mut Driver,
    jobs: &[(u64, &str)],
    template_id: &str,
    bundle: &[u8],
) -> std::collections::BTreeMap<u64, Vec<AgentToCoordinator>> {
    let artifacts: Vec<_> = jobs.iter().map(|_| driver.expect_artifact()).collect();
    for (job, triple) in jobs {
        driver.send(CoordinatorToAgent::Offer(offer(*job, template_id, triple))).await;
    }
    let mut frames: std::collections::BTreeMap<u64, Vec<AgentToCoordinator>> = std::collections::BTreeMap::new();
    let mut accepted = 0;
    while accepted < jobs.len() {
        let frame = driver.recv().await;
        if matches!(frame, AgentToCoordinator::Accept { .. }) {
            accepted += 1;
        }
        if let Some(job) = common::job_of(&frame) {
            frames.entry(job.0).or_default().push(frame);
        }
    }
    for (job, _) in jobs {
        driver.send_bundle(JobId(*job), bundle).await;
    }
    let finished = |frames: &std::collections::BTreeMap<u64, Vec<AgentToCoordinator>>| {
        jobs.iter().all(|(job, _)| {
            frames.get(job).is_some_and(|f| f.iter().any(|m| matches!(m, AgentToCoordinator::Finished { .. })))
        })
    };
    while !finished(&frames) {
        let frame = driver.recv().await;
        if let Some(job) = common::job_of(&frame) {
            frames.entry(job.0).or_default().push(frame);
        }
    }
    for artifact in artifacts {
        bounded(Duration::from_secs(60), artifact).await.expect("artifact task");
    }
    frames
}

fn cargo_lines(frames: &[AgentToCoordinator]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            AgentToCoordinator::Event { event: BuildEvent::Log { line, .. }, .. } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// Two jobs of one template with the same bundle, for two targets at once:
/// they share the template's warm dir (each target in its own target dir;
/// a job in scratch dirs would leave nothing there), and a repeat of both
/// is warm for both (cargo compiles nothing of the template again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_bundle_share_the_warm_dir_and_a_repeat_is_warm_for_every_target() {
    if !rustle_test_support::require_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    let fleet = fleet();
    let agent = RunningAgent::start(&fleet, |config| config.max_concurrent_jobs = 2);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let template = Template::new("shared-agent", HELLO_MAIN, None);
    let bundle = template.bundle();
    let targets = [HOST_TRIPLE, AARCH64];

    let first = run_together(&mut driver, &[(30, targets[0]), (31, targets[1])], "shared-agent", &bundle).await;
    for (job, frames) in &first {
        assert!(
            matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
            "job {job}: {frames:?}"
        );
        assert!(cargo_lines(frames).iter().any(|l| l.contains("Compiling shared-agent")), "job {job} built it");
    }
    let targets_dir = agent.work_dir.join("cache/targets");
    for triple in targets {
        let found = std::fs::read_dir(&targets_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|template_dir| template_dir.path().join(triple).is_dir());
        assert!(found, "{triple} was built in the shared target dirs {}", targets_dir.display());
    }

    let again = run_together(&mut driver, &[(32, targets[0]), (33, targets[1])], "shared-agent", &bundle).await;
    for (job, frames) in &again {
        assert!(
            matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
            "job {job}: {frames:?}"
        );
        let lines = cargo_lines(frames);
        assert!(!lines.iter().any(|l| l.contains("Compiling shared-agent")), "job {job} was warm: {lines:?}");
    }
    agent.stop().await;
}

/// A new template (rustle-deploy's next plan: another template id, another
/// package name) with the same dependencies compiles only its own crate:
/// the agent's target dirs are keyed by the dependencies, not by the
/// template's warm dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_template_with_the_same_dependencies_compiles_only_its_own_crate() {
    let fleet = fleet();
    let agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let main = "fn main() {\n    println!(\"{}\", itoa::Buffer::new().format(42));\n}\n";
    let mut compiled = Vec::new();
    for (job, name) in [(40, "first-plan"), (41, "second-plan")] {
        let template = Template::with_dependencies(name, main, None, "itoa = \"1\"\n");
        let (frames, _) = run_job(&mut driver, job, name, &template.bundle()).await;
        assert!(
            matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
            "{name}: {frames:?}"
        );
        compiled.push(
            cargo_lines(&frames).into_iter().filter(|l| l.trim_start().starts_with("Compiling")).collect::<Vec<_>>(),
        );
    }
    assert!(
        compiled[0].iter().any(|l| l.contains("Compiling itoa")),
        "the first plan compiles its dependency: {compiled:?}"
    );
    assert_eq!(compiled[1].len(), 1, "the second compiles only itself: {compiled:?}");
    assert!(compiled[1][0].contains("Compiling second-plan"), "{compiled:?}");
    agent.stop().await;
}

/// Shut down mid-build: the agent tells the coordinator at once that it is
/// draining, refuses a new offer, and the running job still finishes,
/// reports success and sends its binary before `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_agent_says_so_takes_no_new_job_and_finishes_the_running_one() {
    let fleet = fleet();
    let mut agent = started(&fleet);
    let mut driver = Driver::connect(&fleet, agent.addr).await;
    let pid_file = agent.scratch.path().join("drain-build.pid");
    let build_rs = format!(
        "fn main() {{\n    std::fs::write({:?}, std::process::id().to_string()).unwrap();\n    std::thread::sleep(std::time::Duration::from_secs(4));\n}}\n",
        pid_file.display().to_string()
    );
    let template = Template::new("drain-agent", HELLO_MAIN, Some(&build_rs));
    let artifact = driver.expect_artifact();
    driver.send(CoordinatorToAgent::Offer(offer(40, "drain-agent", HOST_TRIPLE))).await;
    assert_eq!(driver.recv_for(JobId(40)).await, AgentToCoordinator::Accept { job: JobId(40) });
    driver.send_bundle(JobId(40), &template.bundle()).await;
    wait_for(Duration::from_secs(120), "the build script to start", || pid_file.is_file()).await;

    agent.begin_stop();
    let draining = loop {
        match driver.recv().await {
            AgentToCoordinator::Draining { drain_secs } => break drain_secs,
            AgentToCoordinator::Event { .. } | AgentToCoordinator::BulkAck(_) => {}
            other => panic!("expected Draining first, got {other:?}"),
        }
    };
    assert_eq!(draining, 600, "the default drain time");
    driver.send(CoordinatorToAgent::Offer(offer(41, "drain-agent", HOST_TRIPLE))).await;
    assert!(
        matches!(
            driver.recv_for(JobId(41)).await,
            AgentToCoordinator::Reject { reason: RejectReason::ShuttingDown, .. }
        ),
        "a new offer is refused"
    );
    let frames = driver.recv_until_finished(JobId(40)).await;
    assert!(
        matches!(frames.last(), Some(AgentToCoordinator::Finished { outcome: BuildOutcome::Success { .. }, .. })),
        "the running job still finishes: {frames:?}"
    );
    let (header, _) = bounded(Duration::from_secs(60), artifact).await.expect("the binary arrives");
    assert_eq!(header.job, JobId(40));
    agent.stop().await;
}

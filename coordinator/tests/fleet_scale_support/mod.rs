//! The fleet-scale run shared by `benches/fleet_scale.rs` (1,000 simulated
//! agents, 10,000 jobs) and its short CI mode `tests/fleet_scale.rs`: submit
//! many builds of one template and target to a running fleet through
//! [`Fleet::submit`], check every binary against the canned one the
//! simulated agents deliver, and measure this process's CPU and memory.

#![allow(dead_code, reason = "the bench and the test use different parts")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rustle_cross::fleet::{BuildSource, ConnectionState, Executor, Fleet, FleetBuild};
use rustle_cross::targets::{BuildRequest, CachePolicy, CompilationOptimization, Target, TargetSettings, TemplateId};

/// The toolchain a simulated agent's binaries name (`rustle_agent::simulate::SIMULATED_TOOLCHAIN`).
pub const SIMULATED_TOOLCHAIN: &str = "simulated";

/// This process's CPU time (user + system) so far, from `/proc/self/stat`.
pub fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the command name (which may hold spaces): the
            // 14th and 15th of the line, utime and stime, are the 12th and
            // 13th after it.
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

/// `getconf CLK_TCK` (100 on every Linux in practice).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// A line of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
pub fn status_bytes(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with(key) && line[key.len()..].starts_with(':'))?;
            line[key.len() + 1..].trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// This process's resident memory now.
pub fn rss_bytes() -> u64 {
    status_bytes("VmRSS")
}

/// CPU used and the largest RSS seen over a stretch of time.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// How long the stretch was.
    pub wall: Duration,
    /// CPU time used in it.
    pub cpu: Duration,
    /// The largest RSS sampled (every 100 ms).
    pub peak_rss: u64,
    /// RSS at its end.
    pub end_rss: u64,
}

impl Usage {
    /// Cores used on average.
    pub fn cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// Measures this process while `work` runs.
pub async fn measure<T>(work: impl std::future::Future<Output = T>) -> (T, Usage) {
    let peak = Arc::new(AtomicU64::new(rss_bytes()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                ticker.tick().await;
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
            }
        })
    };
    let (start, cpu) = (Instant::now(), cpu_time());
    let out = work.await;
    let (wall, cpu) = (start.elapsed(), cpu_time().saturating_sub(cpu));
    sampler.abort();
    let end_rss = rss_bytes();
    let peak_rss = peak.load(Ordering::Relaxed).max(end_rss);
    (out, Usage { wall, cpu, peak_rss, end_rss })
}

/// What the agents not connected say (the first few).
pub async fn not_connected(fleet: &Fleet) -> Vec<String> {
    let views = fleet.status().await.unwrap_or_default();
    views
        .iter()
        .filter(|view| view.connection != ConnectionState::Connected)
        .take(5)
        .map(|view| format!("{}: {:?}", view.name, view.connection))
        .collect()
}

/// How many agents are connected, and how many of those say they are simulated.
pub async fn connected_agents(fleet: &Fleet) -> (usize, usize) {
    let views = fleet.status().await.unwrap_or_default();
    let connected: Vec<_> = views.iter().filter(|view| view.connection == ConnectionState::Connected).collect();
    let simulated = connected
        .iter()
        .filter(|view| view.capabilities.as_ref().is_some_and(|report| report.agent_version.ends_with("(simulated)")))
        .count();
    (connected.len(), simulated)
}

/// What a flow of jobs came to.
#[derive(Debug, Default)]
pub struct Flow {
    /// Jobs whose binary was the canned one, delivered by a simulated agent.
    pub verified: usize,
    /// What went wrong with the others (the first few).
    pub failures: Vec<String>,
    /// How many failed.
    pub failed: usize,
    /// How many distinct agents built something.
    pub agents_used: usize,
}

/// Submits `jobs` builds of `target` from `source` as one batch and waits
/// for every outcome: each must be a binary from an agent with the canned
/// binary's `expected_sha256` and the simulated toolchain. Binaries are
/// dropped as they are checked.
pub async fn flow(fleet: &Fleet, source: BuildSource, target: &str, jobs: usize, expected_sha256: &str) -> Flow {
    let target = Target::from_triple(target).expect("a valid target");
    let request = BuildRequest {
        template: TemplateId(source.template_id.0.clone()),
        target,
        settings: TargetSettings::default(),
        optimization: CompilationOptimization::default(),
        deadline: Duration::from_secs(1800),
        incremental: true,
        cache: CachePolicy::Off,
    };
    let progress: rustle_cross::ProgressSink = Arc::new(|_| {});
    let builds =
        (0..jobs).map(|_| FleetBuild { request: request.clone(), progress: progress.clone(), local: None }).collect();
    let mut flow = Flow::default();
    let receivers = match fleet.submit(builds, source) {
        Ok(receivers) => receivers,
        Err(error) => {
            flow.failed = jobs;
            flow.failures.push(error.to_string());
            return flow;
        }
    };
    let mut agents = std::collections::HashSet::new();
    let mut pending: FuturesUnordered<_> = receivers.into_iter().collect();
    while let Some(outcome) = pending.next().await {
        let problem = match outcome {
            Err(_) => Some("the fleet stopped before reporting".to_owned()),
            Ok(outcome) => match (&outcome.result, &outcome.executor) {
                (Ok(binary), Some(Executor::Agent(agent))) => {
                    agents.insert(agent.0.clone());
                    if binary.checksum != expected_sha256 {
                        Some(format!("agent {agent} delivered sha256 {}, not {expected_sha256}", binary.checksum))
                    } else if binary.metadata.toolchain != SIMULATED_TOOLCHAIN {
                        Some(format!("agent {agent} built with {}, not simulated", binary.metadata.toolchain))
                    } else {
                        None
                    }
                }
                (Ok(_), executor) => Some(format!("built by {executor:?}, not an agent")),
                (Err(error), executor) => Some(format!("failed on {executor:?}: {error}")),
            },
        };
        match problem {
            None => flow.verified += 1,
            Some(problem) => {
                flow.failed += 1;
                if flow.failures.len() < 5 {
                    flow.failures.push(problem);
                }
            }
        }
    }
    flow.agents_used = agents.len();
    flow
}

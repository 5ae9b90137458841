//! Property test: random event sequences against a model of what the scheduler has handed out, checking its invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use rustle_protocol::{AgentId, BuildOutcome, CapabilityReport, JobId, LoadAverage, LoadUpdate, RejectReason};

use super::{ARM, ARMV7, RISCV, X86, agent, at, report, request_within, success};
use crate::{Action, CancelReason, EventOutcome, Executor, FallbackExecutor, Scheduler, SchedulerConfig};

const AGENTS: usize = 3;
const TARGETS: [&str; 4] = [ARM, X86, ARMV7, RISCV];

fn agent_report(index: usize) -> CapabilityReport {
    match index {
        0 => report("a", "aarch64", ARM, &[ARM], 1),
        1 => report("b", "x86_64", X86, &[X86, ARM], 2),
        _ => report("c", "x86_64", X86, &[X86, ARMV7], 1),
    }
}

fn agent_id(index: usize) -> AgentId {
    agent_report(index).agent_id
}

/// What an executor says about a job.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Accept,
    Progress,
    Reject,
    Success,
    CompileFailed,
    InfraRetryable,
    InfraFatal,
    Cancelled,
}

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    Heartbeat(usize),
    Submit {
        target: usize,
        deadline_secs: u64,
    },
    /// A reply from the executor of the `n`-th current assignment (modulo their number).
    Answer {
        n: usize,
        reply: Reply,
    },
    /// A reply from any agent about any job: mostly stale.
    Stray {
        agent: usize,
        job: u64,
        reply: Reply,
    },
    Advance {
        millis: u64,
    },
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Accept),
        Just(Reply::Progress),
        Just(Reply::Reject),
        Just(Reply::Success),
        Just(Reply::CompileFailed),
        Just(Reply::InfraRetryable),
        Just(Reply::InfraFatal),
        Just(Reply::Cancelled),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..AGENTS).prop_map(Op::Connect),
        1 => (0..AGENTS).prop_map(Op::Disconnect),
        3 => (0..AGENTS).prop_map(Op::Heartbeat),
        3 => (0..TARGETS.len(), 5..200u64).prop_map(|(target, deadline_secs)| Op::Submit { target, deadline_secs }),
        5 => (any::<usize>(), reply()).prop_map(|(n, reply)| Op::Answer { n, reply }),
        1 => (0..AGENTS, 1..12u64, reply()).prop_map(|(agent, job, reply)| Op::Stray { agent, job, reply }),
        3 => (0..40_000u64).prop_map(|millis| Op::Advance { millis }),
    ]
}

/// The outside view: what the scheduler has handed out and not taken back.
struct Harness {
    scheduler: Scheduler,
    now: crate::Timestamp,
    connected: BTreeSet<usize>,
    assignments: BTreeMap<JobId, Executor>,
    slots: BTreeMap<Executor, u32>,
    submitted: BTreeSet<JobId>,
    reports: BTreeMap<JobId, u32>,
    heartbeat_sequence: u64,
}

impl Harness {
    fn new() -> Self {
        let config = SchedulerConfig {
            heartbeat_timeout: Duration::from_secs(15),
            offer_timeout: Duration::from_secs(10),
            fallbacks: vec![FallbackExecutor::local([X86], 1)],
            ..SchedulerConfig::default()
        };
        let mut slots: BTreeMap<Executor, u32> =
            (0..AGENTS).map(|i| (Executor::Agent(agent_id(i)), agent_report(i).max_concurrent_jobs)).collect();
        slots.insert(Executor::Fallback(config.fallbacks[0].id.clone()), 1);
        Self {
            scheduler: Scheduler::new(config).unwrap(),
            now: at(0),
            connected: BTreeSet::new(),
            assignments: BTreeMap::new(),
            slots,
            submitted: BTreeSet::new(),
            reports: BTreeMap::new(),
            heartbeat_sequence: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect(i) => {
                self.scheduler.handle_agent_connected(agent_report(i), self.now);
                self.connected.insert(i);
            }
            Op::Disconnect(i) => {
                let outcome = self.scheduler.handle_agent_disconnected(&agent_id(i), self.now);
                assert_eq!(outcome == EventOutcome::Applied, self.connected.remove(&i));
                self.assignments.retain(|_, e| *e != Executor::Agent(agent_id(i)));
            }
            Op::Heartbeat(i) => {
                self.heartbeat_sequence += 1;
                let update = LoadUpdate {
                    sequence: self.heartbeat_sequence,
                    running_jobs: 0,
                    memory_available_bytes: 1 << 30,
                    load: LoadAverage { one: (self.heartbeat_sequence % 5) as f64, five: 0.0, fifteen: 0.0 },
                    disk_free_bytes: 1 << 30,
                };
                let outcome = self.scheduler.handle_load_update(&agent_id(i), &update, self.now);
                assert_eq!(outcome == EventOutcome::Applied, self.connected.contains(&i));
            }
            Op::Submit { target, deadline_secs } => {
                let job = self.scheduler.handle_job_submitted(
                    request_within(TARGETS[target], Duration::from_secs(deadline_secs)),
                    self.now,
                );
                assert!(self.submitted.insert(job), "job ids are unique");
            }
            Op::Answer { n, reply } => {
                if self.assignments.is_empty() {
                    return;
                }
                let (job, executor) = self.assignments.iter().nth(n % self.assignments.len()).unwrap();
                let (job, executor) = (*job, executor.clone());
                self.reply(&executor, job, reply);
            }
            Op::Stray { agent: i, job, reply } => self.reply(&agent(&agent_id(i).0), JobId(job), reply),
            Op::Advance { millis } => {
                self.now = self.now + Duration::from_millis(millis);
                self.scheduler.handle_timeout(self.now);
            }
        }
        self.drain();
        self.check();
        if let Op::Advance { .. } = op
            && let Some(next) = self.scheduler.poll_timeout()
        {
            assert!(next > self.now, "after handle_timeout({}) the next timeout {next} is in the future", self.now);
        }
    }

    /// Feeds a reply; the scheduler must apply it exactly when it comes from the job's current executor.
    fn reply(&mut self, executor: &Executor, job: JobId, reply: Reply) {
        let current = self.assignments.get(&job) == Some(executor);
        let now = self.now;
        let s = &mut self.scheduler;
        let outcome = match reply {
            Reply::Accept => s.handle_job_accepted(executor, job, now),
            Reply::Progress => s.handle_job_progress(executor, job, now),
            Reply::Reject => s.handle_job_rejected(executor, job, &RejectReason::ShuttingDown, now),
            Reply::Success => s.handle_job_finished(executor, job, success(), now),
            Reply::CompileFailed => {
                s.handle_job_finished(executor, job, BuildOutcome::CompileFailed { diagnostics: "e".into() }, now)
            }
            Reply::InfraRetryable => s.handle_job_finished(
                executor,
                job,
                BuildOutcome::InfrastructureFailure { reason: "flaky".into(), retryable: true },
                now,
            ),
            Reply::InfraFatal => s.handle_job_finished(
                executor,
                job,
                BuildOutcome::InfrastructureFailure { reason: "broken".into(), retryable: false },
                now,
            ),
            Reply::Cancelled => s.handle_job_finished(executor, job, BuildOutcome::Cancelled, now),
        };
        assert_eq!(outcome == EventOutcome::Applied, current, "{reply:?} from {executor} about {job}");
        let ends_dispatch = !matches!(reply, Reply::Accept | Reply::Progress);
        if current && ends_dispatch {
            self.assignments.remove(&job);
        }
    }

    fn drain(&mut self) {
        while let Some(action) = self.scheduler.poll_action() {
            match action {
                Action::Dispatch(d) => {
                    assert!(self.submitted.contains(&d.job));
                    assert!(!self.reports.contains_key(&d.job), "{} dispatched after its report", d.job);
                    assert!(
                        !self.assignments.contains_key(&d.job),
                        "{} dispatched to {} while still at {:?}",
                        d.job,
                        d.executor,
                        self.assignments.get(&d.job)
                    );
                    if let Executor::Agent(id) = &d.executor {
                        assert!(self.connected.iter().any(|i| agent_id(*i) == *id), "dispatch to absent {id}");
                    }
                    let held = self.assignments.values().filter(|e| **e == d.executor).count();
                    assert!(held < self.slots[&d.executor] as usize, "{} over its slots", d.executor);
                    assert_eq!(d.decision.chosen.as_ref(), Some(&d.executor));
                    self.assignments.insert(d.job, d.executor);
                }
                Action::Cancel(c) => match c.reason {
                    CancelReason::NotAssigned => assert_ne!(self.assignments.get(&c.job), Some(&c.executor)),
                    CancelReason::DeadlineExpired | CancelReason::OfferUnanswered => {
                        assert_eq!(self.assignments.remove(&c.job), Some(c.executor));
                    }
                },
                Action::Report(r) => {
                    assert!(self.submitted.contains(&r.job));
                    assert!(!self.assignments.contains_key(&r.job), "{} reported while still dispatched", r.job);
                    *self.reports.entry(r.job).or_default() += 1;
                    assert_eq!(self.reports[&r.job], 1, "{} reported twice", r.job);
                }
                Action::AgentLost(loss) => {
                    let index = (0..AGENTS).find(|i| agent_id(*i) == loss.agent).unwrap();
                    assert!(self.connected.remove(&index), "{} lost while not connected", loss.agent);
                    let executor = Executor::Agent(loss.agent.clone());
                    let held: Vec<JobId> =
                        self.assignments.iter().filter(|(_, e)| **e == executor).map(|(j, _)| *j).collect();
                    assert_eq!(held, loss.jobs);
                    self.assignments.retain(|_, e| *e != executor);
                }
            }
        }
    }

    /// The scheduler's own books agree with the outside view.
    fn check(&self) {
        for (executor, slots) in &self.slots {
            let ours: Vec<JobId> = self.assignments.iter().filter(|(_, e)| *e == executor).map(|(j, _)| *j).collect();
            assert_eq!(self.scheduler.assigned_to(executor), ours, "jobs held by {executor}");
            assert!(ours.len() <= *slots as usize);
        }
        for (job, executor) in &self.assignments {
            let state = self.scheduler.job_state(*job).expect("an assigned job is unfinished");
            assert_eq!(state.executor(), Some(executor));
        }
        let unfinished = self.submitted.len() - self.reports.len();
        assert_eq!(self.scheduler.unfinished_jobs(), unfinished);
        if unfinished > 0 {
            assert!(self.scheduler.poll_timeout().is_some(), "unfinished jobs always have a deadline");
        }
    }

    /// Runs time forward past every deadline: every job must then be reported exactly once.
    fn finish(&mut self) {
        while let Some(next) = self.scheduler.poll_timeout() {
            self.now = next;
            self.scheduler.handle_timeout(next);
            self.drain();
            self.check();
            if self.scheduler.unfinished_jobs() == 0 {
                break;
            }
        }
        assert_eq!(self.scheduler.unfinished_jobs(), 0);
        for job in &self.submitted {
            assert_eq!(self.reports.get(job), Some(&1), "{job} reported exactly once");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
        }
        harness.finish();
    }
}

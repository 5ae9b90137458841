//! The scheduling state machine, [`Scheduler`]: events in with `handle_*`, actions out with `poll_*`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::ops::Bound;
use std::time::Duration;

use rustle_protocol::{AgentId, BuildOutcome, CapabilityReport, JobId, LoadUpdate, RejectReason};
use rustle_targets::{BuildRequest, TemplateId};
use serde::Serialize;

use crate::actions::{Action, AgentLoss, Cancel, CancelReason, Dispatch, EventOutcome, JobReport, JobResult};
use crate::agents::{AgentRecord, AgentState, AgentStatus};
use crate::config::{ConfigError, SchedulerConfig};
use crate::executor::{Executor, FallbackId};
use crate::index::{Bits, FleetIndex, position_of};
use crate::placement::{
    self, Contenders, Decision, Exclusion, FallbackRecord, Fleet, MeasuredSpeed, PlacementRequest, SpeedHistory,
    choose, excluded_positions, pick, record,
};
use crate::queue::{Eligible, Queue};
use crate::time::Timestamp;

/// Where an unfinished job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free slot on an executor that can build it.
    Queued,
    /// Offered to an agent that has not accepted yet.
    Offered {
        /// The agent.
        executor: Executor,
        /// When it was offered.
        since: Timestamp,
    },
    /// Accepted by an agent, or started on a fallback.
    Running {
        /// Where it runs.
        executor: Executor,
        /// When it was accepted or started.
        since: Timestamp,
    },
}

impl JobState {
    /// The executor holding the job, if one does.
    pub fn executor(&self) -> Option<&Executor> {
        match self {
            Self::Queued => None,
            Self::Offered { executor, .. } | Self::Running { executor, .. } => Some(executor),
        }
    }
}

/// A build to schedule, with what its submitter knows about the fallbacks.
///
/// A fallback is declared with the targets it builds
/// ([`FallbackExecutor::triples`](crate::FallbackExecutor)); the submitter
/// of a job may know better for this one job (the coordinator planned the
/// build on its own toolchains, with this job's settings), and says so in
/// `fallbacks`: `true` lets the fallback take the job, `false` keeps it
/// away, whatever its declared targets say. A plain [`BuildRequest`]
/// leaves every fallback to its declared targets.
#[derive(Debug, Clone)]
pub struct JobSubmission {
    /// The build.
    pub request: BuildRequest,
    /// Fallbacks that can (`true`) or cannot (`false`) build this job.
    pub fallbacks: BTreeMap<FallbackId, bool>,
}

impl From<BuildRequest> for JobSubmission {
    fn from(request: BuildRequest) -> Self {
        Self { request, fallbacks: BTreeMap::new() }
    }
}

/// What the scheduler keeps about an unfinished job.
#[derive(Debug, Clone)]
struct Job {
    /// The build, whole: the dispatch hands it on as it came.
    request: BuildRequest,
    /// What the submitter knows about the fallbacks (see [`JobSubmission`]).
    fallbacks: BTreeMap<FallbackId, bool>,
    submitted_at: Timestamp,
    deadline_at: Timestamp,
    state: JobState,
    dispatches: u32,
    failures: u32,
    exclusions: BTreeMap<Executor, Exclusion>,
    last_failure: Option<(Executor, String)>,
    decisions: Vec<Decision>,
    /// Its class in the queue, while it is queued.
    class: Option<usize>,
}

impl Job {
    /// What placement is asked about this job, known as `id`, at `now`.
    fn placement_request(&self, id: JobId, name: String, now: Timestamp) -> PlacementRequest<'_> {
        PlacementRequest {
            job: id,
            name,
            attempt: self.dispatches + 1,
            exclusions: &self.exclusions,
            fallbacks: &self.fallbacks,
            now,
        }
    }

    fn is_held_by(&self, executor: &Executor) -> bool {
        self.state.executor() == Some(executor)
    }
}

/// The pure scheduling core: which executor builds which job, retries,
/// deadlines and agent liveness. It performs no I/O and reads no clock; every
/// method that depends on time takes `now`.
///
/// Methods, grouped as in quinn-proto's `Connection`:
/// - getters: [`agents`](Self::agents), [`job_state`](Self::job_state),
///   [`decisions`](Self::decisions), [`assigned_to`](Self::assigned_to), …
/// - `handle_*` for incoming events: agents connecting, reporting load and
///   disconnecting; jobs being submitted, accepted, rejected, progressing and
///   finishing; and [`handle_timeout`](Self::handle_timeout);
/// - `poll_*` for outgoing work: [`poll_action`](Self::poll_action) for
///   [`Action`]s, [`poll_timeout`](Self::poll_timeout) for when to call
///   `handle_timeout` next.
///
/// Placement runs inside the `handle_*` methods, so after any of them the
/// state is settled and the resulting actions are waiting in order.
///
/// # Guarantees
/// - Every submitted job gets exactly one [`Action::Report`].
/// - A job is dispatched to at most one executor at a time, and never again
///   to an agent that rejected it, was lost holding it, or left its offer
///   unanswered. Results, acceptances and progress from anywhere but the
///   job's current executor are ignored ([`EventOutcome::Ignored`]);
///   acceptances and progress are answered with a [`Cancel`].
/// - An executor never holds more dispatched, unfinished jobs than its slots.
/// - A compile failure is reported, never re-dispatched.
///
/// # What the caller must do
/// - Feed `BuildOutcome::Success` only once the artifact arrived and matched
///   its checksum; a failed transfer is a retryable infrastructure failure.
/// - Call [`handle_agent_disconnected`](Self::handle_agent_disconnected)
///   before re-registering an agent whose connection was replaced, and stop
///   feeding events from a connection once it is closed.
/// - Close the connection of an agent named by [`Action::AgentLost`].
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: SchedulerConfig,
    agents: BTreeMap<AgentId, AgentRecord>,
    fallbacks: Vec<FallbackRecord>,
    speeds: SpeedHistory,
    /// Boxed: a job is large, and the map moves its values around.
    jobs: BTreeMap<JobId, Box<Job>>,
    next_job: u64,
    actions: VecDeque<Action>,
    /// Derived views of the fleet that keep placement to one pass (see [`FleetIndex`]).
    index: FleetIndex,
    /// The queued jobs, by class (see [`Queue`]).
    queue: Queue,
}

impl Scheduler {
    /// A scheduler with no agents and no jobs, after checking `config`.
    pub fn new(config: SchedulerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let load_resolution = config.load_resolution;
        let fallbacks = config
            .fallbacks
            .iter()
            .map(|fallback| FallbackRecord { config: fallback.clone(), assigned: BTreeSet::new() })
            .collect();
        Ok(Self {
            config,
            agents: BTreeMap::new(),
            fallbacks,
            speeds: SpeedHistory::default(),
            jobs: BTreeMap::new(),
            next_job: 1,
            actions: VecDeque::new(),
            index: FleetIndex::new(load_resolution),
            queue: Queue::default(),
        })
    }

    // ---- getters -------------------------------------------------------

    /// The configuration in force.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Every agent ever registered, in name order, with its state and jobs.
    pub fn agents(&self) -> Vec<AgentStatus> {
        self.agents.values().map(AgentRecord::status).collect()
    }

    /// One agent's status.
    pub fn agent(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.agents.get(agent).map(AgentRecord::status)
    }

    /// Where an unfinished job is; `None` once it has been reported (or was never submitted).
    pub fn job_state(&self, job: JobId) -> Option<&JobState> {
        self.jobs.get(&job).map(|j| &j.state)
    }

    /// The placement decisions made so far for an unfinished job.
    pub fn decisions(&self, job: JobId) -> Option<&[Decision]> {
        self.jobs.get(&job).map(|j| j.decisions.as_slice())
    }

    /// Jobs submitted and not yet reported.
    pub fn unfinished_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Jobs dispatched to `executor` and not finished, in id order.
    pub fn assigned_to(&self, executor: &Executor) -> Vec<JobId> {
        match executor {
            Executor::Agent(agent) => {
                self.agents.get(agent).map(|a| a.assigned.iter().copied().collect()).unwrap_or_default()
            }
            Executor::Fallback(id) => self
                .fallbacks
                .iter()
                .find(|f| &f.config.id == id)
                .map(|f| f.assigned.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// The moving average of successful build durations of `template`'s
    /// target named `target` (with its glibc floor, when it has one) on
    /// `executor`.
    pub fn measured_build_time(&self, executor: &Executor, template: &TemplateId, target: &str) -> Option<Duration> {
        self.speeds.average_ms(executor, &template.0, target).map(Duration::from_millis)
    }

    /// Every remembered build speed, to keep across runs (restore them with
    /// [`handle_speeds_restored`](Self::handle_speeds_restored)).
    pub fn measured_speeds(&self) -> Vec<MeasuredSpeed> {
        self.speeds.export()
    }

    // ---- incoming events -----------------------------------------------

    /// Speeds measured in earlier runs (from [`measured_speeds`](Self::measured_speeds));
    /// placement uses them from now on, and new builds refine them.
    pub fn handle_speeds_restored(&mut self, speeds: Vec<MeasuredSpeed>) {
        self.speeds.restore(speeds);
        self.index.speeds_restored();
    }

    /// An agent connected and reported its capabilities, or a connected agent
    /// sent a new report. A new registration replaces a lost or disconnected
    /// record of the same name; a refresh keeps the agent's jobs.
    pub fn handle_agent_connected(&mut self, report: CapabilityReport, now: Timestamp) {
        match self.agents.get_mut(&report.agent_id) {
            Some(agent) if agent.is_connected() => {
                agent.load = report.load;
                agent.report = report;
                agent.last_heard = agent.last_heard.max(now);
                self.index.invalidate();
            }
            Some(agent) => {
                let mut record = AgentRecord::new(report, now);
                record.position = agent.position;
                *agent = record;
                self.index.invalidate();
            }
            None => {
                self.agents.insert(report.agent_id.clone(), AgentRecord::new(report, now));
                self.index.roster_changed();
            }
        }
        self.schedule(now);
    }

    /// A load update (the agent's heartbeat) arrived.
    pub fn handle_load_update(&mut self, agent: &AgentId, update: &LoadUpdate, now: Timestamp) -> EventOutcome {
        match self.agents.get_mut(agent) {
            Some(record) if record.is_connected() => {
                record.apply_load(update, now);
                self.index.agent_changed(record);
                EventOutcome::Applied
            }
            _ => EventOutcome::Ignored,
        }
    }

    /// An agent said it is shutting down: it gets no new jobs, and the jobs
    /// it runs are left to finish there (their results are taken as usual).
    pub fn handle_agent_draining(&mut self, agent: &AgentId, now: Timestamp) -> EventOutcome {
        match self.agents.get_mut(agent) {
            Some(record) if record.is_connected() => {
                record.draining = true;
                record.last_heard = record.last_heard.max(now);
                self.index.invalidate();
                // Jobs waiting for its slots may now have nowhere else to go.
                self.schedule(now);
                EventOutcome::Applied
            }
            _ => EventOutcome::Ignored,
        }
    }

    /// An agent's connection closed. Its jobs are placed elsewhere; it remains
    /// usable for them as a last resort once it reconnects.
    pub fn handle_agent_disconnected(&mut self, agent: &AgentId, now: Timestamp) -> EventOutcome {
        let Some(record) = self.agents.get_mut(agent).filter(|a| a.is_connected()) else {
            return EventOutcome::Ignored;
        };
        record.state = AgentState::Disconnected { since: now };
        let held = std::mem::take(&mut record.assigned);
        self.index.invalidate();
        let executor = Executor::Agent(agent.clone());
        for job in held {
            let reason = "the connection closed while the agent held the job".to_owned();
            self.fail_attempt(job, &executor, Exclusion::Failed { reason: reason.clone() }, reason, now);
        }
        self.schedule(now);
        EventOutcome::Applied
    }

    /// A build was submitted. Returns its id; the job is placed at once if an
    /// executor has a free slot.
    pub fn handle_job_submitted(&mut self, request: BuildRequest, now: Timestamp) -> JobId {
        let ids = self.handle_jobs_submitted(vec![request], now);
        ids[0]
    }

    /// Builds submitted together (one call of the façade). Returns their ids
    /// in order; they are placed as one batch, the scarcest first (see
    /// the crate docs), so that a target only one agent can
    /// build does not find that agent taken by a target others could build.
    ///
    /// Each submission is a [`BuildRequest`], or a [`JobSubmission`] that
    /// also says which fallbacks can build it.
    pub fn handle_jobs_submitted(&mut self, submissions: Vec<impl Into<JobSubmission>>, now: Timestamp) -> Vec<JobId> {
        let mut ids = Vec::with_capacity(submissions.len());
        for submission in submissions {
            let JobSubmission { request, fallbacks } = submission.into();
            let id = JobId(self.next_job);
            self.next_job += 1;
            let deadline_at = now + request.deadline;
            self.jobs.insert(
                id,
                Box::new(Job {
                    request,
                    fallbacks,
                    submitted_at: now,
                    deadline_at,
                    state: JobState::Queued,
                    dispatches: 0,
                    failures: 0,
                    exclusions: BTreeMap::new(),
                    last_failure: None,
                    decisions: Vec::new(),
                    class: None,
                }),
            );
            self.enqueue(id);
            ids.push(id);
        }
        self.schedule(now);
        ids
    }

    /// `executor` accepted the job.
    pub fn handle_job_accepted(&mut self, executor: &Executor, job: JobId, now: Timestamp) -> EventOutcome {
        self.touch(executor, now);
        match self.jobs.get_mut(&job).filter(|j| j.is_held_by(executor)) {
            Some(j) => {
                if let JobState::Offered { .. } = j.state
                    && let JobState::Offered { executor, .. } = std::mem::replace(&mut j.state, JobState::Queued)
                {
                    j.state = JobState::Running { executor, since: now };
                }
                EventOutcome::Applied
            }
            None => self.answer_stranger(executor, job),
        }
    }

    /// `executor` reported progress on the job. Progress before an acceptance counts as one.
    pub fn handle_job_progress(&mut self, executor: &Executor, job: JobId, now: Timestamp) -> EventOutcome {
        self.handle_job_accepted(executor, job, now)
    }

    /// `executor` turned the job down; it is placed elsewhere and never offered there again.
    pub fn handle_job_rejected(
        &mut self,
        executor: &Executor,
        job: JobId,
        reason: &RejectReason,
        now: Timestamp,
    ) -> EventOutcome {
        self.touch(executor, now);
        let Some(j) = self.jobs.get_mut(&job).filter(|j| j.is_held_by(executor)) else {
            return EventOutcome::Ignored;
        };
        j.state = JobState::Queued;
        j.exclusions.insert(executor.clone(), Exclusion::Rejected { reason: reason.to_string() });
        self.enqueue(job);
        self.release(job, executor);
        self.schedule(now);
        EventOutcome::Applied
    }

    /// `executor` reported how the job ended. A success or a compile failure
    /// is final; a retryable infrastructure failure (or a cancellation the
    /// scheduler did not ask for) is retried elsewhere while attempts remain.
    pub fn handle_job_finished(
        &mut self,
        executor: &Executor,
        job: JobId,
        outcome: BuildOutcome,
        now: Timestamp,
    ) -> EventOutcome {
        let position = self.touch(executor, now);
        let Some(j) = self.jobs.get(&job).filter(|j| j.is_held_by(executor)) else {
            return EventOutcome::Ignored;
        };
        match outcome {
            BuildOutcome::Success { checksum, size, compile_time_ms, rustc_version, cargo_version, .. } => {
                if let JobState::Offered { since, .. } | JobState::Running { since, .. } = j.state {
                    let took = now.saturating_duration_since(since);
                    let (template, target) = (&j.request.template.0, j.request.target_name());
                    let smoothing = self.config.speed_smoothing;
                    if let Some(average_ms) = self.speeds.record(executor, template, &target, took, smoothing) {
                        let position = position.or_else(|| position_of(executor, &self.agents, &self.fallbacks));
                        self.index.speed_recorded(template, &target, position, average_ms);
                    }
                }
                let result = JobResult::Succeeded {
                    executor: executor.clone(),
                    checksum,
                    size,
                    compile_time_ms,
                    rustc_version,
                    cargo_version,
                };
                self.finish(job, result, now);
            }
            BuildOutcome::CompileFailed { diagnostics } => {
                self.finish(job, JobResult::CompileFailed { executor: executor.clone(), diagnostics }, now);
            }
            BuildOutcome::InfrastructureFailure { reason, retryable: true } => {
                let exclusion = Exclusion::Failed { reason: reason.clone() };
                self.fail_attempt(job, executor, exclusion, reason, now);
            }
            BuildOutcome::InfrastructureFailure { reason, retryable: false } => {
                let failures = j.failures + 1;
                let result = JobResult::InfrastructureFailed { executor: executor.clone(), reason, failures };
                self.finish(job, result, now);
            }
            BuildOutcome::Cancelled => {
                let reason = "the executor cancelled the job on its own".to_owned();
                let exclusion = Exclusion::Failed { reason: reason.clone() };
                self.fail_attempt(job, executor, exclusion, reason, now);
            }
        }
        self.schedule(now);
        EventOutcome::Applied
    }

    /// Time passed: cancels and reports jobs past their deadline, declares
    /// silent agents lost and re-places their jobs, withdraws unanswered
    /// offers. Call it when [`poll_timeout`](Self::poll_timeout) is reached.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let expired: Vec<JobId> = self.jobs.iter().filter(|(_, j)| j.deadline_at <= now).map(|(id, _)| *id).collect();
        for job in expired {
            let Some(j) = self.jobs.get(&job) else { continue };
            let executor = j.state.executor().cloned();
            let deadline = j.deadline_at;
            if let Some(executor) = &executor {
                self.actions.push_back(Action::Cancel(Cancel {
                    job,
                    executor: executor.clone(),
                    reason: CancelReason::DeadlineExpired,
                }));
            }
            self.finish(job, JobResult::TimedOut { executor, deadline }, now);
        }

        let silent: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| a.is_connected() && a.last_heard + self.config.heartbeat_timeout <= now)
            .map(|a| a.report.agent_id.clone())
            .collect();
        for agent in silent {
            self.lose_agent(&agent, now);
        }

        let unanswered: Vec<(JobId, Executor)> = self
            .jobs
            .iter()
            .filter_map(|(id, j)| match &j.state {
                JobState::Offered { executor, since } if *since + self.config.offer_timeout <= now => {
                    Some((*id, executor.clone()))
                }
                _ => None,
            })
            .collect();
        for (job, executor) in unanswered {
            self.actions.push_back(Action::Cancel(Cancel {
                job,
                executor: executor.clone(),
                reason: CancelReason::OfferUnanswered,
            }));
            if let Some(j) = self.jobs.get_mut(&job) {
                j.state = JobState::Queued;
                j.exclusions.insert(executor.clone(), Exclusion::OfferUnanswered);
                self.enqueue(job);
            }
            self.release(job, &executor);
        }

        self.schedule(now);
    }

    // ---- outgoing work -------------------------------------------------

    /// The next thing to do, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called:
    /// the earliest job deadline, offer timeout or heartbeat bound. `None`
    /// when nothing is waiting on time.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let deadlines = self.jobs.values().map(|j| j.deadline_at);
        let offers = self.jobs.values().filter_map(|j| match j.state {
            JobState::Offered { since, .. } => Some(since + self.config.offer_timeout),
            _ => None,
        });
        let heartbeats =
            self.agents.values().filter(|a| a.is_connected()).map(|a| a.last_heard + self.config.heartbeat_timeout);
        deadlines.chain(offers).chain(heartbeats).min()
    }

    // ---- internals -----------------------------------------------------

    /// Any message from a connected agent shows it is alive. Returns the
    /// agent's position, for the fleet index.
    fn touch(&mut self, executor: &Executor, now: Timestamp) -> Option<usize> {
        let agent = executor.agent().and_then(|id| self.agents.get_mut(id))?;
        if agent.is_connected() {
            agent.last_heard = agent.last_heard.max(now);
        }
        Some(agent.position)
    }

    /// An acceptance or progress report about a job the sender does not hold:
    /// tell it to stop.
    fn answer_stranger(&mut self, executor: &Executor, job: JobId) -> EventOutcome {
        self.actions.push_back(Action::Cancel(Cancel {
            job,
            executor: executor.clone(),
            reason: CancelReason::NotAssigned,
        }));
        EventOutcome::Ignored
    }

    /// Changes the jobs dispatched to `executor` with `change`, and tells
    /// the fleet index.
    fn change_assigned(&mut self, executor: &Executor, change: impl FnOnce(&mut BTreeSet<JobId>)) {
        match executor {
            Executor::Agent(agent) => {
                if let Some(record) = self.agents.get_mut(agent) {
                    change(&mut record.assigned);
                    self.index.running_changed(record);
                }
            }
            Executor::Fallback(id) => {
                if let Some(rank) = self.fallbacks.iter().position(|f| &f.config.id == id)
                    && let Some(fallback) = self.fallbacks.get_mut(rank)
                {
                    change(&mut fallback.assigned);
                    let free = fallback.running() < fallback.config.slots;
                    self.index.fallback_changed(self.agents.len() + rank, free);
                }
            }
        }
    }

    /// Frees the job's slot on `executor`.
    fn release(&mut self, job: JobId, executor: &Executor) {
        self.change_assigned(executor, |assigned| {
            assigned.remove(&job);
        });
    }

    /// Puts a queued job in its queue class (again, after its exclusions changed).
    fn enqueue(&mut self, job: JobId) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        if let Some(class) = j.class.take() {
            self.queue.remove(job, class, &j.request.target);
        }
        j.class = Some(self.queue.insert(job, &j.request.target, &j.fallbacks, !j.exclusions.is_empty()));
    }

    /// Takes a job that is no longer queued out of the queue.
    fn dequeue(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job)
            && let Some(class) = j.class.take()
        {
            self.queue.remove(job, class, &j.request.target);
        }
    }

    /// Ends the job: frees its slot and queues its report.
    fn finish(&mut self, job: JobId, result: JobResult, now: Timestamp) {
        self.dequeue(job);
        let Some(j) = self.jobs.remove(&job) else { return };
        if let Some(executor) = j.state.executor() {
            self.release(job, executor);
        }
        self.actions.push_back(Action::Report(JobReport {
            job,
            target: j.request.target.triple,
            result,
            submitted_at: j.submitted_at,
            finished_at: now,
            decisions: j.decisions,
        }));
    }

    /// One dispatch of the job ended without a verdict: exclude the executor
    /// as told, and queue the job again unless its attempts are used up.
    fn fail_attempt(&mut self, job: JobId, executor: &Executor, exclusion: Exclusion, reason: String, now: Timestamp) {
        self.release(job, executor);
        let Some(j) = self.jobs.get_mut(&job) else { return };
        j.state = JobState::Queued;
        j.failures += 1;
        j.exclusions.insert(executor.clone(), exclusion);
        j.last_failure = Some((executor.clone(), reason.clone()));
        self.enqueue(job);
        let Some(j) = self.jobs.get(&job) else { return };
        if j.failures >= self.config.max_attempts {
            let failures = j.failures;
            self.finish(job, JobResult::InfrastructureFailed { executor: executor.clone(), reason, failures }, now);
        }
    }

    fn lose_agent(&mut self, agent: &AgentId, now: Timestamp) {
        let Some(record) = self.agents.get_mut(agent) else { return };
        record.state = AgentState::Lost { since: now };
        let last_heard = record.last_heard;
        let held = std::mem::take(&mut record.assigned);
        self.index.invalidate();
        self.actions.push_back(Action::AgentLost(AgentLoss {
            agent: agent.clone(),
            last_heard,
            jobs: held.iter().copied().collect(),
        }));
        let executor = Executor::Agent(agent.clone());
        for job in held {
            let reason = format!("lost: not heard from since {last_heard}");
            self.fail_attempt(job, &executor, Exclusion::Lost, reason, now);
        }
    }

    /// Places every queued job that has a free executor, the scarcest first
    /// (fewest executors that could ever take it), oldest first among equals;
    /// reports the ones nothing can build. Jobs past their deadline are left
    /// for [`handle_timeout`](Self::handle_timeout).
    ///
    /// In that order, a job is placed exactly when one of the executors that
    /// could take it has a free slot. Jobs of one queue class share those
    /// executors, and a pass only fills slots, so once a job of a class
    /// waits, the rest of its class waits too: the pass walks the classes in
    /// step (a heap of each one's next job) and drops a class at its first
    /// job that waits, or before it when none of its executors has a free
    /// slot. What it decides is what deciding every queued job in turn
    /// would.
    fn schedule(&mut self, now: Timestamp) {
        if self.queue.is_empty() {
            return;
        }
        self.index.refresh(&mut self.agents, &self.fallbacks);
        let mut next: BinaryHeap<Reverse<(usize, JobId, usize)>> = BinaryHeap::new();
        // The best candidates, per queue class and template, for this pass.
        let mut contenders: Vec<(usize, String, Contenders)> = Vec::new();
        for class in self.queue.class_ids() {
            let scarcity = self.eligible_set(class);
            if let Some(job) = self.waiting_job(class, scarcity, None, now) {
                next.push(Reverse((scarcity, job, class)));
            }
        }
        while let Some(Reverse((scarcity, job, class))) = next.pop() {
            if !self.class_may_place(class, scarcity) {
                continue;
            }
            let Some(j) = self.jobs.get(&job) else { continue };
            let Some(eligible) = self.queue.class(class).and_then(|c| c.eligible.as_ref()) else { continue };
            let name = j.request.target_name();
            let speeds = self.index.speeds(&j.request.template.0, &name, &self.speeds, &self.agents, &self.fallbacks);
            let request = j.placement_request(job, name, now);
            let fleet = Fleet {
                agents: &self.agents,
                fallbacks: &self.fallbacks,
                roster: self.index.roster(),
                views: self.index.agents(),
                running: self.index.running(),
                free: self.index.free(),
                eligible: &eligible.positions,
                fit: &eligible.fit,
                speeds: &speeds,
            };
            let chosen = if j.exclusions.is_empty() {
                let template = &j.request.template.0;
                let at = match contenders.iter().position(|(c, t, _)| *c == class && t == template) {
                    Some(at) => at,
                    None => {
                        contenders.push((class, template.clone(), placement::contenders(&fleet)));
                        contenders.len() - 1
                    }
                };
                contenders.get_mut(at).and_then(|(_, _, heap)| pick(heap, &fleet))
            } else {
                choose(&request, &fleet)
            };
            let placement = record(request, &fleet, chosen);
            match placement.decision.chosen.clone() {
                Some(executor) => self.dispatch(job, executor, placement.decision, now),
                None if !placement.eligible => {
                    let triple = &placement.decision.target;
                    let reason = match &j.last_failure {
                        Some((failed, last)) => format!(
                            "no other agent or fallback can build {triple} after the last failure ({failed}: {last})"
                        ),
                        None => format!("no connected agent or configured fallback can build {triple}"),
                    };
                    if let Some(j) = self.jobs.get_mut(&job) {
                        j.decisions.push(placement.decision);
                    }
                    self.finish(job, JobResult::NoExecutor { reason }, now);
                }
                // It waits for a slot, and so does the rest of its class.
                None => continue,
            }
            if let Some(job) = self.waiting_job(class, scarcity, Some(job), now) {
                next.push(Reverse((scarcity, job, class)));
            }
        }
    }

    /// The size of the class's eligible set (its jobs' scarcity), working it
    /// out if the fleet changed since: the executors that build its target,
    /// are available, and have not excluded its jobs for good.
    fn eligible_set(&mut self, class: usize) -> usize {
        let generation = self.index.generation();
        let Some(entry) = self.queue.class(class) else { return 0 };
        if let Some(eligible) = &entry.eligible
            && eligible.generation == generation
        {
            return eligible.count;
        }
        let Some(j) = entry.jobs.first().and_then(|job| self.jobs.get(job)) else { return 0 };
        let fit = self.index.fit(&j.request.target, &self.agents);
        let name = j.request.target_name();
        let mut eligible = Bits::new(self.index.roster().len());
        for (position, agent) in self.agents.values().enumerate() {
            let builds = fit.toolchain.get(position).copied().flatten().is_some();
            eligible.set(position, builds && agent.is_connected() && !agent.draining);
        }
        for (rank, fallback) in self.fallbacks.iter().enumerate() {
            let builds = match j.fallbacks.get(&fallback.config.id) {
                Some(said) => *said,
                None => fallback.config.triples.contains(&name),
            };
            eligible.set(self.agents.len() + rank, builds);
        }
        for (position, exclusion) in excluded_positions(&j.exclusions, &self.agents, &self.fallbacks) {
            if !exclusion.is_soft() {
                eligible.set(position, false);
            }
        }
        let count = eligible.count();
        if let Some(entry) = self.queue.class_mut(class) {
            entry.eligible = Some(Eligible { generation, positions: eligible, count, fit });
        }
        count
    }

    /// Whether a job of the class may be placed now: one of its eligible
    /// executors has a free slot, or it has none at all (the job is then
    /// reported).
    fn class_may_place(&self, class: usize, scarcity: usize) -> bool {
        if scarcity == 0 {
            return true;
        }
        let Some(eligible) = self.queue.class(class).and_then(|c| c.eligible.as_ref()) else {
            return false;
        };
        eligible.positions.intersects(self.index.free())
    }

    /// The class's oldest queued job after `after` that is still within its
    /// deadline, if the class may place one now.
    fn waiting_job(&self, class: usize, scarcity: usize, after: Option<JobId>, now: Timestamp) -> Option<JobId> {
        if !self.class_may_place(class, scarcity) {
            return None;
        }
        let jobs = &self.queue.class(class)?.jobs;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        jobs.range((from, Bound::Unbounded))
            .copied()
            .find(|job| self.jobs.get(job).is_some_and(|j| j.deadline_at > now))
    }

    fn dispatch(&mut self, job: JobId, executor: Executor, decision: Decision, now: Timestamp) {
        self.dequeue(job);
        self.change_assigned(&executor, |assigned| {
            assigned.insert(job);
        });
        let Some(j) = self.jobs.get_mut(&job) else { return };
        j.dispatches += 1;
        j.state = match executor {
            Executor::Agent(_) => JobState::Offered { executor: executor.clone(), since: now },
            Executor::Fallback(_) => JobState::Running { executor: executor.clone(), since: now },
        };
        j.decisions.push(decision.clone());
        self.actions.push_back(Action::Dispatch(Box::new(Dispatch {
            job,
            executor,
            request: j.request.clone(),
            toolchain: decision.toolchain.clone(),
            attempt: j.dispatches,
            deadline: j.deadline_at,
            decision,
        })));
    }
}

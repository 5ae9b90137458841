//! Where a job goes and why: scores every candidate executor and records the verdict on each in a [`Decision`].
//!
//! The order of preference is documented on the crate root.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustle_protocol::{AgentId, JobId};
use serde::{Deserialize, Serialize, Serializer};

use crate::agents::{AgentRecord, AgentState};
use crate::executor::{Executor, FallbackExecutor, FallbackId};
use crate::index::{AgentView, Bits, CHUNK, Snapshot, SpeedsByPosition, TargetFit, position_of};
use crate::time::Timestamp;

/// How well a kind of executor fits a target, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
pub enum Tier {
    /// An agent whose own platform is the target.
    Native,
    /// An agent that cross-builds the target.
    Cross,
    /// A link of the fallback chain; `rank` 0 is tried first.
    Fallback {
        /// Position in the chain.
        rank: u32,
    },
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native => f.write_str("native"),
            Self::Cross => f.write_str("cross"),
            Self::Fallback { rank } => write!(f, "fallback #{}", rank + 1),
        }
    }
}

/// What placement compares between candidates that can take a job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Kind of fit.
    pub tier: Tier,
    /// Jobs dispatched there and not finished: of two candidates that fit
    /// alike, the idle one finishes a new job first.
    pub running: u32,
    /// Slots not taken by jobs dispatched there.
    pub free_slots: u32,
    /// One-minute load per core (agents only).
    pub load_per_core: Option<f64>,
    /// Moving average of successful build durations of this target there, in milliseconds.
    pub measured_build_ms: Option<u64>,
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {} free slot(s)", self.tier, self.free_slots)?;
        if self.running > 0 {
            write!(f, ", {} running", self.running)?;
        }
        if let Some(load) = self.load_per_core {
            write!(f, ", load {load:.2}/core")?;
        }
        match self.measured_build_ms {
            Some(ms) => write!(f, ", builds it in ~{:.1} s", Duration::from_millis(ms).as_secs_f64()),
            None => f.write_str(", not measured yet"),
        }
    }
}

/// Why a job will not be sent to an executor again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "exclusion", rename_all = "snake_case")]
pub enum Exclusion {
    /// The executor rejected the job.
    Rejected {
        /// The executor's reason.
        reason: String,
    },
    /// The agent was declared lost while it held the job; whatever it still
    /// sends about the job is ignored.
    Lost,
    /// The agent neither accepted nor rejected the offer in time.
    OfferUnanswered,
    /// The job failed here for infrastructure reasons (or the connection
    /// dropped while it ran); the executor is used again only as a last resort.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Exclusion {
    /// Whether the executor may still be used as a last resort.
    pub(crate) fn is_soft(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected { reason } => write!(f, "rejected the job: {reason}"),
            Self::Lost => f.write_str("was lost while holding the job"),
            Self::OfferUnanswered => f.write_str("did not answer the offer in time"),
            Self::Failed { reason } => write!(f, "the job failed there before: {reason}"),
        }
    }
}

/// The verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The job goes here.
    Chosen,
    /// The job goes here although it failed here before: no other candidate had a free slot.
    ChosenAsLastResort {
        /// The earlier failure.
        reason: String,
    },
    /// Could take the job, but another candidate scored better.
    LowerScore,
    /// None of its toolchains builds the target.
    NotBuildable,
    /// The agent is shutting down and takes no new jobs.
    Draining,
    /// The agent is lost or disconnected.
    Unavailable {
        /// Its state.
        state: AgentState,
    },
    /// Excluded for this job.
    Excluded {
        /// Why.
        exclusion: Exclusion,
    },
    /// All its slots are taken.
    NoFreeSlot {
        /// Jobs dispatched there and not finished.
        running: u32,
        /// Its slots.
        slots: u32,
    },
    /// The job already failed here; avoided while others can take it.
    FailedHere {
        /// The earlier failure.
        reason: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chosen => f.write_str("chosen"),
            Self::ChosenAsLastResort { reason } => {
                write!(f, "chosen as the last resort (the job failed there before: {reason})")
            }
            Self::LowerScore => f.write_str("lower score"),
            Self::NotBuildable => f.write_str("cannot build the target: no toolchain for it"),
            Self::Draining => f.write_str("draining (shutting down)"),
            Self::Unavailable { state: AgentState::Lost { since } } => write!(f, "lost at {since}"),
            Self::Unavailable { state: AgentState::Disconnected { since } } => write!(f, "disconnected at {since}"),
            Self::Unavailable { state: AgentState::Connected } => f.write_str("unavailable"),
            Self::Excluded { exclusion } => write!(f, "excluded: {exclusion}"),
            Self::NoFreeSlot { running, slots } => write!(f, "no free slot ({running} of {slots} taken)"),
            Self::FailedHere { reason } => write!(f, "avoided: the job failed there before ({reason})"),
        }
    }
}

/// One candidate as placement saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateAssessment {
    /// The candidate.
    pub executor: Executor,
    /// Its score, when it can build the target and is available.
    pub score: Option<Score>,
    /// What placement made of it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A placement decision: which candidates were considered for a job, the
/// verdict on each, and the one chosen. Recorded for every dispatch, and when
/// a job turns out to have no executor at all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The job.
    pub job: JobId,
    /// Its target's full name (the triple, with its glibc floor when it has one).
    pub target: String,
    /// Which dispatch of the job this is, from 1.
    pub attempt: u32,
    /// When it was decided.
    pub at: Timestamp,
    /// Where the job goes; `None` when nothing can take it.
    pub chosen: Option<Executor>,
    /// The toolchain the chosen agent should use (agents only).
    pub toolchain: Option<String>,
    /// Every agent known to the scheduler, then the fallback chain in order.
    pub candidates: Candidates,
}

impl fmt::Display for Decision {
    /// Several lines: the choice, then one indented line per candidate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {} ({}), attempt {} at {}: ", self.job, self.target, self.attempt, self.at)?;
        match (&self.chosen, &self.toolchain) {
            (Some(executor), Some(toolchain)) => write!(f, "{executor} with toolchain {toolchain}")?,
            (Some(executor), None) => write!(f, "{executor}")?,
            (None, _) => f.write_str("no executor can build it")?,
        }
        for candidate in self.candidates.iter() {
            write!(f, "\n  {}: {}", candidate.executor, candidate.verdict)?;
            if let Some(score) = &candidate.score {
                write!(f, " [{score}]")?;
            }
        }
        Ok(())
    }
}

/// A remembered build speed: the moving average of successful builds of one
/// template's target on one executor (what the coordinator keeps across
/// runs, see [`Scheduler::measured_speeds`](crate::Scheduler::measured_speeds)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredSpeed {
    /// Where it was built.
    pub executor: Executor,
    /// The template's id.
    pub template: String,
    /// The target's full name.
    pub target: String,
    /// The average, in milliseconds.
    pub average_ms: f64,
}

/// Moving averages of successful build durations, per executor, template
/// and target (full name).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpeedHistory {
    /// By template, then target, then executor, so that a lookup borrows its key.
    averages_ms: BTreeMap<String, BTreeMap<String, BTreeMap<Executor, f64>>>,
}

impl SpeedHistory {
    /// Folds one build duration into the average with weight `smoothing`;
    /// returns the new average in whole milliseconds.
    pub(crate) fn record(
        &mut self,
        executor: &Executor,
        template: &str,
        target: &str,
        took: Duration,
        smoothing: f64,
    ) -> Option<u64> {
        let sample = took.as_secs_f64() * 1000.0;
        // Keys are copied only the first time they are seen.
        if !self.averages_ms.contains_key(template) {
            self.averages_ms.insert(template.to_owned(), BTreeMap::new());
        }
        let by_target = self.averages_ms.get_mut(template)?;
        if !by_target.contains_key(target) {
            by_target.insert(target.to_owned(), BTreeMap::new());
        }
        let by_executor = by_target.get_mut(target)?;
        let average = match by_executor.get_mut(executor) {
            Some(average) => {
                *average += smoothing * (sample - *average);
                *average
            }
            None => {
                by_executor.insert(executor.clone(), sample);
                sample
            }
        };
        // `as` saturates; averages are finite and non-negative.
        Some(average.round() as u64)
    }

    /// The average in whole milliseconds.
    pub(crate) fn average_ms(&self, executor: &Executor, template: &str, target: &str) -> Option<u64> {
        self.by_executor(template, target)?.get(executor).map(|ms| ms.round() as u64)
    }

    fn by_executor(&self, template: &str, target: &str) -> Option<&BTreeMap<Executor, f64>> {
        self.averages_ms.get(template)?.get(target)
    }

    /// The rounded averages of `template`'s target named `target`, on every executor measured.
    pub(crate) fn averages_of(&self, template: &str, target: &str) -> impl Iterator<Item = (&Executor, u64)> + '_ {
        self.by_executor(template, target).into_iter().flatten().map(|(executor, ms)| (executor, ms.round() as u64))
    }

    /// Every average, by executor, template and target.
    pub(crate) fn export(&self) -> Vec<MeasuredSpeed> {
        let mut speeds: Vec<MeasuredSpeed> = self
            .averages_ms
            .iter()
            .flat_map(|(template, by_target)| {
                by_target.iter().flat_map(move |(target, by_executor)| {
                    by_executor.iter().map(move |(executor, average_ms)| MeasuredSpeed {
                        executor: executor.clone(),
                        template: template.clone(),
                        target: target.clone(),
                        average_ms: *average_ms,
                    })
                })
            })
            .collect();
        speeds.sort_by(|a, b| (&a.executor, &a.template, &a.target).cmp(&(&b.executor, &b.template, &b.target)));
        speeds
    }

    /// Takes `speeds` as the averages so far (finite, non-negative ones only).
    pub(crate) fn restore(&mut self, speeds: Vec<MeasuredSpeed>) {
        for speed in speeds {
            if speed.average_ms.is_finite() && speed.average_ms >= 0.0 {
                self.averages_ms
                    .entry(speed.template)
                    .or_default()
                    .entry(speed.target)
                    .or_default()
                    .insert(speed.executor, speed.average_ms);
            }
        }
    }
}

/// A fallback and the jobs dispatched to it.
#[derive(Debug, Clone)]
pub(crate) struct FallbackRecord {
    pub(crate) config: FallbackExecutor,
    pub(crate) assigned: BTreeSet<JobId>,
}

impl FallbackRecord {
    pub(crate) fn running(&self) -> u32 {
        u32::try_from(self.assigned.len()).unwrap_or(u32::MAX)
    }
}

/// Every candidate of a [`Decision`] with its score and verdict: a slice of
/// [`CandidateAssessment`]s (it dereferences to one), in the order of
/// [`Decision::candidates`].
///
/// A decision at a thousand agents names a thousand candidates, and one is
/// made for every dispatch, so the scheduler does not write them out: a
/// decision keeps the job's exclusions, what the fallbacks were, and shared,
/// copy-on-write snapshots of the fleet as placement saw it (each agent's
/// jobs, slots, load and state, what it builds, the measured speeds), and
/// the assessments are worked out from those, by the rules placement
/// applies, the first time they are read. Reading, comparing, printing and
/// serializing see the complete list either way.
#[derive(Clone)]
pub struct Candidates(Arc<CandidateRecords>);

/// What [`Candidates`] holds.
struct CandidateRecords {
    /// Every candidate, by position, as the fleet was when the decision was made.
    roster: Arc<[Executor]>,
    /// What each agent could do for the target.
    fit: Arc<TargetFit>,
    /// Each agent's slots, load and state.
    views: Snapshot<AgentView>,
    /// Each agent's running jobs.
    running: Snapshot<u32>,
    /// Measured speeds of the job's template and target, by position.
    speeds: SpeedsByPosition,
    /// Each fallback: whether it could build the job, its running jobs and slots.
    fallbacks: Vec<(bool, u32, u32)>,
    /// The job's exclusions, by position, in order.
    exclusions: Vec<(usize, Exclusion)>,
    /// The position chosen.
    chosen: Option<usize>,
    /// The assessments, once read.
    spelled_out: OnceLock<Vec<CandidateAssessment>>,
}

impl CandidateRecords {
    fn spell_out(&self) -> Vec<CandidateAssessment> {
        let agents = self.views.len();
        self.roster
            .iter()
            .enumerate()
            .map(|(position, executor)| {
                let exclusion = self
                    .exclusions
                    .binary_search_by_key(&position, |(at, _)| *at)
                    .ok()
                    .and_then(|index| self.exclusions.get(index))
                    .map(|(_, exclusion)| exclusion);
                let picked = self.chosen == Some(position);
                let measured_build_ms = self.speeds.get(position).copied().flatten();
                let (score, verdict) = match self.views.get(position) {
                    Some(view) => {
                        let running = self.running.get(position).copied().unwrap_or(0);
                        let buildable = self.fit.toolchain.get(position).copied().flatten().is_some();
                        let native = self.fit.native.get(position).copied().unwrap_or(false);
                        let score = Score {
                            tier: if native { Tier::Native } else { Tier::Cross },
                            running,
                            free_slots: view.slots.saturating_sub(running),
                            load_per_core: Some(view.load_per_core),
                            measured_build_ms,
                        };
                        let verdict = if !buildable {
                            Verdict::NotBuildable
                        } else if view.state != AgentState::Connected {
                            Verdict::Unavailable { state: view.state }
                        } else if view.draining {
                            Verdict::Draining
                        } else {
                            verdict(exclusion, running, view.slots, picked)
                        };
                        (buildable.then_some(score), verdict)
                    }
                    None => {
                        let rank = position - agents;
                        let (buildable, running, slots) = self.fallbacks.get(rank).copied().unwrap_or_default();
                        let score = Score {
                            tier: Tier::Fallback { rank: u32::try_from(rank).unwrap_or(u32::MAX) },
                            running,
                            free_slots: slots.saturating_sub(running),
                            load_per_core: None,
                            measured_build_ms,
                        };
                        let verdict =
                            if buildable { verdict(exclusion, running, slots, picked) } else { Verdict::NotBuildable };
                        (buildable.then_some(score), verdict)
                    }
                };
                CandidateAssessment { executor: executor.clone(), score, verdict }
            })
            .collect()
    }
}

/// The verdict on a candidate that can build the target and is available:
/// excluded for good, without a free slot, where the job failed before (a
/// last resort), or one that could take it; `picked` when it was chosen.
fn verdict(exclusion: Option<&Exclusion>, running: u32, slots: u32, picked: bool) -> Verdict {
    match exclusion {
        Some(exclusion) if !exclusion.is_soft() => Verdict::Excluded { exclusion: exclusion.clone() },
        _ if running >= slots => Verdict::NoFreeSlot { running, slots },
        Some(Exclusion::Failed { reason }) if picked => Verdict::ChosenAsLastResort { reason: reason.clone() },
        Some(Exclusion::Failed { reason }) => Verdict::FailedHere { reason: reason.clone() },
        _ if picked => Verdict::Chosen,
        _ => Verdict::LowerScore,
    }
}

impl Deref for Candidates {
    type Target = [CandidateAssessment];

    fn deref(&self) -> &[CandidateAssessment] {
        self.0.spelled_out.get_or_init(|| self.0.spell_out())
    }
}

impl PartialEq for Candidates {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Candidates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Candidates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'a> IntoIterator for &'a Candidates {
    type Item = &'a CandidateAssessment;
    type IntoIter = std::slice::Iter<'a, CandidateAssessment>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The job placement is asked about.
pub(crate) struct PlacementRequest<'a> {
    pub(crate) job: JobId,
    /// The target's full name (the triple, with its glibc floor when it has one).
    pub(crate) name: String,
    pub(crate) attempt: u32,
    pub(crate) exclusions: &'a BTreeMap<Executor, Exclusion>,
    /// What the submitter said about the fallbacks for this job.
    pub(crate) fallbacks: &'a BTreeMap<FallbackId, bool>,
    pub(crate) now: Timestamp,
}

/// What placement found.
pub(crate) struct Placement {
    /// The record, whether or not something was chosen.
    pub(crate) decision: Decision,
    /// Whether some candidate could take the job once a slot frees; false
    /// means nothing can ever build it as things stand.
    pub(crate) eligible: bool,
}

/// Everything placement reads, borrowed from the scheduler and its fleet
/// index (fresh: every agent's `position` is its place in name order).
pub(crate) struct Fleet<'a> {
    pub(crate) agents: &'a BTreeMap<AgentId, AgentRecord>,
    pub(crate) fallbacks: &'a [FallbackRecord],
    pub(crate) roster: &'a Arc<[Executor]>,
    /// Every agent's slots, load and state, by position.
    pub(crate) views: &'a Snapshot<AgentView>,
    /// Every agent's running jobs, by position.
    pub(crate) running: &'a Snapshot<u32>,
    /// Positions with a free slot.
    pub(crate) free: &'a Bits,
    /// The executors that could ever take the job (see [`Queue`](crate::queue::Queue)).
    pub(crate) eligible: &'a Bits,
    /// What each agent can do for the job's target.
    pub(crate) fit: &'a Arc<TargetFit>,
    /// Measured speeds of the job's template and target, by position.
    pub(crate) speeds: &'a SpeedsByPosition,
}

/// The job's exclusions by position, in order.
pub(crate) fn excluded_positions<'a>(
    exclusions: &'a BTreeMap<Executor, Exclusion>,
    agents: &BTreeMap<AgentId, AgentRecord>,
    fallbacks: &[FallbackRecord],
) -> Vec<(usize, &'a Exclusion)> {
    let mut excluded: Vec<(usize, &Exclusion)> = exclusions
        .iter()
        .filter_map(|(executor, exclusion)| position_of(executor, agents, fallbacks).map(|p| (p, exclusion)))
        .collect();
    excluded.sort_by_key(|(position, _)| *position);
    excluded
}

/// How candidates compare, smaller is better (see the crate docs), packed
/// into integers that order as `(Tier, running, Reverse(free slots), load
/// step, measured build time, not measured yet first)` would: the tier
/// (native 0, cross 1, fallback `2 + rank`), running jobs and the free
/// slots counted down from `u32::MAX`; the load step; whether the speed is
/// measured, then the speed.
type Rank = (u128, u64, u128);

fn rank(tier: Tier, running: u32, free_slots: u32, load_step: u64, measured_build_ms: Option<u64>) -> Rank {
    let tier = match tier {
        Tier::Native => 0,
        Tier::Cross => 1,
        Tier::Fallback { rank } => 2 + u128::from(rank),
    };
    let measured = measured_build_ms.map_or(0, |ms| 1 << 64 | u128::from(ms));
    (tier << 64 | u128::from(running) << 32 | u128::from(u32::MAX - free_slots), load_step, measured)
}

/// The best candidate so far, of one kind: on equal ranks the earlier position stays.
fn keep_best(best: &mut Option<(Rank, usize)>, rank: Rank, position: usize) {
    if best.as_ref().is_none_or(|(kept, _)| rank < *kept) {
        *best = Some((rank, position));
    }
}

/// The rank of the candidate at `position`, as placement compares it.
fn rank_at(fleet: &Fleet<'_>, position: usize) -> Option<Rank> {
    let measured = fleet.speeds.get(position).copied().flatten();
    match (fleet.views.get(position), fleet.running.get(position)) {
        (Some(view), Some(running)) => {
            let native = fleet.fit.native.get(position).copied().unwrap_or(false);
            let tier = if native { Tier::Native } else { Tier::Cross };
            Some(rank(tier, *running, view.slots.saturating_sub(*running), view.load_step, measured))
        }
        _ => {
            let fallback_rank = position.checked_sub(fleet.views.len())?;
            let fallback = fleet.fallbacks.get(fallback_rank)?;
            let tier = Tier::Fallback { rank: u32::try_from(fallback_rank).unwrap_or(u32::MAX) };
            let running = fallback.running();
            // A fallback reports no load: it counts as step 0.
            Some(rank(tier, running, fallback.config.slots.saturating_sub(running), 0, measured))
        }
    }
}

/// The candidates of one pass of the scheduler for jobs of one queue
/// class (without exclusions) and template, best first: a heap of
/// `(rank, position)` that [`pick`] keeps honest. Within a pass slots are
/// only taken, so a rank only gets worse: an entry's rank is at most its
/// candidate's current one, and the top entry whose rank is still current
/// is the best candidate, ties going to the earlier position, which is
/// what [`choose`] finds by looking at every candidate.
pub(crate) type Contenders = BinaryHeap<Reverse<(Rank, usize)>>;

/// The [`Contenders`] for a class without exclusions: every executor of its
/// eligible set with a free slot.
pub(crate) fn contenders(fleet: &Fleet<'_>) -> Contenders {
    let mut heap = Vec::new();
    for (index, mut word) in fleet.eligible.both(fleet.free) {
        while word != 0 {
            let position = index * CHUNK + word.trailing_zeros() as usize;
            word &= word - 1;
            if let Some(rank) = rank_at(fleet, position) {
                heap.push(Reverse((rank, position)));
            }
        }
    }
    BinaryHeap::from(heap)
}

/// The best of the [`Contenders`] with a free slot now (see there), left in the heap.
pub(crate) fn pick(contenders: &mut Contenders, fleet: &Fleet<'_>) -> Option<usize> {
    while let Some(Reverse((kept, position))) = contenders.peek().copied() {
        let current = if fleet.free.get(position) { rank_at(fleet, position) } else { None };
        match current {
            Some(current) if current == kept => return Some(position),
            Some(current) => {
                contenders.pop();
                contenders.push(Reverse((current, position)));
            }
            None => {
                contenders.pop();
            }
        }
    }
    None
}

/// The executor for the job, if one has a free slot. Only executors that
/// could take the job and have a free slot can be chosen (their positions
/// are the bits of `eligible` and `free`): of those, the best rank (ties go
/// to the earlier position), and only when none is left, the best of those
/// where the job failed before.
pub(crate) fn choose(request: &PlacementRequest<'_>, fleet: &Fleet<'_>) -> Option<usize> {
    let agents = fleet.views.len();
    let excluded = excluded_positions(request.exclusions, fleet.agents, fleet.fallbacks);
    let soft = |position: usize| {
        !excluded.is_empty()
            && excluded
                .binary_search_by_key(&position, |(at, _)| *at)
                .ok()
                .and_then(|index| excluded.get(index))
                .is_some_and(|(_, exclusion)| exclusion.is_soft())
    };
    let mut best = None;
    let mut best_last_resort = None;
    for (index, mut word) in fleet.eligible.both(fleet.free) {
        // One word of positions is one chunk of the agents' snapshots.
        let views = fleet.views.chunk(index);
        let running = fleet.running.chunk(index);
        let native = fleet.fit.native.get(index * CHUNK..).unwrap_or(&[]);
        while word != 0 {
            let bit = word.trailing_zeros() as usize;
            word &= word - 1;
            let position = index * CHUNK + bit;
            let measured = fleet.speeds.get(position).copied().flatten();
            let rank = match (views.get(bit), running.get(bit)) {
                (Some(view), Some(running)) => {
                    let tier = if native.get(bit).copied().unwrap_or(false) { Tier::Native } else { Tier::Cross };
                    rank(tier, *running, view.slots.saturating_sub(*running), view.load_step, measured)
                }
                _ if position >= agents => {
                    let Some(rank) = rank_at(fleet, position) else { continue };
                    rank
                }
                _ => continue,
            };
            keep_best(if soft(position) { &mut best_last_resort } else { &mut best }, rank, position);
        }
    }
    best.or(best_last_resort).map(|(_, position)| position)
}

/// Records the decision to send the job to `chosen` (or nowhere): every
/// other candidate's verdict follows from the snapshots the decision keeps.
pub(crate) fn record(request: PlacementRequest<'_>, fleet: &Fleet<'_>, chosen: Option<usize>) -> Placement {
    // Agents report bare triples (a floor is checked by the agent, which
    // rejects what it cannot build whole); fallbacks and measured speeds
    // know the full target name, so `T` and `T.2.17` stay apart.
    let name = request.name;
    let excluded = excluded_positions(request.exclusions, fleet.agents, fleet.fallbacks);
    let toolchain = chosen.and_then(|position| fleet.fit.toolchain_name.get(position).cloned().flatten());
    let fallbacks = fleet
        .fallbacks
        .iter()
        .map(|fallback| {
            let buildable = match request.fallbacks.get(&fallback.config.id) {
                Some(said) => *said,
                None => fallback.config.triples.contains(&name),
            };
            (buildable, fallback.running(), fallback.config.slots)
        })
        .collect();
    let decision = Decision {
        job: request.job,
        target: name,
        attempt: request.attempt,
        at: request.now,
        chosen: chosen.and_then(|position| fleet.roster.get(position).cloned()),
        toolchain,
        candidates: Candidates(Arc::new(CandidateRecords {
            roster: Arc::clone(fleet.roster),
            fit: Arc::clone(fleet.fit),
            views: fleet.views.clone(),
            running: fleet.running.clone(),
            speeds: fleet.speeds.clone(),
            fallbacks,
            exclusions: excluded.iter().map(|(position, exclusion)| (*position, (*exclusion).clone())).collect(),
            chosen,
            spelled_out: OnceLock::new(),
        })),
    };
    Placement { decision, eligible: fleet.eligible.count() > 0 }
}

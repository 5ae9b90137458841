//! Where a job goes and why: scores every candidate executor and records the verdict on each in a [`Decision`].
//!
//! The order of preference is documented on the crate root.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustle_protocol::{AgentId, JobId};
use rustle_targets::Target;
use serde::{Deserialize, Serialize, Serializer};

use crate::agents::{AgentRecord, AgentState};
use crate::executor::{Executor, FallbackExecutor, FallbackId};
use crate::index::{AgentView, TargetFit, position_of};
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
            Self::NotBuildable => f.write_str("cannot build the target"),
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
    averages_ms: BTreeMap<(Executor, String, String), f64>,
}

impl SpeedHistory {
    /// Folds one build duration into the average with weight `smoothing`.
    pub(crate) fn record(&mut self, executor: &Executor, template: &str, target: &str, took: Duration, smoothing: f64) {
        let sample = took.as_secs_f64() * 1000.0;
        self.averages_ms
            .entry((executor.clone(), template.to_owned(), target.to_owned()))
            .and_modify(|average| *average += smoothing * (sample - *average))
            .or_insert(sample);
    }

    /// The average in whole milliseconds.
    pub(crate) fn average_ms(&self, executor: &Executor, template: &str, target: &str) -> Option<u64> {
        // `as` saturates; averages are finite and non-negative.
        self.averages_ms.get(&(executor.clone(), template.to_owned(), target.to_owned())).map(|ms| ms.round() as u64)
    }

    /// The rounded averages of `template`'s target named `target`, on every executor measured.
    pub(crate) fn averages_of<'a>(
        &'a self,
        template: &'a str,
        target: &'a str,
    ) -> impl Iterator<Item = (&'a Executor, u64)> + 'a {
        self.averages_ms
            .iter()
            .filter(move |((_, t, n), _)| t == template && n == target)
            .map(|((executor, _, _), ms)| (executor, ms.round() as u64))
    }

    /// Every average.
    pub(crate) fn export(&self) -> Vec<MeasuredSpeed> {
        self.averages_ms
            .iter()
            .map(|((executor, template, target), average_ms)| MeasuredSpeed {
                executor: executor.clone(),
                template: template.clone(),
                target: target.clone(),
                average_ms: *average_ms,
            })
            .collect()
    }

    /// Takes `speeds` as the averages so far (finite, non-negative ones only).
    pub(crate) fn restore(&mut self, speeds: Vec<MeasuredSpeed>) {
        for speed in speeds {
            if speed.average_ms.is_finite() && speed.average_ms >= 0.0 {
                self.averages_ms.insert((speed.executor, speed.template, speed.target), speed.average_ms);
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
/// made for every dispatch, so the scheduler records them compactly (the
/// executors' names are shared by every decision of the same fleet, each
/// candidate's score and verdict take a few words) and spells them out as
/// [`CandidateAssessment`]s the first time they are read. Reading,
/// comparing, printing and serializing see the complete list either way.
#[derive(Clone)]
pub struct Candidates(Arc<CandidateRecords>);

/// What [`Candidates`] holds.
struct CandidateRecords {
    /// Every candidate, by position, as the fleet was when the decision was made.
    roster: Arc<[Executor]>,
    /// Score and verdict, by position.
    entries: Vec<Entry>,
    /// The verdicts that carry more than a code (a state, an exclusion, an
    /// earlier failure), by position, in order.
    extras: Vec<(usize, Verdict)>,
    /// The position chosen.
    chosen: Option<usize>,
    /// The assessments, once read.
    spelled_out: OnceLock<Vec<CandidateAssessment>>,
}

/// One candidate's score and verdict, in a few words.
#[derive(Debug, Clone, Copy)]
struct Entry {
    load_per_core: f64,
    measured_build_ms: u64,
    running: u32,
    slots: u32,
    fallback_rank: u32,
    /// `NO_SCORE`, or which [`Tier`].
    tier: u8,
    measured: bool,
    verdict: u8,
}

const NO_SCORE: u8 = 0;
const NATIVE: u8 = 1;
const CROSS: u8 = 2;
const FALLBACK: u8 = 3;

/// Could take the job: [`Verdict::Chosen`] when chosen, else [`Verdict::LowerScore`].
const CONTENDER: u8 = 0;
const NOT_BUILDABLE: u8 = 1;
const DRAINING: u8 = 2;
const NO_FREE_SLOT: u8 = 3;
/// [`Verdict::FailedHere`] in the extras, [`Verdict::ChosenAsLastResort`] when chosen.
const LAST_RESORT: u8 = 4;
/// The verdict is in the extras as it is.
const EXTRA: u8 = 5;

impl Entry {
    const NOT_BUILDABLE: Self = Self {
        load_per_core: 0.0,
        measured_build_ms: 0,
        running: 0,
        slots: 0,
        fallback_rank: 0,
        tier: NO_SCORE,
        measured: false,
        verdict: NOT_BUILDABLE,
    };

    fn score(&self) -> Option<Score> {
        let tier = match self.tier {
            NATIVE => Tier::Native,
            CROSS => Tier::Cross,
            FALLBACK => Tier::Fallback { rank: self.fallback_rank },
            _ => return None,
        };
        Some(Score {
            tier,
            running: self.running,
            free_slots: self.slots.saturating_sub(self.running),
            load_per_core: (self.tier != FALLBACK).then_some(self.load_per_core),
            measured_build_ms: self.measured.then_some(self.measured_build_ms),
        })
    }
}

impl CandidateRecords {
    fn spell_out(&self) -> Vec<CandidateAssessment> {
        let mut extras = self.extras.iter().peekable();
        self.roster
            .iter()
            .zip(&self.entries)
            .enumerate()
            .map(|(position, (executor, entry))| {
                let extra = extras.next_if(|(at, _)| *at == position).map(|(_, verdict)| verdict);
                let picked = self.chosen == Some(position);
                let verdict = match (entry.verdict, extra) {
                    (CONTENDER, _) if picked => Verdict::Chosen,
                    (CONTENDER, _) => Verdict::LowerScore,
                    (NOT_BUILDABLE, _) => Verdict::NotBuildable,
                    (DRAINING, _) => Verdict::Draining,
                    (NO_FREE_SLOT, _) => Verdict::NoFreeSlot { running: entry.running, slots: entry.slots },
                    (LAST_RESORT, Some(Verdict::FailedHere { reason })) if picked => {
                        Verdict::ChosenAsLastResort { reason: reason.clone() }
                    }
                    (_, Some(verdict)) => verdict.clone(),
                    // Not recorded that way; kept total rather than panicking.
                    (_, None) => Verdict::LowerScore,
                };
                CandidateAssessment { executor: executor.clone(), score: entry.score(), verdict }
            })
            .collect()
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
    pub(crate) target: &'a Target,
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
    /// Every agent's jobs, slots, load and state, by position.
    pub(crate) views: &'a [AgentView],
    /// What each agent can do for the job's target.
    pub(crate) fit: &'a TargetFit,
    /// Measured speeds of the job's template and target, by position.
    pub(crate) speeds: &'a [Option<u64>],
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

/// How candidates compare, smaller is better (see the crate docs): tier,
/// jobs running there, more free slots, load in steps, measured speed (not
/// measured yet first).
type Rank = (Tier, u32, Reverse<u32>, u64, Option<u64>);

/// The best candidate so far, of one kind: on equal ranks the earlier position stays.
fn keep_best(best: &mut Option<(Rank, usize)>, rank: Rank, position: usize) {
    if best.as_ref().is_none_or(|(kept, _)| rank < *kept) {
        *best = Some((rank, position));
    }
}

/// What the scan of the candidates gathers.
struct Scan<'a> {
    entries: Vec<Entry>,
    extras: Vec<(usize, Verdict)>,
    excluded: std::iter::Peekable<std::vec::IntoIter<(usize, &'a Exclusion)>>,
    eligible: bool,
    best: Option<(Rank, usize)>,
    best_last_resort: Option<(Rank, usize)>,
}

impl<'a> Scan<'a> {
    /// The job's exclusion of the candidate at `position` (positions come in order).
    fn exclusion(&mut self, position: usize) -> Option<&'a Exclusion> {
        self.excluded.next_if(|(at, _)| *at == position).map(|(_, exclusion)| exclusion)
    }

    /// Judges a candidate that builds the target and is available: excluded
    /// for good, without a free slot, a last resort, or a contender.
    fn judge(&mut self, position: usize, exclusion: Option<&Exclusion>, mut entry: Entry, rank: impl FnOnce() -> Rank) {
        match exclusion {
            Some(exclusion) if !exclusion.is_soft() => {
                entry.verdict = EXTRA;
                self.extras.push((position, Verdict::Excluded { exclusion: exclusion.clone() }));
            }
            _ if entry.running >= entry.slots => {
                self.eligible = true;
                entry.verdict = NO_FREE_SLOT;
            }
            Some(Exclusion::Failed { reason }) => {
                self.eligible = true;
                entry.verdict = LAST_RESORT;
                self.extras.push((position, Verdict::FailedHere { reason: reason.clone() }));
                keep_best(&mut self.best_last_resort, rank(), position);
            }
            _ => {
                self.eligible = true;
                entry.verdict = CONTENDER;
                keep_best(&mut self.best, rank(), position);
            }
        }
        self.entries.push(entry);
    }
}

/// Assesses every candidate for the job, in one pass, and picks one if any
/// has a free slot: of those that could take it, the best rank (ties go to
/// the earlier position), and only when none is left, the best of those
/// where the job failed before.
pub(crate) fn place(request: &PlacementRequest<'_>, fleet: &Fleet<'_>) -> Placement {
    // Agents report bare triples (a floor is checked by the agent, which
    // rejects what it cannot build whole); fallbacks and measured speeds
    // know the full target name, so `T` and `T.2.17` stay apart.
    let name = request.target.triple_with_floor();
    let agents = fleet.views.len();
    let mut scan = Scan {
        entries: Vec::with_capacity(agents + fleet.fallbacks.len()),
        extras: Vec::new(),
        excluded: excluded_positions(request.exclusions, fleet.agents, fleet.fallbacks).into_iter().peekable(),
        eligible: false,
        best: None,
        best_last_resort: None,
    };
    let measured = |position: usize| fleet.speeds.get(position).copied().flatten();

    let fits = fleet.fit.toolchain.iter().zip(&fleet.fit.native);
    for (position, (view, (toolchain, native))) in fleet.views.iter().zip(fits).enumerate() {
        let exclusion = scan.exclusion(position);
        if toolchain.is_none() {
            scan.entries.push(Entry::NOT_BUILDABLE);
            continue;
        }
        let measured = measured(position);
        let tier = if *native { Tier::Native } else { Tier::Cross };
        let entry = Entry {
            load_per_core: view.load_per_core,
            measured_build_ms: measured.unwrap_or(0),
            running: view.running,
            slots: view.slots,
            fallback_rank: 0,
            tier: if *native { NATIVE } else { CROSS },
            measured: measured.is_some(),
            verdict: CONTENDER,
        };
        if view.state != AgentState::Connected {
            scan.extras.push((position, Verdict::Unavailable { state: view.state }));
            scan.entries.push(Entry { verdict: EXTRA, ..entry });
        } else if view.draining {
            scan.entries.push(Entry { verdict: DRAINING, ..entry });
        } else {
            let free = view.slots.saturating_sub(view.running);
            scan.judge(position, exclusion, entry, || (tier, view.running, Reverse(free), view.load_step, measured));
        }
    }

    for (rank, fallback) in fleet.fallbacks.iter().enumerate() {
        let position = agents + rank;
        let exclusion = scan.exclusion(position);
        let buildable = match request.fallbacks.get(&fallback.config.id) {
            Some(said) => *said,
            None => fallback.config.triples.contains(&name),
        };
        if !buildable {
            scan.entries.push(Entry::NOT_BUILDABLE);
            continue;
        }
        let (running, slots) = (fallback.running(), fallback.config.slots);
        let measured = measured(position);
        let tier = Tier::Fallback { rank: u32::try_from(rank).unwrap_or(u32::MAX) };
        let entry = Entry {
            load_per_core: 0.0,
            measured_build_ms: measured.unwrap_or(0),
            running,
            slots,
            fallback_rank: u32::try_from(rank).unwrap_or(u32::MAX),
            tier: FALLBACK,
            measured: measured.is_some(),
            verdict: CONTENDER,
        };
        let free = slots.saturating_sub(running);
        // A fallback reports no load: it counts as step 0.
        scan.judge(position, exclusion, entry, || (tier, running, Reverse(free), 0, measured));
    }

    let chosen = scan.best.or(scan.best_last_resort).map(|(_, position)| position);
    let toolchain = chosen.and_then(|position| {
        let agent = fleet.agents.get(fleet.roster.get(position)?.agent()?)?;
        let index = fleet.fit.toolchain.get(position).copied().flatten()?;
        agent.report.toolchains.get(index).map(|t| t.name.clone())
    });
    let decision = Decision {
        job: request.job,
        target: name,
        attempt: request.attempt,
        at: request.now,
        chosen: chosen.and_then(|position| fleet.roster.get(position).cloned()),
        toolchain,
        candidates: Candidates(Arc::new(CandidateRecords {
            roster: Arc::clone(fleet.roster),
            entries: scan.entries,
            extras: scan.extras,
            chosen,
            spelled_out: OnceLock::new(),
        })),
    };
    Placement { decision, eligible: scan.eligible }
}

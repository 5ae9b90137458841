//! Where a job goes and why: scores every candidate executor and records the verdict on each in a [`Decision`].
//!
//! The order of preference is documented on the crate root.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use rustle_protocol::{AgentId, JobId};
use rustle_targets::Target;
use serde::{Deserialize, Serialize};

use crate::agents::{AgentRecord, AgentState, is_native, toolchain_for};
use crate::executor::{Executor, FallbackExecutor, FallbackId};
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

impl Score {
    /// The sort key: smaller is better.
    fn rank(&self, load_resolution: f64) -> (Tier, u32, Reverse<u32>, u64, Option<u64>) {
        // `as` saturates (and maps NaN to 0); loads are finite and non-negative here.
        let load_step = self.load_per_core.map_or(0, |load| (load / load_resolution).floor() as u64);
        (self.tier, self.running, Reverse(self.free_slots), load_step, self.measured_build_ms)
    }
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
    pub candidates: Vec<CandidateAssessment>,
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
        for candidate in &self.candidates {
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

/// The job placement is asked about.
pub(crate) struct PlacementRequest<'a> {
    pub(crate) job: JobId,
    pub(crate) template: &'a str,
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

/// Everything placement reads, borrowed from the scheduler.
pub(crate) struct Fleet<'a> {
    pub(crate) agents: &'a BTreeMap<AgentId, AgentRecord>,
    pub(crate) fallbacks: &'a [FallbackRecord],
    pub(crate) speeds: &'a SpeedHistory,
    pub(crate) load_resolution: f64,
}

/// A candidate's standing before the winner is picked.
enum Standing {
    Rejected(Verdict),
    Contender,
    LastResort(String),
}

impl Standing {
    /// Whether the candidate could take the job, now or once a slot frees.
    fn could_take(&self) -> bool {
        match self {
            Self::Contender | Self::LastResort(_) => true,
            Self::Rejected(verdict) => matches!(verdict, Verdict::NoFreeSlot { .. } | Verdict::FailedHere { .. }),
        }
    }
}

/// Every candidate for the job: its assessment (verdict still to be
/// settled), its standing, and the toolchain it would use.
fn assess(request: &PlacementRequest<'_>, fleet: &Fleet<'_>) -> Vec<(CandidateAssessment, Standing, Option<String>)> {
    // Agents report bare triples (a floor is checked by the agent, which
    // rejects what it cannot build whole); fallbacks and measured speeds
    // know the full target name, so `T` and `T.2.17` stay apart.
    let triple = request.target.triple.as_str();
    let name = request.target.triple_with_floor();
    let name = name.as_str();
    let mut assessed: Vec<(CandidateAssessment, Standing, Option<String>)> = Vec::new();

    for (id, agent) in fleet.agents {
        let executor = Executor::Agent(id.clone());
        let toolchain = toolchain_for(&agent.report, triple).map(str::to_owned);
        let tier = if is_native(&agent.report, request.target) { Tier::Native } else { Tier::Cross };
        let score = Score {
            tier,
            running: agent.running(),
            free_slots: agent.free_slots(),
            load_per_core: Some(agent.load_per_core()),
            measured_build_ms: fleet.speeds.average_ms(&executor, request.template, name),
        };
        let standing = if toolchain.is_none() {
            Standing::Rejected(Verdict::NotBuildable)
        } else if !agent.is_connected() {
            Standing::Rejected(Verdict::Unavailable { state: agent.state })
        } else if agent.draining {
            Standing::Rejected(Verdict::Draining)
        } else {
            judge(request.exclusions.get(&executor), agent.running(), agent.slots())
        };
        let score = toolchain.is_some().then_some(score);
        assessed.push((CandidateAssessment { executor, score, verdict: Verdict::LowerScore }, standing, toolchain));
    }

    for (rank, fallback) in fleet.fallbacks.iter().enumerate() {
        let executor = Executor::Fallback(fallback.config.id.clone());
        let buildable = match request.fallbacks.get(&fallback.config.id) {
            Some(said) => *said,
            None => fallback.config.triples.contains(name),
        };
        let score = Score {
            tier: Tier::Fallback { rank: u32::try_from(rank).unwrap_or(u32::MAX) },
            running: fallback.running(),
            free_slots: fallback.config.slots.saturating_sub(fallback.running()),
            load_per_core: None,
            measured_build_ms: fleet.speeds.average_ms(&executor, request.template, name),
        };
        let standing = if buildable {
            judge(request.exclusions.get(&executor), fallback.running(), fallback.config.slots)
        } else {
            Standing::Rejected(Verdict::NotBuildable)
        };
        let score = buildable.then_some(score);
        assessed.push((CandidateAssessment { executor, score, verdict: Verdict::LowerScore }, standing, None));
    }
    assessed
}

/// Assesses every candidate for the job and picks one, if any has a free slot.
pub(crate) fn place(request: &PlacementRequest<'_>, fleet: &Fleet<'_>) -> Placement {
    let assessed = assess(request, fleet);
    let eligible = assessed.iter().any(|(_, standing, _)| standing.could_take());
    let best = |last_resort: bool| {
        assessed
            .iter()
            .enumerate()
            .filter(|(_, (_, standing, _))| match standing {
                Standing::Contender => !last_resort,
                Standing::LastResort(_) => last_resort,
                Standing::Rejected(_) => false,
            })
            .filter_map(|(index, (candidate, _, _))| candidate.score.map(|s| (s.rank(fleet.load_resolution), index)))
            .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, index)| index)
    };
    let chosen = best(false).or_else(|| best(true));

    let mut decision = Decision {
        job: request.job,
        target: request.target.triple_with_floor(),
        attempt: request.attempt,
        at: request.now,
        chosen: None,
        toolchain: None,
        candidates: Vec::with_capacity(assessed.len()),
    };
    for (index, (mut candidate, standing, toolchain)) in assessed.into_iter().enumerate() {
        let picked = chosen == Some(index);
        candidate.verdict = match standing {
            Standing::Rejected(verdict) => verdict,
            Standing::Contender if picked => Verdict::Chosen,
            Standing::Contender => Verdict::LowerScore,
            Standing::LastResort(reason) if picked => Verdict::ChosenAsLastResort { reason },
            Standing::LastResort(reason) => Verdict::FailedHere { reason },
        };
        if picked {
            decision.chosen = Some(candidate.executor.clone());
            decision.toolchain = toolchain;
        }
        decision.candidates.push(candidate);
    }
    Placement { decision, eligible }
}

/// How many executors could ever take the job as things stand (those
/// placement would choose once a slot frees), whether or not a slot is
/// free: its scarcity, by which [`Scheduler`](crate::Scheduler) orders a batch.
pub(crate) fn scarcity(request: &PlacementRequest<'_>, fleet: &Fleet<'_>) -> usize {
    assess(request, fleet).iter().filter(|(_, standing, _)| standing.could_take()).count()
}

/// The standing of a candidate that can build the target and is available.
fn judge(exclusion: Option<&Exclusion>, running: u32, slots: u32) -> Standing {
    match exclusion {
        Some(exclusion) if !exclusion.is_soft() => {
            Standing::Rejected(Verdict::Excluded { exclusion: exclusion.clone() })
        }
        _ if running >= slots => Standing::Rejected(Verdict::NoFreeSlot { running, slots }),
        Some(Exclusion::Failed { reason }) => Standing::LastResort(reason.clone()),
        _ => Standing::Contender,
    }
}

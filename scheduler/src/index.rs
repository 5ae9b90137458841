//! Views of the fleet derived from the scheduler's records, kept so that a placement costs little more than its winner: positions, what each agent builds per target, free slots as bits, measured speeds, and copy-on-write snapshots that decisions share.
//!
//! Every candidate has a *position*: the agents in name order, then the
//! fallback chain in order, as a [`Decision`](crate::Decision) lists them.
//! The views are rebuilt lazily after the fleet changed (an agent
//! registered, refreshed its report, disconnected, drained or was lost) and
//! kept up to date cheaply in between (a slot taken or freed, a load
//! reported, a build measured). They hold nothing the records do not:
//! dropping them changes no decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustle_protocol::AgentId;
use rustle_targets::Target;

use crate::agents::{AgentRecord, AgentState, is_native, toolchain_index_for};
use crate::executor::Executor;
use crate::placement::{FallbackRecord, SpeedHistory};

/// A fixed-size set of positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    /// `len` positions, none set.
    pub(crate) fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    pub(crate) fn set(&mut self, position: usize, value: bool) {
        if let Some(word) = self.0.get_mut(position / 64) {
            let bit = 1 << (position % 64);
            if value {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    pub(crate) fn get(&self, position: usize) -> bool {
        self.0.get(position / 64).is_some_and(|word| word & 1 << (position % 64) != 0)
    }

    /// Whether some position is in both sets.
    pub(crate) fn intersects(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    pub(crate) fn count(&self) -> usize {
        self.0.iter().map(|word| word.count_ones() as usize).sum()
    }

    /// The positions in both sets, a word (64 positions, one [`Snapshot`]
    /// chunk) at a time: the word's index and its bits.
    pub(crate) fn both<'a>(&'a self, other: &'a Self) -> impl Iterator<Item = (usize, u64)> + 'a {
        self.0.iter().zip(&other.0).map(|(a, b)| a & b).enumerate().filter(|(_, word)| *word != 0)
    }
}

/// Positions per chunk of a [`Snapshot`] by default: as many as a word of [`Bits`] holds.
pub(crate) const CHUNK: usize = 64;

/// A vector whose copies are cheap and share what they have in common: a
/// copy costs a reference count, and a change after a copy duplicates one
/// chunk of `N` items. Each [`Decision`](crate::Decision) keeps a copy
/// of the fleet as placement saw it, so that one decision costs a few
/// chunks, not a record per candidate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot<T, const N: usize = CHUNK> {
    chunks: Arc<Vec<Arc<Vec<T>>>>,
    len: usize,
}

impl<T, const N: usize> Default for Snapshot<T, N> {
    fn default() -> Self {
        Self { chunks: Arc::default(), len: 0 }
    }
}

impl<T: Clone + PartialEq, const N: usize> Snapshot<T, N> {
    pub(crate) fn new(items: Vec<T>) -> Self {
        let len = items.len();
        Self { chunks: Arc::new(items.chunks(N).map(|chunk| Arc::new(chunk.to_vec())).collect()), len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, position: usize) -> Option<&T> {
        self.chunks.get(position / N)?.get(position % N)
    }

    /// The items at positions `index * N ..`, up to `N` of them.
    pub(crate) fn chunk(&self, index: usize) -> &[T] {
        self.chunks.get(index).map_or(&[], |chunk| chunk.as_slice())
    }

    /// Changes one item, copying its chunk first if a copy of the vector shares it.
    pub(crate) fn set(&mut self, position: usize, value: T) {
        if position >= self.len || self.get(position) == Some(&value) {
            return;
        }
        if let Some(chunk) = Arc::make_mut(&mut self.chunks).get_mut(position / N)
            && let Some(item) = Arc::make_mut(chunk).get_mut(position % N)
        {
            *item = value;
        }
    }
}

/// What every agent can do for one target, by position.
#[derive(Debug)]
pub(crate) struct TargetFit {
    /// The index (in its report) of the toolchain the agent would build the
    /// target with ([`toolchain_for`](crate::toolchain_for)); `None` when it cannot.
    pub(crate) toolchain: Vec<Option<usize>>,
    /// That toolchain's name, for the dispatch.
    pub(crate) toolchain_name: Vec<Option<String>>,
    /// Whether the target is the agent's own platform ([`is_native`]).
    pub(crate) native: Vec<bool>,
}

/// What placement reads about an agent, copied from its record, except
/// its running jobs (which change on every dispatch and are kept apart, see
/// [`FleetIndex::running`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AgentView {
    pub(crate) slots: u32,
    pub(crate) load_per_core: f64,
    /// The load in steps of the configured resolution, as placement compares it.
    pub(crate) load_step: u64,
    pub(crate) state: AgentState,
    pub(crate) draining: bool,
}

impl AgentView {
    fn of(record: &AgentRecord, load_resolution: f64) -> Self {
        let load_per_core = record.load_per_core();
        Self {
            slots: record.slots(),
            load_per_core,
            load_step: load_step(Some(load_per_core), load_resolution),
            state: record.state,
            draining: record.draining,
        }
    }
}

/// A load per core in steps of `load_resolution` (none counts as 0).
pub(crate) fn load_step(load_per_core: Option<f64>, load_resolution: f64) -> u64 {
    // `as` saturates (and maps NaN to 0); loads are finite and non-negative here.
    load_per_core.map_or(0, |load| (load / load_resolution).floor() as u64)
}

/// Rounded moving averages of one template's target, by position. One
/// changes after every successful build, so its chunks are kept small
/// (half a kilobyte).
pub(crate) type SpeedsByPosition = Snapshot<Option<u64>, 32>;

/// The derived views; see the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct FleetIndex {
    /// Every candidate by position.
    roster: Arc<[Executor]>,
    /// An agent registered under a new name: positions must be handed out again.
    roster_stale: bool,
    /// Loads closer than this count as equal ([`SchedulerConfig::load_resolution`](crate::SchedulerConfig)).
    load_resolution: f64,
    /// The views below match the records.
    valid: bool,
    /// Bumped on every rebuild, so that what callers derived from the views can tell it is stale.
    generation: u64,
    fits: HashMap<Target, Arc<TargetFit>>,
    /// Every agent, by position.
    agents: Snapshot<AgentView>,
    /// Every agent's jobs dispatched and not finished, by position.
    running: Snapshot<u32>,
    /// Positions with a free slot (fewer jobs dispatched there than slots).
    free: Bits,
    /// Rounded moving averages by template, target name and position.
    speeds: BTreeMap<String, BTreeMap<String, SpeedsByPosition>>,
}

impl FleetIndex {
    /// An index that is rebuilt before its first use.
    pub(crate) fn new(load_resolution: f64) -> Self {
        Self { roster_stale: true, load_resolution, ..Self::default() }
    }

    /// An agent registered under a name not seen before.
    pub(crate) fn roster_changed(&mut self) {
        self.roster_stale = true;
        self.valid = false;
    }

    /// An agent's report, connection or draining changed.
    pub(crate) fn invalidate(&mut self) {
        self.valid = false;
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn roster(&self) -> &Arc<[Executor]> {
        &self.roster
    }

    pub(crate) fn free(&self) -> &Bits {
        &self.free
    }

    pub(crate) fn agents(&self) -> &Snapshot<AgentView> {
        &self.agents
    }

    pub(crate) fn running(&self) -> &Snapshot<u32> {
        &self.running
    }

    /// Rebuilds whatever is stale; afterwards every agent's `position` is its place in name order.
    pub(crate) fn refresh(&mut self, agents: &mut BTreeMap<AgentId, AgentRecord>, fallbacks: &[FallbackRecord]) {
        if self.roster_stale {
            let mut roster = Vec::with_capacity(agents.len() + fallbacks.len());
            for (position, (id, record)) in agents.iter_mut().enumerate() {
                record.position = position;
                roster.push(Executor::Agent(id.clone()));
            }
            roster.extend(fallbacks.iter().map(|f| Executor::Fallback(f.config.id.clone())));
            self.roster = roster.into();
            self.speeds.clear();
            self.roster_stale = false;
            self.valid = false;
        }
        if !self.valid {
            self.fits.clear();
            self.free = Bits::new(self.roster.len());
            self.agents = Snapshot::new(agents.values().map(|a| AgentView::of(a, self.load_resolution)).collect());
            self.running = Snapshot::new(agents.values().map(AgentRecord::running).collect());
            for record in agents.values() {
                self.free.set(record.position, record.running() < record.slots());
            }
            for (rank, fallback) in fallbacks.iter().enumerate() {
                self.free.set(agents.len() + rank, fallback.running() < fallback.config.slots);
            }
            self.generation += 1;
            self.valid = true;
        }
    }

    /// The agent's jobs or load changed: copies them from its record.
    pub(crate) fn agent_changed(&mut self, record: &AgentRecord) {
        if self.valid {
            let running = record.running();
            self.free.set(record.position, running < record.slots());
            self.running.set(record.position, running);
            self.agents.set(record.position, AgentView::of(record, self.load_resolution));
        }
    }

    /// The agent's jobs changed (and nothing else): copies their number from its record.
    pub(crate) fn running_changed(&mut self, record: &AgentRecord) {
        if self.valid {
            let running = record.running();
            self.free.set(record.position, running < record.slots());
            self.running.set(record.position, running);
        }
    }

    /// The fallback at `position` has a free slot now, or not.
    pub(crate) fn fallback_changed(&mut self, position: usize, free: bool) {
        if self.valid {
            self.free.set(position, free);
        }
    }

    /// What every agent can do for `target` (the index must be fresh).
    pub(crate) fn fit(&mut self, target: &Target, agents: &BTreeMap<AgentId, AgentRecord>) -> Arc<TargetFit> {
        if let Some(fit) = self.fits.get(target) {
            return Arc::clone(fit);
        }
        let toolchain: Vec<Option<usize>> =
            agents.values().map(|a| toolchain_index_for(&a.report, &target.triple)).collect();
        let toolchain_name = agents
            .values()
            .zip(&toolchain)
            .map(|(a, index)| index.and_then(|index| a.report.toolchains.get(index)).map(|t| t.name.clone()))
            .collect();
        let fit = Arc::new(TargetFit {
            toolchain,
            toolchain_name,
            native: agents.values().map(|a| is_native(&a.report, target)).collect(),
        });
        self.fits.insert(target.clone(), Arc::clone(&fit));
        fit
    }

    /// Measured speeds of `template`'s target named `target` by position (the index must be fresh).
    pub(crate) fn speeds(
        &mut self,
        template: &str,
        target: &str,
        history: &SpeedHistory,
        agents: &BTreeMap<AgentId, AgentRecord>,
        fallbacks: &[FallbackRecord],
    ) -> SpeedsByPosition {
        if let Some(speeds) = self.speeds.get(template).and_then(|by_target| by_target.get(target)) {
            return speeds.clone();
        }
        let mut speeds = vec![None; self.roster.len()];
        for (executor, average_ms) in history.averages_of(template, target) {
            if let Some(position) = position_of(executor, agents, fallbacks) {
                speeds[position] = Some(average_ms);
            }
        }
        let speeds = Snapshot::new(speeds);
        self.speeds.entry(template.to_owned()).or_default().insert(target.to_owned(), speeds.clone());
        speeds
    }

    /// A build was measured: the average at `position` is now `average_ms`.
    pub(crate) fn speed_recorded(&mut self, template: &str, target: &str, position: Option<usize>, average_ms: u64) {
        if self.roster_stale {
            // Positions are handed out again, and the speeds derived again, before the next use.
            return;
        }
        let Some(speeds) = self.speeds.get_mut(template).and_then(|by_target| by_target.get_mut(target)) else {
            return;
        };
        match position {
            Some(position) => speeds.set(position, Some(average_ms)),
            None => {
                if let Some(by_target) = self.speeds.get_mut(template) {
                    by_target.remove(target);
                }
            }
        }
    }

    /// Speeds were restored from an earlier run: derive them again.
    pub(crate) fn speeds_restored(&mut self) {
        self.speeds.clear();
    }
}

/// The position of `executor`, when it is a registered agent (with a fresh
/// index) or a configured fallback.
pub(crate) fn position_of(
    executor: &Executor,
    agents: &BTreeMap<AgentId, AgentRecord>,
    fallbacks: &[FallbackRecord],
) -> Option<usize> {
    match executor {
        Executor::Agent(id) => agents.get(id).map(|a| a.position),
        Executor::Fallback(id) => fallbacks.iter().position(|f| &f.config.id == id).map(|rank| agents.len() + rank),
    }
}

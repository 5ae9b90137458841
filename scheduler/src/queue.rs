//! The jobs waiting for a slot, grouped into classes of jobs that the same executors could take, so that a pass of the scheduler looks at each class once instead of at every waiting job.
//!
//! Which executors could ever take a job (its *eligible set*: those that
//! build its target, are available, and have not excluded it for good)
//! depends only on its target, what its submission said about the
//! fallbacks, and its exclusions. Jobs without exclusions and with the same
//! target and fallback answers share a class; a job with exclusions (a
//! retry) has a class of its own. The scheduler caches each class's eligible
//! set per fleet-index generation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use rustle_protocol::JobId;
use rustle_targets::Target;

use std::sync::Arc;

use crate::executor::FallbackId;
use crate::index::{Bits, TargetFit};

/// What a submission said about the fallbacks (see [`JobSubmission`](crate::JobSubmission)).
type FallbackAnswers = BTreeMap<FallbackId, bool>;

/// Jobs the same executors could take.
#[derive(Debug, Clone)]
pub(crate) struct Class {
    /// Its waiting jobs, oldest first.
    pub(crate) jobs: BTreeSet<JobId>,
    /// Whether jobs without exclusions share it (it is then found by target and fallback answers).
    shared: bool,
    /// The eligible set and what it was worked out from, for one fleet-index generation.
    pub(crate) eligible: Option<Eligible>,
}

/// The executors that could ever take a class's jobs.
#[derive(Debug, Clone)]
pub(crate) struct Eligible {
    /// The fleet-index generation it holds for.
    pub(crate) generation: u64,
    /// Their positions.
    pub(crate) positions: Bits,
    /// How many there are: the class's scarcity.
    pub(crate) count: usize,
    /// What every agent can do for the class's target.
    pub(crate) fit: Arc<TargetFit>,
}

/// FNV-1a: every queued job looks its class up by target, and SipHash over
/// a whole [`Target`] cost more than the rest of the insertion. The keys are
/// the submitter's own targets, so a hash-flooding defence buys nothing.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Every waiting job, by class.
#[derive(Debug, Clone, Default)]
pub(crate) struct Queue {
    classes: Vec<Option<Class>>,
    vacant: Vec<usize>,
    shared: HashMap<Target, Vec<(FallbackAnswers, usize)>, BuildHasherDefault<Fnv>>,
    len: usize,
}

impl Queue {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Puts a waiting job in its class; returns the class.
    pub(crate) fn insert(
        &mut self,
        job: JobId,
        target: &Target,
        fallbacks: &FallbackAnswers,
        has_exclusions: bool,
    ) -> usize {
        self.len += 1;
        if !has_exclusions
            && let Some((_, class)) =
                self.shared.get(target).and_then(|classes| classes.iter().find(|(said, _)| said == fallbacks))
            && let Some(Some(existing)) = self.classes.get_mut(*class)
        {
            existing.jobs.insert(job);
            return *class;
        }
        let class = Class { jobs: BTreeSet::from([job]), shared: !has_exclusions, eligible: None };
        let id = match self.vacant.pop() {
            Some(id) => {
                self.classes[id] = Some(class);
                id
            }
            None => {
                self.classes.push(Some(class));
                self.classes.len() - 1
            }
        };
        if !has_exclusions {
            match self.shared.get_mut(target) {
                Some(classes) => classes.push((fallbacks.clone(), id)),
                None => {
                    self.shared.insert(target.clone(), vec![(fallbacks.clone(), id)]);
                }
            }
        }
        id
    }

    /// Takes a job out of its class (the target and fallback answers it was inserted with).
    pub(crate) fn remove(&mut self, job: JobId, class: usize, target: &Target) {
        let Some(Some(entry)) = self.classes.get_mut(class) else { return };
        if !entry.jobs.remove(&job) {
            return;
        }
        self.len -= 1;
        if entry.jobs.is_empty() {
            let shared = entry.shared;
            self.classes[class] = None;
            self.vacant.push(class);
            if shared && let Some(classes) = self.shared.get_mut(target) {
                classes.retain(|(_, id)| *id != class);
                if classes.is_empty() {
                    self.shared.remove(target);
                }
            }
        }
    }

    /// The class, while it has waiting jobs.
    pub(crate) fn class(&self, class: usize) -> Option<&Class> {
        self.classes.get(class).and_then(Option::as_ref)
    }

    pub(crate) fn class_mut(&mut self, class: usize) -> Option<&mut Class> {
        self.classes.get_mut(class).and_then(Option::as_mut)
    }

    /// The ids of the classes with waiting jobs.
    pub(crate) fn class_ids(&self) -> Vec<usize> {
        self.classes.iter().enumerate().filter(|(_, c)| c.is_some()).map(|(id, _)| id).collect()
    }
}

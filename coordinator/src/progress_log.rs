//! Progress a log can read: a pure state machine that turns a run's
//! [`BuildEvent`]s into plain lines, one per target per stage (queued,
//! compiling n/m crates at most every `compiling_interval` per target,
//! linking, validated, cached, failed), for when stderr is not a terminal.
//!
//! It reads no clock: the caller passes `now`, the time since the run
//! began, with each event, so the rate limit is tested in virtual time.

use std::collections::HashMap;
use std::time::Duration;

use rustle_engine::engine::{BuildEnd, BuildEvent};

/// How often a target's compiling line repeats when nothing else changes.
pub const DEFAULT_COMPILING_INTERVAL: Duration = Duration::from_secs(5);

/// Where one target's build stands, as far as its lines have told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Queued,
    Compiling,
    Linking,
    Finished,
}

/// What the log remembers of one target.
#[derive(Debug)]
struct TargetProgress {
    stage: Stage,
    /// When its last compiling (or linking) line was written.
    last_line_at: Option<Duration>,
}

/// Turns build events into log lines, one per target per stage, with
/// compiling lines rate-limited per target.
#[derive(Debug)]
pub struct ProgressLog {
    compiling_interval: Duration,
    targets: HashMap<String, TargetProgress>,
}

impl ProgressLog {
    /// A log that repeats a target's compiling line at most every
    /// `compiling_interval` (its first one and every stage change are
    /// always written).
    pub fn new(compiling_interval: Duration) -> Self {
        Self { compiling_interval, targets: HashMap::new() }
    }

    /// `triple` is waiting for its build: its `queued` line.
    pub fn queued(&mut self, triple: &str, now: Duration) -> String {
        self.targets.insert(triple.to_owned(), TargetProgress { stage: Stage::Queued, last_line_at: None });
        line(now, triple, "queued")
    }

    /// The line `event` is worth at `now`, if any: `None` for cargo's own
    /// lines, for compiling progress within the interval, and for anything
    /// about a target after its last line.
    pub fn handle(&mut self, event: &BuildEvent, now: Duration) -> Option<String> {
        match event {
            BuildEvent::Started { triple, expected_units } => {
                let target = self.target(triple);
                target.stage = Stage::Compiling;
                target.last_line_at = Some(now);
                let stage = match expected_units {
                    0 => "compiling".to_owned(),
                    n => format!("compiling 0/{n} crates"),
                };
                Some(line(now, triple, &stage))
            }
            BuildEvent::Progress { triple, done, total, unit } => {
                let interval = self.compiling_interval;
                let target = self.target(triple);
                if target.stage == Stage::Finished {
                    return None;
                }
                // Only the binary's own crate is left: it compiles and links.
                if *total > 0 && done + 1 == *total {
                    if target.stage == Stage::Linking {
                        return None;
                    }
                    target.stage = Stage::Linking;
                    target.last_line_at = Some(now);
                    return Some(line(now, triple, &format!("linking ({done}/{total} crates done)")));
                }
                // The binary's own artifact: the next line is how it ended.
                if target.stage == Stage::Linking && done >= total {
                    return None;
                }
                // Compiling (again, if cargo found more to do than expected).
                let due = target.last_line_at.is_none_or(|at| now.saturating_sub(at) >= interval);
                if !due {
                    return None;
                }
                target.stage = Stage::Compiling;
                target.last_line_at = Some(now);
                let unit = if unit.is_empty() { String::new() } else { format!(" ({unit})") };
                Some(line(now, triple, &format!("compiling {done}/{total} crates{unit}")))
            }
            BuildEvent::Log { .. } => None,
            BuildEvent::Note { triple, line: note } => Some(line(now, triple, note)),
            BuildEvent::Finished { triple, built_on, end } => {
                let target = self.target(triple);
                if target.stage == Stage::Finished {
                    return None;
                }
                target.stage = Stage::Finished;
                let on = built_on.as_ref().map(|place| format!(" on {place}")).unwrap_or_default();
                let stage = match end {
                    BuildEnd::Validated => format!("validated, built{on}"),
                    BuildEnd::Cached { store } => format!("cached ({store} binary cache)"),
                    BuildEnd::Failed { reason } => {
                        let first = reason.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no reason given");
                        format!("failed{on}: {first}")
                    }
                };
                Some(line(now, triple, &stage))
            }
        }
    }

    fn target(&mut self, triple: &str) -> &mut TargetProgress {
        self.targets.entry(triple.to_owned()).or_insert(TargetProgress { stage: Stage::Queued, last_line_at: None })
    }
}

/// `[  12s] TRIPLE: STAGE`.
fn line(now: Duration, triple: &str, stage: &str) -> String {
    format!("[{:>5}s] {triple}: {stage}", now.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "x86_64-unknown-linux-gnu";
    const A: &str = "aarch64-unknown-linux-gnu";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn started(triple: &str, expected_units: u64) -> BuildEvent {
        BuildEvent::Started { triple: triple.into(), expected_units }
    }

    fn progress(triple: &str, done: u64, total: u64) -> BuildEvent {
        BuildEvent::Progress { triple: triple.into(), done, total, unit: format!("crate{done}") }
    }

    fn finished(triple: &str, built_on: Option<&str>, end: BuildEnd) -> BuildEvent {
        BuildEvent::Finished { triple: triple.into(), built_on: built_on.map(str::to_owned), end }
    }

    #[test]
    fn every_stage_of_a_build_is_one_line() {
        let mut log = ProgressLog::new(secs(5));
        assert_eq!(log.queued(T, secs(0)), format!("[    0s] {T}: queued"));
        assert_eq!(log.handle(&started(T, 10), secs(1)), Some(format!("[    1s] {T}: compiling 0/10 crates")));
        assert_eq!(log.handle(&progress(T, 9, 10), secs(2)), Some(format!("[    2s] {T}: linking (9/10 crates done)")));
        // The binary's own artifact: no new stage until it is validated.
        assert_eq!(log.handle(&progress(T, 10, 10), secs(30)), None);
        let done = log.handle(&finished(T, Some("local"), BuildEnd::Validated), secs(31));
        assert_eq!(done, Some(format!("[   31s] {T}: validated, built on local")));
        // Nothing after the last line.
        assert_eq!(log.handle(&progress(T, 10, 10), secs(40)), None);
        assert_eq!(log.handle(&finished(T, Some("local"), BuildEnd::Validated), secs(41)), None);
    }

    #[test]
    fn compiling_lines_are_rate_limited_per_target() {
        let mut log = ProgressLog::new(secs(5));
        log.handle(&started(T, 100), secs(0)).expect("first line");
        log.handle(&started(A, 100), secs(3)).expect("first line");
        // Units every second for 20 s on both: one line per target per 5 s.
        let mut lines = Vec::new();
        for s in 1..=20 {
            for triple in [T, A] {
                if let Some(line) = log.handle(&progress(triple, s, 100), secs(s)) {
                    lines.push(line);
                }
            }
        }
        let of = |triple: &str| lines.iter().filter(|l| l.contains(triple)).cloned().collect::<Vec<_>>();
        assert_eq!(
            of(T),
            [5, 10, 15, 20].map(|s| format!("[{s:>5}s] {T}: compiling {s}/100 crates (crate{s})")),
            "{lines:#?}"
        );
        // A started 3 s later: its own interval, not T's.
        assert_eq!(of(A), [8, 13, 18].map(|s| format!("[{s:>5}s] {A}: compiling {s}/100 crates (crate{s})")));
    }

    #[test]
    fn a_stage_change_is_written_at_once_whatever_the_rate_limit() {
        let mut log = ProgressLog::new(secs(5));
        log.handle(&started(T, 3), secs(0)).expect("started");
        assert_eq!(log.handle(&progress(T, 1, 3), secs(1)), None, "within the interval");
        assert!(log.handle(&progress(T, 2, 3), secs(2)).expect("linking at once").contains("linking"));
        let failed = finished(T, Some("local"), BuildEnd::Failed { reason: "x: linker failed".into() });
        assert!(log.handle(&failed, secs(2)).expect("the end at once").contains("failed on local"));
    }

    #[test]
    fn a_cached_target_is_queued_then_cached() {
        let mut log = ProgressLog::new(secs(5));
        log.queued(T, secs(0));
        let line = log.handle(&finished(T, None, BuildEnd::Cached { store: "local".into() }), secs(0));
        assert_eq!(line, Some(format!("[    0s] {T}: cached (local binary cache)")));
    }

    #[test]
    fn a_failure_names_where_and_its_first_line() {
        let mut log = ProgressLog::new(secs(5));
        log.handle(&started(T, 0), secs(0)).expect("started");
        let reason = "\n  x86_64-unknown-linux-gnu: compile error in the template:\nerror[E0308]: mismatched types\n";
        let line = log.handle(&finished(T, Some("agent build-1"), BuildEnd::Failed { reason: reason.into() }), secs(7));
        assert_eq!(
            line,
            Some(format!(
                "[    7s] {T}: failed on agent build-1: x86_64-unknown-linux-gnu: compile error in the template:"
            ))
        );
        // Nothing could take it: no place to name.
        let mut log = ProgressLog::new(secs(5));
        let line = log.handle(&finished(A, None, BuildEnd::Failed { reason: "no agent".into() }), secs(1));
        assert_eq!(line, Some(format!("[    1s] {A}: failed: no agent")));
    }

    #[test]
    fn an_agents_start_without_a_unit_count_and_cargo_lines_write_nothing_extra() {
        let mut log = ProgressLog::new(secs(5));
        assert_eq!(log.handle(&started(T, 0), secs(0)), Some(format!("[    0s] {T}: compiling")));
        assert_eq!(log.handle(&BuildEvent::Log { triple: T.into(), line: "Compiling serde".into() }, secs(9)), None);
        // A unit without a name (an agent's progress).
        let unnamed = BuildEvent::Progress { triple: T.into(), done: 4, total: 40, unit: String::new() };
        assert_eq!(log.handle(&unnamed, secs(9)), Some(format!("[    9s] {T}: compiling 4/40 crates")));
    }

    #[test]
    fn a_retry_elsewhere_starts_compiling_again() {
        let mut log = ProgressLog::new(secs(5));
        log.handle(&started(T, 10), secs(0)).expect("started");
        log.handle(&progress(T, 9, 10), secs(1)).expect("linking");
        // The agent was lost; the job was dispatched again.
        assert_eq!(log.handle(&started(T, 10), secs(2)), Some(format!("[    2s] {T}: compiling 0/10 crates")));
        assert!(log.handle(&progress(T, 9, 10), secs(3)).expect("linking again").contains("linking"));
    }

    #[test]
    fn more_units_than_expected_go_back_to_compiling() {
        let mut log = ProgressLog::new(secs(5));
        log.handle(&started(T, 10), secs(0)).expect("started");
        log.handle(&progress(T, 9, 10), secs(1)).expect("linking");
        // cargo had more to do: the total grew past the expectation.
        assert_eq!(log.handle(&progress(T, 10, 20), secs(3)), None, "within the interval");
        let line = log.handle(&progress(T, 11, 20), secs(6)).expect("compiling again");
        assert_eq!(line, format!("[    6s] {T}: compiling 11/20 crates (crate11)"));
        assert!(log.handle(&progress(T, 19, 20), secs(7)).expect("linking at last").contains("linking"));
    }
}

//! What the host and the builder inside a container say to each other: the
//! job file the host uploads, the progress lines the builder prints, the
//! result file it leaves. The only place these forms meet the engine's.

use rustle_engine::engine::{BuildEvent, CompilationMetadata};
use rustle_targets::{CompilationOptimization, TargetSpecification};
use serde::{Deserialize, Serialize};

/// The job file (`job.json`) next to the source bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerJob {
    /// The host's template id: names the template's warm tree in the work volume.
    pub template_key: String,
    /// The target, with its settings.
    pub target: TargetSpecification,
    /// Overrides of the template's release profile.
    pub optimization: CompilationOptimization,
    /// rustc incremental compilation for the template's own crates.
    pub incremental: bool,
    /// The build's deadline in seconds.
    pub deadline_secs: u64,
}

/// One progress line of the builder (stdout, one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressLine {
    /// cargo started.
    Started {
        /// Units expected.
        expected_units: u64,
    },
    /// cargo finished a unit.
    Progress {
        /// Units done.
        done: u64,
        /// Units expected.
        total: u64,
        /// The unit.
        unit: String,
    },
    /// A line of cargo's stderr.
    Log {
        /// The line.
        line: String,
    },
    /// A line for the user about the build environment.
    Note {
        /// The line.
        line: String,
    },
}

impl ProgressLine {
    /// The line for an engine event inside the container (`None` for the
    /// ones only the façade sends).
    pub fn from_event(event: &BuildEvent) -> Option<Self> {
        Some(match event {
            BuildEvent::Started { expected_units, .. } => Self::Started { expected_units: *expected_units },
            BuildEvent::Progress { done, total, unit, .. } => {
                Self::Progress { done: *done, total: *total, unit: unit.clone() }
            }
            BuildEvent::Log { line, .. } => Self::Log { line: line.clone() },
            BuildEvent::Note { line, .. } => Self::Note { line: line.clone() },
            BuildEvent::Finished { .. } => return None,
        })
    }

    /// The engine event on the host, for `triple`.
    pub fn into_event(self, triple: &str) -> BuildEvent {
        let triple = triple.to_owned();
        match self {
            Self::Started { expected_units } => BuildEvent::Started { triple, expected_units },
            Self::Progress { done, total, unit } => BuildEvent::Progress { triple, done, total, unit },
            Self::Log { line } => BuildEvent::Log { triple, line },
            Self::Note { line } => BuildEvent::Note { triple, line },
        }
    }
}

/// The result file (`out/result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ContainerResult {
    /// A binary, in `out/<file_name>`.
    Built {
        /// The binary's file name.
        file_name: String,
        /// Its SHA-256 as the builder computed it (checked again on the host).
        checksum: String,
        /// What built it, inside the container.
        metadata: CompilationMetadata,
    },
    /// No binary.
    Failed {
        /// Whether the template's own code failed (retrying elsewhere cannot help).
        compile_failure: bool,
        /// The engine's message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_crosses_the_container_boundary_unchanged() {
        let triple = "aarch64-unknown-linux-gnu";
        let events = [
            BuildEvent::Started { triple: triple.into(), expected_units: 18 },
            BuildEvent::Progress { triple: triple.into(), done: 3, total: 18, unit: "serde".into() },
            BuildEvent::Log { triple: triple.into(), line: "   Compiling cc v1.2.0".into() },
            BuildEvent::Note { triple: triple.into(), line: "building image rustle-cross/linux-gnu:abc".into() },
        ];
        for event in events {
            let line = ProgressLine::from_event(&event).expect("an engine event has a line");
            let text = serde_json::to_string(&line).expect("encode");
            let back: ProgressLine = serde_json::from_str(&text).expect("decode");
            assert_eq!(back.into_event(triple), event);
        }
        let finished = BuildEvent::Finished {
            triple: triple.into(),
            built_on: None,
            end: rustle_engine::engine::BuildEnd::Validated,
        };
        assert_eq!(ProgressLine::from_event(&finished), None, "only the façade sends Finished");
    }
}

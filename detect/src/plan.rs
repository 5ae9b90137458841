//! The result of detection: which hosts need which target, why, the glibc
//! floor of each group, what could not be resolved and what contradicts
//! itself; rendered as a table or serialized as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rustle_targets::{GlibcVersion, TargetSpecification};
use serde::{Serialize, Serializer};

use crate::error::TargetDetectionError;

/// Where a host's target came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvidenceSource {
    /// `rustle_target_triple` / `target_triple` on the host or its groups.
    Explicit {
        /// The variable.
        variable: String,
    },
    /// `inventory.host_facts` of a rustle-parse JSON inventory.
    InventoryFacts,
    /// `ansible_*` facts set as host variables.
    HostVariables,
    /// An Ansible jsonfile fact cache file.
    FactCache {
        /// The file.
        file: PathBuf,
    },
    /// A live SSH probe.
    Probe {
        /// The fact cache file the result was written to, if any.
        cached_to: Option<PathBuf>,
    },
}

impl EvidenceSource {
    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Self::Explicit { variable } => format!("explicit ({variable})"),
            Self::InventoryFacts => "inventory host_facts".into(),
            Self::HostVariables => "host variable facts".into(),
            Self::FactCache { .. } => "fact cache".into(),
            Self::Probe { .. } => "ssh probe".into(),
        }
    }
}

/// Why a host got its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The host's triple (without glibc suffix).
    pub triple: String,
    /// The address it is reached at.
    pub address: String,
    /// Where the target came from.
    pub source: EvidenceSource,
    /// The facts or values used.
    pub details: String,
    /// The host's glibc, when known (glibc targets only).
    pub glibc: Option<GlibcVersion>,
    /// The host's macOS version (deployment target), when known.
    pub macos_version: Option<String>,
}

/// Two sources that disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conflict {
    /// An explicit triple that contradicts the host's facts; the explicit one is used.
    ExplicitVersusFacts {
        /// The host.
        host: String,
        /// The explicit triple.
        explicit: String,
        /// The variable it came from.
        variable: String,
        /// The triple the facts give.
        facts_triple: String,
        /// Where the facts came from.
        facts_origin: String,
    },
    /// A group that must be of one target but mixes several.
    MixedGroup {
        /// The group.
        group: String,
        /// Its hosts by triple.
        triples: BTreeMap<String, Vec<String>>,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExplicitVersusFacts { host, explicit, variable, facts_triple, facts_origin } => write!(
                f,
                "{host}: {variable} says {explicit} but {facts_origin} say {facts_triple}; using {explicit} (fix one of them)"
            ),
            Self::MixedGroup { group, triples } => {
                let sides: Vec<String> =
                    triples.iter().map(|(t, hosts)| format!("{t} ({})", hosts.join(", "))).collect();
                write!(f, "group {group} must have one target but mixes {}", sides.join(" and "))
            }
        }
    }
}

/// Hosts grouped by target, with the evidence for each and the failures.
#[derive(Debug, Default, Serialize)]
pub struct TargetPlan {
    /// The distinct targets, each with the glibc floor of its hosts.
    pub targets: Vec<TargetSpecification>,
    /// Hosts of each triple.
    pub hosts_by_triple: BTreeMap<String, Vec<String>>,
    /// The oldest glibc among the hosts of each glibc triple (hosts whose
    /// glibc is unknown do not lower it; their evidence says so).
    pub glibc_floor_by_triple: BTreeMap<String, GlibcVersion>,
    /// The oldest macOS version among the hosts of each Apple triple.
    pub macos_deployment_target_by_triple: BTreeMap<String, String>,
    /// Why each resolved host got its triple.
    pub evidence: BTreeMap<String, Evidence>,
    /// Hosts without a target, with the reason.
    #[serde(serialize_with = "errors_as_text")]
    pub unresolved: BTreeMap<String, TargetDetectionError>,
    /// Contradictions found.
    pub conflicts: Vec<Conflict>,
}

fn errors_as_text<S: Serializer>(errors: &BTreeMap<String, TargetDetectionError>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(errors.iter().map(|(host, e)| (host, e.to_string())))
}

fn version_key(version: &str) -> Vec<u32> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

impl TargetPlan {
    /// Builds the plan from per-host results.
    pub fn from_hosts(
        evidence: BTreeMap<String, Evidence>,
        unresolved: BTreeMap<String, TargetDetectionError>,
        conflicts: Vec<Conflict>,
    ) -> Self {
        let mut hosts_by_triple: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut glibc_floor_by_triple: BTreeMap<String, GlibcVersion> = BTreeMap::new();
        let mut macos: BTreeMap<String, String> = BTreeMap::new();
        for (host, e) in &evidence {
            hosts_by_triple.entry(e.triple.clone()).or_default().push(host.clone());
            if let Some(glibc) = e.glibc {
                let floor = glibc_floor_by_triple.entry(e.triple.clone()).or_insert(glibc);
                *floor = (*floor).min(glibc);
            }
            if let Some(version) = &e.macos_version {
                let current = macos.entry(e.triple.clone()).or_insert_with(|| version.clone());
                if version_key(version) < version_key(current) {
                    *current = version.clone();
                }
            }
        }
        let targets = hosts_by_triple
            .keys()
            .filter_map(|triple| TargetSpecification::from_triple(triple).ok())
            .map(|mut spec| {
                spec.glibc_floor = glibc_floor_by_triple.get(&spec.triple).copied();
                spec
            })
            .collect();
        Self {
            targets,
            hosts_by_triple,
            glibc_floor_by_triple,
            macos_deployment_target_by_triple: macos,
            evidence,
            unresolved,
            conflicts,
        }
    }

    /// Whether every host has a target.
    pub fn is_complete(&self) -> bool {
        self.unresolved.is_empty()
    }

    /// The target a host gets (with its group's glibc floor).
    pub fn target_for_host(&self, host: &str) -> Option<&TargetSpecification> {
        let triple = &self.evidence.get(host)?.triple;
        self.targets.iter().find(|t| &t.triple == triple)
    }

    /// Host, address, triple, source and glibc per host, grouped by
    /// triple; then the unresolved hosts with their reasons, then conflicts.
    pub fn render_table(&self) -> String {
        let header = ["HOST", "ADDRESS", "TRIPLE", "SOURCE", "GLIBC"];
        let mut groups: Vec<(String, Vec<[String; 5]>)> = Vec::new();
        for (triple, hosts) in &self.hosts_by_triple {
            let rows = hosts
                .iter()
                .filter_map(|h| self.evidence.get(h).map(|e| (h, e)))
                .map(|(host, e)| {
                    let glibc = match (&e.glibc, &e.macos_version) {
                        (Some(g), _) => g.to_string(),
                        (None, Some(mac)) => format!("macOS {mac}"),
                        (None, None) if triple.contains("-linux-gnu") => "?".into(),
                        (None, None) => "-".into(),
                    };
                    [host.clone(), e.address.clone(), triple.clone(), e.source.label(), glibc]
                })
                .collect();
            groups.push((triple.clone(), rows));
        }
        let mut widths = header.map(str::len);
        for row in groups.iter().flat_map(|(_, rows)| rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = String::new();
        if !groups.is_empty() {
            out.push_str(&line(&header.map(String::from)));
        }
        for (triple, rows) in &groups {
            let floor =
                self.glibc_floor_by_triple.get(triple).map(|f| format!(", glibc floor {f}")).unwrap_or_default();
            let mac = self
                .macos_deployment_target_by_triple
                .get(triple)
                .map(|v| format!(", deployment target macOS {v}"))
                .unwrap_or_default();
            out.push_str(&format!("# {triple}: {} host(s){floor}{mac}\n", rows.len()));
            for row in rows {
                out.push_str(&line(row));
            }
        }
        if !self.unresolved.is_empty() {
            out.push_str(&format!("\nunresolved ({}):\n", self.unresolved.len()));
            for (host, error) in &self.unresolved {
                out.push_str(&format!("  {host}: {error}\n"));
            }
        }
        if !self.conflicts.is_empty() {
            out.push_str(&format!("\nconflicts ({}):\n", self.conflicts.len()));
            for conflict in &self.conflicts {
                out.push_str(&format!("  {conflict}\n"));
            }
        }
        if out.is_empty() {
            out.push_str("no hosts\n");
        }
        out
    }
}

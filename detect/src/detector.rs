//! [`TargetDetector`]: per host, explicit triple, then cached facts, then
//! (opt-in) a live probe, else an error naming the host; for an inventory,
//! all hosts in parallel (probes bounded) into a [`TargetPlan`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustle_targets::TargetSpecification;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{FactsError, ProbeError, TargetDetectionError};
use crate::fact_cache::FactCache;
use crate::facts::{Facts, FactsTarget, WindowsAbi, normalize_facts};
use crate::inventory::{ConnectionConfig, FactsOrigin, HostConfig, ParsedInventory};
use crate::plan::{Conflict, Evidence, EvidenceSource, TargetPlan};
use crate::probe::{ArchitectureInfo, SshProber};

/// Per-run choices of detection (the CLI's flags).
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// An Ansible jsonfile fact cache directory (`--facts DIR`).
    pub fact_cache_dir: Option<PathBuf>,
    /// Probe hosts over SSH when nothing else says their target (`--probe`).
    pub probe: bool,
    /// Write probe results into `fact_cache_dir` (when set).
    pub write_fact_cache: bool,
    /// Fail the whole detection on the first unresolved host.
    pub strict: bool,
    /// At most this many probes at once.
    pub max_parallel_probes: usize,
    /// Groups whose hosts must all have one target (besides groups with
    /// `rustle_single_target: true`).
    pub single_target_groups: Vec<String>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            fact_cache_dir: None,
            probe: false,
            write_fact_cache: true,
            strict: false,
            max_parallel_probes: 8,
            single_target_groups: Vec::new(),
        }
    }
}

/// One host's outcome.
#[derive(Debug, Clone)]
pub struct HostDetection {
    /// The host's target (its `glibc_floor` is the host's own glibc).
    pub spec: TargetSpecification,
    /// Why.
    pub evidence: Evidence,
    /// A contradiction found on the way, if any.
    pub conflict: Option<Conflict>,
}

/// Detects targets from inventories, facts and probes.
#[derive(Debug, Clone, Default)]
pub struct TargetDetector {
    prober: SshProber,
    windows_abi: WindowsAbi,
}

impl TargetDetector {
    /// A detector with the system `ssh`, a 30 s probe deadline and MSVC for Windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses another ssh client (a wrapper, a full path).
    pub fn with_ssh_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.prober.ssh_program = program.into();
        self
    }

    /// Sets the deadline of one whole probe (connect included).
    pub fn with_probe_deadline(mut self, deadline: Duration) -> Self {
        self.prober.deadline = deadline;
        self
    }

    /// Maps Windows hosts to the MSVC (default) or GNU toolchain.
    pub fn with_windows_abi(mut self, abi: WindowsAbi) -> Self {
        self.windows_abi = abi;
        self
    }

    /// The target a set of facts describes (glibc floor = the host's glibc).
    pub fn detect_from_facts(&self, facts: &Facts) -> Result<TargetSpecification, FactsError> {
        normalize_facts(facts, self.windows_abi).map(|t| t.spec)
    }

    /// Probes `host` (an address or ssh alias) with the rest of `connection`.
    pub async fn probe_host_architecture(
        &self,
        host: &str,
        connection: &ConnectionConfig,
    ) -> Result<ArchitectureInfo, ProbeError> {
        let connection = ConnectionConfig { host: host.to_owned(), ..connection.clone() };
        self.prober.probe(&connection).await
    }

    /// The target of one host: explicit triple, cached facts, probe (if
    /// enabled), else [`TargetDetectionError::NoSource`].
    pub async fn detect_from_host(
        &self,
        host: &HostConfig,
        options: &DetectOptions,
    ) -> Result<HostDetection, TargetDetectionError> {
        self.detect_host(host, options, None).await
    }

    async fn detect_host(
        &self,
        host: &HostConfig,
        options: &DetectOptions,
        probe_slots: Option<&Semaphore>,
    ) -> Result<HostDetection, TargetDetectionError> {
        let name = host.name.clone();
        let cache = options.fact_cache_dir.as_ref().map(FactCache::new);
        // Facts the inventory or the cache hold, with their origin.
        let cached = match &cache {
            Some(cache) => cache
                .read(&host.name)
                .map_err(|source| TargetDetectionError::FactCache { host: name.clone(), source })?
                .map(|facts| {
                    let file = cache.file_for(&host.name).unwrap_or_default();
                    (facts, EvidenceSource::FactCache { file: file.clone() }, format!("fact cache {}", file.display()))
                }),
            None => None,
        }
        .or_else(|| {
            let facts = host.cached_facts.clone()?;
            let origin = host.facts_origin.unwrap_or(FactsOrigin::HostVariables);
            let source = match origin {
                FactsOrigin::InventoryHostFacts => EvidenceSource::InventoryFacts,
                FactsOrigin::HostVariables => EvidenceSource::HostVariables,
            };
            Some((facts, source, origin.describe().to_owned()))
        });

        if let Some(explicit) = &host.target_triple {
            let variable = host.target_triple_variable.clone().unwrap_or_else(|| "target_triple".into());
            let spec = TargetSpecification::from_triple(explicit).map_err(|source| {
                TargetDetectionError::InvalidTriple { host: name.clone(), variable: variable.clone(), source }
            })?;
            let conflict = cached.as_ref().and_then(|(facts, _, origin)| {
                let from_facts = normalize_facts(facts, self.windows_abi).ok()?;
                (from_facts.spec.triple != spec.triple).then(|| Conflict::ExplicitVersusFacts {
                    host: name.clone(),
                    explicit: spec.triple.clone(),
                    variable: variable.clone(),
                    facts_triple: from_facts.spec.triple.clone(),
                    facts_origin: origin.clone(),
                })
            });
            let evidence = Evidence {
                triple: spec.triple.clone(),
                address: host.address.clone(),
                source: EvidenceSource::Explicit { variable: variable.clone() },
                details: format!("{variable}={explicit}"),
                glibc: spec.glibc_floor,
                macos_version: None,
            };
            return Ok(HostDetection { spec, evidence, conflict });
        }

        if let Some((facts, source, origin)) = cached {
            let target = normalize_facts(&facts, self.windows_abi).map_err(|source| TargetDetectionError::Facts {
                host: name.clone(),
                origin,
                source,
            })?;
            return Ok(detection(host, target, source));
        }

        if !options.probe {
            return Err(TargetDetectionError::NoSource { host: name });
        }
        let info = {
            let _permit = match probe_slots {
                Some(slots) => slots.acquire().await.ok(),
                None => None,
            };
            self.probe_host_architecture(&host.address, &host.connection)
                .await
                .map_err(|source| TargetDetectionError::Probe { host: name.clone(), source })?
        };
        let facts = info.to_facts();
        let target = normalize_facts(&facts, self.windows_abi).map_err(|source| TargetDetectionError::Facts {
            host: name.clone(),
            origin: "probe result".into(),
            source,
        })?;
        let cached_to = match (&cache, options.write_fact_cache) {
            (Some(cache), true) => match cache.write(&host.name, &facts) {
                Ok(path) => Some(path),
                Err(e) => {
                    tracing::warn!(host = %name, error = %e, "could not write the probe result to the fact cache");
                    None
                }
            },
            _ => None,
        };
        Ok(detection(host, target, EvidenceSource::Probe { cached_to }))
    }

    /// Detects every host of the inventory: hosts without a target land in
    /// `unresolved` (or, in strict mode, fail the run).
    pub async fn detect_from_inventory(
        &self,
        inventory: &ParsedInventory,
        options: &DetectOptions,
    ) -> Result<TargetPlan, TargetDetectionError> {
        let slots = Arc::new(Semaphore::new(options.max_parallel_probes.max(1)));
        let mut tasks = JoinSet::new();
        for host in inventory.hosts.values() {
            let (detector, host, options, slots) = (self.clone(), host.clone(), options.clone(), Arc::clone(&slots));
            tasks.spawn(async move {
                let result = detector.detect_host(&host, &options, Some(&slots)).await;
                (host.name, result)
            });
        }
        let mut evidence = BTreeMap::new();
        let mut unresolved = BTreeMap::new();
        let mut conflicts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((host, result)) = joined else { continue };
            match result {
                Ok(found) => {
                    conflicts.extend(found.conflict);
                    evidence.insert(host, found.evidence);
                }
                Err(error) => {
                    if options.strict {
                        tasks.abort_all();
                        return Err(TargetDetectionError::Strict { count: 1, first: error.to_string() });
                    }
                    unresolved.insert(host, error);
                }
            }
        }
        conflicts.extend(mixed_groups(inventory, options, &evidence));
        Ok(TargetPlan::from_hosts(evidence, unresolved, conflicts))
    }

    /// The distinct targets of an inventory (the spec's
    /// `detect_targets_from_inventory`); the plan has the grouping.
    pub async fn detect_targets(
        &self,
        inventory: &ParsedInventory,
        options: &DetectOptions,
    ) -> Result<Vec<TargetSpecification>, TargetDetectionError> {
        Ok(self.detect_from_inventory(inventory, options).await?.targets)
    }
}

fn detection(host: &HostConfig, target: FactsTarget, source: EvidenceSource) -> HostDetection {
    let evidence = Evidence {
        triple: target.spec.triple.clone(),
        address: host.address.clone(),
        source,
        details: target.details,
        glibc: target.glibc,
        macos_version: target.macos_version,
    };
    HostDetection { spec: target.spec, evidence, conflict: None }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1"),
        Value::Number(n) => n.as_i64() == Some(1),
        _ => false,
    }
}

fn mixed_groups(
    inventory: &ParsedInventory,
    options: &DetectOptions,
    evidence: &BTreeMap<String, Evidence>,
) -> Vec<Conflict> {
    let mut groups: Vec<&str> = options.single_target_groups.iter().map(String::as_str).collect();
    groups.extend(
        inventory
            .groups
            .values()
            .filter(|g| g.vars.get("rustle_single_target").is_some_and(truthy))
            .map(|g| g.name.as_str()),
    );
    groups.sort_unstable();
    groups.dedup();
    let mut conflicts = Vec::new();
    for group in groups {
        let mut triples: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for host in inventory.hosts_of_group(group) {
            if let Some(e) = evidence.get(host) {
                triples.entry(e.triple.clone()).or_default().push(host.to_owned());
            }
        }
        if triples.len() > 1 {
            conflicts.push(Conflict::MixedGroup { group: group.to_owned(), triples });
        }
    }
    conflicts
}

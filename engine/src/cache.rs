//! The binary cache, [`CompilationCache`]: finished, validated binaries
//! stored under a key over everything that can change them, so a repeated
//! build returns at once and never returns a wrong or corrupt binary.
//!
//! **Key** ([`CacheKeyInputs`], schema [`SCHEMA`]): SHA-256 over a canonical
//! JSON of the template's files (relative path and content; not mtimes, not
//! where the template lives), the full target (with its glibc floor; a
//! custom spec by its content), the toolchain (`rustc -V` with its commit
//! hash, `cargo -V`, host), the std source, the route (linker, C compiler
//! and zig by their `--version`), and the exact cargo invocation the plan
//! runs (arguments and environment: features, rustflags, profile overrides,
//! linker variables, `SOURCE_DATE_EPOCH`), with the paths that only say
//! where things are on this machine left out (the target dir, PATH) or
//! written as placeholders (`<template>`, `<target-dir>`, `<cargo-home>`,
//! `<rust-src>`: the directories every build remaps, so that they are not
//! in the binary either, see [`BuildJob::path_remaps`]; and `<cache>`). The same key thus
//! means the same binary wherever it was built.
//!
//! **Store** (under `<cache>/binaries/`): `blobs/<sha256>` holds a binary by
//! its content, `entries/<key>.json` says which blob a key maps to, with the
//! binary's metadata and validation. Both are written to a temporary file,
//! synced and renamed into place, the blob first, so a reader sees a whole
//! entry or none; every read checks the blob's SHA-256 and size and the
//! binary's header against the target, and an entry that fails is removed
//! and reported, never served. An entry's mtime is its last use; [`CompilationCache::prune`]
//! removes the least recently used entries above a size cap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustle_process::ProcessSpec;
use rustle_targets::BuildRequest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{BuildJob, CompilationMetadata, CompiledBinary, PathRemap};
use crate::shared_cache::SharedTier;
use crate::template::hex;
use crate::toolchain::LinkerPlan;
use crate::validate::{BinaryReport, validate_binary};

/// Version of the key schema and the entry format; bumping it makes every
/// older entry a miss. 2: builds are reproducible (remapped paths,
/// `SOURCE_DATE_EPOCH`) and keys name those paths by placeholder. 3: an
/// entry's metadata says what each C library was linked from, and how.
pub const SCHEMA: u32 = 4;

/// Environment variables of the cargo invocation that say where things are
/// on this machine, not what is built.
const LOCATION_ENV: &[&str] = &["PATH", "CARGO_TARGET_DIR", "RUSTC", "CARGO_TERM_COLOR"];

/// A cache key: lower-case hex SHA-256 of the canonical [`CacheKeyInputs`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheKey(pub String);

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One template file as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateFile {
    /// Path relative to the template root, `/`-separated.
    pub path: String,
    /// SHA-256 of its content.
    pub sha256: String,
}

/// The toolchain as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainIdentity {
    /// Its name (`stable`, `system-rustc-web`).
    pub name: String,
    /// `rustc -V` (release, commit hash and date).
    pub rustc: String,
    /// `cargo -V`.
    pub cargo: String,
    /// The host triple.
    pub host: String,
}

/// Everything a cached binary depends on (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKeyInputs {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The target's full name (with its glibc floor).
    pub target: String,
    /// SHA-256 of a custom target-spec file's content.
    pub custom_spec_sha256: Option<String>,
    /// The template's files, sorted by path.
    pub template: Vec<TemplateFile>,
    /// The toolchain.
    pub toolchain: ToolchainIdentity,
    /// Where std comes from (`Prebuilt` or `BuildStd`).
    pub std: String,
    /// The linker, C compiler and zig, each with its `--version`.
    pub route: Vec<String>,
    /// The cargo program's file name and its arguments (the manifest and
    /// custom-spec paths written relative).
    pub cargo_args: Vec<String>,
    /// The environment the plan sets for cargo, without location variables.
    pub cargo_env: BTreeMap<String, String>,
}

impl CacheKeyInputs {
    /// The inputs of `job` run by `command` (its exact cargo invocation,
    /// [`BuildJob::cargo_command`]). Reads the template's files and asks the
    /// route's tools for their versions (once per process and tool). The
    /// directories the job remaps ([`BuildJob::key_placeholders`]: template,
    /// target dir, cache, CARGO_HOME, rust-src) are written as placeholders
    /// wherever an argument or variable names them, so the key does not say
    /// where they are.
    pub async fn of(job: &BuildJob<'_>, command: &ProcessSpec) -> std::io::Result<Self> {
        let (template, plan) = (job.template(), job.plan());
        let remaps = job.key_placeholders();
        let files = template_files(&template.dir)?;
        let custom_spec_sha256 = match &plan.target.custom_spec {
            Some(path) => Some(hex(&Sha256::digest(std::fs::read(path)?))),
            None => None,
        };
        let manifest = template.manifest.display().to_string();
        let custom = plan.target.custom_spec.as_ref().map(|p| p.display().to_string());
        let mut cargo_args =
            vec![command.program().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()];
        cargo_args.extend(command.get_args().iter().map(|arg| {
            let arg = arg.to_string_lossy().into_owned();
            if arg == manifest {
                "Cargo.toml".to_owned()
            } else if custom.as_deref() == Some(arg.as_str()) {
                "<custom target spec>".to_owned()
            } else {
                placeholders(&arg, &remaps)
            }
        }));
        let cargo_env = command
            .get_envs()
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .filter(|(k, _)| !LOCATION_ENV.contains(&k.as_str()))
            .map(|(k, v)| (k, placeholders(&v, &remaps)))
            .collect();
        let toolchain = &plan.toolchain;
        Ok(Self {
            schema: SCHEMA,
            target: plan.target.triple_with_floor(),
            custom_spec_sha256,
            template: files,
            toolchain: ToolchainIdentity {
                name: toolchain.name.clone(),
                rustc: toolchain.rustc_version.clone(),
                cargo: toolchain.cargo_version.clone(),
                host: toolchain.host.clone(),
            },
            std: format!("{:?}", plan.std),
            route: route_identity(&plan.linker).await,
            cargo_args,
            cargo_env,
        })
    }

    /// The key of these inputs.
    pub fn key(&self) -> CacheKey {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        CacheKey(hex(&Sha256::digest(&canonical)))
    }
}

/// `text` with each directory of `remaps` written as its placeholder where
/// a path names it (the match ends the text or is followed by `/`, `=`,
/// `:`, `,`, `;`, a quote or whitespace). Longest first: a generated
/// template inside the cache is `<template>`, not `<cache>/templates/...`.
fn placeholders(text: &str, remaps: &[PathRemap]) -> String {
    let mut by_length: Vec<&PathRemap> = remaps.iter().collect();
    by_length.sort_by_key(|r| std::cmp::Reverse(r.from.as_os_str().len()));
    let mut text = text.to_owned();
    for remap in by_length {
        let from = remap.from.to_string_lossy();
        if from.is_empty() || from == "/" {
            continue;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(from.as_ref()) {
            let after = &rest[at + from.len()..];
            let ends = after.chars().next().is_none_or(|c| "/=:,;\"'".contains(c) || c.is_whitespace());
            out.push_str(&rest[..at]);
            out.push_str(if ends { remap.placeholder } else { &from });
            rest = after;
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// The template's files, sorted by relative path: everything under its root
/// except cargo's `target/` and `.git/`.
fn template_files(root: &Path) -> std::io::Result<Vec<TemplateFile>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&relative))? {
            let entry = entry?;
            let name = entry.file_name();
            let path = relative.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !(relative.as_os_str().is_empty() && name == "target") && name != ".git" {
                    pending.push(path);
                }
            } else if kind.is_file() || kind.is_symlink() {
                let content = std::fs::read(root.join(&path))?;
                let path = path.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join("/");
                files.push(TemplateFile { path, sha256: hex(&Sha256::digest(&content)) });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The linker, C compiler and zig of a route, each with its version line.
async fn route_identity(linker: &LinkerPlan) -> Vec<String> {
    match linker {
        LinkerPlan::Host => vec![format!("cc: {}", tool_version(Path::new("cc"), "--version").await)],
        LinkerPlan::Cross { linker, cc, ar: _ } => {
            let mut route = vec![format!("linker {}: {}", linker.display(), tool_version(linker, "--version").await)];
            if cc != linker {
                route.push(format!("cc {}: {}", cc.display(), tool_version(cc, "--version").await));
            }
            route
        }
        LinkerPlan::Zig { cargo_zigbuild, zig } => vec![
            format!("zig: {}", tool_version(zig, "version").await),
            format!("cargo-zigbuild: {}", tool_version(cargo_zigbuild, "--version").await),
        ],
    }
}

/// The first line `tool arg` prints, asked once per process and tool.
async fn tool_version(tool: &Path, arg: &str) -> String {
    static VERSIONS: OnceLock<Mutex<HashMap<(PathBuf, String), String>>> = OnceLock::new();
    let memo = VERSIONS.get_or_init(Mutex::default);
    let id = (tool.to_path_buf(), arg.to_owned());
    if let Some(known) = memo.lock().ok().and_then(|m| m.get(&id).cloned()) {
        return known;
    }
    let version = match ProcessSpec::new(tool).arg(arg).timeout(Duration::from_secs(20)).output().await {
        Ok(out) if out.status.success() => out.stdout_text().lines().next().unwrap_or_default().trim().to_owned(),
        Ok(out) => format!("unknown ({})", out.status),
        Err(error) => format!("unknown ({error})"),
    };
    if let Ok(mut memo) = memo.lock() {
        memo.insert(id, version.clone());
    }
    version
}

/// Where a binary from a cache came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHit {
    /// The store that had it: `local`, or `agent NAME` for an agent's own.
    pub store: String,
    /// Its key in that store (an agent's key is computed and kept there).
    pub key: Option<CacheKey>,
    /// When it was built (seconds since the Unix epoch), where known.
    pub built_at: Option<u64>,
    /// Who built it (`local`, or `agent NAME`).
    pub built_by: String,
}

/// An entry's record: which blob a key maps to, and what the binary is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Its key.
    pub key: CacheKey,
    /// What the key was computed from.
    pub inputs: CacheKeyInputs,
    /// The binary's file name.
    pub file_name: String,
    /// SHA-256 of the binary (the blob's name).
    pub checksum: String,
    /// Its size in bytes.
    pub size: u64,
    /// How long it took to build.
    pub compile_time_ms: u64,
    /// What built it.
    pub metadata: CompilationMetadata,
    /// Its header check.
    pub validation: BinaryReport,
    /// When it was built (seconds since the Unix epoch).
    pub built_at: u64,
    /// Who built it.
    pub built_by: String,
}

impl CacheEntry {
    /// The record of `binary`, built by `built_by` now, under the key of `inputs`.
    pub fn new(inputs: &CacheKeyInputs, binary: &CompiledBinary, built_by: &str) -> Self {
        Self {
            schema: SCHEMA,
            key: inputs.key(),
            inputs: inputs.clone(),
            file_name: binary.file_name.clone(),
            checksum: binary.checksum.clone(),
            size: binary.size,
            compile_time_ms: u64::try_from(binary.compilation_time.as_millis()).unwrap_or(u64::MAX),
            metadata: binary.metadata.clone(),
            validation: binary.validation.clone(),
            built_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            built_by: built_by.to_owned(),
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A verified binary.
    Hit(Box<CompiledBinary>),
    /// No entry.
    Miss,
    /// An entry that failed verification; it was removed.
    Corrupt {
        /// What was wrong.
        reason: String,
    },
}

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Entries (keys).
    pub entries: u64,
    /// Distinct binaries.
    pub blobs: u64,
    /// Bytes of the binaries.
    pub bytes: u64,
}

/// The binary cache of one machine (see the module docs).
#[derive(Debug, Clone)]
pub struct CompilationCache {
    root: PathBuf,
    max_bytes: u64,
    /// A store shared with other machines, behind this one.
    pub(crate) shared: Option<SharedTier>,
}

impl CompilationCache {
    /// The cache under `cache_dir` (`<cache_dir>/binaries`), keeping at most
    /// `max_bytes` of binaries after each store.
    pub fn open(cache_dir: &Path, max_bytes: u64) -> Self {
        Self { root: cache_dir.join("binaries"), max_bytes, shared: None }
    }

    /// This cache with `shared` behind it: lookups this store misses go
    /// there, stores go to both (see [`crate::shared_cache`]).
    pub fn with_shared(self, shared: Option<SharedTier>) -> Self {
        Self { shared, ..self }
    }

    /// Where it lives.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.root.join("entries").join(format!("{key}.json"))
    }

    fn blob_path(&self, checksum: &str) -> PathBuf {
        self.root.join("blobs").join(checksum)
    }

    /// The binary stored under `key` for `request`, verified; a corrupt
    /// entry is removed and reported.
    pub fn get(&self, key: &CacheKey, request: &BuildRequest) -> Lookup {
        let entry_path = self.entry_path(key);
        let text = match std::fs::read(&entry_path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(error) => return Lookup::Corrupt { reason: format!("cannot read {}: {error}", entry_path.display()) },
        };
        let corrupt = |reason: String| {
            let _ = std::fs::remove_file(&entry_path);
            Lookup::Corrupt { reason }
        };
        let entry = match parse_entry(&text, key) {
            Ok(entry) => entry,
            Err(reason) => return corrupt(format!("entry {}: {reason}", entry_path.display())),
        };
        let blob_path = self.blob_path(&entry.checksum);
        let data = match std::fs::read(&blob_path) {
            Ok(data) => data,
            Err(error) => return corrupt(format!("its binary {} cannot be read: {error}", blob_path.display())),
        };
        match verified_hit(entry, data, request, "local") {
            Ok(binary) => {
                // Its mtime is its last use (least recently used goes first).
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&entry_path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Lookup::Hit(Box::new(binary))
            }
            Err(reason) => {
                let _ = std::fs::remove_file(&blob_path);
                corrupt(format!("its binary {}: {reason}", blob_path.display()))
            }
        }
    }

    /// Stores `binary` under the key of `inputs`, then prunes the store when
    /// it is above its cap (abandoned temporary files are removed then, or by
    /// [`Self::prune`]). Safe with other processes storing at the same time.
    pub fn put(&self, inputs: &CacheKeyInputs, binary: &CompiledBinary, built_by: &str) -> std::io::Result<CacheKey> {
        let entry = CacheEntry::new(inputs, binary, built_by);
        self.store_entry(&entry, &binary.binary_data)?;
        Ok(entry.key)
    }

    /// Writes `entry` with its binary `data`, then prunes the store when it
    /// is above its cap.
    pub(crate) fn store_entry(&self, entry: &CacheEntry, data: &[u8]) -> std::io::Result<()> {
        self.put_entry(entry, data)?;
        // Pruning reads every entry: only when the binaries (a directory
        // listing, nothing parsed) exceed the cap.
        if self.stats().bytes > self.max_bytes {
            self.prune(self.max_bytes)?;
        }
        Ok(())
    }

    /// Writes `entry` with its binary `data` (already verified against it):
    /// the blob first, then the entry, each atomically.
    pub(crate) fn put_entry(&self, entry: &CacheEntry, data: &[u8]) -> std::io::Result<()> {
        let blob = self.blob_path(&entry.checksum);
        if !blob.is_file() {
            self.write_atomically(&blob, data)?;
        }
        let json = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
        self.write_atomically(&self.entry_path(&entry.key), &json)
    }

    /// Writes `data` to a temporary file beside `path`, syncs it and renames
    /// it into place (then syncs the directory).
    fn write_atomically(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(format!(
            "{}.{}",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            crate::engine::unique_suffix()
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Every entry, most recently used first.
    pub fn list(&self) -> Vec<(CacheEntry, SystemTime)> {
        let mut entries: Vec<(CacheEntry, SystemTime)> = std::fs::read_dir(self.root.join("entries"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let used = e.metadata().and_then(|m| m.modified()).ok()?;
                let entry = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((entry, used))
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        entries
    }

    /// Entries, distinct binaries and their bytes.
    pub fn stats(&self) -> CacheStats {
        let entries = std::fs::read_dir(self.root.join("entries")).map_or(0, |d| d.count() as u64);
        let (blobs, bytes) = std::fs::read_dir(self.root.join("blobs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .fold((0, 0), |(n, size), m| (n + 1, size + m.len()));
        CacheStats { entries, blobs, bytes }
    }

    /// Removes least recently used entries until the binaries they keep fit
    /// in `max_bytes`, then binaries no entry names and abandoned temporary
    /// files. Returns how many entries it removed.
    pub fn prune(&self, max_bytes: u64) -> std::io::Result<u64> {
        let mut entries = self.list();
        let size_of = |checksum: &str| std::fs::metadata(self.blob_path(checksum)).map_or(0, |m| m.len());
        let mut kept: BTreeMap<String, u64> =
            entries.iter().map(|(e, _)| (e.checksum.clone(), size_of(&e.checksum))).collect();
        let mut total: u64 = kept.values().sum();
        let mut removed = 0;
        while total > max_bytes {
            let Some((oldest, _)) = entries.pop() else { break };
            let _ = std::fs::remove_file(self.entry_path(&oldest.key));
            removed += 1;
            if !entries.iter().any(|(e, _)| e.checksum == oldest.checksum)
                && let Some(size) = kept.remove(&oldest.checksum)
            {
                // (A writer storing the same binary right now would find its
                // entry's blob gone on the next read: a miss, never a wrong binary.)
                let _ = std::fs::remove_file(self.blob_path(&oldest.checksum));
                total -= size;
            }
        }
        let named: BTreeSet<&String> = kept.keys().collect();
        for blob in std::fs::read_dir(self.root.join("blobs")).into_iter().flatten().flatten() {
            let name = blob.file_name().to_string_lossy().into_owned();
            // A blob younger than a minute may belong to an entry being written.
            let young = blob.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok())
                < Some(Duration::from_secs(60));
            if !named.contains(&name) && !young {
                let _ = std::fs::remove_file(blob.path());
            }
        }
        for tmp in std::fs::read_dir(self.root.join("tmp")).into_iter().flatten().flatten() {
            let stale = tmp.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok())
                > Some(Duration::from_secs(3600));
            if stale {
                let _ = std::fs::remove_file(tmp.path());
            }
        }
        Ok(removed)
    }

    /// Removes every entry and binary.
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// An entry's record read from `text`, checked to be of `key` and this
/// [`SCHEMA`].
pub(crate) fn parse_entry(text: &[u8], key: &CacheKey) -> Result<CacheEntry, String> {
    let entry: CacheEntry = serde_json::from_slice(text).map_err(|error| format!("not readable: {error}"))?;
    if entry.schema != SCHEMA || &entry.key != key {
        return Err("of another key or schema".into());
    }
    Ok(entry)
}

/// The binary of `entry` from `data`, after checking that `data` is the
/// entry's binary (size, SHA-256) and one for the request's target; `store`
/// names where it was found.
pub(crate) fn verified_hit(
    entry: CacheEntry,
    data: Vec<u8>,
    request: &BuildRequest,
    store: &str,
) -> Result<CompiledBinary, String> {
    let actual = hex(&Sha256::digest(&data));
    if data.len() as u64 != entry.size || actual != entry.checksum {
        return Err(format!(
            "{} bytes with SHA-256 {actual}, the entry says {} bytes with {}",
            data.len(),
            entry.size,
            entry.checksum
        ));
    }
    let validation = validate_binary(&data, &request.target)
        .map_err(|error| format!("not a binary for {}: {error}", request.target.triple_with_floor()))?;
    Ok(CompiledBinary {
        target: request.target_specification(),
        file_name: entry.file_name,
        size: entry.size,
        checksum: entry.checksum,
        binary_data: data,
        compilation_time: Duration::from_millis(entry.compile_time_ms),
        metadata: entry.metadata,
        validation,
        cached: Some(CacheHit {
            store: store.to_owned(),
            key: Some(entry.key),
            built_at: Some(entry.built_at),
            built_by: entry.built_by,
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustle_targets::{CompilationOptimization, Target, TargetSettings, TemplateId};

    use super::*;
    use crate::engine::{BuildJob, BuildRequest};
    use crate::template::{PreparedTemplate, TemplateSource};
    use crate::toolchain::{ToolchainConfig, ToolchainManager};

    const X86: &str = "x86_64-unknown-linux-gnu";

    fn write_template(dir: &Path, main: &str) {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"runner\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("src/main.rs"), main).unwrap();
    }

    fn request(template: &PreparedTemplate, settings: TargetSettings) -> BuildRequest {
        BuildRequest {
            template: template.id.clone(),
            target: Target::from_triple(X86).unwrap(),
            settings,
            optimization: CompilationOptimization::default(),
            deadline: Duration::from_secs(60),
            incremental: false,
            cache: rustle_targets::CachePolicy::Use { max_bytes: 1 << 30 },
        }
    }

    /// The key inputs of building the template in `dir` for x86_64 here.
    async fn inputs_of(
        toolchains: &ToolchainManager,
        cache: &Path,
        dir: &Path,
        settings: TargetSettings,
    ) -> CacheKeyInputs {
        let template = TemplateSource::Dir(dir.to_path_buf()).prepare(&cache.join("templates")).unwrap();
        let request = request(&template, settings);
        let plan = toolchains.plan(&request.target, &request.settings).await.unwrap();
        let job = BuildJob::new(&template, &plan, &request, cache);
        CacheKeyInputs::of(&job, &job.cargo_command().unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn the_key_follows_content_not_location_time_or_order() {
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().join("cache");
        let toolchains = ToolchainManager::new(ToolchainConfig { cache_dir: cache.clone(), ..Default::default() });
        let (a, b) = (scratch.path().join("a"), scratch.path().join("elsewhere/b"));
        write_template(&a, "fn main() {}\n");
        write_template(&b, "fn main() {}\n");
        let key_a = inputs_of(&toolchains, &cache, &a, TargetSettings::default()).await;
        let key_b = inputs_of(&toolchains, &cache, &b, TargetSettings::default()).await;
        assert_eq!(key_a.key(), key_b.key(), "another directory, the same key: {key_a:#?}\n{key_b:#?}");
        assert!(!key_a.cargo_args.iter().any(|a| a.contains(scratch.path().to_str().unwrap())), "{key_a:#?}");
        // Another cache dir (of another length), the same key.
        let other_cache = scratch.path().join("another/cache-dir");
        let key_c = inputs_of(&toolchains, &other_cache, &a, TargetSettings::default()).await;
        assert_eq!(key_a.key(), key_c.key(), "another cache, the same key: {key_a:#?}\n{key_c:#?}");
        // The build remaps the target dir and CARGO_HOME for every crate,
        // the template for its own, and the key names them by placeholder:
        // no path of this machine is in it.
        let rustflags = &key_a.cargo_env["CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"];
        for flag in
            ["<target-dir>=/rustle/target", "<cargo-home>=/rustle/cargo"].map(|m| format!("--remap-path-prefix={m}"))
        {
            assert!(rustflags.split_whitespace().any(|f| f == flag), "{flag} in {rustflags}");
        }
        let template_flag = "--remap-path-prefix=<template>=/rustle/template".to_owned();
        assert_eq!(key_a.cargo_args.last(), Some(&template_flag), "{:?}", key_a.cargo_args);
        let recorded = serde_json::to_string(&key_a).unwrap();
        let cargo_home = crate::toolchain::cargo_home();
        for here in [scratch.path(), &cache, &a, &cargo_home] {
            assert!(!recorded.contains(here.to_str().unwrap()), "{} is in the key: {key_a:#?}", here.display());
        }

        // A later mtime (and files written in another order) change nothing.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(b.join("src/main.rs"), "fn main() {}\n").unwrap();
        assert_eq!(inputs_of(&toolchains, &cache, &b, TargetSettings::default()).await.key(), key_a.key());

        // Content, a new file, features and rustflags each do.
        let base = key_a.key();
        std::fs::write(b.join("src/main.rs"), "fn main() { println!(); }\n").unwrap();
        assert_ne!(inputs_of(&toolchains, &cache, &b, TargetSettings::default()).await.key(), base);
        write_template(&b, "fn main() {}\n");
        std::fs::write(b.join("src/extra.rs"), "").unwrap();
        assert_ne!(inputs_of(&toolchains, &cache, &b, TargetSettings::default()).await.key(), base);
        std::fs::remove_file(b.join("src/extra.rs")).unwrap();
        assert_eq!(inputs_of(&toolchains, &cache, &b, TargetSettings::default()).await.key(), base);
        let features = TargetSettings { features: vec!["loud".into()], ..TargetSettings::default() };
        assert_ne!(inputs_of(&toolchains, &cache, &b, features).await.key(), base);
        let rustflags = TargetSettings { rustflags: vec!["--cfg=x".into()], ..TargetSettings::default() };
        assert_ne!(inputs_of(&toolchains, &cache, &b, rustflags).await.key(), base);
        // cargo's own output under the template is not an input.
        std::fs::create_dir_all(b.join("target/release")).unwrap();
        std::fs::write(b.join("target/release/runner"), "binary").unwrap();
        assert_eq!(inputs_of(&toolchains, &cache, &b, TargetSettings::default()).await.key(), base);
    }

    #[test]
    fn placeholders_replace_whole_directories_the_longest_first() {
        let remaps = [
            PathRemap { from: "/w/c".into(), to: "/rustle/cache".into(), placeholder: "<cache>" },
            PathRemap { from: "/w/c/templates/app".into(), to: "/rustle/template".into(), placeholder: "<template>" },
            PathRemap { from: "/home/u/.cargo".into(), to: "/rustle/cargo".into(), placeholder: "<cargo-home>" },
        ];
        let flags = "--remap-path-prefix=/w/c=/rustle/cache --remap-path-prefix=/w/c/templates/app=/rustle/template";
        assert_eq!(
            placeholders(flags, &remaps),
            "--remap-path-prefix=<cache>=/rustle/cache --remap-path-prefix=<template>=/rustle/template"
        );
        assert_eq!(placeholders("/w/c/targets/x:/home/u/.cargo/bin", &remaps), "<cache>/targets/x:<cargo-home>/bin");
        assert_eq!(placeholders("/w/c", &remaps), "<cache>");
        // Another directory that only starts with the same letters is not it.
        assert_eq!(placeholders("/w/cx/y /home/u/.cargo2", &remaps), "/w/cx/y /home/u/.cargo2");
    }

    #[test]
    fn every_recorded_input_is_part_of_the_key() {
        let inputs = CacheKeyInputs {
            schema: SCHEMA,
            target: X86.into(),
            custom_spec_sha256: None,
            template: vec![TemplateFile { path: "src/main.rs".into(), sha256: "00".into() }],
            toolchain: ToolchainIdentity {
                name: "stable".into(),
                rustc: "rustc 1.95.0 (abc 2026-01-01)".into(),
                cargo: "cargo 1.95.0".into(),
                host: X86.into(),
            },
            std: "Prebuilt".into(),
            route: vec!["cc: gcc 12".into()],
            cargo_args: vec!["cargo".into(), "build".into()],
            cargo_env: BTreeMap::from([("CARGO_PROFILE_RELEASE_LTO".to_owned(), "true".to_owned())]),
        };
        let base = inputs.key();
        let changed: Vec<CacheKeyInputs> = vec![
            CacheKeyInputs { schema: SCHEMA + 1, ..inputs.clone() },
            CacheKeyInputs { target: format!("{X86}.2.17"), ..inputs.clone() },
            CacheKeyInputs { custom_spec_sha256: Some("11".into()), ..inputs.clone() },
            CacheKeyInputs {
                template: vec![TemplateFile { path: "src/main.rs".into(), sha256: "01".into() }],
                ..inputs.clone()
            },
            CacheKeyInputs {
                toolchain: ToolchainIdentity {
                    rustc: "rustc 1.95.0 (def 2026-01-01)".into(),
                    ..inputs.toolchain.clone()
                },
                ..inputs.clone()
            },
            CacheKeyInputs {
                toolchain: ToolchainIdentity { cargo: "cargo 1.96.0".into(), ..inputs.toolchain.clone() },
                ..inputs.clone()
            },
            CacheKeyInputs { std: "BuildStd".into(), ..inputs.clone() },
            CacheKeyInputs { route: vec!["cc: gcc 13".into()], ..inputs.clone() },
            CacheKeyInputs { cargo_args: vec!["cargo".into(), "zigbuild".into()], ..inputs.clone() },
            CacheKeyInputs { cargo_env: BTreeMap::new(), ..inputs.clone() },
        ];
        for other in changed {
            assert_ne!(other.key(), base, "{other:#?}");
        }
        assert_eq!(inputs.clone().key(), base);
    }

    /// A real binary of this machine (this test process), as a build would return it.
    fn binary() -> CompiledBinary {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let target = Target::from_triple(X86).unwrap();
        CompiledBinary {
            target: rustle_targets::TargetSpecification::from(target.clone()),
            file_name: "runner".into(),
            size: data.len() as u64,
            checksum: hex(&Sha256::digest(&data)),
            validation: validate_binary(&data, &target).unwrap(),
            binary_data: data,
            compilation_time: Duration::from_secs(3),
            metadata: CompilationMetadata {
                toolchain: "stable".into(),
                rustc_version: "rustc 1.95.0".into(),
                cargo_version: "cargo 1.95.0".into(),
                compilation_flags: vec!["--release".into()],
                dependencies: Vec::new(),
                features_used: Vec::new(),
                c_libraries: Vec::new(),
            },
            cached: None,
        }
    }

    fn inputs(n: u32) -> CacheKeyInputs {
        CacheKeyInputs {
            schema: SCHEMA,
            target: X86.into(),
            custom_spec_sha256: None,
            template: vec![TemplateFile { path: "src/main.rs".into(), sha256: n.to_string() }],
            toolchain: ToolchainIdentity { name: "t".into(), rustc: "r".into(), cargo: "c".into(), host: X86.into() },
            std: "Prebuilt".into(),
            route: Vec::new(),
            cargo_args: Vec::new(),
            cargo_env: BTreeMap::new(),
        }
    }

    fn stored_request() -> BuildRequest {
        BuildRequest {
            template: TemplateId("runner-0".into()),
            target: Target::from_triple(X86).unwrap(),
            settings: TargetSettings::default(),
            optimization: CompilationOptimization::default(),
            deadline: Duration::from_secs(60),
            incremental: false,
            cache: rustle_targets::CachePolicy::Use { max_bytes: 1 << 30 },
        }
    }

    #[test]
    fn a_stored_binary_comes_back_whole_and_says_it_was_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompilationCache::open(dir.path(), 1 << 30);
        let built = binary();
        let key = cache.put(&inputs(1), &built, "local").unwrap();
        let Lookup::Hit(hit) = cache.get(&key, &stored_request()) else { panic!("a miss") };
        assert_eq!(hit.binary_data, built.binary_data);
        assert_eq!((hit.checksum.as_str(), hit.size), (built.checksum.as_str(), built.size));
        assert_eq!(hit.metadata, built.metadata);
        assert_eq!(hit.validation, built.validation);
        let origin = hit.cached.as_ref().expect("marked as cached");
        assert_eq!(
            (origin.store.as_str(), origin.key.as_ref(), origin.built_by.as_str()),
            ("local", Some(&key), "local")
        );
        assert!(matches!(cache.get(&inputs(2).key(), &stored_request()), Lookup::Miss));
        assert_eq!(cache.stats(), CacheStats { entries: 1, blobs: 1, bytes: built.size });
    }

    #[test]
    fn a_truncated_or_flipped_binary_is_never_served_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompilationCache::open(dir.path(), 1 << 30);
        let built = binary();
        for damage in ["truncate", "flip", "entry"] {
            let key = cache.put(&inputs(1), &built, "local").unwrap();
            let blob = cache.blob_path(&built.checksum);
            match damage {
                "truncate" => {
                    let data = std::fs::read(&blob).unwrap();
                    std::fs::write(&blob, &data[..data.len() / 2]).unwrap();
                }
                "flip" => {
                    let mut data = std::fs::read(&blob).unwrap();
                    data[4096] ^= 0x40;
                    std::fs::write(&blob, data).unwrap();
                }
                _ => std::fs::write(cache.entry_path(&key), "{ not json").unwrap(),
            }
            let Lookup::Corrupt { reason } = cache.get(&key, &stored_request()) else { panic!("{damage}: served") };
            assert!(!reason.is_empty());
            assert!(matches!(cache.get(&key, &stored_request()), Lookup::Miss), "{damage}: the entry is gone");
        }
    }

    #[test]
    fn the_least_recently_used_go_first_above_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let built = binary();
        let cache = CompilationCache::open(dir.path(), 1 << 30);
        let keys: Vec<CacheKey> = (0..3).map(|n| cache.put(&inputs(n), &built, "local").unwrap()).collect();
        // Three keys, one binary: far under the cap.
        assert_eq!(cache.stats().blobs, 1);
        // Each a binary of its own: appending a byte keeps the ELF header.
        let distinct = |n: u8| {
            let mut b = built.clone();
            b.binary_data.push(n);
            b.size += 1;
            b.checksum = hex(&Sha256::digest(&b.binary_data));
            b
        };
        let cache = CompilationCache::open(dir.path(), 2 * built.size + 16);
        cache.clear().unwrap();
        let old = cache.put(&inputs(10), &distinct(1), "local").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let used = cache.put(&inputs(11), &distinct(2), "local").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(cache.get(&old, &stored_request()), Lookup::Hit(_)), "using it makes it the newest");
        std::thread::sleep(Duration::from_millis(20));
        let new = cache.put(&inputs(12), &distinct(3), "local").unwrap();
        assert!(matches!(cache.get(&used, &stored_request()), Lookup::Miss), "the least recently used went");
        assert!(matches!(cache.get(&old, &stored_request()), Lookup::Hit(_)));
        assert!(matches!(cache.get(&new, &stored_request()), Lookup::Hit(_)));
        assert!(cache.stats().bytes <= 2 * built.size + 16, "{:?}", cache.stats());
        drop(keys);
    }

    #[test]
    fn writers_of_one_key_at_once_leave_one_valid_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(CompilationCache::open(dir.path(), 1 << 30));
        let built = Arc::new(binary());
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, built) = (cache.clone(), built.clone());
                std::thread::spawn(move || cache.put(&inputs(7), &built, "local").unwrap())
            })
            .collect();
        let keys: BTreeSet<CacheKey> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(keys.len(), 1);
        let key = keys.into_iter().next().unwrap();
        assert!(matches!(cache.get(&key, &stored_request()), Lookup::Hit(_)));
        assert_eq!(cache.stats(), CacheStats { entries: 1, blobs: 1, bytes: built.size });
    }
}

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
//! linker variables), with the paths that only say where things are on
//! this machine (the template, the target dir, PATH) left out.
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

use crate::engine::{CompilationMetadata, CompiledBinary};
use crate::template::{PreparedTemplate, hex};
use crate::toolchain::{BuildPlan, LinkerPlan};
use crate::validate::{BinaryReport, validate_binary};

/// Version of the key schema and the entry format; bumping it makes every
/// older entry a miss.
pub const SCHEMA: u32 = 1;

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
    /// The inputs of building `template` with `plan` by `command` (the
    /// exact cargo invocation). Reads the template's files and asks the
    /// route's tools for their versions (once per process and tool).
    pub async fn of(template: &PreparedTemplate, plan: &BuildPlan, command: &ProcessSpec) -> std::io::Result<Self> {
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
                arg
            }
        }));
        let cargo_env = command
            .get_envs()
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .filter(|(k, _)| !LOCATION_ENV.contains(&k.as_str()))
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

/// Where a binary from the cache came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHit {
    /// The store that had it (`local`).
    pub store: String,
    /// Its key.
    pub key: CacheKey,
    /// When it was built (seconds since the Unix epoch).
    pub built_at: u64,
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
}

impl CompilationCache {
    /// The cache under `cache_dir` (`<cache_dir>/binaries`), keeping at most
    /// `max_bytes` of binaries after each store.
    pub fn open(cache_dir: &Path, max_bytes: u64) -> Self {
        Self { root: cache_dir.join("binaries"), max_bytes }
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
        let target = &request.target;
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
        let entry: CacheEntry = match serde_json::from_slice(&text) {
            Ok(entry) => entry,
            Err(error) => return corrupt(format!("entry {} is not readable: {error}", entry_path.display())),
        };
        if entry.schema != SCHEMA || &entry.key != key {
            return corrupt(format!("entry {} is of another key or schema", entry_path.display()));
        }
        let blob_path = self.blob_path(&entry.checksum);
        let data = match std::fs::read(&blob_path) {
            Ok(data) => data,
            Err(error) => return corrupt(format!("its binary {} cannot be read: {error}", blob_path.display())),
        };
        let actual = hex(&Sha256::digest(&data));
        if data.len() as u64 != entry.size || actual != entry.checksum {
            let _ = std::fs::remove_file(&blob_path);
            return corrupt(format!(
                "its binary {} has {} bytes with SHA-256 {actual}, the entry says {} bytes with {}",
                blob_path.display(),
                data.len(),
                entry.size,
                entry.checksum
            ));
        }
        let validation = match validate_binary(&data, target) {
            Ok(validation) => validation,
            Err(error) => {
                let _ = std::fs::remove_file(&blob_path);
                return corrupt(format!("its binary is not one for {}: {error}", target.triple_with_floor()));
            }
        };
        // Its mtime is its last use (least recently used goes first).
        let _ = std::fs::File::options().append(true).open(&entry_path).and_then(|f| f.set_modified(SystemTime::now()));
        Lookup::Hit(Box::new(CompiledBinary {
            target: request.target_specification(),
            file_name: entry.file_name,
            size: entry.size,
            checksum: entry.checksum,
            binary_data: data,
            compilation_time: Duration::from_millis(entry.compile_time_ms),
            metadata: entry.metadata,
            validation,
            cached: Some(CacheHit {
                store: "local".into(),
                key: key.clone(),
                built_at: entry.built_at,
                built_by: entry.built_by,
            }),
        }))
    }

    /// Stores `binary` under the key of `inputs`, then keeps the store under
    /// its cap. Safe with other processes storing at the same time.
    pub fn put(&self, inputs: &CacheKeyInputs, binary: &CompiledBinary, built_by: &str) -> std::io::Result<CacheKey> {
        let key = inputs.key();
        let entry = CacheEntry {
            schema: SCHEMA,
            key: key.clone(),
            inputs: inputs.clone(),
            file_name: binary.file_name.clone(),
            checksum: binary.checksum.clone(),
            size: binary.size,
            compile_time_ms: u64::try_from(binary.compilation_time.as_millis()).unwrap_or(u64::MAX),
            metadata: binary.metadata.clone(),
            validation: binary.validation.clone(),
            built_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            built_by: built_by.to_owned(),
        };
        let blob = self.blob_path(&binary.checksum);
        if !blob.is_file() {
            self.write_atomically(&blob, &binary.binary_data)?;
        }
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        self.write_atomically(&self.entry_path(&key), &json)?;
        self.prune(self.max_bytes)?;
        Ok(key)
    }

    /// Writes `data` to a temporary file beside `path`, syncs it and renames
    /// it into place (then syncs the directory).
    fn write_atomically(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(format!(
            "{}.{}.{}",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id(),
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
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

//! The work directory's layout, warm template dirs and their eviction.
//!
//! ```text
//! work_dir/
//!   cache/                  the engine's cache: toolchain discovery, the binary cache,
//!     targets/<deps>/<triple>/<toolchain>[.k]/   cargo target dirs, shared by every
//!                           template with the same dependencies (a pool of members, so
//!                           jobs at once build side by side), each evicted as a whole
//!     sysroots/, c-libraries/   std and C libraries built once per target
//!   warm/<template_id>/     one warm dir per template, evicted as a whole
//!     src/                  the synced source tree (sync_bundle)
//!     rustle-warm.json      which (target, toolchain) pairs were built, last use
//!   jobs/<job-key>/         scratch for a job whose template dir holds another bundle; removed after
//!   trash/                  evicted dirs being deleted
//! ```
//!
//! Jobs of a template that carry the same bundle share `src/` (synced once,
//! see the listener) and build side by side, each target in its own target
//! dir. Target dirs live in the shared `work_dir/cache`, keyed by the
//! template's dependencies (the engine's `dependency_key`), so a new
//! template of rustle-deploy (a new plan: a new template id) finds its
//! dependencies compiled. Warm dirs and target dirs are evicted together,
//! least recently used first, under `warm_cache_max_bytes`; a target dir a
//! build holds (its `.rustle-lock`) is never taken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustle_protocol::{TemplateId, WarmCache};
use serde::{Deserialize, Serialize};

/// File in a warm dir recording what it holds.
const MARKER: &str = "rustle-warm.json";
/// Longest template id accepted as a directory name.
const MAX_TEMPLATE_ID_LEN: usize = 128;

/// Whether `id` can name a directory under `warm/`: one path component of
/// ASCII letters, digits, `-`, `_` and `.`, not `.` or `..`, not hidden.
pub fn is_safe_template_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TEMPLATE_ID_LEN
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Paths inside the work directory.
#[derive(Debug, Clone)]
pub struct WorkLayout {
    root: PathBuf,
}

impl WorkLayout {
    /// The layout under `work_dir`.
    pub fn new(work_dir: &Path) -> Self {
        Self { root: work_dir.to_owned() }
    }

    /// `work_dir/warm`.
    pub fn warm_root(&self) -> PathBuf {
        self.root.join("warm")
    }

    /// `work_dir/warm/<template_id>`; the id must be safe ([`is_safe_template_id`]).
    pub fn warm_dir(&self, template_id: &str) -> PathBuf {
        self.warm_root().join(template_id)
    }

    /// `work_dir/jobs`.
    pub fn jobs_root(&self) -> PathBuf {
        self.root.join("jobs")
    }

    /// `work_dir/trash`.
    pub fn trash_root(&self) -> PathBuf {
        self.root.join("trash")
    }
}

/// What a warm dir's marker file records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmRecord {
    /// (target triple, toolchain name) pairs built in it.
    pub builds: BTreeSet<(String, String)>,
    /// Last use, seconds since the epoch.
    pub last_used: u64,
}

impl WarmRecord {
    /// The record as reported to coordinators.
    pub fn caches(&self, template_id: &str) -> impl Iterator<Item = WarmCache> + '_ {
        let template_id = TemplateId(template_id.to_owned());
        self.builds.iter().map(move |(triple, toolchain)| WarmCache {
            template_id: template_id.clone(),
            triple: triple.clone(),
            toolchain: toolchain.clone(),
        })
    }
}

/// Seconds since the epoch now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Reads every warm dir's record; dirs without a readable one count as
/// unused since the epoch (first to be evicted).
pub fn scan(layout: &WorkLayout) -> BTreeMap<String, WarmRecord> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(layout.warm_root()) else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_safe_template_id(&name) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let record = std::fs::read(entry.path().join(MARKER))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        found.insert(name, record);
    }
    found
}

/// Writes a warm dir's record (best effort: a missing record only makes
/// the dir look old).
pub fn write_record(layout: &WorkLayout, template_id: &str, record: &WarmRecord) {
    let dir = layout.warm_dir(template_id);
    if dir.is_dir()
        && let Ok(bytes) = serde_json::to_vec(record)
    {
        let _ = std::fs::write(dir.join(MARKER), bytes);
    }
}

/// Bytes used by the files under `path`, not following links.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Which warm dirs to evict so the total fits under `cap`: the least
/// recently used first, never one in `in_use`.
pub fn eviction_plan(sizes: &[(String, u64, u64)], in_use: &BTreeSet<String>, cap: u64) -> Vec<String> {
    let mut total: u64 = sizes.iter().map(|(_, size, _)| size).sum();
    let mut candidates: Vec<&(String, u64, u64)> = sizes.iter().filter(|(id, _, _)| !in_use.contains(id)).collect();
    candidates.sort_by_key(|(id, _, last_used)| (*last_used, id.clone()));
    let mut evict = Vec::new();
    for (id, size, _) in candidates {
        if total <= cap {
            break;
        }
        total = total.saturating_sub(*size);
        evict.push(id.clone());
    }
    evict
}

/// The prefix of a target dir's id in an eviction plan: no template id
/// contains a `/`.
pub const TARGET_DIR_ID: &str = "targets/";

/// The target dirs under `cache_dir/targets` (`<deps>/<triple>/<toolchain>`)
/// as eviction candidates: id (`targets/<deps>/<triple>/<toolchain>`), size,
/// last use (when its last build began: the mtime of `.rustle-last-template`).
pub fn target_dirs(cache_dir: &Path) -> Vec<(String, u64, u64)> {
    let children = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
    };
    let root = cache_dir.join("targets");
    let mut found = Vec::new();
    for deps in children(&root) {
        for triple in children(&deps) {
            for dir in children(&triple) {
                let Ok(relative) = dir.strip_prefix(&root) else { continue };
                let last_used = std::fs::metadata(dir.join(".rustle-last-template"))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                found.push((format!("{TARGET_DIR_ID}{}", relative.display()), dir_size(&dir), last_used));
            }
        }
    }
    found
}

/// Moves the target dir of `id` ([`target_dirs`]) to `trash` unless a build
/// holds it; whether it was moved.
pub fn take_target_dir(cache_dir: &Path, id: &str, trash: &Path) -> std::io::Result<bool> {
    let Some(relative) = id.strip_prefix(TARGET_DIR_ID) else { return Ok(false) };
    let dir = cache_dir.join("targets").join(relative);
    let lock = std::fs::File::options().create(true).truncate(false).write(true).open(dir.join(".rustle-lock"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(error)) => return Err(error),
    }
    // Renamed while locked: no build can start in it half-deleted.
    std::fs::rename(&dir, trash)?;
    Ok(true)
}

/// Removes a directory tree, ignoring one that is already gone.
pub fn remove_tree(path: &Path) {
    if let Err(error) = std::fs::remove_dir_all(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("failed to remove {}: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_dir_is_measured_and_taken_only_when_no_build_holds_it() {
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("cache");
        let dir = cache.join("targets/deps-0123456789abcdef/x86_64-unknown-linux-gnu/stable-1.95.0-59807616e");
        std::fs::create_dir_all(dir.join("release")).unwrap();
        std::fs::write(dir.join("release/app"), vec![0u8; 4096]).unwrap();
        std::fs::write(dir.join(".rustle-last-template"), "/t/app").unwrap();
        let found = target_dirs(&cache);
        assert_eq!(found.len(), 1, "{found:?}");
        let (id, size, last_used) = &found[0];
        assert_eq!(id, "targets/deps-0123456789abcdef/x86_64-unknown-linux-gnu/stable-1.95.0-59807616e");
        assert!(!is_safe_template_id(id), "no template id can be a target dir's");
        assert!(*size >= 4096 && *last_used > 0, "{found:?}");

        let trash = work.path().join("trash-1");
        let held =
            std::fs::File::options().create(true).truncate(false).write(true).open(dir.join(".rustle-lock")).unwrap();
        held.lock().unwrap();
        assert!(!take_target_dir(&cache, id, &trash).unwrap(), "a build holds it");
        assert!(dir.is_dir());
        drop(held);
        assert!(take_target_dir(&cache, id, &trash).unwrap());
        assert!(!dir.exists() && trash.join("release/app").is_file());
        assert!(target_dirs(&cache).is_empty());
    }

    #[test]
    fn template_ids_must_be_one_plain_component() {
        for ok in ["hello", "hello-1a2b3c", "a.b_c"] {
            assert!(is_safe_template_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a\\b", "a b", "/abs", &"x".repeat(129)] {
            assert!(!is_safe_template_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn eviction_takes_the_oldest_unused_until_under_the_cap() {
        let sizes = vec![("a".into(), 100, 1), ("b".into(), 100, 2), ("c".into(), 100, 3), ("d".into(), 100, 4)];
        let in_use = BTreeSet::from(["a".to_owned()]);
        assert_eq!(eviction_plan(&sizes, &in_use, 250), ["b", "c"]);
        assert!(eviction_plan(&sizes, &in_use, 400).is_empty());
        assert_eq!(eviction_plan(&sizes, &BTreeSet::new(), 0), ["a", "b", "c", "d"]);
    }

    #[test]
    fn records_round_trip_through_the_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = WorkLayout::new(dir.path());
        std::fs::create_dir_all(layout.warm_dir("t1")).expect("mkdir");
        std::fs::create_dir_all(layout.warm_dir("t2")).expect("mkdir");
        let record =
            WarmRecord { builds: BTreeSet::from([("x86_64-unknown-linux-gnu".into(), "stable".into())]), last_used: 7 };
        write_record(&layout, "t1", &record);
        let found = scan(&layout);
        assert_eq!(found.get("t1"), Some(&record));
        assert_eq!(found.get("t2"), Some(&WarmRecord::default()));
        let caches: Vec<WarmCache> = record.caches("t1").collect();
        assert_eq!(caches[0].template_id, TemplateId("t1".into()));
    }
}

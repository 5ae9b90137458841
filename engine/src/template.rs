//! Templates: the Rust programs rustle-deploy generates (a Cargo.toml plus
//! sources), either as a directory or as `GeneratedTemplate` in memory, made
//! ready for cargo: manifest checked, binary name found, files written to a
//! stable work directory so rebuilds stay incremental.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use rustle_targets::{StripMode, TemplateId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A template as rustle-deploy hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedTemplate {
    /// Source files by path relative to the crate root (`src/main.rs`).
    pub source_files: BTreeMap<PathBuf, String>,
    /// The Cargo.toml.
    pub cargo_toml: String,
    /// A build.rs, if any.
    pub build_script: Option<String>,
    /// Extra cargo arguments (`--features x`, `--locked`).
    pub compilation_flags: Vec<String>,
}

/// Where a template comes from.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    /// A directory with a Cargo.toml, built in place.
    Dir(PathBuf),
    /// An in-memory template, written to a work directory first.
    Generated(GeneratedTemplate),
}

/// A template ready to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTemplate {
    /// Stable id: package name plus a hash of its directory. Keys target dirs.
    pub id: TemplateId,
    /// The crate root.
    pub dir: PathBuf,
    /// `dir/Cargo.toml`.
    pub manifest: PathBuf,
    /// The package name.
    pub package: String,
    /// The binary cargo builds (first `[[bin]]`, else the package name).
    pub bin_name: String,
    /// Extra cargo arguments.
    pub cargo_args: Vec<String>,
    /// What the template's own `[profile.release]` strips, when it says.
    pub release_strip: Option<StripMode>,
}

/// A template that cannot be built as given.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template path does not exist.
    #[error(
        "template {} does not exist; pass the directory of a cargo package (Cargo.toml plus src/), such as examples/hello-template",
        .0.display()
    )]
    Missing(PathBuf),
    /// The template path is a file, not a directory.
    #[error("template {} is a file, not a directory; pass the directory that holds the Cargo.toml{}", .path.display(), .hint)]
    NotADirectory {
        /// The path given.
        path: PathBuf,
        /// ` (here: DIR)` when the file is a Cargo.toml, else empty.
        hint: String,
    },
    /// A directory without a Cargo.toml.
    #[error("template {} has no Cargo.toml; a template is a cargo package (Cargo.toml plus src/)", .0.display())]
    NoManifest(PathBuf),
    /// The Cargo.toml does not parse.
    #[error("template's Cargo.toml is malformed ({}): {message}; fix the manifest and build again", .path.display())]
    MalformedManifest {
        /// The manifest.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The Cargo.toml parses but is not a buildable binary package.
    #[error("template's Cargo.toml ({}) {problem}", .path.display())]
    NotABinaryPackage {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A build request names another template than the one prepared for it.
    #[error("the build request is for template `{requested}`, but template `{prepared}` was prepared for it")]
    NotThisRequest {
        /// The template the request names.
        requested: TemplateId,
        /// The template given with it.
        prepared: TemplateId,
    },
    /// A generated file path escapes the crate.
    #[error("template file path `{}` is not a relative path inside the crate", .0.display())]
    UnsafePath(PathBuf),
    /// A compilation flag rustle-cross sets itself.
    #[error("template compilation flag `{0}` conflicts with what rustle-cross sets per target; remove it")]
    ConflictingFlag(String),
    /// Writing the work directory failed.
    #[error("failed to write template files to {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Flags rustle-cross owns: a template may not set them.
const RESERVED_FLAGS: &[&str] =
    &["--target", "--target-dir", "--manifest-path", "--message-format", "--release", "--profile", "-Z"];

/// The file listing what a generated template wrote, to remove stale files.
const WRITTEN_LIST: &str = ".rustle-template-files";

impl TemplateSource {
    /// Checks the template and, for a generated one, writes it under
    /// `work_root/<package>-<content hash>/`: a work dir per content, so
    /// concurrent builds of different templates of one package never write
    /// into each other's, and the same template again finds its dir as it
    /// left it (its Cargo.lock too). What a new template shares with earlier
    /// ones is in the target dirs, keyed by its dependencies
    /// ([`PreparedTemplate::dependency_key`]), not in its work dir.
    pub fn prepare(&self, work_root: &Path) -> Result<PreparedTemplate, TemplateError> {
        match self {
            TemplateSource::Dir(dir) => {
                let text = read_manifest(dir)?;
                let dir = dir.canonicalize().map_err(|source| TemplateError::Io { path: dir.clone(), source })?;
                prepared(&dir, &text, Vec::new())
            }
            TemplateSource::Generated(template) => {
                for flag in &template.compilation_flags {
                    if RESERVED_FLAGS.iter().any(|r| flag == r || flag.starts_with(&format!("{r}="))) {
                        return Err(TemplateError::ConflictingFlag(flag.clone()));
                    }
                }
                // Parse first: a broken template must not overwrite a good work dir.
                let package = parse_manifest(Path::new("Cargo.toml"), &template.cargo_toml)?.0;
                let files = generated_files(template)?;
                let dir = work_root.join(format!("{package}-{}", content_hash(&files)));
                write_generated(&files, &dir)?;
                prune_generated(work_root, &dir);
                let dir = dir.canonicalize().map_err(|source| TemplateError::Io { path: dir.clone(), source })?;
                prepared(&dir, &template.cargo_toml, template.compilation_flags.clone())
            }
        }
    }
}

/// The Cargo.toml of a directory template, with an error that says which
/// of path, directory and manifest is wrong.
fn read_manifest(dir: &Path) -> Result<String, TemplateError> {
    let meta = std::fs::metadata(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TemplateError::Missing(dir.to_owned()),
        _ => TemplateError::Io { path: dir.to_owned(), source },
    })?;
    if !meta.is_dir() {
        let hint = match (dir.file_name().and_then(|n| n.to_str()), dir.parent()) {
            (Some("Cargo.toml"), Some(parent)) => {
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                format!(" (here: {})", parent.display())
            }
            _ => String::new(),
        };
        return Err(TemplateError::NotADirectory { path: dir.to_owned(), hint });
    }
    let manifest = dir.join("Cargo.toml");
    std::fs::read_to_string(&manifest).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TemplateError::NoManifest(dir.to_owned()),
        _ => TemplateError::Io { path: manifest, source },
    })
}

impl PreparedTemplate {
    /// The Cargo.lock cargo uses for this template: its own, or its
    /// workspace's (the nearest one in an ancestor directory).
    pub fn lock_file(&self) -> Option<PathBuf> {
        self.dir.ancestors().map(|d| d.join("Cargo.lock")).find(|p| p.is_file())
    }

    /// What decides which dependency artifacts a build of this template
    /// makes, as a directory name (`deps-<16 hex digits>`): the registry
    /// and git packages its Cargo.lock pins (name, version, source), or,
    /// without a Cargo.lock, the dependency tables of its manifest. The
    /// template's own package and other path packages are left out: every
    /// new template of rustle-deploy's runner has the same key, so its
    /// build finds the dependencies compiled and compiles only its own crate.
    pub fn dependency_key(&self) -> String {
        let mut hasher = Sha256::new();
        match self.lock_file().as_deref().and_then(CargoLock::read).map(CargoLock::locked_sources) {
            Some(packages) => {
                hasher.update(b"lock\n");
                for package in packages {
                    hasher.update(package.as_bytes());
                    hasher.update(b"\n");
                }
            }
            None => {
                hasher.update(b"manifest\n");
                let table: toml::Table = std::fs::read_to_string(&self.manifest)
                    .ok()
                    .and_then(|t| toml::from_str(&t).ok())
                    .unwrap_or_default();
                for key in ["dependencies", "build-dependencies", "target", "patch", "replace", "workspace"] {
                    if let Some(value) = table.get(key) {
                        hasher.update(format!("{key} = {value}\n").as_bytes());
                    }
                }
            }
        }
        format!("deps-{}", hex(&hasher.finalize()[..8]))
    }

    /// The names of the path packages of the Cargo.lock (the template's
    /// own and its workspace's): the units a target dir shared by several
    /// templates holds for whichever was built there last.
    pub fn path_packages(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .lock_file()
            .as_deref()
            .and_then(CargoLock::read)
            .map(|lock| lock.package.into_iter().filter(|p| p.source.is_none()).map(|p| p.name).collect())
            .unwrap_or_default();
        names.insert(self.package.clone());
        names.into_iter().collect()
    }
}

/// The packages of a Cargo.lock.
#[derive(Deserialize)]
pub(crate) struct CargoLock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

/// A `[[package]]` of a Cargo.lock.
#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

impl CargoLock {
    /// The Cargo.lock at `path`; `None` when it cannot be read or parsed.
    pub(crate) fn read(path: &Path) -> Option<Self> {
        toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// `name@version` of every package, sorted, each once.
    pub(crate) fn package_ids(self) -> Vec<String> {
        let set: BTreeSet<String> = self.package.into_iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
        set.into_iter().collect()
    }

    /// `name version source` of each package that is not a path package, sorted.
    fn locked_sources(self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .package
            .into_iter()
            .filter_map(|p| p.source.map(|source| format!("{} {} {source}", p.name, p.version)))
            .collect();
        set.into_iter().collect()
    }
}

fn prepared(dir: &Path, manifest_text: &str, cargo_args: Vec<String>) -> Result<PreparedTemplate, TemplateError> {
    let manifest = dir.join("Cargo.toml");
    let (package, bin_name, release_strip) = parse_manifest(&manifest, manifest_text)?;
    if !dir.join("src/main.rs").is_file() && bin_name == package {
        return Err(TemplateError::NotABinaryPackage {
            path: manifest,
            problem: "has no binary target: add src/main.rs or a [[bin]] section".into(),
        });
    }
    let hash = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let id = TemplateId(format!("{package}-{}", hex(&hash[..6])));
    Ok(PreparedTemplate { id, dir: dir.to_path_buf(), manifest, package, bin_name, cargo_args, release_strip })
}

/// Returns (package name, binary name, what `[profile.release]` strips).
fn parse_manifest(path: &Path, text: &str) -> Result<(String, String, Option<StripMode>), TemplateError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| TemplateError::MalformedManifest {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let not_bin =
        |problem: &str| TemplateError::NotABinaryPackage { path: path.to_path_buf(), problem: problem.into() };
    let package = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| not_bin("has no [package] name"))?
        .to_owned();
    let bin = match table.get("bin") {
        Some(bins) => bins
            .as_array()
            .and_then(|bins| bins.first())
            .and_then(|b| b.get("name"))
            .and_then(toml::Value::as_str)
            .ok_or_else(|| not_bin("has a [[bin]] section without a name"))?
            .to_owned(),
        None => package.clone(),
    };
    let strip =
        table.get("profile").and_then(|p| p.get("release")).and_then(|r| r.get("strip")).and_then(
            |strip| match strip {
                toml::Value::Boolean(true) => Some(StripMode::Symbols),
                toml::Value::Boolean(false) => Some(StripMode::None),
                toml::Value::String(mode) if mode == "symbols" => Some(StripMode::Symbols),
                toml::Value::String(mode) if mode == "debuginfo" => Some(StripMode::Debuginfo),
                toml::Value::String(mode) if mode == "none" => Some(StripMode::None),
                _ => None,
            },
        );
    Ok((package, bin, strip))
}

/// How long a generated template's work dir is kept after it was last
/// prepared: rustle-deploy writes a new one per plan, and its binaries are
/// in the binary cache, its dependencies in the shared target dirs.
const GENERATED_TEMPLATE_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The files of a generated template by path, checked to stay inside it.
fn generated_files(template: &GeneratedTemplate) -> Result<BTreeMap<PathBuf, &str>, TemplateError> {
    let mut files: BTreeMap<PathBuf, &str> = BTreeMap::new();
    for (path, content) in &template.source_files {
        if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(TemplateError::UnsafePath(path.clone()));
        }
        files.insert(path.clone(), content);
    }
    files.insert("Cargo.toml".into(), &template.cargo_toml);
    if let Some(build) = &template.build_script {
        files.insert("build.rs".into(), build);
    }
    Ok(files)
}

/// 16 hex digits of SHA-256 over the files' paths and contents, each
/// length-prefixed so no two different sets of files hash alike.
fn content_hash(files: &BTreeMap<PathBuf, &str>) -> String {
    let mut hasher = Sha256::new();
    for (path, content) in files {
        let path = path.to_string_lossy();
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(content.as_bytes());
    }
    hex(&hasher.finalize()[..8])
}

/// Writes `files` as the content-addressed work dir `dir`, unless it is
/// there already: into a sibling of a name no other writer uses, renamed
/// into place, so a reader never sees half a template and two processes
/// writing the same template at once both end up with one whole copy.
fn write_generated(files: &BTreeMap<PathBuf, &str>, dir: &Path) -> Result<(), TemplateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TemplateError::Io { path, source }
    };
    let list_path = dir.join(WRITTEN_LIST);
    if list_path.is_file() {
        // Prepared again: the mark of its last use, which pruning reads.
        let _ = std::fs::File::options()
            .append(true)
            .open(&list_path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = parent.join(format!(".{name}.partial-{}", crate::engine::unique_suffix()));
    let written = (|| {
        for (rel, content) in files {
            let path = partial.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&path, content).map_err(io(&path))?;
        }
        let list: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
        let partial_list = partial.join(WRITTEN_LIST);
        std::fs::write(&partial_list, list.join("\n")).map_err(io(&partial_list))
    })();
    let renamed = written.and_then(|()| match std::fs::rename(&partial, dir) {
        Ok(()) => Ok(()),
        // Another writer of the same content was first: its copy is whole.
        Err(_) if list_path.is_file() => Ok(()),
        Err(source) => Err(TemplateError::Io { path: dir.to_path_buf(), source }),
    });
    let _ = std::fs::remove_dir_all(&partial);
    renamed
}

/// Removes the generated templates of `work_root` not prepared for
/// [`GENERATED_TEMPLATE_TTL`], and partial copies a crashed writer left
/// that long ago; never `keep`. Best effort: what cannot be removed stays.
fn prune_generated(work_root: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(work_root) else { return };
    let now = std::time::SystemTime::now();
    let stale = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age > GENERATED_TEMPLATE_TTL))
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == keep || !path.is_dir() {
            continue;
        }
        let list = path.join(WRITTEN_LIST);
        let partial = entry.file_name().to_string_lossy().contains(".partial-");
        if (list.is_file() && stale(&list)) || (partial && stale(&path)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(manifest: &str) -> GeneratedTemplate {
        GeneratedTemplate {
            source_files: [("src/main.rs".into(), "fn main() {}".to_owned())].into(),
            cargo_toml: manifest.into(),
            ..Default::default()
        }
    }

    const MANIFEST: &str = "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";

    #[test]
    fn generated_template_is_written_once_and_kept_stable() {
        let root = tempfile::tempdir().unwrap();
        let t = generated(MANIFEST);
        let p = TemplateSource::Generated(t.clone()).prepare(root.path()).unwrap();
        assert_eq!(p.package, "demo");
        assert_eq!(p.bin_name, "demo");
        let main = p.dir.join("src/main.rs");
        let before = std::fs::metadata(&main).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = TemplateSource::Generated(t).prepare(root.path()).unwrap();
        assert_eq!(again, p, "same template, same id and dir");
        assert_eq!(std::fs::metadata(&main).unwrap().modified().unwrap(), before, "unchanged file not rewritten");
    }

    #[test]
    fn each_content_gets_its_own_work_dir_and_one_writer_wins() {
        let root = tempfile::tempdir().unwrap();
        let one = generated(MANIFEST);
        let mut other = generated(MANIFEST);
        other.source_files.insert("src/main.rs".into(), "fn main() { println!(\"other plan\"); }".into());
        let a = TemplateSource::Generated(one.clone()).prepare(root.path()).unwrap();
        let b = TemplateSource::Generated(other).prepare(root.path()).unwrap();
        assert_ne!(a.dir, b.dir, "two plans of one package, two work dirs");
        assert_ne!(a.id, b.id);
        assert!(a.dir.file_name().unwrap().to_string_lossy().starts_with("demo-"), "{}", a.dir.display());
        assert_eq!(std::fs::read_to_string(a.dir.join("src/main.rs")).unwrap(), "fn main() {}");
        assert!(std::fs::read_to_string(b.dir.join("src/main.rs")).unwrap().contains("other plan"));
        // Many writers of one content at once: one whole copy, no leftovers.
        let again: Vec<PreparedTemplate> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..8)
                .map(|_| {
                    let t = TemplateSource::Generated(one.clone());
                    let root = root.path();
                    scope.spawn(move || t.prepare(root).unwrap())
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(again.iter().all(|p| *p == a), "{again:?}");
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn the_dependency_key_follows_the_locked_dependencies_not_the_template() {
        let root = tempfile::tempdir().unwrap();
        let lock = |root_name: &str, serde: &str| {
            format!(
                "version = 4\n\n[[package]]\nname = \"{root_name}\"\nversion = \"0.1.0\"\ndependencies = [\"serde\"]\n\n\
                 [[package]]\nname = \"serde\"\nversion = \"{serde}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
            )
        };
        let with = |name: &str, main: &str, lock_text: Option<String>| {
            let mut t = generated(&MANIFEST.replace("demo", name));
            t.source_files.insert("src/main.rs".into(), main.into());
            if let Some(lock_text) = lock_text {
                t.source_files.insert("Cargo.lock".into(), lock_text);
            }
            TemplateSource::Generated(t).prepare(root.path()).unwrap().dependency_key()
        };
        let base = with("demo", "fn main() {}", Some(lock("demo", "1.0.200")));
        assert!(base.starts_with("deps-") && base.len() == 21, "{base}");
        assert_eq!(with("demo", "fn main() { println!(); }", Some(lock("demo", "1.0.200"))), base, "another plan");
        assert_eq!(with("runner", "fn main() {}", Some(lock("runner", "1.0.200"))), base, "another package name");
        assert_ne!(with("demo", "fn main() {}", Some(lock("demo", "1.0.201"))), base, "another serde");
        // Without a lock: the manifest's dependency tables.
        assert_ne!(with("demo", "fn main() {}", None), base);
        assert_eq!(with("demo", "fn main() {}", None), with("other", "fn main() { }", None));
    }

    #[test]
    fn malformed_manifest_names_line_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let err = TemplateSource::Generated(generated("[package\nname = 1")).prepare(root.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("malformed") && text.contains("line 1"), "{text}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn bin_name_from_bin_section() {
        let root = tempfile::tempdir().unwrap();
        let manifest = format!("{MANIFEST}\n[[bin]]\nname = \"runner\"\npath = \"src/main.rs\"\n");
        let p = TemplateSource::Generated(generated(&manifest)).prepare(root.path()).unwrap();
        assert_eq!(p.bin_name, "runner");
    }

    #[test]
    fn rejects_escaping_paths_and_reserved_flags() {
        let root = tempfile::tempdir().unwrap();
        let mut t = generated(MANIFEST);
        t.source_files.insert("../evil.rs".into(), "".into());
        assert!(matches!(TemplateSource::Generated(t).prepare(root.path()), Err(TemplateError::UnsafePath(_))));
        let mut t = generated(MANIFEST);
        t.source_files.insert("/etc/evil.rs".into(), "".into());
        assert!(matches!(TemplateSource::Generated(t).prepare(root.path()), Err(TemplateError::UnsafePath(_))));
        let mut t = generated(MANIFEST);
        t.compilation_flags = vec!["--target=x".into()];
        assert!(matches!(TemplateSource::Generated(t).prepare(root.path()), Err(TemplateError::ConflictingFlag(_))));
    }

    #[test]
    fn lock_file_is_found_in_the_workspace_root() {
        let root = tempfile::tempdir().unwrap();
        let member = root.path().join("member");
        std::fs::create_dir_all(member.join("src")).unwrap();
        std::fs::write(member.join("Cargo.toml"), MANIFEST).unwrap();
        std::fs::write(member.join("src/main.rs"), "fn main() {}").unwrap();
        let p = TemplateSource::Dir(member.clone()).prepare(root.path()).unwrap();
        assert_eq!(p.lock_file(), None);
        std::fs::write(root.path().join("Cargo.lock"), "").unwrap();
        assert_eq!(p.lock_file(), Some(root.path().canonicalize().unwrap().join("Cargo.lock")));
        std::fs::write(member.join("Cargo.lock"), "").unwrap();
        assert_eq!(p.lock_file(), Some(p.dir.join("Cargo.lock")));
    }

    #[test]
    fn template_path_that_is_missing_or_a_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = TemplateSource::Dir(missing.clone()).prepare(dir.path()).unwrap_err();
        assert!(matches!(&err, TemplateError::Missing(p) if *p == missing), "{err}");
        assert!(err.to_string().contains("does not exist; pass the directory of a cargo package"), "{err}");

        std::fs::write(dir.path().join("Cargo.toml"), MANIFEST).unwrap();
        let manifest = dir.path().join("Cargo.toml");
        let err = TemplateSource::Dir(manifest.clone()).prepare(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("template {} is a file, not a directory", manifest.display())), "{message}");
        assert!(message.contains(&format!("(here: {})", dir.path().display())), "{message}");

        let main = dir.path().join("main.rs");
        std::fs::write(&main, "fn main() {}").unwrap();
        let err = TemplateSource::Dir(main).prepare(dir.path()).unwrap_err();
        assert!(matches!(&err, TemplateError::NotADirectory { hint, .. } if hint.is_empty()), "{err}");
        assert!(!err.to_string().contains("no Cargo.toml"), "{err}");
    }

    #[test]
    fn directory_template_without_manifest_or_binary() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            TemplateSource::Dir(dir.path().into()).prepare(dir.path()),
            Err(TemplateError::NoManifest(_))
        ));
        std::fs::write(dir.path().join("Cargo.toml"), MANIFEST).unwrap();
        let err = TemplateSource::Dir(dir.path().into()).prepare(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no binary target"), "{err}");
    }
}

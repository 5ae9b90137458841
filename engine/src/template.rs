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
    /// `work_root/<package>/` (only files whose content changed, so cargo's
    /// fingerprints of the others stay valid).
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
                let dir = work_root.join(&package);
                write_generated(template, &dir)?;
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

fn write_generated(template: &GeneratedTemplate, dir: &Path) -> Result<(), TemplateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TemplateError::Io { path, source }
    };
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
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Remove what an earlier version of the template wrote and this one does not.
    let list_path = dir.join(WRITTEN_LIST);
    let previous: BTreeSet<PathBuf> =
        std::fs::read_to_string(&list_path).unwrap_or_default().lines().map(PathBuf::from).collect();
    for stale in previous.iter().filter(|p| !files.contains_key(*p)) {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    for (rel, content) in &files {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|old| old == content.as_bytes()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
    }
    let list: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
    std::fs::write(&list_path, list.join("\n")).map_err(io(&list_path))?;
    Ok(())
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
    fn stale_files_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let mut t = generated(MANIFEST);
        t.source_files.insert("src/extra.rs".into(), "".into());
        let p = TemplateSource::Generated(t.clone()).prepare(root.path()).unwrap();
        assert!(p.dir.join("src/extra.rs").exists());
        t.source_files.remove(Path::new("src/extra.rs"));
        TemplateSource::Generated(t).prepare(root.path()).unwrap();
        assert!(!p.dir.join("src/extra.rs").exists());
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

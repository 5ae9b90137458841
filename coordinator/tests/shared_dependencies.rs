//! What a new template costs, through the library rustle-deploy embeds: a
//! template in a new directory with the same Cargo.lock compiles only its
//! own crate (the target dirs are keyed by the dependencies, not by where
//! the template is); a template with other dependencies for a target
//! without a prebuilt std compiles no `core`/`std` (std is built once per
//! target into a sysroot); and two generated templates of one package
//! name built at once each get their own work dir and their own binary.
//! cargo's `Compiling` lines, which it prints only for what it compiles,
//! are the count.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustle_cross::build::{BuildEvent, GeneratedTemplate, TemplateSource};
use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager, ProgressSink, TargetOutcome};

const X86: &str = "x86_64-unknown-linux-gnu";
/// No prebuilt std here: built from rust-src.
const WINDOWS: &str = "x86_64-pc-windows-gnu";
const TEST_BOUND: Duration = Duration::from_secs(1800);

fn manager() -> CrossCompilationManager {
    let config = CrossCompilationConfig {
        target_cache_dir: Some(common::cache_dir()),
        // Every build here must compile: no binary of an earlier run answers.
        binary_cache: false,
        ..CrossCompilationConfig::default()
    };
    CrossCompilationManager::new(config).expect("manager")
}

/// Builds `source` for `targets`; returns the outcomes and, per target,
/// the crates cargo said it was compiling.
async fn build(
    manager: &CrossCompilationManager,
    source: &TemplateSource,
    targets: &[&str],
) -> (Vec<TargetOutcome>, Vec<BTreeSet<String>>) {
    let compiled: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = compiled.clone();
    let sink: ProgressSink = Arc::new(move |event| {
        if let BuildEvent::Log { triple, line } = event
            && let Some(rest) = line.trim_start().strip_prefix("Compiling ")
        {
            let name = rest.split_whitespace().next().unwrap_or_default().to_owned();
            seen.lock().expect("lock").push((triple, name));
        }
    });
    let specs: Vec<TargetSpecification> =
        targets.iter().map(|t| TargetSpecification::from_triple(t).expect("triple")).collect();
    let outcomes = tokio::time::timeout(
        TEST_BOUND,
        manager.build(source, &specs, &CompilationOptimization::default(), Some(sink)),
    )
    .await
    .expect("bounded")
    .expect("the template is usable");
    let compiled = compiled.lock().expect("lock").clone();
    let per_target = targets
        .iter()
        .map(|t| compiled.iter().filter(|(triple, _)| triple.starts_with(t)).map(|(_, name)| name.clone()).collect())
        .collect();
    for outcome in &outcomes {
        assert!(outcome.result.is_ok(), "{}", common::describe(outcome));
    }
    (outcomes, per_target)
}

/// A name no earlier run used.
fn fresh(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_nanos();
    format!("{name}-{nanos}")
}

/// Writes `binary` out and runs it here.
fn run_here(outcome: &TargetOutcome, dir: &Path) -> String {
    let binary = outcome.result.as_ref().expect("built");
    let path = dir.join(&binary.file_name);
    std::fs::write(&path, &binary.binary_data).expect("write the binary");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = std::process::Command::new(&path).output().expect("run the binary");
    assert!(out.status.success(), "{} failed: {out:?}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_template_compiles_only_its_own_crate_and_never_std_again() {
    if !common::require_cross_tools(&["x86_64-w64-mingw32-gcc"]) {
        return;
    }
    let manager = manager();
    manager.setup_environment().await.expect("toolchains");
    let targets = [X86, WINDOWS];
    // The bundled example, built as every other suite builds it: after
    // this, its dependencies are compiled for both targets.
    let warm = TemplateSource::Dir(common::example_template());
    build(&manager, &warm, &targets).await;

    // A new plan: the same template in a new directory, one string changed.
    let new_dir = common::work_root().join("templates").join(fresh("new-plan"));
    common::example_template_at(&new_dir);
    let main = new_dir.join("src/main.rs");
    let text = std::fs::read_to_string(&main).expect("main.rs");
    let changed = text.replacen("println!(\"rustle-hello {}\"", "println!(\"new plan: rustle-hello {}\"", 1);
    assert_ne!(changed, text, "the example prints `rustle-hello {{}}`");
    std::fs::write(&main, changed).expect("write main.rs");
    let (outcomes, compiled) = build(&manager, &TemplateSource::Dir(new_dir.clone()), &targets).await;
    for (target, crates) in targets.iter().zip(&compiled) {
        assert_eq!(
            crates.iter().map(String::as_str).collect::<Vec<_>>(),
            ["rustle-hello"],
            "{target}: a new template with the same Cargo.lock compiles only its own crate"
        );
    }
    let out_dir = tempfile::tempdir().expect("tmp");
    assert!(run_here(&outcomes[0], out_dir.path()).starts_with("new plan: rustle-hello"), "its own binary");

    // Other dependencies (none): a new target dir, but std for Windows
    // comes from the sysroot built before, not compiled again.
    let plain = common::scratch_template(
        &fresh("plain-plan"),
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"plain-plan\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[profile.release]\npanic = \"abort\"\nlto = true\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"plain {:?}\", (1..4).collect::<Vec<u32>>());\n}\n"),
        ],
    );
    let (_, compiled) = build(&manager, &TemplateSource::Dir(plain.clone()), &[WINDOWS]).await;
    assert_eq!(compiled[0].iter().map(String::as_str).collect::<Vec<_>>(), ["plain-plan"], "no core, alloc or std");
    let sysroots = common::cache_dir().join("sysroots");
    let built: Vec<PathBuf> = walk(&sysroots).into_iter().filter(|p| p.ends_with("built")).collect();
    assert!(built.iter().any(|p| p.to_string_lossy().contains(WINDOWS)), "a {WINDOWS} sysroot: {built:?}");
    for dir in [new_dir, plain] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_generated_templates_of_one_package_built_at_once_keep_their_own_plans() {
    let manager = manager();
    manager.setup_environment().await.expect("toolchains");
    let plan = |says: &str| GeneratedTemplate {
        cargo_toml: "[package]\nname = \"generated-runner\"\nversion = \"0.1.0\"\nedition = \"2021\"\n".into(),
        source_files: [("src/main.rs".into(), format!("fn main() {{\n    println!(\"{says}\");\n}}\n"))].into(),
        ..GeneratedTemplate::default()
    };
    let (first, second) = (fresh("first plan"), fresh("second plan"));
    let x86 = [TargetSpecification::from_triple(X86).expect("x86")];
    let (a, b) = (plan(&first), plan(&second));
    let (outcomes_a, outcomes_b) = tokio::time::timeout(TEST_BOUND, async {
        tokio::join!(manager.cross_compile_parallel(&a, &x86), manager.cross_compile_parallel(&b, &x86))
    })
    .await
    .expect("bounded");
    let out = tempfile::tempdir().expect("tmp");
    let (dir_a, dir_b) = (out.path().join("a"), out.path().join("b"));
    for dir in [&dir_a, &dir_b] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    assert_eq!(run_here(&outcomes_a[0], &dir_a).trim(), first, "{}", common::describe(&outcomes_a[0]));
    assert_eq!(run_here(&outcomes_b[0], &dir_b).trim(), second, "{}", common::describe(&outcomes_b[0]));
    let work_dirs: Vec<String> = std::fs::read_dir(common::cache_dir().join("templates"))
        .expect("templates")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("generated-runner-"))
        .collect();
    assert!(work_dirs.len() >= 2, "one work dir per plan: {work_dirs:?}");
}

/// Two builds for a target without a prebuilt std, of two templates, start
/// at once on an empty cache (two managers, as two rustle-deploy processes
/// would be): std is built once, under the sysroot's lock, and both
/// builds link against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_at_once_on_an_empty_cache_build_std_once() {
    if !common::require_cross_tools(&["x86_64-w64-mingw32-gcc"]) {
        return;
    }
    let cache = tempfile::Builder::new().prefix("rustle-sysroot-race").tempdir_in(common::work_root()).expect("tmp");
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = |notes: Arc<Mutex<Vec<String>>>| -> ProgressSink {
        Arc::new(move |event| {
            if let BuildEvent::Note { line, .. } = event {
                notes.lock().expect("lock").push(line);
            }
        })
    };
    let template = |name: &str| {
        common::scratch_template(
            &fresh(name),
            &[
                ("Cargo.toml", &format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")),
                ("src/main.rs", &format!("fn main() {{\n    println!(\"{name}\");\n}}\n")),
            ],
        )
    };
    let (one, two) = (template("race-one"), template("race-two"));
    let managers: Vec<CrossCompilationManager> = (0..2)
        .map(|_| {
            CrossCompilationManager::new(CrossCompilationConfig {
                target_cache_dir: Some(cache.path().to_path_buf()),
                binary_cache: false,
                ..CrossCompilationConfig::default()
            })
            .expect("manager")
        })
        .collect();
    let windows = [TargetSpecification::from_triple(WINDOWS).expect("windows")];
    let optimization = CompilationOptimization::default();
    let (source_one, source_two) = (TemplateSource::Dir(one.clone()), TemplateSource::Dir(two.clone()));
    let (a, b) = tokio::time::timeout(TEST_BOUND, async {
        tokio::join!(
            managers[0].build(&source_one, &windows, &optimization, Some(sink(notes.clone()))),
            managers[1].build(&source_two, &windows, &optimization, Some(sink(notes.clone()))),
        )
    })
    .await
    .expect("bounded");
    for outcomes in [a.expect("usable"), b.expect("usable")] {
        assert!(outcomes[0].result.is_ok(), "{}", common::describe(&outcomes[0]));
    }
    let notes = notes.lock().expect("lock").clone();
    let std_builds = notes.iter().filter(|n| n.starts_with("building std for")).count();
    assert_eq!(std_builds, 1, "std built once for both: {notes:?}");
    let stamps: Vec<PathBuf> =
        walk(&cache.path().join("sysroots")).into_iter().filter(|p| p.ends_with("built")).collect();
    assert_eq!(stamps.len(), 1, "{stamps:?}");
    for dir in [one, two] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

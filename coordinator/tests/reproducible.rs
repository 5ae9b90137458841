//! Reproducible binaries: the bundled example, copied into two directories
//! of different lengths and built with the binary cache off, gives
//! byte-identical binaries for x86_64-gnu, aarch64-gnu and windows-gnu, and
//! none of them names the template's or the cache's directory, CARGO_HOME
//! or the rust-src std was built from; built with
//! another cache directory, x86_64 is the same binary again. This is what
//! lets the binary cache take one key to mean one binary wherever it was
//! built.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_cross::build::{BuildPlan, CompiledBinary, StdSource, TemplateSource};
use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};

const TARGETS: &[&str] = &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-pc-windows-gnu"];
const SKIP: &str = "RUSTLE_SKIP_REPRO_TESTS";
/// Cold, the two templates build windows-gnu's std from source each.
const TEST_BOUND: Duration = Duration::from_secs(3600);

/// This suite's directories, kept between runs so that a repeat is warm.
fn suite_dir() -> PathBuf {
    common::work_root().join("reproducible")
}

fn manager(cache: &Path) -> CrossCompilationManager {
    let config = CrossCompilationConfig {
        target_cache_dir: Some(cache.to_path_buf()),
        // Every binary must come from cargo, not from the binary cache.
        binary_cache: false,
        ..CrossCompilationConfig::default()
    };
    CrossCompilationManager::new(config).expect("manager")
}

/// Builds `template` for `targets` in `cache`; one binary per target.
async fn build(template: &Path, cache: &Path, targets: &[&str]) -> Vec<CompiledBinary> {
    let manager = manager(cache);
    manager.setup_environment().await.expect("toolchains");
    let specs: Vec<TargetSpecification> =
        targets.iter().map(|t| TargetSpecification::from_triple(t).expect("triple")).collect();
    let source = TemplateSource::Dir(template.to_path_buf());
    let outcomes =
        manager.build(&source, &specs, &CompilationOptimization::default(), None).await.expect("template usable");
    outcomes
        .into_iter()
        .map(|outcome| {
            let binary = outcome.result.unwrap_or_else(|e| panic!("{} in {}: {e}", outcome.target, template.display()));
            assert!(binary.cached.is_none(), "{}: served from the binary cache", outcome.target);
            binary
        })
        .collect()
}

/// Each target's plan here; when a route is missing, fails naming
/// `scripts/setup.sh`, or prints the skip and returns `None` when
/// `RUSTLE_SKIP_REPRO_TESTS=1`.
async fn plans(cache: &Path) -> Option<Vec<BuildPlan>> {
    let manager = manager(cache);
    let (mut plans, mut missing) = (Vec::new(), Vec::new());
    for target in TARGETS {
        let availability =
            manager.toolchain_manager().get_target_availability(target).await.expect("toolchain discovery");
        match availability.plan() {
            Some(plan) => plans.push(plan.clone()),
            None => missing.push(format!("{target}: {availability:?}")),
        }
    }
    if missing.is_empty() {
        return Some(plans);
    }
    if std::env::var(SKIP).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: reproducible-binary tests skipped because {SKIP}=1; not buildable here: {missing:?}");
        return None;
    }
    panic!(
        "not buildable here: {missing:#?}\nrun scripts/setup.sh (as root) to install the cross toolchains, or set {SKIP}=1 to skip this test"
    );
}

/// Fails with the first differing offset and both sizes unless `a == b`.
fn assert_identical(what: &str, a: &[u8], b: &[u8]) {
    if a == b {
        return;
    }
    let offset = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: not byte-identical: first difference at offset {offset} (0x{offset:x}); sizes {} and {} bytes",
        a.len(),
        b.len()
    );
}

/// Where `needle` occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .map(|(i, _)| i)
        .find(|&i| haystack.get(i + 1..i + needle.len()) == Some(rest))
}

/// Fails when `binary` contains any of `dirs` as bytes.
fn assert_names_none_of(what: &str, binary: &[u8], dirs: &[&Path]) {
    for dir in dirs {
        let text = dir.to_str().expect("utf-8 path");
        if let Some(at) = find(binary, text.as_bytes()) {
            let end = (at + text.len() + 80).min(binary.len());
            panic!("{what} contains the path {text} at offset {at}: {:?}", String::from_utf8_lossy(&binary[at..end]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_template_in_two_directories_gives_the_same_binaries() {
    let root = suite_dir();
    let cache = root.join("cache");
    let Some(plans) = plans(&cache).await else { return };
    // Two copies, at paths of different lengths.
    let short = common::example_template_at(&root.join("a/hello-template"));
    let long = common::example_template_at(&root.join("a-much-longer-directory-name/nested/hello-template"));
    let (short, long) = (short.canonicalize().expect("short"), long.canonicalize().expect("long"));
    let other_cache = root.join("another-cache-directory");

    let (first, second, elsewhere) = rustle_test_support::bounded(TEST_BOUND, async {
        let first = build(&short, &cache, TARGETS).await;
        let second = build(&long, &cache, TARGETS).await;
        let elsewhere = build(&short, &other_cache, &TARGETS[..1]).await;
        (first, second, elsewhere)
    })
    .await;

    // Where things are on this machine: none of it may be in a binary,
    // nor the rust-src a std was built from (a prebuilt std names its
    // sources as its packager remapped them, whatever that is).
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::home_dir().expect("home").join(".cargo"));
    let paths = [short.as_path(), long.as_path(), cache.as_path(), other_cache.as_path(), &cargo_home];
    for (plan, (a, b)) in plans.iter().zip(first.iter().zip(&second)) {
        let target = &plan.target;
        eprintln!("{target}: {} and {} bytes, sha256 {} and {}", a.size, b.size, a.checksum, b.checksum);
        assert_identical(
            &format!("{target}, built from {} and from {}", short.display(), long.display()),
            &a.binary_data,
            &b.binary_data,
        );
        let rust_src: Vec<PathBuf> = match (&plan.std, &plan.toolchain.rust_src) {
            (StdSource::BuildStd, Some(src)) => {
                vec![src.library.clone(), src.library.canonicalize().unwrap_or_else(|_| src.library.clone())]
            }
            _ => Vec::new(),
        };
        let here: Vec<&Path> = paths.iter().copied().chain(rust_src.iter().map(PathBuf::as_path)).collect();
        assert_names_none_of(&format!("{target} from {}", short.display()), &a.binary_data, &here);
        assert_names_none_of(&format!("{target} from {}", long.display()), &b.binary_data, &here);
    }
    assert_identical(
        &format!("{}, built with cache {} and with cache {}", TARGETS[0], cache.display(), other_cache.display()),
        &first[0].binary_data,
        &elsewhere[0].binary_data,
    );
    assert_names_none_of(
        &format!("{} with cache {}", TARGETS[0], other_cache.display()),
        &elsewhere[0].binary_data,
        &paths,
    );
}

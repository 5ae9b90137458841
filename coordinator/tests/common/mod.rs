//! Shared helpers for the CLI end-to-end tests: the real `rustle-cross`
//! binary, one cache shared by every test of a cargo target dir (so each
//! target is built cold once per machine, then incrementally), and scratch
//! templates.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the tests keep templates and the cache: outside this repository,
/// because cargo refuses to build a package that sits inside another
/// workspace's directory without being its member.
pub fn work_root() -> PathBuf {
    std::env::var_os("RUSTLE_TEST_WORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("rustle-cross-e2e"))
}

/// The cache every end-to-end test shares.
pub fn cache_dir() -> PathBuf {
    work_root().join("cache")
}

/// `rustle-cross ARGS` with the shared cache.
pub fn rustle_cross(args: &[&str]) -> Output {
    rustle_cross_env(args, &[])
}

/// `rustle-cross ARGS` with extra environment.
pub fn rustle_cross_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustle-cross"));
    cmd.args(args).env("RUSTLE_TARGET_CACHE_DIR", cache_dir()).env_remove("RUSTLE_CROSS_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run rustle-cross");
    eprintln!(
        "$ rustle-cross {}\n--- exit {:?}\n--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A copy of the bundled example template at a stable path (so its target
/// dirs stay warm between runs). The copy is refreshed from the source.
pub fn example_template() -> PathBuf {
    example_template_at(&work_root().join("templates/hello-template"))
}

/// A copy of the bundled example template at `dst` (without its `target/`),
/// refreshed from the source; unchanged files keep their mtimes.
pub fn example_template_at(dst: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-template");
    copy_tree(&src, dst);
    dst.to_path_buf()
}

/// A copy of the bundled template `examples/NAME` at a stable path (so its
/// target dirs stay warm between runs), refreshed from the source.
pub fn bundled_template(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    let dst = work_root().join("templates").join(name);
    copy_tree(&src, &dst);
    dst
}

/// Writes a template from (path, content) pairs at a stable path named `name`.
pub fn scratch_template(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = work_root().join("templates").join(name);
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*content) {
            std::fs::write(&path, content).expect("write template file");
        }
    }
    dir
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read template") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &to);
            }
        } else {
            let content = std::fs::read(entry.path()).expect("read");
            // Rewrite only what changed: unchanged mtimes keep builds warm.
            if std::fs::read(&to).ok() != Some(content.clone()) {
                std::fs::write(&to, content).expect("write");
            }
        }
    }
}

/// stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The result for `target` in a `build --json` report.
pub fn result_for<'a>(report: &'a serde_json::Value, target: &str) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no result for {target}: {report:#}"))
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails with a message naming the set-up script when a cross tool is
/// missing, unless RUSTLE_SKIP_CROSS_TOOLS=1 (then prints the skip and
/// returns false).
pub fn require_cross_tools(tools: &[&str]) -> bool {
    rustle_test_support::require_tools(tools)
}

/// The dependency-free template the fleet tests build: fast on every route.
pub fn fleet_hello_template() -> PathBuf {
    scratch_template(
        "fleet-hello",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"fleet-hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"hello from the fleet\");\n}\n"),
        ],
    )
}

/// One target's outcome for an assertion message: the target, its error if
/// any, where it was built, and every placement decision.
pub fn describe(outcome: &rustle_cross::TargetOutcome) -> String {
    let decisions: Vec<String> = outcome.decisions.iter().map(ToString::to_string).collect();
    format!(
        "{}: {:?} on {:?}\n{}",
        outcome.target,
        outcome.result.as_ref().err(),
        outcome.executor,
        decisions.join("\n")
    )
}

//! The binary cache through the real CLI: a repeat is answered without
//! running cargo and gives the same bytes, a damaged entry is detected,
//! rebuilt and reported, and two processes building at once both succeed
//! and leave one valid entry.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{example_template, json, require_cross_tools, rustle_cross_env, stderr};

const TARGETS: &[&str] = &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-pc-windows-gnu"];

/// This suite's own cache (its target dirs stay warm between runs), so that
/// what it does to the cache cannot disturb the other suites.
fn suite_cache() -> PathBuf {
    common::work_root().join("binary-cache-suite")
}

fn cli(args: &[&str]) -> Output {
    let cache = suite_cache();
    rustle_cross_env(args, &[("RUSTLE_TARGET_CACHE_DIR", cache.to_str().expect("utf-8"))])
}

fn build(template: &Path, targets: &[&str], out: &Path, extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut args = vec!["build", template.to_str().expect("utf-8"), "--json", "--out", out.to_str().expect("utf-8")];
    for target in targets {
        args.extend(["-t", target]);
    }
    args.extend(extra);
    let out = cli(&args);
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let results = json(&out)["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), targets.len(), "{results:#?}");
    for result in &results {
        assert_eq!(result["status"], "ok", "{result:#}");
    }
    (out, results)
}

fn file_of(result: &serde_json::Value) -> Vec<u8> {
    std::fs::read(result["file"].as_str().expect("file")).expect("read binary")
}

/// Puts `dir` back when dropped, whatever the test did to it.
struct Restore {
    dir: PathBuf,
    aside: PathBuf,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.aside.exists() {
            let _ = std::fs::remove_file(&self.dir);
            let _ = std::fs::rename(&self.aside, &self.dir);
        }
    }
}

#[test]
fn repeats_come_from_the_cache_whole_and_damage_is_rebuilt() {
    if !require_cross_tools(&["aarch64-linux-gnu-gcc", "x86_64-w64-mingw32-gcc"]) {
        return;
    }
    let template = example_template();
    let scratch = tempfile::tempdir().expect("tempdir");
    assert!(cli(&["cache", "clear"]).status.success());

    // A cold cache: every target is built (and stored).
    let (_, first) = build(&template, TARGETS, &scratch.path().join("first"), &[]);
    for result in &first {
        assert!(result["cached"].is_null(), "nothing was cached yet: {result:#}");
    }

    // The repeat: with the target dirs replaced by a file, any cargo run
    // would fail, so every binary must come from the cache.
    let targets_dir = suite_cache().join("targets");
    let restore = Restore { dir: targets_dir.clone(), aside: suite_cache().join("targets.aside") };
    std::fs::rename(&targets_dir, &restore.aside).expect("move the target dirs aside");
    std::fs::write(&targets_dir, "not a directory: cargo cannot build here").expect("block the target dirs");
    let (_, second) = build(&template, TARGETS, &scratch.path().join("second"), &[]);
    for (built, cached) in first.iter().zip(&second) {
        assert_eq!(cached["cached"]["store"], "local", "{cached:#}");
        assert_eq!(cached["sha256"], built["sha256"], "{cached:#}");
        assert_eq!(file_of(cached), file_of(built), "{}: the same bytes", built["target"]);
        assert_eq!(cached["validation"], built["validation"]);
        assert_eq!(cached["metadata"], built["metadata"]);
    }
    let table = cli(&[
        "build",
        template.to_str().expect("utf-8"),
        "-t",
        TARGETS[0],
        "--out",
        scratch.path().to_str().expect("utf-8"),
    ]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("cached (local)"), "{}", stderr(&table));
    drop(restore);

    // A flipped byte in a stored binary: detected, rebuilt, reported.
    let blob = suite_cache().join("binaries/blobs").join(first[0]["sha256"].as_str().expect("sha256"));
    let mut data = std::fs::read(&blob).expect("stored binary");
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    std::fs::write(&blob, data).expect("damage it");
    let (out, rebuilt) = build(&template, &TARGETS[..1], &scratch.path().join("third"), &[]);
    assert!(rebuilt[0]["cached"].is_null(), "a damaged entry is never served: {:#}", rebuilt[0]);
    assert!(stderr(&out).contains("binary cache entry removed and rebuilt"), "{}", stderr(&out));
    assert_eq!(rebuilt[0]["sha256"], first[0]["sha256"], "the rebuild is the same binary");
    let (_, again) = build(&template, &TARGETS[..1], &scratch.path().join("fourth"), &[]);
    assert_eq!(again[0]["cached"]["store"], "local", "the rebuilt binary was stored again");

    // --no-cache builds anyway.
    let (_, forced) = build(&template, &TARGETS[..1], &scratch.path().join("fifth"), &["--no-cache"]);
    assert!(forced[0]["cached"].is_null(), "{:#}", forced[0]);

    // Two processes building the same template at once: both succeed, one
    // valid entry is left, and it answers the next build.
    assert!(cli(&["cache", "clear"]).status.success());
    let spawn = |name: &str| {
        let out = scratch.path().join(name);
        std::process::Command::new(env!("CARGO_BIN_EXE_rustle-cross"))
            .args(["build", template.to_str().expect("utf-8"), "-t", TARGETS[0], "--json", "--out"])
            .arg(out)
            .env("RUSTLE_TARGET_CACHE_DIR", suite_cache())
            .env_remove("RUSTLE_CROSS_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rustle-cross")
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json(&out)["results"][0]["sha256"], first[0]["sha256"]);
    }
    let stats = cli(&["cache", "stats"]);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains(": 1 entries, 1 binaries"), "{text}");
    let (_, after) = build(&template, &TARGETS[..1], &scratch.path().join("sixth"), &[]);
    assert_eq!(after[0]["cached"]["store"], "local");
}

#[test]
fn cache_key_explains_its_inputs() {
    let template = example_template();
    let out = cli(&["cache", "key", template.to_str().expect("utf-8"), "-t", "x86_64-unknown-linux-gnu.2.17"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let (key, inputs) = text.split_once('\n').expect("a key line, then the inputs");
    assert_eq!(key.len(), 64, "{key}");
    let inputs: serde_json::Value = serde_json::from_str(inputs).expect("JSON inputs");
    assert_eq!(inputs["target"], "x86_64-unknown-linux-gnu.2.17");
    assert!(inputs["template"].as_array().expect("files").iter().any(|f| f["path"] == "src/main.rs"), "{inputs:#}");
    assert!(inputs["route"][0].as_str().is_some_and(|r| r.starts_with("zig: ")), "{inputs:#}");
    // Where the template is does not matter; what it says does.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let copy = elsewhere.path().join("hello-template");
    copy_dir(&template, &copy);
    let moved = cli(&["cache", "key", copy.to_str().expect("utf-8"), "-t", "x86_64-unknown-linux-gnu.2.17"]);
    assert_eq!(String::from_utf8_lossy(&moved.stdout).lines().next(), Some(key), "{}", stderr(&moved));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "target" {
            continue;
        }
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

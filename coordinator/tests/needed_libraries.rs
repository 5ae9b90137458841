//! The library check through the real CLI: a template linked dynamically
//! against zlib for x86_64-unknown-linux-gnu is reported as needing
//! `libz.so.1`, outside glibc's base system, in the summary and in
//! `--json`; with `--self-contained` (or `self_contained = true` in the
//! config file) that target fails naming the library and the way out, and
//! the other target (aarch64, which does not link zlib) keeps its binary.

mod common;

use std::path::Path;

use common::{json, require_cross_tools, result_for, rustle_cross, scratch_template, stderr};

const X86_64: &str = "x86_64-unknown-linux-gnu";
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Calls zlib's `zlibVersion` on x86_64 only, so the linker keeps
/// `libz.so.1` as a needed library there (and aarch64 needs no zlib for
/// its architecture, which Debian's cross set-up does not install).
const MAIN_RS: &str = r#"#[cfg(target_arch = "x86_64")]
mod zlib {
    use std::ffi::{c_char, CStr};

    #[link(name = "z")]
    extern "C" {
        fn zlibVersion() -> *const c_char;
    }

    pub fn version() -> String {
        // SAFETY: zlibVersion returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(zlibVersion()) }.to_string_lossy().into_owned()
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod zlib {
    pub fn version() -> String {
        "not linked".to_owned()
    }
}

fn main() {
    println!("zlib {}", zlib::version());
}
"#;

const MANIFEST: &str = "[package]\nname = \"links-zlib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n";

/// The x86_64 host's zlib, which the template links against.
const HOST_ZLIB: &str = "/usr/lib/x86_64-linux-gnu/libz.so";

fn strings(value: &serde_json::Value) -> Vec<&str> {
    value.as_array().unwrap_or_else(|| panic!("not a list: {value}")).iter().filter_map(|v| v.as_str()).collect()
}

/// `rustle-cross [--config FILE] build TEMPLATE --out OUT -t x86_64 -t aarch64 EXTRA...`.
fn build(template: &Path, out: &Path, config: Option<&Path>, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = Vec::new();
    if let Some(config) = config {
        args.extend(["--config", config.to_str().expect("utf-8")]);
    }
    args.extend([
        "build",
        template.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--target",
        X86_64,
        "--target",
        AARCH64,
    ]);
    args.extend(extra);
    rustle_cross(&args)
}

#[test]
fn a_library_outside_the_base_system_is_named_and_fails_a_self_contained_build() {
    if !require_cross_tools(&["aarch64-linux-gnu-gcc"])
        || !rustle_test_support::require_present(Path::new(HOST_ZLIB).exists(), "zlib1g-dev (libz.so)")
    {
        return;
    }
    let template = scratch_template("links-zlib", &[("Cargo.toml", MANIFEST), ("src/main.rs", MAIN_RS)]);
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");

    // Reported, not refused, by default: both targets build.
    let built = build(&template, &out, None, &["--json"]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let report = json(&built);
    let x86 = result_for(&report, X86_64);
    assert_eq!(x86["status"], "ok", "{report:#}");
    let needed = strings(&x86["validation"]["needed_libraries"]);
    assert!(needed.contains(&"libz.so.1") && needed.contains(&"libc.so.6"), "{x86:#}");
    assert_eq!(strings(&x86["validation"]["outside_base_system"]), ["libz.so.1"], "{x86:#}");
    let arm = result_for(&report, AARCH64);
    assert_eq!(arm["status"], "ok", "{report:#}");
    let needed = strings(&arm["validation"]["needed_libraries"]);
    assert!(needed.contains(&"libc.so.6") && !needed.contains(&"libz.so.1"), "{arm:#}");
    assert!(strings(&arm["validation"]["outside_base_system"]).is_empty(), "{arm:#}");

    // The summary names it on the target's row.
    let summary = build(&template, &out, None, &[]);
    assert_eq!(summary.status.code(), Some(0), "{}", stderr(&summary));
    let text = String::from_utf8_lossy(&summary.stdout);
    let row = text.lines().find(|l| l.starts_with(X86_64)).unwrap_or_else(|| panic!("no {X86_64} row: {text}"));
    assert!(row.contains("needs libz.so.1 (not in the base system)"), "{text}");
    let row = text.lines().find(|l| l.starts_with(AARCH64)).unwrap_or_else(|| panic!("no {AARCH64} row: {text}"));
    assert!(!row.contains("not in the base system"), "{text}");

    // --self-contained: x86_64 fails naming the library and the way out, on
    // a binary the cache answered as well as a fresh one; aarch64 is kept.
    for (name, extra) in [
        ("self-contained-cached", &["--json", "--self-contained"][..]),
        ("self-contained-fresh", &["--json", "--self-contained", "--no-cache"]),
    ] {
        let out = dir.path().join(name);
        let refused = build(&template, &out, None, extra);
        assert_eq!(refused.status.code(), Some(1), "a failed target exits 1: {}", stderr(&refused));
        let report = json(&refused);
        assert_eq!(report["failed"], 1, "{report:#}");
        let x86 = result_for(&report, X86_64);
        assert_eq!(x86["status"], "failed", "{report:#}");
        let error = x86["error"].as_str().expect("error");
        for needle in [X86_64, "libz.so.1", "self-contained", "statically", "c_libraries = \"static\""] {
            assert!(error.contains(needle), "missing {needle:?} in: {error}");
        }
        assert!(!out.join(format!("links-zlib-{X86_64}")).exists(), "no binary is written for a failed target");
        let arm = result_for(&report, AARCH64);
        assert_eq!(arm["status"], "ok", "{report:#}");
        assert_eq!(arm["cached"].is_object(), name == "self-contained-cached", "{arm:#}");
        assert!(out.join(format!("links-zlib-{AARCH64}")).is_file(), "the other target keeps its binary");
    }

    // The config key does the same, and the summary prints the error.
    let config = dir.path().join("rustle-cross.toml");
    std::fs::write(&config, "[cross_compilation]\nself_contained = true\n").expect("write config");
    let refused = build(&template, &dir.path().join("from-config"), Some(&config), &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let errors = stderr(&refused);
    assert!(errors.contains("libz.so.1") && errors.contains("self-contained"), "{errors}");
}

//! The target's C libraries, through the real CLI: the bundled
//! `examples/runner-template`, shaped like rustle-deploy's generated runners
//! (tokio, serde, tracing and reqwest with its default TLS, which links
//! OpenSSL on Linux, SChannel on Windows and Apple's frameworks on macOS),
//! built with the runners' release profile for five targets, each self-contained and run; OpenSSL
//! built from source once per target where no package supplies it (musl)
//! and reused; a dynamically linked library named, and failed with
//! `--self-contained`; and C dependencies that cannot be had refused before
//! compiling, naming the crate, the library, the target and the way out.

mod common;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{
    bundled_template, cache_dir, json, require_cross_tools, result_for, rustle_cross_env, scratch_template, stderr,
};

/// The runners' release profile.
const RUNNER_PROFILE: &str = "[profile.release]\nlto = true\nstrip = true\npanic = \"abort\"\ncodegen-units = 1\n";

/// The five targets the runner must build for here.
const RUNNER_TARGETS: [&str; 5] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "x86_64-unknown-linux-musl",
    "x86_64-pc-windows-gnu",
];

/// A small OpenSSL template (`name` tells copies apart).
fn openssl_template(name: &str) -> PathBuf {
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nopenssl = \"0.10\"\n\n{RUNNER_PROFILE}"
    );
    scratch_template(
        name,
        &[
            ("Cargo.toml", manifest.as_str()),
            ("src/main.rs", "fn main() {\n    println!(\"linked {}\", openssl::version::version());\n}\n"),
        ],
    )
}

/// `rustle-cross build` with no macOS SDK in the environment.
fn build(template: &Path, targets: &[&str], extra: &[&str]) -> std::process::Output {
    let out_dir = tempfile::tempdir().expect("tmp");
    let mut args = vec!["build", template.to_str().expect("utf-8")];
    for target in targets {
        args.extend(["-t", target]);
    }
    args.extend(["--json", "--out", out_dir.path().to_str().expect("utf-8")]);
    args.extend(extra);
    rustle_cross_env(&args, &[("SDKROOT", "")])
}

fn needed_libraries(result: &serde_json::Value) -> Vec<String> {
    result["validation"]["needed_libraries"]
        .as_array()
        .expect("needed libraries")
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn require_setup_archives() {
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf"] {
        let missing: Vec<_> =
            ["libssl.a", "libcrypto.a"].into_iter().filter(|a| !Path::new(dir).join(a).is_file()).collect();
        assert!(
            missing.is_empty(),
            "{dir} lacks {missing:?}: run scripts/setup.sh (as root), which installs libssl-dev for the host and each \
             multiarch architecture"
        );
    }
}

/// The runner for five targets with `--self-contained`: each is validated,
/// needs no libssl/libcrypto (static by default; musl's OpenSSL built here
/// from source), says what it linked how, and runs under its runner. The
/// Apple target is refused before compiling: no SDK here.
#[test]
fn a_runner_shaped_template_builds_self_contained_for_five_targets_and_apple_is_refused_early() {
    if !require_cross_tools(&[
        "aarch64-linux-gnu-gcc",
        "arm-linux-gnueabihf-gcc",
        "x86_64-w64-mingw32-gcc",
        "zig",
        "qemu-aarch64",
        "qemu-arm",
    ]) {
        return;
    }
    require_setup_archives();
    let template = bundled_template("runner-template");
    let mut targets = RUNNER_TARGETS.to_vec();
    targets.push("aarch64-apple-darwin");
    let out = build(&template, &targets, &["--smoke-test", "--self-contained"]);
    let report = json(&out);
    for target in RUNNER_TARGETS {
        let result = result_for(&report, target);
        assert_eq!(result["status"], "ok", "{result:#}");
        let needed = needed_libraries(result);
        assert!(
            !needed.iter().any(|l| l.starts_with("libssl") || l.starts_with("libcrypto")),
            "OpenSSL linked dynamically: {result:#}"
        );
        assert_eq!(result["validation"]["outside_base_system"], serde_json::json!([]), "{result:#}");
        let output = result["smoke_test"]["output"].as_str().unwrap_or_default();
        assert!(output.starts_with("runner ok {\"tasks\":3} with a TLS client"), "runs: {result:#}");
        let linked = result["metadata"]["c_libraries"].to_string();
        if target.contains("linux") {
            assert!(linked.contains("OpenSSL") && linked.contains("statically"), "says how: {result:#}");
        } else {
            assert_eq!(result["metadata"]["c_libraries"], serde_json::json!([]), "schannel links no C library");
        }
        if target.ends_with("-musl") {
            assert!(linked.contains("openssl-src 300.6.1, built here"), "{result:#}");
        }
    }
    let apple = result_for(&report, "aarch64-apple-darwin");
    assert_eq!(apple["status"], "unavailable", "{apple:#}");
    let error = apple["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused before compiling"), "{apple:#}");
    assert!(error.contains("security-framework-sys needs Security.framework for aarch64-apple-darwin"), "{apple:#}");
    assert!(error.contains("set SDKROOT to a macOS SDK, or build on a macOS agent"), "{apple:#}");
    assert!(!out.status.success(), "a refused target fails the run");
}

/// musl has no Debian OpenSSL: the first build that needs it builds it
/// from openssl-src into the cache, and a build of another template reuses
/// that prefix without building it again.
#[test]
fn openssl_built_from_source_for_a_target_is_built_once_and_reused_by_other_templates() {
    if !require_cross_tools(&["zig", "cargo-zigbuild"]) {
        return;
    }
    let stamp = cache_dir().join("c-libraries/x86_64-unknown-linux-musl/openssl-src-300.6.1/built");
    let first = build(&openssl_template("openssl-musl-one"), &["x86_64-unknown-linux-musl"], &["--smoke-test"]);
    let report = json(&first);
    let result = result_for(&report, "x86_64-unknown-linux-musl");
    assert_eq!(result["status"], "ok", "{result:#}");
    assert!(result["smoke_test"]["output"].as_str().unwrap_or_default().starts_with("linked OpenSSL 3"), "{result:#}");
    let built_at = std::fs::metadata(&stamp).and_then(|m| m.modified()).expect("the prefix is stamped");

    let second = build(&openssl_template("openssl-musl-two"), &["x86_64-unknown-linux-musl"], &["--no-cache"]);
    let report = json(&second);
    let result = result_for(&report, "x86_64-unknown-linux-musl");
    assert_eq!(result["status"], "ok", "{result:#}");
    assert!(!stderr(&second).contains("building OpenSSL for"), "built again: {}", stderr(&second));
    let again: SystemTime = std::fs::metadata(&stamp).and_then(|m| m.modified()).expect("still stamped");
    assert_eq!(again, built_at, "the prefix was rebuilt");
    assert!(result["metadata"]["c_libraries"].to_string().contains("openssl-src 300.6.1, built here"), "{result:#}");
}

/// `--c-libraries dynamic` links the host's shared OpenSSL (libcrypto, all
/// `openssl::version` needs): the summary names it as outside the base
/// system, and `--self-contained` fails the target for it.
#[test]
fn a_dynamically_linked_library_is_named_and_fails_with_self_contained() {
    let template = openssl_template("openssl-dynamic");
    let host = "x86_64-unknown-linux-gnu";
    let out = build(&template, &[host], &["--c-libraries", "dynamic"]);
    let report = json(&out);
    let result = result_for(&report, host);
    assert_eq!(result["status"], "ok", "{result:#}");
    let outside = result["validation"]["outside_base_system"].to_string();
    assert!(outside.contains("libcrypto.so"), "{result:#}");
    assert!(result["metadata"]["c_libraries"].to_string().contains("linked dynamically"), "says how: {result:#}");
    // The summary says it too, also when the binary cache answers.
    let out_dir = tempfile::tempdir().expect("tmp");
    let out_path = out_dir.path().to_str().expect("utf-8");
    let summary = rustle_cross_env(
        &["build", template.to_str().expect("utf-8"), "-t", host, "--c-libraries", "dynamic", "--out", out_path],
        &[],
    );
    let log = stderr(&summary);
    assert!(log.contains("note: x86_64-unknown-linux-gnu: OpenSSL (openssl-sys) linked dynamically from"), "{log}");
    assert!(String::from_utf8_lossy(&summary.stdout).contains("libcrypto.so.3 (not in the base system)"));

    let strict = build(&template, &[host], &["--c-libraries", "dynamic", "--self-contained"]);
    let report = json(&strict);
    let result = result_for(&report, host);
    assert_ne!(result["status"], "ok", "{result:#}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("libcrypto.so"), "names the library: {result:#}");
    assert!(!strict.status.success());
}

/// pq-sys links libpq, which nothing here supplies for aarch64 and which
/// rustle-cross does not build: that target is refused before compiling
/// with the crate, the library, the target and the package to install;
/// the host target, whose graph has no pq-sys, still builds.
#[test]
fn a_c_library_that_cannot_be_had_is_refused_early_by_name_and_the_other_targets_build() {
    if !require_cross_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    assert!(
        !Path::new("/usr/lib/aarch64-linux-gnu/libpq.a").exists(),
        "this machine has libpq-dev:arm64, so the refusal cannot be shown: remove it (apt-get remove libpq-dev:arm64)"
    );
    let template = scratch_template(
        "libpq-on-arm",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"libpq-on-arm\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [target.'cfg(target_arch = \"aarch64\")'.dependencies]\npq-sys = \"0.6\"\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n"),
        ],
    );
    let out = build(&template, &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"], &[]);
    let report = json(&out);
    assert_eq!(result_for(&report, "x86_64-unknown-linux-gnu")["status"], "ok", "{report:#}");
    let arm = result_for(&report, "aarch64-unknown-linux-gnu");
    assert_eq!(arm["status"], "unavailable", "{arm:#}");
    let error = arm["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused before compiling"), "{arm:#}");
    assert!(error.contains("pq-sys needs libpq for aarch64-unknown-linux-gnu"), "{arm:#}");
    assert!(error.contains("apt-get install libpq-dev:arm64"), "{arm:#}");
}

//! A build request carries the user's intent whole through the CLI: the
//! template's own release profile is kept unless overridden, a panicking
//! build script is one compile failure, and a target and its glibc-floor
//! variant are two builds with two files.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json, require_cross_tools, rustle_cross, scratch_template, stderr};

const X86: &str = "x86_64-unknown-linux-gnu";

/// A program that prints its name, and panics when given an argument.
const PANICS_ON_ARGUMENT: &str = "fn main() {\n    if std::env::args().count() > 1 {\n        panic!(\"asked to panic\");\n    }\n    println!(\"ran\");\n}\n";

fn manifest(name: &str, profile: &str) -> String {
    format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{profile}")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Builds `template` for `targets` with `extra` flags; returns the JSON report.
fn build(template: &Path, targets: &[&str], extra: &[&str], out: &Path) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["build", s(template), "--json", "--out", s(out)];
    for target in targets {
        args.extend(["-t", target]);
    }
    args.extend(extra);
    let output = rustle_cross(&args);
    let report = json(&output);
    (output, report)
}

fn built_file(result: &serde_json::Value) -> PathBuf {
    assert_eq!(result["status"], "ok", "{result:#}");
    PathBuf::from(result["file"].as_str().expect("file"))
}

/// Whether an ELF file still has a symbol table (`.symtab` in its section names).
fn has_symbol_table(binary: &Path) -> bool {
    let bytes = std::fs::read(binary).expect("read binary");
    bytes.windows(8).any(|w| w == b".symtab\0")
}

/// Runs `binary panic` and returns how it ended.
fn panic_exit(binary: &Path) -> std::process::ExitStatus {
    Command::new(binary).arg("panic").output().expect("run the binary").status
}

#[test]
fn the_templates_release_profile_is_kept_unless_the_caller_overrides_it() {
    let profiled = scratch_template(
        "profiled",
        &[
            (
                "Cargo.toml",
                &manifest(
                    "profiled",
                    "\n[profile.release]\nlto = true\nstrip = true\npanic = \"abort\"\ncodegen-units = 1\n",
                ),
            ),
            ("src/main.rs", PANICS_ON_ARGUMENT),
        ],
    );
    // The cargo command overrides none of it.
    let command = rustle_cross(&["build", s(&profiled), "-t", X86, "--print-command"]);
    assert!(command.status.success(), "{}", stderr(&command));
    let command = String::from_utf8_lossy(&command.stdout).into_owned();
    for key in ["OPT_LEVEL", "LTO", "STRIP", "PANIC", "CODEGEN_UNITS", "DEBUG_ASSERTIONS"] {
        assert!(!command.contains(&format!("CARGO_PROFILE_RELEASE_{key}=")), "{key} is overridden:\n{command}");
    }
    // And the binary shows it: no symbol table, and a panic aborts.
    let out = tempfile::tempdir().expect("tmp");
    let (_, report) = build(&profiled, &[X86], &[], out.path());
    let binary = built_file(&report["results"][0]);
    assert!(!has_symbol_table(&binary), "strip = true was not kept");
    assert_eq!(panic_exit(&binary).signal(), Some(libc_sigabrt()), "panic = \"abort\" was not kept");

    // A template without a profile gets cargo's defaults, and explicit
    // overrides still apply.
    let plain = scratch_template(
        "unprofiled",
        &[("Cargo.toml", &manifest("unprofiled", "")), ("src/main.rs", PANICS_ON_ARGUMENT)],
    );
    let out = tempfile::tempdir().expect("tmp");
    let (_, report) = build(&plain, &[X86], &[], out.path());
    let binary = built_file(&report["results"][0]);
    assert!(has_symbol_table(&binary), "nothing asked for stripping");
    assert_eq!(panic_exit(&binary).code(), Some(101), "cargo's default panic unwinds");

    let command =
        rustle_cross(&["build", s(&plain), "-t", X86, "--strip", "--panic-abort", "--lto", "--print-command"]);
    let command = String::from_utf8_lossy(&command.stdout).into_owned();
    for set in
        ["CARGO_PROFILE_RELEASE_STRIP=symbols", "CARGO_PROFILE_RELEASE_PANIC=abort", "CARGO_PROFILE_RELEASE_LTO=fat"]
    {
        assert!(command.contains(set), "{set} missing:\n{command}");
    }
    let out = tempfile::tempdir().expect("tmp");
    let (_, report) = build(&plain, &[X86], &["--strip", "--panic-abort"], out.path());
    let binary = built_file(&report["results"][0]);
    assert!(!has_symbol_table(&binary), "--strip was not applied");
    assert_eq!(panic_exit(&binary).signal(), Some(libc_sigabrt()), "--panic-abort was not applied");
}

/// SIGABRT on Linux.
fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn a_panicking_build_script_is_one_compile_failure() {
    let template = scratch_template(
        "build-script-panics",
        &[
            ("Cargo.toml", &manifest("build-script-panics", "")),
            ("build.rs", "fn main() {\n    panic!(\"the build script refuses\");\n}\n"),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    let out = tempfile::tempdir().expect("tmp");
    let (output, report) = build(&template, &[X86], &[], out.path());
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["status"], "compile-failed", "{result:#}");
    assert_eq!(result["decisions"].as_array().map_or(0, Vec::len), 0, "built once, here: {result:#}");
    let everything = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr(&output));
    assert_eq!(everything.matches("the build script refuses").count(), 1, "the panic once:\n{everything}");
}

#[test]
fn a_target_and_its_glibc_floor_are_two_builds_in_two_files() {
    if !require_cross_tools(&["zig", "cargo-zigbuild"]) {
        return;
    }
    let template = scratch_template(
        "two-floors",
        &[("Cargo.toml", &manifest("two-floors", "")), ("src/main.rs", "fn main() { println!(\"two-floors\"); }\n")],
    );
    let out = tempfile::tempdir().expect("tmp");
    let floor = format!("{X86}.2.17");
    let (output, report) = build(&template, &[X86, &floor], &[], out.path());
    assert!(output.status.success(), "{report:#}");
    check_two_floors(&report, out.path(), &floor);
}

/// Two results, two files named by the full target, each `.sha256` its
/// own, each binary meeting its own floor.
pub fn check_two_floors(report: &serde_json::Value, out: &Path, floor: &str) {
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{report:#}");
    let plain = built_file(&results[0]);
    let floored = built_file(&results[1]);
    assert_eq!(plain, out.join(format!("two-floors-{X86}")));
    assert_eq!(floored, out.join(format!("two-floors-{floor}")));
    for file in [&plain, &floored] {
        let sha = std::fs::read_to_string(format!("{}.sha256", file.display())).expect("sha256 file");
        let digest = sha256_hex(&std::fs::read(file).expect("binary"));
        assert!(sha.starts_with(&digest), "{}: .sha256 says {sha}, the file is {digest}", file.display());
    }
    let newest = |result: &serde_json::Value| {
        let glibc = &result["validation"]["max_glibc"];
        (glibc["major"].as_u64().expect("major"), glibc["minor"].as_u64().expect("minor"))
    };
    assert!(newest(&results[1]) <= (2, 17), "{:#}", results[1]);
    assert!(newest(&results[0]) > (2, 17), "the plain build uses this machine's glibc: {:#}", results[0]);
    assert_ne!(results[0]["sha256"], results[1]["sha256"], "two different binaries");
    let ran = Command::new(&floored).output().expect("run");
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "two-floors");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// On Apple targets without rust-objcopy (Debian's rustc-web ships none),
/// cargo's implicit `strip = "debuginfo"` cannot run: a template that asks
/// for no stripping is built with `strip = "none"` there, and only there.
#[test]
fn apple_targets_without_rust_objcopy_keep_debug_info_when_nobody_asked_to_strip() {
    if !require_cross_tools(&["zig", "cargo-zigbuild"]) {
        return;
    }
    let plain = scratch_template(
        "unprofiled",
        &[("Cargo.toml", &manifest("unprofiled", "")), ("src/main.rs", PANICS_ON_ARGUMENT)],
    );
    let command = |target: &str| {
        let out = rustle_cross(&["build", s(&plain), "-t", target, "--print-command"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let apple = command("aarch64-apple-darwin");
    assert!(apple.contains("CARGO_PROFILE_RELEASE_STRIP=none"), "{apple}");
    let linux = command(X86);
    assert!(!linux.contains("CARGO_PROFILE_RELEASE_STRIP="), "{linux}");
}

//! The real CLI's `targets` and `doctor`, and its failure cases: bad input
//! gets a clear error naming the thing and the way out, and one target's
//! failure loses nothing of the others.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{json, require_cross_tools, rustle_cross, rustle_cross_env, scratch_template, stderr};

const SMALL_MANIFEST: &str = "[package]\nname = \"small\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n";

#[test]
fn targets_lists_routes_and_reasons() {
    let out = rustle_cross(&["targets", "--json"]);
    assert!(out.status.success());
    let reports = json(&out);
    let find = |triple: &str| {
        reports.as_array().expect("array").iter().find(|r| r["target"]["triple"] == triple).cloned().expect(triple)
    };
    let host = find("x86_64-unknown-linux-gnu");
    assert_eq!(host["availability"]["status"], "available", "{host:#}");
    assert_eq!(host["availability"]["std"], "prebuilt", "{host:#}");
    let msvc = find("x86_64-pc-windows-msvc");
    assert_eq!(msvc["availability"]["status"], "not-supported", "{msvc:#}");
    assert!(msvc["availability"]["reason"].as_str().is_some_and(|r| r.contains("Windows agent")), "{msvc:#}");

    let table = rustle_cross(&["targets"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("TARGET") && text.contains("x86_64-unknown-linux-gnu"), "{text}");
    assert!(text.contains("targets can be built here"), "{text}");
}

#[test]
fn doctor_reports_toolchains_cache_and_disk() {
    let out = rustle_cross(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("toolchain stable-"), "{text}");
    assert!(text.contains("cache dir"), "{text}");
    assert!(text.contains("GiB free"), "{text}");
    assert!(text.contains("docker"), "{text}");
}

#[test]
fn unknown_triple_is_named_with_suggestions() {
    let out = rustle_cross(&["build", ".", "--target", "aarch64-unknown-linux-gnux"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown target triple `aarch64-unknown-linux-gnux`"), "{err}");
    assert!(err.contains("did you mean `aarch64-unknown-linux-gnu`"), "{err}");
}

#[test]
fn no_toolchain_at_all_says_what_to_install() {
    let empty = tempfile::tempdir().expect("tmp");
    let out = rustle_cross_env(
        &["targets"],
        &[("PATH", empty.path().to_str().expect("utf-8")), ("RUSTUP_HOME", empty.path().to_str().expect("utf-8"))],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no Rust toolchain found"), "{err}");
    assert!(err.contains("rustc-web"), "must say what to install: {err}");
}

#[test]
fn target_without_std_or_linker_says_what_to_install() {
    // Only rustup's toolchain (host std only) and no cross gcc on PATH.
    let cargo_bin = std::env::home_dir().expect("home").join(".cargo/bin");
    let bin_only = tempfile::tempdir().expect("tmp");
    let out = rustle_cross_env(
        &["build", ".", "--target", "aarch64-unknown-linux-gnu", "--out", bin_only.path().to_str().expect("utf-8")],
        &[("PATH", cargo_bin.to_str().expect("utf-8"))],
    );
    assert_eq!(out.status.code(), Some(1), "an unbuildable target is a failed target");
    let err = stderr(&out);
    assert!(err.contains("rustup target add aarch64-unknown-linux-gnu"), "{err}");
    assert!(err.contains("libstd-rust-web-dev:arm64"), "{err}");
    assert!(err.contains("gcc-aarch64-linux-gnu"), "{err}");
}

#[test]
fn compile_error_for_one_target_keeps_the_others() {
    if !require_cross_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    let template = scratch_template(
        "arch-specific-error",
        &[
            ("Cargo.toml", SMALL_MANIFEST),
            (
                "src/main.rs",
                "#[cfg(target_arch = \"aarch64\")]\nfn main() { let x: u32 = \"not a number\"; }\n\
                 #[cfg(not(target_arch = \"aarch64\"))]\nfn main() { println!(\"fine\"); }\n",
            ),
        ],
    );
    let out_dir = tempfile::tempdir().expect("tmp");
    let out = rustle_cross(&[
        "build",
        template.to_str().expect("utf-8"),
        "--json",
        "--out",
        out_dir.path().to_str().expect("utf-8"),
        "--target",
        "x86_64-unknown-linux-gnu",
        "--target",
        "aarch64-unknown-linux-gnu",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    let results = report["results"].as_array().expect("results");
    assert_eq!(results[0]["status"], "ok", "{report:#}");
    assert!(Path::new(results[0]["file"].as_str().expect("file")).is_file());
    assert_eq!(results[1]["status"], "compile-failed", "{report:#}");
    let error = results[1]["error"].as_str().expect("error");
    assert!(error.contains("E0308") && error.contains("mismatched types"), "{error}");
    assert!(!out_dir.path().join("small-aarch64-unknown-linux-gnu").exists());
}

#[test]
fn build_past_its_timeout_is_killed_with_everything_it_started() {
    let pid_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("slow-build.pid");
    let _ = std::fs::remove_file(&pid_file);
    let build_rs = format!(
        "fn main() {{\n    let child = std::process::Command::new(\"sleep\").arg(\"300\").spawn().unwrap();\n    \
         std::fs::write({:?}, child.id().to_string()).unwrap();\n    \
         std::thread::sleep(std::time::Duration::from_secs(300));\n}}\n",
        pid_file.display().to_string()
    );
    let template = scratch_template(
        "slow-build",
        &[("Cargo.toml", SMALL_MANIFEST), ("build.rs", &build_rs), ("src/main.rs", "fn main() {}\n")],
    );
    // Touch build.rs so cargo runs it again even when a previous run's
    // output is in the cache.
    std::fs::write(template.join("build.rs"), &build_rs).expect("touch");
    let out_dir = tempfile::tempdir().expect("tmp");
    let start = Instant::now();
    let out = rustle_cross(&[
        "build",
        template.to_str().expect("utf-8"),
        "--timeout",
        "8",
        "--out",
        out_dir.path().to_str().expect("utf-8"),
        "--target",
        "x86_64-unknown-linux-gnu",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("did not finish within 8s"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(120), "the deadline was not enforced");
    // The build script's child (a grandchild of cargo) must be gone too.
    let pid = std::fs::read_to_string(&pid_file).expect("build script ran and wrote its child's pid");
    let pid: u32 = pid.trim().parse().expect("a pid");
    rustle_test_support::wait_until_gone(pid, Duration::from_secs(10));
}

#[test]
fn corrupted_cargo_toml_is_named_and_nothing_is_built() {
    let template = scratch_template(
        "corrupted-manifest",
        &[("Cargo.toml", "[package]\nname = \"broken\"\nversion = 0.1.0\"\n"), ("src/main.rs", "fn main() {}\n")],
    );
    let out_dir = tempfile::tempdir().expect("tmp");
    let out =
        rustle_cross(&["build", template.to_str().expect("utf-8"), "--out", out_dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Cargo.toml is malformed"), "{err}");
    assert!(err.contains("line 3"), "the error must point at the line: {err}");
    assert_eq!(std::fs::read_dir(out_dir.path()).expect("out").count(), 0);
}

/// Keys cargo only warns about (a `[target.'<triple>'] rustflags` table in
/// a package manifest, metadata tables) are the template author's
/// business: the template builds as cargo builds it, and runs.
#[test]
fn manifest_keys_cargo_only_warns_about_build_as_cargo_builds_them() {
    let template = scratch_template(
        "manifest-keys-cargo-ignores",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"keys-cargo-ignores\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [package.metadata.rustle]\nplan = \"web\"\n\n[dependencies]\n\n\
                 [target.'x86_64-unknown-linux-gnu']\nrustflags = [\"-C\", \"target-cpu=x86-64\"]\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"built as cargo builds it\");\n}\n"),
        ],
    );
    let out_dir = tempfile::tempdir().expect("tmp");
    let args = [
        "build",
        template.to_str().expect("utf-8"),
        "-t",
        "x86_64-unknown-linux-gnu",
        "--smoke-test",
        "--json",
        "--out",
        out_dir.path().to_str().expect("utf-8"),
    ];
    let out = rustle_cross(&args);
    let report = json(&out);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["results"][0]["status"], "ok", "{report:#}");
    assert_eq!(report["results"][0]["smoke_test"]["output"], "built as cargo builds it", "{report:#}");
}

/// `targets --template` says per target, before compiling, what the
/// template's `-sys` crates need (as cargo resolves the graph for that
/// target) and whether this machine has it: OpenSSL has no Debian package
/// for musl, so it is built here from source; libpq has none either and
/// says the way out; libz-sys's bundled copy needs only the C compiler;
/// Apple frameworks need an SDK.
#[test]
fn targets_with_a_template_name_each_c_dependency_and_whether_it_is_here() {
    let template = scratch_template(
        "c-dependencies",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"c-dependencies\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\nlibz-sys = \"1\"\nopenssl-sys = \"0.9\"\npq-sys = \"0.6\"\n\n\
                 [target.'cfg(target_os = \"macos\")'.dependencies]\ncore-foundation-sys = \"0.8\"\n",
            ),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    let args = [
        "targets",
        "--template",
        template.to_str().expect("utf-8"),
        "-t",
        "x86_64-unknown-linux-musl",
        "-t",
        "aarch64-apple-darwin",
        "-t",
        "x86_64-unknown-linux-gnu",
        "--json",
    ];
    let out = rustle_cross_env(&args, &[("SDKROOT", "/nonexistent/MacOSX.sdk")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports = json(&out);
    let needs = |triple: &str| {
        let report = reports.as_array().expect("reports").iter().find(|r| r["target"]["triple"] == triple).cloned();
        report.unwrap_or_else(|| panic!("{triple} missing: {reports:#}"))["template"]["c_dependencies"].clone()
    };
    let dep = |triple: &str, krate: &str| {
        needs(triple).as_array().expect("c_dependencies").iter().find(|d| d["crate_name"] == krate).cloned()
    };

    let musl_ssl = dep("x86_64-unknown-linux-musl", "openssl-sys").expect("openssl-sys for musl");
    assert_eq!(musl_ssl["needs"], "OpenSSL");
    assert_eq!(musl_ssl["supply"]["state"], "buildable", "{musl_ssl:#}");
    let how = musl_ssl["supply"]["how"].as_str().expect("how");
    assert!(how.contains("from openssl-src 300.6.1 with the target's C compiler"), "{how}");
    let musl_pq = dep("x86_64-unknown-linux-musl", "pq-sys").expect("pq-sys for musl");
    assert_eq!(musl_pq["supply"]["state"], "missing", "{musl_pq:#}");
    let way_out = musl_pq["supply"]["way_out"].as_str().expect("way out");
    assert!(way_out.contains("no Debian package supplies libpq for x86_64-unknown-linux-musl"), "{way_out}");
    let zlib = dep("x86_64-unknown-linux-musl", "libz-sys").expect("libz-sys");
    assert_eq!(zlib["supply"]["state"], "present", "its bundled copy: {zlib:#}");

    let mac = dep("aarch64-apple-darwin", "core-foundation-sys").expect("core-foundation-sys on macOS");
    assert_eq!(mac["supply"]["way_out"], "set SDKROOT to a macOS SDK, or build on a macOS agent", "{mac:#}");
    assert!(dep("x86_64-unknown-linux-gnu", "core-foundation-sys").is_none(), "macOS-only deps stay out elsewhere");

    let host_ssl = dep("x86_64-unknown-linux-gnu", "openssl-sys").expect("openssl-sys for the host");
    let archives = ["libssl.a", "libcrypto.a"].map(|a| Path::new("/usr/lib/x86_64-linux-gnu").join(a).is_file());
    let expected = if archives.iter().all(|&here| here) { "present" } else { "buildable" };
    assert_eq!(host_ssl["supply"]["state"], expected, "{host_ssl:#}");

    let table = rustle_cross(&args[..args.len() - 1]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("x86_64-unknown-linux-musl: openssl-sys needs OpenSSL: built here"), "{text}");
    assert!(text.contains("x86_64-unknown-linux-musl: pq-sys needs libpq: MISSING"), "{text}");

    let doctor = rustle_cross_env(&["doctor", "--template", template.to_str().expect("utf-8")], &[("SDKROOT", "")]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("template on x86_64-unknown-linux-musl"), "{text}");
    assert!(text.contains("pq-sys needs libpq: missing"), "{text}");
    assert!(text.contains("set SDKROOT to a macOS SDK, or build on a macOS agent"), "{text}");
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("rustle.toml");
    std::fs::write(&config, "[cross_compilation]\nmax_parallel_job = 4\n").expect("write");
    let out = rustle_cross(&["--config", config.to_str().expect("utf-8"), "targets"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("max_parallel_job"), "{}", stderr(&out));
}

/// Debian's rustc-web (the toolchain `scripts/setup.sh` provides for
/// build-std targets) ships no rust-objcopy, which rustc strips Mach-O
/// binaries with: the engine links unstripped and strips with Debian's
/// llvm-strip after, so `--strip` works on macOS too, and is part of the
/// command (so of the cache key).
#[test]
fn a_macos_binary_is_stripped_with_llvm_strip_when_the_toolchain_has_no_rust_objcopy() {
    if !require_cross_tools(&["zig", "cargo-zigbuild", "llvm-strip"]) {
        return;
    }
    let template = scratch_template(
        "strip-macos",
        &[("Cargo.toml", &SMALL_MANIFEST.replace("small", "strip-macos")), ("src/main.rs", "fn main() {}\n")],
    );
    let target = "aarch64-apple-darwin";
    let build = |extra: &[&str]| {
        let out_dir = tempfile::tempdir().expect("tmp");
        let mut args = vec!["build", template.to_str().expect("utf-8"), "--target", target, "--json", "--no-cache"];
        args.extend(["--out", out_dir.path().to_str().expect("utf-8")]);
        args.extend(extra);
        let out = rustle_cross(&args);
        let report = json(&out);
        let result = report["results"][0].clone();
        assert_eq!(result["status"], "ok", "{result:#}");
        assert_eq!(result["validation"]["format"], "MachO", "{result:#}");
        result["size"].as_u64().expect("size")
    };
    let unstripped = build(&[]);
    let stripped = build(&["--strip"]);
    assert!(stripped < unstripped, "--strip made it {stripped} bytes, unstripped {unstripped}");
    let command =
        rustle_cross(&["build", template.to_str().expect("utf-8"), "--target", target, "--strip", "--print-command"]);
    let command = String::from_utf8_lossy(&command.stdout);
    assert!(command.contains("RUSTLE_STRIP_AFTER_LINK=symbols"), "{command}");
}

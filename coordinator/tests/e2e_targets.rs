//! End to end through the real CLI: the bundled example template (tokio,
//! serde, C code) built for the required targets, every binary checked by
//! header and, where a runner exists here, executed (natively, under
//! qemu-user, under wine) to print what it was built for.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{cache_dir, example_template, json, require_cross_tools, rustle_cross};
use rustle_cross::build::run_binary;
use rustle_cross::targets::TargetSpecification;
use sha2::{Digest, Sha256};

/// What a correct binary for a target looks like.
struct Expect {
    triple: &'static str,
    format: &'static str,
    machine: &'static str,
    bits: u64,
    /// `std::env::consts::ARCH` as the binary prints it.
    arch: &'static str,
    os: &'static str,
    big_endian: bool,
    /// Whether it can run on this machine.
    runs: bool,
}

#[rustfmt::skip]
const REQUIRED: &[Expect] = &[
    Expect { triple: "x86_64-unknown-linux-gnu", format: "Elf", machine: "x86_64", bits: 64, arch: "x86_64", os: "linux", big_endian: false, runs: true },
    Expect { triple: "aarch64-unknown-linux-gnu", format: "Elf", machine: "aarch64", bits: 64, arch: "aarch64", os: "linux", big_endian: false, runs: true },
    Expect { triple: "armv7-unknown-linux-gnueabihf", format: "Elf", machine: "arm", bits: 32, arch: "arm", os: "linux", big_endian: false, runs: true },
    Expect { triple: "i686-unknown-linux-gnu", format: "Elf", machine: "i386", bits: 32, arch: "x86", os: "linux", big_endian: false, runs: true },
    Expect { triple: "x86_64-pc-windows-gnu", format: "Pe", machine: "x86_64", bits: 64, arch: "x86_64", os: "windows", big_endian: false, runs: true },
    Expect { triple: "x86_64-unknown-linux-musl", format: "Elf", machine: "x86_64", bits: 64, arch: "x86_64", os: "linux", big_endian: false, runs: true },
    Expect { triple: "aarch64-apple-darwin", format: "MachO", machine: "aarch64", bits: 64, arch: "aarch64", os: "macos", big_endian: false, runs: false },
];

#[rustfmt::skip]
const MORE: &[Expect] = &[
    Expect { triple: "s390x-unknown-linux-gnu", format: "Elf", machine: "s390x", bits: 64, arch: "s390x", os: "linux", big_endian: true, runs: true },
    Expect { triple: "aarch64-unknown-linux-gnu.2.17", format: "Elf", machine: "aarch64", bits: 64, arch: "aarch64", os: "linux", big_endian: false, runs: true },
];

fn build_and_check(expected: &[Expect], tools: &[&str]) {
    if !require_cross_tools(tools) {
        return;
    }
    let template = example_template();
    let out_dir = tempfile::tempdir().expect("out dir");
    let mut args =
        vec!["build", template.to_str().expect("utf-8"), "--json", "--out", out_dir.path().to_str().expect("utf-8")];
    for e in expected {
        args.extend(["--target", e.triple]);
    }
    let out = rustle_cross(&args);
    let report = json(&out);
    assert!(out.status.success(), "build failed: {report:#}");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), expected.len());

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for (e, r) in expected.iter().zip(results) {
        assert_eq!(r["target"], e.triple);
        assert_eq!(r["status"], "ok", "{r:#}");
        let v = &r["validation"];
        assert_eq!(v["format"], e.format, "{}: {v}", e.triple);
        assert_eq!(v["machine"], e.machine, "{}: {v}", e.triple);
        assert_eq!(v["bits"], e.bits, "{}: {v}", e.triple);
        if e.triple.ends_with(".2.17") {
            assert_eq!(v["max_glibc"]["major"], 2, "{v}");
            assert!(v["max_glibc"]["minor"].as_u64().is_some_and(|m| m <= 17), "needs a glibc newer than 2.17: {v}");
        }
        if e.triple.contains("musl") {
            assert!(v["max_glibc"].is_null(), "a musl binary needs no glibc: {v}");
        }

        // The file on disk is the binary the report describes.
        let file = PathBuf::from(r["file"].as_str().expect("file"));
        let exe = if e.os == "windows" { ".exe" } else { "" };
        assert_eq!(file.file_name().and_then(|n| n.to_str()), Some(format!("rustle-hello-{}{exe}", e.triple).as_str()));
        let data = std::fs::read(&file).expect("binary written");
        let sha = format!("{:x}", Sha256::digest(&data));
        assert_eq!(r["sha256"], sha.as_str());
        let sidecar = std::fs::read_to_string(format!("{}.sha256", file.display())).expect("sha256 file");
        assert!(sidecar.starts_with(&sha), "{sidecar}");
        assert!(!r["metadata"]["rustc_version"].as_str().unwrap_or_default().is_empty());
        assert!(
            r["metadata"]["dependencies"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d.as_str().is_some_and(|d| d.starts_with("tokio@")))),
            "{r:#}"
        );

        if !e.runs {
            continue;
        }
        let target = TargetSpecification::from_triple(e.triple).expect("triple");
        let run = runtime
            .block_on(run_binary(&target.target(), &file, &[], &cache_dir(), Duration::from_secs(180)))
            .unwrap_or_else(|err| panic!("{}: cannot run: {err}", e.triple));
        let stdout = run.stdout_text();
        assert!(run.status.success(), "{}: exit {} stdout {stdout} stderr {}", e.triple, run.status, run.stderr_text());
        let line =
            stdout.lines().find(|l| l.starts_with("rustle-hello ")).unwrap_or_else(|| panic!("{}: {stdout}", e.triple));
        let printed: serde_json::Value =
            serde_json::from_str(&line["rustle-hello ".len()..]).expect("binary prints JSON");
        assert_eq!(printed["arch"], e.arch, "{}: {printed}", e.triple);
        assert_eq!(printed["os"], e.os, "{}: {printed}", e.triple);
        assert_eq!(printed["pointer_width"], e.bits, "{}: {printed}", e.triple);
        assert_eq!(printed["big_endian"], e.big_endian, "{}: {printed}", e.triple);
        // The C function computed the same hash on every architecture, and
        // all four tokio tasks ran on the worker threads.
        assert_eq!(printed["fnv1a"], "5f8ece5c", "{}: {printed}", e.triple);
        assert_eq!(printed["workers"], 4, "{}: {printed}", e.triple);
    }
}

#[test]
fn example_builds_validates_and_runs_for_the_required_targets() {
    build_and_check(
        REQUIRED,
        &[
            "aarch64-linux-gnu-gcc",
            "arm-linux-gnueabihf-gcc",
            "i686-linux-gnu-gcc",
            "x86_64-w64-mingw32-gcc",
            "zig",
            "cargo-zigbuild",
            "qemu-aarch64",
            "qemu-arm",
        ],
    );
}

#[test]
fn big_endian_and_glibc_floor_targets() {
    build_and_check(MORE, &["s390x-linux-gnu-gcc", "qemu-s390x", "zig", "cargo-zigbuild", "qemu-aarch64"]);
    let out = rustle_cross(&["targets", "--json", "--target", "aarch64-unknown-linux-gnu.2.17"]);
    assert!(out.status.success());
    let report = json(&out);
    assert_eq!(report[0]["availability"]["linker"]["kind"], "zig", "{report:#}");
}

//! `validate_binary` on real binaries of each format, compiled at test time
//! with the cross compilers `scripts/setup.sh` installs: right target
//! accepted, wrong architecture / bitness / byte order / format rejected,
//! glibc floor enforced both ways, the shared libraries each format needs
//! listed and classified against the target's base system, and no panic on
//! truncated or corrupted input.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

mod common;

use common::{
    AARCH64, AARCH64_STATIC, ARMV7, Compiler, I686, MACOS_ARM, MACOS_X86, MINGW, PPC64LE, RISCV64, S390X, X86_64,
    ZIG_GLIBC_217, compile, compile_source, spec,
};
use rustle_engine::validate::{BinaryFormat, BinaryReport, ValidationError, require_base_system_only, validate_binary};
use rustle_targets::{Endianness, GlibcVersion};

const GLIBC_2_17: GlibcVersion = GlibcVersion { major: 2, minor: 17 };
const GLIBC_2_34: GlibcVersion = GlibcVersion { major: 2, minor: 34 };

/// Compiles `compiler`'s hello into `dir` and reads it; `None` when skipped.
async fn build(dir: &tempfile::TempDir, compiler: Compiler) -> Option<Vec<u8>> {
    let path = compile(dir.path(), compiler).await?;
    Some(std::fs::read(path).unwrap())
}

fn accepted(data: &[u8], triple: &str) -> BinaryReport {
    validate_binary(data, &spec(triple)).unwrap_or_else(|e| panic!("{triple} rejected its own binary: {e}"))
}

fn rejected(data: &[u8], triple: &str) -> ValidationError {
    match validate_binary(data, &spec(triple)) {
        Ok(report) => panic!("{triple} accepted a foreign binary: {report:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn elf_binaries_match_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let cases: &[(Compiler, &str, &str, u8, Endianness)] = &[
        (AARCH64, "aarch64-unknown-linux-gnu", "aarch64", 64, Endianness::Little),
        (ARMV7, "armv7-unknown-linux-gnueabihf", "arm", 32, Endianness::Little),
        (I686, "i686-unknown-linux-gnu", "i386", 32, Endianness::Little),
        (S390X, "s390x-unknown-linux-gnu", "s390x", 64, Endianness::Big),
        (RISCV64, "riscv64gc-unknown-linux-gnu", "riscv64", 64, Endianness::Little),
        (PPC64LE, "powerpc64le-unknown-linux-gnu", "ppc64le", 64, Endianness::Little),
        (X86_64, "x86_64-unknown-linux-gnu", "x86_64", 64, Endianness::Little),
    ];
    for &(compiler, triple, machine, bits, endianness) in cases {
        let Some(data) = build(&dir, compiler).await else { continue };
        let report = accepted(&data, triple);
        assert_eq!(report.format, BinaryFormat::Elf, "{triple}");
        assert_eq!(report.machine, machine, "{triple}");
        assert_eq!(report.bits, bits, "{triple}");
        assert_eq!(report.endianness, endianness, "{triple}");
        // Debian 12's glibc (2.36): __libc_start_main@GLIBC_2.34 at least.
        let max = report.max_glibc.unwrap_or_else(|| panic!("{triple}: no glibc version found"));
        assert!(max >= GLIBC_2_34, "{triple}: {max}");
        let symbol = report.needed_glibc_symbol.unwrap();
        assert!(symbol.ends_with(&format!("@GLIBC_{max}")), "{triple}: {symbol}");
        // The report serialises (for JSON output).
        let json = serde_json::to_value(accepted(&data, triple)).unwrap();
        assert_eq!(json["machine"], machine);
    }
}

#[tokio::test]
async fn static_binary_needs_no_glibc_version() {
    let dir = tempfile::tempdir().unwrap();
    let Some(data) = build(&dir, AARCH64_STATIC).await else { return };
    let report = accepted(&data, "aarch64-unknown-linux-gnu");
    assert_eq!(report.max_glibc, None);
    assert_eq!(report.needed_glibc_symbol, None);
    // Nothing dynamic, so any floor is met.
    accepted(&data, "aarch64-unknown-linux-gnu.2.17");
}

#[tokio::test]
async fn wrong_architecture_is_rejected_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let Some(aarch64) = build(&dir, AARCH64).await else { return };
    let err = rejected(&aarch64, "armv7-unknown-linux-gnueabihf");
    assert!(matches!(err, ValidationError::WrongArchitecture { .. }), "{err}");
    assert_eq!(err.to_string(), "binary for armv7-unknown-linux-gnueabihf is an ELF for aarch64, expected arm");
    let err = rejected(&aarch64, "x86_64-unknown-linux-gnu");
    assert_eq!(err.to_string(), "binary for x86_64-unknown-linux-gnu is an ELF for aarch64, expected x86_64");
    let err = rejected(&aarch64, "riscv64gc-unknown-linux-gnu");
    assert_eq!(err.to_string(), "binary for riscv64gc-unknown-linux-gnu is an ELF for aarch64, expected riscv64");

    let Some(i686) = build(&dir, I686).await else { return };
    let err = rejected(&i686, "x86_64-unknown-linux-gnu");
    assert_eq!(err.to_string(), "binary for x86_64-unknown-linux-gnu is an ELF for i386, expected x86_64");

    let Some(s390x) = build(&dir, S390X).await else { return };
    let err = rejected(&s390x, "powerpc64le-unknown-linux-gnu");
    assert_eq!(err.to_string(), "binary for powerpc64le-unknown-linux-gnu is an ELF for s390x, expected ppc64le");
}

#[tokio::test]
async fn wrong_bitness_and_byte_order_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let Some(aarch64) = build(&dir, AARCH64).await else { return };
    // An ILP32-style target (aarch64 with 32-bit pointers) must not accept
    // an LP64 binary.
    let mut ilp32 = spec("aarch64-unknown-linux-gnu");
    ilp32.triple = "aarch64-unknown-linux-gnu_ilp32".into();
    ilp32.pointer_width = 32;
    let err = validate_binary(&aarch64, &ilp32).unwrap_err();
    assert!(matches!(err, ValidationError::WrongBitness { expected: 32, found: 64, .. }), "{err}");
    assert_eq!(err.to_string(), "binary for aarch64-unknown-linux-gnu_ilp32 is 64-bit, expected 32-bit");

    let Some(s390x) = build(&dir, S390X).await else { return };
    let mut little = spec("s390x-unknown-linux-gnu");
    little.endianness = Endianness::Little;
    let err = validate_binary(&s390x, &little).unwrap_err();
    assert!(matches!(err, ValidationError::WrongEndianness { .. }), "{err}");
    assert_eq!(err.to_string(), "binary for s390x-unknown-linux-gnu is big-endian, expected little-endian");
}

#[tokio::test]
async fn pe_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pe) = build(&dir, MINGW).await else { return };
    let report = accepted(&pe, "x86_64-pc-windows-gnu");
    assert_eq!(report.format, BinaryFormat::Pe);
    assert_eq!(report.machine, "x86_64");
    assert_eq!(report.bits, 64);
    assert_eq!(report.max_glibc, None);
    accepted(&pe, "x86_64-pc-windows-msvc");

    let err = rejected(&pe, "x86_64-unknown-linux-gnu");
    assert!(matches!(err, ValidationError::WrongFormat { .. }), "{err}");
    assert_eq!(err.to_string(), "binary for x86_64-unknown-linux-gnu is a PE file, expected ELF");
    let err = rejected(&pe, "aarch64-pc-windows-msvc");
    assert_eq!(err.to_string(), "binary for aarch64-pc-windows-msvc is a PE for x86_64, expected aarch64");
    let err = rejected(&pe, "i686-pc-windows-msvc");
    assert!(err.to_string().contains("expected i386"), "{err}");

    // And an ELF is not a Windows binary.
    let Some(elf) = build(&dir, X86_64).await else { return };
    let err = rejected(&elf, "x86_64-pc-windows-gnu");
    assert_eq!(err.to_string(), "binary for x86_64-pc-windows-gnu is an ELF file, expected PE");
}

#[tokio::test]
async fn macho_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let Some(arm) = build(&dir, MACOS_ARM).await else { return };
    let report = accepted(&arm, "aarch64-apple-darwin");
    assert_eq!(report.format, BinaryFormat::MachO);
    assert_eq!((report.machine.as_str(), report.bits), ("aarch64", 64));
    let err = rejected(&arm, "x86_64-apple-darwin");
    assert_eq!(err.to_string(), "binary for x86_64-apple-darwin is a Mach-O for aarch64, expected x86_64");
    let err = rejected(&arm, "aarch64-unknown-linux-gnu");
    assert_eq!(err.to_string(), "binary for aarch64-unknown-linux-gnu is a Mach-O file, expected ELF");

    let Some(x86) = build(&dir, MACOS_X86).await else { return };
    let report = accepted(&x86, "x86_64-apple-darwin");
    assert_eq!(report.machine, "x86_64");
    let err = rejected(&x86, "aarch64-apple-darwin");
    assert!(err.to_string().contains("expected aarch64"), "{err}");
}

#[tokio::test]
async fn glibc_floor_is_enforced_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    // Debian's cross gcc links against glibc 2.36: needs 2.34.
    let Some(new) = build(&dir, AARCH64).await else { return };
    let err = rejected(&new, "aarch64-unknown-linux-gnu.2.17");
    let ValidationError::GlibcTooNew { floor, found, symbol, .. } = &err else { panic!("{err}") };
    assert_eq!(*floor, GLIBC_2_17);
    assert!(*found >= GLIBC_2_34, "{found}");
    assert!(symbol.contains("@GLIBC_2."), "{symbol}");
    let text = err.to_string();
    for needle in ["aarch64-unknown-linux-gnu", &found.to_string(), "2.17", "zig", "`aarch64-unknown-linux-gnu.2.17`"] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
    // Without a floor the same binary is fine.
    accepted(&new, "aarch64-unknown-linux-gnu");

    // zig's glibc 2.17 build passes the 2.17 floor.
    let Some(old) = build(&dir, ZIG_GLIBC_217).await else { return };
    let report = accepted(&old, "aarch64-unknown-linux-gnu.2.17");
    assert_eq!(report.max_glibc, Some(GLIBC_2_17));
    assert!(report.needed_glibc_symbol.unwrap().ends_with("@GLIBC_2.17"));
}

/// A shared library of one function, and a program that calls it.
const EXTRA_C: &str = "int extra_answer(void) { return 42; }\n";
const USES_EXTRA_C: &str = "int extra_answer(void);\nint main(void) { return extra_answer() == 42 ? 0 : 1; }\n";

/// Builds `libextra` with `library` (a `-shared` compiler) and a program
/// calling it with `program`; reads the program. `None` when skipped.
async fn build_with_extra(dir: &tempfile::TempDir, library: Compiler, program: Compiler) -> Option<Vec<u8>> {
    compile_source(dir.path(), library, "extra.c", EXTRA_C, &[]).await?;
    let search = format!("-L{}", dir.path().display());
    let path = compile_source(dir.path(), program, "uses-extra.c", USES_EXTRA_C, &[&search, "-lextra"]).await?;
    Some(std::fs::read(path).unwrap())
}

#[tokio::test]
async fn elf_needed_libraries_are_listed_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    for (compiler, triple) in [
        (X86_64, "x86_64-unknown-linux-gnu"),
        (AARCH64, "aarch64-unknown-linux-gnu"),
        (ARMV7, "armv7-unknown-linux-gnueabihf"),
        (S390X, "s390x-unknown-linux-gnu"),
    ] {
        let Some(data) = build(&dir, compiler).await else { continue };
        let report = accepted(&data, triple);
        assert!(report.needed_libraries.iter().any(|l| l == "libc.so.6"), "{triple}: {report:?}");
        assert_eq!(report.outside_base_system, Vec::<String>::new(), "{triple}: {report:?}");
        require_base_system_only(&report, &spec(triple)).unwrap();
    }
    let Some(data) = build(&dir, AARCH64_STATIC).await else { return };
    assert_eq!(accepted(&data, "aarch64-unknown-linux-gnu").needed_libraries, Vec::<String>::new());

    // Linked against zlib (zlib1g-dev, as scripts/setup.sh installs):
    // libz.so.1 is outside glibc's base system.
    let zlib = Compiler { name: "uses-zlib", command: &["gcc"], flags: &[] };
    let source = "#include <zlib.h>\n#include <stdio.h>\nint main(void) { puts(zlibVersion()); return 0; }\n";
    let Some(path) = compile_source(dir.path(), zlib, "uses-zlib.c", source, &["-lz"]).await else { return };
    let report = accepted(&std::fs::read(path).unwrap(), "x86_64-unknown-linux-gnu");
    assert!(report.needed_libraries.iter().any(|l| l == "libz.so.1"), "{report:?}");
    assert_eq!(report.outside_base_system, ["libz.so.1"]);
    let err = require_base_system_only(&report, &spec("x86_64-unknown-linux-gnu")).unwrap_err();
    assert!(err.to_string().contains("libz.so.1"), "{err}");

    let library = Compiler { name: "libextra.so", command: &["aarch64-linux-gnu-gcc"], flags: &["-shared", "-fPIC"] };
    let program = Compiler { name: "uses-extra-aarch64", command: &["aarch64-linux-gnu-gcc"], flags: &[] };
    let Some(data) = build_with_extra(&dir, library, program).await else { return };
    let report = accepted(&data, "aarch64-unknown-linux-gnu");
    assert_eq!(report.outside_base_system, ["libextra.so"], "{report:?}");
}

#[tokio::test]
async fn pe_imported_dlls_are_listed_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pe) = build(&dir, MINGW).await else { return };
    let report = accepted(&pe, "x86_64-pc-windows-gnu");
    assert!(report.needed_libraries.iter().any(|l| l.eq_ignore_ascii_case("kernel32.dll")), "{report:?}");
    assert_eq!(report.outside_base_system, Vec::<String>::new(), "{report:?}");

    let library = Compiler { name: "libextra.dll", command: &["x86_64-w64-mingw32-gcc"], flags: &["-shared"] };
    let program = Compiler { name: "uses-extra.exe", command: &["x86_64-w64-mingw32-gcc"], flags: &[] };
    let Some(data) = build_with_extra(&dir, library, program).await else { return };
    let report = accepted(&data, "x86_64-pc-windows-gnu");
    assert!(report.needed_libraries.iter().any(|l| l.eq_ignore_ascii_case("kernel32.dll")), "{report:?}");
    assert_eq!(report.outside_base_system, ["libextra.dll"], "{report:?}");
    let err = require_base_system_only(&report, &spec("x86_64-pc-windows-gnu")).unwrap_err();
    assert!(err.to_string().contains("libextra.dll"), "{err}");
}

#[tokio::test]
async fn macho_dylibs_are_listed_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    let Some(arm) = build(&dir, MACOS_ARM).await else { return };
    let report = accepted(&arm, "aarch64-apple-darwin");
    assert!(report.needed_libraries.iter().any(|l| l.starts_with("/usr/lib/libSystem")), "{report:?}");
    assert_eq!(report.outside_base_system, Vec::<String>::new(), "{report:?}");

    let zig = &["zig", "cc", "-target", "aarch64-macos"];
    let library = Compiler { name: "libextra.dylib", command: zig, flags: &["-shared"] };
    let program = Compiler { name: "uses-extra-macos", command: zig, flags: &[] };
    let Some(data) = build_with_extra(&dir, library, program).await else { return };
    let report = accepted(&data, "aarch64-apple-darwin");
    assert!(report.needed_libraries.iter().any(|l| l.starts_with("/usr/lib/libSystem")), "{report:?}");
    assert_eq!(report.outside_base_system.len(), 1, "{report:?}");
    assert!(report.outside_base_system[0].ends_with("libextra.dylib"), "{report:?}");
}

/// Truncations and byte corruptions of real binaries of each format give
/// reports or errors, never panics.
#[tokio::test]
async fn truncated_and_corrupted_binaries_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    for (compiler, triple) in [
        (AARCH64, "aarch64-unknown-linux-gnu"),
        (ARMV7, "armv7-unknown-linux-gnueabihf"),
        (S390X, "s390x-unknown-linux-gnu"),
        (MINGW, "x86_64-pc-windows-gnu"),
        (MACOS_ARM, "aarch64-apple-darwin"),
    ] {
        if let Some(data) = build(&dir, compiler).await {
            samples.push((data, spec(triple)));
        }
    }
    for (data, target) in &samples {
        // Every prefix up to 4 KiB (headers, program/section tables), then
        // coarser steps to the end.
        let lengths = (0..data.len().min(4096)).chain((4096..data.len()).step_by(97));
        for len in lengths {
            let result = validate_binary(&data[..len], target);
            if let Err(e) = result {
                assert!(e.to_string().contains(&target.triple), "{e}");
            }
        }
        // Deterministic corruption: flip bytes at pseudo-random offsets,
        // biased to the first KiB where the headers are.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut corrupt = data.clone();
            for _ in 0..1 + round % 4 {
                let span = if next() % 4 == 0 { corrupt.len() } else { corrupt.len().min(1024) };
                let at = (next() % span as u64) as usize;
                corrupt[at] ^= (next() % 255 + 1) as u8;
            }
            let _ = validate_binary(&corrupt, target);
        }
    }
}

//! Shared helpers for rustle-engine's integration tests: finding the cross
//! tools `scripts/setup.sh` installs, and compiling tiny C programs with them
//! into a temporary directory.
//!
//! A missing tool fails the test with a pointer to `scripts/setup.sh`, unless
//! `RUSTLE_SKIP_CROSS_TOOLS=1` is set: then the test prints that it skipped.

#![allow(dead_code, reason = "each test crate uses a subset of the helpers")]
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_process::ProcessSpec;
use rustle_targets::Target;

/// Set to `1` to skip (rather than fail) tests whose cross tools are missing.
pub const SKIP_ENV: &str = rustle_test_support::SKIP_CROSS_TOOLS;

/// The test program: prints its word size, byte order and arguments, exits 3
/// when asked, sleeps when asked, and (except on Windows) starts a thread,
/// which is what hangs under qemu with a mismatched loader and libc.
pub const HELLO_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#define sleep_s(n) Sleep((n) * 1000)
#else
#include <pthread.h>
#include <unistd.h>
#define sleep_s(n) sleep(n)
static void *worker(void *arg) { *(int *)arg = 42; return NULL; }
#endif

int main(int argc, char **argv) {
    unsigned int one = 1;
    int answer = 42;
#ifndef _WIN32
    pthread_t thread;
    answer = 0;
    if (pthread_create(&thread, NULL, worker, &answer) != 0 || pthread_join(thread, NULL) != 0) {
        fprintf(stderr, "thread failed\n");
        return 2;
    }
#endif
    if (argc > 1 && strcmp(argv[1], "exit3") == 0) return 3;
    if (argc > 1 && strcmp(argv[1], "sleep") == 0) sleep_s(30);
    printf("hello %d-bit %s-endian thread=%d args:", (int)(sizeof(void *) * 8),
           *(unsigned char *)&one ? "little" : "big", answer);
    for (int i = 1; i < argc; i++) printf(" [%s]", argv[i]);
    printf("\n");
    return 0;
}
"#;

/// The line [`HELLO_C`] prints for `bits`, `endian` and `args`.
pub fn hello_line(bits: u32, endian: &str, args: &[&str]) -> String {
    let args: String = args.iter().map(|a| format!(" [{a}]")).collect();
    format!("hello {bits}-bit {endian}-endian thread=42 args:{args}\n")
}

#[allow(unused_imports, reason = "each test crate uses a subset of the helpers")]
pub use rustle_test_support::{require_present as require, require_tool, skipping_missing_cross_tools as skipping};

/// A parsed target.
pub fn spec(triple: &str) -> Target {
    Target::from_triple(triple).unwrap_or_else(|e| panic!("{triple}: {e}"))
}

/// How to compile [`HELLO_C`] for one target.
#[derive(Debug, Clone, Copy)]
pub struct Compiler {
    /// Output file name (unique within a test's directory).
    pub name: &'static str,
    /// The compiler and its leading arguments (`["zig", "cc", "-target", ...]`).
    pub command: &'static [&'static str],
    /// Extra flags after the source file.
    pub flags: &'static [&'static str],
}

pub const AARCH64: Compiler = Compiler { name: "aarch64", command: &["aarch64-linux-gnu-gcc"], flags: &[] };
pub const AARCH64_STATIC: Compiler =
    Compiler { name: "aarch64-static", command: &["aarch64-linux-gnu-gcc"], flags: &["-static"] };
pub const ARMV7: Compiler = Compiler { name: "armv7", command: &["arm-linux-gnueabihf-gcc"], flags: &[] };
pub const I686: Compiler = Compiler { name: "i686", command: &["i686-linux-gnu-gcc"], flags: &[] };
pub const S390X: Compiler = Compiler { name: "s390x", command: &["s390x-linux-gnu-gcc"], flags: &[] };
pub const RISCV64: Compiler = Compiler { name: "riscv64", command: &["riscv64-linux-gnu-gcc"], flags: &[] };
pub const PPC64LE: Compiler = Compiler { name: "ppc64le", command: &["powerpc64le-linux-gnu-gcc"], flags: &[] };
pub const X86_64: Compiler = Compiler { name: "x86_64", command: &["gcc"], flags: &[] };
pub const MINGW: Compiler = Compiler { name: "hello.exe", command: &["x86_64-w64-mingw32-gcc"], flags: &[] };
pub const MACOS_ARM: Compiler =
    Compiler { name: "macos-aarch64", command: &["zig", "cc", "-target", "aarch64-macos"], flags: &[] };
pub const MACOS_X86: Compiler =
    Compiler { name: "macos-x86_64", command: &["zig", "cc", "-target", "x86_64-macos"], flags: &[] };
pub const ZIG_GLIBC_217: Compiler =
    Compiler { name: "aarch64-glibc-2.17", command: &["zig", "cc", "-target", "aarch64-linux-gnu.2.17"], flags: &[] };

/// Compiles [`HELLO_C`] with `compiler` into `dir`. `None` when the compiler
/// is missing and tests skip; panics (with the compiler's output) when it
/// fails.
pub async fn compile(dir: &Path, compiler: Compiler) -> Option<PathBuf> {
    compile_source(dir, compiler, "hello.c", HELLO_C, &[]).await
}

/// Compiles `source` (written to `dir/file_name`) with `compiler`, then
/// `extra` arguments (libraries) after its flags.
pub async fn compile_source(
    dir: &Path,
    compiler: Compiler,
    file_name: &str,
    source: &str,
    extra: &[&str],
) -> Option<PathBuf> {
    let (tool, leading) = compiler.command.split_first().unwrap();
    let program = require_tool(tool)?;
    let src = dir.join(file_name);
    std::fs::write(&src, source).unwrap();
    let out = dir.join(compiler.name);
    // -pthread is a no-op for zig-macOS but needed for older glibcs; for
    // MinGW (.exe, .dll) it would link winpthread's DLL.
    let mingw = compiler.name.ends_with(".exe") || compiler.name.ends_with(".dll");
    let pthread: &[&str] = if mingw { &[] } else { &["-pthread"] };
    let result = ProcessSpec::new(program)
        .args(leading.iter().copied())
        .args(["-O1", "-o"])
        .arg(out.as_os_str())
        .arg(src.as_os_str())
        .args(compiler.flags.iter().copied())
        .args(pthread.iter().copied())
        .args(extra.iter().copied())
        // zig builds its libc and compiler-rt caches on first use (minutes).
        .timeout(Duration::from_secs(600))
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", compiler.name));
    assert!(
        result.status.success(),
        "compiling {} with {:?} failed: {}",
        compiler.name,
        compiler.command,
        result.stderr_text()
    );
    Some(out)
}

/// The workspace's `target/` directory (the test binary is in
/// `target/debug/deps/`): persistent caches for tests live under it.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// A persistent cache directory for `run_binary` (so the Wine prefix is
/// created once across test runs, not once per test).
pub fn shared_cache_dir() -> PathBuf {
    let dir = target_dir().join("rustle-test-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

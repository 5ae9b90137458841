//! `run_binary` on real binaries compiled at test time: natively (x86_64,
//! i686), under qemu-user (aarch64, armv7, s390x, riscv64, ppc64le, a static
//! aarch64 one) and under Wine (MinGW PE files, one importing `ProcessPrng`
//! the way Rust's std does), checking what they print, their exit codes,
//! deadlines, and Wine's one-time set-up under concurrent first use.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    AARCH64, AARCH64_STATIC, ARMV7, Compiler, I686, MINGW, PPC64LE, RISCV64, S390X, X86_64, compile, compile_source,
    hello_line, require, shared_cache_dir, spec,
};
use rustle_engine::runner::{RunnerError, RunnerKind, plan_runner, run_binary};
use rustle_process::{ProcessError, ProcessOutput};

const TIMEOUT: Duration = Duration::from_secs(120);

async fn run(triple: &str, binary: &Path, args: &[&str], cache: &Path) -> ProcessOutput {
    run_binary(&spec(triple), binary, args, cache, TIMEOUT).await.unwrap_or_else(|e| panic!("{triple}: {e}"))
}

fn assert_hello(out: &ProcessOutput, triple: &str, bits: u32, endian: &str, args: &[&str]) {
    assert!(out.status.success(), "{triple}: {} stderr: {}", out.status, out.stderr_text());
    assert_eq!(out.stdout_text().replace("\r\n", "\n"), hello_line(bits, endian, args), "{triple}");
}

/// Every Linux route: prints, passes arguments (with spaces) and exit codes.
#[tokio::test]
async fn linux_binaries_run_natively_and_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let cases: &[(Compiler, &str, u32, &str)] = &[
        (X86_64, "x86_64-unknown-linux-gnu", 64, "little"),
        (I686, "i686-unknown-linux-gnu", 32, "little"),
        (AARCH64, "aarch64-unknown-linux-gnu", 64, "little"),
        (AARCH64_STATIC, "aarch64-unknown-linux-gnu", 64, "little"),
        (ARMV7, "armv7-unknown-linux-gnueabihf", 32, "little"),
        (S390X, "s390x-unknown-linux-gnu", 64, "big"),
        (RISCV64, "riscv64gc-unknown-linux-gnu", 64, "little"),
        (PPC64LE, "powerpc64le-unknown-linux-gnu", 64, "little"),
    ];
    for &(compiler, triple, bits, endian) in cases {
        let Some(binary) = compile(dir.path(), compiler).await else { continue };
        let plan = match plan_runner(&spec(triple)) {
            Ok(plan) => plan,
            Err(e @ RunnerError::MissingRunner { .. }) if common::skipping() => {
                eprintln!("SKIPPED {triple}: {e}");
                continue;
            }
            Err(e) => panic!("{triple}: {e} (run scripts/setup.sh)"),
        };
        eprintln!("{triple} ({}): {}", compiler.name, plan.description);
        let out = run(triple, &binary, &["one", "two words"], cache.path()).await;
        assert_hello(&out, triple, bits, endian, &["one", "two words"]);
        let out = run(triple, &binary, &["exit3"], cache.path()).await;
        assert_eq!(out.status.code(), Some(3), "{triple}: {}", out.stderr_text());
    }
}

/// The `-L` choice: `/` for aarch64 (its multiarch libc is installed here),
/// the cross sysroot for s390x (no multiarch libc).
#[test]
fn qemu_plans_pick_the_sysroot() {
    for (triple, multiarch_libc, cross_sysroot) in [
        ("aarch64-unknown-linux-gnu", "/usr/lib/aarch64-linux-gnu/libc.so.6", "/usr/aarch64-linux-gnu"),
        ("s390x-unknown-linux-gnu", "/usr/lib/s390x-linux-gnu/libc.so.6", "/usr/s390x-linux-gnu"),
    ] {
        let Ok(plan) = plan_runner(&spec(triple)) else {
            require(false, &format!("a qemu runner for {triple}"));
            continue;
        };
        let RunnerKind::Qemu { sysroot, .. } = &plan.kind else { panic!("{plan:?}") };
        let expected = if Path::new(multiarch_libc).exists() { Path::new("/") } else { Path::new(cross_sysroot) };
        assert_eq!(sysroot, expected, "{triple}");
        assert!(plan.description.ends_with(&format!("-L {}", expected.display())), "{}", plan.description);
    }
}

#[tokio::test]
async fn deadline_kills_a_hanging_binary() {
    let dir = tempfile::tempdir().unwrap();
    let Some(binary) = compile(dir.path(), X86_64).await else { return };
    let start = Instant::now();
    let err = run_binary(&spec("x86_64-unknown-linux-gnu"), &binary, &["sleep"], dir.path(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::Process { source: ProcessError::TimedOut { .. }, .. }), "{err}");
    assert!(err.to_string().contains("x86_64-unknown-linux-gnu"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn missing_binary_and_missing_runner_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = run_binary(&spec("x86_64-unknown-linux-gnu"), &missing, &[], dir.path(), TIMEOUT).await.unwrap_err();
    assert!(matches!(err, RunnerError::BinaryNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");

    let exists = dir.path().join("some-binary");
    std::fs::write(&exists, "").unwrap();
    let err = run_binary(&spec("aarch64-apple-darwin"), &exists, &[], dir.path(), TIMEOUT).await.unwrap_err();
    assert!(matches!(err, RunnerError::Unsupported { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "aarch64-apple-darwin binaries cannot run on this machine: macOS binaries cannot run on Linux; \
         the Mach-O header is checked instead"
    );
}

/// A C program that imports `ProcessPrng` from bcryptprimitives.dll, like
/// Rust's std since 1.78: it only loads under Wine 8 with the shim.
const PRNG_C: &str = r#"
#include <windows.h>
#include <stdio.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len);
int main(void) {
    unsigned char buf[64] = {0};
    int nonzero = 0;
    if (!ProcessPrng(buf, sizeof buf)) { printf("ProcessPrng failed\n"); return 1; }
    for (size_t i = 0; i < sizeof buf; i++) nonzero += buf[i] != 0;
    printf("prng ok %d\n", nonzero > 8);
    return 0;
}
"#;

/// Builds the ProcessPrng-importing exe, linking against an import library
/// made from the shim's own .def file (so the exe needs the DLL at run time
/// exactly as a Rust exe does).
async fn compile_prng_exe(dir: &Path) -> Option<std::path::PathBuf> {
    let dlltool = common::require_tool("x86_64-w64-mingw32-dlltool")?;
    let def = Path::new(env!("CARGO_MANIFEST_DIR")).join("shim/bcryptprimitives.def");
    let implib = dir.join("libbcryptprimitives.a");
    let out = rustle_process::ProcessSpec::new(dlltool)
        .args(["-d"])
        .arg(def.as_os_str())
        .arg("-l")
        .arg(implib.as_os_str())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "dlltool: {}", out.stderr_text());
    let compiler = Compiler { name: "prng.exe", ..MINGW };
    compile_source(dir, compiler, "prng.c", PRNG_C, &[implib.to_str().unwrap()]).await
}

fn wine_available() -> bool {
    match plan_runner(&spec("x86_64-pc-windows-gnu")) {
        Ok(_) => true,
        Err(e) => require(false, &format!("wine ({e})")),
    }
}

/// PE files under Wine with the shared (persistent) cache: hello with
/// arguments and exit codes, and the ProcessPrng import resolved by the shim.
#[tokio::test]
async fn windows_binaries_run_under_wine() {
    if !wine_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(hello) = compile(dir.path(), MINGW).await else { return };
    let Some(prng) = compile_prng_exe(dir.path()).await else { return };
    let cache = shared_cache_dir();
    let triple = "x86_64-pc-windows-gnu";
    let out = run(triple, &hello, &["one", "two words"], &cache).await;
    assert_hello(&out, triple, 64, "little", &["one", "two words"]);
    let start = Instant::now();
    let out = run(triple, &hello, &["exit3"], &cache).await;
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr_text());
    eprintln!("warm wine run: {:?}", start.elapsed());
    let out = run(triple, &prng, &[], &cache).await;
    assert!(out.status.success(), "{} stderr: {}", out.status, out.stderr_text());
    assert_eq!(out.stdout_text().trim(), "prng ok 1");
    // Wine's own chatter is off: a clean run leaves stderr empty.
    assert_eq!(out.stderr_text(), "");
}

/// A fresh cache directory used by two runs at once: one creates the shim
/// and the prefix while the other waits on the lock; both succeed, and
/// nothing is written next to the exe.
#[tokio::test]
async fn wine_first_use_is_safe_concurrently() {
    if !wine_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(hello) = compile(dir.path(), MINGW).await else { return };
    let Some(prng) = compile_prng_exe(dir.path()).await else { return };
    let listing = |d: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let before = listing(dir.path());
    let cache = tempfile::tempdir().unwrap();
    let triple = "x86_64-pc-windows-gnu";
    let start = Instant::now();
    let (a, b) = tokio::join!(run(triple, &hello, &["a"], cache.path()), run(triple, &prng, &[], cache.path()));
    eprintln!("first wine use (prefix + shim): {:?}", start.elapsed());
    assert_hello(&a, triple, 64, "little", &["a"]);
    assert_eq!(b.stdout_text().trim(), "prng ok 1", "stderr: {}", b.stderr_text());
    assert_eq!(listing(dir.path()), before, "run_binary wrote next to the exe");

    let wine_dir = cache.path().join("wine");
    assert!(wine_dir.join("prefix/.rustle-prefix-ready").is_file());
    assert!(wine_dir.join("prefix/drive_c/windows/system32/bcryptprimitives.dll").is_file());
    let shims: Vec<_> = listing(&wine_dir).into_iter().filter(|n| n.to_string_lossy().starts_with("shim-")).collect();
    assert_eq!(shims.len(), 1, "{shims:?}");

    // Stop this prefix's wineserver (started by these runs) before the
    // temporary directory goes away.
    if let Ok(RunnerKind::Wine { wineserver: Some(server), .. }) = plan_runner(&spec(triple)).map(|p| p.kind) {
        let _ = rustle_process::ProcessSpec::new(server)
            .arg("-k")
            .env("WINEPREFIX", wine_dir.join("prefix").as_os_str())
            .output()
            .await;
    }
}

//! Running a built binary on this machine for a smoke test: natively, under
//! qemu-user, or under Wine, as the rules table says
//! ([`rustle_targets::rule_for`]).
//!
//! [`plan_runner`] decides how (and says what to install when it cannot);
//! [`run_binary`] runs the binary with a deadline through
//! [`ProcessSpec`](rustle_process::ProcessSpec); [`runner_spec`] gives the
//! same command without one, for a program that keeps running.
//!
//! Wine needs set-up, done once per cache directory under `<cache>/wine/`:
//! - Rust's std (since 1.78) imports `ProcessPrng` from
//!   `bcryptprimitives.dll`, which Wine 8 lacks. The shim in `engine/shim/` is
//!   compiled with MinGW into `<cache>/wine/shim-<hash>/` (the hash covers the
//!   embedded source, so an edited shim is rebuilt) and copied into the
//!   prefix's `system32`.
//! - A persistent `WINEPREFIX` at `<cache>/wine/prefix` (~700 MB, ~5-10 s to
//!   create), created under a lock file so concurrent first uses wait for one
//!   another instead of racing.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_targets::{Architecture, RunnerRoute, Target, rule_for};
use serde::Serialize;
use sha2::{Digest, Sha256};

use rustle_process::{ProcessError, ProcessOutput, ProcessSpec};

use crate::file_lock::{LockError, lock_exclusive};

/// The C source of the `ProcessPrng` shim DLL.
const SHIM_SOURCE: &str = include_str!("../shim/bcryptprimitives.c");
/// Its export list.
const SHIM_DEF: &str = include_str!("../shim/bcryptprimitives.def");
/// The MinGW compiler that builds the shim.
const SHIM_COMPILER: &str = "x86_64-w64-mingw32-gcc";
/// Flags after the output name; part of the shim's cache key.
const SHIM_FLAGS: &[&str] = &["-shared", "-O2", "-s", "-Wall"];
/// The Debian package that provides [`SHIM_COMPILER`].
const SHIM_COMPILER_PACKAGE: &str = "gcc-mingw-w64-x86-64";
/// The DLL Rust's std imports `ProcessPrng` from.
const SHIM_DLL: &str = "bcryptprimitives.dll";

/// Marker written into the prefix once `wineboot --init` succeeded.
const PREFIX_READY: &str = ".rustle-prefix-ready";
/// Deadline for compiling the shim.
const SHIM_BUILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline for creating the prefix (on a busy 2-core machine it can take a
/// while), and for waiting on another process that is creating it.
const PREFIX_INIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for starting wineserver and Wine's services before a run.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long (seconds) the wineserver started by the warm-up outlives its last
/// client, so consecutive runs reuse it. It then exits on its own.
const WINESERVER_PERSISTENCE_SECS: &str = "15";
/// Disables the Mono and Gecko installers, which would otherwise be offered
/// (and fail, headless) while creating or updating the prefix.
const WINE_DLL_OVERRIDES: &str = "mscoree,mshtml=";

/// How a binary runs here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RunnerKind {
    /// Executed directly.
    Native,
    /// Under qemu-user.
    Qemu {
        /// The `qemu-<arch>` binary.
        qemu: PathBuf,
        /// The `-L` argument: where the target's loader and libraries are.
        sysroot: PathBuf,
    },
    /// Under Wine, in a prefix under the cache directory.
    Wine {
        /// The `wine64` (or `wine`) binary.
        wine: PathBuf,
        /// The `wineserver` next to it, when found (used to keep the server
        /// warm between runs).
        wineserver: Option<PathBuf>,
    },
}

/// How [`run_binary`] will run a target's binaries, decided by
/// [`plan_runner`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunnerPlan {
    /// The route and the programs it uses.
    pub kind: RunnerKind,
    /// One line for tables, e.g. `qemu-aarch64 -L /` or `native`.
    pub description: String,
}

/// Why a binary cannot be run, or running it failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// No runner exists for the target on this kind of machine.
    #[error("{target} binaries cannot run on this machine: {reason}")]
    Unsupported {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// The runner exists in principle but is not installed.
    #[error("cannot run {target} binaries: {missing} is missing; install the Debian package `{package}` ({hint})")]
    MissingRunner {
        /// The target.
        target: String,
        /// What is missing (a program or a file).
        missing: String,
        /// The Debian package that provides it.
        package: String,
        /// A further hint.
        hint: String,
    },
    /// The binary to run does not exist.
    #[error("cannot run {}: {source}", .path.display())]
    BinaryNotFound {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Preparing Wine (shim DLL, prefix) failed.
    #[error("setting up wine failed while {step}: {detail}")]
    WineSetup {
        /// What was being done.
        step: String,
        /// What went wrong (with the tool's output where there is one).
        detail: String,
    },
    /// The runner or binary could not be run to completion (did not start,
    /// or ran past its deadline).
    #[error("running {target} binary {}: {source}", .path.display())]
    Process {
        /// The target.
        target: String,
        /// The binary.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: ProcessError,
    },
}

const SETUP_HINT: &str = "scripts/setup.sh installs it";

/// Where [`plan_runner_in`] looks for runners: a `PATH` and a filesystem
/// root. [`HostProbe::system`] is this machine; tests point it elsewhere.
#[derive(Debug, Clone)]
pub struct HostProbe {
    /// The search path for programs (`None`: the process's `PATH`).
    pub path: Option<OsString>,
    /// The filesystem root under which loaders and libcs are looked for.
    pub root: PathBuf,
    /// The host's CPU architecture, as `std::env::consts::ARCH` names it.
    pub host_arch: String,
}

impl HostProbe {
    /// This machine: its `PATH`, `/`, its architecture.
    pub fn system() -> Self {
        Self { path: None, root: PathBuf::from("/"), host_arch: std::env::consts::ARCH.to_owned() }
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        let path = self.path.clone().or_else(|| std::env::var_os("PATH"))?;
        which::which_in_global(name, Some(path)).ok()?.next()
    }

    fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// Decides how `target`'s binaries run on this machine, from the rules
/// table's runner route and what is installed.
pub fn plan_runner(target: &Target) -> Result<RunnerPlan, RunnerError> {
    plan_runner_in(target, &HostProbe::system())
}

/// [`plan_runner`] against the programs and files `probe` describes.
pub fn plan_runner_in(target: &Target, probe: &HostProbe) -> Result<RunnerPlan, RunnerError> {
    let triple = target.triple.clone();
    let missing = |missing: String, package: &str, hint: &str| RunnerError::MissingRunner {
        target: triple.clone(),
        missing,
        package: package.to_owned(),
        hint: hint.to_owned(),
    };
    match rule_for(target).runner {
        RunnerRoute::None { reason } => Err(RunnerError::Unsupported { target: triple, reason: reason.to_owned() }),
        RunnerRoute::Native => {
            // The rules table's native route assumes an x86_64 Linux host.
            if probe.host_arch != "x86_64" {
                return Err(RunnerError::Unsupported {
                    target: triple,
                    reason: format!("runs natively on x86_64 only, this host is {}", probe.host_arch),
                });
            }
            if target.architecture == Architecture::I686 {
                let loader = probe.file("/lib/ld-linux.so.2");
                if !loader.exists() {
                    return Err(missing(
                        format!("the 32-bit loader {}", loader.display()),
                        "libc6-i386",
                        "it lets this x86_64 machine run i686 binaries; scripts/setup.sh installs it",
                    ));
                }
                // Rust's i686 std unwinds through the 32-bit libgcc_s.
                let libgcc = probe.file("/usr/lib32/libgcc_s.so.1");
                if !libgcc.exists() {
                    return Err(missing(
                        format!("the 32-bit {}", libgcc.display()),
                        "lib32gcc-s1",
                        "Rust's i686 binaries load it at start; scripts/setup.sh installs it",
                    ));
                }
                return Ok(RunnerPlan {
                    kind: RunnerKind::Native,
                    description: format!("native (32-bit, {})", loader.display()),
                });
            }
            Ok(RunnerPlan { kind: RunnerKind::Native, description: "native".to_owned() })
        }
        RunnerRoute::Qemu { gnu_prefix } => {
            let arch = target.architecture.names().and_then(|n| n.qemu).ok_or_else(|| RunnerError::Unsupported {
                target: triple.clone(),
                reason: format!("qemu-user has no one emulator for {:?}", target.architecture),
            })?;
            let name = format!("qemu-{arch}");
            let qemu = probe
                .find_program(&name)
                .ok_or_else(|| missing(format!("`{name}` (not on PATH)"), "qemu-user", SETUP_HINT))?;
            // With the target's multiarch libc installed, `-L /` makes qemu
            // use it together with its own loader. `-L /usr/<prefix>` would
            // then mix the cross loader with the multiarch libc, which hangs
            // or crashes programs that start a thread. Without a multiarch
            // libc, the cross libc under /usr/<prefix> is the only one there.
            let multiarch = [format!("/usr/lib/{gnu_prefix}/libc.so.6"), format!("/lib/{gnu_prefix}/libc.so.6")]
                .iter()
                .any(|p| probe.file(p).exists());
            let sysroot = if multiarch { probe.root.clone() } else { probe.file(&format!("/usr/{gnu_prefix}")) };
            let description = format!("{name} -L {}", sysroot.display());
            Ok(RunnerPlan { kind: RunnerKind::Qemu { qemu, sysroot }, description })
        }
        RunnerRoute::Wine => {
            if target.pointer_width != 64 {
                return Err(RunnerError::Unsupported {
                    target: triple,
                    reason: "only 64-bit Windows binaries are run here (32-bit ones need wine32 from the i386 \
                             multiarch and a 32-bit ProcessPrng shim, neither of which is set up)"
                        .to_owned(),
                });
            }
            // Debian's wine64 package installs the loader as
            // /usr/lib/wine/wine64 and only the `wine` package puts a `wine`
            // wrapper on PATH.
            let wine = ["wine64", "wine"]
                .iter()
                .find_map(|name| probe.find_program(name))
                .or_else(|| Some(probe.file("/usr/lib/wine/wine64")).filter(|p| p.exists()))
                .ok_or_else(|| {
                    missing(
                        "`wine64` (neither wine64 nor wine on PATH, nor /usr/lib/wine/wine64)".to_owned(),
                        "wine64",
                        SETUP_HINT,
                    )
                })?;
            let wineserver = wine
                .parent()
                .map(|dir| dir.join("wineserver"))
                .filter(|p| p.exists())
                .or_else(|| probe.find_program("wineserver"))
                .or_else(|| Some(probe.file("/usr/lib/wine/wineserver")).filter(|p| p.exists()));
            let name = wine.file_name().map_or_else(|| "wine".into(), |n| n.to_string_lossy().into_owned());
            Ok(RunnerPlan {
                kind: RunnerKind::Wine { wine, wineserver },
                description: format!("{name} (cached prefix, ProcessPrng shim)"),
            })
        }
    }
}

/// Runs `binary` (built for `target`) with `args` on this machine and
/// returns what it printed and how it exited, whatever the exit status.
///
/// `timeout` bounds the run itself. Under Wine, the first call for a
/// `cache_dir` also builds the shim DLL and creates the prefix, with their
/// own deadlines (minutes at most).
pub async fn run_binary(
    target: &Target,
    binary: &Path,
    args: &[&str],
    cache_dir: &Path,
    timeout: Duration,
) -> Result<ProcessOutput, RunnerError> {
    let plan = plan_runner(target)?;
    run_with_plan(&plan, target, binary, args, cache_dir, timeout).await
}

/// [`run_binary`] with a plan already made by [`plan_runner`].
pub async fn run_with_plan(
    plan: &RunnerPlan,
    target: &Target,
    binary: &Path,
    args: &[&str],
    cache_dir: &Path,
    timeout: Duration,
) -> Result<ProcessOutput, RunnerError> {
    let binary = std::fs::canonicalize(binary)
        .map_err(|source| RunnerError::BinaryNotFound { path: binary.to_owned(), source })?;
    let spec = runner_spec(plan, &binary, cache_dir).await?;
    spec.args(args.iter().copied()).timeout(timeout).output().await.map_err(|source| RunnerError::Process {
        target: target.triple.clone(),
        path: binary.clone(),
        source,
    })
}

/// The program [`run_with_plan`] runs for `binary`, before its arguments
/// and deadline: for a caller that starts a long-running program itself (a
/// daemon under test) and owns its lifetime. Under Wine, the shim DLL and
/// the prefix are set up and wineserver is warmed up first, as for every
/// run.
pub async fn runner_spec(plan: &RunnerPlan, binary: &Path, cache_dir: &Path) -> Result<ProcessSpec, RunnerError> {
    let binary = std::fs::canonicalize(binary)
        .map_err(|source| RunnerError::BinaryNotFound { path: binary.to_owned(), source })?;
    Ok(match &plan.kind {
        RunnerKind::Native => ProcessSpec::new(&binary),
        RunnerKind::Qemu { qemu, sysroot } => {
            ProcessSpec::new(qemu).arg("-L").arg(sysroot.as_os_str()).arg(binary.as_os_str())
        }
        RunnerKind::Wine { wine, wineserver } => {
            let prefix = prepare_wine(wine, cache_dir).await?;
            warm_up_wine(wine, wineserver.as_deref(), &prefix).await;
            // `err+module` keeps Wine silent except when a DLL fails to load,
            // which is the one Wine message a failed smoke test needs.
            wine_env(ProcessSpec::new(wine), &prefix, "-all,err+module").arg(binary.as_os_str())
        }
    })
}

/// The environment of every Wine process: the prefix, `debug` as
/// `WINEDEBUG`, no Mono/Gecko installers, and headless (no window for the
/// desktop process even when the caller has a display).
fn wine_env(spec: ProcessSpec, prefix: &Path, debug: &str) -> ProcessSpec {
    spec.env("WINEPREFIX", prefix.as_os_str())
        .env("WINEDEBUG", debug)
        .env("WINEDLLOVERRIDES", WINE_DLL_OVERRIDES)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
}

fn setup_err(step: &str, detail: impl Into<String>) -> RunnerError {
    RunnerError::WineSetup { step: step.to_owned(), detail: detail.into() }
}

/// Ensures, under `<cache>/wine/setup.lock`, that the shim DLL is built, the
/// prefix exists and the DLL is in its system32. Returns the prefix.
async fn prepare_wine(wine: &Path, cache_dir: &Path) -> Result<PathBuf, RunnerError> {
    let wine_dir = cache_dir.join("wine");
    std::fs::create_dir_all(&wine_dir)
        .map_err(|e| setup_err("creating the cache directory", format!("{}: {e}", wine_dir.display())))?;
    let _lock =
        lock_exclusive(&wine_dir.join("setup.lock"), PREFIX_INIT_TIMEOUT).await.map_err(|error| match error {
            LockError::TimedOut { .. } => {
                setup_err("waiting for another process to finish setting up wine", error.to_string())
            }
            LockError::Io { .. } => setup_err("locking", error.to_string()),
        })?;
    let dll = ensure_shim(&wine_dir).await?;
    let prefix = wine_dir.join("prefix");
    ensure_prefix(wine, &prefix).await?;
    install_shim(&dll, &prefix)?;
    Ok(prefix)
}

/// The shim's cache key: a hash of its sources and build flags.
fn shim_key() -> String {
    let mut hasher = Sha256::new();
    for part in [SHIM_SOURCE, SHIM_DEF, SHIM_COMPILER, &SHIM_FLAGS.join(" ")] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Builds the shim DLL into `<wine_dir>/shim-<key>/` unless it is there.
/// Called under the set-up lock.
async fn ensure_shim(wine_dir: &Path) -> Result<PathBuf, RunnerError> {
    let dir = wine_dir.join(format!("shim-{}", shim_key()));
    let dll = dir.join(SHIM_DLL);
    if dll.is_file() {
        return Ok(dll);
    }
    let step = "building the ProcessPrng shim";
    let compiler = which::which(SHIM_COMPILER).map_err(|_| {
        setup_err(
            step,
            format!(
                "`{SHIM_COMPILER}` is not on PATH; install the Debian package `{SHIM_COMPILER_PACKAGE}` ({SETUP_HINT})"
            ),
        )
    })?;
    // Build in a scratch directory, then rename it into place: a directory
    // that exists is always complete.
    let scratch = wine_dir.join(format!("shim-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let io = |e: std::io::Error| setup_err(step, format!("{}: {e}", scratch.display()));
    std::fs::create_dir_all(&scratch).map_err(io)?;
    std::fs::write(scratch.join("bcryptprimitives.c"), SHIM_SOURCE).map_err(io)?;
    std::fs::write(scratch.join("bcryptprimitives.def"), SHIM_DEF).map_err(io)?;
    let out = ProcessSpec::new(compiler)
        .current_dir(&scratch)
        .args(["-o", SHIM_DLL])
        .args(SHIM_FLAGS.iter().copied())
        .args(["bcryptprimitives.c", "bcryptprimitives.def", "-ladvapi32"])
        .timeout(SHIM_BUILD_TIMEOUT)
        .output()
        .await
        .map_err(|e| setup_err(step, e.to_string()))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(setup_err(step, format!("{SHIM_COMPILER} failed ({}): {}", out.status, out.stderr_text().trim())));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&scratch, &dir).map_err(|e| setup_err(step, format!("moving into {}: {e}", dir.display())))?;
    Ok(dll)
}

/// Creates the prefix with `wineboot --init` unless it is marked ready. A
/// prefix without the marker is a leftover of an interrupted set-up and is
/// recreated. Called under the set-up lock.
async fn ensure_prefix(wine: &Path, prefix: &Path) -> Result<(), RunnerError> {
    if prefix.join(PREFIX_READY).is_file() {
        return Ok(());
    }
    let step = "creating the wine prefix";
    if prefix.exists() {
        std::fs::remove_dir_all(prefix)
            .map_err(|e| setup_err(step, format!("removing the incomplete {}: {e}", prefix.display())))?;
    }
    tracing::info!(prefix = %prefix.display(), "creating a wine prefix (once; ~700 MB)");
    let out = wine_env(ProcessSpec::new(wine), prefix, "-all")
        .args(["wineboot", "--init"])
        .timeout(PREFIX_INIT_TIMEOUT)
        .output()
        .await
        .map_err(|e| setup_err(step, e.to_string()))?;
    if !out.status.success() || !prefix.join("system.reg").is_file() {
        return Err(setup_err(
            step,
            format!("`wineboot --init` in {} failed ({}): {}", prefix.display(), out.status, out.stderr_text().trim()),
        ));
    }
    std::fs::write(prefix.join(PREFIX_READY), "created by rustle-engine\n")
        .map_err(|e| setup_err(step, format!("{}: {e}", prefix.display())))
}

/// Copies the shim into the prefix's system32, where the Windows loader
/// finds it for any exe: the user's exe runs from where it was built, and
/// nothing is written next to it. Replaced atomically when it differs.
fn install_shim(dll: &Path, prefix: &Path) -> Result<(), RunnerError> {
    let step = "installing the ProcessPrng shim into the prefix";
    let system32 = prefix.join("drive_c/windows/system32");
    let dest = system32.join(SHIM_DLL);
    let wanted = std::fs::read(dll).map_err(|e| setup_err(step, format!("{}: {e}", dll.display())))?;
    if std::fs::read(&dest).is_ok_and(|have| have == wanted) {
        return Ok(());
    }
    let tmp = system32.join(format!(".{SHIM_DLL}.{}", std::process::id()));
    std::fs::write(&tmp, &wanted)
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| setup_err(step, format!("{}: {e}", dest.display())))
}

/// Starts wineserver (kept alive a few seconds past its last client) and
/// Wine's services with their output sent to /dev/null, before the real run.
///
/// Otherwise the run itself would start them, they would inherit its stderr
/// pipe and hold it open until wineserver exits (~3 s after the exe), and
/// every run would take that much longer. Best effort: a failure here only
/// costs that time, the run reports real problems.
async fn warm_up_wine(wine: &Path, wineserver: Option<&Path>, prefix: &Path) {
    // A second `wineserver -p` while one is running fails harmlessly.
    const SCRIPT: &str = r#"if [ -n "$1" ]; then "$1" -p"$3" </dev/null >/dev/null 2>&1; fi
exec "$2" wineboot </dev/null >/dev/null 2>&1"#;
    let server = wineserver.map(|p| p.as_os_str().to_owned()).unwrap_or_default();
    let spec = wine_env(ProcessSpec::new("sh"), prefix, "-all")
        .args(["-c", SCRIPT, "sh"])
        .arg(server)
        .arg(wine.as_os_str())
        .arg(WINESERVER_PERSISTENCE_SECS)
        .timeout(WARM_UP_TIMEOUT);
    match spec.output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::debug!(status = %out.status, "wine warm-up failed"),
        Err(e) => tracing::debug!(error = %e, "wine warm-up failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: &str) -> Target {
        Target::from_triple(t).unwrap()
    }

    fn empty_probe(dir: &Path) -> HostProbe {
        HostProbe { path: Some(dir.as_os_str().to_owned()), root: dir.to_owned(), host_arch: "x86_64".into() }
    }

    #[test]
    fn shim_key_is_stable_and_short() {
        assert_eq!(shim_key(), shim_key());
        assert_eq!(shim_key().len(), 16);
        assert!(SHIM_SOURCE.contains("ProcessPrng") && SHIM_SOURCE.contains("SystemFunction036"));
        assert!(SHIM_DEF.contains("ProcessPrng"));
    }

    #[test]
    fn missing_runners_name_their_package() {
        let dir = tempfile::tempdir().unwrap();
        let probe = empty_probe(dir.path());
        for (triple, package) in [
            ("aarch64-unknown-linux-gnu", "qemu-user"),
            ("s390x-unknown-linux-gnu", "qemu-user"),
            ("i686-unknown-linux-gnu", "libc6-i386"),
            ("x86_64-pc-windows-gnu", "wine64"),
        ] {
            let err = plan_runner_in(&spec(triple), &probe).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, RunnerError::MissingRunner { .. }), "{text}");
            assert!(text.contains(triple) && text.contains(package), "{text}");
        }
    }

    #[test]
    fn i686_needs_the_32_bit_libgcc_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/ld-linux.so.2"), b"").unwrap();
        let err = plan_runner_in(&spec("i686-unknown-linux-gnu"), &empty_probe(dir.path())).unwrap_err();
        assert!(err.to_string().contains("lib32gcc-s1"), "{err}");
        std::fs::create_dir_all(dir.path().join("usr/lib32")).unwrap();
        std::fs::write(dir.path().join("usr/lib32/libgcc_s.so.1"), b"").unwrap();
        let plan = plan_runner_in(&spec("i686-unknown-linux-gnu"), &empty_probe(dir.path())).unwrap();
        assert!(plan.description.starts_with("native (32-bit"), "{}", plan.description);
    }

    #[test]
    fn no_runner_gives_the_reason() {
        let err = plan_runner(&spec("aarch64-apple-darwin")).unwrap_err();
        assert!(matches!(err, RunnerError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("macOS binaries cannot run on Linux"), "{err}");
        let err = plan_runner(&spec("i686-pc-windows-msvc")).unwrap_err();
        assert!(err.to_string().contains("64-bit Windows"), "{err}");
    }

    #[test]
    fn native_needs_an_x86_64_host() {
        let dir = tempfile::tempdir().unwrap();
        let probe = HostProbe { host_arch: "aarch64".into(), ..empty_probe(dir.path()) };
        let err = plan_runner_in(&spec("x86_64-unknown-linux-gnu"), &probe).unwrap_err();
        assert!(err.to_string().contains("this host is aarch64"), "{err}");
    }

    #[test]
    fn qemu_sysroot_follows_the_multiarch_libc() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["qemu-aarch64", "qemu-arm"] {
            let p = bin.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let lib = dir.path().join("usr/lib/aarch64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libc.so.6"), "").unwrap();
        let probe = HostProbe { path: Some(bin.into_os_string()), ..empty_probe(dir.path()) };

        let plan = plan_runner_in(&spec("aarch64-unknown-linux-gnu"), &probe).unwrap();
        let RunnerKind::Qemu { sysroot, qemu } = &plan.kind else { panic!("{plan:?}") };
        assert_eq!(sysroot, dir.path());
        assert!(qemu.ends_with("qemu-aarch64"));
        assert_eq!(plan.description, format!("qemu-aarch64 -L {}", dir.path().display()));

        let plan = plan_runner_in(&spec("armv7-unknown-linux-gnueabihf"), &probe).unwrap();
        let RunnerKind::Qemu { sysroot, .. } = &plan.kind else { panic!("{plan:?}") };
        assert_eq!(sysroot, &dir.path().join("usr/arm-linux-gnueabihf"));
    }
}

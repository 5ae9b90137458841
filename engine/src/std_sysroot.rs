//! The standard library built from rust-src once per (toolchain, target, std flags) into a sysroot that every later build of the target links against, instead of `-Zbuild-std` compiling std again in each target dir.
//!
//! A target without a prebuilt std (armv7, i686, ppc64le, s390x, riscv64,
//! Windows, musl, macOS with Debian's toolchain) used to compile `core`,
//! `alloc`, `std` and their dependencies in every target dir: once per
//! template. Here a generated library crate is built once with
//! `-Zbuild-std=std,panic_abort`; the std crates it compiled (every rlib of
//! the run but its own) are copied to `<dir>/lib/rustlib/<target>/lib`,
//! which `--sysroot=<dir>` makes rustc read as it reads a prebuilt std.
//!
//! The sysroot's std is built as rustup's prebuilt one is: optimized,
//! unwinding, with bitcode beside the object code (`-Cembed-bitcode=yes`),
//! so one sysroot serves every profile: `panic = "abort"` links its
//! `panic_abort`, `lto` finds the bitcode. What changes code generation is
//! in its key: the toolchain (its id carries the commit), the rust-src
//! version, the target (a custom spec by its content) and the target's
//! rustflags and variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_process::ProcessSpec;
use rustle_targets::Target;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::PathRemap;
use crate::file_lock::lock_exclusive;
use crate::template::hex;
use crate::toolchain::Toolchain;

/// The file whose presence says a sysroot is complete.
const STAMP: &str = "built";

/// The package name of the generated crate std is built for.
const BUILDER_PACKAGE: &str = "rustle-std-sysroot";

/// Where the std of one (toolchain, target, flags) is, or will be, built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdSysroot {
    /// `<cache>/sysroots/<toolchain id>/<target>-<16 hex digits>`: what
    /// `--sysroot` names.
    pub dir: PathBuf,
    /// The target as rustc names its `lib/rustlib` directory.
    target_name: String,
}

impl StdSysroot {
    /// The sysroot for `target` built by `toolchain` with `rustflags` and
    /// `env` (the target's own, as its builds get them), under `cache_dir`.
    pub fn new(
        cache_dir: &Path,
        toolchain: &Toolchain,
        target: &Target,
        rustflags: &[String],
        env: &[(String, String)],
    ) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut field = |text: &str| {
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        };
        field(&toolchain.id());
        field(&toolchain.rustc_version);
        field(toolchain.rust_src.as_ref().and_then(|src| src.version.as_deref()).unwrap_or("unknown"));
        field(&target.triple);
        if let Some(spec) = &target.custom_spec {
            field(&hex(&Sha256::digest(std::fs::read(spec)?)));
        }
        for flag in rustflags {
            field(flag);
        }
        for (key, value) in env {
            field(key);
            field(value);
        }
        let digest = hasher.finalize();
        let dir =
            cache_dir.join("sysroots").join(toolchain.id()).join(format!("{}-{}", target.triple, hex(&digest[..8])));
        Ok(Self { dir, target_name: target.triple.clone() })
    }

    /// `<dir>/lib/rustlib/<target>/lib`: the std crates.
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib/rustlib").join(&self.target_name).join("lib")
    }

    /// Whether it is complete.
    pub fn is_built(&self) -> bool {
        self.dir.join(STAMP).is_file()
    }

    /// The rustc flag that builds against it.
    pub fn flag(&self) -> String {
        format!("--sysroot={}", self.dir.display())
    }

    /// `<dir>.<what>`: the lock, the build in progress, its scratch dir.
    fn sibling(&self, what: &str) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{what}"));
        self.dir.with_file_name(name)
    }
}

/// How to build one sysroot: the toolchain and target, and what the
/// target's builds give rustc and cargo.
#[derive(Debug, Clone)]
pub struct SysrootBuild<'a> {
    /// The sysroot.
    pub sysroot: &'a StdSysroot,
    /// The toolchain, with rust-src.
    pub toolchain: &'a Toolchain,
    /// The target.
    pub target: &'a Target,
    /// The target's rustflags (what the key has).
    pub rustflags: &'a [String],
    /// The target's variables (what the key has).
    pub env: &'a [(String, String)],
    /// The directories std's paths are named by in binaries (rust-src,
    /// CARGO_HOME); the build's own target dir is added.
    pub remaps: &'a [PathRemap],
    /// How long the build may take.
    pub timeout: Duration,
}

/// Builds the sysroot unless it is built: under a lock, in a `.partial`
/// sibling renamed into place when complete, so two processes never build
/// it twice and no build ever reads half of one. Returns whether it was
/// built now. `say` hears what is happening.
pub async fn ensure_built(build: &SysrootBuild<'_>, say: &(dyn Fn(String) + Send + Sync)) -> Result<bool, String> {
    let sysroot = build.sysroot;
    if sysroot.is_built() {
        return Ok(false);
    }
    let parent = sysroot.dir.parent().unwrap_or(&sysroot.dir);
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let _lock = lock_exclusive(&sysroot.sibling("lock"), build.timeout)
        .await
        .map_err(|error| format!("waiting for another build of std for {}: {error}", build.target.triple))?;
    if sysroot.is_built() {
        return Ok(false);
    }
    say(format!(
        "building std for {} from rust-src into {} (once; later builds of any template for {} reuse it)",
        build.target.triple,
        sysroot.dir.display(),
        build.target.triple
    ));
    let scratch = sysroot.sibling("build");
    let _ = std::fs::remove_dir_all(&scratch);
    let built = build_std_crates(build, &scratch).await;
    let installed = built.and_then(|rlibs| install(sysroot, &rlibs));
    let _ = std::fs::remove_dir_all(&scratch);
    installed?;
    Ok(true)
}

/// Compiles std for the target in `scratch` and returns the rlibs of the
/// std crates.
async fn build_std_crates(build: &SysrootBuild<'_>, scratch: &Path) -> Result<Vec<PathBuf>, String> {
    let (toolchain, target) = (build.toolchain, build.target);
    let crate_dir = scratch.join("crate");
    let src = crate_dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let manifest = crate_dir.join("Cargo.toml");
    let manifest_text = format!(
        "[package]\nname = \"{BUILDER_PACKAGE}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[lib]\npath = \"src/lib.rs\"\n\n[workspace]\n"
    );
    for (path, text) in [(&manifest, manifest_text.as_str()), (&src.join("lib.rs"), "#![no_std]\n")] {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let target_dir = scratch.join("target");
    let mut rustflags: Vec<String> = build.remaps.iter().map(PathRemap::flag).collect();
    rustflags
        .push(PathRemap { from: target_dir.clone(), to: "/rustle/target".into(), placeholder: "<target-dir>" }.flag());
    rustflags.extend(build.rustflags.iter().cloned());
    // Object code and bitcode, as a prebuilt std has: linked with and
    // without LTO alike. After cargo's own `-Cembed-bitcode=no`, so it wins.
    rustflags.push("-Cembed-bitcode=yes".into());
    let mut spec = ProcessSpec::new(&toolchain.cargo)
        .args(["build", "--release", "--lib", "--message-format=json-render-diagnostics", "--target"])
        .arg(target.cargo_target())
        .arg("-Zbuild-std=std,panic_abort")
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(&crate_dir)
        .timeout(build.timeout)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("RUSTC", &toolchain.rustc)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .env(format!("{}_RUSTFLAGS", target.cargo_env_prefix()), rustflags.join(" "))
        // std as rustup ships it, whatever the caller's profile overrides say.
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_PANIC", "unwind")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("CARGO_PROFILE_RELEASE_STRIP", "none")
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false")
        .env("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "false")
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "false");
    if !toolchain.is_nightly() {
        spec = spec.env("RUSTC_BOOTSTRAP", "1");
    }
    #[cfg(unix)]
    {
        let wrapper = scratch.join("rustc-wrapper");
        std::fs::write(&wrapper, PANIC_ABORT_WRAPPER).map_err(|e| format!("{}: {e}", wrapper.display()))?;
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", wrapper.display()))?;
        spec = spec.env("RUSTC_WRAPPER", &wrapper);
    }
    for (key, value) in build.env {
        spec = spec.env(key, value);
    }
    let output =
        spec.output().await.map_err(|error| format!("cargo could not build std for {}: {error}", target.triple))?;
    if !output.status.success() {
        let stderr = output.stderr_text();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).take(8).collect();
        return Err(format!(
            "building std for {} from {} failed ({}): {}",
            target.triple,
            toolchain.rust_src.as_ref().map_or_else(|| "rust-src".into(), |src| src.library.display().to_string()),
            output.status,
            if errors.is_empty() { crate::toolchain::last_lines(&stderr, 8) } else { errors.join("; ") }
        ));
    }
    Ok(std_rlibs(&String::from_utf8_lossy(&output.stdout)))
}

/// Runs rustc (its first argument) as cargo asks, with `-Cpanic=abort`
/// added for the `panic_abort` crate, as rust's own build of std does: the
/// abort runtime must itself be compiled to abort, or a `panic = "abort"`
/// binary refuses it. Everything else is compiled to unwind, like a
/// prebuilt std.
#[cfg(unix)]
const PANIC_ABORT_WRAPPER: &str = r#"#!/bin/sh
# Written by rustle-cross for building std into a sysroot.
prev=
for arg in "$@"; do
  if [ "$prev" = "--crate-name" ] && [ "$arg" = "panic_abort" ]; then
    exec "$@" -Cpanic=abort
  fi
  prev=$arg
done
exec "$@"
"#;

/// The rlibs of cargo's `compiler-artifact` messages in `stdout`, but the
/// generated crate's own.
fn std_rlibs(stdout: &str) -> Vec<PathBuf> {
    #[derive(Deserialize)]
    struct Artifact {
        reason: String,
        #[serde(default)]
        package_id: String,
        #[serde(default)]
        filenames: Vec<PathBuf>,
    }
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Artifact>(line).ok())
        .filter(|a| a.reason == "compiler-artifact" && !a.package_id.contains(BUILDER_PACKAGE))
        .flat_map(|a| a.filenames)
        .filter(|file| file.extension().is_some_and(|e| e == "rlib"))
        .collect()
}

/// Copies `rlibs` into the sysroot: into `.partial`, stamped, renamed into place.
fn install(sysroot: &StdSysroot, rlibs: &[PathBuf]) -> Result<(), String> {
    let has = |name: &str| {
        rlibs.iter().any(|p| p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&format!("lib{name}-"))))
    };
    if let Some(missing) = ["core", "alloc", "std", "panic_abort"].into_iter().find(|name| !has(name)) {
        return Err(format!("building std for {} produced no {missing} crate", sysroot.target_name));
    }
    let partial = sysroot.sibling("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let lib = partial.join("lib/rustlib").join(&sysroot.target_name).join("lib");
    std::fs::create_dir_all(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    for rlib in rlibs {
        let to = lib.join(rlib.file_name().unwrap_or_default());
        std::fs::copy(rlib, &to).map_err(|e| format!("{} -> {}: {e}", rlib.display(), to.display()))?;
    }
    let stamp = partial.join(STAMP);
    std::fs::write(&stamp, format!("{} crates\n", rlibs.len())).map_err(|e| format!("{}: {e}", stamp.display()))?;
    let _ = std::fs::remove_dir_all(&sysroot.dir);
    std::fs::rename(&partial, &sysroot.dir)
        .map_err(|e| format!("{} -> {}: {e}", partial.display(), sysroot.dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_std_crates_rlibs_are_taken() {
        let stdout = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///usr/lib/rustlib/src/rust/library/core#0.0.0","filenames":["/t/armv7/release/deps/libcore-1a.rlib","/t/armv7/release/deps/libcore-1a.rmeta"]}"#,
            r#"{"reason":"build-script-executed","package_id":"registry+https://github.com/rust-lang/crates.io-index#compiler_builtins@0.1.160"}"#,
            r#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#compiler_builtins@0.1.160","filenames":["/t/armv7/release/deps/libcompiler_builtins-2b.rlib"]}"#,
            r#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#cc@1.2.0","filenames":["/t/release/build/cc-3c/build_script_build-3c"]}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///c/sysroots/x.build/crate#rustle-std-sysroot@0.0.0","filenames":["/t/armv7/release/librustle_std_sysroot.rlib"]}"#,
            "not json",
        ]
        .join("\n");
        let taken = std_rlibs(&stdout);
        assert_eq!(
            taken,
            [
                PathBuf::from("/t/armv7/release/deps/libcore-1a.rlib"),
                "/t/armv7/release/deps/libcompiler_builtins-2b.rlib".into()
            ]
        );
    }

    #[test]
    fn a_sysroot_without_std_is_refused_and_a_whole_one_is_renamed_into_place() {
        let scratch = tempfile::tempdir().unwrap();
        let sysroot =
            StdSysroot { dir: scratch.path().join("armv7-0"), target_name: "armv7-unknown-linux-gnueabihf".into() };
        let built = scratch.path().join("deps");
        std::fs::create_dir_all(&built).unwrap();
        let rlib = |name: &str| {
            let path = built.join(format!("lib{name}-0a.rlib"));
            std::fs::write(&path, name).unwrap();
            path
        };
        let partial = [rlib("core"), rlib("alloc")];
        let error = install(&sysroot, &partial).unwrap_err();
        assert!(error.contains("produced no std crate"), "{error}");
        assert!(!sysroot.is_built() && !sysroot.dir.exists());
        let whole = [rlib("core"), rlib("alloc"), rlib("std"), rlib("panic_abort")];
        install(&sysroot, &whole).unwrap();
        assert!(sysroot.is_built());
        assert_eq!(std::fs::read_to_string(sysroot.lib_dir().join("libstd-0a.rlib")).unwrap(), "std");
        assert!(!sysroot.sibling("partial").exists());
        assert_eq!(sysroot.flag(), format!("--sysroot={}", sysroot.dir.display()));
    }
}

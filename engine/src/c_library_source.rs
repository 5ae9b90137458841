//! C libraries built here from source for a target no package supplies them for (OpenSSL for musl): compiled once per (target, source version) with the target's own C compiler into a prefix under the cache dir, which every later build of any template reuses.
//!
//! The source is a crates.io crate ([`SourceRecipe`], `openssl-src`), so
//! it comes through the same registry as the template's dependencies. A
//! small host program generated under `<cache>/c-libraries/builder/`
//! depends on it at the pinned version and runs its build for the target;
//! the C compiler is the one the target's route links with (a GNU cross
//! gcc, MinGW, or zig for musl), handed over as `CC_<triple>` the way
//! cargo hands it to a build script. The prefix is
//! `<cache>/c-libraries/<triple>/<crate>-<version>/install/{lib,include}`;
//! it is built into a sibling directory and renamed into place, under a
//! lock, so a half-built prefix is never used and two builds never race.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_process::ProcessSpec;
use rustle_targets::{CLibrary, SourceRecipe, Target};

use crate::file_lock::lock_exclusive;
use crate::toolchain::{LinkerPlan, Toolchain};

/// How long building a library from source may take (OpenSSL on one slow core: minutes).
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The file whose presence says a prefix is complete.
const STAMP: &str = "built";

/// Where one C library is (or will be) built from source for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePrefix {
    /// The library.
    pub library: &'static CLibrary,
    /// Its source.
    pub recipe: SourceRecipe,
    /// The target's triple.
    pub triple: String,
    /// `<cache>/c-libraries/<triple>/<crate>-<version>`.
    pub dir: PathBuf,
}

impl SourcePrefix {
    /// The prefix of `library` for `target` under `cache_dir`, when
    /// rustle-cross knows how to build that library.
    pub fn new(cache_dir: &Path, target: &Target, library: &'static CLibrary) -> Option<Self> {
        let recipe = library.built_here?;
        let dir = cache_dir
            .join("c-libraries")
            .join(&target.triple)
            .join(format!("{}-{}", recipe.crate_name, recipe.version));
        Some(Self { library, recipe, triple: target.triple.clone(), dir })
    }

    /// The static archives' directory.
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("install").join("lib")
    }

    /// The headers' directory.
    pub fn include_dir(&self) -> PathBuf {
        self.dir.join("install").join("include")
    }

    /// Whether it is complete: stamped, with every static archive there.
    pub fn is_built(&self) -> bool {
        self.dir.join(STAMP).is_file() && self.library.has_static_archives_in(&self.lib_dir())
    }

    /// A sibling of the prefix: `<prefix>.<suffix>` (its lock, its build in progress).
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{suffix}"));
        self.dir.with_file_name(name)
    }
}

/// The target's C compiler and archiver, as `CC_<triple>` and `AR_<triple>` name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCCompiler {
    /// The compiler.
    pub cc: PathBuf,
    /// The archiver, when the route names one.
    pub ar: Option<PathBuf>,
    /// The index maker, when the route names one.
    pub ranlib: Option<PathBuf>,
}

impl TargetCCompiler {
    /// The C compiler of a target's linker route, writing the zig wrappers
    /// into `wrapper_dir` for a zig route (zig's `cc` for the target, with
    /// the `--target` the `cc` crate adds for a clang removed). `None` for
    /// a route without one.
    pub fn of_route(linker: &LinkerPlan, target: &Target, wrapper_dir: &Path) -> Result<Self, String> {
        match linker {
            LinkerPlan::Host => Ok(Self { cc: "cc".into(), ar: None, ranlib: None }),
            LinkerPlan::Cross { cc, ar, .. } => Ok(Self { cc: cc.clone(), ar: ar.clone(), ranlib: None }),
            LinkerPlan::Zig { zig, .. } => zig_wrappers(zig, target, wrapper_dir),
        }
    }
}

/// zig's name of a musl or glibc Linux target (`x86_64-linux-musl`).
fn zig_target(target: &Target) -> Result<String, String> {
    let arch = target.triple.split('-').next().unwrap_or_default();
    let arch = match arch {
        "armv7" => "arm",
        "riscv64gc" => "riscv64",
        other => other,
    };
    let env = target.triple.rsplit('-').next().unwrap_or_default();
    if !target.triple.contains("-linux-") {
        return Err(format!("zig builds C libraries here only for Linux targets, not {}", target.triple));
    }
    Ok(format!("{arch}-linux-{env}"))
}

fn zig_wrappers(zig: &Path, target: &Target, dir: &Path) -> Result<TargetCCompiler, String> {
    let zig_target = zig_target(target)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let zig = zig.display();
    let cc = format!(
        "#!/bin/sh\n# zig's C compiler for {zig_target}, as the cc crate calls a compiler: its own target flags dropped.\n\
         skip=0\nfor a do\n  shift\n  if [ $skip = 1 ]; then skip=0; continue; fi\n  case \"$a\" in\n    --target=*) continue ;;\n    -target) skip=1; continue ;;\n  esac\n  set -- \"$@\" \"$a\"\ndone\n\
         exec \"{zig}\" cc -target {zig_target} \"$@\"\n"
    );
    let write = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(path)
    };
    Ok(TargetCCompiler {
        cc: write(&format!("zig-cc-{}", target.triple), cc)?,
        ar: Some(write("zig-ar", format!("#!/bin/sh\nexec \"{zig}\" ar \"$@\"\n"))?),
        ranlib: Some(write("zig-ranlib", format!("#!/bin/sh\nexec \"{zig}\" ranlib \"$@\"\n"))?),
    })
}

/// The builder program's manifest: a host binary depending on the source crate at its pinned version.
fn builder_manifest(recipe: SourceRecipe) -> String {
    format!(
        "# Generated by rustle-cross: builds a C library from source for a target.\n\
         [package]\nname = \"rustle-c-library-builder\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\n{} = \"={}\"\n\n[workspace]\n",
        recipe.crate_name, recipe.version
    )
}

/// The builder program: `builder TARGET HOST OUT_DIR`, openssl-src's build
/// run for the target, as a build script would run it.
const BUILDER_MAIN: &str = r#"//! Builds OpenSSL from the openssl-src crate for a target: `rustle-c-library-builder TARGET HOST OUT_DIR`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, host, out_dir] = args.as_slice() else {
        eprintln!("usage: rustle-c-library-builder TARGET HOST OUT_DIR");
        std::process::exit(2);
    };
    match openssl_src::Build::new().target(target).host(host).out_dir(out_dir).try_build() {
        Ok(artifacts) => println!("built {} in {}", artifacts.libs().join(" "), artifacts.lib_dir().display()),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
"#;

/// Makes sure `prefix` is built, building it now with `compiler` (the
/// builder program compiled for the host with `toolchain`) when it is not.
/// Returns whether it was built now. `say` hears what is happening.
pub async fn ensure_built(
    prefix: &SourcePrefix,
    toolchain: &Toolchain,
    compiler: &TargetCCompiler,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<bool, String> {
    if prefix.is_built() {
        return Ok(false);
    }
    let parent = prefix.dir.parent().unwrap_or(&prefix.dir);
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let lock_path = prefix.sibling("lock");
    let _lock = lock_exclusive(&lock_path, BUILD_TIMEOUT).await.map_err(|error| {
        format!("waiting for another build of {} for {}: {error}", prefix.library.name, prefix.triple)
    })?;
    if prefix.is_built() {
        return Ok(false);
    }
    say(format!(
        "building {} for {} from {} {} into {} (once; later builds reuse it)",
        prefix.library.name,
        prefix.triple,
        prefix.recipe.crate_name,
        prefix.recipe.version,
        prefix.dir.display()
    ));
    let builder = build_builder(prefix, toolchain).await?;
    let partial = prefix.sibling("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let suffix = prefix.triple.replace('-', "_");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut spec = ProcessSpec::new(&builder)
        .args([&prefix.triple, &toolchain.host])
        .arg(&partial)
        .current_dir(&partial)
        .timeout(BUILD_TIMEOUT)
        // What cargo gives a build script, which openssl-src and cc expect.
        .env("TARGET", &prefix.triple)
        .env("HOST", &toolchain.host)
        .env("OUT_DIR", &partial)
        .env("OPT_LEVEL", "2")
        .env("DEBUG", "false")
        .env("CARGO_MAKEFLAGS", format!("-j{jobs}"))
        .env(format!("CC_{suffix}"), &compiler.cc);
    if let Some(ar) = &compiler.ar {
        spec = spec.env(format!("AR_{suffix}"), ar);
    }
    if let Some(ranlib) = &compiler.ranlib {
        spec = spec.env(format!("RANLIB_{suffix}"), ranlib);
    }
    let output =
        spec.output().await.map_err(|error| format!("the {} build could not run: {error}", prefix.library.name))?;
    if !output.status.success() {
        let stderr = output.stderr_text();
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "building {} for {} from {} {} with {} failed ({}):\n{}",
            prefix.library.name,
            prefix.triple,
            prefix.recipe.crate_name,
            prefix.recipe.version,
            compiler.cc.display(),
            output.status,
            tail.join("\n")
        ));
    }
    // The copied source and the objects are hundreds of MiB; the prefix keeps only what links.
    let _ = std::fs::remove_dir_all(partial.join("build"));
    let _ = std::fs::remove_dir_all(&prefix.dir);
    std::fs::rename(&partial, &prefix.dir)
        .map_err(|e| format!("{} -> {}: {e}", partial.display(), prefix.dir.display()))?;
    let stamp = format!(
        "{} {} for {} with {}\n",
        prefix.recipe.crate_name,
        prefix.recipe.version,
        prefix.triple,
        compiler.cc.display()
    );
    std::fs::write(prefix.dir.join(STAMP), stamp).map_err(|e| format!("{}: {e}", prefix.dir.display()))?;
    if !prefix.is_built() {
        return Err(format!(
            "building {} for {} left no {} in {}",
            prefix.library.name,
            prefix.triple,
            prefix.library.static_archives.join(" and "),
            prefix.lib_dir().display()
        ));
    }
    Ok(true)
}

/// Compiles the builder program for the host (once per source version), returning its path.
async fn build_builder(prefix: &SourcePrefix, toolchain: &Toolchain) -> Result<PathBuf, String> {
    let root = prefix.dir.parent().and_then(Path::parent).unwrap_or(&prefix.dir);
    let dir = root.join("builder").join(format!("{}-{}", prefix.recipe.crate_name, prefix.recipe.version));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    for (path, text) in
        [(dir.join("Cargo.toml"), builder_manifest(prefix.recipe)), (src.join("main.rs"), BUILDER_MAIN.into())]
    {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let target_dir = dir.join("target");
    let output = ProcessSpec::new(&toolchain.cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .current_dir(&dir)
        .timeout(BUILD_TIMEOUT)
        .env("RUSTC", &toolchain.rustc)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .await
        .map_err(|error| format!("cargo could not build the {} builder: {error}", prefix.recipe.crate_name))?;
    if !output.status.success() {
        let stderr = output.stderr_text();
        let reason = stderr.lines().filter(|l| l.starts_with("error")).collect::<Vec<_>>().join("; ");
        return Err(format!(
            "cargo could not build the {} {} builder (is crates.io reachable?): {}",
            prefix.recipe.crate_name,
            prefix.recipe.version,
            if reason.is_empty() { stderr.trim() } else { &reason }
        ));
    }
    Ok(target_dir.join("release").join(format!("rustle-c-library-builder{}", std::env::consts::EXE_SUFFIX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(triple: &str) -> Target {
        Target::from_triple(triple).expect("known")
    }

    #[test]
    fn a_prefix_is_named_by_target_and_source_version_and_complete_only_when_stamped() {
        let cache = tempfile::tempdir().expect("tmp");
        let prefix = SourcePrefix::new(cache.path(), &target("x86_64-unknown-linux-musl"), &rustle_targets::OPENSSL)
            .expect("OpenSSL is built here");
        assert_eq!(prefix.dir, cache.path().join("c-libraries/x86_64-unknown-linux-musl/openssl-src-300.6.1"));
        assert!(!prefix.is_built());
        std::fs::create_dir_all(prefix.lib_dir()).expect("mkdir");
        for archive in ["libssl.a", "libcrypto.a"] {
            std::fs::write(prefix.lib_dir().join(archive), b"!<arch>\n").expect("write");
        }
        assert!(!prefix.is_built(), "archives without the stamp are a build that did not finish");
        std::fs::write(prefix.dir.join(STAMP), "x").expect("stamp");
        assert!(prefix.is_built());
        assert_eq!(
            prefix.sibling("lock"),
            cache.path().join("c-libraries/x86_64-unknown-linux-musl/openssl-src-300.6.1.lock")
        );
        assert_eq!(SourcePrefix::new(cache.path(), &target("x86_64-unknown-linux-musl"), &rustle_targets::ZLIB), None);
    }

    #[test]
    fn zig_wrappers_name_zigs_target_and_drop_the_cc_crates_own() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(zig_target(&target("x86_64-unknown-linux-musl")).as_deref(), Ok("x86_64-linux-musl"));
        assert_eq!(zig_target(&target("armv7-unknown-linux-musleabihf")).as_deref(), Ok("arm-linux-musleabihf"));
        assert!(zig_target(&target("x86_64-apple-darwin")).is_err());
        let plan = LinkerPlan::Zig { cargo_zigbuild: "cargo-zigbuild".into(), zig: "/opt/zig".into() };
        let compiler =
            TargetCCompiler::of_route(&plan, &target("aarch64-unknown-linux-musl"), dir.path()).expect("zig");
        let script = std::fs::read_to_string(&compiler.cc).expect("written");
        assert!(script.contains("exec \"/opt/zig\" cc -target aarch64-linux-musl \"$@\""), "{script}");
        assert!(script.contains("--target=*) continue"), "{script}");
    }

    #[cfg(unix)]
    #[test]
    fn the_zig_wrapper_passes_every_argument_but_the_target_flags_on() {
        let dir = tempfile::tempdir().expect("tmp");
        let fake_zig = dir.path().join("zig");
        std::fs::write(&fake_zig, "#!/bin/sh\necho \"$@\"\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake_zig, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let plan = LinkerPlan::Zig { cargo_zigbuild: "cargo-zigbuild".into(), zig: fake_zig };
        let compiler = TargetCCompiler::of_route(&plan, &target("x86_64-unknown-linux-musl"), dir.path()).expect("zig");
        let out = std::process::Command::new(&compiler.cc)
            .args(["--target=x86_64-unknown-linux-musl", "-O2", "-target", "x86_64-unknown-linux-musl", "-c", "a b.c"])
            .output()
            .expect("runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cc -target x86_64-linux-musl -O2 -c a b.c");
    }
}

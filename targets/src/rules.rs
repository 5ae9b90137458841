//! The per-target rules table: for each target this project knows how to
//! build, where its std comes from, how it links, and how its binaries run.
//!
//! This is data, one row per triple. The toolchain manager combines a row
//! with what is installed to answer "can this machine build T, and how".

use crate::spec::{GlibcVersion, LibcType, Target};

/// How a target's binaries are linked (and its C code compiled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkerRoute {
    /// The host's `cc` (the target is the host), or the linker the target
    /// names itself in `TargetSettings::linker`.
    Host,
    /// A GNU cross toolchain: `<prefix>-gcc`, `<prefix>-ar`.
    GnuCross {
        /// The GNU triple prefix (`aarch64-linux-gnu`).
        prefix: &'static str,
        /// Debian packages that provide it.
        packages: &'static [&'static str],
    },
    /// MinGW-w64: `<prefix>-gcc`.
    Mingw {
        /// The MinGW prefix (`x86_64-w64-mingw32`).
        prefix: &'static str,
        /// Debian packages that provide it.
        packages: &'static [&'static str],
    },
    /// zig as the linker and C compiler, through cargo-zigbuild.
    Zig,
    /// No route exists on a Linux build host.
    Unavailable {
        /// Why, and where such a target can be built.
        reason: &'static str,
    },
}

impl LinkerRoute {
    /// The dlltool rustc runs on this route to make the import libraries of
    /// `raw-dylib` links (std's own on Windows): `<prefix>-dlltool` for
    /// MinGW. It names symbols after the library's path, which is in a
    /// temporary directory of every link, so the engine runs it through a
    /// wrapper that gives it the path relative to that directory.
    pub fn dlltool(&self) -> Option<String> {
        match self {
            LinkerRoute::Mingw { prefix, .. } => Some(format!("{prefix}-dlltool")),
            _ => None,
        }
    }
}

/// How a target's binaries can be executed here for a smoke test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerRoute {
    /// Directly on this x86_64 Linux host.
    Native,
    /// Under qemu-user: `qemu-<name>` (the architecture's
    /// [`qemu`](crate::ArchitectureNames::qemu) name), with `-L` pointing at
    /// the target's libraries (`/` when the multiarch libc is installed,
    /// else `/usr/<gnu_prefix>`).
    Qemu {
        /// GNU triple prefix of the target's cross libc (`aarch64-linux-gnu`).
        gnu_prefix: &'static str,
    },
    /// Under wine64.
    Wine,
    /// Cannot run here.
    None {
        /// Why.
        reason: &'static str,
    },
}

/// One row of the rules table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRule {
    /// The rustc triple.
    pub triple: &'static str,
    /// Debian architecture whose `libstd-rust-web-dev:<arch>` ships a
    /// prebuilt std for this target (multiarch).
    pub debian_std_arch: Option<&'static str>,
    /// How it links.
    pub linker: LinkerRoute,
    /// How its binaries run here.
    pub runner: RunnerRoute,
    /// rustc flags this route needs.
    pub rustflags: &'static [&'static str],
    /// Environment this route needs.
    pub env: &'static [(&'static str, &'static str)],
}

const fn gnu(prefix: &'static str, packages: &'static [&'static str]) -> LinkerRoute {
    LinkerRoute::GnuCross { prefix, packages }
}

const fn qemu(gnu_prefix: &'static str) -> RunnerRoute {
    RunnerRoute::Qemu { gnu_prefix }
}

const fn row(
    triple: &'static str,
    debian_std_arch: Option<&'static str>,
    linker: LinkerRoute,
    runner: RunnerRoute,
) -> TargetRule {
    TargetRule { triple, debian_std_arch, linker, runner, rustflags: &[], env: &[] }
}

const NO_MACOS_RUNNER: RunnerRoute =
    RunnerRoute::None { reason: "macOS binaries cannot run on Linux; the Mach-O header is checked instead" };
const MACOS_ENV: &[(&str, &str)] = &[("MACOSX_DEPLOYMENT_TARGET", "11.0")];
/// zig provides the C runtime objects for musl; rustc must not bring its own.
const ZIG_MUSL_FLAGS: &[&str] = &["-C", "link-self-contained=no"];
const MSVC: LinkerRoute = LinkerRoute::Unavailable {
    reason: "the MSVC linker and Windows SDK are not available on Linux; build it on a Windows agent, or target x86_64-pc-windows-gnu",
};

/// The table. Adding a target here is all it takes for the toolchain manager,
/// the build engine and `rustle-cross targets` to know it.
#[rustfmt::skip]
pub const RULES: &[TargetRule] = &[
    row("x86_64-unknown-linux-gnu", None, LinkerRoute::Host, RunnerRoute::Native),
    row("aarch64-unknown-linux-gnu", Some("arm64"), gnu("aarch64-linux-gnu", &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]), qemu("aarch64-linux-gnu")),
    row("armv7-unknown-linux-gnueabihf", Some("armhf"), gnu("arm-linux-gnueabihf", &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"]), qemu("arm-linux-gnueabihf")),
    row("arm-unknown-linux-gnueabihf", None, gnu("arm-linux-gnueabihf", &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"]), qemu("arm-linux-gnueabihf")),
    row("i686-unknown-linux-gnu", Some("i386"), gnu("i686-linux-gnu", &["gcc-i686-linux-gnu", "libc6-dev-i386-cross"]), RunnerRoute::Native),
    row("powerpc64le-unknown-linux-gnu", Some("ppc64el"), gnu("powerpc64le-linux-gnu", &["gcc-powerpc64le-linux-gnu", "libc6-dev-ppc64el-cross"]), qemu("powerpc64le-linux-gnu")),
    row("s390x-unknown-linux-gnu", None, gnu("s390x-linux-gnu", &["gcc-s390x-linux-gnu", "libc6-dev-s390x-cross"]), qemu("s390x-linux-gnu")),
    row("riscv64gc-unknown-linux-gnu", None, gnu("riscv64-linux-gnu", &["gcc-riscv64-linux-gnu", "libc6-dev-riscv64-cross"]), qemu("riscv64-linux-gnu")),
    row("x86_64-pc-windows-gnu", None, LinkerRoute::Mingw { prefix: "x86_64-w64-mingw32", packages: &["gcc-mingw-w64-x86-64"] }, RunnerRoute::Wine),
    TargetRule { rustflags: ZIG_MUSL_FLAGS, ..row("x86_64-unknown-linux-musl", None, LinkerRoute::Zig, RunnerRoute::Native) },
    TargetRule { rustflags: ZIG_MUSL_FLAGS, ..row("aarch64-unknown-linux-musl", None, LinkerRoute::Zig, qemu("aarch64-linux-gnu")) },
    TargetRule { env: MACOS_ENV, ..row("x86_64-apple-darwin", None, LinkerRoute::Zig, NO_MACOS_RUNNER) },
    TargetRule { env: MACOS_ENV, ..row("aarch64-apple-darwin", None, LinkerRoute::Zig, NO_MACOS_RUNNER) },
    row("x86_64-pc-windows-msvc", None, MSVC, RunnerRoute::Wine),
    row("aarch64-pc-windows-msvc", None, MSVC, RunnerRoute::None { reason: "no ARM64 Windows runner here" }),
    row("i686-pc-windows-msvc", None, MSVC, RunnerRoute::Wine),
];

/// The rule for a target, not knowing the build machine's glibc: a glibc
/// floor always routes through zig. See [`rule_for_build`].
pub fn rule_for(target: &Target) -> TargetRule {
    rule_for_build(target, None)
}

/// The rule for a target on a build machine whose C library (the one its
/// cross toolchains link against) is `build_glibc`. A glibc floor below it
/// routes through zig, which links against an older glibc's symbol versions;
/// a floor at or above it needs nothing special, since a binary cannot need
/// a newer glibc than the one it was linked against. A target with no row
/// gets `LinkerRoute::Unavailable` unless it names its own linker.
pub fn rule_for_build(target: &Target, build_glibc: Option<GlibcVersion>) -> TargetRule {
    let base = RULES.iter().find(|r| r.triple == target.triple).copied().unwrap_or(UNLISTED);
    match (target.glibc_floor, build_glibc) {
        (Some(floor), Some(build)) if floor >= build => base,
        (Some(_), _) if target.libc == Some(LibcType::Glibc) => TargetRule { linker: LinkerRoute::Zig, ..base },
        _ => base,
    }
}

/// The rule of a target with no row.
const UNLISTED: TargetRule = TargetRule {
    triple: "",
    debian_std_arch: None,
    // A target outside the table builds only with a linker the user
    // names in its settings (the toolchain manager's plan honours that).
    linker: LinkerRoute::Unavailable {
        reason: "rustle-cross has no linker route for this target; set `linker` for it or build it on an agent of that platform",
    },
    runner: RunnerRoute::None { reason: "no runner known for this target" },
    rustflags: &[],
    env: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(t: &str) -> TargetRule {
        rule_for(&Target::from_triple(t).unwrap())
    }

    #[test]
    fn every_row_is_a_known_triple() {
        for r in RULES {
            Target::from_triple(r.triple).unwrap_or_else(|e| panic!("{}: {e}", r.triple));
        }
    }

    #[test]
    fn routes() {
        assert_eq!(rule("x86_64-unknown-linux-gnu").linker, LinkerRoute::Host);
        assert!(matches!(
            rule("aarch64-unknown-linux-gnu").linker,
            LinkerRoute::GnuCross { prefix: "aarch64-linux-gnu", .. }
        ));
        assert_eq!(rule("aarch64-unknown-linux-gnu").debian_std_arch, Some("arm64"));
        assert_eq!(rule("x86_64-unknown-linux-musl").linker, LinkerRoute::Zig);
        assert_eq!(rule("x86_64-unknown-linux-musl").rustflags, ZIG_MUSL_FLAGS);
        assert_eq!(rule("aarch64-apple-darwin").env, MACOS_ENV);
        assert!(matches!(rule("x86_64-pc-windows-gnu").linker, LinkerRoute::Mingw { .. }));
        assert_eq!(rule("x86_64-pc-windows-gnu").linker.dlltool().as_deref(), Some("x86_64-w64-mingw32-dlltool"));
        assert_eq!(rule("aarch64-unknown-linux-gnu").linker.dlltool(), None);
        assert_eq!(rule("x86_64-pc-windows-gnu").runner, RunnerRoute::Wine);
        assert!(matches!(rule("x86_64-pc-windows-msvc").linker, LinkerRoute::Unavailable { .. }));
    }

    #[test]
    fn glibc_floor_routes_through_zig() {
        let r = rule("aarch64-unknown-linux-gnu.2.17");
        assert_eq!(r.linker, LinkerRoute::Zig);
        assert_eq!(r.runner, RunnerRoute::Qemu { gnu_prefix: "aarch64-linux-gnu" });
    }

    #[test]
    fn glibc_floor_at_or_above_the_build_glibc_needs_no_zig() {
        let t = Target::from_triple("aarch64-unknown-linux-gnu.2.36").unwrap();
        let build = Some(GlibcVersion { major: 2, minor: 36 });
        assert!(matches!(rule_for_build(&t, build).linker, LinkerRoute::GnuCross { .. }));
        let old = Target::from_triple("aarch64-unknown-linux-gnu.2.17").unwrap();
        assert_eq!(rule_for_build(&old, build).linker, LinkerRoute::Zig);
        assert_eq!(rule_for_build(&t, None).linker, LinkerRoute::Zig, "unknown build glibc: be safe");
    }

    #[test]
    fn every_qemu_row_names_an_emulator() {
        for r in RULES {
            if let RunnerRoute::Qemu { .. } = r.runner {
                let t = Target::from_triple(r.triple).unwrap();
                assert!(t.architecture.names().and_then(|n| n.qemu).is_some(), "{}", r.triple);
            }
        }
    }

    #[test]
    fn unknown_to_table_is_unavailable() {
        assert!(matches!(rule("mips64-unknown-linux-gnuabi64").linker, LinkerRoute::Unavailable { .. }));
        assert!(matches!(rule("x86_64-unknown-linux-gnux32").linker, LinkerRoute::Unavailable { .. }));
    }
}

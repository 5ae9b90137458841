//! [`Target`]: what a target is. A parsed, classified triple (or custom
//! target-spec JSON file), with an optional glibc floor; how a user wants it
//! built lives apart, in [`TargetSettings`](crate::TargetSettings).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use target_lexicon::{self as tl, Triple};

/// Every triple rustc knows (`rustc --print target-list` of the toolchains
/// this project supports), used to reject typos and suggest the closest ones.
const KNOWN_TRIPLES: &str = include_str!("known_triples.txt");

/// The triples rustc knows, in `rustc --print target-list` order.
pub fn known_triples() -> impl Iterator<Item = &'static str> {
    KNOWN_TRIPLES.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// A CPU architecture family, as far as building and running binaries cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// x86_64 / amd64.
    X86_64,
    /// 64-bit ARM (arm64).
    Aarch64,
    /// 32-bit ARMv7 (armhf).
    Armv7,
    /// 32-bit ARM older than v7 (armv6, armv5te).
    Arm,
    /// 32-bit x86 (i586, i686).
    I686,
    /// 32- or 64-bit MIPS.
    Mips,
    /// 64-bit RISC-V.
    Riscv64,
    /// 64-bit little-endian POWER.
    PowerPc64le,
    /// IBM Z, big-endian.
    S390x,
    /// Any other architecture, by its triple name.
    Other(String),
}

/// An operating system family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OsFamily {
    /// Linux.
    Linux,
    /// macOS (Darwin).
    MacOS,
    /// Windows.
    Windows,
    /// FreeBSD.
    FreeBSD,
    /// NetBSD.
    NetBSD,
    /// OpenBSD.
    OpenBSD,
    /// Anything else (bare metal, wasm, other systems), by its triple name.
    Other(String),
}

/// The C library a target links against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LibcType {
    /// GNU libc.
    Glibc,
    /// musl libc.
    Musl,
    /// Microsoft's C runtime (MSVC or MinGW).
    Msvcrt,
}

/// Byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endianness {
    /// Little-endian.
    Little,
    /// Big-endian.
    Big,
}

/// A glibc version, used as the oldest glibc a binary may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GlibcVersion {
    /// Major version (2).
    pub major: u16,
    /// Minor version (17 in 2.17).
    pub minor: u16,
}

impl FromStr for GlibcVersion {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (major, minor) = s.split_once('.').ok_or(())?;
        Ok(Self { major: major.parse().map_err(|_| ())?, minor: minor.parse().map_err(|_| ())? })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What went wrong turning a string into a target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not a triple rustc knows.
    #[error("unknown target triple `{triple}`{}", suggestion_text(.suggestions))]
    UnknownTriple {
        /// The string given.
        triple: String,
        /// The closest known triples.
        suggestions: Vec<String>,
    },
    /// A glibc floor on a triple that has no glibc, or an unreadable version.
    #[error("invalid glibc floor in `{input}`: {reason}")]
    InvalidGlibcFloor {
        /// The string given.
        input: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A custom target-spec JSON file that cannot be read or understood.
    #[error("invalid custom target spec {}: {reason}", .path.display())]
    InvalidCustomSpec {
        /// The file.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
    },
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; run `rustle-cross targets` to list the targets this machine can build".to_owned()
    } else {
        format!("; did you mean {}?", suggestions.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))
    }
}

/// What a target is: a classified triple plus the limits its binaries must
/// meet. Two targets are the same target exactly when they are equal; the
/// per-target build settings (features, rustflags, linker) are not part of
/// it.
///
/// Built with [`Target::from_triple`], which accepts
/// - a rustc triple (`aarch64-unknown-linux-gnu`),
/// - a triple with a glibc floor (`aarch64-unknown-linux-gnu.2.17`): the
///   binary must not need a newer glibc than that,
/// - a path to a rustc target-spec JSON file (custom target).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The target's triple: the rustc triple, or the file stem of a custom spec.
    pub triple: String,
    /// CPU architecture family.
    pub architecture: Architecture,
    /// Operating system family.
    pub os_family: OsFamily,
    /// C library, where the target has one rustc names.
    pub libc: Option<LibcType>,
    /// Byte order.
    pub endianness: Endianness,
    /// Pointer width in bits (16, 32, 64).
    pub pointer_width: u8,
    /// The newest glibc the binary may require (glibc targets only).
    pub glibc_floor: Option<GlibcVersion>,
    /// The target-spec JSON file, for custom targets.
    pub custom_spec: Option<PathBuf>,
}

impl Target {
    /// Parses and classifies a target: a known triple, a triple with a glibc
    /// floor suffix (`T.2.17`), or the path of a target-spec JSON file.
    pub fn from_triple(input: &str) -> Result<Self, TargetError> {
        let input = input.trim();
        if input.ends_with(".json") {
            return Self::from_custom_spec(Path::new(input));
        }
        let (triple, floor) = split_glibc_floor(input)?;
        if !known_triples().any(|t| t == triple) {
            return Err(TargetError::UnknownTriple { triple: triple.to_owned(), suggestions: closest_triples(triple) });
        }
        let parsed = Triple::from_str(triple).map_err(|_| TargetError::UnknownTriple {
            triple: triple.to_owned(),
            suggestions: closest_triples(triple),
        })?;
        let spec = Self::classify(triple, &parsed, None);
        if let Some(floor) = floor {
            if spec.libc != Some(LibcType::Glibc) {
                return Err(TargetError::InvalidGlibcFloor {
                    input: input.to_owned(),
                    reason: format!("`{triple}` does not link glibc; a floor applies to *-linux-gnu* targets only"),
                });
            }
            return Ok(Self { glibc_floor: Some(floor), ..spec });
        }
        Ok(spec)
    }

    /// Reads a custom rustc target-spec JSON file (`llvm-target`, `arch`,
    /// `os`, `env`, `target-endian`, `target-pointer-width`).
    pub fn from_custom_spec(path: &Path) -> Result<Self, TargetError> {
        let invalid = |reason: String| TargetError::InvalidCustomSpec { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let field = |k: &str| json.get(k).and_then(serde_json::Value::as_str);
        let llvm_target = field("llvm-target").ok_or_else(|| invalid("missing `llvm-target`".into()))?;
        let name = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| invalid("file name is not UTF-8".into()))?;
        let parsed = Triple::from_str(llvm_target)
            .map_err(|e| invalid(format!("`llvm-target` {llvm_target:?} is not a triple: {e}")))?;
        let mut spec = Self::classify(name, &parsed, field("env"));
        if let Some(endian) = field("target-endian") {
            spec.endianness = if endian == "big" { Endianness::Big } else { Endianness::Little };
        }
        if let Some(width) = json.get("target-pointer-width") {
            // Older specs write it as a string, newer ones as a number.
            let width = width.as_u64().or_else(|| width.as_str().and_then(|s| s.parse().ok()));
            spec.pointer_width = width
                .and_then(|w| u8::try_from(w).ok())
                .ok_or_else(|| invalid("`target-pointer-width` is not a number".into()))?;
        }
        let canonical = path.canonicalize().map_err(|e| invalid(format!("cannot resolve path: {e}")))?;
        spec.custom_spec = Some(canonical);
        Ok(spec)
    }

    fn classify(name: &str, t: &Triple, env_override: Option<&str>) -> Self {
        let architecture = match t.architecture {
            tl::Architecture::X86_64 | tl::Architecture::X86_64h => Architecture::X86_64,
            tl::Architecture::Aarch64(_) => Architecture::Aarch64,
            tl::Architecture::Arm(arm) => {
                let n = arm.into_str();
                if n.starts_with("armv7") || n.starts_with("thumbv7") { Architecture::Armv7 } else { Architecture::Arm }
            }
            tl::Architecture::X86_32(_) => Architecture::I686,
            tl::Architecture::Mips32(_) | tl::Architecture::Mips64(_) => Architecture::Mips,
            tl::Architecture::Riscv64(_) => Architecture::Riscv64,
            tl::Architecture::Powerpc64le => Architecture::PowerPc64le,
            tl::Architecture::S390x => Architecture::S390x,
            other => Architecture::Other(other.to_string()),
        };
        let os_family = match t.operating_system {
            tl::OperatingSystem::Linux => OsFamily::Linux,
            tl::OperatingSystem::Darwin(_) | tl::OperatingSystem::MacOSX(_) => OsFamily::MacOS,
            tl::OperatingSystem::Windows => OsFamily::Windows,
            tl::OperatingSystem::Freebsd => OsFamily::FreeBSD,
            tl::OperatingSystem::Netbsd => OsFamily::NetBSD,
            tl::OperatingSystem::Openbsd => OsFamily::OpenBSD,
            other => OsFamily::Other(other.to_string()),
        };
        let env = env_override.map(str::to_owned).unwrap_or_else(|| t.environment.to_string());
        let libc = if os_family == OsFamily::Windows {
            Some(LibcType::Msvcrt)
        } else if env.starts_with("musl") {
            Some(LibcType::Musl)
        } else if env.starts_with("gnu") && os_family == OsFamily::Linux {
            Some(LibcType::Glibc)
        } else {
            None
        };
        let endianness = match t.endianness() {
            Ok(tl::Endianness::Big) => Endianness::Big,
            _ => Endianness::Little,
        };
        let pointer_width = t.pointer_width().map(|w| w.bits()).unwrap_or(64);
        Self {
            triple: name.to_owned(),
            architecture,
            os_family,
            libc,
            endianness,
            pointer_width,
            glibc_floor: None,
            custom_spec: None,
        }
    }

    /// What to pass to `cargo --target`: the triple, or the JSON file's path.
    pub fn cargo_target(&self) -> String {
        match &self.custom_spec {
            Some(path) => path.display().to_string(),
            None => self.triple.clone(),
        }
    }

    /// The triple with its glibc floor suffix, as cargo-zigbuild takes it.
    pub fn triple_with_floor(&self) -> String {
        name_with_floor(&self.triple, self.glibc_floor)
    }

    /// The suffix for executables on this target (`.exe` on Windows).
    pub fn exe_suffix(&self) -> &'static str {
        exe_suffix_of(&self.os_family)
    }

    /// `CARGO_TARGET_<TRIPLE>_...` prefix for this target.
    pub fn cargo_env_prefix(&self) -> String {
        format!("CARGO_TARGET_{}", self.triple.to_uppercase().replace(['-', '.'], "_"))
    }

    /// The `<triple>` form the `cc` crate reads in `CC_<triple>` / `AR_<triple>`.
    pub fn cc_env_suffix(&self) -> String {
        self.triple.replace('-', "_")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.triple_with_floor())
    }
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        Self::from_triple(s)
    }
}

/// The full name of a target: its triple, with `.MAJOR.MINOR` when it has a
/// glibc floor (the form `-t` and cargo-zigbuild take).
pub(crate) fn name_with_floor(triple: &str, floor: Option<GlibcVersion>) -> String {
    match floor {
        Some(floor) => format!("{triple}.{floor}"),
        None => triple.to_owned(),
    }
}

/// The suffix executables of `os` carry.
pub(crate) fn exe_suffix_of(os: &OsFamily) -> &'static str {
    if *os == OsFamily::Windows { ".exe" } else { "" }
}

/// Splits `T.2.17` into `T` and the floor. A triple never contains a dot
/// followed by digits otherwise.
fn split_glibc_floor(input: &str) -> Result<(&str, Option<GlibcVersion>), TargetError> {
    let Some((triple, version)) = input.split_once('.') else { return Ok((input, None)) };
    let floor = version.parse::<GlibcVersion>().map_err(|()| TargetError::InvalidGlibcFloor {
        input: input.to_owned(),
        reason: format!("`{version}` is not a glibc version like 2.17"),
    })?;
    Ok((triple, Some(floor)))
}

/// The known triples closest to `input` (edit distance, then shared parts).
fn closest_triples(input: &str) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = known_triples()
        .map(|known| {
            let parts_shared = input.split('-').filter(|p| known.split('-').any(|k| k == *p)).count() as f64;
            (strsim::jaro_winkler(input, known) + 0.05 * parts_shared, known)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).filter(|(score, _)| *score > 0.75).map(|(_, t)| t.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: &str) -> Target {
        Target::from_triple(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    /// (triple, arch, os, libc, endian, pointer width)
    type Row = (&'static str, Architecture, OsFamily, Option<LibcType>, Endianness, u8);

    #[rustfmt::skip]
    const CLASSIFICATION: &[Row] = &[
        ("x86_64-unknown-linux-gnu", Architecture::X86_64, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 64),
        ("x86_64-unknown-linux-musl", Architecture::X86_64, OsFamily::Linux, Some(LibcType::Musl), Endianness::Little, 64),
        ("aarch64-unknown-linux-gnu", Architecture::Aarch64, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 64),
        ("aarch64-unknown-linux-musl", Architecture::Aarch64, OsFamily::Linux, Some(LibcType::Musl), Endianness::Little, 64),
        ("armv7-unknown-linux-gnueabihf", Architecture::Armv7, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 32),
        ("armv7-unknown-linux-musleabihf", Architecture::Armv7, OsFamily::Linux, Some(LibcType::Musl), Endianness::Little, 32),
        ("arm-unknown-linux-gnueabihf", Architecture::Arm, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 32),
        ("i686-unknown-linux-gnu", Architecture::I686, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 32),
        ("i586-unknown-linux-gnu", Architecture::I686, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 32),
        ("powerpc64le-unknown-linux-gnu", Architecture::PowerPc64le, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 64),
        ("s390x-unknown-linux-gnu", Architecture::S390x, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Big, 64),
        ("riscv64gc-unknown-linux-gnu", Architecture::Riscv64, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Little, 64),
        ("mips64-unknown-linux-gnuabi64", Architecture::Mips, OsFamily::Linux, Some(LibcType::Glibc), Endianness::Big, 64),
        ("x86_64-pc-windows-gnu", Architecture::X86_64, OsFamily::Windows, Some(LibcType::Msvcrt), Endianness::Little, 64),
        ("x86_64-pc-windows-msvc", Architecture::X86_64, OsFamily::Windows, Some(LibcType::Msvcrt), Endianness::Little, 64),
        ("i686-pc-windows-msvc", Architecture::I686, OsFamily::Windows, Some(LibcType::Msvcrt), Endianness::Little, 32),
        ("aarch64-pc-windows-msvc", Architecture::Aarch64, OsFamily::Windows, Some(LibcType::Msvcrt), Endianness::Little, 64),
        ("x86_64-apple-darwin", Architecture::X86_64, OsFamily::MacOS, None, Endianness::Little, 64),
        ("aarch64-apple-darwin", Architecture::Aarch64, OsFamily::MacOS, None, Endianness::Little, 64),
        ("x86_64-unknown-freebsd", Architecture::X86_64, OsFamily::FreeBSD, None, Endianness::Little, 64),
        ("x86_64-unknown-netbsd", Architecture::X86_64, OsFamily::NetBSD, None, Endianness::Little, 64),
        ("x86_64-unknown-openbsd", Architecture::X86_64, OsFamily::OpenBSD, None, Endianness::Little, 64),
        ("aarch64-unknown-freebsd", Architecture::Aarch64, OsFamily::FreeBSD, None, Endianness::Little, 64),
        ("wasm32-unknown-unknown", Architecture::Other(String::new()), OsFamily::Other(String::new()), None, Endianness::Little, 32),
    ];

    #[test]
    fn classifies_known_triples() {
        for (triple, arch, os, libc, endian, width) in CLASSIFICATION {
            let s = spec(triple);
            assert_eq!(s.triple, *triple);
            match (arch, &s.architecture) {
                (Architecture::Other(_), Architecture::Other(n)) => assert!(!n.is_empty(), "{triple}"),
                _ => assert_eq!(&s.architecture, arch, "{triple}"),
            }
            match (os, &s.os_family) {
                (OsFamily::Other(_), OsFamily::Other(n)) => assert!(!n.is_empty(), "{triple}"),
                _ => assert_eq!(&s.os_family, os, "{triple}"),
            }
            assert_eq!(&s.libc, libc, "{triple}");
            assert_eq!(&s.endianness, endian, "{triple}");
            assert_eq!(&s.pointer_width, width, "{triple}");
        }
        assert!(CLASSIFICATION.len() >= 20);
    }

    #[test]
    fn glibc_floor_suffix() {
        let s = spec("aarch64-unknown-linux-gnu.2.17");
        assert_eq!(s.triple, "aarch64-unknown-linux-gnu");
        assert_eq!(s.glibc_floor, Some(GlibcVersion { major: 2, minor: 17 }));
        assert_eq!(s.triple_with_floor(), "aarch64-unknown-linux-gnu.2.17");
        assert_eq!(s.cargo_target(), "aarch64-unknown-linux-gnu");
    }

    #[test]
    fn glibc_floor_rejected_on_non_glibc_targets() {
        let err = Target::from_triple("x86_64-unknown-linux-musl.2.17").unwrap_err();
        assert!(matches!(err, TargetError::InvalidGlibcFloor { .. }), "{err}");
        let err = Target::from_triple("x86_64-unknown-linux-gnu.two").unwrap_err();
        assert!(err.to_string().contains("not a glibc version"), "{err}");
    }

    #[test]
    fn unknown_triple_names_it_and_suggests() {
        let err = Target::from_triple("aarch64-unknown-linux-gnux").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`aarch64-unknown-linux-gnux`"), "{text}");
        assert!(text.contains("`aarch64-unknown-linux-gnu`"), "{text}");
        let err = Target::from_triple("x86-64-linux").unwrap_err();
        assert!(matches!(err, TargetError::UnknownTriple { .. }));
        let err = Target::from_triple("").unwrap_err();
        assert!(matches!(err, TargetError::UnknownTriple { .. }));
    }

    #[test]
    fn env_names() {
        let s = spec("armv7-unknown-linux-gnueabihf");
        assert_eq!(s.cargo_env_prefix(), "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF");
        assert_eq!(s.cc_env_suffix(), "armv7_unknown_linux_gnueabihf");
        assert_eq!(spec("x86_64-pc-windows-gnu").exe_suffix(), ".exe");
        assert_eq!(s.exe_suffix(), "");
    }

    #[test]
    fn custom_target_spec_json() {
        let dir = std::env::temp_dir().join(format!("rustle-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("my-board.json");
        std::fs::write(
            &path,
            r#"{"llvm-target":"armv7-unknown-linux-gnueabihf","arch":"arm","os":"linux","env":"gnu",
                "target-endian":"little","target-pointer-width":"32"}"#,
        )
        .unwrap();
        let s = spec(path.to_str().unwrap());
        assert_eq!(s.triple, "my-board");
        assert_eq!(s.architecture, Architecture::Armv7);
        assert_eq!(s.libc, Some(LibcType::Glibc));
        assert_eq!(s.pointer_width, 32);
        assert!(s.cargo_target().ends_with("my-board.json"));

        std::fs::write(&path, "{ not json").unwrap();
        let err = Target::from_triple(path.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let missing = dir.join("absent.json");
        let err = Target::from_triple(missing.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Validation of built binaries: does the file really target what it was
//! built for? Checks the object format (ELF, PE, Mach-O), machine, bitness and
//! byte order against the [`Target`], and for ELF binaries the
//! newest `GLIBC_x.y` symbol version they need against the target's glibc
//! floor.
//!
//! Only headers and the dynamic version tables are read; any input, however
//! malformed, yields a report or an error, never a panic.

use std::fmt;

use object::read::elf::{ElfFile, FileHeader};
use object::read::macho::{FatArch, MachOFatFile32, MachOFatFile64};
use object::{FileKind, Object, ObjectKind, ReadRef};
use rustle_targets::{Architecture, Endianness, GlibcVersion, LibcType, OsFamily, Target};
use serde::{Deserialize, Serialize};

/// An executable or library file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryFormat {
    /// ELF (Linux, the BSDs).
    Elf,
    /// PE / PE32+ (Windows).
    Pe,
    /// Mach-O (macOS), thin or one slice of a universal binary.
    MachO,
}

impl fmt::Display for BinaryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Elf => "ELF",
            Self::Pe => "PE",
            Self::MachO => "Mach-O",
        })
    }
}

/// What [`validate_binary`] found in a binary that matches its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// The object format.
    pub format: BinaryFormat,
    /// The machine, in the names this module uses: `x86_64`, `aarch64`,
    /// `arm`, `i386`, `ppc64le`, `s390x`, `riscv64`, `mips64`, ...
    pub machine: String,
    /// 32 or 64.
    pub bits: u8,
    /// Byte order.
    pub endianness: Endianness,
    /// The newest glibc symbol version the binary needs (`GLIBC_2.34` gives
    /// 2.34), for dynamically linked ELF binaries that use glibc.
    pub max_glibc: Option<GlibcVersion>,
    /// One imported symbol that needs `max_glibc`, as `name@GLIBC_x.y`.
    pub needed_glibc_symbol: Option<String>,
}

/// Why a binary does not fit its target (or could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Truncated or garbage data, or a header `object` rejects.
    #[error("binary for {target} cannot be read: {reason}")]
    Unreadable {
        /// The target triple.
        target: String,
        /// What is wrong with the data.
        reason: String,
    },
    /// A readable file that is not a linked binary (an archive, an object
    /// file, a format this module does not check).
    #[error("binary for {target} is {found}, not a linked executable or shared library")]
    NotABinary {
        /// The target triple.
        target: String,
        /// What the file is.
        found: String,
    },
    /// The target has no format this module can check (wasm, UEFI, ...).
    #[error("binary for {target} cannot be checked: {reason}")]
    Unsupported {
        /// The target triple.
        target: String,
        /// Why.
        reason: String,
    },
    /// ELF where PE was expected, and so on.
    #[error("binary for {target} is {} {found} file, expected {expected}", article(.found))]
    WrongFormat {
        /// The target triple.
        target: String,
        /// The format the target uses.
        expected: BinaryFormat,
        /// The format found.
        found: BinaryFormat,
    },
    /// Built for another CPU.
    #[error("binary for {target} is {} {format} for {found}, expected {expected}", article(.format))]
    WrongArchitecture {
        /// The target triple.
        target: String,
        /// The format found (correct for the target).
        format: BinaryFormat,
        /// The machine the target needs.
        expected: String,
        /// The machine found.
        found: String,
    },
    /// 32-bit where 64-bit was expected, or the reverse.
    #[error("binary for {target} is {found}-bit, expected {expected}-bit")]
    WrongBitness {
        /// The target triple.
        target: String,
        /// The target's pointer width.
        expected: u8,
        /// The binary's class.
        found: u8,
    },
    /// Big-endian where little-endian was expected, or the reverse.
    #[error("binary for {target} is {}, expected {}", endian_name(*.found), endian_name(*.expected))]
    WrongEndianness {
        /// The target triple.
        target: String,
        /// The target's byte order.
        expected: Endianness,
        /// The binary's byte order.
        found: Endianness,
    },
    /// The binary needs a newer glibc than the target's floor allows.
    #[error(
        "binary for {target}.{floor} needs glibc {found} (symbol {symbol}) but the target's glibc floor is {floor}: \
         it would not start on a system with glibc {floor}. Build it for the glibc-floor target `{target}.{floor}` \
         through zig (cargo-zigbuild), which links against glibc {floor}'s symbol versions; a plain cross gcc \
         links against the newer glibc of the build machine"
    )]
    GlibcTooNew {
        /// The target triple (without the floor suffix).
        target: String,
        /// The target's floor.
        floor: GlibcVersion,
        /// The newest version the binary needs.
        found: GlibcVersion,
        /// An imported symbol that needs it (`name@GLIBC_x.y`).
        symbol: String,
    },
}

fn article(format: &BinaryFormat) -> &'static str {
    match format {
        BinaryFormat::Elf => "an",
        BinaryFormat::Pe | BinaryFormat::MachO => "a",
    }
}

fn endian_name(e: Endianness) -> &'static str {
    match e {
        Endianness::Little => "little-endian",
        Endianness::Big => "big-endian",
    }
}

/// Checks that `data` (a whole binary file) is a linked executable or shared
/// library for `target`: its format, machine, bitness, byte order and, for
/// glibc targets with a floor, the newest glibc symbol version it needs.
///
/// A universal (fat) Mach-O passes when one of its slices fits the target;
/// the report describes that slice.
pub fn validate_binary(data: &[u8], target: &Target) -> Result<BinaryReport, ValidationError> {
    let triple = target.triple.as_str();
    let unreadable = |reason: String| ValidationError::Unreadable { target: triple.to_owned(), reason };
    let expected = expected_format(target)?;
    let kind = FileKind::parse(data).map_err(|e| unreadable(format!("{e} (first bytes: {})", hex_prefix(data))))?;
    let slice = match kind {
        FileKind::Elf32 | FileKind::Elf64 => Slice { format: BinaryFormat::Elf, data },
        FileKind::Pe32 | FileKind::Pe64 => Slice { format: BinaryFormat::Pe, data },
        FileKind::MachO32 | FileKind::MachO64 => Slice { format: BinaryFormat::MachO, data },
        FileKind::MachOFat32 | FileKind::MachOFat64 => {
            if expected != BinaryFormat::MachO {
                return Err(wrong_format(triple, expected, BinaryFormat::MachO));
            }
            return validate_fat(data, kind, target);
        }
        other => {
            return Err(ValidationError::NotABinary { target: triple.to_owned(), found: describe_kind(other) });
        }
    };
    if slice.format != expected {
        return Err(wrong_format(triple, expected, slice.format));
    }
    validate_slice(slice, target)
}

struct Slice<'data> {
    format: BinaryFormat,
    data: &'data [u8],
}

fn wrong_format(target: &str, expected: BinaryFormat, found: BinaryFormat) -> ValidationError {
    ValidationError::WrongFormat { target: target.to_owned(), expected, found }
}

fn expected_format(target: &Target) -> Result<BinaryFormat, ValidationError> {
    match &target.os_family {
        OsFamily::Linux | OsFamily::FreeBSD | OsFamily::NetBSD | OsFamily::OpenBSD => Ok(BinaryFormat::Elf),
        OsFamily::Windows => Ok(BinaryFormat::Pe),
        OsFamily::MacOS => Ok(BinaryFormat::MachO),
        OsFamily::Other(os) => match &target.architecture {
            Architecture::Other(arch) if arch.starts_with("wasm") => Err(ValidationError::Unsupported {
                target: target.triple.clone(),
                reason: format!("{arch} modules have no ELF/PE/Mach-O header to check"),
            }),
            // Bare-metal and other ELF systems.
            _ if os.contains("uefi") => Ok(BinaryFormat::Pe),
            _ => Ok(BinaryFormat::Elf),
        },
    }
}

fn describe_kind(kind: FileKind) -> String {
    match kind {
        FileKind::Archive => "a static library (ar archive)".to_owned(),
        FileKind::Coff | FileKind::CoffBig | FileKind::CoffImport => "a COFF object file".to_owned(),
        FileKind::DyldCache => "a dyld shared cache".to_owned(),
        FileKind::Xcoff32 | FileKind::Xcoff64 => "an XCOFF (AIX) file".to_owned(),
        other => format!("an unsupported file kind ({other:?})"),
    }
}

fn hex_prefix(data: &[u8]) -> String {
    if data.is_empty() {
        return "none, the file is empty".to_owned();
    }
    data.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn validate_fat(data: &[u8], kind: FileKind, target: &Target) -> Result<BinaryReport, ValidationError> {
    let triple = target.triple.as_str();
    let unreadable = |e: object::Error| ValidationError::Unreadable {
        target: triple.to_owned(),
        reason: format!("universal Mach-O: {e}"),
    };
    let slices: Vec<&[u8]> = if kind == FileKind::MachOFat32 {
        let fat = MachOFatFile32::parse(data).map_err(unreadable)?;
        fat.arches().iter().map(|a| a.data(data)).collect::<Result<_, _>>().map_err(unreadable)?
    } else {
        let fat = MachOFatFile64::parse(data).map_err(unreadable)?;
        fat.arches().iter().map(|a| a.data(data)).collect::<Result<_, _>>().map_err(unreadable)?
    };
    let mut first_err = None;
    for slice in slices {
        match validate_slice(Slice { format: BinaryFormat::MachO, data: slice }, target) {
            Ok(report) => return Ok(report),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| ValidationError::Unreadable {
        target: triple.to_owned(),
        reason: "universal Mach-O with no slices".to_owned(),
    }))
}

fn validate_slice(slice: Slice<'_>, target: &Target) -> Result<BinaryReport, ValidationError> {
    let triple = target.triple.as_str();
    let file = object::File::parse(slice.data).map_err(|e| ValidationError::Unreadable {
        target: triple.to_owned(),
        reason: format!("{} header: {e}", slice.format),
    })?;
    if matches!(file.kind(), ObjectKind::Relocatable | ObjectKind::Core) {
        let what = if file.kind() == ObjectKind::Core { "a core dump" } else { "a relocatable object file" };
        return Err(ValidationError::NotABinary {
            target: triple.to_owned(),
            found: format!("{} {what}", slice.format),
        });
    }
    let endianness = if file.is_little_endian() { Endianness::Little } else { Endianness::Big };
    let bits = if file.is_64() { 64 } else { 32 };
    let arch = file.architecture();
    let machine = machine_name(arch, endianness);
    if let Some(expected) = expected_machine(&target.architecture)
        && !expected.accepts(arch)
    {
        return Err(ValidationError::WrongArchitecture {
            target: triple.to_owned(),
            format: slice.format,
            expected: expected.name(target.endianness),
            found: machine,
        });
    }
    if bits != target.pointer_width {
        return Err(ValidationError::WrongBitness {
            target: triple.to_owned(),
            expected: target.pointer_width,
            found: bits,
        });
    }
    if endianness != target.endianness {
        return Err(ValidationError::WrongEndianness {
            target: triple.to_owned(),
            expected: target.endianness,
            found: endianness,
        });
    }
    let glibc = if slice.format == BinaryFormat::Elf {
        glibc_needs(slice.data).map_err(|e| ValidationError::Unreadable {
            target: triple.to_owned(),
            reason: format!("ELF symbol versions: {e}"),
        })?
    } else {
        None
    };
    let (max_glibc, needed_glibc_symbol) = match glibc {
        Some(GlibcNeed { version, symbol }) => (Some(version), Some(symbol)),
        None => (None, None),
    };
    if let (Some(floor), Some(found)) = (target.glibc_floor, max_glibc)
        && target.libc == Some(LibcType::Glibc)
        && found > floor
    {
        return Err(ValidationError::GlibcTooNew {
            target: triple.to_owned(),
            floor,
            found,
            symbol: needed_glibc_symbol.clone().unwrap_or_else(|| format!("GLIBC_{found}")),
        });
    }
    Ok(BinaryReport { format: slice.format, machine, bits, endianness, max_glibc, needed_glibc_symbol })
}

/// The machine name this module reports for an `object` architecture.
fn machine_name(arch: object::Architecture, endianness: Endianness) -> String {
    use object::Architecture as A;
    match arch {
        A::X86_64 => "x86_64",
        A::X86_64_X32 => "x86_64 (x32)",
        A::I386 => "i386",
        A::Aarch64 => "aarch64",
        A::Aarch64_Ilp32 => "aarch64 (ilp32)",
        A::Arm => "arm",
        A::PowerPc => "ppc",
        A::PowerPc64 if endianness == Endianness::Little => "ppc64le",
        A::PowerPc64 => "ppc64",
        A::S390x => "s390x",
        A::Riscv32 => "riscv32",
        A::Riscv64 => "riscv64",
        A::Mips => "mips",
        A::Mips64 => "mips64",
        A::Mips64_N32 => "mips64 (n32)",
        A::LoongArch64 => "loongarch64",
        A::Sparc64 => "sparc64",
        A::Unknown => "unknown",
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_owned()
}

/// The machines a target architecture accepts.
struct ExpectedMachine {
    name: &'static str,
    accepted: &'static [object::Architecture],
}

impl ExpectedMachine {
    fn accepts(&self, arch: object::Architecture) -> bool {
        self.accepted.contains(&arch)
    }

    fn name(&self, endianness: Endianness) -> String {
        if self.name == "ppc64" && endianness == Endianness::Little {
            "ppc64le".to_owned()
        } else {
            self.name.to_owned()
        }
    }
}

/// What a target architecture accepts; `None` when this module does not know
/// the architecture (it then checks format, bitness and byte order only).
fn expected_machine(arch: &Architecture) -> Option<ExpectedMachine> {
    use object::Architecture as A;
    // The name from the one architecture table; what `object` calls the
    // machines it accepts is this module's own business.
    let named = |accepted: &'static [A]| arch.names().map(|names| (names.machine, accepted));
    let (name, accepted): (&'static str, &'static [A]) = match arch {
        // x32 and ILP32 variants are the same machine with 32-bit pointers;
        // the bitness check tells them apart.
        Architecture::X86_64 => named(&[A::X86_64, A::X86_64_X32])?,
        Architecture::Aarch64 => named(&[A::Aarch64, A::Aarch64_Ilp32])?,
        Architecture::Armv7 | Architecture::Arm => named(&[A::Arm])?,
        Architecture::I686 => named(&[A::I386])?,
        Architecture::Mips => named(&[A::Mips, A::Mips64, A::Mips64_N32])?,
        Architecture::Riscv64 => named(&[A::Riscv64])?,
        Architecture::PowerPc64le => named(&[A::PowerPc64])?,
        Architecture::S390x => named(&[A::S390x])?,
        Architecture::Other(name) => match name.as_str() {
            "riscv32" | "riscv32i" | "riscv32imac" | "riscv32imc" | "riscv32gc" => ("riscv32", &[A::Riscv32]),
            "powerpc" => ("ppc", &[A::PowerPc]),
            "powerpc64" => ("ppc64", &[A::PowerPc64]),
            "sparc64" => ("sparc64", &[A::Sparc64]),
            "loongarch64" => ("loongarch64", &[A::LoongArch64]),
            "thumbv6m" | "thumbv7em" | "thumbv7m" | "thumbv8m.main" | "thumbv8m.base" => ("arm", &[A::Arm]),
            _ => return None,
        },
    };
    Some(ExpectedMachine { name, accepted })
}

/// The newest glibc version an ELF binary needs and one symbol needing it.
struct GlibcNeed {
    version: GlibcVersion,
    symbol: String,
}

fn glibc_needs(data: &[u8]) -> object::Result<Option<GlibcNeed>> {
    match FileKind::parse(data)? {
        FileKind::Elf32 => glibc_needs_elf::<object::elf::FileHeader32<object::Endianness>>(data),
        FileKind::Elf64 => glibc_needs_elf::<object::elf::FileHeader64<object::Endianness>>(data),
        _ => Ok(None),
    }
}

/// Reads `.gnu.version_r` (verneed): the highest `GLIBC_x.y` requirement,
/// then an undefined dynamic symbol bound to that version (via
/// `.gnu.version`), for the report and the error message.
fn glibc_needs_elf<Elf: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> object::Result<Option<GlibcNeed>> {
    let elf = ElfFile::<Elf>::parse(data)?;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let Some((mut verneeds, link)) = sections.gnu_verneed(endian, data)? else { return Ok(None) };
    let strings = sections.strings(endian, data, link)?;
    let mut best: Option<(GlibcVersion, &[u8])> = None;
    while let Some((_, mut vernauxs)) = verneeds.next()? {
        while let Some(vernaux) = vernauxs.next()? {
            let name = vernaux.name(endian, strings)?;
            if let Some(version) = parse_glibc_version(name)
                && best.is_none_or(|(b, _)| version > b)
            {
                best = Some((version, name));
            }
        }
    }
    let Some((version, version_name)) = best else { return Ok(None) };
    let symbol = needing_symbol(&elf, data, version_name)
        .unwrap_or_else(|| format!("GLIBC_{}", String::from_utf8_lossy(&version_name["GLIBC_".len()..])));
    Ok(Some(GlibcNeed { version, symbol }))
}

/// The first undefined dynamic symbol bound to `version_name`, as
/// `name@GLIBC_x.y`. Best effort: `None` on any inconsistency.
fn needing_symbol<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    elf: &ElfFile<'data, Elf, R>,
    data: R,
    version_name: &[u8],
) -> Option<String> {
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let versions = sections.versions(endian, data).ok()??;
    let symbols = sections.symbols(endian, data, object::elf::SHT_DYNSYM).ok()?;
    for (index, symbol) in symbols.enumerate() {
        use object::read::elf::Sym;
        if !symbol.is_undefined(endian) {
            continue;
        }
        let Ok(Some(version)) = versions.version(versions.version_index(endian, index)) else { continue };
        if version.name() == version_name {
            let name = symbol.name(endian, symbols.strings()).ok()?;
            return Some(format!("{}@{}", String::from_utf8_lossy(name), String::from_utf8_lossy(version_name)));
        }
    }
    None
}

/// `GLIBC_2.34` → 2.34, `GLIBC_2.2.5` → 2.2; `GLIBC_PRIVATE` and others → None.
fn parse_glibc_version(name: &[u8]) -> Option<GlibcVersion> {
    let rest = std::str::from_utf8(name.strip_prefix(b"GLIBC_")?).ok()?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(GlibcVersion { major, minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: &str) -> Target {
        Target::from_triple(t).unwrap()
    }

    #[test]
    fn glibc_version_names() {
        assert_eq!(parse_glibc_version(b"GLIBC_2.34"), Some(GlibcVersion { major: 2, minor: 34 }));
        assert_eq!(parse_glibc_version(b"GLIBC_2.2.5"), Some(GlibcVersion { major: 2, minor: 2 }));
        assert_eq!(parse_glibc_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(parse_glibc_version(b"GCC_3.0"), None);
        assert_eq!(parse_glibc_version(b"GLIBC_2"), None);
    }

    #[test]
    fn garbage_and_empty_input_are_errors() {
        let t = spec("x86_64-unknown-linux-gnu");
        for data in [&b""[..], b"\x7fEL", b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"hello world, not a binary"] {
            let err = validate_binary(data, &t).unwrap_err();
            assert!(err.to_string().contains("x86_64-unknown-linux-gnu"), "{err}");
        }
        let err = validate_binary(b"", &t).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn static_library_is_not_a_binary() {
        let err = validate_binary(
            b"!<arch>\nlibfoo.o/       0           0     0     644     0         `\n",
            &spec("x86_64-unknown-linux-gnu"),
        )
        .unwrap_err();
        assert!(matches!(err, ValidationError::NotABinary { .. }), "{err}");
        assert!(err.to_string().contains("static library"), "{err}");
    }

    #[test]
    fn wasm_is_unsupported() {
        let err = validate_binary(b"\0asm\x01\0\0\0", &spec("wasm32-unknown-unknown")).unwrap_err();
        assert!(matches!(err, ValidationError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn messages_name_expected_found_and_target() {
        let err = ValidationError::WrongArchitecture {
            target: "aarch64-unknown-linux-gnu".into(),
            format: BinaryFormat::Elf,
            expected: "aarch64".into(),
            found: "x86_64".into(),
        };
        assert_eq!(err.to_string(), "binary for aarch64-unknown-linux-gnu is an ELF for x86_64, expected aarch64");
        let err = ValidationError::WrongEndianness {
            target: "s390x-unknown-linux-gnu".into(),
            expected: Endianness::Big,
            found: Endianness::Little,
        };
        assert_eq!(err.to_string(), "binary for s390x-unknown-linux-gnu is little-endian, expected big-endian");
    }
}

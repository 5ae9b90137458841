//! Validation of built binaries: does the file really target what it was
//! built for? Checks the object format (ELF, PE, Mach-O), machine, bitness and
//! byte order against the [`Target`], and for ELF binaries the
//! newest `GLIBC_x.y` symbol version they need against the target's glibc
//! floor. It also lists the shared libraries the binary needs (ELF
//! `DT_NEEDED`, a PE's imported and delay-loaded DLLs, a Mach-O's dylib
//! load commands) and which of them are outside the target's base system
//! (the [`BASE_SYSTEMS`](rustle_targets::BASE_SYSTEMS) table);
//! [`require_base_system_only`] makes those a failure for builds that must
//! be self-contained.
//!
//! Only headers, the dynamic section, import tables, load commands and the
//! dynamic version tables are read; any input, however malformed, yields a
//! report or an error, never a panic.

use std::collections::BTreeSet;
use std::fmt;

use object::read::elf::{Dyn, ElfFile, FileHeader};
use object::read::macho::{FatArch, MachHeader, MachOFatFile32, MachOFatFile64, MachOFile};
use object::read::pe::{ImageNtHeaders, PeFile};
use object::{FileKind, LittleEndian as LE, Object, ObjectKind, ReadRef};
use rustle_targets::{Architecture, Endianness, GlibcVersion, LibcType, OsFamily, Target, base_system_of};
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
    /// The shared libraries the binary needs, as it names them, in its
    /// order: ELF `DT_NEEDED` sonames (`libc.so.6`), PE DLL names, imported
    /// or delay-loaded (`KERNEL32.dll`), Mach-O dylib install names
    /// (`/usr/lib/libSystem.B.dylib`; `LC_LOAD_DYLIB`, `LC_LOAD_WEAK_DYLIB`,
    /// `LC_REEXPORT_DYLIB` and the lazy and upward kinds). Empty for a
    /// static binary.
    #[serde(default)]
    pub needed_libraries: Vec<String>,
    /// Those of `needed_libraries` outside the target's base system: what a
    /// host must have installed besides the OS for the binary to start.
    /// All of them when rustle-cross knows no base system for the target.
    #[serde(default)]
    pub outside_base_system: Vec<String>,
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
    /// A build that must be self-contained made a binary needing shared
    /// libraries its target's base system lacks.
    #[error(
        "binary for {target} needs {}, outside the base system of its hosts, and the build must be self-contained \
         (--self-contained, self_contained = true): link {} statically (the -sys crate's static feature, \
         e.g. `libz-sys/static`, or c_libraries = \"static\"), or build without --self-contained{}",
        .libraries.join(", "),
        if .libraries.len() == 1 { "it" } else { "them" },
        if *.base_system_known { "" } else { " (rustle-cross knows no base system for this target, so every shared library counts)" }
    )]
    OutsideBaseSystem {
        /// The target's full name.
        target: String,
        /// The libraries outside its base system, as the binary names them.
        libraries: Vec<String>,
        /// Whether the base-system table has the target's OS and C
        /// library (else every library counts as outside).
        base_system_known: bool,
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
    let needed_libraries = needed_libraries(&file).map_err(|e| ValidationError::Unreadable {
        target: triple.to_owned(),
        reason: format!("{} needed libraries: {e}", slice.format),
    })?;
    let base_system = base_system_of(target);
    let outside_base_system =
        needed_libraries.iter().filter(|lib| base_system.is_none_or(|base| !base.includes(lib))).cloned().collect();
    Ok(BinaryReport {
        format: slice.format,
        machine,
        bits,
        endianness,
        max_glibc,
        needed_glibc_symbol,
        needed_libraries,
        outside_base_system,
    })
}

/// Fails when `report` (of a binary for `target`) names libraries outside
/// the target's base system: the check of a build that must be
/// self-contained (`--self-contained`, `self_contained = true`).
pub fn require_base_system_only(report: &BinaryReport, target: &Target) -> Result<(), ValidationError> {
    if report.outside_base_system.is_empty() {
        return Ok(());
    }
    Err(ValidationError::OutsideBaseSystem {
        target: target.triple_with_floor(),
        libraries: report.outside_base_system.clone(),
        base_system_known: base_system_of(target).is_some(),
    })
}

/// More needed libraries than any real binary has: a table that says so
/// is corrupt (and would otherwise be read to the end of the file).
const MAX_NEEDED_LIBRARIES: usize = 4096;

/// Why the needed libraries cannot be read.
#[derive(Debug)]
enum NeededLibrariesError {
    /// A table `object` rejects.
    Object(object::Error),
    /// More than [`MAX_NEEDED_LIBRARIES`].
    TooMany,
}

impl From<object::Error> for NeededLibrariesError {
    fn from(error: object::Error) -> Self {
        Self::Object(error)
    }
}

impl fmt::Display for NeededLibrariesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(error) => error.fmt(f),
            Self::TooMany => write!(f, "more than {MAX_NEEDED_LIBRARIES} libraries, more than any binary has"),
        }
    }
}

/// The shared libraries `file` needs, in its order, each once.
fn needed_libraries(file: &object::File<'_>) -> Result<Vec<String>, NeededLibrariesError> {
    let mut needed = NeededLibraries::default();
    match file {
        object::File::Elf32(elf) => elf_needed(elf, &mut needed)?,
        object::File::Elf64(elf) => elf_needed(elf, &mut needed)?,
        object::File::Pe32(pe) => pe_needed(pe, &mut needed)?,
        object::File::Pe64(pe) => pe_needed(pe, &mut needed)?,
        object::File::MachO32(macho) => macho_needed(macho, &mut needed)?,
        object::File::MachO64(macho) => macho_needed(macho, &mut needed)?,
        _ => {}
    }
    Ok(needed.names)
}

/// Library names in the order first seen, without repeats, capped at
/// [`MAX_NEEDED_LIBRARIES`].
#[derive(Default)]
struct NeededLibraries {
    names: Vec<String>,
    seen: BTreeSet<String>,
}

impl NeededLibraries {
    fn add(&mut self, name: &[u8]) -> Result<(), NeededLibrariesError> {
        let name = String::from_utf8_lossy(name).into_owned();
        if self.seen.insert(name.clone()) {
            if self.names.len() == MAX_NEEDED_LIBRARIES {
                return Err(NeededLibrariesError::TooMany);
            }
            self.names.push(name);
        }
        Ok(())
    }
}

/// `DT_NEEDED` entries of the dynamic section, resolved in its string table.
fn elf_needed<'data, Elf: FileHeader<Endian = object::Endianness>>(
    elf: &ElfFile<'data, Elf>,
    needed: &mut NeededLibraries,
) -> Result<(), NeededLibrariesError> {
    let endian = elf.endian();
    let data = elf.data();
    let sections = elf.elf_section_table();
    let Some((entries, link)) = sections.dynamic(endian, data)? else { return Ok(()) };
    let strings = sections.strings(endian, data, link)?;
    for entry in entries {
        match entry.tag32(endian) {
            Some(object::elf::DT_NULL) => break,
            Some(object::elf::DT_NEEDED) => needed.add(entry.string(endian, strings)?)?,
            _ => {}
        }
    }
    Ok(())
}

/// The DLLs of the import table, then of the delay-load import table.
fn pe_needed<'data, Pe: ImageNtHeaders>(
    pe: &PeFile<'data, Pe>,
    needed: &mut NeededLibraries,
) -> Result<(), NeededLibrariesError> {
    if let Some(imports) = pe.import_table()? {
        let mut descriptors = imports.descriptors()?;
        while let Some(descriptor) = descriptors.next()? {
            needed.add(imports.name(descriptor.name.get(LE))?)?;
        }
    }
    let sections = pe.section_table();
    if let Some(delayed) = pe.data_directories().delay_load_import_table(pe.data(), &sections)? {
        let mut descriptors = delayed.descriptors()?;
        while let Some(descriptor) = descriptors.next()? {
            needed.add(delayed.name(descriptor.dll_name_rva.get(LE))?)?;
        }
    }
    Ok(())
}

/// The install names of the dylib load commands (`LC_LOAD_DYLIB`,
/// `LC_LOAD_WEAK_DYLIB`, `LC_REEXPORT_DYLIB`, `LC_LAZY_LOAD_DYLIB`,
/// `LC_LOAD_UPWARD_DYLIB`; not the binary's own `LC_ID_DYLIB`).
fn macho_needed<'data, Mach: MachHeader<Endian = object::Endianness>>(
    macho: &MachOFile<'data, Mach>,
    needed: &mut NeededLibraries,
) -> Result<(), NeededLibrariesError> {
    let endian = macho.endian();
    let mut commands = macho.macho_load_commands()?;
    while let Some(command) = commands.next()? {
        if let Some(dylib) = command.dylib()? {
            needed.add(command.string(endian, dylib.dylib.name)?)?;
        }
    }
    Ok(())
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

    /// A dynamically linked binary of this machine (Debian's coreutils `ls`
    /// links libselinux, which is not part of glibc's base system).
    fn system_ls() -> Vec<u8> {
        std::fs::read("/bin/ls").expect("/bin/ls is this Debian build host's own binary")
    }

    #[test]
    fn needed_libraries_of_a_real_elf_are_listed_and_classified() {
        let report = validate_binary(&system_ls(), &spec("x86_64-unknown-linux-gnu")).unwrap();
        assert!(report.needed_libraries.iter().any(|l| l == "libc.so.6"), "{report:?}");
        assert!(report.needed_libraries.iter().any(|l| l == "libselinux.so.1"), "{report:?}");
        assert_eq!(report.outside_base_system, ["libselinux.so.1"], "{report:?}");
        let err = require_base_system_only(&report, &spec("x86_64-unknown-linux-gnu")).unwrap_err();
        assert!(
            matches!(&err, ValidationError::OutsideBaseSystem { libraries, .. } if libraries == &["libselinux.so.1"])
        );
        let text = err.to_string();
        for needle in ["x86_64-unknown-linux-gnu", "libselinux.so.1", "--self-contained", "statically", "c_libraries"] {
            assert!(text.contains(needle), "missing {needle:?} in: {text}");
        }
        // The report of a cache entry written before this field parses.
        let mut old = serde_json::to_value(&report).unwrap();
        old.as_object_mut().unwrap().retain(|k, _| k != "needed_libraries" && k != "outside_base_system");
        let old: BinaryReport = serde_json::from_value(old).unwrap();
        assert!(old.needed_libraries.is_empty());
    }

    #[test]
    fn a_binary_needing_only_the_base_system_passes_the_self_contained_check() {
        // This test binary: Rust std on x86_64 glibc needs libc, libgcc_s
        // and the loader at most.
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let target = spec("x86_64-unknown-linux-gnu");
        let report = validate_binary(&data, &target).unwrap();
        assert!(report.needed_libraries.iter().any(|l| l == "libc.so.6"), "{report:?}");
        assert_eq!(report.outside_base_system, Vec::<String>::new(), "{report:?}");
        require_base_system_only(&report, &target).unwrap();
    }

    #[test]
    fn without_a_base_system_every_library_is_outside() {
        let freebsd = spec("x86_64-unknown-freebsd");
        let report = validate_binary(&system_ls(), &freebsd).unwrap();
        assert_eq!(report.outside_base_system, report.needed_libraries);
        let err = require_base_system_only(&report, &freebsd).unwrap_err();
        assert!(err.to_string().contains("knows no base system"), "{err}");
    }

    /// Corrupting the dynamic section and its string table (and cutting the
    /// file inside them) gives reports or errors naming the target, never a
    /// panic.
    #[test]
    fn a_corrupt_dynamic_section_never_panics() {
        use object::ObjectSection;
        let data = system_ls();
        let target = spec("x86_64-unknown-linux-gnu");
        let file = object::File::parse(&*data).unwrap();
        let ranges: Vec<(usize, usize)> = [".dynamic", ".dynstr"]
            .iter()
            .map(|name| {
                let (offset, size) = file.section_by_name(name).unwrap().file_range().unwrap();
                (offset as usize, size as usize)
            })
            .collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let unreadable_tables = std::cell::Cell::new(0);
        let check = |bytes: &[u8]| {
            if let Err(e) = validate_binary(bytes, &target) {
                assert!(e.to_string().contains("x86_64-unknown-linux-gnu"), "{e}");
                if e.to_string().contains("needed libraries") {
                    unreadable_tables.set(unreadable_tables.get() + 1);
                }
            }
        };
        for round in 0..4000 {
            let mut corrupt = data.clone();
            for _ in 0..1 + round % 3 {
                let (offset, size) = ranges[(next() % 2) as usize];
                let at = offset + (next() % size as u64) as usize;
                corrupt[at] = next() as u8;
            }
            check(&corrupt);
        }
        for &(offset, size) in &ranges {
            for len in (offset..offset + size).step_by(7) {
                check(&data[..len]);
            }
        }
        assert!(unreadable_tables.get() > 0, "no corruption reached the dynamic section's reader");
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

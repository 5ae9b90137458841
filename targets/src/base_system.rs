//! [`BASE_SYSTEMS`]: the one table of which shared libraries every system
//! of an OS and C library family has, so a binary needing only them runs
//! there without extra packages. Validation reads it to tell a binary's
//! needed libraries apart; nothing else spells these names.

use crate::spec::{LibcType, OsFamily, Target};

/// How a [`BaseSystem`]'s library names compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameCase {
    /// Exactly (ELF sonames, Mach-O install names).
    Sensitive,
    /// ASCII case ignored (Windows DLL names: `KERNEL32.dll` is `kernel32.dll`).
    Insensitive,
}

/// The libraries one OS / C library family ships in every installation.
#[derive(Debug, Clone)]
pub struct BaseSystem {
    /// The OS family.
    pub os: OsFamily,
    /// The C library; `None` for a family with one (Windows, macOS).
    pub libc: Option<LibcType>,
    /// How names compare.
    pub case: NameCase,
    /// The libraries, as patterns of the name a binary records (an ELF
    /// `DT_NEEDED` soname, a PE's DLL name, a Mach-O install path), in
    /// which `*` stands for any run of characters.
    pub libraries: &'static [&'static str],
}

impl BaseSystem {
    /// Whether `library` (a name as the binary records it) is part of this
    /// base system.
    pub fn includes(&self, library: &str) -> bool {
        self.libraries.iter().any(|pattern| matches_pattern(pattern, library, self.case))
    }
}

/// glibc's own libraries (the `libc6` package), the loader of each
/// architecture, the kernel's vDSO, and libgcc_s (which every glibc system
/// has: glibc itself loads it for unwinding).
const GLIBC: &[&str] = &[
    "libc.so.*",
    "libm.so.*",
    "libmvec.so.*",
    "libdl.so.*",
    "libpthread.so.*",
    "librt.so.*",
    "libutil.so.*",
    "libresolv.so.*",
    "libanl.so.*",
    "libgcc_s.so.*",
    // ld-linux.so.2 (i386), ld-linux-x86-64.so.2, ld-linux-aarch64.so.1,
    // ld-linux-armhf.so.3, ld-linux-riscv64-lp64d.so.1, ...
    "ld-linux*.so.*",
    // ld64.so.2 (ppc64le), ld64.so.1 (s390x).
    "ld64.so.*",
    "linux-vdso.so.*",
    "linux-vdso64.so.*",
    "linux-gate.so.*",
];

/// musl is one library: libc, the loader and libm/libpthread/libdl/librt
/// in one file (`libc.so` when linked, `ld-musl-ARCH.so.1` installed,
/// `libc.musl-ARCH.so.1` on Alpine).
const MUSL: &[&str] = &["libc.so", "libc.musl-*.so.*", "ld-musl-*.so.*"];

/// The DLLs of every Windows installation (compared ignoring case),
/// including the Universal CRT's API sets. Not the Visual C++
/// redistributable (`vcruntime140.dll`, `msvcp140.dll`): a fresh Windows
/// may lack it.
const WINDOWS: &[&str] = &[
    "kernel32.dll",
    "kernelbase.dll",
    "ntdll.dll",
    "advapi32.dll",
    "ws2_32.dll",
    "wsock32.dll",
    "mswsock.dll",
    "userenv.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "crypt32.dll",
    "ncrypt.dll",
    "secur32.dll",
    "sspicli.dll",
    "ole32.dll",
    "oleaut32.dll",
    "combase.dll",
    "shell32.dll",
    "shlwapi.dll",
    "user32.dll",
    "gdi32.dll",
    "comctl32.dll",
    "comdlg32.dll",
    "imm32.dll",
    "msvcrt.dll",
    "ucrtbase.dll",
    "rpcrt4.dll",
    "iphlpapi.dll",
    "dnsapi.dll",
    "netapi32.dll",
    "winmm.dll",
    "version.dll",
    "dbghelp.dll",
    "psapi.dll",
    "powrprof.dll",
    "setupapi.dll",
    "winhttp.dll",
    "wininet.dll",
    "normaliz.dll",
    "synchronization.dll",
    "api-ms-win-*.dll",
];

/// What every macOS has: libSystem (libc, libm, pthreads, the loader),
/// the C++ runtime, the Objective-C runtime, libresolv, libiconv, zlib, and
/// the system frameworks.
const MACOS: &[&str] = &[
    "/usr/lib/libSystem*",
    "/usr/lib/libc++*",
    "/usr/lib/libobjc*",
    "/usr/lib/libresolv*",
    "/usr/lib/libiconv*",
    "/usr/lib/libz*",
    "/System/Library/Frameworks/*",
];

/// The table: one row per OS / C library family rustle-cross knows the
/// base system of.
pub static BASE_SYSTEMS: &[BaseSystem] = &[
    BaseSystem { os: OsFamily::Linux, libc: Some(LibcType::Glibc), case: NameCase::Sensitive, libraries: GLIBC },
    BaseSystem { os: OsFamily::Linux, libc: Some(LibcType::Musl), case: NameCase::Sensitive, libraries: MUSL },
    BaseSystem { os: OsFamily::Windows, libc: None, case: NameCase::Insensitive, libraries: WINDOWS },
    BaseSystem { os: OsFamily::MacOS, libc: None, case: NameCase::Sensitive, libraries: MACOS },
];

/// The base system of `target`'s OS and C library, when the table has it
/// (a row without a C library fits every C library of its OS).
pub fn base_system_of(target: &Target) -> Option<&'static BaseSystem> {
    BASE_SYSTEMS.iter().find(|row| row.os == target.os_family && (row.libc.is_none() || row.libc == target.libc))
}

/// Whether `name` matches `pattern`, where `*` in the pattern stands for any
/// run of characters: linear in the pattern times the name, whatever
/// either holds (names come from binaries, which may be hostile).
fn matches_pattern(pattern: &str, name: &str, case: NameCase) -> bool {
    let same = |p: u8, n: u8| match case {
        NameCase::Sensitive => p == n,
        NameCase::Insensitive => p.eq_ignore_ascii_case(&n),
    };
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    // The last `*` seen and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && same(pattern[p], name[n]) {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            // Let the `*` take one more character and try again after it.
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(triple: &str) -> &'static BaseSystem {
        base_system_of(&Target::from_triple(triple).unwrap()).unwrap_or_else(|| panic!("{triple}: no base system"))
    }

    #[test]
    fn patterns() {
        use NameCase::{Insensitive, Sensitive};
        assert!(matches_pattern("libc.so.*", "libc.so.6", Sensitive));
        assert!(!matches_pattern("libc.so.*", "libcrypto.so.3", Sensitive));
        assert!(!matches_pattern("libc.so.*", "libc.so", Sensitive));
        assert!(matches_pattern("ld-linux*.so.*", "ld-linux-x86-64.so.2", Sensitive));
        assert!(matches_pattern("ld-linux*.so.*", "ld-linux.so.2", Sensitive));
        assert!(matches_pattern("api-ms-win-*.dll", "API-MS-WIN-CRT-RUNTIME-L1-1-0.DLL", Insensitive));
        assert!(!matches_pattern("kernel32.dll", "KERNEL32.dll", Sensitive));
        assert!(matches_pattern("a*b*c", "axxbyyc", Sensitive));
        assert!(!matches_pattern("a*b*c", "axxbyy", Sensitive));
        assert!(matches_pattern("*", "", Sensitive));
        assert!(!matches_pattern("", "x", Sensitive));
        // Hostile input stays quick.
        let long = "a".repeat(100_000);
        assert!(!matches_pattern("*a*a*a*a*b", &long, Sensitive));
    }

    #[test]
    fn glibc_base_system() {
        for triple in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu.2.17"] {
            let glibc = base(triple);
            for lib in [
                "libc.so.6",
                "libm.so.6",
                "libdl.so.2",
                "libpthread.so.0",
                "librt.so.1",
                "libgcc_s.so.1",
                "libutil.so.1",
                "ld-linux-x86-64.so.2",
                "ld-linux-aarch64.so.1",
                "ld-linux-armhf.so.3",
                "ld64.so.2",
                "linux-vdso.so.1",
            ] {
                assert!(glibc.includes(lib), "{triple}: {lib}");
            }
            for lib in ["libz.so.1", "libssl.so.3", "libcrypto.so.3", "libselinux.so.1", "libstdc++.so.6"] {
                assert!(!glibc.includes(lib), "{triple}: {lib}");
            }
        }
    }

    #[test]
    fn musl_base_system() {
        let musl = base("x86_64-unknown-linux-musl");
        for lib in ["libc.so", "libc.musl-x86_64.so.1", "ld-musl-aarch64.so.1"] {
            assert!(musl.includes(lib), "{lib}");
        }
        for lib in ["libc.so.6", "libgcc_s.so.1", "libz.so.1"] {
            assert!(!musl.includes(lib), "{lib}");
        }
    }

    #[test]
    fn windows_base_system_ignores_case() {
        for triple in ["x86_64-pc-windows-gnu", "x86_64-pc-windows-msvc"] {
            let windows = base(triple);
            for lib in [
                "KERNEL32.dll",
                "ntdll.dll",
                "WS2_32.dll",
                "bcryptprimitives.dll",
                "api-ms-win-core-synch-l1-2-0.dll",
                "msvcrt.dll",
            ] {
                assert!(windows.includes(lib), "{triple}: {lib}");
            }
            for lib in ["libssl-3-x64.dll", "zlib1.dll", "VCRUNTIME140.dll", "libgcc_s_seh-1.dll"] {
                assert!(!windows.includes(lib), "{triple}: {lib}");
            }
        }
    }

    #[test]
    fn macos_base_system() {
        let macos = base("aarch64-apple-darwin");
        for lib in [
            "/usr/lib/libSystem.B.dylib",
            "/usr/lib/libc++.1.dylib",
            "/usr/lib/libiconv.2.dylib",
            "/System/Library/Frameworks/Security.framework/Versions/A/Security",
        ] {
            assert!(macos.includes(lib), "{lib}");
        }
        for lib in ["@rpath/libssl.3.dylib", "/opt/homebrew/lib/libssl.3.dylib", "/usr/local/lib/libz.dylib"] {
            assert!(!macos.includes(lib), "{lib}");
        }
    }

    #[test]
    fn no_row_for_systems_it_does_not_know() {
        assert!(base_system_of(&Target::from_triple("x86_64-unknown-freebsd").unwrap()).is_none());
    }
}

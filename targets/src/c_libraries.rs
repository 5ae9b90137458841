//! [`SYS_CRATES`]: the one table of which `-sys` crates link a C library the target must supply, which build their own C code, and which need the platform's SDK; and [`c_needs`], which reads a template's resolved dependencies for one target against it.
//!
//! Data, as the rules table is: a new `-sys` crate is a row, not a branch.
//! Nothing here runs a program; the engine resolves the dependency graph
//! (`cargo metadata --filter-platform T`) and hands the packages in.

use crate::rules::LinkerRoute;
use crate::spec::{OsFamily, Target};

/// A C library a `-sys` crate links, and how a target gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CLibrary {
    /// What it is called (`OpenSSL`).
    pub name: &'static str,
    /// Debian's development package, installed per architecture as
    /// `PACKAGE:ARCH` (`libssl-dev:arm64`) for a multiarch target.
    pub debian_dev: &'static str,
    /// Its pkg-config module (`openssl`).
    pub pkg_config: &'static str,
    /// The static archives a self-contained link needs (`libssl.a`).
    pub static_archives: &'static [&'static str],
    /// A crates.io package carrying the library's source, from which it can
    /// be built for a target with that target's C compiler (`openssl-src`).
    pub source_crate: Option<&'static str>,
    /// How rustle-cross builds it from source into a per-target prefix
    /// when no package supplies it for the target (musl, Windows).
    pub built_here: Option<SourceRecipe>,
    /// The variables its `-sys` crate reads, each also as
    /// `<TRIPLE>_<VAR>` for one target (openssl-sys, libsqlite3-sys): where
    /// the libraries are, where the headers are, and "link statically".
    pub env: LibraryEnv,
}

/// A C library's source on crates.io, which rustle-cross compiles for a
/// target with that target's C compiler: the crate and the exact version
/// (part of the prefix's name, so a new version is a new prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRecipe {
    /// The crate carrying the source and its build (`openssl-src`).
    pub crate_name: &'static str,
    /// Its version, pinned.
    pub version: &'static str,
}

/// The variables a `-sys` crate reads to find its library (`None`: it has no such variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryEnv {
    /// The directory with the libraries (`OPENSSL_LIB_DIR`).
    pub lib_dir: Option<&'static str>,
    /// The directory with the headers (`OPENSSL_INCLUDE_DIR`).
    pub include_dir: Option<&'static str>,
    /// Set to `1`: link the static archives (`OPENSSL_STATIC`).
    pub link_static: Option<&'static str>,
}

/// One `-sys` crate of [`SYS_CRATES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysCrate {
    /// The crate (`openssl-sys`).
    pub crate_name: &'static str,
    /// The library it links.
    pub library: &'static CLibrary,
    /// Its features that make it build a bundled copy instead (`vendored`).
    pub bundled_features: &'static [&'static str],
    /// Packages whose presence in the graph means it builds a bundled copy
    /// (`openssl-src`, which `vendored` pulls in).
    pub bundled_by: &'static [&'static str],
    /// It builds its bundled copy by itself when the target has no library
    /// (libz-sys, libgit2-sys, libssh2-sys): then only the C compiler is needed.
    pub falls_back_to_bundled: bool,
}

/// OpenSSL, which `native-tls` (reqwest's default TLS) links on Linux.
pub static OPENSSL: CLibrary = CLibrary {
    name: "OpenSSL",
    debian_dev: "libssl-dev",
    pkg_config: "openssl",
    static_archives: &["libssl.a", "libcrypto.a"],
    source_crate: Some("openssl-src"),
    built_here: Some(SourceRecipe { crate_name: "openssl-src", version: "300.6.1" }),
    env: LibraryEnv {
        lib_dir: Some("OPENSSL_LIB_DIR"),
        include_dir: Some("OPENSSL_INCLUDE_DIR"),
        link_static: Some("OPENSSL_STATIC"),
    },
};

/// zlib.
pub static ZLIB: CLibrary = CLibrary {
    name: "zlib",
    debian_dev: "zlib1g-dev",
    pkg_config: "zlib",
    static_archives: &["libz.a"],
    source_crate: Some("libz-sys"),
    built_here: None,
    env: LibraryEnv { lib_dir: None, include_dir: None, link_static: Some("LIBZ_SYS_STATIC") },
};

/// SQLite.
pub static SQLITE: CLibrary = CLibrary {
    name: "SQLite",
    debian_dev: "libsqlite3-dev",
    pkg_config: "sqlite3",
    static_archives: &["libsqlite3.a"],
    source_crate: Some("libsqlite3-sys"),
    built_here: None,
    env: LibraryEnv {
        lib_dir: Some("SQLITE3_LIB_DIR"),
        include_dir: Some("SQLITE3_INCLUDE_DIR"),
        link_static: Some("SQLITE3_STATIC"),
    },
};

/// libcurl.
pub static CURL: CLibrary = CLibrary {
    name: "libcurl",
    debian_dev: "libcurl4-openssl-dev",
    pkg_config: "libcurl",
    static_archives: &["libcurl.a"],
    source_crate: Some("curl-sys"),
    built_here: None,
    env: LibraryEnv { lib_dir: None, include_dir: None, link_static: None },
};

/// libgit2.
pub static LIBGIT2: CLibrary = CLibrary {
    name: "libgit2",
    debian_dev: "libgit2-dev",
    pkg_config: "libgit2",
    static_archives: &["libgit2.a"],
    source_crate: Some("libgit2-sys"),
    built_here: None,
    env: LibraryEnv { lib_dir: None, include_dir: None, link_static: None },
};

/// libpq, PostgreSQL's client library.
pub static LIBPQ: CLibrary = CLibrary {
    name: "libpq",
    debian_dev: "libpq-dev",
    pkg_config: "libpq",
    static_archives: &["libpq.a"],
    source_crate: Some("pq-src"),
    built_here: None,
    env: LibraryEnv { lib_dir: Some("PQ_LIB_DIR"), include_dir: None, link_static: Some("PQ_LIB_STATIC") },
};

/// libssh2.
pub static LIBSSH2: CLibrary = CLibrary {
    name: "libssh2",
    debian_dev: "libssh2-1-dev",
    pkg_config: "libssh2",
    static_archives: &["libssh2.a"],
    source_crate: Some("libssh2-sys"),
    built_here: None,
    env: LibraryEnv { lib_dir: None, include_dir: None, link_static: None },
};

/// bzip2.
pub static BZIP2: CLibrary = CLibrary {
    name: "bzip2",
    debian_dev: "libbz2-dev",
    pkg_config: "bzip2",
    static_archives: &["libbz2.a"],
    source_crate: Some("bzip2-sys"),
    built_here: None,
    env: LibraryEnv { lib_dir: None, include_dir: None, link_static: None },
};

/// liblzma (xz).
pub static LZMA: CLibrary = CLibrary {
    name: "liblzma",
    debian_dev: "liblzma-dev",
    pkg_config: "liblzma",
    static_archives: &["liblzma.a"],
    source_crate: Some("lzma-sys"),
    built_here: None,
    env: LibraryEnv { lib_dir: None, include_dir: None, link_static: Some("LZMA_API_STATIC") },
};

/// The libraries set-up installs for the build host and for every
/// multiarch architecture it enables (`libssl-dev`, `libssl-dev:arm64`):
/// what rustle-deploy's runners link (reqwest's default TLS).
pub static SETUP_C_LIBRARIES: &[&CLibrary] = &[&OPENSSL];

/// The table: one row per `-sys` crate that links a C library.
#[rustfmt::skip]
pub static SYS_CRATES: &[SysCrate] = &[
    SysCrate { crate_name: "openssl-sys", library: &OPENSSL, bundled_features: &["vendored"], bundled_by: &["openssl-src"], falls_back_to_bundled: false },
    SysCrate { crate_name: "libz-sys", library: &ZLIB, bundled_features: &["static"], bundled_by: &[], falls_back_to_bundled: true },
    SysCrate { crate_name: "libsqlite3-sys", library: &SQLITE, bundled_features: &["bundled", "bundled-sqlcipher", "bundled-sqlcipher-vendored-openssl"], bundled_by: &[], falls_back_to_bundled: false },
    SysCrate { crate_name: "curl-sys", library: &CURL, bundled_features: &["static-curl"], bundled_by: &[], falls_back_to_bundled: false },
    SysCrate { crate_name: "libgit2-sys", library: &LIBGIT2, bundled_features: &["vendored"], bundled_by: &[], falls_back_to_bundled: true },
    SysCrate { crate_name: "pq-sys", library: &LIBPQ, bundled_features: &["bundled"], bundled_by: &["pq-src"], falls_back_to_bundled: false },
    SysCrate { crate_name: "libssh2-sys", library: &LIBSSH2, bundled_features: &[], bundled_by: &[], falls_back_to_bundled: true },
    SysCrate { crate_name: "bzip2-sys", library: &BZIP2, bundled_features: &["static"], bundled_by: &[], falls_back_to_bundled: true },
    SysCrate { crate_name: "lzma-sys", library: &LZMA, bundled_features: &["static"], bundled_by: &[], falls_back_to_bundled: true },
];

/// Crates that always compile C (or assembly) they carry: the target's C
/// compiler is all they need.
pub static C_COMPILER_ONLY: &[&str] =
    &["ring", "zstd-sys", "lz4-sys", "aws-lc-sys", "blake3", "libmimalloc-sys", "tikv-jemalloc-sys", "openssl-src"];

/// Crates that link the platform's own frameworks or libraries, which only
/// that platform's SDK supplies: (crate, OS family, what it links).
#[rustfmt::skip]
pub static PLATFORM_SDK_CRATES: &[(&str, OsFamily, &str)] = &[
    ("security-framework-sys", OsFamily::MacOS, "Security.framework"),
    ("core-foundation-sys", OsFamily::MacOS, "CoreFoundation.framework"),
    ("system-configuration-sys", OsFamily::MacOS, "SystemConfiguration.framework"),
    ("objc2-foundation", OsFamily::MacOS, "Foundation.framework"),
];

/// One package of a template's dependency graph resolved for a target,
/// with the features cargo enables on it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    /// The package name.
    pub name: String,
    /// Its enabled features.
    pub features: Vec<String>,
}

impl ResolvedPackage {
    /// A package with these features.
    pub fn new(name: &str, features: &[&str]) -> Self {
        Self { name: name.to_owned(), features: features.iter().map(|f| (*f).to_owned()).collect() }
    }
}

/// What one crate of a template's graph needs from the target's C side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CNeed {
    /// It links `library`, which the target must supply; with
    /// `falls_back_to_bundled`, it builds a bundled copy when the target has none.
    Library {
        /// The `-sys` crate.
        crate_name: &'static str,
        /// The library.
        library: &'static CLibrary,
        /// Whether it builds a bundled copy by itself when the library is missing.
        falls_back_to_bundled: bool,
    },
    /// It builds the C code it carries: the target's C compiler only.
    CCompiler {
        /// The crate.
        crate_name: String,
    },
    /// It links the platform's frameworks, which only its SDK supplies.
    PlatformSdk {
        /// The crate.
        crate_name: &'static str,
        /// What it links (`Security.framework`).
        links: &'static str,
    },
}

/// What `packages` (a template's graph resolved for `target`) need from the
/// target's C side, one entry per crate that needs anything, in the
/// order the table lists them.
pub fn c_needs(packages: &[ResolvedPackage], target: &Target) -> Vec<CNeed> {
    let find = |name: &str| packages.iter().find(|p| p.name == name);
    let mut needs = Vec::new();
    for row in SYS_CRATES {
        let Some(package) = find(row.crate_name) else { continue };
        let bundled = row.bundled_features.iter().any(|f| package.features.iter().any(|g| g == f))
            || row.bundled_by.iter().any(|by| find(by).is_some());
        needs.push(if bundled {
            CNeed::CCompiler { crate_name: row.crate_name.to_owned() }
        } else {
            CNeed::Library {
                crate_name: row.crate_name,
                library: row.library,
                falls_back_to_bundled: row.falls_back_to_bundled,
            }
        });
    }
    for name in C_COMPILER_ONLY {
        if find(name).is_some()
            && !needs.iter().any(|n| matches!(n, CNeed::CCompiler { crate_name } if crate_name == name))
        {
            needs.push(CNeed::CCompiler { crate_name: (*name).to_owned() });
        }
    }
    for (name, os, links) in PLATFORM_SDK_CRATES {
        if *os == target.os_family && find(name).is_some() {
            needs.push(CNeed::PlatformSdk { crate_name: name, links });
        }
    }
    needs
}

impl LibraryEnv {
    /// The variables that point the `-sys` crate at `lib_dir` and
    /// `include_dir` for `target` only (`<TRIPLE>_OPENSSL_LIB_DIR`), so host
    /// build scripts are untouched; with `link_static`, "link statically" too.
    pub fn for_target(
        &self,
        target: &Target,
        lib_dir: &std::path::Path,
        include_dir: &std::path::Path,
        link_static: bool,
    ) -> Vec<(String, String)> {
        let upper = target.triple.to_uppercase().replace(['-', '.'], "_");
        let static_flag = if link_static { self.link_static } else { None };
        [
            (self.lib_dir, lib_dir.display().to_string()),
            (self.include_dir, include_dir.display().to_string()),
            (static_flag, "1".to_owned()),
        ]
        .into_iter()
        .filter_map(|(var, value)| var.map(|var| (format!("{upper}_{var}"), value)))
        .collect()
    }
}

/// Debian's multiarch names of the GNU cross prefixes: (cross prefix,
/// Debian architecture, multiarch library directory under `/usr/lib`).
#[rustfmt::skip]
pub static DEBIAN_MULTIARCH: &[(&str, &str, &str)] = &[
    ("x86_64-linux-gnu", "amd64", "x86_64-linux-gnu"),
    ("aarch64-linux-gnu", "arm64", "aarch64-linux-gnu"),
    ("arm-linux-gnueabihf", "armhf", "arm-linux-gnueabihf"),
    ("i686-linux-gnu", "i386", "i386-linux-gnu"),
    ("powerpc64le-linux-gnu", "ppc64el", "powerpc64le-linux-gnu"),
    ("s390x-linux-gnu", "s390x", "s390x-linux-gnu"),
    ("riscv64-linux-gnu", "riscv64", "riscv64-linux-gnu"),
];

/// How a build is given its C libraries: the variables that point the
/// `-sys` crates at them, and per crate a line saying what is linked how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CLibraryPlan {
    /// `<TRIPLE>_OPENSSL_LIB_DIR` and the like, with their values.
    pub env: Vec<(String, String)>,
    /// (the `-sys` crate, `OpenSSL (openssl-sys) linked statically from ...`).
    pub linked: Vec<(&'static str, String)>,
}

/// The variables that point `lock`'s `-sys` crates (those of [`SYS_CRATES`]
/// a Cargo.lock lists, `lock_packages`) at the target's multiarch copy of
/// their library under `lib_root` (`/usr/lib/<multiarch>`, headers in
/// `/usr/include`), each named for the target only (`<TRIPLE>_OPENSSL_LIB_DIR`)
/// so host build scripts are untouched; with `link_static`, linked from its
/// static archives. Only libraries whose archives are all there: for the
/// others the crate's own search (or failure) stands. Returns the
/// variables and, per `-sys` crate, a line saying what was linked how.
pub fn multiarch_library_env(
    lock_packages: &[&str],
    target: &Target,
    gnu_prefix: &str,
    lib_root: &std::path::Path,
    link_static: bool,
) -> CLibraryPlan {
    let Some((_, _, multiarch)) = DEBIAN_MULTIARCH.iter().find(|(prefix, _, _)| *prefix == gnu_prefix) else {
        return CLibraryPlan::default();
    };
    let dir = lib_root.join(multiarch);
    let (mut env, mut said) = (Vec::new(), Vec::new());
    for row in SYS_CRATES.iter().filter(|row| lock_packages.contains(&row.crate_name)) {
        let library = row.library;
        if !library.has_static_archives_in(&dir) {
            continue;
        }
        env.extend(library.env.for_target(target, &dir, std::path::Path::new("/usr/include"), link_static));
        let how = if link_static && library.env.link_static.is_some() { "statically" } else { "dynamically" };
        said.push((
            row.crate_name,
            format!("{} ({}) linked {how} from {}", library.name, row.crate_name, dir.display()),
        ));
    }
    CLibraryPlan { env, linked: said }
}

/// The GNU prefix under which Debian's multiarch packages hold `target`'s
/// C libraries (`/usr/lib/<multiarch>` of [`DEBIAN_MULTIARCH`]): its cross
/// toolchain's prefix, or the build host's own; `None` for a target they
/// do not serve (musl, Windows, macOS).
pub fn multiarch_gnu_prefix(target: &Target) -> Option<&'static str> {
    match crate::rules::rule_for(target).linker {
        LinkerRoute::GnuCross { prefix, .. } => Some(prefix),
        LinkerRoute::Host if target.triple == "x86_64-unknown-linux-gnu" => Some("x86_64-linux-gnu"),
        _ => None,
    }
}

impl CLibrary {
    /// Whether `dir` holds every static archive a self-contained link needs.
    pub fn has_static_archives_in(&self, dir: &std::path::Path) -> bool {
        self.static_archives.iter().all(|archive| dir.join(archive).is_file())
    }

    /// The Debian package that supplies this library for the target whose
    /// GNU cross prefix is `gnu_prefix` (`libssl-dev:arm64`), when Debian
    /// has that architecture.
    pub fn debian_package_for(&self, gnu_prefix: &str) -> Option<String> {
        DEBIAN_MULTIARCH
            .iter()
            .find(|(prefix, _, _)| *prefix == gnu_prefix)
            .map(|(_, arch, _)| format!("{}:{arch}", self.debian_dev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(triple: &str) -> Target {
        Target::from_triple(triple).expect("known")
    }

    /// reqwest 0.11 with default features, as cargo resolves it per target.
    fn reqwest_default(os: &str) -> Vec<ResolvedPackage> {
        let mut packages =
            vec![ResolvedPackage::new("reqwest", &["default", "default-tls"]), ResolvedPackage::new("native-tls", &[])];
        match os {
            "linux" => {
                packages.extend([ResolvedPackage::new("openssl", &[]), ResolvedPackage::new("openssl-sys", &[])])
            }
            "macos" => packages.extend([
                ResolvedPackage::new("security-framework", &[]),
                ResolvedPackage::new("security-framework-sys", &[]),
                ResolvedPackage::new("core-foundation-sys", &[]),
            ]),
            _ => packages.push(ResolvedPackage::new("schannel", &[])),
        }
        packages
    }

    #[test]
    fn reqwests_default_tls_needs_openssl_on_linux_the_sdk_on_macos_and_nothing_on_windows() {
        let linux = c_needs(&reqwest_default("linux"), &target("aarch64-unknown-linux-gnu"));
        assert_eq!(
            linux,
            vec![CNeed::Library { crate_name: "openssl-sys", library: &OPENSSL, falls_back_to_bundled: false }]
        );
        let macos = c_needs(&reqwest_default("macos"), &target("aarch64-apple-darwin"));
        assert_eq!(
            macos,
            vec![
                CNeed::PlatformSdk { crate_name: "security-framework-sys", links: "Security.framework" },
                CNeed::PlatformSdk { crate_name: "core-foundation-sys", links: "CoreFoundation.framework" },
            ]
        );
        assert_eq!(c_needs(&reqwest_default("windows"), &target("x86_64-pc-windows-gnu")), vec![]);
    }

    #[test]
    fn a_bundled_copy_needs_only_the_c_compiler() {
        let vendored = [ResolvedPackage::new("openssl-sys", &[]), ResolvedPackage::new("openssl-src", &[])];
        let needs = c_needs(&vendored, &target("x86_64-unknown-linux-musl"));
        assert_eq!(
            needs,
            vec![
                CNeed::CCompiler { crate_name: "openssl-sys".into() },
                CNeed::CCompiler { crate_name: "openssl-src".into() }
            ]
        );
        let sqlite = [ResolvedPackage::new("libsqlite3-sys", &["bundled"])];
        assert_eq!(
            c_needs(&sqlite, &target("x86_64-unknown-linux-gnu")),
            vec![CNeed::CCompiler { crate_name: "libsqlite3-sys".into() }]
        );
        let zstd = [ResolvedPackage::new("zstd-sys", &["legacy"]), ResolvedPackage::new("ring", &[])];
        assert_eq!(
            c_needs(&zstd, &target("armv7-unknown-linux-gnueabihf")),
            vec![CNeed::CCompiler { crate_name: "ring".into() }, CNeed::CCompiler { crate_name: "zstd-sys".into() }]
        );
    }

    #[test]
    fn debian_packages_are_named_per_architecture() {
        assert_eq!(OPENSSL.debian_package_for("aarch64-linux-gnu").as_deref(), Some("libssl-dev:arm64"));
        assert_eq!(OPENSSL.debian_package_for("i686-linux-gnu").as_deref(), Some("libssl-dev:i386"));
        assert_eq!(OPENSSL.debian_package_for("powerpc64le-linux-gnu").as_deref(), Some("libssl-dev:ppc64el"));
        assert_eq!(OPENSSL.debian_package_for("x86_64-w64-mingw32"), None);
    }

    #[test]
    fn multiarch_archives_point_the_crate_at_them_for_that_target_only_and_statically() {
        let root = tempfile_dir();
        let dir = root.join("aarch64-linux-gnu");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let target = target("aarch64-unknown-linux-gnu");
        let plan = multiarch_library_env(&["openssl-sys", "tokio"], &target, "aarch64-linux-gnu", &root, true);
        assert_eq!(plan, CLibraryPlan::default(), "no archives, nothing set");
        for archive in OPENSSL.static_archives {
            std::fs::write(dir.join(archive), b"!<arch>\n").expect("write");
        }
        let CLibraryPlan { env, linked: said } =
            multiarch_library_env(&["openssl-sys", "tokio"], &target, "aarch64-linux-gnu", &root, true);
        let lib_dir = dir.display().to_string();
        assert_eq!(
            env,
            vec![
                ("AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_LIB_DIR".to_owned(), lib_dir.clone()),
                ("AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_INCLUDE_DIR".to_owned(), "/usr/include".to_owned()),
                ("AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_STATIC".to_owned(), "1".to_owned()),
            ]
        );
        assert_eq!(said, vec![("openssl-sys", format!("OpenSSL (openssl-sys) linked statically from {lib_dir}"))]);
        let plan = multiarch_library_env(&["tokio"], &target, "aarch64-linux-gnu", &root, true);
        assert!(plan.env.is_empty(), "a template without openssl-sys gets nothing");
        let CLibraryPlan { env, linked: said } =
            multiarch_library_env(&["openssl-sys"], &target, "aarch64-linux-gnu", &root, false);
        assert_eq!(env.len(), 2, "dynamic: no OPENSSL_STATIC: {env:?}");
        assert!(said[0].1.contains("dynamically"));
        let _ = std::fs::remove_dir_all(&root);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rustle-c-libraries-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn every_row_names_a_sys_crate_once() {
        let mut names: Vec<_> = SYS_CRATES.iter().map(|row| row.crate_name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a crate listed twice");
        assert!(SYS_CRATES.iter().all(|row| row.crate_name.ends_with("-sys")));
    }
}

//! [`ARCHITECTURE_NAMES`]: the one table of what each architecture is called
//! where rustle-cross meets it — `uname -m` and Ansible facts, Windows,
//! `std::env::consts::ARCH` in an agent's report, binary headers, qemu-user.

use crate::spec::Architecture;

/// The names of one [`Architecture`].
#[derive(Debug, Clone)]
pub struct ArchitectureNames {
    /// The architecture.
    pub architecture: Architecture,
    /// `std::env::consts::ARCH` values of a machine of it (what an agent reports).
    pub rust_arch: &'static [&'static str],
    /// What a binary's header check calls the machine (`validate`'s messages).
    pub machine: &'static str,
    /// Lower-case `uname -m` / `ansible_architecture` values on Unix systems.
    pub aliases: &'static [&'static str],
    /// Lower-case values on Windows (`ansible_architecture`, `PROCESSOR_ARCHITECTURE`).
    pub windows_aliases: &'static [&'static str],
    /// The qemu-user emulator's suffix (`qemu-<name>`), where one name fits
    /// the whole architecture.
    pub qemu: Option<&'static str>,
}

/// The table: one row per architecture rustle-cross classifies.
#[rustfmt::skip]
pub static ARCHITECTURE_NAMES: &[ArchitectureNames] = &[
    ArchitectureNames {
        architecture: Architecture::X86_64, rust_arch: &["x86_64"], machine: "x86_64",
        aliases: &["x86_64", "amd64", "x64", "x86-64", "em64t"],
        windows_aliases: &["64-bit", "amd64", "x64", "x86_64", "em64t"],
        qemu: Some("x86_64"),
    },
    ArchitectureNames {
        architecture: Architecture::Aarch64, rust_arch: &["aarch64"], machine: "aarch64",
        aliases: &["aarch64", "arm64"],
        windows_aliases: &["arm 64-bit processor", "arm64", "aarch64"],
        qemu: Some("aarch64"),
    },
    ArchitectureNames {
        architecture: Architecture::Armv7, rust_arch: &["arm"], machine: "arm",
        aliases: &["armv7l", "armv7", "armhf", "armv7hl", "armv7a", "armv8l"],
        windows_aliases: &[],
        qemu: Some("arm"),
    },
    ArchitectureNames {
        architecture: Architecture::Arm, rust_arch: &["arm"], machine: "arm",
        aliases: &["armv6l", "armv6"],
        windows_aliases: &[],
        qemu: Some("arm"),
    },
    ArchitectureNames {
        architecture: Architecture::I686, rust_arch: &["x86"], machine: "i386",
        aliases: &["i686", "i386", "i586", "i486", "x86"],
        windows_aliases: &["32-bit", "x86", "i686", "i386"],
        qemu: Some("i386"),
    },
    ArchitectureNames {
        // Byte order and width vary within the family: no one qemu name.
        architecture: Architecture::Mips, rust_arch: &["mips", "mips64"], machine: "mips",
        aliases: &[],
        windows_aliases: &[],
        qemu: None,
    },
    ArchitectureNames {
        architecture: Architecture::Riscv64, rust_arch: &["riscv64"], machine: "riscv64",
        aliases: &["riscv64"],
        windows_aliases: &[],
        qemu: Some("riscv64"),
    },
    ArchitectureNames {
        architecture: Architecture::PowerPc64le, rust_arch: &["powerpc64"], machine: "ppc64le",
        aliases: &["ppc64le", "powerpc64le"],
        windows_aliases: &[],
        qemu: Some("ppc64le"),
    },
    ArchitectureNames {
        architecture: Architecture::S390x, rust_arch: &["s390x"], machine: "s390x",
        aliases: &["s390x"],
        windows_aliases: &[],
        qemu: Some("s390x"),
    },
];

impl Architecture {
    /// Its row of [`ARCHITECTURE_NAMES`]; `None` for [`Architecture::Other`].
    pub fn names(&self) -> Option<&'static ArchitectureNames> {
        ARCHITECTURE_NAMES.iter().find(|row| row.architecture == *self)
    }

    /// The architecture a lower-case `uname -m` value (or, with `windows`,
    /// a Windows architecture value) names.
    pub fn from_alias(alias: &str, windows: bool) -> Option<&'static ArchitectureNames> {
        ARCHITECTURE_NAMES.iter().find(|row| if windows { row.windows_aliases } else { row.aliases }.contains(&alias))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::spec::Target;

    #[test]
    fn every_classified_architecture_has_one_row() {
        let rows: Vec<_> = ARCHITECTURE_NAMES.iter().map(|r| format!("{:?}", r.architecture)).collect();
        let unique: BTreeSet<_> = rows.iter().collect();
        assert_eq!(rows.len(), unique.len(), "one row each: {rows:?}");
        // (target-lexicon does not parse a few exotic triples rustc knows.)
        let targets: Vec<Target> = crate::known_triples().filter_map(|t| Target::from_triple(t).ok()).collect();
        assert!(targets.len() > 200, "{}", targets.len());
        for target in targets {
            if !matches!(target.architecture, Architecture::Other(_)) {
                assert!(
                    target.architecture.names().is_some(),
                    "{}: {:?} has no row",
                    target.triple,
                    target.architecture
                );
            }
        }
    }

    #[test]
    fn aliases_are_lower_case_and_name_one_architecture_each() {
        for windows in [false, true] {
            let mut seen = BTreeSet::new();
            for row in ARCHITECTURE_NAMES {
                for alias in if windows { row.windows_aliases } else { row.aliases } {
                    assert_eq!(*alias, alias.to_ascii_lowercase());
                    assert!(seen.insert(*alias), "`{alias}` names two architectures");
                    let found = Architecture::from_alias(alias, windows).expect("found");
                    assert_eq!(found.architecture, row.architecture);
                }
            }
        }
        assert_eq!(Architecture::from_alias("armv7l", false).map(|r| r.machine), Some("arm"));
        assert!(Architecture::from_alias("vax", false).is_none());
    }

    #[test]
    fn this_machines_rust_arch_is_in_the_table() {
        assert!(ARCHITECTURE_NAMES.iter().any(|r| r.rust_arch.contains(&std::env::consts::ARCH)));
    }
}

//! Facts -> target triple: one normalisation table (data, tested row by
//! row) from Ansible fact values (`ansible_architecture`, `ansible_system`,
//! `ansible_os_family`, `ansible_distribution`, ...) or probe results to a
//! Rust target, with the host's glibc version and macOS version.

use std::collections::BTreeMap;

use rustle_targets::{Architecture, GlibcVersion, TargetSpecification};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FactsError;

/// Facts of one host, by name (with or without the `ansible_` prefix).
pub type Facts = BTreeMap<String, Value>;

/// Which Windows toolchain hosts map to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowsAbi {
    /// `*-pc-windows-msvc` (the default).
    #[default]
    Msvc,
    /// `*-pc-windows-gnu` (`gnullvm` on aarch64).
    Gnu,
}

/// One architecture and the triple it gets on each system.
#[derive(Debug, Clone)]
pub struct ArchitectureRow {
    /// The architecture; what facts call it is in `rustle_targets::ARCHITECTURE_NAMES`.
    pub architecture: Architecture,
    /// Linux with glibc.
    pub linux_gnu: Option<&'static str>,
    /// Linux with musl.
    pub linux_musl: Option<&'static str>,
    /// macOS.
    pub darwin: Option<&'static str>,
    /// Windows, MSVC toolchain.
    pub windows_msvc: Option<&'static str>,
    /// Windows, GNU toolchain.
    pub windows_gnu: Option<&'static str>,
    /// FreeBSD.
    pub freebsd: Option<&'static str>,
    /// NetBSD.
    pub netbsd: Option<&'static str>,
    /// OpenBSD.
    pub openbsd: Option<&'static str>,
}

/// The normalisation table.
#[rustfmt::skip]
pub static ARCHITECTURES: &[ArchitectureRow] = &[
    ArchitectureRow {
        architecture: Architecture::X86_64,
        linux_gnu: Some("x86_64-unknown-linux-gnu"), linux_musl: Some("x86_64-unknown-linux-musl"),
        darwin: Some("x86_64-apple-darwin"),
        windows_msvc: Some("x86_64-pc-windows-msvc"), windows_gnu: Some("x86_64-pc-windows-gnu"),
        freebsd: Some("x86_64-unknown-freebsd"), netbsd: Some("x86_64-unknown-netbsd"), openbsd: Some("x86_64-unknown-openbsd"),
    },
    ArchitectureRow {
        architecture: Architecture::Aarch64,
        linux_gnu: Some("aarch64-unknown-linux-gnu"), linux_musl: Some("aarch64-unknown-linux-musl"),
        darwin: Some("aarch64-apple-darwin"),
        windows_msvc: Some("aarch64-pc-windows-msvc"), windows_gnu: Some("aarch64-pc-windows-gnullvm"),
        freebsd: Some("aarch64-unknown-freebsd"), netbsd: Some("aarch64-unknown-netbsd"), openbsd: Some("aarch64-unknown-openbsd"),
    },
    ArchitectureRow {
        architecture: Architecture::Armv7,
        linux_gnu: Some("armv7-unknown-linux-gnueabihf"), linux_musl: Some("armv7-unknown-linux-musleabihf"),
        darwin: None, windows_msvc: None, windows_gnu: None,
        freebsd: Some("armv7-unknown-freebsd"), netbsd: Some("armv7-unknown-netbsd-eabihf"), openbsd: None,
    },
    ArchitectureRow {
        architecture: Architecture::Arm,
        linux_gnu: Some("arm-unknown-linux-gnueabihf"), linux_musl: Some("arm-unknown-linux-musleabihf"),
        darwin: None, windows_msvc: None, windows_gnu: None,
        freebsd: Some("armv6-unknown-freebsd"), netbsd: Some("armv6-unknown-netbsd-eabihf"), openbsd: None,
    },
    ArchitectureRow {
        architecture: Architecture::I686,
        linux_gnu: Some("i686-unknown-linux-gnu"), linux_musl: Some("i686-unknown-linux-musl"),
        darwin: None,
        windows_msvc: Some("i686-pc-windows-msvc"), windows_gnu: Some("i686-pc-windows-gnu"),
        freebsd: Some("i686-unknown-freebsd"), netbsd: Some("i686-unknown-netbsd"), openbsd: Some("i686-unknown-openbsd"),
    },
    ArchitectureRow {
        architecture: Architecture::PowerPc64le,
        linux_gnu: Some("powerpc64le-unknown-linux-gnu"), linux_musl: Some("powerpc64le-unknown-linux-musl"),
        darwin: None, windows_msvc: None, windows_gnu: None,
        freebsd: Some("powerpc64le-unknown-freebsd"), netbsd: None, openbsd: None,
    },
    ArchitectureRow {
        architecture: Architecture::S390x,
        linux_gnu: Some("s390x-unknown-linux-gnu"), linux_musl: Some("s390x-unknown-linux-musl"),
        darwin: None, windows_msvc: None, windows_gnu: None, freebsd: None, netbsd: None, openbsd: None,
    },
    ArchitectureRow {
        architecture: Architecture::Riscv64,
        linux_gnu: Some("riscv64gc-unknown-linux-gnu"), linux_musl: Some("riscv64gc-unknown-linux-musl"),
        darwin: None, windows_msvc: None, windows_gnu: None,
        freebsd: Some("riscv64gc-unknown-freebsd"), netbsd: Some("riscv64gc-unknown-netbsd"), openbsd: Some("riscv64gc-unknown-openbsd"),
    },
];

/// The row of `architecture`.
pub fn row_of(architecture: &Architecture) -> Option<&'static ArchitectureRow> {
    ARCHITECTURES.iter().find(|row| row.architecture == *architecture)
}

/// Linux distributions (`ansible_distribution` / `ansible_os_family`,
/// lower case) whose C library is musl.
pub const MUSL_DISTRIBUTIONS: &[&str] = &["alpine", "postmarketos", "chimera", "adelie", "sabotage"];

/// glibc of distribution releases, for facts that carry no glibc version:
/// (distribution, `ansible_distribution_version` prefix, glibc).
#[rustfmt::skip]
pub const GLIBC_BY_DISTRIBUTION: &[(&str, &str, (u16, u16))] = &[
    ("debian", "10", (2, 28)), ("debian", "11", (2, 31)), ("debian", "12", (2, 36)), ("debian", "13", (2, 41)),
    ("ubuntu", "18.04", (2, 27)), ("ubuntu", "20.04", (2, 31)), ("ubuntu", "22.04", (2, 35)), ("ubuntu", "24.04", (2, 39)),
    ("centos", "7", (2, 17)), ("centos", "8", (2, 28)), ("centos", "9", (2, 34)),
    ("redhat", "7", (2, 17)), ("redhat", "8", (2, 28)), ("redhat", "9", (2, 34)),
    ("rocky", "8", (2, 28)), ("rocky", "9", (2, 34)), ("almalinux", "8", (2, 28)), ("almalinux", "9", (2, 34)),
    ("oraclelinux", "7", (2, 17)), ("oraclelinux", "8", (2, 28)), ("oraclelinux", "9", (2, 34)),
    ("amazon", "2", (2, 26)), ("amazon", "2023", (2, 34)),
];

/// Fact names (as host variables) that count as cached facts.
const FACT_VARIABLES: &[&str] = &[
    "ansible_architecture",
    "ansible_architecture2",
    "ansible_machine",
    "ansible_system",
    "ansible_os_family",
    "ansible_distribution",
    "ansible_distribution_version",
    "ansible_distribution_major_version",
    "ansible_userspace_architecture",
    "ansible_env",
    "rustle_libc",
    "rustle_glibc_version",
];

/// Whether a host variable is a fact the normalisation reads.
pub fn is_fact_variable(name: &str) -> bool {
    FACT_VARIABLES.contains(&name)
}

/// Whether facts carry enough to try the normalisation (a system or an
/// architecture).
pub fn has_platform_facts(facts: &Facts) -> bool {
    ["system", "architecture", "os_family"].iter().any(|name| lookup(facts, name).is_some())
}

/// What the facts say about a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FactsTarget {
    /// The target, its `glibc_floor` set to the host's glibc when known.
    pub spec: TargetSpecification,
    /// The host's glibc version, when known.
    pub glibc: Option<GlibcVersion>,
    /// The host's macOS version (major.minor), the deployment target.
    pub macos_version: Option<String>,
    /// The facts used, for the evidence column.
    pub details: String,
}

/// A fact by short name (`architecture`): `ansible_architecture`, then
/// `architecture`, also inside a nested `ansible_facts` object.
fn lookup<'a>(facts: &'a Facts, name: &str) -> Option<(String, &'a Value)> {
    let prefixed = format!("ansible_{name}");
    let direct = |map: &'a serde_json::Map<String, Value>| {
        map.get(&prefixed).map(|v| (prefixed.clone(), v)).or_else(|| map.get(name).map(|v| (name.to_owned(), v)))
    };
    facts
        .get(&prefixed)
        .map(|v| (prefixed.clone(), v))
        .or_else(|| facts.get(name).map(|v| (name.to_owned(), v)))
        .or_else(|| facts.get("ansible_facts").and_then(Value::as_object).and_then(direct))
        .filter(|(_, v)| !v.is_null())
}

fn lookup_text(facts: &Facts, name: &str) -> Option<(String, String)> {
    lookup(facts, name).and_then(|(n, v)| crate::inventory::value_as_string(v).map(|s| (n, s.trim().to_owned())))
}

fn env_var(facts: &Facts, var: &str) -> Option<(String, String)> {
    let (name, env) = lookup(facts, "env")?;
    let value = env.as_object()?.get(var)?.as_str()?.trim();
    (!value.is_empty()).then(|| (format!("{name}.{var}"), value.to_owned()))
}

/// The operating systems the table has columns for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Linux,
    Darwin,
    Windows,
    FreeBsd,
    NetBsd,
    OpenBsd,
}

fn system_of(facts: &Facts) -> Result<(System, String), FactsError> {
    let family = lookup_text(facts, "os_family");
    if family.as_ref().is_some_and(|(_, f)| f.eq_ignore_ascii_case("windows")) {
        return Ok((System::Windows, "ansible_os_family=Windows".into()));
    }
    let Some((name, value)) = lookup_text(facts, "system") else {
        return Err(FactsError::Missing { fact: "ansible_system".into() });
    };
    let system = match value.to_ascii_lowercase().as_str() {
        "linux" => System::Linux,
        "darwin" | "macos" | "macosx" => System::Darwin,
        "win32nt" | "windows" | "windows_nt" => System::Windows,
        "freebsd" => System::FreeBsd,
        "netbsd" => System::NetBsd,
        "openbsd" => System::OpenBsd,
        _ => return Err(FactsError::UnknownValue { fact: name, value }),
    };
    Ok((system, format!("{name}={value}")))
}

/// Normalises facts to a target. Case-insensitive; an unknown value is an
/// error quoting it and the fact's name.
pub fn normalize_facts(facts: &Facts, windows_abi: WindowsAbi) -> Result<FactsTarget, FactsError> {
    let (system, system_detail) = system_of(facts)?;
    let mut details = vec![system_detail];
    let arch_facts: &[&str] = if system == System::Windows {
        &["env.PROCESSOR_ARCHITEW6432", "env.PROCESSOR_ARCHITECTURE", "architecture2", "architecture"]
    } else {
        &["architecture", "machine"]
    };
    let (arch_name, arch_value) = arch_facts
        .iter()
        .find_map(|f| match f.strip_prefix("env.") {
            Some(var) => env_var(facts, var),
            None => lookup_text(facts, f),
        })
        .ok_or_else(|| FactsError::Missing { fact: "ansible_architecture".into() })?;
    details.push(format!("{arch_name}={arch_value}"));
    let lower = arch_value.to_ascii_lowercase();
    let row = Architecture::from_alias(&lower, system == System::Windows)
        .and_then(|names| row_of(&names.architecture))
        .ok_or_else(|| FactsError::UnknownValue { fact: arch_name.clone(), value: arch_value.clone() })?;

    let mut glibc = None;
    let mut macos_version = None;
    let (triple, libc_label) = match system {
        System::Linux => {
            let (musl, why) = linux_libc(facts)?;
            details.push(why);
            if musl {
                (row.linux_musl, "musl")
            } else {
                if let Some((version, why)) = glibc_version(facts)? {
                    glibc = Some(version);
                    details.push(why);
                }
                (row.linux_gnu, "glibc")
            }
        }
        System::Darwin => {
            if let Some((name, version)) = lookup_text(facts, "distribution_version") {
                let mm: Vec<&str> = version.split('.').take(2).collect();
                if mm.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) && !mm.is_empty() {
                    let v = if mm.len() == 1 { format!("{}.0", mm[0]) } else { mm.join(".") };
                    details.push(format!("{name}={version}"));
                    macos_version = Some(v);
                }
            }
            (row.darwin, "macOS")
        }
        System::Windows => match windows_abi {
            WindowsAbi::Msvc => (row.windows_msvc, "msvc"),
            WindowsAbi::Gnu => (row.windows_gnu, "gnu"),
        },
        System::FreeBsd => (row.freebsd, "FreeBSD"),
        System::NetBsd => (row.netbsd, "NetBSD"),
        System::OpenBsd => (row.openbsd, "OpenBSD"),
    };
    let system_name = format!("{system:?}");
    let triple = triple.ok_or_else(|| FactsError::NoTarget {
        architecture: arch_value.clone(),
        system: system_name.clone(),
        libc: libc_label.into(),
    })?;
    let mut spec = TargetSpecification::from_triple(triple).map_err(|_| FactsError::NoTarget {
        architecture: arch_value,
        system: system_name,
        libc: libc_label.into(),
    })?;
    spec.glibc_floor = glibc;
    Ok(FactsTarget { spec, glibc, macos_version, details: details.join(", ") })
}

/// (is musl, why).
fn linux_libc(facts: &Facts) -> Result<(bool, String), FactsError> {
    if let Some((name, libc)) = lookup_text(facts, "libc").or_else(|| lookup_text(facts, "rustle_libc")) {
        return match libc.to_ascii_lowercase().as_str() {
            "musl" => Ok((true, format!("{name}=musl"))),
            "glibc" | "gnu" => Ok((false, format!("{name}=glibc"))),
            _ => Err(FactsError::UnknownValue { fact: name, value: libc }),
        };
    }
    for fact in ["distribution", "os_family"] {
        if let Some((name, value)) = lookup_text(facts, fact)
            && MUSL_DISTRIBUTIONS.contains(&value.to_ascii_lowercase().as_str())
        {
            return Ok((true, format!("{name}={value} (musl distribution)")));
        }
    }
    let distribution = lookup_text(facts, "distribution").map_or_else(|| "Linux".to_owned(), |(_, d)| d);
    Ok((false, format!("{distribution} (glibc distribution)")))
}

/// The host's glibc: an explicit fact, else the distribution table.
fn glibc_version(facts: &Facts) -> Result<Option<(GlibcVersion, String)>, FactsError> {
    if let Some((name, text)) =
        lookup_text(facts, "glibc_version").or_else(|| lookup_text(facts, "rustle_glibc_version"))
    {
        let version =
            parse_glibc(&text).ok_or_else(|| FactsError::UnknownValue { fact: name.clone(), value: text.clone() })?;
        return Ok(Some((version, format!("{name}={text}"))));
    }
    let (Some((_, distribution)), Some((version_name, version))) =
        (lookup_text(facts, "distribution"), lookup_text(facts, "distribution_version"))
    else {
        return Ok(None);
    };
    let distribution_key = distribution.to_ascii_lowercase().replace(' ', "");
    Ok(GLIBC_BY_DISTRIBUTION
        .iter()
        .find(|(d, prefix, _)| {
            *d == distribution_key && (version == *prefix || version.starts_with(&format!("{prefix}.")))
        })
        .map(|(_, _, (major, minor))| {
            (
                GlibcVersion { major: *major, minor: *minor },
                format!("glibc {major}.{minor} of {distribution} {version} ({version_name})"),
            )
        }))
}

/// `2.36`, `glibc 2.36`, `2.36.1` -> 2.36.
pub fn parse_glibc(text: &str) -> Option<GlibcVersion> {
    let version = text.trim().rsplit(' ').next()?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(GlibcVersion { major, minor })
}

#[cfg(test)]
mod tests;

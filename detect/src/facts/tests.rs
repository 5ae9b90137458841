//! The normalisation table, row by row, and hand-written fact fixtures in
//! Ansible's shape.

use rustle_targets::{LibcType, OsFamily};
use serde_json::json;

use super::*;

fn facts(pairs: &[(&str, Value)]) -> Facts {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn triple(f: &Facts) -> String {
    normalize_facts(f, WindowsAbi::Msvc).unwrap_or_else(|e| panic!("{f:?}: {e}")).spec.triple
}

/// Every triple in the table is one rustc knows, and its columns classify as
/// the column says.
#[test]
fn every_table_triple_is_a_known_target_of_its_column() {
    let mut count = 0;
    for row in ARCHITECTURES {
        let columns = [
            (row.linux_gnu, OsFamily::Linux, Some(LibcType::Glibc)),
            (row.linux_musl, OsFamily::Linux, Some(LibcType::Musl)),
            (row.darwin, OsFamily::MacOS, None),
            (row.windows_msvc, OsFamily::Windows, Some(LibcType::Msvcrt)),
            (row.windows_gnu, OsFamily::Windows, Some(LibcType::Msvcrt)),
            (row.freebsd, OsFamily::FreeBSD, None),
            (row.netbsd, OsFamily::NetBSD, None),
            (row.openbsd, OsFamily::OpenBSD, None),
        ];
        for (triple, os, libc) in columns {
            let Some(triple) = triple else { continue };
            let spec = TargetSpecification::from_triple(triple).unwrap_or_else(|e| panic!("{triple}: {e}"));
            assert_eq!(spec.os_family, os, "{triple}");
            assert_eq!(spec.libc, libc, "{triple}");
            count += 1;
        }
    }
    assert!(count >= 40, "{count}");
}

/// Each alias of each row, on each system column, in upper and lower case.
#[test]
fn table_row_by_row() {
    for row in ARCHITECTURES {
        let names = row.architecture.names().expect("every row's architecture has names");
        for alias in names.aliases {
            for value in [alias.to_string(), alias.to_ascii_uppercase()] {
                let linux = facts(&[("ansible_system", json!("Linux")), ("ansible_architecture", json!(value))]);
                assert_eq!(Some(triple(&linux).as_str()), row.linux_gnu, "{value}");
                let alpine = facts(&[
                    ("ansible_system", json!("linux")),
                    ("ansible_architecture", json!(value)),
                    ("ansible_distribution", json!("Alpine")),
                ]);
                assert_eq!(Some(triple(&alpine).as_str()), row.linux_musl, "{value}");
                for (system, column) in
                    [("Darwin", row.darwin), ("FreeBSD", row.freebsd), ("NetBSD", row.netbsd), ("OpenBSD", row.openbsd)]
                {
                    let f = facts(&[("ansible_system", json!(system)), ("ansible_architecture", json!(value))]);
                    match (normalize_facts(&f, WindowsAbi::Msvc), column) {
                        (Ok(t), Some(expected)) => assert_eq!(t.spec.triple, expected, "{system} {value}"),
                        (Err(FactsError::NoTarget { .. }), None) => {}
                        (other, _) => panic!("{system} {value}: {other:?}"),
                    }
                }
            }
        }
        for alias in names.windows_aliases {
            let f = facts(&[("ansible_os_family", json!("Windows")), ("ansible_architecture", json!(alias))]);
            assert_eq!(Some(triple(&f).as_str()), row.windows_msvc, "{alias}");
            let gnu = normalize_facts(&f, WindowsAbi::Gnu).expect("gnu").spec.triple;
            assert_eq!(Some(gnu.as_str()), row.windows_gnu, "{alias}");
        }
    }
}

#[test]
fn issue_rows() {
    for (arch, expected) in [
        ("x86_64", "x86_64-unknown-linux-gnu"),
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("x64", "x86_64-unknown-linux-gnu"),
        ("aarch64", "aarch64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
        ("armv7l", "armv7-unknown-linux-gnueabihf"),
        ("armv7", "armv7-unknown-linux-gnueabihf"),
        ("armhf", "armv7-unknown-linux-gnueabihf"),
        ("armv6l", "arm-unknown-linux-gnueabihf"),
        ("i386", "i686-unknown-linux-gnu"),
        ("i686", "i686-unknown-linux-gnu"),
        ("ppc64le", "powerpc64le-unknown-linux-gnu"),
        ("s390x", "s390x-unknown-linux-gnu"),
        ("riscv64", "riscv64gc-unknown-linux-gnu"),
    ] {
        let f = facts(&[("ansible_system", json!("Linux")), ("ansible_architecture", json!(arch))]);
        assert_eq!(triple(&f), expected, "{arch}");
    }
}

fn fixture(name: &str) -> Facts {
    let path = format!("{}/tests/fixtures/facts/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (fixture, triple, glibc, macOS version)
type FixtureCase = (&'static str, &'static str, Option<(u16, u16)>, Option<&'static str>);

#[test]
fn ansible_shaped_fixtures() {
    let cases: &[FixtureCase] = &[
        ("linux-x86_64-debian12", "x86_64-unknown-linux-gnu", Some((2, 36)), None),
        ("linux-aarch64-ubuntu2204", "aarch64-unknown-linux-gnu", Some((2, 35)), None),
        ("linux-armv7l-raspbian", "armv7-unknown-linux-gnueabihf", Some((2, 31)), None),
        ("linux-x86_64-alpine", "x86_64-unknown-linux-musl", None, None),
        ("macos-arm64", "aarch64-apple-darwin", None, Some("14.2")),
        ("macos-x86_64", "x86_64-apple-darwin", None, Some("13.6")),
        ("windows-64bit", "x86_64-pc-windows-msvc", None, None),
        ("windows-arm64", "aarch64-pc-windows-msvc", None, None),
    ];
    for (name, expected, glibc, macos) in cases {
        let t = normalize_facts(&fixture(name), WindowsAbi::Msvc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.spec.triple, *expected, "{name}");
        assert_eq!(t.glibc, glibc.map(|(major, minor)| GlibcVersion { major, minor }), "{name}");
        assert_eq!(t.spec.glibc_floor, t.glibc, "{name}");
        assert_eq!(t.macos_version.as_deref(), *macos, "{name}");
        assert!(!t.details.is_empty());
    }
    let gnu = normalize_facts(&fixture("windows-64bit"), WindowsAbi::Gnu).expect("gnu");
    assert_eq!(gnu.spec.triple, "x86_64-pc-windows-gnu");
}

#[test]
fn facts_without_prefix_and_probe_facts() {
    let f = facts(&[
        ("system", json!("Linux")),
        ("architecture", json!("AARCH64")),
        ("rustle_libc", json!("glibc")),
        ("rustle_glibc_version", json!("2.17")),
    ]);
    let t = normalize_facts(&f, WindowsAbi::Msvc).expect("ok");
    assert_eq!(t.spec.triple, "aarch64-unknown-linux-gnu");
    assert_eq!(t.glibc, Some(GlibcVersion { major: 2, minor: 17 }));
    assert_eq!(t.spec.to_string(), "aarch64-unknown-linux-gnu.2.17");
    let musl = facts(&[
        ("ansible_system", json!("Linux")),
        ("ansible_architecture", json!("x86_64")),
        ("rustle_libc", json!("musl")),
    ]);
    assert_eq!(triple(&musl), "x86_64-unknown-linux-musl");
    // A 32-bit process on 64-bit Windows reports the native machine in W6432.
    let wow = facts(&[
        ("ansible_os_family", json!("windows")),
        ("ansible_architecture", json!("32-bit")),
        ("ansible_env", json!({"PROCESSOR_ARCHITECTURE": "x86", "PROCESSOR_ARCHITEW6432": "AMD64"})),
    ]);
    assert_eq!(triple(&wow), "x86_64-pc-windows-msvc");
    let x86 = facts(&[("ansible_os_family", json!("Windows")), ("ansible_architecture", json!("32-bit"))]);
    assert_eq!(triple(&x86), "i686-pc-windows-msvc");
}

#[test]
fn unknown_values_quote_value_and_fact() {
    let sparc = facts(&[("ansible_system", json!("Linux")), ("ansible_architecture", json!("sparc64"))]);
    let err = normalize_facts(&sparc, WindowsAbi::Msvc).expect_err("unknown arch");
    assert_eq!(err, FactsError::UnknownValue { fact: "ansible_architecture".into(), value: "sparc64".into() });
    assert!(err.to_string().contains("\"sparc64\""), "{err}");
    assert!(err.to_string().contains("set rustle_target_triple"), "{err}");
    let sunos = facts(&[("ansible_system", json!("SunOS")), ("ansible_architecture", json!("i86pc"))]);
    let err = normalize_facts(&sunos, WindowsAbi::Msvc).expect_err("unknown system");
    assert!(err.to_string().contains("`ansible_system`"), "{err}");
    let missing = facts(&[("ansible_architecture", json!("x86_64"))]);
    assert_eq!(
        normalize_facts(&missing, WindowsAbi::Msvc).expect_err("no system"),
        FactsError::Missing { fact: "ansible_system".into() }
    );
    let s390_mac = facts(&[("ansible_system", json!("Darwin")), ("ansible_architecture", json!("s390x"))]);
    assert!(matches!(normalize_facts(&s390_mac, WindowsAbi::Msvc), Err(FactsError::NoTarget { .. })));
    let bad_glibc = facts(&[
        ("ansible_system", json!("Linux")),
        ("ansible_architecture", json!("x86_64")),
        ("rustle_glibc_version", json!("two")),
    ]);
    assert!(
        normalize_facts(&bad_glibc, WindowsAbi::Msvc)
            .expect_err("bad glibc")
            .to_string()
            .contains("rustle_glibc_version")
    );
}

#[test]
fn glibc_table_matches_versions_by_prefix() {
    for (distribution, version, expected) in [
        ("CentOS", "7.9.2009", Some((2, 17))),
        ("Debian", "12", Some((2, 36))),
        ("Amazon", "2023", Some((2, 34))),
        ("Amazon", "2", Some((2, 26))),
        ("Debian", "9", None),
    ] {
        let f = facts(&[
            ("ansible_system", json!("Linux")),
            ("ansible_architecture", json!("x86_64")),
            ("ansible_distribution", json!(distribution)),
            ("ansible_distribution_version", json!(version)),
        ]);
        let t = normalize_facts(&f, WindowsAbi::Msvc).expect("ok");
        assert_eq!(t.glibc, expected.map(|(major, minor)| GlibcVersion { major, minor }), "{distribution} {version}");
    }
}

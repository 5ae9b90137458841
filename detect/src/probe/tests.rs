//! Probe parsing (strict), ssh failure classification, and the real probe
//! script run locally on this machine.

use super::*;
use crate::facts::{WindowsAbi, normalize_facts};

const GLIBC: &str = "Last login: yesterday\nRUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=x86_64\nkernel=6.1.0\n\
gnu_libc_version=glibc 2.36\nldd=ldd (Debian GLIBC 2.36-9+deb12u4) 2.36 Copyright\nendian=1\n\
cpu_flags= fpu vme sse2 avx2\nos_id=debian\nos_version_id=12\nRUSTLE_PROBE_END\n";

#[test]
fn parses_a_glibc_linux_answer() {
    let info = parse_probe_output("h", GLIBC).expect("valid");
    assert_eq!(info.architecture, Architecture::X86_64);
    assert_eq!(info.os_family, OsFamily::Linux);
    assert_eq!(info.libc_type, Some(LibcType::Glibc));
    assert_eq!(info.libc_version.as_deref(), Some("2.36"));
    assert_eq!(info.cpu_features, ["fpu", "vme", "sse2", "avx2"]);
    assert_eq!(info.os_version, "12");
    assert_eq!(info.endianness, Endianness::Little);
    let t = normalize_facts(&info.to_facts(), WindowsAbi::Msvc).expect("normalises");
    assert_eq!(t.spec.to_string(), "x86_64-unknown-linux-gnu.2.36");
}

#[test]
fn parses_musl_by_ldd_and_by_loader() {
    let by_ldd =
        "RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=aarch64\nldd=musl libc (aarch64) Version 1.2.4 \nRUSTLE_PROBE_END";
    let info = parse_probe_output("h", by_ldd).expect("valid");
    assert_eq!(info.libc_type, Some(LibcType::Musl));
    assert_eq!(info.libc_version.as_deref(), Some("1.2.4"));
    assert_eq!(
        normalize_facts(&info.to_facts(), WindowsAbi::Msvc).expect("ok").spec.triple,
        "aarch64-unknown-linux-musl"
    );
    let by_loader =
        "RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=armv7l\nmusl_loader=/lib/ld-musl-armhf.so.1\nRUSTLE_PROBE_END";
    let info = parse_probe_output("h", by_loader).expect("valid");
    assert_eq!(info.libc_type, Some(LibcType::Musl));
    assert_eq!(
        normalize_facts(&info.to_facts(), WindowsAbi::Msvc).expect("ok").spec.triple,
        "armv7-unknown-linux-musleabihf"
    );
}

#[test]
fn parses_windows_and_darwin_answers() {
    let windows = "RUSTLE_PROBE_BEGIN 1\r\nos=Windows\r\nmachine=x86\r\nwow64_machine=AMD64\r\nos_version_id=10.0.20348.0\r\nRUSTLE_PROBE_END\r\n";
    let info = parse_probe_output("w", windows).expect("valid");
    assert_eq!(info.os_family, OsFamily::Windows);
    assert_eq!(info.architecture, Architecture::X86_64);
    assert_eq!(normalize_facts(&info.to_facts(), WindowsAbi::Msvc).expect("ok").spec.triple, "x86_64-pc-windows-msvc");
    let mac = "RUSTLE_PROBE_BEGIN 1\nos=Darwin\nmachine=arm64\nkernel=23.2.0\nmacos_version=14.2.1\nRUSTLE_PROBE_END\n";
    let info = parse_probe_output("m", mac).expect("valid");
    assert_eq!(info.os_version, "14.2.1");
    let t = normalize_facts(&info.to_facts(), WindowsAbi::Msvc).expect("ok");
    assert_eq!(t.spec.triple, "aarch64-apple-darwin");
    assert_eq!(t.macos_version.as_deref(), Some("14.2"));
    let big =
        "RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=s390x\ngnu_libc_version=glibc 2.28\nendian=256\nRUSTLE_PROBE_END\n";
    assert_eq!(parse_probe_output("z", big).expect("valid").endianness, Endianness::Big);
}

#[test]
fn garbage_is_an_error_quoting_it() {
    for (output, reason) in [
        ("Welcome to the appliance shell\n% unknown command", "no `RUSTLE_PROBE_BEGIN 1` line"),
        ("RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=x86_64\n", "cut short"),
        ("RUSTLE_PROBE_BEGIN 1\nos=Linux\nhello world\nRUSTLE_PROBE_END", "not key=value"),
        ("RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=x86_64\nshoe_size=44\nRUSTLE_PROBE_END", "unknown key"),
        ("RUSTLE_PROBE_BEGIN 1\nos=Linux\nRUSTLE_PROBE_END", "no `machine=`"),
        ("RUSTLE_PROBE_BEGIN 1\nos=Li;nux\nmachine=x\nRUSTLE_PROBE_END", "is not a name"),
        (
            "RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=x86_64\ngnu_libc_version=glibc 2.36\nendian=7\nRUSTLE_PROBE_END",
            "neither 1 nor 256",
        ),
    ] {
        let err = parse_probe_output("gw", output).expect_err(output);
        let text = err.to_string();
        assert!(matches!(err, ProbeError::Garbage { .. }), "{text}");
        assert!(text.contains(reason), "{output:?}: {text}");
        assert!(text.contains("gw"), "{text}");
    }
    let err = parse_probe_output("x", "RUSTLE_PROBE_BEGIN 1\nos=Linux\nmachine=x86_64\nRUSTLE_PROBE_END")
        .expect_err("no libc");
    assert!(matches!(err, ProbeError::UnknownLibc { .. }), "{err}");
    let long = "x".repeat(2000);
    let text = parse_probe_output("x", &long).expect_err("garbage").to_string();
    assert!(text.len() < 600, "output is cut: {}", text.len());
}

#[test]
fn classifies_ssh_failures() {
    let cases = [
        ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "Unreachable"),
        ("Connection timed out during banner exchange\nConnection to 127.0.0.1 port 2 timed out", "Unreachable"),
        ("ssh: Could not resolve hostname nohost: Name or service not known", "Unreachable"),
        ("@@@@\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.", "HostKey"),
        ("root@127.0.0.1: Permission denied (publickey).", "Authentication"),
        ("something else entirely", "Ssh"),
    ];
    for (stderr, kind) in cases {
        let err = classify_ssh_failure("h", stderr);
        assert!(format!("{err:?}").starts_with(kind), "{stderr}: {err:?}");
    }
    let err = classify_ssh_failure("h", "@@@\n@ WARNING @\nHost key verification failed.");
    assert!(err.to_string().contains("ssh-keygen -R h"), "{err}");
}

#[test]
fn powershell_encoding() {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
    // "ab" in UTF-16LE.
    assert_eq!(encode_powershell("ab"), "YQBiAA==");
}

#[test]
fn ssh_command_carries_the_connection() {
    let connection = ConnectionConfig {
        port: Some(2222),
        username: Some("deploy".into()),
        private_key_file: Some("/k".into()),
        ssh_args: vec!["-o".into(), "ProxyJump=bastion".into()],
        timeout: Duration::from_secs(7),
        ..ConnectionConfig::ssh("10.0.0.1")
    };
    let spec = SshProber::default().ssh_command(&connection, "sh -s");
    let args: Vec<String> = spec.get_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let joined = args.join(" ");
    for expected in
        ["BatchMode=yes", "ConnectTimeout=7", "-p 2222", "-l deploy", "-i /k", "ProxyJump=bastion", "-- 10.0.0.1 sh -s"]
    {
        assert!(joined.contains(expected), "{expected}: {joined}");
    }
}

/// The real script on this machine through the local connection.
#[tokio::test]
async fn local_probe_of_this_machine() {
    let connection = ConnectionConfig { method: ConnectionMethod::Local, ..ConnectionConfig::ssh("localhost") };
    let info = SshProber::default().probe(&connection).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.os_family, OsFamily::Linux);
    let uname = std::process::Command::new("uname").arg("-m").output().expect("uname");
    assert_eq!(info.machine, String::from_utf8_lossy(&uname.stdout).trim());
    assert_eq!(info.libc_type, Some(LibcType::Glibc));
    assert!(info.libc_version.is_some());
    assert!(!info.cpu_features.is_empty());
    let t = normalize_facts(&info.to_facts(), WindowsAbi::Msvc).expect("normalises");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(t.spec.triple, "x86_64-unknown-linux-gnu");
    }
}

#[tokio::test]
async fn unsupported_connections_are_refused() {
    let connection = ConnectionConfig { method: ConnectionMethod::WinRm, ..ConnectionConfig::ssh("w") };
    let err = SshProber::default().probe(&connection).await.expect_err("winrm");
    assert!(err.to_string().contains("connection `winrm` is not supported"), "{err}");
}

//! Test environment helpers: sshd hosts started by scripts/start-sshd.sh,
//! with an explicit, printed skip.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The hosts every ssh test uses (one set, so parallel tests agree on the
/// generated ssh config).
pub const HOSTS: &[&str] =
    &["good:normal", "good2:normal", "garbage:garbage", "musl:musl", "windows:windows", "wrongkey:wrongkey"];

/// sshd test hosts on loopback.
pub struct SshHosts {
    /// The directory with keys and configs.
    pub dir: PathBuf,
    /// `ssh -F` file naming every host.
    pub config: PathBuf,
    /// Port of each host.
    pub ports: BTreeMap<String, u16>,
}

/// `None` (after printing why) when RUSTLE_SKIP_SSH_TESTS=1.
pub fn sshd_hosts() -> Option<&'static SshHosts> {
    if std::env::var("RUSTLE_SKIP_SSH_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: sshd tests skipped because RUSTLE_SKIP_SSH_TESTS=1");
        return None;
    }
    static HOSTS_STARTED: OnceLock<SshHosts> = OnceLock::new();
    Some(HOSTS_STARTED.get_or_init(start))
}

fn start() -> SshHosts {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-sshd.sh");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rustle-detect-sshd");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .args(HOSTS)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/start-sshd.sh failed (it starts the sshd test hosts; run it by hand to see why, or set RUSTLE_SKIP_SSH_TESTS=1 to skip): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut ports = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [name, _mode, port] = fields.as_slice() {
            ports.insert((*name).to_owned(), port.parse().expect("port"));
        }
    }
    SshHosts { config: dir.join("ssh_config"), dir, ports }
}

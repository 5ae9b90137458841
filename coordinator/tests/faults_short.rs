//! The fault suite's short mode in CI: runs `scripts/faults.sh --short` (real agents, real QUIC and certificates, a network namespace with tc netem, cargo fuzz) and fails unless it exits 0 and every row printed its `FAULT <row> PASS:` figure line.

use std::path::Path;
use std::process::Command;

const ROWS: [&str; 6] = ["R1", "R2", "R2b", "R3", "R4", "R5"];

#[test]
fn the_fault_suite_short_mode_passes_every_row() {
    if std::env::var("RUSTLE_SKIP_FAULT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: the fault suite (scripts/faults.sh --short) skipped because RUSTLE_SKIP_FAULT_TESTS=1");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().expect("tmp");
    let out = Command::new("bash")
        .arg(root.join("scripts/faults.sh"))
        .arg("--short")
        .current_dir(&root)
        .env("FAULTS_DIR", work.path().join("faults"))
        .output()
        .expect("run scripts/faults.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    println!("{stdout}");
    for row in ROWS {
        let prefix = format!("FAULT {row} PASS: ");
        assert!(
            stdout.lines().any(|line| line.starts_with(&prefix)),
            "row {row} did not pass (needs root, iproute2, faketime, cargo-fuzz and nightly: scripts/setup.sh; \
             RUSTLE_SKIP_FAULT_TESTS=1 skips it):\n{stdout}"
        );
    }
    assert!(out.status.success(), "scripts/faults.sh --short exited {:?}:\n{stdout}", out.status);
}

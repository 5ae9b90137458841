//! Probing real sshd hosts on loopback (started by scripts/start-sshd.sh):
//! a plain host, a musl host, a Windows-like host, garbage, a host key
//! mismatch, a refused port, a silent port, the overall deadline, and
//! parallel detection of an inventory with fact cache write-back.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use rustle_detect::{
    ConnectionConfig, DetectOptions, EvidenceSource, InventoryFormat, ParsedInventory, ProbeError,
    TargetDetectionError, TargetDetector,
};
use rustle_targets::{Architecture, LibcType, OsFamily};

fn via_config(config: &Path) -> ConnectionConfig {
    ConnectionConfig {
        ssh_args: vec!["-F".into(), config.display().to_string()],
        timeout: Duration::from_secs(5),
        ..ConnectionConfig::ssh("unused")
    }
}

#[tokio::test]
async fn probes_a_real_host() {
    let Some(hosts) = common::sshd_hosts() else { return };
    let detector = TargetDetector::new();
    let info =
        detector.probe_host_architecture("good", &via_config(&hosts.config)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.os_family, OsFamily::Linux);
    assert_eq!(info.libc_type, Some(LibcType::Glibc));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(info.architecture, Architecture::X86_64);
        let spec = detector.detect_from_facts(&info.to_facts()).expect("normalises");
        assert_eq!(spec.triple, "x86_64-unknown-linux-gnu");
        assert!(spec.glibc_floor.is_some());
    }
}

#[tokio::test]
async fn probes_a_musl_host() {
    let Some(hosts) = common::sshd_hosts() else { return };
    let detector = TargetDetector::new();
    let info =
        detector.probe_host_architecture("musl", &via_config(&hosts.config)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.libc_type, Some(LibcType::Musl));
    assert_eq!(info.libc_version.as_deref(), Some("1.2.4"));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(detector.detect_from_facts(&info.to_facts()).expect("ok").triple, "x86_64-unknown-linux-musl");
    }
}

#[tokio::test]
async fn falls_back_to_powershell_on_windows() {
    let Some(hosts) = common::sshd_hosts() else { return };
    let detector = TargetDetector::new();
    let info =
        detector.probe_host_architecture("windows", &via_config(&hosts.config)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.os_family, OsFamily::Windows);
    assert_eq!(info.os_version, "10.0.20348.0");
    assert_eq!(detector.detect_from_facts(&info.to_facts()).expect("ok").triple, "x86_64-pc-windows-msvc");
}

#[tokio::test]
async fn garbage_answer_is_a_clear_error() {
    let Some(hosts) = common::sshd_hosts() else { return };
    let err = TargetDetector::new()
        .probe_host_architecture("garbage", &via_config(&hosts.config))
        .await
        .expect_err("garbage");
    let text = err.to_string();
    assert!(matches!(err, ProbeError::Garbage { .. }), "{text}");
    assert!(text.contains("appliance shell"), "{text}");
    assert!(text.contains("garbage"), "{text}");
}

#[tokio::test]
async fn host_key_mismatch_is_refused() {
    let Some(hosts) = common::sshd_hosts() else { return };
    let err = TargetDetector::new()
        .probe_host_architecture("wrongkey", &via_config(&hosts.config))
        .await
        .expect_err("mismatch");
    let text = err.to_string();
    assert!(matches!(err, ProbeError::HostKey { .. }), "{text}");
    assert!(text.contains("Host key verification failed"), "{text}");
    assert!(text.contains("known_hosts"), "{text}");
}

/// A port nobody listens on: refused at once.
#[tokio::test]
async fn refused_port_is_unreachable() {
    if common::sshd_hosts().is_none() {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind").port();
    let connection = ConnectionConfig {
        port: Some(port),
        ssh_args: vec!["-o".into(), "UserKnownHostsFile=/dev/null".into()],
        ..ConnectionConfig::ssh("127.0.0.1")
    };
    let started = Instant::now();
    let err = TargetDetector::new().probe_host_architecture("127.0.0.1", &connection).await.expect_err("refused");
    assert!(matches!(err, ProbeError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A listener that never answers: ssh's ConnectTimeout ends it, then the
/// overall deadline when that is shorter.
#[tokio::test]
async fn silent_host_times_out_within_the_bound() {
    if common::sshd_hosts().is_none() {
        return;
    }
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let connection = ConnectionConfig {
        port: Some(port),
        timeout: Duration::from_secs(2),
        ssh_args: vec!["-o".into(), "UserKnownHostsFile=/dev/null".into()],
        ..ConnectionConfig::ssh("127.0.0.1")
    };
    let started = Instant::now();
    let err = TargetDetector::new().probe_host_architecture("127.0.0.1", &connection).await.expect_err("silent");
    assert!(matches!(err, ProbeError::Unreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());

    let patient = ConnectionConfig { timeout: Duration::from_secs(60), ..connection };
    let started = Instant::now();
    let err = TargetDetector::new()
        .with_probe_deadline(Duration::from_millis(1500))
        .probe_host_architecture("127.0.0.1", &patient)
        .await
        .expect_err("deadline");
    assert!(matches!(err, ProbeError::TimedOut { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    drop(silent);
}

/// The whole inventory in parallel: failures stay with their host, probe
/// results go to the fact cache, and the next run needs no probe.
#[tokio::test]
async fn parallel_inventory_probe_and_fact_cache_write_back() {
    let Some(hosts) = common::sshd_hosts() else { return };
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let text = format!(
        "[fleet]\ngood\ngood2\nmusl\nwindows\ngarbage\nwrongkey\n\
         silent ansible_host=127.0.0.1 ansible_port={silent_port} ansible_timeout=2\n\
         pinned rustle_target_triple=aarch64-unknown-linux-gnu\n\
         [fleet:vars]\nansible_ssh_common_args='-F {}'\n",
        hosts.config.display()
    );
    let inventory = ParsedInventory::parse(&text, InventoryFormat::Ini, Path::new("fleet.ini")).expect("parses");
    let cache = tempfile::tempdir().expect("tempdir");
    let options = DetectOptions {
        probe: true,
        fact_cache_dir: Some(cache.path().to_owned()),
        max_parallel_probes: 3,
        ..DetectOptions::default()
    };
    let started = Instant::now();
    let plan = TargetDetector::new().detect_from_inventory(&inventory, &options).await.expect("not strict");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let table = plan.render_table();
    if cfg!(target_arch = "x86_64") {
        assert_eq!(plan.hosts_by_triple["x86_64-unknown-linux-gnu"], ["good", "good2"], "{table}");
        assert_eq!(plan.hosts_by_triple["x86_64-unknown-linux-musl"], ["musl"], "{table}");
    }
    assert_eq!(plan.hosts_by_triple["x86_64-pc-windows-msvc"], ["windows"], "{table}");
    assert_eq!(plan.hosts_by_triple["aarch64-unknown-linux-gnu"], ["pinned"], "{table}");
    let unresolved: Vec<&str> = plan.unresolved.keys().map(String::as_str).collect();
    assert_eq!(unresolved, ["garbage", "silent", "wrongkey"], "{table}");
    assert!(matches!(
        &plan.unresolved["silent"],
        TargetDetectionError::Probe { source: ProbeError::Unreachable { .. }, .. }
    ));
    assert!(matches!(&plan.evidence["good"].source, EvidenceSource::Probe { cached_to: Some(_) }));
    assert!(cache.path().join("good").is_file());
    assert!(!cache.path().join("garbage").exists());

    // Second run: no probe, the cache answers.
    let offline = DetectOptions { probe: false, ..options };
    let again = TargetDetector::new().detect_from_inventory(&inventory, &offline).await.expect("ok");
    assert_eq!(again.hosts_by_triple, plan.hosts_by_triple);
    assert!(matches!(&again.evidence["musl"].source, EvidenceSource::FactCache { .. }));
    assert!(again.unresolved["garbage"].to_string().contains("probing disabled"));
    drop(silent);
}

//! Real Ansible facts from this machine (`ansible localhost -m setup -c
//! local`, ansible-core from scripts/setup-ansible.sh) through its jsonfile
//! fact cache and `--tree` output, compared with the live probe.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustle_detect::{
    ConnectionConfig, ConnectionMethod, DetectOptions, EvidenceSource, FactCache, Facts, InventoryFormat,
    ParsedInventory, TargetDetector, WindowsAbi, normalize_facts,
};

/// The `ansible` executable, or `None` (printed) when skipped.
fn ansible() -> Option<PathBuf> {
    if std::env::var("RUSTLE_SKIP_ANSIBLE_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: Ansible tests skipped because RUSTLE_SKIP_ANSIBLE_TESTS=1");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-ansible.sh");
    let output =
        Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/setup-ansible.sh failed (it installs ansible-core in a venv; or set RUSTLE_SKIP_ANSIBLE_TESTS=1): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8_lossy(&output.stdout).lines().last().map(str::trim).map(PathBuf::from);
    Some(path.expect("setup-ansible.sh prints the ansible path"))
}

#[tokio::test]
async fn real_setup_facts_match_the_probe() {
    let Some(ansible) = ansible() else { return };
    let python = ansible.with_file_name("python");
    let work = tempfile::tempdir().expect("tempdir");
    let cache_dir = work.path().join("facts");
    let tree = work.path().join("tree");
    let output = Command::new(&ansible)
        .args(["all", "-i", "localhost,", "-c", "local", "-m", "setup", "-e"])
        .arg(format!("ansible_python_interpreter={}", python.display()))
        .arg("--tree")
        .arg(&tree)
        .env("ANSIBLE_CACHE_PLUGIN", "jsonfile")
        .env("ANSIBLE_CACHE_PLUGIN_CONNECTION", &cache_dir)
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOME", work.path().join("home"))
        .output()
        .expect("run ansible");
    assert!(
        output.status.success(),
        "ansible -m setup failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The fact cache, as Ansible wrote it (the layout depends on its version).
    let cached = FactCache::new(&cache_dir).read("localhost").expect("readable").expect("ansible cached facts");
    let from_cache = normalize_facts(&cached, WindowsAbi::Msvc).unwrap_or_else(|e| panic!("{e}"));
    // `--tree`: the module result, facts under `ansible_facts`.
    let text = std::fs::read_to_string(tree.join("localhost")).expect("tree output");
    let result: Facts = serde_json::from_str(&text).expect("JSON");
    let from_tree = normalize_facts(&result, WindowsAbi::Msvc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_cache.spec, from_tree.spec);

    // The live probe of the same machine agrees on the triple.
    let local = ConnectionConfig { method: ConnectionMethod::Local, ..ConnectionConfig::ssh("localhost") };
    let detector = TargetDetector::new();
    let probed = detector.probe_host_architecture("localhost", &local).await.unwrap_or_else(|e| panic!("{e}"));
    let from_probe = detector.detect_from_facts(&probed.to_facts()).expect("normalises");
    assert_eq!(from_cache.spec.triple, from_probe.triple);
    if let (Some(table), Some(probe)) = (from_cache.glibc, from_probe.glibc_floor) {
        assert_eq!(table, probe, "distribution table vs getconf");
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(from_cache.spec.triple, "x86_64-unknown-linux-gnu");
    }

    // And through the detector with `--facts DIR`.
    let inventory =
        ParsedInventory::parse("localhost ansible_connection=local\n", InventoryFormat::Ini, Path::new("i"))
            .expect("parses");
    let options = DetectOptions { fact_cache_dir: Some(cache_dir.clone()), ..DetectOptions::default() };
    let plan = detector.detect_from_inventory(&inventory, &options).await.expect("ok");
    assert!(plan.is_complete(), "{}", plan.render_table());
    assert!(matches!(plan.evidence["localhost"].source, EvidenceSource::FactCache { .. }));
}

//! End to end: `rustle-cross detect` on a mixed inventory groups hosts by
//! triple with their evidence and names the unresolved ones, and
//! `rustle-cross build --inventory` builds one validated binary per group
//! and writes the host -> binary manifest, with a configured substitute
//! for a target nothing here builds.

mod common;
#[path = "../../detect/tests/netns_support/mod.rs"]
mod netns_support;

use common::{example_template, json, require_cross_tools, rustle_cross, stderr};
use netns_support::NetnsHosts;

const INVENTORY: &str = "\
[web]
web1 ansible_host=10.0.0.1 rustle_target_triple=x86_64-unknown-linux-gnu

[pis]
pi1 ansible_host=10.0.0.11 ansible_architecture=aarch64 ansible_system=Linux ansible_os_family=Debian
pi2 ansible_host=10.0.0.12 ansible_architecture=arm64 ansible_system=Linux ansible_os_family=Debian

[macs]
mac1 ansible_architecture=arm64 ansible_system=Darwin ansible_os_family=Darwin ansible_distribution_version=14.2

[windows]
win1 ansible_os_family=Windows ansible_architecture=64-bit

[mystery]
ghost ansible_host=10.0.0.99
";

fn inventory() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("hosts.ini"), INVENTORY).expect("write inventory");
    dir
}

#[test]
fn detect_groups_hosts_and_names_the_unresolved() {
    let dir = inventory();
    let inv = dir.path().join("hosts.ini");
    let inv = inv.to_str().expect("utf-8");

    let out = rustle_cross(&["detect", "-i", inv, "--json"]);
    assert_eq!(out.status.code(), Some(1), "an unresolved host fails the run");
    let plan = json(&out);
    let group = |triple: &str| plan["hosts_by_triple"][triple].clone();
    assert_eq!(group("x86_64-unknown-linux-gnu"), serde_json::json!(["web1"]), "{plan:#}");
    assert_eq!(group("aarch64-unknown-linux-gnu"), serde_json::json!(["pi1", "pi2"]), "{plan:#}");
    assert_eq!(group("aarch64-apple-darwin"), serde_json::json!(["mac1"]), "{plan:#}");
    assert_eq!(group("x86_64-pc-windows-msvc"), serde_json::json!(["win1"]), "{plan:#}");
    let ghost = plan["unresolved"]["ghost"].as_str().expect("ghost is unresolved");
    assert!(ghost.contains("cannot determine target for ghost"), "{ghost}");
    assert!(ghost.contains("rustle_target_triple") && ghost.contains("--probe"), "{ghost}");

    let table = rustle_cross(&["detect", "-i", inv, "--allow-unresolved"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    for needle in ["web1", "pi2", "mac1", "aarch64-apple-darwin", "ghost"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn build_from_inventory_writes_one_binary_per_group_and_the_manifest() {
    if !require_cross_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    let dir = inventory();
    let inv = dir.path().join("hosts.ini");
    let out_dir = tempfile::tempdir().expect("tmp");
    let template = example_template();

    // Unresolved hosts stop the build before anything is compiled.
    let refused = rustle_cross(&[
        "build",
        template.to_str().expect("utf-8"),
        "--inventory",
        inv.to_str().expect("utf-8"),
        "--out",
        out_dir.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("have no target"), "{}", stderr(&refused));
    assert!(!out_dir.path().join("manifest.json").exists());

    let out = rustle_cross(&[
        "build",
        template.to_str().expect("utf-8"),
        "--inventory",
        inv.to_str().expect("utf-8"),
        "--limit",
        "web:pis",
        "--json",
        "--out",
        out_dir.path().to_str().expect("utf-8"),
    ]);
    let report = json(&out);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["results"].as_array().map(Vec::len), Some(2), "one build per triple: {report:#}");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("manifest.json")).expect("manifest written"))
            .expect("manifest is JSON");
    let hosts = manifest["hosts"].as_array().expect("hosts");
    let entry = |host: &str| hosts.iter().find(|h| h["host"] == host).cloned().unwrap_or_else(|| panic!("{host}"));
    let (pi1, pi2, web1) = (entry("pi1"), entry("pi2"), entry("web1"));
    assert_eq!(pi1["triple"], "aarch64-unknown-linux-gnu");
    assert_eq!(pi1["file"], pi2["file"], "hosts of one triple share one binary");
    assert_eq!(pi1["sha256"], pi2["sha256"]);
    assert_ne!(pi1["sha256"], web1["sha256"]);
    assert_eq!(web1["triple"], "x86_64-unknown-linux-gnu");
    for h in [&pi1, &web1] {
        let file = std::path::Path::new(h["file"].as_str().expect("file"));
        let data = std::fs::read(file).expect("binary exists");
        use sha2::Digest;
        assert_eq!(h["sha256"], format!("{:x}", sha2::Sha256::digest(&data)));
    }
    assert!(hosts.iter().all(|h| h["host"] != "mac1"), "--limit keeps other groups out");
}

#[test]
fn detect_probes_hosts_with_their_own_addresses() {
    let Some(hosts) = NetnsHosts::up() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("netns.ini");
    std::fs::write(&inv, hosts.inventory_text(2)).expect("inventory");
    let facts = dir.path().join("facts");
    let (inv, facts) = (inv.to_str().expect("utf-8"), facts.to_str().expect("utf-8"));

    // Without --probe nothing is known about these hosts: no guessing.
    let out = rustle_cross(&["detect", "-i", inv, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["unresolved"].as_object().map(|u| u.len()), Some(3));

    let out = rustle_cross(&["detect", "-i", inv, "--probe", "--facts", facts, "--json"]);
    let plan = json(&out);
    assert!(out.status.success(), "{plan:#}");
    assert_eq!(plan["hosts_by_triple"]["x86_64-unknown-linux-gnu"], serde_json::json!(["node1", "node2", "node3"]));
    for node in ["node1", "node2", "node3"] {
        assert_eq!(plan["evidence"][node]["source"]["kind"], "probe", "{plan:#}");
    }

    // The probes were written back: the next run needs no probe.
    let out = rustle_cross(&["detect", "-i", inv, "--facts", facts, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["evidence"]["node2"]["source"]["kind"], "fact_cache", "{:#}", json(&out));

    // An unreachable host fails alone, within its bound.
    hosts.blackhole(2);
    let started = std::time::Instant::now();
    let out = rustle_cross(&["detect", "-i", inv, "--probe", "--json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let plan = json(&out);
    let error = plan["unresolved"]["node2"].as_str().expect("node2 unresolved");
    assert!(error.contains("node2"), "{error}");
    assert_eq!(plan["hosts_by_triple"]["x86_64-unknown-linux-gnu"], serde_json::json!(["node1", "node3"]), "{plan:#}");
}

/// A Windows host is detected as x86_64-pc-windows-msvc, which nothing on
/// a Linux machine builds: the build says so, naming the way out; with the
/// substitute allowed (`--substitute`), the GNU target is built instead,
/// validated and run under Wine, and the summary, `--json` and the
/// manifest say that win1 gets the substitute.
#[test]
fn a_windows_host_gets_its_configured_substitute_and_every_report_says_so() {
    if !require_cross_tools(&["x86_64-w64-mingw32-gcc"]) {
        return;
    }
    let dir = inventory();
    let inv = dir.path().join("hosts.ini");
    let out_dir = tempfile::tempdir().expect("tmp");
    let template = example_template();
    let base = [
        "build",
        template.to_str().expect("utf-8"),
        "--inventory",
        inv.to_str().expect("utf-8"),
        "--limit",
        "windows",
        "--out",
        out_dir.path().to_str().expect("utf-8"),
    ];

    let refused = rustle_cross(&[&base[..], &["--json"]].concat());
    assert_eq!(refused.status.code(), Some(1), "nothing builds msvc here");
    let report = json(&refused);
    let result = &report["results"][0];
    assert_eq!(result["target"], "x86_64-pc-windows-msvc", "{result:#}");
    assert_eq!(result["status"], "unavailable", "{result:#}");
    assert!(result.get("substitute_for").is_none(), "no substitute unless allowed: {result:#}");

    let substitute = ["--substitute", "x86_64-pc-windows-msvc=x86_64-pc-windows-gnu", "--smoke-test"];
    let built = rustle_cross(&[&base[..], &substitute[..], &["--json"]].concat());
    let report = json(&built);
    assert!(built.status.success(), "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["target"], "x86_64-pc-windows-gnu", "{result:#}");
    assert_eq!(result["status"], "ok", "{result:#}");
    assert_eq!(result["substitute_for"]["requested"], "x86_64-pc-windows-msvc", "{result:#}");
    let reason = result["substitute_for"]["reason"].as_str().expect("reason");
    assert!(reason.contains("msvc") || reason.contains("MSVC"), "says why msvc cannot be built: {reason}");
    assert_eq!(result["validation"]["format"], "Pe", "{result:#}");
    assert_eq!(result["smoke_test"]["result"], "ok", "runs under wine: {result:#}");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("manifest.json")).expect("manifest written"))
            .expect("manifest is JSON");
    let win1 = manifest["hosts"].as_array().expect("hosts").iter().find(|h| h["host"] == "win1").expect("win1").clone();
    assert_eq!(win1["triple"], "x86_64-pc-windows-gnu", "{manifest:#}");
    assert_eq!(win1["requested_triple"], "x86_64-pc-windows-msvc", "{manifest:#}");
    assert_eq!(win1["substitute_for"]["requested"], "x86_64-pc-windows-msvc", "{manifest:#}");
    assert_eq!(win1["sha256"], result["sha256"], "{manifest:#}");

    // The summary (cached now) says it too, in the table and a note.
    let summary = rustle_cross(&[&base[..], &substitute[..]].concat());
    assert!(summary.status.success(), "{}", stderr(&summary));
    let table = String::from_utf8_lossy(&summary.stdout);
    assert!(table.contains("x86_64-pc-windows-gnu (for x86_64-pc-windows-msvc)"), "{table}");
    let notes = stderr(&summary);
    assert!(
        notes.contains(
            "note: x86_64-pc-windows-gnu: built instead of x86_64-pc-windows-msvc (its configured substitute)"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("building the configured substitute x86_64-pc-windows-gnu"),
        "the progress says it: {notes}"
    );

    // A substitute that is itself substituted, or unknown, is refused up front.
    let chained = rustle_cross(
        &[
            &base[..],
            &["--substitute", "x86_64-pc-windows-msvc=x86_64-pc-windows-gnu"],
            &["--substitute", "x86_64-pc-windows-gnu=i686-pc-windows-gnu"],
        ]
        .concat(),
    );
    assert!(!chained.status.success());
    assert!(stderr(&chained).contains("one step only"), "{}", stderr(&chained));
    let unknown =
        rustle_cross(&[&base[..], &["--substitute", "x86_64-pc-windows-msvc=x86_64-pc-windoze-gnu"]].concat());
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("x86_64-pc-windoze-gnu"), "{}", stderr(&unknown));
}

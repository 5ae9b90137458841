//! Detection without the network: a mixed inventory (explicit triples,
//! host-variable facts, rustle host_facts, a fact cache), conflicts,
//! unresolved hosts, the table and the JSON.

use std::path::Path;

use rustle_detect::{
    DetectOptions, EvidenceSource, InventoryFormat, ParsedInventory, TargetDetectionError, TargetDetector,
};
use rustle_targets::GlibcVersion;

const INVENTORY: &str = r#"
[web]
web1 ansible_host=10.0.0.1 ansible_system=Linux ansible_architecture=x86_64 ansible_distribution=Debian ansible_distribution_version=12.5
web2 ansible_host=10.0.0.2 ansible_system=Linux ansible_architecture=amd64 ansible_distribution=Ubuntu ansible_distribution_version=20.04
[arm]
pi1 rustle_target_triple=armv7-unknown-linux-gnueabihf
pi2 rustle_target_triple=aarch64-unknown-linux-gnu.2.17 ansible_system=Linux ansible_architecture=x86_64
cached1
[arm:vars]
rustle_single_target=yes
[misc]
mystery
typo rustle_target_triple=aarch64-unknown-linux-gnux
sparc ansible_system=Linux ansible_architecture=sparc64
"#;

fn inventory() -> ParsedInventory {
    ParsedInventory::parse(INVENTORY, InventoryFormat::Ini, Path::new("mixed.ini")).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn mixed_inventory_plan() {
    let cache = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        cache.path().join("cached1"),
        r#"{"ansible_system": "Linux", "ansible_architecture": "aarch64", "ansible_distribution": "CentOS", "ansible_distribution_version": "7.9.2009"}"#,
    )
    .expect("write");
    let options = DetectOptions { fact_cache_dir: Some(cache.path().to_owned()), ..DetectOptions::default() };
    let plan = TargetDetector::new().detect_from_inventory(&inventory(), &options).await.expect("not strict");

    let hosts = |t: &str| plan.hosts_by_triple.get(t).cloned().unwrap_or_default();
    assert_eq!(hosts("x86_64-unknown-linux-gnu"), ["web1", "web2"]);
    assert_eq!(hosts("aarch64-unknown-linux-gnu"), ["cached1", "pi2"]);
    assert_eq!(hosts("armv7-unknown-linux-gnueabihf"), ["pi1"]);
    assert_eq!(plan.glibc_floor_by_triple["x86_64-unknown-linux-gnu"], GlibcVersion { major: 2, minor: 31 });
    assert_eq!(plan.glibc_floor_by_triple["aarch64-unknown-linux-gnu"], GlibcVersion { major: 2, minor: 17 });
    let aarch64 = plan.targets.iter().find(|t| t.triple == "aarch64-unknown-linux-gnu").expect("target");
    assert_eq!(aarch64.to_string(), "aarch64-unknown-linux-gnu.2.17");
    assert_eq!(plan.targets.len(), 3);

    assert!(matches!(plan.evidence["web1"].source, EvidenceSource::HostVariables));
    assert!(
        matches!(&plan.evidence["cached1"].source, EvidenceSource::FactCache { file } if file.ends_with("cached1"))
    );
    assert!(
        matches!(&plan.evidence["pi1"].source, EvidenceSource::Explicit { variable } if variable == "rustle_target_triple")
    );
    assert_eq!(plan.evidence["web1"].address, "10.0.0.1");

    assert_eq!(plan.unresolved.len(), 3);
    let mystery = plan.unresolved["mystery"].to_string();
    assert_eq!(
        mystery,
        "cannot determine target for mystery: no target_triple, no cached facts, probing disabled; set rustle_target_triple or run with --probe"
    );
    assert!(matches!(plan.unresolved["typo"], TargetDetectionError::InvalidTriple { .. }));
    assert!(plan.unresolved["typo"].to_string().contains("did you mean `aarch64-unknown-linux-gnu`"));
    assert!(plan.unresolved["sparc"].to_string().contains("\"sparc64\" of fact `ansible_architecture`"));

    // pi2: explicit aarch64 against x86_64 facts; arm mixes two targets.
    let conflicts: Vec<String> = plan.conflicts.iter().map(ToString::to_string).collect();
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    assert!(conflicts.iter().any(|c| c.contains("pi2: rustle_target_triple says aarch64-unknown-linux-gnu but ansible_* host variables say x86_64-unknown-linux-gnu")), "{conflicts:?}");
    assert!(conflicts.iter().any(|c| c.starts_with("group arm must have one target")), "{conflicts:?}");

    let table = plan.render_table();
    assert!(table.starts_with("HOST"), "{table}");
    assert!(table.contains("# x86_64-unknown-linux-gnu: 2 host(s), glibc floor 2.31"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("web2") && l.contains("10.0.0.2") && l.contains("2.31")), "{table}");
    assert!(table.contains("unresolved (3):\n  mystery: cannot determine target for mystery"), "{table}");
    assert!(table.contains("conflicts (2):"), "{table}");

    let json = serde_json::to_value(&plan).expect("serializes");
    assert_eq!(json["hosts_by_triple"]["armv7-unknown-linux-gnueabihf"][0], "pi1");
    assert!(json["unresolved"]["mystery"].as_str().expect("text").contains("--probe"));
    assert_eq!(json["evidence"]["cached1"]["source"]["kind"], "fact_cache");
    assert_eq!(json["glibc_floor_by_triple"]["x86_64-unknown-linux-gnu"]["minor"], 31);
}

#[tokio::test]
async fn strict_mode_fails_the_run() {
    let options = DetectOptions { strict: true, ..DetectOptions::default() };
    let err = TargetDetector::new().detect_from_inventory(&inventory(), &options).await.expect_err("strict");
    assert!(err.to_string().starts_with("strict mode:"), "{err}");
    let limited = inventory().limit("web").expect("limit");
    let targets = TargetDetector::new().detect_targets(&limited, &options).await.expect("all resolved");
    assert_eq!(targets.len(), 1);
}

#[tokio::test]
async fn rustle_json_host_facts_and_detect_from_facts() {
    let text = r#"{"inventory": {"hosts": {"m1": {"name": "m1", "vars": {}, "groups": []}},
      "groups": {}, "variables": {},
      "host_facts": {"m1": {"ansible_architecture": "arm64", "ansible_system": "Darwin", "ansible_os_family": "Darwin",
                            "ansible_distribution": "MacOSX", "ansible_distribution_version": "12.7"}}}}"#;
    let inventory = ParsedInventory::parse(text, InventoryFormat::Json, Path::new("r.json")).expect("parses");
    let plan = TargetDetector::new().detect_from_inventory(&inventory, &DetectOptions::default()).await.expect("ok");
    assert_eq!(plan.hosts_by_triple["aarch64-apple-darwin"], ["m1"]);
    assert_eq!(plan.macos_deployment_target_by_triple["aarch64-apple-darwin"], "12.7");
    assert!(matches!(plan.evidence["m1"].source, EvidenceSource::InventoryFacts));
    let facts = inventory.hosts["m1"].cached_facts.clone().expect("facts");
    assert_eq!(TargetDetector::new().detect_from_facts(&facts).expect("ok").triple, "aarch64-apple-darwin");
}

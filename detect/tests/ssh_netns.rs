//! Probing sshd "hosts" with their own addresses: three network namespaces
//! started by scripts/netns-hosts.sh (host I answers on 10.200.I.2 with the
//! hostname rustle-hI), probed in parallel through `detect_from_inventory`
//! with probing on (`--probe`), then with one host blackholed (its packets
//! are dropped, so the probe must time out within the bound while the others
//! resolve). Skipped only with RUSTLE_SKIP_NETNS_TESTS=1; otherwise a set-up
//! failure fails the test.
//!
//! Each test brings the hosts up, holds the script's session lock so tests
//! (here and in other processes) never share or tear down each other's
//! hosts, and takes them down again when it ends (a Drop guard).
//!
//! The CLI (`rustle-cross detect -i INV --probe --json`) is tested against
//! the same hosts in the coordinator crate (coordinator/tests/e2e_inventory.rs),
//! which includes this harness by path.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rustle_detect::{DetectOptions, EvidenceSource, ProbeError, TargetDetectionError, TargetDetector};

mod netns_support;

use netns_support::{HOSTS, NetnsHosts};

fn probing(cache: Option<&Path>) -> DetectOptions {
    DetectOptions {
        probe: true,
        fact_cache_dir: cache.map(Path::to_owned),
        max_parallel_probes: 3,
        ..DetectOptions::default()
    }
}

/// (a) Three hosts with their own addresses, probed in parallel: each
/// resolves from its probe, the probe of each reached that host's own sshd,
/// and each host is a different machine by its hostname.
#[tokio::test]
async fn three_namespace_hosts_resolve_by_probe_in_parallel() {
    let Some(hosts) = NetnsHosts::up() else { return };
    let inventory = hosts.inventory(5);
    let logs_before: Vec<usize> = hosts.hosts.iter().map(|h| hosts.log(h).len()).collect();
    let cache = tempfile::tempdir().expect("tempdir");

    let started = Instant::now();
    let plan = TargetDetector::new()
        .with_probe_deadline(Duration::from_secs(20))
        .detect_from_inventory(&inventory, &probing(Some(cache.path())))
        .await
        .expect("not strict");
    let elapsed = started.elapsed();
    let table = plan.render_table();
    eprintln!("probed {HOSTS} namespace hosts in {elapsed:?}\n{table}");
    assert!(elapsed < Duration::from_secs(25), "{elapsed:?}");
    assert!(plan.unresolved.is_empty(), "{table}");
    assert!(plan.conflicts.is_empty(), "{table}");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(plan.hosts_by_triple.keys().collect::<Vec<_>>(), ["x86_64-unknown-linux-gnu"], "{table}");
        assert_eq!(plan.hosts_by_triple["x86_64-unknown-linux-gnu"], ["node1", "node2", "node3"], "{table}");
        assert!(plan.glibc_floor_by_triple.contains_key("x86_64-unknown-linux-gnu"), "{table}");
    }
    let json = serde_json::to_value(&plan).expect("plan serializes");

    let mut hostnames = BTreeSet::new();
    for (i, host) in hosts.hosts.iter().enumerate() {
        let node = format!("node{}", i + 1);
        let evidence = &plan.evidence[&node];
        assert_eq!(evidence.address, host.address, "{table}");
        let cache_file = cache.path().join(&node);
        assert_eq!(evidence.source, EvidenceSource::Probe { cached_to: Some(cache_file.clone()) }, "{table}");
        assert!(cache_file.is_file(), "{}", cache_file.display());
        assert_eq!(json["evidence"][&node]["source"]["kind"], "probe", "{json}");
        assert_eq!(json["evidence"][&node]["address"], host.address.as_str(), "{json}");

        // The probe of nodeI logged in to the sshd of namespace rustle-hI,
        // once, from the root side of that host's own veth pair.
        let log = hosts.log(host);
        let new = &log[logs_before[i].min(log.len())..];
        let logins: Vec<&str> = new.lines().filter(|l| l.contains("Accepted publickey")).collect();
        assert_eq!(logins.len(), 1, "{} sshd log since the probe:\n{new}", host.name);
        assert!(logins[0].contains(&format!(" from {} ", host.peer_address())), "{}", logins[0]);

        // The machine at that address is host I: its own hostname.
        let hostname = hosts.ssh(&host.address, "hostname");
        assert_eq!(hostname.trim(), host.name, "hostname of {}", host.address);
        hostnames.insert(hostname.trim().to_owned());
    }
    assert_eq!(hostnames.len(), HOSTS, "{hostnames:?}");
}

/// (b) One host drops every packet: its probe ends in a timeout error that
/// names it, within the bound, and the other two still resolve. Once with
/// the probe deadline shorter than ssh's connect timeout, once the other
/// way round.
#[tokio::test]
async fn a_blackholed_host_times_out_within_the_bound_and_the_others_resolve() {
    let Some(hosts) = NetnsHosts::up() else { return };
    hosts.blackhole(2);
    let dark = &hosts.hosts[1];

    // The probe deadline (3 s) ends it; ssh alone would wait 30 s.
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let plan = TargetDetector::new()
        .with_probe_deadline(deadline)
        .detect_from_inventory(&hosts.inventory(30), &probing(None))
        .await
        .expect("not strict");
    let elapsed = started.elapsed();
    let table = plan.render_table();
    eprintln!("probe deadline {deadline:?}: detection took {elapsed:?}\n{table}");
    assert!(elapsed < deadline + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(plan.unresolved.keys().collect::<Vec<_>>(), ["node2"], "{table}");
    let error = &plan.unresolved["node2"];
    assert!(
        matches!(error, TargetDetectionError::Probe { host, source: ProbeError::TimedOut { host: address, timeout } }
            if host == "node2" && *address == dark.address && *timeout == deadline),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("node2") && text.contains(&dark.address) && text.contains("did not finish within 3s"),
        "{text}"
    );
    for node in ["node1", "node3"] {
        assert!(matches!(plan.evidence[node].source, EvidenceSource::Probe { .. }), "{table}");
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(plan.hosts_by_triple["x86_64-unknown-linux-gnu"], ["node1", "node3"], "{table}");
    }

    // ssh's connect timeout (ansible_timeout=2) ends it first: unreachable,
    // and timed out rather than refused (the packets are dropped).
    let connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let plan = TargetDetector::new()
        .with_probe_deadline(Duration::from_secs(30))
        .detect_from_inventory(&hosts.inventory(connect_timeout.as_secs()), &probing(None))
        .await
        .expect("not strict");
    let elapsed = started.elapsed();
    let table = plan.render_table();
    eprintln!("connect timeout {connect_timeout:?}: detection took {elapsed:?}\n{table}");
    assert!(elapsed < connect_timeout + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(plan.unresolved.keys().collect::<Vec<_>>(), ["node2"], "{table}");
    let error = &plan.unresolved["node2"];
    assert!(
        matches!(error, TargetDetectionError::Probe { host, source: ProbeError::Unreachable { host: address, detail } }
            if host == "node2" && *address == dark.address && detail.contains("Connection timed out")),
        "{error:?}"
    );
    assert!(error.to_string().contains("node2"), "{error}");
    assert_eq!(plan.evidence.keys().collect::<Vec<_>>(), ["node1", "node3"], "{table}");
}

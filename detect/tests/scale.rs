//! A 100,000-host inventory in INI (ranges), YAML and JSON (`--list`), with
//! group_vars and host_vars: every host is there, with the right groups,
//! variables and triple. Not timed: `scripts/bench-inventory.sh` measures it.

mod support;

use std::collections::BTreeMap;

use rustle_detect::ParsedInventory;
use serde_json::json;
use support::large_inventory::{self, expected_triple, host_name};

const HOSTS: usize = 100_000;

#[test]
fn a_100000_host_inventory_resolves_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = large_inventory::write(dir.path(), HOSTS).expect("write the inventories");
    assert_eq!(written.hosts, HOSTS);
    for (format, file) in &written.files {
        let inventory = ParsedInventory::load(file).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(inventory.hosts.len(), HOSTS, "{format}");

        let half = HOSTS / 2;
        for host in [
            host_name("web", 0),
            host_name("web", HOSTS / 8 - 1),
            host_name("web", HOSTS / 8),
            host_name("web", half - 1),
            host_name("db", 0),
            host_name("db", half - 1),
        ] {
            let config = inventory.hosts.get(&host).unwrap_or_else(|| panic!("{format}: {host} is missing"));
            assert_eq!(config.target_triple.as_deref(), Some(expected_triple(&host, HOSTS)), "{format}: {host}");
        }
        let mut by_triple: BTreeMap<&str, usize> = BTreeMap::new();
        for host in inventory.hosts.values() {
            *by_triple.entry(host.target_triple.as_deref().unwrap_or("none")).or_default() += 1;
        }
        assert_eq!(
            by_triple,
            BTreeMap::from([
                ("aarch64-unknown-linux-gnu", HOSTS / 8),
                ("x86_64-unknown-linux-gnu", half - HOSTS / 8),
                ("x86_64-unknown-linux-musl", half),
            ]),
            "{format}"
        );

        let first = &inventory.hosts[&host_name("web", 0)];
        assert_eq!(first.groups, ["all", "prod", "arm", "web"], "{format}");
        assert_eq!(first.connection.username.as_deref(), Some("deploy"), "{format}: group_vars/all.yml");
        assert_eq!(first.variables.get("env"), Some(&json!("production")), "{format}: group_vars/prod.yml wins");
        assert_eq!(first.variables.get("rack"), Some(&json!("r0")), "{format}: host_vars/");
        assert_eq!(first.variables.get("http_port"), Some(&json!(80)), "{format}: web vars");
        let db = &inventory.hosts[&host_name("db", 7)];
        assert_eq!(db.groups, ["all", "prod", "db"], "{format}");
        assert_eq!(db.variables.get("rack"), None, "{format}");

        // Members in first-seen order.
        let web = &inventory.groups["web"].hosts;
        assert_eq!(web.len(), half, "{format}");
        assert_eq!((web[0].as_str(), web[half - 1].as_str()), (&*host_name("web", 0), &*host_name("web", half - 1)));
        assert_eq!(inventory.hosts_of_group("prod").len(), HOSTS, "{format}");
    }
}

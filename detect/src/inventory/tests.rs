//! Parser tests on every inventory format: groups, children, ranges,
//! precedence, host_vars / group_vars directories, and malformed files.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn parse(text: &str, format: InventoryFormat) -> ParsedInventory {
    ParsedInventory::parse(text, format, Path::new("inv")).unwrap_or_else(|e| panic!("{e}"))
}

fn var<'a>(inv: &'a ParsedInventory, host: &str, name: &str) -> Option<&'a Value> {
    inv.hosts.get(host).and_then(|h| h.variables.get(name))
}

const INI: &str = r#"
# comment
bastion.example.com ansible_port=2200

[web]
web[01:03].example.com
web-arm ansible_host=10.0.0.9 ansible_user=deploy rustle_target_triple=aarch64-unknown-linux-gnu

[db]
db-[a:b] ansible_ssh_common_args='-o ProxyJump=bastion -o "User Known=x"'
db-c:2222 note="two words" count=3 flag=True # a comment

[db:vars]
ansible_user=postgres
tier = backend

[prod:children]
web
db

[prod:vars]
tier=prod
env=production

[all:vars]
tier=all
ansible_timeout=5
"#;

#[test]
fn ini_groups_children_ranges_and_inline_vars() {
    let inv = parse(INI, InventoryFormat::Ini);
    let names: Vec<&str> = inv.hosts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "bastion.example.com",
            "db-a",
            "db-b",
            "db-c",
            "web-arm",
            "web01.example.com",
            "web02.example.com",
            "web03.example.com"
        ]
    );
    assert_eq!(inv.groups["ungrouped"].hosts, ["bastion.example.com"]);
    assert_eq!(inv.groups["prod"].children, ["web", "db"]);
    assert!(inv.groups["all"].children.contains(&"prod".to_owned()));
    let arm = &inv.hosts["web-arm"];
    assert_eq!(arm.address, "10.0.0.9");
    assert_eq!(arm.connection.username.as_deref(), Some("deploy"));
    assert_eq!(arm.target_triple.as_deref(), Some("aarch64-unknown-linux-gnu"));
    assert_eq!(arm.groups, ["all", "prod", "web"]);
    let db_a = &inv.hosts["db-a"];
    assert_eq!(db_a.connection.ssh_args, ["-o", "ProxyJump=bastion", "-o", "User Known=x"]);
    assert_eq!(db_a.connection.username.as_deref(), Some("postgres"));
    assert_eq!(db_a.connection.timeout, Duration::from_secs(5));
    let db_c = &inv.hosts["db-c"];
    assert_eq!(db_c.connection.port, Some(2222));
    assert_eq!(var(&inv, "db-c", "note"), Some(&json!("two words")));
    assert_eq!(var(&inv, "db-c", "count"), Some(&json!(3)));
    assert_eq!(var(&inv, "db-c", "flag"), Some(&json!(true)));
    assert_eq!(inv.hosts["bastion.example.com"].connection.port, Some(2200));
    assert_eq!(inv.hosts["bastion.example.com"].connection.method, ConnectionMethod::Ssh);
}

#[test]
fn precedence_host_over_child_over_parent_over_all() {
    let inv = parse(INI, InventoryFormat::Ini);
    // db (child, depth 2) beats prod (parent, depth 1) beats all.
    assert_eq!(var(&inv, "db-a", "tier"), Some(&json!("backend")));
    assert_eq!(var(&inv, "web01.example.com", "tier"), Some(&json!("prod")));
    assert_eq!(var(&inv, "bastion.example.com", "tier"), Some(&json!("all")));
    assert_eq!(var(&inv, "web01.example.com", "env"), Some(&json!("production")));
    // Host var beats group var.
    assert_eq!(inv.hosts["web-arm"].connection.username.as_deref(), Some("deploy"));
    assert_eq!(inv.vars.get("tier"), Some(&json!("all")));
}

const YAML: &str = r#"
all:
  vars:
    ansible_user: admin
    gather: yes
  hosts:
    lonely.example.com:
  children:
    web:
      hosts:
        web[1:2].example.com:
          http_port: 80
      vars:
        single: no
    arm:
      vars:
        rustle_single_target: yes
      children:
        pis:
          hosts:
            pi-[a:b]:
              ansible_host: 192.168.1.10
              ansible_connection: local
"#;

#[test]
fn yaml_nesting_booleans_and_ranges() {
    let inv = parse(YAML, InventoryFormat::Yaml);
    assert_eq!(inv.hosts.len(), 5);
    assert_eq!(inv.groups["ungrouped"].hosts, ["lonely.example.com"]);
    assert_eq!(var(&inv, "web1.example.com", "gather"), Some(&json!(true)));
    assert_eq!(var(&inv, "web2.example.com", "single"), Some(&json!(false)));
    assert_eq!(var(&inv, "web2.example.com", "http_port"), Some(&json!(80)));
    let pi = &inv.hosts["pi-b"];
    assert_eq!(pi.groups, ["all", "arm", "pis"]);
    assert_eq!(pi.connection.method, ConnectionMethod::Local);
    assert_eq!(pi.connection.username.as_deref(), Some("admin"));
    assert_eq!(inv.groups["arm"].vars.get("rustle_single_target"), Some(&json!(true)));
    assert_eq!(inv.hosts_of_group("arm"), ["pi-a", "pi-b"]);
}

#[test]
fn json_ansible_inventory_list() {
    let text = r#"{
  "_meta": {"hostvars": {"h1": {"ansible_host": "10.1.1.1", "ansible_architecture": "aarch64", "ansible_system": "Linux"},
                         "h2": {"ansible_port": "2022"}}},
  "all": {"children": ["ungrouped", "app"]},
  "app": {"hosts": ["h1", "h2"], "vars": {"role": "app"}},
  "legacy": ["h3"]
}"#;
    let inv = parse(text, InventoryFormat::Json);
    assert_eq!(inv.hosts.len(), 3);
    assert_eq!(inv.hosts["h1"].address, "10.1.1.1");
    assert_eq!(inv.hosts["h2"].connection.port, Some(2022));
    assert_eq!(var(&inv, "h2", "role"), Some(&json!("app")));
    assert_eq!(inv.hosts["h1"].facts_origin, Some(FactsOrigin::HostVariables));
    let facts = inv.hosts["h1"].cached_facts.as_ref().expect("facts from host vars");
    assert_eq!(facts.get("ansible_architecture"), Some(&json!("aarch64")));
    assert!(inv.hosts["h3"].groups.contains(&"legacy".to_owned()));
    assert!(inv.hosts["h2"].cached_facts.is_none());
}

#[test]
fn json_rustle_parse_output_with_host_facts() {
    let text = r#"{"inventory": {
  "hosts": {"mac": {"name": "mac", "address": "10.0.0.5", "port": 22, "user": "me", "vars": {}, "groups": ["desk"]},
            "pi": {"name": "pi", "address": null, "port": null, "user": null, "vars": {"x": 1}, "groups": []}},
  "groups": {"desk": {"name": "desk", "hosts": ["mac"], "children": [], "vars": {"team": "a"}}},
  "variables": {"site": "lab"},
  "host_facts": {"mac": {"ansible_architecture": "arm64", "ansible_system": "Darwin",
                         "ansible_os_family": "Darwin", "ansible_distribution": "MacOSX"}}
}}"#;
    let inv = parse(text, InventoryFormat::Json);
    let mac = &inv.hosts["mac"];
    assert_eq!(mac.address, "10.0.0.5");
    assert_eq!(mac.connection.username.as_deref(), Some("me"));
    assert_eq!(mac.facts_origin, Some(FactsOrigin::InventoryHostFacts));
    assert_eq!(var(&inv, "mac", "team"), Some(&json!("a")));
    assert_eq!(var(&inv, "pi", "site"), Some(&json!("lab")));
    assert_eq!(inv.groups["ungrouped"].hosts, ["pi"]);
}

#[test]
fn json_in_yaml_shape_and_format_detection() {
    let text = r#"{"all": {"children": {"web": {"hosts": {"w1": {"ansible_port": 2201}}}}}}"#;
    let inv = parse(text, InventoryFormat::Json);
    assert_eq!(inv.hosts["w1"].connection.port, Some(2201));
    assert_eq!(InventoryFormat::detect(Path::new("hosts"), "[web]\nw1\n"), InventoryFormat::Ini);
    assert_eq!(InventoryFormat::detect(Path::new("hosts"), "# x\nall:\n  hosts:\n"), InventoryFormat::Yaml);
    assert_eq!(InventoryFormat::detect(Path::new("inv"), " {\"all\": {}}"), InventoryFormat::Json);
    assert_eq!(InventoryFormat::detect(Path::new("a.yml"), "[web]"), InventoryFormat::Yaml);
}

#[test]
fn host_vars_and_group_vars_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("hosts.ini"), "[web]\nw1 from_inline=inline\nw2\n[web:vars]\nlevel=inventory-group\n")
        .expect("write");
    std::fs::create_dir_all(root.join("group_vars/web")).expect("mkdir");
    std::fs::create_dir_all(root.join("host_vars")).expect("mkdir");
    std::fs::write(root.join("group_vars/all.yml"), "level: dir-all\nonly_all: 1\n").expect("write");
    std::fs::write(root.join("group_vars/web/10-main.yml"), "level: dir-web\nflag: yes\n").expect("write");
    std::fs::write(root.join("group_vars/web/20-more.yaml"), "extra: 2\n").expect("write");
    std::fs::write(
        root.join("host_vars/w1"),
        "---\nfrom_inline: host_vars\nrustle_target_triple: x86_64-unknown-linux-musl\n",
    )
    .expect("write");
    std::fs::write(root.join("host_vars/w2.json"), r#"{"ansible_host": "10.9.9.9"}"#).expect("write");
    let inv = ParsedInventory::load(&root.join("hosts.ini")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(var(&inv, "w1", "level"), Some(&json!("dir-web")));
    assert_eq!(var(&inv, "w1", "flag"), Some(&json!(true)));
    assert_eq!(var(&inv, "w1", "extra"), Some(&json!(2)));
    assert_eq!(var(&inv, "w2", "only_all"), Some(&json!(1)));
    assert_eq!(var(&inv, "w1", "from_inline"), Some(&json!("host_vars")));
    assert_eq!(inv.hosts["w1"].target_triple.as_deref(), Some("x86_64-unknown-linux-musl"));
    assert_eq!(inv.hosts["w2"].address, "10.9.9.9");

    std::fs::write(root.join("group_vars/all.yml"), "level: [unclosed\n").expect("write");
    let err = ParsedInventory::load(&root.join("hosts.ini")).expect_err("bad group_vars");
    assert!(err.to_string().contains("all.yml:1"), "{err}");
}

#[test]
fn inventory_directory_merges_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.ini"), "[web]\nw1\n").expect("write");
    std::fs::write(dir.path().join("b.yml"), "web:\n  hosts:\n    w2:\n").expect("write");
    std::fs::write(dir.path().join(".hidden"), "garbage [[[").expect("write");
    let inv = ParsedInventory::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.hosts_of_group("web"), ["w1", "w2"]);
}

#[test]
fn limit_patterns() {
    let inv = parse(INI, InventoryFormat::Ini);
    let names = |p: &str| inv.limit(p).map(|i| i.hosts.keys().cloned().collect::<Vec<_>>());
    assert_eq!(names("db").expect("db"), ["db-a", "db-b", "db-c"]);
    assert_eq!(names("prod:!web").expect("prod minus web"), ["db-a", "db-b", "db-c"]);
    assert_eq!(
        names("web*.example.com").expect("glob"),
        ["web01.example.com", "web02.example.com", "web03.example.com"]
    );
    assert_eq!(names("prod:&db").expect("and"), ["db-a", "db-b", "db-c"]);
    assert_eq!(names("bastion.example.com,db-a").expect("list"), ["bastion.example.com", "db-a"]);
    let err = inv.limit("nope").expect_err("nothing");
    assert!(err.to_string().contains("matches no host"), "{err}");
}

/// Malformed inventories: each error names the file, the line and what was
/// expected.
#[test]
fn malformed_corpus_gives_file_line_errors() {
    let cases: &[(&str, InventoryFormat, Option<usize>, &str)] = &[
        ("[web\nh1\n", InventoryFormat::Ini, Some(1), "section header"),
        ("[web:bogus]\nh1\n", InventoryFormat::Ini, Some(1), "unknown section type `bogus`"),
        ("[web]\nh1 novalue\n", InventoryFormat::Ini, Some(2), "expected key=value host variable"),
        ("[web]\nh1 a='unclosed\n", InventoryFormat::Ini, Some(2), "unclosed quote"),
        ("[web:vars]\njustaword\n", InventoryFormat::Ini, Some(2), "expected key=value in [web:vars]"),
        ("[web:children]\nsome child\n", InventoryFormat::Ini, Some(2), "expected a group name"),
        ("[web]\nw[5:1]\n", InventoryFormat::Ini, Some(2), "begin greater than end"),
        ("\n\n[web]\nh1:99999\n", InventoryFormat::Ini, Some(4), "not a port number"),
        (
            "[web]\nh1 ansible_port=http\n",
            InventoryFormat::Ini,
            Some(2),
            "`ansible_port` is \"http\", expected a port number",
        ),
        ("[a:children]\nb\n[b:children]\na\n", InventoryFormat::Ini, None, "is its own ancestor"),
        ("[web]\nh1 9bad=1\n", InventoryFormat::Ini, Some(2), "invalid variable name"),
        (
            "all:\n  hosts:\n    - a\n",
            InventoryFormat::Yaml,
            Some(3),
            "`all.hosts` is a list, but `hosts` of group `all` must be a mapping",
        ),
        ("all:\n  host:\n    a:\n", InventoryFormat::Yaml, Some(2), "unknown field `host`"),
        ("all:\n  hosts: [\n", InventoryFormat::Yaml, Some(2), "unclosed bracket"),
        ("all:\n  vars: {a: [1, 2}\n", InventoryFormat::Yaml, Some(2), "mismatched bracket"),
        ("all:\n  hosts:\n    w[1:x]:\n", InventoryFormat::Yaml, Some(3), "numbers (01:20) or single letters"),
        (
            "all:\n  children:\n    web:\n      children:\n        all:\n",
            InventoryFormat::Yaml,
            None,
            "cannot be a child",
        ),
        (
            "{\n  \"all\": {\n    \"hosts\": 3\n  }\n}",
            InventoryFormat::Json,
            Some(3),
            "`all.hosts` is a number (3), but `hosts` of group `all` must be an object",
        ),
        (
            "{\n  \"_meta\": {},\n  \"web\": {\"hosts\": [\"a\"],\n\n  \"oops\"\n}",
            InventoryFormat::Json,
            Some(6),
            "expected `:`",
        ),
        ("[1, 2]", InventoryFormat::Json, Some(1), "expected a JSON object"),
    ];
    for (text, format, line, expected) in cases {
        let err = ParsedInventory::parse(text, *format, Path::new("bad/inventory")).expect_err(text);
        let message = err.to_string();
        assert!(message.contains("bad/inventory"), "{text:?}: {message}");
        assert!(message.contains(expected), "{text:?}: {message}");
        match (line, &err) {
            (Some(line), InventoryError::Parse { line: got, .. }) => {
                assert_eq!(got, &Some(*line), "{text:?}: {message}")
            }
            (Some(_), other) => panic!("{text:?}: expected a parse error, got {other}"),
            (None, _) => {}
        }
    }
}

#[test]
fn shell_words() {
    assert_eq!(split_shell_words(r#"-o 'A B' "C \"D\"" E\ F"#).expect("ok"), ["-o", "A B", "C \"D\"", "E F"]);
    assert_eq!(split_shell_words("").expect("ok"), Vec::<String>::new());
    assert!(split_shell_words("'open").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn ini_never_panics(text in "(\\[[a-z:\\]]{0,12}\\]?|[a-z0-9=\\[\\]:'\" #;._-]{0,30}|\n){0,12}") {
        let _ = ParsedInventory::parse(&text, InventoryFormat::Ini, Path::new("p.ini"));
    }

    #[test]
    fn yaml_never_panics(text in "([a-z0-9\\[\\]:{},'\"#&*!|>-]{0,12}|  |\n|- ){0,20}") {
        let _ = ParsedInventory::parse(&text, InventoryFormat::Yaml, Path::new("p.yml"));
    }

    #[test]
    fn json_never_panics(text in "([a-z0-9\\[\\]:{},\"_]{0,12}|\"_meta\"|\"hosts\"|\"inventory\"|\n){0,16}") {
        let _ = ParsedInventory::parse(&text, InventoryFormat::Json, Path::new("p.json"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        for format in [InventoryFormat::Ini, InventoryFormat::Yaml, InventoryFormat::Json] {
            let _ = ParsedInventory::parse(&text, format, Path::new("p"));
        }
    }

    #[test]
    fn ranges_never_panic(name in "[a-z0-9]{0,4}(\\[[a-z0-9:]{0,9}\\]?)?[a-z0-9.]{0,4}") {
        let _ = expand_host_pattern(&name);
    }
}

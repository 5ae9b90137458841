//! Malformed inventories as a new user writes them: random bytes and random
//! structurally valid but wrong INI, YAML and JSON never panic and every
//! error says where (file and line, or the groups of a cycle); and each
//! message that used to be serde's or the YAML parser's own names the key,
//! what was found, what was expected and the way out.

use std::path::Path;

use proptest::prelude::*;
use rustle_detect::{InventoryError, InventoryFormat, ParsedInventory};
use serde_json::Value;

/// Asserts that `err`, from parsing `text` as `file`, says where.
fn assert_located(err: &InventoryError, file: &str, text: &str) {
    let message = err.to_string();
    assert!(message.contains(file), "{message}");
    let lines = text.lines().count() + 1;
    match err {
        InventoryError::Parse { line, .. } => match line {
            Some(line) => assert!((1..=lines).contains(line), "line {line} of {lines}: {message}\n{text}"),
            None => panic!("no line: {message}\n{text}"),
        },
        InventoryError::NotUtf8 { line, column, .. } => assert!(*line >= 1 && *column >= 1, "{message}"),
        InventoryError::GroupCycle { path, .. } => assert!(path.contains(" -> "), "{message}"),
        other => panic!("unexpected error kind: {other}"),
    }
}

fn parse_err(text: &str, format: InventoryFormat, file: &str) -> InventoryError {
    match ParsedInventory::parse(text, format, Path::new(file)) {
        Ok(inventory) => panic!("{file} parsed: {:?}", inventory.hosts.keys().collect::<Vec<_>>()),
        Err(e) => e,
    }
}

/// The line an error names, if any.
fn line_of(err: &InventoryError) -> Option<usize> {
    match err {
        InventoryError::Parse { line, .. } => *line,
        InventoryError::NotUtf8 { line, .. } => Some(*line),
        _ => None,
    }
}

#[test]
fn json_with_a_wrong_type_names_the_key_what_was_found_and_the_fix() {
    // Was: "data did not match any variant of untagged enum ListGroup".
    let text = "{\n  \"_meta\": {\"hostvars\": {\"h1\": {}}},\n  \"web\": {\"hosts\": \"h1\"}\n}\n";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    let message = err.to_string();
    assert!(message.contains("inv.json:3"), "{message}");
    assert!(message.contains("`web.hosts` is a string (\"h1\"), expected a list of host names"), "{message}");
    assert!(message.contains(r#"write ["h1"]"#), "{message}");

    let text = "{\n  \"web\": {\"hosts\": [\n    \"h1\",\n    3\n  ]}\n}\n";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    assert_eq!(line_of(&err), Some(4), "{err}");
    assert!(err.to_string().contains("`web.hosts[1]` is a number (3), expected a host name (a string)"), "{err}");

    let text = "{\n  \"_meta\": {},\n  \"web\": 3\n}\n";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    assert_eq!(line_of(&err), Some(3), "{err}");
    assert!(err.to_string().contains("`web` is a number (3), expected group `web` as an object with `hosts`"), "{err}");

    let text = "{\"_meta\": {\"hostvars\": {\n  \"db1\": [\"x\"]}}}\n";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    assert_eq!(line_of(&err), Some(2), "{err}");
    assert!(err.to_string().contains("`_meta.hostvars.db1` is a list, expected an object of variable names"), "{err}");

    let text = "{\"web\": {\"hosts\": [\"h1\"], \"host_vars\": {}}}";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    assert!(err.to_string().contains("unknown field `host_vars` in group `web`"), "{err}");
    assert!(err.to_string().contains("move host variables to `_meta.hostvars`"), "{err}");

    // rustle-parse output with a port that is not one.
    let text = "{\"inventory\": {\"hosts\": {\"mac\": {\n  \"port\": \"ssh\"}}, \"groups\": {}}}";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    assert_eq!(line_of(&err), Some(2), "{err}");
    assert!(
        err.to_string().contains("`inventory.hosts.mac.port` is a string (\"ssh\"), expected a port number 1-65535"),
        "{err}"
    );
}

#[test]
fn yaml_list_where_a_mapping_belongs_names_the_key_and_the_shape() {
    // Was: "expected mapping start".
    let text = "all:\n  children:\n    - web\n    - db\n";
    let err = parse_err(text, InventoryFormat::Yaml, "hosts.yml");
    assert_eq!(line_of(&err), Some(3), "{err}");
    let message = err.to_string();
    assert!(message.contains("`all.children` is a list"), "{message}");
    assert!(message.contains("must be a mapping with one `GROUP:` line per child group"), "{message}");
    assert!(message.contains("write `- web` as `web:`"), "{message}");

    let text = "all:\n  hosts:\n    web1:\n      - ansible_port: 22\n";
    let err = parse_err(text, InventoryFormat::Yaml, "hosts.yml");
    assert_eq!(line_of(&err), Some(4), "{err}");
    assert!(err.to_string().contains("`all.hosts.web1` is a list, but the variables of host `web1` must be"), "{err}");

    let text = "web:\n  vars: 3\n";
    let err = parse_err(text, InventoryFormat::Yaml, "hosts.yml");
    assert_eq!(line_of(&err), Some(2), "{err}");
    assert!(
        err.to_string().contains("`web.vars` is a number (3), but `vars` of group `web` must be a mapping"),
        "{err}"
    );

    let text = "- all\n- web\n";
    let err = parse_err(text, InventoryFormat::Yaml, "hosts.yml");
    assert!(err.to_string().contains("the top level is a list, expected a mapping of group names (`all:`"), "{err}");

    // Ansible accepts a single name where a mapping of hosts belongs.
    let inventory = ParsedInventory::parse("web:\n  hosts: web1\n", InventoryFormat::Yaml, Path::new("hosts.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inventory.hosts_of_group("web"), ["web1"]);
}

#[test]
fn a_file_that_is_not_utf8_says_where_once_and_how_to_convert_it() {
    // Was: "stream did not contain valid UTF-8: stream did not contain valid UTF-8".
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hosts.ini");
    std::fs::write(&file, b"[web]\nw1\nw\xe92 ansible_user=me\n").expect("write");
    let err = ParsedInventory::load(&file).expect_err("latin-1");
    let InventoryError::NotUtf8 { line, column, byte, .. } = &err else { panic!("{err}") };
    assert_eq!((*line, *column, *byte), (3, 2, 0xe9), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("{}:3:2", file.display())), "{message}");
    assert!(message.contains("iconv"), "{message}");
    assert!(!message.contains("stream did not contain"), "{message}");
    assert!(std::error::Error::source(&err).is_none(), "nothing more to add: {message}");
}

#[test]
fn a_yaml_alias_bomb_says_what_the_budget_means() {
    // Was: "budget breached: Nodes { nodes: 250001 }".
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (level, previous) in ["b", "c", "d", "e", "f", "g"].iter().zip(["a", "b", "c", "d", "e", "f"]) {
        let aliases = vec![format!("*{previous}"); 10].join(", ");
        text.push_str(&format!("{level}: &{level} [{aliases}]\n"));
    }
    let err = parse_err(&text, InventoryFormat::Yaml, "bomb.yml");
    assert_located(&err, "bomb.yml", &text);
    let message = err.to_string();
    assert!(message.contains("bomb.yml:"), "{message}");
    assert!(message.contains("the YAML expands to more than"), "{message}");
    assert!(message.contains("aliases (`*name`)") && message.contains("expand fewer"), "{message}");
    assert!(!message.contains("budget breached") && !message.contains("Nodes {"), "{message}");
}

#[test]
fn group_vars_that_are_not_a_mapping_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts"), "[web]\nw1\n").expect("write");
    std::fs::create_dir(dir.path().join("group_vars")).expect("mkdir");
    std::fs::write(dir.path().join("group_vars/web.yml"), "# web\n- ansible_user: me\n").expect("write");
    let err = ParsedInventory::load(&dir.path().join("hosts")).expect_err("a list");
    let message = err.to_string();
    assert!(message.contains("group_vars/web.yml:2"), "{message}");
    assert!(message.contains("the file is a list, expected a mapping of variable names to values"), "{message}");
}

#[test]
fn a_bad_host_variable_in_json_names_the_line_of_the_host() {
    let text = "{\n  \"web\": {\"hosts\": [\"w1\"]},\n  \"_meta\": {\"hostvars\": {\n    \"w1\": {\"ansible_port\": \"http\"}}}\n}";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    // The line where the host is first written.
    assert_eq!(line_of(&err), Some(2), "{err}");
    assert!(err.to_string().contains("host `w1`: `ansible_port` is \"http\", expected a port number"), "{err}");

    // A host of a range is found by the range.
    let text = "{\n  \"web\": {\n    \"vars\": {\"ansible_port\": \"http\"},\n    \"hosts\": [\"w[1:2]\"]\n  }\n}";
    let err = parse_err(text, InventoryFormat::Json, "inv.json");
    assert_eq!(line_of(&err), Some(4), "{err}");
    assert!(err.to_string().contains("host `w1`: `ansible_port` is \"http\""), "{err}");
}

/// A YAML or JSON document of inventory-ish keys and values in any shape.
#[derive(Debug, Clone)]
enum Tree {
    Null,
    Text(String),
    Number(i64),
    Bool(bool),
    List(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "all", "hosts", "children", "vars", "host", "web", "db", "h1", "w[1:3]", "w[3:1]", "w[a:", "_meta",
            "hostvars", "inventory", "groups", "host_facts", "variables", "address", "port", "user", "ansible_port",
            "ansible_host", "rustle_target_triple", "ansible_connection", "two words", "",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z0-9_.:\\[\\]-]{1,8}",
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Null),
        "[a-z0-9 :\\[\\]._-]{0,8}".prop_map(Tree::Text),
        (-3i64..70_000).prop_map(Tree::Number),
        any::<bool>().prop_map(Tree::Bool),
    ];
    leaf.prop_recursive(6, 80, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::List),
            prop::collection::vec((key(), inner), 0..5).prop_map(|mut entries| {
                // Duplicate keys are a YAML syntax error: keep the first.
                let mut seen = std::collections::HashSet::new();
                entries.retain(|(k, _)| seen.insert(k.clone()));
                Tree::Map(entries)
            }),
        ]
    })
}

/// Mostly a mapping at the top, as inventories are; sometimes anything.
fn inventory_tree() -> impl Strategy<Value = Tree> {
    prop_oneof![
        6 => prop::collection::vec((key(), tree()), 1..5).prop_map(|mut entries| {
            let mut seen = std::collections::HashSet::new();
            entries.retain(|(k, _)| seen.insert(k.clone()));
            Tree::Map(entries)
        }),
        1 => tree(),
    ]
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Block-style YAML, one key or item per line.
fn to_yaml(tree: &Tree, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let inline = |tree: &Tree| match tree {
        Tree::Null => Some(String::new()),
        Tree::Text(t) => Some(format!(" {}", quoted(t))),
        Tree::Number(n) => Some(format!(" {n}")),
        Tree::Bool(b) => Some(format!(" {b}")),
        Tree::List(items) if items.is_empty() => Some(" []".to_owned()),
        Tree::Map(entries) if entries.is_empty() => Some(" {}".to_owned()),
        _ => None,
    };
    match tree {
        Tree::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                out.push_str(&format!("{pad}{}:", quoted(k)));
                match inline(v) {
                    Some(text) => out.push_str(&format!("{text}\n")),
                    None => {
                        out.push('\n');
                        to_yaml(v, indent + 2, out);
                    }
                }
            }
        }
        Tree::List(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match inline(item) {
                    Some(text) => out.push_str(&format!("{text}\n")),
                    None => {
                        out.push('\n');
                        to_yaml(item, indent + 2, out);
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", inline(other).unwrap_or_default().trim_start())),
    }
}

fn to_json(tree: &Tree) -> Value {
    match tree {
        Tree::Null => Value::Null,
        Tree::Text(t) => Value::String(t.clone()),
        Tree::Number(n) => Value::from(*n),
        Tree::Bool(b) => Value::Bool(*b),
        Tree::List(items) => Value::Array(items.iter().map(to_json).collect()),
        Tree::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// INI lines that are each plausible and often wrong.
fn ini_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\[[a-z]{1,4}\\]",
        "\\[[a-z]{1,4}:(vars|children|bogus)\\]",
        Just("[all:children]".to_owned()),
        "[a-z]{1,4}(\\[[0-9a-z]?:[0-9a-z]?\\])?(:[0-9]{1,6})?( [a-z_]{1,3}=[a-z0-9'\" ]{0,4}){0,2}",
        "[a-z]{1,3} (ansible_port|ansible_timeout|rustle_target_triple|ansible_ssh_common_args)=(http|22|0|-1|99999|'x|\"a b\")",
        "(ansible_port|ansible_host|x)( ?= ?)(http|22|'q)",
        "[a-z]{1,4}",
        Just("all".to_owned()),
        Just("#".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_yaml_shapes_fail_with_a_line(tree in inventory_tree()) {
        let mut text = String::new();
        to_yaml(&tree, 0, &mut text);
        if let Err(err) = ParsedInventory::parse(&text, InventoryFormat::Yaml, Path::new("random.yml")) {
            assert_located(&err, "random.yml", &text);
        }
    }

    #[test]
    fn random_json_shapes_fail_with_a_line(tree in inventory_tree(), pretty in any::<bool>()) {
        let value = to_json(&tree);
        let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }
            .expect("serializable");
        if let Err(err) = ParsedInventory::parse(&text, InventoryFormat::Json, Path::new("random.json")) {
            assert_located(&err, "random.json", &text);
        }
    }

    #[test]
    fn random_ini_lines_fail_with_a_line(lines in prop::collection::vec(ini_line(), 0..14)) {
        let text = lines.join("\n");
        if let Err(err) = ParsedInventory::parse(&text, InventoryFormat::Ini, Path::new("random.ini")) {
            assert_located(&err, "random.ini", &text);
        }
    }

    #[test]
    fn random_bytes_in_a_file_fail_with_a_place(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["random.ini", "random.yml", "random.json", "random"] {
            let file = dir.path().join(name);
            std::fs::write(&file, &bytes).expect("write");
            if let Err(err) = ParsedInventory::load(&file) {
                assert_located(&err, name, &String::from_utf8_lossy(&bytes));
            }
        }
    }
}

//! JSON inventories: `ansible-inventory --list` (`_meta.hostvars`, groups
//! with `hosts` / `children` / `vars` lists, legacy host arrays), rustle-parse
//! output (`inventory.hosts`, `inventory.groups`, `inventory.variables`,
//! `inventory.host_facts`), and JSON in the YAML inventory's shape.
//!
//! The text is parsed once into a `serde_json::Value` and its shape checked
//! by hand: an error names the key path (`web.hosts[2]`), what was found and
//! what was expected; its line is looked up from the path only then.

use std::path::Path;

use serde_json::{Map, Value};

use super::node::{KeyPath, Node, Step, describe_json};
use super::range::expand_host_pattern;
use super::yaml::add_group_tree;
use super::{InventoryFormat, RawInventory, Source, Variables};
use crate::error::InventoryError;

/// Parses JSON inventory text of any of the three shapes.
pub(crate) fn parse(text: &str, file: &Path) -> Result<RawInventory, InventoryError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let line = Some(e.line()).filter(|l| *l > 0);
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        InventoryError::parse(file, line, format!("{message} (the file is not valid JSON)"))
    })?;
    let source = Source::new(file, text, InventoryFormat::Json);
    let root = KeyPath::default();
    let mut top = match value {
        Value::Object(top) => top,
        other => {
            return Err(source.error(
                Some(1),
                &root,
                format!(
                    "the top level is {}, expected a JSON object: groups by name (`ansible-inventory --list`), or {{\"inventory\": ...}} (rustle-parse)",
                    describe_json(&other)
                ),
            ));
        }
    };
    let mut raw = RawInventory::default();
    if top.get("inventory").is_some_and(Value::is_object) {
        let inventory = top.remove("inventory").map(|v| object(v, &root.key("inventory"), &source, "")).transpose()?;
        add_rustle(&mut raw, inventory.unwrap_or_default(), &root.key("inventory"), &source)?;
    } else if top.get("hosts").is_some_and(Value::is_object) && top.contains_key("groups") {
        add_rustle(&mut raw, top, &root, &source)?;
    } else if top.contains_key("_meta") || top.values().any(is_list_group) {
        add_list(&mut raw, top, &source)?;
    } else {
        add_group_tree(&mut raw, Node::from_json(Value::Object(top)), &source)?;
    }
    Ok(raw)
}

/// A group of `ansible-inventory --list`: hosts and children are lists.
fn is_list_group(value: &Value) -> bool {
    match value {
        Value::Array(_) => true,
        Value::Object(o) => {
            o.get("hosts").is_some_and(Value::is_array) || o.get("children").is_some_and(Value::is_array)
        }
        _ => false,
    }
}

/// "`PATH` is FOUND, expected EXPECTED".
fn wrong(source: &Source, path: &KeyPath, found: &Value, expected: &str) -> InventoryError {
    source.error(None, path, format!("`{path}` is {}, expected {expected}", describe_json(found)))
}

/// An object (`null` reads as an empty one).
fn object(value: Value, path: &KeyPath, source: &Source, expected: &str) -> Result<Map<String, Value>, InventoryError> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => {
            let expected = if expected.is_empty() { "an object" } else { expected };
            Err(wrong(source, path, &other, expected))
        }
    }
}

/// Variables: an object of names to values (`null` reads as none).
fn variables(value: Value, path: &KeyPath, source: &Source) -> Result<Variables, InventoryError> {
    Ok(object(value, path, source, r#"an object of variable names to values ({"name": "value"})"#)?
        .into_iter()
        .collect())
}

/// A list of names (hosts or groups): every item a string.
fn names(value: Value, path: &KeyPath, source: &Source, what: &str) -> Result<Vec<String>, InventoryError> {
    let example = if what == "host" { r#"["web1", "web2"]"# } else { r#"["web", "db"]"# };
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        Value::String(one) => {
            return Err(source.error(
                None,
                path,
                format!("`{path}` is a string ({one:?}), expected a list of {what} names ({example}): write [{one:?}]"),
            ));
        }
        other => return Err(wrong(source, path, &other, &format!("a list of {what} names ({example})"))),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(name) => Ok(name),
            other => Err(wrong(source, &path.index(i), &other, &format!("a {what} name (a string)"))),
        })
        .collect()
}

/// Adds hosts (with ranges expanded) to `group`.
fn add_hosts(
    raw: &mut RawInventory,
    group: &str,
    hosts: Vec<String>,
    path: &KeyPath,
    source: &Source,
) -> Result<(), InventoryError> {
    for (i, pattern) in hosts.into_iter().enumerate() {
        let at = path.index(i);
        let expanded =
            expand_host_pattern(&pattern).map_err(|why| source.error(None, &at, format!("at `{at}`: {why}")))?;
        let origin = source.origin_of_pattern(None, Some(&pattern));
        for host in expanded {
            raw.add_host(group, &host, Variables::new(), &origin);
        }
    }
    Ok(())
}

/// Adds `children` to group `name`; `all` is never a child.
fn add_children(
    raw: &mut RawInventory,
    name: &str,
    children: Vec<String>,
    path: &KeyPath,
    source: &Source,
) -> Result<(), InventoryError> {
    for (i, child) in children.into_iter().enumerate() {
        if child == "all" {
            let at = path.index(i);
            return Err(source.error(
                None,
                &at,
                format!(
                    "`all` cannot be a child of `{name}` (at `{at}`); `all` is the top group: remove it from the list"
                ),
            ));
        }
        raw.add_child(name, &child);
    }
    Ok(())
}

/// `ansible-inventory --list`: groups by name, each an object of lists (or
/// a bare list of hosts), and `_meta.hostvars`.
fn add_list(raw: &mut RawInventory, top: Map<String, Value>, source: &Source) -> Result<(), InventoryError> {
    let root = KeyPath::default();
    for (name, value) in top {
        let path = root.key(&name);
        if name == "_meta" {
            add_meta(raw, value, &path, source)?;
            continue;
        }
        let body = match value {
            Value::Array(_) => {
                raw.group_mut(&name);
                let hosts = names(value, &path, source, "host")?;
                add_hosts(raw, &name, hosts, &path, source)?;
                continue;
            }
            Value::Object(body) => body,
            other => {
                return Err(wrong(
                    source,
                    &path,
                    &other,
                    &format!(
                        r#"group `{name}` as an object with `hosts`, `children` and `vars` ({{"hosts": ["web1"], "vars": {{}}}}), or a list of host names"#
                    ),
                ));
            }
        };
        raw.group_mut(&name);
        for (key, value) in body {
            let at = path.key(&key);
            match key.as_str() {
                "hosts" => {
                    let hosts = names(value, &at, source, "host")?;
                    add_hosts(raw, &name, hosts, &at, source)?;
                }
                "children" => {
                    let children = names(value, &at, source, "group")?;
                    add_children(raw, &name, children, &at, source)?;
                }
                "vars" => {
                    let vars = variables(value, &at, source)?;
                    raw.group_mut(&name).vars.extend(vars);
                }
                other => {
                    return Err(source.error(
                        None,
                        &at,
                        format!(
                            "unknown field `{other}` in group `{name}` (at `{at}`); a group of `ansible-inventory --list` has only `hosts`, `children` and `vars`: fix the spelling, or move host variables to `_meta.hostvars`"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `_meta`: `hostvars`, an object of host names to their variables.
fn add_meta(raw: &mut RawInventory, value: Value, path: &KeyPath, source: &Source) -> Result<(), InventoryError> {
    let meta = object(value, path, source, r#"an object with `hostvars` ({"hostvars": {"web1": {}}})"#)?;
    let origin = source.origin(None);
    for (key, value) in meta {
        let at = path.key(&key);
        if key != "hostvars" {
            return Err(source.error(
                None,
                &at,
                format!("unknown field `{key}` in `_meta` (at `{at}`); `_meta` has only `hostvars`: fix the spelling"),
            ));
        }
        let hostvars = object(value, &at, source, r#"an object of host names to their variables ({"web1": {}})"#)?;
        for (host, vars) in hostvars {
            let vars = variables(vars, &at.key(&host), source)?;
            raw.host_mut(&host, &origin).vars.extend(vars);
        }
    }
    Ok(())
}

/// rustle-parse output: `hosts`, `groups`, `variables`, `host_facts`
/// (fields it does not know are left alone).
fn add_rustle(
    raw: &mut RawInventory,
    mut inventory: Map<String, Value>,
    path: &KeyPath,
    source: &Source,
) -> Result<(), InventoryError> {
    let mut take = |key: &str| inventory.remove(key).unwrap_or(Value::Null);
    let (variables_value, groups_value, hosts_value, facts_value) =
        (take("variables"), take("groups"), take("hosts"), take("host_facts"));
    let vars = variables(variables_value, &path.key("variables"), source)?;
    raw.group_mut("all").vars.extend(vars);
    let origin = source.origin(None);

    let groups_path = path.key("groups");
    let groups =
        object(groups_value, &groups_path, source, r#"an object of groups by name ({"web": {"hosts": ["web1"]}})"#)?;
    for (name, group) in groups {
        let at = groups_path.key(&name);
        let mut group = object(group, &at, source, r#"group `NAME` as an object with `hosts`, `children` and `vars`"#)?;
        raw.group_mut(&name);
        let vars = variables(group.remove("vars").unwrap_or(Value::Null), &at.key("vars"), source)?;
        raw.group_mut(&name).vars.extend(vars);
        for host in names(group.remove("hosts").unwrap_or(Value::Null), &at.key("hosts"), source, "host")? {
            raw.add_host(&name, &host, Variables::new(), &origin);
        }
        let children = names(group.remove("children").unwrap_or(Value::Null), &at.key("children"), source, "group")?;
        add_children(raw, &name, children, &at.key("children"), source)?;
    }

    let hosts_path = path.key("hosts");
    let hosts =
        object(hosts_value, &hosts_path, source, r#"an object of hosts by name ({"web1": {"address": "10.0.0.1"}})"#)?;
    for (name, host) in hosts {
        let at = hosts_path.key(&name);
        let mut host =
            object(host, &at, source, "host as an object with `address`, `port`, `user`, `vars` and `groups`")?;
        let mut vars = Variables::new();
        let text = |value: Option<Value>, key: &str| -> Result<Option<String>, InventoryError> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(wrong(source, &at.key(key), &other, "a string, or null")),
            }
        };
        if let Some(address) = text(host.remove("address"), "address")? {
            vars.insert("ansible_host".into(), Value::String(address));
        }
        match host.remove("port") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {
                vars.insert("ansible_port".into(), Value::Number(n));
            }
            Some(other) => return Err(wrong(source, &at.key("port"), &other, "a port number 1-65535, or null")),
        }
        if let Some(user) = text(host.remove("user"), "user")? {
            vars.insert("ansible_user".into(), Value::String(user));
        }
        vars.extend(variables(host.remove("vars").unwrap_or(Value::Null), &at.key("vars"), source)?);
        let groups = names(host.remove("groups").unwrap_or(Value::Null), &at.key("groups"), source, "group")?;
        if groups.is_empty() {
            raw.host_mut(&name, &origin).vars.extend(vars);
        } else {
            for group in &groups {
                raw.add_host(group, &name, vars.clone(), &origin);
            }
        }
    }

    let facts_path = path.key("host_facts");
    let facts = object(
        facts_value,
        &facts_path,
        source,
        r#"an object of host names to their facts ({"web1": {"ansible_architecture": "x86_64"}})"#,
    )?;
    for (host, facts) in facts {
        let at = facts_path.key(&host);
        let facts = object(facts, &at, source, "the host's facts as an object, or null")?;
        if !facts.is_empty() {
            raw.host_mut(&host, &origin).facts = Some(facts.into_iter().collect());
        }
    }
    Ok(())
}

/// The line where the value at `path` starts in JSON `text` (text that
/// parsed), or of the deepest part of the path that exists. Reads the text
/// once, from the start: only for errors.
pub(crate) fn line_of_path(text: &str, path: &KeyPath) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut pos = skip_blank(bytes, 0);
    'steps: for step in &path.0 {
        match step {
            Step::Key(want) => {
                if bytes.get(pos) != Some(&b'{') {
                    break;
                }
                let mut at = pos + 1;
                loop {
                    at = skip_blank(bytes, at);
                    if bytes.get(at) != Some(&b'"') {
                        break 'steps;
                    }
                    let end = skip_string(bytes, at)?;
                    let raw_key = &text[at..end];
                    let key_matches = if raw_key.contains('\\') {
                        serde_json::from_str::<String>(raw_key).is_ok_and(|k| k == *want)
                    } else {
                        raw_key.len() == want.len() + 2 && &raw_key[1..raw_key.len() - 1] == want
                    };
                    at = skip_blank(bytes, end);
                    if bytes.get(at) != Some(&b':') {
                        break 'steps;
                    }
                    at = skip_blank(bytes, at + 1);
                    if key_matches {
                        pos = at;
                        break;
                    }
                    at = skip_blank(bytes, skip_value(bytes, at)?);
                    if bytes.get(at) == Some(&b',') {
                        at += 1;
                    }
                }
            }
            Step::Index(n) => {
                if bytes.get(pos) != Some(&b'[') {
                    break;
                }
                let mut at = skip_blank(bytes, pos + 1);
                for _ in 0..*n {
                    at = skip_blank(bytes, skip_value(bytes, at)?);
                    if bytes.get(at) != Some(&b',') {
                        break 'steps;
                    }
                    at = skip_blank(bytes, at + 1);
                }
                pos = at;
            }
        }
    }
    Some(bytes[..pos.min(bytes.len())].iter().filter(|b| **b == b'\n').count() + 1)
}

fn skip_blank(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// `at` is on a `"`; the position after the closing one.
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The position after the value that starts at `at`.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = skip_string(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while bytes.get(i).is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_key_paths() {
        let text =
            "{\n  \"a\": {\"x\": 1,\n    \"b\": [\n      \"h1\",\n      {\"k\\\"q\": 2}\n    ]\n  },\n  \"c\": 3\n}";
        let path = |steps: &[Step]| KeyPath(steps.to_vec());
        let key = |k: &str| Step::Key(k.to_owned());
        assert_eq!(line_of_path(text, &path(&[key("c")])), Some(8));
        assert_eq!(line_of_path(text, &path(&[key("a"), key("b")])), Some(3));
        assert_eq!(line_of_path(text, &path(&[key("a"), key("b"), Step::Index(1)])), Some(5));
        assert_eq!(line_of_path(text, &path(&[key("a"), key("b"), Step::Index(1), key("k\"q")])), Some(5));
        // A path that does not exist stops at its deepest existing part.
        assert_eq!(line_of_path(text, &path(&[key("a"), key("nope")])), Some(2));
        assert_eq!(line_of_path(text, &path(&[])), Some(1));
    }
}

//! JSON inventories: `ansible-inventory --list` (`_meta.hostvars`, groups
//! with `hosts` / `children` / `vars` lists, legacy host arrays), rustle-parse
//! output (`inventory.hosts`, `inventory.groups`, `inventory.variables`,
//! `inventory.host_facts`), and JSON in the YAML inventory's shape.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::range::expand_host_pattern;
use super::yaml::{GroupTree, add_groups};
use super::{RawInventory, Variables, line_of};
use crate::error::InventoryError;
use crate::facts::Facts;

/// Parses JSON inventory text of any of the three shapes.
pub(crate) fn parse(text: &str, file: &Path) -> Result<RawInventory, InventoryError> {
    let value: Value = typed(text, file)?;
    let Value::Object(top) = &value else {
        return Err(InventoryError::parse(file, Some(1), "expected a JSON object at the top level"));
    };
    let mut raw = RawInventory::default();
    if top.get("inventory").is_some_and(Value::is_object) {
        let doc: RustleDocument = typed(text, file)?;
        add_rustle(&mut raw, doc.inventory, text, file)?;
    } else if top.contains_key("hosts") && top.contains_key("groups") && top.get("hosts").is_some_and(Value::is_object)
    {
        let inventory: RustleInventory = typed(text, file)?;
        add_rustle(&mut raw, inventory, text, file)?;
    } else if top.contains_key("_meta") || top.values().any(is_list_group) {
        let list: BTreeMap<String, ListGroup> = typed(text, file)?;
        add_list(&mut raw, list, text, file)?;
    } else {
        let tree: GroupTree = typed(text, file)?;
        add_groups(&mut raw, tree, text, file)?;
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

fn typed<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, InventoryError> {
    serde_json::from_str(text).map_err(|e| {
        let line = Some(e.line()).filter(|l| *l > 0);
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        InventoryError::parse(file, line, message)
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListGroup {
    Hosts(Vec<String>),
    Group(ListGroupBody),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListGroupBody {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    children: Vec<String>,
    #[serde(default)]
    vars: Variables,
    /// Only in `_meta`.
    #[serde(default)]
    hostvars: BTreeMap<String, Variables>,
}

/// Adds `children` to group `name`; `all` is never a child.
fn add_children(
    raw: &mut RawInventory,
    text: &str,
    file: &Path,
    name: &str,
    children: impl IntoIterator<Item = String>,
) -> Result<(), InventoryError> {
    for child in children {
        if child == "all" {
            return Err(InventoryError::parse(
                file,
                line_of(text, "\"all\""),
                format!("`all` cannot be a child of `{name}`"),
            ));
        }
        raw.add_child(name, &child);
    }
    Ok(())
}

fn add_list(
    raw: &mut RawInventory,
    list: BTreeMap<String, ListGroup>,
    text: &str,
    file: &Path,
) -> Result<(), InventoryError> {
    for (name, group) in list {
        let body = match group {
            ListGroup::Hosts(hosts) => {
                ListGroupBody { hosts, children: vec![], vars: Variables::new(), hostvars: BTreeMap::new() }
            }
            ListGroup::Group(body) => body,
        };
        if name == "_meta" {
            for (host, vars) in body.hostvars {
                raw.touch_host(&host, line_of(text, &format!("\"{host}\"")));
                raw.host_vars.entry(host).or_default().extend(vars);
            }
            continue;
        }
        raw.group_mut(&name).vars.extend(body.vars);
        for pattern in body.hosts {
            let line = line_of(text, &format!("\"{pattern}\""));
            for host in expand_host_pattern(&pattern).map_err(|why| InventoryError::parse(file, line, why))? {
                raw.add_host(&name, &host, Variables::new(), line);
            }
        }
        add_children(raw, text, file, &name, body.children)?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct RustleDocument {
    inventory: RustleInventory,
}

#[derive(Deserialize)]
struct RustleInventory {
    #[serde(default)]
    hosts: BTreeMap<String, RustleHost>,
    #[serde(default)]
    groups: BTreeMap<String, RustleGroup>,
    #[serde(default)]
    variables: Variables,
    #[serde(default)]
    host_facts: BTreeMap<String, Option<Facts>>,
}

#[derive(Deserialize)]
struct RustleHost {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    vars: Variables,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
struct RustleGroup {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    children: Vec<String>,
    #[serde(default)]
    vars: Variables,
}

fn add_rustle(
    raw: &mut RawInventory,
    inventory: RustleInventory,
    text: &str,
    file: &Path,
) -> Result<(), InventoryError> {
    raw.group_mut("all").vars.extend(inventory.variables);
    for (name, group) in inventory.groups {
        raw.group_mut(&name).vars.extend(group.vars);
        for host in group.hosts {
            raw.add_host(&name, &host, Variables::new(), line_of(text, &format!("\"{host}\"")));
        }
        add_children(raw, text, file, &name, group.children)?;
    }
    for (name, host) in inventory.hosts {
        let mut vars = Variables::new();
        if let Some(address) = host.address {
            vars.insert("ansible_host".into(), Value::String(address));
        }
        if let Some(port) = host.port {
            vars.insert("ansible_port".into(), Value::from(port));
        }
        if let Some(user) = host.user {
            vars.insert("ansible_user".into(), Value::String(user));
        }
        vars.extend(host.vars);
        let line = line_of(text, &format!("\"{name}\""));
        if host.groups.is_empty() {
            raw.touch_host(&name, line);
            raw.host_vars.entry(name.clone()).or_default().extend(vars);
        } else {
            for group in &host.groups {
                raw.add_host(group, &name, vars.clone(), line);
            }
        }
    }
    for (host, facts) in inventory.host_facts {
        if let Some(facts) = facts {
            raw.touch_host(&host, line_of(text, &format!("\"{host}\"")));
            raw.host_facts.insert(host, facts);
        }
    }
    Ok(())
}

//! Ansible YAML inventories: `all:` / `children:` / `hosts:` / `vars:`
//! nesting, YAML 1.1 booleans (`yes` / `no`), host ranges in names. JSON in
//! the same shape goes through [`add_groups`] too.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::range::expand_host_pattern;
use super::{RawInventory, Variables, line_of};
use crate::error::InventoryError;

/// A group node: each key optional, nothing else allowed (a misspelt
/// `host:` would otherwise silently drop hosts).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupNode {
    #[serde(default)]
    hosts: Option<BTreeMap<String, Option<Variables>>>,
    #[serde(default)]
    vars: Option<Variables>,
    #[serde(default)]
    children: Option<BTreeMap<String, Option<GroupNode>>>,
}

/// Top level: group name -> group node.
pub(crate) type GroupTree = BTreeMap<String, Option<GroupNode>>;

/// Parses YAML inventory text.
pub(crate) fn parse(text: &str, file: &Path) -> Result<RawInventory, InventoryError> {
    let tree: Option<GroupTree> = from_yaml(text, file)?;
    let mut raw = RawInventory::default();
    add_groups(&mut raw, tree.unwrap_or_default(), text, file)?;
    Ok(raw)
}

/// Deserializes YAML (1.1 booleans accepted), turning errors into
/// file:line errors that say what was expected.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, InventoryError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().and_then(|l| usize::try_from(l.line()).ok()).filter(|l| *l > 0);
        let rendered = e.to_string();
        let first = rendered.lines().next().unwrap_or("invalid YAML");
        let message = first.strip_prefix("error: ").unwrap_or(first);
        // "line 6 column 3: unknown field ..." -> keep only what follows.
        let message = match message.split_once(": ") {
            Some((at, rest)) if at.starts_with("line ") => rest,
            _ => message,
        };
        InventoryError::parse(file, line, message.to_owned())
    })
}

/// Adds a tree of groups to `raw`.
pub(crate) fn add_groups(
    raw: &mut RawInventory,
    tree: GroupTree,
    text: &str,
    file: &Path,
) -> Result<(), InventoryError> {
    let mut stack: Vec<(Option<String>, String, GroupNode)> =
        tree.into_iter().map(|(name, node)| (None, name, node.unwrap_or_default())).collect();
    while let Some((parent, name, node)) = stack.pop() {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            return Err(InventoryError::parse(file, line_of(text, &name), format!("invalid group name {name:?}")));
        }
        match &parent {
            Some(parent) if name == "all" => {
                return Err(InventoryError::parse(
                    file,
                    line_of(text, "all:"),
                    format!("`all` cannot be a child of `{parent}`"),
                ));
            }
            Some(parent) => raw.add_child(parent, &name),
            None => {
                raw.group_mut(&name);
            }
        }
        if let Some(vars) = node.vars {
            raw.group_mut(&name).vars.extend(vars);
        }
        for (pattern, vars) in node.hosts.unwrap_or_default() {
            let line = line_of(text, &pattern);
            let hosts = expand_host_pattern(&pattern).map_err(|why| InventoryError::parse(file, line, why))?;
            for host in hosts {
                raw.add_host(&name, &host, vars.clone().unwrap_or_default(), line);
            }
        }
        for (child, node) in node.children.unwrap_or_default() {
            stack.push((Some(name.clone()), child, node.unwrap_or_default()));
        }
    }
    Ok(())
}

//! Ansible YAML inventories: `all:` / `children:` / `hosts:` / `vars:`
//! nesting, YAML 1.1 booleans (`yes` / `no`), host ranges in names. JSON in
//! the same shape goes through [`add_group_tree`] too.
//!
//! The document is read into [`Node`]s first and its shape checked by hand,
//! so an error names the key path, what was found and what was expected.

use std::path::Path;

use super::node::{COMPLEX_KEY, Document, Key, KeyPath, Node, NodeValue};
use super::range::expand_host_pattern;
use super::{InventoryFormat, RawInventory, Source, Variables};
use crate::error::InventoryError;

/// Parses YAML inventory text.
pub(crate) fn parse(text: &str, file: &Path) -> Result<RawInventory, InventoryError> {
    let source = Source::new(file, text, InventoryFormat::Yaml);
    let mut raw = RawInventory::default();
    if let Some(top) = parse_document(text, file)? {
        add_group_tree(&mut raw, top, &source)?;
    }
    Ok(raw)
}

/// Node budget of a YAML document: serde-saphyr's default (250,000) plus one
/// per byte. A document without aliases has fewer nodes than bytes, so any
/// inventory fits; an alias bomb still stops, at a size linear in the file.
fn budget(text_len: usize) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.saturating_add(text_len);
    budget.max_events = budget.max_events.saturating_add(text_len.saturating_mul(2));
    budget
}

/// Reads YAML text (1.1 booleans accepted) into nodes; `None` for an empty
/// document. Syntax errors become file:line errors that say what was expected.
pub(crate) fn parse_document(text: &str, file: &Path) -> Result<Option<Node>, InventoryError> {
    let mut options = serde_saphyr::Options::default();
    let budget = budget(text.len());
    let max_nodes = budget.max_nodes;
    options.budget = Some(budget);
    options.with_snippet = false;
    let document: Option<Document> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let line = e.location().and_then(|l| usize::try_from(l.line()).ok()).filter(|l| *l > 0);
        let mut original = &e;
        while let serde_saphyr::Error::AliasError { error, .. } | serde_saphyr::Error::WithSnippet { error, .. } =
            original
        {
            original = error;
        }
        let message = match original {
            serde_saphyr::Error::Budget { breach, .. } => describe_breach(breach, max_nodes),
            _ => {
                let rendered = e.to_string();
                let first = rendered.lines().next().unwrap_or("invalid YAML").to_owned();
                let message = first.strip_prefix("error: ").unwrap_or(&first);
                // "line 6 column 3: unknown field ..." -> keep only what follows.
                let message = match message.split_once(": ") {
                    Some((at, rest)) if at.starts_with("line ") => rest,
                    _ => message,
                };
                if message.contains(COMPLEX_KEY) {
                    message.to_owned()
                } else {
                    format!("{message} (the file is not valid YAML)")
                }
            }
        };
        InventoryError::parse(file, line, message)
    })?;
    Ok(document.map(|d| d.0).filter(|n| n.value != NodeValue::Null))
}

/// What a YAML budget breach means for an inventory, and the way out.
fn describe_breach(breach: &serde_saphyr::budget::BudgetBreach, max_nodes: usize) -> String {
    use serde_saphyr::budget::BudgetBreach;
    let aliases = "aliases (`*name`) of large anchors multiply a document: expand fewer of them";
    match breach {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
            "the YAML expands to more than {max_nodes} nodes (keys, values, lists and mappings, aliases expanded); {aliases}, or split the inventory into a directory of files"
        ),
        BudgetBreach::Aliases { aliases: count } => {
            format!("the YAML uses more than {} aliases (`*name`); {aliases}", count.saturating_sub(1))
        }
        BudgetBreach::Depth { depth } => format!(
            "the YAML nests {depth} levels deep; an inventory needs a few (group, `children`, group, `hosts`, host, variables): flatten the nesting"
        ),
        BudgetBreach::Documents { .. } => {
            "the file holds too many YAML documents (`---` lines); an inventory is one document".to_owned()
        }
        other => format!(
            "the YAML is larger than this parser allows ({other:?}); split the inventory into a directory of files"
        ),
    }
}

/// How each group section is written, for "expected" messages.
fn section_form(section: &str, format: InventoryFormat, found_list: bool) -> String {
    let json = format == InventoryFormat::Json;
    let (form, from_list) = match (section, json) {
        ("hosts", false) => (
            "a mapping with one `HOST:` line per host (its variables under it, or nothing)",
            "write `- web1` as `web1:`",
        ),
        ("hosts", true) => {
            (r#"an object of host names to their variables ({"web1": {}})"#, r#"write ["web1"] as {"web1": {}}"#)
        }
        ("children", false) => ("a mapping with one `GROUP:` line per child group", "write `- web` as `web:`"),
        ("children", true) => (r#"an object of child group names ({"web": {}})"#, r#"write ["web"] as {"web": {}}"#),
        (_, false) => ("a mapping with one `NAME: VALUE` line per variable", "write `- name: value` as `name: value`"),
        (_, true) => (
            r#"an object of variable names to values ({"name": "value"})"#,
            r#"write [{"name": "value"}] as {"name": "value"}"#,
        ),
    };
    if found_list { format!("{form}; {from_list}") } else { form.to_owned() }
}

/// The entries of a group section (`hosts`, `children`, `vars`): a mapping,
/// nothing, or (as Ansible allows for `hosts` and `children`) one name.
fn section_entries(
    node: Node,
    section: &str,
    group: &str,
    path: &KeyPath,
    source: &Source,
) -> Result<Vec<(Key, Node)>, InventoryError> {
    match node.value {
        NodeValue::Map(entries) => Ok(entries),
        NodeValue::Null => Ok(Vec::new()),
        NodeValue::Scalar(serde_json::Value::String(name)) if section != "vars" => {
            Ok(vec![(Key { name, line: node.line }, Node { line: node.line, value: NodeValue::Null })])
        }
        _ => {
            let found = node.describe();
            let form = section_form(section, source.format, matches!(node.value, NodeValue::List(_)));
            Err(source.error(
                node.line,
                path,
                format!("`{path}` is {found}, but `{section}` of group `{group}` must be {form}"),
            ))
        }
    }
}

/// Adds a tree of groups (the YAML inventory shape) to `raw`, in Ansible's
/// order: depth first in document order, a group's `vars`, then its
/// `children`, then its `hosts`.
pub(crate) fn add_group_tree(raw: &mut RawInventory, top: Node, source: &Source) -> Result<(), InventoryError> {
    let root = KeyPath::default();
    let groups = match top.value {
        NodeValue::Map(entries) => entries,
        NodeValue::Null => return Ok(()),
        _ => {
            let expected = if source.format == InventoryFormat::Json {
                r#"an object of group names ({"all": {"hosts": {...}, "children": {...}, "vars": {...}}})"#
            } else {
                "a mapping of group names (`all:` with `hosts:`, `children:` and `vars:` under it)"
            };
            return Err(source.error(
                top.line,
                &root,
                format!("the top level is {}, expected {expected}", top.describe()),
            ));
        }
    };
    for (key, node) in groups {
        add_group(raw, None, key, node, &root, source)?;
    }
    Ok(())
}

fn add_group(
    raw: &mut RawInventory,
    parent: Option<&str>,
    key: Key,
    node: Node,
    parent_path: &KeyPath,
    source: &Source,
) -> Result<(), InventoryError> {
    let name = key.name;
    let path = parent_path.key(&name);
    if name.trim().is_empty() || name.contains(char::is_whitespace) {
        return Err(source.error(
            key.line,
            &path,
            format!("invalid group name {name:?} at `{path}`; group names have no spaces"),
        ));
    }
    match parent {
        Some(parent) if name == "all" => {
            return Err(source.error(
                key.line,
                &path,
                format!("`all` cannot be a child of `{parent}` (at `{path}`); `all` is the top group: move it to the top level"),
            ));
        }
        Some(parent) => raw.add_child(parent, &name),
        None => {
            raw.group_mut(&name);
        }
    }
    let sections = match node.value {
        NodeValue::Map(entries) => entries,
        NodeValue::Null => return Ok(()),
        _ => {
            return Err(source.error(
                node.line,
                &path,
                format!(
                    "`{path}` is {}, expected group `{name}` as {} with `hosts`, `children` or `vars`, or nothing",
                    node.describe(),
                    if source.format == InventoryFormat::Json { "an object" } else { "a mapping" }
                ),
            ));
        }
    };
    let (mut vars, mut children, mut hosts) = (None, None, None);
    for (section, value) in sections {
        let slot = match section.name.as_str() {
            "vars" => &mut vars,
            "children" => &mut children,
            "hosts" => &mut hosts,
            other => {
                let at = path.key(other);
                return Err(source.error(
                    section.line,
                    &at,
                    format!(
                        "unknown field `{other}` in group `{name}` (at `{at}`); a group has only `hosts`, `children` and `vars`: fix the spelling, or put group `{other}` under `children`"
                    ),
                ));
            }
        };
        *slot = Some((section, value));
    }
    if let Some((_, node)) = vars {
        let at = path.key("vars");
        for (var, value) in section_entries(node, "vars", &name, &at, source)? {
            raw.group_mut(&name).vars.insert(var.name, value.into_json());
        }
    }
    if let Some((_, node)) = children {
        let at = path.key("children");
        for (child, child_node) in section_entries(node, "children", &name, &at, source)? {
            add_group(raw, Some(&name), child, child_node, &at, source)?;
        }
    }
    if let Some((_, node)) = hosts {
        let at = path.key("hosts");
        for (pattern, vars_node) in section_entries(node, "hosts", &name, &at, source)? {
            let host_path = at.key(&pattern.name);
            let vars = match vars_node.value {
                NodeValue::Null => Variables::new(),
                NodeValue::Map(entries) => entries.into_iter().map(|(k, v)| (k.name, v.into_json())).collect(),
                _ => {
                    let form = section_form("vars", source.format, matches!(vars_node.value, NodeValue::List(_)));
                    return Err(source.error(
                        vars_node.line.or(pattern.line),
                        &host_path,
                        format!(
                            "`{host_path}` is {}, but the variables of host `{}` must be {form}, or nothing",
                            vars_node.describe(),
                            pattern.name
                        ),
                    ));
                }
            };
            let expanded = expand_host_pattern(&pattern.name)
                .map_err(|why| source.error(pattern.line, &host_path, format!("at `{host_path}`: {why}")))?;
            let origin = source.origin_of_pattern(pattern.line, Some(&pattern.name));
            for host in expanded {
                raw.add_host(&name, &host, vars.clone(), &origin);
            }
        }
    }
    Ok(())
}

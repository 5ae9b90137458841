//! `host_vars/` and `group_vars/` beside an inventory: per host or group a
//! file (`NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`) or a directory of
//! such files, read in name order.
//!
//! Each directory is listed once and its entries matched to hosts and groups
//! by name, so an inventory of 100,000 hosts costs one listing, not 400,000
//! lookups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::node::NodeValue;
use super::yaml::parse_document;
use super::{RawInventory, Variables, read_text};
use crate::error::InventoryError;

/// Loads both directories under `dir` for the groups and hosts `raw` knows.
pub(crate) fn load_vars_dirs(dir: &Path, raw: &mut RawInventory) -> Result<(), InventoryError> {
    raw.group_mut("all");
    for (name, paths) in entries_by_name(&dir.join("group_vars"))? {
        let Some(group) = raw.groups.get_mut(&name) else { continue };
        for path in paths {
            group.dir_vars.extend(load_entry(&path)?);
        }
    }
    let by_name = entries_by_name(&dir.join("host_vars"))?;
    if by_name.is_empty() {
        return Ok(());
    }
    for host in &mut raw.hosts {
        for path in by_name.get(&host.name).into_iter().flatten() {
            host.dir_vars.extend(load_entry(path)?);
        }
    }
    Ok(())
}

/// The entries of `base` by the host or group name they are for, each
/// name's in Ansible's order: `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`.
fn entries_by_name(base: &Path) -> Result<HashMap<String, Vec<PathBuf>>, InventoryError> {
    let mut by_name: HashMap<String, Vec<(usize, PathBuf)>> = HashMap::new();
    if !base.is_dir() {
        return Ok(HashMap::new());
    }
    let entries = std::fs::read_dir(base).map_err(|source| InventoryError::Read { file: base.to_owned(), source })?;
    for entry in entries.filter_map(Result::ok) {
        let Ok(file_name) = entry.file_name().into_string() else { continue };
        let (name, rank) = match [".yml", ".yaml", ".json"].iter().position(|s| file_name.ends_with(s)) {
            Some(i) => (file_name[..file_name.len() - [".yml", ".yaml", ".json"][i].len()].to_owned(), i + 1),
            None => (file_name.clone(), 0),
        };
        by_name.entry(name).or_default().push((rank, entry.path()));
        // `a.yml` is also the `NAME` entry of a host called `a.yml`.
        if rank > 0 {
            by_name.entry(file_name).or_default().push((0, entry.path()));
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, mut paths)| {
            paths.sort();
            (name, paths.into_iter().map(|(_, p)| p).collect())
        })
        .collect())
}

/// A file's variables, or those of every file in a directory.
fn load_entry(path: &Path) -> Result<Variables, InventoryError> {
    let mut vars = Variables::new();
    if path.is_file() {
        vars.extend(load_file(path)?);
    } else if path.is_dir() {
        for file in files_in(path)? {
            vars.extend(load_file(&file)?);
        }
    }
    Ok(vars)
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>, InventoryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| InventoryError::Read { file: dir.to_owned(), source })?;
    let mut files = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            files.extend(files_in(&path)?);
        } else if matches!(path.extension().and_then(|e| e.to_str()), None | Some("yml" | "yaml" | "json")) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(path: &Path) -> Result<Variables, InventoryError> {
    let text = read_text(path)?;
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        tracing::warn!(file = %path.display(), "skipping vault-encrypted variables file");
        return Ok(Variables::new());
    }
    let Some(node) = parse_document(&text, path)? else { return Ok(Variables::new()) };
    match node.value {
        NodeValue::Map(entries) => Ok(entries.into_iter().map(|(k, v)| (k.name, v.into_json())).collect()),
        _ => Err(InventoryError::parse(
            path,
            node.line,
            format!(
                "the file is {}, expected a mapping of variable names to values (`name: value` lines)",
                node.describe()
            ),
        )),
    }
}

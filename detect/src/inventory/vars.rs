//! `host_vars/` and `group_vars/` beside an inventory: per host or group a
//! file (`NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`) or a directory of
//! such files, read in name order.

use std::path::{Path, PathBuf};

use super::yaml::from_yaml;
use super::{RawInventory, Variables, read_text};
use crate::error::InventoryError;

/// Loads both directories under `dir` for the groups and hosts `raw` knows.
pub(crate) fn load_vars_dirs(dir: &Path, raw: &mut RawInventory) -> Result<(), InventoryError> {
    let mut groups: Vec<String> = raw.groups.keys().cloned().collect();
    if !groups.iter().any(|g| g == "all") {
        groups.push("all".into());
    }
    for group in groups {
        let vars = load_entity(&dir.join("group_vars"), &group)?;
        if !vars.is_empty() {
            raw.group_mut(&group).dir_vars.extend(vars);
        }
    }
    for host in raw.host_order.clone() {
        let vars = load_entity(&dir.join("host_vars"), &host)?;
        if !vars.is_empty() {
            raw.host_dir_vars.entry(host).or_default().extend(vars);
        }
    }
    Ok(())
}

fn load_entity(base: &Path, name: &str) -> Result<Variables, InventoryError> {
    let mut vars = Variables::new();
    if !base.is_dir() || name.contains('/') {
        return Ok(vars);
    }
    for candidate in [name.to_owned(), format!("{name}.yml"), format!("{name}.yaml"), format!("{name}.json")] {
        let path = base.join(&candidate);
        if path.is_file() {
            vars.extend(load_file(&path)?);
        } else if path.is_dir() {
            for file in files_in(&path)? {
                vars.extend(load_file(&file)?);
            }
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
    let vars: Option<Variables> = from_yaml(&text, path)?;
    Ok(vars.unwrap_or_default())
}

//! Ansible INI inventories: `[group]`, `[group:vars]`, `[group:children]`,
//! inline host variables with shell quoting, `host:port`, host ranges.

use std::path::Path;

use serde_json::Value;

use super::range::expand_host_pattern;
use super::{InventoryFormat, RawInventory, Source, Variables, split_shell_words};
use crate::error::InventoryError;

#[derive(Debug, Clone)]
enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// Parses INI text into groups and host variables.
pub(crate) fn parse(text: &str, file: &Path) -> Result<RawInventory, InventoryError> {
    let source = Source::new(file, text, InventoryFormat::Ini);
    let mut raw = RawInventory::default();
    let mut section = Section::Hosts("ungrouped".to_owned());
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let err = |message: String| InventoryError::parse(file, Some(number), message);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = parse_header(line).map_err(err)?;
            match &section {
                Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => {
                    raw.group_mut(g);
                }
            }
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = split_shell_words(strip_comment(line)).ok_or_else(|| {
                    err(format!("unclosed quote in host line `{line}`; close it, or escape the quote with `\\`"))
                })?;
                let Some((pattern, assignments)) = words.split_first() else { continue };
                let (pattern, port) = split_port(pattern).map_err(&err)?;
                let mut vars = Variables::new();
                for assignment in assignments {
                    let (key, value) = assignment.split_once('=').ok_or_else(|| {
                        err(format!("expected key=value host variable after `{pattern}`, got `{assignment}`"))
                    })?;
                    check_key(key).map_err(&err)?;
                    vars.insert(key.to_owned(), literal(value));
                }
                if let Some(port) = port {
                    vars.entry("ansible_port".to_owned()).or_insert(Value::from(port));
                }
                let origin = source.origin(Some(number));
                for host in expand_host_pattern(pattern).map_err(&err)? {
                    raw.add_host(group, &host, vars.clone(), &origin);
                }
            }
            Section::Vars(group) => {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| err(format!("expected key=value in [{group}:vars], got `{line}`")))?;
                let key = key.trim();
                check_key(key).map_err(&err)?;
                let value = strip_comment(value.trim());
                let value = split_shell_words(value).map_or_else(|| value.to_owned(), |w| w.join(" "));
                raw.group_mut(group).vars.insert(key.to_owned(), literal(&value));
            }
            Section::Children(group) => {
                let child = strip_comment(line).trim();
                if child.is_empty() || child.contains(char::is_whitespace) || child.contains('=') || child.contains(':')
                {
                    return Err(err(format!("expected a group name in [{group}:children], got `{line}`")));
                }
                if child == "all" {
                    return Err(err(format!("`all` cannot be a child of `{group}`")));
                }
                raw.add_child(group, child);
            }
        }
    }
    Ok(raw)
}

fn parse_header(line: &str) -> Result<Section, String> {
    let body = strip_comment(line).trim_end();
    let inner = body
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .ok_or_else(|| format!("expected a section header like [group], got `{line}`"))?;
    let (name, kind) = match inner.split_once(':') {
        Some((name, kind)) => (name.trim(), Some(kind.trim())),
        None => (inner.trim(), None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains(['[', ']']) {
        return Err(format!("invalid group name `{name}` in `{line}`; group names have no spaces or brackets"));
    }
    match kind {
        None => Ok(Section::Hosts(name.to_owned())),
        Some("vars") => Ok(Section::Vars(name.to_owned())),
        Some("children") => Ok(Section::Children(name.to_owned())),
        Some(other) => Err(format!(
            "unknown section type `{other}` in `{line}`; expected [{name}], [{name}:vars] or [{name}:children]"
        )),
    }
}

fn check_key(key: &str) -> Result<(), String> {
    let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("invalid variable name `{key}`; names are letters, digits and `_`, and do not start with a digit"))
    }
}

/// Cuts an unquoted `#` comment that follows whitespace.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous_blank = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous_blank => return &line[..i],
            _ => {}
        }
        previous_blank = c.is_whitespace();
    }
    line
}

/// `host:2222` -> (`host`, 2222); colons inside `[..]` ranges and IPv6
/// addresses (more than one colon outside brackets) are not ports.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons.as_slice() {
        [i] => {
            let port = &pattern[i + 1..];
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{pattern}`: `{port}` is not a port number (1-65535)"))?;
            Ok((&pattern[..*i], Some(port)))
        }
        _ => Ok((pattern, None)),
    }
}

/// The value of an INI assignment: integers and Python's `True`/`False`/`None`
/// become JSON values, everything else stays a string (`2.10` stays `"2.10"`).
fn literal(value: &str) -> Value {
    match value {
        "True" | "true" => return Value::Bool(true),
        "False" | "false" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = value.parse::<i64>() {
        return Value::from(n);
    }
    Value::String(value.to_owned())
}

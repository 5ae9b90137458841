//! Ansible inventories (INI, YAML, JSON) parsed into one resolved model:
//! [`ParsedInventory`] with a [`HostConfig`] per host whose variables are
//! merged with Ansible's precedence.
//!
//! Parsing happens in two steps: each format's parser fills a
//! [`RawInventory`] (groups, their direct hosts/children/vars, host vars), and
//! [`resolve`] turns that into the model: implicit `all` / `ungrouped`, cycle
//! check, variable precedence, connection settings.

mod ini;
mod json;
mod pattern;
mod range;
mod vars;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::error::InventoryError;
use crate::facts::{Facts, has_platform_facts, is_fact_variable};

pub use range::expand_host_pattern;

/// Variables of a host or group, by name.
pub type Variables = BTreeMap<String, Value>;

/// An inventory file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum InventoryFormat {
    /// Ansible INI.
    Ini,
    /// Ansible YAML.
    Yaml,
    /// JSON: `ansible-inventory --list`, rustle-parse output, or the YAML shape.
    Json,
}

impl InventoryFormat {
    /// Picks the format from the file name, then from the content.
    pub fn detect(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("ini" | "cfg" | "hosts") => return Self::Ini,
            Some("yml" | "yaml") => return Self::Yaml,
            Some("json") => return Self::Json,
            _ => {}
        }
        let meaningful =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
        for line in meaningful {
            if line.starts_with('{') {
                return Self::Json;
            }
            if line.starts_with('[') || line.contains('=') {
                return Self::Ini;
            }
            if line == "---" || line.ends_with(':') {
                return Self::Yaml;
            }
        }
        Self::Ini
    }
}

/// How to reach a host, from `ansible_connection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionMethod {
    /// OpenSSH (Ansible's `ssh`, `smart`, `paramiko`).
    Ssh,
    /// Commands run on this machine (`local`).
    Local,
    /// Windows Remote Management (`winrm`, `psrp`): not probed.
    WinRm,
    /// Anything else (`docker`, `community.general.lxd`, ...): not probed.
    Other(String),
}

impl ConnectionMethod {
    fn from_ansible(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "ssh" | "smart" | "paramiko" | "ansible.builtin.ssh" | "ansible.builtin.paramiko_ssh" => Self::Ssh,
            "local" | "ansible.builtin.local" => Self::Local,
            "winrm" | "psrp" | "ansible.builtin.winrm" | "ansible.builtin.psrp" => Self::WinRm,
            _ => Self::Other(value.to_owned()),
        }
    }

    /// The name as Ansible spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ssh => "ssh",
            Self::Local => "local",
            Self::WinRm => "winrm",
            Self::Other(name) => name,
        }
    }
}

/// How to connect to a host: the `ansible_*` connection variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionConfig {
    /// `ansible_connection`.
    pub method: ConnectionMethod,
    /// `ansible_host`, else the inventory name.
    pub host: String,
    /// `ansible_port`; `None` leaves it to ssh (and ~/.ssh/config).
    pub port: Option<u16>,
    /// `ansible_user`; `None` leaves it to ssh.
    pub username: Option<String>,
    /// `ansible_ssh_private_key_file` / `ansible_private_key_file`.
    pub private_key_file: Option<PathBuf>,
    /// `ansible_timeout` / `ansible_ssh_timeout`: the connect timeout (10 s by default).
    pub timeout: Duration,
    /// `ansible_ssh_common_args` then `ansible_ssh_extra_args`, split like a shell.
    pub ssh_args: Vec<String>,
}

impl ConnectionConfig {
    /// An ssh connection to `host` with defaults.
    pub fn ssh(host: impl Into<String>) -> Self {
        Self {
            method: ConnectionMethod::Ssh,
            host: host.into(),
            port: None,
            username: None,
            private_key_file: None,
            timeout: Duration::from_secs(10),
            ssh_args: Vec::new(),
        }
    }
}

/// Where a host's `cached_facts` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactsOrigin {
    /// `inventory.host_facts` of a rustle-parse JSON inventory.
    InventoryHostFacts,
    /// `ansible_*` fact variables set on the host or its groups.
    HostVariables,
}

impl FactsOrigin {
    /// How the origin reads in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::InventoryHostFacts => "inventory host_facts",
            Self::HostVariables => "ansible_* host variables",
        }
    }
}

/// One host of the inventory, with its variables resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostConfig {
    /// The inventory name (`inventory_hostname`).
    pub name: String,
    /// Where to connect: `ansible_host`, else the name.
    pub address: String,
    /// How to connect.
    pub connection: ConnectionConfig,
    /// An explicit target (`rustle_target_triple` / `target_triple`), unparsed.
    pub target_triple: Option<String>,
    /// Which variable `target_triple` came from.
    pub target_triple_variable: Option<String>,
    /// Facts known from the inventory itself, if any.
    pub cached_facts: Option<Facts>,
    /// Where `cached_facts` came from.
    pub facts_origin: Option<FactsOrigin>,
    /// All variables, merged with Ansible's precedence.
    pub variables: Variables,
    /// Every group the host belongs to, directly or through children (with `all`).
    pub groups: Vec<String>,
}

/// One group of the inventory as written (direct members only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InventoryGroup {
    /// The group's name.
    pub name: String,
    /// Hosts listed directly in the group.
    pub hosts: Vec<String>,
    /// Child groups.
    pub children: Vec<String>,
    /// Group variables (inventory file, then `group_vars/`).
    pub vars: Variables,
}

/// A resolved inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParsedInventory {
    /// Hosts by inventory name.
    pub hosts: BTreeMap<String, HostConfig>,
    /// Groups by name, including `all` and `ungrouped`.
    pub groups: BTreeMap<String, InventoryGroup>,
    /// Variables of the `all` group.
    pub vars: Variables,
    /// The file (or directory) it was read from.
    pub source: Option<PathBuf>,
}

impl ParsedInventory {
    /// Reads an inventory file (any format) or a directory of them, with the
    /// `host_vars/` and `group_vars/` directories beside it.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let read_err = |source| InventoryError::Read { file: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let (mut raw, vars_dir) = if meta.is_dir() {
            let mut raw = RawInventory::default();
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_inventory_file_name(p))
                .collect();
            entries.sort();
            for file in entries {
                let text = read_text(&file)?;
                raw.merge(parse_raw(&text, InventoryFormat::detect(&file, &text), &file)?);
            }
            (raw, path.to_owned())
        } else {
            let text = read_text(path)?;
            let raw = parse_raw(&text, InventoryFormat::detect(path, &text), path)?;
            (raw, path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned))
        };
        vars::load_vars_dirs(&vars_dir, &mut raw)?;
        let mut inventory = resolve(raw, path)?;
        inventory.source = Some(path.to_owned());
        Ok(inventory)
    }

    /// Parses inventory text of a known format (no `host_vars/` lookup);
    /// `file` names it in errors.
    pub fn parse(text: &str, format: InventoryFormat, file: &Path) -> Result<Self, InventoryError> {
        let mut inventory = resolve(parse_raw(text, format, file)?, file)?;
        inventory.source = Some(file.to_owned());
        Ok(inventory)
    }

    /// Keeps the hosts an Ansible `--limit` pattern selects: names, groups,
    /// `*` globs, separated by `:` or `,`, with `!` (except) and `&` (and).
    pub fn limit(&self, pattern: &str) -> Result<Self, InventoryError> {
        let keep = pattern::select(self, pattern);
        if keep.is_empty() {
            return Err(InventoryError::LimitMatchesNothing { pattern: pattern.to_owned() });
        }
        let mut limited = self.clone();
        limited.hosts.retain(|name, _| keep.contains(name));
        Ok(limited)
    }

    /// Hosts of a group, directly or through its children.
    pub fn hosts_of_group(&self, group: &str) -> Vec<&str> {
        self.hosts.values().filter(|h| h.groups.iter().any(|g| g == group)).map(|h| h.name.as_str()).collect()
    }
}

fn is_inventory_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    !name.starts_with('.')
        && !name.ends_with('~')
        && !matches!(path.extension().and_then(|e| e.to_str()), Some("retry" | "orig" | "bak" | "md" | "pyc"))
}

pub(crate) fn read_text(path: &Path) -> Result<String, InventoryError> {
    std::fs::read_to_string(path).map_err(|source| InventoryError::Read { file: path.to_owned(), source })
}

fn parse_raw(text: &str, format: InventoryFormat, file: &Path) -> Result<RawInventory, InventoryError> {
    match format {
        InventoryFormat::Ini => ini::parse(text, file),
        InventoryFormat::Yaml => yaml::parse(text, file),
        InventoryFormat::Json => json::parse(text, file),
    }
}

/// 1-based line of the first occurrence of `needle` in `text`, for errors
/// found after parsing (YAML, JSON).
pub(crate) fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// A group as written: direct members and its own variables.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawGroup {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Variables,
    /// Variables from `group_vars/`, applied above every inventory group var.
    pub dir_vars: Variables,
}

/// What a parser produces: groups and host variables, unresolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawInventory {
    pub groups: BTreeMap<String, RawGroup>,
    /// Hosts in order of first appearance.
    pub host_order: Vec<String>,
    pub host_vars: BTreeMap<String, Variables>,
    /// Variables from `host_vars/`.
    pub host_dir_vars: BTreeMap<String, Variables>,
    /// Facts embedded in the inventory (rustle-parse `host_facts`).
    pub host_facts: BTreeMap<String, Facts>,
    /// Where each host was first written, for errors.
    pub host_lines: BTreeMap<String, usize>,
}

impl RawInventory {
    pub fn group_mut(&mut self, name: &str) -> &mut RawGroup {
        self.groups.entry(name.to_owned()).or_default()
    }

    /// Adds a host to a group (and to the inventory), merging its variables.
    pub fn add_host(&mut self, group: &str, host: &str, vars: Variables, line: Option<usize>) {
        let members = &mut self.group_mut(group).hosts;
        if !members.iter().any(|h| h == host) {
            members.push(host.to_owned());
        }
        self.touch_host(host, line);
        self.host_vars.entry(host.to_owned()).or_default().extend(vars);
    }

    pub fn touch_host(&mut self, host: &str, line: Option<usize>) {
        if !self.host_vars.contains_key(host) {
            self.host_order.push(host.to_owned());
            self.host_vars.insert(host.to_owned(), Variables::new());
        }
        if let Some(line) = line {
            self.host_lines.entry(host.to_owned()).or_insert(line);
        }
    }

    pub fn add_child(&mut self, parent: &str, child: &str) {
        let children = &mut self.group_mut(parent).children;
        if !children.iter().any(|c| c == child) {
            children.push(child.to_owned());
        }
        self.group_mut(child);
    }

    fn merge(&mut self, other: Self) {
        for (name, group) in other.groups {
            for host in group.hosts {
                let members = &mut self.group_mut(&name).hosts;
                if !members.contains(&host) {
                    members.push(host);
                }
            }
            for child in group.children {
                self.add_child(&name, &child);
            }
            self.group_mut(&name).vars.extend(group.vars);
        }
        for host in other.host_order {
            self.touch_host(&host, None);
        }
        for (host, vars) in other.host_vars {
            self.host_vars.entry(host).or_default().extend(vars);
        }
        self.host_facts.extend(other.host_facts);
        for (host, line) in other.host_lines {
            self.host_lines.entry(host).or_insert(line);
        }
    }
}

/// Turns parsed groups into the resolved model (see the module docs).
pub(crate) fn resolve(mut raw: RawInventory, file: &Path) -> Result<ParsedInventory, InventoryError> {
    raw.group_mut("all");
    raw.group_mut("ungrouped");
    // Every top-level group hangs under `all`.
    let child_names: BTreeSet<String> = raw.groups.values().flat_map(|g| g.children.iter().cloned()).collect();
    let tops: Vec<String> = raw.groups.keys().filter(|g| *g != "all" && !child_names.contains(*g)).cloned().collect();
    for top in tops {
        raw.add_child("all", &top);
    }
    check_cycles(&raw, file)?;

    // Hosts in no group but `all` / `ungrouped` are `ungrouped`.
    let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (group, g) in &raw.groups {
        for host in &g.hosts {
            direct.entry(host.as_str()).or_default().push(group.as_str());
        }
    }
    let ungrouped: Vec<String> = raw
        .host_order
        .iter()
        .filter(|h| direct.get(h.as_str()).is_none_or(|gs| gs.iter().all(|g| *g == "all" || *g == "ungrouped")))
        .cloned()
        .collect();
    drop(direct);
    for host in ungrouped {
        let members = &mut raw.group_mut("ungrouped").hosts;
        if !members.contains(&host) {
            members.push(host);
        }
    }

    let depth = group_depths(&raw);
    let parents = parent_map(&raw);
    let mut hosts = BTreeMap::new();
    for name in &raw.host_order {
        let mut groups: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> =
            raw.groups.iter().filter(|(_, g)| g.hosts.contains(name)).map(|(n, _)| n.as_str()).collect();
        while let Some(g) = stack.pop() {
            if groups.insert(g) {
                stack.extend(parents.get(g).into_iter().flatten().copied());
            }
        }
        groups.insert("all");
        let mut ordered: Vec<&str> = groups.into_iter().collect();
        let priority = |g: &str| {
            raw.groups.get(g).and_then(|g| g.vars.get("ansible_group_priority")).and_then(value_as_i64).unwrap_or(1)
        };
        ordered.sort_by_key(|g| (depth.get(g).copied().unwrap_or(0), priority(g), g.to_string()));
        let empty = Variables::new();
        let group = |g: &str| raw.groups.get(g);
        // Ansible: inventory `all` vars < inventory group vars (by depth,
        // priority, name) < group_vars/all < group_vars/* < inventory host
        // vars < host_vars/*.
        let mut variables = Variables::new();
        for layer in [
            ordered.iter().filter(|g| **g == "all").filter_map(|g| group(g)).map(|g| &g.vars).collect::<Vec<_>>(),
            ordered.iter().filter(|g| **g != "all").filter_map(|g| group(g)).map(|g| &g.vars).collect(),
            ordered.iter().filter(|g| **g == "all").filter_map(|g| group(g)).map(|g| &g.dir_vars).collect(),
            ordered.iter().filter(|g| **g != "all").filter_map(|g| group(g)).map(|g| &g.dir_vars).collect(),
            vec![raw.host_vars.get(name).unwrap_or(&empty)],
            vec![raw.host_dir_vars.get(name).unwrap_or(&empty)],
        ] {
            for vars in layer {
                variables.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let line = raw.host_lines.get(name).copied();
        let host = host_config(name, variables, raw.host_facts.get(name).cloned(), file, line)?;
        let host = HostConfig { groups: ordered.iter().map(|g| g.to_string()).collect(), ..host };
        hosts.insert(name.clone(), host);
    }

    let groups = raw
        .groups
        .iter()
        .map(|(name, g)| {
            let mut vars = g.vars.clone();
            vars.extend(g.dir_vars.clone());
            (
                name.clone(),
                InventoryGroup { name: name.clone(), hosts: g.hosts.clone(), children: g.children.clone(), vars },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let vars = groups.get("all").map(|g| g.vars.clone()).unwrap_or_default();
    Ok(ParsedInventory { hosts, groups, vars, source: None })
}

fn parent_map(raw: &RawInventory) -> BTreeMap<&str, Vec<&str>> {
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, g) in &raw.groups {
        for child in &g.children {
            parents.entry(child.as_str()).or_default().push(name.as_str());
        }
    }
    parents
}

fn check_cycles(raw: &RawInventory, file: &Path) -> Result<(), InventoryError> {
    // Iterative DFS with colours: 1 = on the current path, 2 = done.
    let mut colour: BTreeMap<&str, u8> = BTreeMap::new();
    for start in raw.groups.keys() {
        if colour.contains_key(start.as_str()) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        colour.insert(start, 1);
        while let Some((group, next)) = path.last_mut() {
            let children = raw.groups.get(*group).map(|g| g.children.as_slice()).unwrap_or_default();
            if let Some(child) = children.get(*next) {
                *next += 1;
                match colour.get(child.as_str()) {
                    Some(1) => {
                        let mut names: Vec<&str> = path.iter().map(|(g, _)| *g).collect();
                        let from = names.iter().position(|g| g == child).unwrap_or(0);
                        names.drain(..from);
                        names.push(child);
                        return Err(InventoryError::GroupCycle {
                            file: file.to_owned(),
                            group: child.clone(),
                            path: names.join(" -> "),
                        });
                    }
                    Some(_) => {}
                    None => {
                        colour.insert(child, 1);
                        path.push((child.as_str(), 0));
                    }
                }
            } else {
                colour.insert(group, 2);
                path.pop();
            }
        }
    }
    Ok(())
}

/// Longest distance from `all` (Ansible's group depth); needs an acyclic graph.
fn group_depths(raw: &RawInventory) -> BTreeMap<&str, usize> {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    depth.insert("all", 0);
    // Relax edges until nothing changes; at most |groups| rounds on a DAG.
    for _ in 0..=raw.groups.len() {
        let mut changed = false;
        for (name, g) in &raw.groups {
            let Some(&d) = depth.get(name.as_str()) else { continue };
            for child in &g.children {
                let entry = depth.entry(child.as_str()).or_insert(0);
                if *entry < d + 1 {
                    *entry = d + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

pub(crate) fn value_as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn value_as_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn first_var<'a>(vars: &'a Variables, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    names.iter().find_map(|n| vars.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
}

fn host_config(
    name: &str,
    variables: Variables,
    inventory_facts: Option<Facts>,
    file: &Path,
    line: Option<usize>,
) -> Result<HostConfig, InventoryError> {
    let invalid = |var: &str, value: &Value, expected: &str| {
        InventoryError::parse(file, line, format!("host `{name}`: `{var}` is {value}, expected {expected}"))
    };
    let text = |names: &[&'static str]| -> Result<Option<String>, InventoryError> {
        match first_var(&variables, names) {
            None => Ok(None),
            Some((var, value)) => value_as_string(value).map(Some).ok_or_else(|| invalid(var, value, "a string")),
        }
    };
    let address = text(&["ansible_host", "ansible_ssh_host"])?.unwrap_or_else(|| name.to_owned());
    let port = match first_var(&variables, &["ansible_port", "ansible_ssh_port"]) {
        None => None,
        Some((var, value)) => Some(
            value_as_i64(value)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(var, value, "a port number 1-65535"))?,
        ),
    };
    let timeout = match first_var(&variables, &["ansible_timeout", "ansible_ssh_timeout"]) {
        None => Duration::from_secs(10),
        Some((var, value)) => Duration::from_secs(
            value_as_i64(value)
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0)
                .ok_or_else(|| invalid(var, value, "a number of seconds"))?,
        ),
    };
    let method = text(&["ansible_connection"])?.map_or(ConnectionMethod::Ssh, |m| ConnectionMethod::from_ansible(&m));
    let mut ssh_args = Vec::new();
    for var in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        if let Some(args) = text(&[var])? {
            ssh_args.extend(
                split_shell_words(&args)
                    .ok_or_else(|| invalid(var, &Value::String(args.clone()), "balanced quotes"))?,
            );
        }
    }
    let connection = ConnectionConfig {
        method,
        host: address.clone(),
        port,
        username: text(&["ansible_user", "ansible_ssh_user", "remote_user"])?,
        private_key_file: text(&["ansible_ssh_private_key_file", "ansible_private_key_file"])?.map(PathBuf::from),
        timeout,
        ssh_args,
    };
    let (target_triple, target_triple_variable) =
        match first_var(&variables, &["rustle_target_triple", "target_triple"]) {
            None => (None, None),
            Some((var, value)) => (
                Some(value_as_string(value).ok_or_else(|| invalid(var, value, "a target triple string"))?),
                Some(var.to_owned()),
            ),
        };
    let fact_vars: Facts =
        variables.iter().filter(|(k, _)| is_fact_variable(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let (cached_facts, facts_origin) = match inventory_facts {
        Some(facts) if !facts.is_empty() => (Some(facts), Some(FactsOrigin::InventoryHostFacts)),
        _ if has_platform_facts(&fact_vars) => (Some(fact_vars), Some(FactsOrigin::HostVariables)),
        _ => (None, None),
    };
    Ok(HostConfig {
        name: name.to_owned(),
        address,
        connection,
        target_triple,
        target_triple_variable,
        cached_facts,
        facts_origin,
        variables,
        groups: Vec::new(),
    })
}

/// Splits a string like a POSIX shell would into words (quotes and
/// backslashes, no expansion). `None` when a quote is not closed.
pub fn split_shell_words(input: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests;

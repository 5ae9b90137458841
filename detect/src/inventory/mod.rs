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
mod node;
mod pattern;
mod range;
mod vars;
mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use self::node::KeyPath;
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

/// Reads a file as UTF-8 text; a file that is not UTF-8 is reported with the
/// line and column of its first bad byte.
pub(crate) fn read_text(path: &Path) -> Result<String, InventoryError> {
    let bytes = std::fs::read(path).map_err(|source| InventoryError::Read { file: path.to_owned(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid = e.utf8_error().valid_up_to();
        let before = &bytes[..valid];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        InventoryError::NotUtf8 { file: path.to_owned(), line, column, byte: bytes.get(valid).copied().unwrap_or(0) }
    })
}

fn parse_raw(text: &str, format: InventoryFormat, file: &Path) -> Result<RawInventory, InventoryError> {
    match format {
        InventoryFormat::Ini => ini::parse(text, file),
        InventoryFormat::Yaml => yaml::parse(text, file),
        InventoryFormat::Json => json::parse(text, file),
    }
}

/// 1-based line of the first line of `text` that contains `needle`; only
/// for errors (it reads the text from the start).
pub(crate) fn first_line_with(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// The file a parser reads: names it in errors and gives hosts their origin.
pub(crate) struct Source {
    pub file: Arc<Path>,
    /// The text, kept for JSON, whose nodes have no lines: errors look the
    /// line up from the key path, host origins from the host's name.
    pub text: Arc<str>,
    pub format: InventoryFormat,
}

impl Source {
    pub fn new(file: &Path, text: &str, format: InventoryFormat) -> Self {
        let text = if format == InventoryFormat::Json { Arc::from(text) } else { Arc::from("") };
        Self { file: Arc::from(file), text, format }
    }

    /// Where a host written at `line` (or, in JSON, wherever its name is
    /// first quoted) comes from.
    pub fn origin(&self, line: Option<usize>) -> Origin {
        self.origin_of_pattern(line, None)
    }

    /// Like [`Source::origin`], for hosts expanded from the range `pattern`
    /// (in JSON, the pattern is what the text quotes).
    pub fn origin_of_pattern(&self, line: Option<usize>, pattern: Option<&str>) -> Origin {
        let line = match (line, self.format) {
            (Some(line), _) => LineHint::Known(line),
            (None, InventoryFormat::Json) => LineHint::FirstQuotedMention {
                text: self.text.clone(),
                written_as: pattern.filter(|p| p.contains('[')).map(Arc::from),
            },
            (None, _) => LineHint::Unknown,
        };
        Origin { file: self.file.clone(), line }
    }

    /// An error at the node of `path` (whose line is `line` when known).
    pub fn error(&self, line: Option<usize>, path: &KeyPath, message: impl Into<String>) -> InventoryError {
        let line = line.or_else(|| match self.format {
            InventoryFormat::Json => json::line_of_path(&self.text, path),
            _ => None,
        });
        InventoryError::parse(self.file.to_path_buf(), line, message)
    }
}

/// Where a host was first written, for errors found while resolving.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub file: Arc<Path>,
    pub line: LineHint,
}

/// A host's line: known, or looked up in the text only when an error needs it
/// (looking it up for every host would read the file once per host).
#[derive(Debug, Clone)]
pub(crate) enum LineHint {
    Known(usize),
    /// The first line with the host's name (or the range it was written as)
    /// as a JSON string.
    FirstQuotedMention {
        text: Arc<str>,
        written_as: Option<Arc<str>>,
    },
    Unknown,
}

impl Origin {
    /// The line of host `name`, when it can be told.
    pub fn line(&self, name: &str) -> Option<usize> {
        match &self.line {
            LineHint::Known(line) => Some(*line),
            LineHint::FirstQuotedMention { text, written_as } => {
                let needle = serde_json::to_string(written_as.as_deref().unwrap_or(name)).ok()?;
                first_line_with(text, &needle)
            }
            LineHint::Unknown => None,
        }
    }
}

/// A host's index in [`RawInventory::hosts`].
pub(crate) type HostId = usize;

/// A group as written: direct members and its own variables. Members are
/// kept in first-seen order with a set beside them, so adding one is O(1).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawGroup {
    pub hosts: Vec<HostId>,
    host_set: HashSet<HostId>,
    pub children: Vec<String>,
    child_set: HashSet<String>,
    pub vars: Variables,
    /// Variables from `group_vars/`, applied above every inventory group var.
    pub dir_vars: Variables,
}

impl RawGroup {
    fn add_host(&mut self, host: HostId) {
        if self.host_set.insert(host) {
            self.hosts.push(host);
        }
    }

    fn add_child(&mut self, child: &str) {
        if !self.child_set.contains(child) {
            self.child_set.insert(child.to_owned());
            self.children.push(child.to_owned());
        }
    }
}

/// A host as written: its own variables, unresolved.
#[derive(Debug, Clone)]
pub(crate) struct RawHost {
    pub name: String,
    pub vars: Variables,
    /// Variables from `host_vars/`.
    pub dir_vars: Variables,
    /// Facts embedded in the inventory (rustle-parse `host_facts`).
    pub facts: Option<Facts>,
    /// Where the host was first written, for errors.
    pub origin: Origin,
}

/// What a parser produces: groups and hosts, unresolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawInventory {
    pub groups: BTreeMap<String, RawGroup>,
    /// Hosts in order of first appearance.
    pub hosts: Vec<RawHost>,
    host_ids: HashMap<String, HostId>,
}

impl RawInventory {
    pub fn group_mut(&mut self, name: &str) -> &mut RawGroup {
        self.groups.entry(name.to_owned()).or_default()
    }

    /// The host named `name`, added (with `origin`) when it is new.
    pub fn host_mut(&mut self, name: &str, origin: &Origin) -> &mut RawHost {
        let id = self.host_id(name, origin);
        &mut self.hosts[id]
    }

    fn host_id(&mut self, name: &str, origin: &Origin) -> HostId {
        if let Some(id) = self.host_ids.get(name) {
            return *id;
        }
        let id = self.hosts.len();
        self.hosts.push(RawHost {
            name: name.to_owned(),
            vars: Variables::new(),
            dir_vars: Variables::new(),
            facts: None,
            origin: origin.clone(),
        });
        self.host_ids.insert(name.to_owned(), id);
        id
    }

    /// Adds a host to a group (and to the inventory), merging its variables.
    pub fn add_host(&mut self, group: &str, host: &str, vars: Variables, origin: &Origin) {
        let id = self.host_id(host, origin);
        self.group_mut(group).add_host(id);
        self.hosts[id].vars.extend(vars);
    }

    pub fn add_child(&mut self, parent: &str, child: &str) {
        self.group_mut(parent).add_child(child);
        self.group_mut(child);
    }

    fn merge(&mut self, other: Self) {
        let ids: Vec<HostId> = other
            .hosts
            .into_iter()
            .map(|host| {
                let id = self.host_id(&host.name, &host.origin);
                let mine = &mut self.hosts[id];
                mine.vars.extend(host.vars);
                mine.dir_vars.extend(host.dir_vars);
                if host.facts.is_some() {
                    mine.facts = host.facts;
                }
                id
            })
            .collect();
        for (name, group) in other.groups {
            let mine = self.group_mut(&name);
            for host in group.hosts {
                mine.add_host(ids[host]);
            }
            mine.vars.extend(group.vars);
            mine.dir_vars.extend(group.dir_vars);
            for child in group.children {
                self.add_child(&name, &child);
            }
        }
    }
}

/// Turns parsed groups into the resolved model (see the module docs), in
/// time and memory linear in hosts + group memberships: hosts that share
/// their direct groups share one merge of the group variables.
pub(crate) fn resolve(mut raw: RawInventory, file: &Path) -> Result<ParsedInventory, InventoryError> {
    raw.group_mut("all");
    raw.group_mut("ungrouped");
    // Every top-level group hangs under `all`.
    let child_names: HashSet<&str> = raw.groups.values().flat_map(|g| g.children.iter().map(String::as_str)).collect();
    let tops: Vec<String> =
        raw.groups.keys().filter(|g| *g != "all" && !child_names.contains(g.as_str())).cloned().collect();
    drop(child_names);
    for top in tops {
        raw.add_child("all", &top);
    }
    check_cycles(&raw, file)?;

    // Hosts in no group but `all` / `ungrouped` are `ungrouped`.
    let mut grouped = vec![false; raw.hosts.len()];
    for (name, group) in &raw.groups {
        if name != "all" && name != "ungrouped" {
            for host in &group.hosts {
                grouped[*host] = true;
            }
        }
    }
    let ungrouped = raw.group_mut("ungrouped");
    for (host, grouped) in grouped.into_iter().enumerate() {
        if !grouped {
            ungrouped.add_host(host);
        }
    }

    let mut direct: Vec<Vec<usize>> = vec![Vec::new(); raw.hosts.len()];
    for (group, (_, g)) in raw.groups.iter().enumerate() {
        for host in &g.hosts {
            direct[*host].push(group);
        }
    }
    let groups: BTreeMap<String, InventoryGroup> = raw
        .groups
        .iter()
        .map(|(name, g)| {
            let mut vars = g.vars.clone();
            vars.extend(g.dir_vars.clone());
            let hosts = g.hosts.iter().map(|h| raw.hosts[*h].name.clone()).collect();
            (name.clone(), InventoryGroup { name: name.clone(), hosts, children: g.children.clone(), vars })
        })
        .collect();

    let raw_hosts = std::mem::take(&mut raw.hosts);
    let graph = GroupGraph::new(&raw);
    let mut shared: HashMap<Vec<usize>, GroupLayers> = HashMap::new();
    let mut hosts = BTreeMap::new();
    for (host, direct) in raw_hosts.into_iter().zip(direct) {
        let layers = shared.entry(direct).or_insert_with_key(|direct| graph.layers(&raw, direct));
        // Ansible: inventory `all` vars < inventory group vars (by depth,
        // priority, name) < group_vars/all < group_vars/* < inventory host
        // vars < host_vars/*.
        let mut variables = layers.vars.clone();
        variables.extend(host.vars);
        variables.extend(host.dir_vars);
        let config = host_config(&host.name, variables, host.facts, &host.origin)?;
        hosts.insert(host.name, HostConfig { groups: layers.groups.clone(), ..config });
    }

    let vars = groups.get("all").map(|g| g.vars.clone()).unwrap_or_default();
    Ok(ParsedInventory { hosts, groups, vars, source: None })
}

/// The groups of hosts with the same direct groups, in precedence order,
/// and their variables merged in that order.
struct GroupLayers {
    groups: Vec<String>,
    vars: Variables,
}

/// Groups by index (the order of `RawInventory::groups`), their parents and
/// their precedence keys.
struct GroupGraph<'a> {
    names: Vec<&'a str>,
    parents: Vec<Vec<usize>>,
    /// (depth, ansible_group_priority) per group.
    rank: Vec<(usize, i64)>,
    all: usize,
}

impl<'a> GroupGraph<'a> {
    fn new(raw: &'a RawInventory) -> Self {
        let names: Vec<&str> = raw.groups.keys().map(String::as_str).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let children: Vec<Vec<usize>> = raw
            .groups
            .values()
            .map(|g| g.children.iter().filter_map(|c| index.get(c.as_str()).copied()).collect())
            .collect();
        let mut parents = vec![Vec::new(); names.len()];
        for (parent, kids) in children.iter().enumerate() {
            for child in kids {
                parents[*child].push(parent);
            }
        }
        let all = index.get("all").copied().unwrap_or(0);
        let depth = longest_depths(&children, &parents);
        let rank = raw
            .groups
            .values()
            .zip(depth)
            .map(|(g, d)| (d, g.vars.get("ansible_group_priority").and_then(value_as_i64).unwrap_or(1)))
            .collect();
        Self { names, parents, rank, all }
    }

    /// Every group of a host in `direct` (with their ancestors and `all`),
    /// ordered by depth, priority and name, with their variables merged.
    fn layers(&self, raw: &RawInventory, direct: &[usize]) -> GroupLayers {
        let mut seen = HashSet::new();
        let mut stack: Vec<usize> = direct.to_vec();
        stack.push(self.all);
        while let Some(g) = stack.pop() {
            if seen.insert(g) {
                stack.extend(self.parents[g].iter().copied());
            }
        }
        let mut ordered: Vec<usize> = seen.into_iter().collect();
        // Indices follow the names' order, so the index breaks ties by name.
        ordered.sort_by_key(|g| (self.rank[*g], *g));
        let group = |g: usize| raw.groups.get(self.names[g]);
        let (all, others): (Vec<usize>, Vec<usize>) = ordered.iter().partition(|g| **g == self.all);
        let mut vars = Variables::new();
        for g in all.iter().chain(&others).filter_map(|g| group(*g)) {
            vars.extend(g.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for g in all.iter().chain(&others).filter_map(|g| group(*g)) {
            vars.extend(g.dir_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        GroupLayers { groups: ordered.iter().map(|g| self.names[*g].to_owned()).collect(), vars }
    }
}

/// Longest distance from a root (Ansible's group depth: `all` is 0), in one
/// pass over the groups in topological order; needs an acyclic graph.
fn longest_depths(children: &[Vec<usize>], parents: &[Vec<usize>]) -> Vec<usize> {
    let mut depth = vec![0; children.len()];
    let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..children.len()).filter(|g| waiting[*g] == 0).collect();
    while let Some(group) = ready.pop() {
        for child in &children[group] {
            depth[*child] = depth[*child].max(depth[group] + 1);
            waiting[*child] -= 1;
            if waiting[*child] == 0 {
                ready.push(*child);
            }
        }
    }
    depth
}

fn check_cycles(raw: &RawInventory, file: &Path) -> Result<(), InventoryError> {
    // Iterative DFS with colours: 1 = on the current path, 2 = done.
    let mut colour: HashMap<&str, u8> = HashMap::new();
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
    origin: &Origin,
) -> Result<HostConfig, InventoryError> {
    let invalid = |var: &str, value: &Value, expected: &str| {
        InventoryError::parse(
            origin.file.to_path_buf(),
            origin.line(name),
            format!("host `{name}`: `{var}` is {value}, expected {expected}"),
        )
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

//! The fleet's configuration (`[cross_compilation.fleet]`): which agents to
//! dial, with which certificate, and how strict to be about silence. Owned
//! by the fleet; the façade's configuration embeds it.

use std::path::PathBuf;

use rustle_detect::ParsedInventory;
use serde::{Deserialize, Serialize};

/// A fleet setting out of range.
#[derive(Debug, thiserror::Error)]
pub enum FleetConfigError {
    /// A value is out of range.
    #[error("invalid `{key}` = {value}: {expected}")]
    Value {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// One build agent to dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEndpoint {
    /// The agent's name: the name on its certificate.
    pub name: String,
    /// `host:port` it listens on (UDP).
    pub address: String,
}

/// The `[cross_compilation.fleet]` section: which agents to dial and with
/// which certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Agents to dial: `agents = [{ name = "arm64-1", address = "10.0.0.5:7878" }]`.
    pub agents: Vec<AgentEndpoint>,
    /// The fleet CA certificate (`ca.pem`).
    pub ca: Option<PathBuf>,
    /// This coordinator's certificate.
    pub cert: Option<PathBuf>,
    /// This coordinator's private key.
    pub key: Option<PathBuf>,
    /// The fleet CA's certificate revocation list (`crl.pem`, written by
    /// `rustle-cross ca revoke NAME`): an agent whose certificate it lists
    /// is refused. Unset: no certificate is revoked. Set but missing or
    /// unreadable: the fleet does not start.
    pub crl: Option<PathBuf>,
    /// An agent silent for this long is lost and its jobs go elsewhere.
    pub heartbeat_timeout_secs: u64,
    /// How long to wait for an agent to connect and report its capabilities.
    pub connect_timeout_secs: u64,
    /// An Ansible inventory whose `inventory_group` hosts are agents too
    /// (name: the inventory host name; address: `ansible_host`, else the
    /// name; port: `rustle_agent_port`, else 7878).
    pub inventory: Option<PathBuf>,
    /// The inventory group listing the agents.
    pub inventory_group: String,
}

/// UDP port agents listen on unless `rustle_agent_port` says otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7878;

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            agents: Vec::new(),
            ca: None,
            cert: None,
            key: None,
            crl: None,
            heartbeat_timeout_secs: 3,
            connect_timeout_secs: 10,
            inventory: None,
            inventory_group: "build_agents".into(),
        }
    }
}

impl FleetConfig {
    /// Whether any agent is configured (listed, or through an inventory).
    pub fn is_enabled(&self) -> bool {
        !self.agents.is_empty() || self.inventory.is_some()
    }

    /// The agents of `inventory_group` in `inventory`: one per host, named
    /// by its inventory name, at `ansible_host` (else the name) and
    /// `rustle_agent_port` (else [`DEFAULT_AGENT_PORT`]).
    pub fn agents_from_inventory(&self, inventory: &ParsedInventory) -> Result<Vec<AgentEndpoint>, FleetConfigError> {
        let mut agents = Vec::new();
        for name in inventory.hosts_of_group(&self.inventory_group) {
            let Some(host) = inventory.hosts.get(name) else { continue };
            let port = match host.variables.get("rustle_agent_port") {
                None => DEFAULT_AGENT_PORT,
                Some(value) => {
                    let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                    text.trim().parse().map_err(|_| FleetConfigError::Value {
                        key: "rustle_agent_port",
                        value: format!("{text} (host {name})"),
                        expected: "a UDP port number",
                    })?
                }
            };
            let address = if host.address.contains(':') && !host.address.starts_with('[') {
                format!("[{}]:{port}", host.address)
            } else {
                format!("{}:{port}", host.address)
            };
            agents.push(AgentEndpoint { name: name.to_owned(), address });
        }
        Ok(agents)
    }

    /// Adds the agents of `inventory_group` in `inventory` (see
    /// [`agents_from_inventory`](Self::agents_from_inventory)) to `agents`,
    /// leaving out names already listed (a listed agent wins). This is how
    /// `rustle-cross build --inventory` and embedders building for an
    /// inventory use the same inventory's build agents. Returns how many
    /// were added; an inventory without that group adds none.
    pub fn add_inventory_agents(&mut self, inventory: &ParsedInventory) -> Result<usize, FleetConfigError> {
        let listed = self.agents_from_inventory(inventory)?;
        let before = self.agents.len();
        for agent in listed {
            if !self.agents.iter().any(|known| known.name == agent.name) {
                self.agents.push(agent);
            }
        }
        Ok(self.agents.len() - before)
    }

    /// Checks the section: positive timeouts, unique agent names, and
    /// certificates whenever an agent is configured.
    pub fn validate(&self) -> Result<(), FleetConfigError> {
        if self.heartbeat_timeout_secs == 0 {
            return Err(FleetConfigError::Value {
                key: "fleet.heartbeat_timeout_secs",
                value: "0".into(),
                expected: "at least 1 second",
            });
        }
        if self.connect_timeout_secs == 0 {
            return Err(FleetConfigError::Value {
                key: "fleet.connect_timeout_secs",
                value: "0".into(),
                expected: "at least 1 second",
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for agent in &self.agents {
            if !names.insert(agent.name.as_str()) {
                return Err(FleetConfigError::Value {
                    key: "fleet.agents",
                    value: agent.name.clone(),
                    expected: "each agent name once (the name on its certificate)",
                });
            }
        }
        if self.is_enabled() {
            for (key, value) in [("fleet.ca", &self.ca), ("fleet.cert", &self.cert), ("fleet.key", &self.key)] {
                if value.is_none() {
                    return Err(FleetConfigError::Value {
                        key,
                        value: "unset".into(),
                        expected: "a PEM file path when fleet.agents is not empty (see `rustle-cross ca issue --coordinator`)",
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn agents_come_from_the_inventory_group() {
        let inventory = ParsedInventory::parse(
            "[build_agents]\narm1 ansible_host=10.0.0.5 rustle_agent_port=9000\nx86 \nv6 ansible_host=fd00::7\n\n[web]\nweb1\n",
            rustle_detect::InventoryFormat::Ini,
            Path::new("hosts"),
        )
        .unwrap();
        let fleet = FleetConfig::default();
        let mut agents = fleet.agents_from_inventory(&inventory).unwrap();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        let pairs: Vec<(&str, &str)> = agents.iter().map(|a| (a.name.as_str(), a.address.as_str())).collect();
        assert_eq!(pairs, [("arm1", "10.0.0.5:9000"), ("v6", "[fd00::7]:7878"), ("x86", "x86:7878")]);
        let bad = ParsedInventory::parse(
            "[build_agents]\narm1 rustle_agent_port=lots\n",
            rustle_detect::InventoryFormat::Ini,
            Path::new("hosts"),
        )
        .unwrap();
        let err = fleet.agents_from_inventory(&bad).unwrap_err();
        assert!(err.to_string().contains("rustle_agent_port"), "{err}");
    }

    #[test]
    fn inventory_agents_join_the_listed_ones() {
        let inventory = ParsedInventory::parse(
            "[build_agents]\narm1 ansible_host=10.0.0.5\nx86 ansible_host=10.0.0.6 rustle_agent_port=9001\n",
            rustle_detect::InventoryFormat::Ini,
            Path::new("hosts"),
        )
        .unwrap();
        let mut fleet = FleetConfig {
            agents: vec![AgentEndpoint { name: "arm1".into(), address: "192.0.2.1:7878".into() }],
            ..FleetConfig::default()
        };
        assert_eq!(fleet.add_inventory_agents(&inventory).unwrap(), 1);
        let pairs: Vec<(&str, &str)> = fleet.agents.iter().map(|a| (a.name.as_str(), a.address.as_str())).collect();
        assert_eq!(pairs, [("arm1", "192.0.2.1:7878"), ("x86", "10.0.0.6:9001")]);
        let without_group =
            ParsedInventory::parse("[web]\nweb1\n", rustle_detect::InventoryFormat::Ini, Path::new("hosts")).unwrap();
        assert_eq!(fleet.add_inventory_agents(&without_group).unwrap(), 0);
    }
}

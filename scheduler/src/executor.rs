//! Who can run a job: an [`Executor`] is a connected agent or one link of the fallback chain.

use std::collections::BTreeSet;
use std::fmt;

use rustle_protocol::AgentId;
use serde::{Deserialize, Serialize};

/// Name of a fallback executor on the coordinator's machine, e.g. `"local"` or `"docker"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FallbackId(pub String);

impl FallbackId {
    /// The fallback that builds with this machine's toolchains.
    pub fn local() -> Self {
        Self("local".into())
    }
}

impl fmt::Display for FallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A place a job can be dispatched to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Executor {
    /// A `rustle-agent` build host.
    Agent(AgentId),
    /// A fallback on the coordinator's own machine.
    Fallback(FallbackId),
}

impl Executor {
    /// The agent, when this is one.
    pub fn agent(&self) -> Option<&AgentId> {
        match self {
            Self::Agent(agent) => Some(agent),
            Self::Fallback(_) => None,
        }
    }
}

impl From<AgentId> for Executor {
    fn from(agent: AgentId) -> Self {
        Self::Agent(agent)
    }
}

impl From<FallbackId> for Executor {
    fn from(fallback: FallbackId) -> Self {
        Self::Fallback(fallback)
    }
}

impl fmt::Display for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent(agent) => write!(f, "agent {agent}"),
            Self::Fallback(fallback) => write!(f, "fallback {fallback}"),
        }
    }
}

/// One link of the fallback chain: an executor on the coordinator's machine
/// used when no agent can take a job. The chain is tried in order (the local
/// toolchains today; a Docker executor can be put before or after it later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackExecutor {
    /// Its name, as it appears in decisions and [`Executor::Fallback`].
    pub id: FallbackId,
    /// Target triples it can build.
    pub triples: BTreeSet<String>,
    /// Jobs it runs at once at most; further jobs wait for a slot.
    pub slots: u32,
}

impl FallbackExecutor {
    /// A fallback named `name` that builds `triples`, `slots` at a time.
    pub fn new(name: impl Into<String>, triples: impl IntoIterator<Item = impl Into<String>>, slots: u32) -> Self {
        Self { id: FallbackId(name.into()), triples: triples.into_iter().map(Into::into).collect(), slots }
    }

    /// The fallback that builds with this machine's toolchains, named `"local"`.
    pub fn local(triples: impl IntoIterator<Item = impl Into<String>>, slots: u32) -> Self {
        Self { id: FallbackId::local(), triples: triples.into_iter().map(Into::into).collect(), slots }
    }
}

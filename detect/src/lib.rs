//! Target detection for rustle-cross: from Ansible inventories, cached facts
//! and live SSH probes to a host -> target plan.
//!
//! Every host gets a triple with the evidence it came from, or an error that
//! names the host and says what to do; nothing is guessed from host names.
//!
//! - [`inventory`]: INI / YAML / JSON inventories, `host_vars/`,
//!   `group_vars/`, ranges, precedence -> [`ParsedInventory`].
//! - [`facts`]: the facts -> triple normalisation table.
//! - [`fact_cache`]: Ansible's jsonfile fact cache, read and written.
//! - [`probe`]: the SSH probe and its strict parser.
//! - [`detector`]: [`TargetDetector`], which puts them together.
//! - [`plan`]: [`TargetPlan`], the result, as a table or JSON.

pub mod detector;
pub mod error;
pub mod fact_cache;
pub mod facts;
pub mod inventory;
pub mod plan;
pub mod probe;

pub use detector::{DetectOptions, HostDetection, TargetDetector};
pub use error::{FactCacheError, FactsError, InventoryError, ProbeError, TargetDetectionError};
pub use fact_cache::FactCache;
pub use facts::{Facts, FactsTarget, WindowsAbi, normalize_facts};
pub use inventory::{
    ConnectionConfig, ConnectionMethod, FactsOrigin, HostConfig, InventoryFormat, InventoryGroup, ParsedInventory,
    Variables,
};
pub use plan::{Conflict, Evidence, EvidenceSource, TargetPlan};
pub use probe::{ArchitectureInfo, SshProber};

//! [`AgentConfig`]: the agent's TOML config file, its defaults and checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_engine::toolchain::ToolchainConfig;
use rustle_transport::AllowedCoordinators;
use serde::Deserialize;

use crate::AgentError;
use crate::simulate::SimulateSettings;

/// Default UDP port agents listen on (`rustle_agent_port` in inventories).
pub const DEFAULT_PORT: u16 = 7878;

/// The agent's configuration. Every key is optional; unknown keys are
/// refused with their name.
///
/// ```toml
/// listen = "0.0.0.0:7878"
/// ca = "/etc/rustle-agent/ca.pem"
/// cert = "/etc/rustle-agent/agent.pem"
/// key = "/etc/rustle-agent/agent-key.pem"
/// crl = "/etc/rustle-agent/crl.pem"     # absent: no certificate is revoked
/// allowed_coordinators = ["deploy-1"]   # empty: any certificate from the CA
/// work_dir = "/var/lib/rustle-agent"
/// max_concurrent_jobs = 2
/// heartbeat_interval_ms = 1000
/// allowed_targets = ["x86_64-unknown-linux-gnu"]   # absent: all buildable
/// warm_cache_max_bytes = 21474836480
/// agent_id = "builder-1"
/// shutdown_drain_secs = 600
/// default_toolchain = "stable"
/// auto_install_toolchains = false
/// build_niceness = 10
/// # A simulated agent, for fleet benchmarks only: no cargo runs, every
/// # build delivers this binary (see `rustle_agent::simulate`).
/// # simulate = { binary = "/bin/true", targets = ["x86_64-unknown-linux-gnu"], delay_ms = 50 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// The fleet CA certificate (PEM).
    pub ca: PathBuf,
    /// This agent's certificate (PEM), issued by `rustle-cross ca issue --agent`.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The fleet CA's certificate revocation list (`crl.pem`, written by
    /// `rustle-cross ca revoke NAME`): a coordinator whose certificate it
    /// lists is refused. Absent: no certificate is revoked. Set but missing
    /// or unreadable: the agent does not start. Re-read when the file
    /// changes (or on SIGHUP) while the agent runs: a coordinator it newly
    /// revokes loses its open connection; a replacement that cannot be used
    /// keeps the list in force, with a warning.
    pub crl: Option<PathBuf>,
    /// Coordinator certificate names allowed to connect; empty allows any
    /// certificate the fleet CA issued.
    pub allowed_coordinators: Vec<String>,
    /// Where source trees, warm target dirs and toolchain caches live.
    pub work_dir: PathBuf,
    /// Builds run at once; further offers are rejected.
    pub max_concurrent_jobs: u32,
    /// How often load updates (heartbeats) are sent.
    pub heartbeat_interval_ms: u64,
    /// If set, only these target triples are offered and accepted.
    pub allowed_targets: Option<Vec<String>>,
    /// Warm template dirs (sources, target dirs and the binaries cached for
    /// them) beyond this total size are evicted, oldest use first.
    pub warm_cache_max_bytes: u64,
    /// The agent's name in reports; default: the host name.
    pub agent_id: Option<String>,
    /// On shutdown, how long running jobs may finish before they are cancelled.
    pub shutdown_drain_secs: u64,
    /// The toolchain preferred when several can build a target.
    pub default_toolchain: String,
    /// Whether missing rustup targets are installed on demand.
    pub auto_install_toolchains: bool,
    /// How many nice levels below the agent its builds run (0..=19; 0: the
    /// same priority), so builds that take every core never delay its
    /// heartbeats and transfers. Applied by the `rustle-agent` binary.
    pub build_niceness: i32,
    /// Simulation mode (benchmarks): answer every offer for its targets with
    /// a canned binary instead of building. Absent: a real agent.
    pub simulate: Option<SimulateSettings>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let etc = Path::new("/etc/rustle-agent");
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            ca: etc.join("ca.pem"),
            cert: etc.join("agent.pem"),
            key: etc.join("agent-key.pem"),
            crl: None,
            allowed_coordinators: Vec::new(),
            work_dir: PathBuf::from("/var/lib/rustle-agent"),
            max_concurrent_jobs: 2,
            heartbeat_interval_ms: 1000,
            allowed_targets: None,
            warm_cache_max_bytes: 20 << 30,
            agent_id: None,
            shutdown_drain_secs: 600,
            default_toolchain: "stable".into(),
            auto_install_toolchains: false,
            build_niceness: 10,
            simulate: None,
        }
    }
}

impl AgentConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|reason| AgentError::ConfigParse { path: path.to_owned(), reason })
    }

    /// Parses and checks config text; the error names the offending key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_jobs == 0 {
            return Err("max_concurrent_jobs is 0; the agent could never run a job (use 1 or more)".into());
        }
        if self.heartbeat_interval_ms == 0 {
            return Err("heartbeat_interval_ms is 0; use a positive interval such as 1000".into());
        }
        if !(0..=19).contains(&self.build_niceness) {
            return Err(format!(
                "build_niceness is {}; use 0 (builds at the agent's priority) to 19 (lowest)",
                self.build_niceness
            ));
        }
        if self.work_dir.as_os_str().is_empty() {
            return Err("work_dir is empty; name a writable directory".into());
        }
        Ok(())
    }

    /// The coordinators this agent accepts.
    pub fn allowed(&self) -> AllowedCoordinators {
        if self.allowed_coordinators.is_empty() {
            AllowedCoordinators::AnyFromFleetCa
        } else {
            AllowedCoordinators::Named(self.allowed_coordinators.clone())
        }
    }

    /// The agent's id: configured, else the host name, else `rustle-agent`.
    pub fn resolved_agent_id(&self) -> String {
        self.agent_id.clone().or_else(|| sysinfo::System::host_name().ok()).unwrap_or_else(|| "rustle-agent".to_owned())
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// Whether this agent may build `triple` by configuration.
    pub fn target_allowed(&self, triple: &str) -> bool {
        self.allowed_targets.as_ref().is_none_or(|allowed| allowed.iter().any(|t| t == triple))
    }

    /// Where toolchain discovery is cached: `work_dir/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.work_dir.join("cache")
    }

    /// The toolchain manager settings this config implies.
    pub fn toolchain_config(&self) -> ToolchainConfig {
        ToolchainConfig {
            cache_dir: self.cache_dir(),
            default_toolchain: self.default_toolchain.clone(),
            auto_install: self.auto_install_toolchains,
            ..ToolchainConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_defaults() {
        assert_eq!(AgentConfig::parse("").expect("parses"), AgentConfig::default());
    }

    #[test]
    fn keys_are_read() {
        let config = AgentConfig::parse(
            "listen = \"127.0.0.1:9000\"\nallowed_targets = [\"x86_64-unknown-linux-gnu\"]\n\
             max_concurrent_jobs = 4\nheartbeat_interval_ms = 200\nagent_id = \"b1\"\n\
             allowed_coordinators = [\"deploy-1\"]\nwarm_cache_max_bytes = 1024\n",
        )
        .expect("parses");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.max_concurrent_jobs, 4);
        assert_eq!(config.heartbeat_interval(), Duration::from_millis(200));
        assert!(config.target_allowed("x86_64-unknown-linux-gnu"));
        assert!(!config.target_allowed("aarch64-unknown-linux-gnu"));
        assert_eq!(config.allowed(), AllowedCoordinators::Named(vec!["deploy-1".into()]));
        assert_eq!(config.resolved_agent_id(), "b1");
        assert_eq!(config.crl, None);
        let config = AgentConfig::parse("crl = \"/etc/rustle-agent/crl.pem\"\n").expect("parses");
        assert_eq!(config.crl.as_deref(), Some(Path::new("/etc/rustle-agent/crl.pem")));
    }

    #[test]
    fn unknown_keys_are_named() {
        let error = AgentConfig::parse("max_jobs = 3\n").expect_err("unknown key");
        assert!(error.contains("max_jobs"), "{error}");
    }

    #[test]
    fn unusable_values_are_refused() {
        let error = AgentConfig::parse("max_concurrent_jobs = 0\n").expect_err("zero slots");
        assert!(error.contains("max_concurrent_jobs"), "{error}");
        let error = AgentConfig::parse("build_niceness = 20\n").expect_err("beyond 19");
        assert!(error.contains("build_niceness is 20") && error.contains("0 (builds"), "{error}");
        assert_eq!(AgentConfig::parse("build_niceness = 0\n").expect("same priority").build_niceness, 0);
    }
}

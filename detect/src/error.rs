//! Error types of target detection: one enum per stage (inventory parsing,
//! facts normalisation, fact cache, SSH probe, per-host detection), each
//! naming the file, line or host and the way out.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustle_targets::TargetError;

/// `:LINE` when a line is known, nothing otherwise.
pub(crate) struct LineSuffix(pub Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// Why an inventory (or a `host_vars/` / `group_vars/` file) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file or directory could not be read.
    #[error("failed to read inventory {}: {source}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error(
        "failed to read inventory {}:{line}:{column}: byte 0x{byte:02x} is not UTF-8; inventories are UTF-8 text: convert the file (`iconv -f LATIN1 -t UTF-8`) or remove that byte",
        .file.display()
    )]
    NotUtf8 {
        /// The file.
        file: PathBuf,
        /// The 1-based line of the first byte that is not UTF-8.
        line: usize,
        /// Its 1-based column, in characters.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// The file is not what its format expects.
    #[error("failed to parse inventory {}{}: {message}", .file.display(), LineSuffix(*.line))]
    Parse {
        /// The file.
        file: PathBuf,
        /// The 1-based line, when known.
        line: Option<usize>,
        /// What was found and what was expected.
        message: String,
    },
    /// `group:children` sections form a cycle.
    #[error("failed to resolve inventory {}: group `{group}` is its own ancestor ({path}); remove one of the `children` links", .file.display())]
    GroupCycle {
        /// The file.
        file: PathBuf,
        /// A group on the cycle.
        group: String,
        /// The cycle, as `a -> b -> a`.
        path: String,
    },
    /// A `--limit` pattern that selects no host.
    #[error(
        "limit `{pattern}` matches no host of the inventory; check the host and group names (`rustle-cross detect -i INVENTORY` lists them)"
    )]
    LimitMatchesNothing {
        /// The pattern.
        pattern: String,
    },
}

impl InventoryError {
    pub(crate) fn parse(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self::Parse { file: file.into(), line, message: message.into() }
    }
}

/// Why a set of facts could not be turned into a target triple.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    /// A fact the normalisation needs is absent.
    #[error("facts lack `{fact}`; gather them again (`ansible -m setup`) or set rustle_target_triple")]
    Missing {
        /// The fact's name (with the `ansible_` prefix).
        fact: String,
    },
    /// A fact has a value the normalisation table does not know.
    #[error("unknown value {value:?} of fact `{fact}`; set rustle_target_triple for this host")]
    UnknownValue {
        /// The fact's name.
        fact: String,
        /// Its value, as found.
        value: String,
    },
    /// A known architecture on a known system that has no Rust target.
    #[error(
        "no Rust target for architecture {architecture:?} on {system} ({libc}); set rustle_target_triple for this host"
    )]
    NoTarget {
        /// The architecture value, as found.
        architecture: String,
        /// The system (Linux, Darwin, Windows, ...).
        system: String,
        /// The C library or ABI considered.
        libc: String,
    },
}

/// Why an Ansible fact cache file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FactCacheError {
    /// The file exists but cannot be read, or the directory cannot be written.
    #[error("failed to {action} fact cache file {}: {source}", .file.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON object of facts.
    #[error("failed to parse fact cache file {}{}: {message}; delete it or gather facts again", .file.display(), LineSuffix(*.line))]
    Parse {
        /// The file.
        file: PathBuf,
        /// The 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

/// Why probing a host over SSH failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The host could not be reached (refused, no route, DNS, connect timeout).
    #[error(
        "failed to reach {host} over ssh: {detail}; check the address/port in the inventory and that sshd runs there"
    )]
    Unreachable {
        /// The host as addressed.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// The host key did not match known_hosts (or is unknown with BatchMode).
    #[error(
        "host key verification failed for {host}: {detail}; if the host was reinstalled, update known_hosts (`ssh-keygen -R {host}`) after checking its new key"
    )]
    HostKey {
        /// The host as addressed.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// Authentication was refused.
    #[error(
        "ssh authentication to {host} failed: {detail}; check ansible_user / ansible_ssh_private_key_file or load the key into ssh-agent"
    )]
    Authentication {
        /// The host as addressed.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// ssh failed in another way.
    #[error("ssh to {host} failed (exit {status}): {detail}")]
    Ssh {
        /// The host as addressed.
        host: String,
        /// ssh's exit status.
        status: String,
        /// What ssh said.
        detail: String,
    },
    /// The whole probe ran past its deadline and was killed.
    #[error("probing {host} did not finish within {}s and was stopped; raise the probe timeout or check the host", .timeout.as_secs_f32())]
    TimedOut {
        /// The host as addressed.
        host: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The remote side answered something that is not a probe result.
    #[error(
        "unexpected probe output from {host}: {reason}; got {output:?} (is a forced command or a login banner in the way?)"
    )]
    Garbage {
        /// The host as addressed.
        host: String,
        /// What is wrong with it.
        reason: String,
        /// The output, cut to a readable length.
        output: String,
    },
    /// The probe result does not tell the C library of a Linux host.
    #[error(
        "cannot tell the C library of {host} (no ldd, getconf or musl loader answered); set rustle_target_triple for this host"
    )]
    UnknownLibc {
        /// The host as addressed.
        host: String,
    },
    /// The connection method cannot be probed.
    #[error(
        "cannot probe {host}: connection `{method}` is not supported (ssh and local are); set rustle_target_triple for this host"
    )]
    UnsupportedConnection {
        /// The host as addressed.
        host: String,
        /// The method (ansible_connection).
        method: String,
    },
    /// ssh (or sh for local hosts) could not be run.
    #[error("failed to run the probe for {host}: {source}")]
    Process {
        /// The host as addressed.
        host: String,
        /// The process error.
        #[source]
        source: rustle_process::ProcessError,
    },
}

/// Why the target of one host (or of a strict run) could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum TargetDetectionError {
    /// Nothing says what the host is, and probing is off.
    #[error(
        "cannot determine target for {host}: no target_triple, no cached facts, probing disabled; set rustle_target_triple or run with --probe"
    )]
    NoSource {
        /// The inventory host name.
        host: String,
    },
    /// An explicit triple that is not a valid target.
    #[error("invalid target triple for {host} (from {variable}): {source}")]
    InvalidTriple {
        /// The inventory host name.
        host: String,
        /// Where the triple came from (`rustle_target_triple`, ...).
        variable: String,
        /// Why it is invalid.
        #[source]
        source: TargetError,
    },
    /// The host's facts do not map to a target.
    #[error("cannot determine target for {host} from {origin}: {source}")]
    Facts {
        /// The inventory host name.
        host: String,
        /// Where the facts came from.
        origin: String,
        /// Why they do not map.
        #[source]
        source: FactsError,
    },
    /// The fact cache file of the host is unreadable.
    #[error("cannot determine target for {host}: {source}")]
    FactCache {
        /// The inventory host name.
        host: String,
        /// The cache error.
        #[source]
        source: FactCacheError,
    },
    /// The live probe failed.
    #[error("cannot determine target for {host}: {source}")]
    Probe {
        /// The inventory host name.
        host: String,
        /// The probe error.
        #[source]
        source: ProbeError,
    },
    /// Strict mode: detection stops at the first unresolved host.
    #[error("strict mode: {count} host(s) unresolved, first: {first}")]
    Strict {
        /// How many hosts are unresolved.
        count: usize,
        /// The first host's error message.
        first: String,
    },
}

impl TargetDetectionError {
    /// The host this error is about, when it is about one.
    pub fn host(&self) -> Option<&str> {
        match self {
            Self::NoSource { host }
            | Self::InvalidTriple { host, .. }
            | Self::Facts { host, .. }
            | Self::FactCache { host, .. }
            | Self::Probe { host, .. } => Some(host),
            Self::Strict { .. } => None,
        }
    }
}

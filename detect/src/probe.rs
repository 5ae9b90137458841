//! Live SSH probe: one round trip running a POSIX sh script (a PowerShell
//! fallback for Windows OpenSSH) through the system `ssh`, so
//! ~/.ssh/config, the agent, ProxyJump and known_hosts work as for Ansible.
//! The answer is parsed strictly into [`ArchitectureInfo`].

use std::path::PathBuf;
use std::time::Duration;

use rustle_process::{ProcessError, ProcessSpec};
use rustle_targets::{Architecture, Endianness, LibcType, OsFamily};
use serde::Serialize;
use serde_json::Value;

use crate::error::ProbeError;
use crate::facts::{Facts, parse_glibc};
use crate::inventory::{ConnectionConfig, ConnectionMethod};

/// First line of a probe answer; the number is the format version.
const BEGIN: &str = "RUSTLE_PROBE_BEGIN 1";
/// Last line of a probe answer.
const END: &str = "RUSTLE_PROBE_END";

/// The POSIX sh probe, fed on stdin to `sh -s`. One compound command, so sh
/// reads all of it before running anything, with stdin from /dev/null so no
/// command eats the script.
pub const PROBE_SCRIPT: &str = r#"{
export LC_ALL=C
echo "RUSTLE_PROBE_BEGIN 1"
echo "os=$(uname -s 2>/dev/null)"
echo "machine=$(uname -m 2>/dev/null)"
echo "kernel=$(uname -r 2>/dev/null)"
if command -v getconf >/dev/null 2>&1; then
  v=$(getconf GNU_LIBC_VERSION 2>/dev/null) && [ -n "$v" ] && echo "gnu_libc_version=$v"
fi
if command -v ldd >/dev/null 2>&1; then
  echo "ldd=$(ldd --version 2>&1 | head -n 2 | tr '\n\r' '  ')"
fi
for f in /lib/ld-musl-*.so.1 /usr/lib/ld-musl-*.so.1; do
  [ -e "$f" ] && echo "musl_loader=$f"
done
if command -v od >/dev/null 2>&1; then
  echo "endian=$(printf '\001\000' | od -An -tu2 2>/dev/null | tr -d ' ')"
fi
if [ -r /proc/cpuinfo ]; then
  echo "cpu_flags=$(grep -m1 -E '^(flags|Features)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | cut -d: -f2)"
elif command -v sysctl >/dev/null 2>&1; then
  echo "cpu_flags=$(sysctl -n machdep.cpu.features 2>/dev/null)"
fi
if [ -r /etc/os-release ]; then
  echo "os_id=$(. /etc/os-release 2>/dev/null; echo "$ID")"
  echo "os_version_id=$(. /etc/os-release 2>/dev/null; echo "$VERSION_ID")"
fi
if command -v sw_vers >/dev/null 2>&1; then
  echo "macos_version=$(sw_vers -productVersion 2>/dev/null)"
fi
echo "RUSTLE_PROBE_END"
} </dev/null
"#;

/// The PowerShell probe for Windows OpenSSH (whose shell is cmd.exe or
/// PowerShell, where `sh` does not exist).
pub const POWERSHELL_SCRIPT: &str = "Write-Output 'RUSTLE_PROBE_BEGIN 1'; \
Write-Output 'os=Windows'; \
Write-Output ('machine=' + $env:PROCESSOR_ARCHITECTURE); \
if ($env:PROCESSOR_ARCHITEW6432) { Write-Output ('wow64_machine=' + $env:PROCESSOR_ARCHITEW6432) }; \
Write-Output ('os_version_id=' + [System.Environment]::OSVersion.Version.ToString()); \
Write-Output 'RUSTLE_PROBE_END'";

const KNOWN_KEYS: &[&str] = &[
    "os",
    "machine",
    "kernel",
    "gnu_libc_version",
    "ldd",
    "musl_loader",
    "endian",
    "cpu_flags",
    "os_id",
    "os_version_id",
    "macos_version",
    "wow64_machine",
];

/// What a probe found out about a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchitectureInfo {
    /// CPU architecture family.
    pub architecture: Architecture,
    /// The system as the host names it (`uname -s`: Linux, Darwin, FreeBSD; or Windows).
    pub platform: String,
    /// The machine as the host names it (`uname -m`, or `PROCESSOR_ARCHITECTURE`).
    pub machine: String,
    /// Operating system family.
    pub os_family: OsFamily,
    /// OS release (`VERSION_ID`, macOS product version, Windows version, else the kernel).
    pub os_version: String,
    /// `/etc/os-release` `ID`, on Linux.
    pub os_id: Option<String>,
    /// C library, on Linux (MSVCRT on Windows).
    pub libc_type: Option<LibcType>,
    /// Its version (`2.36`, `1.2.4`), when the host said.
    pub libc_version: Option<String>,
    /// CPU flags / features, as listed by the kernel.
    pub cpu_features: Vec<String>,
    /// Byte order.
    pub endianness: Endianness,
}

impl ArchitectureInfo {
    /// The probe result as facts in Ansible's shape (`ansible_system`,
    /// `ansible_architecture`, ...) plus `rustle_*` facts Ansible has no
    /// name for; what is written to the fact cache and normalised.
    pub fn to_facts(&self) -> Facts {
        let mut facts = Facts::new();
        let mut put = |k: &str, v: Value| {
            facts.insert(k.to_owned(), v);
        };
        if self.os_family == OsFamily::Windows {
            put("ansible_system", "Win32NT".into());
            put("ansible_os_family", "Windows".into());
            put("ansible_architecture2", self.machine.to_ascii_lowercase().into());
        } else {
            put("ansible_system", self.platform.clone().into());
            put("ansible_architecture", self.machine.clone().into());
            put("ansible_machine", self.machine.clone().into());
        }
        if self.os_family == OsFamily::MacOS {
            put("ansible_distribution_version", self.os_version.clone().into());
        }
        match (&self.libc_type, &self.libc_version) {
            (Some(LibcType::Musl), version) => {
                put("rustle_libc", "musl".into());
                if let Some(v) = version {
                    put("rustle_libc_version", v.clone().into());
                }
            }
            (Some(LibcType::Glibc), version) => {
                put("rustle_libc", "glibc".into());
                if let Some(v) = version {
                    put("rustle_glibc_version", v.clone().into());
                }
            }
            _ => {}
        }
        if let Some(id) = &self.os_id {
            put("rustle_os_id", id.clone().into());
        }
        put("rustle_os_version", self.os_version.clone().into());
        put("rustle_endianness", if self.endianness == Endianness::Big { "big" } else { "little" }.into());
        put("rustle_cpu_flags", self.cpu_features.iter().cloned().map(Value::from).collect::<Vec<_>>().into());
        facts
    }
}

/// Parses a probe answer. Lines before the begin marker (login banners) are
/// skipped; everything between the markers must be a known `key=value`.
pub fn parse_probe_output(host: &str, output: &str) -> Result<ArchitectureInfo, ProbeError> {
    let garbage = |reason: String| ProbeError::Garbage { host: host.to_owned(), reason, output: excerpt(output) };
    let mut lines = output.lines().map(|l| l.trim_end_matches('\r'));
    if !lines.by_ref().any(|l| l.trim() == BEGIN) {
        return Err(garbage(format!("no `{BEGIN}` line")));
    }
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut ended = false;
    for line in lines {
        if line.trim() == END {
            ended = true;
            break;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| garbage(format!("line {line:?} is not key=value")))?;
        if !KNOWN_KEYS.contains(&key) {
            return Err(garbage(format!("unknown key {key:?}")));
        }
        fields.push((key, value.trim()));
    }
    if !ended {
        return Err(garbage(format!("no `{END}` line (answer cut short)")));
    }
    let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).filter(|v| !v.is_empty());
    let name_like = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || "_-. ".contains(c));
    let platform = get("os").ok_or_else(|| garbage("no `os=` value".into()))?;
    let machine = get("wow64_machine").or(get("machine")).ok_or_else(|| garbage("no `machine=` value".into()))?;
    for (key, value) in [("os", platform), ("machine", machine)] {
        if !name_like(value) || value.len() > 64 {
            return Err(garbage(format!("`{key}` value {value:?} is not a name")));
        }
    }
    let lower_platform = platform.to_ascii_lowercase();
    let os_family = match lower_platform.as_str() {
        "linux" => OsFamily::Linux,
        "darwin" => OsFamily::MacOS,
        "windows" => OsFamily::Windows,
        "freebsd" => OsFamily::FreeBSD,
        "netbsd" => OsFamily::NetBSD,
        "openbsd" => OsFamily::OpenBSD,
        _ if lower_platform.starts_with("mingw")
            || lower_platform.starts_with("msys")
            || lower_platform.starts_with("cygwin") =>
        {
            OsFamily::Windows
        }
        _ => OsFamily::Other(platform.to_owned()),
    };
    let architecture = architecture_of(machine, os_family == OsFamily::Windows);
    let (libc_type, libc_version) = match os_family {
        OsFamily::Linux => {
            let (libc, version) =
                linux_libc(&fields).ok_or_else(|| ProbeError::UnknownLibc { host: host.to_owned() })?;
            (Some(libc), version)
        }
        OsFamily::Windows => (Some(LibcType::Msvcrt), None),
        _ => (None, None),
    };
    let endianness = match get("endian") {
        Some("1") => Endianness::Little,
        Some("256") => Endianness::Big,
        Some(other) => return Err(garbage(format!("`endian` value {other:?} is neither 1 nor 256"))),
        None if architecture == Architecture::S390x => Endianness::Big,
        None => Endianness::Little,
    };
    let os_version = get("macos_version")
        .filter(|_| os_family == OsFamily::MacOS)
        .or(get("os_version_id"))
        .or(get("kernel"))
        .unwrap_or_default()
        .to_owned();
    Ok(ArchitectureInfo {
        architecture,
        platform: if os_family == OsFamily::Windows { "Windows".to_owned() } else { platform.to_owned() },
        machine: machine.to_owned(),
        os_family,
        os_version,
        os_id: get("os_id").map(str::to_owned),
        libc_type,
        libc_version,
        cpu_features: get("cpu_flags").map(|f| f.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
        endianness,
    })
}

fn architecture_of(machine: &str, windows: bool) -> Architecture {
    Architecture::from_alias(&machine.to_ascii_lowercase(), windows)
        .map_or_else(|| Architecture::Other(machine.to_owned()), |names| names.architecture.clone())
}

/// (libc, version) from the probe fields, musl evidence first since a
/// glibc system never answers `ldd --version` with musl.
fn linux_libc(fields: &[(&str, &str)]) -> Option<(LibcType, Option<String>)> {
    let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).filter(|v| !v.is_empty());
    let ldd = get("ldd").unwrap_or_default();
    if ldd.to_ascii_lowercase().contains("musl") {
        let version = ldd.split_whitespace().skip_while(|w| *w != "Version").nth(1).map(str::to_owned);
        return Some((LibcType::Musl, version));
    }
    if let Some(v) = get("gnu_libc_version").and_then(parse_glibc) {
        return Some((LibcType::Glibc, Some(v.to_string())));
    }
    let lower = ldd.to_ascii_lowercase();
    if lower.contains("glibc") || lower.contains("gnu libc") {
        let first = ldd.split("  ").next().unwrap_or(ldd);
        return Some((LibcType::Glibc, parse_glibc(first).map(|v| v.to_string())));
    }
    if get("musl_loader").is_some() {
        return Some((LibcType::Musl, None));
    }
    None
}

fn excerpt(output: &str) -> String {
    const MAX: usize = 300;
    let trimmed = output.trim();
    if trimmed.len() <= MAX {
        return trimmed.to_owned();
    }
    let mut cut = MAX;
    while !trimmed.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &trimmed[..cut])
}

/// Runs probes: the ssh program and the overall deadline of one probe.
#[derive(Debug, Clone)]
pub struct SshProber {
    /// The ssh client (`ssh` from PATH by default).
    pub ssh_program: PathBuf,
    /// Deadline for a whole probe, connect included; the process group is
    /// killed after it.
    pub deadline: Duration,
}

impl Default for SshProber {
    fn default() -> Self {
        Self { ssh_program: PathBuf::from("ssh"), deadline: Duration::from_secs(30) }
    }
}

impl SshProber {
    /// The ssh invocation for a connection and a remote command.
    pub fn ssh_command(&self, connection: &ConnectionConfig, remote_command: &str) -> ProcessSpec {
        let connect_timeout = connection.timeout.as_secs().max(1);
        let mut spec = ProcessSpec::new(&self.ssh_program)
            .args(["-T", "-o", "BatchMode=yes", "-o", "ConnectionAttempts=1", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("ConnectTimeout={connect_timeout}"))
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]);
        if let Some(port) = connection.port {
            spec = spec.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &connection.username {
            spec = spec.arg("-l").arg(user);
        }
        if let Some(key) = &connection.private_key_file {
            spec = spec.arg("-i").arg(key);
        }
        spec.args(&connection.ssh_args).arg("--").arg(&connection.host).arg(remote_command).timeout(self.deadline)
    }

    /// Probes one host: `sh -s` with [`PROBE_SCRIPT`], then, when the remote
    /// shell does not know `sh` (Windows), PowerShell.
    pub async fn probe(&self, connection: &ConnectionConfig) -> Result<ArchitectureInfo, ProbeError> {
        let host = connection.host.as_str();
        match &connection.method {
            ConnectionMethod::Ssh => {}
            ConnectionMethod::Local => {
                let spec = ProcessSpec::new("sh").arg("-s").stdin(PROBE_SCRIPT).timeout(self.deadline);
                let output = self.run(host, &spec).await?;
                return parse_probe_output(host, &output.0);
            }
            other => {
                return Err(ProbeError::UnsupportedConnection {
                    host: host.to_owned(),
                    method: other.as_str().to_owned(),
                });
            }
        }
        let spec = self.ssh_command(connection, "sh -s").stdin(PROBE_SCRIPT);
        let (stdout, stderr) = self.run(host, &spec).await?;
        if stdout.contains(BEGIN) {
            return parse_probe_output(host, &stdout);
        }
        let said = format!("{stdout}\n{stderr}").to_ascii_lowercase();
        if said.contains("is not recognized") || said.contains("not recognized as") {
            let command = format!(
                "powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {}",
                encode_powershell(POWERSHELL_SCRIPT)
            );
            let (stdout, _) = self.run(host, &self.ssh_command(connection, &command)).await?;
            return parse_probe_output(host, &stdout);
        }
        parse_probe_output(
            host,
            &format!(
                "{stdout}{}",
                if stderr.trim().is_empty() { String::new() } else { format!("\n[stderr] {stderr}") }
            ),
        )
    }

    /// Runs ssh (or sh); ssh's own failures (exit 255) become typed errors.
    async fn run(&self, host: &str, spec: &ProcessSpec) -> Result<(String, String), ProbeError> {
        let output = spec.output().await.map_err(|e| match e {
            ProcessError::TimedOut { timeout, .. } => ProbeError::TimedOut { host: host.to_owned(), timeout },
            source => ProbeError::Process { host: host.to_owned(), source },
        })?;
        let (stdout, stderr) = (output.stdout_text(), output.stderr_text());
        if output.status.code() == Some(255) && !stdout.contains(BEGIN) {
            return Err(classify_ssh_failure(host, &stderr));
        }
        Ok((stdout, stderr))
    }
}

/// Turns ssh's exit-255 stderr into a typed error.
pub fn classify_ssh_failure(host: &str, stderr: &str) -> ProbeError {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@') && !l.starts_with("Warning: Permanently added"))
        .collect();
    let detail = if lines.is_empty() {
        "ssh exited with 255 and said nothing".to_owned()
    } else {
        lines[lines.len().saturating_sub(2)..].join("; ")
    };
    let lower = stderr.to_ascii_lowercase();
    let host = host.to_owned();
    if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("host key for") && lower.contains("has changed")
    {
        ProbeError::HostKey { host, detail }
    } else if lower.contains("permission denied") || lower.contains("too many authentication failures") {
        ProbeError::Authentication { host, detail }
    } else if [
        "connection refused",
        "connection timed out",
        "operation timed out",
        "timed out during banner exchange",
        "no route to host",
        "network is unreachable",
        "could not resolve hostname",
        "name or service not known",
        "connection closed by",
        "connection reset",
        "kex_exchange_identification",
    ]
    .iter()
    .any(|s| lower.contains(s))
    {
        ProbeError::Unreachable { host, detail }
    } else {
        ProbeError::Ssh { host, status: "255".into(), detail }
    }
}

/// PowerShell's `-EncodedCommand`: base64 of the UTF-16LE script.
pub fn encode_powershell(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! `rustle-cross ca`: creates the fleet CA, issues agent and coordinator certificates (PEM, keys mode 0600) and revokes them (a CRL, `crl.pem`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rustle_protocol::Role;
use rustle_transport::ca::Reuse;
use rustle_transport::revocation::{CRL_FILE, ISSUED_FILE, record_issued};
use rustle_transport::{CertFiles, FleetCa, RevocationList};

/// Arguments of `rustle-cross ca`.
#[derive(Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a fleet CA (`ca.pem`, `ca-key.pem`) in --dir.
    Init {
        /// Where the CA lives.
        #[arg(long, default_value_os_t = default_dir())]
        dir: PathBuf,
    },
    /// Issue a certificate for an agent or a coordinator, signed by the CA in --dir
    /// (recorded in `issued.txt` there, so it can be revoked by name).
    Issue(IssueArgs),
    /// Revoke every certificate issued to an agent or coordinator NAME: writes
    /// `crl.pem` in --dir, signed by the CA, which agents (`crl`) and
    /// coordinators (`fleet.crl`) check peers against.
    Revoke(RevokeArgs),
}

/// Arguments of `rustle-cross ca revoke`.
#[derive(Args)]
struct RevokeArgs {
    /// The agent or coordinator name the certificates were issued for.
    name: String,
    /// Revoke only the certificate with this serial (hex, as `openssl x509
    /// -noout -serial` prints it), also one `issued.txt` does not list.
    #[arg(long)]
    serial: Option<String>,
    /// Where the CA lives.
    #[arg(long, default_value_os_t = default_dir())]
    dir: PathBuf,
}

/// Arguments of `rustle-cross ca issue`.
#[derive(Args)]
struct IssueArgs {
    /// Issue an agent certificate with this name (the name coordinators dial it by).
    #[arg(long, conflicts_with = "coordinator", required_unless_present = "coordinator")]
    agent: Option<String>,
    /// Issue a coordinator certificate with this name.
    #[arg(long)]
    coordinator: Option<String>,
    /// Extra DNS names or IP addresses for an agent certificate (repeatable).
    #[arg(long = "san", requires = "agent")]
    sans: Vec<String>,
    /// Where the CA lives.
    #[arg(long, default_value_os_t = default_dir())]
    dir: PathBuf,
    /// Where to write `NAME.pem`, `NAME-key.pem` and `ca.pem` (default: --dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the certificate already in --out when this CA issued it for the
    /// same name and SANs, its key is beside it and it stays valid for
    /// --renew-within-days more days; prints `kept` instead of `issued`.
    #[arg(long)]
    keep_valid: bool,
    /// With --keep-valid: re-issue a certificate that expires within this many days.
    #[arg(long, default_value_t = 30, requires = "keep_valid")]
    renew_within_days: u32,
}

/// `~/.config/rustle-cross/ca` (or under `$XDG_CONFIG_HOME`).
fn default_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("rustle-cross")
        .join("ca")
}

/// Runs the command.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init { dir } => {
            FleetCa::init(&dir).with_context(|| format!("failed to create a fleet CA in {}", dir.display()))?;
            println!("created fleet CA in {}", dir.display());
            println!("  certificate: {}", dir.join("ca.pem").display());
            println!("  key (0600):  {}", dir.join("ca-key.pem").display());
        }
        CaCommand::Issue(issue) => {
            let ca = FleetCa::load(&issue.dir)
                .with_context(|| format!("failed to load the fleet CA from {}", issue.dir.display()))?;
            let out = issue.out.clone().unwrap_or_else(|| issue.dir.clone());
            if issue.keep_valid {
                let min_remaining = std::time::Duration::from_secs(u64::from(issue.renew_within_days) * 86_400);
                let (name, reuse) = match (&issue.agent, &issue.coordinator) {
                    (Some(name), _) => {
                        (name, ca.reusable_agent(&CertFiles::in_dir(&out, name), name, &issue.sans, min_remaining))
                    }
                    (None, Some(name)) => {
                        (name, ca.reusable_coordinator(&CertFiles::in_dir(&out, name), name, min_remaining))
                    }
                    (None, None) => anyhow::bail!("pass --agent NAME or --coordinator NAME"),
                };
                let revoked = || -> anyhow::Result<bool> {
                    let crl = issue.dir.join(CRL_FILE);
                    let cert = CertFiles::in_dir(&out, name).cert;
                    if !crl.exists() || !cert.exists() {
                        return Ok(false);
                    }
                    let pem =
                        std::fs::read_to_string(&cert).with_context(|| format!("failed to read {}", cert.display()))?;
                    Ok(RevocationList::load(&crl)?.revokes(&pem))
                };
                let reuse = match reuse {
                    Reuse::Keep { .. } if revoked()? => {
                        Reuse::Reissue { reason: format!("it is revoked by {}", issue.dir.join(CRL_FILE).display()) }
                    }
                    reuse => reuse,
                };
                match reuse {
                    Reuse::Keep { not_after } => {
                        println!("kept valid certificate for {name} (expires {not_after})");
                        return Ok(ExitCode::SUCCESS);
                    }
                    Reuse::Reissue { reason } => println!("re-issuing the certificate for {name}: {reason}"),
                }
            }
            let (role, name, bundle) = match (&issue.agent, &issue.coordinator) {
                (Some(name), _) => (Role::Agent, name, ca.issue_agent(name, &issue.sans)?),
                (None, Some(name)) => (Role::Coordinator, name, ca.issue_coordinator(name)?),
                (None, None) => anyhow::bail!("pass --agent NAME or --coordinator NAME"),
            };
            let files = bundle.write_to(&out, name)?;
            // Recorded after it is written, so the record never lists a certificate nobody has.
            record_issued(&issue.dir, role, name, &bundle)?;
            println!("issued {role} certificate for {name}");
            println!("  certificate: {}", files.cert.display());
            println!("  key (0600):  {}", files.key.display());
            println!("  fleet CA:    {}", files.ca.display());
        }
        CaCommand::Revoke(revoke) => {
            let ca = FleetCa::load(&revoke.dir)
                .with_context(|| format!("failed to load the fleet CA from {}", revoke.dir.display()))?;
            let revocation = ca.revoke(&revoke.dir, &revoke.name, revoke.serial.as_deref())?;
            for cert in &revocation.revoked {
                println!(
                    "revoked {} certificate for {} (serial {}, expiring {})",
                    cert.role, cert.name, cert.serial, cert.not_after
                );
            }
            for serial in &revocation.revoked_unrecorded {
                println!(
                    "revoked serial {serial} for {} (not in {}; revoked as given)",
                    revoke.name,
                    revoke.dir.join(ISSUED_FILE).display()
                );
            }
            for serial in &revocation.already_revoked {
                println!("already revoked: serial {serial} for {}", revoke.name);
            }
            println!("wrote {} ({} revoked in all)", revocation.crl.display(), revocation.total);
            println!(
                "  give it to every agent (`crl` in agent.toml) and coordinator (`fleet.crl`), and restart them; \
                 until then they still accept the revoked certificates"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

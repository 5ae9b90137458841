//! The fleet CA: [`FleetCa`] creates and loads it and issues agent and coordinator [`CertBundle`]s.
//!
//! One CA per fleet signs every certificate; agents and coordinators trust
//! it and nothing else. Agent certificates are server certificates whose
//! name (a DNS or IP SAN) is the name coordinators dial; coordinator
//! certificates are client certificates carrying the coordinator's name as
//! a DNS SAN and common name. Keys are ECDSA P-256 and are written `0600`.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustle_protocol::Sha256Digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::{Duration, OffsetDateTime};

use crate::revocation::RevocationList;

/// File name of the CA certificate, in the CA directory and beside every issued bundle.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA's private key.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// How long a fleet CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(10 * 365);
/// How long an agent or coordinator certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::days(3 * 365);
/// How far back validity starts, to tolerate clocks that run behind.
const CLOCK_SKEW: Duration = Duration::days(1);

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// `init` found a CA already there.
    #[error(
        "a fleet CA already exists in {}; keep using it (`rustle-cross ca issue ...`), or replace it \
         explicitly (`rustle-cross ca init --force`), after which every certificate it issued is refused",
        dir.display()
    )]
    AlreadyExists {
        /// The CA directory.
        dir: PathBuf,
    },
    /// `load` found no CA.
    #[error(
        "failed to find a fleet CA in {} ({CA_CERT_FILE} and {CA_KEY_FILE}); create one with \
         `rustle-cross ca init`",
        dir.display()
    )]
    NotFound {
        /// The CA directory.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("failed to {action} {}: {source}", path.display())]
    File {
        /// e.g. `"write"`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: io::Error,
    },
    /// A PEM file or the CA's key pair is unusable.
    #[error(
        "failed to use {}: {reason}; restore it from a backup or create a new CA with \
         `rustle-cross ca init --force`",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A name cannot go on a certificate.
    #[error(
        "failed to issue a certificate for {name:?}: {reason}; names must be DNS names (letters, digits, \
         '-' and '.') or IP addresses"
    )]
    InvalidName {
        /// The refused name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A certificate revocation list is unusable.
    #[error(
        "failed to use the certificate revocation list {}: {reason}; copy the `crl.pem` that \
         `rustle-cross ca revoke NAME` wrote into this fleet's CA directory",
        path.display()
    )]
    RevocationList {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `revoke` found nothing to revoke.
    #[error("failed to revoke {name:?}: {reason}")]
    NothingToRevoke {
        /// The name asked for.
        name: String,
        /// Why there is nothing.
        reason: String,
    },
    /// rcgen could not generate a key or sign a certificate.
    #[error("failed to {action}: {reason}")]
    Generate {
        /// e.g. `"sign the certificate for builder-1"`.
        action: String,
        /// rcgen's reason.
        reason: String,
    },
}

/// The fleet's certificate authority: its certificate and signing key.
pub struct FleetCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl FleetCa {
    /// A new CA held in memory only (tests, or callers that store it themselves).
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(|error| generate_error("generate the CA key", error))?;
        // A per-CA suffix keeps two fleets' CAs apart by name, so a
        // certificate from the wrong one is reported as "unknown issuer".
        let id = Sha256Digest::of(key.public_key_raw()).to_string();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("rustle-cross fleet CA {}", &id[..12]));
        params.distinguished_name.push(DnType::OrganizationName, "rustle-cross");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(|error| generate_error("self-sign the CA certificate", error))?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// Creates a CA and writes `ca.pem` and `ca-key.pem` (mode 0600) into
    /// `dir`, creating it. Refuses if either file exists.
    pub fn init(dir: &Path) -> Result<Self, CaError> {
        if dir.join(CA_CERT_FILE).exists() || dir.join(CA_KEY_FILE).exists() {
            return Err(CaError::AlreadyExists { dir: dir.to_owned() });
        }
        Self::init_replacing(dir)
    }

    /// Like [`init`](Self::init), but replaces an existing CA. Every
    /// certificate the old CA issued stops being accepted.
    pub fn init_replacing(dir: &Path) -> Result<Self, CaError> {
        let ca = Self::generate()?;
        create_dir(dir)?;
        write_private(&dir.join(CA_KEY_FILE), &ca.issuer.key().serialize_pem())?;
        write_public(&dir.join(CA_CERT_FILE), &ca.cert_pem)?;
        Ok(ca)
    }

    /// Loads the CA from `ca.pem` and `ca-key.pem` in `dir`, checking that the key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            return Err(CaError::NotFound { dir: dir.to_owned() });
        }
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|error| CaError::Corrupt { path: key_path.clone(), reason: error.to_string() })?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|error| CaError::Corrupt { path: cert_path.clone(), reason: error.to_string() })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|error| CaError::Corrupt { path: cert_path.clone(), reason: error.to_string() })?;
        if !parsed.is_ca() {
            return Err(CaError::Corrupt { path: cert_path, reason: "it is not a CA certificate".into() });
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::Corrupt {
                path: key_path,
                reason: format!("it is not the key of the certificate in {}", cert_path.display()),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|error| CaError::Corrupt { path: cert_path, reason: error.to_string() })?;
        Ok(Self { cert_pem, issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's certificate and key, to sign with.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Issues a server certificate for the agent `name`: its SANs are `name`
    /// and `sans` (IP addresses become IP SANs, everything else DNS SANs).
    pub fn issue_agent(&self, name: &str, sans: &[String]) -> Result<CertBundle, CaError> {
        let mut names = vec![name.to_owned()];
        for san in sans {
            if !names.iter().any(|known| known.eq_ignore_ascii_case(san)) {
                names.push(san.clone());
            }
        }
        self.issue(name, &names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a client certificate for the coordinator `name` (its DNS SAN and common name).
    pub fn issue_coordinator(&self, name: &str) -> Result<CertBundle, CaError> {
        if name.parse::<IpAddr>().is_ok() {
            return Err(CaError::InvalidName {
                name: name.to_owned(),
                reason: "a coordinator is named, not addressed".into(),
            });
        }
        self.issue(name, &[name.to_owned()], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: &[String], usage: ExtendedKeyUsagePurpose) -> Result<CertBundle, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = names.iter().map(|name| san(name)).collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + LEAF_VALIDITY;
        let key = KeyPair::generate().map_err(|error| generate_error(&format!("generate a key for {name}"), error))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|error| generate_error(&format!("sign the certificate for {name}"), error))?;
        Ok(CertBundle { cert_pem: cert.pem(), key_pem: key.serialize_pem(), ca_pem: self.cert_pem.clone(), crl: None })
    }
}

/// Whether a certificate already on disk can be kept instead of issuing a
/// new one (what `rustle-cross ca issue --keep-valid` decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reuse {
    /// It was issued by this CA for the same names, its key matches, and it
    /// stays valid long enough.
    Keep {
        /// When it expires.
        not_after: OffsetDateTime,
    },
    /// It must be (re-)issued.
    Reissue {
        /// Why, e.g. "no certificate at ...", "it expires in 3 days".
        reason: String,
    },
}

impl FleetCa {
    /// Whether the bundle in `files` is a certificate this CA issued for the
    /// agent `name` (and every one of `sans`), whose key is beside it, and
    /// which stays valid for at least `min_remaining`.
    pub fn reusable_agent(
        &self,
        files: &CertFiles,
        name: &str,
        sans: &[String],
        min_remaining: std::time::Duration,
    ) -> Reuse {
        let mut names = vec![name.to_owned()];
        names.extend(sans.iter().cloned());
        self.reusable(files, &names, ExtendedKeyUsagePurpose::ServerAuth, min_remaining)
    }

    /// Like [`reusable_agent`](Self::reusable_agent), for a coordinator certificate.
    pub fn reusable_coordinator(&self, files: &CertFiles, name: &str, min_remaining: std::time::Duration) -> Reuse {
        self.reusable(files, &[name.to_owned()], ExtendedKeyUsagePurpose::ClientAuth, min_remaining)
    }

    fn reusable(
        &self,
        files: &CertFiles,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
        min_remaining: std::time::Duration,
    ) -> Reuse {
        let min_remaining = Duration::try_from(min_remaining).unwrap_or(Duration::MAX);
        match self.check_reusable(files, names, usage, min_remaining) {
            Ok(not_after) => Reuse::Keep { not_after },
            Err(reason) => Reuse::Reissue { reason },
        }
    }

    fn check_reusable(
        &self,
        files: &CertFiles,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
        min_remaining: Duration,
    ) -> Result<OffsetDateTime, String> {
        let read =
            |path: &Path| fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()));
        let (cert_pem, key_pem, ca_pem) = (read(&files.cert)?, read(&files.key)?, read(&files.ca)?);
        if ca_pem.trim() != self.cert_pem.trim() {
            return Err(format!("{} is not this fleet CA's certificate", files.ca.display()));
        }
        let unusable = |error: String| format!("{} is unusable: {error}", files.cert.display());
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| unusable(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| unusable(e.to_string()))?;
        let ca_der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(|e| unusable(e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|e| unusable(e.to_string()))?;
        if cert.issuer() != ca.subject() {
            return Err(format!("{} was issued by another CA ({})", files.cert.display(), cert.issuer()));
        }
        let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{} is unusable: {e}", files.key.display()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(format!("{} is not the key of {}", files.key.display(), files.cert.display()));
        }
        let wanted_usage = match usage {
            ExtendedKeyUsagePurpose::ClientAuth => "client",
            _ => "server",
        };
        let has_usage = cert.extended_key_usage().ok().flatten().is_some_and(|eku| match usage {
            ExtendedKeyUsagePurpose::ClientAuth => eku.value.client_auth,
            _ => eku.value.server_auth,
        });
        if !has_usage {
            return Err(format!("{} is not a {wanted_usage} certificate", files.cert.display()));
        }
        let present: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|sans| {
                sans.value
                    .general_names
                    .iter()
                    .filter_map(|general| match general {
                        x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                        x509_parser::extensions::GeneralName::IPAddress(bytes) => match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| IpAddr::from(b).to_string()),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| IpAddr::from(b).to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for name in names {
            let wanted = name.parse::<IpAddr>().map_or_else(|_| name.to_ascii_lowercase(), |ip| ip.to_string());
            if !present.contains(&wanted) {
                return Err(format!("{} does not name {name} (it names {})", files.cert.display(), present.join(", ")));
            }
        }
        let not_after = cert.validity().not_after.to_datetime();
        let remaining = not_after - OffsetDateTime::now_utc();
        if remaining < min_remaining {
            return Err(format!(
                "{} expires in {} days (at {not_after}), within the {} days asked for",
                files.cert.display(),
                remaining.whole_days(),
                min_remaining.whole_days()
            ));
        }
        Ok(not_after)
    }
}

/// One SAN for `name`, refusing names TLS peers could not be dialled or matched by.
fn san(name: &str) -> Result<SanType, CaError> {
    let invalid = |reason: String| CaError::InvalidName { name: name.to_owned(), reason };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if ServerName::try_from(name).is_err() {
        return Err(invalid("it is not a valid DNS name".into()));
    }
    Ok(SanType::DnsName(name.try_into().map_err(|error: rcgen::Error| invalid(error.to_string()))?))
}

fn generate_error(action: &str, error: rcgen::Error) -> CaError {
    CaError::Generate { action: action.to_owned(), reason: error.to_string() }
}

/// A certificate, its private key and the fleet CA certificate, all PEM,
/// and optionally the fleet CA's revocation list the peer's certificate is
/// checked against. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The fleet CA certificate, the only root this side trusts.
    pub ca_pem: String,
    /// The fleet CA's certificate revocation list: a peer whose certificate
    /// it lists is refused. `None`: no certificate is revoked.
    pub crl: Option<RevocationList>,
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem)
            .field("crl", &self.crl)
            .finish()
    }
}

impl CertBundle {
    /// Writes `<stem>.pem`, `<stem>-key.pem` (mode 0600) and `ca.pem` into
    /// `dir`, creating it, and returns their paths. Existing files are
    /// replaced. The revocation list is not written: it lives in the CA
    /// directory, where `rustle-cross ca revoke` keeps it.
    pub fn write_to(&self, dir: &Path, stem: &str) -> Result<CertFiles, CaError> {
        let files = CertFiles::in_dir(dir, stem);
        create_dir(dir)?;
        write_private(&files.key, &self.key_pem)?;
        write_public(&files.cert, &self.cert_pem)?;
        write_public(&files.ca, &self.ca_pem)?;
        Ok(files)
    }

    /// Reads a bundle from its three files (with no revocation list).
    pub fn load(files: &CertFiles) -> Result<Self, CaError> {
        Ok(Self { cert_pem: read(&files.cert)?, key_pem: read(&files.key)?, ca_pem: read(&files.ca)?, crl: None })
    }

    /// This bundle, checking peers against `crl` too.
    pub fn with_crl(self, crl: RevocationList) -> Self {
        Self { crl: Some(crl), ..self }
    }
}

/// Where a [`CertBundle`] lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate, e.g. `builder-1.pem`.
    pub cert: PathBuf,
    /// Its key, e.g. `builder-1-key.pem`.
    pub key: PathBuf,
    /// The fleet CA certificate, `ca.pem`.
    pub ca: PathBuf,
}

impl CertFiles {
    /// The layout [`CertBundle::write_to`] uses.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
            ca: dir.join(CA_CERT_FILE),
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(|source| CaError::File { action: "create the directory", path: dir.into(), source })
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::File { action: "read", path: path.into(), source })
}

pub(crate) fn write_public(path: &Path, contents: &str) -> Result<(), CaError> {
    fs::write(path, contents).map_err(|source| CaError::File { action: "write", path: path.into(), source })
}

/// Writes a key: into a sibling created with mode 0600, then renamed over
/// `path`, so the key is never readable by others, even for a moment.
fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let error = |source| CaError::File { action: "write", path: path.into(), source };
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    if let Err(source) = written.and_then(|()| fs::rename(&temporary, path)) {
        let _ = fs::remove_file(&temporary);
        return Err(error(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_replace_a_ca_and_load_reads_it_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = FleetCa::init(dir.path()).expect("new CA");
        let error = FleetCa::init(dir.path()).expect_err("a CA is there");
        assert!(matches!(error, CaError::AlreadyExists { .. }));
        assert!(error.to_string().contains("--force"), "{error}");
        let loaded = FleetCa::load(dir.path()).expect("loads");
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        let replaced = FleetCa::init_replacing(dir.path()).expect("replaced");
        assert_ne!(replaced.cert_pem(), ca.cert_pem());
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_written_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = FleetCa::init(dir.path()).expect("new CA");
        let mode = |path: &Path| fs::metadata(path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
        let out = dir.path().join("agents");
        let files = ca.issue_agent("builder-1", &[]).expect("issued").write_to(&out, "builder-1").expect("written");
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(files.cert, out.join("builder-1.pem"));
        assert_eq!(fs::read_to_string(&files.ca).expect("ca.pem"), ca.cert_pem());
        assert!(!out.join(".builder-1-key.pem.tmp").exists());
    }

    #[test]
    fn load_names_what_is_missing_or_mismatched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = FleetCa::load(dir.path()).expect_err("no CA");
        assert!(error.to_string().contains("`rustle-cross ca init`"), "{error}");
        FleetCa::init(dir.path()).expect("new CA");
        let other = FleetCa::generate().expect("another CA");
        fs::write(dir.path().join(CA_CERT_FILE), other.cert_pem()).expect("swap the certificate");
        let error = FleetCa::load(dir.path()).expect_err("key does not match");
        assert!(error.to_string().contains("is not the key of the certificate"), "{error}");
    }

    #[test]
    fn agent_certificates_carry_their_names_and_ips() {
        let ca = FleetCa::generate().expect("CA");
        let bundle = ca.issue_agent("builder-1", &["build1.example.org".into(), "10.0.0.7".into()]).expect("issued");
        let der = CertificateDer::from_pem_slice(bundle.cert_pem.as_bytes()).expect("PEM");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("DER");
        let sans = cert.subject_alternative_name().expect("parses").expect("present");
        let names: Vec<String> = sans.value.general_names.iter().map(|name| name.to_string()).collect();
        assert_eq!(names, ["DNSName(builder-1)", "DNSName(build1.example.org)", "IPAddress(0a:00:00:07)"]);
        assert!(format!("{bundle:?}").contains("<redacted>"));
    }

    #[test]
    fn a_valid_certificate_is_kept_and_anything_else_reissued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::generate().expect("CA");
        let files = CertFiles::in_dir(dir.path(), "builder-1");
        let keep = |reuse: Reuse| matches!(reuse, Reuse::Keep { .. });
        let month = std::time::Duration::from_secs(30 * 86_400);
        let reason = |reuse: Reuse| match reuse {
            Reuse::Reissue { reason } => reason,
            Reuse::Keep { .. } => panic!("kept"),
        };
        assert!(reason(ca.reusable_agent(&files, "builder-1", &[], month)).contains("cannot read"));
        ca.issue_agent("builder-1", &["10.0.0.7".into()])
            .expect("issued")
            .write_to(dir.path(), "builder-1")
            .expect("written");
        assert!(keep(ca.reusable_agent(&files, "builder-1", &["10.0.0.7".into()], month)));
        assert!(reason(ca.reusable_agent(&files, "builder-1", &["10.0.0.8".into()], month)).contains("10.0.0.8"));
        assert!(reason(ca.reusable_agent(&files, "builder-1", &[], month * 40)).contains("expires in"));
        assert!(reason(ca.reusable_coordinator(&files, "builder-1", month)).contains("not a client certificate"));
        let other = FleetCa::generate().expect("other CA");
        assert!(reason(other.reusable_agent(&files, "builder-1", &[], month)).contains("not this fleet CA"));
        let stranger = other.issue_agent("builder-1", &[]).expect("issued");
        std::fs::write(&files.cert, &stranger.cert_pem).expect("overwrite");
        assert!(reason(ca.reusable_agent(&files, "builder-1", &[], month)).contains("another CA"));
    }

    #[test]
    fn unusable_names_are_refused() {
        let ca = FleetCa::generate().expect("CA");
        for name in ["", "has space", "slash/name"] {
            assert!(matches!(ca.issue_agent(name, &[]), Err(CaError::InvalidName { .. })), "{name:?}");
        }
        assert!(matches!(ca.issue_coordinator("10.0.0.1"), Err(CaError::InvalidName { .. })));
    }
}

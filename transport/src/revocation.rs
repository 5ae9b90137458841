//! Revocation: [`RevocationList`], the fleet CA's certificate revocation list (`crl.pem`) peers are checked against, the record of issued certificates it is written from, and [`FleetCa::revoke`].
//!
//! `rustle-cross ca issue` appends each certificate it issues (serial, role,
//! name, expiry) to `issued.txt` in the CA directory; `rustle-cross ca revoke
//! NAME` looks the name up there and writes `crl.pem`, signed by the CA key,
//! listing every certificate revoked so far (the list only grows). Agents
//! (`crl`) and coordinators (`fleet.crl`) that are given the file refuse a
//! peer whose certificate it lists, and say so.
//!
//! The CRL's next-update is set one leaf validity ahead (every certificate
//! it could list has expired by then) and is not enforced: the list is a
//! file the operator ships, not one fetched from a distribution point, so a
//! passed date would only lock the whole fleet out.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustle_protocol::Role;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use crate::ca::{CaError, CertBundle, FleetCa, LEAF_VALIDITY};

/// File name of the certificate revocation list in the CA directory.
pub const CRL_FILE: &str = "crl.pem";
/// File name of the record of issued certificates in the CA directory.
pub const ISSUED_FILE: &str = "issued.txt";

/// A certificate revocation list signed by the fleet CA, as read from a file.
#[derive(Clone, PartialEq, Eq)]
pub struct RevocationList {
    path: PathBuf,
    der: CertificateRevocationListDer<'static>,
    serials: Vec<String>,
    number: u64,
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList").field("path", &self.path).field("revoked", &self.serials).finish()
    }
}

impl RevocationList {
    /// Reads and parses the CRL at `path` (PEM). A missing or unreadable
    /// file is an error: a configured list is never silently skipped.
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let pem = fs::read(path).map_err(|source| CaError::File {
            action: "read the certificate revocation list",
            path: path.into(),
            source,
        })?;
        Self::from_pem(path, &pem)
    }

    /// Parses a CRL (PEM) that was read from `path`.
    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<Self, CaError> {
        let unusable = |reason: String| CaError::RevocationList { path: path.into(), reason };
        let der = CertificateRevocationListDer::from_pem_slice(pem)
            .map_err(|error| unusable(format!("it holds no PEM `X509 CRL` ({error})")))?;
        let (_, parsed) =
            x509_parser::parse_x509_crl(&der).map_err(|error| unusable(format!("it cannot be parsed: {error}")))?;
        let serials = parsed.iter_revoked_certificates().map(|entry| serial_hex(entry.raw_serial())).collect();
        let number = parsed.crl_number().and_then(|number| u64::try_from(number.clone()).ok()).unwrap_or(0);
        Ok(Self { path: path.to_owned(), der, serials, number })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The serials it revokes, lowercase hex.
    pub fn revoked_serials(&self) -> &[String] {
        &self.serials
    }

    /// Whether it revokes the certificate `cert_pem` (by serial).
    pub fn revokes(&self, cert_pem: &str) -> bool {
        certificate_facts(cert_pem).is_ok_and(|facts| self.serials.contains(&facts.serial))
    }

    /// The DER, for the TLS verifiers.
    pub(crate) fn der(&self) -> &CertificateRevocationListDer<'static> {
        &self.der
    }

    /// Checks that `ca_pem`'s CA issued this list, so that a list from
    /// another fleet is refused at start, not by refusing every peer.
    pub(crate) fn check_issued_by(&self, ca_pem: &str) -> Result<(), String> {
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|error| error.to_string())?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|error| error.to_string())?;
        let (_, crl) = x509_parser::parse_x509_crl(&self.der).map_err(|error| error.to_string())?;
        if crl.issuer() != ca.subject() {
            return Err(format!("it was signed by {}, not by this side's fleet CA {}", crl.issuer(), ca.subject()));
        }
        Ok(())
    }
}

/// One certificate the CA issued, as `issued.txt` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Its serial, lowercase hex.
    pub serial: String,
    /// An agent (server) or coordinator (client) certificate.
    pub role: Role,
    /// The name it was issued for.
    pub name: String,
    /// When it expires.
    pub not_after: OffsetDateTime,
}

/// What [`FleetCa::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The CRL written: the file to give every agent (`crl`) and coordinator (`fleet.crl`).
    pub crl: PathBuf,
    /// Certificates revoked now.
    pub revoked: Vec<IssuedCertificate>,
    /// Serials revoked now that the record does not know (given with `--serial`).
    pub revoked_unrecorded: Vec<String>,
    /// Certificates of that name the list already revoked.
    pub already_revoked: Vec<String>,
    /// How many certificates the list revokes in all.
    pub total: usize,
}

/// Serial and expiry of a certificate (PEM).
pub(crate) struct CertificateFacts {
    pub(crate) serial: String,
    pub(crate) not_after: OffsetDateTime,
}

pub(crate) fn certificate_facts(cert_pem: &str) -> Result<CertificateFacts, String> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|error| error.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|error| error.to_string())?;
    Ok(CertificateFacts { serial: serial_hex(cert.raw_serial()), not_after: cert.validity().not_after.to_datetime() })
}

/// A serial as lowercase hex without leading zero bytes (`ab01...`).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&byte| byte != 0).unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A serial as an operator writes it (`AB:01...`, `serial=AB01...`, any case) → [`serial_hex`] form.
pub fn normalize_serial(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.strip_prefix("serial=").unwrap_or(text);
    let mut hex: String = text.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if hex.len() % 2 == 1 {
        hex.insert(0, '0');
    }
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect::<Result<_, _>>().ok()?;
    Some(serial_hex(&bytes))
}

fn serial_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Agent => "agent",
        Role::Coordinator => "coordinator",
    }
}

/// Appends `bundle`'s certificate to `dir`'s record of issued certificates.
pub fn record_issued(dir: &Path, role: Role, name: &str, bundle: &CertBundle) -> Result<(), CaError> {
    let path = dir.join(ISSUED_FILE);
    let facts = certificate_facts(&bundle.cert_pem).map_err(|reason| CaError::Corrupt {
        path: path.clone(),
        reason: format!("the issued certificate: {reason}"),
    })?;
    let header = if path.exists() {
        ""
    } else {
        "# serial role name not-after (unix seconds), one line per certificate `rustle-cross ca issue` wrote\n"
    };
    let line = format!("{header}{} {} {name} {}\n", facts.serial, role_word(role), facts.not_after.unix_timestamp());
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(|source| CaError::File { action: "append to", path, source })
}

/// The certificates `dir`'s record lists (none when there is no record yet).
pub fn issued(dir: &Path) -> Result<Vec<IssuedCertificate>, CaError> {
    let path = dir.join(ISSUED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CaError::File { action: "read", path, source }),
    };
    let mut issued = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let corrupt = || CaError::Corrupt { path: path.clone(), reason: format!("line {} reads {line:?}", index + 1) };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [serial, role, name, not_after] = fields.as_slice() else { return Err(corrupt()) };
        let role = match *role {
            "agent" => Role::Agent,
            "coordinator" => Role::Coordinator,
            _ => return Err(corrupt()),
        };
        let not_after = not_after
            .parse::<i64>()
            .ok()
            .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
            .ok_or_else(corrupt)?;
        let serial = normalize_serial(serial).ok_or_else(corrupt)?;
        issued.push(IssuedCertificate { serial, role, name: (*name).to_owned(), not_after });
    }
    Ok(issued)
}

impl FleetCa {
    /// Revokes every certificate the record in `dir` lists for `name`
    /// (agent or coordinator, compared case-insensitively), or only the one
    /// with `serial`, and writes `dir/crl.pem` signed by this CA: what it
    /// listed before plus these. With `serial`, a certificate the record
    /// does not know (issued before there was one) is revoked too.
    pub fn revoke(&self, dir: &Path, name: &str, serial: Option<&str>) -> Result<Revocation, CaError> {
        let crl_path = dir.join(CRL_FILE);
        let wanted = match serial {
            Some(text) => Some(normalize_serial(text).ok_or_else(|| CaError::NothingToRevoke {
                name: name.to_owned(),
                reason: format!("{text:?} is not a serial number (hex, as `openssl x509 -noout -serial` prints it)"),
            })?),
            None => None,
        };
        let matching: Vec<IssuedCertificate> = issued(dir)?
            .into_iter()
            .filter(|cert| cert.name.eq_ignore_ascii_case(name))
            .filter(|cert| wanted.as_ref().is_none_or(|serial| &cert.serial == serial))
            .collect();
        let unrecorded: Vec<String> = match &wanted {
            Some(serial) if matching.is_empty() => vec![serial.clone()],
            _ => Vec::new(),
        };
        if matching.is_empty() && unrecorded.is_empty() {
            return Err(CaError::NothingToRevoke {
                name: name.to_owned(),
                reason: format!(
                    "{} lists no certificate for that name (it records what `rustle-cross ca issue` issued); \
                     pass the certificate's serial with --serial (`openssl x509 -noout -serial -in CERT`)",
                    dir.join(ISSUED_FILE).display()
                ),
            });
        }
        let existing = if crl_path.exists() { Some(RevocationList::load(&crl_path)?) } else { None };
        let listed: Vec<String> = existing.as_ref().map(|crl| crl.serials.clone()).unwrap_or_default();
        let existing_times = existing
            .as_ref()
            .and_then(|crl| {
                x509_parser::parse_x509_crl(&crl.der).ok().map(|(_, parsed)| {
                    parsed
                        .iter_revoked_certificates()
                        .map(|entry| (serial_hex(entry.raw_serial()), entry.revocation_date.to_datetime()))
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let mut entries: Vec<(String, OffsetDateTime)> = listed
            .iter()
            .map(|serial| {
                let time = existing_times.iter().find(|(known, _)| known == serial).map_or(now, |(_, time)| *time);
                (serial.clone(), time)
            })
            .collect();
        let mut revocation = Revocation {
            crl: crl_path.clone(),
            revoked: Vec::new(),
            revoked_unrecorded: Vec::new(),
            already_revoked: Vec::new(),
            total: 0,
        };
        for cert in matching {
            if listed.contains(&cert.serial) {
                revocation.already_revoked.push(cert.serial);
            } else {
                entries.push((cert.serial.clone(), now));
                revocation.revoked.push(cert);
            }
        }
        for serial in unrecorded {
            if listed.contains(&serial) {
                revocation.already_revoked.push(serial);
            } else {
                entries.push((serial.clone(), now));
                revocation.revoked_unrecorded.push(serial);
            }
        }
        revocation.total = entries.len();
        let number = existing.as_ref().map_or(0, |crl| crl.number) + 1;
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + LEAF_VALIDITY,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|(serial, time)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(serial)),
                    revocation_time: *time,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(self.issuer()).map_err(|error| CaError::Generate {
            action: "sign the certificate revocation list".into(),
            reason: error.to_string(),
        })?;
        let pem = crl.pem().map_err(|error| CaError::Generate {
            action: "encode the certificate revocation list".into(),
            reason: error.to_string(),
        })?;
        crate::ca::write_public(&crl_path, &pem)?;
        Ok(revocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_read_as_operators_write_them() {
        assert_eq!(normalize_serial("serial=0A:B1").as_deref(), Some("0ab1"));
        assert_eq!(normalize_serial("00ab01").as_deref(), Some("ab01"));
        assert_eq!(normalize_serial("ABC").as_deref(), Some("0abc"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
    }

    #[test]
    fn revoking_a_name_lists_every_certificate_of_it_and_keeps_earlier_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::init(dir.path()).expect("CA");
        let first = ca.issue_agent("builder-1", &[]).expect("issued");
        record_issued(dir.path(), Role::Agent, "builder-1", &first).expect("recorded");
        let second = ca.issue_agent("builder-1", &[]).expect("issued");
        record_issued(dir.path(), Role::Agent, "builder-1", &second).expect("recorded");
        let deploy = ca.issue_coordinator("deploy").expect("issued");
        record_issued(dir.path(), Role::Coordinator, "deploy", &deploy).expect("recorded");
        assert_eq!(issued(dir.path()).expect("record").len(), 3);

        let error = ca.revoke(dir.path(), "nobody", None).expect_err("nothing issued to that name");
        assert!(error.to_string().contains("--serial"), "{error}");

        let revocation = ca.revoke(dir.path(), "BUILDER-1", None).expect("revoked");
        assert_eq!(revocation.revoked.len(), 2);
        assert_eq!(revocation.crl, dir.path().join(CRL_FILE));
        let crl = RevocationList::load(&revocation.crl).expect("written");
        assert!(crl.revokes(&first.cert_pem) && crl.revokes(&second.cert_pem));
        assert!(!crl.revokes(&deploy.cert_pem));
        crl.check_issued_by(ca.cert_pem()).expect("signed by this CA");
        let other = FleetCa::generate().expect("another CA");
        assert!(crl.check_issued_by(other.cert_pem()).expect_err("another CA").contains("not by this side's fleet CA"));

        let again = ca.revoke(dir.path(), "deploy", None).expect("revoked");
        assert_eq!(again.already_revoked, Vec::<String>::new());
        assert_eq!(again.total, 3);
        let crl = RevocationList::load(&again.crl).expect("rewritten");
        assert!(crl.revokes(&first.cert_pem) && crl.revokes(&deploy.cert_pem), "earlier revocations stay");
        assert_eq!(crl.number, 2);
        assert_eq!(ca.revoke(dir.path(), "deploy", None).expect("idempotent").already_revoked.len(), 1);

        let stranger = ca.issue_agent("old-builder", &[]).expect("issued, not recorded");
        let serial = certificate_facts(&stranger.cert_pem).expect("facts").serial;
        let by_serial = ca.revoke(dir.path(), "old-builder", Some(&serial.to_ascii_uppercase())).expect("revoked");
        assert_eq!(by_serial.revoked_unrecorded, [serial]);
        assert!(RevocationList::load(&by_serial.crl).expect("rewritten").revokes(&stranger.cert_pem));
    }

    #[test]
    fn a_missing_or_garbled_list_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("crl.pem");
        let error = RevocationList::load(&missing).expect_err("missing");
        assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
        fs::write(&missing, "not a CRL").expect("write");
        let error = RevocationList::load(&missing).expect_err("garbled");
        assert!(matches!(error, CaError::RevocationList { .. }), "{error:?}");
        assert!(error.to_string().contains("X509 CRL"), "{error}");
    }
}

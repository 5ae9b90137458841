//! rustls and quinn configurations for both ends: ring provider only, TLS 1.3 only, [`ALPN`](rustle_protocol::ALPN), mutual TLS against the fleet CA.
//!
//! There is deliberately no way to build a configuration that skips
//! verification: the agent requires a client certificate chaining to the
//! fleet CA ([`WebPkiClientVerifier`]), and the coordinator trusts the fleet
//! CA alone and checks the agent's certificate for the name it dialled
//! ([`WebPkiServerVerifier`]). When the bundle carries the fleet CA's
//! revocation list, both verifiers refuse a certificate it lists; the agent
//! then wraps its verifier per connection only to remember the name on a
//! certificate it refused as revoked (every verdict stays webpki's).
//! The crypto provider is passed explicitly (`builder_with_provider`), so no
//! process-wide default provider is ever installed.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;

use crate::TransportOptions;
use crate::ca::CertBundle;
use crate::error::TransportError;

/// The only crypto provider this crate uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A bundle parsed into rustls types.
struct ParsedBundle {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

fn parse(bundle: &CertBundle) -> Result<ParsedBundle, TransportError> {
    let invalid = |part: &'static str| move |reason: String| TransportError::InvalidBundle { part, reason };
    let chain = CertificateDer::pem_slice_iter(bundle.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("certificate")(error.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("certificate")("no PEM certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes())
        .map_err(|error| invalid("private key")(error.to_string()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.ca_pem.as_bytes()) {
        let ca = ca.map_err(|error| invalid("CA certificate")(error.to_string()))?;
        roots.add(ca).map_err(|error| invalid("CA certificate")(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("CA certificate")("no PEM certificate found".into()));
    }
    let mut crls = Vec::new();
    if let Some(crl) = &bundle.crl {
        crl.check_issued_by(&bundle.ca_pem)
            .map_err(|reason| TransportError::InvalidRevocationList { path: crl.path().to_owned(), reason })?;
        crls.push(crl.der().clone());
    }
    Ok(ParsedBundle { chain, key, roots: Arc::new(roots), crls })
}

fn tls_error(part: &'static str) -> impl Fn(rustls::Error) -> TransportError {
    move |error| TransportError::InvalidBundle { part, reason: error.to_string() }
}

/// How much of one stream the peer may send ahead of what was read: quinn's
/// default (1.25 MB) holds a bulk transfer back whenever the receiving task
/// is not scheduled for a moment, and is less than a fast link's
/// bandwidth-delay product.
const STREAM_RECEIVE_WINDOW: u32 = 16 * 1024 * 1024;
/// How much of all streams together the peer may send ahead (quinn's
/// default is unbounded): a few bulk streams at full speed.
const RECEIVE_WINDOW: u32 = 64 * 1024 * 1024;
/// How much this side keeps in flight unacknowledged, over all streams.
const SEND_WINDOW: u64 = 64 * 1024 * 1024;

fn transport_config(options: &TransportOptions) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut config = quinn::TransportConfig::default();
    config
        .stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(quinn::VarInt::from_u32(RECEIVE_WINDOW))
        .send_window(SEND_WINDOW);
    let idle = quinn::IdleTimeout::try_from(options.idle_timeout).map_err(|error| TransportError::InvalidBundle {
        part: "transport options",
        reason: format!("idle timeout {:?}: {error}", options.idle_timeout),
    })?;
    config.max_idle_timeout(Some(idle)).keep_alive_interval(Some(options.keep_alive_interval));
    Ok(Arc::new(config))
}

/// What the agent's server configuration is made of, kept so that a
/// configuration can be made per connection (see [`AgentTls::naming_revoked`]).
pub(crate) struct AgentTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Arc<dyn ClientCertVerifier>,
    provider: Arc<CryptoProvider>,
    transport: Arc<quinn::TransportConfig>,
    has_crl: bool,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls").field("has_crl", &self.has_crl).finish_non_exhaustive()
    }
}

impl AgentTls {
    /// Parses the bundle: the agent certificate to present, and a verifier
    /// requiring a client certificate chaining to the fleet CA (and not
    /// revoked by its list, when there is one).
    pub(crate) fn new(bundle: &CertBundle, options: &TransportOptions) -> Result<Self, TransportError> {
        let ParsedBundle { chain, key, roots, crls } = parse(bundle)?;
        let has_crl = !crls.is_empty();
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .with_crls(crls)
            .build()
            .map_err(|error| TransportError::InvalidBundle { part: "CA certificate", reason: error.to_string() })?;
        let tls = Self { chain, key, verifier, provider, transport: transport_config(options)?, has_crl };
        // Fail now, not at the first connection, if the parts do not fit together.
        tls.server_config(tls.verifier.clone())?;
        Ok(tls)
    }

    /// The server configuration with the fleet CA's verifier.
    pub(crate) fn default_config(&self) -> Result<quinn::ServerConfig, TransportError> {
        self.server_config(self.verifier.clone())
    }

    /// With a revocation list: a configuration for one connection whose
    /// verifier remembers the name on a certificate it refused as revoked,
    /// so the refusal can name the coordinator (the handshake fails before
    /// the connection has a peer identity). `None` without a list.
    pub(crate) fn naming_revoked(&self) -> Result<Option<(quinn::ServerConfig, RevokedName)>, TransportError> {
        if !self.has_crl {
            return Ok(None);
        }
        let revoked = RevokedName::default();
        let verifier = Arc::new(NamingRevoked { inner: self.verifier.clone(), revoked: revoked.clone() });
        Ok(Some((self.server_config(verifier)?, revoked)))
    }

    fn server_config(&self, verifier: Arc<dyn ClientCertVerifier>) -> Result<quinn::ServerConfig, TransportError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error("TLS configuration"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls_error("private key"))?;
        tls.alpn_protocols = vec![rustle_protocol::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|error| TransportError::InvalidBundle { part: "TLS configuration", reason: error.to_string() })?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(self.transport.clone());
        Ok(config)
    }
}

/// The name on the certificate a [`NamingRevoked`] verifier refused as revoked, if it did.
#[derive(Debug, Clone, Default)]
pub(crate) struct RevokedName(Arc<Mutex<Option<String>>>);

impl RevokedName {
    /// The name, once the verifier refused a revoked certificate.
    pub(crate) fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut name| name.take())
    }
}

/// The fleet CA's client verifier, unchanged in every verdict, which also
/// remembers the name on a certificate it refused because the revocation
/// list names it. It decides nothing itself: every call is the inner
/// verifier's.
#[derive(Debug)]
struct NamingRevoked {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedName,
}

impl ClientCertVerifier for NamingRevoked {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self.inner.verify_client_cert(end_entity, intermediates, now);
        if let Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) = &verdict
            && let Ok(name) = certificate_name(end_entity)
            && let Ok(mut slot) = self.revoked.0.lock()
        {
            *slot = Some(name);
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// The coordinator's client configuration: trusts the fleet CA only (and
/// refuses an agent certificate its list revokes, when there is one) and
/// presents the coordinator certificate.
pub(crate) fn coordinator_client_config(
    bundle: &CertBundle,
    options: &TransportOptions,
) -> Result<quinn::ClientConfig, TransportError> {
    let ParsedBundle { chain, key, roots, crls } = parse(bundle)?;
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|error| TransportError::InvalidBundle { part: "CA certificate", reason: error.to_string() })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error("TLS configuration"))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error("private key"))?;
    tls.alpn_protocols = vec![rustle_protocol::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|error| TransportError::InvalidBundle { part: "TLS configuration", reason: error.to_string() })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport_config(options)?);
    Ok(config)
}

/// The name on the peer's verified end-entity certificate: its first DNS
/// SAN, else its common name.
pub(crate) fn peer_certificate_name(connection: &quinn::Connection) -> Result<String, String> {
    certificate_name(&peer_end_entity(connection)?)
}

/// The serial of the peer's verified end-entity certificate, lowercase hex
/// as a [`RevocationList`](crate::RevocationList) lists it.
pub(crate) fn peer_certificate_serial(connection: &quinn::Connection) -> Result<String, String> {
    let end_entity = peer_end_entity(connection)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&end_entity)
        .map_err(|error| format!("its certificate cannot be parsed: {error}"))?;
    Ok(crate::revocation::serial_hex(cert.raw_serial()))
}

fn peer_end_entity(connection: &quinn::Connection) -> Result<CertificateDer<'static>, String> {
    let identity = connection.peer_identity().ok_or("it presented no certificate")?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "its identity is not an X.509 certificate chain".to_owned())?;
    chain.first().cloned().ok_or_else(|| "it presented an empty certificate chain".to_owned())
}

/// The name on a certificate: its first DNS SAN, else its common name.
fn certificate_name(end_entity: &CertificateDer<'_>) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
        .map_err(|error| format!("its certificate cannot be parsed: {error}"))?;
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        let dns = sans.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(name) => Some(*name),
            _ => None,
        });
        if let Some(name) = dns {
            return Ok(name.to_owned());
        }
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| "its certificate carries neither a DNS name nor a common name".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::FleetCa;

    #[test]
    fn configurations_build_from_issued_bundles() {
        let ca = FleetCa::generate().expect("CA");
        let options = TransportOptions::default();
        AgentTls::new(&ca.issue_agent("builder-1", &[]).expect("agent"), &options).expect("server config");
        coordinator_client_config(&ca.issue_coordinator("deploy").expect("coordinator"), &options)
            .expect("client config");
    }

    #[test]
    fn garbage_bundles_name_the_bad_part() {
        let ca = FleetCa::generate().expect("CA");
        let good = ca.issue_agent("builder-1", &[]).expect("agent");
        let options = TransportOptions::default();
        for (bundle, part) in [
            (CertBundle { cert_pem: "nope".into(), ..good.clone() }, "certificate"),
            (CertBundle { key_pem: "nope".into(), ..good.clone() }, "private key"),
            (CertBundle { ca_pem: String::new(), ..good.clone() }, "CA certificate"),
        ] {
            match AgentTls::new(&bundle, &options) {
                Err(TransportError::InvalidBundle { part: found, .. }) => assert_eq!(found, part),
                other => panic!("expected an invalid {part}, got {other:?}"),
            }
        }
    }
}

//! [`TransportError`] and [`Peer`]: every failure names the peer, its address and the way out.
//!
//! quinn reports failures as connection, read and write errors whose meaning
//! depends on which side saw them; [`from_connection_error`] turns them into
//! variants that say who refused what and how to fix it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustle_protocol::{BulkError, BulkKind, CodecError, HandshakeError, JobId, Role};

/// The other end of a connection, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// What the peer is: an agent when we are the coordinator, and the other way round.
    pub role: Role,
    /// Its authenticated name: the agent name dialled, or the name on the
    /// coordinator's certificate. `None` until the TLS handshake succeeded.
    pub name: Option<String>,
    /// Its UDP address.
    pub addr: SocketAddr,
}

impl Peer {
    /// A peer whose name is known.
    pub fn named(role: Role, name: impl Into<String>, addr: SocketAddr) -> Self {
        Self { role, name: Some(name.into()), addr }
    }

    /// A peer not authenticated yet.
    pub fn unnamed(role: Role, addr: SocketAddr) -> Self {
        Self { role, name: None, addr }
    }

    /// Whether this side of the connection is the coordinator.
    fn we_are_coordinator(&self) -> bool {
        self.role == Role::Agent
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.role) {
            (Some(name), role) => write!(f, "{role} {name} at {}", self.addr),
            (None, Role::Agent) => write!(f, "an agent at {}", self.addr),
            (None, Role::Coordinator) => write!(f, "a coordinator at {}", self.addr),
        }
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The certificate bundle could not be turned into a TLS configuration.
    #[error(
        "failed to use the certificate bundle: its {part} is unusable ({reason}); issue a new bundle \
         with `rustle-cross ca issue` from the fleet CA"
    )]
    InvalidBundle {
        /// `"certificate"`, `"private key"` or `"CA certificate"`.
        part: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The revocation list is not the fleet CA's.
    #[error(
        "failed to use the certificate revocation list {}: {reason}; use the `crl.pem` that \
         `rustle-cross ca revoke` wrote in the directory of the CA that issued this side's certificates",
        path.display()
    )]
    InvalidRevocationList {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The UDP socket could not be bound or registered.
    #[error("failed to bind a UDP socket on {addr}: {source}; pick a free port or another address")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        #[source]
        source: io::Error,
    },
    /// quinn refused to start a connection (an unusable name or address).
    #[error("failed to dial agent {agent} at {addr}: {reason}; agent names must be DNS names or IP addresses")]
    Dial {
        /// The agent name.
        agent: String,
        /// The address dialled.
        addr: SocketAddr,
        /// quinn's reason.
        reason: String,
    },
    /// Something went wrong with one peer: the peer, named once, and what
    /// happened ([`PeerFailure`]); the message puts the peer where it reads
    /// naturally.
    #[error("{}", kind.describe(peer))]
    Peer {
        /// Who it was about.
        peer: Peer,
        /// What happened.
        kind: PeerFailure,
    },
    /// A local file could not be read or written.
    #[error("failed to {action} {}: {source}", path.display())]
    File {
        /// e.g. `"write the artifact to"`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: io::Error,
    },
}

/// What went wrong with a peer (see [`TransportError::Peer`]).
#[derive(Debug)]
pub enum PeerFailure {
    /// The peer did not answer in time.
    Timeout {
        /// The bound that expired.
        timeout: Duration,
        /// What we were waiting for, e.g. `"connecting"`.
        during: &'static str,
    },
    /// The peer refused our certificate during the TLS handshake.
    CertificateRejectedByPeer {
        /// What is wrong with our certificate, from the peer's TLS alert.
        why: String,
        /// The peer's TLS alert and reason.
        detail: String,
    },
    /// We refused the peer's certificate during the TLS handshake.
    PeerCertificateRefused {
        /// What is wrong with it.
        why: String,
        /// rustls' reason, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },
    /// The peer refused our certificate because its revocation list names it.
    OurCertificateRevoked {
        /// The peer's TLS alert and reason.
        detail: String,
    },
    /// We refused the peer's certificate because our revocation list names it.
    PeerCertificateRevoked {
        /// The list, when this side knows which file it came from.
        crl: Option<PathBuf>,
        /// rustls' reason, e.g. `invalid peer certificate: Revoked`.
        reason: String,
    },
    /// The coordinator's certificate is from the fleet CA but its name is not allowed here.
    CoordinatorNotAllowed {
        /// The names the agent accepts.
        allowed: Vec<String>,
    },
    /// The agent closed the connection because our name is not on its allow-list.
    NotAllowedByAgent {
        /// The agent's reason.
        reason: String,
    },
    /// The two hellos are incompatible (we read the peer's).
    Handshake {
        /// Both hellos and the advice.
        source: Box<HandshakeError>,
    },
    /// The peer refused the handshake before we could read its hello.
    HandshakeRefusedByPeer {
        /// The peer's reason, which names both versions.
        reason: String,
    },
    /// The peer closed the connection.
    ClosedByPeer {
        /// Its reason, or `"no reason given"`.
        reason: String,
    },
    /// The connection broke (timeout, reset, protocol violation).
    ConnectionLost {
        /// What happened.
        reason: String,
    },
    /// This side had already closed the connection.
    LocallyClosed,
    /// A frame could not be encoded or decoded; the stream is out of step.
    Codec {
        /// The codec's complaint.
        source: CodecError,
    },
    /// The peer broke the stream discipline.
    Protocol {
        /// What it did.
        reason: String,
    },
    /// A received bulk transfer failed its checks; nothing of it was handed over.
    Bulk {
        /// What failed.
        source: Box<BulkError>,
    },
    /// A received bulk transfer was cut off; nothing of it was handed over.
    BulkCutShort {
        /// The [`BulkError::Truncated`] verdict.
        source: Box<BulkError>,
        /// Why the stream ended early.
        cause: String,
    },
    /// A bulk stream ended before its header arrived.
    BulkAbandoned {
        /// How the stream ended.
        cause: String,
    },
    /// The receiver stopped our bulk stream before taking all of it.
    BulkStoppedByPeer {
        /// What was being sent.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// The STOP_SENDING code.
        code: u64,
    },
    /// A bulk transfer we send does not match its own header.
    BulkMismatch {
        /// What was being sent.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// What did not match.
        reason: String,
    },
}

impl PeerFailure {
    /// The whole message, with `peer` where it reads naturally.
    pub fn describe(&self, peer: &Peer) -> String {
        match self {
            Self::Timeout { timeout, during } => format!(
                "{peer} did not answer within {} s while {during}; check that it is running and that UDP \
         port {} is reachable from here",
                timeout.as_secs_f32(),
                peer.addr.port()
            ),
            Self::CertificateRejectedByPeer { why, detail } => {
                format!("{peer} rejected our certificate: {why} ({detail}); {}", rejection_advice(peer))
            }
            Self::PeerCertificateRefused { why, reason } => {
                format!("refused the certificate of {peer}: {why} ({reason}); {}", refusal_advice(peer))
            }
            Self::OurCertificateRevoked { detail } => format!(
                "{peer} rejected our certificate: it is revoked (the fleet CA's revocation list there names \
                 it; {detail}); {}",
                revoked_ours_advice(peer)
            ),
            Self::PeerCertificateRevoked { crl, reason } => {
                let list = crl.as_ref().map_or_else(
                    || "this side's certificate revocation list".to_owned(),
                    |path| format!("the certificate revocation list {}", path.display()),
                );
                format!(
                    "refused the certificate of {peer}: it is revoked ({list} names it; {reason}); {}",
                    revoked_peer_advice(peer)
                )
            }
            Self::CoordinatorNotAllowed { allowed } => format!(
                "refused {peer}: this agent only accepts coordinators named {}; add {} to \
         allowed_coordinators in the agent's config, or use a certificate issued for one of those names",
                allowed.join(", "),
                peer.name.as_deref().unwrap_or("its name")
            ),
            Self::NotAllowedByAgent { reason } => format!(
                "{peer} does not accept this coordinator ({reason}); add this coordinator's name to \
         allowed_coordinators in that agent's config"
            ),
            Self::Handshake { source } => format!("failed the version handshake with {peer}: {source}"),
            Self::HandshakeRefusedByPeer { reason } => format!("{peer} refused the version handshake: {reason}"),
            Self::ClosedByPeer { reason } => format!("{peer} closed the connection: {reason}"),
            Self::ConnectionLost { reason } => {
                format!("lost the connection to {peer}: {reason}; it will have to be dialled again")
            }
            Self::LocallyClosed => format!("the connection to {peer} was already closed by this side"),
            Self::Codec { source } => {
                format!("failed to exchange frames with {peer}: {source}; the connection must be re-established")
            }
            Self::Protocol { reason } => format!("{peer} broke the protocol: {reason}"),
            Self::Bulk { source } => format!("refused the bulk transfer from {peer}: {source}; ask for it again"),
            Self::BulkCutShort { source, cause } => {
                format!("refused the bulk transfer from {peer}: {source} ({cause}); ask for it again")
            }
            Self::BulkAbandoned { cause } => {
                format!("{peer} abandoned a bulk transfer before its header arrived ({cause}); ask for it again")
            }
            Self::BulkStoppedByPeer { kind, job, code } => format!(
                "{peer} stopped the {kind} for job {job} (code {code}); it says why on the control stream, \
         fix that and send it again"
            ),
            Self::BulkMismatch { kind, job, reason } => {
                format!("failed to send the {kind} for job {job} to {peer}: {reason}")
            }
        }
    }
}

impl TransportError {
    /// The peer the error is about, if it is about one.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            Self::Peer { peer, .. } => Some(peer),
            Self::InvalidBundle { .. }
            | Self::InvalidRevocationList { .. }
            | Self::Bind { .. }
            | Self::Dial { .. }
            | Self::File { .. } => None,
        }
    }

    /// Whether the error is about trust (certificates, allow-lists) or
    /// versions, so that dialling again without a change cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::InvalidBundle { .. }
                | Self::InvalidRevocationList { .. }
                | Self::Dial { .. }
                | Self::Peer { kind: PeerFailure::CertificateRejectedByPeer { .. }, .. }
                | Self::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. }
                | Self::Peer { kind: PeerFailure::PeerCertificateRevoked { .. }, .. }
                | Self::Peer { kind: PeerFailure::PeerCertificateRefused { .. }, .. }
                | Self::Peer { kind: PeerFailure::CoordinatorNotAllowed { .. }, .. }
                | Self::Peer { kind: PeerFailure::NotAllowedByAgent { .. }, .. }
                | Self::Peer { kind: PeerFailure::Handshake { .. }, .. }
                | Self::Peer { kind: PeerFailure::HandshakeRefusedByPeer { .. }, .. }
        )
    }
}

/// What kind of failure ended (or prevented) a connection, in the words a
/// status table shows: an agent that answered but refused the TLS handshake
/// is not "unreachable".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionFailure {
    /// The agent refused our (coordinator's) certificate.
    RefusedOurCertificate,
    /// We refused the peer's certificate: it is not from our fleet CA.
    CertificateNotFromFleetCa,
    /// We refused the peer's certificate: it is for another name.
    CertificateForAnotherName,
    /// The peer's revocation list names our certificate.
    OurCertificateRevoked,
    /// We refused the peer's certificate: our revocation list names it.
    CertificateRevoked,
    /// We refused the peer's certificate for another reason (expired, ...).
    CertificateRefused,
    /// The agent's allow-list does not name this coordinator.
    NotAllowed,
    /// The two sides speak incompatible protocol versions.
    VersionMismatch,
    /// Nothing answered: no route, no process, DNS, or a timeout.
    Unreachable,
    /// It was connected and the connection ended.
    Disconnected,
    /// Anything else.
    Failed,
}

impl ConnectionFailure {
    /// The label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::RefusedOurCertificate => "refused our certificate",
            Self::CertificateNotFromFleetCa => "certificate not from the fleet CA",
            Self::CertificateForAnotherName => "certificate for another name",
            Self::OurCertificateRevoked => "our certificate revoked",
            Self::CertificateRevoked => "certificate revoked",
            Self::CertificateRefused => "certificate refused",
            Self::NotAllowed => "coordinator not allowed",
            Self::VersionMismatch => "version mismatch",
            Self::Unreachable => "unreachable",
            Self::Disconnected => "disconnected",
            Self::Failed => "failed",
        }
    }

    /// The kind of failure a [`TransportError`]'s message (possibly with
    /// context around it) describes, for callers that kept only the text,
    /// such as the fleet's registry of agents.
    pub fn of_message(message: &str) -> Self {
        let has = |needle: &str| message.contains(needle);
        if has(" rejected our certificate: it is revoked") {
            Self::OurCertificateRevoked
        } else if has(" rejected our certificate: ") {
            Self::RefusedOurCertificate
        } else if has("refused the certificate of ") {
            if has(": it is revoked (") {
                Self::CertificateRevoked
            } else if has("not signed by the fleet CA") {
                Self::CertificateNotFromFleetCa
            } else if has("does not carry the name that was dialled") {
                Self::CertificateForAnotherName
            } else {
                Self::CertificateRefused
            }
        } else if has("does not accept this coordinator") || has("only accepts coordinators named") {
            Self::NotAllowed
        } else if has("version handshake") {
            Self::VersionMismatch
        } else if has(" did not answer within ")
            || has("no packets arrived within the idle timeout")
            || has("failed to bind a UDP socket")
        {
            Self::Unreachable
        } else if has(" closed the connection")
            || has("lost the connection to ")
            || has("ended the control stream")
            || has("was already closed by this side")
        {
            Self::Disconnected
        } else {
            Self::Failed
        }
    }
}

impl TransportError {
    /// The kind of failure this is (see [`ConnectionFailure`]).
    pub fn connection_failure(&self) -> ConnectionFailure {
        let refused = |why: &str| {
            if why.contains("not signed by the fleet CA") {
                ConnectionFailure::CertificateNotFromFleetCa
            } else if why.contains("does not carry the name") {
                ConnectionFailure::CertificateForAnotherName
            } else {
                ConnectionFailure::CertificateRefused
            }
        };
        match self {
            Self::Peer { kind: PeerFailure::CertificateRejectedByPeer { .. }, .. } => {
                ConnectionFailure::RefusedOurCertificate
            }
            Self::Peer { kind: PeerFailure::PeerCertificateRefused { why, .. }, .. } => refused(why),
            Self::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. } => {
                ConnectionFailure::OurCertificateRevoked
            }
            Self::Peer { kind: PeerFailure::PeerCertificateRevoked { .. }, .. } => {
                ConnectionFailure::CertificateRevoked
            }
            Self::Peer { kind: PeerFailure::CoordinatorNotAllowed { .. }, .. }
            | Self::Peer { kind: PeerFailure::NotAllowedByAgent { .. }, .. } => ConnectionFailure::NotAllowed,
            Self::Peer { kind: PeerFailure::Handshake { .. }, .. }
            | Self::Peer { kind: PeerFailure::HandshakeRefusedByPeer { .. }, .. } => ConnectionFailure::VersionMismatch,
            Self::Peer { kind: PeerFailure::Timeout { .. }, .. } | Self::Bind { .. } => ConnectionFailure::Unreachable,
            Self::Peer { kind: PeerFailure::ConnectionLost { reason, .. }, .. }
                if reason.starts_with("no packets arrived") =>
            {
                ConnectionFailure::Unreachable
            }
            Self::Peer { kind: PeerFailure::ClosedByPeer { .. }, .. }
            | Self::Peer { kind: PeerFailure::ConnectionLost { .. }, .. }
            | Self::Peer { kind: PeerFailure::LocallyClosed, .. } => ConnectionFailure::Disconnected,
            _ => ConnectionFailure::Failed,
        }
    }
}

fn rejection_advice(peer: &Peer) -> String {
    if peer.we_are_coordinator() {
        "issue one with `rustle-cross ca issue --coordinator NAME` from the same CA as the agent's certificate"
            .to_owned()
    } else {
        "make sure the coordinator dials this agent by a name on its certificate, or issue the agent a \
         certificate for that name with `rustle-cross ca issue --agent NAME [--san HOST]` from the \
         coordinator's fleet CA"
            .to_owned()
    }
}

fn revoked_ours_advice(peer: &Peer) -> String {
    if peer.we_are_coordinator() {
        "a revoked certificate is never accepted again: if this coordinator should build on the fleet, issue it \
         a new one with `rustle-cross ca issue --coordinator NAME` and point fleet.cert and fleet.key at it"
            .to_owned()
    } else {
        "a revoked certificate is never accepted again: if this agent should build for the fleet, issue it a \
         new one with `rustle-cross ca issue --agent NAME` and point cert and key in its config at it"
            .to_owned()
    }
}

fn revoked_peer_advice(peer: &Peer) -> String {
    match (&peer.name, peer.we_are_coordinator()) {
        (Some(name), true) => format!(
            "if agent {name} should build again, issue it a new certificate with `rustle-cross ca issue --agent \
             {name}` and install it there; otherwise remove it from the fleet's agents"
        ),
        (None, true) => "if that agent should build again, issue it a new certificate with `rustle-cross ca issue \
                         --agent NAME` and install it there"
            .to_owned(),
        (_, false) => "if that coordinator should build here again, issue it a new certificate with \
                       `rustle-cross ca issue --coordinator NAME`"
            .to_owned(),
    }
}

/// Names the revocation list in a refusal of a revoked peer, when this side
/// knows which file it came from.
pub(crate) fn naming_the_crl(error: TransportError, crl: Option<&std::path::Path>) -> TransportError {
    match (error, crl) {
        (
            TransportError::Peer { peer, kind: PeerFailure::PeerCertificateRevoked { crl: None, reason } },
            Some(path),
        ) => TransportError::Peer {
            peer,
            kind: PeerFailure::PeerCertificateRevoked { crl: Some(path.to_owned()), reason },
        },
        (error, _) => error,
    }
}

fn refusal_advice(peer: &Peer) -> String {
    match (&peer.name, peer.we_are_coordinator()) {
        (Some(name), true) => format!(
            "issue the agent a certificate from this fleet's CA with `rustle-cross ca issue --agent {name}` \
             and install it there, or dial the agent by the name on its certificate"
        ),
        (None, true) => "issue the agent a certificate from this fleet's CA with `rustle-cross ca issue --agent \
                         NAME`"
            .to_owned(),
        (_, false) => "coordinators need a client certificate from this agent's fleet CA; issue one with \
                       `rustle-cross ca issue --coordinator NAME` from that CA"
            .to_owned(),
    }
}

/// What a TLS alert about a certificate means, in words: `refusing_side`
/// sent the alert about the certificate of `certificate_side`.
fn certificate_problem(alert: u8, reason: &str, refusing_side: Role, certificate_side: Role) -> String {
    match alert {
        48 | 51 => format!("it is not signed by the fleet CA the {refusing_side} trusts"),
        116 => format!("the {certificate_side} presented no certificate"),
        45 => "it has expired or is not valid yet (check both clocks)".to_owned(),
        42 if reason.contains("not valid for name") => "it does not carry the name that was dialled".to_owned(),
        43 => match certificate_side {
            Role::Agent => "it is not a server certificate".to_owned(),
            Role::Coordinator => "it is not a client certificate".to_owned(),
        },
        44 => "it has been revoked".to_owned(),
        _ => "it is not acceptable".to_owned(),
    }
}

/// Application close codes on our connections.
pub(crate) mod close_code {
    /// A normal close; the reason says why.
    pub const NORMAL: u32 = 0;
    /// The version handshake failed; the reason is the [`HandshakeError`](rustle_protocol::HandshakeError) message.
    pub const HANDSHAKE: u32 = 1;
    /// The coordinator's name is not on the agent's allow-list.
    pub const NOT_ALLOWED: u32 = 2;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 3;
    /// The agent reloaded its revocation list and it names the coordinator's
    /// certificate: an open connection closes as a new handshake would fail.
    pub const REVOKED: u32 = 4;
}

/// Stream codes for STOP_SENDING and RESET_STREAM.
pub(crate) mod stream_code {
    /// The receiver refused a bulk stream (size, name, checksum).
    pub const BULK_REFUSED: u32 = 1;
    /// The sender gave up on a bulk stream.
    pub const BULK_ABORTED: u32 = 2;
}

/// The TLS alert (RFC 8446 §6) rustls sends for a certificate its revocation list names.
const CERTIFICATE_REVOKED: u8 = 44;

/// TLS alert numbers (RFC 8446 §6) that mean "your certificate is not acceptable".
fn certificate_alert_name(alert: u8) -> Option<&'static str> {
    Some(match alert {
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        48 => "unknown_ca",
        49 => "access_denied",
        51 => "decrypt_error",
        116 => "certificate_required",
        _ => return None,
    })
}

fn lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).trim().to_owned();
    if text.is_empty() { "no reason given".to_owned() } else { text }
}

/// Turns a quinn connection error seen while talking to `peer` into a [`TransportError`].
pub(crate) fn from_connection_error(peer: &Peer, error: quinn::ConnectionError) -> TransportError {
    use quinn::ConnectionError as E;
    let peer = peer.clone();
    match error {
        E::ApplicationClosed(close) => {
            let reason = lossy(&close.reason);
            match u32::try_from(close.error_code.into_inner()) {
                Ok(close_code::HANDSHAKE) => {
                    TransportError::Peer { peer, kind: PeerFailure::HandshakeRefusedByPeer { reason } }
                }
                Ok(close_code::NOT_ALLOWED) => {
                    TransportError::Peer { peer, kind: PeerFailure::NotAllowedByAgent { reason } }
                }
                Ok(close_code::REVOKED) => {
                    TransportError::Peer { peer, kind: PeerFailure::OurCertificateRevoked { detail: reason } }
                }
                _ => TransportError::Peer { peer, kind: PeerFailure::ClosedByPeer { reason } },
            }
        }
        E::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            let alert = (0x100..0x200).contains(&code).then_some((code & 0xff) as u8);
            match alert.and_then(|alert| Some((alert, certificate_alert_name(alert)?))) {
                Some((CERTIFICATE_REVOKED, name)) => {
                    let reason = lossy(&close.reason);
                    let detail = match reason.as_str() {
                        "no reason given" => format!("TLS alert {name}"),
                        _ => format!("TLS alert {name}: {reason}"),
                    };
                    TransportError::Peer { peer, kind: PeerFailure::OurCertificateRevoked { detail } }
                }
                Some((alert, name)) => {
                    let reason = lossy(&close.reason);
                    let our_role = if peer.we_are_coordinator() { Role::Coordinator } else { Role::Agent };
                    let why = certificate_problem(alert, &reason, peer.role, our_role);
                    let detail = match reason.as_str() {
                        "no reason given" => format!("TLS alert {name}"),
                        _ => format!("TLS alert {name}: {reason}"),
                    };
                    TransportError::Peer { peer, kind: PeerFailure::CertificateRejectedByPeer { why, detail } }
                }
                None => TransportError::Peer {
                    peer,
                    kind: PeerFailure::ConnectionLost { reason: format!("the peer aborted it: {close}") },
                },
            }
        }
        E::TransportError(error) => {
            let code = u64::from(error.code);
            if code == 0x100 + u64::from(CERTIFICATE_REVOKED) {
                TransportError::Peer {
                    peer,
                    kind: PeerFailure::PeerCertificateRevoked { crl: None, reason: error.reason },
                }
            } else if (0x100..0x200).contains(&code) {
                let our_role = if peer.we_are_coordinator() { Role::Coordinator } else { Role::Agent };
                let why = certificate_problem((code & 0xff) as u8, &error.reason, our_role, peer.role);
                TransportError::Peer { peer, kind: PeerFailure::PeerCertificateRefused { why, reason: error.reason } }
            } else {
                TransportError::Peer { peer, kind: PeerFailure::ConnectionLost { reason: error.to_string() } }
            }
        }
        E::TimedOut => TransportError::Peer {
            peer,
            kind: PeerFailure::ConnectionLost {
                reason: "no packets arrived within the idle timeout (the host or network is down, or the \
                     process was killed)"
                    .to_owned(),
            },
        },
        E::LocallyClosed => TransportError::Peer { peer, kind: PeerFailure::LocallyClosed },
        error @ (E::VersionMismatch | E::Reset | E::CidsExhausted) => {
            TransportError::Peer { peer, kind: PeerFailure::ConnectionLost { reason: error.to_string() } }
        }
    }
}

/// Turns a stream write error into a [`TransportError`]; `Stopped` is left to the caller.
pub(crate) fn from_write_error(peer: &Peer, error: quinn::WriteError, what: &str) -> TransportError {
    match error {
        quinn::WriteError::ConnectionLost(error) => from_connection_error(peer, error),
        quinn::WriteError::Stopped(code) => TransportError::Peer {
            peer: peer.clone(),
            kind: PeerFailure::Protocol { reason: format!("it stopped the {what} (code {code})") },
        },
        quinn::WriteError::ClosedStream | quinn::WriteError::ZeroRttRejected => TransportError::Peer {
            peer: peer.clone(),
            kind: PeerFailure::Protocol { reason: format!("the {what} is closed: {error}") },
        },
    }
}

/// Turns a stream read error into a [`TransportError`].
pub(crate) fn from_read_error(peer: &Peer, error: quinn::ReadError, what: &str) -> TransportError {
    match error {
        quinn::ReadError::ConnectionLost(error) => from_connection_error(peer, error),
        quinn::ReadError::Reset(code) => TransportError::Peer {
            peer: peer.clone(),
            kind: PeerFailure::Protocol { reason: format!("it reset the {what} (code {code})") },
        },
        error @ (quinn::ReadError::ClosedStream
        | quinn::ReadError::IllegalOrderedRead
        | quinn::ReadError::ZeroRttRejected) => TransportError::Peer {
            peer: peer.clone(),
            kind: PeerFailure::Protocol { reason: format!("reading the {what} failed: {error}") },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4433))
    }

    #[test]
    fn peers_display_with_and_without_names() {
        assert_eq!(Peer::named(Role::Agent, "builder-1", addr()).to_string(), "agent builder-1 at 127.0.0.1:4433");
        assert_eq!(Peer::unnamed(Role::Coordinator, addr()).to_string(), "a coordinator at 127.0.0.1:4433");
    }

    #[test]
    fn coordinator_told_how_to_fix_a_rejected_certificate() {
        let error = TransportError::Peer {
            peer: Peer::named(Role::Agent, "builder-1", addr()),
            kind: PeerFailure::CertificateRejectedByPeer {
                why: certificate_problem(48, "", Role::Agent, Role::Coordinator),
                detail: "TLS alert unknown_ca".into(),
            },
        };
        let message = error.to_string();
        assert!(
            message.starts_with(
                "agent builder-1 at 127.0.0.1:4433 rejected our certificate: it is not signed by the fleet CA \
                 the agent trusts (TLS alert unknown_ca); issue one with `rustle-cross ca issue --coordinator NAME`"
            ),
            "{message}"
        );
        assert!(message.contains("`rustle-cross ca issue --coordinator NAME`"), "{message}");
        assert!(error.is_permanent());
    }

    #[test]
    fn failure_kinds_survive_being_turned_into_text() {
        let agent = || Peer::named(Role::Agent, "builder-1", addr());
        let errors = [
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::CertificateRejectedByPeer {
                    why: certificate_problem(48, "", Role::Agent, Role::Coordinator),
                    detail: "TLS alert unknown_ca".into(),
                },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::PeerCertificateRefused {
                    why: certificate_problem(48, "", Role::Coordinator, Role::Agent),
                    reason: "invalid peer certificate: UnknownIssuer".into(),
                },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::PeerCertificateRefused {
                    why: certificate_problem(42, "certificate not valid for name", Role::Coordinator, Role::Agent),
                    reason: "invalid peer certificate: certificate not valid for name".into(),
                },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::PeerCertificateRefused {
                    why: certificate_problem(45, "", Role::Coordinator, Role::Agent),
                    reason: "invalid peer certificate: Expired".into(),
                },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::NotAllowedByAgent { reason: "not on the list".into() },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::HandshakeRefusedByPeer { reason: "protocol 1 vs 2".into() },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::Timeout { timeout: Duration::from_secs(5), during: "connecting" },
            },
            TransportError::Peer { peer: agent(), kind: PeerFailure::ClosedByPeer { reason: "shutting down".into() } },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::OurCertificateRevoked { detail: "TLS alert certificate_revoked".into() },
            },
            TransportError::Peer {
                peer: agent(),
                kind: PeerFailure::PeerCertificateRevoked {
                    crl: Some(PathBuf::from("/etc/rustle/crl.pem")),
                    reason: "invalid peer certificate: Revoked".into(),
                },
            },
        ];
        let expected = [
            ConnectionFailure::RefusedOurCertificate,
            ConnectionFailure::CertificateNotFromFleetCa,
            ConnectionFailure::CertificateForAnotherName,
            ConnectionFailure::CertificateRefused,
            ConnectionFailure::NotAllowed,
            ConnectionFailure::VersionMismatch,
            ConnectionFailure::Unreachable,
            ConnectionFailure::Disconnected,
            ConnectionFailure::OurCertificateRevoked,
            ConnectionFailure::CertificateRevoked,
        ];
        for (error, kind) in errors.iter().zip(expected) {
            assert_eq!(error.connection_failure(), kind, "{error}");
            // With context around it, as the fleet keeps it.
            let text = format!("agent builder-1: {error}");
            assert_eq!(ConnectionFailure::of_message(&text), kind, "{text}");
        }
        assert_eq!(ConnectionFailure::of_message("something else"), ConnectionFailure::Failed);
        assert_eq!(ConnectionFailure::RefusedOurCertificate.label(), "refused our certificate");
    }

    #[test]
    fn application_close_codes_map_to_their_variants() {
        let peer = Peer::named(Role::Agent, "builder-1", addr());
        let close = |code: u32| {
            quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
                error_code: quinn::VarInt::from_u32(code),
                reason: b"because".to_vec().into(),
            })
        };
        assert!(matches!(
            from_connection_error(&peer, close(close_code::HANDSHAKE)),
            TransportError::Peer { kind: PeerFailure::HandshakeRefusedByPeer { .. }, .. }
        ));
        assert!(matches!(
            from_connection_error(&peer, close(close_code::NOT_ALLOWED)),
            TransportError::Peer { kind: PeerFailure::NotAllowedByAgent { .. }, .. }
        ));
        assert!(matches!(
            from_connection_error(&peer, close(close_code::REVOKED)),
            TransportError::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. }
        ));
        assert_eq!(
            from_connection_error(&peer, close(close_code::NORMAL)).to_string(),
            "agent builder-1 at 127.0.0.1:4433 closed the connection: because"
        );
    }
}

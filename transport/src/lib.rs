//! QUIC between coordinator and agents: fleet CA, mutual TLS, framed control streams, checked bulk streams.
//!
//! **Architecture invariant:** this is the only crate that depends on quinn,
//! rustls or rcgen. Everything above it sees [`Connection`],
//! [`ControlStream`] and the bulk stream types, and the wire types of
//! `rustle-protocol`.
//!
//! **Architecture invariant:** there is no insecure mode. Every connection
//! is TLS 1.3 with mutual authentication against the fleet CA
//! ([`FleetCa`]): an agent accepts only coordinator certificates from its CA
//! (optionally only some names, [`AllowedCoordinators`]); a coordinator
//! accepts only an agent certificate from its CA carrying the name it
//! dialled. rustls runs on the ring provider, passed explicitly, so no
//! process-wide provider is installed. A side given the fleet CA's
//! revocation list ([`RevocationList`], written by [`FleetCa::revoke`])
//! refuses a peer whose certificate it lists, and the peer hears that it
//! was revoked ([`PeerFailure::PeerCertificateRevoked`],
//! [`PeerFailure::OurCertificateRevoked`]). An agent's list can be replaced
//! while it listens ([`RevocationReloader`]): later handshakes are checked
//! against the new one and a newly revoked coordinator's open connection closes.
//!
//! # A connection
//!
//! 1. The agent listens ([`AgentListener`]); the coordinator dials it by
//!    address and agent name ([`CoordinatorDialer::connect`]).
//! 2. The coordinator opens the control stream ([`Connection::open_control`]),
//!    the agent accepts it ([`Connection::accept_control`]); both send a
//!    [`Hello`](rustle_protocol::Hello) first and check the peer's. On a
//!    mismatch both return [`PeerFailure::Handshake`], naming both versions,
//!    and the connection is closed with the reason.
//! 3. Frames then flow both ways on the control stream; each source bundle
//!    or artifact travels on its own unidirectional stream
//!    ([`Connection::open_bulk`], [`Connection::accept_bulk`]) and is handed
//!    over only once its length and checksum are verified.
//!
//! Entry points take injected resources: a bound [`std::net::UdpSocket`]
//! ([`AgentListener::from_socket`], [`CoordinatorDialer::from_socket`]) or an
//! address with port 0 in tests. All of them must run inside a tokio runtime.

mod bulk;
pub mod ca;
mod connection;
mod control;
mod endpoint;
mod error;
mod listener_trust;
mod plain_udp;
pub mod revocation;
mod tls;

use std::time::Duration;

pub use bulk::{BulkIncoming, BulkSender};
pub use ca::{CaError, CertBundle, CertFiles, FleetCa, Reuse};
pub use connection::Connection;
pub use control::{ControlReceiver, ControlSender, ControlStream};
pub use endpoint::{AgentListener, AllowedCoordinators, CoordinatorDialer, IncomingConnection};
pub use error::{ConnectionFailure, Peer, PeerFailure, TransportError};
pub use listener_trust::{RevocationReload, RevocationReloader};
pub use revocation::{Revocation, RevocationList};

/// Timeouts of a listener or dialer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// How long [`CoordinatorDialer::connect`] waits for the TLS handshake.
    pub connect_timeout: Duration,
    /// How long the agent waits for a TLS handshake, and either side for the
    /// control stream, the peer's hello or a bulk stream's header.
    pub handshake_timeout: Duration,
    /// How often an idle connection sends a keep-alive.
    pub keep_alive_interval: Duration,
    /// How long a connection survives without hearing from the peer.
    pub idle_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

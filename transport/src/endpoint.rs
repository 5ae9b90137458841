//! The two ends: [`AgentListener`] accepts and authenticates coordinators, [`CoordinatorDialer`] dials agents by address and name.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustle_protocol::Role;

use crate::TransportOptions;
use crate::ca::CertBundle;
use crate::connection::Connection;
use crate::error::{Peer, PeerFailure, TransportError, close_code, from_connection_error, naming_the_crl};
use crate::listener_trust::{ListenerTrust, RevocationReloader};
use crate::{plain_udp, tls};

/// How long [`AgentListener::shutdown`] waits for peers to acknowledge the close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The UDP socket buffers asked for (see [`enlarge_buffers`]).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Which coordinators an agent accepts, beyond requiring a certificate from its fleet CA.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedCoordinators {
    /// Any coordinator whose certificate the fleet CA issued.
    #[default]
    AnyFromFleetCa,
    /// Only these names (compared case-insensitively, as DNS names are).
    Named(Vec<String>),
}

impl AllowedCoordinators {
    /// Whether a coordinator with this certificate name may connect.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Self::AnyFromFleetCa => true,
            Self::Named(names) => names.iter().any(|allowed| allowed.eq_ignore_ascii_case(name)),
        }
    }
}

fn endpoint_on(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> Result<(quinn::Endpoint, SocketAddr), TransportError> {
    let requested = socket.local_addr().unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let bind_error = |source| TransportError::Bind { addr: requested, source };
    enlarge_buffers(&socket);
    let socket = plain_udp::quic_socket(socket).map_err(bind_error)?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_error)?;
    let local_addr = endpoint.local_addr().map_err(bind_error)?;
    Ok((endpoint, local_addr))
}

/// Asks for socket buffers that hold a burst of a bulk transfer (the OS
/// caps them, on Linux at `net.core.rmem_max` / `wmem_max`): with the
/// default (about 200 KiB on Linux) a receiver that is not scheduled for a
/// millisecond drops datagrams, and every drop halves the sender's
/// congestion window. Best effort: smaller buffers are slower, not wrong.
fn enlarge_buffers(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
}

fn bind_socket(addr: SocketAddr) -> Result<UdpSocket, TransportError> {
    UdpSocket::bind(addr).map_err(|source| TransportError::Bind { addr, source })
}

/// How many handshakes may be in progress before a connection attempt from
/// an address QUIC has not validated is answered with a Retry (a stateless
/// token the client must echo) instead of a handshake: a flood of half-open
/// handshakes then costs the agent no state and no signatures, while a real
/// coordinator, which answers the Retry, is served as before.
pub(crate) const HANDSHAKES_BEFORE_RETRY: usize = 16;

/// An agent's listening endpoint. Each accepted connection is authenticated
/// with [`IncomingConnection::authenticate`], which can run in its own task.
#[derive(Debug)]
pub struct AgentListener {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    allowed: Arc<AllowedCoordinators>,
    options: TransportOptions,
    trust: Arc<ListenerTrust>,
    handshakes: Arc<AtomicUsize>,
}

/// One handshake in progress, counted in its listener until dropped.
#[derive(Debug)]
struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AgentListener {
    /// Binds `addr` (port 0 picks a free port) with default options;
    /// returns the listener and the address it is bound to.
    pub fn bind(
        addr: SocketAddr,
        bundle: &CertBundle,
        allowed: AllowedCoordinators,
    ) -> Result<(Self, SocketAddr), TransportError> {
        Self::from_socket(bind_socket(addr)?, bundle, allowed, TransportOptions::default())
    }

    /// Listens on an already bound socket.
    pub fn from_socket(
        socket: UdpSocket,
        bundle: &CertBundle,
        allowed: AllowedCoordinators,
        options: TransportOptions,
    ) -> Result<(Self, SocketAddr), TransportError> {
        let trust = Arc::new(ListenerTrust::new(bundle, &options)?);
        let (endpoint, local_addr) = endpoint_on(socket, Some(trust.current().tls.default_config()?))?;
        let handshakes = Arc::new(AtomicUsize::new(0));
        Ok((Self { endpoint, local_addr, allowed: Arc::new(allowed), options, trust, handshakes }, local_addr))
    }

    /// A handle that replaces this listener's revocation list while it
    /// listens (an operator shipped a new `crl.pem`), without a restart.
    pub fn revocation_reloader(&self) -> RevocationReloader {
        RevocationReloader { trust: self.trust.clone(), endpoint: self.endpoint.clone() }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next connection attempt, or `None` once the listener is shut down.
    /// While [`HANDSHAKES_BEFORE_RETRY`] handshakes are in progress, an
    /// attempt from an address not yet validated is answered with a Retry
    /// here and never returned.
    pub async fn accept(&self) -> Option<IncomingConnection> {
        loop {
            let incoming = self.endpoint.accept().await?;
            if self.handshakes.load(Ordering::Relaxed) >= HANDSHAKES_BEFORE_RETRY
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                // Err only when a Retry is impossible, which may_retry excludes.
                let _ = incoming.retry();
                continue;
            }
            self.handshakes.fetch_add(1, Ordering::Relaxed);
            return Some(IncomingConnection {
                incoming,
                allowed: self.allowed.clone(),
                options: self.options.clone(),
                trust: self.trust.clone(),
                _slot: HandshakeSlot(self.handshakes.clone()),
            });
        }
    }

    /// Waits up to `bound` for the peers to close their connections (a
    /// coordinator closes once it has every result it was waiting for), so
    /// that what is still in flight to them (a last report) arrives before
    /// [`shutdown`](Self::shutdown) closes from this side. True when they all did.
    pub async fn wait_for_peers_to_close(&self, bound: Duration) -> bool {
        tokio::time::timeout(bound, self.endpoint.wait_idle()).await.is_ok()
    }

    /// Closes every connection with `reason`, stops accepting, and waits
    /// (briefly) for peers to hear about it.
    pub async fn shutdown(&self, reason: &str) {
        self.endpoint.close(quinn::VarInt::from_u32(close_code::NORMAL), reason.as_bytes());
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// A connection attempt an [`AgentListener`] received, not yet authenticated.
#[derive(Debug)]
pub struct IncomingConnection {
    incoming: quinn::Incoming,
    allowed: Arc<AllowedCoordinators>,
    options: TransportOptions,
    trust: Arc<ListenerTrust>,
    /// Counts this handshake until `authenticate` ends (or this is dropped).
    _slot: HandshakeSlot,
}

impl IncomingConnection {
    /// Where it comes from.
    pub fn remote_address(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Completes the TLS handshake (the coordinator's certificate must chain
    /// to the fleet CA, and not be revoked by its list when the agent has
    /// one) and checks its name against the allow-list. A
    /// coordinator that is not allowed is told why before the connection closes.
    pub async fn authenticate(self) -> Result<Connection, TransportError> {
        let addr = self.incoming.remote_address();
        let unnamed = Peer::unnamed(Role::Coordinator, addr);
        let timeout = self.options.handshake_timeout;
        let trust = self.trust.current();
        let crl = trust.crl_path();
        // With a revocation list, this connection gets a verifier that
        // remembers whom it refused as revoked, so the refusal names them.
        let (connecting, revoked) = match trust.tls.naming_revoked()? {
            Some((config, revoked)) => match self.incoming.accept_with(Arc::new(config)) {
                Ok(connecting) => (connecting, Some(revoked)),
                Err(error) => return Err(from_connection_error(&unnamed, error)),
            },
            None => match self.incoming.accept() {
                Ok(connecting) => (connecting, None),
                Err(error) => return Err(from_connection_error(&unnamed, error)),
            },
        };
        let connection = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                let peer = match revoked.as_ref().and_then(tls::RevokedName::take) {
                    Some(name) => Peer::named(Role::Coordinator, name, addr),
                    None => unnamed,
                };
                return Err(naming_the_crl(from_connection_error(&peer, error), crl));
            }
            Err(_) => {
                return Err(TransportError::Peer {
                    peer: unnamed,
                    kind: PeerFailure::Timeout { timeout, during: "the TLS handshake" },
                });
            }
        };
        let name = match tls::peer_certificate_name(&connection) {
            Ok(name) => name,
            Err(reason) => {
                connection.close(quinn::VarInt::from_u32(close_code::PROTOCOL), reason.as_bytes());
                return Err(TransportError::Peer {
                    peer: unnamed,
                    kind: PeerFailure::PeerCertificateRefused { why: "its name cannot be read".into(), reason },
                });
            }
        };
        let peer = Peer::named(Role::Coordinator, name.clone(), addr);
        if let AllowedCoordinators::Named(allowed) = self.allowed.as_ref()
            && !self.allowed.allows(&name)
        {
            let reason = format!("coordinator {name} is not on this agent's list of allowed coordinators");
            connection.close(quinn::VarInt::from_u32(close_code::NOT_ALLOWED), reason.as_bytes());
            return Err(TransportError::Peer {
                peer,
                kind: PeerFailure::CoordinatorNotAllowed { allowed: allowed.clone() },
            });
        }
        self.trust.admit(&connection, &name);
        Ok(Connection::new(connection, peer, self.options))
    }
}

/// A coordinator's endpoint for dialling agents.
#[derive(Debug)]
pub struct CoordinatorDialer {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    client: quinn::ClientConfig,
    options: TransportOptions,
    crl: Option<PathBuf>,
}

impl CoordinatorDialer {
    /// A dialer on an ephemeral port (IPv6 dual-stack where available, else IPv4) with default options.
    pub fn new(bundle: &CertBundle) -> Result<Self, TransportError> {
        let socket = bind_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
            .or_else(|_| bind_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))?;
        Self::from_socket(socket, bundle, TransportOptions::default())
    }

    /// A dialer on an already bound socket.
    pub fn from_socket(
        socket: UdpSocket,
        bundle: &CertBundle,
        options: TransportOptions,
    ) -> Result<Self, TransportError> {
        let client = tls::coordinator_client_config(bundle, &options)?;
        let (endpoint, local_addr) = endpoint_on(socket, None)?;
        let crl = bundle.crl.as_ref().map(|crl| crl.path().to_owned());
        Ok(Self { endpoint, local_addr, client, options, crl })
    }

    /// The local address connections leave from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Dials the agent `agent_name` at `addr`. Its certificate must chain to
    /// the fleet CA, carry `agent_name` and not be revoked by the fleet CA's
    /// list when this dialer has one. An agent that refuses our
    /// certificate or name may only say so on the first stream operation, so
    /// such errors can also come from [`Connection::open_control`].
    pub async fn connect(&self, addr: SocketAddr, agent_name: &str) -> Result<Connection, TransportError> {
        let peer = Peer::named(Role::Agent, agent_name, addr);
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, agent_name)
            .map_err(|error| TransportError::Dial { agent: agent_name.to_owned(), addr, reason: error.to_string() })?;
        let timeout = self.options.connect_timeout;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => Ok(Connection::new(connection, peer, self.options.clone())),
            Ok(Err(error)) => Err(naming_the_crl(from_connection_error(&peer, error), self.crl.as_deref())),
            Err(_) => Err(TransportError::Peer { peer, kind: PeerFailure::Timeout { timeout, during: "connecting" } }),
        }
    }

    /// Closes every connection with `reason` and waits (briefly) for agents to hear about it.
    pub async fn shutdown(&self, reason: &str) {
        self.endpoint.close(quinn::VarInt::from_u32(close_code::NORMAL), reason.as_bytes());
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle()).await;
    }
}

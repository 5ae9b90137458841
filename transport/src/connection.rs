//! [`Connection`]: an authenticated QUIC connection to one peer, the source of its control and bulk streams.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rustle_protocol::{BulkHeader, Hello, MAX_BULK_LEN};

use crate::TransportOptions;
use crate::bulk::{self, BulkIncoming, BulkSender};
use crate::control::{self, ControlStream};
use crate::error::{Peer, PeerFailure, TransportError, close_code, from_connection_error};

/// An authenticated connection: the TLS handshake succeeded and the peer's
/// certificate name is known. Cheap to clone; clones share the connection.
///
/// Getters: [`peer`](Self::peer), [`peer_name`](Self::peer_name),
/// [`remote_address`](Self::remote_address). Streams:
/// [`open_control`](Self::open_control) / [`accept_control`](Self::accept_control)
/// (once per connection), [`open_bulk`](Self::open_bulk) /
/// [`accept_bulk`](Self::accept_bulk) (once per transfer). Ending:
/// [`close`](Self::close), [`closed`](Self::closed).
#[derive(Debug, Clone)]
pub struct Connection {
    inner: quinn::Connection,
    peer: Peer,
    peer_name: String,
    options: TransportOptions,
}

impl Connection {
    pub(crate) fn new(inner: quinn::Connection, peer: Peer, options: TransportOptions) -> Self {
        let peer_name = peer.name.clone().unwrap_or_default();
        Self { inner, peer, peer_name, options }
    }

    /// The peer, for error messages and logs.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The peer's authenticated name: the agent name dialled, or the name on the coordinator's certificate.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Coordinator side: opens the control stream and runs the version
    /// handshake, sending `ours` and checking the agent's hello.
    pub async fn open_control(&self, ours: Hello) -> Result<ControlStream, TransportError> {
        self.bounded("exchanging hellos", async {
            let (send, recv) = self.inner.open_bi().await.map_err(|error| from_connection_error(&self.peer, error))?;
            control::handshake(self, send, recv, ours).await
        })
        .await
    }

    /// Agent side: accepts the control stream the coordinator opens and runs
    /// the version handshake, sending `ours` and checking the coordinator's hello.
    pub async fn accept_control(&self, ours: Hello) -> Result<ControlStream, TransportError> {
        self.bounded("waiting for the control stream and its hello", async {
            let (send, recv) =
                self.inner.accept_bi().await.map_err(|error| from_connection_error(&self.peer, error))?;
            control::handshake(self, send, recv, ours).await
        })
        .await
    }

    /// Opens a bulk stream and sends `header`; write exactly
    /// `header.total_len` bytes to the returned sender, then finish it.
    pub async fn open_bulk(&self, header: BulkHeader) -> Result<BulkSender, TransportError> {
        bulk::open(self, header).await
    }

    /// Waits for the peer's next bulk stream and reads its header; bodies
    /// over [`MAX_BULK_LEN`] are refused.
    pub async fn accept_bulk(&self) -> Result<BulkIncoming, TransportError> {
        self.accept_bulk_with_limit(MAX_BULK_LEN).await
    }

    /// Like [`accept_bulk`](Self::accept_bulk), refusing bodies over `max_len` bytes.
    pub async fn accept_bulk_with_limit(&self, max_len: u64) -> Result<BulkIncoming, TransportError> {
        bulk::accept(self, max_len).await
    }

    /// Closes the connection at once, telling the peer `reason`. Data not yet
    /// acknowledged is dropped: finish streams first when it matters.
    pub fn close(&self, reason: &str) {
        self.inner.close(quinn::VarInt::from_u32(close_code::NORMAL), reason.as_bytes());
    }

    /// Waits until the connection ends, and says why.
    pub async fn closed(&self) -> TransportError {
        from_connection_error(&self.peer, self.inner.closed().await)
    }

    pub(crate) fn quinn(&self) -> &quinn::Connection {
        &self.inner
    }

    pub(crate) fn close_with(&self, code: u32, reason: &str) {
        self.inner.close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.options.handshake_timeout
    }

    /// Runs `work`, failing with [`TransportError::Peer { kind: PeerFailure::Timeout, .. }`] after the handshake timeout.
    pub(crate) async fn bounded<T>(
        &self,
        during: &'static str,
        work: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        let timeout = self.options.handshake_timeout;
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
            Err(TransportError::Peer { peer: self.peer.clone(), kind: PeerFailure::Timeout { timeout, during } })
        })
    }
}

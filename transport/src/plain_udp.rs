//! QUIC over plain UDP datagrams, for where quinn-udp cannot set up its
//! socket: [`quic_socket`] gives quinn-udp's socket (ECN, packet info,
//! segmentation offload) wherever the OS takes its options, and on Windows
//! falls back to [`PlainUdpSocket`] when the OS refuses them.
//!
//! Wine's Winsock (Wine 8) refuses two of them, so no QUIC endpoint could
//! start under Wine: `getsockopt(IPV6_V6ONLY)`, which quinn-udp asks of
//! every socket, fails on an IPv4 socket with `WSAEOPNOTSUPP` (10045), and
//! `IP_RECVECN` / `IPV6_RECVECN` are unknown options (`WSAENOPROTOOPT`,
//! 10042). Without them a connection works as well, one datagram per send,
//! with no ECN marks (QUIC then simply does without ECN).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The socket a QUIC endpoint runs on: quinn-udp's, or (Windows, options
/// refused) plain datagrams, which it says with a warning.
pub(crate) fn quic_socket(socket: UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    #[cfg(windows)]
    if let Err(error) = quinn::udp::UdpSocketState::new((&socket).into())
        && option_refused(&error)
    {
        tracing::warn!(
            "the OS refuses quinn-udp's UDP socket options ({error}); sending plain datagrams \
             (no ECN, packet info or segmentation offload)"
        );
        return Ok(Arc::new(PlainUdpSocket::new(socket)?));
    }
    quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)
}

/// Whether `error` says the OS does not support a socket option (rather
/// than that the socket is unusable).
#[cfg(windows)]
fn option_refused(error: &io::Error) -> bool {
    /// `WSAENOPROTOOPT`: an unknown option.
    const WSAENOPROTOOPT: i32 = 10042;
    /// `WSAEOPNOTSUPP`: an option the socket does not support.
    const WSAEOPNOTSUPP: i32 = 10045;
    matches!(error.raw_os_error(), Some(WSAENOPROTOOPT | WSAEOPNOTSUPP)) || error.kind() == io::ErrorKind::Unsupported
}

/// A UDP socket sending and receiving one plain datagram at a time: no ECN,
/// no packet info, no segmentation offload, no socket options at all.
#[derive(Debug)]
#[cfg_attr(not(windows), allow(dead_code, reason = "chosen on Windows only; tested everywhere"))]
pub(crate) struct PlainUdpSocket {
    io: tokio::net::UdpSocket,
}

#[cfg_attr(not(windows), allow(dead_code, reason = "chosen on Windows only; tested everywhere"))]
impl PlainUdpSocket {
    /// Takes over a bound socket (inside a Tokio runtime).
    pub(crate) fn new(socket: UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self { io: tokio::net::UdpSocket::from_std(socket)? })
    }
}

impl AsyncUdpSocket for PlainUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // One datagram per transmit (`max_transmit_segments` is 1). As with
        // quinn-udp, a datagram that cannot be sent is lost, not an error:
        // QUIC sends it again. Only "not now" goes back to quinn.
        match self.io.try_send_to(transmit.contents, transmit.destination) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Err(error),
            Ok(_) | Err(_) => Ok(()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(meta)) = (bufs.first_mut(), meta.first_mut()) else { return Poll::Ready(Ok(0)) };
        let mut read = tokio::io::ReadBuf::new(buf);
        let addr = ready!(self.io.poll_recv_from(cx, &mut read))?;
        let len = read.filled().len();
        *meta = RecvMeta { addr, len, stride: len, ecn: None, dst_ip: None };
        Poll::Ready(Ok(1))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        // No don't-fragment option is set.
        true
    }
}

/// Ready when the socket can send again.
#[derive(Debug)]
struct Writable(Arc<PlainUdpSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.io.poll_send_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FleetCa, TransportOptions, tls};

    fn plain_endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = Arc::new(PlainUdpSocket::new(socket).unwrap());
        quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .unwrap()
    }

    /// The handshake (mutual TLS) and a stream of many datagrams each way,
    /// over plain datagrams on both ends: what an agent under Wine runs on.
    #[tokio::test]
    async fn quic_runs_over_plain_datagrams() {
        let ca = FleetCa::generate().unwrap();
        let agent = ca.issue_agent("builder-1", &[]).unwrap();
        let coordinator = ca.issue_coordinator("deploy-1").unwrap();
        let options = TransportOptions::default();
        let server = plain_endpoint(Some(tls::AgentTls::new(&agent, &options).unwrap().default_config().unwrap()));
        let client = plain_endpoint(None);
        let addr = server.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let connection = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            let data = recv.read_to_end(1 << 20).await.unwrap();
            send.write_all(&data).await.unwrap();
            send.finish().unwrap();
            connection.closed().await;
        });
        let config = tls::coordinator_client_config(&coordinator, &options).unwrap();
        let connection = client.connect_with(config, addr, "builder-1").unwrap().await.unwrap();
        assert_eq!(tls::peer_certificate_name(&connection).unwrap(), "builder-1");
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        send.write_all(&payload).await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(1 << 20).await.unwrap(), payload);
        connection.close(0u32.into(), b"done");
        echo.await.unwrap();
    }
}

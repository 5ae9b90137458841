//! A flood of half-open QUIC handshakes (real Initials from quinn-proto, never continued) cannot keep a real coordinator out: once 16 handshakes are in progress, the listener answers unvalidated attempts with a Retry, which costs it no state, and a real coordinator, which answers the Retry, still connects.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{AGENT, bounded, dial, fleet, listen};
use rustle_transport::AllowedCoordinators;

const FLOOD: usize = 200;

/// Sends `count` Initial packets, each a new connection's ClientHello, to
/// `addr` and never continues them; returns how many Retry packets came back.
fn half_open(addr: SocketAddr, count: usize) -> usize {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let tls =
        quinn::rustls::ClientConfig::builder_with_provider(Arc::new(quinn::rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&quinn::rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(quinn::rustls::RootCertStore::empty())
            .with_no_client_auth();
    let mut tls = tls;
    tls.alpn_protocols = vec![rustle_protocol::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let client = quinn_proto::ClientConfig::new(Arc::new(quic));
    let mut endpoint = quinn_proto::Endpoint::new(Arc::new(quinn_proto::EndpointConfig::default()), None, false, None);
    let mut buf = Vec::with_capacity(1500);
    for _ in 0..count {
        let now = Instant::now();
        let (_, mut connection) = endpoint.connect(now, client.clone(), addr, AGENT).expect("connect");
        buf.clear();
        let transmit = connection.poll_transmit(now, 1, &mut buf).expect("an Initial");
        socket.send_to(&buf[..transmit.size], addr).expect("send");
    }
    // QUIC v1 long header, type Retry: 0b11xx_xxxx with type bits 11.
    socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut retries = 0;
    let mut packet = [0u8; 2048];
    while let Ok(len) = socket.recv(&mut packet) {
        if len > 0 && packet[0] & 0xf0 == 0xf0 {
            retries += 1;
        }
    }
    retries
}

#[tokio::test]
async fn half_open_handshakes_are_retried_and_a_coordinator_still_connects() {
    bounded(Duration::from_secs(60), async {
        let fleet = fleet();
        let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::AnyFromFleetCa);
        // The agent's way: every attempt authenticated in a task of its own.
        let (tx, mut authenticated) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(incoming) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.authenticate().await {
                        let _ = tx.send(connection);
                    }
                });
            }
        });
        let retries = tokio::task::spawn_blocking(move || half_open(addr, FLOOD)).await.expect("flood");
        eprintln!("{retries} of {FLOOD} half-open handshakes were answered with a Retry");
        assert!(retries >= FLOOD / 2, "only {retries} of {FLOOD} half-open handshakes got a Retry");

        let started = Instant::now();
        let _connection = dial(&fleet.coordinator, addr, AGENT).await.expect("a real coordinator gets through");
        assert!(started.elapsed() < Duration::from_secs(5), "connecting took {:?}", started.elapsed());
        authenticated.recv().await.expect("the agent authenticated the coordinator");
    })
    .await;
}

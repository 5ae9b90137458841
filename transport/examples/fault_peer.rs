//! A deliberately bad QUIC peer for `scripts/faults.sh`: dials an agent without a client certificate, or floods it with garbage datagrams and half-open QUIC handshakes, bounded in count and time.
//!
//! ```text
//! fault_peer dial-without-certificate CA_PEM ADDR NAME
//!     exit 0 and print `refused: ...` when the agent refuses the connection
//!     (at the handshake or at the first read, whichever says it); exit 1
//!     when it was accepted.
//! fault_peer flood ADDR GARBAGE HANDSHAKES SECONDS
//!     send up to GARBAGE random datagrams and up to HANDSHAKES QUIC Initial
//!     packets (each a new connection's real ClientHello, from quinn-proto;
//!     the handshake is never continued), spread over at most SECONDS, then
//!     print `sent G garbage datagrams and H half-open handshakes in T s`.
//! ```
//!
//! Everything goes to the address given (loopback or a test namespace).

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::rustls;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["dial-without-certificate", ca, addr, name] => dial_without_certificate(ca, addr, name),
        ["flood", addr, garbage, handshakes, seconds] => flood(addr, garbage, handshakes, seconds),
        _ => Err("usage: fault_peer dial-without-certificate CA_PEM ADDR NAME | flood ADDR GARBAGE HANDSHAKES SECONDS"
            .to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fault_peer: {error}");
            ExitCode::from(2)
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 client config trusting the PEM CA at `ca`, offering no certificate.
fn client_tls(ca: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(ca).map_err(|e| format!("reading {ca}: {e}"))?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.map_err(|e| format!("{ca}: {e}"))?).map_err(|e| format!("{ca}: {e}"))?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![rustle_protocol::ALPN.to_vec()];
    Ok(tls)
}

fn dial_without_certificate(ca: &str, addr: &str, name: &str) -> Result<ExitCode, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(Some(ca))?).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let mut endpoint = quinn::Endpoint::client(local_for(addr)).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let attempt = async {
            let connection =
                endpoint.connect(addr, name).map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
            // With TLS 1.3 the server's verdict on our (absent) certificate
            // can arrive after the client considers the handshake done.
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(b"hello?").await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            recv.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Err(reason)) => {
                println!("refused: {reason}");
                Ok(ExitCode::SUCCESS)
            }
            Ok(Ok(())) => {
                println!("ACCEPTED without a client certificate");
                Ok(ExitCode::from(1))
            }
            Err(_) => {
                println!("no verdict within 10 s (neither refused nor served)");
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// The local address to send to `remote` from: any port, loopback for loopback.
fn local_for(remote: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if remote.ip().is_loopback() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

/// xorshift64*: garbage needs no cryptographic randomness.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|e| format!("{text}: {e}"))
}

fn flood(addr: &str, garbage: &str, handshakes: &str, seconds: &str) -> Result<ExitCode, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let (garbage, handshakes, seconds) = (number(garbage)?, number(handshakes)?, number(seconds)?);
    let socket = UdpSocket::bind(local_for(addr)).map_err(|e| e.to_string())?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(None)?).map_err(|e| e.to_string())?;
    let client = quinn_proto::ClientConfig::new(Arc::new(quic));
    let new_endpoint =
        || quinn_proto::Endpoint::new(Arc::new(quinn_proto::EndpointConfig::default()), None, false, None);
    let mut endpoint = new_endpoint();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut rng = Garbage(seed | 1);
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let total = garbage + handshakes;
    let (mut sent_garbage, mut sent_handshakes, mut send_errors) = (0u64, 0u64, 0u64);
    let mut datagram = vec![0u8; 1500];
    let mut transmit = Vec::with_capacity(1500);
    while sent_garbage + sent_handshakes < total && start.elapsed() < limit {
        // Spread the datagrams evenly over the time allowed.
        let due = limit.mul_f64((sent_garbage + sent_handshakes) as f64 / total as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        // Interleave the two kinds in proportion.
        let garbage_turn = sent_handshakes >= handshakes
            || (sent_garbage < garbage && sent_garbage * handshakes <= sent_handshakes * garbage);
        let sent = if garbage_turn {
            let len = 1 + (rng.next() % 1400) as usize;
            rng.fill(&mut datagram[..len]);
            // Half of them look like QUIC long-header packets, so they get
            // past the first byte's check.
            if rng.next().is_multiple_of(2) {
                datagram[0] |= 0xc0;
            }
            sent_garbage += 1;
            socket.send_to(&datagram[..len], addr)
        } else {
            sent_handshakes += 1;
            if sent_handshakes.is_multiple_of(256) {
                endpoint = new_endpoint();
            }
            let now = Instant::now();
            let (_, mut connection) =
                endpoint.connect(now, client.clone(), addr, "rustle-agent").map_err(|e| e.to_string())?;
            transmit.clear();
            let Some(packet) = connection.poll_transmit(now, 1, &mut transmit) else {
                return Err("quinn-proto produced no Initial packet".into());
            };
            socket.send_to(&transmit[..packet.size], addr)
        };
        if sent.is_err() {
            send_errors += 1;
        }
    }
    println!(
        "sent {sent_garbage} garbage datagrams and {sent_handshakes} half-open handshakes in {:.1} s ({send_errors} send errors)",
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

//! Who may connect: mutual TLS against the fleet CA, agent names, the coordinator allow-list and the version handshake, each refusal checked on both sides.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{AGENT, COORDINATOR, accept_one, agent_hello, bounded, coordinator_hello, dial, fleet, listen};
use rustle_protocol::{Hello, PROTOCOL_VERSION, Role};
use rustle_transport::{AllowedCoordinators, CertBundle, FleetCa, PeerFailure, TransportError};

const LIMIT: Duration = Duration::from_secs(30);

/// A coordinator whose certificate comes from another CA (but which trusts
/// the agent's CA) is refused by the agent, and told why.
#[tokio::test]
async fn coordinator_certificate_from_another_ca_is_refused_on_both_sides() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let stranger = FleetCa::generate().expect("another CA").issue_coordinator(COORDINATOR).expect("issued");
        let bundle = CertBundle { ca_pem: fleet.ca.cert_pem().to_owned(), ..stranger };
        let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::AnyFromFleetCa);
        let agent = accept_one(listener);

        // The coordinator's handshake completes before the agent has checked
        // its certificate, so the refusal surfaces at connect or at the first read.
        let coordinator = match dial(&bundle, addr, AGENT).await {
            Ok(connection) => connection.open_control(coordinator_hello()).await.map(drop),
            Err(error) => Err(error),
        };
        let error = coordinator.expect_err("the agent refuses a foreign certificate");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::CertificateRejectedByPeer { .. }, .. }),
            "{error:?}"
        );
        assert!(message.starts_with(&format!("agent {AGENT} at {addr} rejected our certificate")), "{message}");
        assert!(message.contains("not signed by the fleet CA the agent trusts"), "{message}");
        assert!(message.contains("`rustle-cross ca issue --coordinator NAME`"), "{message}");
        assert!(error.is_permanent());

        let (_listener, agent) = agent.await.expect("agent task");
        let error = agent.expect_err("the agent refused it");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::PeerCertificateRefused { .. }, .. }),
            "{error:?}"
        );
        assert!(message.starts_with("refused the certificate of a coordinator at 127.0.0.1:"), "{message}");
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(message.contains("`rustle-cross ca issue --coordinator NAME`"), "{message}");
    })
    .await;
}

/// A client that presents no certificate at all (built here with plain
/// quinn and rustls: the crate offers no way to do it) is refused.
#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::AnyFromFleetCa);
        let agent = accept_one(listener);

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(fleet.ca.cert_pem().as_bytes()).expect("CA PEM"))
            .expect("CA certificate");
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![rustle_protocol::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC-capable");
        let endpoint =
            quinn::Endpoint::client(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("client endpoint");
        let connecting =
            endpoint.connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, AGENT).expect("a valid name");
        let client: Result<(), String> = async {
            let connection = connecting.await.map_err(chain)?;
            let (mut send, mut recv) = connection.open_bi().await.map_err(chain)?;
            send.write_all(b"anyone there?").await.map_err(chain)?;
            let mut buf = [0; 16];
            recv.read(&mut buf).await.map_err(chain)?;
            Ok(())
        }
        .await;
        let client_error = client.expect_err("the agent refuses an anonymous client");
        eprintln!("{client_error}");
        assert!(
            client_error.contains("error 116"),
            "the client should see TLS alert certificate_required: {client_error}"
        );

        let (_listener, agent) = agent.await.expect("agent task");
        let error = agent.expect_err("the agent refused it");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::PeerCertificateRefused { .. }, .. }),
            "{error:?}"
        );
        assert!(message.contains("peer sent no certificates"), "{message}");
        assert!(message.contains("coordinators need a client certificate from this agent's fleet CA"), "{message}");
    })
    .await;
}

/// An error and its sources, joined.
fn chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An agent whose certificate names another agent is refused by the
/// coordinator, and the agent hears that its certificate was refused.
#[tokio::test]
async fn agent_certificate_for_another_name_is_refused() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let impostor = fleet.ca.issue_agent("builder-2", &[]).expect("issued");
        let (listener, addr) = listen(&impostor, AllowedCoordinators::AnyFromFleetCa);
        let agent = accept_one(listener);

        let error = dial(&fleet.coordinator, addr, AGENT).await.expect_err("the name does not match");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::PeerCertificateRefused { .. }, .. }),
            "{error:?}"
        );
        assert!(message.starts_with(&format!("refused the certificate of agent {AGENT} at {addr}")), "{message}");
        assert!(message.contains("not valid for name"), "{message}");
        assert!(message.contains(&format!("`rustle-cross ca issue --agent {AGENT}`")), "{message}");

        let (_listener, agent) = agent.await.expect("agent task");
        let error = agent.expect_err("the coordinator refused us");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::CertificateRejectedByPeer { .. }, .. }),
            "{error:?}"
        );
        assert!(message.contains("bad_certificate"), "{message}");
        assert!(message.contains("`rustle-cross ca issue --agent"), "{message}");
    })
    .await;
}

/// A coordinator from the fleet CA but not on the agent's allow-list is
/// refused, and both sides name the coordinator.
#[tokio::test]
async fn coordinator_not_on_the_allow_list_is_refused() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let allowed = AllowedCoordinators::Named(vec!["deploy-main".into()]);
        let (listener, addr) = listen(&fleet.agent, allowed);
        let agent = accept_one(listener);

        let coordinator = match dial(&fleet.coordinator, addr, AGENT).await {
            Ok(connection) => connection.open_control(coordinator_hello()).await.map(drop),
            Err(error) => Err(error),
        };
        let error = coordinator.expect_err("not allowed");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(matches!(error, TransportError::Peer { kind: PeerFailure::NotAllowedByAgent { .. }, .. }), "{error:?}");
        assert!(message.contains(&format!("coordinator {COORDINATOR} is not on this agent's list")), "{message}");
        assert!(message.contains("allowed_coordinators"), "{message}");

        let (_listener, agent) = agent.await.expect("agent task");
        let error = agent.expect_err("refused");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::CoordinatorNotAllowed { .. }, .. }),
            "{error:?}"
        );
        assert!(message.starts_with(&format!("refused coordinator {COORDINATOR} at 127.0.0.1:")), "{message}");
        assert!(message.contains("only accepts coordinators named deploy-main"), "{message}");
    })
    .await;
}

/// The allow-list admits the names on it.
#[tokio::test]
async fn coordinator_on_the_allow_list_is_admitted() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let allowed = AllowedCoordinators::Named(vec!["Deploy-1".into(), "deploy-main".into()]);
        let (listener, addr) = listen(&fleet.agent, allowed);
        let agent = accept_one(listener);
        let connection = dial(&fleet.coordinator, addr, AGENT).await.expect("admitted");
        assert_eq!(connection.peer_name(), AGENT);
        let (_listener, agent) = agent.await.expect("agent task");
        assert_eq!(agent.expect("admitted").peer_name(), COORDINATOR);
    })
    .await;
}

/// A coordinator speaking a newer protocol: both sides fail the handshake
/// with an error naming both versions and who should upgrade.
#[tokio::test]
async fn protocol_version_mismatch_is_reported_on_both_sides() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::AnyFromFleetCa);
        let agent = tokio::spawn(async move {
            let connection = listener.accept().await.expect("open").authenticate().await.expect("authenticated");
            let result = connection.accept_control(agent_hello()).await.map(drop);
            (listener, result)
        });

        let newer =
            Hello { protocol_version: PROTOCOL_VERSION + 1, software_version: "9.9.9".into(), role: Role::Coordinator };
        let connection = dial(&fleet.coordinator, addr, AGENT).await.expect("TLS is fine");
        let error = connection.open_control(newer).await.expect_err("versions differ");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(matches!(error, TransportError::Peer { kind: PeerFailure::Handshake { .. }, .. }), "{error:?}");
        assert!(
            message.starts_with(&format!("failed the version handshake with agent {AGENT} at {addr}")),
            "{message}"
        );
        let (ours, newer_version) = (PROTOCOL_VERSION, PROTOCOL_VERSION + 1);
        assert!(message.contains(&format!("the agent runs 0.1.0 (protocol {ours})")), "{message}");
        assert!(message.contains(&format!("this coordinator runs 9.9.9 (protocol {newer_version})")), "{message}");
        assert!(message.contains("upgrade the agent to 9.9.9"), "{message}");

        let (_listener, agent) = agent.await.expect("agent task");
        let error = agent.expect_err("versions differ");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(matches!(error, TransportError::Peer { kind: PeerFailure::Handshake { .. }, .. }), "{error:?}");
        assert!(message.contains(&format!("with coordinator {COORDINATOR} at 127.0.0.1:")), "{message}");
        assert!(
            message.contains(&format!(
                "the coordinator runs 9.9.9 (protocol {newer_version}) and this agent runs 0.1.0 (protocol {ours})"
            )),
            "{message}"
        );
        assert!(message.contains("upgrade this agent to 9.9.9"), "{message}");

        // The connection ends with the reason, readable by the peer.
        let closed = connection.closed().await;
        assert!(
            matches!(
                closed,
                TransportError::Peer { kind: PeerFailure::HandshakeRefusedByPeer { .. }, .. }
                    | TransportError::Peer { kind: PeerFailure::LocallyClosed, .. }
            ),
            "{closed:?}"
        );
    })
    .await;
}

/// Agents dialled by IP address need that IP on their certificate.
#[tokio::test]
async fn agents_can_be_dialled_by_an_ip_san() {
    bounded(LIMIT, async {
        let fleet = fleet();
        let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::AnyFromFleetCa);
        let agent = accept_one(listener);
        let connection = dial(&fleet.coordinator, addr, "127.0.0.1").await.expect("the IP is on the certificate");
        assert_eq!(connection.peer_name(), "127.0.0.1");
        let (_listener, agent) = agent.await.expect("agent task");
        agent.expect("admitted");
    })
    .await;
}

//! Revocation over real QUIC handshakes: a revoked agent and a revoked coordinator are each refused, both sides say it was revoked (the refusing side naming the CRL), the agent keeps serving coordinators that are not revoked, and a list reloaded while the agent listens takes effect at once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{AGENT, COORDINATOR, bounded, coordinator_hello, dial, listen};
use rustle_protocol::{Hello, Role};
use rustle_transport::revocation::record_issued;
use rustle_transport::{
    AgentListener, AllowedCoordinators, CertBundle, ConnectionFailure, FleetCa, PeerFailure, RevocationList,
    RevocationReload, TransportError,
};

const LIMIT: Duration = Duration::from_secs(30);

/// A fleet CA in a directory, with the agent [`AGENT`] and the coordinators
/// [`COORDINATOR`] and `deploy-2` issued and recorded, as `rustle-cross ca
/// issue` does.
struct RevokingFleet {
    dir: tempfile::TempDir,
    ca: FleetCa,
    agent: CertBundle,
    coordinator: CertBundle,
    other_coordinator: CertBundle,
}

impl RevokingFleet {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::init(dir.path()).expect("CA");
        let agent = ca.issue_agent(AGENT, &["127.0.0.1".into()]).expect("agent");
        record_issued(dir.path(), Role::Agent, AGENT, &agent).expect("recorded");
        let coordinator = ca.issue_coordinator(COORDINATOR).expect("coordinator");
        record_issued(dir.path(), Role::Coordinator, COORDINATOR, &coordinator).expect("recorded");
        let other_coordinator = ca.issue_coordinator("deploy-2").expect("coordinator");
        record_issued(dir.path(), Role::Coordinator, "deploy-2", &other_coordinator).expect("recorded");
        Self { dir, ca, agent, coordinator, other_coordinator }
    }

    /// Revokes `name` and returns the CRL as both sides load it.
    fn revoke(&self, name: &str) -> RevocationList {
        let revocation = self.ca.revoke(self.dir.path(), name, None).expect("revoked");
        assert_eq!(revocation.revoked.len(), 1, "{revocation:?}");
        RevocationList::load(&revocation.crl).expect("CRL")
    }
}

fn crl_path(crl: &RevocationList) -> String {
    crl.path().display().to_string()
}

/// The coordinator, checking the fleet's CRL, refuses a revoked agent and
/// says so naming the agent and the CRL; the agent hears it was revoked.
#[tokio::test]
async fn a_revoked_agent_is_refused_by_the_coordinator_and_told_why() {
    bounded(LIMIT, async {
        let fleet = RevokingFleet::new();
        let crl = fleet.revoke(AGENT);
        let (listener, addr) = listen(&fleet.agent.clone().with_crl(crl.clone()), AllowedCoordinators::AnyFromFleetCa);
        let agent = common::accept_one(listener);

        let error = dial(&fleet.coordinator.clone().with_crl(crl.clone()), addr, AGENT)
            .await
            .expect_err("the agent is revoked");
        let message = error.to_string();
        eprintln!("coordinator: {message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::PeerCertificateRevoked { .. }, .. }),
            "{error:?}"
        );
        assert!(
            message.starts_with(&format!(
                "refused the certificate of agent {AGENT} at {addr}: it is revoked (the certificate revocation \
                 list {} names it",
                crl_path(&crl)
            )),
            "{message}"
        );
        assert!(message.contains(&format!("`rustle-cross ca issue --agent {AGENT}`")), "{message}");
        assert!(error.is_permanent());
        assert_eq!(error.connection_failure(), ConnectionFailure::CertificateRevoked);
        assert_eq!(ConnectionFailure::of_message(&message), ConnectionFailure::CertificateRevoked);

        let (_listener, agent) = agent.await.expect("agent task");
        let error = agent.expect_err("the coordinator refused us");
        let message = error.to_string();
        eprintln!("agent: {message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. }),
            "{error:?}"
        );
        assert!(message.starts_with("a coordinator at 127.0.0.1:"), "{message}");
        assert!(message.contains("rejected our certificate: it is revoked"), "{message}");
        assert!(message.contains("certificate_revoked"), "{message}");
        assert!(message.contains("`rustle-cross ca issue --agent NAME`"), "{message}");
    })
    .await;
}

/// The agent, checking the fleet's CRL, refuses a revoked coordinator, which
/// hears it was revoked; the same listener then serves a coordinator that is
/// not revoked.
#[tokio::test]
async fn a_revoked_coordinator_is_refused_by_the_agent_which_keeps_serving_others() {
    bounded(LIMIT, async {
        let fleet = RevokingFleet::new();
        let crl = fleet.revoke(COORDINATOR);
        let (listener, addr) = listen(&fleet.agent.clone().with_crl(crl.clone()), AllowedCoordinators::AnyFromFleetCa);
        let agent = tokio::spawn(async move {
            let refused = listener.accept().await.expect("open").authenticate().await;
            let served = match listener.accept().await.expect("open").authenticate().await {
                Ok(connection) => {
                    let hello = rustle_protocol::Hello::new(Role::Agent, "0.1.0");
                    // Kept open (returned) so the coordinator can read the hello.
                    connection.accept_control(hello).await.map(|control| (connection, control))
                }
                Err(error) => Err(error),
            };
            (listener, refused, served)
        });

        let revoked = match dial(&fleet.coordinator.clone().with_crl(crl.clone()), addr, AGENT).await {
            Ok(connection) => connection.open_control(coordinator_hello()).await.map(drop),
            Err(error) => Err(error),
        };
        let error = revoked.expect_err("this coordinator is revoked");
        let message = error.to_string();
        eprintln!("revoked coordinator: {message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. }),
            "{error:?}"
        );
        assert!(
            message.starts_with(&format!("agent {AGENT} at {addr} rejected our certificate: it is revoked")),
            "{message}"
        );
        assert!(message.contains("`rustle-cross ca issue --coordinator NAME`"), "{message}");
        assert!(error.is_permanent());
        assert_eq!(error.connection_failure(), ConnectionFailure::OurCertificateRevoked);
        assert_eq!(ConnectionFailure::of_message(&message), ConnectionFailure::OurCertificateRevoked);

        let other = dial(&fleet.other_coordinator.clone().with_crl(crl.clone()), addr, AGENT)
            .await
            .expect("a coordinator that is not revoked connects");
        let _control = other.open_control(coordinator_hello()).await.expect("the agent serves deploy-2");

        let (_listener, refused, served) = agent.await.expect("agent task");
        let error = refused.expect_err("the agent refused the revoked coordinator");
        let message = error.to_string();
        eprintln!("agent: {message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::PeerCertificateRevoked { .. }, .. }),
            "{error:?}"
        );
        assert!(
            message.starts_with(&format!(
                "refused the certificate of coordinator {COORDINATOR} at 127.0.0.1:{}: it is revoked (the \
                 certificate revocation list {} names it",
                error.peer().expect("a peer").addr.port(),
                crl_path(&crl)
            )),
            "{message}"
        );
        assert!(message.contains("`rustle-cross ca issue --coordinator NAME`"), "{message}");
        let (served, _control) = served.expect("the agent serves deploy-2");
        assert_eq!(served.peer_name(), "deploy-2");
    })
    .await;
}

/// A CRL another CA signed would refuse every peer; it is refused when the
/// listener or dialer is made, naming the file.
#[tokio::test]
async fn a_revocation_list_from_another_ca_is_refused_at_start() {
    let fleet = RevokingFleet::new();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = FleetCa::init(other_dir.path()).expect("another CA");
    let stranger = other.issue_agent("stranger", &[]).expect("issued");
    record_issued(other_dir.path(), Role::Agent, "stranger", &stranger).expect("recorded");
    let revocation = other.revoke(other_dir.path(), "stranger", None).expect("revoked");
    let foreign = RevocationList::load(&revocation.crl).expect("CRL");
    let error = AgentListener::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        &fleet.agent.clone().with_crl(foreign.clone()),
        AllowedCoordinators::AnyFromFleetCa,
    )
    .expect_err("foreign CRL");
    let message = error.to_string();
    assert!(matches!(error, TransportError::InvalidRevocationList { .. }), "{error:?}");
    assert!(message.contains(&foreign.path().display().to_string()), "{message}");
    assert!(message.contains("not by this side's fleet CA"), "{message}");
    let error = rustle_transport::CoordinatorDialer::new(&fleet.coordinator.clone().with_crl(foreign))
        .expect_err("foreign CRL");
    assert!(matches!(error, TransportError::InvalidRevocationList { .. }), "{error:?}");
    assert!(Path::new(&revocation.crl).exists());
}

/// Accepts connection attempts until the listener closes, serving each
/// authenticated coordinator's control stream, and sends every outcome
/// (the peer's name, or the refusal) back.
fn serve_all(
    listener: AgentListener,
) -> (tokio::sync::mpsc::UnboundedReceiver<Result<String, TransportError>>, tokio::task::JoinHandle<AgentListener>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(Some(incoming)) = tokio::time::timeout(LIMIT, listener.accept()).await {
            let outcome = match incoming.authenticate().await {
                Ok(connection) => match connection.accept_control(Hello::new(Role::Agent, "0.1.0")).await {
                    Ok(control) => {
                        let name = connection.peer_name().to_owned();
                        held.push((connection, control));
                        Ok(name)
                    }
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            if tx.send(outcome).is_err() {
                break;
            }
        }
        listener
    });
    (rx, task)
}

/// An agent started without any revocation list is given one while it
/// listens: the coordinator it revokes loses its open connection and hears
/// it was revoked, its next handshake is refused naming the list, and
/// another coordinator is still served, all without a restart.
#[tokio::test]
async fn a_reloaded_list_closes_a_revoked_coordinators_connection_and_refuses_its_next() {
    bounded(LIMIT, async {
        let fleet = RevokingFleet::new();
        let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::AnyFromFleetCa);
        let reloader = listener.revocation_reloader();
        let (mut outcomes, _agent) = serve_all(listener);

        let before = dial(&fleet.coordinator, addr, AGENT).await.expect("not revoked yet");
        let _control = before.open_control(coordinator_hello()).await.expect("served before the reload");
        assert_eq!(outcomes.recv().await.expect("outcome").expect("served"), COORDINATOR);

        let crl = fleet.revoke(COORDINATOR);
        let reload = reloader.reload(crl.clone()).expect("reloaded");
        assert_eq!(reload, RevocationReload { revoked: 1, closed: vec![COORDINATOR.to_owned()] });

        let error = before.closed().await;
        let message = error.to_string();
        eprintln!("open connection: {message}");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. }),
            "{error:?}"
        );
        assert!(message.contains("reloaded revocation list names coordinator"), "{message}");
        assert!(message.contains("`rustle-cross ca issue --coordinator NAME`"), "{message}");

        let again = match dial(&fleet.coordinator, addr, AGENT).await {
            Ok(connection) => connection.open_control(coordinator_hello()).await.map(drop),
            Err(error) => Err(error),
        };
        let error = again.expect_err("revoked now");
        assert!(
            matches!(error, TransportError::Peer { kind: PeerFailure::OurCertificateRevoked { .. }, .. }),
            "{error:?}"
        );
        let refused = outcomes.recv().await.expect("outcome").expect_err("the agent refused it");
        let message = refused.to_string();
        assert!(
            matches!(refused, TransportError::Peer { kind: PeerFailure::PeerCertificateRevoked { .. }, .. }),
            "{refused:?}"
        );
        assert!(message.contains(&crl_path(&crl)), "the refusal names the reloaded list: {message}");

        let other = dial(&fleet.other_coordinator, addr, AGENT).await.expect("deploy-2 is not revoked");
        let _other_control = other.open_control(coordinator_hello()).await.expect("served after the reload");
        assert_eq!(outcomes.recv().await.expect("outcome").expect("served"), "deploy-2");
    })
    .await;
}

/// A list another CA signed is refused by a reload, and the list in force
/// stays: the coordinator it revokes is still refused, others served.
#[tokio::test]
async fn a_reload_with_a_foreign_list_keeps_the_list_in_force() {
    bounded(LIMIT, async {
        let fleet = RevokingFleet::new();
        let crl = fleet.revoke(COORDINATOR);
        let (listener, addr) = listen(&fleet.agent.clone().with_crl(crl), AllowedCoordinators::AnyFromFleetCa);
        let reloader = listener.revocation_reloader();
        let (mut outcomes, _agent) = serve_all(listener);

        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = FleetCa::init(other_dir.path()).expect("another CA");
        let stranger = other.issue_coordinator("stranger").expect("issued");
        record_issued(other_dir.path(), Role::Coordinator, "stranger", &stranger).expect("recorded");
        let foreign =
            RevocationList::load(&other.revoke(other_dir.path(), "stranger", None).expect("revoked").crl).expect("CRL");
        let error = reloader.reload(foreign).expect_err("a foreign list");
        assert!(matches!(error, TransportError::InvalidRevocationList { .. }), "{error:?}");

        let revoked = match dial(&fleet.coordinator, addr, AGENT).await {
            Ok(connection) => connection.open_control(coordinator_hello()).await.map(drop),
            Err(error) => Err(error),
        };
        assert!(revoked.is_err(), "the list in force still revokes {COORDINATOR}");
        assert!(outcomes.recv().await.expect("outcome").is_err());
        let other = dial(&fleet.other_coordinator, addr, AGENT).await.expect("deploy-2 connects");
        let _control = other.open_control(coordinator_hello()).await.expect("served");
        assert_eq!(outcomes.recv().await.expect("outcome").expect("served"), "deploy-2");
    })
    .await;
}

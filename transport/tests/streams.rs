//! Control and bulk streams over an authenticated connection: frames both ways, a 50 MiB verified transfer, and transfers that are cut off or corrupt (down to one byte in 20 MiB).

mod common;

use std::time::{Duration, Instant};

use common::{AGENT, COORDINATOR, agent_hello, body, bounded, coordinator_hello, dial, fleet, header_for, listen};
use rustle_protocol::{AgentToCoordinator, BulkAck, BulkError, BulkKind, CoordinatorToAgent, JobId, Sha256Digest};
use rustle_transport::{AgentListener, AllowedCoordinators, Connection, ControlStream, PeerFailure, TransportError};

const LIMIT: Duration = Duration::from_secs(60);

/// An agent and a coordinator with the control stream open on both sides.
struct Pair {
    _listener: AgentListener,
    agent: Connection,
    agent_control: ControlStream,
    coordinator: Connection,
    coordinator_control: ControlStream,
}

async fn connected_pair() -> Pair {
    let fleet = fleet();
    let (listener, addr) = listen(&fleet.agent, AllowedCoordinators::Named(vec![COORDINATOR.into()]));
    let agent = tokio::spawn(async move {
        let connection = listener.accept().await.expect("open").authenticate().await.expect("authenticated");
        let control = connection.accept_control(agent_hello()).await.expect("handshake");
        (listener, connection, control)
    });
    let coordinator = dial(&fleet.coordinator, addr, AGENT).await.expect("connected");
    let coordinator_control = coordinator.open_control(coordinator_hello()).await.expect("handshake");
    let (listener, agent, agent_control) = agent.await.expect("agent task");
    Pair { _listener: listener, agent, agent_control, coordinator, coordinator_control }
}

/// Whether `error` is a refused bulk transfer whose verdict passes `check`.
fn is_bulk(error: &TransportError, check: impl Fn(&BulkError) -> bool) -> bool {
    match error {
        TransportError::Peer { kind: PeerFailure::Bulk { source, .. }, .. }
        | TransportError::Peer { kind: PeerFailure::BulkCutShort { source, .. }, .. } => check(source),
        _ => false,
    }
}

/// Mutual TLS, the handshake, a frame each way and a 50 MiB artifact
/// verified by checksum, acknowledged on the control stream.
#[tokio::test]
async fn control_frames_and_a_50_mib_bulk_transfer_round_trip() {
    bounded(Duration::from_secs(180), async {
        let Pair { _listener, agent, mut agent_control, coordinator, mut coordinator_control } = connected_pair().await;
        assert_eq!(coordinator.peer_name(), AGENT);
        assert_eq!(agent.peer_name(), COORDINATOR);
        assert_eq!(agent_control.peer_hello(), &coordinator_hello());
        assert_eq!(coordinator_control.peer_hello(), &agent_hello());

        coordinator_control.send(&CoordinatorToAgent::Cancel { job: JobId(7) }).await.expect("sent");
        let received = agent_control.recv::<CoordinatorToAgent>().await.expect("a frame");
        assert_eq!(received, Some(CoordinatorToAgent::Cancel { job: JobId(7) }));
        agent_control.send(&AgentToCoordinator::Accept { job: JobId(7) }).await.expect("sent");
        let received = coordinator_control.recv::<AgentToCoordinator>().await.expect("a frame");
        assert_eq!(received, Some(AgentToCoordinator::Accept { job: JobId(7) }));

        let payload = body(50 * 1024 * 1024);
        let header = header_for(7, &payload);
        let expected = header.sha256;
        let receiving = tokio::spawn(async move {
            let incoming = coordinator.accept_bulk().await.expect("a bulk stream");
            assert_eq!(incoming.header().total_len, 50 * 1024 * 1024);
            let started = Instant::now();
            let received = incoming.read_to_vec().await.expect("verified");
            let elapsed = started.elapsed();
            let ack = BulkAck::Verified { job: JobId(7), kind: BulkKind::Artifact };
            coordinator_control.send(&CoordinatorToAgent::BulkAck(ack)).await.expect("ack sent");
            (received, elapsed, coordinator)
        });
        let mut sender = agent.open_bulk(header).await.expect("bulk stream");
        for chunk in payload.chunks(1024 * 1024) {
            sender.write_all(chunk).await.expect("written");
        }
        sender.finish().await.expect("delivered");
        let (received, elapsed, _coordinator) = receiving.await.expect("receiver task");
        assert_eq!(Sha256Digest::of(&received), expected);
        assert!(received == payload, "the payload changed in transit");
        let build = if cfg!(debug_assertions) { "debug" } else { "release" };
        eprintln!(
            "50 MiB received and verified in {elapsed:?} ({:.0} MiB/s, {build} build)",
            50.0 / elapsed.as_secs_f64()
        );
        let ack = agent_control.recv::<CoordinatorToAgent>().await.expect("a frame");
        assert!(matches!(ack, Some(CoordinatorToAgent::BulkAck(BulkAck::Verified { .. }))), "{ack:?}");
    })
    .await;
}

/// The sender gives up half-way (its stream is reset): the receiver reports
/// a truncated transfer and hands over nothing.
#[tokio::test]
async fn bulk_stream_reset_midway_is_a_truncation() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let payload = body(256 * 1024);
        let mut sender = pair.agent.open_bulk(header_for(3, &payload)).await.expect("bulk stream");
        sender.write_all(&payload[..100_000]).await.expect("first part");
        let incoming = pair.coordinator.accept_bulk().await.expect("header arrives");
        sender.abort();
        let error = incoming.read_to_vec().await.expect_err("cut short");
        let message = error.to_string();
        eprintln!("{message}");
        match &error {
            TransportError::Peer { kind: PeerFailure::BulkCutShort { source, .. }, .. } => match **source {
                BulkError::Truncated { received, expected, .. } => {
                    assert!(received <= 100_000, "{received}");
                    assert_eq!(expected, 256 * 1024);
                }
                ref other => panic!("expected a truncation, got {other:?}"),
            },
            other => panic!("expected a truncation, got {other:?}"),
        }
        assert!(message.contains("was cut short"), "{message}");
        assert!(message.contains("the sender reset the stream"), "{message}");
        assert!(message.contains(&format!("from agent {AGENT} at")), "{message}");
    })
    .await;
}

/// The connection is cut in the middle of an artifact being saved to a
/// file: a truncation error, and neither the file nor a partial file exists.
#[tokio::test]
async fn connection_cut_midway_leaves_no_partial_file() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("hello");
        let payload = body(4 * 1024 * 1024);
        let mut sender = pair.agent.open_bulk(header_for(4, &payload)).await.expect("bulk stream");
        sender.write_all(&payload[..1024 * 1024]).await.expect("first part");
        let incoming = pair.coordinator.accept_bulk().await.expect("header arrives");
        let saving = tokio::spawn({
            let target = target.clone();
            async move { incoming.save_to_file(&target).await }
        });
        pair.agent.close("agent shutting down");
        let error = saving.await.expect("receiver task").expect_err("cut short");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(is_bulk(&error, |source| matches!(source, BulkError::Truncated { .. })), "{error:?}");
        // The cause is the close ("agent shutting down") or, when the close
        // frame loses the race with data in flight, a stateless reset.
        assert!(message.contains("lost the connection to") || message.contains("agent shutting down"), "{message}");
        assert!(!target.exists(), "a partial artifact was handed over");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("listable").collect();
        assert!(left.is_empty(), "partial files left behind: {left:?}");
        drop(sender);
    })
    .await;
}

/// A sender that finishes without writing everything it announced is
/// stopped locally; the receiver still sees a truncation.
#[tokio::test]
async fn finishing_short_is_refused_on_both_sides() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let payload = body(1000);
        let mut sender = pair.coordinator.open_bulk(header_for(5, &payload)).await.expect("bulk stream");
        sender.write_all(&payload[..10]).await.expect("first part");
        let incoming = pair.agent.accept_bulk().await.expect("header");
        let error = sender.finish().await.expect_err("short");
        assert!(matches!(error, TransportError::Peer { kind: PeerFailure::BulkMismatch { .. }, .. }), "{error:?}");
        assert!(error.to_string().contains("only 10 of the 1000 bytes"), "{error}");
        let error = incoming.read_to_vec().await.expect_err("truncated");
        assert!(matches!(error, TransportError::Peer { kind: PeerFailure::BulkCutShort { .. }, .. }), "{error:?}");

        // Reset before the receiver read the header: the transfer is abandoned, not misread.
        let mut sender = pair.coordinator.open_bulk(header_for(9, &payload)).await.expect("bulk stream");
        sender.write_all(&payload[..10]).await.expect("first part");
        sender.abort();
        match pair.agent.accept_bulk().await {
            Err(TransportError::Peer { kind: PeerFailure::BulkAbandoned { .. }, .. }) => {}
            Ok(incoming) => {
                let error = incoming.read_to_vec().await.expect_err("truncated");
                assert!(
                    matches!(error, TransportError::Peer { kind: PeerFailure::BulkCutShort { .. }, .. }),
                    "{error:?}"
                );
            }
            Err(other) => panic!("expected an abandoned transfer, got {other:?}"),
        }
    })
    .await;
}

/// A body that does not match the header's checksum is refused and not handed over.
#[tokio::test]
async fn corrupted_payload_is_rejected() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let payload = body(300_000);
        let mut header = header_for(6, &payload);
        header.sha256 = Sha256Digest::of(b"something else");
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("hello");
        let mut sender = pair.agent.open_bulk(header).await.expect("bulk stream");
        let receiving = tokio::spawn({
            let coordinator = pair.coordinator.clone();
            let target = target.clone();
            async move { coordinator.accept_bulk().await.expect("header").save_to_file(&target).await }
        });
        sender.write_all(&payload).await.expect("written");
        // The receiver may stop the stream once it has judged it; either outcome is fine here.
        let _ = sender.finish().await;
        let error = receiving.await.expect("receiver task").expect_err("corrupt");
        let message = error.to_string();
        eprintln!("{message}");
        assert!(is_bulk(&error, |source| matches!(source, BulkError::ChecksumMismatch { .. })), "{error:?}");
        assert!(message.contains("is corrupt"), "{message}");
        assert!(!target.exists(), "a corrupt artifact was handed over");
        assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 0);
    })
    .await;
}

/// One flipped byte in the middle of a 20 MiB body whose header announces
/// the intact body's checksum: the length is right, so only the checksum
/// can refuse it, in memory and on disk.
#[tokio::test]
async fn one_corrupt_byte_in_a_large_body_is_refused() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let intact = body(20 * 1024 * 1024);
        let mut corrupt = intact.clone();
        corrupt[10 * 1024 * 1024 + 7] ^= 0x01;
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("hello");
        for to_file in [false, true] {
            let receiving = tokio::spawn({
                let coordinator = pair.coordinator.clone();
                let target = target.clone();
                async move {
                    let incoming = coordinator.accept_bulk().await.expect("header");
                    if to_file {
                        incoming.save_to_file(&target).await.map(|_| ())
                    } else {
                        incoming.read_to_vec().await.map(|_| ())
                    }
                }
            });
            let mut sender = pair.agent.open_bulk(header_for(11, &intact)).await.expect("bulk stream");
            sender.write_all(&corrupt).await.expect("written");
            let _ = sender.finish().await;
            let error = receiving.await.expect("receiver task").expect_err("one byte differs");
            assert!(is_bulk(&error, |source| matches!(source, BulkError::ChecksumMismatch { .. })), "{error:?}");
            assert!(!target.exists(), "a corrupt artifact was handed over");
            assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 0, "a partial file was left");
        }
    })
    .await;
}

/// A transfer over the receiver's limit is refused from its header, and the
/// sender learns that it was stopped.
#[tokio::test]
async fn oversized_transfer_is_refused_from_its_header() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let payload = body(64 * 1024);
        let mut sender = pair.coordinator.open_bulk(header_for(8, &payload)).await.expect("bulk stream");
        let error = pair.agent.accept_bulk_with_limit(1024).await.expect_err("over the limit");
        assert!(
            matches!(&error, TransportError::Peer { kind: PeerFailure::Bulk { source, .. }, .. } if matches!(**source, BulkError::TooLarge { .. })),
            "{error:?}"
        );
        let sent = async {
            sender.write_all(&payload).await?;
            sender.finish().await
        };
        let error = sent.await.expect_err("the agent stopped the stream");
        assert!(matches!(error, TransportError::Peer { kind: PeerFailure::BulkStoppedByPeer { .. }, .. }), "{error:?}");
        assert!(error.to_string().starts_with(&format!("agent {AGENT} at ")), "{error}");
    })
    .await;
}

/// Either side ending the control stream is a clean `None` for the other.
#[tokio::test]
async fn finished_control_stream_reads_as_none() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let (sender, _receiver) = pair.coordinator_control.into_split();
        let mut agent_control = pair.agent_control;
        let finishing = tokio::spawn(sender.finish());
        assert_eq!(agent_control.recv::<CoordinatorToAgent>().await.expect("clean end"), None);
        finishing.await.expect("task").expect("acknowledged");
        pair.coordinator.close("done");
        let closed = pair.agent.closed().await;
        assert!(matches!(&closed, TransportError::Peer { kind: PeerFailure::ClosedByPeer { reason, .. }, .. } if reason == "done"), "{closed:?}");
    })
    .await;
}

/// A file sent with `write_file` and saved with `save_to_file` arrives
/// intact under its final name, with no partial file left behind.
#[tokio::test]
async fn file_to_file_transfer_is_verified_and_renamed_into_place() {
    bounded(LIMIT, async {
        let pair = connected_pair().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("built");
        let payload = body(3 * 1024 * 1024 + 17);
        std::fs::write(&source, &payload).expect("source file");
        let received_dir = dir.path().join("received");
        std::fs::create_dir(&received_dir).expect("target dir");
        let target = received_dir.join("hello");
        let receiving = tokio::spawn({
            let coordinator = pair.coordinator.clone();
            let target = target.clone();
            async move { coordinator.accept_bulk().await.expect("header").save_to_file(&target).await }
        });
        let mut sender = pair.agent.open_bulk(header_for(10, &payload)).await.expect("bulk stream");
        assert_eq!(sender.write_file(&source).await.expect("sent"), payload.len() as u64);
        sender.finish().await.expect("delivered");
        let header = receiving.await.expect("receiver task").expect("verified");
        assert_eq!(header.job, JobId(10));
        assert!(std::fs::read(&target).expect("saved") == payload, "the file changed in transit");
        assert_eq!(std::fs::read_dir(&received_dir).expect("listable").count(), 1);
    })
    .await;
}

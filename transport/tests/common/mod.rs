//! Shared set-up for the transport tests: a fleet CA with issued bundles, listeners on loopback port 0, time bounds.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::net::SocketAddr;

use rustle_protocol::{BulkHeader, BulkKind, Hello, JobId, Role, Sha256Digest};
use rustle_transport::{AgentListener, AllowedCoordinators, CertBundle, Connection, CoordinatorDialer, TransportError};

#[allow(unused_imports, reason = "each test binary uses a different part of this module")]
pub use rustle_test_support::{AGENT, COORDINATOR, TestFleet as Fleet, bounded};

/// A fleet CA with one agent and one coordinator certificate.
pub fn fleet() -> Fleet {
    Fleet::new()
}

/// An agent listener on 127.0.0.1, port 0.
pub fn listen(bundle: &CertBundle, allowed: AllowedCoordinators) -> (AgentListener, SocketAddr) {
    AgentListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), bundle, allowed).expect("listener binds")
}

/// Spawns the agent side: accepts one connection attempt and authenticates it.
/// The listener lives as long as the task.
pub fn accept_one(
    listener: AgentListener,
) -> tokio::task::JoinHandle<(AgentListener, Result<Connection, TransportError>)> {
    tokio::spawn(async move {
        let incoming = listener.accept().await.expect("the listener is open");
        let result = incoming.authenticate().await;
        (listener, result)
    })
}

/// Dials [`AGENT`] at `addr` with `bundle`.
pub async fn dial(bundle: &CertBundle, addr: SocketAddr, name: &str) -> Result<Connection, TransportError> {
    CoordinatorDialer::new(bundle).expect("dialer").connect(addr, name).await
}

pub fn agent_hello() -> Hello {
    Hello::new(Role::Agent, "0.1.0")
}

pub fn coordinator_hello() -> Hello {
    Hello::new(Role::Coordinator, "0.1.0")
}

/// A deterministic, incompressible-looking body of `len` bytes.
pub fn body(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The header announcing `body` as job `job`'s artifact.
pub fn header_for(job: u64, body: &[u8]) -> BulkHeader {
    BulkHeader {
        kind: BulkKind::Artifact,
        job: JobId(job),
        file_name: "hello".into(),
        total_len: body.len() as u64,
        sha256: Sha256Digest::of(body),
    }
}

//! Criterion benchmark of verified bulk transfers: a 200 MiB body over real QUIC with mutual TLS on loopback, received and checked against its sha256 before it is handed over, in MiB/s.
//!
//! One agent listener and one coordinator connection (certificates from a
//! fresh fleet CA, as every deployment has) are set up once; each iteration
//! opens one bulk stream, the agent writes the whole body (as it sends a
//! built binary) and the coordinator receives it with `read_to_vec` (what
//! the fleet does with an artifact) or `save_to_file`; the time is from
//! opening the stream until the receiver holds the verified body. Both
//! ends run in this one process, so on loopback they share the machine's
//! cores: the sender's encryption, the receiver's decryption and the
//! checksum all compete. `sha256` alone is measured beside them, as the
//! bound the checksum puts on a transfer verified on one thread.
//!
//! On a machine shared with other work the wall-clock numbers say more
//! about the neighbours than about the code, so after criterion's cases a
//! few more transfers are timed by the CPU time this process spent on them
//! (Linux, from `/proc/self/stat`): that cost per transfer does not depend
//! on the load, and 2 cores / that cost is the speed both ends in one
//! process could reach on an idle 2-core machine.
//!
//! `cargo bench -p rustle-transport --bench bulk -j 1` measures it;
//! `cargo test -p rustle-transport --benches` runs each case once as a check.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustle_protocol::{BulkHeader, BulkKind, JobId, Sha256Digest};
use rustle_test_support::{AGENT, TestFleet};
use rustle_transport::{AgentListener, AllowedCoordinators, Connection, CoordinatorDialer};

/// The body: the size of a large statically linked binary.
const BODY_LEN: usize = 200 * 1024 * 1024;

/// A deterministic body that does not compress (QUIC does not compress, but
/// neither should the numbers depend on zeros).
fn body(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.extend_from_slice(&state.to_le_bytes());
    }
    body.truncate(len);
    body
}

/// The two ends of one authenticated connection (and the listener and
/// dialer that keep it alive).
struct Pair {
    _listener: AgentListener,
    _dialer: CoordinatorDialer,
    agent: Connection,
    coordinator: Connection,
}

async fn connected_pair(fleet: &TestFleet) -> Pair {
    let (listener, addr) =
        AgentListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &fleet.agent, AllowedCoordinators::AnyFromFleetCa)
            .expect("listener binds");
    let dialer = CoordinatorDialer::new(&fleet.coordinator).expect("dialer");
    let (agent, coordinator) = tokio::join!(
        async { listener.accept().await.expect("an attempt").authenticate().await.expect("authenticated") },
        async { dialer.connect(addr, AGENT).await.expect("connected") },
    );
    Pair { _listener: listener, _dialer: dialer, agent, coordinator }
}

/// Where the receiver puts the body.
#[derive(Clone, Copy)]
enum Into {
    Memory,
    File,
}

/// One transfer of `payload` from the agent to the coordinator, verified; its duration.
async fn transfer(pair: &Pair, payload: &[u8], header: &BulkHeader, into: Into, dir: &std::path::Path) -> Duration {
    let started = Instant::now();
    let coordinator = pair.coordinator.clone();
    let target = dir.join("hello");
    let expected = payload.len();
    let receiving = tokio::spawn(async move {
        let incoming = coordinator.accept_bulk().await.expect("a bulk stream");
        match into {
            Into::Memory => assert_eq!(incoming.read_to_vec().await.expect("verified").len(), expected),
            Into::File => {
                incoming.save_to_file(&target).await.expect("verified");
            }
        }
    });
    let mut sender = pair.agent.open_bulk(header.clone()).await.expect("bulk stream");
    sender.write_all(payload).await.expect("written");
    sender.finish().await.expect("delivered");
    receiving.await.expect("receiver task");
    started.elapsed()
}

/// What each benchmark function sets up: a runtime, a connected pair with
/// fleet-CA certificates, the 200 MiB payload announced as job `job`, and a
/// directory for the file case.
struct Bench {
    runtime: tokio::runtime::Runtime,
    _fleet: TestFleet,
    pair: Pair,
    payload: Vec<u8>,
    header: BulkHeader,
    dir: tempfile::TempDir,
}

impl Bench {
    fn new(job: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        let fleet = TestFleet::new();
        let pair = runtime.block_on(connected_pair(&fleet));
        let payload = body(BODY_LEN);
        let header = BulkHeader {
            kind: BulkKind::Artifact,
            job: JobId(job),
            file_name: "hello".into(),
            total_len: payload.len() as u64,
            sha256: Sha256Digest::of(&payload),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        Self { runtime, _fleet: fleet, pair, payload, header, dir }
    }
}

fn bulk(c: &mut Criterion) {
    let Bench { runtime, _fleet, pair, payload, header, dir } = Bench::new(1);

    let mut group = c.benchmark_group("bulk_200_mib");
    group.throughput(Throughput::Bytes(BODY_LEN as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("sha256_alone", |b| b.iter(|| Sha256Digest::of(black_box(&payload))));
    for (name, into) in [("verified_to_memory", Into::Memory), ("verified_to_file", Into::File)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += transfer(&pair, &payload, &header, into, dir.path()).await;
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

/// User plus system CPU time this process has used, where Linux says.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses: utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// A few transfers of each kind timed by CPU time, printed beside criterion's wall-clock numbers.
fn cpu_cost(_: &mut Criterion) {
    const TRANSFERS: u32 = 3;
    if cpu_time().is_none() {
        return;
    }
    let Bench { runtime, _fleet, pair, payload, header, dir } = Bench::new(2);
    for (name, into) in [("verified_to_memory", Into::Memory), ("verified_to_file", Into::File)] {
        let (Some(before), wall) = (cpu_time(), Instant::now()) else { return };
        runtime.block_on(async {
            for _ in 0..TRANSFERS {
                transfer(&pair, &payload, &header, into, dir.path()).await;
            }
        });
        let (Some(after), wall) = (cpu_time(), wall.elapsed()) else { return };
        let per_transfer = (after - before) / TRANSFERS;
        eprintln!(
            "bulk_200_mib/{name}: {:.2} CPU-seconds per transfer (both ends), {:.0} MiB/s on 2 idle cores at most; \
             {:.0} MiB/s wall-clock here",
            per_transfer.as_secs_f64(),
            2.0 * 200.0 / per_transfer.as_secs_f64(),
            200.0 * f64::from(TRANSFERS) / wall.as_secs_f64(),
        );
    }
}

criterion_group!(benches, bulk, cpu_cost);
criterion_main!(benches);

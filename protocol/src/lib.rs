//! Wire protocol between the rustle-cross coordinator and its build agents.
//!
//! Everything two processes must agree on lives here and nowhere else: the
//! message types ([`CoordinatorToAgent`], [`AgentToCoordinator`]), the framing
//! codec with its size limits ([`codec`]), the version handshake ([`Hello`],
//! [`check_compatibility`]) and the checks on bulk transfers ([`BulkReceiver`]).
//!
//! **Architecture invariant:** this crate does no I/O and knows nothing of
//! tokio or quinn. Callers push received bytes in and poll decoded messages
//! out. Only this crate derives `Serialize`/`Deserialize` for wire types, and
//! bincode never appears in its public API, so the encoding can be swapped by
//! editing `codec.rs` (and bumping [`PROTOCOL_VERSION`]).
//!
//! # A connection
//!
//! 1. QUIC with mutual TLS negotiates [`ALPN`].
//! 2. On the first bidirectional stream each side sends a [`Hello`] frame and
//!    checks the peer's with [`check_compatibility`].
//! 3. The agent sends [`AgentToCoordinator::Capabilities`]; from then on the
//!    same stream carries [`CoordinatorToAgent`] and [`AgentToCoordinator`]
//!    frames.
//! 4. Each source bundle or artifact travels on its own unidirectional
//!    stream: one [`BulkHeader`] frame, then exactly `total_len` raw bytes,
//!    then the end of the stream. The receiver checks them with a
//!    [`BulkReceiver`] and answers on the control stream with a [`BulkAck`].

mod bulk;
mod capability;
pub mod codec;
mod handshake;
mod job;
mod messages;

pub use bulk::{BodyHasher, BulkAck, BulkError, BulkHeader, BulkKind, BulkReceiver, Sha256Digest};
pub use capability::{
    AgentId, BuildRoute, BuildableTarget, CapabilityReport, LibcReport, LoadAverage, LoadUpdate, ToolchainReport,
    WarmCache,
};
pub use codec::{CodecError, FrameDecoder, WireMessage, decode_frame, encode_frame};
pub use handshake::{HandshakeError, Hello, Role, check_compatibility};
pub use job::{
    BuildEvent, BuildOutcome, BuildTarget, CLinking, JobId, JobOffer, LogStream, Lto, OptLevel, OptimizationSettings,
    PanicStrategy, RejectReason, Strip, TemplateId,
};
pub use messages::{AgentToCoordinator, CoordinatorToAgent};

/// Version of the message set. Bump it on every change to a wire type, and
/// test the old-versus-new handshake.
///
/// - 1: the first fleet.
/// - 2: a [`JobOffer`] carries the whole [`BuildTarget`] (glibc floor,
///   features, rustflags, linker), and [`OptimizationSettings`] are
///   overrides (`None` keeps the template's profile).
/// - 3: a [`JobOffer`] says whether the agent may use its binary cache,
///   and a successful [`BuildOutcome`] says whether the cache answered.
/// - 4: an agent says it is draining ([`AgentToCoordinator::Draining`]).
/// - 5: a [`BuildTarget`] says how its C libraries are linked ([`CLinking`]).
pub const PROTOCOL_VERSION: u32 = 5;

/// ALPN token both QUIC endpoints offer. It names the framing and the
/// [`Hello`] layout, which never change under this token, so peers of any
/// [`PROTOCOL_VERSION`] connect and can tell each other what to upgrade.
pub const ALPN: &[u8] = b"rustle-cross/1";

/// Largest frame payload anyone may send or accept (16 MiB). Decoders can be
/// configured lower with [`FrameDecoder::with_max_frame_len`].
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Default largest source bundle or artifact a [`BulkReceiver`] accepts (4 GiB).
pub const MAX_BULK_LEN: u64 = 4 * 1024 * 1024 * 1024;

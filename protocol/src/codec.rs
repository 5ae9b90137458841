//! Length-delimited frames: [`encode_frame`], [`decode_frame`] and the sans-io [`FrameDecoder`].
//!
//! A frame is a 4-byte big-endian payload length followed by the payload, the
//! bincode 2 encoding (standard configuration) of one [`WireMessage`].
//! bincode is private to this file: replacing it touches nothing else.
//!
//! Limits are checked before anything is allocated for a frame: a length
//! prefix above the limit is rejected as soon as its 4 bytes arrive, and
//! bincode's own limit caps what any length field inside a payload can make
//! the decoder allocate at [`MAX_FRAME_LEN`].

use bincode::config::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MAX_FRAME_LEN;

/// Bytes in the length prefix that starts every frame.
pub const FRAME_HEADER_LEN: usize = 4;

/// A type that travels as one frame. Sealed: only this crate's wire types
/// ([`Hello`](crate::Hello), [`CoordinatorToAgent`](crate::CoordinatorToAgent),
/// [`AgentToCoordinator`](crate::AgentToCoordinator),
/// [`BulkHeader`](crate::BulkHeader)) can be framed.
pub trait WireMessage: Serialize + DeserializeOwned + sealed::Sealed {
    /// What error messages call a frame of this type.
    const NAME: &'static str;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! wire_messages {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl WireMessage for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

wire_messages! {
    crate::Hello => "hello",
    crate::CoordinatorToAgent => "coordinator-to-agent",
    crate::AgentToCoordinator => "agent-to-coordinator",
    crate::BulkHeader => "bulk header",
}

/// Why a frame could not be encoded or decoded. After a decoding error the
/// stream is out of step and should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A length prefix (or an encoded message) is over the frame limit.
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Payload length announced or produced.
        len: u64,
        /// The limit in force.
        limit: u32,
    },
    /// The bytes end inside a frame: more are needed, or the stream was cut.
    #[error("stream ended inside a frame: {have} of its {need} bytes arrived")]
    Incomplete {
        /// Bytes available.
        have: usize,
        /// Bytes the frame needs, as far as is known (the 4-byte header until it has arrived).
        need: usize,
    },
    /// The payload is not a valid encoding of the expected message.
    #[error("failed to decode a {message} frame: {reason}")]
    Malformed {
        /// [`WireMessage::NAME`] of the expected message.
        message: &'static str,
        /// What the decoder objected to.
        reason: String,
    },
    /// The payload holds a valid message followed by bytes that belong to none.
    #[error("failed to decode a {message} frame: {extra} bytes follow the message")]
    TrailingBytes {
        /// [`WireMessage::NAME`] of the expected message.
        message: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// The message could not be encoded.
    #[error("failed to encode a {message} frame: {reason}")]
    Encode {
        /// [`WireMessage::NAME`] of the message.
        message: &'static str,
        /// What the encoder objected to.
        reason: String,
    },
}

fn bincode_config() -> impl Config {
    bincode::config::standard().with_limit::<{ MAX_FRAME_LEN as usize }>()
}

/// Encodes `message` as one frame, length prefix included.
pub fn encode_frame<M: WireMessage>(message: &M) -> Result<Vec<u8>, CodecError> {
    let mut frame = vec![0; FRAME_HEADER_LEN];
    bincode::serde::encode_into_std_write(message, &mut frame, bincode_config())
        .map_err(|error| CodecError::Encode { message: M::NAME, reason: error.to_string() })?;
    let len = frame.len() - FRAME_HEADER_LEN;
    let prefix = u32::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_FRAME_LEN)
        .ok_or(CodecError::FrameTooLarge { len: len as u64, limit: MAX_FRAME_LEN })?;
    frame[..FRAME_HEADER_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Decodes the frame at the start of `bytes`, returning the message and the
/// number of bytes it took. Fails with [`CodecError::Incomplete`] when `bytes`
/// ends before the frame does.
pub fn decode_frame<M: WireMessage>(bytes: &[u8], max_frame_len: u32) -> Result<(M, usize), CodecError> {
    let need = frame_len(bytes, max_frame_len)?;
    let Some(payload) = bytes.get(FRAME_HEADER_LEN..need) else {
        return Err(CodecError::Incomplete { have: bytes.len(), need });
    };
    let (message, used) = bincode::serde::decode_from_slice::<M, _>(payload, bincode_config())
        .map_err(|error| CodecError::Malformed { message: M::NAME, reason: error.to_string() })?;
    if used != payload.len() {
        return Err(CodecError::TrailingBytes { message: M::NAME, extra: payload.len() - used });
    }
    Ok((message, need))
}

/// Length of the whole frame starting `bytes`, from its prefix alone.
fn frame_len(bytes: &[u8], max_frame_len: u32) -> Result<usize, CodecError> {
    let Some(prefix) = bytes.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(CodecError::Incomplete { have: bytes.len(), need: FRAME_HEADER_LEN });
    };
    let len = u32::from_be_bytes(*prefix);
    if len > max_frame_len {
        return Err(CodecError::FrameTooLarge { len: len.into(), limit: max_frame_len });
    }
    Ok(FRAME_HEADER_LEN + len as usize)
}

/// Incremental frame decoder: [`push_bytes`](Self::push_bytes) what the
/// stream delivers, then [`poll_message`](Self::poll_message) until it
/// returns `None`. At the end of the stream, [`finish`](Self::finish) reports
/// a frame cut short.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    max_frame_len: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder accepting frames up to [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A decoder accepting frames up to `max_frame_len`, itself capped at [`MAX_FRAME_LEN`].
    pub fn with_max_frame_len(max_frame_len: u32) -> Self {
        Self { buffer: Vec::new(), max_frame_len: max_frame_len.min(MAX_FRAME_LEN) }
    }

    /// The frame limit in force.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// Bytes received but not yet decoded.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// Appends bytes received from the stream.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, or `None` until more bytes arrive. An
    /// oversized length prefix fails as soon as its 4 bytes are buffered.
    /// Errors repeat on every later call: close the stream.
    pub fn poll_message<M: WireMessage>(&mut self) -> Result<Option<M>, CodecError> {
        match decode_frame(&self.buffer, self.max_frame_len) {
            Ok((message, used)) => {
                self.buffer.drain(..used);
                Ok(Some(message))
            }
            Err(CodecError::Incomplete { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Takes the bytes buffered after the last decoded frame, for a stream
    /// that switches to raw bytes (the body after a [`BulkHeader`](crate::BulkHeader)).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    /// Call when the stream has ended and [`poll_message`](Self::poll_message)
    /// returned `None`: fails with [`CodecError::Incomplete`] if a frame was cut short.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let need = frame_len(&self.buffer, self.max_frame_len)?;
        Err(CodecError::Incomplete { have: self.buffer.len(), need })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{AgentToCoordinator, BuildOutcome, BulkHeader, CoordinatorToAgent, Hello, JobId};

    fn frame_of(payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("test payloads are small");
        [&len.to_be_bytes()[..], payload].concat()
    }

    #[test]
    fn oversized_prefix_is_rejected_naming_both_sizes() {
        let error =
            decode_frame::<Hello>(&u32::MAX.to_be_bytes(), MAX_FRAME_LEN).expect_err("a 4 GiB frame is over the limit");
        assert_eq!(error.to_string(), "frame of 4294967295 bytes exceeds the 16777216-byte limit");
    }

    #[test]
    fn decoder_applies_its_configured_limit_as_soon_as_the_prefix_arrives() {
        let mut decoder = FrameDecoder::with_max_frame_len(8);
        decoder.push_bytes(&9u32.to_be_bytes());
        assert_eq!(decoder.poll_message::<CoordinatorToAgent>(), Err(CodecError::FrameTooLarge { len: 9, limit: 8 }));
        assert_eq!(FrameDecoder::with_max_frame_len(u32::MAX).max_frame_len(), MAX_FRAME_LEN);
    }

    #[test]
    fn encoding_refuses_a_message_over_the_limit() {
        let message = AgentToCoordinator::Finished {
            job: JobId(1),
            outcome: BuildOutcome::CompileFailed { diagnostics: "e".repeat(MAX_FRAME_LEN as usize) },
        };
        assert!(matches!(encode_frame(&message), Err(CodecError::FrameTooLarge { limit: MAX_FRAME_LEN, .. })));
    }

    #[test]
    fn bytes_after_the_message_inside_a_frame_are_rejected() {
        let frame = encode_frame(&CoordinatorToAgent::Cancel { job: JobId(7) }).expect("encodes");
        let padded = frame_of(&[&frame[FRAME_HEADER_LEN..], &[0]].concat());
        assert_eq!(
            decode_frame::<CoordinatorToAgent>(&padded, MAX_FRAME_LEN),
            Err(CodecError::TrailingBytes { message: "coordinator-to-agent", extra: 1 })
        );
    }

    #[test]
    fn empty_payload_is_malformed() {
        let error = decode_frame::<Hello>(&frame_of(&[]), MAX_FRAME_LEN).expect_err("no message");
        assert!(error.to_string().starts_with("failed to decode a hello frame: "), "{error}");
    }

    #[test]
    fn finish_reports_a_frame_cut_short() {
        let frame = encode_frame(&CoordinatorToAgent::Cancel { job: JobId(7) }).expect("encodes");
        let mut decoder = FrameDecoder::new();
        decoder.push_bytes(&frame[..frame.len() - 1]);
        assert_eq!(decoder.poll_message::<CoordinatorToAgent>(), Ok(None));
        assert_eq!(decoder.finish(), Err(CodecError::Incomplete { have: frame.len() - 1, need: frame.len() }));
        decoder.push_bytes(&frame[frame.len() - 1..]);
        assert!(matches!(decoder.poll_message(), Ok(Some(CoordinatorToAgent::Cancel { .. }))));
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn take_buffered_hands_over_the_bytes_after_a_header() {
        let header = BulkHeader {
            kind: crate::BulkKind::Artifact,
            job: JobId(3),
            file_name: "hello".into(),
            total_len: 3,
            sha256: crate::Sha256Digest::of(b"abc"),
        };
        let mut decoder = FrameDecoder::new();
        decoder.push_bytes(&[encode_frame(&header).expect("encodes"), b"ab".to_vec()].concat());
        assert_eq!(decoder.poll_message::<BulkHeader>(), Ok(Some(header)));
        assert_eq!(decoder.take_buffered(), b"ab");
        assert_eq!(decoder.buffered_len(), 0);
    }

    fn decode_all(bytes: &[u8]) {
        let _ = decode_frame::<Hello>(bytes, MAX_FRAME_LEN);
        let _ = decode_frame::<CoordinatorToAgent>(bytes, MAX_FRAME_LEN);
        let _ = decode_frame::<AgentToCoordinator>(bytes, MAX_FRAME_LEN);
        let _ = decode_frame::<BulkHeader>(bytes, MAX_FRAME_LEN);
    }

    proptest! {
        #[test]
        fn garbage_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&bytes);
            let mut decoder = FrameDecoder::new();
            decoder.push_bytes(&bytes);
            while let Ok(Some(_)) = decoder.poll_message::<AgentToCoordinator>() {}
        }

        #[test]
        fn garbage_payload_behind_a_valid_prefix_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            decode_all(&frame_of(&payload));
        }
    }
}

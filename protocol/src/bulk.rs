//! Bulk transfers (source bundles, artifacts): the [`BulkHeader`] frame and the sans-io [`BulkReceiver`] that checks the bytes after it.
//!
//! A bulk stream is one [`BulkHeader`] frame, then exactly `total_len` raw
//! bytes, then the end of the stream. The receiver writes the bytes wherever
//! it likes and feeds them to a [`BulkReceiver`], which enforces the length
//! and the checksum; it then answers on the control stream with a [`BulkAck`].

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::job::JobId;

/// A SHA-256 digest; displayed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (either case), as [`fmt::Display`] writes them;
    /// `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        // `from_str_radix` alone would take a leading `+`.
        if text.len() != 64 || !text.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(digest))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

/// What a bulk stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BulkKind {
    /// The job's source tree, coordinator to agent.
    SourceBundle,
    /// The built binary, agent to coordinator.
    Artifact,
}

impl fmt::Display for BulkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SourceBundle => "source bundle",
            Self::Artifact => "artifact",
        })
    }
}

/// First frame on a bulk stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkHeader {
    /// What follows.
    pub kind: BulkKind,
    /// The job it belongs to.
    pub job: JobId,
    /// Bare file name, e.g. `"source.tar.zst"` or `"hello.exe"`; no path separators.
    pub file_name: String,
    /// Exact number of bytes that follow.
    pub total_len: u64,
    /// SHA-256 of those bytes.
    pub sha256: Sha256Digest,
}

/// The receiver's verdict on a bulk transfer, sent on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkAck {
    /// All bytes arrived and matched the checksum.
    Verified {
        /// The job.
        job: JobId,
        /// What was transferred.
        kind: BulkKind,
    },
    /// The transfer failed its checks; the sender may send it again.
    Rejected {
        /// The job.
        job: JobId,
        /// What was transferred.
        kind: BulkKind,
        /// The [`BulkError`] message.
        reason: String,
    },
}

/// Why a bulk transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// The header announces more bytes than the receiver accepts.
    #[error(
        "{kind} for job {job} announces {total_len} bytes, over the {limit}-byte limit; \
         raise the receiver's limit or make the {kind} smaller"
    )]
    TooLarge {
        /// What was announced.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// Announced length.
        total_len: u64,
        /// The receiver's limit.
        limit: u64,
    },
    /// The header's file name could escape the receiver's directory.
    #[error("{kind} for job {job} is named {file_name:?}, which is not a bare file name")]
    UnsafeFileName {
        /// What was announced.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// The offending name.
        file_name: String,
    },
    /// More bytes arrived than the header announced.
    #[error("{kind} for job {job} ran past the {expected} bytes its header announced")]
    Overrun {
        /// What was transferred.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// Announced length.
        expected: u64,
    },
    /// The stream ended before all announced bytes arrived.
    #[error("{kind} for job {job} was cut short: {received} of {expected} bytes arrived")]
    Truncated {
        /// What was transferred.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// Bytes that arrived.
        received: u64,
        /// Announced length.
        expected: u64,
    },
    /// The bytes do not match the announced checksum.
    #[error("{kind} for job {job} is corrupt: its sha256 is {actual}, the header announced {expected}")]
    ChecksumMismatch {
        /// What was transferred.
        kind: BulkKind,
        /// The job.
        job: JobId,
        /// Announced digest.
        expected: Sha256Digest,
        /// Digest of what arrived.
        actual: Sha256Digest,
    },
}

/// Checks the body of one bulk stream: feed it every byte after the header
/// with [`handle_bytes`](Self::handle_bytes), then call
/// [`finish`](Self::finish) at the end of the stream.
///
/// A receiver that hashes elsewhere (on another thread, overlapped with
/// receiving) counts the bytes with [`count_bytes`](Self::count_bytes),
/// hashes the same bytes in the same order with a [`BodyHasher`], and ends
/// with [`finish_with_digest`](Self::finish_with_digest).
#[derive(Debug, Clone)]
pub struct BulkReceiver {
    header: BulkHeader,
    received: u64,
    hasher: BodyHasher,
}

/// The incremental checksum of a bulk body (SHA-256, what
/// [`BulkHeader::sha256`] announces), for a receiver that hashes the body
/// apart from counting it.
#[derive(Clone, Default)]
pub struct BodyHasher(Sha256);

impl BodyHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes the next bytes of the body.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for BodyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyHasher(sha256)")
    }
}

impl BulkReceiver {
    /// Starts receiving the body `header` announces, refusing bodies over
    /// `max_len` bytes (see [`MAX_BULK_LEN`](crate::MAX_BULK_LEN)) and file
    /// names that are not bare.
    pub fn new(header: BulkHeader, max_len: u64) -> Result<Self, BulkError> {
        if header.total_len > max_len {
            return Err(BulkError::TooLarge {
                kind: header.kind,
                job: header.job,
                total_len: header.total_len,
                limit: max_len,
            });
        }
        if !is_bare_file_name(&header.file_name) {
            return Err(BulkError::UnsafeFileName { kind: header.kind, job: header.job, file_name: header.file_name });
        }
        Ok(Self { header, received: 0, hasher: BodyHasher::new() })
    }

    /// The header this body belongs to.
    pub fn header(&self) -> &BulkHeader {
        &self.header
    }

    /// Bytes accepted so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.header.total_len - self.received
    }

    /// Accepts the next bytes of the body; fails, accepting none of them, if
    /// they run past the announced length.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), BulkError> {
        self.count_bytes(bytes.len() as u64)?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// Counts the next `len` bytes of the body without hashing them (the
    /// caller hashes them with a [`BodyHasher`]); fails, counting none of
    /// them, if they run past the announced length.
    pub fn count_bytes(&mut self, len: u64) -> Result<(), BulkError> {
        if len > self.remaining() {
            return Err(BulkError::Overrun {
                kind: self.header.kind,
                job: self.header.job,
                expected: self.header.total_len,
            });
        }
        self.received += len;
        Ok(())
    }

    /// Call at the end of the stream: checks that every announced byte
    /// arrived and that they match the checksum, and returns the header.
    pub fn finish(mut self) -> Result<BulkHeader, BulkError> {
        let actual = std::mem::take(&mut self.hasher).finish();
        self.finish_with_digest(actual)
    }

    /// Like [`finish`](Self::finish), for bytes counted with
    /// [`count_bytes`](Self::count_bytes): `actual` is the digest of the
    /// body as the caller's [`BodyHasher`] saw it.
    pub fn finish_with_digest(self, actual: Sha256Digest) -> Result<BulkHeader, BulkError> {
        let BulkHeader { kind, job, total_len, sha256, .. } = self.header;
        if self.received < total_len {
            return Err(BulkError::Truncated { kind, job, received: self.received, expected: total_len });
        }
        if actual != sha256 {
            return Err(BulkError::ChecksumMismatch { kind, job, expected: sha256, actual });
        }
        Ok(self.header)
    }
}

/// Whether `name` names a file inside a directory on any OS: not empty, not
/// `.` or `..`, and free of separators, drive colons and NUL.
fn is_bare_file_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\\', ':', '\0'])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::MAX_BULK_LEN;

    #[test]
    fn digests_parse_back_from_their_hex_and_nothing_else_parses() {
        let digest = Sha256Digest::of(b"rustle");
        assert_eq!(Sha256Digest::from_hex(&digest.to_string()), Some(digest));
        assert_eq!(Sha256Digest::from_hex(&digest.to_string().to_uppercase()), Some(digest));
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65), &format!("+{}", "a".repeat(63))] {
            assert_eq!(Sha256Digest::from_hex(bad), None, "{bad:?}");
        }
    }

    fn header_for(body: &[u8]) -> BulkHeader {
        BulkHeader {
            kind: BulkKind::SourceBundle,
            job: JobId(42),
            file_name: "source.tar.zst".into(),
            total_len: body.len() as u64,
            sha256: Sha256Digest::of(body),
        }
    }

    fn receiver_for(body: &[u8]) -> BulkReceiver {
        BulkReceiver::new(header_for(body), MAX_BULK_LEN).expect("header is acceptable")
    }

    #[test]
    fn digest_displays_as_lowercase_hex() {
        assert_eq!(
            Sha256Digest::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn empty_body_verifies() {
        assert_eq!(receiver_for(b"").finish(), Ok(header_for(b"")));
    }

    #[test]
    fn truncated_body_is_refused() {
        let mut receiver = receiver_for(b"hello world");
        receiver.handle_bytes(b"hello").expect("within length");
        assert_eq!(receiver.remaining(), 6);
        assert_eq!(
            receiver.finish().expect_err("6 bytes missing").to_string(),
            "source bundle for job 42 was cut short: 5 of 11 bytes arrived"
        );
    }

    #[test]
    fn overrun_is_refused_and_the_chunk_not_counted() {
        let mut receiver = receiver_for(b"hello");
        receiver.handle_bytes(b"hel").expect("within length");
        assert_eq!(
            receiver.handle_bytes(b"lo!").expect_err("one byte too many").to_string(),
            "source bundle for job 42 ran past the 5 bytes its header announced"
        );
        assert_eq!(receiver.received(), 3);
    }

    #[test]
    fn corrupt_body_is_refused_naming_both_digests() {
        let mut receiver = receiver_for(b"hello");
        receiver.handle_bytes(b"jello").expect("right length");
        let error = receiver.finish().expect_err("checksum differs");
        assert_eq!(
            error,
            BulkError::ChecksumMismatch {
                kind: BulkKind::SourceBundle,
                job: JobId(42),
                expected: Sha256Digest::of(b"hello"),
                actual: Sha256Digest::of(b"jello"),
            }
        );
        let message = error.to_string();
        assert!(message.contains(&Sha256Digest::of(b"hello").to_string()), "{message}");
        assert!(message.contains(&Sha256Digest::of(b"jello").to_string()), "{message}");
    }

    #[test]
    fn oversized_announcement_is_refused_up_front() {
        let header = BulkHeader { kind: BulkKind::Artifact, total_len: 1025, ..header_for(b"") };
        assert_eq!(
            BulkReceiver::new(header, 1024).expect_err("over the limit").to_string(),
            "artifact for job 42 announces 1025 bytes, over the 1024-byte limit; raise the \
             receiver's limit or make the artifact smaller"
        );
    }

    #[test]
    fn file_names_that_could_escape_are_refused() {
        for file_name in ["", ".", "..", "../x", "a/b", "a\\b", "C:x", "a\0b"] {
            let header = BulkHeader { file_name: file_name.into(), ..header_for(b"") };
            assert!(
                matches!(BulkReceiver::new(header, MAX_BULK_LEN), Err(BulkError::UnsafeFileName { .. })),
                "{file_name:?} was accepted"
            );
        }
        for file_name in ["hello", "hello.exe", "..hidden", "a b"] {
            let header = BulkHeader { file_name: file_name.into(), ..header_for(b"") };
            assert!(BulkReceiver::new(header, MAX_BULK_LEN).is_ok(), "{file_name:?}");
        }
    }

    #[test]
    fn counted_body_is_checked_against_the_digest_hashed_apart() {
        let mut receiver = receiver_for(b"hello");
        receiver.count_bytes(5).expect("right length");
        assert_eq!(receiver.clone().finish_with_digest(Sha256Digest::of(b"hello")), Ok(header_for(b"hello")));
        let mut hasher = BodyHasher::new();
        hasher.update(b"jel");
        hasher.update(b"lo");
        assert!(matches!(
            receiver.finish_with_digest(hasher.finish()),
            Err(BulkError::ChecksumMismatch { actual, .. }) if actual == Sha256Digest::of(b"jello")
        ));
    }

    #[test]
    fn counted_body_is_refused_when_short_or_over() {
        let mut receiver = receiver_for(b"hello");
        receiver.count_bytes(3).expect("within length");
        assert!(matches!(receiver.count_bytes(3), Err(BulkError::Overrun { .. })));
        assert_eq!(receiver.received(), 3);
        // Even the right digest does not make a short body whole.
        assert!(matches!(
            receiver.finish_with_digest(Sha256Digest::of(b"hello")),
            Err(BulkError::Truncated { received: 3, expected: 5, .. })
        ));
    }

    proptest! {
        #[test]
        fn body_in_any_chunks_verifies(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
            cuts.push(0);
            cuts.push(body.len());
            cuts.sort_unstable();
            let mut receiver = receiver_for(&body);
            for pair in cuts.windows(2) {
                prop_assert_eq!(receiver.handle_bytes(&body[pair[0]..pair[1]]), Ok(()));
            }
            prop_assert_eq!(receiver.finish(), Ok(header_for(&body)));
        }
    }
}

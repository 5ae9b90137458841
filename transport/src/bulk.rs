//! Bulk streams: [`BulkSender`] writes a [`BulkHeader`] and the raw bytes; [`BulkIncoming`] checks them with a [`BulkReceiver`] before handing anything over.
//!
//! A bulk stream is one unidirectional QUIC stream: a `BulkHeader` frame,
//! exactly `total_len` bytes, then the end of the stream. Flow control is
//! QUIC's. A stream that is reset, cut by a lost connection, or finished
//! early is a truncated transfer; bytes that do not match the announced
//! checksum are a corrupt one. Either way the receiver gets an error and
//! never the partial payload.
//!
//! Receiving takes the stream's chunks as they arrived (views of the
//! packets, no copies) many at a time and only counts them; a blocking
//! thread hashes them and puts them in memory or, in large writes, in the
//! file, so the flow-control window keeps opening while the body is
//! hashed. The verdict waits for that thread.

use std::path::{Path, PathBuf};

use std::io::Write;

use bytes::Bytes;
use rustle_protocol::{BodyHasher, BulkError, BulkHeader, BulkReceiver, FrameDecoder, Sha256Digest, encode_frame};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::connection::Connection;
use crate::error::{Peer, PeerFailure, TransportError, from_connection_error, from_read_error, stream_code};

/// Size of the pieces a file is sent in.
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks taken from a bulk stream at once (each is the data of one packet).
const CHUNKS_PER_READ: usize = 64;
/// Bytes handed to the hashing thread at once.
const BATCH_LEN: usize = 1024 * 1024;
/// Batches on their way to the hashing thread before reading waits for it
/// (and the stream's flow control holds the sender back).
const BATCHES_IN_FLIGHT: usize = 8;
/// Size of the writes when a body is saved to a file.
const FILE_WRITE: usize = 8 * 1024 * 1024;
/// Largest header frame accepted (a file name and a few numbers).
const MAX_HEADER_FRAME: u32 = 64 * 1024;
/// Most memory reserved up front for an in-memory body.
const MAX_PREALLOCATION: u64 = 64 * 1024 * 1024;

/// The sending end of a bulk stream, created by [`Connection::open_bulk`].
/// Dropping it before [`finish`](Self::finish) resets the stream, so the
/// receiver sees a truncated transfer rather than a short one.
#[derive(Debug)]
pub struct BulkSender {
    send: quinn::SendStream,
    header: BulkHeader,
    written: u64,
    peer: Peer,
    done: bool,
}

impl BulkSender {
    /// The header sent first.
    pub fn header(&self) -> &BulkHeader {
        &self.header
    }

    /// Bytes of the body written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the next bytes of the body; refuses bytes past `total_len`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let remaining = self.header.total_len - self.written;
        if bytes.len() as u64 > remaining {
            self.abort_stream();
            return Err(self.mismatch(format!(
                "{} more bytes were written than the {} its header announced",
                bytes.len() as u64 - remaining,
                self.header.total_len
            )));
        }
        self.send.write_all(bytes).await.map_err(|error| self.write_error(error))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the contents of the file at `path` as the next bytes of the
    /// body, and returns how many there were.
    pub async fn write_file(&mut self, path: &Path) -> Result<u64, TransportError> {
        let mut file = tokio::fs::File::open(path).await.map_err(file_error("open", path))?;
        let mut buffer = vec![0; READ_CHUNK];
        let mut total = 0;
        loop {
            let read = file.read(&mut buffer).await.map_err(file_error("read", path))?;
            if read == 0 {
                return Ok(total);
            }
            self.write_all(&buffer[..read]).await?;
            total += read as u64;
        }
    }

    /// Ends the stream and waits until the receiver has all of it. Refuses
    /// (and resets the stream) if fewer bytes were written than announced.
    pub async fn finish(mut self) -> Result<(), TransportError> {
        if self.written != self.header.total_len {
            self.abort_stream();
            return Err(self.mismatch(format!(
                "only {} of the {} bytes its header announced were written",
                self.written, self.header.total_len
            )));
        }
        self.done = true;
        // Finishing twice is the only failure, and `done` rules it out.
        let _ = self.send.finish();
        match self.send.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(self.stopped(code)),
            Err(quinn::StoppedError::ConnectionLost(error)) => Err(from_connection_error(&self.peer, error)),
            Err(error @ quinn::StoppedError::ZeroRttRejected) => Err(TransportError::Peer {
                peer: self.peer.clone(),
                kind: PeerFailure::Protocol { reason: error.to_string() },
            }),
        }
    }

    /// Gives up: resets the stream, so the receiver reports a truncated transfer.
    pub fn abort(mut self) {
        self.abort_stream();
    }

    fn abort_stream(&mut self) {
        if !self.done {
            self.done = true;
            // Fails only if the stream is already finished or reset.
            let _ = self.send.reset(quinn::VarInt::from_u32(stream_code::BULK_ABORTED));
        }
    }

    fn mismatch(&self, reason: String) -> TransportError {
        TransportError::Peer {
            peer: self.peer.clone(),
            kind: PeerFailure::BulkMismatch { kind: self.header.kind, job: self.header.job, reason },
        }
    }

    fn stopped(&self, code: quinn::VarInt) -> TransportError {
        TransportError::Peer {
            peer: self.peer.clone(),
            kind: PeerFailure::BulkStoppedByPeer {
                kind: self.header.kind,
                job: self.header.job,
                code: code.into_inner(),
            },
        }
    }

    fn write_error(&self, error: quinn::WriteError) -> TransportError {
        match error {
            quinn::WriteError::Stopped(code) => self.stopped(code),
            quinn::WriteError::ConnectionLost(error) => from_connection_error(&self.peer, error),
            error => TransportError::Peer {
                peer: self.peer.clone(),
                kind: PeerFailure::Protocol {
                    reason: format!("the {} stream for job {} failed: {error}", self.header.kind, self.header.job),
                },
            },
        }
    }
}

impl Drop for BulkSender {
    fn drop(&mut self) {
        self.abort_stream();
    }
}

/// Opens a bulk stream to `connection`'s peer and sends `header`.
pub(crate) async fn open(connection: &Connection, header: BulkHeader) -> Result<BulkSender, TransportError> {
    let peer = connection.peer().clone();
    // The receiver would refuse an unsafe file name; say so before sending anything.
    if let Err(error @ BulkError::UnsafeFileName { .. }) = BulkReceiver::new(header.clone(), u64::MAX) {
        return Err(TransportError::Peer {
            peer,
            kind: PeerFailure::BulkMismatch { kind: header.kind, job: header.job, reason: error.to_string() },
        });
    }
    let frame = encode_frame(&header)
        .map_err(|source| TransportError::Peer { peer: peer.clone(), kind: PeerFailure::Codec { source } })?;
    let send = connection.quinn().open_uni().await.map_err(|error| from_connection_error(&peer, error))?;
    let mut sender = BulkSender { send, header, written: 0, peer, done: false };
    sender.send.write_all(&frame).await.map_err(|error| sender.write_error(error))?;
    Ok(sender)
}

/// Accepts the next bulk stream on `connection` and reads its header.
pub(crate) async fn accept(connection: &Connection, max_len: u64) -> Result<BulkIncoming, TransportError> {
    let peer = connection.peer().clone();
    let mut recv = connection.quinn().accept_uni().await.map_err(|error| from_connection_error(&peer, error))?;
    connection
        .bounded("waiting for a bulk stream's header", async {
            let mut decoder = FrameDecoder::with_max_frame_len(MAX_HEADER_FRAME);
            let codec = |source| TransportError::Peer { peer: peer.clone(), kind: PeerFailure::Codec { source } };
            let header = loop {
                if let Some(header) = decoder.poll_message::<BulkHeader>().map_err(codec)? {
                    break header;
                }
                match recv.read_chunk(MAX_HEADER_FRAME as usize, true).await {
                    Ok(Some(chunk)) => decoder.push_bytes(&chunk.bytes),
                    Ok(None) => {
                        decoder.finish().map_err(codec)?;
                        return Err(TransportError::Peer {
                            peer: peer.clone(),
                            kind: PeerFailure::Protocol {
                                reason: "it ended a bulk stream before sending its header".into(),
                            },
                        });
                    }
                    Err(quinn::ReadError::Reset(code)) => {
                        return Err(TransportError::Peer {
                            peer: peer.clone(),
                            kind: PeerFailure::BulkAbandoned {
                                cause: format!("the sender reset the stream with code {code}"),
                            },
                        });
                    }
                    Err(error) => return Err(from_read_error(&peer, error, "bulk stream")),
                }
            };
            let receiver = BulkReceiver::new(header, max_len).map_err(|source| {
                let _ = recv.stop(quinn::VarInt::from_u32(stream_code::BULK_REFUSED));
                TransportError::Peer { peer: peer.clone(), kind: PeerFailure::Bulk { source: Box::new(source) } }
            })?;
            Ok(BulkIncoming { recv, receiver, leftover: decoder.take_buffered(), peer: peer.clone() })
        })
        .await
}

/// A bulk stream whose header has arrived. Its body is handed over only
/// after it is complete and matches the header's checksum.
#[derive(Debug)]
pub struct BulkIncoming {
    recv: quinn::RecvStream,
    receiver: BulkReceiver,
    leftover: Vec<u8>,
    peer: Peer,
}

impl BulkIncoming {
    /// What the sender announced.
    pub fn header(&self) -> &BulkHeader {
        self.receiver.header()
    }

    /// The sender.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Receives the whole body into memory and returns it once verified.
    /// Bounded only by the connection's idle timeout: apply the job's
    /// deadline around it.
    pub async fn read_to_vec(mut self) -> Result<Vec<u8>, TransportError> {
        let capacity = self.header().total_len.min(MAX_PREALLOCATION);
        let body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        match self.receive(Sink::Memory(body)).await? {
            Sink::Memory(body) => Ok(body),
            Sink::File(_) => unreachable!("a memory sink stays one"),
        }
    }

    /// Receives the body into `path`: it is written to a hidden sibling
    /// file and renamed to `path` only once verified; on any failure the
    /// sibling is removed and `path` is left untouched.
    pub async fn save_to_file(mut self, path: &Path) -> Result<BulkHeader, TransportError> {
        let partial = partial_path(path);
        let result = self.save_partial(&partial, path).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    /// Refuses the transfer without reading it: the sender's
    /// [`BulkSender::finish`] fails with [`TransportError::Peer { kind: PeerFailure::BulkStoppedByPeer, .. }`].
    pub fn refuse(mut self) {
        // Fails only if the stream already ended.
        let _ = self.recv.stop(quinn::VarInt::from_u32(stream_code::BULK_REFUSED));
    }

    async fn save_partial(&mut self, partial: &Path, path: &Path) -> Result<BulkHeader, TransportError> {
        let file = tokio::fs::File::create(partial).await.map_err(file_error("create", partial))?;
        let file = std::io::BufWriter::with_capacity(FILE_WRITE, file.into_std().await);
        self.receive(Sink::File(file)).await.map_err(|error| match error {
            TransportError::File { source, .. } => file_error("write", partial)(source),
            error => error,
        })?;
        tokio::fs::rename(partial, path).await.map_err(file_error("move the verified transfer to", path))?;
        Ok(self.header().clone())
    }

    /// Reads the body to its end and returns `sink` with all of it, once its
    /// length and checksum are verified. This task only reads the stream
    /// and counts; a blocking thread hashes the bytes and puts them in
    /// `sink` as they come, so the stream's flow-control window keeps
    /// opening while they are hashed. On any failure the thread is waited
    /// for (a file is closed) before the error is returned.
    async fn receive(&mut self, sink: Sink) -> Result<Sink, TransportError> {
        let (batches, worker) = spawn_worker(sink);
        let read = self.read_into(&batches).await;
        drop(batches);
        let done = match worker.await {
            Ok(done) => done,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(std::io::Error::other("the runtime shut down during the transfer")),
        };
        read?;
        let (digest, sink) = done.map_err(|source| TransportError::File {
            action: "write",
            path: PathBuf::from(&self.header().file_name),
            source,
        })?;
        self.verify(digest)?;
        Ok(sink)
    }

    /// Reads the stream to its end, counting every chunk and handing the
    /// chunks to the worker in batches (no copies: each is a view of the
    /// packet it came in). Ends early, with no error, if the worker has
    /// stopped (its own error says why).
    async fn read_into(&mut self, batches: &mpsc::Sender<Vec<Bytes>>) -> Result<(), TransportError> {
        let mut batch = Vec::new();
        let mut batch_len = 0;
        if !self.leftover.is_empty() {
            let leftover = Bytes::from(std::mem::take(&mut self.leftover));
            self.count(leftover.len())?;
            batch_len += leftover.len();
            batch.push(leftover);
        }
        let mut chunks = vec![Bytes::new(); CHUNKS_PER_READ];
        loop {
            let read = match self.recv.read_chunks(&mut chunks).await {
                Ok(Some(read)) => read,
                Ok(None) => break,
                Err(quinn::ReadError::Reset(code)) => {
                    return Err(self.cut_short(format!("the sender reset the stream with code {code}")));
                }
                Err(quinn::ReadError::ConnectionLost(error)) => {
                    let cause = from_connection_error(&self.peer, error).to_string();
                    return Err(self.cut_short(cause));
                }
                Err(error) => return Err(from_read_error(&self.peer, error, "bulk stream")),
            };
            for chunk in &mut chunks[..read] {
                self.count(chunk.len())?;
                batch_len += chunk.len();
                batch.push(std::mem::take(chunk));
            }
            if batch_len >= BATCH_LEN {
                batch_len = 0;
                if batches.send(std::mem::take(&mut batch)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.send(batch).await;
        }
        Ok(())
    }

    /// Counts the next `len` bytes of the body; past the announced length,
    /// stops the stream and fails.
    fn count(&mut self, len: usize) -> Result<(), TransportError> {
        self.receiver.count_bytes(len as u64).map_err(|source| {
            let _ = self.recv.stop(quinn::VarInt::from_u32(stream_code::BULK_REFUSED));
            TransportError::Peer { peer: self.peer.clone(), kind: PeerFailure::Bulk { source: Box::new(source) } }
        })
    }

    /// At the end of the stream: all bytes there and matching the checksum?
    fn verify(&self, digest: Sha256Digest) -> Result<(), TransportError> {
        match self.receiver.clone().finish_with_digest(digest) {
            Ok(_) => Ok(()),
            Err(source @ BulkError::Truncated { .. }) => Err(TransportError::Peer {
                peer: self.peer.clone(),
                kind: PeerFailure::BulkCutShort {
                    source: Box::new(source),
                    cause: "the sender ended the stream early".into(),
                },
            }),
            Err(source) => Err(TransportError::Peer {
                peer: self.peer.clone(),
                kind: PeerFailure::Bulk { source: Box::new(source) },
            }),
        }
    }

    fn cut_short(&self, cause: String) -> TransportError {
        let header = self.receiver.header();
        TransportError::Peer {
            peer: self.peer.clone(),
            kind: PeerFailure::BulkCutShort {
                source: Box::new(BulkError::Truncated {
                    kind: header.kind,
                    job: header.job,
                    received: self.receiver.received(),
                    expected: header.total_len,
                }),
                cause,
            },
        }
    }
}

fn file_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TransportError + use<> {
    let path = path.to_owned();
    move |source| TransportError::File { action, path, source }
}

/// `dir/.name.partial` for `dir/name`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// Where a body goes while it is hashed.
enum Sink {
    Memory(Vec<u8>),
    File(std::io::BufWriter<std::fs::File>),
}

impl Sink {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Memory(body) => {
                body.extend_from_slice(bytes);
                Ok(())
            }
            Self::File(file) => file.write_all(bytes),
        }
    }

    /// Writes out what is buffered and syncs a file to disk.
    fn close(&mut self) -> std::io::Result<()> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::File(file) => {
                file.flush()?;
                file.get_ref().sync_all()
            }
        }
    }
}

/// The hashing thread: once its batches end, the body's digest and the sink holding it.
type Worker = tokio::task::JoinHandle<std::io::Result<(Sha256Digest, Sink)>>;

/// Starts the blocking thread that hashes the batches sent to it, in
/// order, and puts them in `sink`; once the sender is dropped it returns
/// the digest and the sink (a file written out and synced). It stops at the
/// first write that fails, which the sending side notices as a closed channel.
fn spawn_worker(sink: Sink) -> (mpsc::Sender<Vec<Bytes>>, Worker) {
    let (batches, mut received) = mpsc::channel::<Vec<Bytes>>(BATCHES_IN_FLIGHT);
    let worker = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let mut hasher = BodyHasher::new();
        while let Some(batch) = received.blocking_recv() {
            for bytes in &batch {
                hasher.update(bytes);
                sink.put(bytes)?;
            }
        }
        sink.close()?;
        Ok((hasher.finish(), sink))
    });
    (batches, worker)
}

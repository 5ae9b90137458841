//! The control stream: [`ControlStream`] (and its halves) carrying framed messages after the version handshake.

use std::time::Duration;

use rustle_protocol::{FrameDecoder, Hello, WireMessage, check_compatibility, encode_frame};

use crate::connection::Connection;
use crate::error::{
    Peer, PeerFailure, TransportError, close_code, from_connection_error, from_read_error, from_write_error,
};

/// Largest piece read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// How long a failed handshake waits for the peer to read our hello before closing.
const LINGER: Duration = Duration::from_secs(3);

/// The connection's one bidirectional stream of frames, after a successful
/// version handshake. Split it with [`into_split`](Self::into_split) to read
/// and write from different tasks.
#[derive(Debug)]
pub struct ControlStream {
    sender: ControlSender,
    receiver: ControlReceiver,
    peer_hello: Hello,
}

impl ControlStream {
    /// The hello the peer sent.
    pub fn peer_hello(&self) -> &Hello {
        &self.peer_hello
    }

    /// Sends one message as a frame.
    pub async fn send<M: WireMessage>(&mut self, message: &M) -> Result<(), TransportError> {
        self.sender.send(message).await
    }

    /// The next message, or `None` when the peer finished the stream cleanly.
    /// Cancel-safe: no bytes are lost if the future is dropped.
    pub async fn recv<M: WireMessage>(&mut self) -> Result<Option<M>, TransportError> {
        self.receiver.recv().await
    }

    /// The sending and receiving halves.
    pub fn into_split(self) -> (ControlSender, ControlReceiver) {
        (self.sender, self.receiver)
    }
}

/// The sending half of a [`ControlStream`].
#[derive(Debug)]
pub struct ControlSender {
    send: quinn::SendStream,
    peer: Peer,
}

impl ControlSender {
    /// Sends one message as a frame. Not cancel-safe: a frame cut off by a
    /// dropped future leaves the stream out of step.
    pub async fn send<M: WireMessage>(&mut self, message: &M) -> Result<(), TransportError> {
        let frame = encode_frame(message)
            .map_err(|source| TransportError::Peer { peer: self.peer.clone(), kind: PeerFailure::Codec { source } })?;
        self.send.write_all(&frame).await.map_err(|error| from_write_error(&self.peer, error, "control stream"))
    }

    /// Ends our side of the stream and waits until the peer has received
    /// everything sent on it.
    pub async fn finish(mut self) -> Result<(), TransportError> {
        // Finishing twice is the only failure, and it cannot happen here.
        let _ = self.send.finish();
        match self.send.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(TransportError::Peer {
                peer: self.peer.clone(),
                kind: PeerFailure::Protocol { reason: format!("it stopped the control stream (code {code})") },
            }),
            Err(quinn::StoppedError::ConnectionLost(error)) => Err(from_connection_error(&self.peer, error)),
            Err(error @ quinn::StoppedError::ZeroRttRejected) => Err(TransportError::Peer {
                peer: self.peer.clone(),
                kind: PeerFailure::Protocol { reason: error.to_string() },
            }),
        }
    }
}

/// The receiving half of a [`ControlStream`].
#[derive(Debug)]
pub struct ControlReceiver {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    peer: Peer,
}

impl ControlReceiver {
    /// The next message, or `None` when the peer finished the stream cleanly
    /// at a frame boundary. Cancel-safe: no bytes are lost if the future is dropped.
    pub async fn recv<M: WireMessage>(&mut self) -> Result<Option<M>, TransportError> {
        let codec =
            |peer: &Peer, source| TransportError::Peer { peer: peer.clone(), kind: PeerFailure::Codec { source } };
        loop {
            if let Some(message) = self.decoder.poll_message().map_err(|source| codec(&self.peer, source))? {
                return Ok(Some(message));
            }
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.decoder.push_bytes(&chunk.bytes),
                Ok(None) => {
                    self.decoder.finish().map_err(|source| codec(&self.peer, source))?;
                    return Ok(None);
                }
                Err(error) => return Err(from_read_error(&self.peer, error, "control stream")),
            }
        }
    }

    /// Reads and discards until the peer finishes the stream or the connection ends.
    async fn drain(&mut self) {
        while let Ok(Some(_)) = self.recv.read_chunk(READ_CHUNK, true).await {}
    }
}

/// Sends `ours`, reads the peer's hello and checks the two. On a mismatch,
/// lets the peer read our hello (so it can say the same), then closes the
/// connection with the reason.
pub(crate) async fn handshake(
    connection: &Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    ours: Hello,
) -> Result<ControlStream, TransportError> {
    let peer = connection.peer().clone();
    let mut sender = ControlSender { send, peer: peer.clone() };
    let mut receiver = ControlReceiver { recv, decoder: FrameDecoder::new(), peer: peer.clone() };
    sender.send(&ours).await?;
    let theirs = match receiver.recv::<Hello>().await {
        Ok(Some(theirs)) => theirs,
        Ok(None) => {
            return Err(TransportError::Peer {
                peer,
                kind: PeerFailure::Protocol { reason: "it ended the control stream before sending its hello".into() },
            });
        }
        Err(error) => return Err(error),
    };
    if let Err(source) = check_compatibility(&ours, &theirs) {
        let _ = sender.send.finish();
        let linger = LINGER.min(connection.handshake_timeout());
        let _ = tokio::time::timeout(linger, receiver.drain()).await;
        connection.close_with(close_code::HANDSHAKE, &source.to_string());
        return Err(TransportError::Peer { peer, kind: PeerFailure::Handshake { source: Box::new(source) } });
    }
    Ok(ControlStream { sender, receiver, peer_hello: theirs })
}

//! A blocking TLS stream over any `Read + Write` (a `TcpStream`): the handshake driven to
//! completion, then [`super::TlsSession`]'s record layer. For the threads that talk TLS one
//! connection at a time: the Rust client, the load generator, cluster control lanes, tests;
//! [`TlsStream::split`] gives a reading and a writing half for two threads.
//! Socket timeouts are the caller's (`set_read_timeout` on the `TcpStream` bounds the
//! handshake too).

use super::halves::{Inbound, Outbound, TlsReader, TlsWriter};
use super::handshake::{Established, Handshake, Progress};
use super::reason::Failure;
use super::session::TlsSession;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

pub struct TlsStream<S> {
    sock: S,
    inbound: Inbound,
    outbound: Outbound,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("inbound", &self.inbound)
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

/// A handshake failure as an I/O error (`InvalidData`, the reason as its text), or the I/O
/// error that interrupted it.
fn handshake_error(failure: Failure) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, failure.text)
}

/// Drives `handshake` over `sock` until it is done.
pub fn drive<S: Read + Write>(mut handshake: Handshake, sock: &mut S) -> io::Result<Established> {
    let mut chunk = vec![0; 16 << 10];
    loop {
        let progress = handshake.advance();
        if !handshake.outgoing().is_empty() {
            let sent = sock
                .write_all(handshake.outgoing())
                .and_then(|()| sock.flush());
            let n = handshake.outgoing().len();
            handshake.consume_outgoing(n);
            // A failure's alert is sent best-effort: the failure is what is reported.
            if progress.is_ok() {
                sent?;
            }
        }
        match progress.map_err(handshake_error)? {
            Progress::Done => return handshake.finish().map_err(handshake_error),
            Progress::NeedBytes => {
                let n = sock.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the TLS handshake",
                    ));
                }
                handshake.receive(&chunk[..n]).map_err(handshake_error)?;
            }
        }
    }
}

impl<S: Read + Write> TlsStream<S> {
    /// Dials: the handshake as the client, presenting the config's certificate if the
    /// server asks for one.
    pub fn connect(
        mut sock: S,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream<S>> {
        let handshake = Handshake::client(config, name).map_err(handshake_error)?;
        let established = drive(handshake, &mut sock)?;
        TlsStream::over(sock, established)
    }

    /// Accepts: the handshake as the server.
    pub fn accept(mut sock: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let handshake = Handshake::server(config).map_err(handshake_error)?;
        let established = drive(handshake, &mut sock)?;
        TlsStream::over(sock, established)
    }

    /// A stream over a completed handshake.
    pub fn over(sock: S, established: Established) -> io::Result<TlsStream<S>> {
        let Established {
            session,
            early_plaintext,
            leftover,
        } = established;
        let (receiver, sender) = session.split();
        Ok(TlsStream {
            sock,
            inbound: Inbound::new(receiver, early_plaintext, leftover)?,
            outbound: Outbound::new(sender),
        })
    }

    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    /// Plaintext received and not yet read: `read` returns it without touching the socket.
    pub fn buffered(&self) -> usize {
        self.inbound.buffered()
    }

    /// Sends close_notify (after what was written): the peer reads the end of the stream.
    pub fn close(&mut self) -> io::Result<()> {
        self.outbound.close(&mut self.sock)
    }

    /// Sends all of `buf` now, with anything written before it, in as few records as fit.
    pub fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.outbound.send(&mut self.sock, buf)
    }

    /// The reading and the writing half, each over its own handle of the connection
    /// (`write_sock`: another handle of `self`'s socket, such as a `try_clone`), for a
    /// connection read on one thread and written on another. Written and not flushed stays
    /// with the writer; received and not read, with the reader.
    pub fn split_with(self, write_sock: S) -> (TlsReader<S>, TlsWriter<S>) {
        let reader = TlsReader {
            sock: self.sock,
            inbound: self.inbound,
        };
        let writer = TlsWriter {
            sock: write_sock,
            outbound: self.outbound,
        };
        (reader, writer)
    }
}

impl<S> TlsStream<S> {
    /// Takes the stream apart to hand the connection to a worker's record layer: the
    /// socket, the session, and the plaintext received and not yet read. An error when
    /// something written is still unsent (flush first).
    pub fn into_parts(self) -> io::Result<(S, TlsSession, Vec<u8>)> {
        let sender = self.outbound.into_session().ok_or_else(|| {
            io::Error::other("TLS stream taken apart with unsent bytes (flush first)")
        })?;
        let (receiver, unread) = self.inbound.into_parts();
        Ok((self.sock, TlsSession::join(receiver, sender), unread))
    }
}

impl TlsStream<TcpStream> {
    /// [`TlsStream::split_with`] a `try_clone` of the socket.
    pub fn split(self) -> io::Result<(TlsReader<TcpStream>, TlsWriter<TcpStream>)> {
        let write_sock = self.sock.try_clone()?;
        Ok(self.split_with(write_sock))
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.read(&mut self.sock, buf)
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.write(&mut self.sock, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbound.flush(&mut self.sock)
    }
}

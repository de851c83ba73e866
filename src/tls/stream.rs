//! A blocking TLS stream over any `Read + Write` (a `TcpStream`): the handshake driven to
//! completion, then [`TlsSession`]'s record layer. For the threads that talk TLS one
//! connection at a time: the Rust client, the load generator, cluster control lanes, tests.
//! Socket timeouts are the caller's (`set_read_timeout` on the `TcpStream` bounds the
//! handshake too).

use super::handshake::{Established, Handshake, Progress};
use super::reason::Failure;
use super::record::{RECORD_CIPHERTEXT_MAX, RECORD_HEADER_LEN, RECORD_PLAINTEXT_MAX};
use super::session::TlsSession;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Bytes read from the socket at a time: one whole record of the largest size.
const READ_CHUNK_BYTES: usize = RECORD_HEADER_LEN + RECORD_CIPHERTEXT_MAX;

pub struct TlsStream<S> {
    sock: S,
    session: TlsSession,
    /// Ciphertext read, opened in place.
    received: Vec<u8>,
    /// Plaintext not yet returned by `read`, from `plain_at`.
    plain: Vec<u8>,
    plain_at: usize,
    /// Records being written: sealed ones, then the open one from `open_at`.
    out: Vec<u8>,
    open_at: Option<usize>,
    peer_closed: bool,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("session", &self.session)
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
        let mut stream = TlsStream {
            sock,
            session,
            received: Vec::new(),
            plain: early_plaintext,
            plain_at: 0,
            out: Vec::new(),
            open_at: None,
            peer_closed: false,
        };
        if !leftover.is_empty() {
            let mut leftover = leftover;
            stream.open_received(&mut leftover)?;
        }
        Ok(stream)
    }

    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    /// Plaintext received and not yet read: `read` returns it without touching the socket.
    pub fn buffered(&self) -> usize {
        self.plain.len() - self.plain_at
    }

    /// Opens `ciphertext` and appends its plaintext to what `read` returns.
    fn open_received(&mut self, ciphertext: &mut [u8]) -> io::Result<()> {
        let opened = self
            .session
            .open(ciphertext)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if self.plain_at == self.plain.len() {
            self.plain.clear();
            self.plain_at = 0;
        }
        if let Some(range) = opened.carried {
            self.plain.extend_from_slice(self.session.carried(range));
        }
        self.plain.extend_from_slice(&ciphertext[..opened.in_place]);
        self.peer_closed |= opened.peer_closed;
        Ok(())
    }

    /// Sends close_notify (after what was written): the peer reads the end of the stream.
    pub fn close(&mut self) -> io::Result<()> {
        self.seal_open()?;
        self.session
            .seal_close_notify(&mut self.out)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.send_out()
    }

    fn seal_open(&mut self) -> io::Result<()> {
        if let Some(at) = self.open_at.take() {
            self.session
                .seal(&mut self.out, at)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn send_out(&mut self) -> io::Result<()> {
        self.sock.write_all(&self.out)?;
        self.out.clear();
        self.sock.flush()
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.buffered() == 0 && !self.peer_closed {
            self.received.resize(READ_CHUNK_BYTES, 0);
            let n = self.sock.read(&mut self.received)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed without TLS close_notify (truncated?)",
                ));
            }
            let mut received = std::mem::take(&mut self.received);
            let opened = self.open_received(&mut received[..n]);
            self.received = received;
            opened?;
        }
        let n = buf.len().min(self.buffered());
        buf[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        Ok(n)
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = match self.open_at {
            Some(at) => at,
            None => {
                let at = TlsSession::reserve_record(&mut self.out);
                self.open_at = Some(at);
                at
            }
        };
        let room = RECORD_PLAINTEXT_MAX - (self.out.len() - at - RECORD_HEADER_LEN);
        let n = buf.len().min(room);
        self.out.extend_from_slice(&buf[..n]);
        if n == room {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.seal_open()?;
        self.send_out()
    }
}

//! The two directions of a blocking TLS stream: [`Inbound`] opens the records read from a
//! socket, [`Outbound`] seals what is written into records. [`super::TlsStream`] holds both
//! over one socket; [`TlsStream::split`](super::TlsStream::split) gives each its own socket
//! handle ([`TlsReader`], [`TlsWriter`]), so one thread reads while another writes.
//!
//! A read opens the records in place. When the caller's buffer can take a whole read of
//! ciphertext, the socket is read straight into it and the plaintext returned where it was
//! opened (a record cut by the end of the previous read is finished first, its plaintext
//! copied in front); otherwise through a buffer of our own.

use super::record::{RECORD_CIPHERTEXT_MAX, RECORD_HEADER_LEN, RECORD_PLAINTEXT_MAX};
use super::session::{TlsReceiver, TlsSender};
use std::io::{self, Read, Write};

/// Bytes read from the socket at a time into our own buffer: one whole record of the largest
/// size.
const READ_CHUNK_BYTES: usize = RECORD_HEADER_LEN + RECORD_CIPHERTEXT_MAX;

fn session_error(e: super::SessionError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed without TLS close_notify (truncated?)",
    )
}

/// The receiving direction: a [`TlsReceiver`] and the plaintext not yet read.
pub(super) struct Inbound {
    session: TlsReceiver,
    /// Ciphertext read, opened in place.
    received: Vec<u8>,
    /// Plaintext not yet returned by `read`, from `plain_at`.
    plain: Vec<u8>,
    plain_at: usize,
    peer_closed: bool,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("session", &self.session)
            .field("buffered", &self.buffered())
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// After a handshake: `early` plaintext came with it, `leftover` is ciphertext read past
    /// its end.
    pub(super) fn new(
        session: TlsReceiver,
        early: Vec<u8>,
        mut leftover: Vec<u8>,
    ) -> io::Result<Inbound> {
        let mut inbound = Inbound {
            session,
            received: Vec::new(),
            plain: early,
            plain_at: 0,
            peer_closed: false,
        };
        if !leftover.is_empty() {
            inbound.open_buffered(&mut leftover)?;
        }
        Ok(inbound)
    }

    /// Plaintext received and not yet read.
    pub(super) fn buffered(&self) -> usize {
        self.plain.len() - self.plain_at
    }

    /// The session and the plaintext received and not yet read (its partial record stays
    /// in the session).
    pub(super) fn into_parts(self) -> (TlsReceiver, Vec<u8>) {
        let unread = self.plain.get(self.plain_at..).unwrap_or_default().to_vec();
        (self.session, unread)
    }

    /// Opens `ciphertext` and appends its plaintext to what `read` returns.
    fn open_buffered(&mut self, ciphertext: &mut [u8]) -> io::Result<()> {
        let opened = self.session.open(ciphertext).map_err(session_error)?;
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

    pub(super) fn read<S: Read>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.buffered() == 0 && !self.peer_closed {
            if buf.len() >= READ_CHUNK_BYTES + RECORD_PLAINTEXT_MAX {
                if let Some(n) = self.read_direct(sock, buf)? {
                    return Ok(n);
                }
                continue;
            }
            self.received.resize(READ_CHUNK_BYTES, 0);
            let n = sock.read(&mut self.received)?;
            if n == 0 {
                return Err(truncated());
            }
            let mut received = std::mem::take(&mut self.received);
            let opened = self.open_buffered(&mut received[..n]);
            self.received = received;
            opened?;
        }
        let n = buf.len().min(self.buffered());
        buf[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        Ok(n)
    }

    /// Reads ciphertext into `buf` behind room for a carried record's plaintext and opens it
    /// there. `Some(n)`: `buf[..n]` is plaintext (n > 0); `None`: nothing yet (a record is
    /// still cut, or only control records came), or more than fits was left in `plain`.
    fn read_direct<S: Read>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // The record a previous read cut yields at most this much plaintext, copied in front.
        let room = self.session.cut_plaintext_max();
        let n = sock.read(&mut buf[room..])?;
        if n == 0 {
            return Err(truncated());
        }
        let opened = self
            .session
            .open(&mut buf[room..room + n])
            .map_err(session_error)?;
        self.peer_closed |= opened.peer_closed;
        let carried = match opened.carried {
            Some(range) => self.session.carried(range),
            None => &[],
        };
        let (c, total) = (carried.len(), carried.len() + opened.in_place);
        if c > room {
            // Never, as the header bounds the record; kept whole through `plain` if it were.
            self.plain.clear();
            self.plain_at = 0;
            self.plain.extend_from_slice(carried);
            self.plain
                .extend_from_slice(&buf[room..room + opened.in_place]);
            return Ok(None);
        }
        if c < room {
            // A short (padded or control) record: move the in-place plaintext up behind it.
            buf.copy_within(room..room + opened.in_place, c);
        }
        buf[..c].copy_from_slice(carried);
        Ok((total > 0).then_some(total))
    }
}

/// The sending direction: a [`TlsSender`] and the records being written.
pub(super) struct Outbound {
    session: TlsSender,
    /// Records being written: sealed ones, then the open one from `open_at`.
    out: Vec<u8>,
    open_at: Option<usize>,
}

impl Outbound {
    /// The session, once everything written has been sent (`None` while bytes are unsent:
    /// they would be lost).
    pub(super) fn into_session(self) -> Option<TlsSender> {
        (self.out.is_empty() && self.open_at.is_none()).then_some(self.session)
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("session", &self.session)
            .field("unsent", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Outbound {
    pub(super) fn new(session: TlsSender) -> Outbound {
        Outbound {
            session,
            out: Vec::new(),
            open_at: None,
        }
    }

    /// Takes what fits the open record (opening one); a full record is sent.
    pub(super) fn write<S: Write>(&mut self, sock: &mut S, buf: &[u8]) -> io::Result<usize> {
        let at = match self.open_at {
            Some(at) => at,
            None => {
                let at = self.session.reserve_record(&mut self.out);
                self.open_at = Some(at);
                at
            }
        };
        let room = RECORD_PLAINTEXT_MAX - (self.out.len() - at - self.session.record_prefix_len());
        let n = buf.len().min(room);
        self.out.extend_from_slice(&buf[..n]);
        if n == room {
            self.flush(sock)?;
        }
        Ok(n)
    }

    /// Seals `buf` whole (as many records as it takes) and sends it with what was written
    /// before: one socket write for a burst of frames.
    pub(super) fn send<S: Write>(&mut self, sock: &mut S, buf: &[u8]) -> io::Result<()> {
        let mut rest = buf;
        // A record at a time, each copied behind its header and sealed while it is in cache
        // (one whole copy then a spread over records would move the bytes twice).
        while !rest.is_empty() || self.open_at.is_some() {
            let at = match self.open_at.take() {
                Some(at) => at,
                None => self.session.reserve_record(&mut self.out),
            };
            let room =
                RECORD_PLAINTEXT_MAX - (self.out.len() - at - self.session.record_prefix_len());
            let (now, later) = rest.split_at(rest.len().min(room));
            self.out.extend_from_slice(now);
            self.session
                .seal(&mut self.out, at)
                .map_err(|e| io::Error::other(e.to_string()))?;
            rest = later;
        }
        self.send_out(sock)
    }

    /// Seals the open record and sends every sealed one.
    pub(super) fn flush<S: Write>(&mut self, sock: &mut S) -> io::Result<()> {
        self.seal_open()?;
        self.send_out(sock)
    }

    /// Sends close_notify after what was written.
    pub(super) fn close<S: Write>(&mut self, sock: &mut S) -> io::Result<()> {
        self.seal_open()?;
        self.session
            .seal_close_notify(&mut self.out)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.send_out(sock)
    }

    fn seal_open(&mut self) -> io::Result<()> {
        if let Some(at) = self.open_at.take() {
            self.session
                .seal(&mut self.out, at)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn send_out<S: Write>(&mut self, sock: &mut S) -> io::Result<()> {
        let sent = sock.write_all(&self.out);
        // Sent or not, these records are spent: resending a part would break the stream.
        self.out.clear();
        sent?;
        sock.flush()
    }
}

/// The reading half of a split [`super::TlsStream`].
#[derive(Debug)]
pub struct TlsReader<S> {
    pub(super) sock: S,
    pub(super) inbound: Inbound,
}

/// The writing half of a split [`super::TlsStream`]. Writes fill records; `flush` seals and
/// sends them.
#[derive(Debug)]
pub struct TlsWriter<S> {
    pub(super) sock: S,
    pub(super) outbound: Outbound,
}

impl<S> TlsReader<S> {
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// Plaintext received and not yet read: `read` returns it without touching the socket.
    pub fn buffered(&self) -> usize {
        self.inbound.buffered()
    }
}

impl<S> TlsWriter<S> {
    pub fn get_ref(&self) -> &S {
        &self.sock
    }
}

impl<S: Write> TlsWriter<S> {
    /// Sends all of `buf` now, with anything written before it, in as few records as fit.
    pub fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.outbound.send(&mut self.sock, buf)
    }

    /// Sends close_notify (after what was written): the peer reads the end of the stream.
    pub fn close(&mut self) -> io::Result<()> {
        self.outbound.close(&mut self.sock)
    }
}

impl<S: Read> Read for TlsReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.read(&mut self.sock, buf)
    }
}

impl<S: Write> Write for TlsWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.write(&mut self.sock, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbound.flush(&mut self.sock)
    }
}

#[cfg(test)]
mod tests;

//! A TLS connection's state on its worker: the session (keys, a record cut across receives)
//! and the record being filled in the send buffer.
//!
//! Send: every writer of a TLS connection's `out` calls [`TlsConn::reserve`] first, so `out`
//! is always sealed records followed by at most one open record (its header reserved, its
//! plaintext the frames encoded since). A record is sealed when it has reached 16 KiB (at the
//! next reserve) or when the buffer is handed to the ring, in place: the frame's one copy
//! into `out` is the only copy, and the ciphertext that a partial send leaves is resent,
//! never resealed.

use crate::tls::record::RECORD_PLAINTEXT_MAX;
use crate::tls::{SessionError, TlsSession};

pub struct TlsConn {
    pub session: TlsSession,
    /// Where the open record's reserved header is in `out`.
    open_at: Option<usize>,
    /// Sealing failed (a KeyUpdate the key schedule refused): the connection must close.
    pub failed: Option<SessionError>,
}

impl TlsConn {
    pub fn new(session: TlsSession) -> TlsConn {
        TlsConn {
            session,
            open_at: None,
            failed: None,
        }
    }

    /// Makes `out` end in an open record with room, before a writer appends plaintext: a
    /// record already holding 16 KiB is sealed and a new one opened.
    #[inline]
    pub fn reserve(&mut self, out: &mut Vec<u8>) {
        match self.open_at {
            Some(at) if out.len() - at < RECORD_PLAINTEXT_MAX => {}
            Some(_) => {
                self.seal(out);
                self.open_at = Some(TlsSession::reserve_record(out));
            }
            None => self.open_at = Some(TlsSession::reserve_record(out)),
        }
    }

    /// Seals the open record (before `out` goes to the ring).
    #[inline]
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        if let Some(at) = self.open_at.take() {
            debug_assert!(at < out.len(), "invariant: the open record is in out");
            if let Err(e) = self.session.seal(out, at) {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// `out` was cut back to `start`: a record opened at or after it is gone. (A record
    /// sealed after `start` cannot be cut: sealing happens only in `reserve`, before what a
    /// writer appends, and at the hand-over to the ring.)
    pub fn forget_open_from(&mut self, start: usize) {
        if self.open_at.is_some_and(|at| at >= start) {
            self.open_at = None;
        }
    }

    /// Seals the open record, then close_notify: the last bytes this side sends.
    pub fn seal_close(&mut self, out: &mut Vec<u8>) {
        self.seal(out);
        if let Err(e) = self.session.seal_close_notify(out) {
            self.failed.get_or_insert(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_connection_adds_at_most_64_bytes_to_its_session() {
        // tests/tls_memory.rs measures the session and counts 64 bytes for these fields.
        let own = std::mem::size_of::<TlsConn>() - std::mem::size_of::<TlsSession>();
        assert!(own <= 64, "{own}");
    }
}

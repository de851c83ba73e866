//! A TLS handshake as a sans-IO state machine over rustls's unbuffered connections: the
//! caller passes the bytes it received ([`Handshake::receive`]), calls [`Handshake::advance`]
//! and sends what [`Handshake::outgoing`] holds, until `advance` answers [`Progress::Done`];
//! then [`Handshake::finish`] gives the [`TlsSession`] for the data path, the application
//! data that arrived with the handshake's last flight, and the ciphertext received after it.
//! Handshakes run off the workers (a handshake thread, a dialing thread); the session moves
//! to the worker.

use super::reason::{failure, Failure};
use super::session::TlsSession;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ClientConfig, ServerConfig};
use std::sync::Arc;

/// Bound on the bytes a handshake buffers from its peer: a certificate chain of a few KiB,
/// plus what a client sends with its last flight. 64 KiB: a chain of ten 4 KiB certificates
/// passes, a peer streaming garbage is closed.
pub const HANDSHAKE_BYTES_MAX: usize = 64 << 10;

/// First byte of a TLS handshake record. A connection to a TLS port whose first byte is not
/// this is a plaintext client (`Failure` label `not_tls`).
pub const TLS_HANDSHAKE_RECORD: u8 = 22;

enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// Where a handshake stands after [`Handshake::advance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Send [`Handshake::outgoing`], then wait for bytes from the peer.
    NeedBytes,
    /// Send [`Handshake::outgoing`]; the handshake is complete: call [`Handshake::finish`].
    Done,
}

/// A completed handshake.
#[derive(Debug)]
pub struct Established {
    pub session: TlsSession,
    /// Application data that came with the peer's last flight, already decrypted.
    pub early_plaintext: Vec<u8>,
    /// Ciphertext received after the handshake (at most part of one record is left when
    /// rustls stops; the worker's record layer goes on from it).
    pub leftover: Vec<u8>,
}

pub struct Handshake {
    side: Side,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    early_plaintext: Vec<u8>,
    /// Whether the first byte was checked to be a TLS record (server side).
    seen_first_byte: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The accepting side (a TLS listener, a node accepting a cluster link).
    pub fn server(config: Arc<ServerConfig>) -> Result<Handshake, Failure> {
        let conn = UnbufferedServerConnection::new(config).map_err(|e| failure(&e))?;
        Ok(Handshake::new(Side::Server(conn)))
    }

    /// The dialing side; `name` is what the server's certificate must name.
    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Handshake, Failure> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(|e| failure(&e))?;
        Ok(Handshake::new(Side::Client(conn)))
    }

    fn new(side: Side) -> Handshake {
        Handshake {
            seen_first_byte: matches!(side, Side::Client(_)),
            side,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            early_plaintext: Vec::new(),
        }
    }

    /// Bytes received from the peer.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        if !self.seen_first_byte && !bytes.is_empty() {
            if bytes[0] != TLS_HANDSHAKE_RECORD {
                return Err(Failure::new(
                    "not_tls",
                    "not TLS: a plaintext client on a TLS port",
                ));
            }
            self.seen_first_byte = true;
        }
        if self.incoming.len() + bytes.len() > HANDSHAKE_BYTES_MAX {
            return Err(Failure::new(
                "too_large",
                format!("the handshake exceeds {HANDSHAKE_BYTES_MAX} bytes"),
            ));
        }
        self.incoming.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes to send to the peer (sent before waiting for more, and after an error too: they
    /// may hold the alert that tells the peer why).
    pub fn outgoing(&self) -> &[u8] {
        &self.outgoing
    }

    /// The first `n` bytes of [`Handshake::outgoing`] were sent.
    pub fn consume_outgoing(&mut self, n: usize) {
        self.outgoing.drain(..n);
    }

    /// Runs the handshake as far as the bytes received allow.
    pub fn advance(&mut self) -> Result<Progress, Failure> {
        loop {
            let step = match &mut self.side {
                Side::Server(conn) => step(
                    conn.process_tls_records(&mut self.incoming),
                    &mut self.outgoing,
                    &mut self.early_plaintext,
                ),
                Side::Client(conn) => step(
                    conn.process_tls_records(&mut self.incoming),
                    &mut self.outgoing,
                    &mut self.early_plaintext,
                ),
            };
            match step {
                Step::Again(discard) => {
                    self.incoming.drain(..discard);
                }
                Step::Stop(discard, progress) => {
                    self.incoming.drain(..discard);
                    return Ok(progress);
                }
                Step::Failed(error) => {
                    self.queue_alert();
                    return Err(error);
                }
            }
        }
    }

    /// After an error rustls holds the fatal alert: one more call yields it to send.
    fn queue_alert(&mut self) {
        let mut none: [u8; 0] = [];
        let encoded = match &mut self.side {
            Side::Server(conn) => alert(conn.process_tls_records(&mut none)),
            Side::Client(conn) => alert(conn.process_tls_records(&mut none)),
        };
        self.outgoing.extend_from_slice(&encoded);
    }

    /// The session of a handshake [`Handshake::advance`] reported `Done`.
    pub fn finish(self) -> Result<Established, Failure> {
        let fail = |e: rustls::Error| Failure::new("other", format!("TLS handover: {e}"));
        let session = match self.side {
            Side::Server(conn) => {
                let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(fail)?;
                TlsSession::server(secrets, kernel)
            }
            Side::Client(conn) => {
                let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(fail)?;
                TlsSession::client(secrets, kernel)
            }
        }
        .map_err(|e| Failure::new("other", e.to_string()))?;
        Ok(Established {
            session,
            early_plaintext: self.early_plaintext,
            leftover: self.incoming,
        })
    }
}

enum Step {
    /// Call `process_tls_records` again after discarding this many bytes.
    Again(usize),
    Stop(usize, Progress),
    Failed(Failure),
}

/// One state of rustls's unbuffered handshake, either side.
fn step<Data>(
    status: UnbufferedStatus<'_, '_, Data>,
    outgoing: &mut Vec<u8>,
    early_plaintext: &mut Vec<u8>,
) -> Step {
    let UnbufferedStatus { mut discard, state } = status;
    let state = match state {
        Ok(state) => state,
        Err(e) => return Step::Failed(failure(&e)),
    };
    match state {
        ConnectionState::EncodeTlsData(mut encode) => {
            let start = outgoing.len();
            outgoing.resize(start + 4096, 0);
            loop {
                match encode.encode(&mut outgoing[start..]) {
                    Ok(n) => {
                        outgoing.truncate(start + n);
                        break;
                    }
                    Err(EncodeError::InsufficientSize(e)) => {
                        outgoing.resize(start + e.required_size, 0);
                    }
                    Err(e) => {
                        outgoing.truncate(start);
                        return Step::Failed(Failure::new("other", e.to_string()));
                    }
                }
            }
            Step::Again(discard)
        }
        // The caller sends `outgoing` before it waits: queued counts as transmitted.
        ConnectionState::TransmitTlsData(transmit) => {
            transmit.done();
            Step::Again(discard)
        }
        ConnectionState::BlockedHandshake => Step::Stop(discard, Progress::NeedBytes),
        ConnectionState::ReadTraffic(mut read) => {
            while let Some(record) = read.next_record() {
                match record {
                    Ok(record) => {
                        discard += record.discard;
                        early_plaintext.extend_from_slice(record.payload);
                    }
                    Err(e) => return Step::Failed(failure(&e)),
                }
            }
            Step::Again(discard)
        }
        ConnectionState::WriteTraffic(_) => Step::Stop(discard, Progress::Done),
        ConnectionState::PeerClosed | ConnectionState::Closed => Step::Failed(Failure::new(
            "closed",
            "the peer closed during the TLS handshake",
        )),
        _ => Step::Failed(Failure::new(
            "protocol",
            "unexpected TLS state during the handshake (early data?)",
        )),
    }
}

/// The fatal alert rustls queued after an error, encoded (empty if none).
fn alert<Data>(status: UnbufferedStatus<'_, '_, Data>) -> Vec<u8> {
    let mut out = vec![0; 64];
    if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
        if let Ok(n) = encode.encode(&mut out) {
            out.truncate(n);
            return out;
        }
    }
    Vec::new()
}

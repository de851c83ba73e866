//! One TLS connection after its handshake: the two record keys, and rustls's
//! `KernelConnection`, which derives the next keys at a KeyUpdate. Sans-IO: bytes in, bytes
//! out.
//!
//! Receive ([`TlsSession::open`]): the records wholly inside a received buffer are opened in
//! place into one contiguous plaintext at its front; a record cut by the buffer's end is kept
//! (ciphertext, at most one record) and finished by the next buffer. Send
//! ([`TlsSession::seal`]): plaintext encoded behind a header reserved by
//! [`TlsSession::reserve_record`] is sealed where it lies; a KeyUpdate the session owes
//! (asked by the peer, or the key near its limit) follows the records it seals.
//!
//! TLS 1.2 sessions (listeners with `tls_min_version = "1.2"`) have no KeyUpdate: a key that
//! reaches its confidentiality limit closes the connection (as rustls does), and a handshake
//! record from the peer (a renegotiation) closes it too.

use super::config::TlsVersion;
use super::record::{
    seal_all, ContentType, RecordError, RecordKey, RECORD_HEADER_LEN, RECORD_PLAINTEXT_MAX,
};
use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::ExtractedSecrets;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Handshake message type of KeyUpdate (RFC 8446 section 4.6.3).
const KEY_UPDATE: u8 = 24;
/// Handshake message type of NewSessionTicket (section 4.6.1).
const NEW_SESSION_TICKET: u8 = 4;
/// Alert description of close_notify.
const CLOSE_NOTIFY: u8 = 0;
/// Send our KeyUpdate once the key has fewer records left than this: far more than one
/// flush seals (a flush is bounded by `pending_bytes_max`, 2^20 records are 16 GiB), so the
/// limit itself is never reached.
const REKEY_MARGIN_RECORDS: u64 = 1 << 20;

/// The version rustls negotiated, as the record layer knows it.
fn negotiated(version: rustls::ProtocolVersion) -> Result<TlsVersion, SessionError> {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => Ok(TlsVersion::Tls13),
        rustls::ProtocolVersion::TLSv1_2 => Ok(TlsVersion::Tls12),
        _ => Err(RecordError::UnsupportedSuite.into()),
    }
}

/// rustls's post-handshake state of either side.
enum Kernel {
    Server(KernelConnection<ServerConnectionData>),
    Client(KernelConnection<ClientConnectionData>),
    /// A session made from given traffic secrets, without a handshake (tests, fuzzing).
    #[cfg(any(test, feature = "test-session"))]
    Fixed(super::fixed::FixedSchedule),
}

/// What both halves of a session share: rustls's key schedule (locked only at a KeyUpdate,
/// so the two halves can live on two threads) and whether the peer asked for a KeyUpdate.
struct KeySchedule {
    kernel: Mutex<Kernel>,
    /// The receiver saw the peer ask for a KeyUpdate; the sender sends ours.
    key_update_due: AtomicBool,
}

impl KeySchedule {
    fn kernel(&self) -> std::sync::MutexGuard<'_, Kernel> {
        // Nothing panics while holding it; a poisoned lock still holds a usable schedule.
        self.kernel.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_rx(&self) -> Result<RecordKey, SessionError> {
        let (seq, secrets) = match &mut *self.kernel() {
            Kernel::Server(k) => k.update_rx_secret(),
            Kernel::Client(k) => k.update_rx_secret(),
            #[cfg(any(test, feature = "test-session"))]
            Kernel::Fixed(k) => k.update_rx_secret(),
        }
        .map_err(|e| SessionError::KeyUpdate(e.to_string()))?;
        Ok(RecordKey::new(seq, secrets)?)
    }

    fn update_tx(&self) -> Result<RecordKey, SessionError> {
        let (seq, secrets) = match &mut *self.kernel() {
            Kernel::Server(k) => k.update_tx_secret(),
            Kernel::Client(k) => k.update_tx_secret(),
            #[cfg(any(test, feature = "test-session"))]
            Kernel::Fixed(k) => k.update_tx_secret(),
        }
        .map_err(|e| SessionError::KeyUpdate(e.to_string()))?;
        Ok(RecordKey::new(seq, secrets)?)
    }
}

/// Why a TLS connection must close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("the peer sent TLS alert {:?}", rustls::AlertDescription::from(*.0))]
    Alert(u8),
    #[error("KeyUpdate failed: {0}")]
    KeyUpdate(String),
    #[error("post-handshake message refused: {0}")]
    Handshake(&'static str),
    #[error("the peer began a TLS 1.2 renegotiation (a handshake after the handshake), which is refused")]
    Renegotiation,
}

/// What one [`TlsSession::open`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext of a record that the previous buffers began and this one ended; it comes
    /// before `in_place`. Read it with [`TlsSession::carried`].
    pub carried: Option<Range<usize>>,
    /// Bytes of plaintext now at the front of the buffer.
    pub in_place: usize,
    /// The peer sent close_notify: nothing more will come (bytes after it are ignored).
    pub peer_closed: bool,
}

/// One TLS connection: its receiving and sending halves (see [`TlsSession::split`]).
pub struct TlsSession {
    pub receiver: TlsReceiver,
    pub sender: TlsSender,
}

/// Opens what the peer sends.
pub struct TlsReceiver {
    rx: RecordKey,
    /// The start of a record cut by the end of a received buffer (ciphertext).
    partial: Vec<u8>,
    /// The last completed partial record, opened: `Opened::carried` indexes it.
    carried: Vec<u8>,
    /// Set once close_notify arrived.
    peer_closed: bool,
    keys: Arc<KeySchedule>,
}

/// Seals what this side sends.
pub struct TlsSender {
    tx: RecordKey,
    /// This side owes a KeyUpdate of its own (tests set it).
    key_update_due: bool,
    keys: Arc<KeySchedule>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("receiver", &self.receiver)
            .field("sender", &self.sender)
            .finish()
    }
}

impl std::fmt::Debug for TlsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReceiver")
            .field("rx", &self.rx)
            .field("partial", &self.partial.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TlsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSender")
            .field("tx", &self.tx)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    pub(super) fn server(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Result<TlsSession, SessionError> {
        let version = negotiated(kernel.protocol_version())?;
        TlsSession::new(secrets, Kernel::Server(kernel), version)
    }

    pub(super) fn client(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ClientConnectionData>,
    ) -> Result<TlsSession, SessionError> {
        let version = negotiated(kernel.protocol_version())?;
        TlsSession::new(secrets, Kernel::Client(kernel), version)
    }

    /// A session of `version` with traffic secrets derived by rustls, whose KeyUpdates
    /// `kernel` derives (TLS 1.3).
    fn new(
        secrets: ExtractedSecrets,
        kernel: Kernel,
        version: TlsVersion,
    ) -> Result<TlsSession, SessionError> {
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let mut rx = RecordKey::for_version(rx_seq, rx, version)?;
        if version == TlsVersion::Tls12 {
            // rustls opens past a TLS 1.2 peer's limit too: the failure, if any, is the
            // peer's; only what this side seals is bounded.
            rx = rx.without_limit();
        }
        let keys = Arc::new(KeySchedule {
            kernel: Mutex::new(kernel),
            key_update_due: AtomicBool::new(false),
        });
        Ok(TlsSession {
            receiver: TlsReceiver {
                rx,
                partial: Vec::new(),
                carried: Vec::new(),
                peer_closed: false,
                keys: Arc::clone(&keys),
            },
            sender: TlsSender {
                tx: RecordKey::for_version(tx_seq, tx, version)?,
                key_update_due: false,
                keys,
            },
        })
    }

    /// The two halves, for a connection read on one thread and written on another.
    pub fn split(self) -> (TlsReceiver, TlsSender) {
        (self.receiver, self.sender)
    }

    /// The halves of one connection together again.
    pub fn join(receiver: TlsReceiver, sender: TlsSender) -> TlsSession {
        TlsSession { receiver, sender }
    }

    /// See [`TlsReceiver::partial_bytes`].
    pub fn partial_bytes(&self) -> usize {
        self.receiver.partial_bytes()
    }

    /// Whether the last receive ended inside a record: its first bytes are held until the
    /// rest arrives (the worker runs `frame_complete_timeout_ms` on it).
    pub fn record_cut(&self) -> bool {
        self.receiver.cut_plaintext_max() > 0
    }

    /// See [`TlsReceiver::open`].
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, SessionError> {
        self.receiver.open(buf)
    }

    /// See [`TlsReceiver::carried`].
    pub fn carried(&self, range: Range<usize>) -> &[u8] {
        self.receiver.carried(range)
    }

    /// See [`TlsReceiver::take_carried`].
    pub fn take_carried(&mut self) -> Vec<u8> {
        self.receiver.take_carried()
    }

    pub fn restore_carried(&mut self, carried: Vec<u8>) {
        self.receiver.restore_carried(carried)
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.receiver.peer_closed
    }

    /// See [`TlsSender::reserve_record`].
    #[inline]
    pub fn reserve_record(&self, out: &mut Vec<u8>) -> usize {
        self.sender.reserve_record(out)
    }

    /// See [`TlsSender::record_prefix_len`].
    #[inline]
    pub fn record_prefix_len(&self) -> usize {
        self.sender.record_prefix_len()
    }

    /// The version this session speaks.
    pub fn version(&self) -> TlsVersion {
        if self.sender.tx.protection().is_tls12() {
            TlsVersion::Tls12
        } else {
            TlsVersion::Tls13
        }
    }

    /// See [`TlsSender::seal`].
    pub fn seal(&mut self, out: &mut Vec<u8>, start: usize) -> Result<(), SessionError> {
        self.sender.seal(out, start)
    }

    /// See [`TlsSender::seal_close_notify`].
    pub fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), SessionError> {
        self.sender.seal_close_notify(out)
    }

    /// A session whose KeyUpdates `kernel` derives (a session made without a handshake).
    #[cfg(any(test, feature = "test-session"))]
    pub(super) fn fixed(
        secrets: ExtractedSecrets,
        kernel: super::fixed::FixedSchedule,
        version: TlsVersion,
    ) -> Result<TlsSession, SessionError> {
        TlsSession::new(secrets, Kernel::Fixed(kernel), version)
    }

    /// Makes the session owe a KeyUpdate, as the key's limit would: the next
    /// [`TlsSession::seal`] sends one after its records. For tests and fuzzing.
    #[cfg(any(test, feature = "test-session"))]
    pub fn owe_key_update(&mut self) {
        self.sender.key_update_due = true;
    }
}

impl TlsReceiver {
    /// Bytes held for a record cut by the end of a receive (counted as reassembly): the
    /// ciphertext of the record begun, and the buffer of the last one finished. Each buffer
    /// is allocated for one record at most, so this never exceeds twice
    /// [`RECORD_HEADER_LEN`] + [`super::record::RECORD_CIPHERTEXT_MAX`] (33,290 bytes).
    pub fn partial_bytes(&self) -> usize {
        self.partial.len() + self.carried.capacity()
    }

    /// The most plaintext the record cut by the end of the last buffer can yield (0: none is
    /// cut): room a reader may keep in front of the next buffer for `Opened::carried`.
    pub fn cut_plaintext_max(&self) -> usize {
        let protection = self.rx.protection();
        match self.partial.first_chunk::<RECORD_HEADER_LEN>() {
            None if self.partial.is_empty() => 0,
            None => RECORD_PLAINTEXT_MAX,
            // The body less the explicit nonce, the content type byte and the tag.
            Some(header) => protection
                .check_header(header)
                .map_or(RECORD_PLAINTEXT_MAX, |body| protection.content_max(body)),
        }
    }

    /// Frees what an idle connection does not need.
    pub fn shrink(&mut self) {
        if self.partial.is_empty() {
            self.partial = Vec::new();
        }
        self.carried = Vec::new();
    }

    /// The plaintext `Opened::carried` names.
    pub fn carried(&self, range: Range<usize>) -> &[u8] {
        &self.carried[range]
    }

    /// Lends the buffer `Opened::carried` indexes (so its plaintext can be handed on while
    /// the session is borrowed elsewhere); give it back with [`TlsSession::restore_carried`]
    /// to keep its capacity.
    pub fn take_carried(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carried)
    }

    pub fn restore_carried(&mut self, carried: Vec<u8>) {
        self.carried = carried;
    }

    /// Opens the records in `buf` (received ciphertext) in place. The plaintext is
    /// `Opened::carried` (if any) followed by `buf[..Opened::in_place]`.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, SessionError> {
        let mut opened = Opened::default();
        if self.peer_closed {
            return Ok(Opened {
                peer_closed: true,
                ..Opened::default()
            });
        }
        let mut at = 0;
        if !self.partial.is_empty() {
            at = self.fill_partial(buf)?;
            if self.record_len_held()? != Some(self.partial.len()) {
                return Ok(opened);
            }
            opened.carried = self.open_partial()?;
            if self.peer_closed {
                opened.peer_closed = true;
                return Ok(opened);
            }
        }
        let mut to = 0;
        while buf.len() - at >= RECORD_HEADER_LEN {
            let header: &[u8; RECORD_HEADER_LEN] = buf[at..at + RECORD_HEADER_LEN]
                .try_into()
                .map_err(|_| RecordError::TooLarge(0))?;
            let end = at + RECORD_HEADER_LEN + self.rx.protection().check_header(header)?;
            if end > buf.len() {
                break;
            }
            let (content, plaintext) = self.rx.open_within(buf, to, at)?;
            if content == ContentType::ApplicationData {
                to = plaintext.end;
            } else {
                self.on_control(content, &buf[plaintext])?;
                if self.peer_closed {
                    opened.in_place = to;
                    opened.peer_closed = true;
                    return Ok(opened);
                }
            }
            at = end;
        }
        if at < buf.len() {
            let tail = &buf[at..];
            if let Some(header) = tail.first_chunk::<RECORD_HEADER_LEN>() {
                // Room for the whole record at once: the buffer never grows past one record.
                let body = self.rx.protection().check_header(header)?;
                self.partial.reserve_exact(RECORD_HEADER_LEN + body);
            }
            self.partial.extend_from_slice(tail);
        }
        opened.in_place = to;
        Ok(opened)
    }

    /// Copies into `partial` what it lacks of its record (the header first), from the front
    /// of `buf`; returns how many bytes of `buf` it took.
    fn fill_partial(&mut self, buf: &[u8]) -> Result<usize, SessionError> {
        let mut taken = 0;
        if self.partial.len() < RECORD_HEADER_LEN {
            taken = (RECORD_HEADER_LEN - self.partial.len()).min(buf.len());
            self.partial.extend_from_slice(&buf[..taken]);
        }
        if let Some(record_len) = self.record_len_held()? {
            self.partial.reserve_exact(record_len - self.partial.len());
            let more = (record_len - self.partial.len()).min(buf.len() - taken);
            self.partial.extend_from_slice(&buf[taken..taken + more]);
            taken += more;
        }
        Ok(taken)
    }

    /// The whole length of the record `partial` begins, once its header is in.
    fn record_len_held(&self) -> Result<Option<usize>, SessionError> {
        let Some(header) = self.partial.first_chunk::<RECORD_HEADER_LEN>() else {
            return Ok(None);
        };
        Ok(Some(
            RECORD_HEADER_LEN + self.rx.protection().check_header(header)?,
        ))
    }

    /// Opens the whole record in `partial`; its plaintext (if data) becomes `carried`.
    fn open_partial(&mut self) -> Result<Option<Range<usize>>, SessionError> {
        std::mem::swap(&mut self.partial, &mut self.carried);
        self.partial.clear();
        let (content, plaintext) = self.rx.open_within(&mut self.carried, 0, 0)?;
        if content == ContentType::ApplicationData {
            return Ok(Some(plaintext));
        }
        let control = self.carried[plaintext].to_vec();
        self.on_control(content, &control)?;
        Ok(None)
    }

    /// A handshake message or an alert after the handshake.
    #[cold]
    fn on_control(&mut self, content: ContentType, body: &[u8]) -> Result<(), SessionError> {
        if content == ContentType::Alert {
            return match body {
                [_, CLOSE_NOTIFY] => {
                    self.peer_closed = true;
                    Ok(())
                }
                [_, description] => Err(SessionError::Alert(*description)),
                _ => Err(SessionError::Handshake("malformed alert")),
            };
        }
        if self.rx.protection().is_tls12() {
            // TLS 1.2 has no post-handshake messages: a handshake is a renegotiation.
            return Err(SessionError::Renegotiation);
        }
        let mut rest = body;
        while !rest.is_empty() {
            let Some(&[kind, a, b, c]) = rest.first_chunk::<4>() else {
                return Err(SessionError::Handshake(
                    "handshake message cut across records",
                ));
            };
            let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            let Some(message) = rest.get(4..4 + len) else {
                return Err(SessionError::Handshake(
                    "handshake message cut across records",
                ));
            };
            match kind {
                KEY_UPDATE => self.on_key_update(message, rest.len() == 4 + len)?,
                NEW_SESSION_TICKET => match &mut *self.keys.kernel() {
                    Kernel::Client(k) => k
                        .handle_new_session_ticket(message)
                        .map_err(|e| SessionError::KeyUpdate(e.to_string()))?,
                    Kernel::Server(_) => {
                        return Err(SessionError::Handshake("NewSessionTicket from a client"))
                    }
                    #[cfg(any(test, feature = "test-session"))]
                    Kernel::Fixed(_) => {
                        return Err(SessionError::Handshake(
                            "NewSessionTicket on a session without a handshake",
                        ))
                    }
                },
                _ => return Err(SessionError::Handshake("unexpected handshake message")),
            }
            rest = &rest[4 + len..];
        }
        Ok(())
    }

    fn on_key_update(&mut self, message: &[u8], ends_record: bool) -> Result<(), SessionError> {
        // A KeyUpdate must end its record (RFC 8446 5.1): what follows uses the new key.
        if !ends_record {
            return Err(SessionError::Handshake(
                "KeyUpdate not at the end of its record",
            ));
        }
        match message {
            [0] => {}
            [1] => self.keys.key_update_due.store(true, Ordering::Relaxed),
            _ => return Err(SessionError::Handshake("malformed KeyUpdate")),
        }
        self.rx = self.keys.update_rx()?;
        Ok(())
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}

impl TlsSender {
    /// Appends a record's reserved prefix ([`TlsSender::record_prefix_len`] bytes) to `out`
    /// and returns where the record starts: the plaintext appended after it is sealed by
    /// [`TlsSession::seal`].
    #[inline]
    pub fn reserve_record(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.resize(start + self.record_prefix_len(), 0);
        start
    }

    /// Bytes reserved before each record's plaintext: the header (5), and in TLS 1.2 with
    /// AES-GCM the explicit nonce (8).
    #[inline]
    pub fn record_prefix_len(&self) -> usize {
        self.tx.protection().prefix_len()
    }

    /// Seals `out[start..]` (a reserved prefix then plaintext, any length) as records in
    /// place, then the KeyUpdate the session owes, if any, under the old key. On an error
    /// `out` is cut back to `start`: no plaintext is left where ciphertext would be sent.
    pub fn seal(&mut self, out: &mut Vec<u8>, start: usize) -> Result<(), SessionError> {
        if out.len() == start + self.record_prefix_len() {
            out.truncate(start);
        } else if let Err(e) = seal_all(&mut self.tx, out, start, ContentType::ApplicationData) {
            out.truncate(start);
            return Err(e.into());
        }
        if self.tx.protection().is_tls12() {
            return Ok(());
        }
        let asked = self.keys.key_update_due.load(Ordering::Relaxed);
        if asked || self.key_update_due || self.tx.records_left() < REKEY_MARGIN_RECORDS {
            let at = self.reserve_record(out);
            // KeyUpdate, 1 byte body: update_not_requested.
            out.extend_from_slice(&[KEY_UPDATE, 0, 0, 1, 0]);
            self.tx.seal(out, at, ContentType::Handshake)?;
            self.tx = self.keys.update_tx()?;
            self.key_update_due = false;
            self.keys.key_update_due.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Appends a sealed close_notify alert: the last record this side sends.
    pub fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), SessionError> {
        let at = self.reserve_record(out);
        out.extend_from_slice(&[1, CLOSE_NOTIFY]);
        self.tx.seal(out, at, ContentType::Alert)?;
        Ok(())
    }
}

//! The TLS 1.3 record protection of the data path (RFC 8446 section 5), in place: a record is
//! sealed where its plaintext was encoded (behind a 5-byte header reserved for it) and opened
//! where its ciphertext was received, so TLS adds no copy to the one a message already costs.
//! rustls does the handshake and the key schedule and hands over the traffic secrets
//! ([`super::session`]); rustls's own record layer would copy both ways.
//!
//! Nonces: the per-record nonce is the static IV XORed with the 64-bit record sequence number,
//! and the sequence number lives only in [`RecordKey`], advanced by every seal or open. A
//! record is sealed once and its ciphertext is what is resent, never resealed: a nonce is never
//! used twice under one key.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use rustls::ConnectionTrafficSecrets;
use std::ops::Range;

/// Bytes of a record header: outer type, legacy version (2), length (2).
pub const RECORD_HEADER_LEN: usize = 5;
/// Bytes of the AEAD tag of every suite TLS 1.3 has (AES-GCM, ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries (2^14, RFC 8446 section 5.1).
pub const RECORD_PLAINTEXT_MAX: usize = 1 << 14;
/// The longest protected record body a peer may send: 2^14 + 256 (RFC 8446 section 5.2).
pub const RECORD_CIPHERTEXT_MAX: usize = RECORD_PLAINTEXT_MAX + 256;
/// What sealing adds to a record's plaintext: the header, the inner content type, the tag.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_LEN + 1 + TAG_LEN;

/// Outer type of every protected TLS 1.3 record.
const APPLICATION_DATA: u8 = 23;
/// `legacy_record_version` of every TLS 1.3 record: TLS 1.2's number.
const LEGACY_VERSION: [u8; 2] = [3, 3];

/// The inner content type of a protected record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    Alert = 21,
    Handshake = 22,
    ApplicationData = 23,
}

/// A record that cannot be opened or sealed; the connection must close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("TLS record failed authentication (corrupted or forged)")]
    BadRecordMac,
    #[error("TLS record too large ({0} bytes, at most 16,640)")]
    TooLarge(usize),
    #[error("not a TLS 1.3 protected record (outer type {0}, version {1:?})")]
    NotProtected(u8, [u8; 2]),
    #[error("TLS record with no content type (all padding)")]
    NoContentType,
    #[error("TLS record of content type {0}, which TLS 1.3 does not protect")]
    UnknownContentType(u8),
    #[error("the negotiated cipher suite is not one this record layer speaks")]
    UnsupportedSuite,
    #[error("TLS key used for its most records without a KeyUpdate")]
    KeyExhausted,
}

/// One direction's key: AEAD key, static IV and the sequence number of the next record.
pub struct RecordKey {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// Records this key may protect (the suite's confidentiality limit): sealing refuses
    /// beyond it; the session sends a KeyUpdate well before.
    limit: u64,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKey")
            .field("algorithm", self.key.algorithm())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl RecordKey {
    /// The key for `secrets`, whose next record has sequence number `seq`.
    pub fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<RecordKey, RecordError> {
        let (algorithm, limit, key, iv) = match secrets {
            // Limits as rustls's ring provider states them for each suite.
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&aead::AES_128_GCM, 1 << 24, key, iv)
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&aead::AES_256_GCM, 1 << 24, key, iv)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, u64::MAX, key, iv)
            }
            _ => return Err(RecordError::UnsupportedSuite),
        };
        let unbound =
            UnboundKey::new(algorithm, key.as_ref()).map_err(|_| RecordError::UnsupportedSuite)?;
        let iv: [u8; NONCE_LEN] = iv
            .as_ref()
            .try_into()
            .map_err(|_| RecordError::UnsupportedSuite)?;
        Ok(RecordKey {
            key: LessSafeKey::new(unbound),
            iv,
            seq,
            limit,
        })
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Records left before the confidentiality limit.
    pub fn records_left(&self) -> u64 {
        self.limit.saturating_sub(self.seq)
    }

    /// The nonce of the next record, and the sequence number advanced: the only place a
    /// nonce is made, so none is made twice.
    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        if self.seq >= self.limit {
            return Err(RecordError::KeyExhausted);
        }
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals one record in place: `buf[start..start + 5]` is reserved for its header and
    /// `buf[start + 5..]` is its plaintext (at most [`RECORD_PLAINTEXT_MAX`] bytes). Appends
    /// the inner content type and the tag, and writes the header.
    pub fn seal(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        content: ContentType,
    ) -> Result<(), RecordError> {
        buf.resize(buf.len() + 1 + TAG_LEN, 0);
        self.seal_in_slice(&mut buf[start..], content)
    }

    /// Seals the record that fills `record`: header (5 bytes, written here), plaintext, then
    /// one byte for the content type and [`TAG_LEN`] for the tag (both written here).
    fn seal_in_slice(
        &mut self,
        record: &mut [u8],
        content: ContentType,
    ) -> Result<(), RecordError> {
        let len = record.len() - RECORD_HEADER_LEN;
        if len > RECORD_PLAINTEXT_MAX + 1 + TAG_LEN {
            return Err(RecordError::TooLarge(len));
        }
        let header = record_header(len);
        record[..RECORD_HEADER_LEN].copy_from_slice(&header);
        let (inner, tag_space) = record[RECORD_HEADER_LEN..].split_at_mut(len - TAG_LEN);
        inner[len - TAG_LEN - 1] = content as u8;
        let nonce = self.next_nonce()?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), inner)
            .map_err(|_| RecordError::TooLarge(len))?;
        tag_space.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens the record whose header is `buf[from..from + 5]` (and whose body follows it,
    /// whole), moving its plaintext to `buf[to..]` (`to <= from`): records received together
    /// open into one contiguous plaintext. Returns the inner content type and where the
    /// content lies (padding and type byte stripped).
    pub fn open_within(
        &mut self,
        buf: &mut [u8],
        to: usize,
        from: usize,
    ) -> Result<(ContentType, Range<usize>), RecordError> {
        let header: [u8; RECORD_HEADER_LEN] = buf[from..from + RECORD_HEADER_LEN]
            .try_into()
            .map_err(|_| RecordError::TooLarge(0))?;
        let len = check_header(&header)?;
        let end = from + RECORD_HEADER_LEN + len;
        let nonce = self.next_nonce()?;
        let plaintext = self
            .key
            .open_within(
                nonce,
                Aad::from(header),
                &mut buf[to..end],
                (from - to + RECORD_HEADER_LEN)..,
            )
            .map_err(|_| RecordError::BadRecordMac)?;
        // RFC 8446 5.4: the content type is the last non-zero byte; zeros after it are padding.
        let typed = plaintext
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(RecordError::NoContentType)?;
        let content = match plaintext[typed] {
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            other => return Err(RecordError::UnknownContentType(other)),
        };
        Ok((content, to..to + typed))
    }
}

/// The header of a protected record whose body is `len` bytes.
fn record_header(len: usize) -> [u8; RECORD_HEADER_LEN] {
    let [hi, lo] = (len as u16).to_be_bytes();
    [
        APPLICATION_DATA,
        LEGACY_VERSION[0],
        LEGACY_VERSION[1],
        hi,
        lo,
    ]
}

/// The body length a received header states, checked: a protected record, within bounds.
pub fn check_header(header: &[u8; RECORD_HEADER_LEN]) -> Result<usize, RecordError> {
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if header[0] != APPLICATION_DATA || header[1..3] != LEGACY_VERSION {
        return Err(RecordError::NotProtected(header[0], [header[1], header[2]]));
    }
    if len > RECORD_CIPHERTEXT_MAX {
        return Err(RecordError::TooLarge(len));
    }
    if len <= TAG_LEN {
        return Err(RecordError::NoContentType);
    }
    Ok(len)
}

/// Seals `buf[start..]` (5 reserved bytes, then plaintext of any length) as as many records
/// as it needs, in place: a plaintext longer than one record is spread backwards over
/// ⌈len / 2^14⌉ records (one move of the bytes after the first record), then each is sealed
/// where it lies.
pub fn seal_all(
    key: &mut RecordKey,
    buf: &mut Vec<u8>,
    start: usize,
    content: ContentType,
) -> Result<(), RecordError> {
    let plaintext_len = buf.len() - start - RECORD_HEADER_LEN;
    if plaintext_len <= RECORD_PLAINTEXT_MAX {
        return key.seal(buf, start, content);
    }
    let records = plaintext_len.div_ceil(RECORD_PLAINTEXT_MAX);
    let record_len = |r: usize| RECORD_PLAINTEXT_MAX.min(plaintext_len - r * RECORD_PLAINTEXT_MAX);
    let plaintext_at = start + RECORD_HEADER_LEN;
    buf.resize(start + records * RECORD_OVERHEAD + plaintext_len, 0);
    // Move each record's plaintext to its final place, last first (it moves farthest).
    for r in (1..records).rev() {
        let from = plaintext_at + r * RECORD_PLAINTEXT_MAX;
        let to = start + r * (RECORD_OVERHEAD + RECORD_PLAINTEXT_MAX) + RECORD_HEADER_LEN;
        buf.copy_within(from..from + record_len(r), to);
    }
    let mut at = start;
    for r in 0..records {
        let end = at + record_len(r) + RECORD_OVERHEAD;
        key.seal_in_slice(&mut buf[at..end], content)?;
        at = end;
    }
    Ok(())
}

//! The record protection of the data path, in place: a record is sealed where its plaintext
//! was encoded (behind a prefix reserved for it: the header, and in TLS 1.2 with AES-GCM the
//! explicit nonce) and opened where its ciphertext was received, so TLS adds no copy to the
//! one a message already costs. rustls does the handshake and the key schedule and hands over
//! the traffic secrets ([`super::session`]); rustls's own record layer would copy both ways.
//!
//! Two versions ([`Protection`]): TLS 1.3 (RFC 8446 section 5: inner content type, the outer
//! type always application data) and TLS 1.2 with the AEAD suites rustls offers (RFC 5246
//! 6.2.3.3: no inner type, the header's type is the real one, the additional data is
//! seq || type || version || plaintext length; AES-GCM, RFC 5288, sends 8 bytes of the nonce
//! after the header; ChaCha20-Poly1305, RFC 7905, sends none).
//!
//! Nonces: the per-record nonce is the static IV XORed with the 64-bit record sequence number,
//! and the sequence number lives only in [`RecordKey`], advanced by every seal or open. (In
//! TLS 1.2 AES-GCM the IV is the 4-byte salt and rustls's initial explicit part, so the
//! explicit nonce sent is that part XORed with the sequence number, as rustls seals; opening
//! takes the explicit nonce the record carries.) A record is sealed once and its ciphertext is
//! what is resent, never resealed: a nonce is never used twice under one key.

use super::config::TlsVersion;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use rustls::ConnectionTrafficSecrets;
use std::ops::Range;

/// Bytes of a record header: outer type, legacy version (2), length (2).
pub const RECORD_HEADER_LEN: usize = 5;
/// Bytes of the explicit nonce a TLS 1.2 AES-GCM record carries after its header (RFC 5288).
pub const GCM_EXPLICIT_NONCE_LEN: usize = 8;
/// Bytes of the AEAD tag of every suite TLS 1.3 has (AES-GCM, ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries (2^14, RFC 8446 section 5.1).
pub const RECORD_PLAINTEXT_MAX: usize = 1 << 14;
/// The longest protected record body a peer may send: 2^14 + 256 (RFC 8446 section 5.2). It
/// bounds TLS 1.2 records too: RFC 5246 allows 2^14 + 2048, but an AEAD record's body is its
/// plaintext (at most 2^14) plus 24 bytes at most (explicit nonce and tag), so a longer one
/// cannot be valid and is refused from its header ([`Protection::check_header`]).
pub const RECORD_CIPHERTEXT_MAX: usize = RECORD_PLAINTEXT_MAX + 256;
/// What sealing adds to a TLS 1.3 record's plaintext: the header, the inner content type, the
/// tag ([`Protection::overhead`] for any version).
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_LEN + 1 + TAG_LEN;

/// Outer type of every protected TLS 1.3 record.
const APPLICATION_DATA: u8 = 23;
/// `legacy_record_version` of every TLS 1.3 record: TLS 1.2's number (every TLS 1.2 record's).
const LEGACY_VERSION: [u8; 2] = [3, 3];
/// Outer types a TLS 1.2 record may have after the handshake: alert, handshake (a
/// renegotiation, refused once opened), application data.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;

/// How a session's records are protected: the version and, in TLS 1.2, the suite's nonce.
/// Each gives the bytes a record reserves before its plaintext ([`Protection::prefix_len`])
/// and appends after it ([`Protection::suffix_len`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// TLS 1.3: header; plaintext, inner content type; tag.
    Tls13,
    /// TLS 1.2, AES-128-GCM or AES-256-GCM: header, explicit nonce (8); plaintext; tag.
    Tls12Gcm,
    /// TLS 1.2, ChaCha20-Poly1305: header; plaintext; tag.
    Tls12Chacha,
}

impl Protection {
    /// Bytes reserved before a record's plaintext.
    #[inline]
    pub const fn prefix_len(self) -> usize {
        match self {
            Protection::Tls12Gcm => RECORD_HEADER_LEN + GCM_EXPLICIT_NONCE_LEN,
            Protection::Tls13 | Protection::Tls12Chacha => RECORD_HEADER_LEN,
        }
    }

    /// Bytes appended after a record's plaintext: the inner content type (TLS 1.3), the tag.
    #[inline]
    pub const fn suffix_len(self) -> usize {
        match self {
            Protection::Tls13 => 1 + TAG_LEN,
            Protection::Tls12Gcm | Protection::Tls12Chacha => TAG_LEN,
        }
    }

    /// What sealing adds to a record's plaintext.
    pub const fn overhead(self) -> usize {
        self.prefix_len() + self.suffix_len()
    }

    /// What a record's body holds besides its content.
    const fn body_overhead(self) -> usize {
        self.overhead() - RECORD_HEADER_LEN
    }

    pub const fn is_tls12(self) -> bool {
        !matches!(self, Protection::Tls13)
    }

    /// The body length a received header states, checked: a protected record of this
    /// version, within bounds.
    pub fn check_header(self, header: &[u8; RECORD_HEADER_LEN]) -> Result<usize, RecordError> {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let typed = match self {
            Protection::Tls13 => header[0] == APPLICATION_DATA,
            _ => matches!(header[0], ALERT | HANDSHAKE | APPLICATION_DATA),
        };
        if !typed || header[1..3] != LEGACY_VERSION {
            return Err(RecordError::NotProtected(header[0], [header[1], header[2]]));
        }
        let max = match self {
            Protection::Tls13 => RECORD_CIPHERTEXT_MAX,
            _ => RECORD_PLAINTEXT_MAX + self.body_overhead(),
        };
        if len > max {
            return Err(RecordError::TooLarge(len));
        }
        match self {
            Protection::Tls13 if len <= TAG_LEN => Err(RecordError::NoContentType),
            _ if len < self.body_overhead() => Err(RecordError::TooShort(len)),
            _ => Ok(len),
        }
    }

    /// The most content a record whose body is `body` bytes holds.
    pub const fn content_max(self, body: usize) -> usize {
        body.saturating_sub(self.body_overhead())
    }
}

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
    #[error("TLS record too large ({0} bytes; at most 16,640 in TLS 1.3, 16,408 in TLS 1.2)")]
    TooLarge(usize),
    #[error("not a protected TLS record (outer type {0}, version {1:?})")]
    NotProtected(u8, [u8; 2]),
    #[error("TLS record too short for its nonce and tag ({0} bytes)")]
    TooShort(usize),
    #[error("TLS record with no content type (all padding)")]
    NoContentType,
    #[error("TLS record of content type {0}, which TLS 1.3 does not protect")]
    UnknownContentType(u8),
    #[error("the negotiated cipher suite is not one this record layer speaks")]
    UnsupportedSuite,
    #[error("TLS key used for its most records without a KeyUpdate")]
    KeyExhausted,
    #[error(
        "TLS 1.2 key reached its confidentiality limit ({0} records); TLS 1.2 has no KeyUpdate, \
         so the connection closes (reconnect, or use TLS 1.3)"
    )]
    Tls12KeyExhausted(u64),
}

/// One direction's key: AEAD key, static IV and the sequence number of the next record.
pub struct RecordKey {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// Records this key may protect (the suite's confidentiality limit): sealing refuses
    /// beyond it; in TLS 1.3 the session sends a KeyUpdate well before.
    limit: u64,
    protection: Protection,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKey")
            .field("algorithm", self.key.algorithm())
            .field("protection", &self.protection)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl RecordKey {
    /// The TLS 1.3 key for `secrets`, whose next record has sequence number `seq`.
    pub fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<RecordKey, RecordError> {
        RecordKey::for_version(seq, secrets, TlsVersion::Tls13)
    }

    /// The key for `secrets` of a session of `version`, whose next record has sequence
    /// number `seq`.
    pub fn for_version(
        seq: u64,
        secrets: ConnectionTrafficSecrets,
        version: TlsVersion,
    ) -> Result<RecordKey, RecordError> {
        // Limits as rustls's ring provider states them for each suite, in either version.
        let (algorithm, limit, key, iv, gcm) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&aead::AES_128_GCM, 1 << 24, key, iv, true)
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&aead::AES_256_GCM, 1 << 24, key, iv, true)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, u64::MAX, key, iv, false)
            }
            _ => return Err(RecordError::UnsupportedSuite),
        };
        let protection = match (version, gcm) {
            (TlsVersion::Tls13, _) => Protection::Tls13,
            (TlsVersion::Tls12, true) => Protection::Tls12Gcm,
            (TlsVersion::Tls12, false) => Protection::Tls12Chacha,
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
            protection,
        })
    }

    /// A key that opens past the confidentiality limit: what a TLS 1.2 peer seals beyond it
    /// is its failure, not ours (rustls opens it too); only sealing is bounded.
    pub fn without_limit(mut self) -> RecordKey {
        self.limit = u64::MAX;
        self
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The version and suite shape of this key's records.
    #[inline]
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// Records left before the confidentiality limit.
    pub fn records_left(&self) -> u64 {
        self.limit.saturating_sub(self.seq)
    }

    /// The nonce of the next record (IV XOR sequence number), and the sequence number
    /// advanced: the only place a nonce is made, so none is made twice.
    #[inline]
    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], RecordError> {
        if self.seq >= self.limit {
            return Err(self.exhausted());
        }
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq += 1;
        Ok(nonce)
    }

    #[cold]
    fn exhausted(&self) -> RecordError {
        match self.protection {
            Protection::Tls13 => RecordError::KeyExhausted,
            _ => RecordError::Tls12KeyExhausted(self.limit),
        }
    }

    /// Seals one record in place: `buf[start..start + prefix]` is reserved for its header
    /// (and explicit nonce, [`Protection::prefix_len`]) and `buf[start + prefix..]` is its
    /// plaintext (at most [`RECORD_PLAINTEXT_MAX`] bytes). Appends what follows the
    /// plaintext (the inner content type, the tag), and writes the prefix.
    pub fn seal(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        content: ContentType,
    ) -> Result<(), RecordError> {
        buf.resize(buf.len() + self.protection.suffix_len(), 0);
        self.seal_in_slice(&mut buf[start..], content)
    }

    /// Seals the record that fills `record`: prefix (written here), plaintext, then what
    /// follows it (written here).
    #[inline]
    fn seal_in_slice(
        &mut self,
        record: &mut [u8],
        content: ContentType,
    ) -> Result<(), RecordError> {
        match self.protection {
            Protection::Tls13 => self.seal13(record, content),
            _ => self.seal12(record, content),
        }
    }

    /// A TLS 1.3 record: header (5 bytes), plaintext, one byte for the content type and
    /// [`TAG_LEN`] for the tag.
    fn seal13(&mut self, record: &mut [u8], content: ContentType) -> Result<(), RecordError> {
        let len = record.len() - RECORD_HEADER_LEN;
        if len > RECORD_PLAINTEXT_MAX + 1 + TAG_LEN {
            return Err(RecordError::TooLarge(len));
        }
        let header = record_header(APPLICATION_DATA, len);
        record[..RECORD_HEADER_LEN].copy_from_slice(&header);
        let (inner, tag_space) = record[RECORD_HEADER_LEN..].split_at_mut(len - TAG_LEN);
        inner[len - TAG_LEN - 1] = content as u8;
        let nonce = Nonce::assume_unique_for_key(self.next_nonce()?);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), inner)
            .map_err(|_| RecordError::TooLarge(len))?;
        tag_space.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// A TLS 1.2 record: header (5 bytes, the real content type), the explicit nonce (8
    /// bytes, AES-GCM only), plaintext, [`TAG_LEN`] for the tag.
    fn seal12(&mut self, record: &mut [u8], content: ContentType) -> Result<(), RecordError> {
        let len = record.len() - RECORD_HEADER_LEN;
        let explicit = self.protection.prefix_len() - RECORD_HEADER_LEN;
        let plaintext_len = len
            .checked_sub(explicit + TAG_LEN)
            .ok_or(RecordError::TooShort(len))?;
        if plaintext_len > RECORD_PLAINTEXT_MAX {
            return Err(RecordError::TooLarge(len));
        }
        let aad = tls12_aad(self.seq, content as u8, plaintext_len);
        let nonce = self.next_nonce()?;
        record[..RECORD_HEADER_LEN].copy_from_slice(&record_header(content as u8, len));
        let (nonce_space, rest) = record[RECORD_HEADER_LEN..].split_at_mut(explicit);
        // AES-GCM: the nonce's last 8 bytes travel with the record (rustls seals so too).
        nonce_space.copy_from_slice(&nonce[NONCE_LEN - explicit..]);
        let (plaintext, tag_space) = rest.split_at_mut(plaintext_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                plaintext,
            )
            .map_err(|_| RecordError::TooLarge(len))?;
        tag_space.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens the record whose header is `buf[from..from + 5]` (and whose body follows it,
    /// whole), moving its plaintext to `buf[to..]` (`to <= from`): records received together
    /// open into one contiguous plaintext. Returns the content type and where the content
    /// lies (TLS 1.3: padding and type byte stripped).
    #[inline]
    pub fn open_within(
        &mut self,
        buf: &mut [u8],
        to: usize,
        from: usize,
    ) -> Result<(ContentType, Range<usize>), RecordError> {
        let header: [u8; RECORD_HEADER_LEN] = buf[from..from + RECORD_HEADER_LEN]
            .try_into()
            .map_err(|_| RecordError::TooLarge(0))?;
        let len = self.protection.check_header(&header)?;
        match self.protection {
            Protection::Tls13 => self.open13(buf, to, from, header, len),
            _ => self.open12(buf, to, from, header, len),
        }
    }

    fn open13(
        &mut self,
        buf: &mut [u8],
        to: usize,
        from: usize,
        header: [u8; RECORD_HEADER_LEN],
        len: usize,
    ) -> Result<(ContentType, Range<usize>), RecordError> {
        let end = from + RECORD_HEADER_LEN + len;
        let nonce = Nonce::assume_unique_for_key(self.next_nonce()?);
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
        let content = content_type(plaintext[typed])?;
        Ok((content, to..to + typed))
    }

    fn open12(
        &mut self,
        buf: &mut [u8],
        to: usize,
        from: usize,
        header: [u8; RECORD_HEADER_LEN],
        len: usize,
    ) -> Result<(ContentType, Range<usize>), RecordError> {
        let end = from + RECORD_HEADER_LEN + len;
        let explicit = self.protection.prefix_len() - RECORD_HEADER_LEN;
        let content = content_type(header[0])?;
        let aad = tls12_aad(self.seq, header[0], len - explicit - TAG_LEN);
        let mut nonce = self.next_nonce()?;
        // AES-GCM: the salt, then the explicit nonce the record carries.
        let body = from + RECORD_HEADER_LEN;
        nonce[NONCE_LEN - explicit..].copy_from_slice(&buf[body..body + explicit]);
        let plaintext = self
            .key
            .open_within(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[to..end],
                (body + explicit - to)..,
            )
            .map_err(|_| RecordError::BadRecordMac)?;
        Ok((content, to..to + plaintext.len()))
    }
}

/// A content type byte.
fn content_type(byte: u8) -> Result<ContentType, RecordError> {
    match byte {
        21 => Ok(ContentType::Alert),
        22 => Ok(ContentType::Handshake),
        23 => Ok(ContentType::ApplicationData),
        other => Err(RecordError::UnknownContentType(other)),
    }
}

/// The additional data of a TLS 1.2 AEAD record (RFC 5246 6.2.3.3): sequence number, type,
/// version, plaintext length.
fn tls12_aad(seq: u64, content: u8, plaintext_len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8..11].copy_from_slice(&[content, LEGACY_VERSION[0], LEGACY_VERSION[1]]);
    aad[11..].copy_from_slice(&(plaintext_len as u16).to_be_bytes());
    aad
}

/// The header of a protected record of outer type `outer` whose body is `len` bytes.
fn record_header(outer: u8, len: usize) -> [u8; RECORD_HEADER_LEN] {
    let [hi, lo] = (len as u16).to_be_bytes();
    [outer, LEGACY_VERSION[0], LEGACY_VERSION[1], hi, lo]
}

/// The body length a received TLS 1.3 header states, checked: a protected record, within
/// bounds ([`Protection::check_header`] for any version).
pub fn check_header(header: &[u8; RECORD_HEADER_LEN]) -> Result<usize, RecordError> {
    Protection::Tls13.check_header(header)
}

/// Seals `buf[start..]` (the key's prefix reserved, then plaintext of any length) as as many
/// records as it needs, in place: a plaintext longer than one record is spread backwards over
/// ⌈len / 2^14⌉ records (one move of the bytes after the first record), then each is sealed
/// where it lies.
pub fn seal_all(
    key: &mut RecordKey,
    buf: &mut Vec<u8>,
    start: usize,
    content: ContentType,
) -> Result<(), RecordError> {
    let prefix = key.protection.prefix_len();
    let overhead = key.protection.overhead();
    let plaintext_len = buf.len() - start - prefix;
    if plaintext_len <= RECORD_PLAINTEXT_MAX {
        return key.seal(buf, start, content);
    }
    let records = plaintext_len.div_ceil(RECORD_PLAINTEXT_MAX);
    let record_len = |r: usize| RECORD_PLAINTEXT_MAX.min(plaintext_len - r * RECORD_PLAINTEXT_MAX);
    let plaintext_at = start + prefix;
    buf.resize(start + records * overhead + plaintext_len, 0);
    // Move each record's plaintext to its final place, last first (it moves farthest).
    for r in (1..records).rev() {
        let from = plaintext_at + r * RECORD_PLAINTEXT_MAX;
        let to = start + r * (overhead + RECORD_PLAINTEXT_MAX) + prefix;
        buf.copy_within(from..from + record_len(r), to);
    }
    let mut at = start;
    for r in 0..records {
        let end = at + record_len(r) + overhead;
        key.seal_in_slice(&mut buf[at..end], content)?;
        at = end;
    }
    Ok(())
}

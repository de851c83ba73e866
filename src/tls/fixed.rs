//! Both ends of a TLS 1.3 (or 1.2) session made from given traffic secrets, without a handshake: the
//! record layer in memory, for tests and the `tls_record` fuzz target (feature
//! `test-session`; never a way to talk to a peer). Keys and IVs are derived from a traffic
//! secret as RFC 8446 section 7.3 states, and each KeyUpdate derives the next secret as
//! section 7.2 does (`HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)`), so the two
//! ends stay in step through KeyUpdates as a handshaken session's do.

use super::config::TlsVersion;
use super::session::{SessionError, TlsSession};
use ring::hkdf;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::{CipherSuite, ConnectionTrafficSecrets, ExtractedSecrets};

/// The suites a fixed session speaks: those whose keys are 32 bytes (what rustls's `AeadKey`
/// can be made of outside rustls).
#[derive(Clone, Copy)]
enum Suite {
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Suite {
    fn of(suite: CipherSuite) -> Option<Suite> {
        match suite {
            CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(Suite::Aes256Gcm),
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(Suite::Chacha20Poly1305),
            _ => None,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256Gcm => hkdf::HKDF_SHA384,
            Suite::Chacha20Poly1305 => hkdf::HKDF_SHA256,
        }
    }

    /// The key and IV of `secret` (RFC 8446 section 7.3).
    fn keys(self, secret: &[u8]) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        let mut key = [0u8; 32];
        expand_label(self.hkdf(), secret, b"key", &mut key)?;
        let mut iv = [0u8; 12];
        expand_label(self.hkdf(), secret, b"iv", &mut iv)?;
        let (key, iv) = (AeadKey::from(key), Iv::from(iv));
        Ok(match self {
            Suite::Aes256Gcm => ConnectionTrafficSecrets::Aes256Gcm { key, iv },
            Suite::Chacha20Poly1305 => ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
        })
    }

    /// The secret after a KeyUpdate (RFC 8446 section 7.2).
    fn next(self, secret: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut next = vec![0; hkdf::KeyType::len(&self.hkdf())];
        expand_label(self.hkdf(), secret, b"traffic upd", &mut next)?;
        Ok(next)
    }
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// `HKDF-Expand-Label(secret, label, "", out.len())` (RFC 8446 section 7.1) into `out`.
fn expand_label(
    algorithm: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), rustls::Error> {
    let failed = |_| rustls::Error::General("HKDF-Expand-Label failed".into());
    let length = u16::try_from(out.len())
        .map_err(|_| rustls::Error::General("HKDF output too long".into()))?
        .to_be_bytes();
    let label_len = [u8::try_from(b"tls13 ".len() + label.len())
        .map_err(|_| rustls::Error::General("HKDF label too long".into()))?];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    hkdf::Prk::new_less_safe(algorithm, secret)
        .expand(&info, Len(out.len()))
        .map_err(failed)?
        .fill(out)
        .map_err(failed)
}

/// The key schedule of one end of a fixed session: its current secrets, each replaced by the
/// next at a KeyUpdate in its direction.
pub(super) struct FixedSchedule {
    suite: Suite,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl FixedSchedule {
    pub(super) fn update_tx_secret(
        &mut self,
    ) -> Result<(u64, ConnectionTrafficSecrets), rustls::Error> {
        self.tx = self.suite.next(&self.tx)?;
        Ok((0, self.suite.keys(&self.tx)?))
    }

    pub(super) fn update_rx_secret(
        &mut self,
    ) -> Result<(u64, ConnectionTrafficSecrets), rustls::Error> {
        self.rx = self.suite.next(&self.rx)?;
        Ok((0, self.suite.keys(&self.rx)?))
    }
}

impl TlsSession {
    /// Both ends of one TLS 1.3 session, `(client, server)`, from the traffic secrets each
    /// side sends with, without a handshake: what one seals the other opens, through
    /// KeyUpdates. For tests and fuzzing only (feature `test-session`): the secrets are the
    /// caller's, so the session authenticates nobody. `suite` is
    /// `TLS13_AES_256_GCM_SHA384` or `TLS13_CHACHA20_POLY1305_SHA256` (any other is refused
    /// with `UnsupportedSuite`); a secret is normally the hash's length (48 or 32 bytes), any
    /// length is taken.
    pub fn pair_from_secrets(
        suite: CipherSuite,
        client_secret: &[u8],
        server_secret: &[u8],
    ) -> Result<(TlsSession, TlsSession), SessionError> {
        TlsSession::pair_from_secrets_for(suite, client_secret, server_secret, TlsVersion::Tls13)
    }

    /// As [`TlsSession::pair_from_secrets`], the records protected as `version` protects them
    /// (TLS 1.2: the same keys and IVs, no KeyUpdate; `suite` still names the AEAD by its
    /// TLS 1.3 suite).
    pub fn pair_from_secrets_for(
        suite: CipherSuite,
        client_secret: &[u8],
        server_secret: &[u8],
        version: TlsVersion,
    ) -> Result<(TlsSession, TlsSession), SessionError> {
        let suite = Suite::of(suite).ok_or(super::record::RecordError::UnsupportedSuite)?;
        let end = |tx: &[u8], rx: &[u8]| {
            let keys = |secret| {
                suite
                    .keys(secret)
                    .map_err(|e| SessionError::KeyUpdate(e.to_string()))
            };
            let secrets = ExtractedSecrets {
                tx: (0, keys(tx)?),
                rx: (0, keys(rx)?),
            };
            let schedule = FixedSchedule {
                suite,
                tx: tx.to_vec(),
                rx: rx.to_vec(),
            };
            TlsSession::fixed(secrets, schedule, version)
        };
        Ok((
            end(client_secret, server_secret)?,
            end(server_secret, client_secret)?,
        ))
    }
}

//! The Ed25519 private key a client proves a public-key credentials entry with (PROTOCOL.md
//! section 14): the client sends the entry's NAME as HELLO's token, and answers the relay's
//! CHALLENGE with the signature of its nonce, so no secret crosses the wire.
//!
//! A key file holds one line, either `ed25519-seed:<standard base64 of the 32-byte seed>`
//! (what `ringrelay keygen` writes) or a NATS nkey user seed (`SU...`, as `nsc` writes), so
//! the same file serves a NATS client of the same entry. One trailing newline is allowed.

use crate::protocol::public_key::{
    decode_nkey_user_seed, encode_ed25519, encode_nkey_user, encode_nkey_user_seed,
    hello_proof_message, PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN,
};
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::fmt;
use std::path::Path;

/// The prefix of a key file's line in the form `ringrelay keygen` writes.
const SEED_PREFIX: &str = "ed25519-seed:";

/// An Ed25519 private key (see the module docs). `Debug` shows the public key only.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// Kept to write the key out again (a file, an nkey seed); ring does not hand it back.
    seed: [u8; SEED_LEN],
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SigningKey, String> {
        let mut seed = [0u8; SEED_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| "the operating system's random source failed".to_string())?;
        SigningKey::from_seed(seed)
    }

    /// The key whose 32-byte seed is `seed`.
    pub fn from_seed(seed: [u8; SEED_LEN]) -> Result<SigningKey, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| format!("not an Ed25519 seed: {e}"))?;
        Ok(SigningKey { pair, seed })
    }

    /// The key in a key file's text (see the module docs).
    pub fn parse(text: &str) -> Result<SigningKey, String> {
        let line = crate::secret_files::secret_in_file_text(text).trim();
        if let Some(b64) = line.strip_prefix(SEED_PREFIX) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("not standard base64 after {SEED_PREFIX:?} ({e})"))?;
            let seed: [u8; SEED_LEN] = raw.try_into().map_err(|raw: Vec<u8>| {
                format!("a seed of {} bytes, an Ed25519 seed has 32", raw.len())
            })?;
            return SigningKey::from_seed(seed);
        }
        if line.starts_with("SU") {
            return SigningKey::from_seed(decode_nkey_user_seed(line)?);
        }
        Err(format!(
            "expected one line \"{SEED_PREFIX}<base64 of 32 bytes>\" or a NATS nkey user seed \
             (SU...)"
        ))
    }

    /// The key in the file at `path` (see the module docs); the error names the file.
    pub fn from_file(path: &Path) -> Result<SigningKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        SigningKey::parse(&text).map_err(|e| format!("key file {}: {e}", path.display()))
    }

    /// The key file's text for this key (one line, newline-terminated).
    pub fn file_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.seed);
        format!("{SEED_PREFIX}{b64}\n")
    }

    /// The 32 raw bytes of the public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut key = [0; PUBLIC_KEY_LEN];
        key.copy_from_slice(self.pair.public_key().as_ref());
        key
    }

    /// The public key as a credentials file's `public_key = "ed25519:..."` writes it.
    pub fn public_key_ed25519(&self) -> String {
        encode_ed25519(&self.public_key())
    }

    /// The public key as a NATS nkey user key (`U...`), which the credentials file takes too.
    pub fn public_key_nkey(&self) -> String {
        encode_nkey_user(&self.public_key())
    }

    /// The private key as a NATS nkey user seed (`SU...`), for a NATS client's `nkey` option.
    pub fn nkey_seed(&self) -> String {
        encode_nkey_user_seed(&self.seed)
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0; SIGNATURE_LEN];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }

    /// The PROOF's body answering a CHALLENGE's `nonce` for a HELLO with `client_id`.
    pub fn sign_hello(&self, nonce: &[u8; 32], client_id: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign(&hello_proof_message(nonce, client_id))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key_ed25519())
            .finish_non_exhaustive()
    }
}

/// Two keys are equal when their public keys are (so [`super::ClientOptions`] compares).
impl PartialEq for SigningKey {
    fn eq(&self, other: &SigningKey) -> bool {
        self.public_key() == other.public_key()
    }
}

impl Eq for SigningKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_reads_back_as_the_same_key() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::parse(&key.file_text()).unwrap();
        assert_eq!(again, key);
        assert_eq!(again.seed, key.seed);
        let from_nkey = SigningKey::parse(&key.nkey_seed()).unwrap();
        assert_eq!(from_nkey, key);
        assert!(key.public_key_nkey().starts_with('U'));
        assert!(!format!("{key:?}").contains(&key.file_text()[SEED_PREFIX.len()..]));
    }

    #[test]
    fn the_worked_example_key_of_protocol_md_reads_from_its_seed() {
        let text = format!(
            "{SEED_PREFIX}{}\r\n",
            base64::engine::general_purpose::STANDARD.encode([1u8; 32])
        );
        let key = SigningKey::parse(&text).unwrap();
        assert_eq!(
            key.public_key_ed25519(),
            "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
        );
    }

    #[test]
    fn bad_key_files_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "expected one line"),
            (
                "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=",
                "expected",
            ),
            ("ed25519-seed:AAAA", "3 bytes"),
            ("ed25519-seed:!!", "base64"),
            ("SUAAAA", "length"),
        ] {
            let error = SigningKey::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }
}

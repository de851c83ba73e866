//! NATS nkeys: a public-key credentials entry's NATS client proves its key as nats-server's
//! clients do. The INFO carries a fresh `nonce` (drawn by the I/O layer from the OS, only
//! while some entry has a public key); CONNECT carries `nkey` (the user public key, `U...`)
//! and `sig`, the Ed25519 signature of the nonce string's bytes. The entry with that key is
//! then admitted exactly as a verified secret's is; a nonce is used once, so a captured
//! CONNECT does not verify on another connection.

use super::rules::{nats_client_id, NatsCall, NatsOutput};
use crate::core::credentials::public_key::{decode_nkey_user, verify, SIGNATURE_LEN};
use crate::core::credentials::Entry;
use crate::core::engine::Engine;
use crate::core::session::REFUSED_BY_HOST;
use crate::protocol::EXTENDED_VERSION_MIN;
use base64::Engine as _;
use std::sync::Arc;

/// One text for an unknown key, a malformed one and a bad signature: a CONNECT cannot probe
/// which keys are entries'.
const NKEY_REFUSED: &str =
    "nkey refused: not a credentials entry's key, or not its signature of this connection's nonce";

impl Engine<'_> {
    /// The first CONNECT, carrying `nkey` and `sig` for the INFO's `nonce`: the entry with
    /// that public key goes on as a verified secret does ([`Engine::on_verified`]); anything
    /// else closes AUTH_FAILED. One Ed25519 verification (some 50 µs), on the worker.
    #[cold]
    #[inline(never)]
    pub(super) fn nats_connect_nkey<O: NatsOutput>(
        &self,
        call: &mut NatsCall<'_, '_, O>,
        nkey: &str,
        sig: &str,
        nonce: &str,
    ) {
        let client_id = nats_client_id(call.at);
        let entry = self.nkey_entry(nkey, sig, nonce);
        // The host's authorize hook, as for any HELLO its credentials admit: the token it
        // sees is the nkey.
        let host_refuses = entry.is_some()
            && self
                .config
                .session
                .authorize
                .as_ref()
                .is_some_and(|authorize| {
                    !(authorize.0)(
                        &client_id,
                        nkey.as_bytes(),
                        call.conn.peer.as_deref().copied(),
                    )
                });
        call.conn.id_generated = true;
        // A NATS connection speaks version 3 (see `nats_hello`).
        if !call.conn.session.open_with_proven_key(EXTENDED_VERSION_MIN) {
            return;
        }
        call.conn.held_hello = Some(client_id.into());
        match entry {
            Some(_) if host_refuses => {
                self.refuse_hello(call.conn, call.at, REFUSED_BY_HOST, call.out)
            }
            Some(entry) => {
                call.conn.verifying = true;
                let (guards, scratch) = (call.guards, &mut *call.scratch);
                self.on_verified(call.conn, call.at, Ok(entry), guards, scratch, call.out);
            }
            None => self.refuse_hello(call.conn, call.at, NKEY_REFUSED, call.out),
        }
    }

    /// The entry in force whose public key is `nkey`, if `sig` is its signature of `nonce`.
    fn nkey_entry(&self, nkey: &str, sig: &str, nonce: &str) -> Option<Arc<Entry>> {
        let key = decode_nkey_user(nkey).ok()?;
        let signature = decode_sig(sig)?;
        let verified = verify(&key, nonce.as_bytes(), &signature);
        let entry = self.config.session.gate.entry_by_public_key(&key)?;
        verified.then_some(entry)
    }
}

/// `sig` as nats-server reads it: base64url without padding, else standard base64.
fn decode_sig(sig: &str) -> Option<Vec<u8>> {
    let engines = [
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD,
    ];
    let signature = engines.iter().find_map(|e| e.decode(sig).ok())?;
    (signature.len() == SIGNATURE_LEN).then_some(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sig_reads_as_base64url_or_standard_base64_of_64_bytes() {
        let bytes: Vec<u8> = (0..64).map(|i| i * 4 + 3).collect();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_ne!(url, standard.trim_end_matches('='));
        assert_eq!(decode_sig(&url), Some(bytes.clone()));
        assert_eq!(decode_sig(&standard), Some(bytes));
        assert_eq!(decode_sig("c2ln"), None, "3 bytes");
        assert_eq!(decode_sig("!!"), None);
    }
}

//! Rules of version 4's public-key HELLO: the relay answers CHALLENGE with a nonce the I/O
//! layer drew from the OS ([`Output::challenge_nonce`]; no RNG in the sans-IO core), the
//! client signs it, and the PROOF is verified here on the worker (one Ed25519 verification,
//! some 50 µs: no need for the verifier thread). A proof signs this connection's nonce and
//! the HELLO's id, so one captured elsewhere does not verify.

use super::{ConnRelay, Engine, Output};
use crate::core::credentials::public_key::{hello_proof_message, verify};
use crate::core::credentials::Entry;
use crate::core::location::Location;
use crate::core::router::Guards;
use crate::protocol::Frame;
use std::sync::Arc;

const NO_NONCE: &str = "the relay could not draw a random nonce: connect again";
const BAD_PROOF: &str =
    "PROOF refused: not the entry's key's signature of this connection's nonce and HELLO's id";
/// What a PROOF answering a decoy CHALLENGE (no public-key entry of that name) is verified
/// against, so that it costs what a real one does; it is refused whatever the outcome. (The
/// public key of PROTOCOL.md's worked example, whose seed is public: never admitted.)
const DECOY_PUBLIC_KEY: [u8; 32] = [
    0x8a, 0x88, 0xe3, 0xdd, 0x74, 0x09, 0xf1, 0x95, 0xfd, 0x52, 0xdb, 0x2d, 0x3c, 0xba, 0x5d, 0x72,
    0xca, 0x67, 0x09, 0xbf, 0x1d, 0x94, 0x12, 0x1b, 0xf3, 0x74, 0x88, 0x01, 0xb4, 0x0f, 0x6f, 0x5c,
];

/// The CHALLENGE a connection's PROOF must answer.
#[derive(Debug)]
pub(crate) struct Challenge {
    nonce: [u8; 32],
    /// The entry HELLO named, as in force then; `None`: a decoy (no public-key entry of
    /// that name), refused whatever the PROOF.
    entry: Option<Arc<Entry>>,
}

impl Engine<'_> {
    /// HELLO named a public-key entry (or, as a decoy, a name that is none): hold it (and
    /// the frames after it, as for a secret being verified) and send CHALLENGE with a fresh
    /// nonce.
    #[cold]
    #[inline(never)]
    pub(super) fn challenge_hello(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        client_id: &[u8],
        entry: Option<Arc<Entry>>,
        out: &mut impl Output,
    ) {
        let Some(nonce) = out.challenge_nonce() else {
            return self.refuse_hello(conn, at, NO_NONCE, out);
        };
        conn.held_hello = Some(client_id.into());
        out.send_frame_local(at, &Frame::Challenge { nonce: &nonce });
        conn.challenge = Some(Box::new(Challenge { nonce, entry }));
    }

    /// The PROOF answering this connection's CHALLENGE: a good signature goes on exactly as a
    /// verified secret does ([`Engine::on_verified`]: the id checked against the entry's
    /// `ids`, WELCOME once the node is ready, the grant); a bad one closes AUTH_FAILED.
    #[cold]
    #[inline(never)]
    pub(super) fn on_proof(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        signature: &[u8; 64],
        guards: &Guards<'_>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        // The session answers PROOF only after CHALLENGE, which always sets the challenge.
        let Some(challenge) = conn.challenge.take() else {
            return self.refuse_hello(conn, at, BAD_PROOF, out);
        };
        let id = conn.held_hello.as_deref().unwrap_or_default();
        let message = hello_proof_message(&challenge.nonce, id);
        let key = challenge.entry.as_ref().and_then(|entry| entry.public_key);
        // A decoy costs one verification too, so the time taken does not tell it apart.
        let verified = verify(&key.unwrap_or(DECOY_PUBLIC_KEY), &message, signature);
        let (Some(entry), Some(_), true) = (challenge.entry, key, verified) else {
            return self.refuse_hello(conn, at, BAD_PROOF, out);
        };
        conn.session.on_proof_accepted();
        conn.verifying = true;
        self.on_verified(conn, at, Ok(entry), guards, scratch, out);
    }
}

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

/// The CHALLENGE a connection's PROOF must answer.
#[derive(Debug)]
pub(crate) struct Challenge {
    nonce: [u8; 32],
    /// The entry HELLO named, as in force then.
    entry: Arc<Entry>,
}

impl Engine<'_> {
    /// HELLO named a public-key entry: hold it (and the frames after it, as for a secret
    /// being verified) and send CHALLENGE with a fresh nonce.
    #[cold]
    #[inline(never)]
    pub(super) fn challenge_hello(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        client_id: &[u8],
        entry: Arc<Entry>,
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
        let proven = challenge
            .entry
            .public_key
            .is_some_and(|key| verify(&key, &message, signature));
        if !proven {
            return self.refuse_hello(conn, at, BAD_PROOF, out);
        }
        conn.session.on_proof_accepted();
        conn.verifying = true;
        self.on_verified(conn, at, Ok(challenge.entry), guards, scratch, out);
    }
}

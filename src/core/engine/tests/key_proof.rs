//! Public-key credentials (protocol version 4): a HELLO naming a key entry is answered with
//! CHALLENGE and held with the frames after it; a PROOF signing this connection's nonce and
//! id is welcomed like a verified secret; a bad, replayed or unasked-for PROOF, an old
//! version and a late PROOF are refused.

use super::*;
use crate::core::credentials::public_key::{encode_ed25519, hello_proof_message};
use crate::core::credentials::{Credentials, CredentialsInForce, Gate};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::sync::Arc;

fn key_pair(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("a 32-byte seed is always a key")
}

/// Entry `sensor` holds key 1's public key and may register `sensor-*`.
fn harness() -> Harness {
    let public: [u8; 32] = key_pair(1)
        .public_key()
        .as_ref()
        .try_into()
        .expect("an ed25519 public key always has 32 bytes");
    let text = format!(
        "[[entry]]\nname = \"sensor\"\npublic_key = \"{}\"\nids = [\"sensor-*\"]\npublish = {{ allow = [\"s.>\"] }}\n",
        encode_ed25519(&public)
    );
    let creds = Credentials::from_toml_str(&text).expect("the test file is always valid");
    let mut h = Harness::new();
    let creds = Arc::new(CredentialsInForce::new(creds));
    h.config.session.gate = Gate::new(Some(b"admin"), Some(creds));
    h
}

/// The harness with a shared-token client `sub` subscribed to `s.t` (its slot).
fn harness_with_listener() -> (Harness, u32) {
    let mut h = harness();
    let listener = h.client_with_token(b"sub", b"admin");
    h.frame(listener, sub(b"s.t", b""));
    h.rec.take();
    (h, listener)
}

impl Harness {
    fn key_hello(&mut self, slot: u32, version: u16, id: &[u8]) {
        let hello = Frame::Hello {
            version,
            client_id: id,
            token: b"sensor",
        };
        self.frame(slot, hello);
    }

    /// A client that came in with the shared token (unrestricted).
    fn client_with_token(&mut self, id: &[u8], token: &[u8]) -> u32 {
        let slot = self.connect();
        let hello = Frame::Hello {
            version: 4,
            client_id: id,
            token,
        };
        self.frame(slot, hello);
        self.rec.take();
        slot
    }

    fn proof(&mut self, slot: u32, signature: &[u8]) {
        let signature: &[u8; 64] = signature
            .try_into()
            .expect("an ed25519 signature always has 64 bytes");
        self.frame(slot, Frame::Proof { signature });
    }
}

/// Key `seed`'s proof for `nonce` and `id`.
fn sign(seed: u8, nonce: &[u8; 32], id: &[u8]) -> Vec<u8> {
    let message = hello_proof_message(nonce, id);
    key_pair(seed).sign(&message).as_ref().to_vec()
}

fn refused(slot: u32) -> Vec<Out> {
    vec![
        Out::Count(Counter::AuthFailed),
        Out::CloseConn(slot, CloseReason::AUTH_FAILED),
    ]
}

#[test]
fn a_good_proof_is_welcomed_and_the_held_frames_follow() {
    let (mut h, listener) = harness_with_listener();
    let sensor = h.connect();
    h.key_hello(sensor, 4, b"sensor-1");
    h.frame(
        sensor,
        Frame::Publish {
            topic: b"s.t",
            payload: b"p",
            no_echo: false,
        },
    );
    assert_eq!(h.rec.take(), vec![Out::Local(sensor, FrameKind::Challenge)]);
    assert_eq!(h.conns[sensor as usize].phase(), Phase::AwaitingProof);
    h.proof(sensor, &sign(1, &[0x5a; 32], b"sensor-1"));
    let out = h.rec.take();
    assert_eq!(out[0], Out::Local(sensor, FrameKind::Welcome));
    assert!(out.contains(&Out::Deliver(
        listener,
        b"sensor-1".to_vec(),
        b"s.t".to_vec(),
        b"p".to_vec()
    )));
    assert_eq!(h.conns[sensor as usize].entry_name(), Some("sensor"));
    assert_eq!(h.conns[sensor as usize].phase(), Phase::Open);
}

#[test]
fn a_wrong_key_or_a_proof_for_another_id_is_refused() {
    let mut h = harness();
    for (seed, signed_id) in [(2, &b"sensor-1"[..]), (1, b"sensor-2")] {
        let slot = h.connect();
        h.key_hello(slot, 4, b"sensor-1");
        h.rec.take();
        h.proof(slot, &sign(seed, &[0x5a; 32], signed_id));
        assert_eq!(h.rec.take(), refused(slot));
        assert!(h.tables.locations.row(b"sensor-1").is_none());
    }
}

#[test]
fn a_proof_captured_from_another_connection_does_not_verify_against_a_new_nonce() {
    let mut h = harness();
    let first = h.connect();
    h.rec.nonce = Some([1; 32]);
    h.key_hello(first, 4, b"sensor-1");
    let captured = sign(1, &[1; 32], b"sensor-1");
    h.proof(first, &captured);
    assert_eq!(h.rec.take()[1], Out::Local(first, FrameKind::Welcome));
    let replay = h.connect();
    h.rec.nonce = Some([2; 32]);
    h.key_hello(replay, 4, b"sensor-1");
    h.rec.take();
    h.proof(replay, &captured);
    assert_eq!(h.rec.take(), refused(replay));
}

#[test]
fn a_key_entry_with_an_older_version_is_refused_and_never_challenged() {
    let mut h = harness();
    for version in 1..4 {
        let slot = h.connect();
        h.key_hello(slot, version, b"sensor-1");
        let out = h.rec.take();
        assert!(
            out.contains(&Out::Close(slot, CloseReason::AUTH_FAILED)),
            "{out:?}"
        );
        assert!(!out.contains(&Out::Local(slot, FrameKind::Challenge)));
    }
}

#[test]
fn a_proof_nobody_asked_for_is_a_bad_handshake() {
    let mut h = harness();
    let after_token = h.client_with_token(b"x", b"admin");
    let first = h.connect();
    h.proof(first, &[0; 64]);
    h.proof(after_token, &[0; 64]);
    let out = h.rec.take();
    assert!(out.contains(&Out::Close(first, CloseReason::BAD_HANDSHAKE)));
    assert!(out.contains(&Out::Close(after_token, CloseReason::BAD_HANDSHAKE)));
}

#[test]
fn no_proof_within_the_handshake_timeout_closes_the_connection() {
    let mut h = harness();
    let slot = h.connect();
    h.key_hello(slot, 4, b"sensor-1");
    h.rec.take();
    h.tick(slot, 1000);
    assert_eq!(h.rec.take(), vec![]);
    h.tick(slot, 1001);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ProtocolErrorClose),
            Out::CloseConn(slot, CloseReason::HANDSHAKE_TIMEOUT)
        ]
    );
}

#[test]
fn an_id_outside_the_entrys_patterns_or_no_nonce_is_refused() {
    let mut h = harness();
    let slot = h.connect();
    h.key_hello(slot, 4, b"lobby-1");
    h.proof(slot, &sign(1, &[0x5a; 32], b"lobby-1"));
    assert_eq!(h.rec.take()[1..], refused(slot));
    h.rec.nonce = None;
    let slot = h.connect();
    h.key_hello(slot, 4, b"sensor-1");
    assert_eq!(h.rec.take(), refused(slot));
}

#[test]
fn a_proof_while_the_node_is_not_ready_holds_the_hello_until_it_is() {
    let mut h = harness();
    h.rec.ready = false;
    let slot = h.connect();
    h.key_hello(slot, 4, b"sensor-1");
    h.rec.take();
    h.ready(slot);
    assert_eq!(
        h.rec.take(),
        vec![],
        "a challenged HELLO is not welcomed by readiness"
    );
    h.proof(slot, &sign(1, &[0x5a; 32], b"sensor-1"));
    assert_eq!(h.rec.take(), vec![Out::Held(slot)]);
    h.rec.ready = true;
    h.ready(slot);
    assert_eq!(h.rec.take()[0], Out::Local(slot, FrameKind::Welcome));
}

/// A NAME alone that is no public-key entry is challenged as a key entry is, and its PROOF
/// refused with the text a wrong key's gets (even one that verifies against the decoy's key),
/// so the answers do not tell key entries from other names; below version 4 both get one
/// text too. The shared token is still admitted first.
#[test]
fn a_name_that_is_no_key_entry_is_challenged_and_refused_like_a_wrong_key() {
    let mut h = harness();
    let wrong_key = h.connect();
    h.key_hello(wrong_key, 4, b"sensor-1");
    assert_eq!(
        h.rec.take(),
        vec![Out::Local(wrong_key, FrameKind::Challenge)]
    );
    h.proof(wrong_key, &sign(2, &[0x5a; 32], b"sensor-1"));
    assert_eq!(h.rec.take(), refused(wrong_key));
    let unknown = h.connect();
    let hello = Frame::Hello {
        version: 4,
        client_id: b"sensor-1",
        token: b"nobody",
    };
    h.frame(unknown, hello);
    assert_eq!(
        h.rec.take(),
        vec![Out::Local(unknown, FrameKind::Challenge)]
    );
    assert_eq!(h.conns[unknown as usize].phase(), Phase::AwaitingProof);
    // Key 1 is both sensor's and the decoy's: a proof that verifies is refused all the same.
    h.proof(unknown, &sign(1, &[0x5a; 32], b"sensor-1"));
    assert_eq!(h.rec.take(), refused(unknown));
    assert!(h.tables.locations.row(b"sensor-1").is_none());
    let texts = std::mem::take(&mut h.rec.close_texts);
    assert_eq!(texts.len(), 2);
    assert_eq!(
        texts[0], texts[1],
        "one text for a wrong key and an unknown name"
    );
    for token in [&b"sensor"[..], b"nobody"] {
        let slot = h.connect();
        let hello = Frame::Hello {
            version: 3,
            client_id: b"sensor-1",
            token,
        };
        h.frame(slot, hello);
        assert!(h
            .rec
            .take()
            .contains(&Out::Close(slot, CloseReason::AUTH_FAILED)));
    }
    let texts = std::mem::take(&mut h.rec.close_texts);
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0], texts[1], "one text below version 4 too");
    let admin = h.client_with_token(b"admin-1", b"admin");
    assert_eq!(h.conns[admin as usize].phase(), Phase::Open);
}

/// Frames flooded after HELLO, before the PROOF, are held up to `max_frame_bytes` only; past
/// that the connection is closed NOT_READY with a text saying the PROOF is what they waited
/// for (not that the node is not ready), and nothing held is applied.
#[test]
fn a_flood_before_the_proof_is_bounded_and_the_close_says_so() {
    let (mut h, _listener) = harness_with_listener();
    let slot = h.connect();
    h.key_hello(slot, 4, b"sensor-1");
    assert_eq!(h.rec.take(), vec![Out::Local(slot, FrameKind::Challenge)]);
    let payload = vec![b'p'; 64 * 1024];
    let max_frames = (h.config.max_frame_bytes as usize) / payload.len() + 2;
    let closed_after = (1..=max_frames).find(|_| {
        let publish = Frame::Publish {
            topic: b"s.t",
            payload: &payload,
            no_echo: false,
        };
        h.frame(slot, publish);
        !h.rec.out.is_empty()
    });
    assert!(closed_after.is_some(), "closed within {max_frames} frames");
    assert_eq!(
        h.rec.take(),
        vec![Out::CloseConn(slot, CloseReason::NOT_READY)]
    );
    let text = h.rec.close_texts.pop().unwrap_or_default();
    assert!(text.contains("before the PROOF"), "{text}");
    assert!(!text.contains("not ready"), "{text}");
    assert_eq!(h.conns[slot as usize].held_bytes(), 0);
    h.proof(slot, &sign(1, &[0x5a; 32], b"sensor-1"));
    assert!(
        !h.rec.take().iter().any(|o| matches!(o, Out::Deliver(..))),
        "nothing held is applied"
    );
}

/// A NATS CONNECT with `nkey` and `sig` for `nonce`, signed by key `seed`.
fn nkey_connect(seed: u8, nonce: &str) -> Vec<u8> {
    use base64::Engine as _;
    let public: [u8; 32] = key_pair(seed)
        .public_key()
        .as_ref()
        .try_into()
        .expect("an ed25519 public key always has 32 bytes");
    let nkey = crate::core::credentials::public_key::encode_nkey_user(&public);
    let signature = key_pair(seed).sign(nonce.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.as_ref());
    format!("CONNECT {{\"verbose\":false,\"nkey\":\"{nkey}\",\"sig\":\"{sig}\"}}\r\n").into_bytes()
}

/// NATS nkeys: CONNECT's `nkey` and `sig` of this connection's INFO nonce admit the entry
/// with that key (its permissions bind); a wrong key, or a CONNECT captured from another
/// connection (another nonce), is refused AUTH_FAILED.
#[test]
fn a_nats_nkey_signing_this_connections_nonce_is_admitted_and_a_replay_is_not() {
    let mut h = harness();
    let slot = h.connect();
    h.state(slot).nonce = Some("nonce-one".into());
    let captured = nkey_connect(1, "nonce-one");
    h.nats_ok(slot, &captured);
    assert_eq!(h.conns[slot as usize].phase(), Phase::Open);
    assert_eq!(h.conns[slot as usize].entry_name(), Some("sensor"));
    assert!(h.state(slot).nonce.is_none(), "a nonce is used once");
    h.rec.take();
    for (nonce, connect) in [
        ("nonce-two", captured),
        ("nonce-three", nkey_connect(2, "nonce-three")),
    ] {
        let slot = h.connect();
        h.state(slot).nonce = Some(nonce.into());
        let _ = h.nats(slot, &connect);
        assert_eq!(h.rec.take(), refused(slot));
        assert_ne!(h.conns[slot as usize].phase(), Phase::Open);
    }
}

/// The host's authorize hook sees an nkey CONNECT (its token: the nkey) and may refuse it, as
/// it may any HELLO.
#[test]
fn the_host_may_refuse_a_nats_nkey_the_credentials_admit() {
    let mut h = harness();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_hook = Arc::clone(&seen);
    h.config.session.authorize = Some(crate::core::session::Authorizer(Arc::new(
        move |_id: &[u8], token: &[u8], _peer| {
            seen_by_hook
                .lock()
                .expect("the hook never panics holding it")
                .push(token.to_vec());
            false
        },
    )));
    let slot = h.connect();
    h.state(slot).nonce = Some("nonce-one".into());
    let _ = h.nats(slot, &nkey_connect(1, "nonce-one"));
    assert_eq!(h.rec.take(), refused(slot));
    assert_eq!(
        h.rec.close_texts,
        [crate::core::session::REFUSED_BY_HOST.to_string()]
    );
    let seen = seen.lock().expect("the hook never panics holding it");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].starts_with(b"U"), "the hook sees the nkey");
}

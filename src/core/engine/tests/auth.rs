//! Credentials and permissions: a HELLO naming an entry waits for its secret's verification
//! (frames after it wait too), is refused for a wrong secret or an id its entry may not
//! register, and a frame outside the entry's permissions is refused with ERROR
//! PERMISSION_DENIED while the connection stays open.

use super::*;
use crate::core::credentials::secret::{hash_secret, SALT_BYTES};
use crate::core::credentials::{Credentials, CredentialsInForce, Entry, Gate};
use std::sync::{Arc, OnceLock};

/// One entry for game servers, one anonymous entry that may only subscribe.
fn credentials() -> Credentials {
    credentials_with("game-*", "game.>")
}

/// As [`credentials`], with entry `game`'s id glob and publish allow pattern given.
fn credentials_with(ids: &str, publish: &str) -> Credentials {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash = HASH.get_or_init(|| {
        hash_secret(b"pw", &[3; SALT_BYTES]).expect("hashing a short secret cannot fail")
    });
    let text = format!(
        r#"
anonymous = "guest"
[[entry]]
name = "game"
secret_hash = "{hash}"
ids = ["{ids}"]
send = {{ allow = ["lobby-*"] }}
publish = {{ allow = ["{publish}"], deny = ["game.admin.>"] }}
subscribe = {{ allow = ["game.>"] }}
watch = {{ allow = ["game-*"] }}
[[entry]]
name = "guest"
ids = ["guest-*"]
publish = {{ allow = [] }}
send = {{ allow = [] }}
"#
    );
    Credentials::from_toml_str(&text).expect("the test file is always valid")
}

fn game_entry(creds: &CredentialsInForce) -> Arc<Entry> {
    let entry = creds.current().entry("game").cloned();
    entry.expect("the test file always has entry game")
}

fn harness() -> (Harness, Arc<CredentialsInForce>) {
    let mut h = Harness::new();
    h.config.limits.topic_bytes_max = 64;
    let creds = Arc::new(CredentialsInForce::new(credentials()));
    h.config.session.gate = Gate::new(Some(b"admin"), Some(Arc::clone(&creds)));
    (h, creds)
}

impl Harness {
    fn hello_with(&mut self, slot: u32, id: &[u8], token: &[u8]) {
        self.frame(
            slot,
            Frame::Hello {
                version: crate::protocol::PROTOCOL_VERSION,
                client_id: id,
                token,
            },
        );
    }

    fn verified(&mut self, slot: u32, outcome: Result<Arc<Entry>, &'static str>) {
        let engine = Engine::new(&self.tables, &self.config);
        let guards: Guards<'_> = self.tables.guards();
        engine.on_verified(
            &mut self.conns[slot as usize],
            loc(slot),
            outcome,
            &guards,
            &mut self.scratch,
            &mut self.rec,
        );
    }

    /// A client that came in with the shared token (unrestricted).
    fn admin_client(&mut self, id: &[u8]) -> u32 {
        let slot = self.connect();
        self.hello_with(slot, id, b"admin");
        self.rec.take();
        slot
    }

    /// A client of entry `game` registered as `id`.
    fn game_client(&mut self, creds: &CredentialsInForce, id: &[u8]) -> u32 {
        let slot = self.connect();
        self.hello_with(slot, id, b"game:pw");
        let entry = game_entry(creds);
        self.verified(slot, Ok(entry));
        self.rec.take();
        slot
    }
}

fn publish(topic: &[u8]) -> Frame<'_> {
    Frame::Publish {
        topic,
        payload: b"p",
        no_echo: false,
    }
}

#[test]
fn a_hello_naming_an_entry_waits_for_its_secret_with_the_frames_after_it() {
    let (mut h, creds) = harness();
    let sub = h.admin_client(b"sub");
    h.frame(sub, sub_frame(b"game.move"));
    h.rec.take();
    let game = h.connect();
    h.hello_with(game, b"game-1", b"game:pw");
    h.frame(game, publish(b"game.move"));
    assert_eq!(
        h.rec.take(),
        vec![Out::Verify(game, "game".into(), b"pw".to_vec())],
        "nothing is welcomed or routed before the secret is verified"
    );
    assert!(h.tables.locations.row(b"game-1").is_none());
    h.verified(game, Ok(game_entry(&creds)));
    let out = h.rec.take();
    assert_eq!(out[0], Out::Local(game, FrameKind::Welcome));
    assert!(out.contains(&Out::Deliver(
        sub,
        b"game-1".to_vec(),
        b"game.move".to_vec(),
        b"p".to_vec()
    )));
    assert_eq!(h.conns[game as usize].entry_name(), Some("game"));
}

#[test]
fn a_wrong_secret_closes_with_auth_failed_and_nothing_held_is_routed() {
    let (mut h, _) = harness();
    let sub = h.admin_client(b"sub");
    h.frame(sub, sub_frame(b"game.move"));
    let game = h.connect();
    h.hello_with(game, b"game-1", b"game:wrong");
    h.frame(game, publish(b"game.move"));
    h.rec.take();
    h.verified(game, Err(crate::core::credentials::REFUSED_SECRET));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::AuthFailed),
            Out::CloseConn(game, CloseReason::AUTH_FAILED)
        ]
    );
    assert!(h.tables.locations.row(b"game-1").is_none());
    assert!(!h.conns[game as usize].hello_held());
}

#[test]
fn an_id_outside_the_entrys_patterns_is_refused_after_the_secret_verifies() {
    let (mut h, creds) = harness();
    let victim = h.admin_client(b"lobby-1");
    let thief = h.connect();
    h.hello_with(thief, b"lobby-1", b"game:pw");
    h.rec.take();
    h.verified(thief, Ok(game_entry(&creds)));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::AuthFailed),
            Out::CloseConn(thief, CloseReason::AUTH_FAILED)
        ],
        "the victim keeps its id"
    );
    assert_eq!(
        h.tables.locations.row(b"lobby-1").map(|r| r.location),
        Some(loc(victim))
    );
}

#[test]
fn the_anonymous_entry_needs_no_secret_but_binds_ids_and_permissions() {
    let (mut h, _) = harness();
    let guest = h.connect();
    h.hello_with(guest, b"guest-7", b"");
    assert_eq!(h.rec.take()[0], Out::Local(guest, FrameKind::Welcome));
    h.frame(guest, publish(b"game.move"));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::PermissionDenied),
            Out::LocalError(guest, ErrorCode::PERMISSION_DENIED)
        ]
    );
    let other = h.connect();
    h.hello_with(other, b"game-1", b"");
    assert!(h
        .rec
        .take()
        .contains(&Out::CloseConn(other, CloseReason::AUTH_FAILED)));
}

#[test]
fn every_frame_kind_outside_the_permissions_is_refused_and_the_connection_stays() {
    let (mut h, creds) = harness();
    let lobby = h.admin_client(b"lobby-1");
    let game = h.game_client(&creds, b"game-1");
    let refused: [Frame<'_>; 5] = [
        publish(b"game.admin.kick"),
        publish(b"chat.hi"),
        Frame::Send {
            target: b"game-2",
            payload: b"p",
        },
        sub_frame(b">"),
        Frame::Watch {
            client_id: b"lobby-1",
        },
    ];
    for frame in refused {
        h.frame(game, frame);
        assert_eq!(
            h.rec.take(),
            vec![
                Out::Count(Counter::PermissionDenied),
                Out::LocalError(game, ErrorCode::PERMISSION_DENIED)
            ],
            "{frame:?}"
        );
    }
    assert_eq!(h.conns[game as usize].phase(), Phase::Open);
    h.frame(
        game,
        Frame::Send {
            target: b"lobby-1",
            payload: b"p",
        },
    );
    assert_eq!(
        h.rec.take(),
        vec![Out::Deliver(
            lobby,
            b"game-1".to_vec(),
            vec![],
            b"p".to_vec()
        )]
    );
    h.frame(game, sub_frame(b"game.*"));
    h.frame(
        game,
        Frame::Watch {
            client_id: b"game-9",
        },
    );
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Interest(b"game.*".to_vec(), vec![]),
            Out::Presence(game, b"game-9".to_vec(), false)
        ]
    );
}

#[test]
fn the_shared_token_comes_in_unrestricted_beside_the_credentials() {
    let (mut h, _) = harness();
    let admin = h.connect();
    h.hello_with(admin, b"anything", b"admin");
    h.frame(admin, publish(b"game.admin.kick"));
    let out = h.rec.take();
    assert_eq!(out[0], Out::Local(admin, FrameKind::Welcome));
    assert!(!out.iter().any(|o| matches!(o, Out::LocalError(..))));
    assert_eq!(h.conns[admin as usize].entry_name(), None);
}

#[test]
fn a_verification_for_a_connection_closed_meanwhile_is_ignored() {
    let (mut h, creds) = harness();
    let game = h.connect();
    h.hello_with(game, b"game-1", b"game:pw");
    h.close(game);
    h.rec.take();
    h.verified(game, Ok(game_entry(&creds)));
    assert_eq!(h.rec.take(), vec![]);
    assert!(h.tables.locations.row(b"game-1").is_none());
}

#[test]
fn a_verified_hello_on_a_node_not_ready_waits_for_it() {
    let (mut h, creds) = harness();
    h.rec.ready = false;
    let game = h.connect();
    h.hello_with(game, b"game-1", b"game:pw");
    h.ready(game);
    h.rec.take();
    h.verified(game, Ok(game_entry(&creds)));
    assert_eq!(h.rec.take(), vec![Out::Held(game)]);
    h.rec.ready = true;
    h.ready(game);
    assert_eq!(h.rec.take()[0], Out::Local(game, FrameKind::Welcome));
}

#[test]
fn a_nats_user_and_password_name_an_entry_its_id_is_not_checked_and_a_ping_waits_its_turn() {
    let (mut h, creds) = harness();
    let slot = h.connect();
    h.nats_ok(
        slot,
        b"CONNECT {\"user\":\"game\",\"pass\":\"pw\",\"verbose\":false}\r\nPUB chat.hi 1\r\nx\r\nPING\r\n",
    );
    assert_eq!(
        h.rec.take(),
        vec![Out::Verify(slot, "game".into(), b"pw".to_vec())],
        "the PING waits behind the HELLO with the PUB: no PONG yet"
    );
    h.verified(slot, Ok(game_entry(&creds)));
    let out = h.rec.take();
    let denied = out
        .iter()
        .position(|o| *o == Out::Count(Counter::PermissionDenied));
    let pong = out
        .iter()
        .position(|o| *o == Out::Local(slot, FrameKind::Pong));
    assert!(denied.is_some() && pong > denied, "{out:?}");
    assert_eq!(h.conns[slot as usize].phase(), Phase::Open);
}

impl Harness {
    fn reloaded(&mut self, slot: u32) {
        let engine = Engine::new(&self.tables, &self.config);
        engine.on_credentials_reloaded(&mut self.conns[slot as usize], loc(slot), &mut self.rec);
    }
}

#[test]
fn a_reload_gives_open_connections_their_entrys_new_permissions() {
    let (mut h, creds) = harness();
    let game = h.game_client(&creds, b"game-1");
    h.frame(game, publish(b"game.move"));
    assert_eq!(h.rec.take(), vec![]);
    creds.replace(credentials_with("game-*", "chat.>"));
    h.reloaded(game);
    h.frame(game, publish(b"game.move"));
    h.frame(game, publish(b"chat.hi"));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::PermissionDenied),
            Out::LocalError(game, ErrorCode::PERMISSION_DENIED)
        ],
        "the cached verdict of the old entry is gone with it"
    );
    assert_eq!(h.conns[game as usize].phase(), Phase::Open);
}

#[test]
fn a_reload_closes_a_client_whose_entry_is_gone_or_may_no_longer_register_its_id() {
    let (mut h, creds) = harness();
    let game = h.game_client(&creds, b"game-1");
    let admin = h.admin_client(b"admin-1");
    creds.replace(credentials_with("game-2*", "game.>"));
    h.reloaded(game);
    h.reloaded(admin);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::AuthFailed),
            Out::CloseConn(game, CloseReason::AUTH_FAILED)
        ],
        "the shared token's client is left alone"
    );

    let (mut h, creds) = harness();
    let game = h.game_client(&creds, b"game-1");
    let text = "[[entry]]\nname = \"other\"\nids = [\"*\"]\nsecret_hash = \"$argon2id$v=19$m=19456,t=2,p=1$q7ZRrbDKNZgHbgX3N2mUgg$7yYSZ7i6Uwq8R4MzSK0XxWoWPH3ZE9E3pP5V0ssf1i4\"\n";
    creds.replace(Credentials::from_toml_str(text).expect("the text is always valid"));
    h.reloaded(game);
    assert!(h
        .rec
        .take()
        .contains(&Out::CloseConn(game, CloseReason::AUTH_FAILED)));
}

#[test]
fn a_secret_checked_against_an_entry_a_reload_replaced_is_refused() {
    let (mut h, creds) = harness();
    let game = h.connect();
    h.hello_with(game, b"game-1", b"game:pw");
    let checked = game_entry(&creds);
    creds.replace(credentials());
    h.rec.take();
    h.verified(game, Ok(checked));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::AuthFailed),
            Out::CloseConn(game, CloseReason::AUTH_FAILED)
        ]
    );
}

fn sub_frame(topic: &[u8]) -> Frame<'_> {
    sub(topic, b"")
}

#[test]
fn a_nats_sub_behind_a_held_hello_keeps_its_sid_and_gets_the_messages() {
    let (mut h, creds) = harness();
    let slot = h.connect();
    h.nats_ok(
        slot,
        b"CONNECT {\"user\":\"game\",\"pass\":\"pw\",\"verbose\":false}\r\nSUB game.move 7\r\n",
    );
    h.verified(slot, Ok(game_entry(&creds)));
    h.rec.take();
    assert_eq!(h.conns[slot as usize].subscriptions().len(), 1);
    let publisher = h.admin_client(b"pub");
    h.frame(publisher, publish(b"game.move"));
    let out = h.rec.take();
    assert_eq!(
        super::nats::written(h.state(slot), &out, slot),
        "MSG game.move 7 1\r\np\r\n"
    );
}

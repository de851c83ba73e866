//! Credentials and permissions over real sockets: a client comes in with NAME:SECRET of an
//! entry of the credentials file (verified off the workers), is refused with AUTH_FAILED and
//! a reason for a wrong secret or an id its entry may not register (so it cannot take over
//! another client's id), and is told PERMISSION_DENIED, naming the subject, for a frame
//! outside its permissions while its connection stays open. NATS clients come in with a user
//! and password.

mod common;

use common::*;
use ringrelay::client::{Client, ClientError, Event};
use ringrelay::config::Config;
use ringrelay::core::credentials::secret::{hash_secret, SALT_BYTES};
use ringrelay::protocol::{CloseReason, ErrorCode};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

/// A credentials file in a fresh directory: entry `game` (secret `pw`) may register
/// `game-*`, send to `lobby-*`, publish and subscribe under `game.` except `game.admin.`.
fn credentials_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringrelay-credentials-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = hash_secret(b"pw", &[9; SALT_BYTES]).unwrap();
    let text = format!(
        r#"
[[entry]]
name = "game"
secret_hash = "{hash}"
ids = ["game-*"]
send = {{ allow = ["lobby-*"] }}
publish = {{ allow = ["game.>"], deny = ["game.admin.>"] }}
subscribe = {{ allow = ["game.>"] }}
watch = {{ allow = [] }}
"#
    );
    let path = dir.join("credentials.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A relay with the credentials file, the shared token `admin`, and a NATS port.
fn relay() -> ringrelay::server::Server {
    start(Config {
        token: Some("admin".into()),
        credentials_file: Some(credentials_file()),
        nats_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    })
}

fn connect_as(addr: SocketAddr, id: &str, token: &str) -> Result<Client, ClientError> {
    Client::connect_with(
        addr,
        id.as_bytes(),
        Some(token.as_bytes()),
        client_options(),
    )
}

fn refused_reason(result: Result<Client, ClientError>) -> String {
    match result {
        Err(ClientError::Closed { reason, text }) => {
            assert_eq!(reason, CloseReason::AUTH_FAILED, "{text}");
            text
        }
        Err(other) => panic!("expected AUTH_FAILED, got {other}"),
        Ok(_) => panic!("expected AUTH_FAILED, got in"),
    }
}

#[test]
fn an_entrys_secret_lets_a_client_in_and_a_wrong_one_or_another_id_is_refused_with_a_reason() {
    let relay = relay();
    let addr = relay.local_addr();
    let mut game = connect_as(addr, "game-1", "game:pw").expect("the right secret gets in");
    let text = refused_reason(connect_as(addr, "game-2", "game:px"));
    assert!(text.contains("name or secret does not match"), "{text}");
    let text = refused_reason(connect_as(addr, "game-2", "nobody:pw"));
    assert!(text.contains("name or secret does not match"), "{text}");
    let text = refused_reason(connect_as(addr, "game-2", ""));
    assert!(text.contains("NAME:SECRET"), "{text}");
    // Taking over another client's id: the entry may not register it, the victim stays.
    let mut lobby = connect_as(addr, "lobby-1", "admin").expect("the shared token gets in");
    let text = refused_reason(connect_as(addr, "lobby-1", "game:pw"));
    assert!(text.contains("not among the ids"), "{text}");
    one_way(&mut game, &mut lobby);
    assert_eq!(relay.stats().auth_failures, 4);
}

#[test]
fn frames_outside_the_permissions_are_refused_by_name_and_the_connection_stays_open() {
    let relay = relay();
    let addr = relay.local_addr();
    let mut game = connect_as(addr, "game-1", "game:pw").unwrap();
    let mut lobby = connect_as(addr, "lobby-1", "admin").unwrap();
    lobby.subscribe(b"game.admin.kick").unwrap();
    sync(&mut lobby);
    game.publish(b"game.admin.kick", b"x").unwrap();
    game.send(b"game-2", b"x").unwrap();
    game.subscribe(b">").unwrap();
    game.watch(b"lobby-1").unwrap();
    game.flush().unwrap();
    let mut refused = Vec::new();
    while refused.len() < 4 {
        match next_event(&mut game) {
            Event::Error {
                code: ErrorCode::PERMISSION_DENIED,
                subject,
                text,
            } => refused.push((String::from_utf8(subject).unwrap(), text)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        refused,
        [
            ("game.admin.kick", "Permissions Violation for Publish to"),
            ("game-2", "Permissions Violation for Send to"),
            (">", "Permissions Violation for Subscription to"),
            ("lobby-1", "Permissions Violation for Watch of"),
        ]
        .map(|(s, t)| (s.to_string(), t.to_string()))
    );
    // Still open, and what is permitted goes through.
    one_way(&mut game, &mut lobby);
    assert_round_trip(&mut game, &mut lobby);
    assert_eq!(relay.stats().permission_denials, 4);
}

#[test]
fn a_crowd_of_clients_of_one_entry_all_get_in() {
    let relay = relay();
    let addr = relay.local_addr();
    let clients: Vec<Client> = (0..40)
        .map(|i| {
            connect_as(addr, &format!("game-{i}"), "game:pw")
                .unwrap_or_else(|e| panic!("client {i}: {e}"))
        })
        .collect();
    assert_eq!(relay.registered_clients(), clients.len());
}

#[test]
fn a_nats_user_and_password_name_the_entry_and_a_denied_publish_gets_a_permissions_violation() {
    let relay = relay();
    let nats = relay.nats_addr().unwrap();
    let mut stream = TcpStream::connect(nats).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert!(line.contains("\"auth_required\":true"), "{line}");
    stream
        .write_all(b"CONNECT {\"user\":\"game\",\"pass\":\"pw\",\"verbose\":false}\r\nPUB game.admin.x 1\r\nx\r\nPING\r\n")
        .unwrap();
    let mut read = || {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(
        read(),
        "-ERR 'Permissions Violation for Publish to \"game.admin.x\"'\r\n"
    );
    assert_eq!(read(), "PONG\r\n", "the connection stays open");

    let mut wrong = TcpStream::connect(nats).unwrap();
    wrong.set_read_timeout(Some(WAIT)).unwrap();
    let mut lines = BufReader::new(wrong.try_clone().unwrap());
    let mut info = String::new();
    lines.read_line(&mut info).unwrap();
    wrong
        .write_all(b"CONNECT {\"user\":\"game\",\"pass\":\"nope\",\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "-ERR 'Authorization Violation'\r\n");
}

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
    let path = scratch_dir().join("credentials.toml");
    std::fs::write(&path, credentials_text("game-*")).unwrap();
    path
}

/// The file's text, with entry `game`'s id glob given.
fn credentials_text(ids: &str) -> String {
    let hash = hash_secret(b"pw", &[9; SALT_BYTES]).unwrap();
    format!(
        r#"
[[entry]]
name = "game"
secret_hash = "{hash}"
ids = ["{ids}"]
send = {{ allow = ["lobby-*"] }}
publish = {{ allow = ["game.>"], deny = ["game.admin.>"] }}
subscribe = {{ allow = ["game.>"] }}
watch = {{ allow = [] }}
"#
    )
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringrelay-credentials-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

#[test]
fn a_reload_closes_a_client_its_entry_no_longer_allows_and_keeps_the_others_flowing() {
    let path = credentials_file();
    let relay = start(Config {
        token: Some("admin".into()),
        credentials_file: Some(path.clone()),
        ..config()
    });
    let addr = relay.local_addr();
    let mut dropped = connect_as(addr, "game-1", "game:pw").unwrap();
    let mut kept = connect_as(addr, "game-2", "game:pw").unwrap();
    let mut lobby = connect_as(addr, "lobby-1", "admin").unwrap();
    // Messages in flight from a client that stays allowed, across the reload.
    const MESSAGES: usize = 20_000;
    for i in 0..MESSAGES / 2 {
        kept.send(b"lobby-1", format!("m{i}").as_bytes()).unwrap();
    }
    std::fs::write(&path, credentials_text("game-2*")).unwrap();
    let reloaded = relay.reloader().reload().expect("the new file loads");
    assert_eq!(reloaded.credentials_entries, Some(1));
    for i in MESSAGES / 2..MESSAGES {
        kept.send(b"lobby-1", format!("m{i}").as_bytes()).unwrap();
    }
    kept.flush().unwrap();
    for i in 0..MESSAGES {
        let (sender, _, payload) = next_message(&mut lobby);
        assert_eq!(
            (sender, payload),
            (b"game-2".to_vec(), format!("m{i}").into_bytes())
        );
    }
    match next_event(&mut dropped) {
        Event::Closed { reason, text } => {
            assert_eq!(reason, CloseReason::AUTH_FAILED);
            assert!(text.contains("no longer among the ids"), "{text}");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    one_way(&mut kept, &mut lobby);
    // A client of the narrowed entry is refused from now on.
    let text = refused_reason(connect_as(addr, "game-1", "game:pw"));
    assert!(text.contains("not among the ids"), "{text}");
}

#[test]
fn a_bad_file_is_refused_by_sighup_and_the_admin_endpoint_and_the_old_one_stays_in_force() {
    let path = credentials_file();
    let path_arg = path.to_str().unwrap();
    let (relay, addr) = serve(&[
        "--workers",
        "1",
        "--credentials-file",
        path_arg,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let mut game = connect_as(addr, "game-1", "game:pw").unwrap();
    std::fs::write(&path, "[[entry]]\nname = 3\n").unwrap();
    // SAFETY: kill() with a valid pid and signal number has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(relay.pid() as i32, libc::SIGHUP) }, 0);
    wait_until("the refusal is logged", || {
        relay
            .stderr()
            .contains("reload refused, the credentials and certificates in force stay")
    });
    assert_round_trip_self(&mut game);
    let text = relay.stderr();
    let metrics: SocketAddr = text
        .lines()
        .filter(|l| l.contains("metrics endpoint listening"))
        .find_map(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {text}"));
    let (status, body) = post(metrics, "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("credentials file"), "{body}");
    std::fs::write(&path, credentials_text("game-*")).unwrap();
    let (status, body) = post(metrics, "/reload");
    assert_eq!(
        (status, body.as_str()),
        (200, "credentials reloaded: 1 entries in force\n")
    );
    assert_round_trip_self(&mut game);
}

/// A PUBLISH on a topic the client subscribes to comes back: the connection is open and
/// relayed under its permissions.
fn assert_round_trip_self(c: &mut Client) {
    c.subscribe(b"game.self").unwrap();
    c.publish(b"game.self", b"self").unwrap();
    c.flush().unwrap();
    let (_, _, payload) = next_message(c);
    assert_eq!(payload, b"self");
}

/// `POST path` over HTTP/1.0; returns (status, body).
fn post(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "POST {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

//! Credentials and permissions over real sockets: a client comes in with NAME:SECRET of an
//! entry of the credentials file (verified off the workers), is refused with AUTH_FAILED and
//! a reason for a wrong secret or an id its entry may not register (so it cannot take over
//! another client's id), and is told PERMISSION_DENIED, naming the subject, for a frame
//! outside its permissions while its connection stays open. NATS clients come in with a user
//! and password. Public-key entries: a client with the entry's key gets in by signing the
//! relay's nonce (native CHALLENGE and PROOF, NATS nkey and sig), a wrong key or a replayed
//! proof is refused.

mod common;

use common::*;
use ringrelay::client::{Client, ClientError, Event};
use ringrelay::config::Config;
use ringrelay::core::credentials::secret::{hash_secret, SALT_BYTES};
use ringrelay::protocol::{CloseReason, ErrorCode};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// The next line the relay writes on a NATS connection (its read timeout bounds the wait).
fn read_line(lines: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    line
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
    let mut read = || read_line(&mut lines);
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

/// A NATS client publishing where its entry may not, reading nothing: each PUB is answered
/// `-ERR 'Permissions Violation ...'` (nats-server's wording; NATS has no summary to coalesce
/// into), but no -ERR takes its queue past `pending_bytes_max`: past it they are dropped and
/// counted. So it outlives `slow_consumer_grace_ms` and is never closed as a slow consumer;
/// every PUB was answered or counted.
#[test]
fn a_nats_client_flooding_denied_publishes_is_never_closed_for_errors_it_did_not_read() {
    // About 18 MB of -ERR: past the kernel's socket buffers on both sides, then the queue.
    const N: u64 = 300_000;
    let grace_ms = 100;
    let relay = start(Config {
        token: Some("admin".into()),
        credentials_file: Some(credentials_file()),
        nats_listen: Some("127.0.0.1:0".parse().unwrap()),
        max_frame_bytes: 64 << 10,
        pending_bytes_max: 256 << 10,
        slow_consumer_grace_ms: grace_ms,
        ..config()
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&relay.nats_addr().unwrap().into(), WAIT)
        .unwrap();
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    assert!(read_line(&mut lines).starts_with("INFO "));
    // In first: what follows a CONNECT waits, bounded, while its password is verified.
    stream
        .write_all(b"CONNECT {\"user\":\"game\",\"pass\":\"pw\",\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    assert_eq!(read_line(&mut lines), "PONG\r\n");
    let denied = b"PUB game.admin.x 1\r\nx\r\n".repeat(1000);
    for _ in 0..N / 1000 {
        stream
            .write_all(&denied)
            .expect("the publisher is never blocked for long");
    }
    wait_until(
        "the relay has refused every PUB, or closed the publisher",
        || {
            let stats = relay.stats();
            stats.permission_denials == N || stats.slow_consumer_closes > 0
        },
    );
    let stats = relay.stats();
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert!(stats.error_drops > 0, "the queue never filled: {stats:?}");
    // The subject of the test: the queue stays full, unread, for longer than the grace and
    // the tick that would enforce it.
    std::thread::sleep(Duration::from_millis(grace_ms + 2 * 250));
    stream.write_all(b"PING\r\n").unwrap();
    let mut answered = 0u64;
    loop {
        let line = read_line(&mut lines);
        if line == "PONG\r\n" {
            break;
        }
        assert_eq!(
            line, "-ERR 'Permissions Violation for Publish to \"game.admin.x\"'\r\n",
            "after {answered} answers"
        );
        answered += 1;
    }
    let stats = relay.stats();
    assert_eq!(answered + stats.error_drops, N, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
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

// ---------------------------------------------------------------------------------------------
// Public-key entries
// ---------------------------------------------------------------------------------------------

use ringrelay::client::{ClientOptions, SigningKey};
use ringrelay::protocol::{hello, Decoded, Frame, FrameReader};

/// A relay whose credentials file has, beside `game`, entry `sensor` with `key`'s public key
/// (in its nkey form), which may register `sensor-*`, send to `lobby-*` and publish nothing;
/// shared token
/// `admin`; a NATS port.
fn key_relay(key: &SigningKey) -> ringrelay::server::Server {
    let path = scratch_dir().join("key-credentials.toml");
    let text = format!(
        "{}\n[[entry]]\nname = \"sensor\"\npublic_key = \"{}\"\nids = [\"sensor-*\"]\n\
         send = {{ allow = [\"lobby-*\"] }}\npublish = {{ allow = [] }}\n",
        credentials_text("game-*"),
        key.public_key_nkey()
    );
    std::fs::write(&path, text).unwrap();
    start(Config {
        token: Some("admin".into()),
        credentials_file: Some(path),
        nats_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    })
}

fn connect_with_key(
    addr: SocketAddr,
    id: &str,
    key: &Arc<SigningKey>,
) -> Result<Client, ClientError> {
    let opts = ClientOptions {
        signing_key: Some(Arc::clone(key)),
        ..client_options()
    };
    Client::connect_with(addr, id.as_bytes(), Some(b"sensor"), opts)
}

#[test]
fn a_key_client_gets_in_and_sends_and_a_wrong_key_or_none_is_refused_with_the_reason() {
    let key = Arc::new(SigningKey::generate().unwrap());
    let relay = key_relay(&key);
    let addr = relay.local_addr();
    let mut sensor = connect_with_key(addr, "sensor-1", &key).expect("the entry's key gets in");
    let mut lobby = connect_as(addr, "lobby-1", "admin").unwrap();
    one_way(&mut sensor, &mut lobby);
    let wrong = Arc::new(SigningKey::generate().unwrap());
    let text = refused_reason(connect_with_key(addr, "sensor-2", &wrong));
    assert!(text.contains("PROOF refused"), "{text}");
    let unknown = Client::connect_with(addr, b"sensor-3", Some(b"nobody"), {
        ClientOptions {
            signing_key: Some(Arc::clone(&key)),
            ..client_options()
        }
    });
    assert_eq!(
        refused_reason(unknown),
        text,
        "an unknown name: the same answer"
    );
    let keyless = connect_as(addr, "sensor-4", "sensor");
    assert!(
        matches!(keyless, Err(ClientError::KeyRequired)),
        "{keyless:?}"
    );
    one_way(&mut sensor, &mut lobby);
}

/// A connection spoken frame by frame, reading whole frames within [`WAIT`].
struct RawConn {
    stream: TcpStream,
    reader: FrameReader,
}

impl RawConn {
    fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        RawConn {
            stream,
            reader: FrameReader::new(1 << 20),
        }
    }

    fn send(&mut self, frame: Frame<'_>) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    /// The next frame the relay sends, as its bytes (PINGs skipped).
    fn next_frame_bytes(&mut self) -> Vec<u8> {
        loop {
            if let Some(frame) = self.reader.next_frame().unwrap() {
                if matches!(frame, Frame::Ping { .. }) {
                    continue;
                }
                let mut bytes = Vec::new();
                frame.encode(&mut bytes).unwrap();
                return bytes;
            }
            let n = self.reader.fill_from(&mut self.stream, 4096).unwrap();
            assert!(n > 0, "the relay closed before the frame");
        }
    }

    /// HELLO (version 4) as `id` with token `sensor`; the CHALLENGE's nonce.
    fn hello_for_challenge(&mut self, id: &[u8]) -> [u8; 32] {
        self.send(hello(id, b"sensor"));
        let bytes = self.next_frame_bytes();
        match decode_frame(&bytes) {
            Frame::Challenge { nonce } => *nonce,
            other => panic!("expected CHALLENGE, got {other:?}"),
        }
    }
}

fn decode_frame(bytes: &[u8]) -> Frame<'_> {
    match ringrelay::protocol::decode(bytes, 1 << 20).unwrap() {
        Decoded::Frame { frame, .. } => frame,
        other => panic!("not a whole frame: {other:?}"),
    }
}

#[test]
fn a_proof_captured_on_one_connection_and_replayed_on_another_is_refused() {
    let key = SigningKey::generate().unwrap();
    let relay = key_relay(&key);
    let addr = relay.local_addr();
    let mut first = RawConn::connect(addr);
    let nonce = first.hello_for_challenge(b"sensor-1");
    let captured = key.sign_hello(&nonce, b"sensor-1");
    first.send(Frame::Proof {
        signature: &captured,
    });
    let welcome = first.next_frame_bytes();
    assert!(
        matches!(decode_frame(&welcome), Frame::Welcome { .. }),
        "the proof's own connection is welcomed"
    );
    let mut replay = RawConn::connect(addr);
    let other_nonce = replay.hello_for_challenge(b"sensor-1");
    assert_ne!(other_nonce, nonce, "a fresh nonce per connection");
    replay.send(Frame::Proof {
        signature: &captured,
    });
    let close = replay.next_frame_bytes();
    match decode_frame(&close) {
        Frame::Close { reason, text } => {
            assert_eq!(reason, CloseReason::AUTH_FAILED);
            let text = String::from_utf8_lossy(text);
            assert!(text.contains("PROOF refused"), "{text}");
        }
        other => panic!("expected CLOSE, got {other:?}"),
    }
}

/// NATS nkeys over a real socket: INFO carries a nonce; CONNECT `nkey` and `sig` (base64url)
/// of that nonce gets in under the entry's permissions; the same CONNECT on another
/// connection (another nonce) is an Authorization Violation.
#[test]
fn a_nats_nkey_signing_the_info_nonce_gets_in_and_a_replayed_connect_does_not() {
    use base64::Engine as _;
    let key = SigningKey::generate().unwrap();
    let relay = key_relay(&key);
    let nats = relay.nats_addr().unwrap();
    let open = |nats: SocketAddr| {
        let stream = TcpStream::connect(nats).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut lines = BufReader::new(stream.try_clone().unwrap());
        let mut info = String::new();
        lines.read_line(&mut info).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
        let nonce = json["nonce"]
            .as_str()
            .expect("INFO carries a nonce")
            .to_string();
        (stream, lines, nonce)
    };
    let (mut stream, mut lines, nonce) = open(nats);
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.sign(nonce.as_bytes()));
    let connect = format!(
        "CONNECT {{\"nkey\":\"{}\",\"sig\":\"{sig}\",\"verbose\":false}}\r\n",
        key.public_key_nkey()
    );
    stream
        .write_all(format!("{connect}PUB _INBOX.x 1\r\nx\r\nPING\r\n").as_bytes())
        .unwrap();
    let mut read = || read_line(&mut lines);
    assert_eq!(
        read(),
        "-ERR 'Permissions Violation for Publish to \"_INBOX.x\"'\r\n",
        "in, under the entry's permissions (sensor may not publish)"
    );
    assert_eq!(read(), "PONG\r\n");

    let (mut replay, mut lines, other_nonce) = open(nats);
    assert_ne!(other_nonce, nonce);
    replay
        .write_all(format!("{connect}PING\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "-ERR 'Authorization Violation'\r\n");
}

/// The binary end to end: `keygen` writes a private key file only its owner may read (never
/// over an existing one) and prints the public key in both forms, `keygen --public` prints
/// them again, and `send --key-file --name` gets in as the entry with that key.
#[test]
fn keygen_writes_a_private_key_and_send_gets_in_with_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let key_path = scratch_dir().join("sensor.key");
    let _ = std::fs::remove_file(&key_path);
    let key_file = key_path.to_str().unwrap();
    let keygen = |args: &[&str]| {
        Command::new(bin())
            .arg("keygen")
            .args(args)
            .output()
            .unwrap()
    };
    let made = keygen(&["--out", key_file]);
    assert!(made.status.success(), "{made:?}");
    let printed = String::from_utf8(made.stdout).unwrap();
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = SigningKey::from_file(&key_path).unwrap();
    assert!(printed.starts_with(&format!("public_key = \"{}\"", key.public_key_ed25519())));
    assert!(printed.contains(&key.public_key_nkey()), "{printed}");
    let again = keygen(&["--out", key_file]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwritten"));
    assert_eq!(
        SigningKey::from_file(&key_path).unwrap(),
        key,
        "the key is kept"
    );
    let public = keygen(&["--public", key_file]);
    assert_eq!(String::from_utf8(public.stdout).unwrap(), printed);

    let relay = key_relay(&key);
    let addr = relay.local_addr().to_string();
    let mut lobby = connect_as(relay.local_addr(), "lobby-1", "admin").unwrap();
    let sent = Command::new(bin())
        .args([
            "send",
            "--server",
            &addr,
            "--key-file",
            key_file,
            "--name",
            "sensor",
        ])
        .args(["--id", "sensor-1", "--to", "lobby-1", "hello"])
        .env_remove("RINGRELAY_TOKEN")
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let (sender, _, payload) = next_message(&mut lobby);
    assert_eq!((sender, payload), (b"sensor-1".to_vec(), b"hello".to_vec()));
}

//! TLS over real sockets: the client listener's handshakes run off the workers and its data
//! path is the workers' in-place record layer. Certificates are made by the test (rcgen).

mod common;

use common::tls_pki::{PkiDir, TlsRelay};
use common::{client_options, next_event, next_message, wait_until, Proc, WAIT};
use ringrelay::client::{Client, ClientError, ClientOptions, ClientTls, Event};
use ringrelay::config::Config;
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::ClientAuth;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

impl TlsRelay {
    fn tls_addr(&self) -> SocketAddr {
        self.server.tls_addr().expect("tls_listen is set")
    }
}

/// A relay with a plaintext and a TLS listener, its certificates from a fresh PKI.
fn relay(pki: &Pki, tag: &str, auth: ClientAuth, tune: impl FnOnce(&mut Config)) -> TlsRelay {
    TlsRelay::start(pki, tag, auth, |cfg| {
        cfg.tls_listen = Some("127.0.0.1:0".parse().expect("an address"));
        tune(cfg);
    })
}

fn tls_options(dir: &Path, cert: Option<&str>) -> ClientOptions {
    let cert_files = cert.map(|name| {
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    });
    let identity = cert_files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let tls = ClientTls::new(&dir.join("ca.pem"), identity, Some("localhost")).expect("client TLS");
    ClientOptions {
        tls: Some(tls),
        ..client_options()
    }
}

fn connect_tls(relay: &TlsRelay, id: &str, cert: Option<&str>) -> Result<Client, ClientError> {
    Client::connect_with(
        relay.tls_addr(),
        id.as_bytes(),
        None,
        tls_options(&relay.dir, cert),
    )
}

#[test]
fn a_tls_client_and_a_plaintext_client_exchange_small_and_large_messages() {
    let pki = Pki::new();
    let relay = relay(&pki, "exchange", ClientAuth::None, |_| {});
    let mut secure = connect_tls(&relay, "secure", None).expect("TLS client connects");
    let mut plain = common::connect(relay.server.local_addr(), "plain");
    // Small, then larger than one TLS record, then in the zero-copy band (received and sent
    // from its own buffer on the plaintext side).
    for len in [16usize, 40_000, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        secure.send(b"plain", &payload).expect("send");
        secure.flush().expect("flush");
        assert_eq!(
            next_message(&mut plain),
            (b"secure".to_vec(), None, payload.clone())
        );
        plain.send(b"secure", &payload).expect("send");
        plain.flush().expect("flush");
        assert_eq!(
            next_message(&mut secure),
            (b"plain".to_vec(), None, payload)
        );
    }
}

#[test]
fn thousands_of_messages_between_tls_clients_arrive_in_order_across_workers() {
    let pki = Pki::new();
    let relay = relay(&pki, "order", ClientAuth::None, |_| {});
    let mut a = connect_tls(&relay, "a", None).expect("a connects");
    // Two workers: connections are handed out in turn, so a and b sit on different ones.
    let mut b = connect_tls(&relay, "b", None).expect("b connects");
    let count = 5_000u32;
    for i in 0..count {
        a.send(b"b", &i.to_be_bytes()).expect("send");
    }
    a.flush().expect("flush");
    for i in 0..count {
        let (_, _, payload) = next_message(&mut b);
        assert_eq!(payload, i.to_be_bytes(), "message {i}");
    }
}

#[test]
fn mutual_tls_admits_a_client_certificate_from_the_ca_and_names_each_refusal() {
    let pki = Pki::new();
    let relay = relay(&pki, "mutual", ClientAuth::Required, |_| {});
    let mut good = connect_tls(&relay, "good", Some("client")).expect("a certificate from the CA");
    good.round_trip(WAIT).expect("the connection works");
    for (cert, cause) in [
        (None, "CertificateRequired"),
        (Some("expired"), "CertificateExpired"),
        (Some("foreign"), "UnknownCA"),
    ] {
        // TLS 1.3: the client's handshake is complete before the relay checks its
        // certificate, so the refusal (an alert naming the cause) can come at HELLO.
        let outcome = connect_tls(&relay, "bad", cert);
        let text = match outcome {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{cert:?} was admitted"),
        };
        assert!(text.contains(cause), "{cert:?}: {text}");
    }
    for label in ["no_client_cert", "expired", "unknown_ca"] {
        wait_until(label, || relay.server.tls_handshakes(Some(label)) == 1);
    }
}

#[test]
fn a_client_that_does_not_trust_the_relay_certificate_says_so() {
    let pki = Pki::new();
    let relay = relay(&pki, "untrusted", ClientAuth::None, |_| {});
    let tls =
        ClientTls::new(&relay.dir.join("other-ca.pem"), None, Some("localhost")).expect("tls");
    let opts = ClientOptions {
        tls: Some(tls),
        ..client_options()
    };
    let error = Client::connect_with(relay.tls_addr(), b"x", None, opts).unwrap_err();
    assert!(
        matches!(&error, ClientError::Tls { reason } if reason.contains("UnknownIssuer")),
        "{error}"
    );
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_closed_and_counted_without_hurting_others() {
    let pki = Pki::new();
    let relay = relay(&pki, "plaintext", ClientAuth::None, |_| {});
    let mut raw = TcpStream::connect(relay.tls_addr()).expect("connect");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    std::io::Write::write_all(
        &mut raw,
        &common::encoded(ringrelay::protocol::hello(b"p", b"")),
    )
    .expect("write");
    let mut rest = Vec::new();
    // Closed (EOF, or a reset as the HELLO was never read), never left open to time out.
    if let Err(e) = raw.read_to_end(&mut rest) {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    assert!(
        rest.is_empty(),
        "nothing is sent to a plaintext client: {rest:?}"
    );
    wait_until("the refusal is counted", || {
        relay.server.tls_handshakes(Some("not_tls")) == 1
    });
    let mut good = connect_tls(&relay, "good", None).expect("others still connect");
    good.round_trip(WAIT).expect("and work");
    assert_eq!(relay.server.tls_handshakes(None), 1);
}

#[test]
fn silent_sockets_on_the_tls_port_are_closed_at_the_handshake_timeout_and_do_not_block_others() {
    let pki = Pki::new();
    let relay = relay(&pki, "silent", ClientAuth::None, |cfg| {
        cfg.handshake_timeout_ms = 500;
        cfg.tls_handshakes_per_thread_max = 64;
    });
    let silent: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(relay.tls_addr()).expect("connect"))
        .collect();
    // While they hold places, a real client still completes its handshake.
    let mut good = connect_tls(&relay, "good", None).expect("a client beside 40 silent sockets");
    good.round_trip(WAIT).expect("works");
    wait_until("the 40 timeouts are counted", || {
        relay.server.tls_handshakes(Some("timeout")) == 40
    });
    for mut s in silent {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 16];
        // EOF (or a reset) once the handshake timeout passed: never a hang.
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "nothing but the close"),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "closed in time"),
        }
    }
}

#[test]
fn a_closing_relay_sends_its_close_through_tls() {
    let pki = Pki::new();
    let relay = relay(&pki, "close", ClientAuth::None, |_| {});
    let mut first = connect_tls(&relay, "same", None).expect("first");
    let _second = connect_tls(&relay, "same", None).expect("second takes the id");
    match next_event(&mut first) {
        Event::Closed { reason, .. } => {
            assert_eq!(reason, ringrelay::protocol::CloseReason::REPLACED)
        }
        other => panic!("expected CLOSE REPLACED, got {other:?}"),
    }
    wait_until("the first connection is gone", || {
        relay.server.stats().connections_open == 1
    });
}

/// `ringrelay serve` with a TLS listener (mutual TLS when `auth` is `required`): the process
/// and the TLS address it printed first.
fn serve_tls(dir: &Path, auth: &str) -> (Proc, SocketAddr) {
    let file = |name: &str| {
        dir.join(name)
            .to_str()
            .expect("a UTF-8 temp path")
            .to_string()
    };
    let mut relay = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert-file",
        &file("server.pem"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-file",
        &file("ca.pem"),
        "--tls-client-auth",
        auth,
    ]);
    let line = relay.next_line();
    let addr = line
        .strip_prefix("tls listening ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("expected the TLS address first, got {line:?}"));
    let line = relay.next_line();
    assert!(line.starts_with("listening "), "{line:?}");
    (relay, addr)
}

#[test]
fn the_cli_verbs_talk_through_mutual_tls_and_name_a_missing_certificate() {
    let pki = Pki::new();
    let dir = PkiDir::write(&pki, "cli-verbs");
    let (_relay, addr) = serve_tls(&dir, "required");
    let server = addr.to_string();
    let file = |name: &str| {
        dir.join(name)
            .to_str()
            .expect("a UTF-8 temp path")
            .to_string()
    };
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let tls_args = [
        "--server",
        &server,
        "--tls-ca-file",
        &ca,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-server-name",
        "localhost",
    ];
    let mut listen_args = vec!["listen", "--id", "tls-listener", "--count", "1"];
    listen_args.extend_from_slice(&["--timeout-ms", "20000"]);
    listen_args.extend_from_slice(&tls_args);
    // A watcher over TLS sees the listener come online before anything is sent to it.
    let mut watcher = Client::connect_with(
        addr,
        b"tls-watcher",
        None,
        tls_options(&dir, Some("client")),
    )
    .expect("the watcher connects over mutual TLS");
    watcher.watch(b"tls-listener").expect("WATCH is sent");
    let mut listen = Proc::spawn(&listen_args);
    loop {
        if let Event::Presence { online: true, .. } = next_event(&mut watcher) {
            break;
        }
    }
    let mut send_args = vec!["send", "--id", "tls-sender", "--to", "tls-listener"];
    send_args.extend_from_slice(&tls_args);
    send_args.push("over tls");
    let mut send = Proc::spawn(&send_args);
    let (status, _) = send.wait_exit();
    assert!(status.success(), "send: {}", send.stderr());
    let (status, out) = listen.wait_exit();
    assert!(status.success(), "listen: {}", listen.stderr());
    assert_eq!(out, ["tls-sender: over tls"]);

    // Without a client certificate the relay refuses the handshake, and the CLI says so.
    let mut bare = Proc::spawn(&[
        "send",
        "--server",
        &server,
        "--tls-ca-file",
        &ca,
        "--tls-server-name",
        "localhost",
        "--connect-timeout-ms",
        "300",
        "--id",
        "no-cert",
        "--to",
        "tls-listener",
        "x",
    ]);
    let (status, _) = bare.wait_exit();
    assert!(!status.success());
    let stderr = bare.stderr();
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "stderr:\n{stderr}"
    );
}

/// A native client over TLS, past its WELCOME, with a second handle on its socket to write
/// under the TLS layer.
struct CutRecordClient {
    tls: ringrelay::tls::TlsStream<TcpStream>,
    raw: TcpStream,
    frames: ringrelay::protocol::FrameReader,
}

impl CutRecordClient {
    fn connect(relay: &TlsRelay, pki: &Pki, id: &str) -> CutRecordClient {
        use ringrelay::protocol::{hello, FrameReader};
        use ringrelay::tls::{config::client_config, Origin, TlsStream, TrustAnchors};
        use std::io::Write;

        let sock = TcpStream::connect(relay.tls_addr()).expect("connect");
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        let raw = sock.try_clone().expect("a second handle");
        let anchors = TrustAnchors::from_pem(Origin::memory("ca"), pki.ca_pem.as_bytes()).unwrap();
        let name = "localhost".try_into().expect("a DNS name");
        let mut tls = TlsStream::connect(sock, client_config(&anchors, None).unwrap(), name)
            .expect("TLS handshake");
        tls.write_all(&common::encoded(hello(id.as_bytes(), b"")))
            .unwrap();
        tls.flush().unwrap();
        let mut client = CutRecordClient {
            tls,
            raw,
            frames: FrameReader::new(1 << 20),
        };
        assert_eq!(client.next_close(), None, "WELCOME first");
        client
    }

    /// The first bytes of a record announcing 4 KiB, written under the TLS layer: the relay
    /// holds them and can open nothing until the rest comes.
    fn write_cut_record(&mut self) {
        use std::io::Write;
        (&self.raw)
            .write_all(&[23, 3, 3, 0x10, 0x00, 1, 2, 3])
            .unwrap();
    }

    /// The reason and text of the next CLOSE, or `None` at a WELCOME.
    fn next_close(&mut self) -> Option<(ringrelay::protocol::CloseReason, String)> {
        use ringrelay::protocol::Frame;
        loop {
            match self.frames.next_frame().expect("the relay's frames decode") {
                Some(Frame::Welcome { .. }) => return None,
                Some(Frame::Close { reason, text }) => {
                    return Some((reason, String::from_utf8_lossy(text).into_owned()))
                }
                Some(_) => {}
                None => {
                    let n = self.frames.fill_from(&mut self.tls, 64 << 10);
                    assert_ne!(
                        n.expect("read within WAIT"),
                        0,
                        "the stream ended without a CLOSE"
                    );
                }
            }
        }
    }
}

#[test]
fn a_tls_record_left_unfinished_is_closed_at_frame_complete_timeout() {
    use ringrelay::protocol::CloseReason;
    use std::time::{Duration, Instant};

    let pki = Pki::new();
    let relay = relay(&pki, "cut-record", ClientAuth::None, |cfg| {
        cfg.frame_complete_timeout_ms = 600;
    });
    let mut client = CutRecordClient::connect(&relay, &pki, "cut");
    let started = Instant::now();
    client.write_cut_record();
    let (reason, _) = client.next_close().expect("a CLOSE");
    assert_eq!(reason, CloseReason::FRAME_TIMEOUT);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "closed before frame_complete_timeout_ms"
    );
}

/// As a plaintext stream that ends inside a frame (PROTOCOL.md section 6): a client that shuts
/// its sending side inside a TLS record is told its last bytes went nowhere, then its stream
/// ends, and the close is counted.
#[test]
fn a_tls_stream_ended_inside_a_record_is_told_so_with_a_close() {
    use ringrelay::protocol::CloseReason;

    let pki = Pki::new();
    let relay = relay(&pki, "fin-in-record", ClientAuth::None, |_| {});
    let mut client = CutRecordClient::connect(&relay, &pki, "fin-cut");
    client.write_cut_record();
    client.raw.shutdown(std::net::Shutdown::Write).unwrap();
    let (reason, text) = client.next_close().expect("a CLOSE");
    assert_eq!(reason, CloseReason::PROTOCOL_ERROR);
    assert_eq!(text, "stream ended inside a TLS record");
    let end = client.frames.fill_from(&mut client.tls, 64 << 10);
    assert!(matches!(end, Ok(0)), "then the end of the stream: {end:?}");
    assert_eq!(relay.server.stats().protocol_error_closes, 1);
}

//! NATS over TLS with a real client (async-nats, rustls inside): INFO in clear with
//! `tls_required` then the handshake, as nats-server does it, and the handshake first when the
//! listener is set up so (`nats_tls_handshake_first`, async-nats's `tls_first`). A plaintext
//! NATS client on the TLS port is told TLS is required. Certificates are made by the test.

mod common;

use common::tls_pki::TlsRelay;
use common::WAIT;
use futures_util::StreamExt;
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::ClientAuth;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

fn relay(tag: &str, handshake_first: bool, auth: ClientAuth) -> TlsRelay {
    TlsRelay::start(&Pki::new(), tag, auth, |cfg| {
        cfg.nats_tls_listen = Some("127.0.0.1:0".parse().expect("an address"));
        cfg.nats_tls_handshake_first = handshake_first;
    })
}

impl TlsRelay {
    fn addr(&self) -> SocketAddr {
        self.server.nats_tls_addr().expect("nats_tls_listen is set")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn options(dir: &Path, tls_first: bool, cert: bool) -> async_nats::ConnectOptions {
    let mut options = async_nats::ConnectOptions::new()
        .add_root_certificates(dir.join("ca.pem"))
        .require_tls(true)
        .connection_timeout(WAIT);
    if tls_first {
        options = options.tls_first();
    }
    if cert {
        options = options.add_client_certificate(dir.join("client.pem"), dir.join("client.key"));
    }
    options
}

/// Awaits `step` for at most [`WAIT`]: async-nats's subscribe, publish and flush have no
/// timeout of their own, so a relay that stops answering fails the test, naming `what`,
/// instead of hanging it.
async fn within<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, step)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// Publishes `count` messages on one connection and receives them, in order, on another.
async fn pubsub(url: &str, make: impl Fn() -> async_nats::ConnectOptions, count: usize) {
    let connect = |options: async_nats::ConnectOptions| async move {
        tokio::time::timeout(WAIT, options.connect(url))
            .await
            .expect("connects within the bound")
            .expect("connects")
    };
    let subscriber = connect(make()).await;
    let publisher = connect(make()).await;
    let mut sub = within("SUB", subscriber.subscribe("tls.topic"))
        .await
        .expect("SUB");
    // A round trip on the subscriber's own connection puts the SUB in place first.
    let inbox = subscriber.new_inbox();
    let mut ready = within("SUB", subscriber.subscribe(inbox.clone()))
        .await
        .expect("SUB");
    within("PUB", subscriber.publish(inbox, "x".into()))
        .await
        .expect("PUB");
    tokio::time::timeout(WAIT, ready.next())
        .await
        .expect("the barrier within the bound")
        .expect("a message");
    for i in 0..count {
        let payload = vec![b'a' + (i % 26) as u8; 1 + i % 3000];
        within("PUB", publisher.publish("tls.topic", payload.into()))
            .await
            .expect("PUB");
    }
    within("flush", publisher.flush()).await.expect("flush");
    for i in 0..count {
        let message = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("each message within the bound")
            .expect("a message");
        assert_eq!(message.payload.len(), 1 + i % 3000, "message {i} in order");
        assert_eq!(message.payload[0], b'a' + (i % 26) as u8);
    }
}

#[test]
fn nats_clients_upgrade_to_tls_after_info_and_exchange_messages() {
    let relay = relay("nats-info-first", false, ClientAuth::None);
    let url = format!("tls://{}", relay.addr());
    runtime().block_on(pubsub(&url, || options(&relay.dir, false, false), 500));
    assert!(relay.server.tls_handshakes(None) >= 2);
}

#[test]
fn nats_clients_set_up_tls_first_are_served_on_a_handshake_first_listener() {
    let relay = relay("nats-tls-first", true, ClientAuth::None);
    let url = format!("tls://{}", relay.addr());
    runtime().block_on(pubsub(&url, || options(&relay.dir, true, false), 500));
}

#[test]
fn mutual_tls_admits_a_nats_client_with_a_certificate_from_the_ca_only() {
    let relay = relay("nats-mtls", false, ClientAuth::Required);
    let url = format!("tls://{}", relay.addr());
    runtime().block_on(async {
        pubsub(&url, || options(&relay.dir, false, true), 10).await;
        let refused = tokio::time::timeout(
            WAIT,
            async_nats::ConnectOptions::new()
                .add_root_certificates(relay.dir.join("ca.pem"))
                .require_tls(true)
                .connection_timeout(WAIT)
                .connect(url.as_str()),
        )
        .await
        .expect("the refusal within the bound");
        assert!(refused.is_err(), "a client without a certificate got in");
    });
    common::wait_until("the refusal is counted", || {
        relay.server.tls_handshakes(Some("no_client_cert")) == 1
    });
}

#[test]
fn info_says_tls_is_required_and_a_plaintext_connect_is_told_so() {
    let relay = relay("nats-plaintext", false, ClientAuth::None);
    let stream = TcpStream::connect(relay.addr()).expect("connects");
    stream.set_read_timeout(Some(WAIT)).expect("a timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("a clone"));
    let mut info = String::new();
    reader.read_line(&mut info).expect("INFO in clear");
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains("\"tls_required\":true"), "{info}");
    std::io::Write::write_all(&mut &stream, b"CONNECT {}\r\nPING\r\n").expect("writes");
    let mut err = String::new();
    reader.read_line(&mut err).expect("the error line");
    assert_eq!(err, "-ERR 'Secure Connection - TLS Required'\r\n");
    common::wait_until("the failure is counted", || {
        relay.server.tls_handshakes(Some("not_tls")) == 1
    });
}

//! The load generator over TLS: a unicast run against an in-process relay's `tls_listen`, and
//! the NATS handshake order (INFO in plaintext, then TLS, then CONNECT) against a fake
//! nats-server.

use super::nats_wire::NatsWire;
use super::relay_wire::RelayWire;
use super::runner::{run_target, Target};
use super::scenario::plan;
use super::transport::{LoadTls, TlsSuite};
use super::wire::Wire;
use ringrelay::config::Config;
use ringrelay::server::Server;
use ringrelay::tls::config::{server_config, Tickets};
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::{ClientCertificates, Identity, TlsStream};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

fn load_tls(dir: &Path) -> LoadTls {
    LoadTls::from_files(&dir.join("ca.pem"), "localhost", TlsSuite::Aes128Gcm).unwrap()
}

#[test]
fn a_unicast_run_over_tls_delivers_every_message() {
    let dir = Pki::new().write_to_temp_dir("loadgen");
    let server = Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert_file: Some(dir.join("server.pem")),
        tls_key_file: Some(dir.join("server.key")),
        workers: 1,
        ..Config::default()
    })
    .unwrap();
    let wire = RelayWire {
        addr: server.tls_addr().unwrap(),
        token: Vec::new(),
        tls: Some(load_tls(&dir)),
    };
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: super::BenchArgs,
    }
    let argv = [
        "bench",
        "--size",
        "1024",
        "--count",
        "20000",
        "--duration-s",
        "20",
    ];
    let p = plan(&Cli::try_parse_from(argv).unwrap().bench, "tls").unwrap();
    let target = Target {
        send: &wire,
        recv: &wire,
        server_pids: vec![Some(std::process::id())],
    };
    let m = run_target(&target, &p).unwrap();
    assert_eq!((m.sent, m.received, m.errors), (20_000, 20_000, 0));
    // A plaintext client on the TLS port fails with the handshake named.
    let plain = RelayWire { tls: None, ..wire };
    let deadline = Instant::now() + Duration::from_secs(5);
    assert!(plain.connect("plain-on-tls", deadline).is_err());
    drop(server);
}

/// A fake nats-server: INFO (with `tls_required` when `tls`), then the TLS handshake, then a
/// PONG for the client's PING.
fn fake_nats(dir: &Path, tls_required: bool) -> std::net::SocketAddr {
    let identity = Identity::from_files(
        "cert",
        &dir.join("server.pem"),
        "key",
        &dir.join("server.key"),
    )
    .unwrap();
    let config = server_config(&identity, &ClientCertificates::NotAsked, Tickets::None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let info = format!("INFO {{\"server_id\":\"fake\",\"tls_required\":{tls_required}}}\r\n");
        sock.write_all(info.as_bytes()).unwrap();
        let Ok(mut stream) = TlsStream::accept(sock, config) else {
            return;
        };
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(b"PING\r\n") {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the client closed before PING");
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"CONNECT {"), "{got:?}");
        stream.write_all(b"PONG\r\n").unwrap();
        stream.flush().unwrap();
        let _ = stream.read(&mut chunk);
    });
    addr
}

#[test]
fn nats_over_tls_reads_info_in_plaintext_then_connects_over_tls() {
    let dir = Pki::new().write_to_temp_dir("loadgen-nats");
    let deadline = Instant::now() + Duration::from_secs(10);
    let wire = NatsWire {
        addr: fake_nats(&dir, true),
        token: None,
        tls: Some(load_tls(&dir)),
    };
    wire.connect("nats-tls", deadline).unwrap();
    let wire = NatsWire {
        addr: fake_nats(&dir, false),
        ..wire
    };
    let err = wire.connect("nats-plain", deadline).err().unwrap();
    assert!(err.contains("does not require TLS"), "{err}");
}

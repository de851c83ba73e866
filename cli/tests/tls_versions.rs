//! `tls_min_version` over real sockets: a client that speaks only TLS 1.2 is refused by a
//! listener at the default ("1.3") with a reason naming the version, and with "1.2" it
//! connects and exchanges messages through the relay (the workers' TLS 1.2 record layer, each
//! suite). Certificates are made by the test (rcgen).

mod common;

use common::tls_pki::TlsRelay;
use common::{client_options, next_message};
use ringrelay::client::{Client, ClientError, ClientOptions, ClientTls};
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::{ClientAuth, TlsVersion};
use rustls::pki_types::ServerName;

/// A relay with a TLS listener at `min`, its certificates from `pki`.
fn relay(pki: &Pki, tag: &str, min: TlsVersion) -> TlsRelay {
    TlsRelay::start(pki, tag, ClientAuth::None, |cfg| {
        cfg.tls_listen = Some("127.0.0.1:0".parse().expect("an address"));
        cfg.tls_min_version = min;
    })
}

/// Client options whose TLS speaks only 1.2, with `suite` (the Rust client's record layer
/// then runs TLS 1.2 as the relay's does).
fn tls12_only(pki: &Pki, suite: rustls::CipherSuite) -> ClientOptions {
    let name = ServerName::try_from("localhost").expect("a name");
    ClientOptions {
        tls: Some(ClientTls::from_config(
            pki.tls12_only_client(suite),
            Some(name),
        )),
        ..client_options()
    }
}

const SUITES: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

#[test]
fn a_tls12_client_is_refused_at_the_default_naming_the_version() {
    let pki = Pki::new();
    let relay = relay(&pki, "v13", TlsVersion::Tls13);
    let addr = relay.server.tls_addr().expect("tls_listen is set");
    let opts = tls12_only(&pki, SUITES[0]);
    let error = Client::connect_with(addr, b"old", None, opts).unwrap_err();
    assert!(
        matches!(&error, ClientError::Tls { reason } if reason.contains("TLS 1.3") && reason.contains("tls_min_version")),
        "{error}"
    );
}

#[test]
fn with_1_2_a_tls12_client_exchanges_messages_through_the_relay_in_each_suite() {
    let pki = Pki::new();
    let relay = relay(&pki, "v12", TlsVersion::Tls12);
    let addr = relay.server.tls_addr().expect("tls_listen is set");
    let mut modern = Client::connect_with(
        addr,
        b"modern",
        None,
        ClientOptions {
            tls: Some(
                ClientTls::new(&relay.dir.join("ca.pem"), None, Some("localhost"))
                    .expect("client TLS"),
            ),
            ..client_options()
        },
    )
    .expect("a TLS 1.3 client still connects");
    for (i, suite) in SUITES.into_iter().enumerate() {
        let id = format!("old{i}");
        let mut old = Client::connect_with(addr, id.as_bytes(), None, tls12_only(&pki, suite))
            .unwrap_or_else(|e| panic!("{suite:?}: {e}"));
        // Small, then larger than one TLS record (sealed as several in place both ways).
        for len in [16usize, 40_000] {
            let payload: Vec<u8> = (0..len).map(|n| (n % 251) as u8).collect();
            old.send(b"modern", &payload).expect("send");
            old.flush().expect("flush");
            assert_eq!(
                next_message(&mut modern),
                (id.as_bytes().to_vec(), None, payload.clone()),
                "{suite:?}"
            );
            modern.send(id.as_bytes(), &payload).expect("send");
            modern.flush().expect("flush");
            assert_eq!(
                next_message(&mut old),
                (b"modern".to_vec(), None, payload),
                "{suite:?}"
            );
        }
    }
}

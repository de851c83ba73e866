//! The record layer and handshake driver against rustls's own buffered connections, in
//! memory: what one side seals the other opens, both ways, through KeyUpdates and arbitrary
//! receive splits; every certificate failure is refused with its own reason.

use super::config::{client_config, server_config, ClientCertificates, Tickets};
use super::test_pki::{Leaf, Pki};
use super::*;
use proptest::prelude::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};
use std::io::{Read, Write};
use std::sync::Arc;

fn identity(leaf: &Leaf) -> Identity {
    Identity::from_pem(
        Origin::memory("tls_cert_file"),
        leaf.cert_pem.as_bytes(),
        Origin::memory("tls_key_file"),
        leaf.key_pem.as_bytes(),
    )
    .expect("test pair")
}

fn anchors(pem: &str) -> TrustAnchors {
    TrustAnchors::from_pem(Origin::memory("tls_ca_file"), pem.as_bytes()).expect("test CA")
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid name")
}

/// Runs `ours` against rustls's `theirs` until our side is done (or fails); `theirs` may
/// still hold bytes to write (its tickets) afterwards.
fn handshake(mut ours: Handshake, theirs: &mut Connection) -> Result<Established, Failure> {
    for _ in 0..32 {
        let progress = ours.advance();
        let out = ours.outgoing().to_vec();
        ours.consume_outgoing(out.len());
        let mut reader: &[u8] = &out;
        while !reader.is_empty() {
            theirs.read_tls(&mut reader).expect("in memory");
        }
        // Their error (an alert they received or a refusal) shows in their next write.
        let _ = theirs.process_new_packets();
        if progress? == Progress::Done {
            return ours.finish();
        }
        let mut wire = Vec::new();
        while theirs.wants_write() {
            theirs.write_tls(&mut wire).expect("in memory");
        }
        ours.receive(&wire)?;
    }
    panic!("the handshake did not finish in 32 rounds");
}

fn their_bytes(theirs: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    while theirs.wants_write() {
        theirs.write_tls(&mut wire).expect("in memory");
    }
    wire
}

/// Feeds `wire` (records we sealed) to rustls and reads its plaintext.
fn they_read(theirs: &mut Connection, wire: &[u8]) -> Vec<u8> {
    let mut reader = wire;
    let mut plain = Vec::new();
    while !reader.is_empty() {
        theirs.read_tls(&mut reader).expect("in memory");
        theirs
            .process_new_packets()
            .expect("rustls accepts our records");
        // Drained as it comes: rustls bounds the plaintext it buffers.
        let _ = theirs.reader().read_to_end(&mut plain);
    }
    plain
}

/// Opens `wire` in our session in chunks of the given sizes (cycled), collecting plaintext.
fn we_read(session: &mut TlsSession, wire: &[u8], chunks: &[usize]) -> Vec<u8> {
    let mut plain = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = chunks[i % chunks.len()].max(1).min(wire.len() - at);
        i += 1;
        let mut buf = wire[at..at + n].to_vec();
        let opened = session
            .open(&mut buf)
            .expect("our session opens rustls's records");
        if let Some(range) = opened.carried {
            plain.extend_from_slice(session.carried(range));
        }
        plain.extend_from_slice(&buf[..opened.in_place]);
        at += n;
    }
    plain
}

/// We seal `plaintext` as one flush.
fn we_write(session: &mut TlsSession, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let at = session.reserve_record(&mut out);
    out.extend_from_slice(plaintext);
    session.seal(&mut out, at).expect("seal");
    out
}

/// Our listener's configuration without client certificates.
fn server_without_client_auth(pki: &Pki) -> Arc<rustls::ServerConfig> {
    server_config(
        &identity(&pki.server),
        &ClientCertificates::NotAsked,
        Tickets::Client,
    )
    .expect("server config")
}

struct Pair {
    ours: TlsSession,
    theirs: Connection,
    early: Vec<u8>,
}

/// Our server, rustls's client (which writes `early` with its last flight).
fn our_server(pki: &Pki, early: &[u8]) -> Pair {
    let server = server_without_client_auth(pki);
    let client = client_config(&anchors(&pki.ca_pem), None).expect("client config");
    let mut theirs =
        Connection::Client(ClientConnection::new(client, localhost()).expect("rustls client"));
    theirs.writer().write_all(early).expect("buffered");
    let established =
        handshake(Handshake::server(server).expect("server"), &mut theirs).expect("handshake");
    let mut ours = established.session;
    let mut early_plaintext = established.early_plaintext;
    let mut leftover = established.leftover;
    early_plaintext.extend(we_read(&mut ours, &leftover.split_off(0), &[usize::MAX]));
    Pair {
        ours,
        theirs,
        early: early_plaintext,
    }
}

/// Our client, rustls's server.
fn our_client(pki: &Pki) -> Pair {
    let server = server_without_client_auth(pki);
    let client = client_config(&anchors(&pki.ca_pem), None).expect("client config");
    let mut theirs = Connection::Server(ServerConnection::new(server).expect("rustls server"));
    let established = handshake(
        Handshake::client(client, localhost()).expect("client"),
        &mut theirs,
    )
    .expect("handshake");
    let mut ours = established.session;
    // The server's session tickets come after the handshake: our session takes them.
    let tickets = their_bytes(&mut theirs);
    let mut leftover = established.leftover;
    leftover.extend_from_slice(&tickets);
    assert!(we_read(&mut ours, &leftover, &[7]).is_empty());
    Pair {
        ours,
        theirs,
        early: Vec::new(),
    }
}

#[test]
fn our_server_and_rustls_client_exchange_data_both_ways_with_data_in_the_last_flight() {
    let pki = Pki::new();
    let mut pair = our_server(&pki, b"sent-with-finished|");
    assert_eq!(pair.early, b"sent-with-finished|");
    pair.theirs
        .writer()
        .write_all(b"hello relay")
        .expect("buffered");
    let wire = their_bytes(&mut pair.theirs);
    assert_eq!(we_read(&mut pair.ours, &wire, &[3, 1, 100]), b"hello relay");
    let wire = we_write(&mut pair.ours, b"hello client");
    assert_eq!(they_read(&mut pair.theirs, &wire), b"hello client");
}

#[test]
fn our_client_and_rustls_server_exchange_data_both_ways() {
    let pki = Pki::new();
    let mut pair = our_client(&pki);
    let wire = we_write(&mut pair.ours, b"from our client");
    assert_eq!(they_read(&mut pair.theirs, &wire), b"from our client");
    pair.theirs
        .writer()
        .write_all(b"from rustls")
        .expect("buffered");
    let wire = their_bytes(&mut pair.theirs);
    assert_eq!(
        we_read(&mut pair.ours, &wire, &[usize::MAX]),
        b"from rustls"
    );
}

#[test]
fn a_flush_longer_than_a_record_is_sealed_as_several_in_place() {
    let pki = Pki::new();
    let mut pair = our_server(&pki, b"");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let wire = we_write(&mut pair.ours, &big);
    assert_eq!(wire.len(), big.len() + 7 * record::RECORD_OVERHEAD);
    assert_eq!(they_read(&mut pair.theirs, &wire), big);
}

#[test]
fn key_updates_from_either_side_keep_the_stream_readable() {
    let pki = Pki::new();
    let mut pair = our_server(&pki, b"");
    // Theirs asks for an update: we rekey our receive key, and owe ours.
    pair.theirs
        .refresh_traffic_keys()
        .expect("rustls key update");
    pair.theirs
        .writer()
        .write_all(b"after their update")
        .expect("buffered");
    let wire = their_bytes(&mut pair.theirs);
    assert_eq!(we_read(&mut pair.ours, &wire, &[5]), b"after their update");
    // Our next flush carries our KeyUpdate after its data; rustls follows it.
    let wire = we_write(&mut pair.ours, b"first");
    assert_eq!(they_read(&mut pair.theirs, &wire), b"first");
    let wire = we_write(&mut pair.ours, b"under the new key");
    assert_eq!(they_read(&mut pair.theirs, &wire), b"under the new key");
    // Ours on our own (as the confidentiality limit would make us).
    pair.ours.owe_key_update();
    let mut wire = we_write(&mut pair.ours, b"a");
    wire.extend(we_write(&mut pair.ours, b"b"));
    assert_eq!(they_read(&mut pair.theirs, &wire), b"ab");
}

#[test]
fn a_tampered_record_fails_authentication() {
    let pki = Pki::new();
    let mut pair = our_server(&pki, b"");
    pair.theirs
        .writer()
        .write_all(b"do not touch")
        .expect("buffered");
    let mut wire = their_bytes(&mut pair.theirs);
    let last = wire.len() - 3;
    wire[last] ^= 1;
    let error = pair.ours.open(&mut wire).unwrap_err();
    assert_eq!(
        error,
        SessionError::Record(record::RecordError::BadRecordMac)
    );
}

#[test]
fn close_notify_ends_the_stream_and_a_fatal_alert_is_an_error() {
    let pki = Pki::new();
    let mut pair = our_server(&pki, b"");
    pair.theirs
        .writer()
        .write_all(b"last words")
        .expect("buffered");
    pair.theirs.send_close_notify();
    let mut wire = their_bytes(&mut pair.theirs);
    let opened = pair.ours.open(&mut wire).expect("open");
    assert!(opened.peer_closed);
    assert_eq!(&wire[..opened.in_place], b"last words");
    // Ours the other way.
    let mut out = Vec::new();
    pair.ours.seal_close_notify(&mut out).expect("seal");
    let mut reader: &[u8] = &out;
    pair.theirs.read_tls(&mut reader).expect("in memory");
    let state = pair.theirs.process_new_packets().expect("rustls reads it");
    assert!(state.peer_has_closed());
}

#[test]
fn garbage_after_the_handshake_is_refused_not_panicked_on() {
    let pki = Pki::new();
    let mut pair = our_server(&pki, b"");
    for bytes in [
        vec![22u8, 3, 3, 0, 5, 1, 2, 3, 4, 5],
        vec![23, 3, 3, 0xff, 0xff],
        vec![23, 3, 3, 0, 4, 1, 2, 3, 4],
    ] {
        let mut buf = bytes.clone();
        assert!(pair.ours.open(&mut buf).is_err(), "{bytes:?}");
    }
}

#[test]
fn a_pair_from_fixed_secrets_round_trips_through_key_updates_both_ways() {
    use rustls::CipherSuite;
    for suite in [
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let (mut client, mut server) =
            TlsSession::pair_from_secrets(suite, &[1; 48], &[2; 48]).expect("a supported suite");
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        let mut wire = we_write(&mut client, &big);
        client.owe_key_update();
        wire.extend(we_write(&mut client, b"then the update"));
        wire.extend(we_write(&mut client, b"under the new key"));
        let mut expected = big.clone();
        expected.extend_from_slice(b"then the updateunder the new key");
        assert_eq!(we_read(&mut server, &wire, &[3, 16_000, 1]), expected);
        server.owe_key_update();
        let mut back = we_write(&mut server, b"reply");
        back.extend(we_write(&mut server, b" after ours"));
        assert_eq!(we_read(&mut client, &back, &[2]), b"reply after ours");
        // Another pair's keys open nothing of this one's.
        let (_, mut stranger) =
            TlsSession::pair_from_secrets(suite, &[3; 48], &[2; 48]).expect("a supported suite");
        let mut wire = we_write(&mut client, b"not yours");
        assert_eq!(
            stranger.open(&mut wire).unwrap_err(),
            SessionError::Record(record::RecordError::BadRecordMac)
        );
    }
    let unsupported =
        TlsSession::pair_from_secrets(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, &[1], &[2]);
    assert_eq!(
        unsupported.err(),
        Some(SessionError::Record(record::RecordError::UnsupportedSuite))
    );
}

#[test]
fn a_record_cut_anywhere_is_held_in_one_buffer_of_its_own_size() {
    let (mut client, mut server) = TlsSession::pair_from_secrets(
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        &[1; 32],
        &[2; 32],
    )
    .expect("a supported suite");
    let full = vec![b'x'; record::RECORD_PLAINTEXT_MAX];
    let one_record = record::RECORD_PLAINTEXT_MAX + record::RECORD_OVERHEAD;
    let mut wire = we_write(&mut client, &full);
    wire.extend(we_write(&mut client, &full));
    assert_eq!(wire.len(), 2 * one_record);
    // Three bytes (no header yet), then a byte at a time up to one short of the first record.
    let mut buf = wire[..3].to_vec();
    assert_eq!(server.open(&mut buf).expect("a prefix"), Opened::default());
    for at in 3..one_record - 1 {
        let mut buf = wire[at..at + 1].to_vec();
        assert_eq!(server.open(&mut buf).expect("a prefix").in_place, 0);
        assert_eq!(server.partial_bytes(), at + 1);
    }
    // The rest of the first record and most of the second: one finished, one held.
    let mut buf = wire[one_record - 1..wire.len() - 1].to_vec();
    let opened = server.open(&mut buf).expect("the first record");
    assert_eq!(opened.carried.map(|r| r.len()), Some(full.len()));
    assert_eq!(server.partial_bytes(), 2 * one_record - 1);
    let mut buf = wire[wire.len() - 1..].to_vec();
    let opened = server.open(&mut buf).expect("the second record");
    assert_eq!(opened.carried.map(|r| r.len()), Some(full.len()));
    assert!(
        server.partial_bytes() <= one_record,
        "only the finished record's buffer"
    );
    // What a worker's tick does: the finished record's buffer is given back.
    server.receiver.shrink();
    assert_eq!(server.partial_bytes(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// However the kernel splits the stream into receives, the plaintext is the same.
    #[test]
    fn any_split_of_the_stream_opens_to_the_same_plaintext(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8),
        chunks in proptest::collection::vec(1usize..6000, 1..8),
    ) {
        let pki = PKI.with(|p| p.clone());
        let mut pair = our_server(&pki, b"");
        let mut expected = Vec::new();
        for m in &messages {
            pair.theirs.writer().write_all(m).expect("buffered");
            expected.extend_from_slice(m);
        }
        let wire = their_bytes(&mut pair.theirs);
        prop_assert_eq!(we_read(&mut pair.ours, &wire, &chunks), expected);
    }
}

thread_local! {
    static PKI: Arc<Pki> = Arc::new(Pki::new());
}

/// A server of ours requiring client certificates from the CA, against rustls's client
/// presenting `cert`: our side's failure and theirs.
fn mutual(pki: &Pki, cert: Option<&Leaf>, their_ca: &str) -> (Option<Failure>, Option<String>) {
    let server = server_config(
        &identity(&pki.server),
        &ClientCertificates::Required(anchors(&pki.ca_pem)),
        Tickets::None,
    )
    .expect("server config");
    let id = cert.map(identity);
    let client = client_config(&anchors(their_ca), id.as_ref()).expect("client config");
    let mut theirs =
        Connection::Client(ClientConnection::new(client, localhost()).expect("rustls client"));
    let ours = handshake(Handshake::server(server).expect("server"), &mut theirs);
    let their_error = theirs.process_new_packets().err().map(|e| e.to_string());
    (ours.err(), their_error)
}

#[test]
fn each_certificate_failure_is_refused_with_its_own_reason() {
    let pki = Pki::new();
    let (ours, _) = mutual(&pki, Some(&pki.client), &pki.ca_pem);
    assert!(
        ours.is_none(),
        "a good client certificate is accepted: {ours:?}"
    );
    let cases = [
        (None, "no_client_cert"),
        (Some(&pki.expired), "expired"),
        (Some(&pki.foreign), "unknown_ca"),
    ];
    for (cert, label) in cases {
        let (ours, _) = mutual(&pki, cert, &pki.ca_pem);
        let failure = ours.expect("refused");
        assert_eq!(failure.label, label, "{failure}");
    }
    // The client does not trust our server: we learn it from its alert.
    let (ours, theirs) = mutual(&pki, Some(&pki.client), &pki.other_ca_pem);
    assert_eq!(ours.expect("refused").label, "rejected_by_peer");
    assert!(theirs.expect("their error").contains("UnknownIssuer"));
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_named() {
    let pki = Pki::new();
    let server = server_without_client_auth(&pki);
    let mut hs = Handshake::server(server).expect("server");
    let failure = hs.receive(b"\x00\x00\x00\x10HELLO").unwrap_err();
    assert_eq!(failure.label, "not_tls");
}

#[test]
fn two_blocking_streams_carry_a_megabyte_each_way_and_close_cleanly() {
    let pki = Pki::new();
    let server = server_config(
        &identity(&pki.server),
        &ClientCertificates::Required(anchors(&pki.ca_pem)),
        Tickets::Client,
    )
    .expect("server config");
    let client_id = identity(&pki.client);
    let client = client_config(&anchors(&pki.ca_pem), Some(&client_id)).expect("client config");
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    // Every blocking read and write bounded (far past what a megabyte over a socket pair
    // takes), so that a side that stops reading or writing fails the test instead of hanging
    // it.
    for end in [&a, &b] {
        let wait = Some(std::time::Duration::from_secs(10));
        end.set_read_timeout(wait).expect("read timeout");
        end.set_write_timeout(wait).expect("write timeout");
    }
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let expected = data.clone();
    let echo = std::thread::spawn(move || {
        let mut stream = TlsStream::accept(b, server).expect("server handshake");
        let mut got = vec![0; expected.len()];
        stream.read_exact(&mut got).expect("read a megabyte");
        assert!(got == expected, "the server read what the client wrote");
        stream.write_all(&got).expect("write it back");
        stream.close().expect("close_notify");
    });
    let mut stream = TlsStream::connect(a, client, localhost()).expect("client handshake");
    stream.write_all(&data).expect("write a megabyte");
    stream.flush().expect("flush");
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).expect("read it back");
    assert!(back == data, "the echo is what was sent");
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).expect("clean end"), 0);
    echo.join().expect("the echo thread never panics");
}

// TLS 1.2 (listeners with tls_min_version = "1.2"): our session against rustls's own TLS 1.2
// record layer, for each suite the record layer speaks.

/// The TLS 1.2 suites rustls's ring provider offers for the test PKI's ECDSA keys.
const TLS12_SUITES: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

fn server_from(pki: &Pki, min: TlsVersion) -> Arc<rustls::ServerConfig> {
    config::server_config_from(
        &identity(&pki.server),
        &ClientCertificates::NotAsked,
        Tickets::Client,
        min,
    )
    .expect("server config")
}

/// Our server (`tls_min_version = "1.2"`), rustls's TLS 1.2-only client with `suite`.
fn our_tls12_server(pki: &Pki, suite: rustls::CipherSuite) -> (TlsSession, ClientConnection) {
    let client = pki.tls12_only_client(suite);
    let mut theirs =
        Connection::Client(ClientConnection::new(client, localhost()).expect("rustls client"));
    let server = server_from(pki, TlsVersion::Tls12);
    let established =
        handshake(Handshake::server(server).expect("server"), &mut theirs).expect("handshake");
    assert!(established.leftover.is_empty() && established.early_plaintext.is_empty());
    let Connection::Client(theirs) = theirs else {
        unreachable!("made a client")
    };
    assert_eq!(
        theirs.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        theirs.negotiated_cipher_suite().map(|s| s.suite()),
        Some(suite)
    );
    (established.session, theirs)
}

#[test]
fn tls12_each_suite_exchanges_data_both_ways_with_rustls_split_and_multi_record() {
    let pki = Pki::new();
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    for suite in TLS12_SUITES {
        let (mut ours, theirs) = our_tls12_server(&pki, suite);
        assert_eq!(ours.version(), TlsVersion::Tls12, "{suite:?}");
        let gcm = suite != rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
        let prefix = record::RECORD_HEADER_LEN + if gcm { 8 } else { 0 };
        assert_eq!(ours.record_prefix_len(), prefix, "{suite:?}");
        let mut theirs = Connection::Client(theirs);
        // Theirs to ours, read in odd pieces: records cut across reads.
        theirs.writer().write_all(b"hello relay").expect("buffered");
        theirs.writer().write_all(&big).expect("buffered");
        let wire = their_bytes(&mut theirs);
        let mut expected = b"hello relay".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(we_read(&mut ours, &wire, &[3, 1, 100, 7000]), expected);
        // Ours to theirs: one record, then 40 KB spread over three records in place.
        let wire = we_write(&mut ours, b"hello client");
        assert_eq!(wire.len(), b"hello client".len() + prefix + 16, "{suite:?}");
        assert_eq!(they_read(&mut theirs, &wire), b"hello client");
        let wire = we_write(&mut ours, &big);
        assert_eq!(wire.len(), big.len() + 3 * (prefix + 16), "{suite:?}");
        assert_eq!(they_read(&mut theirs, &wire), big);
        // close_notify both ways.
        let mut out = Vec::new();
        ours.seal_close_notify(&mut out).expect("close_notify");
        let mut reader: &[u8] = &out;
        theirs.read_tls(&mut reader).expect("in memory");
        let state = theirs.process_new_packets().expect("rustls accepts it");
        assert!(state.peer_has_closed(), "{suite:?}");
        theirs.send_close_notify();
        let mut wire = their_bytes(&mut theirs);
        assert!(ours.open(&mut wire).expect("close_notify").peer_closed);
    }
}

#[test]
fn tls12_our_client_and_rustls_server_exchange_data() {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let pki = Pki::new();
    for suite in TLS12_SUITES {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.retain(|s| s.suite() == suite);
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2 with ring")
            .with_no_client_auth()
            .with_single_cert(
                CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("test chain"),
                PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).expect("test key"),
            )
            .expect("server");
        let client = config::client_config_from(&anchors(&pki.ca_pem), None, TlsVersion::Tls12)
            .expect("client config");
        let mut theirs =
            Connection::Server(ServerConnection::new(Arc::new(server)).expect("rustls server"));
        let established = handshake(
            Handshake::client(client, localhost()).expect("client"),
            &mut theirs,
        )
        .expect("handshake");
        let mut ours = established.session;
        assert_eq!(ours.version(), TlsVersion::Tls12);
        let mut leftover = established.leftover;
        leftover.extend(their_bytes(&mut theirs));
        assert!(we_read(&mut ours, &leftover, &[5]).is_empty());
        let wire = we_write(&mut ours, b"from our client");
        assert_eq!(they_read(&mut theirs, &wire), b"from our client");
        theirs.writer().write_all(b"from rustls").expect("buffered");
        let wire = their_bytes(&mut theirs);
        assert_eq!(we_read(&mut ours, &wire, &[2]), b"from rustls", "{suite:?}");
    }
}

#[test]
fn tls12_a_tampered_record_is_refused() {
    let pki = Pki::new();
    for suite in TLS12_SUITES {
        let (mut ours, theirs) = our_tls12_server(&pki, suite);
        let mut theirs = Connection::Client(theirs);
        theirs.writer().write_all(b"untouched").expect("buffered");
        let mut wire = their_bytes(&mut theirs);
        // The explicit nonce (GCM), then the ciphertext, then the tag: each is covered.
        for at in [6, 14, wire.len() - 1] {
            let (mut copy, _) = our_tls12_server(&pki, suite);
            let mut tampered = wire.clone();
            tampered[at] ^= 1;
            assert_eq!(
                copy.open(&mut tampered),
                Err(SessionError::Record(record::RecordError::BadRecordMac)),
                "{suite:?} byte {at}"
            );
        }
        // The header's type is authenticated too (an alert posing as data).
        let mut retyped = wire.clone();
        retyped[0] = 21;
        let (mut copy, _) = our_tls12_server(&pki, suite);
        assert_eq!(
            copy.open(&mut retyped),
            Err(SessionError::Record(record::RecordError::BadRecordMac))
        );
        let opened = ours.open(&mut wire).expect("the original opens");
        assert_eq!(&wire[..opened.in_place], b"untouched");
    }
}

#[test]
fn tls12_a_renegotiation_closes_with_its_reason() {
    let pki = Pki::new();
    for suite in TLS12_SUITES {
        let (mut ours, theirs) = our_tls12_server(&pki, suite);
        // The client's own key seals a ClientHello after the handshake, as a renegotiating
        // client would.
        let secrets = theirs.dangerous_extract_secrets().expect("extractable");
        let (seq, tx) = secrets.tx;
        let mut key = record::RecordKey::for_version(seq, tx, TlsVersion::Tls12).expect("key");
        let mut wire = vec![0; key.protection().prefix_len()];
        wire.extend_from_slice(&[1, 0, 0, 2, 3, 3]);
        key.seal(&mut wire, 0, record::ContentType::Handshake)
            .expect("seal");
        let err = ours.open(&mut wire).expect_err("refused");
        assert_eq!(err, SessionError::Renegotiation);
        assert!(err.to_string().contains("renegotiation"), "{err}");
    }
}

#[test]
fn tls12_a_key_at_its_confidentiality_limit_refuses_to_seal_and_says_why() {
    use rustls::crypto::cipher::{AeadKey, Iv};
    let limit = 1u64 << 24;
    let secrets = rustls::ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from([7; 32]),
        iv: Iv::from([9; 12]),
    };
    let mut key =
        record::RecordKey::for_version(limit - 1, secrets, TlsVersion::Tls12).expect("key");
    assert_eq!(key.records_left(), 1);
    let mut out = vec![0; key.protection().prefix_len()];
    out.extend_from_slice(b"last");
    key.seal(&mut out, 0, record::ContentType::ApplicationData)
        .expect("the last record under the limit");
    let mut more = vec![0; key.protection().prefix_len()];
    more.extend_from_slice(b"one too many");
    let err = key
        .seal(&mut more, 0, record::ContentType::ApplicationData)
        .expect_err("past the limit");
    assert_eq!(err, record::RecordError::Tls12KeyExhausted(limit));
    assert!(err.to_string().contains("TLS 1.2"), "{err}");
}

#[test]
fn tls12_records_fit_the_buffers_sized_for_tls13() {
    use record::Protection;
    for p in [Protection::Tls12Gcm, Protection::Tls12Chacha] {
        let body = record::RECORD_PLAINTEXT_MAX + p.overhead() - record::RECORD_HEADER_LEN;
        assert!(body <= record::RECORD_CIPHERTEXT_MAX);
        let [hi, lo] = (body as u16).to_be_bytes();
        assert_eq!(p.check_header(&[23, 3, 3, hi, lo]), Ok(body));
        let [hi, lo] = (body as u16 + 1).to_be_bytes();
        assert_eq!(
            p.check_header(&[23, 3, 3, hi, lo]),
            Err(record::RecordError::TooLarge(body + 1)),
            "a longer body cannot hold at most 2^14 bytes of plaintext"
        );
        assert!(
            p.check_header(&[20, 3, 3, 0, 40]).is_err(),
            "no ChangeCipherSpec"
        );
    }
}

#[test]
fn a_tls13_only_listener_refuses_a_tls12_client_naming_the_version() {
    let pki = Pki::new();
    let client = pki.tls12_only_client(TLS12_SUITES[0]);
    let mut theirs =
        Connection::Client(ClientConnection::new(client, localhost()).expect("rustls client"));
    let server = server_from(&pki, TlsVersion::Tls13);
    let failure =
        handshake(Handshake::server(server).expect("server"), &mut theirs).expect_err("refused");
    assert_eq!(failure.label, "incompatible");
    assert!(failure.text.contains("TLS 1.3"), "{failure}");
    assert!(failure.text.contains("tls_min_version"), "{failure}");
}

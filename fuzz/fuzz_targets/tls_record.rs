//! The record layer's receive side (TLS 1.3 and TLS 1.2) (`TlsReceiver::open`: records opened in place, a
//! record cut by the end of a receive kept and finished by the next one), on a session made
//! from fixed traffic secrets (`TlsSession::pair_from_secrets`, feature `test-session`).
//!
//! Input: `[mode]` then the rest. Bit 0 of `mode` picks the suite (AES-256-GCM or
//! ChaCha20-Poly1305); bit 2 the version (TLS 1.3 or 1.2); bit 1 the check:
//!
//! - garbage (bit 1 clear): `[n][n cut bytes][bytes]`, the bytes cut into chunks as
//!   `stream_decoder` cuts its stream, opened one chunk after the other. No chunk yields
//!   plaintext; the first header is refused exactly when its fifth byte arrives if
//!   `Protection::check_header` refuses it (with that error), else the first record is refused as
//!   forged (`BadRecordMac`) exactly when its last byte arrives (forging a tag is taken to be
//!   impossible); until then every call succeeds and holds exactly the bytes given.
//! - round trip (bit 1 set): up to 16 plaintext flushes (`[len u8][bytes][repeat u8][key
//!   update: bool]`, the bytes repeated up to 64 times so a flush spans several records),
//!   each sealed by the client (a KeyUpdate after it when asked), optionally a close_notify
//!   and trailing bytes, then optionally one corrupted byte, then the cut lengths. Opened by
//!   the server cut there: exactly the plaintext sent, in order, and the close seen at the
//!   end; with a corrupted byte, a prefix of it and never the close unless the byte was after
//!   it (then the same as uncorrupted). Bytes held between calls stay within two records.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use ringrelay::tls::record::{Protection, RecordError, RECORD_CIPHERTEXT_MAX, RECORD_HEADER_LEN};
use ringrelay::tls::session::TlsReceiver;
use ringrelay::tls::{SessionError, TlsSession, TlsVersion};
use ringrelay_fuzz::split;
use rustls::CipherSuite;

/// What a receiver may hold between calls: the record begun and the last one finished.
const HELD_MAX: usize = 2 * (RECORD_HEADER_LEN + RECORD_CIPHERTEXT_MAX);

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let suite = if mode & 1 == 0 {
        CipherSuite::TLS13_AES_256_GCM_SHA384
    } else {
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    };
    let (version, protection) = match (mode & 4 == 0, mode & 1 == 0) {
        (true, _) => (TlsVersion::Tls13, Protection::Tls13),
        (false, true) => (TlsVersion::Tls12, Protection::Tls12Gcm),
        (false, false) => (TlsVersion::Tls12, Protection::Tls12Chacha),
    };
    let (client, server) = TlsSession::pair_from_secrets_for(suite, &[7; 48], &[9; 48], version)
        .expect("both suites are supported");
    let (receiver, _) = server.split();
    if mode & 2 == 0 {
        garbage(receiver, protection, rest);
    } else {
        round_trip(client, receiver, &mut Unstructured::new(rest));
    }
});

fn garbage(mut receiver: TlsReceiver, protection: Protection, data: &[u8]) {
    let [n, rest @ ..] = data else {
        return;
    };
    let (spec, stream) = rest.split_at(usize::from(*n).min(rest.len()));
    let chunks = split(&mut Unstructured::new(spec), stream);
    // Where the first refusal must come, and which.
    let expected = stream
        .first_chunk::<RECORD_HEADER_LEN>()
        .map(|header| match protection.check_header(header) {
            Err(e) => (RECORD_HEADER_LEN, e),
            Ok(len) => (RECORD_HEADER_LEN + len, RecordError::BadRecordMac),
        })
        .filter(|(at, _)| *at <= stream.len());
    let mut fed = 0;
    for chunk in chunks {
        let mut buf = chunk.to_vec();
        let result = receiver.open(&mut buf);
        fed += chunk.len();
        match (result, &expected) {
            (Err(e), Some((at, error))) => {
                assert!(fed >= *at, "refused at {fed} bytes, before {at}: {e}");
                assert_eq!(e, SessionError::Record(error.clone()));
                return;
            }
            (Err(e), None) => panic!("refused a record that never completed: {e}"),
            (Ok(opened), _) => {
                if let Some((at, _)) = expected {
                    assert!(fed < at, "{fed} bytes accepted, {at} were refused");
                }
                assert_eq!(opened.carried, None, "plaintext from garbage");
                assert_eq!(opened.in_place, 0, "plaintext from garbage");
                assert!(!opened.peer_closed);
                assert_eq!(receiver.partial_bytes(), fed, "holds what it was given");
            }
        }
    }
    assert!(expected.is_none(), "{expected:?} never refused");
}

/// The client's flushes, sealed: (wire, plaintext sent, where the close_notify ends).
fn seal_flushes(
    client: &mut TlsSession,
    u: &mut Unstructured<'_>,
) -> (Vec<u8>, Vec<u8>, Option<usize>) {
    let (mut wire, mut sent) = (Vec::new(), Vec::new());
    let flushes = u.int_in_range(0..=16u8).unwrap_or(0);
    for _ in 0..flushes {
        let len = usize::from(u.arbitrary::<u8>().unwrap_or(0));
        let bytes = u.bytes(len.min(u.len())).unwrap_or_default();
        let repeat = usize::from(u.int_in_range(1..=64u8).unwrap_or(1));
        if u.arbitrary::<bool>().unwrap_or(false) {
            client.owe_key_update();
        }
        let plaintext = bytes.repeat(repeat);
        let at = client.reserve_record(&mut wire);
        wire.extend_from_slice(&plaintext);
        client
            .seal(&mut wire, at)
            .expect("sealing never fails below the key's limit");
        sent.extend_from_slice(&plaintext);
    }
    let mut closed_at = None;
    if u.arbitrary::<bool>().unwrap_or(false) {
        client
            .seal_close_notify(&mut wire)
            .expect("sealing never fails below the key's limit");
        closed_at = Some(wire.len());
        let len = usize::from(u.arbitrary::<u8>().unwrap_or(0));
        wire.extend_from_slice(u.bytes(len.min(u.len())).unwrap_or_default());
    }
    (wire, sent, closed_at)
}

/// Opens `wire` cut as `u` says; the plaintext, whether the close came, the first error.
fn open_cut(
    receiver: &mut TlsReceiver,
    wire: &[u8],
    u: &mut Unstructured<'_>,
) -> (Vec<u8>, bool, Option<SessionError>) {
    let (mut plain, mut closed) = (Vec::new(), false);
    let mut rest = wire;
    while !rest.is_empty() {
        // An exhausted `Unstructured` reads as zeros: the rest goes in one piece instead.
        let len = match u.arbitrary::<u8>() {
            _ if u.is_empty() => rest.len(),
            // Mostly short cuts (headers and tags split everywhere), now and then records.
            Ok(b) if b < 0xC0 => usize::from(b % 32),
            Ok(b) => usize::from(b - 0xC0) * 512,
            Err(_) => rest.len(),
        };
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let mut buf = chunk.to_vec();
        let opened = match receiver.open(&mut buf) {
            Ok(opened) => opened,
            Err(e) => return (plain, closed, Some(e)),
        };
        assert!(
            !closed
                || opened
                    == ringrelay::tls::Opened {
                        peer_closed: true,
                        ..Default::default()
                    }
        );
        if let Some(range) = opened.carried {
            plain.extend_from_slice(receiver.carried(range));
        }
        plain.extend_from_slice(&buf[..opened.in_place]);
        closed |= opened.peer_closed;
        assert!(
            receiver.partial_bytes() <= HELD_MAX,
            "{} held",
            receiver.partial_bytes()
        );
    }
    (plain, closed, None)
}

fn round_trip(mut client: TlsSession, mut receiver: TlsReceiver, u: &mut Unstructured<'_>) {
    let (mut wire, sent, closed_at) = seal_flushes(&mut client, u);
    let corrupt = match u.arbitrary::<Option<(u32, u8)>>() {
        Ok(Some((at, x))) if !wire.is_empty() => {
            let at = at as usize % wire.len();
            wire[at] ^= x.max(1);
            Some(at)
        }
        _ => None,
    };
    let (plain, closed, error) = open_cut(&mut receiver, &wire, u);
    let intact = match (corrupt, closed_at) {
        (None, _) => true,
        (Some(at), Some(end)) => at >= end,
        (Some(_), None) => false,
    };
    if intact {
        assert_eq!(error, None);
        assert!(
            plain == sent,
            "{} bytes opened, {} sent",
            plain.len(),
            sent.len()
        );
        assert_eq!(closed, closed_at.is_some());
    } else {
        assert!(sent.starts_with(&plain), "opened what was never sent");
        assert!(
            error.is_some() || !closed,
            "a corrupted stream was taken whole"
        );
    }
}

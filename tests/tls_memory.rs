//! What a TLS connection and a TLS handshake hold, measured with a counting allocator: the
//! figures `memory_budget` counts for them must cover what is measured here. Alone in its test
//! binary (the allocator counts every thread's allocations, and no other test runs here).

#[path = "../src/tls/test_pki.rs"]
#[allow(dead_code)]
mod test_pki;

use ringrelay::memory_budget::{TLS_CONNECTION_STATE_BYTES, TLS_HANDSHAKE_BYTES};
use ringrelay::tls::config::{client_config, server_config, Tickets};
use ringrelay::tls::{
    ClientCertificates, Handshake, Identity, Origin, Progress, TlsSession, TrustAnchors,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with `layout`, as `System::dealloc` requires.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed) as isize
}

/// Bytes `f` leaves allocated (negative: freed).
fn kept<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let before = live();
    let out = f();
    (out, live() - before)
}

/// One handshake in memory, our client against our server: the server's session, and the
/// most the server's handshake held at once (counting only what the server's own steps
/// allocated and freed).
fn handshake(
    server: &std::sync::Arc<rustls::ServerConfig>,
    client: &std::sync::Arc<rustls::ClientConfig>,
) -> (TlsSession, isize) {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a valid name");
    let mut ours = Some(Handshake::client(client.clone(), name).expect("client handshake"));
    let (theirs, mut held) = kept(|| Handshake::server(server.clone()).expect("server"));
    let mut theirs = Some(theirs);
    let (mut peak, mut to_server, mut to_client) = (held, Vec::new(), Vec::new());
    let mut server_session = None;
    for _ in 0..8 {
        if let Some(mut c) = ours.take() {
            c.receive(&std::mem::take(&mut to_client))
                .expect("client receives");
            let progress = c.advance().expect("client advances");
            to_server.extend_from_slice(c.outgoing());
            c.consume_outgoing(c.outgoing().len());
            match progress {
                Progress::Done => drop(c.finish().expect("client session")),
                Progress::NeedBytes => ours = Some(c),
            }
        }
        let Some(mut s) = theirs.take() else { break };
        let incoming = std::mem::take(&mut to_server);
        let (progress, delta) = kept(|| {
            s.receive(&incoming).expect("server receives");
            s.advance().expect("server advances")
        });
        held += delta;
        peak = peak.max(held);
        to_client.extend_from_slice(s.outgoing());
        let ((), delta) = kept(|| s.consume_outgoing(s.outgoing().len()));
        held += delta;
        match progress {
            Progress::Done => {
                let established = s.finish().expect("server session");
                server_session = Some(established.session);
            }
            Progress::NeedBytes => theirs = Some(s),
        }
    }
    (server_session.expect("the handshake completes"), peak)
}

#[test]
fn a_tls_connection_and_a_handshake_hold_less_than_the_budget_counts() {
    let pki = test_pki::Pki::new();
    let identity = Identity::from_pem(
        Origin::memory("tls_cert_file"),
        pki.server.cert_pem.as_bytes(),
        Origin::memory("tls_key_file"),
        pki.server.key_pem.as_bytes(),
    )
    .expect("test pair");
    let server = server_config(&identity, &ClientCertificates::NotAsked, Tickets::Client)
        .expect("server config");
    let anchors = TrustAnchors::from_pem(Origin::memory("ca"), pki.ca_pem.as_bytes());
    let client = client_config(&anchors.expect("test CA"), None).expect("client config");
    let (mut session_max, mut handshake_max) = (0, 0);
    for _ in 0..4 {
        let (session, handshake_peak) = handshake(&server, &client);
        // What dropping the session frees: rustls's key schedule, the record buffers (empty).
        let ((), freed) = kept(|| drop(session));
        session_max = session_max.max(-freed);
        handshake_max = handshake_max.max(handshake_peak);
    }
    // The worker keeps the session inline in a boxed `TlsConn` (two more words of its own).
    let connection = std::mem::size_of::<TlsSession>() as isize + 64 + session_max;
    eprintln!(
        "TLS connection: {} B inline + {session_max} B behind it; handshake peak {handshake_max} B",
        std::mem::size_of::<TlsSession>()
    );
    assert!(
        connection <= TLS_CONNECTION_STATE_BYTES as isize,
        "a TLS connection holds {connection} B, the budget counts {TLS_CONNECTION_STATE_BYTES}"
    );
    assert!(
        handshake_max <= TLS_HANDSHAKE_BYTES as isize,
        "a handshake held {handshake_max} B, the budget counts {TLS_HANDSHAKE_BYTES}"
    );
}

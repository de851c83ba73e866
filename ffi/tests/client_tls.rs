//! The C client over TLS, called from Rust as C calls it: the `ringrelay_client_options_set_tls_*`
//! setters (files and PEM in memory), their refusals and the connect's (a bad file, a key that
//! is not the certificate's, a certificate without its key, TLS settings without a CA), and
//! clients that dial a relay's TLS listener with mutual TLS and exchange messages; a client
//! that trusts another CA is refused with `RINGRELAY_STATUS_TLS`.

use ringrelay::config::Config;
use ringrelay::server::Server;
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::ClientAuth;
use ringrelay_ffi::boundary::ringrelay_last_error;
use ringrelay_ffi::client::event::{ringrelay_event, ringrelay_event_get_kind};
use ringrelay_ffi::client::event::{ringrelay_event_get_payload, ringrelay_event_kind};
use ringrelay_ffi::client::ops::ringrelay_client_send;
use ringrelay_ffi::client::options::{ringrelay_client_options, ringrelay_client_options_init};
use ringrelay_ffi::client::tls::*;
use ringrelay_ffi::client::{ringrelay_client, ringrelay_client_connect, ringrelay_client_free};
use ringrelay_ffi::status::ringrelay_status;
use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

/// Every wait of these tests ends within this long.
const WAIT: Duration = Duration::from_secs(10);

fn last_error() -> String {
    let mut buf = vec![0u8; 1024];
    // SAFETY: `buf` has `buf.len()` writable bytes.
    let n = unsafe { ringrelay_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.min(buf.len() - 1));
    String::from_utf8_lossy(&buf).into_owned()
}

/// Asserts that a call succeeded (with the last error when it did not).
fn ok(status: ringrelay_status) {
    assert_eq!(status, ringrelay_status::Ok, "{}", last_error());
}

fn options() -> ringrelay_client_options {
    let mut opts = std::mem::MaybeUninit::<ringrelay_client_options>::uninit();
    // SAFETY: `opts` has room for the whole struct, all of which init fills.
    unsafe {
        ringrelay_client_options_init(opts.as_mut_ptr(), size_of::<ringrelay_client_options>());
        opts.assume_init()
    }
}

fn c_path(dir: &Path, name: &str) -> CString {
    CString::new(dir.join(name).to_str().expect("temp paths are UTF-8")).expect("no NUL")
}

/// The PKI's files, and the strings the options borrow (kept alive with them).
struct Files {
    dir: PathBuf,
    strings: Vec<CString>,
}

impl Files {
    fn new(pki: &Pki, tag: &str) -> Files {
        Files {
            dir: pki.write_to_temp_dir(tag),
            strings: Vec::new(),
        }
    }

    /// The CA's file, and the client's certificate and key files.
    fn ca_cert_key(&mut self) -> [*const std::ffi::c_char; 3] {
        ["ca.pem", "client.pem", "client.key"].map(|name| self.path(name))
    }

    /// A borrowed C string for `name` in the PKI's directory, valid as long as `self`.
    fn path(&mut self, name: &str) -> *const std::ffi::c_char {
        self.strings.push(c_path(&self.dir, name));
        self.strings.last().map_or(std::ptr::null(), |s| s.as_ptr())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A relay whose TLS listener asks every client for a certificate from the PKI's CA.
fn tls_relay(files: &Files) -> Server {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        workers: 1,
        tls_listen: Some("127.0.0.1:0".parse().expect("an address")),
        tls_cert_file: Some(files.dir.join("server.pem")),
        tls_key_file: Some(files.dir.join("server.key")),
        tls_ca_file: Some(files.dir.join("ca.pem")),
        tls_client_auth: ClientAuth::Required,
        ..Config::default()
    })
    .expect("the relay starts")
}

unsafe extern "C" fn on_event(
    userdata: *mut c_void,
    _client: *mut ringrelay_client,
    event: *const ringrelay_event,
) {
    // SAFETY: `userdata` is a sender from `channel`, which lives for the rest of the process;
    // `event` is live during the call.
    unsafe {
        let tx = &*(userdata as *const SyncSender<Vec<u8>>);
        if ringrelay_event_get_kind(event) == ringrelay_event_kind::Message as u32 {
            let mut len = 0;
            let p = ringrelay_event_get_payload(event, &mut len);
            let _ = tx.try_send(std::slice::from_raw_parts(p, len).to_vec());
        }
    }
}

/// Connects `id` to `servers` with `opts` (callback mode into `tx`).
fn connect(
    servers: &str,
    id: &str,
    opts: &mut ringrelay_client_options,
    tx: &'static SyncSender<Vec<u8>>,
) -> Result<*mut ringrelay_client, (ringrelay_status, String)> {
    opts.on_event = Some(on_event);
    opts.userdata = tx as *const SyncSender<Vec<u8>> as *mut c_void;
    let servers = CString::new(servers).expect("no NUL");
    let mut client = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `tx` is never freed, so it outlives the
    // client even when a failed assertion unwinds before the client is freed.
    let status = unsafe {
        ringrelay_client_connect(
            servers.as_ptr(),
            id.as_ptr(),
            id.len(),
            std::ptr::null(),
            0,
            opts,
            &mut client,
        )
    };
    match status {
        ringrelay_status::Ok => Ok(client),
        status => Err((status, last_error())),
    }
}

fn send(client: *mut ringrelay_client, to: &str, payload: &[u8]) {
    // SAFETY: a live client and valid buffers.
    let status = unsafe {
        ringrelay_client_send(
            client,
            to.as_ptr(),
            to.len(),
            payload.as_ptr(),
            payload.len(),
        )
    };
    assert_eq!(status, ringrelay_status::Ok, "{}", last_error());
}

fn free(client: *mut ringrelay_client) {
    // SAFETY: a live client, not used again.
    let status = unsafe { ringrelay_client_free(client) };
    assert_eq!(status, ringrelay_status::Ok);
}

/// A channel for [`on_event`]. Its sender is leaked (a few bytes per test): a client's threads
/// call `on_event` with it until the client is freed, and a failed assertion before `free`
/// unwinds the test's locals while those threads still run, so a sender on the stack would be
/// used after it is gone.
fn channel() -> (&'static SyncSender<Vec<u8>>, Receiver<Vec<u8>>) {
    let (tx, rx) = sync_channel(64);
    (Box::leak(Box::new(tx)), rx)
}

#[test]
fn two_clients_with_mutual_tls_exchange_messages_and_a_foreign_ca_is_refused() {
    let pki = Pki::new();
    let mut files = Files::new(&pki, "ffi-exchange");
    let relay = tls_relay(&files);
    let addr = relay.tls_addr().expect("tls_listen is set").to_string();

    // One client from files, the other from PEM in memory; both present the client
    // certificate the relay requires, and name the relay `localhost`.
    let localhost = CString::new("localhost").expect("no NUL");
    let mut by_files = options();
    let [ca, cert, key] = files.ca_cert_key();
    // SAFETY: the options and the strings outlive the connect below.
    unsafe {
        ok(ringrelay_client_options_set_tls_ca_file(&mut by_files, ca));
        ok(ringrelay_client_options_set_tls_cert_file(
            &mut by_files,
            cert,
        ));
        ok(ringrelay_client_options_set_tls_key_file(
            &mut by_files,
            key,
        ));
        ok(ringrelay_client_options_set_tls_server_name(
            &mut by_files,
            localhost.as_ptr(),
        ));
    }
    let mut in_memory = options();
    // SAFETY: the PKI's strings outlive the connect below.
    unsafe {
        for (set, pem) in [
            (
                ringrelay_client_options_set_tls_ca_pem as unsafe extern "C" fn(_, _, _) -> _,
                &pki.ca_pem,
            ),
            (
                ringrelay_client_options_set_tls_cert_pem,
                &pki.client.cert_pem,
            ),
            (
                ringrelay_client_options_set_tls_key_pem,
                &pki.client.key_pem,
            ),
        ] {
            assert_eq!(
                set(&mut in_memory, pem.as_ptr(), pem.len()),
                ringrelay_status::Ok
            );
        }
    }
    let (tx_a, rx_a) = channel();
    let (tx_b, rx_b) = channel();
    let a = connect(&addr, "tls-a", &mut by_files, tx_a).expect("a connects over TLS");
    // The server list names 127.0.0.1 alone: that is the default server name.
    let b = connect(&addr, "tls-b", &mut in_memory, tx_b).expect("b connects over TLS");
    let large = vec![7u8; 100_000];
    send(a, "tls-b", b"hello over tls");
    send(a, "tls-b", &large);
    send(b, "tls-a", b"and back");
    assert_eq!(
        rx_b.recv_timeout(WAIT).expect("b hears a"),
        b"hello over tls"
    );
    assert_eq!(
        rx_b.recv_timeout(WAIT).expect("b hears a's large one"),
        large
    );
    assert_eq!(rx_a.recv_timeout(WAIT).expect("a hears b"), b"and back");
    free(a);
    free(b);

    // Trusting another CA: the relay's certificate is refused, at once and in words.
    let mut foreign = options();
    let other_ca = files.path("other-ca.pem");
    // SAFETY: as above.
    let status = unsafe { ringrelay_client_options_set_tls_ca_file(&mut foreign, other_ca) };
    assert_eq!(status, ringrelay_status::Ok);
    let (tx, _rx) = channel();
    let (status, text) = connect(&addr, "tls-c", &mut foreign, tx).expect_err("refused");
    assert_eq!(status, ringrelay_status::Tls, "{text}");
    assert!(
        text.contains("TLS handshake") && text.contains("certificate"),
        "{text}"
    );

    // A plaintext client of the TLS port never gets a WELCOME.
    let mut plain = options();
    plain.connect_timeout_ms = 500;
    plain.reconnect_timeout_ms = 500;
    assert!(connect(&addr, "plain", &mut plain, tx).is_err());
    relay.shutdown();
}

#[test]
fn setters_refuse_bad_files_and_mismatched_keys_and_leave_the_options_unchanged() {
    let pki = Pki::new();
    let mut files = Files::new(&pki, "ffi-setters");
    let mut opts = options();
    let missing = files.path("missing.pem");
    let key_as_ca = files.path("client.key");
    let (ca, cert, server_key) = (
        files.path("ca.pem"),
        files.path("client.pem"),
        files.path("server.key"),
    );
    // SAFETY: the options and the strings live through every call.
    unsafe {
        let status = ringrelay_client_options_set_tls_ca_file(&mut opts, missing);
        assert_eq!(status, ringrelay_status::Config);
        let text = last_error();
        assert!(
            text.contains("tls_ca_file") && text.contains("missing.pem"),
            "{text}"
        );
        assert!(text.contains("cannot read"), "{text}");
        let status = ringrelay_client_options_set_tls_ca_file(&mut opts, key_as_ca);
        assert_eq!(status, ringrelay_status::Config);
        assert!(
            last_error().contains("holds no certificate"),
            "{}",
            last_error()
        );
        assert!(opts.tls_ca_file.is_null(), "refused: unchanged");

        ok(ringrelay_client_options_set_tls_ca_file(&mut opts, ca));
        ok(ringrelay_client_options_set_tls_cert_file(&mut opts, cert));
        let status = ringrelay_client_options_set_tls_key_file(&mut opts, server_key);
        assert_eq!(status, ringrelay_status::Config);
        assert!(
            last_error().contains("does not match the certificate"),
            "{}",
            last_error()
        );
        assert!(opts.tls_key_file.is_null(), "refused: unchanged");

        let bad_name = CString::new("not a name!").expect("no NUL");
        let status = ringrelay_client_options_set_tls_server_name(&mut opts, bad_name.as_ptr());
        assert_eq!(status, ringrelay_status::Config);
        assert!(last_error().contains("tls_server_name"), "{}", last_error());

        // Filled for an older header (no TLS fields): refused, nothing written past its end.
        let mut old = options();
        old.struct_size = std::mem::offset_of!(ringrelay_client_options, tls_ca_file) as u32;
        let status = ringrelay_client_options_set_tls_ca_file(&mut old, ca);
        assert_eq!(status, ringrelay_status::InvalidArgument);
        assert!(old.tls_ca_file.is_null());
        let status = ringrelay_client_options_set_tls_ca_file(std::ptr::null_mut(), ca);
        assert_eq!(status, ringrelay_status::InvalidArgument);

        // NULL clears.
        ok(ringrelay_client_options_set_tls_cert_file(
            &mut opts,
            std::ptr::null(),
        ));
        assert!(opts.tls_cert_file.is_null());
    }
}

#[test]
fn connect_refuses_a_certificate_without_its_key_and_tls_settings_without_a_ca() {
    let pki = Pki::new();
    let mut files = Files::new(&pki, "ffi-combinations");
    let [ca, cert, key] = files.ca_cert_key();
    let (tx, _rx) = channel();
    // Nothing listens on port 1: a connect that got past the settings would fail otherwise.
    let refused = |opts: &mut ringrelay_client_options, words: &str| {
        let (status, text) = connect("127.0.0.1:1", "x", opts, tx).expect_err("refused");
        assert_eq!(status, ringrelay_status::Config, "{text}");
        assert!(text.contains(words), "{text:?} lacks {words:?}");
    };
    let mut opts = options();
    // SAFETY: the options and the strings live through every call.
    unsafe {
        ok(ringrelay_client_options_set_tls_ca_file(&mut opts, ca));
        ok(ringrelay_client_options_set_tls_cert_file(&mut opts, cert));
        refused(&mut opts, "needs its private key");
        ringrelay_client_options_set_tls_cert_file(&mut opts, std::ptr::null());
        ok(ringrelay_client_options_set_tls_key_file(&mut opts, key));
        refused(&mut opts, "needs its certificate");
        ok(ringrelay_client_options_set_tls_cert_file(&mut opts, cert));
        ringrelay_client_options_set_tls_ca_file(&mut opts, std::ptr::null());
        refused(&mut opts, "without a CA");
    }
    // Fields set directly, file and memory both: one of them must go.
    let mut both = options();
    both.tls_ca_file = ca;
    both.tls_ca_pem = pki.ca_pem.as_ptr();
    both.tls_ca_pem_len = pki.ca_pem.len();
    refused(&mut both, "are both set");
}

//! `ringrelay_client_options`: the tunables of a client, a struct that can grow without
//! breaking programs built against an older header (it starts with its own size).

use super::event::ringrelay_event;
use super::ringrelay_client;
use crate::boundary::guard_value;
use crate::status::Failure;
use ringrelay::ack::SenderConfig;
use ringrelay::client::{AckedSessionOptions, SessionOptions};
use std::ffi::{c_char, c_void};
use std::mem::{size_of, MaybeUninit};
use std::time::Duration;

/// A function the library calls with an event: `userdata` as given, the client the event is
/// for, and the event, borrowed until the function returns.
#[allow(non_camel_case_types)]
pub type ringrelay_event_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        client: *mut ringrelay_client,
        event: *const ringrelay_event,
    ),
>;

/// Options of `ringrelay_client_connect`. Fill it with
/// `ringrelay_client_options_init(&opts, sizeof opts)`, then change fields: a later version of the library may add fields at the end, and reads only the
/// first `struct_size` bytes, so a program built against this header keeps working.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ringrelay_client_options {
    /// `sizeof(ringrelay_client_options)`, set by `ringrelay_client_options_init`.
    pub struct_size: u32,
    /// Bound on one connection attempt (TCP connect plus the handshake). Default 5000 ms.
    pub connect_timeout_ms: u32,
    /// How long the client looks for a relay of its list, at connect and after a lost
    /// connection, before it gives up. Default 10000 ms: longer than a cluster takes to notice
    /// a dead node (3 s by default) and a relay takes to restart.
    pub reconnect_timeout_ms: u32,
    /// Queue mode (no `on_event`): most events waiting to be drained. When the queue is full
    /// the client stops reading from the relay until the host drains (the relay then buffers,
    /// and closes a consumer that stays behind as SLOW_CONSUMER). Default 65536.
    pub queue_events_max: u32,
    /// Queue mode: most bytes (ids, topics, payloads) waiting to be drained; the same policy
    /// when full. Default 67108864 (64 MiB).
    pub queue_bytes_max: u64,
    /// Whether the client's own thread writes queued messages soon after they are queued
    /// (true, the default), or only `ringrelay_client_flush` and a full write buffer do
    /// (false: the fastest for a host that sends in bursts and flushes after each).
    pub auto_flush: bool,
    /// Callback mode when set: the client's thread calls it for every event, in order, never
    /// two at once. When NULL, events wait in a queue for `ringrelay_client_drain`.
    pub on_event: ringrelay_event_callback,
    /// Passed to `on_event` as is; the library never reads it.
    pub userdata: *mut c_void,
    /// Acked mode: `ringrelay_client_send_acked` works, and every acked message ends in a
    /// CONFIRMED or FAILED event; acked messages from others arrive as ACKED_MESSAGE events and
    /// are acknowledged by the library only once handed out: after the callback returned for
    /// them, or, in queue mode, after `ringrelay_client_drain` handed them out. Acked messages
    /// still queued at close are not acknowledged: their senders send them again to this id's
    /// next connection (or see them FAILED), so nothing is confirmed that the host never saw;
    /// drain before closing to avoid receiving them twice. Needs a relay that speaks protocol
    /// version 2. Default false.
    pub acked: bool,
    /// Acked mode: an acked message not CONFIRMED this long after it was first sent ends in a
    /// FAILED event (sent again meanwhile, as the relay and the target allow). Default 30000
    /// ms: longer than a cluster takes to notice a dead node and a client takes to reconnect.
    /// 0 also means the default (the field sits where older versions of the struct had
    /// padding).
    pub acked_timeout_ms: u32,
    /// TLS: the CA certificates (PEM file) the relay's certificate must chain to. Set, or
    /// `tls_ca_pem`, the client dials TLS 1.3; neither (the default, NULL), plain TCP. Set it
    /// with `ringrelay_client_options_set_tls_ca_file`, which checks the file at once; the
    /// string is borrowed, and read again by each connect.
    pub tls_ca_file: *const c_char,
    /// TLS: the CA certificates as PEM in memory (`tls_ca_pem_len` bytes, borrowed), instead
    /// of `tls_ca_file`. Set with `ringrelay_client_options_set_tls_ca_pem`.
    pub tls_ca_pem: *const u8,
    /// The length of `tls_ca_pem`.
    pub tls_ca_pem_len: usize,
    /// Mutual TLS: the client's certificate chain (PEM file, leaf first), presented when the
    /// relay asks (`tls_client_auth`). Needs its key; set both or neither. Set with
    /// `ringrelay_client_options_set_tls_cert_file`.
    pub tls_cert_file: *const c_char,
    /// Mutual TLS: the certificate chain as PEM in memory, instead of `tls_cert_file`.
    pub tls_cert_pem: *const u8,
    /// The length of `tls_cert_pem`.
    pub tls_cert_pem_len: usize,
    /// Mutual TLS: the private key of the client's certificate (PEM file: PKCS#8, PKCS#1 or
    /// SEC1). Set with `ringrelay_client_options_set_tls_key_file`.
    pub tls_key_file: *const c_char,
    /// Mutual TLS: the private key as PEM in memory, instead of `tls_key_file`.
    pub tls_key_pem: *const u8,
    /// The length of `tls_key_pem`.
    pub tls_key_pem_len: usize,
    /// TLS: the name the relay's certificate must carry (a DNS name or an IP address). NULL
    /// (the default): the host of the server list when every entry names the same host,
    /// else the IP address dialed. Set with `ringrelay_client_options_set_tls_server_name`.
    pub tls_server_name: *const c_char,
}

impl Default for ringrelay_client_options {
    fn default() -> Self {
        ringrelay_client_options {
            struct_size: size_of::<ringrelay_client_options>() as u32,
            connect_timeout_ms: 5_000,
            reconnect_timeout_ms: 10_000,
            queue_events_max: 65_536,
            queue_bytes_max: 64 << 20,
            auto_flush: true,
            on_event: None,
            userdata: std::ptr::null_mut(),
            acked: false,
            acked_timeout_ms: 30_000,
            tls_ca_file: std::ptr::null(),
            tls_ca_pem: std::ptr::null(),
            tls_ca_pem_len: 0,
            tls_cert_file: std::ptr::null(),
            tls_cert_pem: std::ptr::null(),
            tls_cert_pem_len: 0,
            tls_key_file: std::ptr::null(),
            tls_key_pem: std::ptr::null(),
            tls_key_pem_len: 0,
            tls_server_name: std::ptr::null(),
        }
    }
}

impl ringrelay_client_options {
    /// The options `opts` names: the defaults overlaid with its first `struct_size` bytes.
    ///
    /// # Safety
    /// Unless NULL, `opts` points to at least `opts->struct_size` readable bytes holding a
    /// prefix of this struct as a program built against some version of the header laid it out.
    pub(crate) unsafe fn read(opts: *const ringrelay_client_options) -> Result<Self, Failure> {
        let mut out = MaybeUninit::new(Self::default());
        if opts.is_null() {
            // SAFETY: initialised just above.
            return Ok(unsafe { out.assume_init() });
        }
        // SAFETY: `struct_size` is the first field, present in every version of the struct.
        let given = unsafe { opts.cast::<u32>().read_unaligned() } as usize;
        if given < size_of::<u32>() {
            return Err(Failure::invalid(format!(
                "options struct_size is {given}: call ringrelay_client_options_init first"
            )));
        }
        // Only whole fields: a size that ends inside one (a corrupt or foreign struct) must
        // not leave half a pointer behind.
        let n = whole_fields_within(given.min(size_of::<Self>()));
        // SAFETY: the caller promises `given` readable bytes; `n <= given` and `n` fits in
        // `out`. Every field is plain data (integers, a bool, pointers) that the C program
        // wrote as its own header declares it, so any prefix leaves `out` a valid value.
        unsafe {
            std::ptr::copy_nonoverlapping(opts.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), n);
            Ok(out.assume_init())
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.connect_timeout_ms.max(1)))
    }

    pub(crate) fn reconnect_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.reconnect_timeout_ms.max(1)))
    }

    /// The acked session's options over `session`: the timeout is `acked_timeout_ms`, and the
    /// attempts are enough that the timeout, not their count, ends a message (one attempt at
    /// least every `rto_max_ms` until then).
    pub(crate) fn acked_session(&self, session: SessionOptions) -> AckedSessionOptions {
        let defaults = SenderConfig::default();
        let timeout_ms = match self.acked_timeout_ms {
            0 => ringrelay_client_options::default().acked_timeout_ms,
            ms => ms,
        };
        let timeout_ms = u64::from(timeout_ms);
        let attempts = defaults.attempts_max as u64 + timeout_ms / defaults.rto_max_ms.max(1);
        AckedSessionOptions {
            session,
            sender: SenderConfig {
                ack_timeout_ms: timeout_ms,
                attempts_max: u32::try_from(attempts).unwrap_or(u32::MAX),
                ..defaults
            },
            ..AckedSessionOptions::default()
        }
    }
}

/// The largest prefix of the struct, at most `n` bytes, that ends at the end of a field.
pub(crate) fn whole_fields_within(n: usize) -> usize {
    use std::mem::offset_of;
    type O = ringrelay_client_options;
    let ends = [
        offset_of!(O, struct_size) + size_of::<u32>(),
        offset_of!(O, connect_timeout_ms) + size_of::<u32>(),
        offset_of!(O, reconnect_timeout_ms) + size_of::<u32>(),
        offset_of!(O, queue_events_max) + size_of::<u32>(),
        offset_of!(O, queue_bytes_max) + size_of::<u64>(),
        offset_of!(O, auto_flush) + size_of::<bool>(),
        offset_of!(O, on_event) + size_of::<ringrelay_event_callback>(),
        offset_of!(O, userdata) + size_of::<*mut c_void>(),
        offset_of!(O, acked) + size_of::<bool>(),
        offset_of!(O, acked_timeout_ms) + size_of::<u32>(),
        offset_of!(O, tls_ca_file) + size_of::<*const c_char>(),
        offset_of!(O, tls_ca_pem) + size_of::<*const u8>(),
        offset_of!(O, tls_ca_pem_len) + size_of::<usize>(),
        offset_of!(O, tls_cert_file) + size_of::<*const c_char>(),
        offset_of!(O, tls_cert_pem) + size_of::<*const u8>(),
        offset_of!(O, tls_cert_pem_len) + size_of::<usize>(),
        offset_of!(O, tls_key_file) + size_of::<*const c_char>(),
        offset_of!(O, tls_key_pem) + size_of::<*const u8>(),
        offset_of!(O, tls_key_pem_len) + size_of::<usize>(),
        offset_of!(O, tls_server_name) + size_of::<*const c_char>(),
    ];
    ends.into_iter().filter(|&end| end <= n).max().unwrap_or(0)
}

/// Fills `*opts` with the defaults: its first `size` bytes, where `size` is
/// `sizeof(ringrelay_client_options)` as the caller's header declares it (so a program built
/// against an older, smaller struct is never written past its end); `struct_size` is set to
/// what was filled. NULL is ignored. Callable from any thread.
///
/// # Safety
/// Unless NULL, `opts` points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_init(
    opts: *mut ringrelay_client_options,
    size: usize,
) {
    guard_value((), || {
        if opts.is_null() {
            return;
        }
        let n = whole_fields_within(size.min(size_of::<ringrelay_client_options>()));
        let defaults = ringrelay_client_options {
            struct_size: n as u32,
            ..Default::default()
        };
        // SAFETY: the caller promises `size` writable bytes at `opts`; `n <= size`, and `n`
        // bytes of `defaults` are readable.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&defaults as *const ringrelay_client_options).cast::<u8>(),
                opts.cast::<u8>(),
                n,
            )
        };
    })
}

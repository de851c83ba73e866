//! TLS for a client: the `tls_*` fields of `ringrelay_client_options`, their setters, and the
//! Rust client's [`ClientTls`] they make (the Rust client dials; nothing here speaks TLS).
//!
//! The setters check what they can at once (a file that cannot be read or holds no PEM, a key
//! that does not match the certificate already set) and leave the options unchanged when they
//! refuse; `ringrelay_client_connect` checks everything again, and the combinations (a
//! certificate needs its key, both need a CA), since fields may be set in any order.

use super::options::{ringrelay_client_options, whole_fields_within};
use crate::boundary::{bytes_arg, guard, str_arg};
use crate::status::{ringrelay_status, Failure};
use ringrelay::client::ClientTls;
use ringrelay::tls::config::{client_config, read_pem_file};
use ringrelay::tls::{Identity, Origin, TrustAnchors};
use std::ffi::c_char;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::path::Path;

/// A refused TLS setting: `RINGRELAY_STATUS_CONFIG` with the reason.
fn refused(e: impl std::fmt::Display) -> Failure {
    Failure::new(ringrelay_status::Config, e.to_string())
}

/// One PEM input of the options: a file or bytes in memory, named as its fields are.
struct PemInput {
    origin: Origin,
    bytes: Vec<u8>,
}

/// The field names of one PEM input: the file's, then the memory's.
type Names = (&'static str, &'static str);
const CA: Names = ("tls_ca_file", "tls_ca_pem");
const CERT: Names = ("tls_cert_file", "tls_cert_pem");
const KEY: Names = ("tls_key_file", "tls_key_pem");

/// Reads the input `file` or `(pem, len)` name (at most one of them), `None` when neither.
///
/// # Safety
/// `file` is NULL or a NUL-terminated string; `pem` is NULL or points to `len` readable bytes.
unsafe fn input(
    file: *const c_char,
    (pem, len): (*const u8, usize),
    (file_name, pem_name): Names,
) -> Result<Option<PemInput>, Failure> {
    let in_memory = !pem.is_null() && len > 0;
    if file.is_null() {
        if !in_memory {
            return Ok(None);
        }
        // SAFETY: the caller's promise about `pem` and `len`.
        let bytes = unsafe { bytes_arg(pem, len, pem_name)? }.to_vec();
        let origin = Origin::memory(pem_name);
        return Ok(Some(PemInput { origin, bytes }));
    }
    if in_memory {
        return Err(refused(format!(
            "{file_name} and {pem_name} are both set: set one of them"
        )));
    }
    // SAFETY: the caller's promise about `file`.
    let path = Path::new(unsafe { str_arg(file, file_name)? });
    let origin = Origin::file(file_name, path);
    let bytes = read_pem_file(&origin, path).map_err(refused)?;
    Ok(Some(PemInput { origin, bytes }))
}

/// How much of the TLS settings must be there: all of it at connect, or only what was set so
/// far in a setter (the rest may come next).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Partial,
    Whole,
}

/// The client's TLS from the options: `None` for plain TCP (no CA set). `servers` gives the
/// default server name.
///
/// # Safety
/// The `tls_*` pointers of `opts` are NULL or valid as their fields document.
pub(crate) unsafe fn client_tls(
    opts: &ringrelay_client_options,
    servers: &[String],
) -> Result<Option<ClientTls>, Failure> {
    // SAFETY: the caller's promise.
    unsafe { build(opts, servers, Check::Whole) }
}

/// As [`client_tls`], only as far as `check` asks.
///
/// # Safety
/// As [`client_tls`].
unsafe fn build(
    opts: &ringrelay_client_options,
    servers: &[String],
    check: Check,
) -> Result<Option<ClientTls>, Failure> {
    // SAFETY: the caller's promise about the fields.
    let (ca, cert, key) = unsafe {
        (
            input(opts.tls_ca_file, (opts.tls_ca_pem, opts.tls_ca_pem_len), CA)?,
            input(
                opts.tls_cert_file,
                (opts.tls_cert_pem, opts.tls_cert_pem_len),
                CERT,
            )?,
            input(
                opts.tls_key_file,
                (opts.tls_key_pem, opts.tls_key_pem_len),
                KEY,
            )?,
        )
    };
    let server_name = match opts.tls_server_name.is_null() {
        true => None,
        // SAFETY: the caller's promise about the field.
        false => Some(server_name(unsafe {
            str_arg(opts.tls_server_name, "tls_server_name")?
        })?),
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(
            Identity::from_pem(cert.origin, &cert.bytes, key.origin, &key.bytes)
                .map_err(refused)?,
        ),
        (Some(_), None) if check == Check::Whole => {
            return Err(refused(
                "a client certificate (tls_cert_file or tls_cert_pem) needs its private key \
                 (tls_key_file or tls_key_pem): set both or neither",
            ))
        }
        (None, Some(_)) if check == Check::Whole => {
            return Err(refused(
                "a private key (tls_key_file or tls_key_pem) needs its certificate \
                 (tls_cert_file or tls_cert_pem): set both or neither",
            ))
        }
        _ => None,
    };
    let Some(ca) = ca else {
        let tls_set = identity.is_some() || server_name.is_some();
        if check == Check::Whole && tls_set {
            return Err(refused(
                "TLS settings are set without a CA: set tls_ca_file or tls_ca_pem (TLS is on \
                 only with a CA to check the relay's certificate against)",
            ));
        }
        return Ok(None);
    };
    let anchors = TrustAnchors::from_pem(ca.origin, &ca.bytes).map_err(refused)?;
    let config = client_config(&anchors, identity.as_ref()).map_err(refused)?;
    let name = match server_name {
        Some(name) => Some(name),
        None => default_server_name(servers),
    };
    Ok(Some(ClientTls::from_config(config, name)))
}

type ServerName = rustls::pki_types::ServerName<'static>;

fn server_name(name: &str) -> Result<ServerName, Failure> {
    ServerName::try_from(name.to_string())
        .map_err(|e| refused(format!("tls_server_name {name:?}: {e}")))
}

/// The host every entry of `servers` names (`HOST:PORT`, `[V6]:PORT`), if they all name the
/// same one and it is a DNS name or an IP address; `None` (the IP address dialed) otherwise.
fn default_server_name(servers: &[String]) -> Option<ServerName> {
    let host = |server: &str| -> String {
        let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    };
    let mut hosts = servers.iter().map(|s| host(s));
    let first = hosts.next()?;
    if hosts.any(|h| h != first) {
        return None;
    }
    ServerName::try_from(first).ok()
}

/// Where the last `tls_*` field ends: a struct filled with a smaller size (by a program built
/// against an older header) has no room for them.
fn tls_fields_end() -> usize {
    offset_of!(ringrelay_client_options, tls_server_name) + size_of::<*const c_char>()
}

/// Changes the options at `opts` with `change`, if the TLS settings it leaves pass a
/// partial check; unchanged otherwise.
///
/// # Safety
/// Unless NULL, `opts` points to `opts->struct_size` writable bytes filled by
/// `ringrelay_client_options_init`, with its `tls_*` pointers valid as documented.
unsafe fn set(
    opts: *mut ringrelay_client_options,
    change: impl FnOnce(&mut ringrelay_client_options),
) -> Result<(), Failure> {
    if opts.is_null() {
        return Err(Failure::invalid("opts is NULL"));
    }
    // SAFETY: the caller's promise; `struct_size` is the first field of every version.
    let given = unsafe { opts.cast::<u32>().read_unaligned() } as usize;
    if given < tls_fields_end() {
        return Err(Failure::invalid(format!(
            "options struct_size is {given}, too small for the TLS fields: fill it with \
             ringrelay_client_options_init(&opts, sizeof opts) of a header that has them"
        )));
    }
    // SAFETY: the caller's promise.
    let mut next = unsafe { ringrelay_client_options::read(opts)? };
    change(&mut next);
    // SAFETY: the caller's promise for the old fields; the new one is the setter's argument,
    // whose validity its caller promises.
    unsafe { build(&next, &[], Check::Partial)? };
    let n = whole_fields_within(given.min(size_of::<ringrelay_client_options>()));
    let next = MaybeUninit::new(next);
    // SAFETY: the caller promises `given` writable bytes at `opts`; `n <= given`, and `n`
    // bytes of `next` are readable.
    unsafe { std::ptr::copy_nonoverlapping(next.as_ptr().cast::<u8>(), opts.cast::<u8>(), n) };
    Ok(())
}

/// The fields of one PEM input: the file, the memory and its length.
type Slots = for<'a> fn(
    &'a mut ringrelay_client_options,
) -> (&'a mut *const c_char, &'a mut *const u8, &'a mut usize);

fn ca_slots(o: &mut ringrelay_client_options) -> (&mut *const c_char, &mut *const u8, &mut usize) {
    (&mut o.tls_ca_file, &mut o.tls_ca_pem, &mut o.tls_ca_pem_len)
}

fn cert_slots(
    o: &mut ringrelay_client_options,
) -> (&mut *const c_char, &mut *const u8, &mut usize) {
    (
        &mut o.tls_cert_file,
        &mut o.tls_cert_pem,
        &mut o.tls_cert_pem_len,
    )
}

fn key_slots(o: &mut ringrelay_client_options) -> (&mut *const c_char, &mut *const u8, &mut usize) {
    (
        &mut o.tls_key_file,
        &mut o.tls_key_pem,
        &mut o.tls_key_pem_len,
    )
}

/// Sets one PEM input to `file` or `(pem, len)` (the other cleared), as [`set`] does.
///
/// # Safety
/// As [`set`], and `file` and `pem` valid as the setters document.
unsafe fn set_input(
    opts: *mut ringrelay_client_options,
    slots: Slots,
    file: *const c_char,
    (pem, len): (*const u8, usize),
) -> Result<(), Failure> {
    // SAFETY: the caller's promises.
    unsafe {
        set(opts, |o| {
            let (f, p, l) = slots(o);
            (*f, *p, *l) = (file, pem, len);
        })
    }
}

/// Sets `tls_ca_file`: the client dials TLS 1.3 and trusts the CA certificates in the PEM
/// file at `path` (and no other: the system's roots are not used). NULL clears it (plain TCP
/// unless `tls_ca_pem` is set); setting it clears `tls_ca_pem`. The file is read at once to
/// check it, and again by each `ringrelay_client_connect`.
///
/// `RINGRELAY_STATUS_CONFIG` when the file cannot be read, holds no certificate, or holds one
/// that cannot be a trust anchor (the options are then unchanged, and `ringrelay_last_error`
/// names the setting, the file and the reason); `RINGRELAY_STATUS_INVALID_ARGUMENT` when
/// `opts` is NULL, was filled for an older header, or `path` is not UTF-8. Callable from any
/// thread.
///
/// # Safety
/// `opts` points to options filled by `ringrelay_client_options_init`; `path` is NULL or a
/// NUL-terminated string that stays valid until the last connect with these options returns.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_ca_file(
    opts: *mut ringrelay_client_options,
    path: *const c_char,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        unsafe { set_input(opts, ca_slots, path, (std::ptr::null(), 0)) }
    })
}

/// As `ringrelay_client_options_set_tls_ca_file`, with the CA certificates as PEM in memory:
/// `pem_len` bytes at `pem`, borrowed (not copied) until the last connect with these options
/// returns. NULL or 0 clears it; setting it clears `tls_ca_file`.
///
/// # Safety
/// `opts` as for `ringrelay_client_options_set_tls_ca_file`; `pem` is NULL or points to
/// `pem_len` readable bytes that stay valid and unchanged that long.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_ca_pem(
    opts: *mut ringrelay_client_options,
    pem: *const u8,
    pem_len: usize,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        unsafe { set_input(opts, ca_slots, std::ptr::null(), (pem, pem_len)) }
    })
}

/// Mutual TLS: sets `tls_cert_file`, the client's certificate chain (PEM file, leaf first),
/// presented when the relay asks for one (its `tls_client_auth`). Set the key too
/// (`ringrelay_client_options_set_tls_key_file` or `..._pem`): both or neither, else
/// `ringrelay_client_connect` fails with `RINGRELAY_STATUS_CONFIG`. NULL clears it; setting it
/// clears `tls_cert_pem`.
///
/// `RINGRELAY_STATUS_CONFIG` when the file cannot be read, or, with the key already set, when
/// the pair does not hold a certificate and its key (`ringrelay_last_error` says which);
/// the options are then unchanged. Otherwise as `ringrelay_client_options_set_tls_ca_file`.
///
/// # Safety
/// As `ringrelay_client_options_set_tls_ca_file`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_cert_file(
    opts: *mut ringrelay_client_options,
    path: *const c_char,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        unsafe { set_input(opts, cert_slots, path, (std::ptr::null(), 0)) }
    })
}

/// As `ringrelay_client_options_set_tls_cert_file`, with the chain as PEM in memory, borrowed
/// as in `ringrelay_client_options_set_tls_ca_pem`. Setting it clears `tls_cert_file`.
///
/// # Safety
/// As `ringrelay_client_options_set_tls_ca_pem`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_cert_pem(
    opts: *mut ringrelay_client_options,
    pem: *const u8,
    pem_len: usize,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        unsafe { set_input(opts, cert_slots, std::ptr::null(), (pem, pem_len)) }
    })
}

/// Mutual TLS: sets `tls_key_file`, the private key of the client's certificate (PEM file:
/// PKCS#8, PKCS#1 or SEC1). With the certificate already set, a key that is not the
/// certificate's is refused here with `RINGRELAY_STATUS_CONFIG` ("the private key does not
/// match the certificate"). NULL clears it; setting it clears `tls_key_pem`. Otherwise as
/// `ringrelay_client_options_set_tls_cert_file`.
///
/// # Safety
/// As `ringrelay_client_options_set_tls_ca_file`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_key_file(
    opts: *mut ringrelay_client_options,
    path: *const c_char,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        unsafe { set_input(opts, key_slots, path, (std::ptr::null(), 0)) }
    })
}

/// As `ringrelay_client_options_set_tls_key_file`, with the key as PEM in memory, borrowed as
/// in `ringrelay_client_options_set_tls_ca_pem`. Setting it clears `tls_key_file`.
///
/// # Safety
/// As `ringrelay_client_options_set_tls_ca_pem`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_key_pem(
    opts: *mut ringrelay_client_options,
    pem: *const u8,
    pem_len: usize,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        unsafe { set_input(opts, key_slots, std::ptr::null(), (pem, pem_len)) }
    })
}

/// Sets `tls_server_name`: the name the relay's certificate must carry, a DNS name
/// (`"relay.example.com"`) or an IP address. NULL (the default) names the host of the server
/// list when every entry has the same host, else the IP address dialed.
/// `RINGRELAY_STATUS_CONFIG` when `name` is neither a DNS name nor an IP address. Borrowed as
/// the file setters' `path`.
///
/// # Safety
/// As `ringrelay_client_options_set_tls_ca_file`, `name` for `path`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_options_set_tls_server_name(
    opts: *mut ringrelay_client_options,
    name: *const c_char,
) -> ringrelay_status {
    // SAFETY: the caller's promises.
    guard(|| unsafe { set(opts, |o| o.tls_server_name = name) })
}

#[cfg(test)]
mod tests {
    use super::{default_server_name, ServerName};

    fn name(servers: &[&str]) -> Option<ServerName> {
        default_server_name(&servers.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_default_server_name_is_the_one_host_of_the_list_else_the_address_dialed() {
        let dns = |n: &str| ServerName::try_from(n.to_string()).ok();
        assert_eq!(name(&["relay.example:7000"]), dns("relay.example"));
        assert_eq!(
            name(&["relay.example:7000", "relay.example:7001"]),
            dns("relay.example")
        );
        assert_eq!(name(&["127.0.0.1:7000"]), dns("127.0.0.1"));
        assert_eq!(name(&["[::1]:7000"]), dns("::1"));
        assert_eq!(name(&["a.example:7000", "b.example:7000"]), None);
        assert_eq!(name(&["not a name:7000"]), None);
        assert_eq!(name(&[]), None);
    }
}

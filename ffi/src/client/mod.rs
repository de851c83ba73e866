//! `ringrelay_client`: a connection to a relay (a list of them, reconnecting as the Rust
//! `Session` does) driven by a thread of its own.
//!
//! - **Threads.** Every call may come from any thread; calls on one client are serialised by
//!   one lock, held for the length of the call. The client's thread holds it only while it
//!   reads from the socket, never while a callback runs.
//! - **Receiving.** Callback mode (`on_event` set): the client's thread calls it for each
//!   event in order. Queue mode: events wait for `ringrelay_client_drain` on the host's
//!   thread; `ringrelay_client_fd` is readable while any wait.
//! - **Inside a callback** of a client, sending on it works; closing or freeing it, or
//!   draining it again, returns `RINGRELAY_STATUS_IN_CALLBACK`.

mod driver;
pub mod event;
mod link;
pub mod ops;
pub mod options;
mod queue;
pub mod tls;
mod wake;

use crate::boundary::{
    bytes_arg, guard, in_callback_of, refuse_in_callback_of, str_arg, write_out,
};
use crate::status::{ringrelay_status, Failure};
use driver::HandleAddr;
use event::{ringrelay_event, Item};
pub(crate) use link::Link;
use options::{ringrelay_client_options, ringrelay_event_callback};
use queue::EventQueue;
use ringrelay::ack::AckOut;
use ringrelay::client::{AckedSession, CancelFlag, ClientOptions, Event, Session, SessionOptions};
use std::collections::VecDeque;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use wake::WakeFd;

/// A client (opaque). Made by `ringrelay_client_connect`, freed by `ringrelay_client_free`.
#[allow(non_camel_case_types)]
pub struct ringrelay_client {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

/// What the host's threads and the client's thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Set by a send (with `auto_flush`), a flush that read events, and close.
    pub(crate) wake: WakeFd,
    pub(crate) mode: Mode,
    pub(crate) stopping: AtomicBool,
    /// Events the client's thread had read were dropped unseen (a panic in it): acked ones
    /// among them must not be acknowledged at close.
    pub(crate) events_lost: AtomicBool,
    /// Host threads waiting in an acked flush for `progress`.
    pub(crate) flush_waiters: AtomicUsize,
    /// Notified by the client's thread after each turn while `flush_waiters` is not 0 (used
    /// with `state`'s lock).
    pub(crate) progress: Condvar,
    /// Ends a reconnection in progress when the client closes (it holds the lock meanwhile).
    cancel: CancelFlag,
    auto_flush: bool,
    /// The client's own thread: closing from it (from any callback it runs, nested or not)
    /// would join itself.
    driver_thread: std::sync::OnceLock<std::thread::ThreadId>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// `None` once closed.
    pub(crate) link: Option<Link>,
    /// Why the client ended, once it has: every later call fails with it.
    pub(crate) ended: Option<Failure>,
    /// Frames were queued since the client's thread last wrote (auto flush).
    pub(crate) unflushed: bool,
    /// Events a flush's round trip read, for the client's thread to hand out first.
    pub(crate) pending: VecDeque<Event>,
}

impl Shared {
    /// Acked mode: writes acknowledgements whose messages the host now has (written by the
    /// client's thread, even without `auto_flush`). Nothing when the client has closed or
    /// ended (its senders then send again), nor when the write fails (the client's thread
    /// meets that failure on its next read).
    pub(crate) fn release_acks(&self, acks: &[AckOut]) {
        if acks.is_empty() {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let state = &mut *state;
        if state.ended.is_some() {
            return;
        }
        if let Some(link) = state.link.as_mut() {
            if link.release_acks(acks).is_ok() && !state.unflushed {
                state.unflushed = true;
                self.wake.set();
            }
        }
    }
}

impl State {
    /// The link, unless the client was closed or has ended (then why, as a failure).
    fn open_link(&mut self) -> Result<&mut Link, Failure> {
        self.open_parts().map(|(link, _)| link)
    }

    /// The link and the events waiting for the client's thread, unless closed or ended.
    fn open_parts(&mut self) -> Result<(&mut Link, &mut VecDeque<Event>), Failure> {
        if let Some(ended) = &self.ended {
            return Err(Failure::new(ended.status, ended.text.clone()));
        }
        let link = self
            .link
            .as_mut()
            .ok_or_else(|| Failure::new(ringrelay_status::Closed, "the client is closed"))?;
        Ok((link, &mut self.pending))
    }
}

/// The host's userdata pointer, carried to the client's thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: the library never dereferences it; the header tells the host that callbacks run on
// the client's thread, so the host gives a pointer it may use there.
unsafe impl Send for UserData {}
// SAFETY: as for Send: the library only passes the pointer back to the host.
unsafe impl Sync for UserData {}

#[derive(Debug)]
pub(crate) enum Mode {
    Callback {
        on_event: unsafe extern "C" fn(*mut c_void, *mut ringrelay_client, *const ringrelay_event),
        userdata: UserData,
    },
    Queue(EventQueue),
}

impl ringrelay_client {
    /// The client behind a handle from C.
    ///
    /// # Safety
    /// Unless NULL, `client` is a live handle from `ringrelay_client_connect`.
    unsafe fn from_c<'a>(client: *const ringrelay_client) -> Result<&'a ringrelay_client, Failure> {
        // SAFETY: the caller's promise.
        unsafe { client.as_ref() }.ok_or_else(|| Failure::invalid("client is NULL"))
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, Failure> {
        self.shared.state.lock().map_err(|_| {
            Failure::new(
                ringrelay_status::Panic,
                "the client is unusable after a panic inside it",
            )
        })
    }

    /// Runs `op` on the open link; with `auto_flush`, asks the client's thread to write.
    fn with_link<T>(&self, op: impl FnOnce(&mut Link) -> Result<T, Failure>) -> Result<T, Failure> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let out = op(state.open_link()?)?;
        if self.shared.auto_flush && !state.unflushed {
            state.unflushed = true;
            self.shared.wake.set();
        }
        Ok(out)
    }

    /// Whether the caller is the client's own thread (inside any callback it runs).
    fn on_own_thread(&self) -> bool {
        self.shared.driver_thread.get() == Some(&std::thread::current().id())
    }

    /// Fails with IN_CALLBACK on the client's own thread (inside any callback it runs).
    fn refuse_on_own_thread(&self, call: &str) -> Result<(), Failure> {
        if self.on_own_thread() {
            return Err(Failure::new(
                ringrelay_status::InCallback,
                format!("{call} is not allowed inside a callback of the same object"),
            ));
        }
        Ok(())
    }

    /// Acked mode, off the client's thread: writes what is queued and waits up to `timeout`
    /// until no acked message is in flight, without holding the lock while it waits, so the
    /// client's thread goes on reading and handing events out (and so acknowledging them:
    /// two clients flushing to each other both settle).
    fn settle_acked(&self, timeout: Duration) -> Result<(), Failure> {
        let deadline = std::time::Instant::now() + timeout;
        self.shared.flush_waiters.fetch_add(1, Ordering::SeqCst);
        let settled = (|| {
            let mut state = self.lock()?;
            loop {
                let link = state.open_link()?;
                link.flush()?;
                if link.in_flight() == 0 {
                    return Ok(true);
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                self.shared.wake.set();
                state = match self.shared.progress.wait_timeout(state, left) {
                    Ok((state, _)) => state,
                    Err(_) => return Err(Failure::new(ringrelay_status::Panic, "poisoned")),
                };
            }
        })();
        self.shared.flush_waiters.fetch_sub(1, Ordering::SeqCst);
        match settled? {
            true => Ok(()),
            false => Err(Failure::new(
                ringrelay_status::Timeout,
                format!("not settled within {} ms", timeout.as_millis()),
            )),
        }
    }

    /// Stops the client's thread, then closes the session (CLOSE NORMAL to the relay).
    fn close(&self) -> Result<(), Failure> {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.cancel.cancel();
        self.shared.wake.set();
        if let Mode::Queue(queue) = &self.shared.mode {
            queue.wake_waiters();
        }
        // Held through the join: a second close waits here until no callback can run.
        if let Ok(mut driver) = self.driver.lock() {
            if let Some(driver) = driver.take() {
                let _ = driver.join();
            }
        }
        // Acked messages still queued (or dropped) were never seen: not acknowledged.
        let all_handed_out = !self.shared.events_lost.load(Ordering::Acquire)
            && match &self.shared.mode {
                Mode::Callback { .. } => true,
                Mode::Queue(queue) => queue.all_handed_out(),
            };
        let mut state = self.lock()?;
        let link = state.link.take();
        state
            .ended
            .get_or_insert_with(|| Failure::new(ringrelay_status::Closed, "the client is closed"));
        drop(state);
        match link {
            Some(link) => link.close(all_handed_out).map_err(Failure::from),
            None => Ok(()),
        }
    }
}

fn session_options(
    servers: &str,
    token: &[u8],
    opts: &ringrelay_client_options,
) -> Result<SessionOptions, Failure> {
    let servers: Vec<String> = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if servers.is_empty() {
        return Err(Failure::invalid("the server list is empty"));
    }
    Ok(SessionOptions {
        servers,
        token: (!token.is_empty()).then(|| token.to_vec()),
        reconnect_timeout: opts.reconnect_timeout(),
        client: ClientOptions {
            connect_timeout: opts.connect_timeout(),
            ..ClientOptions::default()
        },
        cancel: Some(CancelFlag::default()),
        ..SessionOptions::default()
    })
}

fn mode(opts: &ringrelay_client_options) -> Result<Mode, Failure> {
    Ok(match opts.on_event {
        Some(on_event) => Mode::Callback {
            on_event,
            userdata: UserData(opts.userdata),
        },
        None => Mode::Queue(EventQueue::new(
            opts.queue_events_max as usize,
            usize::try_from(opts.queue_bytes_max).unwrap_or(usize::MAX),
            new_wake_fd()?,
        )),
    })
}

fn new_wake_fd() -> Result<WakeFd, Failure> {
    WakeFd::new().map_err(|e| Failure::new(ringrelay_status::Resource, format!("eventfd: {e}")))
}

/// The arguments every way of making a client shares: a non-empty id, a token (maybe empty),
/// the options, and an output pointer that is not NULL.
///
/// # Safety
/// `id` and `token` point to their lengths in readable bytes (or NULL with 0); `opts` is NULL
/// or a filled options struct.
pub(crate) unsafe fn identity_args<'a>(
    (id, id_len): (*const u8, usize),
    (token, token_len): (*const u8, usize),
    opts: *const ringrelay_client_options,
    out: *mut *mut ringrelay_client,
) -> Result<(&'a [u8], &'a [u8], ringrelay_client_options), Failure> {
    // SAFETY: the caller's promises.
    let (id, token, opts) = unsafe {
        (
            bytes_arg(id, id_len, "id")?,
            bytes_arg(token, token_len, "token")?,
            ringrelay_client_options::read(opts)?,
        )
    };
    if out.is_null() {
        return Err(Failure::invalid("out is NULL"));
    }
    if id.is_empty() {
        return Err(Failure::invalid("the client id is empty"));
    }
    Ok((id, token, opts))
}

/// Starts the client's thread over a connected `session`; the client is ready to hand out.
pub(crate) fn start(
    link: Link,
    cancel: CancelFlag,
    opts: &ringrelay_client_options,
) -> Result<*mut ringrelay_client, Failure> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            link: Some(link),
            ended: None,
            unflushed: false,
            pending: VecDeque::new(),
        }),
        wake: new_wake_fd()?,
        mode: mode(opts)?,
        stopping: AtomicBool::new(false),
        events_lost: AtomicBool::new(false),
        flush_waiters: AtomicUsize::new(0),
        progress: Condvar::new(),
        cancel,
        auto_flush: opts.auto_flush,
        driver_thread: std::sync::OnceLock::new(),
    });
    // From here on the client lives behind this raw pointer (as C will hold it), never behind
    // a Box, until `ringrelay_client_free` has stopped the thread that also uses it.
    let handle = Box::into_raw(Box::new(ringrelay_client {
        shared: Arc::clone(&shared),
        driver: Mutex::new(None),
    }));
    let addr = HandleAddr(handle as usize);
    let spawned = std::thread::Builder::new()
        .name("ringrelay-client".into())
        .spawn(move || driver::run(shared, addr));
    let driver = match spawned {
        Ok(driver) => driver,
        Err(e) => {
            // SAFETY: `handle` came from Box::into_raw above and no thread has its address.
            drop(unsafe { Box::from_raw(handle) });
            return Err(Failure::new(
                ringrelay_status::Resource,
                format!("cannot start a thread: {e}"),
            ));
        }
    };
    let _ = shared_of(handle).driver_thread.set(driver.thread().id());
    // SAFETY: `handle` is live (made above, freed only by `ringrelay_client_free`); a shared
    // reference is all the driver thread uses too.
    if let Ok(mut slot) = unsafe { &*handle }.driver.lock() {
        *slot = Some(driver);
    }
    Ok(handle)
}

/// The shared state of a live handle.
fn shared_of<'a>(handle: *mut ringrelay_client) -> &'a Shared {
    // SAFETY: only called with a handle `start` just made, which nothing frees meanwhile.
    unsafe { &(*handle).shared }
}

/// Connects to the first relay of `servers` that answers and registers `id` there, then starts
/// the client's thread. `*out` receives the client on success (and is left alone on failure).
///
/// - `servers`: NUL-terminated, comma-separated `HOST:PORT` list, tried in turn (and again
///   after a lost connection, starting after the one lost).
/// - `id`, `id_len`: the client id, 1 to 255 bytes (any bytes).
/// - `token`, `token_len`: the relay's token, or NULL and 0 for none.
/// - `opts`: NULL for the defaults, or options filled by `ringrelay_client_options_init`.
///   With a CA set (`ringrelay_client_options_set_tls_ca_file` or `..._pem`), every
///   connection is TLS 1.3 to the relays' `tls_listen`, checked against that CA and
///   `tls_server_name`; without, plain TCP.
///
/// TLS: `RINGRELAY_STATUS_CONFIG` when a `tls_*` setting is refused (a file that cannot be
/// read or holds no certificate or key, a key that is not the certificate's, a certificate
/// without its key or TLS settings without a CA), before anything is dialed;
/// `RINGRELAY_STATUS_TLS` when a relay's handshake fails (its certificate is not from the CA
/// or does not name the server, or it refused the client's): that is not retried on the
/// other relays of the list. `ringrelay_last_error` says which and why.
///
/// Blocks until registered or until `reconnect_timeout_ms` passes. Callable from any thread,
/// but not inside a callback of a node this library runs.
///
/// # Safety
/// Pointers as documented: `servers` a NUL-terminated string, `id` `id_len` readable bytes,
/// `token` `token_len` readable bytes or NULL with 0, `opts` NULL or a filled options struct,
/// `out` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_connect(
    servers: *const c_char,
    id: *const u8,
    id_len: usize,
    token: *const u8,
    token_len: usize,
    opts: *const ringrelay_client_options,
    out: *mut *mut ringrelay_client,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises for each argument.
        let servers = unsafe { str_arg(servers, "servers")? };
        // SAFETY: as above.
        let (id, token, opts) =
            unsafe { identity_args((id, id_len), (token, token_len), opts, out)? };
        let mut session_opts = session_options(servers, token, &opts)?;
        // SAFETY: the caller's promise about `opts`, whose `tls_*` fields are part of it.
        session_opts.client.tls = unsafe { tls::client_tls(&opts, &session_opts.servers)? };
        let cancel = session_opts.cancel.clone().unwrap_or_default();
        let link = if opts.acked {
            Link::acked(AckedSession::connect(id, opts.acked_session(session_opts))?)
        } else {
            Link::Plain(Box::new(Session::connect(id, session_opts)?))
        };
        let client = start(link, cancel, &opts)?;
        // SAFETY: the caller's promise about `out` (checked not NULL).
        unsafe { write_out(out, client, "out") }
    })
}

impl Drop for ringrelay_client {
    /// Whatever path frees a client stops its thread first, so no callback ever sees a freed
    /// handle.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Closes the client: stops its thread (no callback runs after this returns, even for a
/// concurrent close), sends CLOSE to the relay, and waits up to 250 ms for the relay to close
/// its side. Stopping the thread waits for a callback that is running, and, during a
/// reconnection, for the connection attempt under way (up to `connect_timeout_ms`). The handle
/// stays valid until `ringrelay_client_free`; requests on it then fail with
/// `RINGRELAY_STATUS_CLOSED`, while events already in the queue can still be drained. Events
/// the client's thread had read but not yet queued are dropped. In acked mode, acked messages
/// handed out are acknowledged before the CLOSE; if any acked message is still queued (or was
/// dropped), none of the unacknowledged ones are: their senders send them again to this id's
/// next connection. Closing twice is not an error.
///
/// Not allowed inside this client's callbacks, nor anywhere on its thread (returns
/// `RINGRELAY_STATUS_IN_CALLBACK`: that thread is the one being stopped).
///
/// # Safety
/// Unless NULL, `client` is a live client.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_close(client: *mut ringrelay_client) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { ringrelay_client::from_c(client)? };
        refuse_in_callback_of(client as *const c_void, "ringrelay_client_close")?;
        c.refuse_on_own_thread("ringrelay_client_close")?;
        c.close()
    })
}

/// Closes the client as `ringrelay_client_close` does (if not closed yet) and frees it. NULL is
/// ignored. The handle must not be used again, by any thread.
///
/// Not allowed inside this client's callbacks: returns `RINGRELAY_STATUS_IN_CALLBACK` and
/// frees nothing (free it from another place once the callback has returned).
///
/// # Safety
/// Unless NULL, `client` is a live client that no other thread is using or will use.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_free(client: *mut ringrelay_client) -> ringrelay_status {
    guard(|| {
        if client.is_null() {
            return Ok(());
        }
        refuse_in_callback_of(client as *const c_void, "ringrelay_client_free")?;
        // SAFETY: the caller's promise: a live client no other thread uses now.
        let c = unsafe { ringrelay_client::from_c(client)? };
        c.refuse_on_own_thread("ringrelay_client_free")?;
        // Stops the thread first: afterwards nothing but this call holds the handle.
        let closed = c.close();
        // SAFETY: a live client is a Box from `start`, freed once (the caller's promise), and
        // its thread has stopped, so no reference to it remains.
        drop(unsafe { Box::from_raw(client) });
        closed
    })
}

/// The descriptor a host event loop (epoll, libuv, asio, an io_uring read) watches in queue
/// mode: readable while events wait for `ringrelay_client_drain`. Owned by the client (do not
/// close it, read it or write it); valid until `ringrelay_client_free`. -1 in callback mode or
/// for NULL.
///
/// # Safety
/// Unless NULL, `client` is a live client.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_fd(client: *const ringrelay_client) -> i32 {
    crate::boundary::guard_value(-1, || {
        // SAFETY: the caller's promise.
        match unsafe { ringrelay_client::from_c(client) } {
            Ok(c) => match &c.shared.mode {
                Mode::Queue(queue) => queue.fd.raw(),
                Mode::Callback { .. } => -1,
            },
            Err(_) => -1,
        }
    })
}

/// Queue mode: calls `on_event(userdata, client, event)` on this thread for up to `max` waiting
/// events, in order, and writes how many to `*drained` (when not NULL). Returns at once when
/// none wait (it never waits). In acked mode, the acked messages drained are acknowledged
/// once `on_event` has returned for them. Each event is borrowed until `on_event` returns
/// (`ringrelay_event_retain` keeps one longer). Inside `on_event`, sending on the client
/// works; draining, closing or freeing it returns `RINGRELAY_STATUS_IN_CALLBACK`.
///
/// `RINGRELAY_STATUS_BAD_STATE` in callback mode. After the client ends, the events before its
/// end (the last a CLOSED event) can still be drained.
///
/// # Safety
/// Unless NULL, `client` is a live client; `on_event` is a valid function; `drained` is NULL or
/// a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_drain(
    client: *mut ringrelay_client,
    on_event: ringrelay_event_callback,
    userdata: *mut c_void,
    max: usize,
    drained: *mut usize,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { ringrelay_client::from_c(client)? };
        let on_event = on_event.ok_or_else(|| Failure::invalid("on_event is NULL"))?;
        let Mode::Queue(queue) = &c.shared.mode else {
            return Err(Failure::new(
                ringrelay_status::BadState,
                "the client has an event callback: there is no queue to drain",
            ));
        };
        refuse_in_callback_of(client as *const c_void, "ringrelay_client_drain")?;
        let mut items: VecDeque<Item> = VecDeque::new();
        queue.take(max, &mut items);
        let mut count = 0;
        in_callback_of(client as *const c_void, || {
            for item in &items {
                let Some(view) = ringrelay_event::view(item, &[]) else {
                    continue;
                };
                count += 1;
                // SAFETY: the host's callback, called as documented: its userdata, the live
                // client, an event valid for the call.
                unsafe { on_event(userdata, client, &view) };
            }
        });
        let mut handed_out = Vec::new();
        for item in items {
            if let Item::Acks(acks) = item {
                handed_out.extend(acks);
            }
        }
        queue.finish_drain(&mut handed_out);
        c.shared.release_acks(&handed_out);
        if !drained.is_null() {
            // SAFETY: not NULL, and the caller promises a writable `size_t`.
            unsafe { drained.write(count) };
        }
        Ok(())
    })
}

/// Writes every queued message to the relay. With `timeout_ms` > 0 it also waits, up to that
/// long: in plain mode until the relay has handled them (a PING/PONG round trip, after which
/// an ERROR about any of them has arrived and is handed out as an event); in acked mode until
/// every acked message sent so far has ended (its CONFIRMED or FAILED events follow; the
/// client's thread goes on handing events out meanwhile). `RINGRELAY_STATUS_TIMEOUT` when that
/// did not happen in time. Allowed inside callbacks, but there events read meanwhile are handed
/// out only after the callback returns (in acked mode, acked messages to this client that come
/// meanwhile are acknowledged only then, so a peer flushing towards it waits as long).
///
/// # Safety
/// Unless NULL, `client` is a live client.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_flush(
    client: *mut ringrelay_client,
    timeout_ms: u32,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { ringrelay_client::from_c(client)? };
        let mut guard = c.lock()?;
        let state = &mut *guard;
        state.unflushed = false;
        let (link, pending) = state.open_parts()?;
        if timeout_ms == 0 {
            return link.flush().map_err(Failure::from);
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        if link.is_acked() && !c.on_own_thread() {
            drop(guard);
            return c.settle_acked(timeout);
        }
        let settled = link.settle(timeout, pending)?;
        // Events the wait read (or left in the acked session) are handed out by the thread.
        c.shared.wake.set();
        if !settled {
            return Err(Failure::new(
                ringrelay_status::Timeout,
                format!("not settled within {timeout_ms} ms"),
            ));
        }
        Ok(())
    })
}

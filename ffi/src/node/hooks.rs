//! The host's hooks of an embedded node (authorize, presence, log): C functions with their
//! userdata, shared by the config and every node started from it, and the Rust closures that
//! call them on the node's threads (marked as hooks, so library calls from inside are refused).

use crate::boundary::in_node_hook;
use ringrelay::core::Authorizer;
use ringrelay::server::ServerOptions;
use std::ffi::{c_char, c_void, CString};
use std::fmt::Write as _;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Decides whether a client may register: `id`, its `token` (empty when none), and `peer`
/// (`"IP:PORT"`, or `"local"`), NUL-terminated. Returns true to allow.
#[allow(non_camel_case_types)]
pub type ringrelay_authorize_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        id: *const u8,
        id_len: usize,
        token: *const u8,
        token_len: usize,
        peer: *const c_char,
    ) -> bool,
>;

/// Told that client `id` registered on the node (`online` true) or its registration ended.
#[allow(non_camel_case_types)]
pub type ringrelay_presence_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, id: *const u8, id_len: usize, online: bool)>;

/// Gets one log line of the node: `level` 1 error, 2 warn, 3 info, 4 debug, 5 trace.
#[allow(non_camel_case_types)]
pub type ringrelay_log_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: u32, message: *const c_char)>;

/// A C function, its userdata, and what frees the userdata once nothing uses the hook.
#[derive(Debug)]
pub(crate) struct HookInner<F> {
    f: F,
    userdata: *mut c_void,
    drop: Option<unsafe extern "C" fn(*mut c_void)>,
}

// SAFETY: the library never dereferences `userdata`; the header tells the host that hooks run
// on the node's threads, so the host gives a userdata and functions usable from any thread.
unsafe impl<F: Send> Send for HookInner<F> {}
// SAFETY: as for Send: shared use only passes the pointer back to the host's functions.
unsafe impl<F: Sync> Sync for HookInner<F> {}

impl<F> Drop for HookInner<F> {
    fn drop(&mut self) {
        if let Some(drop) = self.drop {
            // SAFETY: the host's destructor for its own userdata, called once, when the last
            // config or node holding the hook lets it go.
            unsafe { drop(self.userdata) };
        }
    }
}

/// A hook shared by a config and the nodes started from it.
pub(crate) type Hook<F> = Arc<HookInner<F>>;

pub(crate) fn new_hook<F>(
    f: F,
    userdata: *mut c_void,
    drop: Option<unsafe extern "C" fn(*mut c_void)>,
) -> Hook<F> {
    Arc::new(HookInner { f, userdata, drop })
}

type AuthorizeRaw =
    unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *const c_char) -> bool;
type PresenceRaw = unsafe extern "C" fn(*mut c_void, *const u8, usize, bool);
type LogRaw = unsafe extern "C" fn(*mut c_void, u32, *const c_char);

#[derive(Clone, Debug, Default)]
pub(crate) struct Hooks {
    pub(crate) authorize: Option<Hook<AuthorizeRaw>>,
    pub(crate) presence: Option<Hook<PresenceRaw>>,
    /// The hook and the most verbose level it wants (1 error .. 5 trace).
    pub(crate) log: Option<(Hook<LogRaw>, u32)>,
}

impl Hooks {
    /// The server options of a node with these hooks (never pinned unless `cpus` is set).
    pub(crate) fn server_options(&self) -> ServerOptions {
        ServerOptions {
            pin_workers_by_default: false,
            authorize: self.authorize.clone().map(authorizer),
            presence: self.presence.clone().map(|hook| {
                let f: Arc<ringrelay::server::PresenceFn> = Arc::new(move |id: &[u8], online| {
                    // SAFETY: the host's presence hook, called as documented, with `id`
                    // valid for the call.
                    in_node_hook(|| unsafe {
                        (hook.f)(hook.userdata, id.as_ptr(), id.len(), online)
                    })
                });
                f
            }),
            log: self.log.clone().map(|(hook, max_level)| {
                tracing::Dispatch::new(HookLogger {
                    hook,
                    max: level_of(max_level),
                })
            }),
        }
    }
}

fn authorizer(hook: Hook<AuthorizeRaw>) -> Authorizer {
    Authorizer(Arc::new(move |id: &[u8], token: &[u8], peer| {
        let peer = peer.map_or_else(|| "local".to_string(), |p| p.to_string());
        // An address has no NUL: the conversion cannot fail; refuse if it somehow did.
        let Ok(peer) = CString::new(peer) else {
            return false;
        };
        // SAFETY: the host's authorize hook, called as documented, every pointer valid for
        // the call.
        in_node_hook(|| unsafe {
            (hook.f)(
                hook.userdata,
                id.as_ptr(),
                id.len(),
                token.as_ptr(),
                token.len(),
                peer.as_ptr(),
            )
        })
    }))
}

fn level_of(n: u32) -> Level {
    match n {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

fn number_of(level: &Level) -> u32 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// A `tracing` subscriber that hands each event, formatted as one line, to the host's log hook.
/// Installed per thread (the node's workers, the starting thread), never globally.
struct HookLogger {
    hook: Hook<LogRaw>,
    max: Level,
}

/// Formats an event's fields: the message, then ` key=value` for the others.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{rest}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl Subscriber for HookLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        let text = CString::new(line.0.replace('\0', " ")).unwrap_or_default();
        let level = number_of(event.metadata().level());
        // SAFETY: the host's log hook, called as documented, `text` valid for the call.
        in_node_hook(|| unsafe { (self.hook.f)(self.hook.userdata, level, text.as_ptr()) });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

//! NATS connections in the relay (sans-IO): the per-connection state of a client that speaks
//! the NATS protocol ([`NatsConn`]: its CONNECT options and its sids), the rules that turn
//! its operations into the engine's (`rules.rs`: CONNECT becomes a HELLO with a generated id,
//! SUB and UNSUB the engine's SUBSCRIBE and UNSUBSCRIBE per distinct subject and queue group,
//! PUB a PUBLISH), and the translation of what the engine sends back into NATS lines
//! (`translate.rs`: a DELIVER becomes one MSG per matching sid; WELCOME, PRESENCE and the
//! like have no NATS form; ERROR and CLOSE become nats-server's `-ERR` texts).
//!
//! A NATS connection is an engine connection like any other: the same session (handshake
//! deadline, heartbeat), the same tables, limits and slow-consumer bound. What differs is
//! the codec at both ends, which is why the state here sits beside [`super::ConnRelay`].

mod nkey;
mod rules;
mod subs;
mod translate;

pub use rules::{NatsCall, NatsOutput};
pub use subs::{Inserted, NatsSub, NatsSubs};
pub use translate::close_err_text;

use crate::protocol::nats::{ConnectOptions, NatsReader};

/// Prefix of the client ids generated for NATS connections (`nats.<node>.<worker>.<slot>.
/// <generation>`): unique on the node while the connection lives, so two NATS clients never
/// replace each other, whatever names they give.
pub const NATS_ID_PREFIX: &[u8] = b"nats.";

/// The subjects under which a NATS client reaches a client by id: a publish to
/// `_RR.ID.<id>` is a SEND to `<id>` (a native client's, or a NATS connection's generated
/// id), with its reply subject and headers. A NATS connection receives the SENDs to its own
/// id on `_RR.ID.<its id>`, if one of its subscriptions matches that subject.
pub const DIRECT_SUBJECT_PREFIX: &[u8] = b"_RR.ID.";

/// One NATS connection's protocol state.
#[derive(Debug, Default)]
pub struct NatsConn {
    /// The options of its CONNECT; `None` until one was applied (an operation before it
    /// applies nats-server's defaults, or is refused when a token is required).
    pub options: Option<ConnectOptions>,
    pub subs: NatsSubs,
    /// Reassembly of operations that straddle receives.
    pub reader: NatsReader,
    /// Sids that reached their `UNSUB` maximum while messages were written; the worker
    /// removes them through [`crate::core::Engine::expire_nats_sids`] after the batch.
    pub expired: Vec<Box<[u8]>>,
    /// The nonce its INFO carried, for CONNECT's `nkey` and `sig` (taken by the first
    /// CONNECT); `None`: the INFO carried none.
    pub nonce: Option<Box<str>>,
}

impl NatsConn {
    /// Whether the connection's own publishes reach its own subscriptions.
    pub fn echo(&self) -> bool {
        !matches!(&self.options, Some(o) if !o.echo)
    }

    pub fn verbose(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.verbose)
    }

    /// Whether a request that reaches no subscriber is answered with the 503 status message
    /// (CONNECT `no_responders`, which needs `headers`).
    pub fn no_responders(&self) -> bool {
        self.options
            .as_ref()
            .is_some_and(|o| o.no_responders && o.headers)
    }
}

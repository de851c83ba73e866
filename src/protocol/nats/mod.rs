//! The NATS client protocol (sans-IO): the text protocol that every NATS client library
//! speaks, so that those clients reach the relay unchanged.
//!
//! [`parse`] cuts one client operation (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG, and the
//! INFO, +OK and -ERR a client may echo) out of the front of a byte buffer, borrowing every
//! field from it: no allocation and no panic on any input, every malformed shape a typed
//! [`NatsError`] that names the `-ERR` text nats-server answers with. [`encode`] writes what
//! the relay sends: INFO, MSG and HMSG headers, +OK, -ERR, PING, PONG. [`NatsReader`] feeds a
//! stream received in arbitrary chunks through [`parse`], copying only an operation that
//! straddles two receives. [`connect`] reads the
//! CONNECT options (JSON, once per connection, so it may allocate) and [`subject`] checks
//! subjects as nats-server does.

pub mod connect;
pub mod encode;
mod parse;
mod reader;
pub mod subject;

pub use connect::{ConnectError, ConnectOptions};
pub use parse::{parse, ClientOp, NatsError, Parsed};
pub use reader::{Fed, NatsReader};

/// The longest control line (an operation and its arguments, without the CRLF) accepted, in
/// bytes: nats-server's `max_control_line` default, which every client library stays under.
pub const CONTROL_LINE_BYTES_MAX: usize = 4096;

/// The protocol level announced in INFO: 1 (the level that has headers and no_responders).
pub const PROTO_LEVEL: u8 = 1;

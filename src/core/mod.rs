//! The sans-IO core: session state machine, shared tables and routing decisions. No sockets,
//! clocks or threads here; the I/O layer ([`crate::server`]) drives it.

#![forbid(unsafe_code)]

pub mod credentials;
pub mod drop_reports;
pub mod engine;
pub mod epoch;
pub mod error_ledger;
pub mod flow;
pub mod interest;
pub mod location;
pub mod pattern_trie;
pub mod presence;
pub mod router;
pub mod send_memo;
pub mod session;
pub mod steer;
pub mod subject;
mod table_hasher;
pub mod topics;

pub use engine::{ClusterEvent, ConnRelay, Counter, Engine, EngineConfig, Output};
pub use epoch::EpochClock;
pub use interest::InterestTable;
pub use location::{Location, LocationTable, Registered, Row};
pub use router::{AckSink, AckedDelivery, Guards, Origin, SendOutcome, Sink, Tables};
pub use send_memo::SendMemo;
pub use session::{
    AuthorizeFn, Authorizer, Phase, Session, SessionConfig, SessionEvent, TickAction,
};

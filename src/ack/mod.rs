//! sans-IO: acknowledged delivery, end to end between two clients. A message C1 sends to C2
//! is either delivered to C2's application exactly once or reported failed to C1's, across
//! reconnections and relay deaths; the relay holds no per-message state, so a relay node can
//! die without losing anything the two clients still hold.
//!
//! - [`AckSender`] (in the sending client): numbers each message per target with the
//!   session's random epoch, keeps it in a bounded window until acknowledged, sends it again
//!   on reconnection, on the target coming online, on a gap the receiver reports, or on its
//!   timer, and ends it as [`AckEvent::Confirmed`] or [`AckEvent::Failed`].
//! - [`AckReceiver`] (in the receiving client): de-duplicates by (sender, epoch, seq) with a
//!   [`SeqWindow`] per sender, and produces the coalesced acknowledgements.
//!
//! Both take events and `now_us` (microseconds on any monotonic clock; settings are in
//! milliseconds) and give out what to
//! transmit and what happened; the client library moves the bytes. Nothing here reads a
//! clock, a socket or a random source.

#![forbid(unsafe_code)]

mod receiver;
mod rtt;
mod sender;
mod seq_window;

pub use receiver::{AckOut, AckReceiver, ReceiverConfig, ReceiverStats, Verdict};
pub use rtt::{RttEstimator, RTT_BUCKETS};
pub use sender::{
    error_name, AckEvent, AckSender, FailReason, Numbered, SendRefused, SenderConfig, SenderStats,
    Transmit, Trigger, KEPT_MSG_OVERHEAD_BYTES,
};
pub use seq_window::{Accept, SeqWindow, WINDOW_SEQS};

#[cfg(test)]
mod tests;

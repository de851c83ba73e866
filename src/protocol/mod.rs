//! Wire protocol: frame types, the byte codec, the shared stream reassembler and an
//! accumulating frame reader.
//!
//! Everything here is sans-IO: it takes bytes in and gives frames out (and the reverse), and
//! never touches sockets, clocks, threads or server state. The decoder never panics on any
//! input; every malformed shape is a typed [`DecodeError`]. The layout is specified in
//! PROTOCOL.md; the constants below are the source of truth.
//!
//! [`StreamDecoder`] cuts whole frames (`header + body`) out of a byte stream received in
//! arbitrary chunks, zero-copy for frames inside one chunk, bounded by `max_frame_bytes` from
//! the header. It knows nothing about kinds, so it serves both client connections (then
//! [`decode`]) and cluster links (then `cluster::wire::{decode_link, decode_data}`), which
//! share the 6-byte header.

#![forbid(unsafe_code)]

mod codec;
mod extended;
mod frame;
mod message;
pub mod nats;
pub mod public_key;
mod reader;
mod small_deliver;
mod stream;
mod walk;

pub use codec::{
    decode, deliver_header_len, deliver_header_topic, deliver_sender_and_topic, encode_deliver,
    encode_deliver_acked, encode_deliver_acked_header, encode_deliver_header, encode_send_acked,
    frame_len_for_deliver, frame_len_for_deliver_acked, frame_len_for_send_acked, hello,
    plain_publish, plain_send, Decoded,
};
pub use extended::{
    encode_publish_extended, encode_send_extended, publish_extended_len, send_extended_len,
    Extended, ExtendedFields,
};
pub use frame::{
    AckFields, AckRuns, CloseReason, DecodeError, EncodeError, ErrorCode, Frame, FrameKind, MsgId,
};
pub use message::Message;
pub use reader::FrameReader;
pub use stream::{FrameTooLarge, StreamDecoder, PARTIAL_RETAIN_MAX};
pub use walk::FrameWalk;

/// The newest protocol version this build speaks, and the one its client sends in HELLO.
/// Version 2 adds acknowledged delivery (PROTOCOL.md section 12), version 3 reply topics and
/// headers (section 13), version 4 public-key credentials (CHALLENGE, PROOF; section 14).
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest version the relay still accepts: HELLO with a version from this to
/// [`PROTOCOL_VERSION`] is answered with WELCOME of the same version, any other is refused with
/// [`CloseReason::UNSUPPORTED_VERSION`]. Version 1 is version 2 without acknowledged delivery.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// The first version with acknowledged delivery (ACKED flag, ACK, RECEIPT).
pub const ACKED_VERSION_MIN: u16 = 2;

/// The first version whose DELIVER may carry a reply topic and headers (flags REPLY,
/// HEADERS). An older connection receives such a message without them.
pub const EXTENDED_VERSION_MIN: u16 = 3;

/// The first version that answers a public-key entry's HELLO with CHALLENGE (section 14).
pub const KEY_PROOF_VERSION_MIN: u16 = 4;

/// Bytes in every frame header: `body_len: u32 LE`, `kind: u8`, `flags: u8`.
pub const HEADER_LEN: usize = 6;

/// Default bound on one whole frame (header included): 1 MiB. Large enough for bulk payloads,
/// small enough that one connection cannot make the relay buffer unbounded amounts before the
/// frame is complete. Configurable (`max_frame_bytes`).
pub const MAX_FRAME_BYTES_DEFAULT: usize = 1 << 20;

/// Client ids are 1 to 255 bytes (one length byte on the wire).
pub const CLIENT_ID_LEN_MAX: usize = 255;
/// Topic and queue-group names are 1 to 255 bytes (group may be empty: no group).
pub const TOPIC_LEN_MAX: usize = 255;
/// Tokens are at most 1 KiB.
pub const TOKEN_LEN_MAX: usize = 1024;

/// The largest HELLO on the wire: header, version, the longest id and the longest token with
/// their lengths (6 + 2 + 1 + 255 + 2 + 1024 = 1290). Before HELLO is accepted the relay
/// refuses any frame larger than this from its header, so an unauthenticated socket can make
/// it buffer no more than this.
pub const HELLO_FRAME_BYTES_MAX: usize = HEADER_LEN + 2 + 1 + CLIENT_ID_LEN_MAX + 2 + TOKEN_LEN_MAX;

/// Bytes a DELIVER adds around its payload and headers at most: the header, the sender id,
/// the topic and the reply topic with their length bytes, and the headers' length
/// (6 + 1 + 255 + 1 + 255 + 1 + 255 + 4 = 778). The relay delivers payloads (with their
/// headers) of at most `max_frame_bytes - DELIVER_OVERHEAD_MAX` bytes, so every DELIVER fits in
/// the frame size it announced in WELCOME; a longer SEND or PUBLISH is refused (ERROR
/// `PAYLOAD_TOO_LARGE`).
pub const DELIVER_OVERHEAD_MAX: usize =
    HEADER_LEN + 1 + CLIENT_ID_LEN_MAX + 1 + TOPIC_LEN_MAX + 1 + TOPIC_LEN_MAX + 4;

/// The largest payload a relay announcing `max_frame_bytes` delivers.
pub const fn payload_bytes_max(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(DELIVER_OVERHEAD_MAX)
}

/// PUBLISH flag: do not deliver to the publishing connection (broadcast to all but sender).
pub const FLAG_NO_ECHO: u8 = 0x01;
/// SEND, DELIVER, ERROR flag (version 2): the frame carries a [`MsgId`] (`epoch: u64`,
/// `seq: u64`) after its addressing fields: an acknowledged message, or an error about one.
pub const FLAG_ACKED: u8 = 0x01;
/// SEND, PUBLISH, DELIVER flag (version 3): a reply topic (`reply: short+`) follows the
/// addressing fields.
pub const FLAG_REPLY: u8 = 0x02;
/// SEND, PUBLISH, DELIVER flag (version 3): a header block (`headers: u32` length, then 1 or
/// more bytes) follows the addressing fields and the reply topic.
pub const FLAG_HEADERS: u8 = 0x04;
/// ACK, RECEIPT flag: a gap is reported; send the missing messages now.
pub const FLAG_GAP: u8 = 0x01;
/// Runs one ACK or RECEIPT may carry. 16: an acknowledgement covers the few gaps a change of
/// path leaves; the sender sends again whatever lies between the runs.
pub const ACK_RUNS_MAX: usize = 16;

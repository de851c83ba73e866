//! Version 3's forms of SEND, PUBLISH and DELIVER: a message with a reply topic or headers
//! (flags REPLY, HEADERS; PROTOCOL.md section 13). A decoded one is kept as its validated
//! body ([`Extended`]) and its fields are read on demand, so that a [`super::Frame`] value
//! stays as small as before (the message path copies frame values); it is written with the
//! encoders here (a DELIVER with [`super::encode_deliver`]).

use super::codec::{check_short, put_header, put_short, read_extended};
use super::{
    EncodeError, FrameKind, Message, CLIENT_ID_LEN_MAX, FLAG_NO_ECHO, HEADER_LEN, TOPIC_LEN_MAX,
};

/// A decoded version-3 SEND, PUBLISH or DELIVER (see the module documentation). Only the
/// decoder makes one, so its body is always valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extended<'a> {
    kind: FrameKind,
    flags: u8,
    body: &'a [u8],
}

/// The fields of an [`Extended`] frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtendedFields<'a> {
    /// SEND's target; empty for PUBLISH and DELIVER.
    pub target: &'a [u8],
    /// The message: its sender is empty but in DELIVER, its topic empty in SEND (and in a
    /// DELIVER of a direct message).
    pub message: Message<'a>,
    /// PUBLISH's NO_ECHO.
    pub no_echo: bool,
}

impl<'a> Extended<'a> {
    /// For the decoder: `body` was read by [`read_extended`] without error.
    pub(super) fn validated(kind: FrameKind, flags: u8, body: &'a [u8]) -> Extended<'a> {
        Extended { kind, flags, body }
    }

    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The header's flags (REPLY, HEADERS, and NO_ECHO for PUBLISH).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The frame's body as it was on the wire.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Its fields, read from the body.
    #[inline]
    pub fn fields(&self) -> ExtendedFields<'a> {
        match read_extended(self.kind, self.flags, self.body) {
            Ok(fields) => fields,
            Err(_) => {
                debug_assert!(false, "an Extended body was validated when decoded");
                ExtendedFields::default()
            }
        }
    }
}

/// Whole size on the wire of version 3's SEND of `message` (its sender and topic unused).
pub fn send_extended_len(target: &[u8], message: &Message<'_>) -> usize {
    HEADER_LEN + 1 + target.len() + message.extension_len() + message.payload.len()
}

/// Appends version 3's SEND of `message` to `target` (its sender and topic unused). The
/// fields are checked first; on error nothing is appended.
pub fn encode_send_extended(
    out: &mut Vec<u8>,
    target: &[u8],
    message: &Message<'_>,
) -> Result<(), EncodeError> {
    check_short("target", target, CLIENT_ID_LEN_MAX, true)?;
    check_extensions(message)?;
    let len = send_extended_len(target, message);
    out.reserve(len);
    put_header(
        out,
        len - HEADER_LEN,
        FrameKind::Send,
        message.extension_flags(),
    );
    put_short(out, target);
    message.put_extensions(out);
    out.extend_from_slice(message.payload);
    Ok(())
}

/// Whole size on the wire of version 3's PUBLISH of `message` (its sender unused).
pub fn publish_extended_len(message: &Message<'_>) -> usize {
    HEADER_LEN + 1 + message.topic.len() + message.extension_len() + message.payload.len()
}

/// Appends version 3's PUBLISH of `message` (its sender unused); as
/// [`encode_send_extended`].
pub fn encode_publish_extended(
    out: &mut Vec<u8>,
    message: &Message<'_>,
    no_echo: bool,
) -> Result<(), EncodeError> {
    check_short("topic", message.topic, TOPIC_LEN_MAX, true)?;
    check_extensions(message)?;
    let len = publish_extended_len(message);
    out.reserve(len);
    let no_echo = if no_echo { FLAG_NO_ECHO } else { 0 };
    let flags = message.extension_flags() | no_echo;
    put_header(out, len - HEADER_LEN, FrameKind::Publish, flags);
    put_short(out, message.topic);
    message.put_extensions(out);
    out.extend_from_slice(message.payload);
    Ok(())
}

/// A reply topic of at most 255 bytes, headers that fit their `u32` length, and at least one
/// of the two (without either, the plain form is the one to send).
fn check_extensions(message: &Message<'_>) -> Result<(), EncodeError> {
    check_short("reply", message.reply, TOPIC_LEN_MAX, false)?;
    check_short("headers", message.headers, u32::MAX as usize, false)?;
    if !message.is_extended() {
        return Err(EncodeError::FieldEmpty {
            field: "reply or headers",
        });
    }
    Ok(())
}

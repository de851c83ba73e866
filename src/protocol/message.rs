//! One message as the relay routes it: what a SEND or PUBLISH carries to its receivers, and
//! what a DELIVER gives them.

/// A message on its way: borrowed from the frame it arrived in, handed to the router, and
/// written by each destination in its own protocol (a native DELIVER, a NATS MSG or HMSG, a
/// link's FWD_SEND or FWD_PUBLISH).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message<'a> {
    /// The sender's client id, stamped by the relay (1 to 255 bytes).
    pub sender: &'a [u8],
    /// The topic it was published to; empty for a direct SEND.
    pub topic: &'a [u8],
    /// Protocol version 3 (flag REPLY): the topic answers go to; empty: none.
    pub reply: &'a [u8],
    /// Protocol version 3 (flag HEADERS): a header block the relay carries without reading
    /// it (a NATS client's `NATS/1.0` headers); empty: none.
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// A message with neither reply topic nor headers.
    #[inline]
    pub fn plain(sender: &'a [u8], topic: &'a [u8], payload: &'a [u8]) -> Message<'a> {
        Message {
            sender,
            topic,
            reply: b"",
            headers: b"",
            payload,
        }
    }

    /// Whether it carries a reply topic or headers, which only a version-3 DELIVER can say.
    #[inline]
    pub fn is_extended(&self) -> bool {
        !self.reply.is_empty() || !self.headers.is_empty()
    }

    /// The same message without reply topic and headers: what a connection of protocol
    /// version 1 or 2 receives.
    #[inline]
    pub fn without_extensions(&self) -> Message<'a> {
        Message::plain(self.sender, self.topic, self.payload)
    }

    /// Bytes counted against `payload_bytes_max`: the payload and the headers.
    #[inline]
    pub fn carried_bytes(&self) -> usize {
        self.headers.len() + self.payload.len()
    }

    /// The flags that announce its extensions (REPLY, HEADERS).
    #[inline]
    pub fn extension_flags(&self) -> u8 {
        let reply = if self.reply.is_empty() {
            0
        } else {
            super::FLAG_REPLY
        };
        let headers = if self.headers.is_empty() {
            0
        } else {
            super::FLAG_HEADERS
        };
        reply | headers
    }

    /// Bytes the extension fields take on the wire: `reply: short`, `headers: u32 len + bytes`,
    /// each only when present.
    #[inline]
    pub fn extension_len(&self) -> usize {
        let reply = if self.reply.is_empty() {
            0
        } else {
            1 + self.reply.len()
        };
        let headers = if self.headers.is_empty() {
            0
        } else {
            4 + self.headers.len()
        };
        reply + headers
    }

    /// Appends the extension fields (see [`Self::extension_len`]).
    #[inline]
    pub fn put_extensions(&self, out: &mut Vec<u8>) {
        if !self.reply.is_empty() {
            debug_assert!(self.reply.len() <= super::TOPIC_LEN_MAX);
            out.push(self.reply.len() as u8);
            out.extend_from_slice(self.reply);
        }
        if !self.headers.is_empty() {
            out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
            out.extend_from_slice(self.headers);
        }
    }
}

//! `ringrelay_event`: one thing the relay told a client, as C reads it. Events handed to a
//! callback are borrowed views into the client's receive batch, valid until the callback
//! returns; `ringrelay_event_retain` makes an owned copy that lives until
//! `ringrelay_event_free`.

use crate::boundary::{guard, guard_value, write_out};
use crate::status::{closed_status, ringrelay_status, Failure};
use ringrelay::ack::{AckOut, FailReason};
use ringrelay::client::Event;
use std::ptr;

/// What an event is; `ringrelay_event_get_kind` returns it.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringrelay_event_kind {
    /// A message: from `client_id`, on `topic` (NULL for a direct send), with `payload`.
    Message = 0,
    /// A watched id came online (`online` 1) or went offline (0); the id is `client_id`.
    Presence = 1,
    /// The relay refused a request (for example a send to an unknown id); the connection stays
    /// open. `code` is the protocol's error code, `client_id` the id or topic the request
    /// named, `text` the relay's words.
    Error = 2,
    /// The client ended: the relay closed it for good, or it was lost and no relay of the list
    /// took it back in time. The last event; every later call fails with `status`. `code` is
    /// the relay's close reason, or `RINGRELAY_CLOSE_REASON_NONE` when no relay said why.
    Closed = 3,
    /// The connection was lost and replaced; `text` is the relay now connected to. The id,
    /// subscriptions and watches are registered again; messages meanwhile were lost.
    Reconnected = 4,
    /// An acknowledged message (acked mode): from `client_id`, with `payload`; `seq` is its
    /// sequence number in the sender's stream.
    AckedMessage = 5,
    /// Acked mode: every message to `client_id` with a sequence number in
    /// `seq_first..=seq_last` was delivered to the target's application.
    Confirmed = 6,
    /// Acked mode: message `seq_first` to `client_id` failed; `code` says why (one of
    /// `RINGRELAY_FAIL_REASON_*`). It may or may not have been delivered.
    Failed = 7,
}

/// `ringrelay_event_get_code` of a CLOSED event no relay explained (the connection was lost).
pub const RINGRELAY_CLOSE_REASON_NONE: u32 = 0xFFFF_FFFF;
/// `ringrelay_event_get_code` of a FAILED event: not confirmed within `acked_timeout_ms`.
pub const RINGRELAY_FAIL_REASON_TIMEOUT: u32 = 0;
/// ...sent as many times as allowed without confirmation.
pub const RINGRELAY_FAIL_REASON_ATTEMPTS_EXHAUSTED: u32 = 1;
/// ...refused by the relay or the target (a target that does not speak acked delivery).
pub const RINGRELAY_FAIL_REASON_REFUSED: u32 = 2;
/// ...still in flight when the client closed.
pub const RINGRELAY_FAIL_REASON_CLOSED: u32 = 3;

/// A byte range an event points at.
#[derive(Clone, Copy, Debug)]
struct Span {
    ptr: *const u8,
    len: usize,
}

impl Span {
    const EMPTY: Span = Span {
        ptr: ptr::null(),
        len: 0,
    };

    fn of(bytes: &[u8]) -> Span {
        Span {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `self` points into memory that is valid for the life of the event it belongs to.
    unsafe fn bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: a span is made from a live slice, and the event it belongs to (and with it
        // that slice) outlives every use (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// An event as C sees it (opaque in the header).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct ringrelay_event {
    kind: ringrelay_event_kind,
    client_id: Span,
    /// `None`: a direct message (the accessor returns NULL).
    topic: Option<Span>,
    payload: Span,
    text: Span,
    code: u32,
    status: ringrelay_status,
    online: bool,
    seq_first: u64,
    seq_last: u64,
    /// A retained copy owns the bytes its spans point into (a leaked `Box<[u8]>`, freed by
    /// `Drop`: held raw, so moving the event never invalidates the spans); a borrowed view does
    /// not.
    owned: Option<*mut [u8]>,
}

impl Drop for ringrelay_event {
    fn drop(&mut self) {
        if let Some(bytes) = self.owned.take() {
            // SAFETY: `owned` is set only by `retained`, from Box::into_raw, and taken once.
            drop(unsafe { Box::from_raw(bytes) });
        }
    }
}

/// What the receive path hands to C: an event from the relay, or the end of the client.
#[derive(Debug)]
pub(crate) enum Item {
    Event(Event),
    /// A message whose bytes were copied into the batch's arena (no allocation of its own):
    /// sender, then topic (`None`: a direct send), then payload, from `at`, with these lengths.
    Message {
        at: usize,
        sender: usize,
        topic: Option<usize>,
        payload: usize,
    },
    /// The client ended without a CLOSED event from the relay (lost, and not replaced).
    Ended(Failure),
    /// Acked mode: acknowledgements for the acked messages before it, written once those are
    /// handed out. Never shown to the host, and never first in the queue.
    Acks(Vec<AckOut>),
}

impl Item {
    /// Appends a message to `arena` and returns the item that names it there.
    pub(crate) fn message_in(
        arena: &mut Vec<u8>,
        sender: &[u8],
        topic: Option<&[u8]>,
        payload: &[u8],
    ) -> Item {
        let at = arena.len();
        arena.extend_from_slice(sender);
        arena.extend_from_slice(topic.unwrap_or_default());
        arena.extend_from_slice(payload);
        Item::Message {
            at,
            sender: sender.len(),
            topic: topic.map(<[u8]>::len),
            payload: payload.len(),
        }
    }

    /// The item with its own bytes (an arena message becomes an owned one), for the queue.
    pub(crate) fn owned(self, arena: &[u8]) -> Item {
        match self {
            Item::Message {
                at,
                sender,
                topic,
                payload,
            } => {
                let topic_at = at + sender;
                let payload_at = topic_at + topic.unwrap_or(0);
                Item::Event(Event::Message {
                    sender: arena[at..topic_at].to_vec(),
                    topic: topic.map(|len| arena[topic_at..topic_at + len].to_vec()),
                    reply: None,
                    headers: None,
                    payload: arena[payload_at..payload_at + payload].to_vec(),
                })
            }
            other => other,
        }
    }

    /// Bytes it holds, for the queue's byte bound.
    pub(crate) fn bytes(&self) -> usize {
        const ITEM_OVERHEAD_BYTES: usize = 64;
        ITEM_OVERHEAD_BYTES
            + match self {
                Item::Event(Event::Message {
                    sender,
                    topic,
                    payload,
                    reply,
                    headers,
                }) => {
                    sender.len()
                        + topic.as_ref().map_or(0, Vec::len)
                        + reply.as_ref().map_or(0, Vec::len)
                        + headers.as_ref().map_or(0, Vec::len)
                        + payload.len()
                }
                Item::Event(Event::AckedMessage {
                    sender, payload, ..
                }) => sender.len() + payload.len(),
                Item::Message {
                    sender,
                    topic,
                    payload,
                    ..
                } => sender + topic.unwrap_or(0) + payload,
                Item::Event(_) => 0,
                Item::Ended(f) => f.text.len(),
                Item::Acks(acks) => acks.len() * size_of::<AckOut>(),
            }
    }
}

impl ringrelay_event {
    fn blank(kind: ringrelay_event_kind) -> ringrelay_event {
        ringrelay_event {
            kind,
            client_id: Span::EMPTY,
            topic: None,
            payload: Span::EMPTY,
            text: Span::EMPTY,
            code: 0,
            status: ringrelay_status::Ok,
            online: false,
            seq_first: 0,
            seq_last: 0,
            owned: None,
        }
    }

    /// A borrowed view of `item` (whose arena bytes, if any, are in `arena`), valid while both
    /// live and are not changed; `None` for an item the host never sees ([`Item::Acks`]).
    pub(crate) fn view(item: &Item, arena: &[u8]) -> Option<ringrelay_event> {
        use ringrelay_event_kind as K;
        let event = match item {
            Item::Acks(_) => return None,
            Item::Event(event) => event,
            &Item::Message {
                at,
                sender,
                topic,
                payload,
            } => {
                let topic_at = at + sender;
                let payload_at = topic_at + topic.unwrap_or(0);
                let mut ev = Self::blank(K::Message);
                ev.client_id = Span::of(&arena[at..topic_at]);
                ev.topic = topic.map(|len| Span::of(&arena[topic_at..topic_at + len]));
                ev.payload = Span::of(&arena[payload_at..payload_at + payload]);
                return Some(ev);
            }
            Item::Ended(failure) => {
                let mut ev = Self::blank(K::Closed);
                ev.text = Span::of(failure.text.as_bytes());
                ev.code = RINGRELAY_CLOSE_REASON_NONE;
                ev.status = failure.status;
                return Some(ev);
            }
        };
        Some(match event {
            Event::Message {
                sender,
                topic,
                payload,
                ..
            } => {
                // The C API does not expose reply topics and headers yet.
                let mut ev = Self::blank(K::Message);
                ev.client_id = Span::of(sender);
                ev.topic = topic.as_deref().map(Span::of);
                ev.payload = Span::of(payload);
                ev
            }
            Event::Presence { client_id, online } => {
                let mut ev = Self::blank(K::Presence);
                ev.client_id = Span::of(client_id);
                ev.online = *online;
                ev
            }
            Event::Error {
                code,
                subject,
                text,
            } => {
                let mut ev = Self::blank(K::Error);
                ev.client_id = Span::of(subject);
                ev.text = Span::of(text.as_bytes());
                ev.code = u32::from(code.0);
                ev
            }
            Event::Closed { reason, text } => {
                let mut ev = Self::blank(K::Closed);
                ev.text = Span::of(text.as_bytes());
                ev.code = u32::from(reason.0);
                ev.status = closed_status(*reason);
                ev
            }
            other => Self::view_more(other),
        })
    }

    /// The rest of [`Self::view`]: reconnection and the acked kinds.
    fn view_more(event: &Event) -> ringrelay_event {
        use ringrelay_event_kind as K;
        match event {
            Event::Reconnected { server } => {
                let mut ev = Self::blank(K::Reconnected);
                ev.text = Span::of(server.as_bytes());
                ev
            }
            Event::AckedMessage {
                sender,
                id,
                payload,
            } => {
                let mut ev = Self::blank(K::AckedMessage);
                ev.client_id = Span::of(sender);
                ev.payload = Span::of(payload);
                (ev.seq_first, ev.seq_last) = (id.seq, id.seq);
                ev
            }
            Event::Confirmed {
                target,
                first_seq,
                last_seq,
            } => {
                let mut ev = Self::blank(K::Confirmed);
                ev.client_id = Span::of(target);
                (ev.seq_first, ev.seq_last) = (*first_seq, *last_seq);
                ev
            }
            Event::Failed {
                target,
                seq,
                reason,
            } => {
                let mut ev = Self::blank(K::Failed);
                ev.client_id = Span::of(target);
                (ev.seq_first, ev.seq_last) = (*seq, *seq);
                ev.code = fail_code(reason);
                ev
            }
            // Receipts and acked errors are consumed inside an acked session and never reach
            // the application; should one come, it reads as an error with no words.
            _ => Self::blank(K::Error),
        }
    }

    /// An owned copy: the same fields, pointing into bytes of its own.
    ///
    /// # Safety
    /// `self`'s spans point into live memory (it is a live borrowed view or a retained copy).
    unsafe fn retained(&self) -> ringrelay_event {
        // SAFETY: the caller's promise covers every span of `self`.
        let parts = unsafe {
            [
                self.client_id.bytes(),
                self.topic.as_ref().map_or(&[][..], |t| t.bytes()),
                self.payload.bytes(),
                self.text.bytes(),
            ]
        };
        let owned: *mut [u8] = Box::into_raw(parts.concat().into_boxed_slice());
        let base = owned.cast::<u8>().cast_const();
        let mut at = 0;
        let mut next = |len: usize| {
            // SAFETY: `at + len` never passes the concatenation's length (the parts in order).
            let ptr = unsafe { base.add(at) };
            at += len;
            Span { ptr, len }
        };
        let client_id = next(parts[0].len());
        let topic = next(parts[1].len());
        let payload = next(parts[2].len());
        let text = next(parts[3].len());
        ringrelay_event {
            kind: self.kind,
            client_id,
            topic: self.topic.map(|_| topic),
            payload,
            text,
            code: self.code,
            status: self.status,
            online: self.online,
            seq_first: self.seq_first,
            seq_last: self.seq_last,
            owned: Some(owned),
        }
    }
}

/// The code of a FAILED event: 0 not acknowledged in time, 1 every attempt went unanswered,
/// 2 the relay refused it, 3 the client closed with it unacknowledged.
fn fail_code(reason: &FailReason) -> u32 {
    match reason {
        FailReason::Timeout { .. } => RINGRELAY_FAIL_REASON_TIMEOUT,
        FailReason::AttemptsExhausted { .. } => RINGRELAY_FAIL_REASON_ATTEMPTS_EXHAUSTED,
        FailReason::Refused(_) => RINGRELAY_FAIL_REASON_REFUSED,
        FailReason::Closed => RINGRELAY_FAIL_REASON_CLOSED,
    }
}

/// The event behind `event`, or `None` for NULL.
///
/// # Safety
/// Unless NULL, `event` is a live event from this library (a callback's or a retained one).
unsafe fn live<'a>(event: *const ringrelay_event) -> Option<&'a ringrelay_event> {
    // SAFETY: the caller's promise.
    unsafe { event.as_ref() }
}

/// Writes `span` out as pointer and length.
///
/// # Safety
/// Unless NULL, `len` points to a writable `size_t`.
unsafe fn span_out(span: Option<Span>, len: *mut usize) -> *const u8 {
    let span = span.unwrap_or(Span::EMPTY);
    if !len.is_null() {
        // SAFETY: not NULL, and the caller promises a writable `size_t`.
        unsafe { len.write(span.len) };
    }
    span.ptr
}

/// The event's kind (a `ringrelay_event_get_kind` value); `RINGRELAY_EVENT_KIND_ERROR` for NULL.
///
/// # Safety
/// Unless NULL, `event` is a live event: inside the callback it was given to, or retained and
/// not yet freed. The same holds for every `ringrelay_event_*` accessor.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_kind(event: *const ringrelay_event) -> u32 {
    // SAFETY: the caller's promise.
    guard_value(ringrelay_event_kind::Error as u32, || unsafe {
        live(event).map_or(ringrelay_event_kind::Error as u32, |e| e.kind as u32)
    })
}

/// `span` of a live `event`, written out as pointer and length.
///
/// # Safety
/// As the exported accessors: `event` NULL or live, `len` NULL or writable.
unsafe fn span_of(
    event: *const ringrelay_event,
    len: *mut usize,
    span: impl FnOnce(&ringrelay_event) -> Option<Span>,
) -> *const u8 {
    // SAFETY: the caller's promises, passed on.
    guard_value(ptr::null(), || unsafe {
        span_out(live(event).and_then(span), len)
    })
}

/// The client id the event is about: the sender of a message, the watched id of a
/// presence event, the target of a CONFIRMED or FAILED event, the id or topic an ERROR
/// names. NULL with `*len` 0 when the kind has none. Borrowed: valid as long as the event.
///
/// # Safety
/// As `ringrelay_event_get_kind`; unless NULL, `len` points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_client_id(
    event: *const ringrelay_event,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's promises, passed on.
    unsafe { span_of(event, len, |e| Some(e.client_id)) }
}

/// The topic a MESSAGE was published on; NULL (with `*len` 0) for a direct message and for
/// other kinds. Borrowed: valid as long as the event.
///
/// # Safety
/// As `ringrelay_event_get_kind`; unless NULL, `len` points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_topic(
    event: *const ringrelay_event,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's promises, passed on.
    unsafe { span_of(event, len, |e| e.topic) }
}

/// The payload of a MESSAGE or ACKED_MESSAGE (may be empty: then `*len` is 0 and the
/// pointer may be NULL). Borrowed: valid as long as the event.
///
/// # Safety
/// As `ringrelay_event_get_kind`; unless NULL, `len` points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_payload(
    event: *const ringrelay_event,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's promises, passed on.
    unsafe { span_of(event, len, |e| Some(e.payload)) }
}

/// Words about the event, UTF-8 and not NUL-terminated: the relay's text of an ERROR or
/// CLOSED, the reason a client ended, the server of a RECONNECTED event. Borrowed: valid as
/// long as the event.
///
/// # Safety
/// As `ringrelay_event_get_kind`; unless NULL, `len` points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_text(
    event: *const ringrelay_event,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's promises, passed on.
    unsafe { span_of(event, len, |e| Some(e.text)) }
}

/// A numeric detail: the protocol error code of an ERROR (PROTOCOL.md, "Error codes"), the
/// close reason of a CLOSED (PROTOCOL.md, "Close reasons"; `RINGRELAY_CLOSE_REASON_NONE` when
/// no relay gave one), the failure code of a FAILED event; 0 otherwise.
///
/// # Safety
/// As `ringrelay_event_get_kind`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_code(event: *const ringrelay_event) -> u32 {
    // SAFETY: the caller's promise.
    guard_value(0, || unsafe { live(event).map_or(0, |e| e.code) })
}

/// For a CLOSED event, the status every later call on the client returns (for example
/// `RINGRELAY_STATUS_AUTH_FAILED`); `RINGRELAY_STATUS_OK` for other kinds.
///
/// # Safety
/// As `ringrelay_event_get_kind`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_status(
    event: *const ringrelay_event,
) -> ringrelay_status {
    // SAFETY: the caller's promise.
    guard_value(ringrelay_status::Ok, || unsafe {
        live(event).map_or(ringrelay_status::Ok, |e| e.status)
    })
}

/// For a PRESENCE event, whether the id came online; false otherwise.
///
/// # Safety
/// As `ringrelay_event_get_kind`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_online(event: *const ringrelay_event) -> bool {
    // SAFETY: the caller's promise.
    guard_value(false, || unsafe { live(event).is_some_and(|e| e.online) })
}

/// The sequence numbers of an acked event: the range a CONFIRMED event covers, the message a
/// FAILED or ACKED_MESSAGE event is about (then `*first == *last`); 0 and 0 otherwise. Either
/// output may be NULL.
///
/// # Safety
/// As `ringrelay_event_get_kind`; each output, unless NULL, points to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_get_seq(
    event: *const ringrelay_event,
    first: *mut u64,
    last: *mut u64,
) {
    guard_value((), || {
        // SAFETY: the caller's promises.
        let (a, b) = unsafe { live(event) }.map_or((0, 0), |e| (e.seq_first, e.seq_last));
        for (out, value) in [(first, a), (last, b)] {
            if !out.is_null() {
                // SAFETY: not NULL, and the caller promises a writable `uint64_t`.
                unsafe { out.write(value) };
            }
        }
    })
}

/// Copies `event` so it outlives its callback; `*out` receives the copy, which the caller
/// frees with `ringrelay_event_free`. Copies one allocation of the event's bytes. Callable
/// from any thread; a retained event may be read from any thread and freed on another.
///
/// # Safety
/// `event` is a live event (as `ringrelay_event_get_kind`); `out` points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_retain(
    event: *const ringrelay_event,
    out: *mut *mut ringrelay_event,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let Some(event) = (unsafe { live(event) }) else {
            return Err(Failure::invalid("event is NULL"));
        };
        // SAFETY: a live event's spans point into live memory.
        let copy = Box::new(unsafe { event.retained() });
        // SAFETY: the caller's promise about `out`.
        unsafe { write_out(out, Box::into_raw(copy), "out") }
    })
}

/// Frees an event made by `ringrelay_event_retain`. NULL is ignored. An event a callback was
/// given (not retained) is refused with `RINGRELAY_STATUS_INVALID_ARGUMENT` and left alone.
///
/// # Safety
/// Unless NULL, `event` is a live event and, once freed, is not used again.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_event_free(event: *mut ringrelay_event) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let Some(view) = (unsafe { live(event) }) else {
            return Ok(());
        };
        if view.owned.is_none() {
            return Err(Failure::invalid(
                "this event was not retained: a callback's event is freed by the library",
            ));
        }
        // SAFETY: a retained event is a `Box` made by `ringrelay_event_retain`, freed once
        // (the caller's promise).
        drop(unsafe { Box::from_raw(event) });
        Ok(())
    })
}

//! The client's requests: send, publish, subscribe, watch and their undoing. Each queues one
//! frame (control requests are written at once); `auto_flush` or `ringrelay_client_flush`
//! writes messages.

use super::{ringrelay_client, Link};
use crate::boundary::{bytes_arg, guard};
use crate::status::{ringrelay_status, Failure};
use ringrelay::client::AckedSendError;
use ringrelay::client::{ClientError, Session};

/// A byte argument from C: pointer, length, and its name for the error text.
type BytesArg<'n> = (*const u8, usize, &'n str);

/// The body of every request: checks the client and two byte arguments (the second may be
/// empty), then runs `op` on the open session.
///
/// # Safety
/// The exported caller's promises: `client` NULL or a live client; each byte argument points to
/// its length in readable bytes, or is NULL with length 0.
unsafe fn request(
    client: *const ringrelay_client,
    first: BytesArg<'_>,
    second: BytesArg<'_>,
    op: impl FnOnce(&mut Session, &[u8], &[u8]) -> Result<(), ClientError>,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (c, a, b) = unsafe {
            (
                ringrelay_client::from_c(client)?,
                bytes_arg(first.0, first.1, first.2)?,
                bytes_arg(second.0, second.1, second.2)?,
            )
        };
        c.with_link(|link| op(link.session(), a, b).map_err(Failure::from))
    })
}

/// WATCH or UNWATCH `id` (an acked client keeps its own watches apart from the host's).
///
/// # Safety
/// As [`request`].
unsafe fn watch(client: *const ringrelay_client, id: BytesArg<'_>, on: bool) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (c, id) = unsafe {
            (
                ringrelay_client::from_c(client)?,
                bytes_arg(id.0, id.1, id.2)?,
            )
        };
        c.with_link(|link| link.watch(id, on).map_err(Failure::from))
    })
}

/// Sends `payload` to the client registered as `target`, wherever in the cluster it is
/// connected. Queued; an unknown target comes back later as an ERROR event
/// (`ringrelay_client_flush` with a timeout waits for it).
/// `RINGRELAY_STATUS_FRAME_TOO_LARGE` when the message exceeds the relay's limit (nothing is
/// queued). Callable from any thread and inside callbacks.
///
/// # Safety
/// Unless NULL, `client` is a live client; `target` and `payload` point to their lengths in
/// readable bytes (or are NULL with length 0).
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_send(
    client: *mut ringrelay_client,
    target: *const u8,
    target_len: usize,
    payload: *const u8,
    payload_len: usize,
) -> ringrelay_status {
    let (target, payload) = (
        (target, target_len, "target"),
        (payload, payload_len, "payload"),
    );
    // SAFETY: the caller's promises, passed on.
    unsafe { request(client, target, payload, |s, t, p| s.send(t, p)) }
}

/// Publishes `payload` on `topic` to every subscriber in the cluster, this client too when it
/// is subscribed. Queued, as `ringrelay_client_send`.
///
/// # Safety
/// As `ringrelay_client_send`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_publish(
    client: *mut ringrelay_client,
    topic: *const u8,
    topic_len: usize,
    payload: *const u8,
    payload_len: usize,
) -> ringrelay_status {
    let (topic, payload) = (
        (topic, topic_len, "topic"),
        (payload, payload_len, "payload"),
    );
    // SAFETY: the caller's promises, passed on.
    unsafe { request(client, topic, payload, |s, t, p| s.publish(t, p)) }
}

/// As `ringrelay_client_publish`, but never delivered back to this client (broadcast to all
/// but the sender).
///
/// # Safety
/// As `ringrelay_client_send`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_publish_no_echo(
    client: *mut ringrelay_client,
    topic: *const u8,
    topic_len: usize,
    payload: *const u8,
    payload_len: usize,
) -> ringrelay_status {
    let (topic, payload) = (
        (topic, topic_len, "topic"),
        (payload, payload_len, "payload"),
    );
    // SAFETY: the caller's promises, passed on.
    unsafe { request(client, topic, payload, |s, t, p| s.publish_no_echo(t, p)) }
}

/// Subscribes to `topic`, which may be a pattern: a token `*` matches one token, a last token
/// `>` the rest (`orders.*`, `orders.>`; PROTOCOL.md section 8.2); a malformed pattern comes
/// back as a `RINGRELAY_EVENT_KIND_ERROR` event with code 8 (INVALID_SUBJECT). With a `group`
/// (not NULL, length > 0), joins that queue group on the topic: each message goes to one member
/// of the group. Written at once; restored after a reconnection.
///
/// # Safety
/// As `ringrelay_client_send`, for `topic` and `group`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_subscribe(
    client: *mut ringrelay_client,
    topic: *const u8,
    topic_len: usize,
    group: *const u8,
    group_len: usize,
) -> ringrelay_status {
    let (topic, group) = ((topic, topic_len, "topic"), (group, group_len, "group"));
    // SAFETY: the caller's promises, passed on.
    unsafe {
        request(client, topic, group, |s, t, g| match g.is_empty() {
            true => s.subscribe(t),
            false => s.subscribe_group(t, g),
        })
    }
}

/// Ends the subscription `ringrelay_client_subscribe` made with the same topic and group.
///
/// # Safety
/// As `ringrelay_client_subscribe`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_unsubscribe(
    client: *mut ringrelay_client,
    topic: *const u8,
    topic_len: usize,
    group: *const u8,
    group_len: usize,
) -> ringrelay_status {
    let (topic, group) = ((topic, topic_len, "topic"), (group, group_len, "group"));
    // SAFETY: the caller's promises, passed on.
    unsafe { request(client, topic, group, |s, t, g| s.unsubscribe(t, g)) }
}

/// Asks for PRESENCE events about client `id`: one now with its current state, then one each
/// time it comes online or goes offline anywhere in the cluster. Written at once; restored
/// after a reconnection.
///
/// # Safety
/// As `ringrelay_client_send`, for `id`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_watch(
    client: *mut ringrelay_client,
    id: *const u8,
    id_len: usize,
) -> ringrelay_status {
    // SAFETY: the caller's promises, passed on.
    unsafe { watch(client, (id, id_len, "id"), true) }
}

/// Stops the PRESENCE events `ringrelay_client_watch` asked for.
///
/// # Safety
/// As `ringrelay_client_watch`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_unwatch(
    client: *mut ringrelay_client,
    id: *const u8,
    id_len: usize,
) -> ringrelay_status {
    // SAFETY: the caller's promises, passed on.
    unsafe { watch(client, (id, id_len, "id"), false) }
}

/// Acked mode (`opts.acked`): sends `payload` to `target` with acknowledged delivery and
/// writes its sequence number to `*seq` (when not NULL). The message then ends in exactly one
/// event: CONFIRMED (a range holding its number: it reached the target's application) or
/// FAILED (it may or may not have). `RINGRELAY_STATUS_WOULD_BLOCK` when the window to this
/// target (4,096 messages) or the bytes kept for retransmission are full: let events come (the
/// acknowledgements make room) and retry. `RINGRELAY_STATUS_BAD_STATE` in plain mode. The
/// payload is copied (kept until confirmed). Callable from any thread and inside callbacks.
///
/// # Safety
/// As `ringrelay_client_send`; `seq` is NULL or a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_client_send_acked(
    client: *mut ringrelay_client,
    target: *const u8,
    target_len: usize,
    payload: *const u8,
    payload_len: usize,
    seq: *mut u64,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        let (c, target, payload) = unsafe {
            (
                ringrelay_client::from_c(client)?,
                bytes_arg(target, target_len, "target")?,
                bytes_arg(payload, payload_len, "payload")?,
            )
        };
        let number = c.with_link(|link| match link {
            Link::Acked(acked) => acked
                .send(target, bytes::Bytes::copy_from_slice(payload))
                .map_err(|e| match e {
                    AckedSendError::WouldBlock(_) => {
                        Failure::new(ringrelay_status::WouldBlock, e.to_string())
                    }
                    AckedSendError::Client(e) => Failure::from(e),
                }),
            Link::Plain(_) => Err(Failure::new(
                ringrelay_status::BadState,
                "acked sends need a client connected with opts.acked set",
            )),
        })?;
        if !seq.is_null() {
            // SAFETY: not NULL, and the caller promises a writable `uint64_t`.
            unsafe { seq.write(number) };
        }
        Ok(())
    })
}

//! The client's own thread. It sleeps in `poll` on the relay socket and a wake eventfd, reads
//! what arrived with the session lock held, then releases the lock and hands the events out:
//! to the callback (callback mode) or into the queue (queue mode). It also answers the relay's
//! heartbeats, checks the relay's liveness, reconnects, and writes queued messages when
//! `auto_flush` is on.
//!
//! The lock is never held while a callback runs, so a callback may send on its own client.

use super::event::{ringrelay_event, Item};
use super::wake::poll_two;
use super::{ringrelay_client, Mode, Shared, State};
use crate::boundary::{in_callback_of, panic_text};
use crate::status::{client_status, closed_status, Failure};
use ringrelay::client::{ClientError, Event};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Most events read in one turn before they are handed out (bounds the time the lock is held
/// and the batch's memory).
const BATCH_EVENTS_MAX: usize = 1024;

/// The handle's address, given to callbacks as their `client` argument.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HandleAddr(pub(crate) usize);

/// What one turn under the lock found.
enum Turn {
    /// Hand the batch out, then read again without sleeping.
    Dispatch,
    /// Nothing to do until the socket is readable, the wake fd is set, or `deadline`.
    Sleep {
        socket: Option<i32>,
        deadline: Option<Instant>,
    },
    /// The client is closing or has ended: hand out what the batch holds and stop.
    Stop,
}

/// The thread's body: turns until the client stops or ends. A panic in the library ends the
/// client with `RINGRELAY_STATUS_PANIC` instead of taking the host down.
pub(crate) fn run(shared: Arc<Shared>, handle: HandleAddr) {
    let mut batch = VecDeque::with_capacity(BATCH_EVENTS_MAX);
    let outcome = catch_unwind(AssertUnwindSafe(|| turns(&shared, handle, &mut batch)));
    if let Err(panic) = outcome {
        let text = format!("panic in the client's thread: {}", panic_text(&*panic));
        let status = crate::status::ringrelay_status::Panic;
        // Calls fail from now on (the state may be poisoned: then they say so), and the host
        // hears of it as the client's last event.
        if let Ok(mut state) = shared.state.lock() {
            state
                .ended
                .get_or_insert(Failure::new(status, text.clone()));
        }
        if batch.iter().any(|item| !matches!(item, Item::Acks(_))) {
            shared.events_lost.store(true, Ordering::Release);
        }
        batch.clear();
        batch.push_back(Item::Ended(Failure::new(status, text)));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            hand_out(&shared, handle, &mut batch, &[])
        }));
    }
}

fn turns(shared: &Shared, handle: HandleAddr, batch: &mut VecDeque<Item>) {
    // The bytes of the batch's messages, reused from turn to turn.
    let mut arena = Vec::new();
    loop {
        let turn = match shared.state.lock() {
            Ok(mut state) => read_turn(shared, &mut state, batch, &mut arena),
            Err(_) => Turn::Stop,
        };
        hand_out(shared, handle, batch, &arena);
        arena.clear();
        if shared.flush_waiters.load(Ordering::SeqCst) > 0 {
            // An acked flush waits for confirmations this turn may have read.
            shared.progress.notify_all();
        }
        match turn {
            Turn::Dispatch => {}
            Turn::Stop => return,
            Turn::Sleep { socket, deadline } => {
                let timeout_ms = deadline.map_or(-1, |d| {
                    let left = d.saturating_duration_since(Instant::now());
                    // Rounded up, so the wake comes at or after the deadline, not just before.
                    let ms = left.as_micros().div_ceil(1000);
                    i32::try_from(ms).unwrap_or(i32::MAX)
                });
                if poll_two(socket, &shared.wake, timeout_ms) {
                    shared.wake.clear();
                }
            }
        }
    }
}

/// One turn under the lock: the write asked for, events a flush read, then what the socket
/// holds, into `batch`.
fn read_turn(
    shared: &Shared,
    state: &mut State,
    batch: &mut VecDeque<Item>,
    arena: &mut Vec<u8>,
) -> Turn {
    if shared.stopping.load(Ordering::Acquire) || state.ended.is_some() {
        return Turn::Stop;
    }
    let Some(link) = state.link.as_mut() else {
        return Turn::Stop;
    };
    if std::mem::take(&mut state.unflushed) {
        if let Err(e) = link.flush() {
            return end(state, batch, e);
        }
    }
    batch.extend(state.pending.drain(..).map(Item::Event));
    while batch.len() < BATCH_EVENTS_MAX {
        let before = batch.len();
        match link.read_ready(batch, arena, BATCH_EVENTS_MAX - before) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return end(state, batch, e),
        }
        // A CLOSE from the relay ends the client (the acked session may add its confirmations
        // and failures after it).
        let closed = batch.iter().skip(before).find_map(|item| match item {
            Item::Event(Event::Closed { reason, text }) => Some((*reason, text.clone())),
            _ => None,
        });
        if let Some((reason, text)) = closed {
            let failure = Failure::new(
                closed_status(reason),
                format!("relay closed the connection: {reason} ({text})"),
            );
            state.ended = Some(failure);
            return Turn::Stop;
        }
    }
    link.take_acks(batch);
    if batch.len() >= BATCH_EVENTS_MAX {
        return Turn::Dispatch;
    }
    Turn::Sleep {
        socket: link.as_raw_fd(),
        deadline: link.next_deadline(),
    }
}

/// The client ended with `error`: it is the last event, and what later calls return. A CLOSE
/// from the relay that ended it (a local client of a stopping node) keeps its reason.
fn end(state: &mut State, batch: &mut VecDeque<Item>, error: ClientError) -> Turn {
    let failure = Failure::new(client_status(&error), error.to_string());
    let item = match error {
        ClientError::Closed { reason, text } => Item::Event(Event::Closed { reason, text }),
        _ => Item::Ended(Failure::new(failure.status, failure.text.clone())),
    };
    batch.push_back(item);
    state.ended = Some(failure);
    Turn::Stop
}

/// Hands the batch out: each event to the callback, or all into the queue.
fn hand_out(shared: &Shared, handle: HandleAddr, batch: &mut VecDeque<Item>, arena: &[u8]) {
    match &shared.mode {
        Mode::Queue(queue) => {
            // Queued items outlive the arena: they take their bytes along.
            let count = batch.len();
            for _ in 0..count {
                if let Some(item) = batch.pop_front() {
                    batch.push_back(item.owned(arena));
                }
            }
            let mut release_now = Vec::new();
            queue.push_all(batch, &shared.stopping, &mut release_now);
            shared.release_acks(&release_now);
        }
        Mode::Callback { on_event, userdata } => {
            let client = handle.0 as *mut ringrelay_client;
            let mut handed_out = Vec::new();
            in_callback_of(client as *const _, || {
                for item in batch.drain(..) {
                    let Some(view) = ringrelay_event::view(&item, arena) else {
                        if let Item::Acks(acks) = item {
                            handed_out.extend(acks);
                        }
                        continue;
                    };
                    // SAFETY: `on_event` is the host's callback, called as the header
                    // documents: its userdata, the live client handle (the handle outlives
                    // this thread: free joins it first), and an event valid for the call.
                    unsafe { on_event(userdata.0, client, &view) };
                }
            });
            shared.release_acks(&handed_out);
        }
    }
}

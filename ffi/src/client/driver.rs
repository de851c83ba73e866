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
use crate::status::{closed_status, Failure};
use ringrelay::client::Event;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        let failure = Failure::new(
            crate::status::ringrelay_status::Panic,
            format!("panic in the client's thread: {}", panic_text(&*panic)),
        );
        if let Ok(mut state) = shared.state.lock() {
            state.ended.get_or_insert(failure);
        }
    }
}

fn turns(shared: &Shared, handle: HandleAddr, batch: &mut VecDeque<Item>) {
    loop {
        let turn = match shared.state.lock() {
            Ok(mut state) => read_turn(shared, &mut state, batch),
            Err(_) => Turn::Stop,
        };
        hand_out(shared, handle, batch);
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
fn read_turn(shared: &Shared, state: &mut State, batch: &mut VecDeque<Item>) -> Turn {
    if shared.stopping.load(Ordering::Acquire) || state.ended.is_some() {
        return Turn::Stop;
    }
    let Some(session) = state.session.as_mut() else {
        return Turn::Stop;
    };
    if std::mem::take(&mut state.unflushed) {
        if let Err(e) = session.flush() {
            return end(state, batch, Failure::from(e));
        }
    }
    batch.extend(state.pending.drain(..).map(Item::Event));
    while batch.len() < BATCH_EVENTS_MAX {
        match session.recv(Duration::ZERO) {
            Ok(Some(Event::Closed { reason, text })) => {
                let failure = Failure::new(
                    closed_status(reason),
                    format!("relay closed the connection: {reason} ({text})"),
                );
                batch.push_back(Item::Event(Event::Closed { reason, text }));
                state.ended = Some(failure);
                return Turn::Stop;
            }
            Ok(Some(event)) => batch.push_back(Item::Event(event)),
            Ok(None) => break,
            Err(e) => return end(state, batch, Failure::from(e)),
        }
    }
    if batch.len() >= BATCH_EVENTS_MAX {
        return Turn::Dispatch;
    }
    Turn::Sleep {
        socket: session.as_raw_fd(),
        deadline: session.next_deadline(),
    }
}

/// The client ended with `failure`: it is the last event, and what later calls return.
fn end(state: &mut State, batch: &mut VecDeque<Item>, failure: Failure) -> Turn {
    batch.push_back(Item::Ended(Failure::new(
        failure.status,
        failure.text.clone(),
    )));
    state.ended = Some(failure);
    Turn::Stop
}

/// Hands the batch out: each event to the callback, or all into the queue.
fn hand_out(shared: &Shared, handle: HandleAddr, batch: &mut VecDeque<Item>) {
    match &shared.mode {
        Mode::Queue(queue) => {
            queue.push_all(batch, &shared.stopping);
            // Left over only when the client is closing: nobody will drain them.
            batch.clear();
        }
        Mode::Callback { on_event, userdata } => {
            let client = handle.0 as *mut ringrelay_client;
            in_callback_of(client as *const _, || {
                for item in batch.drain(..) {
                    let view = ringrelay_event::view(&item);
                    // SAFETY: `on_event` is the host's callback, called as the header
                    // documents: its userdata, the live client handle (the handle outlives
                    // this thread: free joins it first), and an event valid for the call.
                    unsafe { on_event(userdata.0, client, &view) };
                }
            });
        }
    }
}

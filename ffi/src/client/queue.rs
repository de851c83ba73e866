//! Queue mode: events wait, bounded in count and bytes, for the host to drain them on its own
//! thread. `fd` is readable while any wait. When full, the driver thread waits for room and
//! reads nothing from the relay meanwhile (see `ringrelay_client_options.queue_events_max`).
//!
//! Acked mode adds [`Item::Acks`]: the acknowledgements for the messages queued before them.
//! They wait behind those messages and go with the drain that takes the last of them, so an
//! acked message is acknowledged only once the host has drained it; acknowledgements that
//! find no event waiting are released at once. They are never first in the queue, so a
//! readable `fd` always means events wait, and never two in a row (they merge, one
//! acknowledgement per sender), so their count and size are bounded by the events' and by
//! the receiver's `senders_max`.

use super::event::Item;
use super::wake::WakeFd;
use ringrelay::ack::AckOut;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Debug)]
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    room: Condvar,
    /// Readable while events wait (set and cleared under `state`'s lock).
    pub(crate) fd: WakeFd,
    events_max: usize,
    bytes_max: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Item>,
    /// Items that are events for the host (all but [`Item::Acks`]): what `events_max` bounds.
    events: usize,
    bytes: usize,
    /// Events were dropped unseen because the client closed while the queue was full.
    dropped: bool,
}

impl EventQueue {
    pub(crate) fn new(events_max: usize, bytes_max: usize, fd: WakeFd) -> EventQueue {
        EventQueue {
            state: Mutex::new(QueueState::default()),
            room: Condvar::new(),
            fd,
            events_max: events_max.max(1),
            bytes_max: bytes_max.max(1),
        }
    }

    /// Moves every item of `batch` into the queue, waiting for room as needed; gives up (the
    /// rest are dropped) once `stopping` is set. An item larger than the byte bound goes in
    /// alone into an empty queue, so nothing can wait forever. Acknowledgements with no event
    /// before them in the queue go to `release_now` instead.
    pub(crate) fn push_all(
        &self,
        batch: &mut VecDeque<Item>,
        stopping: &AtomicBool,
        release_now: &mut Vec<AckOut>,
    ) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        while let Some(item) = batch.pop_front() {
            if let Item::Acks(acks) = item {
                if state.events == 0 {
                    release_now.extend(acks);
                } else if let Some(Item::Acks(last)) = state.items.back_mut() {
                    // No event since: one item, at most one acknowledgement per sender.
                    for ack in acks {
                        AckOut::coalesce_into(last, ack);
                    }
                } else {
                    state.items.push_back(Item::Acks(acks));
                }
                continue;
            }
            let bytes = item.bytes();
            loop {
                let fits = state.events < self.events_max && state.bytes + bytes <= self.bytes_max;
                if state.events == 0 || fits {
                    break;
                }
                if stopping.load(Ordering::Acquire) {
                    // Nobody will drain them: the client is closing.
                    state.dropped = true;
                    batch.clear();
                    return;
                }
                state = match self.room.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if state.items.is_empty() {
                self.fd.set();
            }
            state.bytes += bytes;
            state.events += 1;
            state.items.push_back(item);
        }
    }

    /// Takes up to `max` events off the front, with the acknowledgements that follow the last
    /// of them.
    pub(crate) fn take(&self, max: usize, into: &mut VecDeque<Item>) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let state = &mut *guard;
        let mut taken = 0;
        while let Some(front) = state.items.front() {
            let is_acks = matches!(front, Item::Acks(_));
            if !is_acks && taken == max {
                break;
            }
            let Some(item) = state.items.pop_front() else {
                break;
            };
            if !is_acks {
                state.bytes -= item.bytes();
                state.events -= 1;
                taken += 1;
            }
            into.push_back(item);
        }
        if state.items.is_empty() {
            self.fd.clear();
        }
        drop(guard);
        if taken > 0 {
            self.room.notify_all();
        }
    }

    /// Whether every event queued has been drained (none wait, none were dropped).
    pub(crate) fn all_handed_out(&self) -> bool {
        self.state
            .lock()
            .is_ok_and(|state| state.events == 0 && !state.dropped)
    }

    /// Wakes a driver waiting for room (the client is closing).
    pub(crate) fn wake_waiters(&self) {
        let _held = self.state.lock();
        self.room.notify_all();
    }
}

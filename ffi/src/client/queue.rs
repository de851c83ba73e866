//! Queue mode: events wait, bounded in count and bytes, for the host to drain them on its own
//! thread. `fd` is readable while any wait. When full, the driver thread waits for room and
//! reads nothing from the relay meanwhile (see `ringrelay_client_options.queue_events_max`).

use super::event::Item;
use super::wake::WakeFd;
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
    bytes: usize,
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
    /// rest stay in `batch`) once `stopping` is set. An item larger than the byte bound goes in
    /// alone into an empty queue, so nothing can wait forever.
    pub(crate) fn push_all(&self, batch: &mut VecDeque<Item>, stopping: &AtomicBool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        while let Some(item) = batch.pop_front() {
            let bytes = item.bytes();
            loop {
                let empty = state.items.is_empty();
                let fits =
                    state.items.len() < self.events_max && state.bytes + bytes <= self.bytes_max;
                if empty || fits {
                    break;
                }
                if stopping.load(Ordering::Acquire) {
                    batch.push_front(item);
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
            state.items.push_back(item);
        }
    }

    /// Takes up to `max` items off the front.
    pub(crate) fn take(&self, max: usize, into: &mut VecDeque<Item>) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let state = &mut *guard;
        let n = state.items.len().min(max);
        for item in state.items.drain(..n) {
            state.bytes -= item.bytes();
            into.push_back(item);
        }
        if state.items.is_empty() {
            self.fd.clear();
        }
        drop(guard);
        if n > 0 {
            self.room.notify_all();
        }
    }

    /// Wakes a driver waiting for room (the client is closing).
    pub(crate) fn wake_waiters(&self) {
        let _held = self.state.lock();
        self.room.notify_all();
    }
}

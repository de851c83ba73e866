//! Queue mode: events wait, bounded in count and bytes, for the host to drain them on its own
//! thread. `fd` is readable while any wait. When full, the driver thread waits for room and
//! reads nothing from the relay meanwhile (see `ringrelay_client_options.queue_events_max`).
//!
//! Acked mode adds [`Item::Acks`]: the acknowledgements for the messages queued before them.
//! They wait behind those messages and go with the drain that takes the last of them, released
//! once its callbacks have returned, so an acked message is acknowledged only once the host
//! has had it. Acknowledgements that find no event waiting are released at once, or, while a
//! drain's callbacks run, when the drain ends. They are never first in the queue, so a
//! readable `fd` always means events wait, and never two in a row (they merge, one
//! acknowledgement per sender): at most one item per event queued, each of at most one
//! acknowledgement per sender (the receiver's `senders_max`).

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
    /// Drains between `take` and `finish_drain`: their callbacks may still run.
    draining: usize,
    /// Acknowledgements that came while no event waited but a drain ran: released when the
    /// last running drain ends.
    acks_after_drain: Vec<AckOut>,
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
                if state.events == 0 && state.draining == 0 {
                    release_now.extend(acks);
                } else if state.events == 0 {
                    for ack in acks {
                        AckOut::coalesce_into(&mut state.acks_after_drain, ack);
                    }
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
    /// of them, for a drain; the drain calls `finish_drain` once its callbacks have returned.
    pub(crate) fn take(&self, max: usize, into: &mut VecDeque<Item>) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let state = &mut *guard;
        state.draining += 1;
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

    /// A drain's callbacks have returned: appends to `release` the acknowledgements that waited
    /// for the last running drain to end.
    pub(crate) fn finish_drain(&self, release: &mut Vec<AckOut>) {
        if let Ok(mut state) = self.state.lock() {
            state.draining = state.draining.saturating_sub(1);
            if state.draining == 0 {
                release.append(&mut state.acks_after_drain);
            }
        }
    }

    /// Whether every event queued has been handed out: none wait, none were dropped, and no
    /// drain's callbacks are running.
    pub(crate) fn all_handed_out(&self) -> bool {
        self.state.lock().is_ok_and(|state| {
            state.events == 0
                && !state.dropped
                && state.draining == 0
                && state.acks_after_drain.is_empty()
        })
    }

    /// Wakes a driver waiting for room (the client is closing).
    pub(crate) fn wake_waiters(&self) {
        let _held = self.state.lock();
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringrelay::client::Event;

    fn queue() -> EventQueue {
        EventQueue::new(16, 1 << 20, WakeFd::new().expect("eventfd"))
    }

    fn event() -> Item {
        Item::Event(Event::Presence {
            client_id: b"x".to_vec(),
            online: true,
        })
    }

    fn acks(upto: u64) -> Item {
        Item::Acks(vec![AckOut {
            sender: b"s".to_vec(),
            epoch: 1,
            upto,
            runs: vec![],
            gap: false,
        }])
    }

    /// A queue holding one event and the acknowledgements behind it.
    fn queue_with_an_event_and_acks() -> (EventQueue, AtomicBool, Vec<AckOut>) {
        let q = queue();
        let stopping = AtomicBool::new(false);
        let mut release = Vec::new();
        q.push_all(
            &mut VecDeque::from([event(), acks(1)]),
            &stopping,
            &mut release,
        );
        (q, stopping, release)
    }

    #[test]
    fn acknowledgements_wait_behind_their_events_and_for_the_drain_that_took_them() {
        let (q, stopping, mut release) = queue_with_an_event_and_acks();
        assert!(release.is_empty(), "an event waits before them");
        let mut taken = VecDeque::new();
        q.take(16, &mut taken);
        assert_eq!(
            taken.len(),
            2,
            "the event and the acknowledgements behind it"
        );
        assert!(!q.all_handed_out(), "the drain's callbacks may still run");
        // A timer's acknowledgement while the drain runs: it waits for the drain to end.
        q.push_all(&mut VecDeque::from([acks(2)]), &stopping, &mut release);
        assert!(release.is_empty());
        q.finish_drain(&mut release);
        assert_eq!(release.len(), 1);
        assert_eq!(release[0].upto, 2);
        assert!(q.all_handed_out());
        // With no drain running and no event waiting, they go at once.
        release.clear();
        q.push_all(&mut VecDeque::from([acks(3)]), &stopping, &mut release);
        assert_eq!(release.len(), 1);
    }

    #[test]
    fn consecutive_acknowledgements_merge_into_one_item_per_sender() {
        let (q, stopping, mut release) = queue_with_an_event_and_acks();
        for upto in 2..100 {
            q.push_all(&mut VecDeque::from([acks(upto)]), &stopping, &mut release);
        }
        let mut taken = VecDeque::new();
        q.take(16, &mut taken);
        assert_eq!(taken.len(), 2);
        match &taken[1] {
            Item::Acks(a) => assert_eq!((a.len(), a[0].upto), (1, 99)),
            other => panic!("expected acknowledgements, got {other:?}"),
        }
        q.finish_drain(&mut release);
        assert!(release.is_empty() && q.all_handed_out());
    }
}

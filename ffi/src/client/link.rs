//! What a client drives: a plain session (best effort, as the Rust `Session`) or an acked one
//! (`AckedSession`: every acked message ends CONFIRMED or FAILED). One enum, so the client's
//! thread and calls treat both alike.

use super::event::Item;
use ringrelay::ack::AckOut;
use ringrelay::client::{AckedSession, ClientError, Event, Session};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) enum Link {
    Plain(Box<Session>),
    Acked(Box<AckedSession>),
}

impl Link {
    /// An acked link whose acknowledgements wait for the client's hand-out (see
    /// [`Link::take_acks`]).
    pub(crate) fn acked(mut session: AckedSession) -> Link {
        session.hold_acks(true);
        Link::Acked(Box::new(session))
    }

    /// Acked mode: appends to `batch` the acknowledgements due for the messages read so far,
    /// as one item after them; it is released once they are handed out (after their callbacks,
    /// or once drained from the queue).
    pub(crate) fn take_acks(&mut self, batch: &mut VecDeque<Item>) {
        if let Link::Acked(a) = self {
            let mut acks = Vec::new();
            a.take_acks(&mut acks);
            if !acks.is_empty() {
                batch.push_back(Item::Acks(acks));
            }
        }
    }

    /// Writes acknowledgements from [`Link::take_acks`] once their messages are handed out.
    pub(crate) fn release_acks(&mut self, acks: &[AckOut]) -> Result<(), ClientError> {
        match self {
            Link::Plain(_) => Ok(()),
            Link::Acked(a) => a.release_acks(acks),
        }
    }

    /// The plain session: for best-effort sends, topics and subscriptions.
    pub(crate) fn session(&mut self) -> &mut Session {
        match self {
            Link::Plain(s) => s,
            Link::Acked(a) => a.session(),
        }
    }

    pub(crate) fn watch(&mut self, id: &[u8], on: bool) -> Result<(), ClientError> {
        match (self, on) {
            (Link::Plain(s), true) => s.watch(id),
            (Link::Plain(s), false) => s.unwatch(id),
            // The acked session watches targets of its own; it keeps the two apart.
            (Link::Acked(a), true) => a.watch(id),
            (Link::Acked(a), false) => a.unwatch(id),
        }
    }

    /// Reads what is ready without waiting into `batch`, up to `max` events; `Ok(0)` when
    /// nothing was. Messages of a plain session are copied into `arena` (no allocation per
    /// message).
    pub(crate) fn read_ready(
        &mut self,
        batch: &mut VecDeque<Item>,
        arena: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, ClientError> {
        match self {
            Link::Plain(s) => {
                let mut n = 0;
                while n < max {
                    n += s.take_messages(max - n, |sender, topic, payload| {
                        batch.push_back(Item::message_in(arena, sender, topic, payload));
                    })?;
                    if n >= max {
                        break;
                    }
                    // Another kind of frame, or nothing read yet: one event, maybe a read.
                    let Some(event) = s.recv(Duration::ZERO)? else {
                        break;
                    };
                    let closed = matches!(event, Event::Closed { .. });
                    batch.push_back(Item::Event(event));
                    n += 1;
                    if closed {
                        break;
                    }
                }
                Ok(n)
            }
            // Up to RECV_MANY_EVENTS_MAX per call, timers and acknowledgements included.
            Link::Acked(a) => a.recv_with(Duration::ZERO, |incoming| {
                batch.push_back(Item::Event(incoming.into_event()));
            }),
        }
    }

    /// Writes everything queued (for the acked session: with its timers and acknowledgements).
    pub(crate) fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Acked(a) => a.flush(),
        }
    }

    /// Writes everything queued and waits up to `timeout`: for a plain session until the relay
    /// has handled it all (events read meanwhile go to `pending`); for an acked one until every
    /// acked message sent has ended (its events stay in the session for the client's thread).
    /// Returns whether that happened in time.
    pub(crate) fn settle(
        &mut self,
        timeout: Duration,
        pending: &mut VecDeque<Event>,
    ) -> Result<bool, ClientError> {
        match self {
            Link::Plain(s) => match s.round_trip(timeout) {
                Ok(events) => {
                    pending.extend(events);
                    Ok(true)
                }
                Err(ClientError::NoAnswer { .. }) => Ok(false),
                Err(e) => Err(e),
            },
            Link::Acked(a) => {
                a.flush()?;
                a.drain(timeout)
            }
        }
    }

    /// Acked messages sent and not yet confirmed or failed (0 for a plain session).
    pub(crate) fn in_flight(&self) -> u64 {
        match self {
            Link::Plain(_) => 0,
            Link::Acked(a) => a.in_flight(),
        }
    }

    pub(crate) fn is_acked(&self) -> bool {
        matches!(self, Link::Acked(_))
    }

    pub(crate) fn as_raw_fd(&self) -> Option<i32> {
        match self {
            Link::Plain(s) => s.as_raw_fd(),
            Link::Acked(a) => a.as_raw_fd(),
        }
    }

    /// When the client's thread must look again even if nothing arrives.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self {
            Link::Plain(s) => s.next_deadline(),
            Link::Acked(a) => a.next_deadline(),
        }
    }

    /// Says goodbye to the relay (acked: messages still in flight fail as closed). With
    /// `all_handed_out`, every acked message read was handed out: the acknowledgements owed
    /// are written first. Without, none are: the senders send again (to this id's next
    /// session) what the host never saw.
    pub(crate) fn close(self, all_handed_out: bool) -> Result<(), ClientError> {
        match self {
            Link::Plain(s) => s.close(),
            Link::Acked(mut a) => {
                a.hold_acks(!all_handed_out);
                a.close().map(|_| ())
            }
        }
    }
}

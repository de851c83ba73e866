//! Routing decisions (sans-IO): given the shared tables and one client request, decide who
//! receives what, and tell a [`Sink`] to do it. The I/O layer implements the sink (append to a
//! local connection's send buffer, or hand over to another worker); tests implement it with a
//! Vec. Nothing here allocates per message.

use super::location::{Location, LocationTable, Registered};
use super::presence::PresenceTable;
use super::topics::TopicTable;
use crate::protocol::{CloseReason, ErrorCode};
use papaya::LocalGuard;

/// Where routed frames go. Every method must be cheap: it runs once per delivery.
pub trait Sink {
    /// Deliver a DELIVER frame to the connection at `to`.
    fn deliver(&mut self, to: Location, sender: &[u8], topic: &[u8], payload: &[u8]);
    /// Tell the watcher at `to` that `client_id` went online or offline.
    fn presence(&mut self, to: Location, client_id: &[u8], online: bool);
    /// Close the connection at `to` (for example "replaced").
    fn close(&mut self, to: Location, reason: CloseReason, text: &'static str);
    /// Answer the requesting connection with an ERROR frame.
    fn error_to_origin(&mut self, code: ErrorCode, subject: &[u8], text: &'static str);
}

/// The connection a request came from.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub location: Location,
    pub client_id: &'a [u8],
}

/// The shared routing state of one node.
#[derive(Default)]
pub struct Tables {
    pub locations: LocationTable,
    pub topics: TopicTable,
    pub presence: PresenceTable,
}

/// Epoch guards for one batch of lookups (one per map).
pub struct Guards<'t> {
    locations: LocalGuard<'t>,
    topics: LocalGuard<'t>,
}

/// Outcome of a SEND, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Routed,
    UnknownId,
}

impl Tables {
    pub fn new() -> Self {
        Self::default()
    }

    /// Guards for a batch; drop them at the end of the batch so memory can be reclaimed.
    pub fn guards(&self) -> Guards<'_> {
        Guards {
            locations: self.locations.raw_guard(),
            topics: self.topics.raw_guard(),
        }
    }

    #[inline]
    pub fn route_send(
        &self,
        guards: &Guards<'_>,
        origin: Origin<'_>,
        target: &[u8],
        payload: &[u8],
        sink: &mut impl Sink,
    ) -> SendOutcome {
        match self.locations.get(target, &guards.locations) {
            Some(to) => {
                sink.deliver(to, origin.client_id, b"", payload);
                SendOutcome::Routed
            }
            None => {
                sink.error_to_origin(ErrorCode::UNKNOWN_ID, target, "unknown id");
                SendOutcome::UnknownId
            }
        }
    }

    /// Fans out to every plain subscriber and one member per queue group. With `no_echo` the
    /// publishing connection receives nothing. Returns the number of deliveries.
    #[inline]
    pub fn route_publish(
        &self,
        guards: &Guards<'_>,
        origin: Origin<'_>,
        topic: &[u8],
        payload: &[u8],
        no_echo: bool,
        sink: &mut impl Sink,
    ) -> usize {
        let Some(entry) = self.topics.get(topic, &guards.topics) else {
            return 0;
        };
        let exclude = no_echo.then_some(origin.location);
        let mut deliveries = 0;
        for &to in entry.plain.iter() {
            if Some(to) != exclude {
                sink.deliver(to, origin.client_id, topic, payload);
                deliveries += 1;
            }
        }
        for group in entry.groups.iter() {
            if let Some(to) = group.pick(exclude) {
                sink.deliver(to, origin.client_id, topic, payload);
                deliveries += 1;
            }
        }
        deliveries
    }

    /// Registers `client_id` at `location`: a live holder of the id is closed as "replaced",
    /// and watchers learn that the id is online. `scratch` is a reused buffer.
    pub fn register(
        &self,
        client_id: &[u8],
        location: Location,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) {
        if let Registered::Replaced(old) = self.locations.register(client_id, location) {
            sink.close(
                old,
                CloseReason::REPLACED,
                "replaced by a newer connection with the same id",
            );
        }
        self.notify_watchers(client_id, true, scratch, sink);
    }

    /// Removes the row of a closing connection (unless a newer registration owns the id) and
    /// tells watchers it went offline. Returns whether the id went offline.
    pub fn unregister(
        &self,
        client_id: &[u8],
        location: Location,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) -> bool {
        if !self.locations.remove_if_at(client_id, location) {
            return false;
        }
        self.notify_watchers(client_id, false, scratch, sink);
        true
    }

    fn notify_watchers(
        &self,
        client_id: &[u8],
        online: bool,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) {
        scratch.clear();
        self.presence.watchers_of(client_id, scratch);
        for &w in scratch.iter() {
            sink.presence(w, client_id, online);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Out {
        Deliver(u32, Vec<u8>, Vec<u8>, Vec<u8>),
        Presence(u32, Vec<u8>, bool),
        Close(u32, CloseReason),
        Error(ErrorCode, Vec<u8>),
    }

    #[derive(Default)]
    struct VecSink(Vec<Out>);

    impl Sink for VecSink {
        fn deliver(&mut self, to: Location, sender: &[u8], topic: &[u8], payload: &[u8]) {
            self.0.push(Out::Deliver(
                to.slot,
                sender.into(),
                topic.into(),
                payload.into(),
            ));
        }
        fn presence(&mut self, to: Location, client_id: &[u8], online: bool) {
            self.0
                .push(Out::Presence(to.slot, client_id.into(), online));
        }
        fn close(&mut self, to: Location, reason: CloseReason, _text: &'static str) {
            self.0.push(Out::Close(to.slot, reason));
        }
        fn error_to_origin(&mut self, code: ErrorCode, subject: &[u8], _text: &'static str) {
            self.0.push(Out::Error(code, subject.into()));
        }
    }

    fn loc(slot: u32) -> Location {
        Location {
            node: 0,
            worker: (slot % 2) as u16,
            slot,
            generation: 7,
        }
    }

    fn origin(slot: u32, id: &[u8]) -> Origin<'_> {
        Origin {
            location: loc(slot),
            client_id: id,
        }
    }

    #[test]
    fn send_reaches_the_registered_id_and_unknown_ids_error_to_the_sender() {
        let t = Tables::new();
        let mut sink = VecSink::default();
        let mut scratch = Vec::new();
        t.register(b"bob", loc(2), &mut scratch, &mut sink);
        let g = t.guards();
        assert_eq!(
            t.route_send(&g, origin(1, b"al"), b"bob", b"hi", &mut sink),
            SendOutcome::Routed
        );
        assert_eq!(
            t.route_send(&g, origin(1, b"al"), b"zed", b"hi", &mut sink),
            SendOutcome::UnknownId
        );
        assert_eq!(
            sink.0,
            vec![
                Out::Deliver(2, b"al".to_vec(), vec![], b"hi".to_vec()),
                Out::Error(ErrorCode::UNKNOWN_ID, b"zed".to_vec())
            ]
        );
    }

    #[test]
    fn publish_fans_out_one_per_group_and_no_echo_skips_the_sender() {
        let t = Tables::new();
        for s in 1..=3 {
            t.topics.subscribe(b"chat", b"", loc(s));
        }
        t.topics.subscribe(b"chat", b"workers", loc(10));
        t.topics.subscribe(b"chat", b"workers", loc(11));
        let g = t.guards();
        let mut sink = VecSink::default();
        assert_eq!(
            t.route_publish(&g, origin(1, b"a"), b"chat", b"m", true, &mut sink),
            3
        );
        let slots: Vec<u32> = sink
            .0
            .iter()
            .map(|o| match o {
                Out::Deliver(s, ..) => *s,
                _ => 0,
            })
            .collect();
        assert_eq!(slots, [2, 3, 10]);
        sink.0.clear();
        assert_eq!(
            t.route_publish(&g, origin(1, b"a"), b"chat", b"m", false, &mut sink),
            4
        );
        assert!(
            matches!(sink.0.last(), Some(Out::Deliver(11, ..))),
            "round robin moves on"
        );
        assert_eq!(
            t.route_publish(&g, origin(1, b"a"), b"none", b"m", false, &mut sink),
            0
        );
    }

    #[test]
    fn replacement_closes_the_old_holder_and_presence_follows_the_id() {
        let t = Tables::new();
        let mut sink = VecSink::default();
        let mut scratch = Vec::new();
        t.presence.watch(b"n1", loc(9));
        t.register(b"n1", loc(1), &mut scratch, &mut sink);
        t.register(b"n1", loc(2), &mut scratch, &mut sink);
        assert!(
            !t.unregister(b"n1", loc(1), &mut scratch, &mut sink),
            "old holder's close is silent"
        );
        assert!(t.unregister(b"n1", loc(2), &mut scratch, &mut sink));
        assert_eq!(
            sink.0,
            vec![
                Out::Presence(9, b"n1".to_vec(), true),
                Out::Close(1, CloseReason::REPLACED),
                Out::Presence(9, b"n1".to_vec(), true),
                Out::Presence(9, b"n1".to_vec(), false),
            ]
        );
    }
}

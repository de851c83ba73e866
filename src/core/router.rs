//! Routing decisions (sans-IO): given the shared tables and one client request, decide who
//! receives what, and tell a [`Sink`] to do it. The I/O layer implements the sink (append to a
//! local connection's send buffer, hand over to another worker, or forward over the data link
//! to another node); tests implement it with a Vec. Nothing here allocates per message.
//!
//! Cluster rules: a SEND whose row is owned by another node is forwarded to that node only; a
//! PUBLISH from a local client is forwarded once to each node with plain subscribers and, per
//! queue group without a usable local member, to one node with members; a message that
//! arrived from another node is delivered locally only (never forwarded again), so a message
//! crosses at most one link.

use super::flow::Congestion;
use super::interest::{pick_node_among, InterestTable, RemoteGroup};
use super::location::{Location, LocationTable, Registered, Row};
use super::presence::PresenceTable;
use super::send_memo::SendMemo;
use super::topics::{pick_among, QueueGroup, TopicTable};
use crate::protocol::{CloseReason, ErrorCode, Message};
use papaya::LocalGuard;
use smallvec::SmallVec;

mod acked;
pub use acked::{AckSink, AckedDelivery};

/// Where routed frames go. Every method must be cheap: it runs once per delivery.
pub trait Sink {
    /// Deliver `message` to the connection at `to` (each destination writes it in its own
    /// protocol).
    fn deliver(&mut self, to: Location, message: &Message<'_>);
    /// Deliver to the connection at `to` as the member of queue group `group` picked for
    /// this message. A native DELIVER does not say why it came, so by default this is
    /// [`Self::deliver`]; a NATS connection writes it to one sid of that group only.
    #[inline]
    fn deliver_group(&mut self, to: Location, message: &Message<'_>, group: &[u8]) {
        let _ = group;
        self.deliver(to, message);
    }
    /// Deliver `message` to every connection of `to` but `skip` (a PUBLISH's plain
    /// subscribers); returns how many. A sink may write the message once for all the
    /// destinations one worker owns.
    #[inline]
    fn deliver_each(
        &mut self,
        to: &[Location],
        skip: Option<Location>,
        message: &Message<'_>,
    ) -> usize {
        let mut delivered = 0;
        for &to in to.iter().filter(|&&to| Some(to) != skip) {
            self.deliver(to, message);
            delivered += 1;
        }
        delivered
    }
    /// How congested the queue of the connection at `to` is: a queue group's pick prefers
    /// the least congested member (see [`Congestion`]).
    #[inline]
    fn congestion(&self, to: Location) -> Congestion {
        let _ = to;
        Congestion::Clear
    }
    /// Tell the watcher at `to` that `client_id` went online or offline.
    fn presence(&mut self, to: Location, client_id: &[u8], online: bool);
    /// Close the connection at `to` (for example "replaced").
    fn close(&mut self, to: Location, reason: CloseReason, text: &'static str);
    /// Answer the requesting connection with an ERROR frame.
    fn error_to_origin(&mut self, code: ErrorCode, subject: &[u8], text: &'static str);
    /// Forward a SEND of `message` to `node`, which owns the row of `target`.
    fn forward_send(&mut self, node: u16, target: &[u8], message: &Message<'_>);
    /// Forward a PUBLISH of `message` to `node`: to its plain subscribers (`group` empty) or
    /// to one local member of `group` there.
    fn forward_publish(&mut self, node: u16, message: &Message<'_>, group: &[u8], no_echo: bool);
}

/// Whom a PUBLISH reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Deliveries to connections of this node.
    pub deliveries: usize,
    /// Forwards to other nodes (each to a node with a matching subscription).
    pub forwards: usize,
}

impl Fanout {
    /// No subscriber anywhere in the cluster took the message (NATS "no responders").
    pub fn reached_nobody(&self) -> bool {
        self.deliveries == 0 && self.forwards == 0
    }
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
    /// This node's id (0 when not clustered): rows of other nodes are forwarded.
    pub node_id: u16,
    pub locations: LocationTable,
    pub topics: TopicTable,
    pub presence: PresenceTable,
    /// Topics other nodes subscribe to.
    pub remote_interest: InterestTable,
}

/// Epoch guards for one batch of lookups (one per map).
pub struct Guards<'t> {
    locations: LocalGuard<'t>,
    topics: LocalGuard<'t>,
    topic_patterns: LocalGuard<'t>,
    interest: LocalGuard<'t>,
    interest_patterns: LocalGuard<'t>,
}

/// Outcome of a SEND, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Routed,
    Forwarded,
    UnknownId,
}

impl Tables {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn for_node(node_id: u16) -> Self {
        Tables {
            node_id,
            ..Self::default()
        }
    }

    /// Guards for a batch; drop them at the end of the batch so memory can be reclaimed.
    pub fn guards(&self) -> Guards<'_> {
        Guards {
            locations: self.locations.raw_guard(),
            topics: self.topics.raw_guard(),
            topic_patterns: self.topics.patterns_guard(),
            interest: self.remote_interest.raw_guard(),
            interest_patterns: self.remote_interest.patterns_guard(),
        }
    }

    /// Where the client registered as `id` is, in this node's table.
    pub fn locate(&self, guards: &Guards<'_>, id: &[u8]) -> Option<Location> {
        self.locations.get(id, &guards.locations)
    }

    /// A SEND of `message` to the client registered as `target`: delivered here, forwarded
    /// to the node that owns the row, or answered UNKNOWN_ID.
    #[inline]
    pub fn route_send(
        &self,
        guards: &Guards<'_>,
        target: &[u8],
        message: &Message<'_>,
        sink: &mut impl Sink,
    ) -> SendOutcome {
        let to = self.locations.get(target, &guards.locations);
        self.send_to(to, target, message, sink)
    }

    /// [`Self::route_send`] for a receive's stream of SENDs: the table is read only when
    /// `target` is not the id `memo` remembers (see [`SendMemo`]).
    #[inline(always)]
    pub fn route_send_memo(
        &self,
        guards: &Guards<'_>,
        memo: &mut SendMemo,
        target: &[u8],
        message: &Message<'_>,
        sink: &mut impl Sink,
    ) -> SendOutcome {
        let to = match memo.get(target) {
            Some(to) => Some(to),
            None => {
                let to = self.locations.get(target, &guards.locations);
                if let Some(to) = to {
                    memo.put(target, to);
                }
                to
            }
        };
        self.send_to(to, target, message, sink)
    }

    #[inline(always)]
    fn send_to(
        &self,
        to: Option<Location>,
        target: &[u8],
        message: &Message<'_>,
        sink: &mut impl Sink,
    ) -> SendOutcome {
        match to {
            Some(to) if to.node == self.node_id => {
                sink.deliver(to, message);
                SendOutcome::Routed
            }
            Some(to) => {
                sink.forward_send(to.node, target, message);
                SendOutcome::Forwarded
            }
            None => {
                sink.error_to_origin(ErrorCode::UNKNOWN_ID, target, "unknown id");
                SendOutcome::UnknownId
            }
        }
    }

    /// A SEND forwarded by another node: delivered if the target is still a client of this
    /// node, else dropped (it moved or left while the message was on the link). Returns
    /// whether it was delivered.
    #[inline]
    pub fn route_forwarded_send(
        &self,
        guards: &Guards<'_>,
        target: &[u8],
        message: &Message<'_>,
        sink: &mut impl Sink,
    ) -> bool {
        match self.locations.get(target, &guards.locations) {
            Some(to) if to.node == self.node_id => {
                sink.deliver(to, message);
                true
            }
            _ => false,
        }
    }

    /// Fans `message` out to every plain subscriber of its topic and one member per queue
    /// group, here and on other nodes (a local member of a group is preferred). With
    /// `no_echo` the publishing connection (`from`) receives nothing.
    #[inline]
    pub fn route_publish(
        &self,
        guards: &Guards<'_>,
        from: Location,
        message: &Message<'_>,
        no_echo: bool,
        sink: &mut impl Sink,
    ) -> Fanout {
        if self.topics.has_patterns() || self.remote_interest.has_patterns() {
            return self.route_publish_matched(guards, from, message, no_echo, sink);
        }
        let topic = message.topic;
        let local = self.topics.get(topic, &guards.topics);
        let remote = self.remote_interest.get(topic, &guards.interest);
        let exclude = no_echo.then_some(from);
        let mut fanout = Fanout::default();
        if let Some(entry) = local {
            fanout.deliveries += sink.deliver_each(&entry.plain, exclude, message);
            for group in entry.groups.iter() {
                if let Some(to) = group.pick(exclude, |m| sink.congestion(m)) {
                    sink.deliver_group(to, message, &group.name);
                    fanout.deliveries += 1;
                } else if let Some(node) = remote
                    .and_then(|r| r.groups.iter().find(|g| g.name == group.name))
                    .and_then(|g| g.pick())
                {
                    sink.forward_publish(node, message, &group.name, no_echo);
                    fanout.forwards += 1;
                }
            }
        }
        if let Some(remote) = remote {
            for &node in remote.plain.iter() {
                sink.forward_publish(node, message, b"", no_echo);
                fanout.forwards += 1;
            }
            for group in remote.groups.iter() {
                let served_here =
                    local.is_some_and(|e| e.groups.iter().any(|g| g.name == group.name));
                if !served_here {
                    if let Some(node) = group.pick() {
                        sink.forward_publish(node, message, &group.name, no_echo);
                        fanout.forwards += 1;
                    }
                }
            }
        }
        fanout
    }

    /// A PUBLISH forwarded by another node: to the local plain subscribers (`group` empty) or
    /// to one local member of `group`. Returns the number of deliveries.
    #[inline]
    pub fn route_forwarded_publish(
        &self,
        guards: &Guards<'_>,
        message: &Message<'_>,
        group: &[u8],
        sink: &mut impl Sink,
    ) -> usize {
        if self.topics.has_patterns() {
            return self.route_forwarded_publish_matched(guards, message, group, sink);
        }
        let Some(entry) = self.topics.get(message.topic, &guards.topics) else {
            return 0;
        };
        if group.is_empty() {
            return sink.deliver_each(&entry.plain, None, message);
        }
        match entry
            .groups
            .iter()
            .find(|g| &*g.name == group)
            .and_then(|g| g.pick(None, |m| sink.congestion(m)))
        {
            Some(to) => {
                sink.deliver_group(to, message, group);
                1
            }
            None => 0,
        }
    }

    /// [`Self::route_publish`] while patterns exist: every subscription that matches the topic
    /// (the exact topic and each pattern) counts, with the rules of one delivery per
    /// connection, one member per queue group name (merged across the matches), one forward
    /// per node with plain interest, and one node per remote group name not served here.
    #[inline(never)]
    fn route_publish_matched(
        &self,
        guards: &Guards<'_>,
        from: Location,
        message: &Message<'_>,
        no_echo: bool,
        sink: &mut impl Sink,
    ) -> Fanout {
        let topic = message.topic;
        let exclude = no_echo.then_some(from);
        let mut plain: SmallVec<[Location; 32]> = SmallVec::new();
        let mut groups: SmallVec<[&QueueGroup; 8]> = SmallVec::new();
        self.topics
            .for_each_match(topic, &guards.topics, &guards.topic_patterns, |e| {
                plain.extend_from_slice(&e.plain);
                groups.extend(e.groups.iter().map(|g| &**g));
            });
        let mut remote_plain: SmallVec<[u16; 16]> = SmallVec::new();
        let mut remote_groups: SmallVec<[&RemoteGroup; 8]> = SmallVec::new();
        self.remote_interest.for_each_match(
            topic,
            &guards.interest,
            &guards.interest_patterns,
            |e| {
                remote_plain.extend_from_slice(&e.plain);
                remote_groups.extend(e.groups.iter());
            },
        );
        plain.sort_unstable();
        plain.dedup();
        let mut fanout = Fanout::default();
        fanout.deliveries += sink.deliver_each(&plain, exclude, message);
        groups.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        remote_groups.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for run in groups.chunk_by(|a, b| a.name == b.name) {
            let name = &run[0].name;
            if let Some(to) = pick_among(run, exclude, |m| sink.congestion(m)) {
                sink.deliver_group(to, message, name);
                fanout.deliveries += 1;
            } else if let Some(node) = pick_node_among(named(&remote_groups, name)) {
                sink.forward_publish(node, message, name, no_echo);
                fanout.forwards += 1;
            }
        }
        remote_plain.sort_unstable();
        remote_plain.dedup();
        for &node in remote_plain.iter() {
            sink.forward_publish(node, message, b"", no_echo);
            fanout.forwards += 1;
        }
        for run in remote_groups.chunk_by(|a, b| a.name == b.name) {
            let name = &run[0].name;
            let served_here = groups.iter().any(|g| g.name == *name);
            if !served_here {
                if let Some(node) = pick_node_among(run) {
                    sink.forward_publish(node, message, name, no_echo);
                    fanout.forwards += 1;
                }
            }
        }
        fanout
    }

    /// [`Self::route_forwarded_publish`] while local patterns exist: the plain subscribers of
    /// every matching subscription (once per connection), or one member of `group` merged
    /// across them.
    #[inline(never)]
    fn route_forwarded_publish_matched(
        &self,
        guards: &Guards<'_>,
        message: &Message<'_>,
        group: &[u8],
        sink: &mut impl Sink,
    ) -> usize {
        let mut plain: SmallVec<[Location; 32]> = SmallVec::new();
        let mut groups: SmallVec<[&QueueGroup; 8]> = SmallVec::new();
        self.topics
            .for_each_match(message.topic, &guards.topics, &guards.topic_patterns, |e| {
                if group.is_empty() {
                    plain.extend_from_slice(&e.plain);
                } else {
                    groups.extend(e.groups.iter().filter(|g| &*g.name == group).map(|g| &**g));
                }
            });
        if !group.is_empty() {
            return match pick_among(&groups, None, |m| sink.congestion(m)) {
                Some(to) => {
                    sink.deliver_group(to, message, group);
                    1
                }
                None => 0,
            };
        }
        plain.sort_unstable();
        plain.dedup();
        sink.deliver_each(&plain, None, message)
    }

    /// Registers `client_id` at `location` with a fresh `epoch`: an older local holder of the
    /// id is closed as "replaced", and watchers learn that the id is online. If a newer row
    /// (from another node) holds the id, this connection is the one replaced. `scratch` is a
    /// reused buffer.
    pub fn register(
        &self,
        client_id: &[u8],
        location: Location,
        epoch: u64,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) -> Registered {
        scratch.clear();
        let outcome = {
            let held = self.presence.hold();
            let outcome = self.locations.register(client_id, Row { location, epoch });
            if !matches!(outcome, Registered::Lost(_)) {
                held.watchers_of(client_id, scratch);
            }
            outcome
        };
        match outcome {
            Registered::Replaced(old) if old.location.node == self.node_id => {
                sink.close(
                    old.location,
                    CloseReason::REPLACED,
                    "replaced by a newer connection with the same id",
                );
            }
            Registered::Lost(_) => {
                sink.close(
                    location,
                    CloseReason::REPLACED,
                    "replaced by a newer connection with the same id on another node",
                );
                return outcome;
            }
            _ => {}
        }
        notify(scratch, client_id, true, sink);
        outcome
    }

    /// Removes the row of a closing connection (unless a newer registration owns the id) and
    /// tells watchers it went offline. Returns the removed row.
    pub fn unregister(
        &self,
        client_id: &[u8],
        location: Location,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) -> Option<Row> {
        scratch.clear();
        let removed = {
            let held = self.presence.hold();
            let removed = self.locations.remove_if_at(client_id, location)?;
            held.watchers_of(client_id, scratch);
            removed
        };
        notify(scratch, client_id, false, sink);
        Some(removed)
    }

    /// Applies a row another node owns: stored if it beats the current row; a local holder it
    /// beats is closed as "replaced"; watchers learn of a new id.
    pub fn apply_remote_row(
        &self,
        client_id: &[u8],
        row: Row,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) -> Registered {
        debug_assert_ne!(
            row.location.node, self.node_id,
            "own rows are written locally"
        );
        scratch.clear();
        let outcome = {
            let held = self.presence.hold();
            let outcome = self.locations.register(client_id, row);
            if outcome == Registered::New {
                held.watchers_of(client_id, scratch);
            }
            outcome
        };
        match outcome {
            Registered::New => notify(scratch, client_id, true, sink),
            Registered::Replaced(old) if old.location.node == self.node_id => sink.close(
                old.location,
                CloseReason::REPLACED,
                "replaced by a newer connection with the same id on another node",
            ),
            _ => {}
        }
        outcome
    }

    /// Removes the row `node` registered at `epoch`, if it is still the current one; watchers
    /// learn the id went offline.
    pub fn remove_remote_row(
        &self,
        client_id: &[u8],
        node: u16,
        epoch: u64,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) -> bool {
        scratch.clear();
        {
            let held = self.presence.hold();
            if !self.locations.remove_exact(client_id, node, epoch) {
                return false;
            }
            held.watchers_of(client_id, scratch);
        }
        notify(scratch, client_id, false, sink);
        true
    }

    /// Removes every row of `node` that `keep` rejects (a dead node: keep nothing; a snapshot:
    /// keep its rows); watchers learn those ids went offline. Returns how many were removed.
    pub fn purge_node_rows(
        &self,
        node: u16,
        keep: impl FnMut(&[u8], u64) -> bool,
        scratch: &mut Vec<Location>,
        sink: &mut impl Sink,
    ) -> usize {
        // Listed lock-free, then removed one by one, each under its own short presence hold
        // (the "told once" rule is per id): one hold for a scan of the whole table would
        // stall every worker's HELLO, close and WATCH for as long as the scan takes.
        let doomed = self.locations.node_rows_not_kept(node, keep);
        doomed
            .iter()
            .filter(|(id, epoch)| self.remove_remote_row(id, node, *epoch, scratch, sink))
            .count()
    }
}

/// Tells each watcher in `watchers` (read under the presence hold) that `client_id` is now
/// online or offline; called after the hold is dropped.
fn notify(watchers: &[Location], client_id: &[u8], online: bool, sink: &mut impl Sink) {
    for &w in watchers {
        sink.presence(w, client_id, online);
    }
}

/// The run of `groups` (sorted by name) named `name`.
fn named<'a, 'g>(groups: &'a [&'g RemoteGroup], name: &[u8]) -> &'a [&'g RemoteGroup] {
    let start = groups.partition_point(|g| &*g.name < name);
    let end = start + groups[start..].partition_point(|g| &*g.name == name);
    &groups[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    mod patterns;

    #[derive(Debug, PartialEq)]
    pub(super) enum Out {
        Deliver(u32, Vec<u8>, Vec<u8>, Vec<u8>),
        Presence(u32, Vec<u8>, bool),
        Close(u32, CloseReason),
        Error(ErrorCode, Vec<u8>),
        FwdSend(u16, Vec<u8>, Vec<u8>),
        FwdPub(u16, Vec<u8>, Vec<u8>, bool),
    }

    #[derive(Default)]
    pub(super) struct VecSink(pub(super) Vec<Out>);

    impl Sink for VecSink {
        fn deliver(&mut self, to: Location, m: &Message<'_>) {
            self.0.push(Out::Deliver(
                to.slot,
                m.sender.into(),
                m.topic.into(),
                m.payload.into(),
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
        fn forward_send(&mut self, node: u16, target: &[u8], m: &Message<'_>) {
            self.0
                .push(Out::FwdSend(node, m.sender.into(), target.into()));
        }
        fn forward_publish(&mut self, node: u16, m: &Message<'_>, group: &[u8], no_echo: bool) {
            self.0
                .push(Out::FwdPub(node, m.topic.into(), group.into(), no_echo));
        }
    }

    /// [`Tables::route_send`] of a plain message from `origin`.
    pub(super) fn send(
        t: &Tables,
        g: &Guards<'_>,
        origin: Origin<'_>,
        target: &[u8],
        payload: &[u8],
        sink: &mut VecSink,
    ) -> SendOutcome {
        let message = Message::plain(origin.client_id, b"", payload);
        t.route_send(g, target, &message, sink)
    }

    /// [`Tables::route_publish`] of a plain message from `origin`; the local deliveries.
    pub(super) fn publish(
        t: &Tables,
        g: &Guards<'_>,
        origin: Origin<'_>,
        topic: &[u8],
        payload: &[u8],
        no_echo: bool,
        sink: &mut VecSink,
    ) -> usize {
        let message = Message::plain(origin.client_id, topic, payload);
        t.route_publish(g, origin.location, &message, no_echo, sink)
            .deliveries
    }

    /// [`Tables::route_forwarded_publish`] of a plain message.
    pub(super) fn forwarded_publish(
        t: &Tables,
        g: &Guards<'_>,
        sender: &[u8],
        topic: &[u8],
        group: &[u8],
        payload: &[u8],
        sink: &mut VecSink,
    ) -> usize {
        let message = Message::plain(sender, topic, payload);
        t.route_forwarded_publish(g, &message, group, sink)
    }

    pub(super) fn loc(slot: u32) -> Location {
        Location {
            node: 0,
            worker: (slot % 2) as u16,
            slot,
            generation: 7,
        }
    }

    pub(super) fn origin(slot: u32, id: &[u8]) -> Origin<'_> {
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
        t.register(b"bob", loc(2), 1, &mut scratch, &mut sink);
        let g = t.guards();
        assert_eq!(
            send(&t, &g, origin(1, b"al"), b"bob", b"hi", &mut sink),
            SendOutcome::Routed
        );
        assert_eq!(
            send(&t, &g, origin(1, b"al"), b"zed", b"hi", &mut sink),
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
            publish(&t, &g, origin(1, b"a"), b"chat", b"m", true, &mut sink),
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
            publish(&t, &g, origin(1, b"a"), b"chat", b"m", false, &mut sink),
            4
        );
        assert!(
            matches!(sink.0.last(), Some(Out::Deliver(11, ..))),
            "round robin moves on"
        );
        assert_eq!(
            publish(&t, &g, origin(1, b"a"), b"none", b"m", false, &mut sink),
            0
        );
    }

    #[test]
    fn replacement_closes_the_old_holder_and_presence_follows_the_id() {
        let t = Tables::new();
        let mut sink = VecSink::default();
        let mut scratch = Vec::new();
        t.presence.watch(b"n1", loc(9));
        t.register(b"n1", loc(1), 1, &mut scratch, &mut sink);
        t.register(b"n1", loc(2), 2, &mut scratch, &mut sink);
        assert!(
            t.unregister(b"n1", loc(1), &mut scratch, &mut sink)
                .is_none(),
            "old holder's close is silent"
        );
        assert!(t
            .unregister(b"n1", loc(2), &mut scratch, &mut sink)
            .is_some());
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

    fn remote_row(node: u16, epoch: u64) -> Row {
        Row {
            location: Location::remote(node),
            epoch,
        }
    }

    #[test]
    fn send_to_a_remote_row_is_forwarded_to_its_node_only() {
        let t = Tables::for_node(1);
        let mut sink = VecSink::default();
        let mut scratch = Vec::new();
        t.apply_remote_row(b"far", remote_row(3, 10), &mut scratch, &mut sink);
        let g = t.guards();
        let mut o = origin(1, b"al");
        o.location.node = 1;
        assert_eq!(
            send(&t, &g, o, b"far", b"hi", &mut sink),
            SendOutcome::Forwarded
        );
        assert_eq!(
            sink.0,
            vec![Out::FwdSend(3, b"al".to_vec(), b"far".to_vec())]
        );
        sink.0.clear();
        assert!(
            !t.route_forwarded_send(&g, b"far", &Message::plain(b"x", b"", b"hi"), &mut sink),
            "a forwarded message is never forwarded again"
        );
        assert!(sink.0.is_empty());
    }

    #[test]
    fn publish_forwards_once_per_interested_node_and_prefers_local_group_members() {
        let t = Tables::for_node(1);
        let mut me = loc(1);
        me.node = 1;
        let mut member = loc(5);
        member.node = 1;
        t.remote_interest.set(2, b"t", b"", true);
        t.remote_interest.set(3, b"t", b"", true);
        t.remote_interest.set(2, b"t", b"q", true);
        t.remote_interest.set(3, b"t", b"q", true);
        let o = Origin {
            location: me,
            client_id: b"me",
        };
        let mut sink = VecSink::default();
        publish(&t, &t.guards(), o, b"t", b"m", false, &mut sink);
        assert_eq!(
            sink.0,
            vec![
                Out::FwdPub(2, b"t".to_vec(), vec![], false),
                Out::FwdPub(3, b"t".to_vec(), vec![], false),
                Out::FwdPub(2, b"t".to_vec(), b"q".to_vec(), false),
            ],
            "plain to every node, the group to one node"
        );
        sink.0.clear();
        t.topics.subscribe(b"t", b"q", member);
        for _ in 0..3 {
            publish(&t, &t.guards(), o, b"t", b"m", true, &mut sink);
        }
        assert!(
            sink.0
                .iter()
                .all(|x| !matches!(x, Out::FwdPub(_, _, g, _) if !g.is_empty())),
            "a local member takes every group message: {:?}",
            sink.0
        );
        sink.0.clear();
        // With no-echo and the publisher the only local member, the group goes remote.
        t.topics.unsubscribe(b"t", b"q", member);
        t.topics.subscribe(b"t", b"q", me);
        publish(&t, &t.guards(), o, b"t", b"m", true, &mut sink);
        assert!(sink
            .0
            .iter()
            .any(|x| matches!(x, Out::FwdPub(_, _, g, true) if g == b"q")));
    }

    #[test]
    fn forwarded_publish_reaches_local_plain_subscribers_or_one_group_member() {
        let t = Tables::for_node(1);
        for s in 1..=2 {
            let mut l = loc(s);
            l.node = 1;
            t.topics.subscribe(b"t", b"", l);
        }
        for s in 3..=4 {
            let mut l = loc(s);
            l.node = 1;
            t.topics.subscribe(b"t", b"q", l);
        }
        let mut sink = VecSink::default();
        let g = t.guards();
        assert_eq!(
            forwarded_publish(&t, &g, b"x", b"t", b"", b"m", &mut sink),
            2
        );
        assert_eq!(
            forwarded_publish(&t, &g, b"x", b"t", b"q", b"m", &mut sink),
            1
        );
        assert_eq!(
            forwarded_publish(&t, &g, b"x", b"t", b"z", b"m", &mut sink),
            0
        );
        assert_eq!(sink.0.len(), 3);
    }

    #[test]
    fn remote_rows_merge_by_epoch_and_close_the_local_loser() {
        let t = Tables::for_node(1);
        let mut sink = VecSink::default();
        let mut scratch = Vec::new();
        let mut here = loc(4);
        here.node = 1;
        t.presence.watch(b"id", loc(9));
        assert_eq!(
            t.register(b"id", here, 5, &mut scratch, &mut sink),
            Registered::New
        );
        // An older remote row loses; a newer one replaces the local holder.
        assert!(matches!(
            t.apply_remote_row(b"id", remote_row(2, 4), &mut scratch, &mut sink),
            Registered::Lost(_)
        ));
        assert!(matches!(
            t.apply_remote_row(b"id", remote_row(2, 6), &mut scratch, &mut sink),
            Registered::Replaced(_)
        ));
        // A local registration older than the remote row loses and is closed.
        let mut late = loc(6);
        late.node = 1;
        assert!(matches!(
            t.register(b"id", late, 5, &mut scratch, &mut sink),
            Registered::Lost(_)
        ));
        assert!(!t.remove_remote_row(b"id", 2, 5, &mut scratch, &mut sink));
        assert!(t.remove_remote_row(b"id", 2, 6, &mut scratch, &mut sink));
        assert_eq!(
            sink.0,
            vec![
                Out::Presence(9, b"id".to_vec(), true),
                Out::Close(4, CloseReason::REPLACED),
                Out::Close(6, CloseReason::REPLACED),
                Out::Presence(9, b"id".to_vec(), false),
            ]
        );
        t.apply_remote_row(b"a", remote_row(3, 1), &mut scratch, &mut sink);
        t.apply_remote_row(b"b", remote_row(3, 1), &mut scratch, &mut sink);
        assert_eq!(
            t.purge_node_rows(3, |id, _| id == b"a", &mut scratch, &mut sink),
            1
        );
        assert_eq!(t.locations.len(), 1);
    }
}

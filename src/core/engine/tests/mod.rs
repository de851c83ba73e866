//! One test per rule, with a recording [`Output`] and real [`Tables`].

use super::*;
use crate::core::drop_reports::DropReports;
use crate::core::router::{AckedDelivery, Guards, Sink};
use crate::core::session::Phase;
use crate::protocol::{AckFields, DecodeError, ErrorCode, FrameKind, Message, MsgId};

mod acked;
mod auth;
mod drop_reports;
mod key_proof;
mod limits;
mod message_lane;
mod nats;
mod not_ready;
mod patterns;
mod requests;

#[derive(Debug, PartialEq)]
enum Out {
    Deliver(u32, Vec<u8>, Vec<u8>, Vec<u8>),
    Presence(u32, Vec<u8>, bool),
    Close(u32, CloseReason),
    CloseConn(u32, CloseReason),
    Error(ErrorCode, Vec<u8>),
    FwdSend(u16, Vec<u8>),
    FwdPub(u16, Vec<u8>),
    /// A frame the relay produced, by kind (ERROR frames recorded with their code).
    Local(u32, FrameKind),
    LocalError(u32, ErrorCode),
    Registered(Vec<u8>),
    Unregistered(Vec<u8>),
    Interest(Vec<u8>, Vec<u8>),
    Count(Counter),
    /// A secret to verify off the worker, for the HELLO held at the slot.
    Verify(u32, String, Vec<u8>),
    Held(u32),
    Welcome(u32, u16),
    DeliverAcked(u32, Vec<u8>, MsgId, Vec<u8>),
    Receipt(u32, Vec<u8>, bool, u64),
    ErrorAcked(ErrorCode, Vec<u8>, MsgId),
    LocalErrorAcked(u32, ErrorCode, MsgId),
    FwdSendAcked(u16, Vec<u8>, MsgId),
    FwdAck(u16, Vec<u8>, Vec<u8>, u64),
    /// An ERROR to a client of this node on any worker: (slot, code, subject).
    SendError(u32, ErrorCode, Vec<u8>),
    /// FWD_DROPPED to a node: (node, sender, subject, count).
    FwdDropped(u16, Vec<u8>, Vec<u8>, u32),
    /// NATS protocol bytes the NATS rules queued for a slot.
    Nats(u32, Vec<u8>),
    /// Follows the `Deliver` of a message with a reply topic or headers: (slot, reply,
    /// headers).
    Extensions(u32, Vec<u8>, Vec<u8>),
}

struct Rec {
    out: Vec<Out>,
    /// NATS connections' state by slot (see `nats.rs`).
    nats: std::collections::HashMap<u32, crate::core::engine::nats::NatsConn>,
    /// Slots whose client speaks protocol version 1 (as the worker would find them).
    version_1: Vec<u32>,
    ready: bool,
    overloaded: bool,
    /// A delivery to this slot is dropped at a bound (sets `overloaded`), as a full queue
    /// would drop it.
    full_slot: Option<u32>,
    /// Drop reports find their queue full (`send_error` and `forward_dropped` answer false).
    reports_refused: bool,
    epoch: u64,
    /// The nonce of the next CHALLENGE (the I/O layer draws one from the OS); `None`: none
    /// could be drawn.
    nonce: Option<[u8; 32]>,
    /// The texts of the closes recorded in `out`, in order.
    close_texts: Vec<String>,
    /// The driven connection's close is requested by the output once this many deliveries
    /// are recorded (as a worker's slow-consumer close would be).
    closing_after_deliveries: Option<usize>,
}

impl Rec {
    fn new() -> Self {
        Rec {
            out: Vec::new(),
            nats: Default::default(),
            version_1: Vec::new(),
            ready: true,
            overloaded: false,
            full_slot: None,
            reports_refused: false,
            epoch: 0,
            nonce: Some([0x5a; 32]),
            close_texts: Vec::new(),
            closing_after_deliveries: None,
        }
    }

    fn take(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }
}

impl Sink for Rec {
    fn deliver(&mut self, to: Location, m: &Message<'_>) {
        if self.full_slot == Some(to.slot) {
            self.overloaded = true;
            return;
        }
        self.out.push(Out::Deliver(
            to.slot,
            m.sender.into(),
            m.topic.into(),
            m.payload.into(),
        ));
        if m.is_extended() {
            self.out
                .push(Out::Extensions(to.slot, m.reply.into(), m.headers.into()));
        }
    }
    fn presence(&mut self, to: Location, client_id: &[u8], online: bool) {
        self.out
            .push(Out::Presence(to.slot, client_id.into(), online));
    }
    fn close(&mut self, to: Location, reason: CloseReason, text: &'static str) {
        self.close_texts.push(text.into());
        self.out.push(Out::Close(to.slot, reason));
    }
    fn error_to_origin(&mut self, code: ErrorCode, subject: &[u8], _text: &'static str) {
        self.out.push(Out::Error(code, subject.into()));
    }
    fn forward_send(&mut self, node: u16, target: &[u8], _: &Message<'_>) {
        self.out.push(Out::FwdSend(node, target.into()));
    }
    fn forward_publish(&mut self, node: u16, m: &Message<'_>, _group: &[u8], _no_echo: bool) {
        self.out.push(Out::FwdPub(node, m.topic.into()));
    }
}

impl AckSink for Rec {
    fn deliver_acked(
        &mut self,
        to: Location,
        sender: &[u8],
        id: MsgId,
        payload: &[u8],
    ) -> AckedDelivery {
        if self.version_1.contains(&to.slot) {
            return AckedDelivery::Unsupported;
        }
        if self.full_slot == Some(to.slot) {
            self.overloaded = true;
            return AckedDelivery::Dropped;
        }
        self.out.push(Out::DeliverAcked(
            to.slot,
            sender.into(),
            id,
            payload.into(),
        ));
        AckedDelivery::Queued
    }
    fn receipt(&mut self, to: Location, from: &[u8], gap: bool, ack: &AckFields<'_>) {
        self.out
            .push(Out::Receipt(to.slot, from.into(), gap, ack.upto));
    }
    fn error_to_origin_acked(
        &mut self,
        code: ErrorCode,
        subject: &[u8],
        id: MsgId,
        _text: &'static str,
    ) {
        self.out.push(Out::ErrorAcked(code, subject.into(), id));
    }
    fn forward_send_acked(
        &mut self,
        node: u16,
        _sender: &[u8],
        target: &[u8],
        id: MsgId,
        _payload: &[u8],
    ) {
        self.out.push(Out::FwdSendAcked(node, target.into(), id));
    }
    fn forward_ack(&mut self, node: u16, from: &[u8], to: &[u8], _gap: bool, ack: &AckFields<'_>) {
        self.out
            .push(Out::FwdAck(node, from.into(), to.into(), ack.upto));
    }
}

impl Output for Rec {
    fn send_frame_local(&mut self, to: Location, frame: &Frame<'_>) {
        match frame {
            Frame::Error { code, .. } => self.out.push(Out::LocalError(to.slot, *code)),
            Frame::ErrorAcked { code, id, .. } => {
                self.out.push(Out::LocalErrorAcked(to.slot, *code, *id))
            }
            Frame::Welcome { version, .. } if *version != crate::protocol::PROTOCOL_VERSION => {
                self.out.push(Out::Welcome(to.slot, *version))
            }
            _ => self.out.push(Out::Local(to.slot, frame.kind())),
        }
    }
    fn close_conn(&mut self, at: Location, reason: CloseReason, text: Cow<'static, str>) {
        self.close_texts.push(text.into_owned());
        self.out.push(Out::CloseConn(at.slot, reason));
    }
    fn cluster(&mut self, event: ClusterEvent<'_>) {
        self.out.push(match event {
            ClusterEvent::Registered { id, .. } => Out::Registered(id.into()),
            ClusterEvent::Unregistered { id, .. } => Out::Unregistered(id.into()),
            ClusterEvent::InterestChanged { topic, group } => {
                Out::Interest(topic.into(), group.into())
            }
        });
    }
    fn count(&mut self, counter: Counter) {
        self.out.push(Out::Count(counter));
    }
    fn node_ready(&self) -> bool {
        self.ready
    }
    fn driven_closing(&self) -> bool {
        self.closing_after_deliveries.is_some_and(|n| {
            self.out
                .iter()
                .filter(|o| matches!(o, Out::Deliver(..)))
                .count()
                >= n
        })
    }
    fn next_epoch(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }
    fn hello_held(&mut self, at: Location) {
        self.out.push(Out::Held(at.slot));
    }
    fn verify_secret(
        &mut self,
        at: Location,
        name: &str,
        secret: &[u8],
    ) -> crate::core::credentials::Verification {
        self.out
            .push(Out::Verify(at.slot, name.into(), secret.into()));
        crate::core::credentials::Verification::Pending
    }
    fn take_overloaded(&mut self) -> bool {
        std::mem::take(&mut self.overloaded)
    }
    fn send_error(
        &mut self,
        to: Location,
        code: ErrorCode,
        subject: &[u8],
        _: &'static str,
    ) -> bool {
        if self.reports_refused {
            return false;
        }
        self.out.push(Out::SendError(to.slot, code, subject.into()));
        true
    }
    fn forward_dropped(&mut self, node: u16, sender: &[u8], subject: &[u8], count: u32) -> bool {
        if self.reports_refused {
            return false;
        }
        self.out
            .push(Out::FwdDropped(node, sender.into(), subject.into(), count));
        true
    }
    fn challenge_nonce(&mut self) -> Option<[u8; 32]> {
        self.nonce
    }
}

const NODE: u16 = 1;

fn config() -> EngineConfig {
    EngineConfig {
        session: SessionConfig {
            handshake_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            heartbeat_misses_max: 2,
            frame_complete_timeout_ms: 1000,
            gate: crate::core::credentials::Gate::default(),
            authorize: None,
        },
        clustered: true,
        local_presence: false,
        heartbeat_interval_ms: 100,
        max_frame_bytes: 1 << 20,
        payload_bytes_max: crate::protocol::payload_bytes_max(1 << 20),
        limits: ClientLimits {
            subscriptions_per_connection_max: 3,
            watches_per_connection_max: 3,
            topic_bytes_max: 8,
            group_bytes_max: 4,
            topics_max: 5,
            watched_ids_max: 5,
            subscriptions_max: 7,
            watches_max: 7,
        },
    }
}

fn loc(slot: u32) -> Location {
    Location {
        node: NODE,
        worker: 0,
        slot,
        generation: 1,
    }
}

/// One relay (tables, settings) and its connections by slot.
struct Harness {
    tables: Tables,
    config: EngineConfig,
    conns: Vec<ConnRelay>,
    scratch: Vec<Location>,
    rec: Rec,
}

impl Harness {
    fn new() -> Self {
        Harness {
            tables: Tables::for_node(NODE),
            config: config(),
            conns: Vec::new(),
            scratch: Vec::new(),
            rec: Rec::new(),
        }
    }

    fn connect(&mut self) -> u32 {
        self.conns.push(ConnRelay::client(0, &self.config.session));
        self.conns.len() as u32 - 1
    }

    fn frame(&mut self, slot: u32, frame: Frame<'_>) {
        let engine = Engine::new(&self.tables, &self.config);
        let guards: Guards<'_> = self.tables.guards();
        engine.on_frame(
            &mut self.conns[slot as usize],
            loc(slot),
            &guards,
            frame,
            &mut self.scratch,
            &mut self.rec,
        );
    }

    fn hello(&mut self, slot: u32, id: &[u8]) {
        self.frame(
            slot,
            Frame::Hello {
                version: crate::protocol::PROTOCOL_VERSION,
                client_id: id,
                token: b"",
            },
        );
    }

    /// A connection with a registered id; the outputs so far are discarded.
    fn client(&mut self, id: &[u8]) -> u32 {
        let slot = self.connect();
        self.hello(slot, id);
        self.rec.take();
        slot
    }

    fn close(&mut self, slot: u32) {
        let engine = Engine::new(&self.tables, &self.config);
        engine.on_close(
            &mut self.conns[slot as usize],
            loc(slot),
            &mut self.scratch,
            &mut self.rec,
        );
    }

    fn tick(&mut self, slot: u32, now_ms: u64) {
        let engine = Engine::new(&self.tables, &self.config);
        engine.on_tick(
            &mut self.conns[slot as usize],
            loc(slot),
            now_ms,
            &mut self.rec,
        );
    }

    fn ready(&mut self, slot: u32) {
        let engine = Engine::new(&self.tables, &self.config);
        let guards: Guards<'_> = self.tables.guards();
        engine.on_ready(
            &mut self.conns[slot as usize],
            loc(slot),
            &guards,
            &mut self.scratch,
            &mut self.rec,
        );
    }

    fn decode_error(&mut self, slot: u32, error: DecodeError) {
        let engine = Engine::new(&self.tables, &self.config);
        engine.on_decode_error(
            &mut self.conns[slot as usize],
            loc(slot),
            &error,
            &mut self.rec,
        );
    }
}

fn sub<'a>(topic: &'a [u8], group: &'a [u8]) -> Frame<'a> {
    Frame::Subscribe { topic, group }
}

fn unsub<'a>(topic: &'a [u8], group: &'a [u8]) -> Frame<'a> {
    Frame::Unsubscribe { topic, group }
}

#[test]
fn hello_when_ready_sends_welcome_before_registering_and_announcing() {
    let mut h = Harness::new();
    let watcher = h.client(b"w");
    h.frame(watcher, Frame::Watch { client_id: b"bob" });
    assert_eq!(
        h.rec.take(),
        vec![Out::Presence(watcher, b"bob".to_vec(), false)],
        "a WATCH is answered with the id's present state"
    );
    let bob = h.connect();
    h.hello(bob, b"bob");
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Local(bob, FrameKind::Welcome),
            Out::Presence(watcher, b"bob".to_vec(), true),
            Out::Registered(b"bob".to_vec()),
        ]
    );
    assert_eq!(h.conns[bob as usize].client_id(), b"bob");
}

/// A WATCH on one thread and the id's registration (a row from another node, applied by the
/// control thread) on another, started together with an offset swept over the rounds: the
/// watcher hears "online" exactly once, in WATCH's answer or as a notice, however they
/// interleave. Before WATCH read the row under the presence table's hold, a registration
/// that fell between its two steps was told twice.
#[test]
fn a_watch_racing_a_registration_hears_online_exactly_once() {
    use crate::core::location::Row;
    use std::sync::atomic::{AtomicU64, Ordering};
    const ROUNDS: u64 = 20_000;
    let mut h = Harness::new();
    let watcher = h.client(b"w");
    h.rec.take();
    let Harness {
        tables,
        config,
        conns,
        scratch,
        rec,
        ..
    } = &mut h;
    let tables = &*tables;
    let onlines = |outs: &[Out], id: &[u8]| {
        outs.iter()
            .filter(|o| **o == Out::Presence(watcher, id.to_vec(), true))
            .count()
    };
    // The registrar spins (no sleep, no futex) so both sides start within a cache miss.
    let go = AtomicU64::new(0);
    let (notices_tx, notices) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut sink, mut scratch) = (Rec::new(), Vec::new());
            for round in 0..ROUNDS {
                let mut spins = 0u32;
                while go.load(Ordering::Acquire) <= round {
                    spins += 1;
                    if spins % 4096 == 0 {
                        // Not a whole time slice per round on a loaded single CPU.
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                if go.load(Ordering::Acquire) == u64::MAX {
                    return; // the test thread failed and stopped
                }
                let row = Row {
                    location: Location::remote(NODE + 1),
                    epoch: round + 1,
                };
                tables.apply_remote_row(&round.to_be_bytes(), row, &mut scratch, &mut sink);
                if notices_tx.send(sink.take()).is_err() {
                    return;
                }
            }
        });
        // A failed round releases the registrar, so the scope ends and the failure shows.
        struct Release<'a>(&'a AtomicU64);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(u64::MAX, Ordering::Release);
            }
        }
        let _release = Release(&go);
        for round in 0..ROUNDS {
            let id = round.to_be_bytes();
            go.store(round + 1, Ordering::Release);
            for _ in 0..round % 64 {
                std::hint::spin_loop();
            }
            let engine = Engine::new(tables, config);
            let guards = tables.guards();
            let conn = &mut conns[watcher as usize];
            let watch = Frame::Watch { client_id: &id };
            engine.on_frame(conn, loc(watcher), &guards, watch, scratch, rec);
            let notices = notices
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("the registrar applies every row");
            let answers = rec.take();
            assert_eq!(
                onlines(&answers, &id) + onlines(&notices, &id),
                1,
                "round {round}: answered {answers:?}, notified {notices:?}"
            );
            let unwatch = Frame::Unwatch { client_id: &id };
            engine.on_frame(conn, loc(watcher), &guards, unwatch, scratch, rec);
            rec.take();
        }
    });
}

#[test]
fn watch_of_an_online_id_is_answered_online_and_a_repeat_with_nothing() {
    let mut h = Harness::new();
    let _bob = h.client(b"bob");
    let watcher = h.client(b"w");
    h.rec.take();
    h.frame(watcher, Frame::Watch { client_id: b"bob" });
    h.frame(watcher, Frame::Watch { client_id: b"bob" });
    assert_eq!(
        h.rec.take(),
        vec![Out::Presence(watcher, b"bob".to_vec(), true)]
    );
}

#[test]
fn hello_is_held_while_not_ready_then_welcomed_in_order_on_ready() {
    let mut h = Harness::new();
    h.rec.ready = false;
    let a = h.connect();
    let b = h.connect();
    h.hello(a, b"a");
    h.hello(b, b"b");
    assert_eq!(h.rec.take(), vec![Out::Held(a), Out::Held(b)]);
    assert!(h.tables.locations.is_empty());
    h.rec.ready = true;
    h.ready(a);
    h.ready(b);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Local(a, FrameKind::Welcome),
            Out::Registered(b"a".to_vec()),
            Out::Local(b, FrameKind::Welcome),
            Out::Registered(b"b".to_vec()),
        ]
    );
    h.ready(a);
    assert_eq!(h.rec.take(), vec![], "a HELLO is welcomed once");
}

#[test]
fn held_hello_of_a_closed_connection_is_never_welcomed() {
    let mut h = Harness::new();
    h.rec.ready = false;
    let a = h.connect();
    h.hello(a, b"a");
    h.close(a);
    h.rec.take();
    h.rec.ready = true;
    h.ready(a);
    assert_eq!(h.rec.take(), vec![]);
    assert!(!h.conns[a as usize].hello_held());
}

#[test]
fn subscribe_twice_stores_once_and_announces_interest_once() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(a, sub(b"t", b""));
    h.frame(a, sub(b"t", b""));
    assert_eq!(h.rec.take(), vec![Out::Interest(b"t".to_vec(), vec![])]);
    assert_eq!(h.conns[a as usize].subscriptions().len(), 1);
}

#[test]
fn only_the_last_unsubscribe_announces_interest() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(a, sub(b"t", b"g"));
    h.frame(b, sub(b"t", b"g"));
    h.rec.take();
    h.frame(a, unsub(b"t", b"g"));
    assert_eq!(h.rec.take(), vec![]);
    assert!(h.conns[a as usize].subscriptions().is_empty());
    h.frame(b, unsub(b"t", b"g"));
    assert_eq!(
        h.rec.take(),
        vec![Out::Interest(b"t".to_vec(), b"g".to_vec())]
    );
}

#[test]
fn interest_is_not_announced_outside_a_cluster() {
    let mut h = Harness::new();
    h.config.clustered = false;
    let a = h.connect();
    h.hello(a, b"a");
    h.frame(a, sub(b"t", b""));
    assert_eq!(h.rec.take(), vec![Out::Local(a, FrameKind::Welcome)]);
}

#[test]
fn watch_twice_stores_once_and_unwatch_forgets() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(a, Frame::Watch { client_id: b"x" });
    h.frame(a, Frame::Watch { client_id: b"x" });
    assert_eq!(h.conns[a as usize].watches().len(), 1);
    h.frame(a, Frame::Unwatch { client_id: b"x" });
    assert!(h.conns[a as usize].watches().is_empty());
    h.client(b"x");
    assert_eq!(
        h.rec.take(),
        vec![],
        "an unwatched id's presence is not sent"
    );
}

#[test]
fn close_removes_subscriptions_watches_and_registration_and_announces_each() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(a, sub(b"t", b""));
    h.frame(a, sub(b"u", b"g"));
    h.frame(a, Frame::Watch { client_id: b"x" });
    h.rec.take();
    h.close(a);
    let mut out = h.rec.take();
    // Subscriptions are a set: their interest changes come in no particular order.
    out[..2].sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        out,
        vec![
            Out::Interest(b"t".to_vec(), vec![]),
            Out::Interest(b"u".to_vec(), b"g".to_vec()),
            Out::Unregistered(b"a".to_vec()),
        ]
    );
    assert!(h.tables.locations.is_empty());
    assert!(h.tables.topics.is_empty());
    let x = h.connect();
    h.hello(x, b"x");
    assert!(
        !h.rec.take().iter().any(|o| matches!(o, Out::Presence(..))),
        "a closed watcher gets no presence"
    );
    h.close(a);
    assert_eq!(h.rec.take(), vec![], "a second close does nothing");
}

#[test]
fn watchers_get_offline_when_the_watched_client_closes() {
    let mut h = Harness::new();
    let w = h.client(b"w");
    h.frame(w, Frame::Watch { client_id: b"bob" });
    let bob = h.client(b"bob");
    h.close(bob);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Presence(w, b"bob".to_vec(), false),
            Out::Unregistered(b"bob".to_vec()),
        ]
    );
}

#[test]
fn overloaded_error_is_sent_once_per_receive() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let engine = Engine::new(&h.tables, &h.config);
    h.rec.overloaded = true;
    engine.end_receive(loc(a), &mut h.rec);
    engine.end_receive(loc(a), &mut h.rec);
    assert_eq!(
        h.rec.take(),
        vec![Out::LocalError(a, ErrorCode::OVERLOADED)]
    );
}

#[test]
fn decode_error_before_hello_closes_as_bad_handshake() {
    let mut h = Harness::new();
    let a = h.connect();
    h.decode_error(a, DecodeError::UnknownKind(0xee));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ProtocolErrorClose),
            Out::CloseConn(a, CloseReason::BAD_HANDSHAKE)
        ]
    );
}

#[test]
fn decode_error_after_hello_closes_with_the_errors_reason() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.decode_error(a, DecodeError::UnknownKind(0xee));
    assert_eq!(
        h.rec.take()[1],
        Out::CloseConn(a, CloseReason::PROTOCOL_ERROR)
    );
}

#[test]
fn oversized_frame_closes_as_frame_too_large_even_before_hello() {
    let mut h = Harness::new();
    let a = h.connect();
    let error = DecodeError::FrameTooLarge {
        frame_bytes: 1 << 30,
        max_frame_bytes: 1 << 20,
    };
    h.decode_error(a, error);
    assert_eq!(
        h.rec.take()[1],
        Out::CloseConn(a, CloseReason::FRAME_TOO_LARGE)
    );
}

#[test]
fn frames_after_a_close_decision_are_ignored() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.client(b"b");
    h.frame(
        a,
        Frame::Close {
            reason: CloseReason::NORMAL,
            text: b"",
        },
    );
    assert_eq!(h.rec.take(), vec![Out::Close(a, CloseReason::NORMAL)]);
    h.frame(
        a,
        Frame::Send {
            target: b"b",
            payload: b"x",
        },
    );
    h.frame(a, sub(b"t", b""));
    h.frame(a, Frame::Ping { nonce: 1 });
    assert_eq!(h.rec.take(), vec![]);
    assert_eq!(h.conns[a as usize].phase(), Phase::Closed);
}

#[test]
fn frames_after_a_decode_error_are_ignored() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.decode_error(a, DecodeError::UnknownKind(0xee));
    h.rec.take();
    h.frame(a, Frame::Ping { nonce: 1 });
    assert_eq!(h.rec.take(), vec![]);
}

#[test]
fn bad_frame_closes_and_counts_a_protocol_error() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.hello(a, b"a");
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ProtocolErrorClose),
            Out::Close(a, CloseReason::BAD_HANDSHAKE)
        ]
    );
}

#[test]
fn ping_is_answered_with_pong() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(a, Frame::Ping { nonce: 9 });
    assert_eq!(h.rec.take(), vec![Out::Local(a, FrameKind::Pong)]);
}

#[test]
fn tick_pings_an_idle_connection_then_closes_it_after_the_misses() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.tick(a, 50);
    assert_eq!(h.rec.take(), vec![], "not idle for a whole interval yet");
    h.tick(a, 100);
    h.tick(a, 200);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Local(a, FrameKind::Ping),
            Out::Local(a, FrameKind::Ping)
        ]
    );
    h.tick(a, 300);
    assert_eq!(
        h.rec.take(),
        vec![Out::CloseConn(a, CloseReason::HEARTBEAT_TIMEOUT)]
    );
}

#[test]
fn received_bytes_reset_the_heartbeat() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.tick(a, 100);
    h.tick(a, 200);
    Engine::new(&h.tables, &h.config).on_receive(&mut h.conns[a as usize], 250);
    h.tick(a, 300);
    h.tick(a, 350);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Local(a, FrameKind::Ping),
            Out::Local(a, FrameKind::Ping),
            Out::Local(a, FrameKind::Ping)
        ]
    );
}

#[test]
fn tick_closes_a_connection_without_hello_and_counts_it() {
    let mut h = Harness::new();
    let a = h.connect();
    h.tick(a, 1001);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ProtocolErrorClose),
            Out::CloseConn(a, CloseReason::HANDSHAKE_TIMEOUT)
        ]
    );
}

#[test]
fn links_are_never_ticked() {
    let mut h = Harness::new();
    h.conns.push(ConnRelay::link(0, &h.config.session));
    h.tick(0, 10_000);
    assert_eq!(h.rec.take(), vec![]);
}

#[test]
fn send_to_an_unknown_id_errors_and_is_counted() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(
        a,
        Frame::Send {
            target: b"nobody",
            payload: b"x",
        },
    );
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Error(ErrorCode::UNKNOWN_ID, b"nobody".to_vec()),
            Out::Count(Counter::UnknownId)
        ]
    );
}

#[test]
fn send_and_publish_carry_the_registered_id_as_sender() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(b, sub(b"t", b""));
    h.rec.take();
    h.frame(
        a,
        Frame::Send {
            target: b"b",
            payload: b"x",
        },
    );
    h.frame(
        a,
        Frame::Publish {
            topic: b"t",
            payload: b"y",
            no_echo: false,
        },
    );
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Deliver(b, b"a".to_vec(), vec![], b"x".to_vec()),
            Out::Deliver(b, b"a".to_vec(), b"t".to_vec(), b"y".to_vec()),
        ]
    );
}

#[test]
fn forwarded_send_and_publish_are_delivered_locally_and_never_forwarded() {
    let mut h = Harness::new();
    let b = h.client(b"b");
    h.frame(b, sub(b"t", b""));
    // Node 2 is interested in "t" and holds "far": a local message would be forwarded there.
    h.tables.remote_interest.set(2, b"t", b"", true);
    h.tables.apply_remote_row(
        b"far",
        crate::core::location::Row {
            location: Location {
                node: 2,
                worker: 0,
                slot: 0,
                generation: 1,
            },
            epoch: 1,
        },
        &mut h.scratch,
        &mut h.rec,
    );
    h.rec.take();
    let engine = Engine::new(&h.tables, &h.config);
    let guards = h.tables.guards();
    let mut reports = DropReports::default();
    let one = Message::plain(b"x", b"", b"1");
    engine.on_forwarded_send(&guards, b"b", &one, &mut reports, &mut h.rec);
    let two = Message::plain(b"x", b"t", b"2");
    engine.on_forwarded_publish(&guards, &two, b"", &mut reports, &mut h.rec);
    let three = Message::plain(b"x", b"", b"3");
    engine.on_forwarded_send(&guards, b"far", &three, &mut reports, &mut h.rec);
    assert!(reports.is_empty(), "nothing was dropped at a bound");
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ForwardedIn),
            Out::Deliver(b, b"x".to_vec(), vec![], b"1".to_vec()),
            Out::Count(Counter::ForwardedIn),
            Out::Deliver(b, b"x".to_vec(), b"t".to_vec(), b"2".to_vec()),
            Out::Count(Counter::ForwardedIn),
            Out::Count(Counter::ForwardedInStale),
        ]
    );
}

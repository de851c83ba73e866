//! NATS connections on the worker: INFO when one is accepted, its operations to the engine
//! as they arrive (see `core::engine::nats`). A child module of `worker`, so it shares the
//! worker's private state.

use super::super::deliver::Deliverer;
use super::super::nats_info::{info_line, nats_nonce, Greeting};
use super::super::stats::{bump, kind_index};
use super::Worker;
use crate::core::engine::nats::{NatsCall, NatsConn, NatsOutput};
use crate::core::session::Phase;
use crate::core::{Engine, Output};
use crate::protocol::nats::ClientOp;
use crate::protocol::{FrameKind, HELLO_FRAME_BYTES_MAX};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

/// The NATS operations counted as the native frames they stand for (`frames_in_by_kind`).
fn counted_kind(op: &ClientOp<'_>) -> FrameKind {
    match op {
        ClientOp::Connect { .. } => FrameKind::Hello,
        ClientOp::Pub { .. } | ClientOp::Hpub { .. } => FrameKind::Publish,
        ClientOp::Sub { .. } => FrameKind::Subscribe,
        ClientOp::Unsub { .. } => FrameKind::Unsubscribe,
        ClientOp::Ping => FrameKind::Ping,
        _ => FrameKind::Pong,
    }
}

/// How a NATS connection starts on its worker.
pub(in crate::server) enum NatsStart {
    /// Send INFO (`bound`: the listener's address; `tls`: the connection is TLS already).
    Greet {
        bound: Option<SocketAddr>,
        tls: bool,
    },
    /// INFO went out before the TLS handshake, with this nonce.
    Greeted { nonce: Option<Box<str>> },
}

impl Worker {
    /// Makes the new connection in `slot` a NATS one and, unless a handshake thread has sent
    /// it, queues its INFO (sealed when the connection is TLS).
    pub(in crate::server) fn start_nats(&mut self, slot: u32, start: NatsStart) {
        let shared = Arc::clone(&self.shared);
        let generation = self.slab.conns[slot as usize].generation;
        let (nonce, greet) = match start {
            NatsStart::Greet { bound, tls } => (nats_nonce(&shared), Some((bound, tls))),
            NatsStart::Greeted { nonce } => (nonce, None),
        };
        self.slab.conns[slot as usize].nats = Some(Box::new(NatsConn {
            nonce: nonce.clone(),
            ..NatsConn::default()
        }));
        let Some((bound, tls_required)) = greet else {
            return;
        };
        let greeting = Greeting {
            bound,
            client_id: (u64::from(self.index) << 48)
                | (u64::from(generation) << 20)
                | u64::from(slot),
            nonce: nonce.as_deref(),
            tls_required,
        };
        let line = info_line(&shared, &greeting);
        let at = self.location(slot, generation);
        self.deliverer(slot, generation).send_nats_local(at, &line);
    }

    /// Runs `f` with the engine and a [`NatsCall`] for the connection in `slot` (its relay
    /// state moved out meanwhile, so the output can borrow the slab).
    fn with_nats_call<R>(
        &mut self,
        slot: u32,
        f: impl FnOnce(Engine<'_>, &mut NatsCall<'_, '_, Deliverer<'_>>) -> R,
    ) -> R {
        let generation = self.slab.conns[slot as usize].generation;
        let mut relay = std::mem::take(&mut self.slab.conns[slot as usize].relay);
        let shared = Arc::clone(&self.shared);
        let engine = Engine::new(&shared.tables, &shared.engine);
        let at = self.location(slot, generation);
        let mut scratch = std::mem::take(&mut self.scratch_locations);
        let guards = shared.tables.guards();
        let mut sink = self.deliverer(slot, generation);
        let mut call = NatsCall {
            conn: &mut relay,
            at,
            guards: &guards,
            scratch: &mut scratch,
            out: &mut sink,
            orphan: None,
        };
        let result = f(engine, &mut call);
        let stall = sink.stall.take();
        self.scratch_locations = scratch;
        self.slab.conns[slot as usize].relay = relay;
        self.stall_reads(slot, generation, stall);
        result
    }

    /// Applies every whole NATS operation of a receive of the connection in `slot`. Until
    /// CONNECT is accepted an operation's payload is bounded by [`HELLO_FRAME_BYTES_MAX`], as
    /// a native connection's frames are before HELLO: an unauthenticated socket makes the
    /// relay hold at most one control line and that much. What the worker's connections hold
    /// of unfinished operations together is bounded by `reassembly_bytes_per_worker_max`, as
    /// for native frames.
    pub(super) fn on_nats_bytes(&mut self, slot: u32, data: &[u8]) {
        let c = &mut self.slab.conns[slot as usize];
        let (generation, before) = (c.generation, c.reassembly_bytes());
        let open_bound = self.shared.engine.payload_bytes_max;
        let bound_in = |phase: Phase| match phase {
            Phase::Open => open_bound,
            _ => HELLO_FRAME_BYTES_MAX.min(open_bound),
        };
        let bound = Cell::new(bound_in(c.relay.phase()));
        let Some(nats) = c.nats.as_deref_mut() else {
            return;
        };
        let mut reader = std::mem::take(&mut nats.reader);
        let now_ms = self.now_ms;
        self.with_nats_call(slot, |engine, call| {
            let stats = call.out.stats;
            engine.on_receive(call.conn, now_ms);
            engine.expire_nats_sids(call);
            let mut completed = false;
            let fed = reader.feed_bounded(
                data,
                || bound.get(),
                |op| {
                    bump(&stats.frames_in, 1);
                    bump(&stats.frames_in_by_kind[kind_index(counted_kind(&op))], 1);
                    completed = true;
                    let go_on = engine.on_nats_op(call, op);
                    bound.set(bound_in(call.conn.phase()));
                    // A close requested for it in this receive (as a slow consumer of its
                    // own replies, say) ends it as a closed session does.
                    go_on && !call.out.driven_closing()
                },
            );
            if let Err(e) = fed {
                tracing::debug!(
                    worker = call.at.worker,
                    slot,
                    "closing NATS connection: {e}"
                );
                engine.on_nats_error(call, &e);
                reader.clear();
            }
            engine.end_receive(call.at, call.out);
            engine.on_receive_end(call.conn, now_ms, completed, reader.held_bytes() > 0);
        });
        if let Some(nats) = self.slab.conns[slot as usize].nats.as_deref_mut() {
            nats.reader = reader;
        }
        self.slab.reheld(slot, before);
        let held = self.slab.conns[slot as usize].reassembly_bytes();
        let max = self.shared.config.reassembly_bytes_per_worker_max;
        if held > 0 && self.slab.client_reassembly_bytes > max {
            self.refuse_reassembly(slot, generation);
        }
    }

    /// Removes the sids of the NATS connection in `slot` that reached their `UNSUB` maximum
    /// (on the tick, so a connection that sends nothing more is tidied too).
    pub(super) fn expire_nats_sids(&mut self, slot: u32) {
        let c = &self.slab.conns[slot as usize];
        if c.nats
            .as_deref()
            .is_some_and(|n: &NatsConn| !n.expired.is_empty())
        {
            self.with_nats_call(slot, |engine, call| engine.expire_nats_sids(call));
        }
    }
}

//! The worker's side of the cluster: data links to and from other nodes, and the commands of
//! the control thread. A child module of `worker`, so it shares the worker's private state.
//!
//! Data links are plain connections of the worker's slab marked with a [`LinkRole`]: the same
//! multishot receive into the buffer ring and the same coalesced sends as client traffic.
//! Outbound links only carry this worker's forwards (one per peer node, so one sender's
//! messages to one node keep their order on one TCP stream); inbound links bring a peer's
//! forwards, which are delivered locally and never forwarded again.

use super::super::conn::LinkRole;
use super::super::control_lane::{Command, Event};
use super::super::deliver::Deliverer;
use super::super::deliver::{LinkOut, PendingClose};
use super::super::stats::bump;
use super::super::tls_conn::TlsConn;
use super::ingress::LINK_FRAME_OVERHEAD_MAX;
use super::lifecycle::{close_fd, set_nodelay};
use super::Worker;
use crate::core::credentials::Verified;
use crate::core::{ConnRelay, Engine, Guards, Location};
use crate::protocol::CloseReason;
use crate::tls::Established;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

impl Worker {
    /// Applies the control thread's commands.
    pub(super) fn drain_commands(&mut self) {
        let shared = Arc::clone(&self.shared);
        let queue = &shared.lane.commands[self.index as usize];
        while let Some(command) = queue.pop() {
            match command {
                Command::AdoptLink {
                    fd,
                    node,
                    outbound,
                    tls,
                } => self.adopt_link(fd.into_raw_fd(), LinkRole { node, outbound }, tls),
                Command::CloseLinks { node } => {
                    if let Some(backlog) = self.link_backlogs.take(node) {
                        self.drop_backlogged(
                            backlog.messages,
                            "peer node dead or its link restarted",
                        );
                    }
                    for slot in 0..self.slab.conns.len() as u32 {
                        let c = &self.slab.conns[slot as usize];
                        if c.link.is_some_and(|l| l.node == node) {
                            let text = "peer node dead or its link restarted";
                            self.request_close(slot, c.generation, CloseReason::NORMAL, text, true);
                        }
                    }
                }
                Command::Frame { to, bytes } => {
                    self.deliverer(to.slot, to.generation).append_frame_bytes(
                        to.slot,
                        to.generation,
                        b"",
                        &bytes,
                    );
                }
                Command::AdoptClient { fd } => {
                    self.adopt_client(fd.into_raw_fd(), None, None);
                }
                Command::AdoptTls {
                    fd,
                    peer,
                    greeting,
                    tls,
                } => self.adopt_tls(fd.into_raw_fd(), peer, greeting, *tls),
                Command::Verified(verified) => self.apply_verified(*verified),
                Command::Close { to, reason } => self.pending_closes.push(PendingClose {
                    slot: to.slot,
                    generation: to.generation,
                    reason,
                    text: "replaced by a newer connection with the same id on another node",
                    peer_gone: false,
                }),
            }
        }
    }

    /// Takes over an authenticated data-link socket from the control thread.
    fn adopt_link(&mut self, fd: i32, role: LinkRole, tls: Option<Box<Established>>) {
        if self.stopping {
            close_fd(fd);
            return;
        }
        set_nodelay(fd);
        let relay = ConnRelay::link(self.now_ms, &self.shared.engine.session);
        let max_frame_bytes = self.shared.config.max_frame_bytes + LINK_FRAME_OVERHEAD_MAX;
        let Some(slot) = self.slab.insert(fd, relay, max_frame_bytes) else {
            tracing::warn!(
                worker = self.index,
                node = role.node,
                "no slot for a data link"
            );
            close_fd(fd);
            if role.outbound {
                self.shared.lane.emit(Event::LinkLost {
                    node: role.node,
                    worker: self.index,
                });
            }
            return;
        };
        let generation = self.slab.conns[slot as usize].generation;
        self.slab.conns[slot as usize].link = Some(role);
        let early_plaintext = match tls {
            Some(tls) => {
                let Established {
                    session,
                    early_plaintext,
                    leftover,
                } = *tls;
                debug_assert!(
                    leftover.is_empty(),
                    "invariant: a link's stream opened it all"
                );
                let mut tls = Box::new(TlsConn::new(session));
                if role.outbound {
                    tls.count_link_messages();
                }
                self.slab.conns[slot as usize].tls = Some(tls);
                early_plaintext
            }
            None => Vec::new(),
        };
        let stats = &self.shared.stats[self.index as usize];
        bump(&stats.links_open, 1);
        if role.outbound {
            // A newer link to the same node replaces the old one (its control link restarted).
            if let Some(old) = self.links_out.iter().position(|l| l.node == role.node) {
                let old = self.links_out.swap_remove(old);
                self.request_close(
                    old.slot,
                    old.generation,
                    CloseReason::NORMAL,
                    "replaced link",
                    true,
                );
            }
            self.links_out.push(LinkOut {
                node: role.node,
                slot,
                generation,
            });
            if let Some(backlog) = self.link_backlogs.take(role.node) {
                // The forwards routed while the link was dialed go first, in their order.
                let conn = &mut self.slab.conns[slot as usize];
                debug_assert!(conn.out.is_empty(), "a new slot has nothing queued");
                conn.take_backlog(backlog.bytes);
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(slot);
                }
            }
        }
        tracing::debug!(
            worker = self.index,
            node = role.node,
            outbound = role.outbound,
            "data link up"
        );
        self.arm_recv(slot);
        if !early_plaintext.is_empty() {
            self.on_link_bytes(slot, &early_plaintext);
        }
    }

    /// Drops the backlogs whose node got no link within `cluster_peer_dead_after_ms` (by then
    /// a live node has its links and a dead one has no rows left to route to).
    pub(super) fn expire_link_backlogs(&mut self) {
        let wait_ms = self.shared.config.cluster_peer_dead_after_ms;
        let dropped = self.link_backlogs.expire(self.now_ms, wait_ms);
        self.drop_backlogged(dropped, "no data link to the node in time");
    }

    /// Counts forwards dropped from a backlog, with one warning naming why.
    pub(super) fn drop_backlogged(&mut self, messages: u64, why: &str) {
        if messages == 0 {
            return;
        }
        tracing::warn!(worker = self.index, messages, "forwards dropped: {why}");
        bump(
            &self.shared.stats[self.index as usize].forward_drops,
            messages,
        );
    }

    /// A closing link: stop forwarding over it and tell the control thread to re-dial.
    pub(super) fn forget_link(&mut self, slot: u32, role: LinkRole) {
        if !role.outbound {
            return;
        }
        let before = self.links_out.len();
        self.links_out.retain(|l| l.slot != slot);
        if self.links_out.len() != before && !self.stopping {
            self.shared.lane.emit(Event::LinkLost {
                node: role.node,
                worker: self.index,
            });
        }
    }

    /// The node became ready: WELCOME and register every held HELLO, in the order they came.
    pub(super) fn welcome_pending(&mut self) {
        let held = std::mem::take(&mut self.held_hellos);
        for &(slot, generation) in &held {
            self.drive_held(
                slot,
                generation,
                |engine, relay, at, guards, scratch, sink| {
                    engine.on_ready(relay, at, guards, scratch, sink)
                },
            );
        }
        self.held_hellos = held;
        self.held_hellos.clear();
    }

    /// The verifier's outcome for a HELLO held here, and for the HELLOs with the same name and
    /// secret that waited on it: remembered if the secret verified, then applied to each
    /// connection still open.
    fn apply_verified(&mut self, verified: Verified) {
        let waiters = self.verified.settle(&verified);
        for at in std::iter::once(verified.at).chain(waiters) {
            let outcome = verified.outcome.clone();
            self.drive_held(
                at.slot,
                at.generation,
                |engine, relay, at, guards, scratch, sink| {
                    engine.on_verified(relay, at, outcome, guards, scratch, sink)
                },
            );
        }
    }

    /// Runs `rule` on the live, open connection at (`slot`, `generation`), whose HELLO is
    /// held, with the engine and a sink; a closed or reused slot is skipped.
    fn drive_held(
        &mut self,
        slot: u32,
        generation: u32,
        rule: impl FnOnce(
            &Engine<'_>,
            &mut ConnRelay,
            Location,
            &Guards<'_>,
            &mut Vec<Location>,
            &mut Deliverer<'_>,
        ),
    ) {
        let shared = Arc::clone(&self.shared);
        let engine = Engine::new(&shared.tables, &shared.engine);
        let Some(c) = self.slab.get_live(slot, generation) else {
            return;
        };
        if !c.accepts_frames() {
            return;
        }
        let before = c.reassembly_bytes();
        let mut relay = std::mem::take(&mut c.relay);
        let at = self.location(slot, generation);
        let mut scratch = std::mem::take(&mut self.scratch_locations);
        let guards = shared.tables.guards();
        let mut sink = self.deliverer(slot, generation);
        rule(&engine, &mut relay, at, &guards, &mut scratch, &mut sink);
        engine.end_receive(at, &mut sink);
        self.slab.conns[slot as usize].relay = relay;
        self.slab.reheld(slot, before);
        self.scratch_locations = scratch;
    }
}

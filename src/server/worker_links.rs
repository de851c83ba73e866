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
use super::super::deliver::{LinkOut, PendingClose};
use super::super::stats::bump;
use super::{close_fd, register_client, set_nodelay, Worker};
use crate::cluster::wire::{decode_data, DataFrame, DecodedData};
use crate::core::{Location, Session};
use crate::protocol::CloseReason;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

/// Link frames carry a client frame's payload plus ids and topic: this much room on top of
/// `max_frame_bytes`.
pub const LINK_FRAME_OVERHEAD_MAX: usize = 1024;

impl Worker {
    /// Decodes the forwarded frames of an inbound data link and delivers them here. Bytes on
    /// an outbound link (the peer never sends any) are ignored.
    pub(super) fn on_link_bytes(&mut self, slot: u32, data: &[u8]) {
        let c = &mut self.slab.conns[slot as usize];
        if !c.accepts_frames() || c.link.is_some_and(|l| l.outbound) {
            return;
        }
        let generation = c.generation;
        let mut partial = std::mem::take(&mut c.partial);
        let max = self.shared.config.max_frame_bytes + LINK_FRAME_OVERHEAD_MAX;
        let result = if partial.is_empty() {
            self.route_link_frames(slot, generation, data, &mut partial, max)
        } else {
            partial.extend_from_slice(data);
            let buffered = std::mem::take(&mut partial);
            self.route_link_frames(slot, generation, &buffered, &mut partial, max)
        };
        if let Err(e) = result {
            tracing::warn!(worker = self.index, "closing data link: {e}");
            partial.clear();
            self.request_close(
                slot,
                generation,
                CloseReason::PROTOCOL_ERROR,
                "bad data link frame",
                true,
            );
        }
        self.slab.conns[slot as usize].partial = partial;
    }

    /// Routes every whole frame of `data`; keeps an unfinished tail in `rest`.
    fn route_link_frames(
        &mut self,
        slot: u32,
        generation: u32,
        mut data: &[u8],
        rest: &mut Vec<u8>,
        max_frame_bytes: usize,
    ) -> Result<(), crate::cluster::wire::LinkDecodeError> {
        let shared = Arc::clone(&self.shared);
        let tables = &shared.tables;
        let guards = tables.guards();
        let stats = &shared.stats[self.index as usize];
        let mut sink = self.deliverer(slot, generation);
        let mut delivered_in = 0u64;
        let mut stale = 0u64;
        loop {
            match decode_data(data, max_frame_bytes)? {
                DecodedData::Frame { frame, consumed } => {
                    delivered_in += 1;
                    match frame {
                        DataFrame::Send {
                            sender,
                            target,
                            payload,
                        } => {
                            if !tables
                                .route_forwarded_send(&guards, sender, target, payload, &mut sink)
                            {
                                stale += 1;
                            }
                        }
                        DataFrame::Publish {
                            sender,
                            topic,
                            group,
                            payload,
                            ..
                        } => {
                            tables.route_forwarded_publish(
                                &guards, sender, topic, group, payload, &mut sink,
                            );
                        }
                    }
                    data = &data[consumed..];
                }
                DecodedData::NeedMore { .. } => {
                    rest.extend_from_slice(data);
                    break;
                }
            }
        }
        bump(&stats.forwarded_in, delivered_in);
        bump(&stats.forwarded_in_stale, stale);
        Ok(())
    }

    /// Applies the control thread's commands.
    pub(super) fn drain_commands(&mut self) {
        let shared = Arc::clone(&self.shared);
        let queue = &shared.lane.commands[self.index as usize];
        while let Some(command) = queue.pop() {
            match command {
                Command::AdoptLink { fd, node, outbound } => {
                    self.adopt_link(fd.into_raw_fd(), LinkRole { node, outbound })
                }
                Command::CloseLinks { node } => {
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
                        &bytes,
                    );
                }
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
    fn adopt_link(&mut self, fd: i32, role: LinkRole) {
        if self.stopping {
            close_fd(fd);
            return;
        }
        set_nodelay(fd);
        let session = Session::new(self.now_ms, &self.shared.session);
        let Some(slot) = self.slab.insert(fd, session) else {
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
        let stats = &self.shared.stats[self.index as usize];
        bump(&stats.connections_open, 1);
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
        }
        tracing::debug!(
            worker = self.index,
            node = role.node,
            outbound = role.outbound,
            "data link up"
        );
        self.arm_recv(slot);
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

    /// The node became ready: WELCOME and register every held HELLO.
    pub(super) fn welcome_pending(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut scratch = std::mem::take(&mut self.scratch_locations);
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            let Some(client_id) = c.pending_hello.take() else {
                continue;
            };
            self.pending_hellos -= 1;
            if !c.accepts_frames() {
                continue;
            }
            let generation = c.generation;
            let location = Location {
                node: shared.node_id,
                worker: self.index,
                slot,
                generation,
            };
            let mut sink = self.deliverer(slot, generation);
            register_client(&shared, &client_id, location, &mut scratch, &mut sink);
            let overloaded = sink.overloaded;
            self.overloaded |= overloaded;
            self.slab.conns[slot as usize].client_id = client_id;
        }
        self.scratch_locations = scratch;
    }
}

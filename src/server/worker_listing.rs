//! A worker's answer to the operator's `/connections` request (see [`super::super::listing`]):
//! its open client connections after a slot, at most a page. A child module of `worker`, so
//! it reads the worker's slab directly; it runs between loop iterations, off the message path.

use super::super::conn::ConnState;
use super::super::listing::{ConnectionInfo, ListingRequest};
use super::Worker;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

impl Worker {
    pub(super) fn answer_listing(&mut self, request: ListingRequest) {
        let first = request.after_slot.map_or(0, |s| s.saturating_add(1));
        let mut page = Vec::with_capacity(request.limit.min(self.slab.open_count));
        for slot in first..self.slab.conns.len() as u32 {
            if page.len() >= request.limit {
                break;
            }
            let c = &self.slab.conns[slot as usize];
            if c.state != ConnState::Open || c.link.is_some() {
                continue;
            }
            page.push(ConnectionInfo {
                worker: self.index,
                slot,
                client_id: c.relay.client_id().to_vec(),
                peer: peer_of(c.fd),
                pending_bytes: c.accounted_bytes(),
                queued_bytes: c.pending_bytes(),
                subscriptions: c.relay.subscriptions().len(),
                watches: c.relay.watches().len(),
                age_ms: self.now_ms.saturating_sub(c.opened_ms),
            });
        }
        // The metrics thread may have given up waiting: then nobody reads the page.
        let _ = request.reply.try_send(page);
    }
}

/// The address of the peer of socket `fd` (one getpeername call).
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: `fd` is the open socket of a slot in state Open, owned by this worker and not
    // closed while this borrow (which ends with the statement) is alive.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&borrowed)
        .peer_addr()
        .ok()?
        .as_socket()
}

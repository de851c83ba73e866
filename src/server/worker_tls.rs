//! TLS connections on the worker: received records are opened in place in the receive
//! buffer and their plaintext goes the way a plaintext connection's bytes go; a connection
//! whose handshake finished on a handshake thread is adopted with its session. A child
//! module of `worker`, so it shares the worker's private state.

use super::super::tls_conn::TlsConn;
use super::nats::NatsStart;
use super::Worker;
use crate::cluster::lane::TlsGreeting;
use crate::core::Engine;
use crate::protocol::CloseReason;
use crate::tls::Established;
use std::os::fd::RawFd;

impl Worker {
    /// Received ciphertext of a TLS connection: opened where it lies, then handed on.
    pub(super) fn on_tls_bytes(&mut self, slot: u32, generation: u32, data: &mut [u8]) {
        let c = &mut self.slab.conns[slot as usize];
        let before = c.reassembly_bytes();
        let Some(tls) = c.tls.as_mut() else {
            return;
        };
        let opened = tls.session.open(data);
        self.slab.reheld(slot, before);
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!(worker = self.index, slot, "TLS: {e}");
                let c = &mut self.slab.conns[slot as usize];
                c.close_text = Some(format!("TLS: {e}"));
                return self.request_close(
                    slot,
                    generation,
                    CloseReason::PROTOCOL_ERROR,
                    "TLS record refused",
                    false,
                );
            }
        };
        if let Some(range) = opened.carried {
            let carried = self.take_carried(slot);
            self.on_plaintext(slot, &carried[range]);
            self.restore_carried(slot, generation, carried);
        }
        if opened.in_place > 0 {
            self.on_plaintext(slot, &data[..opened.in_place]);
        }
        self.clock_cut_record(slot, generation);
        if opened.peer_closed {
            self.peer_gone(slot, generation, true);
        }
    }

    /// A record cut by the end of the receive is a frame begun: `frame_complete_timeout_ms`
    /// runs from the receive that left it cut (a record that trickles in a byte at a time,
    /// never yielding plaintext, would otherwise hold up to 16 KiB for ever). Data links are
    /// watched by their heartbeats instead.
    fn clock_cut_record(&mut self, slot: u32, generation: u32) {
        let engine = Engine::new(&self.shared.tables, &self.shared.engine);
        let now_ms = self.now_ms;
        let Some(c) = self.slab.get_live(slot, generation) else {
            return;
        };
        let cut = c.tls.as_ref().is_some_and(|t| t.session.record_cut());
        if cut && c.link.is_none() && c.accepts_frames() {
            engine.on_receive_end(&mut c.relay, now_ms, false, true);
        }
    }

    fn take_carried(&mut self, slot: u32) -> Vec<u8> {
        let c = &mut self.slab.conns[slot as usize];
        c.tls
            .as_mut()
            .map(|t| t.session.take_carried())
            .unwrap_or_default()
    }

    fn restore_carried(&mut self, slot: u32, generation: u32, carried: Vec<u8>) {
        if let Some(tls) = self
            .slab
            .get_live(slot, generation)
            .and_then(|c| c.tls.as_mut())
        {
            tls.session.restore_carried(carried);
        }
    }

    /// Plaintext of a TLS connection: a data link's, a NATS client's or a native client's
    /// bytes.
    fn on_plaintext(&mut self, slot: u32, bytes: &[u8]) {
        let c = &self.slab.conns[slot as usize];
        if !c.accepts_frames() {
            return;
        }
        if c.link.is_some() {
            self.on_link_bytes(slot, bytes);
        } else if c.nats.is_some() {
            self.on_nats_bytes(slot, bytes);
        } else {
            self.on_client_bytes(slot, bytes);
        }
    }

    /// Serves a client whose TLS handshake a handshake thread completed: the session's
    /// early plaintext and leftover ciphertext are taken before the first receive.
    pub(super) fn adopt_tls(
        &mut self,
        fd: RawFd,
        peer: Option<std::net::SocketAddr>,
        greeting: TlsGreeting,
        established: Established,
    ) {
        let Established {
            session,
            early_plaintext,
            mut leftover,
        } = established;
        let tls = Box::new(TlsConn::new(session));
        let Some(slot) = self.adopt_client(fd, peer, Some(tls)) else {
            return;
        };
        let generation = self.slab.conns[slot as usize].generation;
        match greeting {
            TlsGreeting::Native => {}
            TlsGreeting::NatsInfoDue { bound } => {
                self.start_nats(slot, NatsStart::Greet { bound, tls: true })
            }
            TlsGreeting::NatsInfoSent { nonce } => {
                self.start_nats(slot, NatsStart::Greeted { nonce })
            }
        }
        if !early_plaintext.is_empty() {
            self.on_plaintext(slot, &early_plaintext);
        }
        if !leftover.is_empty() && self.slab.get_live(slot, generation).is_some() {
            self.on_tls_bytes(slot, generation, &mut leftover);
        }
    }
}

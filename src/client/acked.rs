//! Acknowledged delivery for applications: a [`Session`] (reconnecting, any relay of the
//! cluster) driving the sans-IO [`AckSender`] and [`AckReceiver`] of [`crate::ack`].
//!
//! - [`AckedSession::send`] numbers a message for its target and keeps it until the target's
//!   library acknowledges it; it refuses with [`AckedSendError::WouldBlock`] when the window
//!   to that target (`window_msgs_max`) or the bytes kept (`window_bytes_max`) are full:
//!   backpressure, never unbounded memory. Receive to make room. [`AckedSession::send_many`]
//!   sends a batch at one reading of the clock.
//! - [`AckedSession::recv`] drives everything: it writes (re)transmissions and
//!   acknowledgements, runs the timers, and returns the application's events: each acked
//!   message once ([`Event::AckedMessage`], de-duplicated), every message sent ended by one
//!   [`Event::Confirmed`] (a range of numbers: one acknowledgement confirms many) or one
//!   [`Event::Failed`], and the plain events of a [`Session`]. [`AckedSession::recv_many`]
//!   returns what is ready without waiting, handled at one reading of the clock, with the
//!   acknowledgements it owes written at once: the way to receive at a high rate.
//! - Retransmission: on [`Event::Reconnected`] (the whole window, through the new relay), when
//!   a target that was unknown or unreachable comes online (the session watches it while it
//!   has messages in flight to it, at most `auto_watches_max` targets), on a gap the receiver
//!   reports, and on the backstop timer.
//! - Acknowledgement follows hand-out: an acknowledgement is written only while no acked
//!   message the session has read waits to be handed out, so a message is never confirmed to
//!   its sender unseen. A message [`AckedSession::recv`] returned is acknowledged on the next
//!   call (so one lost with the process is sent again); one [`AckedSession::recv_with`] handed
//!   to its closure, when the call ends. [`AckedSession::hold_acks`] lets a layer that queues
//!   events further (the C API) release them itself, once its own hand-out is done.
//! - [`AckedSession::stats`] has the counters that show nothing was lost: `sent == confirmed +
//!   failed + in_flight` at every moment, with the failures by reason.
//!
//! Time is an [`Instant`] taken when the session starts; the sans-IO parts see microseconds
//! since then.

use super::{ClientError, Event, Session, SessionOptions};
use crate::ack::{
    AckEvent, AckOut, AckReceiver, AckSender, ReceiverConfig, ReceiverStats, RttEstimator,
    SendRefused, SenderConfig, SenderStats, Verdict,
};
use crate::protocol::{ErrorCode, MsgId};
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// At most this many events from one [`AckedSession::recv_many`]: a bound on the batch when
/// messages keep arriving. 4,096: a window's worth of messages (`window_msgs_max`), and
/// far more confirmations (each a range).
pub const RECV_MANY_EVENTS_MAX: usize = 4096;

/// Tunables of an [`AckedSession`]. `Default` gives the documented values (no servers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckedSessionOptions {
    pub session: SessionOptions,
    /// Window, timeout, attempts and RTO bounds (see [`SenderConfig`]).
    pub sender: SenderConfig,
    /// Order, acknowledgement pacing and the sender bound (see [`ReceiverConfig`]).
    pub receiver: ReceiverConfig,
    /// Targets watched at once so that their coming online triggers a retransmission. 16:
    /// well under the relay's `watches_per_connection_max`, which the application's own
    /// watches share; past it the timer alone retransmits.
    pub auto_watches_max: usize,
}

impl Default for AckedSessionOptions {
    fn default() -> Self {
        AckedSessionOptions {
            session: SessionOptions::default(),
            sender: SenderConfig::default(),
            receiver: ReceiverConfig::default(),
            auto_watches_max: 16,
        }
    }
}

/// Why [`AckedSession::send`] did not take a message.
#[derive(Debug)]
pub enum AckedSendError {
    /// A bound is full (backpressure): receive, so acknowledgements make room, and retry.
    WouldBlock(SendRefused),
    /// The payload cannot be sent to this relay (too large), or the session is gone.
    Client(ClientError),
}

impl fmt::Display for AckedSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckedSendError::WouldBlock(SendRefused::WindowFull) => {
                f.write_str("window to this target full (window_msgs_max): receive and retry")
            }
            AckedSendError::WouldBlock(SendRefused::BytesFull) => {
                f.write_str("bytes kept for retransmission full (window_bytes_max)")
            }
            AckedSendError::WouldBlock(SendRefused::TargetsFull) => {
                f.write_str("too many targets in this session (targets_max)")
            }
            AckedSendError::Client(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AckedSendError {}

impl From<ClientError> for AckedSendError {
    fn from(e: ClientError) -> Self {
        AckedSendError::Client(e)
    }
}

/// The counters of an [`AckedSession`].
#[derive(Clone, Debug)]
pub struct AckedStats {
    pub sender: SenderStats,
    pub receiver: ReceiverStats,
    /// Acknowledgement round trips (from first send to confirmation; see [`RttEstimator`]).
    pub rtt: RttEstimator,
}

/// One event from [`AckedSession::recv_with`].
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// An acked message for the application (once per message), borrowed from the session's
    /// read buffer for the length of the call.
    AckedMessage {
        sender: &'a [u8],
        id: MsgId,
        payload: &'a [u8],
    },
    /// Any other event (never [`Event::AckedMessage`]).
    Event(Event),
}

impl Incoming<'_> {
    /// The event, owned (an acked message copied into an [`Event::AckedMessage`]).
    pub fn into_event(self) -> Event {
        match self {
            Incoming::AckedMessage {
                sender,
                id,
                payload,
            } => Event::AckedMessage {
                sender: sender.to_vec(),
                id,
                payload: payload.to_vec(),
            },
            Incoming::Event(event) => event,
        }
    }
}

/// Hands an owned `event` to `each`: an acked message as the borrowed kind, like those taken
/// from the read buffer.
fn hand(each: &mut impl FnMut(Incoming<'_>), event: Event) {
    match event {
        Event::AckedMessage {
            sender,
            id,
            payload,
        } => each(Incoming::AckedMessage {
            sender: &sender,
            id,
            payload: &payload,
        }),
        other => each(Incoming::Event(other)),
    }
}

/// A reconnecting session with acknowledged delivery. See the module docs.
#[derive(Debug)]
pub struct AckedSession {
    session: Session,
    sender: AckSender,
    receiver: AckReceiver,
    started: Instant,
    /// Events for the application, in order. Only through `push_event` and `pop_event`, which
    /// keep `acked_waiting`.
    events: VecDeque<Event>,
    /// The acked messages in `events`: while any wait, no acknowledgement is written.
    acked_waiting: usize,
    /// Ids the application watches (their presence events are its own).
    user_watches: HashSet<Vec<u8>>,
    /// Targets this session watches for retransmission.
    auto_watches: HashSet<Vec<u8>>,
    auto_watches_max: usize,
    payload_bytes_max: usize,
    /// A write error met while queueing in `send`, returned by the next call that can fail.
    deferred: Option<ClientError>,
    /// Acknowledgements made, not yet written: they wait while an acked message they cover
    /// waits in `events` (see the module docs). At most one per sender
    /// ([`AckOut::coalesce_into`]).
    held_acks: Vec<AckOut>,
    /// Set by [`AckedSession::hold_acks`]: `held_acks` wait for [`AckedSession::take_acks`].
    acks_held_by_caller: bool,
}

impl AckedSession {
    /// Connects as [`Session::connect`], with a fresh random epoch for its messages.
    pub fn connect(id: &[u8], opts: AckedSessionOptions) -> Result<AckedSession, ClientError> {
        let session = Session::connect(id, opts.session.clone())?;
        Ok(Self::over(session, opts))
    }

    /// Acknowledged delivery over `session`, a session already connected (a local client of
    /// an embedded node, [`Session::over_client`]); `opts.session` is not used.
    pub fn over(session: Session, opts: AckedSessionOptions) -> AckedSession {
        let mut seed = [0u8; 16];
        let _ = getrandom::fill(&mut seed);
        let epoch = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()) | 1;
        let jitter_seed = u64::from_le_bytes(seed[8..].try_into().unwrap_or_default());
        let payload_bytes_max = crate::protocol::payload_bytes_max(session.relay_max_frame_bytes());
        AckedSession {
            session,
            sender: AckSender::new(opts.sender, epoch, jitter_seed),
            receiver: AckReceiver::new(opts.receiver),
            started: Instant::now(),
            events: VecDeque::new(),
            acked_waiting: 0,
            user_watches: HashSet::new(),
            auto_watches: HashSet::new(),
            auto_watches_max: opts.auto_watches_max,
            payload_bytes_max,
            deferred: None,
            held_acks: Vec::new(),
            acks_held_by_caller: false,
        }
    }

    /// The session's socket, for an event loop (see [`Session::as_raw_fd`]).
    pub fn as_raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.session.as_raw_fd()
    }

    /// When this session next needs a `recv` call even if nothing arrives: the earliest of its
    /// retransmission and acknowledgement timers and the connection's liveness check; now when
    /// events wait.
    pub fn next_deadline(&self) -> Option<Instant> {
        let acks_to_write =
            !self.held_acks.is_empty() && !self.acks_held_by_caller && !self.holds_acked_message();
        if !self.events.is_empty() || self.deferred.is_some() || acks_to_write {
            return Some(Instant::now());
        }
        match (self.next_timer(), self.session.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The epoch this session numbers its messages in.
    pub fn epoch(&self) -> u64 {
        self.sender.epoch()
    }

    /// The plain session underneath (for subscriptions and best-effort sends; watch through
    /// [`Self::watch`] so the session's own watches do not cancel yours).
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Sends `payload` to `target`, acknowledged; returns its sequence number. The message
    /// ends in exactly one [`Event::Confirmed`] (whose range holds its number) or one
    /// [`Event::Failed`] from [`Self::recv`].
    pub fn send(
        &mut self,
        target: &[u8],
        payload: impl Into<Bytes>,
    ) -> Result<u64, AckedSendError> {
        let now_us = self.now_us();
        self.send_at(target, payload.into(), now_us)
    }

    /// Sends the `payloads` to `target` in order, as [`Self::send`] each, at one reading of
    /// the clock, until a bound is full; returns the first sequence number and how many were
    /// taken (their numbers follow on; `(0, 0)` for no payloads). Refuses as `send` when it
    /// cannot take the first.
    pub fn send_many(
        &mut self,
        target: &[u8],
        payloads: &[Bytes],
    ) -> Result<(u64, usize), AckedSendError> {
        let now_us = self.now_us();
        let (mut first, mut taken) = (None, 0);
        for payload in payloads {
            match self.send_at(target, payload.clone(), now_us) {
                Ok(seq) => {
                    first.get_or_insert(seq);
                    taken += 1;
                }
                // Those taken are reported; the error comes again on the next call.
                Err(_) if taken > 0 => break,
                Err(e) => return Err(e),
            }
            if self.deferred.is_some() {
                // The connection failed (and a reconnection was tried): stop here rather
                // than try again for every payload left; the next call reports it.
                break;
            }
        }
        Ok((first.unwrap_or(0), taken))
    }

    fn send_at(
        &mut self,
        target: &[u8],
        payload: Bytes,
        now_us: u64,
    ) -> Result<u64, AckedSendError> {
        if payload.len() > self.payload_bytes_max {
            return Err(AckedSendError::Client(ClientError::FrameTooLarge {
                frame_bytes: payload.len(),
                max_frame_bytes: self.payload_bytes_max,
            }));
        }
        let numbered = self
            .sender
            .number(target, payload, now_us)
            .map_err(AckedSendError::WouldBlock)?;
        let id = MsgId {
            epoch: numbered.epoch,
            seq: numbered.wire_seq,
        };
        let seq = numbered.seq;
        // The message is numbered and kept: it ends as an event whatever happens now, so a
        // write error is reported by the next call instead of as this message's failure.
        if let Err(e) = self
            .session
            .send_acked(numbered.target, id, numbered.payload)
        {
            self.deferred.get_or_insert(e);
        }
        Ok(seq)
    }

    /// Watches `client_id` for the application (presence events come from [`Self::recv`]).
    pub fn watch(&mut self, client_id: &[u8]) -> Result<(), ClientError> {
        self.user_watches.insert(client_id.to_vec());
        if self.auto_watches.contains(client_id) {
            return Ok(());
        }
        self.session.watch(client_id)
    }

    /// Stops the application's watch of `client_id` (the session may go on watching it for
    /// retransmission; its events are then not handed out).
    pub fn unwatch(&mut self, client_id: &[u8]) -> Result<(), ClientError> {
        self.user_watches.remove(client_id);
        if self.auto_watches.contains(client_id) {
            return Ok(());
        }
        self.session.unwatch(client_id)
    }

    /// Writes everything queued (messages, retransmissions, acknowledgements).
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.drive()?;
        self.session.flush()
    }

    /// Waits up to `timeout` for the next event for the application, driving timers,
    /// retransmissions and acknowledgements meanwhile. `Duration::ZERO` polls once.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        // One clock read per event: the clock was a sixth of the client's time when every
        // step read it.
        let mut now = Instant::now();
        let deadline = now + timeout;
        loop {
            self.drive_at(now)?;
            if let Some(event) = self.pop_event() {
                return Ok(Some(event));
            }
            let timed_out;
            (now, timed_out) = self.read_one(now, deadline)?;
            if timed_out {
                self.drive_at(now)?;
                return Ok(self.pop_event());
            }
        }
    }

    /// One step of waiting: writes what is queued, waits until the next timer or `deadline`
    /// for an event of the session, and applies it (into `events` if the application must
    /// see it). Returns the time it ended at, and whether `deadline` passed with nothing.
    fn read_one(
        &mut self,
        now: Instant,
        deadline: Instant,
    ) -> Result<(Instant, bool), ClientError> {
        self.session.flush()?;
        let wait = self.next_timer().map_or(deadline, |t| t.min(deadline));
        let got = self.session.recv(wait.saturating_duration_since(now))?;
        let now = Instant::now();
        match got {
            Some(event) => {
                if let Some(event) = self.on_event(event, self.us_at(now))? {
                    self.push_event(event);
                }
                Ok((now, false))
            }
            None => Ok((now, now >= deadline)),
        }
    }

    /// As [`Self::recv`], then everything else that is ready without waiting (what was read,
    /// and further reads while they find bytes), up to [`RECV_MANY_EVENTS_MAX`] events and as
    /// many frames, appended to `events`; returns how many. The frames of a batch are handled
    /// at one reading of the clock, and the acknowledgements they make go out in one write at
    /// the end: the way to receive at a high rate. Order: the session's events as they came;
    /// the confirmations and failures its acknowledgements and errors ended come after them,
    /// at the end of the batch. An error met once events were appended is returned by the
    /// next call, so no appended event is lost to it. [`Self::recv_with`] is the same batch
    /// without a copy of each message.
    pub fn recv_many(
        &mut self,
        timeout: Duration,
        events: &mut Vec<Event>,
    ) -> Result<usize, ClientError> {
        self.recv_with(timeout, |incoming| events.push(incoming.into_event()))
    }

    /// As [`Self::recv_many`], handing each event to `each` as it is taken instead of
    /// appending it: acked messages borrowed from the session's read buffer (no copy and no
    /// allocation per message), every other event owned. Returns how many `each` got.
    pub fn recv_with(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(Incoming<'_>),
    ) -> Result<usize, ClientError> {
        let Some(first) = self.recv(timeout)? else {
            return Ok(0);
        };
        hand(&mut each, first);
        let mut handed = 1;
        // Events already waiting come first; then the session's, each handled as it comes.
        handed += self.hand_waiting(&mut each, RECV_MANY_EVENTS_MAX - handed);
        if let Err(e) = self.take_ready(&mut each, &mut handed) {
            self.deferred.get_or_insert(e);
        }
        // What the timers and acknowledgements ended; any beyond the bound stay for the
        // next call.
        handed += self.hand_waiting(&mut each, RECV_MANY_EVENTS_MAX.saturating_sub(handed));
        Ok(handed)
    }

    /// Hands up to `max` of the events waiting to `each`; returns how many.
    fn hand_waiting(&mut self, each: &mut impl FnMut(Incoming<'_>), max: usize) -> usize {
        let count = self.events.len().min(max);
        for _ in 0..count {
            if let Some(event) = self.pop_event() {
                hand(each, event);
            }
        }
        count
    }

    /// The rest of [`Self::recv_with`]'s batch: frames ready without waiting, then the timers
    /// and the write of what they all owe.
    fn take_ready(
        &mut self,
        each: &mut impl FnMut(Incoming<'_>),
        handed: &mut usize,
    ) -> Result<(), ClientError> {
        let mut now = Instant::now();
        let mut now_us = self.us_at(now);
        let mut frames = 0usize;
        while frames < RECV_MANY_EVENTS_MAX && *handed < RECV_MANY_EVENTS_MAX {
            // Acked messages already read, borrowed where they lie: the common case.
            let budget = (RECV_MANY_EVENTS_MAX - frames).min(RECV_MANY_EVENTS_MAX - *handed);
            let receiver = &mut self.receiver;
            // Counted as handed out, so that an error after some of them counts them too.
            let taken = self.session.take_acked(budget, |sender, id, payload| {
                if receiver.on_message(sender, id.epoch, id.seq, now_us) == Verdict::Deliver {
                    each(Incoming::AckedMessage {
                        sender,
                        id,
                        payload,
                    });
                    *handed += 1;
                }
            })?;
            frames += taken;
            if taken == budget {
                break;
            }
            // Any other frame, or a read that does not wait.
            let Some(event) = self.session.recv(Duration::ZERO)? else {
                break;
            };
            frames += 1;
            let ends_batch = matches!(event, Event::Closed { .. });
            if matches!(event, Event::Reconnected { .. }) {
                // Reconnecting may have taken seconds: retransmission times start from now.
                now = Instant::now();
                now_us = self.us_at(now);
            }
            if let Some(event) = self.on_event(event, now_us)? {
                hand(each, event);
                *handed += 1;
            }
            if ends_batch {
                break;
            }
        }
        self.drive_at(now)?;
        self.session.flush()
    }

    /// Receives until every message sent is confirmed or failed, or `timeout` passes;
    /// events for the application meanwhile are kept for [`Self::recv`] (and the acked
    /// messages among them are not acknowledged until handed out). Returns whether nothing is
    /// left in flight.
    pub fn drain(&mut self, timeout: Duration) -> Result<bool, ClientError> {
        let mut now = Instant::now();
        let deadline = now + timeout;
        loop {
            self.drive_at(now)?;
            if self.sender.stats().in_flight == 0 {
                return Ok(true);
            }
            let timed_out;
            (now, timed_out) = self.read_one(now, deadline)?;
            if timed_out {
                return Ok(false);
            }
        }
    }

    /// Keeps acknowledgements in the session (`true`) until [`Self::take_acks`] takes them
    /// and [`Self::release_acks`] writes them: for a layer that hands events out later than
    /// this session does (a queue the application drains), so that a message is acknowledged
    /// only once the application has it. `false` (the default) writes them as the module docs
    /// say.
    pub fn hold_acks(&mut self, hold: bool) {
        self.acks_held_by_caller = hold;
    }

    /// Appends to `into` the acknowledgements due for the messages handed out so far (none
    /// while an acked message waits in the session to be handed out). With
    /// [`Self::hold_acks`] on, the caller writes them with [`Self::release_acks`] once it has
    /// handed out every message this session gave it before this call.
    pub fn take_acks(&mut self, into: &mut Vec<AckOut>) {
        self.poll_acks();
        if !self.holds_acked_message() {
            into.append(&mut self.held_acks);
        }
    }

    /// Writes acknowledgements from [`Self::take_acks`] (queued; written by the next flush).
    pub fn release_acks(&mut self, acks: &[AckOut]) -> Result<(), ClientError> {
        for ack in acks {
            self.session.ack(ack)?;
        }
        Ok(())
    }

    /// Messages sent and not yet confirmed or failed.
    pub fn in_flight(&self) -> u64 {
        self.sender.stats().in_flight
    }

    /// The counters (see [`AckedStats`]).
    pub fn stats(&self) -> AckedStats {
        AckedStats {
            sender: self.sender.stats().clone(),
            receiver: self.receiver.stats(),
            rtt: self.sender.rtt().clone(),
        }
    }

    /// Closes the session. Messages still in flight fail with `Closed` (counted; call
    /// [`Self::drain`] first to wait for them); acknowledgements owed for what was handed out
    /// are written first, unless an acked message read still waits to be handed out (then
    /// none are: its sender sends again, to this id's next session, rather than confirm a
    /// message nobody saw) or [`Self::hold_acks`] is on. Returns the final counters.
    pub fn close(mut self) -> Result<AckedStats, ClientError> {
        let now = self.now_us();
        self.receiver
            .handle_timeout(now.saturating_add(u64::MAX / 4));
        self.write_acks()?;
        self.sender.abandon_all();
        let stats = self.stats();
        self.session.close()?;
        Ok(stats)
    }

    fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    /// `at` in the sans-IO parts' clock: microseconds since the session started.
    fn us_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_micros()).unwrap_or(u64::MAX)
    }

    /// When the earliest timer of the sender or receiver is due.
    fn next_timer(&self) -> Option<Instant> {
        let due_us = match (self.sender.poll_timeout(), self.receiver.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.started + Duration::from_micros(due_us))
    }

    /// Runs the timers that are due, writes what they and earlier events queued, and turns
    /// the sender's outcomes into events.
    fn drive(&mut self) -> Result<(), ClientError> {
        self.drive_at(Instant::now())
    }

    /// [`Self::drive`] at the time `at`, already read.
    fn drive_at(&mut self, at: Instant) -> Result<(), ClientError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let now = self.us_at(at);
        if self.sender.poll_timeout().is_some_and(|t| t <= now) {
            self.sender.handle_timeout(now);
        }
        if self.receiver.poll_timeout().is_some_and(|t| t <= now) {
            self.receiver.handle_timeout(now);
        }
        self.transmit()?;
        self.write_acks()?;
        while let Some(outcome) = self.sender.poll_event() {
            let event = match outcome {
                AckEvent::Confirmed {
                    target,
                    first_seq,
                    last_seq,
                } => Event::Confirmed {
                    target,
                    first_seq,
                    last_seq,
                },
                AckEvent::Failed {
                    target,
                    seq,
                    reason,
                } => Event::Failed {
                    target,
                    seq,
                    reason,
                },
            };
            // Only a target watched for retransmission needs looking at (no copy otherwise).
            if !self.auto_watches.is_empty() {
                if let Event::Confirmed { target, .. } | Event::Failed { target, .. } = &event {
                    let target = target.clone();
                    self.unwatch_if_done(&target)?;
                }
            }
            self.push_event(event);
        }
        Ok(())
    }

    fn transmit(&mut self) -> Result<(), ClientError> {
        while let Some(t) = self.sender.poll_transmit() {
            let id = MsgId {
                epoch: t.epoch,
                seq: t.seq,
            };
            self.session.send_acked(&t.target, id, &t.payload)?;
        }
        Ok(())
    }

    /// Writes the acknowledgements made, unless an acked message they cover still waits to be
    /// handed out, or the caller holds them ([`Self::hold_acks`]): then they wait.
    fn write_acks(&mut self) -> Result<(), ClientError> {
        self.poll_acks();
        if self.acks_held_by_caller || self.held_acks.is_empty() || self.holds_acked_message() {
            return Ok(());
        }
        for ack in self.held_acks.drain(..) {
            self.session.ack(&ack)?;
        }
        Ok(())
    }

    /// Moves the acknowledgements the receiver made into `held_acks`.
    fn poll_acks(&mut self) {
        while let Some(ack) = self.receiver.poll_ack() {
            AckOut::coalesce_into(&mut self.held_acks, ack);
        }
    }

    /// Whether an acked message waits in `events`, not yet handed out.
    fn holds_acked_message(&self) -> bool {
        self.acked_waiting > 0
    }

    fn push_event(&mut self, event: Event) {
        if matches!(event, Event::AckedMessage { .. }) {
            self.acked_waiting += 1;
        }
        self.events.push_back(event);
    }

    fn pop_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if matches!(event, Event::AckedMessage { .. }) {
            debug_assert!(
                self.acked_waiting > 0,
                "acked_waiting counts the acked events"
            );
            self.acked_waiting -= 1;
        }
        Some(event)
    }

    /// Applies one event of the session; returns what the application must see of it.
    fn on_event(&mut self, event: Event, now: u64) -> Result<Option<Event>, ClientError> {
        let for_application = match event {
            Event::AckedMessage {
                sender,
                id,
                payload,
            } => {
                let verdict = self.receiver.on_message(&sender, id.epoch, id.seq, now);
                (verdict == Verdict::Deliver).then_some(Event::AckedMessage {
                    sender,
                    id,
                    payload,
                })
            }
            Event::Receipt {
                from,
                gap,
                epoch,
                upto,
                runs,
            } => {
                self.sender.on_ack(&from, epoch, upto, &runs, gap, now);
                None
            }
            Event::AckedError {
                code, subject, id, ..
            } => {
                self.sender.on_error(&subject, id.epoch, id.seq, code);
                let absent = matches!(code, ErrorCode::UNKNOWN_ID | ErrorCode::UNREACHABLE);
                // Watched only while something to it is in flight (else nothing would end
                // the watch).
                if absent && self.sender.in_flight_to(&subject) > 0 {
                    self.auto_watch(&subject)?;
                }
                None
            }
            Event::Presence { client_id, online } => {
                if online {
                    self.sender.on_presence_online(&client_id, now);
                }
                let ours = self.auto_watches.contains(&client_id)
                    && !self.user_watches.contains(&client_id);
                (!ours).then_some(Event::Presence { client_id, online })
            }
            Event::Reconnected { server } => {
                self.sender.on_reconnected(now);
                Some(Event::Reconnected { server })
            }
            Event::Error { code, subject, .. }
                if code == ErrorCode::LIMIT_EXCEEDED && self.auto_watches.contains(&subject) =>
            {
                // The relay refused one of our watches: watch no more targets (a second
                // refusal would close the connection); the timer still retransmits.
                self.auto_watches.remove(&subject);
                self.auto_watches_max = 0;
                if !self.user_watches.contains(&subject) {
                    // Out of the session's watch list too, or a reconnection would ask again
                    // and the relay's second refusal would close the connection.
                    self.session.unwatch(&subject)?;
                }
                None
            }
            other => Some(other),
        };
        Ok(for_application)
    }

    /// Watches `target` (unknown or unreachable now) so that its coming online sends again
    /// what it has not acknowledged.
    fn auto_watch(&mut self, target: &[u8]) -> Result<(), ClientError> {
        if self.auto_watches.contains(target) || self.auto_watches.len() >= self.auto_watches_max {
            return Ok(());
        }
        self.auto_watches.insert(target.to_vec());
        if self.user_watches.contains(target) {
            return Ok(());
        }
        self.session.watch(target)
    }

    /// Stops watching `target` for retransmission once nothing to it is in flight.
    fn unwatch_if_done(&mut self, target: &[u8]) -> Result<(), ClientError> {
        if self.sender.in_flight_to(target) > 0 || !self.auto_watches.remove(target) {
            return Ok(());
        }
        if self.user_watches.contains(target) {
            return Ok(());
        }
        self.session.unwatch(target)
    }
}

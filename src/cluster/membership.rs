//! Cluster membership (sans-IO): who the peers are, which control link is current for each,
//! when to dial, when a silent peer is dead, and when this node is ready.
//!
//! Inputs are events with the current time in milliseconds; outputs are [`Action`]s for the
//! I/O layer. No sockets, clocks or threads.
//!
//! Rules:
//! - Every node dials every known peer it has no control link to (seeds by address until their
//!   id is known), with backoff from `backoff_min_ms` doubling to `backoff_max_ms`.
//! - At most one control link per peer. When two are up at once (both dialed), the one dialed
//!   by the lower node id wins on both sides; a link from a new incarnation of the peer (it
//!   restarted) always replaces the old one.
//! - A peer not heard from for `dead_after_ms` is declared dead once: its rows and interest are
//!   purged (by the caller) and its links closed. Dialing continues, so a healed partition or
//!   a restarted node comes back.
//! - Node ids are unique: a link from a second node claiming the id of a peer that is up at
//!   another address (another incarnation, heard from within `dead_after_ms`) is refused and
//!   reported once per address ([`Action::IdClash`]); gossip never moves an up peer's address.
//!   A peer that restarts on a new address is accepted once its old incarnation is dead.
//! - The node is ready (once, for good) when every known peer has delivered its snapshot or
//!   is dead, and every seed has answered or `ready_wait_ms` has passed since start.

#![forbid(unsafe_code)]

pub type LinkId = u64;

#[derive(Clone, Debug)]
pub struct MembershipConfig {
    pub heartbeat_interval_ms: u64,
    pub dead_after_ms: u64,
    pub ready_wait_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Nodes the cluster may have, this one included: peers past it are never learnt.
    pub nodes_max: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// No control link yet (or it broke); not yet declared dead.
    Connecting,
    Up,
    Dead,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Up => "up",
            PeerState::Dead => "dead",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub node: u16,
    pub addr: String,
    pub state: PeerState,
    link: Option<(LinkId, u64, bool)>,
    last_heard_ms: u64,
    snapshot_received: bool,
    dial: Dial,
}

#[derive(Clone, Debug)]
struct Dial {
    in_progress: bool,
    next_ms: u64,
    backoff_ms: u64,
}

impl Dial {
    fn new(now_ms: u64) -> Dial {
        Dial {
            in_progress: false,
            next_ms: now_ms,
            backoff_ms: 0,
        }
    }

    fn failed(&mut self, now_ms: u64, cfg: &MembershipConfig) {
        self.in_progress = false;
        self.backoff_ms = (self.backoff_ms * 2).clamp(cfg.backoff_min_ms, cfg.backoff_max_ms);
        self.next_ms = now_ms + self.backoff_ms;
    }

    fn succeeded(&mut self) {
        self.in_progress = false;
        self.backoff_ms = 0;
    }
}

#[derive(Clone, Debug)]
struct Seed {
    addr: String,
    answered: bool,
    dial: Dial,
}

/// A control link that just passed its handshake.
#[derive(Clone, Copy, Debug)]
pub struct NewLink<'a> {
    pub link: LinkId,
    pub node: u16,
    /// The address the peer advertises.
    pub addr: &'a str,
    pub incarnation: u64,
    pub dialed_by_us: bool,
    /// The seed address we dialed, when this link answers a seed.
    pub dialed_seed: Option<&'a str>,
}

/// What the I/O layer must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Dial `addr` for a control link (`node` when known).
    Dial { addr: String, node: Option<u16> },
    /// Send our full snapshot, interest and member list on this new current link, and dial
    /// our data links to `node`.
    LinkAdopted { link: LinkId, node: u16 },
    /// Close a link that lost to another one (or belongs to a dead peer).
    CloseLink { link: LinkId },
    /// Purge the peer's rows and interest, close its data links, tell watchers.
    DeclareDead { node: u16 },
    /// Send a heartbeat on every current link.
    Heartbeat,
    /// The node just became ready.
    Ready,
    /// A second node claims `node`'s id from `refused` while the one at `kept` is up: its
    /// link was closed. Reported once per (node, refused address).
    IdClash {
        node: u16,
        kept: String,
        refused: String,
    },
}

/// Id clashes reported at most (one per node and address); more are refused silently.
const ID_CLASHES_REPORTED_MAX: usize = 64;

pub struct Membership {
    self_id: u16,
    cfg: MembershipConfig,
    peers: Vec<Peer>,
    seeds: Vec<Seed>,
    started_ms: u64,
    next_heartbeat_ms: u64,
    ready: bool,
    /// (node, address) pairs already reported as an id clash.
    clashes_reported: Vec<(u16, String)>,
    /// Nodes already reported as refused at `nodes_max`.
    refusals_reported: Vec<u16>,
}

impl Membership {
    pub fn new(self_id: u16, seeds: &[String], cfg: MembershipConfig, now_ms: u64) -> Self {
        Membership {
            self_id,
            peers: Vec::new(),
            seeds: seeds
                .iter()
                .map(|a| Seed {
                    addr: a.clone(),
                    answered: false,
                    dial: Dial::new(now_ms),
                })
                .collect(),
            started_ms: now_ms,
            next_heartbeat_ms: now_ms,
            ready: false,
            clashes_reported: Vec::new(),
            refusals_reported: Vec::new(),
            cfg,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The node whose current control link is `link`.
    pub fn node_of(&self, link: LinkId) -> Option<u16> {
        self.peers
            .iter()
            .find(|p| p.link.is_some_and(|(l, _, _)| l == link))
            .map(|p| p.node)
    }

    pub fn current_links(&self) -> Vec<(u16, LinkId)> {
        self.peers
            .iter()
            .filter_map(|p| p.link.map(|(l, _, _)| (p.node, l)))
            .collect()
    }

    /// Whether `node` is up (its control link is current).
    pub fn is_up(&self, node: u16) -> bool {
        self.peer(node).is_some_and(|p| p.state == PeerState::Up)
    }

    fn peer(&self, node: u16) -> Option<&Peer> {
        self.peers.iter().find(|p| p.node == node)
    }

    fn peer_mut(&mut self, node: u16) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.node == node)
    }

    /// Learns a member (from a HELLO or a MEMBERS list); a known member's address is updated.
    pub fn learn(&mut self, node: u16, addr: &str, now_ms: u64) {
        if node == self.self_id || node == 0 || addr.is_empty() {
            return;
        }
        let full = self.peers.len() + 1 >= self.cfg.nodes_max;
        if full && self.peer(node).is_none() && !self.forget_longest_dead(node) {
            self.report_too_many(node, addr);
            return;
        }
        match self.peer_mut(node) {
            // An up peer keeps the address it is linked at: a different one for its id is a
            // restart elsewhere (learnt once it is dead) or a clash, never a move.
            Some(p) if p.link.is_some() && p.state == PeerState::Up => {}
            Some(p) => {
                if p.addr != addr {
                    p.addr = addr.to_string();
                }
            }
            None => self.peers.push(Peer {
                node,
                addr: addr.to_string(),
                state: PeerState::Connecting,
                link: None,
                last_heard_ms: now_ms,
                snapshot_received: false,
                dial: Dial::new(now_ms),
            }),
        }
    }

    /// At `nodes_max`, makes room for `newcomer` by forgetting the peer that has been dead the
    /// longest (its rows and interest were dropped when it was declared dead; if it comes back
    /// it is learnt again like any new node). Live and connecting peers are never forgotten, so
    /// dead nodes do not use up the bound for ever. Returns whether room was made.
    #[cold]
    fn forget_longest_dead(&mut self, newcomer: u16) -> bool {
        let Some(index) = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.state == PeerState::Dead && p.link.is_none())
            .min_by_key(|(_, p)| p.last_heard_ms)
            .map(|(i, _)| i)
        else {
            return false;
        };
        let gone = self.peers.swap_remove(index);
        tracing::info!(
            node = gone.node,
            addr = %gone.addr,
            newcomer,
            "forgot a dead node to admit a new one at cluster_nodes_max"
        );
        true
    }

    /// One error line per node refused at `nodes_max` (at most [`ID_CLASHES_REPORTED_MAX`]).
    #[cold]
    fn report_too_many(&mut self, node: u16, addr: &str) {
        if self.refusals_reported.contains(&node)
            || self.refusals_reported.len() >= ID_CLASHES_REPORTED_MAX
        {
            return;
        }
        self.refusals_reported.push(node);
        tracing::error!(
            node,
            addr,
            nodes_max = self.cfg.nodes_max,
            "node refused: the cluster already has cluster_nodes_max nodes; raise \
             cluster_nodes_max on every node to admit it"
        );
    }

    /// An authenticated control link came up.
    pub fn on_link_up(&mut self, new: NewLink<'_>, now_ms: u64) -> Vec<Action> {
        let NewLink {
            link,
            node,
            addr,
            incarnation,
            dialed_by_us,
            dialed_seed,
        } = new;
        if let Some(seed) = dialed_seed {
            if let Some(s) = self.seeds.iter_mut().find(|s| s.addr == seed) {
                s.answered = true;
                s.dial.succeeded();
            }
        }
        if self.clashes_with_up_peer(node, addr, incarnation, now_ms) {
            let mut actions = vec![Action::CloseLink { link }];
            actions.extend(self.report_clash(node, addr));
            return actions;
        }
        self.learn(node, addr, now_ms);
        let self_id = self.self_id;
        let Some(p) = self.peer_mut(node) else {
            return vec![Action::CloseLink { link }];
        };
        if dialed_by_us {
            p.dial.succeeded();
        }
        let preferred = dialed_by_us == (self_id < node);
        let mut actions = Vec::new();
        match p.link {
            Some((old, old_incarnation, old_preferred))
                if old_incarnation == incarnation && (old_preferred || !preferred) =>
            {
                // Keep the current link: the new one is a duplicate that loses.
                let _ = old;
                actions.push(Action::CloseLink { link });
                return actions;
            }
            Some((old, ..)) => actions.push(Action::CloseLink { link: old }),
            None => {}
        }
        p.link = Some((link, incarnation, preferred));
        // The adopted link is authoritative for where the peer is now.
        if p.addr != addr && !addr.is_empty() {
            p.addr = addr.to_string();
        }
        p.state = PeerState::Up;
        p.last_heard_ms = now_ms;
        p.snapshot_received = false;
        actions.push(Action::LinkAdopted { link, node });
        actions
    }

    /// Whether a link from `node` at `addr` (incarnation `incarnation`) comes from a second
    /// node with the id of a peer that is up at another address.
    fn clashes_with_up_peer(&self, node: u16, addr: &str, incarnation: u64, now_ms: u64) -> bool {
        let Some(p) = self.peer(node) else {
            return false;
        };
        let Some((_, current_incarnation, _)) = p.link else {
            return false;
        };
        let alive = now_ms.saturating_sub(p.last_heard_ms) < self.cfg.dead_after_ms;
        p.state == PeerState::Up && alive && current_incarnation != incarnation && p.addr != addr
    }

    /// The report of a clash of `node`'s id from `addr`, unless it was reported before.
    fn report_clash(&mut self, node: u16, addr: &str) -> Option<Action> {
        let key = (node, addr.to_string());
        if self.clashes_reported.contains(&key)
            || self.clashes_reported.len() >= ID_CLASHES_REPORTED_MAX
        {
            return None;
        }
        self.clashes_reported.push(key);
        Some(Action::IdClash {
            node,
            kept: self.peer(node).map(|p| p.addr.clone()).unwrap_or_default(),
            refused: addr.to_string(),
        })
    }

    /// A control link closed (EOF, error, or closed by us). Only the current link matters.
    pub fn on_link_down(&mut self, link: LinkId, now_ms: u64) {
        for p in &mut self.peers {
            if p.link.is_some_and(|(l, _, _)| l == link) {
                p.link = None;
                if p.state == PeerState::Up {
                    p.state = PeerState::Connecting;
                }
                p.dial.next_ms = p.dial.next_ms.max(now_ms);
            }
        }
    }

    /// A dial attempt to `addr` failed (refused, timed out, bad secret).
    pub fn on_dial_failed(&mut self, addr: &str, now_ms: u64) {
        let cfg = self.cfg.clone();
        for s in self.seeds.iter_mut().filter(|s| s.addr == addr) {
            s.dial.failed(now_ms, &cfg);
        }
        for p in self.peers.iter_mut().filter(|p| p.addr == addr) {
            p.dial.failed(now_ms, &cfg);
        }
    }

    /// Any control message arrived on `link`.
    pub fn on_heard(&mut self, link: LinkId, now_ms: u64) {
        for p in &mut self.peers {
            if p.link.is_some_and(|(l, _, _)| l == link) {
                p.last_heard_ms = now_ms;
            }
        }
    }

    /// The peer's full snapshot arrived.
    pub fn on_snapshot_received(&mut self, node: u16) {
        if let Some(p) = self.peer_mut(node) {
            p.snapshot_received = true;
        }
    }

    /// Timers: death, dialing, heartbeats, readiness.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let cfg = self.cfg.clone();
        for p in &mut self.peers {
            let silent = now_ms.saturating_sub(p.last_heard_ms) >= cfg.dead_after_ms;
            if p.state != PeerState::Dead && silent {
                p.state = PeerState::Dead;
                p.snapshot_received = false;
                if let Some((link, ..)) = p.link.take() {
                    actions.push(Action::CloseLink { link });
                }
                actions.push(Action::DeclareDead { node: p.node });
            }
            if p.link.is_none() && !p.dial.in_progress && now_ms >= p.dial.next_ms {
                p.dial.in_progress = true;
                // Until the dial answers, count the next attempt as if it failed (no storm).
                actions.push(Action::Dial {
                    addr: p.addr.clone(),
                    node: Some(p.node),
                });
            }
        }
        let known: Vec<String> = self.peers.iter().map(|p| p.addr.clone()).collect();
        for s in &mut self.seeds {
            let linked_by_addr = known.contains(&s.addr)
                && self
                    .peers
                    .iter()
                    .any(|p| p.addr == s.addr && p.link.is_some());
            if !s.answered && !linked_by_addr && !s.dial.in_progress && now_ms >= s.dial.next_ms {
                s.dial.in_progress = true;
                actions.push(Action::Dial {
                    addr: s.addr.clone(),
                    node: None,
                });
            }
        }
        if now_ms >= self.next_heartbeat_ms {
            self.next_heartbeat_ms = now_ms + cfg.heartbeat_interval_ms;
            if self.peers.iter().any(|p| p.link.is_some()) {
                actions.push(Action::Heartbeat);
            }
        }
        if !self.ready && self.ready_now(now_ms) {
            self.ready = true;
            actions.push(Action::Ready);
        }
        actions
    }

    fn ready_now(&self, now_ms: u64) -> bool {
        let waited = now_ms.saturating_sub(self.started_ms) >= self.cfg.ready_wait_ms;
        let seeds_done = waited || self.seeds.iter().all(|s| s.answered);
        let peers_done = self.peers.iter().all(|p| match p.state {
            PeerState::Dead => true,
            PeerState::Up => p.snapshot_received,
            PeerState::Connecting => false,
        });
        seeds_done && peers_done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MembershipConfig {
        MembershipConfig {
            heartbeat_interval_ms: 500,
            dead_after_ms: 3000,
            ready_wait_ms: 3000,
            backoff_min_ms: 100,
            backoff_max_ms: 1000,
            nodes_max: 16,
        }
    }

    type LinkArgs<'a> = (LinkId, u16, &'a str, u64, bool, Option<&'a str>);

    fn up(m: &mut Membership, a: LinkArgs<'_>, now: u64) -> Vec<Action> {
        let (link, node, addr, incarnation, dialed_by_us, dialed_seed) = a;
        m.on_link_up(
            NewLink {
                link,
                node,
                addr,
                incarnation,
                dialed_by_us,
                dialed_seed,
            },
            now,
        )
    }

    fn dials(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dial { addr, .. } => Some(addr.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn peers_past_nodes_max_are_never_learnt_and_their_links_are_closed() {
        let mut m = Membership::new(
            1,
            &[],
            MembershipConfig {
                nodes_max: 3,
                ..cfg()
            },
            0,
        );
        m.learn(2, "b:1", 0);
        m.learn(3, "c:1", 0);
        m.learn(4, "d:1", 0);
        let known: Vec<u16> = m.peers().iter().map(|p| p.node).collect();
        assert_eq!(known, [2, 3], "this node and two peers make three");
        let actions = up(&mut m, (9, 4, "d:1", 1, false, None), 10);
        assert_eq!(actions, vec![Action::CloseLink { link: 9 }]);
        assert!(!m.is_up(4));
        m.learn(3, "c:2", 20);
        assert_eq!(m.peers().len(), 2, "a known peer is still updated");
    }

    #[test]
    fn at_nodes_max_a_new_node_replaces_the_longest_dead_peer_never_a_live_one() {
        let mut m = Membership::new(
            1,
            &[],
            MembershipConfig {
                nodes_max: 4,
                ..cfg()
            },
            0,
        );
        m.learn(2, "b:1", 0);
        m.learn(3, "c:1", 0);
        m.learn(4, "d:1", 0);
        up(&mut m, (10, 4, "d:1", 1, true, None), 0);
        // Nodes 2 and 3 never answer; node 4 keeps talking.
        m.on_heard(10, 2000);
        m.on_heard(10, 3500);
        let actions = m.on_tick(3500);
        assert!(actions.contains(&Action::DeclareDead { node: 2 }));
        assert!(actions.contains(&Action::DeclareDead { node: 3 }));
        assert!(m.is_up(4));
        m.learn(5, "e:1", 3600);
        m.learn(6, "f:1", 3600);
        let mut known: Vec<u16> = m.peers().iter().map(|p| p.node).collect();
        known.sort_unstable();
        assert_eq!(known, [4, 5, 6], "both dead peers made room");
        // Every peer is live or connecting now: the next node is refused.
        m.learn(7, "g:1", 3700);
        assert!(m.peers().iter().all(|p| p.node != 7));
        assert_eq!(m.peers().len(), 3);
    }

    #[test]
    fn lone_node_is_ready_at_once_and_seeded_node_after_the_snapshot() {
        let mut m = Membership::new(1, &[], cfg(), 0);
        assert!(m.on_tick(0).contains(&Action::Ready));

        let mut m = Membership::new(2, &["a:1".into()], cfg(), 0);
        let a = m.on_tick(0);
        assert_eq!(dials(&a), ["a:1"]);
        assert!(!m.is_ready());
        let a = up(&mut m, (7, 1, "a:1", 11, true, Some("a:1")), 10);
        assert_eq!(a, vec![Action::LinkAdopted { link: 7, node: 1 }]);
        // A member learnt by gossip must deliver its snapshot too.
        m.learn(3, "c:1", 12);
        m.on_snapshot_received(1);
        assert!(!m.on_tick(20).contains(&Action::Ready), "node 3 pending");
        assert_eq!(
            dials(&m.on_tick(21)),
            Vec::<String>::new(),
            "dial in flight"
        );
        up(&mut m, (8, 3, "c:1", 5, true, None), 30);
        m.on_snapshot_received(3);
        assert!(m.on_tick(40).contains(&Action::Ready));
    }

    #[test]
    fn unreachable_seed_backs_off_and_readiness_waits_at_most_ready_wait() {
        let mut m = Membership::new(2, &["a:1".into()], cfg(), 0);
        let mut attempts = vec![];
        let mut now = 0;
        while now <= 3000 {
            if !dials(&m.on_tick(now)).is_empty() {
                attempts.push(now);
                m.on_dial_failed("a:1", now);
            }
            if m.is_ready() {
                break;
            }
            now += 10;
        }
        assert_eq!(&attempts[..5], &[0, 100, 300, 700, 1500]);
        assert_eq!(now, 3000, "ready once ready_wait_ms passed");
    }

    #[test]
    fn silence_declares_dead_once_but_a_two_second_pause_does_not() {
        let mut m = Membership::new(1, &[], cfg(), 0);
        up(&mut m, (1, 2, "b:1", 9, true, None), 0);
        m.on_snapshot_received(2);
        for now in (0..=2000).step_by(100) {
            assert!(!m
                .on_tick(now)
                .iter()
                .any(|a| matches!(a, Action::DeclareDead { .. })));
        }
        m.on_heard(1, 2000);
        for now in (2000..5000).step_by(100) {
            assert!(!m
                .on_tick(now)
                .iter()
                .any(|a| matches!(a, Action::DeclareDead { .. })));
        }
        let a = m.on_tick(5000);
        assert!(a.contains(&Action::DeclareDead { node: 2 }));
        assert!(a.contains(&Action::CloseLink { link: 1 }));
        assert!(!m
            .on_tick(5100)
            .iter()
            .any(|a| matches!(a, Action::DeclareDead { .. })));
        assert_eq!(m.peers()[0].state, PeerState::Dead);
        // Dialing goes on; a new link brings it back up.
        up(&mut m, (2, 2, "b:1", 10, true, None), 6000);
        assert!(m.is_up(2));
    }

    #[test]
    fn a_broken_link_is_redialed_and_dead_only_after_the_bound() {
        let mut m = Membership::new(1, &[], cfg(), 0);
        up(&mut m, (1, 2, "b:1", 9, true, None), 0);
        m.on_link_down(1, 100);
        assert_eq!(dials(&m.on_tick(100)), ["b:1"]);
        m.on_dial_failed("b:1", 110);
        assert!(dials(&m.on_tick(150)).is_empty());
        assert_eq!(dials(&m.on_tick(210)), ["b:1"]);
        m.on_dial_failed("b:1", 220);
        let dead_at = (220..4000)
            .step_by(10)
            .find(|&t| m.on_tick(t).contains(&Action::DeclareDead { node: 2 }));
        assert_eq!(dead_at, Some(3000));
    }

    #[test]
    fn duplicate_links_keep_the_one_dialed_by_the_lower_id_on_both_sides() {
        // Node 1 and node 2 dial each other at once.
        let mut n1 = Membership::new(1, &[], cfg(), 0);
        let mut n2 = Membership::new(2, &[], cfg(), 0);
        // Link 10: dialed by 1. Link 20: dialed by 2. Arrival orders differ per side.
        up(&mut n1, (20, 2, "b", 2, false, None), 0);
        let a = up(&mut n1, (10, 2, "b", 2, true, None), 1);
        assert_eq!(a[0], Action::CloseLink { link: 20 });
        up(&mut n2, (10, 1, "a", 1, false, None), 0);
        let a = up(&mut n2, (20, 1, "a", 1, true, None), 1);
        assert_eq!(a, vec![Action::CloseLink { link: 20 }]);
        assert_eq!(n1.current_links(), vec![(2, 10)]);
        assert_eq!(n2.current_links(), vec![(1, 10)]);
        // A restarted peer (new incarnation) replaces the link whatever its direction.
        let a = up(&mut n1, (30, 2, "b", 3, false, None), 2);
        assert_eq!(a[0], Action::CloseLink { link: 10 });
        assert_eq!(n1.current_links(), vec![(2, 30)]);
        // The old link's late close does not take the peer down.
        n1.on_link_down(10, 3);
        assert!(n1.is_up(2));
    }

    #[test]
    fn a_second_node_with_an_up_peers_id_is_refused_and_reported_once() {
        let mut m = Membership::new(3, &[], cfg(), 0);
        let a = up(&mut m, (1, 1, "a:1", 11, true, None), 10);
        assert_eq!(a, vec![Action::LinkAdopted { link: 1, node: 1 }]);
        let clash = up(&mut m, (2, 1, "b:1", 22, false, None), 20);
        assert_eq!(
            clash,
            vec![
                Action::CloseLink { link: 2 },
                Action::IdClash {
                    node: 1,
                    kept: "a:1".into(),
                    refused: "b:1".into()
                }
            ]
        );
        let again = up(&mut m, (3, 1, "b:1", 22, false, None), 30);
        assert_eq!(again, vec![Action::CloseLink { link: 3 }], "reported once");
        m.learn(1, "b:1", 40);
        assert_eq!(
            m.peer(1).unwrap().addr,
            "a:1",
            "gossip does not move an up peer"
        );
        assert_eq!(m.node_of(1), Some(1), "the first node keeps its link");
    }

    #[test]
    fn a_peer_restarting_elsewhere_is_accepted_once_its_old_incarnation_is_dead() {
        let mut m = Membership::new(3, &[], cfg(), 0);
        up(&mut m, (1, 1, "a:1", 11, true, None), 10);
        // Same address, new incarnation: a restart, accepted at once.
        let a = up(&mut m, (2, 1, "a:1", 12, false, None), 20);
        assert!(a.contains(&Action::LinkAdopted { link: 2, node: 1 }));
        // New address while the old incarnation is silent past dead_after_ms: accepted.
        let later = 20 + cfg().dead_after_ms;
        let a = up(&mut m, (3, 1, "b:1", 13, false, None), later);
        assert!(
            a.contains(&Action::LinkAdopted { link: 3, node: 1 }),
            "{a:?}"
        );
        assert_eq!(m.peer(1).unwrap().addr, "b:1");
    }
}

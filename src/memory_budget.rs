//! sans-IO: the relay's worst-case memory, derived from its settings.
//!
//! Every store the relay keeps has a bound in its settings; [`Config::memory_budget`] adds them
//! up, one line per store with its formula, so an operator sees what the settings allow before
//! the traffic finds out. `serve` logs the budget and refuses settings whose budget exceeds
//! `memory_max_bytes`; [`Config::fit_to_memory`] first lowers the bounds left at their defaults
//! (all by one factor, none below a floor that keeps it useful) so that the defaults start on
//! any host.
//!
//! What is not counted: the kernel's socket buffers (they grow with the same traffic, outside
//! the process), the executable and thread stacks, and the allocator's own overhead. The byte
//! costs of table entries are upper bounds at the longest names, measured from the types.

#![forbid(unsafe_code)]

use crate::config::Config;
use crate::protocol::{PARTIAL_RETAIN_MAX, TOPIC_LEN_MAX};
use crate::tls::handshake::HANDSHAKE_BYTES_MAX;
use crate::tls::record::{RECORD_CIPHERTEXT_MAX, RECORD_HEADER_LEN};

/// Send buffer capacity every connection may keep for reuse (two buffers: the one being filled
/// and its spare). A buffer grown past it by a burst is kept while the connection is busy (no
/// allocation per send; measured: dropping it after each send cost the 16-byte SEND path 3%)
/// with its extra capacity counted against `pending_bytes_per_worker_max`, and shrunk at a
/// timer tick: to this size once the connection is idle, to twice its largest send of the
/// tick while busy (see `Conn::shrink_send_buffers`). 16 KiB: a whole batch of small frames.
pub const SEND_BUFFER_RETAIN_BYTES: usize = 16 * 1024;

/// Capacity of the fan-out round buffers a worker holds for sends that still read them, at
/// most (`server/shared_round.rs`): room for dozens of rounds in flight (a 64 KiB receive of
/// 16-byte PUBLISHes writes about 90 KiB of DELIVERs), a small fraction of
/// `pending_bytes_per_worker_max`. Past it a round's runs are copied into the subscribers'
/// send buffers instead.
pub const SHARED_ROUND_HELD_BYTES_MAX: usize = 8 << 20;

/// One connection's own state: the slot (`Conn` and its relay state, at most 1 KiB, checked by
/// a test), its entries in the worker's lists, its slot in the kernel's descriptor table (8 B,
/// reserved at startup) and the allocator's rounding.
pub const CONNECTION_STATE_BYTES: usize = 2048;

/// One row of the client-location table at the longest id (255 bytes), with its map entry.
pub const LOCATION_ROW_BYTES: usize = 255 + 96;

/// One subscription at the longest names: the connection's own key (topic and group, 511
/// bytes, and its set entry) and its place in the topic table's subscriber list (copied on
/// write, so counted twice).
pub const SUBSCRIPTION_BYTES: usize = 2 * TOPIC_LEN_MAX + 1 + 48 + 2 * 16;

/// One topic of the topic table at the longest name, with its entry and map overhead.
pub const TOPIC_BYTES: usize = TOPIC_LEN_MAX + 160;

/// One watch: the connection's copy of the id (255 bytes, with its set entry) and its place in
/// the watched id's list.
pub const WATCH_BYTES: usize = TOPIC_LEN_MAX + 48 + 16;

/// One watched id of the presence table, with its list and map overhead.
pub const WATCHED_ID_BYTES: usize = TOPIC_LEN_MAX + 96;

/// One replicated interest row (topic, group, node) of a peer at the longest names.
pub const INTEREST_ROW_BYTES: usize = 2 * TOPIC_LEN_MAX + 96;

/// Buffers of the zero-copy path one worker keeps for reuse (see `server/large_pool.rs`). A
/// buffer it let go lives on only as long as frames queued elsewhere still refer to it; those
/// count their own length there, not the whole buffer behind them (up to
/// `zero_copy_max_bytes`), which this budget does not cover.
pub const LARGE_BUFFERS_PER_WORKER: usize = 16;

/// Room a data-link frame takes beyond a client frame's payload (ids and topic).
pub const LINK_FRAME_OVERHEAD_MAX: usize = 1024;

/// The cluster control plane per peer: its event lane share, writer queue and replica
/// bookkeeping. An estimate: these queues are bounded by count (lane 65,536 events, writer 4,096
/// messages), not by bytes.
pub const CONTROL_BYTES_PER_PEER: usize = 64 << 20;

/// A TLS connection's own state on its worker, beyond a plaintext one's: the boxed `TlsConn`
/// (the session's two record keys, ring's expanded AEAD keys held inline) and rustls's key
/// schedule behind it (what derives the keys of a KeyUpdate). Measured by
/// `tests/tls_memory.rs` with a counting allocator: 1,232 B inline (`TlsSession`) + 64 B of
/// `TlsConn`'s own + 816 B behind it = 2,112 B; 4 KiB leaves room for the allocator's rounding
/// and rustls versions whose key schedule is larger (the test fails past it).
pub const TLS_CONNECTION_STATE_BYTES: usize = 4096;

/// The record buffers a TLS connection may hold between receives
/// (`TlsReceiver::partial_bytes`): the ciphertext of a record cut by the end of a receive, and
/// the buffer of the last such record finished (kept for the next one, given back at each
/// worker tick), each allocated for one record at most: 5 + 16,640 bytes. True for TLS 1.2 too:
/// its AEAD records are at most 2^14 + 24 bytes of body (the record layer refuses a longer
/// header, which no valid record has, though RFC 5246 allows 2^14 + 2048).
pub const TLS_RECORD_BUFFERS_BYTES: usize = 2 * (RECORD_HEADER_LEN + RECORD_CIPHERTEXT_MAX);

/// One handshake in progress on a handshake thread: what it may buffer from its peer
/// (`HANDSHAKE_BYTES_MAX`, 64 KiB) and rustls's handshake state with our flight to send:
/// measured by `tests/tls_memory.rs` at 11 KiB with a one-certificate chain; 32 KiB leaves
/// room for a chain of several certificates.
pub const TLS_HANDSHAKE_BYTES: usize = HANDSHAKE_BYTES_MAX + (32 << 10);

/// Bounds `fit_to_memory` lowers first: those of the stores that grow with clients.
const SCALED_FIRST: usize = 7;
/// Bounds it lowers only when those are not enough: the queues between workers and nodes.
const SCALED_LAST: usize = 2;

/// A bound `fit_to_memory` may lower: its name, where it is, its floor.
type Bound = (&'static str, fn(&mut Config) -> &mut usize, usize);

/// One store of the budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetLine {
    pub what: &'static str,
    pub bytes: u64,
    /// How `bytes` follows from the settings.
    pub formula: String,
}

/// The worst case the settings allow, store by store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub workers: usize,
    pub lines: Vec<BudgetLine>,
}

impl MemoryBudget {
    pub fn total_bytes(&self) -> u64 {
        self.lines.iter().map(|l| l.bytes).sum()
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "memory budget: {} with {} workers",
            human(self.total_bytes()),
            self.workers
        )?;
        for l in &self.lines {
            writeln!(f, "  {:>10}  {}: {}", human(l.bytes), l.what, l.formula)?;
        }
        Ok(())
    }
}

/// Bytes as the largest binary unit that keeps a whole number part.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A bound `fit_to_memory` lowered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fitted {
    pub setting: &'static str,
    pub from: u64,
    pub to: u64,
}

/// Settings whose worst case does not fit `memory_max_bytes`, even with every bound left at
/// its default lowered to its floor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the settings need up to {} but memory_max_bytes is {}: lower the bounds set in the \
     config (largest first) or raise memory_max_bytes\n{budget}",
    human(budget.total_bytes()),
    human(*memory_max_bytes)
)]
pub struct OverBudget {
    pub budget: MemoryBudget,
    pub memory_max_bytes: u64,
}

fn mul(factors: &[usize]) -> u64 {
    factors
        .iter()
        .fold(1u64, |acc, &f| acc.saturating_mul(f as u64))
}

impl Config {
    /// The worst-case memory of these settings with the workers they start.
    pub fn memory_budget(&self) -> MemoryBudget {
        self.memory_budget_for(self.worker_count())
    }

    /// The worst-case memory of these settings with `workers` workers.
    pub fn memory_budget_for(&self, workers: usize) -> MemoryBudget {
        let w = workers.max(1);
        let c = self.connections_per_worker_max;
        let per_connection = CONNECTION_STATE_BYTES
            + 2 * SEND_BUFFER_RETAIN_BYTES
            + PARTIAL_RETAIN_MAX
            + LOCATION_ROW_BYTES;
        let mut lines = vec![
            BudgetLine {
                what: "receive buffers",
                bytes: mul(&[w, self.recv_buffer_count, self.recv_buffer_bytes]),
                formula: "workers x recv_buffer_count x recv_buffer_bytes".into(),
            },
            BudgetLine {
                what: "connections",
                bytes: mul(&[w, c, per_connection]),
                formula: format!(
                    "workers x connections_per_worker_max x {per_connection} B (state, two \
                     retained send buffers, a retained frame buffer, its location row)"
                ),
            },
            BudgetLine {
                what: "client send queues",
                bytes: mul(&[
                    w,
                    self.pending_bytes_per_worker_max
                        + 6 * self.pending_bytes_max
                        + SHARED_ROUND_HELD_BYTES_MAX,
                ]),
                formula: "workers x (pending_bytes_per_worker_max, which counts queued bytes \
                          and the buffers' capacity beyond the retained 16 KiB, + 6 x \
                          pending_bytes_max: the buffer that grows past it, a connection \
                          holding up to three times pending_bytes_max while its producers \
                          are stalled, + 8 MiB of fan-out round buffers held for sends)"
                    .into(),
            },
            BudgetLine {
                what: "unfinished frames",
                bytes: mul(&[
                    w,
                    self.reassembly_bytes_per_worker_max + self.max_frame_bytes,
                ]),
                formula: "workers x (reassembly_bytes_per_worker_max + max_frame_bytes: the \
                          frame that crosses the bound)"
                    .into(),
            },
            BudgetLine {
                what: "zero-copy frame buffers",
                bytes: mul(&[w, LARGE_BUFFERS_PER_WORKER, self.zero_copy_max_bytes]),
                formula: format!(
                    "workers x {LARGE_BUFFERS_PER_WORKER} x zero_copy_max_bytes (kept for reuse)"
                ),
            },
            BudgetLine {
                what: "handoff between workers",
                bytes: mul(&[w, w - 1, 3, self.handoff_bytes_max]),
                formula: "workers x (workers - 1) x 3 x handoff_bytes_max (bytes held, and \
                          batch buffers up to twice that)"
                    .into(),
            },
            BudgetLine {
                what: "subscriptions",
                bytes: mul(&[self.subscriptions_max, SUBSCRIPTION_BYTES])
                    + mul(&[self.topics_max, TOPIC_BYTES]),
                formula: format!(
                    "subscriptions_max x {SUBSCRIPTION_BYTES} B + topics_max x {TOPIC_BYTES} B"
                ),
            },
            BudgetLine {
                what: "watches",
                bytes: mul(&[self.watches_max, WATCH_BYTES])
                    + mul(&[self.watched_ids_max, WATCHED_ID_BYTES]),
                formula: format!(
                    "watches_max x {WATCH_BYTES} B + watched_ids_max x {WATCHED_ID_BYTES} B"
                ),
            },
        ];
        if self.tls_listen.is_some() || self.nats_tls_listen.is_some() {
            lines.extend(self.tls_lines(w));
        }
        if let Some((count, bytes)) = self.tls_recv_buffers() {
            lines.push(BudgetLine {
                what: "TLS receive buffers",
                bytes: mul(&[w, count, bytes]),
                formula: "workers x tls_recv_buffer_count x tls_recv_buffer_bytes".into(),
            });
        }
        if self.node_id != 0 {
            lines.extend(self.cluster_lines(w));
        }
        MemoryBudget { workers: w, lines }
    }

    /// With a TLS listener: every connection counted as TLS (any may be), and the handshakes
    /// in progress on the handshake threads.
    fn tls_lines(&self, w: usize) -> [BudgetLine; 2] {
        let per_connection = TLS_CONNECTION_STATE_BYTES + TLS_RECORD_BUFFERS_BYTES;
        [
            BudgetLine {
                what: "TLS connections",
                bytes: mul(&[w, self.connections_per_worker_max, per_connection]),
                formula: format!(
                    "workers x connections_per_worker_max x {per_connection} B (session and \
                     keys {TLS_CONNECTION_STATE_BYTES} B; a record cut across receives and the \
                     last one's buffer, {TLS_RECORD_BUFFERS_BYTES} B), each connection counted \
                     as TLS"
                ),
            },
            BudgetLine {
                what: "TLS handshakes",
                bytes: mul(&[
                    self.tls_handshake_threads,
                    self.tls_handshakes_per_thread_max,
                    TLS_HANDSHAKE_BYTES,
                ]),
                formula: format!(
                    "tls_handshake_threads x tls_handshakes_per_thread_max x \
                     {TLS_HANDSHAKE_BYTES} B (what a handshake may buffer from its peer, \
                     {HANDSHAKE_BYTES_MAX} B, and rustls's state)"
                ),
            },
        ]
    }

    fn cluster_lines(&self, w: usize) -> [BudgetLine; 3] {
        let peers = self.cluster_nodes_max - 1;
        let per_link =
            2 * self.link_pending_bytes_max + self.max_frame_bytes + LINK_FRAME_OVERHEAD_MAX;
        let remote_rows = mul(&[w, self.connections_per_worker_max, LOCATION_ROW_BYTES])
            .saturating_add(mul(&[self.subscriptions_max, INTEREST_ROW_BYTES]));
        [
            BudgetLine {
                what: "data links",
                bytes: mul(&[w, peers, per_link]),
                formula: "workers x (cluster_nodes_max - 1) x (2 x link_pending_bytes_max: \
                          the queue or the backlog, + max_frame_bytes: the inbound frame)"
                    .into(),
            },
            BudgetLine {
                what: "replicated rows",
                bytes: remote_rows.saturating_mul(peers as u64),
                formula: format!(
                    "(cluster_nodes_max - 1) x (workers x connections_per_worker_max x \
                     {LOCATION_ROW_BYTES} B + subscriptions_max x {INTEREST_ROW_BYTES} B), \
                     peers having these settings"
                ),
            },
            BudgetLine {
                what: "cluster control plane",
                bytes: mul(&[peers, CONTROL_BYTES_PER_PEER]),
                formula: format!(
                    "(cluster_nodes_max - 1) x {} (an estimate)",
                    human(CONTROL_BYTES_PER_PEER as u64)
                ),
            },
        ]
    }

    /// These settings with the bounds left at their defaults lowered, all by one factor and
    /// none below its floor, until the budget for `workers` fits `memory_max_bytes`; and what
    /// was lowered. Settings given explicitly are never changed: if they alone do not fit,
    /// the answer is [`OverBudget`].
    pub fn fit_to_memory(
        &self,
        workers: usize,
        memory_max_bytes: u64,
    ) -> Result<(Config, Vec<Fitted>), OverBudget> {
        if self.memory_budget_for(workers).total_bytes() <= memory_max_bytes {
            return Ok((self.clone(), Vec::new()));
        }
        // First the stores that grow with clients (connections, queues, tables); the queues
        // between workers and nodes only when that is not enough, since lowering them costs
        // throughput (see `handoff_bytes_max`).
        for stages in [SCALED_FIRST, SCALED_FIRST + SCALED_LAST] {
            let scaled = |s: f64| self.scaled(s, stages);
            let fits =
                |s: f64| scaled(s).0.memory_budget_for(workers).total_bytes() <= memory_max_bytes;
            if !fits(0.0) {
                continue;
            }
            let (mut low, mut high) = (0.0f64, 1.0f64);
            for _ in 0..40 {
                let mid = (low + high) / 2.0;
                if fits(mid) {
                    low = mid;
                } else {
                    high = mid;
                }
            }
            return Ok(scaled(low));
        }
        Err(OverBudget {
            budget: self
                .scaled(0.0, SCALED_FIRST + SCALED_LAST)
                .0
                .memory_budget_for(workers),
            memory_max_bytes,
        })
    }

    /// The first `count` bounds (of those left at their defaults) times `s`, each at least its
    /// floor.
    fn scaled(&self, s: f64, count: usize) -> (Config, Vec<Fitted>) {
        let mut defaults = Config::default();
        let mut out = self.clone();
        let mut fitted = Vec::new();
        let frame = self.max_frame_bytes;
        let fields: [Bound; SCALED_FIRST + SCALED_LAST] = [
            (
                "connections_per_worker_max",
                |c| &mut c.connections_per_worker_max,
                1024,
            ),
            (
                "pending_bytes_per_worker_max",
                |c| &mut c.pending_bytes_per_worker_max,
                self.pending_bytes_max,
            ),
            (
                "reassembly_bytes_per_worker_max",
                |c| &mut c.reassembly_bytes_per_worker_max,
                4 * frame,
            ),
            ("subscriptions_max", |c| &mut c.subscriptions_max, 10_000),
            ("topics_max", |c| &mut c.topics_max, 10_000),
            ("watches_max", |c| &mut c.watches_max, 10_000),
            ("watched_ids_max", |c| &mut c.watched_ids_max, 10_000),
            (
                "handoff_bytes_max",
                |c| &mut c.handoff_bytes_max,
                (4 << 20).max(2 * frame),
            ),
            (
                "link_pending_bytes_max",
                |c| &mut c.link_pending_bytes_max,
                (8 << 20).max(2 * frame + LINK_FRAME_OVERHEAD_MAX),
            ),
        ];
        for (setting, field, floor) in fields.into_iter().take(count) {
            let default = *field(&mut defaults);
            let value = field(&mut out);
            if *value != default || default <= floor {
                continue;
            }
            let to = ((default as f64 * s) as usize).max(floor);
            if to < *value {
                fitted.push(Fitted {
                    setting,
                    from: *value as u64,
                    to: to as u64,
                });
                *value = to;
            }
        }
        (out, fitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_budget_adds_one_line_per_store_and_clusters_add_links_rows_and_control() {
        let standalone = Config::default().memory_budget_for(2);
        assert_eq!(standalone.lines.len(), 8);
        let clustered = Config {
            node_id: 1,
            ..Config::default()
        }
        .memory_budget_for(2);
        assert_eq!(clustered.lines.len(), 11);
        assert!(clustered.total_bytes() > standalone.total_bytes());
        let with_tls = Config {
            tls_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        }
        .memory_budget_for(2);
        assert_eq!(with_tls.lines.len(), 11);
        let text = standalone.to_string();
        assert!(text.contains("client send queues"), "{text}");
    }

    #[test]
    fn each_line_follows_its_settings() {
        let base = Config::default();
        let twice_queues = Config {
            pending_bytes_per_worker_max: 2 * base.pending_bytes_per_worker_max,
            ..base.clone()
        };
        let delta = twice_queues.memory_budget_for(3).total_bytes()
            - base.memory_budget_for(3).total_bytes();
        assert_eq!(delta, 3 * base.pending_bytes_per_worker_max as u64);
        let one_worker = base.memory_budget_for(1);
        let handoff = one_worker
            .lines
            .iter()
            .find(|l| l.what == "handoff between workers")
            .unwrap();
        assert_eq!(handoff.bytes, 0, "one worker hands nothing over");
    }

    #[test]
    fn tls_counts_each_connection_and_each_handshake_in_progress() {
        let cfg = Config {
            tls_listen: Some("127.0.0.1:0".parse().unwrap()),
            connections_per_worker_max: 1000,
            tls_handshake_threads: 2,
            tls_handshakes_per_thread_max: 10,
            ..Config::default()
        };
        let budget = cfg.memory_budget_for(3);
        let line = |what| budget.lines.iter().find(|l| l.what == what).unwrap().bytes;
        // Session and keys, and two buffers of one whole record (5 + 16,640 bytes) each.
        assert_eq!(TLS_RECORD_BUFFERS_BYTES, 33_290);
        let per_connection = (TLS_CONNECTION_STATE_BYTES + TLS_RECORD_BUFFERS_BYTES) as u64;
        assert_eq!(line("TLS connections"), 3 * 1000 * per_connection);
        assert_eq!(line("TLS handshakes"), 2 * 10 * TLS_HANDSHAKE_BYTES as u64);
        let without = Config {
            tls_listen: None,
            ..cfg.clone()
        };
        assert_eq!(line("TLS receive buffers"), 3 * 256 * 64 * 1024);
        assert_eq!(
            budget.total_bytes() - without.memory_budget_for(3).total_bytes(),
            line("TLS connections") + line("TLS handshakes") + line("TLS receive buffers")
        );
        // A NATS TLS listener costs the same; cluster TLS alone only the receive ring.
        let nats = Config {
            nats_tls_listen: cfg.tls_listen.clone(),
            tls_listen: None,
            ..cfg.clone()
        };
        assert_eq!(
            nats.memory_budget_for(3).total_bytes(),
            budget.total_bytes()
        );
        let links = Config {
            cluster_tls_cert_file: Some("node.pem".into()),
            ..without.clone()
        };
        assert_eq!(
            links.memory_budget_for(3).total_bytes() - without.memory_budget_for(3).total_bytes(),
            line("TLS receive buffers")
        );
        assert!(budget
            .to_string()
            .contains("each connection counted as TLS"));
    }

    #[test]
    fn defaults_that_fit_are_left_alone() {
        let cfg = Config::default();
        let budget = cfg.memory_budget_for(2).total_bytes();
        let (fitted, changes) = cfg.fit_to_memory(2, budget).unwrap();
        assert_eq!(fitted, cfg);
        assert!(changes.is_empty());
    }

    #[test]
    fn defaults_are_lowered_to_fit_a_small_host_and_say_so() {
        let cfg = Config::default();
        let max = GIB;
        let (fitted, changes) = cfg.fit_to_memory(2, max).unwrap();
        assert!(fitted.memory_budget_for(2).total_bytes() <= max);
        assert!(fitted.connections_per_worker_max < cfg.connections_per_worker_max);
        assert!(changes
            .iter()
            .any(|f| f.setting == "connections_per_worker_max"));
        // Nearly all of the room is used: the factor is the largest that fits.
        assert!(fitted.memory_budget_for(2).total_bytes() > max / 10 * 9);
        fitted.validate().unwrap();
    }

    #[test]
    fn explicit_settings_are_kept_and_refused_when_they_cannot_fit() {
        let cfg = Config {
            pending_bytes_per_worker_max: 4 << 30,
            ..Config::default()
        };
        let (fitted, _) = cfg.fit_to_memory(2, 32 * GIB).unwrap();
        assert_eq!(fitted.pending_bytes_per_worker_max, 4 << 30);
        let err = cfg.fit_to_memory(2, 8 * GIB).unwrap_err();
        assert!(err.budget.total_bytes() > 8 * GIB);
        let text = err.to_string();
        assert!(text.contains("memory_max_bytes is 8.0 GiB"), "{text}");
        assert!(text.contains("client send queues"), "{text}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * GIB), "3.0 GiB");
    }
}

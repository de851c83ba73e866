//! Relay settings: defaults with their reasons, and the TOML config file.
//!
//! Every field can be set in the TOML file (`ringrelay serve --config FILE`); command-line flags
//! override the file. Units are in the names; sizes (`..._bytes`, `..._bytes_max`) take a
//! number of bytes or a string with a binary unit, like `"64KiB"` or `"8MiB"`.
//!
//! Each secret (`token`, `cluster_secret`, `metrics_token`) may instead name a file that holds
//! it (`token_file`, ...); [`Config::read_secret_files`] reads them (in `crate::secret_files`).

#![forbid(unsafe_code)]

use crate::endpoint::Endpoint;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// All relay settings. `Default` gives the documented defaults.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Client listen address. Default 127.0.0.1:7400: loopback until the operator opens it up.
    /// Port 0 picks a free port (every worker then shares the one the first worker got).
    pub listen: Endpoint,
    /// NATS client listen address (the NATS text protocol, for existing NATS clients; README
    /// "NATS clients"). `None` (the default): off. The same workers serve it, with the same
    /// bounds; `4222` is the port NATS clients try by default.
    pub nats_listen: Option<Endpoint>,
    /// TLS client listen address (the native protocol over TLS 1.3, or 1.2 per
    /// `tls_min_version`; README "TLS"). `None` (the default): off. It runs beside `listen`,
    /// which stays plaintext (point `listen` at loopback to serve remote clients over TLS
    /// only). Needs `tls_cert_file` and `tls_key_file`.
    pub tls_listen: Option<Endpoint>,
    /// NATS TLS listen address (the NATS protocol over TLS 1.3 or per `tls_min_version`, with
    /// the certificate, CA and `tls_client_auth` of `tls_listen`). `None` (the default): off.
    /// NATS clients are greeted as nats-server greets them: INFO in clear with
    /// `tls_required`, then the handshake (see `nats_tls_handshake_first`).
    pub nats_tls_listen: Option<Endpoint>,
    /// The TLS handshake comes first on `nats_tls_listen`, INFO after it over TLS
    /// (nats-server's `handshake_first`; clients set up with `tls_first`). Default false:
    /// every NATS client understands INFO first, and a client that dials TLS first sends a
    /// ClientHello the INFO-first port refuses as `not_tls`.
    pub nats_tls_handshake_first: bool,
    /// The TLS listener's certificate chain (PEM, leaf first).
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; needed when
    /// `tls_client_auth` is `optional` or `required`.
    pub tls_ca_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate: `none` (the default: clients prove
    /// who they are with HELLO's token or credentials), `optional`, or `required` (mutual
    /// TLS: a client without a certificate from `tls_ca_file` never reaches HELLO).
    pub tls_client_auth: crate::tls::ClientAuth,
    /// The oldest TLS version the client and NATS TLS listeners and the metrics endpoint
    /// accept: `"1.3"` (the default) or `"1.2"` (for clients that cannot speak 1.3; TLS 1.3
    /// is still preferred). 1.3 by default because TLS 1.2 has no KeyUpdate: a connection
    /// with an AES-GCM suite closes after 2^24 records its key sealed (rustls's limit), it
    /// costs one more round trip per handshake, and its suite list is longer to get right.
    /// Cluster links are TLS 1.3 whatever this says (both ends are ours).
    pub tls_min_version: crate::tls::TlsVersion,
    /// Threads that run TLS handshakes, off the workers. 1: a handshake costs about a
    /// millisecond of CPU, so one thread completes some thousand a second, and reconnect
    /// storms do not take CPU from the workers' traffic beyond one core.
    pub tls_handshake_threads: usize,
    /// Handshakes one thread runs at once; beyond it the listen backlog waits. 256: a burst
    /// of reconnecting clients is served in turn while silent sockets (each held at most
    /// `handshake_timeout_ms`) cannot take every place.
    pub tls_handshakes_per_thread_max: usize,
    /// Worker threads (one io_uring loop each). 0 means one per CPU the process may run on.
    pub workers: usize,
    /// CPUs to pin workers to, one worker per entry; overrides `workers` when set.
    pub cpus: Option<Vec<usize>>,
    /// Token that HELLO must carry; `None` accepts any token, and an empty one is refused
    /// (it would look set while admitting whoever sends an empty token). Give it here or in
    /// `token_file`, not both. With `credentials_file` too, a client that presents it comes
    /// in unrestricted (an administrator's shortcut).
    pub token: Option<String>,
    /// A file holding `token`: its contents less one trailing newline. Keeps the secret out
    /// of a config file that is shared or checked in, and out of the command line, where every
    /// local user can read it (/proc/PID/cmdline). Read when `serve` starts
    /// ([`Config::read_secret_files`]); `Server::start` refuses a file not read.
    pub token_file: Option<PathBuf>,
    /// A credentials file (TOML): named entries with a hashed secret, the ids each may
    /// register and what each may send, publish, subscribe to and watch (README "Credentials
    /// and permissions"). Read at start; a bad file stops the start.
    pub credentials_file: Option<PathBuf>,
    /// Bound on one frame, header included. 1 MiB: room for bulk payloads while one
    /// connection can never make the relay buffer more than that for an unfinished frame.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub max_frame_bytes: usize,
    /// Outbound bytes a client's queue may hold (README "Flow control"): a quarter of it (at
    /// most `core::flow::STALL_AT_BYTES_MAX`, 2 MiB, or `max_frame_bytes` if larger) stalls the producers that feed it; above it for `slow_consumer_grace_ms` the client is closed
    /// as a slow consumer; a message that would take it past twice it (three times while its
    /// producers are stalled) is dropped and its sender told OVERLOADED. 8 MiB: several hundred
    /// milliseconds of a fast consumer's traffic, so bursts pass, while 10,000 stuck consumers
    /// cannot exhaust memory unnoticed.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub pending_bytes_max: usize,
    /// Longest pause of a producer's reads while a queue it feeds is full (README "Flow
    /// control"): a client's queue at a quarter of `pending_bytes_max` (at most 2 MiB or
    /// `max_frame_bytes`), a data link's at a quarter of `link_pending_bytes_max` (the same
    /// cap), stalls the connections that feed it until it drains below half that or this
    /// passes. A client's queue stalls for at most this much per episode in all. 250 ms: longer than a
    /// consumer's scheduling hiccup or a garbage collector's pause (the consumer catches up
    /// and nobody loses anything), short enough that a consumer that stopped reading costs
    /// the producers of a fan-out one quarter second.
    pub stall_ms_max: u64,
    /// How long a client's queue may stay above `pending_bytes_max` before it is closed as a
    /// slow consumer (checked every tick, so up to 250 ms later); the only way a client is
    /// closed for being behind (messages past twice `pending_bytes_max` are dropped). 2,000 ms:
    /// a consumer that falls behind for a moment after its producers' stall ran out catches up
    /// without losing its connection, and one that stopped reading gives its memory back
    /// within seconds.
    pub slow_consumer_grace_ms: u64,
    /// Interval over which the ERRORs sent to one connection about the same (code, subject)
    /// are coalesced into one that carries their count (PROTOCOL.md section 7.1). 1,000 ms: a
    /// sender flooding an unknown id hears of it at once and then once a second, instead of
    /// once per message.
    pub error_interval_ms: u64,
    /// Bytes queued to all of one worker's clients together. Past it a message is dropped
    /// (counted: `worker_queues_full`) and its sender told OVERLOADED, while each consumer still
    /// meets `pending_bytes_max` on its own. The last eighth is kept for consumers that are not
    /// behind (`core::flow::WorkerRoom`), so consumers that fall behind together lose messages
    /// there, not those that keep up. 512 MiB (64 consumers at their own bound at once),
    /// lowered to fit `memory_max_bytes` (see `Config::memory_budget`): with 65,536 connections
    /// of 8 MiB each a worker could otherwise queue 512 GiB.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub pending_bytes_per_worker_max: usize,
    /// Bytes of unfinished frames all of one worker's clients may hold together. Past it the
    /// connection whose frame would add more is closed (CLOSE LIMIT_EXCEEDED naming it). 256 MiB,
    /// lowered to fit `memory_max_bytes`: 256 clients each halfway through a 1 MiB frame, while
    /// a crowd of slow senders cannot hold a frame each.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub reassembly_bytes_per_worker_max: usize,
    /// The most memory the relay may need: `serve` refuses settings whose worst case
    /// (`Config::memory_budget`, logged at start) is larger, after lowering the bounds left at
    /// their defaults to fit. `None` (the default): half of the host's memory (or of the
    /// cgroup's limit, if lower): the rest is for the kernel's socket buffers, which grow with
    /// the same traffic and are not counted here, the page cache and the host's other processes.
    #[serde(deserialize_with = "crate::byte_size::option_u64_field")]
    pub memory_max_bytes: Option<u64>,
    /// A connection must send a valid HELLO within this time. 5 s: generous for a WAN client,
    /// short enough that idle sockets from scanners do not pile up.
    pub handshake_timeout_ms: u64,
    /// A frame whose first bytes arrived must be complete within this time, or the connection
    /// is closed (FRAME_TIMEOUT): a client trickling a frame byte by byte (slow-loris) cannot
    /// hold a reassembly buffer for ever. 10 s: a whole 1 MiB frame needs only 100 KiB/s.
    pub frame_complete_timeout_ms: u64,
    /// The relay pings a connection that sent nothing for this long. 5 s.
    pub heartbeat_interval_ms: u64,
    /// Missed pings before the connection is closed and its client reported offline. 3, so a
    /// dead client is detected within about (3 + 1) x 5 s = 20 s, while one lost ping or a
    /// short pause never evicts a live client.
    pub heartbeat_misses_max: u32,
    /// Connections per worker; more are refused with reason "connection limit". 65,536.
    pub connections_per_worker_max: usize,
    /// Receive buffers per worker (provided buffer ring entries, a power of two). 256: 16 MiB
    /// per worker with 64 KiB buffers; where the kernel consumes the ring incrementally (Linux
    /// 6.12+) small receives of many connections share a buffer, so a round in which thousands
    /// of connections have data at once still fits. The ring is given only as many free
    /// buffers as the demand needs, 384 KiB at least (`server/uring/recv_fill.rs`), so the
    /// ones in use stay cache-hot.
    pub recv_buffer_count: usize,
    /// Size of each receive buffer. 64 KiB: one receive of a busy connection takes up to
    /// 64 KiB, so one-to-one traffic needs fewer receives, each opening the sender's window
    /// once (measured against 16 KiB buffers: 1 KiB messages -3.6% relay CPU, fan-out -7.0%,
    /// README "Receive buffer size"). On a kernel before 6.12 every receive takes a whole
    /// buffer: a relay there serving thousands of busy connections at once may prefer
    /// 1024 x 16 KiB.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub recv_buffer_bytes: usize,
    /// Receive buffers per worker for TLS connections (a second ring, allocated only when a
    /// TLS listener or cluster TLS is configured). 256: the same 16 MiB per worker as the
    /// plaintext ring.
    pub tls_recv_buffer_count: usize,
    /// Size of each TLS receive buffer. 64 KiB: a whole TLS record is 16,406 bytes, so in a
    /// 16 KiB buffer every full record is cut in two and copied once more to be opened; a
    /// 64 KiB buffer holds three whole and cuts at most one.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub tls_recv_buffer_bytes: usize,
    /// Frames of at least this many bytes (and at most `zero_copy_max_bytes`) are received
    /// into their own buffer and their payload is sent from it with no copy (gathered send).
    /// 64 KiB: measured here, below it the zero-copy path costs more relay CPU per message than
    /// copying (+18% at 32 KiB, +55% at 16 KiB); from 64 KiB to 256 KiB it breaks even or wins
    /// (up to -19%). See README "Zero-copy threshold".
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub zero_copy_threshold_bytes: usize,
    /// Upper end of the zero-copy band. 256 KiB: above about half the per-core L2 cache the
    /// payload is no longer hot when it is sent, and copying into the (hot, reused) send buffer
    /// wins: measured +19% CPU per message at 512 KiB and +33% at 1 MiB on the zero-copy path.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub zero_copy_max_bytes: usize,
    /// Bytes one worker may hold for another (its open batch, its backlog, batches in the
    /// queue and batches the other is reading, until they come back) before further messages
    /// are dropped with an OVERLOADED error to the sender (counted); the pair's batch buffers
    /// are a fixed pool of one per 256 KiB of it. 64 MiB: what the relay could hold before the
    /// queued batches were counted (16 MiB of backlog plus 256 queued batches of 256 KiB), and
    /// measured: an unpinned two-worker fan-out of 1 M messages to 10 subscribers delivers all
    /// 10 M with 64 MiB, and drops about 3% (OVERLOADED) with 16 MiB.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub handoff_bytes_max: usize,
    /// How long a closed connection's socket is kept, from the close: its final CLOSE frame
    /// flushing, then the socket lingering (write side shut, the peer's bytes read and
    /// discarded) until the peer has acknowledged every byte or shut its own side, whichever
    /// comes first (the connection keeps its slot, and counts as open, until then). 1 s: many
    /// round trips on any network, and short enough that a client which neither reads nor
    /// closes holds its slot briefly; past it the socket is closed (reset if the peer's bytes
    /// are unread).
    pub close_linger_ms: u64,
    /// Address of the Prometheus metrics endpoint (`/metrics`, `/healthz`, `/config`,
    /// `/connections`, `/subscriptions`, `/cluster`), served over HTTP by a thread of its own.
    /// `None` (the default): no endpoint. Without `metrics_token`, keep it on loopback or a
    /// management network: anyone who reaches it reads client ids and addresses, and a
    /// non-loopback address is warned about at start.
    pub metrics: Option<Endpoint>,
    /// Bearer token every metrics request but `/healthz` must carry (`Authorization: Bearer
    /// <token>`, else 401); compared in constant time. `None` (the default): no
    /// authentication. The admin endpoints to come (credentials reload) take the same token.
    pub metrics_token: Option<String>,
    /// A file holding `metrics_token`, as `token_file` holds `token`.
    pub metrics_token_file: Option<PathBuf>,
    /// Serve the metrics endpoint over HTTPS (TLS 1.3, or per `tls_min_version`) with `tls_cert_file` and
    /// `tls_key_file`, reloaded with them, so the bearer token and the answers (client ids,
    /// addresses) never cross the network in clear. `false` (the default): plain HTTP, what
    /// a scraper on loopback expects. Needs `metrics`, `tls_cert_file` and `tls_key_file`.
    pub metrics_tls: bool,
    /// Move a client connection to the worker that feeds it (README "Connection steering"):
    /// one that receives at least 8 MiB/s, three quarters of it handed over by one other
    /// worker, moves to that worker, so the flow's two ends share a core. Default true: a
    /// flow split across workers costs 1.6x the relay CPU per message. Only standalone nodes
    /// steer (a client's messages across data links are ordered per link).
    pub steer_connections: bool,
    /// The TCP congestion control of the relay's client and cluster sockets (its listeners,
    /// hence the connections they accept, and the links it dials), like `"cubic"`; `""` (the
    /// default) leaves the host's (`net.ipv4.tcp_congestion_control`), which is its
    /// operator's choice. A name the kernel does not give the relay stops the start. Set at
    /// start only. For a host whose default paces (BBR) without a pacing qdisc: each socket's
    /// pacing timer costs the relay CPU per message (`crate::tcp_congestion`).
    pub tcp_congestion: String,
    /// This node's id in a cluster, 1..=65535. 0 (the default): a standalone relay, no
    /// cluster links. Ids must be unique in a cluster; they also break epoch ties.
    pub node_id: u16,
    /// Address other nodes connect to for cluster links. Required with `node_id`.
    pub cluster_listen: Option<Endpoint>,
    /// The address peers should dial to reach this node (gossiped to every member). Default:
    /// `cluster_listen`. Set it when peers reach this node through NAT or a proxy.
    pub cluster_advertise: Option<String>,
    /// Seed members (HOST:PORT of their `cluster_listen`); knowing one member is enough, the
    /// rest is learnt from it.
    pub peers: Vec<String>,
    /// Shared secret every node of the cluster must hold; links prove it with HMAC-SHA256
    /// challenge-response (it never crosses the wire). Required with `node_id`, here or in
    /// `cluster_secret_file`. It authenticates a link only at its handshake: the frames after
    /// it are neither signed nor encrypted unless `cluster_tls_*` is set (else run links on a
    /// trusted network).
    pub cluster_secret: Option<String>,
    /// A file holding `cluster_secret`, as `token_file` holds `token`.
    pub cluster_secret_file: Option<PathBuf>,
    /// Mutual TLS on every cluster link (README "TLS"): this node's certificate chain
    /// (PEM), presented when it dials and when it accepts. Set with `cluster_tls_key_file`
    /// and `cluster_tls_ca_file`, or none of them (links in clear, authenticated only at
    /// their handshake).
    pub cluster_tls_cert_file: Option<PathBuf>,
    /// The private key of `cluster_tls_cert_file`.
    pub cluster_tls_key_file: Option<PathBuf>,
    /// The cluster's CA: a peer's certificate must chain to it (both directions), and a
    /// dialed peer's must name the host dialed (its advertise address or seed).
    pub cluster_tls_ca_file: Option<PathBuf>,
    /// Interval of control-link heartbeats. 500 ms: six chances to be heard before
    /// `cluster_peer_dead_after_ms`.
    pub cluster_heartbeat_interval_ms: u64,
    /// A peer not heard from (heartbeats or any control message) for this long is declared
    /// dead: its clients are purged everywhere and watchers told they are offline. 3000 ms:
    /// within the 5 s the failure model promises, and longer than a 2 s stall (GC pause,
    /// SIGSTOP, a VM hiccup), which must not evict a live node.
    pub cluster_peer_dead_after_ms: u64,
    /// Interval of digest exchanges that detect and repair divergence of replicated rows.
    /// 2000 ms: divergence (a lost update) is repaired within a few seconds, at the cost of
    /// one hash pass over this node's own rows per interval.
    pub cluster_digest_interval_ms: u64,
    /// A node becomes ready (sends WELCOME, /healthz 200) once every peer it knows has sent
    /// its snapshot, or after this long for seeds that cannot be reached. 3000 ms.
    pub cluster_ready_wait_ms: u64,
    /// Nodes a cluster may have, this one included. A node learns at most this many (at the
    /// bound a new node takes the place of the peer dead the longest; with none dead it is
    /// refused with an error naming the setting), and the memory budget counts data
    /// links, link backlogs and replicated rows for this many. 16: a relay mesh is small (each
    /// node links to every other from every worker); raise it for a larger cluster.
    pub cluster_nodes_max: usize,
    /// Bytes queued on one data link to a peer (or in the backlog of a link being dialled)
    /// before forwarded messages are dropped (counted, sender told OVERLOADED); a quarter of
    /// it (at most 2 MiB, or `max_frame_bytes` if larger) stalls the producers that feed it.
    /// 64 MiB: a link is shared by many clients, so it gets more room than one client's
    /// `pending_bytes_max`, but a stalled peer cannot grow it without bound (and is declared
    /// dead by the control lane within `cluster_peer_dead_after_ms`).
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub link_pending_bytes_max: usize,
    /// Distinct (topic, group) subscriptions one connection may hold. 10,000: a server that
    /// subscribes per room or user it hosts fits, while one connection can neither stall its
    /// worker (every SUBSCRIBE is O(1)) nor hold more than about 10,000 x 0.6 KB = 6 MB of
    /// table memory. Past it: ERROR LIMIT_EXCEEDED, then CLOSE on a second refusal.
    pub subscriptions_per_connection_max: usize,
    /// Distinct client ids one connection may watch. 10,000, for the same reasons.
    pub watches_per_connection_max: usize,
    /// Longest topic accepted in SUBSCRIBE, 1..=255 (the wire's own bound). 255.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub topic_bytes_max: usize,
    /// Longest queue-group name accepted in SUBSCRIBE, 1..=255. 255.
    #[serde(deserialize_with = "crate::byte_size::usize_field")]
    pub group_bytes_max: usize,
    /// Distinct topics with a local subscriber on this node. 1,000,000 (about 0.6 GB at the
    /// longest names): far above any real topic space, low enough that a crowd of clients
    /// subscribing to random names cannot exhaust memory. A pattern takes one place per token
    /// it does not share with another pattern (a node of the subject index costs at most what
    /// a topic does).
    pub topics_max: usize,
    /// Distinct client ids watched on this node. 1,000,000, for the same reasons.
    pub watched_ids_max: usize,
    /// Subscriptions on this node, all connections together. 2,000,000: a per-connection
    /// bound times the connection bound would be billions, so the tables need a bound of
    /// their own; at the longest names a subscription costs about 0.6 KB (the topic table's
    /// entry and the connection's own copy of the key), so this is at most about 1.2 GB, and
    /// as much again on every peer that replicates the interest. Lowered to fit
    /// `memory_max_bytes`. Past it: ERROR LIMIT_EXCEEDED naming it, as for the others.
    pub subscriptions_max: usize,
    /// Watches on this node, all connections together. 1,000,000 (about 0.3 GB), for the same
    /// reasons.
    pub watches_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Endpoint::Addr(SocketAddr::from(([127, 0, 0, 1], 7400))),
            nats_listen: None,
            tls_listen: None,
            nats_tls_listen: None,
            nats_tls_handshake_first: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_client_auth: crate::tls::ClientAuth::None,
            tls_min_version: crate::tls::TlsVersion::Tls13,
            tls_handshake_threads: 1,
            tls_handshakes_per_thread_max: 256,
            workers: 0,
            cpus: None,
            token: None,
            token_file: None,
            credentials_file: None,
            max_frame_bytes: crate::protocol::MAX_FRAME_BYTES_DEFAULT,
            pending_bytes_max: 8 << 20,
            stall_ms_max: 250,
            slow_consumer_grace_ms: 2_000,
            error_interval_ms: 1_000,
            handshake_timeout_ms: 5_000,
            heartbeat_interval_ms: 5_000,
            frame_complete_timeout_ms: 10_000,
            heartbeat_misses_max: 3,
            connections_per_worker_max: 65_536,
            recv_buffer_count: 256,
            recv_buffer_bytes: 64 * 1024,
            tls_recv_buffer_count: 256,
            tls_recv_buffer_bytes: 64 * 1024,
            zero_copy_threshold_bytes: 64 * 1024,
            zero_copy_max_bytes: 256 * 1024,
            handoff_bytes_max: 64 << 20,
            pending_bytes_per_worker_max: 512 << 20,
            reassembly_bytes_per_worker_max: 256 << 20,
            memory_max_bytes: None,
            close_linger_ms: 1_000,
            metrics: None,
            metrics_token: None,
            metrics_token_file: None,
            metrics_tls: false,
            steer_connections: true,
            tcp_congestion: String::new(),
            node_id: 0,
            cluster_listen: None,
            cluster_advertise: None,
            peers: Vec::new(),
            cluster_secret: None,
            cluster_tls_cert_file: None,
            cluster_tls_key_file: None,
            cluster_tls_ca_file: None,
            cluster_secret_file: None,
            cluster_heartbeat_interval_ms: 500,
            cluster_peer_dead_after_ms: 3_000,
            cluster_digest_interval_ms: 2_000,
            cluster_ready_wait_ms: 3_000,
            link_pending_bytes_max: 64 << 20,
            cluster_nodes_max: 16,
            subscriptions_per_connection_max: 10_000,
            watches_per_connection_max: 10_000,
            topic_bytes_max: crate::protocol::TOPIC_LEN_MAX,
            group_bytes_max: crate::protocol::TOPIC_LEN_MAX,
            topics_max: 1_000_000,
            watched_ids_max: 1_000_000,
            subscriptions_max: 2_000_000,
            watches_max: 1_000_000,
        }
    }
}

/// A config that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: {source}", path.display())]
    InFile {
        path: std::path::PathBuf,
        source: Box<ConfigError>,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A value outside the bounds the relay relies on; the text names the setting and them.
    #[error("{0}")]
    Invalid(&'static str),
    /// A TLS file that cannot be used (unreadable, no certificate, a key that does not match).
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsConfigError),
    /// A cluster address that is not HOST:PORT; `why` echoes it.
    #[error("{setting}: {why}")]
    Address { setting: &'static str, why: String },
    /// A secret's file (`token_file`, ...) that cannot be used: unreadable, or empty.
    #[error("{setting} {}: {why}", path.display())]
    SecretFile {
        setting: &'static str,
        path: PathBuf,
        why: String,
    },
}

impl Config {
    /// Reads a TOML file; unknown keys are errors (a typo must not silently use a default).
    pub fn from_toml_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| ConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The cluster addresses given as text, each with its setting's name: they are dialled
    /// (or gossiped to peers that dial them), so each must be HOST:PORT.
    fn dialled_addresses(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let advertise = self
            .cluster_advertise
            .iter()
            .map(|a| ("cluster_advertise", a.as_str()));
        advertise.chain(self.peers.iter().map(|p| ("peers", p.as_str())))
    }

    /// The settings as JSON, with the secrets (`token`, `cluster_secret`, `metrics_token`)
    /// shown only as `"(set)"`: for `serve --check-config` and the metrics endpoint's
    /// `/config`. The `..._file` settings are paths and shown as they are.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        for secret in ["token", "cluster_secret", "metrics_token"] {
            if let Some(v) = value.get_mut(secret).filter(|v| !v.is_null()) {
                *v = serde_json::Value::from("(set)");
            }
        }
        value
    }

    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the bounds that the relay relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &'static str| Err(ConfigError::Invalid(s));
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > (1 << 30) {
            return err("max_frame_bytes must be between 1024 and 1073741824");
        }
        if self.pending_bytes_max < self.max_frame_bytes {
            return err("pending_bytes_max must be at least max_frame_bytes");
        }
        if !self.recv_buffer_count.is_power_of_two()
            || !(16..=32768).contains(&self.recv_buffer_count)
        {
            return err("recv_buffer_count must be a power of two between 16 and 32768");
        }
        if !(4096..=(1 << 20)).contains(&self.recv_buffer_bytes) {
            return err("recv_buffer_bytes must be between 4096 and 1048576");
        }
        if !self.tls_recv_buffer_count.is_power_of_two()
            || !(16..=32768).contains(&self.tls_recv_buffer_count)
        {
            return err("tls_recv_buffer_count must be a power of two between 16 and 32768");
        }
        if !(4096..=(1 << 20)).contains(&self.tls_recv_buffer_bytes) {
            return err("tls_recv_buffer_bytes must be between 4096 and 1048576");
        }
        if self.zero_copy_max_bytes < self.zero_copy_threshold_bytes {
            return err("zero_copy_max_bytes must be at least zero_copy_threshold_bytes");
        }
        self.validate_tcp_congestion()?;
        if self.zero_copy_threshold_bytes < 1024 {
            return err("zero_copy_threshold_bytes must be at least 1024 (smaller frames are cheaper to copy)");
        }
        if self.heartbeat_interval_ms == 0 || self.handshake_timeout_ms == 0 {
            return err("heartbeat_interval_ms and handshake_timeout_ms must be positive");
        }
        if self.heartbeat_interval_ms > 3_600_000 || self.handshake_timeout_ms > 3_600_000 {
            return err(
                "heartbeat_interval_ms and handshake_timeout_ms must be at most 3600000 (1 h)",
            );
        }
        if !(1..=3_600_000).contains(&self.frame_complete_timeout_ms) {
            return err("frame_complete_timeout_ms must be between 1 and 3600000 (1 h)");
        }
        if !(1..=60_000).contains(&self.stall_ms_max) {
            return err("stall_ms_max must be between 1 and 60000 (1 min)");
        }
        if self.slow_consumer_grace_ms > 3_600_000 {
            return err("slow_consumer_grace_ms must be at most 3600000 (1 h)");
        }
        if !(1..=3_600_000).contains(&self.error_interval_ms) {
            return err("error_interval_ms must be between 1 and 3600000 (1 h)");
        }
        if self.heartbeat_misses_max == 0 {
            return err("heartbeat_misses_max must be at least 1");
        }
        if self.connections_per_worker_max == 0 || self.connections_per_worker_max > (1 << 24) {
            return err("connections_per_worker_max must be between 1 and 16777216");
        }
        self.validate_secrets()?;
        self.validate_cluster()?;
        self.validate_tls()?;
        if self.pending_bytes_per_worker_max < self.pending_bytes_max {
            return err("pending_bytes_per_worker_max must be at least pending_bytes_max");
        }
        if self.reassembly_bytes_per_worker_max < self.max_frame_bytes {
            return err("reassembly_bytes_per_worker_max must be at least max_frame_bytes");
        }
        if self.memory_max_bytes.is_some_and(|m| m < 64 << 20) {
            return err("memory_max_bytes must be at least 67108864 (64 MiB)");
        }
        if self.link_pending_bytes_max < self.max_frame_bytes + 1024 {
            return err("link_pending_bytes_max must exceed max_frame_bytes");
        }
        let name_max = crate::protocol::TOPIC_LEN_MAX;
        if !(1..=name_max).contains(&self.topic_bytes_max)
            || !(1..=name_max).contains(&self.group_bytes_max)
        {
            return err("topic_bytes_max and group_bytes_max must be between 1 and 255");
        }
        if self.subscriptions_per_connection_max == 0
            || self.watches_per_connection_max == 0
            || self.topics_max == 0
            || self.watched_ids_max == 0
            || self.subscriptions_max == 0
            || self.watches_max == 0
        {
            return err("subscriptions_per_connection_max, watches_per_connection_max, topics_max, watched_ids_max, subscriptions_max and watches_max must be positive");
        }
        if let Some(cpus) = &self.cpus {
            if cpus.is_empty() {
                return err("cpus must list at least one CPU");
            }
        }
        Ok(())
    }

    /// A name the kernel could take (TCP_CA_NAME_MAX is 16 with the NUL); whether it offers
    /// it is known only when the relay starts (`crate::tcp_congestion`).
    fn validate_tcp_congestion(&self) -> Result<(), ConfigError> {
        let name = &self.tcp_congestion;
        if name.len() > 15 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Invalid(
                "tcp_congestion must be \"\" or an algorithm name of at most 15 printable \
                 ASCII characters, like \"cubic\"",
            ));
        }
        Ok(())
    }

    /// Each secret: not empty, and given as a value or as a file, not both.
    pub(crate) fn validate_secrets(&self) -> Result<(), ConfigError> {
        let err = |s: &'static str| Err(ConfigError::Invalid(s));
        for (value, file, both, empty) in [
            (
                &self.token,
                &self.token_file,
                "token and token_file are both set: give one",
                "token must not be empty (leave it unset to accept any token)",
            ),
            (
                &self.cluster_secret,
                &self.cluster_secret_file,
                "cluster_secret and cluster_secret_file are both set: give one",
                "cluster_secret must not be empty",
            ),
            (
                &self.metrics_token,
                &self.metrics_token_file,
                "metrics_token and metrics_token_file are both set: give one",
                "metrics_token must not be empty (leave it unset for no authentication)",
            ),
        ] {
            if value.is_some() && file.is_some() {
                return err(both);
            }
            if value.as_deref() == Some("") {
                return err(empty);
            }
        }
        Ok(())
    }

    /// The TLS settings: a listener has its certificate and key, client certificates a CA,
    /// the thread bounds are sane.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let err = |s: &'static str| Err(ConfigError::Invalid(s));
        let no_pair = self.tls_cert_file.is_none() || self.tls_key_file.is_none();
        if self.tls_listen.is_some() && no_pair {
            return err("tls_listen needs tls_cert_file and tls_key_file");
        }
        if self.nats_tls_listen.is_some() && no_pair {
            return err("nats_tls_listen needs tls_cert_file and tls_key_file");
        }
        let cluster_files = [
            &self.cluster_tls_cert_file,
            &self.cluster_tls_key_file,
            &self.cluster_tls_ca_file,
        ];
        let set = cluster_files.iter().filter(|f| f.is_some()).count();
        if set != 0 && set != cluster_files.len() {
            return err("cluster TLS needs cluster_tls_cert_file, cluster_tls_key_file and cluster_tls_ca_file together");
        }
        if self.tls_client_auth != crate::tls::ClientAuth::None && self.tls_ca_file.is_none() {
            return err("tls_client_auth asks for client certificates: set tls_ca_file, the CA they must chain to");
        }
        if self.metrics_tls && (self.tls_cert_file.is_none() || self.tls_key_file.is_none()) {
            return err("metrics_tls needs tls_cert_file and tls_key_file (the certificate the metrics endpoint presents)");
        }
        if self.metrics_tls && self.metrics.is_none() {
            return err("metrics_tls needs metrics (the metrics endpoint's address)");
        }
        if !(1..=64).contains(&self.tls_handshake_threads) {
            return err("tls_handshake_threads must be between 1 and 64");
        }
        if !(1..=65_536).contains(&self.tls_handshakes_per_thread_max) {
            return err("tls_handshakes_per_thread_max must be between 1 and 65536");
        }
        Ok(())
    }

    /// The TLS listeners' configuration, read from its files (`None` without `tls_listen`
    /// or `nats_tls_listen`).
    /// Called at start, so a bad file stops the start with the setting and the cause.
    pub fn tls_server_config(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        use crate::tls::config::{server_config_from, Tickets};
        use crate::tls::{ClientCertificates, Identity, TrustAnchors};
        let listening = self.tls_listen.is_some() || self.nats_tls_listen.is_some();
        let (true, Some(cert), Some(key)) = (listening, &self.tls_cert_file, &self.tls_key_file)
        else {
            return Ok(None);
        };
        let identity = Identity::from_files("tls_cert_file", cert, "tls_key_file", key)?;
        let anchors = match &self.tls_ca_file {
            Some(path) => Some(TrustAnchors::from_file("tls_ca_file", path)?),
            None => None,
        };
        let clients = ClientCertificates::from_setting(
            self.tls_client_auth,
            anchors,
            "tls_client_auth",
            "tls_ca_file",
        )?;
        Ok(Some(server_config_from(
            &identity,
            &clients,
            Tickets::Client,
            self.tls_min_version,
        )?))
    }

    /// Whether any connection may speak TLS: a client or NATS TLS listener, or cluster TLS
    /// (then the workers keep a receive ring for TLS connections).
    pub fn tls_anywhere(&self) -> bool {
        self.tls_listen.is_some()
            || self.nats_tls_listen.is_some()
            || self.cluster_tls_cert_file.is_some()
    }

    /// The TLS connections' receive ring, `(count, bytes)`, when any connection may speak TLS.
    pub fn tls_recv_buffers(&self) -> Option<(usize, usize)> {
        self.tls_anywhere()
            .then_some((self.tls_recv_buffer_count, self.tls_recv_buffer_bytes))
    }

    /// Cluster links' mutual TLS, read from its files (`None` without them). Called at
    /// start, so a bad file stops the start with the setting and the cause.
    pub fn cluster_tls(&self) -> Result<Option<crate::tls::config::ClusterTls>, ConfigError> {
        use crate::tls::{Identity, TrustAnchors};
        let (Some(cert), Some(key), Some(ca)) = (
            &self.cluster_tls_cert_file,
            &self.cluster_tls_key_file,
            &self.cluster_tls_ca_file,
        ) else {
            return Ok(None);
        };
        let identity =
            Identity::from_files("cluster_tls_cert_file", cert, "cluster_tls_key_file", key)?;
        let anchors = TrustAnchors::from_file("cluster_tls_ca_file", ca)?;
        Ok(Some(crate::tls::config::ClusterTls::new(
            &identity, anchors,
        )?))
    }

    /// The metrics endpoint's TLS configuration, read from `tls_cert_file` and `tls_key_file`
    /// (`None` without `metrics_tls`). No client certificates are asked for: a scrape proves
    /// itself with `metrics_token`. Called at start and at each reload.
    pub fn metrics_tls_server_config(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        use crate::tls::config::{server_config_from, Tickets};
        use crate::tls::{ClientCertificates, Identity};
        let (true, Some(cert), Some(key)) =
            (self.metrics_tls, &self.tls_cert_file, &self.tls_key_file)
        else {
            return Ok(None);
        };
        let identity = Identity::from_files("tls_cert_file", cert, "tls_key_file", key)?;
        Ok(Some(server_config_from(
            &identity,
            &ClientCertificates::NotAsked,
            Tickets::Client,
            self.tls_min_version,
        )?))
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let err = |s: &'static str| Err(ConfigError::Invalid(s));
        if self.node_id != 0 {
            if self.cluster_listen.is_none() {
                return err("node_id needs cluster_listen (the address for links from peers)");
            }
            if self.cluster_secret.is_none() && self.cluster_secret_file.is_none() {
                return err("node_id needs a non-empty cluster_secret (or cluster_secret_file)");
            }
            let unspecified = (self.cluster_listen.as_ref().and_then(Endpoint::ip))
                .is_some_and(|ip| ip.is_unspecified());
            if unspecified && self.cluster_advertise.is_none() {
                return err("cluster_listen on a wildcard address needs cluster_advertise (the address peers dial)");
            }
            for (setting, text) in self.dialled_addresses() {
                if let Err(why) = text.parse::<Endpoint>() {
                    return Err(ConfigError::Address { setting, why });
                }
            }
        } else if self.cluster_listen.is_some() || !self.peers.is_empty() {
            return err("cluster_listen and peers need node_id (1..65535)");
        }
        if self.cluster_heartbeat_interval_ms == 0
            || self.cluster_peer_dead_after_ms < 2 * self.cluster_heartbeat_interval_ms
        {
            return err("cluster_peer_dead_after_ms must be at least twice a positive cluster_heartbeat_interval_ms");
        }
        if self.cluster_digest_interval_ms == 0 {
            return err("cluster_digest_interval_ms must be positive");
        }
        if !(2..=usize::from(u16::MAX)).contains(&self.cluster_nodes_max) {
            return err("cluster_nodes_max must be between 2 and 65535");
        }
        Ok(())
    }

    /// The number of workers this config starts.
    pub fn worker_count(&self) -> usize {
        match &self.cpus {
            Some(cpus) => cpus.len(),
            None if self.workers > 0 => self.workers,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_refuse_ambiguous_ones() {
        let cfg = Config::from_toml_str(
            "max_frame_bytes = \"2MiB\"\npending_bytes_max = \"64 MiB\"\nmemory_max_bytes = \"8GiB\"\nrecv_buffer_bytes = 16384\n",
        )
        .unwrap();
        assert_eq!(cfg.max_frame_bytes, 2 << 20);
        assert_eq!(cfg.pending_bytes_max, 64 << 20);
        assert_eq!(cfg.memory_max_bytes, Some(8 << 30));
        assert_eq!(cfg.recv_buffer_bytes, 16384);
        let err = Config::from_toml_str("pending_bytes_max = \"64MB\"\n").unwrap_err();
        assert!(err.to_string().contains("KiB"), "{err}");
        assert!(Config::from_toml_str("max_frame_bytes = -5\n").is_err());
    }

    #[test]
    fn redacted_json_shows_every_setting_but_never_a_secret() {
        let cfg = Config {
            token: Some("hunter2".into()),
            cluster_secret: Some("s3cret".into()),
            metrics_token: Some("scrape-me".into()),
            metrics_token_file: None,
            ..Config::default()
        };
        let json = cfg.redacted_json();
        assert_eq!(json["token"], "(set)");
        assert_eq!(json["cluster_secret"], "(set)");
        assert_eq!(json["metrics_token"], "(set)");
        assert!(!json.to_string().contains("scrape-me"));
        let with_file = Config {
            token_file: Some("/etc/ringrelay/token".into()),
            ..Config::default()
        };
        assert_eq!(
            with_file.redacted_json()["token_file"],
            "/etc/ringrelay/token",
            "paths are shown"
        );
        assert_eq!(json["max_frame_bytes"], cfg.max_frame_bytes);
        assert_eq!(json["listen"], "127.0.0.1:7400");
        assert!(!json.to_string().contains("hunter2"));
        assert!(Config::default().redacted_json()["token"].is_null());
    }

    #[test]
    fn defaults_are_valid_and_toml_overrides_them() {
        Config::default().validate().unwrap();
        let cfg = Config::from_toml_str(
            "listen = \"127.0.0.1:9000\"\nworkers = 2\npending_bytes_max = 2097152\n",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.worker_count(), 2);
        assert_eq!(cfg.pending_bytes_max, 2 << 20);
        assert_eq!(
            cfg.heartbeat_interval_ms,
            Config::default().heartbeat_interval_ms
        );
        assert_eq!(cfg.metrics, None);
        let cfg = Config::from_toml_str("metrics = \"127.0.0.1:9400\"\n").unwrap();
        assert_eq!(cfg.metrics, Some("127.0.0.1:9400".parse().unwrap()));
    }

    #[test]
    fn metrics_tls_needs_the_endpoint_and_the_certificate_files() {
        let metrics = "metrics = \"127.0.0.1:9400\"\n";
        let files =
            "tls_cert_file = \"/nonexistent/c.pem\"\ntls_key_file = \"/nonexistent/k.pem\"\n";
        let err = Config::from_toml_str(&format!("{metrics}metrics_tls = true\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("metrics_tls needs tls_cert_file and tls_key_file"),
            "{err}"
        );
        let err = Config::from_toml_str(&format!("{files}metrics_tls = true\n")).unwrap_err();
        assert!(
            err.to_string().contains("metrics_tls needs metrics"),
            "{err}"
        );
        let cfg = Config::from_toml_str(&format!("{metrics}{files}metrics_tls = true\n")).unwrap();
        assert!(cfg.metrics_tls);
        // The files are read at start (and at each reload): one missing names its setting.
        let err = cfg.metrics_tls_server_config().unwrap_err();
        assert!(err.to_string().contains("tls_cert_file"), "{err}");
        assert!(matches!(
            Config::default().metrics_tls_server_config(),
            Ok(None)
        ));
    }

    #[test]
    fn tls_min_version_is_1_3_by_default_and_takes_only_known_versions() {
        use crate::tls::TlsVersion;
        assert_eq!(Config::default().tls_min_version, TlsVersion::Tls13);
        let cfg = Config::from_toml_str("tls_min_version = \"1.3\"\n").unwrap();
        assert_eq!(cfg.tls_min_version, TlsVersion::Tls13);
        let err = Config::from_toml_str("tls_min_version = \"1.1\"\n").unwrap_err();
        assert!(err.to_string().contains("1.1"), "{err}");
        let cfg = Config::from_toml_str("tls_min_version = \"1.2\"\n").unwrap();
        assert_eq!(cfg.tls_min_version, TlsVersion::Tls12);
    }

    #[test]
    fn tcp_congestion_is_the_hosts_by_default_and_takes_a_name_of_at_most_15_bytes() {
        assert_eq!(Config::default().tcp_congestion, "");
        for name in ["cubic", "", "bbr", "fifteen_bytes_x"] {
            let cfg = Config::from_toml_str(&format!("tcp_congestion = \"{name}\"\n")).unwrap();
            assert_eq!(cfg.tcp_congestion, name);
        }
        for name in ["sixteen_bytes_xy", "cu bic", "cubic\\u0000"] {
            let err = Config::from_toml_str(&format!("tcp_congestion = \"{name}\"\n")).unwrap_err();
            assert!(err.to_string().contains("tcp_congestion must be"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_bounds_are_errors() {
        assert!(Config::from_toml_str("listne = \"127.0.0.1:1\"").is_err());
        assert!(Config::from_toml_str("recv_buffer_count = 1000").is_err());
        assert!(Config::from_toml_str("cpus = []").is_err());
        assert!(
            Config::from_toml_str("node_id = 1").is_err(),
            "no cluster_listen"
        );
        assert!(
            Config::from_toml_str("peers = [\"127.0.0.1:1\"]").is_err(),
            "no node_id"
        );
        let cfg = Config::from_toml_str(
            "node_id = 2\ncluster_listen = \"127.0.0.1:7401\"\ncluster_secret = \"s\"\npeers = [\"127.0.0.2:7401\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.peers, vec!["127.0.0.2:7401".to_string()]);
    }
}

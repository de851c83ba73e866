//! The metrics endpoint: Prometheus text format on `/metrics`, readiness on `/healthz`.
//!
//! Off the hot path: a thread of its own answers scrapes, one at a time ([`super::http`]). Workers
//! never see it; they only bump their single-writer counters ([`super::stats`]). A scrape
//! reads every worker's block (relaxed loads) and the table sizes, and `prometheus-client`
//! encodes them through a custom collector, so nothing is copied or locked on the workers'
//! side. Counters are read one by one while the workers run, so two related values of one
//! scrape may be a few events apart.
//!
//! With `metrics_token` set, every path but `/healthz` needs `Authorization: Bearer <token>`
//! ([`super::metrics_auth`]); without one, a listener other hosts can reach is warned about at
//! start.

use super::http::{self, Request, Response};
use super::metrics_auth::{self, BearerToken};
use super::query;
use super::stats::{WorkerStats, BATCH_BUCKETS, KINDS, STALL_ON_LABELS};
use super::{ServeError, Shared};
use crate::spawn::SpawnLogged;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;

/// `type` label values of the per-kind frame counters, in `FrameKind::ALL` order.
pub const KIND_NAMES: [&str; KINDS] = [
    "hello",
    "welcome",
    "send",
    "publish",
    "subscribe",
    "unsubscribe",
    "watch",
    "unwatch",
    "deliver",
    "presence",
    "ping",
    "pong",
    "error",
    "close",
    "ack",
    "receipt",
    "challenge",
    "proof",
];

/// The HTTP server thread; stopped and joined on drop.
pub(crate) struct MetricsServer {
    /// The listening socket (a clone of the thread's): shut down to wake its accept.
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and starts the thread answering `/metrics` and `/healthz`.
    pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<MetricsServer, ServeError> {
        let listen_error = |source| ServeError::MetricsListen { addr, source };
        let listener = TcpListener::bind(addr).map_err(listen_error)?;
        let bound = listener.local_addr().map_err(listen_error)?;
        let thread_listener = listener.try_clone().map_err(listen_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::with_prefix("ringrelay");
        registry.register_collector(Box::new(RelayCollector {
            shared: Arc::clone(&shared),
        }));
        let token = shared.config.metrics_token.as_deref().map(BearerToken::new);
        let authenticated = token.is_some();
        if let Some(warning) = metrics_auth::exposure_warning(bound, authenticated) {
            tracing::warn!("{warning}");
        }
        // Read from its files now, so a bad one stops the start; a reload replaces it.
        let tls_config = shared.config.metrics_tls_server_config()?;
        let tls = tls_config.is_some();
        *write_lock(&shared.metrics_tls_config) = tls_config;
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ringrelay-metrics".into())
            .spawn_logged(move || {
                let in_force = || read_lock(&shared.metrics_tls_config).clone();
                http::serve(
                    &thread_listener,
                    &thread_stop,
                    in_force,
                    |request| match refusal(request, token.as_ref()) {
                        Some(refused) => refused,
                        None if request.path == RELOAD_PATH => {
                            admin_reload(request, &shared, authenticated)
                        }
                        None => route(request, &registry, &shared),
                    },
                )
            })
            .map_err(|source| ServeError::Spawn {
                what: "metrics",
                source,
            })?;
        tracing::info!(
            addr = %bound,
            authenticated,
            tls,
            "metrics endpoint listening"
        );
        Ok(MetricsServer {
            listener,
            stop,
            thread: Some(thread),
            addr: bound,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept the thread is blocked in (it then sees `stop`).
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A lock's value; a poisoned lock still holds a usable configuration (nothing panics while
/// holding it).
pub(crate) fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// See [`read_lock`].
pub(crate) fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The 401 for a request without the right bearer token, when there is a token; `None` lets
/// the request through (no token configured, the open `/healthz`, or the right token).
fn refusal(request: &Request<'_>, token: Option<&BearerToken>) -> Option<Response> {
    let token = token?;
    if request.path == metrics_auth::OPEN_PATH || token.admits(request.authorization) {
        return None;
    }
    Some(Response {
        www_authenticate: Some(metrics_auth::CHALLENGE),
        ..http::plain(
            401,
            "unauthorized: send Authorization: Bearer <metrics_token>\n",
        )
    })
}

/// The admin endpoint that reloads the credentials (as SIGHUP does).
const RELOAD_PATH: &str = "/reload";

/// `POST /reload`. Without a metrics token it answers loopback clients only: a listener bound
/// to a wider address for Prometheus must not let the network reload the relay's credentials.
fn admin_reload(request: &Request<'_>, shared: &Arc<Shared>, authenticated: bool) -> Response {
    if request.method != "POST" {
        return http::plain(405, "method not allowed: POST /reload\n");
    }
    if !authenticated && !request.peer.ip().is_loopback() {
        return http::plain(
            403,
            "forbidden: /reload answers loopback clients only unless metrics_token is set\n",
        );
    }
    let reloader = super::Reloader {
        shared: Arc::clone(shared),
    };
    match reloader.reload() {
        Ok(done) => http::plain(200, &format!("{done}\n")),
        Err(e) => http::plain(
            422,
            &format!("reload refused, the credentials and certificates in force stay: {e}\n"),
        ),
    }
}

fn route(request: &Request<'_>, registry: &Registry, shared: &Shared) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return http::plain(405, "method not allowed\n");
    }
    match request.path {
        "/metrics" => {
            let mut body = String::with_capacity(8192);
            match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
                Ok(()) => Response {
                    status: 200,
                    content_type: prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    body,
                    www_authenticate: None,
                },
                Err(_) => http::plain(500, "encoding failed\n"),
            }
        }
        "/healthz" if is_ready(shared) => http::plain(200, "ready\n"),
        "/healthz" => http::plain(503, "not ready\n"),
        "/connections" => http::json(connections_json(shared, request.query)),
        "/subscriptions" => http::json(subscriptions_json(shared, request.query)),
        "/config" => http::json(config_json(shared)),
        "/cluster" => http::json(cluster_json(shared, query::flag(request.query, "rows"))),
        _ => http::plain(
            404,
            "not found: try /metrics, /healthz, /config, /connections, /subscriptions or \
             /cluster\n",
        ),
    }
}

/// Topics one `/subscriptions` page lists by default, and at most (`limit=`): a page is built
/// in one pass over the topic table and stays small.
const SUBSCRIPTIONS_PAGE_DEFAULT: usize = 100;
const SUBSCRIPTIONS_PAGE_MAX: usize = 1000;

/// `/subscriptions?after=TOPIC&limit=N`: this node's topics in byte order after `after`, each
/// with its plain subscribers and queue groups, and `next_after` for the next page (`null` on
/// the last). Topic names are shown as UTF-8 (invalid bytes replaced).
fn subscriptions_json(shared: &Shared, query: &str) -> String {
    let after = query::value(query, "after").unwrap_or_default();
    let limit = page_limit(query, SUBSCRIPTIONS_PAGE_DEFAULT, SUBSCRIPTIONS_PAGE_MAX);
    let topics = &shared.tables.topics;
    let page = topics.page(&after, limit);
    let next_after = (page.len() == limit)
        .then(|| {
            page.last()
                .map(|t| String::from_utf8_lossy(&t.topic).into_owned())
        })
        .flatten();
    let listed: Vec<serde_json::Value> = page
        .iter()
        .map(|t| {
            let groups: Vec<serde_json::Value> = t
                .groups
                .iter()
                .map(
                    |(g, n)| serde_json::json!({"group": String::from_utf8_lossy(g), "members": n}),
                )
                .collect();
            serde_json::json!({
                "topic": String::from_utf8_lossy(&t.topic),
                "subscribers": t.plain,
                "groups": groups,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "topics_total": topics.len(),
        "subscriptions_total": topics.subscriptions(),
        "topics": listed,
        "next_after": next_after,
    });
    let mut text = doc.to_string();
    text.push('\n');
    text
}

/// `/connections?after=W:S&limit=N`: the node's client connections in (worker, slot) order
/// after the cursor, each with id, peer address, worker, pending bytes, subscription and
/// watch counts and age; `next_after` names the next page (`null` on the last). Workers that
/// did not answer in time are listed in `workers_missing`.
fn connections_json(shared: &Shared, query: &str) -> String {
    use super::listing::{self, ListingRequest};
    let after = query::value(query, "after").and_then(|v| listing::parse_cursor(&v));
    let limit = page_limit(query, listing::PAGE_DEFAULT, listing::PAGE_MAX);
    let mut waiting = Vec::new();
    for (w, slot) in shared.listings.iter().enumerate() {
        let after_slot = match after {
            Some((aw, _)) if (w as u16) < aw => continue,
            Some((aw, s)) if w as u16 == aw => Some(s),
            _ => None,
        };
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        slot.put(ListingRequest {
            after_slot,
            limit,
            reply,
        });
        if let Some(m) = shared.mailboxes.get(w) {
            m.sleeping.store(true, Ordering::SeqCst);
            m.wake();
        }
        waiting.push((w, rx));
    }
    let mut pages = Vec::new();
    let mut missing = Vec::new();
    for (w, rx) in waiting {
        match listing::await_page(&rx) {
            Some(page) => pages.push(page),
            None => missing.push(w),
        }
    }
    let page = listing::merge(pages, limit);
    let next_after = (page.len() == limit)
        .then(|| page.last().map(|c| format!("{}:{}", c.worker, c.slot)))
        .flatten();
    let listed: Vec<serde_json::Value> = page
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": String::from_utf8_lossy(&c.client_id),
                "peer": c.peer.map(|p| p.to_string()),
                "worker": c.worker,
                "slot": c.slot,
                "pending_bytes": c.pending_bytes,
                "queued_bytes": c.queued_bytes,
                "subscriptions": c.subscriptions,
                "watches": c.watches,
                "age_ms": c.age_ms,
            })
        })
        .collect();
    let open: u64 = shared
        .stats
        .iter()
        .map(|b| b.connections_open.load(Ordering::Relaxed))
        .sum();
    let doc = serde_json::json!({
        "connections_total": open,
        "connections": listed,
        "next_after": next_after,
        "workers_missing": missing,
    });
    let mut text = doc.to_string();
    text.push('\n');
    text
}

/// The page size a listing's query asks for (`limit=`), `default` when absent or unreadable,
/// kept within 1..=`max`.
fn page_limit(query: &str, default: usize, max: usize) -> usize {
    query::value(query, "limit")
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

/// The settings the relay runs with (after fitting memory and the open-files limit), secrets
/// redacted.
fn config_json(shared: &Shared) -> String {
    let mut effective = shared.config.clone();
    effective.connections_per_worker_max = shared.connections_per_worker;
    let mut body = effective.redacted_json().to_string();
    body.push('\n');
    body
}

/// `cluster_peers{state=...}`: how many peers are up, connecting or dead.
fn labelled_gauge_states(
    e: &mut DescriptorEncoder,
    peers: &[crate::cluster::MemberStatus],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(
        "cluster_peers",
        "Cluster peers known to this node, by state.",
        None,
        MetricType::Gauge,
    )?;
    for state in ["up", "connecting", "dead"] {
        let n = peers.iter().filter(|p| p.state == state).count() as i64;
        m.encode_family(&[("state", state)])?.encode_gauge(&n)?;
    }
    Ok(())
}

/// `/cluster`: this node, its peers and (with `?rows=1` or `?rows=true`) every row of the location table,
/// sorted by id so two nodes' answers can be compared directly.
fn cluster_json(shared: &Shared, with_rows: bool) -> String {
    let members: Vec<serde_json::Value> = shared
        .cluster_status
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|m| serde_json::json!({"node_id": m.node_id, "addr": m.addr, "state": m.state}))
        .collect();
    let mut doc = serde_json::json!({
        "node_id": shared.node_id,
        "ready": is_ready(shared),
        "members": members,
        "row_count": shared.tables.locations.len(),
    });
    if with_rows {
        let mut rows = shared.tables.locations.all_rows();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        doc["rows"] = rows
            .into_iter()
            .map(|(id, r)| {
                serde_json::json!({
                    "id": String::from_utf8_lossy(&id),
                    "node": r.location.node,
                    "epoch": r.epoch,
                })
            })
            .collect();
    }
    let mut text = doc.to_string();
    text.push('\n');
    text
}

/// Whether the node accepts clients: every worker started and shutdown has not begun.
pub(crate) fn is_ready(shared: &Shared) -> bool {
    shared.accepting.load(Ordering::Acquire)
        && !shared.shutdown.load(Ordering::Acquire)
        && shared.lane.is_ready()
}

/// Reads the workers' counters and the table sizes at scrape time.
struct RelayCollector {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RelayCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCollector").finish_non_exhaustive()
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl RelayCollector {
    fn blocks(&self) -> impl Iterator<Item = &WorkerStats> {
        self.shared.stats.iter().map(|b| &**b)
    }

    /// Sum of one counter over every worker.
    fn sum(&self, field: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.blocks()
            .map(|b| load(field(b)))
            .fold(0u64, u64::wrapping_add)
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// A counter family with one label; `values` gives (label value, count).
fn labelled_counter<'v>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'v str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for RelayCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let open = self.sum(|b| &b.connections_open) as i64;
        gauge(
            &mut e,
            "connections_open",
            "Client connections open now (cluster data links are cluster_links_open).",
            open,
        )?;
        let links = self.sum(|b| &b.links_open) as i64;
        gauge(
            &mut e,
            "cluster_links_open",
            "Cluster data links open now, to and from other nodes (one per worker and peer \
             each way).",
            links,
        )?;
        let accepted = self.sum(|b| &b.connections_accepted);
        counter(
            &mut e,
            "connections_accepted",
            "Client connections accepted.",
            accepted,
        )?;
        let frames_in: [u64; KINDS] =
            std::array::from_fn(|k| self.sum(|b| &b.frames_in_by_kind[k]));
        labelled_counter(
            &mut e,
            "frames_in",
            "Frames received from clients, by frame type.",
            "type",
            KIND_NAMES.iter().copied().zip(frames_in),
        )?;
        let frames_out: [u64; KINDS] =
            std::array::from_fn(|k| self.sum(|b| &b.frames_out_by_kind[k]));
        labelled_counter(
            &mut e,
            "frames_out",
            "Frames queued to client connections, by frame type.",
            "type",
            KIND_NAMES.iter().copied().zip(frames_out),
        )?;
        counter(
            &mut e,
            "bytes_in",
            "Bytes received from clients.",
            self.sum(|b| &b.bytes_in),
        )?;
        counter(
            &mut e,
            "bytes_out",
            "Bytes sent to clients.",
            self.sum(|b| &b.bytes_out),
        )?;
        counter(
            &mut e,
            "deliveries",
            "Messages routed to a destination (DELIVER frames queued locally or handed to \
             another worker).",
            self.sum(|b| &b.deliveries),
        )?;
        self.encode_drops_and_links(&mut e)?;
        self.encode_loops_and_tables(&mut e)
    }
}

impl RelayCollector {
    /// Drops by reason, refusals, cluster forwarding and the closes that count as failures.
    fn encode_drops_and_links(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.shared;
        labelled_counter(
            e,
            "drops",
            "Frames dropped, by reason (a coalesced ERROR summary dropped counts as every ERROR \
             it stood for).",
            "reason",
            [
                ("unknown_id", self.sum(|b| &b.unknown_id)),
                ("handoff_overload", self.sum(|b| &b.handoff_drops)),
                ("worker_queues_full", self.sum(|b| &b.worker_pending_drops)),
                ("stale_destination", self.sum(|b| &b.stale_drops)),
                ("slow_consumer", self.sum(|b| &b.slow_consumer_drops)),
                ("forward_no_link", self.sum(|b| &b.forward_drops)),
                (
                    "forward_link_full",
                    self.sum(|b| &b.forward_link_full_drops),
                ),
                ("forwarded_target_gone", self.sum(|b| &b.forwarded_in_stale)),
                (
                    "payload_too_large",
                    self.sum(|b| &b.payload_too_large_drops),
                ),
                (
                    "link_malformed_forward",
                    self.sum(|b| &b.link_bad_frame_drops),
                ),
                ("link_closed_with_queue", self.sum(|b| &b.link_loss_drops)),
                ("ack_for_unknown_id", self.sum(|b| &b.ack_unroutable_drops)),
                (
                    "acked_to_version_1",
                    self.sum(|b| &b.acked_to_version_1_drops),
                ),
            ],
        )?;
        counter(
            e,
            "limit_refusals",
            "SUBSCRIBE and WATCH requests refused at a configured limit (ERROR or CLOSE \
             LIMIT_EXCEEDED), and connections closed at reassembly_bytes_per_worker_max.",
            self.sum(|b| &b.limit_refusals),
        )?;
        counter(
            e,
            "no_responders",
            "Requests (a PUBLISH with a reply topic, a NATS request) that reached no subscriber \
             anywhere in the cluster; answered at once with ERROR NO_RESPONDERS, or NATS's 503 \
             status to a client that asked for it.",
            self.sum(|b| &b.no_responders),
        )?;
        counter(
            e,
            "permission_denied",
            "SEND, PUBLISH, SUBSCRIBE and WATCH frames (and their NATS equivalents) refused \
             because the client's credentials entry does not permit them (ERROR \
             PERMISSION_DENIED; the connection stays open).",
            self.sum(|b| &b.permission_denials),
        )?;
        counter(
            e,
            "auth_failures",
            "HELLOs (and NATS CONNECTs) refused for their token, their credentials or an id \
             their credentials entry may not register (CLOSE AUTH_FAILED).",
            self.sum(|b| &b.auth_failures),
        )?;
        self.encode_tls(e)?;
        counter(
            e,
            "forwarded_out",
            "Messages forwarded to another cluster node over a data link.",
            self.sum(|b| &b.forwarded_out),
        )?;
        counter(
            e,
            "forwarded_in",
            "Messages received from other cluster nodes over data links.",
            self.sum(|b| &b.forwarded_in),
        )?;
        let peers = s
            .cluster_status
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        labelled_gauge_states(e, &peers)?;
        self.encode_closes(e)
    }

    /// Closes that count as failures, and flow control.
    fn encode_closes(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counter(
            e,
            "slow_consumer_closes",
            "Connections closed as slow consumers: above pending_bytes_max for longer than \
             slow_consumer_grace_ms, or a relay frame (presence, receipt, pong) would take \
             them past twice pending_bytes_max.",
            self.sum(|b| &b.slow_consumer_closes),
        )?;
        counter(
            e,
            "connection_moves",
            "Client connections moved to the worker that feeds them (steer_connections).",
            self.sum(|b| &b.connection_moves),
        )?;
        counter(
            e,
            "connection_move_aborts",
            "Connection moves abandoned: the workers were not quiet within 20 ms, or the \
             target worker was at its connection limit. The connection stays where it is.",
            self.sum(|b| &b.connection_move_aborts),
        )?;
        counter(
            e,
            "connection_move_returns",
            "Of the aborted moves, those the target worker gave back (at its connection limit, \
             or stopping): the connection went on where it was.",
            self.sum(|b| &b.connection_move_returns),
        )?;
        counter(
            e,
            "connection_move_pause_microseconds",
            "Time every worker spent stopped at the barrier of a connection move (from the \
             move's start to its end), summed over moves, in microseconds.",
            self.sum(|b| &b.connection_move_pause_us),
        )?;
        counter(
            e,
            "close_linger_timeouts",
            "Closed connections whose close_linger_ms ran out before the peer had every byte \
             or closed its side: the socket was closed anyway (reset if the peer's bytes were \
             unread), so the peer may not have seen its final CLOSE.",
            self.sum(|b| &b.close_linger_timeouts),
        )?;
        self.encode_flow(e)?;
        counter(
            e,
            "protocol_error_closes",
            "Connections closed for a protocol error, failed handshake, handshake or frame \
             timeout, or a stream that ended inside a frame.",
            self.sum(|b| &b.protocol_error_closes),
        )?;
        Ok(())
    }

    /// Flow control: producer stalls and their time, ERRORs coalesced and dropped.
    fn encode_flow(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        labelled_counter(
            e,
            "producer_stalls",
            "Times a producer's reads were paused because a queue it feeds was full, by what it \
             waited for: a client's queue, a data link's, the handoff to another worker, the \
             backlog of a data link being dialled.",
            "on",
            STALL_ON_LABELS
                .iter()
                .enumerate()
                .map(|(i, &label)| (label, self.sum(|b| &b.producer_stalls[i]))),
        )?;
        counter(
            e,
            "producer_stall_milliseconds",
            "Time producers spent paused, in milliseconds, summed over the stalls.",
            self.sum(|b| &b.producer_stall_ms),
        )?;
        counter(
            e,
            "producer_stall_timeouts",
            "Stalls that ran to stall_ms_max because the queue did not drain in time.",
            self.sum(|b| &b.producer_stall_timeouts),
        )?;
        counter(
            e,
            "errors_coalesced",
            "ERRORs folded into a later summary ERROR that carries their count (a summary \
             then dropped counts them again in error_drops).",
            self.sum(|b| &b.errors_coalesced),
        )?;
        counter(
            e,
            "error_drops",
            "ERRORs dropped: the connection's error ledger was full, or its queue at \
             pending_bytes_max (a dropped summary counts every ERROR it stood for, which \
             errors_coalesced counted when they were folded into it).",
            self.sum(|b| &b.error_drops),
        )?;
        counter(
            e,
            "drop_reports",
            "Reports queued to senders (ERROR OVERLOADED, or FWD_DROPPED to the sender's \
             node) of their messages dropped at a bound away from their own receive, by the \
             worker or the node that holds the receiver: one per sender and subject per \
             batch.",
            self.sum(|b| &b.drop_reports),
        )?;
        counter(
            e,
            "drops_unreported",
            "Messages dropped away from their sender's receive that no report told it of: \
             the sender left, a batch had more than 16 (sender, subject) pairs with drops, \
             the report found its handoff queue or data link full, or the sender speaks \
             NATS (no such error there).",
            self.sum(|b| &b.drops_unreported),
        )
    }

    /// TLS handshakes completed and failed (by reason).
    fn encode_tls(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tls = &self.shared.tls_stats;
        counter(
            e,
            "tls_handshakes",
            "TLS handshakes completed on the TLS listeners (off the workers).",
            load(&tls.handshakes),
        )?;
        labelled_counter(
            e,
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason (no_client_cert, unknown_ca, expired, \
             not_tls, timeout, ...); each is logged at debug with the peer.",
            "reason",
            super::tls_pool::FAILURE_LABELS
                .iter()
                .copied()
                .zip(tls.failures.iter().map(load)),
        )?;
        counter(
            e,
            "tls_handover_drops",
            "Connections whose TLS handshake completed but that no worker could take (its \
             command queue full); closed.",
            load(&tls.handover_drops),
        )
    }

    /// Per-worker loop statistics and the sizes of the shared tables.
    fn encode_loops_and_tables(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.shared;
        let workers: Vec<String> = (0..s.stats.len()).map(|w| w.to_string()).collect();
        let per_worker =
            |e: &mut DescriptorEncoder, name, help, field: fn(&WorkerStats) -> &AtomicU64| {
                let counts = self.blocks().map(|b| load(field(b)));
                labelled_counter(
                    e,
                    name,
                    help,
                    "worker",
                    workers.iter().map(String::as_str).zip(counts),
                )
            };
        per_worker(
            e,
            "loop_iterations",
            "io_uring loop iterations, by worker.",
            |b| &b.loop_iterations,
        )?;
        per_worker(
            e,
            "recv_ring_empty",
            "Receives that found the receive buffer ring empty, by worker: each waits for the \
             next loop iteration with its data in the socket. The ring holds few free buffers \
             so a busy connection's intake per iteration stays small and cache-hot; many at \
             once mean many connections had data in one iteration, and the ring grows.",
            |b| &b.recv_ring_empty,
        )?;
        let mut m = e.encode_descriptor(
            "loop_completions",
            "Completions reaped per loop iteration (batch size), by worker.",
            None,
            MetricType::Histogram,
        )?;
        for (worker, block) in workers.iter().zip(self.blocks()) {
            let buckets: [(f64, u64); BATCH_BUCKETS] = std::array::from_fn(|i| {
                let upper = if i == BATCH_BUCKETS - 1 {
                    f64::INFINITY
                } else {
                    ((1u64 << i) - 1) as f64
                };
                (upper, load(&block.batch_buckets[i]))
            });
            // Count from the buckets, so the histogram is consistent within one scrape.
            let count = buckets.iter().map(|b| b.1).sum();
            let sum = load(&block.completions) as f64;
            let labels = [("worker", worker.as_str())];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        gauge(
            e,
            "registered_clients",
            "Client ids in the location table of this node.",
            s.tables.locations.len() as i64,
        )?;
        gauge(
            e,
            "topics",
            "Topics with at least one subscriber.",
            s.tables.topics.len() as i64,
        )?;
        gauge(
            e,
            "workers",
            "Worker threads (io_uring loops).",
            s.stats.len() as i64,
        )?;
        gauge(
            e,
            "ready",
            "1 while the node accepts clients (as /healthz), else 0.",
            is_ready(s) as i64,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::server::Server;
    use crate::tls::config::client_config;
    use crate::tls::test_pki::Pki;
    use crate::tls::{Origin, TlsStream, TrustAnchors};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::time::Duration;

    /// `GET path` over HTTPS, trusting `ca_pem`: the answer, or why the handshake failed.
    fn get_https(addr: SocketAddr, ca_pem: &str, path: &str) -> std::io::Result<String> {
        let anchors = TrustAnchors::from_pem(Origin::memory("ca"), ca_pem.as_bytes()).unwrap();
        let client = client_config(&anchors, None).unwrap();
        let sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = TlsStream::connect(sock, Arc::clone(&client), name)?;
        write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        tls.flush()?;
        let mut out = String::new();
        tls.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn metrics_tls_serves_the_node_certificate_and_a_reload_replaces_it() {
        let (pki, renewed) = (Pki::new(), Pki::new());
        let dir = pki.write_to_temp_dir("metrics-tls");
        let server = Server::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            metrics_tls: true,
            tls_cert_file: Some(dir.join("server.pem")),
            tls_key_file: Some(dir.join("server.key")),
            ..Config::default()
        })
        .expect("relay starts");
        let addr = server.metrics_addr().expect("metrics enabled");
        let out = get_https(addr, &pki.ca_pem, "/healthz").unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert!(out.ends_with("\r\n\r\nready\n"), "{out}");
        let out = get_https(addr, &pki.ca_pem, "/metrics").unwrap();
        assert!(out.contains("ringrelay_"), "{out}");
        // New files, then a reload: the next connection gets the new certificate.
        std::fs::write(dir.join("server.pem"), &renewed.server.cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &renewed.server.key_pem).unwrap();
        let reloaded = server.reloader().reload().expect("the new files load");
        assert!(reloaded.tls, "{reloaded}");
        let out = get_https(addr, &renewed.ca_pem, "/healthz").unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert!(get_https(addr, &pki.ca_pem, "/healthz").is_err());
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    }
}

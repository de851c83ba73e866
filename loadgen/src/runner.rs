//! Runs one plan against one target: connect and subscribe, start receivers, probe, then the
//! measured phase (senders + a monitor that stops on completion, loss or the time cap), and
//! sample the server's CPU around it. A target may be two nodes of a cluster: receivers then
//! connect to one node and senders to the other, and the CPU of both is sampled.

use super::cpu::process_cpu_s;
use super::latency::{new_histogram, percentiles_us};
use super::probe::{probe, settle, ProbeJob, ProbeResult};
use super::progress::Progress;
use super::receiver::{receive, Clock, RecvOutcome, RecvShared};
use super::scenario::Plan;
use super::sender::{send_batches, send_open_loop, SendJob, SendShared};
use super::wire::{Conn, Wire};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

/// Time allowed for connecting, subscribing and probing.
const SETUP_TIME_MAX: Duration = Duration::from_secs(30);
/// After the senders finish, a run with no new delivery for this long counts the rest as lost.
const QUIET_TIME_MAX: Duration = Duration::from_secs(2);
/// After the senders stop (done or time cap), deliveries in flight may take this long to land;
/// they count, since the duration runs from the first send to the last receive.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Extra time an open-loop sender may take past its schedule before it is cut off.
const OPEN_LOOP_SLACK: Duration = Duration::from_secs(1);
/// Monitor poll interval.
const MONITOR_INTERVAL: Duration = Duration::from_millis(5);

/// What one target's run measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub sent: u64,
    pub received: u64,
    /// First send to last receive (the monitor's elapsed time if nothing arrived).
    pub duration_s: f64,
    pub latency_us: Option<[f64; 3]>,
    /// CPU time of the server (of all nodes, when every node's is known).
    pub server_cpu_s: Option<f64>,
    /// Per node, when the target has more than one (senders' node first).
    pub server_cpu_by_node_s: Vec<Option<f64>>,
    /// Error replies the server sent to any benchmark connection in the measured phase.
    pub errors: u64,
    /// Error replies seen before the measured phase (while probing).
    pub errors_before_measure: u64,
    pub last_error: Option<String>,
    pub notes: Vec<String>,
}

fn guarded<T>(stop: &AtomicBool, r: Result<T, String>) -> Result<T, String> {
    if r.is_err() {
        stop.store(true, Ordering::Release);
    }
    r
}

fn join<T>(h: ScopedJoinHandle<'_, Result<T, String>>) -> Result<T, String> {
    h.join()
        .map_err(|_| "a benchmark thread panicked".to_string())?
}

/// Live state shared by all threads of one run.
struct Shared {
    clock: Clock,
    stop: AtomicBool,
    hard_deadline: Instant,
    receivers: Vec<RecvShared>,
    sender_conns: Vec<RecvShared>,
    senders: Vec<SendShared>,
    senders_done: AtomicUsize,
}

/// Where one run's connections go: senders to `send`, receivers to `recv` (the same server
/// for single-node scenarios), and the server processes whose CPU is sampled.
pub struct Target<'a, W: Wire> {
    pub send: &'a W,
    pub recv: &'a W,
    /// One entry per server process (None: not a local process).
    pub server_pids: Vec<Option<u32>>,
}

pub fn run_target<W: Wire>(target: &Target<'_, W>, plan: &Plan) -> Result<Measured, String> {
    let (send_wire, recv_wire) = (target.send, target.recv);
    let setup_deadline = Instant::now() + SETUP_TIME_MAX;
    let mut recv_conns = Vec::with_capacity(plan.receivers.len());
    for spec in &plan.receivers {
        let mut conn = recv_wire.connect(&spec.client_id, setup_deadline)?;
        recv_wire.subscribe(&mut conn, &spec.sub, setup_deadline)?;
        recv_conns.push(conn);
    }
    let send_conns: Vec<Conn> = plan
        .senders
        .iter()
        .map(|s| send_wire.connect(&s.client_id, setup_deadline))
        .collect::<Result<_, _>>()?;
    let writers: Vec<_> = send_conns
        .iter()
        .map(|c| std::sync::Arc::clone(&c.writer))
        .collect();
    let shared = Shared {
        clock: Clock {
            base: Instant::now(),
        },
        stop: AtomicBool::new(false),
        hard_deadline: Instant::now() + SETUP_TIME_MAX + plan.duration + DRAIN_GRACE,
        receivers: plan
            .receivers
            .iter()
            .map(|_| RecvShared::default())
            .collect(),
        sender_conns: plan.senders.iter().map(|_| RecvShared::default()).collect(),
        senders: plan.senders.iter().map(|_| SendShared::default()).collect(),
        senders_done: AtomicUsize::new(0),
    };
    let sh = &shared;
    let record_latency = plan.open_loop.is_some();
    std::thread::scope(|s| {
        let recv_handles: Vec<_> = recv_conns
            .into_iter()
            .zip(&sh.receivers)
            .map(|(c, rs)| spawn_recv(s, recv_wire, sh, c, rs, record_latency))
            .collect();
        let drain_handles: Vec<_> = send_conns
            .into_iter()
            .zip(&sh.sender_conns)
            .map(|(c, rs)| spawn_recv(s, send_wire, sh, c, rs, false))
            .collect();
        let measured = guarded(
            &sh.stop,
            measure(s, send_wire, plan, sh, &writers, &target.server_pids),
        );
        sh.stop.store(true, Ordering::Release);
        let mut m = measured?;
        let mut hist = new_histogram()?;
        for h in recv_handles {
            let out = join(h)?;
            m.received += out.received;
            if let Some(lat) = &out.latency_ns {
                hist.add(lat)
                    .map_err(|e| format!("merge latency histograms: {e}"))?;
            }
            add_errors(&mut m, &out);
        }
        for h in drain_handles {
            add_errors(&mut m, &join(h)?);
        }
        m.errors = m.errors.saturating_sub(m.errors_before_measure);
        if record_latency {
            m.latency_us = percentiles_us(&hist);
        }
        Ok(m)
    })
}

fn spawn_recv<'scope, 'env, W: Wire>(
    s: &'scope Scope<'scope, 'env>,
    wire: &W,
    sh: &'env Shared,
    conn: Conn,
    rs: &'env RecvShared,
    record_latency: bool,
) -> ScopedJoinHandle<'scope, Result<RecvOutcome, String>> {
    let scanner = wire.scanner(conn.max_frame_bytes);
    s.spawn(move || {
        let r = receive(
            conn,
            scanner,
            rs,
            sh.clock,
            &sh.stop,
            sh.hard_deadline,
            record_latency,
        );
        guarded(&sh.stop, r)
    })
}

fn add_errors(m: &mut Measured, out: &RecvOutcome) {
    m.errors += out.errors;
    if out.last_error.is_some() {
        m.last_error.clone_from(&out.last_error);
    }
}

/// Probe, send, monitor. Returns with `sent`, `duration_s`, CPU and notes filled in.
fn measure<'scope, 'env, W: Wire>(
    s: &'scope Scope<'scope, 'env>,
    wire: &'env W,
    plan: &'env Plan,
    sh: &'env Shared,
    writers: &'env [std::sync::Arc<std::sync::Mutex<super::transport::WriteHalf>>],
    server_pids: &[Option<u32>],
) -> Result<Measured, String> {
    let mut m = Measured::default();
    for (i, spec) in plan.senders.iter().enumerate() {
        let job = ProbeJob {
            wire,
            writer: &writers[i],
            dest: &spec.dest,
            size_bytes: plan.size_bytes,
            receivers: spec
                .probe_receivers
                .iter()
                .map(|&r| &sh.receivers[r])
                .collect(),
            sender_errors: &sh.sender_conns[i],
        };
        if let ProbeResult::SomeReady { ready, of } = probe(&job, plan.probe_any_ok)? {
            m.notes.push(format!(
                "only {ready} of {of} queue members saw a probe before measuring"
            ));
        }
    }
    // Errors during probing (e.g. "unknown id" before a registration settled) are not the
    // measured phase's; they are subtracted from the final count, once the PINGs of `settle`
    // show that every reply to a probe has arrived.
    let sync: Vec<_> = writers
        .iter()
        .map(|w| &**w)
        .zip(sh.sender_conns.iter())
        .collect();
    m.notes.extend(settle(wire, &sync, &sh.receivers)?);
    let errors_before: u64 = sh
        .receivers
        .iter()
        .chain(&sh.sender_conns)
        .map(|r| r.errors.load(Ordering::Acquire))
        .sum();
    m.errors_before_measure = errors_before;
    let cpu_sample = || -> Vec<Option<f64>> {
        server_pids
            .iter()
            .map(|pid| pid.and_then(|p| process_cpu_s(p).ok()))
            .collect()
    };
    let cpu_before = cpu_sample();
    let measure_start = Instant::now();
    // Open-loop senders finish on their schedule (which spans the duration); the deadline only
    // bounds one that fell behind, so it gets a little slack.
    let send_deadline = match plan.open_loop {
        Some(_) => measure_start + plan.duration + OPEN_LOOP_SLACK,
        None => measure_start + plan.duration,
    };
    let mut handles = Vec::with_capacity(plan.senders.len());
    for (i, spec) in plan.senders.iter().enumerate() {
        handles.push(s.spawn(move || {
            let job = SendJob {
                wire,
                writer: &writers[i],
                dest: &spec.dest,
                size_bytes: plan.size_bytes,
                count: spec.count,
                shared: &sh.senders[i],
                clock: sh.clock,
                stop: &sh.stop,
                deadline: send_deadline,
            };
            let r = match plan.open_loop {
                Some(ol) => send_open_loop(&job, ol.rate_msgs_per_s),
                None => send_batches(&job),
            };
            sh.senders_done.fetch_add(1, Ordering::AcqRel);
            guarded(&sh.stop, r)
        }));
    }
    let monitor_deadline = send_deadline + DRAIN_GRACE;
    monitor(
        &format!("{} {}", wire.name(), plan.scenario.name()),
        plan,
        sh,
        monitor_deadline,
    );
    let cpu_after = cpu_sample();
    let by_node: Vec<Option<f64>> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| b.zip(*a).map(|(b, a)| (a - b).max(0.0)))
        .collect();
    m.server_cpu_s = if by_node.is_empty() {
        None
    } else {
        by_node.iter().copied().sum()
    };
    if by_node.len() > 1 {
        m.server_cpu_by_node_s = by_node;
    }
    sh.stop.store(true, Ordering::Release);
    for h in handles {
        m.sent += join(h)?;
    }
    let first_send_ns = sh
        .senders
        .iter()
        .map(|x| x.first_send_ns.load(Ordering::Acquire))
        .min()
        .unwrap_or(0);
    let last_recv_ns = sh
        .receivers
        .iter()
        .map(|x| x.last_recv_ns.load(Ordering::Acquire))
        .max()
        .unwrap_or(0);
    m.duration_s = if last_recv_ns > first_send_ns && first_send_ns != u64::MAX {
        (last_recv_ns - first_send_ns) as f64 / 1e9
    } else {
        measure_start.elapsed().as_secs_f64()
    };
    Ok(m)
}

/// Waits until every delivery of what was sent arrived, the run went quiet after the senders
/// finished, a thread failed, or the deadline passed; prints progress meanwhile.
fn monitor(label: &str, plan: &Plan, sh: &Shared, deadline: Instant) {
    let mut progress = Progress::new(label.to_string());
    let (mut last_total, mut last_change) = (0u64, Instant::now());
    while Instant::now() < deadline && !sh.stop.load(Ordering::Acquire) {
        // Read `senders_done` before `sent`: a sender adds to `sent` before it counts itself
        // done, so once all are done the sum read after is final.
        let senders_done = sh.senders_done.load(Ordering::Acquire) == plan.senders.len();
        let sent: u64 = sh
            .senders
            .iter()
            .map(|x| x.sent.load(Ordering::Acquire))
            .sum();
        let total: u64 = sh
            .receivers
            .iter()
            .map(|r| r.received.load(Ordering::Acquire))
            .sum();
        progress.tick(sent, total);
        if total >= plan.deliveries_expected()
            || (senders_done && total >= sent * plan.deliveries_per_msg)
        {
            break;
        }
        if total != last_total {
            (last_total, last_change) = (total, Instant::now());
        }
        if senders_done && last_change.elapsed() >= QUIET_TIME_MAX {
            break;
        }
        std::thread::sleep(MONITOR_INTERVAL);
    }
    progress.finish();
}

//! Load generator (`ringrelay bench`): runs one workload against the relay (a local child
//! process unless `--server` is given) and optionally the same workload against nats-server
//! (`--compare`), then reports throughput, latency and server CPU per target. The cross-node
//! scenarios run against two nodes of one cluster (`--server A --server-b B`, and two
//! nats-servers joined by a route, `--compare nats://A,nats://B`): senders on A, receivers on B.
//!
//! Files, one concern each: `args` (flags), `scenario` (who sends what to whom), `wire` (what a
//! protocol driver provides), `relay_wire` / `nats_wire` (the two drivers), `local_relay` (the
//! child relay), `runner` (connect, probe, measure), `sender` / `receiver` / `probe` (the
//! threads), `latency` (histograms, open-loop schedule), `cpu` (/proc accounting), `progress`
//! and `report` (output).

mod acked;
mod args;
mod cpu;
mod jetstream;
mod latency;
mod local_relay;
mod nats_wire;
mod probe;
mod progress;
mod receiver;
mod relay_wire;
mod report;
mod runner;
mod scenario;
mod sender;
mod transport;
mod wire;

#[cfg(test)]
mod fake_relay;
#[cfg(test)]
mod tls_runs;

pub use args::{parse_cpu_list, BenchArgs, Scenario};

use local_relay::LocalRelay;
use nats_wire::{parse_nats_url, NatsWire};
use relay_wire::RelayWire;
use report::Row;
use runner::{run_target, Measured, Target};
use scenario::Plan;
use std::net::{SocketAddr, ToSocketAddrs};
use transport::LoadTls;
use wire::Wire;

/// Runs the load generator; the error is printed by the binary.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    args.validate()?;
    let tls = match &args.tls_ca_file {
        Some(ca) => Some(LoadTls::from_files(
            ca,
            &args.tls_server_name,
            args.tls_suite,
        )?),
        None => None,
    };
    if args.ack {
        return run_acked(args, tls.as_ref());
    }
    let mut rows = Vec::new();
    // A failed target does not hide the other's result: print what was measured, then fail.
    let mut failure = None;
    if !args.compare_only {
        let measured = if args.scenario.is_cross_node() {
            run_cross_node(args, tls.as_ref())
        } else {
            run_relay(args, tls.as_ref())
        };
        match measured {
            Ok(row) => rows.push(row),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(urls) = args.compare_urls() {
        if let Err(e) = run_compare(args, &urls, tls.as_ref()).map(|row| rows.push(row)) {
            failure = Some(match failure.take() {
                Some(f) => format!("{f}; {e}"),
                None => e,
            })
        }
    }
    if !rows.is_empty() {
        print_report(&rows, args.json)?;
    }
    failure.map_or(Ok(()), Err)
}

/// The cross-node scenarios on ringrelay: senders on --server, receivers on --server-b.
fn run_cross_node(args: &BenchArgs, tls: Option<&LoadTls>) -> Result<Row, String> {
    let token = args.token.clone().unwrap_or_default().into_bytes();
    let wire_at = |flag: &str, server: &Option<String>| -> Result<RelayWire, String> {
        let server = server
            .as_deref()
            .ok_or_else(|| format!("--scenario {} needs {flag}", args.scenario.name()))?;
        Ok(RelayWire {
            addr: resolve(flag, server)?,
            token: token.clone(),
            tls: tls.cloned(),
        })
    };
    let (a, b) = (
        wire_at("--server", &args.server)?,
        wire_at("--server-b", &args.server_b)?,
    );
    if a.addr == b.addr {
        return Err(format!(
            "--server and --server-b both resolve to {}; a cross-node run needs two nodes",
            a.addr
        ));
    }
    let target = Target {
        send: &a,
        recv: &b,
        server_pids: vec![local_pid(a.addr), local_pid(b.addr)],
    };
    run_one(&target, args)
}

/// One relay (--server, or a local one started for the run).
fn run_relay(args: &BenchArgs, tls: Option<&LoadTls>) -> Result<Row, String> {
    // The guard lives until the relay run ends, and kills the child on every path.
    let (addr, local) = relay_at(args)?;
    let pid = local
        .as_ref()
        .map(LocalRelay::pid)
        .or_else(|| local_pid(addr));
    let wire = RelayWire {
        addr,
        token: args.token.clone().unwrap_or_default().into_bytes(),
        tls: tls.cloned(),
    };
    let target = Target {
        send: &wire,
        recv: &wire,
        server_pids: vec![pid],
    };
    let row = run_one(&target, args);
    drop(local);
    row
}

/// The same workload on nats-server (--compare).
fn run_compare(args: &BenchArgs, urls: &[&str], tls: Option<&LoadTls>) -> Result<Row, String> {
    // Validation allows two addresses only for the cross-node scenarios: senders on the
    // first server, receivers on the second.
    let wires: Vec<NatsWire> = urls
        .iter()
        .map(|url| {
            Ok(NatsWire {
                addr: parse_nats_url(url)?,
                token: args.token.clone(),
                tls: tls.cloned(),
            })
        })
        .collect::<Result<_, String>>()?;
    let (send, recv) = match wires.as_slice() {
        [one] => (one, one),
        [a, b] if a.addr == b.addr => {
            return Err(format!(
                "--compare: both servers resolve to {}; a cross-node run needs two",
                a.addr
            ))
        }
        [a, b] => (a, b),
        _ => return Err("--compare takes one or two nats:// addresses".into()),
    };
    let target = Target {
        send,
        recv,
        server_pids: wires.iter().map(|w| local_pid(w.addr)).collect(),
    };
    run_one(&target, args)
}

/// The relay to measure: `--server`, or a local child relay started now (killed when the
/// returned guard drops).
fn relay_at(args: &BenchArgs) -> Result<(SocketAddr, Option<LocalRelay>), String> {
    match &args.server {
        Some(server) => Ok((resolve("--server", server)?, None)),
        None => {
            let relay = LocalRelay::start(
                args.relay_cpus.as_deref(),
                args.relay_workers,
                args.relay_config.as_deref(),
            )?;
            Ok((relay.addr, Some(relay)))
        }
    }
}

fn resolve(flag: &str, server: &str) -> Result<SocketAddr, String> {
    server
        .to_socket_addrs()
        .map_err(|e| format!("{flag} '{server}': {e}"))?
        .next()
        .ok_or_else(|| format!("{flag} '{server}': no address"))
}

/// The PID of the server when it is a local process on a loopback port.
fn local_pid(addr: SocketAddr) -> Option<u32> {
    if addr.ip().is_loopback() {
        cpu::find_listener_pid(addr.port())
    } else {
        None
    }
}

/// The target's address for reports: "A" or, across nodes, "A->B".
fn target_addr<W: Wire>(target: &Target<'_, W>) -> String {
    let (a, b) = (target.send.addr(), target.recv.addr());
    if a == b {
        a.to_string()
    } else {
        format!("{a}->{b}")
    }
}

fn run_one<W: Wire>(target: &Target<'_, W>, args: &BenchArgs) -> Result<Row, String> {
    let wire = target.send;
    let tag = format!("bench-{}-{}", std::process::id(), wire.name());
    let plan = scenario::plan(args, &tag)?;
    let addr = target_addr(target);
    let m = run_target(target, &plan).map_err(|e| format!("{} at {addr}: {e}", wire.name()))?;
    for note in &m.notes {
        eprintln!("{}: note: {note}", wire.name());
    }
    let row = to_row(wire.name(), addr, &plan, &m);
    if m.sent < plan.messages_total() {
        eprintln!(
            "{}: note: the time cap stopped sending after {} of {} messages",
            wire.name(),
            m.sent,
            plan.messages_total()
        );
    }
    if row.received < row.expected {
        eprintln!(
            "{}: warning: {} of {} deliveries of the sent messages arrived ({} error replies{})",
            wire.name(),
            row.received,
            row.expected,
            m.errors,
            m.last_error
                .as_deref()
                .map(|e| format!(", last: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(row)
}

fn to_row(target: &str, addr: String, plan: &Plan, m: &Measured) -> Row {
    let what = (
        plan.scenario.name(),
        plan.size_bytes,
        plan.deliveries_per_msg,
    );
    row(target, addr, what, m)
}

/// The report row of a measurement: `what` is (scenario name, payload size, deliveries per
/// message).
fn row(target: &str, addr: String, what: (&'static str, usize, u64), m: &Measured) -> Row {
    let (scenario, size, deliveries_per_msg) = what;
    let (msgs_per_s, deliveries_per_s) =
        report::rates(m.received, deliveries_per_msg, m.duration_s);
    let [p50_us, p99_us, p999_us] = match m.latency_us {
        Some([a, b, c]) => [Some(a), Some(b), Some(c)],
        None => [None; 3],
    };
    Row {
        target: target.to_string(),
        addr,
        scenario,
        size,
        sent: m.sent,
        received: m.received,
        expected: m.sent * deliveries_per_msg,
        duration_s: m.duration_s,
        msgs_per_s,
        deliveries_per_s,
        p50_us,
        p99_us,
        p999_us,
        server_cpu_s: m.server_cpu_s,
        server_cpu_by_node_s: m.server_cpu_by_node_s.clone(),
        deliveries_per_cpu_s: report::per_cpu_s(m.received, m.server_cpu_s),
        errors: m.errors,
    }
}

fn print_report(rows: &[Row], json: bool) -> Result<(), String> {
    let relay = rows.iter().find(|r| r.target == "ringrelay");
    let nats = rows.iter().find(|r| r.target == "nats");
    let ratio = relay.zip(nats).map(|(r, n)| report::ratio(r, n));
    if json {
        for row in rows {
            println!("{}", report::json_line(row)?);
        }
        if let Some(r) = &ratio {
            println!("{}", report::json_line(r)?);
        }
    } else {
        print!("{}", report::table(rows));
        if let Some(r) = &ratio {
            println!("{}", report::ratio_text(r));
        }
    }
    Ok(())
}

/// `--ack`: acknowledged one-to-one delivery on ringrelay and, with --compare, JetStream.
fn run_acked(args: &BenchArgs, tls: Option<&LoadTls>) -> Result<(), String> {
    let mut rows = Vec::new();
    let mut failure = None;
    let tag = format!("bench-{}", std::process::id());
    let duration = args.duration()?;
    if !args.compare_only {
        let (addr, local) = relay_at(args)?;
        let job = acked::AckedJob {
            addr,
            token: args.token.clone().unwrap_or_default().into_bytes(),
            tls: tls.map(|t| {
                ringrelay::client::ClientTls::from_config(
                    std::sync::Arc::clone(&t.config),
                    Some(t.server_name.clone()),
                )
            }),
            size_bytes: args.size_bytes,
            count: args.count,
            duration,
            server_pid: local
                .as_ref()
                .map(LocalRelay::pid)
                .or_else(|| local_pid(addr)),
            tag: tag.clone(),
        };
        match acked::run_relay(&job) {
            Ok(m) => rows.push(acked_row("ringrelay", addr, args, &m)),
            Err(e) => failure = Some(format!("ringrelay at {addr}: {e}")),
        }
        drop(local);
    }
    if let Some(urls) = args.compare_urls() {
        let addr = parse_nats_url(urls.first().copied().unwrap_or_default())?;
        let job = jetstream::JetStreamJob {
            addr,
            token: args.token.clone(),
            tls: tls.cloned(),
            size_bytes: args.size_bytes,
            count: args.count,
            duration,
            server_pid: local_pid(addr),
            tag,
        };
        match jetstream::run(&job) {
            Ok(m) => rows.push(acked_row("nats", addr, args, &m)),
            Err(e) => {
                let e = format!("nats JetStream at {addr}: {e}");
                failure = Some(failure.map_or(e.clone(), |f| format!("{f}; {e}")));
            }
        }
    }
    if !rows.is_empty() {
        print_report(&rows, args.json)?;
    }
    failure.map_or(Ok(()), Err)
}

fn acked_row(target: &str, addr: SocketAddr, args: &BenchArgs, m: &Measured) -> Row {
    for note in &m.notes {
        eprintln!("{target}: note: {note}");
    }
    row(
        target,
        addr.to_string(),
        ("unicast-acked", args.size_bytes, 1),
        m,
    )
}

//! Load generator (`ringrelay bench`): runs one workload against the relay (a local child
//! process unless `--server` is given) and optionally the same workload against nats-server
//! (`--compare`), then reports throughput, latency and server CPU per target.
//!
//! Files, one concern each: `args` (flags), `scenario` (who sends what to whom), `wire` (what a
//! protocol driver provides), `relay_wire` / `nats_wire` (the two drivers), `local_relay` (the
//! child relay), `runner` (connect, probe, measure), `sender` / `receiver` / `probe` (the
//! threads), `latency` (histograms, open-loop schedule), `cpu` (/proc accounting), `progress`
//! and `report` (output).

mod args;
mod cpu;
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
mod wire;

#[cfg(test)]
mod fake_relay;

pub use args::{parse_cpu_list, BenchArgs, Scenario};

use local_relay::LocalRelay;
use nats_wire::{parse_nats_url, NatsWire};
use relay_wire::RelayWire;
use report::Row;
use runner::{run_target, Measured};
use scenario::Plan;
use std::net::{SocketAddr, ToSocketAddrs};
use wire::Wire;

/// Runs the load generator; the error is printed by the binary.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    args.validate()?;
    let mut rows = Vec::new();
    // A failed target does not hide the other's result: print what was measured, then fail.
    let mut failure = None;
    if !args.compare_only {
        // The guard lives until the relay run ends, and kills the child on every path.
        let (addr, local) = match &args.server {
            Some(server) => (resolve(server)?, None),
            None => {
                let relay = LocalRelay::start(
                    args.relay_cpus.as_deref(),
                    args.relay_workers,
                    args.relay_config.as_deref(),
                )?;
                (relay.addr, Some(relay))
            }
        };
        let pid = local
            .as_ref()
            .map(LocalRelay::pid)
            .or_else(|| local_pid(addr));
        let wire = RelayWire {
            addr,
            token: args.token.clone().unwrap_or_default().into_bytes(),
        };
        match run_one(&wire, args, pid) {
            Ok(row) => rows.push(row),
            Err(e) => failure = Some(e),
        }
        drop(local);
    }
    if let Some(url) = &args.compare {
        let addr = parse_nats_url(url)?;
        let wire = NatsWire {
            addr,
            token: args.token.clone(),
        };
        match run_one(&wire, args, local_pid(addr)) {
            Ok(row) => rows.push(row),
            Err(e) => {
                failure = Some(match failure.take() {
                    Some(f) => format!("{f}; {e}"),
                    None => e,
                })
            }
        }
    }
    if !rows.is_empty() {
        print_report(&rows, args.json)?;
    }
    failure.map_or(Ok(()), Err)
}

fn resolve(server: &str) -> Result<SocketAddr, String> {
    server
        .to_socket_addrs()
        .map_err(|e| format!("--server '{server}': {e}"))?
        .next()
        .ok_or_else(|| format!("--server '{server}': no address"))
}

/// The PID of the server when it is a local process on a loopback port.
fn local_pid(addr: SocketAddr) -> Option<u32> {
    if addr.ip().is_loopback() {
        cpu::find_listener_pid(addr.port())
    } else {
        None
    }
}

fn run_one<W: Wire>(wire: &W, args: &BenchArgs, server_pid: Option<u32>) -> Result<Row, String> {
    let tag = format!("bench-{}-{}", std::process::id(), wire.name());
    let plan = scenario::plan(args, &tag)?;
    let m = run_target(wire, &plan, server_pid)
        .map_err(|e| format!("{} at {}: {e}", wire.name(), wire.addr()))?;
    for note in &m.notes {
        eprintln!("{}: note: {note}", wire.name());
    }
    let row = to_row(wire.name(), wire.addr(), &plan, &m);
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

fn to_row(target: &str, addr: SocketAddr, plan: &Plan, m: &Measured) -> Row {
    let (msgs_per_s, deliveries_per_s) =
        report::rates(m.received, plan.deliveries_per_msg, m.duration_s);
    let [p50_us, p99_us, p999_us] = match m.latency_us {
        Some([a, b, c]) => [Some(a), Some(b), Some(c)],
        None => [None; 3],
    };
    Row {
        target: target.to_string(),
        addr: addr.to_string(),
        scenario: plan.scenario.name(),
        size: plan.size_bytes,
        sent: m.sent,
        received: m.received,
        expected: m.sent * plan.deliveries_per_msg,
        duration_s: m.duration_s,
        msgs_per_s,
        deliveries_per_s,
        p50_us,
        p99_us,
        p999_us,
        server_cpu_s: m.server_cpu_s,
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

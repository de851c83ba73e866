//! Command-line flags of `ringrelay bench` and their validation.

use super::transport::TlsSuite;
use std::time::Duration;

/// Workload shapes the load generator can run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One sender SENDs to one receiver client id.
    Unicast,
    /// N independent sender->receiver pairs, each on its own threads.
    Pairs,
    /// One publisher, K subscribers of one topic: K deliveries per message.
    Fanout,
    /// K subscribers in one queue group: each message reaches exactly one.
    Queue,
    /// Open-loop unicast at a fixed rate; latency measured from the intended send time.
    Latency,
    /// One sender on node A (--server) SENDs to one receiver on node B (--server-b).
    CrossNode,
    /// One publisher on node A (--server), K subscribers of one topic on node B (--server-b).
    CrossNodeFanout,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Unicast => "unicast",
            Scenario::Pairs => "pairs",
            Scenario::Fanout => "fanout",
            Scenario::Queue => "queue",
            Scenario::Latency => "latency",
            Scenario::CrossNode => "cross-node",
            Scenario::CrossNodeFanout => "cross-node-fanout",
        }
    }

    /// True for the scenarios whose senders and receivers are on two different nodes.
    pub fn is_cross_node(self) -> bool {
        matches!(self, Scenario::CrossNode | Scenario::CrossNodeFanout)
    }
}

/// Flags of `ringrelay bench`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  ringrelay bench --scenario unicast --size 16       # against a relay it starts itself
  ringrelay bench --scenario fanout --server 127.0.0.1:7400 --json
  ringrelay bench --scenario unicast --size 16 --compare nats://127.0.0.1:4222
  ringrelay bench --ack --size 16 --compare nats://127.0.0.1:4222   # nats-server -js")]
pub struct BenchArgs {
    /// Relay to measure (HOST:PORT). Without it a relay is started as a child process on loopback.
    /// Cross-node scenarios: node A, where the senders connect.
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// Cross-node scenarios only (and required there): node B of the same cluster (HOST:PORT),
    /// where the receivers connect.
    #[arg(long, value_name = "ADDR")]
    pub server_b: Option<String>,
    /// Workload to run.
    #[arg(long, value_enum, default_value_t = Scenario::Unicast)]
    pub scenario: Scenario,
    /// Payload bytes per message (latency needs at least 9: a mark byte and a u64 timestamp).
    #[arg(long = "size", value_name = "BYTES", default_value_t = 16)]
    pub size_bytes: usize,
    /// Messages to send (an upper bound for latency, which stops after --duration-s).
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    pub count: u64,
    /// Subscribers for fanout and queue.
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub subscribers: usize,
    /// Sender->receiver pairs for the pairs scenario.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub pairs: usize,
    /// Send rate of the latency scenario.
    #[arg(long = "rate", value_name = "MSGS_PER_S", default_value_t = 100_000)]
    pub rate_msgs_per_s: u64,
    /// Wall-time cap of the measured phase (default 30 s; the latency scenario sends for 5 s).
    #[arg(long = "duration-s", value_name = "S")]
    pub duration_s: Option<f64>,
    /// Also run the same workload against nats-server at this address (nats://HOST:PORT).
    /// Cross-node scenarios take two servers joined by a route, `nats://A,nats://B`: senders
    /// on the first, receivers on the second.
    #[arg(long, value_name = "nats://ADDR[,nats://ADDR]")]
    pub compare: Option<String>,
    /// Print one JSON object per target per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// CPUs for the local relay's workers (e.g. "2,3" or "0-3"); passed as `serve --cpus`.
    #[arg(long, value_name = "LIST")]
    pub relay_cpus: Option<String>,
    /// Worker threads of the local relay (ignored with --relay-cpus).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub relay_workers: usize,
    /// TOML config for the local relay (passed as `serve --config FILE`), e.g. to give it the
    /// same per-connection bound as the server it is compared with.
    #[arg(long, value_name = "FILE")]
    pub relay_config: Option<std::path::PathBuf>,
    /// Token sent in HELLO (and as auth_token to NATS).
    #[arg(long)]
    pub token: Option<String>,
    /// Acknowledged delivery (unicast only): ringrelay's end-to-end acknowledged sessions,
    /// and with --compare nats-server's JetStream (a memory stream, PubAcks awaited
    /// asynchronously, a consumer acking each message). Latency columns are the
    /// acknowledgement round trip (send to confirmation).
    #[arg(long)]
    pub ack: bool,
    /// Dial every connection over TLS, trusting the CA certificates in this PEM file: the
    /// relay's `tls_listen` (give it as --server) and, with --compare, a nats-server with a
    /// `tls` block (INFO in plaintext, then the handshake).
    #[arg(long, value_name = "PATH")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The name the servers' certificates must carry (with --tls-ca-file).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub tls_server_name: String,
    /// The TLS 1.3 cipher suite offered first (with --tls-ca-file). The relay (rustls) takes
    /// the client's first choice; nats-server (Go) prefers AES-128-GCM, so the default has
    /// both run the same cipher.
    #[arg(long, value_enum, default_value_t = TlsSuite::Aes128Gcm)]
    pub tls_suite: TlsSuite,
    /// Test aid: skip the ringrelay target and run only the --compare target.
    #[arg(long, hide = true)]
    pub compare_only: bool,
}

/// Default wall-time cap of throughput scenarios.
pub const THROUGHPUT_DURATION_S_DEFAULT: f64 = 30.0;
/// Default send duration of the latency scenario.
pub const LATENCY_DURATION_S_DEFAULT: f64 = 5.0;
/// Bounds that keep thread counts and memory sane.
pub const SUBSCRIBERS_MAX: usize = 1000;
pub const PAIRS_MAX: usize = 256;
/// Size of the u8 mark plus the u64 timestamp at the front of a latency payload.
pub const LATENCY_PAYLOAD_MIN_BYTES: usize = 9;

impl BenchArgs {
    /// The measured phase's wall-time cap (latency: the send duration).
    pub fn duration(&self) -> Result<Duration, String> {
        let default_s = match self.scenario {
            Scenario::Latency => LATENCY_DURATION_S_DEFAULT,
            _ => THROUGHPUT_DURATION_S_DEFAULT,
        };
        let s = self.duration_s.unwrap_or(default_s);
        if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
            return Err(format!("--duration-s must be in (0, 86400], got {s}"));
        }
        Ok(Duration::from_secs_f64(s))
    }

    /// Checks flag combinations before anything connects.
    pub fn validate(&self) -> Result<(), String> {
        self.duration()?;
        if self.count == 0 {
            return Err("--count must be at least 1".into());
        }
        if self.size_bytes == 0 || self.size_bytes > (16 << 20) {
            return Err("--size must be between 1 and 16777216 bytes".into());
        }
        if self.scenario == Scenario::Latency && self.size_bytes < LATENCY_PAYLOAD_MIN_BYTES {
            return Err(format!(
                "--scenario latency needs --size of at least {LATENCY_PAYLOAD_MIN_BYTES} bytes (mark + u64 timestamp)"
            ));
        }
        if !(1..=SUBSCRIBERS_MAX).contains(&self.subscribers) {
            return Err(format!(
                "--subscribers must be between 1 and {SUBSCRIBERS_MAX}"
            ));
        }
        if !(1..=PAIRS_MAX).contains(&self.pairs) {
            return Err(format!("--pairs must be between 1 and {PAIRS_MAX}"));
        }
        if self.rate_msgs_per_s == 0 || self.rate_msgs_per_s > 100_000_000 {
            return Err("--rate must be between 1 and 100000000 msgs/s".into());
        }
        if self.relay_workers == 0 {
            return Err("--relay-workers must be at least 1".into());
        }
        if let Some(list) = &self.relay_cpus {
            parse_cpu_list(list)?;
        }
        if self.ack && self.scenario != Scenario::Unicast {
            return Err(format!(
                "--ack measures one-to-one delivery: use it with --scenario unicast, not {}",
                self.scenario.name()
            ));
        }
        if self.tls_ca_file.is_some() && self.server.is_none() && !self.compare_only {
            return Err(
                "--tls-ca-file needs --server ADDR: the relay's tls_listen (the relay started \
                 without --server listens in plaintext only)"
                    .into(),
            );
        }
        if self.compare_only && self.compare.is_none() {
            return Err("--compare-only needs --compare nats://ADDR".into());
        }
        self.validate_nodes()
    }

    /// Checks the node flags: two relay nodes and two nats servers for the cross-node
    /// scenarios, one of each for the others.
    fn validate_nodes(&self) -> Result<(), String> {
        let name = self.scenario.name();
        let compare = self.compare_urls();
        if let Some(c) = &self.compare {
            if compare.iter().flatten().any(|u| u.is_empty()) {
                return Err(format!("--compare '{c}' has an empty address"));
            }
        }
        if !self.scenario.is_cross_node() {
            if self.server_b.is_some() {
                return Err(format!(
                    "--server-b is only for --scenario cross-node or cross-node-fanout, not {name}"
                ));
            }
            if let Some(urls) = &compare {
                if urls.len() != 1 {
                    return Err(format!(
                        "--compare takes one nats://ADDR for --scenario {name} (two are for the cross-node scenarios)"
                    ));
                }
            }
            return Ok(());
        }
        if !self.compare_only {
            let (Some(a), Some(b)) = (&self.server, &self.server_b) else {
                return Err(format!(
                    "--scenario {name} needs --server A and --server-b B: two relay nodes of one cluster \
                     (senders connect to A, receivers to B)"
                ));
            };
            if a.trim() == b.trim() {
                return Err(format!(
                    "--scenario {name}: --server and --server-b are the same address '{a}'"
                ));
            }
        }
        if let Some(urls) = &compare {
            match urls.as_slice() {
                [a, b] if a == b => {
                    return Err(format!(
                        "--scenario {name}: the two --compare servers are the same '{a}'"
                    ))
                }
                [_, _] => {}
                _ => {
                    return Err(format!(
                        "--scenario {name} needs --compare nats://A,nats://B: two nats-servers joined by a route \
                         (senders on A, receivers on B)"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The --compare addresses, split at commas (empty entries kept, so validation sees them).
    pub fn compare_urls(&self) -> Option<Vec<&str>> {
        self.compare
            .as_deref()
            .map(|c| c.split(',').map(str::trim).collect())
    }
}

/// Parses a CPU list such as "0,2-4,7" into sorted, de-duplicated CPU numbers.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    const CPU_MAX: usize = 4095;
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("cpu list '{list}' has an empty entry"));
        }
        let num = |s: &str| -> Result<usize, String> {
            let n: usize = s
                .trim()
                .parse()
                .map_err(|_| format!("cpu list '{list}': '{s}' is not a CPU number"))?;
            if n > CPU_MAX {
                return Err(format!("cpu list '{list}': CPU {n} is above {CPU_MAX}"));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    return Err(format!("cpu list '{list}': range {lo}-{hi} is reversed"));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_is_for_the_unicast_scenario_only() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().bench.validate();
        assert!(parse(&["bench", "--ack"]).is_ok());
        let err = parse(&["bench", "--ack", "--scenario", "fanout"]).unwrap_err();
        assert!(err.contains("--scenario unicast"), "{err}");
    }

    #[test]
    fn cpu_lists_parse_ranges_and_reject_junk() {
        assert_eq!(parse_cpu_list("3").unwrap(), vec![3]);
        assert_eq!(parse_cpu_list("0,2-4, 7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert_eq!(parse_cpu_list("1,1,0-1").unwrap(), vec![0, 1]);
        for bad in ["", "a", "1,", "3-1", "1-", "99999", "-2"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

//! Scenario plans: which connections exist, what each subscribes to, where each sender sends
//! and how many messages, and how many deliveries the run must see.

use super::args::{BenchArgs, Scenario};
use super::latency::scheduled_total;
use super::wire::{Dest, Sub};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ReceiverSpec {
    pub client_id: String,
    pub sub: Sub,
}

#[derive(Clone, Debug)]
pub struct SenderSpec {
    pub client_id: String,
    pub dest: Dest,
    /// Messages this sender sends in the measured phase.
    pub count: u64,
    /// Receivers (indexes into `Plan::receivers`) that a probe from this sender must reach.
    pub probe_receivers: Vec<usize>,
}

/// Open-loop sending for the latency scenario.
#[derive(Clone, Copy, Debug)]
pub struct OpenLoop {
    pub rate_msgs_per_s: u64,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub size_bytes: usize,
    pub receivers: Vec<ReceiverSpec>,
    pub senders: Vec<SenderSpec>,
    /// Deliveries of one message (fanout: K, else 1).
    pub deliveries_per_msg: u64,
    /// Wall-time cap of the measured phase (latency: the send duration).
    pub duration: Duration,
    pub open_loop: Option<OpenLoop>,
    /// True when a probe reaching any one receiver shows readiness well enough (queue groups
    /// may pick members in a way that never reaches some of them with few probes).
    pub probe_any_ok: bool,
}

impl Plan {
    /// Messages all senders send together.
    pub fn messages_total(&self) -> u64 {
        self.senders.iter().map(|s| s.count).sum()
    }

    /// Deliveries the receivers must see for a loss-free run.
    pub fn deliveries_expected(&self) -> u64 {
        self.messages_total() * self.deliveries_per_msg
    }
}

/// Splits `count` into `parts` shares that differ by at most one.
pub fn split_count(count: u64, parts: usize) -> Vec<u64> {
    let parts_u64 = parts.max(1) as u64;
    (0..parts_u64)
        .map(|i| count / parts_u64 + u64::from(i < count % parts_u64))
        .collect()
}

/// Builds the plan; `tag` makes client ids and topics unique per run and target.
pub fn plan(args: &BenchArgs, tag: &str) -> Result<Plan, String> {
    let duration = args.duration()?;
    let receiver = |i: usize, sub: Sub| ReceiverSpec {
        client_id: format!("{tag}-r{i}"),
        sub,
    };
    let sender = |i: usize, dest: Dest, count: u64, probe_receivers: Vec<usize>| SenderSpec {
        client_id: format!("{tag}-s{i}"),
        dest,
        count,
        probe_receivers,
    };
    let topic = format!("{tag}.topic");
    let k = args.subscribers;
    let mut p = Plan {
        scenario: args.scenario,
        size_bytes: args.size_bytes,
        receivers: Vec::new(),
        senders: Vec::new(),
        deliveries_per_msg: 1,
        duration,
        open_loop: None,
        probe_any_ok: false,
    };
    match args.scenario {
        Scenario::Unicast | Scenario::Latency | Scenario::CrossNode => {
            p.receivers.push(receiver(0, Sub::Direct));
            let mut count = args.count;
            if args.scenario == Scenario::Latency {
                count = scheduled_total(args.rate_msgs_per_s, duration.as_secs_f64(), args.count);
                p.open_loop = Some(OpenLoop {
                    rate_msgs_per_s: args.rate_msgs_per_s,
                });
            }
            p.senders
                .push(sender(0, Dest::Client(format!("{tag}-r0")), count, vec![0]));
        }
        Scenario::Pairs => {
            for (i, count) in split_count(args.count, args.pairs).into_iter().enumerate() {
                p.receivers.push(receiver(i, Sub::Direct));
                p.senders.push(sender(
                    i,
                    Dest::Client(format!("{tag}-r{i}")),
                    count,
                    vec![i],
                ));
            }
        }
        Scenario::Fanout | Scenario::CrossNodeFanout => {
            p.receivers = (0..k)
                .map(|i| receiver(i, Sub::Topic(topic.clone())))
                .collect();
            p.senders.push(sender(
                0,
                Dest::Topic(topic.clone()),
                args.count,
                (0..k).collect(),
            ));
            p.deliveries_per_msg = k as u64;
        }
        Scenario::Queue => {
            let group = format!("{tag}-group");
            p.receivers = (0..k)
                .map(|i| {
                    receiver(
                        i,
                        Sub::Queue {
                            topic: topic.clone(),
                            group: group.clone(),
                        },
                    )
                })
                .collect();
            p.senders.push(sender(
                0,
                Dest::Topic(topic.clone()),
                args.count,
                (0..k).collect(),
            ));
            p.probe_any_ok = true;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// Both relay nodes of a cross-node run.
    const AB: [&str; 4] = ["--server", "127.0.0.1:1", "--server-b", "127.0.0.1:2"];

    fn cat<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(extra);
        let a = Cli::try_parse_from(argv).unwrap().bench;
        a.validate().unwrap();
        a
    }

    #[test]
    fn counts_split_evenly() {
        assert_eq!(split_count(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split_count(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split_count(7, 1), vec![7]);
    }

    #[test]
    fn plans_match_scenarios() {
        let u = plan(&args(&[]), "t").unwrap();
        assert_eq!(
            (u.receivers.len(), u.senders.len(), u.deliveries_expected()),
            (1, 1, 2_000_000)
        );
        assert_eq!(u.duration, Duration::from_secs(30));
        let pairs = plan(
            &args(&["--scenario", "pairs", "--count", "10", "--pairs", "3"]),
            "t",
        )
        .unwrap();
        assert_eq!(
            pairs.senders.iter().map(|s| s.count).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
        assert!(matches!(&pairs.senders[2].dest, Dest::Client(id) if id == "t-r2"));
        let fan = plan(
            &args(&[
                "--scenario",
                "fanout",
                "--count",
                "100",
                "--subscribers",
                "5",
            ]),
            "t",
        )
        .unwrap();
        assert_eq!((fan.receivers.len(), fan.deliveries_expected()), (5, 500));
        let q = plan(
            &args(&[
                "--scenario",
                "queue",
                "--count",
                "100",
                "--subscribers",
                "5",
            ]),
            "t",
        )
        .unwrap();
        assert_eq!(q.deliveries_expected(), 100);
        assert!(q.probe_any_ok);
        let lat = plan(&args(&["--scenario", "latency"]), "t").unwrap();
        assert_eq!(
            (lat.messages_total(), lat.duration),
            (500_000, Duration::from_secs(5))
        );
        assert_eq!(lat.open_loop.unwrap().rate_msgs_per_s, 100_000);
        let cross = plan(
            &args(&cat(&[&["--scenario", "cross-node", "--count", "7"], &AB])),
            "t",
        )
        .unwrap();
        assert_eq!(
            (
                cross.receivers.len(),
                cross.senders.len(),
                cross.deliveries_expected()
            ),
            (1, 1, 7)
        );
        assert!(matches!(&cross.senders[0].dest, Dest::Client(id) if id == "t-r0"));
        assert!(cross.open_loop.is_none() && !cross.probe_any_ok);
        let cf = plan(
            &args(&cat(&[
                &["--scenario", "cross-node-fanout", "--count", "10"],
                &["--subscribers", "4"],
                &AB,
            ])),
            "t",
        )
        .unwrap();
        assert_eq!((cf.receivers.len(), cf.deliveries_expected()), (4, 40));
        assert_eq!(cf.senders[0].probe_receivers, vec![0, 1, 2, 3]);
        assert!(matches!(&cf.receivers[3].sub, Sub::Topic(t) if t == "t.topic"));
    }

    #[test]
    fn bad_flags_are_rejected() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bench"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
                .map_err(|e| e.to_string())
                .and_then(|c| c.bench.validate())
        };
        assert!(parse(&["--scenario", "latency", "--size", "8"]).is_err());
        assert!(parse(&["--count", "0"]).is_err());
        assert!(parse(&["--duration-s", "-1"]).is_err());
        assert!(parse(&["--relay-cpus", "3-1"]).is_err());
        assert!(parse(&["--scenario", "bogus"]).is_err());
        assert!(parse(&["--scenario", "fanout", "--subscribers", "0"]).is_err());
    }

    #[test]
    fn cross_node_flags_are_checked() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bench"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
                .map_err(|e| e.to_string())
                .and_then(|c| c.bench.validate())
        };
        let nats2 = ["--compare", "nats://127.0.0.1:3,nats://127.0.0.1:4"];
        for scenario in ["cross-node", "cross-node-fanout"] {
            let s = ["--scenario", scenario];
            parse(&cat(&[&s, &AB])).unwrap();
            parse(&cat(&[&s, &AB, &nats2])).unwrap();
            // The relay target needs both nodes, unless only nats runs.
            for partial in [&AB[..2], &AB[2..], &[]] {
                let err = parse(&cat(&[&s, partial])).unwrap_err();
                assert!(err.contains("--server-b"), "{err}");
            }
            parse(&cat(&[&s, &nats2, &["--compare-only"]])).unwrap();
            let same = ["--server", "h:1", "--server-b", "h:1"];
            assert!(parse(&cat(&[&s, &same])).unwrap_err().contains("same"));
            // nats needs two servers too, distinct and non-empty.
            for bad in [
                "nats://127.0.0.1:3",
                "nats://127.0.0.1:3,nats://127.0.0.1:3",
                "nats://127.0.0.1:3,",
                "nats://a:1,nats://b:2,nats://c:3",
            ] {
                let err = parse(&cat(&[&s, &AB, &["--compare", bad]])).unwrap_err();
                assert!(err.contains("--compare"), "{bad}: {err}");
            }
        }
        // --server-b and two nats servers are refused for single-node scenarios.
        for scenario in ["unicast", "pairs", "fanout", "queue", "latency"] {
            let s = ["--scenario", scenario, "--size", "16"];
            let err = parse(&cat(&[&s, &AB])).unwrap_err();
            assert!(err.contains("--server-b is only for"), "{err}");
            let err = parse(&cat(&[&s, &nats2])).unwrap_err();
            assert!(err.contains("one nats://ADDR"), "{err}");
            parse(&cat(&[&s, &["--compare", "nats://127.0.0.1:3"]])).unwrap();
        }
    }
}

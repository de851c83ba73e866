//! Results: one row per target, printed as a table or as JSON lines, plus the
//! ringrelay/nats ratios of a `--compare` run.

use serde::Serialize;

/// One target's result. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub addr: String,
    pub scenario: &'static str,
    pub size: usize,
    pub sent: u64,
    pub received: u64,
    /// Deliveries of the messages actually sent (sent x deliveries per message).
    pub expected: u64,
    pub duration_s: f64,
    /// Distinct messages delivered per second (deliveries / deliveries per message).
    pub msgs_per_s: f64,
    pub deliveries_per_s: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// CPU seconds of the server; of all its nodes together for cross-node scenarios.
    pub server_cpu_s: Option<f64>,
    /// Cross-node scenarios: CPU seconds per node, the senders' node first (JSON only then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_cpu_by_node_s: Vec<Option<f64>>,
    pub deliveries_per_cpu_s: Option<f64>,
    /// Error replies from the server (e.g. unknown id, overloaded).
    pub errors: u64,
}

/// Rates from raw counts; `duration_s` <= 0 gives zero rates.
pub fn rates(received: u64, deliveries_per_msg: u64, duration_s: f64) -> (f64, f64) {
    if duration_s <= 0.0 {
        return (0.0, 0.0);
    }
    let deliveries_per_s = received as f64 / duration_s;
    (
        deliveries_per_s / deliveries_per_msg.max(1) as f64,
        deliveries_per_s,
    )
}

/// Deliveries per server CPU-second, when the CPU time is known and non-zero.
pub fn per_cpu_s(received: u64, server_cpu_s: Option<f64>) -> Option<f64> {
    server_cpu_s
        .filter(|&c| c > 0.0)
        .map(|c| received as f64 / c)
}

/// ringrelay/nats ratios of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Always "ringrelay/nats"; JSON consumers tell ratio lines apart by this key (no `target`).
    pub ratio: &'static str,
    pub scenario: &'static str,
    pub msgs_per_s: Option<f64>,
    pub deliveries_per_s: Option<f64>,
    pub p99_us: Option<f64>,
    pub deliveries_per_cpu_s: Option<f64>,
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b)
}

pub fn ratio(relay: &Row, nats: &Row) -> Ratio {
    Ratio {
        ratio: "ringrelay/nats",
        scenario: relay.scenario,
        msgs_per_s: div(Some(relay.msgs_per_s), Some(nats.msgs_per_s)),
        deliveries_per_s: div(Some(relay.deliveries_per_s), Some(nats.deliveries_per_s)),
        p99_us: div(relay.p99_us, nats.p99_us),
        deliveries_per_cpu_s: div(relay.deliveries_per_cpu_s, nats.deliveries_per_cpu_s),
    }
}

pub fn json_line<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("encode JSON: {e}"))
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.decimals$}"))
}

const HEADERS: [&str; 12] = [
    "target",
    "scenario",
    "size",
    "sent",
    "received",
    "msgs/s",
    "deliveries/s",
    "p50 µs",
    "p99 µs",
    "p99.9 µs",
    "server cpu s",
    "deliv/cpu-s",
];

fn cells(r: &Row) -> [String; 12] {
    [
        r.target.clone(),
        r.scenario.to_string(),
        r.size.to_string(),
        r.sent.to_string(),
        r.received.to_string(),
        format!("{:.0}", r.msgs_per_s),
        format!("{:.0}", r.deliveries_per_s),
        opt(r.p50_us, 1),
        opt(r.p99_us, 1),
        opt(r.p999_us, 1),
        cpu_cell(r),
        opt(r.deliveries_per_cpu_s, 0),
    ]
}

/// Server CPU seconds; for several nodes the total and the share of each, e.g. "0.90 (0.50+0.40)".
fn cpu_cell(r: &Row) -> String {
    let total = opt(r.server_cpu_s, 2);
    if r.server_cpu_by_node_s.len() < 2 {
        return total;
    }
    let parts: Vec<String> = r.server_cpu_by_node_s.iter().map(|&c| opt(c, 2)).collect();
    format!("{total} ({})", parts.join("+"))
}

/// The result table: left-aligned names, right-aligned numbers.
pub fn table(rows: &[Row]) -> String {
    let body: Vec<[String; 12]> = rows.iter().map(cells).collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt_row = |cols: Vec<&str>| {
        let parts: Vec<String> = cols
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                if i < 2 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = fmt_row(HEADERS.to_vec());
    out.push('\n');
    for row in &body {
        out.push_str(&fmt_row(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The ratio line under a `--compare` table.
pub fn ratio_text(r: &Ratio) -> String {
    format!(
        "ringrelay/nats ({}): msgs/s x{}  deliveries/s x{}  p99 x{}  deliveries per CPU-s x{}",
        r.scenario,
        opt(r.msgs_per_s, 2),
        opt(r.deliveries_per_s, 2),
        opt(r.p99_us, 2),
        opt(r.deliveries_per_cpu_s, 2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, deliveries_per_s: f64, p99: Option<f64>, cpu: Option<f64>) -> Row {
        Row {
            target: target.into(),
            addr: "127.0.0.1:1".into(),
            scenario: "fanout",
            size: 16,
            sent: 100,
            received: 1000,
            expected: 1000,
            duration_s: 0.5,
            msgs_per_s: deliveries_per_s / 10.0,
            deliveries_per_s,
            p50_us: p99.map(|p| p / 2.0),
            p99_us: p99,
            p999_us: p99,
            server_cpu_s: cpu,
            server_cpu_by_node_s: Vec::new(),
            deliveries_per_cpu_s: per_cpu_s(1000, cpu),
            errors: 0,
        }
    }

    #[test]
    fn json_has_every_key_and_null_for_unknowns() {
        let line = json_line(&row("ringrelay", 2000.0, None, None)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "target",
            "scenario",
            "size",
            "sent",
            "received",
            "msgs_per_s",
            "deliveries_per_s",
            "p50_us",
            "p99_us",
            "p999_us",
            "server_cpu_s",
            "deliveries_per_cpu_s",
            "duration_s",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {line}");
        }
        assert!(v["p99_us"].is_null() && v["server_cpu_s"].is_null());
        assert!(v.get("server_cpu_by_node_s").is_none());
        assert_eq!(v["deliveries_per_s"], 2000.0);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn table_and_ratios() {
        let relay = row("ringrelay", 4000.0, Some(20.0), Some(0.5));
        let nats = row("nats", 2000.0, Some(40.0), None);
        let t = table(&[relay.clone(), nats.clone()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("target") && lines[0].contains("p99.9 µs"));
        assert!(
            lines[1].starts_with("ringrelay") && lines[1].ends_with("2000"),
            "{t}"
        );
        assert!(lines[2].ends_with('-'), "{t}");
        let r = ratio(&relay, &nats);
        assert_eq!(
            (r.msgs_per_s, r.deliveries_per_s, r.p99_us),
            (Some(2.0), Some(2.0), Some(0.5))
        );
        assert_eq!(r.deliveries_per_cpu_s, None);
        assert!(ratio_text(&r).contains("deliveries/s x2.00"));
        let v: serde_json::Value = serde_json::from_str(&json_line(&r).unwrap()).unwrap();
        assert!(v.get("target").is_none() && v["ratio"] == "ringrelay/nats");
        assert_eq!(rates(1000, 10, 0.5), (200.0, 2000.0));
        assert_eq!(rates(1000, 10, 0.0), (0.0, 0.0));
    }

    #[test]
    fn cross_node_rows_show_cpu_per_node() {
        let mut r = row("ringrelay", 4000.0, None, Some(0.9));
        r.scenario = "cross-node";
        r.server_cpu_by_node_s = vec![Some(0.5), Some(0.4)];
        let t = table(&[r.clone()]);
        assert!(
            t.lines().nth(1).unwrap().contains("0.90 (0.50+0.40)"),
            "{t}"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&r).unwrap()).unwrap();
        assert_eq!(v["server_cpu_by_node_s"], serde_json::json!([0.5, 0.4]));
        r.server_cpu_by_node_s = vec![Some(0.5), None];
        r.server_cpu_s = None;
        assert!(table(&[r]).contains("- (0.50+-)"));
    }
}

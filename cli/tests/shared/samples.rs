//! Reading one sample off a Prometheus text page (`/metrics`).

/// The value of the sample `series` (its name with labels, exactly as exposed) in `body`.
pub fn sample_in(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

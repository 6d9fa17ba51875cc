//! What the bench tools share: the HTTPS client and latency percentiles.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// `builder` (timeouts, protocol) made an HTTPS client trusting `ca_cert`, or anything
/// with `insecure`.
pub fn https_client(
    ca_cert: Option<&Path>,
    insecure: bool,
    builder: reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = builder.use_rustls_tls();
    if insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().context("cannot set up the HTTPS client")
}

/// The nearest-rank percentile `q` (0–100] of sorted values.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A duration in milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 99.0), None);
    }
}

//! The report: the figures of one measurement, printed for a person or as one JSON line,
//! and the server's figures as ratios of the echo baseline's.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The figures of one run against one target.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// What was measured (`server` or `echo`) and where.
    pub(crate) target: String,
    /// The address.
    pub(crate) addr: SocketAddr,
    /// Answers received.
    pub(crate) answered: u64,
    /// Requests given up after the timeout.
    pub(crate) lost: u64,
    /// Wall time of the measurement.
    pub(crate) elapsed: Duration,
    /// Latency of answered requests, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Count of each status code (`echo` for echoed bytes, `other` for anything else).
    pub(crate) statuses: BTreeMap<String, u64>,
}

impl Report {
    /// Adds the figures of another slice of the same measurement.
    pub(super) fn merge(mut self, other: Self) -> Result<Self, Box<dyn std::error::Error>> {
        self.answered += other.answered;
        self.lost += other.lost;
        self.elapsed += other.elapsed;
        self.latency.add(&other.latency)?;
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_insert(0) += n;
        }
        Ok(self)
    }

    /// Answered requests per second.
    pub(crate) fn ops(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(super) fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e6
    }

    pub(super) fn print(&self, out: &mut impl io::Write) -> io::Result<()> {
        writeln!(
            out,
            "{} {}: {} answered in {:.2} s, {:.0} ops/s",
            self.target,
            self.addr,
            self.answered,
            self.elapsed.as_secs_f64(),
            self.ops()
        )?;
        writeln!(
            out,
            "  latency  p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.latency.max() as f64 / 1e6
        )?;
        writeln!(out, "  lost     {}", self.lost)?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        writeln!(out, "  statuses {}", statuses.join(", "))
    }

    pub(super) fn json(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(code, n)| format!("\"{code}\": {n}"))
            .collect();
        format!(
            "{{\"target\": \"{}\", \"addr\": \"{}\", \"answered\": {}, \"lost\": {}, \"seconds\": {:.3}, \"ops_per_sec\": {:.1}, \"p50_ms\": {:.4}, \"p99_ms\": {:.4}, \"p999_ms\": {:.4}, \"max_ms\": {:.4}, \"statuses\": {{{}}}}}",
            self.target,
            self.addr,
            self.answered,
            self.lost,
            self.elapsed.as_secs_f64(),
            self.ops(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.latency.max() as f64 / 1e6,
            statuses.join(", ")
        )
    }
}

/// The server's figures as shares of the echo loops' (`ratio`: the naive loop,
/// `ratio_batched`: the batched one), as JSON members to append to an object.
pub(super) fn ratio_json(reports: &[Report]) -> String {
    let ratio = |server: &Report, echo: &Report| {
        format!(
            "{{\"ops\": {:.4}, \"p99\": {:.4}}}",
            server.ops() / echo.ops(),
            server.quantile_ms(0.99) / echo.quantile_ms(0.99)
        )
    };
    match reports {
        [server, naive, batched] if server.target == "server" => format!(
            ", \"ratio\": {}, \"ratio_batched\": {}",
            ratio(server, naive),
            ratio(server, batched)
        ),
        [server, naive, batched, durable] if server.target == "server" => format!(
            ", \"ratio\": {}, \"ratio_batched\": {}, \"ratio_durable\": {}",
            ratio(server, naive),
            ratio(server, batched),
            ratio(server, durable)
        ),
        [server, echo] if server.target == "server" => {
            format!(", \"ratio\": {}", ratio(server, echo))
        }
        _ => String::new(),
    }
}

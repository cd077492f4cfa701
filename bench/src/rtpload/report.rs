//! The result of a run, printed for people or as one JSON object (`--json`).

use std::fmt::Write as _;

/// Figures about the relay process (only with `--relay-pid`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayProcess {
    pub pid: u32,
    /// utime+stime during the send phase.
    pub cpu_s: f64,
    /// cpu_s ÷ packets received by the tool (i.e. forwarded by the relay), in µs.
    pub cpu_us_per_packet: f64,
    /// cpu_s ÷ wall time of the send phase, in % of one core.
    pub cpu_percent: f64,
    pub rss_before_bytes: u64,
    pub rss_with_streams_bytes: u64,
    /// (rss_with_streams − rss_before) ÷ streams.
    pub rss_per_stream_bytes: f64,
    pub rss_end_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub relay: String,
    pub streams: usize,
    pub directions: u8,
    pub pps_per_direction: f64,
    pub packet_bytes: usize,
    pub duration_s: f64,
    pub setup_s: f64,
    pub setup_failed: usize,
    pub delete_failed: usize,
    pub offered_pps: f64,
    pub sent: u64,
    /// sent ÷ duration: below `offered_pps` when the tool could not keep pace (CPU starved).
    pub sent_pps: f64,
    pub send_failed: u64,
    /// Growth of the system-wide UDP RcvbufErrors/SndbufErrors during the send phase.
    pub kernel_rcvbuf_errors: u64,
    pub kernel_sndbuf_errors: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub out_of_order: u64,
    pub foreign: u64,
    /// Packets received during the send window ÷ its duration (what the relay kept up with).
    pub forwarded_pps: f64,
    /// Packets that arrived only after the last send (queued in the relay's socket buffers:
    /// the relay fell behind).
    pub backlog: u64,
    pub jitter_mean_ms: f64,
    pub jitter_max_ms: f64,
    pub latency_mean_us: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub latency_p999_us: f64,
    pub latency_max_us: f64,
    pub tool_cpu_s: f64,
    pub relay_process: Option<RelayProcess>,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

impl Report {
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "rtpload → {}: {} streams × {} direction(s) × {} pps, {} B packets, {:.1} s",
            self.relay,
            self.streams,
            self.directions,
            self.pps_per_direction,
            self.packet_bytes,
            self.duration_s
        );
        let _ = writeln!(
            s,
            "  setup      {:.2} s for {} U+L ({} failed), {} D failed",
            self.setup_s, self.streams, self.setup_failed, self.delete_failed
        );
        let _ = writeln!(
            s,
            "  offered    {:.0} pps   sent {} = {:.0} pps ({} send failures)",
            self.offered_pps, self.sent, self.sent_pps, self.send_failed
        );
        let _ = writeln!(
            s,
            "  kernel     UDP RcvbufErrors +{}   SndbufErrors +{} (system wide, during the run)",
            self.kernel_rcvbuf_errors, self.kernel_sndbuf_errors
        );
        let _ = writeln!(
            s,
            "  forwarded  {:.0} pps in the window   received {} ({} after it)   lost {} ({:.4} %)   out of order {}   strays {}",
            self.forwarded_pps,
            self.received,
            self.backlog,
            self.lost,
            self.loss_percent,
            self.out_of_order,
            self.foreign
        );
        let _ = writeln!(
            s,
            "  jitter     mean {:.3} ms   max {:.3} ms (RFC 3550, per stream direction)",
            self.jitter_mean_ms, self.jitter_max_ms
        );
        let _ = writeln!(
            s,
            "  latency    p50 {:.0} µs   p99 {:.0} µs   p99.9 {:.0} µs   max {:.0} µs   mean {:.0} µs",
            self.latency_p50_us,
            self.latency_p99_us,
            self.latency_p999_us,
            self.latency_max_us,
            self.latency_mean_us
        );
        if let Some(r) = &self.relay_process {
            let _ = writeln!(
                s,
                "  relay pid {}: cpu {:.2} s ({:.0} % of a core), {:.3} µs per forwarded packet",
                r.pid, r.cpu_s, r.cpu_percent, r.cpu_us_per_packet
            );
            let _ = writeln!(
                s,
                "  relay rss  {:.1} MiB before, {:.1} MiB with streams ({:.0} B per stream), {:.1} MiB at end",
                mib(r.rss_before_bytes),
                mib(r.rss_with_streams_bytes),
                r.rss_per_stream_bytes,
                mib(r.rss_end_bytes)
            );
        }
        let _ = writeln!(s, "  rtpload cpu {:.2} s", self.tool_cpu_s);
        s
    }

    pub fn json(&self) -> String {
        let mut s = String::from("{");
        let mut field = |k: &str, v: String| {
            if s.len() > 1 {
                s.push(',');
            }
            let _ = write!(s, "\"{k}\":{v}");
        };
        field("relay", format!("\"{}\"", escape(&self.relay)));
        field("streams", self.streams.to_string());
        field("directions", self.directions.to_string());
        field("pps_per_direction", num(self.pps_per_direction));
        field("packet_bytes", self.packet_bytes.to_string());
        field("duration_s", num(self.duration_s));
        field("setup_s", num(self.setup_s));
        field("setup_failed", self.setup_failed.to_string());
        field("delete_failed", self.delete_failed.to_string());
        field("offered_pps", num(self.offered_pps));
        field("sent", self.sent.to_string());
        field("sent_pps", num(self.sent_pps));
        field("send_failed", self.send_failed.to_string());
        field(
            "kernel_rcvbuf_errors",
            self.kernel_rcvbuf_errors.to_string(),
        );
        field(
            "kernel_sndbuf_errors",
            self.kernel_sndbuf_errors.to_string(),
        );
        field("received", self.received.to_string());
        field("lost", self.lost.to_string());
        field("loss_percent", num(self.loss_percent));
        field("out_of_order", self.out_of_order.to_string());
        field("strays", self.foreign.to_string());
        field("forwarded_pps", num(self.forwarded_pps));
        field("backlog", self.backlog.to_string());
        field("jitter_mean_ms", num(self.jitter_mean_ms));
        field("jitter_max_ms", num(self.jitter_max_ms));
        field("latency_mean_us", num(self.latency_mean_us));
        field("latency_p50_us", num(self.latency_p50_us));
        field("latency_p99_us", num(self.latency_p99_us));
        field("latency_p999_us", num(self.latency_p999_us));
        field("latency_max_us", num(self.latency_max_us));
        field("tool_cpu_s", num(self.tool_cpu_s));
        let rp = match &self.relay_process {
            None => "null".to_string(),
            Some(r) => format!(
                "{{\"pid\":{},\"cpu_s\":{},\"cpu_us_per_packet\":{},\"cpu_percent\":{},\"rss_before_bytes\":{},\"rss_with_streams_bytes\":{},\"rss_per_stream_bytes\":{},\"rss_end_bytes\":{}}}",
                r.pid,
                num(r.cpu_s),
                num(r.cpu_us_per_packet),
                num(r.cpu_percent),
                r.rss_before_bytes,
                r.rss_with_streams_bytes,
                num(r.rss_per_stream_bytes),
                r.rss_end_bytes
            ),
        };
        field("relay_process", rp);
        s.push('}');
        s
    }
}

/// A JSON number (non-finite values, which JSON lacks, become null).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        "null".into()
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let r = Report {
            relay: "127.0.0.1:22222 \"x\"".into(),
            streams: 2,
            loss_percent: 0.12345,
            jitter_max_ms: f64::NAN,
            relay_process: Some(RelayProcess {
                pid: 9,
                rss_before_bytes: 10,
                ..RelayProcess::default()
            }),
            ..Report::default()
        };
        let j = r.json();
        assert!(
            j.starts_with("{\"relay\":\"127.0.0.1:22222 \\\"x\\\"\",\"streams\":2,"),
            "{j}"
        );
        assert!(j.contains("\"loss_percent\":0.123,"));
        assert!(j.contains("\"jitter_max_ms\":null,"));
        assert!(j.contains("\"relay_process\":{\"pid\":9,"));
        assert!(j.ends_with("\"rss_end_bytes\":0}}"));
        assert!(r.human().contains("relay pid 9"));
    }
}

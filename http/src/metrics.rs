//! Request counters by route and status, and the Prometheus text exposition
//! of them together with the store's counters.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;

use ferrify_store::StatsSnapshot;

/// HTTP request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Counts one request. `path` is normalised to a route (ids become `:id`).
    pub fn record(&self, method: &str, path: &str, status: u16) {
        let route = format!("{method} {}", route_of(path));
        *self.requests.lock().entry((route, status)).or_insert(0) += 1;
    }

    /// Prometheus text format.
    pub fn render(&self, store: &StatsSnapshot) -> String {
        let mut out = String::with_capacity(1024);
        let counters = [
            ("ferrify_log_appends_total", "Append batches acknowledged by the log.", store.appends),
            ("ferrify_log_durable_appends_total", "Append batches that waited for an fsync.", store.durable_appends),
            ("ferrify_log_events_total", "Records written to the log.", store.events),
            ("ferrify_log_fsyncs_total", "fsyncs of the log (group commits).", store.fsyncs),
            ("ferrify_log_commits_total", "Atomic batches written to the log.", store.commits),
            ("ferrify_log_failed_appends_total", "Appends refused or failed.", store.failed_appends),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let _ = writeln!(out, "# HELP ferrify_http_requests_total HTTP requests by route and status.");
        let _ = writeln!(out, "# TYPE ferrify_http_requests_total counter");
        for ((route, status), n) in self.requests.lock().iter() {
            let (method, path) = route.split_once(' ').unwrap_or(("", route));
            let _ = writeln!(
                out,
                "ferrify_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(path)
            );
        }
        out
    }
}

/// Replaces path segments that are ids (UUIDs, digits, long tokens) by `:id`,
/// so the label set stays bounded.
fn route_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let id_like = seg.len() >= 16 || (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()));
        out.push_str(if id_like { ":id" } else { seg });
    }
    if out.len() > 100 {
        out.truncate(100);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_ids() {
        assert_eq!(
            route_of("/v1/conversations/3f2b1c9e-0000-4000-8000-000000000000/name"),
            "/v1/conversations/:id/name"
        );
        assert_eq!(route_of("/health"), "/health");
        let m = Metrics::default();
        m.record("GET", "/health", 200);
        m.record("GET", "/health", 200);
        let text = m.render(&StatsSnapshot::default());
        assert!(text.contains("ferrify_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"));
        assert!(text.contains("# TYPE ferrify_log_fsyncs_total counter"));
    }
}

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
        let method = match method {
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method,
            _ => "OTHER",
        };
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
            (
                "ferrify_log_follower_reads_total",
                "Reads of the log by stream followers behind the in-memory tail.",
                store.follower_reads,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let seconds = [
            ("ferrify_log_fsync_seconds_total", "Time spent in fsyncs of the log.", store.fsync_micros),
            (
                "ferrify_log_commit_seconds_total",
                "Time the writer spent building and writing batches.",
                store.commit_micros,
            ),
        ];
        for (name, help, micros) in seconds {
            let value = micros as f64 / 1e6;
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

/// The console's routes, ids as `:id`.
const CONSOLE_ROUTES: &[&str] = &[
    "/console/api/apps",
    "/console/api/apps/imports",
    "/console/api/apps/:id/api-keys",
    "/console/api/apps/:id/api-keys/:id",
    "/console/api/apps/:id/workflows/publish",
];

/// The route a path belongs to, from a bounded set: a documented Service
/// API template (under the prefix the request used), a console route, the
/// health and metrics routes, or `(unmatched)` for anything else — so that
/// requests for made-up paths cannot grow the label set without end.
fn route_of(path: &str) -> String {
    if matches!(path, "/health" | "/metrics") {
        return path.to_string();
    }
    if let Some(template) = crate::openapi::route_template(path) {
        let prefix = if path.starts_with("/api") { "/api" } else { "/v1" };
        let template = template.split('/').map(|s| if s.starts_with('{') { ":id" } else { s }).collect::<Vec<_>>();
        return format!("{prefix}{}", template.join("/")).trim_end_matches('/').to_string();
    }
    if path.starts_with("/console/api/") {
        let shape: Vec<&str> = path
            .trim_end_matches('/')
            .split('/')
            .enumerate()
            .map(|(i, seg)| if i == 4 || i == 6 { ":id" } else { seg })
            .collect();
        let shape = shape.join("/");
        if let Some(route) =
            CONSOLE_ROUTES.iter().find(|r| **r == shape || (**r == "/console/api/apps/imports" && path == **r))
        {
            return route.to_string();
        }
    }
    "(unmatched)".to_string()
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
        assert_eq!(route_of("/api/workflows/run"), "/api/workflows/run");
        assert_eq!(route_of("/v1/workflows/run/abc"), "/v1/workflows/run/:id");
        assert_eq!(route_of("/v1/"), "/v1");
        assert_eq!(route_of("/v1/aaaa"), "(unmatched)");
        assert_eq!(route_of("/wp-admin/x.php"), "(unmatched)");
        assert_eq!(route_of("/console/api/apps/imports"), "/console/api/apps/imports");
        assert_eq!(route_of("/console/api/apps/3f2b/api-keys/k1"), "/console/api/apps/:id/api-keys/:id");
        assert_eq!(route_of("/console/api/zzz"), "(unmatched)");
        let m = Metrics::default();
        m.record("GET", "/health", 200);
        m.record("GET", "/health", 200);
        let text = m.render(&StatsSnapshot::default());
        assert!(text.contains("ferrify_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"));
        assert!(text.contains("# TYPE ferrify_log_fsyncs_total counter"));
        let store = StatsSnapshot { fsync_micros: 1_500_000, commit_micros: 250, ..Default::default() };
        let text = m.render(&store);
        assert!(text.contains("\nferrify_log_fsync_seconds_total 1.5\n"), "{text}");
        assert!(text.contains("\nferrify_log_commit_seconds_total 0.00025\n"), "{text}");
    }
}

//! Server skeleton: `/health`, `/metrics`, errors for unknown routes, the
//! data-directory lock and graceful shutdown.

use std::process::Command;

use crate::common::{binary, client, free_port, Server};

#[tokio::test]
async fn health_and_metrics() {
    let s = Server::start(&[]);
    let c = client();
    let r = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let r = c.get(s.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);

    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for name in ["ferrify_log_appends_total", "ferrify_log_fsyncs_total", "ferrify_http_requests_total"] {
        assert!(text.contains(&format!("# TYPE {name} counter")), "{name} missing from:\n{text}");
    }
    assert!(text.contains(r#"route="/health",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"status="404"} 1"#), "{text}");
}

#[test]
fn a_held_data_directory_is_refused_clearly() {
    let s = Server::start(&[]);
    let out = Command::new(binary())
        .args(["serve", "--addr", &format!("127.0.0.1:{}", free_port()), "--data"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another ferrify process"), "{stderr}");
    assert!(stderr.contains(&*s.data.to_string_lossy()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sigterm_shuts_down_gracefully_and_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    // The directory is free again: a new server starts on it.
    let mut again = Server::start_in(dir.path(), &[]);
    assert!(again.terminate().success());
}

#[test]
fn rebuild_runs_on_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    s.terminate();
    let out = Command::new(binary()).args(["rebuild", "--data"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuilt read models"));
}

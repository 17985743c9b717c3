//! Helpers for black-box tests: start the real `ferrify` binary on a free
//! loopback port with a temporary data directory, and talk HTTP to it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod upstream;

pub const ADMIN: &str = "test-admin-token";

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ferrify")
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_path_buf();
        let mut s = Server::start_in(&data, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `data` (kept after the server stops). A port taken
    /// by another test's server between choosing and binding it makes the
    /// child exit: then it starts again on another port.
    pub fn start_in(data: &Path, extra: &[&str]) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(binary())
                .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"])
                .arg(data)
                .args(["--admin-token", ADMIN])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut s = Server { child, port, data: data.to_path_buf(), _tmp: None };
            if s.wait_ready() {
                return s;
            }
        }
        panic!("the server exited at start five times");
    }

    /// Starts a server on `data` with its log (stderr, at `rust_log`) in the
    /// file `log`, and `--admin-token` only when `admin` is set.
    pub fn start_logging(data: &Path, log: &Path, rust_log: &str, admin: Option<&str>, extra: &[&str]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data"]).arg(data);
        if let Some(token) = admin {
            cmd.args(["--admin-token", token]);
        }
        let child = cmd
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env_remove("FERRIFY_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server { child, port, data: data.to_path_buf(), _tmp: None };
        assert!(s.wait_ready(), "the server exited at start (log: {})", log.display());
        s
    }

    /// Waits until the port accepts connections and the child still runs
    /// a moment later (a child that could not bind exits): false if it exited.
    fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                return !matches!(self.child.try_wait(), Ok(Some(_)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not listen on {} within 20 s", self.port);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client that never uses a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A fixture app's DSL from `tests/apps/`.
pub fn app_yaml(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/apps/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

impl Server {
    /// Imports a fixture app through the console API; returns its id.
    pub async fn import(&self, name: &str) -> String {
        self.import_yaml(&app_yaml(name)).await
    }

    /// Imports a DSL text through the console API; returns the app's id.
    pub async fn import_yaml(&self, yaml: &str) -> String {
        let r = client()
            .post(self.url("/console/api/apps/imports"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"mode": "yaml-content", "yaml_content": yaml}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "completed");
        body["app_id"].as_str().unwrap().to_string()
    }

    /// Creates an API key through the console API.
    pub async fn key(&self, app_id: &str) -> String {
        let r = client()
            .post(self.url(&format!("/console/api/apps/{app_id}/api-keys")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// Imports a fixture app and returns a key for it.
    pub async fn app(&self, name: &str) -> String {
        let id = self.import(name).await;
        self.key(&id).await
    }

    /// A JSON request with an API key; returns status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let c = client();
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = c.request(m, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}

/// One SSE data frame as a client sees it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: Option<u64>,
    pub data: serde_json::Value,
}

/// Parses an SSE body: data frames (with their `id:` if any) and the number of ping frames.
pub fn parse_sse(body: &str) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut pings = 0;
    for block in body.split("\n\n").filter(|b| !b.is_empty()) {
        let mut id = None;
        let mut data = None;
        let mut event = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).expect("data lines are JSON"));
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_string());
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        match (data, event.as_deref()) {
            (Some(data), _) => frames.push(Frame { id, data }),
            (None, Some("ping")) => pings += 1,
            _ => panic!("frame without data: {block:?}"),
        }
    }
    (frames, pings)
}

/// Posts a streaming request and reads the whole SSE body.
pub async fn stream(
    server: &Server,
    path: &str,
    key: &str,
    body: serde_json::Value,
    accept_sse: bool,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = client().post(server.url(path)).bearer_auth(key).json(&body);
    if accept_sse {
        req = req.header("accept", "text/event-stream");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

//! Time to resume a stream: from sending `GET …/events` with `Last-Event-ID: N`
//! to receiving the first resumed data frame, against the real server binary
//! on loopback (sled data dir).
//!
//! - a finished chat run of 10,000 `message` frames (builtin `lorem`,
//!   `max_tokens` 10000, `pace_ms` 0) + `message_end`, resumed at several N;
//! - a live run (`lorem`, `pace_ms` 5), resumed a few frames behind its live edge;
//! - in process: deriving the frames of the 10,001-event run from its
//!   encoded events, rendering every frame vs passing over them
//!   (`WireRun::values` vs `WireRun::advance`), which is what a resume skips;
//!   and where a seek past the whole run spends its time.
//!
//! Run with:
//!
//!     cargo bench --bench resume
//!     ROUNDS=200 cargo bench --bench resume

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrify_engine::projection::wire_checkpoints;
use ferrify_engine::resume::RunFrames;
use ferrify_engine::wire::WireRun;
use ferrify_engine::{Engine, EngineConfig, Envelope};
use ferrify_store::{Append, EventLog, StreamId};
use serde_json::{json, Value};
use uuid::Uuid;

const WORDS: u64 = 10_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} resumes)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0),
        ms.len()
    )
}

struct Server {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_ferrify"))
            .args(["serve", "--no-demo", "--admin-token", "bench", "--addr", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            // warp logs each resume this bench drops after its first frame.
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let started = Instant::now();
        while client.get(format!("{base}/health")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Server { child, base, client, _dir: dir }
    }

    /// Imports a lorem chat app and returns a key for it.
    async fn lorem_app(&self, words: u64, pace_ms: u64) -> String {
        let yaml = format!(
            "app: {{mode: chat, name: lorem}}\nmodel_config:\n  model: {{provider: builtin, name: lorem, mode: chat, completion_params: {{max_tokens: {words}, pace_ms: {pace_ms}}}}}\n"
        );
        let imported: Value = self
            .client
            .post(format!("{}/console/api/apps/imports", self.base))
            .bearer_auth("bench")
            .json(&json!({"mode": "yaml-content", "yaml_content": yaml}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let app = imported["app_id"].as_str().unwrap().to_string();
        let key: Value = self
            .client
            .post(format!("{}/console/api/apps/{app}/api-keys", self.base))
            .bearer_auth("bench")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        key["token"].as_str().unwrap().to_string()
    }

    async fn start_run(&self, key: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/chat-messages", self.base))
            .bearer_auth(key)
            .json(&json!({"query": "go", "inputs": {}, "user": "bench", "response_mode": "streaming"}))
            .send()
            .await
            .unwrap()
    }

    /// Milliseconds from sending the resume to receiving its first data frame.
    async fn time_to_first_frame(&self, key: &str, task: &str, after: u64) -> f64 {
        let sent = Instant::now();
        let mut r = self
            .client
            .get(format!("{}/v1/chat-messages/{task}/events?user=bench", self.base))
            .bearer_auth(key)
            .header("last-event-id", after.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut seen = Vec::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            seen.extend_from_slice(&chunk);
            if seen.windows(6).any(|w| w == b"data: ") {
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                let expected = format!("id: {}\n", after + 1);
                assert!(seen.starts_with(expected.as_bytes()), "the first resumed frame is frame {}", after + 1);
                return ms;
            }
        }
        panic!("no frame after {after}");
    }
}

/// Reads a stream's data frames as they come; returns (task id, frames read).
async fn read_frames(r: &mut reqwest::Response, buf: &mut String, until: Option<u64>) -> (Option<String>, u64) {
    let (mut task, mut n) = (None, 0);
    while let Ok(Some(chunk)) = r.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.strip_prefix("data: ") {
                n += 1;
                if task.is_none() {
                    task = serde_json::from_str::<Value>(data.trim())
                        .ok()
                        .and_then(|v| v["task_id"].as_str().map(String::from));
                }
            }
        }
        if until.is_some_and(|u| n >= u) {
            break;
        }
    }
    (task, n)
}

fn derivation() {
    let payloads = common::chat_turn(Uuid::new_v4(), Uuid::new_v4(), WORDS);
    let rounds = 20;
    let (mut render, mut pass) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let mut wire = WireRun::new();
        let mut n = 0;
        for p in &payloads {
            let env = Envelope::decode(p).unwrap();
            n += wire.frames(&env).len();
        }
        render.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n as u64, WORDS + 1);
        let t = Instant::now();
        let mut wire = WireRun::new();
        let mut n = 0;
        for p in &payloads {
            let env = Envelope::decode(p).unwrap();
            n += wire.advance(&env);
        }
        pass.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n as u64, WORDS + 1);
    }
    render.sort_by(|a, b| a.total_cmp(b));
    pass.sort_by(|a, b| a.total_cmp(b));
    println!(
        "derive {} frames from {} events (decode included): rendered {:.2} ms, passed over {:.2} ms (medians of {rounds})",
        WORDS + 1,
        payloads.len(),
        percentile(&render, 0.5),
        percentile(&pass, 0.5)
    );
}

/// Where a resume at the end of a 10,000-event run spends its time, in
/// process on a sled store: reading the run's records, and the whole seek
/// (read + decode + pass over every frame).
async fn breakdown() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Engine::open(&EngineConfig { data_dir: Some(dir.path().to_path_buf()), ..EngineConfig::default() }).unwrap();
    let store = engine.store();
    let task = Uuid::new_v4();
    let stream = StreamId::of("run", task).unwrap();
    // One append per event, pipelined, as a streaming run writes them.
    let pending: Vec<_> = common::chat_turn(Uuid::new_v4(), task, WORDS)
        .into_iter()
        .map(|p| store.append(Append::new(stream.clone(), vec![p])))
        .collect();
    for p in pending {
        p.await.unwrap();
    }
    // Readers get what an fsync covered: as when a run's (durable) terminal event is written.
    store.flush().await.unwrap();
    let (mut read, mut seek, mut checkpointed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let mut next = 1;
        loop {
            let records = store.read_stream(&stream, next, 1024).unwrap();
            let Some(last) = records.last() else { break };
            next = last.seq + 1;
        }
        read.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let mut frames = RunFrames::new(store, &stream, task, WORDS + 1);
        assert!(frames.seek().unwrap());
        seek.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(frames.position(), WORDS + 1);
        // The same seek from the run's last checkpoint, as a resume does it.
        let t = Instant::now();
        let checkpoint = wire_checkpoints::before(store, task, WORDS + 1).unwrap();
        assert!(checkpoint.is_some());
        let mut frames = RunFrames::from_checkpoint(store, &stream, task, WORDS + 1, checkpoint);
        assert!(frames.seek().unwrap());
        checkpointed.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(frames.position(), WORDS + 1);
    }
    for v in [&mut read, &mut seek, &mut checkpointed] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!(
        "in process, sled: read the run's {} records {:.2} ms; seek past all {} frames {:.2} ms from the first event, {:.3} ms from the last checkpoint (medians of 20)",
        WORDS + 2,
        percentile(&read, 0.5),
        WORDS + 1,
        percentile(&seek, 0.5),
        percentile(&checkpointed, 0.5)
    );
    engine.close().unwrap();
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    derivation();
    breakdown().await;
    let server = Server::start().await;

    // A finished run of 10,000 message frames.
    let key = server.lorem_app(WORDS, 0).await;
    let mut r = server.start_run(&key).await;
    let (task, frames) = read_frames(&mut r, &mut String::new(), None).await;
    let task = task.expect("a task id");
    assert_eq!(frames, WORDS + 1);
    // Warm up (page cache, connections).
    for _ in 0..5 {
        server.time_to_first_frame(&key, &task, frames - 1).await;
    }
    println!("finished run: {frames} data frames; time from request to first resumed frame:");
    for after in [0, frames / 2, frames - 10, frames - 1] {
        let mut ms = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            ms.push(server.time_to_first_frame(&key, &task, after).await);
        }
        println!("  Last-Event-ID {after:>5}: {}", summary(ms));
    }

    // A live run (5 ms between words), resumed 5 frames behind its live edge.
    let key = server.lorem_app(4_000, 5).await;
    let mut live = server.start_run(&key).await;
    let mut buf = String::new();
    let (task, mut seen) = read_frames(&mut live, &mut buf, Some(50)).await;
    let task = task.expect("a task id");
    let from = seen;
    let mut ms = Vec::with_capacity(rounds);
    for _ in 0..rounds.min(300) {
        let (_, n) = read_frames(&mut live, &mut buf, Some(5)).await;
        seen += n;
        ms.push(server.time_to_first_frame(&key, &task, seen - 5).await);
    }
    println!("live run (resumed 5 frames behind its live edge, between frames {from} and {seen}):");
    println!("  {}", summary(ms));
}

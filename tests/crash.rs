//! Crash recovery: SIGKILL the real server in the middle of 50 streaming chat
//! runs and a workflow run, start it again on the same data directory, and
//! check that every run is terminal, every frame a client had received is
//! still there in the same order, resume works, and history shows the
//! partial answers.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::common::{client, Server};

const RUNS: usize = 50;

/// Complete SSE blocks (without the blank line) in `raw`, pings dropped.
fn blocks(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = raw.split("\n\n").map(str::to_string).collect();
    out.pop(); // the text after the last blank line is not a complete frame
    out.retain(|b| !b.is_empty() && b != "event: ping");
    out
}

fn data_of(block: &str) -> Value {
    let line = block.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    serde_json::from_str(line).expect("JSON data")
}

fn id_of(block: &str) -> u64 {
    block.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|v| v.parse().ok()).expect("an id line")
}

/// GETs a resume URL (optionally after frame `after`) and returns its complete blocks.
async fn resume(s: &Server, path: &str, key: &str, after: Option<u64>) -> (u16, Vec<String>) {
    let mut req = client().get(s.url(path)).bearer_auth(key).header("accept", "text/event-stream");
    if let Some(n) = after {
        req = req.header("last-event-id", n.to_string());
    }
    let r = tokio::time::timeout(Duration::from_secs(20), req.send()).await.expect("resume answers").unwrap();
    let status = r.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(20), r.text()).await.expect("resume ends").unwrap();
    (status, blocks(&format!("{body}\n\n")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_nothing_a_client_saw() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(data.path(), &["--no-demo"]);
    let key = s.app("chat-lorem.yml").await; // 200 words, 10 ms apart
    let wf_key = s.app("workflow-slow.yml").await;

    // 50 streaming chat runs and one workflow run, each recording the raw bytes it receives.
    let seen: Vec<Arc<Mutex<String>>> = (0..=RUNS).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, buf) in seen.iter().enumerate() {
        let (url, key, body) = if i < RUNS {
            (
                s.url("/v1/chat-messages"),
                key.clone(),
                json!({"query": "go", "inputs": {}, "user": format!("u{i}"), "response_mode": "streaming"}),
            )
        } else {
            (
                s.url("/v1/workflows/run"),
                wf_key.clone(),
                json!({"inputs": {}, "user": "w", "response_mode": "streaming"}),
            )
        };
        let buf = buf.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut r) =
                client().post(url).bearer_auth(key).header("accept", "text/event-stream").json(&body).send().await
            else {
                return;
            };
            while let Ok(Some(chunk)) = r.chunk().await {
                buf.lock().push_str(&String::from_utf8_lossy(&chunk));
            }
        }));
    }
    // Kill once every client has some frames (the runs last about 2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen.iter().any(|b| blocks(&b.lock()).len() < 3) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    drop(s);

    let s = Server::start_in(data.path(), &["--no-demo"]);
    let mut cut = 0;
    for (i, buf) in seen.iter().enumerate().take(RUNS) {
        let got = blocks(&buf.lock());
        assert!(!got.is_empty(), "client {i} saw no frame before the kill");
        let first = data_of(&got[0]);
        let last_event = data_of(got.last().unwrap())["event"].as_str().unwrap_or_default().to_string();
        if last_event != "message_end" {
            cut += 1;
        }
        let task = first["task_id"].as_str().unwrap();
        let path = format!("/v1/chat-messages/{task}/events?user=u{i}");
        let (st, full) = resume(&s, &path, &key, None).await;
        assert_eq!(st, 200, "run {i}: resume after restart");
        let end = data_of(full.last().expect("frames"));
        assert!(["message_end", "error"].contains(&end["event"].as_str().unwrap()), "run {i} is terminal: {end}");
        assert_eq!(full[..got.len()], got[..], "run {i}: the frames the client saw are in the log, in order");
        if last_event != "message_end" {
            assert_eq!(end["event"], "error");
            assert_eq!(end["message"], "interrupted: the server stopped during this run");
        }
        // Resuming after the last frame the client saw gives exactly the rest.
        let (st, rest) = resume(&s, &path, &key, Some(id_of(got.last().unwrap()))).await;
        assert_eq!(st, 200);
        assert_eq!([&got[..], &rest[..]].concat(), full, "run {i}: seen + resumed == whole stream");
        // History keeps (at least) the answer the client saw.
        let said: String = got
            .iter()
            .map(|b| data_of(b))
            .filter(|d| d["event"] == "message")
            .map(|d| d["answer"].as_str().unwrap_or_default().to_string())
            .collect();
        let conv = first["conversation_id"].as_str().unwrap();
        let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u{i}"), &key, None).await;
        assert_eq!(st, 200);
        let msgs = h["data"].as_array().unwrap();
        assert_eq!(msgs.len(), 1, "run {i}: one message in history");
        assert!(msgs[0]["answer"].as_str().unwrap().starts_with(&said), "run {i}: history keeps the partial answer");
    }
    assert!(cut > 0, "the SIGKILL cut no stream mid-run");

    // The workflow run is failed with the interruption, and resumable to its end.
    let got = blocks(&seen[RUNS].lock());
    let first = data_of(&got[0]);
    let (task, run_id) = (first["task_id"].as_str().unwrap(), first["workflow_run_id"].as_str().unwrap());
    let (st, d) = s.call("GET", &format!("/v1/workflows/run/{run_id}"), &wf_key, None).await;
    assert_eq!(st, 200);
    if data_of(got.last().unwrap())["event"] != "workflow_finished" {
        assert_eq!(d["status"], "failed", "{d}");
        assert_eq!(d["error"], "interrupted: the server stopped during this run");
    }
    let (st, full) = resume(&s, &format!("/v1/workflow/{task}/events?user=w"), &wf_key, None).await;
    assert_eq!(st, 200);
    assert_eq!(full[..got.len()], got[..]);
    assert!(full.iter().any(|b| data_of(b)["event"] == "workflow_finished"));

    // The conversations stay usable.
    let conv = data_of(&blocks(&seen[0].lock())[0])["conversation_id"].as_str().unwrap().to_string();
    let (st, b) = s
        .call(
            "POST",
            "/v1/chat-messages",
            &key,
            Some(json!({"query": "again", "inputs": {}, "user": "u0", "conversation_id": conv, "response_mode": "blocking"})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
}

/// A blocking chat run killed after its first moments is on the log too: the
/// restart closes it, and history keeps the answer it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_blocking_run_keeps_its_partial_answer() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(data.path(), &["--no-demo"]);
    let key = s.app("chat-lorem.yml").await; // 200 words, 10 ms apart
    let url = s.url("/v1/chat-messages");
    let body = json!({"query": "go", "inputs": {}, "user": "b", "response_mode": "blocking"});
    let request = tokio::spawn(client().post(url).bearer_auth(&key).json(&body).send());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.child.kill().unwrap(); // SIGKILL, about halfway through the answer
    s.child.wait().unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), request).await.unwrap().unwrap();
    assert!(answered.is_err(), "the blocking request was cut, not answered");
    drop(s);

    let s = Server::start_in(data.path(), &["--no-demo"]);
    let (st, convs) = s.call("GET", "/v1/conversations?user=b", &key, None).await;
    assert_eq!(st, 200, "{convs}");
    let convs = convs["data"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "the cut run's conversation exists");
    let conv = convs[0]["id"].as_str().unwrap();
    let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=b"), &key, None).await;
    assert_eq!(st, 200);
    let msgs = h["data"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{h}");
    let words = msgs[0]["answer"].as_str().unwrap().split_whitespace().count();
    assert!(words > 0 && words < 200, "history keeps the partial answer ({words} words): {h}");
}

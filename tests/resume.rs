//! Resumable streams, black-box: for every app mode, streams cut at random
//! frames and resumed with `Last-Event-ID` (or `?after=`) concatenate to the
//! uninterrupted stream byte for byte, for finished runs and for runs that are
//! still producing; and the refusals (foreign or unknown tasks, bad positions).
//!
//! Cut points come from a seed printed by each test (`RESUME_SEED=N` repeats it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::{client, Server};

/// A small deterministic generator for cut points.
struct Cuts(u64);

impl Cuts {
    fn new(test: &str) -> Cuts {
        let seed = std::env::var("RESUME_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
        println!("{test}: RESUME_SEED={seed}");
        Cuts(seed | 1)
    }

    /// A number in `lo..=hi`.
    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (self.0 % (hi - lo + 1) as u64) as usize
    }
}

/// One app mode: how to start a streaming run and where to resume it.
struct Mode {
    name: &'static str,
    app: &'static str,
    run_path: &'static str,
    body: Value,
    /// Resume path of a task, without the query.
    events: fn(&str) -> String,
}

fn modes() -> Vec<Mode> {
    let chat = json!({"query": "go", "inputs": {}, "user": "u1", "response_mode": "streaming"});
    vec![
        Mode {
            name: "chat",
            app: "chat-lorem.yml",
            run_path: "/v1/chat-messages",
            body: chat.clone(),
            events: |t| format!("/v1/chat-messages/{t}/events"),
        },
        Mode {
            name: "completion",
            app: "completion-lorem.yml",
            run_path: "/v1/completion-messages",
            body: json!({"inputs": {}, "user": "u1", "response_mode": "streaming"}),
            events: |t| format!("/v1/completion-messages/{t}/events"),
        },
        Mode {
            name: "workflow",
            app: "workflow-slow.yml",
            run_path: "/v1/workflows/run",
            body: json!({"inputs": {}, "user": "u1", "response_mode": "streaming"}),
            events: |t| format!("/v1/workflow/{t}/events"),
        },
        Mode {
            name: "advanced-chat",
            app: "chatflow-lorem.yml",
            run_path: "/v1/chat-messages",
            body: chat.clone(),
            events: |t| format!("/v1/workflow/{t}/events"),
        },
        // Output moderation: the stream ends with `message_replace`, then `message_end`.
        Mode {
            name: "chat, output moderated",
            app: "chat-lorem-moderated.yml",
            run_path: "/v1/chat-messages",
            body: chat,
            events: |t| format!("/v1/chat-messages/{t}/events"),
        },
    ]
}

/// Reads an SSE body as its data frames, each the exact text of the frame
/// (`id:` line, `data:` line, blank line); ping frames are dropped. With `max`,
/// stops after that many frames and drops the connection, like a client that
/// loses it there.
async fn frames_of(mut r: reqwest::Response, max: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    if max == Some(0) {
        return out;
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8(buf.drain(..end + 2).collect()).expect("UTF-8 frames");
            if block == "event: ping\n\n" {
                continue;
            }
            assert!(block.contains("data: "), "a frame without data: {block:?}");
            out.push(block);
            if max.is_some_and(|m| out.len() >= m) {
                return out;
            }
        }
        match r.chunk().await.expect("the stream reads") {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => break,
        }
    }
    assert!(buf.is_empty(), "the stream ended mid-frame: {:?}", String::from_utf8_lossy(&buf));
    out
}

/// The JSON of a frame.
fn data(frame: &str) -> Value {
    let line = frame.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    serde_json::from_str(line).expect("JSON data")
}

/// A frame without its `id:` line (what a client that did not opt in gets).
fn without_id(frame: &str) -> String {
    frame.lines().filter(|l| !l.is_empty() && !l.starts_with("id: ")).map(|l| format!("{l}\n")).collect::<String>()
        + "\n"
}

/// Compares two frame lists, reporting the first difference only (streams are long).
#[track_caller]
fn assert_frames(actual: &[String], expected: &[String], what: &str) {
    if let Some(i) = (0..actual.len().max(expected.len())).find(|&i| actual.get(i) != expected.get(i)) {
        panic!(
            "{what}: {} frames, expected {}; first difference at frame {}:\n  got      {:?}\n  expected {:?}",
            actual.len(),
            expected.len(),
            i + 1,
            actual.get(i),
            expected.get(i)
        );
    }
}

fn terminal(frame: &str) -> bool {
    matches!(data(frame)["event"].as_str(), Some("message_end" | "workflow_finished" | "error"))
}

/// Starts a streaming run (opted in to `id:` lines).
async fn start(s: &Server, key: &str, mode: &Mode) -> reqwest::Response {
    let r = client()
        .post(s.url(mode.run_path))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .json(&mode.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{} run", mode.name);
    r
}

/// A resume request: `Last-Event-ID` (when `last` is set) and an SSE `Accept`.
async fn resume(s: &Server, key: &str, path: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = client().get(s.url(path)).bearer_auth(key).header("accept", "text/event-stream");
    if let Some(n) = last {
        req = req.header("last-event-id", n);
    }
    req.send().await.unwrap()
}

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn task_of(frames: &[String]) -> String {
    data(&frames[0])["task_id"].as_str().expect("frames carry task_id").to_string()
}

#[tokio::test]
async fn finished_runs_resume_byte_for_byte_at_random_cuts() {
    let s = Server::start(&["--no-demo"]);
    let mut cuts = Cuts::new("finished_runs_resume_byte_for_byte_at_random_cuts");
    for mode in modes() {
        let key = s.app(mode.app).await;
        let full = frames_of(start(&s, &key, &mode).await, None).await;
        assert!(full.len() > 200, "{}: {} frames", mode.name, full.len());
        assert!(terminal(full.last().unwrap()), "{}: ends with {}", mode.name, data(full.last().unwrap()));
        if mode.app.contains("moderated") {
            assert_eq!(data(&full[full.len() - 2])["event"], "message_replace", "{}", mode.name);
        }
        let ids: Vec<String> = (1..=full.len()).map(|i| format!("id: {i}\n")).collect();
        for (frame, id) in full.iter().zip(&ids) {
            assert!(frame.starts_with(id.as_str()), "{}: {frame:?} is not {id:?}", mode.name);
        }
        let task = task_of(&full);
        let path = format!("{}?user=u1", (mode.events)(&task));

        // From the start: the same bytes as the live request; and under /api.
        assert_frames(
            &frames_of(resume(&s, &key, &path, None).await, None).await,
            &full,
            &format!("{}: replay", mode.name),
        );
        let api = format!("/api{}", &path[3..]);
        assert_frames(
            &frames_of(resume(&s, &key, &api, None).await, None).await,
            &full,
            &format!("{}: /api", mode.name),
        );

        // Cut anywhere (at 0 and at the end too), resume after the last frame received.
        let mut points = vec![0, 1, full.len() - 1, full.len()];
        points.extend((0..20).map(|_| cuts.pick(0, full.len())));
        for k in points {
            let head = frames_of(resume(&s, &key, &path, None).await, Some(k)).await;
            assert_eq!(head.len(), k);
            let tail = frames_of(resume(&s, &key, &path, Some(&k.to_string())).await, None).await;
            assert_frames(&[head, tail].concat(), &full, &format!("{}: cut at {k}", mode.name));
            // A client that counted the data frames it got, without id lines.
            let r = client().get(s.url(&format!("{path}&after={k}"))).bearer_auth(&key).send().await.unwrap();
            let plain = frames_of(r, None).await;
            let expected: Vec<String> = full[k..].iter().map(|f| without_id(f)).collect();
            assert_frames(&plain, &expected, &format!("{}: ?after={k}", mode.name));
        }

        // Beyond the end of a finished run.
        let beyond = (full.len() + 1).to_string();
        let (st, b) = status_and_body(resume(&s, &key, &path, Some(&beyond)).await).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{}: {b}", mode.name);
        let r = client().get(s.url(&format!("{path}&after={beyond}"))).bearer_auth(&key).send().await.unwrap();
        let (st, b) = status_and_body(r).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{}: {b}", mode.name);
    }
    // Advanced-chat runs also resume on the chat route.
    let key = s.app("chatflow-lorem.yml").await;
    let mode = &modes()[3];
    let full = frames_of(start(&s, &key, mode).await, None).await;
    let path = format!("/v1/chat-messages/{}/events?user=u1", task_of(&full));
    assert_frames(&frames_of(resume(&s, &key, &path, Some("5")).await, None).await, &full[5..], "chat route");
}

#[tokio::test]
async fn live_runs_resume_while_producing() {
    let s = Server::start(&["--no-demo"]);
    let mut cuts = Cuts::new("live_runs_resume_while_producing");
    let mut runs = Vec::new();
    for mode in modes() {
        let key = s.app(mode.app).await;
        for _ in 0..3 {
            // Cut in the first half of the run (~200 frames, ~2 s): it is still producing.
            runs.push((mode.name, key.clone(), cuts.pick(1, 90)));
        }
    }
    let port = s.port;
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|(name, key, k)| {
            tokio::spawn(async move {
                let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
                let mode = modes().into_iter().find(|m| m.name == name).unwrap();
                // The live request, cut after k frames.
                let live = client()
                    .post(url(mode.run_path))
                    .bearer_auth(&key)
                    .header("accept", "text/event-stream")
                    .json(&mode.body)
                    .send()
                    .await
                    .unwrap();
                let head = frames_of(live, Some(k)).await;
                let task = task_of(&head);
                let path = format!("{}?user=u1", (mode.events)(&task));
                // An uninterrupted reader of the same run, from its first frame.
                let ended = Arc::new(AtomicBool::new(false));
                let follower = {
                    let (url, key, ended) = (url(&path), key.clone(), ended.clone());
                    tokio::spawn(async move {
                        let r = client().get(url).bearer_auth(key).header("accept", "text/event-stream").send();
                        let frames = frames_of(r.await.unwrap(), None).await;
                        ended.store(true, Ordering::SeqCst);
                        frames
                    })
                };
                let r = client()
                    .get(url(&path))
                    .bearer_auth(&key)
                    .header("accept", "text/event-stream")
                    .header("last-event-id", k.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let was_live = !ended.load(Ordering::SeqCst);
                let tail = frames_of(r, None).await;
                let full = follower.await.unwrap();
                assert!(terminal(full.last().unwrap()), "{name}: the follower got the whole run");
                assert_frames(&[head, tail].concat(), &full, &format!("{name}: live cut at {k}"));
                // And the finished run replays the same bytes.
                let r = client().get(url(&path)).bearer_auth(&key).header("accept", "text/event-stream").send();
                assert_frames(&frames_of(r.await.unwrap(), None).await, &full, &format!("{name}: replay"));
                (name, k, was_live)
            })
        })
        .collect();
    let mut live = 0;
    for t in tasks {
        let (name, k, was_live) = t.await.unwrap();
        println!("{name}: cut at {k}, resumed while live: {was_live}");
        live += was_live as usize;
    }
    assert!(live >= 6, "most resumes happened while their run was producing ({live} of 12)");

    // A position beyond the current end of a live run is accepted: it waits, and the run ends first.
    let key = s.app("chat-lorem.yml").await;
    let mode = &modes()[0];
    let head = frames_of(start(&s, &key, mode).await, Some(1)).await;
    let path = format!("/v1/chat-messages/{}/events?user=u1", task_of(&head));
    let r = resume(&s, &key, &path, Some("100000")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(frames_of(r, None).await, Vec::<String>::new());
}

#[tokio::test]
async fn foreign_unknown_and_malformed_resumes_are_refused() {
    let s = Server::start(&["--no-demo"]);
    let chat_key = s.app("chat-echo.yml").await;
    let other_chat_key = s.app("chat-echo.yml").await;
    let workflow_key = s.app("workflow-slow.yml").await;
    let completion_key = s.app("completion-lorem.yml").await;
    let body = json!({"query": "hello there", "inputs": {}, "user": "u1", "response_mode": "streaming"});
    let r = client()
        .post(s.url("/v1/chat-messages"))
        .bearer_auth(&chat_key)
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    let full = frames_of(r, None).await;
    let task = task_of(&full);
    let get = |key: &str, path: String, last: Option<&'static str>| {
        let mut req = client().get(s.url(&path)).bearer_auth(key);
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        async move { status_and_body(req.send().await.unwrap()).await }
    };
    let not_found = |(st, b): (u16, Value)| assert_eq!((st, b["code"].as_str()), (404, Some("not_found")), "{b}");
    // Another user, no user, another app's key, an unknown task, a malformed id.
    not_found(get(&chat_key, format!("/v1/chat-messages/{task}/events?user=u2"), None).await);
    not_found(get(&chat_key, format!("/v1/chat-messages/{task}/events"), None).await);
    not_found(get(&other_chat_key, format!("/v1/chat-messages/{task}/events?user=u1"), None).await);
    let unknown = uuid::Uuid::new_v4();
    not_found(get(&chat_key, format!("/v1/chat-messages/{unknown}/events?user=u1"), None).await);
    not_found(get(&chat_key, "/v1/chat-messages/not-a-task/events?user=u1".into(), None).await);
    not_found(get(&workflow_key, format!("/v1/workflow/{unknown}/events?user=u1"), None).await);
    // Positions that are not non-negative integers, and beyond the end.
    let beyond: &'static str = (full.len() + 1).to_string().leak();
    for bad in ["-1", "abc", "1.5", "+2", "99999999999999999999999", beyond] {
        let (st, b) = get(&chat_key, format!("/v1/chat-messages/{task}/events?user=u1"), Some(bad)).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "Last-Event-ID {bad}: {b}");
    }
    for bad in ["-1", "x"] {
        let (st, b) = get(&chat_key, format!("/v1/chat-messages/{task}/events?user=u1&after={bad}"), None).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "after={bad}: {b}");
    }
    // At the very end: nothing more, the stream closes.
    let r = client()
        .get(s.url(&format!("/v1/chat-messages/{task}/events?user=u1")))
        .bearer_auth(&chat_key)
        .header("last-event-id", full.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(frames_of(r, None).await.is_empty());
    // Routes of another mode.
    let (st, b) = get(&chat_key, format!("/v1/workflow/{task}/events?user=u1"), None).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("not_workflow_app")), "{b}");
    let (st, b) = get(&workflow_key, format!("/v1/chat-messages/{task}/events?user=u1"), None).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("not_chat_app")), "{b}");
    let (st, b) = get(&chat_key, format!("/v1/completion-messages/{task}/events?user=u1"), None).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("app_unavailable")), "{b}");
    // A completion key cannot read the chat app's task either.
    let (st, _) = get(&completion_key, format!("/v1/completion-messages/{task}/events?user=u1"), None).await;
    assert_eq!(st, 404);
    // No key.
    let r = client().get(s.url(&format!("/v1/chat-messages/{task}/events?user=u1"))).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A blocking run is resumable once it ended: the frames a streaming client would have got.
    let (st, b) = s
        .call(
            "POST",
            "/v1/chat-messages",
            &chat_key,
            Some(json!({"query": "a b c", "inputs": {}, "user": "u1", "response_mode": "blocking"})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let path = format!("/v1/chat-messages/{}/events?user=u1", b["task_id"].as_str().unwrap());
    let r = client().get(s.url(&path)).bearer_auth(&chat_key).send().await.unwrap();
    let frames = frames_of(r, None).await;
    let answer: String = frames.iter().filter_map(|f| data(f)["answer"].as_str().map(str::to_string)).collect();
    assert_eq!(answer, "a b c");
    assert_eq!(data(frames.last().unwrap())["event"], "message_end");
    assert_eq!(data(frames.last().unwrap())["message_id"], b["id"]);
}

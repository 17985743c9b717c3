//! Hardening: bad input of every kind gets the spec's status and Dify code,
//! limits refuse with errors naming them, the server stays up, and the data
//! directory is intact and replayable afterwards. Also the security rules:
//! console routes need the admin token, logs never carry a secret, CORS is
//! off unless configured.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{binary, client, stream, Server, ADMIN};

/// Sends raw bytes to `path` and returns (status, body as JSON or text).
async fn post_raw(s: &Server, path: &str, key: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(s.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get(s: &Server, path: &str, key: &str) -> (u16, Value) {
    s.call("GET", path, key, None).await
}

/// Asserts a Dify error envelope with this status and code.
#[track_caller]
fn dify(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["code"], code, "{got:?}");
    assert_eq!(got.1["status"], status, "{got:?}");
    assert!(got.1["message"].is_string(), "{got:?}");
}

async fn healthy(s: &Server) {
    let r = client().get(s.url("/health")).send().await.expect("the server is up");
    assert_eq!(r.status(), 200);
}

/// A raw HTTP exchange: writes `parts` (sleeping `pause` between them), then
/// reads whatever comes back until the server closes or `wait` passes.
fn raw_exchange(port: u16, parts: &[&[u8]], pause: Duration, wait: Duration) -> (String, Duration) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        if tcp.write_all(p).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).to_string(), started.elapsed())
}

#[tokio::test]
async fn malformed_bodies_get_dify_errors_and_nothing_is_lost() {
    let mut s = Server::start(&[
        "--no-demo",
        "--request-timeout-secs",
        "2",
        "--idle-timeout-secs",
        "3",
        "--max-body-bytes",
        "2000000",
    ]);
    let chat = s.app("chat-echo.yml").await;
    let completion = s.app("completion-echo.yml").await;

    // One good turn first: it must survive everything below.
    let ok = s
        .call(
            "POST",
            "/v1/chat-messages",
            &chat,
            Some(json!({"query": "keep me", "inputs": {}, "user": "alice", "response_mode": "blocking"})),
        )
        .await;
    assert_eq!(ok.0, 200, "{ok:?}");
    let task_id = ok.1["task_id"].as_str().unwrap().to_string();
    let conversation_id = ok.1["conversation_id"].as_str().unwrap().to_string();

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("truncated JSON", b"{".to_vec(), 400, "bad_request"),
        ("garbage", b"not json at all".to_vec(), 400, "bad_request"),
        ("non-UTF-8", b"\xff\xfe\x00{".to_vec(), 400, "bad_request"),
        ("non-UTF-8 inside a string", b"{\"query\":\"\xc3\x28\",\"user\":\"u\"}".to_vec(), 400, "bad_request"),
        ("an array", b"[]".to_vec(), 400, "invalid_param"),
        ("a string", b"\"hello\"".to_vec(), 400, "invalid_param"),
        ("null", b"null".to_vec(), 400, "invalid_param"),
        ("no user", br#"{"query":"x"}"#.to_vec(), 400, "invalid_param"),
        ("query a number", br#"{"query":5,"user":"u"}"#.to_vec(), 400, "invalid_param"),
        ("query an object", br#"{"query":{"a":1},"user":"u"}"#.to_vec(), 400, "invalid_param"),
        ("inputs a list", br#"{"query":"x","user":"u","inputs":[1]}"#.to_vec(), 400, "invalid_param"),
        ("files an object", br#"{"query":"x","user":"u","files":{}}"#.to_vec(), 400, "invalid_param"),
        ("bad response_mode", br#"{"query":"x","user":"u","response_mode":"nope"}"#.to_vec(), 400, "invalid_param"),
        ("response_mode a number", br#"{"query":"x","user":"u","response_mode":1}"#.to_vec(), 400, "invalid_param"),
        (
            "bad conversation_id",
            br#"{"query":"x","user":"u","conversation_id":"not-a-uuid"}"#.to_vec(),
            400,
            "invalid_param",
        ),
        ("conversation_id a number", br#"{"query":"x","user":"u","conversation_id":7}"#.to_vec(), 400, "invalid_param"),
        (
            "traversal as conversation_id",
            br#"{"query":"x","user":"u","conversation_id":"../../etc/passwd"}"#.to_vec(),
            400,
            "invalid_param",
        ),
        (
            "auto_generate_name a list",
            br#"{"query":"x","user":"u","auto_generate_name":[]}"#.to_vec(),
            400,
            "invalid_param",
        ),
        ("empty query", br#"{"query":"","user":"u"}"#.to_vec(), 400, "invalid_param"),
        (
            "someone else's conversation",
            format!(r#"{{"query":"x","user":"mallory","conversation_id":"{conversation_id}"}}"#).into_bytes(),
            404,
            "not_found",
        ),
    ];
    for (what, body, status, code) in cases {
        let got = post_raw(&s, "/v1/chat-messages", &chat, body).await;
        assert_eq!((got.0, got.1["code"].as_str()), (status, Some(code)), "{what}: {got:?}");
    }

    // Deep nesting: serde_json's recursion limit refuses it as malformed JSON.
    let deep = format!(r#"{{"query":"x","user":"u","inputs":{{"a":{}{}}}}}"#, "[".repeat(5000), "]".repeat(5000));
    dify(&post_raw(&s, "/v1/chat-messages", &chat, deep.into_bytes()).await, 400, "bad_request");
    // Moderate nesting and unknown fields are accepted (Dify ignores unknown fields).
    let nested = format!(
        r#"{{"query":"x","user":"u","zzz":{{"a":{}1{}}},"parent_message_id":"p"}}"#,
        "[".repeat(60),
        "]".repeat(60)
    );
    assert_eq!(post_raw(&s, "/v1/chat-messages", &chat, nested.into_bytes()).await.0, 200);

    // A huge (1 MB) query is a normal turn; a body over the limit is refused
    // naming the limit, as soon as its declared length is read.
    let big = json!({"query": "é".repeat(500_000), "user": "u", "inputs": {}});
    let got = s.call("POST", "/v1/chat-messages", &chat, Some(big)).await;
    assert_eq!(got.0, 200);
    assert_eq!(got.1["answer"].as_str().unwrap().len(), 1_000_000);
    let (port, key) = (s.port, chat.clone());
    let (huge, took) = tokio::task::spawn_blocking(move || {
        let head = format!(
            "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 20000000\r\n\r\n"
        );
        raw_exchange(port, &[head.as_bytes(), &[b'{'; 65536]], Duration::ZERO, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(huge.contains("request_entity_too_large") && huge.contains("limits.max_body_bytes"), "{huge}");
    assert!(took < Duration::from_secs(5));
    // Sent in full (reqwest writes the whole body): refused the same way, or
    // the connection is closed under the sender; the server stays up either way.
    let mut body = br#"{"query":""#.to_vec();
    body.extend(std::iter::repeat_n(b'a', 3_000_000));
    body.extend_from_slice(br#"","user":"u"}"#);
    if let Ok(r) = client().post(s.url("/v1/chat-messages")).bearer_auth(&chat).body(body).send().await {
        assert_eq!(r.status(), 413);
    }
    healthy(&s).await;

    // Other bodies: completion, workflow, rename, stop.
    dify(
        &post_raw(&s, "/v1/completion-messages", &completion, br#"{"inputs":"x","user":"u"}"#.to_vec()).await,
        400,
        "invalid_param",
    );
    dify(&post_raw(&s, "/v1/completion-messages", &completion, b"{{".to_vec()).await, 400, "bad_request");
    dify(
        &post_raw(&s, "/v1/completion-messages", &chat, br#"{"inputs":{},"user":"u"}"#.to_vec()).await,
        400,
        "app_unavailable",
    );
    dify(
        &post_raw(&s, "/v1/workflows/run", &chat, br#"{"inputs":{},"user":"u"}"#.to_vec()).await,
        400,
        "not_workflow_app",
    );
    dify(&post_raw(&s, "/v1/workflows/run", &chat, br#"{"inputs":{}}"#.to_vec()).await, 400, "invalid_param");
    dify(&post_raw(&s, "/v1/chat-messages/abc/stop", &chat, b"[]".to_vec()).await, 400, "invalid_param");
    let stop = post_raw(&s, "/v1/chat-messages/..%2F..%2Fetc/stop", &chat, br#"{"user":"u"}"#.to_vec()).await;
    assert_eq!((stop.0, &stop.1["result"]), (200, &json!("success")));
    let rename = format!("/v1/conversations/{conversation_id}/name");
    dify(&post_raw(&s, &rename, &chat, br#"{"name":5,"user":"alice"}"#.to_vec()).await, 400, "invalid_param");
    dify(&post_raw(&s, &rename, &chat, br#"{"name":"  ","user":"alice"}"#.to_vec()).await, 400, "invalid_param");
    dify(
        &post_raw(&s, &rename, &chat, br#"{"name":"x","auto_generate":"maybe"}"#.to_vec()).await,
        400,
        "invalid_param",
    );
    dify(&post_raw(&s, &rename, &chat, br#"{"name":"mine now","user":"mallory"}"#.to_vec()).await, 404, "not_found");

    // Invalid ids and path traversal in ids.
    for path in [
        "/v1/conversations/not-a-uuid/name",
        "/v1/conversations/..%2F..%2Fetc%2Fpasswd/name",
        "/v1/conversations/%00/name",
    ] {
        dify(&post_raw(&s, path, &chat, br#"{"name":"x"}"#.to_vec()).await, 404, "not_found");
    }
    dify(&get(&s, "/v1/conversations/..%2F..%2Fsecret/variables", &chat).await, 404, "not_found");
    dify(&s.call("DELETE", "/v1/conversations/../x", &chat, Some(json!({}))).await, 404, "not_found");
    dify(&get(&s, "/v1/workflows/run/..%2f..%2f", &chat).await, 400, "not_workflow_app");
    dify(&get(&s, "/v1/messages?conversation_id=../../x", &chat).await, 400, "invalid_param");
    dify(&get(&s, "/v1/../../etc/passwd", &chat).await, 404, "not_found");

    // Out-of-range pagination and bad query values.
    for q in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=1e3",
        "limit=99999999999999999999",
        "last_id=x",
        "sort_by=name",
    ] {
        dify(&get(&s, &format!("/v1/conversations?user=alice&{q}"), &chat).await, 400, "invalid_param");
    }
    dify(
        &get(&s, &format!("/v1/messages?conversation_id={conversation_id}&user=alice&limit=0"), &chat).await,
        400,
        "invalid_param",
    );
    dify(
        &get(&s, &format!("/v1/messages?conversation_id={conversation_id}&user=alice&first_id=zz"), &chat).await,
        400,
        "invalid_param",
    );
    for q in ["page=0", "page=100000", "limit=101", "status=weird", "created_at__before=yesterday"] {
        dify(&get(&s, &format!("/v1/workflows/logs?{q}"), &chat).await, 400, "invalid_param");
    }
    // A query that does not decode to UTF-8 is refused, not read as another user.
    dify(&get(&s, "/v1/conversations?user=%FF", &chat).await, 400, "invalid_param");

    // Unknown routes and methods.
    dify(&get(&s, "/v1/nope", &chat).await, 404, "not_found");
    dify(&s.call("PUT", "/v1/chat-messages", &chat, Some(json!({}))).await, 405, "method_not_allowed");

    // Keys: checked before the body; a key of one app never sees another's data.
    let (st, body) = post_raw(&s, "/v1/chat-messages", "app-nope", b"{".to_vec()).await;
    assert_eq!((st, body["code"].as_str()), (401, Some("unauthorized")));
    let other = s.app("chat-echo.yml").await;
    let theirs = get(&s, "/v1/conversations?user=alice", &other).await;
    assert_eq!(theirs.1["data"], json!([]), "another app's key sees nothing");
    dify(
        &get(&s, &format!("/v1/messages?conversation_id={conversation_id}&user=alice"), &other).await,
        404,
        "not_found",
    );

    // Slow and truncated requests.
    let port = s.port;
    let (slow_body, took) = tokio::task::spawn_blocking(move || {
        let head = "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer app-x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        raw_exchange(port, &[head.as_bytes(), b"{\"query\":"], Duration::from_millis(10), Duration::from_secs(10))
    })
    .await
    .unwrap();
    // The key is checked first: a body never read answers 401 at once.
    assert!(slow_body.starts_with("HTTP/1.1 401"), "{slow_body}");
    let _ = took;
    let chat2 = chat.clone();
    let (slow_body, took) = tokio::task::spawn_blocking(move || {
        let head = format!(
            "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {chat2}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        );
        raw_exchange(port, &[head.as_bytes(), b"{\"query\":"], Duration::from_millis(10), Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(slow_body.starts_with("HTTP/1.1 408"), "{slow_body}");
    assert!(slow_body.contains("limits.request_timeout_secs"), "{slow_body}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{took:?}");
    // A head that never ends: the connection is closed after the idle timeout.
    let (partial, took) = tokio::task::spawn_blocking(move || {
        raw_exchange(port, &[b"GET /health HTTP/1.1\r\nHost: x\r\n"], Duration::ZERO, Duration::from_secs(15))
    })
    .await
    .unwrap();
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10), "{took:?} {partial}");
    // An idle keep-alive connection is closed after the idle timeout too.
    let (idle, took) = tokio::task::spawn_blocking(move || {
        raw_exchange(port, &[b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"], Duration::ZERO, Duration::from_secs(15))
    })
    .await
    .unwrap();
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10), "{took:?}");
    // A body cut short (the client closes its side) is refused, not waited for.
    let chat3 = chat.clone();
    let truncated = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {chat3}\r\nContent-Length: 100\r\n\r\n{{\"query\":"
        );
        tcp.write_all(head.as_bytes()).unwrap();
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(truncated.is_empty() || truncated.starts_with("HTTP/1.1 400"), "{truncated}");
    // An oversized head is refused.
    let long_header = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000));
    let (big_head, _) = tokio::task::spawn_blocking(move || {
        raw_exchange(port, &[long_header.as_bytes()], Duration::ZERO, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(big_head.is_empty() || big_head.starts_with("HTTP/1.1 431"), "{}", &big_head[..big_head.len().min(200)]);

    healthy(&s).await;

    // The data directory is intact and replayable: stop, rebuild, replay, restart.
    assert!(s.terminate().success());
    let data = s.data.clone();
    let rebuilt = std::process::Command::new(binary()).args(["rebuild", "--data"]).arg(&data).output().unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    let replay = std::process::Command::new(binary())
        .args(["replay", &task_id, "--format", "json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let frames = String::from_utf8_lossy(&replay.stdout).to_string();
    assert!(frames.contains(&task_id) && frames.contains("message_end"), "{frames}");
    let s2 = Server::start_in(&data, &["--no-demo"]);
    let list = get(&s2, "/v1/conversations?user=alice", &chat).await;
    assert_eq!(list.0, 200);
    assert!(list.1["data"].as_array().unwrap().iter().any(|c| c["id"] == conversation_id.as_str()), "{list:?}");
    let msgs = get(&s2, &format!("/v1/messages?conversation_id={conversation_id}&user=alice"), &chat).await;
    assert_eq!(msgs.1["data"][0]["query"], "keep me");
    drop(s);
}

#[tokio::test]
async fn concurrent_runs_are_capped_per_key_and_overall() {
    let s = Server::start(&["--no-demo", "--max-concurrent-runs-per-key", "2", "--max-concurrent-runs", "3"]);
    let app = s.import("chat-slow.yml").await;
    let (k1, k2) = (s.key(&app).await, s.key(&app).await);
    let body = json!({"query": "go", "inputs": {}, "user": "u", "response_mode": "streaming"});
    // Two open streams on k1 fill its cap.
    let mut open = Vec::new();
    for _ in 0..2 {
        let r = client().post(s.url("/v1/chat-messages")).bearer_auth(&k1).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let third = s.call("POST", "/v1/chat-messages", &k1, Some(body.clone())).await;
    dify(&third, 429, "too_many_requests");
    assert!(third.1["message"].as_str().unwrap().contains("limits.max_concurrent_runs_per_key"), "{third:?}");
    // Blocking requests count too.
    let blocking = json!({"query": "go", "inputs": {}, "user": "u"});
    dify(&s.call("POST", "/v1/chat-messages", &k1, Some(blocking)).await, 429, "too_many_requests");
    // Another key of the same app has its own share, up to the overall cap.
    let r = client().post(s.url("/v1/chat-messages")).bearer_auth(&k2).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    open.push(r);
    let over = s.call("POST", "/v1/chat-messages", &k2, Some(body.clone())).await;
    dify(&over, 429, "too_many_requests");
    assert!(over.1["message"].as_str().unwrap().contains("limits.max_concurrent_runs"), "{over:?}");
    // A client that leaves does not free the slot (the run goes on); a stopped run does.
    let mut first = open.remove(0);
    let first_frame = String::from_utf8(first.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    drop(first);
    let task = first_frame
        .split("\"task_id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a task id in the first frame")
        .to_string();
    dify(&s.call("POST", "/v1/chat-messages", &k1, Some(body.clone())).await, 429, "too_many_requests");
    let stop = s.call("POST", &format!("/v1/chat-messages/{task}/stop"), &k1, Some(json!({"user": "u"}))).await;
    assert_eq!(stop.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again =
            s.call("POST", "/v1/chat-messages", &k1, Some(json!({"query": "hi", "inputs": {}, "user": "v"}))).await;
        if again.0 == 200 {
            break;
        }
        dify(&again, 429, "too_many_requests");
        assert!(Instant::now() < deadline, "the stopped run never freed its slot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    healthy(&s).await;
}

#[tokio::test]
async fn rate_limit_per_key_is_a_token_bucket() {
    let s = Server::start(&["--no-demo", "--rate-limit-per-second", "1", "--rate-limit-burst", "3"]);
    let app = s.import("chat-echo.yml").await;
    let (k1, k2) = (s.key(&app).await, s.key(&app).await);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&s, "/v1/info", &k1).await);
    }
    assert!(statuses[..3].iter().all(|r| r.0 == 200), "{statuses:?}");
    let limited = &statuses[4];
    dify(limited, 429, "too_many_requests");
    assert!(limited.1["message"].as_str().unwrap().contains("limits.rate_limit_per_second"));
    assert_eq!(get(&s, "/v1/info", &k2).await.0, 200, "another key has its own bucket");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&s, "/v1/info", &k1).await.0, 200, "the bucket refills");
    // A bad key is refused as such, not counted.
    dify(&get(&s, "/v1/info", "app-unknown").await, 401, "unauthorized");
}

#[tokio::test]
async fn runs_stop_at_their_wall_time_and_workflows_at_their_limits() {
    let s = Server::start(&["--no-demo", "--max-run-seconds", "1", "--max-iteration-items", "2"]);
    let wf = s.app("workflow-slow.yml").await;
    let got = s.call("POST", "/v1/workflows/run", &wf, Some(json!({"inputs": {}, "user": "u"}))).await;
    assert_eq!(got.0, 200, "{got:?}");
    assert_eq!(got.1["data"]["status"], "stopped", "{got:?}");
    assert!(got.1["data"]["error"].as_str().unwrap().contains("limits.max_run_seconds"), "{got:?}");
    let chat = s.app("chat-slow.yml").await;
    let started = Instant::now();
    let got = s.call("POST", "/v1/chat-messages", &chat, Some(json!({"query": "go", "inputs": {}, "user": "u"}))).await;
    assert_eq!(got.0, 200, "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the 11 s answer was cut at about 1 s");
    assert!(!got.1["answer"].as_str().unwrap().is_empty());

    let iteration = r#"
app: {mode: workflow, name: iterate}
workflow:
  graph:
    nodes:
    - {id: start, data: {type: start, title: Start, variables: [{variable: n, type: number, required: true}]}}
    - id: list
      data:
        type: code
        title: List
        code_language: javascript
        code: "function main({n}) { return {items: Array.from({length: n}, (_, i) => i)}; }"
        variables: [{variable: n, value_selector: [start, n]}]
        outputs: {items: {type: "array[number]"}}
    - id: each
      data: {type: iteration, title: Each, iterator_selector: [list, items], output_selector: [fmt, output], start_node_id: each_start}
    - {id: each_start, parentId: each, data: {type: iteration-start, title: '', isInIteration: true}}
    - id: fmt
      parentId: each
      data: {type: template-transform, title: Fmt, isInIteration: true, iteration_id: each, template: '{{ item }}', variables: [{variable: item, value_selector: [each, item]}]}
    - {id: end, data: {type: end, title: End, outputs: [{variable: out, value_selector: [each, output]}]}}
    edges:
    - {source: start, target: list}
    - {source: list, target: each}
    - {source: each, target: end}
    - {source: each_start, target: fmt}
"#;
    let id = s.import_yaml(iteration).await;
    let key = s.key(&id).await;
    let ok = s.call("POST", "/v1/workflows/run", &key, Some(json!({"inputs": {"n": 2}, "user": "u"}))).await;
    assert_eq!(ok.1["data"]["status"], "succeeded", "{ok:?}");
    let over = s.call("POST", "/v1/workflows/run", &key, Some(json!({"inputs": {"n": 3}, "user": "u"}))).await;
    assert_eq!(over.1["data"]["status"], "failed", "{over:?}");
    assert!(over.1["data"]["error"].as_str().unwrap().contains("limits.max_iteration_items"), "{over:?}");
    healthy(&s).await;
}

#[tokio::test]
async fn console_routes_need_the_admin_token() {
    let s = Server::start(&["--no-demo"]);
    let app = s.import("chat-echo.yml").await;
    let key_id = "00000000-0000-4000-8000-000000000000";
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/console/api/apps".into()),
        ("POST", "/console/api/apps/imports".into()),
        ("GET", format!("/console/api/apps/{app}/api-keys")),
        ("POST", format!("/console/api/apps/{app}/api-keys")),
        ("DELETE", format!("/console/api/apps/{app}/api-keys/{key_id}")),
        ("POST", format!("/console/api/apps/{app}/workflows/publish")),
        ("GET", "/console/api/anything-else".into()),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("test-admin-tokenX"), Some("")] {
            let mut req = client()
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), s.url(path))
                .json(&json!({"mode": "yaml-content", "yaml_content": "app: {mode: chat}"}));
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {token:?}");
        }
    }
    // An app key is not an admin token.
    let key = s.key(&app).await;
    let r = client().get(s.url("/console/api/apps")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Without a configured token (or with an empty one) the console is closed.
    let tmp = tempfile::tempdir().unwrap();
    for admin in [None, Some("")] {
        let data = tmp.path().join(format!("d{}", admin.is_some()));
        let closed = Server::start_logging(&data, &tmp.path().join("log"), "warn", admin, &["--no-demo"]);
        for auth in ["Bearer ", "Bearer x", ""] {
            let r = client().get(closed.url("/console/api/apps")).header("authorization", auth).send().await.unwrap();
            assert_eq!(r.status(), 403, "{admin:?} {auth:?}");
        }
    }
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("server.log");
    let mut s = Server::start_logging(&tmp.path().join("data"), &log_path, "trace", Some(ADMIN), &[]);
    let key = s.app("chat-echo.yml").await;
    let _ = s.call("POST", "/v1/chat-messages", &key, Some(json!({"query": "hi", "user": "u"}))).await;
    let _ = s.call("POST", "/v1/chat-messages", &key, Some(json!({"query": 5}))).await;
    let _ = s.call("GET", "/v1/conversations?user=u", "app-wrongwrongwrongwrongwrong", None).await;
    let _ = client().get(s.url("/console/api/apps")).bearer_auth("not-the-admin-token").send().await;
    let _ =
        stream(&s, "/v1/chat-messages", &key, json!({"query": "hi", "user": "u", "response_mode": "streaming"}), false)
            .await;
    let status = s.terminate();
    let log = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).to_string();
    assert!(status.success(), "{status}: {}", &log[log.len().saturating_sub(3000)..]);
    assert!(log.len() > 1000, "the trace log was written");
    for secret in [key.as_str(), &key[4..], ADMIN, "app-wrongwrongwrongwrongwrong", "not-the-admin-token"] {
        assert!(!log.contains(secret), "the log contains a secret ({secret})");
    }
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let r = client()
        .get(s.url("/v1/info"))
        .bearer_auth(&key)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let pre = client()
        .request(reqwest::Method::OPTIONS, s.url("/v1/chat-messages"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none());

    let s = Server::start(&["--no-demo", "--cors-origins", "https://app.example"]);
    let key = s.app("chat-echo.yml").await;
    let r =
        client().get(s.url("/v1/info")).bearer_auth(&key).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    let pre = client()
        .request(reqwest::Method::OPTIONS, s.url("/v1/chat-messages"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 200);
    assert_eq!(pre.headers()["access-control-allow-origin"], "https://app.example");
    let other = client()
        .get(s.url("/v1/info"))
        .bearer_auth(&key)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
}

#[tokio::test]
async fn openapi_document_is_served() {
    let s = Server::start(&["--no-demo"]);
    let r = client().get(s.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"].as_object().unwrap().len() >= 20);
    assert!(doc["paths"]["/chat-messages"]["post"]["responses"]["429"].is_object());
}

#[tokio::test]
async fn long_streams_outlive_the_idle_timeout() {
    let s = Server::start(&["--no-demo", "--idle-timeout-secs", "1", "--request-timeout-secs", "1"]);
    let dsl = "app: {mode: chat, name: slow}\nmodel_config:\n  model: {provider: builtin, name: lorem, mode: chat, \
               completion_params: {max_tokens: 12, pace_ms: 250}}\n  pre_prompt: ''\n  user_input_form: []\n";
    let app = s.import_yaml(dsl).await;
    let key = s.key(&app).await;
    let started = Instant::now();
    let (status, body, _) =
        stream(&s, "/v1/chat-messages", &key, json!({"query": "go", "user": "u", "response_mode": "streaming"}), false)
            .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(body.contains("\"event\":\"message_end\""), "{body}");
}

//! The `openai` provider end to end: ferrify configured (ferrify.toml) to call
//! a small OpenAI-compatible upstream that this test runs on loopback.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{client, parse_sse, stream, Server, ADMIN};

/// Serves `/v1/chat/completions`: model `good` streams "Hello" + " world" and
/// a usage chunk; any other model gets a 401 with an OpenAI error body.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break serde_json::from_slice::<Value>(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                    }
                };
                let reply = if body["model"] == "good" {
                    let mut sse = String::new();
                    for piece in ["Hello", " world"] {
                        let c = json!({"choices": [{"index": 0, "delta": {"content": piece}}]});
                        sse.push_str(&format!("data: {c}\n\n"));
                    }
                    let u = json!({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 2000}});
                    sse.push_str(&format!("data: {u}\n\ndata: [DONE]\n\n"));
                    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sse}", sse.len())
                } else {
                    let e =
                        json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                            .to_string();
                    format!("HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{e}", e.len())
                };
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn app(model: &str) -> String {
    format!(
        "app: {{mode: chat, name: upstream {model}}}\nmodel_config:\n  model: {{provider: langgenius/openai/openai, name: {model}, mode: chat, completion_params: {{temperature: 0.2}}}}\n  pre_prompt: Be brief.\n"
    )
}

async fn key_for(s: &Server, yaml: &str) -> String {
    let r = client()
        .post(s.url("/console/api/apps/imports"))
        .bearer_auth(ADMIN)
        .json(&json!({"mode": "yaml-content", "yaml_content": yaml}))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    s.key(b["app_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn chat_through_an_openai_compatible_upstream() {
    let port = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrify.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmax_retries = 0\n[providers.openai.prices.good]\ninput = \"0.001\"\noutput = \"0.002\"\nunit = \"0.001\"\ncurrency = \"USD\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start_in(&data, &["--no-demo", "--config", config.to_str().unwrap()]);
    let good = key_for(&s, &app("good")).await;
    let bad = key_for(&s, &app("bad")).await;

    let body = json!({"query": "hi", "inputs": {}, "user": "u", "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/chat-messages", &good, Some(body.clone())).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], "Hello world");
    let usage = &b["metadata"]["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(1000), Some(2000)));
    assert_eq!(usage["prompt_price"], "0.0010000");
    assert_eq!(usage["completion_price"], "0.0040000");
    assert_eq!(usage["total_price"], "0.0050000");
    assert_eq!(usage["currency"], "USD");
    // A chatflow's usage sums its LLM nodes' and keeps their 7 decimal places.
    let chatflow = "app: {mode: advanced-chat, name: upstream chatflow}\nworkflow:\n  graph:\n    nodes:\n    - {id: start, data: {type: start, title: Start, variables: []}}\n    - {id: llm, data: {type: llm, title: LLM, model: {provider: langgenius/openai/openai, name: good, mode: chat, completion_params: {}}, prompt_template: [{role: user, text: '{{#sys.query#}}'}]}}\n    - {id: answer, data: {type: answer, title: Answer, answer: '{{#llm.text#}}'}}\n    edges:\n    - {source: start, target: llm}\n    - {source: llm, target: answer}\n";
    let flow = key_for(&s, chatflow).await;
    let (st, b) = s.call("POST", "/v1/chat-messages", &flow, Some(body.clone())).await;
    assert_eq!(st, 200, "{b}");
    let usage = &b["metadata"]["usage"];
    assert_eq!(
        (usage["prompt_price"].as_str(), usage["completion_price"].as_str(), usage["total_price"].as_str()),
        (Some("0.0010000"), Some("0.0040000"), Some("0.0050000")),
        "{usage}"
    );

    let mut sbody = body.clone();
    sbody["response_mode"] = json!("streaming");
    let (_, text, _) = stream(&s, "/v1/chat-messages", &good, sbody.clone(), false).await;
    let (frames, _) = parse_sse(&text);
    let pieces: Vec<&str> = frames.iter().filter_map(|f| f.data["answer"].as_str()).collect();
    assert_eq!(pieces, vec!["Hello", " world"]);
    assert_eq!(frames.last().unwrap().data["event"], "message_end");

    // An upstream error: blocking → the error envelope; streaming → an `error` frame, last.
    let (st, b) = s.call("POST", "/v1/chat-messages", &bad, Some(body)).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("completion_request_error")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("Incorrect API key provided"));
    let (st, text, _) = stream(&s, "/v1/chat-messages", &bad, sbody, false).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    let last = &frames.last().unwrap().data;
    assert_eq!(
        (last["event"].as_str(), last["code"].as_str(), last["status"].as_u64()),
        (Some("error"), Some("completion_request_error"), Some(400))
    );
    assert!(last.get("task_id").is_none(), "error frames carry no task_id");
    // The failed turn is in history with status error.
    let conv = last["conversation_id"].as_str().unwrap();
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u"), &bad, None).await;
    assert_eq!(h["data"][0]["status"], "error");
}

//! Annotations and annotation reply, black-box: CRUD and pages, enable and
//! disable jobs, turns answered from an annotation (text similarity on the
//! builtin echo model; embeddings through an OpenAI-compatible upstream on
//! loopback that must see no chat call), and apps kept apart.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{binary, client, parse_sse, stream, Server, ADMIN};

fn chat(query: &str, mode: &str) -> Value {
    json!({"query": query, "inputs": {}, "user": "u1", "response_mode": mode})
}

fn reply_body() -> Value {
    json!({"score_threshold": 0.8, "embedding_provider_name": "none", "embedding_model_name": "none"})
}

async fn create(s: &Server, key: &str, q: &str, a: &str) -> Value {
    let (st, b) = s.call("POST", "/v1/apps/annotations", key, Some(json!({"question": q, "answer": a}))).await;
    assert_eq!(st, 201, "{b}");
    b
}

/// Re-executes a run over the admin API; returns the report.
async fn reexecute(s: &Server, task: &str) -> Value {
    let r =
        client().post(s.url(&format!("/console/api/runs/{task}/reexecute"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Runs an enable/disable job and waits for its end; returns the final status body.
async fn run_job(s: &Server, key: &str, action: &str, body: Value) -> Value {
    let (st, b) = s.call("POST", &format!("/v1/apps/annotation-reply/{action}"), key, Some(body)).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["job_status"], "waiting");
    let job = b["job_id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let (st, b) = s.call("GET", &format!("/v1/apps/annotation-reply/{action}/status/{job}"), key, None).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["job_id"], job.as_str());
        if matches!(b["job_status"].as_str(), Some("completed" | "error")) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job} did not end");
}

#[tokio::test]
async fn crud_pages_keyword_and_apps_kept_apart() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let other = s.app("chat-echo.yml").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let b = create(&s, &key, &format!("Question {i}"), &format!("Answer {i}")).await;
        assert_eq!(b["question"], format!("Question {i}"));
        assert_eq!(b["answer"], format!("Answer {i}"));
        assert_eq!(b["hit_count"], 0);
        assert!(b["created_at"].is_i64());
        ids.push(b["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Newest first; `has_more` is "the page is full".
    let (st, p) = s.call("GET", "/v1/apps/annotations?page=1&limit=2", &key, None).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!((p["total"].as_u64(), p["page"].as_u64(), p["limit"].as_u64()), (Some(5), Some(1), Some(2)));
    assert_eq!(p["has_more"], true);
    let got: Vec<&str> = p["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let (_, p) = s.call("GET", "/v1/apps/annotations?page=3&limit=2", &key, None).await;
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    assert_eq!(p["data"][0]["id"], ids[0].as_str());
    assert_eq!(p["has_more"], false);
    let (_, p) = s.call("GET", "/v1/apps/annotations", &key, None).await;
    assert_eq!((p["page"].as_u64(), p["limit"].as_u64(), p["data"].as_array().unwrap().len()), (Some(1), Some(20), 5));
    // The keyword matches question or answer, in any case.
    let (_, p) = s.call("GET", "/v1/apps/annotations?keyword=answer%203", &key, None).await;
    assert_eq!((p["total"].as_u64(), p["data"][0]["id"].as_str()), (Some(1), Some(ids[3].as_str())));
    let (_, p) = s.call("GET", "/v1/apps/annotations?keyword=QUESTION", &key, None).await;
    assert_eq!(p["total"], 5);

    // Update, delete, and 404s.
    let path = format!("/v1/apps/annotations/{}", ids[1]);
    let (st, b) = s.call("PUT", &path, &key, Some(json!({"question": "New q", "answer": "New a"}))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (b["id"].as_str(), b["question"].as_str(), b["answer"].as_str()),
        (Some(ids[1].as_str()), Some("New q"), Some("New a"))
    );
    let (_, p) = s.call("GET", "/v1/apps/annotations?keyword=new", &key, None).await;
    assert_eq!(p["data"][0]["answer"], "New a");
    let (st, b) = s.call("PUT", &path, &key, Some(json!({"question": "q"}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = s.call("POST", "/v1/apps/annotations", &key, Some(json!({"answer": "a"}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");

    // Another app's key sees none of them and can change none.
    let (_, p) = s.call("GET", "/v1/apps/annotations", &other, None).await;
    assert_eq!((p["total"].as_u64(), p["data"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let (st, b) = s.call("PUT", &path, &other, Some(json!({"question": "x", "answer": "y"}))).await;
    assert_eq!((st, b["code"].as_str(), b["message"].as_str()), (404, Some("not_found"), Some("Annotation not found")));
    let (st, _) = s.call("DELETE", &path, &other, None).await;
    assert_eq!(st, 404);

    let r = client().delete(s.url(&path)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    let (st, b) = s.call("DELETE", &path, &key, None).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("not_found")));
    let (st, _) =
        s.call("PUT", "/v1/apps/annotations/not-a-uuid", &key, Some(json!({"question": "q", "answer": "a"}))).await;
    assert_eq!(st, 404);
    let (_, p) = s.call("GET", "/v1/apps/annotations", &key, None).await;
    assert_eq!(p["total"], 4);
}

#[tokio::test]
async fn reply_jobs_and_turns_answered_from_annotations() {
    let mut s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let other = s.app("chat-echo.yml").await;

    // Bodies are checked for both actions; unknown actions and jobs are refused.
    let (st, b) = s.call("POST", "/v1/apps/annotation-reply/enable", &key, Some(json!({"score_threshold": 0.9}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = s.call("POST", "/v1/apps/annotation-reply/disable", &key, Some(json!({}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = s.call("POST", "/v1/apps/annotation-reply/toggle", &key, Some(reply_body())).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let unknown = "/v1/apps/annotation-reply/enable/status/6f1c1a0e-1111-4222-8333-944455556666";
    let (st, b) = s.call("GET", unknown, &key, None).await;
    assert_eq!(
        (st, b["code"].as_str(), b["message"].as_str()),
        (400, Some("invalid_param"), Some("The job does not exist."))
    );

    let a = create(&s, &key, "What is Ferrify?", "A single binary serving the Service API.").await;
    let annotation = a["id"].as_str().unwrap().to_string();

    // Before reply is on, the model answers.
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("what is ferrify", "blocking"))).await;
    assert_eq!(b["answer"], "what is ferrify");

    let (st, b) = s.call("POST", "/v1/apps/annotation-reply/enable", &key, Some(reply_body())).await;
    assert_eq!(st, 200);
    let job = b["job_id"].as_str().unwrap().to_string();
    let done = loop {
        let (_, b) = s.call("GET", &format!("/v1/apps/annotation-reply/enable/status/{job}"), &key, None).await;
        if b["job_status"] == "completed" {
            break b;
        }
        assert!(matches!(b["job_status"].as_str(), Some("waiting" | "processing")), "{b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done, json!({"job_id": job, "job_status": "completed", "error_msg": ""}));
    // The job belongs to its app and action.
    let (st, _) = s.call("GET", &format!("/v1/apps/annotation-reply/enable/status/{job}"), &other, None).await;
    assert_eq!(st, 400);
    let (st, _) = s.call("GET", &format!("/v1/apps/annotation-reply/disable/status/{job}"), &key, None).await;
    assert_eq!(st, 400);

    // A matching question (case, punctuation, spacing aside): the annotation answers, blocking…
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("  what is FERRIFY ", "blocking"))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], "A single binary serving the Service API.");
    assert_eq!(b["metadata"]["annotation_reply"]["id"], annotation.as_str());
    assert!(b["metadata"]["annotation_reply"]["account"]["id"].is_string());
    assert_eq!(b["metadata"]["usage"]["total_tokens"], 0);
    let conv = b["conversation_id"].as_str().unwrap().to_string();
    // …and streaming: one `message` frame per character, then `message_end` naming it.
    let (st, text, _) = stream(&s, "/v1/chat-messages", &key, chat("What is ferrify?", "streaming"), true).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    let end = &frames.last().unwrap().data;
    assert_eq!(end["event"], "message_end");
    assert_eq!(end["metadata"]["annotation_reply"]["id"], annotation.as_str());
    let pieces: Vec<&str> = frames.iter().filter_map(|f| f.data["answer"].as_str()).collect();
    assert_eq!(pieces.len(), "A single binary serving the Service API.".chars().count());
    assert_eq!(pieces.concat(), "A single binary serving the Service API.");
    let task = frames[0].data["task_id"].as_str().unwrap().to_string();
    let live: String = text.split_inclusive('\n').filter(|l| !l.starts_with("id: ")).collect();
    // Resumed from the start, the stream is the same.
    let r = client()
        .get(s.url(&format!("/v1/chat-messages/{task}/events?user=u1")))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), text);

    // A question that matches nothing goes to the model.
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("hello there", "blocking"))).await;
    assert_eq!(b["answer"], "hello there");
    assert!(b["metadata"]["annotation_reply"].is_null(), "{b}");
    assert_eq!(b["metadata"]["retriever_resources"], json!([]), "{b}");

    // Hits are counted; the turn is in the conversation's history.
    let (_, p) = s.call("GET", "/v1/apps/annotations", &key, None).await;
    assert_eq!(p["data"][0]["hit_count"], 2);
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u1"), &key, None).await;
    assert_eq!(h["data"][0]["answer"], "A single binary serving the Service API.");
    // Another app with reply off is not affected.
    let (_, b) = s.call("POST", "/v1/chat-messages", &other, Some(chat("What is Ferrify?", "blocking"))).await;
    assert_eq!(b["answer"], "What is Ferrify?");

    // Re-executed, the turn is answered from the recorded annotation again.
    let r = reexecute(&s, &task).await;
    assert_eq!(r["identical"], true, "{r}");

    // Disabled: the model answers again.
    let done = run_job(&s, &key, "disable", reply_body()).await;
    assert_eq!(done["job_status"], "completed");
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("What is Ferrify?", "blocking"))).await;
    assert_eq!(b["answer"], "What is Ferrify?");

    // `ferrify replay` gives the annotation-answered stream as it was served.
    assert!(s.terminate().success());
    let out = Command::new(binary()).arg("replay").arg(&task).arg("--data").arg(&s.data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), live.replace("event: ping\n\n", ""));
}

#[tokio::test]
async fn chatflow_turns_answered_without_starting_the_workflow() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chatflow-lorem.yml").await;
    // Padded, with a placeholder: a chatflow stores its answer as it was given.
    let answer = " Nine {{to}} five. ";
    let a = create(&s, &key, "opening hours", answer).await;
    assert_eq!(run_job(&s, &key, "enable", reply_body()).await["job_status"], "completed");
    let (st, text, _) = stream(&s, "/v1/chat-messages", &key, chat("Opening hours?", "streaming"), false).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    let events: Vec<&str> = frames.iter().map(|f| f.data["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["message", "message_end"]);
    assert_eq!(frames[0].data["answer"], answer);
    let meta = &frames[1].data["metadata"];
    assert_eq!(meta["annotation_reply"]["id"], a["id"]);
    assert_eq!(meta["retriever_resources"], json!([]));
    let task = frames[0].data["task_id"].as_str().unwrap().to_string();
    let r = reexecute(&s, &task).await;
    assert_eq!(r["identical"], true, "{r}");
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("Opening hours", "blocking"))).await;
    assert_eq!((b["answer"].as_str(), b["mode"].as_str()), (Some(answer), Some("advanced-chat")));
    let conv = b["conversation_id"].as_str().unwrap();
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u1"), &key, None).await;
    assert_eq!(h["data"][0]["answer"], answer, "{h}");
    // Not a match: the workflow runs, `annotation_reply` is null.
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("tell me a story", "blocking"))).await;
    assert_ne!(b["answer"], answer);
    assert_eq!(b["metadata"]["annotation_reply"], Value::Null);
}

/// A loopback OpenAI-compatible upstream: `/v1/embeddings` answers a
/// 27-dimension letter histogram of each input (lower-cased); chat
/// completions answer "Hello world". Counts both kinds of request.
async fn upstream(chats: Arc<AtomicUsize>, embeddings: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (chats, embeddings) = (chats.clone(), embeddings.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
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
                        let body = serde_json::from_slice::<Value>(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                        break (head, body);
                    }
                };
                let (ctype, payload) = if head.starts_with("post /v1/embeddings") {
                    embeddings.fetch_add(1, Ordering::SeqCst);
                    let data: Vec<Value> = body["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut v = vec![0.0f64; 27];
                            for c in t.as_str().unwrap().to_lowercase().chars() {
                                match c {
                                    'a'..='z' => v[(c as u8 - b'a') as usize] += 1.0,
                                    c if c.is_alphanumeric() => v[26] += 1.0,
                                    _ => {}
                                }
                            }
                            json!({"object": "embedding", "index": i, "embedding": v})
                        })
                        .collect();
                    ("application/json", json!({"object": "list", "data": data, "model": body["model"]}).to_string())
                } else {
                    chats.fetch_add(1, Ordering::SeqCst);
                    let c = json!({"choices": [{"index": 0, "delta": {"content": "Hello world"}}]});
                    ("text/event-stream", format!("data: {c}\n\ndata: [DONE]\n\n"))
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
                    payload.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn embeddings_through_an_openai_compatible_upstream() {
    let (chats, embeds) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let port = upstream(chats.clone(), embeds.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrify.toml");
    // `down` points at a port nothing listens on.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!(
            "[providers.emb]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmax_retries = 0\n\
             [providers.down]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{down}/v1\"\nmax_retries = 0\ntimeout_secs = 2\n"
        ),
    )
    .unwrap();
    let s = Server::start_in(&dir.path().join("data"), &["--no-demo", "--config", config.to_str().unwrap()]);
    let yaml = "app: {mode: chat, name: emb}\nmodel_config:\n  model: {provider: emb, name: m, mode: chat, completion_params: {}}\n  pre_prompt: ''\n";
    let key = s.key(&s.import_yaml(yaml).await).await;

    // One annotation before reply is on (embedded by the job), one after (embedded when created).
    let before = create(&s, &key, "zebra quiz", "Stripes.").await;
    let body =
        json!({"score_threshold": 0.97, "embedding_provider_name": "langgenius/emb/emb", "embedding_model_name": "e1"});
    assert_eq!(run_job(&s, &key, "enable", body).await["job_status"], "completed");
    assert_eq!(embeds.load(Ordering::SeqCst), 1);
    let after = create(&s, &key, "hello moon", "Goodnight.").await;
    assert_eq!(embeds.load(Ordering::SeqCst), 2);

    // Same letters, other order: cosine 1 — the annotations answer, no chat call.
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("quiz zebra", "blocking"))).await;
    assert_eq!((b["answer"].as_str(), &b["metadata"]["annotation_reply"]["id"]), (Some("Stripes."), &before["id"]));
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("moon hello", "blocking"))).await;
    assert_eq!((b["answer"].as_str(), &b["metadata"]["annotation_reply"]["id"]), (Some("Goodnight."), &after["id"]));
    assert_eq!(chats.load(Ordering::SeqCst), 0, "annotation replies call no model");
    assert_eq!(embeds.load(Ordering::SeqCst), 4, "each query is embedded");

    // Far from both: the model answers.
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("tell me about taxes", "blocking"))).await;
    assert_eq!(b["answer"], "Hello world");
    assert!(chats.load(Ordering::SeqCst) >= 1);

    // A provider that cannot embed: text similarity (the job completes).
    let body = json!({"score_threshold": 1.0, "embedding_provider_name": "builtin", "embedding_model_name": "x"});
    assert_eq!(run_job(&s, &key, "enable", body).await["job_status"], "completed");
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("Zebra quiz!", "blocking"))).await;
    assert_eq!(b["answer"], "Stripes.");
    assert_eq!(embeds.load(Ordering::SeqCst), 5, "text similarity embeds nothing");

    // An embeddings endpoint that cannot be reached: the job ends in error, the setting stays.
    let body = json!({"score_threshold": 0.9, "embedding_provider_name": "down", "embedding_model_name": "x"});
    let failed = run_job(&s, &key, "enable", body).await;
    assert_eq!(failed["job_status"], "error", "{failed}");
    assert!(failed["error_msg"].as_str().is_some_and(|m| m.contains("embeddings")), "{failed}");
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("zebra QUIZ", "blocking"))).await;
    assert_eq!(b["answer"], "Stripes.");
}

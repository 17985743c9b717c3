//! A small OpenAI-compatible upstream on loopback (the edge of the world):
//! `POST /v1/chat/completions` streams a fixed answer chosen by the model
//! name, `POST /v1/moderations` flags any input containing "bad". Every
//! request is kept (path and JSON body) for the tests to count.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The answer of each chat model.
pub fn answer_of(model: &str) -> &'static str {
    match model {
        "secret" => "the Secret is 42",
        "questions" => "Sure! [\"a?\",\"b?\",\"c?\"] Anything else?",
        "garbage" => "I would rather not say.",
        "bad" => "a bad answer",
        _ => "all good",
    }
}

/// A running upstream: its port and the requests it received.
pub struct Upstream {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (path, body) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .to_ascii_lowercase()
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                            let body =
                                serde_json::from_slice::<Value>(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                            break (path, body);
                        }
                    };
                    seen.lock().unwrap().push((path.clone(), body.clone()));
                    let reply = if path.ends_with("/moderations") {
                        let flagged = body["input"].as_str().unwrap_or("").contains("bad");
                        let b = json!({"id": "modr-1", "model": body["model"], "results": [{"flagged": flagged, "categories": {}}]})
                            .to_string();
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len())
                    } else {
                        let text = answer_of(body["model"].as_str().unwrap_or(""));
                        let c = json!({"choices": [{"index": 0, "delta": {"content": text}}]});
                        let sse = format!("data: {c}\n\ndata: [DONE]\n\n");
                        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sse}", sse.len())
                    };
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Upstream { port, requests }
    }

    /// `ferrify.toml` text pointing `[providers.openai]` here.
    pub fn config(&self) -> String {
        format!(
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\nmax_retries = 0\n",
            self.port
        )
    }

    /// How many requests went to paths ending in `suffix`.
    pub fn count(&self, suffix: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|(p, _)| p.ends_with(suffix)).count()
    }

    /// Forgets the requests seen so far.
    pub fn reset(&self) {
        self.requests.lock().unwrap().clear();
    }
}

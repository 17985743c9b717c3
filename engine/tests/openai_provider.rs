//! The `openai` provider against a small OpenAI-compatible upstream speaking
//! raw HTTP/1.1 on 127.0.0.1 (scripted per attempt): streaming, usage,
//! retries, error mapping.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrify_engine::provider::openai::OpenAi;
use ferrify_engine::provider::{
    estimate_tokens, ModelChunk, ModelProvider, ModelRequest, PromptMessage, ProviderConfig, ProviderError, Providers,
    Role,
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream received.
#[derive(Clone, Debug)]
struct Recorded {
    request_line: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// The byte writes of one response (the connection is closed after the last).
type Writes = Vec<Vec<u8>>;

struct Upstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    /// Serves attempt `n` (0-based) with `script(n)`.
    async fn start(script: impl Fn(usize) -> Writes + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((socket, _)) = listener.accept().await {
                let writes = script(n);
                n += 1;
                let log = log.clone();
                tokio::spawn(serve(socket, writes, log));
            }
        });
        Upstream { addr, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn config(&self, api_key_env: Option<&str>, max_retries: u32) -> ProviderConfig {
        ProviderConfig {
            kind: "openai".into(),
            base_url: Some(format!("http://{}/v1/", self.addr)),
            api_key_env: api_key_env.map(str::to_string),
            timeout_secs: 5,
            max_retries,
            prices: HashMap::new(),
            moderation_model: "omni-moderation-latest".into(),
        }
    }
}

async fn serve(mut socket: TcpStream, writes: Writes, log: Arc<Mutex<Vec<Recorded>>>) {
    socket.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        match socket.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    log.lock().unwrap().push(Recorded { request_line, headers, body });
    for (i, w) in writes.iter().enumerate() {
        if i > 0 {
            // Separate network reads on the client side.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if socket.write_all(w).await.is_err() || socket.flush().await.is_err() {
            return;
        }
    }
    let _ = socket.shutdown().await;
}

/// A complete response with a body.
fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Writes {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    vec![head.into_bytes()]
}

/// A chunked `text/event-stream` response: one HTTP chunk per piece, ended
/// properly when `complete`, else the connection is just closed.
fn sse(pieces: Vec<Vec<u8>>, complete: bool) -> Writes {
    let mut writes = vec![b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec()];
    for p in pieces {
        let mut w = format!("{:x}\r\n", p.len()).into_bytes();
        w.extend_from_slice(&p);
        w.extend_from_slice(b"\r\n");
        writes.push(w);
    }
    if complete {
        writes.push(b"0\r\n\r\n".to_vec());
    }
    writes
}

fn delta(text: &str) -> String {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

fn finish() -> String {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    format!("data: {chunk}\n\n")
}

fn usage(prompt: u64, completion: u64) -> String {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}});
    format!("data: {chunk}\n\n")
}

const DONE: &str = "data: [DONE]\n\n";

fn request(params: Value) -> ModelRequest {
    ModelRequest {
        model: "gpt-test".into(),
        messages: vec![
            PromptMessage { role: Role::System, content: "You are terse.".into(), images: Vec::new() },
            PromptMessage { role: Role::User, content: "Say hello to the world".into(), images: Vec::new() },
        ],
        params,
    }
}

async fn run(provider: &OpenAi, req: ModelRequest) -> Vec<Result<ModelChunk, ProviderError>> {
    tokio::time::timeout(Duration::from_secs(20), provider.stream(req).collect::<Vec<_>>()).await.expect("stream hung")
}

fn text_of(items: &[Result<ModelChunk, ProviderError>]) -> String {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(ModelChunk::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn streams_text_and_usage_with_request_as_sent() {
    let body = [delta("Hello"), delta(", "), delta(""), delta("world!"), finish(), usage(17, 4), DONE.to_string()];
    let up = Upstream::start(move |_| sse(body.iter().map(|s| s.clone().into_bytes()).collect(), true)).await;
    std::env::set_var("FERRIFY_TEST_OPENAI_KEY_A", "sk-test-a");
    let provider = OpenAi::from_config("openai", &up.config(Some("FERRIFY_TEST_OPENAI_KEY_A"), 0)).unwrap();
    assert!(provider.has_api_key());
    assert_eq!(provider.endpoint(), format!("http://{}/v1/chat/completions", up.addr));

    let params = json!({"temperature": 0.3, "max_tokens": 64, "stop": ["\n\n"], "response_format": "json_object",
        "pace_ms": 5, "top_k": 3});
    let items = run(&provider, request(params)).await;
    assert_eq!(
        items,
        vec![
            Ok(ModelChunk::Text("Hello".into())),
            Ok(ModelChunk::Text(", ".into())),
            Ok(ModelChunk::Text("world!".into())),
            Ok(ModelChunk::Usage { prompt_tokens: 17, completion_tokens: 4 }),
        ]
    );

    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(r.headers.get("authorization").map(String::as_str), Some("Bearer sk-test-a"));
    assert!(r.headers.get("content-type").is_some_and(|c| c.starts_with("application/json")));
    assert_eq!(r.body["model"], "gpt-test");
    assert_eq!(
        r.body["messages"],
        json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the world"}])
    );
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(r.body["temperature"], 0.3);
    assert_eq!(r.body["max_tokens"], 64);
    assert_eq!(r.body["stop"], json!(["\n\n"]));
    assert_eq!(r.body["response_format"], json!({"type": "json_object"}));
    assert!(r.body.get("pace_ms").is_none() && r.body.get("top_k").is_none());
}

#[tokio::test]
async fn events_split_at_odd_byte_boundaries() {
    // CRLF line ends, comments, a multi-byte character, usage sent before the
    // last text: cut into 7-byte pieces, each its own HTTP chunk and write.
    let text = [
        ": keep-alive\r\n\r\n".to_string(),
        delta("Grüße, ").replace('\n', "\r\n"),
        usage(9, 3).replace('\n', "\r\n"),
        delta("🌍 ok").replace('\n', "\r\n"),
        finish(),
        DONE.replace('\n', "\r\n"),
    ]
    .concat();
    let pieces: Vec<Vec<u8>> = text.as_bytes().chunks(7).map(<[u8]>::to_vec).collect();
    assert!(pieces.len() > 40);
    let up = Upstream::start(move |_| sse(pieces.clone(), true)).await;
    let provider = OpenAi::from_config("local", &up.config(None, 0)).unwrap();
    assert!(!provider.has_api_key());
    let items = run(&provider, request(json!({}))).await;
    assert_eq!(text_of(&items), "Grüße, 🌍 ok");
    assert_eq!(items.last(), Some(&Ok(ModelChunk::Usage { prompt_tokens: 9, completion_tokens: 3 })));
    assert_eq!(items.iter().filter(|i| matches!(i, Ok(ModelChunk::Usage { .. }))).count(), 1);
    assert!(items.iter().all(Result::is_ok));
    assert!(!up.requests()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let up = Upstream::start(|n| {
        if n == 0 {
            response("500 Internal Server Error", &[("Content-Type", "text/plain")], "boom")
        } else {
            sse(vec![delta("fine").into_bytes(), usage(5, 1).into_bytes(), DONE.as_bytes().to_vec()], true)
        }
    })
    .await;
    let provider = OpenAi::from_config("openai", &up.config(None, 2)).unwrap();
    let started = Instant::now();
    let items = run(&provider, request(json!({}))).await;
    assert!(started.elapsed() >= Duration::from_millis(200), "backoff starts at 200 ms");
    assert_eq!(
        items,
        vec![Ok(ModelChunk::Text("fine".into())), Ok(ModelChunk::Usage { prompt_tokens: 5, completion_tokens: 1 })]
    );
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn persistent_rate_limit_gives_rate_limited_after_retries() {
    let body =
        r#"{"error":{"message":"Rate limit reached for gpt-test","type":"requests","code":"rate_limit_exceeded"}}"#;
    let up = Upstream::start(move |_| {
        response("429 Too Many Requests", &[("Content-Type", "application/json"), ("Retry-After", "0")], body)
    })
    .await;
    let provider = OpenAi::from_config("openai", &up.config(None, 3)).unwrap();
    let started = Instant::now();
    let items = run(&provider, request(json!({}))).await;
    // Retry-After: 0 wins over the 200 + 400 + 800 ms backoff.
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
    assert_eq!(items.len(), 1);
    match &items[0] {
        Err(ProviderError::RateLimited(m)) => assert!(m.contains("Rate limit reached for gpt-test"), "{m}"),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(up.requests().len(), 4, "1 attempt + 3 retries");
}

#[tokio::test]
async fn unauthorized_is_a_request_error_with_the_upstream_message() {
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-bad.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let up =
        Upstream::start(move |_| response("401 Unauthorized", &[("Content-Type", "application/json")], body)).await;
    std::env::set_var("FERRIFY_TEST_OPENAI_KEY_E", "sk-bad");
    let provider = OpenAi::from_config("openai", &up.config(Some("FERRIFY_TEST_OPENAI_KEY_E"), 3)).unwrap();
    let items = run(&provider, request(json!({}))).await;
    assert_eq!(items.len(), 1);
    match &items[0] {
        Err(ProviderError::Request(m)) => assert!(m.contains("Incorrect API key provided: sk-bad."), "{m}"),
        other => panic!("expected Request, got {other:?}"),
    }
    assert_eq!(up.requests().len(), 1, "401 is not retried");
    assert_eq!(up.requests()[0].headers.get("authorization").map(String::as_str), Some("Bearer sk-bad"));

    // Without a JSON body: the status line.
    let up = Upstream::start(|_| response("403 Forbidden", &[("Content-Type", "text/html")], "<html>no</html>")).await;
    let provider = OpenAi::from_config("openai", &up.config(None, 0)).unwrap();
    match &run(&provider, request(json!({}))).await[..] {
        [Err(ProviderError::Request(m))] => assert!(m.contains("403 Forbidden"), "{m}"),
        other => panic!("expected one Request error, got {other:?}"),
    }
}

#[tokio::test]
async fn usage_is_estimated_when_the_upstream_sends_none() {
    let up = Upstream::start(|_| {
        sse(
            vec![delta("Hello there, ").into_bytes(), delta("general Kenobi").into_bytes(), DONE.as_bytes().to_vec()],
            true,
        )
    })
    .await;
    // Missing key variable: not an error, no Authorization header.
    let provider = OpenAi::from_config("openai", &up.config(Some("FERRIFY_TEST_OPENAI_KEY_UNSET_F"), 0)).unwrap();
    assert!(!provider.has_api_key());
    let req = request(json!({}));
    let prompt: u64 = req.messages.iter().map(|m| estimate_tokens(&m.content)).sum();
    let items = run(&provider, req).await;
    assert_eq!(text_of(&items), "Hello there, general Kenobi");
    assert_eq!(
        items.last(),
        Some(&Ok(ModelChunk::Usage {
            prompt_tokens: prompt,
            completion_tokens: estimate_tokens("Hello there, general Kenobi")
        }))
    );
    assert!(!up.requests()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn connection_closed_mid_stream_is_one_request_error() {
    let up = Upstream::start(|_| sse(vec![delta("partial ").into_bytes(), b"data: {\"choi".to_vec()], false)).await;
    let provider = OpenAi::from_config("openai", &up.config(None, 2)).unwrap();
    let items = run(&provider, request(json!({}))).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(ModelChunk::Text("partial ".into())));
    assert!(matches!(&items[1], Err(ProviderError::Request(_))), "{items:?}");
    assert_eq!(up.requests().len(), 1, "no retry once streaming started");
}

#[tokio::test]
async fn upstream_error_event_and_malformed_data_end_the_stream() {
    let up = Upstream::start(|n| {
        let bad = if n == 0 {
            "data: {\"error\":{\"message\":\"overloaded mid-answer\"}}\n\n".to_string()
        } else {
            "data: {not json}\n\n".to_string()
        };
        sse(
            vec![delta("a").into_bytes(), bad.into_bytes(), delta("never").into_bytes(), DONE.as_bytes().to_vec()],
            true,
        )
    })
    .await;
    let provider = OpenAi::from_config("openai", &up.config(None, 0)).unwrap();
    for expected in ["overloaded mid-answer", "malformed"] {
        let items = run(&provider, request(json!({}))).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0], Ok(ModelChunk::Text("a".into())));
        match &items[1] {
            Err(ProviderError::Request(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("expected Request, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn connect_errors_are_retried_then_reported() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let cfg = ProviderConfig {
        kind: "openai".into(),
        base_url: Some(format!("http://{addr}/v1")),
        api_key_env: None,
        timeout_secs: 2,
        max_retries: 1,
        prices: HashMap::new(),
        moderation_model: "omni-moderation-latest".into(),
    };
    let provider = OpenAi::from_config("openai", &cfg).unwrap();
    let started = Instant::now();
    let items = run(&provider, request(json!({}))).await;
    assert!(started.elapsed() >= Duration::from_millis(200), "one retry after 200 ms");
    assert!(matches!(&items[..], [Err(ProviderError::Request(_))]), "{items:?}");
}

#[tokio::test]
async fn registry_and_config_validation() {
    let up = Upstream::start(|_| sse(vec![delta("via registry").into_bytes(), DONE.as_bytes().to_vec()], true)).await;
    let mut cfg = up.config(None, 0);
    for kind in ["openai", "openai-compatible", "openai_api_compatible"] {
        cfg.kind = kind.into();
        let providers = Providers::new(&HashMap::from([("local".to_string(), cfg.clone())]), None).unwrap();
        let resolved = providers.resolve("langgenius/local/local", "gpt-test").unwrap();
        let items = tokio::time::timeout(
            Duration::from_secs(20),
            resolved.provider.stream(request(json!({}))).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert_eq!(text_of(&items), "via registry");
    }
    cfg.base_url = None;
    assert_eq!(OpenAi::from_config("openai", &cfg).unwrap().endpoint(), "https://api.openai.com/v1/chat/completions");
    cfg.base_url = Some("not a url".into());
    assert!(OpenAi::from_config("openai", &cfg).is_err());
    cfg.base_url = Some("ftp://example.com/v1".into());
    assert!(OpenAi::from_config("openai", &cfg).is_err());
}

#[tokio::test]
async fn images_go_to_vision_models_as_content_parts() {
    let body = [delta("a cat"), finish(), DONE.to_string()];
    let up = Upstream::start(move |_| sse(body.iter().map(|s| s.clone().into_bytes()).collect(), true)).await;
    let provider = OpenAi::from_config("openai", &up.config(None, 0)).unwrap();
    let mut req = request(json!({}));
    req.messages[1]
        .images
        .push(ferrify_engine::provider::ImagePart { url: "https://example.org/cat.png".into(), detail: "low".into() });
    assert_eq!(text_of(&run(&provider, req).await), "a cat");
    let body = &up.requests()[0].body;
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "You are terse."}));
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "text", "text": "Say hello to the world"},
            {"type": "image_url", "image_url": {"url": "https://example.org/cat.png", "detail": "low"}}
        ])
    );
}

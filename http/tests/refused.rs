//! Over HTTP, on a loopback port: a client following a streamed chat run
//! whose events the log refuses for a while (a full disk, say) gets Dify's
//! `error` event as the stream's last frame once the log takes appends
//! again, not a stream cut after some answer chunk with no end event. The
//! server runs in process here because the log it is given refuses writes on
//! a switch; everything else is the real server.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrify_engine::{Engine, EngineConfig};
use ferrify_http::{serve, State};
use futures_util::StreamExt;
use serde_json::{json, Value};

const ENDLESS: &str = "app: {mode: chat, name: endless}\nmodel_config:\n  model: {provider: builtin, name: lorem, completion_params: {max_tokens: 100000, pace_ms: 5}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_stream_ends_with_an_error_event_once_the_log_takes_appends_again() {
    let (store, refuse) =
        ferrify_store::conformance::open_refusing(ferrify_engine::projection::all(), Default::default()).unwrap();
    let engine = Engine::open_on(&EngineConfig { data_dir: None, ..EngineConfig::default() }, store).unwrap();
    let app_id = engine.import_app(ENDLESS).await.unwrap().app_id;
    let key = engine.create_api_key(app_id).await.unwrap().token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, State::new(engine.clone(), None), async {
        let _ = stopped.await;
    }));

    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat-messages"))
        .bearer_auth(&key)
        .json(&json!({"query": "go", "inputs": {}, "user": "u", "response_mode": "streaming"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut frames: Vec<Value> = Vec::new();
    let mut refused = false;
    let read = async {
        while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if let Some(data) = frame.trim().strip_prefix("data: ") {
                    frames.push(serde_json::from_str(data).unwrap());
                }
            }
            // A few words in, the log starts refusing writes, for a moment.
            if !refused && frames.len() >= 5 {
                refused = true;
                refuse.store(true, Ordering::SeqCst);
                let refuse = refuse.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    refuse.store(false, Ordering::SeqCst);
                });
            }
        }
    };
    // The stream ends by itself.
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the stream did not end");
    let last = frames.last().unwrap();
    assert_eq!(last["event"], "error", "{last}");
    assert_eq!(last["code"], "internal_server_error");
    assert_eq!(last["status"], 500);
    assert_eq!(last["message"], ferrify_engine::recovery::REFUSED);
    assert!(frames[..frames.len() - 1].iter().all(|f| f["event"] == "message"), "{frames:?}");
    // The message keeps what was streamed before the refusal.
    let streamed: String = frames.iter().filter_map(|f| f["answer"].as_str()).collect();
    let message_id = frames[0]["message_id"].as_str().unwrap();
    let conversation_id = frames[0]["conversation_id"].as_str().unwrap();
    let history: Value = reqwest::Client::new()
        .get(format!("http://{addr}/v1/messages?user=u&conversation_id={conversation_id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &history["data"][0];
    assert_eq!(message["id"], message_id, "{history}");
    assert_eq!(message["answer"], streamed.as_str());
    assert_eq!(message["status"], "error");

    let _ = stop_server.send(());
    server.await.unwrap();
}

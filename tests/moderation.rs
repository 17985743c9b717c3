//! Moderation (`sensitive_word_avoidance`) end to end: keywords on inputs
//! (the preset answer, no model call) and on outputs (`message_replace`, the
//! preset kept in history), the OpenAI moderation endpoint of a loopback
//! upstream, chatflows, refused configurations; moderated runs resume, replay
//! and re-execute as they streamed.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::upstream::Upstream;
use crate::common::{binary, parse_sse, stream, Server};

/// A `sensitive_word_avoidance` feature.
fn swa(kind: &str, keywords: &str, inputs: Option<&str>, outputs: Option<&str>) -> Value {
    json!({"enabled": true, "type": kind, "config": {
        "keywords": keywords,
        "inputs_config": {"enabled": inputs.is_some(), "preset_response": inputs.unwrap_or("")},
        "outputs_config": {"enabled": outputs.is_some(), "preset_response": outputs.unwrap_or("")},
    }})
}

/// A chat (or completion, with a `topic` input) app on `provider`/`model`.
fn easy_app(mode: &str, provider: &str, model: &str, feature: &Value) -> String {
    format!(
        "app: {{mode: {mode}, name: moderated {mode}}}\nmodel_config:\n  model: {{provider: {provider}, name: {model}, mode: chat, completion_params: {{}}}}\n  pre_prompt: '{{{{topic}}}}'\n  user_input_form: [{{text-input: {{variable: topic, label: Topic, required: false}}}}]\n  sensitive_word_avoidance: {feature}\n"
    )
}

/// A chatflow whose LLM node echoes the query (builtin echo).
fn chatflow_app(feature: &Value) -> String {
    format!(
        "app: {{mode: advanced-chat, name: moderated chatflow}}\nworkflow:\n  features: {{sensitive_word_avoidance: {feature}}}\n  graph:\n    nodes:\n    - {{id: start, data: {{type: start, title: Start, variables: []}}}}\n    - id: llm\n      data: {{type: llm, title: Echo, model: {{provider: builtin, name: echo, mode: chat, completion_params: {{}}}}, prompt_template: [{{role: user, text: '{{{{#sys.query#}}}}'}}]}}\n    - {{id: answer, data: {{type: answer, title: Answer, answer: '{{{{#llm.text#}}}}'}}}}\n    edges:\n    - {{source: start, target: llm}}\n    - {{source: llm, target: answer}}\n"
    )
}

async fn key_for(s: &Server, yaml: &str) -> String {
    let id = s.import_yaml(yaml).await;
    s.key(&id).await
}

/// A chat turn (a new conversation, named by the model unless moderated).
fn chat_body(query: &str, streaming: bool) -> Value {
    let mode = if streaming { "streaming" } else { "blocking" };
    json!({"query": query, "inputs": {}, "user": "u", "response_mode": mode})
}

/// [`chat_body`] without the title call, so that model calls can be counted.
fn unnamed(query: &str) -> Value {
    let mut body = chat_body(query, false);
    body["auto_generate_name"] = json!(false);
    body
}

/// A server whose `[providers.openai]` is `up`; its temporary directory lives as long as it.
fn server_with(up: &Upstream) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrify.toml");
    std::fs::write(&config, up.config()).unwrap();
    let s = Server::start_in(&dir.path().join("data"), &["--no-demo", "--config", config.to_str().unwrap()]);
    (s, dir)
}

/// The stored answer of a conversation's only (or latest) message.
async fn history_answer(s: &Server, key: &str, conversation: &str) -> Value {
    let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conversation}&user=u"), key, None).await;
    assert_eq!(st, 200, "{h}");
    h["data"].as_array().unwrap().last().unwrap()["answer"].clone()
}

fn events(frames: &[crate::common::Frame]) -> Vec<String> {
    frames.iter().map(|f| f.data["event"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn keywords_on_inputs_answer_the_preset_without_a_model_call() {
    let up = Upstream::start().await;
    let (s, _dir) = server_with(&up);
    let feature = swa("keywords", "secret\nforbidden", Some("I cannot talk about that."), None);
    let chat = key_for(&s, &easy_app("chat", "openai", "plain", &feature)).await;
    let completion = key_for(&s, &easy_app("completion", "openai", "plain", &feature)).await;

    // Blocking: the preset is the answer; the upstream saw nothing.
    let (st, b) = s.call("POST", "/v1/chat-messages", &chat, Some(chat_body("tell me a SECRET", false))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], "I cannot talk about that.");
    assert_eq!(b["metadata"]["usage"]["total_tokens"], 0);
    assert_eq!(history_answer(&s, &chat, b["conversation_id"].as_str().unwrap()).await, "I cannot talk about that.");

    // Streaming: the preset arrives one character per `message` frame, then `message_end`.
    let (st, text, _) = stream(&s, "/v1/chat-messages", &chat, chat_body("forbidden words", true), false).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    let evs = events(&frames);
    assert_eq!(evs.last().map(String::as_str), Some("message_end"), "{text}");
    assert!(evs[..evs.len() - 1].iter().all(|e| e == "message"), "{evs:?}");
    let pieces: Vec<&str> = frames.iter().filter_map(|f| f.data["answer"].as_str()).collect();
    assert_eq!(pieces.len(), "I cannot talk about that.".chars().count());
    assert_eq!(pieces.concat(), "I cannot talk about that.");

    // A form input is checked too (completion).
    let body = json!({"inputs": {"topic": "the Forbidden city"}, "user": "u", "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/completion-messages", &completion, Some(body)).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("I cannot talk about that.")), "{b}");
    assert_eq!(up.count("/chat/completions"), 0, "a flagged input never reaches the model");
    assert_eq!(up.count("/moderations"), 0, "keywords need no upstream");

    // Clean inputs go to the model as usual.
    let (st, b) = s.call("POST", "/v1/chat-messages", &chat, Some(unnamed("hello"))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("all good")), "{b}");
    let body = json!({"inputs": {"topic": "owls"}, "user": "u", "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/completion-messages", &completion, Some(body)).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("all good")), "{b}");
    assert_eq!(up.count("/chat/completions"), 2);
}

#[tokio::test]
async fn keywords_on_outputs_replace_the_answer() {
    let up = Upstream::start().await;
    let (s, _dir) = server_with(&up);
    let feature = swa("keywords", "secret", None, Some("That answer was withheld."));
    let key = key_for(&s, &easy_app("chat", "openai", "secret", &feature)).await;

    // Streaming: the model's text, then `message_replace` with the preset, then `message_end`.
    let (st, text, _) = stream(&s, "/v1/chat-messages", &key, chat_body("what is it?", true), false).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    assert_eq!(events(&frames), ["message", "message_replace", "message_end"], "{text}");
    assert_eq!(frames[0].data["answer"], "the Secret is 42");
    let replace = &frames[1].data;
    assert_eq!(replace["answer"], "That answer was withheld.");
    assert_eq!(replace["reason"], "output_moderation");
    for field in ["task_id", "message_id", "conversation_id"] {
        assert_eq!(replace[field], frames[2].data[field], "{field}");
    }
    assert!(replace["created_at"].is_i64());
    let conversation = replace["conversation_id"].as_str().unwrap();
    assert_eq!(history_answer(&s, &key, conversation).await, "That answer was withheld.");

    // Blocking: the answer is the preset; history keeps it.
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat_body("again?", false))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("That answer was withheld.")), "{b}");
    assert_eq!(history_answer(&s, &key, b["conversation_id"].as_str().unwrap()).await, "That answer was withheld.");

    // Disabled moderation: the model's answer as it is.
    let mut off = feature.clone();
    off["enabled"] = json!(false);
    let plain = key_for(&s, &easy_app("chat", "openai", "secret", &off)).await;
    let (st, b) = s.call("POST", "/v1/chat-messages", &plain, Some(chat_body("what is it?", false))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("the Secret is 42")), "{b}");
    let (_, text, _) = stream(&s, "/v1/chat-messages", &plain, chat_body("what is it?", true), false).await;
    assert!(!text.contains("message_replace"), "{text}");
    assert_eq!(up.count("/moderations"), 0);
}

#[tokio::test]
async fn openai_moderation_asks_the_moderations_endpoint() {
    let up = Upstream::start().await;
    let (s, _dir) = server_with(&up);
    let feature = swa("openai_moderation", "", Some("Flagged question."), Some("Flagged answer."));
    let plain = key_for(&s, &easy_app("chat", "openai", "plain", &feature)).await;
    let bad = key_for(&s, &easy_app("chat", "openai", "bad", &feature)).await;

    // Flagged input: the preset; one moderation call, no model call.
    let (st, b) = s.call("POST", "/v1/chat-messages", &plain, Some(chat_body("a bad question", false))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("Flagged question.")), "{b}");
    assert_eq!((up.count("/moderations"), up.count("/chat/completions")), (1, 0));
    let first = up.requests.lock().unwrap()[0].1.clone();
    assert_eq!(first["model"], "omni-moderation-latest");
    assert!(first["input"].as_str().unwrap().contains("a bad question"), "{first}");

    // Unflagged: input and output are both checked, the answer stays.
    up.reset();
    let (st, b) = s.call("POST", "/v1/chat-messages", &plain, Some(unnamed("hello"))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("all good")), "{b}");
    assert_eq!((up.count("/moderations"), up.count("/chat/completions")), (2, 1));
    let checked: Vec<String> = up
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.ends_with("/moderations"))
        .map(|(_, b)| b["input"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(checked.last().map(String::as_str), Some("all good"), "the answer is checked after the model");

    // A flagged answer is replaced, streaming and blocking.
    let (st, b) = s.call("POST", "/v1/chat-messages", &bad, Some(chat_body("hello", false))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("Flagged answer.")), "{b}");
    let (_, text, _) = stream(&s, "/v1/chat-messages", &bad, chat_body("hello", true), false).await;
    let (frames, _) = parse_sse(&text);
    assert_eq!(events(&frames), ["message", "message_replace", "message_end"], "{text}");
    assert_eq!(frames[1].data["answer"], "Flagged answer.");
}

#[tokio::test]
async fn chatflows_are_moderated_and_bad_configurations_refused() {
    let s = Server::start(&["--no-demo"]);
    // Inputs: the workflow does not start; one `message` frame with the preset, then `message_end`.
    let inputs = key_for(&s, &chatflow_app(&swa("keywords", "secret", Some("Not here."), None))).await;
    let (st, text, _) = stream(&s, "/v1/chat-messages", &inputs, chat_body("my secret plan", true), false).await;
    assert_eq!(st, 200);
    let (frames, _) = parse_sse(&text);
    assert_eq!(events(&frames), ["message", "message_end"], "{text}");
    assert_eq!(frames[0].data["answer"], "Not here.");
    let metadata = &frames[1].data["metadata"];
    assert!(metadata.get("annotation_reply").is_some() && metadata["retriever_resources"] == json!([]), "{metadata}");
    let conversation = frames[1].data["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(history_answer(&s, &inputs, &conversation).await, "Not here.");
    // The conversation goes on: a clean turn runs the workflow.
    let mut body = chat_body("hello", false);
    body["conversation_id"] = json!(conversation);
    let (st, b) = s.call("POST", "/v1/chat-messages", &inputs, Some(body)).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("hello")), "{b}");
    let (st, b) = s.call("POST", "/v1/chat-messages", &inputs, Some(chat_body("secret", false))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("Not here.")), "{b}");

    // Outputs: `workflow_finished`, then `message_replace`, then `message_end`.
    let outputs = key_for(&s, &chatflow_app(&swa("keywords", "secret", None, Some("Withheld.")))).await;
    let (_, text, _) = stream(&s, "/v1/chat-messages", &outputs, chat_body("my secret plan", true), false).await;
    let (frames, _) = parse_sse(&text);
    let evs = events(&frames);
    assert_eq!(evs[evs.len() - 3..], ["workflow_finished", "message_replace", "message_end"], "{text}");
    assert_eq!(frames[frames.len() - 2].data["answer"], "Withheld.");
    let conversation = frames.last().unwrap().data["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(history_answer(&s, &outputs, &conversation).await, "Withheld.");
    let (st, b) = s.call("POST", "/v1/chat-messages", &outputs, Some(chat_body("my secret plan", false))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("Withheld.")), "{b}");

    // `api` moderation (an API extension) is refused at import, naming the reason.
    for yaml in [
        easy_app("chat", "builtin", "echo", &swa("api", "", Some("x"), None)),
        chatflow_app(&swa("api", "", Some("x"), None)),
    ] {
        let r = crate::common::client()
            .post(s.url("/console/api/apps/imports"))
            .bearer_auth(crate::common::ADMIN)
            .json(&json!({"mode": "yaml-content", "yaml_content": yaml}))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let b: Value = r.json().await.unwrap();
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
        assert!(b["message"].as_str().unwrap().contains("api"), "{b}");
    }

    // openai_moderation without `[providers.openai]`: the run fails with provider_not_initialize.
    let key = key_for(&s, &easy_app("chat", "builtin", "echo", &swa("openai_moderation", "", Some("x"), None))).await;
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat_body("hello", false))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("provider_not_initialize")), "{b}");
}

/// `ferrify replay TASK`'s SSE transcript.
fn replayed(data: &Path, task: &str) -> String {
    let out = Command::new(binary())
        .arg("replay")
        .arg(task)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn moderated_runs_replay_as_they_streamed() {
    let mut s = Server::start(&["--no-demo"]);
    let echo_in =
        key_for(&s, &easy_app("chat", "builtin", "echo", &swa("keywords", "secret", Some("No."), None))).await;
    let echo_out =
        key_for(&s, &easy_app("chat", "builtin", "echo", &swa("keywords", "secret", None, Some("Hidden.")))).await;
    let flow_in = key_for(&s, &chatflow_app(&swa("keywords", "secret", Some("Not here."), None))).await;
    let flow_out = key_for(&s, &chatflow_app(&swa("keywords", "secret", None, Some("Withheld.")))).await;
    let mut live = Vec::new();
    for key in [&echo_in, &echo_out, &flow_in, &flow_out] {
        let (st, text, _) = stream(&s, "/v1/chat-messages", key, chat_body("a secret", true), false).await;
        assert_eq!(st, 200);
        let (frames, _) = parse_sse(&text);
        let task = frames[0].data["task_id"].as_str().unwrap().to_string();
        // The same frames once more, resumed from the log.
        let (st, resumed) = s.call("GET", &format!("/v1/chat-messages/{task}/events?user=u"), key, None).await;
        assert_eq!(st, 200);
        let resumed = match resumed {
            Value::String(t) => t,
            other => panic!("not a stream: {other}"),
        };
        assert_eq!(resumed.replace("event: ping\n\n", ""), text.replace("event: ping\n\n", ""));
        live.push((task, text.replace("event: ping\n\n", "")));
    }
    assert!(live[0].1.contains("\"answer\":\"N\"") && live[1].1.contains("message_replace"));
    assert!(live[3].1.contains("message_replace"));
    // Re-executed, each moderated run records the same events again.
    for (task, _) in &live {
        let r = crate::common::client()
            .post(s.url(&format!("/console/api/runs/{task}/reexecute")))
            .bearer_auth(crate::common::ADMIN)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let b: Value = r.json().await.unwrap();
        assert_eq!((st, &b["identical"]), (200, &json!(true)), "{task}: {b}");
    }
    assert!(s.terminate().success());
    for (task, text) in &live {
        assert_eq!(&replayed(&s.data, task), text, "the replayed stream of {task} differs from the live one");
    }
}

//! `GET /v1/messages/:message_id/suggested`: follow-up questions from the
//! app's model when `suggested_questions_after_answer` is on; every refusal
//! as Dify answers it; a model's answer without a JSON array gives none.

use serde_json::{json, Value};

use crate::common::upstream::Upstream;
use crate::common::{app_yaml, Server};

fn chat_app(provider: &str, model: &str, enabled: bool) -> String {
    format!(
        "app: {{mode: chat, name: suggesting}}\nmodel_config:\n  model: {{provider: {provider}, name: {model}, mode: chat, completion_params: {{}}}}\n  pre_prompt: ''\n  suggested_questions_after_answer: {{enabled: {enabled}}}\n"
    )
}

fn chatflow_app() -> String {
    "app: {mode: advanced-chat, name: suggesting chatflow}\nworkflow:\n  features: {suggested_questions_after_answer: {enabled: true}}\n  graph:\n    nodes:\n    - {id: start, data: {type: start, title: Start, variables: []}}\n    - id: llm\n      data: {type: llm, title: Echo, model: {provider: builtin, name: echo, mode: chat, completion_params: {}}, prompt_template: [{role: user, text: '{{#sys.query#}}'}]}\n    - {id: answer, data: {type: answer, title: Answer, answer: '{{#llm.text#}}'}}\n    edges:\n    - {source: start, target: llm}\n    - {source: llm, target: answer}\n".into()
}

async fn key_for(s: &Server, yaml: &str) -> String {
    let id = s.import_yaml(yaml).await;
    s.key(&id).await
}

/// Sends a blocking chat turn as `user`; returns its message id.
async fn ask(s: &Server, key: &str, query: &str, user: &str) -> String {
    let body = json!({"query": query, "inputs": {}, "user": user, "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/chat-messages", key, Some(body)).await;
    assert_eq!(st, 200, "{b}");
    b["message_id"].as_str().unwrap().to_string()
}

async fn suggested(s: &Server, key: &str, message: &str, user: &str) -> (u16, Value) {
    s.call("GET", &format!("/v1/messages/{message}/suggested?user={user}"), key, None).await
}

#[tokio::test]
async fn suggestions_on_the_builtin_model_and_every_refusal() {
    let s = Server::start(&["--no-demo"]);
    let on = key_for(&s, &chat_app("builtin", "echo", true)).await;
    let message = ask(&s, &on, "Tell me about owls", "alice").await;
    // The echo model repeats the request, whose format example is the array it parses.
    let (st, b) = suggested(&s, &on, &message, "alice").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b, json!({"result": "success", "data": ["question1", "question2", "question3"]}));
    // Under /api too.
    let (st, b) = s.call("GET", &format!("/api/messages/{message}/suggested?user=alice"), &on, None).await;
    assert_eq!((st, b["result"].as_str()), (200, Some("success")), "{b}");

    // Another user's message, an unknown one, a malformed id: not found.
    for (id, user) in [(message.as_str(), "bob"), ("5f0c2a1e-0000-4000-8000-000000000000", "alice"), ("nope", "alice")]
    {
        let (st, b) = suggested(&s, &on, id, user).await;
        assert_eq!(
            (st, b["code"].as_str(), b["message"].as_str()),
            (404, Some("not_found"), Some("Message Not Exists.")),
            "{b}"
        );
    }
    // `user` is required.
    let (st, b) = s.call("GET", &format!("/v1/messages/{message}/suggested"), &on, None).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    // Another app's message is not found either.
    let other = key_for(&s, &chat_app("builtin", "echo", true)).await;
    let (st, _) = suggested(&s, &other, &message, "alice").await;
    assert_eq!(st, 404);

    // The feature off.
    let off = key_for(&s, &chat_app("builtin", "echo", false)).await;
    let m = ask(&s, &off, "hi", "alice").await;
    let (st, b) = suggested(&s, &off, &m, "alice").await;
    assert_eq!(
        (st, b["code"].as_str(), b["message"].as_str()),
        (400, Some("bad_request"), Some("Suggested Questions Is Disabled.")),
        "{b}"
    );

    // Completion and workflow apps: not chat apps.
    for app in ["completion-echo.yml", "workflow-template-transform.yml"] {
        let key = key_for(&s, &app_yaml(app)).await;
        let (st, b) = suggested(&s, &key, &message, "alice").await;
        assert_eq!((st, b["code"].as_str()), (400, Some("not_chat_app")), "{app}: {b}");
    }

    // Advanced-chat: its first LLM node's model answers.
    let flow = key_for(&s, &chatflow_app()).await;
    let m = ask(&s, &flow, "hello", "alice").await;
    let (st, b) = suggested(&s, &flow, &m, "alice").await;
    assert_eq!((st, b["data"].clone()), (200, json!(["question1", "question2", "question3"])), "{b}");

    // Asking for suggestions leaves the history as it was.
    let (_, before) = s.call("GET", "/v1/conversations?user=alice", &on, None).await;
    let conversation = before["data"][0]["id"].as_str().unwrap().to_string();
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conversation}&user=alice"), &on, None).await;
    assert_eq!(h["data"].as_array().unwrap().len(), 1);
    assert_eq!(h["data"][0]["answer"], "Tell me about owls");
}

#[tokio::test]
async fn suggestions_from_an_openai_compatible_upstream() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrify.toml");
    std::fs::write(&config, up.config()).unwrap();
    let s = Server::start_in(&dir.path().join("data"), &["--no-demo", "--config", config.to_str().unwrap()]);

    let good = key_for(&s, &chat_app("openai", "questions", true)).await;
    let first = ask(&s, &good, "What is Rust?", "u").await;
    let body = json!({"query": "And Go?", "inputs": {}, "user": "u", "response_mode": "blocking"});
    let conversation = {
        let (_, list) = s.call("GET", "/v1/conversations?user=u", &good, None).await;
        list["data"][0]["id"].as_str().unwrap().to_string()
    };
    let mut body = body;
    body["conversation_id"] = json!(conversation);
    let (_, b) = s.call("POST", "/v1/chat-messages", &good, Some(body)).await;
    let second = b["message_id"].as_str().unwrap().to_string();
    up.reset();
    let (st, b) = suggested(&s, &good, &second, "u").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"], json!(["a?", "b?", "c?"]));
    // One call: the conversation's turns, then the request for three short questions as a JSON array.
    let calls: Vec<Value> = up.requests.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["model"], "questions");
    assert_eq!(calls[0]["temperature"], 0.0);
    assert_eq!(calls[0]["max_tokens"], 256);
    let prompt = calls[0]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_string();
    let answer = crate::common::upstream::answer_of("questions");
    assert!(
        prompt
            .starts_with(&format!("Human: What is Rust?\nAssistant: {answer}\nHuman: And Go?\nAssistant: {answer}\n")),
        "{prompt}"
    );
    assert!(prompt.contains("JSON array") && prompt.contains("20 characters"), "{prompt}");
    // An earlier message works as well.
    let (st, _) = suggested(&s, &good, &first, "u").await;
    assert_eq!(st, 200);

    // An answer without a JSON array: no questions, still a success.
    let garbage = key_for(&s, &chat_app("openai", "garbage", true)).await;
    let m = ask(&s, &garbage, "hi", "u").await;
    let (st, b) = suggested(&s, &garbage, &m, "u").await;
    assert_eq!((st, b), (200, json!({"result": "success", "data": []})));
}

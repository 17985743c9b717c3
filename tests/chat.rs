//! Chat and completion apps over the Service API, black-box: the real binary
//! on loopback, spoken to like a Dify client.

use serde_json::{json, Value};

use crate::common::{client, parse_sse, stream, Server, ADMIN};

fn chat(query: &str, user: &str, conversation: Option<&str>, mode: &str) -> Value {
    json!({"query": query, "inputs": {}, "user": user, "response_mode": mode, "conversation_id": conversation.unwrap_or("")})
}

/// Reads `r` into `body` until its first data frame is complete, and returns that frame.
/// Starts a streamed chat turn in a new conversation.
async fn stream_chat(s: &Server, key: &str, query: &str, user: &str) -> reqwest::Response {
    client()
        .post(s.url("/v1/chat-messages"))
        .bearer_auth(key)
        .json(&chat(query, user, None, "streaming"))
        .send()
        .await
        .unwrap()
}

async fn first_frame(r: &mut reqwest::Response, body: &mut String) -> Value {
    loop {
        // Only whole frames: a chunk may end inside one.
        let complete = body.rfind("\n\n").map_or("", |end| &body[..end + 2]);
        if let Some(frame) = parse_sse(complete).0.into_iter().next() {
            return frame.data;
        }
        let chunk = r.chunk().await.unwrap().expect("stream ended early");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn blocking_and_streaming_chat_with_history() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("hello there", "u1", None, "blocking"))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], "hello there");
    assert_eq!(b["event"], "message");
    assert_eq!(b["mode"], "chat");
    assert_eq!(b["id"], b["message_id"]);
    assert!(b["created_at"].is_i64());
    for f in ["prompt_tokens", "completion_tokens", "total_tokens", "total_price", "currency", "latency"] {
        assert!(b["metadata"]["usage"].get(f).is_some(), "usage lacks {f}");
    }
    assert!(b["metadata"]["usage"]["total_price"].is_string(), "prices are decimal strings");
    // Dify dumps its task metadata whole: the keys that do not apply are null and empty.
    assert!(b["metadata"]["annotation_reply"].is_null() && b["metadata"].get("annotation_reply").is_some(), "{b}");
    assert_eq!(b["metadata"]["retriever_resources"], json!([]));
    let conv = b["conversation_id"].as_str().unwrap().to_string();
    // Only an empty query is refused, as in Dify: blank text is a query.
    let (st, e) = s.call("POST", "/v1/chat-messages", &key, Some(chat("", "u3", None, "blocking"))).await;
    assert_eq!(
        (st, e["code"].as_str(), e["message"].as_str()),
        (400, Some("invalid_param"), Some("query is required"))
    );
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("   ", "u3", None, "blocking"))).await;
    assert_eq!(st, 200, "{b}");
    // A `user` that Python finds false (0, false) is no user; other numbers are one.
    for (user, status) in [(json!(0), 400), (json!(false), 400), (json!(7), 200)] {
        let body = json!({"query": "hi", "inputs": {}, "user": user, "response_mode": "blocking"});
        let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(body)).await;
        assert_eq!(st, status, "user {user}: {b}");
        if status == 400 {
            assert_eq!(b["message"], "Arg user must be provided.");
        }
    }

    // Streaming, as a browser (ids) and as a plain client (data lines only).
    let (st, body, headers) =
        stream(&s, "/v1/chat-messages", &key, chat("second turn words", "u1", Some(&conv), "streaming"), true).await;
    assert_eq!(st, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let (frames, _) = parse_sse(&body);
    let events: Vec<&str> = frames.iter().map(|f| f.data["event"].as_str().unwrap()).collect();
    assert_eq!(events.last(), Some(&"message_end"));
    assert!(events[..events.len() - 1].iter().all(|e| *e == "message"));
    let end = &frames.last().unwrap().data["metadata"];
    assert_eq!(
        end.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["annotation_reply".to_string(), "retriever_resources".to_string(), "usage".to_string()])
    );
    let answer: String = frames.iter().filter_map(|f| f.data["answer"].as_str()).collect();
    assert_eq!(answer, "second turn words");
    let ids: Vec<u64> = frames.iter().map(|f| f.id.expect("id lines when opted in")).collect();
    assert_eq!(ids, (1..=frames.len() as u64).collect::<Vec<_>>());
    for f in &frames {
        assert_eq!(f.data["conversation_id"], conv.as_str());
        assert!(f.data.get("task_id").is_some());
    }
    let (_, body, _) =
        stream(&s, "/v1/chat-messages", &key, chat("plain client", "u2", None, "streaming"), false).await;
    for line in body.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with("data: ") || line == "event: ping", "non-data line without opt-in: {line}");
    }

    // History: both turns, oldest first, of this user only.
    let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u1&limit=20"), &key, None).await;
    assert_eq!(st, 200, "{h}");
    let queries: Vec<&str> = h["data"].as_array().unwrap().iter().map(|m| m["query"].as_str().unwrap()).collect();
    assert_eq!(queries, vec!["hello there", "second turn words"]);
    assert_eq!(h["data"][1]["answer"], "second turn words");
    assert_eq!(h["data"][0]["parent_message_id"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(h["has_more"], false);
    let (_, c) = s.call("GET", "/v1/conversations?user=u1&limit=20", &key, None).await;
    assert_eq!(c["data"].as_array().unwrap().len(), 1);
    assert_eq!(c["data"][0]["id"], conv.as_str());
    assert_eq!(c["data"][0]["introduction"], "Say something and I will say it back.");
}

#[tokio::test]
async fn completion_apps_and_mode_checks() {
    let s = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let ckey = s.app("completion-echo.yml").await;
    let chat_key = s.app("chat-echo.yml").await;
    let (st, b) = s
        .call("POST", "/v1/completion-messages", &ckey, Some(json!({"inputs": {"query": "bonjour"}, "user": "u"})))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], "Translate: bonjour");
    assert_eq!(b["mode"], "completion");
    assert!(b.get("conversation_id").is_none());
    let (st, b) = s.call("POST", "/v1/completion-messages", &ckey, Some(json!({"inputs": {}, "user": "u"}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")));
    assert_eq!(b["message"], "query is required in input form");
    let (st, b) = s
        .call("POST", "/v1/completion-messages", &ckey, Some(json!({"inputs": {"query": "x".repeat(21)}, "user": "u"})))
        .await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = s
        .call(
            "POST",
            "/v1/completion-messages",
            &ckey,
            Some(json!({"inputs": {"query": "a", "tone": "rude"}, "user": "u"})),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    // Streaming completion frames carry no conversation_id.
    let (_, body, _) = stream(
        &s,
        "/v1/completion-messages",
        &ckey,
        json!({"inputs": {"query": "hi"}, "user": "u", "response_mode": "streaming"}),
        false,
    )
    .await;
    let (frames, _) = parse_sse(&body);
    assert_eq!(frames.last().unwrap().data["event"], "message_end");
    assert!(frames.iter().all(|f| f.data.get("conversation_id").is_none()));
    // Wrong routes for the mode.
    let (st, b) = s.call("POST", "/v1/completion-messages", &chat_key, Some(json!({"inputs": {}, "user": "u"}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("app_unavailable")));
    let (st, b) = s.call("POST", "/v1/chat-messages", &ckey, Some(chat("hi", "u", None, "blocking"))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("not_chat_app")));
    let (st, b) = s.call("GET", "/v1/conversations?user=u", &ckey, None).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("not_chat_app")));
    // As Dify: the user is checked first, then the app's mode, then the rest of the request.
    let bad_inputs = json!({"query": "hi", "inputs": "x", "user": "u", "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/completion-messages", &chat_key, Some(bad_inputs.clone())).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("app_unavailable")), "{b}");
    let (st, b) = s.call("POST", "/v1/chat-messages", &ckey, Some(bad_inputs)).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("not_chat_app")), "{b}");
    let (st, b) = s.call("POST", "/v1/chat-messages", &ckey, Some(json!({"query": "hi", "inputs": {}}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let conv = "00000000-0000-4000-8000-000000000000";
    for (method, path, body) in [
        ("GET", "/v1/conversations?user=u&limit=abc".to_string(), None),
        ("GET", format!("/v1/conversations/{conv}/variables?user=u&limit=abc"), None),
        ("POST", format!("/v1/conversations/{conv}/name"), Some(json!({"user": "u"}))),
        ("DELETE", format!("/v1/conversations/{conv}"), Some(json!({"user": "u"}))),
    ] {
        let (st, b) = s.call(method, &path, &ckey, body).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("not_chat_app")), "{method} {path}: {b}");
    }
    // Parameters come from the form.
    let (st, p) = s.call("GET", "/v1/parameters", &ckey, None).await;
    assert_eq!(st, 200);
    assert_eq!(p["user_input_form"][0]["paragraph"]["variable"], "query");
    assert_eq!(p["user_input_form"][1]["select"]["options"], json!(["formal", "casual"]));
    assert_eq!(p["suggested_questions_after_answer"], json!({"enabled": false}));
    assert_eq!(p["system_parameters"]["file_size_limit"], 15);
    let (_, info) = s.call("GET", "/api/info", &ckey, None).await;
    assert_eq!(info["mode"], "completion");
    assert_eq!(info["name"], "Translate");
}

#[tokio::test]
async fn missing_provider_is_provider_not_initialize() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("completion-echo.yml").await;
    let (st, b) =
        s.call("POST", "/v1/completion-messages", &key, Some(json!({"inputs": {"query": "x"}, "user": "u"}))).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("provider_not_initialize")), "{b}");
}

#[tokio::test]
async fn auth_errors_and_key_revocation() {
    let s = Server::start(&["--no-demo"]);
    let app = s.import("chat-echo.yml").await;
    let key = s.key(&app).await;
    let c = client();
    for (header, message) in [
        (None, "Authorization header must be provided and start with 'Bearer'"),
        (Some("Bearer"), "Authorization header must be provided and start with 'Bearer'"),
        (Some("Basic abc"), "Authorization scheme must be 'Bearer'"),
        (Some("Bearer app-nonexistent"), "Access token is invalid"),
    ] {
        let mut req = c.get(s.url("/v1/parameters"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{header:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"api\"");
        let b: Value = r.json().await.unwrap();
        assert_eq!((b["code"].as_str(), b["message"].as_str()), (Some("unauthorized"), Some(message)));
    }
    // Keys are listed masked and revoked at once.
    let r = c.get(s.url(&format!("/console/api/apps/{app}/api-keys"))).bearer_auth(ADMIN).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    let listed = &list["data"][0];
    assert!(!listed["token"].as_str().unwrap().contains(&key[4..20]), "token must be masked");
    let key_id = listed["id"].as_str().unwrap();
    assert_eq!(s.call("GET", "/v1/parameters", &key, None).await.0, 200);
    let r =
        c.delete(s.url(&format!("/console/api/apps/{app}/api-keys/{key_id}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.call("GET", "/v1/parameters", &key, None).await.0, 401);
    // The console needs the admin token.
    let r = c.get(s.url("/console/api/apps")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.get(s.url("/console/api/apps")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn two_apps_two_users_see_only_their_own() {
    let s = Server::start(&["--no-demo"]);
    let (ka, kb) = (s.app("chat-echo.yml").await, s.app("chat-echo.yml").await);
    let (_, b) = s.call("POST", "/v1/chat-messages", &ka, Some(chat("secret of x", "x", None, "blocking"))).await;
    let conv = b["conversation_id"].as_str().unwrap().to_string();
    for (key, user) in [(&kb, "x"), (&ka, "y")] {
        let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user={user}"), key, None).await;
        assert_eq!((st, h["message"].as_str()), (404, Some("Conversation Not Exists.")));
        let (_, c) = s.call("GET", &format!("/v1/conversations?user={user}"), key, None).await;
        assert_eq!(c["data"], json!([]));
        let (st, _) = s.call("DELETE", &format!("/v1/conversations/{conv}"), key, Some(json!({"user": user}))).await;
        assert_eq!(st, 404);
        let (st, _) = s
            .call("POST", &format!("/v1/conversations/{conv}/name"), key, Some(json!({"name": "pwned", "user": user})))
            .await;
        assert_eq!(st, 404);
        let (st, _) = s.call("GET", &format!("/v1/conversations/{conv}/variables?user={user}"), key, None).await;
        assert_eq!(st, 404);
        // Continuing someone else's conversation is refused.
        let (st, _) = s.call("POST", "/v1/chat-messages", key, Some(chat("hi", user, Some(&conv), "blocking"))).await;
        assert_eq!(st, 404);
    }
    let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=x"), &ka, None).await;
    assert_eq!(st, 200);
    assert_eq!(h["data"][0]["query"], "secret of x");
    // The owner renames and deletes.
    let (st, r) = s
        .call("POST", &format!("/v1/conversations/{conv}/name"), &ka, Some(json!({"name": "mine", "user": "x"})))
        .await;
    assert_eq!((st, r["name"].as_str()), (200, Some("mine")));
    let (st, _) = s.call("DELETE", &format!("/v1/conversations/{conv}"), &ka, Some(json!({"user": "x"}))).await;
    assert_eq!(st, 204);
    let (_, c) = s.call("GET", "/v1/conversations?user=x", &ka, None).await;
    assert_eq!(c["data"], json!([]));
}

#[tokio::test]
async fn stop_in_the_middle_of_a_stream() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-lorem.yml").await;
    let mut r = stream_chat(&s, &key, "go", "u").await;
    let mut body = String::new();
    let task = first_frame(&mut r, &mut body).await["task_id"].as_str().unwrap().to_string();
    // Another user cannot stop it (and is still told success).
    let (st, b) = s.call("POST", &format!("/v1/chat-messages/{task}/stop"), &key, Some(json!({"user": "other"}))).await;
    assert_eq!((st, b), (200, json!({"result": "success"})));
    let (st, _) = s.call("POST", &format!("/v1/chat-messages/{task}/stop"), &key, Some(json!({"user": "u"}))).await;
    assert_eq!(st, 200);
    while let Some(chunk) = r.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let (frames, _) = parse_sse(&body);
    let last = &frames.last().unwrap().data;
    assert_eq!(last["event"], "message_end");
    let answer: String = frames.iter().filter_map(|f| f.data["answer"].as_str()).collect();
    let words = answer.split_whitespace().count();
    assert!(words > 0 && words < 200, "stopped after {words} words");
    // The partial answer is stored.
    let conv = last["conversation_id"].as_str().unwrap();
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u"), &key, None).await;
    assert_eq!(h["data"][0]["answer"], answer.as_str());
    let (st, _) = s.call("POST", "/v1/chat-messages/not-a-task/stop", &key, Some(json!({"user": "u"}))).await;
    assert_eq!(st, 200);
    let (st, b) = s.call("POST", &format!("/v1/chat-messages/{task}/stop"), &key, Some(json!({}))).await;
    assert_eq!((st, b["message"].as_str()), (400, Some("Arg user must be provided.")));
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_stop_the_run() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-lorem.yml").await;
    let r = stream_chat(&s, &key, "go", "u").await;
    drop(r);
    // The answer is completed and stored: 200 words at 10 ms.
    let mut answer = String::new();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (_, c) = s.call("GET", "/v1/conversations?user=u", &key, None).await;
        let Some(conv) = c["data"][0]["id"].as_str() else { continue };
        let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u"), &key, None).await;
        answer = h["data"][0]["answer"].as_str().unwrap_or("").to_string();
        if answer.split_whitespace().count() == 200 {
            break;
        }
    }
    assert_eq!(answer.split_whitespace().count(), 200);
}

#[tokio::test]
async fn a_streamed_turn_names_its_conversation_while_the_answer_streams() {
    // As Dify's title thread: the name is asked for alongside the answer, not after it.
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-lorem.yml").await;
    let mut r = stream_chat(&s, &key, "name me", "u").await;
    let mut body = String::new();
    let conv = first_frame(&mut r, &mut body).await["conversation_id"].as_str().unwrap().to_string();
    // 200 words 10 ms apart: the answer streams for about 2 s.
    let mut named_while_streaming = None;
    for _ in 0..100 {
        let (_, c) = s.call("GET", "/v1/conversations?user=u", &key, None).await;
        let name = c["data"][0]["name"].as_str().unwrap_or("").to_string();
        let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u"), &key, None).await;
        let words = h["data"][0]["answer"].as_str().unwrap_or("").split_whitespace().count();
        if name != "New conversation" {
            named_while_streaming = Some((name, words));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (name, words) = named_while_streaming.expect("the conversation was never named");
    assert!(!name.is_empty());
    assert!(words < 200, "named only once the answer was complete ({words} words)");
    while let Some(chunk) = r.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let (frames, _) = parse_sse(&body);
    assert_eq!(frames.last().unwrap().data["event"], "message_end");
    let (_, c) = s.call("GET", "/v1/conversations?user=u", &key, None).await;
    assert_eq!(c["data"][0]["name"], name.as_str(), "the name stays");
}

#[tokio::test]
async fn pages_of_history_and_conversations() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("m0", "p", None, "blocking"))).await;
    let conv = b["conversation_id"].as_str().unwrap().to_string();
    for i in 1..75 {
        let (st, _) =
            s.call("POST", "/v1/chat-messages", &key, Some(chat(&format!("m{i}"), "p", Some(&conv), "blocking"))).await;
        assert_eq!(st, 200);
    }
    // Page backwards with first_id: 3 pages of 25.
    let mut first_id: Option<String> = None;
    let mut seen = Vec::new();
    for page in 0..3 {
        let mut path = format!("/v1/messages?conversation_id={conv}&user=p&limit=25");
        if let Some(f) = &first_id {
            path.push_str(&format!("&first_id={f}"));
        }
        let (st, h) = s.call("GET", &path, &key, None).await;
        assert_eq!(st, 200, "{h}");
        let data = h["data"].as_array().unwrap();
        assert_eq!(data.len(), 25);
        assert_eq!(h["has_more"], page < 2, "page {page}");
        let q: Vec<String> = data.iter().map(|m| m["query"].as_str().unwrap().to_string()).collect();
        seen.splice(0..0, q);
        first_id = Some(data[0]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, (0..75).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let (st, b) = s
        .call(
            "GET",
            &format!("/v1/messages?conversation_id={conv}&user=p&first_id={}", uuid::Uuid::new_v4()),
            &key,
            None,
        )
        .await;
    assert_eq!((st, b["message"].as_str()), (404, Some("First Message Not Exists.")));
    // `conversation_id` is required; sent empty, it names no conversation.
    let (st, b) = s.call("GET", "/v1/messages?user=p", &key, None).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = s.call("GET", "/v1/messages?user=p&conversation_id=", &key, None).await;
    assert_eq!((st, &b["data"]), (200, &json!([])), "{b}");

    // Conversations: newest first by default; last_id cursor.
    for i in 0..5 {
        let (_, _) = s
            .call(
                "POST",
                "/v1/chat-messages",
                &key,
                Some(json!({"query": format!("c{i}"), "inputs": {}, "user": "p", "auto_generate_name": false})),
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let (_, c) = s.call("GET", "/v1/conversations?user=p&limit=2", &key, None).await;
    assert_eq!(c["data"].as_array().unwrap().len(), 2);
    assert_eq!(c["has_more"], true);
    assert_eq!(c["data"][0]["name"], "New conversation");
    let last = c["data"][1]["id"].as_str().unwrap();
    let (_, c2) = s.call("GET", &format!("/v1/conversations?user=p&limit=10&last_id={last}"), &key, None).await;
    assert_eq!(c2["data"].as_array().unwrap().len(), 4, "{c2}");
    assert_eq!(c2["has_more"], false);
    let (_, asc) = s.call("GET", "/v1/conversations?user=p&limit=10&sort_by=created_at", &key, None).await;
    assert_eq!(asc["data"][0]["id"], conv.as_str());
}

#[tokio::test]
async fn lenient_and_strict_input() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let (st, b) = s
        .call(
            "POST",
            "/v1/chat-messages",
            &key,
            Some(json!({"query": "hi", "inputs": {}, "user": "u", "files": null, "conversation_id": "", "unknown": 1})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, _) = s.call("GET", "/v1/conversations?user=u&last_id=&limit=", &key, None).await;
    assert_eq!(st, 200);
    let r = client()
        .get(s.url("/v1/conversations?user=u"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cases = [
        (json!({"query": "hi", "inputs": {}, "user": "u", "conversation_id": "nope"}), 400, "invalid_param"),
        (
            json!({"query": "hi", "inputs": {}, "user": "u", "conversation_id": uuid::Uuid::new_v4().to_string()}),
            404,
            "not_found",
        ),
        (json!({"query": "hi", "inputs": {}}), 400, "invalid_param"),
        (json!({"query": "", "inputs": {}, "user": "u"}), 400, "invalid_param"),
        (json!({"query": "hi", "inputs": [], "user": "u"}), 400, "invalid_param"),
        (json!({"query": "hi", "inputs": {}, "user": "u", "response_mode": "fast"}), 400, "invalid_param"),
        (json!({"query": "hi", "inputs": {}, "user": "u", "files": ["a"]}), 400, "invalid_param"),
        (json!({"query": "hi", "inputs": {}, "user": "u", "auto_generate_name": "maybe"}), 400, "invalid_param"),
    ];
    for (body, status, code) in cases {
        let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(body.clone())).await;
        assert_eq!((st, b["code"].as_str()), (status, Some(code)), "{body} → {b}");
    }
    let r = client()
        .post(s.url("/v1/chat-messages"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for q in ["limit=0", "limit=101", "limit=abc", "sort_by=name", "last_id=zzz"] {
        let (st, b) = s.call("GET", &format!("/v1/conversations?user=u&{q}"), &key, None).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{q}");
    }
    // Nothing stored changed: still one conversation.
    let (_, c) = s.call("GET", "/v1/conversations?user=u", &key, None).await;
    assert_eq!(c["data"].as_array().unwrap().len(), 1);
    // Chat apps ignore `workflow_id`, whatever it holds (only chatflows read it).
    let body = json!({"query": "hi", "inputs": {}, "user": "w", "response_mode": "blocking", "workflow_id": "abc"});
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(body)).await;
    assert_eq!(st, 200, "{b}");
    // Booleans as Dify reads them: "no" leaves a new conversation unnamed.
    let body =
        json!({"query": "hi", "inputs": {}, "user": "v", "response_mode": "blocking", "auto_generate_name": "no"});
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(body)).await;
    assert_eq!(st, 200, "{b}");
    let (_, c) = s.call("GET", "/v1/conversations?user=v", &key, None).await;
    assert_eq!(c["data"][0]["name"], "New conversation");
}

/// The answer is stored as Dify stores it: trimmed, its `{{placeholders}}`
/// turned into `{placeholders}`; the response itself carries it as the model gave it.
#[tokio::test]
async fn answers_are_stored_trimmed_without_placeholders() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let query = "  say {{name}} and {{ two }}  ";
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat(query, "u", None, "blocking"))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], query);
    let conv = b["conversation_id"].as_str().unwrap();
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u"), &key, None).await;
    assert_eq!(h["data"][0]["query"], query);
    assert_eq!(h["data"][0]["answer"], "say {name} and {{ two }}");
}

#[tokio::test]
async fn concurrent_turns_of_one_conversation_stay_in_order() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let (_, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("first", "u", None, "blocking"))).await;
    let conv = b["conversation_id"].as_str().unwrap().to_string();
    let mut handles = Vec::new();
    for i in 0..8 {
        let (url, key, conv) = (s.url("/v1/chat-messages"), key.clone(), conv.clone());
        handles.push(tokio::spawn(async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .json(&chat(&format!("turn {i}"), "u", Some(&conv), "blocking"))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 200);
    }
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u&limit=100"), &key, None).await;
    let data = h["data"].as_array().unwrap();
    assert_eq!(data.len(), 9);
    for m in data {
        assert_eq!(m["answer"], m["query"], "each turn answered on its own");
        assert_eq!(m["status"], "normal");
    }
}

/// A turn sent while another turn of its conversation runs waits for it. Its
/// client may give up meanwhile: the turn still runs once the other ends, and
/// is answered and stored (chat and chatflow apps).
#[tokio::test]
async fn a_turn_waiting_for_its_conversation_is_kept_when_its_client_leaves() {
    let s = Server::start(&["--no-demo"]);
    for app in ["chat-lorem.yml", "chatflow-lorem.yml"] {
        let key = s.app(app).await;
        let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(chat("first", "u", None, "blocking"))).await;
        assert_eq!(st, 200, "{app}: {b}");
        let conv = b["conversation_id"].as_str().unwrap().to_string();
        // A second turn streams for about 2 s; its first frame shows that it runs.
        let mut running = client()
            .post(s.url("/v1/chat-messages"))
            .bearer_auth(&key)
            .json(&chat("second", "u", Some(&conv), "streaming"))
            .send()
            .await
            .unwrap();
        assert_eq!(running.status(), 200);
        first_frame(&mut running, &mut String::new()).await;
        // A third turn's client gives up after 300 ms, long before the second turn ends.
        let gave_up = client()
            .post(s.url("/v1/chat-messages"))
            .bearer_auth(&key)
            .timeout(std::time::Duration::from_millis(300))
            .json(&chat("third", "u", Some(&conv), "streaming"))
            .send()
            .await;
        drop(gave_up);
        // A fourth turn, sent after the third, waits behind it.
        let fourth = {
            let (url, key, conv) = (s.url("/v1/chat-messages"), key.clone(), conv.clone());
            tokio::spawn(async move {
                let r = client().post(url).bearer_auth(key).json(&chat("fourth", "u", Some(&conv), "blocking")).send();
                r.await.unwrap().status().as_u16()
            })
        };
        while running.chunk().await.unwrap().is_some() {}
        assert_eq!(fourth.await.unwrap(), 200, "{app}");
        // The third turn is answered after the second, the fourth after it: in the order they came.
        let mut queries = Vec::new();
        for _ in 0..100 {
            let (_, h) =
                s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u&limit=10"), &key, None).await;
            let data = h["data"].as_array().unwrap().clone();
            queries = data.iter().map(|m| m["query"].as_str().unwrap_or_default().to_string()).collect();
            if queries.len() == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            queries,
            ["first", "second", "third", "fourth"],
            "{app}: the third turn was not answered and stored"
        );
        let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u&limit=10"), &key, None).await;
        for m in h["data"].as_array().unwrap() {
            assert_eq!(m["status"], "normal", "{app}: {m}");
            assert_eq!(m["answer"].as_str().unwrap().split(' ').count(), 200, "{app}: {m}");
        }
    }
}

#[tokio::test]
async fn long_streams_carry_bare_ping_frames() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-slow.yml").await;
    let (st, body, _) = stream(&s, "/v1/chat-messages", &key, chat("go", "u", None, "streaming"), false).await;
    assert_eq!(st, 200);
    assert!(
        body.contains("\n\nevent: ping\n\n") || body.starts_with("event: ping\n\n"),
        "no bare ping frame in an 11 s stream"
    );
    let (frames, pings) = parse_sse(&body);
    assert!(pings >= 1);
    assert_eq!(frames.last().unwrap().data["event"], "message_end");
    assert_eq!(frames.iter().filter(|f| f.data["event"] == "message").count(), 45);
}

//! Workflow and advanced-chat apps over the Service API, black-box: the
//! real binary on loopback. Golden SSE transcripts (ids and times
//! normalised) live in `tests/golden/`; `UPDATE_GOLDENFILES=1` rewrites them.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::common::{app_yaml, client, parse_sse, stream, Server, ADMIN};

/// Replaces UUIDs by `<id N>` (in order of first appearance) and times by 0,
/// so a transcript compares across runs.
fn normalise(frames: &[Value]) -> String {
    fn walk(v: &mut Value, ids: &mut HashMap<String, usize>) {
        match v {
            Value::String(s) if uuid::Uuid::parse_str(s).is_ok() && s.len() == 36 => {
                let n = ids.len() + 1;
                let n = *ids.entry(s.clone()).or_insert(n);
                *s = format!("<id {n}>");
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, ids)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let timing = matches!(
                        k.as_str(),
                        "created_at"
                            | "finished_at"
                            | "elapsed_time"
                            | "latency"
                            | "time_to_first_token"
                            | "time_to_generate"
                    );
                    if timing && !x.is_null() {
                        *x = json!(0);
                    } else {
                        walk(x, ids);
                    }
                }
            }
            _ => {}
        }
    }
    let mut ids = HashMap::new();
    let mut out = String::new();
    for f in frames {
        let mut f = f.clone();
        walk(&mut f, &mut ids);
        out.push_str(&f.to_string());
        out.push('\n');
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        std::fs::create_dir_all(format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"))).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (UPDATE_GOLDENFILES=1 writes it)"));
    assert_eq!(actual, expected, "transcript {name} changed");
}

async fn frames(s: &Server, path: &str, key: &str, body: Value) -> Vec<Value> {
    let (st, text, headers) = stream(s, path, key, body, false).await;
    assert_eq!(st, 200, "{text}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    parse_sse(&text).0.into_iter().map(|f| f.data).collect()
}

#[tokio::test]
async fn example_streams_match_their_golden_transcripts() {
    let s = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let key = s.app("workflow-template-transform.yml").await;
    let wf = frames(
        &s,
        "/v1/workflows/run",
        &key,
        json!({"inputs": {"name": "Ada", "style": "formal"}, "user": "u1", "response_mode": "streaming"}),
    )
    .await;
    golden("workflow-template-transform.sse", &normalise(&wf));

    let key = s.app("chatflow-llm-memory.yml").await;
    let chat = frames(
        &s,
        "/v1/chat-messages",
        &key,
        json!({"query": "My name is Ada.", "inputs": {}, "user": "u1", "response_mode": "streaming"}),
    )
    .await;
    golden("chatflow-llm-memory.sse", &normalise(&chat));
}

#[tokio::test]
async fn workflow_endpoints_run_detail_logs_versions_and_modes() {
    let s = Server::start(&["--no-demo"]);
    let app_id = s.import("workflow-template-transform.yml").await;
    let key = s.key(&app_id).await;
    let (st, b) =
        s.call("POST", "/v1/workflows/run", &key, Some(json!({"inputs": {"name": "Ada"}, "user": "u1"}))).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"]["outputs"]["greeting"], "Hi Ada!");
    let run_id = b["workflow_run_id"].as_str().unwrap().to_string();
    let first_version = b["data"]["workflow_id"].as_str().unwrap().to_string();

    let (st, d) = s.call("GET", &format!("/v1/workflows/run/{run_id}"), &key, None).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["status"], "succeeded");
    let inputs: Value = serde_json::from_str(d["inputs"].as_str().expect("inputs is JSON text")).unwrap();
    assert_eq!(inputs["name"], "Ada");
    assert_eq!(inputs["sys.user_id"], "u1");
    assert_eq!(d["outputs"]["greeting"], "Hi Ada!");
    assert!(d["finished_at"].is_i64());
    let (st, e) = s.call("GET", &format!("/v1/workflows/run/{}", uuid::Uuid::new_v4()), &key, None).await;
    assert_eq!((st, e["code"].as_str()), (404, Some("not_found")));

    // A second run by another user, then the logs.
    s.call("POST", "/v1/workflows/run", &key, Some(json!({"inputs": {"name": "Bo"}, "user": "u2"}))).await;
    let (st, logs) = s.call("GET", "/v1/workflows/logs?limit=1", &key, None).await;
    assert_eq!(st, 200, "{logs}");
    assert_eq!((logs["total"].as_u64(), logs["has_more"].as_bool()), (Some(2), Some(true)));
    assert_eq!(logs["data"][0]["created_by_end_user"]["session_id"], "u2", "newest first");
    assert_eq!(logs["data"][0]["workflow_run"]["status"], "succeeded");
    let (_, logs) = s.call("GET", "/v1/workflows/logs?keyword=Ada&status=succeeded", &key, None).await;
    assert_eq!(logs["total"], 1);
    let (_, logs) = s.call("GET", "/v1/workflows/logs?created_by_end_user_session_id=u1", &key, None).await;
    assert_eq!(logs["data"][0]["workflow_run"]["id"], run_id.as_str());
    let (_, logs) = s.call("GET", "/v1/workflows/logs?created_at__before=2000-01-01T00:00:00Z", &key, None).await;
    assert_eq!(logs["total"], 0);
    for bad in ["page=0", "limit=101", "status=weird", "created_at__after=yesterday"] {
        let (st, e) = s.call("GET", &format!("/v1/workflows/logs?{bad}"), &key, None).await;
        assert_eq!((st, e["code"].as_str()), (400, Some("invalid_param")), "{bad}");
    }

    // Publish a new version; the latest runs by default, the first one by id.
    let mut doc: Value = serde_json::to_value(
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&app_yaml("workflow-template-transform.yml")).unwrap(),
    )
    .unwrap();
    let graph = &mut doc["workflow"]["graph"];
    for n in graph["nodes"].as_array_mut().unwrap() {
        if n["data"]["type"] == "template-transform" {
            n["data"]["template"] = json!("Version two, {{ name }}.");
        }
        if n["data"]["type"] == "start" {
            let vars = n["data"]["variables"].as_array_mut().unwrap();
            vars.push(json!({"variable": "extra", "label": "Extra", "type": "text-input", "required": false}));
        }
    }
    let r = client()
        .post(s.url(&format!("/console/api/apps/{app_id}/workflows/publish")))
        .bearer_auth(ADMIN)
        .json(&json!({"graph": doc["workflow"]["graph"], "features": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let published: Value = r.json().await.unwrap();
    let (_, params) = s.call("GET", "/v1/parameters", &key, None).await;
    let form = params["user_input_form"].as_array().unwrap();
    assert_eq!(
        form.last().unwrap()["text-input"]["variable"],
        "extra",
        "/parameters shows the latest version: {params}"
    );
    let second_version = published["workflow_id"].as_str().unwrap();
    let (_, b) = s.call("POST", "/v1/workflows/run", &key, Some(json!({"inputs": {"name": "Cy"}, "user": "u1"}))).await;
    assert_eq!(b["data"]["outputs"]["greeting"], "Version two, Cy.");
    assert_eq!(b["data"]["workflow_id"], second_version);
    let (st, b) = s
        .call(
            "POST",
            &format!("/v1/workflows/{first_version}/run"),
            &key,
            Some(json!({"inputs": {"name": "Cy"}, "user": "u1"})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"]["outputs"]["greeting"], "Hi Cy!");
    let (st, e) = s.call("POST", "/v1/workflows/not-a-uuid/run", &key, Some(json!({"inputs": {}, "user": "u1"}))).await;
    assert_eq!((st, e["code"].as_str()), (400, Some("bad_request")));
    let (st, e) = s
        .call(
            "POST",
            &format!("/v1/workflows/{}/run", uuid::Uuid::new_v4()),
            &key,
            Some(json!({"inputs": {}, "user": "u1"})),
        )
        .await;
    assert_eq!((st, e["code"].as_str()), (404, Some("not_found")));
    // A graph that does not compile is refused at publish.
    let r = client()
        .post(s.url(&format!("/console/api/apps/{app_id}/workflows/publish")))
        .bearer_auth(ADMIN)
        .json(&json!({"graph": {"nodes": [], "edges": []}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Route/mode checks.
    let chat_key = s.app("chat-echo.yml").await;
    let (st, e) = s.call("POST", "/v1/workflows/run", &chat_key, Some(json!({"inputs": {}, "user": "u"}))).await;
    assert_eq!((st, e["code"].as_str()), (400, Some("not_workflow_app")));
    let (st, e) =
        s.call("POST", "/v1/chat-messages", &key, Some(json!({"query": "x", "inputs": {}, "user": "u"}))).await;
    assert_eq!((st, e["code"].as_str()), (400, Some("not_chat_app")));
    let (st, e) = s.call("POST", "/v1/workflows/run", &key, Some(json!({"inputs": {"name": 5}, "user": "u"}))).await;
    assert_eq!((st, e["code"].as_str()), (400, Some("invalid_param")));
    assert!(e["message"].as_str().unwrap().contains("name"));
}

/// A chatflow turn runs the published version its `workflow_id` names (the
/// latest without one); a malformed id, an unknown one and another app's are refused.
#[tokio::test]
async fn chatflow_turns_run_the_version_they_name() {
    let s = Server::start(&["--no-demo"]);
    let chatflow = |word: &str| {
        format!(
            "app: {{mode: advanced-chat, name: versions}}\nworkflow:\n  graph:\n    nodes:\n    - {{id: start, data: {{type: start, title: Start, variables: []}}}}\n    - {{id: answer, data: {{type: answer, title: Answer, answer: '{word} {{{{#sys.query#}}}}'}}}}\n    edges:\n    - {{source: start, target: answer}}\n"
        )
    };
    let app_id = s.import_yaml(&chatflow("one")).await;
    let key = s.key(&app_id).await;
    let turn = |workflow_id: Value| json!({"query": "hi", "inputs": {}, "user": "u", "workflow_id": workflow_id});
    let started = frames(
        &s,
        "/v1/chat-messages",
        &key,
        json!({"query": "hi", "inputs": {}, "user": "u", "response_mode": "streaming"}),
    )
    .await;
    let first = started[0]["data"]["workflow_id"].as_str().unwrap().to_string();
    let r = client()
        .post(s.url(&format!("/console/api/apps/{app_id}/workflows/publish")))
        .bearer_auth(ADMIN)
        .json(&json!({"yaml_content": chatflow("two")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(turn(Value::Null))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("two hi")), "{b}");
    let (st, b) = s.call("POST", "/v1/chat-messages", &key, Some(turn(json!(first)))).await;
    assert_eq!((st, b["answer"].as_str()), (200, Some("one hi")), "{b}");
    let (st, e) = s.call("POST", "/v1/chat-messages", &key, Some(turn(json!("abc")))).await;
    assert_eq!(
        (st, e["code"].as_str(), e["message"].as_str()),
        (400, Some("bad_request"), Some("Invalid workflow_id format: 'abc'"))
    );
    let unknown = uuid::Uuid::new_v4();
    let (st, e) = s.call("POST", "/v1/chat-messages", &key, Some(turn(json!(unknown)))).await;
    assert_eq!((st, e["code"].as_str()), (404, Some("not_found")));
    assert_eq!(e["message"], format!("Workflow not found with id: {unknown}"));
    // Another app's version is not this app's, even once it has run.
    let other = s.import_yaml(&chatflow("other")).await;
    let other_key = s.key(&other).await;
    let started = frames(
        &s,
        "/v1/chat-messages",
        &other_key,
        json!({"query": "hi", "inputs": {}, "user": "u", "response_mode": "streaming"}),
    )
    .await;
    let theirs = started[0]["data"]["workflow_id"].as_str().unwrap().to_string();
    let (st, e) = s.call("POST", "/v1/chat-messages", &key, Some(turn(json!(theirs)))).await;
    assert_eq!((st, e["code"].as_str()), (404, Some("not_found")), "{e}");
}

#[tokio::test]
async fn a_stop_answered_success_really_stops_the_run() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("workflow-slow.yml").await;
    let mut r = client()
        .post(s.url("/v1/workflows/run"))
        .bearer_auth(&key)
        .json(&json!({"inputs": {}, "user": "u1", "response_mode": "streaming"}))
        .send()
        .await
        .unwrap();
    // Read until the first text chunk: the run is under way, and the frames name the task.
    let mut text = String::new();
    while !text.contains("text_chunk") {
        let chunk = r.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let first: Value = serde_json::from_str(text.lines().next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    let (task_id, run_id) =
        (first["task_id"].as_str().unwrap(), first["workflow_run_id"].as_str().unwrap().to_string());
    let (_, d) = s.call("GET", &format!("/v1/workflows/run/{run_id}"), &key, None).await;
    assert_eq!(d["status"], "running");
    // Any user of the app may stop a workflow run (Dify does not check the owner).
    let (st, b) =
        s.call("POST", &format!("/v1/workflows/tasks/{task_id}/stop"), &key, Some(json!({"user": "someone"}))).await;
    assert_eq!((st, b["result"].as_str()), (200, Some("success")));
    let rest = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        while let Some(chunk) = r.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream ended after the stop");
    let frames: Vec<Value> = parse_sse(&text).0.into_iter().map(|f| f.data).collect();
    let last = frames.last().unwrap();
    assert_eq!(last["event"], "workflow_finished");
    assert_eq!(last["data"]["status"], "stopped");
    let words: usize = frames.iter().filter(|f| f["event"] == "text_chunk").count();
    assert!(words < 400, "stopped before the model finished ({words} chunks)");
    let (_, d) = s.call("GET", &format!("/v1/workflows/run/{run_id}"), &key, None).await;
    assert_eq!(d["status"], "stopped");
}

#[tokio::test]
async fn chatflow_turns_over_http_keep_conversation_variables() {
    let s = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let key = s.app("chatflow-llm-memory.yml").await;
    let (st, b) = s
        .call("POST", "/v1/chat-messages", &key, Some(json!({"query": "My name is Ada.", "inputs": {}, "user": "u1"})))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["answer"], "My name is Ada.");
    let conv = b["conversation_id"].as_str().unwrap().to_string();
    let chat = frames(&s, "/v1/chat-messages", &key, json!({"query": "What is my name?", "inputs": {}, "user": "u1", "conversation_id": conv, "response_mode": "streaming"})).await;
    let names: Vec<&str> = chat.iter().map(|f| f["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"workflow_started"));
    assert_eq!(&names[names.len() - 2..], ["workflow_finished", "message_end"]);
    // As Dify: a turn's usage times its answer, streamed or blocking.
    for usage in [&chat.last().unwrap()["metadata"]["usage"], &b["metadata"]["usage"]] {
        assert!(usage["time_to_first_token"].as_f64().is_some_and(|t| t >= 0.0), "{usage}");
        assert!(usage["time_to_generate"].as_f64().is_some_and(|t| t >= 0.0), "{usage}");
    }
    let msg = chat.iter().find(|f| f["event"] == "message").unwrap();
    for k in ["conversation_id", "message_id", "created_at", "task_id", "id", "answer"] {
        assert!(msg.get(k).is_some(), "message frame lacks {k}");
    }
    let node = chat.iter().find(|f| f["event"] == "node_started").unwrap();
    for k in ["conversation_id", "message_id", "workflow_run_id", "task_id", "data"] {
        assert!(node.get(k).is_some(), "node_started frame lacks {k}");
    }
    let (st, vars) = s.call("GET", &format!("/v1/conversations/{conv}/variables?user=u1"), &key, None).await;
    assert_eq!(st, 200, "{vars}");
    assert_eq!(vars["data"][0]["name"], "turns");
    assert_eq!(vars["data"][0]["value"], "2");
    // The new conversation was named from its first query by the app's model
    // (here echo, which answers with the query), as chat apps' are.
    let mut named = Value::Null;
    for _ in 0..100 {
        let (_, list) = s.call("GET", "/v1/conversations?user=u1", &key, None).await;
        named = list["data"][0]["name"].clone();
        if named != "New conversation" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(named, "My name is Ada.");
    let rename = json!({"auto_generate": true, "user": "u1"});
    let (st, renamed) = s.call("POST", &format!("/v1/conversations/{conv}/name"), &key, Some(rename)).await;
    assert_eq!((st, &renamed["name"]), (200, &json!("My name is Ada.")), "{renamed}");
    // Filters and paging as Dify's: a name filter that matches part of the
    // name, any case; `last_id` keeps what was created after that variable.
    let vars_with = |query: &str| format!("/v1/conversations/{conv}/variables?user=u1&{query}");
    let (_, by_name) = s.call("GET", &vars_with("variable_name=TUR"), &key, None).await;
    assert_eq!(by_name["data"][0]["name"], "turns", "{by_name}");
    let (_, none) = s.call("GET", &vars_with("variable_name=topic"), &key, None).await;
    assert_eq!(none["data"], json!([]), "{none}");
    let var_id = vars["data"][0]["id"].as_str().unwrap();
    let (st, after) = s.call("GET", &vars_with(&format!("last_id={var_id}")), &key, None).await;
    assert_eq!((st, &after["data"], &after["has_more"]), (200, &json!([]), &json!(false)), "{after}");
    let unknown = uuid::Uuid::new_v4();
    let (st, e) = s.call("GET", &vars_with(&format!("last_id={unknown}")), &key, None).await;
    assert_eq!((st, e["code"].as_str(), e["message"].as_str()), (400, Some("invalid_param"), Some("")), "{e}");
    for (bad, message) in [
        ("variable_name=sp_x", "Variable name contains invalid characters: sp_"),
        (
            "variable_name=a%20b",
            "Variable name can only contain letters, numbers, hyphens (-), underscores (_), and periods (.)",
        ),
        ("last_id=xyz", "last_id must be a valid UUID"),
    ] {
        let (st, e) = s.call("GET", &vars_with(bad), &key, None).await;
        assert_eq!(
            (st, e["code"].as_str(), e["message"].as_str()),
            (400, Some("invalid_param"), Some(message)),
            "{bad}"
        );
    }
    let (_, msgs) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u1"), &key, None).await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 2);
    assert_eq!(msgs["data"][1]["answer"], "What is my name?");
    // The run behind a chatflow turn is readable.
    let run_id = chat[0]["workflow_run_id"].as_str().unwrap();
    let (st, d) = s.call("GET", &format!("/v1/workflows/run/{run_id}"), &key, None).await;
    assert_eq!((st, d["status"].as_str()), (200, Some("succeeded")));
}

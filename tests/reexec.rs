//! Re-execution, black-box: `POST /console/api/runs/{task_id}/reexecute` on
//! the running server, then `ferrify replay … --reexecute` on its data
//! directory once it stopped.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::{app_yaml, binary, client, parse_sse, stream, Server, ADMIN};

async fn reexecute(s: &Server, task: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().post(s.url(&format!("/console/api/runs/{task}/reexecute{query}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn replay(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary()).arg("replay").args(args).env("RUST_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn reexecution_over_the_admin_api_and_the_command_line() {
    let mut s = Server::start(&["--model-override", "builtin/echo", "--no-demo"]);
    let app_id = s.import("workflow-template-transform.yml").await;
    let key = s.key(&app_id).await;
    let body = json!({"inputs": {"name": "Ada", "style": "formal"}, "user": "u1", "response_mode": "blocking"});
    let (st, b) = s.call("POST", "/v1/workflows/run", &key, Some(body)).await;
    assert_eq!(st, 200, "{b}");
    let task = b["task_id"].as_str().unwrap().to_string();

    let (st, r) = reexecute(&s, &task, "", Some(ADMIN)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["task_id"], task.as_str());
    assert_eq!(r["identical"], true, "{r}");
    assert!(r["frames"].as_u64().unwrap() >= 6, "{r}");
    assert_eq!(r["divergence"], Value::Null);

    // A chatflow turn streamed through an LLM (answered from the log), in a conversation.
    let chat_key = s.app("chatflow-llm-memory.yml").await;
    let mut conversation = String::new();
    let mut chat_tasks = Vec::new();
    for q in ["My name is Ada.", "What is my name?"] {
        let body = json!({"query": q, "inputs": {}, "user": "u2", "response_mode": "streaming", "conversation_id": conversation});
        let (st, text, _) = stream(&s, "/v1/chat-messages", &chat_key, body, false).await;
        assert_eq!(st, 200);
        let (frames, _) = parse_sse(&text);
        let first = &frames[0].data;
        conversation = first["conversation_id"].as_str().unwrap().to_string();
        chat_tasks.push(first["task_id"].as_str().unwrap().to_string());
    }
    for t in &chat_tasks {
        let (st, r) = reexecute(&s, t, "", Some(ADMIN)).await;
        assert_eq!((st, &r["identical"]), (200, &json!(true)), "{r}");
    }

    // Bad input.
    let (st, r) = reexecute(&s, "00000000-0000-4000-8000-000000000000", "", Some(ADMIN)).await;
    assert_eq!((st, r["code"].as_str()), (404, Some("not_found")), "{r}");
    let (st, _) = reexecute(&s, "not-a-task", "", Some(ADMIN)).await;
    assert_eq!(st, 404);
    let (st, _) = reexecute(&s, &task, "", None).await;
    assert_eq!(st, 401);
    let (st, r) = reexecute(&s, &task, "?workflow_id=nope", Some(ADMIN)).await;
    assert_eq!((st, r["code"].as_str()), (400, Some("invalid_param")), "{r}");
    let (st, r) = reexecute(&s, &task, "?workflow_id=00000000-0000-4000-8000-000000000000", Some(ADMIN)).await;
    assert_eq!(st, 404, "{r}");

    // Against a changed version: the divergence names the changed node.
    let yaml = app_yaml("workflow-template-transform.yml").replace("Good day, {{ name }}.", "Welcome, {{ name }}.");
    let r = client()
        .post(s.url(&format!("/console/api/apps/{app_id}/workflows/publish")))
        .bearer_auth(ADMIN)
        .json(&json!({"yaml_content": yaml}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v2 = r.json::<Value>().await.unwrap()["workflow_id"].as_str().unwrap().to_string();
    let (st, r) = reexecute(&s, &task, &format!("?workflow_id={v2}"), Some(ADMIN)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["identical"], false);
    assert_eq!(r["workflow_id"], v2.as_str());
    let d = &r["divergence"];
    assert_eq!((d["node_id"].as_str(), d["event"].as_str()), (Some("greet"), Some("node_finished")), "{d}");
    assert_eq!(d["recorded"]["data"]["outputs"]["output"], "Good day, Ada.");
    assert_eq!(d["reexecuted"]["data"]["outputs"]["output"], "Welcome, Ada.");
    assert!(d["index"].as_u64().unwrap() > 1);

    // The command line, on the stopped server's data directory.
    s.terminate();
    let data = s.data.to_str().unwrap().to_string();
    let (ok, out) = replay(&[&task, "--data", &data, "--reexecute"]);
    assert!(ok, "{out}");
    assert!(out.contains("identical"), "{out}");
    let (ok, out) = replay(&[&task, "--data", &data, "--reexecute", "--workflow-id", &v2]);
    assert!(!ok, "{out}");
    assert!(out.contains("node_finished of node greet (Build greeting)"), "{out}");
    assert!(out.contains("recorded:    \"Good day, Ada.\"") && out.contains("re-executed: \"Welcome, Ada.\""), "{out}");
    let (ok, out) = replay(&["--app", &app_id, "--all", "--reexecute", "--data", &data]);
    assert!(ok, "{out}");
    assert!(out.contains("1 runs, 1 identical, 0 diverged, 0 failed"), "{out}");
    let (ok, out) = replay(&[&chat_tasks[1], "--data", &data, "--reexecute"]);
    assert!(ok, "{out}");
    let (ok, out) = replay(&["00000000-0000-4000-8000-000000000000", "--data", &data, "--reexecute"]);
    assert!(!ok && out.contains("not found"), "{out}");
}

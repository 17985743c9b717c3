//! End-to-end runs of `http-request` and `document-extractor` nodes against
//! a loopback HTTP server started by each test, through the engine API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::wire::Outcome;
use ferrify_engine::workflow::WorkflowSettings;
use ferrify_engine::{Engine, EngineConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the test server saw it.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request { method, path, query, headers, body })
}

async fn respond(sock: &mut TcpStream, status: u16, content_type: &str, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Served-By: test\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
    let _ = sock.shutdown().await;
}

async fn handle(mut sock: TcpStream) {
    let Some(req) = read_request(&mut sock).await else { return };
    match req.path.as_str() {
        "/echo" => {
            let headers: serde_json::Map<String, Value> =
                req.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let body = json!({
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "headers": headers,
                "body": String::from_utf8_lossy(&req.body),
            });
            respond(&mut sock, 200, "application/json", "", body.to_string().as_bytes()).await;
        }
        "/teapot" => respond(&mut sock, 418, "text/plain", "", b"short and stout").await,
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(600)).await;
            respond(&mut sock, 200, "text/plain", "", b"slow").await;
        }
        "/people.csv" => {
            respond(&mut sock, 200, "text/csv", "", b"name,age\r\nAda,36\r\n\"Lovelace, A.\",\"x\ny\"\r\n").await
        }
        "/note" => respond(&mut sock, 200, "text/plain; charset=utf-8", "", "hello from a file é".as_bytes()).await,
        "/page.html" => {
            respond(
                &mut sock,
                200,
                "text/html",
                "",
                b"<html><body><h1>Title</h1><p>Some <b>bold</b> text</p></body></html>",
            )
            .await
        }
        "/image" => respond(&mut sock, 200, "image/png", "", &[0x89, b'P', b'N', b'G', 0, 1, 2]).await,
        _ => respond(&mut sock, 404, "text/plain", "", b"not found").await,
    }
}

/// Starts the loopback server; its address.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(handle(sock));
        }
    });
    addr
}

fn engine(allow_private_network: bool) -> Engine {
    Engine::open(&EngineConfig {
        data_dir: None,
        workflow: WorkflowSettings { allow_private_network, ..Default::default() },
        ..EngineConfig::default()
    })
    .unwrap()
}

/// A workflow app: a start node with `variables`, the given middle nodes
/// (each fed from start unless `edges` are given), and an end node.
fn app(variables: Value, nodes: Value, outputs: Value, edges: Option<Value>) -> String {
    let mut all = vec![
        json!({"id": "start", "type": "custom", "data": {"type": "start", "title": "Start", "variables": variables}}),
    ];
    let middle: Vec<Value> = nodes.as_array().unwrap().clone();
    let ids: Vec<String> = middle.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect();
    all.extend(middle);
    all.push(json!({"id": "end", "type": "custom", "data": {"type": "end", "title": "End", "outputs": outputs}}));
    let edges = edges.unwrap_or_else(|| {
        let mut e = Vec::new();
        for id in &ids {
            e.push(json!({"id": format!("start-{id}"), "source": "start", "sourceHandle": "source", "target": id, "targetHandle": "target"}));
            e.push(json!({"id": format!("{id}-end"), "source": id, "sourceHandle": "source", "target": "end", "targetHandle": "target"}));
        }
        Value::Array(e)
    });
    let doc = json!({
        "app": {"name": "http test", "mode": "workflow"},
        "kind": "app",
        "version": "0.3.1",
        "workflow": {"environment_variables": [{"name": "TOKEN", "value": "s3cret", "value_type": "secret"}],
                     "conversation_variables": [], "features": {},
                     "graph": {"nodes": all, "edges": edges}},
    });
    serde_yaml_ng::to_string(&doc).unwrap()
}

fn text_var(name: &str) -> Value {
    json!({"variable": name, "label": name, "type": "text-input", "required": false, "max_length": 1000})
}

fn out(name: &str, node: &str, key: &str) -> Value {
    json!({"variable": name, "value_selector": [node, key]})
}

/// Runs a workflow to its end; the blocking response's `data`.
async fn run(engine: &Engine, yaml: &str, inputs: Value) -> Value {
    let imported = engine.import_app(yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = WorkflowRequest { inputs, user: "u".into(), streaming: false, ..Default::default() };
    let accepted = engine.start_workflow(&app, req).await.unwrap();
    let outcome =
        tokio::time::timeout(Duration::from_secs(30), accepted.outcome.unwrap()).await.unwrap().unwrap().unwrap();
    match outcome {
        Outcome::Message(body) => body["data"].clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn http_node(id: &str, data: Value) -> Value {
    let mut data = data;
    data["type"] = json!("http-request");
    data["title"] = json!(id);
    json!({"id": id, "type": "custom", "data": data})
}

fn all_outputs(node: &str) -> Value {
    json!([
        out("status", node, "status_code"),
        out("body", node, "body"),
        out("headers", node, "headers"),
        out("files", node, "files")
    ])
}

#[tokio::test]
async fn get_with_params_headers_and_bearer_auth() {
    let addr = server().await;
    let node = http_node(
        "http",
        json!({
            "method": "GET",
            "url": format!("http://{addr}/echo"),
            "params": "q:{{#start.q#}}\nlang: en",
            "headers": "X-Who:{{#start.who#}}\nAccept: application/json",
            "authorization": {"type": "api-key", "config": {"type": "bearer", "api_key": "{{#env.TOKEN#}}", "header": ""}},
            "body": {"type": "none", "data": []},
            "timeout": {"connect": 5, "read": 10, "write": 10},
        }),
    );
    let yaml = app(json!([text_var("q"), text_var("who")]), json!([node]), all_outputs("http"), None);
    let data = run(&engine(true), &yaml, json!({"q": "rust & more", "who": "Ada"})).await;
    assert_eq!(data["status"], "succeeded", "{data}");
    let o = &data["outputs"];
    assert_eq!(o["status"], 200);
    assert_eq!(o["files"], json!([]));
    assert_eq!(o["headers"]["x-served-by"], "test");
    assert_eq!(o["headers"]["content-type"], "application/json");
    let echo: Value = serde_json::from_str(o["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["query"], "q=rust+%26+more&lang=en");
    assert_eq!(echo["headers"]["x-who"], "Ada");
    assert_eq!(echo["headers"]["accept"], "application/json");
    assert_eq!(echo["headers"]["authorization"], "Bearer s3cret");
}

#[tokio::test]
async fn post_json_body_with_a_template() {
    let addr = server().await;
    let node = http_node(
        "http",
        json!({
            "method": "post",
            "url": format!("http://{addr}/echo"),
            "headers": "",
            "params": "",
            "authorization": {"type": "api-key", "config": {"type": "basic", "api_key": "user:{{#start.q#}}", "header": "X-Basic"}},
            "body": {"type": "json", "data": [{"key": "", "type": "text", "value": "{\"name\": \"{{#start.who#}}\", \"note\": \"{{#start.q#}}\", \"n\": 2}"}]},
        }),
    );
    let yaml = app(json!([text_var("q"), text_var("who")]), json!([node]), all_outputs("http"), None);
    let data = run(&engine(true), &yaml, json!({"q": "line1\nline2", "who": "Ada"})).await;
    assert_eq!(data["status"], "succeeded", "{data}");
    let echo: Value = serde_json::from_str(data["outputs"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    // Basic auth: base64("user:line1\nline2") since the key contains ':'.
    assert!(echo["headers"]["x-basic"].as_str().unwrap().starts_with("Basic dXNlcjps"), "{echo}");
    let sent: Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"name": "Ada", "note": "line1\nline2", "n": 2}));
}

#[tokio::test]
async fn form_bodies_and_a_binary_response() {
    let addr = server().await;
    let form = http_node(
        "form",
        json!({
            "method": "put",
            "url": format!("http://{addr}/echo"),
            "body": {"type": "x-www-form-urlencoded", "data": [
                {"key": "a", "type": "text", "value": "{{#start.q#}}"}, {"key": "b", "type": "text", "value": "2"}]},
        }),
    );
    let multipart = http_node(
        "multi",
        json!({
            "method": "post",
            "url": format!("http://{addr}/echo"),
            "body": {"type": "form-data", "data": [{"key": "field", "type": "text", "value": "v={{#start.q#}}"}]},
        }),
    );
    let raw = http_node(
        "raw",
        json!({"method": "patch", "url": format!("http://{addr}/echo"), "body": {"type": "raw-text", "data": "plain {{#start.q#}}"}}),
    );
    let image = http_node("image", json!({"method": "get", "url": format!("http://{addr}/image")}));
    let outputs = json!([
        out("form", "form", "body"),
        out("multi", "multi", "body"),
        out("raw", "raw", "body"),
        out("image_body", "image", "body"),
        out("image_files", "image", "files")
    ]);
    let yaml = app(json!([text_var("q")]), json!([form, multipart, raw, image]), outputs, None);
    let data = run(&engine(true), &yaml, json!({"q": "x y"})).await;
    assert_eq!(data["status"], "succeeded", "{data}");
    let o = &data["outputs"];
    let form: Value = serde_json::from_str(o["form"].as_str().unwrap()).unwrap();
    assert_eq!(form["body"], "a=x+y&b=2");
    assert_eq!(form["headers"]["content-type"], "application/x-www-form-urlencoded");
    let multi: Value = serde_json::from_str(o["multi"].as_str().unwrap()).unwrap();
    assert!(multi["headers"]["content-type"].as_str().unwrap().starts_with("multipart/form-data; boundary="));
    assert!(multi["body"]
        .as_str()
        .unwrap()
        .contains("Content-Disposition: form-data; name=\"field\"\r\n\r\nv=x y\r\n"));
    let raw: Value = serde_json::from_str(o["raw"].as_str().unwrap()).unwrap();
    assert_eq!((raw["method"].as_str(), raw["body"].as_str()), (Some("PATCH"), Some("plain x y")));
    assert_eq!(raw["headers"]["content-type"], "text/plain");
    assert_eq!(o["image_body"], "");
    let files = o["image_files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0]["mime_type"].as_str(), files[0]["size"].as_u64()), (Some("image/png"), Some(7)));
}

#[tokio::test]
async fn a_non_2xx_status_is_a_success() {
    let addr = server().await;
    let node = http_node("http", json!({"method": "get", "url": format!("http://{addr}/teapot")}));
    let yaml = app(json!([]), json!([node]), all_outputs("http"), None);
    let data = run(&engine(true), &yaml, json!({})).await;
    assert_eq!(data["status"], "succeeded", "{data}");
    assert_eq!(data["outputs"]["status"], 418);
    assert_eq!(data["outputs"]["body"], "short and stout");
}

#[tokio::test]
async fn network_errors_fail_the_node() {
    // Nothing listens on port 1.
    let node = http_node("http", json!({"method": "get", "url": "http://127.0.0.1:1/x", "timeout": {"connect": 2}}));
    let yaml = app(json!([]), json!([node]), all_outputs("http"), None);
    let data = run(&engine(true), &yaml, json!({})).await;
    assert_eq!(data["status"], "failed", "{data}");
    assert!(data["error"].as_str().unwrap().contains("Request failed"), "{data}");
}

#[tokio::test]
async fn loopback_targets_are_refused_by_default() {
    let addr = server().await;
    let node = http_node("http", json!({"method": "get", "url": format!("http://{addr}/echo")}));
    let yaml = app(json!([]), json!([node]), all_outputs("http"), None);
    let data = run(&engine(false), &yaml, json!({})).await;
    assert_eq!(data["status"], "failed", "{data}");
    let error = data["error"].as_str().unwrap();
    assert!(error.contains("private-network guard") && error.contains("127.0.0.1"), "{error}");
    // Host names are resolved and checked too.
    let node = http_node("http", json!({"method": "get", "url": format!("http://localhost:{}/echo", addr.port())}));
    let yaml = app(json!([]), json!([node]), all_outputs("http"), None);
    let data = run(&engine(false), &yaml, json!({})).await;
    assert_eq!(data["status"], "failed", "{data}");
    assert!(data["error"].as_str().unwrap().contains("private-network guard"), "{data}");
}

fn file_var(name: &str, list: bool) -> Value {
    json!({"variable": name, "label": name, "type": if list { "file-list" } else { "file" }, "required": true,
           "allowed_file_upload_methods": ["remote_url"], "allowed_file_types": ["document"], "max_length": 5})
}

fn extractor(id: &str, var: &str) -> Value {
    json!({"id": id, "type": "custom", "data": {"type": "document-extractor", "title": id, "variable_selector": ["start", var], "output_image": false}})
}

#[tokio::test]
async fn document_extractor_reads_remote_files() {
    let addr = server().await;
    let nodes = json!([extractor("one", "doc"), extractor("many", "docs")]);
    let outputs = json!([out("csv", "one", "text"), out("texts", "many", "text")]);
    let yaml = app(json!([file_var("doc", false), file_var("docs", true)]), nodes, outputs, None);
    let remote = |path: &str| json!({"type": "document", "transfer_method": "remote_url", "url": format!("http://{addr}{path}")});
    let inputs = json!({"doc": remote("/people.csv"), "docs": [remote("/note"), remote("/page.html")]});
    let data = run(&engine(true), &yaml, inputs.clone()).await;
    assert_eq!(data["status"], "succeeded", "{data}");
    assert_eq!(data["outputs"]["csv"], "| name | age |\n| ---- | --- |\n| Ada | 36 |\n| Lovelace, A. | x y |\n");
    assert_eq!(data["outputs"]["texts"], json!(["hello from a file é", "Title\nSome bold text"]));

    // Without the setting the same files are refused by the guard, when the run is asked for.
    let engine = engine(false);
    let imported = engine.import_app(&yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = WorkflowRequest { inputs, user: "u".into(), ..Default::default() };
    let e = engine.start_workflow(&app, req).await.err().expect("refused");
    assert!(e.to_string().contains("private-network guard"), "{e}");
}

#[tokio::test]
async fn document_extractor_refuses_unknown_types() {
    let addr = server().await;
    let yaml =
        app(json!([file_var("doc", false)]), json!([extractor("one", "doc")]), json!([out("t", "one", "text")]), None);
    let inputs =
        json!({"doc": {"type": "document", "transfer_method": "remote_url", "url": format!("http://{addr}/a.docx")}});
    let data = run(&engine(true), &yaml, inputs).await;
    assert_eq!(data["status"], "failed");
    assert!(data["error"].as_str().unwrap().contains("Unsupported Extension Type: .docx"), "{data}");
}

#[tokio::test]
async fn parallel_http_nodes_overlap() {
    let addr = server().await;
    let a = http_node("a", json!({"method": "get", "url": format!("http://{addr}/slow")}));
    let b = http_node("b", json!({"method": "get", "url": format!("http://{addr}/slow")}));
    let outputs = json!([out("a", "a", "body"), out("b", "b", "body")]);
    let yaml = app(json!([]), json!([a, b]), outputs, None);
    let engine = engine(true);
    let started = Instant::now();
    let data = run(&engine, &yaml, json!({})).await;
    let wall = started.elapsed();
    assert_eq!(data["status"], "succeeded", "{data}");
    assert_eq!(data["outputs"], json!({"a": "slow", "b": "slow"}));
    let elapsed = data["elapsed_time"].as_f64().unwrap();
    assert!((0.6..1.1).contains(&elapsed), "elapsed_time {elapsed}s: the two 600 ms requests did not overlap");
    assert!(wall < Duration::from_millis(1500), "wall time {wall:?}");
}

//! `code` nodes through the engine API: a start → code → end workflow in
//! Python 3 (local interpreter) and JavaScript (embedded QuickJS), and a
//! run that fails the output contract.

use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::wire::Outcome;
use ferrify_engine::{Engine, EngineConfig};
use serde_json::{json, Value};

/// A workflow whose code node gets `text` and `count` and returns `outputs`.
fn dsl(language: &str, code: &str, outputs: &str) -> String {
    let code: String = code.lines().map(|l| format!("          {l}\n")).collect();
    format!(
        r#"app: {{mode: workflow, name: code-{language}}}
kind: app
version: 0.1.5
workflow:
  features: {{}}
  graph:
    edges:
    - {{id: e1, source: start, target: code, sourceHandle: source, targetHandle: target}}
    - {{id: e2, source: code, target: end, sourceHandle: source, targetHandle: target}}
    nodes:
    - id: start
      data:
        type: start
        title: Start
        variables:
        - {{variable: text, label: text, type: text-input, required: true, max_length: 100}}
        - {{variable: count, label: count, type: number, required: true}}
    - id: code
      data:
        type: code
        title: Code
        code_language: {language}
        code: |
{code}        variables:
        - {{variable: a, value_selector: [start, text]}}
        - {{variable: n, value_selector: [start, count]}}
        outputs: {outputs}
        dependencies: []
    - id: end
      data:
        type: end
        title: End
        outputs:
        - {{variable: upper, value_selector: [code, upper]}}
        - {{variable: twice, value_selector: [code, twice]}}
        - {{variable: info, value_selector: [code, info]}}
"#
    )
}

const OUTPUTS: &str = "{upper: {type: string, children: null}, twice: {type: number, children: null}, \
                       info: {type: object, children: {words: {type: 'array[string]', children: null}, long: {type: boolean, children: null}}}}";

async fn run(yaml: &str, inputs: Value) -> Value {
    let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
    let imported = engine.import_app(yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = WorkflowRequest { inputs, user: "u".into(), streaming: false, ..Default::default() };
    let accepted = engine.start_workflow(&app, req).await.unwrap();
    let outcome = accepted.outcome.unwrap().await.unwrap().unwrap();
    let Outcome::Message(body) = outcome else { panic!("expected a finished run, got {outcome:?}") };
    body
}

fn require_python() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("python3").is_file()))
        .unwrap_or(false);
    assert!(found, "python3 is not on PATH: the Python code node tests need it (CI has it)");
}

#[tokio::test]
async fn python3_code_node_runs() {
    require_python();
    let code = "def main(a: str, n: int) -> dict:\n    print('debug output is ignored')\n    words = a.split()\n    return {\"upper\": a.upper(), \"twice\": n * 2, \"info\": {\"words\": words, \"long\": len(words) > 2}}";
    let body = run(&dsl("python3", code, OUTPUTS), json!({"text": "hello code node", "count": 21})).await;
    assert_eq!(body["data"]["status"], "succeeded", "{body}");
    assert_eq!(
        body["data"]["outputs"],
        json!({"upper": "HELLO CODE NODE", "twice": 42, "info": {"words": ["hello", "code", "node"], "long": true}})
    );
}

#[tokio::test]
async fn javascript_code_node_runs() {
    let code = "function main({a, n}) {\n  console.log('debug output is ignored');\n  const words = a.split(' ');\n  return {upper: a.toUpperCase(), twice: n * 2, info: {words, long: words.length > 2}};\n}";
    let body = run(&dsl("javascript", code, OUTPUTS), json!({"text": "hi there", "count": 2.5})).await;
    assert_eq!(body["data"]["status"], "succeeded", "{body}");
    assert_eq!(
        body["data"]["outputs"],
        json!({"upper": "HI THERE", "twice": 5, "info": {"words": ["hi", "there"], "long": false}})
    );
}

#[tokio::test]
async fn a_broken_contract_fails_the_run() {
    // `twice` has the wrong type.
    let code = "function main({a, n}) {\n  return {upper: a, twice: 'two', info: {words: [], long: true}};\n}";
    let body = run(&dsl("javascript", code, OUTPUTS), json!({"text": "x", "count": 1})).await;
    assert_eq!(body["data"]["status"], "failed", "{body}");
    assert_eq!(body["data"]["error"], "Output variable `twice` must be a number", "{body}");

    // A missing key, in Python.
    require_python();
    let code = "def main(a, n):\n    return {\"upper\": a, \"info\": {\"words\": [], \"long\": False}}";
    let body = run(&dsl("python3", code, OUTPUTS), json!({"text": "x", "count": 1})).await;
    assert_eq!(body["data"]["status"], "failed", "{body}");
    assert_eq!(body["data"]["error"], "Output twice is missing.", "{body}");

    // An exception in the code.
    let code = "def main(a, n):\n    return {\"upper\": a, \"twice\": n / 0}";
    let body = run(&dsl("python3", code, OUTPUTS), json!({"text": "x", "count": 1})).await;
    assert_eq!(body["data"]["status"], "failed", "{body}");
    let error = body["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("ZeroDivisionError: division by zero"), "{body}");
}

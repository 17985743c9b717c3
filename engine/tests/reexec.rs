//! Deterministic re-execution: every example app's runs (tests/apps and the
//! demo apps, all four modes, streamed and blocking, several conversation
//! turns) re-execute without divergence; a changed version diverges at the
//! changed node; http-request and tool nodes are answered from the log; a
//! property test re-executes random workflows.

use std::collections::HashMap;
use std::time::Duration;

use ferrify_engine::provider::{ModelPrice, ProviderConfig, Providers};
use ferrify_engine::reexec::{ReexecError, ReexecOptions, Reexecution};
use ferrify_engine::runner::easy::{Accepted, MessageRequest};
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::wire::WireRun;
use ferrify_engine::workflow::WorkflowSettings;
use ferrify_engine::{Engine, EngineConfig, Envelope, Event};
use ferrify_store::{EventLog, StreamId};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

/// An engine whose builtin models have prices (so that usage prices are re-computed too).
fn priced_engine(model_override: Option<(&str, &str)>) -> Engine {
    let price =
        ModelPrice { input: "0.5".into(), output: "1.5".into(), unit: "0.000001".into(), currency: "USD".into() };
    let config = ProviderConfig {
        kind: "builtin".into(),
        base_url: None,
        api_key_env: None,
        timeout_secs: 60,
        max_retries: 0,
        prices: HashMap::from([("echo".to_string(), price)]),
        moderation_model: "omni-moderation-latest".into(),
    };
    let providers = Providers::new(
        &HashMap::from([("builtin".to_string(), config)]),
        model_override.map(|(p, m)| (p.to_string(), m.to_string())),
    )
    .unwrap();
    Engine::open(&EngineConfig { data_dir: None, providers, ..EngineConfig::default() }).unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Waits until run `task` has its terminal frame.
async fn finished(engine: &Engine, accepted: Accepted) -> Uuid {
    let task = accepted.handle.task_id;
    if let Some(outcome) = accepted.outcome {
        outcome.await.unwrap().unwrap();
        return task;
    }
    let stream = StreamId::of("run", task).unwrap();
    for _ in 0..3000 {
        let mut wire = WireRun::new();
        for r in engine.store().read_stream(&stream, 1, usize::MAX).unwrap() {
            wire.values(&Envelope::decode(&r.payload).unwrap());
        }
        if wire.is_done() {
            // The recorder's last appends land with the terminal event.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return task;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {task} did not finish");
}

async fn import(engine: &Engine, yaml: &str) -> std::sync::Arc<ferrify_engine::apps::LoadedApp> {
    let imported = engine.import_app(yaml).await.unwrap();
    engine.app(imported.app_id).unwrap().unwrap()
}

/// Runs `turns` chat turns in one conversation; returns their tasks.
async fn chat_turns(engine: &Engine, yaml: &str, queries: &[&str], inputs: Value) -> Vec<Uuid> {
    let app = import(engine, yaml).await;
    let mut conversation = None;
    let mut tasks = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let req = MessageRequest {
            query: q.to_string(),
            inputs: inputs.clone(),
            user: "alice".into(),
            conversation_id: conversation,
            streaming: i % 2 == 0,
            ..Default::default()
        };
        let accepted = engine.start_chat(&app, req).await.unwrap();
        conversation = accepted.handle.conversation_id;
        tasks.push(finished(engine, accepted).await);
    }
    tasks
}

async fn completion(engine: &Engine, yaml: &str, inputs: Value, streaming: bool) -> Uuid {
    let app = import(engine, yaml).await;
    let req = MessageRequest { inputs, user: "bob".into(), streaming, ..Default::default() };
    let accepted = engine.start_completion(&app, req).await.unwrap();
    finished(engine, accepted).await
}

async fn workflow(engine: &Engine, yaml: &str, inputs: Value, streaming: bool) -> Uuid {
    let app = import(engine, yaml).await;
    workflow_run(engine, &app, inputs, streaming, None).await
}

async fn workflow_run(
    engine: &Engine,
    app: &ferrify_engine::apps::LoadedApp,
    inputs: Value,
    streaming: bool,
    workflow_id: Option<Uuid>,
) -> Uuid {
    let req = WorkflowRequest { inputs, user: "carol".into(), streaming, workflow_id, ..Default::default() };
    let accepted = engine.start_workflow(app, req).await.unwrap();
    finished(engine, accepted).await
}

fn assert_identical(r: &Reexecution, what: &str) {
    assert!(r.frames > 0, "{what}: no frames");
    if let Some(d) = &r.divergence {
        panic!(
            "{what}: diverged at {}\nrecorded:    {}\nre-executed: {}",
            ferrify_engine::reexec::describe(d),
            d.recorded.as_ref().map(Value::to_string).unwrap_or_default(),
            d.reexecuted.as_ref().map(Value::to_string).unwrap_or_default()
        );
    }
    assert_eq!(r.frames, r.reexecuted_frames, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_run_reexecutes_without_divergence() {
    let engine = priced_engine(None);
    // The openai-model examples run under a model override, which the run records.
    let overridden = priced_engine(Some(("builtin", "echo")));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let demo = |name: &str| {
        ferrify_engine::demo::DEMO_APPS.iter().find(|(n, _)| *n == name).map(|(_, y)| y.to_string()).unwrap()
    };
    let app = |name: &str| read(&format!("{root}/tests/apps/{name}"));
    let wf = |name: &str| read(&format!("{root}/engine/tests/workflows/{name}"));

    // Every run at once: the slow examples pace their tokens.
    let e = &engine;
    let o = &overridden;
    let y: Vec<String> = vec![
        demo("chat-echo.yml"),
        demo("chat-lorem.yml"),
        demo("chatflow-echo.yml"),
        app("chat-echo.yml"),
        app("chat-lorem.yml"),
        app("chat-slow.yml"),
        app("chatflow-llm-memory.yml"),
        app("workflow-slow.yml"),
    ];
    let (a, b, c, d, e2, f, g, h) = tokio::join!(
        chat_turns(e, &y[0], &["hello there", "and again", "third turn"], json!({})),
        chat_turns(e, &y[1], &["go"], json!({})),
        chat_turns(e, &y[2], &["one", "two", "three"], json!({})),
        chat_turns(e, &y[3], &["hi", "more"], json!({})),
        chat_turns(e, &y[4], &["go"], json!({})),
        chat_turns(e, &y[5], &["go"], json!({})),
        chat_turns(o, &y[6], &["My name is Ada.", "What is my name?"], json!({"tone": "terse"})),
        workflow(e, &y[7], json!({}), true),
    );
    let mut runs: Vec<(String, &Engine, Uuid)> = Vec::new();
    for (name, tasks) in [
        ("demo chat-echo", a),
        ("demo chat-lorem", b),
        ("demo chatflow-echo", c),
        ("chat-echo", d),
        ("chat-lorem", e2),
        ("chat-slow", f),
    ] {
        runs.extend(tasks.into_iter().enumerate().map(|(i, t)| (format!("{name} turn {i}"), e, t)));
    }
    runs.extend(g.into_iter().enumerate().map(|(i, t)| (format!("chatflow-llm-memory turn {i}"), o, t)));
    runs.push(("workflow-slow".into(), e, h));
    for streaming in [false, true] {
        let s = format!(" streaming={streaming}");
        runs.push((
            format!("demo completion-echo{s}"),
            e,
            completion(e, &demo("completion-echo.yml"), json!({"text": "bonjour"}), streaming).await,
        ));
        runs.push((
            format!("completion-echo{s}"),
            o,
            completion(o, &app("completion-echo.yml"), json!({"query": "hola", "tone": "casual"}), streaming).await,
        ));
        for style in ["formal", "casual"] {
            runs.push((
                format!("demo workflow-greet {style}{s}"),
                e,
                workflow(e, &demo("workflow-greet.yml"), json!({"name": "Ada", "style": style}), streaming).await,
            ));
        }
        runs.push((
            format!("workflow-template-transform{s}"),
            e,
            workflow(e, &app("workflow-template-transform.yml"), json!({"name": "Bo"}), streaming).await,
        ));
        runs.push((
            format!("workflow-ifelse-parallel-aggregator{s}"),
            e,
            workflow(
                e,
                &wf("workflow-ifelse-parallel-aggregator.yml"),
                json!({"score": 72, "text": "parallel"}),
                streaming,
            )
            .await,
        ));
        runs.push((
            format!("workflow-iteration{s}"),
            e,
            workflow(e, &wf("workflow-iteration.yml"), json!({"csv": "a,b\nc,d"}), streaming).await,
        ));
    }
    let mut modes = std::collections::HashSet::new();
    let frames = ReexecOptions { compare_frames: true, ..Default::default() };
    for (what, engine, task) in &runs {
        let r = engine.reexecute(*task, &ReexecOptions::default()).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_identical(&r, what);
        // Comparing the frames themselves agrees.
        let f = engine.reexecute(*task, &frames).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_identical(&f, what);
        assert_eq!(f.frames, r.frames, "{what}");
        // Counting frames agrees with building them.
        let mut counted = WireRun::new();
        let mut built = WireRun::new();
        let (mut n, mut m) = (0, 0);
        for rec in engine.store().read_stream(&StreamId::of("run", *task).unwrap(), 1, usize::MAX).unwrap() {
            let env = Envelope::decode(&rec.payload).unwrap();
            n += counted.count(&env);
            m += built.values(&env).len();
        }
        assert_eq!((n, r.frames), (m, m), "{what}");
        modes.insert(r.mode.clone());
    }
    assert_eq!(modes.len(), 4, "{modes:?}");
    // Re-executing writes nothing to the engine.
    let before = engine.store().last_position().unwrap();
    engine.reexecute(runs[0].2, &ReexecOptions::default()).await.unwrap();
    assert_eq!(engine.store().last_position().unwrap(), before);
}

#[tokio::test]
async fn a_changed_version_diverges_at_the_changed_node() {
    let engine = priced_engine(None);
    let yaml = ferrify_engine::demo::DEMO_APPS[3].1;
    let app = import(&engine, yaml).await;
    let task = workflow_run(&engine, &app, json!({"name": "Ada", "style": "formal"}), false, None).await;
    let changed = yaml.replace("Good day, {{ name }}.", "Greetings, {{ name }}.");
    assert_ne!(changed, yaml);
    let section = ferrify_engine::app::parse_dsl(&changed).unwrap().workflow.unwrap();
    let (v2, _) = engine.publish_workflow(app.id(), &section).await.unwrap();

    let same = engine.reexecute(task, &ReexecOptions::default()).await.unwrap();
    assert_identical(&same, "own version");
    let r = engine.reexecute(task, &ReexecOptions { workflow_id: Some(v2), ..Default::default() }).await.unwrap();
    assert_eq!(r.workflow_id, Some(v2));
    let json = r.to_json();
    let d = r.divergence.expect("a divergence");
    assert_eq!(d.node_id.as_deref(), Some("polite"), "{d:?}");
    assert_eq!(d.event, "node_finished");
    assert_eq!(d.field.as_deref(), Some("data.outputs.output"));
    assert_eq!(d.recorded.unwrap()["data"]["outputs"]["output"], "Good day, Ada.");
    assert_eq!(d.reexecuted.unwrap()["data"]["outputs"]["output"], "Greetings, Ada.");
    assert_eq!(json["identical"], false);
    assert_eq!(json["divergence"]["node_id"], "polite");

    // A casual run never reaches the changed node: no divergence.
    let task = workflow_run(&engine, &app, json!({"name": "Ada", "style": "casual"}), true, None).await;
    let r = engine.reexecute(task, &ReexecOptions { workflow_id: Some(v2), ..Default::default() }).await.unwrap();
    assert!(r.identical(), "{:?}", r.divergence);

    // A changed LLM prompt finds no recorded answer: the LLM node diverges.
    let yaml = ferrify_engine::demo::DEMO_APPS[4].1;
    let tasks = chat_turns(&engine, yaml, &["hello"], json!({})).await;
    let chatflow = engine.list_apps().unwrap().into_iter().find(|a| a.mode == "advanced-chat").unwrap();
    let changed = yaml.replace("You repeat what the user says.", "You repeat what the user says, loudly.");
    let section = ferrify_engine::app::parse_dsl(&changed).unwrap().workflow.unwrap();
    let (v2, _) = engine.publish_workflow(chatflow.id, &section).await.unwrap();
    let r = engine.reexecute(tasks[0], &ReexecOptions { workflow_id: Some(v2), ..Default::default() }).await.unwrap();
    let report = r.to_json();
    let d = r.divergence.expect("a divergence");
    // The first frame that differs is the answer text the LLM node streamed.
    assert_eq!(
        (d.node_id.as_deref(), d.title.as_deref(), d.event.as_str()),
        (Some("llm"), Some("Echo"), "message"),
        "{d:?}"
    );
    assert_eq!(d.recorded.unwrap()["answer"], "hello");
    assert_eq!(d.reexecuted.unwrap()["data"]["status"], "failed");
    let error = report["divergence"]["reexecuted"]["data"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("no recorded answer"), "{error}");
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let engine = priced_engine(None);
    let unknown = Uuid::new_v4();
    let e = engine.reexecute(unknown, &ReexecOptions::default()).await.unwrap_err();
    assert!(matches!(e, ReexecError::UnknownTask(t) if t == unknown), "{e}");

    let app = import(&engine, ferrify_engine::demo::DEMO_APPS[3].1).await;
    let wf_task = workflow_run(&engine, &app, json!({"name": "Ada"}), false, None).await;
    let missing = Uuid::new_v4();
    let e = engine
        .reexecute(wf_task, &ReexecOptions { workflow_id: Some(missing), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(e, ReexecError::VersionNotFound(v, _) if v == missing), "{e}");
    assert!(e.to_string().contains(&missing.to_string()));

    // A run stopped by its user cannot be reproduced.
    let lorem = import(&engine, ferrify_engine::demo::DEMO_APPS[1].1).await;
    let req = MessageRequest { query: "go".into(), user: "u".into(), streaming: true, ..Default::default() };
    let accepted = engine.start_chat(&lorem, req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    engine.stop_message(lorem.id(), accepted.handle.task_id, "u").unwrap();
    let task = finished(&engine, accepted).await;
    let e = engine.reexecute(task, &ReexecOptions::default()).await.unwrap_err();
    assert!(matches!(e, ReexecError::Stopped(_)), "{e}");

    // The app was deleted: a clear error, and nothing written.
    let stream = StreamId::of("app", app.id()).unwrap();
    let deleted = Envelope::new(engine.now(), None, Event::AppDeleted).encode().unwrap();
    engine.store().append(ferrify_store::Append::new(stream, vec![deleted]).durable()).await.unwrap();
    let before = engine.store().last_position().unwrap();
    assert_eq!(engine.app_run_tasks(app.id()).unwrap(), vec![wf_task]);
    let e = engine.reexecute(wf_task, &ReexecOptions::default()).await.unwrap_err();
    assert!(matches!(e, ReexecError::AppDeleted(a) if a == app.id()), "{e}");
    assert!(e.to_string().contains("deleted"), "{e}");
    assert_eq!(engine.store().last_position().unwrap(), before);
}

/// A loopback HTTP server answering every request with a counter (a live
/// server would answer a re-execution differently).
async fn counting_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut sock, _)) = listener.accept().await {
            n += 1;
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = format!("{{\"count\": {n}}}");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (addr, handle)
}

#[tokio::test]
async fn http_and_tool_nodes_are_answered_from_the_log() {
    let providers = Providers::builtin_only();
    let settings = WorkflowSettings { allow_private_network: true, ..WorkflowSettings::default() };
    let engine =
        Engine::open(&EngineConfig { data_dir: None, providers, workflow: settings, ..EngineConfig::default() })
            .unwrap();
    let (addr, server) = counting_server().await;
    let yaml = format!(
        r#"app: {{mode: workflow, name: outside}}
workflow:
  graph:
    nodes:
    - {{id: start, data: {{type: start, title: Start, variables: [{{variable: q, type: text-input, required: true, label: q}}]}}}}
    - id: call
      data:
        type: http-request
        title: Call
        method: post
        url: 'http://{addr}/count?q={{{{#start.q#}}}}'
        headers: 'X-Q: {{{{#start.q#}}}}'
        body: {{type: form-data, data: [{{key: q, type: text, value: '{{{{#start.q#}}}}'}}]}}
    - id: now
      data:
        type: tool
        title: Now
        provider_id: time
        tool_name: current_time
        tool_parameters: {{format: {{type: mixed, value: '%Y-%m-%d %H:%M:%S%.f'}}}}
    - {{id: end, data: {{type: end, title: End, outputs: [{{variable: body, value_selector: [call, body]}}, {{variable: now, value_selector: [now, text]}}]}}}}
    edges:
    - {{source: start, target: call}}
    - {{source: start, target: now}}
    - {{source: call, target: end}}
    - {{source: now, target: end}}
"#
    );
    let task = workflow(&engine, &yaml, json!({"q": "x"}), false).await;
    server.abort();
    for compare_frames in [false, true] {
        let r = engine.reexecute(task, &ReexecOptions { compare_frames, ..Default::default() }).await.unwrap();
        assert_identical(&r, "http + time tool");
    }
    let records = engine.store().read_stream(&StreamId::of("run", task).unwrap(), 1, usize::MAX).unwrap();
    let body = records
        .iter()
        .find_map(|r| match Envelope::decode(&r.payload).unwrap().event {
            Event::WorkflowFinished(f) => Some(f.outputs.0["body"].clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(body, "{\"count\": 1}");
}

// --- random workflows --------------------------------------------------------

/// One generated node: its kind, where it hangs, what it reads.
#[derive(Clone, Debug)]
struct Gen {
    kind: u8,
    parent: usize,
    branch: bool,
    join: Option<usize>,
    pick: usize,
    pick2: usize,
    parallel: bool,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        0u8..4,
        any::<usize>(),
        any::<bool>(),
        proptest::option::weighted(0.25, any::<usize>()),
        any::<usize>(),
        any::<usize>(),
        any::<bool>(),
    )
        .prop_map(|(kind, parent, branch, join, pick, pick2, parallel)| Gen {
            kind,
            parent,
            branch,
            join,
            pick,
            pick2,
            parallel,
        })
}

const TEMPLATES: &[&str] = &[
    "{{ v }}!",
    "<{{ v | upper }}>",
    "{{ v }} and {{ v | length }}",
    "{% if v %}yes {{ v }}{% else %}none{% endif %}",
];

/// `start → split (JavaScript: the words of x) → generated nodes → end`:
/// template-transform, if-else, variable-aggregator and iteration nodes,
/// each hanging off an earlier node (a branch of an if-else) and reading an
/// ancestor's output.
fn random_workflow(nodes: &[Gen]) -> String {
    // Node ids with their string outputs and ancestors.
    struct Made {
        id: String,
        kind: u8,
        ancestors: Vec<usize>,
    }
    let mut made = vec![
        Made { id: "start".into(), kind: 9, ancestors: vec![] },
        Made { id: "split".into(), kind: 8, ancestors: vec![0] },
    ];
    let mut yaml = vec![
        "    - {id: start, data: {type: start, title: Start, variables: [{variable: x, type: text-input, required: true, label: x}]}}".to_string(),
        "    - {id: split, data: {type: code, title: Split, code_language: javascript, code: 'function main({s}) { return {items: s.split(\" \")} }', variables: [{variable: s, value_selector: [start, x]}], outputs: {items: {type: 'array[string]', children: null}}}}".to_string(),
    ];
    let mut edges = vec!["    - {source: start, target: split}".to_string()];
    let mut has_child = vec![true, false];
    let value_of = |m: &Made| match m.kind {
        9 => ("start".to_string(), "x"),
        8 => (m.id.clone(), "items"),
        _ => (m.id.clone(), "output"),
    };
    for (i, g) in nodes.iter().enumerate() {
        let id = format!("n{i}");
        let parent = 1 + g.parent % (made.len() - 1);
        let mut ancestors = made[parent].ancestors.clone();
        ancestors.push(parent);
        let handle = |p: usize, b: bool| {
            if made[p].kind == 1 {
                if b {
                    "'true'"
                } else {
                    "'false'"
                }
            } else {
                "source"
            }
        };
        edges.push(format!(
            "    - {{source: {}, sourceHandle: {}, target: {id}}}",
            made[parent].id,
            handle(parent, g.branch)
        ));
        has_child[parent] = true;
        if let Some(j) = g.join.map(|j| 1 + j % (made.len() - 1)).filter(|j| *j != parent) {
            edges.push(format!(
                "    - {{source: {}, sourceHandle: {}, target: {id}}}",
                made[j].id,
                handle(j, !g.branch)
            ));
            has_child[j] = true;
            ancestors.extend(made[j].ancestors.iter().copied());
            ancestors.push(j);
        }
        ancestors.sort();
        ancestors.dedup();
        // What the node reads: an ancestor's value (not if-else, which has no output).
        let readable: Vec<usize> = ancestors.iter().copied().filter(|a| made[*a].kind != 1).collect();
        let (src, field) = value_of(&made[readable[g.pick % readable.len()]]);
        let (src2, field2) = value_of(&made[readable[g.pick2 % readable.len()]]);
        let node = match g.kind {
            0 => format!(
                "    - {{id: {id}, data: {{type: template-transform, title: T{i}, template: '{}', variables: [{{variable: v, value_selector: [{src}, {field}]}}]}}}}",
                TEMPLATES[g.pick2 % TEMPLATES.len()]
            ),
            1 => format!(
                "    - {{id: {id}, data: {{type: if-else, title: If{i}, cases: [{{case_id: 'true', logical_operator: and, conditions: [{{variable_selector: [{src}, {field}], comparison_operator: contains, value: a}}]}}]}}}}"
            ),
            2 => format!(
                "    - {{id: {id}, data: {{type: variable-aggregator, title: Agg{i}, output_type: string, variables: [[{src}, {field}], [{src2}, {field2}]]}}}}"
            ),
            _ => {
                yaml.push(format!(
                    "    - {{id: {id}s, parentId: {id}, data: {{type: iteration-start, title: '', isInIteration: true}}}}"
                ));
                yaml.push(format!(
                    "    - {{id: {id}b, parentId: {id}, data: {{type: template-transform, title: Body{i}, isInIteration: true, iteration_id: {id}, template: '{{{{ i }}}}:{{{{ item }}}}/{{{{ v }}}}', variables: [{{variable: item, value_selector: [{id}, item]}}, {{variable: i, value_selector: [{id}, index]}}, {{variable: v, value_selector: [{src}, {field}]}}]}}}}"
                ));
                edges.push(format!("    - {{source: {id}s, target: {id}b, data: {{isInIteration: true, iteration_id: {id}}}}}"));
                format!(
                    "    - {{id: {id}, data: {{type: iteration, title: It{i}, iterator_selector: [split, items], output_selector: [{id}b, output], is_parallel: {}, parallel_nums: 3, start_node_id: {id}s}}}}",
                    g.parallel
                )
            }
        };
        yaml.push(node);
        has_child.push(false);
        made.push(Made { id, kind: g.kind, ancestors });
    }
    let mut outputs = Vec::new();
    for (k, m) in made.iter().enumerate().skip(1) {
        if !has_child[k] {
            edges.push(format!(
                "    - {{source: {}, sourceHandle: {}, target: end}}",
                m.id,
                if m.kind == 1 { "'true'" } else { "source" }
            ));
        }
        if m.kind != 1 {
            let (src, field) = value_of(m);
            outputs.push(format!("{{variable: o{k}, value_selector: [{src}, {field}]}}"));
        }
    }
    yaml.push(format!("    - {{id: end, data: {{type: end, title: End, outputs: [{}]}}}}", outputs.join(", ")));
    format!(
        "app: {{mode: workflow, name: random}}\nworkflow:\n  graph:\n    nodes:\n{}\n    edges:\n{}\n",
        yaml.join("\n"),
        edges.join("\n")
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_workflows_reexecute_to_identical_transcripts(
        nodes in proptest::collection::vec(gen(), 1..9),
        x in "[a-c]{1,3}( [a-c]{1,3}){0,3}",
        streaming in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let yaml = random_workflow(&nodes);
        rt.block_on(async {
            let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
            let task = workflow(&engine, &yaml, json!({"x": x}), streaming).await;
            for compare_frames in [false, true] {
                let r = engine.reexecute(task, &ReexecOptions { compare_frames, ..Default::default() }).await.unwrap();
                if let Some(d) = &r.divergence {
                    panic!("{yaml}\ndiverged at {}: {:?}", ferrify_engine::reexec::describe(d), d);
                }
            }
            let rows = engine.store().read_stream(&StreamId::of("run", task).unwrap(), 1, usize::MAX).unwrap();
            let ended = rows.iter().any(|r| matches!(Envelope::decode(&r.payload).unwrap().event, Event::WorkflowFinished(_)));
            assert!(ended, "{yaml}");
            engine.close().unwrap();
        });
    }
}

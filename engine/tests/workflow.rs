//! The graph engine through the engine API: every example of the spec,
//! branch skipping, joins, containers, error strategies, stop, and the
//! import errors of malformed graphs.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use ferrify_engine::runner::easy::MessageRequest;
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::wire::{Outcome, WireRun};
use ferrify_engine::{Engine, EngineConfig, EngineError, Envelope, Event};
use ferrify_store::EventLog;
use serde_json::{json, Value};

/// The first page of a conversation's variables, unfiltered.
fn all_variables() -> ferrify_engine::history::VariablesQuery {
    ferrify_engine::history::VariablesQuery { limit: 20, last_id: None, name: None }
}

fn engine() -> Engine {
    Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap()
}

/// A copy of the spec's example apps (`shared/spec/examples`).
fn example(name: &str) -> String {
    let path = format!("{}/tests/workflows/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A finished run: its blocking body, its events and its SSE frames.
struct Ran {
    body: Value,
    events: Vec<Event>,
    frames: Vec<Value>,
}

impl Ran {
    fn frame_names(&self) -> Vec<String> {
        self.frames.iter().map(|f| f["event"].as_str().unwrap_or("").to_string()).collect()
    }

    fn started_nodes(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::NodeStarted(n) => Some(n.node_id.clone()),
                _ => None,
            })
            .collect()
    }
}

async fn collect(engine: &Engine, accepted: ferrify_engine::runner::easy::Accepted) -> Ran {
    let outcome = accepted.outcome.unwrap().await.unwrap().unwrap();
    let body = match outcome {
        Outcome::Message(b) => b,
        Outcome::Failed { status, code, message } => json!({"status": status, "code": code, "message": message}),
    };
    let records = engine.store().read_stream(&accepted.handle.stream, 1, 100_000).unwrap();
    let envs: Vec<Envelope> = records.iter().map(|r| Envelope::decode(&r.payload).unwrap()).collect();
    let mut wire = WireRun::new();
    let frames: Vec<Value> = envs.iter().flat_map(|e| wire.values(e)).collect();
    assert_skips_agree(&envs, &frames);
    Ran { body, events: envs.into_iter().map(|e| e.event).collect(), frames }
}

/// A reader that skips the first k frames (state only) and renders the rest
/// gets exactly the frames after k, for every k (what a resumed stream relies on).
fn assert_skips_agree(envs: &[Envelope], frames: &[Value]) {
    let mut full = WireRun::new();
    envs.iter().for_each(|e| drop(full.values(e)));
    for k in 0..=frames.len() {
        let mut wire = WireRun::new();
        let (mut index, mut tail) = (0, Vec::new());
        for env in envs {
            if index < k {
                index += wire.advance(env);
            } else {
                tail.extend(wire.values(env));
            }
        }
        assert_eq!(index.max(k), k, "an event yields more than one frame");
        assert_eq!(tail, frames[k..], "frames after a skip of {k} differ");
        assert_eq!(wire.outcome(), full.outcome());
        assert_eq!(wire.is_done(), full.is_done());
    }
}

async fn run_workflow(engine: &Engine, yaml: &str, inputs: Value) -> Ran {
    let imported = engine.import_app(yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    run_app(engine, &app, inputs).await
}

async fn run_app(engine: &Engine, app: &ferrify_engine::apps::LoadedApp, inputs: Value) -> Ran {
    let req = WorkflowRequest { inputs, user: "u1".into(), ..Default::default() };
    let accepted = engine.start_workflow(app, req).await.unwrap();
    collect(engine, accepted).await
}

#[tokio::test]
async fn template_transform_example_with_defaults_and_streamed_outputs() {
    let engine = engine();
    let yaml = example("workflow-template-transform.yml");
    let ran = run_workflow(&engine, &yaml, json!({"name": "Ada", "style": "formal"})).await;
    assert_eq!(ran.body["data"]["status"], "succeeded", "{}", ran.body);
    assert_eq!(ran.body["data"]["outputs"], json!({"greeting": "Good day, Ada.", "name": "Ada"}));
    assert_eq!(ran.body["data"]["total_steps"], 3);
    assert!(ran.body["task_id"].is_string() && ran.body["workflow_run_id"].is_string());
    let chunks: Vec<&str> =
        ran.frames.iter().filter(|f| f["event"] == "text_chunk").map(|f| f["data"]["text"].as_str().unwrap()).collect();
    assert_eq!(chunks, ["Good day, Ada.", "\n", "Ada"]);
    let names = ran.frame_names();
    assert_eq!(names.first().map(String::as_str), Some("workflow_started"));
    assert_eq!(names.last().map(String::as_str), Some("workflow_finished"));
    let started = &ran.frames[0]["data"];
    assert_eq!(started["inputs"]["name"], "Ada");
    assert_eq!(started["inputs"]["sys.user_id"], "u1");
    assert!(started["inputs"].get("sys.conversation_id").is_none());

    let ran = run_workflow(&engine, &yaml, json!({"name": "Bo"})).await;
    assert_eq!(ran.body["data"]["outputs"], json!({"greeting": "Hi Bo!", "name": "Bo"}));
}

#[tokio::test]
async fn branches_skip_untaken_sides_and_joins_wait() {
    let engine = engine();
    let yaml = example("workflow-ifelse-parallel-aggregator.yml");
    let imported = engine.import_app(&yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    for (score, text, grade, summary, ran_tpl) in [
        (72, "hello", "B: pass", "HELLO (5 chars) -> B: pass", "tpl_b"),
        (95, "ok", "A: excellent", "OK (2 chars) -> A: excellent", "tpl_a"),
        (10, "x", "C: fail", "X (1 chars) -> C: fail", "tpl_c"),
    ] {
        let ran = run_app(&engine, &app, json!({"score": score, "text": text})).await;
        assert_eq!(ran.body["data"]["outputs"], json!({"grade": grade, "summary": summary}), "{}", ran.body);
        let nodes = ran.started_nodes();
        for t in ["tpl_a", "tpl_b", "tpl_c"] {
            assert_eq!(nodes.contains(&t.to_string()), t == ran_tpl, "{t} in {nodes:?}");
        }
        // The AND-join runs after all three of its inputs.
        let pos = |n: &str| nodes.iter().position(|x| x == n).unwrap();
        assert!(pos("report") > pos("grade_agg") && pos("report") > pos("upper") && pos("report") > pos("length"));
        assert_eq!(nodes.len(), 8);
        // The if-else selected its handle.
        let grade =
            ran.frames.iter().find(|f| f["event"] == "node_finished" && f["data"]["node_id"] == "grade").unwrap();
        assert_eq!(grade["data"]["outputs"]["result"], json!(ran_tpl != "tpl_c"));
    }
}

#[tokio::test]
async fn chatflow_memory_conversation_variables_and_dialogue_count() {
    let engine = engine();
    let yaml = example("chatflow-llm-memory.yml");
    let yaml = yaml
        .replace("provider: langgenius/openai/openai", "provider: builtin")
        .replace("name: gpt-4o-mini", "name: echo");
    let imported = engine.import_app(&yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = |query: &str, conversation_id| MessageRequest {
        query: query.into(),
        inputs: json!({}),
        user: "u1".into(),
        conversation_id,
        auto_generate_name: false,
        ..Default::default()
    };
    let first = collect(&engine, engine.start_chat(&app, req("My name is Ada.", None)).await.unwrap()).await;
    assert_eq!(first.body["answer"], "My name is Ada.", "{}", first.body);
    assert_eq!(first.body["mode"], "advanced-chat");
    assert!(first.body["metadata"].get("annotation_reply").is_some());
    let names = first.frame_names();
    assert_eq!(&names[names.len() - 2..], ["workflow_finished", "message_end"]);
    assert!(names.iter().filter(|n| *n == "message").count() >= 4, "{names:?}");
    let conv = first.body["conversation_id"].as_str().unwrap().parse().unwrap();
    let second = collect(&engine, engine.start_chat(&app, req("What is my name?", Some(conv))).await.unwrap()).await;
    // The echo model answers the last user message; the prompt carried the first turn.
    let called = second
        .events
        .iter()
        .find_map(|e| match e {
            Event::ModelCalled { request, .. } => Some(request.0.clone()),
            _ => None,
        })
        .unwrap();
    let contents: Vec<&str> =
        called["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert!(contents.contains(&"My name is Ada."), "{contents:?}");
    assert_eq!(contents.last(), Some(&"What is my name?"));
    let started = &second.frames[0]["data"];
    assert_eq!(started["inputs"]["sys.dialogue_count"], 2);
    let vars = engine.conversation_variables(&app, "u1", conv, &all_variables()).unwrap();
    let turns = vars.data.iter().find(|v| v["name"] == "turns").expect("turns variable");
    assert_eq!(turns["value"], "2");
}

/// A chatflow's new conversation is titled by its first LLM node's model;
/// one that answers at once (echo) names it in `RunStarted`, with no rename
/// appended to the conversation's stream.
#[tokio::test]
async fn a_chatflow_titled_at_once_is_named_in_its_run_start() {
    let engine = engine();
    let yaml = example("chatflow-llm-memory.yml")
        .replace("provider: langgenius/openai/openai", "provider: builtin")
        .replace("name: gpt-4o-mini", "name: echo");
    let imported = engine.import_app(&yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = MessageRequest {
        query: "Plan a trip".into(),
        inputs: json!({}),
        user: "u1".into(),
        auto_generate_name: true,
        ..Default::default()
    };
    let ran = collect(&engine, engine.start_chat(&app, req).await.unwrap()).await;
    let Some(Event::RunStarted(started)) = ran.events.first() else { panic!("no RunStarted") };
    assert_eq!(started.new_conversation.as_ref().map(|c| c.name.as_str()), Some("Plan a trip"));
    let conv: uuid::Uuid = ran.body["conversation_id"].as_str().unwrap().parse().unwrap();
    let stream = ferrify_store::StreamId::of("conversation", conv).unwrap();
    let renamed = engine
        .store()
        .read_stream(&stream, 1, 100)
        .unwrap()
        .iter()
        .any(|r| matches!(Envelope::decode(&r.payload).unwrap().event, Event::ConversationRenamed { .. }));
    assert!(!renamed, "the conversation was renamed after its start");
}

/// Variables a conversation's first turn creates share their creation
/// time: paging them by `last_id` one at a time still lists every one, in
/// declared order; the name filter matches part of a name, any case.
#[tokio::test]
async fn conversation_variables_page_by_last_id_without_losing_any() {
    let engine = engine();
    let extra = "  - {id: 1c0f2b8e-0000-4000-8000-000000000001, name: topic, value_type: string, value: none, description: '', selector: [conversation, topic]}\n  - {id: 1c0f2b8e-0000-4000-8000-000000000002, name: mood, value_type: string, value: calm, description: '', selector: [conversation, mood]}\n";
    let yaml = example("chatflow-llm-memory.yml")
        .replace("provider: langgenius/openai/openai", "provider: builtin")
        .replace("name: gpt-4o-mini", "name: echo")
        .replace("  conversation_variables:\n", &format!("  conversation_variables:\n{extra}"));
    let imported = engine.import_app(&yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = MessageRequest { query: "hi".into(), inputs: json!({}), user: "u1".into(), ..Default::default() };
    let ran = collect(&engine, engine.start_chat(&app, req).await.unwrap()).await;
    let conv = ran.body["conversation_id"].as_str().unwrap().parse().unwrap();
    let mut names = Vec::new();
    let mut last_id = None;
    loop {
        let query = ferrify_engine::history::VariablesQuery { limit: 1, last_id, name: None };
        let page = engine.conversation_variables(&app, "u1", conv, &query).unwrap();
        let Some(v) = page.data.first() else { break };
        names.push(v["name"].as_str().unwrap().to_string());
        last_id = Some(v["id"].as_str().unwrap().parse().unwrap());
        assert_eq!(page.has_more, names.len() < 3, "{names:?}");
    }
    assert_eq!(names, ["topic", "mood", "turns"]);
    let query = ferrify_engine::history::VariablesQuery { limit: 20, last_id: None, name: Some("OO".into()) };
    let page = engine.conversation_variables(&app, "u1", conv, &query).unwrap();
    assert_eq!(page.data.iter().map(|v| v["name"].as_str().unwrap()).collect::<Vec<_>>(), ["mood"]);
}

const ITERATE: &str = r#"
app: {mode: advanced-chat, name: iterate}
workflow:
  conversation_variables:
  - {id: v-items, name: items, value_type: 'array[string]', value: [apple, banana, cherry]}
  graph:
    nodes:
    - {id: start, data: {type: start, title: Start, variables: []}}
    - id: each
      data: {type: iteration, title: Each, iterator_selector: [conversation, items], output_selector: [fmt, output],
             is_parallel: PARALLEL, parallel_nums: 2, start_node_id: each_start}
    - {id: each_start, parentId: each, type: custom-iteration-start, data: {type: iteration-start, title: '', isInIteration: true}}
    - id: fmt
      parentId: each
      data: {type: template-transform, title: Fmt, isInIteration: true, iteration_id: each,
             variables: [{variable: item, value_selector: [each, item]}, {variable: i, value_selector: [each, index]}],
             template: '{{ i + 1 }}. {{ item | capitalize }}'}
    - {id: answer, data: {type: answer, title: Answer, answer: '{{#each.output#}}'}}
    edges:
    - {source: start, target: each}
    - {source: each_start, target: fmt, data: {isInIteration: true, iteration_id: each}}
    - {source: each, target: answer}
"#;

#[tokio::test]
async fn iterations_collect_by_index_sequentially_and_in_parallel() {
    for parallel in ["false", "true"] {
        let engine = engine();
        let imported = engine.import_app(&ITERATE.replace("PARALLEL", parallel)).await.unwrap();
        let app = engine.app(imported.app_id).unwrap().unwrap();
        let req = MessageRequest { query: "go".into(), user: "u".into(), inputs: json!({}), ..Default::default() };
        let ran = collect(&engine, engine.start_chat(&app, req).await.unwrap()).await;
        assert_eq!(ran.body["answer"], "- 1. Apple\n- 2. Banana\n- 3. Cherry", "parallel={parallel}: {}", ran.body);
        let names = ran.frame_names();
        assert_eq!(names.iter().filter(|n| *n == "iteration_next").count(), 3);
        assert!(names.contains(&"iteration_started".into()) && names.contains(&"iteration_completed".into()));
        let inner: Vec<&Value> =
            ran.frames.iter().filter(|f| f["event"] == "node_finished" && f["data"]["node_id"] == "fmt").collect();
        assert_eq!(inner.len(), 3);
        assert!(inner.iter().all(|f| f["data"]["iteration_id"] == "each"));
        let mut indexes: Vec<u64> =
            inner.iter().map(|f| f["data"]["execution_metadata"]["iteration_index"].as_u64().unwrap()).collect();
        indexes.sort();
        assert_eq!(indexes, [0, 1, 2]);
    }
}

const LOOP: &str = r#"
app: {mode: workflow, name: loop}
workflow:
  graph:
    nodes:
    - {id: start, data: {type: start, title: Start, variables: [{variable: limit, type: number, required: true, label: L}]}}
    - id: lp
      data:
        type: loop
        title: Loop
        loop_count: 10
        start_node_id: lp_start
        logical_operator: and
        break_conditions: [{variable_selector: [lp, i], comparison_operator: ≥, value: '{{#start.limit#}}'}]
        loop_variables:
        - {label: i, var_type: number, value_type: constant, value: '0'}
        - {label: seen, var_type: 'array[number]', value_type: constant, value: '[]'}
    - {id: lp_start, parentId: lp, type: custom-loop-start, data: {type: loop-start, isInLoop: true}}
    - id: inc
      parentId: lp
      data:
        type: assigner
        version: '2'
        isInLoop: true
        loop_id: lp
        items:
        - {variable_selector: [lp, i], input_type: constant, operation: +=, value: 1}
        - {variable_selector: [lp, seen], input_type: variable, operation: append, value: [lp, i]}
    - {id: end, data: {type: end, outputs: [{variable: i, value_selector: [lp, i]}, {variable: rounds, value_selector: [lp, loop_round]}, {variable: seen, value_selector: [lp, seen]}]}}
    edges:
    - {source: start, target: lp}
    - {source: lp_start, target: inc}
    - {source: lp, target: end}
"#;

#[tokio::test]
async fn loops_stop_on_their_break_condition() {
    let engine = engine();
    let ran = run_workflow(&engine, LOOP, json!({"limit": 3})).await;
    assert_eq!(ran.body["data"]["outputs"], json!({"i": 3, "rounds": 3, "seen": [1, 2, 3]}), "{}", ran.body);
    let names = ran.frame_names();
    assert_eq!(names.iter().filter(|n| *n == "loop_next").count(), 3);
    let ran = run_workflow(&engine, LOOP, json!({"limit": 0})).await;
    assert_eq!(ran.body["data"]["outputs"]["rounds"], 0, "break conditions are checked before the first round");
}

const STRATEGIES: &str = r#"
app: {mode: workflow, name: strategies}
workflow:
  graph:
    nodes:
    - {id: start, data: {type: start, variables: []}}
    - {id: tool_a, data: {type: agent, title: Search, error_strategy: fail-branch}}
    - {id: ok, data: {type: template-transform, template: 'fine', variables: []}}
    - {id: recover, data: {type: template-transform, template: 'recovered: {{ e }}', variables: [{variable: e, value_selector: [tool_a, error_type]}]}}
    - id: tool_b
      data: {type: agent, title: Other, error_strategy: default-value, default_value: [{key: text, type: string, value: fallback}],
             retry_config: {retry_enabled: true, max_retries: 2, retry_interval: 1}}
    - {id: end, data: {type: end, outputs: [{variable: a, value_selector: [recover, output]}, {variable: b, value_selector: [tool_b, text]}, {variable: c, value_selector: [ok, output]}]}}
    edges:
    - {source: start, target: tool_a}
    - {source: tool_a, sourceHandle: source, target: ok}
    - {source: tool_a, sourceHandle: fail-branch, target: recover}
    - {source: start, target: tool_b}
    - {source: recover, target: end}
    - {source: ok, target: end}
    - {source: tool_b, target: end}
"#;

#[tokio::test]
async fn error_strategies_retries_and_partial_success() {
    let engine = engine();
    let ran = run_workflow(&engine, STRATEGIES, json!({})).await;
    let data = &ran.body["data"];
    assert_eq!(data["status"], "partial-succeeded", "{data}");
    assert!(data.get("exceptions_count").is_none(), "only the streamed workflow_finished has it");
    let fin = ran.frames.iter().find(|f| f["event"] == "workflow_finished").unwrap();
    assert_eq!(fin["data"]["status"], "partial-succeeded");
    assert_eq!(fin["data"]["exceptions_count"], 2);
    assert_eq!(data["outputs"], json!({"a": "recovered: UnsupportedNodeError", "b": "fallback", "c": null}));
    let retries = ran.frames.iter().filter(|f| f["event"] == "node_retry").count();
    assert_eq!(retries, 2);
    assert!(!ran.started_nodes().contains(&"ok".to_string()), "the success branch was skipped");
    let exc = ran.frames.iter().filter(|f| f["event"] == "node_finished" && f["data"]["status"] == "exception").count();
    assert_eq!(exc, 2);
}

#[tokio::test]
async fn a_failing_node_fails_the_run_with_its_error() {
    let engine = engine();
    let yaml = STRATEGIES.replace("error_strategy: fail-branch", "desc: ''");
    let ran = run_workflow(&engine, &yaml, json!({})).await;
    assert_eq!(ran.body["data"]["status"], "failed");
    assert!(ran.body["data"]["error"].as_str().unwrap().contains("'agent' is not supported"), "{}", ran.body);
    let names = ran.frame_names();
    assert_eq!(&names[names.len() - 2..], ["workflow_finished", "error"]);
    let err = ran.frames.last().unwrap();
    assert_eq!(err["code"], "invalid_param");
    assert!(err["message"].as_str().unwrap().starts_with("Run failed: "));
}

const SLOW: &str = r#"
app: {mode: workflow, name: slow}
workflow:
  graph:
    nodes:
    - {id: start, data: {type: start, variables: []}}
    - id: llm
      data: {type: llm, model: {provider: builtin, name: lorem, mode: chat, completion_params: {max_tokens: 500, pace_ms: 5}},
             prompt_template: [{role: user, text: go}]}
    - {id: after, data: {type: template-transform, template: never, variables: []}}
    - {id: end, data: {type: end, outputs: [{variable: text, value_selector: [llm, text]}]}}
    edges:
    - {source: start, target: llm}
    - {source: llm, target: after}
    - {source: after, target: end}
"#;

#[tokio::test]
async fn stop_ends_a_blocking_run_within_a_model_chunk() {
    let engine = engine();
    let imported = engine.import_app(SLOW).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let accepted = engine
        .start_workflow(&app, WorkflowRequest { inputs: json!({}), user: "u".into(), ..Default::default() })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.stop_workflow(app.id(), accepted.handle.task_id);
    let ran = tokio::time::timeout(Duration::from_secs(2), collect(&engine, accepted)).await.expect("stopped quickly");
    assert_eq!(ran.body["data"]["status"], "stopped", "{}", ran.body);
    let llm = ran.frames.iter().find(|f| f["event"] == "node_finished" && f["data"]["node_id"] == "llm").unwrap();
    assert_eq!(llm["data"]["status"], "stopped");
    assert!(!ran.started_nodes().contains(&"after".to_string()));
    let streamed: String = ran
        .frames
        .iter()
        .filter(|f| f["event"] == "text_chunk")
        .map(|f| f["data"]["text"].as_str().unwrap().to_string())
        .collect();
    let words = streamed.split_whitespace().count();
    assert!(words > 0 && words < 500, "streamed {words} words before the stop");
    assert_eq!(ran.frame_names().last().map(String::as_str), Some("workflow_finished"));
}

/// A workflow run whose events the log refuses for a while stops (its model
/// would otherwise stream for minutes) and closes itself once the log takes
/// appends again: its open node and the run fail with the refusal as their
/// error, and its stream ends with Dify's `error` event.
#[tokio::test]
async fn a_refused_workflow_run_closes_itself_once_the_log_takes_appends_again() {
    let config = EngineConfig { data_dir: None, ..EngineConfig::default() };
    let (engine, refuse) = common::refusing_engine(&config);
    // 100,000 words at 5 ms: about eight minutes if nothing stopped it.
    let imported = engine.import_app(&SLOW.replace("max_tokens: 500", "max_tokens: 100000")).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = WorkflowRequest { inputs: json!({}), user: "u".into(), streaming: true, ..Default::default() };
    let accepted = engine.start_workflow(&app, req).await.unwrap();
    let stream = accepted.handle.stream.clone();
    let streamed = |engine: &Engine| {
        let records = engine.store().read_stream(&stream, 1, 100_000).unwrap();
        records.iter().any(|r| matches!(Envelope::decode(&r.payload).unwrap().event, Event::TextChunk { .. }))
    };
    let mut waited = 0;
    while !streamed(&engine) {
        assert!(waited < 500, "the model never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    common::wait_until_idle(&engine, 1000, "the run went on, or did not close itself once the log took appends again")
        .await;
    let records = engine.store().read_stream(&stream, 1, 100_000).unwrap();
    let mut wire = WireRun::new();
    let frames: Vec<Value> = records
        .iter()
        .flat_map(|r| wire.frames(&Envelope::decode(&r.payload).unwrap()))
        .map(|f| serde_json::from_str(&f).unwrap())
        .collect();
    let names: Vec<&str> = frames.iter().map(|f| f["event"].as_str().unwrap()).collect();
    assert_eq!(names[names.len() - 3..], ["node_finished", "workflow_finished", "error"], "{names:?}");
    let refused = ferrify_engine::recovery::REFUSED;
    let llm = &frames[frames.len() - 3];
    assert_eq!((llm["data"]["node_id"].as_str(), llm["data"]["status"].as_str()), (Some("llm"), Some("failed")));
    assert_eq!(llm["data"]["error"], refused);
    assert_eq!(frames[frames.len() - 2]["data"]["status"], "failed");
    assert_eq!(frames[frames.len() - 1]["message"], refused);
    assert!(frames.iter().any(|f| f["event"] == "text_chunk"), "nothing was streamed before the refusal");
}

#[tokio::test]
async fn malformed_graphs_are_refused_naming_the_fault() {
    let engine = engine();
    let base = |nodes: &str, edges: &str| {
        format!("app: {{mode: workflow, name: bad}}\nworkflow:\n  graph:\n    nodes: {nodes}\n    edges: {edges}\n")
    };
    let start = "{id: s, data: {type: start, variables: []}}";
    let tpl = |id: &str| format!("{{id: {id}, data: {{type: template-transform, template: x}}}}");
    let cases = [
        (base(&format!("[{}]", tpl("a")), "[]"), "no start node"),
        (base(&format!("[{start}, {start}]"), "[]"), "duplicate node id 's'"),
        (
            base(&format!("[{start}, {}]", tpl("a")), "[{id: e9, source: s, target: ghost}]"),
            "edge 'e9' points to unknown node 'ghost'",
        ),
        (
            base(
                &format!("[{start}, {}, {}]", tpl("a"), tpl("b")),
                "[{source: s, target: a}, {source: a, target: b}, {source: b, target: a}]",
            ),
            "cycle",
        ),
        (
            base(&format!("[{start}, {{id: t, data: {{type: template-transform, template: '{{% if %}}'}}}}]"), "[]"),
            "node 't'",
        ),
    ];
    for (yaml, want) in cases {
        match engine.import_app(&yaml).await {
            Err(EngineError::Dsl(e)) => assert!(e.to_string().contains(want), "{e} lacks {want:?}"),
            other => panic!("{want}: expected an import error, got {other:?}"),
        }
    }
    assert!(engine.list_apps().unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn inputs_that_do_not_match_the_start_node_are_refused() {
    let engine = engine();
    let imported = engine.import_app(&example("workflow-ifelse-parallel-aggregator.yml")).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let err = engine
        .start_workflow(
            &app,
            WorkflowRequest { inputs: json!({"score": "many", "text": "x"}), user: "u".into(), ..Default::default() },
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(&err, EngineError::InvalidParam(m) if m.contains("score")), "{err:?}");
    let err = engine
        .start_workflow(&app, WorkflowRequest { inputs: json!({"score": 1}), user: "u".into(), ..Default::default() })
        .await
        .err()
        .unwrap();
    assert!(matches!(&err, EngineError::InvalidParam(m) if m.contains("text")), "{err:?}");
}

const MODEL_NODES: &str = r#"
app: {mode: advanced-chat, name: model nodes}
workflow:
  conversation_variables:
  - {id: v-log, name: log, value_type: 'array[string]', value: []}
  graph:
    nodes:
    - {id: start, data: {type: start, variables: []}}
    - id: classify
      data:
        type: question-classifier
        model: {provider: builtin, name: echo, mode: chat}
        query_variable_selector: [sys, query]
        classes: [{id: '1', name: Weather}, {id: '2', name: Travel}]
    - {id: weather, data: {type: answer, answer: 'weather'}}
    - id: extract
      data:
        type: parameter-extractor
        model: {provider: builtin, name: echo, mode: chat}
        query: [sys, query]
        parameters:
        - {name: city, type: string, description: City, required: true}
        - {name: days, type: number, description: Days, required: false}
        - {name: stops, type: 'array[string]', description: Stops, required: false}
    - id: pick
      data:
        type: list-operator
        variable: [extract, stops]
        filter_by: {enabled: true, conditions: [{key: '', comparison_operator: not in, value: [Lyon]}]}
        order_by: {enabled: true, key: '', value: desc}
        limit: {enabled: true, size: 2}
    - id: remember
      data: {type: assigner, version: '1', assigned_variable_selector: [conversation, log], write_mode: append, input_variable_selector: [extract, city]}
    - id: travel
      data: {type: answer, answer: '{{#classify.class_name#}}: {{#extract.city#}} for {{#extract.days#}} days via {{#pick.first_record#}} ({{#pick.result#}}) ok={{#extract.__is_success#}}'}
    edges:
    - {source: start, target: classify}
    - {source: classify, sourceHandle: '1', target: weather}
    - {source: classify, sourceHandle: '2', target: extract}
    - {source: extract, target: pick}
    - {source: pick, target: remember}
    - {source: remember, target: travel}
"#;

#[tokio::test]
async fn classifier_extractor_list_operator_and_assigner_v1() {
    // The echo model answers with the user's message, so a JSON query is the model's answer.
    let engine = engine();
    let imported = engine.import_app(MODEL_NODES).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let query = r#"{"category_id": "2", "city": "Paris", "days": 3, "stops": ["Lyon", "Dijon", "Nice", "Arles"]}"#;
    let req = MessageRequest { query: query.into(), user: "u".into(), inputs: json!({}), ..Default::default() };
    let ran = collect(&engine, engine.start_chat(&app, req).await.unwrap()).await;
    assert_eq!(ran.body["answer"], "Travel: Paris for 3 days via Nice (- Nice\n- Dijon) ok=1", "{}", ran.body);
    assert!(!ran.started_nodes().contains(&"weather".to_string()));
    let conv = ran.body["conversation_id"].as_str().unwrap().parse().unwrap();
    let vars = engine.conversation_variables(&app, "u", conv, &all_variables()).unwrap();
    assert_eq!(vars.data[0]["value"], r#"["Paris"]"#);

    // An answer that is not JSON: the first class, and defaults with __is_success 0.
    let req = MessageRequest { query: "hello".into(), user: "u".into(), inputs: json!({}), ..Default::default() };
    let ran = collect(&engine, engine.start_chat(&app, req).await.unwrap()).await;
    assert_eq!(ran.body["answer"], "weather");
}

const TOOLS: &str = r#"
app: {mode: workflow, name: tools}
workflow:
  graph:
    nodes:
    - {id: start, data: {type: start, variables: [{variable: doc, type: paragraph, required: true, label: Doc}]}}
    - id: now
      data: {type: tool, provider_id: time, provider_type: builtin, tool_name: current_time,
             tool_parameters: {}, tool_configurations: {format: '%Y', timezone: Asia/Shanghai}}
    - id: pick
      data: {type: tool, provider_id: langgenius/json_process/json_process, provider_type: builtin, tool_name: parse,
             tool_parameters: {content: {type: mixed, value: '{{#start.doc#}}'}, json_filter: {type: mixed, value: 'city.name'}},
             tool_configurations: {ensure_ascii: 0}}
    - id: mail
      data: {type: tool, provider_id: langgenius/email/email, provider_type: builtin, tool_name: send_mail, tool_parameters: {}}
    - {id: end, data: {type: end, outputs: [{variable: year, value_selector: [now, text]}, {variable: city, value_selector: [pick, text]}]}}
    edges:
    - {source: start, target: now}
    - {source: now, target: pick}
    - {source: pick, target: end}
    - {source: end, target: mail}
"#;

#[tokio::test]
async fn builtin_tools_run_and_others_fail_naming_the_tool() {
    let engine = engine();
    let yaml = TOOLS.replace("    - {source: end, target: mail}\n", "");
    let ran = run_workflow(&engine, &yaml, json!({"doc": "{\"city\": {\"name\": \"Paris\"}}"})).await;
    assert_eq!(ran.body["data"]["status"], "succeeded", "{}", ran.body);
    let year = ran.body["data"]["outputs"]["year"].as_str().unwrap().parse::<i32>().unwrap();
    assert!((2024..3000).contains(&year));
    assert_eq!(ran.body["data"]["outputs"]["city"], "Paris");
    let ran = run_workflow(&engine, TOOLS, json!({"doc": "{}"})).await;
    assert_eq!(ran.body["data"]["status"], "failed");
    assert!(ran.body["data"]["error"].as_str().unwrap().contains("send_mail"), "{}", ran.body);
}

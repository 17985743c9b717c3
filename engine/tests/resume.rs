//! Resuming long runs through the engine: a resume far into a run starts from
//! the nearest checkpoint of the wire mapping, and gives exactly the frames a
//! full read gives after the same point, for finished and live runs, chat and
//! workflow, and after the data directory is reopened.

use std::time::Duration;

use ferrify_engine::projection::wire_checkpoints::{self, INTERVAL};
use ferrify_engine::resume::{Frame, RunFrames};
use ferrify_engine::runner::easy::MessageRequest;
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::{Engine, EngineConfig, EngineError};
use serde_json::json;
use uuid::Uuid;

fn lorem(words: u64, pace_ms: u64) -> String {
    format!(
        "app: {{mode: chat, name: long}}\nmodel_config:\n  model: {{provider: builtin, name: lorem, completion_params: {{max_tokens: {words}, pace_ms: {pace_ms}}}}}\n"
    )
}

/// A workflow whose iteration runs a chain of `chain` template nodes on each
/// of `items` items (a code node makes them; Dify caps its arrays under 30):
/// `1 + 2 * chain` frames a round.
fn iteration(items: u32, chain: u32) -> String {
    let mut nodes = String::new();
    let mut edges = String::new();
    let mut prev = "each_start".to_string();
    for k in 0..chain {
        let from = if k == 0 { "[each, item]".to_string() } else { format!("[t{}, output]", k - 1) };
        nodes.push_str(&format!(
            "    - id: t{k}\n      parentId: each\n      data: {{type: template-transform, title: T{k}, isInIteration: true, iteration_id: each, variables: [{{variable: v, value_selector: {from}}}], template: '{{{{ v }}}}.'}}\n"
        ));
        edges.push_str(&format!("    - {{id: e{k}, source: {prev}, target: t{k}}}\n"));
        prev = format!("t{k}");
    }
    format!(
        r#"app: {{mode: workflow, name: rounds}}
kind: app
version: '0.3.1'
workflow:
  graph:
    nodes:
    - id: start
      data: {{type: start, title: Start, variables: []}}
    - id: make
      data:
        type: code
        title: Make
        code_language: javascript
        code: "function main() {{ return {{items: Array.from({{length: {items}}}, (_, i) => 'item ' + i)}}; }}"
        variables: []
        outputs: {{items: {{type: 'array[string]'}}}}
    - id: each
      data:
        type: iteration
        title: Each
        iterator_selector: [make, items]
        output_selector: [{prev}, output]
        output_type: 'array[string]'
        start_node_id: each_start
        is_parallel: false
    - id: each_start
      parentId: each
      data: {{type: iteration-start, title: '', isInIteration: true}}
{nodes}    - id: end
      data:
        type: end
        title: End
        outputs:
        - {{variable: lines, value_selector: [each, output], value_type: 'array[string]'}}
    edges:
    - {{id: a, source: start, target: make}}
    - {{id: b, source: make, target: each}}
    - {{id: d, source: each, target: end}}
{edges}"#
    )
}

async fn collect(mut frames: RunFrames) -> Vec<Frame> {
    let mut out = frames.first_frames().unwrap();
    while let Some(batch) = frames.next_batch().await.unwrap() {
        out.extend(batch);
    }
    out
}

async fn chat(engine: &Engine, yaml: &str) -> (Uuid, Uuid) {
    let app = engine.import_app(yaml).await.unwrap().app_id;
    let loaded = engine.app(app).unwrap().unwrap();
    let req = MessageRequest { query: "go".into(), user: "u".into(), streaming: true, ..Default::default() };
    (app, engine.start_chat(&loaded, req).await.unwrap().handle.task_id)
}

/// Every resume point in `points` gives the frames after it, as a full read does.
async fn assert_resumes(engine: &Engine, app: Uuid, task: Uuid, full: &[Frame], points: &[u64]) {
    for &after in points {
        let got = collect(engine.resume_run(app, "u", task, after).unwrap()).await;
        let want = &full[after as usize..];
        assert_eq!(got.len(), want.len(), "resume after {after}");
        assert!(got == want, "resume after {after} differs");
    }
}

#[tokio::test]
async fn a_long_chat_resumes_from_its_checkpoints() {
    let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
    let (app, task) = chat(&engine, &lorem(3000, 0)).await;
    let full = collect(engine.resume_run(app, "u", task, 0).unwrap()).await;
    assert_eq!(full.len(), 3001, "3000 message frames and message_end");
    assert!(full.iter().enumerate().all(|(i, f)| f.index == i as u64 + 1));

    // A checkpoint every INTERVAL frames, none before the first.
    assert!(wire_checkpoints::before(engine.store(), task, INTERVAL - 1).unwrap().is_none());
    for (after, at) in [(INTERVAL, INTERVAL), (2 * INTERVAL - 1, INTERVAL), (3000, 2 * INTERVAL)] {
        let c = wire_checkpoints::before(engine.store(), task, after).unwrap().expect("a checkpoint");
        assert_eq!(c.frames, at);
        assert!(c.seq > at, "frame {at} comes after RunStarted, which yields none");
    }
    let points = [0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 2500, 2999, 3000, 3001];
    assert_resumes(&engine, app, task, &full, &points).await;
    // Another user of the app may not read it, even from a checkpoint.
    assert!(matches!(engine.resume_run(app, "someone", task, 2048), Err(EngineError::NotFound(_))));
    // Past the end is still refused.
    assert!(matches!(engine.resume_run(app, "u", task, 3002), Err(EngineError::InvalidParam(_))));
}

#[tokio::test]
async fn a_live_chat_resumes_from_a_checkpoint_while_it_runs() {
    let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
    let (app, task) = chat(&engine, &lorem(2600, 1)).await;
    // Wait until the run is past its first checkpoint, then resume it live.
    let at = loop {
        if let Some(c) = wire_checkpoints::before(engine.store(), task, 1500).unwrap() {
            break c.frames;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(at, INTERVAL);
    let live = engine.resume_run(app, "u", task, 1100).unwrap();
    assert!(engine.is_running(task), "the resume began while the run was live");
    let got = collect(live).await;
    let full = collect(engine.resume_run(app, "u", task, 0).unwrap()).await;
    assert_eq!(full.len(), 2601);
    assert!(got == full[1100..], "the live resume differs from the finished run's frames");
}

#[tokio::test]
async fn a_long_workflow_resumes_from_its_checkpoints() {
    let mut config = EngineConfig { data_dir: None, ..EngineConfig::default() };
    config.workflow.max_steps = 10_000;
    let engine = Engine::open(&config).unwrap();
    let app = engine.import_app(&iteration(29, 20)).await.unwrap().app_id;
    let loaded = engine.app(app).unwrap().unwrap();
    let req = WorkflowRequest { inputs: json!({}), user: "u".into(), streaming: true, ..Default::default() };
    let task = engine.start_workflow(&loaded, req).await.unwrap().handle.task_id;
    let full = collect(engine.resume_run(app, "u", task, 0).unwrap()).await;
    let last: serde_json::Value = serde_json::from_str(&full.last().unwrap().json).unwrap();
    assert_eq!(last["event"], "workflow_finished", "{last}");
    assert_eq!(last["data"]["status"], "succeeded", "{last}");
    let n = full.len() as u64;
    assert!(n > 29 * 41, "{n} frames");
    let c = wire_checkpoints::before(engine.store(), task, n).unwrap().expect("a checkpoint");
    assert_eq!(c.frames, n / INTERVAL * INTERVAL);
    let points = [0, 1000, 1024, 1025, 1030, 1100, n - 1, n];
    assert_resumes(&engine, app, task, &full, &points).await;
}

#[test]
fn checkpoints_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { data_dir: Some(dir.path().to_path_buf()), ..EngineConfig::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = Engine::open(&config).unwrap();
    let (app, task, full) = rt.block_on(async {
        let (app, task) = chat(&engine, &lorem(2100, 0)).await;
        let full = collect(engine.resume_run(app, "u", task, 0).unwrap()).await;
        (app, task, full)
    });
    rt.block_on(engine.shutdown(Duration::from_secs(10))).unwrap();
    drop(engine);

    let engine = Engine::open(&config).unwrap();
    let c = wire_checkpoints::before(engine.store(), task, 2100).unwrap().expect("a checkpoint");
    assert_eq!(c.frames, 2 * INTERVAL);
    rt.block_on(assert_resumes(&engine, app, task, &full, &[1500, 2048, 2049, 2100, 2101]));
    rt.block_on(engine.shutdown(Duration::from_secs(10))).unwrap();
}

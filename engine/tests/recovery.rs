//! Crash recovery at the engine level: runs recorded without a terminal event
//! are closed once, with the partial answer kept and open nodes failed.

#[path = "common/mod.rs"]
mod samples;

use ferrify_engine::event::NodeStarted;
use ferrify_engine::model::{MessageRow, WorkflowRunRow};
use ferrify_engine::projection::trees;
use ferrify_engine::wire::WireRun;
use ferrify_engine::{Engine, EngineConfig, Envelope, Event, Json};
use ferrify_store::{Append, EventLog, StreamId};
use serde_json::json;
use uuid::Uuid;

async fn record(engine: &Engine, task: Uuid, events: Vec<Event>) -> StreamId {
    let stream = StreamId::of("run", task).unwrap();
    let payloads = events.into_iter().map(|e| Envelope::new(engine.now(), None, e).encode().unwrap()).collect();
    engine.store().append(Append::new(stream.clone(), payloads)).await.unwrap();
    stream
}

fn events(engine: &Engine, stream: &StreamId) -> Vec<Envelope> {
    let records = engine.store().read_stream(stream, 1, 10_000).unwrap();
    records.iter().map(|r| Envelope::decode(&r.payload).unwrap()).collect()
}

/// The `event` names of the frames a run's events map to, and whether the mapping is done.
fn frame_names(events: &[Envelope]) -> (Vec<String>, bool) {
    let mut wire = WireRun::new();
    let names = events.iter().flat_map(|e| wire.values(e)).map(|f| f["event"].as_str().unwrap().to_string()).collect();
    (names, wire.is_done())
}

#[tokio::test]
async fn interrupted_runs_are_closed_once_with_their_partial_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { data_dir: Some(dir.path().to_path_buf()), ..EngineConfig::default() };
    let engine = Engine::open(&config).unwrap();

    // A chat turn cut after two chunks, and one that ended normally.
    let chat_task = Uuid::from_u128(100);
    let chat = samples::run_started(100);
    let chat =
        ferrify_engine::event::RunStarted { mode: "chat".into(), workflow_run_id: None, workflow_id: None, ..chat };
    let message_id = chat.message_id.unwrap();
    let chat_stream = record(
        &engine,
        chat_task,
        vec![
            Event::RunStarted(Box::new(chat)),
            Event::AnswerChunk { text: "Lorem ".into(), from_variable_selector: None },
            Event::AnswerChunk { text: "ipsum".into(), from_variable_selector: None },
        ],
    )
    .await;
    let done_task = Uuid::from_u128(101);
    let done = ferrify_engine::event::RunStarted {
        mode: "chat".into(),
        workflow_run_id: None,
        message_id: Some(Uuid::from_u128(1011)),
        conversation_id: Some(Uuid::from_u128(1012)),
        ..samples::run_started(101)
    };
    let done_stream = record(
        &engine,
        done_task,
        vec![
            Event::RunStarted(Box::new(done)),
            Event::MessageEnded { answer: "ok".into(), usage: Default::default(), latency: 0.1, stopped: false },
        ],
    )
    .await;

    // A workflow run cut inside a node.
    let wf_task = Uuid::from_u128(200);
    let wf = ferrify_engine::event::RunStarted {
        mode: "workflow".into(),
        message_id: None,
        conversation_id: None,
        new_conversation: None,
        workflow_run_id: Some(Uuid::from_u128(201)),
        ..samples::run_started(200)
    };
    let node = NodeStarted {
        node_execution_id: Uuid::from_u128(202),
        node_id: "llm".into(),
        node_type: "llm".into(),
        title: "LLM".into(),
        index: 1,
        predecessor_node_id: None,
        inputs: Json(json!({})),
        iteration_id: None,
        loop_id: None,
        extras: Json(json!({})),
    };
    let wf_stream =
        record(&engine, wf_task, vec![Event::RunStarted(Box::new(wf)), Event::NodeStarted(Box::new(node))]).await;
    engine.close().unwrap();
    drop(engine);

    // The next start closes the two cut runs, and only them.
    let engine = Engine::open(&config).unwrap();
    assert_eq!(engine.close_interrupted_runs().await.unwrap(), 2);
    assert_eq!(engine.close_interrupted_runs().await.unwrap(), 0, "closing is done once");
    assert_eq!(events(&engine, &done_stream).len(), 2, "a finished run is left alone");

    let chat_events = events(&engine, &chat_stream);
    assert!(matches!(&chat_events.last().unwrap().event,
        Event::RunInterrupted { answer, message } if answer == "Lorem ipsum" && message.starts_with("interrupted")));
    let row: MessageRow = engine.store().get_json(trees::MESSAGES, message_id.as_bytes()).unwrap().unwrap();
    assert_eq!((row.answer.as_str(), row.status.as_str()), ("Lorem ipsum", "error"));
    let mut wire = WireRun::new();
    let frames: Vec<_> = chat_events.iter().flat_map(|e| wire.values(e)).collect();
    let last = frames.last().unwrap();
    assert_eq!((last["event"].as_str(), last["status"].as_u64()), (Some("error"), Some(500)));
    assert!(wire.is_done());

    let wf_events: Vec<Event> = events(&engine, &wf_stream).into_iter().map(|e| e.event).collect();
    assert!(matches!(&wf_events[2], Event::NodeFinished(n) if n.status == "failed" && n.node_id == "llm"));
    assert!(matches!(&wf_events[3], Event::WorkflowFinished(f) if f.status == "failed"));
    assert!(matches!(&wf_events[4], Event::RunInterrupted { .. }));
    let run: WorkflowRunRow =
        engine.store().get_json(trees::WORKFLOW_RUNS, Uuid::from_u128(201).as_bytes()).unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert_eq!(run.error.as_deref(), Some("interrupted: the server stopped during this run"));
    engine.close().unwrap();
}

#[tokio::test]
async fn a_run_cut_while_speaking_is_closed_with_the_end_of_its_audio() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { data_dir: Some(dir.path().to_path_buf()), ..EngineConfig::default() };
    let engine = Engine::open(&config).unwrap();
    let spoken = |n: u128, options| ferrify_engine::event::RunStarted {
        mode: "chat".into(),
        workflow_run_id: None,
        workflow_id: None,
        options: Json(options),
        ..samples::run_started(n)
    };
    let end = || Event::MessageEnded { answer: "ok".into(), usage: Default::default(), latency: 0.1, stopped: false };
    // Cut after its message ended, while its audio was on the way.
    let cut = record(
        &engine,
        Uuid::from_u128(300),
        vec![
            Event::RunStarted(Box::new(spoken(300, json!({"tts": {"voice": "nova"}})))),
            end(),
            Event::TtsAudio { audio: vec![1, 2, 3] },
        ],
    )
    .await;
    // Spoken to its end; and a run without auto-play that ended with its message.
    let whole = record(
        &engine,
        Uuid::from_u128(301),
        vec![Event::RunStarted(Box::new(spoken(301, json!({"tts": {"voice": "nova"}})))), end(), Event::TtsEnded],
    )
    .await;
    let plain =
        record(&engine, Uuid::from_u128(302), vec![Event::RunStarted(Box::new(spoken(302, json!({})))), end()]).await;
    let lengths = |e: &Engine| [&cut, &whole, &plain].map(|s| events(e, s).len());
    assert_eq!(lengths(&engine), [3, 3, 2]);

    assert_eq!(engine.close_interrupted_runs().await.unwrap(), 1);
    let closed = events(&engine, &cut);
    assert_eq!(closed.len(), 4);
    assert!(matches!(closed[3].event, Event::TtsEnded), "{:?}", closed[3].event);
    let (names, done) = frame_names(&closed);
    assert_eq!(names, ["message_end", "tts_message", "tts_message_end"]);
    assert!(done);
    // Once only; the others are untouched.
    assert_eq!(engine.close_interrupted_runs().await.unwrap(), 0);
    assert_eq!(lengths(&engine), [4, 3, 2]);
}

#[tokio::test]
async fn a_workflow_cut_while_speaking_is_closed_with_the_end_of_its_audio() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { data_dir: Some(dir.path().to_path_buf()), ..EngineConfig::default() };
    let engine = Engine::open(&config).unwrap();
    let run = ferrify_engine::event::RunStarted {
        mode: "workflow".into(),
        conversation_id: None,
        new_conversation: None,
        message_id: None,
        workflow_run_id: Some(Uuid::from_u128(401)),
        options: Json(json!({"tts": {"voice": "nova"}})),
        ..samples::run_started(400)
    };
    let finished = ferrify_engine::event::WorkflowFinished {
        status: "succeeded".into(),
        outputs: Json(json!({"text": "hi"})),
        error: None,
        total_tokens: 0,
        total_steps: 2,
        exceptions_count: 0,
        elapsed_time: 0.1,
    };
    // Cut after the workflow finished, while its audio was on the way.
    let cut = record(
        &engine,
        Uuid::from_u128(400),
        vec![
            Event::RunStarted(Box::new(run)),
            Event::WorkflowFinished(Box::new(finished)),
            Event::TtsAudio { audio: vec![1, 2, 3] },
        ],
    )
    .await;
    assert_eq!(engine.close_interrupted_runs().await.unwrap(), 1);
    let closed = events(&engine, &cut);
    assert_eq!(closed.len(), 4);
    assert!(matches!(closed[3].event, Event::TtsEnded), "only the audio is ended: {:?}", closed[3].event);
    let (names, done) = frame_names(&closed);
    assert_eq!(names, ["workflow_started", "workflow_finished", "tts_message", "tts_message_end"]);
    assert!(done);
    let row: WorkflowRunRow =
        engine.store().get_json(trees::WORKFLOW_RUNS, Uuid::from_u128(401).as_bytes()).unwrap().unwrap();
    assert_eq!(row.status, "succeeded");
    assert_eq!(engine.close_interrupted_runs().await.unwrap(), 0);
}

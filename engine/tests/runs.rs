//! Runs through the engine API: a blocking run stopped in flight returns its
//! partial answer, and its stream records the stop.

use ferrify_engine::runner::easy::MessageRequest;
use ferrify_engine::wire::Outcome;
use ferrify_engine::{Engine, EngineConfig, Envelope, Event};
use ferrify_store::EventLog;
use serde_json::json;

const SLOW: &str = "app: {mode: chat, name: slow}\nmodel_config:\n  model: {provider: builtin, name: lorem, completion_params: {max_tokens: 200, pace_ms: 10}}\n";

#[tokio::test]
async fn a_stopped_blocking_run_answers_with_what_it_had() {
    let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
    let imported = engine.import_app(SLOW).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = MessageRequest {
        query: "go".into(),
        inputs: json!({}),
        user: "u".into(),
        auto_generate_name: true,
        ..Default::default()
    };
    let accepted = engine.start_chat(&app, req).await.unwrap();
    let task = accepted.handle.task_id;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Someone else's stop is ignored; the owner's takes effect.
    engine.stop_message(app.id(), task, "intruder").unwrap();
    engine.stop_message(app.id(), task, "u").unwrap();
    let outcome = accepted.outcome.unwrap().await.unwrap().unwrap();
    let Outcome::Message(body) = outcome else { panic!("expected a message, got {outcome:?}") };
    let words = body["answer"].as_str().unwrap().split_whitespace().count();
    assert!(words > 0 && words < 200, "stopped after {words} words");
    // The log has the whole story, in order.
    let records = engine.store().read_stream(&accepted.handle.stream, 1, 10_000).unwrap();
    let events: Vec<Event> = records.iter().map(|r| Envelope::decode(&r.payload).unwrap().event).collect();
    assert!(matches!(events.first(), Some(Event::RunStarted(_))));
    let stop_at = events.iter().position(|e| matches!(e, Event::StopRequested { user } if user == "u")).unwrap();
    assert!(matches!(events.last(), Some(Event::MessageEnded { stopped: true, .. })));
    assert!(stop_at < events.len() - 1);
    let chunks = events.iter().filter(|e| matches!(e, Event::AnswerChunk { .. })).count();
    assert_eq!(chunks, words);
}

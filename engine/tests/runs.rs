//! Runs through the engine API: a blocking run stopped in flight returns its
//! partial answer, and its stream records the stop; a long blocking run is on
//! the log while it runs; a run whose events the log refuses stops, and
//! closes itself once the log takes appends again; a streamed run comes with
//! its reader, and a title the model gives at once is in its `RunStarted`.

#[path = "common/mod.rs"]
mod common;

use ferrify_engine::runner::easy::{Accepted, MessageRequest};
use ferrify_engine::wire::Outcome;
use ferrify_engine::{Engine, EngineConfig, Envelope, Event};
use ferrify_store::EventLog;
use serde_json::json;

/// The events of a run stream, in order.
fn events(engine: &Engine, stream: &ferrify_store::StreamId) -> Vec<Event> {
    let records = engine.store().read_stream(stream, 1, 10_000).unwrap();
    records.iter().map(|r| Envelope::decode(&r.payload).unwrap().event).collect()
}

/// The answer chunks recorded on a run stream so far.
fn answer_chunks(engine: &Engine, stream: &ferrify_store::StreamId) -> Vec<String> {
    events(engine, stream)
        .into_iter()
        .filter_map(|e| match e {
            Event::AnswerChunk { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

/// Starts a streamed chat on a `lorem` model that would answer for about
/// eight minutes (100,000 words at 5 ms), and waits for its first words.
async fn start_endless(engine: &Engine) -> (std::sync::Arc<ferrify_engine::apps::LoadedApp>, Accepted) {
    let yaml = "app: {mode: chat, name: endless}\nmodel_config:\n  model: {provider: builtin, name: lorem, completion_params: {max_tokens: 100000, pace_ms: 5}}\n";
    let imported = engine.import_app(yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = MessageRequest { query: "go".into(), user: "u".into(), streaming: true, ..Default::default() };
    let accepted = engine.start_chat(&app, req).await.unwrap();
    let mut waited = 0;
    while answer_chunks(engine, &accepted.handle.stream).len() < 3 {
        assert!(waited < 500, "the run never got going");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    (app, accepted)
}

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
    let events = events(&engine, &accepted.handle.stream);
    assert!(matches!(events.first(), Some(Event::RunStarted(_))));
    let stop_at = events.iter().position(|e| matches!(e, Event::StopRequested { user } if user == "u")).unwrap();
    assert!(matches!(events.last(), Some(Event::MessageEnded { stopped: true, .. })));
    assert!(stop_at < events.len() - 1);
    let chunks = events.iter().filter(|e| matches!(e, Event::AnswerChunk { .. })).count();
    assert_eq!(chunks, words);
}

/// A blocking run that goes on for a while is on the log while it runs (a
/// crash then loses nothing of it but its first moments), and its events are
/// recorded once each, in order; its new conversation is still named.
#[tokio::test]
async fn a_long_blocking_run_is_written_while_it_runs() {
    let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
    let yaml = "app: {mode: chat, name: slow}\nmodel_config:\n  model: {provider: builtin, name: lorem, completion_params: {max_tokens: 40, pace_ms: 25}}\n";
    let imported = engine.import_app(yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = MessageRequest { query: "go".into(), user: "u".into(), auto_generate_name: true, ..Default::default() };
    let accepted = engine.start_chat(&app, req).await.unwrap();
    let stream = accepted.handle.stream.clone();
    let mut outcome = accepted.outcome.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(outcome.try_recv().is_err(), "the run (about 1 s) is still going");
    let so_far = events(&engine, &stream);
    assert!(matches!(so_far.first(), Some(Event::RunStarted(_))), "{so_far:?}");
    assert!(so_far.iter().any(|e| matches!(e, Event::AnswerChunk { .. })), "chunks are written as they come");
    assert!(!so_far.iter().any(|e| matches!(e, Event::MessageEnded { .. })));

    let outcome = outcome.await.unwrap().unwrap();
    let Outcome::Message(body) = outcome else { panic!("expected a message, got {outcome:?}") };
    assert_eq!(body["answer"].as_str().unwrap().split_whitespace().count(), 40);
    let events = events(&engine, &stream);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::RunStarted(_))).count(), 1);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::AnswerChunk { .. })).count(), 40);
    assert!(matches!(events.last(), Some(Event::MessageEnded { stopped: false, .. })));
    let answer: String = events
        .iter()
        .filter_map(|e| match e {
            Event::AnswerChunk { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(answer, body["answer"].as_str().unwrap(), "the chunks, in order, are the answer");

    // The title came too late for `RunStarted`: it is a rename.
    let conversation = accepted.handle.conversation_id.unwrap();
    let mut name = String::new();
    for _ in 0..100 {
        name = engine.owned_conversation(&app, "u", conversation).unwrap().unwrap().name;
        if name != "New conversation" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_ne!(name, "New conversation");
}

/// A streamed run whose appends the log refuses (here: the log was closed
/// under it) stops at its next event instead of asking the model for the
/// rest of an answer it can no longer record, and lets go of its slot.
#[tokio::test]
async fn a_run_whose_events_the_log_refuses_stops() {
    let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
    let (_, accepted) = start_endless(&engine).await;
    let stream = accepted.handle.stream.clone();
    let chunks = |engine: &Engine| answer_chunks(engine, &stream).len();
    assert_eq!(engine.runs_in_flight(), 1);
    engine.close().unwrap();
    let written = chunks(&engine);
    common::wait_until_idle(&engine, 1000, "the run went on after the log refused its events").await;
    // Nothing was recorded after the refusal.
    assert_eq!(chunks(&engine), written);
}

/// A log that refuses writes for a while (a full disk, a failing device):
/// the streamed run stops at the refused event, and once the log takes
/// appends again it closes itself the way crash recovery would — the
/// partial answer kept, Dify's `error` event at the end of its stream — so a
/// client following it is not left with pings. Nothing recorded before the
/// refusal changes, and the conversation takes its next turn.
#[tokio::test]
async fn a_refused_run_closes_itself_once_the_log_takes_appends_again() {
    let config = EngineConfig { data_dir: None, ..EngineConfig::default() };
    let (engine, refuse) = common::refusing_engine(&config);
    let (app, accepted) = start_endless(&engine).await;
    let stream = accepted.handle.stream.clone();
    let conversation_id = accepted.handle.conversation_id.unwrap();
    let chunks = |engine: &Engine| answer_chunks(engine, &stream);
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    // While the log refuses, the run has stopped and cannot close yet.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = events(&engine, &stream);
    assert!(
        !before.iter().any(|e| matches!(e, Event::RunInterrupted { .. } | Event::MessageEnded { .. })),
        "the run was closed while the log refused every write"
    );
    assert_eq!(engine.runs_in_flight(), 1, "the run let go of its slot before it was closed");
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    common::wait_until_idle(&engine, 1000, "the run did not close itself once the log took appends again").await;
    let after = events(&engine, &stream);
    // What was recorded before stays; the closing event follows it, and nothing else.
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.len(), before.len() + 1, "more than the closing event was added: {:?}", &after[before.len()..]);
    let answer: String = chunks(&engine).concat();
    match after.last() {
        Some(Event::RunInterrupted { answer: kept, message }) => {
            assert_eq!(kept, &answer, "the partial answer was not kept");
            assert_eq!(message, ferrify_engine::recovery::REFUSED);
        }
        other => panic!("the run ended with {other:?}"),
    }
    // A client following the stream gets Dify's `error` event as its last frame.
    let mut wire = ferrify_engine::wire::WireRun::new();
    let records = engine.store().read_stream(&stream, 1, 10_000).unwrap();
    let frames: Vec<String> =
        records.iter().flat_map(|r| wire.frames(&Envelope::decode(&r.payload).unwrap())).collect();
    let last: serde_json::Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert_eq!(last["event"], "error", "{last}");
    assert_eq!(last["message"], ferrify_engine::recovery::REFUSED);
    // The conversation goes on: its next turn runs and is recorded.
    let next = MessageRequest {
        query: "again".into(),
        user: "u".into(),
        conversation_id: Some(conversation_id),
        ..Default::default()
    };
    let accepted = engine.start_chat(&app, next).await.unwrap();
    engine.stop_message(app.id(), accepted.handle.task_id, "u").unwrap();
    let outcome = accepted.outcome.unwrap().await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Message(_)), "{outcome:?}");
}

/// A refusal that lasts longer than `limits.refused_run_hold`: the run lets
/// go of its slot (new runs are not refused for its sake) and closes itself
/// in the background once the log takes appends again.
#[tokio::test]
async fn a_long_refusal_frees_the_run_and_closes_it_later() {
    let limits = ferrify_engine::limits::RunLimits {
        refused_run_hold: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let config = EngineConfig { data_dir: None, limits, ..EngineConfig::default() };
    let (engine, refuse) = common::refusing_engine(&config);
    let (_, accepted) = start_endless(&engine).await;
    let stream = accepted.handle.stream.clone();
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    common::wait_until_idle(&engine, 500, "the refused run kept its slot past its hold").await;
    let closed = |engine: &Engine| events(engine, &stream).iter().any(|e| matches!(e, Event::RunInterrupted { .. }));
    assert!(!closed(&engine), "the run was closed while the log refused every write");
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut waited = 0;
    while !closed(&engine) {
        assert!(waited < 1000, "the run was not closed once the log took appends again");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    match events(&engine, &stream).last() {
        Some(Event::RunInterrupted { answer, message }) => {
            assert_eq!(answer, &answer_chunks(&engine, &stream).concat());
            assert_eq!(message, ferrify_engine::recovery::REFUSED);
        }
        other => panic!("the run ended with {other:?}"),
    }
}

#[tokio::test]
async fn a_streamed_turn_comes_with_its_reader_and_is_named_in_its_run_start() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&EngineConfig { data_dir: Some(dir.path().into()), ..EngineConfig::default() }).unwrap();
    let yaml = "app: {mode: chat, name: echo}\nmodel_config:\n  model: {provider: builtin, name: echo, mode: chat}\n";
    let imported = engine.import_app(yaml).await.unwrap();
    let app = engine.app(imported.app_id).unwrap().unwrap();
    let req = MessageRequest {
        query: "plan a trip".into(),
        user: "u".into(),
        streaming: true,
        auto_generate_name: true,
        ..Default::default()
    };
    let accepted = engine.start_chat(&app, req).await.unwrap();
    let mut frames = accepted.frames.expect("a streamed run comes with its reader");
    let mut seen = Vec::new();
    while let Some(batch) = frames.next_batch().await.unwrap() {
        for frame in batch {
            let json: serde_json::Value = serde_json::from_str(&frame.json).unwrap();
            seen.push((frame.index, json["event"].as_str().unwrap_or("").to_string()));
        }
    }
    let names: Vec<&str> = seen.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!((names.first(), names.last()), (Some(&"message"), Some(&"message_end")));
    let indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, (1..=seen.len() as u64).collect::<Vec<_>>());
    // Followed since before its first event, the run was read from memory only.
    assert_eq!(engine.store().stats().follower_reads, 0);

    // The builtin model titles the conversation at once: the name is in
    // `RunStarted`, and the conversation's own stream holds no rename.
    let Some(Event::RunStarted(started)) = events(&engine, &accepted.handle.stream).into_iter().next() else {
        panic!("the run does not start with RunStarted")
    };
    assert_eq!(started.new_conversation.map(|c| c.name).as_deref(), Some("plan a trip"));
    let conversation = accepted.handle.conversation_id.unwrap();
    let stream = ferrify_store::StreamId::of("conversation", conversation).unwrap();
    assert!(events(&engine, &stream).is_empty());
    let listed = engine.list_conversations(&app, "u", None, 10, ferrify_engine::history::SortBy::UpdatedDesc).unwrap();
    assert_eq!(listed.data[0]["name"], "plan a trip");
}

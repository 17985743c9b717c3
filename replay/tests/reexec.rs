//! Re-execution from a data directory, as `ferrify replay --reexecute` does
//! it: runs recorded by one engine (under a model override) are re-executed
//! by another opened later without it; an app's runs are counted; bad input
//! is a clear error and writes nothing.

use std::path::Path;
use std::time::Duration;

use ferrify_engine::provider::Providers;
use ferrify_engine::reexec::{ReexecError, ReexecOptions};
use ferrify_engine::runner::easy::MessageRequest;
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::{Engine, EngineConfig, Envelope, Event};
use ferrify_replay::reexec::{reexecute_app, reexecute_task, Error};
use ferrify_store::{Append, EventLog, StreamId};
use serde_json::json;
use uuid::Uuid;

fn config(dir: &Path, model_override: Option<(&str, &str)>) -> EngineConfig {
    let providers = Providers::new(&Default::default(), model_override.map(|(p, m)| (p.into(), m.into()))).unwrap();
    EngineConfig { data_dir: Some(dir.to_path_buf()), providers, ..EngineConfig::default() }
}

fn fixture(name: &str) -> String {
    let path = format!("{}/../tests/apps/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Records, under `builtin/echo` for every model: two chatflow turns, a
/// completion and two workflow runs; then, without it, a stopped chat turn.
fn record(dir: &Path) -> (Uuid, Vec<Uuid>, Uuid) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = Engine::open(&config(dir, Some(("builtin", "echo")))).unwrap();
    let out = rt.block_on(async {
        let chatflow = engine.import_app(&fixture("chatflow-llm-memory.yml")).await.unwrap().app_id;
        let app = engine.app(chatflow).unwrap().unwrap();
        let mut conversation = None;
        let mut chatflow_tasks = Vec::new();
        for q in ["My name is Ada.", "What is my name?"] {
            let req = MessageRequest {
                query: q.into(),
                user: "u".into(),
                conversation_id: conversation,
                inputs: json!({}),
                ..Default::default()
            };
            let accepted = engine.start_chat(&app, req).await.unwrap();
            conversation = accepted.handle.conversation_id;
            chatflow_tasks.push(accepted.handle.task_id);
            accepted.outcome.unwrap().await.unwrap().unwrap();
        }
        let completion = engine.import_app(&fixture("completion-echo.yml")).await.unwrap().app_id;
        let app = engine.app(completion).unwrap().unwrap();
        let req = MessageRequest { inputs: json!({"query": "hola"}), user: "u".into(), ..Default::default() };
        engine.start_completion(&app, req).await.unwrap().outcome.unwrap().await.unwrap().unwrap();
        let wf = engine.import_app(&fixture("workflow-template-transform.yml")).await.unwrap().app_id;
        let app = engine.app(wf).unwrap().unwrap();
        for name in ["Ada", "Bo"] {
            let req = WorkflowRequest { inputs: json!({"name": name}), user: "u".into(), ..Default::default() };
            engine.start_workflow(&app, req).await.unwrap().outcome.unwrap().await.unwrap().unwrap();
        }
        (chatflow, chatflow_tasks, wf)
    });
    rt.block_on(engine.shutdown(Duration::from_secs(10))).unwrap();
    drop(engine);
    // Without the override: a slow chat turn, stopped by its user.
    let engine = Engine::open(&config(dir, None)).unwrap();
    rt.block_on(async {
        let slow = engine.import_app(&fixture("chat-slow.yml")).await.unwrap().app_id;
        let app = engine.app(slow).unwrap().unwrap();
        let req = MessageRequest { query: "go".into(), user: "u".into(), streaming: true, ..Default::default() };
        let accepted = engine.start_chat(&app, req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        engine.stop_message(slow, accepted.handle.task_id, "u").unwrap();
    });
    rt.block_on(engine.shutdown(Duration::from_secs(10))).unwrap();
    out
}

fn last_position(dir: &Path) -> u64 {
    let engine = Engine::open(&config(dir, None)).unwrap();
    let p = engine.store().last_position().unwrap();
    engine.close().unwrap();
    p
}

#[test]
fn runs_recorded_under_an_override_reexecute_from_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (chatflow, tasks, workflow) = record(dir);
    let before = last_position(dir);
    // No model override now: the runs' own are used.
    let cfg = config(dir, None);
    for task in &tasks {
        let r = reexecute_task(&cfg, *task, &ReexecOptions::default()).unwrap();
        assert!(r.identical(), "{:?}", r.divergence);
        assert_eq!(r.mode, "advanced-chat");
    }
    let mut seen = Vec::new();
    let report = reexecute_app(&cfg, chatflow, &ReexecOptions::default(), &mut |done, total, task, r| {
        assert!(r.is_ok());
        seen.push((done, total, *task));
    })
    .unwrap();
    assert_eq!(report.summary(), "2 runs, 2 identical, 0 diverged, 0 failed");
    assert_eq!(seen, vec![(1, 2, tasks[0]), (2, 2, tasks[1])]);
    let report = reexecute_app(&cfg, workflow, &ReexecOptions::default(), &mut |_, _, _, _| {}).unwrap();
    assert_eq!(report.summary(), "2 runs, 2 identical, 0 diverged, 0 failed");

    // Every app: the stopped chat turn cannot be reproduced.
    let engine = Engine::open(&cfg).unwrap();
    let apps = engine.list_apps().unwrap();
    engine.close().unwrap();
    drop(engine);
    let mut totals = (0, 0, 0);
    for app in apps {
        let r = reexecute_app(&cfg, app.id, &ReexecOptions::default(), &mut |_, _, _, _| {}).unwrap();
        totals = (totals.0 + r.runs.len(), totals.1 + r.identical(), totals.2 + r.failed());
        if app.mode == "chat" {
            assert!(r.runs.iter().all(|(_, r)| matches!(r, Err(ReexecError::Stopped(_)))), "{:?}", r.runs);
        }
    }
    assert_eq!(totals, (6, 5, 1));
    assert_eq!(last_position(dir), before, "re-execution appended to the log");
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let missing = dir.join("nothing-here");
    let e = reexecute_task(&config(&missing, None), Uuid::new_v4(), &ReexecOptions::default()).unwrap_err();
    assert!(matches!(e, Error::MissingDataDir(_)), "{e}");
    assert!(!missing.exists(), "re-execution created a data directory");

    let (_, _, workflow) = record(dir);
    let cfg = config(dir, None);
    let e = reexecute_task(&cfg, Uuid::new_v4(), &ReexecOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Reexec(ReexecError::UnknownTask(_))), "{e}");
    let e = reexecute_app(&cfg, Uuid::new_v4(), &ReexecOptions::default(), &mut |_, _, _, _| {}).unwrap_err();
    assert!(matches!(e, Error::UnknownApp(_)), "{e}");

    // Delete the workflow app: its runs can no longer be re-executed.
    let engine = Engine::open(&cfg).unwrap();
    let tasks = engine.app_run_tasks(workflow).unwrap();
    let deleted = Envelope::new(engine.now(), None, Event::AppDeleted).encode().unwrap();
    let append = Append::new(StreamId::of("app", workflow).unwrap(), vec![deleted]).durable();
    engine.store().append(append).wait().unwrap();
    engine.close().unwrap();
    drop(engine);
    let before = last_position(dir);
    let e = reexecute_task(&cfg, tasks[0], &ReexecOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Reexec(ReexecError::AppDeleted(a)) if a == workflow), "{e}");
    assert!(e.to_string().contains("was deleted"), "{e}");
    let report = reexecute_app(&cfg, workflow, &ReexecOptions::default(), &mut |_, _, _, _| {}).unwrap();
    assert_eq!(report.summary(), "2 runs, 0 identical, 0 diverged, 2 failed");
    assert_eq!(last_position(dir), before);
}

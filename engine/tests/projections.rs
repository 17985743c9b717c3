//! Projections are pure: for random valid event histories, the read models
//! built incrementally (append by append) equal the ones rebuilt from the log,
//! on the memory backend and on sled across restarts.

#[path = "common/mod.rs"]
mod samples;

use std::sync::Arc;

use ferrify_engine::event::*;
use ferrify_engine::model::{ConversationRow, FeedbackRow, FileRow, MessageRow};
use ferrify_engine::projection::messages::message_id_of;
use ferrify_engine::projection::{self, trees};
use ferrify_engine::{Envelope, Json};
use ferrify_store::{Append, EventLog, Options, Store, StreamId};
use proptest::prelude::*;
use samples::id;
use serde_json::json;
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Step {
    Import(u8),
    CreateKey(u8, u8),
    RevokeKey(u8, u8),
    Chat {
        app: u8,
        user: u8,
        conv: Option<u8>,
        words: u8,
        outcome: u8,
        file: Option<u8>,
    },
    Upload {
        app: u8,
        user: u8,
        slot: u8,
    },
    /// Rates the `msg`-th chat message so far: 0 revokes, 1 likes, 2 dislikes.
    Feedback {
        msg: u8,
        rating: u8,
    },
    Rename(u8, u8),
    DeleteConversation(u8),
    Workflow {
        app: u8,
        user: u8,
        nodes: u8,
        fail: bool,
    },
    DeleteApp(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3u8).prop_map(Step::Import),
        (0..3u8, 0..3u8).prop_map(|(a, k)| Step::CreateKey(a, k)),
        (0..3u8, 0..3u8).prop_map(|(a, k)| Step::RevokeKey(a, k)),
        (0..3u8, 0..3u8, proptest::option::of(0..4u8), 0..5u8, 0..3u8, proptest::option::of(0..3u8))
            .prop_map(|(app, user, conv, words, outcome, file)| Step::Chat { app, user, conv, words, outcome, file }),
        (0..3u8, 0..3u8, 0..3u8).prop_map(|(app, user, slot)| Step::Upload { app, user, slot }),
        (0..6u8, 0..3u8).prop_map(|(msg, rating)| Step::Feedback { msg, rating }),
        (0..4u8, 0..3u8).prop_map(|(c, n)| Step::Rename(c, n)),
        (0..4u8).prop_map(Step::DeleteConversation),
        (0..3u8, 0..3u8, 0..4u8, any::<bool>())
            .prop_map(|(app, user, nodes, fail)| { Step::Workflow { app, user, nodes, fail } }),
        (0..3u8).prop_map(Step::DeleteApp),
    ]
}

/// Turns steps into (stream, events) appends with deterministic ids and times.
fn appends(steps: &[Step]) -> Vec<(StreamId, Vec<Envelope>)> {
    let mut out = Vec::new();
    let mut clock = 1_700_000_000_000_000i64;
    let mut tick = || {
        clock += 1_000;
        clock
    };
    let mut convs: Vec<Option<(u8, u8)>> = vec![None; 4]; // conv slot -> (app, user)
    let mut n = 1000u128;
    let mut next_id = || {
        n += 1;
        Uuid::from_u128(n)
    };
    let app_id = |a: u8| id(100 + a as u128);
    // Chat messages so far: (message, app, user, conversation, current feedback id).
    let mut messages: Vec<(Uuid, u8, u8, Uuid, Option<Uuid>)> = Vec::new();
    let user_id = |a: u8, u: u8| id(200 + (a as u128) * 10 + u as u128);
    for s in steps {
        match s.clone() {
            Step::Import(a) => out.push((
                StreamId::of("app", app_id(a)).unwrap(),
                vec![
                    Envelope::new(
                        tick(),
                        None,
                        Event::AppImported {
                            app_id: app_id(a),
                            name: format!("app {a}"),
                            mode: "chat".into(),
                            description: String::new(),
                            icon: "🤖".into(),
                            icon_background: "#FFEAD5".into(),
                            dsl: "app: {}".into(),
                        },
                    ),
                    Envelope::new(
                        tick(),
                        None,
                        Event::WorkflowPublished {
                            workflow_id: next_id(),
                            graph: Json(json!({})),
                            features: Json(json!({})),
                            environment: Json(json!([])),
                            conversation_variables: Json(json!([])),
                        },
                    ),
                ],
            )),
            Step::CreateKey(a, k) => out.push((
                StreamId::of("app", app_id(a)).unwrap(),
                vec![Envelope::new(
                    tick(),
                    None,
                    Event::ApiKeyCreated {
                        key_id: id(300 + (a as u128) * 10 + k as u128),
                        token_hash: format!("{:064x}", next_id().as_u128()),
                        token_hint: "app-…".into(),
                    },
                )],
            )),
            Step::RevokeKey(a, k) => out.push((
                StreamId::of("app", app_id(a)).unwrap(),
                vec![Envelope::new(
                    tick(),
                    None,
                    Event::ApiKeyRevoked { key_id: id(300 + (a as u128) * 10 + k as u128) },
                )],
            )),
            Step::DeleteApp(a) => out
                .push((StreamId::of("app", app_id(a)).unwrap(), vec![Envelope::new(tick(), None, Event::AppDeleted)])),
            Step::Upload { app, user, slot } => out.push((
                StreamId::of("file", id(500 + slot as u128)).unwrap(),
                vec![Envelope::new(
                    tick(),
                    None,
                    Event::FileUploaded(Box::new(FileUploaded {
                        file_id: id(500 + slot as u128),
                        app_id: app_id(app),
                        end_user_id: user_id(app, user),
                        user: format!("user{user}"),
                        name: format!("f{slot}.txt"),
                        size: slot as u64,
                        extension: "txt".into(),
                        mime_type: "text/plain".into(),
                        category: "document".into(),
                        key: id(500 + slot as u128).to_string(),
                        storage: "memory".into(),
                    })),
                )],
            )),
            Step::Feedback { msg, rating } => {
                let Some(m) = messages.get_mut(msg as usize) else { continue };
                let (message_id, app, user, conversation, current) = *m;
                let event = match (rating, current) {
                    (0, Some(feedback_id)) => {
                        m.4 = None;
                        Event::FeedbackRevoked { feedback_id, message_id, app_id: app_id(app) }
                    }
                    (0, None) => continue,
                    (r, current) => {
                        let feedback_id = current.unwrap_or_else(&mut next_id);
                        m.4 = Some(feedback_id);
                        Event::FeedbackGiven {
                            feedback_id,
                            message_id,
                            app_id: app_id(app),
                            conversation_id: Some(conversation),
                            end_user_id: user_id(app, user),
                            rating: if r == 1 { "like" } else { "dislike" }.into(),
                            content: (r == 2).then(|| "meh".into()),
                        }
                    }
                };
                out.push((StreamId::of("feedback", message_id).unwrap(), vec![Envelope::new(tick(), None, event)]));
            }
            Step::Chat { app, user, conv, words, outcome, file } => {
                let task = next_id();
                let (conversation_id, new) = match conv {
                    Some(slot) if convs[slot as usize] == Some((app, user)) => (id(400 + slot as u128), false),
                    Some(slot) if convs[slot as usize].is_none() => {
                        convs[slot as usize] = Some((app, user));
                        (id(400 + slot as u128), true)
                    }
                    _ => (next_id(), true),
                };
                let mut run = samples::run_started(0);
                run.task_id = task;
                run.app_id = app_id(app);
                run.end_user_id = user_id(app, user);
                run.user = format!("user{user}");
                run.conversation_id = Some(conversation_id);
                run.new_conversation =
                    new.then(|| NewConversation { name: "New conversation".into(), introduction: String::new() });
                // New runs derive their message id from the task; older ones did not.
                let message_id = if words % 2 == 0 { message_id_of(task) } else { next_id() };
                run.message_id = Some(message_id);
                run.workflow_run_id = None;
                if let Some(slot) = file {
                    run.files = Json(json!([{"type": "document", "transfer_method": "local_file",
                        "related_id": id(500 + slot as u128).to_string()}]));
                }
                messages.push((message_id, app, user, conversation_id, None));
                let mut events = vec![Envelope::new(tick(), Some("t".into()), Event::RunStarted(Box::new(run)))];
                let mut answer = String::new();
                for w in 0..words {
                    let text = format!("w{w} ");
                    answer.push_str(&text);
                    events.push(Envelope::new(tick(), None, Event::AnswerChunk { text, from_variable_selector: None }));
                }
                events.push(Envelope::new(
                    tick(),
                    None,
                    match outcome {
                        0 => Event::RunFailed {
                            code: "completion_request_error".into(),
                            message: "x".into(),
                            status: 400,
                        },
                        _ => {
                            Event::MessageEnded { answer, usage: samples::usage(), latency: 0.1, stopped: outcome == 2 }
                        }
                    },
                ));
                out.push((StreamId::of("run", task).unwrap(), events));
            }
            Step::Rename(slot, name) => out.push((
                StreamId::of("conversation", id(400 + slot as u128)).unwrap(),
                vec![Envelope::new(tick(), None, Event::ConversationRenamed { name: format!("name {name}") })],
            )),
            Step::DeleteConversation(slot) => out.push((
                StreamId::of("conversation", id(400 + slot as u128)).unwrap(),
                vec![Envelope::new(tick(), None, Event::ConversationDeleted)],
            )),
            Step::Workflow { app, user, nodes, fail } => {
                let task = next_id();
                let mut run = samples::run_started(0);
                run.task_id = task;
                run.app_id = app_id(app);
                run.end_user_id = user_id(app, user);
                run.user = format!("user{user}");
                run.mode = "workflow".into();
                run.conversation_id = None;
                run.new_conversation = None;
                run.message_id = None;
                run.workflow_run_id = Some(next_id());
                let mut events = vec![Envelope::new(tick(), None, Event::RunStarted(Box::new(run)))];
                for i in 0..nodes {
                    let exec = next_id();
                    events.push(Envelope::new(
                        tick(),
                        None,
                        Event::NodeStarted(Box::new(NodeStarted {
                            node_execution_id: exec,
                            node_id: format!("n{i}"),
                            node_type: "template-transform".into(),
                            title: format!("N{i}"),
                            index: i as u64 + 1,
                            predecessor_node_id: None,
                            inputs: Json(json!({})),
                            iteration_id: None,
                            loop_id: None,
                            extras: Json(json!({})),
                        })),
                    ));
                    events.push(Envelope::new(
                        tick(),
                        None,
                        Event::NodeFinished(Box::new(NodeFinished {
                            node_execution_id: exec,
                            node_id: format!("n{i}"),
                            node_type: "template-transform".into(),
                            status: "succeeded".into(),
                            inputs: Json(json!({})),
                            process_data: Json(json!(null)),
                            outputs: Json(json!({"output": i})),
                            error: None,
                            elapsed_time: 0.01,
                            execution_metadata: Json(json!({})),
                        })),
                    ));
                }
                events.push(Envelope::new(
                    tick(),
                    None,
                    Event::WorkflowFinished(Box::new(WorkflowFinished {
                        status: if fail { "failed" } else { "succeeded" }.into(),
                        outputs: Json(json!({"n": nodes})),
                        error: fail.then(|| "boom".into()),
                        total_tokens: 0,
                        total_steps: nodes as u64,
                        exceptions_count: 0,
                        elapsed_time: 0.5,
                    })),
                ));
                out.push((StreamId::of("run", task).unwrap(), events));
            }
        }
    }
    out
}

fn append_all(store: &Store, batch: &[(StreamId, Vec<Envelope>)]) {
    // Appended as the engine does, with the decoded events handed to the
    // projectors; rebuilds decode the stored bytes instead, so the equality
    // checks below also prove that both paths project the same.
    for (stream, events) in batch {
        let payloads = events.iter().map(|e| e.encode().unwrap()).collect();
        let decoded = events.iter().map(|e| Arc::new(e.clone()) as Arc<dyn std::any::Any + Send + Sync>).collect();
        store.append(Append::new(stream.clone(), payloads).with_decoded(decoded)).wait().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn incremental_equals_rebuilt(steps in proptest::collection::vec(step(), 1..40)) {
        let batch = appends(&steps);
        let store = Store::open_memory(projection::all(), Options::default()).unwrap();
        append_all(&store, &batch);
        let incremental = store.read_models().unwrap();
        store.rebuild(Box::new(|_, _| {})).unwrap();
        prop_assert_eq!(store.read_models().unwrap(), incremental);
    }

    #[test]
    fn sled_with_restarts_equals_memory(steps in proptest::collection::vec(step(), 1..30), cut in 0usize..30) {
        let batch = appends(&steps);
        let cut = cut.min(batch.len());
        let memory = Store::open_memory(projection::all(), Options::default()).unwrap();
        append_all(&memory, &batch);
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open_sled(dir.path(), projection::all(), Options::default()).unwrap();
            append_all(&s, &batch[..cut]);
            s.close().unwrap();
        }
        {
            // Reopen without projections, append the rest: read models fall behind...
            let s = Store::open_sled(dir.path(), vec![], Options::default()).unwrap();
            append_all(&s, &batch[cut..]);
            s.close().unwrap();
        }
        // ...and catch up on the next open.
        let s = Store::open_sled(dir.path(), projection::all(), Options::default()).unwrap();
        prop_assert_eq!(s.read_models().unwrap(), memory.read_models().unwrap());
    }
}

#[test]
fn a_chat_turn_projects_conversation_and_message() {
    let steps = vec![
        Step::Import(0),
        Step::Chat { app: 0, user: 0, conv: Some(0), words: 3, outcome: 1, file: None },
        Step::Chat { app: 0, user: 0, conv: Some(0), words: 1, outcome: 1, file: None },
        Step::Rename(0, 7),
    ];
    let store = Store::open_memory(projection::all(), Options::default()).unwrap();
    append_all(&store, &appends(&steps));
    let conv: ConversationRow = store.get_json(trees::CONVERSATIONS, id(400).as_bytes()).unwrap().unwrap();
    assert_eq!(conv.name, "name 7");
    assert_eq!(conv.message_count, 2);
    let index = store.scan(trees::CONV_MESSAGES, id(400).as_bytes(), None, 10, false).unwrap();
    assert_eq!(index.len(), 2);
    let first_msg = Uuid::from_slice(&index[0].0[24..]).unwrap();
    let msg: MessageRow = store.get_json(trees::MESSAGES, first_msg.as_bytes()).unwrap().unwrap();
    assert_eq!(msg.answer, "w0 w1 w2", "stored trimmed, as Dify stores it");
    assert_eq!(msg.status, "normal");
    let by_updated = store.scan(trees::CONV_BY_UPDATED, b"", None, 10, false).unwrap();
    assert_eq!(by_updated.len(), 1, "re-indexing must drop the stale entry");
    // Each index holds the conversation once, under its current time.
    use ferrify_engine::projection::conversations::index_key;
    assert!(conv.updated_at > conv.created_at);
    assert_eq!(by_updated[0].0, index_key(&conv, conv.updated_at));
    let by_created = store.scan(trees::CONV_BY_CREATED, b"", None, 10, false).unwrap();
    assert_eq!(by_created.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![index_key(&conv, conv.created_at)]);
}

#[test]
fn messages_are_found_by_task_with_or_without_an_index() {
    // Two words: the message id is derived from the task (no index entry);
    // one word: a message id of an earlier version (indexed by task).
    let steps = vec![
        Step::Import(0),
        Step::Chat { app: 0, user: 0, conv: Some(0), words: 2, outcome: 1, file: None },
        Step::Chat { app: 0, user: 0, conv: Some(0), words: 1, outcome: 1, file: None },
    ];
    let store = Store::open_memory(projection::all(), Options::default()).unwrap();
    append_all(&store, &appends(&steps));
    let index = store.scan(trees::CONV_MESSAGES, id(400).as_bytes(), None, 10, false).unwrap();
    let rows: Vec<MessageRow> =
        index.iter().map(|(k, _)| store.get_json(trees::MESSAGES, &k[24..]).unwrap().unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].id, message_id_of(rows[0].task_id));
    assert_ne!(rows[1].id, message_id_of(rows[1].task_id));
    for (row, answer) in rows.iter().zip(["w0 w1", "w0"]) {
        assert_eq!((row.answer.as_str(), row.status.as_str()), (answer, "normal"));
    }
    let by_task = store.scan(trees::MESSAGE_BY_TASK, b"", None, 10, false).unwrap();
    assert_eq!(by_task.len(), 1, "only the earlier version's run is indexed");
    assert_eq!(by_task[0].0, rows[1].task_id.as_bytes());
}

#[test]
fn uploads_references_and_feedback_project() {
    let steps = vec![
        Step::Import(0),
        Step::Upload { app: 0, user: 0, slot: 1 },
        Step::Chat { app: 0, user: 0, conv: None, words: 1, outcome: 1, file: Some(1) },
        Step::Feedback { msg: 0, rating: 1 },
        Step::Feedback { msg: 0, rating: 2 },
    ];
    let store = Store::open_memory(projection::all(), Options::default()).unwrap();
    append_all(&store, &appends(&steps));
    let file: FileRow = store.get_json(trees::FILES, id(501).as_bytes()).unwrap().unwrap();
    assert_eq!((file.name.as_str(), file.app_id), ("f1.txt", id(100)));
    let refs = store.scan(trees::FILE_REFS, id(501).as_bytes(), None, 10, false).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(&refs[0].0[16..32], id(100).as_bytes());
    let index = store.scan(trees::APP_FEEDBACKS, id(100).as_bytes(), None, 10, false).unwrap();
    assert_eq!(index.len(), 1, "a changed rating keeps one entry");
    let fb: FeedbackRow = store.get_json(trees::FEEDBACKS, &index[0].1).unwrap().unwrap();
    assert_eq!((fb.rating.as_str(), fb.content.as_deref()), ("dislike", Some("meh")));
    append_all(&store, &appends(&[steps.clone(), vec![Step::Feedback { msg: 0, rating: 0 }]].concat())[5..]);
    assert!(store.scan(trees::APP_FEEDBACKS, id(100).as_bytes(), None, 10, false).unwrap().is_empty());
}

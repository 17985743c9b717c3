//! Shared test data (one sample event of every variant, random valid event histories) and helpers.
#![allow(dead_code)]

use ferrify_engine::event::*;
use ferrify_engine::Json;
use serde_json::json;
use uuid::Uuid;

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn usage() -> Usage {
    Usage {
        prompt_tokens: 12,
        completion_tokens: 3,
        prompt_unit_price: "0.001".into(),
        prompt_price_unit: "0.001".into(),
        prompt_price: "0.0000120".into(),
        completion_unit_price: "0.002".into(),
        completion_price_unit: "0.001".into(),
        completion_price: "0.0000060".into(),
        total_price: "0.0000180".into(),
        currency: "USD".into(),
        latency: 0.25,
        time_to_first_token: Some(0.1),
        time_to_generate: None,
    }
}

pub fn run_started(task: u128) -> RunStarted {
    RunStarted {
        task_id: id(task),
        app_id: id(1),
        mode: "chat".into(),
        end_user_id: id(2),
        user: "alice".into(),
        conversation_id: Some(id(3)),
        new_conversation: Some(NewConversation { name: "New conversation".into(), introduction: "Hi".into() }),
        message_id: Some(id(4)),
        workflow_run_id: Some(id(5)),
        workflow_id: Some(id(6)),
        query: "héllo".into(),
        inputs: Json(json!({"city": "SF", "n": 3})),
        files: Json(json!([])),
        streaming: true,
        options: Json(json!({"model": {"provider": "builtin", "name": "echo"}})),
    }
}

/// One event of every variant, in variant order. Adding a variant to `Event`
/// without adding it here fails to compile (see `variant_index`).
pub fn every_variant() -> Vec<Event> {
    let events = vec![
        Event::AppImported {
            app_id: id(1),
            name: "Echo".into(),
            mode: "chat".into(),
            description: "d".into(),
            icon: "🤖".into(),
            icon_background: "#FFEAD5".into(),
            dsl: "app:\n  mode: chat\n".into(),
        },
        Event::WorkflowPublished {
            workflow_id: id(6),
            graph: Json(json!({"nodes": [], "edges": []})),
            features: Json(json!({})),
            environment: Json(json!([])),
            conversation_variables: Json(json!([])),
        },
        Event::ApiKeyCreated { key_id: id(7), token_hash: "ab".repeat(32), token_hint: "app-…wxyz".into() },
        Event::ApiKeyRevoked { key_id: id(7) },
        Event::AppDeleted,
        Event::RunStarted(Box::new(run_started(10))),
        Event::ModelCalled {
            node_id: Some("llm".into()),
            provider: "builtin".into(),
            model: "echo".into(),
            request: Json(json!({"messages": [{"role": "user", "content": "hi"}]})),
        },
        Event::AnswerChunk { text: "hi ".into(), from_variable_selector: Some(vec!["llm".into(), "text".into()]) },
        Event::ModelAnswered { node_id: None, text: "hi there".into(), usage: usage() },
        Event::AnswerReplaced { answer: "***".into(), reason: "output_moderation".into() },
        Event::MessageEnded { answer: "hi there".into(), usage: usage(), latency: 0.5, stopped: false },
        Event::StopRequested { user: "alice".into() },
        Event::RunFailed { code: "completion_request_error".into(), message: "boom".into(), status: 400 },
        Event::NodeStarted(Box::new(NodeStarted {
            node_execution_id: id(20),
            node_id: "1711".into(),
            node_type: "llm".into(),
            title: "LLM".into(),
            index: 2,
            predecessor_node_id: Some("start".into()),
            inputs: Json(json!({"q": 1})),
            iteration_id: None,
            loop_id: Some("loop1".into()),
            extras: Json(json!({})),
        })),
        Event::NodeFinished(Box::new(NodeFinished {
            node_execution_id: id(20),
            node_id: "1711".into(),
            node_type: "llm".into(),
            status: "succeeded".into(),
            inputs: Json(json!({"q": 1})),
            process_data: Json(json!(null)),
            outputs: Json(json!({"text": "ok"})),
            error: None,
            elapsed_time: 0.125,
            execution_metadata: Json(json!({"total_tokens": 15})),
        })),
        Event::TextChunk { text: "chunk".into(), from_variable_selector: None },
        Event::WorkflowFinished(Box::new(WorkflowFinished {
            status: "succeeded".into(),
            outputs: Json(json!({"answer": "ok"})),
            error: None,
            total_tokens: 15,
            total_steps: 3,
            exceptions_count: 0,
            elapsed_time: 1.5,
        })),
        Event::ConversationRenamed { name: "Trip".into() },
        Event::ConversationDeleted,
        Event::ConversationVariableUpdated {
            variable_id: "v1".into(),
            name: "topic".into(),
            value_type: "string".into(),
            value: Json(json!("billing")),
        },
        Event::NodeRetried {
            finished: Box::new(NodeFinished {
                node_execution_id: id(21),
                node_id: "http".into(),
                node_type: "http-request".into(),
                status: "retry".into(),
                inputs: Json(json!({})),
                process_data: Json(json!(null)),
                outputs: Json(json!({})),
                error: Some("timeout".into()),
                elapsed_time: 0.5,
                execution_metadata: Json(json!({})),
            }),
            retry_index: 1,
        },
        Event::ContainerStarted(Box::new(ContainerStarted {
            kind: "iteration".into(),
            node_execution_id: id(22),
            node_id: "iter".into(),
            node_type: "iteration".into(),
            title: "Iteration".into(),
            length: 3,
            inputs: Json(json!({"iterator_selector": [1, 2, 3]})),
        })),
        Event::ContainerNext {
            kind: "loop".into(),
            node_execution_id: id(23),
            node_id: "loop".into(),
            index: 1,
            pre_loop_output: Json(json!({"i": 1})),
        },
        Event::ContainerCompleted(Box::new(ContainerCompleted {
            kind: "iteration".into(),
            node_execution_id: id(22),
            node_id: "iter".into(),
            inputs: Json(json!({})),
            outputs: Json(json!({"output": [1, 2, 3]})),
            status: "succeeded".into(),
            error: None,
            elapsed_time: 0.25,
            total_tokens: 0,
            steps: 6,
        })),
        Event::RunInterrupted {
            answer: "Lorem ipsum".into(),
            message: "interrupted: the server stopped during this run".into(),
        },
        Event::FileUploaded(Box::new(FileUploaded {
            file_id: id(30),
            app_id: id(1),
            end_user_id: id(2),
            user: "alice".into(),
            name: "notes.txt".into(),
            size: 2000,
            extension: "txt".into(),
            mime_type: "text/plain".into(),
            category: "document".into(),
            key: id(30).to_string(),
            storage: "local".into(),
        })),
        Event::FeedbackGiven {
            feedback_id: id(31),
            message_id: id(4),
            app_id: id(1),
            conversation_id: Some(id(3)),
            end_user_id: id(2),
            rating: "like".into(),
            content: Some("great".into()),
        },
        Event::FeedbackRevoked { feedback_id: id(31), message_id: id(4), app_id: id(1) },
        Event::AnnotationCreated {
            annotation_id: id(40),
            question: "What is ferrify?".into(),
            answer: "A server.".into(),
            embedding: Some(vec![0.5, -0.25]),
        },
        Event::AnnotationUpdated {
            annotation_id: id(40),
            question: "What is it?".into(),
            answer: "A server.".into(),
            embedding: None,
        },
        Event::AnnotationDeleted { annotation_id: id(40) },
        Event::AnnotationReplyEnabled(Box::new(AnnotationReplyEnabled {
            job_id: id(41),
            score_threshold: 0.9,
            embedding_provider_name: "openai".into(),
            embedding_model_name: "text-embedding-3-small".into(),
            embeddings: Some(vec![(id(40), vec![1.0, 0.0])]),
        })),
        Event::AnnotationReplyDisabled { job_id: id(42) },
        Event::AnnotationReplied { app_id: id(1), annotation_id: id(40), score: 0.95 },
        Event::InputModerated { kind: "keywords".into(), preset_response: "Sorry.".into() },
        Event::QuestionsSuggested {
            message_id: id(4),
            app_id: id(1),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            request: Json(json!({"messages": [{"role": "user", "content": "q"}]})),
            text: "[\"a?\",\"b?\"]".into(),
            questions: vec!["a?".into(), "b?".into()],
        },
        Event::TtsAudio { audio: vec![0xff, 0xf3, 0x44, 0xc4, 0x00] },
        Event::TtsEnded,
    ];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(variant_index(e), i, "every_variant must list variants in declaration order");
    }
    events
}

/// The declaration index of a variant; exhaustive on purpose.
pub fn variant_index(e: &Event) -> usize {
    match e {
        Event::AppImported { .. } => 0,
        Event::WorkflowPublished { .. } => 1,
        Event::ApiKeyCreated { .. } => 2,
        Event::ApiKeyRevoked { .. } => 3,
        Event::AppDeleted => 4,
        Event::RunStarted(_) => 5,
        Event::ModelCalled { .. } => 6,
        Event::AnswerChunk { .. } => 7,
        Event::ModelAnswered { .. } => 8,
        Event::AnswerReplaced { .. } => 9,
        Event::MessageEnded { .. } => 10,
        Event::StopRequested { .. } => 11,
        Event::RunFailed { .. } => 12,
        Event::NodeStarted(_) => 13,
        Event::NodeFinished(_) => 14,
        Event::TextChunk { .. } => 15,
        Event::WorkflowFinished(_) => 16,
        Event::ConversationRenamed { .. } => 17,
        Event::ConversationDeleted => 18,
        Event::ConversationVariableUpdated { .. } => 19,
        Event::NodeRetried { .. } => 20,
        Event::ContainerStarted(_) => 21,
        Event::ContainerNext { .. } => 22,
        Event::ContainerCompleted(_) => 23,
        Event::RunInterrupted { .. } => 24,
        Event::FileUploaded(_) => 25,
        Event::FeedbackGiven { .. } => 26,
        Event::FeedbackRevoked { .. } => 27,
        Event::AnnotationCreated { .. } => 28,
        Event::AnnotationUpdated { .. } => 29,
        Event::AnnotationDeleted { .. } => 30,
        Event::AnnotationReplyEnabled(_) => 31,
        Event::AnnotationReplyDisabled { .. } => 32,
        Event::AnnotationReplied { .. } => 33,
        Event::InputModerated { .. } => 34,
        Event::QuestionsSuggested { .. } => 35,
        Event::TtsAudio { .. } => 36,
        Event::TtsEnded => 37,
    }
}

/// An engine on an in-memory log whose commits fail while the returned switch is on.
pub fn refusing_engine(
    config: &ferrify_engine::EngineConfig,
) -> (ferrify_engine::Engine, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let (store, refuse) =
        ferrify_store::conformance::open_refusing(ferrify_engine::projection::all(), Default::default()).unwrap();
    (ferrify_engine::Engine::open_on(config, store).unwrap(), refuse)
}

/// Waits until `engine` has no run in flight, checking every 10 ms; fails
/// with `why` after `checks` checks.
pub async fn wait_until_idle(engine: &ferrify_engine::Engine, checks: u32, why: &str) {
    let mut waited = 0;
    while engine.runs_in_flight() > 0 {
        assert!(waited < checks, "{why}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
}

//! Shared bench data: realistic encoded events.
#![allow(dead_code)]

use ferrify_engine::event::{Event, NewConversation, RunStarted, Usage};
use ferrify_engine::{Envelope, Json};
use serde_json::json;
use uuid::Uuid;

pub fn chunk(i: u64) -> Vec<u8> {
    Envelope::new(
        1_700_000_000_000_000 + i as i64,
        None,
        Event::AnswerChunk { text: format!("word{i} "), from_variable_selector: None },
    )
    .encode()
    .unwrap()
}

/// The events of one chat turn of `words` tokens: started, chunks, ended.
pub fn chat_turn(app: Uuid, task: Uuid, words: u64) -> Vec<Vec<u8>> {
    let run = RunStarted {
        task_id: task,
        app_id: app,
        mode: "chat".into(),
        end_user_id: Uuid::from_u128(7),
        user: "bench".into(),
        conversation_id: Some(Uuid::new_v4()),
        new_conversation: Some(NewConversation { name: "New conversation".into(), introduction: String::new() }),
        message_id: Some(Uuid::new_v4()),
        workflow_run_id: None,
        workflow_id: None,
        query: "hello".into(),
        inputs: Json(json!({})),
        files: Json(json!([])),
        streaming: true,
        options: Json(json!({})),
    };
    let mut out = vec![Envelope::new(1, None, Event::RunStarted(Box::new(run))).encode().unwrap()];
    let mut answer = String::new();
    for i in 0..words {
        answer.push_str(&format!("word{i} "));
        out.push(chunk(i));
    }
    out.push(
        Envelope::new(2, None, Event::MessageEnded { answer, usage: Usage::default(), latency: 0.1, stopped: false })
            .encode()
            .unwrap(),
    );
    out
}

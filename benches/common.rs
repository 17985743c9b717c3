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

/// `start → (template-transform | if-else)×98 → end`.
pub fn chain(n: usize) -> String {
    let mut nodes = vec![
        "    - {id: n0, data: {type: start, variables: [{variable: x, type: text-input, required: true, label: x}]}}"
            .to_string(),
    ];
    let mut edges = Vec::new();
    for i in 1..n - 1 {
        let node = if i % 2 == 1 {
            format!("    - {{id: n{i}, data: {{type: template-transform, template: '{{{{ x }}}}-{i}', variables: [{{variable: x, value_selector: [n0, x]}}]}}}}")
        } else {
            format!("    - {{id: n{i}, data: {{type: if-else, cases: [{{case_id: 'true', logical_operator: and, conditions: [{{variable_selector: [n{}, output], comparison_operator: contains, value: '-'}}]}}]}}}}", i - 1)
        };
        nodes.push(node);
        let handle = if i >= 2 && (i - 1) % 2 == 0 { "'true'" } else { "source" };
        edges.push(format!("    - {{source: n{}, sourceHandle: {handle}, target: n{i}}}", i - 1));
    }
    let last = n - 1;
    nodes.push(format!(
        "    - {{id: n{last}, data: {{type: end, outputs: [{{variable: out, value_selector: [n{}, output]}}]}}}}",
        n - 3
    ));
    let handle = if (n - 2).is_multiple_of(2) { "'true'" } else { "source" };
    edges.push(format!("    - {{source: n{}, sourceHandle: {handle}, target: n{last}}}", n - 2));
    doc(&nodes, &edges)
}

/// A workflow app's DSL from its node and edge lines.
pub fn doc(nodes: &[String], edges: &[String]) -> String {
    format!(
        "app: {{mode: workflow, name: bench}}\nworkflow:\n  graph:\n    nodes:\n{}\n    edges:\n{}\n",
        nodes.join("\n"),
        edges.join("\n")
    )
}

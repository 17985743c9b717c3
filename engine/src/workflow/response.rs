//! The response coordinator: which text of Answer (chatflow) and End
//! (workflow) nodes reaches the client, and when.
//!
//! Each top-level response node is a template of segments. Its session is
//! activated once every node that decides whether it runs (branches,
//! containers, earlier response nodes) has finished or been skipped; one
//! session streams at a time, the others wait in activation order. Text
//! segments go out at once, `sys`/`env`/`conversation` values as soon as
//! reached, a streaming LLM's `text` chunk by chunk as it is generated, any
//! other value whole once its node finished; a skipped node contributes
//! nothing. See workflow-dsl.md §7.

use foldhash::{HashMap, HashSet};

use crate::event::Event;

use super::graph::Graph;
use super::pool::{render_markdown, Pool};
use super::template::Segment;

struct Session {
    node: usize,
    cursor: usize,
    /// Bytes of the current streaming segment already sent.
    offset: usize,
}

/// Per-run coordinator state.
pub struct Coordinator {
    chat: bool,
    pending: Vec<usize>,
    /// Unresolved deciders per pending response node.
    waiting_on: HashMap<usize, usize>,
    /// The response nodes each decider decides.
    decides: HashMap<usize, Vec<usize>>,
    /// Nodes already counted as resolved.
    resolved: HashSet<usize>,
    active: Vec<Session>,
    finished: HashSet<usize>,
    skipped: HashSet<usize>,
    /// Text generated so far by streaming nodes that a response references.
    buffers: HashMap<usize, String>,
    /// Everything emitted (the chatflow answer).
    pub answer: String,
}

impl Coordinator {
    pub fn new(graph: &Graph, chat: bool) -> Coordinator {
        let mut buffers = HashMap::default();
        for &r in &graph.responses {
            for seg in graph.nodes[r].node.segments().unwrap_or(&[]) {
                if let Segment::Var(sel) = seg {
                    if let Some(&n) = graph.index.get(&sel[0]) {
                        if sel.len() == 2 && sel[1] == "text" && graph.nodes[n].node.streams_text() {
                            buffers.insert(n, String::new());
                        }
                    }
                }
            }
        }
        let mut waiting_on = HashMap::default();
        let mut decides: HashMap<usize, Vec<usize>> = HashMap::default();
        for &r in &graph.responses {
            let ds = graph.deciders.get(&r).map(Vec::as_slice).unwrap_or(&[]);
            waiting_on.insert(r, ds.len());
            for &d in ds {
                decides.entry(d).or_default().push(r);
            }
        }
        Coordinator {
            chat,
            pending: graph.responses.clone(),
            waiting_on,
            decides,
            resolved: HashSet::default(),
            active: Vec::new(),
            finished: HashSet::default(),
            skipped: HashSet::default(),
            buffers,
            answer: String::new(),
        }
    }

    /// Whether chunks of node `n` are wanted.
    pub fn wants_chunks(&self, n: usize) -> bool {
        self.buffers.contains_key(&n)
    }

    pub fn start(&mut self, graph: &Graph, pool: &Pool, out: &mut Vec<Event>) {
        self.activate();
        self.advance(graph, pool, out);
    }

    /// Counts `n` as decided for the responses it decides; true when one of them may now open.
    fn resolve(&mut self, n: usize) -> bool {
        if !self.resolved.insert(n) {
            return false;
        }
        let mut opened = false;
        for r in self.decides.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(c) = self.waiting_on.get_mut(r) {
                *c = c.saturating_sub(1);
                opened |= *c == 0;
            }
        }
        opened
    }

    pub fn node_finished(&mut self, graph: &Graph, pool: &Pool, n: usize, out: &mut Vec<Event>) {
        self.finished.insert(n);
        if self.resolve(n) {
            self.activate();
        }
        if !self.active.is_empty() {
            self.advance(graph, pool, out);
        }
    }

    pub fn node_skipped(&mut self, graph: &Graph, pool: &Pool, n: usize, out: &mut Vec<Event>) {
        self.skipped.insert(n);
        if self.resolve(n) || self.pending.contains(&n) {
            self.activate();
        }
        if !self.active.is_empty() {
            self.advance(graph, pool, out);
        }
    }

    pub fn chunk(&mut self, graph: &Graph, pool: &Pool, n: usize, text: &str, out: &mut Vec<Event>) {
        if let Some(b) = self.buffers.get_mut(&n) {
            b.push_str(text);
            self.advance(graph, pool, out);
        }
    }

    /// At the end of a run: everything not finished counts as skipped, and
    /// the sessions of response nodes that ran are played out.
    pub fn finish(&mut self, graph: &Graph, pool: &Pool, out: &mut Vec<Event>) {
        for i in 0..graph.nodes.len() {
            if !self.finished.contains(&i) {
                self.skipped.insert(i);
                self.resolve(i);
            }
        }
        self.activate();
        self.advance(graph, pool, out);
    }

    fn activate(&mut self) {
        let mut still = Vec::new();
        for r in std::mem::take(&mut self.pending) {
            if self.skipped.contains(&r) {
                continue;
            }
            if self.waiting_on.get(&r).is_none_or(|c| *c == 0) {
                self.active.push(Session { node: r, cursor: 0, offset: 0 });
            } else {
                still.push(r);
            }
        }
        self.pending = still;
    }

    fn emit(&mut self, text: String, selector: Option<Vec<String>>, out: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        // The text said so far: a chatflow's answer, a workflow's streamed text (what auto-play speaks).
        self.answer.push_str(&text);
        if self.chat {
            out.push(Event::AnswerChunk { text, from_variable_selector: selector });
        } else {
            out.push(Event::TextChunk { text, from_variable_selector: selector });
        }
    }

    fn advance(&mut self, graph: &Graph, pool: &Pool, out: &mut Vec<Event>) {
        while let Some(session) = self.active.first() {
            let node = session.node;
            if self.skipped.contains(&node) {
                self.active.remove(0);
                continue;
            }
            let segments = graph.nodes[node].node.segments().unwrap_or(&[]);
            let (mut cursor, mut offset) = (session.cursor, session.offset);
            let mut waiting = false;
            while cursor < segments.len() {
                match &segments[cursor] {
                    Segment::Text(t) => {
                        let sel = self.chat.then(|| vec![graph.nodes[node].id.clone(), "answer".to_string()]);
                        self.emit(t.clone(), sel, out);
                    }
                    Segment::Var(sel) => {
                        let source = graph.index.get(&sel[0]).copied().filter(|&n| n != node);
                        match source {
                            Some(n) if self.skipped.contains(&n) => {}
                            Some(n) if self.buffers.contains_key(&n) && sel.len() == 2 && sel[1] == "text" => {
                                let text = self.buffers.get(&n).map(|b| b[offset.min(b.len())..].to_string());
                                if let Some(text) = text {
                                    offset += text.len();
                                    self.emit(text, Some(sel.clone()), out);
                                }
                                if !self.finished.contains(&n) {
                                    waiting = true;
                                    break;
                                }
                                offset = 0;
                            }
                            Some(n) if !self.finished.contains(&n) => {
                                waiting = true;
                                break;
                            }
                            _ => {
                                if let Some(v) = pool.get(sel) {
                                    self.emit(render_markdown(&v), Some(sel.clone()), out);
                                }
                            }
                        }
                    }
                }
                cursor += 1;
            }
            if waiting {
                if let Some(s) = self.active.first_mut() {
                    s.cursor = cursor;
                    s.offset = offset;
                }
                return;
            }
            self.active.remove(0);
        }
    }
}

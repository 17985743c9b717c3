//! `ferrify replay TASK_ID`: a past run's stream as it was served (SSE), as
//! JSON lines, or as a timeline of its nodes.
//!
//! A transcript is a read of the run's stream `run/<task_id>`: its events are
//! decoded and mapped through [`ferrify_engine::wire`], the mapping that
//! served the live stream, so the SSE transcript is byte for byte what a
//! client that did not opt in to `id:` lines received, keep-alive pings
//! aside. Nothing is appended to the log: the data directory is opened (its
//! read models may catch up with the log, as on any start) and read.
//!
//! ```text
//!  run/<task_id>   RunStarted  NodeStarted  TextChunk … WorkflowFinished │ StopRequested
//!  frames                      node_started text_chunk  workflow_finished │ (after the
//!                                                                         │  terminal frame:
//!                                                                         │  not served)
//! ```

use std::io::{self, Write};
use std::time::{Duration, Instant};

use ferrify_engine::wire::{SseEncoder, WireRun};
use ferrify_engine::{Engine, EngineConfig, Envelope};
use ferrify_store::{EventLog, StreamId};
use uuid::Uuid;

use crate::timeline::Timeline;

/// Records read from the log at a time.
const PAGE: usize = 1024;

/// How a transcript is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The SSE frames exactly as served (without `id:` lines).
    Sse,
    /// One data frame per line.
    Json,
    /// A table of nodes: start offset, duration, status, tokens.
    Timeline,
}

/// Why a transcript could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("no run with task id {0} in this data directory")]
    UnknownTask(Uuid),
    #[error("--speed must be a number greater than 0 (1 is real time, 2 twice as fast), not {0}")]
    BadSpeed(f64),
    #[error("--speed paces the sse and json formats; a timeline is printed at once")]
    SpeedWithTimeline,
    #[error("{0}")]
    NoLog(String),
    #[error(transparent)]
    Store(#[from] ferrify_store::Error),
    #[error("writing the transcript: {0}")]
    Io(#[from] io::Error),
}

/// A run as recorded: its events in order, up to and including the one
/// whose frame ended the served stream.
#[derive(Clone, Debug)]
pub struct Run {
    pub task_id: Uuid,
    pub events: Vec<Envelope>,
    /// Whether the stream reached its terminal frame (false for a run that
    /// is still going, or was cut short by a crash).
    pub finished: bool,
    /// Records that did not decode; a live stream skips them too.
    pub undecodable: usize,
}

/// Reads run `task` from the log.
pub fn load(log: &dyn EventLog, task: Uuid) -> Result<Run, TranscriptError> {
    let stream = StreamId::of("run", task)?;
    let mut wire = WireRun::new();
    let mut run = Run { task_id: task, events: Vec::new(), finished: false, undecodable: 0 };
    let mut from = 1;
    let mut seen = 0usize;
    'pages: loop {
        let records = log.read_stream(&stream, from, PAGE)?;
        let Some(last) = records.last() else { break };
        from = last.seq + 1;
        let full = records.len() == PAGE;
        for record in records {
            seen += 1;
            let Ok(env) = Envelope::decode(&record.payload) else {
                run.undecodable += 1;
                continue;
            };
            wire.advance(&env);
            run.events.push(env);
            if wire.is_done() {
                run.finished = true;
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    if seen == 0 {
        return Err(TranscriptError::UnknownTask(task));
    }
    Ok(run)
}

/// Checks `--speed`: `None` prints at once, `Some(s)` divides the recorded
/// gaps by `s`.
pub fn check_speed(speed: Option<f64>) -> Result<Option<f64>, TranscriptError> {
    match speed {
        Some(s) if s.is_nan() || s <= 0.0 => Err(TranscriptError::BadSpeed(s)),
        other => Ok(other),
    }
}

/// Writes `run` to `out` in `format`; with `speed`, each frame waits for its
/// recorded time since the run began, divided by `speed` (checked with
/// [`check_speed`]; a timeline takes none).
pub fn write(run: &Run, format: Format, speed: Option<f64>, out: &mut dyn Write) -> Result<(), TranscriptError> {
    let speed = check_speed(speed)?;
    let mut pacer = speed.map(|s| Pacer::new(s, run.events.first().map_or(0, |e| e.at)));
    match format {
        Format::Timeline => {
            if pacer.is_some() {
                return Err(TranscriptError::SpeedWithTimeline);
            }
            Timeline::of(run).render(out)?;
        }
        Format::Sse | Format::Json => {
            // SSE: the live stream's encoder, for a client without `id:` lines.
            let mut sse = SseEncoder::new(false);
            let mut wire = WireRun::new();
            let mut text = String::new();
            for env in &run.events {
                text.clear();
                if format == Format::Sse {
                    sse.push(env, &mut text);
                } else {
                    for frame in wire.frames(env) {
                        text.push_str(&frame);
                        text.push('\n');
                    }
                }
                if text.is_empty() {
                    continue;
                }
                if let Some(p) = &mut pacer {
                    p.wait_for(env.at);
                }
                out.write_all(text.as_bytes())?;
                if pacer.is_some() {
                    out.flush()?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Waits until a recorded time comes round again, `speed` times faster.
struct Pacer {
    speed: f64,
    /// The recorded start (Unix µs) and when the replay began.
    origin: (i64, Instant),
}

impl Pacer {
    fn new(speed: f64, recorded_start: i64) -> Self {
        Pacer { speed, origin: (recorded_start, Instant::now()) }
    }

    fn wait_for(&self, at: i64) {
        let (start, began) = self.origin;
        let recorded = at.saturating_sub(start).max(0) as f64 / 1e6;
        let due = Duration::try_from_secs_f64(recorded / self.speed).unwrap_or(Duration::MAX);
        if let Some(rest) = due.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Reads run `task` from the data directory of `config` (which must hold a
/// log: replay never creates one).
pub fn open_and_load(config: &EngineConfig, task: Uuid) -> Result<Run, TranscriptError> {
    let dir = config.data_dir.as_ref().ok_or_else(|| {
        TranscriptError::NoLog("replay reads a data directory; an ephemeral server keeps none".into())
    })?;
    if !dir.join("db").is_dir() {
        return Err(TranscriptError::NoLog(format!("{} holds no ferrify log", dir.display())));
    }
    let engine = Engine::open(config)?;
    let run = load(engine.store(), task);
    engine.close()?;
    run
}

/// Prints run `task` of the log in `config.data_dir` to stdout; `speed`
/// paces the frames by their recorded timestamps.
pub fn cli(config: &EngineConfig, task: Uuid, format: Format, speed: Option<f64>) -> anyhow::Result<()> {
    check_speed(speed)?;
    if format == Format::Timeline && speed.is_some() {
        return Err(TranscriptError::SpeedWithTimeline.into());
    }
    let run = open_and_load(config, task)?;
    if run.undecodable > 0 {
        eprintln!("note: {} records of this run did not decode and were skipped", run.undecodable);
    }
    let stdout = io::stdout();
    let result = if speed.is_some() {
        write(&run, format, speed, &mut stdout.lock())
    } else {
        let mut buffered = io::BufWriter::new(stdout.lock());
        write(&run, format, speed, &mut buffered)
    };
    match result {
        // `ferrify replay … | head`: the reader left; that is not an error.
        Err(TranscriptError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    if !run.finished {
        eprintln!("note: the run has not finished; its stream ends here");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ferrify_engine::event::{ContainerCompleted, ContainerStarted, NodeFinished, NodeStarted, RunStarted, Usage};
    use ferrify_engine::{Event, Json};
    use ferrify_store::Append;
    use serde_json::{json, Value};

    use super::*;
    use crate::timeline::Timeline;

    const T0: i64 = 1_700_000_000_000_000;

    fn started(task: Uuid, mode: &str) -> Event {
        let workflow = matches!(mode, "workflow" | "advanced-chat");
        Event::RunStarted(Box::new(RunStarted {
            task_id: task,
            app_id: Uuid::from_u128(2),
            mode: mode.into(),
            end_user_id: Uuid::from_u128(3),
            user: "u".into(),
            conversation_id: (!workflow).then(|| Uuid::from_u128(4)),
            new_conversation: None,
            message_id: (!workflow).then(|| Uuid::from_u128(5)),
            workflow_run_id: workflow.then(|| Uuid::from_u128(6)),
            workflow_id: workflow.then(|| Uuid::from_u128(7)),
            query: "q".into(),
            inputs: Json::object(),
            files: Json(json!([])),
            streaming: true,
            options: Json::object(),
        }))
    }

    fn node_started(exec: u128, id: &str, ty: &str, iteration: Option<&str>) -> Event {
        Event::NodeStarted(Box::new(NodeStarted {
            node_execution_id: Uuid::from_u128(exec),
            node_id: id.into(),
            node_type: ty.into(),
            title: id.to_uppercase(),
            index: 1,
            predecessor_node_id: None,
            inputs: Json::null(),
            iteration_id: iteration.map(String::from),
            loop_id: None,
            extras: Json::object(),
        }))
    }

    fn node_finished(exec: u128, id: &str, ty: &str, status: &str, meta: Value) -> Box<NodeFinished> {
        Box::new(NodeFinished {
            node_execution_id: Uuid::from_u128(exec),
            node_id: id.into(),
            node_type: ty.into(),
            status: status.into(),
            inputs: Json::null(),
            process_data: Json::null(),
            outputs: Json::object(),
            error: (status != "succeeded").then(|| "boom".to_string()),
            elapsed_time: 0.001,
            execution_metadata: Json(meta),
        })
    }

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage { prompt_tokens: prompt, completion_tokens: completion, ..Usage::default() }
    }

    /// A chat turn: 3 frames, then a fact after the terminal one.
    fn chat_events(task: Uuid) -> Vec<Envelope> {
        let at = |ms: i64| T0 + ms * 1000;
        vec![
            Envelope::new(at(0), None, started(task, "chat")),
            Envelope::new(
                at(1),
                None,
                Event::ModelCalled {
                    node_id: None,
                    provider: "builtin".into(),
                    model: "echo".into(),
                    request: Json::null(),
                },
            ),
            Envelope::new(at(50), None, Event::AnswerChunk { text: "hel".into(), from_variable_selector: None }),
            Envelope::new(at(150), None, Event::AnswerChunk { text: "lo".into(), from_variable_selector: None }),
            Envelope::new(
                at(200),
                None,
                Event::ModelAnswered { node_id: None, text: "hello".into(), usage: usage(3, 2) },
            ),
            Envelope::new(
                at(200),
                None,
                Event::MessageEnded { answer: "hello".into(), usage: usage(3, 2), latency: 0.2, stopped: false },
            ),
            Envelope::new(at(300), None, Event::StopRequested { user: "u".into() }),
        ]
    }

    /// A workflow: start, an iteration whose one child failed once and then succeeded.
    fn workflow_events(task: Uuid) -> Vec<Envelope> {
        let at = |ms: i64| T0 + ms * 1000;
        let in_round = json!({"iteration_id": "each", "iteration_index": 0, "total_tokens": 7});
        vec![
            Envelope::new(at(0), None, started(task, "workflow")),
            Envelope::new(at(1), None, node_started(10, "start", "start", None)),
            Envelope::new(
                at(2),
                None,
                Event::NodeFinished(node_finished(10, "start", "start", "succeeded", json!({}))),
            ),
            Envelope::new(at(3), None, node_started(11, "each", "iteration", None)),
            Envelope::new(
                at(3),
                None,
                Event::ContainerStarted(Box::new(ContainerStarted {
                    kind: "iteration".into(),
                    node_execution_id: Uuid::from_u128(11),
                    node_id: "each".into(),
                    node_type: "iteration".into(),
                    title: "EACH".into(),
                    length: 1,
                    inputs: Json::object(),
                })),
            ),
            Envelope::new(
                at(4),
                None,
                Event::ContainerNext {
                    kind: "iteration".into(),
                    node_execution_id: Uuid::from_u128(11),
                    node_id: "each".into(),
                    index: 0,
                    pre_loop_output: Json::null(),
                },
            ),
            Envelope::new(at(5), None, node_started(12, "llm", "llm", Some("each"))),
            Envelope::new(
                at(10),
                None,
                Event::NodeRetried {
                    finished: node_finished(
                        12,
                        "llm",
                        "llm",
                        "retry",
                        json!({"iteration_id": "each", "iteration_index": 0}),
                    ),
                    retry_index: 1,
                },
            ),
            Envelope::new(at(30), None, Event::NodeFinished(node_finished(12, "llm", "llm", "succeeded", in_round))),
            Envelope::new(
                at(31),
                None,
                Event::ContainerCompleted(Box::new(ContainerCompleted {
                    kind: "iteration".into(),
                    node_execution_id: Uuid::from_u128(11),
                    node_id: "each".into(),
                    inputs: Json::object(),
                    outputs: Json::object(),
                    status: "succeeded".into(),
                    error: None,
                    elapsed_time: 0.028,
                    total_tokens: 7,
                    steps: 1,
                })),
            ),
            Envelope::new(
                at(32),
                None,
                Event::NodeFinished(node_finished(11, "each", "iteration", "succeeded", json!({}))),
            ),
            Envelope::new(
                at(40),
                None,
                Event::WorkflowFinished(Box::new(ferrify_engine::event::WorkflowFinished {
                    status: "succeeded".into(),
                    outputs: Json::object(),
                    error: None,
                    total_tokens: 7,
                    total_steps: 3,
                    exceptions_count: 0,
                    elapsed_time: 0.04,
                })),
            ),
        ]
    }

    fn engine_with(runs: &[(Uuid, Vec<Envelope>)]) -> Engine {
        let engine = Engine::open(&EngineConfig { data_dir: None, ..EngineConfig::default() }).unwrap();
        for (task, events) in runs {
            let payloads = events.iter().map(|e| e.encode().unwrap()).collect();
            engine.store().append(Append::new(StreamId::of("run", task).unwrap(), payloads)).wait().unwrap();
        }
        engine
    }

    fn render(run: &Run, format: Format, speed: Option<f64>) -> String {
        let mut out = Vec::new();
        write(run, format, speed, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sse_and_json_carry_the_served_frames_up_to_the_terminal_one() {
        let task = Uuid::from_u128(1);
        let engine = engine_with(&[(task, chat_events(task))]);
        let run = load(engine.store(), task).unwrap();
        assert!(run.finished);
        assert_eq!(run.events.len(), 6, "the fact after message_end is not part of the stream");

        let sse = render(&run, Format::Sse, None);
        let blocks: Vec<&str> = sse.split_terminator("\n\n").collect();
        assert_eq!(blocks.len(), 3);
        assert!(blocks.iter().all(|b| b.starts_with("data: {") && !b.contains('\n')));
        assert!(sse.ends_with("\n\n"));

        let json = render(&run, Format::Json, None);
        let lines: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let events: Vec<&str> = lines.iter().map(|f| f["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["message", "message", "message_end"]);
        let from_sse: Vec<Value> =
            blocks.iter().map(|b| serde_json::from_str(b.strip_prefix("data: ").unwrap()).unwrap()).collect();
        assert_eq!(from_sse, lines);
    }

    #[test]
    fn an_unknown_task_is_an_error() {
        let engine = engine_with(&[]);
        let task = Uuid::from_u128(99);
        assert!(matches!(load(engine.store(), task), Err(TranscriptError::UnknownTask(t)) if t == task));
    }

    #[test]
    fn speed_must_be_positive_and_paces_frames() {
        for bad in [0.0, -1.0, f64::NAN] {
            assert!(matches!(check_speed(Some(bad)), Err(TranscriptError::BadSpeed(_))));
        }
        let task = Uuid::from_u128(1);
        let engine = engine_with(&[(task, chat_events(task))]);
        let run = load(engine.store(), task).unwrap();
        let mut out = Vec::new();
        assert!(matches!(write(&run, Format::Sse, Some(0.0), &mut out), Err(TranscriptError::BadSpeed(_))));
        assert!(out.is_empty());
        assert!(matches!(write(&run, Format::Timeline, Some(1.0), &mut out), Err(TranscriptError::SpeedWithTimeline)));

        // 200 ms recorded, four times as fast: about 50 ms.
        let began = Instant::now();
        let paced = render(&run, Format::Sse, Some(4.0));
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(49), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert_eq!(paced, render(&run, Format::Sse, None));
    }

    #[test]
    fn chat_timeline_shows_the_model_call() {
        let task = Uuid::from_u128(1);
        let engine = engine_with(&[(task, chat_events(task))]);
        let run = load(engine.store(), task).unwrap();
        let t = Timeline::of(&run);
        assert_eq!(t.rows.len(), 1);
        let call = &t.rows[0];
        assert_eq!((call.node_id.as_str(), call.title.as_str()), ("model", "builtin/echo"));
        assert_eq!(
            (call.start, call.duration, call.status.as_str(), call.tokens),
            (1000, Some(199_000), "succeeded", Some(5))
        );
        assert_eq!((t.total.duration, t.total.status.as_str(), t.total.tokens), (Some(200_000), "succeeded", Some(5)));
    }

    #[test]
    fn workflow_timeline_has_a_row_per_attempt_nested_under_containers() {
        let task = Uuid::from_u128(1);
        let engine = engine_with(&[(task, workflow_events(task))]);
        let run = load(engine.store(), task).unwrap();
        assert!(run.finished);
        let t = Timeline::of(&run);
        let rows: Vec<_> = t
            .rows
            .iter()
            .map(|r| (r.depth, r.node_id.as_str(), r.round, r.retry, r.start, r.duration, r.status.as_str(), r.tokens))
            .collect();
        assert_eq!(
            rows,
            [
                (0, "start", None, None, 1000, Some(1000), "succeeded", None),
                (0, "each", None, None, 3000, Some(29_000), "succeeded", Some(7)),
                (1, "llm", Some(0), None, 5000, Some(5000), "retry", None),
                (1, "llm", Some(0), Some(1), 10_000, Some(20_000), "succeeded", Some(7)),
            ]
        );
        assert_eq!((t.total.duration, t.total.status.as_str(), t.total.tokens), (Some(40_000), "succeeded", Some(7)));

        let text = render(&run, Format::Timeline, None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0]
            .starts_with("run 00000000-0000-0000-0000-000000000001  workflow  started 2023-11-14 22:13:20.000 UTC"));
        assert_eq!(lines[1], "START ms  DURATION ms  NODE                TYPE       TITLE  STATUS     TOKENS");
        assert_eq!(lines[2], "     1.0          1.0  start               start      START  succeeded       -");
        assert_eq!(lines[4], "     5.0          5.0    llm #0            llm        LLM    retry           -");
        assert_eq!(lines[5], "    10.0         20.0    llm #0 (retry 1)  llm        LLM    succeeded       7");
        assert_eq!(lines[6], "     0.0         40.0  total                                 succeeded       7");
        assert_eq!(lines[8], "llm #0: boom");
    }

    #[test]
    fn an_unfinished_run_shows_open_rows_as_running() {
        let task = Uuid::from_u128(1);
        let mut events = workflow_events(task);
        events.truncate(7);
        let engine = engine_with(&[(task, events)]);
        let run = load(engine.store(), task).unwrap();
        assert!(!run.finished);
        let t = Timeline::of(&run);
        assert_eq!(t.rows.last().map(|r| (r.status.as_str(), r.duration)), Some(("running", None)));
        assert_eq!((t.total.status.as_str(), t.total.duration), ("running", None));
    }
}

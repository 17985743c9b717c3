//! `ferrify replay TASK_ID --data DIR`: for every example app (the fixtures
//! in `tests/apps/` and the demo apps), the transcript that the real binary
//! prints from the stopped server's data directory is byte for byte the
//! stream the server served live (keep-alive pings aside); the JSON lines and
//! the timeline agree with it; bad input fails clearly; nothing is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::common::{binary, client, parse_sse, Server};

/// One run to record live and replay.
struct Case {
    app: String,
    mode: String,
    /// Whether the live client opted in to `id:` lines.
    ids: bool,
    task: String,
    /// The live body without pings (and without `id:` lines).
    live: String,
    pings: usize,
}

/// `(label, DSL)` of every example app: `tests/apps/*.yml` and the demo apps
/// (except the file fixtures, whose runs need an upload first; `tests/files.rs` covers them).
fn example_apps() -> Vec<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut apps = Vec::new();
    for dir in ["tests/apps", "engine/src/demo"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(root).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().contains("-files")))
            .collect();
        files.sort();
        for f in files {
            let label = format!("{dir}/{}", f.file_name().unwrap().to_string_lossy());
            apps.push((label, std::fs::read_to_string(&f).unwrap()));
        }
    }
    apps
}

/// The app's mode, and whether every model it names is on the builtin provider.
fn mode_and_builtin(yaml: &str) -> (String, bool) {
    fn providers(v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, x) in m {
                    if k.as_str() == Some("provider") {
                        if let Some(p) = x.as_str() {
                            out.push(p.to_string());
                        }
                    }
                    providers(x, out);
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|x| providers(x, out)),
            _ => {}
        }
    }
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let mode = doc["app"]["mode"].as_str().unwrap().to_string();
    let mut found = Vec::new();
    providers(&doc, &mut found);
    (mode, found.iter().all(|p| p == "builtin"))
}

/// The streaming request an app of `mode` answers.
fn request(mode: &str) -> (&'static str, Value) {
    match mode {
        "completion" => (
            "/v1/completion-messages",
            json!({"inputs": {"query": "hola", "text": "hola"}, "user": "u1", "response_mode": "streaming"}),
        ),
        "workflow" => (
            "/v1/workflows/run",
            json!({"inputs": {"name": "Ada", "style": "formal"}, "user": "u1", "response_mode": "streaming"}),
        ),
        _ => (
            "/v1/chat-messages",
            json!({"query": "hello replay", "inputs": {}, "user": "u1", "response_mode": "streaming"}),
        ),
    }
}

/// Posts a streaming request; returns the raw body.
async fn live(base: String, key: String, path: &str, body: Value, ids: bool) -> String {
    let mut req = client().post(format!("{base}{path}")).bearer_auth(key).json(&body);
    if ids {
        req = req.header("accept", "text/event-stream");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    text
}

/// Imports each app on `server` and runs it streaming, all at once.
async fn record(server: &Server, apps: &[(String, String)], ids_for: Option<&str>) -> Vec<Case> {
    let mut runs = JoinSet::new();
    for (label, yaml) in apps {
        let (mode, _) = mode_and_builtin(yaml);
        let app_id = server.import_yaml(yaml).await;
        let key = server.key(&app_id).await;
        let mut variants = vec![false];
        if ids_for.is_some_and(|a| label.ends_with(a)) {
            variants.push(true);
        }
        for ids in variants {
            let (path, body) = request(&mode);
            let (base, key, label, mode) = (server.url(""), key.clone(), label.clone(), mode.clone());
            runs.spawn(async move {
                let raw = live(base, key, path, body, ids).await;
                (label, mode, ids, raw)
            });
        }
    }
    let mut cases = Vec::new();
    while let Some(done) = runs.join_next().await {
        let (app, mode, ids, raw) = done.unwrap();
        let (frames, pings) = parse_sse(&raw);
        assert!(!frames.is_empty(), "{app}: no frames");
        assert_eq!(frames.iter().all(|f| f.id.is_some()), ids, "{app}: id lines only when opted in");
        let task = frames[0].data["task_id"].as_str().unwrap().to_string();
        let live: String =
            raw.replace("event: ping\n\n", "").split_inclusive('\n').filter(|l| !l.starts_with("id: ")).collect();
        cases.push(Case { app, mode, ids, task, live, pings });
    }
    cases.sort_by(|a, b| (&a.app, a.ids).cmp(&(&b.app, b.ids)));
    cases
}

fn replay(data: &Path, args: &[&str]) -> Output {
    Command::new(binary()).arg("replay").args(args).arg("--data").arg(data).env("RUST_LOG", "warn").output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The log's last position and the head of every run's stream.
fn log_state(data: &Path, tasks: &[&str]) -> (u64, Vec<u64>) {
    use ferrify_store::{EventLog, StreamId};
    let config = ferrify_engine::EngineConfig { data_dir: Some(data.to_path_buf()), ..Default::default() };
    let engine = ferrify_engine::Engine::open(&config).unwrap();
    let store = engine.store();
    let heads = tasks.iter().map(|t| store.stream_head(&StreamId::of("run", t).unwrap()).unwrap()).collect();
    let state = (store.last_position().unwrap(), heads);
    engine.close().unwrap();
    state
}

/// Checks the three formats of one recorded run.
fn check_case(data: &Path, case: &Case) {
    let app = &case.app;
    let sse = stdout(&replay(data, &[&case.task]));
    assert_eq!(sse, case.live, "{app}: the replayed stream differs from the live one");
    assert_eq!(stdout(&replay(data, &[&case.task, "--format", "sse"])), sse);

    let (frames, _) = parse_sse(&case.live);
    let json = stdout(&replay(data, &[&case.task, "--format", "json"]));
    let lines: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let live_frames: Vec<Value> = frames.iter().map(|f| f.data.clone()).collect();
    assert_eq!(lines, live_frames, "{app}: JSON lines differ from the live frames");
    let data_lines: Vec<&str> = case.live.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(json.lines().collect::<Vec<_>>(), data_lines, "{app}: JSON lines are the compact data frames");

    let timeline = stdout(&replay(data, &[&case.task, "--format", "timeline"]));
    let lines: Vec<&str> = timeline.lines().collect();
    assert!(lines[0].starts_with(&format!("run {}  {}  started ", case.task, case.mode)), "{app}: {timeline}");
    assert!(lines[1].starts_with("START ms  DURATION ms  NODE"), "{app}: {timeline}");
    let total = lines.iter().position(|l| l.split_whitespace().nth(2) == Some("total")).expect("a total row");
    // Each row: START, DURATION, NODE, …, STATUS, TOKENS.
    let rows: Vec<Vec<&str>> = lines[2..total].iter().map(|l| l.split_whitespace().collect()).collect();
    let row_of = |r: &Vec<&str>| (r[2].to_string(), r[r.len() - 2].to_string(), r[r.len() - 1].to_string());
    let total_row: Vec<&str> = lines[total].split_whitespace().collect();
    let last = &frames.last().unwrap().data;
    if matches!(case.mode.as_str(), "workflow" | "advanced-chat") {
        let finished: Vec<(String, String)> = frames
            .iter()
            .filter(|f| f.data["event"] == "node_finished")
            .map(|f| {
                (f.data["data"]["node_id"].as_str().unwrap().into(), f.data["data"]["status"].as_str().unwrap().into())
            })
            .collect();
        let started = frames.iter().filter(|f| f.data["event"] == "node_started").count();
        assert_eq!(rows.len(), started, "{app}: a row per node execution:\n{timeline}");
        let got: Vec<(String, String)> = rows.iter().map(row_of).map(|(n, s, _)| (n, s)).collect();
        assert_eq!(got, finished, "{app}: rows in order of start, with each node's status:\n{timeline}");
        let wf = frames.iter().find(|f| f.data["event"] == "workflow_finished").unwrap();
        assert_eq!(total_row[total_row.len() - 2], wf.data["data"]["status"], "{app}:\n{timeline}");
        assert_eq!(total_row[total_row.len() - 1], wf.data["data"]["total_tokens"].to_string(), "{app}:\n{timeline}");
    } else {
        assert_eq!(last["event"], "message_end", "{app}");
        let tokens = last["metadata"]["usage"]["total_tokens"].to_string();
        assert_eq!(rows.len(), 1, "{app}: one model call:\n{timeline}");
        assert_eq!(
            row_of(&rows[0]),
            ("model".to_string(), "succeeded".to_string(), tokens.clone()),
            "{app}:\n{timeline}"
        );
        assert_eq!(total_row[total_row.len() - 2..], ["succeeded", tokens.as_str()], "{app}:\n{timeline}");
    }
}

#[tokio::test]
async fn replayed_streams_equal_the_live_ones_for_every_example_app() {
    let apps = example_apps();
    let (builtin, other): (Vec<_>, Vec<_>) = apps.into_iter().partition(|(_, yaml)| mode_and_builtin(yaml).1);
    assert!(builtin.len() >= 8 && !other.is_empty(), "fixtures and demo apps found");
    // Apps on other providers run on the builtin echo model instead.
    let mut plain = Server::start(&["--no-demo"]);
    let mut overridden = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let cases = record(&plain, &builtin, Some("demo/workflow-greet.yml")).await;
    let more = record(&overridden, &other, None).await;
    assert!(cases.iter().any(|c| c.pings > 0), "a slow fixture's live stream carried pings");
    // Stop the servers: the data directories are locked while they run.
    assert!(plain.terminate().success());
    assert!(overridden.terminate().success());

    let mut modes: Vec<&str> = cases.iter().chain(&more).map(|c| c.mode.as_str()).collect();
    modes.sort();
    modes.dedup();
    assert_eq!(modes, ["advanced-chat", "chat", "completion", "workflow"]);
    assert!(cases.iter().any(|c| c.ids), "one client opted in to id lines");

    for (server, cases) in [(&plain, &cases), (&overridden, &more)] {
        let tasks: Vec<&str> = cases.iter().map(|c| c.task.as_str()).collect();
        let before = log_state(&server.data, &tasks);
        assert!(before.1.iter().all(|h| *h > 0));
        for case in cases.iter() {
            check_case(&server.data, case);
        }
        assert_eq!(log_state(&server.data, &tasks), before, "a replay appended to the log");
    }

    // Paced: the demo lorem chat streams 50 words 20 ms apart (about 1 s); at 4x about 250 ms.
    let lorem = cases.iter().find(|c| c.app.ends_with("demo/chat-lorem.yml")).unwrap();
    let began = Instant::now();
    let paced = stdout(&replay(&plain.data, &[&lorem.task, "--speed", "4"]));
    let took = began.elapsed();
    assert_eq!(paced, lorem.live);
    assert!(took >= Duration::from_millis(200), "--speed 4 of a 1 s stream took {took:?}");
}

#[tokio::test]
async fn bad_replays_fail_clearly_and_write_nothing() {
    let mut s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let (_, body) = request("chat");
    let raw = live(s.url(""), key, "/v1/chat-messages", body, false).await;
    let task = parse_sse(&raw).0[0].data["task_id"].as_str().unwrap().to_string();

    // While the server holds the directory.
    let out = replay(&s.data, &[&task]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.terminate().success());

    let before = log_state(&s.data, &[&task]);
    let unknown = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&unknown], "no run with task id"),
        (vec!["not-a-task"], "is not a task id"),
        (vec![&task, "--speed", "0"], "--speed must be a number greater than 0"),
        (vec![&task, "--speed", "-2", "--format", "json"], "--speed must be a number greater than 0"),
        (vec![&task, "--format", "timeline", "--speed", "1"], "a timeline is printed at once"),
    ];
    for (args, message) in cases {
        let out = replay(&s.data, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&out.stdout));
    }
    assert_eq!(log_state(&s.data, &[&task]), before);

    // A directory without a log is not created or filled.
    let missing = s.data.join("no-such-dir");
    let out = replay(&missing, &[&task]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no ferrify log"));
    assert!(!missing.exists(), "replay created the data directory");
    let empty = tempfile::tempdir().unwrap();
    assert!(!replay(empty.path(), &[&task]).status.success());
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "replay wrote into an empty directory");
}

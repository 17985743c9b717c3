//! Graph engine speed: a 100-node chain and a 100-wide fan-out/fan-in of
//! template-transform and if-else nodes, run end to end through the engine
//! (input validation, the ready queue, node execution, the variable pool,
//! every node event encoded and appended to the log with the projections).
//! Reported per node. Backends: memory (the engine's own cost) and sled on
//! a temp dir (a blocking run is one durable append: it includes an fsync).
//!
//!     cargo bench --bench workflow
//!
//! Allocator: mimalloc, as in the `ferrify` binary that runs the workflows (which
//! also turns transparent huge pages off for itself; this bench process does not).

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use common::{chain, doc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::wire::Outcome;
use ferrify_engine::{Engine, EngineConfig};
use serde_json::json;

/// `start → 100 × (template-transform | if-else) → end`.
fn fan(width: usize) -> String {
    let mut nodes = vec![
        "    - {id: s, data: {type: start, variables: [{variable: x, type: text-input, required: true, label: x}]}}"
            .to_string(),
    ];
    let mut edges = Vec::new();
    for i in 0..width {
        if i % 2 == 0 {
            nodes.push(format!("    - {{id: b{i}, data: {{type: template-transform, template: '{{{{ x }}}}+{i}', variables: [{{variable: x, value_selector: [s, x]}}]}}}}"));
            edges.push(format!("    - {{source: b{i}, target: e}}"));
        } else {
            nodes.push(format!("    - {{id: b{i}, data: {{type: if-else, cases: [{{case_id: 'true', logical_operator: and, conditions: [{{variable_selector: [s, x], comparison_operator: not empty}}]}}]}}}}"));
            edges.push(format!("    - {{source: b{i}, sourceHandle: 'true', target: e}}"));
        }
        edges.push(format!("    - {{source: s, target: b{i}}}"));
    }
    nodes
        .push("    - {id: e, data: {type: end, outputs: [{variable: out, value_selector: [b0, output]}]}}".to_string());
    doc(&nodes, &edges)
}

fn workflows(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("workflow");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (backend, data_dir) in [("memory", None), ("sled", Some(dir.path().to_path_buf()))] {
        let engine = Engine::open(&EngineConfig { data_dir, ..EngineConfig::default() }).unwrap();
        for (name, yaml, nodes) in [("chain_100", chain(100), 100u64), ("fan_100", fan(100), 102)] {
            let app = rt.block_on(async {
                let imported = engine.import_app(&yaml).await.unwrap();
                engine.app(imported.app_id).unwrap().unwrap()
            });
            // One run to check the graph does what it should.
            let body = rt.block_on(run(&engine, &app));
            assert_eq!(body["data"]["status"], "succeeded", "{body}");
            assert_eq!(body["data"]["total_steps"], nodes, "{body}");
            g.throughput(Throughput::Elements(nodes));
            g.bench_function(format!("{name}/{backend}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            run(&engine, &app).await;
                        }
                        start.elapsed()
                    })
                })
            });
        }
        engine.close().unwrap();
    }
    g.finish();
}

async fn run(engine: &Engine, app: &ferrify_engine::apps::LoadedApp) -> serde_json::Value {
    let req = WorkflowRequest { inputs: json!({"x": "v"}), user: "bench".into(), ..Default::default() };
    let accepted = engine.start_workflow(app, req).await.unwrap();
    match accepted.outcome.unwrap().await.unwrap().unwrap() {
        Outcome::Message(b) => b,
        other => panic!("{other:?}"),
    }
}

criterion_group!(benches, workflows);
criterion_main!(benches);

//! Re-execution speed: a recorded 100-node workflow run (the chain of
//! `benches/workflow.rs`: start → 98 alternating template-transform / if-else
//! → end) re-executed end to end through `Engine::reexecute`: read its log
//! and version, run the version again on a scratch in-memory engine with the
//! recorded inputs (every event appended there), and compare the two runs
//! (their events; their normalised frames when the events differ). The recorded run lives in a
//! memory store, or in sled on a temp dir (what `ferrify replay --reexecute`
//! reads). An engine keeps its scratch engine between re-executions;
//! `fresh_scratch` opens one each time (the first re-execution of a
//! process). `run_chain_100` is the recorded run run again normally, for
//! reference. Target: ≤ 2 ms per re-execution.
//! Allocator: mimalloc, as in the `ferrify` binary that re-executes runs (which
//! also turns transparent huge pages off for itself; this bench process does not).
//!
//!     cargo bench --bench reexec

mod common;

/// The allocator of the `ferrify` binary, which re-executes runs for
/// `ferrify replay --reexecute` and the admin API.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use common::chain;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrify_engine::reexec::ReexecOptions;
use ferrify_engine::runner::workflow::WorkflowRequest;
use ferrify_engine::{Engine, EngineConfig};
use serde_json::json;

fn reexec(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("reexec");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    for (backend, data_dir) in [("memory", None), ("sled", Some(dir.path().to_path_buf()))] {
        let engine = Engine::open(&EngineConfig { data_dir, ..EngineConfig::default() }).unwrap();
        let task = rt.block_on(async {
            let imported = engine.import_app(&chain(100)).await.unwrap();
            let app = engine.app(imported.app_id).unwrap().unwrap();
            let req = WorkflowRequest { inputs: json!({"x": "v"}), user: "bench".into(), ..Default::default() };
            let accepted = engine.start_workflow(&app, req).await.unwrap();
            accepted.outcome.unwrap().await.unwrap().unwrap();
            accepted.handle.task_id
        });
        // Check once that it does what it should.
        let r = rt.block_on(engine.reexecute(task, &ReexecOptions::default())).unwrap();
        assert!(r.identical(), "{:?}", r.divergence);
        assert!(r.frames > 200, "{} frames", r.frames);
        g.bench_function(format!("chain_100/{backend}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let r = engine.reexecute(task, &ReexecOptions::default()).await.unwrap();
                        assert!(r.identical());
                    }
                    start.elapsed()
                })
            })
        });
        if backend == "memory" {
            // The first re-execution of a process also opens its scratch engine.
            g.bench_function(format!("chain_100_fresh_scratch/{backend}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let scratch = engine.scratch().unwrap();
                            let r = engine.reexecute_on(&scratch, task, &ReexecOptions::default()).await.unwrap();
                            assert!(r.identical());
                            scratch.close().unwrap();
                        }
                        start.elapsed()
                    })
                })
            });
            // For reference, measured alongside: the recorded run itself, run again normally.
            let app = rt.block_on(async {
                let imported = engine.import_app(&chain(100)).await.unwrap();
                engine.app(imported.app_id).unwrap().unwrap()
            });
            g.bench_function(format!("run_chain_100/{backend}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let req = WorkflowRequest {
                                inputs: json!({"x": "v"}),
                                user: "bench".into(),
                                ..Default::default()
                            };
                            let accepted = engine.start_workflow(&app, req).await.unwrap();
                            accepted.outcome.unwrap().await.unwrap().unwrap();
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

criterion_group!(benches, reexec);
criterion_main!(benches);

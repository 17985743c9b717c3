//! Rebuild speed: clearing and re-projecting a log of chat turns.
//!
//!     cargo bench --bench rebuild

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrify_engine::projection;
use ferrify_store::{Append, EventLog, Options, Store, StreamId};
use uuid::Uuid;

fn rebuild(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sled(dir.path(), projection::all(), Options::default()).unwrap();
    let app = Uuid::new_v4();
    // 2,000 chat turns of 48 tokens: 100,000 events.
    for _ in 0..2_000 {
        let task = Uuid::new_v4();
        store.append(Append::new(StreamId::of("run", task).unwrap(), common::chat_turn(app, task, 48))).wait().unwrap();
    }
    let events = store.last_position().unwrap();
    let mut g = c.benchmark_group("rebuild");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(events));
    g.bench_function(format!("{events}_events"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                store.rebuild(Box::new(|_, _| {})).unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, rebuild);
criterion_main!(benches);

//! Append throughput of the sled log with the engine's projections:
//! 1 and 16 concurrent writers, durable and not; whole blocking chat turns
//! (one durable append of a turn's events, each in a new conversation: the
//! store's share of a blocking `POST /chat-messages`, without HTTP); and
//! stream reads.
//!
//!     cargo bench --bench append

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrify_engine::projection;
use ferrify_store::{Append, EventLog, Options, Store, StreamId};
use uuid::Uuid;

fn open(dir: &std::path::Path) -> Store {
    Store::open_sled(dir, projection::all(), Options::default()).unwrap()
}

/// `writers` threads each append `per_writer` batches, `batch(stream, i)`
/// making the i-th one (`stream`: one run stream per thread), waiting for
/// each ack.
fn with_writers<F>(store: &Store, writers: usize, per_writer: u64, batch: F) -> Duration
where
    F: Fn(&StreamId, u64) -> Append + Clone + Send + 'static,
{
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (store, batch) = (store.clone(), batch.clone());
            std::thread::spawn(move || {
                let stream = StreamId::of("run", Uuid::new_v4()).unwrap();
                for i in 0..per_writer {
                    store.append(batch(&stream, i)).wait().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

/// `writers` threads each append `per_writer` single-event batches, waiting for each ack.
fn run(store: &Store, writers: usize, per_writer: u64, durable: bool) -> Duration {
    with_writers(store, writers, per_writer, move |stream, i| {
        let mut a = Append::new(stream.clone(), vec![common::chunk(i)]);
        a.durable = durable;
        a
    })
}

/// `writers` threads each append `per_writer` blocking chat turns (a new
/// conversation each, one word), durably, waiting for each ack.
fn turns(store: &Store, writers: usize, per_writer: u64) -> Duration {
    let app = Uuid::new_v4();
    with_writers(store, writers, per_writer, move |_, _| {
        let task = Uuid::new_v4();
        Append::new(StreamId::of("run", task).unwrap(), common::chat_turn(app, task, 1)).durable()
    })
}

/// One appender streaming `n` single-event non-durable appends to one run
/// stream without waiting for each acknowledgement (how a runner appends
/// token chunks), then waiting for all of them.
fn pipelined(store: &Store, n: u64) -> Duration {
    let stream = StreamId::of("run", Uuid::new_v4()).unwrap();
    let start = Instant::now();
    let pending: Vec<_> = (0..n).map(|i| store.append(Append::new(stream.clone(), vec![common::chunk(i)]))).collect();
    for p in pending {
        p.wait().unwrap();
    }
    start.elapsed()
}

fn appends(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    g.bench_function("non_durable/1_writer_pipelined", |b| b.iter_custom(|iters| pipelined(&store, iters)));
    for durable in [false, true] {
        for writers in [1usize, 16] {
            let kind = if durable { "durable" } else { "non_durable" };
            g.throughput(Throughput::Elements(writers as u64));
            g.bench_with_input(BenchmarkId::new(kind, format!("{writers}_writers_ack_each")), &writers, |b, &w| {
                b.iter_custom(|iters| run(&store, w, iters, durable));
            });
        }
    }
    for writers in [16usize, 64] {
        g.throughput(Throughput::Elements(writers as u64));
        g.bench_with_input(BenchmarkId::new("blocking_turn", format!("{writers}_writers")), &writers, |b, &w| {
            b.iter_custom(|iters| turns(&store, w, iters));
        });
    }
    g.finish();

    // Appends per fsync under 16 durable writers, printed for docs/BENCHMARKS.md.
    let before = store.stats();
    let elapsed = run(&store, 16, 2_000, true);
    let after = store.stats();
    let appends = after.durable_appends - before.durable_appends;
    let fsyncs = (after.fsyncs - before.fsyncs).max(1);
    eprintln!(
        "16 durable writers: {appends} appends in {elapsed:.2?} = {:.0}/s, {fsyncs} fsyncs, {:.1} appends per fsync",
        appends as f64 / elapsed.as_secs_f64(),
        appends as f64 / fsyncs as f64
    );
}

fn stream_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let task = Uuid::new_v4();
    let stream = StreamId::of("run", task).unwrap();
    store.append(Append::new(stream.clone(), common::chat_turn(Uuid::new_v4(), task, 998))).wait().unwrap();
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("stream_1000_events", |b| b.iter(|| store.read_stream(&stream, 1, 1000).unwrap().len()));
    g.finish();
}

criterion_group!(benches, appends, stream_read);
criterion_main!(benches);

//! A conformance suite every backend runs (memory in unit tests, sled in
//! `tests/`). Each function takes a factory that opens a fresh, empty store
//! with the projectors it is given.
//!
//! Also for other crates' tests: [`open_refusing`], a store whose writes fail
//! on a switch (what runs do when the log refuses them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{memory::MemoryBackend, Backend, Op, Pairs};
use crate::error::{Error, Result};
use crate::kv::{KvTxn, Projector};
use crate::log::{EventLog, Options, Store};
use crate::record::{Append, Expected, Record, StreamId};

/// A test projector: counts records per stream, keeps the last payload, and
/// refuses any payload equal to `b"refuse"`.
pub struct Counter;

impl Projector for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        if record.payload == b"refuse" {
            return Err(Error::Invalid("refused".into()));
        }
        let key = record.stream.as_str().as_bytes();
        let n: u64 = kv.get_json("counts", key)?.unwrap_or(0);
        kv.put_json("counts", key, &(n + 1))?;
        kv.put("last", key, record.payload.clone());
        Ok(())
    }
}

pub fn counter() -> Vec<Arc<dyn Projector>> {
    vec![Arc::new(Counter)]
}

/// An in-memory backend whose commits fail while its switch is on, the way
/// a full disk or a failing device fails them (reads keep working).
struct Refusing {
    inner: MemoryBackend,
    refuse: Arc<AtomicBool>,
}

impl Backend for Refusing {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize, reverse: bool) -> Result<Pairs> {
        self.inner.scan(start, end, limit, reverse)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(Error::Io("no space left on device (refused by the test)".into()));
        }
        self.inner.commit(ops)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn volatile(&self) -> bool {
        true
    }
}

/// An empty in-memory store whose writes fail while the returned switch is
/// on: for tests of what runs do when the log refuses them.
pub fn open_refusing(projectors: Vec<Arc<dyn Projector>>, options: Options) -> Result<(Store, Arc<AtomicBool>)> {
    let refuse = Arc::new(AtomicBool::new(false));
    let backend = Refusing { inner: MemoryBackend::new(), refuse: refuse.clone() };
    Ok((Store::open(Arc::new(backend), projectors, options, None)?, refuse))
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn payloads(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Sequence numbers per stream and global positions.
pub fn append_and_read(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(counter());
    let a = store.append(Append::new(stream("run/a"), payloads(&["a1", "a2"]))).wait().unwrap();
    assert_eq!((a.first_seq, a.last_seq, a.first_position, a.last_position), (1, 2, 1, 2));
    let b = store.append(Append::new(stream("run/b"), payloads(&["b1"])).durable()).wait().unwrap();
    assert_eq!((b.first_seq, b.last_seq, b.first_position), (1, 1, 3));
    let a3 = store.append(Append::new(stream("run/a"), payloads(&["a3"]))).wait().unwrap();
    assert_eq!((a3.first_seq, a3.first_position), (3, 4));

    let recs = store.read_stream(&stream("run/a"), 1, 100).unwrap();
    let got: Vec<_> = recs.iter().map(|r| (r.seq, r.position, r.payload.clone())).collect();
    assert_eq!(got, vec![(1, 1, b"a1".to_vec()), (2, 2, b"a2".to_vec()), (3, 4, b"a3".to_vec())]);
    assert_eq!(store.read_stream(&stream("run/a"), 3, 100).unwrap().len(), 1);
    assert_eq!(store.read_stream(&stream("run/a"), 2, 1).unwrap()[0].seq, 2);
    assert!(store.read_stream(&stream("run/none"), 1, 100).unwrap().is_empty());

    let all = store.read_all(1, 100).unwrap();
    let got: Vec<_> = all.iter().map(|r| (r.position, r.stream.to_string())).collect();
    assert_eq!(got, vec![(1, "run/a".into()), (2, "run/a".into()), (3, "run/b".into()), (4, "run/a".into())]);
    assert_eq!(store.read_all(4, 100).unwrap().len(), 1);
    assert_eq!(store.stream_head(&stream("run/a")).unwrap(), 3);
    assert_eq!(store.stream_head(&stream("run/zzz")).unwrap(), 0);
    assert_eq!(store.last_position().unwrap(), 4);
    assert!(all.iter().all(|r| r.at > 0));
}

/// Optimistic concurrency and invalid appends; a refused append writes nothing.
pub fn expectations_and_refusals(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(counter());
    let s = stream("conversation/x");
    store.append(Append::new(s.clone(), payloads(&["1"])).expect(Expected::NoStream)).wait().unwrap();
    let err = store.append(Append::new(s.clone(), payloads(&["2"])).expect(Expected::NoStream)).wait();
    assert!(matches!(err, Err(Error::Conflict { actual: 1, .. })), "{err:?}");
    let err = store.append(Append::new(s.clone(), payloads(&["2"])).expect(Expected::At(5))).wait();
    assert!(matches!(err, Err(Error::Conflict { expected: 5, actual: 1, .. })), "{err:?}");
    store.append(Append::new(s.clone(), payloads(&["2"])).expect(Expected::At(1))).wait().unwrap();
    assert!(matches!(store.append(Append::new(s.clone(), vec![])).wait(), Err(Error::Invalid(_))));

    // A refusal in the middle of a batch rejects the whole batch.
    let err = store.append(Append::new(s.clone(), payloads(&["3", "refuse", "4"]))).wait();
    assert!(matches!(err, Err(Error::Projection { .. })), "{err:?}");
    assert_eq!(store.stream_head(&s).unwrap(), 2);
    assert_eq!(store.get_json::<u64>("counts", s.as_str().as_bytes()).unwrap(), Some(2));
    // The log goes on without a gap.
    let ok = store.append(Append::new(s.clone(), payloads(&["3"]))).wait().unwrap();
    assert_eq!((ok.first_seq, ok.first_position), (3, 3));
}

/// Read models are updated before the append is acknowledged.
pub fn read_your_writes(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(counter());
    for i in 1..=50u64 {
        let s = stream(&format!("run/{}", i % 3));
        store.append(Append::new(s.clone(), vec![format!("p{i}").into_bytes()])).wait().unwrap();
        assert_eq!(store.get("last", s.as_str().as_bytes()).unwrap(), Some(format!("p{i}").into_bytes()));
    }
    let counts: u64 =
        (0..3).map(|i| store.get_json::<u64>("counts", format!("run/{i}").as_bytes()).unwrap().unwrap()).sum();
    assert_eq!(counts, 50);
    let page = store.scan("counts", b"run/", None, 2, false).unwrap();
    assert_eq!(page.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![b"run/0".to_vec(), b"run/1".to_vec()]);
    let next = store.scan("counts", b"run/", Some(b"run/1"), 10, false).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, b"run/2");
    let back = store.scan("counts", b"run/", Some(b"run/2"), 10, true).unwrap();
    assert_eq!(back.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![b"run/1".to_vec(), b"run/0".to_vec()]);
    assert_eq!(store.projection_position("counter").unwrap(), 50);
}

/// Many concurrent appenders; a subscriber tailing one stream sees every record once, in order.
pub fn concurrent_appends_and_tail(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(counter());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let target = stream("run/tail");
    let total: u64 = 8 * 50;
    let mut sub = store.subscribe(&target, 1);
    let reader = rt.spawn(async move {
        let mut seen = Vec::new();
        while (seen.len() as u64) < total {
            let batch = tokio::time::timeout(Duration::from_secs(20), sub.next_batch()).await.unwrap().unwrap();
            seen.extend(batch.into_iter().map(|r| (r.seq, r.payload)));
        }
        seen
    });
    let mut handles = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        let target = target.clone();
        handles.push(rt.spawn(async move {
            for i in 0..50u64 {
                let other = StreamId::new(format!("run/w{w}")).unwrap();
                store.append(Append::new(other, vec![vec![i as u8]])).await.unwrap();
                let durable = i % 5 == 0;
                let mut a = Append::new(target.clone(), vec![format!("{w}:{i}").into_bytes()]);
                a.durable = durable;
                store.append(a).await.unwrap();
            }
        }));
    }
    rt.block_on(async {
        for h in handles {
            h.await.unwrap();
        }
    });
    let seen = rt.block_on(reader).unwrap();
    assert_eq!(seen.len() as u64, total);
    for (i, (seq, _)) in seen.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
    }
    // Each writer's own records stay in its order.
    for w in 0..8 {
        let mine: Vec<u64> = seen
            .iter()
            .filter_map(|(_, p)| {
                let s = String::from_utf8(p.clone()).unwrap();
                let (a, b) = s.split_once(':').unwrap();
                (a == w.to_string()).then(|| b.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
    let stats = store.stats();
    assert_eq!(stats.events, total * 2);
    assert!(stats.fsyncs >= 1);
}

/// A subscription started after some records delivers the backlog, then follows.
pub fn subscribe_from_middle(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(vec![]);
    let s = stream("run/m");
    store.append(Append::new(s.clone(), payloads(&["1", "2", "3"]))).wait().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut sub = store.subscribe(&s, 2);
    let first = rt.block_on(sub.next_batch()).unwrap();
    assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert!(sub.poll_now().unwrap().is_empty());
    let s2 = s.clone();
    let st = store.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        st.append(Append::new(s2, payloads(&["4"]))).wait().unwrap();
    });
    let next =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), sub.next_batch()).await }).unwrap().unwrap();
    assert_eq!(next[0].seq, 4);
    let mut all = store.subscribe_all(4);
    let g = rt.block_on(all.next_batch()).unwrap();
    assert_eq!(g.iter().map(|r| r.position).collect::<Vec<_>>(), vec![4]);
}

/// A stream followed before its first record is read from memory only, as
/// long as its follower keeps up; a follower that starts behind reads the backend.
pub fn follow_a_new_stream(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(vec![]);
    let s = stream("run/new");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut sub = store.subscribe_new(&s);
    assert!(sub.poll_now().unwrap().is_empty());
    let mut seqs = Vec::new();
    for i in 0..40 {
        store.append(Append::new(s.clone(), payloads(&[&i.to_string()]))).wait().unwrap();
        while seqs.len() <= i {
            let batch = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), sub.next_batch()).await })
                .unwrap()
                .unwrap();
            seqs.extend(batch.iter().map(|r| r.seq));
        }
    }
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    assert_eq!(store.stats().follower_reads, 0);
    // A reader of the same stream from its start is behind the tail: it reads the backend.
    let mut late = store.subscribe(&s, 1);
    assert_eq!(late.poll_now().unwrap().len(), 40);
    assert!(store.stats().follower_reads >= 1);
}

/// Rebuilding read models from the log gives the same trees.
pub fn rebuild_matches(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(counter());
    for i in 0..200u64 {
        let s = stream(&format!("run/{}", i % 7));
        store.append(Append::new(s, vec![format!("x{i}").into_bytes()])).wait().unwrap();
    }
    let before = store.scan("counts", b"", None, usize::MAX, false).unwrap();
    let last = store.scan("last", b"", None, usize::MAX, false).unwrap();
    let reported = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let r = reported.clone();
    let n = store.rebuild(Box::new(move |done, _total| r.store(done, std::sync::atomic::Ordering::Relaxed))).unwrap();
    assert_eq!(n, 200);
    assert_eq!(reported.load(std::sync::atomic::Ordering::Relaxed), 200);
    assert_eq!(store.scan("counts", b"", None, usize::MAX, false).unwrap(), before);
    assert_eq!(store.scan("last", b"", None, usize::MAX, false).unwrap(), last);
    assert_eq!(store.projection_position("counter").unwrap(), 200);
    // Appends keep working after a rebuild.
    store.append(Append::new(stream("run/0"), payloads(&["after"]))).wait().unwrap();
    assert_eq!(store.get_json::<u64>("counts", b"run/0").unwrap(), Some(30));
}

/// Closing flushes; later appends fail with `Closed`.
pub fn close_then_append(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(vec![]);
    store.append(Append::new(stream("run/c"), payloads(&["1"]))).wait().unwrap();
    store.flush().wait().unwrap();
    store.close().unwrap();
    assert!(matches!(store.append(Append::new(stream("run/c"), payloads(&["2"]))).wait(), Err(Error::Closed)));
}

/// Pipelined appends land as multi-record segments; reads starting anywhere
/// inside a segment, and pages spanning many segments, return exact records.
pub fn segments_read_back(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    let store = open(counter());
    let (a, b) = (stream("run/seg-a"), stream("run/seg-b"));
    let mut pending = Vec::new();
    for i in 0..700u64 {
        pending.push(store.append(Append::new(a.clone(), vec![format!("a{i}").into_bytes()])));
        if i % 3 == 0 {
            pending.push(store.append(Append::new(b.clone(), vec![format!("b{i}").into_bytes(), b"x".to_vec()])));
        }
    }
    for p in pending {
        p.wait().unwrap();
    }
    assert_eq!(store.stream_head(&a).unwrap(), 700);
    for from in [1u64, 2, 17, 299, 300, 301, 650, 699, 700, 701] {
        for limit in [1usize, 3, 1000] {
            let got = store.read_stream(&a, from, limit).unwrap();
            let want: Vec<u64> = (from..=700).take(limit).collect();
            assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), want, "from {from} limit {limit}");
            for r in &got {
                assert_eq!(r.payload, format!("a{}", r.seq - 1).into_bytes());
            }
        }
    }
    let total = store.last_position().unwrap();
    assert_eq!(total, 700 + 2 * 234);
    let all = store.read_all(1, usize::MAX).unwrap();
    assert_eq!(all.iter().map(|r| r.position).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    for from in [1u64, 2, 333, total - 1, total, total + 1] {
        let got = store.read_all(from, 5).unwrap();
        let want: Vec<u64> = (from..=total).take(5).collect();
        assert_eq!(got.iter().map(|r| r.position).collect::<Vec<_>>(), want, "read_all from {from}");
    }
    // Each stream's order is its append order, within the global order.
    let a_seqs: Vec<u64> = all.iter().filter(|r| r.stream == a).map(|r| r.seq).collect();
    assert_eq!(a_seqs, (1..=700).collect::<Vec<_>>());
    assert_eq!(store.get_json::<u64>("counts", a.as_str().as_bytes()).unwrap(), Some(700));
}

/// Runs every check above against one backend.
pub fn run_all(open: impl Fn(Vec<Arc<dyn Projector>>) -> Store) {
    append_and_read(&open);
    expectations_and_refusals(&open);
    read_your_writes(&open);
    segments_read_back(&open);
    concurrent_appends_and_tail(&open);
    subscribe_from_middle(&open);
    follow_a_new_stream(&open);
    rebuild_matches(&open);
    close_then_append(&open);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Options;

    #[test]
    fn memory_backend_conforms() {
        run_all(|p| Store::open_memory(p, Options::default()).unwrap());
    }
}

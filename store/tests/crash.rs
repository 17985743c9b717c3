//! Crash safety: a child process performs concurrent durable appends and
//! reports each acknowledgement; the parent SIGKILLs it at a random moment,
//! reopens the store and checks that every acknowledged append is present,
//! intact and in order, and that no batch is half-visible. Repeated over
//! several kill points on the same directory, so recovery of a recovered log
//! is exercised too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrify_store::conformance::counter;
use ferrify_store::{Append, EventLog, Options, Store, StreamId};
use rand::Rng;

const WRITERS: usize = 8;
const CHILD_ENV: &str = "FERRIFY_CRASH_CHILD_DIR";

/// Batch `b` of any writer holds `b % 4 + 1` payloads `"<b>:<k>"`.
fn batch_len(b: u64) -> u64 {
    b % 4 + 1
}

#[test]
#[ignore = "helper: the child process of `acknowledged_appends_survive_sigkill`"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open_sled(std::path::Path::new(&dir), counter(), Options::default()).unwrap();
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            let stream = StreamId::new(format!("run/w{w}")).unwrap();
            let loose = StreamId::new(format!("run/loose{w}")).unwrap();
            // Continue where the previous child stopped.
            let head = store.stream_head(&stream).unwrap();
            let mut b = batch_index_after(&store, &stream, head);
            let mut loose_b = batch_index_after(&store, &loose, store.stream_head(&loose).unwrap());
            loop {
                let payloads = (0..batch_len(b)).map(|k| format!("{b}:{k}").into_bytes()).collect();
                let a = store.append(Append::new(stream.clone(), payloads).durable()).wait().unwrap();
                println!("ACK {w} {b} {} {}", a.first_seq, a.last_seq);
                b += 1;
                // Non-durable appends interleaved: never acknowledged as durable,
                // but must never be reordered or torn.
                let payloads = (0..batch_len(loose_b)).map(|k| format!("{loose_b}:{k}").into_bytes()).collect();
                store.append(Append::new(loose.clone(), payloads)).wait().unwrap();
                loose_b += 1;
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// The next batch index of a writer's stream, from its last record.
fn batch_index_after(store: &Store, stream: &StreamId, head: u64) -> u64 {
    if head == 0 {
        return 0;
    }
    let last = store.read_stream(stream, head, 1).unwrap();
    let text = String::from_utf8(last[0].payload.clone()).unwrap();
    let (b, _) = text.split_once(':').unwrap();
    b.parse::<u64>().unwrap() + 1
}

/// Checks a writer's stream: batches 0, 1, 2… each complete, in order, seqs contiguous.
fn check_stream(store: &Store, stream: &StreamId) -> u64 {
    let records = store.read_stream(stream, 1, usize::MAX).unwrap();
    let mut expected_b = 0u64;
    let mut expected_k = 0u64;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "{stream}: sequence gap");
        let text = String::from_utf8(r.payload.clone()).expect("payload intact");
        let (b, k) = text.split_once(':').expect("payload intact");
        let (b, k): (u64, u64) = (b.parse().unwrap(), k.parse().unwrap());
        assert_eq!((b, k), (expected_b, expected_k), "{stream}: record {} out of order or torn", r.seq);
        expected_k += 1;
        if expected_k == batch_len(b) {
            expected_b += 1;
            expected_k = 0;
        }
    }
    assert_eq!(expected_k, 0, "{stream}: batch {expected_b} is half-visible");
    records.len() as u64
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut total_acked = 0usize;
    for round in 0..6 {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.gen_range(100..600));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ACK ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement (the child has opened the store), then the kill point.
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("child acknowledged nothing");
        let started = Instant::now();
        let mut acks = vec![first];
        while started.elapsed() < kill_after {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                acks.push(l);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acks.extend(rx.try_iter());

        let store = Store::open_sled(dir.path(), counter(), Options::default()).unwrap();
        for line in &acks {
            let f: Vec<u64> = line[4..].split(' ').map(|x| x.parse().unwrap()).collect();
            let (w, b, first_seq, last_seq) = (f[0], f[1], f[2], f[3]);
            let stream = StreamId::new(format!("run/w{w}")).unwrap();
            let recs = store.read_stream(&stream, first_seq, (last_seq - first_seq + 1) as usize).unwrap();
            assert_eq!(recs.len() as u64, last_seq - first_seq + 1, "round {round}: acknowledged batch lost: {line}");
            for (k, r) in recs.iter().enumerate() {
                assert_eq!(r.payload, format!("{b}:{k}").into_bytes(), "round {round}: {line}");
            }
        }
        let mut events = 0;
        for w in 0..WRITERS {
            events += check_stream(&store, &StreamId::new(format!("run/w{w}")).unwrap());
            events += check_stream(&store, &StreamId::new(format!("run/loose{w}")).unwrap());
        }
        // The global log has no gaps and matches the streams; read models agree.
        let all = store.read_all(1, usize::MAX).unwrap();
        assert_eq!(all.len() as u64, events);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.position, i as u64 + 1);
        }
        for w in 0..WRITERS {
            let s = format!("run/w{w}");
            let head = store.stream_head(&StreamId::new(s.clone()).unwrap()).unwrap();
            assert_eq!(store.get_json::<u64>("counts", s.as_bytes()).unwrap().unwrap_or(0), head);
        }
        total_acked += acks.len();
        drop(store);
        eprintln!("round {round}: killed after {kill_after:?}, {} acknowledged, {events} events on disk", acks.len());
    }
    assert!(total_acked > 0);
}

//! The sled backend: conformance suite, persistence across reopen, catch-up
//! of read models on open, the directory lock, and corrupted records.

use std::sync::Arc;

use ferrify_store::conformance::{self, counter};
use ferrify_store::{Append, Error, EventLog, Options, Projector, Store, StreamId};

fn open_in(dir: &std::path::Path, p: Vec<Arc<dyn Projector>>) -> Store {
    Store::open_sled(dir, p, Options::default()).unwrap()
}

#[test]
fn sled_backend_conforms() {
    let dirs = parking_dirs();
    let next = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|p| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        open_in(dirs[i].path(), p)
    });
}

/// Appends `records` one-record appends round-robin to `run/0` … `run/{streams - 1}`, then closes.
fn fill(dir: &std::path::Path, projectors: Vec<Arc<dyn Projector>>, records: usize, streams: usize) {
    let store = open_in(dir, projectors);
    for i in 0..records {
        let s = StreamId::new(format!("run/{}", i % streams)).unwrap();
        store.append(Append::new(s, vec![b"x".to_vec()])).wait().unwrap();
    }
    store.close().unwrap();
}

fn parking_dirs() -> Vec<tempfile::TempDir> {
    (0..16).map(|_| tempfile::tempdir().unwrap()).collect()
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = StreamId::new("run/p").unwrap();
    {
        let store = open_in(dir.path(), counter());
        store.append(Append::new(s.clone(), vec![b"1".to_vec(), b"2".to_vec()]).durable()).wait().unwrap();
        store.append(Append::new(s.clone(), vec![b"3".to_vec()])).wait().unwrap();
        store.close().unwrap();
    }
    let store = open_in(dir.path(), counter());
    let recs = store.read_stream(&s, 1, 10).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
    assert_eq!(store.get_json::<u64>("counts", b"run/p").unwrap(), Some(3));
    let a = store.append(Append::new(s.clone(), vec![b"4".to_vec()])).wait().unwrap();
    assert_eq!((a.first_seq, a.first_position), (4, 4));
}

#[test]
fn projections_catch_up_on_open() {
    let dir = tempfile::tempdir().unwrap();
    // Written without any projector: the read models know nothing.
    fill(dir.path(), vec![], 30, 3);
    let store = open_in(dir.path(), counter());
    assert_eq!(store.projection_position("counter").unwrap(), 30);
    assert_eq!(store.get_json::<u64>("counts", b"run/1").unwrap(), Some(10));
}

#[test]
fn cursors_kept_under_their_earlier_key_are_moved_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), counter(), 12, 3);
    // A data directory as earlier versions left it: the cursors under `P`.
    {
        let db = open_raw(&dir.path().join("db"));
        let cursors = db.remove(b"C").unwrap().expect("the cursors are under C");
        db.insert(b"P", cursors).unwrap();
        db.flush().unwrap();
    }
    let store = open_in(dir.path(), counter());
    // Caught up from the moved cursor, not from the start: nothing counted twice.
    assert_eq!(store.projection_position("counter").unwrap(), 12);
    assert_eq!(store.get_json::<u64>("counts", b"run/1").unwrap(), Some(4));
    store.append(Append::new(StreamId::new("run/1").unwrap(), vec![b"x".to_vec()])).wait().unwrap();
    store.close().unwrap();
    drop(store);
    let db = open_raw(&dir.path().join("db"));
    assert!(db.get(b"P").unwrap().is_none(), "the earlier key is gone");
    assert!(db.get(b"C").unwrap().is_some());
}

#[test]
fn a_held_directory_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open_in(dir.path(), vec![]);
    match Store::open_sled(dir.path(), vec![], Options::default()) {
        Err(Error::Locked(d)) => assert!(d.contains(&*dir.path().to_string_lossy())),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a second store opened a held directory"),
    }
}

#[test]
fn corrupt_record_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = StreamId::new("run/c").unwrap();
    {
        let store = open_in(dir.path(), vec![]);
        store.append(Append::new(s.clone(), vec![b"ok".to_vec()]).durable()).wait().unwrap();
        store.append(Append::new(s.clone(), vec![b"later".to_vec()]).durable()).wait().unwrap();
        store.close().unwrap();
    }
    {
        // Overwrite the record at position 1 with garbage, behind the store's back.
        let db = open_raw(&dir.path().join("db"));
        let mut key = vec![b'L'];
        key.extend_from_slice(&1u64.to_be_bytes());
        db.insert(key, vec![0xFE, 1, 200, 200, 200]).unwrap();
        db.flush().unwrap();
    }
    let store = open_in(dir.path(), vec![]);
    match store.read_stream(&s, 1, 10) {
        Err(Error::Corrupt { at, .. }) => {
            assert_eq!(at.position, Some(1));
        }
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    assert!(matches!(store.read_all(1, 10), Err(Error::Corrupt { .. })));
    drop(store);
    // Corrupt tail: opening reports where instead of panicking.
    {
        let db = open_raw(&dir.path().join("db"));
        let mut key = vec![b'L'];
        key.extend_from_slice(&2u64.to_be_bytes());
        db.insert(key, vec![0xFE, 1, 1]).unwrap();
        db.flush().unwrap();
    }
    match Store::open_sled(dir.path(), vec![], Options::default()) {
        Err(Error::Corrupt { at, .. }) => assert_eq!(at.position, Some(2)),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a log with a corrupt tail"),
    }
    // A projection opening on the corrupt log reports where, instead of panicking.
    match Store::open_sled(dir.path(), counter(), Options::default()) {
        Err(Error::Corrupt { at, .. }) => assert!(matches!(at.position, Some(1 | 2))),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a corrupt log with a projection"),
    }
}

#[test]
fn rebuild_removes_stale_and_repairs_damaged_read_models() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), counter(), 20, 2);
    {
        // Damage the read models behind the store's back: a stale key and a wrong count.
        let db = open_raw(&dir.path().join("db"));
        db.insert(b"Kcounts\0run/ghost", b"99".to_vec()).unwrap();
        db.insert(b"Kcounts\0run/0", b"1234".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let store = open_in(dir.path(), counter());
    assert_eq!(store.get_json::<u64>("counts", b"run/ghost").unwrap(), Some(99));
    store.rebuild(Box::new(|_, _| {})).unwrap();
    assert_eq!(store.get("counts", b"run/ghost").unwrap(), None);
    assert_eq!(store.get_json::<u64>("counts", b"run/0").unwrap(), Some(10));
    assert_eq!(store.get_json::<u64>("counts", b"run/1").unwrap(), Some(10));
    assert_eq!(store.projection_position("counter").unwrap(), 20);
}

#[test]
fn fsync_and_commit_time_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), counter());
    let before = store.stats();
    assert_eq!((before.fsync_micros, before.commit_micros), (0, 0));
    let s = StreamId::new("run/t").unwrap();
    for i in 0..20 {
        store.append(Append::new(s.clone(), vec![format!("{i}").into_bytes()]).durable()).wait().unwrap();
    }
    let after = store.stats();
    // Twenty fsyncs of a real file and twenty sled batches take more than a microsecond each.
    assert!(after.fsyncs >= 20 && after.fsync_micros >= 20, "{after:?}");
    assert!(after.commits >= 20 && after.commit_micros > 0, "{after:?}");
}

#[test]
fn non_durable_appends_are_fsynced_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { flush_interval: std::time::Duration::from_millis(20), ..Options::default() };
    let store = Store::open_sled(dir.path(), vec![], options).unwrap();
    let s = StreamId::new("run/lazy").unwrap();
    let before = store.stats().fsyncs;
    store.append(Append::new(s.clone(), vec![b"chunk".to_vec()])).wait().unwrap();
    // Acknowledged before any fsync...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // ...and fsynced by the syncer shortly after, without any further append.
    while store.stats().fsyncs == before {
        assert!(std::time::Instant::now() < deadline, "no fsync within 5 s of a non-durable append");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(store.stats().durable_appends, 0);
}

/// Opens the sled database directly, waiting for the lock sled's I/O
/// threads may hold a moment after the store closed.
fn open_raw(path: &std::path::Path) -> sled::Db {
    let mut attempt = 0;
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if attempt < 100 && e.to_string().contains("could not acquire lock") => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

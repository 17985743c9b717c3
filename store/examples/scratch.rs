use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir_in("/work").unwrap();
    let n = 5000u64;
    let db = sled::Config::new().path(dir.path().join("ins")).flush_every_ms(None).open().unwrap();
    let t = Instant::now();
    for i in 0..n {
        db.insert(&i.to_be_bytes(), vec![1u8; 40]).unwrap();
    }
    let w = t.elapsed();
    let t = Instant::now();
    db.flush().unwrap();
    println!("inserts: write {:.1}us/op, flush {:?}", w.as_secs_f64() * 1e6 / n as f64, t.elapsed());
    let db = sled::Config::new().path(dir.path().join("big")).flush_every_ms(None).open().unwrap();
    let t = Instant::now();
    for j in 0..n / 50 {
        let mut b = sled::Batch::default();
        for i in 0..50 {
            b.insert(&(j * 50 + i).to_be_bytes(), vec![1u8; 40]);
        }
        db.apply_batch(b).unwrap();
    }
    let w = t.elapsed();
    let t = Instant::now();
    db.flush().unwrap();
    println!("batches of 50: write {:.1}us/item, flush {:?}", w.as_secs_f64() * 1e6 / n as f64, t.elapsed());
}

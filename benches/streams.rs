//! Load: N concurrent SSE streams of the builtin `lorem` model (50 words,
//! `pace_ms` 20) against the real server binary on loopback. Reports the
//! added delay per token (gap between two `message` frames minus the pace; over
//! all gaps, and over the gaps while all N streams are open, between the last
//! stream's first frame and the first stream's end),
//! time to first frame, and the server's resident memory per open stream.
//!
//!     cargo bench --bench streams                 # 1,000 streams
//!     STREAMS=200 cargo bench --bench streams
//!     FERRIFY_BIN=path/to/ferrify cargo bench --bench streams   # another server build
//!     STREAMS_TIMELINE=1 cargo bench --bench streams   # also: late gaps (> 5 ms) per 50 ms of the run
//!     STREAMS_TIMELINE=10 cargo bench --bench streams  # the same per 10 ms

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PACE_MS: u64 = 20;
const WORDS: u64 = 50;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("STREAMS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // FERRIFY_BIN: another build of the server, for A/B runs of one bench binary.
    let bin = std::env::var_os("FERRIFY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ferrify").into());
    let mut server = Command::new(bin)
        // Every stream is one run of one key: the admission caps (128 runs per
        // key by default) would refuse most of them.
        .args(["serve", "--no-demo", "--admin-token", "bench", "--max-concurrent-runs", "0"])
        .args(["--max-concurrent-runs-per-key", "0", "--addr", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(n).build().unwrap();
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let yaml = format!(
        "app: {{mode: chat, name: lorem}}\nmodel_config:\n  model: {{provider: builtin, name: lorem, mode: chat, completion_params: {{max_tokens: {WORDS}, pace_ms: {PACE_MS}}}}}\n"
    );
    let imported: Value = client
        .post(format!("{base}/console/api/apps/imports"))
        .bearer_auth("bench")
        .json(&json!({"mode": "yaml-content", "yaml_content": yaml}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = imported["app_id"].as_str().unwrap().to_string();
    let key: Value = client
        .post(format!("{base}/console/api/apps/{app}/api-keys"))
        .bearer_auth("bench")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["token"].as_str().unwrap().to_string();
    let idle_rss = rss_kib(server.id());

    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let mut r = client
                .post(format!("{base}/v1/chat-messages"))
                .bearer_auth(key)
                .json(&json!({"query": "go", "inputs": {}, "user": format!("u{i}"), "response_mode": "streaming"}))
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let mut arrivals = Vec::with_capacity(WORDS as usize);
            let mut buf = String::new();
            let mut ended = None;
            while let Ok(Some(chunk)) = r.chunk().await {
                let now = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    if frame.contains("\"event\":\"message\"") {
                        arrivals.push(now);
                    } else if frame.contains("\"event\":\"message_end\"") {
                        ended = Some(now);
                    }
                }
            }
            Some((sent, arrivals, ended))
        }));
    }
    // Sample the server's memory while every stream is open (streams last ~1 s).
    let mut peak_rss = idle_rss;
    let sampler_pid = server.id();
    while t0.elapsed() < Duration::from_millis(PACE_MS * WORDS * 2) {
        peak_rss = peak_rss.max(rss_kib(sampler_pid));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut gaps = Vec::new();
    let mut first = Vec::new();
    let (mut complete, mut words, mut refused) = (0, 0usize, 0usize);
    let mut runs = Vec::with_capacity(n);
    for t in tasks {
        let Some(run) = t.await.unwrap() else {
            refused += 1;
            continue;
        };
        runs.push(run);
    }
    // From the moment every stream has its first frame to the moment the first
    // one ends, all N streams are open at once: no stream is being opened or
    // closed, so these gaps show the steady state of N concurrent streams.
    let all_open = runs.iter().filter_map(|(_, arrivals, _)| arrivals.first().copied()).max();
    let first_end = runs.iter().filter_map(|(_, _, ended)| *ended).min();
    let mut steady = Vec::new();
    // Late gaps (over 5 ms added) by when they ended, in buckets from the start
    // (STREAMS_TIMELINE: their width in ms, 50 unless a number is given).
    let bucket_ms: u128 = std::env::var("STREAMS_TIMELINE").ok().and_then(|v| v.parse().ok()).unwrap_or(50).max(1);
    let mut late: std::collections::BTreeMap<u128, (usize, usize)> = Default::default();
    // The largest gap: which word of which stream, and when it ended.
    let mut worst: Option<(f64, usize, usize, u128)> = None;
    for (i, (sent, arrivals, ended)) in runs.into_iter().enumerate() {
        if ended.is_some() && arrivals.len() as u64 == WORDS {
            complete += 1;
        }
        words += arrivals.len();
        if let Some(f) = arrivals.first() {
            first.push(f.duration_since(sent).as_secs_f64() * 1000.0);
        }
        for (j, w) in arrivals.windows(2).enumerate() {
            let gap = (w[1].duration_since(w[0]).as_secs_f64() * 1000.0 - PACE_MS as f64).max(0.0);
            gaps.push(gap);
            if worst.is_none_or(|w| gap > w.0) {
                worst = Some((gap, i, j + 1, w[1].duration_since(t0).as_millis()));
            }
            let bucket = late.entry(w[1].duration_since(t0).as_millis() / bucket_ms).or_default();
            bucket.1 += 1;
            if gap > 5.0 {
                bucket.0 += 1;
            }
            if all_open.is_some_and(|t| w[0] >= t) && first_end.is_some_and(|t| w[1] <= t) {
                steady.push(gap);
            }
        }
    }
    let wall = t0.elapsed();
    gaps.sort_by(|a, b| a.total_cmp(b));
    first.sort_by(|a, b| a.total_cmp(b));
    steady.sort_by(|a, b| a.total_cmp(b));
    println!(
        "streams: {n} × {WORDS} words at {PACE_MS} ms; completed {complete}/{n}; {words} message frames in {wall:.2?}"
    );
    if refused > 0 {
        println!("REFUSED OR FAILED: {refused} streams got no 200 response (the figures below leave them out)");
    }
    println!(
        "added delay per token: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.last().copied().unwrap_or(0.0)
    );
    if steady.is_empty() {
        println!("  while all {n} streams are open: n/a (the first stream ended before the last one began)");
    } else {
        println!(
            "  while all {n} streams are open ({} gaps): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            steady.len(),
            percentile(&steady, 0.5),
            percentile(&steady, 0.99),
            steady.last().copied().unwrap_or(0.0)
        );
    }
    if std::env::var_os("STREAMS_TIMELINE").is_some() {
        for (b, (l, all)) in &late {
            println!("  {:>5} ms: {l:>5} late of {all:>5} gaps", b * bucket_ms);
        }
        if let Some((gap, stream, word, at)) = worst {
            println!("  largest gap: {gap:.1} ms, stream {stream} before word {}, ending {at} ms in", word + 1);
        }
    }
    println!("time to first frame: p50 {:.1} ms, p99 {:.1} ms", percentile(&first, 0.5), percentile(&first, 0.99));
    println!(
        "server RSS: idle {idle_rss} KiB, peak {peak_rss} KiB, {:.1} KiB per open stream",
        (peak_rss.saturating_sub(idle_rss)) as f64 / n as f64
    );
    let _ = server.kill();
    let _ = server.wait();
}

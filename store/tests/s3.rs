//! The S3 blob backend against a real S3-compatible server on loopback.
//!
//! The server is `FERRIFY_TEST_S3_ENDPOINT` when set (`.ci/run` starts a
//! moto server and sets it), else a moto server this test starts itself
//! (`python3 -m moto.server`, after `pip install 'moto[server]'`). Without either the test says so loudly;
//! with `FERRIFY_REQUIRE_S3=1` (set by `.ci/run`) it fails instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrify_store::blob::s3::{S3Blobs, S3Options};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends one raw HTTP/1.1 request and returns the status line.
fn http(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string())
}

/// An endpoint to test against, and the server process when this test started it.
fn endpoint() -> Result<(String, Option<Moto>), String> {
    if let Ok(e) = std::env::var("FERRIFY_TEST_S3_ENDPOINT") {
        if !e.trim().is_empty() {
            return Ok((e.trim().trim_end_matches('/').to_string(), None));
        }
    }
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `python3 -m moto.server`: {e}"))?;
    let mut moto = Moto(child);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(status)) = moto.0.try_wait() {
            return Err(format!("the moto server exited at start ({status}); is `moto[server]` installed?"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((format!("http://127.0.0.1:{port}"), Some(moto)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the moto server did not listen within 30 s (is `moto[server]` installed?)".into())
}

#[tokio::test]
async fn s3_backend_conformance() {
    let (endpoint, _moto) = match endpoint() {
        Ok(e) => e,
        Err(why) => {
            if std::env::var_os("FERRIFY_REQUIRE_S3").is_some() {
                panic!("no S3-compatible server for the S3 blob test: {why}");
            }
            eprintln!("\n*** SKIPPED s3_backend_conformance: {why} (`pip install 'moto[server]'` to run it) ***\n");
            return;
        }
    };
    let port: u16 = endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("endpoint with a port");
    let bucket = format!("ferrify-test-{}", std::process::id());
    let status = http(
        port,
        &format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .expect("creating the bucket");
    assert!(status.contains(" 200"), "creating the bucket answered {status:?}");
    let options = S3Options {
        bucket,
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        prefix: "blobs".into(),
        ..S3Options::default()
    };
    let blobs = S3Blobs::open(&options).unwrap();
    ferrify_store::blob::conformance::run(&blobs).await;
}

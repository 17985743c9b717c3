//! Files over the Service API, black-box: uploads and their errors, previews
//! (ranges, attachments, other apps), files in chat and workflow requests
//! (uploads and remote URLs served on loopback), and feedback.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{client, Server};

/// One part of a multipart form: name, filename, content type, bytes.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    mime: Option<&'a str>,
    body: Vec<u8>,
}

fn file<'a>(filename: &'a str, mime: &'a str, body: &[u8]) -> Part<'a> {
    Part { name: "file", filename: Some(filename), mime: Some(mime), body: body.to_vec() }
}

fn text<'a>(name: &'a str, value: &str) -> Part<'a> {
    Part { name, filename: None, mime: None, body: value.as_bytes().to_vec() }
}

/// Posts a multipart form to `/v1/files/upload`; returns status and JSON body.
async fn upload_parts(s: &Server, key: &str, parts: &[Part<'_>]) -> (u16, Value) {
    let boundary = "ferrify-test-boundary-7d3f";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", p.name).as_bytes(),
        );
        if let Some(f) = p.filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if let Some(m) = p.mime {
            body.extend_from_slice(format!("Content-Type: {m}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&p.body);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let r = client()
        .post(s.url("/v1/files/upload"))
        .bearer_auth(key)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await;
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        // The server may answer (413) and close before the body is sent.
        Err(e) => panic!("upload failed at the transport: {e}"),
    }
}

async fn upload(s: &Server, key: &str, name: &str, mime: &str, body: &[u8]) -> Value {
    let (st, f) = upload_parts(s, key, &[text("user", "u1"), file(name, mime, body)]).await;
    assert_eq!(st, 201, "{f}");
    f
}

fn local(kind: &str, id: &Value) -> Value {
    json!({"type": kind, "transfer_method": "local_file", "upload_file_id": id})
}

/// A GET without any key; returns status, headers and body.
async fn fetch(s: &Server, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = client().get(s.url(path)).send().await.unwrap();
    let (st, h) = (r.status().as_u16(), r.headers().clone());
    (st, h, r.bytes().await.unwrap().to_vec())
}

/// The query values of a link.
fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An upload's `source_url` is Dify's signed link: it serves the file to
/// anyone holding it, without an API key and before any message names the
/// file, until it is older than the access timeout (300 s); a wrong or
/// expired signature is 404. The key in the data directory signs, and
/// survives a restart.
#[tokio::test]
async fn signed_links_serve_files_until_they_expire() {
    use ferrify_engine::files::signed::UrlSigner;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret_key"), "ferrify-test-secret").unwrap();
    let mut s = Server::start_in(tmp.path(), &["--no-demo"]);
    let key = s.app("chat-files.yml").await;
    let png = b"\x89PNG\r\n\x1a\nnot really an image".to_vec();
    let f = upload(&s, &key, "cat.png", "image/png", &png).await;
    let id = f["id"].as_str().unwrap().to_string();
    let source = f["source_url"].as_str().unwrap().to_string();
    assert!(source.starts_with(&format!("/files/{id}/file-preview?timestamp=")), "{source}");
    let (st, h, body) = fetch(&s, &source).await;
    assert_eq!((st, body.as_slice()), (200, png.as_slice()));
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let (st, h, _) = fetch(&s, &format!("{source}&as_attachment=true")).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-disposition"], "attachment; filename*=UTF-8''cat.png");

    // HTML is always a download, through a link too.
    let page = upload(&s, &key, "page.html", "text/html", b"<script>alert(1)</script>").await;
    let (st, h, _) = fetch(&s, page["source_url"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-disposition"], "attachment; filename*=UTF-8''page.html");
    assert_eq!(h["content-type"], "application/octet-stream");

    // The data directory's key signs; links are good for 300 s.
    let signer = UrlSigner::new(b"ferrify-test-secret", std::time::Duration::from_secs(300)).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let link = |ts: i64, nonce: &str| {
        let sign = signer.sign(&id, &ts.to_string(), nonce);
        format!("/files/{id}/file-preview?timestamp={ts}&nonce={nonce}&sign={sign}")
    };
    assert_eq!(fetch(&s, &link(now - 250, "ab12")).await.0, 200);
    let (st, _, body) = fetch(&s, &link(now - 400, "ab12")).await;
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!((st, b["code"].as_str()), (404, Some("not_found")), "expired: {b}");
    assert_eq!(b["message"], "File not found or signature is invalid");

    // Tampered parts, a missing part, an unknown file.
    let q = query_of(&source);
    let (ts, nonce, sign) = (&q["timestamp"], &q["nonce"], &q["sign"]);
    for bad in [
        format!("/files/{id}/file-preview?timestamp={ts}&nonce={nonce}&sign=AAAA{sign}"),
        format!("/files/{id}/file-preview?timestamp={ts}&nonce=00{nonce}&sign={sign}"),
        format!("/files/{id}/file-preview?timestamp=1{ts}&nonce={nonce}&sign={sign}"),
        format!("/files/5f0c5a34-0000-4000-8000-000000000000/file-preview?timestamp={ts}&nonce={nonce}&sign={sign}"),
    ] {
        assert_eq!(fetch(&s, &bad).await.0, 404, "{bad}");
    }
    let (st, _, body) = fetch(&s, &format!("/files/{id}/file-preview?timestamp={ts}&nonce={nonce}")).await;
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    // A signed link names one file: nothing else is reachable with it.
    let g = upload(&s, &key, "dog.png", "image/png", b"other").await;
    let other = source.replace(&id, g["id"].as_str().unwrap());
    assert_eq!(fetch(&s, &other).await.0, 404);

    // A restart keeps the key: the link still works.
    s.terminate();
    let s = Server::start_in(tmp.path(), &["--no-demo"]);
    assert_eq!(fetch(&s, &source).await.0, 200);

    // Without a configured key, the server makes one, private, and keeps it.
    let fresh = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(fresh.path(), &["--no-demo"]);
    let key = s.app("chat-files.yml").await;
    let f = upload(&s, &key, "cat.png", "image/png", &png).await;
    let source = f["source_url"].as_str().unwrap().to_string();
    let made = std::fs::read_to_string(fresh.path().join("secret_key")).unwrap();
    assert_eq!(made.trim().len(), 64, "a random 256-bit key in hex");
    s.terminate();
    let s = Server::start_in(fresh.path(), &["--no-demo"]);
    assert_eq!(fetch(&s, &source).await.0, 200);
}

async fn chat_with(s: &Server, key: &str, user: &str, files: Value) -> (u16, Value) {
    let body = json!({"query": "read this", "inputs": {}, "user": user, "response_mode": "blocking", "files": files});
    s.call("POST", "/v1/chat-messages", key, Some(body)).await
}

#[tokio::test]
async fn upload_checks_answer_difys_codes() {
    let s = Server::start(&["--no-demo", "--upload-extension-blacklist", "exe,BAT"]);
    let key = s.app("chat-echo.yml").await;
    let code = |b: &Value| b["code"].as_str().unwrap_or("").to_string();

    // Success: the spec's shape, the id names the file, not the client's name.
    let (st, f) = upload_parts(&s, &key, &[text("user", "u1"), file("Notes.TXT", "text/plain", b"hello")]).await;
    assert_eq!(st, 201, "{f}");
    assert_eq!(
        (f["name"].as_str(), f["size"].as_u64(), f["extension"].as_str()),
        (Some("Notes.TXT"), Some(5), Some("txt"))
    );
    assert_eq!(f["mime_type"], "text/plain");
    for k in ["id", "created_by", "created_at", "source_url", "tenant_id"] {
        assert!(!f[k].is_null(), "{k} missing in {f}");
    }
    for k in ["preview_url", "original_url", "user_id", "conversation_id", "file_key", "reference"] {
        assert!(f[k].is_null(), "{k} should be null in {f}");
    }
    let stored =
        std::fs::read_dir(s.data.join("files")).unwrap().flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap());
    let names: Vec<String> = stored.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec![f["id"].as_str().unwrap().to_string()], "stored under the id only");

    // The checks, in §2.11's order.
    let (st, b) = upload_parts(&s, &key, &[text("user", "u1")]).await;
    assert_eq!((st, code(&b)), (400, "no_file_uploaded".into()));
    let (st, b) = s.call("POST", "/v1/files/upload", &key, Some(json!({"user": "u1"}))).await;
    assert_eq!((st, code(&b)), (400, "no_file_uploaded".into()));
    let (st, b) = upload_parts(&s, &key, &[file("a.txt", "text/plain", b"a"), file("b.txt", "text/plain", b"b")]).await;
    assert_eq!((st, code(&b)), (400, "too_many_files".into()));
    let other = Part { name: "other", filename: Some("b.txt"), mime: Some("text/plain"), body: b"b".to_vec() };
    let (st, b) = upload_parts(&s, &key, &[other, Part { mime: None, ..file("a.txt", "", b"a") }]).await;
    assert_eq!((st, code(&b)), (400, "too_many_files".into()), "too many files is checked before the MIME type");
    let (st, b) = upload_parts(&s, &key, &[Part { mime: None, ..file("a.txt", "", b"a") }]).await;
    assert_eq!((st, code(&b)), (415, "unsupported_file_type".into()));
    let (st, b) = upload_parts(&s, &key, &[file("", "text/plain", b"a")]).await;
    assert_eq!((st, code(&b)), (400, "filename_not_exists_error".into()));
    for bad in ["../../etc/passwd.txt", "dir\\\\a.txt"] {
        let (st, b) = upload_parts(&s, &key, &[file(bad, "text/plain", b"x")]).await;
        assert_eq!((st, code(&b)), (400, "invalid_param".into()), "{bad}: {b}");
        assert_eq!(b["message"], "Filename contains invalid characters");
    }
    for (name, ext) in [("setup.exe", "exe"), ("run.Bat", "bat")] {
        let (st, b) = upload_parts(&s, &key, &[file(name, "application/octet-stream", b"MZ")]).await;
        assert_eq!((st, code(&b)), (400, "invalid_param".into()));
        assert_eq!(b["message"], format!("File extension '.{ext}' is not allowed for security reasons"));
    }
    // Over the image limit (10 MB by default; inclusive).
    let big = vec![0u8; 10 * 1024 * 1024 + 1];
    let (st, b) = upload_parts(&s, &key, &[file("big.png", "image/png", &big)]).await;
    assert_eq!((st, code(&b)), (413, "file_too_large".into()), "{b}");
    let exact = vec![0u8; 10 * 1024 * 1024];
    let (st, _) = upload_parts(&s, &key, &[file("exact.png", "image/png", &exact)]).await;
    assert_eq!(st, 201);
    // §2.11's order: a second file part is answered before the first one's size.
    let (st, b) =
        upload_parts(&s, &key, &[file("big.png", "image/png", &big), file("b.txt", "text/plain", b"x")]).await;
    assert_eq!((st, code(&b)), (400, "too_many_files".into()), "{b}");
    // An oversized file, then the user field: still 413.
    let (st, b) = upload_parts(&s, &key, &[file("big.png", "image/png", &big), text("user", "u1")]).await;
    assert_eq!((st, code(&b)), (413, "file_too_large".into()), "{b}");
    // Refused uploads leave nothing behind; accepted ones are all there.
    let count: usize = std::fs::read_dir(s.data.join("files"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(count, 2);

    // Authentication comes first.
    let (st, b) = upload_parts(&s, "app-nope", &[file("a.txt", "text/plain", b"a")]).await;
    assert_eq!((st, code(&b)), (401, "unauthorized".into()));
}

#[tokio::test]
async fn previews_need_a_message_and_serve_ranges_and_downloads() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-files.yml").await;
    let other = s.app("chat-files.yml").await;
    let audio: Vec<u8> = (0..=255u8).collect();
    let a = upload(&s, &key, "song.mp3", "audio/mpeg", &audio).await;
    let t = upload(&s, &key, "résumé notes.txt", "text/plain", b"plain text body").await;
    let svg = upload(&s, &key, "pic.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>").await;
    let preview = |id: &Value| format!("/v1/files/{}/preview", id.as_str().unwrap());

    // A fresh upload is not reachable until a message references it.
    let (st, b) = s.call("GET", &preview(&a["id"]), &key, None).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("file_not_found")));
    // Another app cannot even reference it.
    let (st, b) = chat_with(&s, &other, "u1", json!([local("audio", &a["id"])])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let files = json!([local("audio", &a["id"]), local("document", &t["id"]), local("image", &svg["id"])]);
    let (st, b) = chat_with(&s, &key, "u1", files).await;
    assert_eq!(st, 200, "{b}");

    let get = |path: String, range: Option<&'static str>, k: String| {
        let url = s.url(&path);
        async move {
            let mut req = client().get(url).bearer_auth(k);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.bytes().await.unwrap().to_vec())
        }
    };
    let (st, h, body) = get(preview(&a["id"]), None, key.clone()).await;
    assert_eq!(st, 200);
    assert_eq!(body, audio);
    assert_eq!(h["content-type"], "audio/mpeg");
    assert_eq!(h["content-length"], "256");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["cache-control"], "public, max-age=3600");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.get("content-disposition").is_none());
    let (st, h, body) = get(preview(&a["id"]), Some("bytes=10-19"), key.clone()).await;
    assert_eq!(st, 206);
    assert_eq!(body, (10..20u8).collect::<Vec<_>>());
    assert_eq!(h["content-range"], "bytes 10-19/256");
    assert_eq!(h["content-length"], "10");
    let (st, _, body) = get(preview(&a["id"]), Some("bytes=-6"), key.clone()).await;
    assert_eq!((st, body), (206, (250..=255u8).collect::<Vec<_>>()));
    let (st, h, _) = get(preview(&a["id"]), Some("bytes=300-"), key.clone()).await;
    assert_eq!(st, 416);
    assert_eq!(h["content-range"], "bytes */256");

    // Documents: no ranges; attachments on request, with the name encoded.
    let (st, h, body) = get(preview(&t["id"]), Some("bytes=0-1"), key.clone()).await;
    assert_eq!((st, body.as_slice()), (200, &b"plain text body"[..]));
    assert!(h.get("accept-ranges").is_none());
    assert_eq!(h["content-type"], "text/plain");
    let (st, h, _) = get(format!("{}?as_attachment=true", preview(&t["id"])), None, key.clone()).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-disposition"], "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20notes.txt");
    assert_eq!(h["content-type"], "application/octet-stream");
    // SVG is always a download.
    let (_, h, _) = get(preview(&svg["id"]), None, key.clone()).await;
    assert_eq!(h["content-disposition"], "attachment; filename*=UTF-8''pic.svg");
    assert_eq!(h["x-content-type-options"], "nosniff");

    // Never across apps; unknown ids are not found.
    let (st, b) = s.call("GET", &preview(&a["id"]), &other, None).await;
    assert_eq!((st, b["code"].as_str()), (403, Some("file_access_denied")));
    let (st, b) = s.call("GET", "/v1/files/5f0c5a34-0000-4000-8000-000000000000/preview", &key, None).await;
    assert_eq!((st, b["code"].as_str()), (404, Some("file_not_found")));
    let (st, _) = s.call("GET", "/v1/files/not-an-id/preview", &key, None).await;
    assert_eq!(st, 404);
}

/// Serves `/notes.txt` (with a `Content-Disposition` name) and `/big.txt`
/// (announcing 20 MB) on loopback, to HEAD and GET.
async fn file_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let is_head = head.starts_with("HEAD ");
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, headers, body): (&str, String, Vec<u8>) = match path.as_str() {
                    "/notes.txt" => (
                        "200 OK",
                        "content-type: text/plain; charset=utf-8\r\ncontent-disposition: attachment; filename=\"remote notes.txt\"\r\n".into(),
                        b"remote text here".to_vec(),
                    ),
                    "/big.txt" => ("200 OK", "content-type: text/plain\r\n".into(), vec![b'x'; 20 * 1024 * 1024]),
                    _ => ("404 Not Found", String::new(), Vec::new()),
                };
                let mut reply = format!(
                    "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                if !is_head {
                    reply.extend_from_slice(&body);
                }
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn files_in_chat_requests_are_checked_and_kept_in_history() {
    let port = file_server().await;
    let s = Server::start(&["--no-demo", "--allow-private-network"]);
    let key = s.app("chat-files.yml").await;
    let t = upload(&s, &key, "notes.txt", "text/plain", b"local text").await;
    let remote = json!({"type": "document", "transfer_method": "remote_url", "url": format!("http://127.0.0.1:{port}/notes.txt")});
    let (st, b) = chat_with(&s, &key, "u1", json!([local("document", &t["id"]), remote])).await;
    assert_eq!(st, 200, "{b}");
    let conv = b["conversation_id"].as_str().unwrap();
    let (st, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u1"), &key, None).await;
    assert_eq!(st, 200, "{h}");
    let mf = &h["data"][0]["message_files"];
    assert_eq!(mf.as_array().map(Vec::len), Some(2), "{h}");
    assert_eq!(mf[0]["upload_file_id"], t["id"]);
    assert_eq!((mf[0]["transfer_method"].as_str(), mf[0]["belongs_to"].as_str()), (Some("local_file"), Some("user")));
    assert_eq!((mf[0]["filename"].as_str(), mf[0]["size"].as_u64()), (Some("notes.txt"), Some(10)));
    // History signs the upload's link afresh; it serves the file without a key.
    let url = mf[0]["url"].as_str().unwrap_or("");
    assert!(url.starts_with(&format!("/files/{}/file-preview?timestamp=", t["id"].as_str().unwrap())), "{url}");
    let (st, _, bytes) = fetch(&s, url).await;
    assert_eq!((st, bytes.as_slice()), (200, b"local text".as_slice()));
    assert_eq!(mf[1]["transfer_method"], "remote_url");
    assert_eq!(mf[1]["filename"], "remote notes.txt");
    assert_eq!((mf[1]["mime_type"].as_str(), mf[1]["size"].as_u64()), (Some("text/plain"), Some(16)));
    assert_eq!(mf[1]["url"], format!("http://127.0.0.1:{port}/notes.txt"));
    assert!(mf[1]["upload_file_id"].is_null());

    // Refusals: 400 invalid_param (types, methods, counts, other ids, remote files over the limit).
    let bad = |files: Value| chat_with(&s, &key, "u1", files);
    let id = &t["id"];
    let (st, b) =
        bad(json!([local("document", id), local("document", id), local("document", id), local("document", id)])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = bad(json!([{"type": "spreadsheet", "transfer_method": "local_file", "upload_file_id": id}])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = bad(json!([local("custom", id)])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "custom files need an allowed extension: {b}");
    let (st, b) = bad(json!([local("document", &json!("5f0c5a34-0000-4000-8000-000000000000"))])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = bad(json!([{"type": "document", "transfer_method": "tool_file", "tool_file_id": "x"}])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let big = json!([{"type": "document", "transfer_method": "remote_url", "url": format!("http://127.0.0.1:{port}/big.txt")}]);
    let (st, b) = bad(big).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("the limit is"), "{b}");

    // An app with uploads off ignores request files.
    let plain = s.app("chat-echo.yml").await;
    let (st, b) = chat_with(&s, &plain, "u1", json!([local("document", id)])).await;
    assert_eq!(st, 200, "{b}");
    let conv = b["conversation_id"].as_str().unwrap();
    let (_, h) = s.call("GET", &format!("/v1/messages?conversation_id={conv}&user=u1"), &plain, None).await;
    assert_eq!(h["data"][0]["message_files"], json!([]));

    // Without --allow-private-network the guard refuses loopback URLs at once.
    let guarded = Server::start(&["--no-demo"]);
    let key = guarded.app("chat-files.yml").await;
    let remote = json!([{"type": "document", "transfer_method": "remote_url", "url": format!("http://127.0.0.1:{port}/notes.txt")}]);
    let (st, b) = chat_with(&guarded, &key, "u1", remote).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("private-network guard"), "{b}");
}

#[tokio::test]
async fn workflows_read_uploaded_and_remote_files() {
    let port = file_server().await;
    let s = Server::start(&["--no-demo", "--allow-private-network"]);
    let key = s.app("workflow-files.yml").await;
    let t = upload(&s, &key, "doc.md", "text/markdown", b"# Local doc").await;
    let remote = json!({"type": "document", "transfer_method": "remote_url", "url": format!("http://127.0.0.1:{port}/notes.txt")});
    let run = |inputs: Value, files: Value| {
        s.call(
            "POST",
            "/v1/workflows/run",
            &key,
            Some(json!({"inputs": inputs, "files": files, "user": "u1", "response_mode": "blocking"})),
        )
    };
    let (st, b) = run(json!({"doc": local("document", &t["id"])}), json!([remote])).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"]["status"], "succeeded", "{b}");
    assert_eq!(b["data"]["outputs"]["doc_text"], "# Local doc");
    assert_eq!(b["data"]["outputs"]["files_text"], json!(["remote text here"]));

    // Workflow runs check the declared type strictly; the variable's settings apply.
    let (st, b) = run(json!({"doc": local("image", &t["id"])}), json!([])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let img = upload(&s, &key, "a.png", "image/png", b"\x89PNG").await;
    let (st, b) = run(json!({"doc": local("document", &img["id"])}), json!([])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let (st, b) = run(json!({"doc": local("document", &t["id"])}), json!([remote, remote, remote])).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "at most 2 files: {b}");
    // Another app's upload is not this app's file.
    let other = s.app("workflow-files.yml").await;
    let (st, b) = s
        .call(
            "POST",
            "/v1/workflows/run",
            &other,
            Some(json!({"inputs": {"doc": local("document", &t["id"])}, "user": "u1"})),
        )
        .await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
}

#[tokio::test]
async fn feedback_round_trip() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-echo.yml").await;
    let (_, b) =
        s.call("POST", "/v1/chat-messages", &key, Some(json!({"query": "rate me", "inputs": {}, "user": "u1"}))).await;
    let (mid, conv) =
        (b["message_id"].as_str().unwrap().to_string(), b["conversation_id"].as_str().unwrap().to_string());
    let (feedback_path, history_path) =
        (format!("/v1/messages/{mid}/feedbacks"), format!("/v1/messages?conversation_id={conv}&user=u1"));
    let feedback = |user: &str, body: Value| {
        let mut body = body;
        body["user"] = json!(user);
        s.call("POST", &feedback_path, &key, Some(body))
    };
    let history = || s.call("GET", &history_path, &key, None);

    let (st, b) = feedback("u1", json!({"rating": null})).await;
    assert_eq!((st, b["message"].as_str()), (400, Some("rating cannot be None when feedback not exists")));
    let (st, b) = feedback("u1", json!({"rating": "meh"})).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")));
    let (st, b) = feedback("u2", json!({"rating": "like"})).await;
    assert_eq!((st, b["code"].as_str(), b["message"].as_str()), (404, Some("not_found"), Some("Message Not Exists.")));
    let (st, b) = s.call("POST", &feedback_path, &key, Some(json!({"rating": "like"}))).await;
    assert_eq!((st, b["message"].as_str()), (400, Some("Arg user must be provided.")));

    let (st, b) = feedback("u1", json!({"rating": "like", "content": "great"})).await;
    assert_eq!((st, b), (200, json!({"result": "success"})));
    let (_, h) = history().await;
    assert_eq!(h["data"][0]["feedback"], json!({"rating": "like"}));
    let (st, f) = s.call("GET", "/v1/app/feedbacks?page=1&limit=20", &key, None).await;
    assert_eq!(st, 200, "{f}");
    let item = &f["data"][0];
    assert_eq!((item["rating"].as_str(), item["content"].as_str()), (Some("like"), Some("great")));
    assert_eq!(
        (item["message_id"].as_str(), item["conversation_id"].as_str()),
        (Some(mid.as_str()), Some(conv.as_str()))
    );
    assert_eq!((item["from_source"].as_str(), item["from_account_id"].clone()), (Some("user"), Value::Null));
    assert!(item["created_at"].as_str().is_some_and(|t| t.len() == 19 && t.contains('T')), "{item}");
    let first_id = item["id"].clone();

    // A change keeps the feedback; null revokes it.
    let (st, _) = feedback("u1", json!({"rating": "dislike"})).await;
    assert_eq!(st, 200);
    let (_, f) = s.call("GET", "/v1/app/feedbacks", &key, None).await;
    assert_eq!(f["data"].as_array().map(Vec::len), Some(1));
    assert_eq!((f["data"][0]["id"].clone(), f["data"][0]["rating"].as_str()), (first_id, Some("dislike")));
    // A page past every real one, even past 64 bits, is simply empty (Dify's `page` is any int ≥ 1).
    let (st, f) = s.call("GET", "/v1/app/feedbacks?page=1774686597264147306512384&limit=7", &key, None).await;
    assert_eq!((st, f), (200, json!({"data": []})));
    let (st, f) = s.call("GET", "/v1/app/feedbacks?page=%2B1", &key, None).await;
    assert_eq!((st, f["data"].as_array().map(Vec::len)), (200, Some(1)));
    // Another app's key cannot rate this message, nor list its feedback.
    let other = s.app("chat-echo.yml").await;
    let (st, b) = s.call("POST", &feedback_path, &other, Some(json!({"rating": "like", "user": "u1"}))).await;
    assert_eq!((st, b["message"].as_str()), (404, Some("Message Not Exists.")));
    let (_, f) = s.call("GET", "/v1/app/feedbacks", &other, None).await;
    assert_eq!(f, json!({"data": []}));
    // A completion message takes feedback too; the list is newest first, page by page.
    let completion = s
        .key(&s.import_yaml("app: {mode: completion, name: rated}\nmodel_config:\n  model: {provider: builtin, name: echo, mode: chat, completion_params: {}}\n  pre_prompt: '{{query}}'\n  user_input_form:\n  - paragraph: {label: Query, variable: query, required: true}\n").await)
        .await;
    let (_, b) = s
        .call("POST", "/v1/completion-messages", &completion, Some(json!({"inputs": {"query": "q"}, "user": "u1"})))
        .await;
    let cmid = b["message_id"].as_str().unwrap().to_string();
    let path = format!("/v1/messages/{cmid}/feedbacks");
    let (st, b) = s.call("POST", &path, &completion, Some(json!({"rating": "dislike", "user": "u1"}))).await;
    assert_eq!(st, 200, "{b}");
    let (_, b) =
        s.call("POST", "/v1/chat-messages", &key, Some(json!({"query": "again", "inputs": {}, "user": "u1"}))).await;
    let second = b["message_id"].as_str().unwrap().to_string();
    let (st, _) = s
        .call("POST", &format!("/v1/messages/{second}/feedbacks"), &key, Some(json!({"rating": "like", "user": "u1"})))
        .await;
    assert_eq!(st, 200);
    let (_, f) = s.call("GET", "/v1/app/feedbacks", &key, None).await;
    let ids: Vec<&str> = f["data"].as_array().unwrap().iter().filter_map(|x| x["message_id"].as_str()).collect();
    assert_eq!(ids, [second.as_str(), mid.as_str()]);
    let (_, f) = s.call("GET", "/v1/app/feedbacks?page=2&limit=1", &key, None).await;
    assert_eq!(f["data"][0]["message_id"].as_str(), Some(mid.as_str()));
    let (_, f) = s.call("GET", "/v1/app/feedbacks", &completion, None).await;
    assert_eq!(
        (f["data"][0]["message_id"].as_str(), f["data"][0]["rating"].as_str()),
        (Some(cmid.as_str()), Some("dislike"))
    );
    let (st, _) = s
        .call("POST", &format!("/v1/messages/{second}/feedbacks"), &key, Some(json!({"rating": null, "user": "u1"})))
        .await;
    assert_eq!(st, 200);
    let (_, h) = history().await;
    assert_eq!(h["data"][0]["feedback"], json!({"rating": "dislike"}));
    let (st, _) = feedback("u1", json!({"rating": null})).await;
    assert_eq!(st, 200);
    let (_, h) = history().await;
    assert_eq!(h["data"][0]["feedback"], Value::Null);
    let (_, f) = s.call("GET", "/v1/app/feedbacks", &key, None).await;
    assert_eq!(f, json!({"data": []}));

    // Pages, and their bounds.
    for bad in ["0", "-1", "x", "1.5", "1e3"] {
        let (st, b) = s.call("GET", &format!("/v1/app/feedbacks?page={bad}"), &key, None).await;
        assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "page={bad}");
    }
    let (st, _) = s.call("GET", "/v1/app/feedbacks?limit=102", &key, None).await;
    assert_eq!(st, 400);
    let (st, f) = s.call("GET", "/v1/app/feedbacks?page=5&limit=101", &key, None).await;
    assert_eq!((st, f), (200, json!({"data": []})));
}

/// A number from `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A 100 MB video goes to storage as it arrives: the server's peak memory
/// hardly moves, the stored file has every byte, and a ranged preview of
/// its end reads them back.
#[tokio::test]
async fn a_100_mb_upload_keeps_server_memory_flat() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-files.yml").await;
    // Warm up the upload path, then take the baseline.
    upload(&s, &key, "warm.mp4", "video/mp4", &[0u8; 4096]).await;
    let pid = s.child.id();
    let Some(before) = proc_kib(pid, "VmHWM:") else {
        eprintln!("SKIPPED: /proc/<pid>/status is not readable here; memory not measured");
        return;
    };

    const SIZE: usize = 100 * 1000 * 1000;
    const CHUNK: usize = 200_000;
    let boundary = "ferrify-big-upload";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nu1\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() + SIZE + tail.len();
    // Byte i of the file is i % 251: any lost or reordered chunk shows.
    let chunks = (0..SIZE / CHUNK).map(|c| {
        let start = c * CHUNK;
        Ok::<_, std::io::Error>(bytes::Bytes::from((start..start + CHUNK).map(|i| (i % 251) as u8).collect::<Vec<_>>()))
    });
    let body = futures_util::stream::iter(
        std::iter::once(Ok(bytes::Bytes::from(head)))
            .chain(chunks)
            .chain(std::iter::once(Ok(bytes::Bytes::from(tail)))),
    );
    let r = client()
        .post(s.url("/v1/files/upload"))
        .bearer_auth(&key)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .header("content-length", length)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["size"], json!(SIZE));
    let after = proc_kib(pid, "VmHWM:").unwrap_or(before);
    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!("server peak RSS: {} KiB before, {} KiB after a 100 MB upload (+{growth_mib:.1} MiB)", before, after);
    assert!(growth_mib < 32.0, "the server's peak memory grew by {growth_mib:.1} MiB during a 100 MB upload");

    // Every byte is there: reference it, then read the last 1000 bytes back.
    let (st, b) = chat_with(&s, &key, "u1", json!([local("video", &f["id"])])).await;
    assert_eq!(st, 200, "{b}");
    let r = client()
        .get(s.url(&format!("/v1/files/{}/preview", f["id"].as_str().unwrap())))
        .bearer_auth(&key)
        .header("range", "bytes=-1000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    let tail_bytes = r.bytes().await.unwrap();
    let expected: Vec<u8> = (SIZE - 1000..SIZE).map(|i| (i % 251) as u8).collect();
    assert_eq!(tail_bytes.as_ref(), expected.as_slice());
}

/// An upload that stops sending is answered 408 once a chunk is overdue
/// (`limits.request_timeout_secs`), and the server keeps serving.
#[tokio::test]
async fn a_stalled_upload_times_out() {
    let s = Server::start(&["--no-demo", "--request-timeout-secs", "1"]);
    let key = s.app("chat-files.yml").await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    let part = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfirst bytes";
    let head = format!(
        "POST /v1/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n{part}"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled upload");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\"") && text.contains("limits.request_timeout_secs"), "{text}");
    // The server still serves uploads.
    upload(&s, &key, "after.txt", "text/plain", b"ok").await;
}

/// Files across 2 apps × 2 users: the uploading app's users may reference
/// and preview a file (preview ignores `user`, as Dify does); the other
/// app's users may do neither.
#[tokio::test]
async fn file_access_across_two_apps_and_two_users() {
    let s = Server::start(&["--no-demo"]);
    let a = s.app("chat-files.yml").await;
    let b = s.app("chat-files.yml").await;
    let f = upload(&s, &a, "n.txt", "text/plain", b"app A, user 1").await;
    let preview = format!("/v1/files/{}/preview", f["id"].as_str().unwrap());
    for key in [&a, &b] {
        for user in ["u1", "u2"] {
            let (st, body) = s.call("GET", &format!("{preview}?user={user}"), key, None).await;
            // Not referenced by any message yet: not found, for every app and user.
            assert_eq!((st, body["code"].as_str()), (404, Some("file_not_found")), "{key} {user}");
        }
    }
    // App B's users cannot reference it; app A's second user can.
    for user in ["u1", "u2"] {
        let (st, body) = chat_with(&s, &b, user, json!([local("document", &f["id"])])).await;
        assert_eq!((st, body["code"].as_str()), (400, Some("invalid_param")), "{body}");
    }
    let (st, body) = chat_with(&s, &a, "u2", json!([local("document", &f["id"])])).await;
    assert_eq!(st, 200, "{body}");
    for user in ["u1", "u2"] {
        let r = client().get(s.url(&format!("{preview}?user={user}"))).bearer_auth(&a).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"app A, user 1");
        let (st, body) = s.call("GET", &format!("{preview}?user={user}"), &b, None).await;
        assert_eq!((st, body["code"].as_str()), (403, Some("file_access_denied")), "{body}");
    }
    // The message that referenced it shows it in app A's history of user 2 only.
    let (st, page) = s.call("GET", "/v1/conversations?user=u2", &a, None).await;
    assert_eq!(st, 200);
    let conv = page["data"][0]["id"].as_str().unwrap().to_string();
    let (_, msgs) = s.call("GET", &format!("/v1/messages?user=u2&conversation_id={conv}"), &a, None).await;
    let files = &msgs["data"][0]["message_files"];
    assert_eq!(files.as_array().map(Vec::len), Some(1), "{msgs}");
    let (st, _) = s.call("GET", &format!("/v1/messages?user=u1&conversation_id={conv}"), &a, None).await;
    assert_eq!(st, 404);
}

/// Header injection through file names: a raw CR in a part header is a
/// malformed form (400), and an encoded CR LF stays text: a download's
/// `Content-Disposition` percent-encodes it and no header is added.
#[tokio::test]
async fn file_names_cannot_inject_headers() {
    let s = Server::start(&["--no-demo"]);
    let key = s.app("chat-files.yml").await;
    let (st, b) = upload_parts(&s, &key, &[file("bad\rname.txt", "text/plain", b"x")]).await;
    assert_eq!((st, b["code"].as_str()), (400, Some("invalid_param")), "{b}");
    let name = "x%0D%0ASet-Cookie: owned=1;.txt";
    let f = upload(&s, &key, name, "text/plain", b"payload").await;
    assert_eq!(f["name"], name);
    let (st, b) = chat_with(&s, &key, "u1", json!([local("document", &f["id"])])).await;
    assert_eq!(st, 200, "{b}");
    let r = client()
        .get(s.url(&format!("/v1/files/{}/preview?as_attachment=true", f["id"].as_str().unwrap())))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename*=UTF-8''x%250D%250ASet-Cookie%3A%20owned%3D1%3B.txt"
    );
}

/// `[files]` limits apply per category, inclusive: a document, an audio and
/// a video file of exactly their limit are stored, one byte more is 413
/// `file_too_large` (the defaults are checked in `upload_checks_answer_difys_codes`).
#[tokio::test]
async fn configured_limits_apply_per_category() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrify.toml");
    std::fs::write(&config, "[files]\nfile_limit_mb = 1\naudio_limit_mb = 2\nvideo_limit_mb = 3\nimage_limit_mb = 1\n")
        .unwrap();
    let s = Server::start_in(&dir.path().join("data"), &["--no-demo", "--config", config.to_str().unwrap()]);
    let key = s.app("chat-files.yml").await;
    const MIB: usize = 1024 * 1024;
    for (name, mime, limit) in
        [("a.pdf", "application/pdf", MIB), ("a.mp3", "audio/mpeg", 2 * MIB), ("a.mp4", "video/mp4", 3 * MIB)]
    {
        let (st, b) = upload_parts(&s, &key, &[file(name, mime, &vec![7u8; limit])]).await;
        assert_eq!((st, b["size"].as_u64()), (201, Some(limit as u64)), "{name} at its limit: {b}");
        let (st, b) = upload_parts(&s, &key, &[file(name, mime, &vec![7u8; limit + 1])]).await;
        assert_eq!((st, b["code"].as_str()), (413, Some("file_too_large")), "{name} over its limit: {b}");
    }
}

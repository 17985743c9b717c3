//! The dify-sandbox HTTP protocol, used for both languages when a sandbox
//! endpoint is configured.
//!
//! Like Dify's `CodeExecutor`: the user's code is followed by a runner that
//! decodes the base64 JSON inputs, calls `main`, and prints the JSON result
//! between two `<<RESULT>>` tags; the program is POSTed to
//! `{url}/v1/sandbox/run` with the `X-Api-Key` header as
//! `{"language": "python3"|"nodejs", "code", "preload": "", "enable_network": true}`,
//! and the answer `{"code": 0, "data": {"stdout", "error"}}` is checked and
//! the result taken from `stdout`.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::super::NodeError;
use super::{check, Language};

/// Dify's `CODE_EXECUTION_TIMEOUT` is (connect 10 s, read 60 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn exec_error(msg: impl Into<String>) -> NodeError {
    NodeError::new("CodeExecutionError", msg)
}

fn client() -> Result<&'static reqwest::Client, NodeError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| exec_error(format!("Failed to build the sandbox client: {e}")))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// The program the sandbox runs: the code, then Dify's runner.
pub fn program(language: Language, code: &str, inputs: &Map<String, Value>) -> Result<String, NodeError> {
    let json = serde_json::to_string(inputs).map_err(|e| exec_error(format!("Failed to serialize inputs: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(json.as_bytes());
    Ok(match language {
        Language::Python3 => format!(
            "{code}\n\nimport json\nfrom base64 import b64decode\n\n\
             # decode and prepare input dict\n\
             inputs_obj = json.loads(b64decode('{b64}').decode('utf-8'))\n\n\
             # execute main function\n\
             output_obj = main(**inputs_obj)\n\n\
             # convert output to json and print\n\
             output_json = json.dumps(output_obj, indent=4)\n\
             result = f'''<<RESULT>>{{output_json}}<<RESULT>>'''\n\
             print(result)\n"
        ),
        Language::JavaScript => format!(
            "// declare main function\n{code}\n\n\
             // decode and prepare input object\n\
             var inputs_obj = JSON.parse(Buffer.from('{b64}', 'base64').toString('utf-8'))\n\n\
             // execute main function\n\
             var output_obj = main(inputs_obj)\n\n\
             // convert output to json and print\n\
             var output_json = JSON.stringify(output_obj)\n\
             var result = `<<RESULT>>${{output_json}}<<RESULT>>`\n\
             console.log(result)\n"
        ),
    })
}

/// Runs `code` on the sandbox at `url` and returns the result object.
pub async fn run(
    url: &str,
    key: Option<&str>,
    language: Language,
    code: &str,
    inputs: &Map<String, Value>,
) -> Result<Map<String, Value>, NodeError> {
    let body = json!({
        "language": match language { Language::Python3 => "python3", Language::JavaScript => "nodejs" },
        "code": program(language, code, inputs)?,
        "preload": "",
        "enable_network": true,
    });
    let endpoint = format!("{}/v1/sandbox/run", url.trim_end_matches('/'));
    let network = |e: reqwest::Error| {
        exec_error(format!(
            "Failed to execute code, which is likely a network issue, please check if the sandbox service is running. ( Error: {e} )"
        ))
    };
    let resp =
        client()?.post(&endpoint).header("X-Api-Key", key.unwrap_or("")).json(&body).send().await.map_err(network)?;
    let status = resp.status().as_u16();
    if status == 503 {
        return Err(exec_error("Code execution service is unavailable"));
    }
    if status != 200 {
        return Err(exec_error(format!(
            "Failed to execute code, got status code {status}, please check if the sandbox service is running"
        )));
    }
    let bytes = resp.bytes().await.map_err(network)?;
    let stdout = stdout_of(&bytes)?;
    check::parse_result(check::extract_tagged(&stdout, check::RESULT_TAG)?)
}

/// The `stdout` of a sandbox answer, or its error.
pub fn stdout_of(body: &[u8]) -> Result<String, NodeError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| exec_error("Failed to parse response"))?;
    let Some(obj) = v.as_object() else {
        return Err(exec_error("Failed to parse response"));
    };
    let code = obj.get("code").cloned().unwrap_or(Value::Null);
    if code.as_i64() != Some(0) {
        let message = match obj.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "None".into(),
        };
        return Err(exec_error(format!("Got error code: {code}. Got error msg: {message}")));
    }
    let data = obj.get("data").and_then(Value::as_object);
    match data.and_then(|d| d.get("error")) {
        Some(Value::String(e)) if !e.is_empty() => return Err(exec_error(e.clone())),
        _ => {}
    }
    Ok(data.and_then(|d| d.get("stdout")).and_then(Value::as_str).unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn programs_follow_difys_runner() {
        let inputs = json!({"a": "é"}).as_object().cloned().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(r#"{"a":"é"}"#);
        let py = program(Language::Python3, "def main(a):\n    return {'a': a}", &inputs).unwrap();
        assert!(py.starts_with("def main(a):\n    return {'a': a}\n"));
        assert!(py.contains(&format!("json.loads(b64decode('{b64}').decode('utf-8'))")));
        assert!(py.contains("output_obj = main(**inputs_obj)"));
        assert!(py.contains("result = f'''<<RESULT>>{output_json}<<RESULT>>'''"));
        let js = program(Language::JavaScript, "function main({a}) { return {a} }", &inputs).unwrap();
        assert!(js.contains(&format!("Buffer.from('{b64}', 'base64')")));
        assert!(js.contains("var result = `<<RESULT>>${output_json}<<RESULT>>`"));
    }

    #[test]
    fn answers() {
        assert_eq!(stdout_of(br#"{"code":0,"message":"success","data":{"stdout":"x","error":""}}"#).unwrap(), "x");
        assert_eq!(
            stdout_of(br#"{"code":0,"data":{"stdout":"","error":"Traceback: boom"}}"#).unwrap_err(),
            exec_error("Traceback: boom")
        );
        assert_eq!(
            stdout_of(br#"{"code":-400,"message":"unauthorized","data":null}"#).unwrap_err(),
            exec_error("Got error code: -400. Got error msg: unauthorized")
        );
        assert_eq!(stdout_of(b"<html>").unwrap_err(), exec_error("Failed to parse response"));
    }

    /// A one-shot HTTP server answering `body` with `status`; returns its URL
    /// and the request it got.
    fn serve_once(status: u16, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if req.len() >= i + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).to_string()
        });
        (url, handle)
    }

    #[tokio::test]
    async fn speaks_the_sandbox_protocol() {
        let (url, req) = serve_once(
            200,
            r#"{"code":0,"message":"success","data":{"stdout":"hi\n<<RESULT>>{\"v\": 1}<<RESULT>>\n","error":""}}"#,
        );
        let inputs = json!({"n": 1}).as_object().cloned().unwrap();
        let r =
            run(&format!("{url}/"), Some("k3y"), Language::JavaScript, "function main({n}) { return {v: n} }", &inputs)
                .await
                .unwrap();
        assert_eq!(r["v"], json!(1));
        let req = req.join().unwrap();
        assert!(req.starts_with("POST /v1/sandbox/run "), "{req}");
        assert!(req.to_ascii_lowercase().contains("x-api-key: k3y"), "{req}");
        let body: Value = serde_json::from_str(&req[req.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(body["language"], "nodejs");
        assert_eq!(body["preload"], "");
        assert_eq!(body["enable_network"], true);
        assert!(body["code"].as_str().unwrap().contains("function main({n})"));

        let (url, _req) = serve_once(503, "{}");
        let e = run(&url, None, Language::Python3, "", &Map::new()).await.unwrap_err();
        assert_eq!(e, exec_error("Code execution service is unavailable"));
    }
}

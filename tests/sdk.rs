//! The official Dify SDKs — Python (`dify-client` from PyPI) and Node
//! (`dify-client` from npm) — and the Vercel AI SDK's Dify provider
//! (`dify-ai-provider` from npm) work against ferrify unmodified. `.ci/run`
//! installs them and sets `FERRIFY_REQUIRE_SDK=1` (Python) and, when npm is
//! available, `FERRIFY_REQUIRE_NODE_SDK=1`, so there a missing SDK fails the
//! test; elsewhere a test that cannot run says so loudly.

use std::process::Command;

use crate::common::Server;

#[tokio::test]
async fn official_python_sdk() {
    let has_sdk = Command::new("python3")
        .args(["-c", "import dify_client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_sdk {
        if std::env::var_os("FERRIFY_REQUIRE_SDK").is_some() {
            panic!("the Dify Python SDK is not installed (pip install dify-client==0.1.10)");
        }
        eprintln!("\n*** SKIPPED official_python_sdk: `pip install dify-client==0.1.10` to run it ***\n");
        return;
    }
    let s = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let chat = s.app("chat-echo.yml").await;
    let completion = s.app("completion-echo.yml").await;
    let script = format!("{}/tests/sdk/python_sdk.py", env!("CARGO_MANIFEST_DIR"));
    let base = s.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).args([&base, &chat, &completion]).env("NO_PROXY", "127.0.0.1").output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("python sdk: all ok"), "{stdout}");
}

/// Whether `package` is installed under `tests/sdk/node` and Node.js runs; when
/// not, panics where CI requires the Node packages (`FERRIFY_REQUIRE_NODE_SDK`)
/// and otherwise says loudly that `test` skipped.
fn node_package_ready(package: &str, test: &str) -> bool {
    let dir = format!("{}/tests/sdk/node", env!("CARGO_MANIFEST_DIR"));
    let installed = std::path::Path::new(&dir).join("node_modules").join(package).exists()
        && Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !installed {
        if std::env::var_os("FERRIFY_REQUIRE_NODE_SDK").is_some() {
            panic!("the npm package {package} is not installed (npm install --prefix tests/sdk/node)");
        }
        eprintln!("\n*** SKIPPED {test}: run `npm install --prefix tests/sdk/node` (needs Node.js) ***\n");
    }
    installed
}

/// Runs `tests/sdk/node/<script>` with `args` and checks that it ends with `done`.
async fn run_node(script: &str, args: Vec<String>, done: &str) {
    let dir = format!("{}/tests/sdk/node", env!("CARGO_MANIFEST_DIR"));
    let script = format!("{dir}/{script}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(script).args(args).current_dir(&dir).env("NO_PROXY", "127.0.0.1").output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(done), "{stdout}");
}

#[tokio::test]
async fn official_node_sdk() {
    if !node_package_ready("dify-client", "official_node_sdk") {
        return;
    }
    let s = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let chat = s.app("chat-echo.yml").await;
    let completion = s.app("completion-echo.yml").await;
    run_node("sdk.mjs", vec![s.url(""), chat, completion], "node sdk: all ok").await;
}

/// The Vercel AI SDK with its Dify provider (`dify-ai-provider`), which a
/// Next.js chatbot uses to talk to a Dify app.
#[tokio::test]
async fn vercel_ai_sdk_dify_provider() {
    if !node_package_ready("dify-ai-provider", "vercel_ai_sdk_dify_provider") {
        return;
    }
    let s = Server::start(&["--no-demo", "--model-override", "builtin/echo"]);
    let chat = s.app("chat-echo.yml").await;
    let chatflow = s.app("chatflow-llm-memory.yml").await;
    run_node("vercel.mjs", vec![s.url(""), chat, chatflow], "vercel ai sdk: all ok").await;
}

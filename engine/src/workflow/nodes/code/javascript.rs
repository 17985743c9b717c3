//! JavaScript code run on an embedded QuickJS engine (`rquickjs`).
//!
//! Each run gets a fresh runtime on a blocking thread, with a memory limit,
//! a stack limit and an interrupt handler that aborts the script at the
//! deadline or when the node's future is dropped (run stopped). The script
//! sees the ECMAScript built-ins and a silent `console`; no Node.js APIs, no
//! file system, no network. `main` is called with one object holding the
//! mapped variables, and its result goes through `JSON.stringify`, like
//! Dify's Node.js runner.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::{Coerced, Context, Ctx, Runtime};
use serde_json::{Map, Value};

use super::super::NodeError;
use super::{check, Limits};

/// Largest native stack the interpreter may use (the blocking thread has 2 MiB).
const MAX_STACK: usize = 512 << 10;

/// Defines a `console` whose methods discard their arguments.
const PRELUDE: &str = "globalThis.console = (function () {\n  var c = {};\n  ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir'].forEach(function (k) { c[k] = function () {}; });\n  return c;\n})();\n";

/// Calls `main` and serializes its result.
const CALL: &str = "(function () {\n  if (typeof main !== 'function') throw new ReferenceError('main is not defined');\n  return JSON.stringify(main(JSON.parse(globalThis.__ferrify_inputs)));\n})()";

const NOT_FIRED: u8 = 0;
const TIMED_OUT: u8 = 1;
const CANCELLED: u8 = 2;

fn exec_error(msg: impl Into<String>) -> NodeError {
    NodeError::new("CodeExecutionError", msg)
}

/// Sets the flag when dropped (the node's future went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `code` with `inputs` and returns the result object.
pub async fn run(code: &str, inputs: &Map<String, Value>, limits: &Limits) -> Result<Map<String, Value>, NodeError> {
    let inputs = serde_json::to_string(inputs).map_err(|e| exec_error(format!("Failed to serialize inputs: {e}")))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let code = code.to_owned();
    let (timeout, memory) = (limits.timeout, limits.js_memory);
    let json = tokio::task::spawn_blocking(move || run_blocking(&code, &inputs, timeout, memory, cancel))
        .await
        .map_err(|e| exec_error(format!("The JavaScript engine failed: {e}")))??;
    check::parse_result(&json)
}

fn run_blocking(
    code: &str,
    inputs: &str,
    timeout: Duration,
    memory: usize,
    cancel: Arc<AtomicBool>,
) -> Result<String, NodeError> {
    let engine_error = |e: rquickjs::Error| exec_error(format!("Failed to start the JavaScript engine: {e}"));
    let rt = Runtime::new().map_err(engine_error)?;
    rt.set_memory_limit(memory);
    rt.set_max_stack_size(MAX_STACK);
    let deadline = Instant::now() + timeout;
    let fired = Arc::new(AtomicU8::new(NOT_FIRED));
    let flag = fired.clone();
    rt.set_interrupt_handler(Some(Box::new(move || {
        if cancel.load(Ordering::Acquire) {
            flag.store(CANCELLED, Ordering::Release);
            true
        } else if Instant::now() >= deadline {
            flag.store(TIMED_OUT, Ordering::Release);
            true
        } else {
            false
        }
    })));
    let ctx = Context::full(&rt).map_err(engine_error)?;
    let result = ctx.with(|ctx| -> Result<Option<String>, String> {
        let fail = |e: rquickjs::Error| describe(&ctx, e);
        ctx.globals().set("__ferrify_inputs", inputs).map_err(fail)?;
        ctx.eval::<(), _>(PRELUDE).map_err(fail)?;
        let mut opts = EvalOptions::default();
        opts.strict = false;
        opts.filename = Some("<code>".into());
        ctx.eval_with_options::<(), _>(code, opts).map_err(fail)?;
        ctx.eval::<Option<String>, _>(CALL).map_err(fail)
    });
    match fired.load(Ordering::Acquire) {
        TIMED_OUT => {
            return Err(exec_error(format!("Code execution timed out after {} seconds.", timeout.as_secs_f64())))
        }
        CANCELLED => return Err(NodeError::Stopped),
        _ => {}
    }
    match result {
        Ok(Some(json)) => Ok(json),
        // `JSON.stringify(undefined)`: Dify's runner prints `undefined`, which is not JSON.
        Ok(None) => Ok("undefined".into()),
        Err(msg) => Err(exec_error(msg)),
    }
}

/// The text of a JavaScript error: `Name: message` and the stack.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if !matches!(e, rquickjs::Error::Exception) {
        return e.to_string();
    }
    let v = ctx.catch();
    if let Some(obj) = v.as_object() {
        let name = obj.get::<_, Option<Coerced<String>>>("name").ok().flatten().map(|c| c.0);
        let message = obj.get::<_, Option<Coerced<String>>>("message").ok().flatten().map(|c| c.0);
        if name.is_some() || message.is_some() {
            let mut text = match (name, message) {
                (Some(n), Some(m)) if !m.is_empty() => format!("{n}: {m}"),
                (Some(n), _) => n,
                (None, m) => m.unwrap_or_default(),
            };
            if let Ok(Some(stack)) = obj.get::<_, Option<String>>("stack") {
                let stack = stack.trim_end();
                if !stack.is_empty() {
                    text.push('\n');
                    text.push_str(stack);
                }
            }
            return text;
        }
    }
    match v.get::<Coerced<String>>() {
        Ok(s) => format!("Uncaught {}", s.0),
        Err(_) => "Uncaught exception".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits { timeout: Duration::from_secs(5), ..Limits::default() }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn message(e: NodeError) -> String {
        match e {
            NodeError::Failed { message, .. } => message,
            NodeError::Stopped => panic!("stopped"),
        }
    }

    #[tokio::test]
    async fn runs_main_with_destructured_arguments() {
        let code = "function main({a, n}) {\n  console.log('noise');\n  return {upper: a.toUpperCase(), twice: n * 2, half: n / 4, list: [1, 'x'], o: {k: null}};\n}";
        let r = run(code, &obj(json!({"a": "hi", "n": 21})), &limits()).await.unwrap();
        assert_eq!(
            Value::Object(r),
            json!({"upper": "HI", "twice": 42, "half": 5.25, "list": [1, "x"], "o": {"k": null}})
        );
    }

    #[tokio::test]
    async fn arrow_main_and_lexical_declarations() {
        let code = "const k = 3;\nconst main = ({xs}) => ({sum: xs.reduce((a, b) => a + b, 0) * k});";
        let r = run(code, &obj(json!({"xs": [1, 2, 3]})), &limits()).await.unwrap();
        assert_eq!(r["sum"], json!(18));
    }

    #[tokio::test]
    async fn errors_are_reported() {
        let e = run("function main() { throw new TypeError('bad thing'); }", &Map::new(), &limits()).await.unwrap_err();
        let m = message(e);
        assert!(m.starts_with("TypeError: bad thing"), "{m}");
        let m = message(run("var x = 1;", &Map::new(), &limits()).await.unwrap_err());
        assert!(m.contains("main is not defined"), "{m}");
        let m = message(run("function main( {", &Map::new(), &limits()).await.unwrap_err());
        assert!(m.starts_with("SyntaxError"), "{m}");
        let m = message(run("function main() { throw 42; }", &Map::new(), &limits()).await.unwrap_err());
        assert_eq!(m, "Uncaught 42");
        let m = message(run("function main() { return 1; }", &Map::new(), &limits()).await.unwrap_err());
        assert_eq!(m, "Result must be a dict, got int");
        let m = message(run("function main() {}", &Map::new(), &limits()).await.unwrap_err());
        assert!(m.starts_with("Failed to parse JSON response"), "{m}");
    }

    #[tokio::test]
    async fn infinite_loop_times_out() {
        let limits = Limits { timeout: Duration::from_millis(300), ..Limits::default() };
        let started = Instant::now();
        let e = run("function main() { while (true) {} }", &Map::new(), &limits).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(message(e), "Code execution timed out after 0.3 seconds.");
        // A catch block cannot swallow the interrupt.
        let e = run("function main() { for (;;) { try { while (true) {} } catch (e) {} } }", &Map::new(), &limits)
            .await
            .unwrap_err();
        assert!(message(e).contains("timed out"));
    }

    #[tokio::test]
    async fn memory_and_stack_are_limited() {
        let limits = Limits { js_memory: 16 << 20, ..limits() };
        let code = "function main() { var a = []; for (;;) { a.push('x'.repeat(1 << 16) + a.length); } }";
        let m = message(run(code, &Map::new(), &limits).await.unwrap_err());
        assert!(m.contains("out of memory"), "{m}");
        let code = "function f(n) { return f(n + 1) + 1; }\nfunction main() { return {v: f(0)}; }";
        let m = message(run(code, &Map::new(), &limits).await.unwrap_err());
        assert!(m.contains("stack overflow") || m.contains("RangeError"), "{m}");
    }

    #[tokio::test]
    async fn no_host_apis() {
        let code =
            "function main() { return {t: [typeof require, typeof process, typeof fetch, typeof Buffer].join(',')}; }";
        let r = run(code, &Map::new(), &limits()).await.unwrap();
        assert_eq!(r["t"], json!("undefined,undefined,undefined,undefined"));
    }
}

//! Python 3 code run in a local `python3` subprocess.
//!
//! Isolation is best effort, done by the server itself (it is not a
//! sandbox like dify-sandbox's seccomp jail):
//! - a clean environment: only `PATH`, `LANG` and `LC_ALL` (no inherited
//!   secrets), the interpreter in isolated mode (`-I`: no `PYTHON*`
//!   variables, no user site-packages, no script directory on `sys.path`),
//!   working directory `/`; launcher scripts (pyenv shims) are resolved
//!   once to the interpreter binary so they cannot add variables either;
//! - resource limits set in the child before `exec`: address space
//!   (`RLIMIT_AS`, 512 MiB by default), CPU seconds (`RLIMIT_CPU`, the
//!   timeout plus one), file size (`RLIMIT_FSIZE`, 64 MiB), no core dumps;
//! - its own process group, killed as a whole (`SIGKILL`) on timeout, when
//!   the run is stopped, and after the interpreter exits (stragglers);
//! - no network where the OS allows it: the child tries
//!   `unshare(CLONE_NEWNET)` (root / `CAP_SYS_ADMIN`), then
//!   `unshare(CLONE_NEWUSER | CLONE_NEWNET)` (unprivileged user
//!   namespaces), and runs with the host network if both fail.
//!
//! Protocol: a fixed runner passed with `-c` reads one JSON object
//! `{code, inputs, tag}` from stdin, executes the code as `__main__`, calls
//! `main(**inputs)` and writes `tag + json + tag` straight to file
//! descriptor 1. The tag holds a fresh random id, so whatever the user's
//! code prints cannot be mistaken for the result.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::super::NodeError;
use super::{check, Limits};

/// The runner passed with `python3 -c`.
const RUNNER: &str = r#"import json as _j, os as _o, sys as _s
_p = _j.loads(_s.stdin.buffer.read().decode('utf-8'))
_g = {'__name__': '__main__', '__builtins__': __builtins__}
exec(compile(_p['code'], '<code>', 'exec'), _g)
if not callable(_g.get('main')):
    raise NameError("name 'main' is not defined")
_r = _g['main'](**_p['inputs'])
_b = (_p['tag'] + _j.dumps(_r, ensure_ascii=False, allow_nan=False) + _p['tag']).encode('utf-8')
try:
    _s.stdout.flush()
except Exception:
    pass
_o.write(1, b'\n')
while _b:
    _b = _b[_o.write(1, _b):]
"#;

/// The child's `PATH`.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Most stdout bytes kept (the tail: the result comes last).
const STDOUT_KEEP: usize = 16 << 20;
/// Most stderr bytes kept (the tail: the exception comes last).
const STDERR_KEEP: usize = 64 << 10;
/// Largest file the code may write.
const MAX_FILE_SIZE: u64 = 64 << 20;

/// Finds the interpreter: `configured` (a path, or a name looked up on
/// `PATH`), else `python3` on `PATH`.
pub fn find_interpreter(configured: Option<&str>) -> Option<PathBuf> {
    let name = configured.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("python3");
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

/// The interpreter binary itself: launchers such as pyenv shims are
/// scripts that add their own environment, so each configured path is
/// asked once for its `sys.executable` (with a clean environment).
pub async fn real_interpreter(path: &Path) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(real) = cache.lock().get(path) {
        return real.clone();
    }
    let probe = Command::new(path)
        .args(["-I", "-c", "import sys; sys.stdout.write(sys.executable)"])
        .env_clear()
        .env("PATH", CHILD_PATH)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let real = match tokio::time::timeout(Duration::from_secs(10), probe).await {
        Ok(Ok(out)) if out.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if p.is_absolute() && is_executable(&p) {
                p
            } else {
                path.to_path_buf()
            }
        }
        _ => return path.to_path_buf(),
    };
    cache.lock().insert(path.to_path_buf(), real.clone());
    real
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn exec_error(msg: impl Into<String>) -> NodeError {
    NodeError::new("CodeExecutionError", msg)
}

/// Kills the child's process group when dropped.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // SAFETY: plain syscall; the group id is our own child's pid.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads everything, keeping only the last `keep` bytes.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > keep.saturating_mul(2) {
                    let cut = buf.len() - keep;
                    buf.drain(..cut);
                }
            }
        }
    }
    if buf.len() > keep {
        let cut = buf.len() - keep;
        buf.drain(..cut);
    }
    buf
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(libc::SIGKILL)) => "killed by signal 9 (SIGKILL; out of memory?)".into(),
        (None, Some(libc::SIGXCPU)) => "killed by signal SIGXCPU (CPU time limit)".into(),
        (None, Some(libc::SIGXFSZ)) => "killed by signal SIGXFSZ (file size limit)".into(),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "exited abnormally".into(),
    }
}

/// Runs `code` with `inputs` and returns the result object.
pub async fn run(
    interpreter: &Path,
    code: &str,
    inputs: &Map<String, Value>,
    limits: &Limits,
) -> Result<Map<String, Value>, NodeError> {
    let tag = format!("<<RESULT-{}>>", uuid::Uuid::new_v4().simple());
    let payload = serde_json::to_vec(&json!({"code": code, "inputs": inputs, "tag": tag}))
        .map_err(|e| exec_error(format!("Failed to serialize inputs: {e}")))?;

    let interpreter = real_interpreter(interpreter).await;
    let mut cmd = Command::new(&interpreter);
    cmd.args(["-I", "-X", "utf8", "-c", RUNNER])
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let memory = limits.python_memory;
    let cpu = limits.timeout.as_secs().saturating_add(1);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe syscalls (setrlimit, unshare); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: u64| {
                let lim = libc::rlimit { rlim_cur: v as libc::rlim_t, rlim_max: v as libc::rlim_t };
                libc::setrlimit(res, &lim)
            };
            if memory > 0 && set(libc::RLIMIT_AS, memory) != 0 {
                return Err(io::Error::last_os_error());
            }
            set(libc::RLIMIT_CPU, cpu);
            set(libc::RLIMIT_FSIZE, MAX_FILE_SIZE);
            set(libc::RLIMIT_CORE, 0);
            // Best effort: no network namespace means the host network.
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| exec_error(format!("Failed to start the Python interpreter {}: {e}", interpreter.display())))?;
    let group = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));

    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A child that exits early closes the pipe; its error tells why.
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        }
    });
    let stdout = child.stdout.take().map(|r| tokio::spawn(read_tail(r, STDOUT_KEEP)));
    let stderr = child.stderr.take().map(|r| tokio::spawn(read_tail(r, STDERR_KEEP)));

    let status = match tokio::time::timeout(limits.timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(exec_error(format!("Failed to wait for the Python interpreter: {e}"))),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            writer.abort();
            return Err(exec_error(format!(
                "Code execution timed out after {} seconds.",
                limits.timeout.as_secs_f64()
            )));
        }
    };
    // Processes the code left behind would keep the pipes open.
    group.kill();
    writer.abort();
    let collect = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
        match h {
            Some(h) => {
                tokio::time::timeout(Duration::from_secs(2), h).await.ok().and_then(Result::ok).unwrap_or_default()
            }
            None => Vec::new(),
        }
    };
    let out = collect(stdout).await;
    let err = collect(stderr).await;
    let out = String::from_utf8_lossy(&out);

    if status.success() {
        if let Ok(json) = check::extract_tagged(&out, &tag) {
            return check::parse_result(json);
        }
    }
    let err = String::from_utf8_lossy(&err);
    let err = err.trim();
    let reason = describe_status(status);
    Err(exec_error(if err.is_empty() {
        format!("Python process failed: {reason}")
    } else {
        format!("{err}\nerror: {reason}")
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The interpreter, or a loud failure: CI has python3.
    pub fn python() -> PathBuf {
        find_interpreter(None).expect("python3 is not on PATH: the Python code node tests need it")
    }

    fn limits() -> Limits {
        Limits { timeout: Duration::from_secs(10), ..Limits::default() }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn runs_main_with_keyword_arguments() {
        let code = "def main(a: str, n: int) -> dict:\n    print('noise <<RESULT>> {}')\n    return {'upper': a.upper(), 'twice': n * 2, 'f': n / 4, 'u': 'é'}\n";
        let r = run(&python(), code, &obj(json!({"a": "hi", "n": 21})), &limits()).await.unwrap();
        assert_eq!(Value::Object(r), json!({"upper": "HI", "twice": 42, "f": 5.25, "u": "é"}));
    }

    #[tokio::test]
    async fn exceptions_are_reported() {
        let code = "def main():\n    raise ValueError('boom')\n";
        let e = run(&python(), code, &Map::new(), &limits()).await.unwrap_err();
        let NodeError::Failed { error_type, message } = e else { panic!("not failed") };
        assert_eq!(error_type, "CodeExecutionError");
        assert!(message.contains("ValueError: boom"), "{message}");
        assert!(message.contains("exit status 1"), "{message}");

        let e = run(&python(), "x = 1\n", &Map::new(), &limits()).await.unwrap_err();
        assert!(format!("{e:?}").contains("name 'main' is not defined"), "{e:?}");
        let e = run(&python(), "def main():\n    return [1]\n", &Map::new(), &limits()).await.unwrap_err();
        assert_eq!(e, NodeError::new("CodeExecutionError", "Result must be a dict, got list"));
    }

    #[tokio::test]
    async fn environment_is_clean() {
        std::env::set_var("FERRIFY_TEST_SECRET", "hunter2");
        let code = "import os\ndef main():\n    return {'env': dict(os.environ)}\n";
        let r = run(&python(), code, &Map::new(), &limits()).await.unwrap();
        let env = r["env"].as_object().unwrap();
        assert!(!env.contains_key("FERRIFY_TEST_SECRET"), "{env:?}");
        assert!(!r["env"].to_string().contains("hunter2"));
        assert!(env.keys().all(|k| ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "PWD"].contains(&k.as_str())), "{env:?}");
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let marker = format!("/tmp/ferrify-code-test-{}", uuid::Uuid::new_v4().simple());
        // A grandchild that would touch the marker after 2 s, and a main that hangs.
        let code = format!(
            "import subprocess, time\ndef main():\n    subprocess.Popen(['/bin/sh', '-c', 'sleep 2; touch {marker}'])\n    time.sleep(60)\n"
        );
        let limits = Limits { timeout: Duration::from_millis(800), ..Limits::default() };
        let started = std::time::Instant::now();
        let e = run(&python(), &code, &Map::new(), &limits).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(format!("{e:?}").contains("timed out after 0.8 seconds"), "{e:?}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!Path::new(&marker).exists(), "the grandchild survived the timeout");
    }

    #[tokio::test]
    async fn memory_is_limited() {
        let code = "def main():\n    b = bytearray(1 << 30)\n    return {'n': len(b)}\n";
        let e = run(&python(), code, &Map::new(), &limits()).await.unwrap_err();
        assert!(format!("{e:?}").contains("MemoryError"), "{e:?}");
    }

    #[tokio::test]
    async fn network_is_cut_where_the_os_allows() {
        let probe = std::process::Command::new("unshare").args(["-n", "true"]).status();
        if !probe.map(|s| s.success()).unwrap_or(false) {
            eprintln!("network namespaces are not available here: network isolation not checked");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let code = "import socket\ndef main(port):\n    try:\n        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n        return {'ok': True}\n    except OSError as e:\n        return {'ok': False}\n";
        let r = run(&python(), code, &obj(json!({"port": port})), &limits()).await.unwrap();
        assert_eq!(r["ok"], json!(false), "the code reached the host network");
    }

    #[test]
    fn interpreter_lookup() {
        assert!(find_interpreter(Some("/nonexistent/python3")).is_none());
        assert!(find_interpreter(Some("no-such-python-xyz")).is_none());
    }
}

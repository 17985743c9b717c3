//! `code`: runs the user's `main` in Python 3 or JavaScript with the mapped
//! variables as arguments, and validates the returned object against the
//! declared outputs (Dify's output contract, see [`check`]).
//!
//! Where the code runs:
//! - a dify-sandbox service when `code_sandbox_url` is configured (both
//!   languages, Dify's own protocol, [`sandbox`]);
//! - otherwise Python 3 in a local, limited `python3` subprocess
//!   ([`python`]) and JavaScript on an embedded QuickJS engine
//!   ([`javascript`]).
//!
//! Without a sandbox and without a Python interpreter, Python nodes fail
//! with an error naming the node.

pub mod check;
pub mod javascript;
pub mod python;
pub mod sandbox;

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{mapped_values, variable_mappings, Node, NodeCx, NodeError, NodeRun};

/// The languages a code node can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Python3,
    JavaScript,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Python3 => "python3",
            Language::JavaScript => "javascript",
        }
    }
}

/// Resource limits of local execution.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock time of one run.
    pub timeout: Duration,
    /// Address-space limit of the Python process, bytes (0: none).
    pub python_memory: u64,
    /// Heap limit of the JavaScript runtime, bytes.
    pub js_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(10), python_memory: 512 << 20, js_memory: 128 << 20 }
    }
}

pub struct Code {
    language: Language,
    code: String,
    variables: Vec<(String, Vec<String>)>,
    outputs: Option<check::Schema>,
    limits: Limits,
}

impl Code {
    pub fn compile(data: &Value) -> Result<Code, String> {
        let language = match data.get("code_language").and_then(Value::as_str).map(str::trim) {
            Some("python3") | Some("python") => Language::Python3,
            Some("javascript") | Some("nodejs") => Language::JavaScript,
            Some(other) => return Err(format!("code node: unsupported `code_language` {other:?}")),
            None => return Err("code node: `code_language` is required (python3 | javascript)".into()),
        };
        let code = match data.get("code") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err("code node: `code` must be a string".into()),
        };
        Ok(Code {
            language,
            code,
            variables: variable_mappings(data.get("variables")),
            outputs: check::parse_schema(data.get("outputs"))?,
            limits: Limits::default(),
        })
    }

    /// Replaces the local execution limits.
    pub fn with_limits(mut self, limits: Limits) -> Code {
        self.limits = limits;
        self
    }

    pub fn language(&self) -> Language {
        self.language
    }

    /// Runs the code on the configured executor and validates the result.
    pub async fn execute(
        &self,
        title: &str,
        sandbox: Option<(&str, Option<&str>)>,
        python: Option<&str>,
        inputs: &Map<String, Value>,
    ) -> Result<Map<String, Value>, NodeError> {
        let result = match (sandbox, self.language) {
            (Some((url, key)), lang) => sandbox::run(url, key, lang, &self.code, inputs).await?,
            (None, Language::JavaScript) => javascript::run(&self.code, inputs, &self.limits).await?,
            (None, Language::Python3) => {
                let Some(interpreter) = python::find_interpreter(python) else {
                    return Err(NodeError::new(
                        "CodeExecutionError",
                        format!(
                            "Code node '{title}' cannot run python3 code: no Python interpreter ({} was not found) \
                             and no code sandbox is configured",
                            python.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("python3 on PATH")
                        ),
                    ));
                };
                python::run(&interpreter, &self.code, inputs, &self.limits).await?
            }
        };
        check::transform_result(&result, self.outputs.as_ref())
    }
}

impl Node for Code {
    fn run<'a>(&'a self, cx: &'a NodeCx<'a>) -> BoxFuture<'a, Result<NodeRun, NodeError>> {
        Box::pin(async move {
            let inputs = mapped_values(cx, &self.variables);
            let settings = &cx.run.settings;
            let sandbox = settings
                .code_sandbox_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| (u, settings.code_sandbox_key.as_deref()));
            let exec = self.execute(&cx.def.title, sandbox, settings.python.as_deref(), &inputs);
            let outputs = tokio::select! {
                biased;
                _ = cx.run.stop.wait() => return Err(NodeError::Stopped),
                r = exec => r,
            };
            match outputs {
                Ok(outputs) => Ok(NodeRun { inputs: Value::Object(inputs), outputs, ..NodeRun::default() }),
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(data: Value) -> Code {
        Code::compile(&data).unwrap()
    }

    fn failed(e: NodeError) -> (String, String) {
        match e {
            NodeError::Failed { error_type, message } => (error_type, message),
            NodeError::Stopped => panic!("stopped"),
        }
    }

    fn python_path() -> String {
        python::find_interpreter(None)
            .expect("python3 is not on PATH: the Python code node tests need it")
            .display()
            .to_string()
    }

    #[test]
    fn compile_reads_the_dsl() {
        let c = node(json!({
            "code_language": "javascript", "code": "function main() {}",
            "variables": [{"variable": "a", "value_selector": ["start", "a"]}],
            "outputs": {"x": {"type": "string", "children": null}},
            "dependencies": []
        }));
        assert_eq!(c.language(), Language::JavaScript);
        assert_eq!(c.variables, vec![("a".to_string(), vec!["start".to_string(), "a".to_string()])]);
        assert_eq!(c.outputs.as_ref().unwrap()[0].0, "x");
        assert!(Code::compile(&json!({"code_language": "ruby", "code": ""})).is_err());
        assert!(Code::compile(&json!({"code": ""})).is_err());
        assert!(Code::compile(&json!({"code_language": "python3", "code": 1})).is_err());
        assert!(Code::compile(&json!({"code_language": "python3", "outputs": [1]})).is_err());
    }

    #[tokio::test]
    async fn python_end_to_end_with_validation() {
        let c = node(json!({
            "code_language": "python3",
            "code": "def main(a: str, n: int) -> dict:\n    return {\"upper\": a.upper(), \"twice\": n * 2}\n",
            "outputs": {"upper": {"type": "string"}, "twice": {"type": "number"}}
        }));
        let py = python_path();
        let inputs = json!({"a": "abc", "n": 4}).as_object().cloned().unwrap();
        let out = c.execute("Code", None, Some(&py), &inputs).await.unwrap();
        assert_eq!(Value::Object(out), json!({"upper": "ABC", "twice": 8}));

        let c = node(json!({
            "code_language": "python3",
            "code": "def main():\n    return {\"upper\": 1, \"extra\": 2}\n",
            "outputs": {"upper": {"type": "number"}, "twice": {"type": "number"}}
        }));
        let e = c.execute("Code", None, Some(&py), &Map::new()).await.unwrap_err();
        assert_eq!(failed(e), ("OutputValidationError".into(), "Output twice is missing.".into()));
    }

    #[tokio::test]
    async fn javascript_end_to_end_with_validation() {
        let c = node(json!({
            "code_language": "javascript",
            "code": "function main({a, n}) { return {upper: a.toUpperCase(), twice: n * 2, extra: true} }",
            "outputs": {"upper": {"type": "string"}, "twice": {"type": "number"}}
        }));
        let inputs = json!({"a": "abc", "n": 4}).as_object().cloned().unwrap();
        let e = c.execute("Code", None, None, &inputs).await.unwrap_err();
        assert_eq!(failed(e), ("CodeNodeError".into(), "Not all output parameters are validated.".into()));
    }

    #[tokio::test]
    async fn missing_interpreter_names_the_node() {
        let c = node(json!({"code_language": "python3", "code": "def main():\n    return {}\n"}));
        let e = c.execute("My Code", None, Some("/nonexistent/python3"), &Map::new()).await.unwrap_err();
        let (ty, msg) = failed(e);
        assert_eq!(ty, "CodeExecutionError");
        assert!(msg.contains("'My Code'") && msg.contains("python3") && msg.contains("/nonexistent/python3"), "{msg}");
    }
}

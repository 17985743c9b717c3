//! Compiling a DSL graph: nodes and edges read leniently (ids and handles
//! as strings, note nodes dropped, legacy forms normalised), each node's
//! `data` compiled by its node module, then validated — unique ids, edges
//! between known nodes of the same container, exactly one start, no cycles
//! (bodies of iteration/loop containers are separate scopes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value};

use super::nodes::{self, Node, Role};

/// What a node does when it fails.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorStrategy {
    /// The failure fails the run.
    None,
    /// Finish with status `exception` and these outputs; follow the normal edges.
    DefaultValue(Map<String, Value>),
    /// Finish with status `exception`; follow only the `fail-branch` edges.
    FailBranch,
}

/// A compiled node.
pub struct NodeDef {
    pub id: String,
    pub node_type: String,
    pub title: String,
    /// The iteration or loop node whose body holds this node.
    pub container: Option<usize>,
    pub strategy: ErrorStrategy,
    pub max_retries: u32,
    pub retry_interval: Duration,
    pub timeout: Option<Duration>,
    pub node: Box<dyn Node>,
}

impl std::fmt::Debug for NodeDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDef").field("id", &self.id).field("type", &self.node_type).finish()
    }
}

/// An edge between two nodes of one scope.
#[derive(Clone, Debug)]
pub struct EdgeDef {
    pub id: String,
    pub source: usize,
    pub target: usize,
    /// `source`, a case or class id, `fail-branch`, …
    pub handle: String,
}

/// A compiled, validated graph.
#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<NodeDef>,
    pub edges: Vec<EdgeDef>,
    pub index: HashMap<String, usize>,
    pub incoming: Vec<Vec<usize>>,
    pub outgoing: Vec<Vec<usize>>,
    /// The top-level start node.
    pub start: usize,
    /// Entry node of each container's body.
    pub entries: HashMap<usize, usize>,
    /// For each top-level response node, the nodes that decide whether it
    /// runs (branches, containers, earlier response nodes).
    pub deciders: HashMap<usize, Vec<usize>>,
    /// Top-level response nodes in graph order.
    pub responses: Vec<usize>,
}

/// Why a graph was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GraphError(pub String);

/// A scalar as a string (ids that YAML read as numbers or booleans).
pub fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// Container membership of a raw node: `parentId`, or the legacy data
/// flags (the second value says it came from the flags alone).
fn container_of(raw: &Value, data: &Value) -> (Option<String>, bool) {
    let parent = scalar(raw.get("parentId"));
    if !parent.is_empty() {
        return (Some(parent), false);
    }
    for (flag, key) in [("isInIteration", "iteration_id"), ("isInLoop", "loop_id")] {
        let id = scalar(data.get(key));
        if data.get(flag).and_then(Value::as_bool) == Some(true) && !id.is_empty() {
            return (Some(id), true);
        }
    }
    (None, false)
}

fn strategy_of(data: &Value) -> ErrorStrategy {
    match data.get("error_strategy").and_then(Value::as_str) {
        Some("fail-branch") => ErrorStrategy::FailBranch,
        Some("default-value") => {
            let mut out = Map::new();
            for item in data.get("default_value").and_then(Value::as_array).into_iter().flatten() {
                let key = scalar(item.get("key"));
                if key.is_empty() {
                    continue;
                }
                let ty = item.get("type").and_then(Value::as_str).unwrap_or("string");
                let mut value = item.get("value").cloned().unwrap_or(Value::Null);
                if ty != "string" {
                    if let Value::String(s) = &value {
                        if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                            value = parsed;
                        }
                    }
                }
                out.insert(key, value);
            }
            ErrorStrategy::DefaultValue(out)
        }
        _ => ErrorStrategy::None,
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Compiles the `graph` of a workflow version.
pub fn compile(graph: &Value) -> Result<Graph, GraphError> {
    let raw_nodes = graph.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default();
    let raw_edges = graph.get("edges").and_then(Value::as_array).cloned().unwrap_or_default();

    // Nodes (note nodes are canvas comments).
    let mut nodes: Vec<NodeDef> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut parents: Vec<Option<String>> = Vec::new();
    let mut by_flag: Vec<bool> = Vec::new();
    for (i, raw) in raw_nodes.iter().enumerate() {
        let empty = Value::Object(Map::new());
        let data = raw.get("data").filter(|d| d.is_object()).unwrap_or(&empty);
        let node_type = scalar(data.get("type"));
        if raw.get("type").and_then(Value::as_str) == Some("custom-note") || node_type.is_empty() {
            continue;
        }
        let id = scalar(raw.get("id"));
        if id.is_empty() {
            return Err(GraphError(format!("node #{} ({node_type}) has no id", i + 1)));
        }
        if index.contains_key(&id) {
            return Err(GraphError(format!("duplicate node id '{id}'")));
        }
        let title = {
            let t = scalar(data.get("title"));
            if t.is_empty() {
                node_type.clone()
            } else {
                t
            }
        };
        let node = nodes::compile(&node_type, data)
            .map_err(|e| GraphError(format!("node '{id}' ({title}, {node_type}): {e}")))?;
        let retry = data.get("retry_config");
        let retry_enabled = retry.and_then(|r| r.get("retry_enabled")).and_then(Value::as_bool).unwrap_or(false);
        let max_retries = if retry_enabled {
            number(retry.and_then(|r| r.get("max_retries"))).unwrap_or(0.0).clamp(0.0, 10.0) as u32
        } else {
            0
        };
        let retry_interval = Duration::from_millis(
            number(retry.and_then(|r| r.get("retry_interval"))).unwrap_or(0.0).clamp(0.0, 60_000.0) as u64,
        );
        let timeout = number(data.get("timeout").filter(|t| !t.is_object()))
            .filter(|t| *t > 0.0)
            .map(|t| Duration::from_secs_f64(t.min(86_400.0)));
        index.insert(id.clone(), nodes.len());
        let (parent, flagged) = container_of(raw, data);
        parents.push(parent);
        by_flag.push(flagged);
        nodes.push(NodeDef {
            id,
            node_type,
            title,
            container: None,
            strategy: strategy_of(data),
            max_retries,
            retry_interval,
            timeout,
            node,
        });
    }
    for (i, parent) in parents.iter().enumerate() {
        if let Some(p) = parent {
            // A stale container reference (the container was deleted and the
            // node moved out in the editor) leaves the node at the top level.
            let Some(&c) = index.get(p) else { continue };
            if nodes[c].node.role() != Role::Container {
                return Err(GraphError(format!(
                    "node '{}' is inside '{p}', which is not an iteration or loop",
                    nodes[i].id
                )));
            }
            if c != i {
                nodes[i].container = Some(c);
            }
        }
    }

    // Edges.
    let mut edges = Vec::new();
    let mut incoming = vec![Vec::new(); nodes.len()];
    let mut outgoing = vec![Vec::new(); nodes.len()];
    let mut seen = HashSet::new();
    for (i, raw) in raw_edges.iter().enumerate() {
        let mut id = scalar(raw.get("id"));
        if id.is_empty() {
            id = format!("#{}", i + 1);
        }
        let source = scalar(raw.get("source"));
        let target = scalar(raw.get("target"));
        let (Some(&s), Some(&t)) = (index.get(&source), index.get(&target)) else {
            let missing = if index.contains_key(&source) { &target } else { &source };
            return Err(GraphError(format!("edge '{id}' points to unknown node '{missing}'")));
        };
        if nodes[s].container != nodes[t].container {
            // Stale `isInIteration` flags (no `parentId`) yield to the edges
            // that wire the node where it really is.
            if by_flag[t] {
                nodes[t].container = nodes[s].container;
                by_flag[t] = false;
            } else if by_flag[s] {
                nodes[s].container = nodes[t].container;
                by_flag[s] = false;
            }
        }
        if nodes[s].container != nodes[t].container {
            return Err(GraphError(format!(
                "edge '{id}' connects '{source}' and '{target}', which are in different containers"
            )));
        }
        let mut handle = scalar(raw.get("sourceHandle"));
        if handle.is_empty() {
            handle = "source".into();
        }
        if !seen.insert((s, t, handle.clone())) {
            continue; // an exact duplicate edge changes nothing
        }
        incoming[t].push(edges.len());
        outgoing[s].push(edges.len());
        edges.push(EdgeDef { id, source: s, target: t, handle });
    }

    // One start at the top level.
    let starts: Vec<usize> =
        (0..nodes.len()).filter(|&i| nodes[i].node_type == "start" && nodes[i].container.is_none()).collect();
    let start = match starts.as_slice() {
        [s] => *s,
        [] => return Err(GraphError("the graph has no start node".into())),
        [a, b, ..] => {
            return Err(GraphError(format!(
                "the graph has more than one start node ('{}', '{}')",
                nodes[*a].id, nodes[*b].id
            )))
        }
    };

    // Container entries: `start_node_id`, else the body node nothing leads to.
    let mut entries = HashMap::new();
    for c in 0..nodes.len() {
        if nodes[c].node.role() != Role::Container {
            continue;
        }
        let body: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].container == Some(c)).collect();
        let named = nodes[c].node.entry().and_then(|e| index.get(e)).copied().filter(|e| body.contains(e));
        let entry = named.or_else(|| {
            body.iter()
                .copied()
                .find(|&i| nodes[i].node_type.ends_with("-start"))
                .or_else(|| body.iter().copied().find(|&i| incoming[i].is_empty()))
        });
        match entry {
            Some(e) => {
                entries.insert(c, e);
            }
            None if body.is_empty() => {}
            None => return Err(GraphError(format!("container '{}' has no entry node", nodes[c].id))),
        }
    }

    // No cycles in any scope (Kahn).
    let mut indegree: Vec<usize> = incoming.iter().map(Vec::len).collect();
    let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
    let mut visited = 0;
    while let Some(n) = queue.pop_front() {
        visited += 1;
        for &e in &outgoing[n] {
            let t = edges[e].target;
            indegree[t] -= 1;
            if indegree[t] == 0 {
                queue.push_back(t);
            }
        }
    }
    if visited < nodes.len() {
        let culprit = (0..nodes.len()).find(|&i| indegree[i] > 0).map(|i| nodes[i].id.clone()).unwrap_or_default();
        return Err(GraphError(format!("the graph has a cycle through node '{culprit}'")));
    }

    // Response nodes and what decides whether they run.
    let responses: Vec<usize> =
        (0..nodes.len()).filter(|&i| nodes[i].container.is_none() && nodes[i].node.role() == Role::Response).collect();
    let mut deciders = HashMap::new();
    for &r in &responses {
        let mut seen = HashSet::new();
        let mut stack = vec![r];
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            for &e in &incoming[n] {
                let s = edges[e].source;
                if seen.insert(s) {
                    let def = &nodes[s];
                    if matches!(def.node.role(), Role::Branch | Role::Container | Role::Response)
                        || def.strategy == ErrorStrategy::FailBranch
                    {
                        out.push(s);
                    }
                    stack.push(s);
                }
            }
        }
        out.sort_unstable();
        deciders.insert(r, out);
    }

    Ok(Graph { nodes, edges, index, incoming, outgoing, start, entries, deciders, responses })
}

impl Graph {
    /// Nodes of the body of container `c` (or of the top level).
    pub fn scope_nodes(&self, c: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(move |&i| self.nodes[i].container == c)
    }
}

//! The document cannot drift from the routes: every `warp::path!` route of
//! a Service API module is documented under that module, every documented
//! operation is routed, and every `$ref` resolves.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{document, Paths, MODULES};

/// Route modules that are not part of the Service API.
const NOT_SERVICE_API: &[&str] = &["console", "file_links", "health", "metrics", "mod"];

/// `(method, path)` with parameters written `{}`.
type Route = (String, String);

fn normalise(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') && seg.ends_with('}') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The routes a module's source declares: each `warp::path!(…)` (or
/// `warp::path::end()`, the prefix itself) with the first method filter after it.
fn declared(source: &str) -> BTreeSet<Route> {
    let mut starts: Vec<(usize, String)> = Vec::new();
    for (i, _) in source.match_indices("warp::path!(") {
        let rest = &source[i + "warp::path!(".len()..];
        let Some(end) = rest.find(')') else { continue };
        let segments: Vec<String> = rest[..end]
            .split('/')
            .map(|s| {
                let s = s.trim();
                if s.starts_with('"') {
                    s.trim_matches('"').to_string()
                } else {
                    "{}".to_string()
                }
            })
            .collect();
        starts.push((i, format!("/{}", segments.join("/"))));
    }
    for (i, _) in source.match_indices("warp::path::end()") {
        starts.push((i, "/".to_string()));
    }
    starts.sort();
    let mut out = BTreeSet::new();
    for (n, (i, path)) in starts.iter().enumerate() {
        let until = starts.get(n + 1).map(|(j, _)| *j).unwrap_or(source.len());
        let chunk = &source[*i..until];
        let method = ["get", "post", "put", "delete", "patch"]
            .iter()
            .filter_map(|m| chunk.find(&format!("warp::{m}()")).map(|at| (at, *m)))
            .min()
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| panic!("no method filter after the route {path}"));
        out.insert((method, path.clone()));
    }
    out
}

fn documented(add: fn(&mut Paths)) -> BTreeSet<Route> {
    let mut p = Paths::default();
    add(&mut p);
    let mut out = BTreeSet::new();
    for (path, ops) in &p.0 {
        for method in ops.as_object().into_iter().flat_map(|m| m.keys()) {
            out.insert((method.clone(), normalise(path)));
        }
    }
    out
}

#[test]
fn every_route_is_documented_by_its_module() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "rs") || NOT_SERVICE_API.contains(&name.as_str()) {
            continue;
        }
        let Some((_, add)) = MODULES.iter().find(|(m, _)| *m == name) else {
            panic!(
                "routes/{name}.rs serves Service API routes: document them in openapi/{name}.rs and list it in MODULES"
            )
        };
        let source = std::fs::read_to_string(&path).unwrap();
        assert_eq!(declared(&source), documented(*add), "routes/{name}.rs and openapi/{name}.rs disagree");
        seen += 1;
    }
    assert_eq!(seen, MODULES.len(), "MODULES names a module without a routes/ file");
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let engine = ferrify_engine::Engine::open(&ferrify_engine::EngineConfig {
        data_dir: None,
        ..ferrify_engine::EngineConfig::default()
    })
    .unwrap();
    let routes = crate::routes(crate::State::new(engine, None));
    let doc = document();
    let mut n = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "00000000-0000-4000-8000-000000000000" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().unwrap().keys() {
            let res = warp::test::request()
                .method(&method.to_ascii_uppercase())
                .path(&format!("/v1{concrete}"))
                .body("{}")
                .reply(&routes)
                .await;
            let body: Value = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
            let routed = match res.status().as_u16() {
                405 => false,
                404 => body["message"] != "The requested URL was not found on the server.",
                _ => true,
            };
            assert!(routed, "{method} {path} is documented but not routed ({}: {body})", res.status());
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} operations");
}

#[test]
fn refs_resolve_and_operation_ids_are_unique() {
    let doc = document();
    let text = doc.to_string();
    for (i, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
        let rest = &text[i + "\"$ref\":\"#/components/schemas/".len()..];
        let name = &rest[..rest.find('"').unwrap()];
        assert!(doc["components"]["schemas"].get(name).is_some(), "unresolved $ref {name}");
    }
    let mut ids = BTreeSet::new();
    for ops in doc["paths"].as_object().unwrap().values() {
        for op in ops.as_object().unwrap().values() {
            let id = op["operationId"].as_str().expect("every operation has an operationId");
            assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
}

#[test]
fn declared_routes_are_read_from_source() {
    let src = r#"warp::path!("a" / String / "b").and(warp::post()) ; warp::path::end().and(warp::get())"#;
    let got = declared(src);
    assert!(got.contains(&("post".to_string(), "/a/{}/b".to_string())));
    assert!(got.contains(&("get".to_string(), "/".to_string())));
}

#[test]
fn allow_lists_the_documented_methods() {
    use super::allowed_methods;
    assert_eq!(allowed_methods("/v1/chat-messages").as_deref(), Some("POST"));
    assert_eq!(allowed_methods("/api/conversations/abc").as_deref(), Some("DELETE"));
    assert_eq!(allowed_methods("/v1/workflows/run/abc").as_deref(), Some("GET"));
    assert_eq!(allowed_methods("/v1/").as_deref(), Some("GET"));
    assert_eq!(allowed_methods("/v1/nope"), None);
    assert_eq!(allowed_methods("/console/api/apps"), None);
}

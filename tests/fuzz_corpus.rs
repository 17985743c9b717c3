//! The fuzz targets' corpora as ordinary tests: every file under
//! `fuzz/corpus/<target>/` (seeds, and each crash a fuzzer found, kept as a
//! regression) goes through the same function the target calls, on the
//! stable toolchain. Fuzzing itself is described in `fuzz/README.md`.

use std::path::Path;

/// A target's body.
type Check = fn(&[u8]);

/// Each target of `fuzz/fuzz_targets/` with its body.
const TARGETS: &[(&str, Check)] = &[
    ("event_codec", ferrify_engine::fuzzing::event_codec),
    ("dsl_import", ferrify_engine::fuzzing::dsl_import),
    ("template_refs", ferrify_engine::fuzzing::template_refs),
    ("jinja", ferrify_engine::fuzzing::jinja),
    ("chat_request", ferrify_http::fuzzing::chat_request),
    ("completion_request", ferrify_http::fuzzing::completion_request),
    ("workflow_request", ferrify_http::fuzzing::workflow_request_body),
    ("conversation_rename", ferrify_http::fuzzing::conversation_rename),
    ("last_event_id", ferrify_http::fuzzing::last_event_id),
    ("feedback", ferrify_http::fuzzing::feedback),
    ("upload", ferrify_http::fuzzing::upload),
];

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
}

#[test]
fn every_corpus_file_passes_its_target() {
    let mut failures = Vec::new();
    let mut files = 0;
    for (name, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {name} at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "the corpus of {name} is empty");
        for path in entries {
            let data = std::fs::read(&path).unwrap();
            files += 1;
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "corpus files that fail their target: {failures:#?}");
    assert!(files >= TARGETS.len());
}

#[test]
fn every_fuzz_target_is_checked_here() {
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    targets.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(targets, listed, "fuzz/fuzz_targets and TARGETS here must list the same targets");
}

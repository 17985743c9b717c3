//! A DSL import's checks (YAML, app, model config, graph) answer Ok or an error for any text.
//! The body is `ferrify_engine::fuzzing::dsl_import`, which the stable test suite also
//! runs over `fuzz/corpus/dsl_import/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_engine::fuzzing::dsl_import(data));

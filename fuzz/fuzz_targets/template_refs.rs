//! `{{#node.var#}}` templates split and re-assemble losslessly; rendering never panics.
//! The body is `ferrify_engine::fuzzing::template_refs`, which the stable test suite also
//! runs over `fuzz/corpus/template_refs/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_engine::fuzzing::template_refs(data));

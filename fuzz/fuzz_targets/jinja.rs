//! Jinja2 templates compile or fail; rendering ends (fuel) within the output cap.
//! The body is `ferrify_engine::fuzzing::jinja`, which the stable test suite also
//! runs over `fuzz/corpus/jinja/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_engine::fuzzing::jinja(data));

//! SSE cursors from Last-Event-ID (and query strings): digits or a Dify 4xx.
//! The body is `ferrify_http::fuzzing::last_event_id`, which the stable test suite also
//! runs over `fuzz/corpus/last_event_id/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_http::fuzzing::last_event_id(data));

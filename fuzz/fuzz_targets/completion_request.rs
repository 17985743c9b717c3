//! The body of POST /completion-messages: a typed request or a Dify 4xx.
//! The body is `ferrify_http::fuzzing::completion_request`, which the stable test suite also
//! runs over `fuzz/corpus/completion_request/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_http::fuzzing::completion_request(data));

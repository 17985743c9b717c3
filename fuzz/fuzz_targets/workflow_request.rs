//! The body (and version segment) of POST /workflows/run: a typed request or a Dify 4xx.
//! The body is `ferrify_http::fuzzing::workflow_request_body`, which the stable test suite also
//! runs over `fuzz/corpus/workflow_request/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_http::fuzzing::workflow_request_body(data));

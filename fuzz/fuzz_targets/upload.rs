//! A multipart upload (POST /files/upload) through the real parser into in-memory storage:
//! stored (201) or refused with a Dify 4xx, never a panic. First line: the Content-Type.
//! The body is `ferrify_http::fuzzing::upload`, which the stable test suite also
//! runs over `fuzz/corpus/upload/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_http::fuzzing::upload(data));

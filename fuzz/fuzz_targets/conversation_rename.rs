//! The body of POST /conversations/:id/name: a typed request or a Dify 4xx.
//! The body is `ferrify_http::fuzzing::conversation_rename`, which the stable test suite also
//! runs over `fuzz/corpus/conversation_rename/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_http::fuzzing::conversation_rename(data));

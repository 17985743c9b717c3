//! The body of POST /chat-messages: a typed request or a Dify 4xx, never a panic.
//! The body is `ferrify_http::fuzzing::chat_request`, which the stable test suite also
//! runs over `fuzz/corpus/chat_request/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_http::fuzzing::chat_request(data));

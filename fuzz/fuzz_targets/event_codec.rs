//! Decoding arbitrary bytes as an event envelope never panics; what decodes round-trips.
//! The body is `ferrify_engine::fuzzing::event_codec`, which the stable test suite also
//! runs over `fuzz/corpus/event_codec/` (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrify_engine::fuzzing::event_codec(data));

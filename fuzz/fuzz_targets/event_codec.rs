//! Decoding arbitrary bytes as an event envelope never panics, and whatever
//! decodes re-encodes to bytes that decode to the same value.
#![no_main]

use ferrify_engine::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        let again = env.encode().expect("a decoded envelope encodes");
        assert_eq!(Envelope::decode(&again).expect("re-encoded bytes decode"), env);
    }
});

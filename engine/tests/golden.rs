//! Old logs stay readable: `golden/events.bin` holds one encoded envelope of
//! every event variant (u32 little-endian length + bytes, repeated). Every
//! later version must decode it to the same values. Adding variants is
//! allowed (append them to `samples::every_variant` and regenerate with
//! `UPDATE_GOLDENFILES=1`, which only appends); renumbering is not.

#[path = "common/mod.rs"]
mod samples;

use ferrify_engine::Envelope;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/events.bin");

fn envelopes() -> Vec<Envelope> {
    samples::every_variant()
        .into_iter()
        .enumerate()
        .map(|(i, e)| Envelope::new(1_700_000_000_000_000 + i as i64, (i % 2 == 0).then(|| format!("trace-{i}")), e))
        .collect()
}

fn read_golden() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(PATH).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty(), "trailing bytes in the golden file");
    out
}

#[test]
fn golden_events_decode() {
    let expected = envelopes();
    let mut stored = read_golden();
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        // Only ever append encodings of new variants; existing bytes stay.
        let mut file = std::fs::read(PATH).unwrap_or_default();
        for env in &expected[stored.len()..] {
            let bytes = env.encode().unwrap();
            file.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            file.extend_from_slice(&bytes);
            stored.push(bytes);
        }
        std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
        std::fs::write(PATH, file).unwrap();
    }
    assert_eq!(stored.len(), expected.len(), "the golden file lacks variants: run with UPDATE_GOLDENFILES=1");
    for (i, (bytes, want)) in stored.iter().zip(&expected).enumerate() {
        let got = Envelope::decode(bytes).unwrap_or_else(|e| panic!("golden event {i} no longer decodes: {e}"));
        assert_eq!(&got, want, "golden event {i} decodes differently");
        // The current encoder still writes the same bytes.
        assert_eq!(&want.encode().unwrap(), bytes, "golden event {i} encodes differently");
    }
}

//! Replays every committed seed of the `bitcoin` fuzz target (`fuzz/corpus/bitcoin/`) through the same
//! body the fuzzer runs, in the normal `cargo test` run: the Bitcoin decoder must map each to an
//! intent or a typed error, never a panic.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[path = "../fuzz/bodies/bitcoin.rs"]
mod body;

#[test]
fn bitcoin_fuzz_corpus_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bitcoin");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        body::run(&data);
        // Sixteen prefixes too: truncation is the commonest malformation.
        for len in (0..data.len()).step_by((data.len() / 16).max(1)) {
            body::run(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} seeds in {}", dir.display());
}

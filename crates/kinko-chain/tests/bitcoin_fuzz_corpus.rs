//! Replays every committed seed of the `bitcoin` fuzz target (`fuzz/corpus/bitcoin/`) through the same
//! body the fuzzer runs, in the normal `cargo test` run: the Bitcoin decoder must map each to an
//! intent or a typed error, never a panic.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[path = "../fuzz/bodies/bitcoin.rs"]
mod body;

mod fuzz_tally;
use fuzz_tally::Tally;

/// How many of the committed seeds decode (a lower bound: new seeds may add more).
const SEEDS_DECODED: usize = 47;

#[test]
fn bitcoin_fuzz_corpus_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bitcoin");
    let (mut n, mut seeds, mut all) = (0, Tally::new(body::check), Tally::new(body::check));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        seeds.run(&data);
        all.run(&data);
        // Sixteen prefixes too: truncation is the commonest malformation.
        for len in (0..data.len()).step_by((data.len() / 16).max(1)) {
            all.run(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} seeds in {}", dir.display());
    seeds.assert_both_paths(SEEDS_DECODED);
    all.assert_both_paths(SEEDS_DECODED);
}

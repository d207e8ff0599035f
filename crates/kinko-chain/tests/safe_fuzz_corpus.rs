//! Replays every committed seed of the `safe` fuzz target (`fuzz/corpus/safe/`) through the
//! same body the fuzzer runs, in the normal `cargo test` run: the SafeTx decoder must map each
//! seed, each prefix and each single-byte deletion to an intent or a typed error, never a panic.
//!
//! `cargo test -p kinko-chain --test safe_fuzz_corpus -- --ignored` regenerates the seeds from
//! `tests/vectors/safe/`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use sha2::{Digest, Sha256};

#[path = "../fuzz/bodies/safe.rs"]
mod body;

mod fuzz_tally;
use fuzz_tally::Tally;

/// How many of the committed seeds decode (a lower bound: new seeds may add more).
const SEEDS_DECODED: usize = 6;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/safe")
}

#[test]
fn safe_fuzz_corpus_replays_without_panic() {
    let (mut n, mut seeds, mut all) = (0, Tally::new(body::check), Tally::new(body::check));
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seeds.run(&data);
        all.run(&data);
        for len in (0..data.len()).step_by(11) {
            all.run(&data[..len]);
            let mut cut = data.clone();
            cut.remove(len);
            all.run(&cut);
        }
        n += 1;
    }
    assert!(n >= 3, "only {n} seeds");
    seeds.assert_both_paths(SEEDS_DECODED);
    all.assert_both_paths(SEEDS_DECODED);
}

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn regenerate_seeds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/safe/safe_tx_hashes.json");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for v in vectors.as_array().unwrap() {
        let mut td = v["typed_data"].clone();
        let mut seeds = vec![serde_json::to_vec(&td).unwrap()];
        // The same with operation = 1 and with `to` = the Safe: the governance kinds.
        td["message"]["operation"] = serde_json::json!(1);
        seeds.push(serde_json::to_vec(&td).unwrap());
        td["message"]["operation"] = serde_json::json!(0);
        td["message"]["to"] = td["domain"]["verifyingContract"].clone();
        seeds.push(serde_json::to_vec_pretty(&td).unwrap());
        for seed in seeds {
            let name = hex::encode(&Sha256::digest(&seed)[..20]);
            std::fs::write(dir.join(name), seed).unwrap();
        }
    }
}

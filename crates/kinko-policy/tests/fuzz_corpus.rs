//! Replays every committed seed of the fuzz targets (`fuzz/corpus/<target>/`) through the same
//! bodies the fuzzer runs, in the normal `cargo test` run: never a panic.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[path = "../fuzz/bodies/policy_toml.rs"]
mod policy_toml;

#[path = "../fuzz/bodies/approval_message.rs"]
mod approval_message;

fn replay(target: &str, step: usize, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        run(&data);
        // Every prefix too: truncation is the commonest malformation.
        for len in (0..data.len()).step_by(step) {
            run(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= 4, "only {n} seeds in {}", dir.display());
}

#[test]
fn policy_toml_corpus_replays_without_panic() {
    replay("policy_toml", 97, policy_toml::run);
}

#[test]
fn approval_message_corpus_replays_without_panic() {
    replay("approval_message", 1, approval_message::run);
}

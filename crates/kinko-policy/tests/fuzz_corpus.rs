//! Replays every committed seed of the fuzz targets (`fuzz/corpus/<target>/`) through the same
//! bodies the fuzzer runs, in the normal `cargo test` run: never a panic.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[path = "../fuzz/bodies/policy_toml.rs"]
mod policy_toml;

#[path = "../fuzz/bodies/approval_message.rs"]
mod approval_message;

/// How many committed seeds load or decode (lower bounds: new seeds may add more).
const MIN_ACCEPTED_POLICIES: usize = 3;
const MIN_ACCEPTED_MESSAGES: usize = 4;

/// Replays every seed of `target` and every `step`-th prefix of it through `check`, which
/// asserts the body's invariants on what it accepts and that what it refuses is a typed error
/// with a message. At least `min_accepted` seeds must be accepted (so those invariants are
/// checked at all), and some input refused.
fn replay(target: &str, step: usize, min_accepted: usize, check: fn(&[u8]) -> bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let (mut n, mut accepted_seeds, mut inputs, mut refused) = (0, 0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut run = |data: &[u8]| {
            inputs += 1;
            let ok = check(data);
            refused += usize::from(!ok);
            ok
        };
        accepted_seeds += usize::from(run(&data));
        // Every prefix too: truncation is the commonest malformation.
        for len in (0..data.len()).step_by(step) {
            run(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= 4, "only {n} seeds in {}", dir.display());
    assert!(
        accepted_seeds >= min_accepted,
        "only {accepted_seeds} of {n} seeds accepted in {}",
        dir.display()
    );
    assert!(refused > 0, "none of {inputs} inputs refused");
}

#[test]
fn policy_toml_corpus_replays_without_panic() {
    replay("policy_toml", 97, MIN_ACCEPTED_POLICIES, policy_toml::check);
}

#[test]
fn approval_message_corpus_replays_without_panic() {
    replay(
        "approval_message",
        1,
        MIN_ACCEPTED_MESSAGES,
        approval_message::check,
    );
}

//! Fuzz body for witness policies (`kinko_audit::tlog_policy`, C2SP tlog-policy), shared by
//! the `tlog_policy` cargo-fuzz target and the corpus test (`tests/fuzz_corpus.rs`).

use kinko_audit::tlog_policy::{MAX_ENTRIES, WitnessPolicy};

#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// Parses `data` as a policy. An accepted policy is within the limits, names each witness once
/// with a distinct key, is met when every witness cosigned, and is not met when none did
/// (unless it is `quorum none`); a refusal is a typed error with a message. Says whether it
/// was accepted.
pub(crate) fn check(data: &[u8]) -> [bool; 1] {
    let Ok(text) = std::str::from_utf8(data) else {
        return [false];
    };
    match WitnessPolicy::parse(text) {
        Ok(p) => {
            let ws = p.witnesses();
            assert!(ws.len() <= MAX_ENTRIES && p.logs().len() <= MAX_ENTRIES);
            for (i, a) in ws.iter().enumerate() {
                for b in &ws[i + 1..] {
                    assert_ne!(a.name, b.name, "a witness name twice");
                    assert_ne!(a.key.public_key(), b.key.public_key(), "a key twice");
                }
            }
            assert!(p.quorum_met(|_| true), "not met with every witness");
            assert_eq!(
                p.quorum_met(|_| false),
                p.requires_nothing(),
                "met with no witness"
            );
            [true]
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            [false]
        }
    }
}

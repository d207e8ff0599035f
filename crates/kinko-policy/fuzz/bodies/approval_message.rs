//! Fuzz body for the approval message decoder, shared by the `approval_message` cargo-fuzz
//! target and the corpus test (`tests/fuzz_corpus.rs`).

use kinko_policy::ApprovalMessage;

/// Decodes `data`; whatever decodes must re-encode to exactly `data` (one message, one encoding),
/// and whatever does not is refused with a typed error that has a message.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether `data` decoded.
pub(crate) fn check(data: &[u8]) -> bool {
    match ApprovalMessage::from_bytes(data) {
        Ok(m) => {
            match m.to_bytes() {
                Ok(b) => assert_eq!(b, data, "decoded message re-encodes differently"),
                Err(e) => panic!("decoded message does not re-encode: {e}"),
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "no message: {e:?}");
            false
        }
    }
}

//! Fuzz body for the approval message decoder, shared by the `approval_message` cargo-fuzz
//! target and the corpus test (`tests/fuzz_corpus.rs`).

use kinko_policy::ApprovalMessage;

/// Decodes `data`; whatever decodes must re-encode to exactly `data` (one message, one encoding).
pub(crate) fn run(data: &[u8]) {
    if let Ok(m) = ApprovalMessage::from_bytes(data) {
        match m.to_bytes() {
            Ok(b) => assert_eq!(b, data, "decoded message re-encodes differently"),
            Err(e) => panic!("decoded message does not re-encode: {e}"),
        }
    }
}

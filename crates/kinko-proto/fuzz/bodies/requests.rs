//! Fuzz body for client-message validation, shared by the `requests` cargo-fuzz target and the
//! corpus test (`tests/fuzz_corpus.rs`). The first byte picks the message type; the rest is its
//! protobuf encoding, as a gRPC client would send it.

use kinko_proto::v1 as pb;
use kinko_proto::validate;
use prost::Message as _;

/// The payload limit the daemon passes (kinko-chain's).
const MAX_PAYLOAD: usize = 256 * 1024;

/// Decodes and validates; whatever passes must be within every documented bound, and whatever
/// is refused is refused with a typed error that has a message.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// The refusal must say why.
fn refused(e: &impl std::fmt::Display) -> bool {
    assert!(
        !e.to_string().trim().is_empty(),
        "a refusal without a message"
    );
    false
}

/// [`run`], saying whether `data` decoded and validated.
pub(crate) fn check(data: &[u8]) -> bool {
    let Some((&kind, bytes)) = data.split_first() else {
        return false;
    };
    match kind % 4 {
        0 => {
            let m = match pb::SubmitWithdrawalRequest::decode(bytes) {
                Ok(m) => m,
                Err(e) => return refused(&e),
            };
            match validate::submission(m, MAX_PAYLOAD) {
                Ok(s) => {
                    assert!(!s.payload.is_empty() && s.payload.len() <= MAX_PAYLOAD);
                    assert!(!s.key_name.is_empty() && s.key_name.len() <= validate::MAX_ID_LEN);
                    assert!(
                        !s.idempotency_key.is_empty()
                            && s.idempotency_key.len() <= validate::MAX_IDEMPOTENCY_KEY_LEN
                    );
                    assert!(s.reference.len() <= validate::MAX_REFERENCE_LEN);
                    true
                }
                Err(e) => refused(&e.message),
            }
        }
        1 => {
            let m = match pb::SignedApproval::decode(bytes) {
                Ok(m) => m,
                Err(e) => return refused(&e),
            };
            match validate::signed_approval(m) {
                Ok(a) => {
                    assert!(
                        !a.message.is_empty()
                            && a.message.len() <= validate::MAX_APPROVAL_MESSAGE_LEN
                    );
                    assert!(a.subject_id.len() <= validate::MAX_ID_LEN);
                    true
                }
                Err(e) => refused(&e.message),
            }
        }
        2 => {
            let m = match pb::GovernanceApproval::decode(bytes) {
                Ok(m) => m,
                Err(e) => return refused(&e),
            };
            match validate::governance_approval(m) {
                Ok(a) => {
                    assert!(a.message.len() <= validate::MAX_APPROVAL_MESSAGE_LEN);
                    true
                }
                Err(e) => refused(&e.message),
            }
        }
        _ => {
            let m = match pb::ListPendingRequest::decode(bytes) {
                Ok(m) => m,
                Err(e) => return refused(&e),
            };
            match validate::page(&m) {
                Ok((after, limit)) => {
                    assert!((1..=validate::MAX_PAGE).contains(&limit));
                    assert!(after.is_none_or(|a| !a.is_empty() && a.len() <= validate::MAX_ID_LEN));
                    true
                }
                Err(e) => refused(&e.message),
            }
        }
    }
}

//! Fuzz body for client-message validation, shared by the `requests` cargo-fuzz target and the
//! corpus test (`tests/fuzz_corpus.rs`). The first byte picks the message type; the rest is its
//! protobuf encoding, as a gRPC client would send it.

use kinko_proto::v1 as pb;
use kinko_proto::validate;
use prost::Message as _;

/// The payload limit the daemon passes (kinko-chain's).
const MAX_PAYLOAD: usize = 256 * 1024;

/// Decodes and validates; whatever passes must be within every documented bound.
pub(crate) fn run(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            let Ok(m) = pb::SubmitWithdrawalRequest::decode(bytes) else {
                return;
            };
            if let Ok(s) = validate::submission(m, MAX_PAYLOAD) {
                assert!(!s.payload.is_empty() && s.payload.len() <= MAX_PAYLOAD);
                assert!(!s.key_name.is_empty() && s.key_name.len() <= validate::MAX_ID_LEN);
                assert!(
                    !s.idempotency_key.is_empty()
                        && s.idempotency_key.len() <= validate::MAX_IDEMPOTENCY_KEY_LEN
                );
                assert!(s.reference.len() <= validate::MAX_REFERENCE_LEN);
            }
        }
        1 => {
            let Ok(m) = pb::SignedApproval::decode(bytes) else {
                return;
            };
            if let Ok(a) = validate::signed_approval(m) {
                assert!(
                    !a.message.is_empty() && a.message.len() <= validate::MAX_APPROVAL_MESSAGE_LEN
                );
                assert!(a.subject_id.len() <= validate::MAX_ID_LEN);
            }
        }
        2 => {
            let Ok(m) = pb::GovernanceApproval::decode(bytes) else {
                return;
            };
            if let Ok(a) = validate::governance_approval(m) {
                assert!(a.message.len() <= validate::MAX_APPROVAL_MESSAGE_LEN);
            }
        }
        _ => {
            let Ok(m) = pb::ListPendingRequest::decode(bytes) else {
                return;
            };
            if let Ok((after, limit)) = validate::page(&m) {
                assert!((1..=validate::MAX_PAGE).contains(&limit));
                assert!(after.is_none_or(|a| !a.is_empty() && a.len() <= validate::MAX_ID_LEN));
            }
        }
    }
}

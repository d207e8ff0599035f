//! Validation of client messages before anything else looks at them: sizes, enums, fixed-length
//! signatures. Pure, so it is fuzzed on its own (`fuzz/`, replayed by `tests/fuzz_corpus.rs`);
//! the daemon turns an [`Invalid`] into a gRPC status with its reason code.

use kinko_intent::Chain;

use crate::v1 as pb;

/// The longest key name, request id, officer id or governance id.
pub const MAX_ID_LEN: usize = 128;
/// The longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// The longest free-text reference.
pub const MAX_REFERENCE_LEN: usize = 1024;
/// The longest signed approval message.
pub const MAX_APPROVAL_MESSAGE_LEN: usize = 4096;
/// Pending requests per page, at most.
pub const MAX_PAGE: u32 = 500;
/// Pending requests per page when the client does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// What kind of refusal a message earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidKind {
    /// A field is missing, too long or out of range.
    Request,
    /// The requester signature is not 64 bytes.
    RequesterSignature,
    /// The approval is malformed.
    Approval,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The kind (the daemon's reason code).
    pub kind: InvalidKind,
    /// What is wrong, for the client.
    pub message: String,
}

fn invalid(kind: InvalidKind, message: impl Into<String>) -> Invalid {
    Invalid {
        kind,
        message: message.into(),
    }
}

/// A submission whose fields are within bounds (nothing is decoded or verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The signing key's name.
    pub key_name: String,
    /// The chain the client says the payload is for.
    pub chain: Chain,
    /// The unsigned payload, 1..=`max_payload` bytes.
    pub payload: Vec<u8>,
    /// 1..=[`MAX_IDEMPOTENCY_KEY_LEN`] bytes.
    pub idempotency_key: String,
    /// At most [`MAX_REFERENCE_LEN`] bytes.
    pub reference: String,
    /// The requester's Ed25519 signature.
    pub requester_signature: [u8; 64],
}

/// The chain of a request; `UNSPECIFIED` and unknown values are refused.
pub fn chain(c: i32) -> Result<Chain, Invalid> {
    match pb::Chain::try_from(c) {
        Ok(pb::Chain::Ethereum) => Ok(Chain::Ethereum),
        Ok(pb::Chain::Bitcoin) => Ok(Chain::Bitcoin),
        Ok(pb::Chain::Solana) => Ok(Chain::Solana),
        _ => Err(invalid(
            InvalidKind::Request,
            "chain must be ETHEREUM, BITCOIN or SOLANA",
        )),
    }
}

fn bounded(what: &str, s: &str, min: usize, max: usize) -> Result<(), Invalid> {
    if s.len() < min || s.len() > max {
        return Err(invalid(
            InvalidKind::Request,
            format!("{what} must be {min}..={max} bytes, not {}", s.len()),
        ));
    }
    Ok(())
}

/// Checks a `SubmitWithdrawal` message; `max_payload` is the decoders' limit.
pub fn submission(
    m: pb::SubmitWithdrawalRequest,
    max_payload: usize,
) -> Result<Submission, Invalid> {
    bounded("key_name", &m.key_name, 1, MAX_ID_LEN)?;
    let chain = chain(m.chain)?;
    if m.payload.is_empty() || m.payload.len() > max_payload {
        return Err(invalid(
            InvalidKind::Request,
            format!("payload must be 1..={max_payload} bytes"),
        ));
    }
    bounded(
        "idempotency_key",
        &m.idempotency_key,
        1,
        MAX_IDEMPOTENCY_KEY_LEN,
    )?;
    bounded("reference", &m.reference, 0, MAX_REFERENCE_LEN)?;
    let requester_signature: [u8; 64] =
        m.requester_signature.as_slice().try_into().map_err(|_| {
            invalid(
                InvalidKind::RequesterSignature,
                "requester_signature must be 64 bytes (Ed25519)",
            )
        })?;
    Ok(Submission {
        key_name: m.key_name,
        chain,
        payload: m.payload,
        idempotency_key: m.idempotency_key,
        reference: m.reference,
        requester_signature,
    })
}

/// An officer's signed message whose sizes are within bounds (not verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The request or governance id the envelope names.
    pub subject_id: String,
    /// The signed approval message.
    pub message: Vec<u8>,
    /// Its Ed25519 signature (64 bytes), or a passkey's WebAuthn assertion in
    /// `kinko_policy::webauthn::Assertion::to_bytes`' encoding (which starts with
    /// [`PASSKEY_TAG`] and is decoded and checked by the policy).
    pub signature: Vec<u8>,
}

/// The first bytes of an encoded passkey assertion (`kinko_policy::webauthn::ENCODING_TAG`).
pub const PASSKEY_TAG: &[u8; 4] = b"WA1\n";

/// The longest encoded passkey assertion accepted (`kinko_policy::webauthn::MAX_ENCODED`).
pub const MAX_PASSKEY_ASSERTION_LEN: usize = 4 + 2 + 1024 + 2 + 4096 + 72;

fn approval(subject_id: String, message: Vec<u8>, signature: &[u8]) -> Result<Approval, Invalid> {
    if subject_id.len() > MAX_ID_LEN {
        return Err(invalid(
            InvalidKind::Approval,
            format!("the id is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if message.is_empty() || message.len() > MAX_APPROVAL_MESSAGE_LEN {
        return Err(invalid(
            InvalidKind::Approval,
            format!("the approval message must be 1..={MAX_APPROVAL_MESSAGE_LEN} bytes"),
        ));
    }
    let passkey =
        signature.starts_with(PASSKEY_TAG) && signature.len() <= MAX_PASSKEY_ASSERTION_LEN;
    if signature.len() != 64 && !passkey {
        return Err(invalid(
            InvalidKind::Approval,
            "signature must be 64 bytes (Ed25519) or a passkey assertion",
        ));
    }
    Ok(Approval {
        subject_id,
        message,
        signature: signature.to_vec(),
    })
}

/// Checks an `Approve` / `Reject` message.
pub fn signed_approval(m: pb::SignedApproval) -> Result<Approval, Invalid> {
    approval(m.request_id, m.message, &m.signature)
}

/// Checks a governance approval (`Freeze`, `Unfreeze`, `ApprovePolicy`).
pub fn governance_approval(m: pb::GovernanceApproval) -> Result<Approval, Invalid> {
    approval(m.subject_id, m.message, &m.signature)
}

/// The page a `ListPending` asks for: after which request id, and how many.
pub fn page(m: &pb::ListPendingRequest) -> Result<(Option<&str>, u32), Invalid> {
    bounded("after_request_id", &m.after_request_id, 0, MAX_ID_LEN)?;
    let limit = match m.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    Ok((
        Some(m.after_request_id.as_str()).filter(|a| !a.is_empty()),
        limit,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::SubmitWithdrawalRequest {
        pb::SubmitWithdrawalRequest {
            key_name: "eth-hot".into(),
            chain: pb::Chain::Ethereum as i32,
            payload: vec![1, 2, 3],
            idempotency_key: "w-1".into(),
            reference: "withdrawal 1".into(),
            requester_signature: vec![7; 64],
        }
    }

    #[test]
    fn a_submission_within_bounds_passes_and_each_bound_is_enforced() {
        let s = submission(good(), 10).unwrap();
        assert_eq!((s.chain, s.payload.len()), (Chain::Ethereum, 3));
        let cases: Vec<(pb::SubmitWithdrawalRequest, InvalidKind)> = vec![
            (
                pb::SubmitWithdrawalRequest { chain: 0, ..good() },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    chain: 99,
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    payload: vec![],
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    payload: vec![0; 11],
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    idempotency_key: String::new(),
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    idempotency_key: "k".repeat(129),
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    reference: "r".repeat(1025),
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    key_name: String::new(),
                    ..good()
                },
                InvalidKind::Request,
            ),
            (
                pb::SubmitWithdrawalRequest {
                    requester_signature: vec![7; 63],
                    ..good()
                },
                InvalidKind::RequesterSignature,
            ),
        ];
        for (m, kind) in cases {
            assert_eq!(submission(m.clone(), 10).unwrap_err().kind, kind, "{m:?}");
        }
    }

    #[test]
    fn approvals_and_pages_are_bounded() {
        let ok = pb::SignedApproval {
            request_id: "req-1".into(),
            officer_id: "alice".into(),
            message: vec![1; 10],
            signature: vec![2; 64],
        };
        assert!(signed_approval(ok.clone()).is_ok());
        for bad in [
            pb::SignedApproval {
                signature: vec![2; 65],
                ..ok.clone()
            },
            pb::SignedApproval {
                message: vec![],
                ..ok.clone()
            },
            pb::SignedApproval {
                message: vec![1; 4097],
                ..ok.clone()
            },
            pb::SignedApproval {
                request_id: "r".repeat(129),
                ..ok.clone()
            },
        ] {
            assert_eq!(
                signed_approval(bad).unwrap_err().kind,
                InvalidKind::Approval
            );
        }
        let p = pb::ListPendingRequest {
            limit: 0,
            after_request_id: String::new(),
        };
        assert_eq!(page(&p).unwrap(), (None, DEFAULT_PAGE));
        let p = pb::ListPendingRequest {
            limit: 100_000,
            after_request_id: "req-9".into(),
        };
        assert_eq!(page(&p).unwrap(), (Some("req-9"), MAX_PAGE));
    }
}

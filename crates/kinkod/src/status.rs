//! Errors → gRPC statuses, in one place. Each status carries a stable reason code in the
//! `kinko-reason` metadata entry and at the start of its message; internals are logged, not sent.

use tonic::{Code, Status};

/// Stable reason codes (docs/operations.md lists what each means and what to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No or unknown client certificate.
    Unauthenticated,
    /// The certificate's principal lacks the role.
    RoleRequired,
    /// The requester signature is missing or does not verify.
    BadRequesterSignature,
    /// The payload does not decode into an intent.
    UndecodablePayload,
    /// The request is malformed (sizes, fields).
    InvalidRequest,
    /// The policy denied the request.
    PolicyDenied,
    /// The approval does not count (signature, binding, officer, expiry).
    ApprovalInvalid,
    /// A requester may not approve its own request.
    SelfApproval,
    /// The request is not in a state that allows this call.
    WrongState,
    /// The idempotency key was used for a different payload.
    IdempotencyConflict,
    /// A nonce, outpoint or digest is already signed for another request.
    ReplayConflict,
    /// Signing is frozen.
    Frozen,
    /// No such request or key.
    NotFound,
    /// The HSM cannot be reached.
    HsmUnavailable,
    /// The audit log could not be appended; nothing was signed.
    AuditUnavailable,
    /// A rule requires witnessed signatures and the witnesses' quorum did not cosign in time:
    /// the request failed and nothing was signed.
    WitnessUnavailable,
    /// A witness holds a checkpoint of this log that the log does not extend (a restored
    /// older database, or a fork): signing stops until an operator looks (docs/witness.md).
    WitnessConflict,
    /// The HSM returned a signature that does not verify under the key's public key (or a key
    /// failed its self-test): nothing was released; the key is suspect.
    HsmBadSignature,
    /// The requester has too many requests pending approval.
    TooManyPending,
    /// The requester had too many requests denied in the last day.
    TooManyDenied,
    /// The principal has too many watch streams open.
    TooManyWatches,
    /// The principal calls faster than its rate limit.
    RateLimited,
    /// An internal error (logged).
    Internal,
}

impl Reason {
    pub(crate) fn code(self) -> Code {
        match self {
            Reason::Unauthenticated => Code::Unauthenticated,
            Reason::RoleRequired | Reason::BadRequesterSignature | Reason::SelfApproval => {
                Code::PermissionDenied
            }
            Reason::PolicyDenied => Code::PermissionDenied,
            Reason::UndecodablePayload | Reason::InvalidRequest | Reason::ApprovalInvalid => {
                Code::InvalidArgument
            }
            Reason::WrongState | Reason::Frozen | Reason::ReplayConflict => {
                Code::FailedPrecondition
            }
            Reason::IdempotencyConflict => Code::AlreadyExists,
            Reason::NotFound => Code::NotFound,
            Reason::HsmUnavailable | Reason::AuditUnavailable | Reason::WitnessUnavailable => {
                Code::Unavailable
            }
            Reason::WitnessConflict => Code::FailedPrecondition,
            Reason::HsmBadSignature => Code::Internal,
            Reason::TooManyPending
            | Reason::TooManyDenied
            | Reason::TooManyWatches
            | Reason::RateLimited => Code::ResourceExhausted,
            Reason::Internal => Code::Internal,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::RoleRequired => "ROLE_REQUIRED",
            Reason::BadRequesterSignature => "BAD_REQUESTER_SIGNATURE",
            Reason::UndecodablePayload => "UNDECODABLE_PAYLOAD",
            Reason::InvalidRequest => "INVALID_REQUEST",
            Reason::PolicyDenied => "POLICY_DENIED",
            Reason::ApprovalInvalid => "APPROVAL_INVALID",
            Reason::SelfApproval => "SELF_APPROVAL",
            Reason::WrongState => "WRONG_STATE",
            Reason::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Reason::ReplayConflict => "REPLAY_CONFLICT",
            Reason::Frozen => "FROZEN",
            Reason::NotFound => "NOT_FOUND",
            Reason::HsmUnavailable => "HSM_UNAVAILABLE",
            Reason::AuditUnavailable => "AUDIT_UNAVAILABLE",
            Reason::HsmBadSignature => "HSM_BAD_SIGNATURE",
            Reason::WitnessUnavailable => "WITNESS_UNAVAILABLE",
            Reason::WitnessConflict => "WITNESS_CONFLICT",
            Reason::TooManyPending => "TOO_MANY_PENDING",
            Reason::TooManyDenied => "TOO_MANY_DENIED",
            Reason::TooManyWatches => "TOO_MANY_WATCHES",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::Internal => "INTERNAL",
        }
    }
}

/// A status with the reason in metadata and message.
pub(crate) fn status(reason: Reason, message: &str) -> Status {
    let mut s = Status::new(reason.code(), format!("[{}] {message}", reason.as_str()));
    if let Ok(v) = reason.as_str().parse() {
        s.metadata_mut().insert("kinko-reason", v);
    }
    s
}

/// The error type of the lifecycle: a reason and a message for the caller.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) reason: Reason,
    pub(crate) message: String,
}

impl Refused {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Refused {
            reason,
            message: message.into(),
        }
    }
    /// An internal failure: logged in full, reported without detail.
    pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{context}");
        Refused::new(Reason::Internal, format!("{context}; see the daemon log"))
    }
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Status {
        status(r.reason, &r.message)
    }
}

impl From<kinko_store::StoreError> for Refused {
    /// Exhaustive: a new store error must be placed here.
    fn from(e: kinko_store::StoreError) -> Self {
        use kinko_store::StoreError as E;
        match e {
            E::NotFound(id) => Refused::new(Reason::NotFound, format!("no request {id}")),
            E::IdempotencyConflict { .. } => {
                Refused::new(Reason::IdempotencyConflict, e.to_string())
            }
            E::WrongState { .. } | E::DuplicateApproval { .. } => {
                Refused::new(Reason::WrongState, e.to_string())
            }
            E::ReplayConflict { .. } => Refused::new(Reason::ReplayConflict, e.to_string()),
            E::Frozen => Refused::new(
                Reason::Frozen,
                "signing is frozen; the request stays pending until unfrozen",
            ),
            E::PolicyChanged(_) => Refused::new(Reason::WrongState, e.to_string()),
            E::Denied(_) => {
                Refused::new(Reason::PolicyDenied, format!("denied at signing time: {e}"))
            }
            // The store holds the audit log: a store that cannot be written (or read) is a log
            // that cannot be, and nothing changes.
            E::Sqlite(_) | E::Postgres(_) | E::Log(_) | E::LogClosed | E::Io(_) | E::Poisoned => {
                tracing::error!(error = %e, "the store (and its audit log) failed");
                Refused::new(
                    Reason::AuditUnavailable,
                    "the history (state and audit log) cannot be written or read; nothing was changed or signed",
                )
            }
            E::SchemaTooNew { .. } | E::NotOpenable(_) | E::Corrupt(_) | E::LogCorrupt(_) => {
                Refused::internal("store failure", e)
            }
        }
    }
}

impl From<kinko_hsm::HsmError> for Refused {
    fn from(e: kinko_hsm::HsmError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "HSM unavailable");
            Refused::new(
                Reason::HsmUnavailable,
                "the HSM is unavailable; retry later",
            )
        } else if matches!(
            e,
            kinko_hsm::HsmError::KeyNotFound(_)
                | kinko_hsm::HsmError::TokenNotFound { .. }
                | kinko_hsm::HsmError::BadPublicKey { .. }
        ) {
            // A token pulled, or a key deleted, while kinkod runs: typed, and says what.
            tracing::error!(error = %e, "HSM key or token missing");
            Refused::new(
                Reason::HsmUnavailable,
                format!("{e}; nothing was signed: restore the token or key, then retry"),
            )
        } else if let kinko_hsm::HsmError::BadHsmSignature { label, reason } = &e {
            // Never released; said plainly, logged as a refusal, and worth a freeze.
            tracing::error!(error = %e, "the HSM returned a signature that does not verify");
            Refused::new(
                Reason::HsmBadSignature,
                format!(
                    "the HSM's signature with key {label:?} does not verify under its public key ({reason}); nothing was released: treat the key or token as suspect (freeze, then see docs/incident-response.md)"
                ),
            )
        } else {
            Refused::internal("HSM failure", e)
        }
    }
}

impl From<kinko_proto::validate::Invalid> for Refused {
    fn from(e: kinko_proto::validate::Invalid) -> Self {
        use kinko_proto::validate::InvalidKind;
        let reason = match e.kind {
            InvalidKind::RequesterSignature => Reason::BadRequesterSignature,
            InvalidKind::Approval => Reason::ApprovalInvalid,
            _ => Reason::InvalidRequest,
        };
        Refused::new(reason, e.message)
    }
}

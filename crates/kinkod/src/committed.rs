//! The proof the HSM path takes: a signing allowed by the policy and approved by its quorum
//! ([`Authorization`], which only `kinko_policy::authorize` makes) *and* recorded durably in the
//! audit log. [`commit`] is the only way to make one: it appends the `signing_authorized` record
//! for exactly that request and intent and returns the proof once the record is durable. The
//! engine's signing step takes it by value, so one record authorizes one signing.

use std::sync::Arc;

use kinko_audit::log::AuditLog;
use kinko_audit::record::{Event, SigningAuthorized};
use kinko_policy::Authorization;

/// A durably committed authorization. Not `Clone`: consumed by the signing it authorizes.
pub(crate) struct Committed {
    authorization: Authorization,
    record_seq: u64,
}

impl Committed {
    /// The authorization.
    pub(crate) fn authorization(&self) -> &Authorization {
        &self.authorization
    }

    /// The sequence number of its `signing_authorized` record.
    pub(crate) fn record_seq(&self) -> u64 {
        self.record_seq
    }
}

/// Why a commit failed: nothing was recorded (or may have been: see [`AuditLog::append`]) and
/// nothing may be signed.
pub(crate) enum CommitError {
    /// The record does not describe this authorization (a bug: refused, never logged).
    Mismatch(&'static str),
    /// The log could not take it.
    Audit(kinko_audit::Error),
    /// The blocking task failed.
    Worker(String),
}

/// Appends `record` (which must be the record of `authorization`: same request and intent) and
/// waits until it is durable; returns the proof the HSM path needs.
pub(crate) async fn commit(
    audit: &Arc<AuditLog>,
    authorization: Authorization,
    record: SigningAuthorized,
) -> Result<Committed, CommitError> {
    if record.request_id != authorization.request_id() {
        return Err(CommitError::Mismatch("the record names another request"));
    }
    if record.intent.digest != authorization.intent_digest() {
        return Err(CommitError::Mismatch("the record names another intent"));
    }
    if record.policy_hash.0.as_slice() != authorization.policy_hash().0.as_slice() {
        return Err(CommitError::Mismatch("the record names another policy"));
    }
    let audit = Arc::clone(audit);
    let appended = tokio::task::spawn_blocking(move || {
        audit.append("kinkod", Event::SigningAuthorized(record))
    })
    .await
    .map_err(|e| CommitError::Worker(e.to_string()))?
    .map_err(CommitError::Audit)?;
    Ok(Committed {
        authorization,
        record_seq: appended.seq,
    })
}

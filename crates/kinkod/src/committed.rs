//! The proof the HSM path takes: a signing allowed by the policy and approved by its quorum
//! ([`Authorization`], which only `kinko_policy::authorize` makes) *and* committed durably —
//! the request's claim (its nonces, outpoints, digests and velocity) together with its
//! `signing_authorized` audit record, in one transaction of the store. [`commit`] is the only
//! way to make one: it commits the claim and the record for exactly that request and intent,
//! and returns the proof once both are durable. The engine's signing step takes it by value, so
//! one record authorizes one signing.

use std::sync::Arc;

use kinko_audit::record::{Event, SigningAuthorized};
use kinko_policy::Authorization;
use kinko_store::{SigningClaim, Store, StoreError, Tx};

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

/// Why a commit failed: nothing was claimed or recorded, and nothing may be signed.
pub(crate) enum CommitError {
    /// The claim or record does not describe this authorization (a bug: refused, never
    /// committed).
    Mismatch(&'static str),
    /// The store refused the claim (a replayed nonce or digest, a request no longer pending)
    /// or could not be written.
    Store(StoreError),
    /// The blocking task failed.
    Worker(String),
}

/// Commits `claim` and `record` (both must be of `authorization`: same request, intent and
/// policy) in one transaction, and returns the proof the HSM path needs. `controls` runs first
/// in that transaction: it re-checks what another replica may have changed since the
/// authorization (freeze, policy in force, velocity), under the store's write lock.
pub(crate) async fn commit(
    store: Arc<Store>,
    authorization: Authorization,
    claim: SigningClaim,
    record: SigningAuthorized,
    controls: impl FnOnce(&Tx<'_>) -> Result<(), StoreError> + Send + 'static,
) -> Result<Committed, CommitError> {
    if record.request_id != authorization.request_id() {
        return Err(CommitError::Mismatch("the record names another request"));
    }
    if claim.request_id != authorization.request_id() {
        return Err(CommitError::Mismatch("the claim names another request"));
    }
    if record.intent.digest != authorization.intent_digest() {
        return Err(CommitError::Mismatch("the record names another intent"));
    }
    if record.policy_hash.0.as_slice() != authorization.policy_hash().0.as_slice() {
        return Err(CommitError::Mismatch("the record names another policy"));
    }
    let ((), appended) = tokio::task::spawn_blocking(move || {
        store.commit("kinkod", move |tx| {
            crate::failpoint::hit("in_claim_transaction");
            controls(tx)?;
            tx.claim_signing(&claim)?;
            Ok(((), vec![Event::SigningAuthorized(record)]))
        })
    })
    .await
    .map_err(|e| CommitError::Worker(e.to_string()))?
    .map_err(CommitError::Store)?;
    let record_seq = appended
        .first()
        .map(|a| a.seq)
        .ok_or(CommitError::Mismatch("no record was appended"))?;
    Ok(Committed {
        authorization,
        record_seq,
    })
}

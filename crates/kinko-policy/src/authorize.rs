//! "Approved" as a type: [`Authorization`] can only be built by [`authorize`], which evaluates
//! the intent under the policy and verifies the quorum from the signed approvals, at once. A
//! signing path that takes an `Authorization` cannot be reached without both.

use kinko_intent::{Intent, IntentDigest};
use serde::Serialize;

use crate::approval::{QuorumResult, SignedApproval, Subject, evaluate_quorum};
use crate::error::PolicyError;
use crate::eval::{Context, Decision, Outcome, evaluate};
use crate::model::{Policy, PolicyHash};

/// Proof that an intent was allowed by a policy and approved by its quorum at one instant.
/// Fields are private: the only constructor is [`authorize`]. Not `Clone`: a signing consumes
/// the one proof made for it.
#[derive(Debug, Serialize)]
pub struct Authorization {
    policy_hash: PolicyHash,
    request_id: String,
    intent_digest: IntentDigest,
    decision: Decision,
    quorum: QuorumResult,
}

impl Authorization {
    /// The policy that allowed it.
    pub fn policy_hash(&self) -> PolicyHash {
        self.policy_hash
    }
    /// The request.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    /// The digest of the intent that was evaluated and approved.
    pub fn intent_digest(&self) -> IntentDigest {
        self.intent_digest
    }
    /// The policy decision (rule, checks).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
    /// The quorum evaluation (who counted).
    pub fn quorum(&self) -> &QuorumResult {
        &self.quorum
    }
}

/// Evaluates `intent` in `ctx` and verifies `approvals` for `request_id` against the quorum the
/// matched rule requires (the requester in `ctx` never counts). Returns the proof, or why not:
/// [`PolicyError::Denied`] or [`PolicyError::QuorumNotSatisfied`].
pub fn authorize(
    policy: &Policy,
    intent: &Intent,
    ctx: &Context<'_>,
    request_id: &str,
    approvals: &[SignedApproval],
) -> Result<Authorization, PolicyError> {
    let intent_digest = intent.digest().map_err(|e| PolicyError::Malformed {
        what: "intent",
        reason: e.to_string(),
    })?;
    let decision = evaluate(policy, intent, ctx);
    let requirement = match &decision.outcome {
        Outcome::Deny { code, reason } => {
            return Err(PolicyError::Denied {
                code: *code,
                reason: reason.clone(),
            });
        }
        Outcome::RequireApprovals { quorum } => quorum.clone(),
    };
    let subject = Subject::Withdrawal {
        request_id: request_id.to_string(),
        intent_digest,
    };
    let quorum = evaluate_quorum(
        policy,
        &requirement,
        &subject,
        Some(ctx.requester),
        approvals,
        ctx.now,
    );
    if !quorum.is_satisfied() {
        return Err(PolicyError::QuorumNotSatisfied(quorum.to_text()));
    }
    Ok(Authorization {
        policy_hash: policy.hash(),
        request_id: request_id.to_string(),
        intent_digest,
        decision,
        quorum,
    })
}

//! The authorization check over kinko-policy: re-verifies, in log order, that every policy was
//! installed by the install quorum of the policy before it, and that every signing
//! authorization was allowed by the policy in force at that time with approvals by its officers
//! meeting its quorum. Velocity limits are re-evaluated from the signing authorizations that
//! precede each one in the log. The recorded payload is decoded again with kinko-chain (for the
//! key's network and public key, with the policy's token registry) and must yield exactly the
//! recorded intent: the digest the HSM signed is the one the payload yields, not one the daemon
//! claimed.

use std::collections::HashMap;

use jiff::Timestamp;
use kinko_intent::Intent;
use kinko_policy::governance::{install_status, unfreeze_status};
use kinko_policy::{
    ApprovalMessage, Context, Policy, PolicyHash, SignedApproval, Subject, VelocityLedger, Verdict,
    evaluate, evaluate_quorum, velocity_entries,
};

use crate::record::{Approval, KeyCreated, PolicyInstalled, Record, SigningAuthorized, Unfreeze};
use crate::verify::AuthorizationCheck;

/// [`AuthorizationCheck`] implemented with kinko-policy.
#[derive(Debug, Default)]
pub struct PolicyCheck {
    current: Option<Policy>,
    ledger: VelocityLedger,
    keys: HashMap<String, Vec<u8>>,
}

impl PolicyCheck {
    /// A check with no policy in force yet (the log's first `policy_installed` is the bootstrap
    /// policy).
    pub fn new() -> Self {
        Self::default()
    }

    /// A check that starts from `policy` (an auditor verifying a log that starts after it).
    pub fn starting_with(policy: Policy) -> Self {
        Self {
            current: Some(policy),
            ..Self::default()
        }
    }
}

fn signed(approvals: &[Approval]) -> Result<Vec<SignedApproval>, String> {
    approvals
        .iter()
        .map(|a| {
            let signature: [u8; 64] = a.signature.0.as_slice().try_into().map_err(|_| {
                format!(
                    "approval by {} has a signature that is not 64 bytes",
                    a.officer
                )
            })?;
            Ok(SignedApproval {
                message: a.message.0.clone(),
                signature,
            })
        })
        .collect()
}

/// The request id the approvals name, and when the last of them was issued (the latest the
/// quorum can have been reached).
fn governance_request(approvals: &[SignedApproval]) -> Result<(String, Option<Timestamp>), String> {
    let messages: Vec<ApprovalMessage> = approvals
        .iter()
        .filter_map(|a| ApprovalMessage::from_bytes(&a.message).ok())
        .collect();
    let request_id = messages
        .first()
        .map(|m| m.subject.request_id().to_string())
        .ok_or("a governance change without approvals")?;
    let reached = messages
        .iter()
        .filter(|m| m.verdict == Verdict::Approve)
        .map(|m| m.issued_at)
        .max()
        .and_then(|s| Timestamp::from_second(s).ok());
    Ok((request_id, reached))
}

fn timestamp(record: &Record) -> Result<Timestamp, String> {
    i64::try_from(record.time_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .ok_or_else(|| format!("record time {} is out of range", record.time_ms))
}

fn one_line(text: &str) -> String {
    text.trim_end().replace('\n', "; ")
}

impl AuthorizationCheck for PolicyCheck {
    fn key_created(&mut self, _record: &Record, event: &KeyCreated) -> Result<(), String> {
        self.keys
            .insert(event.key_name.clone(), event.public_key.0.clone());
        Ok(())
    }

    fn policy_installed(&mut self, record: &Record, event: &PolicyInstalled) -> Result<(), String> {
        let hash = PolicyHash::of_file(event.policy_text.as_bytes());
        if hash.0[..] != event.policy_hash.0[..] {
            return Err(format!(
                "recorded policy hash {} is not the hash {} of the recorded policy text",
                hex::encode(&event.policy_hash.0),
                hash.to_hex()
            ));
        }
        let policy = Policy::from_toml(event.policy_text.as_bytes())
            .map_err(|e| format!("the recorded policy text does not load: {e}"))?;
        if let Some(current) = &self.current {
            let approvals = signed(&event.approvals)?;
            let (request_id, reached) = governance_request(&approvals)?;
            let now = timestamp(record)?;
            let status = install_status(current, &request_id, hash, &approvals, reached, now);
            if !status.is_effective() {
                return Err(format!(
                    "not installed by the install quorum of the policy in force: {status:?}"
                ));
            }
        }
        self.current = Some(policy);
        Ok(())
    }

    fn unfrozen(&mut self, record: &Record, event: &Unfreeze) -> Result<(), String> {
        let policy = self
            .current
            .as_ref()
            .ok_or("no policy in force to check the unfreeze against")?;
        let approvals = signed(&event.approvals)?;
        let (request_id, reached) = governance_request(&approvals)?;
        let status = unfreeze_status(policy, &request_id, &approvals, reached, timestamp(record)?);
        if !status.is_effective() {
            return Err(format!(
                "not unfrozen by the unfreeze quorum of the policy in force: {status:?}"
            ));
        }
        Ok(())
    }

    fn signing_authorized(
        &mut self,
        record: &Record,
        event: &SigningAuthorized,
        intent: &Intent,
        requester: Option<&str>,
    ) -> Result<(), String> {
        let policy = self
            .current
            .as_ref()
            .ok_or("no policy in force to check the approvals against")?;
        let key = policy
            .key(&event.key_name)
            .ok_or_else(|| format!("key {} is not in the policy in force", event.key_name))?;
        let public_key = self
            .keys
            .get(&event.key_name)
            .ok_or_else(|| format!("no key_created record for key {}", event.key_name))?;
        let ctx = kinko_chain::DecodeContext {
            network: &key.network,
            public_key,
            tokens: policy.token_registry(),
        };
        let decoded = kinko_chain::decode(key.chain, &event.payload.0, &ctx)
            .map_err(|e| format!("the recorded payload does not decode: {e}"))?;
        if decoded != *intent {
            let digest = decoded
                .digest()
                .map(|d| d.to_hex())
                .unwrap_or_else(|e| e.to_string());
            return Err(format!(
                "the recorded payload decodes to intent {digest}, not to the authorized intent {}",
                event.intent.digest
            ));
        }
        let now = timestamp(record)?;
        let requester = requester.ok_or("no request_received record names the requester")?;
        let ctx = Context {
            now,
            requester,
            key: &event.key_name,
            frozen: false,
            history: &self.ledger,
        };
        let decision = evaluate(policy, intent, &ctx);
        let Some(quorum) = decision.quorum() else {
            return Err(format!(
                "the policy in force denies this intent at signing time: {}",
                one_line(&decision.to_text())
            ));
        };
        let subject = Subject::Withdrawal {
            request_id: event.request_id.clone(),
            intent_digest: event.intent.digest,
        };
        let result = evaluate_quorum(
            policy,
            quorum,
            &subject,
            Some(requester),
            &signed(&event.approvals)?,
            now,
        );
        if !result.is_satisfied() {
            return Err(format!(
                "approvals do not meet the quorum of the policy in force: {}",
                one_line(&result.to_text())
            ));
        }
        for (asset, amount) in velocity_entries(intent).map_err(|e| format!("velocity: {e}"))? {
            self.ledger
                .record(&event.key_name, &asset, now, amount)
                .map_err(|e| format!("velocity history: {e}"))?;
        }
        Ok(())
    }
}

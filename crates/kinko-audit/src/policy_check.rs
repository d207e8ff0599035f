//! The authorization check over kinko-policy: re-verifies, in log order, that every policy was
//! installed by the install quorum of the policy before it, and that every signing
//! authorization was allowed by the policy in force at that time with approvals by its officers
//! meeting its quorum. Velocity limits are re-evaluated from the signing authorizations that
//! precede each one in the log. The recorded payload is decoded again with kinko-chain (for the
//! key's network and public key, with the policy's token registry) and must yield exactly the
//! recorded intent: the digest the HSM signed is the one the payload yields, not one the daemon
//! claimed.
//!
//! Governance outcomes are re-derived from the log alone: a policy installation must follow its
//! `policy_proposed` record, and an unfreeze must lift the freeze in force; both must be
//! effective by the votes logged for them (`governance_vote` records, each checked as valid when
//! it was received), counting from the vote that completed the quorum, with every logged veto
//! taken into account and the proposer never counted. Evidence copied into the installation or
//! unfreeze record must be among those logged votes.

use std::collections::HashMap;

use jiff::Timestamp;
use kinko_intent::Intent;
use kinko_policy::governance::{GovernanceStatus, change_status, check_vote};
use kinko_policy::{
    ApprovalMessage, Context, FreezeId, Policy, PolicyHash, SignedApproval, Subject,
    VelocityLedger, evaluate, evaluate_quorum, velocity_entries,
};

use crate::merkle::Hash;
use crate::record::{
    Approval, GovernanceVote, KeyCreated, PolicyInstalled, PolicyProposed, Record,
    SigningAuthorized, Unfreeze,
};
use crate::verify::AuthorizationCheck;

/// A proposal as its `policy_proposed` record states it.
#[derive(Debug, Clone)]
struct Proposal {
    proposer: String,
    policy_hash: [u8; 32],
    base_policy_hash: Vec<u8>,
}

/// [`AuthorizationCheck`] implemented with kinko-policy.
#[derive(Debug, Default)]
pub struct PolicyCheck {
    current: Option<Policy>,
    ledger: VelocityLedger,
    keys: HashMap<String, Vec<u8>>,
    proposals: HashMap<String, Proposal>,
    /// Accepted governance votes per governance request, in log order, with their record time.
    votes: HashMap<String, Vec<(SignedApproval, Timestamp)>>,
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
            SignedApproval::from_parts(a.message.0.clone(), &a.signature.0)
                .map_err(|e| format!("approval by {}: {e}", a.officer))
        })
        .collect()
}

/// The governance request id the approvals name (all must name the same one).
fn governance_request(approvals: &[SignedApproval]) -> Result<String, String> {
    let mut ids = approvals.iter().map(|a| {
        ApprovalMessage::from_bytes(&a.message).map(|m| m.subject.request_id().to_string())
    });
    let first = ids
        .next()
        .ok_or("a governance change without approvals")?
        .map_err(|e| e.to_string())?;
    for id in ids {
        if id.map_err(|e| e.to_string())? != first {
            return Err("the approvals name different governance requests".into());
        }
    }
    Ok(first)
}

/// A record time in whole seconds (the daemon records the quorum instant in seconds).
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

impl PolicyCheck {
    /// The outcome of a timed governance change at `now`, from the votes logged for it: the
    /// quorum instant is the time of the vote that first completed it.
    fn outcome(
        &self,
        policy: &Policy,
        subject: &Subject,
        proposer: Option<&str>,
        now: Timestamp,
    ) -> GovernanceStatus {
        let votes = self
            .votes
            .get(subject.request_id())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let approvals: Vec<SignedApproval> = votes.iter().map(|(a, _)| a.clone()).collect();
        let mut reached = None;
        for (i, (_, at)) in votes.iter().enumerate() {
            let at = whole_seconds(*at);
            let prefix = approvals.get(..=i).unwrap_or_default();
            if matches!(
                change_status(policy, subject, proposer, prefix, Some(at), at),
                GovernanceStatus::Waiting { .. } | GovernanceStatus::Effective { .. }
            ) {
                reached = Some(at);
                break;
            }
        }
        change_status(policy, subject, proposer, &approvals, reached, now)
    }

    /// Every approval in `evidence` must be a logged vote of governance request `id`.
    fn evidence_logged(&self, id: &str, evidence: &[SignedApproval]) -> Result<(), String> {
        let votes = self.votes.get(id).map(Vec::as_slice).unwrap_or_default();
        for a in evidence {
            if !votes.iter().any(|(v, _)| v == a) {
                let who = ApprovalMessage::from_bytes(&a.message)
                    .map(|m| m.officer_id)
                    .unwrap_or_default();
                return Err(format!(
                    "the evidence holds an approval by {who:?} that was never logged as a vote"
                ));
            }
        }
        Ok(())
    }
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
        let mut policy = Policy::from_toml(event.policy_text.as_bytes())
            .map_err(|e| format!("the recorded policy text does not load: {e}"))?;
        if let Some(current) = &self.current {
            let approvals = signed(&event.approvals)?;
            let request_id = governance_request(&approvals)?;
            let proposal = self
                .proposals
                .get(&request_id)
                .ok_or_else(|| format!("no policy_proposed record for proposal {request_id}"))?;
            if proposal.policy_hash != hash.0 {
                return Err(format!(
                    "proposal {request_id} proposed another policy ({})",
                    hex::encode(proposal.policy_hash)
                ));
            }
            if proposal.base_policy_hash[..] != current.hash().0[..] {
                return Err(format!(
                    "proposal {request_id} was made under another policy than the one in force"
                ));
            }
            self.evidence_logged(&request_id, &approvals)?;
            let subject = Subject::InstallPolicy {
                request_id: request_id.clone(),
                new_policy_hash: hash,
            };
            let status = self.outcome(
                current,
                &subject,
                Some(&proposal.proposer),
                timestamp(record)?,
            );
            if !status.is_effective() {
                return Err(format!(
                    "not installed by the install quorum of the policy in force: {status:?}"
                ));
            }
        }
        // Its new address-book entries count from this record, whatever `added_at` they claim.
        if let Some(current) = &self.current {
            // In whole seconds, as kinkod records the installation.
            policy.settle_added_at(Some(current), whole_seconds(timestamp(record)?));
        }
        // Proposals made under the old policy can no longer install anything.
        self.proposals.clear();
        self.votes.clear();
        self.current = Some(policy);
        Ok(())
    }

    fn unfrozen(
        &mut self,
        record: &Record,
        event: &Unfreeze,
        lifted: Option<&Hash>,
    ) -> Result<(), String> {
        let policy = self
            .current
            .as_ref()
            .ok_or("no policy in force to check the unfreeze against")?;
        let freeze_id = FreezeId(*lifted.ok_or("signing was not frozen")?);
        let approvals = signed(&event.approvals)?;
        let request_id = governance_request(&approvals)?;
        self.evidence_logged(&request_id, &approvals)?;
        let subject = Subject::Unfreeze {
            request_id: request_id.clone(),
            freeze_id,
        };
        let status = self.outcome(policy, &subject, None, timestamp(record)?);
        if !status.is_effective() {
            return Err(format!(
                "not unfrozen by the unfreeze quorum of the policy in force for freeze {freeze_id}: {status:?}"
            ));
        }
        self.votes.remove(&request_id);
        Ok(())
    }

    fn policy_proposed(&mut self, _record: &Record, event: &PolicyProposed) -> Result<(), String> {
        let policy_hash: [u8; 32] = event
            .policy_hash
            .0
            .as_slice()
            .try_into()
            .map_err(|_| "the proposed policy hash is not 32 bytes")?;
        if let Some(current) = &self.current
            && event.base_policy_hash.0[..] != current.hash().0[..]
        {
            return Err("proposed under another policy than the one in force".into());
        }
        self.proposals.insert(
            event.request_id.clone(),
            Proposal {
                proposer: event.proposer.clone(),
                policy_hash,
                base_policy_hash: event.base_policy_hash.0.clone(),
            },
        );
        Ok(())
    }

    fn governance_vote(
        &mut self,
        record: &Record,
        event: &GovernanceVote,
        frozen: Option<&Hash>,
    ) -> Result<(), String> {
        let policy = self
            .current
            .as_ref()
            .ok_or("no policy in force to check the vote against")?;
        let approval = signed(std::slice::from_ref(&event.approval))?
            .pop()
            .ok_or("no vote")?;
        let msg = ApprovalMessage::from_bytes(&approval.message).map_err(|e| e.to_string())?;
        if msg.subject.request_id() != event.request_id {
            return Err(format!(
                "the vote names request {}, the record {}",
                msg.subject.request_id(),
                event.request_id
            ));
        }
        let (expected, proposer) = match &msg.subject {
            Subject::InstallPolicy { request_id, .. } => {
                let p = self
                    .proposals
                    .get(request_id)
                    .ok_or_else(|| format!("a vote for {request_id}, which is no open proposal"))?;
                (
                    Subject::InstallPolicy {
                        request_id: request_id.clone(),
                        new_policy_hash: PolicyHash(p.policy_hash),
                    },
                    Some(p.proposer.as_str()),
                )
            }
            Subject::Unfreeze { request_id, .. } => (
                Subject::Unfreeze {
                    request_id: request_id.clone(),
                    freeze_id: FreezeId(*frozen.ok_or("an unfreeze vote while not frozen")?),
                },
                None,
            ),
            other => return Err(format!("a governance vote about {other:?}")),
        };
        let at = timestamp(record)?;
        check_vote(policy, &expected, proposer, &approval, at).map_err(|why| {
            format!(
                "the vote by {} did not count when received: {why:?}",
                msg.officer_id
            )
        })?;
        self.votes
            .entry(event.request_id.clone())
            .or_default()
            .push((approval, at));
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

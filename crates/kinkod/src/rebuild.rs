//! `kinkod rebuild`: the state derived from the log alone (the log outranks the store).
//!
//! Reads the audit log held in a store and writes a NEW database holding that log (copied as
//! is) and the state it implies, replayed record by record through the same transaction
//! methods the daemon uses: requests and their states, officers' verdicts, claims of replay
//! keys and digests, velocity reservations, signed transactions, the freeze, governance votes
//! and requests, installed policies. The operator swaps it in with kinkod stopped; at the next
//! start kinkod verifies the log against its key and checks the rebuilt state against it like
//! any other.
//!
//! What the log does not hold is not invented: a policy proposal that never installed has no
//! text in the log (it is reported, and must be proposed again); a governance request waits
//! out its delay again from the next start (its quorum instant is not logged).

use std::collections::HashMap;
use std::path::Path;

use kinko_audit::merkle::leaf_hash;
use kinko_audit::record::{self as rec, Event, Record};
use kinko_policy::{ApprovalMessage, Subject, Verdict};
use kinko_store::{
    FreezeState, GovernanceKind, InstalledPolicy, NewRequest, PolicyProposal, RequestState,
    Reservation, SigningClaim, Store, StoreError, StoredApproval, Tx,
};

/// What a rebuild found and wrote.
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    pub(crate) records: u64,
    pub(crate) requests: u64,
    pub(crate) verdicts: u64,
    pub(crate) signed: u64,
    pub(crate) frozen: bool,
    pub(crate) policies: u64,
    /// Proposals that never installed: their text is not in the log.
    pub(crate) dropped_proposals: Vec<String>,
}

fn secs(r: &Record) -> i64 {
    i64::try_from(r.time_ms / 1000).unwrap_or(i64::MAX)
}

fn err(seq: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::LogCorrupt(format!("record {seq}: {what}"))
}

fn stored(request_id: &str, a: &rec::Approval, approve: bool, at: i64) -> StoredApproval {
    StoredApproval {
        request_id: request_id.to_string(),
        officer_id: a.officer.clone(),
        approve,
        message: a.message.0.clone(),
        signature: a.signature.0.clone(),
        received_at: at,
    }
}

/// The governance request a signed message is about.
fn governance_subject(a: &rec::Approval) -> Option<(GovernanceKind, String, bool)> {
    let msg = ApprovalMessage::from_bytes(&a.message.0).ok()?;
    let approve = msg.verdict == Verdict::Approve;
    match msg.subject {
        Subject::InstallPolicy { request_id, .. } => {
            Some((GovernanceKind::InstallPolicy, request_id, approve))
        }
        Subject::Unfreeze { request_id, .. } => {
            Some((GovernanceKind::Unfreeze, request_id, approve))
        }
        _ => None,
    }
}

/// Rebuilds the state of `from`'s log into a new database at `out` (which must not exist).
pub(crate) fn rebuild(from: &Store, out: &Path) -> Result<Rebuilt, StoreError> {
    if out.exists() {
        return Err(StoreError::Io(format!(
            "{} exists; rebuild writes a new database",
            out.display()
        )));
    }
    let mut lines = Vec::new();
    loop {
        let batch = from.read_log_lines(lines.len() as u64, 4096)?;
        if batch.is_empty() {
            break;
        }
        lines.extend(batch);
    }
    let notes = from.checkpoint_notes()?;
    let records: Vec<Record> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Record::decode(l.as_bytes()).map_err(|e| err(i as u64, e)))
        .collect::<Result<_, _>>()?;
    // Installed proposals' texts, by proposal id (a proposal record carries only the hash).
    let mut texts: HashMap<String, String> = HashMap::new();
    for r in &records {
        if let Event::PolicyInstalled(p) = &r.event
            && let Some((_, id, _)) = p.approvals.first().and_then(governance_subject)
        {
            texts.insert(id, p.policy_text.clone());
        }
    }
    let store = Store::open(out)?;
    store.import_log(&lines, &notes)?;
    let mut report = Rebuilt {
        records: records.len() as u64,
        ..Rebuilt::default()
    };
    store.write(|tx| {
        for (r, line) in records.iter().zip(&lines) {
            replay(tx, r, line, &texts, &mut report)?;
        }
        Ok(())
    })?;
    Ok(report)
}

fn replay(
    tx: &Tx<'_>,
    r: &Record,
    line: &str,
    texts: &HashMap<String, String>,
    report: &mut Rebuilt,
) -> Result<(), StoreError> {
    let at = secs(r);
    match &r.event {
        Event::RequestReceived(e) => {
            let intent = e
                .intent
                .as_ref()
                .ok_or_else(|| err(r.seq, "a request without its intent"))?;
            let decoded = intent.check().map_err(|e| err(r.seq, e))?;
            tx.insert_request(&NewRequest {
                id: e.request_id.clone(),
                requester: r.principal.clone(),
                idempotency_key: e.idempotency_key.clone(),
                key_name: e.key_name.clone(),
                chain: e.chain,
                network: decoded.network.to_string(),
                payload: e.payload.0.clone(),
                reference: e.reference.clone(),
                requester_signature: e
                    .requester_signature
                    .as_ref()
                    .map(|s| s.0.clone())
                    .unwrap_or_default(),
                intent_json: intent.canonical.clone(),
                intent_digest: intent.digest.0,
                // Set by the decision record that follows.
                policy_hash: [0; 32],
                decision_json: String::new(),
                state: RequestState::PendingApproval,
                final_reason: None,
                now: at,
            })?;
            report.requests += 1;
        }
        Event::Decision(d) => {
            tx.set_decision(
                &d.request_id,
                &d.policy_hash.0,
                &d.explanation,
                matches!(d.outcome, rec::Outcome::Deny),
                at,
            )?;
        }
        Event::Approval(a) => {
            let s = stored(&a.request_id, &a.approval, true, at);
            put_verdict(tx, &s)?;
            report.verdicts += 1;
        }
        Event::Rejection(j) => {
            if let Some(signed) = &j.signed {
                put_verdict(tx, &stored(&j.request_id, signed, false, at))?;
                report.verdicts += 1;
            }
        }
        Event::Cancelled(c) => {
            tx.transition(
                &c.request_id,
                &[RequestState::PendingApproval, RequestState::Received],
                RequestState::Cancelled,
                Some(&c.reason),
                at,
            )?;
        }
        Event::Refusal(rec::Refusal {
            request_id: Some(id),
            code,
            message,
        }) => {
            let (from, to) = match code.as_str() {
                "EXPIRED" => (&[RequestState::PendingApproval][..], RequestState::Expired),
                "SIGNING_FAILED" => (
                    &[
                        RequestState::Signing,
                        RequestState::Approved,
                        RequestState::PendingApproval,
                    ][..],
                    RequestState::Failed,
                ),
                "REJECTED" => (&[RequestState::PendingApproval][..], RequestState::Rejected),
                _ => return Ok(()),
            };
            if tx.request_exists(id)? {
                tx.transition(id, from, to, Some(message), at)?;
            }
        }
        Event::SigningAuthorized(a) => {
            let intent = a.intent.check().map_err(|e| err(r.seq, e))?;
            let velocity = kinko_policy::velocity_entries(&intent).map_err(|e| err(r.seq, e))?;
            tx.claim_signing(&SigningClaim {
                replica: "rebuilt from the log".into(),
                request_id: a.request_id.clone(),
                key_name: a.key_name.clone(),
                replay_keys: intent.replay_keys.clone(),
                digests: crate::engine::claim_digests(&intent.to_sign),
                reservations: velocity
                    .iter()
                    .map(|(asset, amount)| Reservation {
                        key_name: a.key_name.clone(),
                        asset: asset.to_string(),
                        amount: *amount,
                        at,
                        request_id: a.request_id.clone(),
                    })
                    .collect(),
                now: at,
            })?;
        }
        Event::SignatureProduced(p) => {
            let signed = p
                .signed_payload
                .as_ref()
                .ok_or_else(|| err(r.seq, "a signature without its signed transaction"))?;
            tx.record_signed(
                &p.request_id,
                &signed.0,
                p.transaction_id.as_deref().unwrap_or(""),
                at,
            )?;
            report.signed += 1;
        }
        Event::Freeze(f) => {
            tx.set_freeze(&FreezeState {
                frozen: true,
                by: r.principal.clone(),
                reason: f.reason.clone(),
                since: at,
                freeze_id: leaf_hash(line.as_bytes()).to_vec(),
            })?;
            report.frozen = true;
        }
        Event::Unfreeze(u) => {
            if let Some((GovernanceKind::Unfreeze, id, _)) =
                u.approvals.first().and_then(governance_subject)
            {
                tx.set_governance_state(&id, kinko_store::GovernanceState::Effective, Some(at))?;
            }
            tx.set_freeze(&FreezeState::default())?;
            report.frozen = false;
        }
        Event::PolicyProposed(p) => match texts.get(&p.request_id) {
            Some(text) => tx.insert_policy_proposal(&PolicyProposal {
                id: p.request_id.clone(),
                policy_hash: p.policy_hash.0.clone(),
                policy_text: text.clone(),
                base_policy_hash: p.base_policy_hash.0.clone(),
                proposed_by: p.proposer.clone(),
                created_at: at,
            })?,
            None => report.dropped_proposals.push(p.request_id.clone()),
        },
        Event::GovernanceVote(v) => {
            let (kind, _, approve) = governance_subject(&v.approval)
                .ok_or_else(|| err(r.seq, "a governance vote that names no governance request"))?;
            let s = stored(&v.request_id, &v.approval, approve, at);
            tx.add_governance_approval(&v.request_id, kind, &s)?;
            report.verdicts += 1;
        }
        Event::PolicyInstalled(p) => {
            tx.install_policy(&InstalledPolicy {
                policy_hash: p.policy_hash.0.clone(),
                policy_text: p.policy_text.clone(),
                proposal_id: p
                    .approvals
                    .first()
                    .and_then(governance_subject)
                    .map(|(_, id, _)| id),
                installed_at: at,
            })?;
            report.policies += 1;
        }
        // Key records and other refusals change no state. (The event type is non_exhaustive: a
        // new kind of record must be placed here when it changes state.)
        _ => {}
    }
    Ok(())
}

/// Stores a verdict, replacing the officer's earlier one (the log holds both when an approval
/// that stopped counting was replaced).
fn put_verdict(tx: &Tx<'_>, s: &StoredApproval) -> Result<(), StoreError> {
    if tx
        .approvals(&s.request_id)?
        .iter()
        .any(|a| a.officer_id == s.officer_id)
    {
        tx.replace_approval(s)
    } else {
        tx.add_approval(s)
    }
}

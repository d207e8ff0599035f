//! Officers' verdicts: each one verified alone on receipt, stored with its record in one
//! commit, then the quorum the policy in force requires now decides: reject, sign or wait.

use super::*;

impl Engine {
    /// `Approve` / `Reject`: stores the officer's signed verdict after checking that it counts,
    /// then signs when the quorum is met (or rejects when a reject blocks).
    pub(crate) async fn vote(
        &self,
        principal: &str,
        request_id: &str,
        approval: SignedApproval,
        expect: Verdict,
    ) -> Result<Request, Refused> {
        match self
            .vote_inner(principal, request_id, approval, expect)
            .await
        {
            Ok(r) => Ok(r),
            Err(r) if r.reason == Reason::Internal => Err(r),
            Err(r) => Err(self.refuse(principal, Some(request_id), r).await),
        }
    }

    pub(super) async fn vote_inner(
        &self,
        principal: &str,
        request_id: &str,
        approval: SignedApproval,
        expect: Verdict,
    ) -> Result<Request, Refused> {
        let request = self.store.get_request(request_id)?;
        if request.state != RequestState::PendingApproval {
            return Err(Refused::new(
                Reason::WrongState,
                format!(
                    "request {request_id} is {}, not pending approval",
                    request.state
                ),
            ));
        }
        let msg = ApprovalMessage::from_bytes(&approval.message)
            .map_err(|e| Refused::new(Reason::ApprovalInvalid, e.to_string()))?;
        if msg.officer_id != principal {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                format!(
                    "the approval is signed as officer {}, but the caller is {principal}",
                    msg.officer_id
                ),
            ));
        }
        if msg.verdict != expect {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                "the signed verdict does not match the call",
            ));
        }
        if principal == request.new.requester {
            return Err(Refused::new(
                Reason::SelfApproval,
                "a requester never approves its own request",
            ));
        }
        // This one approval alone must verify and bind this request, intent and policy.
        let live = self.live();
        let (single, _) = self.quorum_now(&live, &request, std::slice::from_ref(&approval))?;
        if let Some(ignored) = single.ignored.first() {
            let reason = match ignored.why {
                NotCounted::IsRequester => Reason::SelfApproval,
                _ => Reason::ApprovalInvalid,
            };
            return Err(Refused::new(
                reason,
                format!("the approval does not count: {:?}", ignored.why),
            ));
        }
        // An earlier verdict of this officer that still counts (or still blocks) stands; one
        // that stopped counting (expired, or under a policy no longer in force) is replaced.
        let earlier = self
            .store
            .approvals(request_id)?
            .into_iter()
            .find(|a| a.officer_id == principal);
        if let Some(old) = &earlier {
            let (res, _) =
                self.quorum_now(&live, &request, &to_signed(std::slice::from_ref(old))?)?;
            let decided = !res.counted.is_empty()
                || !res.rejected_by.is_empty()
                || res
                    .ignored
                    .iter()
                    .any(|i| i.why == NotCounted::RejectNotBlocking);
            if decided {
                return Err(Refused::new(
                    Reason::WrongState,
                    format!(
                        "officer {principal} already decided on request {request_id}, and that verdict still counts"
                    ),
                ));
            }
        }
        let stored = StoredApproval {
            request_id: request_id.to_string(),
            officer_id: principal.to_string(),
            approve: expect == Verdict::Approve,
            message: approval.message.clone(),
            signature: approval.signature_bytes(),
            received_at: unix(now()),
        };
        let evidence = evidence(&live.policy, stored.clone());
        let event = match expect {
            Verdict::Approve => Event::Approval(rec::ApprovalRecorded {
                request_id: request_id.to_string(),
                approval: evidence,
            }),
            Verdict::Reject => Event::Rejection(rec::Rejection {
                request_id: request_id.to_string(),
                officer: principal.to_string(),
                reason: "rejected by officer".into(),
                signed: Some(evidence),
            }),
        };
        let replace = earlier.is_some();
        self.commit(principal, move |tx| {
            if replace {
                tx.replace_approval(&stored)?;
            } else {
                tx.add_approval(&stored)?;
            }
            Ok(((), vec![event]))
        })
        .await?;
        self.notify(request_id);
        self.advance(request_id).await
    }

    /// For each stored verdict on `request` (in stored order): whether it counts toward the
    /// quorum the policy in force requires now, and why not when it does not.
    pub(crate) fn approval_status(&self, request: &Request) -> Vec<(bool, String)> {
        let stored = match self.store.approvals(&request.new.id) {
            Ok(s) => s,
            Err(_) => return Vec::new(),
        };
        if request.state != RequestState::PendingApproval {
            // Nothing is counted any more (the signing authorization in the log holds the
            // approvals that counted).
            return stored.iter().map(|_| (false, String::new())).collect();
        }
        let Ok(signed) = to_signed(&stored) else {
            return Vec::new();
        };
        let live = self.live();
        match self.quorum_now(&live, request, &signed) {
            Ok((res, _)) => (0..stored.len())
                .map(|i| {
                    if res.counted.iter().any(|c| c.index == i) {
                        (true, String::new())
                    } else if let Some(ig) = res.ignored.iter().find(|g| g.index == i) {
                        (false, format!("{:?}", ig.why))
                    } else {
                        (false, "a blocking reject".to_string())
                    }
                })
                .collect(),
            Err(e) => stored.iter().map(|_| (false, e.message.clone())).collect(),
        }
    }

    /// The intent re-decoded from the stored payload and the quorum the policy in force
    /// requires for it now.
    pub(super) fn current_requirement(
        &self,
        live: &Live,
        request: &Request,
    ) -> Result<(Intent, kinko_policy::QuorumRequirement), Refused> {
        let key = live.key(&request.new.key_name)?;
        let intent = live.decode(key, &request.new.payload)?;
        let digest = intent
            .digest()
            .map_err(|e| Refused::internal("intent digest", e))?;
        if digest.0.as_slice() != request.new.intent_digest.as_slice() {
            return Err(Refused::internal(
                "stored intent digest differs from the payload's",
                request.new.id.clone(),
            ));
        }
        let decision = {
            let velocity = self.velocity()?;
            let ledger = &velocity.ledger;
            // Officers may keep approving while frozen; the freeze is enforced at signing.
            let frozen = false;
            evaluate(
                &live.policy,
                &intent,
                &Context {
                    now: now(),
                    requester: &request.new.requester,
                    key: &key.name,
                    frozen,
                    history: ledger,
                },
            )
        };
        match decision.quorum() {
            Some(q) => Ok((intent, q.clone())),
            None => Err(Refused::new(Reason::PolicyDenied, decision.to_text())),
        }
    }

    /// How `approvals` stand against the quorum the policy in force requires now for the
    /// request's intent (re-decoded from its payload).
    pub(super) fn quorum_now(
        &self,
        live: &Live,
        request: &Request,
        approvals: &[SignedApproval],
    ) -> Result<(kinko_policy::QuorumResult, kinko_policy::QuorumRequirement), Refused> {
        let (intent, quorum) = self.current_requirement(live, request)?;
        let expected = Subject::Withdrawal {
            request_id: request.new.id.clone(),
            intent_digest: intent
                .digest()
                .map_err(|e| Refused::internal("intent digest", e))?,
        };
        let result = evaluate_quorum(
            &live.policy,
            &quorum,
            &expected,
            Some(&request.new.requester),
            approvals,
            now(),
        );
        Ok((result, quorum))
    }

    /// After a vote: reject, sign, or keep waiting.
    pub(super) async fn advance(&self, request_id: &str) -> Result<Request, Refused> {
        let request = self.store.get_request(request_id)?;
        let approvals = self.signed_approvals(request_id)?;
        let live = self.live();
        let (result, quorum) = self.quorum_now(&live, &request, &approvals)?;
        if !result.rejected_by.is_empty() && quorum.reject_blocks {
            let why = format!("rejected by {}", result.rejected_by.join(", "));
            let id = request_id.to_string();
            let (r, _) = self
                .commit("kinkod", move |tx| {
                    let r = tx.transition(
                        &id,
                        &[RequestState::PendingApproval],
                        RequestState::Rejected,
                        Some(&why),
                        unix(now()),
                    )?;
                    let event = Event::Refusal(rec::Refusal {
                        request_id: Some(id),
                        code: "REJECTED".into(),
                        message: why,
                    });
                    Ok((r, vec![event]))
                })
                .await?;
            self.notify(request_id);
            return Ok(r);
        }
        if !result.is_satisfied() {
            return Ok(request);
        }
        match self.sign(request_id).await {
            // The approval is recorded; the request waits for the unfreeze.
            Err(r) if r.reason == Reason::Frozen => Ok(self.store.get_request(request_id)?),
            other => other,
        }
    }

    pub(super) fn signed_approvals(
        &self,
        request_id: &str,
    ) -> Result<Vec<SignedApproval>, Refused> {
        to_signed(&self.store.approvals(request_id)?)
    }
}

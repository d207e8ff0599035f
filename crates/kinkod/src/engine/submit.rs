//! Submitting and cancelling: the requester's signature, decoding, the policy decision, and
//! the request with its `request_received` and `decision` records in one commit.

use super::*;

impl Engine {
    /// `SubmitWithdrawal`.
    pub(crate) async fn submit(
        &self,
        principal: &str,
        m: kinko_proto::v1::SubmitWithdrawalRequest,
    ) -> Result<Request, Refused> {
        let checked = kinko_proto::validate::submission(m, MAX_PAYLOAD).map_err(Refused::from);
        let result = match checked {
            Ok(s) => self.submit_inner(principal, &s).await,
            Err(r) => Err(r),
        };
        match result {
            Ok(r) => Ok(r),
            Err(r) if r.reason == Reason::IdempotencyConflict || r.reason == Reason::Internal => {
                Err(r)
            }
            // Refusals a flood produces are logged at a bounded rate (the rest counted), so the
            // refusals themselves cannot fill the disk.
            Err(r) if r.reason == Reason::TooManyDenied || r.reason == Reason::TooManyPending => {
                self.log_auth_refusal(principal, r.reason.as_str(), &r.message)
                    .await;
                Err(r)
            }
            Err(r) => Err(self.refuse(principal, None, r).await),
        }
    }

    pub(super) async fn submit_inner(
        &self,
        principal: &str,
        s: &Submission,
    ) -> Result<Request, Refused> {
        let live = self.live();
        let policy = &live.policy;
        let key = live.key(&s.key_name)?;
        if key.chain != s.chain {
            return Err(Refused::new(
                Reason::InvalidRequest,
                format!("key {} signs for {}, not {}", key.name, key.chain, s.chain),
            ));
        }
        // The requester's own signature, checked before anything is decoded.
        RequestToSign {
            requester_id: principal,
            key_name: &s.key_name,
            chain: s.chain,
            idempotency_key: &s.idempotency_key,
            reference: &s.reference,
            payload: &s.payload,
        }
        .verify(policy, &s.requester_signature)
        .map_err(|e| Refused::new(Reason::BadRequesterSignature, e.to_string()))?;

        // A flood of requests cannot bury the officers: the pending queue per requester is capped.
        if self.store.count_pending(principal)? >= self.limits.max_pending_per_requester {
            return Err(Refused::new(
                Reason::TooManyPending,
                format!(
                    "{principal} already has {} requests pending approval",
                    self.limits.max_pending_per_requester
                ),
            ));
        }
        let intent = live.decode(key, &s.payload)?;
        let digest = intent
            .digest()
            .map_err(|e| Refused::internal("intent digest", e))?;
        let at = now();
        let decision = {
            let frozen = self.frozen()?;
            let velocity = self.velocity()?;
            let ledger = &velocity.ledger;
            evaluate(
                policy,
                &intent,
                &Context {
                    now: at,
                    requester: principal,
                    key: &key.name,
                    frozen,
                    history: ledger,
                },
            )
        };
        let id = new_request_id()?;
        let canonical = String::from_utf8(
            intent
                .canonical_bytes()
                .map_err(|e| Refused::internal("intent", e))?,
        )
        .map_err(|e| Refused::internal("intent", e))?;
        if decision.is_denied()
            && self
                .store
                .count_denied_since(principal, unix(at).saturating_sub(24 * 3600))?
                >= self.limits.max_denied_per_requester_per_day
        {
            return Err(Refused::new(
                Reason::TooManyDenied,
                format!(
                    "{principal} had {} requests denied in the last 24 h; this one is denied too and not stored: {}",
                    self.limits.max_denied_per_requester_per_day,
                    decision.to_text().lines().next().unwrap_or_default()
                ),
            ));
        }
        let (state, final_reason) = if decision.is_denied() {
            (RequestState::Denied, Some(decision.to_text()))
        } else {
            (RequestState::PendingApproval, None)
        };
        let new = NewRequest {
            id: id.clone(),
            requester: principal.to_string(),
            idempotency_key: s.idempotency_key.clone(),
            key_name: key.name.clone(),
            chain: key.chain,
            network: key.network.to_string(),
            payload: s.payload.clone(),
            reference: s.reference.clone(),
            requester_signature: s.requester_signature.to_vec(),
            intent_json: canonical,
            intent_digest: digest.0,
            policy_hash: policy.hash().0,
            decision_json: decision.to_json(),
            state,
            final_reason,
            now: unix(at),
        };
        // The request and the decision go to the log with the stored request: one commit.
        let received = Event::RequestReceived(rec::RequestReceived {
            request_id: id.clone(),
            key_name: key.name.clone(),
            chain: key.chain,
            payload: HexBytes(s.payload.clone()),
            idempotency_key: s.idempotency_key.clone(),
            reference: s.reference.clone(),
            requester_signature: Some(HexBytes(s.requester_signature.to_vec())),
            intent: Some(
                IntentRecord::of(&intent).map_err(|e| Refused::internal("intent record", e))?,
            ),
        });
        let decided = Event::Decision(rec::Decision {
            request_id: id.clone(),
            policy_hash: HexBytes(policy.hash().0.to_vec()),
            outcome: if decision.is_denied() {
                rec::Outcome::Deny
            } else {
                rec::Outcome::NeedsApproval
            },
            rules: decision.rule.iter().map(|r| r.name.clone()).collect(),
            explanation: decision.to_json(),
        });
        let (inserted, _) = self
            .commit(principal, move |tx| {
                let inserted = tx.insert_request(&new)?;
                let events = match &inserted {
                    // A retry under the same idempotency key: nothing new happened.
                    Inserted::Existing(_) => Vec::new(),
                    Inserted::Created(_) => vec![received, decided],
                };
                Ok((inserted, events))
            })
            .await?;
        let request = match inserted {
            Inserted::Existing(r) => return Ok(r),
            Inserted::Created(r) => r,
        };
        self.metrics.record_decision(
            decision.rule.as_ref().map(|r| r.name.as_str()),
            decision.is_denied(),
        );
        self.notify(&id);
        Ok(request)
    }

    /// `CancelRequest`: the requester withdraws its request while it waits for approvals.
    /// Logged first, under the signing lock, so a cancel and a signing never both happen.
    pub(crate) async fn cancel(
        &self,
        principal: &str,
        request_id: &str,
        why: &str,
    ) -> Result<Request, Refused> {
        let r = self.cancel_inner(principal, request_id, why).await;
        match r {
            Ok(r) => Ok(r),
            Err(e) if e.reason == Reason::Internal => Err(e),
            Err(e) => Err(self.refuse(principal, Some(request_id), e).await),
        }
    }

    pub(super) async fn cancel_inner(
        &self,
        principal: &str,
        request_id: &str,
        why: &str,
    ) -> Result<Request, Refused> {
        let _guard = self.sign_lock.lock().await;
        let request = self.store.get_request(request_id)?;
        if request.new.requester != principal {
            return Err(Refused::new(
                Reason::NotFound,
                "no such request for this requester",
            ));
        }
        if !matches!(
            request.state,
            RequestState::PendingApproval | RequestState::Received
        ) {
            return Err(Refused::new(
                Reason::WrongState,
                format!(
                    "request {request_id} is {}; only a pending request can be cancelled",
                    request.state
                ),
            ));
        }
        let why: String = why.chars().take(1024).collect();
        let reason = format!("cancelled by {principal}: {why}");
        let id = request_id.to_string();
        let (r, _) = self
            .commit(principal, move |tx| {
                let r = tx.transition(
                    &id,
                    &[RequestState::PendingApproval, RequestState::Received],
                    RequestState::Cancelled,
                    Some(&reason),
                    unix(now()),
                )?;
                let event = Event::Cancelled(rec::Cancelled {
                    request_id: id,
                    reason,
                });
                Ok((r, vec![event]))
            })
            .await?;
        self.notify(request_id);
        Ok(r)
    }
}

//! The signing step: authorization under the controls in force, the claim with its
//! `signing_authorized` record (the [`crate::committed::Committed`] proof), the HSM, and the
//! signed transaction with its `signature_produced` record and a checkpoint.

use super::*;

impl Engine {
    /// The signing step. Re-derives everything; any failure before the HSM leaves the request
    /// where it was (or failed, once the claim is made) and signs nothing.
    pub(super) async fn sign(&self, request_id: &str) -> Result<Request, Refused> {
        let started = std::time::Instant::now();
        // Authorization happens under the lock, one request at a time; the claim's commit (with
        // its audit record) and the HSM run outside it, so claims share commits and signatures
        // proceed in parallel.
        if let Some(why) = self.witnessing.as_ref().and_then(|w| w.conflict()) {
            return Err(Refused::new(
                Reason::WitnessConflict,
                format!("signing is stopped: {why}"),
            ));
        }
        let controls = self.controls.read().await;
        let guard = self.sign_lock.lock().await;
        let live = self.live();
        let policy = &live.policy;
        let request = self.store.get_request(request_id)?;
        // The freeze is checked by `authorize` below, with everything else, at one instant.
        let key = live.key(&request.new.key_name)?.clone();
        let intent = live.decode(&key, &request.new.payload)?;
        let stored = self.store.approvals(request_id)?;
        let approvals = to_signed(&stored)?;
        // The proof that policy and quorum hold now; the HSM path below takes nothing else.
        let auth = {
            let frozen = self.frozen()?;
            let velocity = self.velocity()?;
            let ledger = &velocity.ledger;
            let ctx = Context {
                now: now(),
                requester: &request.new.requester,
                key: &key.name,
                frozen,
                history: ledger,
            };
            kinko_policy::authorize(policy, &intent, &ctx, request_id, &approvals)
        }
        .map_err(|e| match e {
            PolicyError::Denied {
                code: DenyCode::Frozen,
                ..
            } => Refused::new(
                Reason::Frozen,
                "signing is frozen; the request stays pending until unfrozen",
            ),
            PolicyError::Denied { reason, .. } => Refused::new(
                Reason::PolicyDenied,
                format!("denied at signing time: {reason}"),
            ),
            PolicyError::QuorumNotSatisfied(why) => Refused::new(
                Reason::ApprovalInvalid,
                format!("quorum not met at signing time: {why}"),
            ),
            other => Refused::internal("authorization", other),
        })?;
        if auth.intent_digest().0.as_slice() != request.new.intent_digest.as_slice() {
            return Err(Refused::internal(
                "stored intent digest differs from the payload's",
                request_id,
            ));
        }
        // A rule may want its signatures witnessed (checked after the claim commits).
        let witnessed = auth
            .decision()
            .rule
            .as_ref()
            .and_then(|r| policy.rules().get(r.index))
            .is_some_and(|r| r.witnessed);
        // Pending → signing in the claim's own commit (one disk sync under the lock, not two).
        let at = now();
        let velocity = velocity_entries(&intent).map_err(|e| Refused::internal("velocity", e))?;
        let digests = claim_digests(&intent.to_sign);
        let claim = SigningClaim {
            replica: self.replica.clone(),
            request_id: request_id.to_string(),
            key_name: key.name.clone(),
            replay_keys: intent.replay_keys.clone(),
            digests,
            reservations: velocity
                .iter()
                .map(|(asset, amount)| Reservation {
                    key_name: key.name.clone(),
                    asset: asset.to_string(),
                    amount: *amount,
                    at: unix(at),
                    request_id: request_id.to_string(),
                })
                .collect(),
            now: unix(at),
        };
        let evidence: Vec<rec::Approval> = stored
            .into_iter()
            .filter(|a| {
                auth.quorum()
                    .counted
                    .iter()
                    .any(|c| c.officer_id == a.officer_id)
            })
            .map(|a| evidence(policy, a))
            .collect();
        let authorized = rec::SigningAuthorized {
            request_id: request_id.to_string(),
            key_name: key.name.clone(),
            payload: HexBytes(request.new.payload.clone()),
            intent: IntentRecord::of(&intent).map_err(|e| Refused::internal("intent record", e))?,
            policy_hash: HexBytes(policy.hash().0.to_vec()),
            approvals: evidence,
        };
        // The claim (pending → signing, nonces, digests, velocity) and its signing-authorized
        // record commit together: one disk sync, and never one without the other.
        let started_commit = std::time::Instant::now();
        let rechecks = controls_in_transaction(
            Arc::clone(&self.velocity),
            Arc::clone(&live.policy),
            intent.clone(),
            key.name.clone(),
            request.new.requester.clone(),
            request_id.to_string(),
        );
        crate::failpoint::hit("before_claim");
        // The next claim may be authorized while this one commits: both can then share one
        // transaction and one disk sync. What holds them to the limits is the check in the
        // transaction (`rechecks`), which counts every reservation before it, committed or not.
        drop(guard);
        let committed =
            crate::committed::commit(Arc::clone(&self.store), auth, claim, authorized, rechecks)
                .await;
        self.metrics
            .audit_append_seconds
            .observe(started_commit.elapsed().as_secs_f64());
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                let refused = match e {
                    crate::committed::CommitError::Mismatch(why) => {
                        Refused::internal("signing record", why)
                    }
                    crate::committed::CommitError::Worker(why) => {
                        Refused::internal("store worker", why)
                    }
                    crate::committed::CommitError::Store(e) => self.unwritable(e),
                };
                drop(controls);
                if refused.reason == Reason::ReplayConflict {
                    // Another request of this key already holds the nonce, outpoint or digest:
                    // this one can never be signed, so it ends here rather than waiting forever.
                    self.fail(request_id, &refused.message).await;
                } else if refused.reason == Reason::AuditUnavailable {
                    // Nothing changed: the request stays pending, and is tried again once the
                    // history can be written (the background tick).
                    self.retry_pending
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                return Err(refused);
            }
        };
        // The claim's reservations reach the ledger in memory by their numbers, at its next
        // look (see `Engine::velocity`), with every other replica's.
        // The authorization is in the log: controls may change from here.
        drop(controls);
        crate::failpoint::hit("after_signing_authorized");
        // A rule that wants its signatures witnessed: nothing reaches the HSM before a
        // checkpoint covering the `signing_authorized` record met the witness quorum.
        if witnessed && let Err(refused) = self.witnessed(committed.record_seq()).await {
            self.fail(request_id, &refused.message).await;
            return Err(refused);
        }
        match self
            .sign_and_finalize(&live, committed, &key, &intent, &request.new.payload)
            .await
        {
            Ok((signatures, finalized)) => {
                crate::failpoint::hit("after_hsm_signed");
                let produced = Event::SignatureProduced(rec::SignatureProduced {
                    request_id: request_id.to_string(),
                    key_name: key.name.clone(),
                    signatures,
                    signed_payload: Some(HexBytes(finalized.signed.clone())),
                    transaction_id: Some(finalized.id.clone()),
                });
                // The signed transaction, its record and a checkpoint covering it: one commit.
                let id = request_id.to_string();
                let (r, _) = self
                    .commit("kinkod", move |tx| {
                        let r =
                            tx.record_signed(&id, &finalized.signed, &finalized.id, unix(now()))?;
                        Ok((r, vec![produced]))
                    })
                    .await?;
                crate::failpoint::hit("after_signature_produced");
                self.metrics
                    .sign_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.notify(request_id);
                Ok(r)
            }
            Err(e) => {
                self.fail(request_id, &e.message).await;
                Err(e)
            }
        }
    }

    /// Waits until a checkpoint covering record `seq` met the witness quorum (fails closed:
    /// no witnesses configured, a conflict, or no quorum within the configured wait).
    async fn witnessed(&self, seq: u64) -> Result<(), Refused> {
        let Some(w) = self.witnessing.as_ref() else {
            return Err(Refused::new(
                Reason::WitnessUnavailable,
                "the rule requires witnessed signatures but this kinkod has no [witness] configured",
            ));
        };
        // A checkpoint covering the record (the claim's commit does not sign one).
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .map_err(|e| Refused::internal("checkpoint task", e))?
            .map_err(|e| self.unwritable(e))?;
        w.until_witnessed(&self.store, seq).await.map_err(|why| {
            let reason = if w.conflict().is_some() {
                Reason::WitnessConflict
            } else {
                Reason::WitnessUnavailable
            };
            Refused::new(reason, format!("not signed: {why}"))
        })
    }

    /// Counts HSM errors; when a key or the token went missing (a token pulled and put back,
    /// a module that lost its view of the token), re-initializes the PKCS#11 module — at most
    /// every few seconds — so that the next request sees the token as it is now.
    pub(super) async fn hsm_result<T>(
        &self,
        r: Result<T, kinko_hsm::HsmError>,
    ) -> Result<T, Refused> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        self.metrics.hsm_errors.inc();
        if matches!(
            e,
            kinko_hsm::HsmError::KeyNotFound(_)
                | kinko_hsm::HsmError::TokenNotFound { .. }
                | kinko_hsm::HsmError::BadPublicKey { .. }
        ) {
            let due = self.last_hsm_reset.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= HSM_RESET_INTERVAL);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            });
            if due {
                tracing::warn!(error = %e, "re-initializing the PKCS#11 module to find the token again");
                if let Err(r) = self.hsm.dangerous_reset_module().await {
                    tracing::error!(error = %r, "PKCS#11 module re-initialization failed");
                }
            }
        }
        Err(Refused::from(e))
    }

    /// Fails a request that can no longer be signed, with a record saying why (its claims, if
    /// any, stay: a nonce once authorized is never handed to another transaction).
    pub(super) async fn fail(&self, request_id: &str, reason: &str) {
        let id = request_id.to_string();
        let why = reason.to_string();
        let r = self
            .commit("kinkod", move |tx| {
                tx.transition(
                    &id,
                    &[
                        RequestState::Signing,
                        RequestState::Approved,
                        // A claim refused for a replayed nonce leaves the request where it was.
                        RequestState::PendingApproval,
                    ],
                    RequestState::Failed,
                    Some(&why),
                    unix(now()),
                )?;
                let event = Event::Refusal(rec::Refusal {
                    request_id: Some(id),
                    code: "SIGNING_FAILED".into(),
                    message: why.chars().take(1024).collect(),
                });
                Ok(((), vec![event]))
            })
            .await;
        match r {
            Ok(_) => self.notify(request_id),
            Err(e) => tracing::error!(
                request_id,
                error = e.message,
                "could not mark request failed"
            ),
        }
    }

    /// Signs every input of the intent in the HSM and finalizes. Takes the [`Authorization`]
    /// that only `kinko_policy::authorize` can make, for this very intent.
    pub(super) async fn sign_and_finalize(
        &self,
        live: &Live,
        committed: crate::committed::Committed,
        key: &KeyInfo,
        intent: &Intent,
        payload: &[u8],
    ) -> Result<(Vec<rec::ProducedSignature>, kinko_chain::Finalized), Refused> {
        let auth = committed.authorization();
        tracing::debug!(
            request = auth.request_id(),
            record = committed.record_seq(),
            "signing under a durable authorization"
        );
        if intent.digest().ok() != Some(auth.intent_digest()) {
            return Err(Refused::internal(
                "authorization is for another intent",
                auth.request_id(),
            ));
        }
        let mut produced = Vec::new();
        let mut evidence = Vec::new();
        for input in &intent.to_sign {
            match input {
                SigningInput::EcdsaSecp256k1 { digest, .. } => {
                    let mut prehash = [0u8; 32];
                    hex::decode_to_slice(digest, &mut prehash)
                        .map_err(|e| Refused::internal("digest hex", e))?;
                    let sig = self
                        .hsm
                        .sign_secp256k1_prehash(&key.hsm_label, prehash)
                        .await;
                    let sig = self.hsm_result(sig).await?;
                    evidence.push(rec::ProducedSignature {
                        input: input.clone(),
                        signature: HexBytes(sig.rs.to_vec()),
                    });
                    produced.push(ProducedSignature::EcdsaSecp256k1 {
                        rs: sig.rs,
                        recovery_id: sig.recovery_id,
                    });
                }
                SigningInput::Ed25519 { message, .. } => {
                    let msg =
                        hex::decode(message).map_err(|e| Refused::internal("message hex", e))?;
                    let sig = self.hsm.sign_ed25519(&key.hsm_label, &msg).await;
                    let sig = self.hsm_result(sig).await?;
                    evidence.push(rec::ProducedSignature {
                        input: input.clone(),
                        signature: HexBytes(sig.to_vec()),
                    });
                    produced.push(ProducedSignature::Ed25519(sig));
                }
            }
        }
        let ctx = DecodeContext {
            network: &key.network,
            public_key: &key.public_key,
            tokens: live.policy.token_registry(),
        };
        let finalized = kinko_chain::finalize(key.chain, payload, &ctx, &produced)
            .map_err(|e| Refused::internal("finalize", e))?;
        Ok((evidence, finalized))
    }
}

/// The digests a signing claims in the store: the prehash for ECDSA, the SHA-256 of the message
/// (as hex) for Ed25519.
pub(crate) fn claim_digests(to_sign: &[SigningInput]) -> Vec<String> {
    to_sign
        .iter()
        .map(|s| match s {
            SigningInput::EcdsaSecp256k1 { digest, .. } => digest.clone(),
            SigningInput::Ed25519 { message, .. } => {
                use sha2::{Digest, Sha256};
                hex::encode(Sha256::digest(message.as_bytes()))
            }
        })
        .collect()
}

/// What the claim's transaction re-checks under the store's write lock before it commits —
/// what another kinkod replica may have changed since this one authorized the signing: the
/// freeze, the policy in force, and the velocity limits with every replica's reservations
/// counted (this replica's in-memory ledger knows only its own).
fn controls_in_transaction(
    velocity: Arc<std::sync::Mutex<super::Velocity>>,
    policy: Arc<Policy>,
    intent: Intent,
    key: String,
    requester: String,
    request_id: String,
) -> impl FnOnce(&Tx<'_>) -> Result<(), StoreError> + Send + 'static {
    move |tx| {
        if tx.freeze_state()?.frozen {
            return Err(StoreError::Frozen);
        }
        let in_force = tx.installed_policy_hash()?;
        if in_force.as_ref().map(|h| h.as_slice()) != Some(policy.hash().0.as_slice()) {
            return Err(StoreError::PolicyChanged(format!(
                "the store's policy is {}",
                in_force.map(hex::encode).unwrap_or_else(|| "none".into())
            )));
        }
        let at = now();
        // Under the write lock every reservation numbered above the ledger's newest is visible:
        // every replica's committed claims, and the claims of earlier steps of this same
        // transaction (group commit puts concurrent claims in one batch). The latter may still
        // roll back, so they are counted on top of the shared ledger, never written into it;
        // the ledger takes reservations only once committed (`Engine::velocity`).
        // Lock order: the store (held: this is its transaction), then the ledger.
        let v = velocity
            .lock()
            .map_err(|_| StoreError::Corrupt("the velocity ledger's lock is poisoned".into()))?;
        let mut history = WithPending::new(&v.ledger);
        for (_, r) in tx.reservations_after(v.seen)? {
            if r.request_id == request_id {
                // Already claimed (a concurrent signing of the same request): the claim below
                // fails on the request's state, which says so better than a velocity denial.
                continue;
            }
            let (asset, when) = super::reservation_entry(&r).map_err(StoreError::Corrupt)?;
            history.add(&r.key_name, &asset, when, r.amount);
        }
        let decision = evaluate(
            &policy,
            &intent,
            &Context {
                now: at,
                requester: &requester,
                key: &key,
                frozen: false,
                history: &history,
            },
        );
        if decision.is_denied() {
            return Err(StoreError::Denied(
                decision
                    .to_text()
                    .lines()
                    .next()
                    .unwrap_or("denied")
                    .to_string(),
            ));
        }
        Ok(())
    }
}

//! The request lifecycle, top to bottom:
//! requester signature → decode → policy → store → audit; approvals → quorum; then, atomically
//! for signing: freeze check → re-decode → re-evaluate the policy in force now → re-verify every
//! approval from its signed bytes → claim nonces, digests and velocity → durable *signing
//! authorized* record → HSM → verify → finalize → *signature produced* → signed.
//!
//! Nothing here trusts a stored flag: the signing step recomputes everything from the payload
//! and the officers' signatures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use kinko_audit::record::{self as rec, Event, HexBytes, IntentRecord};
use kinko_chain::{DecodeContext, ProducedSignature};
use kinko_hsm::Hsm;
use kinko_intent::{Chain, Intent, SigningInput};
use kinko_policy::approval::NotCounted;
use kinko_policy::request::RequestToSign;
use kinko_policy::{
    ApprovalMessage, Context, DenyCode, FreezeId, Policy, PolicyError, SignedApproval, Subject,
    VelocityLedger, Verdict, evaluate, evaluate_quorum, velocity_entries,
};
use kinko_proto::validate::Submission;
use kinko_store::log::Appended;
use kinko_store::{
    Inserted, NewRequest, Request, RequestState, Reservation, SigningClaim, Store, StoreError,
    StoredApproval, Tx,
};
use tokio::sync::broadcast;

use crate::status::{Reason, Refused};

/// Least time between two re-initializations of the PKCS#11 module.
const HSM_RESET_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Refused authentications and roles logged per second, on average.
const AUTH_REFUSALS_PER_SEC: f64 = 5.0;

/// Largest payload accepted from a client.
pub(crate) const MAX_PAYLOAD: usize = kinko_chain::MAX_PAYLOAD_LEN;

/// A signing key as the daemon knows it: its policy entry and its public key from the HSM.
#[derive(Debug, Clone)]
pub(crate) struct KeyInfo {
    pub(crate) name: String,
    pub(crate) chain: Chain,
    pub(crate) network: kinko_intent::Network,
    pub(crate) hsm_label: String,
    pub(crate) public_key: Vec<u8>,
    /// The address as the chain's wallets show it (empty when it cannot be derived).
    pub(crate) address: String,
}

/// The policy in force and the keys it names: replaced as one when governance installs a
/// policy. Every operation takes one snapshot and uses it throughout.
pub(crate) struct Live {
    pub(crate) policy: Arc<Policy>,
    pub(crate) keys: HashMap<String, KeyInfo>,
}

impl Live {
    fn key(&self, name: &str) -> Result<&KeyInfo, Refused> {
        self.keys
            .get(name)
            .ok_or_else(|| Refused::new(Reason::NotFound, format!("no signing key named {name:?}")))
    }

    fn decode(&self, key: &KeyInfo, payload: &[u8]) -> Result<Intent, Refused> {
        let ctx = DecodeContext {
            network: &key.network,
            public_key: &key.public_key,
            tokens: self.policy.token_registry(),
        };
        kinko_chain::decode(key.chain, payload, &ctx)
            .map_err(|e| Refused::new(Reason::UndecodablePayload, e.to_string()))
    }
}

/// Limits the engine enforces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineLimits {
    pub(crate) max_pending_per_requester: u64,
    /// Denied requests kept per requester per 24 h; past it a denied request is refused and
    /// nothing is stored (denials must not be a way to fill the disk).
    pub(crate) max_denied_per_requester_per_day: u64,
    /// A request pending approval longer than this expires.
    pub(crate) pending_expiry_secs: i64,
}

pub(crate) struct Engine {
    store: Arc<Store>,
    hsm: Hsm,
    live: RwLock<Arc<Live>>,
    velocity: Mutex<VelocityLedger>,
    /// Held from the signing-time authorization to the durable claim (never across the HSM).
    sign_lock: tokio::sync::Mutex<()>,
    /// The controls in force (freeze state, policy). A signing step holds it shared from its
    /// authorization until its `signing_authorized` record is durable; a freeze, an unfreeze
    /// and a policy installation hold it exclusively while they log and apply the change. So
    /// the log never shows a signing authorized under a freeze state or policy that had already
    /// changed (tokio's lock is fair: a waiting change is not starved by signers).
    controls: tokio::sync::RwLock<()>,
    /// Serializes governance changes (installs, unfreezes).
    governance_lock: tokio::sync::Mutex<()>,
    changes: broadcast::Sender<String>,
    limits: EngineLimits,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Where the policy in force is kept on disk (rewritten when governance installs one).
    policy_path: std::path::PathBuf,
    /// When the PKCS#11 module was last re-initialized after a key or token went missing.
    last_hsm_reset: Mutex<Option<std::time::Instant>>,
    /// Token bucket for logging refused authentications: (tokens, last refill).
    auth_refusals: Mutex<crate::rate::Bucket>,
    /// The HSM label of the audit log's key: no signing key may use it.
    log_key_label: String,
    /// Set when a signing step could not be committed (the history was unwritable): the next
    /// background tick tries every request pending approval again, so none is stranded.
    retry_pending: std::sync::atomic::AtomicBool,
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn unix(t: Timestamp) -> i64 {
    t.as_second()
}

impl Engine {
    pub(crate) fn new(
        store: Arc<Store>,
        hsm: Hsm,
        live: Live,
        limits: EngineLimits,
        metrics: Arc<crate::metrics::Metrics>,
        policy_path: std::path::PathBuf,
    ) -> Result<Engine, String> {
        let (changes, _) = broadcast::channel(1024);
        let engine = Engine {
            store,
            hsm,
            live: RwLock::new(Arc::new(live)),
            velocity: Mutex::new(VelocityLedger::new()),
            sign_lock: tokio::sync::Mutex::new(()),
            controls: tokio::sync::RwLock::new(()),
            governance_lock: tokio::sync::Mutex::new(()),
            changes,
            limits,
            metrics,
            policy_path,
            last_hsm_reset: Mutex::new(None),
            auth_refusals: Mutex::new(crate::rate::Bucket::full(AUTH_REFUSALS_PER_SEC * 10.0)),
            log_key_label: String::new(),
            retry_pending: std::sync::atomic::AtomicBool::new(false),
        };
        engine.load_velocity()?;
        Ok(engine)
    }

    /// Sets the audit log key's HSM label, which no signing key of a proposed policy may use.
    pub(crate) fn with_log_key_label(mut self, label: &str) -> Self {
        self.log_key_label = label.to_string();
        self
    }

    /// Rebuilds the in-memory velocity ledger from the store's reservations of the longest
    /// window a policy may use.
    fn load_velocity(&self) -> Result<(), String> {
        let since = unix(now()) - kinko_policy::MAX_DURATION_SECS;
        let mut ledger = self.velocity.lock().map_err(|_| "velocity lock poisoned")?;
        *ledger = VelocityLedger::new();
        for r in self
            .store
            .all_reservations_since(since)
            .map_err(|e| e.to_string())?
        {
            let asset = parse_asset_id(&r.asset)
                .ok_or_else(|| format!("stored reservation has an unknown asset {:?}", r.asset))?;
            let at = Timestamp::from_second(r.at).map_err(|e| e.to_string())?;
            let amount = r.amount.parse().map_err(|e| format!("{e}"))?;
            ledger
                .record(&r.key_name, &asset, at, amount)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Whether signing is frozen.
    fn frozen(&self) -> Result<bool, Refused> {
        Ok(self.store.freeze_state()?.frozen)
    }

    /// A snapshot of the policy in force and its keys.
    pub(crate) fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(l) => Arc::clone(&l),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn notify(&self, id: &str) {
        let _ = self.changes.send(id.to_string());
    }

    /// Commits one step of the path: the state change `step` makes and the audit records it
    /// returns, in one transaction of the store ([`Store::commit`]): both are durable, or
    /// neither is.
    async fn commit<T: Send + 'static>(
        &self,
        principal: &str,
        step: impl FnOnce(&Tx<'_>) -> Result<(T, Vec<Event>), StoreError> + Send + 'static,
    ) -> Result<(T, Vec<Appended>), Refused> {
        self.commit_with(principal, step, |_, _, _| Ok(())).await
    }

    /// [`Engine::commit`] with a last change once the records are placed
    /// ([`Store::commit_with`]).
    async fn commit_with<T: Send + 'static>(
        &self,
        principal: &str,
        step: impl FnOnce(&Tx<'_>) -> Result<(T, Vec<Event>), StoreError> + Send + 'static,
        after: impl FnOnce(&Tx<'_>, &mut T, &[Appended]) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(T, Vec<Appended>), Refused> {
        let store = Arc::clone(&self.store);
        let principal = principal.to_string();
        let started = std::time::Instant::now();
        let result =
            tokio::task::spawn_blocking(move || store.commit_with(&principal, step, after))
                .await
                .map_err(|e| Refused::internal("store worker", e))?;
        self.metrics
            .audit_append_seconds
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|e| self.unwritable(e))
    }

    /// A failed commit as the caller sees it: a conflict (state, replay, idempotency) as
    /// itself; a history that cannot be written as `AUDIT_UNAVAILABLE`.
    fn unwritable(&self, e: StoreError) -> Refused {
        match e {
            StoreError::Sqlite(_)
            | StoreError::Log(_)
            | StoreError::LogClosed
            | StoreError::Poisoned
            | StoreError::Io(_) => {
                self.metrics.audit_errors.inc();
                tracing::error!(error = %e, "commit failed");
                Refused::new(
                    Reason::AuditUnavailable,
                    "the history (state and audit log) cannot be written; nothing was changed or signed",
                )
            }
            other => Refused::from(other),
        }
    }

    /// Appends one record with no state change, and waits until it is durable.
    async fn append(&self, principal: &str, event: Event) -> Result<(), Refused> {
        self.commit(principal, move |_| Ok(((), vec![event])))
            .await
            .map(|_| ())
    }

    /// Records a refusal that reached the daemon (best effort: the refusal stands either way).
    pub(crate) async fn refuse(
        &self,
        principal: &str,
        request_id: Option<&str>,
        r: Refused,
    ) -> Refused {
        let event = Event::Refusal(rec::Refusal {
            request_id: request_id.map(str::to_string),
            code: r.reason.as_str().to_string(),
            message: r.message.clone(),
        });
        if let Err(e) = self.append(principal, event).await {
            tracing::error!(reason = e.message, "could not log a refusal");
        }
        r
    }

    /// Logs a refused authentication or role (or a flood's refusal: too many pending or denied),
    /// at most [`AUTH_REFUSALS_PER_SEC`] per second on average (bursts of ten times that); the
    /// rest are only counted.
    pub(crate) async fn log_auth_refusal(&self, principal: &str, code: &str, message: &str) {
        let admitted = self
            .auth_refusals
            .lock()
            .is_ok_and(|mut b| b.take(AUTH_REFUSALS_PER_SEC, AUTH_REFUSALS_PER_SEC * 10.0));
        if !admitted {
            self.metrics.auth_refusals_unlogged.inc();
            return;
        }
        let event = Event::Refusal(rec::Refusal {
            request_id: None,
            code: code.to_string(),
            message: message.chars().take(512).collect(),
        });
        if let Err(e) = self.append(principal, event).await {
            tracing::error!(reason = e.message, "could not log a refused call");
        }
    }

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

    async fn submit_inner(&self, principal: &str, s: &Submission) -> Result<Request, Refused> {
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
            let ledger = self
                .velocity
                .lock()
                .map_err(|_| Refused::internal("velocity", "poisoned"))?;
            let frozen = self.frozen()?;
            evaluate(
                policy,
                &intent,
                &Context {
                    now: at,
                    requester: principal,
                    key: &key.name,
                    frozen,
                    history: &*ledger,
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
            chain: key.chain.as_str().to_string(),
            network: key.network.to_string(),
            payload: s.payload.clone(),
            reference: s.reference.clone(),
            requester_signature: s.requester_signature.to_vec(),
            intent_json: canonical,
            intent_digest: digest.0.to_vec(),
            policy_hash: policy.hash().0.to_vec(),
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

    async fn cancel_inner(
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

    async fn vote_inner(
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
            signature: approval.signature.to_vec(),
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
    fn current_requirement(
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
            let ledger = self
                .velocity
                .lock()
                .map_err(|_| Refused::internal("velocity", "poisoned"))?;
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
                    history: &*ledger,
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
    fn quorum_now(
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
    async fn advance(&self, request_id: &str) -> Result<Request, Refused> {
        let request = self.store.get_request(request_id)?;
        let approvals = self.signed_approvals(request_id)?;
        let live = self.live();
        let (result, quorum) = self.quorum_now(&live, &request, &approvals)?;
        if !result.rejected_by.is_empty() && quorum.reject_blocks {
            let r = self.store.transition(
                request_id,
                &[RequestState::PendingApproval],
                RequestState::Rejected,
                Some(&format!("rejected by {}", result.rejected_by.join(", "))),
                unix(now()),
            )?;
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

    fn signed_approvals(&self, request_id: &str) -> Result<Vec<SignedApproval>, Refused> {
        to_signed(&self.store.approvals(request_id)?)
    }

    /// The signing step. Re-derives everything; any failure before the HSM leaves the request
    /// where it was (or failed, once the claim is made) and signs nothing.
    async fn sign(&self, request_id: &str) -> Result<Request, Refused> {
        let started = std::time::Instant::now();
        // Authorization, velocity and the claim happen under the lock, one request at a time;
        // the audit record and the HSM run outside it, so signatures proceed in parallel.
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
            let ledger = self
                .velocity
                .lock()
                .map_err(|_| Refused::internal("velocity", "poisoned"))?;
            let frozen = self.frozen()?;
            let ctx = Context {
                now: now(),
                requester: &request.new.requester,
                key: &key.name,
                frozen,
                history: &*ledger,
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
        // Pending → signing in the claim's own commit (one disk sync under the lock, not two).
        let at = now();
        let velocity = velocity_entries(&intent).map_err(|e| Refused::internal("velocity", e))?;
        let digests = claim_digests(&intent.to_sign);
        let claim = SigningClaim {
            request_id: request_id.to_string(),
            key_name: key.name.clone(),
            replay_keys: intent.replay_keys.clone(),
            digests,
            reservations: velocity
                .iter()
                .map(|(asset, amount)| Reservation {
                    key_name: key.name.clone(),
                    asset: asset.to_string(),
                    amount: amount.to_string(),
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
        let committed =
            crate::committed::commit(Arc::clone(&self.store), auth, claim, authorized).await;
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
                drop(guard);
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
        for (asset, amount) in &velocity {
            let mut ledger = self
                .velocity
                .lock()
                .map_err(|_| Refused::internal("velocity", "poisoned"))?;
            ledger
                .record(&key.name, asset, at, *amount)
                .map_err(|e| Refused::internal("velocity", e))?;
        }
        drop(guard);
        // The authorization is in the log: controls may change from here.
        drop(controls);
        crate::failpoint::hit("after_signing_authorized");
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

    /// Counts HSM errors; when a key or the token went missing (a token pulled and put back,
    /// a module that lost its view of the token), re-initializes the PKCS#11 module — at most
    /// every few seconds — so that the next request sees the token as it is now.
    async fn hsm_result<T>(&self, r: Result<T, kinko_hsm::HsmError>) -> Result<T, Refused> {
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
    async fn fail(&self, request_id: &str, reason: &str) {
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
    async fn sign_and_finalize(
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

    /// Logs a refusal of a governance call (anything but an internal error) and returns it.
    async fn refusing<T>(
        &self,
        principal: &str,
        approval: &SignedApproval,
        r: Result<T, Refused>,
    ) -> Result<T, Refused> {
        match r {
            Ok(v) => Ok(v),
            Err(e) if e.reason == Reason::Internal => Err(e),
            Err(e) => {
                let id = ApprovalMessage::from_bytes(&approval.message)
                    .ok()
                    .map(|m| m.subject.request_id().to_string());
                Err(self.refuse(principal, id.as_deref(), e).await)
            }
        }
    }

    /// Checks a governance vote when it is received, under the policy in force: a vote that
    /// could never count (signature, officer, subject, policy, expiry, role, the proposer's
    /// own) is refused here, so it is neither stored nor logged and never blocks a valid one.
    fn check_vote(
        &self,
        live: &Live,
        subject: &Subject,
        proposer: Option<&str>,
        approval: &SignedApproval,
    ) -> Result<ApprovalMessage, Refused> {
        kinko_policy::governance::check_vote(&live.policy, subject, proposer, approval, now())
            .map_err(|why| match why {
                NotCounted::IsRequester => Refused::new(
                    Reason::SelfApproval,
                    "the proposer of a policy never approves its own proposal",
                ),
                why => Refused::new(
                    Reason::ApprovalInvalid,
                    format!("the {} vote does not count: {why:?}", subject_kind(subject)),
                ),
            })
    }

    /// Refuses a second vote of the same officer on a governance request before anything is
    /// logged.
    fn not_voted_yet(&self, id: &str, officer: &str) -> Result<(), Refused> {
        if self
            .store
            .governance_approvals(id)?
            .iter()
            .any(|a| a.officer_id == officer)
        {
            return Err(Refused::new(
                Reason::WrongState,
                format!("officer {officer} already voted on {id}"),
            ));
        }
        Ok(())
    }

    /// Logs an accepted governance vote, then stores it. Called under the governance lock, so
    /// the log's order of votes is the store's.
    async fn record_vote(
        &self,
        principal: &str,
        live: &Live,
        kind: &str,
        request_id: &str,
        msg: &ApprovalMessage,
        approval: &SignedApproval,
    ) -> Result<(), Refused> {
        let stored = StoredApproval {
            request_id: request_id.to_string(),
            officer_id: principal.to_string(),
            approve: msg.verdict == Verdict::Approve,
            message: approval.message.clone(),
            signature: approval.signature.to_vec(),
            received_at: unix(now()),
        };
        let event = Event::GovernanceVote(rec::GovernanceVote {
            request_id: request_id.to_string(),
            approval: evidence(&live.policy, stored.clone()),
        });
        let (id, kind) = (request_id.to_string(), kind.to_string());
        self.commit(principal, move |tx| {
            tx.add_governance_approval(&id, &kind, &stored)?;
            Ok(((), vec![event]))
        })
        .await?;
        Ok(())
    }

    /// `Freeze`: one valid signed approval of `Subject::Freeze` from an officer with a freeze
    /// role stops all signing at once. The freeze's identity is the leaf hash of its record.
    pub(crate) async fn freeze(
        &self,
        principal: &str,
        approval: SignedApproval,
    ) -> Result<kinko_store::FreezeState, Refused> {
        let r = self.freeze_inner(principal, &approval).await;
        self.refusing(principal, &approval, r).await
    }

    async fn freeze_inner(
        &self,
        principal: &str,
        approval: &SignedApproval,
    ) -> Result<kinko_store::FreezeState, Refused> {
        let msg = self.governance_message(principal, approval)?;
        let Subject::Freeze { request_id } = &msg.subject else {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                "the signed subject is not a freeze",
            ));
        };
        // No signing authorization is logged from here until the freeze is in force.
        let _controls = self.controls.write().await;
        let live = self.live();
        self.check_vote(&live, &msg.subject, None, approval)?;
        let reason = format!("freeze {request_id}");
        let event = Event::Freeze(rec::Freeze {
            reason: reason.clone(),
            signed: Some(evidence(
                &live.policy,
                StoredApproval {
                    request_id: request_id.clone(),
                    officer_id: principal.to_string(),
                    approve: true,
                    message: approval.message.clone(),
                    signature: approval.signature.to_vec(),
                    received_at: unix(now()),
                },
            )),
        });
        let state = kinko_store::FreezeState {
            frozen: true,
            by: principal.to_string(),
            reason,
            since: unix(now()),
            freeze_id: Vec::new(),
        };
        // The freeze and its record commit together; its identity is its record's leaf hash.
        let (state, appended) = self
            .commit_with(
                principal,
                move |_| Ok((state, vec![event])),
                |tx, state, placed| {
                    let record = placed.first().ok_or(StoreError::LogClosed)?;
                    state.freeze_id = record.leaf_hash.to_vec();
                    tx.set_freeze(state)
                },
            )
            .await?;
        let appended = appended
            .into_iter()
            .next()
            .ok_or_else(|| Refused::internal("freeze", "no record"))?;
        tracing::warn!(
            by = principal,
            freeze = hex::encode(appended.leaf_hash),
            "signing frozen"
        );
        Ok(state)
    }

    /// `Unfreeze`: adds an officer's signed approval (or veto) to the unfreeze request for the
    /// freeze in force; the freeze lifts once the policy's unfreeze quorum is reached and its
    /// delay has passed, with no valid veto from a freezer.
    pub(crate) async fn unfreeze(
        &self,
        principal: &str,
        approval: SignedApproval,
    ) -> Result<(kinko_store::FreezeState, String), Refused> {
        let r = self.unfreeze_inner(principal, &approval).await;
        self.refusing(principal, &approval, r).await
    }

    async fn unfreeze_inner(
        &self,
        principal: &str,
        approval: &SignedApproval,
    ) -> Result<(kinko_store::FreezeState, String), Refused> {
        let msg = self.governance_message(principal, approval)?;
        let Subject::Unfreeze {
            request_id,
            freeze_id,
        } = msg.subject.clone()
        else {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                "the signed subject is not an unfreeze",
            ));
        };
        let _g = self.governance_lock.lock().await;
        // No freeze lands between the check of the freeze in force and the vote's record.
        let controls = self.controls.read().await;
        let f = self.store.freeze_state()?;
        if !f.frozen {
            return Err(Refused::new(Reason::WrongState, "signing is not frozen"));
        }
        if f.freeze_id.as_slice() != freeze_id.0.as_slice() {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                format!(
                    "the approval lifts freeze {freeze_id}, but the freeze in force is {}",
                    hex::encode(&f.freeze_id)
                ),
            ));
        }
        if let Some(g) = self.store.governance(&request_id)?
            && (g.kind != "unfreeze" || (g.state != "pending" && g.state != "waiting"))
        {
            return Err(Refused::new(
                Reason::WrongState,
                format!(
                    "{} request {request_id} is {}; it never acts again",
                    g.kind, g.state
                ),
            ));
        }
        let live = self.live();
        let msg = self.check_vote(&live, &msg.subject, None, approval)?;
        self.not_voted_yet(&request_id, principal)?;
        self.record_vote(principal, &live, "unfreeze", &request_id, &msg, approval)
            .await?;
        drop(controls);
        let status = self.settle_unfreeze_locked(&request_id).await?;
        let text = serde_json::to_string(&status).unwrap_or_default();
        Ok((self.store.freeze_state()?, text))
    }

    async fn settle_unfreeze(
        &self,
        request_id: &str,
    ) -> Result<kinko_policy::governance::GovernanceStatus, Refused> {
        let _g = self.governance_lock.lock().await;
        self.settle_unfreeze_locked(request_id).await
    }

    /// Evaluates an open unfreeze request from its stored signed approvals against the freeze in
    /// force, and lifts the freeze once it is effective (quorum, delay passed, no veto). A
    /// request that took effect, was vetoed or superseded never acts again. Takes the
    /// governance lock's place: the caller holds it.
    async fn settle_unfreeze_locked(
        &self,
        request_id: &str,
    ) -> Result<kinko_policy::governance::GovernanceStatus, Refused> {
        let live = self.live();
        let g = self
            .store
            .governance(request_id)?
            .ok_or_else(|| Refused::new(Reason::NotFound, "no such unfreeze request"))?;
        let f = self.store.freeze_state()?;
        let status = self.unfreeze_status_of(&live, &g, &f)?;
        if g.state != "pending" && g.state != "waiting" {
            return Ok(status);
        }
        if !f.frozen {
            self.store
                .set_governance_state(request_id, "superseded", None)?;
            return Ok(status);
        }
        let (state, reached_now) = stored_state(&status);
        if !status.is_effective() {
            self.store
                .set_governance_state(request_id, state, reached_now)?;
            return Ok(status);
        }
        {
            // Decided again under the controls lock, from one reading of the freeze in force and
            // of the request: a freeze that landed meanwhile is never lifted by votes for an
            // earlier one, and a request closed meanwhile never acts.
            let _controls = self.controls.write().await;
            let Some(g) = self.store.governance(request_id)? else {
                return Ok(status);
            };
            let f = self.store.freeze_state()?;
            if (g.state != "pending" && g.state != "waiting") || !f.frozen {
                return Ok(status);
            }
            let status = self.unfreeze_status_of(&live, &g, &f)?;
            if !status.is_effective() {
                return Ok(status);
            }
            let stored = self.store.governance_approvals(request_id)?;
            let evidence_list = counted_evidence(&live.policy, &status, stored);
            let event = Event::Unfreeze(rec::Unfreeze {
                reason: format!("unfreeze {request_id}"),
                approvals: evidence_list,
            });
            let id = request_id.to_string();
            self.commit("kinkod", move |tx| {
                tx.set_governance_state(&id, "effective", reached_now)?;
                tx.set_freeze(&kinko_store::FreezeState::default())?;
                Ok(((), vec![event]))
            })
            .await?;
        }
        tracing::warn!(request_id, "signing unfrozen");
        // Requests whose quorum was met while frozen are signed now.
        for r in self.store.list_by_state(RequestState::PendingApproval)? {
            if let Err(e) = Box::pin(self.advance(&r.new.id)).await {
                tracing::info!(request = %r.new.id, reason = e.message, "not signed after unfreeze");
            }
        }
        Ok(status)
    }

    /// Where an unfreeze request stands against the freeze in force, without changing anything.
    fn unfreeze_status_of(
        &self,
        live: &Live,
        g: &kinko_store::Governance,
        f: &kinko_store::FreezeState,
    ) -> Result<kinko_policy::governance::GovernanceStatus, Refused> {
        let freeze_id = FreezeId(f.freeze_id.as_slice().try_into().unwrap_or([0; 32]));
        let approvals = to_signed(&self.store.governance_approvals(&g.id)?)?;
        let reached = g
            .quorum_reached_at
            .and_then(|t| Timestamp::from_second(t).ok());
        Ok(kinko_policy::governance::unfreeze_status(
            &live.policy,
            &g.id,
            freeze_id,
            &approvals,
            reached,
            now(),
        ))
    }

    /// Where an unfreeze request stands, without changing anything.
    pub(crate) fn unfreeze_status(
        &self,
        request_id: &str,
    ) -> Result<kinko_policy::governance::GovernanceStatus, Refused> {
        let g = self
            .store
            .governance(request_id)?
            .ok_or_else(|| Refused::new(Reason::NotFound, "no such unfreeze request"))?;
        let f = self.store.freeze_state()?;
        self.unfreeze_status_of(&self.live(), &g, &f)
    }

    /// `ProposePolicy`: logs and records a proposal (nothing changes until officers approve it).
    pub(crate) async fn propose_policy(
        &self,
        principal: &str,
        text: &str,
    ) -> Result<kinko_store::PolicyProposal, Refused> {
        match self.propose_policy_inner(principal, text).await {
            Ok(p) => Ok(p),
            Err(e) if e.reason == Reason::Internal => Err(e),
            Err(e) => Err(self.refuse(principal, None, e).await),
        }
    }

    async fn propose_policy_inner(
        &self,
        principal: &str,
        text: &str,
    ) -> Result<kinko_store::PolicyProposal, Refused> {
        if text.len() > kinko_policy::MAX_POLICY_BYTES {
            return Err(Refused::new(
                Reason::InvalidRequest,
                format!(
                    "a policy file is at most {} bytes",
                    kinko_policy::MAX_POLICY_BYTES
                ),
            ));
        }
        let proposed = Policy::from_toml(text.as_bytes()).map_err(|e| {
            Refused::new(
                Reason::InvalidRequest,
                format!("the policy does not load: {e}"),
            )
        })?;
        let _g = self.governance_lock.lock().await;
        let live = self.live();
        if proposed.hash() == live.policy.hash() {
            return Err(Refused::new(
                Reason::InvalidRequest,
                "this policy is already in force",
            ));
        }
        // Keys the new policy keeps must be the same keys (same label, same pinned key).
        for k in proposed.keys() {
            check_not_log_key(k, &self.log_key_label)
                .map_err(|e| Refused::new(Reason::InvalidRequest, e))?;
            if let Some(cur) = live.keys.get(&k.name)
                && (cur.hsm_label != k.hsm_label || cur.chain != k.chain)
            {
                return Err(Refused::new(
                    Reason::InvalidRequest,
                    format!(
                        "key {} changes its HSM label or chain; retire it and add a key with a new name",
                        k.name
                    ),
                ));
            }
        }
        let p = kinko_store::PolicyProposal {
            id: format!("policy-{}", &new_request_id()?[4..]),
            policy_hash: proposed.hash().0.to_vec(),
            policy_text: text.to_string(),
            base_policy_hash: live.policy.hash().0.to_vec(),
            proposed_by: principal.to_string(),
            created_at: unix(now()),
        };
        let event = Event::PolicyProposed(rec::PolicyProposed {
            request_id: p.id.clone(),
            policy_hash: HexBytes(p.policy_hash.clone()),
            base_policy_hash: HexBytes(p.base_policy_hash.clone()),
            proposer: principal.to_string(),
        });
        let proposal = p.clone();
        self.commit(principal, move |tx| {
            tx.insert_policy_proposal(&proposal)?;
            Ok(((), vec![event]))
        })
        .await?;
        tracing::info!(proposal = p.id, by = principal, "policy proposed");
        Ok(p)
    }

    /// `ApprovePolicy`: adds an officer's signed approval (or veto) of a proposal, then
    /// installs it if it is effective.
    pub(crate) async fn approve_policy(
        &self,
        principal: &str,
        approval: SignedApproval,
    ) -> Result<ProposalStatus, Refused> {
        let r = self.approve_policy_inner(principal, &approval).await;
        self.refusing(principal, &approval, r).await
    }

    async fn approve_policy_inner(
        &self,
        principal: &str,
        approval: &SignedApproval,
    ) -> Result<ProposalStatus, Refused> {
        let msg = self.governance_message(principal, approval)?;
        let Subject::InstallPolicy {
            request_id,
            new_policy_hash,
        } = msg.subject.clone()
        else {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                "the signed subject is not a policy installation",
            ));
        };
        let _g = self.governance_lock.lock().await;
        let proposal = self.store.policy_proposal(&request_id)?.ok_or_else(|| {
            Refused::new(Reason::NotFound, format!("no policy proposal {request_id}"))
        })?;
        if new_policy_hash.0.as_slice() != proposal.policy_hash.as_slice() {
            return Err(Refused::new(
                Reason::ApprovalInvalid,
                "the approval names another policy hash than the proposal's",
            ));
        }
        let live = self.live();
        let g = self.store.governance(&request_id)?;
        let state = g.as_ref().map_or("unknown", |g| g.state.as_str());
        if state != "pending" && state != "waiting" {
            return Err(Refused::new(
                Reason::WrongState,
                format!("proposal {request_id} is {state}; it never acts again"),
            ));
        }
        if proposal.base_policy_hash != live.policy.hash().0.to_vec() {
            self.store
                .set_governance_state(&request_id, "superseded", None)?;
            return Err(Refused::new(
                Reason::WrongState,
                format!("proposal {request_id} was made under another policy and is superseded"),
            ));
        }
        let msg = self.check_vote(&live, &msg.subject, Some(&proposal.proposed_by), approval)?;
        self.not_voted_yet(&request_id, principal)?;
        self.record_vote(
            principal,
            &live,
            "install_policy",
            &request_id,
            &msg,
            approval,
        )
        .await?;
        self.settle_policy_locked(&request_id).await
    }

    /// Where a proposal stands, without changing anything (a read never installs: the
    /// background step does, once the time-lock has passed).
    pub(crate) fn policy_proposal(&self, id: &str) -> Result<ProposalStatus, Refused> {
        let live = self.live();
        let proposal = self
            .store
            .policy_proposal(id)?
            .ok_or_else(|| Refused::new(Reason::NotFound, format!("no policy proposal {id}")))?;
        let g = self
            .store
            .governance(id)?
            .ok_or_else(|| Refused::new(Reason::NotFound, format!("no policy proposal {id}")))?;
        let mut out = ProposalStatus {
            proposal: proposal.clone(),
            state: if g.state == "effective" {
                "installed".into()
            } else {
                g.state.clone()
            },
            status: None,
            current_policy_hash: live.policy.hash().0.to_vec(),
        };
        if g.state != "pending" && g.state != "waiting" {
            return Ok(out);
        }
        if proposal.base_policy_hash != live.policy.hash().0.to_vec() {
            out.state = "superseded".into();
            return Ok(out);
        }
        let status = self.install_status_of(&live, &proposal, &g)?;
        out.state = match &status {
            kinko_policy::governance::GovernanceStatus::PendingQuorum { .. } => "pending",
            kinko_policy::governance::GovernanceStatus::Vetoed { .. } => "vetoed",
            _ => "waiting",
        }
        .into();
        out.status = Some(status);
        Ok(out)
    }

    fn install_status_of(
        &self,
        live: &Live,
        proposal: &kinko_store::PolicyProposal,
        g: &kinko_store::Governance,
    ) -> Result<kinko_policy::governance::GovernanceStatus, Refused> {
        let approvals = to_signed(&self.store.governance_approvals(&proposal.id)?)?;
        let hash: [u8; 32] = proposal
            .policy_hash
            .as_slice()
            .try_into()
            .map_err(|_| Refused::internal("stored policy hash length", proposal.id.clone()))?;
        let reached = g
            .quorum_reached_at
            .and_then(|t| Timestamp::from_second(t).ok());
        Ok(kinko_policy::governance::install_status(
            &live.policy,
            &proposal.id,
            kinko_policy::PolicyHash(hash),
            &proposal.proposed_by,
            &approvals,
            reached,
            now(),
        ))
    }

    async fn settle_policy(&self, id: &str) -> Result<ProposalStatus, Refused> {
        let _g = self.governance_lock.lock().await;
        self.settle_policy_locked(id).await
    }

    /// Records where an open proposal stands and installs it once effective. The caller holds
    /// the governance lock.
    async fn settle_policy_locked(&self, id: &str) -> Result<ProposalStatus, Refused> {
        let mut out = self.policy_proposal(id)?;
        let (Some(status), "pending" | "waiting" | "vetoed") =
            (out.status.clone(), out.state.as_str())
        else {
            if out.state == "superseded" {
                self.store.set_governance_state(id, "superseded", None)?;
            }
            return Ok(out);
        };
        let (state, reached_now) = stored_state(&status);
        if !status.is_effective() {
            self.store.set_governance_state(id, state, reached_now)?;
            out.state = state.into();
            return Ok(out);
        }
        self.store
            .set_governance_state(id, "waiting", reached_now)?;
        let live = self.live();
        let stored = self.store.governance_approvals(id)?;
        let evidence_list = counted_evidence(&live.policy, &status, stored);
        self.install(&live, &out.proposal, evidence_list).await?;
        out.state = "installed".into();
        out.current_policy_hash = out.proposal.policy_hash.clone();
        Ok(out)
    }

    /// Installs an approved proposal: new keys are created in the HSM, everything is logged
    /// first, then the store records it, the engine switches, and the policy file is rewritten.
    /// `evidence_list` holds the approvals that counted (each verified when received).
    async fn install(
        &self,
        live: &Live,
        proposal: &kinko_store::PolicyProposal,
        evidence_list: Vec<rec::Approval>,
    ) -> Result<(), Refused> {
        let mut policy = Policy::from_toml(proposal.policy_text.as_bytes())
            .map_err(|e| Refused::internal("approved policy no longer loads", e))?;
        let (keys, created) = load_keys(&self.hsm, &policy, true)
            .await
            .map_err(|e| Refused::new(Reason::HsmUnavailable, e))?;
        // No signing authorization is logged between the installation record and the switch.
        let _controls = self.controls.write().await;
        if self.live().policy.hash() != live.policy.hash() {
            return Err(Refused::new(
                Reason::WrongState,
                "another policy was installed meanwhile",
            ));
        }
        // Every key the new policy adds gets its record — generated now, generated by an
        // earlier attempt that failed before logging, or provisioned on the token beforehand.
        let _ = created;
        let mut added: Vec<&String> = keys
            .keys()
            .filter(|name| !live.keys.contains_key(*name))
            .collect();
        added.sort();
        let mut events = Vec::new();
        for name in added {
            if let Some(k) = keys.get(name) {
                events.push(Event::KeyCreated(rec::KeyCreated {
                    key_name: k.name.clone(),
                    chain: k.chain,
                    public_key: HexBytes(k.public_key.clone()),
                    address: k.address.clone(),
                    approvals: evidence_list.clone(),
                }));
            }
        }
        events.push(Event::PolicyInstalled(rec::PolicyInstalled {
            policy_hash: HexBytes(proposal.policy_hash.clone()),
            policy_text: proposal.policy_text.clone(),
            approvals: evidence_list,
        }));
        let installed_at = now();
        let installed = kinko_store::InstalledPolicy {
            policy_hash: proposal.policy_hash.clone(),
            policy_text: proposal.policy_text.clone(),
            proposal_id: Some(proposal.id.clone()),
            installed_at: unix(installed_at),
        };
        // The keys' records, the installation's record and the installation: one commit.
        self.commit("kinkod", move |tx| {
            tx.install_policy(&installed)?;
            Ok(((), events))
        })
        .await?;
        // Entries it adds to address books count from now, whatever `added_at` they claim.
        policy.settle_added_at(
            Some(&live.policy),
            Timestamp::from_second(unix(installed_at)).unwrap_or(installed_at),
        );
        let new = Arc::new(Live {
            policy: Arc::new(policy),
            keys,
        });
        match self.live.write() {
            Ok(mut l) => *l = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        tracing::warn!(proposal = proposal.id, "policy installed");
        if let Err(e) = write_atomically(&self.policy_path, proposal.policy_text.as_bytes()) {
            tracing::error!(
                path = %self.policy_path.display(),
                error = %e,
                "the installed policy could not be written to the policy file; kinkod will refuse to start until the file holds it (kinkod installed-policy --config ... prints it)"
            );
        }
        Ok(())
    }

    /// Background duties: lift unfreezes and install policies whose delay has passed, and
    /// expire requests left pending too long.
    pub(crate) async fn tick(&self) -> Result<(), Refused> {
        // A checkpoint at least every interval while the log grows.
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.checkpoint_if_due()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "periodic checkpoint failed"),
            Err(e) => tracing::error!(error = %e, "periodic checkpoint task failed"),
        }
        // Requests whose signing step could not be committed (the history was unwritable) are
        // tried again: none is stranded with its quorum met.
        if self
            .retry_pending
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            for r in self.store.list_by_state(RequestState::PendingApproval)? {
                if let Err(e) = Box::pin(self.advance(&r.new.id)).await {
                    tracing::info!(request = %r.new.id, reason = e.message, "not signed on retry");
                }
            }
        }
        // Every request waiting out its delay, not only the newest; one that fails to settle
        // does not stop the others, nor expiry below.
        for kind in ["unfreeze", "install_policy"] {
            for g in self.store.waiting_governance(kind)? {
                let r = if kind == "unfreeze" {
                    self.settle_unfreeze(&g.id).await.map(|_| ())
                } else {
                    self.settle_policy(&g.id).await.map(|_| ())
                };
                if let Err(e) = r {
                    tracing::warn!(
                        request = g.id,
                        reason = e.message,
                        "governance request not settled"
                    );
                }
            }
        }
        let before = unix(now()).saturating_sub(self.limits.pending_expiry_secs);
        for id in self.store.pending_created_before(before)? {
            let reason = format!(
                "no quorum within {} s of submission",
                self.limits.pending_expiry_secs
            );
            let event = Event::Refusal(rec::Refusal {
                request_id: Some(id.clone()),
                code: "EXPIRED".into(),
                message: reason.clone(),
            });
            let expiring = id.clone();
            let r = self
                .commit("kinkod", move |tx| {
                    tx.transition(
                        &expiring,
                        &[RequestState::PendingApproval],
                        RequestState::Expired,
                        Some(&reason),
                        unix(now()),
                    )?;
                    Ok(((), vec![event]))
                })
                .await;
            match r {
                Ok(_) => self.notify(&id),
                // Signed or cancelled in the meantime: nothing to expire.
                Err(e) => tracing::debug!(request = id, error = e.message, "not expired"),
            }
        }
        Ok(())
    }

    fn governance_message(
        &self,
        principal: &str,
        approval: &SignedApproval,
    ) -> Result<ApprovalMessage, Refused> {
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
        Ok(msg)
    }

    pub(crate) fn keys(&self) -> Vec<KeyInfo> {
        self.live().keys.values().cloned().collect()
    }

    /// Checks the store against the log before anything is signed (the log outranks the store):
    /// the freeze in force must be the log's (an edited or deleted freeze row never resumes
    /// signing), and every request the log shows signed must be signed in the store and still
    /// hold the claims of its replay keys and digests (deleted claims never let a nonce, an
    /// outpoint or a transaction be signed again). Run after [`Engine::recover`]. On any
    /// disagreement, says what differs.
    pub(crate) fn check_store_against_log(&self, facts: &LogFacts) -> Result<(), String> {
        let (frozen, signed) = (facts.frozen, &facts.signed);
        let restore = "the store was edited or replaced behind kinkod: restore it from backup (docs/incident-response.md); kinkod will not sign until store and log agree";
        let f = self.store.freeze_state().map_err(|e| e.to_string())?;
        match frozen {
            Some((seq, id)) if !f.frozen => {
                // The freeze is logged but the store lost it (a failed write, or an edit):
                // applying it only makes signing stricter, so the log's freeze is restored.
                tracing::error!(
                    freeze_record = seq,
                    "the audit log says signing is frozen but the store does not: the freeze is restored from the log"
                );
                self.store
                    .set_freeze(&kinko_store::FreezeState {
                        frozen: true,
                        by: "kinkod (restored from the audit log)".into(),
                        reason: format!("freeze record {seq}"),
                        since: unix(now()),
                        freeze_id: id.to_vec(),
                    })
                    .map_err(|e| e.to_string())?;
            }
            Some((seq, id)) if f.freeze_id.is_empty() => {
                // Frozen before freeze ids were recorded (an upgrade): the log names it.
                tracing::warn!(
                    freeze_record = seq,
                    "the freeze in force takes its id from the audit log"
                );
                self.store
                    .set_freeze(&kinko_store::FreezeState {
                        freeze_id: id.to_vec(),
                        ..f.clone()
                    })
                    .map_err(|e| e.to_string())?;
            }
            Some((seq, id)) if f.freeze_id.as_slice() != id.as_slice() => {
                return Err(format!(
                    "the audit log says signing is frozen (freeze record {seq}, id {}), but the store names another freeze ({}); {restore}",
                    hex::encode(id),
                    hex::encode(&f.freeze_id)
                ));
            }
            Some(_) => {}
            None if f.frozen => {
                return Err(format!(
                    "the store says signing is frozen, but the audit log shows no freeze in force; {restore}"
                ));
            }
            _ => {}
        }
        self.check_requests_against_log(facts, restore)?;
        for (seq, id, claims) in signed {
            let Claims {
                key,
                replay_keys,
                digests,
            } = claims;
            match self.store.get_request(id) {
                Ok(r) if r.state == RequestState::Signed => {}
                Ok(r) => {
                    return Err(format!(
                        "request {id} is {} in the store, but the audit log shows it signed (record {seq}); {restore}",
                        r.state
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "request {id}, signed according to the audit log (record {seq}), is not in the store; {restore}"
                    ));
                }
            }
            for (what, values) in [("replay key", replay_keys), ("digest", digests)] {
                for v in values {
                    let holder = self
                        .store
                        .claim_holder(what == "digest", key, v)
                        .map_err(|e| e.to_string())?;
                    if holder.as_deref() != Some(id.as_str()) {
                        return Err(format!(
                            "the store lacks the claim of {what} {v} of key {key}, which request {id} signed (audit record {seq}){}; {restore}",
                            holder
                                .map(|h| format!(" (held by {h})"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every request, verdict and claim of the store must be what the log shows: a request the
    /// log never received, or in a state the log does not show, a verdict or a claim not in the
    /// log, or a logged request missing from the store, refuses start.
    fn check_requests_against_log(&self, facts: &LogFacts, restore: &str) -> Result<(), String> {
        let states = self.store.all_request_states().map_err(|e| e.to_string())?;
        let mut in_store = std::collections::HashSet::new();
        for (id, state) in &states {
            in_store.insert(id.as_str());
            let Some(logged) = facts.requests.get(id) else {
                return Err(format!(
                    "request {id} ({state}) is in the store, but the audit log never received it; {restore}"
                ));
            };
            if !logged.allows(*state) {
                return Err(format!(
                    "request {id} is {state} in the store, but the audit log shows it {}; {restore}",
                    logged.describe()
                ));
            }
        }
        let mut missing: Vec<&String> = facts
            .requests
            .keys()
            .filter(|id| !in_store.contains(id.as_str()))
            .collect();
        missing.sort();
        if let Some(id) = missing.first() {
            return Err(format!(
                "request {id} is in the audit log but not in the store ({} such); {restore}",
                missing.len()
            ));
        }
        for kinko_store::StoredVerdict {
            governance,
            request_id: request,
            officer_id: officer,
            message,
        } in self.store.all_verdicts().map_err(|e| e.to_string())?
        {
            let logged = if governance {
                &facts.governance_votes
            } else {
                &facts.verdicts
            };
            if !logged.contains(&(request.clone(), officer.clone(), message)) {
                return Err(format!(
                    "the store holds a {}verdict of officer {officer} on {request} that is not in the audit log; {restore}",
                    if governance { "governance " } else { "" }
                ));
            }
        }
        for kinko_store::StoredClaim {
            digest,
            key_name: key,
            value,
            request_id: request,
        } in self.store.all_claims().map_err(|e| e.to_string())?
        {
            let what = if digest { "digest" } else { "replay key" };
            let held = facts.authorized.get(&request).is_some_and(|c| {
                c.key == key
                    && if digest {
                        c.digests.contains(&value)
                    } else {
                        c.replay_keys.contains(&value)
                    }
            });
            if !held {
                return Err(format!(
                    "the store holds a claim of {what} {value} of key {key} for request {request}, which the audit log never authorized; {restore}"
                ));
            }
        }
        Ok(())
    }

    /// Reads the whole log once at start: the freeze in force, every signed request with its
    /// claims, and the `signature_produced` records of the requests the store left in
    /// `signing` (for [`Engine::recover`] and [`Engine::check_store_against_log`]).
    pub(crate) fn read_log(&self) -> Result<LogFacts, String> {
        let stuck: std::collections::HashSet<String> = self
            .store
            .list_by_state(RequestState::Signing)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| r.new.id)
            .collect();
        let mut facts = LogFacts::default();
        let mut from = 0u64;
        loop {
            let lines = self
                .store
                .read_log_lines(from, 4096)
                .map_err(|e| format!("reading the audit log: {e}"))?;
            if lines.is_empty() {
                break;
            }
            for line in &lines {
                let record = rec::Record::decode(line.as_bytes())
                    .map_err(|e| format!("audit record {from}: {e}"))?;
                match record.event {
                    Event::Freeze(_) => {
                        facts.frozen =
                            Some((from, kinko_audit::merkle::leaf_hash(line.as_bytes())));
                    }
                    Event::Unfreeze(_) => facts.frozen = None,
                    Event::RequestReceived(r) => {
                        facts.requests.entry(r.request_id).or_default();
                    }
                    Event::Decision(d) => {
                        if matches!(d.outcome, rec::Outcome::Deny)
                            && let Some(l) = facts.requests.get_mut(&d.request_id)
                        {
                            l.denied = true;
                        }
                    }
                    Event::Approval(a) => {
                        facts.verdicts.insert((
                            a.request_id,
                            a.approval.officer,
                            a.approval.message.0,
                        ));
                    }
                    Event::Rejection(r) => {
                        if let Some(signed) = r.signed {
                            facts.verdicts.insert((
                                r.request_id.clone(),
                                signed.officer,
                                signed.message.0,
                            ));
                        }
                        if let Some(l) = facts.requests.get_mut(&r.request_id) {
                            l.rejected = true;
                        }
                    }
                    Event::GovernanceVote(v) => {
                        facts.governance_votes.insert((
                            v.request_id,
                            v.approval.officer,
                            v.approval.message.0,
                        ));
                    }
                    Event::Cancelled(c) => {
                        if let Some(l) = facts.requests.get_mut(&c.request_id) {
                            l.cancelled = true;
                        }
                    }
                    Event::Refusal(rec::Refusal {
                        request_id: Some(id),
                        code,
                        ..
                    }) => {
                        // Refusals name governance requests too: only withdrawals count here.
                        if let Some(l) = facts.requests.get_mut(&id) {
                            match code.as_str() {
                                "EXPIRED" => l.expired = true,
                                "SIGNING_FAILED" => l.failed = true,
                                _ => {}
                            }
                        }
                    }
                    Event::SigningAuthorized(a) => {
                        let intent = a
                            .intent
                            .check()
                            .map_err(|e| format!("audit record {from}: {e}"))?;
                        facts
                            .requests
                            .entry(a.request_id.clone())
                            .or_default()
                            .authorized = true;
                        facts.authorized.insert(
                            a.request_id,
                            Claims {
                                key: a.key_name,
                                digests: claim_digests(&intent.to_sign),
                                replay_keys: intent.replay_keys,
                            },
                        );
                    }
                    Event::SignatureProduced(p) => {
                        facts
                            .requests
                            .entry(p.request_id.clone())
                            .or_default()
                            .produced = true;
                        if let Some(claims) = facts.authorized.get(&p.request_id) {
                            facts
                                .signed
                                .push((from, p.request_id.clone(), claims.clone()));
                        }
                        if stuck.contains(&p.request_id) {
                            facts.produced.insert(p.request_id.clone(), p);
                        }
                    }
                    _ => {}
                }
                from += 1;
            }
        }
        Ok(facts)
    }

    /// Requests left in `signing` by a crash. The log outranks the store: a request whose
    /// `signature_produced` record is in the log was signed — its signed transaction may already
    /// be out (the log is streamed to auditors) — so it is restored as signed, never reported
    /// failed (a resubmission would be a second valid transaction). The others were authorized
    /// and maybe signed by the HSM, but no signature ever left the process: they are failed
    /// explicitly, and their nonces stay claimed so no conflicting transaction is signed.
    /// Returns (restored, failed).
    pub(crate) fn recover(&self, facts: &LogFacts) -> Result<(usize, usize), String> {
        let stuck = self
            .store
            .list_by_state(RequestState::Signing)
            .map_err(|e| e.to_string())?;
        let produced = &facts.produced;
        let (mut restored, mut failed) = (0, 0);
        for r in &stuck {
            let id = r.new.id.as_str();
            match produced.get(id).and_then(|p| {
                p.signed_payload
                    .as_ref()
                    .map(|s| (s, p.transaction_id.clone()))
            }) {
                Some((signed, txid)) => {
                    self.store
                        .record_signed(id, &signed.0, txid.as_deref().unwrap_or(""), unix(now()))
                        .map_err(|e| e.to_string())?;
                    tracing::warn!(
                        request = id,
                        "restored as signed from its signature_produced record"
                    );
                    restored += 1;
                }
                None => {
                    let why = "kinkod stopped between authorization and signature; no signature left the signer (none is in the audit log); the nonce stays claimed: resubmit with a new nonce after checking the chain";
                    self.store
                        .commit("kinkod", |tx| {
                            tx.transition(
                                id,
                                &[RequestState::Signing],
                                RequestState::Failed,
                                Some(why),
                                unix(now()),
                            )?;
                            let event = Event::Refusal(rec::Refusal {
                                request_id: Some(id.to_string()),
                                code: "SIGNING_FAILED".into(),
                                message: why.into(),
                            });
                            Ok(((), vec![event]))
                        })
                        .map_err(|e| e.to_string())?;
                    failed += 1;
                }
            }
        }
        Ok((restored, failed))
    }
}

/// What the log says at start (see [`Engine::read_log`]).
#[derive(Default)]
pub(crate) struct LogFacts {
    /// The freeze in force: its record's sequence number and leaf hash.
    frozen: Option<(u64, [u8; 32])>,
    /// Every signed request: the `signature_produced` record's sequence number, the request id
    /// and what it claimed.
    signed: Vec<(u64, String, Claims)>,
    /// The `signature_produced` records of the requests the store left in `signing`.
    produced: HashMap<String, rec::SignatureProduced>,
    /// What the log shows of each request it received.
    requests: HashMap<String, Logged>,
    /// What each authorized request claimed.
    authorized: HashMap<String, Claims>,
    /// Every logged withdrawal verdict: (request id, officer, signed message).
    verdicts: std::collections::HashSet<(String, String, Vec<u8>)>,
    /// Every logged governance vote: (governance request id, officer, signed message).
    governance_votes: std::collections::HashSet<(String, String, Vec<u8>)>,
}

/// What the log shows of one request.
#[derive(Default, Debug)]
struct Logged {
    denied: bool,
    rejected: bool,
    cancelled: bool,
    expired: bool,
    failed: bool,
    authorized: bool,
    produced: bool,
}

impl Logged {
    /// Whether a request the store holds in `state` agrees with this.
    fn allows(&self, state: RequestState) -> bool {
        let closed = self.denied
            || self.cancelled
            || self.expired
            || self.failed
            || self.authorized
            || self.produced;
        match state {
            RequestState::Denied => self.denied,
            RequestState::Cancelled => self.cancelled,
            RequestState::Expired => self.expired,
            RequestState::Signed => self.produced,
            RequestState::Failed => !self.produced,
            RequestState::Rejected => self.rejected && !self.authorized,
            RequestState::Signing => self.authorized && !self.produced,
            _ => !closed,
        }
    }

    /// What the log shows, in words.
    fn describe(&self) -> String {
        let mut what = Vec::new();
        for (flag, name) in [
            (self.denied, "denied"),
            (self.rejected, "rejected by an officer"),
            (self.cancelled, "cancelled"),
            (self.expired, "expired"),
            (self.failed, "failed"),
            (self.authorized, "authorized for signing"),
            (self.produced, "signed"),
        ] {
            if flag {
                what.push(name);
            }
        }
        if what.is_empty() {
            "received and pending approval".into()
        } else {
            what.join(", ")
        }
    }
}

/// What a signed request holds in the store: its key, replay keys and digests.
#[derive(Clone)]
struct Claims {
    key: String,
    replay_keys: Vec<String>,
    digests: Vec<String>,
}

/// The digests a signing claims in the store: the prehash for ECDSA, the SHA-256 of the message
/// (as hex) for Ed25519.
fn claim_digests(to_sign: &[SigningInput]) -> Vec<String> {
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

/// How a governance status is stored: its state name, and the quorum instant when reached.
fn stored_state(
    status: &kinko_policy::governance::GovernanceStatus,
) -> (&'static str, Option<i64>) {
    use kinko_policy::governance::GovernanceStatus as G;
    match status {
        G::PendingQuorum { .. } => ("pending", None),
        G::Vetoed { .. } => ("vetoed", None),
        G::Waiting { .. } => ("waiting", Some(unix(now()))),
        G::Effective { .. } => ("effective", Some(unix(now()))),
    }
}

/// Where a policy proposal stands.
pub(crate) struct ProposalStatus {
    pub(crate) proposal: kinko_store::PolicyProposal,
    /// pending | waiting | installed | effective | vetoed | superseded
    pub(crate) state: String,
    pub(crate) status: Option<kinko_policy::governance::GovernanceStatus>,
    pub(crate) current_policy_hash: Vec<u8>,
}

/// The approvals that counted toward a governance change's quorum, as audit evidence.
fn counted_evidence(
    policy: &Policy,
    status: &kinko_policy::governance::GovernanceStatus,
    stored: Vec<StoredApproval>,
) -> Vec<rec::Approval> {
    use kinko_policy::governance::GovernanceStatus as G;
    let counted: Vec<usize> = match status {
        G::Waiting { quorum, .. } | G::Effective { quorum, .. } => {
            quorum.counted.iter().map(|c| c.index).collect()
        }
        _ => Vec::new(),
    };
    stored
        .into_iter()
        .enumerate()
        .filter(|(i, _)| counted.contains(i))
        .map(|(_, a)| evidence(policy, a))
        .collect()
}

fn subject_kind(subject: &Subject) -> &'static str {
    match subject {
        Subject::Withdrawal { .. } => "withdrawal",
        Subject::InstallPolicy { .. } => "policy installation",
        Subject::Freeze { .. } => "freeze",
        Subject::Unfreeze { .. } => "unfreeze",
    }
}

/// An approval as audit evidence: the signed bytes and the officer's key in `policy`.
fn evidence(policy: &Policy, a: StoredApproval) -> rec::Approval {
    rec::Approval {
        public_key: HexBytes(
            policy
                .officer(&a.officer_id)
                .map(|o| o.public_key.to_bytes().to_vec())
                .unwrap_or_default(),
        ),
        officer: a.officer_id,
        message: HexBytes(a.message),
        signature: HexBytes(a.signature),
    }
}

/// A signing key never shares its HSM label with the audit log's key (it would sign
/// withdrawals with the key that signs the log's checkpoints, or the reverse).
pub(crate) fn check_not_log_key(
    k: &kinko_policy::KeyEntry,
    log_key_label: &str,
) -> Result<(), String> {
    if k.hsm_label == log_key_label {
        return Err(format!(
            "signing key {} uses HSM label {:?}, the audit log key's label; give it its own",
            k.name, k.hsm_label
        ));
    }
    Ok(())
}

/// The policy in force with its address-book entries' effective times: the installed policies
/// replayed oldest first, each governance installation counting its new entries from the moment
/// it was installed ([`Policy::settle_added_at`]). `current` is the last one, as loaded from the
/// policy file.
pub(crate) fn settled_policy(
    mut current: Policy,
    history: &[kinko_store::InstalledPolicy],
) -> Policy {
    let Some((last, earlier)) = history.split_last() else {
        return current;
    };
    let mut previous: Option<Policy> = None;
    for (i, p) in earlier.iter().enumerate() {
        let mut policy = Policy::from_toml(p.policy_text.as_bytes()).ok();
        if i > 0
            && let Some(policy) = policy.as_mut()
        {
            let at = Timestamp::from_second(p.installed_at).unwrap_or(Timestamp::MAX);
            policy.settle_added_at(previous.as_ref(), at);
        }
        previous = policy;
    }
    if !earlier.is_empty() {
        let at = Timestamp::from_second(last.installed_at).unwrap_or(Timestamp::MAX);
        current.settle_added_at(previous.as_ref(), at);
    }
    current
}

/// Reads each signing key the policy names from the HSM, checking any pinned public key; with
/// `create_missing`, generates the keys the HSM does not have yet (returned by name).
pub(crate) async fn load_keys(
    hsm: &Hsm,
    policy: &Policy,
    create_missing: bool,
) -> Result<(HashMap<String, KeyInfo>, Vec<String>), String> {
    let mut keys = HashMap::new();
    let mut created = Vec::new();
    for k in policy.keys() {
        let pk = match hsm.public_key(&k.hsm_label).await {
            Ok(pk) => pk,
            Err(kinko_hsm::HsmError::KeyNotFound(_)) if create_missing => {
                let kind = match k.chain {
                    Chain::Solana => kinko_hsm::KeyKind::Ed25519,
                    Chain::Ethereum | Chain::Bitcoin => kinko_hsm::KeyKind::Secp256k1,
                };
                let pk = hsm.generate_key(&k.hsm_label, kind).await.map_err(|e| {
                    format!("creating key {} (HSM label {}): {e}", k.name, k.hsm_label)
                })?;
                created.push(k.name.clone());
                pk
            }
            Err(e) => {
                return Err(format!(
                    "signing key {} (HSM label {}): {e}",
                    k.name, k.hsm_label
                ));
            }
        };
        let public_key = pk.to_bytes();
        if let Some(pinned) = &k.public_key
            && *pinned != public_key
        {
            return Err(format!(
                "signing key {} (HSM label {}): the HSM holds public key {}, but the policy pins {}; refusing to use a key the officers did not approve",
                k.name,
                k.hsm_label,
                hex::encode(&public_key),
                hex::encode(pinned)
            ));
        }
        let address =
            kinko_chain::address_of(k.chain, k.network.as_str(), &public_key).unwrap_or_default();
        keys.insert(
            k.name.clone(),
            KeyInfo {
                name: k.name.clone(),
                chain: k.chain,
                network: k.network.clone(),
                hsm_label: k.hsm_label.clone(),
                public_key,
                address,
            },
        );
    }
    Ok((keys, created))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("toml.new");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Parses `AssetId`'s display form (`ethereum:native`, `ethereum:0xa0b8…`).
fn parse_asset_id(s: &str) -> Option<kinko_policy::AssetId> {
    let (chain, rest) = s.split_once(':')?;
    let chain: Chain = chain.parse().ok()?;
    Some(if rest == "native" {
        kinko_policy::AssetId::Native(chain)
    } else {
        kinko_policy::AssetId::Token(chain, rest.to_string())
    })
}

/// Stored verdicts as the signed messages the quorum evaluation takes.
fn to_signed(stored: &[StoredApproval]) -> Result<Vec<SignedApproval>, Refused> {
    stored
        .iter()
        .map(|a| {
            let signature: [u8; 64] = a.signature.as_slice().try_into().map_err(|_| {
                Refused::internal("stored approval signature length", a.officer_id.clone())
            })?;
            Ok(SignedApproval {
                message: a.message.clone(),
                signature,
            })
        })
        .collect()
}

fn new_request_id() -> Result<String, Refused> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Refused::internal("random request id", e))?;
    Ok(format!("req-{}", hex::encode(b)))
}

//! The request lifecycle, top to bottom:
//! requester signature → decode → policy → store → audit; approvals → quorum; then, atomically
//! for signing: freeze check → re-decode → re-evaluate the policy in force now → re-verify every
//! approval from its signed bytes → claim nonces, digests and velocity → durable *signing
//! authorized* record → HSM → verify → finalize → *signature produced* → signed.
//!
//! Nothing here trusts a stored flag: the signing step recomputes everything from the payload
//! and the officers' signatures.
//!
//! One module per step of the path: [`submit`] → [`approve`] → [`sign`]; [`governance`]
//! (freezes, unfreezes, policy changes, the background tick), [`startup`] (recovery and the
//! store checked against the log) and [`keys`] apart. Every step changes state only through
//! [`Engine::commit`]: its state change and its audit records in one transaction.

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
    VelocityLedger, Verdict, WithPending, evaluate, evaluate_quorum, velocity_entries,
};
use kinko_proto::validate::Submission;
use kinko_store::log::Appended;
use kinko_store::{
    Inserted, NewRequest, Request, RequestState, Reservation, SigningClaim, Store, StoreError,
    StoredApproval, Tx,
};
use tokio::sync::broadcast;

use crate::status::{Reason, Refused};

mod approve;
mod governance;
mod keys;
mod sign;
mod startup;
mod submit;

pub(crate) use governance::write_atomically;
pub(crate) use governance::{ProposalStatus, settled_policy};
pub(crate) use keys::{check_not_log_key, load_keys};
pub(crate) use sign::claim_digests;

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
    /// Every replica's velocity reservations (the longest window a policy may use), kept up
    /// with the store by reservation number: see [`Velocity`].
    velocity: Arc<Mutex<Velocity>>,
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
    /// Where this kinkod keeps the newest checkpoint it has seen, and that checkpoint's size
    /// (a database restored from an older backup is refused at start against it).
    seen_checkpoint: Option<(std::path::PathBuf, std::sync::atomic::AtomicU64)>,
    /// This kinkod's name among replicas (its claims carry it; recovery fails only its own).
    replica: String,
    /// The witnesses that cosign the log's checkpoints, when configured.
    witnessing: Option<Arc<crate::witnessing::Witnessing>>,
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
            velocity: Arc::new(Mutex::new(Velocity::default())),
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
            seen_checkpoint: None,
            replica: String::new(),
            witnessing: None,
        };
        engine.load_velocity()?;
        Ok(engine)
    }

    /// Sets the audit log key's HSM label, which no signing key of a proposed policy may use.
    /// Names this kinkod among replicas.
    pub(crate) fn with_replica(mut self, name: &str) -> Self {
        self.replica = name.to_string();
        self
    }

    /// Asks these witnesses to cosign the log's checkpoints.
    pub(crate) fn with_witnessing(mut self, w: Option<Arc<crate::witnessing::Witnessing>>) -> Self {
        self.witnessing = w;
        self
    }

    /// The witnesses, when configured.
    pub(crate) fn witnessing(&self) -> Option<&Arc<crate::witnessing::Witnessing>> {
        self.witnessing.as_ref()
    }

    /// Keeps the newest checkpoint seen in `path` (of size `size` now).
    pub(crate) fn with_seen_checkpoint(mut self, path: std::path::PathBuf, size: u64) -> Self {
        self.seen_checkpoint = Some((path, std::sync::atomic::AtomicU64::new(size)));
        self
    }

    /// Writes the newest checkpoint to the seen-checkpoint file when it grew (the tick calls
    /// it; the file lags the log by at most one tick).
    pub(crate) fn remember_checkpoint(&self) {
        let Some((path, seen)) = &self.seen_checkpoint else {
            return;
        };
        let Some((size, note)) = self.store.latest_checkpoint_sized() else {
            return;
        };
        if size <= seen.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        match write_atomically(path, note.as_bytes()) {
            Ok(()) => seen.store(size, std::sync::atomic::Ordering::SeqCst),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "could not keep the newest checkpoint seen")
            }
        }
    }

    pub(crate) fn with_log_key_label(mut self, label: &str) -> Self {
        self.log_key_label = label.to_string();
        self
    }

    /// Rebuilds the in-memory velocity ledger from the store's reservations of the longest
    /// window a policy may use, and notes the newest reservation's number.
    fn load_velocity(&self) -> Result<(), String> {
        let since = unix(now()) - kinko_policy::MAX_DURATION_SECS;
        let (reservations, last) = self
            .store
            .reservations_since_with_last(since)
            .map_err(|e| e.to_string())?;
        let mut v = self.velocity.lock().map_err(|_| "velocity lock poisoned")?;
        *v = Velocity::default();
        for r in &reservations {
            v.record(r).map_err(|e| e.to_string())?;
        }
        v.seen = last;
        Ok(())
    }

    /// The velocity ledger, caught up with every reservation committed since it last looked
    /// (this replica's and the others'): one indexed read of what is new.
    ///
    /// Lock order: the store, then this ledger (the claim's transaction takes it inside the
    /// store's). So the store is read here before the ledger is locked, and callers must not
    /// call the store while they hold the guard.
    fn velocity(&self) -> Result<std::sync::MutexGuard<'_, Velocity>, Refused> {
        let lock = || {
            self.velocity
                .lock()
                .map_err(|_| Refused::internal("velocity", "poisoned"))
        };
        let seen = lock()?.seen;
        let new = self.store.reservations_after(seen)?;
        let mut v = lock()?;
        v.apply(&new)
            .map_err(|e| Refused::internal("stored reservation", e))?;
        Ok(v)
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

    /// This replica's name (in claims and in `daemon_started` records).
    pub(crate) fn replica(&self) -> &str {
        &self.replica
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

    /// A failed commit as the caller sees it (the one table in [`crate::status`]), counted
    /// when the history could not be written.
    fn unwritable(&self, e: StoreError) -> Refused {
        let refused = Refused::from(e);
        if refused.reason == Reason::AuditUnavailable {
            self.metrics.audit_errors.inc();
        }
        refused
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

    pub(crate) fn keys(&self) -> Vec<KeyInfo> {
        self.live().keys.values().cloned().collect()
    }
}

/// An approval as audit evidence: the signed bytes and the officer's key in `policy`.
fn evidence(policy: &Policy, a: StoredApproval) -> rec::Approval {
    rec::Approval {
        public_key: HexBytes(
            policy
                .officer(&a.officer_id)
                .map(|o| o.key_bytes())
                .unwrap_or_default(),
        ),
        officer: a.officer_id,
        message: HexBytes(a.message),
        signature: HexBytes(a.signature),
    }
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
            SignedApproval::from_parts(a.message.clone(), &a.signature)
                .map_err(|e| Refused::internal("stored approval signature", e))
        })
        .collect()
}

fn new_request_id() -> Result<String, Refused> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Refused::internal("random request id", e))?;
    Ok(format!("req-{}", hex::encode(b)))
}

/// The velocity ledger in memory and the number of the newest reservation it holds. Reservation
/// numbers grow in commit order (every writer holds the store's write lock while it inserts),
/// so reading the reservations numbered above `seen` brings the ledger up to date with every
/// replica; inside the claim's transaction, under that lock, the read is complete.
#[derive(Default)]
pub(crate) struct Velocity {
    pub(crate) ledger: VelocityLedger,
    pub(crate) seen: i64,
}

/// A stored reservation's asset and time, as the velocity ledger takes them.
pub(crate) fn reservation_entry(
    r: &kinko_store::Reservation,
) -> Result<(kinko_policy::AssetId, Timestamp), String> {
    let asset = parse_asset_id(&r.asset)
        .ok_or_else(|| format!("a reservation of an unknown asset {:?}", r.asset))?;
    let at = Timestamp::from_second(r.at).map_err(|e| format!("reservation time: {e}"))?;
    Ok((asset, at))
}

impl Velocity {
    fn record(&mut self, r: &kinko_store::Reservation) -> Result<(), String> {
        let (asset, at) = reservation_entry(r)?;
        self.ledger
            .record(&r.key_name, &asset, at, r.amount)
            .map_err(|e| format!("reservation: {e}"))
    }

    /// Records reservations read by number (oldest first), once each.
    pub(crate) fn apply(&mut self, new: &[(i64, kinko_store::Reservation)]) -> Result<(), String> {
        for (id, r) in new {
            if *id <= self.seen {
                continue;
            }
            self.record(r)?;
            self.seen = *id;
        }
        Ok(())
    }
}

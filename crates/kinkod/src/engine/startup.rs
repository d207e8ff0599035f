//! Start-up: one read of the log, recovery of requests a crash left signing, and the check of
//! the store against the log (the log outranks the store).

use super::sign::claim_digests;
use super::*;

/// A claim older than this is recovered by any replica (no signing takes this long; a replica
/// that died holding it may never come back).
pub(crate) const STALE_CLAIM_SECS: i64 = 120;

/// What every refusal to start on a disagreement tells the operator.
const RESTORE: &str = "the store was edited or replaced behind kinkod: if the audit log verifies, rebuild the state from it (kinkod rebuild), else restore the database from backup (docs/incident-response.md); kinkod will not sign until store and log agree";

/// Why kinkod refuses to start: the store disagrees with the log (the log outranks the store),
/// or one of them cannot be read. Each says what differs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The store or the log could not be read.
    #[error("reading the store or the audit log: {0}")]
    Read(String),
    /// The store names another freeze than the log's.
    #[error(
        "the audit log says signing is frozen (freeze record {seq}, id {logged}), but the store names another freeze ({stored}); {restore}",
        restore = RESTORE
    )]
    OtherFreeze {
        /// The freeze record.
        seq: u64,
        /// Its id (leaf hash, hex).
        logged: String,
        /// The store's freeze id (hex).
        stored: String,
    },
    /// Frozen in the store with no freeze in force in the log.
    #[error(
        "the store says signing is frozen, but the audit log shows no freeze in force; {restore}",
        restore = RESTORE
    )]
    FrozenOnlyInStore,
    /// A stored request the log never received.
    #[error(
        "request {id} ({state}) is in the store, but the audit log never received it; {restore}",
        restore = RESTORE
    )]
    NotReceived {
        /// The request.
        id: String,
        /// Its stored state.
        state: RequestState,
    },
    /// A stored request in a state the log does not show.
    #[error(
        "request {id} is {state} in the store, but the audit log shows it {logged}; {restore}",
        restore = RESTORE
    )]
    OtherState {
        /// The request.
        id: String,
        /// Its stored state.
        state: RequestState,
        /// What the log shows, in words.
        logged: String,
    },
    /// A logged request missing from the store.
    #[error(
        "request {id} is in the audit log but not in the store ({count} such); {restore}",
        restore = RESTORE
    )]
    NotInStore {
        /// The first such request.
        id: String,
        /// How many.
        count: usize,
    },
    /// A stored verdict the log does not hold.
    #[error(
        "the store holds a {kind}verdict of officer {officer} on {request} that is not in the audit log; {restore}",
        restore = RESTORE
    )]
    VerdictNotLogged {
        /// `governance ` or empty.
        kind: &'static str,
        /// The officer.
        officer: String,
        /// The request.
        request: String,
    },
    /// A verdict or vote the log holds is missing from the store (a deleted veto, say).
    #[error(
        "the audit log holds a {kind}verdict of officer {officer} on {request} that the store lacks; {restore}",
        restore = RESTORE
    )]
    VerdictMissing {
        /// `governance ` or empty.
        kind: &'static str,
        /// The officer.
        officer: String,
        /// The request.
        request: String,
    },
    /// A velocity reservation the log implies is missing from the store, or one it does not
    /// imply is there (deleted reservations would loosen the velocity limits).
    #[error(
        "the store's velocity reservations of request {request} ({stored}) are not the ones its signing authorization implies ({logged}); {restore}",
        restore = RESTORE
    )]
    ReservationsDiffer {
        /// The request.
        request: String,
        /// What the store holds.
        stored: String,
        /// What the log implies.
        logged: String,
    },
    /// A stored claim of a request the log never authorized (or of another value).
    #[error(
        "the store holds a claim of {what} {value} of key {key} for request {request}, which the audit log never authorized; {restore}",
        restore = RESTORE
    )]
    ClaimNotAuthorized {
        /// `replay key` or `digest`.
        what: &'static str,
        /// The value.
        value: String,
        /// The key.
        key: String,
        /// The request.
        request: String,
    },
    /// A claim of a signed request missing from the store.
    #[error(
        "the store lacks the claim of {what} {value} of key {key}, which request {request} signed (audit record {seq}){held_by}; {restore}",
        restore = RESTORE
    )]
    ClaimMissing {
        /// `replay key` or `digest`.
        what: &'static str,
        /// The value.
        value: String,
        /// The key.
        key: String,
        /// The request that signed it.
        request: String,
        /// Its `signature_produced` record.
        seq: u64,
        /// ` (held by …)` when another request holds it.
        held_by: String,
    },
}

fn read(e: impl std::fmt::Display) -> StartError {
    StartError::Read(e.to_string())
}

impl Engine {
    /// Checks the store against the log before anything is signed (the log outranks the store):
    /// the freeze in force must be the log's (an edited or deleted freeze row never resumes
    /// signing), and every request the log shows signed must be signed in the store and still
    /// hold the claims of its replay keys and digests (deleted claims never let a nonce, an
    /// outpoint or a transaction be signed again). Run after [`Engine::recover`]. On any
    /// disagreement, says what differs.
    pub(crate) fn check_store_against_log(&self, facts: &LogFacts) -> Result<(), StartError> {
        let (frozen, signed) = (facts.frozen, &facts.signed);
        let f = self.store.freeze_state().map_err(read)?;
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
                    .map_err(read)?;
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
                    .map_err(read)?;
            }
            Some((seq, id)) if f.freeze_id.as_slice() != id.as_slice() => {
                return Err(StartError::OtherFreeze {
                    seq,
                    logged: hex::encode(id),
                    stored: hex::encode(&f.freeze_id),
                });
            }
            Some(_) => {}
            None if f.frozen => {
                return Err(StartError::FrozenOnlyInStore);
            }
            _ => {}
        }
        self.check_requests_against_log(facts)?;
        for (seq, id, claims) in signed {
            let Claims {
                key,
                replay_keys,
                digests,
                ..
            } = claims;
            match self.store.get_request(id) {
                Ok(r) if r.state == RequestState::Signed => {}
                Ok(r) => {
                    return Err(StartError::OtherState {
                        id: id.clone(),
                        state: r.state,
                        logged: format!("signed (record {seq})"),
                    });
                }
                Err(_) => {
                    return Err(StartError::NotInStore {
                        id: id.clone(),
                        count: 1,
                    });
                }
            }
            for (what, values) in [("replay key", replay_keys), ("digest", digests)] {
                for v in values {
                    let holder = self
                        .store
                        .claim_holder(what == "digest", key, v)
                        .map_err(read)?;
                    if holder.as_deref() != Some(id.as_str()) {
                        return Err(StartError::ClaimMissing {
                            what,
                            value: v.clone(),
                            key: key.clone(),
                            request: id.clone(),
                            seq: *seq,
                            held_by: holder
                                .map(|h| format!(" (held by {h})"))
                                .unwrap_or_default(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Every request, verdict and claim of the store must be what the log shows: a request the
    /// log never received, or in a state the log does not show, a verdict or a claim not in the
    /// log, or a logged request missing from the store, refuses start.
    pub(super) fn check_requests_against_log(&self, facts: &LogFacts) -> Result<(), StartError> {
        let states = self.store.all_request_states().map_err(read)?;
        let mut in_store = std::collections::HashSet::new();
        for (id, state) in &states {
            in_store.insert(id.as_str());
            let Some(logged) = facts.requests.get(id) else {
                return Err(StartError::NotReceived {
                    id: id.clone(),
                    state: *state,
                });
            };
            if !logged.allows(*state) {
                return Err(StartError::OtherState {
                    id: id.clone(),
                    state: *state,
                    logged: logged.describe(),
                });
            }
        }
        let mut missing: Vec<&String> = facts
            .requests
            .keys()
            .filter(|id| !in_store.contains(id.as_str()))
            .collect();
        missing.sort();
        if let Some(id) = missing.first() {
            return Err(StartError::NotInStore {
                id: (*id).clone(),
                count: missing.len(),
            });
        }
        let stored_verdicts = self.store.all_verdicts().map_err(read)?;
        let held: std::collections::HashSet<(bool, &str, &str, &[u8])> = stored_verdicts
            .iter()
            .map(|v| {
                (
                    v.governance,
                    v.request_id.as_str(),
                    v.officer_id.as_str(),
                    v.message.as_slice(),
                )
            })
            .collect();
        let mut last: Vec<_> = facts.last_verdicts.iter().collect();
        last.sort();
        for ((governance, request, officer), message) in last {
            if !held.contains(&(
                *governance,
                request.as_str(),
                officer.as_str(),
                message.as_slice(),
            )) {
                return Err(StartError::VerdictMissing {
                    kind: if *governance { "governance " } else { "" },
                    officer: officer.clone(),
                    request: request.clone(),
                });
            }
        }
        let mut reserved: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.store.all_reservations_since(i64::MIN).map_err(read)? {
            reserved
                .entry(r.request_id)
                .or_default()
                .push(format!("{} {} {}", r.key_name, r.asset, r.amount));
        }
        let mut requests: Vec<&String> = facts.authorized.keys().chain(reserved.keys()).collect();
        requests.sort();
        requests.dedup();
        for request in requests {
            let mut logged: Vec<String> = facts
                .authorized
                .get(request)
                .map(|c| {
                    c.reservations
                        .iter()
                        .map(|r| format!("{} {r}", c.key))
                        .collect()
                })
                .unwrap_or_default();
            let mut stored = reserved.get(request).cloned().unwrap_or_default();
            logged.sort();
            stored.sort();
            if logged != stored {
                return Err(StartError::ReservationsDiffer {
                    request: request.clone(),
                    stored: stored.join(", "),
                    logged: logged.join(", "),
                });
            }
        }
        for kinko_store::StoredVerdict {
            governance,
            request_id: request,
            officer_id: officer,
            message,
        } in stored_verdicts
        {
            let logged = if governance {
                &facts.governance_votes
            } else {
                &facts.verdicts
            };
            if !logged.contains(&(request.clone(), officer.clone(), message)) {
                return Err(StartError::VerdictNotLogged {
                    kind: if governance { "governance " } else { "" },
                    officer,
                    request,
                });
            }
        }
        for kinko_store::StoredClaim {
            digest,
            key_name: key,
            value,
            request_id: request,
        } in self.store.all_claims().map_err(read)?
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
                return Err(StartError::ClaimNotAuthorized {
                    what,
                    value,
                    key,
                    request,
                });
            }
        }
        Ok(())
    }

    /// Whether this replica may recover a request left `signing`: always on an unshared store;
    /// with replicas, its own claims and any claim older than [`STALE_CLAIM_SECS`].
    pub(super) fn recoverable(&self, held: &kinko_store::SigningHeld) -> bool {
        !self.store.is_shared()
            || held.replica.as_deref() == Some(self.replica.as_str())
            || held.since <= unix(now()) - STALE_CLAIM_SECS
    }

    /// Reads the whole log once at start: the freeze in force, every signed request with its
    /// claims, and the `signature_produced` records of the requests the store left in
    /// `signing` (for [`Engine::recover`] and [`Engine::check_store_against_log`]).
    pub(crate) fn read_log(&self) -> Result<LogFacts, StartError> {
        let stuck: std::collections::HashSet<String> = self
            .store
            .list_by_state(RequestState::Signing)
            .map_err(read)?
            .into_iter()
            .map(|r| r.new.id)
            .collect();
        let mut facts = LogFacts::default();
        let mut from = 0u64;
        loop {
            let lines = self
                .store
                .read_log_lines(from, 4096)
                .map_err(|e| StartError::Read(format!("reading the audit log: {e}")))?;
            if lines.is_empty() {
                break;
            }
            for line in &lines {
                let record = rec::Record::decode(line.as_bytes())
                    .map_err(|e| StartError::Read(format!("audit record {from}: {e}")))?;
                match record.event {
                    Event::Freeze(_) => {
                        facts.frozen =
                            Some((from, kinko_audit::merkle::leaf_hash(line.as_bytes())));
                    }
                    Event::Unfreeze(_) => facts.frozen = None,
                    Event::DaemonStarted(b) => facts.last_build = Some(b.binary_sha256.0),
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
                        facts.last_verdicts.insert(
                            (false, a.request_id.clone(), a.approval.officer.clone()),
                            a.approval.message.0.clone(),
                        );
                        facts.verdicts.insert((
                            a.request_id,
                            a.approval.officer,
                            a.approval.message.0,
                        ));
                    }
                    Event::Rejection(r) => {
                        if let Some(signed) = r.signed {
                            facts.last_verdicts.insert(
                                (false, r.request_id.clone(), signed.officer.clone()),
                                signed.message.0.clone(),
                            );
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
                        facts.last_verdicts.insert(
                            (true, v.request_id.clone(), v.approval.officer.clone()),
                            v.approval.message.0.clone(),
                        );
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
                            .map_err(|e| StartError::Read(format!("audit record {from}: {e}")))?;
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
                                reservations: kinko_policy::velocity_entries(&intent)
                                    .map_err(|e| {
                                        StartError::Read(format!("audit record {from}: {e}"))
                                    })?
                                    .iter()
                                    .map(|(asset, amount)| format!("{asset} {amount}"))
                                    .collect(),
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
    pub(crate) fn recover(&self, facts: &LogFacts) -> Result<(usize, usize), StartError> {
        // With replicas, a request another replica claimed a moment ago may be signing there
        // right now: only this replica's own claims, and claims older than any signing takes,
        // are recovered (the tick recovers the rest once they are old).
        let mine: std::collections::HashSet<String> = self
            .store
            .signing_held()
            .map_err(read)?
            .into_iter()
            .filter(|h| self.recoverable(h))
            .map(|h| h.request_id)
            .collect();
        let stuck: Vec<Request> = self
            .store
            .list_by_state(RequestState::Signing)
            .map_err(read)?
            .into_iter()
            .filter(|r| mine.contains(&r.new.id))
            .collect();
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
                        .map_err(read)?;
                    tracing::warn!(
                        request = id,
                        "restored as signed from its signature_produced record"
                    );
                    restored += 1;
                }
                None => {
                    self.fail_interrupted(id).map_err(read)?;
                    failed += 1;
                }
            }
        }
        Ok((restored, failed))
    }

    /// Fails a request a stopped kinkod left between authorization and signature, with its
    /// record; its claims stay.
    fn fail_interrupted(&self, id: &str) -> Result<(), kinko_store::StoreError> {
        let why = "kinkod stopped between authorization and signature; no signature left the signer (none is in the audit log); the nonce stays claimed: resubmit with a new nonce after checking the chain";
        let id = id.to_string();
        self.store
            .commit("kinkod", move |tx| {
                tx.transition(
                    &id,
                    &[RequestState::Signing],
                    RequestState::Failed,
                    Some(why),
                    unix(now()),
                )?;
                let event = Event::Refusal(rec::Refusal {
                    request_id: Some(id.clone()),
                    code: "SIGNING_FAILED".into(),
                    message: why.into(),
                });
                Ok(((), vec![event]))
            })
            .map(|_| ())
    }

    /// With replicas: fails the claims older than [`STALE_CLAIM_SECS`] that a replica which
    /// died left `signing` (the tick calls it; a signature and its signed state commit together,
    /// so a claim still `signing` that old was never released).
    pub(crate) fn fail_stale_claims(&self) -> Result<usize, kinko_store::StoreError> {
        if !self.store.is_shared() {
            return Ok(0);
        }
        let cutoff = unix(now()) - STALE_CLAIM_SECS;
        let mut failed = 0;
        for held in self.store.signing_held()? {
            if held.since > cutoff {
                continue;
            }
            match self.fail_interrupted(&held.request_id) {
                Ok(()) => {
                    tracing::warn!(request = held.request_id, replica = ?held.replica, "a claim left signing by a replica was failed");
                    failed += 1;
                }
                // Finished or failed by another replica meanwhile.
                Err(kinko_store::StoreError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(failed)
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
    /// Each officer's last logged verdict per request: (governance, request, officer) → message.
    last_verdicts: HashMap<(bool, String, String), Vec<u8>>,
    /// The SHA-256 of the last kinkod build recorded (`daemon_started`).
    pub(crate) last_build: Option<Vec<u8>>,
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
    pub(super) fn allows(&self, state: RequestState) -> bool {
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
    pub(super) fn describe(&self) -> String {
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
    /// Velocity reservations, `asset amount` each.
    reservations: Vec<String>,
}

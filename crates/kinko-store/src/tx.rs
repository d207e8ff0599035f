//! Every statement of the store, written once against [`Conn`] (SQLite or PostgreSQL).

use crate::db::{Conn, Row, Val};
use crate::{
    FreezeState, Governance, GovernanceKind, GovernanceState, Inserted, InstalledPolicy,
    NewRequest, PolicyProposal, Request, RequestState, Reservation, SigningClaim, SigningHeld,
    StoreError, StoredApproval, StoredClaim, StoredVerdict,
};

/// One transaction of the store. A lifecycle step makes its state changes through it inside
/// [`crate::Store::commit`], which appends the step's audit records in the same transaction:
/// the change and its records are durable together, or neither is. Every read of the store
/// goes through it too, so the backends differ only below it.
pub struct Tx<'a> {
    pub(crate) c: &'a dyn Conn,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

const REQUEST_COLUMNS: &str = "id, requester, idempotency_key, key_name, chain, network, payload, reference, \
     requester_signature, intent_json, intent_digest, policy_hash, decision_json, state, final_reason, \
     signed_transaction, transaction_id, created_at, updated_at";

fn request(row: &Row) -> Result<Request, StoreError> {
    let state: RequestState = {
        let s = row.text(13)?;
        RequestState::parse(&s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown state {s:?}")))?
    };
    let final_reason = row.opt_text(14)?;
    Ok(Request {
        new: NewRequest {
            id: row.text(0)?,
            requester: row.text(1)?,
            idempotency_key: row.text(2)?,
            key_name: row.text(3)?,
            chain: row.parsed(4)?,
            network: row.text(5)?,
            payload: row.blob(6)?,
            reference: row.text(7)?,
            requester_signature: row.blob(8)?,
            intent_json: row.text(9)?,
            intent_digest: row.hash32(10)?,
            policy_hash: row.hash32(11)?,
            decision_json: row.text(12)?,
            state,
            final_reason: final_reason.clone(),
            now: row.int(17)?,
        },
        state,
        final_reason,
        signed_transaction: row.opt_blob(15)?,
        transaction_id: row.opt_text(16)?,
        updated_at: row.int(18)?,
    })
}

fn governance(r: &Row) -> Result<Governance, StoreError> {
    let kind = r.text(1)?;
    let state = r.text(4)?;
    Ok(Governance {
        id: r.text(0)?,
        kind: GovernanceKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown governance kind {kind:?}")))?,
        created_at: r.int(2)?,
        quorum_reached_at: r.opt_int(3)?,
        state: GovernanceState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown governance state {state:?}")))?,
    })
}

fn reservation(r: &Row) -> Result<Reservation, StoreError> {
    Ok(Reservation {
        key_name: r.text(0)?,
        asset: r.text(1)?,
        amount: r.parsed(2)?,
        at: r.int(3)?,
        request_id: r.text(4)?,
    })
}

fn installed(r: &Row) -> Result<InstalledPolicy, StoreError> {
    Ok(InstalledPolicy {
        policy_hash: r.blob(0)?,
        policy_text: r.text(1)?,
        proposal_id: r.opt_text(2)?,
        installed_at: r.int(3)?,
    })
}

fn count(row: &Row) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.int(0)?).unwrap_or(0))
}

impl Tx<'_> {
    fn check_state(&self, id: &str, expected: &[RequestState]) -> Result<RequestState, StoreError> {
        let row = self
            .c
            .query_opt("SELECT state FROM requests WHERE id = ?1", &[id.into()])?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let state = row.text(0)?;
        let actual = RequestState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))?;
        if expected.contains(&actual) {
            Ok(actual)
        } else {
            Err(StoreError::WrongState {
                id: id.to_string(),
                actual,
                expected: expected.to_vec(),
            })
        }
    }

    /// Whether a request with this id is stored.
    pub fn request_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .c
            .query_opt("SELECT id FROM requests WHERE id = ?1", &[id.into()])?
            .is_some())
    }

    /// Records a request's policy decision (for a rebuild from the log, where the decision is
    /// its own record): the policy hash, the explanation and, when denied, the final state.
    pub fn set_decision(
        &self,
        id: &str,
        policy_hash: &[u8],
        decision_json: &str,
        denied: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.check_state(id, &[RequestState::PendingApproval])?;
        self.c.exec(
            "UPDATE requests SET policy_hash = ?2, decision_json = ?3, updated_at = ?4 WHERE id = ?1",
            &[id.into(), policy_hash.into(), decision_json.into(), now.into()],
        )?;
        if denied {
            self.c.exec(
                "UPDATE requests SET state = 'denied', final_reason = 'denied by the policy (see its decision record)' WHERE id = ?1",
                &[id.into()],
            )?;
        }
        Ok(())
    }

    /// Inserts a request, or returns the existing one when the same requester reuses an
    /// idempotency key for the same payload. The same key with a different payload is refused.
    pub fn insert_request(&self, new: &NewRequest) -> Result<Inserted, StoreError> {
        let existing = self
            .c
            .query_opt(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE requester = ?1 AND idempotency_key = ?2"
                ),
                &[(&new.requester).into(), (&new.idempotency_key).into()],
            )?
            .map(|r| request(&r))
            .transpose()?;
        if let Some(existing) = existing {
            return if existing.new.payload == new.payload
                && existing.new.key_name == new.key_name
                && existing.new.reference == new.reference
            {
                Ok(Inserted::Existing(existing))
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: new.idempotency_key.clone(),
                    existing: existing.new.id,
                })
            };
        }
        self.c.exec(
            &format!(
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, NULL, NULL, ?16, ?16)"
            ),
            &[
                (&new.id).into(),
                (&new.requester).into(),
                (&new.idempotency_key).into(),
                (&new.key_name).into(),
                new.chain.as_str().into(),
                (&new.network).into(),
                (&new.payload).into(),
                (&new.reference).into(),
                (&new.requester_signature).into(),
                (&new.intent_json).into(),
                (&new.intent_digest).into(),
                (&new.policy_hash).into(),
                (&new.decision_json).into(),
                new.state.as_str().into(),
                new.final_reason.as_deref().into(),
                new.now.into(),
            ],
        )?;
        Ok(Inserted::Created(self.get_request(&new.id)?))
    }

    /// Reads a request.
    pub fn get_request(&self, id: &str) -> Result<Request, StoreError> {
        let row = self
            .c
            .query_opt(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                &[id.into()],
            )?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        request(&row)
    }

    /// Requests in `state`, oldest first.
    pub fn list_by_state(&self, state: RequestState) -> Result<Vec<Request>, StoreError> {
        self.c
            .query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1 ORDER BY created_at, id"
                ),
                &[state.as_str().into()],
            )?
            .iter()
            .map(request)
            .collect()
    }

    /// Up to `limit` requests in `state`, oldest first, after request `after` (keyset paging on
    /// creation time and id).
    pub fn list_by_state_page(
        &self,
        state: RequestState,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Request>, StoreError> {
        let rows = match after {
            None => self.c.query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1 ORDER BY created_at, id LIMIT ?2"
                ),
                &[state.as_str().into(), i64::from(limit).into()],
            )?,
            Some(after) => self.c.query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1
                     AND (created_at, id) > (SELECT created_at, id FROM requests WHERE id = ?2)
                     ORDER BY created_at, id LIMIT ?3"
                ),
                &[state.as_str().into(), after.into(), i64::from(limit).into()],
            )?,
        };
        rows.iter().map(request).collect()
    }

    /// How many of `requester`'s requests are pending approval.
    pub fn count_pending(&self, requester: &str) -> Result<u64, StoreError> {
        count(&self.c.query_one(
            "SELECT COUNT(*) FROM requests WHERE requester = ?1 AND state = 'pending_approval'",
            &[requester.into()],
        )?)
    }

    /// The request holding the claim of `value` for `key_name`: a signed digest when `digest`,
    /// else a replay key.
    pub fn claim_holder(
        &self,
        digest: bool,
        key_name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = if digest {
            "SELECT request_id FROM signed_digests WHERE key_name = ?1 AND digest = ?2"
        } else {
            "SELECT request_id FROM replay_keys WHERE key_name = ?1 AND replay_key = ?2"
        };
        self.c
            .query_opt(sql, &[key_name.into(), value.into()])?
            .map(|r| r.text(0))
            .transpose()
    }

    /// How many of `requester`'s requests created at or after `since` were denied.
    pub fn count_denied_since(&self, requester: &str, since: i64) -> Result<u64, StoreError> {
        count(
            &self
                .c
                .query_one(COUNT_DENIED_SINCE, &[requester.into(), since.into()])?,
        )
    }

    /// Moves a request from one of `from` to `to`, atomically (compare and set).
    pub fn transition(
        &self,
        id: &str,
        from: &[RequestState],
        to: RequestState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Request, StoreError> {
        self.check_state(id, from)?;
        self.c.exec(
            "UPDATE requests SET state = ?2, final_reason = COALESCE(?3, final_reason), updated_at = ?4 WHERE id = ?1",
            &[id.into(), to.as_str().into(), reason.into(), now.into()],
        )?;
        self.get_request(id)
    }

    /// Stores an officer's signed verdict. One verdict per officer per request. The request must
    /// be pending approval.
    pub fn add_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        self.check_state(&a.request_id, &[RequestState::PendingApproval])?;
        let inserted = self.c.exec(
            "INSERT INTO approvals (request_id, officer_id, approve, message, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            &approval_params(a),
        )?;
        if inserted == 0 {
            return Err(StoreError::DuplicateApproval {
                request: a.request_id.clone(),
                officer: a.officer_id.clone(),
            });
        }
        Ok(())
    }

    /// Stores an officer's signed verdict in place of one of theirs that no longer counts.
    /// The request must be pending approval.
    pub fn replace_approval(&self, a: &StoredApproval) -> Result<(), StoreError> {
        self.check_state(&a.request_id, &[RequestState::PendingApproval])?;
        self.c.exec(
            "DELETE FROM approvals WHERE request_id = ?1 AND officer_id = ?2",
            &[(&a.request_id).into(), (&a.officer_id).into()],
        )?;
        self.c.exec(
            "INSERT INTO approvals (request_id, officer_id, approve, message, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &approval_params(a),
        )?;
        Ok(())
    }

    /// The verdicts on a request, in the order received.
    pub fn approvals(&self, request_id: &str) -> Result<Vec<StoredApproval>, StoreError> {
        self.c
            .query(
                "SELECT request_id, officer_id, approve, message, signature, received_at FROM approvals WHERE request_id = ?1 ORDER BY seq",
                &[request_id.into()],
            )?
            .iter()
            .map(|r| {
                Ok(StoredApproval {
                    request_id: r.text(0)?,
                    officer_id: r.text(1)?,
                    approve: r.boolean(2)?,
                    message: r.blob(3)?,
                    signature: r.blob(4)?,
                    received_at: r.int(5)?,
                })
            })
            .collect()
    }

    /// Claims everything signing needs, atomically: the request moves from `PendingApproval`
    /// (or `Approved`) to `Signing`, its replay keys and digests are bound to it (refused when
    /// another request of the same key holds one), and its velocity reservations are recorded.
    pub fn claim_signing(&self, claim: &SigningClaim) -> Result<(), StoreError> {
        self.check_state(
            &claim.request_id,
            &[RequestState::PendingApproval, RequestState::Approved],
        )?;
        for (what, table, column, values) in [
            (
                "replay key",
                "replay_keys",
                "replay_key",
                &claim.replay_keys,
            ),
            ("digest", "signed_digests", "digest", &claim.digests),
        ] {
            for v in values {
                let other = self
                    .c
                    .query_opt(
                        &format!(
                            "SELECT request_id FROM {table} WHERE key_name = ?1 AND {column} = ?2"
                        ),
                        &[(&claim.key_name).into(), v.into()],
                    )?
                    .map(|r| r.text(0))
                    .transpose()?;
                match other {
                    Some(other) if other != claim.request_id => {
                        return Err(StoreError::ReplayConflict {
                            what,
                            key: claim.key_name.clone(),
                            value: v.clone(),
                            other,
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.c.exec(
                            &format!(
                                "INSERT INTO {table} (key_name, {column}, request_id, at) VALUES (?1, ?2, ?3, ?4)"
                            ),
                            &[
                                (&claim.key_name).into(),
                                v.into(),
                                (&claim.request_id).into(),
                                claim.now.into(),
                            ],
                        )?;
                    }
                }
            }
        }
        for r in &claim.reservations {
            self.c.exec(
                "INSERT INTO reservations (key_name, asset, amount, at, request_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    (&r.key_name).into(),
                    (&r.asset).into(),
                    r.amount.to_string().into(),
                    r.at.into(),
                    (&r.request_id).into(),
                ],
            )?;
        }
        self.c.exec(
            "UPDATE requests SET state = 'signing', claimed_by = ?3, updated_at = ?2 WHERE id = ?1",
            &[
                (&claim.request_id).into(),
                claim.now.into(),
                (&claim.replica).into(),
            ],
        )?;
        Ok(())
    }

    /// Every request in `signing`, with the replica that claimed it and when.
    pub fn signing_held(&self) -> Result<Vec<SigningHeld>, StoreError> {
        self.c
            .query(
                "SELECT id, claimed_by, updated_at FROM requests WHERE state = 'signing' ORDER BY updated_at, id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(SigningHeld {
                    request_id: r.text(0)?,
                    replica: r.opt_text(1)?,
                    since: r.int(2)?,
                })
            })
            .collect()
    }

    /// Records the signed transaction: `Signing` → `Signed`.
    pub fn record_signed(
        &self,
        id: &str,
        signed_transaction: &[u8],
        transaction_id: &str,
        now: i64,
    ) -> Result<Request, StoreError> {
        self.check_state(id, &[RequestState::Signing])?;
        self.c.exec(
            "UPDATE requests SET state = 'signed', signed_transaction = ?2, transaction_id = ?3, updated_at = ?4 WHERE id = ?1",
            &[
                id.into(),
                signed_transaction.into(),
                transaction_id.into(),
                now.into(),
            ],
        )?;
        self.get_request(id)
    }

    /// Velocity reservations of `key_name` for `asset` at or after `since`, oldest first.
    pub fn reservations_since(
        &self,
        key_name: &str,
        asset: &str,
        since: i64,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.c
            .query(
                "SELECT key_name, asset, amount, at, request_id FROM reservations WHERE key_name = ?1 AND asset = ?2 AND at >= ?3 ORDER BY at, id",
                &[key_name.into(), asset.into(), since.into()],
            )?
            .iter()
            .map(reservation)
            .collect()
    }

    /// Every reservation of `key_name` at or after `since`, oldest first.
    pub fn key_reservations_since(
        &self,
        key_name: &str,
        since: i64,
    ) -> Result<Vec<Reservation>, StoreError> {
        self.c
            .query(
                "SELECT key_name, asset, amount, at, request_id FROM reservations WHERE key_name = ?1 AND at >= ?2 ORDER BY at, id",
                &[key_name.into(), since.into()],
            )?
            .iter()
            .map(reservation)
            .collect()
    }

    /// Every reservation committed after the one numbered `after` (numbers grow in commit
    /// order: writers take the write lock before they insert), with its number, oldest first.
    /// How a velocity ledger in memory keeps up with every replica's claims by reading only
    /// what is new.
    pub fn reservations_after(&self, after: i64) -> Result<Vec<(i64, Reservation)>, StoreError> {
        self.c
            .query(
                "SELECT key_name, asset, amount, at, request_id, id FROM reservations WHERE id > ?1 ORDER BY id",
                &[after.into()],
            )?
            .iter()
            .map(|r| Ok((r.int(5)?, reservation(r)?)))
            .collect()
    }

    /// The number of the newest reservation (0 when none).
    pub fn last_reservation_id(&self) -> Result<i64, StoreError> {
        self.c
            .query_one("SELECT COALESCE(MAX(id), 0) FROM reservations", &[])?
            .int(0)
    }

    /// The hash of the policy in force (the newest installed), without its text.
    pub fn installed_policy_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        self.c
            .query_opt(
                "SELECT policy_hash FROM installed_policies ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .map(|r| r.hash32(0))
            .transpose()
    }

    /// Every reservation at or after `since`.
    pub fn all_reservations_since(&self, since: i64) -> Result<Vec<Reservation>, StoreError> {
        self.c
            .query(
                "SELECT key_name, asset, amount, at, request_id FROM reservations WHERE at >= ?1 ORDER BY at, id",
                &[since.into()],
            )?
            .iter()
            .map(reservation)
            .collect()
    }

    /// Adds an officer's signed approval (or veto) to a governance request, creating the request
    /// on first use. One per officer; a request of another kind under the same id is refused.
    pub fn add_governance_approval(
        &self,
        id: &str,
        kind: GovernanceKind,
        a: &StoredApproval,
    ) -> Result<Governance, StoreError> {
        self.c.exec(
            "INSERT INTO governance (id, kind, created_at, quorum_reached_at, state) VALUES (?1, ?2, ?3, NULL, 'pending') ON CONFLICT DO NOTHING",
            &[id.into(), kind.as_str().into(), a.received_at.into()],
        )?;
        let existing = self
            .c
            .query_one("SELECT kind FROM governance WHERE id = ?1", &[id.into()])?
            .text(0)?;
        if existing != kind.as_str() {
            return Err(StoreError::Corrupt(format!(
                "governance request {id} is a {existing} request, not {kind}"
            )));
        }
        let inserted = self.c.exec(
            "INSERT INTO governance_approvals (governance_id, officer_id, message, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            &[
                id.into(),
                (&a.officer_id).into(),
                (&a.message).into(),
                (&a.signature).into(),
                a.received_at.into(),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::DuplicateApproval {
                request: id.to_string(),
                officer: a.officer_id.clone(),
            });
        }
        self.governance(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// A governance request.
    pub fn governance(&self, id: &str) -> Result<Option<Governance>, StoreError> {
        self.c
            .query_opt(
                "SELECT id, kind, created_at, quorum_reached_at, state FROM governance WHERE id = ?1",
                &[id.into()],
            )?
            .map(|r| governance(&r))
            .transpose()
    }

    /// The signed approvals of a governance request, in the order received.
    pub fn governance_approvals(&self, id: &str) -> Result<Vec<StoredApproval>, StoreError> {
        self.c
            .query(
                "SELECT governance_id, officer_id, message, signature, received_at FROM governance_approvals WHERE governance_id = ?1 ORDER BY seq",
                &[id.into()],
            )?
            .iter()
            .map(|r| {
                Ok(StoredApproval {
                    request_id: r.text(0)?,
                    officer_id: r.text(1)?,
                    approve: true,
                    message: r.blob(2)?,
                    signature: r.blob(3)?,
                    received_at: r.int(4)?,
                })
            })
            .collect()
    }

    /// Records the state of an open governance request; the first time its quorum is seen,
    /// the instant is kept (never moved later).
    pub fn set_governance_state(
        &self,
        id: &str,
        state: GovernanceState,
        quorum_reached_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.c.exec(
            "UPDATE governance SET state = ?2, quorum_reached_at = COALESCE(quorum_reached_at, ?3) WHERE id = ?1 AND state IN ('pending', 'waiting')",
            &[id.into(), state.as_str().into(), quorum_reached_at.into()],
        )?;
        Ok(())
    }

    /// The newest open (`pending` or `waiting`) governance request of a kind.
    pub fn open_governance(&self, kind: GovernanceKind) -> Result<Option<Governance>, StoreError> {
        self.c
            .query_opt(
                "SELECT id, kind, created_at, quorum_reached_at, state FROM governance
                 WHERE kind = ?1 AND state IN ('pending', 'waiting') ORDER BY created_at DESC, id LIMIT 1",
                &[kind.as_str().into()],
            )?
            .map(|r| governance(&r))
            .transpose()
    }

    /// Every governance request of a kind waiting out its delay, oldest first.
    pub fn waiting_governance(&self, kind: GovernanceKind) -> Result<Vec<Governance>, StoreError> {
        self.c
            .query(
                "SELECT id, kind, created_at, quorum_reached_at, state FROM governance
                 WHERE kind = ?1 AND state = 'waiting' ORDER BY created_at, id",
                &[kind.as_str().into()],
            )?
            .iter()
            .map(governance)
            .collect()
    }

    /// Records a policy proposal and opens its governance request (kind `install_policy`).
    pub fn insert_policy_proposal(&self, p: &PolicyProposal) -> Result<(), StoreError> {
        self.c.exec(
            "INSERT INTO governance (id, kind, created_at, quorum_reached_at, state) VALUES (?1, 'install_policy', ?2, NULL, 'pending')",
            &[(&p.id).into(), p.created_at.into()],
        )?;
        self.c.exec(
            "INSERT INTO policy_proposals (id, policy_hash, policy_text, base_policy_hash, proposed_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                (&p.id).into(),
                (&p.policy_hash).into(),
                (&p.policy_text).into(),
                (&p.base_policy_hash).into(),
                (&p.proposed_by).into(),
                p.created_at.into(),
            ],
        )?;
        Ok(())
    }

    /// A policy proposal.
    pub fn policy_proposal(&self, id: &str) -> Result<Option<PolicyProposal>, StoreError> {
        self.c
            .query_opt(
                "SELECT id, policy_hash, policy_text, base_policy_hash, proposed_by, created_at FROM policy_proposals WHERE id = ?1",
                &[id.into()],
            )?
            .map(|r| {
                Ok(PolicyProposal {
                    id: r.text(0)?,
                    policy_hash: r.blob(1)?,
                    policy_text: r.text(2)?,
                    base_policy_hash: r.blob(3)?,
                    proposed_by: r.text(4)?,
                    created_at: r.int(5)?,
                })
            })
            .transpose()
    }

    /// The policy in force: the newest installed one.
    pub fn installed_policy(&self) -> Result<Option<InstalledPolicy>, StoreError> {
        self.c
            .query_opt(
                "SELECT policy_hash, policy_text, proposal_id, installed_at FROM installed_policies ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .map(|r| installed(&r))
            .transpose()
    }

    /// Every policy installed, oldest first.
    pub fn installed_policies(&self) -> Result<Vec<InstalledPolicy>, StoreError> {
        self.c
            .query(
                "SELECT policy_hash, policy_text, proposal_id, installed_at FROM installed_policies ORDER BY seq",
                &[],
            )?
            .iter()
            .map(installed)
            .collect()
    }

    /// Installs a policy. For a proposal, atomically: its governance request becomes
    /// `effective`, and every other open install proposal is `superseded`.
    pub fn install_policy(&self, p: &InstalledPolicy) -> Result<(), StoreError> {
        self.c.exec(
            "INSERT INTO installed_policies (policy_hash, policy_text, proposal_id, installed_at) VALUES (?1, ?2, ?3, ?4)",
            &[
                (&p.policy_hash).into(),
                (&p.policy_text).into(),
                p.proposal_id.as_deref().into(),
                p.installed_at.into(),
            ],
        )?;
        if let Some(id) = &p.proposal_id {
            self.c.exec(
                "UPDATE governance SET state = 'effective' WHERE id = ?1",
                &[id.into()],
            )?;
            self.c.exec(
                "UPDATE governance SET state = 'superseded' WHERE kind = 'install_policy' AND id != ?1 AND state IN ('pending', 'waiting')",
                &[id.into()],
            )?;
        }
        Ok(())
    }

    /// Every request's id and state.
    pub fn all_request_states(&self) -> Result<Vec<(String, RequestState)>, StoreError> {
        self.c
            .query("SELECT id, state FROM requests", &[])?
            .iter()
            .map(|r| {
                let (id, state) = (r.text(0)?, r.text(1)?);
                let state = RequestState::parse(&state).ok_or_else(|| {
                    StoreError::Corrupt(format!("request {id}: unknown state {state:?}"))
                })?;
                Ok((id, state))
            })
            .collect()
    }

    /// Every stored verdict: withdrawal approvals first, then governance votes.
    pub fn all_verdicts(&self) -> Result<Vec<StoredVerdict>, StoreError> {
        let mut out = Vec::new();
        for (governance, sql) in [
            (
                false,
                "SELECT request_id, officer_id, message FROM approvals",
            ),
            (
                true,
                "SELECT governance_id, officer_id, message FROM governance_approvals",
            ),
        ] {
            for r in self.c.query(sql, &[])? {
                out.push(StoredVerdict {
                    governance,
                    request_id: r.text(0)?,
                    officer_id: r.text(1)?,
                    message: r.blob(2)?,
                });
            }
        }
        Ok(out)
    }

    /// Every claim of a replay key or digest.
    pub fn all_claims(&self) -> Result<Vec<StoredClaim>, StoreError> {
        let mut out = Vec::new();
        for (digest, sql) in [
            (
                false,
                "SELECT key_name, replay_key, request_id FROM replay_keys",
            ),
            (
                true,
                "SELECT key_name, digest, request_id FROM signed_digests",
            ),
        ] {
            for r in self.c.query(sql, &[])? {
                out.push(StoredClaim {
                    digest,
                    key_name: r.text(0)?,
                    value: r.text(1)?,
                    request_id: r.text(2)?,
                });
            }
        }
        Ok(out)
    }

    /// Requests pending approval created before `before` (unix seconds), oldest first.
    pub fn pending_created_before(&self, before: i64) -> Result<Vec<String>, StoreError> {
        self.c
            .query(
                "SELECT id FROM requests WHERE state = ?1 AND created_at < ?2 ORDER BY created_at LIMIT 1000",
                &[RequestState::PendingApproval.as_str().into(), before.into()],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }

    /// How many requests are in each state.
    pub fn count_by_state(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.c
            .query("SELECT state, COUNT(*) FROM requests GROUP BY state", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, u64::try_from(r.int(1)?).unwrap_or(0))))
            .collect()
    }

    /// The freeze switch.
    pub fn freeze_state(&self) -> Result<FreezeState, StoreError> {
        self.c
            .query_opt(
                "SELECT frozen, frozen_by, reason, since, freeze_id FROM \"freeze\" WHERE id = 1",
                &[],
            )?
            .map(|r| {
                Ok(FreezeState {
                    frozen: r.boolean(0)?,
                    by: r.text(1)?,
                    reason: r.text(2)?,
                    since: r.int(3)?,
                    freeze_id: r.blob(4)?,
                })
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Sets the freeze switch. Any unfreeze request still open is for an earlier freeze (or
    /// lifted this one) and can never act again: it becomes `superseded` in the same commit.
    pub fn set_freeze(&self, state: &FreezeState) -> Result<(), StoreError> {
        self.c.exec(
            "INSERT INTO \"freeze\" (id, frozen, frozen_by, reason, since, freeze_id) VALUES (1, ?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET frozen = excluded.frozen, frozen_by = excluded.frozen_by, reason = excluded.reason, since = excluded.since, freeze_id = excluded.freeze_id",
            &[
                state.frozen.into(),
                (&state.by).into(),
                (&state.reason).into(),
                state.since.into(),
                (&state.freeze_id).into(),
            ],
        )?;
        self.c.exec(
            "UPDATE governance SET state = 'superseded' WHERE kind = 'unfreeze' AND state IN ('pending', 'waiting')",
            &[],
        )?;
        Ok(())
    }
}

fn approval_params(a: &StoredApproval) -> [Val; 6] {
    [
        (&a.request_id).into(),
        (&a.officer_id).into(),
        a.approve.into(),
        (&a.message).into(),
        (&a.signature).into(),
        a.received_at.into(),
    ]
}

/// A requester's requests denied since a time: counted from the index
/// `requests_by_requester_state_created` alone, so the cost is the day's denials, not every
/// denial ever stored.
pub(crate) const COUNT_DENIED_SINCE: &str =
    "SELECT COUNT(*) FROM requests WHERE requester = ?1 AND state = 'denied' AND created_at >= ?2";

//! Governance: freezes, unfreezes under quorum and delay, policy proposals, votes and
//! installations, and the background tick that settles them and expires old requests.

use kinko_store::{GovernanceKind, GovernanceState};

use super::*;

impl Engine {
    /// Logs a refusal of a governance call (anything but an internal error) and returns it.
    pub(super) async fn refusing<T>(
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
    pub(super) fn check_vote(
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
    pub(super) fn not_voted_yet(&self, id: &str, officer: &str) -> Result<(), Refused> {
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

    /// Stores an accepted governance vote with its record, in one commit. Called under the
    /// governance lock.
    pub(super) async fn record_vote(
        &self,
        principal: &str,
        live: &Live,
        kind: GovernanceKind,
        request_id: &str,
        msg: &ApprovalMessage,
        approval: &SignedApproval,
    ) -> Result<(), Refused> {
        let stored = StoredApproval {
            request_id: request_id.to_string(),
            officer_id: principal.to_string(),
            approve: msg.verdict == Verdict::Approve,
            message: approval.message.clone(),
            signature: approval.signature_bytes(),
            received_at: unix(now()),
        };
        let event = Event::GovernanceVote(rec::GovernanceVote {
            request_id: request_id.to_string(),
            approval: evidence(&live.policy, stored.clone()),
        });
        let id = request_id.to_string();
        self.commit(principal, move |tx| {
            tx.add_governance_approval(&id, kind, &stored)?;
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

    pub(super) async fn freeze_inner(
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
                    signature: approval.signature_bytes(),
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

    pub(super) async fn unfreeze_inner(
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
            && (g.kind != GovernanceKind::Unfreeze || !g.state.is_open())
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
        self.record_vote(
            principal,
            &live,
            GovernanceKind::Unfreeze,
            &request_id,
            &msg,
            approval,
        )
        .await?;
        drop(controls);
        let status = self.settle_unfreeze_locked(&request_id).await?;
        let text = serde_json::to_string(&status).unwrap_or_default();
        Ok((self.store.freeze_state()?, text))
    }

    pub(super) async fn settle_unfreeze(
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
    pub(super) async fn settle_unfreeze_locked(
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
        if !g.state.is_open() {
            return Ok(status);
        }
        if !f.frozen {
            self.store
                .set_governance_state(request_id, GovernanceState::Superseded, None)?;
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
            if !g.state.is_open() || !f.frozen {
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
                tx.set_governance_state(&id, GovernanceState::Effective, reached_now)?;
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
    pub(super) fn unfreeze_status_of(
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

    pub(super) async fn propose_policy_inner(
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

    pub(super) async fn approve_policy_inner(
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
        if !g.as_ref().is_some_and(|g| g.state.is_open()) {
            return Err(Refused::new(
                Reason::WrongState,
                format!("proposal {request_id} is {state}; it never acts again"),
            ));
        }
        if proposal.base_policy_hash != live.policy.hash().0.to_vec() {
            self.store
                .set_governance_state(&request_id, GovernanceState::Superseded, None)?;
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
            GovernanceKind::InstallPolicy,
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
            state: if g.state == GovernanceState::Effective {
                "installed".into()
            } else {
                g.state.to_string()
            },
            status: None,
            current_policy_hash: live.policy.hash().0.to_vec(),
        };
        if !g.state.is_open() {
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

    pub(super) fn install_status_of(
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

    pub(super) async fn settle_policy(&self, id: &str) -> Result<ProposalStatus, Refused> {
        let _g = self.governance_lock.lock().await;
        self.settle_policy_locked(id).await
    }

    /// Records where an open proposal stands and installs it once effective. The caller holds
    /// the governance lock.
    pub(super) async fn settle_policy_locked(&self, id: &str) -> Result<ProposalStatus, Refused> {
        let mut out = self.policy_proposal(id)?;
        let (Some(status), "pending" | "waiting" | "vetoed") =
            (out.status.clone(), out.state.as_str())
        else {
            if out.state == "superseded" {
                self.store
                    .set_governance_state(id, GovernanceState::Superseded, None)?;
            }
            return Ok(out);
        };
        let (state, reached_now) = stored_state(&status);
        if !status.is_effective() {
            self.store.set_governance_state(id, state, reached_now)?;
            out.state = state.to_string();
            return Ok(out);
        }
        self.store
            .set_governance_state(id, GovernanceState::Waiting, reached_now)?;
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
    pub(super) async fn install(
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
        let mut installed = kinko_store::InstalledPolicy {
            policy_hash: proposal.policy_hash.clone(),
            policy_text: proposal.policy_text.clone(),
            proposal_id: Some(proposal.id.clone()),
            installed_at: 0,
        };
        // The keys' records, the installation's record and the installation: one commit. The
        // installation time is its record's (whole seconds), the time the offline verifier
        // counts new address-book entries from; a clock read before the commit could fall in
        // the second before it.
        crate::failpoint::hit("before_install_commit");
        let (installed_at, _) = self
            .commit_with(
                "kinkod",
                move |_| Ok((0, events)),
                move |tx, installed_at, placed| {
                    let record = placed.last().ok_or(StoreError::LogClosed)?;
                    *installed_at = i64::try_from(record.time_ms / 1000).unwrap_or(i64::MAX);
                    installed.installed_at = *installed_at;
                    tx.install_policy(&installed)
                },
            )
            .await?;
        // Entries it adds to address books count from then, whatever `added_at` they claim.
        policy.settle_added_at(
            Some(&live.policy),
            Timestamp::from_second(installed_at).unwrap_or(Timestamp::MAX),
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

    /// Loads the policy installed in the store when it is not the one in force here (another
    /// replica installed it): its keys from the HSM, the same settling of address-book entries,
    /// the switch under the controls lock, and the policy file rewritten.
    pub(super) async fn follow_installed_policy(&self) -> Result<(), Refused> {
        let Some(installed) = self.store.installed_policy()? else {
            return Ok(());
        };
        if installed.policy_hash.as_slice() == self.live().policy.hash().0.as_slice() {
            return Ok(());
        }
        let policy = Policy::from_toml(installed.policy_text.as_bytes())
            .map_err(|e| Refused::internal("the installed policy does not load", e))?;
        if policy.hash().0.as_slice() != installed.policy_hash.as_slice() {
            return Err(Refused::internal(
                "the installed policy's text does not hash to its recorded hash",
                hex::encode(&installed.policy_hash),
            ));
        }
        let policy = settled_policy(policy, &self.store.installed_policies()?);
        let (keys, _) = load_keys(&self.hsm, &policy, false)
            .await
            .map_err(|e| Refused::new(Reason::HsmUnavailable, e))?;
        let _controls = self.controls.write().await;
        if installed.policy_hash.as_slice() == self.live().policy.hash().0.as_slice() {
            // Installed here meanwhile.
            return Ok(());
        }
        // Still the newest installed? An installation here holds this lock from its commit to
        // its switch, so under it the store and the live policy agree; without this re-read, a
        // policy read before a newer local installation would replace it (and the file) until
        // the next tick.
        let newest = self.store.installed_policy()?.map(|p| p.policy_hash);
        if newest.as_deref() != Some(installed.policy_hash.as_slice()) {
            return Ok(());
        }
        let new = Arc::new(Live {
            policy: Arc::new(policy),
            keys,
        });
        match self.live.write() {
            Ok(mut l) => *l = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        tracing::warn!(
            policy = hex::encode(&installed.policy_hash),
            "loaded the policy another replica installed"
        );
        if let Err(e) = write_atomically(&self.policy_path, installed.policy_text.as_bytes()) {
            tracing::error!(path = %self.policy_path.display(), error = %e, "could not rewrite the policy file");
        }
        Ok(())
    }

    /// Background duties: lift unfreezes and install policies whose delay has passed, and
    /// expire requests left pending too long.
    pub(crate) async fn tick(&self) -> Result<(), Refused> {
        // A checkpoint at least every interval while the log grows, and the newest one kept.
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.checkpoint_if_due()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "periodic checkpoint failed"),
            Err(e) => tracing::error!(error = %e, "periodic checkpoint task failed"),
        }
        self.remember_checkpoint();
        if let Err(e) = self.fail_stale_claims() {
            tracing::error!(error = %e, "could not recover claims left by a replica");
        }
        // A policy another replica installed is followed (until then, signing refuses it:
        // the claim's transaction checks the policy in force).
        if let Err(e) = self.follow_installed_policy().await {
            tracing::error!(
                reason = e.message,
                "could not load the policy installed in the store"
            );
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
        for kind in [GovernanceKind::Unfreeze, GovernanceKind::InstallPolicy] {
            for g in self.store.waiting_governance(kind)? {
                let r = if kind == GovernanceKind::Unfreeze {
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

    pub(super) fn governance_message(
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
}

/// How a governance status is stored: its state name, and the quorum instant when reached.
pub(super) fn stored_state(
    status: &kinko_policy::governance::GovernanceStatus,
) -> (GovernanceState, Option<i64>) {
    use kinko_policy::governance::GovernanceStatus as G;
    match status {
        G::PendingQuorum { .. } => (GovernanceState::Pending, None),
        G::Vetoed { .. } => (GovernanceState::Vetoed, None),
        G::Waiting { .. } => (GovernanceState::Waiting, Some(unix(now()))),
        G::Effective { .. } => (GovernanceState::Effective, Some(unix(now()))),
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
pub(super) fn counted_evidence(
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

pub(super) fn subject_kind(subject: &Subject) -> &'static str {
    match subject {
        Subject::Withdrawal { .. } => "withdrawal",
        Subject::InstallPolicy { .. } => "policy installation",
        Subject::Freeze { .. } => "freeze",
        Subject::Unfreeze { .. } => "unfreeze",
    }
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

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".new");
    let tmp = path.with_file_name(tmp_name);
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

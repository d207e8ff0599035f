//! The gRPC services: authenticate the caller by certificate and role, translate messages, call
//! the engine. No policy logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use kinko_policy::{SignedApproval, Verdict};
use kinko_proto::v1 as pb;
use kinko_store::{Request as StoredRequest, RequestState};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::Principals;
use crate::config::Role;
use crate::engine::Engine;
use crate::status::{Reason, Refused, status};

/// Shared by every service.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) engine: Arc<Engine>,
    pub(crate) principals: Arc<Principals>,
    pub(crate) watches: Arc<Watches>,
}

/// Open WatchRequest streams per principal, bounded.
pub(crate) struct Watches {
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    max: usize,
}

/// One open watch stream; closed when dropped (the stream's task ends).
pub(crate) struct WatchSlot {
    watches: Arc<Watches>,
    principal: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.watches.open.lock()
            && let Some(n) = m.get_mut(&self.principal)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.principal);
            }
        }
    }
}

impl Watches {
    pub(crate) fn new(max: usize) -> Self {
        Watches {
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
            max,
        }
    }

    fn open(self: &Arc<Self>, principal: &str) -> Result<WatchSlot, Status> {
        let mut m = self
            .open
            .lock()
            .map_err(|_| status(Reason::Internal, "watch table poisoned"))?;
        let n = m.entry(principal.to_string()).or_insert(0);
        if *n >= self.max {
            return Err(status(
                Reason::TooManyWatches,
                &format!(
                    "{principal} already has {} watch streams open; close one first",
                    self.max
                ),
            ));
        }
        *n += 1;
        Ok(WatchSlot {
            watches: Arc::clone(self),
            principal: principal.to_string(),
        })
    }
}

fn chain_to_pb(c: kinko_intent::Chain) -> pb::Chain {
    use kinko_intent::Chain;
    match c {
        Chain::Ethereum => pb::Chain::Ethereum,
        Chain::Bitcoin => pb::Chain::Bitcoin,
        Chain::Solana => pb::Chain::Solana,
    }
}

fn state_to_pb(s: RequestState) -> pb::RequestState {
    match s {
        RequestState::Received => pb::RequestState::Received,
        RequestState::Denied => pb::RequestState::Denied,
        RequestState::PendingApproval => pb::RequestState::PendingApproval,
        RequestState::Approved | RequestState::Signing => pb::RequestState::Approved,
        RequestState::Signed => pb::RequestState::Signed,
        RequestState::Rejected => pb::RequestState::Rejected,
        RequestState::Expired => pb::RequestState::Expired,
        RequestState::Cancelled => pb::RequestState::Cancelled,
        RequestState::Failed => pb::RequestState::Failed,
        _ => pb::RequestState::Unspecified,
    }
}

impl Api {
    /// The caller of `req` (holding `role`, when given). A refusal for a missing, unpinned or
    /// revoked certificate or a missing role is logged as a refusal record (at most a few per
    /// second: beyond that only counted, so a flood of refused calls cannot fill the disk).
    async fn who<T>(
        &self,
        req: &Request<T>,
        role: Option<Role>,
    ) -> Result<crate::auth::Principal, Status> {
        let r = match role {
            Some(role) => self.principals.authorize(req, role),
            None => self.principals.authorize_any(req),
        };
        if let Err(s) = &r {
            let reason = s
                .metadata()
                .get("kinko-reason")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if reason == Reason::Unauthenticated.as_str() || reason == Reason::RoleRequired.as_str()
            {
                let who = req
                    .peer_certs()
                    .and_then(|c| self.principals.by_certificates(&c))
                    .map_or_else(|| "unauthenticated".to_string(), |p| p.name);
                let message = s.message();
                let message = message
                    .strip_prefix(&format!("[{reason}] "))
                    .unwrap_or(message);
                self.engine.log_auth_refusal(&who, reason, message).await;
            }
        }
        r
    }

    fn to_pb(&self, r: &StoredRequest, with_payload: bool) -> Result<pb::Request, Status> {
        let intent: Option<kinko_intent::Intent> = serde_json::from_str(&r.new.intent_json).ok();
        let decision: serde_json::Value =
            serde_json::from_str(&r.new.decision_json).unwrap_or(serde_json::Value::Null);
        let status = self.engine.approval_status(r);
        let approvals = self
            .engine
            .store()
            .approvals(&r.new.id)
            .map_err(|e| Status::from(Refused::from(e)))?
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let (counts, note) = status.get(i).cloned().unwrap_or_default();
                let msg = kinko_policy::ApprovalMessage::from_bytes(&a.message).ok();
                pb::ApprovalRecord {
                    officer_id: a.officer_id,
                    verdict: if a.approve {
                        pb::Verdict::Approve
                    } else {
                        pb::Verdict::Reject
                    } as i32,
                    issued_at_unix: msg.as_ref().map_or(0, |m| m.issued_at),
                    expires_at_unix: msg.as_ref().map_or(0, |m| m.expires_at),
                    counts,
                    note,
                }
            })
            .collect();
        let quorum = decision
            .get("quorum")
            .and_then(|q| q.get("count"))
            .and_then(|c| c.as_u64());
        Ok(pb::Request {
            request_id: r.new.id.clone(),
            state: state_to_pb(r.state) as i32,
            key_name: r.new.key_name.clone(),
            chain: chain_to_pb(r.new.chain) as i32,
            network: r.new.network.clone(),
            requester: r.new.requester.clone(),
            reference: r.new.reference.clone(),
            intent_json: r.new.intent_json.clone(),
            intent_digest: r.new.intent_digest.to_vec(),
            intent_text: intent.map(|i| i.render()).unwrap_or_default(),
            policy_hash: r.new.policy_hash.to_vec(),
            decision: Some(pb::Decision {
                allowed: r.state != RequestState::Denied,
                rule: decision
                    .get("rule")
                    .and_then(|x| x.get("name"))
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string(),
                reason: decision
                    .get("reason")
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string(),
                approvals_required: quorum.and_then(|q| u32::try_from(q).ok()).unwrap_or(0),
                explanation_json: r.new.decision_json.clone(),
            }),
            approvals,
            created_at_unix: r.new.now,
            updated_at_unix: r.updated_at,
            signed_transaction: r.signed_transaction.clone().unwrap_or_default(),
            transaction_id: r.transaction_id.clone().unwrap_or_default(),
            payload: if with_payload {
                r.new.payload.clone()
            } else {
                Vec::new()
            },
            final_reason: r.final_reason.clone().unwrap_or_default(),
        })
    }

    fn get(&self, id: &str, with_payload: bool) -> Result<pb::Request, Status> {
        let r = self
            .engine
            .store()
            .get_request(id)
            .map_err(|e| Status::from(Refused::from(e)))?;
        self.to_pb(&r, with_payload)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::withdrawal_service_server::WithdrawalService for Api {
    async fn submit_withdrawal(
        &self,
        req: Request<pb::SubmitWithdrawalRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let who = self.who(&req, Some(Role::Requester)).await?;
        let r = self.engine.submit(&who.name, req.into_inner()).await?;
        Ok(Response::new(self.to_pb(&r, false)?))
    }

    async fn get_request(
        &self,
        req: Request<pb::RequestId>,
    ) -> Result<Response<pb::Request>, Status> {
        let who = self.who(&req, Some(Role::Requester)).await?;
        let r = self.get(&req.get_ref().request_id, false)?;
        if r.requester != who.name {
            return Err(status(
                Reason::NotFound,
                "no such request for this requester",
            ));
        }
        Ok(Response::new(r))
    }

    type WatchRequestStream = BoxStream<pb::RequestEvent>;

    async fn watch_request(
        &self,
        req: Request<pb::RequestId>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        let who = self.who(&req, Some(Role::Requester)).await?;
        let id = req.into_inner().request_id;
        let first = self.get(&id, false)?;
        if first.requester != who.name {
            return Err(status(
                Reason::NotFound,
                "no such request for this requester",
            ));
        }
        let slot = self.watches.open(&who.name)?;
        let mut changes = self.engine.subscribe();
        let api = self.clone();
        let stream = async_stream(move |tx| async move {
            let _slot = slot;
            let mut last = first;
            if tx
                .send(Ok(pb::RequestEvent {
                    request: Some(last.clone()),
                }))
                .await
                .is_err()
            {
                return;
            }
            loop {
                if is_final(last.state) {
                    return;
                }
                // A client that went away frees its slot at once, not at the next change.
                let next = tokio::select! {
                    () = tx.closed() => return,
                    next = changes.recv() => next,
                };
                match next {
                    Ok(changed) if changed != id => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
                let Ok(now) = api.get(&id, false) else { return };
                if now.state != last.state || now.approvals.len() != last.approvals.len() {
                    last = now;
                    if tx
                        .send(Ok(pb::RequestEvent {
                            request: Some(last.clone()),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn cancel_request(
        &self,
        req: Request<pb::CancelRequestRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let who = self.who(&req, Some(Role::Requester)).await?;
        let m = req.into_inner();
        let r = self.get(&m.request_id, false)?;
        if r.requester != who.name {
            return Err(status(
                Reason::NotFound,
                "no such request for this requester",
            ));
        }
        self.engine
            .cancel(&who.name, &m.request_id, &m.reason)
            .await?;
        Ok(Response::new(self.get(&m.request_id, false)?))
    }
}

fn is_final(state: i32) -> bool {
    matches!(
        pb::RequestState::try_from(state),
        Ok(pb::RequestState::Denied
            | pb::RequestState::Signed
            | pb::RequestState::Rejected
            | pb::RequestState::Expired
            | pb::RequestState::Cancelled
            | pb::RequestState::Failed)
    )
}

/// A server stream fed by a task.
fn async_stream<T, F, Fut>(f: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

impl Api {
    /// An officer's governance vote: the caller (an officer) and the validated signed message;
    /// a malformed one is refused and logged.
    async fn governance_vote(
        &self,
        req: &Request<pb::GovernanceApproval>,
    ) -> Result<(crate::auth::Principal, SignedApproval), Status> {
        let who = self.who(req, Some(Role::Officer)).await?;
        match governance_approval(req.get_ref()) {
            Ok(a) => Ok((who, a)),
            Err(r) => Err(self
                .malformed(&who.name, &req.get_ref().subject_id, r)
                .await),
        }
    }

    /// An officer's withdrawal verdict: the caller, the request id and the validated signed
    /// message; a malformed one is refused and logged.
    async fn withdrawal_vote(
        &self,
        req: Request<pb::SignedApproval>,
    ) -> Result<(crate::auth::Principal, String, SignedApproval), Status> {
        let who = self.who(&req, Some(Role::Officer)).await?;
        let m = req.into_inner();
        let id = m.request_id.clone();
        match signed_approval(m) {
            Ok((request_id, a)) => Ok((who, request_id, a)),
            Err(r) => Err(self.malformed(&who.name, &id, r).await),
        }
    }

    /// A malformed approval or governance call is refused and logged as a refusal record (the
    /// request id it names, when that id is itself well formed).
    async fn malformed(&self, who: &str, id: &str, r: Refused) -> Status {
        let id = (!id.is_empty()
            && id.len() <= kinko_policy::approval::MAX_ID_LEN
            && id.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .then_some(id);
        self.engine.refuse(who, id, r).await.into()
    }
}

fn signed_approval(m: pb::SignedApproval) -> Result<(String, SignedApproval), Refused> {
    let a = kinko_proto::validate::signed_approval(m).map_err(Refused::from)?;
    let approval = SignedApproval::from_parts(a.message, &a.signature)
        .map_err(|e| Refused::new(Reason::InvalidRequest, e.to_string()))?;
    Ok((a.subject_id, approval))
}

#[tonic::async_trait]
impl pb::approval_service_server::ApprovalService for Api {
    async fn list_pending(
        &self,
        req: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        self.who(&req, Some(Role::Officer)).await?;
        let m = req.into_inner();
        let (after, limit) = kinko_proto::validate::page(&m).map_err(Refused::from)?;
        let pending = self
            .engine
            .store()
            .list_by_state_page(RequestState::PendingApproval, after, limit)
            .map_err(|e| Status::from(Refused::from(e)))?;
        let next = if pending.len() == limit as usize {
            pending.last().map(|r| r.new.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let requests = pending
            .iter()
            .map(|r| self.to_pb(r, false))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListPendingResponse {
            requests,
            next_after_request_id: next,
        }))
    }

    async fn get_request(
        &self,
        req: Request<pb::RequestId>,
    ) -> Result<Response<pb::Request>, Status> {
        self.who(&req, Some(Role::Officer)).await?;
        Ok(Response::new(self.get(&req.get_ref().request_id, true)?))
    }

    async fn approve(
        &self,
        req: Request<pb::SignedApproval>,
    ) -> Result<Response<pb::Request>, Status> {
        let (who, request_id, a) = self.withdrawal_vote(req).await?;
        let r = self
            .engine
            .vote(&who.name, &request_id, a, Verdict::Approve)
            .await?;
        Ok(Response::new(self.to_pb(&r, false)?))
    }

    async fn reject(
        &self,
        req: Request<pb::SignedApproval>,
    ) -> Result<Response<pb::Request>, Status> {
        let (who, request_id, a) = self.withdrawal_vote(req).await?;
        let r = self
            .engine
            .vote(&who.name, &request_id, a, Verdict::Reject)
            .await?;
        Ok(Response::new(self.to_pb(&r, false)?))
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Api {
    type StreamRecordsStream = BoxStream<pb::AuditRecord>;

    async fn stream_records(
        &self,
        req: Request<pb::StreamRecordsRequest>,
    ) -> Result<Response<Self::StreamRecordsStream>, Status> {
        self.who(&req, Some(Role::Auditor)).await?;
        let mut from = req.into_inner().from_sequence;
        let store = Arc::clone(self.engine.store());
        let stream = async_stream(move |tx| async move {
            loop {
                let a = Arc::clone(&store);
                let batch = tokio::task::spawn_blocking(move || a.read_log_lines(from, 1000)).await;
                let lines = match batch {
                    Ok(Ok(lines)) => lines,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(status(Reason::Internal, &e.to_string()))).await;
                        return;
                    }
                    Err(_) => return,
                };
                if lines.is_empty() {
                    return;
                }
                for json in lines {
                    if tx
                        .send(Ok(pb::AuditRecord {
                            sequence: from,
                            json,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    from += 1;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn latest_checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        self.who(&req, Some(Role::Auditor)).await?;
        let size = if req.get_ref().witnessed {
            let w = self.engine.witnessing().ok_or_else(|| {
                status(Reason::NotFound, "this kinkod has no witnesses configured")
            })?;
            match w.quorum_size() {
                0 => {
                    return Err(status(
                        Reason::NotFound,
                        "no checkpoint has been cosigned by the witness quorum yet",
                    ));
                }
                q => q,
            }
        } else {
            self.engine
                .store()
                .latest_checkpoint_sized()
                .ok_or_else(|| status(Reason::NotFound, "no checkpoint yet"))?
                .0
        };
        let store = Arc::clone(self.engine.store());
        let note = tokio::task::spawn_blocking(move || store.cosigned_checkpoint(size))
            .await
            .map_err(|e| status(Reason::Internal, &e.to_string()))?
            .map_err(|e| status(Reason::AuditUnavailable, &e.to_string()))?
            .ok_or_else(|| status(Reason::NotFound, "no checkpoint of that size"))?;
        let root = self
            .engine
            .store()
            .root_at(size)
            .map_err(|e| status(Reason::Internal, &e.to_string()))?;
        Ok(Response::new(pb::Checkpoint {
            signed_note: note.to_string(),
            tree_size: size,
            root_hash: root.to_vec(),
        }))
    }

    async fn inclusion_proof(
        &self,
        req: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::Proof>, Status> {
        self.who(&req, Some(Role::Auditor)).await?;
        let m = req.into_inner();
        let hashes = self
            .engine
            .store()
            .inclusion_proof(m.sequence, m.tree_size)
            .map_err(|e| status(Reason::InvalidRequest, &e.to_string()))?;
        Ok(Response::new(pb::Proof {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn consistency_proof(
        &self,
        req: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::Proof>, Status> {
        self.who(&req, Some(Role::Auditor)).await?;
        let m = req.into_inner();
        let hashes = self
            .engine
            .store()
            .consistency_proof(m.old_size, m.new_size)
            .map_err(|e| status(Reason::InvalidRequest, &e.to_string()))?;
        Ok(Response::new(pb::Proof {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }
}

fn governance_approval(m: &pb::GovernanceApproval) -> Result<SignedApproval, Refused> {
    let a = kinko_proto::validate::governance_approval(m.clone()).map_err(Refused::from)?;
    SignedApproval::from_parts(a.message, &a.signature)
        .map_err(|e| Refused::new(Reason::InvalidRequest, e.to_string()))
}

/// How far a governance change has got: approvals required and counted, and when it takes
/// effect once its quorum is reached.
fn governance_progress(
    status: &kinko_policy::governance::GovernanceStatus,
) -> (u32, usize, Option<jiff::Timestamp>) {
    use kinko_policy::governance::GovernanceStatus as G;
    match status {
        G::PendingQuorum { quorum } => (quorum.required.count, quorum.counted.len(), None),
        G::Waiting {
            quorum,
            effective_at,
        }
        | G::Effective {
            quorum,
            effective_at,
        } => (
            quorum.required.count,
            quorum.counted.len(),
            effective_at.parse::<jiff::Timestamp>().ok(),
        ),
        _ => (0, 0, None),
    }
}

impl Api {
    fn freeze_to_pb(&self, f: &kinko_store::FreezeState) -> Result<pb::FreezeState, Status> {
        let store = self.engine.store();
        let open = if f.frozen {
            store
                .open_governance(kinko_store::GovernanceKind::Unfreeze)
                .map_err(|e| Status::from(Refused::from(e)))?
        } else {
            None
        };
        let (approvals, at) = match &open {
            Some(g) => {
                let (_, counted, at) = governance_progress(&self.engine.unfreeze_status(&g.id)?);
                (counted, at)
            }
            None => (0, None),
        };
        Ok(pb::FreezeState {
            frozen: f.frozen,
            frozen_by: f.by.clone(),
            reason: f.reason.clone(),
            since_unix: f.since,
            unfreeze_approvals: u32::try_from(approvals).unwrap_or(u32::MAX),
            unfreeze_at_unix: at.map_or(0, |t| t.as_second()),
            unfreeze_request_id: open.map(|g| g.id).unwrap_or_default(),
            freeze_id: f.freeze_id.clone(),
        })
    }

    fn proposal_to_pb(&self, p: &crate::engine::ProposalStatus) -> pb::PolicyProposal {
        let (required, counted, effective) =
            p.status.as_ref().map_or((0, 0, None), governance_progress);
        pb::PolicyProposal {
            proposal_id: p.proposal.id.clone(),
            policy_hash: p.proposal.policy_hash.clone(),
            approvals_required: required,
            approvals_counted: u32::try_from(counted).unwrap_or(u32::MAX),
            effective_at_unix: effective.map_or(0, |t| t.as_second()),
            state: p.state.clone(),
            current_policy_hash: p.current_policy_hash.clone(),
            policy_text: p.proposal.policy_text.clone(),
            proposed_by: p.proposal.proposed_by.clone(),
            status_json: p
                .status
                .as_ref()
                .and_then(|s| serde_json::to_string(s).ok())
                .unwrap_or_default(),
        }
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for Api {
    async fn propose_policy(
        &self,
        req: Request<pb::ProposePolicyRequest>,
    ) -> Result<Response<pb::PolicyProposal>, Status> {
        let who = self.who(&req, Some(Role::Admin)).await?;
        let p = self
            .engine
            .propose_policy(&who.name, &req.get_ref().policy_text)
            .await?;
        let status = self.engine.policy_proposal(&p.id)?;
        Ok(Response::new(self.proposal_to_pb(&status)))
    }

    async fn approve_policy(
        &self,
        req: Request<pb::GovernanceApproval>,
    ) -> Result<Response<pb::PolicyProposal>, Status> {
        let (who, a) = self.governance_vote(&req).await?;
        let p = self.engine.approve_policy(&who.name, a).await?;
        Ok(Response::new(self.proposal_to_pb(&p)))
    }

    async fn get_policy_proposal(
        &self,
        req: Request<pb::ProposalId>,
    ) -> Result<Response<pb::PolicyProposal>, Status> {
        self.who(&req, None).await?;
        let p = self.engine.policy_proposal(&req.get_ref().proposal_id)?;
        Ok(Response::new(self.proposal_to_pb(&p)))
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyInfo>, Status> {
        self.who(&req, None).await?;
        let p = self
            .engine
            .store()
            .installed_policy()
            .map_err(|e| Status::from(Refused::from(e)))?
            .ok_or_else(|| status(Reason::NotFound, "no policy installed"))?;
        Ok(Response::new(pb::PolicyInfo {
            policy_hash: p.policy_hash,
            policy_text: p.policy_text,
            installed_at_unix: p.installed_at,
            proposal_id: p.proposal_id.unwrap_or_default(),
        }))
    }

    async fn freeze(
        &self,
        req: Request<pb::GovernanceApproval>,
    ) -> Result<Response<pb::FreezeState>, Status> {
        let (who, a) = self.governance_vote(&req).await?;
        let f = self.engine.freeze(&who.name, a).await?;
        Ok(Response::new(self.freeze_to_pb(&f)?))
    }

    async fn unfreeze(
        &self,
        req: Request<pb::GovernanceApproval>,
    ) -> Result<Response<pb::FreezeState>, Status> {
        let (who, a) = self.governance_vote(&req).await?;
        let (f, status_json) = self.engine.unfreeze(&who.name, a).await?;
        let mut out = self.freeze_to_pb(&f)?;
        if f.frozen {
            out.reason = format!("{}; unfreeze: {status_json}", f.reason);
        }
        Ok(Response::new(out))
    }

    async fn get_freeze_state(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::FreezeState>, Status> {
        self.who(&req, None).await?;
        let f = self
            .engine
            .store()
            .freeze_state()
            .map_err(|e| Status::from(Refused::from(e)))?;
        Ok(Response::new(self.freeze_to_pb(&f)?))
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.who(&req, None).await?;
        let mut keys: Vec<pb::KeyInfo> = self
            .engine
            .keys()
            .into_iter()
            .map(|k| pb::KeyInfo {
                name: k.name,
                chain: chain_to_pb(k.chain) as i32,
                network: k.network.to_string(),
                hsm_label: k.hsm_label,
                public_key: k.public_key,
                address: k.address,
            })
            .collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListKeysResponse { keys }))
    }
}

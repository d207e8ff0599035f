//! Governance as requests: installing a policy, freezing, unfreezing — the same approval
//! machinery with distinct subjects (see [`crate::approval`]).
//!
//! * **Install**: officers approve `Subject::InstallPolicy { request_id, new_policy_hash }` under
//!   the *current* policy's hash, with the current policy's install quorum. The new policy takes
//!   effect `time_lock` after the later of (a) the time the daemon recorded the quorum as reached
//!   and (b) the latest `issued_at` among the counted approvals — so neither a database edit nor
//!   one officer's back-dated approval shortens the lock by more than the other allows. Until
//!   then, one valid *reject* from any officer holding a veto role (any officer when none are
//!   listed) vetoes it for good; a veto need not be unexpired, only validly signed, bound to this
//!   proposal, and issued before the effective time.
//! * **Freeze**: one valid approval of `Subject::Freeze` from an officer with a freeze role.
//! * **Unfreeze**: the unfreeze quorum approves `Subject::Unfreeze`, which names the freeze it
//!   lifts (the leaf hash of its audit record); it takes effect `delay` after the quorum, computed
//!   as for installs; one valid reject from an officer with a freeze role during the delay vetoes
//!   it.
//!
//! The proposer of a policy never counts toward its install quorum, even when it is also an
//! officer. Each vote is checked on its own when it is received ([`check_vote`]): a vote that
//! could never count is refused there, so it is neither stored nor logged.
//!
//! Approvals are checked for validity at the instant the quorum was reached, not at `now`:
//! they may have expired during the time-lock without undoing the quorum.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::approval::{
    ApprovalMessage, FreezeId, MAX_APPROVALS, MAX_CLOCK_SKEW_SECS, NotCounted, QuorumResult,
    SignedApproval, Subject, Verdict, check_one, evaluate_quorum,
};
use crate::model::{Policy, PolicyHash, QuorumRequirement};

/// Where a governance change (install or unfreeze) stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GovernanceStatus {
    /// The quorum is not (or was not, at the recorded instant) reached.
    PendingQuorum {
        /// The quorum evaluation.
        quorum: QuorumResult,
    },
    /// An officer vetoed.
    Vetoed {
        /// The officers who vetoed.
        by: Vec<String>,
    },
    /// The quorum is reached; the change waits out its time-lock or delay.
    Waiting {
        /// When it takes effect, RFC 3339.
        effective_at: String,
        /// The quorum evaluation.
        quorum: QuorumResult,
    },
    /// The change is in effect.
    Effective {
        /// When it took effect, RFC 3339.
        effective_at: String,
        /// The quorum evaluation.
        quorum: QuorumResult,
    },
}

impl GovernanceStatus {
    /// Whether the change is in effect.
    pub fn is_effective(&self) -> bool {
        matches!(self, GovernanceStatus::Effective { .. })
    }
}

fn valid_vetoes(
    policy: &Policy,
    subject: &Subject,
    veto_roles: &[String],
    approvals: &[SignedApproval],
    now: i64,
    before: Option<i64>,
) -> Vec<String> {
    let mut by: Vec<String> = Vec::new();
    for a in approvals.iter().take(MAX_APPROVALS) {
        let Ok(msg) = ApprovalMessage::from_bytes(&a.message) else {
            continue;
        };
        let Some(officer) = policy.officer(&msg.officer_id) else {
            continue;
        };
        let eligible = veto_roles.is_empty() || officer.has_any_role(veto_roles);
        let timely = msg.issued_at <= now.saturating_add(MAX_CLOCK_SKEW_SECS)
            && before.is_none_or(|b| msg.issued_at < b);
        if msg.verdict == Verdict::Reject
            && eligible
            && timely
            && msg.policy_hash == policy.hash()
            && msg.subject == *subject
            && officer.signed(a)
            && !by.contains(&officer.id)
        {
            by.push(officer.id.clone());
        }
    }
    by
}

/// What a governance change needs: its quorum, its wait, who may veto it, and who never counts.
struct Rules<'a> {
    requirement: &'a QuorumRequirement,
    wait: SignedDuration,
    veto_roles: &'a [String],
    /// The proposer (never counted toward the quorum).
    excluded: Option<&'a str>,
}

fn rules<'a>(
    policy: &'a Policy,
    subject: &Subject,
    proposer: Option<&'a str>,
) -> Option<Rules<'a>> {
    let g = policy.governance();
    match subject {
        Subject::InstallPolicy { .. } => Some(Rules {
            requirement: &g.install.quorum,
            wait: g.install.time_lock,
            veto_roles: &g.install.veto_roles,
            excluded: proposer,
        }),
        Subject::Unfreeze { .. } => Some(Rules {
            requirement: &g.unfreeze.quorum,
            wait: g.unfreeze.delay,
            veto_roles: &g.freeze.roles,
            excluded: None,
        }),
        Subject::Freeze { .. } | Subject::Withdrawal { .. } => None,
    }
}

fn timed_change(
    policy: &Policy,
    subject: &Subject,
    rules: &Rules<'_>,
    approvals: &[SignedApproval],
    quorum_reached_at: Option<Timestamp>,
    now: Timestamp,
) -> GovernanceStatus {
    let (wait, veto_roles) = (rules.wait, rules.veto_roles);
    let mut req = rules.requirement.clone();
    // Rejects are vetoes here, handled below with the veto roles.
    req.reject_blocks = false;
    let at = quorum_reached_at.map_or(now, |q| q.min(now));
    let quorum = evaluate_quorum(policy, &req, subject, rules.excluded, approvals, at);
    if !quorum.is_satisfied() {
        let by = valid_vetoes(
            policy,
            subject,
            veto_roles,
            approvals,
            now.as_second(),
            None,
        );
        if !by.is_empty() {
            return GovernanceStatus::Vetoed { by };
        }
        return GovernanceStatus::PendingQuorum { quorum };
    }
    let latest_issued = quorum
        .counted
        .iter()
        .map(|c| c.issued_at)
        .max()
        .unwrap_or(i64::MIN);
    let start = Timestamp::from_second(latest_issued).map_or(at, |t| t.max(at));
    let effective = start.checked_add(wait).unwrap_or(Timestamp::MAX);
    let by = valid_vetoes(
        policy,
        subject,
        veto_roles,
        approvals,
        now.as_second(),
        Some(effective.as_second()),
    );
    if !by.is_empty() {
        return GovernanceStatus::Vetoed { by };
    }
    if now < effective {
        GovernanceStatus::Waiting {
            effective_at: effective.to_string(),
            quorum,
        }
    } else {
        GovernanceStatus::Effective {
            effective_at: effective.to_string(),
            quorum,
        }
    }
}

/// The status of installing the policy whose file hashes to `new_policy_hash`, proposed by
/// `proposer`, decided by the `current` policy. The proposer never counts toward the quorum.
/// `quorum_reached_at` is when the quorum was first satisfied (the daemon stores that instant;
/// an auditor takes it from the log); pass `None` while it has not.
pub fn install_status(
    current: &Policy,
    request_id: &str,
    new_policy_hash: PolicyHash,
    proposer: &str,
    approvals: &[SignedApproval],
    quorum_reached_at: Option<Timestamp>,
    now: Timestamp,
) -> GovernanceStatus {
    let subject = Subject::InstallPolicy {
        request_id: request_id.to_string(),
        new_policy_hash,
    };
    change_status(
        current,
        &subject,
        Some(proposer),
        approvals,
        quorum_reached_at,
        now,
    )
}

/// The status of an unfreeze request lifting the freeze `freeze_id` (see [`install_status`] for
/// `quorum_reached_at`).
pub fn unfreeze_status(
    policy: &Policy,
    request_id: &str,
    freeze_id: FreezeId,
    approvals: &[SignedApproval],
    quorum_reached_at: Option<Timestamp>,
    now: Timestamp,
) -> GovernanceStatus {
    let subject = Subject::Unfreeze {
        request_id: request_id.to_string(),
        freeze_id,
    };
    change_status(policy, &subject, None, approvals, quorum_reached_at, now)
}

/// The status of a timed governance change (install or unfreeze) for `subject`.
pub fn change_status(
    policy: &Policy,
    subject: &Subject,
    proposer: Option<&str>,
    approvals: &[SignedApproval],
    quorum_reached_at: Option<Timestamp>,
    now: Timestamp,
) -> GovernanceStatus {
    match rules(policy, subject, proposer) {
        Some(r) => timed_change(policy, subject, &r, approvals, quorum_reached_at, now),
        None => GovernanceStatus::PendingQuorum {
            quorum: evaluate_quorum(policy, &freeze_requirement(policy), subject, None, &[], now),
        },
    }
}

/// Checks one governance vote when it is received, on its own: it decodes; is by a known
/// officer with a valid strict signature; binds `policy`, `subject` (kind, request id, and the
/// new policy's hash or the lifted freeze); is within its lifetime and unexpired at `now`. An
/// approval must be one that could count (a required role; not the proposer); a reject must
/// come from an officer who may veto. A vote that fails any of these is refused with the reason.
pub fn check_vote(
    policy: &Policy,
    subject: &Subject,
    proposer: Option<&str>,
    approval: &SignedApproval,
    now: Timestamp,
) -> Result<ApprovalMessage, NotCounted> {
    let freeze;
    let r = match rules(policy, subject, proposer) {
        Some(r) => r,
        None => {
            freeze = freeze_requirement(policy);
            Rules {
                requirement: &freeze,
                wait: SignedDuration::ZERO,
                veto_roles: &[],
                excluded: None,
            }
        }
    };
    let msg = check_one(
        policy,
        subject,
        r.requirement.lifetime.as_secs(),
        approval,
        now.as_second(),
    )
    .map_err(|(_, why)| why)?;
    let officer = policy
        .officer(&msg.officer_id)
        .ok_or(NotCounted::UnknownOfficer)?;
    match msg.verdict {
        Verdict::Approve => {
            if r.excluded == Some(officer.id.as_str()) {
                return Err(NotCounted::IsRequester);
            }
            if !officer.has_any_role(&r.requirement.roles) {
                return Err(NotCounted::MissingRole);
            }
        }
        Verdict::Reject => {
            if matches!(subject, Subject::Freeze { .. }) {
                return Err(NotCounted::RejectNotBlocking);
            }
            if !(r.veto_roles.is_empty() || officer.has_any_role(r.veto_roles)) {
                return Err(NotCounted::MissingRole);
            }
        }
    }
    Ok(msg)
}

/// The one-officer requirement for a freeze.
pub fn freeze_requirement(policy: &Policy) -> QuorumRequirement {
    let f = &policy.governance().freeze;
    QuorumRequirement {
        count: 1,
        roles: f.roles.clone(),
        distinct_groups: 0,
        lifetime: f.lifetime,
        reject_blocks: false,
    }
}

/// Whether a freeze request is approved: one valid approval from an officer with a freeze role.
pub fn freeze_status(
    policy: &Policy,
    request_id: &str,
    approvals: &[SignedApproval],
    now: Timestamp,
) -> QuorumResult {
    let subject = Subject::Freeze {
        request_id: request_id.to_string(),
    };
    evaluate_quorum(
        policy,
        &freeze_requirement(policy),
        &subject,
        None,
        approvals,
        now,
    )
}

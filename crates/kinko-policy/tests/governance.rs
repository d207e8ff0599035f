//! Governance as requests: install with quorum, time-lock and veto; freeze; unfreeze.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jiff::Timestamp;
use kinko_policy::approval::NotCounted;
use kinko_policy::approval::Subject;
use kinko_policy::governance::check_vote;
use kinko_policy::governance::{GovernanceStatus, freeze_status, install_status, unfreeze_status};
use kinko_policy::{FreezeId, Policy, PolicyHash, Verdict};

/// The freeze the unfreezes below lift (the leaf hash of its audit record).
const FREEZE: FreezeId = FreezeId([0x5a; 32]);

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

const T0: i64 = 1_783_299_600;
const H: i64 = 3600;

fn new_policy_hash() -> PolicyHash {
    let edited = EXAMPLE.replace("max_amount = \"500\"", "max_amount = \"400\"");
    Policy::from_toml(edited.as_bytes()).unwrap().hash()
}

fn install(p: &Policy, who: &str, verdict: Verdict, issued: i64) -> kinko_policy::SignedApproval {
    let s = Subject::InstallPolicy {
        request_id: "gov-1".into(),
        new_policy_hash: new_policy_hash(),
    };
    approve(p.hash(), &s, who, verdict, issued, issued + 24 * H)
}

#[test]
fn install_needs_admin_quorum_then_waits_out_the_time_lock() {
    let p = example();
    let nh = new_policy_hash();
    // Two admins: pending.
    let two = vec![
        install(&p, "alice", Verdict::Approve, T0),
        install(&p, "carol", Verdict::Approve, T0),
    ];
    assert!(matches!(
        install_status(&p, "gov-1", nh, "ops-admin", &two, None, t(T0 + 60)),
        GovernanceStatus::PendingQuorum { .. }
    ));
    // Approver bob is no admin: still pending.
    let mut three = two.clone();
    three.push(install(&p, "bob", Verdict::Approve, T0));
    assert!(matches!(
        install_status(&p, "gov-1", nh, "ops-admin", &three, None, t(T0 + 60)),
        GovernanceStatus::PendingQuorum { .. }
    ));
    // Erin (compliance, admin): quorum, then the 48 h time-lock from the quorum instant.
    let mut q = two;
    q.push(install(&p, "erin", Verdict::Approve, T0 + 600));
    let reached = t(T0 + 700);
    match install_status(
        &p,
        "gov-1",
        nh,
        "ops-admin",
        &q,
        Some(reached),
        t(T0 + 700 + 48 * H - 1),
    ) {
        GovernanceStatus::Waiting { effective_at, .. } => {
            assert_eq!(effective_at, t(T0 + 700 + 48 * H).to_string())
        }
        other => panic!("{other:?}"),
    }
    // Effective after 48 h, even though the approvals (24 h lifetime) have expired by then:
    // they are judged at the recorded quorum instant.
    let st = install_status(
        &p,
        "gov-1",
        nh,
        "ops-admin",
        &q,
        Some(reached),
        t(T0 + 700 + 48 * H),
    );
    assert!(st.is_effective(), "{st:?}");
    // The approvals bind the new hash: they do not install another policy.
    assert!(matches!(
        install_status(
            &p,
            "gov-1",
            PolicyHash([1; 32]),
            "ops-admin",
            &q,
            Some(reached),
            t(T0 + 100 * H)
        ),
        GovernanceStatus::PendingQuorum { .. }
    ));
    // A database edit that back-dates the quorum instant cannot shorten the lock: before the
    // approvals were issued there was no quorum, and within the clock skew the lock still runs
    // from the newest counted approval (erin's, at T0 + 600).
    assert!(matches!(
        install_status(
            &p,
            "gov-1",
            nh,
            "ops-admin",
            &q,
            Some(t(T0 - 10 * H)),
            t(T0 + H)
        ),
        GovernanceStatus::PendingQuorum { .. }
    ));
    match install_status(
        &p,
        "gov-1",
        nh,
        "ops-admin",
        &q,
        Some(t(T0 + 570)),
        t(T0 + H),
    ) {
        GovernanceStatus::Waiting { effective_at, .. } => {
            assert_eq!(effective_at, t(T0 + 600 + 48 * H).to_string())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn any_one_officer_vetoes_during_the_time_lock() {
    let p = example();
    let nh = new_policy_hash();
    let mut q = vec![
        install(&p, "alice", Verdict::Approve, T0),
        install(&p, "carol", Verdict::Approve, T0),
        install(&p, "erin", Verdict::Approve, T0),
    ];
    let reached = Some(t(T0 + 60));
    // Frank holds only the freezer role; veto_roles is empty, so any officer may veto.
    q.push(install(&p, "frank", Verdict::Reject, T0 + 47 * H));
    match install_status(&p, "gov-1", nh, "ops-admin", &q, reached, t(T0 + 49 * H)) {
        GovernanceStatus::Vetoed { by } => assert_eq!(by, vec!["frank".to_string()]),
        other => panic!("{other:?}"),
    }
    // A "veto" issued after the change took effect is too late.
    q.pop();
    q.push(install(&p, "frank", Verdict::Reject, T0 + 60 + 48 * H));
    assert!(
        install_status(
            &p,
            "gov-1",
            nh,
            "ops-admin",
            &q,
            reached,
            t(T0 + 60 + 48 * H + 10)
        )
        .is_effective()
    );
    // A veto with a bad signature is no veto.
    q.pop();
    let mut forged = install(&p, "frank", Verdict::Reject, T0 + H);
    forged.signature[0] ^= 1;
    q.push(forged);
    assert!(
        install_status(&p, "gov-1", nh, "ops-admin", &q, reached, t(T0 + 49 * H)).is_effective()
    );
}

#[test]
fn one_freezer_freezes() {
    let p = example();
    let s = Subject::Freeze {
        request_id: "frz-1".into(),
    };
    let frank = approve(p.hash(), &s, "frank", Verdict::Approve, T0, T0 + 600);
    assert!(freeze_status(&p, "frz-1", &[frank], t(T0 + 1)).is_satisfied());
    // An approver without the freezer role cannot.
    let bob = approve(p.hash(), &s, "bob", Verdict::Approve, T0, T0 + 600);
    assert!(!freeze_status(&p, "frz-1", &[bob], t(T0 + 1)).is_satisfied());
    // A withdrawal approval is not a freeze.
    let w = approve(
        p.hash(),
        &withdrawal("frz-1", eth_transfer(HOT1, eth(1)).digest().unwrap()),
        "frank",
        Verdict::Approve,
        T0,
        T0 + 600,
    );
    assert!(!freeze_status(&p, "frz-1", &[w], t(T0 + 1)).is_satisfied());
    // Freeze approvals live at most 1 h.
    let long = approve(p.hash(), &s, "frank", Verdict::Approve, T0, T0 + 2 * H);
    assert!(!freeze_status(&p, "frz-1", &[long], t(T0 + 1)).is_satisfied());
}

#[test]
fn unfreeze_needs_quorum_and_delay_and_a_freezer_can_veto() {
    let p = example();
    let s = Subject::Unfreeze {
        request_id: "unf-1".into(),
        freeze_id: FREEZE,
    };
    let q: Vec<_> = ["alice", "carol", "erin"]
        .iter()
        .map(|w| approve(p.hash(), &s, w, Verdict::Approve, T0, T0 + 12 * H))
        .collect();
    let reached = Some(t(T0 + 10));
    assert!(matches!(
        unfreeze_status(&p, "unf-1", FREEZE, &q[..2], None, t(T0 + 10)),
        GovernanceStatus::PendingQuorum { .. }
    ));
    assert!(matches!(
        unfreeze_status(&p, "unf-1", FREEZE, &q, reached, t(T0 + 10 + 24 * H - 1)),
        GovernanceStatus::Waiting { .. }
    ));
    assert!(unfreeze_status(&p, "unf-1", FREEZE, &q, reached, t(T0 + 10 + 24 * H)).is_effective());
    let mut vetoed = q.clone();
    vetoed.push(approve(
        p.hash(),
        &s,
        "dave",
        Verdict::Reject,
        T0 + H,
        T0 + 2 * H,
    ));
    assert!(matches!(
        unfreeze_status(&p, "unf-1", FREEZE, &vetoed, reached, t(T0 + 30 * H)),
        GovernanceStatus::Vetoed { .. }
    ));
    // Bob (no freezer role) cannot veto an unfreeze.
    let mut not_veto = q;
    not_veto.push(approve(
        p.hash(),
        &s,
        "bob",
        Verdict::Reject,
        T0 + H,
        T0 + 2 * H,
    ));
    assert!(
        unfreeze_status(&p, "unf-1", FREEZE, &not_veto, reached, t(T0 + 30 * H)).is_effective()
    );
}

#[test]
fn a_proposer_never_counts_toward_its_own_install_quorum() {
    let p = example();
    let nh = new_policy_hash();
    let q = vec![
        install(&p, "alice", Verdict::Approve, T0),
        install(&p, "carol", Verdict::Approve, T0),
        install(&p, "erin", Verdict::Approve, T0),
    ];
    let reached = Some(t(T0 + 10));
    // Proposed by someone else: effective after the time-lock.
    assert!(
        install_status(&p, "gov-1", nh, "ops-admin", &q, reached, t(T0 + 49 * H)).is_effective()
    );
    // Proposed by erin (an admin officer): her own approval does not count, so no quorum.
    match install_status(&p, "gov-1", nh, "erin", &q, reached, t(T0 + 49 * H)) {
        GovernanceStatus::PendingQuorum { quorum } => {
            assert!(quorum.counted.iter().all(|c| c.officer_id != "erin"));
            assert!(
                quorum
                    .ignored
                    .iter()
                    .any(|i| i.officer_id == "erin" && i.why == NotCounted::IsRequester),
                "{quorum:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // And her vote is refused when it is received.
    let s = Subject::InstallPolicy {
        request_id: "gov-1".into(),
        new_policy_hash: nh,
    };
    assert_eq!(
        check_vote(&p, &s, Some("erin"), &q[2], t(T0 + 1)).unwrap_err(),
        NotCounted::IsRequester
    );
    assert!(check_vote(&p, &s, Some("erin"), &q[0], t(T0 + 1)).is_ok());
}

#[test]
fn an_unfreeze_counts_only_approvals_for_the_freeze_it_lifts() {
    let p = example();
    let other = FreezeId([0x77; 32]);
    let for_other = Subject::Unfreeze {
        request_id: "unf-1".into(),
        freeze_id: other,
    };
    let q: Vec<_> = ["alice", "carol", "erin"]
        .iter()
        .map(|w| approve(p.hash(), &for_other, w, Verdict::Approve, T0, T0 + 12 * H))
        .collect();
    let reached = Some(t(T0 + 10));
    // Valid approvals that lifted an earlier freeze do nothing for this one, whatever the id.
    assert!(unfreeze_status(&p, "unf-1", other, &q, reached, t(T0 + 30 * H)).is_effective());
    match unfreeze_status(&p, "unf-1", FREEZE, &q, reached, t(T0 + 30 * H)) {
        GovernanceStatus::PendingQuorum { quorum } => {
            assert!(quorum.counted.is_empty());
            assert!(
                quorum
                    .ignored
                    .iter()
                    .all(|i| matches!(i.why, NotCounted::WrongDigest { .. })),
                "{quorum:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let this = Subject::Unfreeze {
        request_id: "unf-1".into(),
        freeze_id: FREEZE,
    };
    assert!(matches!(
        check_vote(&p, &this, None, &q[0], t(T0 + 1)),
        Err(NotCounted::WrongDigest { .. })
    ));
}

#[test]
fn every_governance_vote_is_checked_when_received() {
    let p = example();
    let s = Subject::Unfreeze {
        request_id: "unf-1".into(),
        freeze_id: FREEZE,
    };
    let good = approve(p.hash(), &s, "alice", Verdict::Approve, T0, T0 + 12 * H);
    assert!(check_vote(&p, &s, None, &good, t(T0 + 1)).is_ok());
    // A garbage signature.
    let mut bad = good.clone();
    bad.signature[0] ^= 1;
    assert_eq!(
        check_vote(&p, &s, None, &bad, t(T0 + 1)).unwrap_err(),
        NotCounted::BadSignature
    );
    // Expired by the time it arrives.
    assert!(matches!(
        check_vote(&p, &s, None, &good, t(T0 + 12 * H)),
        Err(NotCounted::Expired { .. })
    ));
    // Another policy.
    let other = approve(
        PolicyHash([9; 32]),
        &s,
        "alice",
        Verdict::Approve,
        T0,
        T0 + H,
    );
    assert!(matches!(
        check_vote(&p, &s, None, &other, t(T0 + 1)),
        Err(NotCounted::WrongPolicy { .. })
    ));
    // Another request id.
    let elsewhere = Subject::Unfreeze {
        request_id: "unf-2".into(),
        freeze_id: FREEZE,
    };
    assert!(matches!(
        check_vote(&p, &elsewhere, None, &good, t(T0 + 1)),
        Err(NotCounted::WrongRequest { .. })
    ));
    // A veto from an officer who may not veto an unfreeze (bob holds no freezer role).
    let veto = approve(p.hash(), &s, "bob", Verdict::Reject, T0, T0 + H);
    assert_eq!(
        check_vote(&p, &s, None, &veto, t(T0 + 1)).unwrap_err(),
        NotCounted::MissingRole
    );
    let veto = approve(p.hash(), &s, "dave", Verdict::Reject, T0, T0 + H);
    assert!(check_vote(&p, &s, None, &veto, t(T0 + 1)).is_ok());
}

#[test]
fn an_unfreeze_that_names_no_freeze_does_not_decode() {
    let p = example();
    let s = Subject::Unfreeze {
        request_id: "unf-1".into(),
        freeze_id: FREEZE,
    };
    let good = approve(p.hash(), &s, "alice", Verdict::Approve, T0, T0 + H);
    assert!(kinko_policy::ApprovalMessage::from_bytes(&good.message).is_ok());
    // The same message with the freeze id zeroed (what an unfreeze approval looked like before
    // it named its freeze): refused, so it can never lift any freeze.
    let mut zeroed = good.message.clone();
    let at = zeroed.windows(32).position(|w| w == FREEZE.0).unwrap();
    zeroed[at..at + 32].copy_from_slice(&[0; 32]);
    let err = kinko_policy::ApprovalMessage::from_bytes(&zeroed).unwrap_err();
    assert!(
        err.to_string()
            .contains("an unfreeze must name the freeze it lifts"),
        "{err}"
    );
}

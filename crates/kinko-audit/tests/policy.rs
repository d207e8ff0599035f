//! Authorization re-verification with kinko-policy: approvals under the policy in force at the
//! time, quorum met, policy installs by the previous policy's install quorum.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::record::{Event, GovernanceVote, IntentRecord, Refusal};
use kinko_audit::verify::{Report, VerifyOptions, verify_dir};
use kinko_policy::{ApprovalMessage, PolicyHash, SignedApproval, Subject, Verdict};

fn verify_with_policy(dir: &std::path::Path) -> Report {
    let mut check = PolicyCheck::new();
    verify_dir(
        dir,
        &log_key(),
        VerifyOptions {
            authorization: Some(&mut check),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn approvals_are_checked_under_the_policy_in_force_at_the_time() {
    let p1 = policy_text(&[1, 2, 3], "1");
    // Policy 2 removes officer-2 (installed by officers 1 and 3 of policy 1).
    let p2 = policy_text(&[1, 3, 4], "2");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let mut events = vec![install(&p1, None, &[]), bootstrap_events().remove(1)];
        events.extend(withdrawal(0, &p1, &[1, 2])); // ok
        events.extend(withdrawal(1, &p1, &[2])); // one short of the quorum
        events.extend(governed_install(&p2, &p1, &[1, 3]));
        events.extend(withdrawal(2, &p2, &[3, 4])); // ok under policy 2
        events.extend(withdrawal(3, &p2, &[1, 2])); // officer-2 is not in policy 2
        for e in events {
            log.append("requester", e).unwrap();
        }
        log.append(
            "kinkod",
            Event::Refusal(Refusal {
                request_id: None,
                code: "X".into(),
                message: "end".into(),
            }),
        )
        .unwrap();
    }
    let r = verify_with_policy(dir.path());
    assert!(r.authorization_checked);
    assert_eq!(r.policies, 2);
    assert_eq!(r.failures.len(), 2, "{r}");
    // Withdrawal 1: records 8..=12, authorized at 11.
    let f0 = r.failures[0].to_string();
    assert!(f0.starts_with("record 11 "), "{f0}");
    assert!(f0.contains("do not meet the quorum"), "{f0}");
    assert!(
        f0.contains("missing_officers: 1") || f0.contains("1 more"),
        "{f0}"
    );
    // Withdrawal 3: after the proposal, two votes and the install (13..=16) and withdrawal 2
    // (17..=22): 23..=28, authorized at 27.
    let f1 = r.failures[1].to_string();
    assert!(f1.starts_with("record 27 "), "{f1}");
    assert!(f1.contains("officer-2"), "{f1}");
    assert!(
        f1.contains("UnknownOfficer") || f1.contains("unknown"),
        "{f1}"
    );
}

#[test]
fn a_policy_installed_without_the_previous_quorum_is_caught() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let p2 = policy_text(&[1, 9], "2");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap();
        // Only one admin of policy 1 voted.
        for e in governed_install(&p2, &p1, &[1]) {
            log.append("kinkod", e).unwrap();
        }
        // A text that does not match its recorded hash.
        let Event::PolicyInstalled(mut bad) = install(&p1, None, &[]) else {
            unreachable!()
        };
        bad.policy_text.push(' ');
        log.append("kinkod", Event::PolicyInstalled(bad)).unwrap();
    }
    let r = verify_with_policy(dir.path());
    assert_eq!(r.failures.len(), 2, "{r}");
    let f0 = r.failures[0].to_string();
    assert!(f0.starts_with("record 3 "), "{f0}");
    assert!(f0.contains("not installed by the install quorum"), "{f0}");
    let f1 = r.failures[1].to_string();
    assert!(f1.starts_with("record 4 "), "{f1}");
    assert!(f1.contains("is not the hash"), "{f1}");
}

/// The fixture's payloads are real EIP-155 transactions: nonce 9 is the EIP's example
/// (tests/vectors/ethereum/eip155.json, from https://eips.ethereum.org/EIPS/eip-155).
#[test]
fn fixture_payload_is_the_eip155_example() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/vectors/ethereum/eip155.json")).unwrap();
    assert_eq!(hex::encode(payload(9)), v["signing_data"].as_str().unwrap());
    let kinko_intent::SigningInput::EcdsaSecp256k1 { digest, .. } = &intent(9).to_sign[0] else {
        unreachable!()
    };
    assert_eq!(digest, v["signing_hash"].as_str().unwrap());
}

#[test]
fn an_authorized_intent_that_the_payload_does_not_yield_is_caught() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap();
        log.append("kinkod", bootstrap_events().remove(1)).unwrap();
        // The daemon shows (and the officers approve) an intent with another destination than
        // the payload's; the intent record itself is self-consistent.
        let mut events = withdrawal(0, &p1, &[1, 2]);
        let mut shown = intent(0);
        shown.transfers[0].to =
            kinko_intent::Address::new("0x1111111111111111111111111111111111111111").unwrap();
        let shown = IntentRecord::of(&shown).unwrap();
        let request_id = "req-0".to_string();
        for e in &mut events {
            match e {
                Event::RequestReceived(r) => r.intent = Some(shown.clone()),
                Event::Approval(a) => {
                    a.approval = signed_approval(
                        a.approval
                            .officer
                            .trim_start_matches("officer-")
                            .parse()
                            .unwrap(),
                        &p1,
                        Subject::Withdrawal {
                            request_id: request_id.clone(),
                            intent_digest: shown.digest,
                        },
                        60,
                    )
                }
                Event::SigningAuthorized(a) => {
                    a.intent = shown.clone();
                    a.approvals = [1u8, 2]
                        .iter()
                        .map(|&i| {
                            signed_approval(
                                i,
                                &p1,
                                Subject::Withdrawal {
                                    request_id: request_id.clone(),
                                    intent_digest: shown.digest,
                                },
                                60,
                            )
                        })
                        .collect();
                }
                _ => {}
            }
        }
        for e in events {
            log.append("requester", e).unwrap();
        }
    }
    let r = verify_with_policy(dir.path());
    let f = r.failures[0].to_string();
    assert!(f.starts_with("record 6 "), "{r}");
    assert!(f.contains("the recorded payload decodes to intent"), "{f}");
}

fn freeze() -> Event {
    Event::Freeze(kinko_audit::record::Freeze {
        reason: "suspicious".into(),
        signed: None,
    })
}

fn veto(i: u8, policy: &str, subject: Subject) -> Event {
    let msg = ApprovalMessage {
        policy_hash: PolicyHash::of_file(policy.as_bytes()),
        subject: subject.clone(),
        officer_id: officer_name(i),
        verdict: Verdict::Reject,
        // Before the quorum instant (the fixture policy's delays are 0 s, so the change is
        // effective the second its quorum is met; a veto issued that second is too late).
        issued_at: now_secs() - 10,
        expires_at: now_secs() + 3600,
    };
    let s = SignedApproval::sign(&msg, &officer_key(i)).unwrap();
    Event::GovernanceVote(GovernanceVote {
        request_id: subject.request_id().to_string(),
        approval: kinko_audit::record::Approval {
            officer: officer_name(i),
            public_key: officer_key(i).verifying_key().to_bytes().to_vec().into(),
            message: s.message.into(),
            signature: s.signature.to_vec().into(),
        },
    })
}

#[test]
fn an_unfreeze_without_the_quorum_is_caught() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap(); // 0
        let first = log.append("officer-3", freeze()).unwrap().leaf_hash; // 1
        for e in governed_unfreeze(&p1, first, &[1, 2]) {
            log.append("kinkod", e).unwrap(); // 2, 3 votes; 4 unfreeze: ok
        }
        let second = log.append("officer-3", freeze()).unwrap().leaf_hash; // 5
        for e in governed_unfreeze(&p1, second, &[1]) {
            log.append("kinkod", e).unwrap(); // 6 vote; 7 unfreeze: one short
        }
    }
    let r = verify_with_policy(dir.path());
    assert_eq!(r.failures.len(), 1, "{r}");
    let f = r.failures[0].to_string();
    assert!(f.starts_with("record 7 "), "{f}");
    assert!(f.contains("not unfrozen by the unfreeze quorum"), "{f}");
}

/// Votes that lifted one freeze never lift a later one: replayed under a later freeze they did
/// not count when received, and an unfreeze resting on them is caught.
#[test]
fn votes_for_an_earlier_freeze_never_lift_a_later_one() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap(); // 0
        let first = log.append("officer-3", freeze()).unwrap().leaf_hash; // 1
        let lifted = governed_unfreeze(&p1, first, &[1, 2]);
        for e in lifted.clone() {
            log.append("kinkod", e).unwrap(); // 2, 3, 4
        }
        log.append("officer-3", freeze()).unwrap(); // 5
        for e in lifted {
            log.append("kinkod", e).unwrap(); // 6, 7 replayed votes; 8 unfreeze
        }
    }
    let r = verify_with_policy(dir.path());
    let texts: Vec<String> = r.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(texts.len(), 3, "{r}");
    for (i, seq) in [6, 7].iter().enumerate() {
        assert!(texts[i].starts_with(&format!("record {seq} ")), "{r}");
        assert!(
            texts[i].contains("did not count when received: WrongDigest"),
            "{r}"
        );
    }
    assert!(texts[2].starts_with("record 8 "), "{r}");
    assert!(texts[2].contains("never logged as a vote"), "{r}");
}

/// A logged veto decides the outcome: an unfreeze or installation that ignored it is caught,
/// even if the daemon's database lost the veto.
#[test]
fn a_change_that_ignored_a_logged_veto_is_caught() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let p2 = policy_text(&[1, 2, 3, 4], "2");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap(); // 0
        let f = log.append("officer-3", freeze()).unwrap().leaf_hash; // 1
        let mut unfreeze = governed_unfreeze(&p1, f, &[1, 2]);
        let vetoed = veto(
            3,
            &p1,
            Subject::Unfreeze {
                request_id: "gov-u".into(),
                freeze_id: kinko_policy::FreezeId(f),
            },
        );
        unfreeze.insert(1, vetoed); // 2 vote, 3 veto, 4 vote, 5 unfreeze
        for e in unfreeze {
            log.append("kinkod", e).unwrap();
        }
        let mut install2 = governed_install(&p2, &p1, &[1, 2]);
        let vetoed = veto(
            3,
            &p1,
            Subject::InstallPolicy {
                request_id: "gov-1".into(),
                new_policy_hash: PolicyHash::of_file(p2.as_bytes()),
            },
        );
        install2.insert(2, vetoed); // 6 proposal, 7 vote, 8 veto, 9 vote, 10 install
        for e in install2 {
            log.append("kinkod", e).unwrap();
        }
    }
    let r = verify_with_policy(dir.path());
    let texts: Vec<String> = r.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(texts.len(), 2, "{r}");
    assert!(
        texts[0].starts_with("record 5 ") && texts[0].contains("Vetoed"),
        "{r}"
    );
    assert!(
        texts[1].starts_with("record 10 ") && texts[1].contains("Vetoed"),
        "{r}"
    );
}

/// The proposer of a policy never counts toward its quorum, even as an officer.
#[test]
fn a_proposer_counted_toward_its_own_install_is_caught() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let p2 = policy_text(&[1, 2], "2");
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap(); // 0
        let mut events = governed_install(&p2, &p1, &[2]);
        let Event::PolicyProposed(p) = &mut events[0] else {
            unreachable!()
        };
        p.proposer = officer_name(1);
        // officer-1 proposes, then votes for its own proposal: refused when received.
        let own = governed_install(&p2, &p1, &[1]).remove(1);
        events.insert(1, own.clone()); // 1 proposal, 2 own vote, 3 vote, 4 install
        if let Some(Event::PolicyInstalled(i)) = events.last_mut()
            && let Event::GovernanceVote(v) = &own
        {
            i.approvals.insert(0, v.approval.clone());
        }
        for e in events {
            log.append("kinkod", e).unwrap();
        }
    }
    let r = verify_with_policy(dir.path());
    let texts: Vec<String> = r.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(texts.len(), 2, "{r}");
    assert!(
        texts[0].starts_with("record 2 ") && texts[0].contains("IsRequester"),
        "{r}"
    );
    assert!(texts[1].starts_with("record 4 "), "{r}");
}

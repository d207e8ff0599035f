//! Authorization re-verification with kinko-policy: approvals under the policy in force at the
//! time, quorum met, policy installs by the previous policy's install quorum.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::record::{Event, IntentRecord, Refusal};
use kinko_audit::verify::{Report, VerifyOptions, verify_dir};
use kinko_policy::Subject;

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
        events.push(install(&p2, Some(&p1), &[1, 3]));
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
    // Withdrawal 3: after the install (13) and withdrawal 2 (14..=19): 20..=25, authorized at 24.
    let f1 = r.failures[1].to_string();
    assert!(f1.starts_with("record 24 "), "{f1}");
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
        // Only one admin of policy 1, and one outsider.
        log.append("kinkod", install(&p2, Some(&p1), &[1, 9]))
            .unwrap();
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
    assert!(f0.starts_with("record 1 "), "{f0}");
    assert!(f0.contains("not installed by the install quorum"), "{f0}");
    let f1 = r.failures[1].to_string();
    assert!(f1.starts_with("record 2 "), "{f1}");
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

#[test]
fn an_unfreeze_without_the_quorum_is_caught() {
    let p1 = policy_text(&[1, 2, 3], "1");
    let unfreeze = |officers: &[u8]| {
        Event::Unfreeze(kinko_audit::record::Unfreeze {
            reason: "incident closed".into(),
            approvals: officers
                .iter()
                .map(|&i| {
                    let subject = Subject::Unfreeze {
                        request_id: "gov-9".into(),
                    };
                    signed_approval(i, &p1, subject, 2 * 3600)
                })
                .collect(),
        })
    };
    let freeze = || {
        Event::Freeze(kinko_audit::record::Freeze {
            reason: "suspicious".into(),
            signed: None,
        })
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("kinkod", install(&p1, None, &[])).unwrap();
        log.append("officer-3", freeze()).unwrap();
        log.append("kinkod", unfreeze(&[1, 2])).unwrap(); // quorum of 2 admins: ok
        log.append("officer-3", freeze()).unwrap();
        log.append("kinkod", unfreeze(&[1])).unwrap(); // one short
    }
    let r = verify_with_policy(dir.path());
    assert_eq!(r.failures.len(), 1, "{r}");
    let f = r.failures[0].to_string();
    assert!(f.starts_with("record 4 "), "{f}");
    assert!(f.contains("not unfrozen by the unfreeze quorum"), "{f}");
}

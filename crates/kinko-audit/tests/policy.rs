//! Authorization re-verification with kinko-policy: approvals under the policy in force at the
//! time, quorum met, policy installs by the previous policy's install quorum.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::record::{
    Approval, ApprovalRecorded, Event, IntentRecord, PolicyInstalled, Refusal,
};
use kinko_audit::verify::{Report, VerifyOptions, verify_dir};
use kinko_policy::{ApprovalMessage, PolicyHash, SignedApproval, Subject, Verdict};

/// A policy whose officers are the fixture's officers `ids`; 2 approvers for ETH transfers up
/// to 10 ETH; installs need 2 admins and wait 1 h.
fn policy_text(ids: &[u8], version: &str) -> String {
    let mut s = format!("version = 1\ndescription = \"audit test policy {version}\"\n\n");
    for &i in ids {
        s += &format!(
            "[[officers]]\nid = \"{}\"\nname = \"Officer {i}\"\nroles = [\"approver\", \"admin\", \"freezer\"]\ngroup = \"g{i}\"\npublic_key = \"{}\"\n\n",
            officer_name(i),
            hex::encode(officer_key(i).verifying_key().to_bytes())
        );
    }
    s += &format!(
        "[[requesters]]\nid = \"requester\"\npublic_key = \"{}\"\nkeys = [\"{KEY_NAME}\"]\n\n",
        hex::encode(officer_key(30).verifying_key().to_bytes())
    );
    s += &format!(
        "[[keys]]\nname = \"{KEY_NAME}\"\nchain = \"ethereum\"\nnetwork = \"1\"\nhsm_label = \"k\"\n\n"
    );
    s += "[[rules]]\nname = \"eth-transfer\"\nchain = \"ethereum\"\nasset = \"ETH\"\nkinds = [\"transfer\"]\nmax_amount = \"10\"\napprovals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }\n\n";
    s += "[governance.install]\nquorum = { count = 2, roles = [\"admin\"], lifetime = \"72h\" }\ntime_lock = \"1h\"\nveto_roles = []\n\n";
    s += "[governance.freeze]\nroles = [\"freezer\"]\nlifetime = \"1h\"\n\n";
    s += "[governance.unfreeze]\nquorum = { count = 2, roles = [\"admin\"], lifetime = \"24h\" }\ndelay = \"1h\"\n";
    s
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signed_approval(i: u8, policy: &str, subject: Subject, issued_ago: i64) -> Approval {
    let msg = ApprovalMessage {
        policy_hash: PolicyHash::of_file(policy.as_bytes()),
        subject,
        officer_id: officer_name(i),
        verdict: Verdict::Approve,
        issued_at: now_secs() - issued_ago,
        expires_at: now_secs() - issued_ago + 3 * 3600,
    };
    let s = SignedApproval::sign(&msg, &officer_key(i)).unwrap();
    Approval {
        officer: officer_name(i),
        public_key: officer_key(i).verifying_key().to_bytes().to_vec().into(),
        message: s.message.into(),
        signature: s.signature.to_vec().into(),
    }
}

fn install(policy: &str, previous: Option<&str>, approvers: &[u8]) -> Event {
    let hash = PolicyHash::of_file(policy.as_bytes());
    let approvals = previous.map_or(vec![], |prev| {
        approvers
            .iter()
            .map(|&i| {
                let subject = Subject::InstallPolicy {
                    request_id: "gov-1".into(),
                    new_policy_hash: hash,
                };
                signed_approval(i, prev, subject, 2 * 3600)
            })
            .collect()
    });
    Event::PolicyInstalled(PolicyInstalled {
        policy_hash: hash.0.to_vec().into(),
        policy_text: policy.into(),
        approvals,
    })
}

/// A withdrawal approved under `policy` by `officers`, recorded as the daemon records it.
fn withdrawal(n: u64, policy: &str, officers: &[u8]) -> Vec<Event> {
    let hash = PolicyHash::of_file(policy.as_bytes()).0.to_vec();
    let mut base = withdrawal_events(n, &[]);
    let produced = base.pop().unwrap();
    let Some(Event::SigningAuthorized(mut auth)) = base.pop() else {
        unreachable!()
    };
    let ir: IntentRecord = auth.intent.clone();
    let approvals: Vec<Approval> = officers
        .iter()
        .map(|&i| {
            let subject = Subject::Withdrawal {
                request_id: auth.request_id.clone(),
                intent_digest: ir.digest,
            };
            signed_approval(i, policy, subject, 60)
        })
        .collect();
    for e in &mut base {
        if let Event::Decision(d) = e {
            d.policy_hash = hash.clone().into();
        }
    }
    for a in &approvals {
        base.push(Event::Approval(ApprovalRecorded {
            request_id: auth.request_id.clone(),
            approval: a.clone(),
        }));
    }
    auth.policy_hash = hash.into();
    auth.approvals = approvals;
    base.push(Event::SigningAuthorized(auth));
    base.push(produced);
    base
}

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

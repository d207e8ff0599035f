//! Approval messages and quorum evaluation, with property tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use jiff::{SignedDuration, Timestamp};
use kinko_intent::IntentDigest;
use kinko_policy::approval::{NotCounted, Subject};
use kinko_policy::{
    ApprovalMessage, Policy, PolicyError, PolicyHash, QuorumRequirement, QuorumState,
    SignedApproval, Verdict, evaluate_quorum,
};
use kinko_policy::{DenyCode, VelocityLedger, velocity_entries};
use proptest::prelude::*;

const NOW: i64 = 1_783_299_600; // 2026-07-06T01:00:00Z

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn digest() -> IntentDigest {
    eth_transfer(HOT1, eth(1)).digest().unwrap()
}

fn req(count: u32, groups: u32) -> QuorumRequirement {
    QuorumRequirement {
        count,
        roles: vec!["approver".into()],
        distinct_groups: groups,
        lifetime: SignedDuration::from_hours(4),
        reject_blocks: true,
    }
}

fn ok(p: &Policy, s: &Subject, officer: &str) -> SignedApproval {
    approve(p.hash(), s, officer, Verdict::Approve, NOW - 60, NOW + 3600)
}

#[test]
fn message_encoding_is_the_documented_layout() {
    let msg = ApprovalMessage {
        policy_hash: PolicyHash([0x11; 32]),
        subject: withdrawal("req-1", IntentDigest([0x22; 32])),
        officer_id: "alice".into(),
        verdict: Verdict::Approve,
        issued_at: 1_700_000_000,
        expires_at: 1_700_003_600,
    };
    // Built by hand from the table in the approval module's documentation.
    let mut want = b"kinko/approval/v1\n".to_vec();
    want.extend([0x11; 32]);
    want.push(1);
    want.push(5);
    want.extend(b"req-1");
    want.extend([0x22; 32]);
    want.push(5);
    want.extend(b"alice");
    want.push(1);
    want.extend(1_700_000_000i64.to_be_bytes());
    want.extend(1_700_003_600i64.to_be_bytes());
    assert_eq!(msg.to_bytes().unwrap(), want);
    assert_eq!(ApprovalMessage::from_bytes(&want).unwrap(), msg);

    let freeze = ApprovalMessage {
        subject: Subject::Freeze {
            request_id: "f-1".into(),
        },
        verdict: Verdict::Reject,
        ..msg.clone()
    };
    let b = freeze.to_bytes().unwrap();
    assert_eq!(b[18 + 32], 3);
    assert_eq!(&b[18 + 32 + 1 + 4..18 + 32 + 1 + 4 + 32], &[0u8; 32]);
    assert_eq!(ApprovalMessage::from_bytes(&b).unwrap(), freeze);
}

#[test]
fn decoding_is_strict() {
    let msg = ApprovalMessage {
        policy_hash: PolicyHash([1; 32]),
        subject: withdrawal("r", IntentDigest([2; 32])),
        officer_id: "bob".into(),
        verdict: Verdict::Reject,
        issued_at: 0,
        expires_at: 1,
    };
    let good = msg.to_bytes().unwrap();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_tag = good.clone();
    bad_tag[50] = 9;
    let mut bad_verdict = good.clone();
    let vpos = good.len() - 17;
    bad_verdict[vpos] = 3;
    let mut bad_domain = good.clone();
    bad_domain[0] = b'K';
    for b in [
        &trailing,
        &bad_tag,
        &bad_verdict,
        &bad_domain,
        &good[..good.len() - 1].to_vec(),
    ] {
        assert!(matches!(
            ApprovalMessage::from_bytes(b),
            Err(PolicyError::Malformed { .. })
        ));
    }
    // A freeze with a non-zero digest is not canonical.
    let mut f = ApprovalMessage {
        subject: Subject::Freeze {
            request_id: "r".into(),
        },
        ..msg
    }
    .to_bytes()
    .unwrap();
    f[18 + 32 + 1 + 2] = 1;
    assert!(ApprovalMessage::from_bytes(&f).is_err());
    // Ids must be printable ASCII, 1..=128 bytes.
    let long = ApprovalMessage {
        officer_id: "x".repeat(129),
        ..ApprovalMessage::from_bytes(&good).unwrap()
    };
    assert!(long.to_bytes().is_err());
}

#[test]
fn two_of_n_and_the_reasons_others_do_not_count() {
    let p = example();
    let s = withdrawal("req-1", digest());
    let approvals = vec![
        ok(&p, &s, "alice"),
        ok(&p, &s, "alice"),                                          // duplicate
        ok(&p, &s, "erin"),                                           // admin, not approver
        ok(&p, &withdrawal("req-2", digest()), "carol"),              // other request
        ok(&p, &withdrawal("req-1", IntentDigest([9; 32])), "carol"), // other intent
        approve(
            PolicyHash([7; 32]),
            &s,
            "carol",
            Verdict::Approve,
            NOW - 60,
            NOW + 60,
        ), // other policy
        approve(p.hash(), &s, "carol", Verdict::Approve, NOW - 7200, NOW), // expired (exclusive)
        approve(
            p.hash(),
            &s,
            "carol",
            Verdict::Approve,
            NOW + 61,
            NOW + 3600,
        ), // future-dated
        approve(
            p.hash(),
            &s,
            "carol",
            Verdict::Approve,
            NOW - 60,
            NOW + 5 * 3600,
        ), // too long-lived
        SignedApproval {
            signature: [0; 64],
            ..ok(&p, &s, "carol")
        }, // bad signature
        SignedApproval {
            message: vec![1, 2, 3],
            signature: [0; 64],
            passkey: None,
        }, // garbage
    ];
    let r = evaluate_quorum(
        &p,
        &req(2, 0),
        &s,
        Some("withdrawal-ledger"),
        &approvals,
        now(),
    );
    assert_eq!(
        r.state,
        QuorumState::Pending {
            missing_officers: 1,
            missing_groups: 0
        }
    );
    assert_eq!(r.counted.len(), 1);
    let why: Vec<&NotCounted> = r.ignored.iter().map(|i| &i.why).collect();
    assert!(matches!(why[0], NotCounted::Duplicate));
    assert!(matches!(why[1], NotCounted::MissingRole));
    assert!(matches!(why[2], NotCounted::WrongRequest { saw } if saw == "req-2"));
    assert!(matches!(why[3], NotCounted::WrongDigest { .. }));
    assert!(matches!(why[4], NotCounted::WrongPolicy { saw } if *saw == PolicyHash([7; 32])));
    assert!(matches!(why[5], NotCounted::Expired { .. }));
    assert!(matches!(why[6], NotCounted::NotYetValid { .. }));
    assert!(matches!(why[7], NotCounted::BadLifetime { .. }));
    assert!(matches!(why[8], NotCounted::BadSignature));
    assert!(matches!(why[9], NotCounted::Malformed { .. }));
    assert_eq!(r.ignored.len(), 10);

    let mut more = approvals;
    more.push(ok(&p, &s, "bob"));
    let r = evaluate_quorum(&p, &req(2, 0), &s, Some("withdrawal-ledger"), &more, now());
    assert!(r.is_satisfied(), "{}", r.to_text());
}

#[test]
fn distinct_groups_are_required() {
    let p = example();
    let s = withdrawal("req-1", digest());
    // alice and bob are both treasury; dave is risk.
    let same = [ok(&p, &s, "alice"), ok(&p, &s, "bob")];
    let r = evaluate_quorum(&p, &req(2, 2), &s, None, &same, now());
    assert_eq!(
        r.state,
        QuorumState::Pending {
            missing_officers: 0,
            missing_groups: 1
        }
    );
    let mixed = [ok(&p, &s, "alice"), ok(&p, &s, "bob"), ok(&p, &s, "dave")];
    let r = evaluate_quorum(&p, &req(3, 2), &s, None, &mixed, now());
    assert!(r.is_satisfied());
    assert_eq!(r.groups, vec!["risk".to_string(), "treasury".to_string()]);
}

#[test]
fn a_reject_blocks_where_the_policy_says_so() {
    let p = example();
    let s = withdrawal("req-1", digest());
    let list = [
        ok(&p, &s, "alice"),
        ok(&p, &s, "bob"),
        approve(p.hash(), &s, "carol", Verdict::Reject, NOW - 10, NOW + 60),
    ];
    let r = evaluate_quorum(&p, &req(2, 0), &s, None, &list, now());
    assert_eq!(
        r.state,
        QuorumState::Blocked {
            by: vec!["carol".into()]
        }
    );
    let mut lenient = req(2, 0);
    lenient.reject_blocks = false;
    let r = evaluate_quorum(&p, &lenient, &s, None, &list, now());
    assert!(r.is_satisfied());
    assert!(
        r.ignored
            .iter()
            .any(|i| i.why == NotCounted::RejectNotBlocking)
    );
    // A reject that does not itself count (expired) does not block.
    let stale = [
        ok(&p, &s, "alice"),
        ok(&p, &s, "bob"),
        approve(p.hash(), &s, "carol", Verdict::Reject, NOW - 100, NOW - 1),
    ];
    assert!(evaluate_quorum(&p, &req(2, 0), &s, None, &stale, now()).is_satisfied());
    // An officer who approved and rejected is rejecting.
    let both = [
        ok(&p, &s, "alice"),
        approve(p.hash(), &s, "alice", Verdict::Reject, NOW - 10, NOW + 60),
    ];
    let r = evaluate_quorum(&p, &req(1, 0), &s, None, &both, now());
    assert!(matches!(r.state, QuorumState::Blocked { .. }));
    assert!(r.counted.is_empty());
}

// ---- properties ---------------------------------------------------------------------------

/// The example's approvers and their groups; erin and frank hold no approver role.
const OFFICERS: [(&str, &str, bool); 6] = [
    ("alice", "treasury", true),
    ("bob", "treasury", true),
    ("carol", "risk", true),
    ("dave", "risk", true),
    ("erin", "compliance", false),
    ("frank", "security-operations", false),
];

/// An independent oracle: does this set of (valid, well-bound) approving officers satisfy it?
fn oracle(officers: &BTreeSet<usize>, count: u32, groups: u32, requester: Option<usize>) -> bool {
    let eligible: Vec<usize> = officers
        .iter()
        .copied()
        .filter(|&i| OFFICERS[i].2 && Some(i) != requester)
        .collect();
    let g: BTreeSet<&str> = eligible.iter().map(|&i| OFFICERS[i].1).collect();
    eligible.len() as u32 >= count && g.len() as u32 >= groups
}

/// How an approval is spoiled.
#[derive(Debug, Clone, Copy)]
enum Spoil {
    None,
    OtherRequest,
    OtherIntent,
    OtherPolicy,
    Expired,
    FutureDated,
    OtherSubjectKind,
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        4 => Just(Spoil::None),
        1 => Just(Spoil::OtherRequest),
        1 => Just(Spoil::OtherIntent),
        1 => Just(Spoil::OtherPolicy),
        1 => Just(Spoil::Expired),
        1 => Just(Spoil::FutureDated),
        1 => Just(Spoil::OtherSubjectKind),
    ]
}

fn make(p: &Policy, s: &Subject, officer: usize, how: Spoil) -> SignedApproval {
    let id = OFFICERS[officer].0;
    let (mut h, mut subj, mut issued, mut expires) = (p.hash(), s.clone(), NOW - 60, NOW + 3600);
    match how {
        Spoil::None => {}
        Spoil::OtherRequest => subj = withdrawal("req-other", digest()),
        Spoil::OtherIntent => subj = withdrawal("req-1", IntentDigest([0xee; 32])),
        Spoil::OtherPolicy => h = PolicyHash([0xab; 32]),
        Spoil::Expired => (issued, expires) = (NOW - 3600, NOW),
        Spoil::FutureDated => (issued, expires) = (NOW + 120, NOW + 3600),
        Spoil::OtherSubjectKind => {
            subj = Subject::Freeze {
                request_id: "req-1".into(),
            }
        }
    }
    approve(h, &subj, id, Verdict::Approve, issued, expires)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Satisfied exactly when the distinct, eligible, non-requester officers among the *valid*
    /// approvals meet the count and the groups: so no smaller set passes, the requester never
    /// counts, an officer never counts twice, and spoiled approvals (other request, intent,
    /// policy, subject; expired; future-dated) never count.
    #[test]
    fn quorum_matches_the_oracle(
        picks in proptest::collection::vec((0usize..6, spoil()), 0..9),
        count in 1u32..=4,
        groups in 0u32..=2,
        requester in proptest::option::of(0usize..6),
    ) {
        let p = example();
        let s = withdrawal("req-1", digest());
        let approvals: Vec<SignedApproval> = picks.iter().map(|&(o, how)| make(&p, &s, o, how)).collect();
        let r = evaluate_quorum(&p, &req(count, groups), &s, requester.map(|i| OFFICERS[i].0), &approvals, now());

        let valid: BTreeSet<usize> = picks.iter().filter(|(_, h)| matches!(h, Spoil::None)).map(|(o, _)| *o).collect();
        prop_assert_eq!(r.is_satisfied(), oracle(&valid, count, groups, requester));

        // Counted officers are distinct, eligible, never the requester, and only from valid approvals.
        let counted: Vec<&str> = r.counted.iter().map(|c| c.officer_id.as_str()).collect();
        let distinct: BTreeSet<&str> = counted.iter().copied().collect();
        prop_assert_eq!(distinct.len(), counted.len());
        for c in &r.counted {
            prop_assert!(matches!(picks[c.index].1, Spoil::None));
            prop_assert!(Some(c.officer_id.as_str()) != requester.map(|i| OFFICERS[i].0));
            prop_assert!(OFFICERS.iter().any(|(id, _, appr)| *id == c.officer_id && *appr));
        }
        // Every approval is accounted for.
        prop_assert_eq!(r.counted.len() + r.ignored.len() + r.rejected_by.len(), approvals.len());
        // Fewer counted than the count never satisfies.
        if (r.counted.len() as u32) < count {
            prop_assert!(!r.is_satisfied());
        }
    }

    /// Repeating one officer's approval any number of times never reaches a quorum of two.
    #[test]
    fn one_officer_never_counts_twice(officer in 0usize..4, times in 1usize..6) {
        let p = example();
        let s = withdrawal("req-1", digest());
        let approvals: Vec<SignedApproval> = (0..times).map(|_| make(&p, &s, officer, Spoil::None)).collect();
        let r = evaluate_quorum(&p, &req(2, 0), &s, None, &approvals, now());
        prop_assert!(!r.is_satisfied());
        prop_assert_eq!(r.counted.len(), 1);
    }

    /// Approvals expired at any instant up to now never count, however many.
    #[test]
    fn expired_never_counts(ages in proptest::collection::vec(0i64..100_000, 1..6)) {
        let p = example();
        let s = withdrawal("req-1", digest());
        let approvals: Vec<SignedApproval> = ages.iter().enumerate()
            .map(|(i, age)| approve(p.hash(), &s, OFFICERS[i % 4].0, Verdict::Approve, NOW - age - 3600, NOW - age))
            .collect();
        let r = evaluate_quorum(&p, &req(1, 0), &s, None, &approvals, now());
        prop_assert!(r.counted.is_empty());
        prop_assert!(!r.is_satisfied());
    }
}

#[test]
fn authorize_needs_the_rule_and_the_quorum_together() {
    use kinko_policy::{PolicyError, authorize};
    let p = example();
    let intent = eth_transfer(HOT1, eth(100));
    let d = intent.digest().unwrap();
    let c = ctx(now(), "eth-cold-1", &EMPTY);
    let s = withdrawal("req-9", d);
    let one = vec![ok(&p, &s, "alice")];
    assert!(matches!(
        authorize(&p, &intent, &c, "req-9", &one),
        Err(PolicyError::QuorumNotSatisfied(_))
    ));
    let two = vec![ok(&p, &s, "alice"), ok(&p, &s, "carol")];
    let a = authorize(&p, &intent, &c, "req-9", &two).unwrap();
    assert_eq!(a.intent_digest(), d);
    assert_eq!(a.policy_hash(), p.hash());
    assert_eq!(a.decision().rule.as_ref().unwrap().name, "eth-hot-refill");
    assert_eq!(a.quorum().counted.len(), 2);
    // The same approvals do not authorize a different intent under the same request id.
    let other = eth_transfer(HOT2, eth(100));
    assert!(matches!(
        authorize(&p, &other, &c, "req-9", &two),
        Err(PolicyError::QuorumNotSatisfied(_))
    ));
    // A denied intent is refused whatever the approvals, even approvals that meet the quorum.
    // 1. The very intent and approvals just authorized, once the key's velocity is used up.
    let (asset, _) = velocity_entries(&intent).unwrap().remove(0);
    let mut full = VelocityLedger::new();
    for i in 0..20 {
        full.record(
            "eth-cold-1",
            &asset,
            now() - SignedDuration::from_mins(i + 1),
            eth(1),
        )
        .unwrap();
    }
    let c_full = ctx(now(), "eth-cold-1", &full);
    match authorize(&p, &intent, &c_full, "req-9", &two) {
        Err(PolicyError::Denied { code, .. }) => assert_eq!(code, DenyCode::VelocityExceeded),
        other => panic!("expected Denied(VelocityExceeded), got {other:?}"),
    }
    // 2. A destination no rule allows, approved by two officers for that very intent: the
    // approvals satisfy the quorum the refill rule asks for, and still nothing is authorized.
    let denied = eth_transfer(STRANGER, eth(1));
    let sd = withdrawal("req-10", denied.digest().unwrap());
    let for_denied = vec![ok(&p, &sd, "alice"), ok(&p, &sd, "carol")];
    let needed = a.decision().quorum().unwrap();
    assert!(evaluate_quorum(&p, needed, &sd, Some(c.requester), &for_denied, now()).is_satisfied());
    match authorize(&p, &denied, &c, "req-10", &for_denied) {
        Err(PolicyError::Denied { code, .. }) => assert_eq!(code, DenyCode::NoRuleMatched),
        other => panic!("expected Denied(NoRuleMatched), got {other:?}"),
    }
}

/// carol approves with a passkey: the example policy with her Ed25519 key replaced by a P-256
/// credential scoped to `localhost` and the console's origin.
fn with_passkey_carol() -> (Policy, p256::ecdsa::SigningKey) {
    let sk = p256::ecdsa::SigningKey::from_bytes(&[42u8; 32].into()).unwrap();
    let sec1 = hex::encode(sk.verifying_key().to_encoded_point(false).as_bytes());
    let text = EXAMPLE.replacen(
        "public_key = \"d5fe6f6cb383f8c37fddbad38c35a16b8a297156e172a18382085d13cf7756a3\"",
        &format!(
            "passkey = {{ public_key = \"{sec1}\", rp_id = \"localhost\", origins = [\"http://localhost:7390\"], credential_id = \"AQID\" }}"
        ),
        1,
    );
    assert_ne!(text, EXAMPLE);
    (Policy::from_toml(text.as_bytes()).unwrap(), sk)
}

/// carol's passkey approval of `msg`, as the console's browser returns it, in the encoding
/// carried where an Ed25519 approval carries its signature.
fn passkey_approval(
    sk: &p256::ecdsa::SigningKey,
    msg: &ApprovalMessage,
    origin: &str,
    flags: u8,
) -> SignedApproval {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    use sha2::Digest as _;
    let bytes = msg.to_bytes().unwrap();
    let cdj = format!(
        r#"{{"type":"webauthn.get","challenge":"{}","origin":"{origin}","crossOrigin":false}}"#,
        kinko_policy::webauthn::base64url(&kinko_policy::webauthn::challenge(&bytes))
    );
    let mut auth = sha2::Sha256::digest(b"localhost").to_vec();
    auth.push(flags);
    auth.extend_from_slice(&1u32.to_be_bytes());
    let mut h = sha2::Sha256::new();
    h.update(&auth);
    h.update(sha2::Sha256::digest(cdj.as_bytes()));
    let digest: [u8; 32] = h.finalize().into();
    let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
    let assertion = kinko_policy::webauthn::Assertion {
        authenticator_data: auth,
        client_data_json: cdj.into_bytes(),
        signature: sig.to_der().as_bytes().to_vec(),
    };
    SignedApproval::from_parts(bytes, &assertion.to_bytes()).unwrap()
}

#[test]
fn a_quorum_mixes_passkey_and_cli_approvals_and_neither_key_signs_for_the_other() {
    let (p, sk) = with_passkey_carol();
    let carol = p.officer("carol").unwrap();
    assert!(carol.public_key.is_none() && carol.passkey.is_some());
    assert_eq!(carol.key_bytes().len(), 65);
    let s = withdrawal("req-1", digest());
    let msg = |officer: &str| ApprovalMessage {
        policy_hash: p.hash(),
        subject: s.clone(),
        officer_id: officer.into(),
        verdict: Verdict::Approve,
        issued_at: NOW - 60,
        expires_at: NOW + 3600,
    };
    let by_passkey = passkey_approval(&sk, &msg("carol"), "http://localhost:7390", 0x05);
    // Through the bytes the daemon stores and logs, and back.
    let again =
        SignedApproval::from_parts(by_passkey.message.clone(), &by_passkey.signature_bytes())
            .unwrap();
    assert_eq!(again, by_passkey);
    let quorum = |approvals: &[SignedApproval]| {
        evaluate_quorum(
            &p,
            &req(2, 2),
            &s,
            Some("withdrawal-ledger"),
            approvals,
            now(),
        )
    };
    // bob (CLI, treasury) and carol (passkey, risk): two officers from two groups.
    let r = quorum(&[ok(&p, &s, "bob"), by_passkey.clone()]);
    assert_eq!(r.state, QuorumState::Satisfied, "{}", r.to_text());
    // Not counted: carol's passkey approval from another origin, without user verification,
    // for another request; an Ed25519 signature under carol's name (her key is a passkey now);
    // bob's Ed25519 approval presented as a passkey assertion of carol's signer.
    for (bad, why) in [
        (
            passkey_approval(&sk, &msg("carol"), "https://evil.example", 0x05),
            "origin",
        ),
        (
            passkey_approval(&sk, &msg("carol"), "http://localhost:7390", 0x01),
            "user verification",
        ),
        (
            passkey_approval(
                &sk,
                &ApprovalMessage {
                    subject: withdrawal("req-2", digest()),
                    ..msg("carol")
                },
                "http://localhost:7390",
                0x05,
            ),
            "another request",
        ),
        (
            SignedApproval::sign(&msg("carol"), &key_of("carol")).unwrap(),
            "Ed25519 for a passkey officer",
        ),
        (
            passkey_approval(&sk, &msg("bob"), "http://localhost:7390", 0x05),
            "passkey for an Ed25519 officer",
        ),
    ] {
        let r = quorum(&[ok(&p, &s, "alice"), bad]);
        assert!(!r.is_satisfied(), "{why}: {}", r.to_text());
        assert_eq!(r.counted.len(), 1, "{why}");
    }
}

#[test]
fn passkey_officers_are_checked_when_the_policy_loads() {
    let sec1 = hex::encode(
        p256::ecdsa::SigningKey::from_bytes(&[42u8; 32].into())
            .unwrap()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    let carol = "public_key = \"d5fe6f6cb383f8c37fddbad38c35a16b8a297156e172a18382085d13cf7756a3\"";
    for (replacement, want) in [
        (
            format!(
                "{carol}\npasskey = {{ public_key = \"{sec1}\", rp_id = \"localhost\", origins = [\"http://localhost:7390\"], credential_id = \"AQID\" }}"
            ),
            "exactly one of public_key",
        ),
        (
            format!(
                "passkey = {{ public_key = \"{}\", rp_id = \"localhost\", origins = [\"http://localhost:7390\"], credential_id = \"AQID\" }}",
                &sec1[..64]
            ),
            "P-256 point",
        ),
        (
            format!(
                "passkey = {{ public_key = \"{sec1}\", rp_id = \"kinko.example\", origins = [\"http://kinko.example\"], credential_id = \"AQID\" }}"
            ),
            "must be https://kinko.example",
        ),
        (
            format!(
                "passkey = {{ public_key = \"{sec1}\", rp_id = \"localhost\", origins = [\"http://localhost:7390/console\"], credential_id = \"AQID\" }}"
            ),
            "with no path",
        ),
        (
            format!(
                "passkey = {{ public_key = \"{sec1}\", rp_id = \"localhost\", origins = [], credential_id = \"AQID\" }}"
            ),
            "between 1 and 8 origins",
        ),
        (
            format!(
                "passkey = {{ public_key = \"{sec1}\", rp_id = \"localhost\", origins = [\"http://localhost:7390\"], credential_id = \"AQID=\" }}"
            ),
            "base64url",
        ),
    ] {
        let text = EXAMPLE.replacen(carol, &replacement, 1);
        match Policy::from_toml(text.as_bytes()) {
            Err(PolicyError::Invalid(d)) => assert!(
                d.0.iter().any(|d| d.message.contains(want)),
                "{want}: {d:?}"
            ),
            other => panic!("{want}: {other:?}"),
        }
    }
    // https with a port, and several origins, load.
    let text = EXAMPLE.replacen(
        carol,
        &format!("passkey = {{ public_key = \"{sec1}\", rp_id = \"kinko.example\", origins = [\"https://kinko.example\", \"https://kinko.example:8443\"], credential_id = \"AQID\" }}"),
        1,
    );
    Policy::from_toml(text.as_bytes()).unwrap();
}

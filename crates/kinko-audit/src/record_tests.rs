#![allow(clippy::unwrap_used)]

use super::*;
use crate::merkle::leaf_hash;

fn freeze() -> Record {
    Record {
        seq: 7,
        time_ms: 1_700_000_000_123,
        principal: "officer-1".into(),
        event: Event::Freeze(Freeze {
            reason: "suspicious".into(),
            signed: None,
        }),
    }
}

/// Written by hand from the format in docs/audit.md; the leaf hash computed independently with
/// Python: `hashlib.sha256(b"\x00" + line).hexdigest()`.
const FREEZE_LINE: &str = r#"{"event":{"reason":"suspicious","signed":null,"type":"freeze"},"principal":"officer-1","seq":7,"time_ms":1700000000123}"#;
const FREEZE_LEAF: &str = "be0b817a1ef65974c793bcf27542c08190e54075a6d58be8cb172e01b7561d95";

#[test]
fn record_line_and_leaf_hash_match_the_documented_format() {
    let line = freeze().encode().unwrap();
    assert_eq!(std::str::from_utf8(&line).unwrap(), FREEZE_LINE);
    assert_eq!(hex::encode(leaf_hash(&line)), FREEZE_LEAF);
    assert_eq!(Record::decode(FREEZE_LINE.as_bytes()).unwrap(), freeze());
}

#[test]
fn non_canonical_lines_are_rejected() {
    for bad in [
        // Whitespace.
        r#"{"event":{"reason":"suspicious","signed":null,"type":"freeze"}, "principal":"officer-1","seq":7,"time_ms":1700000000123}"#,
        // Keys out of order.
        r#"{"principal":"officer-1","event":{"reason":"suspicious","signed":null,"type":"freeze"},"seq":7,"time_ms":1700000000123}"#,
        // Unknown field.
        r#"{"event":{"reason":"suspicious","signed":null,"type":"freeze"},"extra":1,"principal":"officer-1","seq":7,"time_ms":1700000000123}"#,
        r#"{"event":{"reason":"suspicious","signed":null,"type":"freeze","x":1},"principal":"officer-1","seq":7,"time_ms":1700000000123}"#,
        // Escaped character that canonical JSON writes raw.
        r#"{"event":{"reason":"suspiciou\u0073","signed":null,"type":"freeze"},"principal":"officer-1","seq":7,"time_ms":1700000000123}"#,
        // Unknown event type, float, negative seq.
        r#"{"event":{"reason":"suspicious","signed":null,"type":"thaw"},"principal":"officer-1","seq":7,"time_ms":1700000000123}"#,
        r#"{"event":{"reason":"suspicious","signed":null,"type":"freeze"},"principal":"officer-1","seq":7.0,"time_ms":1700000000123}"#,
        r#"{"event":{"reason":"suspicious","signed":null,"type":"freeze"},"principal":"officer-1","seq":-7,"time_ms":1700000000123}"#,
    ] {
        assert!(Record::decode(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn hex_is_lowercase_only_and_sizes_are_limited() {
    let mut r = freeze();
    r.event = Event::Refusal(Refusal {
        request_id: None,
        code: "x".into(),
        message: "y".repeat(MAX_RECORD_LEN),
    });
    assert!(matches!(r.encode(), Err(Error::RecordTooLarge { .. })));
    assert!(serde_json::from_str::<HexBytes>("\"AB\"").is_err());
    assert!(serde_json::from_str::<HexBytes>("\"abc\"").is_err());
    assert_eq!(
        serde_json::from_str::<HexBytes>("\"ab01\"").unwrap().0,
        vec![0xab, 1]
    );
}

#[test]
fn intent_record_detects_mismatched_digest() {
    let canonical = include_str!("../../kinko-intent/tests/sample_intent.canonical.json")
        .trim_end()
        .to_string();
    let digest = IntentDigest::of_canonical_bytes(canonical.as_bytes());
    let ok = IntentRecord {
        canonical: canonical.clone(),
        digest,
    };
    let intent = ok.check().unwrap();
    assert_eq!(IntentRecord::of(&intent).unwrap(), ok);
    let mut wrong = ok.clone();
    wrong.digest.0[0] ^= 1;
    assert!(wrong.check().unwrap_err().contains("digest"));
    let spaced = IntentRecord {
        canonical: canonical.replacen(':', ": ", 1),
        digest,
    };
    assert!(spaced.check().is_err());
}

#[test]
fn every_event_round_trips() {
    let a = Approval {
        officer: "alice".into(),
        public_key: vec![1; 32].into(),
        message: b"m".to_vec().into(),
        signature: vec![2; 64].into(),
    };
    let events = vec![
        Event::KeyCreated(KeyCreated {
            key_name: "k".into(),
            chain: Chain::Bitcoin,
            public_key: vec![2; 33].into(),
            address: "bc1q".into(),
            approvals: vec![a.clone()],
        }),
        Event::PolicyInstalled(PolicyInstalled {
            policy_hash: vec![3; 32].into(),
            policy_text: "version = 1\n\"quoted\" é".into(),
            approvals: vec![],
        }),
        Event::Decision(Decision {
            request_id: "r".into(),
            policy_hash: vec![3; 32].into(),
            outcome: Outcome::NeedsApproval,
            rules: vec!["large".into()],
            explanation: "needs 2".into(),
        }),
        Event::Approval(ApprovalRecorded {
            request_id: "r".into(),
            approval: a.clone(),
        }),
        Event::Rejection(Rejection {
            request_id: "r".into(),
            officer: "bob".into(),
            reason: "no".into(),
            signed: Some(a.clone()),
        }),
        Event::Unfreeze(Unfreeze {
            reason: "ok".into(),
            approvals: vec![a.clone()],
        }),
        Event::Refusal(Refusal {
            request_id: Some("r".into()),
            code: "DENIED".into(),
            message: "m".into(),
        }),
        Event::PolicyProposed(PolicyProposed {
            request_id: "policy-1".into(),
            policy_hash: vec![3; 32].into(),
            base_policy_hash: vec![4; 32].into(),
            proposer: "admin".into(),
        }),
        Event::GovernanceVote(GovernanceVote {
            request_id: "policy-1".into(),
            approval: a.clone(),
        }),
        Event::Cancelled(Cancelled {
            request_id: "r".into(),
            reason: "cancelled by ledger: wrong amount".into(),
        }),
    ];
    for (i, event) in events.into_iter().enumerate() {
        let kind = event.kind();
        let r = Record {
            seq: i as u64 * 1_000_000_007,
            time_ms: u64::MAX - i as u64,
            principal: "p \"quoted\" \u{1} é".into(),
            event,
        };
        let line = r.encode().unwrap();
        // What the log's writer splices together is byte for byte the canonical encoding.
        let spliced = RecordPrefix::encode(&r.principal, &r.event)
            .unwrap()
            .finish(r.seq, r.time_ms)
            .unwrap();
        assert_eq!(spliced, line);
        assert!(
            std::str::from_utf8(&line)
                .unwrap()
                .contains(&format!("\"type\":\"{kind}\""))
        );
        assert_eq!(Record::decode(&line).unwrap(), r);
    }
}

/// A passkey approval as evidence: the known answer of `kinko-policy/tests/webauthn.rs` (made
/// with Python `cryptography`) verifies as a record on its own — signature, challenge, flags —
/// and any edit of the logged bytes fails.
#[test]
fn passkey_evidence_verifies_from_the_record_alone() {
    let assertion = kinko_policy::webauthn::Assertion {
        authenticator_data: hex::decode(
            "49960de5880e8c687434170f6476605b8fe4aeb9a28632c7995cf3ba831d97630500000007",
        )
        .unwrap(),
        client_data_json: br#"{"type":"webauthn.get","challenge":"1TLzNCZxjzETXSpBawJRtO2AiMJBtcpb5mwe-mLRPTU","origin":"http://localhost:7390","crossOrigin":false}"#.to_vec(),
        signature: hex::decode("304402207549343eac9be1e6e8dc67275ff21c41606c609af5b188f942b232768f56e2e6022050a4687ebaf9563dbcc4bb8d2a9c2cb44667c4042a9336562c250fc03df76b3c").unwrap(),
    };
    let good = Approval {
        officer: "carol".into(),
        public_key: HexBytes(hex::decode("041f8df6699c3642a836b606fcb03f20d32bbc4067e31894b1242c9123d50d23343da2b78500e33209a59ee410988c3d6d89526808c938acef21b5852a3bf4ec4b").unwrap()),
        message: HexBytes(b"kinko/approval/v1\nan approval message for the vector".to_vec()),
        signature: HexBytes(assertion.to_bytes()),
    };
    assert!(good.signature_valid());
    let mut other_message = good.clone();
    other_message.message.0.push(b'!');
    assert!(!other_message.signature_valid());
    let mut flipped = good.clone();
    let last = flipped.signature.0.len() - 1;
    flipped.signature.0[last] ^= 1;
    assert!(!flipped.signature_valid());
    let mut no_uv = assertion.clone();
    no_uv.authenticator_data[32] = 0x01;
    let mut edited = good.clone();
    edited.signature = HexBytes(no_uv.to_bytes());
    assert!(!edited.signature_valid());
    let mut truncated = good;
    truncated.signature.0.truncate(40);
    assert!(!truncated.signature_valid());
}

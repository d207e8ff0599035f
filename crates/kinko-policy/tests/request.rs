//! The requester's signature over payload and reference.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kinko_intent::Chain;
use kinko_policy::PolicyError;
use kinko_policy::request::RequestToSign;
use sha2::Digest;

fn req<'a>(payload: &'a [u8], reference: &'a str) -> RequestToSign<'a> {
    RequestToSign {
        requester_id: "withdrawal-ledger",
        key_name: "eth-cold-1",
        chain: Chain::Ethereum,
        idempotency_key: "wd-2026-000123",
        reference,
        payload,
    }
}

#[test]
fn encoding_is_the_documented_layout() {
    let payload = b"\x02\xf8\x70unsigned";
    let bytes = req(payload, "ledger withdrawal 123").to_bytes().unwrap();
    let mut want = b"kinko/request/v1\n".to_vec();
    for s in [
        "withdrawal-ledger",
        "eth-cold-1",
        "ethereum",
        "wd-2026-000123",
    ] {
        want.push(s.len() as u8);
        want.extend(s.as_bytes());
    }
    want.extend(21u32.to_be_bytes());
    want.extend(b"ledger withdrawal 123");
    want.extend(sha2::Sha256::digest(payload));
    assert_eq!(bytes, want);
}

#[test]
fn a_relay_cannot_alter_payload_reference_or_key() {
    let p = example();
    let payload = b"payload: send 10 ETH to hot wallet 1".to_vec();
    let sig = req(&payload, "wd 123")
        .sign(&key_of("withdrawal-ledger"))
        .unwrap();
    req(&payload, "wd 123").verify(&p, &sig).unwrap();

    let altered = b"payload: send 99 ETH to the attacker".to_vec();
    assert_eq!(
        req(&altered, "wd 123").verify(&p, &sig),
        Err(PolicyError::BadSignature("requester"))
    );
    assert!(req(&payload, "wd 124").verify(&p, &sig).is_err());
    let other_key = RequestToSign {
        key_name: "btc-cold-1",
        ..req(&payload, "wd 123")
    };
    assert!(other_key.verify(&p, &sig).is_err());
    let other_idem = RequestToSign {
        idempotency_key: "wd-2026-000124",
        ..req(&payload, "wd 123")
    };
    assert!(other_idem.verify(&p, &sig).is_err());
    // Signed by an officer instead of the requester.
    let by_officer = req(&payload, "wd 123").sign(&key_of("alice")).unwrap();
    assert!(req(&payload, "wd 123").verify(&p, &by_officer).is_err());
    // An unknown requester.
    let unknown = RequestToSign {
        requester_id: "mallory",
        ..req(&payload, "wd 123")
    };
    assert_eq!(
        unknown.verify(&p, &sig),
        Err(PolicyError::UnknownRequester("mallory".into()))
    );
    // Oversized reference.
    let long = "x".repeat(4097);
    assert!(req(&payload, &long).to_bytes().is_err());
}

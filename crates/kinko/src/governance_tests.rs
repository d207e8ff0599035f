#![allow(clippy::unwrap_used)]

use super::*;

/// The example policy shipped with Kinko; its officer keys come from public test seeds,
/// `SHA-256("kinko-example:" || id)` (docs/policy.md).
const EXAMPLE: &str = include_str!("../../../policy/example.toml");

/// The example's key for officer `id`, from its documented test seed.
fn example_key(id: &str) -> SigningKey {
    use sha2::Digest as _;
    let seed: [u8; 32] = sha2::Sha256::digest(format!("kinko-example:{id}").as_bytes()).into();
    SigningKey::from_bytes(&seed)
}

#[test]
fn governance_approvals_are_signed_by_the_listed_key_under_the_local_policy() {
    let policy = Policy::from_toml(EXAMPLE.as_bytes()).unwrap();
    let key = example_key("erin");
    assert_eq!(
        policy.officer("erin").unwrap().public_key,
        Some(key.verifying_key()),
        "the documented test seed"
    );
    let subject = Subject::Freeze {
        request_id: random_id("freeze").unwrap(),
    };
    let a = sign_governance(
        &policy,
        subject.clone(),
        "erin",
        Verdict::Approve,
        600,
        &key,
    )
    .unwrap();
    assert_eq!(a.subject_id, subject.request_id());
    assert_eq!(a.officer_id, "erin");
    let msg = ApprovalMessage::from_bytes(&a.message).unwrap();
    assert_eq!(msg.policy_hash, policy.hash());
    assert_eq!(msg.subject, subject);
    assert_eq!(msg.verdict, Verdict::Approve);
    assert_eq!(msg.expires_at - msg.issued_at, 600);
    let sig = ed25519_dalek::Signature::from_slice(&a.signature).unwrap();
    key.verifying_key().verify_strict(&a.message, &sig).unwrap();

    // Another officer's key under erin's name, an officer the policy does not list, and
    // validities out of range sign nothing.
    let err = sign_governance(
        &policy,
        subject.clone(),
        "erin",
        Verdict::Approve,
        600,
        &example_key("alice"),
    )
    .unwrap_err();
    assert!(err.contains("not the key your policy lists"), "{err}");
    let err = sign_governance(
        &policy,
        subject.clone(),
        "mallory",
        Verdict::Approve,
        600,
        &key,
    )
    .unwrap_err();
    assert!(err.contains("not in your policy"), "{err}");
    for bad in [0, -1, MAX_VALID_FOR + 1, i64::MAX] {
        assert!(
            sign_governance(
                &policy,
                subject.clone(),
                "erin",
                Verdict::Approve,
                bad,
                &key
            )
            .is_err()
        );
    }
}

#[test]
fn request_ids_are_random_and_valid_approval_ids() {
    let a = random_id("unfreeze").unwrap();
    let b = random_id("unfreeze").unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), "unfreeze-".len() + 32);
    assert!(
        a.strip_prefix("unfreeze-")
            .unwrap()
            .bytes()
            .all(|c| c.is_ascii_hexdigit())
    );
}

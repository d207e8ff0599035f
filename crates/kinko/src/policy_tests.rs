#![allow(clippy::unwrap_used)]

use super::*;

/// The example policy shipped with Kinko.
const EXAMPLE: &str = include_str!("../../../policy/example.toml");
/// The EIP-155 example's signing payload (https://eips.ethereum.org/EIPS/eip-155): 1 ETH to
/// 0x3535…35, chain id 1.
const EIP155: &str =
    "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080";
/// The compressed public key of the EIP-155 example's private key 0x4646…46.
const EIP155_PK: &str = "024bc2a31265153f07e70e0bab08724e6b85e217f8cd628ceb62974247bb493382";

/// The example policy with eth-cold-1's public key pinned to the EIP-155 example key.
fn pinned_example() -> String {
    let with_pin = EXAMPLE.replacen(
        "hsm_label = \"kinko-eth-cold-1\"\n",
        &format!("hsm_label = \"kinko-eth-cold-1\"\npublic_key = \"{EIP155_PK}\"\n"),
        1,
    );
    assert_ne!(with_pin, EXAMPLE);
    with_pin
}

fn file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn check_prints_the_hash_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(dir.path(), "policy.toml", &pinned_example());
    let out = check(&p).unwrap();
    let hash = PolicyHash::of_file(pinned_example().as_bytes()).to_hex();
    assert!(out.contains(&hash), "{out}");
    assert!(
        out.contains(&format!(
            "eth-cold-1 (ethereum 1, hsm label kinko-eth-cold-1): public key pinned {EIP155_PK}"
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "btc-cold-1 (bitcoin bitcoin, hsm label kinko-btc-cold-1): public key NOT pinned"
        ),
        "{out}"
    );
    assert!(out.contains("  alice ("), "{out}");
    assert!(
        out.contains("  withdrawal-ledger: eth-cold-1, btc-cold-1, sol-cold-1"),
        "{out}"
    );
    // Rule lines of policy/example.toml (172 and 160), one lower for the inserted pin.
    assert!(
        out.contains("  eth-hot-refill (line 173): 2 approval(s) from [approver]"),
        "{out}"
    );
    assert!(
        out.contains("  deny-token-approve (line 161): deny: "),
        "{out}"
    );
}

#[test]
fn check_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    // Line 21 gets an unknown key; the eth key's pin is not a public key.
    let broken = pinned_example()
        .replacen("id = \"alice\"\n", "id = \"alice\"\nnickname = \"al\"\n", 1)
        .replacen(EIP155_PK, "02abcd", 1);
    let p = file(dir.path(), "bad.toml", &broken);
    let (code, msg) = check(&p).unwrap_err();
    assert_eq!(code, EXIT_REFUSED);
    assert!(msg.contains("2 problem(s)"), "{msg}");
    assert!(
        msg.contains("line 21, column 1: officers: unknown field `nickname`"),
        "{msg}"
    );
    assert!(msg.contains("public_key must be hex"), "{msg}");
    let (code, _) = check(&dir.path().join("missing.toml")).unwrap_err();
    assert_eq!(code, EXIT_USAGE);
}

fn explain_args(policy: PathBuf, payload: PathBuf, at: &str, json: bool) -> ExplainArgs {
    ExplainArgs {
        policy,
        key: "eth-cold-1".into(),
        requester: None,
        at: Some(at.into()),
        hex: true,
        json,
        payload,
    }
}

#[test]
fn explain_decodes_with_the_pinned_key_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(dir.path(), "policy.toml", &pinned_example());
    // Not an allowlisted destination: denied by default, every rule tried is listed.
    let payload = file(dir.path(), "tx.hex", EIP155);
    let (out, denied) = explain(&explain_args(
        policy.clone(),
        payload,
        "2026-07-01T10:00:00Z",
        false,
    ))
    .unwrap();
    assert!(denied, "{out}");
    assert!(
        out.contains("send:     1 ETH -> 0x3535353535353535353535353535353535353535"),
        "{out}"
    );
    // The signer derived from the pinned key is the EIP-155 example's sender.
    assert!(
        out.contains("0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"),
        "{out}"
    );
    assert!(out.contains("requester withdrawal-ledger"), "{out}");
    assert!(out.contains("no rule matched"), "{out}");
    assert!(out.contains("DENIED (NoRuleMatched)"), "{out}");

    // The same transaction to hot wallet 1 (same length, so the RLP stays valid): allowed with
    // two approvals once its cool-down has passed.
    let to_hot = EIP155.replace(
        "3535353535353535353535353535353535353535",
        "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    );
    let payload = file(dir.path(), "hot.hex", &to_hot);
    let (out, denied) = explain(&explain_args(
        policy.clone(),
        payload.clone(),
        "2026-07-01T10:00:00Z",
        false,
    ))
    .unwrap();
    assert!(!denied, "{out}");
    assert!(out.contains("matched rule \"eth-hot-refill\""), "{out}");
    assert!(out.contains("REQUIRES APPROVAL: 2 officer(s)"), "{out}");
    let (json, _) = explain(&explain_args(
        policy.clone(),
        payload.clone(),
        "2026-07-01T10:00:00Z",
        true,
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["decision"]["outcome"], "require_approvals");
    assert_eq!(v["decision"]["rule"]["name"], "eth-hot-refill");
    let intent: Intent = serde_json::from_value(v["intent"].clone()).unwrap();
    assert_eq!(v["intent_digest"], intent.digest().unwrap().to_hex());
    // Before hot wallet 1 was added (2026-01-05) it is not allowlisted yet.
    let (_, denied) = explain(&explain_args(
        policy.clone(),
        payload.clone(),
        "2026-01-06T00:00:00Z",
        false,
    ))
    .unwrap();
    assert!(denied);

    // A key the policy does not pin cannot be explained (no key the daemon could choose).
    let unpinned = file(dir.path(), "unpinned.toml", EXAMPLE);
    let (code, msg) = explain(&explain_args(
        unpinned,
        payload.clone(),
        "2026-07-01T10:00:00Z",
        false,
    ))
    .unwrap_err();
    assert_eq!(code, EXIT_USAGE);
    assert!(msg.contains("does not pin"), "{msg}");
    // A payload for another chain id is refused by the decoder.
    let sepolia = file(
        dir.path(),
        "p.toml",
        &pinned_example().replacen("network = \"1\"", "network = \"11155111\"", 1),
    );
    let (code, msg) = explain(&explain_args(
        sepolia,
        payload,
        "2026-07-01T10:00:00Z",
        false,
    ))
    .unwrap_err();
    assert_eq!(code, EXIT_REFUSED, "{msg}");
}

fn proposal(text: &str, current: &Policy) -> pb::PolicyProposal {
    pb::PolicyProposal {
        proposal_id: "p-1".into(),
        policy_hash: PolicyHash::of_file(text.as_bytes()).0.to_vec(),
        approvals_required: 2,
        approvals_counted: 0,
        effective_at_unix: 0,
        state: "pending_quorum".into(),
        current_policy_hash: current.hash().0.to_vec(),
        policy_text: text.into(),
        proposed_by: "admin".into(),
        status_json: String::new(),
    }
}

#[test]
fn a_proposal_is_signed_only_when_it_is_the_reviewed_file_under_the_policy_in_force() {
    let current = Policy::from_toml(EXAMPLE.as_bytes()).unwrap();
    let new_text = pinned_example();
    let p = proposal(&new_text, &current);
    let h = check_proposal(&p, &current, new_text.as_bytes()).unwrap();
    assert_eq!(h, PolicyHash::of_file(new_text.as_bytes()));
    // The officer reviewed another file.
    let other = new_text.replace("hot wallet 1", "hot wallet one");
    let err = check_proposal(&p, &current, other.as_bytes()).unwrap_err();
    assert!(err.contains("not the file you reviewed"), "{err}");
    // The daemon's hash is not the hash of the text it serves.
    let mut lying = p.clone();
    lying.policy_text = other.clone();
    let err = check_proposal(&lying, &current, other.as_bytes()).unwrap_err();
    assert!(err.contains("its text hashes to"), "{err}");
    // The daemon's policy in force is not the officer's.
    let mut moved = p.clone();
    moved.current_policy_hash = vec![7; 32];
    let err = check_proposal(&moved, &current, new_text.as_bytes()).unwrap_err();
    assert!(err.contains("policy in force"), "{err}");
    // An invalid proposed policy is refused.
    let bad = "version = 1\n";
    let err = check_proposal(&proposal(bad, &current), &current, bad.as_bytes()).unwrap_err();
    assert!(err.contains("invalid"), "{err}");
    // What the officer is shown names the change.
    let new = Policy::from_toml(new_text.as_bytes()).unwrap();
    let shown = change_summary(&current, EXAMPLE, &new, &new_text);
    assert!(
        shown.contains(&format!("+public_key = \"{EIP155_PK}\"")),
        "{shown}"
    );
}

#![allow(clippy::unwrap_used)]

use super::*;
use kinko_intent::Network;

/// The example policy shipped with Kinko.
const EXAMPLE: &str = include_str!("../../../policy/example.toml");
/// The EIP-155 example's signing payload (https://eips.ethereum.org/EIPS/eip-155): 1 ETH to
/// 0x3535…35, chain id 1.
const EIP155: &str =
    "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080";
/// The compressed public key of the EIP-155 example's private key 0x4646…46.
const EIP155_PK: &str = "024bc2a31265153f07e70e0bab08724e6b85e217f8cd628ceb62974247bb493382";
/// The secp256k1 generator G (SEC 2, section 2.4.1): the public key of private key 1.
const G_PK: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

fn policy(pin: Option<&str>) -> Policy {
    let text = match pin {
        Some(pk) => EXAMPLE.replacen(
            "hsm_label = \"kinko-eth-cold-1\"\n",
            &format!("hsm_label = \"kinko-eth-cold-1\"\npublic_key = \"{pk}\"\n"),
            1,
        ),
        None => EXAMPLE.to_string(),
    };
    Policy::from_toml(text.as_bytes()).unwrap()
}

/// What a daemon returns for a request: `payload`, and the intent it says it decoded with
/// `daemon_pk`.
fn request(policy: &Policy, payload: &[u8], daemon_pk: &str) -> pb::Request {
    let intent = kinko_chain::decode(
        kinko_intent::Chain::Ethereum,
        payload,
        &kinko_chain::DecodeContext {
            network: &Network::new("1").unwrap(),
            public_key: &hex::decode(daemon_pk).unwrap(),
            tokens: policy.token_registry(),
        },
    )
    .unwrap();
    pb::Request {
        request_id: "r-1".into(),
        key_name: "eth-cold-1".into(),
        policy_hash: policy.hash().0.to_vec(),
        intent_json: serde_json::to_string(&intent).unwrap(),
        intent_digest: intent.digest().unwrap().0.to_vec(),
        payload: payload.to_vec(),
        ..Default::default()
    }
}

#[test]
fn the_officer_decodes_with_the_key_its_policy_pins() {
    let p = policy(Some(EIP155_PK));
    let payload = hex::decode(EIP155).unwrap();
    let honest = request(&p, &payload, EIP155_PK);
    let (mine, digest) = decode_locally(&p, &honest, None).unwrap();
    // The EIP-155 example's sender: derived from the pinned key, not from the daemon.
    assert_eq!(
        mine.signer.as_str(),
        "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
    );
    assert!(daemon_agrees(&honest, &mine, &digest).unwrap());

    // A daemon that decoded with another key shows another signer: caught.
    let other_key = request(&p, &payload, G_PK);
    let (mine, digest) = decode_locally(&p, &other_key, None).unwrap();
    assert!(!daemon_agrees(&other_key, &mine, &digest).unwrap());

    // A daemon that shows one transaction and serves another: caught.
    let mut swapped = request(&p, &payload, EIP155_PK);
    swapped.payload = hex::decode(EIP155.replace(
        "3535353535353535353535353535353535353535",
        "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    ))
    .unwrap();
    let (mine, digest) = decode_locally(&p, &swapped, None).unwrap();
    assert!(!daemon_agrees(&swapped, &mine, &digest).unwrap());
    // The right intent with another digest: caught.
    let mut digest_only = request(&p, &payload, EIP155_PK);
    digest_only.intent_digest = vec![0; 32];
    let (mine, digest) = decode_locally(&p, &digest_only, None).unwrap();
    assert!(!daemon_agrees(&digest_only, &mine, &digest).unwrap());
}

#[test]
fn refusals_before_decoding() {
    let payload = hex::decode(EIP155).unwrap();
    // The policy does not pin the key: no key the daemon could choose is used instead.
    let unpinned = policy(None);
    let err =
        decode_locally(&unpinned, &request(&unpinned, &payload, EIP155_PK), None).unwrap_err();
    assert!(err.contains("does not pin the public key"), "{err}");
    // The request was evaluated under another policy than the officer's.
    let p = policy(Some(EIP155_PK));
    let err = decode_locally(&p, &request(&unpinned, &payload, EIP155_PK), None).unwrap_err();
    assert!(err.contains("refusing to sign"), "{err}");
    // … unless the officer's policy is the one in force now (the request was pending across an
    // installation): the approval binds, and counts under, the officer's policy.
    let old = request(&unpinned, &payload, EIP155_PK);
    assert!(decode_locally(&p, &old, Some(p.hash().0.as_slice())).is_ok());
    let err = decode_locally(&p, &old, Some(unpinned.hash().0.as_slice())).unwrap_err();
    assert!(err.contains("is not the policy in force"), "{err}");
    // A key the officer's policy does not know.
    let mut r = request(&p, &payload, EIP155_PK);
    r.key_name = "eth-hot-9".into();
    assert!(
        decode_locally(&p, &r, None)
            .unwrap_err()
            .contains("no signing key")
    );
    // A payload the decoder refuses (another chain id than the key's network).
    let mut r = request(&p, &payload, EIP155_PK);
    r.payload = hex::decode(EIP155.replace("018080", "058080")).unwrap();
    assert!(
        decode_locally(&p, &r, None)
            .unwrap_err()
            .contains("decoding the payload locally")
    );
}

//! Passkey assertions (`kinko_policy::webauthn`): a known answer made outside Rust (Python
//! `cryptography`, i.e. OpenSSL's ECDSA, following WebAuthn L2 §7.2 step by step), each check
//! of the verification broken in turn, and assertions made here with the `p256` signer.
#![allow(clippy::unwrap_used)]

use kinko_policy::webauthn::{Assertion, AssertionError, PasskeyKey, base64url, challenge, verify};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use sha2::{Digest, Sha256};

const PUB: &str = "041f8df6699c3642a836b606fcb03f20d32bbc4067e31894b1242c9123d50d23343da2b78500e33209a59ee410988c3d6d89526808c938acef21b5852a3bf4ec4b";
const MSG: &str = "6b696e6b6f2f617070726f76616c2f76310a616e20617070726f76616c206d65737361676520666f722074686520766563746f72";
const CDJ: &str = r#"{"type":"webauthn.get","challenge":"1TLzNCZxjzETXSpBawJRtO2AiMJBtcpb5mwe-mLRPTU","origin":"http://localhost:7390","crossOrigin":false}"#;
/// rpIdHash = SHA-256("localhost"), flags UP|UV, signCount 7.
const AUTH: &str = "49960de5880e8c687434170f6476605b8fe4aeb9a28632c7995cf3ba831d97630500000007";
const SIG: &str = "304402207549343eac9be1e6e8dc67275ff21c41606c609af5b188f942b232768f56e2e6022050a4687ebaf9563dbcc4bb8d2a9c2cb44667c4042a9336562c250fc03df76b3c";

fn key() -> PasskeyKey {
    PasskeyKey {
        public_key: PasskeyKey::parse_public_key(&hex::decode(PUB).unwrap()).unwrap(),
        rp_id: "localhost".into(),
        origins: vec!["http://localhost:7390".into()],
        credential_id: vec![1, 2, 3],
    }
}

fn vector() -> Assertion {
    Assertion {
        authenticator_data: hex::decode(AUTH).unwrap(),
        client_data_json: CDJ.as_bytes().to_vec(),
        signature: hex::decode(SIG).unwrap(),
    }
}

#[test]
fn the_known_answer_verifies_and_its_challenge_is_the_message_digest() {
    let msg = hex::decode(MSG).unwrap();
    assert_eq!(
        base64url(&challenge(&msg)),
        "1TLzNCZxjzETXSpBawJRtO2AiMJBtcpb5mwe-mLRPTU"
    );
    verify(&key(), &msg, &vector()).unwrap();
    assert_eq!(key().sec1(), hex::decode(PUB).unwrap());
}

/// An edit of the key, the message or the assertion.
type Breakage = Box<dyn Fn(&mut PasskeyKey, &mut Vec<u8>, &mut Assertion)>;

#[test]
fn every_check_refuses_its_own_breakage() {
    let msg = hex::decode(MSG).unwrap();
    let cases: Vec<(&str, Breakage, AssertionError)> = vec![
        (
            "another message",
            Box::new(|_, m, _| m.push(b'!')),
            AssertionError::Challenge,
        ),
        (
            "another origin",
            Box::new(|k, _, _| k.origins = vec!["http://localhost:7391".into()]),
            AssertionError::Origin("http://localhost:7390".into()),
        ),
        (
            "another relying party",
            Box::new(|k, _, _| k.rp_id = "kinko.example".into()),
            AssertionError::RpId("kinko.example".into()),
        ),
        (
            "a registration, not an assertion",
            Box::new(|_, _, a| {
                a.client_data_json = CDJ.replace("webauthn.get", "webauthn.create").into_bytes()
            }),
            AssertionError::Type("webauthn.create".into()),
        ),
        (
            "cross-origin",
            Box::new(|_, _, a| {
                a.client_data_json = CDJ
                    .replace("\"crossOrigin\":false", "\"crossOrigin\":true")
                    .into_bytes()
            }),
            AssertionError::CrossOrigin,
        ),
        (
            "no user verification (UP only)",
            Box::new(|_, _, a| a.authenticator_data[32] = 0x01),
            AssertionError::UserVerified,
        ),
        (
            "no user presence",
            Box::new(|_, _, a| a.authenticator_data[32] = 0x04),
            AssertionError::UserPresent,
        ),
        (
            "a counter changed after signing",
            Box::new(|_, _, a| a.authenticator_data[36] = 8),
            AssertionError::Signature,
        ),
        (
            "a signature byte flipped",
            Box::new(|_, _, a| a.signature[10] ^= 1),
            AssertionError::Signature,
        ),
        (
            "not JSON",
            Box::new(|_, _, a| a.client_data_json = b"type=webauthn.get".to_vec()),
            AssertionError::ClientData,
        ),
        (
            "authenticatorData cut",
            Box::new(|_, _, a| a.authenticator_data.truncate(33)),
            AssertionError::AuthenticatorData,
        ),
        (
            "oversized",
            Box::new(|_, _, a| a.client_data_json = vec![b' '; 5000]),
            AssertionError::TooLarge,
        ),
        (
            "another key",
            Box::new(|k, _, _| {
                k.public_key = *p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into())
                    .unwrap()
                    .verifying_key()
            }),
            AssertionError::Signature,
        ),
    ];
    for (what, edit, want) in cases {
        let (mut k, mut m, mut a) = (key(), msg.clone(), vector());
        edit(&mut k, &mut m, &mut a);
        assert_eq!(verify(&k, &m, &a), Err(want), "{what}");
    }
}

/// An assertion over `message` by `sk`, as an authenticator makes it.
fn assert_with(sk: &p256::ecdsa::SigningKey, message: &[u8], origin: &str, flags: u8) -> Assertion {
    let cdj = format!(
        r#"{{"type":"webauthn.get","challenge":"{}","origin":"{origin}"}}"#,
        base64url(&challenge(message))
    );
    let mut auth = Sha256::digest(b"localhost").to_vec();
    auth.push(flags);
    auth.extend_from_slice(&0u32.to_be_bytes());
    let mut h = Sha256::new();
    h.update(&auth);
    h.update(Sha256::digest(cdj.as_bytes()));
    let digest: [u8; 32] = h.finalize().into();
    let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
    Assertion {
        authenticator_data: auth,
        client_data_json: cdj.into_bytes(),
        signature: sig.to_der().as_bytes().to_vec(),
    }
}

#[test]
fn assertions_of_many_messages_verify_only_for_their_own() {
    let sk = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
    let k = PasskeyKey {
        public_key: *sk.verifying_key(),
        ..key()
    };
    let a1 = assert_with(&sk, b"first", "http://localhost:7390", 0x05);
    let a2 = assert_with(&sk, b"second", "http://localhost:7390", 0x05);
    verify(&k, b"first", &a1).unwrap();
    verify(&k, b"second", &a2).unwrap();
    assert_eq!(verify(&k, b"second", &a1), Err(AssertionError::Challenge));
    // Base64url of digests of every length class (no padding, - and _).
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    assert_eq!(base64url(&[0xff]), "_w");
    assert_eq!(base64url(b""), "");
}

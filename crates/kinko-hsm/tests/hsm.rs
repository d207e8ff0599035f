//! kinko-hsm against a real SoftHSM2 token, a fresh token per test.
#![allow(clippy::unwrap_used)]

mod common;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use k256::ecdsa::{RecoveryId, VerifyingKey, signature::hazmat::PrehashVerifier};
use k256::elliptic_curve::scalar::IsHigh;
use kinko_hsm::testing::{TestToken, module_path};
use kinko_hsm::{Hsm, HsmConfig, HsmError, KeyKind, PinSource, PublicKey};
use secrecy::SecretString;

fn find_one(
    s: &cryptoki::session::Session,
    class: ObjectClass,
    label: &str,
) -> cryptoki::object::ObjectHandle {
    let found = s
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "exactly one {class:?} labelled {label}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_keys_have_the_required_attributes_and_value_is_refused() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(2).await.unwrap();
    hsm.generate_key("k1", KeyKind::Secp256k1).await.unwrap();
    hsm.generate_key("e1", KeyKind::Ed25519).await.unwrap();
    let s = common::raw_session(&token);
    let mut ids = Vec::new();
    for (label, params) in [
        ("k1", &[0x06u8, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a][..]),
        ("e1", &[0x06, 0x03, 0x2b, 0x65, 0x70][..]),
    ] {
        let private = find_one(&s, ObjectClass::PRIVATE_KEY, label);
        let attrs = s
            .get_attributes(
                private,
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Sign,
                    AttributeType::Derive,
                    AttributeType::Decrypt,
                    AttributeType::Unwrap,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Id,
                    AttributeType::EcParams,
                ],
            )
            .unwrap();
        let mut seen = 0;
        for a in attrs {
            match a {
                Attribute::Token(v)
                | Attribute::Private(v)
                | Attribute::Sensitive(v)
                | Attribute::Sign(v) => {
                    assert!(v, "{label}: {a:?}");
                    seen += 1;
                }
                Attribute::AlwaysSensitive(v) | Attribute::NeverExtractable(v) => {
                    assert!(v, "{label}: {a:?}");
                    seen += 1;
                }
                Attribute::Extractable(v)
                | Attribute::Derive(v)
                | Attribute::Decrypt(v)
                | Attribute::Unwrap(v) => {
                    assert!(!v, "{label}: {a:?}");
                    seen += 1;
                }
                Attribute::Id(id) => {
                    assert_eq!(id.len(), 16);
                    ids.push(id);
                    seen += 1;
                }
                Attribute::EcParams(p) => {
                    // SoftHSM2 records Ed25519 private keys with the PKCS#11 3.0 curve name
                    // (PrintableString "edwards25519") even when generated from the OID.
                    assert!(
                        p == params || (label == "e1" && p == b"\x13\x0cedwards25519"),
                        "{label}: {p:?}"
                    );
                    seen += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, 12, "{label}: every attribute reported");
        // The token refuses to reveal the private value.
        let info = s
            .get_attribute_info(private, &[AttributeType::Value])
            .unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{info:?}"
        );
        let got = s.get_attributes(private, &[AttributeType::Value]).unwrap();
        assert!(got.is_empty(), "CKA_VALUE must not be returned: {got:?}");
        let public = find_one(&s, ObjectClass::PUBLIC_KEY, label);
        let pub_attrs = s
            .get_attributes(public, &[AttributeType::Verify, AttributeType::Token])
            .unwrap();
        assert_eq!(
            pub_attrs,
            vec![Attribute::Verify(true), Attribute::Token(true)]
        );
    }
    assert_ne!(ids[0], ids[1], "CKA_ID is unique");
    // A second key with a used label is refused.
    assert!(matches!(
        hsm.generate_key("k1", KeyKind::Ed25519).await,
        Err(HsmError::KeyExists(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_and_verify_on_both_curves_and_keys_survive_reopening() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(2).await.unwrap();
    let PublicKey::Secp256k1(pk) = hsm.generate_key("eth", KeyKind::Secp256k1).await.unwrap()
    else {
        panic!("secp256k1 key expected")
    };
    let PublicKey::Ed25519(vk) = hsm.generate_key("sol", KeyKind::Ed25519).await.unwrap() else {
        panic!("ed25519 key expected")
    };
    let prehash = [0x42u8; 32];
    let sig = hsm.sign_secp256k1_prehash("eth", prehash).await.unwrap();
    let k_sig = k256::ecdsa::Signature::from_slice(&sig.rs).unwrap();
    VerifyingKey::from(pk)
        .verify_prehash(&prehash, &k_sig)
        .unwrap();
    let msg = b"solana message bytes";
    let ed = hsm.sign_ed25519("sol", msg).await.unwrap();
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&ed))
        .unwrap();

    // A fresh handle finds the same keys by label, with the same public keys.
    let again = token.open(1).await.unwrap();
    assert_eq!(
        again.public_key("eth").await.unwrap(),
        PublicKey::Secp256k1(pk)
    );
    assert_eq!(
        again.public_key("sol").await.unwrap(),
        PublicKey::Ed25519(vk)
    );
    // Wrong algorithm and unknown labels are typed errors.
    assert!(matches!(
        again.sign_ed25519("eth", msg).await,
        Err(HsmError::WrongKeyType { .. })
    ));
    assert!(matches!(
        again.sign_secp256k1_prehash("sol", prehash).await,
        Err(HsmError::WrongKeyType { .. })
    ));
    assert!(matches!(
        again.public_key("nope").await,
        Err(HsmError::KeyNotFound(_))
    ));
    assert!(matches!(
        again.public_key("").await,
        Err(HsmError::InvalidLabel(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_ecdsa_signatures_are_low_s_with_correct_recovery_ids() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(2).await.unwrap();
    let PublicKey::Secp256k1(pk) = hsm.generate_key("k", KeyKind::Secp256k1).await.unwrap() else {
        panic!()
    };
    let expected = VerifyingKey::from(pk);
    let (mut parity_one, mut parity_zero) = (0, 0);
    for i in 0u32..1000 {
        let mut prehash = [0u8; 32];
        prehash[..4].copy_from_slice(&i.to_be_bytes());
        let sig = hsm.sign_secp256k1_prehash("k", prehash).await.unwrap();
        let k_sig = k256::ecdsa::Signature::from_slice(&sig.rs).unwrap();
        assert!(!bool::from(k_sig.s().is_high()), "signature {i} is high-S");
        let recid = RecoveryId::from_byte(sig.recovery_id).unwrap();
        let recovered = VerifyingKey::recover_from_prehash(&prehash, &k_sig, recid).unwrap();
        assert_eq!(recovered, expected, "recovery id of signature {i}");
        if sig.recovery_id == 1 {
            parity_one += 1
        } else {
            parity_zero += 1
        }
    }
    // Both parities occur: the recovery id is computed, not constant.
    assert!(
        parity_one > 350 && parity_zero > 350,
        "{parity_zero}/{parity_one}"
    );
}

/// Normalization is needed: SoftHSM2's raw CKM_ECDSA output is high-S about half of the time.
#[tokio::test(flavor = "multi_thread")]
async fn raw_softhsm2_signatures_are_often_high_s() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(1).await.unwrap();
    hsm.generate_key("k", KeyKind::Secp256k1).await.unwrap();
    let s = common::raw_session(&token);
    let private = find_one(&s, ObjectClass::PRIVATE_KEY, "k");
    let high = (0..200u8)
        .filter(|i| {
            let raw = s.sign(&Mechanism::Ecdsa, private, &[*i; 32]).unwrap();
            bool::from(
                k256::ecdsa::Signature::from_slice(&raw)
                    .unwrap()
                    .s()
                    .is_high(),
            )
        })
        .count();
    assert!((40..=160).contains(&high), "{high} of 200 high-S");
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_tasks_share_the_pool() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(4).await.unwrap();
    let PublicKey::Secp256k1(pk) = hsm.generate_key("k", KeyKind::Secp256k1).await.unwrap() else {
        panic!()
    };
    let PublicKey::Ed25519(vk) = hsm.generate_key("e", KeyKind::Ed25519).await.unwrap() else {
        panic!()
    };
    let mut tasks = Vec::new();
    for t in 0u8..64 {
        let hsm = hsm.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0u8..8 {
                let prehash = [t ^ i.wrapping_mul(31); 32];
                let sig = hsm.sign_secp256k1_prehash("k", prehash).await.unwrap();
                let msg = [t, i];
                let ed = hsm.sign_ed25519("e", &msg).await.unwrap();
                out.push((prehash, sig, msg, ed));
            }
            out
        }));
    }
    let vk_k = VerifyingKey::from(pk);
    let mut n = 0;
    for t in tasks {
        for (prehash, sig, msg, ed) in t.await.unwrap() {
            let k_sig = k256::ecdsa::Signature::from_slice(&sig.rs).unwrap();
            vk_k.verify_prehash(&prehash, &k_sig).unwrap();
            vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&ed))
                .unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 64 * 8);
    // The pool never opened more than its 4 sessions, however many tasks and workers there were
    // (SoftHSM2 does not report its session count, so this is the pool's own accounting). It
    // opens them on demand: on a loaded machine three may have served all 512 pairs, so the
    // bound, not an exact count, is what is asserted.
    let open = hsm.open_sessions();
    assert!(
        (1..=4).contains(&open),
        "{open} sessions open for a pool of 4"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_is_a_typed_error_and_not_retried() {
    let token = TestToken::new().unwrap();
    let err = Hsm::open_with_pin(
        &module_path(),
        &token.label,
        SecretString::from("wrong-pin"),
        4,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HsmError::PinIncorrect { .. }), "{err:?}");
    assert!(err.to_string().contains("not retried"));
    // The right PIN still works: the failure did not lock the token.
    token.open(1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_module_or_token_is_a_typed_error() {
    let err = Hsm::open_with_pin(
        std::path::Path::new("/nonexistent/libpkcs11.so"),
        "x",
        SecretString::from("1234"),
        1,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HsmError::ModuleLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("hsm.module"));
    let token = TestToken::new().unwrap();
    let err = Hsm::open_with_pin(
        &module_path(),
        "no-such-token",
        SecretString::from("1234"),
        1,
    )
    .await
    .unwrap_err();
    match err {
        HsmError::TokenNotFound { label, available } => {
            assert_eq!(label, "no-such-token");
            assert!(available.contains(&token.label));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pin_sources_refuse_readable_files_and_never_show_the_pin() {
    use std::os::unix::fs::PermissionsExt;
    let token = TestToken::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pin_path = dir.path().join("pin");
    let pin = secrecy::ExposeSecret::expose_secret(&token.user_pin).to_string();
    std::fs::write(&pin_path, format!("{pin}\n")).unwrap();
    let config = HsmConfig {
        module: module_path(),
        token_label: token.label.clone(),
        pin: PinSource::File(pin_path.clone()),
        pool_size: 2,
    };
    // Readable by everyone, by the group only, writable by the group: each refused.
    for mode in [0o644, 0o640, 0o620, 0o604] {
        std::fs::set_permissions(&pin_path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Hsm::open(&config).await.unwrap_err();
        assert!(
            matches!(err, HsmError::PinSource(ref m) if m.contains("chmod 600") && m.contains(&format!("mode {mode:o}"))),
            "{mode:o}: {err:?}"
        );
    }
    std::fs::set_permissions(&pin_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hsm = Hsm::open(&config).await.unwrap();
    for shown in [
        format!("{config:?}"),
        format!("{hsm:?}"),
        format!("{token:?}"),
        format!("{:?}", config.pin.load().unwrap()),
    ] {
        assert!(!shown.contains(&pin), "PIN leaked in {shown}");
    }
    let missing = token.config_with_env_pin("KINKO_TEST_PIN_THAT_IS_NOT_SET", 1);
    assert!(matches!(
        Hsm::open(&missing).await,
        Err(HsmError::PinSource(_))
    ));
    // Strict config: unknown fields are refused.
    let bad: Result<HsmConfig, _> =
        serde_json_like(r#"{"module":"/x","token_label":"t","pin":{"file":"/p"},"pool":3}"#);
    assert!(bad.is_err());
}

fn serde_json_like(s: &str) -> Result<HsmConfig, String> {
    // The config is TOML in the daemon; any serde format exercises deny_unknown_fields.
    serde_json::from_str(s).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn extractable_or_non_sensitive_keys_are_refused() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(1).await.unwrap();
    let s = common::raw_session(&token);
    let params = vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    // Each case breaks exactly one of the two attributes, so each refusal proves its own check.
    for (label, sensitive, extractable, why) in [
        ("not-sensitive", false, false, "CKA_SENSITIVE is not true"),
        ("exportable", true, true, "CKA_EXTRACTABLE is not false"),
    ] {
        let public = vec![
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(params.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(sensitive),
            Attribute::Extractable(extractable),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .unwrap();
        let err = hsm
            .sign_secp256k1_prehash(label, [1; 32])
            .await
            .unwrap_err();
        match &err {
            HsmError::UnsafeKey {
                label: got_label,
                reason,
            } => {
                assert_eq!(got_label, label, "{err:?}");
                assert_eq!(reason, why, "{err:?}");
            }
            other => panic!("{label}: expected UnsafeKey, got {other:?}"),
        }
    }
}

/// A key the token would also decrypt, unwrap or derive with (what `pkcs11-tool --keypairgen`
/// makes unless told otherwise) is refused, each permission named; so is a key that was once
/// extractable. The same key made with only CKA_SIGN is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn keys_that_allow_more_than_signing_are_refused() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(1).await.unwrap();
    let s = common::raw_session(&token);
    let params = vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    let cases: [(&str, Vec<Attribute>, Option<&str>); 6] = [
        (
            "decrypts",
            vec![Attribute::Decrypt(true)],
            Some("CKA_DECRYPT is true"),
        ),
        (
            "unwraps",
            vec![Attribute::Unwrap(true)],
            Some("CKA_UNWRAP is true"),
        ),
        (
            "derives",
            vec![Attribute::Derive(true)],
            Some("CKA_DERIVE is true"),
        ),
        (
            "all-three",
            vec![
                Attribute::Decrypt(true),
                Attribute::Unwrap(true),
                Attribute::Derive(true),
            ],
            Some("CKA_DECRYPT, CKA_UNWRAP, CKA_DERIVE is true"),
        ),
        (
            "was-extractable",
            vec![Attribute::Extractable(true)],
            Some("CKA_NEVER_EXTRACTABLE is not true"),
        ),
        ("sign-only", vec![], None),
    ];
    for (label, extra, why) in cases {
        let public = vec![
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(params.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
            Attribute::SignRecover(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        for flag in [
            Attribute::Extractable(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ] {
            if !extra
                .iter()
                .any(|a| std::mem::discriminant(a) == std::mem::discriminant(&flag))
            {
                private.push(flag);
            }
        }
        private.extend(extra);
        let (_, priv_h) = s
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .unwrap();
        if label == "was-extractable" {
            // Made extractable, then locked: the token remembers it once was.
            s.update_attributes(priv_h, &[Attribute::Extractable(false)])
                .unwrap();
        }
        let got = hsm.sign_secp256k1_prehash(label, [1; 32]).await;
        match (why, got) {
            (None, Ok(_)) => {}
            (Some(why), Err(HsmError::UnsafeKey { label: l, reason })) => {
                assert_eq!(l, label);
                assert!(reason.starts_with(why), "{label}: {reason}");
            }
            (why, other) => panic!("{label}: expected {why:?}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_probe_reports_both_curves() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(1).await.unwrap();
    let caps = hsm.probe().await.unwrap();
    assert!(caps.secp256k1_ecdsa && caps.ed25519, "{caps:?}");
    assert!(
        caps.mechanisms.iter().any(|m| m == "CKM_ECDSA"),
        "{:?}",
        caps.mechanisms
    );
    caps.require_all().unwrap();
    let none = kinko_hsm::Capabilities {
        mechanisms: vec![],
        secp256k1_ecdsa: false,
        ed25519: true,
    };
    let err = none.require_all().unwrap_err();
    assert!(err.to_string().contains("secp256k1") && !err.to_string().contains("Ed25519"));
}

/// The last handle's drop closes the pool's sessions on the dropping thread, before it returns:
/// a worker thread that still held the pool after answering closed them later, racing the
/// process's exit and `C_Finalize` (SoftHSM2 then aborted with `double free or corruption`).
/// The token keeps a login only while one of the process's sessions is open, so a fresh session
/// right after the drop must see no login.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_last_handle_closes_every_session_before_it_returns() {
    use cryptoki::session::SessionState;
    let token = TestToken::new().unwrap();
    let ctx = common::ctx();
    let slot = kinko_hsm::find_token(&ctx, &token.label).unwrap();
    for round in 0..40u8 {
        let hsm = token.open(2).await.unwrap();
        if round == 0 {
            hsm.generate_key("k", KeyKind::Secp256k1).await.unwrap();
        }
        // Both sessions busy at once, then the answer of the last job is the last use.
        let (a, b) = tokio::join!(
            hsm.sign_secp256k1_prehash("k", [round; 32]),
            hsm.sign_secp256k1_prehash("k", [round ^ 0xff; 32])
        );
        a.unwrap();
        b.unwrap();
        drop(hsm);
        let probe = ctx.open_ro_session(slot).unwrap();
        let state = probe.get_session_info().unwrap().session_state();
        assert_eq!(
            state,
            SessionState::RoPublic,
            "round {round}: the token is still logged in after the last handle was dropped"
        );
    }
}

//! Kinko on a second PKCS#11 implementation: Kryoptic (a Rust soft token over OpenSSL ≥ 3.2),
//! built by `hsm-config/kryoptic/build.sh` and named by `KINKO_SECOND_PKCS11_MODULE`. The same
//! code paths as on SoftHSM2 — token initialization, login, the capability probe, key
//! generation with Kinko's attributes, the attribute checks, the public key read back
//! (Kryoptic returns `CKA_EC_POINT` raw where SoftHSM2 wraps it in DER), signing with software
//! verification — on the Ed25519 keys of the Solana and audit-log paths. Kryoptic has no
//! secp256k1: the probe says so, and only the kinds a policy needs are required.
//!
//! The README's test command builds Kryoptic and sets the variable; without it this test
//! fails, unless `KINKO_ALLOW_SKIP` names `second_token` (or is `1`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use ed25519_dalek::Verifier as _;
use kinko_hsm::{Hsm, HsmError, KeyKind, PublicKey};
use secrecy::SecretString;

#[tokio::test(flavor = "multi_thread")]
async fn kinkos_ed25519_paths_work_on_kryoptic_and_the_probe_names_what_it_lacks() {
    let Some(module) = kinko_hsm::testing::second_module() else {
        return;
    };
    // Kryoptic reads its configuration (which names its token's SQLite file) from
    // KRYOPTIC_CONF at C_Initialize. Setting a variable in this process is unsafe in edition
    // 2024, so the test runs itself again in a child process with the variable set.
    if std::env::var_os("KRYOPTIC_CONF").is_none() {
        let dir = tempfile::tempdir().unwrap();
        let conf = kinko_hsm::testing::write_kryoptic_conf(dir.path()).unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kinkos_ed25519_paths_work_on_kryoptic_and_the_probe_names_what_it_lacks",
                "--nocapture",
            ])
            .env("KRYOPTIC_CONF", &conf)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the test failed on Kryoptic (its output is above)"
        );
        return;
    }

    let so = SecretString::from("kinko-so-pin-1234".to_string());
    let user = SecretString::from("kinko-user-pin-1234".to_string());
    kinko_hsm::provision::init_token(&module, "kinko-second", &so, &user).unwrap();
    let hsm = Hsm::open_with_pin(&module, "kinko-second", user.clone(), 2)
        .await
        .unwrap();

    // The probe: Ed25519 works, secp256k1 does not, and only what a policy needs is required.
    let caps = hsm.probe().await.unwrap();
    assert!(caps.ed25519, "{caps:?}");
    assert!(!caps.secp256k1_ecdsa, "Kryoptic has no secp256k1: {caps:?}");
    caps.require(&[KeyKind::Ed25519]).unwrap();
    let err = caps.require_all().unwrap_err();
    assert!(
        matches!(&err, HsmError::MissingMechanism(m) if m.contains("secp256k1") && !m.contains("Ed25519")),
        "{err:?}"
    );

    // The log key and a Solana key: generated with Kinko's attributes, read back and checked
    // by a fresh handle (the attribute checks and the self-test), signatures verified here.
    let PublicKey::Ed25519(log_pk) = hsm
        .generate_key("kinko-log", KeyKind::Ed25519)
        .await
        .unwrap()
    else {
        panic!("not Ed25519");
    };
    let sol_pk = hsm
        .generate_key("kinko-sol-1", KeyKind::Ed25519)
        .await
        .unwrap();
    drop(hsm);
    let hsm = Hsm::open_with_pin(&module, "kinko-second", user.clone(), 2)
        .await
        .unwrap();
    assert_eq!(hsm.public_key("kinko-sol-1").await.unwrap(), sol_pk);
    let note = b"kinko.example.com/log\n42\nroot\n";
    let sig = hsm.sign_ed25519("kinko-log", note).await.unwrap();
    log_pk
        .verify(note, &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
    let blocking = {
        let hsm = hsm.clone();
        tokio::task::spawn_blocking(move || hsm.sign_ed25519_blocking("kinko-log", b"checkpoint"))
            .await
            .unwrap()
            .unwrap()
    };
    log_pk
        .verify(
            b"checkpoint",
            &ed25519_dalek::Signature::from_bytes(&blocking),
        )
        .unwrap();
    // A secp256k1 key cannot be made here: a typed error, not a panic.
    assert!(
        hsm.generate_key("kinko-eth-1", KeyKind::Secp256k1)
            .await
            .is_err()
    );

    // A key this token would also derive with is refused, as on SoftHSM2.
    {
        let ctx = kinko_hsm::load_module(&module).unwrap();
        let slot = kinko_hsm::find_token(&ctx, "kinko-second").unwrap();
        let s = ctx.open_rw_session(slot).unwrap();
        match s.login(UserType::User, Some(&user)) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => panic!("login: {e}"),
        }
        let params = vec![0x06, 0x03, 0x2b, 0x65, 0x70];
        let public = vec![
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(params),
            Attribute::Label(b"derives".to_vec()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Derive(true),
            Attribute::Label(b"derives".to_vec()),
        ];
        s.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
            .unwrap();
    }
    let err = hsm.sign_ed25519("derives", b"x").await.unwrap_err();
    assert!(
        matches!(&err, HsmError::UnsafeKey { reason, .. } if reason.starts_with("CKA_DERIVE is true")),
        "{err:?}"
    );
}

//! Recovery after the token closed every session behind the pool's back. In its own test binary
//! (its own process), because resetting the module affects every handle in the process.
#![allow(clippy::unwrap_used)]

use kinko_hsm::testing::TestToken;
use kinko_hsm::{HsmError, KeyKind};

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_recovers_after_every_session_was_closed() {
    let token = TestToken::new().unwrap();
    let hsm = token.open(4).await.unwrap();
    let pk = hsm.generate_key("k", KeyKind::Secp256k1).await.unwrap();
    let ek = hsm.generate_key("e", KeyKind::Ed25519).await.unwrap();
    let h = hsm.clone();
    tokio::task::spawn_blocking(move || h.sign_ed25519_blocking("e", b"before"))
        .await
        .unwrap()
        .unwrap();
    // Fill the pool with several sessions.
    let mut tasks = Vec::new();
    for i in 0u8..16 {
        let hsm = hsm.clone();
        tasks.push(tokio::spawn(async move {
            hsm.sign_secp256k1_prehash("k", [i; 32]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for round in 0..3 {
        // C_Finalize + C_Initialize: all sessions closed, login gone, object handles stale.
        hsm.dangerous_reset_module().await.unwrap();
        // First after the reset, the blocking path of the audit log's checkpoint signer recovers
        // too (it kept a stale handle forever: found by the red-team token-pull test).
        let h = hsm.clone();
        tokio::task::spawn_blocking(move || h.sign_ed25519_blocking("e", b"checkpoint"))
            .await
            .unwrap()
            .unwrap();
        let sig = hsm.sign_secp256k1_prehash("k", [round; 32]).await.unwrap();
        assert!(sig.recovery_id <= 1);
        hsm.sign_ed25519("e", b"after reset").await.unwrap();
        assert_eq!(hsm.public_key("k").await.unwrap(), pk);
        assert_eq!(hsm.public_key("e").await.unwrap(), ek);
    }
    // Concurrent callers after a reset all recover too.
    hsm.dangerous_reset_module().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0u8..32 {
        let hsm = hsm.clone();
        tasks.push(tokio::spawn(async move {
            hsm.sign_secp256k1_prehash("k", [i; 32]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn _unused_variant_names_compile() {
    // HsmError::TokenUnavailable is what callers see when the token stays gone; its display
    // names the function and the attempts.
    let e = HsmError::TokenUnavailable {
        function: cryptoki::context::Function::Sign,
        rv: cryptoki::error::RvError::DeviceRemoved,
        attempts: kinko_hsm::MAX_ATTEMPTS,
    };
    assert!(e.is_unavailable());
    assert!(e.to_string().contains("3 attempts"), "{e}");
}

//! HSM faults against a running kinkod: the token's files moved away and restored (a token
//! pulled and put back). Signing fails with a typed error, nothing is signed or lost, kinkod
//! keeps serving, and signing resumes when the token is back — without a restart.

use std::path::{Path, PathBuf};

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, Verdict, channel, eth_transfer, free_port, officer_approval, pb, reason, start,
    submission, unique_label,
};

/// The SoftHSM2 directory holding the token labelled `label`.
fn token_dir(label: &str) -> PathBuf {
    let conf =
        std::fs::read_to_string(kinko_hsm::testing::ensure_softhsm2_conf().unwrap()).unwrap();
    let tokens = conf
        .lines()
        .find_map(|l| l.strip_prefix("directories.tokendir = "))
        .unwrap()
        .trim()
        .to_string();
    std::fs::read_dir(tokens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read(p.join("token.object"))
                .is_ok_and(|b| b.windows(label.len()).any(|w| w == label.as_bytes()))
        })
        .expect("the token's directory")
}

async fn submit_and_approve_once(d: &Daemon, nonce: u64, idem: &str) -> String {
    let mut ledger = WithdrawalServiceClient::new(channel(d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                nonce,
                1_000,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            idem,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut alice = ApprovalServiceClient::new(channel(d, "alice").await);
    alice
        .approve(officer_approval(d, "alice", &r.request_id, Verdict::Approve).await)
        .await
        .unwrap();
    r.request_id
}

/// A PSBT spending one P2WPKH output of btc-dev to the development hot wallet.
fn btc_psbt(d: &Daemon) -> Vec<u8> {
    use bitcoin::hashes::Hash as _;
    let pk = kinko_tests::policy(&d.dir)
        .key("btc-dev")
        .unwrap()
        .public_key
        .clone()
        .unwrap();
    let key = bitcoin::CompressedPublicKey::from_slice(&pk).unwrap();
    let hot = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .assume_checked();
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array([7; 32]),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(90_000),
            script_pubkey: hot.script_pubkey(),
        }],
    };
    let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx).unwrap();
    psbt.inputs[0].witness_utxo = Some(bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: bitcoin::ScriptBuf::new_p2wpkh(&key.wpubkey_hash()),
    });
    psbt.serialize()
}

fn rename(from: &Path, to: &Path) {
    std::fs::rename(from, to).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_pulled_and_put_back_fails_typed_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let label = unique_label("atk-hsm");
    let d = start(&dir, &label, free_port(), true);
    let first = submit_and_approve_once(&d, 0, "hsm-1").await;
    let second = submit_and_approve_once(&d, 1, "hsm-2").await;
    let token = token_dir(&label);
    let away = tmp.path().join("token-away");

    // The token disappears: the signing step fails with a typed error and kinkod stays up.
    rename(&token, &away);
    let mut bob = ApprovalServiceClient::new(channel(&d, "bob").await);
    let err = bob
        .approve(officer_approval(&d, "bob", &first, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HSM_UNAVAILABLE", "{err:?}");
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .get_request(pb::RequestId {
            request_id: first.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // Authorized and then not signed: failed explicitly, never retried silently.
    assert_eq!(r.state, pb::RequestState::Failed as i32, "{r:?}");
    assert!(r.signed_transaction.is_empty());

    // The token is back: kinkod re-initializes the module after a missing key (at most every
    // 2 s) and signing resumes without a restart. Each failed try failed its request explicitly.
    rename(&away, &token);
    let mut signed = None;
    for attempt in 0..20u64 {
        let id = if attempt == 0 {
            second.clone()
        } else {
            submit_and_approve_once(&d, 1 + attempt, &format!("hsm-retry-{attempt}")).await
        };
        match bob
            .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
            .await
        {
            Ok(r) => {
                signed = Some(r.into_inner());
                break;
            }
            Err(e) => {
                assert_eq!(reason(&e), "HSM_UNAVAILABLE", "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    let signed = signed.expect("signing did not resume after the token came back");
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");

    // A key deleted from the token (its object files removed): typed error, kinkod stays up,
    // the other keys still sign; restored, it signs again.
    let key_files: Vec<PathBuf> = std::fs::read_dir(&token)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "object")
                && std::fs::read(p).is_ok_and(|b| b.windows(13).any(|w| w == b"kinko-eth-dev"))
        })
        .collect();
    assert!(!key_files.is_empty(), "the key's object files");
    let kept = tmp.path().join("deleted-key");
    std::fs::create_dir(&kept).unwrap();
    for f in &key_files {
        rename(f, &kept.join(f.file_name().unwrap()));
    }
    // SoftHSM2 keeps a running process's objects in memory; the daemon sees the token as it is
    // on disk after it re-initializes the module, which a pulled token makes it do.
    rename(&token, &away);
    let id = submit_and_approve_once(&d, 100, "key-gone").await;
    let err = bob
        .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HSM_UNAVAILABLE", "{err:?}");
    rename(&away, &token);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut saw_missing_key = false;
    for attempt in 0..20u64 {
        let id = submit_and_approve_once(&d, 140 + attempt, &format!("key-gone-{attempt}")).await;
        let err = bob
            .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
            .await
            .unwrap_err();
        assert_eq!(reason(&err), "HSM_UNAVAILABLE", "{err:?}");
        // Missing, or half there while SoftHSM2 re-reads the token: either way named.
        if err.message().contains("\"kinko-eth-dev\"") {
            saw_missing_key = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(saw_missing_key, "the missing key is named");
    // The other keys still sign meanwhile: a Bitcoin withdrawal goes through end to end on
    // btc-dev, from the token kinkod re-read without the Ethereum key.
    let btc = {
        let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
        ledger
            .submit_withdrawal(submission(
                &d.dir,
                "btc-dev",
                Chain::Bitcoin,
                btc_psbt(&d),
                "btc-while-eth-gone",
            ))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(
        btc.state,
        pb::RequestState::PendingApproval as i32,
        "{btc:?}"
    );
    let mut signed = None;
    for officer in ["alice", "bob"] {
        let mut c = ApprovalServiceClient::new(channel(&d, officer).await);
        signed = Some(
            c.approve(officer_approval(&d, officer, &btc.request_id, Verdict::Approve).await)
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let signed = signed.unwrap();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(&signed.signed_transaction).unwrap();
    assert_eq!(tx.input[0].witness.len(), 2, "a P2WPKH signature and key");
    assert_eq!(
        tx.input[0].witness.nth(1).unwrap(),
        kinko_tests::policy(&d.dir)
            .key("btc-dev")
            .unwrap()
            .public_key
            .as_deref()
            .unwrap()
    );
    // ... while the Ethereum key is still missing.
    let id = submit_and_approve_once(&d, 170, "key-still-gone").await;
    let err = bob
        .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HSM_UNAVAILABLE", "{err:?}");
    assert!(err.message().contains("\"kinko-eth-dev\""), "{err:?}");
    for f in &key_files {
        rename(&kept.join(f.file_name().unwrap()), f);
    }
    let mut resumed = false;
    for attempt in 0..20u64 {
        let id = submit_and_approve_once(&d, 120 + attempt, &format!("key-back-{attempt}")).await;
        if bob
            .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
            .await
            .is_ok()
        {
            resumed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(resumed, "signing did not resume after the key came back");
}

/// The HSM signs with a key that is not the one its public key object says (the token's eth-dev
/// public key object replaced by btc-dev's, relabelled, behind kinkod's back). After the module
/// is re-initialized, the signing path finds the key again, signs, and the signature does not
/// verify: `HSM_BAD_SIGNATURE`, nothing released, the request failed, the refusal logged, and
/// another key still signs.
#[tokio::test(flavor = "multi_thread")]
async fn a_signature_that_does_not_verify_is_never_released() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let label = unique_label("atk-badsig");
    let d = start(&dir, &label, free_port(), true);
    let token = token_dir(&label);
    // The public key objects carry their label and point in the clear.
    let public_object = |key_label: &str| -> PathBuf {
        let x = &d.keys[key_label.trim_start_matches("kinko-")][1..33];
        std::fs::read_dir(&token)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                std::fs::read(p).is_ok_and(|b| {
                    b.windows(key_label.len())
                        .any(|w| w == key_label.as_bytes())
                        && b.windows(32).any(|w| w == x)
                })
            })
            .unwrap_or_else(|| panic!("the public key object of {key_label}"))
    };
    let eth_public = public_object("kinko-eth-dev");
    let btc_public = public_object("kinko-btc-dev");
    let swapped: Vec<u8> = {
        let b = std::fs::read(&btc_public).unwrap();
        let at = b.windows(13).position(|w| w == b"kinko-btc-dev").unwrap();
        let mut b = b;
        b[at..at + 13].copy_from_slice(b"kinko-eth-dev");
        b
    };
    std::fs::write(&eth_public, swapped).unwrap();
    // The module re-reads the token only when it is re-initialized: pull the token once.
    let away = tmp.path().join("token-away");
    rename(&token, &away);
    let id = submit_and_approve_once(&d, 0, "pulled").await;
    let mut bob = ApprovalServiceClient::new(channel(&d, "bob").await);
    let err = bob
        .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "HSM_UNAVAILABLE", "{err:?}");
    rename(&away, &token);
    let mut seen = None;
    for attempt in 0..20u64 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let id = submit_and_approve_once(&d, 10 + attempt, &format!("bad-{attempt}")).await;
        let err = bob
            .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
            .await
            .unwrap_err();
        if reason(&err) == "HSM_BAD_SIGNATURE" {
            seen = Some((id, err));
            break;
        }
        assert_eq!(reason(&err), "HSM_UNAVAILABLE", "{err:?}");
    }
    let (id, err) = seen.expect("no HSM_BAD_SIGNATURE after the token came back");
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(
        err.message()
            .contains("key \"kinko-eth-dev\" does not verify")
            && err.message().contains("nothing was released"),
        "{err:?}"
    );
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .get_request(pb::RequestId {
            request_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Failed as i32, "{r:?}");
    assert!(r.signed_transaction.is_empty());
    let records = kinko_tests::audit_records(&d).await;
    let of = |t: &str| {
        records
            .iter()
            .filter(|r| kinko_tests::event_type(r) == t && r["event"]["request_id"] == id.as_str())
            .count()
    };
    assert_eq!(of("signature_produced"), 0);
    // The request failed (with the reason), and the refusal says why: both logged.
    let codes: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| {
            kinko_tests::event_type(r) == "refusal" && r["event"]["request_id"] == id.as_str()
        })
        .map(|r| &r["event"]["code"])
        .collect();
    assert!(codes.iter().any(|c| *c == "SIGNING_FAILED"), "{codes:?}");
    assert!(codes.iter().any(|c| *c == "HSM_BAD_SIGNATURE"), "{codes:?}");
    // Another key is unaffected: a Bitcoin withdrawal is signed.
    let psbt = btc_psbt(&d);
    let r = ledger
        .submit_withdrawal(submission(
            &d.dir,
            "btc-dev",
            Chain::Bitcoin,
            psbt,
            "btc-still",
        ))
        .await
        .unwrap()
        .into_inner();
    for officer in ["alice", "bob"] {
        ApprovalServiceClient::new(channel(&d, officer).await)
            .approve(officer_approval(&d, officer, &r.request_id, Verdict::Approve).await)
            .await
            .unwrap();
    }
    let r = ledger
        .get_request(pb::RequestId {
            request_id: r.request_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Signed as i32, "{r:?}");
}

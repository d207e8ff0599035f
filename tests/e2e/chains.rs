//! End to end for Bitcoin and Solana: a real `kinkod` process (set up by `kinkod dev`, real TLS
//! 1.3 with client certificates, a real SoftHSM2 token), a withdrawal submitted by the requester,
//! decoded locally and approved by two officers, signed by the HSM.
//!
//! The signed transactions are checked by paths independent of kinko-chain's finalizer:
//! * Bitcoin: the `bitcoin` crate deserializes the signed transaction, recomputes each input's
//!   BIP-143 sighash with `SighashCache` and verifies every witness signature with libsecp256k1
//!   (through the `bitcoin` crate's `secp256k1`), against the public key kinkod printed when it
//!   made the key.
//! * Solana: the signed transaction is parsed here from the documented wire format
//!   (<https://solana.com/docs/core/transactions>) and the signature verified with
//!   `ed25519-dalek`'s `verify_strict` over the message built here.

use std::str::FromStr;

use bitcoin::hashes::Hash as _;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Address, Amount as BtcAmount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness, absolute, transaction,
};
use kinko_intent::{Chain, Intent, Network};
use kinko_policy::{ApprovalMessage, Policy, SignedApproval, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;

use kinko_tests::{
    Daemon, channel, ed25519_key, free_port, reason, start, submission, unique_label,
};

// ---------------------------------------------------------------------------------------------
// Client helpers (the daemon launcher and the rest are in tests/common).
// ---------------------------------------------------------------------------------------------

/// What an officer's client does: fetch the raw payload, decode it locally with the key it
/// knows (the one kinkod printed at set-up, not the one the daemon's intent claims), check the
/// daemon shows that same intent, and sign over the digest it computed itself.
async fn officer_approval(
    d: &Daemon,
    officer: &str,
    request_id: &str,
    key_name: &str,
    chain: Chain,
    network: &str,
) -> pb::SignedApproval {
    let mut client = ApprovalServiceClient::new(channel(d, officer).await);
    let req = client
        .get_request(pb::RequestId {
            request_id: request_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let policy_bytes = std::fs::read(d.dir.join("policy.toml")).unwrap();
    let policy = Policy::from_toml(&policy_bytes).unwrap();
    let network = Network::new(network).unwrap();
    let ctx = kinko_chain::DecodeContext {
        network: &network,
        public_key: &d.keys[key_name],
        tokens: policy.token_registry(),
    };
    let mine = kinko_chain::decode(chain, &req.payload, &ctx).unwrap();
    let claimed: Intent = serde_json::from_str(&req.intent_json).unwrap();
    assert_eq!(
        mine, claimed,
        "the daemon shows the intent the officer's client decodes"
    );
    let now = jiff::Timestamp::now().as_second();
    let msg = ApprovalMessage {
        policy_hash: policy.hash(),
        subject: Subject::Withdrawal {
            request_id: request_id.into(),
            intent_digest: mine.digest().unwrap(),
        },
        officer_id: officer.into(),
        verdict: Verdict::Approve,
        issued_at: now,
        expires_at: now + 3600,
    };
    let key = ed25519_key(&d.dir.join(format!("officers/{officer}.key")));
    let signed = SignedApproval::sign(&msg, &key).unwrap();
    pb::SignedApproval {
        request_id: request_id.into(),
        officer_id: officer.into(),
        message: signed.message,
        signature: signed.signature.to_vec(),
    }
}

/// Alice then Bob approve; returns the request after Bob's approval.
async fn approve_twice(
    d: &Daemon,
    request_id: &str,
    key_name: &str,
    chain: Chain,
    network: &str,
) -> pb::Request {
    let mut alice = ApprovalServiceClient::new(channel(d, "alice").await);
    let r = alice
        .approve(officer_approval(d, "alice", request_id, key_name, chain, network).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    let mut bob = ApprovalServiceClient::new(channel(d, "bob").await);
    bob.approve(officer_approval(d, "bob", request_id, key_name, chain, network).await)
        .await
        .unwrap()
        .into_inner()
}

async fn pending_count(d: &Daemon) -> usize {
    let mut carol = ApprovalServiceClient::new(channel(d, "carol").await);
    carol
        .list_pending(pb::ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .requests
        .len()
}

// ---------------------------------------------------------------------------------------------
// Bitcoin
// ---------------------------------------------------------------------------------------------

const BTC_HOT_WALLET: &str = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx";

/// An unsigned PSBT spending `inputs` (fake txid byte, vout, sats) of the key's P2WPKH script,
/// with the given outputs; every input carries `witness_utxo`.
fn btc_psbt(key_script: &ScriptBuf, inputs: &[(u8, u32, u64)], outputs: &[TxOut]) -> Psbt {
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: inputs
            .iter()
            .map(|&(txid, vout, _)| TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([txid; 32]),
                    vout,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs.to_vec(),
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, &(_, _, sats)) in psbt.inputs.iter_mut().zip(inputs) {
        input.witness_utxo = Some(TxOut {
            value: BtcAmount::from_sat(sats),
            script_pubkey: key_script.clone(),
        });
    }
    psbt
}

/// Checks a signed transaction by the `bitcoin` crate and libsecp256k1 alone: the outputs are
/// the ones built, the inputs spend the built outpoints, every witness is `[sig, key]` and every
/// signature verifies (low-S, SIGHASH_ALL) over the BIP-143 sighash recomputed here.
fn check_signed_btc(
    r: &pb::Request,
    unsigned: &Transaction,
    key: &CompressedPublicKey,
    amounts: &[u64],
) {
    let tx: Transaction = bitcoin::consensus::deserialize(&r.signed_transaction).unwrap();
    assert_eq!(r.transaction_id, tx.compute_txid().to_string());
    assert_eq!(tx.output, unsigned.output, "outputs and amounts as built");
    assert_eq!(tx.version, unsigned.version);
    assert_eq!(tx.lock_time, unsigned.lock_time);
    assert_eq!(tx.input.len(), unsigned.input.len());
    // The txid commits to everything but the witnesses: same as the unsigned transaction's.
    assert_eq!(tx.compute_txid(), unsigned.compute_txid());

    let secp = Secp256k1::verification_only();
    let script = ScriptBuf::new_p2wpkh(&key.wpubkey_hash());
    let mut cache = SighashCache::new(&tx);
    for (i, (txin, &sats)) in tx.input.iter().zip(amounts).enumerate() {
        assert_eq!(
            txin.previous_output, unsigned.input[i].previous_output,
            "input {i}"
        );
        assert!(txin.script_sig.is_empty(), "native segwit: empty scriptSig");
        assert_eq!(txin.witness.len(), 2, "input {i}: witness [sig, key]");
        let sig_bytes = txin.witness.nth(0).unwrap();
        let key_bytes = txin.witness.nth(1).unwrap();
        assert_eq!(key_bytes, key.to_bytes().as_slice(), "input {i}: key");
        let sig = bitcoin::ecdsa::Signature::from_slice(sig_bytes).unwrap();
        assert_eq!(sig.sighash_type, EcdsaSighashType::All, "input {i}");
        let mut low_s = sig.signature;
        low_s.normalize_s();
        assert_eq!(low_s, sig.signature, "input {i}: low-S (BIP-146)");
        let sighash = cache
            .p2wpkh_signature_hash(i, &script, BtcAmount::from_sat(sats), EcdsaSighashType::All)
            .unwrap();
        let msg = Message::from_digest(sighash.to_byte_array());
        secp.verify_ecdsa(&msg, &sig.signature, &key.0)
            .unwrap_or_else(|e| panic!("input {i}: signature does not verify: {e}"));
        // Control: the same check refuses the signature for another amount spent (BIP-143
        // commits to it), so the verification above is not vacuous.
        let other = cache
            .p2wpkh_signature_hash(
                i,
                &script,
                BtcAmount::from_sat(sats + 1),
                EcdsaSighashType::All,
            )
            .unwrap();
        let other = Message::from_digest(other.to_byte_array());
        assert!(secp.verify_ecdsa(&other, &sig.signature, &key.0).is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bitcoin_psbt_signed_and_verified_with_libsecp256k1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("chains-btc"), free_port(), true);
    let key = CompressedPublicKey::from_slice(&d.keys["btc-dev"]).unwrap();
    let own_addr = Address::p2wpkh(&key, bitcoin::Network::Testnet);
    let own_script = own_addr.script_pubkey();
    assert_eq!(own_script, ScriptBuf::new_p2wpkh(&key.wpubkey_hash()));
    let hot = Address::from_str(BTC_HOT_WALLET)
        .unwrap()
        .require_network(bitcoin::Network::Testnet)
        .unwrap();
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);

    // A refusal first: an input without witness_utxo. Nothing is stored; the same idempotency
    // key is then free for a well-formed request.
    let mut bad = btc_psbt(
        &own_script,
        &[(0xa1, 0, 100_000_000)],
        &[TxOut {
            value: BtcAmount::from_sat(50_000_000),
            script_pubkey: hot.script_pubkey(),
        }],
    );
    bad.inputs[0].witness_utxo = None;
    let before = pending_count(&d).await;
    let err = ledger
        .submit_withdrawal(submission(
            &dir,
            "btc-dev",
            Chain::Bitcoin,
            bad.serialize(),
            "btc-1",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNDECODABLE_PAYLOAD", "{err:?}");
    assert!(err.message().contains("witness_utxo"), "{err:?}");
    assert_eq!(
        pending_count(&d).await,
        before,
        "the refusal left a request"
    );

    // 1. One input of 1 BTC: 0.5 BTC to the hot wallet, 0.4999 BTC change, 10 000 sat fee.
    let one_in = [(0xa1, 0, 100_000_000u64)];
    let outputs = [
        TxOut {
            value: BtcAmount::from_sat(50_000_000),
            script_pubkey: hot.script_pubkey(),
        },
        TxOut {
            value: BtcAmount::from_sat(49_990_000),
            script_pubkey: own_script.clone(),
        },
    ];
    let psbt = btc_psbt(&own_script, &one_in, &outputs);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "btc-dev",
            Chain::Bitcoin,
            psbt.serialize(),
            "btc-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    assert_eq!(r.decision.as_ref().unwrap().rule, "btc-hot-refill");
    assert_eq!(pending_count(&d).await, before + 1);
    let intent: Intent = serde_json::from_str(&r.intent_json).unwrap();
    assert_eq!(intent.signer.as_str(), own_addr.to_string());
    assert_eq!(intent.transfers.len(), 2);
    assert_eq!(intent.transfers[0].to.as_str(), BTC_HOT_WALLET);
    assert!(!intent.transfers[0].change);
    assert!(intent.transfers[1].change);
    assert_eq!(intent.fee.max, kinko_intent::Amount::from_u64(10_000));
    assert!(r.intent_text.contains(BTC_HOT_WALLET), "{}", r.intent_text);

    let signed = approve_twice(&d, &r.request_id, "btc-dev", Chain::Bitcoin, "testnet").await;
    assert_eq!(
        signed.state,
        pb::RequestState::Signed as i32,
        "{}",
        signed.final_reason
    );
    check_signed_btc(&signed, &psbt.unsigned_tx, &key, &[100_000_000]);

    // 2. Two inputs (0.3 + 0.25 BTC) of fresh outpoints: 0.5 BTC out, 0.04995 BTC change.
    let two_in = [(0xb2, 1, 30_000_000u64), (0xc3, 7, 25_000_000u64)];
    let outputs = [
        TxOut {
            value: BtcAmount::from_sat(50_000_000),
            script_pubkey: hot.script_pubkey(),
        },
        TxOut {
            value: BtcAmount::from_sat(4_995_000),
            script_pubkey: own_script.clone(),
        },
    ];
    let psbt = btc_psbt(&own_script, &two_in, &outputs);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "btc-dev",
            Chain::Bitcoin,
            psbt.serialize(),
            "btc-2",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    let intent: Intent = serde_json::from_str(&r.intent_json).unwrap();
    assert_eq!(intent.to_sign.len(), 2, "one sighash per input");
    let signed = approve_twice(&d, &r.request_id, "btc-dev", Chain::Bitcoin, "testnet").await;
    assert_eq!(
        signed.state,
        pb::RequestState::Signed as i32,
        "{}",
        signed.final_reason
    );
    check_signed_btc(&signed, &psbt.unsigned_tx, &key, &[30_000_000, 25_000_000]);
}

// ---------------------------------------------------------------------------------------------
// Solana
// ---------------------------------------------------------------------------------------------

const SOL_HOT_WALLET: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
/// The System Program's id (base58 "11111111111111111111111111111111"): 32 zero bytes.
const SYSTEM_PROGRAM: [u8; 32] = [0; 32];

fn sol_key(b58: &str) -> [u8; 32] {
    let bytes = bitcoin::base58::decode(b58).unwrap();
    assert_eq!(bitcoin::base58::encode(&bytes), b58);
    bytes.try_into().unwrap()
}

/// A legacy message with one System Program Transfer (instruction index 2, u32 LE, then the
/// lamports as u64 LE) of `lamports` from account `from` to account `to`, account 0 paying the
/// fee and signing. Wire format: <https://solana.com/docs/core/transactions> (header
/// `[required signatures, readonly signed, readonly unsigned]`, compact-u16 counts).
fn sol_transfer_message(
    payer: [u8; 32],
    other: [u8; 32],
    from: u8,
    to: u8,
    lamports: u64,
    blockhash: [u8; 32],
) -> Vec<u8> {
    let mut m = vec![1u8, 0, 1]; // one signer (the payer), the System Program read-only.
    m.push(3); // compact-u16: three account keys
    m.extend_from_slice(&payer);
    m.extend_from_slice(&other);
    m.extend_from_slice(&SYSTEM_PROGRAM);
    m.extend_from_slice(&blockhash);
    m.push(1); // one instruction
    m.push(2); // program: account 2, the System Program
    m.extend_from_slice(&[2, from, to]); // two accounts
    m.push(12); // data: 12 bytes
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&lamports.to_le_bytes());
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn solana_transfer_signed_and_verified_with_ed25519_dalek() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("chains-sol"), free_port(), true);
    let key: [u8; 32] = d.keys["sol-dev"].as_slice().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let hot = sol_key(SOL_HOT_WALLET);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);

    // Refusal: the hot wallet pays the fee (account 0) and the key is only the source. Nothing
    // is stored; the idempotency key stays free.
    let foreign_payer = sol_transfer_message(hot, key, 1, 0, 1_500_000_000, [7; 32]);
    let before = pending_count(&d).await;
    let err = ledger
        .submit_withdrawal(submission(
            &dir,
            "sol-dev",
            Chain::Solana,
            foreign_payer,
            "sol-1",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNDECODABLE_PAYLOAD", "{err:?}");
    assert!(err.message().contains("fee payer"), "{err:?}");
    assert_eq!(
        pending_count(&d).await,
        before,
        "the refusal left a request"
    );

    // 1.5 SOL from the key to the hot wallet.
    let lamports = 1_500_000_000u64;
    let message = sol_transfer_message(key, hot, 0, 1, lamports, [7; 32]);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "sol-dev",
            Chain::Solana,
            message.clone(),
            "sol-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    assert_eq!(r.decision.as_ref().unwrap().rule, "sol-hot-refill");
    let intent: Intent = serde_json::from_str(&r.intent_json).unwrap();
    assert_eq!(intent.signer.as_str(), bitcoin::base58::encode(&key));
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(intent.transfers[0].to.as_str(), SOL_HOT_WALLET);
    assert_eq!(
        intent.transfers[0].amount,
        kinko_intent::Amount::from_u64(lamports)
    );
    assert!(r.intent_text.contains(SOL_HOT_WALLET), "{}", r.intent_text);

    let signed = approve_twice(&d, &r.request_id, "sol-dev", Chain::Solana, "devnet").await;
    assert_eq!(
        signed.state,
        pb::RequestState::Signed as i32,
        "{}",
        signed.final_reason
    );

    // Independent check of the signed transaction: compact-u16 signature count (1 < 0x80, one
    // byte), 64-byte signature, then exactly the message built above.
    let tx = signed.signed_transaction.as_slice();
    assert_eq!(tx.len(), 1 + 64 + message.len());
    assert_eq!(tx[0], 1, "one signature");
    let sig_bytes: [u8; 64] = tx[1..65].try_into().unwrap();
    assert_eq!(&tx[65..], message.as_slice(), "the message submitted");
    let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    vk.verify_strict(&message, &sig)
        .expect("the signature verifies under the sol-dev key");
    // Control: one lamport more is not what was signed.
    let other = sol_transfer_message(key, hot, 0, 1, lamports + 1, [7; 32]);
    assert!(vk.verify_strict(&other, &sig).is_err());
    assert_eq!(signed.transaction_id, bitcoin::base58::encode(&sig_bytes));
}

// ---------------------------------------------------------------------------------------------
// A second PKCS#11 implementation: the whole daemon on Kryoptic
// ---------------------------------------------------------------------------------------------

/// The whole signing path on a token that is not SoftHSM2: `kinkod dev` on Kryoptic (which has
/// Ed25519 but no secp256k1) makes a Solana-only set-up and says what it left out; kinkod
/// starts on it (token login, the session pool, the log key signing checkpoints), a Solana
/// withdrawal is approved by two officers and signed by Kryoptic, the signature verifies with
/// ed25519-dalek, an Ethereum request is refused for want of a key, and the auditor's offline
/// verification of the log — checkpoints signed by Kryoptic — passes.
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_signing_path_runs_on_kryoptic_with_solana_only() {
    let Some(module) = kinko_hsm::testing::second_module() else {
        return;
    };
    let module = module.to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let conf = kinko_hsm::testing::write_kryoptic_conf(tmp.path()).unwrap();
    let dir = tmp.path().join("data");
    let port = free_port();
    let d = kinko_tests::start_with_env(
        &dir,
        &unique_label("kryoptic"),
        port,
        true,
        &[
            ("KINKO_PKCS11_MODULE", module.as_str()),
            ("KRYOPTIC_CONF", conf.to_str().unwrap()),
        ],
    );
    let config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
    assert!(
        config.contains(&format!("module = \"{module}\"")),
        "{config}"
    );
    assert!(!d.keys.contains_key("eth-dev") && !d.keys.contains_key("btc-dev"));
    let lines = d.log_lines().join("\n");
    assert!(
        lines.contains("eth-dev: left out, the token has no secp256k1 ECDSA"),
        "{lines}"
    );
    let policy = Policy::from_toml(&std::fs::read(dir.join("policy.toml")).unwrap()).unwrap();
    assert_eq!(
        policy.key("sol-dev").and_then(|k| k.public_key.clone()),
        Some(d.keys["sol-dev"].clone())
    );
    assert!(policy.key("eth-dev").is_none());

    let key: [u8; 32] = d.keys["sol-dev"].as_slice().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let hot = sol_key(SOL_HOT_WALLET);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let message = sol_transfer_message(key, hot, 0, 1, 2_000_000_000, [9; 32]);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "sol-dev",
            Chain::Solana,
            message.clone(),
            "kryoptic-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    let signed = approve_twice(&d, &r.request_id, "sol-dev", Chain::Solana, "devnet").await;
    assert_eq!(
        signed.state,
        pb::RequestState::Signed as i32,
        "{}",
        signed.final_reason
    );
    let tx = signed.signed_transaction.as_slice();
    assert_eq!(tx.len(), 1 + 64 + message.len());
    assert_eq!(&tx[65..], message.as_slice());
    let sig = ed25519_dalek::Signature::from_bytes(&tx[1..65].try_into().unwrap());
    vk.verify_strict(&message, &sig)
        .expect("Kryoptic's signature verifies under the sol-dev key");

    // No Ethereum key on this token: refused, typed.
    let err = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            vec![0xc0],
            "kryoptic-eth",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // The auditor fetches the log over gRPC and verifies it offline: the checkpoints were
    // signed by Kryoptic's Ed25519 log key.
    let out = kinko_tests::fetch_and_verify(&d, &d.addr, &tmp.path().join("audit-copy"), &dir);
    for expected in [
        "signatures:     1",
        "anomalies:      0",
        "result:         OK",
    ] {
        assert!(
            out.lines().any(|l| l.trim_end() == expected),
            "{expected}: {out}"
        );
    }
}

//! A compromised withdrawal pipeline (THREATS.md: the pipeline is assumed hostile). It holds a
//! valid requester certificate and key, so everything it sends is authenticated; the decoder
//! and the policy must still refuse what officers did not allow.

use std::path::Path;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEip7702, TxLegacy};
use alloy_eips::eip7702::{Authorization, SignedAuthorization};
use alloy_primitives::{Address, Bytes, TxKind, U256, address};
use bitcoin::psbt::{Psbt, PsbtSighashType};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{
    Amount as BtcAmount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Txid, Witness, absolute, hashes::Hash as _, transaction,
};
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, Verdict, audit_records, channel, eth_transfer, event_type, free_port, init,
    officer_approval, pb, reason, replace_in, start, submission, unique_label,
};

const HOT_WALLET: Address = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
/// Added to the allowlist just now: still in its 72 h cool-down.
const NEW_ADDRESS: Address = address!("0x1111111111111111111111111111111111111111");
const ATTACKER: Address = address!("0x2222222222222222222222222222222222222222");
const ETH: u128 = 1_000_000_000_000_000_000;

fn eth_tx(nonce: u64, to: Address, value: u128, input: Vec<u8>) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: 11_155_111,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input: Bytes::from(input),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

fn eth(dir: &Path, payload: Vec<u8>, idem: &str) -> pb::SubmitWithdrawalRequest {
    submission(dir, "eth-dev", Chain::Ethereum, payload, idem)
}

/// ERC-20 `approve(spender, amount)` calldata.
fn erc20_approve(spender: Address, amount: U256) -> Vec<u8> {
    let mut data = vec![0x09, 0x5e, 0xa7, 0xb3];
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(spender.as_slice());
    data.extend_from_slice(&amount.to_be_bytes::<32>());
    data
}

/// A Safe `execTransaction` as EIP-712 typed data, `operation` 1 = delegatecall.
fn safe_delegatecall(to: Address) -> Vec<u8> {
    serde_json::json!({
        "types": {
            "EIP712Domain": [
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "SafeTx": [
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "data", "type": "bytes"},
                {"name": "operation", "type": "uint8"},
                {"name": "safeTxGas", "type": "uint256"},
                {"name": "baseGas", "type": "uint256"},
                {"name": "gasPrice", "type": "uint256"},
                {"name": "gasToken", "type": "address"},
                {"name": "refundReceiver", "type": "address"},
                {"name": "nonce", "type": "uint256"}
            ]
        },
        "primaryType": "SafeTx",
        "domain": {"chainId": "0xaa36a7", "verifyingContract": "0x3333333333333333333333333333333333333333"},
        "message": {
            "to": to.to_checksum(None),
            "value": "0",
            "data": "0xa9059cbb",
            "operation": 1,
            "safeTxGas": 0,
            "baseGas": 0,
            "gasPrice": "0",
            "gasToken": "0x0000000000000000000000000000000000000000",
            "refundReceiver": "0x0000000000000000000000000000000000000000",
            "nonce": 7
        }
    })
    .to_string()
    .into_bytes()
}

/// An EIP-7702 transaction delegating the signer's account to an attacker's contract.
fn eip7702(nonce: u64, delegate_to: Address) -> Vec<u8> {
    let auth = Authorization {
        chain_id: U256::from(11_155_111u64),
        address: delegate_to,
        nonce: nonce + 1,
    };
    let tx = TxEip7702 {
        chain_id: 11_155_111,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: HOT_WALLET,
        value: U256::ZERO,
        access_list: Default::default(),
        authorization_list: vec![SignedAuthorization::new_unchecked(
            auth,
            0,
            U256::from(1u8),
            U256::from(1u8),
        )],
        input: Bytes::new(),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

/// A pre-EIP-155 legacy transaction: no chain id, so its signature replays on every EVM chain.
fn legacy_without_chain_id(nonce: u64) -> Vec<u8> {
    let tx = TxLegacy {
        chain_id: None,
        nonce,
        gas_price: 30_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(HOT_WALLET),
        value: U256::from(ETH),
        input: Bytes::new(),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

/// A PSBT spending one input of the key's P2WPKH output to the hot wallet.
fn btc_psbt(d: &Daemon, witness_utxo: bool, sighash: Option<EcdsaSighashType>) -> Vec<u8> {
    let policy = kinko_tests::policy(&d.dir);
    let pk = policy.key("btc-dev").unwrap().public_key.clone().unwrap();
    let key = CompressedPublicKey::from_slice(&pk).unwrap();
    let script = ScriptBuf::new_p2wpkh(&key.wpubkey_hash());
    let hot: bitcoin::Address = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .assume_checked();
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([9; 32]),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: BtcAmount::from_sat(90_000),
            script_pubkey: hot.script_pubkey(),
        }],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    if witness_utxo {
        psbt.inputs[0].witness_utxo = Some(TxOut {
            value: BtcAmount::from_sat(100_000),
            script_pubkey: script,
        });
    }
    psbt.inputs[0].sighash_type = sighash.map(PsbtSighashType::from);
    psbt.serialize()
}

async fn pending_and_velocity(d: &Daemon) -> (usize, Vec<serde_json::Value>) {
    let mut alice = ApprovalServiceClient::new(channel(d, "alice").await);
    let pending = alice
        .list_pending(pb::ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .requests
        .len();
    let signed = audit_records(d)
        .await
        .into_iter()
        .filter(|r| event_type(r) == "signing_authorized")
        .collect();
    (pending, signed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compromised_pipeline_cannot_get_anything_signed_that_the_policy_does_not_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-pipe"), free_port());
    let added_at = jiff::Timestamp::now();
    let just_now = added_at.to_string();
    init(&dir, &label, port, |dir| {
        let policy = dir.join("policy.toml");
        // An address allowlisted a moment ago (the attacker got it added): in cool-down.
        replace_in(
            &policy,
            "[[address_books]]\nname = \"btc-hot\"",
            &format!(
                "[[address_books.entries]]\naddress = \"{}\"\nlabel = \"added just now\"\nadded_at = \"{just_now}\"\n\n[[address_books]]\nname = \"btc-hot\"",
                NEW_ADDRESS.to_checksum(None)
            ),
        );
        // At most 3.5 ETH a day to the hot wallet.
        replace_in(&policy, "max_total = \"500\"", "max_total = \"3.5\"");
    });
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);

    // Each of these decodes, reaches the policy, and is denied by a named rule or by default.
    let denied: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not-allowlisted", eth_tx(0, ATTACKER, ETH, Vec::new()), ""),
        ("cool-down", eth_tx(0, NEW_ADDRESS, ETH, Vec::new()), ""),
        (
            "erc20-approve",
            eth_tx(
                0,
                address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
                0,
                erc20_approve(ATTACKER, U256::MAX),
            ),
            "deny-contract-calls",
        ),
        ("eip7702", eip7702(0, ATTACKER), "deny-contract-calls"),
        (
            "safe-delegatecall",
            safe_delegatecall(ATTACKER),
            "deny-contract-calls",
        ),
    ];
    for (idem, payload, rule) in denied {
        let r = ledger
            .submit_withdrawal(eth(&dir, payload, idem))
            .await
            .unwrap_or_else(|e| panic!("{idem}: {e:?}"))
            .into_inner();
        assert_eq!(r.state, pb::RequestState::Denied as i32, "{idem}: {r:?}");
        let decision = r.decision.unwrap();
        assert!(!decision.allowed, "{idem}");
        assert_eq!(decision.rule, rule, "{idem}: {decision:?}");
        let explained: serde_json::Value =
            serde_json::from_str(&decision.explanation_json).unwrap();
        assert_eq!(explained["outcome"], "deny", "{idem}: {explained}");
        let code = if rule.is_empty() {
            "no_rule_matched"
        } else {
            "rule_denies"
        };
        assert_eq!(explained["code"], code, "{idem}: {explained}");
        // A destination that is not allowlisted, and one allowlisted but still in its
        // cool-down, are both denied by default — each with its own reason: the refill rule is
        // skipped on its destination matcher, and the matcher says which check failed.
        let destination = match idem {
            "not-allowlisted" => Some(format!("{} is not in the book", ATTACKER.to_checksum(None))),
            "cool-down" => Some(format!(
                "{} (added just now) is in its cool-down until {}",
                NEW_ADDRESS.to_checksum(None),
                added_at
                    .checked_add(jiff::SignedDuration::from_hours(72))
                    .unwrap()
            )),
            _ => None,
        };
        if let Some(saw) = destination {
            let refill = explained["skipped"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["rule"]["name"] == "eth-hot-refill")
                .unwrap_or_else(|| panic!("{idem}: refill rule not tried: {explained}"));
            assert_eq!(
                refill["failed"]["condition"], "destination",
                "{idem}: {refill}"
            );
            assert_eq!(refill["failed"]["saw"], saw.as_str(), "{idem}: {refill}");
            assert_eq!(refill["failed"]["passed"], false, "{idem}: {refill}");
        }
    }

    // These never reach the policy: the decoder refuses them.
    let err = ledger
        .submit_withdrawal(eth(&dir, legacy_without_chain_id(0), "legacy"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNDECODABLE_PAYLOAD", "{err:?}");
    assert!(err.message().contains("chain id"), "{err:?}");
    for (idem, psbt, needle) in [
        ("no-witness-utxo", btc_psbt(&d, false, None), "witness_utxo"),
        (
            "sighash-none",
            btc_psbt(&d, true, Some(EcdsaSighashType::None)),
            "sighash",
        ),
        (
            "sighash-single-acp",
            btc_psbt(&d, true, Some(EcdsaSighashType::SinglePlusAnyoneCanPay)),
            "sighash",
        ),
    ] {
        let err = ledger
            .submit_withdrawal(submission(&dir, "btc-dev", Chain::Bitcoin, psbt, idem))
            .await
            .unwrap_err();
        assert_eq!(reason(&err), "UNDECODABLE_PAYLOAD", "{idem}: {err:?}");
        assert!(
            err.message().to_lowercase().contains(needle),
            "{idem}: {err:?}"
        );
    }
    // Nothing is pending, nothing was authorized.
    let (pending, authorized) = pending_and_velocity(&d).await;
    assert_eq!((pending, authorized.len()), (0, 0));
    let records = audit_records(&d).await;
    let refusals = kinko_tests::refusal_codes(&records);
    assert_eq!(
        refusals
            .iter()
            .filter(|c| *c == "UNDECODABLE_PAYLOAD")
            .count(),
        4,
        "{refusals:?}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| event_type(r) == "decision" && r["event"]["outcome"] == "deny")
            .count(),
        5
    );

    // Splitting: four 1-ETH withdrawals against a 3.5-ETH daily limit, all submitted before any is
    // signed. The fourth is refused at signing time and stays pending; a fifth is denied.
    let mut ids = Vec::new();
    for n in 0..4u64 {
        let r = ledger
            .submit_withdrawal(eth(
                &dir,
                eth_transfer(10 + n, ETH, HOT_WALLET),
                &format!("split-{n}"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
        ids.push(r.request_id);
    }
    let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
    let mut bob = ApprovalServiceClient::new(channel(&d, "bob").await);
    // Alice approves all four while nothing is signed yet: each is within the limit alone.
    for id in &ids {
        alice
            .approve(officer_approval(&d, "alice", id, Verdict::Approve).await)
            .await
            .unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        let result = bob
            .approve(officer_approval(&d, "bob", id, Verdict::Approve).await)
            .await;
        if n < 3 {
            assert_eq!(
                result.unwrap().into_inner().state,
                pb::RequestState::Signed as i32
            );
        } else {
            let err = result.unwrap_err();
            assert_eq!(reason(&err), "POLICY_DENIED", "{err:?}");
            assert!(err.message().contains("velocity"), "{err:?}");
        }
    }
    let r = ledger
        .get_request(pb::RequestId {
            request_id: ids[3].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    assert!(r.signed_transaction.is_empty());
    let r = ledger
        .submit_withdrawal(eth(&dir, eth_transfer(20, ETH, HOT_WALLET), "split-5"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Denied as i32, "{r:?}");
    let (_, authorized) = pending_and_velocity(&d).await;
    assert_eq!(
        authorized.len(),
        3,
        "exactly three signings were authorized"
    );

    // The same transaction twice under two idempotency keys: one signature, the other refused
    // and ended (its nonce is taken).
    let tx = eth_transfer(30, 1_000, HOT_WALLET);
    let mut twice = Vec::new();
    for idem in ["twice-a", "twice-b"] {
        let r = ledger
            .submit_withdrawal(eth(&dir, tx.clone(), idem))
            .await
            .unwrap()
            .into_inner();
        twice.push(r.request_id);
    }
    for id in &twice {
        alice
            .approve(officer_approval(&d, "alice", id, Verdict::Approve).await)
            .await
            .unwrap();
    }
    let first = bob
        .approve(officer_approval(&d, "bob", &twice[0], Verdict::Approve).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.state, pb::RequestState::Signed as i32);
    let err = bob
        .approve(officer_approval(&d, "bob", &twice[1], Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "REPLAY_CONFLICT", "{err:?}");
    let second = ledger
        .get_request(pb::RequestId {
            request_id: twice[1].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.state, pb::RequestState::Failed as i32, "{second:?}");
    assert!(second.signed_transaction.is_empty());
    let records = audit_records(&d).await;
    let produced = records
        .iter()
        .filter(|r| event_type(r) == "signature_produced")
        .count();
    assert_eq!(produced, 4, "three split withdrawals and one of the twins");
}

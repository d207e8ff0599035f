//! Ethereum decoding and finalizing, against published vectors and independent implementations.
//!
//! Vectors live in `tests/vectors/ethereum/` at the workspace root, each with its source. The
//! independent path is alloy's signed-transaction decoding and signer recovery (k256 0.13
//! through `alloy-primitives`), never Kinko's own code.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{
    SignableTransaction, TxEip1559, TxEip2930, TxEip4844, TxEip7702, TxEnvelope, TxLegacy,
};
use alloy_eips::eip2718::Decodable2718;
use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_eips::eip7702::{Authorization, SignedAuthorization};
use alloy_primitives::{Address as EvmAddress, B256, Bytes, TxKind, U256, address, keccak256};
use kinko_chain::ethereum::{self, EthereumError};
use kinko_chain::{ChainError, DecodeContext, MAX_PAYLOAD_LEN, ProducedSignature};
use kinko_intent::{
    Amount, Asset, Chain, FeeDetail, Intent, IntentKind, Network, SigningInput, TokenInfo,
    TokenRegistry,
};
use serde_json::Value;

fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/ethereum")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A fixed software test key (never a real key): 0x0101…01 · 7.
fn test_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn sec1(key: &k256::ecdsa::SigningKey, compress: bool) -> Vec<u8> {
    key.verifying_key()
        .to_sec1_point(compress)
        .as_bytes()
        .to_vec()
}

/// The address of a key as alloy derives it: alloy recovers it (k256 0.13, its own keccak and
/// address code) from a signature the key made, independently of Kinko's derivation.
fn alloy_address(secret: &[u8; 32]) -> EvmAddress {
    let key = k256::ecdsa::SigningKey::from_slice(secret).unwrap();
    let digest = keccak256(b"kinko test");
    let (sig, rid) = key.sign_prehash_recoverable(digest.as_slice());
    let sig = alloy_primitives::Signature::from_bytes_and_parity(&sig.to_bytes(), rid.is_y_odd());
    sig.recover_address_from_prehash(&digest).unwrap()
}

fn sign(key: &k256::ecdsa::SigningKey, digest: &[u8]) -> ProducedSignature {
    let (sig, rid) = key.sign_prehash_recoverable(digest);
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&sig.to_bytes());
    ProducedSignature::EcdsaSecp256k1 {
        rs,
        recovery_id: rid.to_byte(),
    }
}

fn digest_of(intent: &Intent) -> Vec<u8> {
    match intent.to_sign.as_slice() {
        [SigningInput::EcdsaSecp256k1 { digest, index, .. }] => {
            assert_eq!(*index, 0);
            hex::decode(digest).unwrap()
        }
        other => panic!("expected one ECDSA input, got {other:?}"),
    }
}

struct Ctx {
    network: Network,
    public_key: Vec<u8>,
    tokens: TokenRegistry,
}

impl Ctx {
    fn new(network: &str, public_key: Vec<u8>) -> Self {
        let mut tokens = TokenRegistry::new();
        tokens.insert(
            Chain::Ethereum,
            "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            TokenInfo {
                symbol: "USDT".into(),
                decimals: 6,
            },
        );
        Ctx {
            network: Network::new(network).unwrap(),
            public_key,
            tokens,
        }
    }
    fn ctx(&self) -> DecodeContext<'_> {
        DecodeContext {
            network: &self.network,
            public_key: &self.public_key,
            tokens: &self.tokens,
        }
    }
}

fn unsigned_bytes<T: SignableTransaction<alloy_primitives::Signature>>(tx: &T) -> Vec<u8> {
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

/// decode → sign with the software key → finalize → alloy decodes the signed bytes and
/// recovers the signer; returns the intent.
fn round_trip(payload: &[u8], network: &str) -> Intent {
    let key = test_key();
    let c = Ctx::new(network, sec1(&key, true));
    let intent = kinko_chain::decode(Chain::Ethereum, payload, &c.ctx()).unwrap();
    // The digest Kinko asks the HSM to sign is keccak256 of the exact payload.
    assert_eq!(digest_of(&intent), keccak256(payload).to_vec());
    let sig = sign(&key, &digest_of(&intent));
    let fin = kinko_chain::finalize(Chain::Ethereum, payload, &c.ctx(), &[sig]).unwrap();
    let env = TxEnvelope::decode_2718(&mut fin.signed.as_slice()).unwrap();
    assert_eq!(env.recover_signer().unwrap(), alloy_address(&[7u8; 32]));
    assert_eq!(fin.id, format!("{:#x}", env.tx_hash()));
    assert_eq!(fin.id, format!("{:#x}", keccak256(&fin.signed)));
    assert_eq!(
        intent.signer.as_str(),
        alloy_address(&[7u8; 32]).to_checksum(None)
    );
    intent
}

// ---- EIP-155 example ---------------------------------------------------------------------------

#[test]
fn eip155_example_from_the_eip() {
    let v = load("eip155.json");
    let secret: [u8; 32] = hex::decode(v["private_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = k256::ecdsa::SigningKey::from_slice(&secret).unwrap();
    let payload = hex::decode(v["signing_data"].as_str().unwrap()).unwrap();
    let c = Ctx::new("1", sec1(&key, false));
    let intent = ethereum::decode(&payload, &c.ctx()).unwrap();

    assert_eq!(
        hex::encode(digest_of(&intent)),
        v["signing_hash"].as_str().unwrap()
    );
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(
        intent.transfers[0].to.as_str(),
        "0x3535353535353535353535353535353535353535"
    );
    assert_eq!(
        intent.transfers[0].amount.to_string(),
        v["value"].as_str().unwrap()
    );
    assert_eq!(intent.nonce, Some(9));
    assert_eq!(intent.replay_keys, vec!["nonce:9".to_string()]);
    // max fee = gas × gasPrice = 21000 × 20 gwei
    assert_eq!(intent.fee.max, Amount::from_u64(21_000 * 20_000_000_000));
    assert!(matches!(
        intent.fee.detail,
        FeeDetail::Ethereum {
            gas_limit: 21000,
            max_priority_fee_per_gas: None,
            ..
        }
    ));
    // The signer is the address alloy recovers from the EIP's own signed transaction.
    let signed = hex::decode(v["signed_tx"].as_str().unwrap()).unwrap();
    let env = TxEnvelope::decode_2718(&mut signed.as_slice()).unwrap();
    assert_eq!(
        intent.signer.as_str(),
        env.recover_signer().unwrap().to_checksum(None)
    );
    assert_eq!(
        intent.signer.as_str(),
        alloy_address(&secret).to_checksum(None)
    );

    // Finalizing with the EIP's published (r, s, v=37) reproduces the EIP's signed bytes.
    let r = U256::from_str_radix(v["r"].as_str().unwrap(), 10).unwrap();
    let s = U256::from_str_radix(v["s"].as_str().unwrap(), 10).unwrap();
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&r.to_be_bytes::<32>());
    rs[32..].copy_from_slice(&s.to_be_bytes::<32>());
    let recovery_id = u8::try_from(v["v"].as_u64().unwrap() - 35 - 2).unwrap();
    let fin = ethereum::finalize(
        &payload,
        &c.ctx(),
        &[ProducedSignature::EcdsaSecp256k1 { rs, recovery_id }],
    )
    .unwrap();
    assert_eq!(hex::encode(&fin.signed), v["signed_tx"].as_str().unwrap());

    // And signing it ourselves (RFC 6979) round-trips through alloy's recovery.
    let sig = sign(&key, &digest_of(&intent));
    let fin = ethereum::finalize(&payload, &c.ctx(), &[sig]).unwrap();
    let env = TxEnvelope::decode_2718(&mut fin.signed.as_slice()).unwrap();
    assert_eq!(env.recover_signer().unwrap(), alloy_address(&secret));
}

// ---- Real transactions -------------------------------------------------------------------------

#[test]
fn onchain_transactions_decode_and_refinalize_to_the_same_bytes() {
    let vectors = load("onchain.json");
    for v in vectors.as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let signed = hex::decode(v["signed_tx"].as_str().unwrap()).unwrap();
        // Independent path: alloy decodes the signed transaction and recovers its sender.
        let env = TxEnvelope::decode_2718(&mut signed.as_slice()).unwrap();
        assert_eq!(
            format!("{:#x}", env.tx_hash()),
            v["tx_hash"].as_str().unwrap(),
            "{name}"
        );
        let from = env.recover_signer().unwrap();
        assert!(
            from.to_checksum(None)
                .eq_ignore_ascii_case(v["from"].as_str().unwrap()),
            "{name}"
        );
        // Strip the signature: the unsigned form a hardware wallet would receive.
        let (payload, sig) = match &env {
            TxEnvelope::Legacy(s) => (unsigned_bytes(s.tx()), *s.signature()),
            TxEnvelope::Eip2930(s) => (unsigned_bytes(s.tx()), *s.signature()),
            TxEnvelope::Eip1559(s) => (unsigned_bytes(s.tx()), *s.signature()),
            TxEnvelope::Eip4844(s) => (unsigned_bytes(s.tx().tx()), *s.signature()),
            TxEnvelope::Eip7702(s) => (unsigned_bytes(s.tx()), *s.signature()),
        };
        let signing_hash = keccak256(&payload);
        let vk = sig.recover_from_prehash(&signing_hash).unwrap();
        let pk = vk.to_encoded_point(false).as_bytes().to_vec();

        let chain_id = v["chain_id"].as_u64().unwrap().to_string();
        let c = Ctx::new(&chain_id, pk);
        let intent = ethereum::decode(&payload, &c.ctx()).unwrap();
        assert!(
            intent
                .signer
                .as_str()
                .eq_ignore_ascii_case(v["from"].as_str().unwrap()),
            "{name}: signer {}",
            intent.signer
        );
        assert_eq!(digest_of(&intent), signing_hash.to_vec(), "{name}");
        assert_eq!(intent.kind.as_str(), v["kind"].as_str().unwrap(), "{name}");
        assert_eq!(intent.nonce, v["nonce"].as_u64(), "{name}");
        let amount = Amount::from_be_bytes(
            U256::from_str_radix(v["amount_hex"].as_str().unwrap(), 16)
                .unwrap()
                .to_be_bytes::<32>(),
        );
        let to = v["to"].as_str().unwrap();
        match intent.kind {
            IntentKind::Transfer => {
                assert_eq!(intent.transfers.len(), 1);
                assert!(intent.transfers[0].to.as_str().eq_ignore_ascii_case(to));
                assert_eq!(intent.transfers[0].amount, amount);
                assert!(intent.call.is_none());
            }
            IntentKind::TokenTransfer => {
                assert_eq!(
                    intent.asset,
                    Asset::Token {
                        contract: kinko_intent::Address::new(v["token"].as_str().unwrap()).unwrap(),
                        symbol: Some("USDT".into()),
                        decimals: Some(6),
                    }
                );
                assert!(intent.transfers[0].to.as_str().eq_ignore_ascii_case(to));
                assert_eq!(intent.transfers[0].amount, amount);
                assert!(
                    intent.render().contains("send:     50 USDT"),
                    "{}",
                    intent.render()
                );
            }
            IntentKind::ContractCall => {
                let call = intent.call.as_ref().unwrap();
                assert!(
                    call.target
                        .as_ref()
                        .unwrap()
                        .as_str()
                        .eq_ignore_ascii_case(to)
                );
                assert_eq!(call.value, amount);
                if let Some(sel) = v["selector"].as_str() {
                    assert_eq!(call.selector.as_deref(), Some(sel), "{name}");
                }
            }
            other => panic!("{name}: unexpected kind {other}"),
        }
        // Finalizing the stripped payload with the original signature rebuilds the exact
        // transaction that was mined, with the same hash.
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
        rs[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
        let fin = ethereum::finalize(
            &payload,
            &c.ctx(),
            &[ProducedSignature::EcdsaSecp256k1 {
                rs,
                recovery_id: u8::from(sig.v()),
            }],
        )
        .unwrap();
        assert_eq!(
            hex::encode(&fin.signed),
            v["signed_tx"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(fin.id, v["tx_hash"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn blob_transaction_fee_counts_blob_gas() {
    let vectors = load("onchain.json");
    let v = vectors
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str().unwrap().contains("4844"))
        .unwrap();
    let signed = hex::decode(v["signed_tx"].as_str().unwrap()).unwrap();
    let TxEnvelope::Eip4844(s) = TxEnvelope::decode_2718(&mut signed.as_slice()).unwrap() else {
        panic!("not a blob transaction")
    };
    let tx = s.tx().tx().clone();
    let c = Ctx::new("11155111", sec1(&test_key(), true));
    let intent = ethereum::decode(&unsigned_bytes(&tx), &c.ctx()).unwrap();
    let call = intent.call.as_ref().unwrap();
    assert_eq!(call.note.as_deref(), Some("eip4844_blob"));
    let expected = u128::from(tx.gas_limit) * tx.max_fee_per_gas
        + tx.blob_versioned_hashes.len() as u128 * 131_072 * tx.max_fee_per_blob_gas;
    assert_eq!(intent.fee.max, Amount::from_u128(expected));
}

// ---- Round trips per transaction type ------------------------------------------------------------

const USDT: EvmAddress = address!("dAC17F958D2ee523a2206206994597C13D831ec7");
const BOB: EvmAddress = address!("3535353535353535353535353535353535353535");

fn erc20(selector: [u8; 4], who: EvmAddress, amount: U256) -> Bytes {
    let mut d = selector.to_vec();
    d.extend_from_slice(&[0u8; 12]);
    d.extend_from_slice(who.as_slice());
    d.extend_from_slice(&amount.to_be_bytes::<32>());
    d.into()
}

// Selectors from EIP-20's function signatures (keccak256("transfer(address,uint256)")[..4]).
const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];

#[test]
fn round_trip_legacy_eip155() {
    let tx = TxLegacy {
        chain_id: Some(137),
        nonce: 42,
        gas_price: 30_000_000_000,
        gas_limit: 60_000,
        to: TxKind::Call(USDT),
        value: U256::ZERO,
        input: erc20(TRANSFER, BOB, U256::from(1_234_567u64)),
    };
    let intent = round_trip(&unsigned_bytes(&tx), "137");
    assert_eq!(intent.kind, IntentKind::TokenTransfer);
    assert_eq!(intent.transfers[0].to.as_str(), BOB.to_checksum(None));
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(1_234_567));
}

#[test]
fn round_trip_eip2930_with_access_list() {
    let tx = TxEip2930 {
        chain_id: 1,
        nonce: 0,
        gas_price: 1,
        gas_limit: 30_000,
        to: TxKind::Call(BOB),
        value: U256::from(5u8),
        input: Bytes::new(),
        access_list: AccessList(vec![AccessListItem {
            address: USDT,
            storage_keys: vec![B256::repeat_byte(1)],
        }]),
    };
    let intent = round_trip(&unsigned_bytes(&tx), "1");
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(intent.transfers[0].amount, Amount::from_u64(5));
}

#[test]
fn round_trip_eip1559_approve_of_unknown_token() {
    let token = address!("1111111111111111111111111111111111111111");
    let tx = TxEip1559 {
        chain_id: 1,
        nonce: 7,
        max_priority_fee_per_gas: 2,
        max_fee_per_gas: 100,
        gas_limit: 50_000,
        to: TxKind::Call(token),
        value: U256::ZERO,
        input: erc20(APPROVE, BOB, U256::MAX),
        access_list: AccessList::default(),
    };
    let intent = round_trip(&unsigned_bytes(&tx), "1");
    assert_eq!(intent.kind, IntentKind::TokenApprove);
    assert_eq!(
        intent.asset,
        Asset::Token {
            contract: kinko_intent::Address::new(token.to_checksum(None)).unwrap(),
            symbol: None,
            decimals: None,
        }
    );
    assert_eq!(intent.transfers[0].amount, Amount::MAX);
    assert_eq!(intent.fee.max, Amount::from_u64(5_000_000));
    assert!(matches!(
        &intent.fee.detail,
        FeeDetail::Ethereum { max_priority_fee_per_gas: Some(p), .. } if *p == Amount::from_u64(2)
    ));
}

#[test]
fn round_trip_contract_creation() {
    let tx = TxEip1559 {
        chain_id: 1,
        nonce: 1,
        max_priority_fee_per_gas: 1,
        max_fee_per_gas: 1,
        gas_limit: 1_000_000,
        to: TxKind::Create,
        value: U256::from(9u8),
        input: vec![0x60, 0x80, 0x60, 0x40, 0x52].into(),
        access_list: AccessList::default(),
    };
    let intent = round_trip(&unsigned_bytes(&tx), "1");
    assert_eq!(intent.kind, IntentKind::ContractCall);
    let call = intent.call.unwrap();
    assert_eq!(call.target, None);
    assert_eq!(call.note.as_deref(), Some("contract_creation"));
    assert_eq!(call.value, Amount::from_u64(9));
    assert_eq!(call.data_len, 5);
    assert!(intent.transfers.is_empty());
}

#[test]
fn round_trip_blob_transaction_is_a_contract_call() {
    let tx = TxEip4844 {
        chain_id: 1,
        nonce: 3,
        gas_limit: 21_000,
        max_fee_per_gas: 10,
        max_priority_fee_per_gas: 1,
        to: BOB,
        value: U256::ZERO,
        access_list: AccessList::default(),
        blob_versioned_hashes: vec![B256::repeat_byte(1), B256::repeat_byte(2)],
        max_fee_per_blob_gas: 3,
        input: Bytes::new(),
    };
    let intent = round_trip(&unsigned_bytes(&tx), "1");
    assert_eq!(intent.kind, IntentKind::ContractCall);
    assert_eq!(intent.call.unwrap().note.as_deref(), Some("eip4844_blob"));
    assert_eq!(
        intent.fee.max,
        Amount::from_u64(21_000 * 10 + 2 * 131_072 * 3)
    );
}

/// EIP-7702 set-code authorization: never a plain transfer, even with empty calldata.
#[test]
fn eip7702_is_a_contract_call() {
    let auth = Authorization {
        chain_id: U256::from(1u8),
        address: address!("2222222222222222222222222222222222222222"),
        nonce: 8,
    };
    let tx = TxEip7702 {
        chain_id: 1,
        nonce: 8,
        gas_limit: 100_000,
        max_fee_per_gas: 10,
        max_priority_fee_per_gas: 1,
        to: BOB,
        value: U256::from(1u8),
        access_list: AccessList::default(),
        authorization_list: vec![SignedAuthorization::new_unchecked(
            auth,
            0,
            U256::from(1u8),
            U256::from(1u8),
        )],
        input: Bytes::new(),
    };
    let intent = round_trip(&unsigned_bytes(&tx), "1");
    assert_eq!(intent.kind, IntentKind::ContractCall);
    let call = intent.call.as_ref().unwrap();
    assert_eq!(call.note.as_deref(), Some("eip7702_authorization"));
    assert_eq!(
        call.target.as_ref().unwrap().as_str(),
        BOB.to_checksum(None)
    );
    // The ether sent to the target is still counted as outgoing.
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(intent.total_out().unwrap(), Amount::from_u64(1));
}

// ---- What is and is not an ERC-20 call ---------------------------------------------------------------

fn eip1559_call(value: u64, input: Vec<u8>) -> Vec<u8> {
    unsigned_bytes(&TxEip1559 {
        chain_id: 1,
        nonce: 0,
        max_priority_fee_per_gas: 1,
        max_fee_per_gas: 1,
        gas_limit: 100_000,
        to: TxKind::Call(USDT),
        value: U256::from(value),
        input: input.into(),
        access_list: AccessList::default(),
    })
}

fn kind_of(payload: &[u8]) -> Intent {
    let c = Ctx::new("1", sec1(&test_key(), true));
    ethereum::decode(payload, &c.ctx()).unwrap()
}

#[test]
fn erc20_lookalikes_are_contract_calls() {
    let good = erc20(TRANSFER, BOB, U256::from(1u8)).to_vec();
    assert_eq!(
        kind_of(&eip1559_call(0, good.clone())).kind,
        IntentKind::TokenTransfer
    );
    // ether attached to a token transfer
    let i = kind_of(&eip1559_call(1, good.clone()));
    assert_eq!(i.kind, IntentKind::ContractCall);
    assert_eq!(i.call.unwrap().selector.as_deref(), Some("a9059cbb"));
    // one extra calldata byte
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        kind_of(&eip1559_call(0, long)).kind,
        IntentKind::ContractCall
    );
    // dirty high bytes in the address word
    let mut dirty = good.clone();
    dirty[4] = 1;
    assert_eq!(
        kind_of(&eip1559_call(0, dirty)).kind,
        IntentKind::ContractCall
    );
    // short calldata: no selector
    let i = kind_of(&eip1559_call(0, vec![0xa9, 0x05]));
    assert_eq!(i.kind, IntentKind::ContractCall);
    assert_eq!(i.call.unwrap().selector, None);
    // transferFrom is not recognised
    let mut tf = vec![0x23, 0xb8, 0x72, 0xdd];
    tf.extend_from_slice(&[0u8; 96]);
    assert_eq!(kind_of(&eip1559_call(0, tf)).kind, IntentKind::ContractCall);
}

// ---- Refusals ----------------------------------------------------------------------------------------

fn eip155_payload() -> Vec<u8> {
    hex::decode(load("eip155.json")["signing_data"].as_str().unwrap()).unwrap()
}

fn refuse(payload: &[u8], network: &str) -> EthereumError {
    let c = Ctx::new(network, sec1(&test_key(), true));
    ethereum::decode(payload, &c.ctx()).unwrap_err()
}

#[test]
fn refuses_legacy_without_chain_id() {
    let tx = TxLegacy {
        chain_id: None,
        nonce: 9,
        gas_price: 20_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(BOB),
        value: U256::from(1u8),
        input: Bytes::new(),
    };
    let payload = unsigned_bytes(&tx);
    assert!(
        (0xc0..0xf8).contains(&payload[0]),
        "a short six-field pre-EIP-155 list"
    );
    assert!(matches!(refuse(&payload, "1"), EthereumError::NoChainId));
}

#[test]
fn refuses_wrong_chain_id() {
    match refuse(&eip155_payload(), "5") {
        EthereumError::ChainIdMismatch { payload, expected } => {
            assert_eq!((payload, expected), (1, 5));
        }
        other => panic!("{other:?}"),
    }
    let tx = TxEip1559 {
        chain_id: 10,
        ..Default::default()
    };
    assert!(matches!(
        refuse(&unsigned_bytes(&tx), "1"),
        EthereumError::ChainIdMismatch {
            payload: 10,
            expected: 1
        }
    ));
}

#[test]
fn refuses_trailing_bytes() {
    let mut p = eip155_payload();
    p.push(0x80);
    assert!(matches!(refuse(&p, "1"), EthereumError::TrailingBytes(1)));
    let mut p = eip1559_call(0, Vec::new());
    p.extend_from_slice(&[0, 0]);
    assert!(matches!(refuse(&p, "1"), EthereumError::TrailingBytes(2)));
}

#[test]
fn refuses_oversized_input() {
    let big = vec![0xc0u8; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(refuse(&big, "1"), EthereumError::TooLarge(_)));
    let c = Ctx::new("1", sec1(&test_key(), true));
    assert!(matches!(
        kinko_chain::decode(Chain::Ethereum, &big, &c.ctx()),
        Err(ChainError::TooLarge(_))
    ));
}

#[test]
fn refuses_signed_and_malformed_payloads() {
    // An already-signed legacy transaction (v, r, s in place of chainId, 0, 0).
    let signed = hex::decode(load("eip155.json")["signed_tx"].as_str().unwrap()).unwrap();
    assert!(matches!(
        refuse(&signed, "1"),
        EthereumError::BadEip155Suffix
    ));
    // An already-signed typed transaction.
    let signed = hex::decode(load("onchain.json")[0]["signed_tx"].as_str().unwrap()).unwrap();
    assert!(matches!(refuse(&signed, "1"), EthereumError::Rlp(_)));
    assert!(matches!(refuse(&[], "1"), EthereumError::Empty));
    assert!(matches!(
        refuse(&[0x00, 0xc0], "1"),
        EthereumError::UnsupportedType(0)
    ));
    assert!(matches!(
        refuse(&[0x05, 0xc0], "1"),
        EthereumError::UnsupportedType(5)
    ));
    assert!(matches!(
        refuse(&[0x7f], "1"),
        EthereumError::UnsupportedType(0x7f)
    ));
    // Non-canonical list header: the 44-byte list with a long-form length prefix.
    let mut p = eip155_payload();
    p[0] = 0x2c;
    p.insert(0, 0xf8);
    assert!(matches!(
        refuse(&p, "1"),
        EthereumError::Rlp(_) | EthereumError::NonCanonical
    ));
    // Truncated.
    let p = eip155_payload();
    assert!(matches!(
        refuse(&p[..p.len() - 1], "1"),
        EthereumError::Rlp(_)
    ));
}

#[test]
fn refuses_bad_context() {
    let c = Ctx::new("abc", sec1(&test_key(), true));
    assert!(matches!(
        ethereum::decode(&eip155_payload(), &c.ctx()),
        Err(EthereumError::InvalidNetwork(_))
    ));
    for bad in ["01", "0"] {
        let c = Ctx::new(bad, sec1(&test_key(), true));
        assert!(matches!(
            ethereum::decode(&eip155_payload(), &c.ctx()),
            Err(EthereumError::InvalidNetwork(_))
        ));
    }
    let mut x_too_big = vec![0xffu8; 33];
    x_too_big[0] = 2;
    for pk in [vec![2u8; 32], x_too_big, vec![4u8; 65], vec![5u8; 33]] {
        let c = Ctx::new("1", pk);
        assert!(matches!(
            ethereum::decode(&eip155_payload(), &c.ctx()),
            Err(EthereumError::InvalidPublicKey(_))
        ));
    }
}

// ---- Finalize refusals ---------------------------------------------------------------------------------

fn finalize_with(sigs: &[ProducedSignature]) -> Result<kinko_chain::Finalized, EthereumError> {
    let c = Ctx::new("1", sec1(&test_key(), true));
    ethereum::finalize(&eip155_payload(), &c.ctx(), sigs)
}

#[test]
fn finalize_refuses_bad_signatures() {
    let digest = keccak256(eip155_payload());
    let good = sign(&test_key(), digest.as_slice());
    assert!(finalize_with(std::slice::from_ref(&good)).is_ok());

    assert!(matches!(
        finalize_with(&[]),
        Err(EthereumError::SignatureCount {
            expected: 1,
            got: 0
        })
    ));
    assert!(matches!(
        finalize_with(&[good.clone(), good.clone()]),
        Err(EthereumError::SignatureCount { got: 2, .. })
    ));
    assert!(matches!(
        finalize_with(&[ProducedSignature::Ed25519([0u8; 64])]),
        Err(EthereumError::WrongScheme)
    ));

    // High S: s' = n − s with the other parity is the same point, but EIP-2 forbids it.
    let ProducedSignature::EcdsaSecp256k1 { rs, recovery_id } = good.clone() else {
        unreachable!()
    };
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&rs[32..]);
    let mut high = rs;
    high[32..].copy_from_slice(&(n - s).to_be_bytes::<32>());
    assert!(matches!(
        finalize_with(&[ProducedSignature::EcdsaSecp256k1 {
            rs: high,
            recovery_id: recovery_id ^ 1
        }]),
        Err(EthereumError::HighS)
    ));
    // Wrong parity recovers another key.
    assert!(matches!(
        finalize_with(&[ProducedSignature::EcdsaSecp256k1 {
            rs,
            recovery_id: recovery_id ^ 1
        }]),
        Err(EthereumError::SignerMismatch { .. })
    ));
    assert!(matches!(
        finalize_with(&[ProducedSignature::EcdsaSecp256k1 { rs, recovery_id: 2 }]),
        Err(EthereumError::BadRecoveryId(2))
    ));
    assert!(matches!(
        finalize_with(&[ProducedSignature::EcdsaSecp256k1 {
            rs: [0u8; 64],
            recovery_id: 0
        }]),
        Err(EthereumError::InvalidSignature)
    ));
    // A valid signature by another key.
    let other = k256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    assert!(matches!(
        finalize_with(&[sign(&other, digest.as_slice())]),
        Err(EthereumError::SignerMismatch { .. })
    ));
    // A valid signature by the right key over another digest.
    assert!(matches!(
        finalize_with(&[sign(&test_key(), &[1u8; 32])]),
        Err(EthereumError::SignerMismatch { .. })
    ));
}

// ---- Addresses, digest ------------------------------------------------------------------------------

/// The examples of EIP-55 (https://eips.ethereum.org/EIPS/eip-55), "all caps", "all lower"
/// and "normal" groups.
#[test]
fn eip55_checksums() {
    for s in [
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ] {
        let raw: [u8; 20] = hex::decode(&s[2..]).unwrap().try_into().unwrap();
        let got = ethereum::checksummed(&EvmAddress::from(raw)).unwrap();
        assert_eq!(got.as_str(), s);
    }
}

#[test]
fn key_forms_give_the_same_intent_and_digest() {
    let key = test_key();
    let p = eip155_payload();
    let a = Ctx::new("1", sec1(&key, true));
    let b = Ctx::new("1", sec1(&key, false));
    let ia = ethereum::decode(&p, &a.ctx()).unwrap();
    let ib = ethereum::decode(&p, &b.ctx()).unwrap();
    assert_eq!(ia, ib);
    assert_eq!(ia.digest().unwrap(), ib.digest().unwrap());
    // The JSON round-trips through the shared model.
    let json = serde_json::to_string(&ia).unwrap();
    let back: Intent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ia);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes never panic; anything accepted is a canonical payload whose digest
        /// is keccak256 of exactly those bytes.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let c = Ctx::new("1", sec1(&test_key(), true));
            if let Ok(intent) = ethereum::decode(&bytes, &c.ctx()) {
                prop_assert_eq!(digest_of(&intent), keccak256(&bytes).to_vec());
            }
        }

        /// Single-byte corruptions of a valid payload never panic and, when still accepted,
        /// still sign exactly the bytes given.
        #[test]
        fn corrupted_payloads(pos in 0usize..110, byte in any::<u8>()) {
            let mut p = eip1559_call(0, erc20(TRANSFER, BOB, U256::from(77u8)).to_vec());
            let i = pos % p.len();
            p[i] = byte;
            let c = Ctx::new("1", sec1(&test_key(), true));
            if let Ok(intent) = ethereum::decode(&p, &c.ctx()) {
                prop_assert_eq!(digest_of(&intent), keccak256(&p).to_vec());
            }
        }
    }
}

/// The worked examples of docs/intents.md: the canonical bytes (written by Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"))`) and the digests (Python's `hashlib`)
/// are reproduced by Kinko.
#[test]
fn worked_examples_of_the_docs() {
    // The EIP-155 example's key, 0x4646…46, compressed.
    let key = "024bc2a31265153f07e70e0bab08724e6b85e217f8cd628ceb62974247bb493382";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let safe_td =
        std::fs::read(root.join("tests/vectors/safe/mainnet_nonce434.typed_data.json")).unwrap();
    let cases: [(Vec<u8>, &str, &str); 2] = [
        (
            eip155_payload(),
            "tests/vectors/ethereum/eip155_example.intent.canonical.json",
            "2baaa5d3d7ec3dd25ee3727891bec36cab55b7024092153187c74f9eb97ea9c4",
        ),
        (
            safe_td,
            "tests/vectors/safe/mainnet_nonce434.intent.canonical.json",
            "5a86ed8392346a0fa85de5749f3b11d917aae7b120a58353f4309c142ef8a80f",
        ),
    ];
    for (payload, canonical, digest) in cases {
        let c = Ctx::new("1", hex::decode(key).unwrap());
        let intent = kinko_chain::decode(Chain::Ethereum, &payload, &c.ctx()).unwrap();
        assert_eq!(
            intent.canonical_bytes().unwrap(),
            std::fs::read(root.join(canonical)).unwrap(),
            "{canonical}"
        );
        assert_eq!(intent.digest().unwrap().to_hex(), digest);
        let docs = std::fs::read_to_string(root.join("docs/intents.md")).unwrap();
        assert!(docs.contains(digest), "docs/intents.md shows {digest}");
    }
}

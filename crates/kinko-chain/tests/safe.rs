//! Safe{Wallet} SafeTx typed data: hashes against published SafeTx hashes and an independent
//! EIP-712 implementation (alloy-sol-types), classification, refusals and owner signatures.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy_primitives::{Address as EvmAddress, B256, U256, address, keccak256};
use alloy_sol_types::{SolCall, SolStruct, eip712_domain};
use kinko_chain::safe::{self, SafeError, SafeTx};
use kinko_chain::{DecodeContext, MAX_PAYLOAD_LEN, ProducedSignature};
use kinko_intent::{
    Amount, Asset, Chain, FeeDetail, Intent, IntentKind, Network, SigningInput, TokenInfo,
    TokenRegistry,
};
use serde_json::{Value, json};

fn vectors() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/safe/safe_tx_hashes.json");
    serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn vector(name_part: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| v["name"].as_str().unwrap().contains(name_part))
        .unwrap()
}

/// A fixed software owner key for tests (never a real key).
fn owner() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap()
}

fn owner_pk() -> Vec<u8> {
    owner()
        .verifying_key()
        .to_sec1_point(true)
        .as_bytes()
        .to_vec()
}

struct Ctx {
    network: Network,
    public_key: Vec<u8>,
    tokens: TokenRegistry,
}

impl Ctx {
    fn new(network: &str) -> Self {
        let mut tokens = TokenRegistry::new();
        tokens.insert(
            Chain::Ethereum,
            "0xbaa5cc21fd487b8fcc2f632f3f4e8d37262a0842",
            TokenInfo {
                symbol: "MORPHO".into(),
                decimals: 18,
            },
        );
        Ctx {
            network: Network::new(network).unwrap(),
            public_key: owner_pk(),
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

fn digest_of(intent: &Intent) -> String {
    match intent.to_sign.as_slice() {
        [
            SigningInput::EcdsaSecp256k1 {
                digest,
                public_key,
                index: 0,
            },
        ] => {
            assert_eq!(*public_key, hex::encode(owner_pk()), "the owner key signs");
            digest.clone()
        }
        other => panic!("{other:?}"),
    }
}

fn payload(td: &Value) -> Vec<u8> {
    serde_json::to_vec(td).unwrap()
}

// alloy-sol-types' EIP-712 implementation, from the SafeTx struct as Safe's contracts declare it.
alloy_sol_types::sol! {
    struct SafeTxSol {
        address to;
        uint256 value;
        bytes data;
        uint8 operation;
        uint256 safeTxGas;
        uint256 baseGas;
        uint256 gasPrice;
        address gasToken;
        address refundReceiver;
        uint256 nonce;
    }
}

fn alloy_hash(tx: &SafeTx) -> B256 {
    // sol! names the struct SafeTxSol; EIP-712 needs the type name "SafeTx", so hash the struct
    // fields with alloy and the type string with the name Safe uses.
    let s = SafeTxSol {
        to: tx.to,
        value: tx.value,
        data: tx.data.clone().into(),
        operation: tx.operation,
        safeTxGas: tx.safe_tx_gas,
        baseGas: tx.base_gas,
        gasPrice: tx.gas_price,
        gasToken: tx.gas_token,
        refundReceiver: tx.refund_receiver,
        nonce: tx.nonce,
    };
    let type_hash = keccak256(
        SafeTxSol::eip712_encode_type()
            .replacen("SafeTxSol(", "SafeTx(", 1)
            .as_bytes(),
    );
    let mut enc = type_hash.to_vec();
    enc.extend_from_slice(&s.eip712_encode_data());
    let struct_hash = keccak256(&enc);
    let domain = eip712_domain! {
        chain_id: tx.chain_id,
        verifying_contract: tx.safe,
    };
    let mut msg = vec![0x19, 0x01];
    msg.extend_from_slice(domain.separator().as_slice());
    msg.extend_from_slice(struct_hash.as_slice());
    keccak256(&msg)
}

// ---- Published SafeTx hashes --------------------------------------------------------------------------

#[test]
fn published_safe_tx_hashes() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        if name.contains("Bybit") {
            continue; // a Safe 1.1.1 domain: see bybit_struct_hash_matches_the_mainnet_safe_tx_hash
        }
        let exp = &v["expected"];
        let tx = safe::parse_typed_data(&payload(&v["typed_data"])).unwrap();
        assert_eq!(
            hex::encode(tx.domain_separator()),
            exp["domain_separator"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(tx.struct_hash()),
            exp["struct_hash"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(tx.hash()),
            exp["safe_tx_hash"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(alloy_hash(&tx), tx.hash(), "{name}: alloy-sol-types agrees");

        let c = Ctx::new(v["network"].as_str().unwrap());
        let intent = safe::decode(&payload(&v["typed_data"]), &c.ctx()).unwrap();
        assert_eq!(digest_of(&intent), exp["safe_tx_hash"].as_str().unwrap());
        assert_eq!(
            intent.kind.as_str(),
            exp["kind"].as_str().unwrap(),
            "{name}"
        );
        let safe_addr = v["typed_data"]["domain"]["verifyingContract"]
            .as_str()
            .unwrap();
        assert_eq!(intent.signer.as_str(), safe_addr, "the Safe is the signer");
        let nonce = intent.nonce.unwrap();
        assert_eq!(
            intent.replay_keys,
            vec![format!("safe:{safe_addr}:nonce:{nonce}")]
        );
    }
}

#[test]
fn base_token_transfer_intent() {
    let v = vector("base ERC-20");
    let c = Ctx::new("8453");
    let intent = safe::decode(&payload(&v["typed_data"]), &c.ctx()).unwrap();
    assert_eq!(intent.kind, IntentKind::TokenTransfer);
    assert_eq!(
        intent.asset,
        Asset::Token {
            contract: kinko_intent::Address::new("0xBAa5CC21fd487B8Fcc2F632f3F4E8D37262a0842")
                .unwrap(),
            symbol: Some("MORPHO".into()),
            decimals: Some(18),
        }
    );
    assert_eq!(intent.transfers.len(), 1);
    assert!(
        intent.transfers[0]
            .to
            .as_str()
            .eq_ignore_ascii_case("0xf057afeec22e220f47ad4220871364e9e828b2e9")
    );
    // 0x01a784379d99db42000000 = 2 000 000 × 10^18
    assert_eq!(
        intent.transfers[0].amount,
        Amount::from_u128(2_000_000 * 10u128.pow(18))
    );
    assert_eq!(intent.nonce, Some(11));
    assert_eq!(intent.fee.max, Amount::ZERO);
    assert!(matches!(intent.fee.detail, FeeDetail::Safe { .. }));
    assert!(
        intent.render().contains("2000000 MORPHO"),
        "{}",
        intent.render()
    );
}

/// The Bybit theft (Feb 2025): a SafeTx whose calldata is an ERC-20 `transfer`, sent by
/// *delegatecall* to the attacker's contract. Kinko refuses this exact payload (Safe 1.1.1,
/// domain without chainId), its struct hash matches the real safeTxHash, and the same
/// transaction under a ≥ 1.3 domain is a `safe_delegate_call`, never a token transfer.
#[test]
fn bybit_struct_hash_matches_the_mainnet_safe_tx_hash() {
    let v = vector("Bybit");
    let td = &v["typed_data"];
    let c = Ctx::new("1");
    assert!(matches!(
        safe::decode(&payload(td), &c.ctx()),
        Err(SafeError::DomainWithoutChainId)
    ));

    // Rebuild with a chainId domain (chain 1) to get Kinko's struct hash ...
    let mut with_chain = td.clone();
    with_chain["domain"]["chainId"] = json!(1);
    with_chain["types"]["EIP712Domain"] = json!([
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"}
    ]);
    let tx = safe::parse_typed_data(&payload(&with_chain)).unwrap();
    // ... and combine it with the Safe 1.1.1 domain separator, computed here from EIP-712:
    // keccak256(keccak256("EIP712Domain(address verifyingContract)") || safe).
    let mut dom = keccak256(b"EIP712Domain(address verifyingContract)").to_vec();
    dom.extend_from_slice(&[0u8; 12]);
    dom.extend_from_slice(tx.safe.as_slice());
    let legacy_separator = keccak256(&dom);
    let mut msg = vec![0x19, 0x01];
    msg.extend_from_slice(legacy_separator.as_slice());
    msg.extend_from_slice(tx.struct_hash().as_slice());
    assert_eq!(
        hex::encode(keccak256(&msg)),
        v["expected"]["safe_tx_hash"].as_str().unwrap()
    );

    let intent = safe::decode(&payload(&with_chain), &c.ctx()).unwrap();
    assert_eq!(intent.kind, IntentKind::SafeDelegateCall);
    assert!(intent.transfers.is_empty());
    let call = intent.call.unwrap();
    assert_eq!(
        call.target.unwrap().as_str(),
        "0x96221423681A6d52E184D440a8eFCEbB105C7242"
    );
    assert_eq!(call.selector.as_deref(), Some("a9059cbb"));
    assert_eq!(call.note.as_deref(), Some("delegatecall"));
}

// ---- Classification -------------------------------------------------------------------------------------

const SAFE: EvmAddress = address!("1111111111111111111111111111111111111111");

fn typed(to: EvmAddress, value: &str, data: &[u8], operation: u8) -> Value {
    json!({
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
        "domain": {"chainId": "0x1", "verifyingContract": SAFE.to_checksum(None)},
        "message": {
            "to": to.to_checksum(None),
            "value": value,
            "data": format!("0x{}", hex::encode(data)),
            "operation": operation,
            "safeTxGas": 0,
            "baseGas": 0,
            "gasPrice": "0",
            "gasToken": "0x0000000000000000000000000000000000000000",
            "refundReceiver": "0x0000000000000000000000000000000000000000",
            "nonce": 3
        }
    })
}

fn decode(td: &Value) -> Result<Intent, SafeError> {
    let c = Ctx::new("1");
    safe::decode(&payload(td), &c.ctx())
}

#[test]
fn native_transfer_from_the_safe() {
    let bob = address!("3535353535353535353535353535353535353535");
    let intent = decode(&typed(bob, "1000000000000000000", &[], 0)).unwrap();
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(intent.signer.as_str(), SAFE.to_checksum(None));
    assert_eq!(intent.transfers[0].to.as_str(), bob.to_checksum(None));
    assert_eq!(
        intent.transfers[0].amount,
        Amount::from_u64(1_000_000_000_000_000_000)
    );
    assert_eq!(
        intent.replay_keys,
        vec![format!("safe:{}:nonce:3", SAFE.to_checksum(None))]
    );
}

// The Safe's administrative ABI, restated here from safe-smart-account's OwnerManager,
// ModuleManager, GuardManager, FallbackManager and (< 1.3) MasterCopy.
alloy_sol_types::sol! {
    function addOwnerWithThreshold(address owner, uint256 _threshold);
    function removeOwner(address prevOwner, address owner, uint256 _threshold);
    function swapOwner(address prevOwner, address oldOwner, address newOwner);
    function changeThreshold(uint256 _threshold);
    function enableModule(address module);
    function disableModule(address prevModule, address module);
    function setGuard(address guard);
    function setFallbackHandler(address handler);
    function changeMasterCopy(address _masterCopy);
}

#[test]
fn self_calls_name_the_method() {
    let a = address!("2222222222222222222222222222222222222222");
    let b = address!("3333333333333333333333333333333333333333");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            addOwnerWithThresholdCall {
                owner: a,
                _threshold: U256::from(2),
            }
            .abi_encode(),
            "addOwnerWithThreshold",
        ),
        (
            removeOwnerCall {
                prevOwner: a,
                owner: b,
                _threshold: U256::from(1),
            }
            .abi_encode(),
            "removeOwner",
        ),
        (
            swapOwnerCall {
                prevOwner: a,
                oldOwner: b,
                newOwner: a,
            }
            .abi_encode(),
            "swapOwner",
        ),
        (
            changeThresholdCall {
                _threshold: U256::from(1),
            }
            .abi_encode(),
            "changeThreshold",
        ),
        (enableModuleCall { module: a }.abi_encode(), "enableModule"),
        (
            disableModuleCall {
                prevModule: a,
                module: b,
            }
            .abi_encode(),
            "disableModule",
        ),
        (setGuardCall { guard: a }.abi_encode(), "setGuard"),
        (
            setFallbackHandlerCall { handler: a }.abi_encode(),
            "setFallbackHandler",
        ),
        (
            changeMasterCopyCall { _masterCopy: a }.abi_encode(),
            "changeMasterCopy (implementation change)",
        ),
        (vec![0xde, 0xad, 0xbe, 0xef], "unknown"),
        (Vec::new(), "unknown"),
    ];
    for (data, method) in cases {
        let intent = decode(&typed(SAFE, "0", &data, 0)).unwrap();
        assert_eq!(intent.kind, IntentKind::SafeSelfCall, "{method}");
        let call = intent.call.unwrap();
        assert_eq!(call.note.as_deref(), Some(method));
        assert_eq!(call.target.unwrap().as_str(), SAFE.to_checksum(None));
        assert!(intent.transfers.is_empty());
    }
    // Selectors as published for the Safe ABI (e.g. 4byte.directory / Safe's own decoders).
    assert_eq!(
        addOwnerWithThresholdCall::SELECTOR,
        [0x0d, 0x58, 0x2f, 0x13]
    );
    assert_eq!(changeThresholdCall::SELECTOR, [0x69, 0x4e, 0x80, 0xc3]);
    assert_eq!(swapOwnerCall::SELECTOR, [0xe3, 0x18, 0xb5, 0x2b]);
}

#[test]
fn delegatecall_is_its_own_kind_even_to_the_safe_or_with_transfer_calldata() {
    let lib = address!("4444444444444444444444444444444444444444");
    let mut transfer = vec![0xa9, 0x05, 0x9c, 0xbb];
    transfer.extend_from_slice(&[0u8; 64]);
    for (to, data) in [
        (lib, transfer.clone()),
        (SAFE, Vec::new()),
        (lib, vec![0x8d, 0x80, 0xff, 0x0a]),
    ] {
        let intent = decode(&typed(to, "0", &data, 1)).unwrap();
        assert_eq!(intent.kind, IntentKind::SafeDelegateCall);
        assert!(intent.transfers.is_empty());
    }
    let intent = decode(&typed(lib, "0", &[0x8d, 0x80, 0xff, 0x0a], 1)).unwrap();
    assert_eq!(
        intent.call.unwrap().note.as_deref(),
        Some("delegatecall multiSend")
    );
    // The same calldata by plain call is an ERC-20 transfer of token `lib`.
    let intent = decode(&typed(lib, "0", &transfer, 0)).unwrap();
    assert_eq!(intent.kind, IntentKind::TokenTransfer);
}

#[test]
fn other_calls_are_contract_calls() {
    let target = address!("5555555555555555555555555555555555555555");
    let intent = decode(&typed(target, "7", &[1, 2, 3, 4, 5], 0)).unwrap();
    assert_eq!(intent.kind, IntentKind::ContractCall);
    let call = intent.call.as_ref().unwrap();
    assert_eq!(call.selector.as_deref(), Some("01020304"));
    assert_eq!(call.value, Amount::from_u64(7));
    assert_eq!(intent.total_out().unwrap(), Amount::from_u64(7));
}

// ---- Refusals --------------------------------------------------------------------------------------------

fn base() -> Value {
    typed(
        address!("3535353535353535353535353535353535353535"),
        "1",
        &[],
        0,
    )
}

fn refused(td: Value) -> SafeError {
    decode(&td).unwrap_err()
}

#[test]
fn refuses_non_safe_tx_typed_data() {
    // An EIP-2612 permit: valid typed data, not a SafeTx.
    let permit = json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"}
            ]
        },
        "primaryType": "Permit",
        "domain": {"name": "USD Coin", "version": "2", "chainId": 1,
                   "verifyingContract": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"},
        "message": {"owner": "0x1111111111111111111111111111111111111111",
                    "spender": "0x2222222222222222222222222222222222222222",
                    "value": "1", "nonce": 0, "deadline": 1}
    });
    assert!(matches!(
        refused(permit),
        SafeError::Json(_) | SafeError::NotSafeTx(_)
    ));

    let mut t = base();
    t["primaryType"] = json!("Permit");
    assert!(matches!(refused(t), SafeError::NotSafeTx(p) if p == "Permit"));
}

#[test]
fn refuses_type_definitions_that_differ() {
    // Fields reordered.
    let mut t = base();
    let fields = t["types"]["SafeTx"].as_array_mut().unwrap();
    fields.swap(0, 1);
    assert!(matches!(refused(t), SafeError::TypeMismatch(n) if n == "SafeTx"));
    // Safe < 1.0 "dataGas" instead of "baseGas".
    let mut t = base();
    t["types"]["SafeTx"][5]["name"] = json!("dataGas");
    assert!(matches!(refused(t), SafeError::TypeMismatch(_)));
    // A changed type.
    let mut t = base();
    t["types"]["SafeTx"][3]["type"] = json!("uint256");
    assert!(matches!(refused(t), SafeError::TypeMismatch(_)));
    // An extra type definition.
    let mut t = base();
    t["types"]["Mail"] = json!([{"name": "x", "type": "uint256"}]);
    assert!(matches!(refused(t), SafeError::TypeMismatch(n) if n == "Mail"));
    // Domain with a name.
    let mut t = base();
    t["types"]["EIP712Domain"] = json!([
        {"name": "name", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"}
    ]);
    assert!(matches!(refused(t), SafeError::TypeMismatch(_)));
    // SafeTx missing.
    let mut t = base();
    t["types"].as_object_mut().unwrap().remove("SafeTx");
    assert!(matches!(refused(t), SafeError::TypeMismatch(_)));
    // EIP712Domain may be left out (ethers-style); the domain is then the canonical one.
    let mut t = base();
    t["types"].as_object_mut().unwrap().remove("EIP712Domain");
    assert!(decode(&t).is_ok());
}

#[test]
fn refuses_unknown_and_duplicate_keys() {
    let mut t = base();
    t["message"]["extra"] = json!(1);
    assert!(matches!(refused(t), SafeError::Json(_)));
    let mut t = base();
    t["domain"]["salt"] = json!("0x00");
    assert!(matches!(refused(t), SafeError::Json(_)));
    let mut t = base();
    t["extra"] = json!(true);
    assert!(matches!(refused(t), SafeError::Json(_)));

    // Duplicate keys, which a JSON object would silently collapse: written by hand.
    let text = String::from_utf8(payload(&base())).unwrap();
    let dup_field = text.replacen("\"nonce\":3", "\"nonce\":3,\"nonce\":4", 1);
    assert_ne!(dup_field, text);
    let c = Ctx::new("1");
    assert!(matches!(
        safe::decode(dup_field.as_bytes(), &c.ctx()),
        Err(SafeError::Json(_))
    ));
    let dup_type = text.replacen("\"types\":{", "\"types\":{\"SafeTx\":[],", 1);
    assert_ne!(dup_type, text);
    assert!(matches!(
        safe::decode(dup_type.as_bytes(), &c.ctx()),
        Err(SafeError::Json(_))
    ));
}

#[test]
fn refuses_bad_values() {
    let cases: Vec<(&str, Value)> = vec![
        ("value", json!("-1")),
        ("value", json!("01")),
        ("value", json!(1.5)),
        ("value", json!("0x")),
        ("value", json!(format!("0x1{}", "0".repeat(64)))),
        ("value", json!(-1)),
        ("nonce", json!("18446744073709551616")),
        ("to", json!("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed")), // bad EIP-55 checksum
        ("to", json!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")),
        ("to", json!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA")),
        ("data", json!("0x123")),
        ("data", json!("1234")),
    ];
    for (field, value) in cases {
        let mut t = base();
        t["message"][field] = value.clone();
        let e = refused(t);
        assert!(
            matches!(e, SafeError::BadField { .. } | SafeError::Json(_)),
            "{field} = {value}: {e:?}"
        );
    }
    let mut t = base();
    t["message"]["operation"] = json!(2);
    assert!(matches!(refused(t), SafeError::BadOperation(_)));
    let mut t = base();
    t["domain"]["verifyingContract"] = json!("0x0000000000000000000000000000000000000000");
    assert!(matches!(refused(t), SafeError::ZeroSafe));
    // Lowercase and uppercase addresses carry no checksum and are accepted.
    let mut t = base();
    t["message"]["to"] = json!("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed");
    assert!(decode(&t).is_ok());
}

#[test]
fn refuses_wrong_chain_and_old_domains() {
    let mut t = base();
    t["domain"]["chainId"] = json!(5);
    assert!(matches!(
        refused(t),
        SafeError::ChainIdMismatch {
            payload: 5,
            expected: 1
        }
    ));
    let mut t = base();
    t["domain"].as_object_mut().unwrap().remove("chainId");
    assert!(matches!(refused(t), SafeError::DomainWithoutChainId));
}

#[test]
fn refuses_gas_refunds() {
    let mut t = base();
    t["message"]["gasPrice"] = json!("1");
    t["message"]["baseGas"] = json!("100000");
    assert!(matches!(refused(t), SafeError::GasRefund(_)));
}

#[test]
fn refuses_oversized_and_non_json() {
    let c = Ctx::new("1");
    let big = vec![b' '; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(
        safe::decode(&big, &c.ctx()),
        Err(SafeError::TooLarge(_))
    ));
    assert!(matches!(
        safe::decode(b"{not json", &c.ctx()),
        Err(SafeError::Json(_))
    ));
    assert!(safe::looks_like_typed_data(b"  \n{"));
    assert!(!safe::looks_like_typed_data(b"\x02\xf8"));
}

// ---- Finalize ---------------------------------------------------------------------------------------------

#[test]
fn owner_signature_round_trip() {
    let t = base();
    let c = Ctx::new("1");
    let intent = safe::decode(&payload(&t), &c.ctx()).unwrap();
    let digest = hex::decode(digest_of(&intent)).unwrap();
    let (sig, rid) = owner().sign_prehash_recoverable(&digest);
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&sig.to_bytes());
    let produced = ProducedSignature::EcdsaSecp256k1 {
        rs,
        recovery_id: rid.to_byte(),
    };
    let fin = kinko_chain::finalize(Chain::Ethereum, &payload(&t), &c.ctx(), &[produced]).unwrap();
    assert_eq!(fin.signed.len(), 65);
    assert!(fin.signed[64] == 27 || fin.signed[64] == 28);
    assert_eq!(fin.id, format!("0x{}", digest_of(&intent)));
    // Independent check: alloy parses the 65-byte Safe signature (v = 27/28) and recovers the
    // owner, whose address alloy also derives from the public key.
    let sig = alloy_primitives::Signature::from_raw(&fin.signed).unwrap();
    let recovered = sig
        .recover_address_from_prehash(&B256::from_slice(&digest))
        .unwrap();
    let vk = sig
        .recover_from_prehash(&B256::from_slice(&digest))
        .unwrap();
    assert_eq!(
        hex::encode(vk.to_encoded_point(true).as_bytes()),
        hex::encode(owner_pk())
    );
    assert_ne!(recovered, SAFE);

    // A signature by another owner is refused.
    let other = k256::ecdsa::SigningKey::from_slice(&[6u8; 32]).unwrap();
    let (sig, rid) = other.sign_prehash_recoverable(&digest);
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&sig.to_bytes());
    assert!(matches!(
        safe::finalize(
            &payload(&t),
            &c.ctx(),
            &[ProducedSignature::EcdsaSecp256k1 {
                rs,
                recovery_id: rid.to_byte()
            }]
        ),
        Err(SafeError::Evm(
            kinko_chain::ethereum::EthereumError::SignerMismatch { .. }
        ))
    ));
    assert!(matches!(
        safe::finalize(&payload(&t), &c.ctx(), &[]),
        Err(SafeError::Evm(
            kinko_chain::ethereum::EthereumError::SignatureCount { .. }
        ))
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = EvmAddress> {
        any::<[u8; 20]>().prop_map(EvmAddress::from)
    }
    fn u256() -> impl Strategy<Value = U256> {
        any::<[u8; 32]>().prop_map(U256::from_be_bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Kinko's SafeTx hash equals alloy-sol-types' EIP-712 hash for arbitrary fields.
        #[test]
        fn hash_matches_alloy_eip712(
            chain_id in 1u64.., safe in addr(), to in addr(), value in u256(),
            data in proptest::collection::vec(any::<u8>(), 0..200), operation in 0u8..2,
            g1 in u256(), g2 in u256(), g3 in u256(), tok in addr(), rr in addr(), nonce in u256(),
        ) {
            let tx = SafeTx {
                chain_id, safe, to, value, data, operation, safe_tx_gas: g1, base_gas: g2,
                gas_price: g3, gas_token: tok, refund_receiver: rr, nonce,
            };
            prop_assert_eq!(tx.hash(), alloy_hash(&tx));
        }

        /// Arbitrary bytes and corrupted JSON never panic.
        #[test]
        fn arbitrary_input(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let c = Ctx::new("1");
            let _ = safe::decode(&bytes, &c.ctx());
        }

        #[test]
        fn corrupted_json(pos in 0usize..2000, byte in any::<u8>()) {
            let mut p = payload(&base());
            let i = pos % p.len();
            p[i] = byte;
            let c = Ctx::new("1");
            let _ = safe::decode(&p, &c.ctx());
        }
    }
}

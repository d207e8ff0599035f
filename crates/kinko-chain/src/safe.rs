//! Safe{Wallet} multisig transactions (`SafeTx`), signed by one owner key.
//!
//! # Payload
//!
//! [EIP-712](https://eips.ethereum.org/EIPS/eip-712) typed data as `eth_signTypedData_v4` takes
//! it: a JSON object with `types`, `primaryType`, `domain` and `message`. Only the Safe ≥ 1.3
//! `SafeTx` is accepted:
//!
//! * `primaryType` is `"SafeTx"`;
//! * `types.SafeTx` is exactly [`SAFE_TX_TYPE`] (same fields, same order, same types), and
//!   `types.EIP712Domain`, when present, is exactly [`DOMAIN_TYPE`]; no other type is defined;
//! * `domain` is `{chainId, verifyingContract}` — older Safes (< 1.3, domain without `chainId`)
//!   are refused, since their signatures are valid on every chain;
//! * `message` has exactly the ten `SafeTx` fields. Integers are JSON integers below 2^64 or
//!   strings (canonical decimal or `0x` hex); addresses are `0x` + 40 hex digits (mixed case
//!   must be a valid EIP-55 checksum); `data` is `0x` hex.
//!
//! Unknown or duplicate keys anywhere are refused. Kinko then computes the EIP-712 hash itself
//! from the decoded values and the type strings above — never from anything the client says the
//! hash is:
//!
//! ```text
//! domainSeparator = keccak256(DOMAIN_TYPEHASH || chainId || safe)
//! safeTxHash      = keccak256(0x19 || 0x01 || domainSeparator || keccak256(SAFE_TX_TYPEHASH ||
//!                     to || value || keccak256(data) || operation || safeTxGas || baseGas ||
//!                     gasPrice || gasToken || refundReceiver || nonce))
//! ```
//!
//! (each field ABI-encoded as one 32-byte word), as `Safe.getTransactionHash` does.
//!
//! # Intent
//!
//! `signer` is the **Safe** (whose funds move); the HSM key is one of its owners and appears as
//! `to_sign[0].public_key`. The inner call is classified like a plain Ethereum call, except:
//!
//! * `operation = 1` (delegatecall) → [`IntentKind::SafeDelegateCall`]: the target's code runs
//!   with the Safe's own storage — the Bybit theft was an ERC-20 `transfer` *delegatecalled* to
//!   a contract that rewrote the Safe's implementation slot;
//! * `to` = the Safe itself → [`IntentKind::SafeSelfCall`], with the method named in
//!   `call.note` (owners, threshold, modules, guards, fallback handler, implementation, or
//!   `"unknown"`).
//!
//! The policy denies both unless a governance rule allows them. `nonce` is the Safe nonce and
//! the replay key is `safe:<Safe address>:nonce:<n>`.
//!
//! A non-zero `gasPrice` is refused: it makes the Safe pay a refund to `refundReceiver` (or the
//! executor) whose amount depends on the gas the executor chooses to burn, which no one can
//! bound from the signed data. The fee of an accepted SafeTx is therefore zero (the executor
//! pays the Ethereum gas); the refund parameters are shown in [`FeeDetail::Safe`].
//!
//! # Finalize
//!
//! The owner signature in Safe's format: `r || s || v` with `v = 27 + y parity`, 65 bytes.
//! [`Finalized::id`] is the SafeTx hash.

use std::collections::BTreeMap;
use std::fmt;

use alloy_primitives::{Address as EvmAddress, B256, U256, keccak256};
use kinko_intent::{
    Amount, Call, Chain, Fee, FeeDetail, Intent, IntentKind, SigningInput, native_asset,
};
use serde::Deserialize;

use crate::ethereum::{
    EthereumError, EvmKey, call_parts, chain_id_of_network, check_signature, checksummed,
    selector_hex, single_signature,
};
use crate::{DecodeContext, Finalized, MAX_PAYLOAD_LEN, ProducedSignature};

/// The EIP-712 encoding of the Safe ≥ 1.3 domain type.
pub const DOMAIN_TYPE: &str = "EIP712Domain(uint256 chainId,address verifyingContract)";

/// The EIP-712 encoding of the `SafeTx` type (Safe ≥ 1.0).
pub const SAFE_TX_TYPE: &str = "SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)";

/// `SafeTx`'s fields in order, as `(name, type)`.
const SAFE_TX_FIELDS: [(&str, &str); 10] = [
    ("to", "address"),
    ("value", "uint256"),
    ("data", "bytes"),
    ("operation", "uint8"),
    ("safeTxGas", "uint256"),
    ("baseGas", "uint256"),
    ("gasPrice", "uint256"),
    ("gasToken", "address"),
    ("refundReceiver", "address"),
    ("nonce", "uint256"),
];

/// The domain's fields in order, as `(name, type)`.
const DOMAIN_FIELDS: [(&str, &str); 2] = [("chainId", "uint256"), ("verifyingContract", "address")];

#[allow(
    missing_docs,
    unreachable_pub,
    reason = "sol!-generated ABI bindings, private to this crate"
)]
mod abi {
    alloy_sol_types::sol! {
        /// The Safe's own administrative methods (OwnerManager, ModuleManager, GuardManager,
        /// FallbackManager, and the pre-1.3 MasterCopy).
        interface ISafeAdmin {
            function addOwnerWithThreshold(address owner, uint256 _threshold) external;
            function removeOwner(address prevOwner, address owner, uint256 _threshold) external;
            function swapOwner(address prevOwner, address oldOwner, address newOwner) external;
            function changeThreshold(uint256 _threshold) external;
            function enableModule(address module) external;
            function disableModule(address prevModule, address module) external;
            function setGuard(address guard) external;
            function setModuleGuard(address moduleGuard) external;
            function setFallbackHandler(address handler) external;
            function changeMasterCopy(address _masterCopy) external;
        }
        /// Safe's MultiSend library, normally reached by delegatecall.
        interface IMultiSend {
            function multiSend(bytes transactions) external payable;
        }
    }
}

/// Why a Safe payload or signature was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafeError {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit")]
    TooLarge(usize),
    /// The payload is not well-formed typed-data JSON of the expected shape (unknown or
    /// duplicate keys, missing fields, wrong value types).
    #[error("invalid SafeTx typed data: {0}")]
    Json(String),
    /// `primaryType` is not `SafeTx`: other typed data is never signed.
    #[error("typed data with primary type {0:?} refused: only SafeTx is signed")]
    NotSafeTx(String),
    /// A type definition differs from the canonical `SafeTx` / `EIP712Domain` types, or an
    /// extra type is defined.
    #[error("type definition {0:?} differs from Safe's canonical SafeTx types")]
    TypeMismatch(String),
    /// The domain has no `chainId` (Safe < 1.3): the signature would be valid on every chain.
    #[error(
        "domain without chainId (Safe < 1.3) refused: the signature would be valid on every chain"
    )]
    DomainWithoutChainId,
    /// A numeric field is malformed or out of range.
    #[error("field {field}: {reason}")]
    BadField {
        /// The field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `operation` is neither 0 (call) nor 1 (delegatecall).
    #[error("operation {0} is neither 0 (call) nor 1 (delegatecall)")]
    BadOperation(String),
    /// The domain's chain id is not the signing key's network.
    #[error("SafeTx is for chain id {payload}, the key is configured for chain id {expected}")]
    ChainIdMismatch {
        /// The chain id in the domain.
        payload: u64,
        /// The chain id of `ctx.network`.
        expected: u64,
    },
    /// The Safe address (`verifyingContract`) is the zero address.
    #[error("verifyingContract is the zero address")]
    ZeroSafe,
    /// A non-zero `gasPrice` makes the Safe pay an unbounded refund.
    #[error(
        "gasPrice {0} ≠ 0: the Safe would pay a gas refund whose amount the executor controls; refused"
    )]
    GasRefund(String),
    /// Shared Ethereum checks failed (key, network, signature, addresses).
    #[error(transparent)]
    Evm(#[from] EthereumError),
}

/// A decoded `SafeTx` and its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeTx {
    /// EIP-712 domain `chainId`.
    pub chain_id: u64,
    /// EIP-712 domain `verifyingContract`: the Safe.
    pub safe: EvmAddress,
    /// Call target.
    pub to: EvmAddress,
    /// Ether sent with the call, in wei.
    pub value: U256,
    /// Calldata.
    pub data: Vec<u8>,
    /// 0 = call, 1 = delegatecall.
    pub operation: u8,
    /// `safeTxGas`.
    pub safe_tx_gas: U256,
    /// `baseGas`.
    pub base_gas: U256,
    /// `gasPrice`.
    pub gas_price: U256,
    /// `gasToken`.
    pub gas_token: EvmAddress,
    /// `refundReceiver`.
    pub refund_receiver: EvmAddress,
    /// The Safe nonce.
    pub nonce: U256,
}

fn word_address(a: &EvmAddress) -> [u8; 32] {
    let mut w = [0u8; 32];
    if let Some(tail) = w.get_mut(12..) {
        tail.copy_from_slice(a.as_slice());
    }
    w
}

impl SafeTx {
    /// `keccak256(DOMAIN_TYPEHASH || chainId || verifyingContract)`.
    pub fn domain_separator(&self) -> B256 {
        let mut buf = Vec::with_capacity(96);
        buf.extend_from_slice(keccak256(DOMAIN_TYPE.as_bytes()).as_slice());
        buf.extend_from_slice(&U256::from(self.chain_id).to_be_bytes::<32>());
        buf.extend_from_slice(&word_address(&self.safe));
        keccak256(&buf)
    }

    /// EIP-712 `hashStruct(SafeTx)`.
    pub fn struct_hash(&self) -> B256 {
        let mut buf = Vec::with_capacity(11 * 32);
        buf.extend_from_slice(keccak256(SAFE_TX_TYPE.as_bytes()).as_slice());
        buf.extend_from_slice(&word_address(&self.to));
        buf.extend_from_slice(&self.value.to_be_bytes::<32>());
        buf.extend_from_slice(keccak256(&self.data).as_slice());
        buf.extend_from_slice(&U256::from(self.operation).to_be_bytes::<32>());
        buf.extend_from_slice(&self.safe_tx_gas.to_be_bytes::<32>());
        buf.extend_from_slice(&self.base_gas.to_be_bytes::<32>());
        buf.extend_from_slice(&self.gas_price.to_be_bytes::<32>());
        buf.extend_from_slice(&word_address(&self.gas_token));
        buf.extend_from_slice(&word_address(&self.refund_receiver));
        buf.extend_from_slice(&self.nonce.to_be_bytes::<32>());
        keccak256(&buf)
    }

    /// The SafeTx hash the owners sign: `keccak256(0x19 0x01 || domainSeparator || structHash)`.
    pub fn hash(&self) -> B256 {
        let mut buf = [0u8; 66];
        buf[0] = 0x19;
        buf[1] = 0x01;
        buf[2..34].copy_from_slice(self.domain_separator().as_slice());
        buf[34..].copy_from_slice(self.struct_hash().as_slice());
        keccak256(buf)
    }
}

// ---- JSON shape -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TypedData {
    types: UniqueMap<Vec<TypeField>>,
    primary_type: String,
    domain: Domain,
    message: Message,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Domain {
    chain_id: Option<Uint>,
    verifying_contract: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Message {
    to: String,
    value: Uint,
    data: String,
    operation: Uint,
    safe_tx_gas: Uint,
    base_gas: Uint,
    gas_price: Uint,
    gas_token: String,
    refund_receiver: String,
    nonce: Uint,
}

/// An integer as typed-data JSON carries it: a JSON integer (below 2^64) or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Uint {
    Num(u64),
    Str(String),
}

impl fmt::Display for Uint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uint::Num(n) => write!(f, "{n}"),
            Uint::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A JSON object whose keys must be unique (serde's maps keep the last duplicate silently).
struct UniqueMap<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with unique keys")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

fn parse_uint(field: &'static str, v: &Uint) -> Result<U256, SafeError> {
    let bad = |reason: &str| SafeError::BadField {
        field,
        reason: format!("{v} {reason}"),
    };
    match v {
        Uint::Num(n) => Ok(U256::from(*n)),
        Uint::Str(s) => {
            if let Some(h) = s.strip_prefix("0x") {
                if h.is_empty() || h.len() > 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("is not 0x followed by 1 to 64 hex digits"));
                }
                U256::from_str_radix(h, 16).map_err(|_| bad("is not a 256-bit integer"))
            } else {
                let canonical = !s.is_empty()
                    && s.len() <= 78
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s == "0" || !s.starts_with('0'));
                if !canonical {
                    return Err(bad("is not a canonical decimal integer"));
                }
                U256::from_str_radix(s, 10).map_err(|_| bad("does not fit in 256 bits"))
            }
        }
    }
}

fn parse_u64(field: &'static str, v: &Uint) -> Result<u64, SafeError> {
    let n = parse_uint(field, v)?;
    u64::try_from(n).map_err(|_| SafeError::BadField {
        field,
        reason: format!("{v} does not fit in 64 bits"),
    })
}

fn parse_address(field: &'static str, s: &str) -> Result<EvmAddress, SafeError> {
    let bad = |reason: &str| SafeError::BadField {
        field,
        reason: format!("{s:?} {reason}"),
    };
    let Some(h) = s.strip_prefix("0x") else {
        return Err(bad("does not start with 0x"));
    };
    if h.len() != 40 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("is not 0x followed by 40 hex digits"));
    }
    let mut raw = [0u8; 20];
    hex::decode_to_slice(h, &mut raw).map_err(|_| bad("is not hex"))?;
    let addr = EvmAddress::from(raw);
    let mixed =
        h.bytes().any(|b| b.is_ascii_uppercase()) && h.bytes().any(|b| b.is_ascii_lowercase());
    if mixed && addr.to_checksum(None) != s {
        return Err(bad("has an invalid EIP-55 checksum"));
    }
    Ok(addr)
}

fn parse_bytes(field: &'static str, s: &str) -> Result<Vec<u8>, SafeError> {
    let h = s.strip_prefix("0x").ok_or_else(|| SafeError::BadField {
        field,
        reason: "does not start with 0x".into(),
    })?;
    hex::decode(h).map_err(|e| SafeError::BadField {
        field,
        reason: format!("not hex: {e}"),
    })
}

fn check_type(name: &str, got: &[TypeField], want: &[(&str, &str)]) -> Result<(), SafeError> {
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, (n, t))| g.name == *n && g.ty == *t);
    if same {
        Ok(())
    } else {
        Err(SafeError::TypeMismatch(name.to_string()))
    }
}

/// Parses typed-data JSON into a [`SafeTx`], enforcing the canonical types and domain.
pub fn parse_typed_data(payload: &[u8]) -> Result<SafeTx, SafeError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(SafeError::TooLarge(payload.len()));
    }
    let td: TypedData =
        serde_json::from_slice(payload).map_err(|e| SafeError::Json(e.to_string()))?;
    if td.primary_type != "SafeTx" {
        return Err(SafeError::NotSafeTx(td.primary_type));
    }
    // Checked before the types: a pre-1.3 Safe's domain type differs too, and this is the
    // clearer reason.
    let Some(chain_id) = td.domain.chain_id.as_ref() else {
        return Err(SafeError::DomainWithoutChainId);
    };
    for (name, fields) in &td.types.0 {
        match name.as_str() {
            "SafeTx" => check_type(name, fields, &SAFE_TX_FIELDS)?,
            "EIP712Domain" => check_type(name, fields, &DOMAIN_FIELDS)?,
            _ => return Err(SafeError::TypeMismatch(name.clone())),
        }
    }
    if !td.types.0.contains_key("SafeTx") {
        return Err(SafeError::TypeMismatch("SafeTx (missing)".into()));
    }
    let chain_id = parse_u64("domain.chainId", chain_id)?;
    let safe = parse_address("domain.verifyingContract", &td.domain.verifying_contract)?;
    if safe.is_zero() {
        return Err(SafeError::ZeroSafe);
    }
    let m = &td.message;
    let operation = match parse_uint("operation", &m.operation) {
        Ok(op) if op == U256::ZERO => 0,
        Ok(op) if op == U256::from(1u8) => 1,
        _ => return Err(SafeError::BadOperation(m.operation.to_string())),
    };
    Ok(SafeTx {
        chain_id,
        safe,
        to: parse_address("to", &m.to)?,
        value: parse_uint("value", &m.value)?,
        data: parse_bytes("data", &m.data)?,
        operation,
        safe_tx_gas: parse_uint("safeTxGas", &m.safe_tx_gas)?,
        base_gas: parse_uint("baseGas", &m.base_gas)?,
        gas_price: parse_uint("gasPrice", &m.gas_price)?,
        gas_token: parse_address("gasToken", &m.gas_token)?,
        refund_receiver: parse_address("refundReceiver", &m.refund_receiver)?,
        nonce: parse_uint("nonce", &m.nonce)?,
    })
}

/// Names a call of the Safe to itself from its selector.
pub fn self_call_method(data: &[u8]) -> &'static str {
    use abi::ISafeAdmin as S;
    use alloy_sol_types::SolCall as _;
    let Some(sel) = data.get(..4) else {
        return "unknown";
    };
    let known: [(&[u8], &'static str); 10] = [
        (
            &S::addOwnerWithThresholdCall::SELECTOR,
            "addOwnerWithThreshold",
        ),
        (&S::removeOwnerCall::SELECTOR, "removeOwner"),
        (&S::swapOwnerCall::SELECTOR, "swapOwner"),
        (&S::changeThresholdCall::SELECTOR, "changeThreshold"),
        (&S::enableModuleCall::SELECTOR, "enableModule"),
        (&S::disableModuleCall::SELECTOR, "disableModule"),
        (&S::setGuardCall::SELECTOR, "setGuard"),
        (&S::setModuleGuardCall::SELECTOR, "setModuleGuard"),
        (&S::setFallbackHandlerCall::SELECTOR, "setFallbackHandler"),
        (
            &S::changeMasterCopyCall::SELECTOR,
            "changeMasterCopy (implementation change)",
        ),
    ];
    known
        .iter()
        .find(|(s, _)| *s == sel)
        .map_or("unknown", |(_, name)| name)
}

struct Decoded {
    key: EvmKey,
    hash: B256,
    intent: Intent,
}

fn decode_full(payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Decoded, SafeError> {
    let expected_chain = chain_id_of_network(ctx.network.as_str())?;
    let key = EvmKey::from_sec1(ctx.public_key)?;
    let tx = parse_typed_data(payload)?;
    if tx.chain_id != expected_chain {
        return Err(SafeError::ChainIdMismatch {
            payload: tx.chain_id,
            expected: expected_chain,
        });
    }
    if !tx.gas_price.is_zero() {
        return Err(SafeError::GasRefund(tx.gas_price.to_string()));
    }
    let nonce = u64::try_from(tx.nonce).map_err(|_| SafeError::BadField {
        field: "nonce",
        reason: format!("{} does not fit in 64 bits", tx.nonce),
    })?;
    let amount = |v: U256| Amount::from_be_bytes(v.to_be_bytes::<32>());
    let data_len = u64::try_from(tx.data.len()).unwrap_or(u64::MAX);

    let (kind, asset, transfers, call) = if tx.operation == 1 {
        let note = {
            use alloy_sol_types::SolCall as _;
            if tx.data.get(..4) == Some(&abi::IMultiSend::multiSendCall::SELECTOR[..]) {
                "delegatecall multiSend".to_string()
            } else {
                "delegatecall".to_string()
            }
        };
        let call = Call {
            target: Some(checksummed(&tx.to)?),
            selector: selector_hex(&tx.data),
            value: amount(tx.value),
            data_len,
            note: Some(note),
        };
        (
            IntentKind::SafeDelegateCall,
            native_asset(Chain::Ethereum),
            Vec::new(),
            Some(call),
        )
    } else if tx.to == tx.safe {
        let call = Call {
            target: Some(checksummed(&tx.to)?),
            selector: selector_hex(&tx.data),
            value: amount(tx.value),
            data_len,
            note: Some(self_call_method(&tx.data).to_string()),
        };
        (
            IntentKind::SafeSelfCall,
            native_asset(Chain::Ethereum),
            Vec::new(),
            Some(call),
        )
    } else {
        let p = call_parts(ctx.tokens, Some(tx.to), tx.value, &tx.data, None)?;
        (p.kind, p.asset, p.transfers, p.call)
    };

    let hash = tx.hash();
    let safe = checksummed(&tx.safe)?;
    let intent = Intent {
        chain: Chain::Ethereum,
        network: ctx.network.clone(),
        kind,
        signer: safe.clone(),
        asset,
        transfers,
        fee: Fee {
            max: Amount::ZERO,
            detail: FeeDetail::Safe {
                safe_tx_gas: amount(tx.safe_tx_gas),
                base_gas: amount(tx.base_gas),
                gas_price: amount(tx.gas_price),
                gas_token: checksummed(&tx.gas_token)?,
                refund_receiver: checksummed(&tx.refund_receiver)?,
            },
        },
        nonce: Some(nonce),
        call,
        replay_keys: vec![format!("safe:{safe}:nonce:{nonce}")],
        to_sign: vec![SigningInput::EcdsaSecp256k1 {
            digest: hex::encode(hash),
            public_key: key.compressed_hex().to_string(),
            index: 0,
        }],
    };
    Ok(Decoded { key, hash, intent })
}

/// Decodes a SafeTx typed-data payload into an intent.
pub fn decode(payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Intent, SafeError> {
    decode_full(payload, ctx).map(|d| d.intent)
}

/// Re-decodes the payload, checks the owner signature against the SafeTx hash and the key, and
/// returns the 65-byte owner signature `r || s || v` (`v = 27 + parity`); `id` is the SafeTx
/// hash.
pub fn finalize(
    payload: &[u8],
    ctx: &DecodeContext<'_>,
    signatures: &[ProducedSignature],
) -> Result<Finalized, SafeError> {
    let decoded = decode_full(payload, ctx)?;
    let signature = single_signature(signatures)?;
    let (sig, parity) = check_signature(&decoded.hash, signature, &decoded.key)?;
    let mut signed = Vec::with_capacity(65);
    signed.extend_from_slice(sig.to_bytes().as_slice());
    signed.push(27 + u8::from(parity));
    Ok(Finalized {
        signed,
        id: format!("{:#x}", decoded.hash),
    })
}

/// Whether the payload is JSON typed data (starts with `{` after whitespace) rather than
/// transaction bytes.
pub fn looks_like_typed_data(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

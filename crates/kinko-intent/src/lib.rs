//! The intent: what an unsigned transaction does, in the terms a policy and a security officer
//! judge it by — chain, network, kind, asset, exact amounts, destinations, fee, replay guards — and
//! the exact inputs Kinko will ask the HSM to sign.
//!
//! This crate is pure (no I/O) and small on purpose: `kinko-chain` builds intents from transaction
//! bytes, `kinko-policy` evaluates them, `kinko-audit` records them, and all three agree on one
//! type and one canonical encoding.
//!
//! # Canonical encoding and digest
//!
//! Officers approve an intent by signing its [`IntentDigest`], so its encoding must be
//! deterministic and reproducible by anyone (see `docs/intents.md`):
//!
//! * the intent is serialized to JSON with the field names below;
//! * object keys are sorted by their UTF-8 bytes, no insignificant whitespace, strings escaped as
//!   `serde_json` does (only `"`, `\` and control characters), non-ASCII kept as UTF-8;
//! * 256-bit amounts are decimal strings (no exponent, no leading zeros), other integers are JSON
//!   integers below 2^64, byte strings are lowercase hex without `0x`; there are no floats;
//! * absent optional fields are `null`.
//!
//! `intent_digest = SHA-256("kinko/intent/v1\n" || canonical_json)`.
//!
//! The same bytes are what `python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin),
//! sort_keys=True, separators=(",",":"), ensure_ascii=False), end="")'` prints for the intent JSON.

#![forbid(unsafe_code)]

mod amount;
mod canonical;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use amount::{Amount, AmountError};
pub use canonical::{CanonicalError, to_canonical_json};

/// Domain tag hashed before the canonical JSON of an intent.
pub const INTENT_DIGEST_DOMAIN: &[u8] = b"kinko/intent/v1\n";

/// Largest length in bytes of an address string (bech32 addresses reach 90 characters).
pub const MAX_ADDRESS_LEN: usize = 128;

/// Errors building intent values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntentError {
    /// An address string was empty, too long, or had characters outside printable ASCII.
    #[error("invalid address {0:?}: must be 1..=128 printable ASCII characters")]
    InvalidAddress(String),
    /// A network name was empty, too long, or not `[a-z0-9-]`.
    #[error("invalid network name {0:?}: must be 1..=64 characters of [a-z0-9-]")]
    InvalidNetwork(String),
    /// The sum of the transfers does not fit in 256 bits.
    #[error("sum of transfer amounts overflows 256 bits")]
    AmountOverflow,
    /// The intent could not be encoded canonically.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// A blockchain family Kinko can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Ethereum and EVM chains (network = EIP-155 chain id in decimal).
    Ethereum,
    /// Bitcoin (network = `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`).
    Bitcoin,
    /// Solana (network = `mainnet-beta`, `devnet`, `testnet` or `localnet`).
    Solana,
}

impl Chain {
    /// The lowercase name used in files, the CLI and the canonical encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Ethereum => "ethereum",
            Chain::Bitcoin => "bitcoin",
            Chain::Solana => "solana",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Chain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ethereum" => Ok(Chain::Ethereum),
            "bitcoin" => Ok(Chain::Bitcoin),
            "solana" => Ok(Chain::Solana),
            other => Err(format!(
                "unknown chain {other:?}: expected ethereum, bitcoin or solana"
            )),
        }
    }
}

/// A network within a chain: for Ethereum the EIP-155 chain id in decimal (`"1"`), for Bitcoin
/// the network name (`"bitcoin"`, `"testnet"`, `"signet"`, `"regtest"`), for Solana the cluster.
// INVARIANT: 1..=64 characters of [a-z0-9-].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Network(String);

impl Network {
    /// Validates a network name.
    pub fn new(name: impl Into<String>) -> Result<Self, IntentError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Network(name))
        } else {
            Err(IntentError::InvalidNetwork(name))
        }
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Network::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address in its chain's canonical display form: EIP-55 checksummed hex for Ethereum,
/// bech32/base58 for Bitcoin, base58 for Solana. The decoder that builds it is responsible for
/// producing the canonical form; comparisons are exact string comparisons.
// INVARIANT: 1..=MAX_ADDRESS_LEN bytes of printable ASCII (0x21..=0x7e).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    /// Validates the character set and length of an address string.
    pub fn new(s: impl Into<String>) -> Result<Self, IntentError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX_ADDRESS_LEN
            && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if ok {
            Ok(Address(s))
        } else {
            Err(IntentError::InvalidAddress(s))
        }
    }
    /// The address string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the transaction does, as far as Kinko could read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    /// A transfer of the chain's native asset (ETH, BTC, SOL).
    Transfer,
    /// A token transfer (ERC-20 `transfer`, SPL `TransferChecked`).
    TokenTransfer,
    /// An ERC-20 `approve`: grants a spender the right to move the signer's tokens.
    TokenApprove,
    /// Anything Kinko cannot read as one of the above: other calldata, contract creation, blobs,
    /// set-code authorizations, unknown program instructions. Denied unless a rule names it.
    ContractCall,
    /// A Safe{Wallet} transaction with `operation = 1` (delegatecall): runs foreign code in the
    /// Safe's own context (the Bybit theft). Denied unless a governance rule allows it.
    SafeDelegateCall,
    /// A Safe{Wallet} transaction that calls the Safe itself: owner, threshold, module, guard,
    /// fallback handler or implementation changes. Denied unless a governance rule allows it.
    SafeSelfCall,
}

impl IntentKind {
    /// The snake_case name used in policy files and the canonical encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Transfer => "transfer",
            IntentKind::TokenTransfer => "token_transfer",
            IntentKind::TokenApprove => "token_approve",
            IntentKind::ContractCall => "contract_call",
            IntentKind::SafeDelegateCall => "safe_delegate_call",
            IntentKind::SafeSelfCall => "safe_self_call",
        }
    }
}

impl fmt::Display for IntentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The asset the transfers are denominated in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Asset {
    /// The chain's native asset.
    Native {
        /// Symbol (`ETH`, `BTC`, `SOL`).
        symbol: String,
        /// Decimals of one whole unit (18, 8, 9).
        decimals: u8,
    },
    /// A token contract (ERC-20) or mint (SPL).
    Token {
        /// The contract or mint address.
        contract: Address,
        /// Symbol from the caller's token registry; `None` when the token is not in it.
        symbol: Option<String>,
        /// Decimals from the registry (or, for SPL `TransferChecked`, from the instruction).
        decimals: Option<u8>,
    },
}

impl Asset {
    /// The symbol to show, or the contract address of an unregistered token.
    pub fn display_symbol(&self) -> String {
        match self {
            Asset::Native { symbol, .. } => symbol.clone(),
            Asset::Token {
                symbol: Some(s), ..
            } => s.clone(),
            Asset::Token { contract, .. } => format!("unregistered token {contract}"),
        }
    }
    /// Decimals, if known.
    pub fn decimals(&self) -> Option<u8> {
        match self {
            Asset::Native { decimals, .. } => Some(*decimals),
            Asset::Token { decimals, .. } => *decimals,
        }
    }
}

/// One movement of value out of the signer's control (or back to it, for change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The recipient (for `token_approve`, the spender).
    pub to: Address,
    /// Exact amount in the asset's base unit.
    pub amount: Amount,
    /// True when the output goes back to the signer's own address (Bitcoin change).
    pub change: bool,
}

/// Fee details, chain by chain, in the native asset's base unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeeDetail {
    /// Ethereum: the fee is at most `gas_limit × max_fee_per_gas` wei.
    Ethereum {
        /// Gas limit.
        gas_limit: u64,
        /// Maximum fee per gas (legacy and EIP-2930: the gas price).
        max_fee_per_gas: Amount,
        /// EIP-1559 priority fee per gas, when present.
        max_priority_fee_per_gas: Option<Amount>,
    },
    /// Safe transaction: the Safe's own refund parameters (paid from the Safe, in `gas_token`).
    Safe {
        /// `safeTxGas`.
        safe_tx_gas: Amount,
        /// `baseGas`.
        base_gas: Amount,
        /// `gasPrice`.
        gas_price: Amount,
        /// `gasToken` (the zero address means the native asset).
        gas_token: Address,
        /// `refundReceiver`.
        refund_receiver: Address,
    },
    /// Bitcoin: inputs − outputs, and the rate over the estimated virtual size.
    Bitcoin {
        /// Estimated virtual size of the signed transaction, in vbytes.
        vsize: u64,
        /// Fee rate in satoshis per 1000 vbytes (exact, rounded down).
        sat_per_kvb: u64,
    },
    /// Solana: base fee per signature and the compute-budget priority fee, if any.
    Solana {
        /// Number of signatures the message requires.
        signatures: u64,
        /// Compute-unit price in micro-lamports from a ComputeBudget instruction, if present.
        compute_unit_price_micro_lamports: Option<u64>,
        /// Compute-unit limit from a ComputeBudget instruction, if present.
        compute_unit_limit: Option<u64>,
    },
}

/// The fee the transaction can pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    /// The most the transaction can pay, in the native asset's base unit.
    pub max: Amount,
    /// How that figure was reached.
    pub detail: FeeDetail,
}

/// The call a `contract_call` (or Safe governance) intent makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The called contract or program; `None` for contract creation.
    pub target: Option<Address>,
    /// The 4-byte selector (EVM) or first instruction byte(s) (Solana), lowercase hex.
    pub selector: Option<String>,
    /// Native value sent with the call, in base units.
    pub value: Amount,
    /// Length of the calldata or instruction data in bytes.
    pub data_len: u64,
    /// A short name for what Kinko recognized (`"eip7702_authorization"`, `"contract_creation"`,
    /// `"eip4844_blob"`, `"changeThreshold"`, …), or `None`.
    pub note: Option<String>,
}

/// The signature scheme and input of one signature the HSM will produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SigningInput {
    /// ECDSA over secp256k1 on a 32-byte prehash computed by Kinko (Ethereum, Safe, BIP-143).
    EcdsaSecp256k1 {
        /// The 32-byte digest, lowercase hex.
        digest: String,
        /// The signer's public key, SEC1 compressed, lowercase hex.
        public_key: String,
        /// Which input (Bitcoin) or which signature slot (0 elsewhere).
        index: u32,
    },
    /// Ed25519 (RFC 8032 pure EdDSA) over a message (Solana: the serialized message).
    Ed25519 {
        /// The message, lowercase hex.
        message: String,
        /// The signer's 32-byte public key, lowercase hex.
        public_key: String,
        /// The signer's index among the message's signers.
        index: u32,
    },
}

/// A decoded, human-readable intent. Build it with `kinko-chain`; evaluate it with
/// `kinko-policy`; approve its [`Intent::digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The chain family.
    pub chain: Chain,
    /// The network within the chain.
    pub network: Network,
    /// What the transaction does.
    pub kind: IntentKind,
    /// The signing key's own address, derived from its public key (for a Safe: the Safe).
    pub signer: Address,
    /// The asset moved (for a contract call: the native asset of the value sent).
    pub asset: Asset,
    /// Outgoing transfers and change, in payload order.
    pub transfers: Vec<Transfer>,
    /// The fee.
    pub fee: Fee,
    /// The account nonce (Ethereum) or Safe nonce; `None` where the chain has none.
    pub nonce: Option<u64>,
    /// The call, for `contract_call`, `safe_delegate_call` and `safe_self_call` intents.
    pub call: Option<Call>,
    /// One-time resources this transaction consumes (`"nonce:<n>"`, `"safe:<addr>:nonce:<n>"`,
    /// `"outpoint:<txid>:<vout>"`, `"blockhash:<hash>"`). Two different transactions that share
    /// one under the same key conflict; the daemon signs only one of them.
    pub replay_keys: Vec<String>,
    /// What the HSM must sign, computed by Kinko from the payload.
    pub to_sign: Vec<SigningInput>,
}

impl Intent {
    /// The sum of the amounts of all non-change transfers.
    pub fn total_out(&self) -> Result<Amount, IntentError> {
        self.transfers
            .iter()
            .filter(|t| !t.change)
            .try_fold(Amount::ZERO, |acc, t| acc.checked_add(t.amount))
            .ok_or(IntentError::AmountOverflow)
    }

    /// The distinct destinations of non-change transfers, in payload order.
    pub fn destinations(&self) -> Vec<&Address> {
        let mut out: Vec<&Address> = Vec::new();
        for t in self.transfers.iter().filter(|t| !t.change) {
            if !out.contains(&&t.to) {
                out.push(&t.to);
            }
        }
        out
    }

    /// The canonical JSON bytes (see the crate documentation).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, IntentError> {
        let value =
            serde_json::to_value(self).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
        Ok(to_canonical_json(&value)?)
    }

    /// `SHA-256("kinko/intent/v1\n" || canonical_json)`.
    pub fn digest(&self) -> Result<IntentDigest, IntentError> {
        let bytes = self.canonical_bytes()?;
        Ok(IntentDigest::of_canonical_bytes(&bytes))
    }

    /// A multi-line rendering for people: what an officer reads before approving.
    pub fn render(&self) -> String {
        use fmt::Write as _;
        let mut s = String::new();
        let dec = self.asset.decimals();
        let sym = self.asset.display_symbol();
        let fmt_amount = |a: &Amount| match dec {
            Some(d) => format!("{} {sym}", a.format_units(d)),
            None => format!("{a} base units of {sym}"),
        };
        let native = native_asset(self.chain);
        let _ = writeln!(s, "chain:    {} (network {})", self.chain, self.network);
        let _ = writeln!(s, "kind:     {}", self.kind);
        let _ = writeln!(s, "signer:   {}", self.signer);
        if let Asset::Token { contract, .. } = &self.asset {
            let _ = writeln!(s, "token:    {} ({contract})", sym);
        }
        for t in &self.transfers {
            let label = if t.change {
                "change: "
            } else if self.kind == IntentKind::TokenApprove {
                "approve:"
            } else {
                "send:   "
            };
            let _ = writeln!(s, "{label}  {} -> {}", fmt_amount(&t.amount), t.to);
        }
        if let Some(c) = &self.call {
            let target = c
                .target
                .as_ref()
                .map_or("(contract creation)".to_string(), |t| t.to_string());
            let _ = writeln!(
                s,
                "call:     target {target}, selector {}, {} data bytes, value {}{}",
                c.selector.as_deref().unwrap_or("-"),
                c.data_len,
                c.value,
                c.note.as_ref().map_or(String::new(), |n| format!(" [{n}]")),
            );
        }
        let (nsym, ndec) = match &native {
            Asset::Native { symbol, decimals } => (symbol.clone(), *decimals),
            Asset::Token { .. } => (String::new(), 0),
        };
        let _ = writeln!(s, "max fee:  {} {nsym}", self.fee.max.format_units(ndec));
        if let Some(n) = self.nonce {
            let _ = writeln!(s, "nonce:    {n}");
        }
        s
    }
}

/// The native asset of a chain (symbol and decimals).
pub fn native_asset(chain: Chain) -> Asset {
    let (symbol, decimals) = match chain {
        Chain::Ethereum => ("ETH", 18),
        Chain::Bitcoin => ("BTC", 8),
        Chain::Solana => ("SOL", 9),
    };
    Asset::Native {
        symbol: symbol.to_string(),
        decimals,
    }
}

/// The SHA-256 digest of an intent's canonical encoding under [`INTENT_DIGEST_DOMAIN`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntentDigest(pub [u8; 32]);

impl IntentDigest {
    /// Hashes canonical intent bytes under the domain tag.
    pub fn of_canonical_bytes(bytes: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(INTENT_DIGEST_DOMAIN);
        h.update(bytes);
        IntentDigest(h.finalize().into())
    }
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(IntentDigest(out))
    }
}

impl fmt::Debug for IntentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntentDigest({})", self.to_hex())
    }
}

impl fmt::Display for IntentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for IntentDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IntentDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IntentDigest::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// A token the caller knows: the registry `kinko-chain` uses to name ERC-20 and SPL tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    /// Symbol, e.g. `USDC`.
    pub symbol: String,
    /// Decimals of one whole token.
    pub decimals: u8,
}

/// Tokens by chain and contract (mint) address. Ethereum contracts are looked up by their
/// lowercase hex form, so callers may register them in any case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRegistry {
    tokens: BTreeMap<(Chain, String), TokenInfo>,
}

impl TokenRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    fn key(chain: Chain, contract: &str) -> (Chain, String) {
        match chain {
            Chain::Ethereum => (chain, contract.to_ascii_lowercase()),
            _ => (chain, contract.to_string()),
        }
    }
    /// Adds or replaces a token.
    pub fn insert(&mut self, chain: Chain, contract: &str, info: TokenInfo) {
        self.tokens.insert(Self::key(chain, contract), info);
    }
    /// Looks a token up.
    pub fn get(&self, chain: Chain, contract: &str) -> Option<&TokenInfo> {
        self.tokens.get(&Self::key(chain, contract))
    }
}

#[cfg(test)]
mod tests;

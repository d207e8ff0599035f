//! Solana: legacy and v0 messages, signed with Ed25519.
//!
//! # Why a hand-written parser
//!
//! The wire format is small and documented (<https://solana.com/docs/core/transactions>): a
//! compact-u16 ("shortvec") length prefix, a three-byte header, account keys, the recent
//! blockhash, compiled instructions and, for v0, address-table lookups. Solana's own
//! `solana-message` crates are light, but they deserialize through `wincode`/`bincode` into types
//! built for the runtime and accept what the runtime accepts; for the untrusted-input parser of a
//! signer we want every length bounded *before* allocation, every rule we rely on (canonical
//! shortvec, no trailing bytes, no duplicate keys, indices in range) checked in one place we
//! control and fuzz, and no dependency churn on the signing path. The parser below is ~200 lines
//! and is cross-checked against a real mainnet transaction in the tests.
//!
//! # What is accepted
//!
//! * The payload is the serialized **message** (what the signature covers), legacy or v0 (`0x80`
//!   prefix), or the **unsigned transaction** in wire format, as `@solana/web3.js`
//!   (`serialize({requireAllSignatures: false})`) and solders produce it: `shortvec(count)`,
//!   `count` 64-byte signature slots, then the message. In the transaction the count must equal
//!   the header's `num_required_signatures` ([`SolanaError::SignatureSlotCount`]) and every slot
//!   must be all zeros ([`SolanaError::PartiallySigned`]: Kinko never co-signs a transaction
//!   someone else signed first). Either way the message is what is decoded and signed, so both
//!   forms of one message give the same intent (and digest). Other versions, trailing bytes
//!   (after the message, in either form), truncation, non-canonical shortvecs, duplicate
//!   account keys, out-of-range indices and messages whose signed transaction would exceed the
//!   1232-byte packet limit are refused.
//! * The signing key (32 bytes, `ctx.public_key`) must be account 0: the **fee payer**. It must be
//!   the only required signer: Kinko produces one signature and a transaction that needs another
//!   signer's signature could not be broadcast.
//! * The network is the cluster name from the context (`mainnet-beta`, `devnet`, `testnet`,
//!   `localnet`); a message does not name its cluster.
//!
//! # Instructions
//!
//! * System Program `Transfer` (index 2, `u64` lamports): the source must be the signing key.
//!   A Transfer with extra data bytes or accounts is refused, not shown as a call: the runtime
//!   ignores trailing bytes, so it would still move lamports. Likewise for `TransferChecked`.
//! * SPL Token / Token-2022 `TransferChecked` (index 12, `u64` amount, `u8` decimals; accounts
//!   source, mint, destination, owner): the owner must be the signing key. The asset is the mint,
//!   named from the token registry; the decimals come from the instruction and must agree with
//!   the registry when the mint is registered. The destination is the *token account*, not its
//!   owner's wallet address.
//! * ComputeBudget `SetComputeUnitLimit` / `SetComputeUnitPrice` feed the fee;
//!   `RequestHeapFrame` and `SetLoadedAccountsDataSizeLimit` are accepted and ignored. A
//!   repeated compute-budget instruction is refused (the runtime refuses it too).
//! * Any other instruction makes the intent a `contract_call` naming the first undecoded program.
//!   Native transfers found beside it are still listed; token transfers beside it are not (an
//!   intent has one asset), the call note says how many instructions were not decoded.
//! * Only SOL transfers → `transfer`; only `TransferChecked` of one mint → `token_transfer`;
//!   SOL and token transfers, or two mints, in one message are refused (one asset per intent).
//!
//! # Address lookup tables (v0)
//!
//! Accounts loaded from a lookup table are only known by reading the table on chain, which an
//! offline signer cannot do. A transfer whose destination, source, owner or mint comes from a
//! lookup table is **refused** ([`SolanaError::LookupTableAccount`]) rather than shown as a
//! contract call, so that no intent ever shows a transfer to an unknown address. Other
//! instructions may reference table accounts (they are contract calls anyway).
//!
//! # Fee
//!
//! `fee.max = 5000 × signatures + ceil(compute_unit_price × limit / 1 000 000)` lamports, where
//! `limit` is the `SetComputeUnitLimit` value (capped at 1 400 000, as the runtime does) or, when
//! absent, 200 000 per non-compute-budget instruction capped at 1 400 000. That default is the
//! runtime's historical one and an upper bound of the newer defaults, so `fee.max` stays a
//! maximum.
//!
//! # Replay key
//!
//! A recent blockhash is not a one-time resource: any number of different transactions may
//! share it. Only the transaction itself is, so the key is
//! `blockhash:<base58 blockhash>:message:<hex SHA-256 of the message>`: two withdrawals sharing a
//! blockhash conflict only when they are the same message (re-signing it would yield the same
//! transaction and signature). A **durable nonce** is one-time: when the first instruction is
//! System `AdvanceNonceAccount` on a writable account (the runtime's rule), the blockhash field
//! is that account's stored nonce and only one transaction can consume it, so the key is
//! `nonce-account:<base58 account>:nonce:<base58 nonce>` and any two messages consuming the same
//! nonce conflict. A nonce account loaded from a lookup table cannot be named offline and is
//! refused ([`SolanaError::NonceAccountFromLookupTable`]).
//!
//! # Finalizing
//!
//! One [`ProducedSignature::Ed25519`], verified (strictly) against the message and the key; the
//! transaction is `shortvec(1) || signature || message` (the key is the only signer, slot 0)
//! whichever form the payload had, and its id the base58 signature.

use ed25519_dalek::{Signature, VerifyingKey};
use kinko_intent::{
    Address, Amount, Asset, Call, Chain, Fee, FeeDetail, Intent, IntentKind, SigningInput,
    Transfer, native_asset,
};

use crate::{DecodeContext, Finalized, ProducedSignature};

/// Solana's maximum transaction size (`PACKET_DATA_SIZE`): signatures and message together.
pub const MAX_TRANSACTION_LEN: usize = 1232;
/// Lamports charged per signature.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5000;
/// Default compute-unit limit per non-compute-budget instruction.
pub const DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT: u64 = 200_000;
/// Maximum compute-unit limit of a transaction.
pub const MAX_COMPUTE_UNIT_LIMIT: u64 = 1_400_000;

/// The System Program.
pub const SYSTEM_PROGRAM: &str = "11111111111111111111111111111111";
/// The SPL Token program.
pub const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// The SPL Token-2022 program.
pub const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
/// The ComputeBudget program.
pub const COMPUTE_BUDGET_PROGRAM: &str = "ComputeBudget111111111111111111111111111111";

const SYSTEM_TRANSFER: u32 = 2;
const SYSTEM_ADVANCE_NONCE_ACCOUNT: u32 = 4;
const TOKEN_TRANSFER_CHECKED: u8 = 12;

/// Why a Solana payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SolanaError {
    /// The cluster name is not `mainnet-beta`, `devnet`, `testnet` or `localnet`.
    #[error("unknown solana cluster {0:?}: expected mainnet-beta, devnet, testnet or localnet")]
    UnknownNetwork(String),
    /// The signing key is not a 32-byte Ed25519 public key.
    #[error("invalid signer public key: {0}")]
    InvalidPublicKey(String),
    /// The message ended before a field was complete.
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes follow the end of the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The unsigned wire transaction's signature count differs from the message's
    /// `num_required_signatures`.
    #[error(
        "the transaction has {slots} signature slot(s) but its message requires {required} signature(s)"
    )]
    SignatureSlotCount {
        /// The transaction's signature count.
        slots: usize,
        /// The message header's `num_required_signatures`.
        required: u8,
    },
    /// A signature slot of the wire transaction is not all zeros: it is partially signed.
    #[error(
        "signature slot {0} is not empty: the transaction is partially signed, and Kinko never co-signs a transaction someone else signed first; send it unsigned (all slots zero) or as the bare message"
    )]
    PartiallySigned(usize),
    /// A compact-u16 length is non-canonical or exceeds `u16::MAX`.
    #[error("invalid compact-u16 length while reading {0}")]
    InvalidShortVec(&'static str),
    /// The message is a versioned message of a version other than 0.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u8),
    /// The signed transaction would exceed [`MAX_TRANSACTION_LEN`] bytes.
    #[error("the signed transaction would be {0} bytes, over the {MAX_TRANSACTION_LEN}-byte limit")]
    TooLarge(usize),
    /// The header is inconsistent with the account keys.
    #[error("invalid message header: {0}")]
    InvalidHeader(&'static str),
    /// An account key appears twice.
    #[error("account key {0} appears more than once")]
    DuplicateAccount(String),
    /// An index points past the accounts.
    #[error("instruction {instruction}: account index {account_index} out of range")]
    AccountIndexOutOfRange {
        /// The instruction.
        instruction: usize,
        /// The bad index.
        account_index: u8,
    },
    /// A program id is not a static account key, or is the fee payer.
    #[error("instruction {0}: invalid program id index")]
    InvalidProgramIndex(usize),
    /// The signing key is not the fee payer (account 0).
    #[error("the fee payer {payer} is not the signing key {key}")]
    PayerNotSigner {
        /// The message's fee payer.
        payer: String,
        /// The signing key's address.
        key: String,
    },
    /// The message requires signatures from keys other than the signing key.
    #[error("the message requires {0} signatures; Kinko signs transactions with one signer only")]
    OtherSignersRequired(u8),
    /// The message has no instructions.
    #[error("the message has no instructions")]
    NoInstructions,
    /// A transfer's source (or a token transfer's owner) is not the signing key.
    #[error("instruction {0}: the transfer's source/owner is not the signing key")]
    SourceNotSigner(usize),
    /// The durable-nonce account (first instruction `AdvanceNonceAccount`) is loaded from an
    /// address lookup table, so the replay guard could not name it.
    #[error(
        "the durable-nonce account comes from an address lookup table and cannot be resolved offline"
    )]
    NonceAccountFromLookupTable,
    /// A transfer references an account loaded from an address lookup table.
    #[error(
        "instruction {0}: a transfer account comes from an address lookup table and cannot be resolved offline"
    )]
    LookupTableAccount(usize),
    /// The data or accounts of a recognized instruction are malformed.
    #[error("instruction {0}: malformed {1} instruction")]
    MalformedInstruction(usize, &'static str),
    /// A ComputeBudget instruction appears twice.
    #[error("instruction {0}: duplicate compute-budget instruction")]
    DuplicateComputeBudget(usize),
    /// Transfers of different assets in one message.
    #[error("the message moves more than one asset (SOL and tokens, or several mints)")]
    MixedAssets,
    /// The instruction's decimals disagree with the token registry.
    #[error("mint {mint}: instruction says {instruction} decimals, the registry says {registry}")]
    DecimalsMismatch {
        /// The mint.
        mint: String,
        /// Decimals in the instruction.
        instruction: u8,
        /// Decimals in the registry.
        registry: u8,
    },
    /// An amount sum overflowed.
    #[error("amount overflow")]
    AmountOverflow,
    /// `finalize` did not get exactly one Ed25519 signature.
    #[error(
        "expected exactly one Ed25519 signature, got {0} signature(s) of the wrong kind or count"
    )]
    SignatureCount(usize),
    /// The signature does not verify against the message and the signing key.
    #[error("the signature does not verify against the message and the signing key")]
    InvalidSignature,
}

/// Base58 (Bitcoin alphabet), as Solana renders keys, blockhashes and signatures.
pub fn base58(bytes: &[u8]) -> String {
    bitcoin::base58::encode(bytes)
}

/// A reader over the message bytes that never reads past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self, what: &'static str) -> Result<u8, SolanaError> {
        let (&b, rest) = self.buf.split_first().ok_or(SolanaError::Truncated(what))?;
        self.buf = rest;
        Ok(b)
    }
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SolanaError> {
        if self.buf.len() < n {
            return Err(SolanaError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn key(&mut self, what: &'static str) -> Result<[u8; 32], SolanaError> {
        let b = self.bytes(32, what)?;
        let mut k = [0u8; 32];
        k.copy_from_slice(b);
        Ok(k)
    }
    /// Compact-u16: 1–3 bytes, 7 bits each, little-endian, canonical (Solana `short_vec`).
    fn shortvec(&mut self, what: &'static str) -> Result<usize, SolanaError> {
        let mut value: u32 = 0;
        for i in 0..3u32 {
            let b = self.u8(what)?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // A zero final byte after a continuation is an alias of a shorter encoding.
                if i > 0 && b == 0 {
                    return Err(SolanaError::InvalidShortVec(what));
                }
                return usize::try_from(value)
                    .ok()
                    .filter(|v| *v <= usize::from(u16::MAX))
                    .ok_or(SolanaError::InvalidShortVec(what));
            }
        }
        Err(SolanaError::InvalidShortVec(what))
    }
    /// A shortvec-prefixed byte string, the length checked against what is left first.
    fn vec(&mut self, what: &'static str) -> Result<&'a [u8], SolanaError> {
        let n = self.shortvec(what)?;
        self.bytes(n, what)
    }
}

/// One compiled instruction.
#[derive(Debug, Clone)]
struct CompiledInstruction<'a> {
    program_index: u8,
    accounts: &'a [u8],
    data: &'a [u8],
}

/// A parsed message (legacy or v0).
#[derive(Debug, Clone)]
struct Message<'a> {
    num_required_signatures: u8,
    num_readonly_signed: u8,
    num_readonly_unsigned: u8,
    keys: Vec<[u8; 32]>,
    recent_blockhash: [u8; 32],
    instructions: Vec<CompiledInstruction<'a>>,
    /// Number of accounts loaded from lookup tables (indices `keys.len()..`).
    lookup_accounts: usize,
}

/// Reads one message from the start of `bytes`; returns it and its length in bytes. Neither
/// trailing bytes nor the structural rules ([`sanitize`]) are checked here.
fn parse_message_prefix(bytes: &[u8]) -> Result<(Message<'_>, usize), SolanaError> {
    let mut r = Reader { buf: bytes };
    let first = r.u8("header")?;
    let (versioned, num_required_signatures) = if first & 0x80 != 0 {
        let version = first & 0x7f;
        if version != 0 {
            return Err(SolanaError::UnsupportedVersion(version));
        }
        (true, r.u8("header")?)
    } else {
        (false, first)
    };
    let num_readonly_signed = r.u8("header")?;
    let num_readonly_unsigned = r.u8("header")?;

    let n_keys = r.shortvec("account keys")?;
    // Bound the allocation by what is left: each key is 32 bytes.
    if n_keys.saturating_mul(32) > r.buf.len() {
        return Err(SolanaError::Truncated("account keys"));
    }
    let mut keys = Vec::with_capacity(n_keys);
    for _ in 0..n_keys {
        keys.push(r.key("account keys")?);
    }
    let recent_blockhash = r.key("recent blockhash")?;

    let n_ix = r.shortvec("instructions")?;
    // Each instruction takes at least 3 bytes.
    if n_ix.saturating_mul(3) > r.buf.len() {
        return Err(SolanaError::Truncated("instructions"));
    }
    let mut instructions = Vec::with_capacity(n_ix);
    for _ in 0..n_ix {
        let program_index = r.u8("instruction program id")?;
        let accounts = r.vec("instruction accounts")?;
        let data = r.vec("instruction data")?;
        instructions.push(CompiledInstruction {
            program_index,
            accounts,
            data,
        });
    }

    let mut lookup_accounts: usize = 0;
    if versioned {
        let n_lookups = r.shortvec("address table lookups")?;
        // Each lookup takes at least 34 bytes.
        if n_lookups.saturating_mul(34) > r.buf.len() {
            return Err(SolanaError::Truncated("address table lookups"));
        }
        for _ in 0..n_lookups {
            let _table = r.key("address table key")?;
            let writable = r.vec("writable indexes")?;
            let readonly = r.vec("readonly indexes")?;
            lookup_accounts = lookup_accounts
                .checked_add(writable.len())
                .and_then(|n| n.checked_add(readonly.len()))
                .ok_or(SolanaError::InvalidHeader("too many accounts"))?;
        }
    }
    let msg = Message {
        num_required_signatures,
        num_readonly_signed,
        num_readonly_unsigned,
        keys,
        recent_blockhash,
        instructions,
        lookup_accounts,
    };
    Ok((msg, bytes.len() - r.buf.len()))
}

/// Parses a complete message: no trailing bytes, structurally sane.
fn parse_message(bytes: &[u8]) -> Result<Message<'_>, SolanaError> {
    let (msg, len) = parse_message_prefix(bytes)?;
    if len != bytes.len() {
        return Err(SolanaError::TrailingBytes(bytes.len() - len));
    }
    sanitize(&msg)?;
    Ok(msg)
}

/// Parses the payload in either accepted form and returns the message and its exact bytes
/// (what the signature covers).
///
/// * A payload that is a complete, valid message is the **bare message**.
/// * Otherwise it is read as an unsigned **wire transaction** (`@solana/web3.js`
///   `serialize({requireAllSignatures: false})`, solders): `shortvec(count) || count × 64-byte
///   signature slots || message`. With `count ≥ 1` all-zero slots it is one: the count must equal
///   the message's `num_required_signatures` and nothing may follow the message. A transaction
///   with a non-empty slot (or no slot) that is otherwise complete and valid is refused as
///   [`SolanaError::PartiallySigned`] (or [`SolanaError::SignatureSlotCount`]).
/// * Anything else is refused with the error of the bare-message reading.
///
/// The two readings never both accept one payload: all-zero slots put three zero bytes after the
/// first, which as a bare message is a header followed by zero account keys, refused by
/// [`sanitize`] (at least one signer). A payload that reads as a bare message is decoded and
/// signed as exactly that message, so the intent always describes the signed bytes.
fn parse_payload(payload: &[u8]) -> Result<(Message<'_>, &[u8]), SolanaError> {
    let bare_error = match parse_message(payload) {
        Ok(msg) => return Ok((msg, payload)),
        Err(e) => e,
    };
    let mut r = Reader { buf: payload };
    let Ok(count) = r.shortvec("signature count") else {
        return Err(bare_error);
    };
    // count ≤ u16::MAX, so 64 × count fits a usize.
    let Ok(slots) = r.bytes(64 * count, "signature slots") else {
        return Err(bare_error);
    };
    let rest = r.buf;
    let first_signed = slots
        .chunks_exact(64)
        .position(|slot| slot.iter().any(|&b| b != 0));
    if count == 0 || first_signed.is_some() {
        // Taken for a transaction only when the rest is a complete, valid message (the slots
        // of a malformed bare message are rarely all zero, but its tail often starts a message).
        return Err(match (parse_message(rest), first_signed) {
            (Ok(msg), _) if count == 0 => SolanaError::SignatureSlotCount {
                slots: 0,
                required: msg.num_required_signatures,
            },
            (Ok(msg), Some(slot)) if count == usize::from(msg.num_required_signatures) => {
                SolanaError::PartiallySigned(slot)
            }
            _ => bare_error,
        });
    }
    // count ≥ 1 all-zero slots: the unsigned transaction (never a valid bare message).
    let (msg, len) = parse_message_prefix(rest)?;
    if count != usize::from(msg.num_required_signatures) {
        return Err(SolanaError::SignatureSlotCount {
            slots: count,
            required: msg.num_required_signatures,
        });
    }
    if len != rest.len() {
        return Err(SolanaError::TrailingBytes(rest.len() - len));
    }
    sanitize(&msg)?;
    Ok((
        msg,
        rest.get(..len).ok_or(SolanaError::Truncated("message"))?,
    ))
}

/// Structural rules (those of Solana's `Message::sanitize`, plus no duplicate keys).
fn sanitize(m: &Message<'_>) -> Result<(), SolanaError> {
    let n_static = m.keys.len();
    if m.num_required_signatures == 0 {
        return Err(SolanaError::InvalidHeader("no required signatures"));
    }
    if m.num_readonly_signed >= m.num_required_signatures {
        return Err(SolanaError::InvalidHeader(
            "the fee payer must be writable (readonly signed ≥ required signatures)",
        ));
    }
    let header_accounts =
        usize::from(m.num_required_signatures) + usize::from(m.num_readonly_unsigned);
    if header_accounts > n_static {
        return Err(SolanaError::InvalidHeader(
            "more signers and readonly accounts than account keys",
        ));
    }
    let total = n_static
        .checked_add(m.lookup_accounts)
        .filter(|t| *t <= 256)
        .ok_or(SolanaError::InvalidHeader("more than 256 accounts"))?;
    let mut sorted = m.keys.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(SolanaError::DuplicateAccount(base58(&w[0])));
    }
    for (i, ix) in m.instructions.iter().enumerate() {
        let p = usize::from(ix.program_index);
        if p == 0 || p >= n_static {
            return Err(SolanaError::InvalidProgramIndex(i));
        }
        if let Some(&bad) = ix.accounts.iter().find(|&&a| usize::from(a) >= total) {
            return Err(SolanaError::AccountIndexOutOfRange {
                instruction: i,
                account_index: bad,
            });
        }
    }
    Ok(())
}

/// Everything decoding established.
struct Decoded<'a> {
    key: VerifyingKey,
    intent: Intent,
    /// The message bytes (the payload, or the message inside the unsigned transaction).
    message: &'a [u8],
    /// The message's `num_required_signatures`: the signature slots of the transaction.
    num_signatures: usize,
    /// The signing key's slot: its index among the account keys (always 0, the fee payer).
    slot: usize,
}

fn check_cluster(name: &str) -> Result<(), SolanaError> {
    match name {
        "mainnet-beta" | "devnet" | "testnet" | "localnet" => Ok(()),
        other => Err(SolanaError::UnknownNetwork(other.to_string())),
    }
}

fn address(key: &[u8; 32]) -> Result<Address, SolanaError> {
    // A base58 32-byte key is at most 44 ASCII characters: always a valid Address.
    Address::new(base58(key)).map_err(|e| SolanaError::InvalidPublicKey(e.to_string()))
}

fn le_u64(b: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

fn le_u32(b: &[u8]) -> Option<u32> {
    let arr: [u8; 4] = b.try_into().ok()?;
    Some(u32::from_le_bytes(arr))
}

/// A transfer found in the message.
struct TokenMove {
    mint: [u8; 32],
    decimals: u8,
    transfer: Transfer,
}

fn decode_inner<'a>(
    payload: &'a [u8],
    ctx: &DecodeContext<'_>,
) -> Result<Decoded<'a>, SolanaError> {
    check_cluster(ctx.network.as_str())?;
    let key_bytes: [u8; 32] = ctx.public_key.try_into().map_err(|_| {
        SolanaError::InvalidPublicKey(format!("expected 32 bytes, got {}", ctx.public_key.len()))
    })?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| SolanaError::InvalidPublicKey("not an Ed25519 point".to_string()))?;

    let (m, message) = parse_payload(payload)?;
    // The signed transaction: shortvec(count) (1 byte below 128) + 64 bytes per signature.
    let tx_len = 1usize
        .checked_add(64 * usize::from(m.num_required_signatures))
        .and_then(|n| n.checked_add(message.len()))
        .ok_or(SolanaError::TooLarge(usize::MAX))?;
    if tx_len > MAX_TRANSACTION_LEN {
        return Err(SolanaError::TooLarge(tx_len));
    }
    let payer = m
        .keys
        .first()
        .ok_or(SolanaError::InvalidHeader("no accounts"))?;
    if *payer != key_bytes {
        return Err(SolanaError::PayerNotSigner {
            payer: base58(payer),
            key: base58(&key_bytes),
        });
    }
    if m.num_required_signatures != 1 {
        return Err(SolanaError::OtherSignersRequired(m.num_required_signatures));
    }
    if m.instructions.is_empty() {
        return Err(SolanaError::NoInstructions);
    }

    let n_static = m.keys.len();
    let names: Vec<String> = m.keys.iter().map(|k| base58(k)).collect();
    // Resolves a static account; `None` when it comes from a lookup table.
    let static_key = |idx: u8| m.keys.get(usize::from(idx));

    let mut sol_transfers: Vec<Transfer> = Vec::new();
    let mut token_moves: Vec<TokenMove> = Vec::new();
    let mut undecoded: Vec<usize> = Vec::new();
    let mut cu_limit: Option<u64> = None;
    let mut cu_price: Option<u64> = None;
    let mut seen_heap = false;
    let mut seen_loaded = false;
    let mut non_budget_instructions: u64 = 0;

    for (i, ix) in m.instructions.iter().enumerate() {
        let program = names
            .get(usize::from(ix.program_index))
            .ok_or(SolanaError::InvalidProgramIndex(i))?;
        match program.as_str() {
            COMPUTE_BUDGET_PROGRAM => {
                let bad = || SolanaError::MalformedInstruction(i, "ComputeBudget");
                let (&tag, rest) = ix.data.split_first().ok_or_else(bad)?;
                let (slot, value): (&mut bool, Option<u64>) = match tag {
                    1 => (&mut seen_heap, le_u32(rest).map(u64::from)),
                    2 => {
                        let v = le_u32(rest).map(u64::from).ok_or_else(bad)?;
                        if cu_limit.replace(v).is_some() {
                            return Err(SolanaError::DuplicateComputeBudget(i));
                        }
                        continue;
                    }
                    3 => {
                        let v = le_u64(rest).ok_or_else(bad)?;
                        if cu_price.replace(v).is_some() {
                            return Err(SolanaError::DuplicateComputeBudget(i));
                        }
                        continue;
                    }
                    4 => (&mut seen_loaded, le_u32(rest).map(u64::from)),
                    _ => return Err(bad()),
                };
                if value.is_none() {
                    return Err(bad());
                }
                if std::mem::replace(slot, true) {
                    return Err(SolanaError::DuplicateComputeBudget(i));
                }
            }
            SYSTEM_PROGRAM if ix.data.get(..4).and_then(le_u32) == Some(SYSTEM_TRANSFER) => {
                non_budget_instructions += 1;
                // Exactly index + u64: the runtime ignores trailing bytes, so a longer Transfer
                // would still move lamports; it is refused rather than shown as a call.
                let lamports = ix
                    .data
                    .get(4..)
                    .and_then(le_u64)
                    .ok_or(SolanaError::MalformedInstruction(i, "system transfer"))?;
                let [from, to] = ix.accounts else {
                    return Err(SolanaError::MalformedInstruction(i, "system transfer"));
                };
                let to_key = static_key(*to).ok_or(SolanaError::LookupTableAccount(i))?;
                if *from != 0 {
                    return Err(if usize::from(*from) >= n_static {
                        SolanaError::LookupTableAccount(i)
                    } else {
                        SolanaError::SourceNotSigner(i)
                    });
                }
                sol_transfers.push(Transfer {
                    to: address(to_key)?,
                    amount: Amount::from_u64(lamports),
                    change: *to_key == key_bytes,
                });
            }
            TOKEN_PROGRAM | TOKEN_2022_PROGRAM
                if ix.data.first() == Some(&TOKEN_TRANSFER_CHECKED) =>
            {
                non_budget_instructions += 1;
                // Exactly tag + u64 amount + u8 decimals.
                let bad = || SolanaError::MalformedInstruction(i, "TransferChecked");
                let (amount, decimals) = match ix.data.get(1..) {
                    Some(rest) if rest.len() == 9 => {
                        let (a, d) = rest.split_at(8);
                        (le_u64(a).ok_or_else(bad)?, *d.first().ok_or_else(bad)?)
                    }
                    _ => return Err(bad()),
                };
                // Exactly source, mint, destination, owner (no multisig signers).
                let [source, mint, dest, owner] = ix.accounts else {
                    return Err(SolanaError::MalformedInstruction(i, "TransferChecked"));
                };
                let resolve = |a: &u8| static_key(*a).ok_or(SolanaError::LookupTableAccount(i));
                let _source = resolve(source)?;
                let mint_key = resolve(mint)?;
                let dest_key = resolve(dest)?;
                let owner_key = resolve(owner)?;
                if *owner_key != key_bytes {
                    return Err(SolanaError::SourceNotSigner(i));
                }
                token_moves.push(TokenMove {
                    mint: *mint_key,
                    decimals,
                    transfer: Transfer {
                        to: address(dest_key)?,
                        amount: Amount::from_u64(amount),
                        change: false,
                    },
                });
            }
            _ => {
                non_budget_instructions += 1;
                undecoded.push(i);
            }
        }
    }

    // Fee.
    let limit = cu_limit
        .unwrap_or_else(|| {
            non_budget_instructions.saturating_mul(DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT)
        })
        .min(MAX_COMPUTE_UNIT_LIMIT);
    let priority: u128 = match cu_price {
        Some(price) => (u128::from(price) * u128::from(limit)).div_ceil(1_000_000),
        None => 0,
    };
    let signatures = u64::from(m.num_required_signatures);
    let base = u128::from(signatures) * u128::from(LAMPORTS_PER_SIGNATURE);
    let fee_max = base
        .checked_add(priority)
        .ok_or(SolanaError::AmountOverflow)?;
    let fee = Fee {
        max: Amount::from_u128(fee_max),
        detail: FeeDetail::Solana {
            signatures,
            compute_unit_price_micro_lamports: cu_price,
            compute_unit_limit: cu_limit,
        },
    };

    // Kind, asset, transfers.
    let (kind, asset, transfers, call) = if let Some(&first) = undecoded.first() {
        let ix = m
            .instructions
            .get(first)
            .ok_or(SolanaError::InvalidProgramIndex(first))?;
        let program = m
            .keys
            .get(usize::from(ix.program_index))
            .ok_or(SolanaError::InvalidProgramIndex(first))?;
        let decoded_tokens = token_moves.len();
        let note = format!(
            "{} of {} instructions not decoded{}",
            undecoded.len(),
            m.instructions.len(),
            if decoded_tokens > 0 {
                format!("; {decoded_tokens} token transfer(s) not listed")
            } else {
                String::new()
            }
        );
        let call = Call {
            target: Some(address(program)?),
            selector: ix.data.first().map(|b| hex::encode([*b])),
            value: Amount::ZERO,
            data_len: ix.data.len() as u64,
            note: Some(note),
        };
        (
            IntentKind::ContractCall,
            native_asset(Chain::Solana),
            sol_transfers,
            Some(call),
        )
    } else if token_moves.is_empty() {
        (
            IntentKind::Transfer,
            native_asset(Chain::Solana),
            sol_transfers,
            None,
        )
    } else {
        if !sol_transfers.is_empty() {
            return Err(SolanaError::MixedAssets);
        }
        let (mint, decimals) = match token_moves.first() {
            Some(t) => (t.mint, t.decimals),
            None => return Err(SolanaError::MixedAssets),
        };
        if token_moves
            .iter()
            .any(|t| t.mint != mint || t.decimals != decimals)
        {
            return Err(SolanaError::MixedAssets);
        }
        let mint_addr = address(&mint)?;
        let symbol = match ctx.tokens.get(Chain::Solana, mint_addr.as_str()) {
            Some(info) if info.decimals != decimals => {
                return Err(SolanaError::DecimalsMismatch {
                    mint: mint_addr.to_string(),
                    instruction: decimals,
                    registry: info.decimals,
                });
            }
            Some(info) => Some(info.symbol.clone()),
            None => None,
        };
        (
            IntentKind::TokenTransfer,
            Asset::Token {
                contract: mint_addr,
                symbol,
                decimals: Some(decimals),
            },
            token_moves.into_iter().map(|t| t.transfer).collect(),
            None,
        )
    };

    let intent = Intent {
        chain: Chain::Solana,
        network: ctx.network.clone(),
        kind,
        signer: address(&key_bytes)?,
        asset,
        transfers,
        fee,
        nonce: None,
        call,
        replay_keys: vec![replay_key(&m, message)?],
        to_sign: vec![SigningInput::Ed25519 {
            message: hex::encode(message),
            public_key: hex::encode(key_bytes),
            index: 0,
        }],
    };
    Ok(Decoded {
        key,
        intent,
        message,
        num_signatures: usize::from(m.num_required_signatures),
        slot: 0,
    })
}

/// The one-time resource a message consumes (see the module documentation, "Replay key").
fn replay_key(m: &Message<'_>, message: &[u8]) -> Result<String, SolanaError> {
    if let Some(account) = durable_nonce_account(m)? {
        return Ok(format!(
            "nonce-account:{}:nonce:{}",
            base58(account),
            base58(&m.recent_blockhash)
        ));
    }
    use sha2::Digest as _;
    Ok(format!(
        "blockhash:{}:message:{}",
        base58(&m.recent_blockhash),
        hex::encode(sha2::Sha256::digest(message))
    ))
}

/// The durable-nonce account, as the runtime finds it (`get_durable_nonce`): the first
/// instruction is a System Program `AdvanceNonceAccount` (its data read as bincode, trailing
/// bytes ignored) and its first account is writable. A table-loaded nonce account is refused.
fn durable_nonce_account<'m>(m: &'m Message<'_>) -> Result<Option<&'m [u8; 32]>, SolanaError> {
    let Some(ix) = m.instructions.first() else {
        return Ok(None);
    };
    let is_system = m
        .keys
        .get(usize::from(ix.program_index))
        .is_some_and(|p| base58(p) == SYSTEM_PROGRAM);
    if !is_system || ix.data.get(..4).and_then(le_u32) != Some(SYSTEM_ADVANCE_NONCE_ACCOUNT) {
        return Ok(None);
    }
    let Some(&idx) = ix.accounts.first() else {
        return Ok(None);
    };
    let idx = usize::from(idx);
    let Some(account) = m.keys.get(idx) else {
        // Accounts from tables come after the static keys: writable ones first.
        return Err(SolanaError::NonceAccountFromLookupTable);
    };
    let signers = usize::from(m.num_required_signatures);
    let writable = if idx < signers {
        idx < signers.saturating_sub(usize::from(m.num_readonly_signed))
    } else {
        idx < m
            .keys
            .len()
            .saturating_sub(usize::from(m.num_readonly_unsigned))
    };
    Ok(writable.then_some(account))
}

/// Decodes a serialized Solana message into an intent.
pub fn decode(payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Intent, SolanaError> {
    decode_inner(payload, ctx).map(|d| d.intent)
}

/// Verifies the signature over the message and serializes the signed transaction.
pub fn finalize(
    payload: &[u8],
    ctx: &DecodeContext<'_>,
    signatures: &[ProducedSignature],
) -> Result<Finalized, SolanaError> {
    let Decoded {
        key,
        message,
        num_signatures,
        slot,
        ..
    } = decode_inner(payload, ctx)?;
    let [ProducedSignature::Ed25519(sig_bytes)] = signatures else {
        return Err(SolanaError::SignatureCount(signatures.len()));
    };
    let sig = Signature::from_bytes(sig_bytes);
    key.verify_strict(message, &sig)
        .map_err(|_| SolanaError::InvalidSignature)?;
    // shortvec(count) || count × 64-byte slots (ours at `slot`) || message. Decoding allows
    // one signer only, so the count is 1 and the shortvec one byte; written generally anyway.
    let mut signed = Vec::with_capacity(3 + 64 * num_signatures + message.len());
    let mut n = num_signatures;
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            signed.push(low);
            break;
        }
        signed.push(low | 0x80);
    }
    for i in 0..num_signatures {
        signed.extend_from_slice(if i == slot { sig_bytes } else { &[0u8; 64] });
    }
    signed.extend_from_slice(message);
    Ok(Finalized {
        signed,
        id: base58(sig_bytes),
    })
}

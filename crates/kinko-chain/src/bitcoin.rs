//! Bitcoin: PSBT ([BIP-174]) version 0 with native P2WPKH inputs of the signing key.
//!
//! # What is accepted
//!
//! The payload is a binary PSBT (the CLI turns base64 or hex into bytes). Decoding refuses, with a
//! typed [`BitcoinError`], anything Kinko cannot sign safely:
//!
//! * **Every input must spend the signing key's own P2WPKH output** (`OP_0 <hash160(key)>`,
//!   [BIP-141]) and carry `witness_utxo`. Without `witness_utxo` the amount being spent is not
//!   committed to by anything the signer sees, which is the classic fee-inflation attack on
//!   offline signers. When `non_witness_utxo` is also present it must hash to the input's txid and
//!   its output at the input's index must equal `witness_utxo` exactly.
//! * **Only `SIGHASH_ALL`** (an absent `PSBT_IN_SIGHASH_TYPE` means `SIGHASH_ALL`). Any other
//!   type lets someone else change inputs or outputs after Kinko signed.
//! * **No Taproot.** Inputs with `tap_*` fields or a P2TR `witness_utxo` are refused: key-path
//!   and script-path spends need BIP-340 Schnorr signatures, and PKCS#11 (v3.1) defines no
//!   BIP-340 mechanism (`CKM_ECDSA` produces ECDSA only), so the HSM cannot produce them.
//! * The signing key must be a SEC1 *compressed* secp256k1 key: P2WPKH has no uncompressed form.
//! * Inputs must not be finalized already and must not carry `redeem_script`/`witness_script`
//!   (that would be a wrapped or script spend, not native P2WPKH).
//! * Every output must have an address (P2PKH, P2SH, or a segwit program of a known version and
//!   standard length); `OP_RETURN` and other non-standard scripts are refused. Addresses are
//!   rendered for the configured network; a global `xpub` of the other network kind (a `tpub` in
//!   a mainnet request, or the reverse) is refused as a wrong-network payload.
//! * Amounts: each value ≤ 21 000 000 BTC, sums checked, outputs must not exceed inputs.
//! * Fee caps are left to the policy, on purpose: the intent carries the exact fee
//!   (inputs − outputs, every input amount committed to by `witness_utxo` and BIP-143) and the
//!   rate, and a policy rule caps them per key. A hard-coded "absurd fee" bound here could not be
//!   tuned per key and would duplicate, badly, a limit the officers already control. (The BIP-143
//!   example transaction, used in the tests, pays an 8.9 BTC fee: a fixed bound would refuse it.)
//!
//! # What the intent says
//!
//! * `signer`: the key's P2WPKH bech32 address on the configured network.
//! * `transfers`: one per output, in order; `change = true` for outputs paying the signer's own
//!   P2WPKH script.
//! * `fee.max`: inputs − outputs (exact); `fee.detail`: the signed transaction's virtual size and
//!   the fee rate in sat per 1000 vB, rounded down. The virtual size is computed exactly for a
//!   witness of `[72-byte signature, 33-byte key]` per input: 72 bytes is the largest a low-S DER
//!   ECDSA signature plus sighash byte can be (`30 len 02 21 r(33) 02 20 s(32)` + 1), so the
//!   size is an upper bound (a real signature is often 71 bytes) and the rate a lower bound.
//! * `replay_keys`: `outpoint:<txid>:<vout>` for every input.
//! * `to_sign`: one [`SigningInput::EcdsaSecp256k1`] per input, the [BIP-143] sighash with
//!   `SIGHASH_ALL`, `index` = input index.
//!
//! # Finalizing
//!
//! One [`ProducedSignature::EcdsaSecp256k1`] per input, in order. Each is checked against the
//! sighash recomputed here and the signing key (with `k256`; the tests check the result again
//! with libsecp256k1), normalized to low-S, DER-encoded with the `SIGHASH_ALL` byte into
//! `partial_sigs`, then the input is finalized (`final_script_witness = [sig, key]`) as BIP-174's
//! finalizer does, and the network transaction is extracted. `Finalized::signed` is the
//! consensus serialization, `Finalized::id` the txid.
//!
//! [BIP-141]: https://github.com/bitcoin/bips/blob/master/bip-0141.mediawiki
//! [BIP-143]: https://github.com/bitcoin/bips/blob/master/bip-0143.mediawiki
//! [BIP-174]: https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki

use std::collections::BTreeSet;

use bitcoin::hashes::Hash as _;
use bitcoin::psbt::Psbt;
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Address, Amount as BtcAmount, CompressedPublicKey, NetworkKind, OutPoint, ScriptBuf,
    Transaction, TxOut, Witness,
};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use kinko_intent::{
    Address as IntentAddress, Amount, Chain, Fee, FeeDetail, Intent, IntentKind, SigningInput,
    Transfer, native_asset,
};

use crate::{DecodeContext, Finalized, ProducedSignature};

/// Most inputs a PSBT may have.
pub const MAX_INPUTS: usize = 1000;
/// Most outputs a PSBT may have.
pub const MAX_OUTPUTS: usize = 1000;
/// The largest witness signature assumed for the size estimate: a low-S DER ECDSA signature
/// (at most 71 bytes) plus the sighash byte.
pub const MAX_WITNESS_SIG_LEN: usize = 72;

/// Why a Bitcoin payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BitcoinError {
    /// The network name is not `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`.
    #[error(
        "unknown bitcoin network {0:?}: expected bitcoin, testnet, testnet4, signet or regtest"
    )]
    UnknownNetwork(String),
    /// The signing key is not a valid SEC1 secp256k1 public key.
    #[error("invalid signer public key: {0}")]
    InvalidPublicKey(String),
    /// The signing key is uncompressed (65 bytes); P2WPKH requires a compressed key.
    #[error("the signing key is uncompressed; P2WPKH requires a 33-byte compressed key")]
    UncompressedPublicKey,
    /// The bytes are not a well-formed PSBT (BIP-174) of version 0.
    #[error("malformed PSBT: {0}")]
    Psbt(#[source] bitcoin::psbt::Error),
    /// Bytes follow the last output map.
    #[error("{0} trailing bytes after the PSBT")]
    TrailingBytes(usize),
    /// The transaction has no inputs.
    #[error("the transaction has no inputs")]
    NoInputs,
    /// The transaction has no outputs.
    #[error("the transaction has no outputs")]
    NoOutputs,
    /// More inputs than [`MAX_INPUTS`].
    #[error("{0} inputs exceed the limit of {MAX_INPUTS}")]
    TooManyInputs(usize),
    /// More outputs than [`MAX_OUTPUTS`].
    #[error("{0} outputs exceed the limit of {MAX_OUTPUTS}")]
    TooManyOutputs(usize),
    /// Two inputs spend the same outpoint.
    #[error("input {index} spends an outpoint already spent by an earlier input")]
    DuplicateInput {
        /// The input index.
        index: usize,
    },
    /// An input has no `witness_utxo`: its amount would not be committed to (fee inflation).
    #[error(
        "input {index} has no witness_utxo: the amount spent would be unverifiable (fee-inflation attack)"
    )]
    MissingWitnessUtxo {
        /// The input index.
        index: usize,
    },
    /// `non_witness_utxo` does not hash to the input's txid, or its output differs from
    /// `witness_utxo`.
    #[error("input {index}: non_witness_utxo does not match the outpoint or the witness_utxo")]
    NonWitnessUtxoMismatch {
        /// The input index.
        index: usize,
    },
    /// A Taproot input: it needs a BIP-340 Schnorr signature, which PKCS#11 cannot produce.
    #[error(
        "input {index} is a Taproot input: it needs a BIP-340 Schnorr signature and PKCS#11 has no BIP-340 mechanism"
    )]
    TaprootInput {
        /// The input index.
        index: usize,
    },
    /// An input does not spend the signing key's own P2WPKH output.
    #[error("input {index} does not spend the signing key's P2WPKH output")]
    ForeignInput {
        /// The input index.
        index: usize,
    },
    /// An input carries a field that has no place in a native P2WPKH spend.
    #[error("input {index} carries {field}, which a native P2WPKH input must not have")]
    UnexpectedInputField {
        /// The input index.
        index: usize,
        /// The PSBT field.
        field: &'static str,
    },
    /// An input is already finalized.
    #[error("input {index} is already finalized")]
    AlreadyFinalized {
        /// The input index.
        index: usize,
    },
    /// An input asks for a sighash type other than `SIGHASH_ALL`.
    #[error("input {index} asks for sighash type {sighash:#x}; only SIGHASH_ALL (0x1) is signed")]
    SighashNotAll {
        /// The input index.
        index: usize,
        /// The requested sighash type.
        sighash: u32,
    },
    /// An output script has no address (`OP_RETURN`, bare multisig, non-standard).
    #[error("output {index} has a script with no address (OP_RETURN or non-standard): {script}")]
    UnsupportedOutputScript {
        /// The output index.
        index: usize,
        /// The script, hex.
        script: String,
    },
    /// A global extended public key belongs to the other network kind.
    #[error("the PSBT carries an extended public key for {found} while the key is on {expected}")]
    WrongNetwork {
        /// The configured network.
        expected: String,
        /// The network kind found in the PSBT.
        found: String,
    },
    /// An amount exceeds 21 000 000 BTC, or a sum overflows.
    #[error("{what} exceeds 21 000 000 BTC")]
    AmountOutOfRange {
        /// Which amount.
        what: String,
    },
    /// The outputs spend more than the inputs provide.
    #[error("outputs ({outputs} sat) exceed inputs ({inputs} sat)")]
    OutputsExceedInputs {
        /// Sum of the inputs.
        inputs: u64,
        /// Sum of the outputs.
        outputs: u64,
    },
    /// The BIP-143 sighash could not be computed for an input.
    #[error("input {index}: cannot compute the BIP-143 sighash")]
    Sighash {
        /// The input index.
        index: usize,
    },
    /// `finalize` got a different number of signatures than there are inputs.
    #[error("expected {expected} signatures (one per input), got {got}")]
    SignatureCount {
        /// The number of inputs.
        expected: usize,
        /// The number of signatures given.
        got: usize,
    },
    /// A signature is not ECDSA secp256k1.
    #[error("signature {index} is not an ECDSA secp256k1 signature")]
    WrongSignatureScheme {
        /// The input index.
        index: usize,
    },
    /// A signature does not verify against the input's sighash and the signing key.
    #[error("signature {index} does not verify against the input's sighash and the signing key")]
    InvalidSignature {
        /// The input index.
        index: usize,
    },
}

/// The signing key in both libraries' forms, and its P2WPKH script.
struct SignerKey {
    compressed: CompressedPublicKey,
    verifying: k256::ecdsa::VerifyingKey,
    script: ScriptBuf,
}

impl SignerKey {
    fn parse(bytes: &[u8]) -> Result<Self, BitcoinError> {
        match bytes.len() {
            33 => {}
            65 => return Err(BitcoinError::UncompressedPublicKey),
            n => {
                return Err(BitcoinError::InvalidPublicKey(format!(
                    "expected 33 bytes (SEC1 compressed), got {n}"
                )));
            }
        }
        let compressed = CompressedPublicKey::from_slice(bytes)
            .map_err(|e| BitcoinError::InvalidPublicKey(e.to_string()))?;
        let verifying = k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .map_err(|e| BitcoinError::InvalidPublicKey(e.to_string()))?;
        let script = ScriptBuf::new_p2wpkh(&compressed.wpubkey_hash());
        Ok(SignerKey {
            compressed,
            verifying,
            script,
        })
    }
}

/// Everything decoding established, kept for finalizing.
struct Decoded {
    psbt: Psbt,
    key: SignerKey,
    /// BIP-143 sighash per input.
    sighashes: Vec<[u8; 32]>,
    intent: Intent,
}

/// The P2WPKH address of a compressed secp256k1 key on `network` (the only script Kinko signs).
pub fn p2wpkh_address(network: &str, public_key: &[u8]) -> Result<String, BitcoinError> {
    let key = SignerKey::parse(public_key)?;
    Ok(Address::p2wpkh(&key.compressed, network_from_name(network)?).to_string())
}

/// Maps a network name to the `bitcoin` crate's network.
pub fn network_from_name(name: &str) -> Result<bitcoin::Network, BitcoinError> {
    match name {
        "bitcoin" => Ok(bitcoin::Network::Bitcoin),
        "testnet" => Ok(bitcoin::Network::Testnet),
        "testnet4" => Ok(bitcoin::Network::Testnet4),
        "signet" => Ok(bitcoin::Network::Signet),
        "regtest" => Ok(bitcoin::Network::Regtest),
        other => Err(BitcoinError::UnknownNetwork(other.to_string())),
    }
}

/// Parses a binary PSBT, refusing trailing bytes. Structure only: no Kinko rules.
pub fn parse_psbt(payload: &[u8]) -> Result<Psbt, BitcoinError> {
    let mut rest = payload;
    let psbt = Psbt::deserialize_from_reader(&mut rest).map_err(BitcoinError::Psbt)?;
    if !rest.is_empty() {
        return Err(BitcoinError::TrailingBytes(rest.len()));
    }
    Ok(psbt)
}

fn address_string(addr: &Address) -> Option<IntentAddress> {
    IntentAddress::new(addr.to_string()).ok()
}

fn checked_sat(v: BtcAmount, what: impl FnOnce() -> String) -> Result<u64, BitcoinError> {
    if v > BtcAmount::MAX_MONEY {
        return Err(BitcoinError::AmountOutOfRange { what: what() });
    }
    Ok(v.to_sat())
}

fn add_sat(a: u64, b: u64, what: &str) -> Result<u64, BitcoinError> {
    a.checked_add(b)
        .filter(|s| *s <= BtcAmount::MAX_MONEY.to_sat())
        .ok_or_else(|| BitcoinError::AmountOutOfRange {
            what: what.to_string(),
        })
}

/// Checks one input against the rules in the module documentation.
fn check_input(
    index: usize,
    txin_outpoint: &OutPoint,
    input: &bitcoin::psbt::Input,
    key: &SignerKey,
) -> Result<TxOut, BitcoinError> {
    let taproot_fields = input.tap_key_sig.is_some()
        || !input.tap_script_sigs.is_empty()
        || !input.tap_scripts.is_empty()
        || !input.tap_key_origins.is_empty()
        || input.tap_internal_key.is_some()
        || input.tap_merkle_root.is_some();
    if taproot_fields {
        return Err(BitcoinError::TaprootInput { index });
    }
    let Some(utxo) = input.witness_utxo.as_ref() else {
        return Err(BitcoinError::MissingWitnessUtxo { index });
    };
    if utxo.script_pubkey.is_p2tr() {
        return Err(BitcoinError::TaprootInput { index });
    }
    if utxo.script_pubkey != key.script {
        return Err(BitcoinError::ForeignInput { index });
    }
    if let Some(prev) = input.non_witness_utxo.as_ref() {
        let vout = usize::try_from(txin_outpoint.vout).ok();
        let matches = prev.compute_txid() == txin_outpoint.txid
            && vout.and_then(|v| prev.output.get(v)) == Some(utxo);
        if !matches {
            return Err(BitcoinError::NonWitnessUtxoMismatch { index });
        }
    }
    if input.final_script_sig.is_some() || input.final_script_witness.is_some() {
        return Err(BitcoinError::AlreadyFinalized { index });
    }
    if input.redeem_script.is_some() {
        return Err(BitcoinError::UnexpectedInputField {
            index,
            field: "redeem_script",
        });
    }
    if input.witness_script.is_some() {
        return Err(BitcoinError::UnexpectedInputField {
            index,
            field: "witness_script",
        });
    }
    if let Some(ty) = input.sighash_type {
        let raw = ty.to_u32();
        if raw != EcdsaSighashType::All.to_u32() {
            return Err(BitcoinError::SighashNotAll {
                index,
                sighash: raw,
            });
        }
    }
    Ok(utxo.clone())
}

/// Virtual size of `tx` once every input carries a `[72-byte sig, 33-byte key]` witness.
fn signed_vsize(tx: &Transaction) -> u64 {
    let mut signed = tx.clone();
    for txin in &mut signed.input {
        let mut w = Witness::new();
        w.push([0u8; MAX_WITNESS_SIG_LEN]);
        w.push([0u8; 33]);
        txin.witness = w;
    }
    signed.vsize() as u64
}

fn decode_inner(payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Decoded, BitcoinError> {
    let network = network_from_name(ctx.network.as_str())?;
    let key = SignerKey::parse(ctx.public_key)?;
    let psbt = parse_psbt(payload)?;
    let tx = &psbt.unsigned_tx;

    if tx.input.is_empty() {
        return Err(BitcoinError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(BitcoinError::NoOutputs);
    }
    if tx.input.len() > MAX_INPUTS {
        return Err(BitcoinError::TooManyInputs(tx.input.len()));
    }
    if tx.output.len() > MAX_OUTPUTS {
        return Err(BitcoinError::TooManyOutputs(tx.output.len()));
    }

    let expected_kind = NetworkKind::from(network);
    if let Some(x) = psbt.xpub.keys().find(|x| x.network != expected_kind) {
        return Err(BitcoinError::WrongNetwork {
            expected: ctx.network.as_str().to_string(),
            found: format!("{:?}", x.network).to_lowercase(),
        });
    }

    // Inputs.
    let mut seen = BTreeSet::new();
    let mut utxos = Vec::with_capacity(tx.input.len());
    let mut total_in: u64 = 0;
    let mut replay_keys = Vec::with_capacity(tx.input.len());
    for (index, (txin, input)) in tx.input.iter().zip(psbt.inputs.iter()).enumerate() {
        if !seen.insert(txin.previous_output) {
            return Err(BitcoinError::DuplicateInput { index });
        }
        let utxo = check_input(index, &txin.previous_output, input, &key)?;
        let v = checked_sat(utxo.value, || format!("input {index}"))?;
        total_in = add_sat(total_in, v, "the sum of the inputs")?;
        replay_keys.push(format!(
            "outpoint:{}:{}",
            txin.previous_output.txid, txin.previous_output.vout
        ));
        utxos.push(utxo);
    }

    // Outputs.
    let mut transfers = Vec::with_capacity(tx.output.len());
    let mut total_out: u64 = 0;
    for (index, out) in tx.output.iter().enumerate() {
        let v = checked_sat(out.value, || format!("output {index}"))?;
        total_out = add_sat(total_out, v, "the sum of the outputs")?;
        let unsupported = || BitcoinError::UnsupportedOutputScript {
            index,
            script: hex::encode(out.script_pubkey.as_bytes()),
        };
        let addr = Address::from_script(&out.script_pubkey, network).map_err(|_| unsupported())?;
        if !addr.is_spend_standard() {
            return Err(unsupported());
        }
        let to = address_string(&addr).ok_or_else(unsupported)?;
        transfers.push(Transfer {
            to,
            amount: Amount::from_u64(v),
            change: out.script_pubkey == key.script,
        });
    }

    let fee = total_in
        .checked_sub(total_out)
        .ok_or(BitcoinError::OutputsExceedInputs {
            inputs: total_in,
            outputs: total_out,
        })?;
    let vsize = signed_vsize(tx);
    // vsize ≥ 1 for any transaction with inputs; fee ≤ 21e14 so fee × 1000 fits in u64.
    let sat_per_kvb = fee
        .checked_mul(1000)
        .and_then(|f| f.checked_div(vsize))
        .ok_or(BitcoinError::AmountOutOfRange {
            what: "the fee rate".to_string(),
        })?;

    // BIP-143 sighashes.
    let mut cache = SighashCache::new(tx);
    let key_hex = hex::encode(key.compressed.to_bytes());
    let mut sighashes = Vec::with_capacity(tx.input.len());
    let mut to_sign = Vec::with_capacity(tx.input.len());
    for (index, utxo) in utxos.iter().enumerate() {
        let h = cache
            .p2wpkh_signature_hash(
                index,
                &utxo.script_pubkey,
                utxo.value,
                EcdsaSighashType::All,
            )
            .map_err(|_| BitcoinError::Sighash { index })?
            .to_byte_array();
        to_sign.push(SigningInput::EcdsaSecp256k1 {
            digest: hex::encode(h),
            public_key: key_hex.clone(),
            index: u32::try_from(index).map_err(|_| BitcoinError::TooManyInputs(index))?,
        });
        sighashes.push(h);
    }

    let signer_addr = Address::p2wpkh(&key.compressed, network);
    let signer = address_string(&signer_addr)
        .ok_or_else(|| BitcoinError::InvalidPublicKey("no P2WPKH address".to_string()))?;

    let intent = Intent {
        chain: Chain::Bitcoin,
        network: ctx.network.clone(),
        kind: IntentKind::Transfer,
        signer,
        asset: native_asset(Chain::Bitcoin),
        transfers,
        fee: Fee {
            max: Amount::from_u64(fee),
            detail: FeeDetail::Bitcoin { vsize, sat_per_kvb },
        },
        nonce: None,
        call: None,
        replay_keys,
        to_sign,
    };
    Ok(Decoded {
        psbt,
        key,
        sighashes,
        intent,
    })
}

/// Decodes a PSBT into an intent (see the module documentation for the rules).
pub fn decode(payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Intent, BitcoinError> {
    decode_inner(payload, ctx).map(|d| d.intent)
}

/// Verifies one signature per input, places them, finalizes every input and extracts the
/// signed transaction.
pub fn finalize(
    payload: &[u8],
    ctx: &DecodeContext<'_>,
    signatures: &[ProducedSignature],
) -> Result<Finalized, BitcoinError> {
    let Decoded {
        mut psbt,
        key,
        sighashes,
        ..
    } = decode_inner(payload, ctx)?;
    if signatures.len() != sighashes.len() {
        return Err(BitcoinError::SignatureCount {
            expected: sighashes.len(),
            got: signatures.len(),
        });
    }
    let pubkey = bitcoin::PublicKey::new(key.compressed.0);
    for (index, ((sig, sighash), input)) in signatures
        .iter()
        .zip(sighashes.iter())
        .zip(psbt.inputs.iter_mut())
        .enumerate()
    {
        let ProducedSignature::EcdsaSecp256k1 { rs, .. } = sig else {
            return Err(BitcoinError::WrongSignatureScheme { index });
        };
        let mut secp_sig = bitcoin::secp256k1::ecdsa::Signature::from_compact(rs)
            .map_err(|_| BitcoinError::InvalidSignature { index })?;
        secp_sig.normalize_s();
        // Verify the low-S form with k256 (a second implementation besides libsecp256k1).
        let k_sig = k256::ecdsa::Signature::from_slice(&secp_sig.serialize_compact())
            .map_err(|_| BitcoinError::InvalidSignature { index })?;
        key.verifying
            .verify_prehash(sighash, &k_sig)
            .map_err(|_| BitcoinError::InvalidSignature { index })?;
        let btc_sig = bitcoin::ecdsa::Signature {
            signature: secp_sig,
            sighash_type: EcdsaSighashType::All,
        };
        input.partial_sigs.insert(pubkey, btc_sig);
        // BIP-174 finalizer: build the final witness, then clear what it superseded.
        input.final_script_witness = Some(Witness::p2wpkh(&btc_sig, &key.compressed.0));
        input.partial_sigs.clear();
        input.sighash_type = None;
        input.bip32_derivation.clear();
    }
    // The fee was judged by the policy on the intent; no second, fixed fee-rate bound here.
    let tx = psbt.extract_tx_unchecked_fee_rate();
    Ok(Finalized {
        signed: bitcoin::consensus::serialize(&tx),
        id: tx.compute_txid().to_string(),
    })
}

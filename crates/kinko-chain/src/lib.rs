//! Clear signing: decode unsigned transactions into [`Intent`]s and finalize signatures.
//!
//! Kinko never signs what it cannot read. Every decoder here maps any byte string either to an
//! intent — whose `to_sign` digests are computed *here*, from the same bytes — or to a typed
//! error; never to a panic. This crate is pure: no I/O, no HSM, no async.
//!
//! | chain | payload | module |
//! |---|---|---|
//! | Ethereum | unsigned legacy (EIP-155), EIP-2930, EIP-1559 transaction bytes | [`ethereum`] |
//! | Ethereum (Safe) | EIP-712 typed-data JSON with primary type `SafeTx` | [`safe`] |
//! | Bitcoin | PSBT (BIP-174) with P2WPKH inputs | [`bitcoin`] |
//! | Solana | legacy or v0 message | [`solana`] |

#![forbid(unsafe_code)]

pub mod bitcoin;
pub mod ethereum;
pub mod safe;
pub mod solana;

pub use kinko_intent::{Chain, Intent, Network, TokenRegistry};

/// Largest payload any decoder accepts, in bytes. Larger inputs are refused before parsing.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;

/// Why a payload could not be decoded or finalized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit")]
    TooLarge(usize),
    /// The signing key's public key is malformed for this chain.
    #[error("invalid signer public key: {0}")]
    InvalidPublicKey(String),
    /// The network name is not one this chain knows.
    #[error("unknown network {network:?} for {chain}")]
    UnknownNetwork {
        /// The chain.
        chain: Chain,
        /// The network name given.
        network: String,
    },
    /// Ethereum or Safe decoding or finalizing failed.
    #[error(transparent)]
    Ethereum(#[from] ethereum::EthereumError),
    /// Safe{Wallet} typed-data decoding or finalizing failed.
    #[error(transparent)]
    Safe(#[from] safe::SafeError),
    /// Bitcoin PSBT decoding or finalizing failed.
    #[error(transparent)]
    Bitcoin(#[from] bitcoin::BitcoinError),
    /// Solana message decoding or finalizing failed.
    #[error(transparent)]
    Solana(#[from] solana::SolanaError),
}

/// What a decoder needs besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext<'a> {
    /// The network the signing key is configured for; a payload for another network is refused.
    pub network: &'a Network,
    /// The signing key's public key: SEC1 (33 or 65 bytes) for secp256k1, 32 bytes for Ed25519.
    pub public_key: &'a [u8],
    /// Known tokens, to name ERC-20 and SPL assets.
    pub tokens: &'a TokenRegistry,
}

/// A signature produced by the HSM (already verified and, for ECDSA, normalized to low-S),
/// for one entry of [`Intent::to_sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducedSignature {
    /// ECDSA secp256k1: `r || s` with low `s`, and the recovery id (y parity of R, 0 or 1).
    EcdsaSecp256k1 {
        /// `r || s`, big-endian, `s` ≤ n/2.
        rs: [u8; 64],
        /// 0 or 1.
        recovery_id: u8,
    },
    /// Ed25519 (RFC 8032) signature.
    Ed25519([u8; 64]),
}

/// A transaction ready to broadcast (or, for Safe, the owner signature to hand to the Safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    /// The signed bytes: a raw transaction, a finalized PSBT's extracted transaction, or the
    /// 65-byte Safe owner signature.
    pub signed: Vec<u8>,
    /// The transaction hash / txid / Solana signature (base58), as the chain's explorers show it;
    /// for Safe, the SafeTx hash.
    pub id: String,
}

/// The address a signing key receives at and signs from, as the chain's wallets show it:
/// Ethereum EIP-55 checksummed, Bitcoin P2WPKH (bech32 for the network), Solana base58.
pub fn address_of(chain: Chain, network: &str, public_key: &[u8]) -> Result<String, ChainError> {
    match chain {
        Chain::Ethereum => {
            let key = ethereum::EvmKey::from_sec1(public_key)?;
            Ok(ethereum::checksummed(&key.address())?.as_str().to_string())
        }
        Chain::Bitcoin => bitcoin::p2wpkh_address(network, public_key).map_err(ChainError::from),
        Chain::Solana => {
            if public_key.len() != 32 {
                return Err(ChainError::InvalidPublicKey(format!(
                    "{} bytes; a Solana key is 32",
                    public_key.len()
                )));
            }
            Ok(solana::base58(public_key))
        }
    }
}

/// Decodes `payload` for `chain` into an intent.
pub fn decode(chain: Chain, payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Intent, ChainError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(ChainError::TooLarge(payload.len()));
    }
    match chain {
        Chain::Ethereum if safe::looks_like_typed_data(payload) => Ok(safe::decode(payload, ctx)?),
        Chain::Ethereum => Ok(ethereum::decode(payload, ctx)?),
        Chain::Bitcoin => Ok(bitcoin::decode(payload, ctx)?),
        Chain::Solana => Ok(solana::decode(payload, ctx)?),
    }
}

/// Re-decodes `payload` and combines it with one signature per [`Intent::to_sign`] entry, in
/// order, into a broadcastable transaction. Each signature is checked against the digest this
/// crate computed before it is placed.
pub fn finalize(
    chain: Chain,
    payload: &[u8],
    ctx: &DecodeContext<'_>,
    signatures: &[ProducedSignature],
) -> Result<Finalized, ChainError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(ChainError::TooLarge(payload.len()));
    }
    match chain {
        Chain::Ethereum if safe::looks_like_typed_data(payload) => {
            Ok(safe::finalize(payload, ctx, signatures)?)
        }
        Chain::Ethereum => Ok(ethereum::finalize(payload, ctx, signatures)?),
        Chain::Bitcoin => Ok(bitcoin::finalize(payload, ctx, signatures)?),
        Chain::Solana => Ok(solana::finalize(payload, ctx, signatures)?),
    }
}
